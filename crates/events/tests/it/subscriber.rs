//! Integration tests: subscriber (durable groups, outcomes, dead letters, drain, resilience,
//! idempotency), each against its own nats-server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use events::dlq::{self, DLQ_STREAM, headers as h};
use events::idempotency::{Idempotent, KvIdempotencyStore};
use events::subscriber::{
    DeliveryContext, DrainReport, HandlerError, ResultExt, RetryPolicy, Subscriber,
    SubscriberConfig, handler_fn,
};
use events::{Event, SubjectFilter};
use events_testkit::NatsServer;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

const STREAM: &str = "AUTH_EVENTS";
const SUBJECT: &str = "auth.user.created";
/// Upper bound of every wait for a condition (the machine is shared and loaded).
const BOUND: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// helpers

/// Logs to the test's output, filtered by `RUST_LOG` (e.g. `RUST_LOG=events=info`).
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn create_streams(js: &jetstream::Context) {
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

async fn create_dlq_stream(js: &jetstream::Context) {
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
fn fast_config() -> SubscriberConfig {
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

fn filter(s: &str) -> SubjectFilter {
    SubjectFilter::new(s).unwrap()
}

fn event(n: usize) -> Event {
    Event::builder(SUBJECT)
        .source("auth-service")
        .organization("org-1")
        .data(&serde_json::json!({ "n": n }))
        .build()
        .unwrap()
}

fn n_of(event: &Event) -> usize {
    event.data()["n"].as_u64().unwrap() as usize
}

/// Publishes events `range`, pipelined; returns (id, stream sequence) in order.
async fn publish_range(
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

async fn publish_raw(
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
async fn wait_for(what: &str, bound: Duration, mut cond: impl AsyncFnMut() -> bool) {
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

async fn stream_len(js: &jetstream::Context, name: &str) -> u64 {
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
async fn dead_letters(js: &jetstream::Context) -> Vec<jetstream::message::StreamMessage> {
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

fn header<'a>(m: &'a jetstream::message::StreamMessage, name: &str) -> &'a str {
    m.headers
        .get(name)
        .unwrap_or_else(|| panic!("dead letter lacks {name}: {:?}", m.headers))
        .as_str()
}

struct Running {
    token: CancellationToken,
    handle: JoinHandle<DrainReport>,
    durable: String,
}

impl Running {
    /// Cancels and waits for the drain report (bounded).
    async fn stop(self) -> DrainReport {
        self.token.cancel();
        timeout(BOUND, self.handle)
            .await
            .expect("run() did not return in time")
            .expect("run() task failed")
    }
}

async fn start<H: events::subscriber::Handler>(
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
type Call = (u64, usize, Instant);

#[derive(Default)]
struct Calls {
    inner: Mutex<BTreeMap<usize, Vec<Call>>>,
}

impl Calls {
    fn record(&self, n: usize, delivered: u64, instance: usize) {
        self.inner.lock().unwrap().entry(n).or_default().push((
            delivered,
            instance,
            Instant::now(),
        ));
    }
    fn distinct(&self) -> usize {
        self.inner.lock().unwrap().len()
    }
    fn total(&self) -> usize {
        self.inner.lock().unwrap().values().map(Vec::len).sum()
    }
    fn of(&self, n: usize) -> Vec<Call> {
        self.inner
            .lock()
            .unwrap()
            .get(&n)
            .cloned()
            .unwrap_or_default()
    }
}

fn recording(calls: Arc<Calls>, instance: usize) -> impl events::subscriber::Handler {
    handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = calls.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, instance);
            Ok::<_, HandlerError>(())
        }
    })
}

/// Counts deliveries reaching the wrapped handler.
struct Counting<H> {
    deliveries: Arc<AtomicUsize>,
    inner: H,
}

impl<H: events::subscriber::Handler> events::subscriber::Handler for Counting<H> {
    async fn handle(&self, event: Event, ctx: DeliveryContext) -> Result<(), HandlerError> {
        self.deliveries.fetch_add(1, Ordering::SeqCst);
        self.inner.handle(event, ctx).await
    }
}

// ---------------------------------------------------------------------------------------
// tests

#[tokio::test]
async fn subscriber_two_instances_in_one_group_split_the_work() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    // Two instances, each on its own connection, as two processes would be.
    let slow = |calls: Arc<Calls>, i: usize| {
        handler_fn(move |event: Event, ctx: DeliveryContext| {
            let calls = calls.clone();
            async move {
                calls.record(n_of(&event), ctx.delivered, i);
                sleep(Duration::from_millis(2)).await;
                Ok::<_, HandlerError>(())
            }
        })
    };
    let cfg = SubscriberConfig {
        max_in_flight: 8,
        fetch_batch: 8,
        ..fast_config()
    };
    let a = start(
        &nats.jetstream().await,
        "billing",
        cfg.clone(),
        slow(calls.clone(), 0),
    )
    .await;
    let b = start(
        &nats.jetstream().await,
        "billing",
        cfg,
        slow(calls.clone(), 1),
    )
    .await;
    assert_eq!(a.durable, b.durable, "same group, same durable consumer");

    const N: usize = 1000;
    publish_range(&js, 0..N).await;
    wait_for("every event handled", BOUND, async || calls.total() >= N).await;
    let lag = events::subscriber::lag(&js, STREAM, &a.durable)
        .await
        .unwrap();
    let durable = a.durable.clone();
    let (ra, rb) = (a.stop().await, b.stop().await);
    assert_eq!(ra.abandoned + rb.abandoned, 0);

    // Exactly once each, never redelivered in a clean run.
    assert_eq!(calls.distinct(), N);
    assert_eq!(calls.total(), N, "some event was handled twice");
    let per_instance = calls
        .inner
        .lock()
        .unwrap()
        .values()
        .fold([0usize; 2], |mut acc, v| {
            assert_eq!(v[0].0, 1, "redelivered");
            acc[v[0].1] += 1;
            acc
        });
    // Fair share: both instances keep pull requests waiting on the server, which hands
    // messages to waiting requests in turn; each can hold at most 8 in flight and each
    // handler takes >= 2 ms, so neither can drain the stream alone while the other idles.
    // Half each is expected; 20 % leaves room for a loaded machine.
    for (i, got) in per_instance.iter().enumerate() {
        assert!(
            *got >= N / 5,
            "instance {i} handled only {got} of {N}: {per_instance:?}"
        );
    }
    let info = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .consumer_info(&durable)
        .await
        .unwrap();
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.ack_floor.stream_sequence, N as u64);
    assert_eq!(lag.pending, 0);
}

#[tokio::test]
async fn subscriber_two_groups_on_one_subject_each_receive_every_event() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let (c1, c2) = (Arc::new(Calls::default()), Arc::new(Calls::default()));
    let g1 = start(&js, "search", fast_config(), recording(c1.clone(), 0)).await;
    let g2 = start(&js, "mailer", fast_config(), recording(c2.clone(), 0)).await;
    assert_ne!(g1.durable, g2.durable);
    const N: usize = 300;
    publish_range(&js, 0..N).await;
    wait_for("both groups got everything", BOUND, async || {
        c1.distinct() == N && c2.distinct() == N
    })
    .await;
    g1.stop().await;
    g2.stop().await;
    assert_eq!(c1.total(), N);
    assert_eq!(c2.total(), N);
}

