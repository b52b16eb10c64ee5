//! Route handlers of the HTTP API (spec control-plane §4.3–§4.8, §7.1) plus `/healthz`,
//! `/readyz` and `/metrics`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState, json_response};
use crate::auth::{AuthError, CredentialError, Identity, LoginError, RegisterError};
use crate::calls::LookupError;
use crate::limits::{Limit, short};
use crate::metrics::Metrics;
use crate::ws::conn::{self, MAX_MESSAGE_SIZE};

type Shared = State<Arc<AppState>>;
/// The caller's address (set by `api::server` on every request).
type Source = ConnectInfo<SocketAddr>;

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    source: SocketAddr,
    route: &str,
) -> Result<Identity, AuthError> {
    let result = state
        .auth
        .authenticate(authorization(headers), source.ip())
        .await;
    if let Err(AuthError::Failed(CredentialError::RateLimited)) = &result {
        state.metrics.refused(Limit::auth_rate);
    }
    match &result {
        Ok(identity) => tracing::debug!(
            route,
            client_id = identity.client_id(),
            status = "success",
            "authentication"
        ),
        // The detailed reason (unknown client, mismatch, rate limit) is only logged.
        Err(AuthError::Failed(why)) => {
            tracing::debug!(route, status = "fail", error = %why, "authentication")
        }
        Err(err) => tracing::debug!(route, status = "fail", error = %err, "authentication"),
    }
    result
}

/// Decodes a JSON object of strings; an empty body is Go's `EOF`.
fn string_object(body: &Bytes) -> Result<HashMap<String, String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("EOF"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub async fn version(State(state): Shared) -> Response {
    json_response(StatusCode::OK, &state.version)
}

pub async fn system(State(state): Shared) -> Response {
    json_response(StatusCode::OK, &json!({ "cpu_load": state.cpu.get() }))
}

pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

pub async fn readyz(State(state): Shared) -> Response {
    if state.is_draining() {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "reason": "draining" }),
        )
    } else {
        json_response(StatusCode::OK, &json!({ "ready": true }))
    }
}

/// `/metrics`, gzip-compressed when the scraper accepts it (as upstream's handler does).
pub async fn metrics(State(state): Shared, headers: HeaderMap) -> Response {
    let text = state.metrics.encode();
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static(Metrics::CONTENT_TYPE),
    );
    if !accepts_gzip(&headers) {
        return ([content_type], text).into_response();
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 4),
        flate2::Compression::fast(),
    );
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(text.as_bytes());
    let body = encoder.finish().unwrap_or_default();
    (
        [
            content_type,
            (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            (header::VARY, HeaderValue::from_static("Accept-Encoding")),
        ],
        body,
    )
        .into_response()
}

/// Whether `Accept-Encoding` lists gzip with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !q_zero
        })
}

pub async fn register(
    State(state): Shared,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !state.allow_self_registration {
        authenticate(&state, &headers, source, "/register")
            .await
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    }
    let fields = string_object(&body)?;
    let client_id = fields.get("clientID").map_or("", String::as_str);
    let key = fields.get("authKey").map_or("", String::as_str);
    match state.auth.register(client_id, key, source.ip()).await {
        Ok(()) => {
            tracing::info!(client_id, "client registered");
            Ok(json_response(
                StatusCode::CREATED,
                &json!({ "clientID": client_id, "code": "201" }),
            ))
        }
        Err(err) => {
            if let RegisterError::RateLimited = err {
                state.metrics.refused(Limit::auth_rate);
            }
            tracing::debug!(client_id = %short(client_id), error = %err, "registration failed");
            Err(ApiError::bad_request(err.to_string()))
        }
    }
}

pub async fn unregister(
    State(state): Shared,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !state.enable_admin && !state.allow_self_registration {
        return Err(ApiError::forbidden("unregister not enabled"));
    }
    let identity = authenticate(&state, &headers, source, "/unregister")
        .await
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let fields = string_object(&body)?;
    let client_id = fields.get("clientID").map_or("", String::as_str);
    if client_id.is_empty() {
        return Err(ApiError::bad_request("client id should not be empty"));
    }
    if let Identity::Client(own) = &identity
        && own != client_id
    {
        return Err(ApiError::forbidden("client id not valid"));
    }
    state
        .auth
        .unregister(client_id)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.hub.client_unregistered(client_id);
    tracing::info!(client_id, "client unregistered");
    Ok(json_response(StatusCode::OK, &json!({ "code": "200" })))
}

pub async fn login(
    State(state): Shared,
    ConnectInfo(source): Source,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = string_object(&body)?;
    let client_id = fields.get("clientID").map_or("", String::as_str);
    let key = fields.get("authKey").map_or("", String::as_str);
    match state.auth.login(client_id, key, source.ip()).await {
        Ok(token) => Ok(json_response(
            StatusCode::OK,
            &json!({ "bearerToken": token, "code": "200" }),
        )),
        Err(err) => {
            if let LoginError::RateLimited = err {
                state.metrics.refused(Limit::auth_rate);
            }
            tracing::debug!(client_id = %short(client_id), error = %err, "login failed");
            Err(ApiError::bad_request(err.to_string()))
        }
    }
}

