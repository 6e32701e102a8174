//! `GET /ui/tail`: new events on a subject filter, live (server-sent events from an ordered
//! ephemeral consumer, as `eventctl tail`), filtered by organization and type, at most a
//! chosen number per second (the rest are counted as dropped, so a busy stream cannot
//! flood the browser); pausing is the browser's (`console.js` closes the stream).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use events::{SubjectFilter, raw_headers};
use futures::{Stream, StreamExt as _};
use maud::{Markup, html};
use serde_json::json;
use tokio::time::Instant;

use super::Ui;
use super::error::UiError;
use super::form::Fields;
use super::guard::{self, Action};
use super::layout;
use super::session::Session;
use crate::AdminState;

/// Events per second shown when not given, and the most allowed.
const DEFAULT_RATE: u32 = 20;
const MAX_RATE: u32 = 200;
/// Console live tails open at once (each holds a consumer on the server); one more is
/// refused (429) until one closes.
pub const MAX_LIVE_TAILS: usize = 20;
/// A tail ends after this; the browser reconnects on its own.
const MAX_TAIL: Duration = Duration::from_secs(15 * 60);
/// Bound on finding the stream and creating the consumer.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Body bytes shown per event.
const DATA_PREVIEW: usize = 2048;

struct Params {
    subject: SubjectFilter,
    org: Option<String>,
    event_type: Option<SubjectFilter>,
    rate: u32,
}

fn params(f: &Fields) -> Result<Option<Params>, UiError> {
    let Some(subject) = f.get("subject") else {
        return Ok(None);
    };
    let bad = |field: &str, e: &dyn std::fmt::Display| {
        UiError::bad_input(format!("invalid {field}: {e}"))
    };
    let subject = SubjectFilter::new(subject).map_err(|e| bad("subject", &e))?;
    let event_type = f
        .get("type")
        .map(SubjectFilter::new)
        .transpose()
        .map_err(|e| bad("type", &e))?;
    let rate = match f.get("rate") {
        None => DEFAULT_RATE,
        Some(s) => s
            .parse()
            .ok()
            .filter(|r| (1..=MAX_RATE).contains(r))
            .ok_or_else(|| {
                bad(
                    "rate",
                    &format!("expected 1 to {MAX_RATE} events per second"),
                )
            })?,
    };
    Ok(Some(Params {
        subject,
        org: f.get("org").map(str::to_owned),
        event_type,
        rate,
    }))
}

/// The tail page: the form, and the live list when a subject is given.
pub(crate) async fn page(
    session: Session,
    State(state): State<AdminState>,
    Query(fields): Query<Vec<(String, String)>>,
) -> Result<Markup, UiError> {
    guard::require(&session, Action::View, None)?;
    let f = Fields(fields);
    let p = params(&f)?;
    // Say at once when no stream stores the subject, rather than a stream that never opens.
    let problem = match &p {
        Some(p) => tokio::time::timeout(SETUP_TIMEOUT, stream_of(&state, &p.subject))
            .await
            .unwrap_or_else(|_| Err(UiError::bad_input("no answer from NATS")))
            .err()
            .map(|e| e.message),
        None => None,
    };
    let query = tail_query(&f);
    let body = html! {
        h1 { "Live tail" }
        form.filters method="get" action="/ui/tail" {
            label { "subject " input type="text" name="subject" required placeholder="auth.>" value=(f.get("subject").unwrap_or("")); }
            label { "organization " input type="text" name="org" value=(f.get("org").unwrap_or("")); }
            label { "type " input type="text" name="type" placeholder="auth.user.*" value=(f.get("type").unwrap_or("")); }
            label { "max events/s " input type="number" name="rate" min="1" max=(MAX_RATE) value=(p.as_ref().map_or(DEFAULT_RATE, |p| p.rate)); }
            button type="submit" { "Tail" }
        }
        @if let Some(problem) = &problem {
            p.error role="alert" { (problem) }
        } @else if p.is_some() {
            p {
                button #tail-pause type="button" { "Pause" }
                " " span #tail-status { "connecting" } " · dropped over the rate: " span #tail-dropped { "0" }
            }
            ol #tail-out reversed data-events=(format!("/ui/tail/events?{query}")) {}
            noscript { p { "The live tail needs JavaScript; " code { "eventctl tail" } " does the same in a terminal." } }
        }
    };
    Ok(layout::page("Live tail", Some(&session), body))
}

