//! The event: a CloudEvents 1.0 event in the JSON format (CONTRACT.md §2).
//!
//! [`Event`] can only be built valid: [`Event::builder`] checks every attribute and names
//! the attribute and the rule it broke. [`Event::encode`] gives the structured-mode wire
//! form (JSON body, `Content-Type: application/cloudevents+json`, `Nats-Msg-Id` = id);
//! [`Event::decode`] reads structured mode and the binary mode of the CloudEvents NATS
//! binding (`ce-*` headers, percent-decoded, body = `data`), and tells an undecodable
//! message (not a CloudEvent at all) from an invalid one (a CloudEvent that breaks a rule),
//! because the consumer dead-letters them with different reasons.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::names::{EventType, NameError, OrganizationId};

mod binary;

use binary::binary_attributes;
pub(crate) use binary::lenient_attributes;

/// The CloudEvents spec version this crate speaks.
pub const SPEC_VERSION: &str = "1.0";
/// `Content-Type` of a structured-mode message.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
/// The only `datacontenttype` accepted: `data` is a JSON object.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// Default `schemaversion` when the builder is not given one.
pub const DEFAULT_SCHEMA_VERSION: &str = "1.0";
/// NATS header carrying the de-duplication id (the event id).
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// NATS header carrying the content type.
pub const CONTENT_TYPE_HEADER: &str = "Content-Type";

/// Longest accepted `id`, `source`, `correlationid` and `causationid`, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest accepted `subject`, `dataschema` and `tracestate`, in bytes.
pub const MAX_TEXT_LEN: usize = 1024;

/// Attributes that are part of the contract; anything else is an extension.
const KNOWN: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "organizationid",
    "schemaversion",
    "datacontenttype",
    "data",
    "subject",
    "dataschema",
    "traceparent",
    "tracestate",
    "correlationid",
    "causationid",
];

/// Header of a copy made by a time-window replay to another subject: the subject the event
/// was first stored under, which its `type` must equal (CONTRACT.md §2).
pub const REPLAY_ORIGINAL_SUBJECT: &str = "Replay-Original-Subject";

/// An attribute that broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid attribute `{attribute}`: {rule}")]
#[non_exhaustive]
pub struct EventError {
    /// The CloudEvents attribute name (`type`, `organizationid`, `data`, ...).
    pub attribute: String,
    /// What is wrong with it.
    pub rule: String,
}

impl EventError {
    fn new(attribute: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            attribute: attribute.into(),
            rule: rule.into(),
        }
    }

    fn from_name(attribute: &str, e: NameError) -> Self {
        Self::new(attribute, e.to_string())
    }
}

/// Why a message could not be read as an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a CloudEvent in either mode: no JSON object body in structured mode, or a binary
    /// body that is not JSON.
    #[error("message is not a CloudEvent: {0}")]
    Undecodable(String),
    /// A CloudEvent that lacks a required attribute or breaks a rule.
    #[error("invalid CloudEvent")]
    Invalid(#[source] EventError),
}

impl DecodeError {
    /// The dead-letter reason (CONTRACT.md §4): `undecodable` or `invalid`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Undecodable(_) => "undecodable",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// A validated CloudEvents 1.0 event. Build one with [`Event::builder`]; read one from the
/// wire with [`Event::decode`].
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    id: String,
    source: String,
    ty: EventType,
    time: OffsetDateTime,
    organization_id: OrganizationId,
    schema_version: String,
    data_content_type: String,
    subject: Option<String>,
    data_schema: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    extensions: BTreeMap<String, Value>,
    data: Map<String, Value>,
}

/// An event in its structured-mode wire form, ready to publish.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    /// The subject to publish on (the event type).
    pub subject: String,
    /// `Content-Type` and `Nats-Msg-Id`.
    pub headers: HeaderMap,
    /// The JSON event.
    pub payload: Bytes,
}

impl Event {
    /// Starts building an event of the given type (`"auth.user.created"`). The type is
    /// checked when [`EventBuilder::build`] runs.
    pub fn builder(event_type: impl Into<String>) -> EventBuilder {
        EventBuilder::new(event_type.into())
    }

