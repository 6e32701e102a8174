//! Raw pull consumers: the client's defaults (`consumer.messages()`, plain `ack()`), and
//! the extra baselines pulling with the library's sizes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull};
use futures::stream::{FuturesUnordered, StreamExt as _};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::publish::failed;
use crate::SideResult;
use crate::env::{BenchStream, Observer, RawBody, Tracker};

/// The raw consumer's durable name.
const DURABLE: &str = "raw-bench";

/// How the raw consumer acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckMode {
    /// `msg.ack().await`: one publish, no reply awaited.
    Ack,
    /// `double_ack()`: the ack is confirmed by the server (one request per message); up to
    /// `max_in_flight` outstanding per instance.
    DoubleAck {
        /// Confirmations awaited at once.
        max_in_flight: usize,
    },
}

/// How the raw consumer pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pull {
    /// `consumer.messages()` on a consumer declared without `max_ack_pending`: the
    /// client's defaults (batches of 200, 30 s expiry, 15 s heartbeat) and the server's
    /// (1,000 acks pending). What a user who skips the library writes.
    ClientDefaults,
    /// `consumer.stream()` pulling `batch` at a time (5 s expiry) on a consumer with
    /// `max_ack_pending`: the library's sizes.
    Batch { batch: usize, max_ack_pending: u32 },
}

/// How a raw consumer reads the id of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdFrom {
    /// The stream sequence from the reply subject (no body parsing): the pure client cost.
    Sequence,
    /// `data.seq` from the JSON body (and `data.sent_us` for latency).
    Body,
}

/// Settings of one raw consume run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsumeSpec {
    pub(crate) instances: usize,
    pub(crate) pull: Pull,
    pub(crate) ack: AckMode,
    pub(crate) id_from: IdFrom,
    /// Wait at most this long for every id.
    pub(crate) limit: Duration,
}

impl ConsumeSpec {
    /// One instance with the client's defaults and plain `ack()`.
    pub(crate) fn client_defaults(id_from: IdFrom, limit: Duration) -> Self {
        Self {
            instances: 1,
            pull: Pull::ClientDefaults,
            ack: AckMode::Ack,
            id_from,
            limit,
        }
    }

    /// How the report names this baseline.
    pub(crate) fn label(&self) -> String {
        let ack = match self.ack {
            AckMode::Ack => "ack".to_owned(),
            AckMode::DoubleAck { max_in_flight } => {
                format!("double_ack ({max_in_flight} in flight)")
            }
        };
        match self.pull {
            Pull::ClientDefaults => format!("raw messages() + {ack} (client defaults)"),
            Pull::Batch { batch, .. } => {
                format!("raw pull batch {batch} + {ack} (library's sizes)")
            }
        }
    }
}

/// A durable pull consumer on `stream`, declared as the library declares its own
/// (explicit ack, 30 s ack wait, unlimited deliveries), with `max_ack_pending` only when
/// the pull mode sets one.
async fn create_consumer(
    js: &jetstream::Context,
    stream: &BenchStream,
    pull: Pull,
) -> anyhow::Result<jetstream::consumer::PullConsumer> {
    let max_ack_pending = match pull {
        Pull::ClientDefaults => 0,
        Pull::Batch {
            max_ack_pending, ..
        } => i64::from(max_ack_pending),
    };
    let cfg = pull::Config {
        durable_name: Some(DURABLE.into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: -1,
        filter_subject: stream.filter.clone(),
        max_ack_pending,
        ..Default::default()
    };
    js.create_consumer_on_stream(cfg, stream.name.as_str())
        .await
        .context("creating the raw consumer")
}

/// `instances` tasks sharing one durable consumer, marking ids in a tracker, until
/// stopped.
pub(crate) struct RawConsumer {
    js: jetstream::Context,
    stream: String,
    tasks: JoinSet<u64>,
    stop: CancellationToken,
}

impl RawConsumer {
    /// Declares the consumer and starts pulling.
    pub(crate) async fn start(
        js: &jetstream::Context,
        stream: &BenchStream,
        spec: ConsumeSpec,
        tracker: &Arc<Tracker>,
        observer: &Observer,
    ) -> anyhow::Result<Self> {
        let consumer = create_consumer(js, stream, spec.pull).await?;
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for _ in 0..spec.instances.max(1) {
            let task = consume_task(
                consumer.clone(),
                spec,
                tracker.clone(),
                stop.clone(),
                observer.clone(),
            );
            tasks.spawn(task);
        }
        Ok(Self {
            js: js.clone(),
            stream: stream.name.clone(),
            tasks,
            stop,
        })
    }

    /// Stops every task (each settles its outstanding acks, bounded), deletes the
    /// consumer and returns the errors seen.
    pub(crate) async fn stop(mut self) -> u64 {
        self.stop.cancel();
        let mut errors = 0u64;
        while let Some(r) = tokio::time::timeout(Duration::from_secs(30), self.tasks.join_next())
            .await
            .unwrap_or(None)
        {
            errors += r.unwrap_or(1);
        }
        self.tasks.abort_all();
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            self.js.delete_consumer_from_stream(DURABLE, &self.stream),
        )
        .await;
        errors
    }
}

