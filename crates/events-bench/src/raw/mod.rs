//! The baselines: raw async-nats doing what the library does, with the same bytes, the same
//! headers (`Content-Type`, `Nats-Msg-Id`), the same server and the same stream settings,
//! written as a user who skips the library would write it: the client's defaults
//! (`publish.rs`, `consume.rs`), plus extra baselines with the library's sizes, labelled
//! as such, and the server's atomic batches (`batch.rs`).
//!
//! The raw publisher sends bodies encoded before the clock starts (the least a raw client
//! can do), while the library gets the same events as [`events::Event`] values and encodes
//! them itself: the ratio includes the library's encoding.

mod batch;
mod consume;
mod publish;

pub(crate) use batch::{atomic_batches, prefill};
pub(crate) use consume::{AckMode, ConsumeSpec, IdFrom, Pull, RawConsumer, consume};
pub(crate) use publish::{confirmed, paced_publish, windowed};
