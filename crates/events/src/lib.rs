//! CloudEvents over NATS JetStream: an event backbone for services that must not lose an
//! event, must not loop on a bad one, and must stay close to the raw client's speed.
//!
//! Every event is a CloudEvents 1.0 event in JSON (structured mode), published on its type
//! (`auth.user.created`) into the stream of its domain (`AUTH_EVENTS`), and consumed by
//! durable pull consumers shared by every instance of a service. The rules every producer
//! and consumer keeps are in the project's `CONTRACT.md`.
//!
//! # Quick start
//!
//! Connect once; the publisher and the subscriber take the same [`Connection`]. Publish (the
//! call returns once the stream has stored the event, once):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use events::{Event, Publisher, PublisherConfig, connect, ConnectConfig};
//!
//! let conn = connect(&ConnectConfig::for_url("nats://127.0.0.1:4222")).await?;
//! let publisher = Publisher::new(&conn, PublisherConfig::new("auth-service")).await?;
//! let event = Event::builder("auth.user.created")
//!     .source("auth-service")
//!     .organization("org-1")
//!     .subject("u-1")
//!     .data(&serde_json::json!({ "user_id": "u-1", "email": "a@example.com" }))
//!     .build()?;
//! let outcome = publisher.publish(&event).await?;
//! println!("{outcome:?}");
//! # Ok(()) }
//! ```
//!
//! Consume as the group `catalog-service` (every instance shares the work; failures are
//! retried with a growing delay, then dead-lettered). [`Subscriber::start`] runs it on a task
//! of its own and returns a [`RunningSubscriber`] to ask its lag and stop it;
//! [`handler_fn_with`] hands the handler its state:
//!
//! ```no_run
//! # async fn run(conn: events::Connection) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use events::{HandlerError, SubjectFilter, Subscriber, handler_fn_with};
//!
//! let welcomed = Arc::new(AtomicU64::new(0)); // the handler's state
//! let running = Subscriber::builder(&conn, SubjectFilter::new("auth.user.*")?)
//!     .group("catalog-service")
//!     .build()
//!     .await?
//!     .start(handler_fn_with(welcomed.clone(), |welcomed, event, ctx| async move {
//!         println!("{} (delivery {}, {} bytes)", event.id(), ctx.delivered, ctx.payload().len());
//!         welcomed.fetch_add(1, Ordering::Relaxed);
//!         Ok::<_, HandlerError>(())
//!     }));
//! println!("{}: {:?}", running.durable_name(), running.lag().await?);
//! tokio::signal::ctrl_c().await?; // or SIGTERM
//! let report = running.stop().await?; // drains: in-flight handlers finish and are acked
//! println!("drained: {report:?}, welcomed {}", welcomed.load(Ordering::Relaxed));
//! # Ok(()) }
//! ```
//!
//! In a test, `running.stop_after(n, bound)` stops once the handler has finished `n`
//! events; [`Subscriber::run`] with a `CancellationToken` is the form for a service that
//! manages its own tasks.
//!
//! # Module map
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`event`] | [`Event`]: builder and validation, structured encoding, structured and binary decoding |
//! | [`names`] | validated names: [`EventType`], [`SubjectFilter`], [`OrganizationId`], [`StreamName`], [`ConsumerName`], [`Subject`] |
//! | [`connection`] | [`connect`] from a [`ConnectConfig`]: URLs, auth, TLS, reconnect, bounded connect |
//! | [`topology`] | streams and consumers from one declarative file, applied idempotently ([`apply`]) |
//! | [`publisher`] | [`Publisher`]: confirmed and windowed publishing, retries that never duplicate, atomic batches, outage spool; [`publisher::RecordingPublisher`] for tests |
//! | [`subscriber`] | [`Subscriber`]: durable pull consumers, outcomes, delayed retries, dead letters, drain, lag |
//! | [`idempotency`] | [`Idempotent`]: run a handler's effect once per event id (JetStream KV by default) |
//! | [`dlq`] | [`DeadLetters`]: list, get, replay and purge dead letters |
//! | [`replay`] | [`WindowReplay`]: replay what a stream stored in a time window |
//! | [`scan`] | the bounded, read-only stream scan under [`dlq`] and [`replay`], and its [`scan::ScanError`] |
//! | [`raw_headers`] | messages whose header block could not be parsed, and [`raw_headers::decode_message`], which every reader uses |
//! | [`security`] | least privilege: an nkey identity per service and tool, its permissions as a nats-server include |
//! | [`metrics`] | the metric names of the contract |
//! | `db`, `outbox`, `inbox` | (feature `outbox`) one `Database` over SQLite or PostgreSQL; the transactional `Outbox` and its `Relay`; the consumer's `Inbox` (exactly-once effect) |
//! | `schema` | (feature `schema`) JSON Schemas per event type and version: `SchemaSet` validation (given to the publisher and subscriber config, it enforces the contracts on both ends), `SchemaSource` (a service's `[schemas]`), compatibility check, KV registry |
//!
//! The library logs through `tracing` and records through the `metrics` facade; it never
//! installs a subscriber or recorder, reads no file and no environment variable.

mod backoff;
pub mod connection;
#[cfg(feature = "outbox")]
pub mod db;
pub mod dlq;
pub mod error;
pub mod event;
mod headers;
pub mod idempotency;
#[cfg(feature = "outbox")]
pub mod inbox;
pub mod metrics;
pub mod names;
#[cfg(feature = "outbox")]
pub mod outbox;
pub mod publisher;
pub mod raw_headers;
mod reconnect;
pub mod replay;
pub mod scan;
#[cfg(feature = "schema")]
pub mod schema;
pub mod security;
pub mod subscriber;
pub mod topology;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;

pub use connection::{ConnectConfig, ConnectError, Connection, Nats, connect};
pub use dlq::{DeadLetter, DeadLetterFilter, DeadLetterReason, DeadLetters, DlqError};
pub use error::{BoxError, ConfigError, error_chain};
pub use event::{DecodeError, EncodedEvent, Event, EventBuilder, EventError};
pub use idempotency::{IdempotencyStore, Idempotent, KvIdempotencyStore};
pub use names::{
    ConsumerName, EventType, NameError, OrganizationId, StreamName, Subject, SubjectFilter,
};
pub use publisher::{
    EventPublisher, PublishAck, PublishError, PublishHandle, PublishOutcome, Publisher,
    PublisherConfig,
};
pub use replay::{ReplayError, WindowReplay};
pub use subscriber::{
    DeliveryContext, DrainReport, Handler, HandlerError, ResultExt, RunningSubscriber,
    SubscribeError, Subscriber, SubscriberConfig, handler_fn, handler_fn_with,
};
pub use topology::{ApplyOptions, ApplyReport, SpecError, TopologyError, TopologySpec, apply};
