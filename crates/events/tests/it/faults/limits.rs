//! Limits: DLQ_EVENTS full (`discard: new`), the duplicate window expiring between two
//! publishes of one id, JetStream out of storage, and the publisher's spool across an
//! outage and a process kill.

use std::time::Duration;

use async_nats::jetstream;
use events::idempotency::{Idempotent, KvIdempotencyStore};
use events::publisher::{PublishOutcome, Publisher, PublisherConfig, SpoolConfig};
use events_testkit::{Checker, NatsServer};
use tokio::time::sleep;

use super::support::*;
use crate::subscriber::support::TestRecorder;

async fn set_dlq_max_msgs(js: &jetstream::Context, max: i64) {
    let mut dlq = js.get_stream(DLQ).await.unwrap();
    let mut config = dlq.info().await.unwrap().config.clone();
    config.max_messages = max;
    js.update_stream(config).await.expect("update DLQ_EVENTS");
}

#[tokio::test]
async fn faults_limits_dlq_full_fails_loudly_and_evicts_nothing() {
    const EVENTS: usize = 10;
    const ROOM: usize = 3;
    // nextest runs each test in its own process: the global recorder is this test's.
    let recorder: &'static TestRecorder = Box::leak(Box::default());
    metrics::set_global_recorder(recorder).expect("no other recorder");
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_streams(&js, 1, |_| {}).await;
    set_dlq_max_msgs(&js, ROOM as i64).await;
    let checker = Checker::new("limits: DLQ_EVENTS full (discard new)");
    let publisher = publisher(&client).await;
    assert!(
        finish(publish_burst(&publisher, &checker, events(EVENTS)))
            .await
            .is_empty()
    );
    let handler = Recording {
        permanent: |_| true,
        ..Recording::new(&checker, Duration::ZERO)
    };
    let consumer =
        ConsumerProcess::start(vec![nats.url()], "faults", subscriber_config(), handler).await;

    // Every dead-letter publish past the room fails: counted, and the original is NAKed.
    let failed = format!("events_consumed_total{{event_type={SUBJECT},status=dead_letter_failed}}");
    let refused = (EVENTS - ROOM) as u64;
    wait_for("failed dead-letter publishes counted", BOUND, async || {
        recorder.counter(&failed) >= 2 * refused
    })
    .await;
    let first = dead_lettered_ids(&js).await;
    assert_eq!(first.len(), ROOM, "the full DLQ keeps what it had");
    let durable = durable();
    let lag = events::subscriber::lag(&js, STREAM, &durable)
        .await
        .unwrap();
    assert_eq!(
        lag.total(),
        refused,
        "the originals are not terminated: they show in lag"
    );

    // Room again: the same originals are dead-lettered, the first ones kept (not evicted).
    set_dlq_max_msgs(&js, -1).await;
    wait_for("every event dead-lettered", BOUND, async || {
        stored_count(&js, DLQ).await >= EVENTS as u64
    })
    .await;
    consumer.stop().await;
    let all = dead_lettered_ids(&js).await;
    assert_eq!(all[..ROOM], first[..], "nothing evicted");
    for id in &all {
        checker.dead_lettered(id);
    }
    publisher.close(Duration::from_secs(5)).await.unwrap();
    let report = checker.check(&read_back(&js, STREAM).await);
    assert_eq!(report.dead_letters, EVENTS as u64);
    assert_eq!(all.len(), EVENTS, "each dead-lettered once");
}

