//! One stored message by sequence, read through the JSON `$JS.API.STREAM.MSG.GET` API
//! whatever its header block holds.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::connection::UNPARSED_HEADERS_BASE64;
use async_nats::header::HeaderValue;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream::RawMessage;
use async_nats::jetstream::{self, ErrorCode};
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

use crate::error::BoxError;

/// Why [`get_stored`] could not read a message.
#[derive(Debug)]
pub(super) enum GetFailure {
    /// The stream does not exist.
    StreamNotFound,
    /// No answer within the bound.
    Timeout,
    /// Any other failure of the request.
    Other(BoxError),
}

#[derive(Serialize)]
struct GetRequest {
    seq: u64,
}

#[derive(Deserialize)]
struct GetReply {
    message: RawMessage,
}

/// The message at `sequence` of `stream`, `None` if there is none (never stored, deleted,
/// or expired). A header block the client cannot parse (not UTF-8, a line without a colon)
/// does not fail the read: the message comes back with the single header
/// `Nats-Unparsed-Headers-Base64` holding the raw block, as the patched client delivers it
/// from a consumer (vendor/async-nats/PATCH.md), so every read path sees the same message.
pub(super) async fn get_stored(
    js: &jetstream::Context,
    stream: &str,
    sequence: u64,
    bound: Duration,
) -> Result<Option<StreamMessage>, GetFailure> {
    let body = GetRequest { seq: sequence };
    let request = js.request::<_, _, Response<GetReply>>(format!("STREAM.MSG.GET.{stream}"), &body);
    let reply = match timeout(bound, request).await {
        Err(_) => return Err(GetFailure::Timeout),
        Ok(Err(e)) => return Err(GetFailure::Other(Box::new(e))),
        Ok(Ok(reply)) => reply,
    };
    match reply {
        Response::Ok(GetReply { message }) => decode(message).map(Some).map_err(GetFailure::Other),
        Response::Err { error } => match error.error_code() {
            ErrorCode::NO_MESSAGE_FOUND => Ok(None),
            ErrorCode::STREAM_NOT_FOUND => Err(GetFailure::StreamNotFound),
            _ => Err(GetFailure::Other(Box::new(error))),
        },
    }
}

/// Decodes the base64 body and headers; an unparsable header block becomes the sentinel
/// header (its value is the block as the server sent it: standard, padded base64).
fn decode(raw: RawMessage) -> Result<StreamMessage, BoxError> {
    let Some(block) = raw.headers.clone() else {
        return StreamMessage::try_from(raw);
    };
    if let Ok(message) = StreamMessage::try_from(raw.clone()) {
        return Ok(message);
    }
    let mut message = StreamMessage::try_from(RawMessage {
        headers: None,
        ..raw
    })?;
    let value = block.parse::<HeaderValue>()?;
    let mut headers = HeaderMap::new();
    headers.insert(UNPARSED_HEADERS_BASE64, value);
    message.headers = headers;
    Ok(message)
}