#[tokio::test]
async fn subscriber_one_group_may_subscribe_to_several_filters() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let users = Subscriber::builder(js.clone(), filter("auth.user.*"))
        .service("catalog-service")
        .config(fast_config())
        .build()
        .await
        .unwrap();
    let all = Subscriber::builder(js.clone(), filter("auth.>"))
        .service("catalog-service")
        .config(fast_config())
        .build()
        .await
        .unwrap();
    assert_eq!(users.durable_name(), "catalog-service__auth_user_any");
    assert_eq!(all.durable_name(), "catalog-service__auth_all");
    assert_eq!(users.stream_name(), STREAM, "found by subject");
    let names: HashSet<String> = {
        use futures::TryStreamExt;
        js.get_stream(STREAM)
            .await
            .unwrap()
            .consumer_names()
            .try_collect()
            .await
            .unwrap()
    };
    assert!(names.contains(users.durable_name()) && names.contains(all.durable_name()));
    // Lag per group sums its subscriptions.
    publish_range(&js, 0..3).await;
    wait_for(
        "3 events pending on each of the two filters",
        BOUND,
        async || {
            let lag = events::subscriber::group_lag(&js, STREAM, "catalog-service")
                .await
                .unwrap()
                .expect("the group has consumers");
            lag.pending == 6
        },
    )
    .await;
    assert!(
        events::subscriber::group_lag(&js, STREAM, "nobody")
            .await
            .unwrap()
            .is_none()
    );
    // Bad input gives a typed error naming the problem.
    let err = Subscriber::builder(js.clone(), filter("auth.>"))
        .group("bad group")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, events::subscriber::SubscribeError::Name(_)),
        "{err}"
    );
    let err = Subscriber::builder(js.clone(), filter("nowhere.>"))
        .group("g")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            events::subscriber::SubscribeError::StreamNotFound { .. }
        ),
        "{err}"
    );
    let err = Subscriber::builder(js.clone(), filter("auth.>"))
        .group("g")
        .max_in_flight(0)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("configuration"), "{err}");
}

