//! Applying a [`TopologySpec`] to a server: read each stream and consumer, create what is
//! missing, update what drifted when that is allowed, and report each as an [`Action`].

use async_nats::jetstream::context::{
    ConsumerInfoError, ConsumerInfoErrorKind, GetStreamError, GetStreamErrorKind,
};
use async_nats::jetstream::{self, ErrorCode, stream::Stream};

use super::diff;
use super::report::{Action, ApplyReport, ChangeRisk, FieldChange, ItemReport, ResourceKind};
use super::spec::{ConsumerSpec, StreamSpec, TopologySpec};

/// How [`apply`] may change the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// Compute the plan only; change nothing.
    pub dry_run: bool,
    /// Also apply changes that may drop stored messages (smaller limits, removed subjects,
    /// another retention policy). Nothing is deleted even then.
    pub force: bool,
}

impl ApplyOptions {
    /// Options with `dry_run` and `force` as given.
    pub const fn new(dry_run: bool, force: bool) -> Self {
        Self { dry_run, force }
    }
}

/// Why [`apply`] stopped. Resources handled before the failure stay as applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// A JetStream request about a stream failed.
    #[error("failed to {op} stream {stream}")]
    Stream {
        /// What we were doing: `read`, `create`, `update`.
        op: &'static str,
        /// The stream.
        stream: String,
        /// The client's or server's error.
        #[source]
        source: async_nats::Error,
    },
    /// A JetStream request about a consumer failed.
    #[error("failed to {op} consumer {consumer} on stream {stream}")]
    Consumer {
        /// What we were doing: `read`, `create`, `update`.
        op: &'static str,
        /// The stream.
        stream: String,
        /// The durable name.
        consumer: String,
        /// The client's or server's error.
        #[source]
        source: async_nats::Error,
    },
}

fn stream_err(op: &'static str, stream: &str, e: impl Into<async_nats::Error>) -> TopologyError {
    TopologyError::Stream {
        op,
        stream: stream.to_owned(),
        source: e.into(),
    }
}

fn consumer_err(
    op: &'static str,
    c: &ConsumerSpec,
    e: impl Into<async_nats::Error>,
) -> TopologyError {
    TopologyError::Consumer {
        op,
        stream: c.stream.to_string(),
        consumer: c.durable.to_string(),
        source: e.into(),
    }
}

/// Decides between update and refusal for a non-empty set of changes.
fn decide(changes: Vec<FieldChange>, force: bool) -> Action {
    if let Some(ChangeRisk::Impossible(why)) = changes
        .iter()
        .map(|c| &c.risk)
        .find(|r| matches!(r, ChangeRisk::Impossible(_)))
    {
        return Action::Refused {
            reason: why.clone(),
            changes,
        };
    }
    let risky: Vec<&str> = changes
        .iter()
        .filter(|c| matches!(c.risk, ChangeRisk::DropsData(_)))
        .map(|c| c.field)
        .collect();
    if !risky.is_empty() && !force {
        return Action::Refused {
            reason: format!(
                "changing {} may drop stored messages; apply with force to do it anyway",
                risky.join(", ")
            ),
            changes,
        };
    }
    Action::Updated(changes)
}

/// Makes the server match `spec`: creates what is missing, updates what drifted, refuses
/// changes that could drop data unless `options.force`, never deletes anything.
///
/// Returns the plan (in a dry run) or what was done, per stream and consumer. A refused
/// item is in the report, not an error: check [`ApplyReport::refused`].
///
/// # Errors
/// [`TopologyError`] naming the stream or consumer whose JetStream request failed (server
/// unreachable, the server refusing a config, e.g. 3 replicas on a single server).
pub async fn apply(
    js: &jetstream::Context,
    spec: &TopologySpec,
    options: &ApplyOptions,
) -> Result<ApplyReport, TopologyError> {
    let mut report = ApplyReport {
        dry_run: options.dry_run,
        items: Vec::new(),
    };
    for s in &spec.streams {
        let action = apply_stream(js, s, options).await?;
        report.items.push(ItemReport {
            kind: ResourceKind::Stream,
            name: s.name.to_string(),
            action,
        });
    }
    for c in &spec.consumers {
        let stream_action = report.item(c.stream.as_str()).map(|i| &i.action);
        let action = if options.dry_run && matches!(stream_action, Some(Action::Created)) {
            // The stream does not exist yet, so neither does the consumer.
            Action::Created
        } else {
            apply_consumer(js, c, options).await?
        };
        report.items.push(ItemReport {
            kind: ResourceKind::Consumer,
            name: item_name(c),
            action,
        });
    }
    Ok(report)
}

