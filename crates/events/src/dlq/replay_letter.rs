//! Replay: moving dead letters back to their original subject (CONTRACT.md §4), the
//! body byte for byte, once even when several replays of one dead letter race.

use async_nats::header::{HeaderValue, NATS_MESSAGE_ID};
use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use serde::Serialize;
use tokio::time::timeout;

use super::access::{DeadLetters, MAX_REPLAY_COUNT};
use super::error::DlqError;
use super::stored::{GetFailure, get_stored};
use super::{DeadLetter, DeadLetterFilter, headers, replay_msg_id};
use crate::error::BoxError;
use crate::error::error_chain;
use crate::names::{StreamName, Subject};
use crate::replay::{fresh_headers, publish};

/// What happened to one dead letter in a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplayOutcome {
    /// Stored back in its stream, and the dead letter deleted.
    Replayed {
        /// Stream that stored it.
        stream: String,
        /// Its new sequence there.
        sequence: u64,
    },
    /// Stored back by another replay of the same dead letter (the same `Nats-Msg-Id`
    /// `replay:<sequence>`, within the stream's duplicate window): this call stored no second
    /// copy, and the dead letter is gone. What the losers of concurrent replays get.
    AlreadyReplayed {
        /// Stream that stored it.
        stream: String,
        /// Its sequence there.
        sequence: u64,
    },
    /// Dry run: would be replayed.
    WouldReplay {
        /// The stream that stores the original subject now, where the copy would go.
        stream: String,
    },
    /// Not replayed; the dead letter is kept.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// Stored back, but the dead letter could not be deleted (a second replay duplicates).
    ReplayedNotDeleted {
        /// Stream that stored it.
        stream: String,
        /// Its new sequence there.
        sequence: u64,
        /// Why the delete failed.
        error: String,
    },
}

/// The result of replaying one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplayItem {
    /// Sequence of the dead letter.
    pub dlq_sequence: u64,
    /// The subject it was (or would be) published to.
    pub subject: Option<String>,
    /// The event id, when the body decodes.
    pub event_id: Option<String>,
    /// True when the dead letter's body was omitted (`Dlq-Body-Omitted`) and the body is
    /// (or, in a dry run, would be) read from the original message in its stream.
    pub original_body: bool,
    /// What happened.
    #[serde(flatten)]
    pub outcome: ReplayOutcome,
}

/// The result of [`DeadLetters::replay_many`].
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// One entry per matching dead letter, in sequence order.
    pub items: Vec<ReplayItem>,
    /// Replayed (or already replayed by a concurrent call) and deleted; in a dry run, those
    /// that would be.
    pub replayed: u64,
    /// Not replayed (the dead letter is kept), or replayed and not deleted.
    pub failed: u64,
    /// True if the cap stopped the selection before every match was taken.
    pub capped: bool,
    /// True if nothing was published or deleted.
    pub dry_run: bool,
}

/// Options of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Only report what would be replayed.
    pub dry_run: bool,
}

impl ReplayOptions {
    /// Replay for real.
    pub fn execute() -> Self {
        Self { dry_run: false }
    }

    /// Report only.
    pub fn dry_run() -> Self {
        Self { dry_run: true }
    }
}

