//! CloudEvents over NATS JetStream. (Overview written as the crate fills in.)

pub mod connection;
pub mod dlq;
pub mod event;
pub mod idempotency;
pub mod metrics;
pub mod names;
pub mod publisher;
pub mod replay;
pub mod subscriber;
pub mod topology;

pub use event::{DecodeError, EncodedEvent, Event, EventBuilder, EventError};
pub use names::{
    ConsumerName, EventType, NameError, OrganizationId, StreamName, Subject, SubjectFilter,
};
