//! `tail`: a message whose header block is not UTF-8 is shown, marked undecodable with its
//! raw headers, between the valid events around it.

use events::raw_headers;
use events_testkit::{RawMessage, publish_raw};

use crate::{assert_code, eventctl, json_lines, server_with_topology, stdout};

#[tokio::test]
async fn tail_shows_a_message_with_unparsable_headers_as_undecodable() {
    let nats = server_with_topology().await;
    let url = nats.url();
    let events: Vec<events::Event> = (0..3)
        .map(|i| {
            events::Event::builder("auth.user.created")
                .source("auth-service")
                .organization("org-1")
                .data(&serde_json::json!({ "i": i }))
                .build()
                .unwrap()
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
    let count = events.len().to_string();
    let base = [
        "tail",
        "auth.user.created",
        "--from",
        "-10m",
        "--count",
        &count,
        "--timeout",
        "30s",
    ];

    let mut args = base.to_vec();
    args.push("--json");
    let out = eventctl(&url, &args).await;
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), events.len(), "{}", stdout(&out));
    assert_eq!(lines[0]["event"]["id"], events[0].id());
    assert_eq!(lines[2]["event"]["id"], events[2].id());
    assert_eq!(lines[1]["undecodable"], "undecodable");
    let b64 = lines[1]["raw_headers_base64"]
        .as_str()
        .expect("raw headers");
    let mut want = b"NATS/1.0\r\n".to_vec();
    want.extend_from_slice(raw[1].headers.as_deref().unwrap());
    want.extend_from_slice(b"\r\n");
    assert_eq!(raw_headers::decode_base64(b64).unwrap(), want);
    assert_eq!(
        lines[1]["body"],
        String::from_utf8(events[1].to_json_bytes()).unwrap()
    );

    let out = eventctl(&url, &base).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("UNDECODABLE message"), "{text}");
    assert!(text.contains(r"X-Bad: \x80\xff"), "{text}");
}
