//! An in-memory cache of API key lookups: agents present their key on every poll,
//! heartbeat, start and result, and the lookup need not hit the database each time.
//!
//! What it holds stays true to the database. Revoking a key through the API evicts it at
//! once here, and on the other replicas as soon as they hear of it from the database
//! (`cluster`); while a replica cannot hear (its listening connection is down), it does not
//! trust the cache at all: every lookup goes to the database. And the database counts every
//! change to a key that decides who may use it, by the API or by SQL behind its back
//! (revoked, expiry, hash or tenant changed, deleted: the `api_key_changes` setting, kept
//! by triggers); every [`RECHECK_EVERY`] that one row is read, and when it moved the whole
//! cache is forgotten. So a key changed in SQL stops working within seconds, on SQLite too,
//! and the entries' TTL only bounds how long a key nobody uses is kept.
//!
//! A lookup that read the database before an eviction must not put its stale answer back
//! after it: every eviction starts a new generation, and a `put` from an older one is
//! dropped.

use super::permissions::{KeyScope, Role};
use crate::db::models::ApiKey;
use crate::db::{settings, Db};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the database's count of key changes is read.
pub const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// The setting the key triggers count in (see the `key_changes` migrations).
const CHANGES_SETTING: &str = "api_key_changes";
/// Past this many entries, a `put` first drops the expired ones.
const PRUNE_ABOVE: usize = 50_000;

pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<Entries>,
    /// False while revocations elsewhere could go unheard.
    trusted: AtomicBool,
    /// The database's count of key changes when last read.
    changes_seen: Mutex<Option<String>>,
}

/// A key as read from the database, with its role and scope parsed once.
#[derive(Debug)]
pub struct CachedKey {
    pub key: ApiKey,
    /// None: the row holds a role no key can have (changed by SQL); the key is refused.
    pub role: Option<Role>,
    /// None: the row's scope is not valid JSON of a scope; the key is refused.
    pub scope: Option<KeyScope>,
    /// `key_... (name)`, as the audit log shows the key.
    pub actor: String,
}

impl CachedKey {
    pub fn new(key: ApiKey) -> CachedKey {
        let role = Role::parse(&key.role).filter(|role| Role::KEY_ROLES.contains(role));
        let scope = match &key.scope {
            None => Some(KeyScope::default()),
            Some(text) => serde_json::from_str(text).ok(),
        };
        let actor = format!("{} ({})", key.id, key.name);
        CachedKey {
            key,
            role,
            scope,
            actor,
        }
    }
}

#[derive(Default)]
struct Entries {
    by_hash: HashMap<String, (Arc<CachedKey>, Instant)>,
    /// Bumped by every eviction: a lookup started before it may hold what was evicted.
    generation: u64,
}

