//! A loss checker for fault scenarios (in the spirit of Jepsen's checkers): record what a
//! scenario attempted and what each event became, read the stream back, and assert that
//! nothing acknowledged was lost, nothing unattempted appeared, each id is stored once,
//! each consumed event ended in exactly one terminal state, and duplicate handling stayed
//! within what was in flight. One line per scenario is printed with the counts.
//!
//! ```no_run
//! # use events_testkit::{Checker, NatsServer};
//! # async fn example() {
//! let nats = NatsServer::start().await;
//! let js = nats.jetstream().await;
//! let checker = Checker::new("single node: kill mid-publish");
//! checker.attempted("id-1");
//! checker.acked("id-1", 1);
//! // ... inject the fault, run a consumer that calls `checker.handled(id)` ...
//! let stored = events_testkit::read_stream(&js, "AUTH_EVENTS").await;
//! let report = checker.check(&stored); // panics on a violation, prints one line
//! assert_eq!(report.acked, 1);
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use tokio::time::timeout;

/// How long [`read_stream`] may take in all.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One message read back from a stream: its `Nats-Msg-Id` (empty if none) and sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The `Nats-Msg-Id` header, or `""` when the message has none.
    pub id: String,
    /// The stream sequence.
    pub sequence: u64,
}

impl StoredMessage {
    /// A stored message (for tests of the checker and hand-built expectations).
    pub fn new(id: impl Into<String>, sequence: u64) -> Self {
        Self {
            id: id.into(),
            sequence,
        }
    }
}

/// What one event became on the publishing side, as the scenario saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Publish {
    /// Handed to the publisher; no outcome yet.
    Attempted,
    /// Acknowledged at this stream sequence.
    Acked(u64),
    /// Failed with this error kind; `maybe_stored` is false when the error promises that
    /// nothing was stored (the library's `Unavailable`).
    Errored { kind: String, maybe_stored: bool },
}

#[derive(Debug, Default)]
struct State {
    /// In the order attempted.
    order: Vec<String>,
    publish: HashMap<String, Publish>,
    /// Completed handler runs (each a delivery that reached the effect) per id.
    handled: HashMap<String, u64>,
    dead_lettered: HashMap<String, u64>,
    duplicate_bound: Option<u64>,
    consumed: bool,
    /// Ids the scenario stores more than once on purpose, with their expected copies.
    copies: HashMap<String, usize>,
}

/// The counts of a checked scenario (also printed as one line by [`Checker::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Events handed to the publisher.
    pub attempted: u64,
    /// Events acknowledged by the stream.
    pub acked: u64,
    /// Events whose publish failed with a typed error (and were not acked later).
    pub errored: u64,
    /// Distinct events handled at least once.
    pub handled: u64,
    /// Handler runs beyond the first, summed over all events.
    pub duplicates: u64,
    /// Distinct events dead-lettered.
    pub dead_letters: u64,
    /// Messages read back from the stream.
    pub stored: u64,
    /// From [`Checker::new`] to [`Checker::check`].
    pub elapsed: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checker: {}: attempted={} acked={} errored={} stored={} handled={} \
             duplicates={} dead_letters={} time={:.1}s",
            self.scenario,
            self.attempted,
            self.acked,
            self.errored,
            self.stored,
            self.handled,
            self.duplicates,
            self.dead_letters,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Records attempted, acknowledged, errored, handled and dead-lettered events of one
/// scenario, then checks them against the stream ([`check`](Self::check)).
///
/// Cheap to clone (one shared record), so a handler and a publishing task can each hold
/// one. Every recording method takes an event id.
#[derive(Debug, Clone)]
pub struct Checker {
    scenario: Arc<str>,
    started: Instant,
    state: Arc<Mutex<State>>,
}

impl Checker {
    /// A checker for the scenario named `scenario` (the name starts the printed line).
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.into(),
            started: Instant::now(),
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a failed test already; keep its record.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The event `id` is handed to the publisher.
    pub fn attempted(&self, id: &str) {
        let mut s = self.state();
        if s.publish
            .insert(id.to_owned(), Publish::Attempted)
            .is_none()
        {
            s.order.push(id.to_owned());
        }
    }

