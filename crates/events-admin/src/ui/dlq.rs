//! `GET /ui/dlq`: dead letters grouped by fingerprint, with the filters of `eventctl dlq
//! list`; `GET /ui/dlq/{seq}`: one dead letter (headers, body, failure record, where the
//! original is). Both read through `DeadLetters::list` / `get`, as the CLI and the API.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use events::DeadLetter;
use events::dlq::{DeadLetterFilter, PageRequest};
use maud::{Markup, html};
use time::OffsetDateTime;

use super::error::UiError;
use super::fingerprint::Fingerprint;
use super::form::{self, Fields};
use super::guard::{self, Action};
use super::layout;
use super::session::Session;
use crate::AdminState;

/// Most dead letters read for one triage page (later ones are counted as not shown).
pub(crate) const SCAN_CAP: u64 = 10_000;
/// Letters listed one by one under the groups.
const LISTED: usize = 200;
/// Default replay rate offered, events per second.
pub(crate) const DEFAULT_RATE: f64 = 10.0;

/// One fingerprint's dead letters.
pub(crate) struct Group {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) letters: Vec<DeadLetter>,
}

impl Group {
    fn first_seen(&self) -> Option<OffsetDateTime> {
        self.letters.iter().map(failed_at).min()
    }

    fn last_seen(&self) -> Option<OffsetDateTime> {
        self.letters.iter().map(failed_at).max()
    }
}

fn failed_at(dl: &DeadLetter) -> OffsetDateTime {
    dl.failed_at.unwrap_or(dl.stored_at)
}

/// The dead letters matching `filter`, read page by page up to [`SCAN_CAP`]; true when
/// more were left unread.
pub(crate) async fn read(
    state: &AdminState,
    filter: &DeadLetterFilter,
) -> Result<(Vec<DeadLetter>, bool), UiError> {
    let mut out = Vec::new();
    let mut after = 0;
    let mut scanned = 0;
    loop {
        let page = state
            .dead_letters()
            .list(
                filter,
                PageRequest::after(after, events::dlq::MAX_PAGE_LIMIT),
            )
            .await?;
        scanned += page.scanned;
        out.extend(page.items);
        match page.next_after {
            Some(next) if scanned < SCAN_CAP => after = next,
            Some(_) => return Ok((out, true)),
            None => return Ok((out, false)),
        }
    }
}

/// Groups by fingerprint, largest first.
pub(crate) fn group(letters: Vec<DeadLetter>) -> Vec<Group> {
    let mut map: BTreeMap<Fingerprint, Vec<DeadLetter>> = BTreeMap::new();
    for dl in letters {
        map.entry(Fingerprint::of(&dl)).or_default().push(dl);
    }
    let mut groups: Vec<Group> = map
        .into_iter()
        .map(|(fingerprint, letters)| Group {
            fingerprint,
            letters,
        })
        .collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.letters.len()));
    groups
}

/// The triage page.
pub(crate) async fn groups_page(
    session: Session,
    State(state): State<AdminState>,
    Query(fields): Query<Vec<(String, String)>>,
) -> Result<Markup, UiError> {
    guard::require(&session, Action::View, None)?;
    let fields = Fields(fields);
    let filter = form::filter(&fields)?;
    let (letters, truncated) = read(&state, &filter).await?;
    let listed: Vec<&DeadLetter> = letters.iter().take(LISTED).collect();
    let body = html! {
        h1 { "Dead letters" }
        (filter_form(&fields))
        @if truncated { p.warn { "Only the first " (SCAN_CAP) " dead letters were read; narrow the filter." } }
        p #dlq-count { (letters.len()) " dead letter(s) match." }
        (groups_table(&session, &fields, &group(letters.clone())))
        h2 { "Dead letters" }
        form method="post" action="/ui/dlq/replay" {
            (layout::csrf_field(&session))
            table #letters {
                thead { tr { th {} th.num { "seq" } th { "failed at" } th { "subject" } th { "type" } th { "consumer" } th { "reason" } th { "error" } } }
                tbody {
                    @for dl in &listed {
                        tr data-seq=(dl.sequence) {
                            td { input type="checkbox" name="seq" value=(dl.sequence) aria-label=(format!("select {}", dl.sequence)); }
                            td.num { a href=(format!("/ui/dlq/{}", dl.sequence)) { (dl.sequence) } }
                            td { (layout::time(failed_at(dl))) }
                            td { (dl.original_subject.as_deref().unwrap_or("-")) }
                            td { (dl.event_type.as_deref().unwrap_or("-")) }
                            td { (dl.consumer.as_deref().unwrap_or("-")) }
                            td { (dl.reason.map_or("-", |r| r.as_str())) }
                            td.error-text { (dl.error.as_deref().unwrap_or("-")) }
                        }
                    }
                }
            }
            @if letters.len() > LISTED { p.hint { "The first " (LISTED) " are listed; groups cover all." } }
            (rate_input())
            button type="submit" name="mode" value="dry_run" { "Dry run: replay selected" }
        }
    };
    Ok(layout::page("Dead letters", Some(&session), body))
}

fn filter_form(f: &Fields) -> Markup {
    html! {
        form.filters method="get" action="/ui/dlq" {
            @for name in form::FILTER_FIELDS {
                label { (name.replace('_', " ")) input type="text" name=(name) value=(f.get(name).unwrap_or("")); }
            }
            button type="submit" { "Filter" }
        }
    }
}

/// The rate field of replay forms, events per second.
pub(crate) fn rate_input() -> Markup {
    html! {
        label { "rate (events/s) " input type="number" name="rate" min="0.1" max="1000" step="0.1" value=(DEFAULT_RATE); }
    }
}

