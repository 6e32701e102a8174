//! [`RecordingPublisher`]: an in-memory [`EventPublisher`] for unit tests of services.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;

use super::wire::prepare;
use super::{EventPublisher, PublishAck, PublishError, PublishOutcome, TransientError};
use crate::event::Event;

/// The server's default `max_payload` (1 MiB), the limit a [`RecordingPublisher`] applies
/// unless told otherwise.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// Records published events in memory instead of sending them. It applies the same checks
/// as [`Publisher`](super::Publisher) (subject, encoded size against `max_payload`), reports
/// a second event with an already-seen id as a duplicate (stored once, like a stream), and
/// can be told to fail the next publishes with [`PublishError::Unavailable`] (nothing
/// stored) or [`PublishError::Unconfirmed`] (stored, but not confirmed: what a buffered
/// write during an outage does).
///
/// ```
/// use events::Event;
/// use events::publisher::{EventPublisher, RecordingPublisher};
/// # futures::executor::block_on(async {
/// let recorder = RecordingPublisher::new();
/// let ev = Event::builder("auth.user.created")
///     .source("auth-service")
///     .organization("org-1")
///     .data(&serde_json::json!({"user": "u1"}))
///     .build()
///     .unwrap();
/// recorder.publish(&ev).await.unwrap();
/// assert_eq!(recorder.events_of_type("auth.user.created").len(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct RecordingPublisher {
    max_payload: usize,
    /// Applied as [`PublisherConfig::schemas`](super::PublisherConfig::schemas) is.
    #[cfg(feature = "schema")]
    schemas: Option<std::sync::Arc<crate::schema::SchemaSet>>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    events: Vec<Event>,
    ids: HashSet<String>,
    sequences: HashMap<String, u64>,
    fail_next: u32,
    unconfirm_next: u32,
}

impl Default for RecordingPublisher {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingPublisher {
    /// A recorder with the server's default 1 MiB `max_payload`.
    pub fn new() -> Self {
        Self::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }

    /// A recorder applying another `max_payload` (match your server's setting).
    pub fn with_max_payload(max_payload: usize) -> Self {
        Self {
            max_payload,
            #[cfg(feature = "schema")]
            schemas: None,
            state: Mutex::new(State::default()),
        }
    }

