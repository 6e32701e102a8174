//! Errors of console pages: an HTML page with the status and what went wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use events::dlq::DlqError;
use maud::html;

use super::layout;
use crate::error::ApiError;

/// A console error: rendered as a page naming the problem.
#[derive(Debug, Clone)]
pub(crate) struct UiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl UiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: a form field or query parameter is wrong (the message names it).
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 403: a change without the session's CSRF token.
    pub(crate) fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "refused: the form carried no valid CSRF token (reload the page and try again)",
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<DlqError> for UiError {
    /// The status the DLQ API gives the same error, with its message.
    fn from(e: DlqError) -> Self {
        let api = ApiError::from(e);
        Self::new(api.status, api.message)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            h1 { (self.status.as_u16()) " " (title) }
            p.error role="alert" { (self.message) }
            p { a href="/ui" { "Back to the overview" } }
        };
        (self.status, layout::page(title, None, body)).into_response()
    }
}
