//! `publish` and `tail` (plain and as a group member).

use crate::{
    assert_code, assert_unreachable_fails, eventctl, json, json_lines, server_with_topology,
    stderr, stdout,
};

const TYPE: &str = "auth.user.created";

async fn publish(url: &str, org: &str, data: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "publish", "--type", TYPE, "--org", org, "--source", "it-tests", "--data", data,
    ];
    args.extend_from_slice(extra);
    eventctl(url, &args).await
}

#[tokio::test]
async fn publish_then_tail_gets_it_back() {
    let nats = server_with_topology().await;
    let url = nats.url();

    let out = publish(
        &url,
        "org-1",
        r#"{"user_id":"u1"}"#,
        &["--json", "--subject", "u1"],
    )
    .await;
    assert_code(&out, 0);
    let first = json(&out);
    assert_eq!(first["stream"], "AUTH_EVENTS");
    assert_eq!(first["sequence"], 1);
    assert_eq!(first["duplicate"], false);
    assert_eq!(first["type"], TYPE);
    let id = first["id"].as_str().unwrap().to_owned();

    // The same id again is stored once: "duplicate", same sequence.
    let out = publish(&url, "org-1", r#"{"user_id":"u1"}"#, &["--id", &id]).await;
    assert_code(&out, 0);
    let line = stdout(&out);
    assert!(
        line.starts_with(&format!(
            "published {TYPE} {id} to AUTH_EVENTS seq 1 (duplicate"
        )),
        "{line}"
    );

    // A second event, from a file.
    let dir = crate::tempfile_dir();
    let file = dir.join("data.json");
    std::fs::write(&file, r#"{"user_id":"u2"}"#).unwrap();
    let out = publish(&url, "org-2", &format!("@{}", file.display()), &[]).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("to AUTH_EVENTS seq 2"),
        "{}",
        stdout(&out)
    );

    // tail from the past gets the first one back, with stream and sequence.
    let out = eventctl(
        &url,
        &["tail", TYPE, "--from", "-1m", "--count", "1", "--json"],
    )
    .await;
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    let got = &lines[0];
    assert_eq!(got["stream"], "AUTH_EVENTS");
    assert_eq!(got["sequence"], 1);
    assert_eq!(got["delivered"], 1);
    assert_eq!(got["event"]["id"], id.as_str());
    assert_eq!(got["event"]["organizationid"], "org-1");
    assert_eq!(got["event"]["subject"], "u1");
    assert_eq!(got["event"]["data"]["user_id"], "u1");

    // Human output, filtered by organization: only the org-2 event.
    let out = eventctl(
        &url,
        &[
            "tail", "auth.>", "--from", "-1m", "--org", "org-2", "--count", "1",
        ],
    )
    .await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("AUTH_EVENTS seq 2 "), "{text}");
    assert!(text.contains("org: org-2"), "{text}");
    assert!(text.contains("\"user_id\": \"u2\""), "{text}");
    assert!(!text.contains(&id), "{text}");

    // Only new messages by default: nothing arrives, so --count 1 times out (exit 1).
    let out = eventctl(&url, &["tail", TYPE, "--count", "1", "--timeout", "500ms"]).await;
    assert_code(&out, 1);
    assert!(stderr(&out).contains("0 of 1 events"), "{}", stderr(&out));
    // Without --count, --timeout is a normal stop.
    let out = eventctl(&url, &["tail", TYPE, "--timeout", "300ms", "--json"]).await;
    assert_code(&out, 0);
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_input_names_the_attribute() {
    let nats = server_with_topology().await;
    let url = nats.url();
    let cases: [(&[&str], &str); 8] = [
        (
            &["--type", "auth.User.created", "--org", "o", "--data", "{}"],
            "`type`",
        ),
        (
            &["--type", TYPE, "--org", "o g", "--data", "{}"],
            "`organizationid`",
        ),
        (
            &["--type", TYPE, "--org", "o", "--data", "[1,2]"],
            "`data`: must be a JSON object",
        ),
        (
            &["--type", TYPE, "--org", "o", "--data", "{nope"],
            "`data`: not valid JSON",
        ),
        (
            &[
                "--type",
                TYPE,
                "--org",
                "o",
                "--data",
                "@/no/such/file.json",
            ],
            "cannot read file /no/such/file.json",
        ),
        // The dlq. domain is reserved: publishing there would forge a dead letter.
        (
            &["--type", "dlq.user.created", "--org", "o", "--data", "{}"],
            "`type`: `dlq.user.created` is in the reserved `dlq.` domain",
        ),
        (
            &[
                "--type", TYPE, "--org", "o", "--data", "{}", "--id", "evt-1",
            ],
            "`id`: \"evt-1\" is not a UUID",
        ),
        (
            &[
                "--type",
                TYPE,
                "--org",
                "o",
                "--data",
                "{}",
                "--id",
                "00000000-0000-0000-0000-000000000000",
            ],
            "is not a UUID",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["publish", "--source", "it"];
        all.extend_from_slice(args);
        let out = eventctl(&url, &all).await;
        assert_code(&out, 1);
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(expected), "{expected}: {err}");
    }
    // A type no stream captures.
    let out = eventctl(
        &url,
        &[
            "publish",
            "--type",
            "nope.user.created",
            "--org",
            "o",
            "--source",
            "it",
            "--data",
            "{}",
        ],
    )
    .await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("no stream captures subject \"nope.user.created\""),
        "{}",
        stderr(&out)
    );
    // Nothing was stored by any of them, neither as an event nor as a forged dead letter.
    for stream in ["AUTH_EVENTS", "DLQ_EVENTS"] {
        let info = json(&eventctl(&url, &["streams", "info", stream, "--json"]).await);
        assert_eq!(info["messages"], 0, "{stream}");
    }
    // tail on a subject no stream captures.
    let out = eventctl(&url, &["tail", "nope.>", "--timeout", "1s"]).await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("no stream captures subject nope.>"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn usage_errors_and_unreachable_server() {
    for args in [
        &["publish", "--type", TYPE, "--org", "o", "--source", "s"][..],
        &[
            "publish", "--type", TYPE, "--org", "o", "--source", "s", "--data", "{}", "--bogus",
        ],
        &["tail", "auth.>", "--from", "yesterday"],
        &["tail", "auth.>", "--group", "g", "--from", "-1h"],
        &["tail", "auth.>", "--count", "0"],
        &["tail", "auth.>", "--create"],
    ] {
        let out = eventctl("nats://127.0.0.1:1", args).await;
        assert_code(&out, 2);
    }
    let out = eventctl(
        "nats://127.0.0.1:1",
        &["tail", "auth.>", "--from", "yesterday"],
    )
    .await;
    assert!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));
    assert_unreachable_fails(&[
        "publish", "--type", TYPE, "--org", "o", "--source", "s", "--data", "{}",
    ])
    .await;
    assert_unreachable_fails(&["tail", "auth.>", "--timeout", "1s"]).await;
}

