//! Subscriber: durable pull consumers, outcomes, backoff, dead letters, drain.
//!
//! ```no_run
//! use events::subscriber::{HandlerError, ResultExt, Subscriber, SubscriberConfig, handler_fn};
//! use events::SubjectFilter;
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
//! #[derive(serde::Deserialize)]
//! struct UserCreated { user_id: String }
//!
//! let subscriber = Subscriber::builder(&js, SubjectFilter::new("auth.user.*")?)
//!     .service("catalog-service") // the group, unless .group(..) says otherwise
//!     .config(SubscriberConfig { max_in_flight: 16, ..Default::default() })
//!     .build()
//!     .await?;
//! let shutdown = CancellationToken::new(); // cancel it on SIGTERM / ctrl-c
//! let report = subscriber
//!     .run(
//!         handler_fn(|event, _ctx| async move {
//!             let user: UserCreated = event.data_as().permanent()?; // bad data: no retry helps
//!             println!("welcome {}", user.user_id); // a `?` on other errors retries later
//!             Ok::<_, HandlerError>(())
//!         }),
//!         shutdown.clone(),
//!     )
//!     .await;
//! println!("drained: {report:?}");
//! # Ok(()) }
//! ```
//!
//! # Groups and durable names
//!
//! A subscription is one durable **pull** consumer, named `<group>__<filter fragment>`
//! ([`durable_name`]; `catalog-service` on `auth.user.*` gives
//! `catalog-service__auth_user_any`). Every instance that subscribes with the same group and
//! filter shares it and so splits the work; without a group the service name is the group.
//! We derive one durable per (group, filter) rather than one durable with several
//! `filter_subjects` because each filter has its own handler, its own lag, and can be added
//! or removed by deploying code without instances of the old and new version fighting over
//! one consumer's filter list. The stream is the one that holds the filter's subjects
//! (`js.stream_by_subject`), or the one named with [`SubscriberBuilder::stream`].
//!
//! # Where a new group starts
//!
//! A group created by its first subscriber reads every message the stream still holds
//! ([`StartPosition::All`], the default); [`SubscriberConfig::start`] can make it start with
//! messages stored after it was created ([`StartPosition::New`]) or at a time
//! ([`StartPosition::From`]). A group that exists resumes after its last acked message.
//!
//! # What happens to a delivery (CONTRACT.md §3)
//!
//! The decision is the pure function [`outcome::decide`] (and [`outcome::decide_before`]
//! for what is settled without running the handler):
//! - success: acked, and the ack confirmed by the server (`double_ack`);
//! - transient error or panic: `Nak(delay)`, the delay doubling per delivery from
//!   `initial_backoff` up to `max_backoff`, shortened by jitter (never a plain NAK);
//! - permanent error, undecodable or invalid message, or a transient failure on the last
//!   allowed delivery: a dead letter is written to `dlq.<subject>` and its ack awaited, then
//!   the original is terminated; if the dead-letter publish fails, the original is NAKed
//!   with a delay instead (counted as `events_consumed_total{status="dead_letter_failed"}`).
//!
//! A message whose header block the client could not parse (not UTF-8: see
//! [`crate::raw_headers`]) is undecodable: its dead letter carries none of the original
//! headers and the raw block, base64, in `Dlq-Original-Headers-Base64`. An event whose
//! `type` is not the subject it was stored under is invalid (CONTRACT.md §2), and so is,
//! with a schema set (`SubscriberConfig::with_schemas`, feature `schema`), one whose `data`
//! breaks the schema of its type and `schemaversion`: dead-lettered on its first delivery
//! with the JSON pointer and the rule in `Dlq-Error`, the handler not run. When the
//! original body plus the record would not fit the server's `max_payload`, the dead
//! letter's body is empty and `Dlq-Body-Omitted` holds the body's length; the terminated
//! original stays in its stream for replay to read.
//!
//! The server's `max_deliver` is unlimited and the library enforces `max_attempts`: if an
//! instance dies during the last allowed attempt, the server redelivers once more and that
//! delivery is dead-lettered (`max_deliveries`) without running the handler. A plain
//! server-side limit would drop such a message silently (the MAX_DELIVERIES advisory is lost
//! when nobody listens), and would also strand a message whose dead-letter publish failed
//! on the last delivery; with the library enforcing, that message keeps coming back at
//! `max_backoff` until the DLQ accepts it, logged with `error!` each time.
//!
//! # Concurrency, backpressure, order
//!
//! An instance runs at most `max_in_flight` handlers and only asks the server for as many
//! messages as it has free slots, so nothing sits in a local buffer while its ack wait runs.
//! The consumer's `max_ack_pending` is shared by the group and must be at least
//! `instances × max_in_flight` (default 1,000). Long handlers get an in-progress ack every
//! `ack_wait / 2`. With `ordered_per_subject`, messages of one subject are handled one at a
//! time in the order this instance received them (a redelivery comes back later, out of
//! order; across instances there is no order).
//!
//! # Shutdown and resilience
//!
//! [`Subscriber::run`] returns after its cancellation token is cancelled (for a started
//! subscriber: after [`RunningSubscriber::stop`]): it stops pulling,
//! lets in-flight handlers finish for up to `drain_timeout`, settles what finished, and
//! leaves the rest unacked for redelivery. Messages of the pull under way that no handler
//! took yet (received, or on the wire until a flush returns) are NAKed at once, so another
//! instance gets them now ([`DrainReport::released`]). Its outstanding pull request's inbox
//! is then unsubscribed, so the server drops that request and later events stay pending
//! for other instances. Handlers run concurrently on the task that awaits `run` (up to
//! `max_in_flight` at once, polled together, so a burst of acks leaves in one socket write);
//! a handler that burns CPU or blocks should move that work to `spawn_blocking` or a task of
//! its own. The one background task it starts (the lag gauge) is finished or aborted before
//! it returns. When a pull request fails (server
//! restart, leader election, consumer deleted) it logs a warning, backs off (100 ms doubling
//! to 5 s) and recreates the consumer from its declared config; a pull request lost without
//! an answer is noticed `fetch_expires + 10 s` after it was sent (the server ends every
//! request by `fetch_expires`).

