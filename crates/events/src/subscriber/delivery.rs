//! One delivery: evaluate a pulled message into a [`Verdict`] (decode, checks, the handler
//! with in-progress acks), then settle it (ack, NAK with delay, or dead letter + terminate).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::FutureExt;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, error, warn};

use super::acker::Acker;
use super::backoff::backoff;
use super::config::SubscriberConfig;
use super::context::{DeliveryContext, Meta};
use super::handler::{Handler, HandlerError};
use super::outcome::{Outcome, decide, decide_before};
use crate::backoff::jittered;
use crate::dlq::{DeadLetterReason, FailureRecord, publish_dead_letter};
use crate::error::error_chain;
use crate::event::{DecodeError, Event};
use crate::metrics::{self as m, HandleCache};
use crate::raw_headers;

#[derive(Debug, thiserror::Error)]
#[error("handler panicked: {0}")]
struct HandlerPanic(String);

/// What every delivery of one subscriber shares: the handler, where to settle, and the
/// metric handles it records.
pub(super) struct Shared<H> {
    pub(super) handler: H,
    pub(super) js: jetstream::Context,
    /// Where acks go, to be confirmed in groups.
    acker: Acker,
    pub(super) cfg: SubscriberConfig,
    pub(super) stream: String,
    pub(super) consumer: String,
    pub(super) shutdown: CancellationToken,
    /// Handles of the series every delivery records, registered once instead of building a
    /// labelled key per message.
    handler_duration: metrics::Histogram,
    end_to_end: metrics::Histogram,
    /// `events_consumed_total{status="ack"}` per event type (the other statuses are rare).
    acked: HandleCache<metrics::Counter>,
}

impl<H> Shared<H> {
    /// The shared state of `consumer`'s deliveries; registers its series at zero.
    pub(super) fn new(
        handler: H,
        js: jetstream::Context,
        acker: Acker,
        cfg: SubscriberConfig,
        stream: String,
        consumer: String,
        shutdown: CancellationToken,
    ) -> Self {
        register_series(&consumer);
        Self {
            handler,
            js,
            acker,
            cfg,
            stream,
            handler_duration: metrics::histogram!(m::EVENT_HANDLER_DURATION_SECONDS, "consumer" => consumer.clone()),
            end_to_end: metrics::histogram!(m::EVENT_END_TO_END_SECONDS, "consumer" => consumer.clone()),
            consumer,
            shutdown,
            acked: HandleCache::default(),
        }
    }

    fn count_acked(&self, event_type: &str) {
        let make = || consumed_counter(event_type, "ack");
        self.acked.get(event_type, make).increment(1);
    }

    fn count_error(&self, kind: &'static str) {
        metrics::counter!(m::EVENT_HANDLER_ERRORS_TOTAL,
            "consumer" => self.consumer.clone(), "kind" => kind)
        .increment(1);
    }
}

fn consumed_counter(event_type: &str, status: &'static str) -> metrics::Counter {
    metrics::counter!(m::EVENTS_CONSUMED_TOTAL, "event_type" => event_type.to_owned(), "status" => status)
}

/// Creates the consumer's error and dead-letter series at zero, so that `rate()` and
/// `increase()` see the first failure of each kind instead of starting a series with it.
fn register_series(consumer: &str) {
    for kind in ["transient", "permanent", "panic", "undecodable", "invalid"] {
        metrics::counter!(m::EVENT_HANDLER_ERRORS_TOTAL, "consumer" => consumer.to_owned(), "kind" => kind)
            .increment(0);
    }
    for reason in [
        DeadLetterReason::MaxDeliveries,
        DeadLetterReason::Permanent,
        DeadLetterReason::Undecodable,
        DeadLetterReason::Invalid,
    ] {
        metrics::counter!(m::EVENTS_DEAD_LETTERED_TOTAL, "consumer" => consumer.to_owned(), "reason" => reason.as_str())
            .increment(0);
    }
}

