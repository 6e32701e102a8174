//! `eventctl replay`: republish a stream's time window to another subject, through
//! `events::replay::WindowReplay`, with a progress bar on stderr.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use events::replay::WindowReplay;
use events::{StreamName, Subject, SubjectFilter};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use time::OffsetDateTime;

use super::connect;
use crate::args::ConnArgs;
use crate::when::{parse_time, rfc3339};

/// `replay` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    eventctl replay --stream AUTH_EVENTS --from -2h --to -1h --to-subject auth.replay.backfill --dry-run\n  \
    eventctl replay --stream AUTH_EVENTS --from 2026-01-01T00:00:00Z --to 2026-01-01T06:00:00Z \\\n    \
    --subject 'auth.user.*' --to-subject auth.replay.users\n\n\
Copies every message stored in [--from, --to) (optionally only subjects matching --subject) \
to --to-subject, body and headers as stored, each with a fresh Nats-Msg-Id; the target must \
be captured by a stream. The window ends at the stream's last message when the replay \
starts, so a busy stream cannot keep it running. A progress bar (count and rate) is drawn on \
stderr when it is a terminal and --json is not given.\n\n\
Times: RFC 3339, relative (-2h, -30m, -1d) or now.")]
pub(crate) struct ReplayArgs {
    /// The stream to read, e.g. AUTH_EVENTS.
    #[arg(long, value_name = "S", value_parser = |s: &str| StreamName::new(s).map_err(|e| e.to_string()))]
    pub(crate) stream: StreamName,
    /// Start of the window (inclusive).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub(crate) from: OffsetDateTime,
    /// End of the window (exclusive).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true, default_value = "now")]
    pub(crate) to: OffsetDateTime,
    /// Only messages whose subject matches this filter.
    #[arg(long, value_name = "F", value_parser = |s: &str| SubjectFilter::new(s).map_err(|e| e.to_string()))]
    pub(crate) subject: Option<SubjectFilter>,
    /// The subject to publish the copies to.
    #[arg(long, value_name = "X", value_parser = |s: &str| Subject::new(s).map_err(|e| e.to_string()))]
    pub(crate) to_subject: Subject,
    /// Count the window only; publish nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print the summary as JSON (no progress bar).
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(conn: &ConnArgs, args: ReplayArgs) -> anyhow::Result<()> {
    let mut replay = WindowReplay::new(args.stream.clone(), args.from, args.to)?
        .dry_run(args.dry_run)
        .progress_interval(Duration::from_millis(100));
    if let Some(f) = &args.subject {
        replay = replay.subject_filter(f.clone());
    }
    let nats = connect(conn).await?;
    let bar = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        // The template is a constant known to parse; the fallback keeps the default style.
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {prefix} {human_pos} messages ({msg}) {elapsed}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(if args.dry_run {
            "counting"
        } else {
            "replaying"
        });
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    let progress = bar.clone();
    let summary = replay
        .on_progress(move |p| {
            progress.set_position(p.processed);
            progress.set_message(format!("{:.0}/s", p.rate()));
        })
        .republish_to(nats.jetstream(), &args.to_subject)
        .await;
    bar.finish_and_clear();
    let summary = summary.with_context(|| {
        format!(
            "replaying {} [{}, {}) to {}",
            args.stream,
            rfc3339(args.from),
            rfc3339(args.to),
            args.to_subject
        )
    })?;
    let elapsed = summary.elapsed.as_secs_f64();
    let rate = if elapsed > 0.0 {
        summary.matched as f64 / elapsed
    } else {
        0.0
    };
    if args.json {
        return crate::output::print_json(&json!({
            "stream": args.stream.as_str(),
            "from": rfc3339(args.from),
            "to": rfc3339(args.to),
            "subject_filter": args.subject.as_ref().map(|f| f.as_str()),
            "to_subject": args.to_subject.as_str(),
            "dry_run": summary.dry_run,
            "matched": summary.matched,
            "first_sequence": summary.first_sequence,
            "last_sequence": summary.last_sequence,
            "end_sequence": summary.end_sequence,
            "unparsable": summary.unparsable,
            "elapsed_seconds": elapsed,
        }));
    }
    let range = match (summary.first_sequence, summary.last_sequence) {
        (Some(a), Some(b)) => format!(" (seq {a}..={b})"),
        _ => String::new(),
    };
    let verb = if summary.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    println!(
        "{verb} {} message(s) of {}{range} stored in [{}, {}) to {} in {:.2}s ({rate:.0}/s)",
        summary.matched,
        args.stream,
        rfc3339(args.from),
        rfc3339(args.to),
        args.to_subject,
        elapsed
    );
    if summary.unparsable > 0 {
        println!(
            "skipped {} message(s) whose header block could not be parsed: their headers \
             cannot be reproduced (see `eventctl tail` for their raw headers)",
            summary.unparsable
        );
    }
    Ok(())
}