fn groups_table(session: &Session, f: &Fields, groups: &[Group]) -> Markup {
    html! {
        h2 { "Failure groups" }
        table #groups {
            thead { tr { th { "stream" } th { "consumer" } th { "reason" } th { "error (masked)" } th.num { "count" } th { "first seen" } th { "last seen" } th { "sample" } th { "actions" } } }
            tbody {
                @for g in groups {
                    @let fp = &g.fingerprint;
                    @let id = fp.id();
                    tr data-group=(id) {
                        td { (fp.original_stream) }
                        td { (fp.consumer) }
                        td { (fp.reason) }
                        td.error-text { (fp.error) }
                        td.num.count { (g.letters.len()) }
                        td { (layout::opt_time(g.first_seen())) }
                        td { (layout::opt_time(g.last_seen())) }
                        td { @if let Some(s) = g.letters.first() { a href=(format!("/ui/dlq/{}", s.sequence)) { (s.sequence) } } }
                        td {
                            form.inline method="post" action="/ui/dlq/replay" {
                                (layout::csrf_field(session))
                                (form::hidden_filter(f))
                                input type="hidden" name="group" value=(id);
                                (rate_input())
                                button.dry-run type="submit" name="mode" value="dry_run" { "Dry run: replay group" }
                            }
                            form.inline method="post" action="/ui/dlq/purge" {
                                (layout::csrf_field(session))
                                (form::hidden_filter(f))
                                input type="hidden" name="group" value=(id);
                                label { "type " code { (format!("purge {}", g.letters.len())) } " " input type="text" name="confirm" autocomplete="off"; }
                                button.danger type="submit" { "Purge group" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One dead letter.
pub(crate) async fn letter_page(
    session: Session,
    State(state): State<AdminState>,
    Path(seq): Path<String>,
) -> Result<Markup, UiError> {
    guard::require(&session, Action::View, None)?;
    let seq: u64 = seq
        .parse()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| UiError::bad_input("sequence must be a positive integer"))?;
    let dl = state.dead_letters().get(seq).await?.ok_or_else(|| {
        UiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("no dead letter with sequence {seq}"),
        )
    })?;
    Ok(layout::page(
        &format!("Dead letter {seq}"),
        Some(&session),
        letter(&session, &dl),
    ))
}

fn letter(session: &Session, dl: &DeadLetter) -> Markup {
    let headers = dl.header_pairs();
    let fp = Fingerprint::of(dl);
    html! {
        h1 { "Dead letter " (dl.sequence) }
        h2 { "Failure" }
        table.record {
            tr { th { "consumer" } td { (dl.consumer.as_deref().unwrap_or("-")) } }
            tr { th { "reason" } td { (dl.reason.map_or("-", |r| r.as_str())) } }
            tr { th { "deliveries" } td { (dl.deliveries.map_or("-".into(), |d| d.to_string())) } }
            tr { th { "failed at" } td { (layout::opt_time(dl.failed_at)) } }
            tr { th { "error" } td.error-text { (dl.error.as_deref().unwrap_or("-")) } }
            tr { th { "fingerprint" } td { code { (fp.id()) } " " (fp.error) } }
            tr { th { "stored at" } td { (layout::time(dl.stored_at)) " as " (dl.subject) } }
        }
        h2 { "Original" }
        table.record {
            tr { th { "subject" } td { (dl.original_subject.as_deref().unwrap_or("-")) } }
            tr { th { "stream, sequence" } td { (dl.original_stream.as_deref().unwrap_or("-")) ", " (dl.original_sequence.map_or("-".into(), |s| s.to_string())) } }
            tr { th { "event" } td { (dl.event_type.as_deref().unwrap_or("-")) " " (dl.event_id.as_deref().unwrap_or("")) } }
            tr { th { "organization" } td { (dl.organization.as_deref().unwrap_or("-")) } }
            @if let Some(e) = &dl.decode_error { tr { th { "decode error" } td.error-text { (e) } } }
        }
        h2 { "Headers" }
        table.headers { @for (k, v) in &headers { tr { th { (k) } td { (v) } } } }
        h2 { "Body (" (dl.body.len()) " bytes)" }
        pre.body { (body_view(&dl.body)) }
        h2 { "Actions" }
        form.inline method="post" action="/ui/dlq/replay" {
            (layout::csrf_field(session))
            input type="hidden" name="seq" value=(dl.sequence);
            (rate_input())
            button.dry-run type="submit" name="mode" value="dry_run" { "Dry run: replay" }
        }
        form.inline method="post" action="/ui/dlq/purge" {
            (layout::csrf_field(session))
            input type="hidden" name="seq" value=(dl.sequence);
            label { "type " code { "purge 1" } " " input type="text" name="confirm" autocomplete="off"; }
            button.danger type="submit" { "Purge" }
        }
    }
}

/// JSON pretty-printed, other UTF-8 as is, binary as a hex dump (16 bytes a line).
fn body_view(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return serde_json::to_string_pretty(&v).unwrap_or_default();
    }
    if let Ok(s) = std::str::from_utf8(body) {
        return s.to_owned();
    }
    body.chunks(16)
        .enumerate()
        .map(|(i, c)| {
            let hex: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
            let text: String = c
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            format!("{:08x}  {:<48}  {text}", i * 16, hex.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_shown_by_kind() {
        assert_eq!(body_view(br#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(body_view(b"plain"), "plain");
        assert!(body_view(&[0xff, 0x00, b'A']).starts_with("00000000  ff 00 41"));
    }
}