/// What a delivery came to.
struct Verdict {
    outcome: Outcome,
    /// Why it failed: the `Dlq-Error` of a dead letter, the log text of a NAK.
    error: String,
    /// The metric label (`unknown` when it did not decode).
    event_type: String,
    /// The event's time, for end-to-end latency, when the handler ran.
    event_time: Option<OffsetDateTime>,
}

impl Verdict {
    fn before_handler(outcome: Outcome, error: String, event_type: String) -> Self {
        Self {
            outcome,
            error,
            event_type,
            event_time: None,
        }
    }
}

/// The ordered-mode links of a delivery: the previous message of its subject (settled
/// first), and this one's completion signal (released once it is settled).
pub(super) type Chain = (Option<oneshot::Receiver<()>>, Option<oneshot::Sender<()>>);

/// One delivery of `msg`: evaluate, free `slot` (the handler is done), settle, then release
/// the subject's turn. A plain function returning the future: the arguments live in it
/// once, not also in an outer state machine (the future is allocated and moved once per
/// message).
pub(super) fn deliver<H: Handler>(
    shared: Arc<Shared<H>>,
    msg: jetstream::Message,
    slot: OwnedSemaphorePermit,
    (prev, done): Chain,
) -> impl Future<Output = ()> + Send {
    let meta = match msg.info() {
        Ok(i) => Meta {
            delivered: u64::try_from(i.delivered).unwrap_or(1).max(1),
            stream_sequence: i.stream_sequence,
            consumer_sequence: i.consumer_sequence,
            published: i.published,
        },
        Err(e) => {
            // Not a JetStream delivery (no ack subject): nothing to ack or redeliver.
            error!(consumer = %shared.consumer, subject = %msg.subject, error = %e,
                "message without delivery metadata dropped");
            return futures::future::Either::Left(std::future::ready(()));
        }
    };
    let span = debug_span!("deliver", consumer = %shared.consumer, subject = %msg.subject,
        stream_seq = meta.stream_sequence, delivered = meta.delivered);
    // Shared with the handler's context (its raw payload and headers), not copied.
    let msg = Arc::new(msg);
    let delivery = async move {
        if let Some(prev) = prev {
            // Ordered mode: the previous message of this subject settles first.
            let cfg = &shared.cfg;
            let every = cfg.effective_in_progress_interval();
            let _ = Box::pin(with_progress(&msg, prev, every, cfg.request_timeout)).await;
        }
        let verdict = evaluate(&shared, &msg, meta).await;
        // The handler is done: its slot goes to the next message while this one settles.
        drop(slot);
        Box::pin(settle(&shared, &msg, &verdict, meta)).await;
        // Released only now: (ordered mode) the subject's turn.
        drop(done);
    }
    .instrument(span);
    futures::future::Either::Right(delivery)
}

/// Decodes `msg` and decides: settled before the handler (beyond `max_attempts`,
/// undecodable, invalid, breaking its schema), or by the handler's result.
async fn evaluate<H: Handler>(
    shared: &Shared<H>,
    msg: &Arc<jetstream::Message>,
    meta: Meta,
) -> Verdict {
    let retry = &shared.cfg.retry;
    let decoded = raw_headers::decode_message(&msg.subject, msg.headers.as_ref(), &msg.payload);
    if let Some(outcome) = decide_before(decoded.as_ref().map(|_| ()), meta.delivered, retry) {
        return refused_before(shared, outcome, &decoded, meta.delivered);
    }
    let event = match decoded {
        Ok(event) => event,
        // Unreachable: decide_before settles every decode error.
        Err(e) => {
            let undecodable = Outcome::DeadLetter(DeadLetterReason::Undecodable);
            return Verdict::before_handler(undecodable, error_chain(&e), "unknown".to_owned());
        }
    };
    if let Some(text) = schema_refusal(shared, &event) {
        let invalid = Outcome::DeadLetter(DeadLetterReason::Invalid);
        return Verdict::before_handler(invalid, text, event.event_type().as_str().to_owned());
    }
    let (stream, consumer) = (shared.stream.clone(), shared.consumer.clone());
    let ctx = DeliveryContext::new(meta, stream, consumer, &shared.shutdown, msg.clone());
    run_handler(shared, msg, event, ctx).await
}

