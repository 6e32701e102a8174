//! The wire form of an event: [`Wire`] (subject, headers, body, size), [`prepare`] (the checks
//! the event type cannot make by itself), the size the server counts, and the headers a
//! record read back from the spool is sent with.

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use super::error::PublishError;
use crate::event::{CONTENT_TYPE_HEADER, Event, MSG_ID_HEADER, STRUCTURED_CONTENT_TYPE};
use crate::names::Subject;

/// An event ready for the wire.
#[derive(Debug, Clone)]
pub(crate) struct Wire {
    pub(crate) event_id: String,
    /// Shared bytes: a try clones it without copying.
    pub(crate) subject: async_nats::Subject,
    /// Empty once [`Wire::take_message`] moved them out; a later try rebuilds them.
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
    pub(crate) size: usize,
}

impl Wire {
    pub(crate) fn message(&self) -> PublishMessage {
        PublishMessage::build()
            .payload(self.payload.clone())
            .headers(self.headers_for_try())
    }

    /// The headers of a try: a copy, or, once the first try moved them out, the same two
    /// headers built again.
    pub(crate) fn headers_for_try(&self) -> HeaderMap {
        if self.headers.is_empty() {
            spool_headers(&self.event_id).unwrap_or_default()
        } else {
            self.headers.clone()
        }
    }

    /// The message of the first try, moving the headers out instead of cloning them.
    pub(crate) fn take_message(&mut self) -> PublishMessage {
        PublishMessage::build()
            .payload(self.payload.clone())
            .headers(std::mem::take(&mut self.headers))
    }
}

/// Size of headers plus body as the server counts it against `max_payload`.
pub(crate) fn wire_size(headers: &HeaderMap, payload_len: usize) -> usize {
    crate::headers::block_len(headers) + payload_len
}

/// Checks what the event type cannot guarantee by itself and builds the wire form: the
/// subject has no wildcard or reserved prefix, and the message fits `max_payload` (0 = not
/// known, not checked). Shared with [`RecordingPublisher`](super::RecordingPublisher).
pub(crate) fn prepare(event: &Event, max_payload: usize) -> Result<Wire, PublishError> {
    let enc = event.encode();
    if let Err(e) = Subject::new(&enc.subject) {
        return Err(PublishError::InvalidSubject {
            subject: enc.subject,
            reason: e.rule,
        });
    }
    let size = wire_size(&enc.headers, enc.payload.len());
    if max_payload > 0 && size > max_payload {
        return Err(PublishError::PayloadTooLarge {
            event_id: event.id().to_owned(),
            size,
            limit: max_payload,
        });
    }
    Ok(Wire {
        event_id: event.id().to_owned(),
        subject: enc.subject.into(),
        headers: enc.headers,
        payload: enc.payload,
        size,
    })
}

/// True if a message of `size` bytes still fits `max_payload` with the batch headers.
pub(crate) fn fits_batch(size: usize, max_payload: usize) -> bool {
    max_payload == 0 || size + super::batch::BATCH_HEADER_ALLOWANCE <= max_payload
}

/// Headers for a spooled record: the same `Content-Type` and `Nats-Msg-Id` as
/// [`Event::encode`](crate::Event::encode) gives.
pub(crate) fn spool_headers(msg_id: &str) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE_HEADER,
        STRUCTURED_CONTENT_TYPE
            .parse::<async_nats::HeaderValue>()
            .ok()?,
    );
    h.insert(
        MSG_ID_HEADER,
        msg_id.parse::<async_nats::HeaderValue>().ok()?,
    );
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event::builder("auth.user.created")
            .source("auth-service")
            .organization("org-1")
            .data(&serde_json::json!({"user": "u1"}))
            .build()
            .unwrap()
    }

    #[test]
    fn wire_size_matches_header_serialization() {
        let ev = event();
        let enc = ev.encode();
        let mut expected = String::from("NATS/1.0\r\n");
        for (k, vs) in enc.headers.iter() {
            for v in vs {
                expected.push_str(&format!("{}: {}\r\n", AsRef::<str>::as_ref(k), v.as_str()));
            }
        }
        expected.push_str("\r\n");
        assert_eq!(
            wire_size(&enc.headers, enc.payload.len()),
            expected.len() + enc.payload.len()
        );
    }

    #[test]
    fn prepare_refuses_oversized_payload_with_size_and_limit() {
        let ev = event();
        match prepare(&ev, 100) {
            Err(PublishError::PayloadTooLarge { size, limit, .. }) => {
                assert_eq!(limit, 100);
                assert!(size > 100);
            }
            other => panic!("unexpected {other:?}"),
        }
        prepare(&ev, 0).unwrap();
        prepare(&ev, 1 << 20).unwrap();
    }

    #[test]
    fn retry_after_first_try_sends_the_same_headers() {
        let ev = event();
        let mut wire = prepare(&ev, 0).unwrap();
        let before = wire.headers.clone();
        let _first = wire.take_message();
        assert!(wire.headers.is_empty(), "moved out, not cloned");
        let pairs = |h: &HeaderMap| {
            let mut v: Vec<(String, String)> = h
                .iter()
                .flat_map(|(k, vs)| {
                    vs.iter()
                        .map(|v| (AsRef::<str>::as_ref(k).to_owned(), v.as_str().to_owned()))
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(pairs(&wire.headers_for_try()), pairs(&before));
    }

    #[test]
    fn batch_headers_must_fit_max_payload() {
        assert!(fits_batch(100, 0));
        assert!(fits_batch(
            1000,
            1000 + super::super::batch::BATCH_HEADER_ALLOWANCE
        ));
        assert!(!fits_batch(
            1001,
            1000 + super::super::batch::BATCH_HEADER_ALLOWANCE
        ));
    }

    #[test]
    fn spool_headers_match_encode() {
        let ev = event();
        let enc = ev.encode();
        let h = spool_headers(ev.id()).unwrap();
        assert_eq!(
            h.get(MSG_ID_HEADER).map(|v| v.as_str().to_owned()),
            enc.headers
                .get(MSG_ID_HEADER)
                .map(|v| v.as_str().to_owned())
        );
        assert_eq!(
            h.get(CONTENT_TYPE_HEADER).map(|v| v.as_str().to_owned()),
            enc.headers
                .get(CONTENT_TYPE_HEADER)
                .map(|v| v.as_str().to_owned())
        );
    }
}