#[tokio::test]
async fn subscriber_transient_failures_are_retried_with_growing_delays() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            if ctx.delivered < 3 {
                return Err(HandlerError::transient("database busy"));
            }
            Ok(())
        }
    });
    let retry = RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(400),
        max_backoff: Duration::from_secs(10),
        jitter: 0.2,
    };
    let cfg = SubscriberConfig {
        retry: retry.clone(),
        ..fast_config()
    };
    let sub = start(&js, "retrying", cfg, handler).await;
    publish_range(&js, 0..1).await;
    wait_for("third delivery", BOUND, async || calls.total() >= 3).await;
    // Settled: nothing pending or unacked (the ack of the third delivery was confirmed).
    wait_for("ack", BOUND, async || {
        let l = events::subscriber::lag(&js, STREAM, &sub.durable)
            .await
            .unwrap();
        l.pending == 0 && l.ack_pending == 0
    })
    .await;
    sleep(Duration::from_millis(500)).await; // would a 4th delivery come? (it must not)
    sub.stop().await;

    let deliveries = calls.of(0);
    let counts: Vec<u64> = deliveries.iter().map(|d| d.0).collect();
    assert_eq!(
        counts,
        [1, 2, 3],
        "handled once in the end after 3 deliveries"
    );
    // Gap k follows the backoff: initial × 2^(k-1), shortened by at most `jitter`, plus
    // the time to redeliver (tolerance for a loaded machine).
    let slack = Duration::from_millis(900);
    for k in 1..=2u64 {
        let gap = deliveries[k as usize].2 - deliveries[k as usize - 1].2;
        let base = events::subscriber::backoff(k, &retry);
        let min = base.mul_f64(1.0 - retry.jitter) - Duration::from_millis(20);
        assert!(
            gap >= min && gap <= base + slack,
            "gap {k} was {gap:?}, expected {min:?}..={:?}",
            base + slack
        );
    }
}

#[tokio::test]
async fn subscriber_always_failing_event_is_dead_lettered_after_max_attempts() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            Err::<(), _>(std::io::Error::other("downstream unavailable"))?;
            Ok(())
        }
    });
    let cfg = fast_config();
    let max = cfg.retry.max_attempts as usize;
    let ack_wait = cfg.ack_wait;
    let sub = start(&js, "failing", cfg, handler).await;
    let before = OffsetDateTime::now_utc();
    let ev = event(7);
    let enc = ev.encode();
    let (payload, ct) = (
        enc.payload.clone(),
        enc.headers.get("Content-Type").cloned(),
    );
    let seq = js
        .publish_with_headers(enc.subject, enc.headers, enc.payload)
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;

    wait_for("dead letter", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1
    })
    .await;
    // Not delivered again: wait past another ack wait.
    sleep(ack_wait + Duration::from_millis(500)).await;
    let lag = events::subscriber::lag(&js, STREAM, &sub.durable)
        .await
        .unwrap();
    let durable = sub.durable.clone();
    sub.stop().await;
    assert_eq!(
        calls.total(),
        max,
        "one call per allowed delivery, none after"
    );
    assert_eq!(
        calls.of(7).iter().map(|d| d.0).collect::<Vec<_>>(),
        (1..=max as u64).collect::<Vec<_>>()
    );
    assert_eq!((lag.pending, lag.ack_pending), (0, 0), "terminated");

    let dl = dead_letters(&js).await;
    assert_eq!(dl.len(), 1);
    let m = &dl[0];
    assert_eq!(m.subject.as_str(), format!("dlq.{SUBJECT}"));
    assert_eq!(m.payload, payload, "body byte-identical");
    assert_eq!(
        m.headers.get("Content-Type"),
        ct.as_ref(),
        "original headers kept"
    );
    assert_eq!(header(m, h::ORIGINAL_SUBJECT), SUBJECT);
    assert_eq!(header(m, h::ORIGINAL_STREAM), STREAM);
    assert_eq!(header(m, h::ORIGINAL_SEQUENCE), seq.to_string());
    assert_eq!(header(m, h::CONSUMER), durable);
    assert_eq!(header(m, h::DELIVERIES), max.to_string());
    assert_eq!(header(m, h::REASON), "max_deliveries");
    assert!(header(m, h::ERROR).contains("downstream unavailable"));
    let failed_at = OffsetDateTime::parse(header(m, h::FAILED_AT), &Rfc3339).unwrap();
    assert!(failed_at >= before - Duration::from_secs(1) && failed_at <= OffsetDateTime::now_utc());
    assert_eq!(
        header(m, "Nats-Msg-Id"),
        dlq::dead_letter_msg_id(STREAM, seq, &durable)
    );
}

#[tokio::test]
async fn subscriber_permanent_error_is_dead_lettered_at_once() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            #[derive(serde::Deserialize)]
            #[allow(dead_code)]
            struct Wrong {
                email: String,
            }
            let _: Wrong = event.data_as().permanent()?;
            Ok(())
        }
    });
    let sub = start(&js, "strict", fast_config(), handler).await;
    publish_range(&js, 0..1).await;
    wait_for("dead letter", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1
    })
    .await;
    sub.stop().await;
    assert_eq!(calls.total(), 1);
    let dl = dead_letters(&js).await;
    assert_eq!(header(&dl[0], h::REASON), "permanent");
    assert_eq!(header(&dl[0], h::DELIVERIES), "1");
    assert!(
        header(&dl[0], h::ERROR).contains("email"),
        "{:?}",
        dl[0].headers
    );
}