/// The verdict on a delivery [`decide_before`] settled: beyond `max_attempts`, or a decode
/// error (counted as a handler error of its kind).
fn refused_before<H>(
    shared: &Shared<H>,
    outcome: Outcome,
    decoded: &Result<Event, DecodeError>,
    delivered: u64,
) -> Verdict {
    let max_attempts = shared.cfg.retry.max_attempts;
    let event_type = match decoded {
        Ok(e) => e.event_type().as_str().to_owned(),
        Err(_) => "unknown".to_owned(),
    };
    let text = match decoded {
        _ if delivered > u64::from(max_attempts) => format!(
            "delivery {delivered} is beyond max_attempts {max_attempts} (an earlier attempt did not settle); the handler was not run"
        ),
        Ok(_) => String::new(),
        Err(e) => {
            shared.count_error(e.reason());
            error_chain(e)
        }
    };
    Verdict::before_handler(outcome, text, event_type)
}

/// Runs the handler on a decoded (and, with a schema set, valid) event, with in-progress
/// acks while it runs; a panic counts as a transient error.
async fn run_handler<H: Handler>(
    shared: &Shared<H>,
    msg: &jetstream::Message,
    event: Event,
    ctx: DeliveryContext,
) -> Verdict {
    let cfg = &shared.cfg;
    let delivered = ctx.delivered;
    let event_type = event.event_type().as_str().to_owned();
    let event_time = event.time();
    let started = Instant::now();
    let run = AssertUnwindSafe(shared.handler.handle(event, ctx)).catch_unwind();
    let every = cfg.effective_in_progress_interval();
    let result = Box::pin(with_progress(msg, run, every, cfg.request_timeout)).await;
    shared
        .handler_duration
        .record(started.elapsed().as_secs_f64());
    let result = match result {
        Ok(r) => {
            if let Err(e) = &r {
                shared.count_error(e.kind());
            }
            r
        }
        Err(payload) => {
            shared.count_error("panic");
            let panic = HandlerPanic(panic_message(payload.as_ref()));
            Err(HandlerError::transient(panic))
        }
    };
    Verdict {
        outcome: decide(&result, delivered, &cfg.retry),
        error: result
            .as_ref()
            .err()
            .map(|e| e.chain_string())
            .unwrap_or_default(),
        event_type,
        event_time: Some(event_time),
    }
}

/// With a schema set ([`SubscriberConfig::schemas`]): why `event`'s `data` breaks its
/// contract, as the `Dlq-Error` text (JSON pointer and rule), counted as an `invalid`
/// handler error. `None` when the data is valid (or the set accepts an unknown type).
#[cfg(feature = "schema")]
fn schema_refusal<H>(shared: &Shared<H>, event: &Event) -> Option<String> {
    let err = shared
        .cfg
        .schemas
        .as_ref()?
        .validate_received(event)
        .err()?;
    shared.count_error("invalid");
    Some(error_chain(&err))
}

/// Without the `schema` feature there is no set: every event goes to its handler.
#[cfg(not(feature = "schema"))]
fn schema_refusal<H>(_: &Shared<H>, _: &Event) -> Option<String> {
    None
}

/// Runs `fut`, sending an in-progress ack for `msg` every `every` until it completes.
async fn with_progress<F: Future>(
    msg: &jetstream::Message,
    fut: F,
    every: Duration,
    request_timeout: Duration,
) -> F::Output {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            _ = tick.tick() => {
                match timeout(request_timeout.min(every), msg.ack_with(AckKind::Progress)).await {
                    Ok(Ok(())) => debug!("in-progress ack sent"),
                    Ok(Err(e)) => debug!(error = %e, "in-progress ack failed"),
                    Err(_) => debug!("in-progress ack timed out"),
                }
            }
        }
    }
}