//!
//! # Handlers
//!
//! A [`Handler`] gets the decoded [`crate::Event`] and a [`DeliveryContext`]; any closure
//! `Fn(Event, DeliveryContext) -> impl Future<Output = Result<(), HandlerError>>` is one
//! ([`handler_fn`] helps inference). `?` on any error is transient; `.permanent()?`
//! ([`ResultExt`]) dead-letters. A handler with state is [`handler_fn_with`]`(state, |state,
//! event, ctx| ..)` (the closure gets its own clone per call) or a type implementing
//! [`Handler`] (see [`handler_fn_with`]). The context also shows the message as stored,
//! without a copy ([`DeliveryContext::payload`], [`DeliveryContext::headers`]), and the
//! shutdown read-only ([`ShutdownSignal`]: a handler cannot stop the subscriber). Tower
//! stacks plug in with [`service_handler`]; the idempotency wrapper is
//! [`crate::idempotency::Idempotent`].
//!
//! # A running subscriber as a handle
//!
//! [`Subscriber::start`] runs the subscriber on a task of its own and returns a
//! [`RunningSubscriber`]: its durable name and [`lag`](RunningSubscriber::lag) while it
//! runs, [`stop`](RunningSubscriber::stop) to drain it and get the [`DrainReport`] (bounded:
//! `drain_timeout + request_timeout` and a margin), [`stop_after`](RunningSubscriber::stop_after)
//! `(n, bound)` once the handler finished `n` events, [`stop_on`](RunningSubscriber::stop_on)
//! `(condition, bound)` once a future completes. Dropping the handle begins the shutdown
//! without waiting for it.
//!
//! # Observability
//!
//! One `deliver` span per delivery (consumer, subject, stream_seq, delivered); `warn!` on a
//! retry or a connection problem, `error!` only for a dead letter or a dead letter that could
//! not be written. Metrics (CONTRACT.md §5): `events_consumed_total{event_type,status}` with
//! status `ack`, `nak`, `dead_letter` or `ack_failed` (the ack was not confirmed, so the
//! message will be redelivered); `event_handler_duration_seconds{consumer}`;
//! `event_handler_errors_total{consumer,kind}` with kind `transient`, `permanent`, `panic`,
//! `undecodable` or `invalid`; `events_dead_lettered_total{consumer,reason}`;
//! `subscription_lag{stream,consumer}` refreshed every `lag_interval`; and
//! `event_end_to_end_seconds{consumer}` for acked events. [`lag`] and [`group_lag`] read the
//! backlog on demand.

