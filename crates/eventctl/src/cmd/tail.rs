//! `eventctl tail`: print events as they arrive, through an ordered (ephemeral) consumer,
//! or consume as a member of a durable group through the library's subscriber.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use clap::Args;
use events::subscriber::{DeliveryContext, HandlerError, Subscriber, SubscriberConfig};
use events::{Event, SubjectFilter};
use events::{error_chain, raw_headers};
use futures::StreamExt as _;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{connect, shutdown_signal};
use crate::args::{ConnArgs, parse_duration};
use crate::output;
use crate::when::{parse_time, rfc3339};

/// `tail` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    eventctl tail 'auth.>'\n  \
    eventctl tail 'auth.user.*' --org acme --from -2h --count 20\n  \
    eventctl tail auth.user.created --from -1m --count 1 --json\n  \
    eventctl tail 'auth.user.*' --group catalog-service --timeout 30s\n\n\
Without --group nothing durable is created: an ordered ephemeral consumer reads the stream \
and goes away with the command. With --group G the command joins the durable group \
G (consumer G__<filter>, as a service subscribing to SUBJECT with group G would): each \
event it prints is acked, and what the group cannot handle is retried and dead-lettered by \
the library, so this drains or probes the group's backlog. A group that does not exist yet \
is refused (exit 1) unless --create is given.\n\n\
Stops at ctrl-c, after --count events, or after --timeout. Exit 0 unless --count was given \
and fewer events arrived before --timeout (exit 1).\n\n\
Times: RFC 3339, relative (-2h, -30m, -1d) or now.")]
pub(crate) struct TailArgs {
    /// Subject filter (wildcards `*` and a trailing `>` allowed), e.g. auth.user.* or auth.>.
    pub(crate) subject: String,
    /// Only events of this organization (plain tail only).
    #[arg(long, value_name = "ORG", conflicts_with = "group")]
    pub(crate) org: Option<String>,
    /// Only events whose type matches this filter (plain tail only).
    #[arg(long = "type", value_name = "T", conflicts_with = "group")]
    pub(crate) event_type: Option<String>,
    /// Start at this time in the past (default: new messages only).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true, conflicts_with = "group")]
    pub(crate) from: Option<OffsetDateTime>,
    /// Stop after this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// Consume as a member of this durable group (acks, retries, dead letters).
    #[arg(long, value_name = "G")]
    pub(crate) group: Option<String>,
    /// With --group: create the group's consumer if it does not exist (from the start of
    /// the stream, as a new service's group would).
    #[arg(long, requires = "group")]
    pub(crate) create: bool,
    /// One JSON object per line: the event plus stream, sequence and delivery count.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(conn: &ConnArgs, args: TailArgs) -> anyhow::Result<()> {
    let filter = SubjectFilter::new(&args.subject)
        .with_context(|| format!("invalid subject filter {:?}", args.subject))?;
    let type_filter = args
        .event_type
        .as_deref()
        .map(SubjectFilter::new)
        .transpose()
        .context("invalid --type")?;
    let nats = connect(conn).await?;
    let js = nats.jetstream().clone();
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        js.stream_by_subject(filter.as_str()),
    )
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r.map_err(anyhow::Error::from))
    .with_context(|| format!("no stream captures subject {} on {}", filter, nats.urls()))?;

    let deadline = async {
        match args.timeout {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let shown = match &args.group {
        Some(group) => tail_group(&nats, &stream, filter, group, &args, deadline).await?,
        None => {
            let printer = Printer {
                json: args.json,
                org: args.org.clone(),
                event_type: type_filter,
            };
            tail_plain(&js, &stream, &filter, &args, &printer, deadline).await?
        }
    };
    if let (Some(n), Some(d)) = (args.count, args.timeout)
        && shown < n
    {
        bail!(
            "timed out after {}: {shown} of {n} events",
            humantime::format_duration(d)
        );
    }
    Ok(())
}

/// Reads with an ordered consumer (ephemeral, recreated by the client on a gap).
async fn tail_plain(
    js: &jetstream::Context,
    stream: &str,
    filter: &SubjectFilter,
    args: &TailArgs,
    printer: &Printer,
    deadline: impl std::future::Future<Output = ()>,
) -> anyhow::Result<u64> {
    let deliver_policy = match args.from {
        Some(start_time) => DeliverPolicy::ByStartTime { start_time },
        None => DeliverPolicy::New,
    };
    let consumer = js
        .get_stream_no_info(stream)
        .await
        .with_context(|| format!("opening stream {stream}"))?
        .create_consumer(OrderedConfig {
            filter_subject: filter.to_string(),
            deliver_policy,
            description: Some("eventctl tail".into()),
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating a tail consumer on {stream}"))?;
    let mut messages = consumer
        .messages()
        .await
        .with_context(|| format!("reading {stream}"))?;
    if !args.json {
        eprintln!("tailing {filter} on {stream} (ctrl-c to stop)");
    }
    tokio::pin!(deadline);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut shown = 0u64;
    loop {
        if args.count.is_some_and(|n| shown >= n) {
            break;
        }
        let msg = tokio::select! {
            biased;
            () = &mut stop => break,
            () = &mut deadline => break,
            next = messages.next() => next,
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {stream}")),
            None => break,
        };
        let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let meta = Meta {
            stream: info.stream.to_owned(),
            sequence: info.stream_sequence,
            subject: msg.subject.to_string(),
            delivered: u64::try_from(info.delivered).unwrap_or(0),
            stored_at: info.published,
            consumer: None,
        };
        // A header block the client could not parse (not UTF-8) is shown as undecodable,
        // with the raw block; a type that is not the subject as invalid (CONTRACT.md §2).
        let headers = msg.headers.as_ref();
        let decoded = raw_headers::decode_message(&msg.subject, headers, &msg.payload);
        let raw = Raw {
            body: &msg.payload,
            unparsed_headers_base64: raw_headers::unparsed_base64(headers),
        };
        if printer.show(&meta, decoded, &raw)? {
            shown += 1;
        }
    }
    Ok(shown)
}

/// Consumes as a member of `group` through the library's subscriber; prints and acks
/// each event. One handler at a time, so output follows delivery order and `--count`
/// stops at the count.
async fn tail_group(
    nats: &events::connection::Connection,
    stream: &str,
    filter: SubjectFilter,
    group: &str,
    args: &TailArgs,
    deadline: impl std::future::Future<Output = ()>,
) -> anyhow::Result<u64> {
    let js = nats.jetstream();
    let durable = events::subscriber::durable_name(group, &filter)
        .with_context(|| format!("invalid group {group:?}"))?;
    let mut config = SubscriberConfig {
        max_in_flight: 1,
        ..SubscriberConfig::default()
    };
    // Joining must not change the group's consumer: keep the ack wait and ack-pending
    // limit it was created with (the subscriber updates the consumer to its config).
    // A group that does not exist is only created on request: a mistyped name would
    // otherwise leave a durable consumer behind that collects a backlog for ever.
    let existing = js
        .get_stream_no_info(stream)
        .await
        .with_context(|| format!("opening stream {stream}"))?
        .consumer_info(durable.as_str())
        .await;
    match existing {
        Ok(info) => {
            config.ack_wait = info.config.ack_wait;
            if let Ok(n) = u32::try_from(info.config.max_ack_pending)
                && n > 0
            {
                config.max_ack_pending = n;
            }
        }
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
            if !args.create {
                bail!(
                    "group {group} has no consumer {durable} on {stream} (a service subscribing \
                     to {filter} with this group creates it); add --create to create it here"
                );
            }
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading consumer {durable} on {stream}"));
        }
    }
    let subscriber = Subscriber::on_connection(nats, filter.clone())
        .group(group)
        .stream(stream)
        .config(config)
        .build()
        .await
        .with_context(|| format!("joining group {group} on {stream}"))?;
    if !args.json {
        eprintln!(
            "consuming {filter} on {stream} as group {group} (consumer {}); ctrl-c to stop",
            subscriber.durable_name()
        );
    }
    let drain_bound = subscriber.config().drain_timeout + Duration::from_secs(5);
    let shutdown = CancellationToken::new();
    let shown = Arc::new(AtomicU64::new(0));
    let handler = {
        let shown = shown.clone();
        let shutdown = shutdown.clone();
        let json = args.json;
        let count = args.count;
        move |event: Event, ctx: DeliveryContext| {
            let shown = shown.clone();
            let shutdown = shutdown.clone();
            async move {
                let meta = Meta {
                    stream: ctx.stream.clone(),
                    sequence: ctx.stream_sequence,
                    subject: ctx.subject.clone(),
                    delivered: ctx.delivered,
                    stored_at: ctx.published,
                    consumer: Some(ctx.consumer.clone()),
                };
                let printer = Printer {
                    json,
                    org: None,
                    event_type: None,
                };
                // Output failing (e.g. a closed pipe) is a transient failure: the event
                // stays in the group for another member.
                printer
                    .show(&meta, Ok(event), &Raw::default())
                    .map_err(|e| HandlerError::transient(e.to_string()))?;
                let n = shown.fetch_add(1, Ordering::SeqCst) + 1;
                if count.is_some_and(|c| n >= c) {
                    shutdown.cancel();
                }
                Ok::<_, HandlerError>(())
            }
        }
    };
    let run = subscriber.run(handler, shutdown.clone());
    tokio::pin!(run);
    tokio::pin!(deadline);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let report = tokio::select! {
        r = &mut run => Some(r),
        () = &mut stop => None,
        () = &mut deadline => None,
    };
    let report = match report {
        Some(r) => r,
        None => {
            shutdown.cancel();
            tokio::time::timeout(drain_bound, run)
                .await
                .context("the group consumer did not drain in time")?
        }
    };
    tracing::debug!(?report, "group consumer drained");
    Ok(shown.load(Ordering::SeqCst))
}

/// Where a message came from.
struct Meta {
    stream: String,
    sequence: u64,
    subject: String,
    delivered: u64,
    stored_at: OffsetDateTime,
    consumer: Option<String>,
}

/// What an undecodable message is shown with.
#[derive(Default)]
struct Raw<'a> {
    body: &'a [u8],
    /// The header block the client could not parse, base64.
    unparsed_headers_base64: Option<&'a str>,
}

impl Raw<'_> {
    /// The unparsed header block with non-printable bytes escaped (`\x80`), for humans.
    fn headers_escaped(&self) -> Option<String> {
        let b64 = self.unparsed_headers_base64?;
        Some(match raw_headers::decode_base64(b64) {
            Ok(block) => block
                .iter()
                .flat_map(|b| std::ascii::escape_default(*b))
                .map(char::from)
                .collect(),
            Err(_) => format!("(base64) {b64}"),
        })
    }
}

