//! Replay jobs: dead letters moved back one at a time at a chosen rate, through
//! `DeadLetters::replay` (the call behind `eventctl dlq replay` and the API), with progress
//! watchers and a stop. Jobs stop when the console is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::dlq::{DeadLetters, DlqError, ReplayItem, ReplayOptions, ReplayOutcome};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metric_names;

/// Slowest and fastest replay rate, events per second.
pub(crate) const RATE_RANGE: (f64, f64) = (0.1, 1000.0);
/// Jobs remembered (finished ones beyond it are forgotten, oldest first).
const KEPT_JOBS: usize = 100;
/// Console replays running at once; one more is refused (429) until one ends.
pub const MAX_RUNNING_REPLAYS: usize = 10;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobState {
    Running,
    Done,
    Stopped,
}

/// What happened to one dead letter of a job.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Line {
    pub(crate) seq: u64,
    /// `replayed`, `skipped` (already replayed or gone) or `failed`.
    pub(crate) outcome: &'static str,
    pub(crate) detail: String,
}

/// A job's progress, as the page and the event stream show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Progress {
    pub(crate) state: JobState,
    pub(crate) total: usize,
    pub(crate) done: usize,
    pub(crate) replayed: usize,
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
    pub(crate) percent: u32,
    pub(crate) rate: f64,
    #[serde(skip)]
    pub(crate) lines: Vec<Line>,
}

impl Progress {
    fn start(total: usize, rate: f64) -> Self {
        Self {
            state: JobState::Running,
            total,
            done: 0,
            replayed: 0,
            skipped: 0,
            failed: 0,
            percent: if total == 0 { 100 } else { 0 },
            rate,
            lines: Vec::new(),
        }
    }

    fn record(&mut self, line: Line) {
        match line.outcome {
            "replayed" => self.replayed += 1,
            "skipped" => self.skipped += 1,
            _ => self.failed += 1,
        }
        self.done += 1;
        self.percent = u32::try_from(self.done * 100 / self.total.max(1)).unwrap_or(100);
        self.lines.push(line);
    }
}

/// One replay job.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) token_id: String,
    pub(crate) progress: watch::Receiver<Progress>,
    pub(crate) stop: CancellationToken,
}

/// The jobs of this console.
#[derive(Debug)]
pub(crate) struct Jobs {
    jobs: Mutex<BTreeMap<u64, Arc<Job>>>,
    next_id: AtomicU64,
    shutdown: CancellationToken,
}

impl Jobs {
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        Self {
            jobs: Mutex::default(),
            next_id: AtomicU64::new(1),
            shutdown,
        }
    }

    /// Starts replaying `seqs` at `rate` per second; returns the job, or `None` when
    /// [`MAX_RUNNING_REPLAYS`] jobs are running already.
    pub(crate) fn start(
        &self,
        dead_letters: DeadLetters,
        seqs: Vec<u64>,
        rate: f64,
        token_id: &str,
    ) -> Option<Arc<Job>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let running = jobs
            .values()
            .filter(|j| j.progress.borrow().state == JobState::Running)
            .count();
        if running >= MAX_RUNNING_REPLAYS {
            return None;
        }
        let (tx, rx) = watch::channel(Progress::start(seqs.len(), rate));
        let job = Arc::new(Job {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            token_id: token_id.to_owned(),
            progress: rx,
            stop: self.shutdown.child_token(),
        });
        tracing::info!(
            token_id,
            job = job.id,
            count = seqs.len(),
            rate,
            "console replay started"
        );
        tokio::spawn(run(
            dead_letters,
            seqs,
            rate,
            tx,
            job.stop.clone(),
            token_id.to_owned(),
        ));
        jobs.insert(job.id, job.clone());
        forget_finished(&mut jobs);
        Some(job)
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }
}

/// Drops the oldest finished jobs beyond [`KEPT_JOBS`].
fn forget_finished(jobs: &mut BTreeMap<u64, Arc<Job>>) {
    while jobs.len() > KEPT_JOBS {
        let oldest_done = jobs
            .iter()
            .find(|(_, j)| j.progress.borrow().state != JobState::Running)
            .map(|(id, _)| *id);
        match oldest_done {
            Some(id) => jobs.remove(&id),
            None => break,
        };
    }
}

/// The job's task: one replay per `1 / rate` seconds until done or stopped.
async fn run(
    dead_letters: DeadLetters,
    seqs: Vec<u64>,
    rate: f64,
    tx: watch::Sender<Progress>,
    stop: CancellationToken,
    token_id: String,
) {
    let interval = Duration::from_secs_f64(1.0 / rate.clamp(RATE_RANGE.0, RATE_RANGE.1));
    let mut next = tokio::time::Instant::now();
    for seq in seqs {
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                tx.send_modify(|p| p.state = JobState::Stopped);
                tracing::info!(token_id, "console replay stopped");
                return;
            }
            () = tokio::time::sleep_until(next) => {}
        }
        next += interval;
        let result = dead_letters.replay(seq, ReplayOptions::execute()).await;
        let line = line(seq, &result);
        metrics::counter!(metric_names::ADMIN_DLQ_ACTIONS_TOTAL, "action" => "replay", "outcome" => label(&result))
            .increment(1);
        tracing::info!(token_id, dlq_sequence = seq, outcome = line.outcome, detail = %line.detail, "console replayed a dead letter");
        tx.send_modify(|p| p.record(line));
    }
    tx.send_modify(|p| p.state = JobState::Done);
}

fn label(result: &Result<ReplayItem, DlqError>) -> &'static str {
    match result {
        Ok(item) => crate::dlq::outcome_label(&item.outcome),
        Err(e) if e.is_not_found() => "not_found",
        Err(_) => "error",
    }
}

/// The report line of one replay.
pub(crate) fn line(seq: u64, result: &Result<ReplayItem, DlqError>) -> Line {
    let (outcome, detail) = match result {
        Ok(item) => match &item.outcome {
            ReplayOutcome::Replayed { stream, sequence } => {
                ("replayed", format!("stored in {stream} as {sequence}"))
            }
            ReplayOutcome::WouldReplay { stream } => ("replayed", format!("would go to {stream}")),
            ReplayOutcome::AlreadyReplayed { stream, sequence } => (
                "skipped",
                format!("already replayed to {stream} as {sequence}"),
            ),
            ReplayOutcome::ReplayedNotDeleted {
                stream,
                sequence,
                error,
            } => (
                "failed",
                format!("stored in {stream} as {sequence} but not deleted: {error}"),
            ),
            ReplayOutcome::Failed { error } => ("failed", error.clone()),
            _ => ("failed", format!("{:?}", item.outcome)),
        },
        Err(e) if e.is_not_found() => ("skipped", "gone (replayed or purged meanwhile)".to_owned()),
        Err(e) => ("failed", events::error_chain(e)),
    };
    Line {
        seq,
        outcome,
        detail,
    }
}
