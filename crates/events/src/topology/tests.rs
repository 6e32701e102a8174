//! Unit tests of the spec file: the shipped file, resolution, and errors with file + line.

use std::time::Duration;

use super::*;

const SHIPPED: &str = include_str!("../../../../deploy/streams.toml");

fn load(text: &str) -> Result<TopologySpec, SpecError> {
    TopologySpec::from_toml(text, "test.toml", "dev")
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).expect("needle in text");
    text[..at].matches('\n').count() + 1
}

#[test]
fn shipped_file_declares_the_contract_streams() {
    let dev = TopologySpec::from_toml(SHIPPED, "deploy/streams.toml", "dev").unwrap();
    let names: Vec<_> = dev.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "AUTH_EVENTS",
            "CATALOG_EVENTS",
            "DDMRP_EVENTS",
            "EXECUTION_EVENTS",
            "ANALYTICS_EVENTS",
            "AI_AGENT_EVENTS",
            "DLQ_EVENTS",
            "ADMIN_AUDIT"
        ]
    );
    for s in &dev.streams {
        assert_eq!(s.storage, Storage::File, "{}", s.name);
        assert_eq!(s.retention, Retention::Limits, "{}", s.name);
        assert_eq!(s.duplicate_window, Duration::from_secs(120), "{}", s.name);
        assert_eq!(s.replicas, 1, "{}", s.name);
        if s.name == "ADMIN_AUDIT" {
            // The admin audit trail (events-admin): a year, smaller.
            assert_eq!(s.subjects[0].as_str(), "audit.admin");
            assert_eq!(s.max_age, Duration::from_secs(365 * 86_400));
            assert_eq!(s.max_bytes, 256 << 20);
            assert!(!s.allow_atomic);
            continue;
        }
        assert_eq!(s.max_bytes, 1 << 30, "{}", s.name);
        if s.name == crate::dlq::DLQ_STREAM {
            assert_eq!(s.subjects[0].as_str(), "dlq.>");
            assert_eq!(s.max_age, Duration::from_secs(30 * 86_400));
            assert_eq!(s.discard, Discard::New);
        } else {
            let domain = s.name.as_str().trim_end_matches("_EVENTS").to_lowercase();
            assert_eq!(s.subjects[0].as_str(), format!("{domain}.>"));
            assert_eq!(s.max_age, Duration::from_secs(7 * 86_400));
            assert_eq!(s.discard, Discard::Old);
            assert!(s.allow_atomic);
        }
    }
    let prod = TopologySpec::from_toml(SHIPPED, "deploy/streams.toml", "prod").unwrap();
    assert!(prod.streams.iter().all(|s| s.replicas == 3));
}

#[test]
fn unknown_profile_is_named() {
    let err = TopologySpec::from_toml(SHIPPED, "deploy/streams.toml", "staging").unwrap_err();
    assert_eq!(
        err.to_string(),
        "deploy/streams.toml: unknown profile \"staging\" (declared: dev, prod)"
    );
}

fn assert_error(text: &str, needle: &str, reason_part: &str) {
    let err = load(text).unwrap_err();
    assert_eq!(err.source_name, "test.toml");
    assert_eq!(err.line, Some(line_of(text, needle)), "{err}");
    assert!(err.reason.contains(reason_part), "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "test.toml, line {}, column ",
            line_of(text, needle)
        )),
        "{shown}"
    );
}

const HEAD: &str = "[profiles.dev]\nreplicas = 1\n\n";

#[test]
fn unknown_key_names_file_line_and_key() {
    let text =
        format!("{HEAD}[[streams]]\nname = \"A\"\nsubjects = [\"a.>\"]\nmax_agee = \"1d\"\n");
    assert_error(&text, "max_agee", "unknown field `max_agee`");
}

#[test]
fn bad_duration_names_file_line_and_value() {
    let text = format!(
        "{HEAD}[[streams]]\nname = \"A\"\nsubjects = [\"a.>\"]\nmax_age = \"7 weeks-ish\"\n"
    );
    assert_error(&text, "max_age", "invalid duration \"7 weeks-ish\"");
    let text = format!("{HEAD}[defaults]\nduplicate_window = \"0s\"\n");
    assert_error(&text, "duplicate_window", "greater than zero");
}

#[test]
fn bad_stream_name_names_file_line_and_character() {
    let text = format!("{HEAD}[[streams]]\nname = \"AUTH.EVENTS\"\nsubjects = [\"a.>\"]\n");
    assert_error(&text, "name =", "invalid stream name \"AUTH.EVENTS\"");
}

#[test]
fn zero_replicas_names_file_line_and_range() {
    let text = "[profiles.dev]\nreplicas = 0\n";
    assert_error(
        text,
        "replicas",
        "invalid replicas 0: must be between 1 and 5",
    );
    let text = format!("{HEAD}[[streams]]\nname = \"A\"\nsubjects = [\"a.>\"]\nreplicas = 7\n");
    assert_error(&text, "replicas = 7", "between 1 and 5");
}

