//! The pull loop, per-delivery processing, and drain.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Batch;
use async_nats::jetstream::{self, AckKind};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, error, info, warn};

use super::backoff::{backoff, jittered};
use super::config::SubscriberConfig;
use super::handler::{DeliveryContext, Handler, HandlerError};
use super::outcome::{Outcome, decide, decide_before};
use super::{Subscriber, create_consumer};
use crate::dlq::DeadLetterReason;
use crate::dlq::{FailureRecord, publish_dead_letter};
use crate::error::error_chain;
use crate::event::Event;
use crate::metrics as m;
use crate::raw_headers;

/// What [`Subscriber::run`] did when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Deliveries being handled when shutdown began.
    pub in_flight: usize,
    /// Of those, how many finished and were settled within `drain_timeout`.
    pub finished: usize,
    /// Of those, how many were still running at the deadline: stopped, left unacked, and so
    /// redelivered after `ack_wait`.
    pub abandoned: usize,
    /// Messages of the pull under way when shutdown began that no handler had taken yet:
    /// NAKed at once (no delay), so another instance handles them now instead of after
    /// `ack_wait`.
    pub released: usize,
    /// How long the drain took.
    pub drain_time: Duration,
    /// True if it stopped because the server denied its pulls on the consumer (this
    /// identity may not read through it): a configuration problem, not an outage.
    pub denied: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("handler panicked: {0}")]
struct HandlerPanic(String);

struct Shared<H> {
    handler: H,
    js: jetstream::Context,
    cfg: SubscriberConfig,
    stream: String,
    consumer: String,
    shutdown: CancellationToken,
    /// Handles of the series every delivery records, registered once instead of building a
    /// labelled key per message.
    handler_duration: metrics::Histogram,
    end_to_end: metrics::Histogram,
    /// `events_consumed_total{status="ack"}` per event type (the other statuses are rare).
    acked: Mutex<HashMap<String, metrics::Counter>>,
}

/// How long a pull waits for half a batch of handler slots to come free (fast handlers
/// free them within microseconds; slow ones should not leave slots idle for long).
const PULL_GATHER: Duration = Duration::from_millis(1);

/// Event types whose ack counter handle is cached; beyond that the macro looks it up.
const MAX_CACHED_TYPES: usize = 1024;

impl<H> Shared<H> {
    fn count_acked(&self, event_type: &str) {
        let Ok(mut cache) = self.acked.lock() else {
            return consumed_counter(event_type, "ack").increment(1);
        };
        if let Some(c) = cache.get(event_type) {
            return c.increment(1);
        }
        let c = consumed_counter(event_type, "ack");
        c.increment(1);
        if cache.len() < MAX_CACHED_TYPES {
            cache.insert(event_type.to_owned(), c);
        }
    }
}

fn consumed_counter(event_type: &str, status: &'static str) -> metrics::Counter {
    metrics::counter!(m::EVENTS_CONSUMED_TOTAL, "event_type" => event_type.to_owned(), "status" => status)
}

/// Delay before the n-th consecutive attempt to re-establish the pull loop.
fn reconnect_delay(failures: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(5));
    jittered(base, 0.2)
}

