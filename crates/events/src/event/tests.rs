use super::rules::format_time;
use super::*;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct UserCreated {
    user_id: String,
    email: String,
}

fn sample() -> Event {
    Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-1")
        .subject("u-1")
        .data(&UserCreated {
            user_id: "u-1".into(),
            email: "a@example.com".into(),
        })
        .build()
        .unwrap()
}

#[test]
fn builder_fills_defaults() {
    let e = sample();
    assert_eq!(Uuid::parse_str(e.id()).unwrap().get_version_num(), 7);
    assert_eq!(e.schema_version(), "1.0");
    assert_eq!(e.data_content_type(), "application/json");
    assert_eq!(e.time().offset(), time::UtcOffset::UTC);
    let d: UserCreated = e.data_as().unwrap();
    assert_eq!(d.user_id, "u-1");
}

#[test]
fn ids_sort_by_time() {
    let a = sample();
    let b = sample();
    assert!(a.id() < b.id());
}

fn build_err(b: EventBuilder) -> EventError {
    b.build().unwrap_err()
}

fn base(ty: &str) -> EventBuilder {
    Event::builder(ty)
        .source("auth-service")
        .organization("org-1")
        .data_json(json!({"k": 1}))
}

#[test]
fn builder_refuses_bad_types() {
    for ty in [
        "auth.user.*",
        "auth..x",
        "Auth user",
        "auth.user.>",
        "auth.user",
    ] {
        let e = build_err(base(ty));
        assert_eq!(e.attribute, "type", "{ty}");
        assert!(e.to_string().contains("`type`"), "{e}");
    }
}

#[test]
fn builder_refuses_bad_organizations() {
    for org in ["", "org 1", "org.1", "ørg"] {
        let e = build_err(base("auth.user.created").organization(org));
        assert_eq!(e.attribute, "organizationid", "{org:?}");
    }
    let e = build_err(
        Event::builder("auth.user.created")
            .source("s")
            .data_json(json!({})),
    );
    assert_eq!(e.attribute, "organizationid");
    assert_eq!(e.rule, "is required");
}

#[test]
fn builder_refuses_non_object_data() {
    for data in [json!("{\"a\":1}"), json!([1]), json!(3), json!(null)] {
        let e = build_err(base("auth.user.created").data_json(data.clone()));
        assert_eq!(e.attribute, "data", "{data}");
        assert!(e.rule.contains("JSON object"), "{e}");
    }
    let e = build_err(
        Event::builder("auth.user.created")
            .source("s")
            .organization("o"),
    );
    assert_eq!(e.attribute, "data");
}

#[test]
fn builder_refuses_other_bad_attributes() {
    let cases: Vec<(EventBuilder, &str)> = vec![
        (base("auth.user.created").source(""), "source"),
        (base("auth.user.created").id("a\r\nb"), "id"),
        (base("auth.user.created").id("a b"), "id"),
        (
            base("auth.user.created").schema_version("v1"),
            "schemaversion",
        ),
        (
            base("auth.user.created").traceparent("00-xyz"),
            "traceparent",
        ),
        (base("auth.user.created").subject("a\nb"), "subject"),
        (
            base("auth.user.created").data_schema("not a uri"),
            "dataschema",
        ),
        (
            base("auth.user.created").correlation_id(""),
            "correlationid",
        ),
        (base("auth.user.created").extension("Bad", "x"), "Bad"),
        (base("auth.user.created").extension("ok", json!([1])), "ok"),
    ];
    for (b, attr) in cases {
        assert_eq!(build_err(b).attribute, attr);
    }
}

#[test]
fn encode_sets_headers_and_subject() {
    let e = sample();
    let enc = e.encode();
    assert_eq!(enc.subject, "auth.user.created");
    assert_eq!(
        enc.headers.get(CONTENT_TYPE_HEADER).unwrap().as_str(),
        STRUCTURED_CONTENT_TYPE
    );
    assert_eq!(enc.headers.get(MSG_ID_HEADER).unwrap().as_str(), e.id());
    let body: Value = serde_json::from_slice(&enc.payload).unwrap();
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["organizationid"], "org-1");
    assert_eq!(body["type"], "auth.user.created");
    assert!(body["time"].as_str().unwrap().ends_with('Z'));
    assert!(body["data"].is_object());
    assert_eq!(Event::decode(Some(&enc.headers), &enc.payload).unwrap(), e);
}

