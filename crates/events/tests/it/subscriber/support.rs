//! Helpers shared by the subscriber tests: stream fixtures, a recording handler, polling,
//! dead-letter reading, and a metrics recorder.

#![allow(unused_imports)] // re-exported for the test modules, not all used here

pub(crate) use std::collections::{BTreeMap, HashMap, HashSet};
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
pub(crate) use std::sync::{Arc, Mutex};
pub(crate) use std::time::Duration;

pub(crate) use async_nats::HeaderMap;
pub(crate) use async_nats::jetstream::{self, stream};
pub(crate) use bytes::Bytes;
pub(crate) use events::dlq::{self, DLQ_STREAM, headers as h};
pub(crate) use events::idempotency::{Idempotent, KvIdempotencyStore};
pub(crate) use events::subscriber::{
    DeliveryContext, DrainReport, HandlerError, ResultExt, RetryPolicy, Subscriber,
    SubscriberConfig, handler_fn,
};
pub(crate) use events::{Event, SubjectFilter};
pub(crate) use events_testkit::NatsServer;
pub(crate) use time::OffsetDateTime;
pub(crate) use time::format_description::well_known::Rfc3339;
pub(crate) use tokio::task::JoinHandle;
pub(crate) use tokio::time::{Instant, sleep, timeout};
pub(crate) use tokio_util::sync::CancellationToken;

pub(crate) const STREAM: &str = "AUTH_EVENTS";
pub(crate) const SUBJECT: &str = "auth.user.created";
/// Upper bound of every wait for a condition (the machine is shared and loaded).
pub(crate) const BOUND: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------

/// Logs to the test's output, filtered by `RUST_LOG` (e.g. `RUST_LOG=events=info`).
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub(crate) async fn create_streams(js: &jetstream::Context) {
    init_tracing();
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["auth.>".into()],
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("create AUTH_EVENTS");
    create_dlq_stream(js).await;
}

pub(crate) async fn create_dlq_stream(js: &jetstream::Context) {
    js.create_stream(stream::Config {
        name: DLQ_STREAM.into(),
        subjects: vec!["dlq.>".into()],
        discard: stream::DiscardPolicy::New,
        max_age: Duration::from_secs(30 * 24 * 3600),
        ..Default::default()
    })
    .await
    .expect("create DLQ_EVENTS");
}

/// Short timings so that retries, ack waits and drains take milliseconds to seconds.
pub(crate) fn fast_config() -> SubscriberConfig {
    SubscriberConfig {
        retry: RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            jitter: 0.2,
        },
        ack_wait: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(10),
        fetch_expires: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        lag_interval: Duration::from_millis(500),
        ..Default::default()
    }
}

pub(crate) fn filter(s: &str) -> SubjectFilter {
    SubjectFilter::new(s).unwrap()
}

pub(crate) fn event(n: usize) -> Event {
    Event::builder(SUBJECT)
        .source("auth-service")
        .organization("org-1")
        .data(&serde_json::json!({ "n": n }))
        .build()
        .unwrap()
}

pub(crate) fn n_of(event: &Event) -> usize {
    event.data()["n"].as_u64().unwrap() as usize
}

/// Publishes events `range`, pipelined; returns (id, stream sequence) in order.
pub(crate) async fn publish_range(
    js: &jetstream::Context,
    range: std::ops::Range<usize>,
) -> Vec<(String, u64)> {
    let mut acks = Vec::new();
    let mut ids = Vec::new();
    for n in range {
        let ev = event(n);
        ids.push(ev.id().to_owned());
        let enc = ev.encode();
        acks.push(
            js.publish_with_headers(enc.subject, enc.headers, enc.payload)
                .await
                .unwrap(),
        );
    }
    let mut out = Vec::new();
    for (id, ack) in ids.into_iter().zip(acks) {
        let ack = timeout(BOUND, ack).await.unwrap().unwrap();
        out.push((id, ack.sequence));
    }
    out
}

pub(crate) async fn publish_raw(
    js: &jetstream::Context,
    headers: Option<HeaderMap>,
    payload: &'static [u8],
) -> u64 {
    js.publish_with_headers(
        SUBJECT,
        headers.unwrap_or_default(),
        Bytes::from_static(payload),
    )
    .await
    .unwrap()
    .await
    .unwrap()
    .sequence
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `bound`.
pub(crate) async fn wait_for(what: &str, bound: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + bound;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn stream_len(js: &jetstream::Context, name: &str) -> u64 {
    js.get_stream(name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

/// Every message in the DLQ stream, by sequence.
pub(crate) async fn dead_letters(
    js: &jetstream::Context,
) -> Vec<jetstream::message::StreamMessage> {
    let stream = js.get_stream(DLQ_STREAM).await.unwrap();
    let mut out = Vec::new();
    let last = stream.get_info().await.unwrap().state.last_sequence;
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(m);
        }
    }
    out
}

pub(crate) fn header<'a>(m: &'a jetstream::message::StreamMessage, name: &str) -> &'a str {
    m.headers
        .get(name)
        .unwrap_or_else(|| panic!("dead letter lacks {name}: {:?}", m.headers))
        .as_str()
}

