//! Messages whose header block the NATS client could not parse (CONTRACT.md §2, §4).
//!
//! Any producer can store a header block that is not UTF-8 (nats-py with a header value
//! `b"\x80\xff"`) or not `name: value` lines. The async-nats carried in `vendor/async-nats`
//! (see its `PATCH.md`) delivers such a message with a header map holding exactly one
//! header, [`UNPARSED_HEADERS_BASE64`]: the raw block, base64. A parsed block never holds
//! that name, so no publisher can forge it.
//!
//! Every reader of messages goes through [`decode_message`]: such a message is
//! [`DecodeError::Undecodable`] (the subscriber dead-letters it at once, with the raw block
//! in `Dlq-Original-Headers-Base64`), never an event decoded from its body alone.

use async_nats::HeaderMap;

use crate::event::{DecodeError, Event};

/// Name of the header that carries, base64 (standard alphabet, padded), the raw header
/// block of a message the client could not parse; equal to the patched client's
/// `async_nats::connection::UNPARSED_HEADERS_BASE64`.
pub const UNPARSED_HEADERS_BASE64: &str = "Nats-Unparsed-Headers-Base64";

/// A base64 value that is not standard padded base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64")]
#[non_exhaustive]
pub struct Base64Error(#[source] base64::DecodeError);

/// The raw header block, base64 as delivered, if the client could not parse the message's
/// headers.
pub fn unparsed_base64(headers: Option<&HeaderMap>) -> Option<&str> {
    headers?.get(UNPARSED_HEADERS_BASE64).map(|v| v.as_str())
}

/// The raw header block (from `NATS/1.0` to the blank line), if the client could not
/// parse the message's headers.
///
/// # Errors
/// [`Base64Error`] if the header's value is not base64 (impossible from the patched
/// client, which is the only one that sets it).
pub fn unparsed_block(headers: Option<&HeaderMap>) -> Option<Result<Vec<u8>, Base64Error>> {
    unparsed_base64(headers).map(decode_base64)
}

/// [`Event::decode_message`], except that a message whose header block could not be
/// parsed is [`DecodeError::Undecodable`] whatever its body holds.
///
/// # Errors
/// As [`Event::decode_message`].
pub fn decode_message(
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<Event, DecodeError> {
    if unparsed_base64(headers).is_some() {
        return Err(DecodeError::Undecodable(format!(
            "the header block could not be parsed (not UTF-8 or not `name: value` lines); \
             the raw block, base64, is in the `{UNPARSED_HEADERS_BASE64}` header"
        )));
    }
    Event::decode_message(subject, headers, payload)
}

/// Decodes standard base64 with padding (RFC 4648 §4).
///
/// # Errors
/// [`Base64Error`] naming what breaks the encoding.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, Base64Error> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(Base64Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_patched_clients() {
        assert_eq!(
            UNPARSED_HEADERS_BASE64,
            async_nats::connection::UNPARSED_HEADERS_BASE64
        );
    }

    #[test]
    fn base64_round_trips_and_rejects_garbage() {
        // RFC 4648 §10, and bytes that are not UTF-8.
        let vectors: [(&[u8], &str); 6] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\x80\xff\x00\r\n", "gP8ADQo="),
        ];
        for (bytes, b64) in vectors {
            assert_eq!(decode_base64(b64).unwrap(), bytes, "{b64}");
        }
        for garbage in ["Zm9", "Zm9*", "Zg==Zg==", "Z==="] {
            assert!(decode_base64(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn an_unparsed_block_is_undecodable_whatever_the_body() {
        let ev = Event::builder("auth.user.created")
            .source("t")
            .organization("o")
            .data(&serde_json::json!({}))
            .build()
            .unwrap();
        let body = ev.to_json_bytes();
        let mut h = HeaderMap::new();
        h.insert(UNPARSED_HEADERS_BASE64, "TkFUUy8xLjANClg6IIANCg0K");
        let err = decode_message("auth.user.created", Some(&h), &body).unwrap_err();
        assert!(matches!(err, DecodeError::Undecodable(ref m) if m.contains("header block")));
        assert_eq!(
            unparsed_block(Some(&h)).unwrap().unwrap(),
            b"NATS/1.0\r\nX: \x80\r\n\r\n"
        );
        assert!(decode_message("auth.user.created", None, &body).is_ok());
        assert!(unparsed_block(None).is_none());
    }
}
