//! What a handler knows about a delivery besides the event: where it is stored, which
//! delivery it is, the message as it arrived, and a read-only view of the shutdown.

use std::fmt;
use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// What a handler knows about the delivery besides the event.
///
/// The message as it arrived is there too, without a copy ([`payload`](Self::payload),
/// [`headers`](Self::headers)): to check a signature over the exact bytes, or forward the
/// message as it came. Cloning a context clones no bytes (the message is shared).
#[derive(Clone)]
#[non_exhaustive]
pub struct DeliveryContext {
    /// Which delivery this is, 1 for the first.
    pub delivered: u64,
    /// Sequence of the message in its stream.
    pub stream_sequence: u64,
    /// Sequence of this delivery in the consumer.
    pub consumer_sequence: u64,
    /// The stream the message is stored in.
    pub stream: String,
    /// The durable consumer (group) delivering it.
    pub consumer: String,
    /// The subject the message was published on.
    pub subject: String,
    /// When the stream stored the message.
    pub published: OffsetDateTime,
    /// Whether the subscriber is shutting down. Read-only: a handler sees the shutdown
    /// begin but cannot start it (stop a subscriber through its
    /// [`RunningSubscriber`](super::RunningSubscriber) or its run's token). The handler's
    /// result still settles the message, so a handler may finish, or stop at a safe point
    /// and return a transient error (the message comes back later).
    pub shutdown: ShutdownSignal,
    /// The message as it arrived (shared with the delivery that settles it).
    raw: Arc<dyn RawMessage>,
}

impl DeliveryContext {
    /// The context of a delivery of `raw`; `shutdown` is the run's token, seen read-only.
    pub(crate) fn new(
        meta: Meta,
        stream: String,
        consumer: String,
        shutdown: &CancellationToken,
        raw: Arc<dyn RawMessage>,
    ) -> Self {
        Self {
            delivered: meta.delivered,
            stream_sequence: meta.stream_sequence,
            consumer_sequence: meta.consumer_sequence,
            subject: raw.message().subject.to_string(),
            stream,
            consumer,
            published: meta.published,
            shutdown: ShutdownSignal(shutdown.clone()),
            raw,
        }
    }

    /// The message body as stored, byte for byte (a cheap, reference-counted clone away
    /// from an owned `Bytes`): for a structured-mode event the JSON of the whole event, for
    /// a binary-mode one its `data`.
    pub fn payload(&self) -> &Bytes {
        &self.raw.message().payload
    }

    /// The message's NATS headers as stored (`Nats-Msg-Id`, `Content-Type`, `ce-*`, your
    /// own), if it has any.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.raw.message().headers.as_ref()
    }

    /// One header's value, if the message has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()?.get(name).map(|v| v.as_str())
    }
}

impl fmt::Debug for DeliveryContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryContext")
            .field("delivered", &self.delivered)
            .field("stream_sequence", &self.stream_sequence)
            .field("consumer_sequence", &self.consumer_sequence)
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("subject", &self.subject)
            .field("published", &self.published)
            .field("shutdown", &self.shutdown)
            .field("payload_len", &self.payload().len())
            .finish_non_exhaustive()
    }
}

/// The delivery metadata of a pulled message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) delivered: u64,
    pub(crate) stream_sequence: u64,
    pub(crate) consumer_sequence: u64,
    pub(crate) published: OffsetDateTime,
}

/// A delivered message the context can show: the JetStream message the subscriber settles,
/// or a plain message in unit tests.
pub(crate) trait RawMessage: Send + Sync {
    fn message(&self) -> &async_nats::Message;
}

impl RawMessage for async_nats::jetstream::Message {
    fn message(&self) -> &async_nats::Message {
        &self.message
    }
}

impl RawMessage for async_nats::Message {
    fn message(&self) -> &async_nats::Message {
        self
    }
}

/// A read-only view of a subscriber's shutdown: a handler can ask whether it began or
/// wait for it, but not start it (cancelling the run's token from a handler would stop
/// every other delivery too).
#[derive(Clone, Debug)]
pub struct ShutdownSignal(CancellationToken);

impl ShutdownSignal {
    /// True once the subscriber has begun shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes when the subscriber begins shutting down (at once if it has).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.0.cancelled()
    }

    /// A token cancelled when the subscriber shuts down, for APIs that take one;
    /// cancelling it stops only what it was given to, never the subscriber.
    pub fn child_token(&self) -> CancellationToken {
        self.0.child_token()
    }
}

/// A context over a plain message on `auth.user.created` with body `payload`, for unit
/// tests of handlers.
#[cfg(test)]
pub(crate) fn test_context(payload: &'static [u8]) -> DeliveryContext {
    let meta = Meta {
        delivered: 1,
        stream_sequence: 1,
        consumer_sequence: 1,
        published: OffsetDateTime::now_utc(),
    };
    let raw = Arc::new(tests::plain_message(payload));
    DeliveryContext::new(
        meta,
        "AUTH_EVENTS".into(),
        "g__auth_all".into(),
        &CancellationToken::new(),
        raw,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn plain_message(payload: &'static [u8]) -> async_nats::Message {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", "id-1");
        async_nats::Message {
            subject: "auth.user.created".into(),
            reply: None,
            payload: Bytes::from_static(payload),
            headers: Some(headers),
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn the_raw_message_is_shared_and_the_shutdown_read_only() {
        let token = CancellationToken::new();
        let meta = Meta {
            delivered: 2,
            stream_sequence: 7,
            consumer_sequence: 9,
            published: OffsetDateTime::now_utc(),
        };
        let raw = Arc::new(plain_message(b"{}"));
        let ctx = DeliveryContext::new(meta, "S".into(), "c".into(), &token, raw.clone());
        assert_eq!(
            ctx.payload().as_ptr(),
            raw.payload.as_ptr(),
            "no copy of the body"
        );
        assert_eq!(ctx.header("Nats-Msg-Id"), Some("id-1"));
        assert_eq!(ctx.subject, "auth.user.created");
        assert!(!ctx.shutdown.is_shutting_down());
        ctx.shutdown.child_token().cancel();
        assert!(
            !token.is_cancelled(),
            "a handler cannot stop the subscriber"
        );
        token.cancel();
        assert!(ctx.shutdown.is_shutting_down());
    }
}
