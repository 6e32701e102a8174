//! Integration tests of the admin router: requests through `router(state).oneshot(..)`
//! (no socket) against a real nats-server, plus one graceful-shutdown test on a socket.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use bytes::Bytes;
use events::dlq::{self, DeadLetterReason};
use events::{Event, StreamName};
use events_admin::{AdminState, AdminToken, ReadyCheck, hash_token, install_prometheus, router};
use events_testkit::NatsServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

mod browser;
mod console;
mod group;
mod hostile;
mod limits;
mod prometheus;
mod roles;
mod schemas;

const SECRET: &str = "4f1c2d6e-admin-secret-for-tests";
const WAIT: Duration = Duration::from_secs(30);

struct Fixture {
    _nats: NatsServer,
    /// The server's client port (for raw frames).
    port: u16,
    js: jetstream::Context,
    client: async_nats::Client,
}

async fn fixture() -> Fixture {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: dlq::DLQ_STREAM.into(),
        subjects: vec!["dlq.>".into()],
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .expect("create DLQ_EVENTS");
    js.create_stream(stream::Config {
        name: "AUTH_EVENTS".into(),
        subjects: vec!["auth.>".into()],
        ..Default::default()
    })
    .await
    .expect("create AUTH_EVENTS");
    // Mutating requests need the audit trail.
    js.create_stream(stream::Config {
        name: events_admin::AUDIT_STREAM.into(),
        subjects: vec![events_admin::AUDIT_SUBJECT.into()],
        ..Default::default()
    })
    .await
    .expect("create ADMIN_AUDIT");
    Fixture {
        port: nats.port(),
        _nats: nats,
        js,
        client,
    }
}

fn admin_state(f: &Fixture) -> AdminState {
    // Configured the way an operator would: id plus the hash, never the secret.
    let token = AdminToken::parse(&format!("ops:{}", hash_token(SECRET))).expect("token");
    // These tests send many mutating requests (most of them malformed, which count too);
    // the rate limit has its own test in `roles`.
    let generous = events_admin::RateLimit {
        burst: 10_000,
        per_minute: 60_000,
    };
    AdminState::new(f.client.clone())
        .with_token(token)
        .with_rate_limit(generous)
}

/// Writes a dead letter as the consumer would (CONTRACT.md §4); returns (seq, body).
async fn write_dead_letter(js: &jetstream::Context, org: &str, original_seq: u64) -> (u64, Bytes) {
    let ev = Event::builder("auth.user.created")
        .source("auth-service")
        .organization(org)
        .data(&json!({ "n": original_seq }))
        .build()
        .expect("valid event");
    let body = Bytes::from(ev.to_json_bytes());
    let mut h = HeaderMap::new();
    h.insert("Content-Type", "application/cloudevents+json");
    h.insert(
        "Nats-Msg-Id",
        dlq::dead_letter_msg_id("AUTH_EVENTS", original_seq, "catalog").as_str(),
    );
    h.insert(dlq::headers::ORIGINAL_SUBJECT, "auth.user.created");
    h.insert(dlq::headers::ORIGINAL_STREAM, "AUTH_EVENTS");
    h.insert(
        dlq::headers::ORIGINAL_SEQUENCE,
        original_seq.to_string().as_str(),
    );
    h.insert(dlq::headers::CONSUMER, "catalog");
    h.insert(dlq::headers::DELIVERIES, "5");
    h.insert(dlq::headers::REASON, DeadLetterReason::Permanent.as_str());
    h.insert(dlq::headers::ERROR, "no");
    h.insert(dlq::headers::FAILED_AT, "2026-01-01T00:00:00Z");
    let ack = timeout(WAIT, async {
        js.publish_with_headers("dlq.auth.user.created", h, body.clone())
            .await
            .expect("publish")
            .await
            .expect("ack")
    })
    .await
    .expect("ack within bound");
    (ack.sequence, body)
}

