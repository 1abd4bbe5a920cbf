//! When each API key was last used (`last_used_at`), written in batches. A request marks
//! its key used at most once a minute (the key cache remembers the touch); the marks of a
//! whole fleet are written together every [`FLUSH_EVERY`] as one UPDATE per
//! [`BATCH`] keys, not one write per key. 10,000 agents with their own keys touch ~170
//! keys a second: one statement instead of ~170 transactions.
//!
//! `last_used_at` is informational (shown in the key list): a mark not yet written when
//! the process stops is lost, which moves the shown time back by at most a minute.

use crate::db::{accounts, Db};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `last_used_at` is marked at most this often per key, to keep writes off the hot path.
pub const TOUCH_INTERVAL_MS: i64 = 60_000;
/// How often the marks are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Keys per UPDATE (well under SQLite's limit on bound parameters).
const BATCH: usize = 500;

/// Keys used since the last flush, by id.
#[derive(Default)]
pub struct KeyUses {
    pending: Mutex<Vec<String>>,
}

impl KeyUses {
    /// Marks a key used now; written at the next flush.
    pub fn mark(&self, key_id: &str) {
        self.lock().push(key_id.to_owned());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A poisoned lock means a panic elsewhere mid-push onto a plain vector; still usable.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The marks since the last call, each key once, ready for [`BATCH`]-sized UPDATEs.
    fn take(&self) -> Vec<String> {
        let mut ids = std::mem::take(&mut *self.lock());
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Writes the pending marks, `last_used_at = now` for each key not touched within
    /// [`TOUCH_INTERVAL_MS`] (another replica may have written it meanwhile). What fails to be
    /// written is dropped: the key's next use marks it again.
    pub async fn flush(&self, db: &Db, now: i64) {
        let ids = self.take();
        for batch in ids.chunks(BATCH) {
            if let Err(error) = accounts::touch_api_keys(db, batch, now, now - TOUCH_INTERVAL_MS).await {
                tracing::warn!(%error, keys = batch.len(), "could not record API key use");
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] for as long as the process lives.
    pub fn spawn_flusher(self: Arc<KeyUses>, db: Db) {
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.flush(&db, crate::db::now_ms()).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_written_once_per_flush() {
        let uses = KeyUses::default();
        uses.mark("key_b");
        uses.mark("key_a");
        uses.mark("key_b");
        assert_eq!(uses.take(), ["key_a", "key_b"]);
        assert!(uses.take().is_empty(), "taken marks are not written twice");
    }
}
