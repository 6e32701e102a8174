//! Error plumbing shared by every module: the boxed error type, a one-line rendering of an
//! error with its causes, and the one configuration error.

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

/// A configuration that cannot work, with every problem found (the one config error of the
/// crate: [`PublisherConfig`](crate::publisher::PublisherConfig),
/// [`SubscriberConfig`](crate::subscriber::SubscriberConfig) and their retry policies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {component} configuration: {}", .problems.join("; "))]
#[non_exhaustive]
pub struct ConfigError {
    /// What the configuration configures: `publisher` or `subscriber`.
    pub component: &'static str,
    /// Every problem found, one sentence each.
    pub problems: Vec<String>,
}

impl ConfigError {
    /// `Ok` without problems, else the error listing them.
    pub(crate) fn check(component: &'static str, problems: Vec<String>) -> Result<(), Self> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Self {
                component,
                problems,
            })
        }
    }
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
