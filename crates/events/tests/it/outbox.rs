//! Integration tests: transactional outbox and inbox, on SQLite and on a real PostgreSQL
//! server from the test kit, relaying to a real nats-server.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use events::Event;
use events::db::Database;
use events::inbox::Inbox;
use events::outbox::{Outbox, Relay, RelayConfig};
use events::publisher::{Publisher, PublisherConfig, RetryPolicy};
use events_testkit::{NatsServer, PgServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const BOUND: Duration = Duration::from_secs(60);

/// A database of either kind, kept alive (dropped at the end of the test).
enum TestDb {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] PgServer),
}

impl TestDb {
    async fn start(pg: bool) -> (TestDb, Database) {
        let (keep, url) = if pg {
            let server = PgServer::start().await;
            let url = server.url();
            (TestDb::Postgres(server), url)
        } else {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("t.db").display());
            (TestDb::Sqlite(dir), url)
        };
        let db = Database::connect(&url).await.expect("connect");
        db.migrate().await.expect("migrate");
        sqlx::query("CREATE TABLE users (id TEXT PRIMARY KEY)")
            .execute(db.pool())
            .await
            .unwrap();
        (keep, db)
    }
}

fn ev(n: usize) -> Event {
    Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-1")
        .subject(format!("user-{n}"))
        .data(&serde_json::json!({ "n": n }))
        .build()
        .unwrap()
}

