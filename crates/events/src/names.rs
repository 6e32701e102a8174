//! Validated names: event types (subjects), subject filters, organization ids, stream and
//! consumer names (CONTRACT.md §1).
//!
//! Every constructor checks its input and returns a [`NameError`] that names the kind of
//! value, the offending token and the rule it broke, so bad input is refused before anything
//! reaches the server (which would store a subject with `*` or non-ASCII characters if sent
//! one).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Subject prefixes reserved by NATS for its own APIs; never valid for events.
pub const RESERVED_PREFIXES: &[&str] = &["$JS.", "$SYS.", "$KV.", "$O.", "_INBOX."];

/// Longest accepted subject, in bytes (far below the server's limits, far above real use).
pub const MAX_SUBJECT_LEN: usize = 255;
/// Longest accepted organization id, in bytes.
pub const MAX_ORGANIZATION_ID_LEN: usize = 128;
/// Longest accepted stream or consumer name, in bytes.
pub const MAX_RESOURCE_NAME_LEN: usize = 64;

/// A value that broke a naming rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {rule}")]
#[non_exhaustive]
pub struct NameError {
    /// What was being validated: `event type`, `subject filter`, `organization id`, ...
    pub kind: &'static str,
    /// The whole value as given.
    pub value: String,
    /// The rule it broke, naming the bad token where there is one.
    pub rule: String,
}

impl NameError {
    fn new(kind: &'static str, value: &str, rule: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.to_owned(),
            rule: rule.into(),
        }
    }
}

fn is_token_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')
}

/// Checks one lower-case subject token (`[a-z0-9_-]+`); the error text names the token.
fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("empty token (two dots in a row, or a leading or trailing dot)".into());
    }
    if let Some(c) = token.bytes().find(|c| !is_token_char(*c)) {
        let shown = if c.is_ascii_graphic() {
            format!("'{}'", c as char)
        } else {
            format!("byte 0x{c:02x}")
        };
        return Err(format!(
            "token {token:?} contains {shown}; tokens are lower-case ASCII [a-z0-9_-]"
        ));
    }
    Ok(())
}

fn check_reserved(kind: &'static str, value: &str) -> Result<(), NameError> {
    if let Some(p) = RESERVED_PREFIXES
        .iter()
        .find(|p| value.starts_with(*p) || value == p.trim_end_matches('.'))
    {
        return Err(NameError::new(
            kind,
            value,
            format!("the prefix {p:?} is reserved by NATS"),
        ));
    }
    Ok(())
}

