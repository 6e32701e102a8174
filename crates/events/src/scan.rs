//! A bounded, read-only scan of a stream through a short-lived ephemeral pull consumer.
//!
//! Shared by dead-letter access ([`crate::dlq`]) and the time-window replay. The scan:
//! - takes the stream's last sequence when it opens as its upper bound, so a live stream
//!   does not make it run forever;
//! - uses an ephemeral consumer with `AckPolicy::None`, memory storage and a short
//!   `inactive_threshold`, deleted by `Scanner::close` (and by the server after the
//!   threshold if the scan is dropped midway), so no consumer is left behind;
//! - bounds every wait and reports a timeout by name;
//! - never reports "empty" (or short) when it could not read: if the server says it
//!   delivered messages that never arrived, the scan fails with [`ScanError::Unread`].
//!   Messages whose header block the client could not parse arrive like any other, with
//!   the raw block in [`crate::raw_headers::UNPARSED_HEADERS_BASE64`].

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::pull::{self, Batch};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, ReplayPolicy};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::time::timeout;

/// Boxed error from the NATS client.
use crate::error::BoxError;

/// How long the server keeps a scan consumer that nobody pulls from (cleanup after a crash).
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(30);
/// Consecutive empty pulls tolerated while the consumer still reports pending messages.
const MAX_EMPTY_PULLS: u32 = 3;

/// Why a stream scan failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The stream does not exist.
    #[error("stream {stream} not found")]
    StreamNotFound {
        /// The stream name.
        stream: String,
    },
    /// Reading the stream's info failed.
    #[error("failed to read info of stream {stream}")]
    StreamInfo {
        /// The stream name.
        stream: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// Creating the scan consumer failed.
    #[error("failed to create a scan consumer on stream {stream}")]
    CreateConsumer {
        /// The stream name.
        stream: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// Pulling messages failed.
    #[error("failed to pull messages from stream {stream}")]
    Fetch {
        /// The stream name.
        stream: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The server delivered messages that never reached the scan (a connection lost in the
    /// middle of a pull): the scan cannot say what they held, so it fails rather than
    /// report fewer messages than the stream holds.
    #[error(
        "stream {stream}: messages up to sequence {delivered_up_to} were delivered but the scan \
         received only up to {received_up_to}"
    )]
    Unread {
        /// The stream name.
        stream: String,
        /// Highest sequence the scan received (0: none).
        received_up_to: u64,
        /// Highest sequence the server says it delivered to the scan.
        delivered_up_to: u64,
    },
    /// A server request or a pull did not answer in time.
    #[error("{what} on stream {stream} did not complete within {after:?}")]
    Timeout {
        /// The stream name.
        stream: String,
        /// The operation that timed out.
        what: &'static str,
        /// The bound that ran out.
        after: Duration,
    },
}

/// Where a scan starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanStart {
    /// From the first message.
    All,
    /// From this stream sequence (inclusive).
    Sequence(u64),
    /// From the first message stored at or after this time.
    Time(OffsetDateTime),
}

/// What to scan.
#[derive(Debug, Clone)]
pub(crate) struct ScanSpec {
    pub(crate) stream: String,
    pub(crate) filter_subject: Option<String>,
    pub(crate) start: ScanStart,
    /// Messages per pull request.
    pub(crate) batch: usize,
    /// Bound on each server request and on the wait for each message.
    pub(crate) request_timeout: Duration,
}

