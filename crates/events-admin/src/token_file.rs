//! The admin token file: one `<id>:<role>:<sha256 hex>` per line, `#` comments and blank
//! lines skipped, readable by its owner only.
//!
//! ```text
//! # id:role:sha256 of the token (printf %s "$TOKEN" | sha256sum)
//! ci:viewer:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
//! oncall:operator:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9
//! ops:admin:baa5a0964d3320fbc0c6a922140453c8513ea24ab8fd0577034804a967248096
//! ```
//!
//! The file is refused when its group or others may read or write it (`mode & 0o077`):
//! the hashes are not the secrets, but who holds which role is not everyone's business,
//! and a file others may write lets them add an admin.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::auth::{AdminToken, TokenError};

/// Why the token file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFileError {
    /// It could not be read.
    #[error("cannot read admin token file {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Group or others have access to it.
    #[error(
        "admin token file {} has mode {mode:04o}: group and others must have no access; run chmod 600 {}",
        .path.display(), .path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not a token entry.
    #[error("{}, line {line}", .path.display())]
    Entry {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        #[source]
        source: TokenError,
    },
    /// Two entries have the same id (the audit trail could not tell them apart).
    #[error("{}, line {line}: token id {id:?} is used twice", .path.display())]
    DuplicateId {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the second use.
        line: usize,
        /// The id.
        id: String,
    },
}

/// Reads the tokens of `path` after checking that only its owner has access.
///
/// # Errors
/// [`TokenFileError`] naming the file, and the line for a bad entry.
pub fn load_token_file(path: &Path) -> Result<Vec<AdminToken>, TokenFileError> {
    let read = |source| TokenFileError::Read {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TokenFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    parse_tokens(&text, path)
}

/// Parses the lines of a token file (`path` only names it in errors).
///
/// # Errors
/// [`TokenFileError::Entry`] or [`TokenFileError::DuplicateId`] for the first bad line.
pub fn parse_tokens(text: &str, path: &Path) -> Result<Vec<AdminToken>, TokenFileError> {
    let mut tokens: Vec<AdminToken> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let token = AdminToken::parse(line).map_err(|source| TokenFileError::Entry {
            path: path.to_owned(),
            line: i + 1,
            source,
        })?;
        if tokens.iter().any(|t| t.id() == token.id()) {
            return Err(TokenFileError::DuplicateId {
                path: path.to_owned(),
                line: i + 1,
                id: token.id().to_owned(),
            });
        }
        tokens.push(token);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_token;
    use crate::roles::Role;

    #[test]
    fn lines_comments_and_roles() {
        let h = hash_token("x");
        let text = format!("# tokens\n\nci:viewer:{h}\nops:{h}\n");
        let tokens = parse_tokens(&text, Path::new("t")).unwrap();
        let roles: Vec<_> = tokens.iter().map(|t| (t.id(), t.role())).collect();
        assert_eq!(roles, [("ci", Role::Viewer), ("ops", Role::Admin)]);
        let err = parse_tokens(&format!("ci:viewer:{h}\nci:admin:{h}\n"), Path::new("t"));
        assert!(matches!(
            err,
            Err(TokenFileError::DuplicateId { line: 2, .. })
        ));
        let err = parse_tokens("\nbad\n", Path::new("t")).unwrap_err();
        assert!(err.to_string().contains("t, line 2"), "{err}");
    }
}
