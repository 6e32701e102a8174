//! Integration tests: dead-letter access (list, get, replay, purge) against a real server.
//!
//! The consumer that writes dead letters is built in parallel, so these tests write dead
//! letters themselves: messages on `dlq.<subject>` with the CONTRACT.md §4 headers.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use events::dlq::{
    self, DeadLetterFilter, DeadLetterReason, DeadLetters, DlqError, PageRequest, ReplayOptions,
    ReplayOutcome,
};
use events::{ConsumerName, Event, EventType, OrganizationId, StreamName};
use events_testkit::{NatsServer, RawMessage, publish_raw};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);

/// What a test dead letter says about itself (the expected values of each filter are
/// derived from these).
#[derive(Debug, Clone)]
struct Spec {
    event_type: &'static str,
    org: &'static str,
    reason: DeadLetterReason,
    consumer: &'static str,
    original_stream: &'static str,
    failed_at: OffsetDateTime,
    /// `None`: a valid event body; `Some`: these raw bytes.
    raw_body: Option<&'static [u8]>,
    /// `Some(n)`: the body was omitted (`Dlq-Body-Omitted: n`); the record's original
    /// sequence points at the original.
    body_omitted: Option<usize>,
}

impl Spec {
    fn new(event_type: &'static str, org: &'static str) -> Self {
        Self {
            event_type,
            org,
            reason: DeadLetterReason::Permanent,
            consumer: "catalog",
            original_stream: "AUTH_EVENTS",
            failed_at: time::macros::datetime!(2026-01-01 00:00 UTC),
            raw_body: None,
            body_omitted: None,
        }
    }

    /// A dead letter whose body was omitted: empty, with `Dlq-Body-Omitted: len`.
    fn omitted(event_type: &'static str, len: usize) -> Self {
        Self {
            raw_body: Some(b""),
            body_omitted: Some(len),
            ..Self::new(event_type, "org-a")
        }
    }
}

struct Written {
    seq: u64,
    spec: Spec,
    body: Bytes,
    event_id: Option<String>,
}

async fn setup() -> (NatsServer, jetstream::Context) {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: dlq::DLQ_STREAM.into(),
        subjects: vec!["dlq.>".into()],
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .expect("create DLQ_EVENTS");
    js.create_stream(stream::Config {
        name: "AUTH_EVENTS".into(),
        subjects: vec!["auth.>".into()],
        ..Default::default()
    })
    .await
    .expect("create AUTH_EVENTS");
    (nats, js)
}

/// Publishes a dead letter as the consumer would (CONTRACT.md §4) and awaits its ack.
async fn write(js: &jetstream::Context, spec: Spec, original_seq: u64) -> Written {
    let (body, event_id) = match spec.raw_body {
        Some(raw) => (Bytes::from_static(raw), None),
        None => {
            let ev = Event::builder(spec.event_type)
                .source("auth-service")
                .organization(spec.org)
                .data(&serde_json::json!({ "n": original_seq }))
                .build()
                .expect("valid event");
            (Bytes::from(ev.to_json_bytes()), Some(ev.id().to_owned()))
        }
    };
    let mut h = HeaderMap::new();
    h.insert("Content-Type", "application/cloudevents+json");
    h.insert("X-Custom", "kept");
    h.insert(
        "Nats-Msg-Id",
        dlq::dead_letter_msg_id(spec.original_stream, original_seq, spec.consumer).as_str(),
    );
    h.insert(dlq::headers::ORIGINAL_SUBJECT, spec.event_type);
    h.insert(dlq::headers::ORIGINAL_STREAM, spec.original_stream);
    h.insert(
        dlq::headers::ORIGINAL_SEQUENCE,
        original_seq.to_string().as_str(),
    );
    h.insert(dlq::headers::CONSUMER, spec.consumer);
    h.insert(dlq::headers::DELIVERIES, "5");
    h.insert(dlq::headers::REASON, spec.reason.as_str());
    h.insert(
        dlq::headers::ERROR,
        dlq::error_header_value("handler said no").as_str(),
    );
    h.insert(
        dlq::headers::FAILED_AT,
        spec.failed_at.format(&Rfc3339).expect("format").as_str(),
    );
    if let Some(len) = spec.body_omitted {
        h.insert(dlq::headers::BODY_OMITTED, len.to_string().as_str());
    }
    let ack = timeout(WAIT, async {
        js.publish_with_headers(format!("dlq.{}", spec.event_type), h, body.clone())
            .await
            .expect("publish dead letter")
            .await
            .expect("dead letter ack")
    })
    .await
    .expect("dead letter ack within bound");
    Written {
        seq: ack.sequence,
        spec,
        body,
        event_id,
    }
}