pub(super) async fn run<H: Handler>(
    sub: Subscriber,
    handler: H,
    shutdown: CancellationToken,
) -> DrainReport {
    let Subscriber {
        js,
        stream,
        durable,
        config: cfg,
        consumer_config,
        consumer,
        denials,
        ..
    } = sub;
    let shared = Arc::new(Shared {
        handler,
        js: js.clone(),
        cfg: cfg.clone(),
        stream: stream.clone(),
        consumer: durable.clone(),
        shutdown: shutdown.clone(),
        handler_duration: metrics::histogram!(m::EVENT_HANDLER_DURATION_SECONDS, "consumer" => durable.clone()),
        end_to_end: metrics::histogram!(m::EVENT_END_TO_END_SECONDS, "consumer" => durable.clone()),
        acked: Mutex::new(HashMap::new()),
    });
    register_series(&durable);
    let max_in_flight = cfg.max_in_flight.max(1) as usize;
    // Handler slots; deliveries whose handler finished and whose ack is still on the wire
    // hold none, but at most `max_settling` deliveries exist at once.
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let max_settling = max_in_flight.saturating_mul(2);
    // Deliveries run on this task, polled together: a burst of pulled messages sends its
    // acks in one burst (one socket write instead of one per message), and no delivery
    // outlives `run`.
    let mut in_flight = FuturesUnordered::new();
    let mut aux: JoinSet<()> = JoinSet::new();
    let aux_stop = CancellationToken::new();
    aux.spawn(lag_loop(
        js.clone(),
        stream.clone(),
        durable.clone(),
        cfg.lag_interval,
        cfg.request_timeout,
        aux_stop.clone(),
    ));
    // Ordered mode: per subject, the completion signal of the last message handed out.
    let mut chains: HashMap<String, oneshot::Receiver<()>> = HashMap::new();
    let mut consumer = Some(consumer);
    let mut failures: u32 = 0;
    let mut released = 0usize;
    let pull_bound = cfg.fetch_expires + Duration::from_secs(10);
    let next_subject = format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}");
    let mut denied = false;
    debug!(consumer = %durable, stream = %stream, "subscriber started");

    'pull: loop {
        if shutdown.is_cancelled() {
            break;
        }
        let current = match &consumer {
            Some(c) => c.clone(),
            None => {
                let create =
                    create_consumer(&js, &stream, consumer_config.clone(), cfg.request_timeout);
                let Some(created) = alongside(&shutdown, &mut in_flight, create).await else {
                    break 'pull;
                };
                match created {
                    Ok(c) => {
                        info!(consumer = %durable, stream = %stream, "consumer re-established");
                        consumer = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        warn!(consumer = %durable, stream = %stream, failures, error = %error_chain(&e),
                            "cannot re-establish the consumer; retrying");
                        if !pause(&shutdown, &mut in_flight, reconnect_delay(failures)).await {
                            break 'pull;
                        }
                        continue;
                    }
                }
            }
        };

        // Wait for a free handler slot (a slot is held while the handler runs, not while
        // its ack is on the wire: settling messages are bounded by `max_settling`), then
        // briefly for half a batch of them, so that a busy instance asks for messages in
        // batches rather than one by one, then take every free one up to the batch size.
        let fetch_batch = (cfg.fetch_batch.max(1) as usize).min(max_in_flight);
        let mut held = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break 'pull,
                Some(()) = in_flight.next() => {}
                p = slots.clone().acquire_owned(), if in_flight.len() < max_settling => match p {
                    Ok(p) => break p,
                    Err(_) => break 'pull, // never closed while we hold `slots`
                },
            }
        };
        let gather = tokio::time::sleep(PULL_GATHER);
        tokio::pin!(gather);
        while held.num_permits() < fetch_batch.div_ceil(2) {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break 'pull,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => held.merge(p),
                    Err(_) => break 'pull,
                },
                Some(()) = in_flight.next() => {}
                () = &mut gather => break,
            }
        }
        while held.num_permits() < fetch_batch {
            match slots.clone().try_acquire_owned() {
                Ok(p) => held.merge(p),
                Err(_) => break,
            }
        }
        let want = held.num_permits();

        let request = timeout(
            cfg.request_timeout,
            current
                .batch()
                .max_messages(want)
                .expires(cfg.fetch_expires)
                .messages(),
        );
        let Some(batch) = alongside(&shutdown, &mut in_flight, request).await else {
            break 'pull;
        };
        let mut batch = match batch {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                failures = failures.saturating_add(1);
                warn!(consumer = %durable, failures, error = %e, "pull request failed; re-establishing the consumer");
                consumer = None;
                if !pause(&shutdown, &mut in_flight, reconnect_delay(failures)).await {
                    break 'pull;
                }
                continue;
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                warn!(consumer = %durable, failures, "pull request not sent in time; re-establishing the consumer");
                consumer = None;
                if !pause(&shutdown, &mut in_flight, reconnect_delay(failures)).await {
                    break 'pull;
                }
                continue;
            }
        };
        let pulled_at = Instant::now();
        // The server ends the request by `fetch_expires`; a request still open well after
        // that was lost (e.g. a server restart) and is abandoned.
        let batch_deadline = pulled_at + pull_bound;
        let pull_denied = pull_denied(denials.as_ref(), &next_subject, pulled_at);
        tokio::pin!(pull_denied);

        let mut received = 0usize;
        let mut broken = false;
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    released = release_unread(&js.client(), &mut batch, cfg.request_timeout).await;
                    break 'pull;
                }
                Some(()) = in_flight.next() => continue,
                n = timeout_at(batch_deadline, batch.next()) => n,
                () = &mut pull_denied => {
                    error!(consumer = %durable, stream = %stream, subject = %next_subject,
                        "the server denies this identity's pulls on the consumer; stopping (fix its permissions)");
                    denied = true;
                    break 'pull;
                }
            };
            match next {
                Ok(Some(Ok(msg))) => {
                    received += 1;
                    let slot = match held.split(1) {
                        Some(p) => p,
                        // The server never sends more than asked for; if it did, wait for
                        // a slot rather than exceed the limit.
                        None => {
                            let free = slots.clone().acquire_owned();
                            match alongside(&shutdown, &mut in_flight, free).await {
                                Some(Ok(p)) => p,
                                _ => break 'pull,
                            }
                        }
                    };
                    let (prev, done) = if cfg.ordered_per_subject {
                        let (tx, rx) = oneshot::channel();
                        let prev = chains.insert(msg.subject.to_string(), rx);
                        if chains.len() > 4096 {
                            chains.retain(|_, rx| {
                                matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
                            });
                        }
                        (prev, Some(tx))
                    } else {
                        (None, None)
                    };
                    in_flight.push(guarded(deliver(shared.clone(), msg, slot, prev, done)));
                }
                Ok(Some(Err(e))) => {
                    warn!(consumer = %durable, error = %e, "pull request ended with an error; re-establishing the consumer");
                    broken = true;
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    warn!(consumer = %durable, bound = ?pull_bound,
                        "pull request got no answer in time; re-establishing the consumer");
                    broken = true;
                    break;
                }
            }
        }
        drop(held);
        if broken {
            failures = failures.saturating_add(1);
            consumer = None;
            if !pause(&shutdown, &mut in_flight, reconnect_delay(failures)).await {
                break 'pull;
            }
        } else if received > 0 {
            if failures > 0 {
                info!(consumer = %durable, "pull loop healthy again");
            }
            failures = 0;
        } else if pulled_at.elapsed() < cfg.fetch_expires / 2 {
            // Ended empty long before it expires (e.g. the connection is closing): back off
            // rather than spin.
            failures = failures.saturating_add(1);
            debug!(consumer = %durable, failures, "pull request ended early and empty");
            if !pause(&shutdown, &mut in_flight, reconnect_delay(failures)).await {
                break 'pull;
            }
        }
    }

    // Drain: no more pulls; in-flight handlers get until the deadline.
    let started = Instant::now();
    drop(chains);
    let in_flight_at_stop = in_flight.len();
    let deadline = started + cfg.drain_timeout;
    let mut finished = 0usize;
    while !in_flight.is_empty() {
        match timeout_at(deadline, in_flight.next()).await {
            Ok(Some(())) => finished += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let abandoned = in_flight.len();
    if abandoned > 0 {
        warn!(consumer = %durable, abandoned, drain_timeout = ?cfg.drain_timeout,
            "drain timed out: stopping unfinished handlers, their messages stay unacked for redelivery");
    }
    // Dropping a delivery stops its handler; its message is redelivered after `ack_wait`.
    drop(in_flight);
    aux_stop.cancel();
    let _ = timeout(Duration::from_secs(1), async {
        while aux.join_next().await.is_some() {}
    })
    .await;
    // Anything still in the set is aborted when it drops here.
    let report = DrainReport {
        in_flight: in_flight_at_stop,
        finished,
        abandoned,
        released,
        drain_time: started.elapsed(),
        denied,
    };
    info!(consumer = %durable, ?report, "subscriber stopped");
    report
}

/// Resolves when the server denies a pull (`subject`) at or after `since`; never without
/// denials.
async fn pull_denied(denials: Option<&crate::connection::Denials>, subject: &str, since: Instant) {
    match denials {
        Some(d) => drop(d.wait(subject, since.into_std()).await),
        None => std::future::pending().await,
    }
}

/// On shutdown in the middle of a pull: NAKs at once (no delay) every message of `batch`
/// that arrived and was not handed to a handler, including those the server sent before it
/// answered a flush, so another instance gets them now instead of after `ack_wait`.
/// Returns how many were released. The pull itself ends when `batch` drops (unsubscribe).
async fn release_unread(client: &async_nats::Client, batch: &mut Batch, bound: Duration) -> usize {
    let mut released = 0usize;
    let mut flushed = false;
    loop {
        match batch.next().now_or_never() {
            Some(Some(Ok(msg))) => {
                nak(&msg, None, bound).await;
                released += 1;
            }
            Some(Some(Err(_)) | None) => break,
            // Nothing buffered: one round trip lets what is already on the wire arrive.
            None if !flushed => {
                flushed = true;
                if timeout(bound, client.flush()).await.is_err() {
                    debug!("flush before releasing the pull timed out");
                }
            }
            None => break,
        }
    }
    if released > 0 {
        info!(
            released,
            "shutdown: released the unhandled messages of the current pull"
        );
    }
    released
}

/// Awaits `fut` while the deliveries in flight keep running; `None` if `token` was
/// cancelled first.
async fn alongside<F: Future, D: Future<Output = ()>>(
    token: &CancellationToken,
    in_flight: &mut FuturesUnordered<D>,
    fut: F,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            _ = token.cancelled() => return None,
            Some(()) = in_flight.next() => {}
            out = &mut fut => return Some(out),
        }
    }
}

