//! NAK delays: exponential per delivery, capped, with jitter.

use std::time::Duration;

use super::config::RetryPolicy;

/// The NAK delay after delivery number `delivered` (1-based) failed, before jitter:
/// `initial_backoff × 2^(delivered − 1)`, at most `max_backoff`.
pub fn backoff(delivered: u64, policy: &RetryPolicy) -> Duration {
    let exp = delivered.saturating_sub(1).min(63) as u32;
    let factor = 1u64.checked_shl(exp).unwrap_or(u64::MAX);
    let factor = u32::try_from(factor).unwrap_or(u32::MAX);
    policy
        .initial_backoff
        .checked_mul(factor)
        .unwrap_or(policy.max_backoff)
        .min(policy.max_backoff)
}

/// Shortens `delay` by a random fraction of at most `jitter` (`unit` is a random number in
/// `[0, 1)`); the result is never above `delay`, so the cap holds.
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

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    #[test]
    fn doubles_per_delivery_then_caps() {
        let p = policy();
        let secs: Vec<u64> = (1..=9).map(|d| backoff(d, &p).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u64::MAX, &p), p.max_backoff);
        assert_eq!(backoff(0, &p), p.initial_backoff);
    }

    #[test]
    fn jitter_only_shortens() {
        let d = Duration::from_secs(10);
        assert_eq!(apply_jitter(d, 0.2, 0.0), d);
        assert_eq!(apply_jitter(d, 0.0, 0.9), d);
        assert_eq!(apply_jitter(d, 0.2, 0.5), Duration::from_secs(9));
    }

    proptest! {
        #[test]
        fn never_decreases_and_never_exceeds_max(
            init_ms in 1u64..10_000, extra_ms in 0u64..1_000_000, d in 1u64..200,
        ) {
            let p = RetryPolicy {
                initial_backoff: Duration::from_millis(init_ms),
                max_backoff: Duration::from_millis(init_ms + extra_ms),
                ..RetryPolicy::default()
            };
            let a = backoff(d, &p);
            let b = backoff(d + 1, &p);
            prop_assert!(a <= b);
            prop_assert!(b <= p.max_backoff);
            let j = jittered(b, p.jitter);
            prop_assert!(j <= b);
            prop_assert!(j >= b.mul_f64(1.0 - p.jitter) - Duration::from_nanos(1));
        }
    }
}
