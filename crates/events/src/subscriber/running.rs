//! A subscriber running on a task of its own, as a handle: its names and lag while it runs,
//! how many events its handler finished, and a bounded stop that returns the drain report.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::context::DeliveryContext;
use super::handler::{Handler, HandlerError};
use super::lag::{Lag, LagError, lag};
use super::run::DrainReport;
use crate::Event;

/// Time allowed for a stop beyond `drain_timeout` and `request_timeout` (the run may be in
/// a setup request when it is cancelled).
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// Why a [`RunningSubscriber`] did not stop as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StopError {
    /// The run did not return within its bound (`drain_timeout` plus a margin); its task
    /// was aborted, its unsettled messages return after `ack_wait`.
    #[error("the subscriber did not stop within {0:?}; its task was aborted")]
    TimedOut(Duration),
    /// The run's task panicked or was aborted.
    #[error("the subscriber's task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The condition of [`RunningSubscriber::stop_on`] (or `stop_after`) did not hold
    /// within its bound, or the run stopped by itself first (see [`DrainReport::denied`]).
    /// The subscriber was stopped anyway.
    #[error("stopped before its condition held ({handled} events handled within {within:?})")]
    NotReached {
        /// The bound given.
        within: Duration,
        /// Events the handler finished with `Ok` by then.
        handled: u64,
        /// The drain report of the stop, if the stop itself succeeded.
        report: Option<DrainReport>,
    },
}

/// A subscriber running on a Tokio task of its own; see [`Subscriber::start`].
///
/// Stop it with [`stop`](Self::stop) (or [`stop_after`](Self::stop_after),
/// [`stop_on`](Self::stop_on)) to await the drain. Dropping the handle also begins the
/// shutdown, but does not wait: the task then drains in the background (bounded by
/// `drain_timeout`) and its report is lost.
///
/// [`Subscriber::start`]: super::Subscriber::start
#[derive(Debug)]
#[must_use = "dropping the handle stops the subscriber"]
pub struct RunningSubscriber {
    js: jetstream::Context,
    stream: String,
    group: String,
    durable: String,
    token: CancellationToken,
    task: Option<JoinHandle<DrainReport>>,
    progress: Arc<Progress>,
    stop_bound: Duration,
}

impl RunningSubscriber {
    /// Runs `sub` with `handler` on a new task.
    pub(super) fn spawn<H: Handler>(sub: super::Subscriber, handler: H) -> Self {
        let cfg = sub.config();
        let stop_bound = cfg.drain_timeout + cfg.request_timeout + STOP_MARGIN;
        let (js, stream) = (sub.js.clone(), sub.stream_name().to_owned());
        let (group, durable) = (sub.group().to_owned(), sub.durable_name().to_owned());
        let progress = Arc::new(Progress::default());
        let handler = Tracked {
            inner: handler,
            progress: progress.clone(),
        };
        let token = CancellationToken::new();
        let task = tokio::spawn(sub.run(handler, token.clone()));
        Self {
            js,
            stream,
            group,
            durable,
            token,
            task: Some(task),
            progress,
            stop_bound,
        }
    }