/// Sleeps for `d` while the deliveries in flight keep running; false if `token` was
/// cancelled first.
async fn pause<D: Future<Output = ()>>(
    token: &CancellationToken,
    in_flight: &mut FuturesUnordered<D>,
    d: Duration,
) -> bool {
    alongside(token, in_flight, tokio::time::sleep(d))
        .await
        .is_some()
}

/// A delivery whose panic (a bug in the library; handler panics are caught inside) is
/// logged instead of ending the subscriber. Its message stays unacked for redelivery.
async fn guarded<F: Future<Output = ()>>(fut: F) {
    if let Err(payload) = AssertUnwindSafe(fut).catch_unwind().await {
        error!(panic = %panic_message(payload.as_ref()),
            "delivery panicked; its message stays unacked for redelivery");
    }
}

async fn lag_loop(
    js: jetstream::Context,
    stream: String,
    consumer: String,
    every: Duration,
    request_timeout: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match timeout(request_timeout, super::lag(&js, &stream, &consumer)).await {
            Ok(Ok(lag)) => {
                metrics::gauge!(m::SUBSCRIPTION_LAG, "stream" => stream.clone(), "consumer" => consumer.clone())
                    .set(lag.total() as f64);
            }
            Ok(Err(e)) => debug!(consumer = %consumer, error = %error_chain(&e), "cannot read lag"),
            Err(_) => debug!(consumer = %consumer, "lag request timed out"),
        }
    }
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

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

