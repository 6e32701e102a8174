//! What event contracts cost per event, on the client, without a server.
//!
//! Run with:
//!
//! ```text
//! cargo run --release -p events --features schema --example schema_cost        # 20,000 events, 5 reps
//! cargo run --release -p events --features schema --example schema_cost -- 50000 7
//! ```
//!
//! Measurements over the same pre-built `auth.user.created` events (about 200 bytes of
//! `data`, a distinct id each), in ns per event, median over the repetitions (min and max
//! alongside). The time is the CPU time of the measuring thread (`/proc/thread-self/
//! schedstat`, nanoseconds on a CPU), so that other processes on a loaded machine do not
//! count; where that file is missing, wall-clock time.
//!
//! - `publish, no schema set`: `RecordingPublisher::record`, which runs what
//!   `Publisher::publish` does before sending (checks, encoding, the subject), plus its
//!   in-memory bookkeeping;
//! - `publish, no set, own URI`: the same for events that carry `dataschema` (what a set
//!   makes every event carry: the baseline of the differences printed last);
//! - `publish, schema set`: the same recorder with the repository's schemas: validation and
//!   the `dataschema` stamp (a copy of the event) added; the difference is what the
//!   publisher pays for an event that does not set `dataschema` itself;
//! - `publish, schema set, own URI`: events that already carry the schema's URI (as
//!   SCHEMA_VERSIONING.md asks producers to do): validation and a comparison, no copy;
//! - `validate, valid data`: `SchemaSet::validate` alone, what a subscriber with a set pays
//!   before its handler runs;
//! - `validate, invalid data`: the refusal of an event without `email`, error built.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use events::Event;
use events::publisher::RecordingPublisher;
use events::schema::SchemaSet;
use serde_json::{Value, json};

fn data(i: usize, with_email: bool) -> Value {
    let mut d = json!({
        "user_id": "5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10",
        "email": format!("user-{i}@acme.example"),
        "display_name": "Ada Lovelace",
        "roles": ["member", "catalog-editor"],
        "revision": 1,
        "invited_by": "0b6a3f2e-8c1d-4e5f-9a7b-2c3d4e5f6a7b"
    });
    if !with_email {
        d.as_object_mut().map(|o| o.remove("email"));
    }
    d
}

fn events(n: usize, with_email: bool, data_schema: Option<&str>) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut b = Event::builder("auth.user.created")
                .source("auth-service")
                .organization("org-acme")
                .schema_version("1.0")
                .subject("5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10")
                .data_json(data(i, with_email));
            if let Some(uri) = data_schema {
                b = b.data_schema(uri);
            }
            b.build().expect("a valid envelope")
        })
        .collect()
}

/// Nanoseconds this thread has run on a CPU, if the kernel says (Linux).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// ns per event of `run` over `n` events, one value per repetition.
fn measure(reps: usize, n: usize, mut run: impl FnMut()) -> Vec<f64> {
    (0..reps)
        .map(|_| {
            let (cpu, wall) = (thread_cpu_ns(), Instant::now());
            run();
            let ns = match (cpu, thread_cpu_ns()) {
                (Some(a), Some(b)) => (b - a) as f64,
                _ => wall.elapsed().as_nanos() as f64,
            };
            ns / n as f64
        })
        .collect()
}

fn report(name: &str, mut ns: Vec<f64>) -> f64 {
    ns.sort_by(f64::total_cmp);
    let median = ns[ns.len() / 2];
    println!(
        "{name:<28} {median:>9.0} {:>9.0} {:>9.0}",
        ns[0],
        ns[ns.len() - 1]
    );
    median
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let reps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let set = SchemaSet::from_dir(&dir).expect("the repository's schemas load");
    let valid = events(n, true, None);
    let own_uri = events(n, true, set.data_schema("auth.user.created", "1.0"));
    let invalid = events(n, false, None);
    println!(
        "{n} events x {reps} reps, {} bytes of data each; {} ns/event",
        serde_json::to_vec(valid[0].data()).map_or(0, |d| d.len()),
        if thread_cpu_ns().is_some() {
            "CPU"
        } else {
            "wall-clock"
        }
    );
    println!("{:<28} {:>9} {:>9} {:>9}", "", "median", "min", "max");

    report(
        "publish, no schema set",
        measure(reps, n, || {
            let rec = RecordingPublisher::new();
            for ev in &valid {
                black_box(rec.record(ev).expect("recorded"));
            }
        }),
    );
    let plain_own = report(
        "publish, no set, own URI",
        measure(reps, n, || {
            let rec = RecordingPublisher::new();
            for ev in &own_uri {
                black_box(rec.record(ev).expect("recorded"));
            }
        }),
    );
    let checked = report(
        "publish, schema set",
        measure(reps, n, || {
            let rec = RecordingPublisher::new().with_schemas(set.clone());
            for ev in &valid {
                black_box(rec.record(ev).expect("valid"));
            }
        }),
    );
    let own = report(
        "publish, schema set, own URI",
        measure(reps, n, || {
            let rec = RecordingPublisher::new().with_schemas(set.clone());
            for ev in &own_uri {
                black_box(rec.record(ev).expect("valid"));
            }
        }),
    );
    report(
        "validate, valid data",
        measure(reps, n, || {
            for ev in &valid {
                black_box(set.validate(ev)).expect("valid");
            }
        }),
    );
    report(
        "validate, invalid data",
        measure(reps, n, || {
            for ev in &invalid {
                black_box(set.validate(ev)).expect_err("invalid");
            }
        }),
    );
    println!(
        "the schema set adds {:.0} ns per published event ({:.0} ns when it carries its URI)",
        checked - plain_own,
        own - plain_own
    );
}
