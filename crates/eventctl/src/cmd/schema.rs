//! `eventctl schema check | push | list | show | catalog`: the event contracts of
//! `schemas/` (issue #16), through `events::schema`.
//!
//! `check` and `catalog` read files only (no server); `push`, `list` and `show` use the
//! registry bucket. The comparison with git's base branch is in `schema/git.rs`, the
//! catalog generator in `schema/catalog.rs`.

mod catalog;
mod git;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use events::schema::compat::{self, Problem};
use events::schema::registry::{DEFAULT_BUCKET, PushOutcome, SchemaRegistry};
use events::schema::{SchemaKey, SchemaSet};
use events_admin::SchemaDirectory;
use serde_json::json;

use super::{connect, usage};
use crate::args::ConnArgs;
use crate::output::{self, Table};

/// The schema directory unless told otherwise (run from the repository root).
const DEFAULT_DIR: &str = "schemas";

/// `eventctl schema ...`
#[derive(Debug, Subcommand)]
pub(crate) enum SchemaCommand {
    /// Check the schemas: each loads, its examples validate, each minor is backward
    /// compatible with the previous minor of its major, and no schema of the base branch
    /// changed incompatibly. Exit 1 naming the field and the rule otherwise.
    #[command(after_help = "Examples:\n  \
        eventctl schema check\n  \
        eventctl schema check --dir schemas --base origin/main\n  \
        eventctl schema check --no-base\n\n\
        A base ref that does not exist (a fresh repository, a shallow clone) is reported and \
        that part is skipped; it never fails the check.")]
    Check(CheckArgs),
    /// Store the schemas in the registry bucket (a changed released version is refused).
    #[command(after_help = "Examples:\n  \
        eventctl schema push\n  \
        eventctl schema push --dir schemas --bucket EVENT_SCHEMAS\n  \
        eventctl schema push --overwrite   # replace changed documents on purpose")]
    Push(PushArgs),
    /// List the schemas stored in the registry bucket.
    #[command(after_help = "Examples:\n  eventctl schema list\n  eventctl schema list --json")]
    List(ListArgs),
    /// Print one stored schema document.
    #[command(after_help = "Examples:\n  eventctl schema show auth.user.created 1.0")]
    Show(ShowArgs),
    /// Generate docs/EVENT_CATALOG.md from the schemas and schemas/catalog.toml.
    #[command(after_help = "Examples:\n  \
        eventctl schema catalog\n  \
        eventctl schema catalog --check   # exit 1 if the file is out of date")]
    Catalog(CatalogArgs),
}

/// `eventctl schema check`
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The schema directory (`<type>/<major>.<minor>.json`).
    #[arg(long, default_value = DEFAULT_DIR, value_name = "DIR")]
    dir: PathBuf,
    /// Git ref of the base branch to compare released schemas with.
    #[arg(long, default_value = "origin/main", value_name = "REF")]
    base: String,
    /// Skip the comparison with the base branch.
    #[arg(long, conflicts_with = "base")]
    no_base: bool,
}

/// Registry options shared by push, list and show.
#[derive(Debug, Args)]
pub(crate) struct BucketArgs {
    /// The registry's key-value bucket.
    #[arg(long, default_value = DEFAULT_BUCKET, value_name = "BUCKET")]
    bucket: String,
}

/// `eventctl schema push`
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The schema directory.
    #[arg(long, default_value = DEFAULT_DIR, value_name = "DIR")]
    dir: PathBuf,
    /// Replace stored documents that differ (a released version should not change).
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    bucket: BucketArgs,
}

/// `eventctl schema list`
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bucket: BucketArgs,
}

/// `eventctl schema show`
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// Event type, e.g. auth.user.created.
    event_type: String,
    /// Version, e.g. 1.0.
    #[arg(value_name = "VERSION")]
    schema_version: String,
    #[command(flatten)]
    bucket: BucketArgs,
}

/// `eventctl schema catalog`
#[derive(Debug, Args)]
pub(crate) struct CatalogArgs {
    /// The schema directory.
    #[arg(long, default_value = DEFAULT_DIR, value_name = "DIR")]
    dir: PathBuf,
    /// The metadata file (producers, consumers, descriptions); default DIR/catalog.toml.
    #[arg(long, value_name = "FILE")]
    meta: Option<PathBuf>,
    /// The catalog to write (or to compare with --check).
    #[arg(long, default_value = "docs/EVENT_CATALOG.md", value_name = "FILE")]
    out: PathBuf,
    /// Write nothing; exit 1 if the file differs from what would be generated.
    #[arg(long)]
    check: bool,
}

/// Runs one `schema` subcommand.
pub(crate) async fn run(conn: &ConnArgs, cmd: SchemaCommand) -> anyhow::Result<()> {
    match cmd {
        SchemaCommand::Check(args) => check(&args),
        SchemaCommand::Push(args) => push(conn, args).await,
        SchemaCommand::List(args) => list(conn, args).await,
        SchemaCommand::Show(args) => show(conn, args).await,
        SchemaCommand::Catalog(args) => catalog::run(&args),
    }
}

