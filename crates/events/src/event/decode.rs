//! Reading an event from the wire: structured mode (straight into [`Attributes`]) and binary
//! mode (`ce-` headers), then the subject rule of CONTRACT.md §2.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use serde_json::{Map, Value};

use super::binary::{self, binary_attributes};
use super::builder::{EventBuilder, Ids};
use super::rules::{json_kind, parse_time};
use super::{DecodeError, Event, EventError, KNOWN, REPLAY_ORIGINAL_SUBJECT, SPEC_VERSION};

impl Event {
    /// Reads the event of a message stored under `subject`, as consumers must (CONTRACT.md
    /// §2): [`Event::decode`], then the event's `type` must be `subject`. The one exception
    /// is a copy made by a time-window replay to another subject: it carries
    /// [`REPLAY_ORIGINAL_SUBJECT`] (read in any letter case, given once), and that header
    /// must equal the `type` instead.
    ///
    /// # Errors
    /// As [`Event::decode`]; [`DecodeError::Invalid`] (attribute `type`) when the type is not
    /// the subject it was stored under (a forgery, not the event it claims to be), or when
    /// [`REPLAY_ORIGINAL_SUBJECT`] is given more than once.
    pub fn decode_message(
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Result<Event, DecodeError> {
        let event = Self::decode(headers, payload)?;
        let replayed = headers
            .map(|h| binary::header_values_ci(h, REPLAY_ORIGINAL_SUBJECT))
            .unwrap_or_default();
        let replayed_from = match replayed.as_slice() {
            [] => None,
            [one] => Some(*one),
            many => {
                let rule = format!(
                    "the `{REPLAY_ORIGINAL_SUBJECT}` header is given {} times: which subject \
                     the type must equal is ambiguous",
                    many.len()
                );
                return Err(DecodeError::Invalid(EventError::new("type", rule)));
            }
        };
        let stored_under = replayed_from.unwrap_or(subject);
        if event.event_type().as_str() != stored_under {
            let rule = match replayed_from {
                Some(orig) => format!(
                    "`{}` differs from the `{REPLAY_ORIGINAL_SUBJECT}` header `{orig}`",
                    event.event_type().as_str()
                ),
                None => format!(
                    "`{}` differs from the subject `{subject}` it was stored under",
                    event.event_type().as_str()
                ),
            };
            return Err(DecodeError::Invalid(EventError::new("type", rule)));
        }
        Ok(event)
    }

    /// Reads an event from a message: binary mode if a `ce-specversion` header is present,
    /// structured mode otherwise.
    ///
    /// # Errors
    /// [`DecodeError::Undecodable`] if the message is not a CloudEvent at all;
    /// [`DecodeError::Invalid`] if it is one that breaks a rule of the contract.
    pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Event, DecodeError> {
        if let Some(h) = headers
            && let Some(attrs) = binary_attributes(h)?
        {
            return Self::decode_binary(attrs, payload);
        }
        Self::decode_structured(payload)
    }

    /// Reads a structured-mode JSON body.
    ///
    /// # Errors
    /// As [`Event::decode`].
    pub fn decode_structured(payload: &[u8]) -> Result<Event, DecodeError> {
        // Straight into the attribute slots: no intermediate map of the top level.
        let attrs: Attributes = serde_json::from_slice(payload).map_err(|e| {
            DecodeError::Undecodable(if e.is_data() {
                format!("body is JSON but not an object: {e}")
            } else {
                format!("body is not JSON: {e}")
            })
        })?;
        Self::from_attributes(attrs).map_err(DecodeError::Invalid)
    }

    fn decode_binary(attrs: Map<String, Value>, payload: &[u8]) -> Result<Event, DecodeError> {
        let mut attrs = Attributes::from_map(attrs);
        let data: Value = serde_json::from_slice(payload)
            .map_err(|e| DecodeError::Undecodable(format!("binary-mode body is not JSON: {e}")))?;
        attrs.set("data", data);
        Self::from_attributes(attrs).map_err(DecodeError::Invalid)
    }

    /// Builds and validates an event from its attributes (structured mode's JSON object, or
    /// binary mode's headers).
    fn from_attributes(mut m: Attributes) -> Result<Event, EventError> {
        let specversion = take_required(&mut m, "specversion")?;
        if specversion != SPEC_VERSION {
            return Err(EventError::new(
                "specversion",
                format!("is {specversion:?}; only \"1.0\" is supported"),
            ));
        }
        let id = take_required(&mut m, "id")?;
        let source = take_required(&mut m, "source")?;
        let ty = take_required(&mut m, "type")?;
        let time = take_required(&mut m, "time")?;
        let org = take_required(&mut m, "organizationid")?;
        let schema_version = take_required(&mut m, "schemaversion")?;
        let data_content_type = take_required(&mut m, "datacontenttype")?;
        let data = match m.take("data") {
            None => return Err(EventError::new("data", "is required")),
            Some(Value::Object(o)) => o,
            Some(other) => {
                return Err(EventError::new(
                    "data",
                    format!("must be a JSON object, found {}", json_kind(&other)),
                ));
            }
        };
        let mut b = EventBuilder::new(ty)
            .id(id)
            .source(source)
            .organization(org)
            .schema_version(schema_version);
        b.data = Some(Ok(data));
        b.data_content_type = Some(data_content_type);
        b.time = Some(parse_time(&time)?);
        b.subject = take_optional(&mut m, "subject")?;
        b.data_schema = take_optional(&mut m, "dataschema")?;
        b.traceparent = take_optional(&mut m, "traceparent")?;
        b.tracestate = take_optional(&mut m, "tracestate")?;
        b.correlation_id = take_optional(&mut m, "correlationid")?;
        b.causation_id = take_optional(&mut m, "causationid")?;
        b.extensions = m.extensions;
        b.build_with(Ids::Foreign)
    }
}

/// The attributes of an incoming event: one slot per contract attribute (indexed as in
/// `KNOWN`), the rest as extensions. Deserialized straight from a structured-mode body, so
/// decoding builds no map of the top level only to take it apart again.
#[derive(Default)]
struct Attributes {
    known: [Option<Value>; KNOWN.len()],
    extensions: BTreeMap<String, Value>,
}

impl Attributes {
    fn slot(name: &str) -> Option<usize> {
        KNOWN.iter().position(|k| *k == name)
    }

