//! The same work as [`crate::raw`] through the `events` library: [`events::publisher::Publisher`]
//! with its default configuration (retries, metrics, tracing spans all on the path;
//! `publish.rs`) and [`events::subscriber::Subscriber`] with the full handler path (decode,
//! handler, ack; `consume.rs`).

mod consume;
mod publish;

pub(crate) use consume::{ConsumeSpec, LibConsumer, consume};
pub(crate) use publish::{confirmed, paced_publish, publisher_config, windowed};
