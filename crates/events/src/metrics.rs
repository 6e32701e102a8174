//! Metric names and labels of CONTRACT.md §5, described once through the `metrics` facade.
//!
//! The library only records through the facade; which exporter renders them (Prometheus in
//! `events-admin`) is the application's choice. Labels are bounded: event types, consumer
//! names, streams, statuses and reasons, never event ids or error text.

/// Counter `events_published_total{event_type,status}`; status is `ok`, `duplicate` or an
/// error kind.
pub const EVENTS_PUBLISHED_TOTAL: &str = "events_published_total";
/// Histogram `event_publish_duration_seconds{event_type}`: from the call to the stream's ack.
pub const EVENT_PUBLISH_DURATION_SECONDS: &str = "event_publish_duration_seconds";
/// Counter `events_consumed_total{event_type,status}`; status is how the delivery was
/// settled: `ack`, `nak` (retry later), `dead_letter`, `ack_failed` (the ack was not
/// confirmed, so the server will redeliver), or `dead_letter_failed` (the dead letter could
/// not be stored, e.g. the DLQ stream is full: the message was NAKed with the capped backoff
/// and stays in `subscription_lag`).
pub const EVENTS_CONSUMED_TOTAL: &str = "events_consumed_total";
/// Histogram `event_handler_duration_seconds{consumer}`.
pub const EVENT_HANDLER_DURATION_SECONDS: &str = "event_handler_duration_seconds";
/// Counter `event_handler_errors_total{consumer,kind}`; kind is `transient`, `permanent`,
/// `panic`, `undecodable` or `invalid`.
pub const EVENT_HANDLER_ERRORS_TOTAL: &str = "event_handler_errors_total";
/// Counter `events_dead_lettered_total{consumer,reason}`.
pub const EVENTS_DEAD_LETTERED_TOTAL: &str = "events_dead_lettered_total";
/// Gauge `subscription_lag{stream,consumer}`: pending plus delivered-but-unacked messages.
pub const SUBSCRIPTION_LAG: &str = "subscription_lag";
/// Gauge `subscription_lag_seconds{stream,consumer}`: the age of the oldest message the
/// consumer has not finished (the stream's stored time of its first unacknowledged or
/// undelivered message); 0 when it has caught up.
pub const SUBSCRIPTION_LAG_SECONDS: &str = "subscription_lag_seconds";
/// Histogram `event_end_to_end_seconds{consumer}`: from the event's `time` to the end of
/// handling.
pub const EVENT_END_TO_END_SECONDS: &str = "event_end_to_end_seconds";
/// Gauge `outbox_pending{service}`: rows in the transactional outbox not yet relayed.
pub const OUTBOX_PENDING: &str = "outbox_pending";
/// Gauge `outbox_oldest_age_seconds{service}`: age of the oldest row not yet relayed (0 when
/// the outbox is empty).
pub const OUTBOX_OLDEST_AGE_SECONDS: &str = "outbox_oldest_age_seconds";
/// Counter `outbox_relayed_total{service,status}`; status is `ok`, `duplicate` (the stream
/// already had it) or the publish error kind of a try that will be repeated.
pub const OUTBOX_RELAYED_TOTAL: &str = "outbox_relayed_total";
/// Counter `events_inbox_skipped_total{consumer}`: deliveries whose effect the inbox had
/// already recorded.
pub const EVENTS_INBOX_SKIPPED_TOTAL: &str = "events_inbox_skipped_total";

/// Every metric name this crate exports, for exporters and dashboards to check against.
pub const ALL: &[&str] = &[
    EVENTS_PUBLISHED_TOTAL,
    EVENT_PUBLISH_DURATION_SECONDS,
    EVENTS_CONSUMED_TOTAL,
    EVENT_HANDLER_DURATION_SECONDS,
    EVENT_HANDLER_ERRORS_TOTAL,
    EVENTS_DEAD_LETTERED_TOTAL,
    SUBSCRIPTION_LAG,
    SUBSCRIPTION_LAG_SECONDS,
    EVENT_END_TO_END_SECONDS,
    OUTBOX_PENDING,
    OUTBOX_OLDEST_AGE_SECONDS,
    OUTBOX_RELAYED_TOTAL,
    EVENTS_INBOX_SKIPPED_TOTAL,
];

