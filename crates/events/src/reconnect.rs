//! Noticing a reconnect at once: what was sent on a connection that went down and came back
//! (a server restart, a cut link) will get no answer, so the publisher re-sends it with the
//! same id and the subscriber re-pulls as soon as the connection is back, instead of waiting
//! out an ack timeout or a pull's expiry.

use async_nats::connection::State;
use tokio::sync::watch;

/// Watches one client's connection from the moment it is made.
#[derive(Debug)]
pub(crate) struct Reconnect(watch::Receiver<State>);

impl Reconnect {
    /// Starts watching `client`'s connection: [`Self::happened`] resolves after the next
    /// change that leaves it connected.
    pub(crate) fn watch(client: &async_nats::Client) -> Self {
        let mut rx = client.state_changes();
        rx.mark_unchanged();
        Self(rx)
    }

    /// Resolves once the connection has gone down and come back since [`Self::watch`];
    /// never if the client is dropped.
    pub(crate) async fn happened(&mut self) {
        loop {
            if self.0.changed().await.is_err() {
                return std::future::pending().await;
            }
            if *self.0.borrow_and_update() == State::Connected {
                return;
            }
        }
    }
}