    /// `id`: unique per event; a UUID v7 when built here.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// `source`: the producing service.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// `type`: also the subject the event is published on.
    pub fn event_type(&self) -> &EventType {
        &self.ty
    }
    /// `time`, in UTC.
    pub fn time(&self) -> OffsetDateTime {
        self.time
    }
    /// `organizationid`: the tenant.
    pub fn organization_id(&self) -> &OrganizationId {
        &self.organization_id
    }
    /// `schemaversion`: version of the `data` schema.
    pub fn schema_version(&self) -> &str {
        &self.schema_version
    }
    /// `datacontenttype`.
    pub fn data_content_type(&self) -> &str {
        &self.data_content_type
    }
    /// `subject`: the entity the event is about.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// `dataschema`.
    pub fn data_schema(&self) -> Option<&str> {
        self.data_schema.as_deref()
    }
    /// `traceparent` (W3C trace context).
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }
    /// `tracestate` (W3C trace context).
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
    /// `correlationid`.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }
    /// `causationid`.
    pub fn causation_id(&self) -> Option<&str> {
        self.causation_id.as_deref()
    }
    /// Extension attributes outside the contract, kept so that a decoded event re-encodes
    /// with them.
    pub fn extensions(&self) -> &BTreeMap<String, Value> {
        &self.extensions
    }
    /// `data`, a JSON object.
    pub fn data(&self) -> &Map<String, Value> {
        &self.data
    }

    /// `data` deserialized into a type of the caller's.
    ///
    /// # Errors
    /// The `serde_json` error if `data` does not have the shape of `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        // Borrowing deserializer: no clone of the map, no text round trip.
        T::deserialize(&self.data)
    }

    /// Sets the W3C trace context, as the publisher does from the current span.
    ///
    /// # Errors
    /// [`EventError`] if `traceparent` is not `00-<32 hex>-<16 hex>-<2 hex>` or `tracestate`
    /// is not printable ASCII of at most [`MAX_TEXT_LEN`] bytes.
    pub fn set_trace_context(
        &mut self,
        traceparent: &str,
        tracestate: Option<&str>,
    ) -> Result<(), EventError> {
        check_traceparent(traceparent)?;
        if let Some(ts) = tracestate {
            check_text("tracestate", ts, MAX_TEXT_LEN)?;
        }
        self.traceparent = Some(traceparent.to_owned());
        self.tracestate = tracestate.map(str::to_owned);
        Ok(())
    }

    /// Sets `dataschema` to a URI the caller vouches for (the publisher, from its schema
    /// set, whose URIs are checked when the set is loaded).
    #[cfg(feature = "schema")]
    pub(crate) fn set_data_schema(&mut self, uri: &str) {
        self.data_schema = Some(uri.to_owned());
    }

    /// The structured-mode JSON body (one object).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let wire = WireOut {
            specversion: SPEC_VERSION,
            id: &self.id,
            source: &self.source,
            ty: self.ty.as_str(),
            time: format_time(self.time),
            organizationid: self.organization_id.as_str(),
            schemaversion: &self.schema_version,
            datacontenttype: &self.data_content_type,
            subject: self.subject.as_deref(),
            dataschema: self.data_schema.as_deref(),
            traceparent: self.traceparent.as_deref(),
            tracestate: self.tracestate.as_deref(),
            correlationid: self.correlation_id.as_deref(),
            causationid: self.causation_id.as_deref(),
            extensions: &self.extensions,
            data: &self.data,
        };
        // Invariant: every field is a string, an Option<&str> or a map with string keys,
        // which serde_json always serializes.
        serde_json::to_vec(&wire).expect("event serialization cannot fail")
    }

    /// The structured-mode message: subject, headers (`Content-Type`, `Nats-Msg-Id`) and
    /// body.
    pub fn encode(&self) -> EncodedEvent {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE_HEADER, header_value(STRUCTURED_CONTENT_TYPE));
        headers.insert(MSG_ID_HEADER, header_value(&self.id));
        EncodedEvent {
            subject: self.ty.as_str().to_owned(),
            headers,
            payload: Bytes::from(self.to_json_bytes()),
        }
    }

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

