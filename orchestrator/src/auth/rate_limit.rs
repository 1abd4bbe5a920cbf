//! Fixed-window rate limits kept in memory, keyed by what is limited (an address, an email).

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    window: Duration,
    buckets: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(window: Duration) -> RateLimiter {
        RateLimiter {
            window,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request against `key`; past `limit` in the current window, a 429.
    pub fn check(&self, key: String, limit: u32) -> Result<()> {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-count; the map is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > 100_000 {
            buckets.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let (start, count) = buckets.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > limit {
            let retry_after = self.window.saturating_sub(now.duration_since(*start));
            return Err(Error::RateLimited {
                retry_after_secs: retry_after.as_secs().max(1),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_resets_with_the_window() {
        let limiter = RateLimiter::new(Duration::from_millis(200));
        for _ in 0..3 {
            limiter.check("a".into(), 3).unwrap();
        }
        assert!(matches!(limiter.check("a".into(), 3), Err(Error::RateLimited { .. })));
        limiter.check("b".into(), 3).unwrap();
        std::thread::sleep(Duration::from_millis(220));
        limiter.check("a".into(), 3).unwrap();
    }
}