fn request(method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let (status, text) = call_text(app, req).await;
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

async fn call_text(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = timeout(WAIT, app.clone().oneshot(req))
        .await
        .expect("response within bound")
        .expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024 * 1024)
        .await
        .expect("body");
    (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// Every DLQ route, with a well-formed sequence.
fn dlq_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/api/v1/events/dlq", None),
        (Method::GET, "/api/v1/events/dlq/1", None),
        (Method::POST, "/api/v1/events/dlq/1/replay", None),
        (
            Method::POST,
            "/api/v1/events/dlq/replay",
            Some(json!({ "filter": {}, "max_count": 1 })),
        ),
        (Method::DELETE, "/api/v1/events/dlq/1", None),
        (Method::GET, "/api/v1/events/dlq/../x", None),
    ]
}

#[tokio::test]
async fn admin_dlq_is_refused_when_no_token_is_configured() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-a", 1).await;
    let app = router(AdminState::new(f.client.clone()));
    for (method, uri, body) in dlq_routes() {
        for token in [None, Some(SECRET), Some("")] {
            let (status, v) = call(&app, request(method.clone(), uri, token, body.clone())).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {v}");
            assert_eq!(error_code(&v), "dlq_api_disabled");
            assert!(v["error"]["message"].as_str().unwrap().contains("disabled"));
        }
    }
    // Nothing was touched.
    let dl = events::dlq::DeadLetters::new(f.js.clone());
    assert!(dl.get(seq).await.unwrap().is_some());
}