/// A varied set: 2 types, 3 orgs, 4 reasons, 2 consumers, 2 original streams, failure
/// times an hour apart, and one body that is not an event.
async fn write_varied(js: &jetstream::Context) -> Vec<Written> {
    let types = ["auth.user.created", "auth.user.deleted"];
    let orgs = ["org-a", "org-b", "org-c"];
    let reasons = [
        DeadLetterReason::MaxDeliveries,
        DeadLetterReason::Permanent,
        DeadLetterReason::Undecodable,
        DeadLetterReason::Invalid,
    ];
    let base = time::macros::datetime!(2026-03-01 00:00 UTC);
    let mut out = Vec::new();
    for i in 0..13u64 {
        let mut spec = Spec::new(types[(i % 2) as usize], orgs[(i % 3) as usize]);
        spec.reason = reasons[(i % 4) as usize];
        spec.consumer = if i % 5 == 0 { "billing" } else { "catalog" };
        spec.original_stream = if i % 6 == 0 {
            "OTHER_EVENTS"
        } else {
            "AUTH_EVENTS"
        };
        spec.failed_at = base + time::Duration::hours(i as i64);
        if i == 12 {
            spec.raw_body = Some(b"not json at all");
            spec.reason = DeadLetterReason::Undecodable;
        }
        out.push(write(js, spec, 100 + i).await);
    }
    out
}

async fn list_all(dlq: &DeadLetters, filter: &DeadLetterFilter) -> Vec<u64> {
    let page = timeout(
        WAIT,
        dlq.list(filter, PageRequest::first(dlq::MAX_PAGE_LIMIT)),
    )
    .await
    .expect("list within bound")
    .expect("list");
    assert_eq!(page.next_after, None, "everything fits one page");
    page.items.iter().map(|d| d.sequence).collect()
}

fn expected(written: &[Written], pred: impl Fn(&Written) -> bool) -> Vec<u64> {
    written.iter().filter(|w| pred(w)).map(|w| w.seq).collect()
}

async fn consumer_count(js: &jetstream::Context, stream: &str) -> usize {
    let mut s = js.get_stream(stream).await.expect("stream");
    s.info().await.expect("info").state.consumer_count
}

#[tokio::test]
async fn dlq_list_filters_each_field() {
    let (_nats, js) = setup().await;
    let written = write_varied(&js).await;
    let dlq = DeadLetters::new(js.clone());

    let all = list_all(&dlq, &DeadLetterFilter::new()).await;
    assert_eq!(all, expected(&written, |_| true));

    let f = DeadLetterFilter::new().original_stream(StreamName::new("OTHER_EVENTS").unwrap());
    let want = expected(&written, |w| w.spec.original_stream == "OTHER_EVENTS");
    assert!(!want.is_empty());
    assert_eq!(list_all(&dlq, &f).await, want);

    let f = DeadLetterFilter::new().event_type(EventType::new("auth.user.deleted").unwrap());
    let want = expected(&written, |w| w.spec.event_type == "auth.user.deleted");
    assert_eq!(list_all(&dlq, &f).await, want);

    // The undecodable one carries no organization: it never matches an org filter.
    let f = DeadLetterFilter::new().organization(OrganizationId::new("org-a").unwrap());
    let want = expected(&written, |w| {
        w.spec.org == "org-a" && w.spec.raw_body.is_none()
    });
    assert_eq!(list_all(&dlq, &f).await, want);

    let f = DeadLetterFilter::new().reason(DeadLetterReason::Undecodable);
    let want = expected(&written, |w| w.spec.reason == DeadLetterReason::Undecodable);
    assert_eq!(list_all(&dlq, &f).await, want);

    let f = DeadLetterFilter::new().consumer(ConsumerName::new("billing").unwrap());
    let want = expected(&written, |w| w.spec.consumer == "billing");
    assert_eq!(list_all(&dlq, &f).await, want);

    let from = written[3].spec.failed_at;
    let to = written[8].spec.failed_at;
    let f = DeadLetterFilter::new().failed_between(Some(from), Some(to));
    let want = expected(&written, |w| {
        w.spec.failed_at >= from && w.spec.failed_at < to
    });
    assert_eq!(want.len(), 5);
    assert_eq!(list_all(&dlq, &f).await, want);

    // Stored-time range: bounds taken from the server's stored timestamps.
    let mut stored = Vec::new();
    for w in &written {
        let dl = dlq.get(w.seq).await.expect("get").expect("present");
        stored.push((w.seq, dl.stored_at));
    }
    let (s_from, s_to) = (stored[4].1, stored[9].1);
    let f = DeadLetterFilter::new().stored_between(Some(s_from), Some(s_to));
    let want: Vec<u64> = stored
        .iter()
        .filter(|(_, t)| *t >= s_from && *t < s_to)
        .map(|(s, _)| *s)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(list_all(&dlq, &f).await, want);

    // Filters combine.
    let f = DeadLetterFilter::new()
        .event_type(EventType::new("auth.user.created").unwrap())
        .consumer(ConsumerName::new("catalog").unwrap());
    let want = expected(&written, |w| {
        w.spec.event_type == "auth.user.created" && w.spec.consumer == "catalog"
    });
    assert_eq!(list_all(&dlq, &f).await, want);

    // The undecodable dead letter is listed with its failure record and decode error.
    let bad = written.last().unwrap();
    let page = dlq
        .list(
            &DeadLetterFilter::new(),
            PageRequest::after(bad.seq - 1, 10),
        )
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    let dl = &page.items[0];
    assert_eq!(dl.sequence, bad.seq);
    assert_eq!(dl.body, bad.body);
    assert!(dl.decode_error.is_some());
    assert_eq!(dl.reason, Some(DeadLetterReason::Undecodable));
    assert_eq!(dl.event_id, None);

    // Reading left no consumer behind.
    assert_eq!(consumer_count(&js, dlq::DLQ_STREAM).await, 0);
}

