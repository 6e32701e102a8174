//! Tests of the test kit itself, against real nats-server processes.

mod cluster;
mod proxy;
mod raw;
mod server;
mod signals;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tokio::time::timeout;

/// Bound for a single JetStream request in these tests.
const REQUEST: Duration = Duration::from_secs(5);

/// Bound for creating a stream: a cluster just started on a busy machine may take longer
/// than one request to place a replicated stream.
const CREATE: Duration = Duration::from_secs(45);

/// Creates a file-backed stream `name` on `name.>` with `replicas` replicas.
async fn create_stream(js: &jetstream::Context, name: &str, replicas: usize) {
    let config = stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        num_replicas: replicas,
        ..Default::default()
    };
    events_testkit::create_stream_when_ready(js, config, CREATE).await;
}

/// Publishes and waits for the stream's ack; returns the stream sequence.
async fn publish_acked(js: &jetstream::Context, subject: String, payload: String) -> u64 {
    let publish = async {
        js.publish(subject, payload.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    timeout(REQUEST, publish)
        .await
        .expect("publish timed out")
        .expect("publish")
        .sequence
}

/// Payloads of messages 1..=n of `stream`, read back one by one.
async fn read_back(js: &jetstream::Context, name: &str, n: u64) -> Vec<String> {
    let stream = timeout(REQUEST, js.get_stream(name))
        .await
        .expect("get_stream timed out")
        .expect("get_stream");
    let mut payloads = Vec::new();
    for seq in 1..=n {
        let msg = timeout(REQUEST, stream.get_raw_message(seq))
            .await
            .expect("get_raw_message timed out")
            .unwrap_or_else(|e| panic!("message {seq}: {e}"));
        payloads.push(String::from_utf8(msg.payload.to_vec()).unwrap());
    }
    payloads
}

/// Number of messages in `stream`.
async fn message_count(js: &jetstream::Context, name: &str) -> u64 {
    let mut stream = timeout(REQUEST, js.get_stream(name))
        .await
        .expect("get_stream timed out")
        .expect("get_stream");
    let info = timeout(REQUEST, stream.info())
        .await
        .expect("stream info timed out")
        .expect("stream info");
    info.state.messages
}