async fn auth_stream(nats: &NatsServer) -> jetstream::Context {
    let js = nats.jetstream().await;
    tokio::time::timeout(
        BOUND,
        js.create_stream(stream::Config {
            name: "AUTH_EVENTS".into(),
            subjects: vec!["auth.>".into()],
            duplicate_window: Duration::from_secs(120),
            allow_atomic_publish: true,
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .unwrap();
    js
}

async fn publisher(nats: &NatsServer) -> Publisher {
    let client = nats.client().await;
    let config = PublisherConfig {
        ack_timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(10),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            ..RetryPolicy::default()
        },
        ..PublisherConfig::new("auth-service")
    };
    Publisher::new(client, config).await.unwrap()
}

fn relay_config() -> RelayConfig {
    let mut c = RelayConfig::new("test");
    c.batch_size = 50;
    c.poll_interval = Duration::from_millis(100);
    c
}

fn spawn_relay(
    db: &Database,
    outbox: &Outbox,
    p: Publisher,
) -> (CancellationToken, JoinHandle<()>) {
    let stop = CancellationToken::new();
    let relay = Relay::new(db.clone(), outbox.clone(), p, relay_config());
    (stop.clone(), tokio::spawn(relay.run(stop)))
}

async fn stop_relay((stop, task): (CancellationToken, JoinHandle<()>)) {
    stop.cancel();
    tokio::time::timeout(BOUND, task)
        .await
        .expect("relay stops in time")
        .unwrap();
}

/// Enqueues events `range` with a business row each, one transaction per event.
async fn enqueue(db: &Database, outbox: &Outbox, range: std::ops::Range<usize>) -> Vec<String> {
    let mut ids = Vec::new();
    for n in range {
        let e = ev(n);
        let mut tx = db.begin().await.unwrap();
        sqlx::query("INSERT INTO users (id) VALUES ($1)")
            .bind(format!("user-{n}"))
            .execute(&mut *tx)
            .await
            .unwrap();
        assert!(outbox.enqueue(&mut tx, &e).await.unwrap());
        outbox.commit(tx).await.unwrap();
        ids.push(e.id().to_owned());
    }
    ids
}

/// The Nats-Msg-Ids of AUTH_EVENTS in stream order.
async fn stored_ids(js: &jetstream::Context) -> Vec<String> {
    let mut s = js.get_stream("AUTH_EVENTS").await.unwrap();
    let info = s.info().await.unwrap().clone();
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let m = s.get_raw_message(seq).await.unwrap();
        let id = m.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned();
        let event = Event::decode(Some(&m.headers), &m.payload).unwrap();
        assert_eq!(event.id(), id, "Nats-Msg-Id is the event id");
        out.push(id);
    }
    out
}

async fn wait_stored(js: &jetstream::Context, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let ids = stored_ids(js).await;
        if ids.len() >= n {
            return ids;
        }
        assert!(start.elapsed() < BOUND, "{} of {n} stored", ids.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_outbox_empty(db: &Database) {
    let start = Instant::now();
    while pending(db).await > 0 {
        assert!(start.elapsed() < BOUND, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pending(db: &Database) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events_outbox")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn count_users(db: &Database) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn atomic_commit_and_rollback(pg: bool) {
    let (_keep, db) = TestDb::start(pg).await;
    let outbox = Outbox::new();
    // Rolled back: neither the row nor the event.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("INSERT INTO users (id) VALUES ('u-rolled-back')")
        .execute(&mut *tx)
        .await
        .unwrap();
    outbox.enqueue(&mut tx, &ev(0)).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!((count_users(&db).await, pending(&db).await), (0, 0));
    // Committed: both.
    enqueue(&db, &outbox, 1..4).await;
    assert_eq!((count_users(&db).await, pending(&db).await), (3, 3));
    // An event the publisher would refuse is refused here, naming it; nothing written.
    let big = Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-1")
        .data(&serde_json::json!({ "blob": "x".repeat(2 * 1024 * 1024) }))
        .build()
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    let err = outbox.enqueue(&mut tx, &big).await.unwrap_err();
    assert!(err.to_string().contains(big.id()), "{err}");
    tx.rollback().await.unwrap();
    assert_eq!(pending(&db).await, 3);
}

#[tokio::test]
async fn outbox_sqlite_commits_with_the_business_row_or_not_at_all() {
    atomic_commit_and_rollback(false).await;
}

#[tokio::test]
async fn outbox_postgres_commits_with_the_business_row_or_not_at_all() {
    atomic_commit_and_rollback(true).await;
}

/// Rows enqueued before any relay runs, a relay stopped half-way, a second one resumes:
/// every event stored once, in enqueue order, and the outbox empty.
async fn relay_order_and_resume(pg: bool) {
    let nats = NatsServer::start().await;
    let js = auth_stream(&nats).await;
    let (_keep, db) = TestDb::start(pg).await;
    let outbox = Outbox::new();
    let total = 240;
    let mut ids = enqueue(&db, &outbox, 0..total / 2).await;
    let relay = spawn_relay(&db, &outbox, publisher(&nats).await);
    wait_stored(&js, 1).await;
    stop_relay(relay).await;
    ids.extend(enqueue(&db, &outbox, total / 2..total).await);
    // A new relay (a restarted process) picks up where the first stopped.
    let relay = spawn_relay(&db, &outbox, publisher(&nats).await);
    let stored = wait_stored(&js, total).await;
    wait_outbox_empty(&db).await;
    stop_relay(relay).await;
    assert_eq!(stored, ids, "each event once, in commit order");
}

#[tokio::test]
async fn outbox_sqlite_relay_keeps_order_and_resumes_after_restart() {
    relay_order_and_resume(false).await;
}

#[tokio::test]
async fn outbox_postgres_relay_keeps_order_and_resumes_after_restart() {
    relay_order_and_resume(true).await;
}

/// An event stored by an earlier try whose ack never came is still in the outbox: the
/// relay sends it again with the same id and the stream keeps one copy.
async fn unknown_outcome_is_resent_once(pg: bool) {
    let nats = NatsServer::start().await;
    let js = auth_stream(&nats).await;
    let (_keep, db) = TestDb::start(pg).await;
    let outbox = Outbox::new();
    let ids = enqueue(&db, &outbox, 0..5).await;
    // The "lost ack" try of event 2, stored directly under its id.
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT event_id, body FROM events_outbox ORDER BY seq")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", rows[2].0.as_str());
    headers.insert("Content-Type", "application/cloudevents+json");
    js.publish_with_headers("auth.user.created", headers, rows[2].1.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let relay = spawn_relay(&db, &outbox, publisher(&nats).await);
    wait_outbox_empty(&db).await;
    stop_relay(relay).await;
    let mut stored = stored_ids(&js).await;
    assert_eq!(stored.len(), ids.len(), "stored once each: {stored:?}");
    stored.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(stored, want);
}

#[tokio::test]
async fn outbox_sqlite_unknown_outcome_is_resent_with_the_same_id() {
    unknown_outcome_is_resent_once(false).await;
}

#[tokio::test]
async fn outbox_postgres_unknown_outcome_is_resent_with_the_same_id() {
    unknown_outcome_is_resent_once(true).await;
}

/// NATS down while events are committed: enqueue never waits on it, and the relay drains
/// the backlog once it is back.
#[tokio::test]
async fn outbox_sqlite_relay_waits_for_nats_and_catches_up() {
    let mut nats = NatsServer::start().await;
    let js = auth_stream(&nats).await;
    let (_keep, db) = TestDb::start(false).await;
    let outbox = Outbox::new();
    let relay = spawn_relay(&db, &outbox, publisher(&nats).await);
    nats.kill();
    let ids = enqueue(&db, &outbox, 0..50).await;
    assert_eq!(pending(&db).await, 50);
    nats.start_again().await;
    wait_outbox_empty(&db).await;
    stop_relay(relay).await;
    assert_eq!(stored_ids(&js).await, ids);
    let _ = js;
}

/// Two relays on one PostgreSQL outbox: one forwards at a time (order holds), and the
/// other takes over when the first stops.
#[tokio::test]
async fn outbox_postgres_two_relays_forward_in_order_and_take_over() {
    let nats = NatsServer::start().await;
    let js = auth_stream(&nats).await;
    let (_keep, db) = TestDb::start(true).await;
    let outbox_a = Outbox::new();
    let outbox_b = Outbox::new();
    let a = spawn_relay(&db, &outbox_a, publisher(&nats).await);
    let b = spawn_relay(&db, &outbox_b, publisher(&nats).await);
    let mut ids = Vec::new();
    for chunk in 0..6 {
        let outbox = if chunk % 2 == 0 { &outbox_a } else { &outbox_b };
        ids.extend(enqueue(&db, outbox, chunk * 40..(chunk + 1) * 40).await);
    }
    let stored = wait_stored(&js, ids.len()).await;
    wait_outbox_empty(&db).await;
    assert_eq!(stored, ids, "each event once, in commit order");
    // Whichever led, stop A: B forwards what comes next.
    stop_relay(a).await;
    ids.extend(enqueue(&db, &outbox_b, 240..260).await);
    let stored = wait_stored(&js, ids.len()).await;
    assert_eq!(stored, ids);
    stop_relay(b).await;
}

/// On PostgreSQL a commit in another process wakes the relay (NOTIFY), long before its poll.
#[tokio::test]
async fn outbox_postgres_a_commit_elsewhere_wakes_the_relay() {
    let nats = NatsServer::start().await;
    let js = auth_stream(&nats).await;
    let (_keep, db) = TestDb::start(true).await;
    let (here, elsewhere) = (Outbox::new(), Outbox::new());
    let mut config = relay_config();
    // Longer than every wait below: an event stored in time was not fetched by the poll.
    config.poll_interval = BOUND * 2;
    let stop = CancellationToken::new();
    let relay = Relay::new(db.clone(), here.clone(), publisher(&nats).await, config);
    let task = tokio::spawn(relay.run(stop.clone()));
    // Woken in-process: the relay is up, leading and listening afterwards.
    let mut ids = enqueue(&db, &here, 0..1).await;
    wait_stored(&js, 1).await;
    // `elsewhere` is another process's handle: its in-process wake-up reaches no relay here.
    ids.extend(enqueue(&db, &elsewhere, 1..2).await);
    assert_eq!(wait_stored(&js, 2).await, ids, "woken by NOTIFY");
    stop_relay((stop, task)).await;
}

async fn inbox_skips_and_sweeps(pg: bool) {
    let (_keep, db) = TestDb::start(pg).await;
    let inbox = Inbox::new("catalog-service");
    let other = Inbox::new("other-consumer");
    let event = ev(1);
    let apply = |inbox: Inbox, event: Event, who: &'static str| {
        let db = db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let first = inbox.record(&mut tx, &event).await.unwrap();
            if first {
                sqlx::query("INSERT INTO users (id) VALUES ($1)")
                    .bind(format!("{who}-{}", event.id()))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            first
        }
    };
    assert!(
        apply(inbox.clone(), event.clone(), "c").await,
        "first delivery applies"
    );
    assert!(
        !apply(inbox.clone(), event.clone(), "c").await,
        "redelivery is skipped"
    );
    assert_eq!(count_users(&db).await, 1, "the effect happened once");
    // A rolled-back handler leaves no record: the next delivery applies.
    let second = ev(2);
    let mut tx = db.begin().await.unwrap();
    assert!(inbox.record(&mut tx, &second).await.unwrap());
    tx.rollback().await.unwrap();
    assert!(apply(inbox.clone(), second, "c").await);
    // Another consumer has its own inbox.
    assert!(apply(other.clone(), event.clone(), "o").await);
    // Sweep: nothing is older than an hour; everything is at least zero old.
    assert_eq!(
        inbox.sweep(&db, Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(inbox.sweep(&db, Duration::ZERO).await.unwrap(), 2);
    assert_eq!(other.sweep(&db, Duration::ZERO).await.unwrap(), 1);
}

#[tokio::test]
async fn inbox_sqlite_skips_a_recorded_event_and_sweeps_by_age() {
    inbox_skips_and_sweeps(false).await;
}

#[tokio::test]
async fn inbox_postgres_skips_a_recorded_event_and_sweeps_by_age() {
    inbox_skips_and_sweeps(true).await;
}

/// With the publisher's schema set, `enqueue` refuses an event whose `data` breaks its
/// schema (typed, naming the pointer and rule; nothing written), and stores a valid one
/// with its `dataschema`, which the relay then publishes.
#[cfg(feature = "schema")]
#[tokio::test]
async fn outbox_with_schemas_refuses_invalid_data_at_enqueue() {
    use events::outbox::OutboxError;
    use events::publisher::PublishError;
    use events::schema::SchemaSet;

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let config =
        PublisherConfig::new("auth-service").with_schemas(SchemaSet::from_dir(&dir).unwrap());
    let outbox = Outbox::for_publisher(&config);
    let nats = NatsServer::start().await;
    let js = auth_stream(&nats).await;
    let (_keep, db) = TestDb::start(false).await;

    let user_id = "5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10";
    let mut data = serde_json::json!({"user_id": user_id, "email": "ada@acme.example",
        "display_name": "Ada", "roles": ["member"], "revision": 1});
    let valid = Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-1")
        .subject(user_id)
        .data(&data)
        .build()
        .unwrap();
    data.as_object_mut().unwrap().remove("email");
    let invalid = Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-1")
        .data(&data)
        .build()
        .unwrap();

    let mut tx = db.begin().await.unwrap();
    match outbox.enqueue(&mut tx, &invalid).await {
        Err(OutboxError::Invalid {
            event_id,
            source: PublishError::Schema { source, .. },
        }) => {
            assert_eq!(event_id, invalid.id());
            assert_eq!(source.pointer(), Some("/email"));
            assert_eq!(source.rule(), Some("required"));
        }
        other => panic!("expected a schema refusal, got {other:?}"),
    }
    assert!(outbox.enqueue(&mut tx, &valid).await.unwrap());
    outbox.commit(tx).await.unwrap();
    assert_eq!(
        pending(&db).await,
        1,
        "only the valid event is in the outbox"
    );

    let client = nats.client().await;
    let relay = spawn_relay(&db, &outbox, Publisher::new(client, config).await.unwrap());
    assert_eq!(wait_stored(&js, 1).await, [valid.id()]);
    wait_outbox_empty(&db).await;
    stop_relay(relay).await;
    let stored = js.get_stream("AUTH_EVENTS").await.unwrap();
    let m = stored.get_raw_message(1).await.unwrap();
    let event = Event::decode(Some(&m.headers), &m.payload).unwrap();
    assert_eq!(
        event.data_schema(),
        Some("urn:events:schema:auth.user.created:1.0")
    );
}
