//! End-to-end test: auth-service's router (with its outbox relay) and catalog-service's
//! subscriber in one process, against a real nats-server (test kit) with the streams of
//! `deploy/streams.toml` (dev), each service on its own SQLite database in a temp dir.

mod convergence;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use auth_service::users::UserService;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use catalog_service::projection::Projection;
use events::Event;
use events::dlq::{DeadLetter, DeadLetterFilter, DeadLetterReason, DeadLetters, PageRequest};
use events::outbox::{Outbox, Relay, RelayConfig};
use events::publisher::{Publisher, PublisherConfig};
use events::subscriber::{RetryPolicy, SubscriberConfig};
use events::topology::{ApplyOptions, TopologySpec, apply};
use events_testkit::NatsServer;
use serde_json::{Value, json};
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

mod contracts;
mod secure;

/// Upper bound of every wait (the machine is shared and loaded).
const BOUND: Duration = Duration::from_secs(30);
const ORG: &str = "org-e2e";

/// auth-service's side: users in a SQLite file, the outbox relay publishing to `nats`.
struct AuthSide {
    users: UserService,
    publisher: Publisher,
    stop: CancellationToken,
    relay: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl AuthSide {
    async fn start(nats: &NatsServer) -> AuthSide {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/auth.db", dir.path().display());
        let db = auth_service::store::open(&url).await.unwrap();
        let publisher = Publisher::new(nats.client().await, PublisherConfig::new("auth-service"))
            .await
            .unwrap();
        let outbox = Outbox::new();
        let stop = CancellationToken::new();
        let relay = Relay::new(
            db.clone(),
            outbox.clone(),
            publisher.clone(),
            RelayConfig::new("auth-service"),
        );
        let relay = tokio::spawn(relay.run(stop.clone()));
        AuthSide {
            users: UserService::new(db, outbox),
            publisher,
            stop,
            relay,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        timeout(BOUND, self.relay).await.unwrap().unwrap();
        self.publisher.close(BOUND).await.unwrap();
    }
}

/// A catalog projection on a fresh SQLite file.
async fn projection(dir: &tempfile::TempDir) -> Projection {
    let url = format!("sqlite://{}/catalog.db", dir.path().display());
    let db = catalog_service::store::open(&url).await.unwrap();
    Projection::new(db, catalog_service::GROUP)
}

async fn apply_topology(js: &jetstream::Context) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/streams.toml");
    let text = std::fs::read_to_string(path).expect("read deploy/streams.toml");
    let spec = TopologySpec::from_toml(&text, path, "dev").expect("parse deploy/streams.toml");
    let report = timeout(BOUND, apply(js, &spec, &ApplyOptions::default()))
        .await
        .expect("topology applied in time")
        .expect("topology applied");
    assert_eq!(report.refused().count(), 0, "{report}");
}

/// Short timings: a failed delivery comes back in milliseconds, a drain takes seconds.
fn fast_config() -> SubscriberConfig {
    SubscriberConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            jitter: 0.2,
        },
        ack_wait: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(5),
        fetch_expires: Duration::from_secs(1),
        lag_interval: Duration::from_millis(500),
        ..SubscriberConfig::default()
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let res = timeout(BOUND, app.clone().oneshot(req))
        .await
        .expect("answered in time")
        .unwrap();
    let status = res.status();
    let bytes = to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The user ids `GET /catalogs/{ORG}` shows.
async fn catalog_ids(catalog: &Router) -> BTreeSet<String> {
    let (status, body) = call(catalog, "GET", &format!("/catalogs/{ORG}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_for_catalog(catalog: &Router, want: &BTreeSet<String>) {
    let waited = timeout(BOUND, async {
        loop {
            if catalog_ids(catalog).await == *want {
                return;
            }
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "catalog shows {:?}, want {want:?}",
        catalog_ids(catalog).await
    );
}

async fn wait_for_dead_letter(js: &jetstream::Context, event_id: &str) -> DeadLetter {
    let dlq = DeadLetters::new(js.clone());
    timeout(BOUND, async {
        loop {
            let page = dlq
                .list(&DeadLetterFilter::new(), PageRequest::first(50))
                .await
                .unwrap();
            if let Some(dl) = page
                .items
                .into_iter()
                .find(|d| d.event_id.as_deref() == Some(event_id))
            {
                return dl;
            }
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the poison event is dead-lettered in time")
}

#[tokio::test]
async fn users_flow_from_auth_service_into_the_catalog_and_poison_is_dead_lettered() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;

    // auth-service: its router over its database and outbox relay.
    let side = AuthSide::start(&nats).await;
    let auth = auth_service::http::router(Arc::new(side.users.clone()));

    // catalog-service: its subscriber, handler (projection + inbox) and routes.
    let dir = tempfile::tempdir().unwrap();
    let projection = projection(&dir).await;
    let subscriber = catalog_service::subscribe(&js, fast_config())
        .await
        .unwrap();
    assert_eq!(subscriber.durable_name(), "catalog-service__auth_user_any");
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(subscriber.run(
        catalog_service::handler::CatalogHandler::new(projection.clone()),
        shutdown.clone(),
    ));
    let catalog = catalog_service::http::routes(projection.clone());

    // Three sign-ups: all three appear, each with its workspace.
    let mut ids = BTreeSet::new();
    let mut event_ids = Vec::new();
    for (email, name) in [
        ("ada@e2e.example", "Ada"),
        ("bo@e2e.example", "Bo"),
        ("cy@e2e.example", "Cy"),
    ] {
        let (status, body) = call(
            &auth,
            "POST",
            "/users",
            Some(json!({"email": email, "name": name, "organization_id": ORG})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.insert(body["user"]["id"].as_str().unwrap().to_owned());
        event_ids.push(body["event"]["id"].as_str().unwrap().to_owned());
    }
    wait_for_catalog(&catalog, &ids).await;
    // The inbox holds each handled event (committed with its effect), so a redelivery
    // changes nothing.
    let recorded: Vec<String> = sqlx::query_scalar(
        "SELECT event_id FROM events_inbox WHERE consumer = 'catalog-service' ORDER BY event_id",
    )
    .fetch_all(projection.db().pool())
    .await
    .unwrap();
    let mut want = event_ids.clone();
    want.sort();
    assert_eq!(recorded, want);
    let (_, body) = call(&catalog, "GET", &format!("/catalogs/{ORG}"), None).await;
    for user in body["users"].as_array().unwrap() {
        let id = user["user_id"].as_str().unwrap();
        assert_eq!(user["workspace"]["id"], format!("ws-{id}"));
    }

    // A rename reaches the catalog; a deleted user disappears from it.
    let renamed = ids.iter().next_back().unwrap().clone();
    let (status, body) = call(
        &auth,
        "PATCH",
        &format!("/users/{renamed}"),
        Some(json!({"name": "Cy Young"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deleted = ids.pop_first().unwrap();
    let (status, body) = call(&auth, "DELETE", &format!("/users/{deleted}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_catalog(&catalog, &ids).await;
    timeout(BOUND, async {
        while !projection
            .catalog(ORG)
            .await
            .unwrap()
            .users
            .iter()
            .any(|u| u.user_id == renamed && u.display_name == "Cy Young")
        {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the rename reaches the catalog in time");

    // A poison event: a schema major this consumer does not read. Dead-lettered at once
    // (reason permanent), without retries, and the catalog is unchanged.
    let poison = Event::builder("auth.user.created")
        .source("auth-service")
        .organization(ORG)
        .schema_version("2.0")
        .data_schema("urn:events:schema:auth.user.created:2")
        .subject("0193a1f2-0000-7000-8000-000000000002")
        .data(&json!({"user_id": "0193a1f2-0000-7000-8000-000000000002",
                      "emails": ["dee@e2e.example"], "revision": 1}))
        .build()
        .unwrap();
    let stored = side.publisher.publish(&poison).await.unwrap();
    let dl = wait_for_dead_letter(&js, poison.id()).await;
    assert_eq!(dl.reason, Some(DeadLetterReason::Permanent));
    assert_eq!(dl.subject, "dlq.auth.user.created");
    assert_eq!(
        dl.consumer.as_deref(),
        Some("catalog-service__auth_user_any")
    );
    assert_eq!(dl.original_sequence, Some(stored.ack().unwrap().sequence));
    assert_eq!(dl.deliveries, Some(1), "a permanent failure is not retried");
    let error = dl.error.unwrap_or_default();
    assert!(error.contains("unsupported schemaversion 2.0"), "{error}");
    assert_eq!(catalog_ids(&catalog).await, ids);

    // Graceful drain, bounded.
    shutdown.cancel();
    let report = timeout(BOUND, consumer)
        .await
        .expect("the subscriber drains in time")
        .unwrap();
    assert_eq!(report.abandoned, 0, "{report:?}");
    side.stop().await;
}

/// A port outside the ephemeral range: a port the kernel just handed out and took back
/// could go to an outgoing connection (the child's own NATS connection among them) before
/// the child binds it.
fn free_port() -> std::net::SocketAddr {
    events_testkit::free_loopback_addr()
}

/// One raw HTTP/1.1 GET (the test needs no HTTP client dependency): status line and body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

fn spawn_binary(
    nats: &NatsServer,
    admin: std::net::SocketAddr,
    dir: &std::path::Path,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_catalog-service"))
        .env("EVENTS_NATS_URL", nats.url())
        .env("CATALOG_SERVICE_ADMIN_LISTEN", admin.to_string())
        .arg("--database")
        .arg(format!("sqlite://{}/catalog.db", dir.display()))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Polls `GET /catalogs/{ORG}` until its body satisfies `ok` (bounded).
async fn wait_for_body(admin: std::net::SocketAddr, ok: impl Fn(&Value) -> bool) -> Value {
    timeout(BOUND, async {
        loop {
            if let Some((status, body)) = http_get(admin, &format!("/catalogs/{ORG}")).await
                && status.contains("200")
                && let Ok(v) = serde_json::from_str::<Value>(&body)
                && ok(&v)
            {
                return v;
            }
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("catalog-service answered as expected in time")
}

async fn sigterm_and_wait(child: &mut tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = timeout(BOUND, child.wait())
        .await
        .expect("catalog-service stopped in time after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// The binary consumes, serves the projection and metrics, drains on SIGTERM, and its
/// database carries the catalog across a restart.
#[tokio::test]
async fn binary_consumes_drains_on_sigterm_and_keeps_the_projection() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();

    let side = AuthSide::start(&nats).await;
    let users = side.users.clone();
    let new = |email: &str| auth_service::users::NewUser {
        email: Some(email.into()),
        name: Some("Someone".into()),
        organization_id: Some(ORG.into()),
        roles: None,
    };
    let (first, _) = users.create(new("one@e2e.example")).await.unwrap();

    let mut child = spawn_binary(&nats, admin, dir.path());
    wait_for_body(admin, |v| v["users"][0]["user_id"] == first.id.as_str()).await;
    let (status, metrics) = http_get(admin, "/metrics").await.unwrap();
    assert!(status.contains("200"), "{status}");
    assert!(metrics.contains("events_consumed_total"), "{metrics}");
    sigterm_and_wait(&mut child).await;

    // Published while it is down: delivered after the restart, on top of the saved state
    // (the first user is not delivered again: the group acknowledged it).
    let (second, _) = users.create(new("two@e2e.example")).await.unwrap();
    let mut child = spawn_binary(&nats, admin, dir.path());
    let body = wait_for_body(admin, |v| {
        v["users"].as_array().is_some_and(|u| u.len() == 2)
    })
    .await;
    let got: BTreeSet<&str> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, BTreeSet::from([first.id.as_str(), second.id.as_str()]));
    sigterm_and_wait(&mut child).await;
    side.stop().await;
}

/// Polls `GET path` until the status line satisfies `ok` (bounded).
async fn wait_for_status(admin: std::net::SocketAddr, path: &str, ok: impl Fn(&str) -> bool) {
    timeout(BOUND, async {
        loop {
            if let Ok(Some((status, _))) =
                timeout(Duration::from_secs(2), http_get(admin, path)).await
                && ok(&status)
            {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} as expected within {BOUND:?}"));
}

/// Issue #10, item 9: catalog-service starts while NATS is down (it used to exit with
/// "cannot connect"), answers /healthz, is not ready, and consumes once NATS is back.
/// Item 10: a wrong method on its routes is 405 with a JSON error.
#[tokio::test]
async fn binary_starts_while_nats_is_down_and_consumes_when_it_returns() {
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    nats.kill();
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let mut child = spawn_binary(&nats, admin, dir.path());

    wait_for_status(admin, "/healthz", |s| s.contains("200")).await;
    let (status, body) = http_get(admin, "/readyz").await.expect("an answer");
    assert!(status.contains("503"), "{status} {body}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running while NATS is down"
    );

    nats.start_again().await;
    wait_for_status(admin, "/readyz", |s| s.contains("200")).await;
    let side = AuthSide::start(&nats).await;
    let (user, _) = side
        .users
        .create(auth_service::users::NewUser {
            email: Some("late@e2e.example".into()),
            name: Some("Late".into()),
            organization_id: Some(ORG.into()),
            roles: None,
        })
        .await
        .unwrap();
    wait_for_body(admin, |v| v["users"][0]["user_id"] == user.id.as_str()).await;

    let (status, body) = method(admin, "PUT", &format!("/catalogs/{ORG}")).await;
    assert!(status.contains("405"), "{status} {body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "method_not_allowed");

    sigterm_and_wait(&mut child).await;
    side.stop().await;
}

/// One raw HTTP/1.1 request with an empty body: status line and body.
async fn method(addr: std::net::SocketAddr, method: &str, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    timeout(BOUND, s.read_to_string(&mut out))
        .await
        .expect("answer in time")
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}
