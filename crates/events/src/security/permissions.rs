//! The NATS permissions of each identity, derived from the topology and its declaration.
//!
//! Subjects are exact wherever the library's requests allow it: a wildcard in NATS matches
//! whole tokens only, so a durable `catalog-service__auth_user_any` is named in full rather
//! than as `catalog-service__*`.

use crate::idempotency::encode_key_part;
use crate::names::SubjectFilter;
use crate::subscriber::durable_name;
use crate::topology::{StreamSpec, TopologySpec};

use super::spec::{ConsumesSpec, IdentitySpec, Role};

/// The JetStream API prefix.
const API: &str = "$JS.API";

/// What one identity may publish and subscribe to: allow lists, everything else denied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Permissions {
    /// Subjects (with wildcards) it may publish to, JetStream API requests included.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to: its own inbox prefix only.
    pub subscribe: Vec<String>,
}

impl Permissions {
    fn allow_pub(&mut self, subject: String) {
        if !self.publish.contains(&subject) {
            self.publish.push(subject);
        }
    }
}

/// The inbox prefix of `identity`: `_INBOX_<identity>`; its clients must set it
/// (async-nats `ConnectOptions::custom_inbox_prefix`), since it may subscribe nowhere else.
pub fn inbox_prefix(identity: &str) -> String {
    format!("_INBOX_{identity}")
}

/// The permissions of `id` on `topology`.
///
/// # Errors
/// A reason naming the identity when a produced domain or a consumed filter has no stream
/// in the topology, or the topology has no dead-letter stream (`dlq.>`) for a consumer.
pub fn permissions(id: &IdentitySpec, topology: &TopologySpec) -> Result<Permissions, String> {
    let mut p = Permissions {
        publish: Vec::new(),
        subscribe: vec![format!("{}.>", inbox_prefix(&id.name))],
    };
    match id.role {
        Role::Service => service(&mut p, id, topology)?,
        Role::Operator => operator(&mut p, topology),
        Role::DeadLetterAdmin => dead_letter_admin(&mut p, topology)?,
    }
    Ok(p)
}

fn stream_holding<'a>(topology: &'a TopologySpec, filter: &str) -> Option<&'a StreamSpec> {
    topology.streams.iter().find(|s| {
        s.subjects
            .iter()
            .any(|outer| crate::topology::filter_covers(outer.as_str(), filter))
    })
}

fn dlq_stream(topology: &TopologySpec) -> Option<&StreamSpec> {
    stream_holding(topology, "dlq.>")
}

fn service(p: &mut Permissions, id: &IdentitySpec, t: &TopologySpec) -> Result<(), String> {
    for domain in &id.produces {
        let all = format!("{domain}.>");
        let stream = stream_holding(t, &all).ok_or_else(|| {
            format!(
                "identity {:?} produces {domain:?} but no stream holds {all}",
                id.name
            )
        })?;
        p.allow_pub(all);
        p.allow_pub(format!("{API}.STREAM.NAMES"));
        p.allow_pub(format!("{API}.STREAM.INFO.{}", stream.name));
    }
    for c in &id.consumes {
        consumer_group(p, id, c, t)?;
    }
    Ok(())
}

