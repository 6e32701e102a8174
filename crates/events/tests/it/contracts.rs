//! Integration tests: event contracts on both ends (issue #16). A publisher with a schema
//! set refuses invalid data and stamps `dataschema`; a subscriber with one dead-letters
//! invalid data as `invalid` on its first delivery without running the handler.

use std::path::Path;

use events::publisher::{PublishError, PublishOutcome, Publisher, PublisherConfig};
use events::schema::{SchemaError, SchemaSet, UnknownSchema};
use events_testkit::{RawMessage, publish_raw};
use serde_json::{Value, json};

use crate::subscriber::support::*;

const ADA: &str = "5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10";
const GRACE: &str = "0b6a3f2e-8c1d-4e5f-9a7b-2c3d4e5f6a7b";

/// The repository's schemas with the library's default policy (accept unknown types).
fn repo_schemas() -> SchemaSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    SchemaSet::from_dir(&dir).expect("the repository's schemas load")
}

fn user(id: &str) -> Value {
    json!({"user_id": id, "email": "ada@acme.example", "display_name": "Ada",
           "roles": ["member"], "revision": 1})
}

fn versioned(version: &str, data: Value) -> Event {
    Event::builder(SUBJECT)
        .source("auth-service")
        .organization("org-1")
        .schema_version(version)
        .data_json(data)
        .build()
        .unwrap()
}

fn created(data: Value) -> Event {
    versioned("1.0", data)
}

fn without_email(id: &str) -> Event {
    let mut data = user(id);
    data.as_object_mut().unwrap().remove("email");
    created(data)
}

fn assert_email_refused(res: Result<impl std::fmt::Debug, PublishError>) {
    match res {
        Err(PublishError::Schema { source, .. }) => {
            assert_eq!(source.pointer(), Some("/email"), "{source}");
            assert_eq!(source.rule(), Some("required"), "{source}");
        }
        other => panic!("expected a schema refusal, got {other:?}"),
    }
}

/// Publishes `event` (it must be stored) and decodes what the stream holds.
async fn publish_and_read_back(
    js: &jetstream::Context,
    publisher: &Publisher,
    event: &Event,
) -> Event {
    let outcome = timeout(BOUND, publisher.publish(event))
        .await
        .unwrap()
        .unwrap();
    let PublishOutcome::Stored(ack) = outcome else {
        panic!("not stored: {outcome:?}");
    };
    let stored = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .get_raw_message(ack.sequence)
        .await
        .unwrap();
    Event::decode(Some(&stored.headers), &stored.payload).unwrap()
}

#[tokio::test]
async fn a_publisher_with_schemas_refuses_invalid_data_and_sets_dataschema() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let publisher = publisher(&nats, repo_schemas()).await;

    let invalid = without_email(ADA);
    assert_email_refused(timeout(BOUND, publisher.publish(&invalid)).await.unwrap());
    assert_email_refused(
        timeout(BOUND, publisher.publish_async(&invalid))
            .await
            .unwrap(),
    );
    assert_eq!(stream_len(&js, STREAM).await, 0, "nothing sent");

    let valid = created(user(ADA));
    assert_eq!(valid.data_schema(), None);
    let event = publish_and_read_back(&js, &publisher, &valid).await;
    assert_eq!(event.id(), valid.id());
    assert_eq!(
        event.data_schema(),
        Some("urn:events:schema:auth.user.created:1.0")
    );
    assert_eq!(stream_len(&js, STREAM).await, 1);
    timeout(BOUND, publisher.close(BOUND))
        .await
        .unwrap()
        .unwrap();
}

async fn publisher(nats: &NatsServer, schemas: SchemaSet) -> Publisher {
    let config = PublisherConfig::new("auth-service").with_schemas(schemas);
    timeout(BOUND, Publisher::new(nats.client().await, config))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_publisher_refuses_or_accepts_an_unknown_version_as_configured() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let strict = publisher(&nats, repo_schemas().with_unknown(UnknownSchema::Refuse)).await;
    let lenient = publisher(&nats, repo_schemas()).await;

    let unknown = versioned("1.9", user(ADA));
    match timeout(BOUND, strict.publish(&unknown)).await.unwrap() {
        Err(PublishError::Schema { source, .. }) => match *source {
            SchemaError::Unknown { version, .. } => assert_eq!(version, "1.9"),
            other => panic!("expected an unknown-schema refusal, got {other:?}"),
        },
        other => panic!("expected a schema refusal, got {other:?}"),
    }
    assert_eq!(stream_len(&js, STREAM).await, 0, "nothing sent");

    let event = publish_and_read_back(&js, &lenient, &unknown).await;
    assert_eq!(event.id(), unknown.id());
    assert_eq!(event.data_schema(), None, "no schema, no dataschema");
    for p in [strict, lenient] {
        timeout(BOUND, p.close(BOUND)).await.unwrap().unwrap();
    }
}

/// Handler ids seen, in order.
type Seen = Arc<Mutex<Vec<String>>>;

