//! Admin roles, the audit trail and the per-token rate limit (issue #14), through HTTP
//! against a real server.

use axum::http::{Method, StatusCode, header};
use events_admin::{AUDIT_STREAM, AdminState, AdminToken, RateLimit, Role, router};
use serde_json::{Value, json};

use super::{Fixture, call, error_code, fixture, request, write_dead_letter};

const VIEWER: &str = "viewer-secret-0123456789";
const OPERATOR: &str = "operator-secret-0123456789";
const ADMIN: &str = "admin-secret-0123456789";

fn token(id: &str, secret: &str, role: Role) -> AdminToken {
    let entry = format!("{id}:{role}:{}", events_admin::hash_token(secret));
    AdminToken::parse(&entry).expect("token entry")
}

fn state(f: &Fixture) -> AdminState {
    AdminState::new(f.client.clone()).with_tokens([
        token("ci", VIEWER, Role::Viewer),
        token("oncall", OPERATOR, Role::Operator),
        token("ops", ADMIN, Role::Admin),
    ])
}

async fn audit(app: &axum::Router) -> Vec<Value> {
    let (status, v) = call(
        app,
        request(Method::GET, "/api/v1/audit", Some(VIEWER), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn a_viewer_reads_but_cannot_replay() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-a", 1).await;
    let app = router(state(&f));
    let (status, v) = call(
        &app,
        request(Method::GET, "/api/v1/events/dlq", Some(VIEWER), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let uri = format!("/api/v1/events/dlq/{seq}");
    let (status, _) = call(&app, request(Method::GET, &uri, Some(VIEWER), None)).await;
    assert_eq!(status, StatusCode::OK);
    for (method, uri, body) in [
        (Method::POST, format!("{uri}/replay"), None),
        (
            Method::POST,
            "/api/v1/events/dlq/replay".into(),
            Some(json!({})),
        ),
        (Method::DELETE, uri.clone(), None),
        (
            Method::POST,
            "/api/v1/events/dlq/purge".into(),
            Some(json!({ "all": true })),
        ),
    ] {
        let (status, v) = call(&app, request(method.clone(), &uri, Some(VIEWER), body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {v}");
        assert_eq!(error_code(&v), "forbidden");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("role viewer"),
            "{v}"
        );
    }
    let dl = events::dlq::DeadLetters::new(f.js.clone());
    assert!(
        dl.get(seq).await.unwrap().is_some(),
        "the dead letter was touched"
    );
    assert!(
        audit(&app).await.is_empty(),
        "a refused request was audited"
    );
}

#[tokio::test]
async fn an_operator_replays_but_cannot_purge_or_delete_and_the_replay_is_audited() {
    let f = fixture().await;
    let (first, _) = write_dead_letter(&f.js, "org-a", 1).await;
    let (second, _) = write_dead_letter(&f.js, "org-a", 2).await;
    let app = router(state(&f));
    let purge = request(
        Method::POST,
        "/api/v1/events/dlq/purge",
        Some(OPERATOR),
        Some(json!({ "all": true })),
    );
    let (status, v) = call(&app, purge).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs role admin"),
        "{v}"
    );
    let delete = request(
        Method::DELETE,
        &format!("/api/v1/events/dlq/{second}"),
        Some(OPERATOR),
        None,
    );
    assert_eq!(call(&app, delete).await.0, StatusCode::FORBIDDEN);
    let replay = format!("/api/v1/events/dlq/{first}/replay");
    let (status, v) = call(&app, request(Method::POST, &replay, Some(OPERATOR), None)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let items = audit(&app).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let r = &items[0];
    assert_eq!(
        (r["token_id"].as_str(), r["role"].as_str()),
        (Some("oncall"), Some("operator"))
    );
    assert_eq!(r["action"], "replay");
    assert_eq!(r["target"], format!("dlq/{first}"));
    assert_eq!(
        (r["count"].as_u64(), r["outcome"].as_str()),
        (Some(1), Some("ok"))
    );
    assert_eq!(r["dry_run"], false);
}

#[tokio::test]
async fn an_admin_deletes_and_purges_and_each_is_audited() {
    let f = fixture().await;
    let mut seqs = Vec::new();
    for n in 1..=3 {
        seqs.push(write_dead_letter(&f.js, "org-a", n).await.0);
    }
    let app = router(state(&f));
    let delete = request(
        Method::DELETE,
        &format!("/api/v1/events/dlq/{}", seqs[0]),
        Some(ADMIN),
        None,
    );
    let (status, v) = call(&app, delete).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // An empty filter alone does not purge everything.
    let empty = request(
        Method::POST,
        "/api/v1/events/dlq/purge",
        Some(ADMIN),
        Some(json!({})),
    );
    assert_eq!(call(&app, empty).await.0, StatusCode::BAD_REQUEST);
    let purge = request(
        Method::POST,
        "/api/v1/events/dlq/purge",
        Some(ADMIN),
        Some(json!({ "all": true })),
    );
    let (status, v) = call(&app, purge).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let left = (seqs.len() - 1) as u64;
    assert_eq!(v["purged"].as_u64(), Some(left), "{v}");
    let items = audit(&app).await;
    let seen: Vec<(String, u64, String)> = items
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["count"].as_u64().unwrap(),
                r["token_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("delete".into(), 1, "ops".into()),
            ("purge".into(), left, "ops".into())
        ]
    );
}

#[tokio::test]
async fn mutating_requests_over_the_rate_limit_get_429_with_retry_after() {
    let f = fixture().await;
    let limit = RateLimit {
        burst: 2,
        per_minute: 1,
    };
    let app = router(state(&f).with_rate_limit(limit));
    let dry_run = || {
        request(
            Method::POST,
            "/api/v1/events/dlq/replay",
            Some(OPERATOR),
            Some(json!({ "dry_run": true })),
        )
    };
    for _ in 0..limit.burst {
        let (status, v) = call(&app, dry_run()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let resp = tower::ServiceExt::oneshot(app.clone(), dry_run())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // One request a minute refills within 60 s.
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Reads are not limited, and another token has its own bucket.
    let (status, _) = call(
        &app,
        request(Method::GET, "/api/v1/events/dlq", Some(OPERATOR), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let other = request(
        Method::POST,
        "/api/v1/events/dlq/replay",
        Some(ADMIN),
        Some(json!({ "dry_run": true })),
    );
    assert_eq!(call(&app, other).await.0, StatusCode::OK);
}

#[tokio::test]
async fn without_the_audit_trail_nothing_is_changed() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-a", 1).await;
    f.js.delete_stream(AUDIT_STREAM).await.unwrap();
    let app = router(state(&f));
    for (method, uri) in [
        (Method::POST, format!("/api/v1/events/dlq/{seq}/replay")),
        (Method::DELETE, format!("/api/v1/events/dlq/{seq}")),
    ] {
        let (status, v) = call(&app, request(method.clone(), &uri, Some(ADMIN), None)).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}: {v}"
        );
        assert_eq!(error_code(&v), "audit_unavailable");
    }
    let dl = events::dlq::DeadLetters::new(f.js.clone());
    assert!(
        dl.get(seq).await.unwrap().is_some(),
        "the dead letter was touched"
    );
    // Reads need no audit.
    let (status, _) = call(
        &app,
        request(Method::GET, "/api/v1/events/dlq", Some(VIEWER), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}
