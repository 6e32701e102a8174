//! `dlq list | show | replay | purge` on dead letters the test writes with the
//! CONTRACT.md §4 headers.

use async_nats::HeaderMap;
use events::Event;
use events::dlq::{self, headers};
use events_testkit::{RawMessage, publish_raw};

use crate::{
    NatsServer, assert_code, assert_unreachable_fails, eventctl, json, server_with_topology,
    stderr, stdout,
};

/// One dead letter to write.
struct Letter {
    event_type: &'static str,
    org: &'static str,
    reason: &'static str,
    consumer: &'static str,
    deliveries: u64,
    original_sequence: u64,
}

/// Writes the dead letters; returns their bodies (index = DLQ sequence - 1).
async fn write_letters(nats: &NatsServer, letters: &[Letter]) -> Vec<Vec<u8>> {
    let js = nats.jetstream().await;
    let mut bodies = Vec::new();
    for (i, l) in letters.iter().enumerate() {
        let event = Event::builder(l.event_type)
            .source("auth-service")
            .organization(l.org)
            .data(&serde_json::json!({ "i": i }))
            .build()
            .unwrap();
        let body = event.to_json_bytes();
        let mut h = HeaderMap::new();
        h.insert("Content-Type", "application/cloudevents+json");
        h.insert(
            "Nats-Msg-Id",
            dlq::dead_letter_msg_id("AUTH_EVENTS", l.original_sequence, l.consumer).as_str(),
        );
        h.insert(headers::ORIGINAL_SUBJECT, l.event_type);
        h.insert(headers::ORIGINAL_STREAM, "AUTH_EVENTS");
        h.insert(
            headers::ORIGINAL_SEQUENCE,
            l.original_sequence.to_string().as_str(),
        );
        h.insert(headers::CONSUMER, l.consumer);
        h.insert(headers::DELIVERIES, l.deliveries.to_string().as_str());
        h.insert(headers::REASON, l.reason);
        h.insert(headers::ERROR, "boom: handler failed");
        h.insert(headers::FAILED_AT, "2026-01-01T00:00:00Z");
        let ack = js
            .publish_with_headers(format!("dlq.{}", l.event_type), h, body.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.stream, "DLQ_EVENTS");
        assert_eq!(ack.sequence, i as u64 + 1);
        bodies.push(body);
    }
    bodies
}

fn letters() -> Vec<Letter> {
    vec![
        Letter {
            event_type: "auth.user.created",
            org: "org-a",
            reason: "permanent",
            consumer: "catalog__auth_user_any",
            deliveries: 1,
            original_sequence: 10,
        },
        Letter {
            event_type: "auth.user.created",
            org: "org-b",
            reason: "permanent",
            consumer: "catalog__auth_user_any",
            deliveries: 1,
            original_sequence: 11,
        },
        Letter {
            event_type: "auth.user.deleted",
            org: "org-a",
            reason: "max_deliveries",
            consumer: "billing__auth_all",
            deliveries: 5,
            original_sequence: 12,
        },
        Letter {
            event_type: "auth.user.created",
            org: "org-c",
            reason: "invalid",
            consumer: "catalog__auth_user_any",
            deliveries: 1,
            original_sequence: 13,
        },
    ]
}

