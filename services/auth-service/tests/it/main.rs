//! Integration tests of auth-service against a real nats-server (test kit), with the
//! streams of `deploy/streams.toml` (profile dev), on SQLite databases in temp dirs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use auth_service::users::UserService;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use events::Event;
use events::outbox::{Outbox, Relay, RelayConfig};
use events::publisher::{Publisher, PublisherConfig};
use events::topology::{ApplyOptions, TopologySpec, apply};
use events_testkit::NatsServer;
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Upper bound of every wait (the machine is shared and loaded).
const BOUND: Duration = Duration::from_secs(30);

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

/// Waits until AUTH_EVENTS holds `n` messages; returns them in stream order.
async fn wait_stream(
    js: &jetstream::Context,
    n: u64,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    timeout(BOUND, async {
        loop {
            if let Ok(mut stream) = js.get_stream("AUTH_EVENTS").await
                && let Ok(state) = stream.info().await.map(|i| i.state.clone())
                && state.messages >= n
            {
                let mut out = Vec::new();
                for seq in state.first_sequence..=state.last_sequence {
                    out.push(stream.get_raw_message(seq).await.unwrap());
                }
                return out;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("AUTH_EVENTS did not reach {n} messages in {BOUND:?}"))
}

#[tokio::test]
async fn post_users_commits_and_the_relay_publishes_user_created() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    let dir = tempfile::tempdir().unwrap();
    let db = auth_service::store::open(&format!("sqlite://{}/auth.db", dir.path().display()))
        .await
        .unwrap();
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
    let app = auth_service::http::router(Arc::new(UserService::new(db, outbox)));

    let req = Request::post("/users")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"email": "Ada@Acme.Example", "name": "Ada Lovelace", "organization_id": "org-acme"})
                .to_string(),
        ))
        .unwrap();
    let res = timeout(BOUND, app.oneshot(req)).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value =
        serde_json::from_slice(&to_bytes(res.into_body(), 1 << 20).await.unwrap()).unwrap();
    let user_id = body["user"]["id"].as_str().unwrap();

    // The stream holds exactly that event, as the catalog describes it.
    let msgs = wait_stream(&js, 1).await;
    assert_eq!(msgs.len(), 1);
    let msg = &msgs[0];
    assert_eq!(msg.subject.as_str(), "auth.user.created");
    let event = Event::decode(Some(&msg.headers), &msg.payload).unwrap();
    assert_eq!(event.id(), body["event"]["id"].as_str().unwrap());
    assert_eq!(
        msg.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(event.id()),
        "a resend is stored once"
    );
    assert_eq!(event.source(), "auth-service");
    assert_eq!(event.organization_id().as_str(), "org-acme");
    assert_eq!(event.schema_version(), "1.0");
    assert_eq!(
        event.data_schema(),
        Some("urn:events:schema:auth.user.created:1.0")
    );
    assert_eq!(event.subject(), Some(user_id));
    assert_eq!(
        Value::Object(event.data().clone()),
        json!({"user_id": user_id, "email": "ada@acme.example", "display_name": "Ada Lovelace",
               "roles": ["member"], "revision": 1})
    );
    stop.cancel();
    timeout(BOUND, relay).await.unwrap().unwrap();
    publisher.close(BOUND).await.unwrap();
}

/// A port outside the ephemeral range: a port the kernel just handed out and took back
/// could go to an outgoing connection (the child's own NATS connection among them) before
/// the child binds it.
fn free_port() -> SocketAddr {
    events_testkit::free_loopback_addr()
}

