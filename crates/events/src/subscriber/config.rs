//! Subscriber configuration: plain serde data with defaults and [`SubscriberConfig::validate`].

pub use crate::error::ConfigError;
#[cfg(feature = "schema")]
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "schema")]
use crate::schema::SchemaSet;

/// How failed deliveries are retried (CONTRACT.md §3).
///
/// TOML: `retry = { max_attempts = 5, initial_backoff = "1s", max_backoff = "1m", jitter = 0.2 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryRetryPolicy {
    /// Deliveries the handler gets before the message is dead-lettered; the first delivery
    /// counts. A later delivery (after an instance died during the last attempt) is
    /// dead-lettered without running the handler.
    pub max_attempts: u32,
    /// NAK delay after the first failed delivery; doubles with each further delivery.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Upper bound of the NAK delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Fraction in `[0, 1]` by which a delay is randomly shortened, so that instances that
    /// failed together do not retry together. `0.2` turns 10 s into 8–10 s.
    pub jitter: f64,
}

impl Default for DeliveryRetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl DeliveryRetryPolicy {
    /// Checks every field.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.collect_problems(&mut problems);
        ConfigError::check("subscriber", problems)
    }

    fn collect_problems(&self, problems: &mut Vec<String>) {
        if self.max_attempts == 0 {
            problems.push("retry.max_attempts must be at least 1".into());
        }
        if self.initial_backoff.is_zero() {
            problems.push("retry.initial_backoff must be greater than zero".into());
        }
        if self.max_backoff < self.initial_backoff {
            problems.push(format!(
                "retry.max_backoff ({:?}) must not be below retry.initial_backoff ({:?})",
                self.max_backoff, self.initial_backoff
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            problems.push(format!(
                "retry.jitter must be within [0, 1], got {}",
                self.jitter
            ));
        }
    }
}

/// Tuning of one subscription. Every field has a production default; tests shorten the
/// timings.
///
/// TOML:
/// ```toml
/// ack_wait = "30s"
/// max_in_flight = 128
/// retry = { max_attempts = 5, initial_backoff = "1s", max_backoff = "1m" }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriberConfig {
    /// Retry and dead-letter policy.
    pub retry: DeliveryRetryPolicy,
    /// How long the server waits for an ack before redelivering. Long handlers do not need a
    /// long `ack_wait`: they send in-progress acks (see `in_progress_interval`).
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Handlers running at once in one instance (default 128). The instance only pulls as
    /// many messages as it has free slots, so a message is never waiting in a local buffer
    /// while its ack wait runs. A slot is freed when the handler returns; up to as many more
    /// messages may then be settling (ack on the wire) at once. Larger pulls cost less per
    /// message (docs/PERFORMANCE.md: 82,000 events/s at 32, 121,000 at 128 on the benchmark
    /// machine); lower it where handlers share a scarce resource (a small database pool).
    pub max_in_flight: u32,
    /// The consumer's `max_ack_pending`, shared by every instance of the group: it must be at
    /// least `instances × max_in_flight`, or some instances idle. Default 1,000 (7 instances
    /// at the default `max_in_flight`; acks are confirmed in groups, so little of it is
    /// spent on acks on the wire).
    pub max_ack_pending: u32,
    /// Handle messages of one subject one at a time, in the order this instance received
    /// them. Across instances and redeliveries there is no order: run one instance (or keep
    /// `max_ack_pending` at 1) where a strict global order matters.
    pub ordered_per_subject: bool,
    /// On shutdown, how long in-flight handlers may still run; what has not finished then is
    /// left unacked for redelivery.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How often a running handler's message gets an in-progress ack; `None` means
    /// `ack_wait / 2`.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub in_progress_interval: Option<Duration>,
    /// Most messages asked for in one pull request (also capped by the free handler slots;
    /// default 128). One pull request is open at a time: the server hands messages to open
    /// requests in turn, so a second one would hold back messages while the first is read.
    pub fetch_batch: u32,
    /// How long one pull request waits on the server for messages. It also bounds how long
    /// a lost pull request (server restart) goes unnoticed: `fetch_expires + 10 s`.
    #[serde(with = "humantime_serde")]
    pub fetch_expires: Duration,
    /// Timeout of each request to the server (ack, dead-letter publish, consumer lookup).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often the `subscription_lag` gauge is refreshed from the consumer's info.
    #[serde(with = "humantime_serde")]
    pub lag_interval: Duration,
    /// Where a **new** group starts reading (see [`StartPosition`]); a group that exists
    /// resumes where it left off.
    pub start: StartPosition,
    /// Opt-in event contracts (feature `schema`; not serialized: load the set from files or
    /// the registry and set it with [`Self::with_schemas`]). With a set, an event whose
    /// `data` does not validate against the schema of its type and version is dead-lettered
    /// as `invalid` on its first delivery, the validation error (JSON pointer and rule) in
    /// `Dlq-Error`, and the handler never sees it. A newer minor than the set has is
    /// checked against the newest older minor of its major
    /// ([`SchemaSet::validate_received`]); a type or major without a schema follows the
    /// set's [`UnknownSchema`](crate::schema::UnknownSchema) policy. `None` (the default):
    /// no schema code runs at all.
    #[cfg(feature = "schema")]
    #[serde(skip)]
    pub schemas: Option<Arc<SchemaSet>>,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            retry: DeliveryRetryPolicy::default(),
            ack_wait: Duration::from_secs(30),
            max_in_flight: 128,
            max_ack_pending: 1000,
            ordered_per_subject: false,
            drain_timeout: Duration::from_secs(30),
            in_progress_interval: None,
            fetch_batch: 128,
            fetch_expires: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            lag_interval: Duration::from_secs(10),
            start: StartPosition::All,
            #[cfg(feature = "schema")]
            schemas: None,
        }
    }
}

