//! Error plumbing shared by every module: the boxed error type and a one-line rendering of
//! an error with its causes.

/// A boxed error that can cross tasks: what handlers return and what typed errors carry as
/// their `#[source]` when the cause comes from another crate.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error and its causes on one line, `: `-separated (for logs, `Dlq-Error` and API
/// error bodies). Our errors never repeat their cause in their own message, so nothing is
/// printed twice.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_joins_every_cause() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::error_chain(&e), "outer: inner");
    }
}
