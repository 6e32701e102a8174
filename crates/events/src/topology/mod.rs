//! Topology: streams and durable consumers declared in one file, applied idempotently.
//!
//! The project ships `deploy/streams.toml` with the seven streams of CONTRACT.md §1.
//! [`TopologySpec::from_toml`] loads it for one profile (`dev`: 1 replica, `prod`: 3),
//! refusing mistakes with the file, line and reason; [`apply`] makes the server match:
//!
//! - a missing stream or consumer is created;
//! - one that drifted on a declared field is updated (fields we do not declare, which the
//!   server fills with its defaults, are never reported as drift);
//! - nothing is ever deleted, and a change that could drop stored messages (a smaller
//!   `max_age`, `max_bytes`, `max_msgs` or `max_msgs_per_subject`, a removed subject, another
//!   retention policy) is refused unless [`ApplyOptions::force`] is set; a change the server
//!   cannot make in place (storage type) is always refused;
//! - the returned [`ApplyReport`] lists each resource as created, updated (field by field,
//!   from → to), unchanged or refused with the reason; its `Display` is a human diff.
//!
//! Applying the same spec twice changes nothing the second time.
//!
//! # The file
//!
//! ```toml
//! [defaults]                 # over the contract's defaults; every key optional
//! storage = "file"           # file | memory
//! retention = "limits"       # limits | interest | workqueue
//! discard = "old"            # old | new
//! max_age = "7d"             # humantime durations: "90s", "2m", "7d"
//! max_bytes = "1GiB"         # integer bytes, or KiB/MiB/GiB/TiB (1024) or KB/MB/GB/TB (1000)
//! # max_msgs = 1000000       # optional counts; absent leaves the server's (unlimited)
//! # max_msgs_per_subject = 1000
//! # max_msg_size = "1MiB"
//! duplicate_window = "2m"
//! allow_atomic = true        # atomic batch publish (fast durable publishing)
//!
//! [profiles.dev]             # the same keys; chosen at load time
//! replicas = 1
//! [profiles.prod]
//! replicas = 3
//!
//! [[streams]]                # the same keys again, over defaults and profile
//! name = "AUTH_EVENTS"
//! subjects = ["auth.>"]
//!
//! [[consumers]]              # optional durable pull consumers (explicit ack)
//! stream = "AUTH_EVENTS"
//! durable = "catalog-service"
//! filter_subjects = ["auth.user.*"]
//! ack_wait = "30s"           # default 30 s
//! max_deliver = 5            # default 5
//! max_ack_pending = 1000     # default 1000
//! ```
//!
//! # Example
//!
//! ```no_run
//! use events::topology::{ApplyOptions, TopologySpec, apply};
//! # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
//! let text = std::fs::read_to_string("deploy/streams.toml")?;
//! let spec = TopologySpec::from_toml(&text, "deploy/streams.toml", "dev")?;
//! let report = apply(&js, &spec, &ApplyOptions::default()).await?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

mod diff;
mod report;
mod spec;

use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind};

pub use report::{Action, ApplyReport, ChangeRisk, FieldChange, ItemReport, ResourceKind};
pub(crate) use spec::filter_covers;
pub use spec::{
    ConsumerSpec, DEFAULT_ACK_WAIT, DEFAULT_MAX_ACK_PENDING, DEFAULT_MAX_DELIVER, Discard,
    MAX_REPLICAS, Retention, SpecError, Storage, StreamSpec, TopologySpec,
};

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
        let name = s.name.as_str();
        let action = match js.get_stream(name).await {
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(je)
                    if je.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    if !options.dry_run {
                        js.create_stream(diff::stream_config(s))
                            .await
                            .map_err(|e| stream_err("create", name, e))?;
                        tracing::info!(stream = name, "stream created");
                    }
                    Action::Created
                }
                _ => return Err(stream_err("read", name, e)),
            },
            Ok(stream) => {
                let current = &stream.cached_info().config;
                let changes = diff::stream_changes(current, s);
                if changes.is_empty() {
                    Action::Unchanged
                } else {
                    let action = decide(changes, options.force);
                    if let (Action::Updated(changes), false) = (&action, options.dry_run) {
                        let mut config = current.clone();
                        diff::apply_stream(s, &mut config);
                        js.update_stream(config)
                            .await
                            .map_err(|e| stream_err("update", name, e))?;
                        tracing::info!(stream = name, changes = changes.len(), "stream updated");
                    }
                    action
                }
            }
        };
        report.items.push(ItemReport {
            kind: ResourceKind::Stream,
            name: name.to_owned(),
            action,
        });
    }

    for c in &spec.consumers {
        let item_name = format!("{}/{}", c.stream, c.durable);
        let stream_action = report.item(c.stream.as_str()).map(|i| &i.action);
        let action = if options.dry_run && matches!(stream_action, Some(Action::Created)) {
            // The stream does not exist yet, so neither does the consumer.
            Action::Created
        } else {
            let stream = js
                .get_stream(c.stream.as_str())
                .await
                .map_err(|e| consumer_err("read", c, e))?;
            match stream.consumer_info(c.durable.as_str()).await {
                Err(e)
                    if matches!(
                        e.kind(),
                        jetstream::context::ConsumerInfoErrorKind::NotFound
                    ) || matches!(
                        e.kind(),
                        jetstream::context::ConsumerInfoErrorKind::JetStream(je)
                            if je.error_code() == ErrorCode::CONSUMER_NOT_FOUND
                    ) =>
                {
                    if !options.dry_run {
                        stream
                            .create_consumer(diff::consumer_config(c))
                            .await
                            .map_err(|e| consumer_err("create", c, e))?;
                        tracing::info!(consumer = %item_name, "consumer created");
                    }
                    Action::Created
                }
                Err(e) => return Err(consumer_err("read", c, e)),
                Ok(info) => {
                    let changes = diff::consumer_changes(&info.config, c);
                    match diff::pull_config_of(&info.config) {
                        _ if changes.is_empty() => Action::Unchanged,
                        None => Action::Refused {
                            reason: "it exists as a push consumer; a pull consumer cannot \
                                     replace it in place"
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
                                tracing::info!(consumer = %item_name, "consumer updated");
                            }
                            Action::Updated(changes)
                        }
                    }
                }
            }
        };
        report.items.push(ItemReport {
            kind: ResourceKind::Consumer,
            name: item_name,
            action,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
