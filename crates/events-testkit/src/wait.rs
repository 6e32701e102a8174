//! Bounded waits on server state, for the moments a test must not race: a plain NATS
//! publish (or [`crate::publish_raw`]) returns once the server has read the message, and
//! the stream stores it a moment later; and a cluster that has just turned healthy may
//! take longer than one JetStream request to place a replicated stream.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::CreateStreamErrorKind, stream};

/// JetStream error codes that mean "the cluster is not ready yet": no suitable peers for
/// placement (10005) and the cluster temporarily unavailable (10008).
const NOT_READY_CODES: [u64; 2] = [10005, 10008];

/// Creates the stream `config` (or finds it, when an identical one exists), trying again
/// while the request times out, nobody responds, or the cluster says it is not ready, for
/// at most `bound`. A create that timed out may still have been applied: trying the same
/// config again is then a no-op, so the retry is safe.
///
/// # Panics
///
/// On any other error at once (a conflicting config stays a conflict), and with the last
/// error when `bound` has passed.
pub async fn create_stream_when_ready(
    js: &jetstream::Context,
    config: stream::Config,
    bound: Duration,
) -> stream::Stream {
    let name = config.name.clone();
    let start = Instant::now();
    loop {
        let error = match tokio::time::timeout(bound, js.create_stream(config.clone())).await {
            Ok(Ok(created)) => return created,
            Ok(Err(e)) if cluster_not_ready(e.kind()) => e.to_string(),
            Ok(Err(e)) => panic!("create stream {name}: {e}"),
            Err(_) => format!("no answer within {bound:?}"),
        };
        assert!(
            start.elapsed() < bound,
            "create stream {name}: not created within {bound:?}; last error: {error}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether a create-stream error is the cluster still settling rather than a refusal.
fn cluster_not_ready(kind: CreateStreamErrorKind) -> bool {
    match kind {
        CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => true,
        CreateStreamErrorKind::JetStream(e) => NOT_READY_CODES.contains(&e.error_code().0),
        _ => false,
    }
}

/// Waits until stream `name` holds at least `n` messages; panics with what it saw after
/// `bound`.
pub async fn wait_for_stream_messages(
    js: &jetstream::Context,
    name: &str,
    n: u64,
    bound: Duration,
) {
    let start = Instant::now();
    let mut seen = None;
    loop {
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(2), js.get_stream(name)).await
            && let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), s.info()).await
        {
            if info.state.messages >= n {
                return;
            }
            seen = Some(info.state.messages);
        }
        assert!(
            start.elapsed() < bound,
            "stream {name} did not reach {n} messages in {bound:?} (last seen: {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
