//! The deployment checks: server, durability, streams, cluster, consumers, dead letters.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use events::topology::{self, Action, ApplyOptions, TopologySpec};
use futures::TryStreamExt as _;

use super::{Check, DoctorArgs, Status, http, probe};
use crate::args::ConnArgs;

/// Bound on each JetStream request of the checks.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Every check but the identity's; a connection failure is one failed check.
pub(super) async fn run_all(
    conn: &ConnArgs,
    args: &DoctorArgs,
    topology: &TopologySpec,
) -> Vec<Check> {
    let mut out = Vec::new();
    let watched = match probe::connect(conn, None, None).await {
        Ok(w) => w,
        Err(e) => {
            out.push(Check::new(
                "server",
                conn.server.join(","),
                Status::Fail,
                format!("{e:#}"),
            ));
            return out;
        }
    };
    let client = watched.client.clone();
    let js = jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client.clone());
    out.push(server(&client, &js).await);
    out.push(durability(conn, args).await);
    out.extend(streams(&js, topology).await);
    out.extend(cluster(&js, topology).await);
    out.extend(consumers(&js, args.lag_threshold).await);
    out.push(dead_letters(&js, topology).await);
    out
}

async fn server(client: &async_nats::Client, js: &jetstream::Context) -> Check {
    let info = client.server_info();
    let what = format!("{} {}", info.server_name, info.version);
    match js.query_account().await {
        Ok(account) => Check::new(
            "server",
            what,
            Status::Ok,
            format!(
                "nats-server {}, JetStream enabled ({} streams)",
                info.version, account.streams
            ),
        ),
        Err(e) => Check::new(
            "server",
            what,
            Status::Fail,
            format!("JetStream does not answer: {e}"),
        ),
    }
}

async fn durability(conn: &ConnArgs, args: &DoctorArgs) -> Check {
    let (url, given) = match &args.monitor_url {
        Some(u) => (u.clone(), true),
        None => (
            http::default_monitor_url(conn.server.first().map_or("", String::as_str)),
            false,
        ),
    };
    let varz = match http::get_json(&url, "/varz", REQUEST_TIMEOUT).await {
        Ok(v) => v,
        Err(e) if given => return Check::new("durability", url, Status::Fail, format!("{e:#}")),
        Err(_) => {
            return Check::new(
                "durability",
                url,
                Status::Skip,
                "the monitoring port does not answer there; give --monitor-url to check sync_interval",
            );
        }
    };
    sync_check(&url, &varz["jetstream"]["config"])
}

/// Judges the JetStream config of `/varz`: `sync_always` is what the contract asks for.
pub(super) fn sync_check(url: &str, config: &serde_json::Value) -> Check {
    if config["sync_always"].as_bool() == Some(true) {
        return Check::new(
            "durability",
            url,
            Status::Ok,
            "JetStream fsyncs every write (sync_interval: always)",
        );
    }
    let every = config["sync_interval"]
        .as_u64()
        .map_or("the default 2m".to_owned(), |ns| {
            humantime::format_duration(Duration::from_nanos(ns)).to_string()
        });
    Check::new(
        "durability",
        url,
        Status::Warn,
        format!(
            "JetStream fsyncs only every {every}: an acknowledged event can be lost if the machine \
             loses power or a majority of nodes crash together; set `sync_interval: always` in the \
             jetstream block (slower writes, no acknowledged loss)"
        ),
    )
}

