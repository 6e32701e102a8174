//! The rules of the users API's input: each failure names the field.

use crate::error::UserError;
use crate::user::{MAX_EMAIL_LEN, MAX_NAME_CHARS, MAX_ROLE_LEN, MAX_ROLES};

pub(crate) fn required(field: &'static str, value: Option<String>) -> Result<String, UserError> {
    value.ok_or_else(|| UserError::invalid(field, "is required"))
}

/// A plausible address, lower-cased: one `@`, a non-empty local part, a dotted domain, no
/// whitespace or control characters. (Real verification is a confirmation mail.)
pub(crate) fn valid_email(email: &str) -> Result<String, UserError> {
    let email = email.trim().to_lowercase();
    let bad = |reason: &str| Err(UserError::invalid("email", reason));
    if email.is_empty() {
        return bad("must not be empty");
    }
    if email.len() > MAX_EMAIL_LEN {
        return bad("must be at most 254 bytes");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace or control characters");
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(email)
        }
        _ => bad("must look like name@example.com"),
    }
}

pub(crate) fn valid_name(name: &str) -> Result<String, UserError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 {
        return Err(UserError::invalid("name", "must not be empty"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(UserError::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters, got {chars}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(UserError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

pub(crate) fn valid_roles(roles: Vec<String>) -> Result<Vec<String>, UserError> {
    if roles.len() > MAX_ROLES {
        return Err(UserError::TooLarge {
            field: "roles",
            reason: format!("at most {MAX_ROLES} roles, got {}", roles.len()),
        });
    }
    if let Some(long) = roles.iter().find(|r| r.len() > MAX_ROLE_LEN) {
        return Err(UserError::TooLarge {
            field: "roles",
            reason: format!("a role is at most {MAX_ROLE_LEN} bytes, got {}", long.len()),
        });
    }
    for role in &roles {
        let ok = !role.is_empty()
            && role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(UserError::invalid(
                "roles",
                format!("{role:?} must be 1 to {MAX_ROLE_LEN} characters of [a-z0-9_-]"),
            ));
        }
    }
    let mut unique = roles.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != roles.len() {
        return Err(UserError::invalid("roles", "must not repeat a role"));
    }
    Ok(roles)
}