#[derive(Serialize)]
struct WireOut<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    time: String,
    organizationid: &'a str,
    schemaversion: &'a str,
    datacontenttype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataschema: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlationid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    causationid: Option<&'a str>,
    #[serde(flatten)]
    extensions: &'a BTreeMap<String, Value>,
    data: &'a Map<String, Value>,
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

/// Builds a valid [`Event`]. Setters never fail; [`EventBuilder::build`] reports the first
/// attribute that breaks a rule.
#[derive(Debug, Clone)]
#[must_use = "call build() to get the event"]
pub struct EventBuilder {
    ty: String,
    id: Option<String>,
    source: Option<String>,
    time: Option<OffsetDateTime>,
    organization: Option<String>,
    schema_version: Option<String>,
    data_content_type: Option<String>,
    subject: Option<String>,
    data_schema: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    extensions: BTreeMap<String, Value>,
    data: Option<Result<Map<String, Value>, EventError>>,
}

impl EventBuilder {
    fn new(ty: String) -> Self {
        Self {
            ty,
            id: None,
            source: None,
            time: None,
            organization: None,
            schema_version: None,
            data_content_type: None,
            subject: None,
            data_schema: None,
            traceparent: None,
            tracestate: None,
            correlation_id: None,
            causation_id: None,
            extensions: BTreeMap::new(),
            data: None,
        }
    }

    /// Overrides the id (default: a fresh UUID v7); it must be a UUID, checked by
    /// [`EventBuilder::build`]. Reuse an event's id to publish it again idempotently.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// The producing service (required), e.g. `"auth-service"`.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }
    /// The tenant (required).
    pub fn organization(mut self, org: impl Into<String>) -> Self {
        self.organization = Some(org.into());
        self
    }
    /// Overrides the time (default: now). Converted to UTC.
    pub fn time(mut self, time: OffsetDateTime) -> Self {
        self.time = Some(time);
        self
    }
    /// The `data` schema version (default [`DEFAULT_SCHEMA_VERSION`]).
    pub fn schema_version(mut self, v: impl Into<String>) -> Self {
        self.schema_version = Some(v.into());
        self
    }
    /// The payload (required): any value that serializes to a JSON object.
    pub fn data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        self.data = Some(match serde_json::to_value(data) {
            Ok(Value::Object(o)) => Ok(o),
            Ok(other) => Err(EventError::new(
                "data",
                format!("must be a JSON object, found {}", json_kind(&other)),
            )),
            Err(e) => Err(EventError::new(
                "data",
                format!("cannot be serialized: {e}"),
            )),
        });
        self
    }
    /// The payload as an already-built JSON value (must be an object).
    pub fn data_json(self, data: Value) -> Self {
        self.data(&data)
    }
    /// The entity the event is about (e.g. the user id).
    pub fn subject(mut self, s: impl Into<String>) -> Self {
        self.subject = Some(s.into());
        self
    }
    /// URI of the JSON Schema of `data`.
    pub fn data_schema(mut self, s: impl Into<String>) -> Self {
        self.data_schema = Some(s.into());
        self
    }
    /// W3C `traceparent`.
    pub fn traceparent(mut self, s: impl Into<String>) -> Self {
        self.traceparent = Some(s.into());
        self
    }
    /// W3C `tracestate`.
    pub fn tracestate(mut self, s: impl Into<String>) -> Self {
        self.tracestate = Some(s.into());
        self
    }
    /// The id of the request or flow this event belongs to.
    pub fn correlation_id(mut self, s: impl Into<String>) -> Self {
        self.correlation_id = Some(s.into());
        self
    }
    /// The id of the event that caused this one.
    pub fn causation_id(mut self, s: impl Into<String>) -> Self {
        self.causation_id = Some(s.into());
        self
    }
    /// An extension attribute (name `[a-z0-9]{1,20}`, value a string, number or boolean).
    pub fn extension(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.into(), value.into());
        self
    }

    /// Checks every attribute and returns the event.
    ///
    /// # Errors
    /// [`EventError`] naming the first attribute that is missing or breaks its rule; among
    /// them a `type` in the reserved `dlq.` domain and an explicit id that is not a UUID
    /// (CONTRACT.md §2).
    pub fn build(self) -> Result<Event, EventError> {
        self.build_with(Ids::Uuid)
    }

    fn build_with(self, ids: Ids) -> Result<Event, EventError> {
        let ty = check_type(&self.ty)?;
        let id = match self.id {
            Some(id) => {
                check_id("id", &id)?;
                if matches!(ids, Ids::Uuid) {
                    check_uuid(&id)?;
                }
                id
            }
            None => Uuid::now_v7().to_string(),
        };
        let source = self
            .source
            .ok_or_else(|| EventError::new("source", "is required"))?;
        check_id("source", &source)?;
        let org = self
            .organization
            .ok_or_else(|| EventError::new("organizationid", "is required"))?;
        let organization_id =
            OrganizationId::new(&org).map_err(|e| EventError::from_name("organizationid", e))?;
        let schema_version = self
            .schema_version
            .unwrap_or_else(|| DEFAULT_SCHEMA_VERSION.to_owned());
        check_schema_version(&schema_version)?;
        let data_content_type = self
            .data_content_type
            .unwrap_or_else(|| DATA_CONTENT_TYPE.to_owned());
        check_data_content_type(&data_content_type)?;
        let data = self
            .data
            .ok_or_else(|| EventError::new("data", "is required"))??;
        if let Some(s) = &self.subject {
            check_text("subject", s, MAX_TEXT_LEN)?;
        }
        if let Some(s) = &self.data_schema {
            check_uri("dataschema", s)?;
        }
        if let Some(s) = &self.traceparent {
            check_traceparent(s)?;
        }
        if let Some(s) = &self.tracestate {
            check_text("tracestate", s, MAX_TEXT_LEN)?;
        }
        if let Some(s) = &self.correlation_id {
            check_id("correlationid", s)?;
        }
        if let Some(s) = &self.causation_id {
            check_id("causationid", s)?;
        }
        for (name, value) in &self.extensions {
            check_extension(name, value)?;
        }
        let time = self
            .time
            .unwrap_or_else(OffsetDateTime::now_utc)
            .to_offset(time::UtcOffset::UTC);
        Ok(Event {
            id,
            source,
            ty,
            time,
            organization_id,
            schema_version,
            data_content_type,
            subject: self.subject,
            data_schema: self.data_schema,
            traceparent: self.traceparent,
            tracestate: self.tracestate,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            extensions: self.extensions,
            data,
        })
    }
}

