//! The relay: forwards committed outbox rows in order through the [`Publisher`]'s windowed
//! (batched) path and deletes each row once the stream acknowledged it.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgListener;
use sqlx::{Any, Row};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{NOTIFY_CHANNEL, Outbox};
use crate::db::{Backend, Database, now_ms};
use crate::event::Event;
use crate::metrics::{OUTBOX_OLDEST_AGE_SECONDS, OUTBOX_PENDING, OUTBOX_RELAYED_TOTAL};
use crate::publisher::{PublishError, PublishOutcome, Publisher};

/// The PostgreSQL advisory lock that elects the one relay of a database's outbox
/// (the bytes of "evoutbox").
const LEASE_KEY: i64 = 0x6576_6f75_7462_6f78;

/// How a [`Relay`] works.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// The `service` label of the outbox metrics.
    pub service: String,
    /// Rows read and published per round (one atomic batch per stream when the stream
    /// allows them).
    pub batch_size: usize,
    /// The fallback poll, for commits made without a wake-up (another process, a restart).
    pub poll_interval: Duration,
    /// The longest wait between tries while NATS or the database fails.
    pub max_backoff: Duration,
}

impl RelayConfig {
    /// Defaults: 500 rows a round, poll every 500 ms, back off up to 5 s.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// One committed outbox row.
struct OutboxRow {
    seq: i64,
    event_id: String,
    body: Vec<u8>,
}

/// Why a round stopped before the outbox was empty.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("outbox query failed")]
    Sql(#[from] sqlx::Error),
    #[error("publish of event {event_id} failed")]
    Publish {
        event_id: String,
        #[source]
        source: PublishError,
    },
    #[error("outbox row of event {0} does not decode")]
    Undecodable(String),
    #[error("shut down")]
    Cancelled,
}

/// Forwards a database's outbox to NATS until cancelled. See the [module](super) docs.
#[derive(Debug)]
pub struct Relay {
    db: Database,
    outbox: Outbox,
    publisher: Publisher,
    config: RelayConfig,
}

impl Relay {
    /// A relay of `db`'s outbox, woken by `outbox`'s enqueues, publishing with `publisher`
    /// (give it no spool: the outbox is the durable buffer).
    pub fn new(db: Database, outbox: Outbox, publisher: Publisher, config: RelayConfig) -> Self {
        Self {
            db,
            outbox,
            publisher,
            config,
        }
    }

