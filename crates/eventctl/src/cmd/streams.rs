//! `eventctl streams apply | list | info`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind, stream};
use clap::{Args, Subcommand};
use events::topology::{ApplyOptions, TopologySpec};
use futures::TryStreamExt as _;
use serde_json::json;

use super::connect;
use crate::args::{ConnArgs, Profile};
use crate::output::{self, Table};

/// Runs one `streams` subcommand.
pub(crate) async fn run(conn: &ConnArgs, cmd: StreamsCommand) -> anyhow::Result<()> {
    match cmd {
        StreamsCommand::Apply(args) => apply(conn, args).await,
        StreamsCommand::List(args) => list(conn, args).await,
        StreamsCommand::Info(args) => info(conn, args).await,
    }
}

async fn apply(conn: &ConnArgs, args: ApplyArgs) -> anyhow::Result<()> {
    let source = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {source}"))?;
    // The spec is checked before connecting: a bad file needs no server.
    let spec = TopologySpec::from_toml(&text, &source, args.profile.as_str())?;
    let nats = connect(conn).await?;
    let options = ApplyOptions::new(args.dry_run, args.force);
    let report = events::topology::apply(nats.jetstream(), &spec, &options)
        .await
        .with_context(|| format!("applying {source} (profile {})", spec.profile))?;
    println!("{report}");
    let refused = report.refused().count();
    if refused > 0 {
        bail!(
            "{refused} resource(s) not updated: the change could drop stored messages or \
             cannot be made in place (see above; --force applies the ones that drop data)"
        );
    }
    Ok(())
}