/// The schemas of `dir` with the producers and consumers of `dir/catalog.toml` (when there
/// is one), for `eventctl serve --schemas`.
///
/// # Errors
/// If a schema or the catalog metadata cannot be read.
pub(crate) fn directory(dir: &Path) -> anyhow::Result<SchemaDirectory> {
    let mut directory = SchemaDirectory::new(load(dir)?);
    let meta = dir.join("catalog.toml");
    if meta.is_file() {
        for (event_type, parties) in catalog::parties(&meta)? {
            directory = directory.with_parties(event_type, parties);
        }
    }
    Ok(directory)
}

fn load(dir: &Path) -> anyhow::Result<SchemaSet> {
    SchemaSet::from_dir(dir).with_context(|| format!("loading the schemas of {}", dir.display()))
}

fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let set = load(&args.dir)?;
    let mut problems: Vec<String> = compat::check_set(&set)
        .iter()
        .map(Problem::to_string)
        .collect();
    let types = set.latest().count();
    println!(
        "{}: {} schema(s) of {types} type(s) loaded",
        args.dir.display(),
        set.len()
    );
    if args.no_base {
        println!("base branch: not compared (--no-base)");
    } else {
        problems.extend(git::compare_with_base(&args.dir, &args.base, &set)?);
    }
    if problems.is_empty() {
        println!("ok: every minor is backward compatible and every example valid");
        return Ok(());
    }
    for p in &problems {
        println!("error: {p}");
    }
    bail!("{} schema problem(s), listed above", problems.len())
}

async fn push(conn: &ConnArgs, args: PushArgs) -> anyhow::Result<()> {
    let set = load(&args.dir)?;
    if set.is_empty() {
        usage!(
            "{} holds no schema (<type>/<major>.<minor>.json)",
            args.dir.display()
        );
    }
    let nats = connect(conn).await?;
    let registry = SchemaRegistry::open(nats.jetstream(), &args.bucket.bucket).await?;
    let outcomes = registry
        .push(&set, args.overwrite)
        .await
        .with_context(|| format!("pushing {} to {}", args.dir.display(), args.bucket.bucket))?;
    for (key, outcome) in &outcomes {
        let what = match outcome {
            PushOutcome::Created => "stored",
            PushOutcome::Unchanged => "unchanged",
            PushOutcome::Overwritten => "overwritten",
            _ => "pushed",
        };
        println!("{key}: {what}");
    }
    let stored = outcomes
        .iter()
        .filter(|(_, o)| *o != PushOutcome::Unchanged)
        .count();
    println!(
        "{stored} of {} schema(s) written to {}",
        outcomes.len(),
        args.bucket.bucket
    );
    Ok(())
}

async fn open_existing(conn: &ConnArgs, bucket: &str) -> anyhow::Result<SchemaRegistry> {
    let nats = connect(conn).await?;
    SchemaRegistry::open_existing(nats.jetstream(), bucket)
        .await
        .with_context(|| {
            format!("no schema registry {bucket} (fill it with: eventctl schema push)")
        })
}

async fn list(conn: &ConnArgs, args: ListArgs) -> anyhow::Result<()> {
    let registry = open_existing(conn, &args.bucket.bucket).await?;
    let entries = registry.list().await?;
    if args.json {
        let items: Vec<_> = entries
            .iter()
            .map(|e| {
                json!({
                    "type": e.key.event_type.as_str(),
                    "version": e.key.version.to_string(),
                    "uri": e.key.uri(),
                    "revision": e.revision,
                    "stored_at": crate::when::rfc3339(e.stored_at),
                    "bytes": e.size,
                })
            })
            .collect();
        return output::print_json(&json!(items));
    }
    if entries.is_empty() {
        println!(
            "no schemas in {} (fill it with: eventctl schema push)",
            args.bucket.bucket
        );
        return Ok(());
    }
    let mut table = Table::new(&["TYPE", "VERSION", "URI", "REVISION", "STORED"]);
    for e in &entries {
        table.row(vec![
            e.key.event_type.to_string(),
            e.key.version.to_string(),
            e.key.uri(),
            e.revision.to_string(),
            output::time(Some(e.stored_at)),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

async fn show(conn: &ConnArgs, args: ShowArgs) -> anyhow::Result<()> {
    let key = match SchemaKey::parse(&args.event_type, &args.schema_version) {
        Ok(key) => key,
        Err(e) => usage!("{e}"),
    };
    let registry = open_existing(conn, &args.bucket.bucket).await?;
    match registry.get(&key).await? {
        Some(doc) => output::print_json(&doc),
        None => bail!("no schema {key} in {}", args.bucket.bucket),
    }
}