    fn from_map(m: Map<String, Value>) -> Self {
        let mut a = Self::default();
        for (k, v) in m {
            a.set_owned(k, v);
        }
        a
    }

    fn set_owned(&mut self, name: String, value: Value) {
        match Self::slot(&name) {
            Some(i) => self.known[i] = Some(value),
            None => {
                self.extensions.insert(name, value);
            }
        }
    }

    /// Sets a contract attribute (`name` must be in `KNOWN`).
    fn set(&mut self, name: &str, value: Value) {
        self.set_owned(name.to_owned(), value);
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        Self::slot(name).and_then(|i| self.known[i].take())
    }
}

/// A map key borrowed from the input when it has no escapes (serde's own `Cow<str>` always
/// allocates).
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Attributes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Attributes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a CloudEvent JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Attributes, A::Error> {
                let mut a = Attributes::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let value: Value = map.next_value()?;
                    match Attributes::slot(&key) {
                        Some(i) => a.known[i] = Some(value),
                        None => {
                            a.extensions.insert(key.into_owned(), value);
                        }
                    }
                }
                Ok(a)
            }
        }
        d.deserialize_map(V)
    }
}

fn take_required(m: &mut Attributes, name: &str) -> Result<String, EventError> {
    match m.take(name) {
        None => Err(EventError::new(name, "is required")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(EventError::new(
            name,
            format!("must be a string, found {}", json_kind(&other)),
        )),
    }
}

fn take_optional(m: &mut Attributes, name: &str) -> Result<Option<String>, EventError> {
    match m.take(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(EventError::new(
            name,
            format!("must be a string, found {}", json_kind(&other)),
        )),
    }
}
