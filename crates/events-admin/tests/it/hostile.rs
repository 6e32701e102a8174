//! Issue #10 through the admin API: concurrent replays and deletes of one dead letter,
//! dead letters whose body was omitted, a dry run whose stream is gone, and a dead letter
//! whose header block is not UTF-8.

use async_nats::HeaderMap;
use axum::Router;
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use events::Event;
use events::dlq::{self, DeadLetterReason};
use events_testkit::{RawMessage, publish_raw};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::{SECRET, WAIT, admin_state, call, error_code, fixture, request, write_dead_letter};

/// Sends `n` copies of one request at once; returns every (status, body).
async fn call_concurrently(
    app: &Router,
    n: usize,
    method: Method,
    uri: &str,
) -> Vec<(StatusCode, Value)> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (app, method, uri) = (app.clone(), method.clone(), uri.to_owned());
        set.spawn(async move { call(&app, request(method, &uri, Some(SECRET), None)).await });
    }
    timeout(WAIT, set.join_all())
        .await
        .expect("every request answered within the bound")
}

async fn messages(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    let mut s = js.get_stream(stream).await.expect("stream");
    s.info().await.expect("info").state.messages
}

/// Stores a valid event of about `len` bytes on auth.user.created; returns (seq, body).
async fn store_big_original(js: &async_nats::jetstream::Context, len: usize) -> (u64, Bytes) {
    let ev = Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-a")
        .data(&json!({ "blob": "x".repeat(len) }))
        .build()
        .expect("valid event");
    let body = Bytes::from(ev.to_json_bytes());
    let ack = timeout(WAIT, async {
        js.publish("auth.user.created", body.clone())
            .await
            .expect("publish")
            .await
            .expect("ack")
    })
    .await
    .expect("ack within bound");
    (ack.sequence, body)
}

/// A dead letter whose body was omitted (CONTRACT.md §4), pointing at AUTH_EVENTS
/// `original_seq`; returns its sequence.
async fn write_omitted(js: &async_nats::jetstream::Context, original_seq: u64, len: usize) -> u64 {
    let mut h = HeaderMap::new();
    h.insert(dlq::headers::ORIGINAL_SUBJECT, "auth.user.created");
    h.insert(dlq::headers::ORIGINAL_STREAM, "AUTH_EVENTS");
    h.insert(
        dlq::headers::ORIGINAL_SEQUENCE,
        original_seq.to_string().as_str(),
    );
    h.insert(dlq::headers::CONSUMER, "catalog");
    h.insert(dlq::headers::DELIVERIES, "1");
    h.insert(dlq::headers::REASON, DeadLetterReason::Undecodable.as_str());
    h.insert(dlq::headers::BODY_OMITTED, len.to_string().as_str());
    let ack = timeout(WAIT, async {
        js.publish_with_headers("dlq.auth.user.created", h, Bytes::new())
            .await
            .expect("publish")
            .await
            .expect("ack")
    })
    .await
    .expect("ack within bound");
    ack.sequence
}

#[tokio::test]
async fn admin_concurrent_replays_store_one_copy_and_never_answer_5xx() {
    let f = fixture().await;
    let (seq, body) = write_dead_letter(&f.js, "org-a", 7).await;
    let app = super::router(admin_state(&f));
    let racers = 5;
    let answers = call_concurrently(
        &app,
        racers,
        Method::POST,
        &format!("/api/v1/events/dlq/{seq}/replay"),
    )
    .await;
    let status_of = |v: &Value| v["status"].as_str().unwrap_or("").to_owned();
    let replayed: Vec<&Value> = answers
        .iter()
        .filter(|(s, v)| *s == StatusCode::OK && status_of(v) == "replayed")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(replayed.len(), 1, "{answers:?}");
    for (status, v) in &answers {
        match (*status, status_of(v).as_str()) {
            (StatusCode::OK, "replayed") => {}
            (StatusCode::OK, "already_replayed") => {
                assert_eq!(v["sequence"], replayed[0]["sequence"], "{v}");
            }
            (StatusCode::NOT_FOUND, _) => assert_eq!(error_code(v), "not_found"),
            other => panic!("unexpected answer {other:?}: {v}"),
        }
    }
    assert_eq!(messages(&f.js, "AUTH_EVENTS").await, 1, "one copy");
    let stored = replayed[0]["sequence"].as_u64().expect("sequence");
    let m =
        f.js.get_stream("AUTH_EVENTS")
            .await
            .unwrap()
            .get_raw_message(stored)
            .await
            .expect("stored copy");
    assert_eq!(m.payload, body);
}

