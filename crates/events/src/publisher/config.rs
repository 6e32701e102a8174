//! Publisher configuration: plain serde data with a default for every knob, and `validate()`.

pub use crate::error::ConfigError;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "schema")]
use crate::schema::SchemaSet;

/// Where the publisher gets the W3C trace context (`traceparent`, optional `tracestate`) of
/// the caller's current span.
///
/// The library uses plain `tracing`, which cannot read another layer's trace ids, so it does
/// not guess: a service that runs OpenTelemetry installs a hook that reads the current
/// OpenTelemetry context and formats it (`00-<trace id>-<span id>-<flags>`). The hook runs
/// once per publish, on the caller's task, and only for events that carry no `traceparent`
/// yet; a value the event does not accept (malformed) is ignored with a debug log.
#[derive(Clone)]
pub struct TraceContextHook(pub Arc<dyn Fn() -> Option<(String, Option<String>)> + Send + Sync>);

impl TraceContextHook {
    /// Wraps a closure returning `(traceparent, tracestate)` for the current span, if any.
    pub fn new(f: impl Fn() -> Option<(String, Option<String>)> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub(crate) fn current(&self) -> Option<(String, Option<String>)> {
        (self.0)()
    }
}

impl fmt::Debug for TraceContextHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TraceContextHook(..)")
    }
}

impl PartialEq for TraceContextHook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// How transient failures are retried. Every retry re-sends the same `Nats-Msg-Id`, so the
/// stream stores the event once however many tries reach it, as long as they all happen
/// within the stream's duplicate window (hence [`PublisherConfig::deadline`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishRetryPolicy {
    /// Retries after the first try; 0 disables retrying. The default (3, about 7 s of
    /// waiting) rides out a short outage; a stream leader election in an R3 cluster after a
    /// node dies took 4-9 s in our tests, so clustered deployments should raise it (e.g. 10
    /// with `max_backoff` 2 s) and let [`PublisherConfig::deadline`] be the bound.
    pub max_retries: u32,
    /// Wait before the first retry; each later wait doubles (see `multiplier`).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Upper bound of any single wait, jitter included.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Growth factor between waits (>= 1).
    pub multiplier: f64,
    /// Relative jitter in `[0, 1)`: a wait of `d` becomes a uniform pick in
    /// `[d * (1 - jitter), d]` (the crate's one jitter rule: only ever shortened, so the cap
    /// holds), so that many publishers failing together do not retry in lockstep.
    pub jitter: f64,
}

