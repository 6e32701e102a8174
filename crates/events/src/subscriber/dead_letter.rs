//! Writing dead letters (CONTRACT.md §4).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::{HeaderValue, NATS_MESSAGE_ID};
use async_nats::jetstream;
use bytes::Bytes;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::dlq::{self, DeadLetterReason, headers as h};

/// Where a failed message came from and why it failed.
#[derive(Debug, Clone)]
pub(crate) struct FailureRecord<'a> {
    pub(crate) subject: &'a str,
    pub(crate) stream: &'a str,
    pub(crate) sequence: u64,
    pub(crate) consumer: &'a str,
    pub(crate) deliveries: u64,
    pub(crate) reason: DeadLetterReason,
    pub(crate) error: &'a str,
    pub(crate) failed_at: OffsetDateTime,
}

/// Why a dead letter was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeadLetterError {
    /// The publish was refused or failed (the DLQ stream may be missing or full).
    #[error("dead-letter publish to {subject} failed")]
    Publish {
        /// The dead-letter subject.
        subject: String,
        /// The cause.
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
    /// No ack from the DLQ stream in time.
    #[error("no ack for the dead letter on {subject} within {timeout:?}")]
    Timeout {
        /// The dead-letter subject.
        subject: String,
        /// How long we waited.
        timeout: Duration,
    },
}

/// Headers that instruct the server (expectations, rollups, batches, TTLs, the message id)
/// would act on the DLQ stream instead of describing the message, so they are not copied.
fn is_server_directive(name: &str) -> bool {
    name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-")
}

fn value(s: &str) -> HeaderValue {
    // `parse` never panics; values with CR/LF (impossible here: every value is built from
    // validated names, numbers and `error_header_value`, which strips control characters)
    // fall back to an empty value rather than a panic in `From<&str>`.
    s.parse::<HeaderValue>()
        .unwrap_or_else(|_| HeaderValue::new())
}

/// The dead letter's headers: the original ones (minus server directives), the failure
/// record, and `Nats-Msg-Id` = `<stream>:<sequence>:<consumer>`.
pub(crate) fn dead_letter_headers(
    original: Option<&HeaderMap>,
    rec: &FailureRecord<'_>,
) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(original) = original {
        for (name, values) in original.iter() {
            let n: &str = name.as_ref();
            if is_server_directive(n) {
                continue;
            }
            for v in values {
                out.append(name.clone(), v.clone());
            }
        }
    }
    let failed_at = rec
        .failed_at
        .format(&Rfc3339)
        .unwrap_or_else(|_| rec.failed_at.unix_timestamp().to_string());
    out.insert(h::ORIGINAL_SUBJECT, value(rec.subject));
    out.insert(h::ORIGINAL_STREAM, value(rec.stream));
    out.insert(h::ORIGINAL_SEQUENCE, value(&rec.sequence.to_string()));
    out.insert(h::CONSUMER, value(rec.consumer));
    out.insert(h::DELIVERIES, value(&rec.deliveries.to_string()));
    out.insert(h::REASON, value(rec.reason.as_str()));
    out.insert(h::ERROR, value(&dlq::error_header_value(rec.error)));
    out.insert(h::FAILED_AT, value(&failed_at));
    out.insert(
        NATS_MESSAGE_ID,
        value(&dlq::dead_letter_msg_id(
            rec.stream,
            rec.sequence,
            rec.consumer,
        )),
    );
    out
}

/// `dlq.<original subject>`.
pub(crate) fn dead_letter_subject(original: &str) -> String {
    format!("{}{original}", dlq::DLQ_SUBJECT_PREFIX)
}

/// Publishes the dead letter and waits for the DLQ stream's ack.
pub(crate) async fn publish_dead_letter(
    js: &jetstream::Context,
    original_headers: Option<&HeaderMap>,
    payload: Bytes,
    rec: &FailureRecord<'_>,
    timeout: Duration,
) -> Result<(), DeadLetterError> {
    let subject = dead_letter_subject(rec.subject);
    let headers = dead_letter_headers(original_headers, rec);
    let publish = async {
        let ack = js
            .publish_with_headers(subject.clone(), headers, payload)
            .await?;
        ack.await
    };
    match tokio::time::timeout(timeout, publish).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(DeadLetterError::Publish { subject, source }),
        Err(_) => Err(DeadLetterError::Timeout { subject, timeout }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_the_original_and_add_the_record() {
        let mut orig = HeaderMap::new();
        orig.insert("Content-Type", "application/cloudevents+json");
        orig.insert(NATS_MESSAGE_ID, "evt-1");
        orig.insert("Nats-Expected-Last-Sequence", "7");
        orig.insert(h::REASON, "permanent");
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let rec = FailureRecord {
            subject: "auth.user.created",
            stream: "AUTH_EVENTS",
            sequence: 42,
            consumer: "catalog__auth_user_any",
            deliveries: 5,
            reason: DeadLetterReason::MaxDeliveries,
            error: "line one\r\nline two",
            failed_at: at,
        };
        let hm = dead_letter_headers(Some(&orig), &rec);
        let get = |n: &str| hm.get(n).map(|v| v.as_str().to_owned());
        assert_eq!(
            get("Content-Type").as_deref(),
            Some("application/cloudevents+json")
        );
        assert_eq!(get("Nats-Expected-Last-Sequence"), None);
        assert_eq!(
            get(NATS_MESSAGE_ID.as_ref()).as_deref(),
            Some("AUTH_EVENTS:42:catalog__auth_user_any")
        );
        assert_eq!(
            get(h::ORIGINAL_SUBJECT).as_deref(),
            Some("auth.user.created")
        );
        assert_eq!(get(h::ORIGINAL_STREAM).as_deref(), Some("AUTH_EVENTS"));
        assert_eq!(get(h::ORIGINAL_SEQUENCE).as_deref(), Some("42"));
        assert_eq!(get(h::CONSUMER).as_deref(), Some("catalog__auth_user_any"));
        assert_eq!(get(h::DELIVERIES).as_deref(), Some("5"));
        assert_eq!(get(h::REASON).as_deref(), Some("max_deliveries"));
        assert_eq!(get(h::ERROR).as_deref(), Some("line one  line two"));
        assert_eq!(get(h::FAILED_AT).as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(
            dead_letter_subject("auth.user.created"),
            "dlq.auth.user.created"
        );
    }
}