fn sequences(v: &serde_json::Value) -> Vec<u64> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sequence"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn list_and_show_with_filters() {
    let nats = server_with_topology().await;
    let url = nats.url();
    let ls = letters();
    let bodies = write_letters(&nats, &ls).await;
    let all: Vec<u64> = (1..=ls.len() as u64).collect();

    let v = json(&eventctl(&url, &["dlq", "list", "--json"]).await);
    assert_eq!(sequences(&v), all);
    assert!(v["next_after"].is_null(), "{v}");

    let expect = |f: &dyn Fn(&Letter) -> bool| -> Vec<u64> {
        ls.iter()
            .enumerate()
            .filter(|(_, l)| f(l))
            .map(|(i, _)| i as u64 + 1)
            .collect()
    };
    let v = json(&eventctl(&url, &["dlq", "list", "--reason", "permanent", "--json"]).await);
    assert_eq!(sequences(&v), expect(&|l| l.reason == "permanent"));
    let v = json(
        &eventctl(
            &url,
            &["dlq", "list", "--type", "auth.user.deleted", "--json"],
        )
        .await,
    );
    assert_eq!(
        sequences(&v),
        expect(&|l| l.event_type == "auth.user.deleted")
    );
    let v = json(
        &eventctl(
            &url,
            &[
                "dlq",
                "list",
                "--org",
                "org-a",
                "--consumer",
                "catalog__auth_user_any",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(
        sequences(&v),
        expect(&|l| l.org == "org-a" && l.consumer == "catalog__auth_user_any")
    );
    let v = json(
        &eventctl(
            &url,
            &[
                "dlq",
                "list",
                "--stream",
                "AUTH_EVENTS",
                "--since",
                "-5m",
                "--until",
                "now",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(sequences(&v), all);
    let v = json(&eventctl(&url, &["dlq", "list", "--until", "-1h", "--json"]).await);
    assert!(sequences(&v).is_empty(), "{v}");

    // Pages: --limit and the --after cursor.
    let v = json(&eventctl(&url, &["dlq", "list", "--limit", "3", "--json"]).await);
    assert_eq!(sequences(&v), all[..3]);
    let next = v["next_after"].as_u64().unwrap();
    let v = json(
        &eventctl(
            &url,
            &["dlq", "list", "--after", &next.to_string(), "--json"],
        )
        .await,
    );
    assert_eq!(sequences(&v), all[3..]);

    // Human table.
    let out = eventctl(&url, &["dlq", "list", "--limit", "3"]).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("SEQ"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("boom: handler failed"))
            .count(),
        3,
        "{text}"
    );
    assert!(
        text.contains(&format!("more: eventctl dlq list --after {next}")),
        "{text}"
    );

    // show: JSON fields and the body byte for byte.
    let v = json(&eventctl(&url, &["dlq", "show", "3", "--json"]).await);
    let l = &ls[2];
    assert_eq!(v["sequence"], 3);
    assert_eq!(v["original_subject"], l.event_type);
    assert_eq!(v["original_sequence"], l.original_sequence);
    assert_eq!(v["reason"], l.reason);
    assert_eq!(v["consumer"], l.consumer);
    assert_eq!(v["deliveries"], l.deliveries);
    assert_eq!(v["organization"], l.org);
    assert_eq!(v["body"].as_str().unwrap().as_bytes(), &bodies[2][..]);

    let out = eventctl(&url, &["dlq", "show", "3"]).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("Reason:       max_deliveries"), "{text}");
    assert!(
        text.contains(&format!("Deliveries:   {}", l.deliveries)),
        "{text}"
    );
    assert!(text.contains("Dlq-Consumer: billing__auth_all"), "{text}");

    let out = eventctl(&url, &["dlq", "show", "99"]).await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("no dead letter with sequence 99"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn replay_moves_back_and_purge_needs_yes() {
    let nats = server_with_topology().await;
    let url = nats.url();
    let ls = letters();
    let bodies = write_letters(&nats, &ls).await;
    let js = nats.jetstream().await;

    // Dry run: reported, nothing moved.
    let v = json(&eventctl(&url, &["dlq", "replay", "1", "--dry-run", "--json"]).await);
    assert_eq!(v["replayed"], 1);
    assert_eq!(v["items"][0]["status"], "would_replay");
    assert_eq!(
        json(&eventctl(&url, &["dlq", "list", "--json"]).await)["items"]
            .as_array()
            .unwrap()
            .len(),
        ls.len()
    );

    // Real replay by sequence: back in AUTH_EVENTS byte for byte, gone from the DLQ.
    let out = eventctl(&url, &["dlq", "replay", "1"]).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("replayed to AUTH_EVENTS seq 1"), "{text}");
    assert!(text.contains("replayed 1, failed 0"), "{text}");
    let stored = js
        .get_stream("AUTH_EVENTS")
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .unwrap();
    assert_eq!(stored.subject.as_str(), ls[0].event_type);
    assert_eq!(&stored.payload[..], &bodies[0][..]);
    assert_eq!(
        stored
            .headers
            .get(headers::REPLAYED_FROM)
            .map(|v| v.as_str()),
        Some("1")
    );

    // A sequence that is gone: exit 1, reported as not found.
    let out = eventctl(&url, &["dlq", "replay", "1", "--json"]).await;
    assert_code(&out, 1);
    let v = json(&out);
    assert_eq!(v["failed"], 1);
    assert_eq!(v["items"][0]["status"], "not_found");

    // By filter.
    let v = json(
        &eventctl(
            &url,
            &["dlq", "replay", "--type", "auth.user.deleted", "--json"],
        )
        .await,
    );
    assert_eq!(v["replayed"], 1);
    assert_eq!(v["items"][0]["dlq_sequence"], 3);
    assert_eq!(v["items"][0]["stream"], "AUTH_EVENTS");

    // Sequences and filters together, or nothing selected: usage errors.
    assert_code(
        &eventctl(&url, &["dlq", "replay", "2", "--reason", "permanent"]).await,
        2,
    );
    assert_code(&eventctl(&url, &["dlq", "replay"]).await, 2);

    // Purge refuses without --yes and deletes nothing.
    let out = eventctl(&url, &["dlq", "purge", "--reason", "permanent"]).await;
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("add --yes to confirm"),
        "{}",
        stderr(&out)
    );
    let out = eventctl(&url, &["dlq", "purge", "--all"]).await;
    assert_code(&out, 2);
    let left: Vec<u64> = vec![2, 4];
    assert_eq!(
        sequences(&json(&eventctl(&url, &["dlq", "list", "--json"]).await)),
        left
    );

    // With --yes: only the filtered ones.
    let permanent_left = left
        .iter()
        .filter(|s| ls[**s as usize - 1].reason == "permanent")
        .count();
    let v = json(
        &eventctl(
            &url,
            &["dlq", "purge", "--reason", "permanent", "--yes", "--json"],
        )
        .await,
    );
    assert_eq!(v["purged"], permanent_left);
    let out = eventctl(&url, &["dlq", "purge", "--all", "--yes"]).await;
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!("purged {} dead letter(s)", left.len() - permanent_left)
    );
    let out = eventctl(&url, &["dlq", "list"]).await;
    assert_eq!(stdout(&out).trim(), "no dead letters match");
}

#[tokio::test]
async fn no_dlq_stream_bad_flag_unreachable() {
    let nats = NatsServer::start().await;
    let out = eventctl(&nats.url(), &["dlq", "list"]).await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("dead-letter stream DLQ_EVENTS not found"),
        "{}",
        stderr(&out)
    );
    for args in [
        &["dlq", "list", "--reason", "tired"][..],
        &["dlq", "show", "0"],
        &["dlq", "show", "abc"],
        &["dlq", "list", "--limit", "0"],
        &["dlq", "list", "--since", "last week"],
        &["dlq", "list", "--since", "-1h", "--until", "-2h"],
    ] {
        assert_code(&eventctl(&nats.url(), args).await, 2);
    }
    assert_unreachable_fails(&["dlq", "list"]).await;
}

/// Item 6 of issue #10: a sequence that names no dead letter is said to be missing, not
/// "kept in the dead-letter stream".
#[tokio::test]
async fn replay_of_a_missing_sequence_says_there_is_none() {
    let nats = server_with_topology().await;
    let ls = letters();
    write_letters(&nats, &ls).await;
    let missing = ls.len() as u64 + 10;
    let out = eventctl(&nats.url(), &["dlq", "replay", &missing.to_string()]).await;
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("no dead letter with sequence {missing}")),
        "{err}"
    );
    assert!(!err.contains("kept"), "{err}");

    // With one that exists: it moves, and only the missing one is named.
    let out = eventctl(&nats.url(), &["dlq", "replay", "1", &missing.to_string()]).await;
    assert_code(&out, 1);
    assert!(
        stdout(&out).contains("replayed 1, failed 1"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("no dead letter with sequence {missing}")),
        "{err}"
    );
    assert!(!err.contains("kept"), "{err}");
}

