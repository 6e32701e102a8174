//! Peak RSS of a process that only consumes: fills a stream with N benchmark-sized events
//! (atomic batches, in a first process), then drains it with one `Subscriber` in a second
//! process and prints that process's peak resident size (VmHWM). Issue 6's goal: < 64 MiB
//! draining 200,000.
//!
//! Run with
//! ```text
//! nats-server -js -p 14999 -sd /tmp/rss-store &
//! cargo run --release -p events-bench --example drain_rss -- fill  nats://127.0.0.1:14999 200000
//! cargo run --release -p events-bench --example drain_rss -- drain nats://127.0.0.1:14999 200000
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, stream};
use events::subscriber::{HandlerError, Subscriber, handler_fn};
use events::{Event, SubjectFilter};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

const STREAM: &str = "RSSBENCH_EVENTS";
const TYPE: &str = "rssbench.item.created";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, url, n] = args.as_slice() else {
        bail!("usage: drain_rss fill|drain URL EVENTS");
    };
    let n: u64 = n.parse().context("EVENTS")?;
    let client = async_nats::connect(url.as_str()).await?;
    let js = jetstream::new(client.clone());
    match mode.as_str() {
        "fill" => fill(&client, &js, n).await,
        "drain" => drain(js, n).await,
        _ => bail!("mode must be fill or drain"),
    }
}

async fn fill(client: &async_nats::Client, js: &jetstream::Context, n: u64) -> anyhow::Result<()> {
    let _ = js.delete_stream(STREAM).await;
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["rssbench.>".into()],
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await?;
    let pad = "x".repeat(150);
    let mut i = 0u64;
    while i < n {
        let end = (i + 1000).min(n);
        let batch = uuid::Uuid::new_v4().simple().to_string();
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await?;
        for j in i..end {
            let e = Event::builder(TYPE)
                .source("bench-service")
                .organization("org-bench")
                .data(&serde_json::json!({ "seq": j, "pad": pad }))
                .build()?
                .encode();
            let mut h = e.headers;
            h.insert("Nats-Batch-Id", batch.as_str());
            h.insert("Nats-Batch-Sequence", (j - i + 1).to_string().as_str());
            if j + 1 == end {
                h.insert("Nats-Batch-Commit", "1");
                client
                    .publish_with_reply_and_headers(e.subject, inbox.clone(), h, e.payload)
                    .await?;
            } else {
                client.publish_with_headers(e.subject, h, e.payload).await?;
            }
        }
        let reply = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .context("no commit reply")?
            .context("reply subscription closed")?;
        if std::str::from_utf8(&reply.payload)
            .unwrap_or("")
            .contains("\"error\"")
        {
            bail!("batch refused: {}", String::from_utf8_lossy(&reply.payload));
        }
        i = end;
    }
    let stored = js.get_stream(STREAM).await?.info().await?.state.messages;
    println!("filled {STREAM} with {stored} events");
    Ok(())
}

async fn drain(js: jetstream::Context, n: u64) -> anyhow::Result<()> {
    let sub = Subscriber::builder(js, SubjectFilter::new("rssbench.>")?)
        .group("rss")
        .stream(STREAM)
        .build()
        .await?;
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(sub.run(
        handler_fn(move |_e, _ctx| {
            h.fetch_add(1, Ordering::Relaxed);
            async { Ok::<(), HandlerError>(()) }
        }),
        stop.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(600);
    while handled.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(40), task).await;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ?");
    println!(
        "drained {} of {n} in {:.1} s ({:.0}/s); peak RSS {hwm}",
        handled.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        handled.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
