//! [`Nats`]: what [`Publisher::new`](crate::Publisher::new) and
//! [`Subscriber::builder`](crate::Subscriber::builder) take, made from a [`Connection`], a
//! client or a JetStream context, so that both are called with the same thing.

use async_nats::{Client, jetstream};

use super::{Connection, Denials};

/// A NATS handle as the publisher and the subscriber take it: from `&Connection` (the
/// library's; its permission denials then fail a publish or a setup at once, typed), an
/// `async_nats::Client` or a `jetstream::Context` (owned or borrowed). Cheap: clones of
/// reference-counted handles.
#[derive(Debug, Clone)]
pub struct Nats {
    client: Client,
    /// The context given, kept for its settings (request timeout, domain, prefix).
    jetstream: Option<jetstream::Context>,
    denials: Option<Denials>,
}

impl Nats {
    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The JetStream context given, or a default one on the client.
    pub fn jetstream(&self) -> jetstream::Context {
        self.jetstream
            .clone()
            .unwrap_or_else(|| jetstream::new(self.client.clone()))
    }

    /// The connection's permission denials, when made from a [`Connection`].
    pub fn denials(&self) -> Option<&Denials> {
        self.denials.as_ref()
    }
}

impl From<Client> for Nats {
    fn from(client: Client) -> Self {
        Self {
            client,
            jetstream: None,
            denials: None,
        }
    }
}

impl From<&Client> for Nats {
    fn from(client: &Client) -> Self {
        client.clone().into()
    }
}

impl From<jetstream::Context> for Nats {
    fn from(js: jetstream::Context) -> Self {
        Self {
            client: js.client(),
            jetstream: Some(js),
            denials: None,
        }
    }
}

impl From<&jetstream::Context> for Nats {
    fn from(js: &jetstream::Context) -> Self {
        js.clone().into()
    }
}

impl From<&Connection> for Nats {
    fn from(conn: &Connection) -> Self {
        Self {
            client: conn.client().clone(),
            jetstream: Some(conn.jetstream().clone()),
            denials: Some(conn.denials().clone()),
        }
    }
}

impl From<Connection> for Nats {
    fn from(conn: Connection) -> Self {
        (&conn).into()
    }
}