#[tokio::test]
async fn subscriber_poison_messages_are_dead_lettered_on_first_delivery() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let sub = start(&js, "poisoned", fast_config(), recording(calls.clone(), 0)).await;

    publish_range(&js, 0..500).await;
    let not_json = publish_raw(&js, None, b"{not json").await;
    let no_specversion = publish_raw(
        &js,
        None,
        br#"{"id":"p-2","source":"s","type":"auth.user.created","time":"2024-01-01T00:00:00Z","organizationid":"org-1","schemaversion":"1.0","datacontenttype":"application/json","data":{}}"#,
    )
    .await;
    let mut ct = HeaderMap::new();
    ct.insert("Content-Type", "application/cloudevents+json");
    let bad_org = publish_raw(
        &js,
        Some(ct),
        br#"{"specversion":"1.0","id":"p-3","source":"s","type":"auth.user.created","time":"2024-01-01T00:00:00Z","organizationid":"bad org!","schemaversion":"1.0","datacontenttype":"application/json","data":{}}"#,
    )
    .await;
    publish_range(&js, 500..1000).await;

    wait_for("all good ones and 3 dead letters", BOUND, async || {
        calls.distinct() == 1000 && stream_len(&js, DLQ_STREAM).await == 3
    })
    .await;
    sub.stop().await;
    assert_eq!(calls.total(), 1000);
    let by_seq: HashMap<u64, (String, String)> = dead_letters(&js)
        .await
        .iter()
        .map(|m| {
            assert_eq!(
                header(m, h::DELIVERIES),
                "1",
                "dead-lettered on first delivery"
            );
            (
                header(m, h::ORIGINAL_SEQUENCE).parse().unwrap(),
                (
                    header(m, h::REASON).to_owned(),
                    header(m, h::ERROR).to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(by_seq[&not_json].0, "undecodable");
    assert_eq!(by_seq[&no_specversion].0, "invalid");
    assert!(
        by_seq[&no_specversion].1.contains("specversion"),
        "{by_seq:?}"
    );
    assert_eq!(by_seq[&bad_org].0, "invalid");
    assert!(by_seq[&bad_org].1.contains("organizationid"), "{by_seq:?}");
}

#[tokio::test]
async fn subscriber_panicking_handler_does_not_stop_the_consumer() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            let n = n_of(&event);
            calls.record(n, ctx.delivered, 0);
            if n.is_multiple_of(97) {
                panic!("bug on event {n}");
            }
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            jitter: 0.2,
        },
        ..fast_config()
    };
    let sub = start(&js, "panicky", cfg, handler).await;
    const N: usize = 1000;
    publish_range(&js, 0..N).await;
    let panicking: Vec<usize> = (0..N).filter(|n| n.is_multiple_of(97)).collect();
    wait_for("all handled or dead-lettered", BOUND, async || {
        calls.distinct() == N && stream_len(&js, DLQ_STREAM).await == panicking.len() as u64
    })
    .await;
    let report = sub.stop().await;
    assert_eq!(report.abandoned, 0);
    for n in 0..N {
        let expected = if n.is_multiple_of(97) { 3 } else { 1 };
        assert_eq!(calls.of(n).len(), expected, "event {n}");
    }
    for m in dead_letters(&js).await {
        assert_eq!(header(&m, h::REASON), "max_deliveries");
        assert!(header(&m, h::ERROR).contains("panicked"), "{:?}", m.headers);
    }
}

#[tokio::test]
async fn subscriber_resumes_after_server_kill_and_idempotency_runs_effects_once() {
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    // Side effects happen in the inner handler; the wrapper skips ids already processed.
    let effects: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let deliveries = Arc::new(AtomicUsize::new(0));
    let (e, d) = (effects.clone(), deliveries.clone());
    let inner = handler_fn(move |event: Event, _ctx: DeliveryContext| {
        let effects = e.clone();
        async move {
            sleep(Duration::from_millis(5)).await;
            *effects
                .lock()
                .unwrap()
                .entry(event.id().to_owned())
                .or_default() += 1;
            Ok::<_, HandlerError>(())
        }
    });
    let store = KvIdempotencyStore::for_stream(&js, STREAM)
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    let handler = Counting {
        deliveries: d,
        inner: Idempotent::new(store, inner),
    };
    let cfg = SubscriberConfig {
        ack_wait: Duration::from_secs(3),
        max_in_flight: 4,
        fetch_batch: 4,
        ..fast_config()
    };
    let sub = start(&js, "resilient", cfg, handler).await;
    const N: usize = 400;
    let ids: Vec<String> = publish_range(&js, 0..N)
        .await
        .into_iter()
        .map(|x| x.0)
        .collect();
    wait_for("some handled", BOUND, async || {
        effects.lock().unwrap().len() >= 50
    })
    .await;

    nats.kill();
    sleep(Duration::from_millis(500)).await;
    nats.start_again().await;

    wait_for("every event handled after the restart", BOUND, async || {
        effects.lock().unwrap().len() == N
    })
    .await;
    let report = sub.stop().await;
    assert_eq!(report.abandoned, 0);
    let effects = effects.lock().unwrap();
    for id in &ids {
        assert_eq!(
            effects.get(id),
            Some(&1),
            "side effect of {id} not exactly once"
        );
    }
    assert!(deliveries.load(Ordering::SeqCst) >= N);
}

