//! Integration tests: publisher, against real nats-server processes (`sync_interval:
//! always`, from `events-testkit`). Streams are created with raw async-nats (duplicate
//! window 2 minutes).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use events::Event;
use events::publisher::{
    BatchConfig, PublishError, PublishOutcome, Publisher, PublisherConfig, RetryPolicy,
    SpoolConfig, TraceContextHook,
};
use events_testkit::{NatsCluster, NatsServer, TcpProxy, wait_for_stream_messages};

mod batch;
mod metrics;
mod reconnect;

const BOUND: Duration = Duration::from_secs(60);

fn ev(n: usize) -> Event {
    Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-1")
        .data(&serde_json::json!({ "n": n, "user": format!("user-{n}") }))
        .build()
        .unwrap()
}

/// Short waits so the tests stay fast; the deadline stays below the duplicate window.
fn config() -> PublisherConfig {
    PublisherConfig {
        ack_timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(20),
        retry: RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        },
        window: 256,
        ..PublisherConfig::new("auth-service")
    }
}

async fn create_stream(js: &jetstream::Context, name: &str, subject: &str, replicas: usize) {
    let config = stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        num_replicas: replicas,
        ..Default::default()
    };
    events_testkit::create_stream_when_ready(js, config, BOUND).await;
}

/// Every message of the stream in sequence order: (Nats-Msg-Id, body).
async fn stored(js: &jetstream::Context, name: &str) -> Vec<(String, Bytes)> {
    let mut s = tokio::time::timeout(BOUND, js.get_stream(name))
        .await
        .unwrap()
        .unwrap();
    let info = tokio::time::timeout(BOUND, s.info())
        .await
        .unwrap()
        .unwrap();
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in first..=last {
        let m = tokio::time::timeout(BOUND, s.get_raw_message(seq))
            .await
            .unwrap()
            .unwrap();
        let id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push((id, m.payload));
    }
    out
}

/// A client for a server that is down right now: retries its first connect, reconnects.
async fn connect_while_down(url: &str) -> async_nats::Client {
    tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(1000)))
            .connect(url),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

