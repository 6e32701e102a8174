//! Outcomes as they settle: a set of events sent through the windowed path, each outcome
//! yielded with the event's index as soon as it is known, polled on the caller's task
//! (no task per event).

use std::borrow::Borrow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};

use super::{PublishError, PublishHandle, PublishOutcome, Publisher};
use crate::event::Event;

/// One settled publish: the event's index in the input, and its outcome.
pub type Settled = (usize, Result<PublishOutcome, PublishError>);

/// A handle tagged with its event's index.
struct Indexed {
    index: usize,
    handle: PublishHandle,
}

impl Future for Indexed {
    type Output = Settled;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Settled> {
        let index = self.index;
        Pin::new(&mut self.handle).poll(cx).map(|res| (index, res))
    }
}

/// See [`Publisher::publish_stream`]: submits the events in order, yielding every outcome
/// already settled before each submit, then the rest as they settle.
pub(super) fn settle<'a, I>(publisher: &'a Publisher, events: I) -> impl Stream<Item = Settled> + 'a
where
    I: IntoIterator,
    I::IntoIter: 'a,
    I::Item: Borrow<Event>,
{
    let state = (events.into_iter().enumerate(), FuturesUnordered::new());
    futures::stream::unfold(state, move |(mut events, mut pending)| async move {
        loop {
            if let Some(Some(done)) = pending.next().now_or_never() {
                return Some((done, (events, pending)));
            }
            let Some((index, event)) = events.next() else {
                let done = pending.next().await?;
                return Some((done, (events, pending)));
            };
            match publisher.publish_async(event.borrow()).await {
                Ok(handle) => pending.push(Indexed { index, handle }),
                Err(e) => return Some(((index, Err(e)), (events, pending))),
            }
        }
    })
}
