//! A user as this service stores it, and the limits on its fields (what `validate`
//! enforces and the events carry).

use events::OrganizationId;
use serde::Serialize;

/// Longest accepted e-mail address (RFC 5321 path limit).
pub(crate) const MAX_EMAIL_LEN: usize = 254;
/// Longest display name, in characters (EVENT_CATALOG.md).
pub(crate) const MAX_NAME_CHARS: usize = 200;
/// Longest role name.
pub(crate) const MAX_ROLE_LEN: usize = 64;
/// Most roles per user: keeps every user's event far below the server's `max_payload`
/// (100 roles of 64 bytes are under 7 KiB).
pub const MAX_ROLES: usize = 100;

/// A user as this service stores and returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// UUID v7, assigned on creation.
    pub id: String,
    /// The tenant the user belongs to.
    pub organization_id: OrganizationId,
    /// Lower case; unique within the organization.
    pub email: String,
    /// Display name (`display_name` in the events).
    pub name: String,
    /// Role names.
    pub roles: Vec<String>,
    /// 1 on creation, +1 with each change (the events carry it so consumers can order them).
    pub revision: u64,
}
