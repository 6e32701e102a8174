//! From the file as written to a [`TopologySpec`]: pick the profile, lay the contract's
//! defaults, `[defaults]`, the profile and each stream's own keys over one another, and
//! check what no single value can (duplicates, overlapping subjects, the dead-letter
//! stream's discard policy, consumers on undeclared streams or subjects), naming the file,
//! line and column of each mistake.

use std::ops::Range;
use std::time::Duration;

use super::file::{Age, RawConsumer, RawFile, RawSettings, RawStream, Replicas, Size};
use super::spec::{
    ConsumerSpec, DEFAULT_ACK_WAIT, DEFAULT_MAX_ACK_PENDING, DEFAULT_MAX_DELIVER, Discard,
    Retention, SpecError, Storage, StreamSpec, TopologySpec, filter_covers, filters_overlap,
};
use crate::dlq::DLQ_STREAM;

/// The text being loaded, so that an error can say where.
struct Ctx<'a> {
    text: &'a str,
    source_name: &'a str,
}

impl Ctx<'_> {
    /// An error at the byte range `span` of the text (line and column), or at no place.
    fn at(&self, span: Option<Range<usize>>, reason: impl Into<String>) -> SpecError {
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

/// Parses `text`, resolves it for `profile` and checks it; see [`TopologySpec::from_toml`].
pub(super) fn load(
    text: &str,
    source_name: &str,
    profile: &str,
) -> Result<TopologySpec, SpecError> {
    let ctx = Ctx { text, source_name };
    let raw: RawFile = toml::from_str(text).map_err(|e| ctx.at(e.span(), e.message()))?;
    let base = contract_defaults()
        .overlay(&raw.defaults)
        .overlay(profile_settings(&ctx, &raw, profile)?);
    let streams = resolve_streams(&ctx, &raw.streams, &base)?;
    let consumers = resolve_consumers(&ctx, &raw.consumers, &streams)?;
    Ok(TopologySpec {
        profile: profile.to_owned(),
        streams,
        consumers,
    })
}

/// CONTRACT.md §1's defaults, under every layer of the file.
fn contract_defaults() -> RawSettings {
    RawSettings {
        storage: Some(Storage::File),
        retention: Some(Retention::Limits),
        discard: Some(Discard::Old),
        max_age: Some(Age(Duration::from_secs(7 * 24 * 3600))),
        max_bytes: Some(Size(1 << 30)),
        duplicate_window: Some(Age(Duration::from_secs(120))),
        replicas: Some(Replicas(1)),
        allow_atomic: Some(true),
        ..RawSettings::default()
    }
}

/// The `[profiles.<profile>]` table; an unknown profile is an error listing those declared.
fn profile_settings<'r>(
    ctx: &Ctx<'_>,
    raw: &'r RawFile,
    profile: &str,
) -> Result<&'r RawSettings, SpecError> {
    raw.profiles.get(profile).ok_or_else(|| {
        let known: Vec<_> = raw.profiles.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            "none declared".to_owned()
        } else {
            known.join(", ")
        };
        ctx.at(
            None,
            format!("unknown profile {profile:?} (declared: {known})"),
        )
    })
}

/// Every stream in file order, each over `base`, checked alone and against the others.
fn resolve_streams(
    ctx: &Ctx<'_>,
    raw: &[RawStream],
    base: &RawSettings,
) -> Result<Vec<StreamSpec>, SpecError> {
    let mut streams: Vec<StreamSpec> = Vec::new();
    let mut subjects_seen: Vec<(String, String)> = Vec::new(); // (subject, stream)
    for rs in raw {
        check_stream_declaration(ctx, rs, &streams)?;
        claim_subjects(ctx, rs, &mut subjects_seen)?;
        let spec = stream_spec(rs, &base.overlay(&rs.settings()));
        check_stream_limits(ctx, rs, &spec)?;
        streams.push(spec);
    }
    Ok(streams)
}

/// A stream is declared once and has subjects.
fn check_stream_declaration(
    ctx: &Ctx<'_>,
    rs: &RawStream,
    earlier: &[StreamSpec],
) -> Result<(), SpecError> {
    let name = rs.name.get_ref();
    if earlier.iter().any(|s| &s.name == name) {
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
    Ok(())
}

/// Adds the stream's subjects to `seen` (subject, stream), refusing one that overlaps a
/// subject already there: a message must belong to one stream.
fn claim_subjects(
    ctx: &Ctx<'_>,
    rs: &RawStream,
    seen: &mut Vec<(String, String)>,
) -> Result<(), SpecError> {
    let name = rs.name.get_ref();
    for subj in &rs.subjects {
        let s = subj.get_ref().as_str();
        if let Some((other, owner)) = seen.iter().find(|(o, _)| filters_overlap(o, s)) {
            return Err(ctx.at(
                Some(subj.span()),
                format!("subject {s:?} of stream {name} overlaps {other:?} of stream {owner}"),
            ));
        }
        seen.push((s.to_owned(), name.to_string()));
    }
    Ok(())
}

/// The stream with every setting from `set` (its own keys over the layers below).
fn stream_spec(rs: &RawStream, set: &RawSettings) -> StreamSpec {
    // Every key has a contract default, so these are all set; the fallbacks only keep
    // this free of unwraps.
    StreamSpec {
        name: rs.name.get_ref().clone(),
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
    }
}

/// The dead-letter stream discards new messages (CONTRACT.md §1); a message size fits the
/// server's `i32`.
fn check_stream_limits(ctx: &Ctx<'_>, rs: &RawStream, spec: &StreamSpec) -> Result<(), SpecError> {
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
            format!("stream {}: max_msg_size must be below 2GiB", spec.name),
        ));
    }
    Ok(())
}

/// Every consumer in file order, each on a declared stream and within its subjects.
fn resolve_consumers(
    ctx: &Ctx<'_>,
    raw: &[RawConsumer],
    streams: &[StreamSpec],
) -> Result<Vec<ConsumerSpec>, SpecError> {
    let mut consumers: Vec<ConsumerSpec> = Vec::new();
    for rc in raw {
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
        check_filter_subjects(ctx, rc, stream)?;
        consumers.push(consumer_spec(rc));
    }
    Ok(consumers)
}

/// A consumer filters at least one subject, each within its stream's subjects.
fn check_filter_subjects(
    ctx: &Ctx<'_>,
    rc: &RawConsumer,
    stream: &StreamSpec,
) -> Result<(), SpecError> {
    let durable = rc.durable.get_ref();
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
                     subjects of stream {}",
                    stream.name
                ),
            ));
        }
    }
    Ok(())
}

/// The consumer with its keys, the rest at their defaults.
fn consumer_spec(rc: &RawConsumer) -> ConsumerSpec {
    ConsumerSpec {
        stream: rc.stream.get_ref().clone(),
        durable: rc.durable.get_ref().clone(),
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
    }
}
