//! Publisher: confirmed and windowed publishing with retries that never store a second copy,
//! and an opt-in durable spool for outages.
//!
//! # What a caller gets
//! - [`Publisher::publish`] returns only when the stream has acknowledged the event
//!   ([`PublishOutcome::Stored`] with stream, sequence and the duplicate flag), when the event
//!   was written to the durable spool ([`PublishOutcome::Spooled`], only with a
//!   [`SpoolConfig`]), or with a typed [`PublishError`] saying which problem it is.
//! - [`Publisher::publish_async`] sends at once and returns a [`PublishHandle`] (a future of
//!   the same outcome); at most [`PublisherConfig::window`] events are in flight, a submit
//!   beyond that waits (backpressure, bounded memory). [`Publisher::flush`] waits until every
//!   accepted event has its outcome; [`Publisher::publish_all`] is a batch helper on the same
//!   path, and [`Publisher::publish_stream`] yields each outcome as it settles, with the
//!   event's index, polled on the caller's task; [`Publisher::close`] stops accepting,
//!   flushes and stops the background work.
//! - [`Publisher::new`] takes the library's [`Connection`](crate::Connection) (`&conn`), a
//!   client or a JetStream context ([`Nats`]), as [`Subscriber::builder`](crate::Subscriber::builder) does.
//! - Every try carries `Nats-Msg-Id` = event id, and all tries of one publish happen within
//!   [`PublisherConfig::deadline`], which `validate()` keeps shorter than the stream's
//!   duplicate window: a retry is de-duplicated by the server, never stored twice.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use events::Event;
//! use events::publisher::{PublishOutcome, Publisher, PublisherConfig};
//!
//! let conn = events::connect(&events::ConnectConfig::for_url("nats://127.0.0.1:4222")).await?;
//! let publisher = Publisher::new(&conn, PublisherConfig::new("auth-service")).await?;
//! let event = Event::builder("auth.user.created")
//!     .source("auth-service")
//!     .organization("org-1")
//!     .data(&serde_json::json!({ "user_id": "u1" }))
//!     .build()?;
//! match publisher.publish(&event).await? {
//!     PublishOutcome::Stored(ack) => println!("stored: {} #{}", ack.stream, ack.sequence),
//!     PublishOutcome::Spooled => println!("on disk, forwarded when NATS is back"),
//!     _ => {}
//! }
//! // Many at once: at most `window` in flight, each with its own outcome.
//! let batch: Vec<Event> = Vec::new();
//! for outcome in publisher.publish_all(&batch).await {
//!     outcome?;
//! }
//! publisher.close(Duration::from_secs(10)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Retries
//! Transient failures (ack timeout, broken connection, "no responders" during a leader
//! election, a 503 answer) are retried with exponential backoff and jitter ([`PublishRetryPolicy`]:
//! by default 3 retries waiting about 1 s, 2 s, 4 s). async-nats reports "no responders" as
//! `StreamNotFound`; since that is also what a stream being created or electing a leader
//! looks like, the publisher asks the server which stream captures the subject and fails
//! with [`PublishError::NoStream`] only if none does on two checks one backoff apart.
//! Permanent failures fail at once: invalid event or subject, payload over the server's
//! `max_payload` (with size and limit), no stream, permission denied (a 403 answer), other
//! JetStream refusals by `err_code`. A publish permission violation at the connection level
//! is only reported by the server asynchronously (to the client's event callback), so it
//! shows here as ack timeouts, then [`PublishError::Unconfirmed`].
//!
//! # When the tries run out: not stored, or not known
//! Once a message is handed to the connection it can no longer be taken back: while NATS
//! is down it waits in the client's write buffer and is written, and stored, when the
//! connection returns, possibly after `publish` has given up. So a publish that runs out of
//! tries says which of two things happened:
//! - [`PublishError::Unavailable`]: no try can have been stored (every try was refused
//!   with "no responders" or a 503, or never left the client). The event is not made.
//! - [`PublishError::Unconfirmed`]: at least one try was sent and never answered. The
//!   event **may or may not** be stored, now or later. Do not tell a user it was not made,
//!   and do not make it again under a new id: publish the same [`Event`] again within the
//!   stream's duplicate window (2 minutes by default); the server stores it once and that
//!   ack settles the question ([`PublishError::may_be_stored`] is true for this kind).
//!
//! # Event contracts (feature `schema`)
//! With `PublisherConfig::with_schemas`, every event is validated against the JSON Schema
//! of its `type` and `schemaversion` before anything is sent: invalid `data` fails with
//! `PublishError::Schema` (the cause names the JSON pointer and the rule), a type or version
//! the set lacks follows its `UnknownSchema` policy, and an event without `dataschema` is
//! sent with the schema's URI. Without a set no schema code runs.
//!
//! Nothing can be published into the reserved `dlq.` domain (CONTRACT.md §2): no [`Event`]
//! carries such a type, since [`Event::builder`] and every decoder refuse it.
//!
//! # Batching (on by default)
//! With [`BatchConfig::enabled`] (the default), windowed publishes to a stream created with
//! `allow_atomic: true` are grouped per stream into atomic batches (ADR-50) of up to 1,000
//! events with a short linger; each event still gets its own exact outcome, and a refused
//! or unacknowledged batch falls back to per-message publishing (the ids keep it exact).
//! Worth it when the server fsyncs every write (`sync_interval: always`), not otherwise.
//! See the `batch` module for the protocol and the verified server behaviour.
//!
//! # Tracing and metrics
//! A `publish` span (debug level) per event with `event_id` and `event_type`. The library
//! uses plain `tracing`, which cannot read an OpenTelemetry context; a service that has one
//! sets [`PublisherConfig::trace_context`] and the publisher puts its `traceparent` (and
//! `tracestate`) on events that have none. Metrics (CONTRACT.md §5):
//! `events_published_total{event_type,status}` with status `ok`, `duplicate`, `spooled` or
//! [`PublishError::kind`], and `event_publish_duration_seconds{event_type}` for stored events.
//!
//! # Testing a service
//! Services depend on the dyn-compatible [`EventPublisher`] trait; [`RecordingPublisher`]
//! implements it in memory with the same validation, so a unit test needs no server.

