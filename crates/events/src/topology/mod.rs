//! Topology: streams and durable consumers declared in one file, applied idempotently.
//!
//! The project ships `deploy/streams.toml` with the seven streams of CONTRACT.md §1.
//! [`TopologySpec::from_toml`] loads it for one profile (`dev`: 1 replica, `prod`: 3),
//! refusing mistakes with the file, line and reason; [`apply`] makes the server match:
//!
//! - a missing stream or consumer is created;
//! - one that drifted on a declared field is updated (fields we do not declare, which the
//!   server fills with its defaults, are never reported as drift);
//! - nothing is ever deleted, and a change that could drop stored messages (a smaller
//!   `max_age`, `max_bytes`, `max_msgs` or `max_msgs_per_subject`, a removed subject, another
//!   retention policy) is refused unless [`ApplyOptions::force`] is set; a change the server
//!   cannot make in place (storage type) is always refused;
//! - the returned [`ApplyReport`] lists each resource as created, updated (field by field,
//!   from → to), unchanged or refused with the reason; its `Display` is a human diff.
//!
//! Applying the same spec twice changes nothing the second time.
//!
//! # The file
//!
//! ```toml
//! [defaults]                 # over the contract's defaults; every key optional
//! storage = "file"           # file | memory
//! retention = "limits"       # limits | interest | workqueue
//! discard = "old"            # old | new
//! max_age = "7d"             # humantime durations: "90s", "2m", "7d"
//! max_bytes = "1GiB"         # integer bytes, or KiB/MiB/GiB/TiB (1024) or KB/MB/GB/TB (1000)
//! # max_msgs = 1000000       # optional counts; absent leaves the server's (unlimited)
//! # max_msgs_per_subject = 1000
//! # max_msg_size = "1MiB"
//! duplicate_window = "2m"
//! allow_atomic = true        # atomic batch publish (fast durable publishing)
//!
//! [profiles.dev]             # the same keys; chosen at load time
//! replicas = 1
//! [profiles.prod]
//! replicas = 3
//!
//! [[streams]]                # the same keys again, over defaults and profile
//! name = "AUTH_EVENTS"
//! subjects = ["auth.>"]
//!
//! [[consumers]]              # optional durable pull consumers (explicit ack)
//! stream = "AUTH_EVENTS"
//! durable = "catalog-service"
//! filter_subjects = ["auth.user.*"]
//! ack_wait = "30s"           # default 30 s
//! max_deliver = 5            # default 5
//! max_ack_pending = 1000     # default 1000
//! ```
//!
//! # Example
//!
//! ```no_run
//! use events::topology::{ApplyOptions, TopologySpec, apply};
//! # async fn example(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
//! let text = std::fs::read_to_string("deploy/streams.toml")?;
//! let spec = TopologySpec::from_toml(&text, "deploy/streams.toml", "dev")?;
//! let report = apply(&js, &spec, &ApplyOptions::default()).await?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

mod apply;
mod diff;
mod file;
mod report;
mod resolve;
mod spec;

pub use apply::{ApplyOptions, TopologyError, apply};
pub use report::{Action, ApplyReport, ChangeRisk, FieldChange, ItemReport, ResourceKind};
pub(crate) use spec::filter_covers;
pub use spec::{
    ConsumerSpec, DEFAULT_ACK_WAIT, DEFAULT_MAX_ACK_PENDING, DEFAULT_MAX_DELIVER, Discard,
    MAX_REPLICAS, Retention, SpecError, Storage, StreamSpec, TopologySpec,
};

#[cfg(test)]
mod tests;
