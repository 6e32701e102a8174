//! What every fault scenario shares: streams, events, a publisher whose outcomes go to the
//! checker, and a consumer "process" (its own runtime and connection, so that killing it
//! ends every task and closes its connection at once, as a real crash does).

#![allow(dead_code)] // each scenario file uses a part

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use events::Event;
use events::SubjectFilter;
use events::publisher::{PublishError, PublishOutcome, Publisher, PublisherConfig, RetryPolicy};
use events::subscriber::{
    DeliveryContext, DrainReport, Handler, HandlerError, Subscriber, SubscriberConfig,
};
use events_testkit::{Checker, Report, StoredMessage, read_stream};

/// Event `n`: `auth.user.created` with data `{"n": n}` (the subscriber tests' fixture).
pub(crate) use crate::subscriber::support::event;
use crate::subscriber::support::init_tracing;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

pub(crate) const STREAM: &str = "AUTH_EVENTS";
pub(crate) const DLQ: &str = "DLQ_EVENTS";
pub(crate) const SUBJECT: &str = "auth.user.created";
/// Upper bound of any wait in a scenario (each scenario stays within 60 s when healthy).
pub(crate) const BOUND: Duration = Duration::from_secs(45);

pub(crate) fn events(n: usize) -> Vec<Event> {
    (0..n).map(event).collect()
}

