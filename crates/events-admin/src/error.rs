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
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error with a `Retry-After` of `secs` seconds.
    #[must_use]
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<DlqError> for ApiError {
    fn from(e: DlqError) -> Self {
        let (status, code) = dlq_status(&e);
        Self::new(status, code, events::error_chain(&e))
    }
}

/// The stable error code a [`DlqError`] is answered with (for the audit trail).
pub(crate) fn dlq_code(e: &DlqError) -> &'static str {
    dlq_status(e).1
}

fn dlq_status(e: &DlqError) -> (StatusCode, &'static str) {
    {
        match e {
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
        }
    }
}