/// The histograms, all in seconds: exporters should give them [`SECONDS_BUCKETS`] so that
/// they render as Prometheus histograms (`_bucket` series, which the dashboard's
/// `histogram_quantile` queries need) rather than summaries.
pub const HISTOGRAMS: &[&str] = &[
    EVENT_PUBLISH_DURATION_SECONDS,
    EVENT_HANDLER_DURATION_SECONDS,
    EVENT_END_TO_END_SECONDS,
];

/// Bucket bounds for every histogram in [`HISTOGRAMS`]: 0.5 ms to 60 s, dense where publish
/// and handler latencies live.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Registers a description and unit for every metric with the installed recorder.
/// Call once after installing a recorder (the admin server does); harmless without one.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        EVENTS_PUBLISHED_TOTAL,
        "Events handed to the publisher, by outcome"
    );
    describe_histogram!(
        EVENT_PUBLISH_DURATION_SECONDS,
        Unit::Seconds,
        "Time from publish call to stream acknowledgement"
    );
    describe_counter!(
        EVENTS_CONSUMED_TOTAL,
        "Deliveries settled by consumers, by outcome"
    );
    describe_histogram!(
        EVENT_HANDLER_DURATION_SECONDS,
        Unit::Seconds,
        "Handler run time per delivery"
    );
    describe_counter!(EVENT_HANDLER_ERRORS_TOTAL, "Failed deliveries, by kind");
    describe_counter!(
        EVENTS_DEAD_LETTERED_TOTAL,
        "Dead letters written, by reason"
    );
    describe_gauge!(
        SUBSCRIPTION_LAG,
        "Messages pending plus delivered and not yet acked"
    );
    describe_gauge!(
        SUBSCRIPTION_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest message the consumer has not finished"
    );
    describe_histogram!(
        EVENT_END_TO_END_SECONDS,
        Unit::Seconds,
        "From the event's time attribute to the end of handling"
    );
    describe_gauge!(OUTBOX_PENDING, "Outbox rows not yet relayed to NATS");
    describe_gauge!(
        OUTBOX_OLDEST_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest outbox row not yet relayed"
    );
    describe_counter!(OUTBOX_RELAYED_TOTAL, "Outbox rows relayed, by outcome");
    describe_counter!(
        EVENTS_INBOX_SKIPPED_TOTAL,
        "Deliveries skipped because the inbox already recorded their effect"
    );
}

/// Most keys (event types) whose handles a [`HandleCache`] keeps; beyond that the caller
/// builds the labelled handle each time (labels are bounded anyway).
const MAX_CACHED_KEYS: usize = 1024;

/// The crate's one cache of metric handles per event type: building a labelled key per
/// event costs several allocations, a cached handle none.
pub(crate) struct HandleCache<T> {
    map: std::sync::Mutex<std::collections::HashMap<String, T>>,
}

impl<T> Default for HandleCache<T> {
    fn default() -> Self {
        Self {
            map: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl<T: Clone> HandleCache<T> {
    /// The handles of `key`, made by `make` on first use; `make`'s result uncached when the
    /// cache is full (or its lock poisoned).
    pub(crate) fn get(&self, key: &str, make: impl FnOnce() -> T) -> T {
        let Ok(mut map) = self.map.lock() else {
            return make();
        };
        if let Some(h) = map.get(key) {
            return h.clone();
        }
        let h = make();
        if map.len() < MAX_CACHED_KEYS {
            map.insert(key.to_owned(), h.clone());
        }
        h
    }
}