    /// The stream acknowledged `id` at `sequence`. An ack replaces an earlier error of the
    /// same id (a republish settled it).
    pub fn acked(&self, id: &str, sequence: u64) {
        self.state()
            .publish
            .insert(id.to_owned(), Publish::Acked(sequence));
    }

    /// Publishing `id` failed with an error of `kind`. `maybe_stored` says whether the
    /// error leaves open that the event is stored anyway (an unanswered try); when false,
    /// finding it in the stream is a violation. Ignored if `id` was acked already.
    pub fn errored(&self, id: &str, kind: &str, maybe_stored: bool) {
        let mut s = self.state();
        if !matches!(s.publish.get(id), Some(Publish::Acked(_))) {
            s.publish.insert(
                id.to_owned(),
                Publish::Errored {
                    kind: kind.to_owned(),
                    maybe_stored,
                },
            );
        }
    }

    /// A handler ran the effect of `id` to completion (once per run: a redelivery that
    /// runs it again counts as a duplicate). Also declares that the scenario consumes, so
    /// [`check`](Self::check) requires a terminal state for every stored event.
    pub fn handled(&self, id: &str) {
        let mut s = self.state();
        s.consumed = true;
        *s.handled.entry(id.to_owned()).or_default() += 1;
    }

    /// `id` was dead-lettered (read back from the dead-letter stream).
    pub fn dead_lettered(&self, id: &str) {
        let mut s = self.state();
        s.consumed = true;
        *s.dead_lettered.entry(id.to_owned()).or_default() += 1;
    }

    /// The most duplicate handler runs the scenario can explain: what was in flight when
    /// the faults hit (e.g. faults × the consumer's ack-pending limit). Without a bound,
    /// [`check`](Self::check) allows none.
    pub fn allow_duplicates(&self, bound: u64) {
        self.state().duplicate_bound = Some(bound);
    }

    /// The scenario stores `id` exactly `copies` times on purpose (e.g. published again
    /// after the stream's duplicate window): [`check`](Self::check) then requires that
    /// many copies instead of one.
    pub fn expect_copies(&self, id: &str, copies: usize) {
        self.state().copies.insert(id.to_owned(), copies);
    }

    /// Distinct events handled so far (for a test's wait conditions).
    pub fn handled_count(&self) -> u64 {
        self.state().handled.len() as u64
    }

    /// Events acknowledged so far.
    pub fn acked_count(&self) -> u64 {
        let s = self.state();
        s.publish
            .values()
            .filter(|p| matches!(p, Publish::Acked(_)))
            .count() as u64
    }

    /// Every attempted id in the order attempted.
    pub fn attempted_ids(&self) -> Vec<String> {
        self.state().order.clone()
    }