#[tokio::test]
async fn subscriber_idempotent_wrapper_skips_a_repeated_event_id() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let inner = handler_fn(move |_event: Event, _ctx: DeliveryContext| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    let store = KvIdempotencyStore::open(&js, "IDEM_TEST", Duration::from_secs(60))
        .await
        .unwrap();
    // One at a time: two copies handled concurrently are inside the documented
    // at-least-once window (both check before either marks).
    let cfg = SubscriberConfig {
        max_in_flight: 1,
        fetch_batch: 1,
        ..fast_config()
    };
    let sub = start(&js, "once", cfg, Idempotent::new(store, inner)).await;
    // The same event published three times under different message ids (e.g. a producer
    // that retried after the duplicate window): three deliveries, one effect.
    let ev = event(1);
    for i in 0..3 {
        let mut enc = ev.encode();
        enc.headers.insert("Nats-Msg-Id", format!("copy-{i}"));
        js.publish_with_headers(enc.subject, enc.headers, enc.payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    wait_for("all three settled", BOUND, async || {
        let l = events::subscriber::lag(&js, STREAM, &sub.durable)
            .await
            .unwrap();
        l.ack_floor_stream_sequence == 3
    })
    .await;
    sub.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn subscriber_shutdown_drains_fifty_in_flight_handlers() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let release = CancellationToken::new();
    let (s, f, rel) = (started.clone(), finished.clone(), release.clone());
    let handler = handler_fn(move |_event: Event, _ctx: DeliveryContext| {
        let (s, f, rel) = (s.clone(), f.clone(), rel.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            rel.cancelled().await;
            sleep(Duration::from_millis(100)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        max_in_flight: 50,
        fetch_batch: 50,
        drain_timeout: Duration::from_secs(10),
        ..fast_config()
    };
    let drain_timeout = cfg.drain_timeout;
    let sub = start(&js, "draining", cfg, handler).await;
    publish_range(&js, 0..80).await;
    wait_for("50 handlers in flight", BOUND, async || {
        started.load(Ordering::SeqCst) == 50
    })
    .await;

    let t0 = Instant::now();
    sub.token.cancel();
    sleep(Duration::from_millis(200)).await; // the loop has seen the cancellation
    release.cancel();
    let report = timeout(drain_timeout + Duration::from_secs(5), sub.handle)
        .await
        .expect("run() returned within its bound")
        .unwrap();
    assert!(t0.elapsed() < drain_timeout, "took {:?}", t0.elapsed());
    assert_eq!(report.in_flight, 50);
    assert_eq!(report.finished, 50);
    assert_eq!(report.abandoned, 0);
    assert_eq!(finished.load(Ordering::SeqCst), 50);
    assert_eq!(
        started.load(Ordering::SeqCst),
        50,
        "no new message was handled"
    );
    let info = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .consumer_info(&sub.durable)
        .await
        .unwrap();
    assert_eq!(info.num_ack_pending, 0, "all 50 acked");
    assert_eq!(info.ack_floor.stream_sequence, 50);
    assert_eq!(info.delivered.consumer_sequence, 50, "no new fetch started");
    assert_eq!(info.num_pending, 30);
}

#[tokio::test]
async fn subscriber_drain_timeout_leaves_unfinished_work_unacked() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let handler = handler_fn(move |_event: Event, _ctx: DeliveryContext| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        max_in_flight: 5,
        drain_timeout: Duration::from_millis(500),
        ..fast_config()
    };
    let sub = start(&js, "stuck", cfg, handler).await;
    publish_range(&js, 0..5).await;
    wait_for("5 stuck handlers", BOUND, async || {
        started.load(Ordering::SeqCst) == 5
    })
    .await;
    let t0 = Instant::now();
    let durable = sub.durable.clone();
    let report = sub.stop().await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        (report.in_flight, report.finished, report.abandoned),
        (5, 0, 5)
    );
    let lag = events::subscriber::lag(&js, STREAM, &durable)
        .await
        .unwrap();
    assert_eq!(lag.ack_pending, 5, "left for redelivery, never acked");
    assert_eq!(lag.ack_floor_stream_sequence, 0);
}

#[tokio::test]
async fn subscriber_kill_during_last_attempt_dead_letters_without_running_again() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let cfg = SubscriberConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            jitter: 0.0,
        },
        ack_wait: Duration::from_secs(1),
        ..fast_config()
    };
    let max = u64::from(cfg.retry.max_attempts);
    let in_last_attempt = CancellationToken::new();
    let flag = in_last_attempt.clone();
    let first_handler = handler_fn(move |_event: Event, ctx: DeliveryContext| {
        let flag = flag.clone();
        async move {
            if ctx.delivered < max {
                return Err(HandlerError::transient("flaky"));
            }
            flag.cancel();
            std::future::pending::<()>().await; // blocked in the last attempt
            Ok(())
        }
    });
    let first = start(&js, "mortal", cfg.clone(), first_handler).await;
    let seq = publish_range(&js, 0..1).await[0].1;
    timeout(BOUND, in_last_attempt.cancelled())
        .await
        .expect("last attempt reached");
    // The instance dies: its task (and every task it owns) is aborted, nothing settles.
    first.handle.abort();
    let _ = first.handle.await;

    let calls = Arc::new(Calls::default());
    let second = start(&js, "mortal", cfg, recording(calls.clone(), 1)).await;
    wait_for("dead letter", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1
    })
    .await;
    let lag = events::subscriber::lag(&js, STREAM, &second.durable)
        .await
        .unwrap();
    second.stop().await;
    assert_eq!(
        calls.total(),
        0,
        "the handler did not run on the extra delivery"
    );
    assert_eq!((lag.pending, lag.ack_pending), (0, 0));
    let dl = dead_letters(&js).await;
    assert_eq!(header(&dl[0], h::REASON), "max_deliveries");
    assert_eq!(header(&dl[0], h::DELIVERIES), (max + 1).to_string());
    assert_eq!(header(&dl[0], h::ORIGINAL_SEQUENCE), seq.to_string());
}

