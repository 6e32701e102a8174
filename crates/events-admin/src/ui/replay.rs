//! Dead-letter actions: dry run, replay at a rate with live progress (server-sent events)
//! and a stop, purge with a typed confirmation. Every one goes through [`guard::require`]
//! and the library's `DeadLetters::replay` / `delete`, as the CLI and the API.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use events::dlq::ReplayOptions;
use futures::Stream;
use maud::{Markup, html};

use super::Ui;
use super::dlq;
use super::error::UiError;
use super::form::{self, Fields};
use super::guard::{self, Action};
use super::jobs::{self, Job, JobState, Line};
use super::layout;
use super::session::Session;
use crate::{AdminState, MAX_REPLAY_BATCH, metric_names};

/// The dead letters a form selects: its `seq` fields, or the group `group` of the dead
/// letters matching its filter fields. At most [`MAX_REPLAY_BATCH`].
async fn selection(state: &AdminState, f: &Fields) -> Result<Vec<u64>, UiError> {
    let mut seqs: Vec<u64> = f
        .all("seq")
        .map(|s| {
            s.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                UiError::bad_input(format!("invalid seq {s:?}: expected a positive integer"))
            })
        })
        .collect::<Result<_, _>>()?;
    if seqs.is_empty() {
        let Some(id) = f.get("group") else {
            return Err(UiError::bad_input(
                "nothing selected: tick dead letters or pick a group",
            ));
        };
        let (letters, _) = dlq::read(state, &form::filter(f)?).await?;
        let group = dlq::group(letters)
            .into_iter()
            .find(|g| g.fingerprint.id() == id);
        let group = group.ok_or_else(|| {
            UiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("no dead letters left in group {id}"),
            )
        })?;
        seqs = group.letters.iter().map(|dl| dl.sequence).collect();
    }
    seqs.sort_unstable();
    seqs.dedup();
    if seqs.len() > MAX_REPLAY_BATCH {
        return Err(UiError::bad_input(format!(
            "{} dead letters selected; at most {MAX_REPLAY_BATCH} per action",
            seqs.len()
        )));
    }
    Ok(seqs)
}

fn rate(f: &Fields) -> Result<f64, UiError> {
    let (lo, hi) = jobs::RATE_RANGE;
    match f.get("rate") {
        None => Ok(dlq::DEFAULT_RATE),
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|r| (lo..=hi).contains(r))
            .ok_or_else(|| {
                UiError::bad_input(format!(
                    "invalid rate {s:?}: expected {lo} to {hi} events per second"
                ))
            }),
    }
}

/// `POST /ui/dlq/replay`: `mode=dry_run` reports what would happen and offers the real
/// run; `mode=run` starts a job and redirects to its page.
pub(crate) async fn replay(
    session: Session,
    State(state): State<AdminState>,
    Extension(ui): Extension<Arc<Ui>>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let f = Fields(fields);
    guard::require(&session, Action::Replay, f.csrf())?;
    let rate = rate(&f)?;
    let seqs = selection(&state, &f).await?;
    match f.get("mode") {
        Some("run") => {
            let job = ui
                .jobs
                .start(state.dead_letters().clone(), seqs, rate, &session.token_id)
                .ok_or_else(|| {
                    UiError::new(
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        format!(
                            "{} replays are running; stop one or wait",
                            jobs::MAX_RUNNING_REPLAYS
                        ),
                    )
                })?;
            Ok(Redirect::to(&format!("/ui/jobs/{}", job.id)).into_response())
        }
        Some("dry_run") => {
            let mut lines = Vec::with_capacity(seqs.len());
            for &seq in &seqs {
                let r = state
                    .dead_letters()
                    .replay(seq, ReplayOptions::dry_run())
                    .await;
                lines.push(jobs::line(seq, &r));
            }
            Ok(layout::page(
                "Dry run",
                Some(&session),
                dry_run_page(&session, &seqs, rate, &lines),
            )
            .into_response())
        }
        _ => Err(UiError::bad_input("invalid mode: expected dry_run or run")),
    }
}

fn dry_run_page(session: &Session, seqs: &[u64], rate: f64, lines: &[Line]) -> Markup {
    let ok = lines.iter().filter(|l| l.outcome == "replayed").count();
    html! {
        h1 { "Dry run" }
        p #dry-run-summary { (ok) " of " (seqs.len()) " dead letter(s) would be replayed; nothing was changed." }
        (lines_table(lines))
        @if ok > 0 {
            form method="post" action="/ui/dlq/replay" {
                (layout::csrf_field(session))
                @for s in seqs { input type="hidden" name="seq" value=(s); }
                label { "rate (events/s) " input type="number" name="rate" min="0.1" max="1000" step="0.1" value=(rate); }
                button #replay-run type="submit" name="mode" value="run" { "Replay " (seqs.len()) " now" }
            }
        }
        p { a href="/ui/dlq" { "Back to the dead letters" } }
    }
}

fn lines_table(lines: &[Line]) -> Markup {
    html! {
        table.lines {
            thead { tr { th.num { "seq" } th { "outcome" } th { "detail" } } }
            tbody { @for l in lines { tr class=(l.outcome) { td.num { (l.seq) } td { (l.outcome) } td { (l.detail) } } } }
        }
    }
}

