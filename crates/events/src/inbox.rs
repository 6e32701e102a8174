//! Inbox (feature `outbox`): a consumer with a database records each event id in the same
//! transaction as the handler's effect, so that a redelivered or replayed event changes
//! nothing (exactly-once effect). The JetStream-KV [`Idempotent`](crate::Idempotent) helper
//! stays for handlers without a database.
//!
//! ```no_run
//! # async fn run(db: events::db::Database, event: events::Event) -> Result<(), Box<dyn std::error::Error>> {
//! use events::inbox::Inbox;
//! let inbox = Inbox::new("catalog-service");
//! let mut tx = db.begin().await?;
//! if inbox.record(&mut tx, &event).await? {
//!     // first time: apply the effect in `tx`
//! }
//! tx.commit().await?; // the effect and the record together
//! # Ok(()) }
//! ```
//!
//! Rows older than the retention are removed by [`Inbox::sweep`]; keep it longer than any
//! redelivery or replay you expect (the stream's max age, 7 days by default).

use std::time::Duration;

use sqlx::{Any, Transaction};

use crate::db::{Database, now_ms};
use crate::event::Event;
use crate::metrics::EVENTS_INBOX_SKIPPED_TOTAL;

/// One consumer's inbox in the `events_inbox` table (created by
/// [`Database::migrate`](crate::db::Database::migrate)). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Inbox {
    consumer: String,
    skipped: metrics::Counter,
}

impl Inbox {
    /// The inbox of `consumer` (the consumer group's name; also the metric label).
    pub fn new(consumer: impl Into<String>) -> Self {
        let consumer = consumer.into();
        let skipped = metrics::counter!(EVENTS_INBOX_SKIPPED_TOTAL, "consumer" => consumer.clone());
        Self { consumer, skipped }
    }

    /// Records `event`'s id inside `tx`. Returns `true` the first time (apply the effect in
    /// the same transaction) and `false` if it was already recorded (skip the effect; counted
    /// in `events_inbox_skipped_total`). On PostgreSQL a concurrent record of the same id
    /// waits for the other transaction and then answers `false`.
    ///
    /// # Errors
    /// The driver's error if the insert fails.
    pub async fn record(
        &self,
        tx: &mut Transaction<'_, Any>,
        event: &Event,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO events_inbox (consumer, event_id, recorded_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer, event_id) DO NOTHING",
        )
        .bind(&self.consumer)
        .bind(event.id())
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        let first = done.rows_affected() == 1;
        if !first {
            self.skipped.increment(1);
        }
        Ok(first)
    }

    /// Deletes this consumer's records at least `retention` old; returns how many.
    ///
    /// # Errors
    /// The driver's error if the delete fails.
    pub async fn sweep(&self, db: &Database, retention: Duration) -> Result<u64, sqlx::Error> {
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(keep_ms);
        let done =
            sqlx::query("DELETE FROM events_inbox WHERE consumer = $1 AND recorded_ms <= $2")
                .bind(&self.consumer)
                .bind(cutoff)
                .execute(db.pool())
                .await?;
        Ok(done.rows_affected())
    }
}