fn tail_query(f: &Fields) -> String {
    ["subject", "org", "type", "rate"]
        .iter()
        .filter_map(|k| {
            f.get(k).map(|v| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET /ui/tail/events`: `tail` events (JSON per event), `dropped` (how many the rate
/// bound held back so far), `error` (then the stream ends).
pub(crate) async fn events(
    session: Session,
    State(state): State<AdminState>,
    Extension(ui): Extension<Arc<Ui>>,
    Query(fields): Query<Vec<(String, String)>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, UiError> {
    guard::require(&session, Action::View, None)?;
    // Held by the stream: released when the browser goes away or the tail ends.
    let permit = ui.tails.clone().try_acquire_owned().map_err(|_| {
        UiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_LIVE_TAILS} live tails are open; close one"),
        )
    })?;
    let p = params(&Fields(fields))?.ok_or_else(|| UiError::bad_input("missing subject"))?;
    let messages = tokio::time::timeout(SETUP_TIMEOUT, open(&state, &p.subject))
        .await
        .map_err(|_| {
            UiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                "no answer from NATS",
            )
        })??;
    let deadline = Instant::now() + MAX_TAIL;
    let limiter = Limiter::new(p.rate);
    let stream =
        futures::stream::unfold(Some((messages, limiter, p, permit)), move |st| async move {
            let (mut messages, mut limiter, p, permit) = st?;
            loop {
                let next = tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return None,
                    n = messages.next() => n,
                };
                let msg = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        let ev = SseEvent::default().event("error").data(e.to_string());
                        return Some((Ok(ev), None));
                    }
                    None => return None,
                };
                let Some(data) = shown(&msg, &p) else {
                    continue;
                };
                match limiter.admit(Instant::now()) {
                    Admit::Yes => {
                        let ev = SseEvent::default().event("tail").data(data.to_string());
                        return Some((Ok(ev), Some((messages, limiter, p, permit))));
                    }
                    Admit::DroppedNotify(n) => {
                        let ev = SseEvent::default().event("dropped").data(n.to_string());
                        return Some((Ok(ev), Some((messages, limiter, p, permit))));
                    }
                    Admit::Dropped => {}
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn open(
    state: &AdminState,
    subject: &SubjectFilter,
) -> Result<async_nats::jetstream::consumer::pull::Ordered, UiError> {
    let nats = |e: &dyn std::fmt::Display| {
        UiError::new(axum::http::StatusCode::BAD_GATEWAY, e.to_string())
    };
    let js = state.jetstream();
    let stream = stream_of(state, subject).await?;
    let consumer = js
        .get_stream_no_info(&stream)
        .await
        .map_err(|e| nats(&e))?
        .create_consumer(OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: DeliverPolicy::New,
            description: Some("events console tail".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| nats(&e))?;
    consumer.messages().await.map_err(|e| nats(&e))
}

/// The stream that stores `subject`.
async fn stream_of(state: &AdminState, subject: &SubjectFilter) -> Result<String, UiError> {
    state
        .jetstream()
        .stream_by_subject(subject.as_str())
        .await
        .map_err(|e| UiError::bad_input(format!("no stream captures subject {subject}: {e}")))
}

/// The JSON the page shows for `msg`, `None` when a filter hides it (an undecodable
/// message cannot match an organization or type filter).
fn shown(msg: &async_nats::jetstream::Message, p: &Params) -> Option<serde_json::Value> {
    let info = msg.info().ok()?;
    let base = json!({ "stream": info.stream, "sequence": info.stream_sequence, "subject": msg.subject.as_str(), "stored_at": layout::time(info.published) });
    let mut out = base;
    match raw_headers::decode_message(&msg.subject, msg.headers.as_ref(), &msg.payload) {
        Ok(ev) => {
            if p.org
                .as_deref()
                .is_some_and(|o| o != ev.organization_id().as_str())
                || p.event_type
                    .as_ref()
                    .is_some_and(|t| !t.matches(ev.event_type().as_str()))
            {
                return None;
            }
            let mut data = serde_json::Value::Object(ev.data().clone()).to_string();
            truncate(&mut data);
            out["type"] = json!(ev.event_type().as_str());
            out["organization"] = json!(ev.organization_id().as_str());
            out["id"] = json!(ev.id());
            out["data"] = json!(data);
        }
        Err(e) => {
            if p.org.is_some() || p.event_type.is_some() {
                return None;
            }
            let mut body = String::from_utf8_lossy(&msg.payload).into_owned();
            truncate(&mut body);
            out["error"] = json!(events::error_chain(&e));
            out["data"] = json!(body);
        }
    }
    Some(out)
}

fn truncate(s: &mut String) {
    if s.len() > DATA_PREVIEW {
        let mut end = DATA_PREVIEW;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// At most `rate` events per one-second window; the rest counted, and the count sent at
/// most once a second.
struct Limiter {
    rate: u32,
    window: Instant,
    in_window: u32,
    dropped: u64,
    notified: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Yes,
    Dropped,
    DroppedNotify(u64),
}

impl Limiter {
    fn new(rate: u32) -> Self {
        Self {
            rate,
            window: Instant::now(),
            in_window: 0,
            dropped: 0,
            notified: None,
        }
    }

    fn admit(&mut self, now: Instant) -> Admit {
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.in_window = 0;
        }
        if self.in_window < self.rate {
            self.in_window += 1;
            return Admit::Yes;
        }
        self.dropped += 1;
        if self
            .notified
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.notified = Some(now);
            return Admit::DroppedNotify(self.dropped);
        }
        Admit::Dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_bound_holds_per_second() {
        let mut l = Limiter::new(2);
        let t0 = Instant::now();
        assert_eq!(l.admit(t0), Admit::Yes);
        assert_eq!(l.admit(t0), Admit::Yes);
        assert_eq!(l.admit(t0), Admit::DroppedNotify(1));
        assert_eq!(l.admit(t0), Admit::Dropped);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.admit(t1), Admit::Yes);
        assert_eq!(l.admit(t1), Admit::Yes);
        assert_eq!(l.admit(t1), Admit::DroppedNotify(3));
    }
}
