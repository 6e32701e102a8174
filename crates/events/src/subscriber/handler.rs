//! What a handler is, what it gets and what it returns.

use std::fmt;
use std::future::Future;

use super::context::DeliveryContext;
use crate::Event;

/// A boxed error, as handlers produce them.
use crate::error::BoxError;

/// Why a handler failed, which decides what happens to the message (CONTRACT.md §3).
///
/// Any `std::error::Error` converts into [`HandlerError::Transient`], so `?` works in a
/// handler; mark errors no retry can fix with [`ResultExt::permanent`] or
/// [`HandlerError::permanent`]. (`HandlerError` itself does not implement
/// `std::error::Error`: that blanket conversion would otherwise conflict with `From<T> for T`,
/// the same trade-off as `anyhow::Error`.)
#[non_exhaustive]
pub enum HandlerError {
    /// Try again later: the message is NAKed with a growing delay, and dead-lettered after
    /// the last allowed delivery.
    Transient(BoxError),
    /// No retry can help: the message is dead-lettered now.
    Permanent(BoxError),
}

impl HandlerError {
    /// A transient failure.
    pub fn transient(err: impl Into<BoxError>) -> Self {
        Self::Transient(err.into())
    }

    /// A permanent failure.
    pub fn permanent(err: impl Into<BoxError>) -> Self {
        Self::Permanent(err.into())
    }

    /// True for [`HandlerError::Permanent`].
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }

    /// The metric label: `transient` or `permanent`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transient(_) => "transient",
            Self::Permanent(_) => "permanent",
        }
    }

    /// The underlying error.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            Self::Transient(e) | Self::Permanent(e) => e.as_ref(),
        }
    }

    /// The error and its causes on one line, `: `-separated (for logs and `Dlq-Error`).
    pub fn chain_string(&self) -> String {
        crate::error::error_chain(self.inner())
    }
}

impl<E> From<E> for HandlerError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        Self::Transient(Box::new(err))
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transient(e) => f.debug_tuple("Transient").field(e).finish(),
            Self::Permanent(e) => f.debug_tuple("Permanent").field(e).finish(),
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failure: {}", self.kind(), self.chain_string())
    }
}

/// Marks the error of a `Result` as transient or permanent:
/// `repo.load(id).await.permanent()?`.
pub trait ResultExt<T> {
    /// Maps the error to [`HandlerError::Permanent`].
    ///
    /// # Errors
    /// The original error, as permanent.
    fn permanent(self) -> Result<T, HandlerError>;
    /// Maps the error to [`HandlerError::Transient`] (also for error types that do not
    /// implement `std::error::Error`, such as `anyhow::Error` or strings).
    ///
    /// # Errors
    /// The original error, as transient.
    fn transient(self) -> Result<T, HandlerError>;
}

impl<T, E: Into<BoxError>> ResultExt<T> for Result<T, E> {
    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::Permanent(e.into()))
    }

    fn transient(self) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::Transient(e.into()))
    }
}

/// Handles one delivery. Implemented for every
/// `Fn(Event, DeliveryContext) -> impl Future<Output = Result<(), HandlerError>>` closure;
/// [`handler_fn`] helps the closure's types be inferred.
///
/// A trait of our own rather than a `tower::Service`: one handler value is shared by every
/// concurrent delivery (`&self`, no `poll_ready`/clone per call), the delivery context is
/// part of the call, and the transient/permanent outcome is typed rather than downcast from
/// a `BoxError`. Middleware is plain wrapping, as [`crate::idempotency::Idempotent`] shows;
/// a tower stack plugs in through [`super::service_handler`].
pub trait Handler: Send + Sync + 'static {
    /// Handles the event.
    fn handle(
        &self,
        event: Event,
        ctx: DeliveryContext,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Event, DeliveryContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(
        &self,
        event: Event,
        ctx: DeliveryContext,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(event, ctx)
    }
}

/// Builds a handler from an async closure:
/// `handler_fn(|event, ctx| async move { ...; Ok(()) })`.
pub fn handler_fn<F, Fut>(f: F) -> F
where
    F: Fn(Event, DeliveryContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    f
}

/// Builds a handler with state from an async closure that gets its own clone of `state`
/// on each call, so the closure needs no clone of its own:
/// `handler_fn_with(pool, |pool, event, ctx| async move { ...; Ok(()) })`.
///
/// `state` is cloned once per delivery: give a cheap clone (an `Arc`, a pool, a
/// [`Publisher`](crate::Publisher)). For state with methods of its own, implement
/// [`Handler`] on the type instead:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use events::{DeliveryContext, Event, Handler, HandlerError};
///
/// struct Counter {
///     seen: AtomicU64,
/// }
///
/// impl Handler for Counter {
///     async fn handle(&self, _event: Event, _ctx: DeliveryContext) -> Result<(), HandlerError> {
///         self.seen.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     }
/// }
/// ```
pub fn handler_fn_with<S, F, Fut>(state: S, f: F) -> WithState<S, F>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Event, DeliveryContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    WithState { state, f }
}

/// A handler closure with its state; see [`handler_fn_with`].
#[derive(Debug, Clone)]
pub struct WithState<S, F> {
    state: S,
    f: F,
}

impl<S, F, Fut> Handler for WithState<S, F>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Event, DeliveryContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(
        &self,
        event: Event,
        ctx: DeliveryContext,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (self.f)(self.state.clone(), event, ctx)
    }
}

impl<H: Handler> Handler for std::sync::Arc<H> {
    fn handle(
        &self,
        event: Event,
        ctx: DeliveryContext,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (**self).handle(event, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    fn fails() -> Result<(), HandlerError> {
        Err(Outer(std::io::Error::other("inner")))?;
        Ok(())
    }

    #[test]
    fn question_mark_is_transient_and_keeps_the_chain() {
        let e = fails().unwrap_err();
        assert!(!e.is_permanent());
        assert_eq!(e.kind(), "transient");
        assert_eq!(e.chain_string(), "outer: inner");
        assert_eq!(e.to_string(), "transient failure: outer: inner");
    }

    #[tokio::test]
    async fn a_handler_with_state_gets_its_own_clone() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let seen = Arc::new(AtomicU64::new(0));
        let h = handler_fn_with(
            seen.clone(),
            |seen: Arc<AtomicU64>, _event, _ctx| async move {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        );
        let event = Event::builder("auth.user.created")
            .source("s")
            .organization("o")
            .data(&serde_json::json!({}))
            .build()
            .unwrap();
        for _ in 0..3 {
            let ctx = super::super::context::test_context(b"{}");
            h.handle(event.clone(), ctx).await.unwrap();
        }
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn result_ext_marks_errors() {
        let r: Result<(), &str> = Err("nope");
        assert!(r.permanent().unwrap_err().is_permanent());
        let r: Result<(), String> = Err("again".into());
        assert!(!r.transient().unwrap_err().is_permanent());
    }
}