/// The caller's group for the sessions routes: admin or failed auth → plain 401.
async fn sessions_group(
    state: &AppState,
    headers: &HeaderMap,
    source: SocketAddr,
) -> Result<String, ApiError> {
    match authenticate(state, headers, source, "/calls").await {
        Ok(Identity::Client(id)) => Ok(id),
        _ => Err(ApiError::Text(
            StatusCode::UNAUTHORIZED,
            "unauthorized".into(),
        )),
    }
}

fn lookup_error(prefix: &str, err: LookupError) -> ApiError {
    ApiError::Text(StatusCode::NOT_FOUND, format!("{prefix}: {err}"))
}

pub async fn call_sessions(
    State(state): Shared,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    Path(call_id): Path<String>,
) -> Result<Response, ApiError> {
    let group = sessions_group(&state, &headers, source).await?;
    let sessions = state
        .hub
        .call_sessions(&group, &call_id)
        .map_err(|e| lookup_error("failed to get session configs", e))?;
    Ok(json_response(StatusCode::OK, &sessions))
}

/// `GET /calls/{id}/stats` (new in this port): the call's quality from the SFU's own
/// measurements, beside the sessions endpoint (whose shape stays upstream's).
pub async fn call_stats(
    State(state): Shared,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    Path(call_id): Path<String>,
) -> Result<Response, ApiError> {
    let group = sessions_group(&state, &headers, source).await?;
    let quality = state
        .hub
        .call_quality(&group, &call_id)
        .map_err(|e| lookup_error("failed to get call stats", e))?;
    Ok(json_response(StatusCode::OK, &quality))
}

pub async fn call_session(
    State(state): Shared,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    Path((call_id, session_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let group = sessions_group(&state, &headers, source).await?;
    let session = state
        .hub
        .call_session(&group, &call_id, &session_id)
        .map_err(|e| lookup_error("failed to get session config", e))?;
    Ok(json_response(StatusCode::OK, &session))
}

/// The operator's endpoints answer the admin credential only (401 otherwise).
async fn admin_only(
    state: &AppState,
    headers: &HeaderMap,
    source: SocketAddr,
) -> Result<(), ApiError> {
    match authenticate(state, headers, source, "/admin").await {
        Ok(Identity::Admin) => Ok(()),
        _ => Err(ApiError::Text(
            StatusCode::UNAUTHORIZED,
            "unauthorized".into(),
        )),
    }
}

/// `GET /admin/calls` (new in this port): every group's calls with their session counts, for
/// the operator (admin credential; the tenant-scoped `/calls/…` routes refuse the admin, as
/// upstream's do).
pub async fn admin_calls(
    State(state): Shared,
    ConnectInfo(source): Source,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin_only(&state, &headers, source).await?;
    Ok(json_response(StatusCode::OK, &state.hub.all_calls()))
}

/// `GET /admin/calls/{groupID}/{callID}/stats` (new in this port): any call's quality, for the
/// operator.
pub async fn admin_call_stats(
    State(state): Shared,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    Path((group, call_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin_only(&state, &headers, source).await?;
    let quality = state
        .hub
        .call_quality(&group, &call_id)
        .map_err(|e| lookup_error("failed to get call stats", e))?;
    Ok(json_response(StatusCode::OK, &quality))
}

/// `GET /ws`: authenticate first (401 on failure, upstream answered an empty 200), check the
/// origin, then upgrade.
pub async fn websocket(
    State(state): Shared,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Response> {
    let identity = authenticate(&state, &headers, source, "/ws")
        .await
        .map_err(|e| ApiError::unauthorized(e.to_string()).into_response())?;
    if !origin_matches_host(&headers) {
        return Err(ApiError::forbidden("origin not allowed").into_response());
    }
    let upgrade = upgrade.map_err(IntoResponse::into_response)?;
    let connected = state.hub.connect(identity.client_id()).map_err(|refused| {
        tracing::warn!(client_id = %short(identity.client_id()), "WebSocket refused: {refused}");
        ApiError::too_many_requests(refused.to_string()).into_response()
    })?;
    let shutdown = state.ws_shutdown.clone();
    Ok(upgrade
        .max_message_size(MAX_MESSAGE_SIZE)
        .max_frame_size(MAX_MESSAGE_SIZE)
        .on_upgrade(move |socket| conn::serve(socket, connected, shutdown)))
}

/// Requests without `Origin` pass; otherwise its host must equal `Host` (gorilla's default).
fn origin_matches_host(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}