#[tokio::test]
async fn faults_limits_duplicate_window_expires_and_the_effect_runs_once() {
    let window = Duration::from_secs(2);
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_streams(&js, 1, |c| c.duplicate_window = window).await;
    let checker = Checker::new("limits: duplicate window expired between two publishes");
    let publisher = Publisher::new(
        client.clone(),
        PublisherConfig {
            ack_timeout: Duration::from_millis(500),
            deadline: Duration::from_millis(1_900),
            duplicate_window: window,
            ..publisher_config()
        },
    )
    .await
    .unwrap();
    let (again, once) = (event(0), event(1));
    let ack = |out: PublishOutcome| out.ack().cloned().expect("stored");
    for e in [&again, &once] {
        checker.attempted(e.id());
        let a = ack(publisher.publish(e).await.unwrap());
        checker.acked(e.id(), a.sequence);
    }
    assert!(
        ack(publisher.publish(&again).await.unwrap()).duplicate,
        "inside the window"
    );
    // Let the window pass (time itself is the condition here, nothing to poll).
    sleep(window + Duration::from_millis(500)).await;
    let second = ack(publisher.publish(&again).await.unwrap());
    assert!(
        !second.duplicate,
        "past the window the stream stores a second copy"
    );
    checker.acked(again.id(), second.sequence);
    checker.expect_copies(again.id(), 2);

    // The idempotency helper runs the effect once for both copies.
    let store = KvIdempotencyStore::open(&js, "FAULTS_IDEMPOTENCY", Duration::from_secs(60))
        .await
        .unwrap();
    let cfg = events::subscriber::SubscriberConfig {
        max_in_flight: 1,
        fetch_batch: 1,
        ..subscriber_config()
    };
    let handler = Idempotent::new(store, Recording::new(&checker, Duration::ZERO));
    let consumer = ConsumerProcess::start(vec![nats.url()], "faults", cfg, handler).await;
    let durable = durable();
    wait_for("all three copies settled", BOUND, async || {
        events::subscriber::lag(&js, STREAM, &durable)
            .await
            .is_ok_and(|l| l.ack_floor_stream_sequence == 3)
    })
    .await;
    consumer.stop().await;
    let report = checker.check(&read_back(&js, STREAM).await);
    assert_eq!(
        (report.stored, report.handled, report.duplicates),
        (3, 2, 0)
    );
    // The database inbox runs the effect once for both copies as well.
    #[cfg(feature = "outbox")]
    inbox_runs_each_effect_once(&nats, &js, &[again.id(), once.id()], report.stored).await;
}

/// A second group reads the `stored` copies of the events `ids` through a database inbox
/// (SQLite) whose effect is a row per event: one row each, however many copies.
#[cfg(feature = "outbox")]
async fn inbox_runs_each_effect_once(
    nats: &NatsServer,
    js: &jetstream::Context,
    ids: &[&str],
    stored: u64,
) {
    use events::db::Database;
    use events::inbox::Inbox;
    use events::{Event, HandlerError, handler_fn};

    const GROUP: &str = "faults-inbox";
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    sqlx::query("CREATE TABLE effects (event_id TEXT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    let (inbox, hdb) = (Inbox::new(GROUP), db.clone());
    let handler = handler_fn(move |event: Event, _ctx| {
        let (inbox, db) = (inbox.clone(), hdb.clone());
        async move {
            let mut tx = db.begin().await.map_err(HandlerError::transient)?;
            if inbox
                .record(&mut tx, &event)
                .await
                .map_err(HandlerError::transient)?
            {
                sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                    .bind(event.id())
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::transient)?;
            }
            tx.commit().await.map_err(HandlerError::transient)
        }
    });
    let cfg = events::subscriber::SubscriberConfig {
        max_in_flight: 1,
        fetch_batch: 1,
        ..subscriber_config()
    };
    let consumer = ConsumerProcess::start(vec![nats.url()], GROUP, cfg, handler).await;
    let durable = events::subscriber::durable_name(
        GROUP,
        &events::SubjectFilter::new("auth.user.*").unwrap(),
    )
    .unwrap()
    .into_string();
    wait_for("every copy settled through the inbox", BOUND, async || {
        events::subscriber::lag(js, STREAM, &durable)
            .await
            .is_ok_and(|l| l.ack_floor_stream_sequence == stored)
    })
    .await;
    consumer.stop().await;
    let mut effects: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_id, COUNT(*) FROM effects GROUP BY event_id")
            .fetch_all(db.pool())
            .await
            .unwrap();
    effects.sort();
    let mut want: Vec<(String, i64)> = ids.iter().map(|id| (id.to_string(), 1)).collect();
    want.sort();
    assert_eq!(
        effects, want,
        "one effect per event id over {stored} copies"
    );
}

