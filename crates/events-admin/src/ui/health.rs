//! Consumer health in the manner of Burrow: a verdict from a window of lag samples, not
//! from one reading; and each stream's rate over the last minute.
//!
//! Rules, checked in this order (documented in docs/CONSOLE.md):
//! - **STOP**: messages are pending, no pull request is waiting and nothing was delivered
//!   for [`STOP_AFTER`]: no instance is consuming.
//! - **OK**: the lag is 0 now.
//! - **STALL**: the window spans at least [`STALL_AFTER`], the lag was above 0 in every
//!   sample and did not shrink, and the ack floor did not move: acks have stopped.
//! - **WARN**: at least three samples and the lag grew from each to the next (never fell):
//!   the consumer is falling behind.
//! - **OK** otherwise.
//!
//! Samples are taken when the overview is rendered (it refreshes itself every few seconds
//! while open) and kept for [`WINDOW`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How far back samples are kept.
pub(crate) const WINDOW: Duration = Duration::from_secs(300);
/// Most samples kept per consumer or stream.
const MAX_SAMPLES: usize = 60;
/// No delivery for this long with messages pending and no waiting pull: STOP.
pub(crate) const STOP_AFTER: Duration = Duration::from_secs(60);
/// Shortest window that can call a consumer STALL.
pub(crate) const STALL_AFTER: Duration = Duration::from_secs(30);
/// Span over which a stream's rate is measured.
const RATE_SPAN: Duration = Duration::from_secs(60);

/// A consumer's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    Warn,
    Stall,
    Stop,
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Stall => "STALL",
            Self::Stop => "STOP",
        }
    }
}

/// One reading of a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    /// Pending plus ack-pending.
    pub(crate) lag: u64,
    /// Stream sequence below which everything is acked.
    pub(crate) ack_floor: u64,
}

/// What the last reading says beyond the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// Pull requests waiting on the server.
    pub(crate) waiting: u64,
    /// Time since the last delivery (`None`: never delivered).
    pub(crate) since_delivery: Option<Duration>,
}

/// The verdict for `samples` (oldest first, the current reading last).
pub(crate) fn verdict(samples: &[Sample], now: Now) -> Verdict {
    let Some(last) = samples.last() else {
        return Verdict::Ok;
    };
    if last.lag > 0 && now.waiting == 0 && now.since_delivery.is_none_or(|d| d >= STOP_AFTER) {
        return Verdict::Stop;
    }
    if last.lag == 0 {
        return Verdict::Ok;
    }
    let first = samples[0];
    let span = last.at.saturating_duration_since(first.at);
    if span >= STALL_AFTER
        && samples
            .iter()
            .all(|s| s.lag > 0 && s.ack_floor == first.ack_floor)
        && last.lag >= first.lag
    {
        return Verdict::Stall;
    }
    if samples.len() >= 3
        && samples.windows(2).all(|w| w[1].lag >= w[0].lag)
        && last.lag > first.lag
    {
        return Verdict::Warn;
    }
    Verdict::Ok
}

/// Samples per consumer (`stream/consumer`) and per stream (last sequence), bounded.
#[derive(Debug, Default)]
pub(crate) struct History {
    consumers: HashMap<String, VecDeque<Sample>>,
    streams: HashMap<String, VecDeque<(Instant, u64)>>,
}

fn push<T: Copy>(q: &mut VecDeque<T>, item: T, at: impl Fn(&T) -> Instant, now: Instant) {
    q.push_back(item);
    while q.len() > MAX_SAMPLES
        || q.front()
            .is_some_and(|s| now.saturating_duration_since(at(s)) > WINDOW)
    {
        q.pop_front();
    }
}

impl History {
    /// Records a consumer reading; returns the window, oldest first.
    pub(crate) fn record_consumer(&mut self, key: &str, sample: Sample) -> Vec<Sample> {
        let q = self.consumers.entry(key.to_owned()).or_default();
        push(q, sample, |s| s.at, sample.at);
        q.iter().copied().collect()
    }

