//! Real `nats-server` processes for tests and benchmarks: one server or a cluster, each on
//! free loopback ports with its own temporary JetStream store, killed when dropped.
//!
//! This crate is for tests: every operation waits with a bound, and every failure
//! **panics** with a message that ends in the tail of the server's log. A missing
//! `nats-server` binary is a failure too, never a skipped test (see [`nats_server_bin`]).
//!
//! # Quick start
//!
//! ```no_run
//! use events_testkit::{NatsServer, unique_name};
//!
//! # async fn example() {
//! let nats = NatsServer::start().await; // free port, temp store, fsync always
//! let js = nats.jetstream().await;
//! let stream = unique_name("ORDERS");
//! js.create_stream(async_nats::jetstream::stream::Config {
//!     name: stream.clone(),
//!     subjects: vec![format!("{stream}.>")],
//!     ..Default::default()
//! })
//! .await
//! .unwrap();
//! js.publish(format!("{stream}.created"), "hi".into()).await.unwrap().await.unwrap();
//!
//! nats.log_tail(20); // the last 20 lines of the server's log, e.g. for a failing assert
//! # }
//! ```
//!
//! Crash and restart tests:
//!
//! ```no_run
//! # use events_testkit::NatsServer;
//! # async fn example() {
//! let mut nats = NatsServer::start().await;
//! nats.kill(); // SIGKILL: no chance to flush anything
//! // ... do things while the server is down ...
//! nats.start_again().await; // same port, same store; returns once streams are back
//! # }
//! ```
//!
//! A three-node JetStream cluster:
//!
//! ```no_run
//! # use events_testkit::NatsCluster;
//! # async fn example() {
//! let mut cluster = NatsCluster::start(3).await; // returns once an R3 stream can be created
//! let leader = cluster.stream_leader("ORDERS").await;
//! cluster.kill(leader);
//! cluster.restart(leader).await; // returns once the node is healthy again
//! # }
//! ```
//!
//! # Module map
//!
//! - [`NatsServer`], [`NatsServerBuilder`]: one server (`server.rs`); [`SyncMode`]: how
//!   its store fsyncs (`config.rs`).
//! - [`NatsCluster`], [`NatsClusterBuilder`]: n servers in a full route mesh (`cluster.rs`).
//! - [`nats_server_bin`]: where the binary comes from (`bin.rs`).
//! - [`publish_raw`], [`RawMessage`]: hostile frames over a plain socket (`raw.rs`).
//! - [`SecureNatsServer`], [`TestPki`]: TLS from a test CA and nkey users with
//!   permissions (`secure.rs`).
//! - [`PgServer`], [`pg_bin_dir`]: a PostgreSQL server from `initdb` in a temp dir (`pg.rs`).
//! - [`Chromedriver`]: a headless chromium for console tests (`browser.rs`).
//! - [`PrometheusServer`]: a real Prometheus scraping test targets (`prometheus.rs`).
//! - [`Checker`], [`read_stream`]: the loss checker of the fault matrix (`checker.rs`).
//! - [`NatsServer::pause`], [`NatsServer::resume`], [`NatsServer::lame_duck`],
//!   [`FAST_LAME_DUCK`]: faults by signal (`signals.rs`).
//! - [`TcpProxy`]: cut or stall a client's connection (`proxy.rs`).
//! - [`unique_name`]: collision-free stream/consumer names for fixtures (`names.rs`).
//! - private: free ports (`ports.rs`), a tiny HTTP/1.0 client for the monitoring port
//!   (`http.rs`), config rendering (`config.rs`).

mod bin;
mod browser;
mod checker;
mod cluster;
mod config;
mod http;
mod names;
mod pg;
mod ports;
mod prometheus;
mod proxy;
mod raw;
mod secure;
mod server;
mod signals;
mod wait;

pub use bin::{NATS_SERVER_BIN_ENV, nats_server_bin};
pub use browser::{CHROMEDRIVER_BIN_ENV, CHROMIUM_BIN_ENV, Chromedriver};
pub use checker::{Checker, Report, StoredMessage, read_stream};
pub use cluster::{NatsCluster, NatsClusterBuilder};
pub use config::SyncMode;
pub use names::unique_name;
pub use pg::{PG_BIN_DIR_ENV, PgServer, pg_bin_dir};
pub use ports::free_loopback_addr;
pub use prometheus::{PROMETHEUS_BIN_ENV, PrometheusServer};
pub use proxy::TcpProxy;
pub use raw::{RawMessage, publish_raw};
pub use secure::{SecureNatsServer, SecureNatsServerBuilder, TestPki};
pub use server::{NatsServer, NatsServerBuilder};
pub use signals::FAST_LAME_DUCK;
pub use wait::{create_stream_when_ready, wait_for_stream_messages};
