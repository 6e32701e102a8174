//! Integration tests: time-window replay against a real server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use events::replay::{Progress, ReplayError, WindowReplay};
use events::{Event, StreamName, Subject, SubjectFilter};
use events_testkit::{NatsServer, wait_for_stream_messages};
use time::OffsetDateTime;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(60);

struct Stored {
    seq: u64,
    stored_at: OffsetDateTime,
    subject: String,
    body: Bytes,
    msg_id: String,
}

async fn setup() -> (NatsServer, jetstream::Context) {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "AUTH_EVENTS".into(),
        subjects: vec!["auth.>".into()],
        ..Default::default()
    })
    .await
    .expect("create AUTH_EVENTS");
    (nats, js)
}

/// Publishes `n` events (alternating created/deleted) and reads back each stored time.
async fn publish_batch(js: &jetstream::Context, batch: &str, n: usize) -> Vec<Stored> {
    let stream = js.get_stream("AUTH_EVENTS").await.expect("stream");
    let mut out = Vec::new();
    for i in 0..n {
        let ty = if i % 3 == 0 {
            "auth.user.deleted"
        } else {
            "auth.user.created"
        };
        let ev = Event::builder(ty)
            .source("auth-service")
            .organization("org-1")
            .data(&serde_json::json!({ "batch": batch, "i": i }))
            .build()
            .expect("valid");
        let enc = ev.encode();
        let ack = timeout(WAIT, async {
            js.publish_with_headers(enc.subject.clone(), enc.headers, enc.payload.clone())
                .await
                .expect("publish")
                .await
                .expect("ack")
        })
        .await
        .expect("ack within bound");
        let m = stream.get_raw_message(ack.sequence).await.expect("stored");
        out.push(Stored {
            seq: ack.sequence,
            stored_at: m.time,
            subject: enc.subject,
            body: enc.payload,
            msg_id: ev.id().to_owned(),
        });
    }
    out
}

async fn consumer_count(js: &jetstream::Context, stream: &str) -> usize {
    let mut s = js.get_stream(stream).await.expect("stream");
    s.info().await.expect("info").state.consumer_count
}

/// A, B, C published one after another; the window [first B stored, first C stored).
async fn three_batches(js: &jetstream::Context) -> (Vec<Stored>, OffsetDateTime, OffsetDateTime) {
    let mut all = publish_batch(js, "A", 5).await;
    let b = publish_batch(js, "B", 7).await;
    let from = b[0].stored_at;
    all.extend(b);
    let c = publish_batch(js, "C", 4).await;
    let to = c[0].stored_at;
    all.extend(c);
    (all, from, to)
}

fn stored_in(all: &[Stored], from: OffsetDateTime, to: OffsetDateTime) -> Vec<u64> {
    all.iter()
        .filter(|s| s.stored_at >= from && s.stored_at < to)
        .map(|s| s.seq)
        .collect()
}

#[tokio::test]
async fn replay_window_delivers_exactly_the_messages_stored_inside() {
    let (_nats, js) = setup().await;
    let (all, from, to) = three_batches(&js).await;
    let want = stored_in(&all, from, to);
    // The boundaries come from stored times, so the window holds batch B exactly.
    assert_eq!(want, all[5..12].iter().map(|s| s.seq).collect::<Vec<_>>());

    let got = Arc::new(Mutex::new(Vec::new()));
    let progress = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let sink = got.clone();
    let p_sink = progress.clone();
    let summary = timeout(
        WAIT,
        WindowReplay::new(StreamName::new("AUTH_EVENTS").unwrap(), from, to)
            .unwrap()
            .batch_size(3) // several pulls
            .on_progress(move |p| p_sink.lock().unwrap().push(*p))
            .deliver_to(&js, |m| {
                let sink = sink.clone();
                async move {
                    let ev = m.event()?;
                    sink.lock().unwrap().push((
                        m.stream_sequence,
                        m.stored_at,
                        ev.id().to_owned(),
                        m.payload,
                    ));
                    Ok::<_, events::BoxError>(())
                }
            }),
    )
    .await
    .expect("replay within bound")
    .expect("replay");

    let got = std::mem::take(&mut *got.lock().unwrap());
    let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, want);
    for (g, s) in got.iter().zip(&all[5..12]) {
        assert_eq!(g.1, s.stored_at);
        assert_eq!(g.2, s.msg_id);
        assert_eq!(g.3, s.body);
    }
    assert_eq!(summary.matched, want.len() as u64);
    assert_eq!(summary.first_sequence, want.first().copied());
    assert_eq!(summary.last_sequence, want.last().copied());
    assert_eq!(summary.end_sequence, all.last().unwrap().seq);
    let last = *progress.lock().unwrap().last().expect("final progress");
    assert!(last.finished);
    assert_eq!(last.processed, want.len() as u64);
    assert!(last.upper_bound >= want.len() as u64);
    assert_eq!(consumer_count(&js, "AUTH_EVENTS").await, 0);
}

