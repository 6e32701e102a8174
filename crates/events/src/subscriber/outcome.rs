//! The pure decision "what happens to this delivery" (CONTRACT.md §3), tested without NATS.

use std::time::Duration;

use super::backoff::backoff;
use super::config::DeliveryRetryPolicy;
use super::handler::HandlerError;
use crate::DecodeError;
use crate::dlq::DeadLetterReason;

/// What to do with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: ack it (and wait for the server to confirm).
    Ack,
    /// Try again after this delay (before jitter): `AckKind::Nak(Some(delay))`.
    Nak(Duration),
    /// Write a dead letter with this reason, then terminate the original.
    DeadLetter(DeadLetterReason),
}

/// Decides before the handler runs: `Some` if the handler must not run.
///
/// - a delivery beyond `max_attempts` (the previous holder died during the last attempt,
///   or its ack wait ran out) is dead-lettered with `max_deliveries`, without running the
///   handler again;
/// - an undecodable or invalid message is dead-lettered on its first delivery.
pub fn decide_before(
    decoded: Result<(), &DecodeError>,
    delivered: u64,
    policy: &DeliveryRetryPolicy,
) -> Option<Outcome> {
    if delivered > u64::from(policy.max_attempts) {
        return Some(Outcome::DeadLetter(DeadLetterReason::MaxDeliveries));
    }
    match decoded {
        Ok(()) => None,
        Err(DecodeError::Invalid(_)) => Some(Outcome::DeadLetter(DeadLetterReason::Invalid)),
        // Undecodable, and any kind added later: no retry can decode it.
        Err(_) => Some(Outcome::DeadLetter(DeadLetterReason::Undecodable)),
    }
}

/// Decides after the handler ran (a panic counts as a transient error).
pub fn decide(
    result: &Result<(), HandlerError>,
    delivered: u64,
    policy: &DeliveryRetryPolicy,
) -> Outcome {
    match result {
        Ok(()) => Outcome::Ack,
        Err(HandlerError::Permanent(_)) => Outcome::DeadLetter(DeadLetterReason::Permanent),
        Err(_) if delivered >= u64::from(policy.max_attempts) => {
            Outcome::DeadLetter(DeadLetterReason::MaxDeliveries)
        }
        Err(_) => Outcome::Nak(backoff(delivered, policy)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> DeliveryRetryPolicy {
        DeliveryRetryPolicy::default()
    }

    fn transient() -> Result<(), HandlerError> {
        Err(HandlerError::transient("boom"))
    }

    #[test]
    fn success_acks_on_any_allowed_delivery() {
        for d in 1..=5 {
            assert_eq!(decide(&Ok(()), d, &p()), Outcome::Ack);
        }
    }

    #[test]
    fn transient_naks_with_growing_delay() {
        let delays: Vec<_> = (1..=4)
            .map(|d| match decide(&transient(), d, &p()) {
                Outcome::Nak(delay) => delay.as_secs(),
                other => panic!("delivery {d}: {other:?}"),
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 8]);
    }

    #[test]
    fn transient_on_last_allowed_delivery_dead_letters() {
        assert_eq!(
            decide(&transient(), 5, &p()),
            Outcome::DeadLetter(DeadLetterReason::MaxDeliveries)
        );
        let one = DeliveryRetryPolicy {
            max_attempts: 1,
            ..p()
        };
        assert_eq!(
            decide(&transient(), 1, &one),
            Outcome::DeadLetter(DeadLetterReason::MaxDeliveries)
        );
    }

    #[test]
    fn permanent_dead_letters_at_once() {
        let r = Err(HandlerError::permanent("bad"));
        assert_eq!(
            decide(&r, 1, &p()),
            Outcome::DeadLetter(DeadLetterReason::Permanent)
        );
        assert_eq!(
            decide(&r, 5, &p()),
            Outcome::DeadLetter(DeadLetterReason::Permanent)
        );
    }

    #[test]
    fn decodable_within_limit_runs_the_handler() {
        assert_eq!(decide_before(Ok(()), 1, &p()), None);
        assert_eq!(decide_before(Ok(()), 5, &p()), None);
    }

    #[test]
    fn delivery_beyond_the_limit_is_dead_lettered_without_running() {
        assert_eq!(
            decide_before(Ok(()), 6, &p()),
            Some(Outcome::DeadLetter(DeadLetterReason::MaxDeliveries))
        );
        let undecodable = DecodeError::Undecodable("x".into());
        assert_eq!(
            decide_before(Err(&undecodable), 7, &p()),
            Some(Outcome::DeadLetter(DeadLetterReason::MaxDeliveries))
        );
    }

    #[test]
    fn poison_is_dead_lettered_on_first_delivery() {
        let undecodable = DecodeError::Undecodable("not json".into());
        assert_eq!(
            decide_before(Err(&undecodable), 1, &p()),
            Some(Outcome::DeadLetter(DeadLetterReason::Undecodable))
        );
        let event = crate::Event::builder("Bad Type").build().unwrap_err();
        let invalid = DecodeError::Invalid(event);
        assert_eq!(
            decide_before(Err(&invalid), 1, &p()),
            Some(Outcome::DeadLetter(DeadLetterReason::Invalid))
        );
    }
}
