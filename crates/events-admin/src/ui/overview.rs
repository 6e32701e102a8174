//! `GET /ui`: every stream (messages, bytes, first and last time, rate over the last
//! minute) and every durable consumer with its lag in messages and in seconds and a
//! verdict ([`super::health`]). Refreshes itself every 5 s through htmx.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{consumer, stream};
use axum::Extension;
use axum::extract::State;
use futures::TryStreamExt as _;
use maud::{Markup, html};
use time::OffsetDateTime;

use super::Ui;
use super::error::UiError;
use super::guard::{self, Action};
use super::health::{self, Now, Sample, Verdict};
use super::layout;
use super::session::Session;
use crate::AdminState;

/// Bound on reading every stream and consumer for one page.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

struct StreamRow {
    info: stream::Info,
    rate: Option<f64>,
    consumers: Vec<ConsumerRow>,
}

struct ConsumerRow {
    info: consumer::Info,
    lag_age: Option<Duration>,
    verdict: Verdict,
}

/// The overview page.
pub(crate) async fn page(
    session: Session,
    State(state): State<AdminState>,
    Extension(ui): Extension<Arc<Ui>>,
) -> Result<Markup, UiError> {
    guard::require(&session, Action::View, None)?;
    let streams = tokio::time::timeout(READ_TIMEOUT, read(&state, &ui))
        .await
        .map_err(|_| {
            UiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                format!("streams not read within {READ_TIMEOUT:?}"),
            )
        })??;
    Ok(layout::page("Overview", Some(&session), render(&streams)))
}

async fn read(state: &AdminState, ui: &Ui) -> Result<Vec<StreamRow>, UiError> {
    let nats = |what: &str, e: &dyn std::fmt::Display| {
        UiError::new(axum::http::StatusCode::BAD_GATEWAY, format!("{what}: {e}"))
    };
    let js = state.jetstream();
    let mut infos: Vec<stream::Info> = js
        .streams()
        .try_collect()
        .await
        .map_err(|e| nats("listing streams", &e))?;
    infos.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    let mut rows = Vec::with_capacity(infos.len());
    for info in infos {
        let handle = js
            .get_stream_no_info(&info.config.name)
            .await
            .map_err(|e| nats("opening a stream", &e))?;
        let mut consumers: Vec<consumer::Info> = handle
            .consumers()
            .try_collect()
            .await
            .map_err(|e| nats("listing consumers", &e))?;
        // Ephemeral consumers (tails, scans) come and go; the groups are what matter.
        consumers.retain(|c| c.config.durable_name.is_some());
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut crow = Vec::with_capacity(consumers.len());
        for c in consumers {
            let lag_age = events::subscriber::oldest_unfinished_age(&handle, &c).await;
            crow.push(ConsumerRow {
                verdict: Verdict::Ok,
                lag_age,
                info: c,
            });
        }
        rows.push(StreamRow {
            info,
            rate: None,
            consumers: crow,
        });
    }
    judge(&mut rows, ui);
    Ok(rows)
}

/// Records this reading in the history and sets rates and verdicts from it.
fn judge(rows: &mut [StreamRow], ui: &Ui) {
    let now = Instant::now();
    let wall = OffsetDateTime::now_utc();
    let mut history = ui.history.lock().unwrap_or_else(|p| p.into_inner());
    history.prune(now);
    for s in rows {
        s.rate = history.record_stream(&s.info.config.name, now, s.info.state.last_sequence);
        for c in &mut s.consumers {
            let i = &c.info;
            let sample = Sample {
                at: now,
                lag: i.num_pending + i.num_ack_pending as u64,
                ack_floor: i.ack_floor.stream_sequence,
            };
            let window = history.record_consumer(&format!("{}/{}", i.stream_name, i.name), sample);
            let since_delivery = i
                .delivered
                .last_active
                .map(|t| (wall - t).try_into().unwrap_or(Duration::ZERO));
            c.verdict = health::verdict(
                &window,
                Now {
                    waiting: i.num_waiting as u64,
                    since_delivery,
                },
            );
        }
    }
}

fn render(rows: &[StreamRow]) -> Markup {
    html! {
        h1 { "Overview" }
        div #live hx-get="/ui" hx-trigger="every 5s" hx-select="#live" hx-swap="outerHTML" {
            h2 { "Streams" }
            table #streams {
                thead { tr { th { "stream" } th { "subjects" } th.num { "messages" } th.num { "bytes" } th { "first" } th { "last" } th.num { "msgs/s (1 min)" } } }
                tbody {
                    @for s in rows {
                        @let st = &s.info.state;
                        tr data-stream=(s.info.config.name) {
                            td { (s.info.config.name) }
                            td { (s.info.config.subjects.join(", ")) }
                            td.num { (st.messages) }
                            td.num { (layout::bytes(st.bytes)) }
                            td { @if st.messages > 0 { (layout::time(st.first_timestamp)) } @else { "-" } }
                            td { @if st.messages > 0 { (layout::time(st.last_timestamp)) } @else { "-" } }
                            td.num { @match s.rate { Some(r) => (format!("{r:.1}")), None => "-" } }
                        }
                    }
                }
            }
            h2 { "Consumers" }
            table #consumers {
                thead { tr { th { "stream" } th { "consumer" } th.num { "pending" } th.num { "ack pending" } th.num { "lag" } th.num { "lag (s)" } th.num { "redelivered" } th.num { "waiting pulls" } th { "verdict" } } }
                tbody {
                    @for s in rows { @for c in &s.consumers { (consumer_row(c)) } }
                }
            }
            p.hint { "Lag = pending + ack pending (" code { "subscription_lag" } "); lag (s) = age of the oldest unfinished message (" code { "subscription_lag_seconds" } "). Verdicts are judged over the readings of the last 5 minutes while this page is open: STOP (pending, no pulls, nothing delivered for 60 s), STALL (lag above 0 and not shrinking, ack floor still, for 30 s or more), WARN (lag growing over 3+ readings), OK. See docs/CONSOLE.md." }
        }
    }
}

fn consumer_row(c: &ConsumerRow) -> Markup {
    let i = &c.info;
    let lag = i.num_pending + i.num_ack_pending as u64;
    let v = c.verdict.as_str();
    html! {
        tr data-consumer=(i.name) data-stream=(i.stream_name) {
            td { (i.stream_name) }
            td { (i.name) }
            td.num { (i.num_pending) }
            td.num { (i.num_ack_pending) }
            td.num.lag { (lag) }
            @match c.lag_age {
                Some(a) => td.num.lag-seconds title=(layout::age(a)) { (a.as_secs()) },
                None => td.num.lag-seconds title="oldest unfinished message not readable" { "?" },
            }
            td.num { (i.num_redelivered) }
            td.num { (i.num_waiting) }
            td { span class=(format!("verdict verdict-{}", v.to_ascii_lowercase())) { (v) } }
        }
    }
}
