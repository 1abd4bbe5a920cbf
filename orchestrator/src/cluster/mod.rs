//! Several orchestrators on one PostgreSQL database behaving as one. The database is the
//! source of truth; what each replica keeps in memory (parked polls, the agent cache,
//! schedule timers, the API-key cache, waiting requests) learns of other replicas'
//! writes from notifications that database triggers send on commit ([`signal`]). Each
//! process keeps one listening connection ([`listener`]), reconnecting when it is lost;
//! the tenant registry's once-a-second re-check covers what a lost connection missed.
//!
//! SQLite is the embedded, one-process default: nothing here runs on it, and a second
//! orchestrator on the same file is refused at start-up ([`single_process_lock`]).

mod listener;
pub mod signal;

pub use listener::spawn_listener;
pub use signal::{Notice, Signal, CHANNEL};

use crate::auth::key_cache::KeyCache;
use crate::metrics::Metrics;
use crate::tenant::{Route, TenantRegistry};
use crate::watch::Watchers;
use actix::Addr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A name for this process among the replicas: its connections' `application_name`,
/// which the triggers put first in every notification so a replica can skip its own.
pub fn replica_name() -> String {
    format!("scriptmesh-{:012x}", rand::random::<u64>() >> 16)
}

/// `url` with `application_name` set to `name` (replacing one already there).
pub fn with_application_name(url: &str, name: &str) -> Result<String, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(key, _)| key != "application_name")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("application_name", name);
    Ok(parsed.to_string())
}

/// Where news from other replicas goes: waiting requests and the key cache directly,
/// everything else through the tenant registry to the supervisors it concerns.
#[derive(Clone)]
pub struct Router {
    /// This replica's name: its own news is skipped (it acted on it already).
    pub me: String,
    pub registry: Addr<TenantRegistry>,
    pub watchers: Arc<Watchers>,
    pub keys: Arc<KeyCache>,
    pub metrics: Metrics,
}

impl Router {
    pub fn route(&self, notices: impl IntoIterator<Item = Notice>) {
        let mut for_supervisors = Vec::new();
        let mut received = 0;
        for notice in notices {
            if notice.origin == self.me {
                continue;
            }
            received += 1;
            match notice.signal {
                Signal::JobFinished { job_id, fanout_id, .. } => {
                    self.watchers.touch(&job_id);
                    if let Some(fanout_id) = fanout_id {
                        self.watchers.touch(&fanout_id);
                    }
                }
                Signal::OutputAppended { job_id, .. } => self.watchers.touch(&job_id),
                Signal::KeyChanged { key_id } => self.keys.evict(&key_id),
                other => for_supervisors.push(other),
            }
        }
        self.metrics.notifications_received(received);
        if !for_supervisors.is_empty() {
            self.registry.do_send(Route(for_supervisors));
        }
    }
}

/// Held while an orchestrator serves a SQLite database: a second one on the same file
/// is refused, since SQLite cannot carry news between processes.
pub struct SingleProcessLock {
    _file: File,
}

/// Takes the lock file beside the SQLite database (`<path>.lock`), or says who holds it.
pub fn single_process_lock(database_path: &Path) -> Result<SingleProcessLock, String> {
    let lock_path = PathBuf::from(format!("{}.lock", database_path.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            use std::io::Write;
            let mut file = file;
            let _ = file.set_len(0);
            let _ = writeln!(file, "{}", std::process::id());
            Ok(SingleProcessLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            Err(format!(
                "another orchestrator (pid {}) is already serving the SQLite database {}. SQLite is the \
                 embedded one-process default; to run several orchestrators, give them one PostgreSQL \
                 database (DATABASE_URL=postgres://...)",
                holder.trim(),
                database_path.display()
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", lock_path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_the_application_name_in_the_url() {
        assert_eq!(
            with_application_name("postgres://u:p@h:5432/db", "scriptmesh-1").unwrap(),
            "postgres://u:p@h:5432/db?application_name=scriptmesh-1"
        );
        assert_eq!(
            with_application_name("postgres://h/db?sslmode=disable&application_name=x", "me").unwrap(),
            "postgres://h/db?sslmode=disable&application_name=me"
        );
    }

    #[test]
    fn replica_names_differ() {
        assert_ne!(replica_name(), replica_name());
        assert!(
            replica_name().len() < 64,
            "PostgreSQL truncates application names at 63 bytes"
        );
    }

    #[test]
    fn a_second_holder_of_one_sqlite_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("sm-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let database = dir.join("one.db");
        let held = single_process_lock(&database).expect("the first takes it");
        let refused = single_process_lock(&database).err().expect("the second is refused");
        assert!(refused.contains("PostgreSQL"), "{refused}");
        assert!(refused.contains(&std::process::id().to_string()), "{refused}");
        drop(held);
        single_process_lock(&database).expect("free again once released");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