    /// Validates and stamps every event with `schemas` first, as a [`Publisher`](super::Publisher)
    /// with [`PublisherConfig::schemas`](super::PublisherConfig::schemas) does: an invalid
    /// event is refused with [`PublishError::Schema`] and not recorded; a recorded event
    /// carries the `dataschema` the publisher would have sent.
    #[cfg(feature = "schema")]
    pub fn with_schemas(
        mut self,
        schemas: impl Into<std::sync::Arc<crate::schema::SchemaSet>>,
    ) -> Self {
        self.schemas = Some(schemas.into());
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` publishes fail with [`PublishError::Unavailable`] (nothing recorded).
    pub fn fail_next(&self, n: u32) {
        self.state().fail_next = n;
    }

    /// The next `n` publishes store their event (as a write buffered during an outage is
    /// stored once NATS returns) but fail with [`PublishError::Unconfirmed`].
    pub fn unconfirm_next(&self, n: u32) {
        self.state().unconfirm_next = n;
    }

    /// Every event stored so far (duplicates once), in publish order.
    pub fn events(&self) -> Vec<Event> {
        self.state().events.clone()
    }

    /// The stored events of one type (subject).
    pub fn events_of_type(&self, event_type: &str) -> Vec<Event> {
        self.state()
            .events
            .iter()
            .filter(|e| e.event_type().as_str() == event_type)
            .cloned()
            .collect()
    }

    /// Number of stored events.
    pub fn len(&self) -> usize {
        self.state().events.len()
    }

    /// True if nothing was stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything recorded (and any pending failures).
    pub fn clear(&self) {
        *self.state() = State::default();
    }

    /// Publishes synchronously (the trait method wraps this).
    ///
    /// # Errors
    /// As [`Publisher::publish`](super::Publisher::publish) for invalid input (including
    /// `PublishError::Schema` with a schema set), and
    /// [`PublishError::Unavailable`] while failures were requested with
    /// [`RecordingPublisher::fail_next`].
    pub fn record(&self, event: &Event) -> Result<PublishOutcome, PublishError> {
        #[cfg(feature = "schema")]
        if let Some(schemas) = &self.schemas {
            return self.store(super::contract::apply(schemas, event)?.as_ref());
        }
        self.store(event)
    }

    fn store(&self, event: &Event) -> Result<PublishOutcome, PublishError> {
        prepare(event, self.max_payload)?;
        let mut st = self.state();
        if st.fail_next > 0 {
            st.fail_next -= 1;
            return Err(PublishError::Unavailable {
                attempts: 1,
                elapsed: Duration::ZERO,
                last: TransientError::ConnectionLost,
            });
        }
        let stream = event.event_type().stream_name().as_str().to_owned();
        if st.ids.contains(event.id()) {
            let seq = st
                .events
                .iter()
                .position(|e| e.id() == event.id())
                .unwrap_or(0) as u64
                + 1;
            return Ok(PublishOutcome::Stored(PublishAck::new(stream, seq, true)));
        }
        let seq = st.sequences.entry(stream.clone()).or_insert(0);
        *seq += 1;
        let seq = *seq;
        st.ids.insert(event.id().to_owned());
        st.events.push(event.clone());
        if st.unconfirm_next > 0 {
            st.unconfirm_next -= 1;
            return Err(PublishError::Unconfirmed {
                attempts: 1,
                elapsed: Duration::ZERO,
                last: TransientError::AckTimeout(Duration::ZERO),
            });
        }
        Ok(PublishOutcome::Stored(PublishAck::new(stream, seq, false)))
    }
}

impl EventPublisher for RecordingPublisher {
    fn publish<'a>(
        &'a self,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<PublishOutcome, PublishError>> {
        let res = self.record(event);
        Box::pin(async move { res })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: serde_json::Value) -> Event {
        Event::builder("auth.user.created")
            .source("auth-service")
            .organization("org-1")
            .data_json(data)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn records_dedups_and_fails_on_request() {
        let rec = RecordingPublisher::new();
        let dynp: &dyn EventPublisher = &rec;
        let ev = event(serde_json::json!({"n": 1}));
        let first = dynp.publish(&ev).await.unwrap();
        assert!(!first.ack().unwrap().duplicate);
        assert_eq!(first.ack().unwrap().stream, "AUTH_EVENTS");
        let again = dynp.publish(&ev).await.unwrap();
        assert!(again.ack().unwrap().duplicate);
        assert_eq!(rec.len(), 1);

        rec.fail_next(2);
        let ev2 = event(serde_json::json!({"n": 2}));
        assert!(matches!(
            dynp.publish(&ev2).await,
            Err(PublishError::Unavailable { .. })
        ));
        assert!(dynp.publish(&ev2).await.is_err());
        assert_eq!(dynp.publish(&ev2).await.unwrap().ack().unwrap().sequence, 2);
        assert_eq!(rec.events().len(), 2);
    }

    #[tokio::test]
    async fn applies_the_payload_limit() {
        let rec = RecordingPublisher::with_max_payload(1024);
        let big = event(serde_json::json!({"blob": "x".repeat(2000)}));
        assert!(matches!(
            rec.publish(&big).await,
            Err(PublishError::PayloadTooLarge { limit: 1024, .. })
        ));
        assert!(rec.is_empty());
    }

    #[cfg(feature = "schema")]
    #[test]
    fn with_schemas_refuses_invalid_data_and_records_the_data_schema() {
        use crate::schema::fixtures::{ada, created, repo_schemas};
        let rec = RecordingPublisher::new().with_schemas(repo_schemas());
        rec.record(&created(ada())).unwrap();
        let mut user = ada();
        user.as_object_mut().unwrap().remove("email");
        let err = rec.record(&created(user)).unwrap_err();
        assert!(matches!(err, PublishError::Schema { .. }), "{err:?}");
        let recorded = rec.events();
        assert_eq!(recorded.len(), 1, "the invalid event is not recorded");
        assert_eq!(
            recorded[0].data_schema(),
            Some("urn:events:schema:auth.user.created:1.0")
        );
    }
}