#[tokio::test]
async fn replay_window_with_subject_filter_and_dry_run() {
    let (_nats, js) = setup().await;
    let (all, from, to) = three_batches(&js).await;
    let filter = SubjectFilter::new("auth.user.deleted").unwrap();
    let want: Vec<u64> = all
        .iter()
        .filter(|s| s.stored_at >= from && s.stored_at < to && filter.matches(&s.subject))
        .map(|s| s.seq)
        .collect();
    assert!(!want.is_empty());

    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let summary = WindowReplay::new(StreamName::new("AUTH_EVENTS").unwrap(), from, to)
        .unwrap()
        .subject_filter(filter.clone())
        .deliver_to(&js, |m| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(m.stream_sequence);
                Ok::<_, std::io::Error>(())
            }
        })
        .await
        .expect("replay");
    assert_eq!(*got.lock().unwrap(), want);
    assert_eq!(summary.matched, want.len() as u64);

    // Dry run: counts, never calls the handler.
    let summary = WindowReplay::new(StreamName::new("AUTH_EVENTS").unwrap(), from, to)
        .unwrap()
        .dry_run(true)
        .deliver_to(&js, |_| async {
            Err::<(), _>(std::io::Error::other("a dry run must not call the handler"))
        })
        .await
        .expect("dry run");
    assert!(summary.dry_run);
    assert_eq!(summary.matched, stored_in(&all, from, to).len() as u64);

    // A window after the last message and one before the first are empty.
    let last = all.last().unwrap().stored_at;
    let empty = WindowReplay::new(
        StreamName::new("AUTH_EVENTS").unwrap(),
        last + time::Duration::seconds(1),
        last + time::Duration::hours(1),
    )
    .unwrap()
    .deliver_to(&js, |_| async { Ok::<_, std::io::Error>(()) })
    .await
    .expect("empty window");
    assert_eq!(empty.matched, 0);
    let first = all[0].stored_at;
    let empty = WindowReplay::new(
        StreamName::new("AUTH_EVENTS").unwrap(),
        first - time::Duration::hours(1),
        first,
    )
    .unwrap()
    .deliver_to(&js, |_| async { Ok::<_, std::io::Error>(()) })
    .await
    .expect("empty window");
    assert_eq!(empty.matched, 0);
    assert_eq!(consumer_count(&js, "AUTH_EVENTS").await, 0);
}

#[tokio::test]
async fn replay_window_republishes_to_another_subject() {
    let (_nats, js) = setup().await;
    js.create_stream(stream::Config {
        name: "REPLAYED".into(),
        subjects: vec!["replayed.>".into()],
        ..Default::default()
    })
    .await
    .expect("create REPLAYED");
    let (all, from, to) = three_batches(&js).await;
    let want = stored_in(&all, from, to);
    let target = Subject::new("replayed.auth").unwrap();

    let dry = WindowReplay::new(StreamName::new("AUTH_EVENTS").unwrap(), from, to)
        .unwrap()
        .dry_run(true)
        .republish_to(&js, &target)
        .await
        .expect("dry run");
    assert_eq!(dry.matched, want.len() as u64);
    let mut out = js.get_stream("REPLAYED").await.unwrap();
    assert_eq!(out.info().await.unwrap().state.messages, 0);

    let summary = WindowReplay::new(StreamName::new("AUTH_EVENTS").unwrap(), from, to)
        .unwrap()
        .max_in_flight(2) // exercise the ack window
        .republish_to(&js, &target)
        .await
        .expect("republish");
    assert_eq!(summary.matched, want.len() as u64);
    let state = out.info().await.unwrap().state.clone();
    assert_eq!(state.messages, want.len() as u64);
    let sources: Vec<&Stored> = all.iter().filter(|s| want.contains(&s.seq)).collect();
    for (i, src) in sources.iter().enumerate() {
        let m = out
            .get_raw_message(i as u64 + 1)
            .await
            .expect("republished");
        assert_eq!(m.subject.as_str(), "replayed.auth");
        assert_eq!(m.payload, src.body, "byte-identical, in order");
        let id = m.headers.get("Nats-Msg-Id").expect("msg id").as_str();
        assert_ne!(id, src.msg_id, "fresh Nats-Msg-Id");
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
        assert_eq!(
            m.headers.get("Content-Type").map(|v| v.as_str()),
            Some("application/cloudevents+json")
        );
    }

    // Republishing to a subject no stream takes fails by name.
    let err = WindowReplay::new(StreamName::new("AUTH_EVENTS").unwrap(), from, to)
        .unwrap()
        .request_timeout(Duration::from_secs(5))
        .republish_to(&js, &Subject::new("nowhere.at.all").unwrap())
        .await
        .expect_err("no stream");
    assert!(
        matches!(&err, ReplayError::Publish { sequence, .. } if *sequence == want[0]),
        "{err}"
    );
    assert_eq!(consumer_count(&js, "AUTH_EVENTS").await, 0);
}