#[tokio::test]
async fn admin_dlq_needs_the_right_bearer_token() {
    let f = fixture().await;
    let app = router(admin_state(&f));
    let wrong_length = format!("{SECRET}x");
    let long = "a".repeat(4096);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("wrong token", Some("Bearer not-the-token".into())),
        (
            "token of the wrong length",
            Some(format!("Bearer {wrong_length}")),
        ),
        (
            "prefix of the token",
            Some(format!("Bearer {}", &SECRET[..8])),
        ),
        ("very long token", Some(format!("Bearer {long}"))),
        ("empty bearer", Some("Bearer ".into())),
        ("basic scheme", Some(format!("Basic {SECRET}"))),
        ("no scheme", Some(SECRET.into())),
        (
            "the hash instead of the token",
            Some(format!("Bearer {}", hash_token(SECRET))),
        ),
    ];
    for (what, auth) in &cases {
        for (method, uri, body) in dlq_routes() {
            let mut req = request(method.clone(), uri, None, body);
            if let Some(a) = auth {
                req.headers_mut()
                    .insert(header::AUTHORIZATION, a.parse().unwrap());
            }
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{what}: {method} {uri}"
            );
            assert_eq!(
                resp.headers().get(header::WWW_AUTHENTICATE).unwrap(),
                "Bearer"
            );
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(error_code(&v), "unauthorized", "{what}");
        }
    }
    // The valid token gets through (an empty list).
    let (status, v) = call(
        &app,
        request(Method::GET, "/api/v1/events/dlq", Some(SECRET), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["items"], json!([]));
    // The scheme is case-insensitive (RFC 7235).
    let mut req = request(Method::GET, "/api/v1/events/dlq", None, None);
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("bearer {SECRET}").parse().unwrap(),
    );
    assert_eq!(call(&app, req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn admin_open_routes_are_only_health_ready_and_metrics() {
    let f = fixture().await;
    let handle = install_prometheus().expect("recorder");
    let app = router(admin_state(&f).with_prometheus(handle));
    for uri in ["/healthz", "/readyz", "/metrics"] {
        let (status, _) = call_text(&app, request(Method::GET, uri, None, None)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    for (method, uri, body) in dlq_routes() {
        let (status, _) = call(&app, request(method.clone(), uri, None, body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    // Unknown routes are a JSON 404, never a DLQ answer.
    let (status, v) = call(&app, request(Method::GET, "/api/v1/events", None, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&v), "not_found");
}

#[tokio::test]
async fn admin_readyz_reports_missing_streams() {
    let f = fixture().await;
    let state = admin_state(&f).with_required_streams([
        StreamName::new("AUTH_EVENTS").unwrap(),
        StreamName::new("CATALOG_EVENTS").unwrap(),
    ]);
    let app = router(state);
    let (status, v) = call(&app, request(Method::GET, "/readyz", None, None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(error_code(&v), "not_ready");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CATALOG_EVENTS")
    );
    f.js.create_stream(stream::Config {
        name: "CATALOG_EVENTS".into(),
        subjects: vec!["catalog.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let (status, v) = call(&app, request(Method::GET, "/readyz", None, None)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = call(&app, request(Method::GET, "/healthz", None, None)).await;
    assert_eq!(status, StatusCode::OK);
}

/// An outbox producer is ready while NATS is down; its own checks decide.
#[tokio::test]
async fn admin_readyz_with_nats_optional_follows_the_extra_checks() {
    let mut f = fixture().await;
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = healthy.clone();
    let check = ReadyCheck(Arc::new(move || {
        let ok = flag.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err("database: gone".to_owned())
            }
        })
    }));
    let state = admin_state(&f)
        .with_required_streams([StreamName::new("AUTH_EVENTS").unwrap()])
        .with_nats_optional()
        .with_ready_check(check);
    let app = router(state);
    // AUTH_EVENTS is missing, and then NATS is gone: still ready.
    let (status, v) = call(&app, request(Method::GET, "/readyz", None, None)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    f._nats.kill();
    let (status, v) = call(&app, request(Method::GET, "/readyz", None, None)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, v) = call(&app, request(Method::GET, "/readyz", None, None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database: gone"),
        "{v}"
    );
}

#[tokio::test]
async fn admin_validates_sequences_and_knows_unknown_ones() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-a", 1).await;
    let app = router(admin_state(&f));
    let bad = [
        "abc",
        "-1",
        "0",
        "..%2Fx",
        "%2E%2E%2Fx",
        "1.0",
        "+1",
        "01",
        "99999999999999999999999",
    ];
    for raw in bad {
        for (method, uri) in [
            (Method::GET, format!("/api/v1/events/dlq/{raw}")),
            (Method::DELETE, format!("/api/v1/events/dlq/{raw}")),
            (Method::POST, format!("/api/v1/events/dlq/{raw}/replay")),
        ] {
            let (status, v) = call(&app, request(method.clone(), &uri, Some(SECRET), None)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {v}");
            assert_eq!(error_code(&v), "invalid_sequence", "{method} {uri}");
        }
    }
    // A path that walks out of the DLQ API is a bad request too, not a 404 or a listing.
    for uri in [
        "/api/v1/events/dlq/../x",
        "/api/v1/events/dlq/1/2",
        "/api/v1/events/dlq/1/replay/x",
    ] {
        let (status, v) = call(&app, request(Method::GET, uri, Some(SECRET), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
    }
    let unknown = seq + 1000;
    for (method, uri) in [
        (Method::GET, format!("/api/v1/events/dlq/{unknown}")),
        (Method::DELETE, format!("/api/v1/events/dlq/{unknown}")),
        (Method::POST, format!("/api/v1/events/dlq/{unknown}/replay")),
    ] {
        let (status, v) = call(&app, request(method.clone(), &uri, Some(SECRET), None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {v}");
        assert_eq!(error_code(&v), "not_found");
    }
    // The known one is there, with its failure record.
    let (status, v) = call(
        &app,
        request(
            Method::GET,
            &format!("/api/v1/events/dlq/{seq}"),
            Some(SECRET),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["sequence"], json!(seq));
    assert_eq!(v["reason"], "permanent");
    assert_eq!(v["organization"], "org-a");

    // Query values are validated too.
    for q in [
        "limit=0",
        "limit=100000",
        "limit=abc",
        "after=-1",
        "reason=bored",
        "event_type=AUTH",
        "organization=a%20b",
        "failed_from=yesterday",
        "colour=red",
        "limit=1&limit=2",
    ] {
        let (status, v) = call(
            &app,
            request(
                Method::GET,
                &format!("/api/v1/events/dlq?{q}"),
                Some(SECRET),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {v}");
    }
    let (status, _) = call(
        &app,
        request(
            Method::POST,
            &format!("/api/v1/events/dlq/{seq}/replay?dry_run=maybe"),
            Some(SECRET),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn admin_refuses_oversized_and_malformed_bodies() {
    let f = fixture().await;
    let app = router(admin_state(&f));
    let big =
        json!({ "filter": {}, "max_count": 1, "pad": "x".repeat(events_admin::MAX_BODY_BYTES) });
    let (status, v) = call(
        &app,
        request(
            Method::POST,
            "/api/v1/events/dlq/replay",
            Some(SECRET),
            Some(big),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(error_code(&v), "payload_too_large");

    for body in [
        json!({ "filter": { "colour": "red" } }),
        json!({ "filter": { "event_type": "NOT A TYPE" } }),
        json!({ "max_count": -1 }),
        json!({ "unknown": true }),
    ] {
        let (status, v) = call(
            &app,
            request(
                Method::POST,
                "/api/v1/events/dlq/replay",
                Some(SECRET),
                Some(body.clone()),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    for n in [0, events_admin::MAX_REPLAY_BATCH + 1] {
        let (status, v) = call(
            &app,
            request(
                Method::POST,
                "/api/v1/events/dlq/replay",
                Some(SECRET),
                Some(json!({ "max_count": n })),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{n}");
        assert_eq!(error_code(&v), "invalid_max_count");
    }
    // Not JSON at all.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/events/dlq/replay")
        .header(header::AUTHORIZATION, format!("Bearer {SECRET}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("hello"))
        .unwrap();
    let (status, v) = call(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
}

#[tokio::test]
async fn admin_replay_puts_the_dead_letter_back_and_removes_it() {
    let f = fixture().await;
    let (seq, body) = write_dead_letter(&f.js, "org-a", 7).await;
    let app = router(admin_state(&f));

    // Listed first.
    let (status, v) = call(
        &app,
        request(
            Method::GET,
            "/api/v1/events/dlq?organization=org-a&limit=10",
            Some(SECRET),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["sequence"], json!(seq));
    assert_eq!(
        v["items"][0]["body"],
        String::from_utf8(body.to_vec()).unwrap()
    );
    assert_eq!(v["next_after"], Value::Null);

    // Dry run changes nothing.
    let (status, v) = call(
        &app,
        request(
            Method::POST,
            &format!("/api/v1/events/dlq/{seq}/replay?dry_run=true"),
            Some(SECRET),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "would_replay");

    let (status, v) = call(
        &app,
        request(
            Method::POST,
            &format!("/api/v1/events/dlq/{seq}/replay"),
            Some(SECRET),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "replayed");
    assert_eq!(v["stream"], "AUTH_EVENTS");
    let stored = v["sequence"].as_u64().expect("stream sequence");
    let auth = f.js.get_stream("AUTH_EVENTS").await.unwrap();
    let m = auth
        .get_raw_message(stored)
        .await
        .expect("replayed message");
    assert_eq!(m.payload, body, "byte-identical");
    assert_eq!(m.subject.as_str(), "auth.user.created");
    assert_eq!(
        m.headers
            .get(dlq::headers::REPLAYED_FROM)
            .map(|v| v.as_str().to_owned()),
        Some(seq.to_string())
    );
    let (status, _) = call(
        &app,
        request(
            Method::GET,
            &format!("/api/v1/events/dlq/{seq}"),
            Some(SECRET),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "dead letter removed");
}

#[tokio::test]
async fn admin_batch_replay_and_delete() {
    let f = fixture().await;
    let mut a = Vec::new();
    for i in 0..5 {
        a.push(write_dead_letter(&f.js, "org-a", i).await.0);
    }
    let (b, _) = write_dead_letter(&f.js, "org-b", 99).await;
    let app = router(admin_state(&f));

    let body = json!({ "filter": { "organization": "org-a" }, "max_count": 3 });
    let (status, v) = call(
        &app,
        request(
            Method::POST,
            "/api/v1/events/dlq/replay",
            Some(SECRET),
            Some(body),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["replayed"], 3);
    assert_eq!(v["capped"], true);
    let moved: Vec<u64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["dlq_sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(moved, a[..3]);
    let mut auth = f.js.get_stream("AUTH_EVENTS").await.unwrap();
    assert_eq!(auth.info().await.unwrap().state.messages, 3);

    let (status, v) = call(
        &app,
        request(
            Method::DELETE,
            &format!("/api/v1/events/dlq/{b}"),
            Some(SECRET),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["deleted"], json!(b));
    let (status, v) = call(
        &app,
        request(Method::GET, "/api/v1/events/dlq", Some(SECRET), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let left: Vec<u64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(left, a[3..]);
}

/// The value of one sample line (`name{labels} value`) in Prometheus text, 0 if absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let metric = series.split('{').next().unwrap_or("");
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse().expect("number"))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn admin_metrics_show_counters_moved_by_the_right_amounts() {
    let f = fixture().await;
    let handle = install_prometheus().expect("recorder");
    let app = router(admin_state(&f).with_prometheus(handle));
    let scrape = async || {
        let (status, text) = call_text(&app, request(Method::GET, "/metrics", None, None)).await;
        assert_eq!(status, StatusCode::OK);
        text
    };
    let before = scrape().await;
    // Library metrics through the facade, with labels no other test uses.
    let published = 7u64;
    let dead = 3u64;
    for _ in 0..published {
        metrics::counter!(events::metrics::EVENTS_PUBLISHED_TOTAL, "event_type" => "metrics.test.published", "status" => "ok").increment(1);
    }
    metrics::counter!(events::metrics::EVENTS_DEAD_LETTERED_TOTAL, "consumer" => "metrics-test", "reason" => "permanent").increment(dead);
    // Histograms render with buckets (the dashboard's histogram_quantile needs `_bucket`).
    let handled = [0.003, 0.2, 7.0];
    for secs in handled {
        metrics::histogram!(events::metrics::EVENT_HANDLER_DURATION_SECONDS, "consumer" => "metrics-test").record(secs);
    }
    // Admin activity: unmatched requests and DLQ deletes of an unknown sequence.
    let misses = 4;
    for _ in 0..misses {
        let (status, _) = call(&app, request(Method::GET, "/metrics-test/nope", None, None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let deletes = 2;
    for _ in 0..deletes {
        let (status, _) = call(
            &app,
            request(
                Method::DELETE,
                "/api/v1/events/dlq/424242",
                Some(SECRET),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let after = scrape().await;

    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let le = |bound: &str| {
        delta(
            "event_handler_duration_seconds_bucket",
            &[("consumer", "metrics-test"), ("le", bound)],
        )
    };
    let within = |b: f64| handled.iter().filter(|v| **v <= b).count() as f64;
    assert_eq!(le("0.005"), within(0.005), "{after}");
    assert_eq!(le("0.25"), within(0.25), "{after}");
    assert_eq!(le("+Inf"), handled.len() as f64, "{after}");
    assert_eq!(
        delta(
            "events_published_total",
            &[("event_type", "metrics.test.published"), ("status", "ok")]
        ),
        published as f64,
        "{after}"
    );
    assert_eq!(
        delta(
            "events_dead_lettered_total",
            &[("consumer", "metrics-test"), ("reason", "permanent")]
        ),
        dead as f64
    );
    assert_eq!(
        delta(
            "events_admin_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        misses as f64,
        "{after}"
    );
    assert!(
        delta(
            "events_admin_dlq_actions_total",
            &[("action", "delete"), ("outcome", "not_found")]
        ) >= deletes as f64,
        "{after}"
    );
    // Described metrics carry their help text; process metrics are there.
    assert!(after.contains("# HELP events_published_total"), "{after}");
    assert!(after.contains("process_resident_memory_bytes "), "{after}");
    assert!(after.contains("process_cpu_seconds_total "), "{after}");
}

#[tokio::test]
async fn admin_serve_answers_on_a_socket_and_shuts_down_gracefully() {
    let f = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(events_admin::serve_on(
        listener,
        admin_state(&f),
        shutdown.child_token(),
    ));

    let mut conn = timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    timeout(WAIT, conn.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"ok\""), "{response}");

    shutdown.cancel();
    timeout(WAIT, server)
        .await
        .expect("stops within bound")
        .unwrap()
        .expect("clean stop");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
