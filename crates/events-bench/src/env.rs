//! What every scenario shares: the server connection, fresh streams with the shipped
//! settings, the ~300-byte CloudEvent, id tracking and progress bars.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use events::Event;
use events::names::StreamName;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::stats::{GapMeter, LatencyRecorder};

/// Target size of the JSON body of a benchmark event.
pub(crate) const EVENT_BYTES: usize = 300;

/// Timeout of every JetStream request the harness itself makes.
pub(crate) const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection and helpers shared by the scenarios of one run.
pub(crate) struct Env {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    /// Distinguishes the streams of this run (and of concurrent runs on a shared server).
    run_tag: String,
    next: AtomicU64,
    progress: bool,
}

/// A stream created for one measurement, with the contract's settings plus `allow_atomic`.
pub(crate) struct BenchStream {
    pub(crate) name: String,
    pub(crate) event_type: String,
    pub(crate) filter: String,
}

impl Env {
    pub(crate) fn new(client: async_nats::Client, progress: bool) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(API_TIMEOUT)
            .build(client.clone());
        let run_tag = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
        Self {
            client,
            js,
            run_tag,
            next: AtomicU64::new(0),
            progress,
        }
    }

    /// A new empty stream `BENCH<tag><n>_EVENTS` on subjects `bench<tag><n>.>`, with the
    /// settings CONTRACT.md §1 gives every domain stream (file storage, limits, 7 days,
    /// 1 GiB, discard old, 2-minute duplicate window, 1 replica) plus `allow_atomic` so the
    /// raw atomic-batch reference can use it. Library and raw get identical streams.
    pub(crate) async fn fresh_stream(&self) -> anyhow::Result<BenchStream> {
        // A loaded test server has refused a stream's store now and then (err_code 10049,
        // "error creating store for stream"): the harness tries again under a new name.
        let mut last = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            match self.try_fresh_stream().await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts made"))
    }

    async fn try_fresh_stream(&self) -> anyhow::Result<BenchStream> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let domain = format!("bench{}{n}", self.run_tag);
        let name = StreamName::for_domain(&domain).as_str().to_owned();
        let cfg = stream::Config {
            name: name.clone(),
            subjects: vec![format!("{domain}.>")],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1 << 30,
            discard: stream::DiscardPolicy::Old,
            duplicate_window: Duration::from_secs(120),
            num_replicas: 1,
            allow_atomic_publish: true,
            ..Default::default()
        };
        self.js
            .create_stream(cfg)
            .await
            .with_context(|| format!("creating stream {name}"))?;
        Ok(BenchStream {
            name,
            event_type: format!("{domain}.item.created"),
            filter: format!("{domain}.>"),
        })
    }

    /// Deletes a benchmark stream (best effort: a leftover only costs disk).
    pub(crate) async fn delete_stream(&self, s: &BenchStream) {
        let _ = tokio::time::timeout(API_TIMEOUT, self.js.delete_stream(&s.name)).await;
    }

    /// Messages stored in a stream now.
    pub(crate) async fn stored(&self, s: &BenchStream) -> anyhow::Result<u64> {
        let mut st = self.js.get_stream(&s.name).await?;
        Ok(st.info().await?.state.messages)
    }

    /// A progress bar on stderr for `len` units, hidden when progress is off.
    pub(crate) fn bar(&self, len: u64, msg: String) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:48} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
        {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(msg);
        pb
    }
}

/// True if a progress bar should be drawn: stderr is a terminal and JSON was not asked for.
pub(crate) fn progress_wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// The `data` of a benchmark event: its index in the run, the intended send time (µs since
/// the run's epoch, for coordinated-omission-safe latency) and padding to ~300 bytes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Payload {
    pub(crate) seq: u64,
    pub(crate) sent_us: u64,
    pub(crate) pad: String,
}

/// Only what the raw consumer reads from a body: `data.seq` and `data.sent_us`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawBody {
    pub(crate) data: RawData,
}

/// See [`RawBody`].
#[derive(Debug, Deserialize)]
pub(crate) struct RawData {
    pub(crate) seq: u64,
    pub(crate) sent_us: u64,
}

/// Builds benchmark events of one type whose JSON body is about [`EVENT_BYTES`].
#[derive(Debug, Clone)]
pub(crate) struct EventFactory {
    event_type: String,
    pad: String,
}

impl EventFactory {
    pub(crate) fn new(event_type: &str) -> anyhow::Result<Self> {
        let mut f = Self {
            event_type: event_type.to_owned(),
            pad: String::new(),
        };
        let probe = f.event(1_000_000, 1_000_000_000)?.to_json_bytes().len();
        f.pad = "x".repeat(EVENT_BYTES.saturating_sub(probe));
        Ok(f)
    }

