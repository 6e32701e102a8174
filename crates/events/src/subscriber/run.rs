//! The pull loop ([`PullLoop`]): ensure the consumer, reserve handler slots, pull, dispatch
//! deliveries (see [`super::delivery`]), back off after a failure; then drain.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::{self, Batch};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::acker::Acker;
use super::delivery::{Chain, Shared, deliver, nak, panic_message};
use super::handler::Handler;
use super::{Subscriber, create_consumer};
use crate::backoff::Backoff;
use crate::connection::Denials;
use crate::error::error_chain;
use crate::metrics as m;
use crate::reconnect::Reconnect;

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

/// How long a pull waits for half a batch of handler slots to come free (fast handlers
/// free them within microseconds; slow ones should not leave slots idle for long).
const PULL_GATHER: Duration = Duration::from_millis(1);

/// How long after `fetch_expires` a pull request still open is taken as lost (e.g. a server
/// restart) and abandoned: the server ends every request by `fetch_expires`.
pub(super) const LOST_PULL_GRACE: Duration = Duration::from_secs(10);

/// The deliveries running on the subscriber's task. Boxed: a delivery's future type has no
/// name to store.
type InFlight = FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send>>>;

/// The loop is over: shutdown, or the server denies its pulls.
#[derive(Debug)]
struct Stopped;

/// Why the loop backs off before its next pull.
#[derive(Debug)]
enum Failure {
    /// The consumer could not be re-created (the error chain).
    Create(String),
    /// The pull request failed.
    Request(String),
    /// The pull request was not sent within `request_timeout`.
    NotSent,
    /// The pull request ended with an error.
    Ended(String),
    /// The pull request got no answer by `fetch_expires +` [`LOST_PULL_GRACE`].
    NoAnswer(Duration),
    /// The pull request ended empty long before it expired (e.g. the connection is
    /// closing): backing off rather than spinning.
    EarlyEmpty,
    /// The connection went down and came back: the pull requests sent before are gone
    /// with the old connection (or the restarted server), so they are asked again now.
    Reconnected,
}

impl Failure {
    /// True if the consumer must be looked up or created again before the next pull.
    fn loses_consumer(&self) -> bool {
        !matches!(self, Self::EarlyEmpty)
    }

    fn log(&self, consumer: &str, stream: &str, failures: u32) {
        match self {
            Self::Create(e) => warn!(consumer, stream, failures, error = %e,
                "cannot re-establish the consumer; retrying"),
            Self::Request(e) => warn!(consumer, failures, error = %e,
                "pull request failed; re-establishing the consumer"),
            Self::NotSent => warn!(
                consumer,
                failures, "pull request not sent in time; re-establishing the consumer"
            ),
            Self::Ended(e) => warn!(consumer, failures, error = %e,
                "pull request ended with an error; re-establishing the consumer"),
            Self::NoAnswer(bound) => warn!(
                consumer,
                failures,
                ?bound,
                "pull request got no answer in time; re-establishing the consumer"
            ),
            Self::EarlyEmpty => debug!(consumer, failures, "pull request ended early and empty"),
            Self::Reconnected => info!(consumer, "reconnected; pulling again"),
        }
    }
}

/// How a pull request that was sent ended.
enum PullEnd {
    /// It delivered at least one message.
    Received,
    /// It expired (or ended) without a message.
    Empty,
    /// It broke: the loop backs off and re-establishes the consumer.
    Broken(Failure),
}

/// Delay before the n-th consecutive attempt to re-establish the pull loop.
fn reconnect_delay(failures: u32) -> Duration {
    const RECONNECT: Backoff =
        Backoff::doubling(Duration::from_millis(100), Duration::from_secs(5));
    RECONNECT.jittered(failures.saturating_sub(1), 0.2)
}

pub(super) async fn run<H: Handler>(
    sub: Subscriber,
    handler: H,
    shutdown: CancellationToken,
) -> DrainReport {
    let mut pulls = PullLoop::new(sub, handler, shutdown);
    debug!(consumer = %pulls.shared.consumer, stream = %pulls.shared.stream, "subscriber started");
    while pulls.round().await.is_ok() {}
    pulls.drain().await
}

/// A pull request: its messages as they arrive, the handler slots reserved for them, and
/// when it was sent.
struct Pull {
    batch: Result<Batch, Failure>,
    held: OwnedSemaphorePermit,
    sent_at: Instant,
}

