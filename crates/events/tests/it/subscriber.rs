//! Integration tests: subscriber (durable groups, outcomes, dead letters, drain, resilience,
//! idempotency), each against its own nats-server.

mod groups;
mod lifecycle;
mod outcomes;
mod resilience;
pub(crate) mod support;
