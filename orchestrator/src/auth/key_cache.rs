//! A short-lived in-memory cache of API key lookups: agents present their key on every
//! poll, start and result, and the lookup need not hit the database each time. Revoking a
//! key evicts it at once here, and on the other replicas as soon as they hear of it from
//! the database (`cluster`). While a replica cannot hear (its listening connection is
//! down), it does not trust the cache at all: every lookup goes to the database.

use crate::db::models::ApiKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (ApiKey, Instant)>>,
    /// False while revocations elsewhere could go unheard.
    trusted: AtomicBool,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            trusted: AtomicBool::new(true),
        }
    }

    /// Stops (false) or resumes (true) answering from the cache; either way what it
    /// held is forgotten, since revocations may have been missed meanwhile.
    pub fn set_trusted(&self, trusted: bool) {
        if trusted {
            self.lock().clear();
            self.trusted.store(true, Ordering::SeqCst);
        } else {
            self.trusted.store(false, Ordering::SeqCst);
            self.lock().clear();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ApiKey, Instant)>> {
        // A poisoned lock means a panic elsewhere mid-update of a plain map; it is still usable.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, key_hash: &str) -> Option<ApiKey> {
        if !self.trusted.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.lock();
        let (key, cached_at) = entries.get(key_hash)?;
        (cached_at.elapsed() < self.ttl).then(|| key.clone())
    }

    pub fn put(&self, key: ApiKey) {
        if !self.trusted.load(Ordering::SeqCst) {
            return;
        }
        let mut entries = self.lock();
        if entries.len() > 50_000 {
            let ttl = self.ttl;
            entries.retain(|_, (_, cached_at)| cached_at.elapsed() < ttl);
        }
        entries.insert(key.key_hash.clone(), (key, Instant::now()));
    }

    /// Forgets a key (by id) so that its revocation takes effect on the next request.
    pub fn evict(&self, key_id: &str) {
        self.lock().retain(|_, (key, _)| key.id != key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ApiKey {
        ApiKey {
            id: id.into(),
            tenant_id: "ten".into(),
            user_id: None,
            name: "k".into(),
            key_prefix: "sm_live_x".into(),
            key_hash: format!("hash-{id}"),
            created_at: 0,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn caches_until_ttl_or_eviction() {
        let cache = KeyCache::new(Duration::from_millis(100));
        cache.put(key("a"));
        assert!(cache.get("hash-a").is_some());
        cache.evict("a");
        assert!(cache.get("hash-a").is_none());
        cache.put(key("b"));
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get("hash-b").is_none());
    }

    #[test]
    fn an_untrusted_cache_answers_nothing_and_forgets() {
        let cache = KeyCache::new(Duration::from_secs(60));
        cache.put(key("a"));
        cache.set_trusted(false);
        assert!(cache.get("hash-a").is_none());
        cache.put(key("b"));
        cache.set_trusted(true);
        assert!(cache.get("hash-a").is_none(), "what it held before is gone");
        assert!(cache.get("hash-b").is_none(), "nothing was kept while untrusted");
        cache.put(key("c"));
        assert!(cache.get("hash-c").is_some());
    }
}