async fn streams(js: &jetstream::Context, topology: &TopologySpec) -> Vec<Check> {
    let mut spec = topology.clone();
    // Durable consumers declared in the file are checked by the consumer lines below.
    spec.consumers.clear();
    let report = match topology::apply(js, &spec, &ApplyOptions::new(true, false)).await {
        Ok(r) => r,
        Err(e) => {
            return vec![Check::new(
                "streams",
                "",
                Status::Fail,
                events::error_chain(&e),
            )];
        }
    };
    report
        .items
        .iter()
        .map(|item| {
            let (status, message) = match &item.action {
                Action::Unchanged => (
                    Status::Ok,
                    format!("matches the file (profile {})", topology.profile),
                ),
                Action::Created => (
                    Status::Fail,
                    "missing: run `eventctl streams apply`".to_owned(),
                ),
                Action::Updated(changes) | Action::Refused { changes, .. } => (
                    Status::Fail,
                    format!(
                        "differs from the file: {}",
                        changes
                            .iter()
                            .map(|c| format!("{} is {} (file: {})", c.field, c.from, c.to))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                other => (Status::Warn, format!("{other:?}")),
            };
            Check::new("streams", item.name.clone(), status, message)
        })
        .collect()
}

async fn cluster(js: &jetstream::Context, topology: &TopologySpec) -> Vec<Check> {
    let mut out = Vec::new();
    for s in &topology.streams {
        let Ok(mut stream) = js.get_stream(s.name.as_str()).await else {
            continue; // reported missing above
        };
        let Ok(info) = stream.info().await else {
            continue;
        };
        let Some(cluster) = &info.cluster else {
            continue;
        };
        let lagging: Vec<String> = cluster
            .replicas
            .iter()
            .filter(|r| !r.current || r.offline)
            .map(|r| {
                format!(
                    "{} ({})",
                    r.name,
                    if r.offline { "offline" } else { "not current" }
                )
            })
            .collect();
        if !lagging.is_empty() {
            out.push(Check::new(
                "cluster",
                s.name.to_string(),
                Status::Fail,
                format!("replicas behind: {}", lagging.join(", ")),
            ));
        } else if !cluster.replicas.is_empty() {
            let leader = cluster.leader.clone().unwrap_or_default();
            out.push(Check::new(
                "cluster",
                s.name.to_string(),
                Status::Ok,
                format!("leader {leader}, {} peers current", cluster.replicas.len()),
            ));
        }
    }
    if out.is_empty() {
        out.push(Check::new(
            "cluster",
            "",
            Status::Ok,
            "single server or no replicated stream: no peers to check",
        ));
    }
    out
}

async fn consumers(js: &jetstream::Context, threshold: u64) -> Vec<Check> {
    let mut out = Vec::new();
    let names: Vec<String> = match js.stream_names().try_collect().await {
        Ok(n) => n,
        Err(e) => {
            return vec![Check::new(
                "consumers",
                "",
                Status::Fail,
                format!("cannot list streams: {e}"),
            )];
        }
    };
    for name in names {
        let Ok(stream) = js.get_stream_no_info(&name).await else {
            continue;
        };
        let infos: Vec<consumer::Info> = match stream.consumers().try_collect().await {
            Ok(i) => i,
            Err(e) => {
                out.push(Check::new(
                    "consumers",
                    name.clone(),
                    Status::Fail,
                    format!("cannot list consumers: {e}"),
                ));
                continue;
            }
        };
        for info in infos.iter().filter(|i| i.config.durable_name.is_some()) {
            out.push(consumer_check(&stream, info, threshold).await);
        }
    }
    out
}

async fn consumer_check(
    stream: &stream::Stream<()>,
    info: &consumer::Info,
    threshold: u64,
) -> Check {
    let lag = info.num_pending + info.num_ack_pending as u64;
    let age = events::subscriber::oldest_unfinished_age(stream, info).await;
    let deliveries = info.delivered.consumer_sequence.max(1);
    let redelivered = info.num_redelivered as u64;
    let rate = 100.0 * redelivered as f64 / deliveries as f64;
    let message = format!(
        "lag {lag} message(s), oldest unfinished {}, {redelivered} redelivered not yet acked ({rate:.1}% of {} deliveries)",
        age.map_or("-".to_owned(), crate::output::age),
        info.delivered.consumer_sequence,
    );
    let status = if lag > threshold {
        Status::Warn
    } else {
        Status::Ok
    };
    let message = if lag > threshold {
        format!("{message}; over the threshold of {threshold}")
    } else {
        message
    };
    Check::new(
        "consumers",
        format!("{}/{}", info.stream_name, info.name),
        status,
        message,
    )
}

async fn dead_letters(js: &jetstream::Context, topology: &TopologySpec) -> Check {
    let Some(dlq) = topology
        .streams
        .iter()
        .find(|s| s.subjects.iter().any(|f| f.as_str() == "dlq.>"))
    else {
        return Check::new(
            "dead letters",
            "",
            Status::Skip,
            "the file declares no dead-letter stream",
        );
    };
    let name = dlq.name.to_string();
    let depth = match js.get_stream(&name).await {
        Ok(mut s) => match s.info().await {
            Ok(i) => i.state.messages,
            Err(e) => {
                return Check::new(
                    "dead letters",
                    name,
                    Status::Fail,
                    format!("cannot read: {e}"),
                );
            }
        },
        Err(_) => return Check::new("dead letters", name, Status::Skip, "missing (see streams)"),
    };
    if depth == 0 {
        Check::new("dead letters", name, Status::Ok, "empty")
    } else {
        Check::new(
            "dead letters",
            name,
            Status::Warn,
            format!(
                "{depth} dead letter(s) waiting: `eventctl dlq list` says why, `eventctl dlq replay` moves them back"
            ),
        )
    }
}
