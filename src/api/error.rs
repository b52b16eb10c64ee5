//! The one error type of the HTTP handlers and its response shapes (spec control-plane §4).
//!
//! JSON errors are `{"code":"<status>","error":"<message>"}` with a trailing newline; the
//! sessions routes and unknown paths answer in plain text as upstream (Go's `http.Error`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// JSON body `{"code","error"}` with this status.
    Json(StatusCode, String),
    /// Plain-text body (a trailing newline is added).
    Text(StatusCode, String),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::Json(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Self::Json(StatusCode::UNAUTHORIZED, msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Json(StatusCode::FORBIDDEN, msg.into())
    }
    /// A `[limits]` limit refused the request.
    pub fn too_many_requests(msg: impl Into<String>) -> Self {
        Self::Json(StatusCode::TOO_MANY_REQUESTS, msg.into())
    }
    /// Go's standard not-found response for unknown paths and wrong methods.
    pub fn not_found() -> Self {
        Self::Text(StatusCode::NOT_FOUND, "404 page not found".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Json(status, error) => {
                #[derive(Serialize)]
                struct Body<'a> {
                    code: String,
                    error: &'a str,
                }
                let body = Body {
                    code: status.as_u16().to_string(),
                    error: &error,
                };
                json_response(status, &body)
            }
            ApiError::Text(status, text) => {
                let mut response = (status, format!("{text}\n")).into_response();
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                headers.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                response
            }
        }
    }
}

/// A JSON response with a trailing newline, as Go's encoder writes it.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response()
        }
        Err(err) => {
            tracing::error!("failed to encode response: {err}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