#[tokio::test]
async fn replay_stops_at_the_last_sequence_of_a_live_stream() {
    let (_nats, js) = setup().await;
    let all = publish_batch(&js, "A", 20).await;
    let from = all[0].stored_at;
    let end_at_start = all.last().unwrap().seq;
    // Each handled message publishes a new one into the same stream, inside the window
    // (`to` is far ahead): without the upper bound this would never end.
    let js2 = js.clone();
    let summary = timeout(
        WAIT,
        WindowReplay::new(
            StreamName::new("AUTH_EVENTS").unwrap(),
            from,
            from + time::Duration::days(1),
        )
        .unwrap()
        .deliver_to(&js, |m| {
            let js = js2.clone();
            async move {
                js.publish(m.subject.clone(), m.payload.clone())
                    .await?
                    .await?;
                Ok::<_, events::BoxError>(())
            }
        }),
    )
    .await
    .expect("replay ends")
    .expect("replay");
    assert_eq!(summary.end_sequence, end_at_start);
    assert_eq!(summary.matched, all.len() as u64);
    assert_eq!(summary.last_sequence, Some(end_at_start));
}

#[tokio::test]
async fn replay_handler_error_stops_and_names_the_sequence() {
    let (_nats, js) = setup().await;
    let all = publish_batch(&js, "A", 6).await;
    let bad = all[3].seq;
    let err = WindowReplay::new(
        StreamName::new("AUTH_EVENTS").unwrap(),
        all[0].stored_at,
        all[5].stored_at + time::Duration::seconds(1),
    )
    .unwrap()
    .deliver_to(&js, |m| async move {
        if m.stream_sequence == bad {
            Err(std::io::Error::other("boom"))
        } else {
            Ok(())
        }
    })
    .await
    .expect_err("handler fails");
    assert!(
        matches!(err, ReplayError::Handler { sequence, .. } if sequence == bad),
        "{err}"
    );
    assert_eq!(consumer_count(&js, "AUTH_EVENTS").await, 0);

    let err = WindowReplay::new(
        StreamName::new("NO_SUCH_STREAM").unwrap(),
        all[0].stored_at,
        all[5].stored_at,
    )
    .unwrap()
    .deliver_to(&js, |_| async { Ok::<_, std::io::Error>(()) })
    .await
    .expect_err("no stream");
    assert!(
        matches!(
            err,
            ReplayError::Scan(events::scan::ScanError::StreamNotFound { .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn replay_window_over_thousands_of_messages_reports_progress() {
    let (_nats, js) = setup().await;
    // Pipelined publishes in chunks: the JetStream context's 5 s ack timeout runs from each
    // send, and under `sync_interval: always` on a loaded machine 2,500 acks at once can
    // take longer than that.
    let n = 2_500u64;
    let mut seqs = Vec::new();
    let mut acks = Vec::new();
    for i in 0..n {
        let ev = Event::builder("auth.user.created")
            .source("auth-service")
            .organization("org-1")
            .data(&serde_json::json!({ "i": i }))
            .build()
            .unwrap();
        let enc = ev.encode();
        acks.push(
            js.publish_with_headers(enc.subject, enc.headers, enc.payload)
                .await
                .expect("publish"),
        );
        if acks.len() == 250 || i + 1 == n {
            for ack in acks.drain(..) {
                seqs.push(
                    timeout(WAIT, ack)
                        .await
                        .expect("ack in time")
                        .expect("ack")
                        .sequence,
                );
            }
        }
    }
    let stream = js.get_stream("AUTH_EVENTS").await.unwrap();
    let first = stream.get_raw_message(seqs[0]).await.unwrap().time;
    let last = stream
        .get_raw_message(*seqs.last().unwrap())
        .await
        .unwrap()
        .time;

    let calls = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let sink = calls.clone();
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = count.clone();
    let summary = timeout(
        WAIT,
        WindowReplay::new(
            StreamName::new("AUTH_EVENTS").unwrap(),
            first,
            last + time::Duration::nanoseconds(1),
        )
        .unwrap()
        .progress_interval(Duration::ZERO)
        .on_progress(move |p| sink.lock().unwrap().push(*p))
        .deliver_to(&js, move |_| {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Ok::<_, std::io::Error>(()) }
        }),
    )
    .await
    .expect("replay within bound")
    .expect("replay");
    assert_eq!(summary.matched, n);
    assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), n);
    let calls = std::mem::take(&mut *calls.lock().unwrap());
    assert_eq!(
        calls.len() as u64,
        n + 1,
        "one per message plus the final call"
    );
    assert!(calls.windows(2).all(|w| w[0].processed <= w[1].processed));
    let fin = calls.last().unwrap();
    assert!(fin.finished && fin.processed == n && fin.rate() > 0.0);
    assert_eq!(consumer_count(&js, "AUTH_EVENTS").await, 0);
}

/// A window holding a message whose header block is not UTF-8 between two valid events: the
/// scan reads all three (never fewer), a handler gets the bad one as undecodable with its raw
/// block, and a republish copies the two valid ones with `Replay-Original-Subject`, so that
/// the copies decode on their new subject, and counts the bad one instead of failing.
#[tokio::test]
async fn replay_reads_an_unparsable_header_block_and_copies_decode_on_the_new_subject() {
    use events::event::REPLAY_ORIGINAL_SUBJECT;
    use events::raw_headers;
    use events_testkit::{RawMessage, publish_raw};

    let (nats, js) = setup().await;
    js.create_stream(stream::Config {
        name: "REPLAYED".into(),
        subjects: vec!["replayed.>".into()],
        ..Default::default()
    })
    .await
    .expect("create REPLAYED");
    let from = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let events: Vec<Event> = (0..3)
        .map(|i| {
            Event::builder("auth.user.created")
                .source("auth-service")
                .organization("org-1")
                .data(&serde_json::json!({ "i": i }))
                .build()
                .expect("valid")
        })
        .collect();
    let ct: &[u8] = b"Content-Type: application/cloudevents+json";
    let bad_line: &[u8] = b"X-Bad: \x80\xff";
    let raw: Vec<RawMessage> = events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            let lines = if i == 1 { vec![ct, bad_line] } else { vec![ct] };
            RawMessage::with_headers("auth.user.created", &lines, ev.to_json_bytes())
        })
        .collect();
    publish_raw(nats.port(), &raw).await;
    wait_for_stream_messages(
        &js,
        "AUTH_EVENTS",
        raw.len() as u64,
        Duration::from_secs(10),
    )
    .await;
    let to = OffsetDateTime::now_utc() + time::Duration::seconds(60);
    let stream = StreamName::new("AUTH_EVENTS").unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let summary = WindowReplay::new(stream.clone(), from, to)
        .unwrap()
        .deliver_to(&js, move |m| {
            let s = s.clone();
            async move {
                let block = m
                    .unparsed_headers_base64()
                    .map(|b| raw_headers::decode_base64(b).expect("base64"));
                s.lock()
                    .unwrap()
                    .push((m.event().map(|e| e.id().to_owned()), block));
                Ok::<_, std::convert::Infallible>(())
            }
        })
        .await
        .expect("deliver");
    assert_eq!(summary.matched, events.len() as u64);
    assert_eq!(summary.unparsable, 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), events.len());
    assert_eq!(seen[0].0.as_deref().ok(), Some(events[0].id()));
    assert!(
        matches!(&seen[1].0, Err(e) if e.reason() == "undecodable"),
        "{:?}",
        seen[1].0
    );
    let mut want_block = b"NATS/1.0\r\n".to_vec();
    want_block.extend_from_slice(raw[1].headers.as_deref().unwrap());
    want_block.extend_from_slice(b"\r\n");
    assert_eq!(seen[1].1.as_deref(), Some(&want_block[..]));
    assert_eq!(seen[2].0.as_deref().ok(), Some(events[2].id()));

    let target = Subject::new("replayed.auth").unwrap();
    let summary = WindowReplay::new(stream, from, to)
        .unwrap()
        .republish_to(&js, &target)
        .await
        .expect("republish");
    assert_eq!(summary.unparsable, 1);
    assert_eq!(summary.matched, events.len() as u64 - summary.unparsable);
    let out = js.get_stream("REPLAYED").await.unwrap();
    for (seq, ev) in [(1u64, &events[0]), (2, &events[2])] {
        let m = out.get_raw_message(seq).await.expect("copied");
        assert_eq!(
            m.headers.get(REPLAY_ORIGINAL_SUBJECT).map(|v| v.as_str()),
            Some("auth.user.created")
        );
        let copy = raw_headers::decode_message(m.subject.as_str(), Some(&m.headers), &m.payload)
            .expect("the copy decodes on its new subject");
        assert_eq!(copy.id(), ev.id());
    }
    assert!(
        out.get_raw_message(3).await.is_err(),
        "the bad one is not copied"
    );
}