impl Default for PublishRetryPolicy {
    /// 3 retries waiting about 1 s, 2 s and 4 s (±20 %), capped at 8 s.
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl PublishRetryPolicy {
    fn problems(&self, out: &mut Vec<String>) {
        if self.initial_backoff.is_zero() {
            out.push("retry.initial_backoff must be > 0".into());
        }
        if self.max_backoff < self.initial_backoff {
            out.push("retry.max_backoff must be >= retry.initial_backoff".into());
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            out.push(format!(
                "retry.multiplier must be a finite number >= 1, got {}",
                self.multiplier
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            out.push(format!(
                "retry.jitter must be in [0, 1), got {}",
                self.jitter
            ));
        }
    }
}

/// The durable local spool: events that cannot be confirmed while NATS is unreachable are
/// written to disk (fsynced) and forwarded, in order and with their original ids, once NATS
/// is back. See the `spool` module for the file format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory holding the spool files; created if missing. One publisher per directory
    /// (a lock file refuses a second one).
    pub dir: PathBuf,
    /// Most bytes the spool may hold (records not yet forwarded); past it, `publish` fails
    /// with `SpoolFull` rather than dropping anything.
    pub max_bytes: u64,
    /// A segment file is closed and a new one started past this size; fully forwarded
    /// segments are deleted.
    pub segment_bytes: u64,
    /// How often the forwarder checks for work when it has nothing to do or NATS is down.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for SpoolConfig {
    /// `./events-spool`, 1 GiB, 64 MiB segments, polled every 500 ms.
    fn default() -> Self {
        Self {
            dir: PathBuf::from("events-spool"),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Grouping of windowed publishes into atomic batches (ADR-50), per stream.
///
/// Under `sync_interval: always` the server fsyncs once per publish request; an atomic batch
/// is stored with one fsync, so a stream with `allow_atomic: true` takes batches of 1,000
/// many times faster than single messages (about 10-20x here). Under the server's default
/// sync interval batches are *slower* than per-message publishing (about 0.6x): turn this
/// off where the server does not fsync every write. On by default because the project's
/// server configs ship `sync_interval: always` (durable *and* fast).
/// Applies to [`publish_async`](super::Publisher::publish_async) and
/// [`publish_all`](super::Publisher::publish_all); [`publish`](super::Publisher::publish)
/// stays one message per request (no linger on a confirmed call). Streams without
/// `allow_atomic` are published to message by message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// On by default (see above).
    pub enabled: bool,
    /// Most events in one batch; the server refuses more than 1,000.
    pub max_messages: usize,
    /// How long the first event of a batch may wait for more before the batch is sent.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Batches sent and not yet acknowledged, over all streams (the server allows 50 per
    /// stream); the window bounds the events anyway.
    pub max_batches_in_flight: usize,
}

impl Default for BatchConfig {
    /// Enabled; 1,000 events, 5 ms linger, 8 batches in flight.
    fn default() -> Self {
        Self {
            enabled: true,
            max_messages: 1000,
            linger: Duration::from_millis(5),
            max_batches_in_flight: 8,
        }
    }
}

/// Everything a [`Publisher`](super::Publisher) can be told. Every field has a default; a
/// TOML table only needs the fields it changes:
///
/// ```toml
/// [publisher]
/// source = "auth-service"
/// deadline = "20s"
/// retry = { max_retries = 3, initial_backoff = "1s" }
/// spool = { dir = "/var/lib/auth-service/spool" }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublisherConfig {
    /// The producing service (the events' `source`); informational: used in spans and logs
    /// (events carry their own `source`).
    pub source: String,
    /// How long one try waits for the stream's ack before it counts as a transient failure.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Upper bound of one publish, tries and waits included. Must be shorter than
    /// `duplicate_window`: a retry after the window could store a second copy.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// The duplicate window of the streams published to (2 minutes by the contract); only
    /// used to check `deadline` against it.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Retry policy for transient failures.
    pub retry: PublishRetryPolicy,
    /// Most events in flight (sent, outcome not yet known); a submit beyond it waits for a
    /// slot, which is the backpressure that bounds memory (about window × event size).
    /// 4,096 keeps four full atomic batches of 1,000 in flight, which is what it takes to
    /// reach the server's batch rate under `sync_interval: always`.
    pub window: usize,
    /// Grouping of windowed publishes into atomic batches (on by default).
    pub batch: BatchConfig,
    /// Opt-in durable spool; `None` (default) means an event that cannot be confirmed in
    /// time fails with `Unavailable`.
    pub spool: Option<SpoolConfig>,
    /// Opt-in hook giving the current trace context (not serialized; set it in code).
    #[serde(skip)]
    pub trace_context: Option<TraceContextHook>,
    /// Opt-in event contracts (feature `schema`; not serialized: load the set from files or
    /// the registry and set it with [`Self::with_schemas`]). With a set, an event whose
    /// `data` does not validate is refused with [`PublishError::Schema`](super::PublishError::Schema)
    /// before anything is sent, a type or version without a schema follows the set's
    /// [`UnknownSchema`](crate::schema::UnknownSchema) policy, and an event without
    /// `dataschema` gets the set's URI for its type and version (one naming another URI
    /// is refused). `None` (the default): no
    /// schema code runs at all.
    #[cfg(feature = "schema")]
    #[serde(skip)]
    pub schemas: Option<Arc<SchemaSet>>,
}

impl Default for PublisherConfig {
    /// Source `"unknown"`, ack timeout 5 s, deadline 30 s, duplicate window 2 min, the default
    /// [`PublishRetryPolicy`], a window of 4,096, batching on, no spool, no trace hook, no schemas.
    fn default() -> Self {
        Self {
            source: "unknown".into(),
            ack_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
            duplicate_window: Duration::from_secs(120),
            retry: PublishRetryPolicy::default(),
            window: 4096,
            batch: BatchConfig::default(),
            spool: None,
            trace_context: None,
            #[cfg(feature = "schema")]
            schemas: None,
        }
    }
}

impl PublisherConfig {
    /// A default configuration for the named producing service.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Self::default()
        }
    }

    /// Validates every event against `schemas` before publishing it (see
    /// [`Self::schemas`]).
    #[cfg(feature = "schema")]
    pub fn with_schemas(mut self, schemas: impl Into<Arc<SchemaSet>>) -> Self {
        self.schemas = Some(schemas.into());
        self
    }

    /// Checks every knob and reports all problems at once.
    ///
    /// # Errors
    /// [`ConfigError`] listing each problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        if self.source.is_empty() {
            p.push("source must not be empty".into());
        }
        if self.ack_timeout.is_zero() {
            p.push("ack_timeout must be > 0".into());
        }
        if self.deadline < self.ack_timeout {
            p.push("deadline must be >= ack_timeout".into());
        }
        if self.deadline >= self.duplicate_window {
            p.push(format!(
                "deadline ({}) must be shorter than the stream's duplicate window ({}): a \
                 retry after the window could store a second copy",
                humantime::format_duration(self.deadline),
                humantime::format_duration(self.duplicate_window)
            ));
        }
        if self.window == 0 {
            p.push("window must be >= 1".into());
        }
        self.retry.problems(&mut p);
        let b = &self.batch;
        if !(1..=1000).contains(&b.max_messages) {
            p.push(format!(
                "batch.max_messages must be in 1..=1000 (the server's limit), got {}",
                b.max_messages
            ));
        }
        if b.linger.is_zero() || b.linger > Duration::from_secs(1) {
            p.push("batch.linger must be > 0 and <= 1s".into());
        }
        if !(1..=50).contains(&b.max_batches_in_flight) {
            p.push("batch.max_batches_in_flight must be in 1..=50".into());
        }
        if let Some(s) = &self.spool {
            if s.dir.as_os_str().is_empty() {
                p.push("spool.dir must not be empty".into());
            }
            if s.max_bytes == 0 || s.segment_bytes == 0 {
                p.push("spool.max_bytes and spool.segment_bytes must be > 0".into());
            }
            if s.poll_interval.is_zero() {
                p.push("spool.poll_interval must be > 0".into());
            }
        }
        ConfigError::check("publisher", p)
    }
}

