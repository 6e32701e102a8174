//! Admin tokens: an id, a [`Role`] and the SHA-256 of the secret, checked in constant
//! time (see the crate docs for how to make one). The middleware authenticates; each
//! handler then checks its action against the role ([`Admin::require`]).

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AdminState;
use crate::error::ApiError;
use crate::roles::{Role, UnknownRole};

/// A token failed to parse from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The id is empty or holds characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid token id {0:?}: use 1 to 64 characters of [A-Za-z0-9_.-]")]
    InvalidId(String),
    /// The hash is not 64 hexadecimal digits.
    #[error("invalid SHA-256 hash for token {id}: expected 64 hex digits")]
    InvalidHash {
        /// The token's id.
        id: String,
    },
    /// The configuration entry is not `<id>:<role>:<sha256 hex>` (or `<id>:<sha256 hex>`).
    #[error("invalid token entry: expected <id>:<role>:<sha256 hex>")]
    InvalidEntry,
    /// The role is not `viewer`, `operator` or `admin`.
    #[error("token {id}")]
    InvalidRole {
        /// The token's id.
        id: String,
        /// The role given.
        #[source]
        source: UnknownRole,
    },
}

/// One admin token: an id (who it is, for the audit trail), a role (what it may do) and
/// the SHA-256 of its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    id: String,
    role: Role,
    sha256: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not secret, but there is no reason to print it either.
        f.debug_struct("AdminToken")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl AdminToken {
    /// A token of role `admin` from its id and the hex SHA-256 of its secret.
    ///
    /// # Errors
    /// [`TokenError::InvalidId`], [`TokenError::InvalidHash`].
    pub fn from_sha256_hex(id: impl Into<String>, hex: &str) -> Result<Self, TokenError> {
        let id = id.into();
        check_id(&id)?;
        let sha256 =
            parse_hex32(hex.trim()).ok_or_else(|| TokenError::InvalidHash { id: id.clone() })?;
        Ok(Self {
            id,
            role: Role::Admin,
            sha256,
        })
    }

    /// A token of role `admin` from its id and its secret (hashed here; the secret is not
    /// kept). For tests and tools; configurations should hold the hash.
    ///
    /// # Errors
    /// [`TokenError::InvalidId`].
    pub fn from_secret(id: impl Into<String>, secret: &str) -> Result<Self, TokenError> {
        let id = id.into();
        check_id(&id)?;
        Ok(Self {
            id,
            role: Role::Admin,
            sha256: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// The same token with `role`.
    #[must_use]
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// Parses a configuration entry `<id>:<role>:<sha256 hex>`; the older
    /// `<id>:<sha256 hex>` is a token of role `admin` (what every token could do before
    /// roles existed).
    ///
    /// # Errors
    /// [`TokenError`] naming the bad part.
    pub fn parse(entry: &str) -> Result<Self, TokenError> {
        let mut parts = entry.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(hex), None, None) => Self::from_sha256_hex(id, hex),
            (Some(id), Some(role), Some(hex), None) => {
                let role = role
                    .trim()
                    .parse()
                    .map_err(|source| TokenError::InvalidRole {
                        id: id.to_owned(),
                        source,
                    })?;
                Ok(Self::from_sha256_hex(id, hex)?.with_role(role))
            }
            _ => Err(TokenError::InvalidEntry),
        }
    }

    /// The token's id, recorded with every change it makes.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What the token may do.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// The hex SHA-256 of a token secret: the value to put in the configuration, as
/// `<id>:<hash>` (same as `printf %s "$TOKEN" | sha256sum`).
pub fn hash_token(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn check_id(id: &str) -> Result<(), TokenError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::InvalidId(id.to_owned()))
    }
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Who made an authenticated request (inserted as a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The id of the token used.
    pub token_id: String,
    /// The token's role.
    pub role: Role,
}

/// Finds the token whose hash matches `secret`, comparing against every configured token in
/// constant time (no early exit, fixed-length hashes, so neither the position of a match
/// nor the length of the secret shows in the timing).
pub(crate) fn authenticate<'a>(tokens: &'a [AdminToken], secret: &str) -> Option<&'a AdminToken> {
    let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let mut found = None;
    for t in tokens {
        if bool::from(t.sha256.ct_eq(&presented)) {
            found = Some(t);
        }
    }
    found
}

/// Middleware: admin only. No configured token refuses everything (fail closed, 403); a
/// missing, malformed or unknown bearer token is 401.
pub(crate) async fn require_admin(
    State(state): State<AdminState>,
    mut request: Request,
    next: Next,
) -> Response {
    let tokens = state.tokens();
    if tokens.is_empty() {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "dlq_api_disabled",
            "DLQ API is disabled: no admin token is configured",
        )
        .into_response();
    }
    let secret = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|s| !s.is_empty());
    let Some(secret) = secret else {
        return unauthorized("missing bearer token");
    };
    let Some(token) = authenticate(tokens, secret) else {
        tracing::warn!(path = %request.uri().path(), "admin request with an unknown token refused");
        return unauthorized("invalid token");
    };
    request.extensions_mut().insert(Admin {
        token_id: token.id().to_owned(),
        role: token.role(),
    });
    next.run(request).await
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_a_known_vector() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_and_authenticate() {
        let t = AdminToken::parse(&format!("ops:{}", hash_token("s3cret"))).expect("valid");
        assert_eq!(t.id(), "ops");
        let other = AdminToken::from_secret("ci", "other").expect("valid");
        let tokens = vec![other, t];
        assert_eq!(authenticate(&tokens, "s3cret").map(|t| t.id()), Some("ops"));
        assert_eq!(authenticate(&tokens, "other").map(|t| t.id()), Some("ci"));
        assert!(authenticate(&tokens, "s3cre").is_none());
        assert!(authenticate(&tokens, "").is_none());
        assert!(authenticate(&[], "s3cret").is_none());
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(AdminToken::parse("nocolon"), Err(TokenError::InvalidEntry));
        assert!(matches!(
            AdminToken::parse("ops:abc"),
            Err(TokenError::InvalidHash { .. })
        ));
        assert!(matches!(
            AdminToken::parse(&format!("ops:{}", "g".repeat(64))),
            Err(TokenError::InvalidHash { .. })
        ));
        assert!(matches!(
            AdminToken::parse(&format!("a b:{}", hash_token("x"))),
            Err(TokenError::InvalidId(_))
        ));
        assert!(matches!(
            AdminToken::parse(&format!("ops:root:{}", hash_token("x"))),
            Err(TokenError::InvalidRole { .. })
        ));
        assert_eq!(AdminToken::parse("a:b:c:d"), Err(TokenError::InvalidEntry));
    }

    #[test]
    fn roles_are_parsed_and_the_old_format_is_admin() {
        let hash = hash_token("x");
        let viewer = AdminToken::parse(&format!("ci:viewer:{hash}")).unwrap();
        assert_eq!((viewer.id(), viewer.role()), ("ci", Role::Viewer));
        let old = AdminToken::parse(&format!("ops:{hash}")).unwrap();
        assert_eq!(old.role(), Role::Admin);
    }
}