mod acker;
mod batch;
mod completion;
mod config;
#[cfg(feature = "schema")]
pub(crate) mod contract;
mod deliver;
mod error;
mod recording;
mod retry;
mod settled;
mod spool;
mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{Client, jetstream};
use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, debug, warn};

use crate::connection::Nats;
use crate::event::Event;

pub use config::{
    BatchConfig, ConfigError, PublishRetryPolicy, PublisherConfig, RetryPolicy, SpoolConfig,
    TraceContextHook,
};
pub use error::{FlushError, NewPublisherError, PublishError, TransientError};
pub use recording::{DEFAULT_MAX_PAYLOAD, RecordingPublisher};
pub use settled::Settled;

use completion::{Outcomes, Pending};
use deliver::Inner;
use spool::{Spool, spool_now};
use wire::fits_batch;
pub(crate) use wire::{Wire, prepare};

/// The stream's acknowledgement of a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishAck {
    /// The stream that stored the event.
    pub stream: String,
    /// Its sequence in the stream.
    pub sequence: u64,
    /// True if the stream already held an event with this id (within its duplicate window)
    /// and did not store it again: the event is stored once, which is what the caller wants.
    /// This includes the case where this same call's earlier try was stored but its ack was
    /// lost and the retry found it (the server cannot tell the two apart).
    pub duplicate: bool,
}

impl PublishAck {
    /// Builds an ack (for test doubles and tools).
    pub fn new(stream: impl Into<String>, sequence: u64, duplicate: bool) -> Self {
        Self {
            stream: stream.into(),
            sequence,
            duplicate,
        }
    }
}

/// Where a published event is now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishOutcome {
    /// Stored in the stream (acknowledged).
    Stored(PublishAck),
    /// Not confirmed by NATS, but written (fsynced) to the durable spool; the publisher
    /// forwards it with its id, in order, once NATS is back. Only with a [`SpoolConfig`].
    Spooled,
}

