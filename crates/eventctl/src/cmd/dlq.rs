//! `eventctl dlq list | show | replay | purge`: the dead letters, through
//! `events::dlq::DeadLetters`.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use events::dlq::{
    DeadLetter, DeadLetterFilter, DeadLetterReason, DeadLetters, MAX_PAGE_LIMIT, MAX_REPLAY_COUNT,
    PageRequest, ReplayOptions,
};
use events::{ConsumerName, EventType, OrganizationId, StreamName};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{connect, usage};
use crate::args::ConnArgs;
use crate::output::{self, Table};
use crate::when::{parse_time, rfc3339};

/// `eventctl dlq ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters (oldest first), with filters and a cursor.
    #[command(after_help = "Examples:\n  \
        eventctl dlq list\n  \
        eventctl dlq list --type auth.user.created --reason permanent --since -2h\n  \
        eventctl dlq list --consumer catalog-service__auth_user_any --limit 20 --after 120\n  \
        eventctl dlq list --json | jq '.items[].sequence'\n\n\
        When more match than --limit, the last line (or next_after in JSON) gives the --after \
        value of the next page.")]
    List(ListArgs),
    /// Show one dead letter: failure record, headers and body.
    #[command(after_help = "Examples:\n  eventctl dlq show 42\n  eventctl dlq show 42 --json")]
    Show(ShowArgs),
    /// Move dead letters back to their original subject (then delete them).
    #[command(after_help = "Examples:\n  \
        eventctl dlq replay 42 43\n  \
        eventctl dlq replay --type auth.user.created --reason max_deliveries --max 100\n  \
        eventctl dlq replay --since -1h --dry-run\n  \
        eventctl dlq replay --all --max 1000\n\n\
        Each body is published byte for byte to its original subject with Nats-Msg-Id \
        replay:<SEQ>, so concurrent replays store it once; the dead letter is deleted only \
        after the stream acknowledged it. A dead letter whose body was omitted (too big) is \
        replayed from its original, if retention kept it. Give sequences, or filters (or \
        --all), not both. Exit 1 if any could not be replayed or does not exist.")]
    Replay(ReplayArgs),
    /// Delete dead letters for good (needs --yes).
    #[command(after_help = "Examples:\n  \
        eventctl dlq purge --type auth.user.created --until -7d --yes\n  \
        eventctl dlq purge --all --yes\n\n\
        Without --yes nothing is deleted and the command exits with 2. Run `dlq list` with \
        the same filters first to see what would go.")]
    Purge(PurgeArgs),
}

/// Which dead letters (every flag given must match).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct FilterArgs {
    /// Dead letters from this stream (Dlq-Original-Stream), e.g. AUTH_EVENTS.
    #[arg(long, value_name = "S", value_parser = |s: &str| StreamName::new(s).map_err(|e| e.to_string()))]
    pub(crate) stream: Option<StreamName>,
    /// Of this event type (the original subject).
    #[arg(long = "type", value_name = "T", value_parser = |s: &str| EventType::new(s).map_err(|e| e.to_string()))]
    pub(crate) event_type: Option<EventType>,
    /// Of this organization.
    #[arg(long, value_name = "O", value_parser = |s: &str| OrganizationId::new(s).map_err(|e| e.to_string()))]
    pub(crate) org: Option<OrganizationId>,
    /// With this reason: max_deliveries, permanent, undecodable or invalid.
    #[arg(long, value_name = "R", value_parser = parse_reason)]
    pub(crate) reason: Option<DeadLetterReason>,
    /// Written by this durable consumer (e.g. catalog-service__auth_user_any).
    #[arg(long, value_name = "C", value_parser = |s: &str| ConsumerName::new(s).map_err(|e| e.to_string()))]
    pub(crate) consumer: Option<ConsumerName>,
    /// Dead-lettered at or after this time (RFC 3339, -2h, now).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub(crate) since: Option<OffsetDateTime>,
    /// Dead-lettered before this time (RFC 3339, -2h, now).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub(crate) until: Option<OffsetDateTime>,
}