/// The pull loop of one running subscriber and everything it keeps between pulls.
struct PullLoop<H> {
    shared: Arc<Shared<H>>,
    consumer_config: pull::Config,
    /// `None` after a failure: looked up or created again before the next pull.
    consumer: Option<PullConsumer>,
    denials: Option<Denials>,
    shutdown: CancellationToken,
    /// Handler slots; deliveries whose handler finished and whose ack is still on the wire
    /// hold none, but at most `max_settling` deliveries exist at once.
    slots: Arc<Semaphore>,
    max_settling: usize,
    /// Most messages asked for in one pull.
    fetch_batch: usize,
    /// Deliveries run on this task, polled together: a burst of pulled messages sends its
    /// acks in one burst (one socket write instead of one per message), and no delivery
    /// outlives `run`.
    in_flight: InFlight,
    /// Ordered mode: per subject, the completion signal of the last message handed out.
    chains: HashMap<String, oneshot::Receiver<()>>,
    /// Consecutive failures: the exponent of the reconnect delay.
    failures: u32,
    released: usize,
    denied: bool,
    /// The subject a pull request is published on (what a denial names).
    next_subject: String,
    /// The lag gauge's and the acker's tasks, stopped by `lag_stop` when the loop drains.
    lag: JoinSet<()>,
    lag_stop: CancellationToken,
}

