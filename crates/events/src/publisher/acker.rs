//! The acker: one long-lived task that waits for the acks of every per-message windowed
//! publish (and runs their retries), instead of one spawned task per event.
//!
//! [`super::Publisher::publish_async`] sends the first try inline (so messages leave in
//! submission order) and hands the rest, a [`Job`], to the acker through an unbounded
//! channel (the window semaphore bounds what can be in it). The acker keeps the jobs'
//! futures in a `FuturesUnordered`: a burst of acks read from the socket then wakes one
//! task once, not one task per ack. Each job keeps its window slot until its outcome is
//! known, so [`super::Publisher::flush`] and [`super::Publisher::close`] wait for it as
//! before; the acker itself is tracked like any background task.
//!
//! When the publisher is cancelled (closed, or its last clone dropped) the acker stops
//! taking new jobs, lets the ones it holds settle (they see the cancellation and end as
//! cancelled or spooled), then ends. A job that finds the acker gone runs on a task of its
//! own, which ends the same way.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use async_nats::jetstream::context::PublishAckFuture;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::completion::Pending;
use super::deliver::Inner;
use super::retry::Failure;
use super::wire::Wire;

/// One sent event waiting for its ack.
pub(super) struct Job {
    pub(super) wire: Wire,
    pub(super) first: Result<PublishAckFuture, Failure>,
    pub(super) pending: Pending,
}

/// Waits for the job's ack (retrying as needed), then completes it.
fn settle(inner: &Inner, job: Job) -> impl Future<Output = ()> + Send + '_ {
    let Job {
        wire,
        first,
        pending,
    } = job;
    let span = pending.span.clone();
    async move {
        let res = inner.finish(wire, Some(first), pending.started).await;
        pending.complete(&inner.outcomes, res);
    }
    .instrument(span)
}

/// Hands a job to the acker, or to a task of its own if the acker has ended.
pub(super) fn submit(inner: &Arc<Inner>, job: Job) {
    if !inner.acker_started.load(Ordering::Acquire) {
        start(inner);
    }
    if let Err(mpsc::error::SendError(job)) = inner.acker.send(job) {
        let task_inner = inner.clone();
        inner
            .tasks
            .spawn(async move { settle(&task_inner, job).await });
    }
}

/// Starts the acker on the first job.
#[cold]
fn start(inner: &Arc<Inner>) {
    let rx = inner.acker_rx.lock().ok().and_then(|mut rx| rx.take());
    if let Some(rx) = rx {
        inner.tasks.spawn(run(inner.clone(), rx));
    }
    inner.acker_started.store(true, Ordering::Release);
}

/// The acker task (see the module docs).
pub(super) async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let inner = &*inner;
    let mut jobs = FuturesUnordered::new();
    let mut cancelled = pin!(inner.cancel.cancelled());
    let mut taking = true;
    let mut open = true;
    poll_fn(|cx| {
        if open && cancelled.as_mut().poll(cx).is_ready() {
            open = false;
            // No new jobs from now on (a late one gets a task of its own); the ones
            // already queued are still taken below.
            rx.close();
        }
        loop {
            while taking {
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(job)) => jobs.push(settle(inner, job)),
                    Poll::Ready(None) => taking = false,
                    Poll::Pending => break,
                }
            }
            match jobs.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => {}
                Poll::Ready(None) if taking => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
}
