//! Confirmed acks in groups: the acks of the deliveries that finished together go out as
//! plain acks, and only the group's last one asks the server for an answer.
//!
//! The server applies the acks of one connection to a consumer in the order they arrive
//! and answers an ack with a reply subject only after applying it, so that one answer
//! confirms every ack of its group. A delivery still learns whether its own ack was
//! confirmed (and is counted `ack` only then); a group whose answer does not come within
//! `request_timeout` counts every member `ack_failed`, and the server redelivers whatever
//! it did not apply after `ack_wait`. One group's confirmation does not wait for the
//! previous group's: groups are sent as they form and confirmed concurrently.

use std::time::Duration;

use async_nats::Subject;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::reconnect::Reconnect;

/// The most acks confirmed by one answer.
const MAX_GROUP: usize = 1024;

/// The body of a plain ack (empty means `+ACK`) and of the confirmed one.
const PLAIN_ACK: Bytes = Bytes::new();
const ACK: Bytes = Bytes::from_static(b"+ACK");

/// Why an ack was not confirmed.
#[derive(Debug, thiserror::Error)]
pub(super) enum AckError {
    /// The message has no reply subject: not a JetStream delivery.
    #[error("the message has no reply subject")]
    NoReply,
    /// The group's ack could not be sent, or its answer failed.
    #[error("the server did not confirm the ack: {0}")]
    Failed(String),
    /// No answer within `request_timeout`.
    #[error("the ack was not confirmed in time")]
    TimedOut,
    /// The subscriber is stopping and its acker is gone.
    #[error("the acker stopped")]
    Stopped,
}

/// An ack waiting for its group's confirmation.
struct Pending {
    reply: Subject,
    done: oneshot::Sender<Result<(), AckErrorKind>>,
}

/// [`AckError`] without its text, cheap to hand to every member of a group.
#[derive(Debug, Clone)]
enum AckErrorKind {
    Failed(String),
    TimedOut,
}

/// The handle deliveries ack through; its task runs in the subscriber's [`JoinSet`].
#[derive(Debug, Clone)]
pub(super) struct Acker {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Acker {
    /// Starts the acker's task on `tasks`; it ends once `stop` is cancelled (or every handle
    /// is dropped) and the groups it sent are answered or timed out.
    pub(super) fn spawn(
        client: async_nats::Client,
        request_timeout: Duration,
        stop: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.spawn(run(client, rx, request_timeout, stop));
        Self { tx }
    }

    /// Acks `reply` (a delivery's reply subject) and waits until the server confirms it.
    pub(super) async fn ack(&self, reply: Option<&Subject>) -> Result<(), AckError> {
        let reply = reply.ok_or(AckError::NoReply)?.clone();
        let (done, confirmed) = oneshot::channel();
        self.tx
            .send(Pending { reply, done })
            .map_err(|_| AckError::Stopped)?;
        match confirmed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(AckErrorKind::Failed(e))) => Err(AckError::Failed(e)),
            Ok(Err(AckErrorKind::TimedOut)) => Err(AckError::TimedOut),
            Err(_) => Err(AckError::Stopped),
        }
    }
}

/// Takes what is queued as one group, sends it, and confirms groups concurrently.
async fn run(
    client: async_nats::Client,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    request_timeout: Duration,
    stop: CancellationToken,
) {
    let mut confirming = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = confirming.next() => {}
            () = stop.cancelled() => break,
            next = rx.recv() => {
                let Some(first) = next else { break };
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(p) => group.push(p),
                        Err(_) => break,
                    }
                }
                confirming.push(confirm(client.clone(), group, request_timeout));
            }
        }
    }
    while confirming.next().await.is_some() {}
}

/// Plain acks for all of `group` but the last, then the last as a request: its answer
/// confirms them all.
async fn confirm(client: async_nats::Client, group: Vec<Pending>, request_timeout: Duration) {
    let result = send_group(&client, &group, request_timeout).await;
    for p in group {
        let _ = p.done.send(result.clone());
    }
}

async fn send_group(
    client: &async_nats::Client,
    group: &[Pending],
    request_timeout: Duration,
) -> Result<(), AckErrorKind> {
    let Some((last, rest)) = group.split_last() else {
        return Ok(());
    };
    let sent = async {
        // Acks sent before a reconnect may be lost with the old connection: the group goes
        // once more on the new one (acking twice is harmless).
        for _ in 0..2 {
            let mut reconnect = Reconnect::watch(client);
            for p in rest {
                client
                    .publish(p.reply.clone(), PLAIN_ACK)
                    .await
                    .map_err(|e| AckErrorKind::Failed(e.to_string()))?;
            }
            tokio::select! {
                biased;
                r = client.request(last.reply.clone(), ACK) => {
                    return r.map(drop).map_err(|e| AckErrorKind::Failed(e.to_string()));
                }
                () = reconnect.happened() => {}
            }
        }
        Err(AckErrorKind::Failed(
            "reconnected twice while confirming".to_owned(),
        ))
    };
    timeout(request_timeout, sent)
        .await
        .map_err(|_| AckErrorKind::TimedOut)?
}
