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
use async_nats::jetstream::stream::{self, Stream};
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
        let mut stream = get_stream(js, &name, t).await?;
        let state = within(t, &name, "stream info", stream.info())
            .await?
            .map_err(|e| ScanError::StreamInfo {
                stream: name.clone(),
                source: Box::new(e),
            })?
            .state
            .clone();
        let mut scanner = Scanner {
            stream,
            stream_name: name,
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
        if nothing_to_read(scanner.spec.start, &state) {
            scanner.done = true;
            return Ok(scanner);
        }
        let consumer = scanner.create_consumer().await?;
        scanner.initial_pending = consumer.cached_info().num_pending;
        if scanner.initial_pending == 0 {
            scanner.done = true;
        }
        scanner.consumer = Some(consumer);
        Ok(scanner)
    }

    /// Creates the ephemeral scan consumer (see [`scan_consumer_config`]).
    async fn create_consumer(&self) -> Result<PullConsumer, ScanError> {
        let config = scan_consumer_config(&self.spec);
        within(
            self.spec.request_timeout,
            &self.stream_name,
            "create scan consumer",
            self.stream.create_consumer(config),
        )
        .await?
        .map_err(|e| ScanError::CreateConsumer {
            stream: self.stream_name.clone(),
            source: Box::new(e),
        })
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
        if self.consumer.is_none() {
            self.done = true;
            return Ok(());
        }
        if self.batch.is_none() {
            self.start_pull().await?;
        }
        let Some(batch) = self.batch.as_mut() else {
            return Ok(());
        };
        // The pull request itself expires after `expires`; the client adds 5 s of grace.
        let wait = pull_expiry(self.spec.request_timeout) + Duration::from_secs(6);
        match within(wait, &self.stream_name, "pull", batch.next()).await? {
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
            Some(Ok(msg)) => self.accept(msg),
        }
    }

    /// Sends a pull request for the next batch.
    async fn start_pull(&mut self) -> Result<(), ScanError> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Ok(());
        };
        let req = consumer
            .batch()
            .max_messages(self.spec.batch.max(1))
            .expires(pull_expiry(self.spec.request_timeout))
            .messages();
        let batch = within(
            self.spec.request_timeout,
            &self.stream_name,
            "pull request",
            req,
        )
        .await?
        .map_err(|e| ScanError::Fetch {
            stream: self.stream_name.clone(),
            source: Box::new(e),
        })?;
        self.batch = Some(batch);
        self.batch_delivered = 0;
        Ok(())
    }

    /// Buffers a delivered message unless it lies past the scan's upper bound; marks the
    /// scan done at the bound or when nothing more is pending.
    fn accept(&mut self, msg: jetstream::Message) -> Result<(), ScanError> {
        self.empty_pulls = 0;
        self.batch_delivered += 1;
        let info = msg.info().map_err(|e| ScanError::Fetch {
            stream: self.stream_name.clone(),
            source: e,
        })?;
        let (sequence, stored_at, pending) = (info.stream_sequence, info.published, info.pending);
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

    /// After a pull that returned nothing: done if the consumer has nothing pending, else
    /// try again a bounded number of times.
    async fn check_pending_after_empty_pull(&mut self) -> Result<(), ScanError> {
        let t = self.spec.request_timeout;
        let Some(consumer) = self.consumer.as_mut() else {
            self.done = true;
            return Ok(());
        };
        let info = within(t, &self.stream_name, "consumer info", consumer.info())
            .await?
            .map_err(|e| ScanError::Fetch {
                stream: self.stream_name.clone(),
                source: Box::new(e),
            })?;
        let (pending, delivered_up_to) = (info.num_pending, info.delivered.stream_sequence);
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

/// Awaits `fut` for at most `after`; running out is [`ScanError::Timeout`] naming `what`.
async fn within<T>(
    after: Duration,
    stream: &str,
    what: &'static str,
    fut: impl Future<Output = T>,
) -> Result<T, ScanError> {
    timeout(after, fut)
        .await
        .map_err(|_| timeout_err(stream, what, after))
}

/// The stream, or [`ScanError::StreamNotFound`] if there is none of that name.
async fn get_stream(js: &jetstream::Context, name: &str, t: Duration) -> Result<Stream, ScanError> {
    within(t, name, "get stream", js.get_stream(name))
        .await?
        .map_err(|e| match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                ScanError::StreamNotFound {
                    stream: name.to_owned(),
                }
            }
            _ => ScanError::StreamInfo {
                stream: name.to_owned(),
                source: Box::new(e),
            },
        })
}

/// True if the stream holds nothing at or after `start`, so no consumer is needed.
fn nothing_to_read(start: ScanStart, state: &stream::State) -> bool {
    match start {
        _ if state.messages == 0 || state.last_sequence == 0 => true,
        ScanStart::Sequence(s) => s > state.last_sequence,
        ScanStart::Time(from) => from > state.last_timestamp,
        ScanStart::All => false,
    }
}

/// The scan's consumer: ephemeral, unacknowledged, in memory, removed by the server when
/// left idle for [`INACTIVE_THRESHOLD`].
fn scan_consumer_config(spec: &ScanSpec) -> pull::Config {
    let deliver_policy = match spec.start {
        ScanStart::All => DeliverPolicy::All,
        ScanStart::Sequence(s) => DeliverPolicy::ByStartSequence {
            start_sequence: s.max(1),
        },
        ScanStart::Time(from) => DeliverPolicy::ByStartTime { start_time: from },
    };
    pull::Config {
        name: Some(format!("events_scan_{}", uuid::Uuid::now_v7().simple())),
        description: Some("events: read-only scan (ephemeral)".to_owned()),
        deliver_policy,
        ack_policy: AckPolicy::None,
        replay_policy: ReplayPolicy::Instant,
        filter_subject: spec.filter_subject.clone().unwrap_or_default(),
        inactive_threshold: INACTIVE_THRESHOLD,
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    }
}

/// How long a pull request lives on the server: the request timeout, at least 1 s.
fn pull_expiry(request_timeout: Duration) -> Duration {
    request_timeout.max(Duration::from_secs(1))
}
