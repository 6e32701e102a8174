//! The topology file: serde types, loading with file/line errors, validation, resolution
//! of defaults and profiles into [`TopologySpec`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

use crate::dlq::DLQ_STREAM;
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

/// A positive duration written the humantime way: `"2m"`, `"7d"`, `"30days"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Age(Duration);

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let dur = humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: {e} (write e.g. \"90s\", \"2m\", \"7d\")"
            ))
        })?;
        if dur.is_zero() {
            return Err(serde::de::Error::custom(format!(
                "invalid duration {s:?}: must be greater than zero"
            )));
        }
        Ok(Age(dur))
    }
}

/// A positive size in bytes: an integer, or a string with a unit (`"1GiB"`, `"512 MiB"`,
/// `"10MB"`; binary units KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        let n = match Raw::deserialize(d)? {
            Raw::Int(n) if n > 0 => n as u64,
            Raw::Int(n) => {
                return Err(serde::de::Error::custom(format!(
                    "invalid size {n}: must be greater than zero"
                )));
            }
            Raw::Text(s) => parse_size(&s).map_err(serde::de::Error::custom)?,
        };
        Ok(Size(n))
    }
}

/// Parses `"1GiB"`-style sizes; see [`Size`].
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size {s:?}: write bytes or e.g. \"1GiB\", \"512MiB\", \"10MB\"");
    let num: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    let n = num.checked_mul(mult).ok_or_else(bad)?;
    if n == 0 || n > i64::MAX as u64 {
        return Err(format!(
            "invalid size {s:?}: must be between 1 byte and 8 EiB"
        ));
    }
    Ok(n)
}

/// Renders a byte count the way the file writes it (`1GiB`), exact, or plain bytes.
pub(crate) fn format_size(n: u64) -> String {
    for (unit, mult) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= mult && n.is_multiple_of(mult) {
            return format!("{}{unit}", n / mult);
        }
    }
    format!("{n}B")
}

/// A replica count, 1..=5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replicas(usize);

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        if !(1..=MAX_REPLICAS as i64).contains(&n) {
            return Err(serde::de::Error::custom(format!(
                "invalid replicas {n}: must be between 1 and {MAX_REPLICAS}"
            )));
        }
        Ok(Replicas(n as usize))
    }
}

/// A positive count limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count(i64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        if n < 1 {
            return Err(serde::de::Error::custom(format!(
                "invalid count {n}: must be greater than zero"
            )));
        }
        Ok(Count(n))
    }
}

/// Settings layer: `[defaults]`, `[profiles.X]`, or a stream's own keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSettings {
    storage: Option<Storage>,
    retention: Option<Retention>,
    discard: Option<Discard>,
    max_age: Option<Age>,
    max_bytes: Option<Size>,
    max_msgs: Option<Count>,
    max_msgs_per_subject: Option<Count>,
    max_msg_size: Option<Size>,
    duplicate_window: Option<Age>,
    replicas: Option<Replicas>,
    allow_atomic: Option<bool>,
}

impl RawSettings {
    /// `self` with every key that `over` sets replaced.
    fn overlay(&self, over: &RawSettings) -> RawSettings {
        RawSettings {
            storage: over.storage.or(self.storage),
            retention: over.retention.or(self.retention),
            discard: over.discard.or(self.discard),
            max_age: over.max_age.or(self.max_age),
            max_bytes: over.max_bytes.or(self.max_bytes),
            max_msgs: over.max_msgs.or(self.max_msgs),
            max_msgs_per_subject: over.max_msgs_per_subject.or(self.max_msgs_per_subject),
            max_msg_size: over.max_msg_size.or(self.max_msg_size),
            duplicate_window: over.duplicate_window.or(self.duplicate_window),
            replicas: over.replicas.or(self.replicas),
            allow_atomic: over.allow_atomic.or(self.allow_atomic),
        }
    }
}