    /// Checks the record against `stored` (the stream read back, e.g. by [`read_stream`]),
    /// prints one line with the counts and returns them.
    ///
    /// # Panics
    ///
    /// On any violation, with every violation found (at most 20 listed) and the counts.
    pub fn check(&self, stored: &[StoredMessage]) -> Report {
        let s = self.state();
        let report = self.report(&s, stored);
        let violations = violations(&s, stored, &report);
        println!("{report}");
        if !violations.is_empty() {
            let shown: Vec<&String> = violations.iter().take(20).collect();
            panic!(
                "{report}\n{} violations:\n  {}",
                violations.len(),
                shown
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
        report
    }

    fn report(&self, s: &State, stored: &[StoredMessage]) -> Report {
        let count = |f: fn(&Publish) -> bool| s.publish.values().filter(|p| f(p)).count() as u64;
        Report {
            scenario: self.scenario.to_string(),
            attempted: s.publish.len() as u64,
            acked: count(|p| matches!(p, Publish::Acked(_))),
            errored: count(|p| matches!(p, Publish::Errored { .. })),
            handled: s.handled.len() as u64,
            duplicates: s.handled.values().map(|n| n - 1).sum(),
            dead_letters: s.dead_lettered.len() as u64,
            stored: stored.len() as u64,
            elapsed: self.started.elapsed(),
        }
    }
}

/// Every rule the record breaks, one line each.
fn violations(s: &State, stored: &[StoredMessage], report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let mut copies: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for m in stored {
        copies.entry(m.id.as_str()).or_default().push(m.sequence);
    }
    for (id, seqs) in &copies {
        if !s.publish.contains_key(*id) {
            out.push(format!("stored but never attempted: {id:?} at {seqs:?}"));
        }
        let want = s.copies.get(*id).copied().unwrap_or(1);
        if seqs.len() != want && (seqs.len() > 1 || want > 1) {
            out.push(format!(
                "stored {} times (want {want}): {id} at {seqs:?}",
                seqs.len()
            ));
        }
    }
    for id in &s.order {
        let found = copies.get(id.as_str());
        match (&s.publish[id], found) {
            (Publish::Acked(seq), None) => out.push(format!("acked at {seq} but lost: {id}")),
            (Publish::Acked(seq), Some(seqs)) if !seqs.contains(seq) => {
                out.push(format!("acked at {seq} but stored at {seqs:?}: {id}"))
            }
            (
                Publish::Errored {
                    kind,
                    maybe_stored: false,
                },
                Some(seqs),
            ) => out.push(format!(
                "failed with {kind} (nothing stored) yet stored at {seqs:?}: {id}"
            )),
            _ => {}
        }
    }
    consumer_violations(s, &copies, &mut out);
    let bound = s.duplicate_bound.unwrap_or(0);
    if report.duplicates > bound {
        out.push(format!(
            "{} duplicate handler runs, more than the {bound} in flight at the faults",
            report.duplicates
        ));
    }
    out
}

/// Handled or dead-lettered, never both, never neither (once the scenario consumes), and
/// only for events that were attempted.
fn consumer_violations(s: &State, copies: &BTreeMap<&str, Vec<u64>>, out: &mut Vec<String>) {
    let handled: HashSet<&str> = s.handled.keys().map(String::as_str).collect();
    let dead: HashSet<&str> = s.dead_lettered.keys().map(String::as_str).collect();
    for id in handled.union(&dead) {
        if !s.publish.contains_key(*id) {
            out.push(format!("consumed but never attempted: {id}"));
        }
    }
    for id in handled.intersection(&dead) {
        out.push(format!("both handled and dead-lettered: {id}"));
    }
    if !s.consumed {
        return;
    }
    for id in copies.keys() {
        if !handled.contains(id) && !dead.contains(id) {
            out.push(format!(
                "stored but neither handled nor dead-lettered: {id}"
            ));
        }
    }
}

/// Every message of `stream` in sequence order, read with an ordered consumer (fast for
/// thousands of messages; no durable state is left behind). A failed read is tried again
/// (a cluster that just healed may still be electing its leaders).
///
/// # Panics
///
/// If the stream cannot be read completely within 30 s; the message holds the last error.
pub async fn read_stream(js: &jetstream::Context, stream: &str) -> Vec<StoredMessage> {
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let last = match timeout(left, read_stream_inner(js, stream)).await {
            Ok(Ok(messages)) => return messages,
            Ok(Err(e)) => e,
            Err(_) => "no complete read".to_owned(),
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("read_stream {stream}: not read within {READ_TIMEOUT:?}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_stream_inner(
    js: &jetstream::Context,
    name: &str,
) -> Result<Vec<StoredMessage>, String> {
    let mut stream = js.get_stream(name).await.map_err(|e| e.to_string())?;
    let state = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .clone();
    let mut out = Vec::with_capacity(state.messages as usize);
    if state.messages == 0 {
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .map_err(|e| format!("create ordered consumer: {e}"))?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let sequence = message.info().map_err(|e| e.to_string())?.stream_sequence;
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push(StoredMessage { id, sequence });
        if sequence >= state.last_sequence {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(items: &[(&str, u64)]) -> Vec<StoredMessage> {
        items
            .iter()
            .map(|(id, seq)| StoredMessage::new(*id, *seq))
            .collect()
    }

    fn published(ids: &[&str]) -> Checker {
        let c = Checker::new("unit");
        for (i, id) in ids.iter().enumerate() {
            c.attempted(id);
            c.acked(id, i as u64 + 1);
        }
        c
    }

    #[test]
    fn a_clean_run_passes_with_its_counts() {
        let c = published(&["a", "b"]);
        c.attempted("c");
        c.errored("c", "unconfirmed", true);
        c.handled("a");
        c.handled("b");
        c.handled("b");
        c.allow_duplicates(1);
        let r = c.check(&stored(&[("a", 1), ("b", 2)]));
        assert_eq!(
            (r.attempted, r.acked, r.errored, r.handled, r.duplicates),
            (3, 2, 1, 2, 1)
        );
        assert!(
            r.to_string()
                .starts_with("checker: unit: attempted=3 acked=2")
        );
    }

    #[test]
    #[should_panic(expected = "acked at 2 but lost: b")]
    fn an_acked_event_missing_from_the_stream_fails() {
        published(&["a", "b"]).check(&stored(&[("a", 1)]));
    }

    #[test]
    #[should_panic(expected = "acked at 1 but stored at [5]: a")]
    fn an_ack_with_the_wrong_sequence_fails() {
        published(&["a"]).check(&stored(&[("a", 5)]));
    }

    #[test]
    #[should_panic(expected = "stored but never attempted")]
    fn a_message_nobody_attempted_fails() {
        published(&["a"]).check(&stored(&[("a", 1), ("zzz", 2)]));
    }

    #[test]
    #[should_panic(expected = "stored 2 times (want 1): a")]
    fn a_second_copy_fails() {
        published(&["a"]).check(&stored(&[("a", 1), ("a", 2)]));
    }

    #[test]
    fn an_expected_second_copy_passes_and_a_missing_one_fails() {
        let c = published(&["a"]);
        c.expect_copies("a", 2);
        c.check(&stored(&[("a", 1), ("a", 2)]));
        let failed = std::panic::catch_unwind(|| c.check(&stored(&[("a", 1)])));
        assert!(failed.is_err(), "one copy where two are expected fails");
    }

    #[test]
    #[should_panic(expected = "failed with unavailable (nothing stored) yet stored")]
    fn a_not_stored_error_that_was_stored_fails() {
        let c = Checker::new("unit");
        c.attempted("a");
        c.errored("a", "unavailable", false);
        c.check(&stored(&[("a", 1)]));
    }

    #[test]
    fn an_error_settled_by_a_later_ack_counts_as_acked() {
        let c = Checker::new("unit");
        c.attempted("a");
        c.errored("a", "unconfirmed", true);
        c.acked("a", 1);
        c.errored("a", "late", false); // ignored: acked already
        let r = c.check(&stored(&[("a", 1)]));
        assert_eq!((r.acked, r.errored), (1, 0));
    }

    #[test]
    #[should_panic(expected = "both handled and dead-lettered: a")]
    fn two_terminal_states_fail() {
        let c = published(&["a"]);
        c.handled("a");
        c.dead_lettered("a");
        c.check(&stored(&[("a", 1)]));
    }

    #[test]
    #[should_panic(expected = "neither handled nor dead-lettered: b")]
    fn a_stored_event_without_terminal_state_fails_once_consuming() {
        let c = published(&["a", "b"]);
        c.handled("a");
        c.check(&stored(&[("a", 1), ("b", 2)]));
    }

    #[test]
    #[should_panic(expected = "consumed but never attempted: x")]
    fn handling_an_unknown_event_fails() {
        let c = published(&["a"]);
        c.handled("a");
        c.handled("x");
        c.check(&stored(&[("a", 1)]));
    }

    #[test]
    #[should_panic(expected = "3 duplicate handler runs, more than the 2 in flight")]
    fn duplicates_beyond_the_bound_fail() {
        let c = published(&["a"]);
        for _ in 0..4 {
            c.handled("a");
        }
        c.allow_duplicates(2);
        c.check(&stored(&[("a", 1)]));
    }

    #[test]
    #[should_panic(expected = "1 duplicate handler runs, more than the 0")]
    fn without_a_bound_no_duplicate_is_allowed() {
        let c = published(&["a"]);
        c.handled("a");
        c.handled("a");
        c.check(&stored(&[("a", 1)]));
    }
}
