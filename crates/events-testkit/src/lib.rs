//! Real `nats-server` processes for tests and benchmarks (being built up: finding the
//! binary comes first).

mod bin;

pub use bin::{NATS_SERVER_BIN_ENV, nats_server_bin};