// `flatten` and `deny_unknown_fields` do not mix in serde, so the settings keys are
// repeated here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: Spanned<StreamName>,
    subjects: Vec<Spanned<SubjectFilter>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    storage: Option<Storage>,
    #[serde(default)]
    retention: Option<Retention>,
    #[serde(default)]
    discard: Option<Spanned<Discard>>,
    #[serde(default)]
    max_age: Option<Age>,
    #[serde(default)]
    max_bytes: Option<Size>,
    #[serde(default)]
    max_msgs: Option<Count>,
    #[serde(default)]
    max_msgs_per_subject: Option<Count>,
    #[serde(default)]
    max_msg_size: Option<Size>,
    #[serde(default)]
    duplicate_window: Option<Age>,
    #[serde(default)]
    replicas: Option<Replicas>,
    #[serde(default)]
    allow_atomic: Option<bool>,
}

impl RawStream {
    fn settings(&self) -> RawSettings {
        RawSettings {
            storage: self.storage,
            retention: self.retention,
            discard: self.discard.as_ref().map(|d| *d.get_ref()),
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            max_msgs: self.max_msgs,
            max_msgs_per_subject: self.max_msgs_per_subject,
            max_msg_size: self.max_msg_size,
            duplicate_window: self.duplicate_window,
            replicas: self.replicas,
            allow_atomic: self.allow_atomic,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsumer {
    stream: Spanned<StreamName>,
    durable: Spanned<ConsumerName>,
    #[serde(default)]
    description: Option<String>,
    filter_subjects: Vec<Spanned<SubjectFilter>>,
    #[serde(default)]
    ack_wait: Option<Age>,
    #[serde(default)]
    max_deliver: Option<Count>,
    #[serde(default)]
    max_ack_pending: Option<Count>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFile {
    defaults: RawSettings,
    profiles: BTreeMap<String, RawSettings>,
    streams: Vec<RawStream>,
    consumers: Vec<RawConsumer>,
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

struct Ctx<'a> {
    text: &'a str,
    source_name: &'a str,
}

impl Ctx<'_> {
    fn at(&self, span: Option<std::ops::Range<usize>>, reason: impl Into<String>) -> SpecError {
        let (line, column) = match span {
            Some(span) => {
                let start = span.start.min(self.text.len());
                let before = &self.text[..start];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (Some(line), Some(col))
            }
            None => (None, None),
        };
        SpecError {
            source_name: self.source_name.to_owned(),
            line,
            column,
            reason: reason.into(),
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
        let ctx = Ctx { text, source_name };
        let raw: RawFile = toml::from_str(text).map_err(|e| ctx.at(e.span(), e.message()))?;

        let contract = RawSettings {
            storage: Some(Storage::File),
            retention: Some(Retention::Limits),
            discard: Some(Discard::Old),
            max_age: Some(Age(Duration::from_secs(7 * 24 * 3600))),
            max_bytes: Some(Size(1 << 30)),
            duplicate_window: Some(Age(Duration::from_secs(120))),
            replicas: Some(Replicas(1)),
            allow_atomic: Some(true),
            ..RawSettings::default()
        };
        let profile_settings = match raw.profiles.get(profile) {
            Some(p) => p.clone(),
            None => {
                let known: Vec<_> = raw.profiles.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "none declared".to_owned()
                } else {
                    known.join(", ")
                };
                return Err(ctx.at(
                    None,
                    format!("unknown profile {profile:?} (declared: {known})"),
                ));
            }
        };
        let base = contract.overlay(&raw.defaults).overlay(&profile_settings);

        let mut streams: Vec<StreamSpec> = Vec::new();
        let mut subjects_seen: Vec<(String, String)> = Vec::new(); // (subject, stream)
        for rs in &raw.streams {
            let name = rs.name.get_ref().clone();
            if streams.iter().any(|s| s.name == name) {
                return Err(ctx.at(
                    Some(rs.name.span()),
                    format!("stream {name} is declared twice"),
                ));
            }
            if rs.subjects.is_empty() {
                return Err(ctx.at(
                    Some(rs.name.span()),
                    format!("stream {name} has no subjects"),
                ));
            }
            for subj in &rs.subjects {
                let s = subj.get_ref().as_str();
                if let Some((other, owner)) =
                    subjects_seen.iter().find(|(o, _)| filters_overlap(o, s))
                {
                    return Err(ctx.at(
                        Some(subj.span()),
                        format!(
                            "subject {s:?} of stream {name} overlaps {other:?} of stream {owner}"
                        ),
                    ));
                }
                subjects_seen.push((s.to_owned(), name.to_string()));
            }
            let set = base.overlay(&rs.settings());
            // Every key has a contract default, so these are all set; the fallbacks only
            // keep this free of unwraps.
            let spec = StreamSpec {
                name: name.clone(),
                subjects: rs.subjects.iter().map(|s| s.get_ref().clone()).collect(),
                description: rs.description.clone(),
                storage: set.storage.unwrap_or(Storage::File),
                retention: set.retention.unwrap_or(Retention::Limits),
                discard: set.discard.unwrap_or(Discard::Old),
                max_age: set.max_age.map_or(Duration::ZERO, |a| a.0),
                max_bytes: set.max_bytes.map_or(0, |s| s.0),
                max_msgs: set.max_msgs.map(|c| c.0 as u64),
                max_msgs_per_subject: set.max_msgs_per_subject.map(|c| c.0 as u64),
                max_msg_size: set.max_msg_size.map(|s| s.0),
                duplicate_window: set.duplicate_window.map_or(Duration::ZERO, |a| a.0),
                replicas: set.replicas.map_or(1, |r| r.0),
                allow_atomic: set.allow_atomic.unwrap_or(false),
            };
            if spec.name == DLQ_STREAM && spec.discard != Discard::New {
                let span = rs.discard.as_ref().map_or(rs.name.span(), |d| d.span());
                return Err(ctx.at(
                    Some(span),
                    format!(
                        "stream {DLQ_STREAM} must use discard = \"new\": a full dead-letter \
                         stream must refuse new dead letters, not evict old ones"
                    ),
                ));
            }
            if spec.max_msg_size.is_some_and(|n| n > i32::MAX as u64) {
                return Err(ctx.at(
                    Some(rs.name.span()),
                    format!("stream {name}: max_msg_size must be below 2GiB"),
                ));
            }
            streams.push(spec);
        }

        let mut consumers: Vec<ConsumerSpec> = Vec::new();
        for rc in &raw.consumers {
            let stream_name = rc.stream.get_ref();
            let durable = rc.durable.get_ref();
            let Some(stream) = streams.iter().find(|s| &s.name == stream_name) else {
                return Err(ctx.at(
                    Some(rc.stream.span()),
                    format!("consumer {durable} reads stream {stream_name}, which is not declared"),
                ));
            };
            if consumers
                .iter()
                .any(|c| &c.stream == stream_name && &c.durable == durable)
            {
                return Err(ctx.at(
                    Some(rc.durable.span()),
                    format!("consumer {durable} on stream {stream_name} is declared twice"),
                ));
            }
            if rc.filter_subjects.is_empty() {
                return Err(ctx.at(
                    Some(rc.durable.span()),
                    format!("consumer {durable} has no filter_subjects"),
                ));
            }
            for f in &rc.filter_subjects {
                let fs = f.get_ref().as_str();
                if !stream
                    .subjects
                    .iter()
                    .any(|s| filter_covers(s.as_str(), fs))
                {
                    return Err(ctx.at(
                        Some(f.span()),
                        format!(
                            "filter subject {fs:?} of consumer {durable} is not within the \
                             subjects of stream {stream_name}"
                        ),
                    ));
                }
            }
            consumers.push(ConsumerSpec {
                stream: stream_name.clone(),
                durable: durable.clone(),
                description: rc.description.clone(),
                filter_subjects: rc
                    .filter_subjects
                    .iter()
                    .map(|f| f.get_ref().clone())
                    .collect(),
                ack_wait: rc.ack_wait.map_or(DEFAULT_ACK_WAIT, |a| a.0),
                max_deliver: rc.max_deliver.map_or(DEFAULT_MAX_DELIVER, |c| c.0 as u64),
                max_ack_pending: rc
                    .max_ack_pending
                    .map_or(DEFAULT_MAX_ACK_PENDING, |c| c.0 as u64),
            });
        }

        Ok(TopologySpec {
            profile: profile.to_owned(),
            streams,
            consumers,
        })
    }

    /// The stream named `name`, if declared.
    pub fn stream(&self, name: &str) -> Option<&StreamSpec> {
        self.streams.iter().find(|s| s.name == name)
    }
}
