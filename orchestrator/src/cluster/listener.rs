//! The one listening connection per process: `LISTEN scriptmesh`, hand every
//! notification to the [`Router`], and reconnect (with backoff) whenever the connection
//! is lost. A quiet connection is pinged, so a dead one is noticed within seconds. While
//! it is down the API-key cache is not trusted; on every (re)connect the registry
//! re-reads the database at once for whatever was missed.

use super::{Notice, Router, CHANNEL};
use crate::tenant::ResyncNow;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::{FutureExt, StreamExt};
use std::time::Duration;

/// A connection quiet this long is pinged.
const PING_AFTER: Duration = Duration::from_secs(2);
/// A ping (or the connect, or LISTEN) that takes longer means the connection is gone.
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// Notifications handed on in one go at most.
const MAX_BATCH: usize = 1024;

/// Starts listening in the background (on the current actix arbiter) for as long as the
/// process runs.
pub fn spawn_listener(database_url: String, router: Router) {
    actix_rt::spawn(async move {
        let mut retry = FIRST_RETRY;
        loop {
            let outcome = listen(&database_url, &router, &mut retry).await;
            router.keys.set_trusted(false);
            router.metrics.listener_up(false);
            match outcome {
                Ok(()) => tracing::warn!(
                    "lost the database connection that listens for other replicas' changes; reconnecting"
                ),
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = retry.as_millis() as u64, "cannot listen for other replicas' changes; retrying")
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(LAST_RETRY);
        }
    });
}

/// One connection's life: returns when it is lost.
async fn listen(database_url: &str, router: &Router, retry: &mut Duration) -> Result<(), String> {
    let mut conn = tokio::time::timeout(ROUND_TRIP_LIMIT, AsyncPgConnection::establish(database_url))
        .await
        .map_err(|_| "connecting timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(
        ROUND_TRIP_LIMIT,
        diesel::sql_query(format!("LISTEN {CHANNEL}")).execute(&mut conn),
    )
    .await
    .map_err(|_| "LISTEN timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    tracing::info!(channel = CHANNEL, "listening for other replicas' changes");
    *retry = FIRST_RETRY;
    router.keys.set_trusted(true);
    router.metrics.listener_up(true);
    router.registry.do_send(ResyncNow);
    loop {
        let batch = {
            let mut stream = std::pin::pin!(conn.notifications_stream());
            match tokio::time::timeout(PING_AFTER, stream.next()).await {
                Err(_quiet) => None,
                Ok(None) => return Ok(()),
                Ok(Some(Err(error))) => return Err(error.to_string()),
                Ok(Some(Ok(first))) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(more))) => batch.push(more),
                            _ => break,
                        }
                    }
                    Some(batch)
                }
            }
        };
        match batch {
            Some(batch) => router.route(batch.iter().filter_map(|n| Notice::parse(&n.payload))),
            None => {
                tokio::time::timeout(ROUND_TRIP_LIMIT, conn.batch_execute("SELECT 1"))
                    .await
                    .map_err(|_| "ping timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
            }
        }
    }
}