#[test]
fn decode_tells_undecodable_from_invalid() {
    let e = Event::decode(None, b"not json").unwrap_err();
    assert_eq!(e.reason(), "undecodable");
    let e = Event::decode(None, b"[1,2]").unwrap_err();
    assert_eq!(e.reason(), "undecodable");
    let mut v: Value = serde_json::from_slice(&sample().to_json_bytes()).unwrap();
    v.as_object_mut().unwrap().remove("specversion");
    let e = Event::decode(None, &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert_eq!(e.reason(), "invalid");
    match e {
        DecodeError::Invalid(inner) => assert_eq!(inner.attribute, "specversion"),
        other => panic!("{other:?}"),
    }
    let mut v: Value = serde_json::from_slice(&sample().to_json_bytes()).unwrap();
    v["organizationid"] = json!("bad org");
    let e = Event::decode(None, &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(&e, DecodeError::Invalid(i) if i.attribute == "organizationid"));
    let mut v: Value = serde_json::from_slice(&sample().to_json_bytes()).unwrap();
    v["data"] = json!("{\"a\":1}");
    let e = Event::decode(None, &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(&e, DecodeError::Invalid(i) if i.attribute == "data"));
}

#[test]
fn decode_normalises_time_to_utc() {
    let mut v: Value = serde_json::from_slice(&sample().to_json_bytes()).unwrap();
    v["time"] = json!("2026-01-02T03:04:05.5+02:00");
    let e = Event::decode(None, &serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(format_time(e.time()), "2026-01-02T01:04:05.5Z");
}

/// A binary-mode message written by hand from the CloudEvents NATS binding: attributes in
/// `ce-` headers (percent-encoded where needed), `datacontenttype` as `Content-Type`, the body
/// is `data`. It must decode to the same event as its structured twin.
#[test]
fn binary_mode_equals_structured_twin() {
    let structured = r#"{
        "specversion": "1.0",
        "id": "0190f6a8-7b3c-7def-8123-456789abcdef",
        "source": "billing-service",
        "type": "billing.invoice.paid",
        "time": "2026-03-04T05:06:07.123456Z",
        "organizationid": "org-42",
        "schemaversion": "2.1",
        "datacontenttype": "application/json",
        "subject": "invoice 7/\u00fc",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "correlationid": "req-9",
        "region": "eu-west",
        "data": {"invoice": 7, "amount": {"value": "12.50", "currency": "EUR"}}
    }"#;
    let mut h = HeaderMap::new();
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", "0190f6a8-7b3c-7def-8123-456789abcdef");
    h.insert("ce-source", "billing-service");
    h.insert("ce-type", "billing.invoice.paid");
    h.insert("ce-time", "2026-03-04T05:06:07.123456Z");
    h.insert("ce-organizationid", "org-42");
    h.insert("ce-schemaversion", "2.1");
    h.insert("Content-Type", "application/json");
    h.insert("ce-subject", "invoice%207%2F%C3%BC");
    h.insert(
        "ce-traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    h.insert("ce-correlationid", "req-9");
    h.insert("ce-region", "eu-west");
    let body = br#"{"invoice": 7, "amount": {"value": "12.50", "currency": "EUR"}}"#;
    let from_binary = Event::decode(Some(&h), body).unwrap();
    let from_structured = Event::decode(None, structured.as_bytes()).unwrap();
    assert_eq!(from_binary, from_structured);
    assert_eq!(from_binary.subject(), Some("invoice 7/ü"));
    assert_eq!(from_binary.schema_version(), "2.1");
    assert_eq!(from_binary.extensions()["region"], "eu-west");
}

#[test]
fn binary_mode_with_bad_body_or_attribute() {
    let mut h = HeaderMap::new();
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", "x");
    let e = Event::decode(Some(&h), b"{not json").unwrap_err();
    assert_eq!(e.reason(), "undecodable");
    let e = Event::decode(Some(&h), b"{}").unwrap_err();
    assert_eq!(e.reason(), "invalid");
}

fn token() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,12}"
}

