//! One module per scenario: each runs the library and the raw side alternately and adds
//! its figures and checks.

use std::sync::Mutex;

use crate::stats::{Latency, LatencyRecorder};

mod consume;
mod drain;
mod e2e;
mod load;
mod paced;
mod publish;
mod restart;

pub(crate) use consume::consume;
pub(crate) use drain::drain;
pub(crate) use e2e::e2e;
pub(crate) use load::load;
pub(crate) use publish::{Windowed, publish_confirmed, publish_windowed};
pub(crate) use restart::restart;

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A lock's summary, even if a holder panicked.
pub(crate) fn lock_summary(rec: &Mutex<LatencyRecorder>) -> Latency {
    match rec.lock() {
        Ok(r) => r.summary(),
        Err(p) => p.into_inner().summary(),
    }
}
