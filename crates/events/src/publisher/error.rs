//! Publish errors: permanent ones (no retry can help) fail at once; transient ones are retried
//! and, once the deadline or the retries run out, reported as [`PublishError::Unconfirmed`]
//! when a try may have reached the server (its outcome is unknown), or as
//! [`PublishError::Unavailable`] when no try can have been stored.

use std::time::Duration;

use crate::event::EventError;

/// A boxed error from the NATS client.
use crate::error::BoxError;

/// Why one try failed in a way that a retry (with the same `Nats-Msg-Id`) may fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransientError {
    /// The stream did not ack within the ack timeout.
    #[error("no ack from the stream within {0:?}")]
    AckTimeout(Duration),
    /// The connection broke (or was not up) before the ack arrived.
    #[error("connection to NATS lost before the ack")]
    ConnectionLost,
    /// The connection went down and came back while the ack was awaited: the answer of a
    /// try sent before will not come (it may have been stored; the retry keeps the id).
    #[error("reconnected to NATS before the ack came")]
    Reconnected,
    /// Nobody answered on the subject (503): no stream listens, or its leader is being
    /// elected, or the stream is being created.
    #[error("no responders for the subject (no stream, or stream leader not available)")]
    NoResponders,
    /// The stream answered with a temporary error (503-class).
    #[error("stream temporarily unavailable")]
    Server(#[source] async_nats::jetstream::Error),
    /// The client could not send the message.
    #[error("NATS client failed to send")]
    Client(#[source] BoxError),
}

/// Why a publish failed. Every variant says which problem it is; see
/// [`PublishError::is_transient`] for the ones a later retry may fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event breaks a rule of the contract (only reachable for events altered after
    /// building, e.g. a bad trace context).
    #[error("invalid event")]
    Invalid(#[source] EventError),
    /// The event's `data` does not validate against the schema of its type and version, or
    /// the publisher's schema set has no such schema and refuses unknown ones
    /// ([`PublisherConfig::schemas`](super::PublisherConfig::schemas)). Nothing was sent;
    /// the cause names the JSON pointer and the rule.
    #[cfg(feature = "schema")]
    #[error("event {event_id} refused by its schema")]
    Schema {
        /// The event id.
        event_id: String,
        /// What failed: [`SchemaError::pointer`](crate::schema::SchemaError::pointer) and
        /// [`SchemaError::rule`](crate::schema::SchemaError::rule). Boxed: it is large and
        /// rare, and every publish result carries the error type.
        #[source]
        source: Box<crate::schema::SchemaError>,
    },
    /// The subject cannot be published to (wildcard, reserved prefix, ...).
    #[error("invalid subject {subject:?}: {reason}")]
    InvalidSubject {
        /// The subject.
        subject: String,
        /// What is wrong.
        reason: String,
    },
    /// The encoded message is bigger than the server accepts.
    #[error(
        "event {event_id} is {size} bytes on the wire, over the server's max_payload of {limit} bytes"
    )]
    PayloadTooLarge {
        /// The event id.
        event_id: String,
        /// Headers plus body, in bytes.
        size: usize,
        /// The server's `max_payload`.
        limit: usize,
    },
    /// No stream captures the subject.
    #[error("no stream captures subject {subject:?}")]
    NoStream {
        /// The subject published to.
        subject: String,
    },
    /// The server refused for lack of permission: a JetStream 403 answer, or the
    /// server's `Permissions Violation` for the subject (a publisher made with
    /// [`Publisher::on_connection`](super::Publisher::on_connection) sees that at once,
    /// one over a bare client only as a missing ack).
    #[error("permission denied publishing to {subject:?}")]
    PermissionDenied {
        /// The subject published to.
        subject: String,
        /// The JetStream API answer, when the refusal was one (`None` for the server's
        /// permissions violation, which names only the subject).
        #[source]
        source: Option<async_nats::jetstream::Error>,
    },
    /// The stream refused the message with a JetStream API error (e.g. `err_code` 10054
    /// "maximum message size exceeded" for a stream `max_msg_size`).
    #[error("stream refused the message (err_code {err_code})")]
    Rejected {
        /// JetStream `err_code`.
        err_code: u64,
        /// The server's answer.
        #[source]
        source: async_nats::jetstream::Error,
    },
    /// The event is **not** stored: every try failed in a way that stores nothing (no
    /// responders, a 503 answer, the client could not hand the message over) until the
    /// deadline or the retries ran out. Publishing it again later is safe.
    #[error("NATS unavailable: nothing stored after {attempts} tries in {elapsed:?}")]
    Unavailable {
        /// Tries made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure.
        #[source]
        last: TransientError,
    },
    /// The outcome is **unknown**: at least one try was handed to the connection and no
    /// answer came back before the deadline (ack timeout, connection lost). The message may
    /// still sit in the client's write buffer and be stored when NATS returns, or be stored
    /// already with its ack lost. Do not report the event as "not made": publish it again
    /// with the same id (same [`Event`](crate::Event)) within the stream's duplicate window
    /// to settle it; the server stores it at most once and the retry's ack says where.
    #[error("publish outcome unknown: no answer after {attempts} tries in {elapsed:?}")]
    Unconfirmed {
        /// Tries made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure.
        #[source]
        last: TransientError,
    },
    /// The publisher is closed (or closing) and accepts nothing more.
    #[error("publisher is closed")]
    Closed,
    /// `close()` gave up waiting for this event's outcome; it may or may not be stored.
    #[error("publish cancelled by close before its outcome was known")]
    Cancelled,
    /// The spool is full; nothing was dropped, the event was refused.
    #[error("spool full: {used} of {limit} bytes used, record of {record} bytes refused")]
    SpoolFull {
        /// Bytes held.
        used: u64,
        /// `SpoolConfig::max_bytes`.
        limit: u64,
        /// Size of the refused record.
        record: u64,
    },
    /// Writing to the spool failed.
    #[error("spool i/o failed")]
    Spool(#[source] std::io::Error),
}

