//! Declared vs. server state: conversion to async-nats configs and the field-by-field diff.
//! Pure functions, tested without a server.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::consumer;
use async_nats::jetstream::stream;

use super::file::format_size;
use super::report::{ChangeRisk, FieldChange};
use super::spec::{ConsumerSpec, Discard, Retention, Storage, StreamSpec};

fn storage_to_nats(s: Storage) -> stream::StorageType {
    match s {
        Storage::File => stream::StorageType::File,
        Storage::Memory => stream::StorageType::Memory,
    }
}
fn storage_from_nats(s: stream::StorageType) -> String {
    match s {
        stream::StorageType::File => "file".into(),
        stream::StorageType::Memory => "memory".into(),
    }
}
fn retention_to_nats(r: Retention) -> stream::RetentionPolicy {
    match r {
        Retention::Limits => stream::RetentionPolicy::Limits,
        Retention::Interest => stream::RetentionPolicy::Interest,
        Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
    }
}
fn retention_from_nats(r: stream::RetentionPolicy) -> String {
    match r {
        stream::RetentionPolicy::Limits => "limits".into(),
        stream::RetentionPolicy::Interest => "interest".into(),
        stream::RetentionPolicy::WorkQueue => "workqueue".into(),
    }
}
fn discard_to_nats(d: Discard) -> stream::DiscardPolicy {
    match d {
        Discard::Old => stream::DiscardPolicy::Old,
        Discard::New => stream::DiscardPolicy::New,
    }
}
fn discard_from_nats(d: stream::DiscardPolicy) -> String {
    match d {
        stream::DiscardPolicy::Old => "old".into(),
        stream::DiscardPolicy::New => "new".into(),
    }
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes every declared field of `spec` into `config`, leaving the others (server
/// defaults, or what the server already has) alone.
pub(crate) fn apply_stream(spec: &StreamSpec, config: &mut stream::Config) {
    config.name = spec.name.to_string();
    config.subjects = spec.subjects.iter().map(|s| s.to_string()).collect();
    if let Some(d) = &spec.description {
        config.description = Some(d.clone());
    }
    config.storage = storage_to_nats(spec.storage);
    config.retention = retention_to_nats(spec.retention);
    config.discard = discard_to_nats(spec.discard);
    config.max_age = spec.max_age;
    config.max_bytes = i64_of(spec.max_bytes);
    if let Some(n) = spec.max_msgs {
        config.max_messages = i64_of(n);
    }
    if let Some(n) = spec.max_msgs_per_subject {
        config.max_messages_per_subject = i64_of(n);
    }
    if let Some(n) = spec.max_msg_size {
        config.max_message_size = i32::try_from(n).unwrap_or(i32::MAX);
    }
    config.duplicate_window = spec.duplicate_window;
    config.num_replicas = spec.replicas;
    config.allow_atomic_publish = spec.allow_atomic;
}

/// The config to create `spec` with.
pub(crate) fn stream_config(spec: &StreamSpec) -> stream::Config {
    let mut config = stream::Config::default();
    apply_stream(spec, &mut config);
    config
}

/// A limit as a comparable number: non-positive means unlimited on the server.
fn limit(n: i64) -> u64 {
    if n <= 0 { u64::MAX } else { n as u64 }
}
fn show_limit(n: i64, show: fn(u64) -> String) -> String {
    if n <= 0 {
        "unlimited".into()
    } else {
        show(n as u64)
    }
}
fn show_age(d: Duration) -> String {
    if d.is_zero() {
        "unlimited".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}
fn age_limit(d: Duration) -> Duration {
    if d.is_zero() { Duration::MAX } else { d }
}

const SHRINK: &str = "a smaller limit removes stored messages";

/// The declared fields on which `current` differs from `spec`, with their risk, in the
/// order the file lists them.
pub(crate) fn stream_changes(current: &stream::Config, spec: &StreamSpec) -> Vec<FieldChange> {
    let mut out = Vec::new();
    out.extend(subjects_change(current, spec));
    out.extend(description_change(
        current.description.as_deref(),
        spec.description.as_deref(),
    ));
    out.extend(policy_changes(current, spec));
    out.extend(limit_changes(current, spec));
    out.extend(safe_setting_changes(current, spec));
    out
}

fn change(field: &'static str, from: String, to: String, risk: ChangeRisk) -> FieldChange {
    FieldChange {
        field,
        from,
        to,
        risk,
    }
}

/// A set of subjects as the report shows it.
fn joined(set: &BTreeSet<&str>) -> String {
    set.iter().copied().collect::<Vec<_>>().join(", ")
}

/// Removing a subject stops storing it; adding one is safe.
fn subjects_change(current: &stream::Config, spec: &StreamSpec) -> Option<FieldChange> {
    let have: BTreeSet<&str> = current.subjects.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = spec.subjects.iter().map(|s| s.as_str()).collect();
    if have == want {
        return None;
    }
    let removed: Vec<&str> = have.difference(&want).copied().collect();
    let risk = if removed.is_empty() {
        ChangeRisk::Safe
    } else {
        ChangeRisk::DropsData(format!(
            "removing subject(s) {} stops storing them",
            removed.join(", ")
        ))
    };
    Some(change("subjects", joined(&have), joined(&want), risk))
}

/// A declared description that differs (an undeclared one is never drift).
fn description_change(current: Option<&str>, declared: Option<&str>) -> Option<FieldChange> {
    let d = declared?;
    (current != Some(d)).then(|| {
        change(
            "description",
            current.unwrap_or_default().to_owned(),
            d.to_owned(),
            ChangeRisk::Safe,
        )
    })
}

/// Storage (never in place), retention (drops data) and discard (safe).
fn policy_changes(current: &stream::Config, spec: &StreamSpec) -> Vec<FieldChange> {
    let mut out = Vec::new();
    if current.storage != storage_to_nats(spec.storage) {
        out.push(change(
            "storage",
            storage_from_nats(current.storage),
            spec.storage.to_string(),
            ChangeRisk::Impossible(
                "the server cannot change a stream's storage in place; move the data and \
                 recreate the stream by hand"
                    .into(),
            ),
        ));
    }
    if current.retention != retention_to_nats(spec.retention) {
        out.push(change(
            "retention",
            retention_from_nats(current.retention),
            spec.retention.to_string(),
            ChangeRisk::DropsData(
                "another retention policy removes messages by other rules".into(),
            ),
        ));
    }
    if current.discard != discard_to_nats(spec.discard) {
        out.push(change(
            "discard",
            discard_from_nats(current.discard),
            spec.discard.to_string(),
            ChangeRisk::Safe,
        ));
    }
    out
}

/// The risk of moving a limit: a smaller one removes stored messages.
fn shrink_risk(shrinks: bool) -> ChangeRisk {
    if shrinks {
        ChangeRisk::DropsData(SHRINK.into())
    } else {
        ChangeRisk::Safe
    }
}

/// Age, size and count limits; a smaller one drops data, except `max_msg_size`, which
/// only refuses larger new messages.
fn limit_changes(current: &stream::Config, spec: &StreamSpec) -> Vec<FieldChange> {
    let mut out = Vec::new();
    if current.max_age != spec.max_age {
        out.push(change(
            "max_age",
            show_age(current.max_age),
            show_age(spec.max_age),
            shrink_risk(age_limit(spec.max_age) < age_limit(current.max_age)),
        ));
    }
    let count = |n: u64| n.to_string();
    out.extend(count_change(
        "max_bytes",
        current.max_bytes,
        Some(spec.max_bytes),
        format_size,
    ));
    out.extend(count_change(
        "max_msgs",
        current.max_messages,
        spec.max_msgs,
        count,
    ));
    out.extend(count_change(
        "max_msgs_per_subject",
        current.max_messages_per_subject,
        spec.max_msgs_per_subject,
        count,
    ));
    if let Some(want) = spec.max_msg_size {
        let cur = i64::from(current.max_message_size);
        if limit(cur) != want {
            // Stored messages stay; only larger new ones are refused.
            out.push(change(
                "max_msg_size",
                show_limit(cur, format_size),
                format_size(want),
                ChangeRisk::Safe,
            ));
        }
    }
    out
}

/// A declared count limit (`want`) that differs from the server's (`cur`, non-positive
/// meaning unlimited).
fn count_change(
    field: &'static str,
    cur: i64,
    want: Option<u64>,
    show: fn(u64) -> String,
) -> Option<FieldChange> {
    let want = want?;
    (limit(cur) != want).then(|| {
        change(
            field,
            show_limit(cur, show),
            show(want),
            shrink_risk(want < limit(cur)),
        )
    })
}

/// Settings any value of which is safe to change: duplicate window, replicas, atomic
/// publish.
fn safe_setting_changes(current: &stream::Config, spec: &StreamSpec) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut safe = |differs: bool, field: &'static str, from: String, to: String| {
        if differs {
            out.push(change(field, from, to, ChangeRisk::Safe));
        }
    };
    safe(
        current.duplicate_window != spec.duplicate_window,
        "duplicate_window",
        show_age(current.duplicate_window),
        show_age(spec.duplicate_window),
    );
    safe(
        current.num_replicas != spec.replicas,
        "replicas",
        current.num_replicas.to_string(),
        spec.replicas.to_string(),
    );
    safe(
        current.allow_atomic_publish != spec.allow_atomic,
        "allow_atomic",
        current.allow_atomic_publish.to_string(),
        spec.allow_atomic.to_string(),
    );
    out
}

/// Writes every declared field of `spec` into a pull consumer config.
pub(crate) fn apply_consumer(spec: &ConsumerSpec, config: &mut consumer::pull::Config) {
    config.durable_name = Some(spec.durable.to_string());
    if let Some(d) = &spec.description {
        config.description = Some(d.clone());
    }
    config.ack_policy = consumer::AckPolicy::Explicit;
    if let [one] = spec.filter_subjects.as_slice() {
        config.filter_subject = one.to_string();
        config.filter_subjects = Vec::new();
    } else {
        config.filter_subject = String::new();
        config.filter_subjects = spec.filter_subjects.iter().map(|f| f.to_string()).collect();
    }
    config.ack_wait = spec.ack_wait;
    config.max_deliver = i64_of(spec.max_deliver);
    config.max_ack_pending = i64_of(spec.max_ack_pending);
}

/// The config to create `spec` with.
pub(crate) fn consumer_config(spec: &ConsumerSpec) -> consumer::pull::Config {
    let mut config = consumer::pull::Config::default();
    apply_consumer(spec, &mut config);
    config
}

/// The server's consumer config as a pull config we can update (fields we do not declare
/// are kept as the server has them); `None` for a push consumer.
pub(crate) fn pull_config_of(c: &consumer::Config) -> Option<consumer::pull::Config> {
    use consumer::FromConsumer as _;
    consumer::pull::Config::try_from_consumer_config(c.clone()).ok()
}

/// The declared fields on which the consumer `current` differs from `spec`.
pub(crate) fn consumer_changes(
    current: &consumer::Config,
    spec: &ConsumerSpec,
) -> Vec<FieldChange> {
    let safe =
        |field: &'static str, from: String, to: String| change(field, from, to, ChangeRisk::Safe);
    let mut out = Vec::new();
    let mut have: BTreeSet<&str> = current.filter_subjects.iter().map(String::as_str).collect();
    if !current.filter_subject.is_empty() {
        have.insert(current.filter_subject.as_str());
    }
    let want: BTreeSet<&str> = spec.filter_subjects.iter().map(|s| s.as_str()).collect();
    if have != want {
        out.push(safe("filter_subjects", joined(&have), joined(&want)));
    }
    out.extend(description_change(
        current.description.as_deref(),
        spec.description.as_deref(),
    ));
    if current.ack_wait != spec.ack_wait {
        out.push(safe(
            "ack_wait",
            show_age(current.ack_wait),
            show_age(spec.ack_wait),
        ));
    }
    for (field, cur, want) in [
        ("max_deliver", current.max_deliver, spec.max_deliver),
        (
            "max_ack_pending",
            current.max_ack_pending,
            spec.max_ack_pending,
        ),
    ] {
        if limit(cur) != want {
            out.push(safe(
                field,
                show_limit(cur, |n| n.to_string()),
                want.to_string(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::TopologySpec;

    fn spec() -> TopologySpec {
        TopologySpec::from_toml(
            r#"
            [profiles.dev]
            [[streams]]
            name = "AUTH_EVENTS"
            subjects = ["auth.>"]
            "#,
            "t.toml",
            "dev",
        )
        .unwrap()
    }

    #[test]
    fn a_created_config_has_no_changes() {
        let s = &spec().streams[0];
        let mut config = stream_config(s);
        assert!(stream_changes(&config, s).is_empty());
        // Server-filled fields we do not declare are not drift.
        config.max_messages = -1;
        config.max_consumers = -1;
        config.allow_direct = true;
        assert!(stream_changes(&config, s).is_empty());
    }

    #[test]
    fn growing_is_safe_and_shrinking_drops_data() {
        let s = &spec().streams[0];
        let mut config = stream_config(s);
        config.max_age = s.max_age / 2;
        let changes = stream_changes(&config, s);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, "max_age");
        assert_eq!(changes[0].risk, ChangeRisk::Safe);

        config.max_age = Duration::ZERO; // unlimited: going to 7 d shrinks
        assert!(matches!(
            stream_changes(&config, s)[0].risk,
            ChangeRisk::DropsData(_)
        ));

        let mut config = stream_config(s);
        config.max_bytes = -1;
        config.subjects.push("auth2.>".into());
        config.storage = stream::StorageType::Memory;
        let changes = stream_changes(&config, s);
        let fields: Vec<_> = changes.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["subjects", "storage", "max_bytes"]);
        assert!(matches!(changes[0].risk, ChangeRisk::DropsData(_)));
        assert!(matches!(changes[1].risk, ChangeRisk::Impossible(_)));
        assert_eq!(changes[2].from, "unlimited");
        assert_eq!(changes[2].to, "1GiB");
    }
}
