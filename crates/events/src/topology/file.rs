//! The topology file as written: serde types for its tables and keys, with the checks a
//! single value carries (positive durations, sizes with units, replica counts). Resolving
//! them into a [`TopologySpec`](super::TopologySpec) is `resolve.rs`'s work.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::spec::{Discard, MAX_REPLICAS, Retention, Storage};
use crate::names::{ConsumerName, StreamName, SubjectFilter};

/// A positive duration written the humantime way: `"2m"`, `"7d"`, `"30days"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Age(pub(super) Duration);

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
pub(super) struct Size(pub(super) u64);

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
pub(super) struct Replicas(pub(super) usize);

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
pub(super) struct Count(pub(super) i64);

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
pub(super) struct RawSettings {
    pub(super) storage: Option<Storage>,
    pub(super) retention: Option<Retention>,
    pub(super) discard: Option<Discard>,
    pub(super) max_age: Option<Age>,
    pub(super) max_bytes: Option<Size>,
    pub(super) max_msgs: Option<Count>,
    pub(super) max_msgs_per_subject: Option<Count>,
    pub(super) max_msg_size: Option<Size>,
    pub(super) duplicate_window: Option<Age>,
    pub(super) replicas: Option<Replicas>,
    pub(super) allow_atomic: Option<bool>,
}

impl RawSettings {
    /// `self` with every key that `over` sets replaced.
    pub(super) fn overlay(&self, over: &RawSettings) -> RawSettings {
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
pub(super) struct RawStream {
    pub(super) name: Spanned<StreamName>,
    pub(super) subjects: Vec<Spanned<SubjectFilter>>,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) storage: Option<Storage>,
    #[serde(default)]
    pub(super) retention: Option<Retention>,
    #[serde(default)]
    pub(super) discard: Option<Spanned<Discard>>,
    #[serde(default)]
    pub(super) max_age: Option<Age>,
    #[serde(default)]
    pub(super) max_bytes: Option<Size>,
    #[serde(default)]
    pub(super) max_msgs: Option<Count>,
    #[serde(default)]
    pub(super) max_msgs_per_subject: Option<Count>,
    #[serde(default)]
    pub(super) max_msg_size: Option<Size>,
    #[serde(default)]
    pub(super) duplicate_window: Option<Age>,
    #[serde(default)]
    pub(super) replicas: Option<Replicas>,
    #[serde(default)]
    pub(super) allow_atomic: Option<bool>,
}

impl RawStream {
    pub(super) fn settings(&self) -> RawSettings {
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
pub(super) struct RawConsumer {
    pub(super) stream: Spanned<StreamName>,
    pub(super) durable: Spanned<ConsumerName>,
    #[serde(default)]
    pub(super) description: Option<String>,
    pub(super) filter_subjects: Vec<Spanned<SubjectFilter>>,
    #[serde(default)]
    pub(super) ack_wait: Option<Age>,
    #[serde(default)]
    pub(super) max_deliver: Option<Count>,
    #[serde(default)]
    pub(super) max_ack_pending: Option<Count>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) defaults: RawSettings,
    pub(super) profiles: BTreeMap<String, RawSettings>,
    pub(super) streams: Vec<RawStream>,
    pub(super) consumers: Vec<RawConsumer>,
}