impl PublishOutcome {
    /// The ack if stored.
    pub fn ack(&self) -> Option<&PublishAck> {
        match self {
            Self::Stored(a) => Some(a),
            Self::Spooled => None,
        }
    }

    /// True if the event went to the spool rather than the stream.
    pub fn is_spooled(&self) -> bool {
        matches!(self, Self::Spooled)
    }

    fn status(&self) -> &'static str {
        match self {
            Self::Stored(a) if a.duplicate => "duplicate",
            Self::Stored(_) => "ok",
            Self::Spooled => "spooled",
        }
    }
}

/// The outcome of one event submitted with [`Publisher::publish_async`]: a future that
/// resolves once the event is stored, spooled or has failed. Dropping it does not cancel
/// the publish (the outcome is still counted in the metrics).
#[derive(Debug)]
#[must_use = "a handle carries the event's outcome"]
pub struct PublishHandle {
    event_id: String,
    rx: oneshot::Receiver<Result<PublishOutcome, PublishError>>,
}

impl PublishHandle {
    /// The id of the event this handle reports on.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }
}

impl Future for PublishHandle {
    type Output = Result<PublishOutcome, PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(PublishError::Cancelled)))
    }
}

/// Publishing as a service sees it: a dyn-compatible seam so that a service can be tested
/// with [`RecordingPublisher`] instead of a server.
pub trait EventPublisher: Send + Sync {
    /// Publishes one event and waits for its outcome (see [`Publisher::publish`]).
    fn publish<'a>(
        &'a self,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<PublishOutcome, PublishError>>;
}

/// Confirmed, windowed JetStream publisher. Cheap to clone (clones share the window, the
/// spool and the background tasks). Call [`Publisher::close`] before dropping it: dropping
/// the last clone stops the background work at once, and events still in flight then
/// report [`PublishError::Cancelled`] (or are spooled, with a spool).
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
    _guard: Arc<DropGuard>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("source", &self.inner.config.source)
            .field("window", &self.inner.config.window)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// What [`Publisher::admit`] did with an event.
enum Admitted {
    /// Spooled at once (or failed to): the outcome is known, the slot given back.
    Done(String, Result<PublishOutcome, PublishError>),
    /// Ready to send, holding its window slot.
    Send(Wire, OwnedSemaphorePermit),
}

/// The `publish` span of one event; built only when `DEBUG` is enabled here, so that a
/// disabled span costs no field formatting.
fn publish_span(event: &Event) -> Span {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug_span!("publish", event_id = %event.id(), event_type = %event.event_type().as_str())
    } else {
        Span::none()
    }
}

impl Publisher {
    /// A publisher on `nats`: the library's `&Connection` (its permission denials then fail
    /// a publish at once, see [`Publisher::on_connection`]), a client or a JetStream
    /// context (only its client is used). Builds its own JetStream context (request
    /// timeout = `ack_timeout`, in-flight acks bounded by the window) and, with a spool
    /// configured, opens it and starts the forwarder (which needs a Tokio runtime).
    ///
    /// # Errors
    /// [`NewPublisherError::Config`] if `config.validate()` fails; [`NewPublisherError::Spool`]
    /// if the spool directory cannot be opened or is locked by another publisher.
    pub async fn new(
        nats: impl Into<Nats>,
        config: PublisherConfig,
    ) -> Result<Self, NewPublisherError> {
        let nats = nats.into();
        let denials = nats.denials().cloned();
        Self::build(nats.client().clone(), config, denials).await
    }

    /// [`Publisher::new`] over a [`Connection`](crate::connection::Connection) (the same as
    /// `Publisher::new(conn, config)`), watching its
    /// [`Denials`](crate::connection::Denials): a publish the server refuses for
    /// permissions fails at once with [`PublishError::PermissionDenied`] instead of
    /// waiting out its deadline.
    ///
    /// # Errors
    /// As [`Publisher::new`].
    pub async fn on_connection(
        conn: &crate::connection::Connection,
        config: PublisherConfig,
    ) -> Result<Self, NewPublisherError> {
        Self::new(conn, config).await
    }

