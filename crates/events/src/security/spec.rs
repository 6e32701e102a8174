//! The identities file (`deploy/secure/identities.toml`): who produces and consumes what.

use serde::Deserialize;

use crate::names::SubjectFilter;
use crate::topology::SpecError;

/// What an identity is for; decides the shape of its permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Role {
    /// A service: publishes the domains it produces, consumes through its own durables.
    Service,
    /// Manages streams and consumers (`eventctl streams apply`, `dlq`, `lag`, `doctor`).
    Operator,
    /// Reads, replays and deletes dead letters (the `events-admin` server).
    DeadLetterAdmin,
}

impl Role {
    /// The name used in the identities file and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Operator => "operator",
            Self::DeadLetterAdmin => "dead-letter-admin",
        }
    }
}

/// One consumer group an identity runs: its durable is `<group>__<filter fragment>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumesSpec {
    /// The consumer group (the durable consumer's prefix).
    pub group: String,
    /// The subjects it consumes; a stream of the topology must hold them all.
    pub filter: SubjectFilter,
}

/// One identity: a NATS user with its own nkey and inbox prefix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The identity's name: `[a-z0-9_-]+`; names its seed file and its inbox prefix.
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// Domains it publishes (`auth` for `auth.>`); services only.
    #[serde(default)]
    pub produces: Vec<String>,
    /// Consumer groups it runs; services only.
    #[serde(default)]
    pub consumes: Vec<ConsumesSpec>,
    /// The key-value bucket its groups remember processed event ids in (each group only
    /// under its own keys); services with `consumes` only.
    #[serde(default)]
    pub idempotency_bucket: Option<String>,
}

/// The parsed identities file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitiesSpec {
    /// Every identity, in file order.
    #[serde(rename = "identities")]
    pub identities: Vec<IdentitySpec>,
}

impl IdentitiesSpec {
    /// Parses an identities file; `source_name` is how errors name it.
    ///
    /// # Errors
    /// [`SpecError`] with the line and column of a TOML or field error, or naming the
    /// identity that breaks a rule: a bad or duplicate name, `produces`/`consumes` on a
    /// role other than `service`, an empty group or bucket name.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, SpecError> {
        let spec: Self = toml::from_str(text).map_err(|e| SpecError {
            source_name: source_name.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            column: None,
            reason: e.message().to_owned(),
        })?;
        spec.validate().map_err(|reason| SpecError {
            source_name: source_name.to_owned(),
            line: None,
            column: None,
            reason,
        })?;
        Ok(spec)
    }

    /// The identity named `name`.
    pub fn get(&self, name: &str) -> Option<&IdentitySpec> {
        self.identities.iter().find(|i| i.name == name)
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen = Vec::new();
        for id in &self.identities {
            check_identity(id)?;
            if seen.contains(&id.name.as_str()) {
                return Err(format!("identity {:?} is declared twice", id.name));
            }
            seen.push(id.name.as_str());
        }
        Ok(())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// True for a name usable in subjects, inbox prefixes and file names: `[a-z0-9_-]+`.
pub(crate) fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_identity(id: &IdentitySpec) -> Result<(), String> {
    let name = &id.name;
    if !is_plain_name(name) {
        return Err(format!(
            "identity name {name:?} must be lower-case letters, digits, '_' or '-'"
        ));
    }
    let service_only = !id.produces.is_empty() || !id.consumes.is_empty();
    if id.role != Role::Service && (service_only || id.idempotency_bucket.is_some()) {
        return Err(format!(
            "identity {name:?}: produces, consumes and idempotency_bucket are for role \"service\", not {:?}",
            id.role.as_str()
        ));
    }
    if let Some(d) = id.produces.iter().find(|d| !is_plain_name(d)) {
        return Err(format!(
            "identity {name:?}: produced domain {d:?} is not a subject token"
        ));
    }
    if let Some(c) = id.consumes.iter().find(|c| !is_plain_name(&c.group)) {
        return Err(format!(
            "identity {name:?}: group {:?} must be lower-case letters, digits, '_' or '-'",
            c.group
        ));
    }
    match &id.idempotency_bucket {
        Some(b) if id.consumes.is_empty() => Err(format!(
            "identity {name:?}: idempotency_bucket {b:?} without consumes"
        )),
        Some(b)
            if b.is_empty()
                || !b
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') =>
        {
            Err(format!("identity {name:?}: bad idempotency_bucket {b:?}"))
        }
        _ => Ok(()),
    }
}
