//! The goals of issue 12 in one place: which figure is held to which bound, under which
//! `sync_interval`, against which baseline. A goal is attached only where the issue
//! states it (on an external server, whose sync is unknown, only the sync-independent
//! ones); the table marks each met or not.

use crate::SyncSetting;
use crate::report::{Bound, Figure};

/// Confirmed publish, server default sync: ≥ 0.95× raw.
pub(crate) fn confirmed(f: Figure, sync: Option<SyncSetting>, raw: &str) -> Figure {
    match sync {
        Some(SyncSetting::Default) => f.with_goal(Some(raw), Bound::RatioAtLeast(0.95)),
        _ => f,
    }
}

/// Windowed publish per message, server default sync: ≥ 0.9× raw per-message windowed.
pub(crate) fn windowed_per_message(f: Figure, sync: Option<SyncSetting>, raw: &str) -> Figure {
    match sync {
        Some(SyncSetting::Default) => f.with_goal(Some(raw), Bound::RatioAtLeast(0.9)),
        _ => f,
    }
}

/// Batched publish under `always`: ≥ 0.9× raw atomic batches of the same size and
/// in-flight count, and ≥ 10× raw per-message windowed.
pub(crate) fn windowed_batched(
    f: Figure,
    sync: Option<SyncSetting>,
    per_message: &str,
    atomic: &str,
) -> Figure {
    match sync {
        Some(SyncSetting::Always) => f
            .with_goal(Some(atomic), Bound::RatioAtLeast(0.9))
            .with_goal(Some(per_message), Bound::RatioAtLeast(10.0)),
        _ => f,
    }
}

/// Consume, any sync: ≥ 0.9× the raw consumer with the client's defaults.
pub(crate) fn consume(f: Figure, raw_defaults: &str) -> Figure {
    f.with_goal(Some(raw_defaults), Bound::RatioAtLeast(0.9))
}

/// End-to-end p99: at 5,000/s under the server default ≤ 1.5× raw and < 10 ms; at
/// 1,000/s under `always` ≤ 1.5× raw per-message publishing.
pub(crate) fn e2e_p99(f: Figure, sync: Option<SyncSetting>, rate: u64, raw: &str) -> Figure {
    match (sync, rate) {
        (Some(SyncSetting::Default), 5_000) => f
            .with_goal(Some(raw), Bound::RatioAtMost(1.5))
            .with_goal(None, Bound::Below(10.0)),
        (Some(SyncSetting::Always), 1_000) => f.with_goal(Some(raw), Bound::RatioAtMost(1.5)),
        _ => f,
    }
}

/// Peak resident memory of a consumer draining 200,000 events (or more): < 64 MiB.
pub(crate) fn drain_rss(f: Figure, events: u64) -> Figure {
    if events >= 200_000 {
        f.with_goal(None, Bound::Below(64.0))
    } else {
        f
    }
}
