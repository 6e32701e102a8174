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
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::names::{EventType, OrganizationId};

mod binary;
mod builder;
mod decode;
mod encode;
mod error;
mod rules;

pub(crate) use binary::lenient_attributes;
pub use builder::EventBuilder;
pub use error::{DecodeError, EventError};
use rules::{check_text, check_traceparent};

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
}

/// True if `name` is an attribute of the contract rather than an extension.
pub fn is_contract_attribute(name: &str) -> bool {
    KNOWN.contains(&name)
}

#[cfg(test)]
mod tests;
