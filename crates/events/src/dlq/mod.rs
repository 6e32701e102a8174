//! Dead letters (CONTRACT.md §4): the header names and reasons shared by the consumer that
//! writes them and the tools that read and replay them, and [`DeadLetters`], the access API
//! used by `eventctl dlq` and the admin server.
//!
//! ```no_run
//! # async fn example(js: async_nats::jetstream::Context) -> Result<(), events::dlq::DlqError> {
//! use events::dlq::{DeadLetterFilter, DeadLetterReason, DeadLetters, PageRequest, ReplayOptions};
//!
//! let dlq = DeadLetters::new(js);
//! let filter = DeadLetterFilter::new().reason(DeadLetterReason::Permanent);
//! let page = dlq.list(&filter, PageRequest::first(50)).await?;
//! for dl in &page.items {
//!     println!("{} {:?} {:?}", dl.sequence, dl.event_type, dl.error);
//! }
//! // Move one back to its stream: publish, await the ack, then delete the dead letter.
//! if let Some(first) = page.items.first() {
//!     dlq.replay(first.sequence, ReplayOptions::execute()).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod access;
mod error;
mod filter;
mod record;
mod replay_letter;
mod stored;
mod write;

pub use access::{
    DEFAULT_PAGE_LIMIT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SCAN_BUDGET, DeadLetterPage, DeadLetters,
    DlqError, MAX_PAGE_LIMIT, MAX_REPLAY_COUNT, PageRequest, ReplayItem, ReplayOptions,
    ReplayOutcome, ReplayReport,
};
pub use filter::DeadLetterFilter;
pub use record::DeadLetter;
pub use write::DeadLetterError;
pub(crate) use write::{FailureRecord, publish_dead_letter};

/// The dead-letter stream.
pub const DLQ_STREAM: &str = "DLQ_EVENTS";
/// Prefix of every dead-letter subject: `dlq.<original subject>`.
pub const DLQ_SUBJECT_PREFIX: &str = "dlq.";

/// Header names of the failure record.
pub mod headers {
    /// Prefix shared by every header of the failure record.
    pub const PREFIX: &str = "Dlq-";
    /// Subject the message was consumed from.
    pub const ORIGINAL_SUBJECT: &str = "Dlq-Original-Subject";
    /// Stream the message was stored in.
    pub const ORIGINAL_STREAM: &str = "Dlq-Original-Stream";
    /// Stream sequence of the original message.
    pub const ORIGINAL_SEQUENCE: &str = "Dlq-Original-Sequence";
    /// The durable consumer (group) that gave up.
    pub const CONSUMER: &str = "Dlq-Consumer";
    /// How many deliveries were tried.
    pub const DELIVERIES: &str = "Dlq-Deliveries";
    /// `max_deliveries`, `permanent`, `undecodable` or `invalid`.
    pub const REASON: &str = "Dlq-Reason";
    /// The last error, one line, at most 1 KiB.
    pub const ERROR: &str = "Dlq-Error";
    /// RFC 3339 time of the last failure.
    pub const FAILED_AT: &str = "Dlq-Failed-At";
    /// On a replayed message: the sequence of the dead letter it came from.
    pub const REPLAYED_FROM: &str = "Dlq-Replayed-From";
    /// When the original headers were not valid UTF-8 (or not a parsable header block): the
    /// raw header block, base64; the dead letter then carries none of the original headers.
    pub const ORIGINAL_HEADERS_BASE64: &str = "Dlq-Original-Headers-Base64";
    /// When the original body plus the record would not fit `max_payload`: the original
    /// body's length in bytes; the dead letter's body is then empty and replay reads the
    /// original from its stream by `Dlq-Original-Sequence`.
    pub const BODY_OMITTED: &str = "Dlq-Body-Omitted";
}

/// `Nats-Msg-Id` of the copy that replay publishes for the dead letter at `dead_letter_seq`:
/// `replay:<sequence>`, so concurrent replays of one dead letter store it once.
pub fn replay_msg_id(dead_letter_seq: u64) -> String {
    format!("replay:{dead_letter_seq}")
}

/// Longest `Dlq-Error` value, in bytes.
pub const MAX_ERROR_LEN: usize = 1024;

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The last allowed delivery failed.
    MaxDeliveries,
    /// The handler said no retry can help.
    Permanent,
    /// The message is not a CloudEvent.
    Undecodable,
    /// The message is a CloudEvent that breaks the contract.
    Invalid,
}

impl DeadLetterReason {
    /// The header and metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxDeliveries => "max_deliveries",
            Self::Permanent => "permanent",
            Self::Undecodable => "undecodable",
            Self::Invalid => "invalid",
        }
    }

    /// Parses a `Dlq-Reason` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "max_deliveries" => Self::MaxDeliveries,
            "permanent" => Self::Permanent,
            "undecodable" => Self::Undecodable,
            "invalid" => Self::Invalid,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Nats-Msg-Id` of a dead letter: `<stream>:<sequence>:<consumer>`, so the same failure is
/// stored once even if two instances race.
pub fn dead_letter_msg_id(stream: &str, sequence: u64, consumer: &str) -> String {
    format!("{stream}:{sequence}:{consumer}")
}

/// `Dlq-Error` value: the error's first line with control characters replaced, cut to
/// [`MAX_ERROR_LEN`] bytes on a character boundary.
pub fn error_header_value(error: &str) -> String {
    let mut s: String = error
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_value_is_one_bounded_line() {
        let v = error_header_value("a\r\nb");
        assert_eq!(v, "a  b");
        let long = "é".repeat(1000);
        let v = error_header_value(&long);
        assert!(v.len() <= MAX_ERROR_LEN);
        assert!(v.len() > MAX_ERROR_LEN - 2);
    }

    #[test]
    fn reasons_round_trip() {
        for r in [
            DeadLetterReason::MaxDeliveries,
            DeadLetterReason::Permanent,
            DeadLetterReason::Undecodable,
            DeadLetterReason::Invalid,
        ] {
            assert_eq!(DeadLetterReason::parse(r.as_str()), Some(r));
        }
    }
}
