//! `/api/v1/events/dlq`: the dead-letter API. Reads need role `viewer`, replays
//! `operator`, delete and purge `admin` ([`crate::roles`]); every replay, delete and
//! purge is rate limited per token and recorded in the audit trail ([`crate::audit`]).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use events::dlq::{DeadLetterFilter, DeadLetterReason, PageRequest, ReplayOptions, ReplayOutcome};
use events::{ConsumerName, EventType, OrganizationId, StreamName};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::AuditRecord;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::roles::Action;
use crate::{AdminState, metric_names};

/// Largest page the list endpoint returns.
pub const MAX_PAGE_SIZE: usize = 500;
/// Page size when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Most dead letters one `POST /dlq/replay` moves.
pub const MAX_REPLAY_BATCH: usize = 1000;
/// `max_count` of a batch replay when not given.
pub const DEFAULT_REPLAY_BATCH: usize = 100;

/// The routes, relative to `/api/v1/events/dlq`.
pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(list))
        .route("/replay", post(replay_many))
        .route("/purge", post(purge))
        .route("/{seq}", get(show).delete(delete))
        .route("/{seq}/replay", post(replay_one))
        .fallback(bad_path)
}

/// Any other path under the DLQ prefix (`/dlq/../x`, `/dlq/1/2`): a malformed request.
async fn bad_path() -> ApiError {
    ApiError::bad_request(
        "invalid_path",
        "expected /api/v1/events/dlq, /dlq/{seq}, /dlq/{seq}/replay, /dlq/replay or /dlq/purge",
    )
}

/// A dead-letter sequence: a positive decimal integer without sign or leading zeros.
fn parse_seq(raw: &str) -> Result<u64, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= 20
        && raw.bytes().all(|b| b.is_ascii_digit())
        && !raw.starts_with('0');
    ok.then(|| raw.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            // Echo at most 32 characters of what was sent.
            let shown: String = raw.chars().take(32).collect();
            ApiError::bad_request(
                "invalid_sequence",
                format!("sequence must be a positive integer, got {shown:?}"),
            )
        })
}

/// Query parameters of the list; unknown or repeated parameters are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    after: Option<String>,
    limit: Option<String>,
    original_stream: Option<String>,
    event_type: Option<String>,
    organization: Option<String>,
    reason: Option<String>,
    consumer: Option<String>,
    failed_from: Option<String>,
    failed_to: Option<String>,
    stored_from: Option<String>,
    stored_to: Option<String>,
}

fn invalid(param: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_parameter", format!("invalid {param}: {detail}"))
}

fn parse_time(param: &str, v: &Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    v.as_deref()
        .map(|s| OffsetDateTime::parse(s, &Rfc3339).map_err(|e| invalid(param, e)))
        .transpose()
}

impl ListParams {
    fn page(&self) -> Result<PageRequest, ApiError> {
        let after = match self.after.as_deref() {
            None | Some("0") => 0,
            Some(s) => parse_seq(s).map_err(|_| invalid("after", "expected a sequence number"))?,
        };
        let limit = match self.limit.as_deref() {
            None => DEFAULT_PAGE_SIZE,
            Some(s) => parse_seq(s)
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n <= MAX_PAGE_SIZE)
                .ok_or_else(|| invalid("limit", format!("expected 1 to {MAX_PAGE_SIZE}")))?,
        };
        Ok(PageRequest::after(after, limit))
    }

    fn filter(&self) -> Result<DeadLetterFilter, ApiError> {
        let mut f = DeadLetterFilter::new();
        if let Some(s) = &self.original_stream {
            f = f.original_stream(StreamName::new(s).map_err(|e| invalid("original_stream", e))?);
        }
        if let Some(s) = &self.event_type {
            f = f.event_type(EventType::new(s).map_err(|e| invalid("event_type", e))?);
        }
        if let Some(s) = &self.organization {
            f = f.organization(OrganizationId::new(s).map_err(|e| invalid("organization", e))?);
        }
        if let Some(s) = &self.reason {
            f = f.reason(DeadLetterReason::parse(s).ok_or_else(|| {
                invalid(
                    "reason",
                    "expected max_deliveries, permanent, undecodable or invalid",
                )
            })?);
        }
        if let Some(s) = &self.consumer {
            f = f.consumer(ConsumerName::new(s).map_err(|e| invalid("consumer", e))?);
        }
        f = f.failed_between(
            parse_time("failed_from", &self.failed_from)?,
            parse_time("failed_to", &self.failed_to)?,
        );
        f = f.stored_between(
            parse_time("stored_from", &self.stored_from)?,
            parse_time("stored_to", &self.stored_to)?,
        );
        Ok(f)
    }
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", e.body_text())
}

async fn list(
    State(state): State<AdminState>,
    Extension(admin): Extension<Admin>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.admit(&admin, Action::Read).await?;
    let Query(params) = params.map_err(query_error)?;
    let page = params.page()?;
    let filter = params.filter()?;
    let page = state.dead_letters().list(&filter, page).await?;
    Ok(Json(page).into_response())
}

