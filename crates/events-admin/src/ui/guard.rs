//! The one gate every console action passes: a session, the CSRF token for changes, and
//! (when the admin API has roles) the role the action needs. Wire roles here only.

use super::error::UiError;
use super::session::{Session, same_secret};

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
}

/// Allows `action` for `session`, or says why not. `csrf` is the token the form carried
/// (`None` for reads). Today every admin token may do everything, as in the DLQ API; when
/// tokens get roles, map `action` to the role it needs here.
///
/// # Errors
/// [`UiError::csrf`] (403) when a change comes without the session's CSRF token.
pub(crate) fn require(
    session: &Session,
    action: Action,
    csrf: Option<&str>,
) -> Result<(), UiError> {
    if action.changes() && !csrf.is_some_and(|c| same_secret(c, &session.csrf)) {
        tracing::warn!(token_id = %session.token_id, ?action, "console form without a valid CSRF token refused");
        return Err(UiError::csrf());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_need_the_sessions_csrf_token() {
        let s = Session {
            token_id: "ops".into(),
            csrf: "abc".into(),
        };
        assert!(require(&s, Action::View, None).is_ok());
        assert!(require(&s, Action::Replay, Some("abc")).is_ok());
        for bad in [None, Some(""), Some("abd"), Some("ab")] {
            assert!(require(&s, Action::Purge, bad).is_err(), "{bad:?}");
        }
    }
}
