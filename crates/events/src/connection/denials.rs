//! Permission denials the server reports on a connection, correlated with what waits.
//!
//! nats-server refuses a publish or subscribe outside the identity's permissions with an
//! asynchronous `-ERR 'Permissions Violation for Publish to "<subject>"'`: the publish
//! itself gets no answer, so without this a denied publish would look like an outage
//! (no ack until the deadline). The connection's event callback parses each such error
//! into a [`Denial`] and records it here; whoever waits on a subject ([`Denials::wait`],
//! [`Denials::guard`]) fails at once with a typed [`PermissionDenied`].

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::broadcast;

/// How many recent denials are kept for a waiter that subscribes after the error came.
const RECENT: usize = 256;

/// What the server refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeniedOperation {
    /// A publish (JetStream API requests and acks included).
    Publish,
    /// A subscription.
    Subscribe,
}

/// One permissions violation reported by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Publish or subscribe.
    pub operation: DeniedOperation,
    /// The subject the server named.
    pub subject: String,
    /// When the client learned of it.
    pub at: Instant,
}

/// The server refused an operation on `subject` for lack of permission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("permission denied: the server refused {} on {subject:?}", operation_word(*.operation))]
#[non_exhaustive]
pub struct PermissionDenied {
    /// Publish or subscribe.
    pub operation: DeniedOperation,
    /// The subject refused.
    pub subject: String,
}

fn operation_word(op: DeniedOperation) -> &'static str {
    match op {
        DeniedOperation::Publish => "a publish",
        DeniedOperation::Subscribe => "a subscription",
    }
}

impl From<Denial> for PermissionDenied {
    fn from(d: Denial) -> Self {
        Self {
            operation: d.operation,
            subject: d.subject,
        }
    }
}

/// Parses the server's error text: `Permissions Violation for Publish to "a.b"` or
/// `... for Subscription to "a.b"` (optionally `using queue "q"`). `None` for any other
/// error.
pub fn parse_violation(text: &str) -> Option<(DeniedOperation, String)> {
    let text = text.trim().trim_matches('\'');
    let rest = text.strip_prefix("Permissions Violation for ")?;
    let (operation, rest) = if let Some(r) = rest.strip_prefix("Publish to \"") {
        (DeniedOperation::Publish, r)
    } else if let Some(r) = rest.strip_prefix("Subscription to \"") {
        (DeniedOperation::Subscribe, r)
    } else {
        return None;
    };
    let end = rest.find('"')?;
    Some((operation, rest[..end].to_owned()))
}

/// The denials of one connection: recorded by its event callback, awaited by publishers,
/// subscribers and tools. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Denials {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    recent: Mutex<VecDeque<Denial>>,
    tx: broadcast::Sender<Denial>,
}

impl Default for Denials {
    fn default() -> Self {
        Self::new()
    }
}

impl Denials {
    /// An empty registry (a [`Connection`](super::Connection) makes its own).
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(64);
        Self {
            inner: Arc::new(Inner {
                recent: Mutex::new(VecDeque::new()),
                tx,
            }),
        }
    }

    /// Records the server error `text` if it is a permissions violation; returns the
    /// denial recorded.
    pub fn record_server_error(&self, text: &str) -> Option<Denial> {
        let (operation, subject) = parse_violation(text)?;
        let denial = Denial {
            operation,
            subject,
            at: Instant::now(),
        };
        if let Ok(mut recent) = self.inner.recent.lock() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(denial.clone());
        }
        let _ = self.inner.tx.send(denial.clone());
        Some(denial)
    }

    fn find_recent(&self, since: Instant, wanted: &impl Fn(&Denial) -> bool) -> Option<Denial> {
        let recent = self.inner.recent.lock().ok()?;
        recent
            .iter()
            .rev()
            .take_while(|d| d.at >= since)
            .find(|d| wanted(d))
            .cloned()
    }

    /// Resolves with the first denial at or after `since` that `wanted` accepts; never
    /// resolves if none comes (race it against the operation's own answer or deadline).
    pub async fn wait_for(&self, since: Instant, wanted: impl Fn(&Denial) -> bool) -> Denial {
        // Subscribe before looking at the recent ones, so that nothing falls in between.
        let mut rx = self.inner.tx.subscribe();
        if let Some(d) = self.find_recent(since, &wanted) {
            return d;
        }
        loop {
            match rx.recv().await {
                Ok(d) if d.at >= since && wanted(&d) => return d,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(d) = self.find_recent(since, &wanted) {
                        return d;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }

    /// [`wait_for`](Self::wait_for) a publish denied on exactly `subject`.
    pub async fn wait(&self, subject: &str, since: Instant) -> Denial {
        self.wait_for(since, |d| {
            d.operation == DeniedOperation::Publish && d.subject == subject
        })
        .await
    }

    /// Runs `operation` (a request, a JetStream API call) and fails it at once with
    /// [`PermissionDenied`] if the server denies a publish on `subject` meanwhile,
    /// instead of waiting for the reply that never comes.
    ///
    /// # Errors
    /// [`PermissionDenied`] naming the subject; the operation's own result otherwise.
    pub async fn guard<F: Future>(
        &self,
        subject: &str,
        operation: F,
    ) -> Result<F::Output, PermissionDenied> {
        let since = Instant::now();
        tokio::select! {
            biased;
            out = operation => Ok(out),
            d = self.wait(subject, since) => Err(d.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_parsed() {
        assert_eq!(
            parse_violation("Permissions Violation for Publish to \"catalog.x.y\""),
            Some((DeniedOperation::Publish, "catalog.x.y".into()))
        );
        assert_eq!(
            parse_violation(
                "'Permissions Violation for Subscription to \"_INBOX.>\" using queue \"q\"'"
            ),
            Some((DeniedOperation::Subscribe, "_INBOX.>".into()))
        );
        assert_eq!(parse_violation("Authorization Violation"), None);
        assert_eq!(
            parse_violation("Permissions Violation for Publish to"),
            None
        );
    }

    #[tokio::test]
    async fn a_recorded_denial_wakes_the_waiter_and_stays_for_late_ones() {
        let denials = Denials::new();
        let since = Instant::now();
        let waiter = tokio::spawn({
            let d = denials.clone();
            async move { d.wait("a.b", since).await }
        });
        tokio::task::yield_now().await;
        assert!(denials.record_server_error("nats: other").is_none());
        denials
            .record_server_error("Permissions Violation for Publish to \"a.b\"")
            .unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.subject, "a.b");
        // A waiter that starts after the error still sees it.
        let late = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            denials.wait("a.b", since),
        )
        .await
        .unwrap();
        assert_eq!(late.subject, "a.b");
        let guarded = denials.guard("a.b", std::future::pending::<()>());
        let now = futures::FutureExt::now_or_never(Box::pin(guarded));
        assert!(
            now.is_none(),
            "an older denial must not fail a new operation"
        );
    }
}
