//! Writing dead letters (CONTRACT.md §4).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream;
use bytes::Bytes;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::dlq::{self, DeadLetterReason, headers as h};
use crate::headers::{self, value};
use crate::raw_headers;

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

/// The dead letter's headers: the original ones (minus server directives), the failure
/// record, and `Nats-Msg-Id` = `<stream>:<sequence>:<consumer>`.
pub(crate) fn dead_letter_headers(
    original: Option<&HeaderMap>,
    rec: &FailureRecord<'_>,
) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(raw) = raw_headers::unparsed_base64(original) {
        // The block could not be parsed: none of it is copied, all of it is kept.
        out.insert(h::ORIGINAL_HEADERS_BASE64, value(raw));
    } else if let Some(original) = original {
        // The server directives of the first publish would act on the DLQ stream.
        out = headers::copy_except(original, &[headers::PUBLISH_CONTROLS]);
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
    let mut headers = dead_letter_headers(original_headers, rec);
    let max_payload = js.client().server_info().max_payload;
    let payload = fit_body(&mut headers, payload, max_payload);
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

/// The dead letter's body: the original one if it fits `max_payload` (0: unknown) with
/// `headers`, else empty, with `Dlq-Body-Omitted` = the original's length (CONTRACT.md §4).
fn fit_body(headers: &mut HeaderMap, payload: Bytes, max_payload: usize) -> Bytes {
    if max_payload == 0 || headers::block_len(headers) + payload.len() <= max_payload {
        return payload;
    }
    headers.insert(h::BODY_OMITTED, value(&payload.len().to_string()));
    Bytes::new()
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

    fn record() -> FailureRecord<'static> {
        FailureRecord {
            subject: "auth.user.created",
            stream: "AUTH_EVENTS",
            sequence: 7,
            consumer: "c",
            deliveries: 1,
            reason: DeadLetterReason::Undecodable,
            error: "e",
            failed_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn unparsed_headers_are_kept_raw_and_not_copied() {
        let mut orig = HeaderMap::new();
        orig.insert(raw_headers::UNPARSED_HEADERS_BASE64, "TkFUUy8xLjANCg0K");
        let hm = dead_letter_headers(Some(&orig), &record());
        assert_eq!(
            hm.get(h::ORIGINAL_HEADERS_BASE64).map(|v| v.as_str()),
            Some("TkFUUy8xLjANCg0K")
        );
        assert!(hm.get(raw_headers::UNPARSED_HEADERS_BASE64).is_none());
        let record_only = dead_letter_headers(None, &record());
        assert_eq!(
            hm.iter().count(),
            record_only.iter().count() + 1,
            "the record plus the raw block, nothing else"
        );
    }

    #[test]
    fn a_body_that_does_not_fit_is_omitted_with_its_length() {
        let base = dead_letter_headers(None, &record());
        let body = Bytes::from(vec![b'x'; 100]);
        let exact = headers::block_len(&base) + body.len();
        let mut fits = base.clone();
        assert_eq!(fit_body(&mut fits, body.clone(), exact), body);
        assert!(fits.get(h::BODY_OMITTED).is_none());
        let mut over = base.clone();
        assert!(fit_body(&mut over, body.clone(), exact - 1).is_empty());
        assert_eq!(over.get(h::BODY_OMITTED).map(|v| v.as_str()), Some("100"));
        let mut unknown = base;
        assert_eq!(fit_body(&mut unknown, body.clone(), 0), body);
    }
}
