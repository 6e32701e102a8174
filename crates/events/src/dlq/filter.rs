//! [`DeadLetterFilter`]: which dead letters a list, replay or purge applies to.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{DLQ_SUBJECT_PREFIX, DeadLetter, DeadLetterReason};
use crate::names::{ConsumerName, EventType, OrganizationId, StreamName};

/// Selects dead letters; every field set must match (an empty filter matches all).
///
/// Deserializes from JSON/TOML with unknown fields refused and every name validated, so a
/// request body can be taken as is:
/// `{ "event_type": "auth.user.created", "reason": "permanent", "failed_from": "2026-01-01T00:00:00Z" }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DeadLetterFilter {
    /// `Dlq-Original-Stream` equals this.
    pub original_stream: Option<StreamName>,
    /// The original subject (which is the event type, CONTRACT.md §1) equals this. Also
    /// narrows the read to the subject `dlq.<type>`, so it costs nothing to scan the rest.
    pub event_type: Option<EventType>,
    /// The event's `organizationid` equals this: from the body of a structured-mode event,
    /// from the `ce-` headers of a binary-mode one. Dead letters whose event carries none,
    /// or carries it twice (ambiguous), never match.
    pub organization: Option<OrganizationId>,
    /// `Dlq-Reason` equals this.
    pub reason: Option<DeadLetterReason>,
    /// `Dlq-Consumer` equals this.
    pub consumer: Option<ConsumerName>,
    /// `Dlq-Failed-At` at or after this.
    #[serde(with = "time::serde::rfc3339::option")]
    pub failed_from: Option<OffsetDateTime>,
    /// `Dlq-Failed-At` before this.
    #[serde(with = "time::serde::rfc3339::option")]
    pub failed_to: Option<OffsetDateTime>,
    /// Stored in the dead-letter stream at or after this (also where the read starts).
    #[serde(with = "time::serde::rfc3339::option")]
    pub stored_from: Option<OffsetDateTime>,
    /// Stored before this (the read stops at the first dead letter stored at or after it).
    #[serde(with = "time::serde::rfc3339::option")]
    pub stored_to: Option<OffsetDateTime>,
}

impl DeadLetterFilter {
    /// An empty filter: matches every dead letter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only dead letters from this stream.
    pub fn original_stream(mut self, stream: StreamName) -> Self {
        self.original_stream = Some(stream);
        self
    }

    /// Only dead letters of this event type.
    pub fn event_type(mut self, event_type: EventType) -> Self {
        self.event_type = Some(event_type);
        self
    }

    /// Only dead letters of this organization.
    pub fn organization(mut self, organization: OrganizationId) -> Self {
        self.organization = Some(organization);
        self
    }

