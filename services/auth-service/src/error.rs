//! [`UserError`]: why a request of the users API failed, each variant with what the HTTP
//! layer needs to answer it.

use events::EventError;
use events::outbox::OutboxError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// A field is missing or breaks its rule.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as named in the request body.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No user has this id.
    #[error("no user with id {0}")]
    NotFound(String),
    /// Another user of the organization has this e-mail address.
    #[error("email {email} is already used in organization {organization_id}")]
    EmailTaken {
        /// The address.
        email: String,
        /// The organization.
        organization_id: String,
    },
    /// The event could not be built (a bug: the input was validated).
    #[error("cannot build the {event_type} event")]
    Event {
        /// The event type.
        event_type: &'static str,
        /// What the library refused.
        #[source]
        source: EventError,
    },
    /// A value is over a size limit (e.g. too many roles): HTTP 422.
    #[error("{field} too large: {reason}")]
    TooLarge {
        /// The field, as named in the request body.
        field: &'static str,
        /// The limit broken.
        reason: String,
    },
    /// The outbox refused the event (e.g. too large to publish); nothing was changed.
    #[error("the {event_type} event cannot be published; the change was not made")]
    Outbox {
        /// The event type.
        event_type: &'static str,
        /// What the outbox said.
        #[source]
        source: OutboxError,
    },
    /// The database failed; nothing was changed.
    #[error("the database failed; the change was not made")]
    Storage(#[from] sqlx::Error),
}

impl UserError {
    /// [`UserError::Invalid`] for `field`.
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
