//! `eventctl doctor`: checks a deployment and says what is wrong in plain words.
//!
//! Checks, in order: the server (version, JetStream), durability (`sync_interval`, read
//! from the monitoring port's `/varz`, since no client API tells it), every declared
//! stream against `streams.toml` and the profile's replicas (the topology diff, read
//! only), cluster peers, each durable consumer (lag in messages and seconds, redeliveries),
//! the dead-letter depth, and, given an identity, that its credentials can do what its
//! role needs and nothing it should not. Warnings and failures both exit 1.

mod checks;
mod http;
mod probe;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;

use crate::args::{ConnArgs, Profile};
use crate::output;

/// `doctor` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    eventctl doctor\n  \
    eventctl doctor --monitor-url http://127.0.0.1:8222 --json\n  \
    eventctl --server tls://127.0.0.1:4222 --tls-ca .data/secure/tls/ca.pem \\\n    \
      --nkey .data/secure/operator.nk --inbox-prefix _INBOX_operator doctor \\\n    \
      --identity auth-service\n\n\
Each line is OK, WARN, FAIL or SKIP. Exit 0 when nothing is flagged, 1 when any check \
warns or fails (so it can gate a deploy), 2 on a usage error.")]
pub(crate) struct DoctorArgs {
    /// The declared topology the streams must match.
    #[arg(long, default_value = "deploy/streams.toml", value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Profile of the topology file (sets the expected replicas).
    #[arg(long, value_enum, default_value = "dev")]
    pub(crate) profile: Profile,
    /// The server's monitoring URL, for the durability check (`/varz`). Default: port
    /// 8222 on the host of the first server URL, skipped if that does not answer.
    #[arg(long, value_name = "URL")]
    pub(crate) monitor_url: Option<String>,
    /// Flag consumers with more pending + unacknowledged messages than this.
    #[arg(long, default_value_t = crate::cmd::lag::DEFAULT_THRESHOLD, value_name = "N")]
    pub(crate) lag_threshold: u64,
    /// Check that this identity can do what its role needs and nothing more.
    #[arg(long, value_name = "NAME")]
    pub(crate) identity: Option<String>,
    /// The identity's nkey seed file [default: .data/secure/NAME.nk].
    #[arg(long, value_name = "FILE", requires = "identity")]
    pub(crate) identity_nkey: Option<PathBuf>,
    /// The identities file the role is read from.
    #[arg(
        long,
        default_value = "deploy/secure/identities.toml",
        value_name = "FILE"
    )]
    pub(crate) identities: PathBuf,
    /// How long a permission probe waits for its answer.
    #[arg(long, default_value = "2s", value_parser = crate::args::parse_duration, value_name = "DURATION")]
    pub(crate) probe_timeout: Duration,
    /// Print JSON: { problems, checks: [{ area, subject, status, message }] }.
    #[arg(long)]
    pub(crate) json: bool,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }

    fn is_problem(self) -> bool {
        matches!(self, Self::Warn | Self::Fail)
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) area: &'static str,
    pub(crate) subject: String,
    pub(crate) status: Status,
    pub(crate) message: String,
}

impl Check {
    pub(crate) fn new(
        area: &'static str,
        subject: impl Into<String>,
        status: Status,
        message: impl Into<String>,
    ) -> Self {
        Self {
            area,
            subject: subject.into(),
            status,
            message: message.into(),
        }
    }
}

pub(crate) async fn run(conn: &ConnArgs, args: DoctorArgs) -> anyhow::Result<()> {
    let source = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {source}"))?;
    let topology =
        events::topology::TopologySpec::from_toml(&text, &source, args.profile.as_str())?;
    let mut report = checks::run_all(conn, &args, &topology).await;
    if let Some(name) = &args.identity {
        report.extend(probe::identity(conn, &args, &topology, name).await?);
    }
    print(&report, args.json)?;
    let problems = report.iter().filter(|c| c.status.is_problem()).count();
    if problems > 0 {
        bail!("doctor found {problems} problem(s)");
    }
    Ok(())
}

fn print(report: &[Check], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        let checks: Vec<_> = report
            .iter()
            .map(|c| {
                json!({
                    "area": c.area,
                    "subject": c.subject,
                    "status": c.status.as_str(),
                    "message": c.message,
                })
            })
            .collect();
        let problems = report.iter().filter(|c| c.status.is_problem()).count();
        return output::print_json(&json!({ "problems": problems, "checks": checks }));
    }
    let mut table = output::Table::new(&["STATUS", "AREA", "WHAT", "FINDING"]);
    for c in report {
        table.row(vec![
            c.status.as_str().to_uppercase(),
            c.area.to_owned(),
            c.subject.clone(),
            c.message.clone(),
        ]);
    }
    println!("{}", table.render());
    if !report.iter().any(|c| c.status.is_problem()) {
        println!("no problem found");
    }
    Ok(())
}
