//! Admin roles: what each token may do. Reused by every admin surface (the JSON API, a
//! web console): a handler names the [`Action`] it performs and calls
//! [`Admin::require`]; beyond the token's [`Role`] the answer is 403.

use std::fmt;
use std::str::FromStr;

use axum::http::StatusCode;

use crate::auth::Admin;
use crate::error::ApiError;

/// A token's role; each includes the rights of the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Reads: list and show dead letters, read the audit trail.
    Viewer,
    /// A viewer that may also replay dead letters.
    Operator,
    /// An operator that may also delete and purge dead letters.
    Admin,
}

/// What a request does, as far as roles are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// List or show (dead letters, the audit trail).
    Read,
    /// Replay dead letters (dry runs included).
    Replay,
    /// Delete one dead letter.
    Delete,
    /// Purge dead letters.
    Purge,
}

impl Action {
    /// The action's name in the audit trail and in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Replay => "replay",
            Self::Delete => "delete",
            Self::Purge => "purge",
        }
    }

    /// True for the actions that change something (rate limited and audited).
    pub fn is_mutating(self) -> bool {
        !matches!(self, Self::Read)
    }

    /// The least role allowed to do it.
    pub fn least_role(self) -> Role {
        match self {
            Self::Read => Role::Viewer,
            Self::Replay => Role::Operator,
            Self::Delete | Self::Purge => Role::Admin,
        }
    }
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The role's name in the token file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// True if this role may do `action`.
    pub fn allows(self, action: Action) -> bool {
        self >= action.least_role()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `viewer`, `operator`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected viewer, operator or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

impl Admin {
    /// Ok if the token's role allows `action`.
    ///
    /// # Errors
    /// 403 `forbidden`, naming the action, the token's role and the role it needs.
    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if self.role.allows(action) {
            return Ok(());
        }
        tracing::warn!(token_id = %self.token_id, role = %self.role, action = action.as_str(), "admin request beyond its role refused");
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {} has role {}; {} needs role {} or above",
                self.token_id,
                self.role,
                action.as_str(),
                action.least_role()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_includes_the_one_before() {
        use Action::*;
        let allowed = |r: Role| {
            [Read, Replay, Delete, Purge]
                .into_iter()
                .filter(|a| r.allows(*a))
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(Role::Viewer), [Read]);
        assert_eq!(allowed(Role::Operator), [Read, Replay]);
        assert_eq!(allowed(Role::Admin), [Read, Replay, Delete, Purge]);
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn beyond_the_role_is_403_naming_it() {
        let viewer = Admin {
            token_id: "ci".into(),
            role: Role::Viewer,
        };
        viewer.require(Action::Read).unwrap();
        let err = viewer.require(Action::Replay).unwrap_err();
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert!(
            err.message.contains("needs role operator"),
            "{}",
            err.message
        );
    }
}
