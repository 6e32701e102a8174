use super::*;
use crate::names::SubjectFilter;

const STREAMS: &str = include_str!("../../../../deploy/streams.toml");
const IDENTITIES: &str = include_str!("../../../../deploy/secure/identities.toml");

fn shipped() -> (IdentitiesSpec, TopologySpec) {
    let topology = TopologySpec::from_toml(STREAMS, "streams.toml", "dev").unwrap();
    let identities = IdentitiesSpec::from_toml(IDENTITIES, "identities.toml").unwrap();
    (identities, topology)
}

fn perms(name: &str) -> Permissions {
    let (ids, topo) = shipped();
    permissions(ids.get(name).unwrap(), &topo).unwrap()
}

#[test]
fn the_shipped_identities_are_the_four_of_the_issue() {
    let (ids, _) = shipped();
    let names: Vec<&str> = ids.identities.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "auth-service",
            "catalog-service",
            "operator",
            "admin-server"
        ]
    );
}

#[test]
fn a_producer_publishes_its_domain_and_reads_its_stream_only() {
    let p = perms("auth-service");
    assert_eq!(
        p.publish,
        [
            "auth.>",
            "$JS.API.STREAM.NAMES",
            "$JS.API.STREAM.INFO.AUTH_EVENTS"
        ]
    );
    assert_eq!(p.subscribe, ["_INBOX_auth-service.>"]);
}

#[test]
fn a_consumer_group_uses_its_own_durable_and_dead_letters() {
    let p = perms("catalog-service");
    let d = "catalog-service__auth_user_any";
    for s in [
        format!("$JS.API.CONSUMER.CREATE.AUTH_EVENTS.{d}.auth.user.*"),
        format!("$JS.API.CONSUMER.INFO.AUTH_EVENTS.{d}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.AUTH_EVENTS.{d}"),
        format!("$JS.ACK.AUTH_EVENTS.{d}.>"),
        "dlq.auth.user.*".to_owned(),
    ] {
        assert!(p.publish.contains(&s), "{s} missing from {:?}", p.publish);
    }
    assert!(!p.publish.iter().any(|s| s.starts_with("auth.")));
    assert!(
        !p.publish
            .iter()
            .any(|s| s.contains("DELETE") || s.contains("PURGE"))
    );
    // Its inbox is in its database: no key-value bucket at all.
    assert!(
        !p.publish.iter().any(|s| s.contains("KV")),
        "{:?}",
        p.publish
    );
    assert_eq!(p.subscribe, ["_INBOX_catalog-service.>"]);
}

#[test]
fn a_consumer_with_an_idempotency_bucket_uses_its_own_keys() {
    let (_, topo) = shipped();
    let text = format!(
        "{IDENTITIES}\n[[identities]]\nname = \"kv\"\nrole = \"service\"\n\
         consumes = [{{ group = \"kv\", filter = \"auth.user.*\" }}]\n\
         idempotency_bucket = \"EVENTS_IDEMPOTENCY\"\n"
    );
    let ids = IdentitiesSpec::from_toml(&text, "identities.toml").unwrap();
    let p = permissions(ids.get("kv").unwrap(), &topo).unwrap();
    let d = "kv__auth_user_any";
    for s in [
        format!("$KV.EVENTS_IDEMPOTENCY.{d}.>"),
        format!("$JS.API.DIRECT.GET.KV_EVENTS_IDEMPOTENCY.$KV.EVENTS_IDEMPOTENCY.{d}.>"),
    ] {
        assert!(p.publish.contains(&s), "{s} missing from {:?}", p.publish);
    }
    assert!(
        !p.publish
            .iter()
            .any(|s| s.contains("DELETE") || s.contains("PURGE"))
    );
}

#[test]
fn only_the_operator_has_the_whole_api() {
    let (ids, topo) = shipped();
    for id in &ids.identities {
        let p = permissions(id, &topo).unwrap();
        let whole = p.publish.iter().any(|s| s == "$JS.API.>");
        assert_eq!(whole, id.role == Role::Operator, "{}", id.name);
    }
}

#[test]
fn the_dead_letter_admin_deletes_dead_letters_and_nothing_else() {
    let p = perms("admin-server");
    let deletes: Vec<&String> = p
        .publish
        .iter()
        .filter(|s| s.contains("DELETE") || s.contains("PURGE"))
        .collect();
    assert_eq!(
        deletes,
        [
            "$JS.API.STREAM.MSG.DELETE.DLQ_EVENTS",
            "$JS.API.STREAM.PURGE.DLQ_EVENTS",
            "$JS.API.CONSUMER.DELETE.DLQ_EVENTS.*"
        ]
    );
    assert!(p.publish.contains(&"auth.>".to_owned()), "replays");
    assert!(
        !p.publish.contains(&"dlq.>".to_owned()),
        "never forges dead letters"
    );
}

#[test]
fn a_domain_without_a_stream_is_refused() {
    let (_, topo) = shipped();
    let ids = IdentitiesSpec::from_toml(
        "[[identities]]\nname = \"x\"\nrole = \"service\"\nproduces = [\"billing\"]\n",
        "t",
    )
    .unwrap();
    let err = generate(&ids, &topo).unwrap_err().to_string();
    assert!(err.contains("\"x\" produces \"billing\""), "{err}");
}

#[test]
fn bad_declarations_name_the_identity() {
    for (toml, want) in [
        (
            "name = \"Bad\"\nrole = \"service\"",
            "identity name \"Bad\"",
        ),
        (
            "name = \"op\"\nrole = \"operator\"\nproduces = [\"auth\"]",
            "are for role",
        ),
        (
            "name = \"s\"\nrole = \"service\"\nidempotency_bucket = \"B\"",
            "without consumes",
        ),
        ("name = \"s\"\nrole = \"nobody\"", "unknown variant"),
    ] {
        let err = IdentitiesSpec::from_toml(&format!("[[identities]]\n{toml}\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{toml}: {err}");
    }
    let twice = "[[identities]]\nname = \"a\"\nrole = \"operator\"\n".repeat(2);
    let err = IdentitiesSpec::from_toml(&twice, "t")
        .unwrap_err()
        .to_string();
    assert!(err.contains("declared twice"), "{err}");
}

#[test]
fn the_include_names_each_key_and_no_seed() {
    let (ids, topo) = shipped();
    let generated = generate(&ids, &topo).unwrap();
    let text = render_auth_conf(&generated);
    for id in &generated {
        assert!(id.public_key.starts_with('U'));
        assert!(text.contains(&id.public_key));
        assert!(!text.contains(id.seed()));
        assert!(!format!("{id:?}").contains(id.seed()));
    }
    assert!(
        text.contains("subscribe: { allow: [\"_INBOX_operator.>\"] }"),
        "{text}"
    );
}

#[test]
fn probe_subjects_fill_the_wildcards() {
    let f = |s: &str| probe_subject(&SubjectFilter::new(s).unwrap());
    assert_eq!(f("auth.>"), "auth.doctor.probe");
    assert_eq!(f("dlq.auth.user.*"), "dlq.auth.user.doctor");
}
