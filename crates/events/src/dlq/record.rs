//! [`DeadLetter`]: a stored dead letter read back with its failure record.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::ser::{Serialize, SerializeStruct, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{DLQ_SUBJECT_PREFIX, DeadLetterReason, headers};
use crate::error::error_chain;
use crate::event::{Event, lenient_attributes};

/// A dead letter as stored in the dead-letter stream: the failure record of CONTRACT.md §4
/// plus what could be read from the original message. Header values that are missing or do
/// not parse are `None` (a listing never fails on one bad record); the raw headers are kept.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Sequence in the dead-letter stream: the handle for get, replay and delete.
    pub sequence: u64,
    /// The dead-letter subject, `dlq.<original subject>`.
    pub subject: String,
    /// When the dead letter was stored.
    pub stored_at: OffsetDateTime,
    /// `Dlq-Original-Subject`: where replay publishes the body back.
    pub original_subject: Option<String>,
    /// `Dlq-Original-Stream`.
    pub original_stream: Option<String>,
    /// `Dlq-Original-Sequence`.
    pub original_sequence: Option<u64>,
    /// `Dlq-Consumer`: the durable consumer (group) that gave up.
    pub consumer: Option<String>,
    /// `Dlq-Deliveries`.
    pub deliveries: Option<u64>,
    /// `Dlq-Reason`, if it is one of the contract's reasons.
    pub reason: Option<DeadLetterReason>,
    /// `Dlq-Error`: the last error, one line.
    pub error: Option<String>,
    /// `Dlq-Failed-At`.
    pub failed_at: Option<OffsetDateTime>,
    /// The event's `type`, when the body (or its binary-mode headers) carries one.
    pub event_type: Option<String>,
    /// The event's `organizationid`, when present.
    pub organization: Option<String>,
    /// The event's `id`, when present.
    pub event_id: Option<String>,
    /// Why the body does not decode as a valid event (`None` when it does).
    pub decode_error: Option<String>,
    /// Every header as stored, failure record included.
    pub headers: HeaderMap,
    /// The original body, byte for byte.
    pub body: Bytes,
}

impl DeadLetter {
    /// Reads a stored dead letter. Never fails: what does not parse stays `None`.
    pub fn from_stored(
        sequence: u64,
        subject: String,
        stored_at: OffsetDateTime,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let original_subject = get(headers::ORIGINAL_SUBJECT).or_else(|| {
            subject
                .strip_prefix(DLQ_SUBJECT_PREFIX)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        });
        let (event_type, organization, event_id, decode_error) =
            match Event::decode(Some(&headers), &body) {
                Ok(ev) => (
                    Some(ev.event_type().as_str().to_owned()),
                    Some(ev.organization_id().as_str().to_owned()),
                    Some(ev.id().to_owned()),
                    None,
                ),
                Err(e) => {
                    let [t, o, i] =
                        lenient_attributes(Some(&headers), &body, ["type", "organizationid", "id"]);
                    (t, o, i, Some(error_chain(&e)))
                }
            };
        Self {
            sequence,
            stored_at,
            original_subject,
            original_stream: get(headers::ORIGINAL_STREAM),
            original_sequence: get(headers::ORIGINAL_SEQUENCE).and_then(|v| v.trim().parse().ok()),
            consumer: get(headers::CONSUMER),
            deliveries: get(headers::DELIVERIES).and_then(|v| v.trim().parse().ok()),
            reason: get(headers::REASON).and_then(|v| DeadLetterReason::parse(v.trim())),
            error: get(headers::ERROR),
            failed_at: get(headers::FAILED_AT)
                .and_then(|v| OffsetDateTime::parse(v.trim(), &Rfc3339).ok()),
            event_type,
            organization,
            event_id,
            decode_error,
            subject,
            headers,
            body,
        }
    }

    /// Every header as `(name, value)`, one pair per value, sorted: how tools show them.
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .headers
            .iter()
            .flat_map(|(k, vs)| {
                vs.iter()
                    .map(move |v| (k.to_string(), v.as_str().to_owned()))
            })
            .collect();
        pairs.sort();
        pairs
    }

    /// The body as UTF-8 text, if it is.
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

fn rfc3339(t: &OffsetDateTime) -> Option<String> {
    t.format(&Rfc3339).ok()
}