pub(crate) struct Running {
    pub(crate) token: CancellationToken,
    pub(crate) handle: JoinHandle<DrainReport>,
    pub(crate) durable: String,
}

impl Running {
    /// Cancels and waits for the drain report (bounded).
    pub(crate) async fn stop(self) -> DrainReport {
        self.token.cancel();
        timeout(BOUND, self.handle)
            .await
            .expect("run() did not return in time")
            .expect("run() task failed")
    }
}

pub(crate) async fn start<H: events::subscriber::Handler>(
    js: &jetstream::Context,
    group: &str,
    config: SubscriberConfig,
    handler: H,
) -> Running {
    let sub = Subscriber::builder(js.clone(), filter("auth.user.*"))
        .group(group)
        .config(config)
        .build()
        .await
        .expect("build subscriber");
    let durable = sub.durable_name().to_owned();
    let token = CancellationToken::new();
    let handle = tokio::spawn(sub.run(handler, token.clone()));
    Running {
        token,
        handle,
        durable,
    }
}

/// Records every handler call: event number -> (delivery count, instance, time).
/// (delivery count, instance, time) of one call.
pub(crate) type Call = (u64, usize, Instant);

#[derive(Default)]
pub(crate) struct Calls {
    pub(crate) inner: Mutex<BTreeMap<usize, Vec<Call>>>,
}

impl Calls {
    pub(crate) fn record(&self, n: usize, delivered: u64, instance: usize) {
        self.inner.lock().unwrap().entry(n).or_default().push((
            delivered,
            instance,
            Instant::now(),
        ));
    }
    pub(crate) fn distinct(&self) -> usize {
        self.inner.lock().unwrap().len()
    }
    pub(crate) fn total(&self) -> usize {
        self.inner.lock().unwrap().values().map(Vec::len).sum()
    }
    pub(crate) fn of(&self, n: usize) -> Vec<Call> {
        self.inner
            .lock()
            .unwrap()
            .get(&n)
            .cloned()
            .unwrap_or_default()
    }
}

pub(crate) fn recording(calls: Arc<Calls>, instance: usize) -> impl events::subscriber::Handler {
    handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = calls.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, instance);
            Ok::<_, HandlerError>(())
        }
    })
}

/// Counts deliveries reaching the wrapped handler.
pub(crate) struct Counting<H> {
    pub(crate) deliveries: Arc<AtomicUsize>,
    pub(crate) inner: H,
}

impl<H: events::subscriber::Handler> events::subscriber::Handler for Counting<H> {
    async fn handle(&self, event: Event, ctx: DeliveryContext) -> Result<(), HandlerError> {
        self.deliveries.fetch_add(1, Ordering::SeqCst);
        self.inner.handle(event, ctx).await
    }
}

/// A recorder that keeps every metric by `name{label=value,...}` (labels sorted).
#[derive(Default)]
pub(crate) struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<std::sync::atomic::AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<std::sync::atomic::AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

impl TestRecorder {
    /// A recorder installed as this process's global one (nextest runs each test in its own
    /// process, so it is the test's).
    pub(crate) fn install() -> &'static TestRecorder {
        let recorder: &'static TestRecorder = Box::leak(Box::default());
        if metrics::set_global_recorder(recorder).is_err() {
            panic!("another test installed a global metrics recorder");
        }
        recorder
    }
}

#[derive(Default)]
pub(crate) struct Samples(Mutex<Vec<f64>>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

pub(crate) fn metric_key(key: &metrics::Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let slot = self
            .counters
            .lock()
            .unwrap()
            .entry(metric_key(key))
            .or_default()
            .clone();
        metrics::Counter::from_arc(slot)
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        let slot = self
            .gauges
            .lock()
            .unwrap()
            .entry(metric_key(key))
            .or_default()
            .clone();
        metrics::Gauge::from_arc(slot)
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        let slot = self
            .histograms
            .lock()
            .unwrap()
            .entry(metric_key(key))
            .or_default()
            .clone();
        metrics::Histogram::from_arc(slot)
    }
}

impl TestRecorder {
    pub(crate) fn counter(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }
    /// True if the counter series exists (registered), whatever its value.
    pub(crate) fn has_counter(&self, key: &str) -> bool {
        self.counters.lock().unwrap().contains_key(key)
    }
    pub(crate) fn gauge(&self, key: &str) -> Option<f64> {
        self.gauges
            .lock()
            .unwrap()
            .get(key)
            .map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
    }
    pub(crate) fn samples(&self, key: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .unwrap()
            .get(key)
            .map(|h| h.0.lock().unwrap().clone())
            .unwrap_or_default()
    }
}