async fn list(conn: &ConnArgs, args: ListArgs) -> anyhow::Result<()> {
    let nats = connect(conn).await?;
    let mut infos: Vec<stream::Info> = nats
        .jetstream()
        .streams()
        .try_collect()
        .await
        .context("listing streams")?;
    infos.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    if args.json {
        let items: Vec<_> = infos
            .iter()
            .map(|i| {
                json!({
                    "name": i.config.name,
                    "subjects": i.config.subjects,
                    "messages": i.state.messages,
                    "bytes": i.state.bytes,
                    "consumers": i.state.consumer_count,
                    "replicas": i.config.num_replicas,
                })
            })
            .collect();
        return output::print_json(&json!(items));
    }
    if infos.is_empty() {
        println!("no streams (create them with: eventctl streams apply)");
        return Ok(());
    }
    let mut table = Table::new(&[
        "NAME",
        "SUBJECTS",
        "MESSAGES",
        "BYTES",
        "CONSUMERS",
        "REPLICAS",
    ]);
    for i in &infos {
        table.row(vec![
            i.config.name.clone(),
            i.config.subjects.join(","),
            i.state.messages.to_string(),
            output::bytes(i.state.bytes),
            i.state.consumer_count.to_string(),
            i.config.num_replicas.to_string(),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

async fn info(conn: &ConnArgs, args: InfoArgs) -> anyhow::Result<()> {
    let nats = connect(conn).await?;
    let js: &jetstream::Context = nats.jetstream();
    let stream = match js.get_stream(&args.name).await {
        Ok(s) => s,
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(je) if je.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                bail!("stream {} not found on {}", args.name, nats.urls())
            }
            GetStreamErrorKind::InvalidStreamName | GetStreamErrorKind::EmptyName => {
                bail!("invalid stream name {:?}", args.name)
            }
            _ => return Err(e).with_context(|| format!("reading stream {}", args.name)),
        },
    };
    let consumers: Vec<String> = stream
        .consumer_names()
        .try_collect()
        .await
        .with_context(|| format!("listing consumers of {}", args.name))?;
    let info = stream.cached_info();
    let (c, s) = (&info.config, &info.state);
    let has_messages = s.messages > 0;
    let first = has_messages.then_some(s.first_timestamp);
    let last = has_messages.then_some(s.last_timestamp);
    let storage = format!("{:?}", c.storage).to_lowercase();
    let retention = format!("{:?}", c.retention).to_lowercase();
    let discard = format!("{:?}", c.discard).to_lowercase();

    if args.json {
        return output::print_json(&json!({
            "name": c.name,
            "subjects": c.subjects,
            "messages": s.messages,
            "bytes": s.bytes,
            "first_sequence": s.first_sequence,
            "last_sequence": s.last_sequence,
            "first_time": first.map(|t| output::time(Some(t))),
            "last_time": last.map(|t| output::time(Some(t))),
            "consumers": consumers,
            "limits": {
                "storage": storage,
                "retention": retention,
                "discard": discard,
                "max_age_seconds": c.max_age.as_secs(),
                "max_bytes": c.max_bytes,
                "max_msgs": c.max_messages,
                "max_msgs_per_subject": c.max_messages_per_subject,
                "max_msg_size": c.max_message_size,
                "duplicate_window_seconds": c.duplicate_window.as_secs(),
                "replicas": c.num_replicas,
                "allow_atomic": c.allow_atomic_publish,
            },
        }));
    }

    let consumers_shown = if consumers.is_empty() {
        "0".to_owned()
    } else {
        format!("{} ({})", consumers.len(), consumers.join(", "))
    };
    let lines = [
        ("Stream", c.name.clone()),
        ("Subjects", c.subjects.join(", ")),
        ("Messages", s.messages.to_string()),
        ("Bytes", output::bytes(s.bytes)),
        (
            "First",
            format!("{} (seq {})", output::time(first), s.first_sequence),
        ),
        (
            "Last",
            format!("{} (seq {})", output::time(last), s.last_sequence),
        ),
        ("Consumers", consumers_shown),
        ("Storage", storage),
        ("Retention", retention),
        ("Discard", discard),
        ("Max age", output::age(c.max_age)),
        ("Max bytes", output::limit(c.max_bytes, output::bytes)),
        ("Max msgs", output::limit(c.max_messages, |n| n.to_string())),
        (
            "Max msgs/subject",
            output::limit(c.max_messages_per_subject, |n| n.to_string()),
        ),
        (
            "Max msg size",
            output::limit(i64::from(c.max_message_size), output::bytes),
        ),
        ("Dup window", output::age(c.duplicate_window)),
        ("Replicas", c.num_replicas.to_string()),
        ("Atomic batch", c.allow_atomic_publish.to_string()),
    ];
    for (k, v) in lines {
        println!("{:<17} {v}", format!("{k}:"));
    }
    Ok(())
}

/// `eventctl streams ...`
#[derive(Debug, Subcommand)]
pub(crate) enum StreamsCommand {
    /// Create or update streams and consumers from the topology file; prints the plan/diff.
    ///
    /// Missing streams are created, drifted ones updated; nothing is deleted, and a change
    /// that could drop stored messages is refused (exit 1) unless --force is given.
    /// Applying twice changes nothing the second time.
    #[command(after_help = "Examples:\n  \
        eventctl streams apply --file deploy/streams.toml --profile dev\n  \
        eventctl streams apply --profile prod --dry-run")]
    Apply(ApplyArgs),
    /// List the streams on the server.
    #[command(after_help = "Examples:\n  eventctl streams list\n  eventctl streams list --json")]
    List(ListArgs),
    /// Show one stream: messages, bytes, first/last time, consumers, limits.
    #[command(after_help = "Examples:\n  \
        eventctl streams info AUTH_EVENTS\n  \
        eventctl streams info DLQ_EVENTS --json")]
    Info(InfoArgs),
}

/// `streams apply` options.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The topology file.
    #[arg(long, default_value = "deploy/streams.toml", value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Which profile of the file to apply.
    #[arg(long, value_enum, default_value = "dev")]
    pub(crate) profile: Profile,
    /// Print the plan only; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Also apply changes that may drop stored messages (smaller limits, removed subjects).
    #[arg(long)]
    pub(crate) force: bool,
}

/// `streams list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `streams info` options.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// The stream name, e.g. AUTH_EVENTS.
    pub(crate) name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}