/// One stored message as the scan sees it.
#[derive(Debug, Clone)]
pub(crate) struct Scanned {
    pub(crate) sequence: u64,
    pub(crate) stored_at: OffsetDateTime,
    pub(crate) subject: String,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

/// An open scan; call [`Scanner::close`] when done.
pub(crate) struct Scanner {
    stream: Stream,
    stream_name: String,
    consumer: Option<PullConsumer>,
    batch: Option<Batch>,
    /// Messages the current pull has delivered.
    batch_delivered: usize,
    spec: ScanSpec,
    end_sequence: u64,
    /// Matching messages the consumer had to deliver when it was created (bounded above by
    /// the messages up to `end_sequence` plus any that arrived since).
    initial_pending: u64,
    done: bool,
    empty_pulls: u32,
    /// Highest stream sequence received (0: none), checked against what the server says
    /// it delivered.
    received_up_to: u64,
    buffer: VecDeque<Scanned>,
}

impl Scanner {
    /// Opens a scan: reads the stream's last sequence and creates the scan consumer.
    pub(crate) async fn open(js: &jetstream::Context, spec: ScanSpec) -> Result<Self, ScanError> {
        let name = spec.stream.clone();
        let t = spec.request_timeout;
        let mut stream = match timeout(t, js.get_stream(&name)).await {
            Err(_) => return Err(timeout_err(&name, "get stream", t)),
            Ok(Err(e)) => {
                if let GetStreamErrorKind::JetStream(j) = e.kind()
                    && j.error_code() == ErrorCode::STREAM_NOT_FOUND
                {
                    return Err(ScanError::StreamNotFound { stream: name });
                }
                return Err(ScanError::StreamInfo {
                    stream: name,
                    source: Box::new(e),
                });
            }
            Ok(Ok(s)) => s,
        };
        let state = match timeout(t, stream.info()).await {
            Err(_) => return Err(timeout_err(&name, "stream info", t)),
            Ok(Err(e)) => {
                return Err(ScanError::StreamInfo {
                    stream: name,
                    source: Box::new(e),
                });
            }
            Ok(Ok(info)) => info.state.clone(),
        };
        let mut scanner = Scanner {
            stream,
            stream_name: name.clone(),
            consumer: None,
            batch: None,
            batch_delivered: 0,
            end_sequence: state.last_sequence,
            initial_pending: 0,
            done: false,
            empty_pulls: 0,
            received_up_to: 0,
            buffer: VecDeque::new(),
            spec,
        };
        let nothing_to_read = match scanner.spec.start {
            _ if state.messages == 0 || state.last_sequence == 0 => true,
            ScanStart::Sequence(s) => s > state.last_sequence,
            ScanStart::Time(from) => from > state.last_timestamp,
            ScanStart::All => false,
        };
        if nothing_to_read {
            scanner.done = true;
            return Ok(scanner);
        }
        let deliver_policy = match scanner.spec.start {
            ScanStart::All => DeliverPolicy::All,
            ScanStart::Sequence(s) => DeliverPolicy::ByStartSequence {
                start_sequence: s.max(1),
            },
            ScanStart::Time(from) => DeliverPolicy::ByStartTime { start_time: from },
        };
        let config = pull::Config {
            name: Some(format!("events_scan_{}", uuid::Uuid::now_v7().simple())),
            description: Some("events: read-only scan (ephemeral)".to_owned()),
            deliver_policy,
            ack_policy: AckPolicy::None,
            replay_policy: ReplayPolicy::Instant,
            filter_subject: scanner.spec.filter_subject.clone().unwrap_or_default(),
            inactive_threshold: INACTIVE_THRESHOLD,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        let consumer: PullConsumer = match timeout(t, scanner.stream.create_consumer(config)).await
        {
            Err(_) => return Err(timeout_err(&name, "create scan consumer", t)),
            Ok(Err(e)) => {
                return Err(ScanError::CreateConsumer {
                    stream: name,
                    source: Box::new(e),
                });
            }
            Ok(Ok(c)) => c,
        };
        scanner.initial_pending = consumer.cached_info().num_pending;
        if scanner.initial_pending == 0 {
            scanner.done = true;
        }
        scanner.consumer = Some(consumer);
        Ok(scanner)
    }

    /// The stream's last sequence when the scan opened: nothing after it is returned.
    pub(crate) fn end_sequence(&self) -> u64 {
        self.end_sequence
    }

    /// Matching messages the consumer reported when it was created (an upper bound of
    /// what the scan returns, give or take messages stored since).
    pub(crate) fn initial_pending(&self) -> u64 {
        self.initial_pending
    }

    /// True once the scan reached its end (no further call to `next` returns a message).
    pub(crate) fn is_done(&self) -> bool {
        self.done && self.buffer.is_empty()
    }

    /// The next message, or `None` at the end (the upper bound or the end of the stream).
    pub(crate) async fn next(&mut self) -> Result<Option<Scanned>, ScanError> {
        loop {
            if let Some(m) = self.buffer.pop_front() {
                return Ok(Some(m));
            }
            if self.done {
                return Ok(None);
            }
            self.pull_one().await?;
        }
    }

    /// Waits for one message from the current pull (or starts a new pull) and buffers it.
    async fn pull_one(&mut self) -> Result<(), ScanError> {
        let t = self.spec.request_timeout;
        let Some(consumer) = self.consumer.as_mut() else {
            self.done = true;
            return Ok(());
        };
        if self.batch.is_none() {
            let expires = t.max(Duration::from_secs(1));
            let req = consumer
                .batch()
                .max_messages(self.spec.batch.max(1))
                .expires(expires)
                .messages();
            let batch = match timeout(t, req).await {
                Err(_) => return Err(timeout_err(&self.stream_name, "pull request", t)),
                Ok(Err(e)) => {
                    return Err(ScanError::Fetch {
                        stream: self.stream_name.clone(),
                        source: Box::new(e),
                    });
                }
                Ok(Ok(b)) => b,
            };
            self.batch = Some(batch);
            self.batch_delivered = 0;
        }
        let Some(batch) = self.batch.as_mut() else {
            return Ok(());
        };
        // The pull request itself expires after `expires`; the client adds 5 s of grace.
        let wait = t.max(Duration::from_secs(1)) + Duration::from_secs(6);
        let next = match timeout(wait, batch.next()).await {
            Err(_) => return Err(timeout_err(&self.stream_name, "pull", wait)),
            Ok(n) => n,
        };
        match next {
            None => {
                // The pull ended: complete (pull again) or expired empty (check why).
                self.batch = None;
                if self.batch_delivered > 0 {
                    return Ok(());
                }
                self.check_pending_after_empty_pull().await
            }
            Some(Err(e)) => {
                self.batch = None;
                Err(ScanError::Fetch {
                    stream: self.stream_name.clone(),
                    source: e,
                })
            }
            Some(Ok(msg)) => {
                self.empty_pulls = 0;
                self.batch_delivered += 1;
                let info = msg.info().map_err(|e| ScanError::Fetch {
                    stream: self.stream_name.clone(),
                    source: e,
                })?;
                let (sequence, stored_at, pending) =
                    (info.stream_sequence, info.published, info.pending);
                self.received_up_to = self.received_up_to.max(sequence);
                if sequence > self.end_sequence {
                    self.done = true;
                    return Ok(());
                }
                if pending == 0 || sequence == self.end_sequence {
                    self.done = true;
                }
                let msg = msg.message;
                self.buffer.push_back(Scanned {
                    sequence,
                    stored_at,
                    subject: msg.subject.to_string(),
                    headers: msg.headers.unwrap_or_default(),
                    payload: msg.payload,
                });
                Ok(())
            }
        }
    }

    /// After a pull that returned nothing: done if the consumer has nothing pending, else
    /// try again a bounded number of times.
    async fn check_pending_after_empty_pull(&mut self) -> Result<(), ScanError> {
        let t = self.spec.request_timeout;
        let Some(consumer) = self.consumer.as_mut() else {
            self.done = true;
            return Ok(());
        };
        let (pending, delivered_up_to) = match timeout(t, consumer.info()).await {
            Err(_) => return Err(timeout_err(&self.stream_name, "consumer info", t)),
            Ok(Err(e)) => {
                return Err(ScanError::Fetch {
                    stream: self.stream_name.clone(),
                    source: Box::new(e),
                });
            }
            Ok(Ok(info)) => (info.num_pending, info.delivered.stream_sequence),
        };
        if pending == 0 {
            // Nothing left to deliver; but if the server delivered past what arrived, the
            // rest was lost on the way, and an empty or short answer would be a lie.
            if delivered_up_to > self.received_up_to && self.received_up_to < self.end_sequence {
                return Err(ScanError::Unread {
                    stream: self.stream_name.clone(),
                    received_up_to: self.received_up_to,
                    delivered_up_to,
                });
            }
            self.done = true;
            return Ok(());
        }
        self.empty_pulls += 1;
        if self.empty_pulls >= MAX_EMPTY_PULLS {
            return Err(timeout_err(
                &self.stream_name,
                "pull (messages pending but none delivered)",
                t * MAX_EMPTY_PULLS,
            ));
        }
        Ok(())
    }

    /// Stops the scan and deletes its consumer (bounded; on failure the server removes it
    /// after its inactivity threshold).
    pub(crate) async fn close(mut self) {
        self.batch = None;
        if let Some(consumer) = self.consumer.take() {
            let name = consumer.cached_info().name.clone();
            match timeout(
                self.spec.request_timeout,
                self.stream.delete_consumer(&name),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(
                    stream = %self.stream_name, consumer = %name, error = %e,
                    "scan consumer not deleted; the server drops it when inactive"
                ),
                Err(_) => tracing::debug!(
                    stream = %self.stream_name, consumer = %name,
                    "scan consumer delete timed out; the server drops it when inactive"
                ),
            }
        }
    }
}

fn timeout_err(stream: &str, what: &'static str, after: Duration) -> ScanError {
    ScanError::Timeout {
        stream: stream.to_owned(),
        what,
        after,
    }
}
