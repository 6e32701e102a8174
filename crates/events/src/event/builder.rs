//! [`EventBuilder`]: every setter infallible, every rule checked in `build`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::names::OrganizationId;

use super::rules::{
    check_data_content_type, check_extension, check_id, check_schema_version, check_text,
    check_traceparent, check_type, check_uri, check_uuid, json_kind,
};
use super::{DATA_CONTENT_TYPE, DEFAULT_SCHEMA_VERSION, Event, EventError, MAX_TEXT_LEN};

/// Builds a valid [`Event`]. Setters never fail; [`EventBuilder::build`] reports the first
/// attribute that breaks a rule.
#[derive(Debug, Clone)]
#[must_use = "call build() to get the event"]
pub struct EventBuilder {
    pub(super) ty: String,
    pub(super) id: Option<String>,
    pub(super) source: Option<String>,
    pub(super) time: Option<OffsetDateTime>,
    pub(super) organization: Option<String>,
    pub(super) schema_version: Option<String>,
    pub(super) data_content_type: Option<String>,
    pub(super) subject: Option<String>,
    pub(super) data_schema: Option<String>,
    pub(super) traceparent: Option<String>,
    pub(super) tracestate: Option<String>,
    pub(super) correlation_id: Option<String>,
    pub(super) causation_id: Option<String>,
    pub(super) extensions: BTreeMap<String, Value>,
    pub(super) data: Option<Result<Map<String, Value>, EventError>>,
}

impl EventBuilder {
    pub(super) fn new(ty: String) -> Self {
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

    pub(super) fn build_with(mut self, ids: Ids) -> Result<Event, EventError> {
        // Required attributes are taken out, so that the optional ones can be checked
        // through `&self` in the order errors are reported.
        let ty = check_type(&self.ty)?;
        let id = checked_id(self.id.take(), ids)?;
        let source = self
            .source
            .take()
            .ok_or_else(|| EventError::new("source", "is required"))?;
        check_id("source", &source)?;
        let org = self
            .organization
            .take()
            .ok_or_else(|| EventError::new("organizationid", "is required"))?;
        let organization_id =
            OrganizationId::new(&org).map_err(|e| EventError::from_name("organizationid", e))?;
        let schema_version = self
            .schema_version
            .take()
            .unwrap_or_else(|| DEFAULT_SCHEMA_VERSION.to_owned());
        check_schema_version(&schema_version)?;
        let data_content_type = self
            .data_content_type
            .take()
            .unwrap_or_else(|| DATA_CONTENT_TYPE.to_owned());
        check_data_content_type(&data_content_type)?;
        let data = self
            .data
            .take()
            .ok_or_else(|| EventError::new("data", "is required"))??;
        self.check_optional()?;
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

    /// Checks the optional attributes that are set, and the extensions.
    fn check_optional(&self) -> Result<(), EventError> {
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
        Ok(())
    }
}

/// An explicit id, checked (a UUID for [`Ids::Uuid`]), or a new UUID v7.
fn checked_id(id: Option<String>, ids: Ids) -> Result<String, EventError> {
    let Some(id) = id else {
        return Ok(Uuid::now_v7().to_string());
    };
    check_id("id", &id)?;
    if matches!(ids, Ids::Uuid) {
        check_uuid(&id)?;
    }
    Ok(id)
}

/// How [`EventBuilder`] checks an explicit id.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ids {
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
