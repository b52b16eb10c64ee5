//! Wiring and lifecycle of the daemon: build every component from the config, serve, then on
//! the first stop signal drain and shut down (spec control-plane §2.2–§2.3).
//!
//! Drain: `/readyz` turns false and `/system` reports a prohibitive load so the plugin places
//! new calls elsewhere, while existing calls continue and still accept joins. The process
//! stops when the last session ends, when `rtc.drain_timeout_minutes` passes (0 = never), or
//! at once on a second signal. Then media, WebSocket connections and HTTP shut down.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, server, tls};
use crate::auth::Auth;
use crate::config::{Config, StoreConfig};
use crate::media::{self, CloseReason, MediaPlane};
use crate::metrics::Metrics;
use crate::net::runtime::SfuPlane;
use crate::store::Store;
use crate::system::CpuLoad;
use crate::version::VersionInfo;
use crate::ws::Hub;

/// Deadline for the graceful HTTP shutdown.
pub const HTTP_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// A fatal service error; Display matches upstream's stderr prefixes.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("failed to create service: {0}")]
    Create(String),
    #[error("failed to start service: {0}")]
    Start(String),
    #[error("failed to stop service: {0}")]
    Stop(String),
}

/// Stop requests: each message is one SIGINT/SIGTERM (first = drain, second = exit now).
pub type StopSignals = mpsc::UnboundedReceiver<()>;

/// Runs the daemon until stopped.
pub async fn run(config: Config, mut stop: StopSignals) -> Result<(), ServiceError> {
    let default_location = config.store.data_source == StoreConfig::default().data_source;
    let store = Store::open(Path::new(&config.store.data_source), default_location)
        .map_err(|e| ServiceError::Create(format!("failed to create store: {e}")))?;
    tracing::info!(path = %store.path().display(), "store opened");
    let metrics = Arc::new(Metrics::new());
    let auth = Arc::new(Auth::new(Arc::new(store), &config.api.security));
    let (events_tx, mut events_rx) = media::event_channel();
    let media: Arc<dyn MediaPlane> =
        SfuPlane::start(&config.rtc, &config.limits, events_tx, metrics.clone())
            .map_err(|e| ServiceError::Start(format!("rtc: {e}")))?;
    let hub = Hub::new(media.clone(), metrics.clone(), config.limits.clone());
    let background = CancellationToken::new();
    let cpu = Arc::new(CpuLoad::default());
    cpu.spawn_sampler(background.child_token());

    let security = &config.api.security;
    let state = Arc::new(AppState {
        auth,
        hub: hub.clone(),
        metrics,
        cpu: cpu.clone(),
        version: VersionInfo::current(),
        allow_self_registration: security.allow_self_registration,
        enable_admin: security.enable_admin,
        draining: AtomicBool::new(false),
        ws_shutdown: CancellationToken::new(),
        request_timeout: Duration::from_secs(config.limits.http_header_timeout_seconds),
    });

    let http = &config.api.http;
    let tls_config = if http.tls.enable {
        Some(
            tls::server_config(
                Path::new(&http.tls.cert_file),
                Path::new(&http.tls.cert_key),
            )
            .map_err(|e| ServiceError::Create(format!("invalid TLS config: {e}")))?,
        )
    } else {
        None
    };
    let bind = http.socket_addr_string();
    let tcp = TcpListener::bind(&bind)
        .await
        .map_err(|e| ServiceError::Start(format!("failed to listen on {bind}: {e}")))?;
    let local = tcp
        .local_addr()
        .map_err(|e| ServiceError::Start(e.to_string()))?;
    let http_stop = CancellationToken::new();
    let app = api::router(state.clone());
    let serve_limits = server::ServeLimits {
        max_connections: config.limits.max_http_connections as usize,
        max_connections_per_ip: config.limits.max_http_connections_per_ip as usize,
        header_timeout: Duration::from_secs(config.limits.http_header_timeout_seconds),
    };
    let grace = HTTP_SHUTDOWN_DEADLINE - Duration::from_secs(2);
    let mut server = match tls_config {
        Some(tls_config) => {
            let listener = tls::TlsListener::new(tcp, tls_config)
                .map_err(|e| ServiceError::Start(e.to_string()))?;
            let stop = http_stop.clone();
            let metrics = state.metrics.clone();
            tokio::spawn(async move {
                server::serve(listener, app, serve_limits, metrics, stop, grace).await;
                Ok(())
            })
        }
        None => {
            let stop = http_stop.clone();
            let metrics = state.metrics.clone();
            tokio::spawn(async move {
                server::serve(tcp, app, serve_limits, metrics, stop, grace).await;
                Ok(())
            })
        }
    };
    let scheme = if http.tls.enable { "https" } else { "http" };
    tracing::info!("HTTP API listening on {scheme}://{local}");

    let dispatcher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                hub.dispatch(event);
            }
        })
    };

    tokio::select! {
        _ = stop.recv() => tracing::info!("stop signal received"),
        result = &mut server => {
            return Err(ServiceError::Start(format!("HTTP server ended: {}", describe(result))));
        }
    }

    drain(
        &state,
        &hub,
        &cpu,
        &mut stop,
        config.rtc.drain_timeout_minutes,
    )
    .await;

    media.shutdown();
    state.ws_shutdown.cancel();
    http_stop.cancel();
    let stopped = tokio::time::timeout(HTTP_SHUTDOWN_DEADLINE, &mut server).await;
    dispatcher.abort();
    background.cancel();
    match stopped {
        Ok(Ok(Ok(()))) => {
            tracing::info!("shutdown complete");
            Ok(())
        }
        Ok(result) => Err(ServiceError::Stop(describe(result))),
        Err(_) => {
            server.abort();
            Err(ServiceError::Stop("HTTP shutdown deadline exceeded".into()))
        }
    }
}

fn describe(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> String {
    match result {
        Ok(Ok(())) => "stopped".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Waits for sessions to end (or the drain timeout, or a second signal).
async fn drain(
    state: &AppState,
    hub: &Hub,
    cpu: &CpuLoad,
    stop: &mut StopSignals,
    timeout_minutes: u64,
) {
    state.draining.store(true, Ordering::Relaxed);
    cpu.set_draining();
    let mut sessions = hub.sessions();
    if *sessions.borrow() == 0 {
        return;
    }
    tracing::info!(
        sessions = *sessions.borrow(),
        "rtc: sessions ongoing, draining before exiting"
    );
    let deadline = async {
        match timeout_minutes {
            0 => std::future::pending().await,
            m => tokio::time::sleep(Duration::from_secs(m * 60)).await,
        }
    };
    tokio::select! {
        _ = sessions.wait_for(|n| *n == 0) => tracing::info!("drain complete: no sessions left"),
        _ = deadline => {
            tracing::warn!("drain timeout of {timeout_minutes} min reached, closing remaining sessions");
            hub.close_all_sessions(CloseReason::Shutdown);
        }
        _ = stop.recv() => {
            tracing::warn!("second stop signal: exiting without waiting for sessions");
            hub.close_all_sessions(CloseReason::Shutdown);
        }
    }
}
