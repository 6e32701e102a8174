//! The crate's one backoff: exponential, capped, and one jitter rule. Publish retries
//! ([`crate::publisher::PublishRetryPolicy`]), NAK delays
//! ([`crate::subscriber::backoff`]), the pull loop's re-establishing and the client's
//! reconnects ([`crate::connection::ReconnectPolicy`]) all wait through it.
//!
//! The jitter rule: a delay is only ever **shortened**, by a random fraction of at most
//! `jitter`, so that instances that failed together do not retry together and a cap still
//! holds with jitter.

use std::time::Duration;

/// An exponential backoff: `initial × multiplier^n` before step `n` (0 = the first), at most
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    /// At least 1 (a smaller value counts as 1).
    pub(crate) multiplier: f64,
}

impl Backoff {
    /// Doubling from `initial` up to `max`.
    pub(crate) const fn doubling(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            multiplier: 2.0,
        }
    }

    /// The wait before step `n` (0 = the first), before jitter. Exact in whole nanoseconds
    /// when the factor is a whole number (doubling), never above `max`, never panics.
    pub(crate) fn delay(&self, n: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(n.min(1_000) as i32);
        if factor.fract() == 0.0 && factor <= f64::from(u32::MAX) {
            let exact = self.initial.checked_mul(factor as u32);
            return exact.unwrap_or(self.max).min(self.max);
        }
        let secs = self.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            return self.max;
        }
        Duration::from_secs_f64(secs).min(self.max)
    }

    /// [`Backoff::delay`] shortened by the jitter rule.
    pub(crate) fn jittered(&self, n: u32, jitter: f64) -> Duration {
        jittered(self.delay(n), jitter)
    }
}

/// The jitter rule: `delay` shortened by the fraction `jitter × unit` (`unit` a random pick
/// in `[0, 1)`, both clamped to `[0, 1]`); never above `delay`.
pub(crate) fn apply_jitter(delay: Duration, jitter: f64, unit: f64) -> Duration {
    let cut = (jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0)).min(1.0);
    delay.mul_f64(1.0 - cut)
}

/// [`apply_jitter`] with a random `unit` from the thread RNG.
pub(crate) fn jittered(delay: Duration, jitter: f64) -> Duration {
    apply_jitter(delay, jitter, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubling_is_exact_and_capped() {
        let b = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(5));
        let ms: Vec<u128> = (0..8).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.delay(u32::MAX), b.max);
    }

    #[test]
    fn jitter_only_shortens() {
        let d = Duration::from_secs(10);
        assert_eq!(apply_jitter(d, 0.2, 0.0), d);
        assert_eq!(apply_jitter(d, 0.0, 0.9), d);
        assert_eq!(apply_jitter(d, 0.2, 0.5), Duration::from_secs(9));
        assert_eq!(apply_jitter(d, 0.2, 1.0), Duration::from_secs(8));
    }

    proptest! {
        #[test]
        fn never_decreases_never_exceeds_max(
            init_ms in 1u64..10_000, extra_ms in 0u64..1_000_000,
            mult in 1.0f64..4.0, n in 0u32..200, jitter in 0.0f64..1.0,
        ) {
            let b = Backoff {
                initial: Duration::from_millis(init_ms),
                max: Duration::from_millis(init_ms + extra_ms),
                multiplier: mult,
            };
            prop_assert!(b.delay(n) <= b.delay(n + 1));
            prop_assert!(b.delay(n + 1) <= b.max);
            let j = b.jittered(n, jitter);
            prop_assert!(j <= b.delay(n));
            prop_assert!(j >= b.delay(n).mul_f64(1.0 - jitter) - Duration::from_nanos(1));
        }
    }
}
