//! Integration tests of the `events` crate against real nats-server processes
//! (one test binary, modules per area).

mod connection;
mod dashboard;
mod dlq;
mod publisher;
mod replay;
#[cfg(feature = "schema")]
mod schema;
mod subscriber;
mod topology;
