//! The schema step of publishing (feature `schema`): an event whose `data` breaks its
//! contract is refused before anything is sent, and one without `dataschema` gets the URI
//! of its schema. Shared by [`Publisher`](super::Publisher) and
//! [`RecordingPublisher`](super::RecordingPublisher), and by the outbox's `enqueue` (so an
//! event the relay's publisher would refuse is refused before it is stored).

use std::borrow::Cow;

use super::PublishError;
use crate::event::Event;
use crate::schema::{SchemaError, SchemaSet};

/// Validates `event` against `schemas` and returns it as it is to be sent: unchanged, or
/// a copy carrying `dataschema` when it had none and the set knows its type and version.
///
/// # Errors
/// [`PublishError::Schema`] with the validation error (JSON pointer and rule), the
/// refusal of an unknown type or version under [`crate::schema::UnknownSchema::Refuse`],
/// or [`SchemaError::DataSchema`] when the event's own `dataschema` names another schema.
pub(crate) fn apply<'e>(
    schemas: &SchemaSet,
    event: &'e Event,
) -> Result<Cow<'e, Event>, PublishError> {
    let refuse = |source| PublishError::Schema {
        event_id: event.id().to_owned(),
        source: Box::new(source),
    };
    schemas.validate(event).map_err(refuse)?;
    let (event_type, version) = (event.event_type().as_str(), event.schema_version());
    let Some(uri) = schemas.data_schema(event_type, version) else {
        return Ok(Cow::Borrowed(event)); // an unknown type the set accepts unvalidated
    };
    match event.data_schema() {
        Some(own) if own == uri => Ok(Cow::Borrowed(event)),
        Some(own) => Err(refuse(SchemaError::DataSchema {
            event_type: event_type.to_owned(),
            version: version.to_owned(),
            found: own.to_owned(),
            expected: uri.to_owned(),
        })),
        None => {
            let mut stamped = event.clone();
            stamped.set_data_schema(uri);
            Ok(Cow::Owned(stamped))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::UnknownSchema;
    use crate::schema::fixtures::{ada, created, event, repo_schemas};

    #[test]
    fn a_valid_event_gets_its_data_schema_once() {
        let set = repo_schemas();
        let ev = created(ada());
        let sent = apply(&set, &ev).unwrap();
        assert_eq!(
            sent.data_schema(),
            Some("urn:events:schema:auth.user.created:1.0")
        );
        assert_eq!(sent.id(), ev.id());
        let stamped = sent.into_owned();
        assert!(matches!(apply(&set, &stamped).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn a_data_schema_naming_another_schema_is_refused() {
        let mut ev = created(ada());
        ev.set_data_schema("urn:events:schema:auth.user.created:1");
        match apply(&repo_schemas(), &ev) {
            Err(PublishError::Schema { source, .. }) => {
                assert!(
                    matches!(*source, SchemaError::DataSchema { .. }),
                    "{source}"
                );
                assert_eq!(
                    source.to_string(),
                    "dataschema \"urn:events:schema:auth.user.created:1\" of auth.user.created 1.0 \
                     is not urn:events:schema:auth.user.created:1.0"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
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
        let ev = event("auth.user.created", "1.9", ada());
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