    /// Only dead letters with this reason.
    pub fn reason(mut self, reason: DeadLetterReason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Only dead letters written by this consumer (group).
    pub fn consumer(mut self, consumer: ConsumerName) -> Self {
        self.consumer = Some(consumer);
        self
    }

    /// Only dead letters whose last failure is in `[from, to)` (either end open if `None`).
    pub fn failed_between(
        mut self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Self {
        self.failed_from = from;
        self.failed_to = to;
        self
    }

    /// Only dead letters stored in `[from, to)` (either end open if `None`).
    pub fn stored_between(
        mut self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Self {
        self.stored_from = from;
        self.stored_to = to;
        self
    }

    /// True if no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks that each time range is ordered; returns the problem in words.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (name, from, to) in [
            ("failed", self.failed_from, self.failed_to),
            ("stored", self.stored_from, self.stored_to),
        ] {
            if let (Some(f), Some(t)) = (from, to)
                && f >= t
            {
                return Err(format!("{name}_from must be before {name}_to"));
            }
        }
        Ok(())
    }

    /// The subject filter of the read: `dlq.<type>` for a type, else every dead letter.
    pub(crate) fn subject(&self) -> String {
        match &self.event_type {
            Some(t) => format!("{DLQ_SUBJECT_PREFIX}{}", t.as_str()),
            None => format!("{DLQ_SUBJECT_PREFIX}>"),
        }
    }

    /// True if `dl` passes every set field.
    pub fn matches(&self, dl: &DeadLetter) -> bool {
        fn eq(want: Option<&str>, got: Option<&str>) -> bool {
            want.is_none_or(|w| got == Some(w))
        }
        fn within(
            t: Option<OffsetDateTime>,
            from: Option<OffsetDateTime>,
            to: Option<OffsetDateTime>,
        ) -> bool {
            if from.is_none() && to.is_none() {
                return true;
            }
            t.is_some_and(|t| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e))
        }
        eq(
            self.original_stream.as_ref().map(|s| s.as_str()),
            dl.original_stream.as_deref(),
        ) && eq(
            self.event_type.as_ref().map(|s| s.as_str()),
            dl.original_subject.as_deref(),
        ) && eq(
            self.organization.as_ref().map(|s| s.as_str()),
            dl.organization.as_deref(),
        ) && eq(
            self.consumer.as_ref().map(|s| s.as_str()),
            dl.consumer.as_deref(),
        ) && self.reason.is_none_or(|r| dl.reason == Some(r))
            && within(dl.failed_at, self.failed_from, self.failed_to)
            && within(Some(dl.stored_at), self.stored_from, self.stored_to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::headers;
    use async_nats::HeaderMap;
    use time::macros::datetime;

    fn letter() -> DeadLetter {
        let mut h = HeaderMap::new();
        h.insert(headers::ORIGINAL_SUBJECT, "auth.user.created");
        h.insert(headers::ORIGINAL_STREAM, "AUTH_EVENTS");
        h.insert(headers::CONSUMER, "catalog");
        h.insert(headers::REASON, "permanent");
        h.insert(headers::FAILED_AT, "2026-01-01T10:00:00Z");
        DeadLetter::from_stored(
            3,
            "dlq.auth.user.created".into(),
            datetime!(2026-01-01 10:00:01 UTC),
            h,
            bytes::Bytes::from_static(b"{\"organizationid\":\"org-1\"}"),
        )
    }

    #[test]
    fn every_field_narrows() {
        let dl = letter();
        let name = |s: &str| StreamName::new(s).expect("valid");
        assert!(DeadLetterFilter::new().matches(&dl));
        assert!(
            DeadLetterFilter::new()
                .original_stream(name("AUTH_EVENTS"))
                .matches(&dl)
        );
        assert!(
            !DeadLetterFilter::new()
                .original_stream(name("X"))
                .matches(&dl)
        );
        let ty = |s: &str| EventType::new(s).expect("valid");
        assert!(
            DeadLetterFilter::new()
                .event_type(ty("auth.user.created"))
                .matches(&dl)
        );
        assert!(
            !DeadLetterFilter::new()
                .event_type(ty("auth.user.deleted"))
                .matches(&dl)
        );
        let org = |s: &str| OrganizationId::new(s).expect("valid");
        assert!(
            DeadLetterFilter::new()
                .organization(org("org-1"))
                .matches(&dl)
        );
        assert!(
            !DeadLetterFilter::new()
                .organization(org("org-2"))
                .matches(&dl)
        );
        assert!(
            DeadLetterFilter::new()
                .reason(DeadLetterReason::Permanent)
                .matches(&dl)
        );
        assert!(
            !DeadLetterFilter::new()
                .reason(DeadLetterReason::Invalid)
                .matches(&dl)
        );
        let c = |s: &str| ConsumerName::new(s).expect("valid");
        assert!(DeadLetterFilter::new().consumer(c("catalog")).matches(&dl));
        assert!(!DeadLetterFilter::new().consumer(c("other")).matches(&dl));
        let t = datetime!(2026-01-01 10:00:00 UTC);
        assert!(
            DeadLetterFilter::new()
                .failed_between(Some(t), None)
                .matches(&dl)
        );
        assert!(
            !DeadLetterFilter::new()
                .failed_between(None, Some(t))
                .matches(&dl)
        );
        let s = datetime!(2026-01-01 10:00:01 UTC);
        assert!(
            DeadLetterFilter::new()
                .stored_between(Some(s), None)
                .matches(&dl)
        );
        assert!(
            !DeadLetterFilter::new()
                .stored_between(None, Some(s))
                .matches(&dl)
        );
    }

    #[test]
    fn organization_matches_binary_mode_dead_letters() {
        let org = |s: &str| OrganizationId::new(s).expect("valid");
        let ty = EventType::new("auth.user.created").expect("valid");
        let letter = |orgs: &[(&str, &str)]| {
            DeadLetter::from_stored(
                4,
                "dlq.auth.user.created".into(),
                datetime!(2026-01-01 10:00:01 UTC),
                crate::dlq::record::tests::binary_dlq_headers(orgs),
                bytes::Bytes::from_static(b"{\"user_id\":\"u-1\"}"),
            )
        };
        let dl = letter(&[("ce-organizationid", "org-7")]);
        let f = DeadLetterFilter::new().organization(org("org-7"));
        assert!(f.matches(&dl));
        assert!(f.clone().event_type(ty).matches(&dl));
        assert!(
            !DeadLetterFilter::new()
                .organization(org("org-1"))
                .matches(&dl)
        );
        // Two tenants in one event: it belongs to neither.
        let dl = letter(&[
            ("ce-organizationid", "org-7"),
            ("Ce-OrganizationId", "org-1"),
        ]);
        assert!(!f.matches(&dl));
        assert!(
            !DeadLetterFilter::new()
                .organization(org("org-1"))
                .matches(&dl)
        );
    }

    #[test]
    fn json_is_validated() {
        let f: DeadLetterFilter = serde_json::from_str(
            r#"{"event_type":"auth.user.created","reason":"invalid","stored_from":"2026-01-01T00:00:00Z"}"#,
        )
        .expect("valid filter");
        assert_eq!(f.reason, Some(DeadLetterReason::Invalid));
        assert!(serde_json::from_str::<DeadLetterFilter>(r#"{"event_type":"AUTH"}"#).is_err());
        assert!(serde_json::from_str::<DeadLetterFilter>(r#"{"colour":"red"}"#).is_err());
        assert!(serde_json::from_str::<DeadLetterFilter>(r#"{"failed_from":"monday"}"#).is_err());
        let t = datetime!(2026-01-01 00:00 UTC);
        assert!(
            DeadLetterFilter::new()
                .failed_between(Some(t), Some(t))
                .check()
                .is_err()
        );
        assert_eq!(DeadLetterFilter::new().subject(), "dlq.>");
    }
}