    async fn build(
        client: Client,
        config: PublisherConfig,
        denials: Option<crate::connection::Denials>,
    ) -> Result<Self, NewPublisherError> {
        config.validate()?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.ack_timeout)
            .ack_timeout(config.ack_timeout)
            .max_ack_inflight(config.window.saturating_mul(2))
            .backpressure_on_inflight(true)
            .build(client.clone());
        let spool = match &config.spool {
            Some(sc) => {
                let sc2 = sc.clone();
                let opened =
                    tokio::task::spawn_blocking(move || Spool::open(&sc2.dir, spool::limits(&sc2)))
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))
                        .and_then(|r| r);
                Some(Arc::new(opened.map_err(|source| {
                    NewPublisherError::Spool {
                        dir: sc.dir.clone(),
                        source,
                    }
                })?))
            }
            None => None,
        };
        let cancel = CancellationToken::new();
        let (batch_tx, batch_rx) = if config.batch.enabled {
            let (tx, rx) = mpsc::channel(config.window);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (acker_tx, acker_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            client,
            js,
            denials,
            window: Arc::new(Semaphore::new(config.window)),
            config,
            closed: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            cancel: cancel.clone(),
            spool,
            batch_tx,
            acker: acker_tx,
            acker_rx: std::sync::Mutex::new(Some(acker_rx)),
            acker_started: AtomicBool::new(false),
            routes: batch::Routes::default(),
            no_stream_cache: std::sync::Mutex::new(Vec::new()),
            max_payload: std::sync::Mutex::new((0, Instant::now())),
            outcomes: Outcomes::default(),
        });
        if let Some(rx) = batch_rx {
            inner.tasks.spawn(batch::run(inner.clone(), rx));
        }
        if let Some(spool) = inner.spool.clone() {
            let poll = inner
                .config
                .spool
                .as_ref()
                .map(|c| c.poll_interval)
                .unwrap_or_default();
            inner
                .tasks
                .spawn(spool::forward(inner.clone(), spool, poll));
        }
        Ok(Self {
            inner,
            _guard: Arc::new(cancel.drop_guard()),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &PublisherConfig {
        &self.inner.config
    }

    /// Events submitted whose outcome is not known yet.
    pub fn in_flight(&self) -> usize {
        self.inner.config.window - self.inner.window.available_permits()
    }

    /// Spooled events not yet forwarded (0 without a spool).
    pub fn spooled(&self) -> u64 {
        self.inner.spool.as_ref().map_or(0, |s| s.pending())
    }

    /// Publishes one event and waits until the stream acknowledged it (or it was spooled,
    /// or it failed). Bounded by [`PublisherConfig::deadline`] plus the wait for a window slot.
    /// Runs on the caller's task: dropping the future stops the retries (the event may
    /// already be stored; its id keeps publishing it again idempotent).
    ///
    /// # Errors
    /// A [`PublishError`] naming the problem (with a schema set, `PublishError::Schema` when
    /// the data breaks its contract: nothing is sent); [`PublishError::Unavailable`] (nothing stored)
    /// or [`PublishError::Unconfirmed`] (outcome unknown) if NATS did not
    /// ack within the deadline and retries.
    pub async fn publish(&self, event: &Event) -> Result<PublishOutcome, PublishError> {
        // Awaited on the caller's task: no spawned task and no oneshot per call.
        let inner = &self.inner;
        let event_type = event.event_type().as_str();
        let started = Instant::now();
        let span = publish_span(event);
        let (wire, permit) = match self.admit(event, event_type, started).await? {
            Admitted::Done(_, res) => return res,
            Admitted::Send(wire, permit) => (wire, permit),
        };
        // Counted like a background task, so that `close` waits for this publish too.
        let _token = inner.tasks.token();
        async move {
            let deadline = started + inner.config.deadline;
            let first = inner.send(&wire, deadline).await;
            let res = inner.finish(wire, Some(first), started).await;
            inner.outcomes.record(event_type, res.as_ref(), started);
            drop(permit);
            res
        }
        .instrument(span)
        .await
    }

    /// Validates and sends an event without waiting for its ack; the returned handle
    /// resolves to its outcome. Waits for a window slot when
    /// [`PublisherConfig::window`] events are already in flight.
    ///
    /// # Errors
    /// Validation errors ([`PublishError::InvalidSubject`], [`PublishError::PayloadTooLarge`],
    /// [`PublishError::Invalid`], and `PublishError::Schema` with a schema set) and
    /// [`PublishError::Closed`] at once; everything else
    /// through the handle.
    pub async fn publish_async(&self, event: &Event) -> Result<PublishHandle, PublishError> {
        self.submit(event).await
    }

    /// Validates the event, takes a window slot and, while the spool holds a backlog or
    /// NATS is down, spools it at once.
    async fn admit(
        &self,
        event: &Event,
        event_type: &str,
        started: Instant,
    ) -> Result<Admitted, PublishError> {
        let inner = &self.inner;
        let wire = match self.check(event) {
            Ok(w) => w,
            Err(e) => {
                inner.outcomes.record(event_type, Err(&e), started);
                return Err(e);
            }
        };
        if inner.closed.load(Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        let permit = inner
            .window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PublishError::Closed)?;
        if inner.closed.load(Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        // With a spool: while it holds a backlog (keep order) or NATS is down, spool now.
        if let Some(spool) = &inner.spool
            && (spool.pending() > 0 || inner.client.connection_state() != State::Connected)
        {
            let res = spool_now(spool, &wire)
                .await
                .map(|()| PublishOutcome::Spooled);
            inner.outcomes.record(event_type, res.as_ref(), started);
            drop(permit);
            return Ok(Admitted::Done(wire.event_id, res));
        }
        Ok(Admitted::Send(wire, permit))
    }

    async fn submit(&self, event: &Event) -> Result<PublishHandle, PublishError> {
        let inner = &self.inner;
        let event_type = event.event_type().as_str().to_owned();
        let started = Instant::now();
        let span = publish_span(event);
        let (mut wire, permit) = match self.admit(event, &event_type, started).await? {
            Admitted::Done(event_id, res) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(res);
                return Ok(PublishHandle { event_id, rx });
            }
            Admitted::Send(wire, permit) => (wire, permit),
        };
        let (tx, rx) = oneshot::channel();
        let handle = PublishHandle {
            event_id: wire.event_id.clone(),
            rx,
        };
        let pending = Pending {
            tx,
            permit,
            started,
            event_type,
            span,
        };
        // Batching: hand it to the batcher if its stream takes atomic batches.
        if let Some(btx) = &inner.batch_tx
            && fits_batch(wire.size, inner.max_payload())
            && let batch::Route::Atomic(stream) = inner.route(&wire.subject).await
        {
            let item = batch::Item { wire, pending };
            if let Err(mpsc::error::SendError((_, item))) = btx.send((stream, item)).await {
                // The batcher is gone (publisher closing): the event was never sent.
                item.pending
                    .complete(&inner.outcomes, Err(PublishError::Closed));
            }
            return Ok(handle);
        }
        // First try inline: messages leave in submission order.
        let deadline = started + inner.config.deadline;
        let msg = wire.take_message();
        let first = inner
            .send_message(&wire, msg, deadline)
            .instrument(pending.span.clone())
            .await;
        // The rest (ack, retries, outcome) on the acker task.
        acker::submit(
            inner,
            acker::Job {
                wire,
                first,
                pending,
            },
        );
        Ok(handle)
    }

    /// Publishes every event through the windowed path and returns their outcomes in input
    /// order (at most `window` in flight at once).
    pub async fn publish_all<'a, I>(&self, events: I) -> Vec<Result<PublishOutcome, PublishError>>
    where
        I: IntoIterator<Item = &'a Event>,
    {
        let mut pending = Vec::new();
        for ev in events {
            pending.push(self.publish_async(ev).await);
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Ok(h) => h.await,
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Publishes every event through the windowed path and yields each outcome as soon as
    /// it settles, with the event's index in `events`: `(index, outcome)`, in the order
    /// they settle (not input order). The events are submitted in order as the stream is
    /// polled (at most `window` in flight), and everything runs on the polling task: no task
    /// per event. An event refused before sending (invalid, too large, closed) is yielded
    /// with its error at once. The stream ends after the last outcome.
    ///
    /// ```no_run
    /// # async fn run(publisher: events::Publisher, batch: Vec<events::Event>) {
    /// use futures::StreamExt;
    ///
    /// let mut settled = std::pin::pin!(publisher.publish_stream(&batch));
    /// while let Some((i, outcome)) = settled.next().await {
    ///     if let Err(e) = outcome {
    ///         eprintln!("event {} failed: {e}", batch[i].id());
    ///     }
    /// }
    /// # }
    /// ```
    pub fn publish_stream<'a, I>(&'a self, events: I) -> impl futures::Stream<Item = Settled> + 'a
    where
        I: IntoIterator,
        I::IntoIter: 'a,
        I::Item: std::borrow::Borrow<Event>,
    {
        settled::settle(self, events)
    }

    /// Waits until every event accepted before this call has its outcome (stored, spooled
    /// or failed). Later submits wait behind it.
    ///
    /// # Errors
    /// [`FlushError`] with the count still in flight if `timeout` passes first.
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let n = u32::try_from(self.inner.config.window).unwrap_or(u32::MAX);
        match tokio::time::timeout(timeout, self.inner.window.acquire_many(n)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(FlushError {
                pending: self.in_flight(),
                timeout,
            }),
        }
    }

    /// Stops accepting events, waits (up to `timeout`) for those in flight, then stops the
    /// spool forwarder and cancels what is left ([`PublishError::Cancelled`], or spooled
    /// when a spool is configured). Spooled events stay on disk for the next publisher.
    ///
    /// # Errors
    /// [`FlushError`] if events were still in flight at the timeout.
    pub async fn close(&self, timeout: Duration) -> Result<(), FlushError> {
        self.inner.closed.store(true, Ordering::Release);
        let start = Instant::now();
        let flushed = self.flush(timeout).await;
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        let rest = timeout.saturating_sub(start.elapsed()) + Duration::from_secs(1);
        if tokio::time::timeout(rest, self.inner.tasks.wait())
            .await
            .is_err()
        {
            warn!("publisher tasks did not stop in time");
        }
        self.inner.window.close();
        flushed
    }

    /// Validates the event (with a schema set: its `data`, and stamps `dataschema`; see
    /// [`PublisherConfig::schemas`]) and builds its wire form.
    fn check(&self, event: &Event) -> Result<Wire, PublishError> {
        #[cfg(feature = "schema")]
        if let Some(schemas) = &self.inner.config.schemas {
            return self.check_traced(contract::apply(schemas, event)?.as_ref());
        }
        self.check_traced(event)
    }

    /// Adds the trace context of the caller's span if the event has none (see
    /// [`PublisherConfig::trace_context`]), then builds the wire form.
    fn check_traced(&self, event: &Event) -> Result<Wire, PublishError> {
        let max = self.inner.max_payload();
        if event.traceparent().is_none()
            && let Some(hook) = &self.inner.config.trace_context
            && let Some((tp, ts)) = hook.current()
        {
            let mut ev = event.clone();
            match ev.set_trace_context(&tp, ts.as_deref()) {
                Ok(()) => return prepare(&ev, max),
                Err(e) => debug!(error = %e, "trace context hook gave an invalid value; ignored"),
            }
        }
        prepare(event, max)
    }
}

impl EventPublisher for Publisher {
    fn publish<'a>(
        &'a self,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<PublishOutcome, PublishError>> {
        Box::pin(Publisher::publish(self, event))
    }
}
