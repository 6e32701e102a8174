//! catalog-service under least privilege (issue #14): its own identity over TLS sets up
//! its consumer; another identity is denied at once with the typed error.

use std::time::{Duration, Instant};

use catalog_service::subscribe_on;
use events::connection::{AuthConfig, ConnectConfig, Connection, TlsConfig, connect};
use events::security::{
    GeneratedIdentity, IdentitiesSpec, generate, inbox_prefix, render_auth_conf,
};
use events::subscriber::{SubscribeError, SubscriberConfig};
use events::topology::{ApplyOptions, TopologySpec, apply};
use events_testkit::SecureNatsServer;
use tempfile::TempDir;

const STREAMS: &str = include_str!("../../../../deploy/streams.toml");
const IDENTITIES: &str = include_str!("../../../../deploy/secure/identities.toml");
/// The request timeout of these connections: a denial must come well before it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

async fn connect_as(
    nats: &SecureNatsServer,
    ids: &[GeneratedIdentity],
    name: &str,
    dir: &TempDir,
) -> Connection {
    let id = ids.iter().find(|i| i.name() == name).expect("identity");
    let seed = dir.path().join(format!("{name}.nk"));
    std::fs::write(&seed, id.seed()).unwrap();
    let config = ConnectConfig {
        urls: vec![nats.url()],
        name: Some(name.into()),
        auth: AuthConfig {
            nkey_seed_file: Some(seed),
            ..Default::default()
        },
        tls: TlsConfig {
            ca_file: Some(nats.pki().ca_file()),
            require_tls: true,
            ..Default::default()
        },
        inbox_prefix: Some(inbox_prefix(name)),
        request_timeout: REQUEST_TIMEOUT,
        ..Default::default()
    };
    connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test]
async fn only_catalog_services_identity_sets_up_its_consumer() {
    let topology = TopologySpec::from_toml(STREAMS, "streams.toml", "dev").unwrap();
    let spec = IdentitiesSpec::from_toml(IDENTITIES, "identities.toml").unwrap();
    let ids = generate(&spec, &topology).unwrap();
    let nats = SecureNatsServer::start(render_auth_conf(&ids)).await;
    let dir = TempDir::new().unwrap();
    let operator = connect_as(&nats, &ids, "operator", &dir).await;
    apply(operator.jetstream(), &topology, &ApplyOptions::default())
        .await
        .unwrap();

    let stranger = connect_as(&nats, &ids, "auth-service", &dir).await;
    let started = Instant::now();
    match subscribe_on(&stranger, SubscriberConfig::default()).await {
        Err(SubscribeError::PermissionDenied { consumer, .. }) => {
            assert_eq!(consumer, "catalog-service__auth_user_any");
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    assert!(
        started.elapsed() < REQUEST_TIMEOUT,
        "denied only at the timeout"
    );

    let own = connect_as(&nats, &ids, "catalog-service", &dir).await;
    let subscriber = subscribe_on(&own, SubscriberConfig::default())
        .await
        .expect("catalog-service sets up its own consumer");
    assert_eq!(subscriber.durable_name(), "catalog-service__auth_user_any");
}
