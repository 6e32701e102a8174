//! `eventctl publish`: one event through the library's confirmed publisher.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use events::Event;
use events::publisher::{PublishOutcome, Publisher, PublisherConfig};
use events::schema::{SchemaSet, UnknownSchema};
use serde_json::json;

use super::connect;
use crate::args::ConnArgs;

/// `publish` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    eventctl publish --type auth.user.created --org org-1 --source ops \\\n    \
    --data '{\"user_id\":\"u1\",\"email\":\"a@example.com\"}'\n  \
    eventctl publish --type catalog.product.updated --org acme --source ops --data @product.json --json\n  \
    eventctl publish --type auth.user.created --org org-1 --source ops --data @- < user.json\n  \
    eventctl publish --schemas schemas --type auth.user.created --org org-1 --source ops --data @user.json\n\n\
The event is built and checked before connecting: a bad type (or one in the reserved dlq. \
domain of dead letters), organization, source, id (not a UUID) or data fails with exit 1 and \
a message naming the attribute; with --schemas, so does data that breaks the schema of its \
type and --schema-version (naming the JSON pointer and the rule), and a type or version \
without a schema. Publishing the same --id again within the stream's duplicate \
window stores it once and prints \"duplicate\".")]
pub(crate) struct PublishArgs {
    /// The event type, which is also the subject (e.g. auth.user.created).
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) event_type: String,
    /// The tenant (`organizationid`).
    #[arg(long, value_name = "ORG")]
    pub(crate) org: String,
    /// The producing service (`source`).
    #[arg(long, value_name = "NAME")]
    pub(crate) source: String,
    /// The data: a JSON object, `@FILE` to read it from a file, or `@-` for stdin.
    #[arg(long, value_name = "JSON|@FILE")]
    pub(crate) data: String,
    /// The entity the event is about (`subject`, e.g. a user id).
    #[arg(long, value_name = "S")]
    pub(crate) subject: Option<String>,
    /// Version of the data schema (`schemaversion`).
    #[arg(long, value_name = "V", default_value = events::event::DEFAULT_SCHEMA_VERSION)]
    pub(crate) schema_version: String,
    /// Validate the data against the schemas of this directory before sending, and set
    /// `dataschema` (a type or version without a schema is refused).
    #[arg(long, value_name = "DIR")]
    pub(crate) schemas: Option<PathBuf>,
    /// The event id, a UUID (default: a new UUID v7); the same id is stored once.
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(conn: &ConnArgs, args: PublishArgs) -> anyhow::Result<()> {
    // Checked before connecting: bad input needs no server.
    let event = build_event(&args)?;
    let schemas = match &args.schemas {
        Some(dir) => Some(contract(dir, &event)?),
        None => None,
    };
    let nats = connect(conn).await?;
    let config = PublisherConfig {
        // A tool reports within seconds rather than the services' 30 s deadline.
        deadline: Duration::from_secs(15),
        schemas,
        ..PublisherConfig::new(args.source.clone())
    };
    let publisher = Publisher::on_connection(&nats, config)
        .await
        .context("starting the publisher")?;
    let outcome = publisher.publish(&event).await.with_context(|| {
        format!(
            "publishing {} event {} on {}",
            event.event_type().as_str(),
            event.id(),
            nats.urls()
        )
    });
    // Nothing is left in flight after a confirmed publish; close only stops the tasks.
    let _ = publisher.close(Duration::from_secs(5)).await;
    let ack = match outcome? {
        PublishOutcome::Stored(ack) => ack,
        // No spool is configured, so the publisher never spools.
        other => anyhow::bail!("unexpected publish outcome {other:?}"),
    };
    if args.json {
        return crate::output::print_json(&json!({
            "id": event.id(),
            "type": event.event_type().as_str(),
            "organizationid": event.organization_id().as_str(),
            "stream": ack.stream,
            "sequence": ack.sequence,
            "duplicate": ack.duplicate,
        }));
    }
    let dup = if ack.duplicate {
        " (duplicate: already stored, not stored again)"
    } else {
        ""
    };
    println!(
        "published {} {} to {} seq {}{dup}",
        event.event_type().as_str(),
        event.id(),
        ack.stream,
        ack.sequence
    );
    Ok(())
}

/// The schemas of `dir`, unknown types refused, after checking `event` against them (so
/// that a refusal needs no server); the publisher checks again and sets `dataschema`.
fn contract(dir: &Path, event: &Event) -> anyhow::Result<Arc<SchemaSet>> {
    let set = SchemaSet::from_dir(dir)
        .with_context(|| format!("loading the schemas of {}", dir.display()))?
        .with_unknown(UnknownSchema::Refuse);
    set.validate(event)
        .with_context(|| format!("event refused by the schemas of {}", dir.display()))?;
    Ok(Arc::new(set))
}

fn build_event(args: &PublishArgs) -> anyhow::Result<Event> {
    let text = read_data(&args.data)?;
    let data: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid attribute `data`: not valid JSON ({e})"))?;
    let mut builder = Event::builder(args.event_type.as_str())
        .source(args.source.as_str())
        .organization(args.org.as_str())
        .schema_version(args.schema_version.as_str())
        .data_json(data);
    if let Some(s) = &args.subject {
        builder = builder.subject(s.as_str());
    }
    if let Some(id) = &args.id {
        builder = builder.id(id.as_str());
    }
    Ok(builder.build()?)
}

/// The `--data` text: inline, `@FILE`, or `@-` (stdin).
fn read_data(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some("-") => {
            std::io::read_to_string(std::io::stdin()).context("cannot read data from stdin")
        }
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("invalid attribute `data`: cannot read file {path}")),
        None => Ok(arg.to_owned()),
    }
}