impl<H: Handler> PullLoop<H> {
    fn new(sub: Subscriber, handler: H, shutdown: CancellationToken) -> Self {
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
        let max_in_flight = cfg.max_in_flight.max(1) as usize;
        let fetch_batch = (cfg.fetch_batch.max(1) as usize).min(max_in_flight);
        let next_subject = format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}");
        let lag_stop = CancellationToken::new();
        let mut lag = JoinSet::new();
        let acker = Acker::spawn(js.client(), cfg.request_timeout, lag_stop.clone(), &mut lag);
        lag.spawn(lag_loop(
            js.clone(),
            stream.clone(),
            durable.clone(),
            cfg.lag_interval,
            cfg.request_timeout,
            lag_stop.clone(),
        ));
        let shared = Shared::new(handler, js, acker, cfg, stream, durable, shutdown.clone());
        Self {
            shared: Arc::new(shared),
            consumer_config,
            consumer: Some(consumer),
            denials,
            shutdown,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            max_settling: max_in_flight.saturating_mul(2),
            fetch_batch,
            in_flight: FuturesUnordered::new(),
            chains: HashMap::new(),
            failures: 0,
            released: 0,
            denied: false,
            next_subject,
            lag,
            lag_stop,
        }
    }

    /// One pull: consumer, slots, request, deliveries, and the back-off after a failure.
    async fn round(&mut self) -> Result<(), Stopped> {
        if self.shutdown.is_cancelled() {
            return Err(Stopped);
        }
        let Some(consumer) = self.ensure_consumer().await? else {
            return Ok(());
        };
        let held = self.reserve_slots().await?;
        let pull = self.pull(&consumer, held).await?;
        let pulled_at = pull.sent_at;
        let batch = match pull.batch {
            Ok(batch) => batch,
            Err(failure) => {
                drop(pull.held);
                return self.back_off(failure).await;
            }
        };
        match self.dispatch(batch, pull.held, pulled_at).await? {
            PullEnd::Broken(failure) => self.back_off(failure).await,
            PullEnd::Received => {
                if self.failures > 0 {
                    info!(consumer = %self.shared.consumer, "pull loop healthy again");
                }
                self.failures = 0;
                Ok(())
            }
            PullEnd::Empty if pulled_at.elapsed() < self.shared.cfg.fetch_expires / 2 => {
                self.back_off(Failure::EarlyEmpty).await
            }
            PullEnd::Empty => Ok(()),
        }
    }

    /// The consumer to pull from, created again from its declared config after a failure;
    /// `None` (after backing off) if that failed.
    async fn ensure_consumer(&mut self) -> Result<Option<PullConsumer>, Stopped> {
        if let Some(c) = &self.consumer {
            return Ok(Some(c.clone()));
        }
        let s = &self.shared;
        let config = self.consumer_config.clone();
        let create = create_consumer(&s.js, &s.stream, config, s.cfg.request_timeout);
        match alongside(&self.shutdown, &mut self.in_flight, create).await {
            None => Err(Stopped),
            Some(Ok(c)) => {
                info!(consumer = %s.consumer, stream = %s.stream, "consumer re-established");
                self.consumer = Some(c.clone());
                Ok(Some(c))
            }
            Some(Err(e)) => {
                self.back_off(Failure::Create(error_chain(&e))).await?;
                Ok(None)
            }
        }
    }

    /// Waits for a free handler slot (a slot is held while the handler runs, not while its
    /// ack is on the wire: settling messages are bounded by `max_settling`), then briefly for
    /// half a batch of them, so that a busy instance asks for messages in batches rather than
    /// one by one, then takes every free one up to the batch size.
    async fn reserve_slots(&mut self) -> Result<OwnedSemaphorePermit, Stopped> {
        let mut held = loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Err(Stopped),
                Some(()) = self.in_flight.next() => {}
                p = self.slots.clone().acquire_owned(), if self.in_flight.len() < self.max_settling => {
                    // Never closed while we hold `slots`.
                    break p.map_err(|_| Stopped)?;
                }
            }
        };
        let gather = tokio::time::sleep(PULL_GATHER);
        tokio::pin!(gather);
        while held.num_permits() < self.fetch_batch.div_ceil(2) {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Err(Stopped),
                p = self.slots.clone().acquire_owned() => held.merge(p.map_err(|_| Stopped)?),
                Some(()) = self.in_flight.next() => {}
                () = &mut gather => break,
            }
        }
        while held.num_permits() < self.fetch_batch {
            match self.slots.clone().try_acquire_owned() {
                Ok(p) => held.merge(p),
                Err(_) => break,
            }
        }
        Ok(held)
    }

    /// Sends one pull request for as many messages as `held` has slots.
    async fn pull(
        &mut self,
        consumer: &PullConsumer,
        held: OwnedSemaphorePermit,
    ) -> Result<Pull, Stopped> {
        let cfg = &self.shared.cfg;
        let request = consumer
            .batch()
            .max_messages(held.num_permits())
            .expires(cfg.fetch_expires)
            .messages();
        let request = timeout(cfg.request_timeout, request);
        let sent_at = Instant::now();
        let batch = match alongside(&self.shutdown, &mut self.in_flight, request).await {
            None => return Err(Stopped),
            Some(Ok(Ok(batch))) => Ok(batch),
            Some(Ok(Err(e))) => Err(Failure::Request(e.to_string())),
            Some(Err(_)) => Err(Failure::NotSent),
        };
        Ok(Pull {
            batch,
            held,
            sent_at,
        })
    }

    /// Hands every message of `batch` to a delivery on one of the `held` slots, until the
    /// request ends, is lost (no answer by `fetch_expires +` [`LOST_PULL_GRACE`]), is
    /// denied, or shutdown releases what it has not handed out.
    async fn dispatch(
        &mut self,
        mut batch: Batch,
        mut held: OwnedSemaphorePermit,
        pulled_at: Instant,
    ) -> Result<PullEnd, Stopped> {
        let bound = self.shared.cfg.fetch_expires + LOST_PULL_GRACE;
        let pull_denied = pull_denied(self.denials.clone(), self.next_subject.clone(), pulled_at);
        tokio::pin!(pull_denied);
        let mut reconnect = Reconnect::watch(&self.shared.js.client());
        let mut received = false;
        loop {
            let next = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    let timeout = self.shared.cfg.request_timeout;
                    if let Some(consumer) = &self.consumer {
                        self.released = release_unread(consumer, &mut batch, timeout).await;
                    }
                    return Err(Stopped);
                }
                Some(()) = self.in_flight.next() => continue,
                n = timeout_at(pulled_at + bound, batch.next()) => n,
                () = reconnect.happened() => return Ok(PullEnd::Broken(Failure::Reconnected)),
                () = &mut pull_denied => {
                    error!(consumer = %self.shared.consumer, stream = %self.shared.stream,
                        subject = %self.next_subject,
                        "the server denies this identity's pulls on the consumer; stopping (fix its permissions)");
                    self.denied = true;
                    return Err(Stopped);
                }
            };
            match next {
                Ok(Some(Ok(msg))) => {
                    received = true;
                    let slot = match held.split(1) {
                        Some(p) => p,
                        // The server never sends more than asked for; if it did, wait for
                        // a slot rather than exceed the limit.
                        None => self.wait_for_slot().await?,
                    };
                    self.start(msg, slot);
                }
                Ok(Some(Err(e))) => return Ok(PullEnd::Broken(Failure::Ended(e.to_string()))),
                Ok(None) if received => return Ok(PullEnd::Received),
                Ok(None) => return Ok(PullEnd::Empty),
                Err(_) => return Ok(PullEnd::Broken(Failure::NoAnswer(bound))),
            }
        }
    }

    async fn wait_for_slot(&mut self) -> Result<OwnedSemaphorePermit, Stopped> {
        let free = self.slots.clone().acquire_owned();
        match alongside(&self.shutdown, &mut self.in_flight, free).await {
            Some(Ok(p)) => Ok(p),
            _ => Err(Stopped),
        }
    }

    /// Starts the delivery of `msg` on `slot`, chained after the previous message of its
    /// subject in ordered mode.
    fn start(&mut self, msg: jetstream::Message, slot: OwnedSemaphorePermit) {
        let chain: Chain = if self.shared.cfg.ordered_per_subject {
            let (tx, rx) = oneshot::channel();
            let prev = self.chains.insert(msg.subject.to_string(), rx);
            if self.chains.len() > 4096 {
                self.chains.retain(|_, rx| {
                    matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
                });
            }
            (prev, Some(tx))
        } else {
            (None, None)
        };
        let delivery = deliver(self.shared.clone(), msg, slot, chain);
        self.in_flight.push(Box::pin(guarded(delivery)));
    }

    /// The one place a failure is counted, logged and waited out (the reconnect delay grows
    /// with consecutive failures) before the next pull; deliveries keep running meanwhile.
    async fn back_off(&mut self, failure: Failure) -> Result<(), Stopped> {
        self.failures = self.failures.saturating_add(1);
        failure.log(&self.shared.consumer, &self.shared.stream, self.failures);
        if failure.loses_consumer() {
            self.consumer = None;
        }
        let delay = reconnect_delay(self.failures);
        match pause(&self.shutdown, &mut self.in_flight, delay).await {
            true => Ok(()),
            false => Err(Stopped),
        }
    }

    /// No more pulls: in-flight handlers get until `drain_timeout`, the rest are stopped and
    /// their messages left for redelivery; then the lag task stops.
    async fn drain(mut self) -> DrainReport {
        let started = Instant::now();
        let consumer = self.shared.consumer.clone();
        let drain_timeout = self.shared.cfg.drain_timeout;
        self.chains.clear();
        let in_flight_at_stop = self.in_flight.len();
        let deadline = started + drain_timeout;
        let mut finished = 0usize;
        while !self.in_flight.is_empty() {
            match timeout_at(deadline, self.in_flight.next()).await {
                Ok(Some(())) => finished += 1,
                Ok(None) | Err(_) => break,
            }
        }
        let abandoned = self.in_flight.len();
        if abandoned > 0 {
            warn!(consumer = %consumer, abandoned, drain_timeout = ?drain_timeout,
                "drain timed out: stopping unfinished handlers, their messages stay unacked for redelivery");
        }
        // Dropping a delivery stops its handler; its message is redelivered after `ack_wait`.
        self.in_flight = FuturesUnordered::new();
        self.lag_stop.cancel();
        let lag = &mut self.lag;
        let _ = timeout(Duration::from_secs(1), async {
            while lag.join_next().await.is_some() {}
        })
        .await;
        // Anything still in the set is aborted when it drops with `self`.
        let report = DrainReport {
            in_flight: in_flight_at_stop,
            finished,
            abandoned,
            released: self.released,
            drain_time: started.elapsed(),
            denied: self.denied,
        };
        info!(consumer = %consumer, ?report, "subscriber stopped");
        report
    }
}