#[tokio::test]
async fn admin_concurrent_deletes_give_one_200_and_404s() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-a", 7).await;
    let app = super::router(admin_state(&f));
    let racers = 5;
    let answers = call_concurrently(
        &app,
        racers,
        Method::DELETE,
        &format!("/api/v1/events/dlq/{seq}"),
    )
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{answers:?}");
    for (status, v) in answers.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::NOT_FOUND, "{v}");
        assert_eq!(error_code(v), "not_found");
    }
    assert_eq!(messages(&f.js, dlq::DLQ_STREAM).await, 0);
}

#[tokio::test]
async fn admin_replays_an_omitted_body_from_the_original_or_says_it_is_gone() {
    let f = fixture().await;
    let (original, body) = store_big_original(&f.js, 600 * 1024).await;
    let seq = write_omitted(&f.js, original, body.len()).await;
    let app = super::router(admin_state(&f));
    let replay = |dry: bool| {
        let q = if dry { "?dry_run=true" } else { "" };
        request(
            Method::POST,
            &format!("/api/v1/events/dlq/{seq}/replay{q}"),
            Some(SECRET),
            None,
        )
    };
    let (status, v) = call(&app, replay(true)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "would_replay");
    assert_eq!(v["stream"], "AUTH_EVENTS");
    assert_eq!(v["original_body"], true);

    let (status, v) = call(&app, replay(false)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "replayed");
    let stored = v["sequence"].as_u64().expect("sequence");
    let auth = f.js.get_stream("AUTH_EVENTS").await.unwrap();
    let m = auth.get_raw_message(stored).await.expect("stored copy");
    assert_eq!(m.payload, body, "the original bytes");

    // Another one whose original retention removed: 410, nothing published.
    let seq = write_omitted(&f.js, original, body.len()).await;
    assert!(auth.delete_message(original).await.expect("delete"));
    let before = messages(&f.js, "AUTH_EVENTS").await;
    for dry in [true, false] {
        let q = if dry { "?dry_run=true" } else { "" };
        let (status, v) = call(
            &app,
            request(
                Method::POST,
                &format!("/api/v1/events/dlq/{seq}/replay{q}"),
                Some(SECRET),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::GONE, "{v}");
        assert_eq!(error_code(&v), "original_gone");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("gone"),
            "{v}"
        );
    }
    assert_eq!(messages(&f.js, "AUTH_EVENTS").await, before);
}

#[tokio::test]
async fn admin_dry_run_says_when_no_stream_stores_the_subject() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-a", 7).await;
    assert!(
        f.js.delete_stream("AUTH_EVENTS")
            .await
            .expect("delete")
            .success
    );
    let app = super::router(admin_state(&f));
    for q in ["?dry_run=true", ""] {
        let (status, v) = call(
            &app,
            request(
                Method::POST,
                &format!("/api/v1/events/dlq/{seq}/replay{q}"),
                Some(SECRET),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{v}");
        assert_eq!(error_code(&v), "no_stream_for_subject");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("auth.user.created"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn admin_lists_and_shows_a_dead_letter_with_unparsable_headers() {
    let f = fixture().await;
    let (first, _) = write_dead_letter(&f.js, "org-a", 1).await;
    let raw = RawMessage::with_headers("dlq.auth.user.created", &[b"X-Bad: \x80\xff"], "raw");
    publish_raw(f.port, &[raw]).await;
    let mut s = f.js.get_stream(dlq::DLQ_STREAM).await.unwrap();
    let raw_seq = s.info().await.unwrap().state.last_sequence;
    let (last, _) = write_dead_letter(&f.js, "org-b", 2).await;
    let app = super::router(admin_state(&f));

    let (status, v) = call(
        &app,
        request(Method::GET, "/api/v1/events/dlq", Some(SECRET), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let seqs: Vec<u64> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["sequence"].as_u64().expect("sequence"))
        .collect();
    assert_eq!(seqs, vec![first, raw_seq, last]);
    let listed = &v["items"][1];
    assert_eq!(listed["body"], "raw");
    let sentinel = async_nats::connection::UNPARSED_HEADERS_BASE64;
    assert!(listed["headers"][sentinel][0].is_string(), "{listed}");

    let (status, shown) = call(
        &app,
        request(
            Method::GET,
            &format!("/api/v1/events/dlq/{raw_seq}"),
            Some(SECRET),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["headers"], listed["headers"]);
    assert_eq!(shown["body"], "raw");
}
