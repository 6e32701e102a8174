//! A consumer group for the console and Prometheus tests: the two streams, group `catalog`
//! on `auth.user.*` (fast retries, lag gauge every 200 ms) whose handler refuses, as a
//! permanent failure, the events `refuse` picks; and publishing one `auth.user.created`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use events::subscriber::{
    DrainReport, HandlerError, RetryPolicy, Subscriber, SubscriberConfig, handler_fn,
};
use events::{Event, SubjectFilter};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running group.
pub(crate) struct Group {
    /// Its durable consumer's name.
    pub(crate) durable: String,
    /// Events handled successfully so far.
    pub(crate) handled: Arc<AtomicUsize>,
    /// The subscriber, until the stop token is cancelled.
    pub(crate) task: JoinHandle<DrainReport>,
}

/// Creates `AUTH_EVENTS` (`auth.>`) and `DLQ_EVENTS` (`dlq.>`).
pub(crate) async fn streams(js: &jetstream::Context) {
    for (name, subject) in [
        ("AUTH_EVENTS", "auth.>"),
        (events::dlq::DLQ_STREAM, "dlq.>"),
    ] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
    }
}

/// Starts group `catalog`; it runs until `stop` is cancelled.
pub(crate) async fn start(
    js: &jetstream::Context,
    refuse: impl Fn(&Event) -> bool + Send + Sync + 'static,
    stop: &CancellationToken,
) -> Group {
    let cfg = SubscriberConfig {
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(20),
            jitter: 0.0,
        },
        ack_wait: Duration::from_secs(2),
        fetch_expires: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        lag_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let sub = Subscriber::builder(js.clone(), SubjectFilter::new("auth.user.*").unwrap())
        .group("catalog")
        .config(cfg)
        .build()
        .await
        .expect("subscriber");
    let durable = sub.durable_name().to_owned();
    let handled = Arc::new(AtomicUsize::new(0));
    let (refuse, count) = (Arc::new(refuse), handled.clone());
    let handler = handler_fn(move |ev: Event, _ctx| {
        let (refuse, count) = (refuse.clone(), count.clone());
        async move {
            if refuse(&ev) {
                return Err(HandlerError::permanent(format!(
                    "catalog for org {:?} not found",
                    ev.organization_id().as_str()
                )));
            }
            count.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let task = tokio::spawn(sub.run(handler, stop.child_token()));
    Group {
        durable,
        handled,
        task,
    }
}

/// Stores one `auth.user.created` of `org` (data `{"org": org}`), ack awaited.
pub(crate) async fn publish_created(js: &jetstream::Context, org: &str) {
    let ev = Event::builder("auth.user.created")
        .source("auth-service")
        .organization(org)
        .data(&serde_json::json!({ "org": org }))
        .build()
        .unwrap();
    let enc = ev.encode();
    js.publish_with_headers(enc.subject, enc.headers, enc.payload)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Cancels `stop`, then awaits (bounded) the admin server and the group's drain.
pub(crate) async fn shut_down(
    stop: &CancellationToken,
    server: JoinHandle<Result<(), events_admin::ServeError>>,
    group: Group,
) {
    let bound = Duration::from_secs(60);
    stop.cancel();
    tokio::time::timeout(bound, server)
        .await
        .expect("server stops")
        .unwrap()
        .expect("clean stop");
    tokio::time::timeout(bound, group.task)
        .await
        .expect("consumer drains")
        .unwrap();
}
