//! `/healthz`, `/readyz`, `/metrics`: open to anyone who can reach the admin port.

use std::time::Duration;

use async_nats::connection::State as ConnState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::time::timeout;

use crate::AdminState;
use crate::error::ApiError;

/// Bound on each stream lookup of `/readyz`.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up and serving.
pub(crate) async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// NATS connected and every configured stream present (unless NATS is optional), and every
/// extra check passing; 503 naming what is missing.
pub(crate) async fn readyz(State(state): State<AdminState>) -> Response {
    let mut problems = Vec::new();
    for check in state.ready_checks() {
        match timeout(READY_CHECK_TIMEOUT, (check.0)()).await {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => problems.push(problem),
            Err(_) => problems.push(format!(
                "a check gave no answer within {READY_CHECK_TIMEOUT:?}"
            )),
        }
    }
    if !state.nats_required() {
        return ready_or_not(problems);
    }
    match state.client().connection_state() {
        ConnState::Connected => {
            for stream in state.required_streams() {
                match timeout(READY_CHECK_TIMEOUT, state.jetstream().get_stream(stream)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => problems.push(format!("stream {stream}: {e}")),
                    Err(_) => problems.push(format!(
                        "stream {stream}: no answer within {READY_CHECK_TIMEOUT:?}"
                    )),
                }
            }
        }
        other => problems.push(format!("NATS connection is {other:?}")),
    }
    ready_or_not(problems)
}

fn ready_or_not(problems: Vec<String>) -> Response {
    if problems.is_empty() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            problems.join("; "),
        )
        .into_response()
    }
}

/// Prometheus text: the recorder's metrics plus process metrics.
pub(crate) async fn metrics(State(state): State<AdminState>) -> Response {
    let Some(handle) = state.prometheus() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics_disabled",
            "no Prometheus recorder is configured",
        )
        .into_response();
    };
    handle.run_upkeep();
    let mut body = handle.render();
    process_metrics(&mut body);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Appends the standard `process_*` metrics read from `/proc/self` (Linux; elsewhere
/// nothing is added). CPU time assumes `USER_HZ` = 100, which Linux fixes for user space.
fn process_metrics(out: &mut String) {
    use std::fmt::Write as _;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        // Fields after the `(comm)`, which may itself hold spaces.
        && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
    {
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after `state`.
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
            let _ = write!(
                out,
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
                 # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n",
                (u + s) / 100.0
            );
        }
        if let Some(threads) = ticks(17) {
            let _ = write!(
                out,
                "# HELP process_threads Number of OS threads.\n\
                 # TYPE process_threads gauge\nprocess_threads {threads}\n"
            );
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    {
        let _ = write!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n",
            kb * 1024
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let _ = write!(
            out,
            "# HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\nprocess_open_fds {}\n",
            dir.count()
        );
    }
}

/// Any path that no route matches.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