/// AUTH_EVENTS (contract defaults that matter here: file storage, 2 min duplicate window)
/// and DLQ_EVENTS (discard new), with `replicas` each; `tweak` adjusts AUTH_EVENTS.
pub(crate) async fn create_streams(
    js: &jetstream::Context,
    replicas: usize,
    tweak: impl FnOnce(&mut stream::Config),
) {
    init_tracing();
    let mut auth = stream::Config {
        name: STREAM.into(),
        subjects: vec!["auth.>".into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        num_replicas: replicas,
        ..Default::default()
    };
    tweak(&mut auth);
    let dlq = stream::Config {
        name: DLQ.into(),
        subjects: vec!["dlq.>".into()],
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        ..Default::default()
    };
    for config in [auth, dlq] {
        events_testkit::create_stream_when_ready(js, config, BOUND).await;
    }
}

/// Short ack timeout, retries until a 20 s deadline (a leader election takes 4-9 s).
pub(crate) fn publisher_config() -> PublisherConfig {
    PublisherConfig {
        ack_timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(20),
        retry: RetryPolicy {
            max_retries: 100,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        },
        window: 256,
        ..PublisherConfig::new("auth-service")
    }
}

/// Records one publish outcome.
pub(crate) fn record(checker: &Checker, id: &str, out: &Result<PublishOutcome, PublishError>) {
    match out {
        Ok(PublishOutcome::Stored(ack)) => checker.acked(id, ack.sequence),
        Ok(PublishOutcome::Spooled) => {}
        Ok(other) => panic!("unexpected outcome {other:?}"),
        Err(e) => checker.errored(id, e.kind(), e.may_be_stored()),
    }
}

/// Publishes `events` through the windowed path in a task, recording every outcome.
/// Returns the publish errors, for scenarios that check their kinds.
pub(crate) fn publish_burst(
    publisher: &Publisher,
    checker: &Checker,
    events: Vec<Event>,
) -> JoinHandle<Vec<PublishError>> {
    let (publisher, checker) = (publisher.clone(), checker.clone());
    tokio::spawn(async move {
        let mut handles = Vec::with_capacity(events.len());
        for e in &events {
            checker.attempted(e.id());
            handles.push((e.id().to_owned(), publisher.publish_async(e).await));
        }
        let mut errors = Vec::new();
        for (id, handle) in handles {
            let out = match handle {
                Ok(h) => h.await,
                Err(e) => Err(e),
            };
            record(&checker, &id, &out);
            if let Err(e) = out {
                errors.push(e);
            }
        }
        errors
    })
}

/// Awaits a burst task (bounded).
pub(crate) async fn finish(burst: JoinHandle<Vec<PublishError>>) -> Vec<PublishError> {
    timeout(Duration::from_secs(90), burst)
        .await
        .expect("every publish has an outcome in time")
        .expect("burst task")
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `bound`.
pub(crate) async fn wait_for(what: &str, bound: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Messages in `stream` now, 0 while it cannot be asked.
pub(crate) async fn stored_count(js: &jetstream::Context, name: &str) -> u64 {
    let info = async {
        let mut stream = js.get_stream(name).await.ok()?;
        stream.info().await.ok().map(|i| i.state.messages)
    };
    match timeout(Duration::from_secs(2), info).await {
        Ok(Some(messages)) => messages,
        _ => 0,
    }
}

/// Waits until the stream holds at least `n` messages (the fault then lands mid-burst).
pub(crate) async fn wait_stored(js: &jetstream::Context, name: &str, n: u64) {
    wait_for(&format!("{n} messages in {name}"), BOUND, async || {
        stored_count(js, name).await >= n
    })
    .await;
}

/// Reads the stream back with a fresh client (bounded; retried while a node recovers).
pub(crate) async fn read_back(js: &jetstream::Context, name: &str) -> Vec<StoredMessage> {
    read_stream(js, name).await
}

/// The event id in each dead letter's body (the original body, byte for byte).
pub(crate) async fn dead_lettered_ids(js: &jetstream::Context) -> Vec<String> {
    let stream = js.get_stream(DLQ).await.expect("DLQ stream");
    let mut out = Vec::new();
    for m in read_stream(js, DLQ).await {
        let raw = stream
            .get_raw_message(m.sequence)
            .await
            .expect("read a dead letter");
        let body: serde_json::Value = serde_json::from_slice(&raw.payload).expect("JSON body");
        out.push(body["id"].as_str().expect("event id").to_owned());
    }
    out
}

/// The end of a publish-and-consume scenario: read the stream back, wait until every
/// stored event is handled, stop the consumer and the publisher, check.
pub(crate) async fn settle_and_check(
    js: &jetstream::Context,
    checker: &Checker,
    consumer: ConsumerProcess,
    publisher: Publisher,
) -> Report {
    let stored = read_back(js, STREAM).await;
    wait_for("every stored event handled", BOUND, async || {
        checker.handled_count() >= stored.len() as u64
    })
    .await;
    consumer.stop().await;
    publisher.close(Duration::from_secs(5)).await.unwrap();
    checker.check(&stored)
}

/// The durable name of the scenarios' consumer group `faults` on `auth.user.*`.
pub(crate) fn durable() -> String {
    events::subscriber::durable_name("faults", &SubjectFilter::new("auth.user.*").unwrap())
        .unwrap()
        .into_string()
}

/// Short timings: seconds-long ack waits, millisecond backoffs.
pub(crate) fn subscriber_config() -> SubscriberConfig {
    SubscriberConfig {
        retry: events::subscriber::RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            jitter: 0.2,
        },
        ack_wait: Duration::from_secs(2),
        max_in_flight: 8,
        max_ack_pending: 16,
        fetch_batch: 8,
        drain_timeout: Duration::from_secs(10),
        fetch_expires: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        lag_interval: Duration::from_millis(500),
        ..Default::default()
    }
}

/// The scenarios' handler: takes `delay` (asleep, or blocking its thread), panics when
/// `panics(n, delivered)` says so, then records the event as handled in the checker.
#[derive(Clone)]
pub(crate) struct Recording {
    pub(crate) checker: Checker,
    pub(crate) delay: Duration,
    /// Block the thread instead of sleeping: no in-progress ack can be sent meanwhile.
    pub(crate) blocking: bool,
    pub(crate) panics: fn(usize, u64) -> bool,
    /// Fail permanently (dead letter at once) when this says so.
    pub(crate) permanent: fn(usize) -> bool,
}

impl Recording {
    pub(crate) fn new(checker: &Checker, delay: Duration) -> Self {
        Self {
            checker: checker.clone(),
            delay,
            blocking: false,
            panics: |_, _| false,
            permanent: |_| false,
        }
    }
}

impl Handler for Recording {
    async fn handle(&self, event: Event, ctx: DeliveryContext) -> Result<(), HandlerError> {
        let n = event.data()["n"].as_u64().expect("n") as usize;
        if self.blocking {
            std::thread::sleep(self.delay);
        } else {
            sleep(self.delay).await;
        }
        if (self.panics)(n, ctx.delivered) {
            panic!("handler panics on event {n}, delivery {}", ctx.delivered);
        }
        if (self.permanent)(n) {
            return Err(HandlerError::permanent(format!("event {n} is refused")));
        }
        self.checker.handled(event.id());
        Ok(())
    }
}

/// A consumer instance as its own "process": its own runtime (two workers) and its own
/// connection to `urls`. [`kill`](Self::kill) drops every task and the connection at once;
/// [`stop`](Self::stop) drains gracefully.
pub(crate) struct ConsumerProcess {
    runtime: Option<Runtime>,
    token: CancellationToken,
    run: Option<JoinHandle<DrainReport>>,
}

impl ConsumerProcess {
    pub(crate) async fn start<H: Handler>(
        urls: Vec<String>,
        group: &str,
        config: SubscriberConfig,
        handler: H,
    ) -> ConsumerProcess {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("consumer runtime");
        let token = CancellationToken::new();
        let (group, t) = (group.to_owned(), token.clone());
        let run = runtime.spawn(async move {
            let client = connect(urls).await;
            let js = jetstream::new(client);
            let sub = Subscriber::builder(js, SubjectFilter::new("auth.user.*").unwrap())
                .group(group)
                .config(config)
                .build()
                .await
                .expect("build subscriber");
            sub.run(handler, t).await
        });
        ConsumerProcess {
            runtime: Some(runtime),
            token,
            run: Some(run),
        }
    }

    /// Like SIGKILL: every task of this "process" ends now and its connection closes.
    pub(crate) fn kill(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Graceful: cancel, wait for the drain report (bounded).
    pub(crate) async fn stop(mut self) -> DrainReport {
        self.token.cancel();
        let report = timeout(BOUND, self.run.take().expect("running"))
            .await
            .expect("drained in time")
            .expect("run task");
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        report
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A client that retries its first connect and reconnects quickly (100 ms .. 1 s).
pub(crate) async fn connect(urls: Vec<String>) -> async_nats::Client {
    let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
    timeout(
        BOUND,
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(1000)))
            .connect(addrs),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

/// Shared by scenarios that start a publisher on `client` with [`publisher_config`].
pub(crate) async fn publisher(client: &async_nats::Client) -> Publisher {
    Publisher::new(client.clone(), publisher_config())
        .await
        .expect("publisher")
}