fn parse_reason(s: &str) -> Result<DeadLetterReason, String> {
    DeadLetterReason::parse(s).ok_or_else(|| {
        format!("unknown reason {s:?}: use max_deliveries, permanent, undecodable or invalid")
    })
}

impl FilterArgs {
    fn filter(&self) -> DeadLetterFilter {
        let mut f = DeadLetterFilter::new();
        if let Some(s) = &self.stream {
            f = f.original_stream(s.clone());
        }
        if let Some(t) = &self.event_type {
            f = f.event_type(t.clone());
        }
        if let Some(o) = &self.org {
            f = f.organization(o.clone());
        }
        if let Some(r) = self.reason {
            f = f.reason(r);
        }
        if let Some(c) = &self.consumer {
            f = f.consumer(c.clone());
        }
        // The time the dead letter was stored: it also narrows the read of the stream.
        f.stored_between(self.since, self.until)
    }
}

/// `dlq list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Most dead letters to show.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=MAX_PAGE_LIMIT as u64))]
    pub(crate) limit: u64,
    /// Only dead letters after this sequence (the cursor of the previous page).
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub(crate) after: u64,
    /// Print JSON: { items, next_after, scanned }.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `dlq show` options.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// Sequence of the dead letter in DLQ_EVENTS.
    #[arg(value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) sequence: u64,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `dlq replay` options.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Sequences of the dead letters to replay.
    #[arg(value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) sequences: Vec<u64>,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Replay every dead letter (up to --max) when no filter is given.
    #[arg(long)]
    pub(crate) all: bool,
    /// Most dead letters to replay with filters or --all.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_REPLAY_COUNT as u64))]
    pub(crate) max: u64,
    /// Only report what would be replayed.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print JSON: { dry_run, replayed, failed, capped, items }.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `dlq purge` options.
#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Purge every dead letter (still needs --yes).
    #[arg(long)]
    pub(crate) all: bool,
    /// Confirm the deletion.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Print JSON: { purged }.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(conn: &ConnArgs, cmd: DlqCommand) -> anyhow::Result<()> {
    // Usage problems are found before connecting.
    let filter_args = match &cmd {
        DlqCommand::List(a) => Some(&a.filter),
        DlqCommand::Replay(a) => Some(&a.filter),
        DlqCommand::Purge(a) => Some(&a.filter),
        DlqCommand::Show(_) => None,
    };
    if let Some(FilterArgs {
        since: Some(since),
        until: Some(until),
        ..
    }) = filter_args
        && since >= until
    {
        usage!(
            "--since ({}) must be before --until ({})",
            rfc3339(*since),
            rfc3339(*until)
        );
    }
    match &cmd {
        DlqCommand::Replay(a) => {
            let filtered = !a.filter.filter().is_empty();
            if !a.sequences.is_empty() && (filtered || a.all) {
                usage!("give dead-letter sequences or filters (or --all), not both");
            }
            if a.sequences.is_empty() && !filtered && !a.all {
                usage!(
                    "nothing selected: give sequences, filters, or --all to replay every dead letter"
                );
            }
            if filtered && a.all {
                usage!("--all replays every dead letter: drop it or the filters");
            }
        }
        DlqCommand::Purge(a) => {
            let filtered = !a.filter.filter().is_empty();
            if !filtered && !a.all {
                usage!("nothing selected: give filters, or --all to purge every dead letter");
            }
            if filtered && a.all {
                usage!("--all purges every dead letter: drop it or the filters");
            }
            if !a.yes {
                usage!(
                    "purge deletes dead letters for good: add --yes to confirm (see them first \
                     with `eventctl dlq list` and the same filters)"
                );
            }
        }
        DlqCommand::List(_) | DlqCommand::Show(_) => {}
    }
    let nats = connect(conn).await?;
    let dlq = DeadLetters::new(nats.jetstream().clone());
    match cmd {
        DlqCommand::List(args) => list(&dlq, args).await,
        DlqCommand::Show(args) => show(&dlq, args).await,
        DlqCommand::Replay(args) => replay(&dlq, args).await,
        DlqCommand::Purge(args) => purge(&dlq, args).await,
    }
}

