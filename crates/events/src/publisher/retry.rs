//! Pure retry logic: backoff with jitter, and the classification of client errors into
//! transient (retry with the same `Nats-Msg-Id`) and permanent (fail at once).

use std::error::Error as _;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::{PublishError as NatsPublishError, PublishErrorKind};

use super::config::PublishRetryPolicy;
use super::error::{PublishError, TransientError};
use crate::backoff::{Backoff, apply_jitter};

/// The wait before retry number `retry` (0 = the first retry) without jitter:
/// `initial * multiplier^retry`, capped at `max_backoff`.
pub(crate) fn base_backoff(policy: &PublishRetryPolicy, retry: u32) -> Duration {
    Backoff {
        initial: policy.initial_backoff,
        max: policy.max_backoff,
        multiplier: policy.multiplier,
    }
    .delay(retry)
}

/// The jittered wait before retry `retry`; `unit` is a uniform pick in `[0, 1)`. The
/// crate's one jitter rule: the result lies in `[base * (1 - jitter), base]`.
pub(crate) fn backoff(policy: &PublishRetryPolicy, retry: u32, unit: f64) -> Duration {
    apply_jitter(base_backoff(policy, retry), policy.jitter, unit)
}

/// [`backoff`] with a random pick.
pub(crate) fn jittered_backoff(policy: &PublishRetryPolicy, retry: u32) -> Duration {
    backoff(policy, retry, rand::random::<f64>())
}

/// Outcome of one failed try.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Retry (same id) while the deadline lasts.
    Transient(TransientError),
    /// Fail now.
    Permanent(PublishError),
}

/// True if a try that was handed to the connection and then failed this way may still be
/// stored: no answer came (ack timeout, lost connection, client failure). "No responders"
/// and a 503 answer are the server saying it stored nothing.
pub(crate) fn may_have_stored(err: &TransientError) -> bool {
    !matches!(
        err,
        TransientError::NoResponders | TransientError::Server(_)
    )
}

/// Sorts a JetStream API error answer: 503 is temporary, 403 is a permission problem,
/// anything else a permanent refusal named by its `err_code`.
pub(crate) fn classify_api_error(err: jetstream::Error, subject: &str) -> Failure {
    match err.code() {
        503 => Failure::Transient(TransientError::Server(err)),
        403 => Failure::Permanent(PublishError::PermissionDenied {
            subject: subject.to_owned(),
            source: Some(err),
        }),
        _ => Failure::Permanent(PublishError::Rejected {
            err_code: err.error_code().0,
            source: err,
        }),
    }
}

