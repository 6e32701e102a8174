//! JSON error bodies: `{ "error": { "code": ..., "message": ... } }`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use events::dlq::DlqError;
use serde_json::json;

/// An error answer of the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`unauthorized`, `invalid_sequence`, `not_found`, ...).
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<DlqError> for ApiError {
    fn from(e: DlqError) -> Self {
        let message = events::error_chain(&e);
        let (status, code) = match &e {
            DlqError::InvalidSequence => (StatusCode::BAD_REQUEST, "invalid_sequence"),
            DlqError::InvalidPageLimit { .. } => (StatusCode::BAD_REQUEST, "invalid_limit"),
            DlqError::InvalidCount { .. } => (StatusCode::BAD_REQUEST, "invalid_max_count"),
            DlqError::InvalidFilter(_) => (StatusCode::BAD_REQUEST, "invalid_filter"),
            DlqError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            DlqError::StreamNotFound { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "dlq_stream_not_found")
            }
            DlqError::NoOriginalSubject { .. }
            | DlqError::InvalidOriginalSubject { .. }
            | DlqError::NoOriginalLocation { .. }
            | DlqError::OriginalMismatch { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "not_replayable")
            }
            // The dead letter is fine; the place it goes back to is missing: retry when a
            // stream stores the subject again.
            DlqError::NoStreamForSubject { .. } => (StatusCode::CONFLICT, "no_stream_for_subject"),
            DlqError::OriginalGone { .. } => (StatusCode::GONE, "original_gone"),
            DlqError::Publish { .. } => (StatusCode::BAD_GATEWAY, "replay_failed"),
            DlqError::ReplayedNotDeleted { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "replayed_not_deleted")
            }
            DlqError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            _ => (StatusCode::BAD_GATEWAY, "nats_error"),
        };
        Self::new(status, code, message)
    }
}