/// How [`EventBuilder`] checks an explicit id.
#[derive(Debug, Clone, Copy)]
enum Ids {
    /// An event made here: the id is a UUID, as CONTRACT.md §2 says.
    Uuid,
    /// An event decoded from the wire, perhaps from another producer: any printable token.
    /// CloudEvents only asks `id` to be a non-empty string, and the SDKs of other languages
    /// let their users choose it; refusing those ids would dead-letter their events although
    /// nothing here relies on the UUID form (the id is an opaque de-duplication key, which
    /// `check_id` keeps safe in a NATS header). The UUID rule binds what this library
    /// produces, so it is enforced where events are made, not where they are read.
    Foreign,
}

/// A valid event type outside the `dlq.` domain, which is reserved for dead letters
/// (CONTRACT.md §2): an event that claims it, built or decoded, would pass for a dead letter
/// in DLQ_EVENTS.
fn check_type(ty: &str) -> Result<EventType, EventError> {
    let ty = EventType::new(ty).map_err(|e| EventError::from_name("type", e))?;
    if ty.as_str().starts_with(crate::dlq::DLQ_SUBJECT_PREFIX) {
        return Err(EventError::new(
            "type",
            format!(
                "`{}` is in the reserved `dlq.` domain, which holds only dead letters",
                ty.as_str()
            ),
        ));
    }
    Ok(ty)
}