    /// The event with index `seq` and intended send time `sent_us`.
    pub(crate) fn event(&self, seq: u64, sent_us: u64) -> anyhow::Result<Event> {
        Event::builder(self.event_type.as_str())
            .source("bench-service")
            .organization("org-bench")
            .subject(format!("item-{seq}"))
            .data(&Payload {
                seq,
                sent_us,
                pad: self.pad.clone(),
            })
            .build()
            .context("building a benchmark event")
    }

    /// `n` events with indices `0..n`.
    pub(crate) fn events(&self, n: u64) -> anyhow::Result<Vec<Event>> {
        self.events_in(0..n)
    }

    /// The events with the indices of `range`.
    pub(crate) fn events_in(&self, range: std::ops::Range<u64>) -> anyhow::Result<Vec<Event>> {
        range.map(|i| self.event(i, 0)).collect()
    }
}

/// Microseconds since `epoch`.
pub(crate) fn micros_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Which of `n` expected ids arrived, how often: counts unique arrivals, duplicates and ids
/// outside the range, and wakes a waiter when all arrived.
pub(crate) struct Tracker {
    seen: Vec<AtomicU8>,
    unique: AtomicU64,
    duplicates: AtomicU64,
    unexpected: AtomicU64,
    all: Notify,
}

/// Final counts of a [`Tracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) expected: u64,
    pub(crate) unique: u64,
    pub(crate) missing: u64,
    pub(crate) duplicates: u64,
    pub(crate) unexpected: u64,
}

impl Tracker {
    pub(crate) fn new(n: u64) -> Arc<Self> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        Arc::new(Self {
            seen: (0..n).map(|_| AtomicU8::new(0)).collect(),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            all: Notify::new(),
        })
    }

    /// Records one arrival of id `i` (0-based).
    pub(crate) fn mark(&self, i: u64) {
        let Some(slot) = usize::try_from(i).ok().and_then(|i| self.seen.get(i)) else {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if slot.fetch_add(1, Ordering::Relaxed) == 0 {
            let u = self.unique.fetch_add(1, Ordering::AcqRel) + 1;
            if u == self.seen.len() as u64 {
                self.all.notify_one();
            }
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// True if id `i` arrived at least once.
    pub(crate) fn has(&self, i: u64) -> bool {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.seen.get(i))
            .is_some_and(|s| s.load(Ordering::Relaxed) > 0)
    }

    /// Waits until every id of `ids` arrived, at most `limit` (polled every 20 ms); true
    /// if they all did.
    pub(crate) async fn wait_for(&self, ids: &[u64], limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut from = 0;
        loop {
            while from < ids.len() && self.has(ids[from]) {
                from += 1;
            }
            if from == ids.len() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn unique(&self) -> u64 {
        self.unique.load(Ordering::Acquire)
    }

    /// Waits until every id arrived, at most `limit`; true if they all did.
    pub(crate) async fn wait_all(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.unique() >= self.seen.len() as u64 {
                return true;
            }
            // Poll as well: a notify_one sent before this waiter registered is kept, but a
            // bounded poll keeps this simple and safe.
            let step = Duration::from_millis(20);
            if tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + step), async {
                self.all.notified().await;
            })
            .await
            .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return self.unique() >= self.seen.len() as u64;
            }
        }
    }

    pub(crate) fn tally(&self) -> Tally {
        let expected = self.seen.len() as u64;
        let unique = self.unique();
        Tally {
            expected,
            unique,
            missing: expected - unique,
            duplicates: self.duplicates.load(Ordering::Relaxed),
            unexpected: self.unexpected.load(Ordering::Relaxed),
        }
    }
}

/// Peak resident memory of this process (VmHWM) in bytes, if `/proc` has it.
pub(crate) fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak-RSS mark (Linux: writing `5` to `/proc/self/clear_refs`) and returns
/// the resident memory now, the base the later peak is compared with; `None` if it could
/// not.
pub(crate) fn reset_peak_rss() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (clock ticks
/// of 10 ms: precise enough over runs of a second or more). Zero where `/proc` is missing.
pub(crate) fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Index 11 and 12 here are utime and stime (field 14 and 15 of the whole line).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// 1-minute load average.
pub(crate) fn load_avg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU model name from `/proc/cpuinfo`.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default()
}

/// A steady publishing pace: event `i` is due at `start + i / rate` and carries that
/// intended time (µs since `epoch`), so that a publisher falling behind shows up as latency
/// instead of silently sending less (no coordinated omission).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// What latencies are measured from.
    pub(crate) epoch: Instant,
    /// When event 0 is due.
    pub(crate) start: Instant,
    /// Events per second.
    pub(crate) rate: u64,
    /// Events in all.
    pub(crate) total: u64,
}

