//! Bounded waits on server state, for the moments a test must not race: a plain NATS
//! publish (or [`crate::publish_raw`]) returns once the server has read the message, and
//! the stream stores it a moment later.

use std::time::{Duration, Instant};

use async_nats::jetstream;

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
