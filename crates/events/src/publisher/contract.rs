//! The schema step of publishing (feature `schema`): an event whose `data` breaks its
//! contract is refused before anything is sent, and one without `dataschema` gets the URI
//! of its schema. Shared by [`Publisher`](super::Publisher) and
//! [`RecordingPublisher`](super::RecordingPublisher).

use std::borrow::Cow;

use super::PublishError;
use crate::event::Event;
use crate::schema::SchemaSet;

/// Validates `event` against `schemas` and returns it as it is to be sent: unchanged, or
/// a copy carrying `dataschema` when it had none and the set knows its type and version.
///
/// # Errors
/// [`PublishError::Schema`] with the validation error (JSON pointer and rule), or the
/// refusal of an unknown type or version under [`crate::schema::UnknownSchema::Refuse`].
pub(super) fn apply<'e>(
    schemas: &SchemaSet,
    event: &'e Event,
) -> Result<Cow<'e, Event>, PublishError> {
    schemas
        .validate(event)
        .map_err(|source| PublishError::Schema {
            event_id: event.id().to_owned(),
            source: Box::new(source),
        })?;
    if event.data_schema().is_some() {
        return Ok(Cow::Borrowed(event));
    }
    let uri = schemas.data_schema(event.event_type().as_str(), event.schema_version());
    Ok(match uri {
        Some(uri) => {
            let mut stamped = event.clone();
            stamped.set_data_schema(uri);
            Cow::Owned(stamped)
        }
        None => Cow::Borrowed(event),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Value, json};

    use super::*;
    use crate::schema::UnknownSchema;

    fn repo_schemas() -> SchemaSet {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        SchemaSet::from_dir(&dir).unwrap()
    }

    fn created(data: Value) -> Event {
        Event::builder("auth.user.created")
            .source("auth-service")
            .organization("org-1")
            .schema_version("1.0")
            .data_json(data)
            .build()
            .unwrap()
    }

    fn ada() -> Value {
        json!({"user_id": "5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10", "email": "ada@acme.example",
               "display_name": "Ada", "roles": ["member"], "revision": 1})
    }

    #[test]
    fn a_valid_event_gets_its_data_schema_and_keeps_its_own() {
        let set = repo_schemas();
        let ev = created(ada());
        let sent = apply(&set, &ev).unwrap();
        assert_eq!(
            sent.data_schema(),
            Some("urn:events:schema:auth.user.created:1.0")
        );
        assert_eq!(sent.id(), ev.id());
        let mut own = ev.clone();
        own.set_data_schema("urn:example:own");
        assert!(matches!(apply(&set, &own).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn invalid_data_is_refused_with_pointer_and_rule() {
        let mut data = ada();
        data.as_object_mut().unwrap().remove("email");
        let ev = created(data);
        match apply(&repo_schemas(), &ev) {
            Err(PublishError::Schema { event_id, source }) => {
                assert_eq!(event_id, ev.id());
                assert_eq!(source.pointer(), Some("/email"));
                assert_eq!(source.rule(), Some("required"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn an_unknown_version_follows_the_policy() {
        let set = repo_schemas().with_unknown(UnknownSchema::Refuse);
        let ev = Event::builder("auth.user.created")
            .source("auth-service")
            .organization("org-1")
            .schema_version("1.9")
            .data_json(ada())
            .build()
            .unwrap();
        assert!(matches!(apply(&set, &ev), Err(PublishError::Schema { .. })));
        let lenient = set.with_unknown(UnknownSchema::AcceptUnvalidated);
        let sent = apply(&lenient, &ev).unwrap();
        assert_eq!(
            sent.data_schema(),
            None,
            "no URI for a version the set lacks"
        );
    }
}
