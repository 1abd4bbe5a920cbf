//! Wiring: logging, the database, actors and the HTTP server.

use crate::api;
use crate::audit::AuditLog;
use crate::auth::jwt::JwtKeys;
use crate::auth::key_cache::KeyCache;
use crate::auth::key_use::KeyUses;
use crate::auth::rate_limit::RateLimiter;
use crate::cluster;
use crate::config::{Config, LogFormat};
use crate::dashboard;
use crate::db::{self, Db};
use crate::email::Mailer;
use crate::events::EventBus;
use crate::integrations::IntegrationDispatcher;
use crate::metrics::{http::track_requests, Metrics};
use crate::state::AppState;
use crate::tenant::{SupervisorDeps, TenantRegistry};
use crate::watch::Watchers;
use actix::{Actor, Arbiter};
use actix_web::middleware::{from_fn, Condition, ErrorHandlers, Logger};
use actix_web::{web, App, HttpServer};
use rand::distr::{Alphanumeric, SampleString};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use utoipa_actix_web::AppExt;

/// How long an unused API key stays cached. What the cache holds is kept true to the
/// database otherwise (evicted on revocation, forgotten within a second of a change made in
/// SQL: `key_cache`), so this only bounds its size. It outlasts an idle agent's minute
/// between requests: with one key per agent, as the README advises, a 5 s TTL made nearly
/// every poll and heartbeat of an idle fleet a database read.
const KEY_CACHE_TTL: Duration = Duration::from_secs(300);

/// The target of the access log's lines (one per request, at INFO).
const ACCESS_LOG_TARGET: &str = "scriptmesh::http";

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_web=warn,actix_server=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the orchestrator until it is stopped (SIGINT/SIGTERM).
pub fn run(config: Config) -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    actix_rt::System::new().block_on(serve(config))
}

async fn serve(config: Config) -> std::io::Result<()> {
    let io_error = |e: crate::error::Error| std::io::Error::other(e.to_string());
    let backend = db::Backend::from_url(&config.database_url).map_err(std::io::Error::other)?;
    // PostgreSQL connections carry this process's name, which the notification triggers
    // pass on so that each replica can tell its own writes from the others'.
    let replica = cluster::replica_name();
    let (database_url, _sqlite_lock) = match &backend {
        db::Backend::Postgres(url) => (
            cluster::with_application_name(url, &replica)
                .map_err(|e| std::io::Error::other(format!("DATABASE_URL: {e}")))?,
            None,
        ),
        db::Backend::Sqlite(path) => (
            config.database_url.clone(),
            Some(
                cluster::single_process_lock(std::path::Path::new(path))
                    .map_err(|e| std::io::Error::other(format!("DATABASE_URL: {e}")))?,
            ),
        ),
    };
    tracing::info!(backend = backend.name(), %replica, "opening the database and applying migrations");
    let db = Db::connect(&database_url, config.database_pool_size)
        .await
        .map_err(io_error)?;

    let secret = match &config.jwt_secret {
        Some(secret) => secret.clone(),
        None => db::settings::get_or_insert(&db, "jwt_secret", || Alphanumeric.sample_string(&mut rand::rng(), 64))
            .await
            .map_err(io_error)?,
    };
    let mailer = Mailer::from_config(&config).map_err(io_error)?;
    tracing::info!(email = mailer.describe(), "email transport");

    let config = Arc::new(config);
    let metrics = Metrics::new().map_err(std::io::Error::other)?;
    // On its own thread: slow or dead receivers never hold up the bus or the tenants.
    let integrations = IntegrationDispatcher::start_on_own_thread(db.clone(), config.clone(), metrics.clone());
    let events = EventBus::new(db.clone())
        .with_listener(integrations.clone().recipient())
        .start();
    let arbiters: Vec<_> = (0..config.workers.max(1)).map(|_| Arbiter::new().handle()).collect();
    let watchers = Arc::new(Watchers::default());
    let key_cache = Arc::new(KeyCache::new(KEY_CACHE_TTL));
    let deps = SupervisorDeps {
        db: db.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        watchers: watchers.clone(),
        dispatch_ack_timeout: config.dispatch_ack_timeout,
    };
    let tenants = TenantRegistry::new(deps, config.clone(), key_cache.clone(), arbiters).start();
    if matches!(db, Db::Postgres(_)) {
        // Until the listener is up, revocations elsewhere could go unheard.
        key_cache.set_trusted(false);
        cluster::spawn_listener(
            database_url.clone(),
            cluster::Router {
                me: replica.clone(),
                registry: tenants.clone(),
                watchers: watchers.clone(),
                keys: key_cache.clone(),
                metrics: metrics.clone(),
            },
        );
        db::maintenance::spawn(database_url.clone());
    }
    key_cache.clone().spawn_recheck(db.clone());
    let key_uses = Arc::new(KeyUses::default());
    key_uses.clone().spawn_flusher(db.clone());
    let (final_flush, final_flush_db) = (key_uses.clone(), db.clone());
    let audit = Arc::new(AuditLog::default());
    audit.clone().spawn(db.clone(), config.audit_retention);
    let final_audit = audit.clone();

    let state = web::Data::new(AppState {
        db,
        config: config.clone(),
        jwt: JwtKeys::new(secret.as_bytes()),
        mailer: Arc::new(mailer),
        rate_limiter: RateLimiter::new(Duration::from_secs(60)),
        key_cache,
        key_uses,
        watchers,
        tenants,
        events,
        integrations,
        metrics: metrics.clone(),
        audit,
    });

    // The access log formats every request even when its lines are filtered out
    // (`RUST_LOG=warn`); an idle fleet's polls and heartbeats make that a measurable share
    // of the orchestrator's CPU, so it is left out when it would print nothing.
    let access_log = tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::INFO);
    // Built and serialised once; every worker serves the same bytes.
    let openapi_json = web::Bytes::from(api::docs::openapi().to_json().map_err(std::io::Error::other)?);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(metrics.clone())
            .wrap(ErrorHandlers::new().default_handler(api::json_errors))
            .wrap(Condition::new(
                access_log,
                Logger::new("%a \"%r\" %s %Dms").log_target(ACCESS_LOG_TARGET),
            ))
            // Outermost: it times everything and sees the final status.
            .wrap(from_fn(track_requests))
            .into_utoipa_app()
            .configure(api::configure)
            .into_app()
            .configure(api::docs::pages(openapi_json.clone()))
            // The dashboard's pages (api::docs::UNDOCUMENTED): it calls the API above.
            .configure(dashboard::routes)
            .default_service(web::to(api::not_found))
    })
    .workers(config.workers)
    .tcp_nodelay(true)
    .shutdown_timeout(5)
    .bind(config.bind_addr)?;

    for addr in server.addrs() {
        tracing::info!(%addr, "listening");
        // One machine-readable line on stdout: scripts and the test suite wait for it.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "scriptmesh-orchestrator listening on http://{addr}");
        let _ = stdout.flush();
    }
    server.run().await?;
    // Stopped: what the last seconds' requests marked is written too.
    final_flush.flush(&final_flush_db, db::now_ms()).await;
    final_audit.flush(&final_flush_db).await;
    Ok(())
}
