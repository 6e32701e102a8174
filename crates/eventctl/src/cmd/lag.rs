//! `eventctl lag`: pending and ack-pending messages per consumer, flagged over a threshold.

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, ErrorCode, consumer, context::GetStreamErrorKind};
use clap::Args;
use events::subscriber::{Lag, is_group_consumer};
use futures::TryStreamExt as _;
use serde_json::json;

use super::connect;
use crate::args::ConnArgs;
use crate::output::{self, Table};

/// The plan's alert level for a consumer's lag.
pub(crate) const DEFAULT_THRESHOLD: u64 = 1000;

/// `lag` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    eventctl lag\n  \
    eventctl lag --group catalog-service\n  \
    eventctl lag --stream AUTH_EVENTS --threshold 100 --json\n  \
    eventctl lag --fail-over-threshold   # for cron/CI checks\n\n\
Lists durable consumers (the groups); ephemeral ones are left out. \
LAG = PENDING (not yet delivered) + ACK_PENDING (delivered, not acked): the \
subscription_lag metric. A consumer over --threshold is marked with `!` (JSON: \
\"over_threshold\": true). The exit code stays 0 when consumers are flagged, unless \
--fail-over-threshold is given (then 1).")]
pub(crate) struct LagArgs {
    /// Only this group's consumers (named G or `G__<filter>`).
    #[arg(long, value_name = "G")]
    pub(crate) group: Option<String>,
    /// Only consumers of this stream.
    #[arg(long, value_name = "S")]
    pub(crate) stream: Option<String>,
    /// Flag consumers whose lag is over this many messages.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_THRESHOLD)]
    pub(crate) threshold: u64,
    /// Exit 1 if any consumer is over the threshold.
    #[arg(long)]
    pub(crate) fail_over_threshold: bool,
    /// Print JSON: { threshold, over_threshold, consumers: [...] }.
    #[arg(long)]
    pub(crate) json: bool,
}

struct Row {
    stream: String,
    consumer: String,
    lag: Lag,
}

impl Row {
    fn lag(&self) -> u64 {
        self.lag.total()
    }
}

pub(crate) async fn run(conn: &ConnArgs, args: LagArgs) -> anyhow::Result<()> {
    let nats = connect(conn).await?;
    let js = nats.jetstream();
    let streams: Vec<String> = match &args.stream {
        Some(name) => {
            check_stream(js, name, nats.urls()).await?;
            vec![name.clone()]
        }
        None => {
            let mut names: Vec<String> = js
                .stream_names()
                .try_collect()
                .await
                .context("listing streams")?;
            names.sort();
            names
        }
    };
    let mut rows = Vec::new();
    for name in &streams {
        let infos: Vec<consumer::Info> = js
            .get_stream_no_info(name)
            .await
            .with_context(|| format!("opening stream {name}"))?
            .consumers()
            .try_collect()
            .await
            .with_context(|| format!("listing consumers of {name}"))?;
        for info in infos {
            // Ephemeral consumers (tails, scans) come and go; the lag that matters is
            // the groups'.
            if info.config.durable_name.is_none() {
                continue;
            }
            if let Some(g) = &args.group
                && !is_group_consumer(&info.name, g)
            {
                continue;
            }
            rows.push(Row {
                stream: name.clone(),
                consumer: info.name.clone(),
                lag: Lag::from(&info),
            });
        }
    }
    rows.sort_by(|a, b| (&a.stream, &a.consumer).cmp(&(&b.stream, &b.consumer)));
    let over = rows.iter().filter(|r| r.lag() > args.threshold).count();

    if args.json {
        let consumers: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "stream": r.stream,
                    "consumer": r.consumer,
                    "pending": r.lag.pending,
                    "ack_pending": r.lag.ack_pending,
                    "redelivered": r.lag.redelivered,
                    "waiting": r.lag.waiting,
                    "lag": r.lag(),
                    "over_threshold": r.lag() > args.threshold,
                })
            })
            .collect();
        output::print_json(&json!({
            "threshold": args.threshold,
            "over_threshold": over,
            "consumers": consumers,
        }))?;
    } else if rows.is_empty() {
        match &args.group {
            Some(g) => println!("no consumers of group {g}"),
            None => println!("no consumers"),
        }
    } else {
        let mut table = Table::new(&[
            "!",
            "STREAM",
            "CONSUMER",
            "PENDING",
            "ACK_PENDING",
            "REDELIVERED",
            "LAG",
        ]);
        for r in &rows {
            table.row(vec![
                if r.lag() > args.threshold { "!" } else { "" }.into(),
                r.stream.clone(),
                r.consumer.clone(),
                r.lag.pending.to_string(),
                r.lag.ack_pending.to_string(),
                r.lag.redelivered.to_string(),
                r.lag().to_string(),
            ]);
        }
        print!("{}", table.render());
        println!(
            "{over} of {} consumer(s) over the threshold of {}",
            rows.len(),
            args.threshold
        );
    }
    if args.fail_over_threshold && over > 0 {
        bail!(
            "{over} consumer(s) over the lag threshold of {}",
            args.threshold
        );
    }
    Ok(())
}

async fn check_stream(js: &jetstream::Context, name: &str, urls: &str) -> anyhow::Result<()> {
    match js.get_stream(name).await {
        Ok(_) => Ok(()),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(je) if je.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                bail!("stream {name} not found on {urls}")
            }
            GetStreamErrorKind::InvalidStreamName | GetStreamErrorKind::EmptyName => {
                bail!("invalid stream name {name:?}")
            }
            _ => Err(e).with_context(|| format!("reading stream {name}")),
        },
    }
}