#[tokio::test]
async fn subscriber_failed_dead_letter_publish_naks_instead() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    // No DLQ stream yet: dead-letter publishes fail (no responders).
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["auth.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            Err::<(), _>(HandlerError::permanent("never works"))
        }
    });
    let sub = start(&js, "nodlq", fast_config(), handler).await;
    publish_range(&js, 0..1).await;
    wait_for("two deliveries", BOUND, async || calls.total() >= 2).await;
    // Still in the stream and not terminated: it keeps coming back.
    let lag = events::subscriber::lag(&js, STREAM, &sub.durable)
        .await
        .unwrap();
    assert_eq!(lag.ack_floor_stream_sequence, 0);
    create_dlq_stream(&js).await;
    wait_for("dead letter once the DLQ exists", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1
    })
    .await;
    wait_for("terminated", BOUND, async || {
        let l = events::subscriber::lag(&js, STREAM, &sub.durable)
            .await
            .unwrap();
        l.ack_pending == 0 && l.pending == 0
    })
    .await;
    sub.stop().await;
}

#[tokio::test]
async fn subscriber_long_handler_is_kept_alive_by_in_progress_acks() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let cfg = SubscriberConfig {
        ack_wait: Duration::from_secs(1),
        ..fast_config()
    };
    let work = cfg.ack_wait * 3;
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            sleep(work).await;
            Ok::<_, HandlerError>(())
        }
    });
    let sub = start(&js, "slowpoke", cfg, handler).await;
    publish_range(&js, 0..1).await;
    wait_for("acked", BOUND, async || {
        let l = events::subscriber::lag(&js, STREAM, &sub.durable)
            .await
            .unwrap();
        l.ack_floor_stream_sequence == 1
    })
    .await;
    sub.stop().await;
    assert_eq!(calls.total(), 1, "not redelivered while still working");
}

#[tokio::test]
async fn subscriber_ordered_per_subject_runs_one_at_a_time_in_order() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let order: Arc<Mutex<HashMap<String, Vec<usize>>>> = Arc::default();
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let overlap = Arc::new(AtomicBool::new(false));
    let (o, b, ov) = (order.clone(), busy.clone(), overlap.clone());
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let (o, b, ov) = (o.clone(), b.clone(), ov.clone());
        async move {
            if !b.lock().unwrap().insert(ctx.subject.clone()) {
                ov.store(true, Ordering::SeqCst);
            }
            sleep(Duration::from_millis(3)).await;
            o.lock()
                .unwrap()
                .entry(ctx.subject.clone())
                .or_default()
                .push(n_of(&event));
            b.lock().unwrap().remove(&ctx.subject);
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        ordered_per_subject: true,
        max_in_flight: 16,
        ..fast_config()
    };
    let sub = start(&js, "ordered", cfg, handler).await;
    // Interleave two subjects.
    let subjects = ["auth.user.created", "auth.user.deleted"];
    let mut acks = Vec::new();
    for n in 0..200usize {
        let ev = Event::builder(subjects[n % 2])
            .source("auth-service")
            .organization("org-1")
            .data(&serde_json::json!({ "n": n }))
            .build()
            .unwrap();
        let enc = ev.encode();
        acks.push(
            js.publish_with_headers(enc.subject, enc.headers, enc.payload)
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    wait_for("all handled", BOUND, async || {
        order.lock().unwrap().values().map(Vec::len).sum::<usize>() == 200
    })
    .await;
    sub.stop().await;
    assert!(
        !overlap.load(Ordering::SeqCst),
        "two handlers ran at once for one subject"
    );
    for (i, s) in subjects.iter().enumerate() {
        let got = order.lock().unwrap()[*s].clone();
        let want: Vec<usize> = (0..200).filter(|n| n % 2 == i).collect();
        assert_eq!(got, want, "order of {s}");
    }
}

#[tokio::test]
async fn subscriber_recreates_a_deleted_consumer() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let sub = start(&js, "phoenix", fast_config(), recording(calls.clone(), 0)).await;
    publish_range(&js, 0..10).await;
    wait_for("first batch", BOUND, async || calls.distinct() == 10).await;
    // What a server that lost its consumer state looks like to the subscriber.
    js.get_stream(STREAM)
        .await
        .unwrap()
        .delete_consumer(&sub.durable)
        .await
        .unwrap();
    sleep(Duration::from_millis(200)).await;
    publish_range(&js, 10..20).await;
    wait_for(
        "consumer recreated and new events handled",
        BOUND,
        async || (10..20).all(|n| !calls.of(n).is_empty()),
    )
    .await;
    sub.stop().await;
}

