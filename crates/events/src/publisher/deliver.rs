//! [`Inner`], what every clone of a publisher shares, and its send path: the retry loop (one
//! try, the wait for its ack, backoff) and what happens when the tries run out (the spool,
//! or a typed error).

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use tracing::warn;

use super::error::{PublishError, TransientError};
use super::retry::{self, Failure};
use crate::reconnect::Reconnect;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::acker::Job;
use super::batch::{Item, Route, Routes};
use super::completion::Outcomes;
use super::config::PublisherConfig;
use super::spool::{Spool, spool_now};
use super::wire::Wire;
use super::{PublishAck, PublishOutcome};

/// What every clone of a [`Publisher`](super::Publisher) shares: the connection, the window,
/// the background tasks and their channels, and the caches of the send path.
pub(super) struct Inner {
    pub(super) client: async_nats::Client,
    pub(super) js: jetstream::Context,
    /// The connection's permission denials, to fail a denied publish at once.
    pub(super) denials: Option<crate::connection::Denials>,
    pub(super) config: PublisherConfig,
    pub(super) window: Arc<Semaphore>,
    pub(super) closed: AtomicBool,
    pub(super) tasks: TaskTracker,
    pub(super) cancel: CancellationToken,
    pub(super) spool: Option<Arc<Spool>>,
    pub(super) batch_tx: Option<mpsc::Sender<(String, Item)>>,
    /// Per-message windowed publishes waiting for their acks (see the `acker` module).
    pub(super) acker: mpsc::UnboundedSender<Job>,
    /// The acker's end of the channel until the first windowed publish starts it (so that
    /// a publisher that never uses that path has no task for it).
    pub(super) acker_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    pub(super) acker_started: AtomicBool,
    pub(super) routes: Routes,
    pub(super) no_stream_cache: std::sync::Mutex<Vec<(String, Instant, bool)>>,
    /// The server's `max_payload` and when it was read (`server_info()` clones the whole
    /// INFO, too much per event; the value only changes on reconnect to another server).
    pub(super) max_payload: std::sync::Mutex<(usize, Instant)>,
    /// Outcome metrics, with their handles per event type.
    pub(super) outcomes: Outcomes,
}

/// Why the retry loop stopped without an ack.
pub(super) enum Stop {
    Permanent(PublishError),
    /// `unconfirmed`: a try was handed to the connection and got no answer, so the
    /// event may be stored (see [`PublishError::Unconfirmed`]).
    Exhausted {
        attempts: u32,
        last: TransientError,
        unconfirmed: bool,
    },
    Cancelled,
}

impl Inner {
    /// Which path a subject's events take (one stream lookup per subject and TTL).
    pub(super) async fn route(&self, subject: &str) -> Route {
        let t = self.config.ack_timeout;
        self.routes.lookup(&self.js, t, subject).await
    }

    /// The server's `max_payload` (0 = not known yet), re-read at most once a second.
    pub(super) fn max_payload(&self) -> usize {
        const REFRESH: Duration = Duration::from_secs(1);
        let Ok(mut cached) = self.max_payload.lock() else {
            return self.client.server_info().max_payload;
        };
        if cached.0 == 0 || cached.1.elapsed() >= REFRESH {
            *cached = (self.client.server_info().max_payload, Instant::now());
        }
        cached.0
    }

