//! [`DeadLetters`]: list, get, replay and purge the dead-letter stream.

use std::time::{Duration, Instant};

use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::{self, ErrorCode};
use serde::Serialize;
use tokio::time::timeout;

pub use super::error::DlqError;
pub use super::replay_letter::{ReplayItem, ReplayOptions, ReplayOutcome, ReplayReport};
use super::stored::{GetFailure, get_stored};
use super::{DLQ_STREAM, DeadLetter, DeadLetterFilter};
use crate::names::StreamName;
use crate::scan::{ScanError, ScanSpec, ScanStart, Scanner};

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

/// Access to the dead-letter stream (default [`DLQ_STREAM`]) over a JetStream context.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    pub(super) js: jetstream::Context,
    pub(super) stream: String,
    pub(super) request_timeout: Duration,
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
    pub(super) async fn scan(
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
        let t = self.request_timeout;
        match get_stored(&self.js, &self.stream, sequence, t).await {
            Ok(m) => Ok(m.map(|m| {
                DeadLetter::from_stored(
                    m.sequence,
                    m.subject.to_string(),
                    m.time,
                    m.headers,
                    m.payload,
                )
            })),
            Err(GetFailure::StreamNotFound) => Err(DlqError::StreamNotFound {
                stream: self.stream.clone(),
            }),
            Err(GetFailure::Timeout) => Err(DlqError::Timeout {
                what: "get dead letter",
                after: t,
            }),
            Err(GetFailure::Other(source)) => Err(DlqError::Get {
                stream: self.stream.clone(),
                sequence,
                source,
            }),
        }
    }

    /// Deletes one dead letter without replaying it. Of concurrent deletes of one dead
    /// letter, one succeeds and the others get [`DlqError::NotFound`].
    ///
    /// # Errors
    /// [`DlqError::InvalidSequence`], [`DlqError::NotFound`], [`DlqError::Delete`],
    /// [`DlqError::Timeout`].
    pub async fn delete(&self, sequence: u64) -> Result<(), DlqError> {
        if self.get(sequence).await?.is_none() || !self.delete_if_present(sequence).await? {
            return Err(DlqError::NotFound { sequence });
        }
        Ok(())
    }

    /// Deletes one dead letter: true if this call deleted it, false if it was already gone
    /// (replayed, deleted or purged by someone else since it was read).
    pub(super) async fn delete_if_present(&self, sequence: u64) -> Result<bool, DlqError> {
        let t = self.request_timeout;
        let source: crate::error::BoxError =
            match timeout(t, self.stream().await?.delete_message(sequence)).await {
                Err(_) => {
                    return Err(DlqError::Timeout {
                        what: "delete dead letter",
                        after: t,
                    });
                }
                Ok(Ok(true)) => return Ok(true),
                Ok(Err(e)) => Box::new(e),
                Ok(Ok(false)) => "the server reported the delete as unsuccessful".into(),
            };
        // The server's error for a message that is gone varies with the store; asking
        // again is what tells a lost race from a failed delete.
        if self.get(sequence).await?.is_none() {
            return Ok(false);
        }
        Err(DlqError::Delete { sequence, source })
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
            // Gone since the scan (replayed or purged by someone else): nothing to do.
            if self.delete_if_present(seq).await? {
                purged += 1;
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