async fn list(dlq: &DeadLetters, args: ListArgs) -> anyhow::Result<()> {
    let limit = usize::try_from(args.limit).unwrap_or(MAX_PAGE_LIMIT);
    let page = dlq
        .list(&args.filter.filter(), PageRequest::after(args.after, limit))
        .await
        .context("listing dead letters")?;
    if args.json {
        return output::print_json(&serde_json::to_value(&page)?);
    }
    if page.items.is_empty() {
        println!("no dead letters match");
    } else {
        let mut table = Table::new(&[
            "SEQ", "STORED", "TYPE", "ORG", "REASON", "CONSUMER", "TRIES", "ERROR",
        ]);
        for dl in &page.items {
            table.row(vec![
                dl.sequence.to_string(),
                rfc3339_secs(dl.stored_at),
                dl.event_type
                    .clone()
                    .or_else(|| dl.original_subject.clone())
                    .unwrap_or_else(|| "-".into()),
                dl.organization.clone().unwrap_or_else(|| "-".into()),
                dl.reason.map_or_else(|| "-".into(), |r| r.to_string()),
                dl.consumer.clone().unwrap_or_else(|| "-".into()),
                dl.deliveries.map_or_else(|| "-".into(), |d| d.to_string()),
                output::clip(dl.error.as_deref().unwrap_or("-"), 60),
            ]);
        }
        print!("{}", table.render());
    }
    if let Some(next) = page.next_after {
        println!("more: eventctl dlq list --after {next} (same filters)");
    }
    Ok(())
}

async fn show(dlq: &DeadLetters, args: ShowArgs) -> anyhow::Result<()> {
    let dl = dlq
        .get(args.sequence)
        .await
        .with_context(|| format!("reading dead letter {}", args.sequence))?
        .ok_or_else(|| anyhow::anyhow!("no dead letter with sequence {}", args.sequence))?;
    if args.json {
        return output::print_json(&serde_json::to_value(&dl)?);
    }
    print_letter(&dl);
    Ok(())
}

fn print_letter(dl: &DeadLetter) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let lines = [
        ("Sequence", dl.sequence.to_string()),
        ("Subject", dl.subject.clone()),
        ("Stored", rfc3339(dl.stored_at)),
        ("Original", {
            let seq = dl
                .original_sequence
                .map_or_else(String::new, |s| format!(" seq {s}"));
            format!(
                "{} in {}{seq}",
                opt(&dl.original_subject),
                opt(&dl.original_stream)
            )
        }),
        ("Consumer", opt(&dl.consumer)),
        (
            "Reason",
            dl.reason.map_or_else(|| "-".into(), |r| r.to_string()),
        ),
        (
            "Deliveries",
            dl.deliveries.map_or_else(|| "-".into(), |d| d.to_string()),
        ),
        (
            "Failed at",
            dl.failed_at.map_or_else(|| "-".into(), rfc3339),
        ),
        ("Error", opt(&dl.error)),
        ("Event id", opt(&dl.event_id)),
        ("Event type", opt(&dl.event_type)),
        ("Organization", opt(&dl.organization)),
    ];
    for (k, v) in lines {
        println!("{:<13} {v}", format!("{k}:"));
    }
    if let Some(e) = &dl.decode_error {
        println!("{:<13} {e}", "Decode error:");
    }
    println!("Headers:");
    for (k, v) in dl.header_pairs() {
        println!("  {k}: {v}");
    }
    println!("Body ({} bytes):", dl.body.len());
    match dl.body_text() {
        Some(text) => {
            let pretty = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| text.to_owned());
            for line in pretty.lines() {
                println!("  {line}");
            }
        }
        None => println!("  (not UTF-8; see --json for base64)"),
    }
}