mod acker;
mod backoff;
mod config;
mod context;
mod delivery;
mod handler;
mod lag;
pub mod outcome;
mod run;
mod running;
mod service;

use async_nats::jetstream::{self, consumer::pull};

pub use backoff::backoff;
pub use config::{ConfigError, DeliveryRetryPolicy, RetryPolicy, StartPosition, SubscriberConfig};
pub use context::{DeliveryContext, ShutdownSignal};
pub use handler::{Handler, HandlerError, ResultExt, WithState, handler_fn, handler_fn_with};
pub use lag::{Lag, LagError, group_lag, lag, oldest_unfinished_age};
pub use outcome::Outcome;
pub use run::DrainReport;
pub use running::{RunningSubscriber, StopError};
pub use service::{Delivery, Permanent, ServiceHandler, service_handler};

use crate::connection::Nats;
use crate::error::BoxError;
use crate::names::{ConsumerName, NameError, SubjectFilter};

/// Separator between group and filter fragment in a durable name.
const DURABLE_SEPARATOR: &str = "__";

/// The durable consumer name of `group` subscribed to `filter`:
/// `<group>__<filter.to_name_fragment()>`.
///
/// # Errors
/// [`NameError`] if the group is not a valid consumer name or the result is too long.
pub fn durable_name(group: &str, filter: &SubjectFilter) -> Result<ConsumerName, NameError> {
    ConsumerName::new(group)?;
    ConsumerName::new(&format!(
        "{group}{DURABLE_SEPARATOR}{}",
        filter.to_name_fragment()
    ))
}

/// True if durable consumer `name` belongs to `group`: one of its subscriptions
/// (`<group>__<filter fragment>`, see [`durable_name`]) or a consumer named after the group
/// itself.
pub fn is_group_consumer(name: &str, group: &str) -> bool {
    match name.strip_prefix(group) {
        Some("") => true,
        Some(rest) => rest.starts_with(DURABLE_SEPARATOR),
        None => false,
    }
}