prop_compose! {
    fn arb_event()(
        ty in (token(), token(), token())
            .prop_map(|(a, b, c)| format!("{a}.{b}.{c}"))
            .prop_filter("the dlq. domain is reserved", |t| !t.starts_with("dlq.")),
        source in "[!-~]{1,40}",
        org in "[A-Za-z0-9_-]{1,40}",
        schema in "[0-9]{1,3}(\\.[0-9]{1,3}){0,2}",
        subject in proptest::option::of("[^\\p{Cc}]{1,60}"),
        corr in proptest::option::of("[!-~]{1,40}"),
        nanos in 0i64..4_102_444_800_000_000_000i64,
        data in proptest::collection::btree_map("[^\\p{Cc}]{0,10}", proptest::prelude::any::<i64>().prop_map(Value::from), 0..6),
        text in "\\PC{0,30}",
        ext in proptest::option::of(("[a-z0-9]{1,20}", "[^\\p{Cc}]{1,20}")),
    ) -> Event {
        let mut obj: Map<String, Value> = data.into_iter().collect();
        obj.insert("text".into(), Value::String(text));
        let mut b = Event::builder(ty)
            .source(source)
            .organization(org)
            .schema_version(schema)
            .time(OffsetDateTime::from_unix_timestamp_nanos(nanos.into()).unwrap())
            .data_json(Value::Object(obj));
        if let Some(s) = subject { b = b.subject(s); }
        if let Some(c) = corr { b = b.correlation_id(c); }
        if let Some((n, v)) = ext && !is_contract_attribute(&n) {
            b = b.extension(n, v);
        }
        b.build().unwrap()
    }
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(e in arb_event()) {
        let enc = e.encode();
        let back = Event::decode(Some(&enc.headers), &enc.payload).unwrap();
        prop_assert_eq!(&back, &e);
        // And re-encoding is byte-identical.
        prop_assert_eq!(back.to_json_bytes(), enc.payload.to_vec());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Event::decode(None, &bytes);
    }

    #[test]
    fn decoding_arbitrary_json_objects_never_panics(
        m in proptest::collection::btree_map("[a-z]{1,15}", "\\PC{0,20}", 0..12)
    ) {
        let v: Map<String, Value> = m.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        let _ = Event::decode(None, &serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn decoding_arbitrary_binary_headers_never_panics(
        pairs in proptest::collection::vec(("ce-[a-z]{1,12}", "[ -~]{0,30}"), 0..10),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "1.0");
        for (k, v) in pairs { h.insert(k.as_str(), v.as_str()); }
        let _ = Event::decode(Some(&h), &body);
    }
}

// --- Hostile and unusual input (issue #10) ------------------------------------------------

const SUBJECT: &str = "auth.user.created";
const UUID_V4: &str = "9f1c2b3a-4d5e-4f60-8a7b-0c1d2e3f4a5b";

/// A valid binary-mode message of type [`SUBJECT`], as the Go SDK sends it (values
/// unencoded), plus `extra` headers appended in order.
fn go_sdk_headers(extra: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", UUID_V4),
        ("ce-source", "go-service"),
        ("ce-type", SUBJECT),
        ("ce-time", "2026-05-01T10:00:00.123456789Z"),
        ("ce-organizationid", "org-1"),
        ("ce-schemaversion", "1.0"),
        ("content-type", "application/json"),
    ]
    .iter()
    .chain(extra)
    {
        h.append(*k, *v);
    }
    h
}

fn invalid_attribute(r: Result<Event, DecodeError>) -> EventError {
    match r {
        Err(DecodeError::Invalid(e)) => e,
        other => panic!("expected an invalid event, got {other:?}"),
    }
}

