//! The events auth-service publishes, exactly as `docs/EVENT_CATALOG.md` describes them:
//! `data` payload types and the functions that build the envelopes.
//!
//! Every event sets `schemaversion`, `dataschema` (`urn:events:schema:<type>:<major>.<minor>`,
//! the `$id` of `schemas/<type>/<major>.<minor>.json`) and `subject` (the user id)
//! explicitly, as SCHEMA_VERSIONING.md asks: the library's default `schemaversion` is only
//! right until the first change. The service's publisher validates every event against
//! that schema before sending it (see [`crate::config::Config::schemas`]).

use events::schema::URI_PREFIX;
use events::{Event, EventError};
use serde::Serialize;

use crate::user::User;

/// The `source` of every event this service publishes.
pub const SOURCE: &str = "auth-service";

/// `auth.user.created`.
pub const USER_CREATED: &str = "auth.user.created";
/// `auth.user.updated`.
pub const USER_UPDATED: &str = "auth.user.updated";
/// `auth.user.deleted`.
pub const USER_DELETED: &str = "auth.user.deleted";

/// The `data` schema version of every type above (EVENT_CATALOG.md).
pub const SCHEMA_VERSION: &str = "1.0";

/// `urn:events:schema:<type>:<major>.<minor>`: the `$id` of the JSON Schema of `data` at
/// [`SCHEMA_VERSION`], what a publisher with the schema set expects in `dataschema`.
pub fn data_schema(event_type: &str) -> String {
    format!("{URI_PREFIX}{event_type}:{SCHEMA_VERSION}")
}

/// `data` of `auth.user.created` 1.x.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserCreatedV1<'a> {
    /// The new user's id; equal to the `subject` attribute.
    pub user_id: &'a str,
    /// Lower-case e-mail address, unique per organization.
    pub email: &'a str,
    /// The name shown in user interfaces.
    pub display_name: &'a str,
    /// Roles granted at creation, possibly empty.
    pub roles: &'a [String],
    /// Always 1 on creation.
    pub revision: u64,
    /// Who invited the user; left out for a self sign-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<&'a str>,
}

/// `data` of `auth.user.updated` 1.x: the whole user after the change, plus what changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserUpdatedV1<'a> {
    /// The user's id; equal to the `subject` attribute.
    pub user_id: &'a str,
    /// After the change.
    pub email: &'a str,
    /// After the change.
    pub display_name: &'a str,
    /// After the change.
    pub roles: &'a [String],
    /// The user's revision after the change (>= 2).
    pub revision: u64,
    /// Which of `email`, `display_name`, `roles` changed; never empty.
    pub changed: &'a [&'static str],
}

/// `data` of `auth.user.deleted` 1.x: no personal data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserDeletedV1<'a> {
    /// The removed user's id; equal to the `subject` attribute.
    pub user_id: &'a str,
    /// The user's last revision plus one.
    pub revision: u64,
    /// Who deleted the account; null when the system did.
    pub deleted_by: Option<&'a str>,
}

fn envelope(event_type: &str, user: &User) -> events::EventBuilder {
    Event::builder(event_type)
        .source(SOURCE)
        .organization(user.organization_id.as_str())
        .schema_version(SCHEMA_VERSION)
        .data_schema(data_schema(event_type))
        .subject(&user.id)
}

/// `auth.user.created` for a user just created.
///
/// # Errors
/// [`EventError`] if an attribute breaks the contract (cannot happen for a validated user).
pub fn user_created(user: &User) -> Result<Event, EventError> {
    envelope(USER_CREATED, user)
        .data(&UserCreatedV1 {
            user_id: &user.id,
            email: &user.email,
            display_name: &user.name,
            roles: &user.roles,
            revision: user.revision,
            invited_by: None,
        })
        .build()
}

/// `auth.user.updated` for `user` as it is after the change.
///
/// # Errors
/// As [`user_created`].
pub fn user_updated(user: &User, changed: &[&'static str]) -> Result<Event, EventError> {
    envelope(USER_UPDATED, user)
        .data(&UserUpdatedV1 {
            user_id: &user.id,
            email: &user.email,
            display_name: &user.name,
            roles: &user.roles,
            revision: user.revision,
            changed,
        })
        .build()
}

/// `auth.user.deleted` for `user`, whose `revision` is already the deletion's.
///
/// # Errors
/// As [`user_created`].
pub fn user_deleted(user: &User, deleted_by: Option<&str>) -> Result<Event, EventError> {
    envelope(USER_DELETED, user)
        .data(&UserDeletedV1 {
            user_id: &user.id,
            revision: user.revision,
            deleted_by,
        })
        .build()
}
