//! The one gate every console action passes: a session, the CSRF token for changes, and
//! the admin API's own admission ([`AdminState::admit`]): the role the action needs (403),
//! the token's rate limit and a reachable audit trail for changes (429, 503). Roles are
//! mapped here only.

use super::error::UiError;
use super::session::{Session, same_secret};
use crate::AdminState;
use crate::roles;

/// What a console request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read a page (overview, dead letters, a job, the tail).
    View,
    /// Dry-run or replay dead letters (`DeadLetters::replay`).
    Replay,
    /// Stop a running replay.
    StopReplay,
    /// Delete dead letters (`DeadLetters::delete`).
    Purge,
    /// End the session.
    Logout,
}

impl Action {
    /// True for actions that change something: they need the form's CSRF token.
    fn changes(self) -> bool {
        !matches!(self, Self::View)
    }

    /// The admin API action it is, as far as roles go; `None` for what every session may
    /// do (log out).
    fn admin(self) -> Option<roles::Action> {
        match self {
            Self::View => Some(roles::Action::Read),
            Self::Replay | Self::StopReplay => Some(roles::Action::Replay),
            Self::Purge => Some(roles::Action::Purge),
            Self::Logout => None,
        }
    }
}

/// True if the session's role may do `action` (to hide what it may not; the check that
/// counts is [`require`]).
pub(crate) fn allows(session: &Session, action: Action) -> bool {
    action.admin().is_none_or(|a| session.admin.role.allows(a))
}

/// Allows `action` for `session`, or says why not. `csrf` is the token the form carried
/// (`None` for reads). Then the same admission as the JSON API: [`AdminState::admit`].
///
/// # Errors
/// [`UiError::csrf`] (403) when a change comes without the session's CSRF token; else
/// what [`AdminState::admit`] refuses with, as a page: 403 beyond the role, 429 over the
/// rate limit (with `Retry-After`), 503 when the audit trail cannot be reached.
pub(crate) async fn require(
    state: &AdminState,
    session: &Session,
    action: Action,
    csrf: Option<&str>,
) -> Result<(), UiError> {
    check_csrf(session, action, csrf)?;
    match action.admin() {
        Some(a) => Ok(state.admit(&session.admin, a).await?),
        None => Ok(()),
    }
}

/// A change must carry the session's CSRF token.
fn check_csrf(session: &Session, action: Action, csrf: Option<&str>) -> Result<(), UiError> {
    if action.changes() && !csrf.is_some_and(|c| same_secret(c, &session.csrf)) {
        tracing::warn!(token_id = %session.admin.token_id, ?action, "console form without a valid CSRF token refused");
        return Err(UiError::csrf());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Admin;
    use crate::roles::Role;

    fn session(role: Role) -> Session {
        Session {
            admin: Admin {
                token_id: "ops".into(),
                role,
            },
            csrf: "abc".into(),
        }
    }

    #[test]
    fn each_console_action_needs_the_role_of_its_api_action() {
        use Action::*;
        let allowed = |r: Role| {
            [View, Replay, StopReplay, Purge, Logout]
                .into_iter()
                .filter(|a| allows(&session(r), *a))
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(Role::Viewer), [View, Logout]);
        assert_eq!(allowed(Role::Operator), [View, Replay, StopReplay, Logout]);
        assert_eq!(
            allowed(Role::Admin),
            [View, Replay, StopReplay, Purge, Logout]
        );
    }

    #[test]
    fn changes_need_the_sessions_csrf_token() {
        let s = session(Role::Admin);
        assert!(check_csrf(&s, Action::View, None).is_ok());
        assert!(check_csrf(&s, Action::Replay, Some("abc")).is_ok());
        for bad in [None, Some(""), Some("abd"), Some("ab")] {
            assert!(check_csrf(&s, Action::Purge, bad).is_err(), "{bad:?}");
        }
    }
}
