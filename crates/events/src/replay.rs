//! Replay of a stream time window (plan T058): every message of a stream, optionally under a
//! subject filter, stored in `[from, to)`, delivered to a handler or republished to another
//! subject.
//!
//! The replay reads through a short-lived ephemeral consumer starting at `from`
//! (`DeliverPolicy::ByStartTime`) and stops at the first message stored at or after `to`,
//! comparing each message's stored timestamp. It also stops at the stream's last sequence as
//! it was when the replay started, so a live stream cannot keep it running. Every wait is
//! bounded and the consumer is deleted when the replay ends.
//!
//! ```no_run
//! # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
//! use events::replay::WindowReplay;
//! use events::{StreamName, Subject};
//! use time::macros::datetime;
//!
//! let from = datetime!(2026-01-01 00:00 UTC);
//! let to = datetime!(2026-01-01 01:00 UTC);
//! // Count only.
//! let summary = WindowReplay::new(StreamName::new("AUTH_EVENTS")?, from, to)?
//!     .dry_run(true)
//!     .republish_to(&js, &Subject::new("replay.auth")?)
//!     .await?;
//! println!("{} events in the window", summary.matched);
//! // Hand each to a handler.
//! WindowReplay::new(StreamName::new("AUTH_EVENTS")?, from, to)?
//!     .on_progress(|p| eprintln!("{} done, {:.0}/s", p.processed, p.rate()))
//!     .deliver_to(&js, |m| async move {
//!         let event = m.event()?;
//!         println!("{} {}", m.stream_sequence, event.id());
//!         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::PublishAckFuture;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::time::timeout;

use crate::event::{DecodeError, Event, MSG_ID_HEADER, REPLAY_ORIGINAL_SUBJECT};
use crate::names::{StreamName, Subject, SubjectFilter};
use crate::raw_headers;

use crate::error::BoxError;
use crate::headers;
use crate::scan::{ScanError, ScanSpec, ScanStart, Scanned, Scanner};

/// Default bound on every server request and on each wait for a message.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default messages per pull request.
pub const DEFAULT_BATCH: usize = 256;
/// Default number of republished messages awaiting their stream ack at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default interval between progress callbacks.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Why a window replay failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// `from` is not before `to`.
    #[error("invalid time window: from {from} is not before to {to}")]
    InvalidWindow {
        /// Start of the window.
        from: OffsetDateTime,
        /// End of the window (exclusive).
        to: OffsetDateTime,
    },
    /// Reading the stream failed.
    #[error("failed to read the stream")]
    Scan(#[from] ScanError),
    /// The handler returned an error for a message; the replay stopped there.
    #[error("handler failed on stream sequence {sequence}")]
    Handler {
        /// Stream sequence of the message.
        sequence: u64,
        /// The handler's error.
        #[source]
        source: BoxError,
    },
    /// Republishing a message failed (no ack, or an error ack); the replay stopped there.
    #[error("failed to republish stream sequence {sequence} to {subject}")]
    Publish {
        /// Stream sequence of the source message.
        sequence: u64,
        /// Target subject.
        subject: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A republished message was not acknowledged within the bound.
    #[error("no ack for stream sequence {sequence} republished to {subject} within {after:?}")]
    AckTimeout {
        /// Stream sequence of the source message.
        sequence: u64,
        /// Target subject.
        subject: String,
        /// The bound that ran out.
        after: Duration,
    },
}

/// A message of the window, as given to a handler.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReplayedMessage {
    /// Sequence in the source stream.
    pub stream_sequence: u64,
    /// When the server stored it.
    pub stored_at: OffsetDateTime,
    /// The subject it was stored under.
    pub subject: String,
    /// Its headers as stored.
    pub headers: HeaderMap,
    /// Its body as stored.
    pub payload: Bytes,
}

impl ReplayedMessage {
    /// Decodes the message as an event (structured or binary mode), checking its type
    /// against the subject it was stored under ([`raw_headers::decode_message`]).
    ///
    /// # Errors
    /// [`DecodeError`] when the message is not a valid CloudEvent, its header block could
    /// not be parsed, or its type is not its subject.
    pub fn event(&self) -> Result<Event, DecodeError> {
        raw_headers::decode_message(&self.subject, Some(&self.headers), &self.payload)
    }

    /// The raw header block, base64, when the client could not parse it (not UTF-8).
    pub fn unparsed_headers_base64(&self) -> Option<&str> {
        raw_headers::unparsed_base64(Some(&self.headers))
    }
}