/// The former name of [`PublishRetryPolicy`] (publish retries); kept so that code written against it
/// still builds.
pub type RetryPolicy = PublishRetryPolicy;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        PublisherConfig::default().validate().unwrap();
    }

    #[test]
    fn deadline_must_be_shorter_than_duplicate_window() {
        let cfg = PublisherConfig {
            deadline: Duration::from_secs(120),
            ..PublisherConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        assert!(err.to_string().contains("duplicate window"), "{err}");
    }

    #[test]
    fn reports_every_problem() {
        let cfg = PublisherConfig {
            window: 0,
            ack_timeout: Duration::ZERO,
            retry: PublishRetryPolicy {
                jitter: 1.5,
                ..PublishRetryPolicy::default()
            },
            ..PublisherConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().problems.len(), 3);
    }

    #[test]
    fn toml_round_trip_with_humantime() {
        let text = r#"
            source = "auth-service"
            deadline = "20s"
            retry = { max_retries = 5, initial_backoff = "250ms" }
            spool = { dir = "/tmp/spool" }
        "#;
        let cfg: PublisherConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.deadline, Duration::from_secs(20));
        assert_eq!(cfg.retry.max_retries, 5);
        assert_eq!(cfg.retry.initial_backoff, Duration::from_millis(250));
        assert_eq!(cfg.spool.as_ref().unwrap().max_bytes, 1 << 30);
        cfg.validate().unwrap();
        let back: PublisherConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }
}