/// Creates the stream if it is missing, or updates it if it drifted and that is allowed.
async fn apply_stream(
    js: &jetstream::Context,
    s: &StreamSpec,
    options: &ApplyOptions,
) -> Result<Action, TopologyError> {
    let name = s.name.as_str();
    match js.get_stream(name).await {
        Ok(stream) => update_stream(js, &stream.cached_info().config, s, options).await,
        Err(e) if is_stream_not_found(&e) => {
            if !options.dry_run {
                js.create_stream(diff::stream_config(s))
                    .await
                    .map_err(|e| stream_err("create", name, e))?;
                tracing::info!(stream = name, "stream created");
            }
            Ok(Action::Created)
        }
        Err(e) => Err(stream_err("read", name, e)),
    }
}

fn is_stream_not_found(e: &GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(je)
        if je.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Compares the stream's `current` config with `s` and updates it when allowed.
async fn update_stream(
    js: &jetstream::Context,
    current: &jetstream::stream::Config,
    s: &StreamSpec,
    options: &ApplyOptions,
) -> Result<Action, TopologyError> {
    let changes = diff::stream_changes(current, s);
    if changes.is_empty() {
        return Ok(Action::Unchanged);
    }
    let action = decide(changes, options.force);
    if let (Action::Updated(changes), false) = (&action, options.dry_run) {
        let name = s.name.as_str();
        let mut config = current.clone();
        diff::apply_stream(s, &mut config);
        js.update_stream(config)
            .await
            .map_err(|e| stream_err("update", name, e))?;
        tracing::info!(stream = name, changes = changes.len(), "stream updated");
    }
    Ok(action)
}

/// Creates the consumer if it is missing, or updates it if it drifted.
async fn apply_consumer(
    js: &jetstream::Context,
    c: &ConsumerSpec,
    options: &ApplyOptions,
) -> Result<Action, TopologyError> {
    let stream = js
        .get_stream(c.stream.as_str())
        .await
        .map_err(|e| consumer_err("read", c, e))?;
    match stream.consumer_info(c.durable.as_str()).await {
        Err(e) if is_consumer_not_found(&e) => {
            if !options.dry_run {
                stream
                    .create_consumer(diff::consumer_config(c))
                    .await
                    .map_err(|e| consumer_err("create", c, e))?;
                tracing::info!(consumer = %item_name(c), "consumer created");
            }
            Ok(Action::Created)
        }
        Err(e) => Err(consumer_err("read", c, e)),
        Ok(info) => update_consumer(&stream, &info.config, c, options).await,
    }
}

fn is_consumer_not_found(e: &ConsumerInfoError) -> bool {
    matches!(e.kind(), ConsumerInfoErrorKind::NotFound)
        || matches!(e.kind(), ConsumerInfoErrorKind::JetStream(je)
            if je.error_code() == ErrorCode::CONSUMER_NOT_FOUND)
}

/// Compares the consumer's `current` config with `c` and updates it; a push consumer of
/// that name cannot become a pull consumer in place.
async fn update_consumer(
    stream: &Stream,
    current: &jetstream::consumer::Config,
    c: &ConsumerSpec,
    options: &ApplyOptions,
) -> Result<Action, TopologyError> {
    let changes = diff::consumer_changes(current, c);
    let action = match diff::pull_config_of(current) {
        _ if changes.is_empty() => Action::Unchanged,
        None => Action::Refused {
            reason: "it exists as a push consumer; a pull consumer cannot replace it in place"
                .into(),
            changes,
        },
        Some(mut config) => {
            if !options.dry_run {
                diff::apply_consumer(c, &mut config);
                stream
                    .update_consumer(config)
                    .await
                    .map_err(|e| consumer_err("update", c, e))?;
                tracing::info!(consumer = %item_name(c), "consumer updated");
            }
            Action::Updated(changes)
        }
    };
    Ok(action)
}

/// How the report and the logs name a consumer: `STREAM/durable`.
fn item_name(c: &ConsumerSpec) -> String {
    format!("{}/{}", c.stream, c.durable)
}