/// The text of a panic payload.
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Acts on `verdict`: an ack the server confirms, a NAK with a jittered delay, or a dead
/// letter then a terminate.
async fn settle<H>(shared: &Shared<H>, msg: &jetstream::Message, verdict: &Verdict, meta: Meta) {
    let cfg = &shared.cfg;
    match verdict.outcome {
        Outcome::Ack => ack(shared, msg, verdict).await,
        Outcome::Nak(base) => {
            let delay = jittered(base, cfg.retry.jitter);
            warn!(error = %verdict.error, ?delay, "handler failed; retrying later");
            nak(msg, Some(delay), cfg.request_timeout).await;
            consumed_counter(&verdict.event_type, "nak").increment(1);
        }
        Outcome::DeadLetter(reason) => {
            // Boxed: the rare dead-letter path would otherwise make every delivery's
            // future (moved and allocated once per message) several kilobytes larger.
            Box::pin(dead_letter(shared, msg, verdict, reason, meta)).await;
        }
    }
}

/// Acks `msg` and waits for the server to confirm (in a group, see [`Acker`]);
/// unconfirmed, it will be redelivered.
async fn ack<H>(shared: &Shared<H>, msg: &jetstream::Message, verdict: &Verdict) {
    match shared.acker.ack(msg.reply.as_ref()).await {
        Ok(()) => {
            shared.count_acked(&verdict.event_type);
            if let Some(t) = verdict.event_time {
                let e2e = (OffsetDateTime::now_utc() - t).as_seconds_f64().max(0.0);
                shared.end_to_end.record(e2e);
            }
            debug!("acked");
        }
        Err(e) => {
            consumed_counter(&verdict.event_type, "ack_failed").increment(1);
            warn!(error = %e, "ack not confirmed; the message will be redelivered");
        }
    }
}

/// Writes the dead letter of `msg` and terminates it; if the dead letter is not stored,
/// NAKs it with the delivery's backoff instead.
async fn dead_letter<H>(
    shared: &Shared<H>,
    msg: &jetstream::Message,
    verdict: &Verdict,
    reason: DeadLetterReason,
    meta: Meta,
) {
    let cfg = &shared.cfg;
    let rec = FailureRecord {
        subject: msg.subject.as_str(),
        stream: &shared.stream,
        sequence: meta.stream_sequence,
        consumer: &shared.consumer,
        deliveries: meta.delivered,
        reason,
        error: &verdict.error,
        failed_at: OffsetDateTime::now_utc(),
    };
    let (headers, body) = (msg.headers.as_ref(), msg.payload.clone());
    let consumed = |status| consumed_counter(&verdict.event_type, status).increment(1);
    match publish_dead_letter(&shared.js, headers, body, &rec, cfg.request_timeout).await {
        Ok(()) => {
            error!(reason = %reason, error = %verdict.error, "message dead-lettered");
            metrics::counter!(m::EVENTS_DEAD_LETTERED_TOTAL,
                "consumer" => shared.consumer.clone(), "reason" => reason.as_str())
            .increment(1);
            consumed("dead_letter");
            terminate(msg, cfg.request_timeout).await;
        }
        Err(e) => {
            let delay = jittered(backoff(meta.delivered, &cfg.retry), cfg.retry.jitter);
            error!(reason = %reason, error = %error_chain(&e), ?delay,
                "dead-letter publish failed; NAKing the message instead");
            nak(msg, Some(delay), cfg.request_timeout).await;
            consumed("dead_letter_failed");
        }
    }
}

/// Terminates `msg` (its dead letter is stored) and waits for the server to confirm.
async fn terminate(msg: &jetstream::Message, request_timeout: Duration) {
    match timeout(request_timeout, msg.double_ack_with(AckKind::Term)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e,
            "terminate not confirmed; a redelivery will find the dead letter already stored"),
        Err(_) => warn!(
            "terminate not confirmed in time; a redelivery will find the dead letter already stored"
        ),
    }
}

/// NAKs `msg`: redelivered after `delay`, or at once with `None`.
pub(super) async fn nak(
    msg: &jetstream::Message,
    delay: Option<Duration>,
    request_timeout: Duration,
) {
    match timeout(request_timeout, msg.ack_with(AckKind::Nak(delay))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "NAK not sent; the message returns after ack_wait"),
        Err(_) => warn!("NAK not sent in time; the message returns after ack_wait"),
    }
}
