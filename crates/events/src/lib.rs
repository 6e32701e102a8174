//! CloudEvents over NATS JetStream. (Overview written as the crate fills in.)

pub mod metrics;
