//! The doctor's connections and the permission probes of one identity.
//!
//! A probe sends one request and watches for the server's `Permissions Violation`; a
//! publish probe carries `Nats-Expected-Stream` naming no stream, so JetStream refuses to
//! store it even when the publish is allowed: probing never writes an event.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::{Client, HeaderMap, RequestErrorKind};
use events::connection::{AuthConfig, Denials};
use events::security::{IdentitiesSpec, Permissions, Role, inbox_prefix, permissions};
use events::topology::TopologySpec;
use events::{SubjectFilter, security::probe_subject};

use super::{Check, DoctorArgs, Status};
use crate::args::ConnArgs;

/// A stream name no deployment has: the target of probes that must be refused.
const NO_STREAM: &str = "DOCTOR_PROBE_NO_SUCH_STREAM";
const AREA: &str = "identity";

/// A client plus the permission denials the server reports on it (they arrive
/// asynchronously, not as the answer to a request).
pub(super) struct Watched {
    pub(super) client: Client,
    denials: Denials,
}

/// Connects through `events::connection` with the global options, `nkey` instead of
/// their credentials when given, and `prefix` instead of their inbox prefix.
pub(super) async fn connect(
    conn: &ConnArgs,
    nkey: Option<&Path>,
    prefix: Option<&str>,
) -> anyhow::Result<Watched> {
    let mut config = conn.connect_config();
    config.name = Some("eventctl-doctor".into());
    config.reconnect.max_reconnects = Some(1);
    if let Some(seed) = nkey {
        config.auth = AuthConfig {
            nkey_seed_file: Some(seed.to_owned()),
            ..AuthConfig::default()
        };
    }
    if let Some(prefix) = prefix {
        config.inbox_prefix = Some(prefix.to_owned());
    }
    let connection = events::connection::connect(&config).await?;
    Ok(Watched {
        client: connection.client().clone(),
        denials: connection.denials().clone(),
    })
}

/// What came back for a probe.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The server (or JetStream) answered: the request got through.
    Answered,
    /// The server reported a permissions violation for the subject.
    Denied,
    /// Neither within the timeout.
    Silent,
}

impl Watched {
    async fn probe(&self, subject: &str, guard: bool, limit: Duration) -> Seen {
        let since = Instant::now();
        let mut headers = HeaderMap::new();
        if guard {
            headers.insert("Nats-Expected-Stream", NO_STREAM);
        }
        let request = self
            .client
            .request_with_headers(subject.to_owned(), headers, "".into());
        tokio::select! {
            _ = self.denials.wait(subject, since) => Seen::Denied,
            reply = tokio::time::timeout(limit, request) => match reply {
                Ok(Ok(_)) => Seen::Answered,
                Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Seen::Answered,
                _ => Seen::Silent,
            },
        }
    }
}

/// One probe: a subject, whether the role needs it, and what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Probe {
    pub(super) subject: String,
    pub(super) allowed: bool,
    /// Publish probes carry the no-store guard; API requests need none.
    pub(super) guard: bool,
}

/// True if `subject` matches the NATS pattern `pattern` (`*` one token, `>` the rest).
pub(super) fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn publish_probe(filter: &str, perms: &Permissions) -> Option<Probe> {
    let subject = probe_subject(&SubjectFilter::new(filter).ok()?);
    let allowed = perms.publish.iter().any(|p| matches(p, &subject));
    Some(Probe {
        subject,
        allowed,
        guard: true,
    })
}

/// The probes for an identity of `role` with `perms` on `topology`: its own publish
/// subjects and one read it needs (allowed); every other stream's subjects and a stream
/// delete (denied, except the operator's delete).
pub(super) fn plan(role: Role, perms: &Permissions, topology: &TopologySpec) -> Vec<Probe> {
    let mut probes: Vec<Probe> = perms
        .publish
        .iter()
        .filter(|p| !p.starts_with('$'))
        .filter_map(|p| publish_probe(p, perms))
        .collect();
    for filter in topology.streams.iter().flat_map(|s| &s.subjects) {
        if let Some(p) = publish_probe(filter.as_str(), perms)
            && !p.allowed
        {
            probes.push(p);
        }
    }
    let api = |subject: String, allowed| Probe {
        subject,
        allowed,
        guard: false,
    };
    if let Some(read) = perms
        .publish
        .iter()
        .find(|p| p.starts_with("$JS.API.STREAM.INFO.") && !p.ends_with('*'))
    {
        probes.push(api(read.clone(), true));
    }
    let delete = format!("$JS.API.STREAM.DELETE.{NO_STREAM}");
    probes.push(api(delete, role == Role::Operator));
    probes
}

/// Checks `name`'s credentials against its declared role.
///
/// # Errors
/// If the identities file cannot be read, does not declare `name`, or the connection as
/// `name` fails (that is an answer in itself: the message says why).
pub(super) async fn identity(
    conn: &ConnArgs,
    args: &DoctorArgs,
    topology: &TopologySpec,
    name: &str,
) -> anyhow::Result<Vec<Check>> {
    let source = args.identities.display().to_string();
    let text = std::fs::read_to_string(&args.identities)
        .with_context(|| format!("cannot read {source}"))?;
    let spec = IdentitiesSpec::from_toml(&text, &source)?;
    let id = spec
        .get(name)
        .with_context(|| format!("{source} declares no identity {name:?}"))?;
    let perms = permissions(id, topology).map_err(anyhow::Error::msg)?;
    let seed: PathBuf = args
        .identity_nkey
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!(".data/secure/{name}.nk")));
    let prefix = inbox_prefix(name);
    let watched = connect(conn, Some(&seed), Some(&prefix))
        .await
        .with_context(|| format!("connecting as identity {name} ({})", seed.display()))?;
    let mut checks = Vec::new();
    for probe in plan(id.role, &perms, topology) {
        let seen = watched
            .probe(&probe.subject, probe.guard, args.probe_timeout)
            .await;
        checks.push(judge(name, &probe, &seen, args.probe_timeout));
    }
    Ok(checks)
}

fn judge(name: &str, probe: &Probe, seen: &Seen, limit: Duration) -> Check {
    let s = &probe.subject;
    let verb = if probe.guard { "publish to" } else { "request" };
    let (status, message) = match (probe.allowed, seen) {
        (true, Seen::Answered) => (Status::Ok, format!("may {verb} {s}, as its role needs")),
        (true, Seen::Denied) => (Status::Fail, format!("is denied {s}, which its role needs")),
        (false, Seen::Denied) => (Status::Ok, format!("is denied {s}, as it should be")),
        (false, Seen::Answered) => (
            Status::Fail,
            format!("got through to {s}, which its role must not reach: tighten its permissions"),
        ),
        (_, Seen::Silent) => (
            Status::Warn,
            format!("neither an answer nor a denial for {s} within {limit:?}"),
        ),
    };
    Check::new(AREA, name, status, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_tokens() {
        assert!(matches("auth.>", "auth.doctor.probe"));
        assert!(matches("dlq.auth.user.*", "dlq.auth.user.doctor"));
        assert!(!matches("auth.>", "auth"));
        assert!(!matches("$JS.API.STREAM.INFO.*", "$JS.API.STREAM.INFO.A.B"));
    }
}