/// Prints events (and undecodable messages) in the chosen format, after the filters.
struct Printer {
    json: bool,
    org: Option<String>,
    event_type: Option<SubjectFilter>,
}

impl Printer {
    /// Prints the message unless a filter hides it; returns whether it was shown.
    fn show(
        &self,
        meta: &Meta,
        decoded: Result<Event, events::DecodeError>,
        raw: &Raw<'_>,
    ) -> anyhow::Result<bool> {
        let filtered = self.org.is_some() || self.event_type.is_some();
        match decoded {
            Ok(event) => {
                if self
                    .org
                    .as_deref()
                    .is_some_and(|o| o != event.organization_id().as_str())
                    || self
                        .event_type
                        .as_ref()
                        .is_some_and(|t| !t.matches(event.event_type().as_str()))
                {
                    return Ok(false);
                }
                if self.json {
                    let ev: Value = serde_json::from_slice(&event.to_json_bytes())?;
                    output::print_json_line(&json!({
                        "stream": meta.stream,
                        "sequence": meta.sequence,
                        "subject": meta.subject,
                        "delivered": meta.delivered,
                        "stored_at": rfc3339(meta.stored_at),
                        "consumer": meta.consumer,
                        "event": ev,
                    }))?;
                } else {
                    print_event(meta, &event)?;
                }
            }
            Err(err) => {
                // An undecodable message cannot match an --org/--type filter.
                if filtered {
                    return Ok(false);
                }
                if self.json {
                    output::print_json_line(&json!({
                        "stream": meta.stream,
                        "sequence": meta.sequence,
                        "subject": meta.subject,
                        "delivered": meta.delivered,
                        "stored_at": rfc3339(meta.stored_at),
                        "consumer": meta.consumer,
                        "undecodable": err.reason(),
                        "error": error_chain(&err),
                        "raw_headers_base64": raw.unparsed_headers_base64,
                        "body": String::from_utf8_lossy(raw.body),
                    }))?;
                } else {
                    use std::io::Write as _;
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "{} seq {} {} {}: {} message: {}",
                        meta.stream,
                        meta.sequence,
                        rfc3339(meta.stored_at),
                        meta.subject,
                        err.reason().to_uppercase(),
                        error_chain(&err),
                    )?;
                    if let Some(h) = raw.headers_escaped() {
                        writeln!(out, "  raw headers: {}", output::clip(&h, 400))?;
                    }
                    writeln!(
                        out,
                        "  body: {}\n",
                        output::clip(&String::from_utf8_lossy(raw.body), 200)
                    )?;
                    out.flush()?;
                }
            }
        }
        Ok(true)
    }
}

fn print_event(meta: &Meta, event: &Event) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let redelivered = if meta.delivered > 1 {
        format!(" (delivery {})", meta.delivered)
    } else {
        String::new()
    };
    writeln!(
        out,
        "{} seq {} {} {}{redelivered}",
        meta.stream,
        meta.sequence,
        rfc3339(meta.stored_at),
        event.event_type().as_str()
    )?;
    writeln!(
        out,
        "  id: {}  org: {}  source: {}  schema: {}",
        event.id(),
        event.organization_id().as_str(),
        event.source(),
        event.schema_version()
    )?;
    if let Some(s) = event.subject() {
        writeln!(out, "  subject: {s}")?;
    }
    let data = serde_json::to_string_pretty(event.data())?;
    for (i, line) in data.lines().enumerate() {
        let label = if i == 0 { "  data: " } else { "  " };
        writeln!(out, "{label}{line}")?;
    }
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