fn deliver<H: Handler>(
    shared: Arc<Shared<H>>,
    msg: jetstream::Message,
    slot: OwnedSemaphorePermit,
    prev: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
) -> impl Future<Output = ()> + Send {
    let (delivered, stream_sequence, consumer_sequence, published) = match msg.info() {
        Ok(i) => (
            u64::try_from(i.delivered).unwrap_or(1).max(1),
            i.stream_sequence,
            i.consumer_sequence,
            i.published,
        ),
        Err(e) => {
            // Not a JetStream delivery (no ack subject): nothing to ack or redeliver.
            error!(consumer = %shared.consumer, subject = %msg.subject, error = %e,
                "message without delivery metadata dropped");
            return futures::future::Either::Left(std::future::ready(()));
        }
    };
    let span = debug_span!("deliver", consumer = %shared.consumer, subject = %msg.subject,
        stream_seq = stream_sequence, delivered);
    // A plain function returning the future: the arguments live in it once, not also in
    // an outer state machine (the future is allocated and moved once per message).
    let delivery = async move {
        let cfg = &shared.cfg;
        let every = cfg.effective_in_progress_interval();
        if let Some(prev) = prev {
            // Ordered mode: the previous message of this subject settles first.
            let _ = Box::pin(with_progress(&msg, prev, every, cfg.request_timeout)).await;
        }
        let decoded = raw_headers::decode_message(&msg.subject, msg.headers.as_ref(), &msg.payload);
        let (outcome, error_text, event_type, event_time) =
            match (decide_before(decoded.as_ref().map(|_| ()), delivered, &cfg.retry), decoded) {
                (Some(outcome), decoded) => {
                    let (text, event_type) = match &decoded {
                        _ if delivered > u64::from(cfg.retry.max_attempts) => (
                            format!(
                                "delivery {delivered} is beyond max_attempts {} (an earlier attempt did not settle); the handler was not run",
                                cfg.retry.max_attempts
                            ),
                            decoded
                                .as_ref()
                                .map(|e| e.event_type().as_str().to_owned())
                                .unwrap_or_else(|_| "unknown".to_owned()),
                        ),
                        Ok(e) => (String::new(), e.event_type().as_str().to_owned()),
                        Err(e) => {
                            metrics::counter!(m::EVENT_HANDLER_ERRORS_TOTAL,
                                "consumer" => shared.consumer.clone(), "kind" => e.reason())
                            .increment(1);
                            (error_chain(e), "unknown".to_owned())
                        }
                    };
                    (outcome, text, event_type, None)
                }
                (None, Ok(event)) => match schema_refusal(&shared, &event) {
                    Some(text) => (
                        Outcome::DeadLetter(DeadLetterReason::Invalid),
                        text,
                        event.event_type().as_str().to_owned(),
                        None,
                    ),
                    None => {
                        let ctx = DeliveryContext {
                            delivered,
                            stream_sequence,
                            consumer_sequence,
                            stream: shared.stream.clone(),
                            consumer: shared.consumer.clone(),
                            subject: msg.subject.to_string(),
                            published,
                            shutdown: shared.shutdown.clone(),
                        };
                        run_handler(&shared, &msg, event, ctx).await
                    }
                },
                (None, Err(e)) => (
                    // Unreachable: decide_before settles every decode error.
                    Outcome::DeadLetter(DeadLetterReason::Undecodable),
                    error_chain(&e),
                    "unknown".to_owned(),
                    None,
                ),
            };
        // The handler is done: its slot goes to the next message while this one settles.
        drop(slot);
        Box::pin(settle(&shared, &msg, outcome, &error_text, &event_type, event_time, delivered, stream_sequence)).await;
        // Released only now: (ordered mode) the subject's turn.
        drop(done);
    }
    .instrument(span);
    futures::future::Either::Right(delivery)
}

