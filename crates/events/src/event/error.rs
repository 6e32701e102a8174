//! Why an attribute or a message is refused: [`EventError`] names the attribute and the
//! rule; [`DecodeError`] tells undecodable from invalid.

use crate::names::NameError;

/// An attribute that broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid attribute `{attribute}`: {rule}")]
#[non_exhaustive]
pub struct EventError {
    /// The CloudEvents attribute name (`type`, `organizationid`, `data`, ...).
    pub attribute: String,
    /// What is wrong with it.
    pub rule: String,
}

impl EventError {
    pub(super) fn new(attribute: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            attribute: attribute.into(),
            rule: rule.into(),
        }
    }

    pub(super) fn from_name(attribute: &str, e: NameError) -> Self {
        Self::new(attribute, e.to_string())
    }
}

/// Why a message could not be read as an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a CloudEvent in either mode: no JSON object body in structured mode, or a binary
    /// body that is not JSON.
    #[error("message is not a CloudEvent: {0}")]
    Undecodable(String),
    /// A CloudEvent that lacks a required attribute or breaks a rule.
    #[error("invalid CloudEvent")]
    Invalid(#[source] EventError),
}

impl DecodeError {
    /// The dead-letter reason (CONTRACT.md §4): `undecodable` or `invalid`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Undecodable(_) => "undecodable",
            Self::Invalid(_) => "invalid",
        }
    }
}
