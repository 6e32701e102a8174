//! The declared topology, resolved for one profile: [`TopologySpec`] and its streams and
//! consumers, the policies they name, [`SpecError`], and the subject-filter rules both
//! loading and permissions use. The file's serde form is `file.rs`; loading it is
//! `resolve.rs`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::resolve;
use crate::names::{ConsumerName, StreamName, SubjectFilter};

/// Highest replica count a JetStream stream accepts.
pub const MAX_REPLICAS: usize = 5;

/// A spec file that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}{}: {reason}", location(*.line, *.column))]
#[non_exhaustive]
pub struct SpecError {
    /// The file (or other source) as the caller named it.
    pub source_name: String,
    /// 1-based line of the offending key or value, when the error has one.
    pub line: Option<usize>,
    /// 1-based column on that line.
    pub column: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(", line {l}, column {c}"),
        (Some(l), None) => format!(", line {l}"),
        _ => String::new(),
    }
}

/// Where streams keep their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk (the default).
    File,
    /// In memory: lost when the server stops.
    Memory,
}

/// When a stream removes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// By limits only (age, bytes, count): the default for event streams.
    Limits,
    /// Once every consumer has acked.
    Interest,
    /// Once one consumer has acked.
    #[serde(rename = "workqueue")]
    WorkQueue,
}

/// What a full stream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Evict the oldest messages.
    Old,
    /// Refuse new messages (the publisher sees an error).
    New,
}

/// A stream as declared, after defaults and the profile were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSpec {
    /// Stream name (`AUTH_EVENTS`).
    pub name: StreamName,
    /// Subjects it stores (`auth.>`).
    pub subjects: Vec<SubjectFilter>,
    /// Free text shown by tools; compared only when declared.
    pub description: Option<String>,
    /// Where it keeps messages.
    pub storage: Storage,
    /// When it removes messages.
    pub retention: Retention,
    /// What it does when full.
    pub discard: Discard,
    /// Messages older than this are removed.
    pub max_age: Duration,
    /// Size cap in bytes.
    pub max_bytes: u64,
    /// Message count cap; `None` leaves the server's value (unlimited) alone.
    pub max_msgs: Option<u64>,
    /// Per-subject message count cap; `None` leaves the server's value alone.
    pub max_msgs_per_subject: Option<u64>,
    /// Largest message in bytes; `None` leaves the server's value alone.
    pub max_msg_size: Option<u64>,
    /// Window in which a repeated `Nats-Msg-Id` is stored once.
    pub duplicate_window: Duration,
    /// Copies kept in a cluster.
    pub replicas: usize,
    /// Whether atomic batch publish is allowed (fast durable publishing).
    pub allow_atomic: bool,
}

/// A durable pull consumer as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerSpec {
    /// The stream it reads.
    pub stream: StreamName,
    /// Durable name (the consumer group).
    pub durable: ConsumerName,
    /// Free text; compared only when declared.
    pub description: Option<String>,
    /// Subjects it receives (at least one).
    pub filter_subjects: Vec<SubjectFilter>,
    /// How long a delivery may stay unacked before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries before the server stops redelivering.
    pub max_deliver: u64,
    /// Unacked deliveries in flight at most.
    pub max_ack_pending: u64,
}

/// Default `ack_wait` of a declared consumer.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Default `max_deliver` of a declared consumer (CONTRACT.md §3: 5 deliveries).
pub const DEFAULT_MAX_DELIVER: u64 = 5;
/// Default `max_ack_pending` of a declared consumer.
pub const DEFAULT_MAX_ACK_PENDING: u64 = 1000;

/// The whole declared topology, resolved for one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopologySpec {
    /// The profile it was resolved for (`dev`, `prod`).
    pub profile: String,
    /// Streams in file order.
    pub streams: Vec<StreamSpec>,
    /// Durable consumers in file order.
    pub consumers: Vec<ConsumerSpec>,
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::File => "file",
            Self::Memory => "memory",
        })
    }
}
impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Limits => "limits",
            Self::Interest => "interest",
            Self::WorkQueue => "workqueue",
        })
    }
}
impl fmt::Display for Discard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Old => "old",
            Self::New => "new",
        })
    }
}

/// True if some concrete subject matches both filters.
pub(crate) fn filters_overlap(a: &str, b: &str) -> bool {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            _ => return false,
        }
    }
}

/// True if every subject matching `inner` also matches `outer`.
pub(crate) fn filter_covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('.');
    let mut i = inner.split('.');
    loop {
        match (o.next(), i.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(x), Some(y)) if x == y && x != "*" && x != ">" => {}
            _ => return false,
        }
    }
}

impl TopologySpec {
    /// Parses, validates and resolves a topology file for `profile`.
    ///
    /// `source_name` is how errors name the file (e.g. its path). Keys left out of a stream
    /// come from the `[profiles.<profile>]` table, then `[defaults]`, then the contract's
    /// defaults (file storage, limits retention, 7 d, 1 GiB, discard old, 2 min duplicate
    /// window, 1 replica, atomic publish allowed).
    ///
    /// # Errors
    /// [`SpecError`] naming the file, the line and column where there is one, and the
    /// reason: TOML syntax, unknown keys, bad durations, sizes, names, subjects or replica
    /// counts, an unknown profile, duplicate streams or consumers, overlapping stream
    /// subjects, a dead-letter stream that does not discard new messages, a consumer on an
    /// undeclared stream or filtering subjects its stream does not hold.
    pub fn from_toml(text: &str, source_name: &str, profile: &str) -> Result<Self, SpecError> {
        resolve::load(text, source_name, profile)
    }

    /// The stream named `name`, if declared.
    pub fn stream(&self, name: &str) -> Option<&StreamSpec> {
        self.streams.iter().find(|s| s.name == name)
    }
}
