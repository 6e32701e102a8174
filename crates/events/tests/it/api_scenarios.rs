//! The universal pub/sub scenarios as a service or a test writes them with the public API
//! (one connection for both sides, the running-subscriber handle, handler state, the raw
//! message, outcomes as a stream), each against its own nats-server.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use events::publisher::{PublishOutcome, Publisher, PublisherConfig};
use events::subscriber::{
    DeliveryContext, DeliveryRetryPolicy, HandlerError, StopError, Subscriber, SubscriberConfig,
    handler_fn_with,
};
use events::{ConnectConfig, Connection, Event, SubjectFilter, connect};
use events_testkit::{NatsServer, read_stream};
use futures::StreamExt;

const STREAM: &str = "AUTH_EVENTS";
/// Upper bound of every wait (the machine is shared and loaded).
const BOUND: Duration = Duration::from_secs(60);

/// Ids of the events a handler saw, in the order it saw them.
type Seen = Arc<Mutex<Vec<String>>>;

async fn setup() -> (NatsServer, Connection) {
    let nats = NatsServer::start().await;
    let conn = connect(&ConnectConfig::for_url(nats.url()))
        .await
        .expect("connect");
    conn.jetstream()
        .create_stream(stream::Config {
            name: STREAM.into(),
            subjects: vec!["auth.>".into()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .expect("create AUTH_EVENTS");
    (nats, conn)
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::builder("auth.user.created")
                .source("auth-service")
                .organization("org-1")
                .data(&serde_json::json!({ "n": i }))
                .build()
                .unwrap()
        })
        .collect()
}

/// Short timings: a stop drains in well under a second.
fn fast() -> SubscriberConfig {
    SubscriberConfig {
        retry: DeliveryRetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            ..Default::default()
        },
        ack_wait: Duration::from_secs(2),
        fetch_expires: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

async fn subscriber(conn: &Connection, group: &str) -> Subscriber {
    Subscriber::builder(conn, SubjectFilter::new("auth.user.*").unwrap())
        .group(group)
        .config(fast())
        .build()
        .await
        .expect("build subscriber")
}

/// Records each event's id (state given once, no clone in the closure).
fn recorder(seen: Seen) -> impl events::Handler {
    handler_fn_with(seen, |seen: Seen, event: Event, _ctx| async move {
        seen.lock().unwrap().push(event.id().to_owned());
        Ok::<_, HandlerError>(())
    })
}

fn ids(events: &[Event]) -> BTreeSet<String> {
    events.iter().map(|e| e.id().to_owned()).collect()
}

#[tokio::test]
async fn publish_n_consume_n_stop_and_the_stream_holds_each_once() {
    let (_nats, conn) = setup().await;
    let n = 50;
    let batch = events(n);
    let publisher = Publisher::new(&conn, PublisherConfig::new("auth-service"))
        .await
        .unwrap();
    for outcome in publisher.publish_all(&batch).await {
        assert!(matches!(outcome.unwrap(), PublishOutcome::Stored(_)));
    }

    let seen = Seen::default();
    let running = subscriber(&conn, "catalog")
        .await
        .start(recorder(seen.clone()));
    assert_eq!(running.durable_name(), "catalog__auth_user_any");
    let report = running.stop_after(n as u64, BOUND).await.expect("stopped");
    assert_eq!(report.abandoned, 0);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), n, "each event handled once: {seen:?}");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), ids(&batch));
    let stored = read_stream(conn.jetstream(), STREAM).await;
    let stored_ids: HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(stored.len(), n, "stored once each");
    assert_eq!(stored_ids.len(), n, "no duplicate ids in the stream");
    let lag = events::subscriber::lag(conn.jetstream(), STREAM, "catalog__auth_user_any")
        .await
        .unwrap();
    assert_eq!(lag.total(), 0, "everything acked: {lag:?}");
    publisher.close(BOUND).await.unwrap();
}

#[tokio::test]
async fn stop_after_n_then_a_new_instance_resumes_where_it_stopped() {
    let (_nats, conn) = setup().await;
    let (first, total) = (20_u64, 60_usize);
    let batch = events(total);
    let publisher = Publisher::new(&conn, PublisherConfig::new("auth-service"))
        .await
        .unwrap();
    for outcome in publisher.publish_all(&batch).await {
        outcome.unwrap();
    }

    let seen = Seen::default();
    let running = subscriber(&conn, "resume")
        .await
        .start(recorder(seen.clone()));
    running.stop_after(first, BOUND).await.expect("first stop");
    let handled_first = seen.lock().unwrap().len();
    assert!(handled_first >= first as usize, "{handled_first} < {first}");

    // What the first instance handled is acked; the rest waits for the group.
    let rest = (total - handled_first) as u64;
    let lag = events::subscriber::lag(conn.jetstream(), STREAM, "resume__auth_user_any")
        .await
        .unwrap();
    assert_eq!(lag.total(), rest, "{lag:?}");
    // A new instance of the group gets only what the first one did not finish.
    let running = subscriber(&conn, "resume")
        .await
        .start(recorder(seen.clone()));
    running.stop_after(rest, BOUND).await.expect("second stop");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), total, "each event handled once overall");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), ids(&batch));
}

