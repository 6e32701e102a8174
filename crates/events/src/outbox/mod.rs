//! Transactional outbox (feature `outbox`): an event is written into the service's own
//! database in the same transaction as the business row, and a [`Relay`] forwards committed
//! rows to NATS. The row and its event commit together or not at all, and nothing waits on
//! NATS on the request path.
//!
//! # Guarantee and limit
//! - Every committed event is published at least once, in the order its rows were written
//!   (one relay per outbox), with `Nats-Msg-Id` = event id; a row is deleted only after the
//!   stream acknowledged it, so a crash at any point resends it with the same id.
//! - An unknown outcome (an ack that never came) is settled by the stream's duplicate window
//!   (2 minutes by default): the resend within it is stored once. A backlog older than the
//!   window (NATS down for longer, then an unconfirmed try) can be stored twice; consumers
//!   absorb that with their [`Inbox`](crate::inbox::Inbox) (or the KV idempotency helper).
//! - Order is the order of the outbox's `seq`, i.e. insertion order. On SQLite (one writer at
//!   a time) that is commit order. It holds across failed tries when the stream takes atomic
//!   batches (`allow_atomic`, as `deploy/streams.toml` declares): a batch is stored whole or
//!   not at all. Without them, an event whose try failed can land after a later one whose
//!   try succeeded (each still once). On PostgreSQL, two transactions may commit in the other
//!   order than they inserted; changes of one entity keep their order when the transaction
//!   writes (locks) the entity's row before it enqueues the event.
//! - One relay per outbox: on PostgreSQL a session advisory lock elects it (other instances
//!   wait and take over when it goes); on SQLite the file belongs to one process, which runs
//!   one relay (do not point two processes at one SQLite outbox).
//! - The relay wakes on every commit: in-process through [`Outbox::commit`], and on
//!   PostgreSQL also from other processes (`enqueue` issues a `NOTIFY` the relay `LISTEN`s
//!   to); a poll ([`RelayConfig::poll_interval`]) catches anything else.
//!
//! ```no_run
//! # async fn run(event: events::Event, publisher: events::Publisher) -> Result<(), Box<dyn std::error::Error>> {
//! use events::db::Database;
//! use events::outbox::{Outbox, Relay, RelayConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! let db = Database::connect("sqlite://.data/app.db").await?;
//! db.migrate().await?;
//! let outbox = Outbox::new();
//! let shutdown = CancellationToken::new();
//! let relay = Relay::new(db.clone(), outbox.clone(), publisher, RelayConfig::new("app"));
//! let task = tokio::spawn(relay.run(shutdown.clone()));
//!
//! let mut tx = db.begin().await?;
//! sqlx::query("INSERT INTO users (id) VALUES ($1)").bind("u1").execute(&mut *tx).await?;
//! outbox.enqueue(&mut tx, &event).await?;
//! outbox.commit(tx).await?; // commits and wakes the relay
//!
//! shutdown.cancel();
//! task.await?;
//! # Ok(()) }
//! ```

mod relay;

use std::borrow::Cow;
use std::sync::Arc;

use sqlx::{Any, Transaction};
use tokio::sync::Notify;

use crate::db::now_ms;
use crate::event::Event;
use crate::publisher::{DEFAULT_MAX_PAYLOAD, PublishError, prepare};
#[cfg(feature = "schema")]
use crate::schema::SchemaSet;

pub use relay::{Relay, RelayConfig};

/// The PostgreSQL channel a commit with outbox rows notifies.
const NOTIFY_CHANNEL: &str = "events_outbox";
/// sqlx's name of the PostgreSQL backend.
const POSTGRES_NAME: &str = "PostgreSQL";

/// Enqueueing an event failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The event would be refused by the publisher (bad subject, too large, or with a schema
    /// set, `data` breaking its contract: [`PublishError::Schema`]): nothing was written.
    #[error("event {event_id} cannot be published")]
    Invalid {
        /// The event's id.
        event_id: String,
        /// What the publisher's checks said.
        #[source]
        source: PublishError,
    },
    /// The insert or the commit failed (the caller's transaction is then to be dropped).
    #[error("outbox statement failed")]
    Sql(#[from] sqlx::Error),
}