fn count_ids(stored: &[(String, Bytes)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (id, _) in stored {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn publisher_stores_1000_events_once_with_identical_bodies() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_stream(&js, "AUTH_EVENTS", "auth.>", 1).await;
    let publisher = Publisher::new(client, config()).await.unwrap();

    let events: Vec<Event> = (0..1000).map(ev).collect();
    let results = tokio::time::timeout(BOUND, publisher.publish_all(&events))
        .await
        .unwrap();
    let mut seqs = Vec::new();
    for r in &results {
        match r {
            Ok(PublishOutcome::Stored(ack)) => {
                assert_eq!(ack.stream, "AUTH_EVENTS");
                assert!(!ack.duplicate);
                seqs.push(ack.sequence);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), events.len(), "each event got its own sequence");

    let stored = stored(&js, "AUTH_EVENTS").await;
    assert_eq!(stored.len(), events.len());
    let by_id: HashMap<&str, &Bytes> = stored.iter().map(|(id, b)| (id.as_str(), b)).collect();
    assert_eq!(by_id.len(), events.len(), "no id stored twice");
    for e in &events {
        let body = by_id.get(e.id()).expect("event stored");
        assert_eq!(
            **body,
            e.encode().payload,
            "body byte-identical to the encoding"
        );
    }
    publisher.close(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn publisher_same_event_twice_is_stored_once_and_reported_duplicate() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_stream(&js, "AUTH_EVENTS", "auth.>", 1).await;
    let publisher = Publisher::new(client, config()).await.unwrap();

    let e = ev(1);
    let first = publisher.publish(&e).await.unwrap();
    let second = publisher.publish(&e).await.unwrap();
    let (a, b) = (first.ack().unwrap(), second.ack().unwrap());
    assert!(!a.duplicate);
    assert!(b.duplicate, "second publish reports a duplicate");
    assert_eq!(a.sequence, b.sequence);
    assert_eq!(stored(&js, "AUTH_EVENTS").await.len(), 1);
}

#[tokio::test]
async fn publisher_bad_input_gets_typed_errors_and_keeps_working() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_stream(&js, "AUTH_EVENTS", "auth.>", 1).await;
    let publisher = Publisher::new(client.clone(), config()).await.unwrap();

    // Invalid attributes never become an Event: the builder names the attribute.
    let bad = Event::builder("auth.User.created")
        .source("auth-service")
        .organization("org-1")
        .data(&serde_json::json!({}))
        .build()
        .unwrap_err();
    assert_eq!(bad.attribute, "type");
    let bad = Event::builder("auth.user.created")
        .source("auth-service")
        .data(&serde_json::json!({}))
        .build()
        .unwrap_err();
    assert_eq!(bad.attribute, "organizationid");

    // A 2 MiB payload: refused before sending, with size and limit.
    let limit = client.server_info().max_payload;
    let big = Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-1")
        .data(&serde_json::json!({ "blob": "x".repeat(2 * 1024 * 1024) }))
        .build()
        .unwrap();
    match publisher.publish(&big).await {
        Err(PublishError::PayloadTooLarge {
            size,
            limit: l,
            event_id,
        }) => {
            assert_eq!(l, limit);
            assert!(size > 2 * 1024 * 1024);
            assert_eq!(event_id, big.id());
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }

    // A subject outside every stream.
    let stray = Event::builder("billing.invoice.paid")
        .source("auth-service")
        .organization("org-1")
        .data(&serde_json::json!({}))
        .build()
        .unwrap();
    let t = Instant::now();
    match publisher.publish(&stray).await {
        Err(PublishError::NoStream { subject }) => assert_eq!(subject, "billing.invoice.paid"),
        other => panic!("expected NoStream, got {other:?}"),
    }
    assert!(
        t.elapsed() < publisher.config().deadline,
        "no-stream fails before the deadline"
    );
    // Also when there is no retry left to make the second check.
    let no_retry = Publisher::new(
        client.clone(),
        PublisherConfig {
            retry: RetryPolicy {
                max_retries: 0,
                ..config().retry
            },
            ..config()
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        no_retry.publish(&stray).await,
        Err(PublishError::NoStream { .. })
    ));

    // A stream-level refusal comes back with its err_code.
    js.create_stream(stream::Config {
        name: "TINY_EVENTS".into(),
        subjects: vec!["tiny.>".into()],
        max_message_size: 64,
        ..Default::default()
    })
    .await
    .unwrap();
    let tiny = Event::builder("tiny.thing.happened")
        .source("auth-service")
        .organization("org-1")
        .data(&serde_json::json!({ "x": 1 }))
        .build()
        .unwrap();
    match publisher.publish(&tiny).await {
        Err(e @ PublishError::Rejected { .. }) => assert!(!e.is_transient()),
        other => panic!("expected Rejected, got {other:?}"),
    }

    // And the next valid event publishes.
    let ok = publisher.publish(&ev(7)).await.unwrap();
    assert_eq!(ok.ack().unwrap().sequence, 1);
}

/// Item 11 of issue #10: with the connection broken while the publish is in flight, the
/// message waits in the client's write buffer and is stored when NATS returns, after
/// `publish` gave up. The error must say "outcome unknown", not "unavailable", and
/// publishing the same event again settles it with one stored copy.
#[tokio::test]
async fn publisher_gives_up_with_unconfirmed_and_a_republish_stores_once() {
    let mut nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_stream(&js, "AUTH_EVENTS", "auth.>", 1).await;
    let cfg = PublisherConfig {
        ack_timeout: Duration::from_millis(500),
        deadline: Duration::from_secs(3),
        ..config()
    };
    let deadline = cfg.deadline;
    let publisher = Publisher::new(client, cfg).await.unwrap();
    let event = ev(1);
    nats.kill();
    let t = Instant::now();
    let res = tokio::time::timeout(deadline * 3, publisher.publish(&event))
        .await
        .expect("publish never hangs");
    let err = res.expect_err("no ack while the server is down");
    assert!(
        matches!(err, PublishError::Unconfirmed { .. }),
        "got {err:?}"
    );
    assert!(err.is_transient() && err.may_be_stored());
    assert_eq!(err.kind(), "unconfirmed");
    assert!(
        t.elapsed() < deadline + Duration::from_secs(1),
        "within the deadline: {:?}",
        t.elapsed()
    );

    // The buffered try reaches the server once it is back: "unknown" was the truth.
    nats.start_again().await;
    let js = nats.jetstream().await;
    wait_for_stream_messages(&js, "AUTH_EVENTS", 1, BOUND).await;
    // Settling: the same event again is acknowledged as the copy already stored.
    let again = tokio::time::timeout(BOUND, publisher.publish(&event))
        .await
        .expect("republish in time")
        .expect("republish stored");
    assert!(again.ack().is_some_and(|a| a.duplicate), "got {again:?}");
    let stored = stored(&js, "AUTH_EVENTS").await;
    assert_eq!(count_ids(&stored).get(event.id()), Some(&1));
    assert_eq!(stored.len(), 1, "stored once: {stored:?}");
}

#[tokio::test]
async fn publisher_windowed_flush_close_and_trace_context() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_stream(&js, "AUTH_EVENTS", "auth.>", 1).await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let cfg = PublisherConfig {
        window: 8,
        trace_context: Some(TraceContextHook::new(move || {
            Some((tp.to_owned(), Some("k=v".to_owned())))
        })),
        ..config()
    };
    let publisher = Publisher::new(client, cfg).await.unwrap();
    let events: Vec<Event> = (0..100).map(ev).collect();
    let mut handles = Vec::new();
    for e in &events {
        handles.push(publisher.publish_async(e).await.unwrap());
        assert!(
            publisher.in_flight() <= 8,
            "window bounds what is in flight"
        );
    }
    publisher.flush(Duration::from_secs(30)).await.unwrap();
    assert_eq!(publisher.in_flight(), 0);
    for h in handles {
        assert!(h.await.unwrap().ack().is_some());
    }
    let stored = stored(&js, "AUTH_EVENTS").await;
    assert_eq!(stored.len(), 100);
    let first = Event::decode(None, &stored[0].1).unwrap();
    assert_eq!(first.traceparent(), Some(tp));
    assert_eq!(first.tracestate(), Some("k=v"));

    publisher.close(Duration::from_secs(5)).await.unwrap();
    assert!(matches!(
        publisher.publish(&ev(1000)).await,
        Err(PublishError::Closed)
    ));
}

#[tokio::test]
async fn publisher_sigkill_during_windowed_burst_loses_nothing_acked() {
    sigkill_scenario(false).await;
}

/// The same with atomic batching: batches in flight when the server dies either were
/// stored whole (their per-message fallback then reports duplicates) or not at all.
#[tokio::test]
async fn publisher_sigkill_during_batched_burst_loses_nothing_acked() {
    sigkill_scenario(true).await;
}

async fn sigkill_scenario(batched: bool) {
    // Batches store ~10x faster: a longer burst so the kill lands in its middle.
    let n: usize = if batched { 20_000 } else { 5_000 };
    let mut nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    let cfg = if batched {
        create_atomic_stream(&js, "AUTH_EVENTS", "auth.>").await;
        PublisherConfig {
            window: 2048,
            ..batch_config()
        }
    } else {
        create_stream(&js, "AUTH_EVENTS", "auth.>", 1).await;
        PublisherConfig {
            window: 512,
            ..config()
        }
    };
    let publisher = Publisher::new(client.clone(), cfg).await.unwrap();
    let events: Vec<Event> = (0..n).map(ev).collect();

    let submitter = {
        let publisher = publisher.clone();
        let events = events.clone();
        tokio::spawn(async move {
            let mut handles = Vec::new();
            for e in &events {
                handles.push(publisher.publish_async(e).await);
            }
            let mut out = Vec::new();
            for h in handles {
                out.push(match h {
                    Ok(h) => h.await,
                    Err(e) => Err(e),
                });
            }
            out
        })
    };
    // Kill once the burst is under way, restart after about a second.
    let start = Instant::now();
    let mut at_kill = 0;
    while at_kill < n as u64 / 10 {
        assert!(start.elapsed() < BOUND, "burst did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
        at_kill = stored_count(&js).await;
    }
    nats.kill();
    assert!(
        at_kill < n as u64,
        "killed mid-burst ({at_kill} of {n} stored)"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.start_again().await;

    let results = tokio::time::timeout(Duration::from_secs(120), submitter)
        .await
        .expect("burst finished in time")
        .unwrap();
    assert_eq!(results.len(), n);
    let mut ok_ids = Vec::new();
    let mut failed = 0;
    for (e, r) in events.iter().zip(&results) {
        match r {
            Ok(PublishOutcome::Stored(_)) => ok_ids.push(e.id().to_owned()),
            Err(PublishError::Unavailable { .. } | PublishError::Unconfirmed { .. }) => failed += 1,
            other => panic!("untyped or unexpected outcome {other:?}"),
        }
    }
    eprintln!(
        "sigkill burst (batched: {batched}): {} acked, {failed} failed with Unavailable",
        ok_ids.len()
    );
    assert_eq!(ok_ids.len() + failed, n, "every publish has an outcome");

    let js = jetstream::new(client);
    let stored = stored(&js, "AUTH_EVENTS").await;
    let counts = count_ids(&stored);
    assert!(counts.values().all(|c| *c == 1), "no event stored twice");
    for id in &ok_ids {
        assert_eq!(counts.get(id), Some(&1), "acked event {id} is stored once");
    }
    assert!(stored.len() >= ok_ids.len());
}

async fn stored_count(js: &jetstream::Context) -> u64 {
    match tokio::time::timeout(Duration::from_secs(2), js.get_stream("AUTH_EVENTS")).await {
        Ok(Ok(mut s)) => match tokio::time::timeout(Duration::from_secs(2), s.info()).await {
            Ok(Ok(i)) => i.state.messages,
            _ => 0,
        },
        _ => 0,
    }
}

#[tokio::test]
async fn publisher_cluster_rides_out_stream_leader_kill() {
    const N: usize = 2_000;
    let mut cluster = NatsCluster::start(3).await;
    let client = cluster.client().await;
    let js = jetstream::new(client.clone());
    create_stream(&js, "AUTH_EVENTS", "auth.>", 3).await;
    let leader = cluster.stream_leader("AUTH_EVENTS").await;
    // A stream leader election after a SIGKILL takes 4-9 s here (Raft election timeout):
    // retry until the 20 s deadline rather than until a count of capped 1 s waits runs out.
    let cfg = PublisherConfig {
        retry: RetryPolicy {
            max_retries: 100,
            ..config().retry
        },
        ..config()
    };
    let publisher = Publisher::new(client.clone(), cfg).await.unwrap();
    let events: Vec<Event> = (0..N).map(ev).collect();

    let submitter = {
        let publisher = publisher.clone();
        let events = events.clone();
        tokio::spawn(async move { publisher.publish_all(&events).await })
    };
    let start = Instant::now();
    while stored_count(&js).await < 300 {
        assert!(start.elapsed() < BOUND, "burst did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.kill(leader);
    let results = tokio::time::timeout(Duration::from_secs(120), submitter)
        .await
        .expect("burst finished in time")
        .unwrap();
    let mut acked = Vec::new();
    for (e, r) in events.iter().zip(&results) {
        match r {
            Ok(PublishOutcome::Stored(_)) => acked.push(e.id().to_owned()),
            other => panic!("publish did not ride out the election: {other:?}"),
        }
    }
    assert_eq!(acked.len(), N);
    let new_leader = cluster.stream_leader("AUTH_EVENTS").await;
    assert_ne!(new_leader, leader);
    let stored = stored(&js, "AUTH_EVENTS").await;
    let counts = count_ids(&stored);
    assert_eq!(stored.len(), N, "nothing lost, nothing duplicated");
    for id in &acked {
        assert_eq!(counts.get(id), Some(&1));
    }
}

#[tokio::test]
async fn publisher_spool_survives_outage_and_restart_in_order() {
    spool_scenario(false).await;
}

/// The same, into a stream that takes atomic batches: the forwarder sends the spool in
/// batches (stored whole or not at all, so the order still holds).
#[tokio::test]
async fn publisher_spool_forwards_in_atomic_batches_in_order() {
    spool_scenario(true).await;
}

async fn spool_scenario(atomic: bool) {
    const N: usize = 500;
    let mut nats = NatsServer::start().await;
    let js = jetstream::new(nats.client().await);
    if atomic {
        create_atomic_stream(&js, "AUTH_EVENTS", "auth.>").await;
    } else {
        create_stream(&js, "AUTH_EVENTS", "auth.>", 1).await;
    }
    let spool_dir = tempfile::tempdir().unwrap();
    let cfg = PublisherConfig {
        spool: Some(SpoolConfig {
            dir: spool_dir.path().to_path_buf(),
            poll_interval: Duration::from_millis(100),
            ..SpoolConfig::default()
        }),
        ..config()
    };
    let client = nats.client().await;
    let publisher = Publisher::new(client.clone(), cfg.clone()).await.unwrap();
    nats.kill();
    let start = Instant::now();
    while client.connection_state() == async_nats::connection::State::Connected {
        assert!(start.elapsed() < BOUND, "client did not notice the outage");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let events: Vec<Event> = (0..N).map(ev).collect();
    let mut slowest = Duration::ZERO;
    for e in &events {
        let t = Instant::now();
        let out = publisher.publish(e).await.unwrap();
        slowest = slowest.max(t.elapsed());
        assert!(out.is_spooled(), "got {out:?}");
    }
    assert!(
        slowest < Duration::from_secs(1),
        "each publish returns promptly: {slowest:?}"
    );
    assert_eq!(publisher.spooled(), N as u64);
    publisher.close(Duration::from_secs(5)).await.unwrap();
    drop(publisher);
    drop(client);

    // A new publisher (as after a process restart) on the same spool, then NATS comes back.
    let client = connect_while_down(&nats.url()).await;
    let publisher = Publisher::new(client.clone(), cfg).await.unwrap();
    assert_eq!(publisher.spooled(), N as u64);
    nats.start_again().await;
    let js = jetstream::new(client);
    wait_for_stream_messages(&js, "AUTH_EVENTS", N as u64, BOUND).await;
    let start = Instant::now();
    while publisher.spooled() > 0 {
        assert!(start.elapsed() < BOUND, "spool not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = stored(&js, "AUTH_EVENTS").await;
    let ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    let expected: Vec<&str> = events.iter().map(|e| e.id()).collect();
    assert_eq!(ids, expected, "all arrive once, in order");
    let bodies: BTreeMap<&str, &Bytes> = stored.iter().map(|(i, b)| (i.as_str(), b)).collect();
    for e in &events {
        assert_eq!(*bodies[e.id()], e.encode().payload);
    }
    let first = js
        .get_stream("AUTH_EVENTS")
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .unwrap();
    assert_eq!(
        first.headers.get("Nats-Batch-Id").is_some(),
        atomic,
        "forwarded in atomic batches exactly when the stream allows them"
    );
    // Live publishing resumes once the spool is empty.
    let out = publisher.publish(&ev(N)).await.unwrap();
    assert_eq!(out.ack().unwrap().sequence, N as u64 + 1);
    publisher.close(Duration::from_secs(5)).await.unwrap();
}

async fn create_atomic_stream(js: &jetstream::Context, name: &str, subject: &str) {
    tokio::time::timeout(
        BOUND,
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            duplicate_window: Duration::from_secs(120),
            allow_atomic_publish: true,
            ..Default::default()
        }),
    )
    .await
    .expect("create stream in time")
    .expect("create stream");
}

fn batch_config() -> PublisherConfig {
    PublisherConfig {
        window: 4096,
        batch: BatchConfig {
            enabled: true,
            ..BatchConfig::default()
        },
        ..config()
    }
}

#[tokio::test]
async fn publisher_close_is_bounded_and_cancels_what_is_left() {
    let mut nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_stream(&js, "AUTH_EVENTS", "auth.>", 1).await;
    let publisher = Publisher::new(client, config()).await.unwrap();
    nats.kill();
    let events: Vec<Event> = (0..20).map(ev).collect();
    let mut handles = Vec::new();
    for e in &events {
        handles.push(publisher.publish_async(e).await.unwrap());
    }
    let t = Instant::now();
    let err = publisher
        .close(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.pending, events.len());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "close is bounded: {:?}",
        t.elapsed()
    );
    for h in handles {
        let res = tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .expect("every handle resolves after close");
        assert!(matches!(res, Err(PublishError::Cancelled)), "got {res:?}");
    }
    assert!(matches!(
        publisher.publish(&ev(99)).await,
        Err(PublishError::Closed)
    ));
}

/// Dropping the last clone without `close` cancels what is in flight: every handle still
/// resolves (the acks wait on one shared background task, which must end too).
#[tokio::test]
async fn publisher_dropped_without_close_cancels_in_flight() {
    let mut nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_stream(&js, "AUTH_EVENTS", "auth.>", 1).await;
    let publisher = Publisher::new(client, config()).await.unwrap();
    let stored = publisher.publish_async(&ev(0)).await.unwrap();
    assert!(stored.await.unwrap().ack().is_some());
    nats.kill();
    let events: Vec<Event> = (1..11).map(ev).collect();
    let mut handles = Vec::new();
    for e in &events {
        handles.push(publisher.publish_async(e).await.unwrap());
    }
    let clone = publisher.clone();
    drop(publisher);
    assert_eq!(clone.in_flight(), events.len(), "a clone keeps them going");
    drop(clone);
    for h in handles {
        let res = tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("every handle resolves once the last clone is gone");
        assert!(matches!(res, Err(PublishError::Cancelled)), "got {res:?}");
    }
}