#[tokio::test]
async fn dlq_list_paginates_by_cursor() {
    let (_nats, js) = setup().await;
    let written = write_varied(&js).await;
    let dlq = DeadLetters::new(js.clone());

    let limit = 4;
    let mut seen = Vec::new();
    let mut page_req = PageRequest::first(limit);
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= written.len(), "pagination does not end");
        let page = dlq
            .list(&DeadLetterFilter::new(), page_req)
            .await
            .expect("list");
        assert!(page.items.len() <= limit);
        seen.extend(page.items.iter().map(|d| d.sequence));
        match page.next_after {
            Some(next) => page_req = PageRequest::after(next, limit),
            None => break,
        }
    }
    assert_eq!(seen, expected(&written, |_| true));
    assert_eq!(pages, written.len().div_ceil(limit));

    // Paginating a filtered list: the cursor skips non-matching letters too.
    let f = DeadLetterFilter::new().organization(OrganizationId::new("org-b").unwrap());
    let want = expected(&written, |w| {
        w.spec.org == "org-b" && w.spec.raw_body.is_none()
    });
    let first = dlq.list(&f, PageRequest::first(2)).await.expect("list");
    assert_eq!(
        first.items.iter().map(|d| d.sequence).collect::<Vec<_>>(),
        want[..2]
    );
    let next = first.next_after.expect("more pages");
    let rest = dlq
        .list(&f, PageRequest::after(next, dlq::MAX_PAGE_LIMIT))
        .await
        .expect("list");
    assert_eq!(
        rest.items.iter().map(|d| d.sequence).collect::<Vec<_>>(),
        want[2..]
    );
    assert_eq!(rest.next_after, None);

    // Bad pages are refused by name.
    for limit in [0, dlq::MAX_PAGE_LIMIT + 1] {
        let err = dlq
            .list(&DeadLetterFilter::new(), PageRequest::first(limit))
            .await
            .expect_err("bad limit");
        assert!(matches!(err, DlqError::InvalidPageLimit { .. }), "{err}");
        assert!(err.is_invalid_input());
    }
    let t = OffsetDateTime::now_utc();
    let err = dlq
        .list(
            &DeadLetterFilter::new().failed_between(Some(t), Some(t)),
            PageRequest::default(),
        )
        .await
        .expect_err("empty range");
    assert!(matches!(err, DlqError::InvalidFilter(_)), "{err}");

    // Past the end: an empty last page.
    let last = written.last().unwrap().seq;
    let page = dlq
        .list(&DeadLetterFilter::new(), PageRequest::after(last, 10))
        .await
        .expect("list");
    assert!(page.items.is_empty());
    assert_eq!(page.next_after, None);
    assert_eq!(consumer_count(&js, dlq::DLQ_STREAM).await, 0);
}

