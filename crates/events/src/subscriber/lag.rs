//! How far a consumer group is behind its stream.

use std::time::Duration;

use async_nats::jetstream;
use time::OffsetDateTime;

/// A consumer group's backlog, from the server's consumer info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lag {
    /// Messages matching the filter not yet delivered.
    pub pending: u64,
    /// Messages delivered and not yet acked (in handlers, or waiting for redelivery).
    pub ack_pending: u64,
    /// Messages delivered more than once that are not yet acked.
    pub redelivered: u64,
    /// Pull requests waiting on the server (about the number of idle instances).
    pub waiting: u64,
    /// Highest stream sequence delivered.
    pub delivered_stream_sequence: u64,
    /// Stream sequence below which everything is acked.
    pub ack_floor_stream_sequence: u64,
}

impl Lag {
    /// `pending + ack_pending`: the `subscription_lag` gauge (CONTRACT.md §5).
    pub fn total(&self) -> u64 {
        self.pending + self.ack_pending
    }
}

impl From<&jetstream::consumer::Info> for Lag {
    /// The lag the server reports in a consumer's info.
    fn from(info: &jetstream::consumer::Info) -> Self {
        Self {
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
            waiting: info.num_waiting as u64,
            delivered_stream_sequence: info.delivered.stream_sequence,
            ack_floor_stream_sequence: info.ack_floor.stream_sequence,
        }
    }
}

/// Why the lag could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LagError {
    /// The stream or consumer does not exist, or the server did not answer.
    #[error("cannot read consumer {consumer} on stream {stream}")]
    Info {
        /// The stream.
        stream: String,
        /// The durable consumer name.
        consumer: String,
        /// The cause.
        #[source]
        source: crate::error::BoxError,
    },
}

/// The lag of durable consumer `consumer` on `stream`. A subscription's durable name is
/// [`crate::subscriber::Subscriber::durable_name`] (or [`crate::subscriber::durable_name`]
/// for a group and filter).
///
/// # Errors
/// [`LagError::Info`] if the stream or consumer does not exist or the server fails.
pub async fn lag(js: &jetstream::Context, stream: &str, consumer: &str) -> Result<Lag, LagError> {
    let (_, info) = consumer_info(js, stream, consumer).await?;
    Ok(Lag::from(&info))
}

/// The stream handle and the info of durable consumer `consumer` on it.
async fn consumer_info(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
) -> Result<(jetstream::stream::Stream<()>, jetstream::consumer::Info), LagError> {
    let err = |source: crate::error::BoxError| LagError::Info {
        stream: stream.to_owned(),
        consumer: consumer.to_owned(),
        source,
    };
    let handle = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| err(e.into()))?;
    let info = handle
        .consumer_info(consumer)
        .await
        .map_err(|e| err(e.into()))?;
    Ok((handle, info))
}

/// The lag of durable consumer `consumer` on `stream` in messages and, when its oldest
/// unfinished message can be read, in seconds ([`oldest_unfinished_age`]): the two gauges
/// a running subscriber exports.
pub(crate) async fn lag_with_age(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
) -> Result<(Lag, Option<Duration>), LagError> {
    let (handle, info) = consumer_info(js, stream, consumer).await?;
    Ok((
        Lag::from(&info),
        oldest_unfinished_age(&handle, &info).await,
    ))
}

/// The lag of every subscription of `group` on `stream` (the durable consumers named
/// `<group>__…`, one per subject filter), summed; `Ok(None)` if the group has none there.
///
/// # Errors
/// [`LagError::Info`] if the stream cannot be read or the server fails.
pub async fn group_lag(
    js: &jetstream::Context,
    stream: &str,
    group: &str,
) -> Result<Option<Lag>, LagError> {
    use futures::TryStreamExt;
    let err = |source: crate::error::BoxError| LagError::Info {
        stream: stream.to_owned(),
        consumer: format!("{group}{}*", super::DURABLE_SEPARATOR),
        source,
    };
    let infos: Vec<jetstream::consumer::Info> = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| err(e.into()))?
        .consumers()
        .try_collect()
        .await
        .map_err(|e| err(e.into()))?;
    let mut total: Option<Lag> = None;
    for info in infos
        .iter()
        .filter(|i| super::is_group_consumer(&i.name, group))
    {
        let l = Lag::from(info);
        total = Some(match total {
            None => l,
            Some(t) => Lag {
                pending: t.pending + l.pending,
                ack_pending: t.ack_pending + l.ack_pending,
                redelivered: t.redelivered + l.redelivered,
                waiting: t.waiting + l.waiting,
                delivered_stream_sequence: t
                    .delivered_stream_sequence
                    .max(l.delivered_stream_sequence),
                ack_floor_stream_sequence: t
                    .ack_floor_stream_sequence
                    .min(l.ack_floor_stream_sequence),
            },
        });
    }
    Ok(total)
}

/// Age of the oldest message durable consumer `info` has not finished: the stream's stored
/// time of the first message after its ack floor that matches its filter (the
/// `subscription_lag_seconds` of CONTRACT.md §5). Zero when nothing is pending; `None` when
/// the message cannot be read (retention removed it, or the server did not answer).
pub async fn oldest_unfinished_age(
    stream: &jetstream::stream::Stream<()>,
    info: &jetstream::consumer::Info,
) -> Option<Duration> {
    if info.num_pending + info.num_ack_pending as u64 == 0 {
        return Some(Duration::ZERO);
    }
    let filter = match info.config.filter_subject.as_str() {
        "" => ">".to_owned(),
        f => f.to_owned(),
    };
    let msg = stream
        .raw_message_builder()
        .sequence(info.ack_floor.stream_sequence + 1)
        .next_by_subject(filter)
        .send()
        .await
        .ok()?;
    let age = OffsetDateTime::now_utc() - msg.time;
    Some(age.try_into().unwrap_or(Duration::ZERO))
}