/// One raw HTTP/1.1 request (the test needs no HTTP client dependency); returns the status
/// line and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// A running auth-service binary with its database in a temp dir.
struct Service {
    child: tokio::process::Child,
    api: SocketAddr,
    admin: SocketAddr,
    db_url: String,
    nats_url: String,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start(nats_url: &str) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!("sqlite://{}/auth.db", dir.path().display());
        let (api, admin) = (free_port(), free_port());
        let child = spawn_service(nats_url, api, admin, &db_url);
        Service {
            child,
            api,
            admin,
            db_url,
            nats_url: nats_url.to_owned(),
            _dir: dir,
        }
    }

    /// SIGKILL, then the same binary on the same database and ports.
    async fn kill_and_restart(&mut self) {
        self.child.kill().await.unwrap();
        self.child = spawn_service(&self.nats_url, self.api, self.admin, &self.db_url);
        wait_status(
            self.admin,
            "/readyz",
            |s| s.contains("200"),
            "ready after restart",
        )
        .await;
    }

    async fn post_user(&self, email: &str) -> (String, Value) {
        let body = json!({"email": email, "name": "Test User", "organization_id": "org-acme"});
        let (status, body) = http(self.api, "POST", "/users", &body.to_string()).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

fn spawn_service(
    nats_url: &str,
    api: SocketAddr,
    admin: SocketAddr,
    db_url: &str,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .env("EVENTS_NATS_URL", nats_url)
        .env("AUTH_SERVICE_LISTEN", api.to_string())
        .env("AUTH_SERVICE_ADMIN_LISTEN", admin.to_string())
        .env("AUTH_SERVICE_DATABASE", db_url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Bounded poll of `GET path` on `addr` until `ok(status line)`.
async fn wait_status(addr: SocketAddr, path: &str, ok: impl Fn(&str) -> bool, what: &str) {
    timeout(BOUND, async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok()
                && let Ok((status, _)) =
                    timeout(Duration::from_secs(2), http(addr, "GET", path, "")).await
                && ok(&status)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {BOUND:?}"));
}

/// The binary serves, relays, and on SIGTERM stops accepting, stops the relay and exits 0.
#[tokio::test]
async fn binary_serves_and_stops_on_sigterm() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    let mut svc = Service::start(&nats.url());
    wait_status(
        svc.admin,
        "/readyz",
        |s| s.contains("200"),
        "auth-service ready",
    )
    .await;

    let (status, body) = svc.post_user("bo@acme.example").await;
    assert!(status.contains("201"), "{status} {body}");
    wait_stream(&js, 1).await;
    let metric = |metrics: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("outbox_relayed_total{") && l.contains("status=\"ok\""))
            .and_then(|l| l.rsplit(' ').next().map(str::to_owned))
    };
    // The counter is bumped after the ack the stream already shows: poll it, bounded.
    timeout(BOUND, async {
        loop {
            let (_, metrics) = http(svc.admin, "GET", "/metrics", "").await;
            if metric(&metrics).as_deref() == Some("1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("outbox_relayed_total{status=ok} reaches 1");

    let pid = svc.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = timeout(BOUND, svc.child.wait())
        .await
        .expect("auth-service stopped in time after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        tokio::net::TcpStream::connect(svc.api).await.is_err(),
        "API stopped"
    );
    let stream = js.get_stream("AUTH_EVENTS").await.unwrap();
    assert_eq!(stream.cached_info().state.messages, 1);
}

/// Stop NATS, register 50 users (each answered at once, /readyz stays ready), start NATS:
/// all 50 events reach the stream once, in commit order.
#[tokio::test]
async fn binary_takes_sign_ups_while_nats_is_down_and_catches_up() {
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    let svc = Service::start(&nats.url());
    wait_status(
        svc.admin,
        "/readyz",
        |s| s.contains("200"),
        "auth-service ready",
    )
    .await;
    nats.kill();
    let n = 50;
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, body) = timeout(
            Duration::from_secs(5),
            svc.post_user(&format!("u{i}@acme.example")),
        )
        .await
        .expect("a sign-up answers without waiting on NATS");
        assert!(status.contains("201"), "{status} {body}");
        ids.push(body["event"]["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = http(svc.admin, "GET", "/readyz", "").await;
    assert!(
        status.contains("200"),
        "ready while NATS is down: {status} {body}"
    );

    nats.start_again().await;
    let js = nats.jetstream().await;
    let msgs = wait_stream(&js, n).await;
    let stored: Vec<String> = msgs
        .iter()
        .map(|m| m.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned())
        .collect();
    assert_eq!(stored, ids, "each once, in commit order");
}

/// `kill -9` after sign-ups: every user answered 201 is still there after the restart, the
/// same e-mail again is a 409, and every event reaches the stream once.
#[tokio::test]
async fn binary_killed_keeps_every_answered_user() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    let mut svc = Service::start(&nats.url());
    wait_status(
        svc.admin,
        "/readyz",
        |s| s.contains("200"),
        "auth-service ready",
    )
    .await;
    let n = 20;
    let mut users = Vec::new();
    for i in 0..n {
        let email = format!("k{i}@acme.example");
        let (status, body) = svc.post_user(&email).await;
        assert!(status.contains("201"), "{status} {body}");
        users.push((email, body["user"]["id"].as_str().unwrap().to_owned()));
    }
    svc.kill_and_restart().await;
    for (email, id) in &users {
        let (status, body) = http(svc.api, "GET", &format!("/users/{id}"), "").await;
        assert!(status.contains("200"), "{id}: {status} {body}");
        let (status, body) = svc.post_user(email).await;
        assert!(status.contains("409"), "{email}: {status} {body}");
    }
    let (_, list) = http(
        svc.api,
        "GET",
        "/users?organization_id=org-acme&limit=1000",
        "",
    )
    .await;
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["users"].as_array().unwrap().len(), n);
    let msgs = wait_stream(&js, n as u64).await;
    let mut ids: Vec<&str> = msgs
        .iter()
        .map(|m| m.headers.get("Nats-Msg-Id").unwrap().as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "every event once");
}

/// Issue #10, item 8: the service raises its open-files soft limit at start, so many idle
/// connections cannot make `accept` fail; started under a low soft limit (as a default
/// `ulimit -n` of 1024 would be), /healthz still answers within a second.
#[tokio::test]
async fn binary_answers_healthz_under_more_idle_connections_than_its_inherited_fd_limit() {
    let soft_at_spawn: usize = 256;
    let idle = 2 * soft_at_spawn;
    let test_limit = events_admin::raise_open_files_limit()
        .unwrap()
        .unwrap_or(u64::MAX);
    assert!(
        test_limit > 4 * idle as u64,
        "open-files limit {test_limit} too low"
    );
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    let (api, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let _child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -S -n {soft_at_spawn} && exec \"$0\"",))
        .arg(env!("CARGO_BIN_EXE_auth-service"))
        .env("EVENTS_NATS_URL", nats.url())
        .env("AUTH_SERVICE_LISTEN", api.to_string())
        .env("AUTH_SERVICE_ADMIN_LISTEN", admin.to_string())
        .env(
            "AUTH_SERVICE_DATABASE",
            format!("sqlite://{}/auth.db", dir.path().display()),
        )
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_status(admin, "/healthz", |s| s.contains("200"), "/healthz 200").await;

    // All connects under one bound: a server that stopped accepting fills its backlog,
    // and later connects then hang.
    let held = timeout(BOUND, async {
        let mut held = Vec::with_capacity(idle);
        for _ in 0..idle {
            held.push(tokio::net::TcpStream::connect(admin).await.unwrap());
        }
        held
    })
    .await
    .expect("the server keeps accepting connections");
    let t = std::time::Instant::now();
    let res = timeout(Duration::from_secs(5), http(admin, "GET", "/healthz", "")).await;
    let took = t.elapsed();
    let (status, _) = res.expect("/healthz answers");
    assert!(status.contains("200"), "{status}");
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    drop(held);
}
