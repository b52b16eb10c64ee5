//! The API's connection handling: accepts connections (plain TCP or TLS), serves each with
//! HTTP/1.1 and upgrades, and shuts down gracefully.
//!
//! Owns what `axum::serve` does not offer and hostile clients need (spec control-plane §4.1,
//! `docs/security.md`): a header-read timeout that also closes idle keep-alive connections
//! (`limits.http_header_timeout_seconds`, upstream 30 s), caps on open connections in all and
//! per source address (`limits.max_http_connections`, `limits.max_http_connections_per_ip`;
//! the excess is closed at once, before any byte is read), and
//! the peer address of each request ([`ConnectInfo`]) for the per-address auth limiter.
//! Upgraded WebSocket connections leave the cap and the timeouts: their own keepalive governs
//! them (`ws::conn`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::{Limit, LogThrottle, PerKeySlots};
use crate::metrics::Metrics;

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Connections from one source address served at once.
    pub max_connections_per_ip: usize,
    /// Time to send a request's headers, and the longest idle time between requests.
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` is cancelled, then lets the requests in flight
/// finish (connections close after their current response) and returns once every
/// connection has ended or `grace` has passed.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: ServeLimits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    grace: Duration,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_source = PerKeySlots::<IpAddr>::new(limits.max_connections_per_ip);
    let connections = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refused(Limit::http_connections);
            static THROTTLE: LogThrottle = LogThrottle::new();
            if let Some(suppressed) = THROTTLE.allow() {
                tracing::warn!(%peer, suppressed, "HTTP connection refused: {} open (limits.max_http_connections)", limits.max_connections);
            }
            drop(io);
            continue;
        };
        let Some(source_slot) = per_source.take(peer.ip()) else {
            metrics.refused(Limit::http_connections_per_ip);
            static THROTTLE: LogThrottle = LogThrottle::new();
            if let Some(suppressed) = THROTTLE.allow() {
                tracing::warn!(%peer, suppressed, "HTTP connection refused: {} open from this address (limits.max_http_connections_per_ip)", limits.max_connections_per_ip);
            }
            drop(io);
            continue;
        };
        let app = app.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _slots = (slot, source_slot);
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let mut app = app.clone();
                    async move { tower_service::Service::call(&mut app, request).await }
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let connection = builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::trace!(%peer, "HTTP connection ended: {err}");
                    }
                }
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} HTTP connections still open after {grace:?}; closing them",
            connections.len()
        );
    }
}
