//! CloudEvents over NATS JetStream. (Overview written as the crate fills in.)

pub mod event;
pub mod metrics;
pub mod names;

pub use event::{DecodeError, EncodedEvent, Event, EventBuilder, EventError};
pub use names::{
    ConsumerName, EventType, NameError, OrganizationId, StreamName, Subject, SubjectFilter,
};