async fn show(
    State(state): State<AdminState>,
    Extension(admin): Extension<Admin>,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    state.admit(&admin, Action::Read).await?;
    let seq = parse_seq(&seq)?;
    match state.dead_letters().get(seq).await? {
        Some(dl) => Ok(Json(dl).into_response()),
        None => Err(not_found(seq)),
    }
}

fn not_found(seq: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no dead letter with sequence {seq}"),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRunParam {
    dry_run: Option<String>,
}

fn parse_bool(param: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(invalid(param, "expected true or false")),
    }
}

async fn replay_one(
    State(state): State<AdminState>,
    Extension(admin): Extension<Admin>,
    Path(seq): Path<String>,
    params: Result<Query<DryRunParam>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.admit(&admin, Action::Replay).await?;
    let seq = parse_seq(&seq)?;
    let Query(params) = params.map_err(query_error)?;
    let dry_run = parse_bool("dry_run", params.dry_run.as_deref())?;
    let options = if dry_run {
        ReplayOptions::dry_run()
    } else {
        ReplayOptions::execute()
    };
    let result = state.dead_letters().replay(seq, options).await;
    let outcome = match &result {
        Ok(item) => outcome_label(&item.outcome),
        Err(e) if e.is_not_found() => "not_found",
        Err(_) => "error",
    };
    metrics::counter!(metric_names::ADMIN_DLQ_ACTIONS_TOTAL, "action" => "replay", "outcome" => outcome)
        .increment(1);
    match &result {
        Ok(item) => tracing::info!(
            token_id = %admin.token_id, dlq_sequence = seq, dry_run,
            subject = item.subject.as_deref().unwrap_or(""),
            outcome = ?item.outcome, "admin replayed a dead letter"
        ),
        Err(e) => tracing::info!(
            token_id = %admin.token_id, dlq_sequence = seq, dry_run, error = %e,
            "admin replay of a dead letter failed"
        ),
    }
    let mut record = AuditRecord::new(&admin, Action::Replay, format!("dlq/{seq}"));
    record.dry_run = dry_run;
    record.count = u64::from(matches!(
        &result,
        Ok(item) if matches!(item.outcome, ReplayOutcome::Replayed { .. } | ReplayOutcome::WouldReplay { .. })
    ));
    record.outcome = outcome.to_owned();
    state.audit(&record).await;
    Ok(Json(result?).into_response())
}

/// The `outcome` label of `admin_dlq_actions_total` for one replayed dead letter. The
/// losers of concurrent replays of one dead letter count as `already_replayed`.
pub(crate) fn outcome_label(outcome: &ReplayOutcome) -> &'static str {
    match outcome {
        ReplayOutcome::WouldReplay { .. } => "dry_run",
        ReplayOutcome::Replayed { .. } => "ok",
        ReplayOutcome::AlreadyReplayed { .. } => "already_replayed",
        _ => "error",
    }
}

/// Body of `POST /api/v1/events/dlq/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayManyBody {
    #[serde(default)]
    filter: DeadLetterFilter,
    #[serde(default)]
    max_count: Option<usize>,
    #[serde(default)]
    dry_run: bool,
}

fn json_error(e: JsonRejection) -> ApiError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "request body is larger than {} bytes",
                crate::MAX_BODY_BYTES
            ),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        _ => ApiError::bad_request("invalid_body", e.body_text()),
    }
}

async fn replay_many(
    State(state): State<AdminState>,
    Extension(admin): Extension<Admin>,
    body: Result<Json<ReplayManyBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    state.admit(&admin, Action::Replay).await?;
    let Json(body) = body.map_err(json_error)?;
    let max_count = body.max_count.unwrap_or(DEFAULT_REPLAY_BATCH);
    if max_count == 0 || max_count > MAX_REPLAY_BATCH {
        return Err(ApiError::bad_request(
            "invalid_max_count",
            format!("max_count must be 1 to {MAX_REPLAY_BATCH}"),
        ));
    }
    let options = if body.dry_run {
        ReplayOptions::dry_run()
    } else {
        ReplayOptions::execute()
    };
    let result = state
        .dead_letters()
        .replay_many(&body.filter, max_count, options)
        .await;
    let mut record = AuditRecord::new(&admin, Action::Replay, filter_target(&body.filter));
    record.dry_run = body.dry_run;
    match &result {
        Ok(report) => record.count = report.replayed,
        Err(e) => record.outcome = crate::error::dlq_code(e).to_owned(),
    }
    state.audit(&record).await;
    let report = result?;
    for item in &report.items {
        let outcome = outcome_label(&item.outcome);
        metrics::counter!(metric_names::ADMIN_DLQ_ACTIONS_TOTAL, "action" => "replay", "outcome" => outcome)
            .increment(1);
        tracing::info!(
            token_id = %admin.token_id, dlq_sequence = item.dlq_sequence, dry_run = body.dry_run,
            subject = item.subject.as_deref().unwrap_or(""), outcome = ?item.outcome,
            "admin replayed a dead letter (batch)"
        );
    }
    tracing::info!(
        token_id = %admin.token_id, filter = ?body.filter, max_count, dry_run = body.dry_run,
        replayed = report.replayed, failed = report.failed, capped = report.capped,
        "admin batch replay done"
    );
    Ok(Json(report).into_response())
}