fn job_of(ui: &Ui, id: &str) -> Result<Arc<Job>, UiError> {
    id.parse::<u64>()
        .ok()
        .and_then(|id| ui.jobs.get(id))
        .ok_or_else(|| {
            UiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("no replay job {id:?}"),
            )
        })
}

/// `GET /ui/jobs/{id}`: progress (live while running, through `console.js`), then the
/// report of what was replayed, skipped or failed.
pub(crate) async fn job_page(
    session: Session,
    Extension(ui): Extension<Arc<Ui>>,
    Path(id): Path<String>,
) -> Result<Markup, UiError> {
    guard::require(&session, Action::View, None)?;
    let job = job_of(&ui, &id)?;
    let p = job.progress.borrow().clone();
    let running = p.state == JobState::Running;
    let body = html! {
        h1 { "Replay " (job.id) }
        p.hint { "Started by " (job.token_id) " at " (p.rate) " events/s." }
        div #job data-events=[running.then(|| format!("/ui/jobs/{}/events", job.id))] {
            progress #job-progress max=(p.total.max(1)) value=(if p.total == 0 { 1 } else { p.done }) {}
            " " span #job-percent { (p.percent) " %" }
            p {
                "state " strong #job-state { (format!("{:?}", p.state).to_lowercase()) } ", "
                span #job-done { (p.done) } " of " span #job-total { (p.total) } " done: "
                span #job-replayed { (p.replayed) } " replayed, "
                span #job-skipped { (p.skipped) } " skipped, "
                span #job-failed { (p.failed) } " failed"
            }
        }
        @if running {
            form method="post" action=(format!("/ui/jobs/{}/stop", job.id)) {
                (layout::csrf_field(&session))
                button #job-stop.danger type="submit" { "Stop" }
            }
        } @else {
            h2 { "Report" }
            (lines_table(&p.lines))
        }
        p { a href="/ui/dlq" { "Back to the dead letters" } }
    };
    Ok(layout::page("Replay", Some(&session), body))
}

/// `GET /ui/jobs/{id}/events`: `progress` events (JSON) on every change, until the job
/// ends.
pub(crate) async fn job_events(
    session: Session,
    Extension(ui): Extension<Arc<Ui>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, UiError> {
    guard::require(&session, Action::View, None)?;
    let rx = job_of(&ui, &id)?.progress.clone();
    let stream = futures::stream::unfold(Some((rx, true)), |st| async move {
        let (mut rx, first) = st?;
        // Sender gone: the value is final.
        let live = first || rx.changed().await.is_ok();
        let p = rx.borrow_and_update().clone();
        let next = (live && p.state == JobState::Running).then_some((rx, false));
        let event = Event::default()
            .event("progress")
            .json_data(&p)
            .unwrap_or_default();
        Some((Ok(event), next))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `POST /ui/jobs/{id}/stop`: stops the job after the dead letter in hand.
pub(crate) async fn stop_job(
    session: Session,
    Extension(ui): Extension<Arc<Ui>>,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    guard::require(&session, Action::StopReplay, Fields(fields).csrf())?;
    let job = job_of(&ui, &id)?;
    job.stop.cancel();
    tracing::info!(token_id = %session.token_id, job = job.id, "console replay stop asked");
    Ok(Redirect::to(&format!("/ui/jobs/{}", job.id)).into_response())
}

/// `POST /ui/dlq/purge`: deletes the selection once `confirm` reads `purge <count>`.
pub(crate) async fn purge(
    session: Session,
    State(state): State<AdminState>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Markup, UiError> {
    let f = Fields(fields);
    guard::require(&session, Action::Purge, f.csrf())?;
    let seqs = selection(&state, &f).await?;
    let expected = format!("purge {}", seqs.len());
    if f.get("confirm") != Some(expected.as_str()) {
        return Err(UiError::bad_input(format!(
            "not confirmed: type \"{expected}\" to purge these dead letters"
        )));
    }
    let (mut purged, mut gone) = (0, 0);
    for &seq in &seqs {
        let result = state.dead_letters().delete(seq).await;
        let outcome = match &result {
            Ok(()) => "ok",
            Err(e) if e.is_not_found() => "not_found",
            Err(_) => "error",
        };
        metrics::counter!(metric_names::ADMIN_DLQ_ACTIONS_TOTAL, "action" => "delete", "outcome" => outcome).increment(1);
        match result {
            Ok(()) => purged += 1,
            Err(e) if e.is_not_found() => gone += 1,
            Err(e) => return Err(e.into()),
        }
        tracing::info!(token_id = %session.token_id, dlq_sequence = seq, outcome, "console purged a dead letter");
    }
    let body = html! {
        h1 { "Purged" }
        p #purge-summary { (purged) " dead letter(s) purged" @if gone > 0 { ", " (gone) " already gone" } "." }
        p { a href="/ui/dlq" { "Back to the dead letters" } }
    };
    Ok(layout::page("Purged", Some(&session), body))
}
