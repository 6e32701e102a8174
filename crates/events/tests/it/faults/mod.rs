//! The fault matrix (issue #13): one scenario per test, each bounded (≤ 60 s, ≤ 10,000
//! events), each checked by the test kit's `Checker`, which prints one line per scenario.
//! Cluster scenarios run one at a time (the `cluster` test group in .config/nextest.toml).
//!
//! Run: `cargo nextest run -p events -E 'test(/faults/)' --no-capture` to see the lines.

mod cluster;
mod consumer;
mod limits;
mod network;
mod single;
mod support;
