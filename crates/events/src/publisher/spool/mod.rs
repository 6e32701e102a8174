//! The durable local spool: an append-only log of events that NATS could not confirm
//! (`log.rs`), forwarded in order, with their original ids, once NATS is back
//! (`forward.rs`).
//!
//! The on-disk format is described in `log.rs`.
//!
//! # Why this and not an embedded database
//! - **No dependency**: the whole store is a few hundred lines over `std::fs`, with a CRC-32
//!   written here, where a store crate would bring its own file format, compaction and
//!   tuning to audit for a queue that is only ever appended at one end and read at the other.
//! - **Crash-safe**: a record is reported spooled only after `fsync`; a crash mid-append
//!   leaves a torn tail that the length and CRC expose, so it is detected at open, logged
//!   and cut off (that event was never reported spooled, its caller got an error or nothing).
//!   A corrupt record in the middle (disk damage) is skipped with a warning, never a crash.
//!   The `acked` offset is written after the forwarded events were acknowledged by the
//!   stream: a crash between the two re-forwards a few events with their original
//!   `Nats-Msg-Id`, which the stream de-duplicates within its duplicate window.
//! - **Order-preserving**: one log, read front to back; the forwarder sends a chunk of up
//!   to 1,000 records as one atomic batch when their stream allows it (stored whole or not
//!   at all), else one record at a time, stopping at the first failure, so events reach
//!   the stream in spool order.
//!   While the spool holds a backlog, new events are spooled behind it rather than
//!   overtaking it.
//!
//! Limits (honest ones): an event spooled after a try that did reach the stream (its ack
//! was lost) is forwarded again with the same id; if NATS stays away longer than the
//! stream's duplicate window, that event can be stored twice. A record the stream refuses
//! permanently when forwarded (e.g. its stream was deleted) is moved to `rejected.log` in
//! the spool directory (same record format) with an error log, not retried forever.

mod forward;
mod log;

use std::sync::Arc;

pub(super) use forward::forward;
pub(crate) use log::{AppendError, Limits, Spool, SpoolRecord};

use super::config::SpoolConfig;
use super::error::PublishError;
use super::wire::Wire;

impl From<AppendError> for PublishError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Full {
                used,
                limit,
                record,
            } => PublishError::SpoolFull {
                used,
                limit,
                record,
            },
            AppendError::Io(e) => PublishError::Spool(e),
        }
    }
}

/// The log's limits from the publisher's spool config.
pub(super) fn limits(cfg: &SpoolConfig) -> Limits {
    Limits {
        max_bytes: cfg.max_bytes,
        segment_bytes: cfg.segment_bytes,
    }
}

/// Appends `wire` to the spool (fsynced) on a blocking thread.
pub(super) async fn spool_now(spool: &Arc<Spool>, wire: &Wire) -> Result<(), PublishError> {
    let spool = spool.clone();
    let rec = SpoolRecord {
        subject: wire.subject.to_string(),
        msg_id: wire.event_id.clone(),
        payload: wire.payload.clone(),
    };
    tokio::task::spawn_blocking(move || spool.append(&rec))
        .await
        .map_err(|e| PublishError::Spool(std::io::Error::other(e.to_string())))?
        .map_err(PublishError::from)
}