#[test]
fn binary_mode_refuses_an_attribute_given_twice_in_any_case() {
    let body = br#"{"user_id":"u-1"}"#;
    assert!(Event::decode(Some(&go_sdk_headers(&[])), body).is_ok());
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("CE-OrganizationId", "org-2")], "organizationid"),
        (&[("Ce-organizationid", "org-1")], "organizationid"),
        (&[("ce-type", "auth.user.deleted")], "type"),
        (&[("ce-type", SUBJECT)], "type"),
        (&[("ce-region", "eu"), ("CE-REGION", "us")], "region"),
    ];
    for (extra, attr) in cases {
        // async-nats keeps one HashMap key per spelling, iterated in a random order per map:
        // a fresh map each round shows the answer does not depend on that order.
        for _ in 0..16 {
            let e = invalid_attribute(Event::decode(Some(&go_sdk_headers(extra)), body));
            assert_eq!(e.attribute, attr, "{extra:?}");
            assert!(e.rule.contains("is given 2 times"), "{e}");
        }
    }
    // Content-Type carries `datacontenttype` in binary mode: twice is as ambiguous.
    let e = invalid_attribute(Event::decode(
        Some(&go_sdk_headers(&[("Content-Type", "text/plain")])),
        body,
    ));
    assert_eq!(e.attribute, "datacontenttype");
    // Several ambiguous attributes: always the first by name.
    let extra = [("ce-type", SUBJECT), ("CE-ID", UUID_V4)];
    for _ in 0..16 {
        let e = invalid_attribute(Event::decode(Some(&go_sdk_headers(&extra)), body));
        assert_eq!(e.attribute, "id");
    }
    // Structured mode ignores ce- headers, duplicated or not, as before.
    let enc = sample().encode();
    let mut h = enc.headers.clone();
    h.append("ce-type", "a.b.c");
    h.append("CE-TYPE", "d.e.f");
    assert_eq!(
        Event::decode(Some(&h), &enc.payload).unwrap(),
        sample_of(&enc)
    );
}

fn sample_of(enc: &EncodedEvent) -> Event {
    Event::decode(None, &enc.payload).unwrap()
}

#[test]
fn binary_mode_keeps_a_value_that_is_not_percent_encoded() {
    let h = go_sdk_headers(&[("ce-subject", "100% of 50%zz"), ("ce-note", "a%2Fb")]);
    let e = Event::decode(Some(&h), b"{}").unwrap();
    assert_eq!(e.subject(), Some("100% of 50%zz"));
    assert_eq!(e.extensions()["note"], "a/b");
    // An escape that decodes to bytes that are not UTF-8 names the attribute.
    let h = go_sdk_headers(&[("ce-subject", "%FF%FE")]);
    let e = invalid_attribute(Event::decode(Some(&h), b"{}"));
    assert_eq!(e.attribute, "subject");
}

#[test]
fn decode_message_requires_the_type_to_be_the_subject() {
    let enc = sample().encode();
    let ok = Event::decode_message(SUBJECT, Some(&enc.headers), &enc.payload).unwrap();
    assert_eq!(ok, sample_of(&enc));
    let e = invalid_attribute(Event::decode_message(
        "auth.user.deleted",
        Some(&enc.headers),
        &enc.payload,
    ));
    assert_eq!(e.attribute, "type");
    assert!(e.rule.contains("auth.user.deleted"), "{e}");
    // Binary mode too, and without any headers at all.
    let h = go_sdk_headers(&[]);
    assert!(Event::decode_message(SUBJECT, Some(&h), b"{}").is_ok());
    let e = invalid_attribute(Event::decode_message("auth.user.deleted", Some(&h), b"{}"));
    assert_eq!(e.attribute, "type");
    let e = invalid_attribute(Event::decode_message("x.y.z", None, &enc.payload));
    assert_eq!(e.attribute, "type");
}

#[test]
fn decode_message_of_a_replay_copy_checks_the_original_subject() {
    let enc = sample().encode();
    let copy = |names: &[(&str, &str)]| {
        let mut h = enc.headers.clone();
        for (k, v) in names {
            h.append(*k, *v);
        }
        h
    };
    // A copy republished to another subject: the header, in any case, stands for it.
    for name in [REPLAY_ORIGINAL_SUBJECT, "replay-original-subject"] {
        let h = copy(&[(name, SUBJECT)]);
        assert!(Event::decode_message("audit.copy.made", Some(&h), &enc.payload).is_ok());
        let h = copy(&[(name, "auth.user.deleted")]);
        let e = invalid_attribute(Event::decode_message(SUBJECT, Some(&h), &enc.payload));
        assert_eq!(e.attribute, "type");
        assert!(e.rule.contains(REPLAY_ORIGINAL_SUBJECT), "{e}");
    }
    // Given twice, even once matching: ambiguous, so invalid.
    let h = copy(&[
        (REPLAY_ORIGINAL_SUBJECT, SUBJECT),
        ("REPLAY-ORIGINAL-SUBJECT", "auth.user.deleted"),
    ]);
    let e = invalid_attribute(Event::decode_message(
        "audit.copy.made",
        Some(&h),
        &enc.payload,
    ));
    assert!(e.rule.contains("given 2 times"), "{e}");
}