async fn replay(dlq: &DeadLetters, args: ReplayArgs) -> anyhow::Result<()> {
    let options = if args.dry_run {
        ReplayOptions::dry_run()
    } else {
        ReplayOptions::execute()
    };
    let (items, capped): (Vec<Value>, bool) = if args.sequences.is_empty() {
        let max = usize::try_from(args.max).unwrap_or(MAX_REPLAY_COUNT);
        let report = dlq
            .replay_many(&args.filter.filter(), max, options)
            .await
            .context("replaying dead letters")?;
        let items = report
            .items
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        (items, report.capped)
    } else {
        let mut items = Vec::new();
        for &seq in &args.sequences {
            items.push(match dlq.replay(seq, options).await {
                Ok(item) => serde_json::to_value(&item)?,
                Err(e) => json!({
                    "dlq_sequence": seq,
                    "subject": null,
                    "event_id": null,
                    // Replayed or deleted by someone else, or never there: nothing is kept.
                    "status": if e.is_not_found() { "not_found" } else { "failed" },
                    "error": format!("{:#}", anyhow::Error::new(e)),
                }),
            });
        }
        (items, false)
    };
    let status = |v: &Value| str_of(v, "status").to_owned();
    let replayed = items
        .iter()
        .filter(|v| {
            matches!(
                status(v).as_str(),
                "replayed" | "already_replayed" | "would_replay"
            )
        })
        .count();
    let missing: Vec<String> = items
        .iter()
        .filter(|v| status(v) == "not_found")
        .map(|v| v["dlq_sequence"].to_string())
        .collect();
    let failed = items.len() - replayed;
    if args.json {
        output::print_json(&json!({
            "dry_run": args.dry_run,
            "replayed": replayed,
            "failed": failed,
            "capped": capped,
            "items": items,
        }))?;
    } else {
        if items.is_empty() {
            println!("no dead letters match");
        } else {
            let mut table = Table::new(&["SEQ", "SUBJECT", "EVENT", "RESULT"]);
            for v in &items {
                let result = match status(v).as_str() {
                    "replayed" => {
                        format!("replayed to {} seq {}", str_of(v, "stream"), v["sequence"])
                    }
                    "already_replayed" => format!(
                        "already replayed to {} seq {} (by another replay)",
                        str_of(v, "stream"),
                        v["sequence"]
                    ),
                    "would_replay" => format!("would replay to {}", str_of(v, "stream")),
                    "not_found" => "no such dead letter".into(),
                    "replayed_not_deleted" => format!(
                        "replayed to {} seq {}, NOT deleted: {}",
                        str_of(v, "stream"),
                        v["sequence"],
                        str_of(v, "error")
                    ),
                    _ => format!("FAILED: {}", str_of(v, "error")),
                };
                let moved = matches!(
                    status(v).as_str(),
                    "replayed" | "already_replayed" | "would_replay"
                );
                let result = if moved && v["original_body"] == true {
                    format!("{result} (body read from the original)")
                } else {
                    result
                };
                table.row(vec![
                    v["dlq_sequence"].to_string(),
                    str_of(v, "subject").to_owned(),
                    str_of(v, "event_id").to_owned(),
                    result,
                ]);
            }
            print!("{}", table.render());
        }
        let verb = if args.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        let more = if capped {
            format!(" (stopped at --max {}; more match)", args.max)
        } else {
            String::new()
        };
        println!("{verb} {replayed}, failed {failed}{more}");
    }
    replay_verdict(&missing, failed - missing.len())
}

/// The error of a replay that did not move everything: the sequences that name no dead
/// letter, and how many dead letters stay in the stream.
fn replay_verdict(missing: &[String], kept: usize) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    match missing {
        [] => {}
        [one] => problems.push(format!("no dead letter with sequence {one}")),
        many => problems.push(format!(
            "no dead letters with sequences {}",
            many.join(", ")
        )),
    }
    if kept > 0 {
        problems.push(format!(
            "{kept} dead letter(s) not replayed (kept in the dead-letter stream)"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", problems.join("; "))
    }
}

async fn purge(dlq: &DeadLetters, args: PurgeArgs) -> anyhow::Result<()> {
    let purged = if args.all {
        dlq.purge_all().await
    } else {
        dlq.purge(&args.filter.filter()).await
    }
    .context("purging dead letters")?;
    if args.json {
        return output::print_json(&json!({ "purged": purged }));
    }
    println!("purged {purged} dead letter(s)");
    Ok(())
}

/// A string field of a JSON row, `-` when absent.
fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// RFC 3339 to the second, for tables.
fn rfc3339_secs(t: OffsetDateTime) -> String {
    rfc3339(t.replace_nanosecond(0).unwrap_or(t))
}