impl Pace {
    /// `total` events at `rate`, the first due `lead` from now (time for a consumer to be
    /// pulling by then).
    pub(crate) fn new(rate: u64, total: u64, lead: Duration) -> Self {
        let epoch = Instant::now();
        Self {
            epoch,
            start: epoch + lead,
            rate,
            total,
        }
    }

    /// When event `i` is due, and that time in µs since the epoch.
    pub(crate) fn due(&self, i: u64) -> (Instant, u64) {
        let due =
            self.start + Duration::from_nanos(i.saturating_mul(1_000_000_000) / self.rate.max(1));
        let us = u64::try_from((due - self.epoch).as_micros()).unwrap_or(u64::MAX);
        (due, us)
    }
}

/// What a consumer (library or raw) does per handled event besides tracking its id: the
/// progress bar, the latency from the event's intended send time, the gap meter.
#[derive(Clone)]
pub(crate) struct Observer {
    pub(crate) pb: ProgressBar,
    pub(crate) latency: Option<(Instant, Arc<Mutex<LatencyRecorder>>)>,
    pub(crate) gaps: Option<Arc<GapMeter>>,
}

impl Observer {
    /// Only the progress bar.
    pub(crate) fn progress(pb: &ProgressBar) -> Self {
        Self {
            pb: pb.clone(),
            latency: None,
            gaps: None,
        }
    }

    /// One event handled; `sent_us` is its intended send time, if it carried one.
    pub(crate) fn handled(&self, sent_us: Option<u64>) {
        if let (Some((epoch, rec)), Some(sent)) = (&self.latency, sent_us) {
            let lat = Duration::from_micros(micros_since(*epoch).saturating_sub(sent));
            if let Ok(mut r) = rec.lock() {
                r.record(lat);
            }
        }
        if let Some(g) = &self.gaps {
            g.mark();
        }
        self.pb.inc(1);
    }
}

/// Where a paced publisher reports the index of each stored event (the restart scenario's
/// gaps and its list of what must arrive).
pub(crate) type OnAck = Box<dyn FnMut(u64) + Send>;

/// Publishes `pace.total` events at the pace: `send(i, sent_us)` sends event `i` (built
/// with its intended send time) and gives its outcome to await (`None`: the send failed),
/// which is settled off the send path by [`settle_paced`]. Returns the number of failed
/// publishes; an error only if the harness itself fails (building an event).
pub(crate) async fn run_paced<S, F>(
    pace: Pace,
    on_ack: Option<OnAck>,
    mut send: S,
) -> anyhow::Result<u64>
where
    S: AsyncFnMut(u64, u64) -> anyhow::Result<Option<F>>,
    F: Future<Output = bool> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(20_000);
    let drain = tokio::spawn(settle_paced(rx, on_ack));
    let mut errors = 0u64;
    for i in 0..pace.total {
        let (due, sent_us) = pace.due(i);
        tokio::time::sleep_until(due.into()).await;
        match send(i, sent_us).await? {
            Some(outcome) => {
                let outcome = async move { (i, outcome.await) };
                errors += u64::from(tx.send(outcome).await.is_err());
            }
            None => errors += 1,
        }
    }
    drop(tx);
    let drained = tokio::time::timeout(Duration::from_secs(60), drain)
        .await
        .context("publish outcomes did not settle within 60 s")?
        .context("outcome drain task failed")?;
    Ok(errors + drained)
}

/// Awaits the outcomes a paced publisher sends (`(index, stored)` futures) off its send
/// path, running `on_ack` for each stored one, until the sender is dropped and every
/// outcome is in. Returns the number of failures.
async fn settle_paced<F>(mut rx: tokio::sync::mpsc::Receiver<F>, mut on_ack: Option<OnAck>) -> u64
where
    F: Future<Output = (u64, bool)> + Send,
{
    use futures::stream::{FuturesUnordered, StreamExt as _};
    let mut errors = 0u64;
    let mut pending = FuturesUnordered::new();
    let mut settle = |(i, stored): (u64, bool), errors: &mut u64| {
        if !stored {
            *errors += 1;
        } else if let Some(f) = on_ack.as_mut() {
            f(i);
        }
    };
    loop {
        tokio::select! {
            Some(r) = pending.next(), if !pending.is_empty() => settle(r, &mut errors),
            f = rx.recv() => match f {
                Some(f) => pending.push(f),
                None => break,
            },
        }
    }
    while let Some(r) = pending.next().await {
        settle(r, &mut errors);
    }
    errors
}