/// Why a subscription could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The configuration is invalid.
    #[error("invalid subscriber configuration")]
    Config(#[source] ConfigError),
    /// Neither a group nor a service name was given.
    #[error("a subscription needs a group or a service name")]
    MissingGroup,
    /// The group (or the derived durable name) is not a valid consumer name.
    #[error("invalid group name")]
    Name(#[source] NameError),
    /// No stream holds the filter's subjects.
    #[error("cannot find the stream holding subjects matching {filter}")]
    StreamNotFound {
        /// The filter.
        filter: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The server refused a JetStream API request of the setup (stream lookup, consumer
    /// create or info) for lack of permission: the identity may not read through this
    /// consumer. Only seen this fast with [`SubscriberBuilder::denials`].
    #[error("permission denied setting up consumer {consumer}")]
    PermissionDenied {
        /// The durable name.
        consumer: String,
        /// The subject the server refused.
        #[source]
        source: crate::connection::PermissionDenied,
    },
    /// The durable consumer could not be created or updated.
    #[error("cannot create consumer {consumer} on stream {stream}")]
    CreateConsumer {
        /// The stream.
        stream: String,
        /// The durable name.
        consumer: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

/// Builds a [`Subscriber`]; see [`Subscriber::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SubscriberBuilder {
    js: jetstream::Context,
    filter: SubjectFilter,
    service: Option<String>,
    group: Option<String>,
    stream: Option<String>,
    config: SubscriberConfig,
    denials: Option<crate::connection::Denials>,
}

impl SubscriberBuilder {
    /// The connection's permission denials ([`Connection::denials`]): a setup request the
    /// server refuses then fails [`build`](Self::build) at once with
    /// [`SubscribeError::PermissionDenied`] instead of after the request timeout.
    ///
    /// [`Connection::denials`]: crate::connection::Connection::denials
    pub fn denials(mut self, denials: crate::connection::Denials) -> Self {
        self.denials = Some(denials);
        self
    }

    /// The service name: the group when no [`group`](Self::group) is given.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// The consumer group: every instance with the same group splits the work.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The stream to consume from, instead of looking it up by the filter.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// The tuning (defaults: [`SubscriberConfig::default`]).
    pub fn config(mut self, config: SubscriberConfig) -> Self {
        self.config = config;
        self
    }

    /// The retry policy.
    pub fn retry(mut self, retry: DeliveryRetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// Handlers running at once in this instance.
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.config.max_in_flight = n;
        self
    }

    /// Handle messages of one subject one at a time.
    pub fn ordered_per_subject(mut self, on: bool) -> Self {
        self.config.ordered_per_subject = on;
        self
    }

    /// Validates, finds the stream, and creates (or updates to the declared config) the
    /// durable consumer.
    ///
    /// # Errors
    /// [`SubscribeError`] naming what is wrong.
    pub async fn build(mut self) -> Result<Subscriber, SubscribeError> {
        self.config.validate().map_err(SubscribeError::Config)?;
        let group = self
            .group
            .clone()
            .or(self.service.clone())
            .ok_or(SubscribeError::MissingGroup)?;
        let durable = durable_name(&group, &self.filter).map_err(SubscribeError::Name)?;
        let Some(denials) = self.denials.take() else {
            return self.set_up(group, durable).await;
        };
        let since = std::time::Instant::now();
        let consumer = durable.as_str().to_owned();
        let denied = denials.wait_for(since, |d| {
            d.operation == crate::connection::DeniedOperation::Publish
                && (d.subject.starts_with("$JS.API.STREAM.")
                    || (d.subject.starts_with("$JS.API.CONSUMER.")
                        && d.subject.contains(consumer.as_str())))
        });
        let res = tokio::select! {
            biased;
            res = self.set_up(group, durable) => res,
            d = denied => Err(SubscribeError::PermissionDenied { consumer, source: d.into() }),
        };
        res.map(|mut sub| {
            sub.denials = Some(denials);
            sub
        })
    }

    /// Finds the stream and creates (or updates) the durable consumer.
    async fn set_up(
        self,
        group: String,
        durable: ConsumerName,
    ) -> Result<Subscriber, SubscribeError> {
        let timeout = self.config.request_timeout;
        let stream = match self.stream {
            Some(s) => s,
            None => {
                let not_found = |source: BoxError| SubscribeError::StreamNotFound {
                    filter: self.filter.to_string(),
                    source,
                };
                tokio::time::timeout(timeout, self.js.stream_by_subject(self.filter.as_str()))
                    .await
                    .map_err(|e| not_found(e.into()))?
                    .map_err(|e| not_found(e.into()))?
            }
        };
        let consumer_config = consumer_config(durable.as_str(), &self.filter, &self.config);
        let consumer = create_consumer(&self.js, &stream, consumer_config.clone(), timeout).await?;
        Ok(Subscriber {
            js: self.js,
            stream,
            group,
            durable: durable.into_string(),
            filter: self.filter,
            config: self.config,
            consumer_config,
            consumer,
            denials: None,
        })
    }
}

/// A subscription of one group to one subject filter: a durable pull consumer, ready to
/// [`run`](Self::run) a handler.
#[derive(Debug)]
pub struct Subscriber {
    js: jetstream::Context,
    stream: String,
    group: String,
    durable: String,
    filter: SubjectFilter,
    config: SubscriberConfig,
    consumer_config: pull::Config,
    consumer: jetstream::consumer::PullConsumer,
    /// The connection's denials, when built with them: a denied pull stops `run`.
    denials: Option<crate::connection::Denials>,
}

impl Subscriber {
    /// Starts building a subscription of `filter` (`auth.user.*`, `auth.>`) on `nats`: the
    /// library's `&Connection` (its permission denials then fail the setup at once, see
    /// [`SubscriberBuilder::denials`]), a JetStream context or a client.
    pub fn builder(nats: impl Into<Nats>, filter: SubjectFilter) -> SubscriberBuilder {
        let nats = nats.into();
        SubscriberBuilder {
            js: nats.jetstream(),
            filter,
            service: None,
            group: None,
            stream: None,
            config: SubscriberConfig::default(),
            denials: nats.denials().cloned(),
        }
    }

    /// [`builder`](Self::builder) on a connection (the same as `builder(conn, filter)`).
    pub fn on_connection(
        conn: &crate::connection::Connection,
        filter: SubjectFilter,
    ) -> SubscriberBuilder {
        Self::builder(conn, filter)
    }

    /// The stream consumed from.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The durable consumer's name.
    pub fn durable_name(&self) -> &str {
        &self.durable
    }

    /// The subject filter.
    pub fn filter(&self) -> &SubjectFilter {
        &self.filter
    }

    /// The tuning in effect.
    pub fn config(&self) -> &SubscriberConfig {
        &self.config
    }

    /// The consumer's backlog now.
    ///
    /// # Errors
    /// [`LagError`] if the server does not answer or the consumer is gone.
    pub async fn lag(&self) -> Result<Lag, LagError> {
        lag(&self.js, &self.stream, &self.durable).await
    }

    /// Runs `handler` on every delivery until `shutdown` is cancelled, then drains (see the
    /// module doc) and returns within about `drain_timeout`. Connection problems never end
    /// it: it logs them and re-establishes its pull loop. Built with the connection's
    /// denials ([`SubscriberBuilder::denials`]), it also stops, logged at `error` and with
    /// [`DrainReport::denied`], when the server denies its pulls (no retry can help).
    pub async fn run<H: Handler>(
        self,
        handler: H,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> DrainReport {
        run::run(self, handler, shutdown).await
    }

    /// Runs `handler` on a Tokio task of its own and returns its handle: its durable name
    /// and lag while it runs, and [`RunningSubscriber::stop`] (or `stop_after(n, ..)`,
    /// `stop_on(condition, ..)`) to drain it and get the [`DrainReport`]. Dropping the
    /// handle begins the shutdown without waiting for it.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start<H: Handler>(self, handler: H) -> RunningSubscriber {
        RunningSubscriber::spawn(self, handler)
    }
}

fn consumer_config(durable: &str, filter: &SubjectFilter, cfg: &SubscriberConfig) -> pull::Config {
    pull::Config {
        durable_name: Some(durable.to_owned()),
        description: Some(format!("events subscriber of {filter}")),
        deliver_policy: deliver_policy(cfg.start),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: cfg.ack_wait,
        // Unlimited: the library enforces `retry.max_attempts` (see the module doc).
        max_deliver: -1,
        filter_subject: filter.to_string(),
        max_ack_pending: i64::from(cfg.max_ack_pending),
        ..Default::default()
    }
}

/// The server's deliver policy for a new group's start position.
fn deliver_policy(start: StartPosition) -> jetstream::consumer::DeliverPolicy {
    use jetstream::consumer::DeliverPolicy;
    match start {
        StartPosition::All => DeliverPolicy::All,
        StartPosition::New => DeliverPolicy::New,
        StartPosition::From(start_time) => DeliverPolicy::ByStartTime { start_time },
    }
}

async fn create_consumer(
    js: &jetstream::Context,
    stream: &str,
    config: pull::Config,
    timeout: std::time::Duration,
) -> Result<jetstream::consumer::PullConsumer, SubscribeError> {
    let consumer = config.durable_name.clone().unwrap_or_default();
    let err = |source: BoxError| SubscribeError::CreateConsumer {
        stream: stream.to_owned(),
        consumer: consumer.clone(),
        source,
    };
    tokio::time::timeout(timeout, js.create_consumer_on_stream(config, stream))
        .await
        .map_err(|e| err(e.into()))?
        .map_err(|e| err(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_consumers_are_the_group_and_its_subscriptions() {
        let filter = SubjectFilter::new("auth.user.*").unwrap();
        let name = durable_name("catalog", &filter).unwrap();
        assert!(is_group_consumer(name.as_str(), "catalog"));
        assert!(is_group_consumer("catalog", "catalog"));
        assert!(!is_group_consumer(name.as_str(), "cat"));
        assert!(!is_group_consumer("catalogue__auth_all", "catalog"));
    }

    #[test]
    fn durable_names_do_not_clash_across_filters() {
        let a = durable_name("catalog", &SubjectFilter::new("auth.user.*").unwrap()).unwrap();
        let b = durable_name("catalog", &SubjectFilter::new("auth.>").unwrap()).unwrap();
        assert_eq!(a.as_str(), "catalog__auth_user_any");
        assert_eq!(b.as_str(), "catalog__auth_all");
        assert!(durable_name("bad.group", &SubjectFilter::new("auth.>").unwrap()).is_err());
    }

    #[test]
    fn consumer_config_leaves_max_deliver_to_the_library() {
        let cfg = SubscriberConfig::default();
        let c = consumer_config("g__auth_all", &SubjectFilter::new("auth.>").unwrap(), &cfg);
        assert_eq!(c.max_deliver, -1);
        assert_eq!(c.ack_wait, cfg.ack_wait);
        assert_eq!(c.filter_subject, "auth.>");
        assert_eq!(c.max_ack_pending, 1000);
        assert_eq!(c.ack_policy, jetstream::consumer::AckPolicy::Explicit);
    }
}