/// Progress of a running replay, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Messages handled (or counted, in a dry run) so far.
    pub processed: u64,
    /// Messages the consumer had pending when the replay started: an upper bound of the
    /// window's size (it counts to the end of the stream, not to `to`).
    pub upper_bound: u64,
    /// Time since the replay started.
    pub elapsed: Duration,
    /// True on the last call, when the replay ended.
    pub finished: bool,
}

impl Progress {
    /// Messages per second so far.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.processed as f64 / secs
        } else {
            0.0
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplaySummary {
    /// Messages in the window that were handled or republished (counted, in a dry run).
    pub matched: u64,
    /// Stream sequence of the first message in the window.
    pub first_sequence: Option<u64>,
    /// Stream sequence of the last message in the window.
    pub last_sequence: Option<u64>,
    /// The stream's last sequence when the replay started (the upper bound).
    pub end_sequence: u64,
    /// Messages in the window whose header block could not be parsed (not UTF-8). A
    /// republish skips them (their headers cannot be reproduced) and logs each; a handler
    /// gets them, and [`ReplayedMessage::event`] says why they are undecodable.
    pub unparsable: u64,
    /// True if nothing was delivered or published.
    pub dry_run: bool,
    /// Wall time of the replay.
    pub elapsed: Duration,
}

type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// A replay of the messages of `stream` stored in `[from, to)`. Build with
/// [`WindowReplay::new`], then run with [`WindowReplay::deliver_to`] or
/// [`WindowReplay::republish_to`].
pub struct WindowReplay {
    stream: StreamName,
    from: OffsetDateTime,
    to: OffsetDateTime,
    subject_filter: Option<SubjectFilter>,
    dry_run: bool,
    batch: usize,
    request_timeout: Duration,
    max_in_flight: usize,
    progress_interval: Duration,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for WindowReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowReplay")
            .field("stream", &self.stream)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("subject_filter", &self.subject_filter)
            .field("dry_run", &self.dry_run)
            .field("batch", &self.batch)
            .field("request_timeout", &self.request_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl WindowReplay {
    /// A replay of `stream` over `[from, to)`.
    ///
    /// # Errors
    /// [`ReplayError::InvalidWindow`] unless `from < to`.
    pub fn new(
        stream: StreamName,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Self, ReplayError> {
        if from >= to {
            return Err(ReplayError::InvalidWindow { from, to });
        }
        Ok(Self {
            stream,
            from,
            to,
            subject_filter: None,
            dry_run: false,
            batch: DEFAULT_BATCH,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            progress: None,
        })
    }

    /// Only messages whose subject matches `filter`.
    pub fn subject_filter(mut self, filter: SubjectFilter) -> Self {
        self.subject_filter = Some(filter);
        self
    }

    /// Count the window only: no handler call, no publish.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Messages per pull request (at least 1).
    pub fn batch_size(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Bound on every server request, each wait for a message and each publish ack.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Republished messages awaiting their ack at once (at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Calls `f` about every [`DEFAULT_PROGRESS_INTERVAL`] and once at the end.
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Sets how often the progress callback runs.
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// Runs the replay, awaiting `handler` for each message in stream order. A handler
    /// error stops the replay.
    ///
    /// # Errors
    /// [`ReplayError::Scan`] if the stream cannot be read, [`ReplayError::Handler`] with
    /// the sequence the handler failed on.
    pub async fn deliver_to<F, Fut, E>(
        mut self,
        js: &jetstream::Context,
        mut handler: F,
    ) -> Result<ReplaySummary, ReplayError>
    where
        F: FnMut(ReplayedMessage) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<BoxError>,
    {
        let dry_run = self.dry_run;
        self.run(js, false, async |m: Scanned| {
            if dry_run {
                return Ok(());
            }
            let sequence = m.sequence;
            handler(ReplayedMessage {
                stream_sequence: m.sequence,
                stored_at: m.stored_at,
                subject: m.subject,
                headers: m.headers,
                payload: m.payload,
            })
            .await
            .map_err(|e| ReplayError::Handler {
                sequence,
                source: e.into(),
            })
        })
        .await
        .map(|(summary, ())| summary)
    }

    /// Runs the replay, publishing each message's body byte for byte to `target` with its
    /// headers, except the `Nats-*` publish controls, a fresh `Nats-Msg-Id` (UUID v7), and
    /// `Replay-Original-Subject` = the subject the event was first stored under (kept from a
    /// copy of a copy), so that consumers of `target` accept its type (CONTRACT.md §2).
    /// Messages whose header block could not be parsed are skipped and counted in
    /// [`ReplaySummary::unparsable`].
    /// Up to `max_in_flight` acks are awaited at once; the call returns once every publish
    /// is acknowledged.
    ///
    /// # Errors
    /// [`ReplayError::Scan`] if the stream cannot be read; [`ReplayError::Publish`] or
    /// [`ReplayError::AckTimeout`] naming the first message that failed (messages before
    /// it are stored; the summary is lost, rerunning publishes them again).
    pub async fn republish_to(
        mut self,
        js: &jetstream::Context,
        target: &Subject,
    ) -> Result<ReplaySummary, ReplayError> {
        let dry_run = self.dry_run;
        let max_in_flight = self.max_in_flight;
        let ack_timeout = self.request_timeout;
        let target = target.as_str();
        let mut in_flight: VecDeque<(u64, PublishAckFuture)> = VecDeque::new();
        let run = self
            .run(js, true, async |m: Scanned| {
                if dry_run {
                    return Ok(());
                }
                if in_flight.len() >= max_in_flight
                    && let Some((seq, ack)) = in_flight.pop_front()
                {
                    await_ack(seq, target, ack, ack_timeout).await?;
                }
                let headers = copy_headers(&m.headers, &m.subject);
                let ack = publish(js, target, headers, m.payload, ack_timeout)
                    .await
                    .map_err(|source| ReplayError::Publish {
                        sequence: m.sequence,
                        subject: target.to_owned(),
                        source,
                    })?;
                in_flight.push_back((m.sequence, ack));
                Ok(())
            })
            .await;
        // Settle what was sent even when the scan failed later, so the error names the
        // first failure in order.
        while let Some((seq, ack)) = in_flight.pop_front() {
            await_ack(seq, target, ack, ack_timeout).await?;
        }
        run.map(|(summary, ())| summary)
    }

    /// Scans the window and calls `each` per message (not for one whose header block could
    /// not be parsed if `skip_unparsable`); always closes the scan.
    async fn run<F>(
        &mut self,
        js: &jetstream::Context,
        skip_unparsable: bool,
        mut each: F,
    ) -> Result<(ReplaySummary, ()), ReplayError>
    where
        F: AsyncFnMut(Scanned) -> Result<(), ReplayError>,
    {
        let started = Instant::now();
        let mut scanner = Scanner::open(js, self.scan_spec()).await?;
        let mut summary = ReplaySummary {
            matched: 0,
            unparsable: 0,
            first_sequence: None,
            last_sequence: None,
            end_sequence: scanner.end_sequence(),
            dry_run: self.dry_run,
            elapsed: Duration::ZERO,
        };
        let upper_bound = scanner.initial_pending();
        let mut last_report = Instant::now();
        let result = async {
            while let Some(m) = scanner.next().await? {
                if m.stored_at >= self.to {
                    break;
                }
                if m.stored_at < self.from {
                    continue;
                }
                let seq = m.sequence;
                if self.count_unparsable(&m, &mut summary) && skip_unparsable {
                    continue;
                }
                each(m).await?;
                summary.matched += 1;
                summary.first_sequence.get_or_insert(seq);
                summary.last_sequence = Some(seq);
                if last_report.elapsed() >= self.progress_interval {
                    last_report = Instant::now();
                    self.report(summary.matched, upper_bound, started.elapsed(), false);
                }
            }
            Ok::<(), ReplayError>(())
        }
        .await;
        scanner.close().await;
        result?;
        summary.elapsed = started.elapsed();
        self.report(summary.matched, upper_bound, summary.elapsed, true);
        Ok((summary, ()))
    }

    /// The scan of the window: from `from`, of the subjects the filter names.
    fn scan_spec(&self) -> ScanSpec {
        ScanSpec {
            stream: self.stream.as_str().to_owned(),
            filter_subject: self.subject_filter.as_ref().map(|f| f.as_str().to_owned()),
            start: ScanStart::Time(self.from),
            batch: self.batch,
            request_timeout: self.request_timeout,
        }
    }

    /// True (logged and counted in `summary`) if `m`'s header block could not be parsed.
    fn count_unparsable(&self, m: &Scanned, summary: &mut ReplaySummary) -> bool {
        let Some(raw) = raw_headers::unparsed_base64(Some(&m.headers)) else {
            return false;
        };
        tracing::warn!(stream = %self.stream.as_str(), sequence = m.sequence, raw_headers_base64 = %raw,
            "message with an unparsable header block (not UTF-8) in the window");
        summary.unparsable += 1;
        true
    }

    /// Calls the progress callback, if there is one.
    fn report(&mut self, processed: u64, upper_bound: u64, elapsed: Duration, finished: bool) {
        if let Some(p) = self.progress.as_mut() {
            p(&Progress {
                processed,
                upper_bound,
                elapsed,
                finished,
            });
        }
    }
}

/// Publishes with a bound on the send itself; returns the ack future.
pub(crate) async fn publish(
    js: &jetstream::Context,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
    bound: Duration,
) -> Result<PublishAckFuture, BoxError> {
    match timeout(
        bound,
        js.publish_with_headers(subject.to_owned(), headers, payload),
    )
    .await
    {
        Err(_) => Err(format!("publish not sent within {bound:?}").into()),
        Ok(Err(e)) => Err(Box::new(e)),
        Ok(Ok(ack)) => Ok(ack),
    }
}

async fn await_ack(
    sequence: u64,
    subject: &str,
    ack: PublishAckFuture,
    bound: Duration,
) -> Result<(), ReplayError> {
    match timeout(bound, ack).await {
        Err(_) => Err(ReplayError::AckTimeout {
            sequence,
            subject: subject.to_owned(),
            after: bound,
        }),
        Ok(Err(e)) => Err(ReplayError::Publish {
            sequence,
            subject: subject.to_owned(),
            source: Box::new(e),
        }),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Headers of a window replay's copy: [`fresh_headers`] plus `Replay-Original-Subject`, the
/// subject the event was first stored under (the one a copy of a copy already carries).
fn copy_headers(original: &HeaderMap, stored_under: &str) -> HeaderMap {
    let mut out = fresh_headers(original, false);
    if out.get(REPLAY_ORIGINAL_SUBJECT).is_none() {
        out.insert(REPLAY_ORIGINAL_SUBJECT, headers::value(stored_under));
    }
    out
}

/// Headers for moving a stored message to another subject: the original headers without
/// the `Nats-*` publish controls of its first publish (message id, expectations, batch
/// markers) and, if `drop_dlq`, without the `Dlq-*` failure record; plus a fresh
/// `Nats-Msg-Id` (UUID v7).
pub(crate) fn fresh_headers(original: &HeaderMap, drop_dlq: bool) -> HeaderMap {
    let skip: &[&str] = if drop_dlq {
        &[headers::PUBLISH_CONTROLS, crate::dlq::headers::PREFIX]
    } else {
        &[headers::PUBLISH_CONTROLS]
    };
    let mut out = headers::copy_except(original, skip);
    out.insert(
        MSG_ID_HEADER,
        headers::value(&uuid::Uuid::now_v7().to_string()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_headers_drop_publish_controls_and_failure_record() {
        let mut h = HeaderMap::new();
        h.insert("Content-Type", "application/cloudevents+json");
        h.insert("Nats-Msg-Id", "old");
        h.insert("Nats-Expected-Stream", "X");
        h.insert("Dlq-Reason", "permanent");
        h.insert("ce-id", "1");
        let out = fresh_headers(&h, true);
        assert_eq!(
            out.get("Content-Type").map(|v| v.as_str()),
            Some("application/cloudevents+json")
        );
        assert_eq!(out.get("ce-id").map(|v| v.as_str()), Some("1"));
        assert!(out.get("Dlq-Reason").is_none());
        assert!(out.get("Nats-Expected-Stream").is_none());
        let id = out.get("Nats-Msg-Id").map(|v| v.as_str().to_owned());
        assert!(id.is_some_and(|id| id != "old" && uuid::Uuid::parse_str(&id).is_ok()));
        let kept = fresh_headers(&h, false);
        assert!(kept.get("Dlq-Reason").is_some());
    }

    #[test]
    fn a_copy_names_the_subject_it_was_first_stored_under() {
        let mut h = HeaderMap::new();
        h.insert("Content-Type", "application/cloudevents+json");
        let first = copy_headers(&h, "auth.user.created");
        assert_eq!(
            first.get(REPLAY_ORIGINAL_SUBJECT).map(|v| v.as_str()),
            Some("auth.user.created")
        );
        let again = copy_headers(&first, "analytics.replay.one");
        assert_eq!(
            again.get(REPLAY_ORIGINAL_SUBJECT).map(|v| v.as_str()),
            Some("auth.user.created")
        );
    }

    #[test]
    fn window_must_be_ordered() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let s = StreamName::new("S").expect("valid");
        assert!(matches!(
            WindowReplay::new(s.clone(), t, t),
            Err(ReplayError::InvalidWindow { .. })
        ));
        assert!(WindowReplay::new(s, t, t + time::Duration::seconds(1)).is_ok());
    }

    #[test]
    fn rate_is_per_second() {
        let p = Progress {
            processed: 50,
            upper_bound: 100,
            elapsed: Duration::from_millis(500),
            finished: false,
        };
        assert!((p.rate() - 100.0).abs() < 1e-9);
    }
}