/// JSON form for tools and the admin API: times in RFC 3339, headers as a sorted map of
/// name to values, the body as `body` (UTF-8 text) or `body_base64` when it is not UTF-8.
impl Serialize for DeadLetter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let headers: BTreeMap<&str, Vec<&str>> = self
            .headers
            .iter()
            .map(|(k, vs)| (k.as_ref(), vs.iter().map(|v| v.as_str()).collect()))
            .collect();
        let mut st = serializer.serialize_struct("DeadLetter", 19)?;
        st.serialize_field("sequence", &self.sequence)?;
        st.serialize_field("subject", &self.subject)?;
        st.serialize_field("stored_at", &rfc3339(&self.stored_at))?;
        st.serialize_field("original_subject", &self.original_subject)?;
        st.serialize_field("original_stream", &self.original_stream)?;
        st.serialize_field("original_sequence", &self.original_sequence)?;
        st.serialize_field("consumer", &self.consumer)?;
        st.serialize_field("deliveries", &self.deliveries)?;
        st.serialize_field("reason", &self.reason)?;
        st.serialize_field("error", &self.error)?;
        st.serialize_field("failed_at", &self.failed_at.as_ref().and_then(rfc3339))?;
        st.serialize_field("event_type", &self.event_type)?;
        st.serialize_field("organization", &self.organization)?;
        st.serialize_field("event_id", &self.event_id)?;
        st.serialize_field("decode_error", &self.decode_error)?;
        st.serialize_field("headers", &headers)?;
        st.serialize_field("body_len", &self.body.len())?;
        match self.body_text() {
            Some(text) => {
                st.serialize_field("body", text)?;
                st.skip_field("body_base64")?;
            }
            None => {
                st.skip_field("body")?;
                st.serialize_field("body_base64", &base64(&self.body))?;
            }
        }
        st.end()
    }
}

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn dlq_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Content-Type", "application/cloudevents+json");
        h.insert(headers::ORIGINAL_SUBJECT, "auth.user.created");
        h.insert(headers::ORIGINAL_STREAM, "AUTH_EVENTS");
        h.insert(headers::ORIGINAL_SEQUENCE, "42");
        h.insert(headers::CONSUMER, "catalog");
        h.insert(headers::DELIVERIES, "5");
        h.insert(headers::REASON, "max_deliveries");
        h.insert(headers::ERROR, "boom");
        h.insert(headers::FAILED_AT, "2026-01-02T03:04:05Z");
        h
    }

    #[test]
    fn reads_the_failure_record_and_the_event() {
        let ev = Event::builder("auth.user.created")
            .source("auth-service")
            .organization("org-1")
            .data(&serde_json::json!({"k": 1}))
            .build()
            .expect("valid event");
        let body = Bytes::from(ev.to_json_bytes());
        let dl = DeadLetter::from_stored(
            7,
            "dlq.auth.user.created".into(),
            OffsetDateTime::UNIX_EPOCH,
            dlq_headers(),
            body.clone(),
        );
        assert_eq!(dl.original_subject.as_deref(), Some("auth.user.created"));
        assert_eq!(dl.original_stream.as_deref(), Some("AUTH_EVENTS"));
        assert_eq!(dl.original_sequence, Some(42));
        assert_eq!(dl.consumer.as_deref(), Some("catalog"));
        assert_eq!(dl.deliveries, Some(5));
        assert_eq!(dl.reason, Some(DeadLetterReason::MaxDeliveries));
        assert_eq!(dl.error.as_deref(), Some("boom"));
        assert_eq!(
            dl.failed_at,
            Some(time::macros::datetime!(2026-01-02 03:04:05 UTC))
        );
        assert_eq!(dl.event_type.as_deref(), Some("auth.user.created"));
        assert_eq!(dl.organization.as_deref(), Some("org-1"));
        assert_eq!(dl.event_id.as_deref(), Some(ev.id()));
        assert_eq!(dl.decode_error, None);
        assert_eq!(dl.body, body);
        let json = serde_json::to_value(&dl).expect("serializes");
        assert_eq!(json["reason"], "max_deliveries");
        assert_eq!(json["failed_at"], "2026-01-02T03:04:05Z");
        assert_eq!(json["headers"]["Dlq-Consumer"][0], "catalog");
        assert!(json.get("body_base64").is_none());
    }

    #[test]
    fn a_bad_record_still_reads() {
        let mut h = HeaderMap::new();
        h.insert(headers::DELIVERIES, "many");
        h.insert(headers::REASON, "bored");
        h.insert(headers::FAILED_AT, "yesterday");
        let body = Bytes::from_static(b"{\"type\":\"auth.user.created\",\"organizationid\":\"o\"}");
        let dl = DeadLetter::from_stored(
            1,
            "dlq.auth.user.created".into(),
            OffsetDateTime::UNIX_EPOCH,
            h,
            body,
        );
        assert_eq!(dl.original_subject.as_deref(), Some("auth.user.created"));
        assert_eq!(dl.deliveries, None);
        assert_eq!(dl.reason, None);
        assert_eq!(dl.failed_at, None);
        assert_eq!(dl.event_type.as_deref(), Some("auth.user.created"));
        assert_eq!(dl.organization.as_deref(), Some("o"));
        assert!(dl.decode_error.is_some());

        let dl = DeadLetter::from_stored(
            2,
            "dlq.x".into(),
            OffsetDateTime::UNIX_EPOCH,
            HeaderMap::new(),
            Bytes::from_static(&[0xff, 0x00, 0x41]),
        );
        let json = serde_json::to_value(&dl).expect("serializes");
        assert_eq!(json["body_base64"], "/wBB");
        assert!(json.get("body").is_none());
    }

    /// The headers of a dead letter whose event came in binary mode, as the Go SDK sends it
    /// by default: no `ce-schemaversion`, so the consumer dead-lettered it as invalid.
    pub(crate) fn binary_dlq_headers(org_headers: &[(&str, &str)]) -> HeaderMap {
        let mut h = dlq_headers();
        h.insert(headers::REASON, "invalid");
        h.insert("Content-Type", "application/json");
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "go%2D1"),
            ("Ce-Source", "go-service"),
            ("ce-type", "auth.user.created"),
            ("ce-time", "2026-05-01T10:00:00Z"),
        ]
        .iter()
        .chain(org_headers)
        {
            h.append(*k, *v);
        }
        h
    }

    fn stored(h: HeaderMap, body: &'static [u8]) -> DeadLetter {
        DeadLetter::from_stored(
            9,
            "dlq.auth.user.created".into(),
            OffsetDateTime::UNIX_EPOCH,
            h,
            Bytes::from_static(body),
        )
    }

    #[test]
    fn reads_a_binary_mode_event_from_its_ce_headers() {
        // The body is `data`, a JSON object without the attributes: they are in the headers.
        let dl = stored(
            binary_dlq_headers(&[("CE-OrganizationId", "org-7")]),
            br#"{"user_id":"u-1","type":"not.this.one"}"#,
        );
        assert!(
            dl.decode_error
                .as_deref()
                .is_some_and(|e| e.contains("schemaversion")),
            "{:?}",
            dl.decode_error
        );
        assert_eq!(dl.event_type.as_deref(), Some("auth.user.created"));
        assert_eq!(dl.organization.as_deref(), Some("org-7"));
        assert_eq!(dl.event_id.as_deref(), Some("go-1"), "percent-decoded");
        let json = serde_json::to_value(&dl).expect("serializes");
        assert_eq!(json["organization"], "org-7");

        // A valid binary-mode event decodes whole.
        let mut h = binary_dlq_headers(&[("ce-organizationid", "org-7")]);
        h.insert("ce-schemaversion", "1.0");
        let dl = stored(h, br#"{"user_id":"u-1"}"#);
        assert_eq!(dl.decode_error, None);
        assert_eq!(dl.organization.as_deref(), Some("org-7"));
        assert_eq!(dl.event_id.as_deref(), Some("go-1"));
    }

    #[test]
    fn an_ambiguous_binary_attribute_reads_as_none() {
        let h = binary_dlq_headers(&[
            ("ce-organizationid", "org-1"),
            ("CE-ORGANIZATIONID", "org-2"),
        ]);
        for _ in 0..8 {
            let dl = stored(h.clone(), b"{}");
            assert_eq!(dl.organization, None);
            assert_eq!(dl.event_type.as_deref(), Some("auth.user.created"));
            assert!(dl.decode_error.is_some());
        }
    }
}
