//! What every request handler can reach: the database, configuration, keys and actors.

use crate::audit::AuditLog;
use crate::auth::jwt::JwtKeys;
use crate::auth::key_cache::KeyCache;
use crate::auth::key_use::KeyUses;
use crate::auth::rate_limit::RateLimiter;
use crate::config::Config;
use crate::db::Db;
use crate::email::Mailer;
use crate::events::EventBus;
use crate::integrations::IntegrationDispatcher;
use crate::metrics::Metrics;
use crate::tenant::TenantRegistry;
use crate::watch::Watchers;
use actix::Addr;
use std::sync::Arc;

pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub jwt: JwtKeys,
    pub mailer: Arc<Mailer>,
    pub rate_limiter: RateLimiter,
    pub key_cache: Arc<KeyCache>,
    /// API keys used since the last write of `last_used_at`.
    pub key_uses: Arc<KeyUses>,
    /// Requests waiting for jobs to change (see `watch`).
    pub watchers: Arc<Watchers>,
    pub tenants: Addr<TenantRegistry>,
    pub events: Addr<EventBus>,
    /// Sends integration deliveries (test deliveries are asked of it directly).
    pub integrations: Addr<IntegrationDispatcher>,
    /// This server's Prometheus registry and metric handles.
    pub metrics: Metrics,
    /// Audit entries recorded and not yet written.
    pub audit: Arc<AuditLog>,
}