/// Writes a dead letter whose body was omitted, pointing at AUTH_EVENTS `original_seq`.
async fn write_omitted(nats: &NatsServer, original_seq: u64, len: usize) -> u64 {
    let js = nats.jetstream().await;
    let mut h = HeaderMap::new();
    h.insert(headers::ORIGINAL_SUBJECT, "auth.user.created");
    h.insert(headers::ORIGINAL_STREAM, "AUTH_EVENTS");
    h.insert(
        headers::ORIGINAL_SEQUENCE,
        original_seq.to_string().as_str(),
    );
    h.insert(headers::REASON, "undecodable");
    h.insert(headers::BODY_OMITTED, len.to_string().as_str());
    js.publish_with_headers("dlq.auth.user.created", h, Vec::new().into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

/// Items 2 and 10 of issue #10: an omitted body is replayed from the original; when the
/// original or the stream is gone, replay and its dry run say so and exit 1.
#[tokio::test]
async fn replay_reads_omitted_bodies_and_says_what_is_gone() {
    let nats = server_with_topology().await;
    let url = nats.url();
    let js = nats.jetstream().await;
    let body = Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-a")
        .data(&serde_json::json!({ "blob": "x".repeat(600 * 1024) }))
        .build()
        .unwrap()
        .to_json_bytes();
    let original = js
        .publish("auth.user.created", body.clone().into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let seq = write_omitted(&nats, original, body.len()).await.to_string();

    let out = eventctl(&url, &["dlq", "replay", &seq, "--dry-run"]).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("would replay to AUTH_EVENTS (body read from the original)"),
        "{text}"
    );
    let v = json(&eventctl(&url, &["dlq", "replay", &seq, "--json"]).await);
    assert_eq!(v["items"][0]["status"], "replayed", "{v}");
    assert_eq!(v["items"][0]["original_body"], true);
    let stored = v["items"][0]["sequence"].as_u64().unwrap();
    let auth = js.get_stream("AUTH_EVENTS").await.unwrap();
    let copy = auth.get_raw_message(stored).await.unwrap();
    assert_eq!(&copy.payload[..], &body[..], "the original bytes");

    // The original is gone: exit 1, the message says so, the dead letter stays.
    let seq = write_omitted(&nats, original, body.len()).await.to_string();
    assert!(auth.delete_message(original).await.unwrap());
    for dry in [true, false] {
        let mut args = vec!["dlq", "replay", seq.as_str()];
        if dry {
            args.push("--dry-run");
        }
        let out = eventctl(&url, &args).await;
        assert_code(&out, 1);
        let text = stdout(&out);
        assert!(text.contains("is gone"), "{text}");
        assert!(stderr(&out).contains("kept in the dead-letter stream"));
    }

    // No stream stores the subject any more: the dry run of a whole dead letter says so.
    assert!(js.delete_stream("AUTH_EVENTS").await.unwrap().success);
    let mut h = HeaderMap::new();
    h.insert(headers::ORIGINAL_SUBJECT, "auth.user.created");
    let whole = js
        .publish_with_headers("dlq.auth.user.created", h, body.clone().into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
        .to_string();
    let out = eventctl(&url, &["dlq", "replay", &whole, "--dry-run"]).await;
    assert_code(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("no stream stores subject auth.user.created"),
        "{text}"
    );
    assert!(!text.contains("would replay to"), "{text}");
    assert!(text.contains("would replay 0, failed 1"), "{text}");
}

/// Item 1 of issue #10: a message in DLQ_EVENTS whose header block is not UTF-8 shows in
/// `dlq list` beside the real dead letters, and `dlq show` reads it.
#[tokio::test]
async fn list_shows_a_dead_letter_with_unparsable_headers() {
    let nats = server_with_topology().await;
    let url = nats.url();
    let ls = letters();
    write_letters(&nats, &ls).await;
    let raw = RawMessage::with_headers("dlq.auth.user.created", &[b"X-Bad: \x80\xff"], "raw");
    publish_raw(nats.port(), &[raw]).await;
    let raw_seq = ls.len() as u64 + 1;

    let out = eventctl(&url, &["dlq", "list", "--json"]).await;
    assert_code(&out, 0);
    let all: Vec<u64> = (1..=raw_seq).collect();
    assert_eq!(sequences(&json(&out)), all);
    let out = eventctl(&url, &["dlq", "list"]).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with(&raw_seq.to_string())),
        "{}",
        stdout(&out)
    );
    let out = eventctl(&url, &["dlq", "show", &raw_seq.to_string()]).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("Nats-Unparsed-Headers-Base64"), "{text}");
    assert!(text.contains("raw"), "{text}");
}
