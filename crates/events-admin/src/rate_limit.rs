//! Per-token rate limit of the mutating endpoints: a token bucket per token id. A request
//! over the limit is 429 with `Retry-After` (whole seconds, rounded up).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::error::ApiError;

/// How many mutating requests a token may make: `burst` at once, then `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed back to back (the bucket's size).
    pub burst: u32,
    /// Requests per minute once the burst is spent (the refill rate).
    pub per_minute: u32,
}

impl Default for RateLimit {
    /// 10 at once, then 60 a minute: far above a human, far below a runaway script.
    fn default() -> Self {
        Self {
            burst: 10,
            per_minute: 60,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every token id. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Arc::default(),
        }
    }

    /// Takes one request from `token_id`'s bucket, or says how long until one is there.
    pub(crate) fn take(&self, token_id: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst.max(1));
        let per_sec = f64::from(self.limit.per_minute) / 60.0;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(()); // poisoned: a panic elsewhere must not lock every admin out
        };
        let b = buckets.entry(token_id.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        if per_sec <= 0.0 {
            return Err(Duration::from_secs(3600));
        }
        Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
    }

    /// [`take`](Self::take) as the API answers it: 429 `rate_limited` with the wait.
    pub(crate) fn check(&self, token_id: &str) -> Result<(), ApiError> {
        self.take(token_id, Instant::now()).map_err(|wait| {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            tracing::warn!(
                token_id,
                retry_after = secs,
                "admin token over its rate limit"
            );
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("token {token_id} is over its rate limit; retry in {secs} s"),
            )
            .with_retry_after(secs.max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_token() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 2,
            per_minute: 60,
        });
        let t0 = Instant::now();
        assert!(limiter.take("a", t0).is_ok());
        assert!(limiter.take("a", t0).is_ok());
        let wait = limiter.take("a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(limiter.take("b", t0).is_ok(), "buckets are per token");
        assert!(limiter.take("a", t0 + Duration::from_secs(1)).is_ok());
    }
}