    /// Runs until `shutdown` is cancelled: takes the lease (PostgreSQL), drains the outbox,
    /// then waits for a wake-up or the poll. Returns when cancelled; an unfinished round
    /// leaves its rows for the next relay (they are resent with the same ids).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut lease: Option<PoolConnection<Any>> = None;
        let mut listener: Option<PgListener> = None;
        let mut failures: u32 = 0;
        while !shutdown.is_cancelled() {
            let leading = self.lead(&mut lease).await;
            if leading && listener.is_none() {
                listener = self.listen().await;
            }
            let result = if leading {
                self.drain(&shutdown).await
            } else {
                Ok(())
            };
            self.report_gauges().await;
            let wait = match result {
                Ok(()) => {
                    failures = 0;
                    None
                }
                Err(RoundError::Cancelled) => break,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    warn!(error = %crate::error_chain(&e), failures, "outbox relay round failed; retrying");
                    Some(self.backoff(failures))
                }
            };
            let poll = if leading {
                self.config.poll_interval
            } else {
                self.config.poll_interval * 2
            };
            let woken = wait.is_none() && leading;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = self.outbox.wake().notified(), if woken => {}
                ok = notified(listener.as_mut()), if woken => {
                    if !ok {
                        listener = None;
                    }
                }
                () = tokio::time::sleep(wait.unwrap_or(poll)) => {}
            }
        }
        release(lease).await;
        debug!("outbox relay stopped");
    }

    /// On PostgreSQL, a connection listening for commits of other processes; `None` on
    /// SQLite or if it cannot be opened (the poll still runs; tried again next round).
    async fn listen(&self) -> Option<PgListener> {
        if self.db.backend() != Backend::Postgres {
            return None;
        }
        let opened = async {
            let mut l = PgListener::connect(self.db.url()).await?;
            l.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match tokio::time::timeout(self.config.max_backoff, opened).await {
            Ok(Ok(l)) => Some(l),
            Ok(Err(e)) => {
                debug!(error = %e, "outbox relay cannot LISTEN; polling");
                None
            }
            Err(_) => None,
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let base = Duration::from_millis(100).saturating_mul(1 << failures.min(16));
        base.min(self.config.max_backoff)
    }

    /// True if this relay may forward: always on SQLite; on PostgreSQL while it holds the
    /// advisory lock on its own session.
    async fn lead(&self, lease: &mut Option<PoolConnection<Any>>) -> bool {
        if self.db.backend() == Backend::Sqlite {
            return true;
        }
        if let Some(conn) = lease.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok() {
                return true;
            }
            warn!("outbox relay lost its database session; electing again");
            release(lease.take()).await;
        }
        let Ok(mut conn) = self.db.pool().acquire().await else {
            return false;
        };
        let got = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(LEASE_KEY)
            .fetch_one(&mut *conn)
            .await;
        match got {
            Ok(true) => {
                info!("outbox relay is the leader");
                *lease = Some(conn);
                true
            }
            Ok(false) => false,
            Err(e) => {
                warn!(error = %e, "outbox relay could not ask for the lease");
                false
            }
        }
    }

    /// Forwards rows until the outbox is empty or a publish fails.
    async fn drain(&self, shutdown: &CancellationToken) -> Result<(), RoundError> {
        loop {
            let rows = self.fetch().await?;
            if rows.is_empty() {
                return Ok(());
            }
            let full = rows.len() >= self.config.batch_size;
            let (acked, failed) = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Err(RoundError::Cancelled),
                r = self.publish(&rows) => r?,
            };
            self.delete(&acked).await?;
            if let Some(e) = failed {
                return Err(e);
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<OutboxRow>, sqlx::Error> {
        let limit = i64::try_from(self.config.batch_size).unwrap_or(i64::MAX);
        let rows =
            sqlx::query("SELECT seq, event_id, body FROM events_outbox ORDER BY seq LIMIT $1")
                .bind(limit)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxRow {
                    seq: r.try_get(0)?,
                    event_id: r.try_get(1)?,
                    body: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Publishes the rows in order; returns the sequences the stream acknowledged and the
    /// first failure.
    async fn publish(
        &self,
        rows: &[OutboxRow],
    ) -> Result<(Vec<i64>, Option<RoundError>), RoundError> {
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            match Event::decode_structured(&row.body) {
                Ok(ev) => events.push(ev),
                Err(e) => {
                    error!(event_id = %row.event_id, error = %e, "outbox row does not decode; the relay stops at it");
                    break;
                }
            }
        }
        let undecodable = (events.len() < rows.len()).then(|| rows[events.len()].event_id.clone());
        let outcomes = self.publisher.publish_all(&events).await;
        let mut acked = Vec::with_capacity(rows.len());
        let mut failed = undecodable.map(RoundError::Undecodable);
        for (row, res) in rows.iter().zip(outcomes) {
            let status = match res {
                Ok(PublishOutcome::Stored(ack)) if ack.duplicate => "duplicate",
                Ok(_) => "ok",
                Err(e) => {
                    let kind = e.kind();
                    if failed.is_none() {
                        failed = Some(RoundError::Publish {
                            event_id: row.event_id.clone(),
                            source: e,
                        });
                    }
                    self.count(kind);
                    continue;
                }
            };
            self.count(status);
            acked.push(row.seq);
        }
        Ok((acked, failed))
    }

    fn count(&self, status: &'static str) {
        metrics::counter!(OUTBOX_RELAYED_TOTAL, "service" => self.config.service.clone(), "status" => status)
            .increment(1);
    }

    async fn delete(&self, seqs: &[i64]) -> Result<(), sqlx::Error> {
        if seqs.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (1..=seqs.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "DELETE FROM events_outbox WHERE seq IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for s in seqs {
            q = q.bind(*s);
        }
        q.execute(self.db.pool()).await?;
        Ok(())
    }

    /// Sets `outbox_pending` and `outbox_oldest_age_seconds` from the table.
    async fn report_gauges(&self) {
        let row = sqlx::query("SELECT COUNT(*), MIN(created_ms) FROM events_outbox")
            .fetch_one(self.db.pool())
            .await;
        let Ok(row) = row else { return };
        let pending: i64 = row.try_get(0).unwrap_or(0);
        let oldest: Option<i64> = row.try_get(1).unwrap_or(None);
        let age_ms = oldest.map_or(0, |t| (now_ms() - t).max(0));
        let svc = self.config.service.clone();
        #[allow(clippy::cast_precision_loss)] // counts and ages far below 2^52
        {
            metrics::gauge!(OUTBOX_PENDING, "service" => svc.clone()).set(pending as f64);
            metrics::gauge!(OUTBOX_OLDEST_AGE_SECONDS, "service" => svc)
                .set(age_ms as f64 / 1000.0);
        }
    }
}

/// Waits for a notification; `false` if the listener failed (it is then dropped). Without
/// a listener, never returns.
async fn notified(listener: Option<&mut PgListener>) -> bool {
    match listener {
        Some(l) => l.recv().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Ends the lease's session (which frees the advisory lock with it).
async fn release(lease: Option<PoolConnection<Any>>) {
    if let Some(conn) = lease {
        let conn = conn.detach();
        let _ = sqlx::Connection::close(conn).await;
    }
}