fn seeing(seen: Seen) -> impl events::subscriber::Handler {
    handler_fn(move |event: Event, _ctx: DeliveryContext| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(event.id().to_owned());
            Ok::<_, HandlerError>(())
        }
    })
}

/// `events` as a producer without the contract sends them: structured-mode frames over a
/// plain socket (what a nats-py script publishes), nothing validated. Returns each one's
/// stream sequence (the stream was empty: 1, 2, ...).
async fn inject(nats: &NatsServer, events: &[&Event]) -> Vec<u64> {
    let frames: Vec<RawMessage> = events
        .iter()
        .map(|ev| {
            let msg_id = format!("Nats-Msg-Id: {}", ev.id());
            RawMessage::with_headers(
                SUBJECT,
                &[
                    b"Content-Type: application/cloudevents+json",
                    msg_id.as_bytes(),
                ],
                ev.to_json_bytes(),
            )
        })
        .collect();
    publish_raw(nats.port(), &frames).await;
    (1..=events.len() as u64).collect()
}

#[tokio::test]
async fn a_subscriber_with_schemas_dead_letters_invalid_data_on_first_delivery() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let seen = Seen::default();
    let config = fast_config().with_schemas(repo_schemas());
    let running = start(&js, "contracts", config, seeing(seen.clone())).await;

    let invalid = without_email(ADA);
    let valid = created(user(GRACE));
    let seqs = inject(&nats, &[&invalid, &valid]).await;

    wait_for("the dead letter and the valid event", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1 && seen.lock().unwrap().len() == 1
    })
    .await;
    let dl = dead_letters(&js).await;
    let m = &dl[0];
    assert_eq!(header(m, h::REASON), "invalid");
    assert_eq!(header(m, h::DELIVERIES), "1");
    assert_eq!(header(m, h::ORIGINAL_SEQUENCE), seqs[0].to_string());
    let error = header(m, h::ERROR);
    assert!(
        error.contains("/email") && error.contains("required"),
        "{error}"
    );
    assert_eq!(*seen.lock().unwrap(), [valid.id().to_owned()]);
    running.stop().await;
}

#[tokio::test]
async fn a_subscriber_refuses_or_accepts_an_unknown_version_as_configured() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let strict_seen = Seen::default();
    let lenient_seen = Seen::default();
    let strict_set = repo_schemas().with_unknown(UnknownSchema::Refuse);
    let strict = start(
        &js,
        "strict",
        fast_config().with_schemas(strict_set),
        seeing(strict_seen.clone()),
    )
    .await;
    let lenient_config = fast_config().with_schemas(repo_schemas());
    let lenient = start(&js, "lenient", lenient_config, seeing(lenient_seen.clone())).await;

    // A major nobody has a schema for; a newer minor (checked against 1.0, the newest
    // older minor of its major), valid and without `email`.
    let major = versioned("2.0", user(ADA));
    let minor = versioned("1.9", user(GRACE));
    let mut data = user(GRACE);
    data.as_object_mut().unwrap().remove("email");
    let minor_invalid = versioned("1.9", data);
    inject(&nats, &[&major, &minor, &minor_invalid]).await;

    // strict: 2.0 and the invalid 1.9 dead-lettered; lenient: the invalid 1.9.
    wait_for(
        "three dead letters and three deliveries",
        BOUND,
        async || {
            stream_len(&js, DLQ_STREAM).await == 3
                && strict_seen.lock().unwrap().len() == 1
                && lenient_seen.lock().unwrap().len() == 2
        },
    )
    .await;
    let mut by_consumer: Vec<(String, String, String)> = dead_letters(&js)
        .await
        .iter()
        .map(|m| {
            assert_eq!(header(m, h::REASON), "invalid");
            assert_eq!(header(m, h::DELIVERIES), "1");
            let id = Event::decode(Some(&m.headers), &m.payload)
                .unwrap()
                .id()
                .to_owned();
            (
                header(m, h::CONSUMER).to_owned(),
                id,
                header(m, h::ERROR).to_owned(),
            )
        })
        .collect();
    by_consumer.sort();
    let ids: Vec<(&str, &str)> = by_consumer
        .iter()
        .map(|(c, id, _)| (c.as_str(), id.as_str()))
        .collect();
    let mut expected = vec![
        (lenient.durable.as_str(), minor_invalid.id()),
        (strict.durable.as_str(), major.id()),
        (strict.durable.as_str(), minor_invalid.id()),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    for (_, id, error) in &by_consumer {
        if id == major.id() {
            assert!(
                error.contains("no schema for auth.user.created 2.0"),
                "{error}"
            );
        } else {
            assert!(
                error.contains("auth.user.created 1.0 is invalid at /email"),
                "{error}"
            );
        }
    }
    assert_eq!(*strict_seen.lock().unwrap(), [minor.id().to_owned()]);
    let mut lenient_ids = lenient_seen.lock().unwrap().clone();
    lenient_ids.sort();
    let mut expected = vec![major.id().to_owned(), minor.id().to_owned()];
    expected.sort();
    assert_eq!(lenient_ids, expected, "in any order");
    strict.stop().await;
    lenient.stop().await;
}