/// A UUID in its usual 8-4-4-4-12 hex form, not the nil UUID.
fn check_uuid(id: &str) -> Result<(), EventError> {
    match Uuid::try_parse(id) {
        Ok(u) if id.len() == 36 && !u.is_nil() => Ok(()),
        _ => Err(EventError::new(
            "id",
            format!(
                "{id:?} is not a UUID (8-4-4-4-12 hex digits, such as \
                 0190f6a8-7b3c-7def-8123-456789abcdef); leave it unset for a new UUID v7"
            ),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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

/// Printable ASCII without spaces (safe in a NATS header), 1..=MAX_ID_LEN bytes.
fn check_id(attr: &str, v: &str) -> Result<(), EventError> {
    if v.is_empty() {
        return Err(EventError::new(attr, "must not be empty"));
    }
    if v.len() > MAX_ID_LEN {
        return Err(EventError::new(
            attr,
            format!("is longer than {MAX_ID_LEN} bytes"),
        ));
    }
    if let Some(c) = v.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(EventError::new(
            attr,
            format!("contains {c:?}; only printable ASCII without spaces is allowed"),
        ));
    }
    Ok(())
}

/// Non-empty text without control characters, at most `max` bytes.
fn check_text(attr: &str, v: &str, max: usize) -> Result<(), EventError> {
    if v.is_empty() {
        return Err(EventError::new(attr, "must not be empty"));
    }
    if v.len() > max {
        return Err(EventError::new(attr, format!("is longer than {max} bytes")));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(EventError::new(
            attr,
            format!("contains the control character {c:?}"),
        ));
    }
    Ok(())
}

fn check_uri(attr: &str, v: &str) -> Result<(), EventError> {
    check_text(attr, v, MAX_TEXT_LEN)?;
    if v.contains(char::is_whitespace) || !v.contains(':') {
        return Err(EventError::new(
            attr,
            "must be an absolute URI (scheme:...) without whitespace",
        ));
    }
    Ok(())
}

fn check_schema_version(v: &str) -> Result<(), EventError> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(EventError::new(
            "schemaversion",
            format!("{v:?} is not a dotted version of digits such as \"1.0\""),
        ))
    }
}

fn check_data_content_type(v: &str) -> Result<(), EventError> {
    let base = v.split(';').next().unwrap_or_default().trim();
    if base.eq_ignore_ascii_case(DATA_CONTENT_TYPE) {
        check_text("datacontenttype", v, MAX_TEXT_LEN)
    } else {
        Err(EventError::new(
            "datacontenttype",
            format!("is {v:?}; only {DATA_CONTENT_TYPE:?} is accepted"),
        ))
    }
}

fn check_traceparent(v: &str) -> Result<(), EventError> {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2);
    if ok {
        Ok(())
    } else {
        Err(EventError::new(
            "traceparent",
            format!("{v:?} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)"),
        ))
    }
}

fn check_extension(name: &str, value: &Value) -> Result<(), EventError> {
    if name.is_empty()
        || name.len() > 20
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(EventError::new(
            name,
            "extension names are 1 to 20 lower-case letters or digits",
        ));
    }
    match value {
        Value::String(s) => check_text(name, s, MAX_TEXT_LEN),
        Value::Number(_) | Value::Bool(_) => Ok(()),
        other => Err(EventError::new(
            name,
            format!(
                "extension values are strings, numbers or booleans, found {}",
                json_kind(other)
            ),
        )),
    }
}

fn parse_time(v: &str) -> Result<OffsetDateTime, EventError> {
    OffsetDateTime::parse(v, &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| EventError::new("time", format!("{v:?} is not RFC 3339: {e}")))
}

/// RFC 3339 in UTC (`...Z`), with as many fractional digits as needed.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    // Invariant: a UTC OffsetDateTime with a four-digit year always formats as RFC 3339;
    // years outside 0..=9999 are refused on parse and never produced by now_utc().
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A header value from text already checked to hold no CR or LF.
pub(crate) fn header_value(v: &str) -> async_nats::HeaderValue {
    v.parse()
        .unwrap_or_else(|_| async_nats::HeaderValue::from(v.replace(['\r', '\n'], " ").as_str()))
}

/// True if `name` is an attribute of the contract rather than an extension.
pub fn is_contract_attribute(name: &str) -> bool {
    KNOWN.contains(&name)
}

#[cfg(test)]
mod tests;
