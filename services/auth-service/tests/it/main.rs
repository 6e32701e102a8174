//! Integration tests of auth-service against a real nats-server (test kit), with the
//! streams of `deploy/streams.toml` (profile dev).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use auth_service::users::UserService;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use events::Event;
use events::publisher::{Publisher, PublisherConfig};
use events::topology::{ApplyOptions, TopologySpec, apply};
use events_testkit::NatsServer;
use serde_json::{Value, json};
use tokio::time::timeout;
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

#[tokio::test]
async fn post_users_publishes_user_created_to_auth_events() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    let publisher = Publisher::new(nats.client().await, PublisherConfig::new("auth-service"))
        .await
        .unwrap();
    let app = auth_service::http::router(Arc::new(UserService::new(Arc::new(publisher.clone()))));

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
    assert_eq!(body["event"]["stream"], "AUTH_EVENTS");
    let seq = body["event"]["sequence"]
        .as_u64()
        .expect("a stored event has a sequence");

    // The stream holds exactly that event, as the catalog describes it.
    let mut stream = js.get_stream("AUTH_EVENTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    let msg = stream.get_raw_message(seq).await.unwrap();
    assert_eq!(msg.subject.as_str(), "auth.user.created");
    let event = Event::decode(Some(&msg.headers), &msg.payload).unwrap();
    assert_eq!(event.id(), body["event"]["id"].as_str().unwrap());
    assert_eq!(
        msg.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(event.id()),
        "a retried publish is stored once"
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

/// The binary serves, publishes, and on SIGTERM stops accepting, flushes and exits 0.
#[tokio::test]
async fn binary_serves_and_stops_on_sigterm() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    let (api, admin) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .env("EVENTS_NATS_URL", nats.url())
        .env("AUTH_SERVICE_LISTEN", api.to_string())
        .env("AUTH_SERVICE_ADMIN_LISTEN", admin.to_string())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Ready once /readyz says so (bounded poll).
    timeout(BOUND, async {
        loop {
            if tokio::net::TcpStream::connect(admin).await.is_ok()
                && http(admin, "GET", "/readyz", "").await.0.contains("200")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("auth-service ready in time");

    let (status, body) = http(
        api,
        "POST",
        "/users",
        r#"{"email":"bo@acme.example","name":"Bo","organization_id":"org-acme"}"#,
    )
    .await;
    assert!(status.contains("201"), "{status} {body}");
    let (status, metrics) = http(admin, "GET", "/metrics", "").await;
    assert!(status.contains("200"), "{status}");
    let published = metrics.lines().find(|l| {
        l.starts_with("events_published_total{")
            && l.contains("event_type=\"auth.user.created\"")
            && l.contains("status=\"ok\"")
    });
    assert_eq!(
        published.and_then(|l| l.rsplit(' ').next()),
        Some("1"),
        "{metrics}"
    );

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = timeout(BOUND, child.wait())
        .await
        .expect("auth-service stopped in time after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        tokio::net::TcpStream::connect(api).await.is_err(),
        "API stopped"
    );
    let stream = js.get_stream("AUTH_EVENTS").await.unwrap();
    assert_eq!(stream.cached_info().state.messages, 1);

    // --simulate N publishes N sign-ups and exits.
    let n = 3;
    let out = timeout(
        BOUND,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
            .env("EVENTS_NATS_URL", nats.url())
            .env("RUST_LOG", "warn")
            .args(["--simulate", &n.to_string(), "--organization", "org-sim"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("--simulate finished in time")
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("auth.user.created "))
            .count(),
        n,
        "{stdout}"
    );
    let stream = js.get_stream("AUTH_EVENTS").await.unwrap();
    assert_eq!(stream.cached_info().state.messages, 1 + n as u64);
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

fn spawn_service(
    nats_url: &str,
    api: SocketAddr,
    admin: SocketAddr,
    config: Option<&std::path::Path>,
) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-service"));
    cmd.env("EVENTS_NATS_URL", nats_url)
        .env("AUTH_SERVICE_LISTEN", api.to_string())
        .env("AUTH_SERVICE_ADMIN_LISTEN", admin.to_string())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    if let Some(path) = config {
        cmd.arg("--config").arg(path);
    }
    cmd.spawn().unwrap()
}

/// Issue #10, item 9: auth-service starts while NATS is down, answers /healthz, is not
/// ready, takes sign-ups into its spool, and forwards them once NATS is back.
#[tokio::test]
async fn binary_starts_while_nats_is_down_and_spools_sign_ups() {
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    nats.kill();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auth-service.toml");
    let spool = dir.path().join("spool");
    std::fs::write(
        &config,
        format!(
            "[publisher]\nspool = {{ dir = {:?} }}\n",
            spool.display().to_string()
        ),
    )
    .unwrap();
    let (api, admin) = (free_port(), free_port());
    let _child = spawn_service(&nats.url(), api, admin, Some(&config));

    wait_status(
        admin,
        "/healthz",
        |s| s.contains("200"),
        "/healthz 200 while NATS is down",
    )
    .await;
    let (status, body) = http(admin, "GET", "/readyz", "").await;
    assert!(status.contains("503"), "{status} {body}");
    let (status, body) = http(
        api,
        "POST",
        "/users",
        r#"{"email":"cy@acme.example","name":"Cy","organization_id":"org-acme"}"#,
    )
    .await;
    assert!(status.contains("201"), "{status} {body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["event"]["spooled"], true, "{body}");

    nats.start_again().await;
    wait_status(
        admin,
        "/readyz",
        |s| s.contains("200"),
        "/readyz 200 once NATS is back",
    )
    .await;
    let js = nats.jetstream().await;
    let event_id = body["event"]["id"].as_str().unwrap().to_owned();
    let msg = timeout(BOUND, async {
        loop {
            if let Ok(mut stream) = js.get_stream("AUTH_EVENTS").await
                && let Ok(state) = stream.info().await.map(|i| i.state.clone())
                && state.messages > 0
            {
                return stream.get_raw_message(state.first_sequence).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the spooled sign-up reaches AUTH_EVENTS");
    assert_eq!(
        msg.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(event_id.as_str())
    );
    // And new sign-ups go straight to the stream.
    let (status, body) = http(
        api,
        "POST",
        "/users",
        r#"{"email":"di@acme.example","name":"Di","organization_id":"org-acme"}"#,
    )
    .await;
    assert!(status.contains("201"), "{status} {body}");
}

/// Issue #10, item 11 against a real server: NATS dies with the sign-up in flight; the
/// answer is 202 (outcome unknown, user kept), the buffered event is stored when NATS
/// returns, and the client's retry gets the same user: one user, one event.
#[tokio::test]
async fn unconfirmed_sign_up_then_retry_stores_one_user_once() {
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    let config = PublisherConfig {
        ack_timeout: Duration::from_millis(300),
        deadline: Duration::from_secs(2),
        ..PublisherConfig::new("auth-service")
    };
    let publisher = Publisher::new(nats.client().await, config).await.unwrap();
    let app = auth_service::http::router(Arc::new(UserService::new(Arc::new(publisher.clone()))));
    let post = || {
        Request::post("/users")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"email": "ed@acme.example", "name": "Ed", "organization_id": "org-acme"})
                    .to_string(),
            ))
            .unwrap()
    };
    let answer = |res: axum::response::Response| async move {
        let status = res.status();
        let body: Value =
            serde_json::from_slice(&to_bytes(res.into_body(), 1 << 20).await.unwrap()).unwrap();
        (status, body)
    };

    nats.kill();
    let res = timeout(BOUND, app.clone().oneshot(post()))
        .await
        .unwrap()
        .unwrap();
    let (status, first) = answer(res).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["error"]["code"], "publish_unconfirmed");

    nats.start_again().await;
    let res = timeout(BOUND, app.clone().oneshot(post()))
        .await
        .unwrap()
        .unwrap();
    let (status, again) = answer(res).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["user"]["id"], first["user"]["id"], "the same user");
    assert_eq!(again["event"]["id"], first["event"]["id"], "the same event");
    let mut stream = nats
        .jetstream()
        .await
        .get_stream("AUTH_EVENTS")
        .await
        .unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        1,
        "stored once"
    );
    publisher.close(BOUND).await.unwrap();
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
    let _child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -S -n {soft_at_spawn} && exec \"$0\"",))
        .arg(env!("CARGO_BIN_EXE_auth-service"))
        .env("EVENTS_NATS_URL", nats.url())
        .env("AUTH_SERVICE_LISTEN", api.to_string())
        .env("AUTH_SERVICE_ADMIN_LISTEN", admin.to_string())
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
