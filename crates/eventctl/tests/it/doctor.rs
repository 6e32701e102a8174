//! `doctor`: a healthy server flags nothing, the default sync interval warns, missing
//! streams fail, and an identity's rights and denials are probed on a secured server.

use std::path::{Path, PathBuf};

use events::security::{GeneratedIdentity, IdentitiesSpec, generate, render_auth_conf};
use events::topology::{self, ApplyOptions, TopologySpec};
use events_testkit::{NatsServer, SecureNatsServer, SyncMode};

use crate::{assert_code, eventctl, json, server_with_topology, streams_toml};

fn identities_toml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/secure/identities.toml")
}

async fn doctor(nats: &NatsServer, extra: &[&str]) -> std::process::Output {
    let file = streams_toml();
    let monitor = nats.monitor_url();
    let mut args = vec![
        "doctor",
        "--file",
        file.to_str().unwrap(),
        "--monitor-url",
        &monitor,
        "--json",
    ];
    args.extend_from_slice(extra);
    eventctl(&nats.url(), &args).await
}

fn checks<'a>(report: &'a serde_json::Value, area: &str) -> Vec<&'a serde_json::Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["area"] == area)
        .collect()
}

#[tokio::test]
async fn doctor_flags_nothing_on_a_durable_server_with_the_streams_applied() {
    let nats = server_with_topology().await;
    let out = doctor(&nats, &[]).await;
    assert_code(&out, 0);
    let report = json(&out);
    assert_eq!(report["problems"], 0, "{report:#}");
    assert_eq!(checks(&report, "durability")[0]["status"], "ok");
    let streams = checks(&report, "streams");
    assert_eq!(streams.len(), crate::declared_streams().len(), "{report:#}");
    assert!(streams.iter().all(|c| c["status"] == "ok"));
    assert_eq!(checks(&report, "server")[0]["status"], "ok");
}

#[tokio::test]
async fn doctor_warns_when_jetstream_does_not_sync_every_write() {
    let nats = NatsServer::builder().sync(SyncMode::Default).start().await;
    assert_code(&crate::apply(&nats.url()).await, 0);
    let out = doctor(&nats, &[]).await;
    assert_code(&out, 1);
    let report = json(&out);
    assert_eq!(report["problems"], 1, "{report:#}");
    let sync = checks(&report, "durability")[0];
    assert_eq!(sync["status"], "warn");
    let message = sync["message"].as_str().unwrap();
    assert!(message.contains("sync_interval: always"), "{message}");
    assert!(message.contains("can be lost"), "{message}");
}

#[tokio::test]
async fn doctor_fails_on_missing_streams() {
    let nats = NatsServer::start().await;
    let out = doctor(&nats, &[]).await;
    assert_code(&out, 1);
    let report = json(&out);
    let streams = checks(&report, "streams");
    assert!(streams.iter().all(|c| c["status"] == "fail"), "{report:#}");
    assert!(
        streams[0]["message"]
            .as_str()
            .unwrap()
            .contains("eventctl streams apply")
    );
}

/// A secured server with the shipped identities (`widen` may loosen them first), the
/// streams applied by the operator, and every seed in a private directory.
async fn secured(
    widen: impl FnOnce(&mut [GeneratedIdentity]),
) -> (SecureNatsServer, tempfile::TempDir) {
    let text = std::fs::read_to_string(streams_toml()).unwrap();
    let topology = TopologySpec::from_toml(&text, "streams.toml", "dev").unwrap();
    let text = std::fs::read_to_string(identities_toml()).unwrap();
    let spec = IdentitiesSpec::from_toml(&text, "identities.toml").unwrap();
    let mut ids = generate(&spec, &topology).unwrap();
    widen(&mut ids);
    let nats = SecureNatsServer::start(render_auth_conf(&ids)).await;
    let seeds = tempfile::tempdir().unwrap();
    for id in &ids {
        std::fs::write(seeds.path().join(format!("{}.nk", id.name())), id.seed()).unwrap();
    }
    let op = ids.iter().find(|i| i.name() == "operator").unwrap();
    let client = nats.client("operator", op.seed()).await;
    let js = async_nats::jetstream::new(client);
    topology::apply(&js, &topology, &ApplyOptions::default())
        .await
        .unwrap();
    (nats, seeds)
}

async fn doctor_as(nats: &SecureNatsServer, seeds: &Path, identity: &str) -> serde_json::Value {
    let (file, ids) = (streams_toml(), identities_toml());
    let ca = nats.pki().ca_file();
    let operator = seeds.join("operator.nk");
    let identity_seed = seeds.join(format!("{identity}.nk"));
    let monitor = nats.server().monitor_url();
    let args = [
        "--tls-ca",
        ca.to_str().unwrap(),
        "--nkey",
        operator.to_str().unwrap(),
        "--inbox-prefix",
        "_INBOX_operator",
        "doctor",
        "--file",
        file.to_str().unwrap(),
        "--monitor-url",
        &monitor,
        "--identity",
        identity,
        "--identity-nkey",
        identity_seed.to_str().unwrap(),
        "--identities",
        ids.to_str().unwrap(),
        "--json",
    ];
    let out = eventctl(&nats.url(), &args).await;
    let report = json(&out);
    let code = if report["problems"] == 0 { 0 } else { 1 };
    assert_code(&out, code);
    report
}

#[tokio::test]
async fn doctor_proves_an_identity_can_do_its_job_and_nothing_else() {
    let (nats, seeds) = secured(|_| {}).await;
    let report = doctor_as(&nats, seeds.path(), "auth-service").await;
    assert_eq!(report["problems"], 0, "{report:#}");
    let probes = checks(&report, "identity");
    let said = |needle: &str| {
        probes
            .iter()
            .any(|c| c["status"] == "ok" && c["message"].as_str().unwrap().contains(needle))
    };
    assert!(said("may publish to auth.doctor.probe"), "{report:#}");
    assert!(said("is denied catalog.doctor.probe"), "{report:#}");
    assert!(said("is denied dlq.doctor.probe"), "{report:#}");
    assert!(said("is denied $JS.API.STREAM.DELETE."), "{report:#}");
    // The allowed publish probe stored nothing (its Nats-Expected-Stream names no stream).
    let seed = std::fs::read_to_string(seeds.path().join("operator.nk")).unwrap();
    let js = async_nats::jetstream::new(nats.client("operator", &seed).await);
    let mut auth = js.get_stream("AUTH_EVENTS").await.unwrap();
    assert_eq!(auth.info().await.unwrap().state.messages, 0);
}

#[tokio::test]
async fn doctor_flags_an_identity_that_can_reach_too_much() {
    let (nats, seeds) = secured(|ids| {
        let auth = ids.iter_mut().find(|i| i.name() == "auth-service").unwrap();
        auth.permissions.publish.push("catalog.>".into());
    })
    .await;
    let report = doctor_as(&nats, seeds.path(), "auth-service").await;
    assert_eq!(report["problems"], 1, "{report:#}");
    let flagged: Vec<_> = checks(&report, "identity")
        .into_iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    let message = flagged[0]["message"].as_str().unwrap();
    assert!(message.contains("catalog.doctor.probe"), "{message}");
}
