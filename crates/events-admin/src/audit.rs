//! The durable audit trail of admin actions: every replay, delete and purge (dry runs and
//! failures included) as one JSON record in the JetStream stream [`AUDIT_STREAM`] on
//! [`AUDIT_SUBJECT`]: who (token id and role), what, on what, when, how many, outcome.
//!
//! The stream is declared in `deploy/streams.toml` like every other (only the topology
//! creates streams). A mutating action is refused (503) when the stream does not answer
//! beforehand ([`AuditLog::check`]); its record is written after the action, its ack
//! awaited; a record that still cannot be stored (NATS lost in between) is logged at
//! `error` with all its fields and counted in `events_admin_audit_failures_total` (the
//! action is done by then and its answer stands). Read the trail with [`AuditLog::recent`], `GET /api/v1/audit` or
//! `eventctl audit`.

use std::future::IntoFuture as _;
use std::time::Duration;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::Admin;
use crate::roles::Action;

/// The stream of the audit trail.
pub const AUDIT_STREAM: &str = "ADMIN_AUDIT";
/// The subject audit records are published to.
pub const AUDIT_SUBJECT: &str = "audit.admin";
/// Most records one read returns.
pub const MAX_AUDIT_READ: usize = 1000;

/// One audited admin action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditRecord {
    /// When it was done (RFC 3339, UTC).
    pub at: String,
    /// The token's id.
    pub token_id: String,
    /// The token's role.
    pub role: String,
    /// `replay`, `delete` or `purge`.
    pub action: String,
    /// What it was done to: `dlq/<seq>`, `filter <json>` (its set fields) for batch
    /// replays and purges, or `all`.
    pub target: String,
    /// A dry run changes nothing; it is recorded all the same.
    pub dry_run: bool,
    /// How many dead letters were replayed, deleted or purged (would be, for a dry run).
    pub count: u64,
    /// `ok`, or the error code of the answer.
    pub outcome: String,
}

impl AuditRecord {
    /// A record of `admin` doing `action` on `target`, now.
    pub fn new(admin: &Admin, action: Action, target: impl Into<String>) -> Self {
        Self {
            at: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_else(|_| "unknown".into()),
            token_id: admin.token_id.clone(),
            role: admin.role.as_str().to_owned(),
            action: action.as_str().to_owned(),
            target: target.into(),
            dry_run: false,
            count: 0,
            outcome: "ok".to_owned(),
        }
    }
}

/// A stored record with its stream sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence in [`AUDIT_STREAM`]: the order of the trail.
    pub sequence: u64,
    /// The record.
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// Why the audit trail could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// No answer within the timeout.
    #[error("audit trail: no answer from NATS within {0:?}")]
    Timeout(Duration),
    /// NATS or JetStream refused (no stream, no permission, ...).
    #[error("audit trail: {what} failed")]
    Nats {
        /// What was tried.
        what: &'static str,
        /// The client's error.
        #[source]
        source: events::BoxError,
    },
}

/// Writes and reads the audit trail. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    js: jetstream::Context,
    timeout: Duration,
}

impl AuditLog {
    /// The trail in [`AUDIT_STREAM`] through `js`; each request bounded by 5 s.
    pub fn new(js: jetstream::Context) -> Self {
        Self {
            js,
            timeout: Duration::from_secs(5),
        }
    }

    /// Ok if the audit stream answers (checked before each mutating action).
    ///
    /// # Errors
    /// [`AuditError`] if it does not exist or does not answer within the timeout.
    pub async fn check(&self) -> Result<(), AuditError> {
        let t = self.timeout;
        tokio::time::timeout(t, self.js.get_stream(AUDIT_STREAM))
            .await
            .map_err(|_| AuditError::Timeout(t))?
            .map(drop)
            .map_err(|e| nats("read the stream info", e.into()))
    }

    /// Stores `record` and waits for its ack; returns its sequence.
    ///
    /// # Errors
    /// [`AuditError`] if it is not confirmed stored within the timeout.
    pub async fn record(&self, record: &AuditRecord) -> Result<u64, AuditError> {
        let body = serde_json::to_vec(record).map_err(|e| nats("encode", e.into()))?;
        let send = async {
            let ack = self
                .js
                .publish(AUDIT_SUBJECT, body.into())
                .await
                .map_err(|e| nats("publish", e.into()))?;
            ack.into_future()
                .await
                .map_err(|e| nats("publish", e.into()))
        };
        let ack = tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| AuditError::Timeout(self.timeout))??;
        Ok(ack.sequence)
    }

    /// The last `limit` records (at most [`MAX_AUDIT_READ`]), oldest first. Records the
    /// stream no longer holds (past its `max_age`) are skipped.
    ///
    /// # Errors
    /// [`AuditError`] if the stream cannot be read.
    pub async fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let limit = limit.clamp(1, MAX_AUDIT_READ) as u64;
        let t = self.timeout;
        let stream = tokio::time::timeout(t, self.js.get_stream(AUDIT_STREAM))
            .await
            .map_err(|_| AuditError::Timeout(t))?
            .map_err(|e| nats("read the stream info", e.into()))?;
        let state = &stream.cached_info().state;
        let (first, last) = (state.first_sequence, state.last_sequence);
        if state.messages == 0 {
            return Ok(Vec::new());
        }
        let from = last.saturating_sub(limit - 1).max(first);
        let mut out = Vec::new();
        for seq in from..=last {
            let got = tokio::time::timeout(t, stream.get_raw_message(seq))
                .await
                .map_err(|_| AuditError::Timeout(t))?;
            let Ok(msg) = got else { continue };
            match serde_json::from_slice::<AuditRecord>(&msg.payload) {
                Ok(record) => out.push(AuditEntry {
                    sequence: seq,
                    record,
                }),
                Err(e) => {
                    tracing::warn!(sequence = seq, error = %e, "unreadable audit record skipped")
                }
            }
        }
        Ok(out)
    }
}

fn nats(what: &'static str, source: events::BoxError) -> AuditError {
    AuditError::Nats { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::Role;

    #[test]
    fn a_record_names_who_what_and_round_trips() {
        let admin = Admin {
            token_id: "oncall".into(),
            role: Role::Operator,
        };
        let mut r = AuditRecord::new(&admin, Action::Replay, "dlq/7");
        r.count = 1;
        assert_eq!((r.role.as_str(), r.action.as_str()), ("operator", "replay"));
        assert!(OffsetDateTime::parse(&r.at, &Rfc3339).is_ok(), "{}", r.at);
        let entry = AuditEntry {
            sequence: 3,
            record: r,
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["token_id"], "oncall");
        assert_eq!(json["sequence"], 3);
        assert_eq!(serde_json::from_value::<AuditEntry>(json).unwrap(), entry);
    }
}
