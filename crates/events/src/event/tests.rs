use super::*;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::json;

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
        ty in (token(), token(), token()).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
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
