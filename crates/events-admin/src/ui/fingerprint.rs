//! Failure fingerprints: dead letters that failed the same way share one, so thousands of
//! them triage as a handful of groups (as ServicePulse groups by exception).
//!
//! A fingerprint is the original stream, the consumer, the reason, and the error with its
//! variable parts masked: quoted values become `"…"`, UUIDs and long hex ids `<id>`,
//! numbers `#`.

use events::DeadLetter;
use sha2::{Digest, Sha256};

/// The error text with values, ids and numbers masked.
pub(crate) fn mask(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let chars: Vec<char> = error.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            // A quoted value: up to the matching quote (or the end).
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == c)
                .map(|p| i + 1 + p);
            out.push_str("\"…\"");
            i = end.map_or(chars.len(), |e| e + 1);
            continue;
        }
        if c.is_ascii_alphanumeric() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '-' || chars[i] == '_')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push_str(&mask_word(&word));
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// A word is an id (UUID, 16+ hex digits), a number (masked digits), or kept.
fn mask_word(word: &str) -> String {
    let hex_digits = word.chars().filter(char::is_ascii_hexdigit).count();
    let is_uuid = word.len() == 36 && word.matches('-').count() == 4 && hex_digits == 32;
    let is_hex_id = word.len() >= 16
        && word.chars().all(|c| c.is_ascii_hexdigit())
        && word.chars().any(|c| c.is_ascii_digit());
    if is_uuid || is_hex_id {
        return "<id>".to_owned();
    }
    let mut out = String::with_capacity(word.len());
    let mut in_number = false;
    for c in word.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// The parts a dead letter is grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Fingerprint {
    pub(crate) original_stream: String,
    pub(crate) consumer: String,
    pub(crate) reason: String,
    pub(crate) error: String,
}

impl Fingerprint {
    pub(crate) fn of(dl: &DeadLetter) -> Self {
        let or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
        Self {
            original_stream: or_dash(dl.original_stream.as_deref()),
            consumer: or_dash(dl.consumer.as_deref()),
            reason: or_dash(dl.reason.map(|r| r.as_str())),
            error: dl.error.as_deref().map_or_else(|| "-".to_owned(), mask),
        }
    }

    /// A short stable id for links and forms: 16 hex digits of the SHA-256 of the parts.
    pub(crate) fn id(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            &self.original_stream,
            &self.consumer,
            &self.reason,
            &self.error,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_parts_are_masked() {
        assert_eq!(
            mask("user 42 not found in org 'acme-7' (id 0190f3c2-8c1a-7b2e-9d4f-0123456789ab)"),
            "user # not found in org \"…\" (id <id>)"
        );
        assert_eq!(
            mask("timeout after 1500ms on db7"),
            "timeout after #ms on db#"
        );
        assert_eq!(mask("bad \"value"), "bad \"…\"");
        assert_eq!(mask("deadbeefdeadbeef1 failed"), "<id> failed");
        assert_eq!(mask("decode error"), "decode error");
    }

    #[test]
    fn same_failure_same_id() {
        let a = Fingerprint {
            original_stream: "S".into(),
            consumer: "c".into(),
            reason: "permanent".into(),
            error: mask("user 1 missing"),
        };
        let b = Fingerprint {
            error: mask("user 2 missing"),
            ..a.clone()
        };
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 16);
        let c = Fingerprint {
            consumer: "d".into(),
            ..a.clone()
        };
        assert_ne!(a.id(), c.id());
    }
}
