//! Issue #16: the binary, with its default configuration (the repository's schemas,
//! unknown types refused), dead-letters an event that breaks its contract, or has no
//! contract, as `invalid` on its first delivery, and its handler never sees it.

use super::*;

/// An `auth.user.created` as a producer without the contract would publish it: a plain
/// JetStream publish of the structured body, nothing validated.
async fn publish_unchecked(js: &jetstream::Context, event: &Event) -> u64 {
    let enc = event.encode();
    let ack = js
        .publish_with_headers(enc.subject, enc.headers, enc.payload)
        .await
        .unwrap();
    timeout(BOUND, ack).await.unwrap().unwrap().sequence
}

fn user_created(version: &str, id: &str, email: Option<&str>) -> Event {
    let mut data = json!({"user_id": id, "display_name": "Dee", "roles": [], "revision": 1});
    if let Some(email) = email {
        data["email"] = json!(email);
    }
    Event::builder("auth.user.created")
        .source("nats-py")
        .organization(ORG)
        .schema_version(version)
        .subject(id)
        .data(&data)
        .build()
        .unwrap()
}

#[tokio::test]
async fn binary_dead_letters_events_breaking_or_lacking_their_contract_as_invalid() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    apply_topology(&js).await;
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let mut child = spawn_binary(&nats, admin, &dir.path().join("projection.json"));

    const DEE: &str = "0193a1f2-0000-7000-8000-00000000d001";
    const EVE: &str = "0193a1f2-0000-7000-8000-00000000e002";
    let no_email = user_created("1.0", DEE, None);
    let unknown_major = user_created("2.0", DEE, Some("dee@e2e.example"));
    let valid = user_created("1.0", EVE, Some("eve@e2e.example"));
    let no_email_seq = publish_unchecked(&js, &no_email).await;
    let unknown_seq = publish_unchecked(&js, &unknown_major).await;
    publish_unchecked(&js, &valid).await;

    // The valid one reaches the projection; the two others never do.
    wait_for_body(admin, |v| v["users"][0]["user_id"] == EVE).await;
    for (event, seq, error) in [
        (
            &no_email,
            no_email_seq,
            "auth.user.created 1.0 is invalid at /email: required",
        ),
        (
            &unknown_major,
            unknown_seq,
            "no schema for auth.user.created 2.0",
        ),
    ] {
        let dl = wait_for_dead_letter(&js, event.id()).await;
        assert_eq!(dl.reason, Some(DeadLetterReason::Invalid));
        assert_eq!(
            dl.deliveries,
            Some(1),
            "dead-lettered on its first delivery"
        );
        assert_eq!(dl.original_sequence, Some(seq));
        let text = dl.error.unwrap_or_default();
        assert!(text.contains(error), "{text}");
    }
    let (_, body) = http_get(admin, &format!("/catalogs/{ORG}")).await.unwrap();
    let users: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(users["users"].as_array().map(Vec::len), Some(1), "{users}");
    sigterm_and_wait(&mut child).await;
}