#[tokio::test]
async fn dlq_get_reads_the_record_and_unknown_is_not_found() {
    let (_nats, js) = setup().await;
    let mut spec = Spec::new("auth.user.created", "org-a");
    spec.reason = DeadLetterReason::MaxDeliveries;
    let w = write(&js, spec, 77).await;
    let dlq = DeadLetters::new(js);

    let dl = dlq.get(w.seq).await.expect("get").expect("present");
    assert_eq!(dl.sequence, w.seq);
    assert_eq!(dl.subject, "dlq.auth.user.created");
    assert_eq!(dl.original_subject.as_deref(), Some("auth.user.created"));
    assert_eq!(dl.original_stream.as_deref(), Some("AUTH_EVENTS"));
    assert_eq!(dl.original_sequence, Some(77));
    assert_eq!(dl.consumer.as_deref(), Some("catalog"));
    assert_eq!(dl.deliveries, Some(5));
    assert_eq!(dl.reason, Some(DeadLetterReason::MaxDeliveries));
    assert_eq!(dl.error.as_deref(), Some("handler said no"));
    assert_eq!(dl.failed_at, Some(w.spec.failed_at));
    assert_eq!(dl.event_type.as_deref(), Some("auth.user.created"));
    assert_eq!(dl.organization.as_deref(), Some("org-a"));
    assert_eq!(dl.event_id, w.event_id);
    assert_eq!(dl.body, w.body);
    assert!(dl.stored_at <= OffsetDateTime::now_utc() + time::Duration::minutes(1));

    let unknown = w.seq + 1000;
    assert!(dlq.get(unknown).await.expect("get").is_none());
    let err = dlq.get(0).await.expect_err("0 is no sequence");
    assert!(matches!(err, DlqError::InvalidSequence));
    let err = dlq
        .replay(unknown, ReplayOptions::execute())
        .await
        .expect_err("unknown");
    assert!(
        matches!(err, DlqError::NotFound { sequence } if sequence == unknown),
        "{err}"
    );
    assert!(err.is_not_found());
    let err = dlq.delete(unknown).await.expect_err("unknown");
    assert!(matches!(err, DlqError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn dlq_without_stream_is_stream_not_found() {
    let nats = NatsServer::start().await;
    let dlq = DeadLetters::new(nats.jetstream().await);
    let err = dlq.get(1).await.expect_err("no stream");
    assert!(matches!(err, DlqError::StreamNotFound { .. }), "{err}");
    let err = dlq
        .list(&DeadLetterFilter::new(), PageRequest::default())
        .await
        .expect_err("no stream");
    assert!(matches!(err, DlqError::StreamNotFound { .. }), "{err}");
}

#[tokio::test]
async fn dlq_replay_puts_the_body_back_and_removes_the_dead_letter() {
    let (_nats, js) = setup().await;
    let w = write(&js, Spec::new("auth.user.created", "org-a"), 5).await;
    let dlq = DeadLetters::new(js.clone());

    // Dry run: reports, moves nothing.
    let item = dlq
        .replay(w.seq, ReplayOptions::dry_run())
        .await
        .expect("dry run");
    assert_eq!(
        item.outcome,
        ReplayOutcome::WouldReplay {
            stream: "AUTH_EVENTS".into()
        }
    );
    assert_eq!(item.subject.as_deref(), Some("auth.user.created"));
    assert!(!item.original_body);
    assert!(dlq.get(w.seq).await.expect("get").is_some());

    let item = dlq
        .replay(w.seq, ReplayOptions::execute())
        .await
        .expect("replay");
    let ReplayOutcome::Replayed { stream, sequence } = item.outcome else {
        panic!("not replayed: {item:?}");
    };
    assert_eq!(stream, "AUTH_EVENTS");
    assert_eq!(item.event_id, w.event_id);

    let auth = js.get_stream("AUTH_EVENTS").await.expect("stream");
    let back = auth
        .get_raw_message(sequence)
        .await
        .expect("replayed message");
    assert_eq!(back.subject.as_str(), "auth.user.created");
    assert_eq!(back.payload, w.body, "body byte-identical");
    let h = &back.headers;
    let seq_text = w.seq.to_string();
    assert_eq!(
        h.get(dlq::headers::REPLAYED_FROM).map(|v| v.as_str()),
        Some(seq_text.as_str())
    );
    assert_eq!(
        h.get("Content-Type").map(|v| v.as_str()),
        Some("application/cloudevents+json")
    );
    assert_eq!(h.get("X-Custom").map(|v| v.as_str()), Some("kept"));
    for name in [
        dlq::headers::REASON,
        dlq::headers::ERROR,
        dlq::headers::ORIGINAL_SUBJECT,
        dlq::headers::FAILED_AT,
    ] {
        assert!(h.get(name).is_none(), "{name} dropped");
    }
    let msg_id = h.get("Nats-Msg-Id").expect("replay msg id").as_str();
    assert_eq!(msg_id, dlq::replay_msg_id(w.seq));
    // The event still decodes to the same event.
    let ev = Event::decode(Some(h), &back.payload).expect("decodes");
    assert_eq!(Some(ev.id().to_owned()), w.event_id);

    assert!(
        dlq.get(w.seq).await.expect("get").is_none(),
        "dead letter removed"
    );
    let err = dlq
        .replay(w.seq, ReplayOptions::execute())
        .await
        .expect_err("already replayed");
    assert!(matches!(err, DlqError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn dlq_replay_without_a_stream_for_the_subject_keeps_the_dead_letter() {
    let (_nats, js) = setup().await;
    let w = write(&js, Spec::new("nostream.thing.happened", "org-a"), 1).await;
    let ok = write(&js, Spec::new("auth.user.created", "org-a"), 2).await;
    let dlq = DeadLetters::new(js.clone()).with_request_timeout(Duration::from_secs(5));

    let err = dlq
        .replay(w.seq, ReplayOptions::execute())
        .await
        .expect_err("no stream takes nostream.*");
    assert!(
        matches!(&err, DlqError::NoStreamForSubject { sequence, subject }
            if *sequence == w.seq && subject == "nostream.thing.happened"),
        "{err}"
    );
    let kept = dlq.get(w.seq).await.expect("get").expect("kept");
    assert_eq!(kept.body, w.body);

    // In a batch, the failure is reported per item and the others still move.
    let report = dlq
        .replay_many(&DeadLetterFilter::new(), 10, ReplayOptions::execute())
        .await
        .expect("replay many");
    assert_eq!(report.items.len(), 2);
    assert_eq!((report.replayed, report.failed), (1, 1));
    let by_seq = |s| report.items.iter().find(|i| i.dlq_sequence == s).unwrap();
    assert!(matches!(
        by_seq(w.seq).outcome,
        ReplayOutcome::Failed { .. }
    ));
    assert!(matches!(
        by_seq(ok.seq).outcome,
        ReplayOutcome::Replayed { .. }
    ));
    assert!(dlq.get(w.seq).await.expect("get").is_some());
    assert!(dlq.get(ok.seq).await.expect("get").is_none());
}

#[tokio::test]
async fn dlq_replay_many_honours_filter_and_cap() {
    let (_nats, js) = setup().await;
    let mut org_a = Vec::new();
    let mut org_b = Vec::new();
    for i in 0..10u64 {
        if i % 5 < 3 {
            org_a.push(write(&js, Spec::new("auth.user.created", "org-a"), i).await);
        } else {
            org_b.push(write(&js, Spec::new("auth.user.created", "org-b"), i).await);
        }
    }
    let dlq = DeadLetters::new(js.clone());
    let f = DeadLetterFilter::new().organization(OrganizationId::new("org-a").unwrap());
    let cap = org_a.len() - 2;

    let dry = dlq
        .replay_many(&f, cap, ReplayOptions::dry_run())
        .await
        .expect("dry run");
    assert!(dry.dry_run && dry.capped);
    assert_eq!(dry.replayed as usize, cap);
    assert_eq!(consumer_count(&js, "AUTH_EVENTS").await, 0);
    let auth_before = js
        .get_stream("AUTH_EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(auth_before, 0, "dry run published nothing");

    let report = dlq
        .replay_many(&f, cap, ReplayOptions::execute())
        .await
        .expect("replay many");
    assert!(report.capped);
    assert_eq!((report.replayed as usize, report.failed), (cap, 0));
    // Oldest first.
    let moved: Vec<u64> = report.items.iter().map(|i| i.dlq_sequence).collect();
    assert_eq!(
        moved,
        org_a[..cap].iter().map(|w| w.seq).collect::<Vec<_>>()
    );

    let mut auth = js.get_stream("AUTH_EVENTS").await.unwrap();
    assert_eq!(auth.info().await.unwrap().state.messages as usize, cap);
    for (i, item) in report.items.iter().enumerate() {
        let ReplayOutcome::Replayed { sequence, .. } = item.outcome else {
            panic!("{item:?}");
        };
        let m = auth.get_raw_message(sequence).await.expect("stored");
        assert_eq!(m.payload, org_a[i].body);
    }
    let left = list_all(&dlq, &f).await;
    assert_eq!(left, org_a[cap..].iter().map(|w| w.seq).collect::<Vec<_>>());
    let b_left = list_all(
        &dlq,
        &DeadLetterFilter::new().organization(OrganizationId::new("org-b").unwrap()),
    )
    .await;
    assert_eq!(b_left, org_b.iter().map(|w| w.seq).collect::<Vec<_>>());

    for bad in [0, dlq::MAX_REPLAY_COUNT + 1] {
        let err = dlq
            .replay_many(&f, bad, ReplayOptions::execute())
            .await
            .expect_err("bad count");
        assert!(matches!(err, DlqError::InvalidCount { .. }), "{err}");
    }
}

#[tokio::test]
async fn dlq_purge_by_filter_then_all() {
    let (_nats, js) = setup().await;
    let written = write_varied(&js).await;
    let dlq = DeadLetters::new(js.clone());

    let f = DeadLetterFilter::new().reason(DeadLetterReason::Permanent);
    let want_gone = expected(&written, |w| w.spec.reason == DeadLetterReason::Permanent);
    assert!(!want_gone.is_empty());
    let purged = dlq.purge(&f).await.expect("purge");
    assert_eq!(purged as usize, want_gone.len());
    assert!(list_all(&dlq, &f).await.is_empty());
    let rest = list_all(&dlq, &DeadLetterFilter::new()).await;
    assert_eq!(
        rest,
        expected(&written, |w| w.spec.reason != DeadLetterReason::Permanent)
    );

    let purged = dlq.purge_all().await.expect("purge all");
    assert_eq!(purged as usize, rest.len());
    assert!(list_all(&dlq, &DeadLetterFilter::new()).await.is_empty());
    assert_eq!(consumer_count(&js, dlq::DLQ_STREAM).await, 0);
}

#[tokio::test]
async fn dlq_list_pages_through_more_than_one_pull() {
    let (_nats, js) = setup().await;
    // Pipelined writes of 700 dead letters (several pulls of 256 per page).
    let n = 700u64;
    let mut acks = Vec::new();
    for i in 0..n {
        let mut h = HeaderMap::new();
        h.insert(dlq::headers::ORIGINAL_SUBJECT, "auth.user.created");
        h.insert(dlq::headers::ORIGINAL_STREAM, "AUTH_EVENTS");
        h.insert(
            dlq::headers::REASON,
            if i % 7 == 0 { "invalid" } else { "permanent" },
        );
        acks.push(
            js.publish_with_headers(
                "dlq.auth.user.created",
                h,
                Bytes::from(format!("{{\"i\":{i}}}")),
            )
            .await
            .expect("publish"),
        );
    }
    let mut seqs = Vec::new();
    for ack in acks {
        seqs.push(
            timeout(WAIT, ack)
                .await
                .expect("in time")
                .expect("ack")
                .sequence,
        );
    }
    let dlq = DeadLetters::new(js.clone());
    let mut seen = Vec::new();
    let mut req = PageRequest::first(300);
    loop {
        let page = dlq.list(&DeadLetterFilter::new(), req).await.expect("list");
        seen.extend(page.items.iter().map(|d| d.sequence));
        match page.next_after {
            Some(next) => req = PageRequest::after(next, 300),
            None => break,
        }
    }
    assert_eq!(seen, seqs);
    let invalid = list_all(
        &dlq,
        &DeadLetterFilter::new().reason(DeadLetterReason::Invalid),
    )
    .await;
    let want: Vec<u64> = seqs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 == 0)
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(invalid, want);
    assert_eq!(consumer_count(&js, dlq::DLQ_STREAM).await, 0);
}

async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    let mut s = js.get_stream(stream).await.expect("stream");
    s.info().await.expect("info").state.messages
}

/// A valid event whose `data` holds `len` bytes of text: a big original.
fn big_event_body(len: usize) -> Bytes {
    let ev = Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-a")
        .data(&serde_json::json!({ "blob": "x".repeat(len) }))
        .build()
        .expect("valid event");
    Bytes::from(ev.to_json_bytes())
}

/// Stores `body` on `subject` (the original a dead letter points at); returns its sequence.
async fn store_original(js: &jetstream::Context, subject: &str, body: Bytes) -> u64 {
    let mut h = HeaderMap::new();
    h.insert("Content-Type", "application/cloudevents+json");
    timeout(WAIT, async {
        js.publish_with_headers(subject.to_owned(), h, body)
            .await
            .expect("publish original")
            .await
            .expect("original ack")
    })
    .await
    .expect("original ack within bound")
    .sequence
}

/// Five concurrent replays of one dead letter (item 6 of issue #10): one stores the copy,
/// the others are told it is already replayed (or gone); the stream holds one copy.
#[tokio::test]
async fn dlq_concurrent_replays_store_one_copy() {
    let (_nats, js) = setup().await;
    let w = write(&js, Spec::new("auth.user.created", "org-a"), 5).await;
    let dlq = DeadLetters::new(js.clone());
    let racers = 5;
    let results = timeout(
        WAIT,
        futures::future::join_all((0..racers).map(|_| dlq.replay(w.seq, ReplayOptions::execute()))),
    )
    .await
    .expect("replays within bound");
    let (mut replayed, mut already, mut not_found) = (Vec::new(), Vec::new(), 0);
    for r in results {
        match r.map(|item| item.outcome) {
            Ok(ReplayOutcome::Replayed { stream, sequence }) => replayed.push((stream, sequence)),
            Ok(ReplayOutcome::AlreadyReplayed { stream, sequence }) => {
                already.push((stream, sequence))
            }
            Err(DlqError::NotFound { sequence }) if sequence == w.seq => not_found += 1,
            other => panic!("a racing replay got {other:?}"),
        }
    }
    assert_eq!(replayed.len(), 1, "one winner: {replayed:?} {already:?}");
    assert_eq!(replayed.len() + already.len() + not_found, racers);
    assert!(
        already.iter().all(|a| *a == replayed[0]),
        "losers name the one stored copy: {already:?} vs {replayed:?}"
    );
    assert_eq!(stream_messages(&js, "AUTH_EVENTS").await, 1, "one copy");
    assert!(dlq.get(w.seq).await.expect("get").is_none());
}

/// Five concurrent deletes of one dead letter: one deletes it, the others are told it is
/// not there (never a NATS error).
#[tokio::test]
async fn dlq_concurrent_deletes_one_wins_the_rest_not_found() {
    let (_nats, js) = setup().await;
    let w = write(&js, Spec::new("auth.user.created", "org-a"), 5).await;
    let dlq = DeadLetters::new(js.clone());
    let racers = 5;
    let results = timeout(
        WAIT,
        futures::future::join_all((0..racers).map(|_| dlq.delete(w.seq))),
    )
    .await
    .expect("deletes within bound");
    let deleted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(deleted, 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, DlqError::NotFound { sequence } if *sequence == w.seq),
                "{e}"
            );
        }
    }
    assert!(dlq.get(w.seq).await.expect("get").is_none());
}

/// A dead letter whose body was omitted (CONTRACT.md §4) is replayed from its original:
/// the stream gets the original bytes, never the empty body.
#[tokio::test]
async fn dlq_replay_of_an_omitted_body_publishes_the_original_bytes() {
    let (_nats, js) = setup().await;
    let body = big_event_body(600 * 1024);
    let original = store_original(&js, "auth.user.created", body.clone()).await;
    let w = write(
        &js,
        Spec::omitted("auth.user.created", body.len()),
        original,
    )
    .await;
    assert!(w.body.is_empty());
    let dlq = DeadLetters::new(js.clone());

    let dry = dlq
        .replay(w.seq, ReplayOptions::dry_run())
        .await
        .expect("dry run");
    assert_eq!(
        dry.outcome,
        ReplayOutcome::WouldReplay {
            stream: "AUTH_EVENTS".into()
        }
    );
    assert!(
        dry.original_body,
        "the dry run says the body comes from the original"
    );
    assert_eq!(
        stream_messages(&js, "AUTH_EVENTS").await,
        1,
        "dry run stored nothing"
    );

    let item = dlq
        .replay(w.seq, ReplayOptions::execute())
        .await
        .expect("replay");
    assert!(item.original_body);
    let ReplayOutcome::Replayed { stream, sequence } = item.outcome else {
        panic!("not replayed: {item:?}");
    };
    assert_eq!(stream, "AUTH_EVENTS");
    assert_ne!(sequence, original, "a new copy");
    let back = js
        .get_stream("AUTH_EVENTS")
        .await
        .expect("stream")
        .get_raw_message(sequence)
        .await
        .expect("replayed message");
    assert_eq!(back.subject.as_str(), "auth.user.created");
    assert_eq!(back.payload, body, "the original bytes");
    let seq_text = w.seq.to_string();
    assert_eq!(
        back.headers
            .get(dlq::headers::REPLAYED_FROM)
            .map(|v| v.as_str()),
        Some(seq_text.as_str())
    );
    assert!(back.headers.get(dlq::headers::BODY_OMITTED).is_none());
    assert!(dlq.get(w.seq).await.expect("get").is_none());
}

/// When retention removed the original of an omitted body, replay (and its dry run) fail
/// with a typed error, publish nothing and keep the dead letter; a record that points at
/// another message is refused too.
#[tokio::test]
async fn dlq_replay_of_an_omitted_body_whose_original_is_gone_fails_cleanly() {
    let (_nats, js) = setup().await;
    let body = big_event_body(600 * 1024);
    let original = store_original(&js, "auth.user.created", body.clone()).await;
    let w = write(
        &js,
        Spec::omitted("auth.user.created", body.len()),
        original,
    )
    .await;
    let auth = js.get_stream("AUTH_EVENTS").await.expect("stream");
    assert!(
        auth.delete_message(original)
            .await
            .expect("delete original")
    );
    let dlq = DeadLetters::new(js.clone());
    for options in [ReplayOptions::dry_run(), ReplayOptions::execute()] {
        let err = dlq
            .replay(w.seq, options)
            .await
            .expect_err("the original is gone");
        assert!(
            matches!(&err, DlqError::OriginalGone { sequence, stream, original_sequence, .. }
                if *sequence == w.seq && stream == "AUTH_EVENTS" && *original_sequence == original),
            "{err}"
        );
    }
    assert_eq!(
        stream_messages(&js, "AUTH_EVENTS").await,
        0,
        "nothing published"
    );
    assert!(
        dlq.get(w.seq).await.expect("get").is_some(),
        "dead letter kept"
    );

    // A record whose original sequence holds a message of another subject.
    let other = store_original(&js, "auth.user.deleted", body.clone()).await;
    let forged = write(&js, Spec::omitted("auth.user.created", body.len()), other).await;
    let err = dlq
        .replay(forged.seq, ReplayOptions::execute())
        .await
        .expect_err("not its original");
    assert!(matches!(err, DlqError::OriginalMismatch { .. }), "{err}");
    assert_eq!(
        stream_messages(&js, "AUTH_EVENTS").await,
        1,
        "nothing published"
    );
}

/// Item 10 of issue #10: a dry run whose stream is gone says so instead of "would replay".
#[tokio::test]
async fn dlq_dry_run_says_when_the_stream_is_gone() {
    let (_nats, js) = setup().await;
    let w = write(&js, Spec::new("auth.user.created", "org-a"), 5).await;
    let omitted = write(&js, Spec::omitted("auth.user.created", 10), 6).await;
    assert!(
        js.delete_stream("AUTH_EVENTS")
            .await
            .expect("delete")
            .success
    );
    let dlq = DeadLetters::new(js.clone());
    for options in [ReplayOptions::dry_run(), ReplayOptions::execute()] {
        let err = dlq.replay(w.seq, options).await.expect_err("no stream");
        assert!(
            matches!(&err, DlqError::NoStreamForSubject { sequence, subject }
                if *sequence == w.seq && subject == "auth.user.created"),
            "{err}"
        );
        let err = dlq
            .replay(omitted.seq, options)
            .await
            .expect_err("no original");
        assert!(
            matches!(&err, DlqError::OriginalGone { sequence, .. } if *sequence == omitted.seq),
            "{err}"
        );
    }
    let report = dlq
        .replay_many(&DeadLetterFilter::new(), 10, ReplayOptions::dry_run())
        .await
        .expect("dry run");
    assert_eq!((report.replayed, report.failed), (0, 2));
    assert!(dlq.get(w.seq).await.expect("get").is_some());
}

/// Item 1 of issue #10, read side: a message in DLQ_EVENTS whose header block is not
/// UTF-8 shows in a list beside the real dead letters, and `get` reads it.
#[tokio::test]
async fn dlq_list_and_get_show_a_dead_letter_with_unparsable_headers() {
    let (nats, js) = setup().await;
    let first = write(&js, Spec::new("auth.user.created", "org-a"), 1).await;
    let raw = RawMessage::with_headers("dlq.auth.user.created", &[b"X-Bad: \x80\xff"], "raw");
    publish_raw(nats.port(), &[raw]).await;
    let mut dlq_stream = js.get_stream(dlq::DLQ_STREAM).await.expect("stream");
    let raw_seq = dlq_stream.info().await.expect("info").state.last_sequence;
    let last = write(&js, Spec::new("auth.user.created", "org-b"), 2).await;
    let dlq = DeadLetters::new(js.clone());

    let page = timeout(
        WAIT,
        dlq.list(&DeadLetterFilter::new(), PageRequest::first(10)),
    )
    .await
    .expect("list within bound")
    .expect("list");
    let seqs: Vec<u64> = page.items.iter().map(|d| d.sequence).collect();
    assert_eq!(seqs, vec![first.seq, raw_seq, last.seq]);
    let listed = &page.items[1];
    assert_eq!(listed.body, Bytes::from_static(b"raw"));
    assert_eq!(
        listed.original_subject.as_deref(),
        Some("auth.user.created")
    );
    let sentinel = async_nats::connection::UNPARSED_HEADERS_BASE64;
    let listed_block = listed.headers.get(sentinel).expect("raw block").as_str();

    let got = dlq.get(raw_seq).await.expect("get").expect("present");
    assert_eq!(got.body, listed.body);
    assert_eq!(
        got.headers.get(sentinel).map(|v| v.as_str()),
        Some(listed_block),
        "get and list show the same raw header block"
    );
}
