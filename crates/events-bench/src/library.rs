//! The same work as [`crate::raw`] through the `events` library.
//!
//! The publisher and the subscriber are not on main yet: until they land every function
//! returns `Ok(None)` and the report shows the raw baselines alone.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::Event;
use indicatif::ProgressBar;

use crate::SideResult;
use crate::env::{BenchStream, Env, EventFactory};
use crate::stats::LatencyRecorder;

/// Settings of one library consume run.
// Read once the subscriber lands on main.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsumeSpec {
    pub(crate) instances: usize,
    pub(crate) max_in_flight: u32,
    pub(crate) limit: Duration,
    /// Take the id from `data.seq` (else from the stream sequence).
    pub(crate) id_from_body: bool,
}

/// `Publisher::publish`, one event at a time.
pub(crate) async fn confirmed(
    _env: &Env,
    _events: &[Event],
    _pb: &ProgressBar,
) -> anyhow::Result<Option<SideResult>> {
    Ok(None)
}

/// `Publisher::publish_async` with `window` in flight.
pub(crate) async fn windowed(
    _env: &Env,
    _events: &[Event],
    _window: usize,
    _batch: bool,
    _pb: &ProgressBar,
) -> anyhow::Result<Option<SideResult>> {
    Ok(None)
}

/// `Subscriber::run` with `instances` instances of one group.
pub(crate) async fn consume(
    _env: &Env,
    _stream: &BenchStream,
    _n: u64,
    _spec: ConsumeSpec,
    _latency: Option<(Instant, Arc<Mutex<LatencyRecorder>>)>,
    _pb: &ProgressBar,
) -> anyhow::Result<Option<SideResult>> {
    Ok(None)
}

/// Paced `Publisher::publish_async`; returns the number of failed publishes.
pub(crate) async fn paced_publish(
    _env: &Env,
    _factory: &EventFactory,
    _epoch: Instant,
    _start: Instant,
    _rate: u64,
    _total: u64,
    _batch: bool,
) -> anyhow::Result<Option<u64>> {
    Ok(None)
}