    pub(super) fn remaining(deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now())
    }

    /// One send, bounded by the deadline.
    pub(super) async fn send(
        &self,
        wire: &Wire,
        deadline: Instant,
    ) -> Result<PublishAckFuture, Failure> {
        self.send_message(wire, wire.message(), deadline).await
    }

    /// One send of `msg` (the message of `wire`), bounded by the deadline.
    pub(super) async fn send_message(
        &self,
        wire: &Wire,
        msg: PublishMessage,
        deadline: Instant,
    ) -> Result<PublishAckFuture, Failure> {
        let classify = |e| self.classify(e, wire);
        match tokio::time::timeout(
            Self::remaining(deadline),
            self.js.send_publish(wire.subject.clone(), msg),
        )
        .await
        {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(Failure::Transient(TransientError::AckTimeout(
                self.config.ack_timeout,
            ))),
        }
    }

    pub(super) async fn await_ack(
        &self,
        wire: &Wire,
        fut: PublishAckFuture,
        deadline: Instant,
    ) -> Result<jetstream::publish::PublishAck, Failure> {
        let remaining = Self::remaining(deadline);
        let mut reconnect = Reconnect::watch(&self.client);
        // The ack future times out by itself after `ack_timeout` (the context's timeout);
        // a timer of our own is needed only when the deadline comes first. A reconnect
        // ends the wait at once: that answer will not come.
        let ack = async {
            let ack = async {
                if remaining >= self.config.ack_timeout {
                    Ok(fut.into_future().await)
                } else {
                    tokio::time::timeout(remaining, fut.into_future()).await
                }
            };
            tokio::select! {
                biased;
                r = ack => Some(r),
                () = reconnect.happened() => None,
            }
        };
        // A denied publish gets no answer at all: the server's asynchronous permissions
        // violation (on the connection's denials) settles it at once. The publish started
        // at `deadline - deadline budget` (every caller sets the deadline that way).
        let res = match &self.denials {
            None => ack.await,
            Some(denials) => {
                let since = deadline
                    .checked_sub(self.config.deadline)
                    .unwrap_or_else(Instant::now);
                tokio::select! {
                    biased;
                    r = ack => r,
                    d = denials.wait(&wire.subject, since) => {
                        return Err(Failure::Permanent(PublishError::PermissionDenied {
                            subject: d.subject,
                            source: None,
                        }));
                    }
                }
            }
        };
        match res {
            Some(Ok(Ok(ack))) => Ok(ack),
            Some(Ok(Err(e))) => Err(self.classify(e, wire)),
            Some(Err(_)) => Err(Failure::Transient(TransientError::AckTimeout(
                self.config.ack_timeout,
            ))),
            None => Err(Failure::Transient(TransientError::Reconnected)),
        }
    }

    /// Sorts a failed try (reads `max_payload` only then).
    fn classify(&self, err: async_nats::jetstream::context::PublishError, wire: &Wire) -> Failure {
        retry::classify(
            err,
            &wire.subject,
            &wire.event_id,
            wire.size,
            self.max_payload(),
            self.config.ack_timeout,
        )
    }

    /// Is there a stream for this subject? `None` if the server could not say.
    pub(super) async fn stream_exists(&self, subject: &str, deadline: Instant) -> Option<bool> {
        const TTL: Duration = Duration::from_millis(250);
        if let Ok(cache) = self.no_stream_cache.lock()
            && let Some((_, at, exists)) = cache.iter().find(|(s, _, _)| s == subject)
            && at.elapsed() < TTL
        {
            return Some(*exists);
        }
        let bound = self.config.ack_timeout.min(Self::remaining(deadline));
        let lookup =
            tokio::time::timeout(bound, self.js.stream_by_subject(subject.to_owned())).await;
        let exists = match lookup {
            Ok(Ok(_)) => true,
            Ok(Err(e)) if e.kind() == GetStreamByNameErrorKind::NotFound => false,
            _ => return None,
        };
        if let Ok(mut cache) = self.no_stream_cache.lock() {
            cache.retain(|(s, at, _)| s != subject && at.elapsed() < TTL);
            cache.push((subject.to_owned(), Instant::now(), exists));
        }
        Some(exists)
    }

    /// The retry loop: from the first send's result to an ack or a reason to stop.
    /// `bail_when_down`: stop early (as exhausted) when the connection is not up, because
    /// the caller has somewhere better to put the event (the spool).
    pub(super) async fn deliver(
        &self,
        wire: &Wire,
        first: Option<Result<PublishAckFuture, Failure>>,
        deadline: Instant,
        bail_when_down: bool,
    ) -> Result<jetstream::publish::PublishAck, Stop> {
        let policy = &self.config.retry;
        let mut attempts: u32 = 1;
        let mut no_stream_seen: u32 = 0;
        let mut unconfirmed = false;
        let mut sent = match first {
            Some(s) => s,
            None => self.send(wire, deadline).await,
        };
        loop {
            let handed_over = sent.is_ok();
            let res = match sent {
                Ok(fut) => self.await_ack(wire, fut, deadline).await,
                Err(f) => Err(f),
            };
            let last = match res {
                Ok(ack) => return Ok(ack),
                Err(Failure::Permanent(e)) => return Err(Stop::Permanent(e)),
                Err(Failure::Transient(t)) => t,
            };
            unconfirmed |= handed_over && retry::may_have_stored(&last);
            // No responders: no stream at all, or one not answering yet? Ask the server.
            let no_stream = matches!(last, TransientError::NoResponders)
                && self.stream_exists(&wire.subject, deadline).await == Some(false);
            if no_stream {
                no_stream_seen += 1;
                if no_stream_seen >= 2 {
                    return Err(Stop::Permanent(PublishError::NoStream {
                        subject: wire.subject.to_string(),
                    }));
                }
            }
            // Watching before reading the state: a reconnect from now on ends the wait.
            let mut reconnect = Reconnect::watch(&self.client);
            let down = self.client.connection_state() != State::Connected;
            // Lost with a connection that is back already: no reason to wait.
            let wait = match last {
                TransientError::Reconnected | TransientError::ConnectionLost if !down => {
                    Duration::ZERO
                }
                _ => retry::jittered_backoff(policy, attempts - 1),
            };
            if attempts > policy.max_retries
                || Instant::now() + wait >= deadline
                || (bail_when_down && down)
            {
                if no_stream {
                    return Err(Stop::Permanent(PublishError::NoStream {
                        subject: wire.subject.to_string(),
                    }));
                }
                return Err(Stop::Exhausted {
                    attempts,
                    last,
                    unconfirmed,
                });
            }
            warn!(attempt = attempts, error = %last, wait = ?wait, "publish try failed; retrying with the same id");
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(Stop::Cancelled),
                () = tokio::time::sleep(wait) => {}
                // Down while waiting: the connection coming back is the moment to retry.
                () = reconnect.happened(), if down => {}
            }
            attempts += 1;
            sent = self.send(wire, deadline).await;
        }
    }

    /// The live path after the first send: retries, then the spool or a typed error.
    pub(super) async fn finish(
        &self,
        wire: Wire,
        first: Option<Result<PublishAckFuture, Failure>>,
        started: Instant,
    ) -> Result<PublishOutcome, PublishError> {
        let deadline = started + self.config.deadline;
        let spool = self.spool.as_ref();
        let res = tokio::select! {
            biased;
            r = self.deliver(&wire, first, deadline, spool.is_some()) => r,
            // close() gave up: stop waiting (an ack may still arrive; the id keeps a later
            // publish of the same event idempotent).
            () = self.cancel.cancelled() => Err(Stop::Cancelled),
        };
        let stop = match res {
            Ok(ack) => {
                return Ok(PublishOutcome::Stored(PublishAck {
                    stream: ack.stream,
                    sequence: ack.sequence,
                    duplicate: ack.duplicate,
                }));
            }
            Err(stop) => stop,
        };
        match (stop, spool) {
            (Stop::Permanent(e), _) => Err(e),
            (_, Some(spool)) => spool_now(spool, &wire)
                .await
                .map(|()| PublishOutcome::Spooled),
            (
                Stop::Exhausted {
                    attempts,
                    last,
                    unconfirmed,
                },
                None,
            ) => Err(exhausted(attempts, started.elapsed(), last, unconfirmed)),
            (Stop::Cancelled, None) => Err(PublishError::Cancelled),
        }
    }
}

/// The error for tries that ran out: [`PublishError::Unconfirmed`] if one of them may have
/// been stored, else [`PublishError::Unavailable`].
pub(super) fn exhausted(
    attempts: u32,
    elapsed: Duration,
    last: TransientError,
    unconfirmed: bool,
) -> PublishError {
    if unconfirmed {
        PublishError::Unconfirmed {
            attempts,
            elapsed,
            last,
        }
    } else {
        PublishError::Unavailable {
            attempts,
            elapsed,
            last,
        }
    }
}