impl DeadLetters {
    /// Moves one dead letter back (CONTRACT.md §4): publishes its body byte for byte to
    /// the original subject with its original headers (without the `Dlq-*` failure record
    /// and the old `Nats-*` publish headers), `Nats-Msg-Id: replay:<sequence>` and
    /// `Dlq-Replayed-From: <sequence>`; awaits the stream's ack; only then deletes the dead
    /// letter. A dead letter whose body was omitted (`Dlq-Body-Omitted`) is replayed from
    /// its original, read by `Dlq-Original-Stream` / `Dlq-Original-Sequence`.
    ///
    /// Concurrent replays of one dead letter store one copy: the stream drops the others
    /// as duplicates, and their callers get [`ReplayOutcome::AlreadyReplayed`] (or
    /// [`DlqError::NotFound`] once the dead letter is deleted). With `dry_run`, only reports
    /// where it would go, after the checks a replay makes (a stream stores the subject, the
    /// original of an omitted body is still there).
    ///
    /// # Errors
    /// [`DlqError::NotFound`]; [`DlqError::NoOriginalSubject`] /
    /// [`DlqError::InvalidOriginalSubject`]; [`DlqError::NoStreamForSubject`];
    /// for an omitted body [`DlqError::NoOriginalLocation`], [`DlqError::OriginalGone`],
    /// [`DlqError::OriginalMismatch`], [`DlqError::GetOriginal`]; [`DlqError::Publish`]
    /// (the dead letter is kept); [`DlqError::ReplayedNotDeleted`]; plus the errors of
    /// [`DeadLetters::get`].
    pub async fn replay(
        &self,
        sequence: u64,
        options: ReplayOptions,
    ) -> Result<ReplayItem, DlqError> {
        let dl = self
            .get(sequence)
            .await?
            .ok_or(DlqError::NotFound { sequence })?;
        self.replay_letter(&dl, options).await
    }

    async fn replay_letter(
        &self,
        dl: &DeadLetter,
        options: ReplayOptions,
    ) -> Result<ReplayItem, DlqError> {
        let subject = replay_subject(dl)?;
        let (body, original_body) = self.replay_body(dl, &subject).await?;
        let item = |outcome| ReplayItem {
            dlq_sequence: dl.sequence,
            subject: Some(subject.as_str().to_owned()),
            event_id: dl.event_id.clone(),
            original_body,
            outcome,
        };
        if options.dry_run {
            let stream = self.stream_for(dl.sequence, &subject).await?;
            return Ok(item(ReplayOutcome::WouldReplay { stream }));
        }
        let ack = self.publish_copy(dl, &subject, body).await?;
        tracing::info!(
            dlq_sequence = dl.sequence, subject = %subject, stream = %ack.stream,
            stream_sequence = ack.sequence, duplicate = ack.duplicate, original_body,
            "dead letter replayed"
        );
        if let Some(original) = dl.original_stream.as_deref()
            && original != ack.stream
        {
            tracing::warn!(
                dlq_sequence = dl.sequence, subject = %subject, original_stream = original,
                stream = %ack.stream, "replayed dead letter was stored by another stream"
            );
        }
        // Deleted by this call or by a concurrent one: either way the copy is stored once.
        match self.delete_if_present(dl.sequence).await {
            Ok(_) if ack.duplicate => Ok(item(ReplayOutcome::AlreadyReplayed {
                stream: ack.stream,
                sequence: ack.sequence,
            })),
            Ok(_) => Ok(item(ReplayOutcome::Replayed {
                stream: ack.stream,
                sequence: ack.sequence,
            })),
            Err(e) => Err(DlqError::ReplayedNotDeleted {
                sequence: dl.sequence,
                stream: ack.stream,
                stored_sequence: ack.sequence,
                source: Box::new(e),
            }),
        }
    }

    /// Publishes the copy with the replay id and awaits the stream's ack.
    async fn publish_copy(
        &self,
        dl: &DeadLetter,
        subject: &Subject,
        body: Bytes,
    ) -> Result<PublishAck, DlqError> {
        let sequence = dl.sequence;
        let mut h = fresh_headers(&dl.headers, true);
        // `replay:<u64>` and a u64 in decimal have no CR/LF: the parses cannot fail.
        if let Ok(v) = replay_msg_id(sequence).parse::<HeaderValue>() {
            h.insert(NATS_MESSAGE_ID, v);
        }
        if let Ok(v) = sequence.to_string().parse::<HeaderValue>() {
            h.insert(headers::REPLAYED_FROM, v);
        }
        let t = self.request_timeout;
        let publish_err = |source: BoxError| DlqError::Publish {
            sequence,
            subject: subject.as_str().to_owned(),
            source,
        };
        let ack = publish(&self.js, subject.as_str(), h, body, t)
            .await
            .map_err(publish_err)?;
        match timeout(t, ack).await {
            Err(_) => Err(publish_err(
                format!("no ack from the stream within {t:?}").into(),
            )),
            Ok(Err(e)) if e.kind() == PublishErrorKind::StreamNotFound => {
                Err(DlqError::NoStreamForSubject {
                    sequence,
                    subject: subject.as_str().to_owned(),
                })
            }
            Ok(Err(e)) => Err(publish_err(Box::new(e))),
            Ok(Ok(ack)) => Ok(ack),
        }
    }