/// Taken before a lookup reads the database; its answer is cached only if no eviction
/// happened meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation(u64);

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: Mutex::new(Entries::default()),
            trusted: AtomicBool::new(true),
            changes_seen: Mutex::new(None),
        }
    }

    /// Stops (false) or resumes (true) answering from the cache; either way what it
    /// held is forgotten, since revocations may have been missed meanwhile.
    pub fn set_trusted(&self, trusted: bool) {
        if trusted {
            self.forget_all();
            self.trusted.store(true, Ordering::SeqCst);
        } else {
            self.trusted.store(false, Ordering::SeqCst);
            self.forget_all();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A poisoned lock means a panic elsewhere mid-update of a plain map; it is still usable.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current generation: take it before reading a key from the database.
    pub fn generation(&self) -> Generation {
        Generation(self.lock().generation)
    }

    pub fn get(&self, key_hash: &str) -> Option<Arc<CachedKey>> {
        if !self.trusted.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.lock();
        let (key, cached_at) = entries.by_hash.get(key_hash)?;
        (cached_at.elapsed() < self.ttl).then(|| key.clone())
    }

    /// Caches a key read (or last seen) in `generation`; dropped if anything was evicted
    /// since.
    pub fn put(&self, key: Arc<CachedKey>, generation: Generation) {
        if !self.trusted.load(Ordering::SeqCst) {
            return;
        }
        let mut entries = self.lock();
        if entries.generation != generation.0 {
            return;
        }
        if entries.by_hash.len() > PRUNE_ABOVE {
            let ttl = self.ttl;
            entries.by_hash.retain(|_, (_, cached_at)| cached_at.elapsed() < ttl);
        }
        entries.by_hash.insert(key.key.key_hash.clone(), (key, Instant::now()));
    }

    /// Forgets a key (by id) so that its revocation takes effect on the next request.
    pub fn evict(&self, key_id: &str) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.by_hash.retain(|_, (cached, _)| cached.key.id != key_id);
    }

    fn forget_all(&self) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.by_hash.clear();
    }

    /// Reads the database's count of key changes and forgets every cached key if it moved
    /// since the last read. A read that fails forgets them too: nothing says they are still
    /// right.
    pub async fn recheck(&self, db: &Db) {
        let changes = match settings::get(db, CHANGES_SETTING).await {
            Ok(changes) => changes,
            Err(error) => {
                tracing::warn!(%error, "could not read the count of API key changes");
                None
            }
        };
        let moved = {
            let mut seen = self
                .changes_seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let moved = changes.is_none() || *seen != changes;
            *seen = changes;
            moved
        };
        if moved {
            self.forget_all();
        }
    }

    /// Runs [`KeyCache::recheck`] every [`RECHECK_EVERY`] for as long as the process lives.
    pub fn spawn_recheck(self: Arc<KeyCache>, db: Db) {
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(RECHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.recheck(&db).await;
            }
        });
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
            role: "agent".into(),
            scope: None,
        }
    }

    fn cached(id: &str) -> Arc<CachedKey> {
        Arc::new(CachedKey::new(key(id)))
    }

    fn put(cache: &KeyCache, id: &str) {
        cache.put(cached(id), cache.generation());
    }

    #[test]
    fn caches_until_ttl_or_eviction() {
        let cache = KeyCache::new(Duration::from_millis(100));
        put(&cache, "a");
        assert!(cache.get("hash-a").is_some());
        cache.evict("a");
        assert!(cache.get("hash-a").is_none());
        put(&cache, "b");
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get("hash-b").is_none());
    }

    #[test]
    fn a_lookup_that_straddles_an_eviction_is_not_cached() {
        let cache = KeyCache::new(Duration::from_secs(60));
        let before = cache.generation();
        // The lookup reads the key; meanwhile it is revoked (and evicted).
        cache.evict("a");
        cache.put(cached("a"), before);
        assert!(cache.get("hash-a").is_none(), "the stale answer stays out");
        put(&cache, "a");
        assert!(cache.get("hash-a").is_some(), "a lookup after the eviction is cached");
    }

    #[test]
    fn roles_and_scopes_are_parsed_once_and_bad_ones_refuse_the_key() {
        let mut row = key("a");
        row.scope = Some(r#"{"agents":["w1"]}"#.into());
        let parsed = CachedKey::new(row.clone());
        assert_eq!(parsed.role, Some(Role::Agent));
        assert_eq!(
            parsed.scope.as_ref().map(|s| s.agents.clone()),
            Some(vec!["w1".to_owned()])
        );
        assert_eq!(parsed.actor, "a (k)");
        row.role = "owner".into();
        row.scope = Some("not json".into());
        let bad = CachedKey::new(row);
        assert_eq!(bad.role, None, "no key is an owner");
        assert!(bad.scope.is_none());
    }

    #[test]
    fn an_untrusted_cache_answers_nothing_and_forgets() {
        let cache = KeyCache::new(Duration::from_secs(60));
        put(&cache, "a");
        cache.set_trusted(false);
        assert!(cache.get("hash-a").is_none());
        put(&cache, "b");
        cache.set_trusted(true);
        assert!(cache.get("hash-a").is_none(), "what it held before is gone");
        assert!(cache.get("hash-b").is_none(), "nothing was kept while untrusted");
        put(&cache, "c");
        assert!(cache.get("hash-c").is_some());
    }
}