impl PublishError {
    /// True if publishing the same event again later may succeed (its id keeps that
    /// idempotent): [`Unavailable`](Self::Unavailable), [`Unconfirmed`](Self::Unconfirmed),
    /// [`Cancelled`](Self::Cancelled) and spool errors.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::Unconfirmed { .. }
                | Self::Cancelled
                | Self::SpoolFull { .. }
                | Self::Spool(_)
        )
    }

    /// True if the event may be stored although the publish failed
    /// ([`Unconfirmed`](Self::Unconfirmed), [`Cancelled`](Self::Cancelled)): the caller
    /// must neither report it as not made nor make it again under a new id; publishing the
    /// same event again within the duplicate window settles it.
    pub fn may_be_stored(&self) -> bool {
        matches!(self, Self::Unconfirmed { .. } | Self::Cancelled)
    }

    /// [`Unavailable`](Self::Unavailable) turned into [`Unconfirmed`](Self::Unconfirmed)
    /// (an earlier send of the same event may have been stored); other errors unchanged.
    pub(crate) fn into_unconfirmed(self) -> Self {
        match self {
            Self::Unavailable {
                attempts,
                elapsed,
                last,
            } => Self::Unconfirmed {
                attempts,
                elapsed,
                last,
            },
            other => other,
        }
    }

    /// A short, bounded label for metrics (`status` of `events_published_total`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            #[cfg(feature = "schema")]
            Self::Schema { .. } => "schema",
            Self::InvalidSubject { .. } => "invalid_subject",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::NoStream { .. } => "no_stream",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::Rejected { .. } => "rejected",
            Self::Unavailable { .. } => "unavailable",
            Self::Unconfirmed { .. } => "unconfirmed",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
            Self::SpoolFull { .. } => "spool_full",
            Self::Spool(_) => "spool_error",
        }
    }
}

/// `flush()` or `close()` ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pending} events still in flight after {timeout:?}")]
#[non_exhaustive]
pub struct FlushError {
    /// Events whose outcome was not known yet.
    pub pending: usize,
    /// The timeout given.
    pub timeout: Duration,
}

/// A publisher could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewPublisherError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] super::ConfigError),
    /// The spool could not be opened.
    #[error("cannot open the spool in {dir}")]
    Spool {
        /// The spool directory.
        dir: std::path::PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
}