    /// The stream that stores `subject` now (what a dry run reports).
    async fn stream_for(&self, sequence: u64, subject: &Subject) -> Result<String, DlqError> {
        let t = self.request_timeout;
        match timeout(t, self.js.stream_by_subject(subject.as_str())).await {
            Err(_) => Err(DlqError::Timeout {
                what: "find the stream of a subject",
                after: t,
            }),
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) if e.kind() == GetStreamByNameErrorKind::NotFound => {
                Err(DlqError::NoStreamForSubject {
                    sequence,
                    subject: subject.as_str().to_owned(),
                })
            }
            Ok(Err(e)) => Err(DlqError::Lookup {
                subject: subject.as_str().to_owned(),
                source: Box::new(e),
            }),
        }
    }

    /// The body to publish and whether it comes from the original: the dead letter's own,
    /// or, when it was omitted, the original's, read from its stream and checked against
    /// the record (same subject, `Dlq-Body-Omitted` bytes). Never an empty stand-in.
    async fn replay_body(
        &self,
        dl: &DeadLetter,
        subject: &Subject,
    ) -> Result<(Bytes, bool), DlqError> {
        let Some(original) = Original::of(dl)? else {
            return Ok((dl.body.clone(), false));
        };
        let t = self.request_timeout;
        let m = match get_stored(&self.js, original.stream, original.original_sequence, t).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(original.gone("no message at that sequence")),
            Err(GetFailure::StreamNotFound) => {
                return Err(original.gone("the stream does not exist"));
            }
            Err(GetFailure::Timeout) => {
                return Err(DlqError::Timeout {
                    what: "read the original of a dead letter",
                    after: t,
                });
            }
            Err(GetFailure::Other(source)) => {
                return Err(DlqError::GetOriginal {
                    sequence: original.sequence,
                    stream: original.stream.to_owned(),
                    original_sequence: original.original_sequence,
                    source,
                });
            }
        };
        original.check(&m.subject, m.payload.len(), subject)?;
        Ok((m.payload, true))
    }

    /// Replays up to `max_count` dead letters matching `filter`, oldest first, one at a
    /// time (so the original order is kept); reports each. A failure on one does not stop
    /// the others.
    ///
    /// # Errors
    /// [`DlqError::InvalidCount`] unless `1 <= max_count <= MAX_REPLAY_COUNT`,
    /// [`DlqError::InvalidFilter`], and read errors; per-item failures are in the report.
    pub async fn replay_many(
        &self,
        filter: &DeadLetterFilter,
        max_count: usize,
        options: ReplayOptions,
    ) -> Result<ReplayReport, DlqError> {
        if max_count == 0 || max_count > MAX_REPLAY_COUNT {
            return Err(DlqError::InvalidCount {
                count: max_count,
                max: MAX_REPLAY_COUNT,
            });
        }
        filter.check().map_err(DlqError::InvalidFilter)?;
        // Select first (bounded by the cap), then move: the scan never sees its own output.
        let mut selected = Vec::new();
        let mut capped = false;
        self.scan(filter, 0, None, |dl| {
            if selected.len() >= max_count {
                capped = true;
                return false;
            }
            selected.push(dl);
            true
        })
        .await?;
        let mut report = ReplayReport {
            capped,
            dry_run: options.dry_run,
            ..Default::default()
        };
        for dl in &selected {
            let item = match self.replay_letter(dl, options).await {
                Ok(item) => item,
                Err(e) => failed_item(dl, e),
            };
            match item.outcome {
                ReplayOutcome::Replayed { .. }
                | ReplayOutcome::AlreadyReplayed { .. }
                | ReplayOutcome::WouldReplay { .. } => report.replayed += 1,
                _ => report.failed += 1,
            }
            report.items.push(item);
        }
        Ok(report)
    }
}

