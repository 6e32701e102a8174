//! What a handler is, what it gets and what it returns.

use std::fmt;
use std::future::Future;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

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

/// What a handler knows about the delivery besides the event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeliveryContext {
    /// Which delivery this is, 1 for the first.
    pub delivered: u64,
    /// Sequence of the message in its stream.
    pub stream_sequence: u64,
    /// Sequence of this delivery in the consumer.
    pub consumer_sequence: u64,
    /// The stream the message is stored in.
    pub stream: String,
    /// The durable consumer (group) delivering it.
    pub consumer: String,
    /// The subject the message was published on.
    pub subject: String,
    /// When the stream stored the message.
    pub published: OffsetDateTime,
    /// Cancelled when the subscriber starts shutting down. The handler's result still
    /// settles the message, so a handler may finish, or stop at a safe point and return a
    /// transient error (the message comes back later).
    pub shutdown: CancellationToken,
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

    #[test]
    fn result_ext_marks_errors() {
        let r: Result<(), &str> = Err("nope");
        assert!(r.permanent().unwrap_err().is_permanent());
        let r: Result<(), String> = Err("again".into());
        assert!(!r.transient().unwrap_err().is_permanent());
    }
}
