//! Consumer faults: the consumer process killed mid-batch (another instance takes over),
//! handlers that panic, handlers slower than `ack_wait` with in-progress acks and without
//! them (a handler that blocks its thread starves the in-progress ticker).

use std::time::Duration;

use events::subscriber::SubscriberConfig;
use events_testkit::{Checker, NatsServer};

use super::support::*;

/// Publishes `n` events (all acked) and returns the server, a JetStream context, a checker.
async fn published(name: &str, n: usize) -> (NatsServer, async_nats::jetstream::Context, Checker) {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    create_streams(&js, 1, |_| {}).await;
    let checker = Checker::new(name);
    let publisher = publisher(&client).await;
    let errors = finish(publish_burst(&publisher, &checker, events(n))).await;
    assert!(errors.is_empty(), "{errors:?}");
    publisher.close(Duration::from_secs(5)).await.unwrap();
    (nats, js, checker)
}

async fn consume_all(
    nats: &NatsServer,
    js: &async_nats::jetstream::Context,
    checker: &Checker,
    cfg: SubscriberConfig,
    handler: Recording,
    dead: usize,
) {
    let consumer = ConsumerProcess::start(vec![nats.url()], "faults", cfg, handler).await;
    let stored = read_back(js, STREAM).await;
    let want = (stored.len() - dead) as u64;
    wait_for("every event handled", BOUND, async || {
        checker.handled_count() >= want
    })
    .await;
    wait_for("the dead letters stored", BOUND, async || {
        stored_count(js, DLQ).await >= dead as u64
    })
    .await;
    consumer.stop().await;
    for id in dead_lettered_ids(js).await {
        checker.dead_lettered(&id);
    }
    checker.check(&stored);
}

#[tokio::test]
async fn faults_consumer_process_killed_mid_batch() {
    const EVENTS: usize = 1_000;
    let (nats, js, checker) = published("consumer: process SIGKILL mid-batch", EVENTS).await;
    let cfg = SubscriberConfig {
        ack_wait: Duration::from_secs(1),
        ..subscriber_config()
    };
    checker.allow_duplicates(u64::from(cfg.max_ack_pending));
    let handler = Recording::new(&checker, Duration::from_millis(10));
    let first =
        ConsumerProcess::start(vec![nats.url()], "faults", cfg.clone(), handler.clone()).await;
    wait_for("some handled", BOUND, async || {
        checker.handled_count() >= 100
    })
    .await;
    first.kill();
    assert!(checker.handled_count() < EVENTS as u64, "killed mid-batch");
    // Another instance of the group picks up, including what the dead one held.
    consume_all(&nats, &js, &checker, cfg, handler, 0).await;
}

#[tokio::test]
async fn faults_consumer_handlers_that_panic() {
    const EVENTS: usize = 500;
    const ALWAYS: usize = 50; // every 50th event panics on every delivery
    let (nats, js, checker) = published("consumer: panicking handlers", EVENTS).await;
    // The panics are the scenario: keep their messages and backtraces out of the output.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("handler panics on event") {
            report(info);
        }
    }));
    let handler = Recording {
        panics: |n, delivered| n % ALWAYS == 0 || (n % 7 == 0 && delivered <= 2),
        ..Recording::new(&checker, Duration::ZERO)
    };
    let dead = EVENTS.div_ceil(ALWAYS);
    consume_all(&nats, &js, &checker, subscriber_config(), handler, dead).await;
}

#[tokio::test]
async fn faults_consumer_slow_handlers_with_in_progress_acks() {
    const EVENTS: usize = 8;
    let (nats, js, checker) = published("consumer: slow handlers, in-progress acks", EVENTS).await;
    let cfg = SubscriberConfig {
        ack_wait: Duration::from_secs(2),
        in_progress_interval: Some(Duration::from_millis(400)),
        ..subscriber_config()
    };
    // 2.5 × ack_wait per event, all in flight at once: only the in-progress acks keep the
    // server from redelivering, so no duplicate is allowed.
    let handler = Recording::new(&checker, Duration::from_secs(5));
    consume_all(&nats, &js, &checker, cfg, handler, 0).await;
}

#[tokio::test]
async fn faults_consumer_slow_blocking_handlers_without_in_progress_acks() {
    const EVENTS: usize = 4;
    let (nats, js, checker) = published(
        "consumer: slow blocking handlers, no in-progress acks",
        EVENTS,
    )
    .await;
    let cfg = SubscriberConfig {
        ack_wait: Duration::from_secs(1),
        max_in_flight: 2,
        max_ack_pending: 4,
        fetch_batch: 2,
        retry: events::subscriber::RetryPolicy {
            max_attempts: 20,
            ..subscriber_config().retry
        },
        ..subscriber_config()
    };
    // A blocked thread sends no in-progress ack: the server redelivers after ack_wait and
    // the effect may run again (at most once per ack_wait of each run); at-least-once holds.
    checker.allow_duplicates(EVENTS as u64 * 2);
    let handler = Recording {
        blocking: true,
        ..Recording::new(&checker, Duration::from_millis(1_500))
    };
    consume_all(&nats, &js, &checker, cfg, handler, 0).await;
}