/// Where a dead letter goes back to: `Dlq-Original-Subject`, else its `dlq.*` subject
/// without the prefix; a valid subject to publish on.
fn replay_subject(dl: &DeadLetter) -> Result<Subject, DlqError> {
    let sequence = dl.sequence;
    let subject = dl
        .original_subject
        .as_deref()
        .ok_or(DlqError::NoOriginalSubject {
            sequence,
            header: headers::ORIGINAL_SUBJECT,
        })?;
    Subject::new(subject).map_err(|source| DlqError::InvalidOriginalSubject { sequence, source })
}

/// The report line of a dead letter a batch replay could not move.
fn failed_item(dl: &DeadLetter, e: DlqError) -> ReplayItem {
    ReplayItem {
        dlq_sequence: dl.sequence,
        subject: dl.original_subject.clone(),
        event_id: dl.event_id.clone(),
        original_body: dl.headers.get(headers::BODY_OMITTED).is_some(),
        outcome: match e {
            DlqError::ReplayedNotDeleted {
                stream,
                stored_sequence,
                source,
                ..
            } => ReplayOutcome::ReplayedNotDeleted {
                stream,
                sequence: stored_sequence,
                error: source.to_string(),
            },
            other => ReplayOutcome::Failed {
                error: error_chain(&other),
            },
        },
    }
}

/// Where the original of a dead letter whose body was omitted is stored, and its length.
struct Original<'a> {
    /// The dead letter's own sequence.
    sequence: u64,
    stream: &'a str,
    original_sequence: u64,
    len: usize,
}

impl<'a> Original<'a> {
    /// `None` if the dead letter carries its body; else the record's location, each
    /// header that is missing or bad named in [`DlqError::NoOriginalLocation`].
    fn of(dl: &'a DeadLetter) -> Result<Option<Self>, DlqError> {
        let Some(omitted) = dl.headers.get(headers::BODY_OMITTED) else {
            return Ok(None);
        };
        let sequence = dl.sequence;
        let missing = |header| DlqError::NoOriginalLocation { sequence, header };
        let len: usize = omitted
            .as_str()
            .trim()
            .parse()
            .map_err(|_| missing(headers::BODY_OMITTED))?;
        let stream = dl
            .original_stream
            .as_deref()
            .filter(|s| StreamName::new(s).is_ok())
            .ok_or_else(|| missing(headers::ORIGINAL_STREAM))?;
        let original_sequence = dl
            .original_sequence
            .filter(|s| *s > 0)
            .ok_or_else(|| missing(headers::ORIGINAL_SEQUENCE))?;
        Ok(Some(Self {
            sequence,
            stream,
            original_sequence,
            len,
        }))
    }

    fn gone(&self, why: &'static str) -> DlqError {
        DlqError::OriginalGone {
            sequence: self.sequence,
            stream: self.stream.to_owned(),
            original_sequence: self.original_sequence,
            why,
        }
    }

    /// The stored message is the one the record names: same subject, same length.
    fn check(
        &self,
        stored_subject: &str,
        stored_len: usize,
        subject: &Subject,
    ) -> Result<(), DlqError> {
        let mismatch = |detail| DlqError::OriginalMismatch {
            sequence: self.sequence,
            stream: self.stream.to_owned(),
            original_sequence: self.original_sequence,
            detail,
        };
        if stored_subject != subject.as_str() {
            return Err(mismatch(format!(
                "its subject is {stored_subject}, not {subject}"
            )));
        }
        if stored_len != self.len {
            return Err(mismatch(format!(
                "its body is {stored_len} bytes, not {}",
                self.len
            )));
        }
        Ok(())
    }
}