#[test]
fn the_dlq_domain_is_reserved() {
    for ty in ["dlq.user.created", "dlq.dead.letter"] {
        let e = build_err(base(ty));
        assert_eq!(e.attribute, "type", "{ty}");
        assert!(e.rule.contains("reserved `dlq.` domain"), "{e}");
    }
    // A domain that merely starts with the same letters is not the reserved one.
    assert!(base("dlqx.user.created").build().is_ok());
    // Decoding refuses it too: such an event would pass for a dead letter.
    let mut v: Value = serde_json::from_slice(&sample().to_json_bytes()).unwrap();
    v["type"] = json!("dlq.user.created");
    let e = invalid_attribute(Event::decode(None, &serde_json::to_vec(&v).unwrap()));
    assert_eq!(e.attribute, "type");
}

#[test]
fn an_explicit_id_must_be_a_uuid() {
    for id in [
        "evt-1",
        "0190f6a8-7b3c-7def-8123-456789abcdeg",
        "0190f6a87b3c7def8123456789abcdef",
        "{0190f6a8-7b3c-7def-8123-456789abcdef}",
        "urn:uuid:0190f6a8-7b3c-7def-8123-456789abcdef",
        "00000000-0000-0000-0000-000000000000",
    ] {
        let e = build_err(base(SUBJECT).id(id));
        assert_eq!(e.attribute, "id", "{id}");
        assert!(e.rule.contains("is not a UUID"), "{id}: {e}");
    }
    for id in [UUID_V4, "0190F6A8-7B3C-7DEF-8123-456789ABCDEF"] {
        assert_eq!(base(SUBJECT).id(id).build().unwrap().id(), id);
    }
    // Events of other producers keep their ids (see `Ids::Foreign`).
    let h = go_sdk_headers(&[]);
    let mut h2 = HeaderMap::new();
    for (k, vs) in h.iter() {
        let v = if AsRef::<str>::as_ref(k) == "ce-id" {
            "order-7"
        } else {
            vs[0].as_str()
        };
        h2.insert(k.clone(), v);
    }
    assert_eq!(Event::decode(Some(&h2), b"{}").unwrap().id(), "order-7");
}

/// Names that collide with `ce-` attributes in any letter case, for the property tests.
fn arb_case(name: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), name.len()).prop_map(move |upper| {
        name.chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

const TYPES: &[&str] = &[
    SUBJECT,
    "auth.user.deleted",
    "catalog.product.created",
    "dlq.user.created",
    "Auth.user.created",
    "",
];

/// The subject itself most of the time, so that most generated events are accepted and
/// the law below is checked on them; else another type, a reserved one, or junk.
fn arb_type() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(SUBJECT.to_owned()),
        2 => proptest::sample::select(TYPES).prop_map(str::to_owned),
        1 => "\\PC{0,20}",
    ]
}

/// One `ce-` header: an attribute of the contract (valid value most of the time) or an
/// extension, its name in any letter case.
fn arb_ce_header() -> impl Strategy<Value = (String, String)> {
    let attr = proptest::sample::select(
        &[
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "organizationid",
            "schemaversion",
            "subject",
            "region",
        ][..],
    );
    (attr, any::<bool>(), arb_type(), "[ -~]{0,16}")
        .prop_flat_map(|(a, good, ty, junk)| {
            let value = match (a, good) {
                ("type", _) => ty,
                (_, false) => junk,
                ("specversion", true) => "1.0".into(),
                ("id", true) => UUID_V4.into(),
                ("time", true) => "2026-05-01T10:00:00Z".into(),
                ("schemaversion", true) => "1.0".into(),
                (_, true) => "org-1".into(),
            };
            (arb_case(a), Just(value))
        })
        .prop_map(|(name, value)| (format!("ce-{name}"), value))
}

