//! [`DlqError`]: why a dead-letter operation failed.

use std::time::Duration;

use crate::error::BoxError;
use crate::names::NameError;
use crate::scan::ScanError;

/// Why a dead-letter operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DlqError {
    /// Sequence 0 names no message (sequences start at 1).
    #[error("dead-letter sequence must be a positive integer, got 0")]
    InvalidSequence,
    /// The page limit is 0 or above [`MAX_PAGE_LIMIT`](super::MAX_PAGE_LIMIT).
    #[error("page limit must be between 1 and {max}, got {limit}")]
    InvalidPageLimit {
        /// The limit asked for.
        limit: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The count is 0 or above [`MAX_REPLAY_COUNT`](super::MAX_REPLAY_COUNT).
    #[error("max count must be between 1 and {max}, got {count}")]
    InvalidCount {
        /// The count asked for.
        count: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The filter is inconsistent (e.g. a time range that ends before it starts).
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// The dead-letter stream does not exist.
    #[error("dead-letter stream {stream} not found")]
    StreamNotFound {
        /// The stream name.
        stream: String,
    },
    /// No dead letter has this sequence (never stored, replayed, purged or expired).
    #[error("no dead letter with sequence {sequence}")]
    NotFound {
        /// The sequence asked for.
        sequence: u64,
    },
    /// Reading the stream failed.
    #[error("failed to read the dead-letter stream")]
    Scan(#[source] ScanError),
    /// Reading one dead letter failed.
    #[error("failed to read dead letter {sequence} from stream {stream}")]
    Get {
        /// The stream name.
        stream: String,
        /// The sequence asked for.
        sequence: u64,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The dead letter names no original subject to replay to.
    #[error("dead letter {sequence} has no {header} header and no dlq.* subject")]
    NoOriginalSubject {
        /// The dead letter.
        sequence: u64,
        /// The missing header.
        header: &'static str,
    },
    /// The original subject is not a valid subject to publish on.
    #[error("dead letter {sequence} has an invalid original subject")]
    InvalidOriginalSubject {
        /// The dead letter.
        sequence: u64,
        /// Why the subject was refused.
        #[source]
        source: NameError,
    },
    /// No stream stores the original subject (its stream was deleted, or never covered
    /// it): a replay could not be stored, so none is attempted; the dead letter is kept.
    #[error("no stream stores subject {subject}: dead letter {sequence} is kept")]
    NoStreamForSubject {
        /// The dead letter.
        sequence: u64,
        /// The original subject.
        subject: String,
    },
    /// The dead letter's body was omitted (`Dlq-Body-Omitted`) and its record does not say
    /// where the original is.
    #[error("dead letter {sequence} omits its body but has no valid {header} header")]
    NoOriginalLocation {
        /// The dead letter.
        sequence: u64,
        /// The missing or unreadable header.
        header: &'static str,
    },
    /// The dead letter's body was omitted and the original is no longer in its stream
    /// (retention removed it, someone deleted it, or the stream is gone): there is nothing
    /// to replay; the dead letter is kept.
    #[error(
        "the original of dead letter {sequence} ({stream} sequence {original_sequence}) is gone \
         ({why}); its body was omitted, so there is nothing to replay"
    )]
    OriginalGone {
        /// The dead letter.
        sequence: u64,
        /// The original's stream.
        stream: String,
        /// The original's sequence there.
        original_sequence: u64,
        /// `no message at that sequence` or `the stream does not exist`.
        why: &'static str,
    },
    /// The dead letter's body was omitted and the message at the original's place is not
    /// the original (another subject or length): replaying it would publish something else.
    #[error(
        "the message at {stream} sequence {original_sequence} is not the original of dead \
         letter {sequence}: {detail}"
    )]
    OriginalMismatch {
        /// The dead letter.
        sequence: u64,
        /// The original's stream.
        stream: String,
        /// The original's sequence there.
        original_sequence: u64,
        /// What differs.
        detail: String,
    },
    /// Reading the original of an omitted body failed (not because it is gone).
    #[error(
        "failed to read the original of dead letter {sequence} ({stream} sequence {original_sequence})"
    )]
    GetOriginal {
        /// The dead letter.
        sequence: u64,
        /// The original's stream.
        stream: String,
        /// The original's sequence there.
        original_sequence: u64,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// Asking the server which stream stores a subject failed.
    #[error("failed to find the stream that stores {subject}")]
    Lookup {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// Publishing the body back failed; the dead letter is kept.
    #[error("failed to republish dead letter {sequence} to {subject}; the dead letter is kept")]
    Publish {
        /// The dead letter.
        sequence: u64,
        /// The original subject.
        subject: String,
        /// The client's error (no stream for the subject, a full stream, ...).
        #[source]
        source: BoxError,
    },
    /// The republished body was stored, but deleting the dead letter failed: it is still
    /// there and a second replay would store the event twice.
    #[error(
        "dead letter {sequence} was republished to {stream} as {stored_sequence} but could not be deleted"
    )]
    ReplayedNotDeleted {
        /// The dead letter.
        sequence: u64,
        /// Stream that stored the replayed message.
        stream: String,
        /// Its sequence there.
        stored_sequence: u64,
        /// Why the delete failed.
        #[source]
        source: BoxError,
    },
    /// Deleting a dead letter failed.
    #[error("failed to delete dead letter {sequence}")]
    Delete {
        /// The dead letter.
        sequence: u64,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// Purging the stream failed.
    #[error("failed to purge stream {stream}")]
    Purge {
        /// The stream name.
        stream: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A server request did not answer within its bound.
    #[error("{what} did not complete within {after:?}")]
    Timeout {
        /// The operation.
        what: &'static str,
        /// The bound that ran out.
        after: Duration,
    },
}

impl DlqError {
    /// True if the request itself is wrong (bad sequence, page, count or filter): a caller
    /// error, not a server problem.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidSequence
                | Self::InvalidPageLimit { .. }
                | Self::InvalidCount { .. }
                | Self::InvalidFilter(_)
        )
    }

    /// True if the dead letter (or the dead-letter stream) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::StreamNotFound { .. })
    }
}

impl From<ScanError> for DlqError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::StreamNotFound { stream } => Self::StreamNotFound { stream },
            other => Self::Scan(other),
        }
    }
}
