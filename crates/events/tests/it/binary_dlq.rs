//! Integration test: dead letters of binary-mode events (the Go CloudEvents SDK's default)
//! are readable by the DLQ tools: `event_id`, `organization` and `event_type` come from the
//! `ce-` headers, and the organization filter (shared by list, replay and purge) finds them.

use crate::subscriber::support::*;
use events::OrganizationId;
use events::dlq::{DeadLetterFilter, DeadLetterReason, DeadLetters, PageRequest};

/// A binary-mode message as the Go SDK sends it: attributes in `ce-` headers, values
/// unencoded, `datacontenttype` as `Content-Type`, the body is `data`. Without
/// `schemaversion` (`None`), as the SDK sends it unless told otherwise.
fn go_sdk_message(id: &str, org_headers: &[(&str, &str)], schema: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "go-service"),
        ("ce-type", SUBJECT),
        ("ce-time", "2026-05-01T10:00:00.123456789Z"),
        ("Content-Type", "application/json"),
    ]
    .iter()
    .chain(org_headers)
    .chain(schema.map(|s| ("ce-schemaversion", s)).iter())
    {
        h.append(*k, *v);
    }
    h
}

#[tokio::test]
async fn binary_mode_dead_letters_are_listed_with_their_attributes() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let refuse = handler_fn(|_event: Event, _ctx: DeliveryContext| async {
        Err::<(), _>(HandlerError::permanent("refused by the test"))
    });
    let sub = start(&js, "binary-dlq", fast_config(), refuse).await;

    const ORG: &str = "org-7";
    // (id, headers, expected reason): one the handler refuses, one the SDK's default
    // (no schemaversion) that the consumer refuses as invalid, one whose tenant is ambiguous,
    // and a structured event of another tenant.
    let refused = "0b7d6c1e-5d1a-4a57-9d53-2f6a0e1c0001";
    let no_schema = "0b7d6c1e-5d1a-4a57-9d53-2f6a0e1c0002";
    let ambiguous = "0b7d6c1e-5d1a-4a57-9d53-2f6a0e1c0003";
    let org = [("ce-organizationid", ORG)];
    let two_orgs = [("ce-organizationid", ORG), ("CE-OrganizationId", "org-1")];
    let body = br#"{"user_id":"u-1"}"#;
    let mine = [
        (
            refused,
            go_sdk_message(refused, &org, Some("1.0")),
            DeadLetterReason::Permanent,
        ),
        (
            no_schema,
            go_sdk_message(no_schema, &org, None),
            DeadLetterReason::Invalid,
        ),
    ];
    for (_, h, _) in &mine {
        publish_raw(&js, Some(h.clone()), body).await;
    }
    publish_raw(
        &js,
        Some(go_sdk_message(ambiguous, &two_orgs, Some("1.0"))),
        body,
    )
    .await;
    let other = event(0); // org-1, structured mode
    let enc = other.encode();
    js.publish_with_headers(enc.subject, enc.headers, enc.payload)
        .await
        .unwrap()
        .await
        .unwrap();
    let published = stream_len(&js, STREAM).await;
    wait_for("every message dead-lettered", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == published
    })
    .await;
    sub.stop().await;

    let filter = DeadLetterFilter::new().organization(OrganizationId::new(ORG).unwrap());
    let page = DeadLetters::new(js.clone())
        .list(&filter, PageRequest::first(50))
        .await
        .unwrap();
    let mut got: Vec<_> = page.items.iter().collect();
    got.sort_by_key(|dl| dl.event_id.clone());
    assert_eq!(got.len(), mine.len(), "{:#?}", page.items);
    for (dl, (id, _, reason)) in got.iter().zip(&mine) {
        assert_eq!(dl.event_id.as_deref(), Some(*id));
        assert_eq!(dl.organization.as_deref(), Some(ORG));
        assert_eq!(dl.event_type.as_deref(), Some(SUBJECT));
        assert_eq!(dl.reason, Some(*reason), "{id}");
    }
    // The ambiguous one was refused as invalid and belongs to neither tenant.
    let all = DeadLetters::new(js.clone())
        .list(&DeadLetterFilter::new(), PageRequest::first(50))
        .await
        .unwrap();
    let amb = all
        .items
        .iter()
        .find(|dl| dl.event_id.as_deref() == Some(ambiguous))
        .expect("the ambiguous event is dead-lettered");
    assert_eq!(amb.reason, Some(DeadLetterReason::Invalid));
    assert_eq!(amb.organization, None);
}