/// The producer's handle on the outbox table: enqueues events inside the caller's
/// transaction and wakes the [`Relay`]. Cheap to clone; clones share the wake-up.
#[derive(Debug, Clone)]
pub struct Outbox {
    wake: Arc<Notify>,
    max_payload: usize,
    #[cfg(feature = "schema")]
    schemas: Option<Arc<SchemaSet>>,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    /// An outbox checking events against NATS's default `max_payload` (1 MiB).
    pub fn new() -> Self {
        Self::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }

    /// An outbox checking events against the server's `max_payload`, so that an event too
    /// large to publish is refused here and never blocks the relay.
    pub fn with_max_payload(max_payload: usize) -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            max_payload,
            #[cfg(feature = "schema")]
            schemas: None,
        }
    }

    /// An outbox that refuses what a publisher with `config` would: with its schema set
    /// (feature `schema`), [`with_schemas`](Self::with_schemas) of that set. The relay is
    /// then best given a publisher with this `config`.
    pub fn for_publisher(config: &crate::PublisherConfig) -> Self {
        let outbox = Self::new();
        #[cfg(feature = "schema")]
        if let Some(schemas) = &config.schemas {
            return outbox.with_schemas(schemas.clone());
        }
        #[cfg(not(feature = "schema"))]
        let _ = config;
        outbox
    }

    /// Validates every event against `schemas` at [`enqueue`](Self::enqueue), as a
    /// publisher with [`PublisherConfig::schemas`](crate::PublisherConfig::schemas) does
    /// (the same code): an invalid event is refused there, in the caller's transaction,
    /// rather than stored and then refused by the relay's publisher, where it would stop
    /// the outbox. An event without `dataschema` is stored with its schema's URI. Give it
    /// the set the relay's publisher has (feature `schema`).
    #[cfg(feature = "schema")]
    pub fn with_schemas(mut self, schemas: impl Into<Arc<SchemaSet>>) -> Self {
        self.schemas = Some(schemas.into());
        self
    }

    /// Validates and encodes `event` exactly as [`Publisher`](crate::Publisher) does
    /// (CONTRACT.md §2, structured mode; with [`with_schemas`](Self::with_schemas), its
    /// `data` against its schema) and inserts it into the outbox inside `tx`.
    /// Returns `false` if an event with this id is already in the outbox (nothing written).
    ///
    /// # Errors
    /// [`OutboxError::Invalid`] if the publisher would refuse the event,
    /// [`OutboxError::Sql`] if the insert fails.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'_, Any>,
        event: &Event,
    ) -> Result<bool, OutboxError> {
        let invalid = |source| OutboxError::Invalid {
            event_id: event.id().to_owned(),
            source,
        };
        let checked = self.apply_contract(event).map_err(invalid)?;
        let wire = prepare(&checked, self.max_payload).map_err(invalid)?;
        let done = sqlx::query(
            "INSERT INTO events_outbox (event_id, subject, body, created_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(wire.event_id)
        .bind(wire.subject.to_string())
        .bind(wire.payload.to_vec())
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        if tx.backend_name() == POSTGRES_NAME {
            // Delivered at commit, to the relays of every process (LISTEN in `relay.rs`).
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(NOTIFY_CHANNEL)
                .execute(&mut **tx)
                .await?;
        }
        self.wake.notify_one();
        Ok(done.rows_affected() == 1)
    }

    /// The event as it is to be stored: checked against the schema set, if any, and
    /// carrying its `dataschema` (see [`with_schemas`](Self::with_schemas)).
    fn apply_contract<'e>(&self, event: &'e Event) -> Result<Cow<'e, Event>, PublishError> {
        #[cfg(feature = "schema")]
        if let Some(schemas) = &self.schemas {
            return crate::publisher::contract::apply(schemas, event);
        }
        Ok(Cow::Borrowed(event))
    }

    /// Commits `tx` and wakes the relay, so that the events enqueued in it leave at once
    /// rather than at the next poll.
    ///
    /// # Errors
    /// The driver's error if the commit fails (nothing of `tx` is then stored).
    pub async fn commit(&self, tx: Transaction<'_, Any>) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Wakes the relay (after a commit made without [`Outbox::commit`]).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn wake(&self) -> &Notify {
        &self.wake
    }
}
