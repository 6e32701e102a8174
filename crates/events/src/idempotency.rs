//! Idempotency helper: remembers which events a consumer group has processed, so that a
//! redelivered event runs its side effect once (CONTRACT.md §3).
//!
//! ```no_run
//! use events::idempotency::{Idempotent, KvIdempotencyStore};
//! use events::subscriber::{HandlerError, handler_fn};
//!
//! # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
//! // Remember ids as long as the stream keeps the events (its max age).
//! let store = KvIdempotencyStore::for_stream(&js, "AUTH_EVENTS").await?;
//! let handler = Idempotent::new(store, handler_fn(|event, _ctx| async move {
//!     println!("sending the welcome mail for {}", event.id()); // runs once per event id
//!     Ok::<_, HandlerError>(())
//! }));
//! # let _ = handler; Ok(()) }
//! ```
//!
//! # The at-least-once window
//!
//! [`Idempotent`] checks the store before the handler and marks the id **after** the
//! handler succeeded. A side effect can still happen twice if the process dies (or the
//! store stays unreachable for longer than [`Idempotent::mark_retry_for`]) between the
//! handler's success and the mark, or if two deliveries of the same event run at once
//! (only when the ack wait ran out while the first was still running, which in-progress
//! acks prevent). Marking before the handler would instead lose the effect when the
//! handler fails, which is worse. Where an effect must never repeat, make it idempotent
//! itself (e.g. a unique key in the target database).
//!
//! # Stores
//!
//! [`IdempotencyStore`] is the seam: [`KvIdempotencyStore`] keeps marks in a JetStream
//! key-value bucket (one bucket, keys `<group>.<event id>`, entries expire with the
//! bucket's max age); a Redis store would implement the same two methods.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv;
use bytes::Bytes;
use tracing::{debug, warn};

use crate::Event;
use crate::error::BoxError;
use crate::subscriber::{DeliveryContext, Handler, HandlerError};

/// Default bucket of [`KvIdempotencyStore`].
pub const DEFAULT_BUCKET: &str = "EVENTS_IDEMPOTENCY";