#[tokio::test]
async fn the_handler_sees_the_raw_message_as_stored() {
    let (_nats, conn) = setup().await;
    let batch = events(5);
    let publisher = Publisher::new(&conn, PublisherConfig::new("auth-service"))
        .await
        .unwrap();
    publisher.publish_all(&batch).await;

    // (event id, Nats-Msg-Id header, id in the raw JSON body) per delivery.
    type Raw = Arc<Mutex<Vec<(String, String, String)>>>;
    let raw = Raw::default();
    let handler = handler_fn_with(
        raw.clone(),
        |raw: Raw, event: Event, ctx: DeliveryContext| async move {
            let msg_id = ctx.header("Nats-Msg-Id").unwrap_or_default().to_owned();
            let body: serde_json::Value = serde_json::from_slice(ctx.payload())?;
            let body_id = body["id"].as_str().unwrap_or_default().to_owned();
            raw.lock()
                .unwrap()
                .push((event.id().to_owned(), msg_id, body_id));
            Ok::<_, HandlerError>(())
        },
    );
    let running = subscriber(&conn, "raw").await.start(handler);
    running.stop_after(batch.len() as u64, BOUND).await.unwrap();

    let raw = raw.lock().unwrap().clone();
    assert_eq!(raw.len(), batch.len());
    for (id, msg_id, body_id) in &raw {
        assert_eq!(msg_id, id, "Nats-Msg-Id is the event id");
        assert_eq!(
            body_id, id,
            "the structured body is the event, byte for byte"
        );
    }
}

#[tokio::test]
async fn outcomes_stream_in_as_they_settle() {
    let (_nats, conn) = setup().await;
    let n = 200;
    let batch = events(n);
    let config = PublisherConfig {
        window: 16, // fewer than the events: submitting waits for outcomes to settle
        ..PublisherConfig::new("auth-service")
    };
    let publisher = Publisher::new(&conn, config).await.unwrap();
    let settled: Vec<_> = tokio::time::timeout(BOUND, publisher.publish_stream(&batch).collect())
        .await
        .expect("every outcome within the bound");

    let indices: BTreeSet<usize> = settled.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, (0..n).collect(), "one outcome per event");
    let mut sequences = BTreeSet::new();
    for (i, outcome) in settled {
        let outcome = outcome.unwrap_or_else(|e| panic!("event {i}: {e}"));
        let ack = outcome.ack().expect("stored").clone();
        assert!(!ack.duplicate);
        sequences.insert(ack.sequence);
    }
    assert_eq!(sequences, (1..=n as u64).collect(), "each stored once");
    publisher.close(BOUND).await.unwrap();
}

#[tokio::test]
async fn stop_on_a_condition_the_handler_signals() {
    let (_nats, conn) = setup().await;
    let batch = events(10);
    let wanted = batch[6].id().to_owned();
    let publisher = Publisher::new(&conn, PublisherConfig::new("auth-service"))
        .await
        .unwrap();
    publisher.publish_all(&batch).await;

    // Stop once a given event was handled: the handler tells the test through a channel.
    let (found, mut found_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let state = (wanted, found);
    let handler = handler_fn_with(state, |(wanted, found), event: Event, _ctx| async move {
        if event.id() == wanted {
            let _ = found.send(());
        }
        Ok::<_, HandlerError>(())
    });
    let running = subscriber(&conn, "until").await.start(handler);
    let report = running
        .stop_on(found_rx.recv(), BOUND)
        .await
        .expect("the condition held");
    assert!(!report.denied);
    let js: &jetstream::Context = conn.jetstream();
    let lag = events::subscriber::lag(js, STREAM, "until__auth_user_any")
        .await
        .unwrap();
    assert!(
        lag.ack_floor_stream_sequence >= 7,
        "the 7th event was acked: {lag:?}"
    );
}

#[tokio::test]
async fn a_count_never_reached_stops_anyway_and_says_how_many_were_handled() {
    let (_nats, conn) = setup().await;
    let batch = events(3);
    let n = batch.len();
    let publisher = Publisher::new(&conn, PublisherConfig::new("auth-service"))
        .await
        .unwrap();
    publisher.publish_all(&batch).await;

    let seen = Seen::default();
    let running = subscriber(&conn, "short")
        .await
        .start(recorder(seen.clone()));
    let wait_seen = seen.clone();
    let all_handled = async move {
        while wait_seen.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(BOUND, all_handled)
        .await
        .expect("all handled");
    let wanted = n as u64 + 1; // one more than was published
    match running.stop_after(wanted, Duration::from_millis(500)).await {
        Err(StopError::NotReached {
            handled, report, ..
        }) => {
            assert_eq!(handled, n as u64);
            assert!(report.is_some(), "stopped anyway, with a drain report");
        }
        other => panic!("expected NotReached, got {other:?}"),
    }
}
