//! Waiting for jobs: a synchronous trigger, `GET /jobs/{id}?wait=`, `GET /fan-out/{id}?wait=`
//! and output followers all subscribe to a job (or fan-out) id and re-read the database
//! when it changes. News comes from this process's supervisors and, on PostgreSQL, from
//! the other replicas' notifications; a wait also re-reads once a second regardless, so
//! a notification lost with a dropped connection delays it by at most that.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The longest a wait goes without looking at the database again.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Subscriptions by job or fan-out id. Shared by the whole process.
#[derive(Default)]
pub struct Watchers {
    subscriptions: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        // A poisoned lock means a panic elsewhere mid-update of a plain map; it is still usable.
        self.subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes of `key` from now on wake the receiver.
    pub fn subscribe(&self, key: &str) -> watch::Receiver<u64> {
        let mut subscriptions = self.lock();
        match subscriptions.get(key) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(0);
                subscriptions.insert(key.to_owned(), sender);
                receiver
            }
        }
    }

    /// Something about `key` changed: its subscribers look again.
    pub fn touch(&self, key: &str) {
        let mut subscriptions = self.lock();
        if let Some(sender) = subscriptions.get(key) {
            if sender.receiver_count() == 0 {
                subscriptions.remove(key);
            } else {
                sender.send_modify(|version| *version = version.wrapping_add(1));
            }
        }
    }

    /// Forgets keys nobody waits on any more.
    pub fn prune(&self) {
        self.lock().retain(|_, sender| sender.receiver_count() > 0);
    }

    /// How many keys have subscribers (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `check` until it reports done or `wait` has passed, then returns its last
    /// value. `check` runs again whenever `key` is touched, and at least every
    /// [`RECHECK_INTERVAL`].
    pub async fn wait_until<T, E, F, Fut>(&self, key: &str, wait: Duration, mut check: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(bool, T), E>>,
    {
        let deadline = Instant::now() + wait;
        loop {
            // Subscribed before looking, so a change in between is not missed.
            let mut changes = self.subscribe(key);
            let (done, value) = check().await?;
            let now = Instant::now();
            if done || now >= deadline {
                return Ok(value);
            }
            let nap = (deadline - now).min(RECHECK_INTERVAL);
            let _ = tokio::time::timeout(nap, changes.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_touch_wakes_the_wait_at_once() {
        let watchers = Arc::new(Watchers::default());
        let done = Arc::new(AtomicUsize::new(0));
        let waiting = {
            let (watchers, done) = (watchers.clone(), done.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let checks = AtomicUsize::new(0);
                let value: Result<usize, ()> = watchers
                    .wait_until("job_1", Duration::from_secs(30), || {
                        checks.fetch_add(1, Ordering::SeqCst);
                        let finished = done.load(Ordering::SeqCst);
                        async move { Ok((finished > 0, finished)) }
                    })
                    .await;
                (value, started.elapsed(), checks.load(Ordering::SeqCst))
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        done.store(7, Ordering::SeqCst);
        watchers.touch("job_1");
        let (value, elapsed, checks) = waiting.await.unwrap();
        assert_eq!(value, Ok(7));
        assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
        assert_eq!(checks, 2);
        watchers.prune();
        assert!(watchers.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn without_news_it_rechecks_every_second_until_the_deadline() {
        let watchers = Watchers::default();
        let checks = AtomicUsize::new(0);
        let value: Result<usize, ()> = watchers
            .wait_until("job_2", Duration::from_millis(3500), || {
                let n = checks.fetch_add(1, Ordering::SeqCst) + 1;
                async move { Ok((false, n)) }
            })
            .await;
        // At 0, 1, 2, 3 s and at the deadline.
        assert_eq!(value, Ok(5));
    }

    #[test]
    fn touching_a_key_nobody_watches_is_a_no_op() {
        let watchers = Watchers::default();
        watchers.touch("job_3");
        assert!(watchers.is_empty());
        drop(watchers.subscribe("job_3"));
        watchers.touch("job_3");
        assert!(watchers.is_empty());
    }
}