#[tokio::test]
async fn tail_shows_undecodable_messages() {
    let nats = server_with_topology().await;
    let js = nats.jetstream().await;
    js.publish(TYPE, "not a cloud event".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let out = eventctl(
        &nats.url(),
        &["tail", "auth.>", "--from", "-1m", "--count", "1", "--json"],
    )
    .await;
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["undecodable"], "undecodable");
    assert_eq!(lines[0]["body"], "not a cloud event");
    assert_eq!(lines[0]["sequence"], 1);

    let out = eventctl(
        &nats.url(),
        &["tail", "auth.>", "--from", "-1m", "--count", "1"],
    )
    .await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("UNDECODABLE message"), "{text}");
    assert!(text.contains("body: not a cloud event"), "{text}");
}

#[tokio::test]
async fn tail_as_a_group_dead_letters_what_it_cannot_read() {
    let nats = server_with_topology().await;
    let url = nats.url();
    let js = nats.jetstream().await;
    js.publish(TYPE, "junk".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let out = publish(&url, "org-1", r#"{"user_id":"u1"}"#, &["--json"]).await;
    assert_code(&out, 0);
    let id = json(&out)["id"].as_str().unwrap().to_owned();

    // The group member prints the event; the junk is not handed to it but dead-lettered.
    let out = eventctl(
        &url,
        &[
            "tail",
            "auth.user.*",
            "--group",
            "g",
            "--create",
            "--count",
            "1",
            "--timeout",
            "20s",
            "--json",
        ],
    )
    .await;
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    assert_eq!(lines[0]["event"]["id"], id.as_str());
    assert_eq!(lines[0]["sequence"], 2);
    assert_eq!(lines[0]["consumer"], "g__auth_user_any");

    let v = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let v = json(&eventctl(&url, &["dlq", "list", "--json"]).await);
            if !v["items"].as_array().unwrap().is_empty() {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the dead letter is listed within 10 s");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["reason"], "undecodable");
    assert_eq!(items[0]["consumer"], "g__auth_user_any");
    assert_eq!(items[0]["original_sequence"], 1);
    assert_eq!(items[0]["body"], "junk");
}

#[tokio::test]
async fn publish_with_schemas_refuses_data_breaking_its_schema_and_sets_dataschema() {
    let nats = server_with_topology().await;
    let url = nats.url();
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
    let user = r#"{"user_id":"5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10","email":"ada@acme.example","display_name":"Ada","roles":[],"revision":1}"#;
    let no_email = r#"{"user_id":"5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10","display_name":"Ada","roles":[],"revision":1}"#;

    let out = publish(&url, "org-1", no_email, &["--schemas", schemas]).await;
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("at /email: required"),
        "names the pointer and the rule: {err}"
    );
    // Another version has no schema: refused too.
    let out = publish(
        &url,
        "org-1",
        user,
        &["--schemas", schemas, "--schema-version", "3.0"],
    )
    .await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("no schema for auth.user.created 3.0"),
        "{}",
        stderr(&out)
    );

    let out = publish(&url, "org-1", user, &["--schemas", schemas, "--json"]).await;
    assert_code(&out, 0);
    assert_eq!(json(&out)["sequence"], 1, "only the valid event was stored");
    let tail = eventctl(
        &url,
        &["tail", TYPE, "--from", "-1h", "--count", "1", "--json"],
    )
    .await;
    assert_code(&tail, 0);
    let events = json_lines(&tail);
    assert_eq!(
        events[0]["event"]["dataschema"], "urn:events:schema:auth.user.created:1.0",
        "{events:?}"
    );
}