    /// Records a stream's last sequence; returns messages per second over the last minute
    /// (`None` until two readings at least a second apart).
    pub(crate) fn record_stream(
        &mut self,
        stream: &str,
        at: Instant,
        last_seq: u64,
    ) -> Option<f64> {
        let q = self.streams.entry(stream.to_owned()).or_default();
        push(q, (at, last_seq), |s| s.0, at);
        let first = q
            .iter()
            .find(|(t, _)| at.saturating_duration_since(*t) <= RATE_SPAN)?;
        let span = at.saturating_duration_since(first.0).as_secs_f64();
        (span >= 1.0).then(|| last_seq.saturating_sub(first.1) as f64 / span)
    }

    /// Forgets consumers and streams not read for a whole window.
    pub(crate) fn prune(&mut self, now: Instant) {
        let stale = |t: Instant| now.saturating_duration_since(t) > WINDOW;
        self.consumers
            .retain(|_, q| q.back().is_some_and(|s| !stale(s.at)));
        self.streams
            .retain(|_, q| q.back().is_some_and(|s| !stale(s.0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(t0: Instant, step: Duration, lags: &[(u64, u64)]) -> Vec<Sample> {
        lags.iter()
            .enumerate()
            .map(|(i, &(lag, ack_floor))| Sample {
                at: t0 + step * i as u32,
                lag,
                ack_floor,
            })
            .collect()
    }

    const PULLING: Now = Now {
        waiting: 1,
        since_delivery: Some(Duration::from_secs(1)),
    };

    #[test]
    fn verdicts_follow_the_rules() {
        let t0 = Instant::now();
        let s = Duration::from_secs(10);
        assert_eq!(
            verdict(&series(t0, s, &[(5, 1), (0, 6)]), PULLING),
            Verdict::Ok
        );
        assert_eq!(
            verdict(&series(t0, s, &[(5, 1), (3, 3), (1, 5)]), PULLING),
            Verdict::Ok
        );
        assert_eq!(
            verdict(&series(t0, s, &[(1, 1), (2, 2), (4, 3)]), PULLING),
            Verdict::Warn
        );
        assert_eq!(
            verdict(&series(t0, s, &[(4, 7), (4, 7), (5, 7), (6, 7)]), PULLING),
            Verdict::Stall
        );
        // The same readings over a shorter span are not yet a stall, but growth: WARN.
        let short = Duration::from_secs(1);
        assert_eq!(
            verdict(
                &series(t0, short, &[(4, 7), (4, 7), (5, 7), (6, 7)]),
                PULLING
            ),
            Verdict::Warn
        );
        let idle = Now {
            waiting: 0,
            since_delivery: Some(STOP_AFTER),
        };
        assert_eq!(verdict(&series(t0, s, &[(3, 1)]), idle), Verdict::Stop);
        assert_eq!(verdict(&series(t0, s, &[(0, 1)]), idle), Verdict::Ok);
        assert_eq!(verdict(&[], idle), Verdict::Ok);
    }

    #[test]
    fn history_is_bounded_and_gives_a_rate() {
        let mut h = History::default();
        let t0 = Instant::now();
        assert_eq!(h.record_stream("S", t0, 100), None);
        let rate = h.record_stream("S", t0 + Duration::from_secs(10), 150);
        assert_eq!(rate, Some(5.0));
        for i in 0..(MAX_SAMPLES as u32 + 5) {
            let n = h.record_consumer(
                "S/c",
                Sample {
                    at: t0 + Duration::from_millis(i.into()),
                    lag: 1,
                    ack_floor: 1,
                },
            );
            assert!(n.len() <= MAX_SAMPLES);
        }
        h.prune(t0 + WINDOW * 2);
        assert!(h.consumers.is_empty() && h.streams.is_empty());
    }
}