/// Sorts an error from `send_publish` or its ack future.
pub(crate) fn classify(
    err: NatsPublishError,
    subject: &str,
    event_id: &str,
    size: usize,
    limit: usize,
    ack_timeout: Duration,
) -> Failure {
    match err.kind() {
        PublishErrorKind::TimedOut => Failure::Transient(TransientError::AckTimeout(ack_timeout)),
        PublishErrorKind::BrokenPipe => Failure::Transient(TransientError::ConnectionLost),
        // async-nats maps a 503 "no responders" status to StreamNotFound; it means either no
        // stream or none answering yet (leader election, stream being created): the caller
        // retries and checks which one at the end.
        PublishErrorKind::StreamNotFound => Failure::Transient(TransientError::NoResponders),
        PublishErrorKind::MaxPayloadExceeded => Failure::Permanent(PublishError::PayloadTooLarge {
            event_id: event_id.to_owned(),
            size,
            limit,
        }),
        _ => {
            let api = err
                .source()
                .and_then(|s| s.downcast_ref::<jetstream::Error>())
                .cloned();
            match api {
                Some(api) => classify_api_error(api, subject),
                None => Failure::Transient(TransientError::Client(Box::new(err))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(initial_ms: u64, max_ms: u64, mult: f64, jitter: f64) -> PublishRetryPolicy {
        PublishRetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(initial_ms),
            max_backoff: Duration::from_millis(max_ms),
            multiplier: mult,
            jitter,
        }
    }

    #[test]
    fn default_waits_about_1_2_4_seconds() {
        let p = PublishRetryPolicy::default();
        let secs: Vec<f64> = (0..3).map(|r| base_backoff(&p, r).as_secs_f64()).collect();
        assert_eq!(secs, vec![1.0, 2.0, 4.0]);
        for r in 0..3 {
            assert_eq!(backoff(&p, r, 0.0).as_secs_f64(), secs[r as usize]);
            let d = backoff(&p, r, 1.0).as_secs_f64();
            assert!((d - secs[r as usize] * 0.8).abs() < 1e-9);
        }
    }

    #[test]
    fn api_errors_are_sorted_by_code() {
        let err = |code: usize, err_code: u64| -> jetstream::Error {
            serde_json::from_value(serde_json::json!({
                "code": code, "err_code": err_code, "description": "x"
            }))
            .unwrap()
        };
        assert!(matches!(
            classify_api_error(err(503, 10008), "a.b.c"),
            Failure::Transient(TransientError::Server(_))
        ));
        assert!(matches!(
            classify_api_error(err(403, 0), "a.b.c"),
            Failure::Permanent(PublishError::PermissionDenied { .. })
        ));
        assert!(matches!(
            classify_api_error(err(400, 10054), "a.b.c"),
            Failure::Permanent(PublishError::Rejected {
                err_code: 10054,
                ..
            })
        ));
    }

    #[test]
    fn client_kinds_are_sorted() {
        let c = |k| {
            classify(
                NatsPublishError::new(k),
                "a.b.c",
                "id",
                10,
                5,
                Duration::from_secs(1),
            )
        };
        assert!(matches!(
            c(PublishErrorKind::TimedOut),
            Failure::Transient(TransientError::AckTimeout(_))
        ));
        assert!(matches!(
            c(PublishErrorKind::BrokenPipe),
            Failure::Transient(TransientError::ConnectionLost)
        ));
        assert!(matches!(
            c(PublishErrorKind::StreamNotFound),
            Failure::Transient(TransientError::NoResponders)
        ));
        assert!(matches!(
            c(PublishErrorKind::MaxPayloadExceeded),
            Failure::Permanent(PublishError::PayloadTooLarge {
                size: 10,
                limit: 5,
                ..
            })
        ));
        assert!(matches!(
            c(PublishErrorKind::Other),
            Failure::Transient(TransientError::Client(_))
        ));
    }

    #[test]
    fn only_an_answer_from_the_server_says_nothing_was_stored() {
        assert!(may_have_stored(&TransientError::AckTimeout(Duration::ZERO)));
        assert!(may_have_stored(&TransientError::ConnectionLost));
        assert!(!may_have_stored(&TransientError::NoResponders));
    }

    proptest! {
        #[test]
        fn backoff_stays_within_jitter_bounds_and_max(
            initial in 1u64..5_000,
            extra in 0u64..60_000,
            mult in 1.0f64..4.0,
            jitter in 0.0f64..0.99,
            retry in 0u32..40,
            unit in 0.0f64..1.0,
        ) {
            let p = policy(initial, initial + extra, mult, jitter);
            let base = base_backoff(&p, retry).as_secs_f64();
            let d = backoff(&p, retry, unit).as_secs_f64();
            prop_assert!(d <= p.max_backoff.as_secs_f64() + 1e-9);
            prop_assert!(d >= base * (1.0 - jitter) - 1e-9);
            prop_assert!(d <= base + 1e-9);
        }

        #[test]
        fn base_backoff_never_decreases(
            initial in 1u64..5_000,
            extra in 0u64..60_000,
            mult in 1.0f64..4.0,
            retry in 0u32..40,
        ) {
            let p = policy(initial, initial + extra, mult, 0.0);
            prop_assert!(base_backoff(&p, retry + 1) >= base_backoff(&p, retry));
            // The next wait is never shorter than this one's jitter floor.
            let j = policy(initial, initial + extra, mult, 0.3);
            let next_min = backoff(&j, retry + 1, 1.0).as_secs_f64();
            prop_assert!(next_min + 1e-9 >= base_backoff(&j, retry).as_secs_f64() * 0.7);
        }
    }
}
