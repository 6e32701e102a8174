//! Unique names for streams, consumers and subjects in fixtures.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ports::random_u64;

/// `prefix` plus a short suffix that is unique within this process and random across
/// processes, e.g. `unique_name("ORDERS")` gives `ORDERS_3_9F2C1A`.
///
/// The result only holds ASCII letters, digits, `_` and what `prefix` holds, so it is a
/// valid stream or consumer name and a single subject token (no `.`, `*`, `>`, spaces).
///
/// # Panics
///
/// If `prefix` holds a character that is not allowed in a stream name or subject token
/// (`.`, `*`, `>`, `/`, `\`, whitespace, control characters).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    assert!(
        !prefix
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\')
                || c.is_whitespace()
                || c.is_control()),
        "unique_name: prefix {prefix:?} holds a character not allowed in a stream name"
    );
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{n}_{:06X}", random_u64() & 0xFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_keep_the_prefix() {
        let a = unique_name("ORDERS");
        let b = unique_name("ORDERS");
        assert_ne!(a, b);
        assert!(a.starts_with("ORDERS_"));
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{a}"
        );
    }

    #[test]
    #[should_panic(expected = "not allowed")]
    fn a_dot_in_the_prefix_is_refused() {
        unique_name("auth.user");
    }
}