fn check_len(kind: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    if value.len() > max {
        return Err(NameError::new(
            kind,
            value,
            format!("longer than {max} bytes"),
        ));
    }
    Ok(())
}

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident, $parse:path) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $parse(s)
            }
        }
        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                $parse(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $parse(&s)
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(
    /// An event type, which is also the subject it is published on:
    /// `<domain>.<entity>.<action>`, three lower-case tokens of `[a-z0-9_-]`
    /// (`auth.user.created`).
    EventType,
    EventType::new
);

impl EventType {
    /// Validates an event type.
    ///
    /// # Errors
    /// [`NameError`] naming the bad token: wildcards, empty tokens, upper case, whitespace,
    /// non-ASCII, a token count other than three, or a reserved prefix.
    pub fn new(value: &str) -> Result<Self, NameError> {
        const KIND: &str = "event type";
        check_len(KIND, value, MAX_SUBJECT_LEN)?;
        check_reserved(KIND, value)?;
        let mut n = 0;
        for token in value.split('.') {
            check_token(token).map_err(|rule| NameError::new(KIND, value, rule))?;
            n += 1;
        }
        if n != 3 {
            return Err(NameError::new(
                KIND,
                value,
                format!("has {n} token(s); expected <domain>.<entity>.<action>"),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The first token: `auth` for `auth.user.created`.
    pub fn domain(&self) -> &str {
        self.0.split('.').next().unwrap_or_default()
    }

    /// The stream that stores this type by convention: `AUTH_EVENTS` for `auth.*.*`.
    pub fn stream_name(&self) -> StreamName {
        StreamName::for_domain(self.domain())
    }
}

string_newtype!(
    /// A subscription filter: lower-case tokens as in [`EventType`], where a token may be
    /// `*` (one token) and the last may be `>` (one or more): `auth.user.*`, `auth.>`.
    SubjectFilter,
    SubjectFilter::new
);

impl SubjectFilter {
    /// Validates a subject filter.
    ///
    /// # Errors
    /// [`NameError`] naming the bad token.
    pub fn new(value: &str) -> Result<Self, NameError> {
        const KIND: &str = "subject filter";
        check_len(KIND, value, MAX_SUBJECT_LEN)?;
        check_reserved(KIND, value)?;
        let tokens: Vec<&str> = value.split('.').collect();
        for (i, token) in tokens.iter().enumerate() {
            match *token {
                "*" => {}
                ">" if i + 1 == tokens.len() => {}
                ">" => {
                    return Err(NameError::new(
                        KIND,
                        value,
                        "'>' may only be the last token",
                    ));
                }
                t => check_token(t).map_err(|rule| NameError::new(KIND, value, rule))?,
            }
        }
        Ok(Self(value.to_owned()))
    }

    /// True if `subject` (a concrete subject) matches this filter.
    pub fn matches(&self, subject: &str) -> bool {
        let mut filter = self.0.split('.');
        let mut subj = subject.split('.');
        loop {
            match (filter.next(), subj.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(f), Some(s)) if f == s => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    /// A name-safe rendering of the filter for deriving durable names:
    /// `auth.user.*` becomes `auth_user_any`, `auth.>` becomes `auth_all`.
    pub fn to_name_fragment(&self) -> String {
        self.0
            .split('.')
            .map(|t| match t {
                "*" => "any",
                ">" => "all",
                t => t,
            })
            .collect::<Vec<_>>()
            .join("_")
    }
}

impl From<EventType> for SubjectFilter {
    fn from(t: EventType) -> Self {
        Self(t.0)
    }
}

string_newtype!(
    /// A tenant id: one token of `[A-Za-z0-9_-]`, non-empty, at most
    /// [`MAX_ORGANIZATION_ID_LEN`] bytes.
    OrganizationId,
    OrganizationId::new
);

impl OrganizationId {
    /// Validates an organization id.
    ///
    /// # Errors
    /// [`NameError`] if empty, too long, or containing anything outside `[A-Za-z0-9_-]`.
    pub fn new(value: &str) -> Result<Self, NameError> {
        const KIND: &str = "organization id";
        if value.is_empty() {
            return Err(NameError::new(KIND, value, "must not be empty"));
        }
        check_len(KIND, value, MAX_ORGANIZATION_ID_LEN)?;
        if let Some(c) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(NameError::new(
                KIND,
                value,
                format!("contains {c:?}; allowed are ASCII letters, digits, '_' and '-'"),
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

fn check_resource_name(kind: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::new(kind, value, "must not be empty"));
    }
    check_len(kind, value, MAX_RESOURCE_NAME_LEN)?;
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(NameError::new(
            kind,
            value,
            format!("contains {c:?}; allowed are ASCII letters, digits, '_' and '-'"),
        ));
    }
    Ok(())
}

string_newtype!(
    /// A JetStream stream name: `[A-Za-z0-9_-]`, 1 to [`MAX_RESOURCE_NAME_LEN`] bytes
    /// (no `.`, `*`, `>`, whitespace or path separators).
    StreamName,
    StreamName::new
);

impl StreamName {
    /// Validates a stream name.
    ///
    /// # Errors
    /// [`NameError`] naming the bad character.
    pub fn new(value: &str) -> Result<Self, NameError> {
        check_resource_name("stream name", value)?;
        Ok(Self(value.to_owned()))
    }

    /// `<DOMAIN>_EVENTS` for a domain token (`ai_agent` gives `AI_AGENT_EVENTS`).
    pub fn for_domain(domain: &str) -> Self {
        Self(format!(
            "{}_EVENTS",
            domain.to_ascii_uppercase().replace('-', "_")
        ))
    }
}

string_newtype!(
    /// A durable consumer (group) name: `[A-Za-z0-9_-]`, 1 to [`MAX_RESOURCE_NAME_LEN`]
    /// bytes.
    ConsumerName,
    ConsumerName::new
);

impl ConsumerName {
    /// Validates a consumer name.
    ///
    /// # Errors
    /// [`NameError`] naming the bad character.
    pub fn new(value: &str) -> Result<Self, NameError> {
        check_resource_name("consumer name", value)?;
        Ok(Self(value.to_owned()))
    }
}

string_newtype!(
    /// A concrete subject to publish on, for tools that move messages to arbitrary subjects
    /// (replay, dead letters): dot-separated non-empty tokens of printable ASCII without
    /// wildcards, and no reserved prefix. Event types are stricter: see [`EventType`].
    Subject,
    Subject::new
);

impl Subject {
    /// Validates a concrete subject.
    ///
    /// # Errors
    /// [`NameError`] naming the bad token or character.
    pub fn new(value: &str) -> Result<Self, NameError> {
        const KIND: &str = "subject";
        check_len(KIND, value, MAX_SUBJECT_LEN)?;
        check_reserved(KIND, value)?;
        for token in value.split('.') {
            if token.is_empty() {
                return Err(NameError::new(KIND, value, "empty token"));
            }
            if token == "*" || token == ">" {
                return Err(NameError::new(
                    KIND,
                    value,
                    format!("wildcard token {token:?} is not allowed when publishing"),
                ));
            }
            if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic()) {
                return Err(NameError::new(
                    KIND,
                    value,
                    format!("token {token:?} contains {c:?}; only printable ASCII is allowed"),
                ));
            }
        }
        Ok(Self(value.to_owned()))
    }
}

impl From<EventType> for Subject {
    fn from(t: EventType) -> Self {
        Self(t.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types() {
        assert!(EventType::new("auth.user.created").is_ok());
        assert!(EventType::new("ai_agent.run.finished").is_ok());
        assert!(EventType::new("a-b.c_d.e9").is_ok());
        for bad in [
            "auth.user.*",
            "auth..x",
            "Auth user",
            "auth.user",
            "auth.user.created.extra",
            "auth.User.created",
            "auth.user.cré",
            "auth.user.>",
            "auth.user.a b",
            "auth.user.a\0",
            ".auth.user",
            "",
        ] {
            let err = EventType::new(bad).unwrap_err();
            assert_eq!(err.kind, "event type", "{bad}");
            assert_eq!(err.value, bad);
        }
        let err = EventType::new("auth.user.*").unwrap_err();
        assert!(err.to_string().contains("\"*\""), "{err}");
    }

    #[test]
    fn reserved_prefixes_are_refused() {
        for bad in ["$JS.API.x", "$SYS.x.y", "_INBOX.abc", "$KV.b.k"] {
            assert!(
                Subject::new(bad).unwrap_err().rule.contains("reserved"),
                "{bad}"
            );
            assert!(SubjectFilter::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters() {
        let f = SubjectFilter::new("auth.user.*").unwrap();
        assert!(f.matches("auth.user.created"));
        assert!(!f.matches("auth.user.created.x"));
        assert!(!f.matches("auth.org.created"));
        let f = SubjectFilter::new("auth.>").unwrap();
        assert!(f.matches("auth.user.created"));
        assert!(!f.matches("auth"));
        assert!(SubjectFilter::new("auth.>.x").is_err());
        assert!(SubjectFilter::new("auth..x").is_err());
        assert_eq!(
            SubjectFilter::new("auth.user.*")
                .unwrap()
                .to_name_fragment(),
            "auth_user_any"
        );
    }

    #[test]
    fn organizations() {
        assert!(OrganizationId::new("org-1").is_ok());
        assert!(OrganizationId::new("Org_ABC").is_ok());
        assert!(OrganizationId::new("").is_err());
        assert!(OrganizationId::new("org.1").is_err());
        assert!(OrganizationId::new("org 1").is_err());
        assert!(OrganizationId::new(&"a".repeat(129)).is_err());
    }

    #[test]
    fn streams_and_consumers() {
        assert_eq!(
            EventType::new("ai_agent.run.finished")
                .unwrap()
                .stream_name()
                .as_str(),
            "AI_AGENT_EVENTS"
        );
        assert!(StreamName::new("AUTH_EVENTS").is_ok());
        assert!(StreamName::new("AUTH.EVENTS").is_err());
        assert!(StreamName::new("a/b").is_err());
        assert!(ConsumerName::new("catalog-service").is_ok());
        assert!(ConsumerName::new("x y").is_err());
        assert!(ConsumerName::new("").is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: EventType = serde_json::from_str("\"auth.user.created\"").unwrap();
        assert_eq!(ok, "auth.user.created");
        assert!(serde_json::from_str::<EventType>("\"auth.*.x\"").is_err());
    }
}