/// A valid message most of the time; with a missing attribute, duplicates, case
/// variants, foreign types, replay headers and broken bodies mixed in.
fn arb_binary_message() -> impl Strategy<Value = (Vec<(String, String)>, Vec<u8>)> {
    let mut base: Vec<(String, String)> = go_sdk_headers(&[])
        .iter()
        .map(|(k, vs)| {
            (
                AsRef::<str>::as_ref(k).to_owned(),
                vs[0].as_str().to_owned(),
            )
        })
        .collect();
    base.sort();
    let n = base.len();
    let replay = proptest::option::weighted(0.3, (arb_case("replay-original-subject"), arb_type()));
    let body = prop_oneof![
        3 => Just(br#"{"user_id":"u-1"}"#.to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..24),
    ];
    (
        proptest::option::weighted(0.2, 0..n),
        proptest::collection::vec(proptest::option::weighted(0.3, arb_ce_header()), 0..4),
        proptest::collection::vec(replay, 0..3),
        body,
    )
        .prop_map(move |(dropped, extra, replays, body)| {
            let mut headers = base.clone();
            if let Some(i) = dropped {
                headers.remove(i);
            }
            headers.extend(extra.into_iter().flatten());
            headers.extend(replays.into_iter().flatten());
            (headers, body)
        })
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(k.as_str(), v.as_str());
    }
    h
}

/// The law of CONTRACT.md §2 for whatever `decode_message` accepts: its type is the
/// `Replay-Original-Subject` when there is one, else the subject.
fn assert_type_is_where_it_was_stored(
    subject: &str,
    pairs: &[(String, String)],
    event: &Event,
) -> Result<(), TestCaseError> {
    let replay: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(REPLAY_ORIGINAL_SUBJECT))
        .map(|(_, v)| v.as_str())
        .collect();
    prop_assert!(
        replay.len() <= 1,
        "accepted with {} replay headers",
        replay.len()
    );
    let want = replay.first().copied().unwrap_or(subject);
    prop_assert_eq!(event.event_type().as_str(), want);
    prop_assert!(!want.starts_with("dlq."));
    Ok(())
}

proptest! {
    #[test]
    fn binary_mode_decoding_is_total_deterministic_and_bound_to_the_subject(
        (pairs, body) in arb_binary_message(),
        subject in arb_type(),
        reversed in any::<bool>(),
    ) {
        let h = header_map(&pairs);
        let got = Event::decode_message(&subject, Some(&h), &body);
        // The same headers appended in another order (and a fresh map, so another hash
        // order) give the same answer.
        let mut rev = pairs.clone();
        if reversed { rev.reverse(); } else { rev.rotate_left(pairs.len().min(1)); }
        let again = Event::decode_message(&subject, Some(&header_map(&rev)), &body);
        match (&got, &again) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.reason(), b.reason()),
            _ => prop_assert!(false, "{got:?} then {again:?}"),
        }
        if let Ok(event) = &got {
            assert_type_is_where_it_was_stored(&subject, &pairs, event)?;
        }
    }

    #[test]
    fn structured_decoding_is_bound_to_the_subject(
        ty in arb_type(),
        subject in arb_type(),
        replay in proptest::option::of(arb_type()),
        drop_field in proptest::option::of(proptest::sample::select(&["id", "time", "data"][..])),
    ) {
        let mut v: Value = serde_json::from_slice(&sample().to_json_bytes()).unwrap();
        v["type"] = json!(ty);
        if let Some(f) = drop_field { v.as_object_mut().unwrap().remove(f); }
        let mut pairs = vec![(CONTENT_TYPE_HEADER.to_owned(), STRUCTURED_CONTENT_TYPE.to_owned())];
        pairs.extend(replay.map(|r| (REPLAY_ORIGINAL_SUBJECT.to_owned(), r)));
        let body = serde_json::to_vec(&v).unwrap();
        if let Ok(event) = Event::decode_message(&subject, Some(&header_map(&pairs)), &body) {
            assert_type_is_where_it_was_stored(&subject, &pairs, &event)?;
        }
    }
}
