//! Typed, fast denials (issue #14, phase 2): each identity connected through
//! `events::connection` (TLS, nkey, its own inbox prefix) gets a typed error naming the
//! subject well before its deadline when it reaches beyond its permissions.

use std::time::{Duration, Instant};

use events::connection::{
    AuthConfig, ConnectConfig, ConnectError, Connection, DeniedOperation, TlsConfig, connect,
};
use events::security::inbox_prefix;
use events::{PublishError, Publisher, PublisherConfig, SubjectFilter, SubscribeError, Subscriber};
use events_testkit::TestPki;
use tempfile::TempDir;

use crate::security::{Env, create_durable_as_catalog, event};

/// The publish deadline of these tests: a denial must come well within it.
const DEADLINE: Duration = Duration::from_secs(20);
/// The JetStream request timeout of these connections.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection as `name`, the way a service makes it; the seed file lives in `dir`.
async fn connect_as(env: &Env, name: &str, dir: &TempDir) -> Connection {
    let seed = dir.path().join(format!("{name}.nk"));
    std::fs::write(&seed, env.seed(name)).unwrap();
    connect(&config(env, name, seed, env.nats.pki().ca_file()))
        .await
        .unwrap_or_else(|e| panic!("connect as {name}: {e}"))
}

fn config(
    env: &Env,
    name: &str,
    seed: std::path::PathBuf,
    ca: std::path::PathBuf,
) -> ConnectConfig {
    ConnectConfig {
        urls: vec![env.nats.url()],
        name: Some(name.into()),
        auth: AuthConfig {
            nkey_seed_file: Some(seed),
            ..Default::default()
        },
        tls: TlsConfig {
            ca_file: Some(ca),
            require_tls: true,
            ..Default::default()
        },
        inbox_prefix: Some(inbox_prefix(name)),
        request_timeout: REQUEST_TIMEOUT,
        ..Default::default()
    }
}

async fn publisher(conn: &Connection, source: &str) -> Publisher {
    let config = PublisherConfig {
        deadline: DEADLINE,
        ..PublisherConfig::new(source)
    };
    Publisher::on_connection(conn, config).await.unwrap()
}

/// Publishes `event_type` and expects `PermissionDenied` naming it before the deadline.
async fn publish_is_denied(conn: &Connection, source: &str, event_type: &str) {
    let publisher = publisher(conn, source).await;
    let started = Instant::now();
    let res = tokio::time::timeout(DEADLINE * 2, publisher.publish(&event(event_type)))
        .await
        .expect("the publish returned within twice its deadline");
    expect_denied(res, event_type, started);
}

fn expect_denied(
    res: Result<events::PublishOutcome, PublishError>,
    event_type: &str,
    started: Instant,
) {
    match res {
        Err(PublishError::PermissionDenied { subject, .. }) => assert_eq!(subject, event_type),
        other => panic!("{event_type}: expected PermissionDenied, got {other:?}"),
    }
    assert!(started.elapsed() < DEADLINE, "denied only at the deadline");
}

#[tokio::test]
async fn an_identity_publishes_its_domain_through_the_connection_layer() {
    let env = Env::start().await;
    let dir = TempDir::new().unwrap();
    let conn = connect_as(&env, "auth-service", &dir).await;
    let publisher = publisher(&conn, "auth-service").await;
    publisher
        .publish(&event("auth.user.created"))
        .await
        .unwrap();
    assert_eq!(env.stored("AUTH_EVENTS").await, 1);
}

#[tokio::test]
async fn auth_service_publishing_into_catalog_is_denied_typed() {
    let env = Env::start().await;
    let dir = TempDir::new().unwrap();
    let conn = connect_as(&env, "auth-service", &dir).await;
    publish_is_denied(&conn, "auth-service", "catalog.x.y").await;
    assert_eq!(env.stored("CATALOG_EVENTS").await, 0);
}

#[tokio::test]
async fn a_denied_atomic_batch_is_typed_too() {
    // auth-service may also look up CATALOG_EVENTS (so the publisher routes catalog
    // events into atomic batches) but still not publish there.
    let env = Env::start_with(|ids| {
        let auth = ids.iter_mut().find(|i| i.name() == "auth-service").unwrap();
        let info = "$JS.API.STREAM.INFO.CATALOG_EVENTS".to_owned();
        auth.permissions.publish.push(info);
    })
    .await;
    let dir = TempDir::new().unwrap();
    let conn = connect_as(&env, "auth-service", &dir).await;
    // The batch's ack timeout is the whole deadline: only the denial can end it sooner.
    let mut config = PublisherConfig {
        deadline: DEADLINE,
        ack_timeout: DEADLINE,
        ..PublisherConfig::new("auth-service")
    };
    config.batch.enabled = true;
    let publisher = Publisher::on_connection(&conn, config).await.unwrap();
    let started = Instant::now();
    let handle = publisher
        .publish_async(&event("catalog.x.y"))
        .await
        .unwrap();
    let res = tokio::time::timeout(DEADLINE * 2, handle)
        .await
        .expect("the outcome came within twice the deadline");
    expect_denied(res, "catalog.x.y", started);
    assert_eq!(env.stored("CATALOG_EVENTS").await, 0);
}

