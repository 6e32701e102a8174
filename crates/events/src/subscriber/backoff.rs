//! NAK delays: doubling per delivery, capped (jitter: [`crate::backoff`]'s one rule).

use std::time::Duration;

use super::config::DeliveryRetryPolicy;
use crate::backoff::Backoff;

/// The NAK delay after delivery number `delivered` (1-based) failed, before jitter:
/// `initial_backoff × 2^(delivered − 1)`, at most `max_backoff` (the crate's one backoff).
pub fn backoff(delivered: u64, policy: &DeliveryRetryPolicy) -> Duration {
    let n = u32::try_from(delivered.saturating_sub(1)).unwrap_or(u32::MAX);
    Backoff::doubling(policy.initial_backoff, policy.max_backoff).delay(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::jittered;
    use proptest::prelude::*;

    fn policy() -> DeliveryRetryPolicy {
        DeliveryRetryPolicy::default()
    }

    #[test]
    fn doubles_per_delivery_then_caps() {
        let p = policy();
        let secs: Vec<u64> = (1..=9).map(|d| backoff(d, &p).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u64::MAX, &p), p.max_backoff);
        assert_eq!(backoff(0, &p), p.initial_backoff);
    }

    proptest! {
        #[test]
        fn never_decreases_and_never_exceeds_max(
            init_ms in 1u64..10_000, extra_ms in 0u64..1_000_000, d in 1u64..200,
        ) {
            let p = DeliveryRetryPolicy {
                initial_backoff: Duration::from_millis(init_ms),
                max_backoff: Duration::from_millis(init_ms + extra_ms),
                ..DeliveryRetryPolicy::default()
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