fn consumer_group(
    p: &mut Permissions,
    id: &IdentitySpec,
    c: &ConsumesSpec,
    t: &TopologySpec,
) -> Result<(), String> {
    let who = &id.name;
    let filter = c.filter.as_str();
    let stream = stream_holding(t, filter)
        .ok_or_else(|| format!("identity {who:?} consumes {filter} but no stream holds it"))?;
    let dlq = dlq_stream(t).ok_or_else(|| {
        format!("identity {who:?} consumes, but the topology has no dead-letter stream (dlq.>)")
    })?;
    let durable =
        durable_name(&c.group, &c.filter).map_err(|e| format!("identity {who:?}: {e}"))?;
    let (s, d) = (stream.name.as_str(), durable.as_str());
    p.allow_pub(format!("{API}.STREAM.NAMES"));
    p.allow_pub(format!("{API}.STREAM.INFO.{s}"));
    // Read-only: a service's `/readyz` checks that its dead letters have somewhere to go.
    p.allow_pub(format!("{API}.STREAM.INFO.{}", dlq.name));
    p.allow_pub(format!("{API}.CONSUMER.CREATE.{s}.{d}.{filter}"));
    p.allow_pub(format!("{API}.CONSUMER.INFO.{s}.{d}"));
    p.allow_pub(format!("{API}.CONSUMER.MSG.NEXT.{s}.{d}"));
    p.allow_pub(format!("$JS.ACK.{s}.{d}.>"));
    // Dead letters of what it consumes, and nothing else (CONTRACT.md §4: `dlq.<subject>`).
    p.allow_pub(format!("dlq.{filter}"));
    if let Some(bucket) = &id.idempotency_bucket {
        idempotency(p, bucket, d);
    }
    Ok(())
}

/// The group's keys in the shared idempotency bucket: `<encoded durable>.<event id>`
/// (`Idempotent` keys by the delivering durable consumer). Creating the bucket is allowed
/// (the library creates it on first use; an existing bucket cannot be changed that way);
/// updating, purging or deleting it is not. async-nats reads the account info (usage
/// and limits, read-only) before creating a bucket.
fn idempotency(p: &mut Permissions, bucket: &str, durable: &str) {
    let keys = format!("$KV.{bucket}.{}.>", encode_key_part(durable));
    p.allow_pub(format!("{API}.INFO"));
    p.allow_pub(format!("{API}.STREAM.INFO.KV_{bucket}"));
    p.allow_pub(format!("{API}.STREAM.CREATE.KV_{bucket}"));
    p.allow_pub(format!("{API}.DIRECT.GET.KV_{bucket}.{keys}"));
    p.allow_pub(keys);
}

fn operator(p: &mut Permissions, t: &TopologySpec) {
    p.allow_pub(format!("{API}.>"));
    p.allow_pub("$JS.ACK.>".to_owned());
    // Flow control of the ordered consumers `eventctl tail` reads with.
    p.allow_pub("$JS.FC.>".to_owned());
    for subject in t.streams.iter().flat_map(|s| &s.subjects) {
        p.allow_pub(subject.to_string());
    }
}

fn dead_letter_admin(p: &mut Permissions, t: &TopologySpec) -> Result<(), String> {
    let dlq = dlq_stream(t)
        .ok_or("identity of role dead-letter-admin needs a dead-letter stream (dlq.>)")?;
    let q = dlq.name.as_str();
    for read in ["INFO", "STREAM.NAMES", "STREAM.LIST", "STREAM.INFO.*"] {
        p.allow_pub(format!("{API}.{read}"));
    }
    for op in ["MSG.DELETE", "PURGE"] {
        p.allow_pub(format!("{API}.STREAM.{op}.{q}"));
    }
    // Scans: temporary named consumers on the dead-letter stream only.
    p.allow_pub(format!("{API}.CONSUMER.CREATE.{q}.>"));
    for op in ["MSG.NEXT", "DELETE", "INFO"] {
        p.allow_pub(format!("{API}.CONSUMER.{op}.{q}.*"));
    }
    for s in &t.streams {
        // Dead letters by sequence, and originals of dead letters whose body was omitted.
        p.allow_pub(format!("{API}.STREAM.MSG.GET.{}", s.name));
        if s.name != dlq.name {
            // Replays go back to the original subjects.
            s.subjects.iter().for_each(|f| p.allow_pub(f.to_string()));
        }
    }
    Ok(())
}

/// A concrete subject matching `filter`, for permission probes (`eventctl doctor`):
/// `*` becomes `doctor`, `>` becomes `doctor.probe`.
pub fn probe_subject(filter: &SubjectFilter) -> String {
    filter
        .as_str()
        .split('.')
        .map(|t| match t {
            "*" => "doctor",
            ">" => "doctor.probe",
            t => t,
        })
        .collect::<Vec<_>>()
        .join(".")
}
