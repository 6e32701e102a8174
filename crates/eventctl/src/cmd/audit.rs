//! `audit`: the admin audit trail (who replayed, deleted or purged what, when, how many),
//! read from the `ADMIN_AUDIT` stream the admin server writes.

use clap::Args;
use events_admin::{AuditLog, MAX_AUDIT_READ};
use serde_json::json;

use crate::args::ConnArgs;
use crate::output;

/// `audit` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    eventctl audit\n  \
    eventctl audit --limit 500 --json\n\n\
Oldest first. Each admin replay, delete and purge (dry runs and failures too) is one \
record: when, token id, role, action, target, how many, outcome.")]
pub(crate) struct AuditArgs {
    /// How many of the latest records to show (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_AUDIT_READ as u64))]
    pub(crate) limit: u64,
    /// Print JSON: { items: [{ sequence, at, token_id, role, action, target, dry_run, count, outcome }] }.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(conn: &ConnArgs, args: AuditArgs) -> anyhow::Result<()> {
    let nats = super::connect(conn).await?;
    let limit = usize::try_from(args.limit).unwrap_or(MAX_AUDIT_READ);
    let entries = AuditLog::new(nats.jetstream().clone())
        .recent(limit)
        .await?;
    if args.json {
        return output::print_json(&json!({ "items": entries }));
    }
    let mut table = output::Table::new(&[
        "SEQ", "AT", "TOKEN", "ROLE", "ACTION", "TARGET", "DRY RUN", "COUNT", "OUTCOME",
    ]);
    for e in &entries {
        let r = &e.record;
        table.row(vec![
            e.sequence.to_string(),
            r.at.clone(),
            r.token_id.clone(),
            r.role.clone(),
            r.action.clone(),
            output::clip(&r.target, 60),
            if r.dry_run { "yes" } else { "no" }.to_owned(),
            r.count.to_string(),
            r.outcome.clone(),
        ]);
    }
    println!("{}", table.render());
    if entries.is_empty() {
        println!("no audit record");
    }
    Ok(())
}
