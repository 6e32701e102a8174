//! [`DeadLetters`]: list, get, replay and purge the dead-letter stream.

use std::time::{Duration, Instant};

use async_nats::header::HeaderValue;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, ErrorCode};
use serde::Serialize;
use tokio::time::timeout;

use super::{DLQ_STREAM, DeadLetter, DeadLetterFilter, headers};
use crate::error::error_chain;
use crate::names::{NameError, StreamName, Subject};
use crate::replay::{BoxError, ScanError, ScanSpec, ScanStart, Scanner, fresh_headers, publish};

/// Page size when none is given.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Largest page a list returns.
pub const MAX_PAGE_LIMIT: usize = 1000;
/// Most dead letters one [`DeadLetters::replay_many`] call moves.
pub const MAX_REPLAY_COUNT: usize = 10_000;
/// Default bound on every server request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a list may spend reading before it returns a partial page with a cursor.
pub const DEFAULT_SCAN_BUDGET: Duration = Duration::from_secs(10);

/// Why a dead-letter operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DlqError {
    /// Sequence 0 names no message (sequences start at 1).
    #[error("dead-letter sequence must be a positive integer, got 0")]
    InvalidSequence,
    /// The page limit is 0 or above [`MAX_PAGE_LIMIT`].
    #[error("page limit must be between 1 and {max}, got {limit}")]
    InvalidPageLimit {
        /// The limit asked for.
        limit: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The count is 0 or above [`MAX_REPLAY_COUNT`].
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

/// Which page of a list: dead letters after sequence `after`, at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Cursor: only dead letters with a greater sequence (0 = from the start).
    pub after: u64,
    /// Most items to return, 1 to [`MAX_PAGE_LIMIT`].
    pub limit: usize,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            after: 0,
            limit: DEFAULT_PAGE_LIMIT,
        }
    }
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: usize) -> Self {
        Self { after: 0, limit }
    }

    /// The page after the cursor `after`.
    pub fn after(after: u64, limit: usize) -> Self {
        Self { after, limit }
    }
}

/// One page of dead letters.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DeadLetterPage {
    /// The matching dead letters, in sequence order.
    pub items: Vec<DeadLetter>,
    /// Cursor for the next page (`PageRequest::after`), `None` at the end.
    pub next_after: Option<u64>,
    /// Dead letters read to fill the page (matching or not).
    pub scanned: u64,
}

/// What happened to one dead letter in a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplayOutcome {
    /// Stored back in its stream, and the dead letter deleted.
    Replayed {
        /// Stream that stored it.
        stream: String,
        /// Its new sequence there.
        sequence: u64,
    },
    /// Dry run: would be replayed.
    WouldReplay,
    /// Not replayed; the dead letter is kept.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// Stored back, but the dead letter could not be deleted (a second replay duplicates).
    ReplayedNotDeleted {
        /// Stream that stored it.
        stream: String,
        /// Its new sequence there.
        sequence: u64,
        /// Why the delete failed.
        error: String,
    },
}

/// The result of replaying one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplayItem {
    /// Sequence of the dead letter.
    pub dlq_sequence: u64,
    /// The subject it was (or would be) published to.
    pub subject: Option<String>,
    /// The event id, when the body decodes.
    pub event_id: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: ReplayOutcome,
}

/// The result of [`DeadLetters::replay_many`].
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// One entry per matching dead letter, in sequence order.
    pub items: Vec<ReplayItem>,
    /// Replayed and deleted (or, in a dry run, that would be).
    pub replayed: u64,
    /// Not replayed (the dead letter is kept), or replayed and not deleted.
    pub failed: u64,
    /// True if the cap stopped the selection before every match was taken.
    pub capped: bool,
    /// True if nothing was published or deleted.
    pub dry_run: bool,
}

/// Options of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Only report what would be replayed.
    pub dry_run: bool,
}

impl ReplayOptions {
    /// Replay for real.
    pub fn execute() -> Self {
        Self { dry_run: false }
    }

    /// Report only.
    pub fn dry_run() -> Self {
        Self { dry_run: true }
    }
}

/// Access to the dead-letter stream (default [`DLQ_STREAM`]) over a JetStream context.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    js: jetstream::Context,
    stream: String,
    request_timeout: Duration,
    scan_budget: Duration,
}

