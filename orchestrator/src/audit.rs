//! The audit trail as the server writes it: handlers record what callers did, the `Caller`
//! extractor records what they were refused, and [`AuditLog`] writes the entries in
//! batches every [`FLUSH_EVERY`] (and once more when the server stops), so that auditing a
//! trigger costs the request no database round trip. Entries older than the retention
//! (`AUDIT_RETENTION_DAYS`) are pruned once an hour.

use crate::db::models::AuditEntry;
use crate::db::{self, Db};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often recorded entries are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// How often old entries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Past this many unwritten entries (the database is down), new ones are dropped and
/// counted in the log rather than held without bound.
const MAX_PENDING: usize = 100_000;

/// `ok` or `denied`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
        }
    }
}

/// One thing done or tried.
#[derive(Clone, Debug)]
pub struct Record {
    pub tenant_id: Option<String>,
    /// The person, or the key's creator.
    pub user_id: Option<String>,
    /// The email, or `key_... (name)`.
    pub actor: Option<String>,
    pub actor_id: Option<String>,
    pub action: &'static str,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub detail: String,
    pub client_addr: Option<String>,
}

impl Record {
    fn into_entry(self, now: i64) -> AuditEntry {
        AuditEntry {
            id: db::new_id("aud"),
            tenant_id: self.tenant_id,
            user_id: self.user_id,
            action: self.action.to_owned(),
            detail: self.detail,
            client_addr: self.client_addr,
            created_at: now,
            actor: self.actor,
            actor_id: self.actor_id,
            target: self.target,
            outcome: self.outcome.as_str().to_owned(),
        }
    }
}

/// Entries recorded and not yet written.
#[derive(Default)]
pub struct AuditLog {
    pending: Mutex<Vec<AuditEntry>>,
}

impl AuditLog {
    /// Records an entry; it is written within [`FLUSH_EVERY`].
    pub fn record(&self, record: Record) {
        let entry = record.into_entry(db::now_ms());
        let mut pending = self.lock();
        if pending.len() >= MAX_PENDING {
            tracing::warn!(action = %entry.action, "the audit log is not being written; an entry was dropped");
            return;
        }
        pending.push(entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<AuditEntry>> {
        // A poisoned lock means a panic elsewhere mid-push onto a plain vector; still usable.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes what is pending. What fails to be written is put back for the next flush.
    pub async fn flush(&self, db: &Db) {
        let entries = std::mem::take(&mut *self.lock());
        if entries.is_empty() {
            return;
        }
        if let Err(error) = db::audit::insert(db, &entries).await {
            tracing::warn!(%error, entries = entries.len(), "could not write the audit log; retrying");
            let mut pending = self.lock();
            let room = MAX_PENDING.saturating_sub(pending.len());
            pending.splice(0..0, entries.into_iter().take(room));
        }
    }

    /// Flushes every [`FLUSH_EVERY`] and prunes every [`PRUNE_EVERY`], for as long as the
    /// process lives.
    pub fn spawn(self: Arc<AuditLog>, db: Db, retention: Duration) {
        let log = self.clone();
        let flush_db = db.clone();
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                log.flush(&flush_db).await;
            }
        });
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(PRUNE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let before = db::now_ms() - retention.as_millis() as i64;
                match db::audit::prune(&db, before).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "pruned audit entries past the retention"),
                    Err(error) => tracing::warn!(%error, "could not prune the audit log"),
                }
            }
        });
    }
}