#[test]
fn syntax_error_names_the_line() {
    let text = format!("{HEAD}[[streams]]\nname = \"A\nsubjects = [\"a.>\"]\n");
    let err = load(&text).unwrap_err();
    assert_eq!(err.line, Some(line_of(&text, "name")), "{err}");
}

#[test]
fn overlapping_subjects_are_refused() {
    let text = format!(
        "{HEAD}[[streams]]\nname = \"A\"\nsubjects = [\"a.>\"]\n\n[[streams]]\nname = \"B\"\nsubjects = [\"b.>\", \"a.x.*\"]\n"
    );
    assert_error(&text, "\"a.x.*\"", "overlaps \"a.>\" of stream A");
}

#[test]
fn bad_subject_and_sizes_are_refused() {
    let text = format!("{HEAD}[[streams]]\nname = \"A\"\nsubjects = [\"a.>.b\"]\n");
    assert_error(&text, "subjects", "'>' may only be the last token");
    let text = format!(
        "{HEAD}[[streams]]\nname = \"A\"\nsubjects = [\"a.>\"]\nmax_bytes = \"1 gigabyte\"\n"
    );
    assert_error(&text, "max_bytes", "invalid size");
    let text = format!("{HEAD}[[streams]]\nname = \"A\"\nsubjects = [\"a.>\"]\nmax_bytes = 0\n");
    assert_error(&text, "max_bytes", "greater than zero");
}

#[test]
fn dlq_must_discard_new() {
    let text = format!(
        "{HEAD}[[streams]]\nname = \"DLQ_EVENTS\"\nsubjects = [\"dlq.>\"]\ndiscard = \"old\"\n"
    );
    assert_error(&text, "discard", "must use discard = \"new\"");
    // Without a discard key the default (old) applies: the error points at the name.
    let text = format!("{HEAD}[[streams]]\nname = \"DLQ_EVENTS\"\nsubjects = [\"dlq.>\"]\n");
    assert_error(&text, "name", "must use discard = \"new\"");
}

#[test]
fn consumers_are_checked_against_their_stream() {
    let base = format!("{HEAD}[[streams]]\nname = \"A\"\nsubjects = [\"a.>\"]\n\n");
    let ok = format!(
        "{base}[[consumers]]\nstream = \"A\"\ndurable = \"svc\"\nfilter_subjects = [\"a.user.*\"]\nack_wait = \"5s\"\n"
    );
    let spec = load(&ok).unwrap();
    assert_eq!(spec.consumers[0].ack_wait, Duration::from_secs(5));
    assert_eq!(spec.consumers[0].max_deliver, DEFAULT_MAX_DELIVER);

    let text = format!(
        "{base}[[consumers]]\nstream = \"B\"\ndurable = \"svc\"\nfilter_subjects = [\"a.>\"]\n"
    );
    assert_error(&text, "stream = \"B\"", "which is not declared");
    let text = format!(
        "{base}[[consumers]]\nstream = \"A\"\ndurable = \"svc\"\nfilter_subjects = [\"b.>\"]\n"
    );
    assert_error(&text, "\"b.>\"", "not within the subjects of stream A");
}

#[test]
fn layering_defaults_profile_stream() {
    let text = r#"
        [defaults]
        max_age = "1d"
        max_bytes = 1000
        [profiles.dev]
        max_age = "2d"
        replicas = 2
        [[streams]]
        name = "A"
        subjects = ["a.>"]
        [[streams]]
        name = "B"
        subjects = ["b.>"]
        max_age = "3d"
        max_msgs = 10
    "#;
    let spec = load(text).unwrap();
    let a = spec.stream("A").unwrap();
    let b = spec.stream("B").unwrap();
    assert_eq!(a.max_age, Duration::from_secs(2 * 86_400));
    assert_eq!(b.max_age, Duration::from_secs(3 * 86_400));
    assert_eq!(a.max_bytes, 1000);
    assert_eq!(a.replicas, 2);
    assert_eq!(a.max_msgs, None);
    assert_eq!(b.max_msgs, Some(10));
    assert_eq!(a.storage, Storage::File);
}

#[test]
fn sizes_and_overlaps() {
    use file::{format_size, parse_size};
    use spec::{filter_covers, filters_overlap};
    assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
    assert_eq!(parse_size("512 MiB").unwrap(), 512 << 20);
    assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
    assert!(parse_size("1.5GiB").is_err());
    assert!(parse_size("GiB").is_err());
    assert_eq!(format_size(1 << 30), "1GiB");
    assert_eq!(format_size(1000), "1000B");
    assert!(filters_overlap("a.>", "a.b.c"));
    assert!(filters_overlap("a.*.c", "a.b.*"));
    assert!(!filters_overlap("a.>", "a"));
    assert!(!filters_overlap("a.>", "b.>"));
    assert!(!filters_overlap("a.*", "a.b.c"));
    assert!(filter_covers("a.>", "a.b.*"));
    assert!(filter_covers("a.*.c", "a.x.c"));
    assert!(!filter_covers("a.*", "a.>"));
    assert!(!filter_covers("a.b", "a.*"));
}