#[tokio::test]
async fn faults_limits_out_of_storage_then_purge() {
    const EVENTS: usize = 1_000;
    let nats = NatsServer::builder()
        .max_file_store(128 * 1024)
        .start()
        .await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_streams(&js, 1, |_| {}).await;
    let checker = Checker::new("limits: JetStream out of storage (128 KiB)");
    let publisher = Publisher::new(
        client.clone(),
        PublisherConfig {
            deadline: Duration::from_secs(3),
            ..publisher_config()
        },
    )
    .await
    .unwrap();
    let errors = finish(publish_burst(&publisher, &checker, events(EVENTS))).await;
    assert!(
        !errors.is_empty(),
        "a 128 KiB store cannot take {EVENTS} events"
    );
    let kinds: std::collections::BTreeSet<&str> = errors.iter().map(|e| e.kind()).collect();
    eprintln!(
        "out of storage: error kinds {kinds:?}, first: {:?}",
        errors[0]
    );
    let report = checker.check(&read_back(&js, STREAM).await);
    assert!(report.acked > 0 && report.acked < EVENTS as u64);

    // Recovery: after a purge the same publisher stores again.
    js.get_stream(STREAM)
        .await
        .unwrap()
        .purge()
        .await
        .expect("purge");
    let after = Checker::new("limits: out of storage, after the purge");
    let more: Vec<_> = (EVENTS..EVENTS + 100).map(event).collect();
    let errors = finish(publish_burst(&publisher, &after, more)).await;
    assert!(
        errors.is_empty(),
        "stores again after the purge: {:?}",
        errors.first()
    );
    publisher.close(Duration::from_secs(5)).await.unwrap();
    after.check(&read_back(&js, STREAM).await);
}

#[tokio::test]
async fn faults_limits_spool_outage_kill_restart_while_down() {
    const EVENTS: usize = 300;
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js, 1, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = PublisherConfig {
        spool: Some(SpoolConfig {
            dir: dir.path().to_path_buf(),
            // Room for part of the events (about 400 bytes each): the rest meet a full spool.
            max_bytes: 64 * 1024,
            poll_interval: Duration::from_millis(100),
            ..SpoolConfig::default()
        }),
        deadline: Duration::from_secs(3),
        ..publisher_config()
    };
    let checker = Checker::new("limits: spool across outage, kill, restart while down");
    let cfg_deadline = cfg.deadline;
    nats.kill();
    let down_since = tokio::time::Instant::now();

    // The first process: NATS is down for longer than the deadline; the spool fills up;
    // then the process dies without closing anything.
    let process = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (url, c, config) = (nats.url(), checker.clone(), cfg.clone());
    let spooled = process
        .spawn(async move {
            let client = connect(vec![url]).await;
            let publisher = Publisher::new(client, config).await.unwrap();
            let mut spooled = Vec::new();
            for e in events(EVENTS) {
                c.attempted(e.id());
                let out = publisher.publish(&e).await;
                record(&c, e.id(), &out);
                match out {
                    Ok(o) if o.is_spooled() => spooled.push(e.id().to_owned()),
                    Err(events::publisher::PublishError::SpoolFull { .. }) => {}
                    other => panic!("NATS is down: spooled or spool full, got {other:?}"),
                }
            }
            spooled
        })
        .await
        .unwrap();
    process.shutdown_background();
    assert!(
        !spooled.is_empty() && spooled.len() < EVENTS,
        "the spool filled up: {} of {EVENTS} spooled",
        spooled.len()
    );

    // The second process starts while NATS is still down, then NATS comes back.
    let client = connect(vec![nats.url()]).await;
    let publisher = Publisher::new(client, cfg).await.unwrap();
    assert_eq!(publisher.spooled(), spooled.len() as u64);
    // The outage outlasts the publish deadline (time itself is the condition).
    tokio::time::sleep_until(down_since + cfg_deadline).await;
    nats.start_again().await;
    let js = nats.jetstream().await;
    wait_for("the spool forwarded", BOUND, async || {
        publisher.spooled() == 0
    })
    .await;
    wait_stored(&js, STREAM, spooled.len() as u64).await;
    publisher.close(Duration::from_secs(5)).await.unwrap();
    let stored = read_back(&js, STREAM).await;
    let ids: Vec<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, spooled, "every spooled event once, in order");
    checker.check(&stored);
}
