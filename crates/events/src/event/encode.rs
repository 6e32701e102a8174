//! The structured-mode wire form: the JSON body and the message with its headers.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use super::rules::format_time;
use super::{
    CONTENT_TYPE_HEADER, EncodedEvent, Event, MSG_ID_HEADER, SPEC_VERSION, STRUCTURED_CONTENT_TYPE,
};
use crate::headers::value as header_value;

impl Event {
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