impl DeadLetters {
    /// Dead letters in [`DLQ_STREAM`].
    pub fn new(js: jetstream::Context) -> Self {
        Self {
            js,
            stream: DLQ_STREAM.to_owned(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            scan_budget: DEFAULT_SCAN_BUDGET,
        }
    }

    /// Uses another dead-letter stream (same layout).
    pub fn with_stream(mut self, stream: StreamName) -> Self {
        self.stream = stream.into_string();
        self
    }

    /// Bound on every server request and publish ack.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Time a list may read before it returns what it has with a cursor to continue.
    pub fn with_scan_budget(mut self, budget: Duration) -> Self {
        self.scan_budget = budget;
        self
    }

    /// The dead-letter stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// A handle on the stream (no request is made).
    async fn stream(&self) -> Result<Stream<()>, DlqError> {
        self.js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| DlqError::Get {
                stream: self.stream.clone(),
                sequence: 0,
                source: Box::new(e),
            })
    }

    /// One page of the dead letters that match `filter`, in sequence order.
    ///
    /// Reads from the cursor with a short-lived consumer and stops at the page limit, at
    /// the end of the stream (as it was when the call started), at `stored_to`, or when the
    /// scan budget runs out; `next_after` tells where to continue.
    ///
    /// # Errors
    /// [`DlqError::InvalidPageLimit`], [`DlqError::InvalidFilter`],
    /// [`DlqError::StreamNotFound`], [`DlqError::Scan`].
    pub async fn list(
        &self,
        filter: &DeadLetterFilter,
        page: PageRequest,
    ) -> Result<DeadLetterPage, DlqError> {
        if page.limit == 0 || page.limit > MAX_PAGE_LIMIT {
            return Err(DlqError::InvalidPageLimit {
                limit: page.limit,
                max: MAX_PAGE_LIMIT,
            });
        }
        filter.check().map_err(DlqError::InvalidFilter)?;
        let mut items = Vec::new();
        let (scanned, last_scanned, at_end) = self
            .scan(filter, page.after, Some(self.scan_budget), |dl| {
                items.push(dl);
                items.len() < page.limit
            })
            .await?;
        let next_after = if at_end {
            None
        } else if items.len() >= page.limit {
            items.last().map(|d| d.sequence)
        } else {
            last_scanned
        };
        Ok(DeadLetterPage {
            items,
            next_after,
            scanned,
        })
    }

    /// Reads matching dead letters from after `after`, calling `take` for each match until
    /// it returns false. Returns (scanned, last scanned sequence, reached the end).
    async fn scan(
        &self,
        filter: &DeadLetterFilter,
        after: u64,
        budget: Option<Duration>,
        mut take: impl FnMut(DeadLetter) -> bool,
    ) -> Result<(u64, Option<u64>, bool), DlqError> {
        let start = if after > 0 {
            ScanStart::Sequence(after.saturating_add(1))
        } else if let Some(from) = filter.stored_from {
            ScanStart::Time(from)
        } else {
            ScanStart::All
        };
        let spec = ScanSpec {
            stream: self.stream.clone(),
            filter_subject: Some(filter.subject()),
            start,
            batch: 256,
            request_timeout: self.request_timeout,
        };
        let started = Instant::now();
        let mut scanner = Scanner::open(&self.js, spec).await?;
        let mut scanned = 0u64;
        let mut last = None;
        let result = async {
            loop {
                // At least one letter per call, so a cursor always moves forward.
                if scanned > 0 && budget.is_some_and(|b| started.elapsed() >= b) {
                    return Ok::<bool, ScanError>(false);
                }
                let Some(m) = scanner.next().await? else {
                    return Ok(true);
                };
                if filter.stored_to.is_some_and(|to| m.stored_at >= to) {
                    return Ok(true);
                }
                scanned += 1;
                last = Some(m.sequence);
                let dl = DeadLetter::from_stored(
                    m.sequence,
                    m.subject,
                    m.stored_at,
                    m.headers,
                    m.payload,
                );
                if filter.matches(&dl) && !take(dl) {
                    return Ok(scanner.is_done());
                }
            }
        }
        .await;
        scanner.close().await;
        let at_end = result.map_err(DlqError::from)?;
        Ok((scanned, last, at_end))
    }