/// Drains `n` messages (ids `0..n`); returns once every id arrived, or at the limit.
pub(crate) async fn consume(
    js: &jetstream::Context,
    stream: &BenchStream,
    n: u64,
    spec: ConsumeSpec,
    observer: &Observer,
) -> anyhow::Result<SideResult> {
    let tracker = Tracker::new(n);
    let start = Instant::now();
    let consumer = RawConsumer::start(js, stream, spec, &tracker, observer).await?;
    let complete = tracker.wait_all(spec.limit).await;
    let elapsed = start.elapsed();
    let errors = consumer.stop().await;
    let res = SideResult::drained(tracker.tally(), errors, elapsed, complete, spec.limit);
    Ok(res)
}

async fn messages(
    consumer: &jetstream::consumer::PullConsumer,
    pull: Pull,
) -> Result<pull::Stream, jetstream::consumer::StreamError> {
    match pull {
        Pull::ClientDefaults => consumer.messages().await,
        Pull::Batch { batch, .. } => {
            consumer
                .stream()
                .max_messages_per_batch(batch.max(1))
                .expires(Duration::from_secs(5))
                .messages()
                .await
        }
    }
}

/// The id (and intended send time) of a message, as `spec.id_from` says.
fn read_id(msg: &jetstream::Message, id_from: IdFrom) -> Option<(u64, Option<u64>)> {
    match id_from {
        IdFrom::Sequence => msg
            .info()
            .ok()
            .map(|i| (i.stream_sequence.saturating_sub(1), None)),
        IdFrom::Body => serde_json::from_slice::<RawBody>(&msg.payload)
            .ok()
            .map(|b| (b.data.seq, Some(b.data.sent_us))),
    }
}

async fn consume_task(
    consumer: jetstream::consumer::PullConsumer,
    spec: ConsumeSpec,
    tracker: Arc<Tracker>,
    stop: CancellationToken,
    observer: Observer,
) -> u64 {
    let mut errors = 0u64;
    let Ok(mut msgs) = messages(&consumer, spec.pull).await else {
        return 1;
    };
    let mut acks = FuturesUnordered::new();
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(r) = acks.next(), if !acks.is_empty() => {
                errors += u64::from(failed(r));
                continue;
            }
            next = msgs.next() => next,
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(_)) => {
                errors += 1;
                continue;
            }
            None => break,
        };
        // Observed before the ack, as the library's handler runs before its ack.
        let id = read_id(&msg, spec.id_from);
        if let Some((_, sent_us)) = id {
            observer.handled(sent_us);
        }
        match spec.ack {
            AckMode::Ack => errors += u64::from(failed(msg.ack().await)),
            AckMode::DoubleAck { max_in_flight } => {
                while acks.len() >= max_in_flight.max(1) {
                    if let Some(r) = acks.next().await {
                        errors += u64::from(failed(r));
                    }
                }
                acks.push(async move { msg.double_ack().await });
            }
        }
        match id {
            Some((i, _)) => tracker.mark(i),
            None => errors += 1,
        }
    }
    // Settle what is still outstanding so that nothing is left half-acked.
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(10), acks.next()).await {
        errors += u64::from(failed(r));
    }
    errors
}
