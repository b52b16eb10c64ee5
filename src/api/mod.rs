//! HTTP API on `api.http.listen_address` (spec control-plane §4): the router, its shared
//! state and the listener (plain TCP or TLS).
//!
//! Owns: routes, status codes and bodies. Delegates credentials to `auth`, sessions and the
//! WebSocket protocol to `ws`, metrics encoding to `metrics`. Never touches SQL or media types.

mod error;
mod handlers;
pub mod server;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, json_response};

use crate::auth::Auth;
use crate::metrics::Metrics;
use crate::system::CpuLoad;
use crate::version::VersionInfo;
use crate::ws::Hub;

/// Largest request body accepted by the JSON routes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// State shared by every handler.
pub struct AppState {
    pub auth: Arc<Auth>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub cpu: Arc<CpuLoad>,
    pub version: VersionInfo,
    pub allow_self_registration: bool,
    pub enable_admin: bool,
    /// Set when a shutdown drain starts (`/readyz` turns false).
    pub draining: AtomicBool,
    /// Cancelled when WebSocket connections must close.
    pub ws_shutdown: CancellationToken,
    /// A request (headers, body and handler) must be done within this (upstream: read 30 s).
    pub request_timeout: std::time::Duration,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// The API router.
pub fn router(state: Arc<AppState>) -> Router {
    let not_found = || async { ApiError::not_found() };
    Router::new()
        .route("/version", get(handlers::version).fallback(not_found))
        .route("/system", get(handlers::system).fallback(not_found))
        .route("/healthz", get(handlers::healthz).fallback(not_found))
        .route("/readyz", get(handlers::readyz).fallback(not_found))
        .route("/metrics", any(handlers::metrics))
        .route("/register", post(handlers::register).fallback(not_found))
        .route(
            "/unregister",
            post(handlers::unregister).fallback(not_found),
        )
        .route("/login", post(handlers::login).fallback(not_found))
        .route(
            "/calls/{call_id}/sessions",
            get(handlers::call_sessions).fallback(not_found),
        )
        .route(
            "/calls/{call_id}/stats",
            get(handlers::call_stats).fallback(not_found),
        )
        .route(
            "/calls/{call_id}/sessions/{session_id}",
            get(handlers::call_session).fallback(not_found),
        )
        .route("/ws", get(handlers::websocket).fallback(not_found))
        .route(
            "/admin/calls",
            get(handlers::admin_calls).fallback(not_found),
        )
        .route(
            "/admin/calls/{group_id}/{call_id}/stats",
            get(handlers::admin_call_stats).fallback(not_found),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_deadline,
        ))
        .with_state(state)
}

/// Answers 408 to a request not done within [`AppState::request_timeout`] (a client sending
/// its body a byte at a time holds nothing for long). Upgraded WebSockets are not requests
/// any more once the upgrade is answered.
async fn request_deadline(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Json(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            format!(
                "request not completed within {} s (limits.http_header_timeout_seconds)",
                state.request_timeout.as_secs()
            ),
        )
        .into_response(),
    }
}