/// A store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyError {
    /// The bucket could not be opened or created.
    #[error("cannot open idempotency bucket {bucket}")]
    Open {
        /// The bucket.
        bucket: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The stream whose max age sets the TTL could not be read.
    #[error("cannot read stream {stream} for its max age")]
    Stream {
        /// The stream.
        stream: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A read or write failed.
    #[error("idempotency store {operation} failed")]
    Store {
        /// `check` or `mark`.
        operation: &'static str,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

/// Remembers processed event ids per consumer group.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// True if `group` has already processed `event_id`.
    fn is_processed(
        &self,
        group: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<bool, IdempotencyError>> + Send;

    /// Records that `group` processed `event_id`. Must be safe to repeat.
    fn mark_processed(
        &self,
        group: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<(), IdempotencyError>> + Send;
}

impl<S: IdempotencyStore> IdempotencyStore for Arc<S> {
    fn is_processed(
        &self,
        group: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<bool, IdempotencyError>> + Send {
        (**self).is_processed(group, event_id)
    }

    fn mark_processed(
        &self,
        group: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<(), IdempotencyError>> + Send {
        (**self).mark_processed(group, event_id)
    }
}

/// Encodes any string into KV-key-safe characters, unambiguously: `[-_a-zA-Z0-9]` stay,
/// every other byte becomes `=XX` (upper-case hex), `=` included. UUIDs pass unchanged.
pub fn encode_key_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The KV key of (group, event id): `<encoded group>.<encoded id>`.
pub fn kv_key(group: &str, event_id: &str) -> String {
    format!("{}.{}", encode_key_part(group), encode_key_part(event_id))
}

/// [`IdempotencyStore`] in a JetStream key-value bucket.
#[derive(Debug, Clone)]
pub struct KvIdempotencyStore {
    kv: kv::Store,
    timeout: Duration,
}

impl KvIdempotencyStore {
    /// Opens `bucket`, creating it with entries expiring after `ttl` if it does not exist
    /// (an existing bucket keeps its own max age).
    ///
    /// # Errors
    /// [`IdempotencyError::Open`] if the bucket can neither be opened nor created.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        ttl: Duration,
    ) -> Result<Self, IdempotencyError> {
        let open_err = |source: BoxError| IdempotencyError::Open {
            bucket: bucket.to_owned(),
            source,
        };
        let kv = match js.get_key_value(bucket).await {
            Ok(kv) => kv,
            Err(_) => {
                let created = js
                    .create_key_value(kv::Config {
                        bucket: bucket.to_owned(),
                        description: "processed event ids per consumer group".to_owned(),
                        history: 1,
                        max_age: ttl,
                        storage: jetstream::stream::StorageType::File,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(kv) => kv,
                    // Another instance created it first.
                    Err(e) => js
                        .get_key_value(bucket)
                        .await
                        .map_err(|_| open_err(e.into()))?,
                }
            }
        };
        Ok(Self {
            kv,
            timeout: Duration::from_secs(5),
        })
    }

    /// Opens [`DEFAULT_BUCKET`] with the TTL set to `stream`'s max age (an event older than
    /// that is gone from the stream, so it cannot be redelivered); 7 days if the stream has
    /// no max age.
    ///
    /// # Errors
    /// [`IdempotencyError::Stream`] if the stream cannot be read, else as [`Self::open`].
    pub async fn for_stream(
        js: &jetstream::Context,
        stream: &str,
    ) -> Result<Self, IdempotencyError> {
        let stream_err = |source: BoxError| IdempotencyError::Stream {
            stream: stream.to_owned(),
            source,
        };
        let info = js
            .get_stream(stream)
            .await
            .map_err(|e| stream_err(e.into()))?
            .get_info()
            .await
            .map_err(|e| stream_err(e.into()))?;
        let ttl = if info.config.max_age.is_zero() {
            Duration::from_secs(7 * 24 * 3600)
        } else {
            info.config.max_age
        };
        Self::open(js, DEFAULT_BUCKET, ttl).await
    }

    /// Timeout of each store request (default 5 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The underlying bucket.
    pub fn bucket(&self) -> &kv::Store {
        &self.kv
    }
}

fn store_err(operation: &'static str) -> impl Fn(BoxError) -> IdempotencyError {
    move |source| IdempotencyError::Store { operation, source }
}

impl IdempotencyStore for KvIdempotencyStore {
    async fn is_processed(&self, group: &str, event_id: &str) -> Result<bool, IdempotencyError> {
        let key = kv_key(group, event_id);
        let entry = tokio::time::timeout(self.timeout, self.kv.get(key))
            .await
            .map_err(|e| store_err("check")(e.into()))?
            .map_err(|e| store_err("check")(e.into()))?;
        Ok(entry.is_some())
    }

    async fn mark_processed(&self, group: &str, event_id: &str) -> Result<(), IdempotencyError> {
        let key = kv_key(group, event_id);
        tokio::time::timeout(self.timeout, self.kv.put(key, Bytes::from_static(b"1")))
            .await
            .map_err(|e| store_err("mark")(e.into()))?
            .map_err(|e| store_err("mark")(e.into()))?;
        Ok(())
    }
}

/// A handler wrapper that skips events the group (the delivering durable consumer) has
/// already processed, and marks an event processed after the inner handler succeeded.
#[derive(Debug, Clone)]
pub struct Idempotent<S, H> {
    store: S,
    inner: H,
    mark_retry_for: Duration,
}

impl<S: IdempotencyStore, H: Handler> Idempotent<S, H> {
    /// Wraps `inner`.
    pub fn new(store: S, inner: H) -> Self {
        Self {
            store,
            inner,
            mark_retry_for: Duration::from_secs(30),
        }
    }

    /// How long a failed mark is retried (default 30 s) before giving up with a warning:
    /// the event is still acked (its effect happened), but a redelivery would run it again.
    #[must_use]
    pub fn mark_retry_for(mut self, d: Duration) -> Self {
        self.mark_retry_for = d;
        self
    }
}

impl<S: IdempotencyStore, H: Handler> Handler for Idempotent<S, H> {
    async fn handle(&self, event: Event, ctx: DeliveryContext) -> Result<(), HandlerError> {
        let group = ctx.consumer.clone();
        let id = event.id().to_owned();
        // Unknown state: retry later rather than risk running the effect twice.
        if self
            .store
            .is_processed(&group, &id)
            .await
            .map_err(HandlerError::transient)?
        {
            debug!(event_id = %id, "already processed; the handler is not run again");
            return Ok(());
        }
        self.inner.handle(event, ctx).await?;
        let deadline = tokio::time::Instant::now() + self.mark_retry_for;
        let mut delay = Duration::from_millis(50);
        loop {
            match self.store.mark_processed(&group, &id).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + delay < deadline => {
                    debug!(event_id = %id, error = %e, ?delay, "mark failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    warn!(event_id = %id, error = %e,
                        "handled but not marked processed; a redelivery would run it again");
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe_and_unambiguous() {
        let uuid = "0190f1c6-7a3e-7c4e-9a51-5d2f3c4b5a69";
        assert_eq!(encode_key_part(uuid), uuid);
        assert_eq!(encode_key_part("a.b c=d/é"), "a=2Eb=20c=3Dd=2F=C3=A9");
        assert_ne!(encode_key_part("a=2E"), encode_key_part("a."));
        let key = kv_key("catalog__auth_all", "id.with*wild>cards");
        assert!(
            key.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-/_=.".contains(c)),
            "{key}"
        );
        assert_eq!(key.matches('.').count(), 1);
    }
}
