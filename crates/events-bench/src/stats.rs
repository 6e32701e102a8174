//! Statistics over repetitions (median, min, max) and latency percentiles.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Summary of one figure over its repetitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Median of the repetitions (the figure compared between library and raw).
    pub median: f64,
    /// Smallest repetition.
    pub min: f64,
    /// Largest repetition.
    pub max: f64,
    /// Every repetition in run order, so that the noise can be judged.
    pub samples: Vec<f64>,
}

impl Stats {
    /// Summarises `samples`; `None` when there is none (or one is not finite).
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() || samples.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if !n.is_multiple_of(2) {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            samples: samples.to_vec(),
        })
    }

    /// Spread of the repetitions relative to the median: `(max - min) / median`.
    pub fn spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median
        }
    }
}

/// Events per second for `n` events over `elapsed`.
pub fn rate(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 { 0.0 } else { n as f64 / secs }
}

/// Latency percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest observed.
    pub max_ms: f64,
    /// Number of samples recorded.
    pub count: u64,
}

/// An HDR histogram of latencies in microseconds, from 1 µs to 10 minutes with 3
/// significant digits (0.1 % resolution), so that percentiles are exact to that precision
/// whatever the distribution.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    hist: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        // Invariant: bounds 1..=600e6 with 3 significant figures are valid for HdrHistogram
        // (low >= 1, high >= 2 * low, sigfig <= 5), so `new_with_bounds` cannot fail.
        #[allow(clippy::expect_used)]
        let hist = Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
        Self { hist }
    }

    /// Records one latency (saturated into the histogram's range).
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(us.max(1));
    }

    /// Number of latencies recorded.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Percentiles in milliseconds.
    pub fn summary(&self) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p95_ms: ms(self.hist.value_at_quantile(0.95)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            max_ms: ms(self.hist.max()),
            count: self.hist.len(),
        }
    }
}

/// The longest pause between consecutive events of one kind (stored acks, handled
/// deliveries): what a server restart costs a steady flow. Safe to share between tasks.
#[derive(Debug, Default)]
pub struct GapMeter {
    inner: std::sync::Mutex<(Option<std::time::Instant>, Duration)>,
}

impl GapMeter {
    /// Records one event now.
    pub fn mark(&self) {
        let now = std::time::Instant::now();
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(last) = g.0 {
            g.1 = g.1.max(now.saturating_duration_since(last));
        }
        g.0 = Some(now);
    }

    /// The longest gap between two consecutive events so far (zero with fewer than two).
    pub fn longest(&self) -> Duration {
        match self.inner.lock() {
            Ok(g) => g.1,
            Err(p) => p.into_inner().1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.samples, vec![3.0, 1.0, 2.0]);
        let s = Stats::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Stats::of(&[]).is_none());
        assert!(Stats::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn percentiles_follow_the_distribution() {
        let mut r = LatencyRecorder::new();
        for ms in 1..=100u64 {
            r.record(Duration::from_millis(ms));
        }
        let l = r.summary();
        assert_eq!(l.count, 100);
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p95_ms - 95.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
    }

    #[test]
    fn gap_meter_keeps_the_longest_pause() {
        let g = GapMeter::default();
        assert_eq!(g.longest(), Duration::ZERO);
        g.mark();
        let pause = Duration::from_millis(30);
        std::thread::sleep(pause);
        g.mark();
        g.mark();
        assert!(g.longest() >= pause, "{:?}", g.longest());
    }

    #[test]
    fn rate_handles_zero_time() {
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(rate(10, Duration::from_millis(500)), 20.0);
    }
}