/// A recorder that keeps every metric by `name{label=value,...}` (labels sorted).
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<std::sync::atomic::AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<std::sync::atomic::AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn metric_key(key: &metrics::Key) -> String {
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
    fn counter(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }
    fn gauge(&self, key: &str) -> Option<f64> {
        self.gauges
            .lock()
            .unwrap()
            .get(key)
            .map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
    }
    fn samples(&self, key: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .unwrap()
            .get(key)
            .map(|h| h.0.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn subscriber_records_the_contract_metrics() {
    // nextest runs each test in its own process, so the global recorder is this test's;
    // under `cargo test` the labels below are unique to this test anyway.
    let recorder: &'static TestRecorder = Box::leak(Box::default());
    if metrics::set_global_recorder(recorder).is_err() {
        panic!("another test installed a global metrics recorder");
    }
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let handler = handler_fn(|event: Event, _ctx: DeliveryContext| async move {
        match n_of(&event) {
            0 => Err(HandlerError::permanent("rejected")),
            1 => Err(HandlerError::transient("try later")),
            _ => Ok(()),
        }
    });
    let cfg = SubscriberConfig {
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(20),
            jitter: 0.0,
        },
        lag_interval: Duration::from_millis(100),
        ..fast_config()
    };
    let sub = Subscriber::builder(js.clone(), filter("auth.metered.*"))
        .group("metered")
        .config(cfg)
        .build()
        .await
        .unwrap();
    let consumer = sub.durable_name().to_owned();
    let token = CancellationToken::new();
    let handle = tokio::spawn(sub.run(handler, token.clone()));
    let ty = "auth.metered.created";
    for n in 0..5usize {
        let ev = Event::builder(ty)
            .source("auth-service")
            .organization("org-1")
            .data(&serde_json::json!({ "n": n }))
            .build()
            .unwrap();
        let enc = ev.encode();
        js.publish_with_headers(enc.subject, enc.headers, enc.payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    js.publish("auth.metered.created", Bytes::from_static(b"garbage"))
        .await
        .unwrap()
        .await
        .unwrap();
    let lag_key = format!("subscription_lag{{consumer={consumer},stream={STREAM}}}");
    wait_for("all settled and the lag gauge at zero", BOUND, async || {
        recorder.counter(&format!(
            "events_dead_lettered_total{{consumer={consumer},reason=max_deliveries}}"
        )) == 1
            && recorder.counter(&format!(
                "events_consumed_total{{event_type={ty},status=ack}}"
            )) == 3
            && recorder.gauge(&lag_key) == Some(0.0)
    })
    .await;
    token.cancel();
    timeout(BOUND, handle).await.unwrap().unwrap();

    let c = |k: String| recorder.counter(&k);
    assert_eq!(
        c(format!(
            "events_consumed_total{{event_type={ty},status=dead_letter}}"
        )),
        2
    );
    assert_eq!(
        c(format!(
            "events_consumed_total{{event_type={ty},status=nak}}"
        )),
        1
    );
    assert_eq!(
        c("events_consumed_total{event_type=unknown,status=dead_letter}".into()),
        1
    );
    assert_eq!(
        c(format!(
            "events_dead_lettered_total{{consumer={consumer},reason=permanent}}"
        )),
        1
    );
    assert_eq!(
        c(format!(
            "events_dead_lettered_total{{consumer={consumer},reason=undecodable}}"
        )),
        1
    );
    assert_eq!(
        c(format!(
            "event_handler_errors_total{{consumer={consumer},kind=permanent}}"
        )),
        1
    );
    assert_eq!(
        c(format!(
            "event_handler_errors_total{{consumer={consumer},kind=transient}}"
        )),
        2
    );
    assert_eq!(
        c(format!(
            "event_handler_errors_total{{consumer={consumer},kind=undecodable}}"
        )),
        1
    );
    // The handler ran 3 (ok) + 1 (permanent) + 2 (transient twice) times.
    let durations = recorder.samples(&format!(
        "event_handler_duration_seconds{{consumer={consumer}}}"
    ));
    assert_eq!(durations.len(), 6);
    let e2e = recorder.samples(&format!("event_end_to_end_seconds{{consumer={consumer}}}"));
    assert_eq!(e2e.len(), 3);
    assert!(e2e.iter().all(|s| (0.0..60.0).contains(s)), "{e2e:?}");
}

#[tokio::test]
async fn subscriber_survives_the_consumer_leader_being_killed_in_a_cluster() {
    init_tracing();
    let mut cluster = events_testkit::NatsCluster::start(3).await;
    let js = cluster.jetstream().await;
    for (name, subjects, discard) in [
        (STREAM, "auth.>", stream::DiscardPolicy::Old),
        (DLQ_STREAM, "dlq.>", stream::DiscardPolicy::New),
    ] {
        timeout(
            BOUND,
            js.create_stream(stream::Config {
                name: name.into(),
                subjects: vec![subjects.into()],
                discard,
                num_replicas: 3,
                ..Default::default()
            }),
        )
        .await
        .unwrap()
        .unwrap();
    }
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            sleep(Duration::from_millis(10)).await;
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        max_in_flight: 2,
        fetch_batch: 2,
        ..fast_config()
    };
    let sub = start(&js, "elected", cfg, handler).await;
    const N: usize = 300;
    publish_range(&js, 0..N).await;
    wait_for("some handled", BOUND, async || calls.distinct() >= 50).await;

    // Kill the node that leads the consumer: a new leader is elected among the other two.
    let info = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .consumer_info(&sub.durable)
        .await
        .unwrap();
    let leader_name = info
        .cluster
        .and_then(|c| c.leader)
        .expect("consumer leader");
    let leader = (0..cluster.size())
        .find(|i| cluster.node(*i).name() == leader_name)
        .expect("leader is a node");
    cluster.kill(leader);
    let at_kill = calls.distinct();
    assert!(
        at_kill < N,
        "the kill came after the work was done; slow the handler down"
    );

    wait_for(
        "every event handled after the election",
        BOUND,
        async || calls.distinct() == N,
    )
    .await;
    sub.stop().await;
    cluster.restart(leader).await;
}

#[tokio::test]
async fn subscriber_stopped_while_idle_leaves_later_events_pending() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let cfg = SubscriberConfig {
        fetch_expires: Duration::from_secs(30), // an outstanding pull request at shutdown
        ..fast_config()
    };
    let sub = start(&js, "idle", cfg, recording(calls.clone(), 0)).await;
    publish_range(&js, 0..1).await;
    let durable = sub.durable.clone();
    wait_for("first event acked", BOUND, async || {
        let l = events::subscriber::lag(&js, STREAM, &durable)
            .await
            .unwrap();
        l.ack_floor_stream_sequence == 1
    })
    .await;
    let report = sub.stop().await;
    assert_eq!(report.in_flight, 0);
    // The stopped instance's pull request must not swallow events published afterwards
    // (they would sit unacked until ack_wait ran out).
    publish_range(&js, 1..6).await;
    sleep(Duration::from_millis(300)).await;
    let lag = events::subscriber::lag(&js, STREAM, &durable)
        .await
        .unwrap();
    assert_eq!((lag.pending, lag.ack_pending), (5, 0), "{lag:?}");
    assert_eq!(calls.total(), 1);
}

#[tokio::test]
async fn subscriber_accepts_binary_mode_cloudevents() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let seen: Arc<Mutex<Vec<(String, String, serde_json::Value)>>> = Arc::default();
    let s = seen.clone();
    let handler = handler_fn(move |event: Event, _ctx: DeliveryContext| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push((
                event.id().to_owned(),
                event.organization_id().as_str().to_owned(),
                serde_json::Value::Object(event.data().clone()),
            ));
            Ok::<_, HandlerError>(())
        }
    });
    let sub = start(&js, "binary", fast_config(), handler).await;
    // What the CloudEvents SDKs of other languages send: attributes in ce- headers.
    let mut hm = HeaderMap::new();
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "bin-1"),
        ("ce-source", "go-service"),
        ("ce-type", SUBJECT),
        ("ce-time", "2024-05-01T10:00:00Z"),
        ("ce-organizationid", "org-7"),
        ("ce-schemaversion", "1.0"),
        ("Content-Type", "application/json"),
    ] {
        hm.insert(k, v);
    }
    publish_raw(&js, Some(hm), br#"{"user_id":"u-1"}"#).await;
    wait_for("handled", BOUND, async || !seen.lock().unwrap().is_empty()).await;
    sub.stop().await;
    assert_eq!(stream_len(&js, DLQ_STREAM).await, 0);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "bin-1");
    assert_eq!(seen[0].1, "org-7");
    assert_eq!(seen[0].2, serde_json::json!({ "user_id": "u-1" }));
}