impl SubscriberConfig {
    /// Validates every event against `schemas` before its handler runs (see
    /// [`Self::schemas`]).
    #[cfg(feature = "schema")]
    pub fn with_schemas(mut self, schemas: impl Into<Arc<SchemaSet>>) -> Self {
        self.schemas = Some(schemas.into());
        self
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.retry.collect_problems(&mut problems);
        if self.ack_wait < Duration::from_millis(100) {
            problems.push(format!(
                "ack_wait must be at least 100ms, got {:?}",
                self.ack_wait
            ));
        }
        if self.max_in_flight == 0 {
            problems.push("max_in_flight must be at least 1".into());
        }
        if self.max_ack_pending < self.max_in_flight {
            problems.push(format!(
                "max_ack_pending ({}) must be at least max_in_flight ({})",
                self.max_ack_pending, self.max_in_flight
            ));
        }
        if self.drain_timeout.is_zero() {
            problems.push("drain_timeout must be greater than zero".into());
        }
        if let Some(i) = self.in_progress_interval
            && (i.is_zero() || i >= self.ack_wait)
        {
            problems.push(format!(
                "in_progress_interval ({i:?}) must be greater than zero and below ack_wait ({:?})",
                self.ack_wait
            ));
        }
        if self.fetch_batch == 0 {
            problems.push("fetch_batch must be at least 1".into());
        }
        if self.fetch_expires < Duration::from_millis(100) {
            problems.push(format!(
                "fetch_expires must be at least 100ms, got {:?}",
                self.fetch_expires
            ));
        }
        if self.request_timeout.is_zero() {
            problems.push("request_timeout must be greater than zero".into());
        }
        if self.lag_interval.is_zero() {
            problems.push("lag_interval must be greater than zero".into());
        }
        ConfigError::check("subscriber", problems)
    }

    /// The in-progress ack interval in effect.
    pub fn effective_in_progress_interval(&self) -> Duration {
        self.in_progress_interval.unwrap_or(self.ack_wait / 2)
    }
}

/// Where a new group starts reading its stream. It applies when the group's durable
/// consumer is created; a group that exists resumes after its last acked message whatever
/// this says (the server refuses to change it for an existing consumer).
///
/// TOML: `start = "all"`, `start = "new"`, or `start = { from = "2026-01-01T00:00:00Z" }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StartPosition {
    /// Every message the stream still holds (the default).
    #[default]
    All,
    /// Only messages stored after the group was created.
    New,
    /// Messages stored at or after this time.
    From(#[serde(with = "time::serde::rfc3339")] time::OffsetDateTime),
}

/// The former name of [`DeliveryRetryPolicy`] (delivery attempts); kept so that code written against it
/// still builds.
pub type RetryPolicy = DeliveryRetryPolicy;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_position_reads_from_toml() {
        let read = |text: &str| toml::from_str::<SubscriberConfig>(text).unwrap().start;
        assert_eq!(read(""), StartPosition::All);
        assert_eq!(read(r#"start = "new""#), StartPosition::New);
        let from = read(r#"start = { from = "2026-01-01T00:00:00Z" }"#);
        let want = time::macros::datetime!(2026-01-01 00:00:00 UTC);
        assert_eq!(from, StartPosition::From(want));
    }

    #[test]
    fn defaults_are_valid_and_match_the_contract() {
        let c = SubscriberConfig::default();
        c.validate().unwrap();
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(c.retry.initial_backoff, Duration::from_secs(1));
        assert_eq!(c.retry.max_backoff, Duration::from_secs(60));
        assert_eq!(c.effective_in_progress_interval(), Duration::from_secs(15));
    }

    #[test]
    fn validate_lists_every_problem() {
        let c = SubscriberConfig {
            retry: DeliveryRetryPolicy {
                max_attempts: 0,
                initial_backoff: Duration::from_secs(2),
                max_backoff: Duration::from_secs(1),
                jitter: 2.0,
            },
            max_in_flight: 0,
            fetch_batch: 0,
            in_progress_interval: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let err = c.validate().unwrap_err();
        assert_eq!(err.problems.len(), 6, "{err}");
        assert!(err.to_string().contains("retry.max_attempts"));
        assert!(err.to_string().contains("in_progress_interval"));
    }

    #[test]
    fn max_ack_pending_must_cover_one_instance() {
        let c = SubscriberConfig {
            max_in_flight: 64,
            max_ack_pending: 10,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_ack_pending")
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let c = SubscriberConfig {
            ack_wait: Duration::from_millis(1500),
            in_progress_interval: Some(Duration::from_millis(500)),
            ..Default::default()
        };
        let text = toml::to_string(&c).unwrap();
        let back: SubscriberConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let defaults = SubscriberConfig::default();
        let back: SubscriberConfig = toml::from_str(&toml::to_string(&defaults).unwrap()).unwrap();
        assert_eq!(back, defaults);
        let partial: SubscriberConfig =
            toml::from_str("retry = { max_attempts = 3, initial_backoff = \"10ms\" }").unwrap();
        assert_eq!(partial.retry.max_attempts, 3);
        assert_eq!(partial.retry.initial_backoff, Duration::from_millis(10));
        assert_eq!(partial.retry.max_backoff, Duration::from_secs(60));
        assert!(toml::from_str::<SubscriberConfig>("bogus = 1").is_err());
    }
}