async fn delete(
    State(state): State<AdminState>,
    Extension(admin): Extension<Admin>,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    state.admit(&admin, Action::Delete).await?;
    let seq = parse_seq(&seq)?;
    let result = state.dead_letters().delete(seq).await;
    let outcome = match &result {
        Ok(()) => "ok",
        Err(e) if e.is_not_found() => "not_found",
        Err(_) => "error",
    };
    metrics::counter!(metric_names::ADMIN_DLQ_ACTIONS_TOTAL, "action" => "delete", "outcome" => outcome)
        .increment(1);
    match &result {
        Ok(()) => {
            tracing::info!(token_id = %admin.token_id, dlq_sequence = seq, "admin deleted a dead letter")
        }
        Err(e) => tracing::info!(
            token_id = %admin.token_id, dlq_sequence = seq, error = %e,
            "admin delete of a dead letter failed"
        ),
    }
    let mut record = AuditRecord::new(&admin, Action::Delete, format!("dlq/{seq}"));
    record.count = u64::from(result.is_ok());
    record.outcome = outcome.to_owned();
    state.audit(&record).await;
    result?;
    Ok(Json(json!({ "deleted": seq })).into_response())
}

/// The audit target of a filtered action: `all`, or the filter's set fields as JSON.
fn filter_target(filter: &DeadLetterFilter) -> String {
    if filter.is_empty() {
        return "all".to_owned();
    }
    let mut json = serde_json::to_value(filter).unwrap_or_default();
    if let Some(fields) = json.as_object_mut() {
        fields.retain(|_, v| !v.is_null());
    }
    format!("filter {json}")
}

/// Body of `POST /api/v1/events/dlq/purge`: a filter, or `all: true` for every dead
/// letter (an empty filter alone is refused, so that nobody purges all by omission).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    #[serde(default)]
    filter: DeadLetterFilter,
    #[serde(default)]
    all: bool,
}

async fn purge(
    State(state): State<AdminState>,
    Extension(admin): Extension<Admin>,
    body: Result<Json<PurgeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    state.admit(&admin, Action::Purge).await?;
    let Json(body) = body.map_err(json_error)?;
    if body.filter.is_empty() != body.all {
        return Err(ApiError::bad_request(
            "invalid_purge",
            "give a non-empty filter, or all: true (and no filter) to purge every dead letter",
        ));
    }
    let result = state.dead_letters().purge(&body.filter).await;
    let mut record = AuditRecord::new(&admin, Action::Purge, filter_target(&body.filter));
    match &result {
        Ok(n) => record.count = *n,
        Err(e) => record.outcome = crate::error::dlq_code(e).to_owned(),
    }
    state.audit(&record).await;
    let purged = result?;
    metrics::counter!(metric_names::ADMIN_DLQ_ACTIONS_TOTAL, "action" => "purge", "outcome" => "ok")
        .increment(1);
    tracing::info!(token_id = %admin.token_id, filter = ?body.filter, purged, "admin purged dead letters");
    Ok(Json(json!({ "purged": purged })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_strict() {
        assert_eq!(parse_seq("1").ok(), Some(1));
        assert_eq!(parse_seq("18446744073709551615").ok(), Some(u64::MAX));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "01",
            "abc",
            "../x",
            "1.5",
            " 1",
            "1 ",
            "18446744073709551616",
            "1e3",
            "0x10",
        ] {
            assert!(parse_seq(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn list_params_are_validated_one_by_one() {
        let p = ListParams {
            limit: Some("0".into()),
            ..Default::default()
        };
        assert!(p.page().is_err());
        let p = ListParams {
            limit: Some((MAX_PAGE_SIZE + 1).to_string()),
            ..Default::default()
        };
        assert!(p.page().is_err());
        let p = ListParams {
            after: Some("0".into()),
            limit: Some("10".into()),
            ..Default::default()
        };
        assert_eq!(p.page().ok(), Some(PageRequest::after(0, 10)));
        for (field, value) in [
            ("event_type", "AUTH.x"),
            ("reason", "bored"),
            ("original_stream", "a.b"),
            ("organization", "o/rg"),
            ("consumer", "c*"),
            ("failed_from", "yesterday"),
        ] {
            let mut p = ListParams::default();
            let v = Some(value.to_owned());
            match field {
                "event_type" => p.event_type = v,
                "reason" => p.reason = v,
                "original_stream" => p.original_stream = v,
                "organization" => p.organization = v,
                "consumer" => p.consumer = v,
                _ => p.failed_from = v,
            }
            let err = p.filter().expect_err(field);
            assert!(err.message.contains(field), "{}", err.message);
        }
    }
}