/// Resolves when the server denies a pull (`subject`) at or after `since`; never without
/// denials.
async fn pull_denied(denials: Option<Denials>, subject: String, since: Instant) {
    match denials {
        Some(d) => drop(d.wait(&subject, since.into_std()).await),
        None => std::future::pending().await,
    }
}

/// On shutdown in the middle of a pull: NAKs at once (no delay) every message of `batch`
/// that arrived and was not handed to a handler, including those still on the wire, so
/// another instance gets them now instead of after `ack_wait`. Returns how many were
/// released. The pull itself ends when `batch` drops (unsubscribe).
///
/// What is on the wire is found with one round trip to the server (a consumer info
/// request): the server writes to a connection in order, so every message of the pull it
/// sent before its answer has been read once the answer arrives. A local flush is not
/// enough: the client's reader may be behind (a handler that blocks a worker delays it).
async fn release_unread(consumer: &PullConsumer, batch: &mut Batch, bound: Duration) -> usize {
    let mut released = 0usize;
    let mut round_trip_done = false;
    loop {
        match batch.next().now_or_never() {
            Some(Some(Ok(msg))) => {
                nak(&msg, None, bound).await;
                released += 1;
            }
            Some(Some(Err(_)) | None) => break,
            None if !round_trip_done => {
                round_trip_done = true;
                match timeout(bound, consumer.get_info()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => debug!(error = %e, "round trip before releasing the pull failed"),
                    Err(_) => debug!("round trip before releasing the pull timed out"),
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
        match timeout(
            request_timeout,
            super::lag::lag_with_age(&js, &stream, &consumer),
        )
        .await
        {
            Ok(Ok((lag, age))) => {
                metrics::gauge!(m::SUBSCRIPTION_LAG, "stream" => stream.clone(), "consumer" => consumer.clone())
                    .set(lag.total() as f64);
                if let Some(age) = age {
                    metrics::gauge!(m::SUBSCRIPTION_LAG_SECONDS, "stream" => stream.clone(), "consumer" => consumer.clone())
                        .set(age.as_secs_f64());
                }
            }
            Ok(Err(e)) => debug!(consumer = %consumer, error = %error_chain(&e), "cannot read lag"),
            Err(_) => debug!(consumer = %consumer, "lag request timed out"),
        }
    }
}