    /// The dead letter with this sequence, `None` if there is none.
    ///
    /// # Errors
    /// [`DlqError::InvalidSequence`] for 0, [`DlqError::StreamNotFound`],
    /// [`DlqError::Get`], [`DlqError::Timeout`].
    pub async fn get(&self, sequence: u64) -> Result<Option<DeadLetter>, DlqError> {
        if sequence == 0 {
            return Err(DlqError::InvalidSequence);
        }
        let stream = self.stream().await?;
        let t = self.request_timeout;
        match timeout(t, stream.get_raw_message(sequence)).await {
            Err(_) => Err(DlqError::Timeout {
                what: "get dead letter",
                after: t,
            }),
            Ok(Ok(m)) => Ok(Some(DeadLetter::from_stored(
                m.sequence,
                m.subject.to_string(),
                m.time,
                m.headers,
                m.payload,
            ))),
            Ok(Err(e)) => match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => Ok(None),
                LastRawMessageErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Err(DlqError::StreamNotFound {
                        stream: self.stream.clone(),
                    })
                }
                _ => Err(DlqError::Get {
                    stream: self.stream.clone(),
                    sequence,
                    source: Box::new(e),
                }),
            },
        }
    }

    /// Moves one dead letter back (CONTRACT.md §4): publishes its body byte for byte to
    /// the original subject with its original headers (without the `Dlq-*` failure record
    /// and the old `Nats-*` publish headers), a fresh `Nats-Msg-Id` and
    /// `Dlq-Replayed-From: <sequence>`; awaits the stream's ack; only then deletes the dead
    /// letter. With `dry_run`, only reports where it would go.
    ///
    /// # Errors
    /// [`DlqError::NotFound`]; [`DlqError::NoOriginalSubject`] /
    /// [`DlqError::InvalidOriginalSubject`]; [`DlqError::Publish`] (the dead letter is
    /// kept); [`DlqError::ReplayedNotDeleted`]; plus the errors of [`DeadLetters::get`].
    pub async fn replay(
        &self,
        sequence: u64,
        options: ReplayOptions,
    ) -> Result<ReplayItem, DlqError> {
        let dl = self
            .get(sequence)
            .await?
            .ok_or(DlqError::NotFound { sequence })?;
        self.replay_letter(&dl, options).await
    }

    async fn replay_letter(
        &self,
        dl: &DeadLetter,
        options: ReplayOptions,
    ) -> Result<ReplayItem, DlqError> {
        let sequence = dl.sequence;
        let subject = dl
            .original_subject
            .as_deref()
            .ok_or(DlqError::NoOriginalSubject {
                sequence,
                header: headers::ORIGINAL_SUBJECT,
            })?;
        let subject = Subject::new(subject)
            .map_err(|source| DlqError::InvalidOriginalSubject { sequence, source })?;
        let item = |outcome| ReplayItem {
            dlq_sequence: sequence,
            subject: Some(subject.as_str().to_owned()),
            event_id: dl.event_id.clone(),
            outcome,
        };
        if options.dry_run {
            return Ok(item(ReplayOutcome::WouldReplay));
        }
        let mut h = fresh_headers(&dl.headers, true);
        // A u64 rendered in decimal has no CR/LF: the parse cannot fail.
        if let Ok(v) = sequence.to_string().parse::<HeaderValue>() {
            h.insert(headers::REPLAYED_FROM, v);
        }
        let t = self.request_timeout;
        let publish_err = |source: BoxError| DlqError::Publish {
            sequence,
            subject: subject.as_str().to_owned(),
            source,
        };
        let ack = publish(&self.js, subject.as_str(), h, dl.body.clone(), t)
            .await
            .map_err(publish_err)?;
        let ack = match timeout(t, ack).await {
            Err(_) => {
                return Err(publish_err(
                    format!("no ack from the stream within {t:?}").into(),
                ));
            }
            Ok(Err(e)) => return Err(publish_err(Box::new(e))),
            Ok(Ok(ack)) => ack,
        };
        tracing::info!(
            dlq_sequence = sequence, subject = %subject, stream = %ack.stream,
            stream_sequence = ack.sequence, "dead letter replayed"
        );
        if let Some(original) = dl.original_stream.as_deref()
            && original != ack.stream
        {
            tracing::warn!(
                dlq_sequence = sequence, subject = %subject, original_stream = original,
                stream = %ack.stream, "replayed dead letter was stored by another stream"
            );
        }
        match self.delete_existing(sequence).await {
            Ok(()) => Ok(item(ReplayOutcome::Replayed {
                stream: ack.stream,
                sequence: ack.sequence,
            })),
            Err(e) => Err(DlqError::ReplayedNotDeleted {
                sequence,
                stream: ack.stream,
                stored_sequence: ack.sequence,
                source: Box::new(e),
            }),
        }
    }

    /// Replays up to `max_count` dead letters matching `filter`, oldest first, one at a
    /// time (so the original order is kept); reports each. A failure on one does not stop
    /// the others.
    ///
    /// # Errors
    /// [`DlqError::InvalidCount`] unless `1 <= max_count <= MAX_REPLAY_COUNT`,
    /// [`DlqError::InvalidFilter`], and read errors; per-item failures are in the report.
    pub async fn replay_many(
        &self,
        filter: &DeadLetterFilter,
        max_count: usize,
        options: ReplayOptions,
    ) -> Result<ReplayReport, DlqError> {
        if max_count == 0 || max_count > MAX_REPLAY_COUNT {
            return Err(DlqError::InvalidCount {
                count: max_count,
                max: MAX_REPLAY_COUNT,
            });
        }
        filter.check().map_err(DlqError::InvalidFilter)?;
        // Select first (bounded by the cap), then move: the scan never sees its own output.
        let mut selected = Vec::new();
        let mut capped = false;
        self.scan(filter, 0, None, |dl| {
            if selected.len() >= max_count {
                capped = true;
                return false;
            }
            selected.push(dl);
            true
        })
        .await?;
        let mut report = ReplayReport {
            capped,
            dry_run: options.dry_run,
            ..Default::default()
        };
        for dl in &selected {
            let item = match self.replay_letter(dl, options).await {
                Ok(item) => item,
                Err(e) => ReplayItem {
                    dlq_sequence: dl.sequence,
                    subject: dl.original_subject.clone(),
                    event_id: dl.event_id.clone(),
                    outcome: match e {
                        DlqError::ReplayedNotDeleted {
                            stream,
                            stored_sequence,
                            source,
                            ..
                        } => ReplayOutcome::ReplayedNotDeleted {
                            stream,
                            sequence: stored_sequence,
                            error: source.to_string(),
                        },
                        other => ReplayOutcome::Failed {
                            error: error_chain(&other),
                        },
                    },
                },
            };
            match item.outcome {
                ReplayOutcome::Replayed { .. } | ReplayOutcome::WouldReplay => report.replayed += 1,
                _ => report.failed += 1,
            }
            report.items.push(item);
        }
        Ok(report)
    }

    /// Deletes one dead letter without replaying it.
    ///
    /// # Errors
    /// [`DlqError::InvalidSequence`], [`DlqError::NotFound`], [`DlqError::Delete`].
    pub async fn delete(&self, sequence: u64) -> Result<(), DlqError> {
        if self.get(sequence).await?.is_none() {
            return Err(DlqError::NotFound { sequence });
        }
        self.delete_existing(sequence).await
    }

    async fn delete_existing(&self, sequence: u64) -> Result<(), DlqError> {
        let t = self.request_timeout;
        match timeout(t, self.stream().await?.delete_message(sequence)).await {
            Err(_) => Err(DlqError::Timeout {
                what: "delete dead letter",
                after: t,
            }),
            Ok(Err(e)) => Err(DlqError::Delete {
                sequence,
                source: Box::new(e),
            }),
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(DlqError::Delete {
                sequence,
                source: "the server reported the delete as unsuccessful".into(),
            }),
        }
    }

    /// Deletes every dead letter matching `filter` (present when the call starts); returns
    /// how many were deleted. An empty filter purges the whole stream
    /// ([`DeadLetters::purge_all`]).
    ///
    /// # Errors
    /// [`DlqError::InvalidFilter`], read errors, [`DlqError::Delete`] on the first delete
    /// that fails (those before it are gone).
    pub async fn purge(&self, filter: &DeadLetterFilter) -> Result<u64, DlqError> {
        if filter.is_empty() {
            return self.purge_all().await;
        }
        filter.check().map_err(DlqError::InvalidFilter)?;
        let mut selected = Vec::new();
        self.scan(filter, 0, None, |dl| {
            selected.push(dl.sequence);
            true
        })
        .await?;
        let mut purged = 0;
        for seq in selected {
            match self.delete_existing(seq).await {
                Ok(()) => purged += 1,
                // Gone since the scan (replayed or purged by someone else): nothing to do.
                Err(_) if matches!(self.get(seq).await, Ok(None)) => {}
                Err(e) => return Err(e),
            }
        }
        tracing::info!(stream = %self.stream, purged, "dead letters purged by filter");
        Ok(purged)
    }

    /// Deletes every dead letter; returns how many.
    ///
    /// # Errors
    /// [`DlqError::StreamNotFound`], [`DlqError::Purge`], [`DlqError::Timeout`].
    pub async fn purge_all(&self) -> Result<u64, DlqError> {
        let t = self.request_timeout;
        match timeout(t, self.stream().await?.purge().into_future()).await {
            Err(_) => Err(DlqError::Timeout {
                what: "purge dead-letter stream",
                after: t,
            }),
            Ok(Err(e)) => {
                if let async_nats::jetstream::stream::PurgeErrorKind::JetStream(j) = e.kind()
                    && j.error_code() == ErrorCode::STREAM_NOT_FOUND
                {
                    return Err(DlqError::StreamNotFound {
                        stream: self.stream.clone(),
                    });
                }
                Err(DlqError::Purge {
                    stream: self.stream.clone(),
                    source: Box::new(e),
                })
            }
            Ok(Ok(r)) => {
                tracing::info!(stream = %self.stream, purged = r.purged, "dead-letter stream purged");
                Ok(r.purged)
            }
        }
    }
}
