//! `GET /api/v1/audit?limit=N`: the last N audit records, oldest first (any role).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::AdminState;
use crate::audit::MAX_AUDIT_READ;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::roles::Action;

/// Records returned when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;

pub(crate) fn routes() -> Router<AdminState> {
    Router::new().route("/", get(recent))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    limit: Option<String>,
}

async fn recent(
    State(state): State<AdminState>,
    Extension(admin): Extension<Admin>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.admit(&admin, Action::Read).await?;
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_AUDIT_READ).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("invalid limit: expected 1 to {MAX_AUDIT_READ}"),
                )
            })?,
    };
    let entries = state.audit_log().recent(limit).await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "audit_unavailable",
            events::error_chain(&e),
        )
    })?;
    Ok(Json(json!({ "items": entries })).into_response())
}