/// What a delivery came to: outcome, error text (the `Dlq-Error` of a dead letter), event
/// type (metric label) and the event's time (end-to-end latency, when the handler ran).
type Verdict = (Outcome, String, String, Option<OffsetDateTime>);

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
                metrics::counter!(m::EVENT_HANDLER_ERRORS_TOTAL,
                    "consumer" => shared.consumer.clone(), "kind" => e.kind())
                .increment(1);
            }
            r
        }
        Err(payload) => {
            metrics::counter!(m::EVENT_HANDLER_ERRORS_TOTAL,
                "consumer" => shared.consumer.clone(), "kind" => "panic")
            .increment(1);
            Err(HandlerError::transient(HandlerPanic(panic_message(
                payload.as_ref(),
            ))))
        }
    };
    let text = match &result {
        Ok(()) => String::new(),
        Err(e) => e.chain_string(),
    };
    (
        decide(&result, delivered, &cfg.retry),
        text,
        event_type,
        Some(event_time),
    )
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
    metrics::counter!(m::EVENT_HANDLER_ERRORS_TOTAL,
        "consumer" => shared.consumer.clone(), "kind" => "invalid")
    .increment(1);
    Some(error_chain(&err))
}

/// Without the `schema` feature there is no set: every event goes to its handler.
#[cfg(not(feature = "schema"))]
fn schema_refusal<H>(_: &Shared<H>, _: &Event) -> Option<String> {
    None
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

#[allow(clippy::too_many_arguments)]
async fn settle<H>(
    shared: &Shared<H>,
    msg: &jetstream::Message,
    outcome: Outcome,
    error_text: &str,
    event_type: &str,
    event_time: Option<OffsetDateTime>,
    delivered: u64,
    stream_sequence: u64,
) {
    let cfg = &shared.cfg;
    let consumed = |status: &'static str| consumed_counter(event_type, status).increment(1);
    match outcome {
        Outcome::Ack => match timeout(cfg.request_timeout, msg.double_ack()).await {
            Ok(Ok(())) => {
                shared.count_acked(event_type);
                if let Some(t) = event_time {
                    let e2e = (OffsetDateTime::now_utc() - t).as_seconds_f64().max(0.0);
                    shared.end_to_end.record(e2e);
                }
                debug!("acked");
            }
            Ok(Err(e)) => {
                consumed("ack_failed");
                warn!(error = %e, "ack not confirmed; the message will be redelivered");
            }
            Err(_) => {
                consumed("ack_failed");
                warn!("ack not confirmed in time; the message will be redelivered");
            }
        },
        Outcome::Nak(base) => {
            let delay = jittered(base, cfg.retry.jitter);
            warn!(error = %error_text, ?delay, "handler failed; retrying later");
            nak(msg, Some(delay), cfg.request_timeout).await;
            consumed("nak");
        }
        Outcome::DeadLetter(reason) => {
            let rec = FailureRecord {
                subject: msg.subject.as_str(),
                stream: &shared.stream,
                sequence: stream_sequence,
                consumer: &shared.consumer,
                deliveries: delivered,
                reason,
                error: error_text,
                failed_at: OffsetDateTime::now_utc(),
            };
            // Boxed: the rare dead-letter path would otherwise make every delivery's
            // future (moved and allocated once per message) several kilobytes larger.
            match Box::pin(publish_dead_letter(
                &shared.js,
                msg.headers.as_ref(),
                msg.payload.clone(),
                &rec,
                cfg.request_timeout,
            ))
            .await
            {
                Ok(()) => {
                    error!(reason = %reason, error = %error_text, "message dead-lettered");
                    metrics::counter!(m::EVENTS_DEAD_LETTERED_TOTAL,
                        "consumer" => shared.consumer.clone(), "reason" => reason.as_str())
                    .increment(1);
                    consumed("dead_letter");
                    match timeout(cfg.request_timeout, msg.double_ack_with(AckKind::Term)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => warn!(error = %e,
                            "terminate not confirmed; a redelivery will find the dead letter already stored"),
                        Err(_) => warn!(
                            "terminate not confirmed in time; a redelivery will find the dead letter already stored"
                        ),
                    }
                }
                Err(e) => {
                    let delay = jittered(backoff(delivered, &cfg.retry), cfg.retry.jitter);
                    error!(reason = %reason, error = %error_chain(&e), ?delay,
                        "dead-letter publish failed; NAKing the message instead");
                    nak(msg, Some(delay), cfg.request_timeout).await;
                    consumed("dead_letter_failed");
                }
            }
        }
    }
}

/// NAKs `msg`: redelivered after `delay`, or at once with `None`.
async fn nak(msg: &jetstream::Message, delay: Option<Duration>, request_timeout: Duration) {
    match timeout(request_timeout, msg.ack_with(AckKind::Nak(delay))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "NAK not sent; the message returns after ack_wait"),
        Err(_) => warn!("NAK not sent in time; the message returns after ack_wait"),
    }
}
