//! Integration tests of the `events` crate against real nats-server processes
//! (one test binary, modules per area).

mod api_scenarios;
mod binary_dlq;
mod connection;
#[cfg(feature = "schema")]
mod contracts;
mod dashboard;
mod dlq;
mod faults;
mod hostile;
#[cfg(feature = "outbox")]
mod outbox;
mod publisher;
mod replay;
#[cfg(feature = "schema")]
mod schema;
mod security;
mod security_denials;
mod subscriber;
mod topology;