    /// The durable consumer's name.
    pub fn durable_name(&self) -> &str {
        &self.durable
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The stream consumed from.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The consumer's backlog now.
    ///
    /// # Errors
    /// [`LagError`] if the server does not answer or the consumer is gone.
    pub async fn lag(&self) -> Result<Lag, LagError> {
        lag(&self.js, &self.stream, &self.durable).await
    }

    /// Deliveries the handler finished with `Ok` so far (each is then acked; a redelivery
    /// handled again counts again).
    pub fn handled(&self) -> u64 {
        self.progress.handled.load(Ordering::Acquire)
    }

    /// True once the run has returned (stopped, or stopped by itself on a denial).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops pulling, drains (see [`Subscriber::run`](super::Subscriber::run)) and returns
    /// the report, within `drain_timeout + request_timeout` and a few seconds.
    ///
    /// # Errors
    /// [`StopError::TimedOut`] (the task is aborted) or [`StopError::Task`].
    pub async fn stop(mut self) -> Result<DrainReport, StopError> {
        self.token.cancel();
        let Some(mut task) = self.task.take() else {
            // Unreachable: only `stop` takes the task, and it consumes the handle.
            return Err(StopError::TimedOut(Duration::ZERO));
        };
        match tokio::time::timeout(self.stop_bound, &mut task).await {
            Ok(joined) => joined.map_err(StopError::Task),
            Err(_) => {
                task.abort();
                Err(StopError::TimedOut(self.stop_bound))
            }
        }
    }

    /// Waits until the handler has finished `n` deliveries with `Ok` (counting from the
    /// start), then [`stop`](Self::stop)s. The few deliveries in flight at that moment are
    /// finished and settled by the drain, so a test that publishes `n` events and calls
    /// `stop_after(n, ..)` finds all `n` acked.
    ///
    /// # Errors
    /// [`StopError::NotReached`] if `within` passes first (it stops anyway), or a
    /// [`stop`](Self::stop) error.
    pub async fn stop_after(self, n: u64, within: Duration) -> Result<DrainReport, StopError> {
        let progress = self.progress.clone();
        self.stop_on(progress.reached(n), within).await
    }

    /// Waits until `condition` completes (e.g. a channel the handler sends to, a
    /// `Notify`), then [`stop`](Self::stop)s.
    ///
    /// # Errors
    /// [`StopError::NotReached`] if `within` passes first or the run stops by itself (it is
    /// stopped anyway), or a [`stop`](Self::stop) error.
    pub async fn stop_on(
        mut self,
        condition: impl Future,
        within: Duration,
    ) -> Result<DrainReport, StopError> {
        let reached = match self.task.as_mut() {
            Some(task) => tokio::select! {
                biased;
                r = tokio::time::timeout(within, condition) => r.is_ok(),
                // The run ended by itself (denied): the condition can no longer come.
                _ = task => false,
            },
            None => false,
        };
        if reached {
            return self.stop().await;
        }
        let handled = self.handled();
        let report = match self.task.as_ref().map(JoinHandle::is_finished) {
            // Polled to completion above: its output is gone, the run is over.
            Some(true) => None,
            _ => self.stop().await.ok(),
        };
        Err(StopError::NotReached {
            within,
            handled,
            report,
        })
    }
}

impl Drop for RunningSubscriber {
    fn drop(&mut self) {
        // Begins the drain; the task finishes it on its own (bounded by drain_timeout).
        self.token.cancel();
    }
}

/// How many deliveries the handler finished, and a wake-up for whoever waits for a count.
#[derive(Debug)]
struct Progress {
    handled: AtomicU64,
    /// The count someone waits for (`u64::MAX`: nobody), so that only reaching it wakes.
    target: AtomicU64,
    reached: Notify,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            handled: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            reached: Notify::new(),
        }
    }
}

impl Progress {
    fn handled_one(&self) {
        let n = self.handled.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.target.load(Ordering::Acquire) {
            // Stores a permit if the waiter is between its check and its wait.
            self.reached.notify_one();
        }
    }

    /// Completes once `n` deliveries were handled.
    async fn reached(self: Arc<Self>, n: u64) {
        self.target.store(n, Ordering::Release);
        while self.handled.load(Ordering::Acquire) < n {
            self.reached.notified().await;
        }
    }
}

/// The user's handler, counting the deliveries it finishes with `Ok`.
struct Tracked<H> {
    inner: H,
    progress: Arc<Progress>,
}

impl<H: Handler> Handler for Tracked<H> {
    async fn handle(&self, event: Event, ctx: DeliveryContext) -> Result<(), HandlerError> {
        let res = self.inner.handle(event, ctx).await;
        if res.is_ok() {
            self.progress.handled_one();
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reaching_a_count_wakes_the_waiter_whenever_it_started_waiting() {
        let p = Arc::new(Progress::default());
        p.handled_one();
        let wait = tokio::spawn(p.clone().reached(3));
        for _ in 0..2 {
            p.handled_one();
        }
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("woken once the count was reached")
            .unwrap();
        // Already reached: completes at once.
        tokio::time::timeout(Duration::from_secs(10), p.clone().reached(2))
            .await
            .unwrap();
    }
}