#[tokio::test]
async fn catalog_service_publishing_auth_events_is_denied_typed() {
    let env = Env::start().await;
    let dir = TempDir::new().unwrap();
    let conn = connect_as(&env, "catalog-service", &dir).await;
    publish_is_denied(&conn, "catalog-service", "auth.user.created").await;
    assert_eq!(env.stored("AUTH_EVENTS").await, 0);
}

/// Runs `request` as auth-service guarded by the connection's denials; expects a typed
/// denial of `subject` before the request timeout.
async fn guarded_is_denied<F, T>(conn: &Connection, subject: &str, request: F)
where
    F: std::future::Future<Output = T>,
{
    let started = Instant::now();
    let denied = match conn.denials().guard(subject, request).await {
        Ok(_) => panic!("{subject}: not denied"),
        Err(d) => d,
    };
    assert_eq!(denied.subject, subject);
    assert_eq!(denied.operation, DeniedOperation::Publish);
    assert!(
        started.elapsed() < REQUEST_TIMEOUT,
        "denied only at the timeout"
    );
}

#[tokio::test]
async fn auth_service_deleting_a_stream_is_denied_typed() {
    let env = Env::start().await;
    let dir = TempDir::new().unwrap();
    let conn = connect_as(&env, "auth-service", &dir).await;
    let js = conn.jetstream().clone();
    let delete = async move { js.delete_stream("AUTH_EVENTS").await.map(drop) };
    guarded_is_denied(&conn, "$JS.API.STREAM.DELETE.AUTH_EVENTS", delete).await;
    // Reading the stream as the operator fails if it was deleted.
    assert_eq!(env.stored("AUTH_EVENTS").await, 0);
}

#[tokio::test]
async fn auth_service_publishing_dead_letters_is_denied_typed() {
    let env = Env::start().await;
    let dir = TempDir::new().unwrap();
    let conn = connect_as(&env, "auth-service", &dir).await;
    // The library never publishes into `dlq.` from a producer (the prefix is reserved), so
    // this is a forged dead letter published raw.
    let subject = "dlq.auth.user.created";
    let js = conn.jetstream().clone();
    let forged = async move { js.publish(subject, "x".into()).await?.await };
    guarded_is_denied(&conn, subject, forged).await;
    assert_eq!(env.stored("DLQ_EVENTS").await, 0);
}

#[tokio::test]
async fn auth_service_reading_catalog_services_consumer_fails_at_start() {
    let env = Env::start().await;
    let dir = TempDir::new().unwrap();
    let catalog = connect_as(&env, "catalog-service", &dir).await;
    create_durable_as_catalog(catalog.jetstream()).await;
    let auth = connect_as(&env, "auth-service", &dir).await;
    let started = Instant::now();
    let res = Subscriber::on_connection(&auth, SubjectFilter::new("auth.user.*").unwrap())
        .group("catalog-service")
        .build()
        .await;
    match res {
        Err(SubscribeError::PermissionDenied { consumer, source }) => {
            assert_eq!(consumer, "catalog-service__auth_user_any");
            assert!(source.subject.contains(&consumer), "{source}");
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    assert!(
        started.elapsed() < REQUEST_TIMEOUT,
        "denied only at the timeout"
    );
}

#[tokio::test]
async fn a_subscriber_denied_its_pulls_stops_instead_of_retrying() {
    // catalog-service may create its consumer but (misconfigured) not pull from it.
    let env = Env::start_with(|ids| {
        let catalog = ids
            .iter_mut()
            .find(|i| i.name() == "catalog-service")
            .unwrap();
        catalog
            .permissions
            .publish
            .retain(|p| !p.starts_with("$JS.API.CONSUMER.MSG.NEXT."));
    })
    .await;
    let dir = TempDir::new().unwrap();
    let conn = connect_as(&env, "catalog-service", &dir).await;
    let subscriber = Subscriber::on_connection(&conn, SubjectFilter::new("auth.user.*").unwrap())
        .group("catalog-service")
        .build()
        .await
        .expect("the consumer is created");
    let handler = events::handler_fn(|_event: events::Event, _ctx| async {
        Ok::<_, events::HandlerError>(())
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let report = tokio::time::timeout(REQUEST_TIMEOUT, subscriber.run(handler, stop))
        .await
        .expect("run stopped on its own, before the request timeout");
    assert!(report.denied, "{report:?}");
    assert!(started.elapsed() < REQUEST_TIMEOUT);
}

#[tokio::test]
async fn a_client_trusting_another_ca_gets_a_typed_tls_error() {
    let env = Env::start().await;
    let dir = TempDir::new().unwrap();
    let seed = dir.path().join("operator.nk");
    std::fs::write(&seed, env.seed("operator")).unwrap();
    let stranger = TestPki::generate();
    let err = connect(&config(&env, "operator", seed, stranger.ca_file()))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Tls { .. }), "{err:?}");
    let chain = events::error_chain(&err);
    assert!(chain.contains("invalid peer certificate"), "{chain}");
}
