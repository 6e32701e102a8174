//! `lag`, with a group created and partly drained through `tail --group`.

use crate::{
    assert_code, assert_unreachable_fails, eventctl, json, json_lines, server_with_topology,
    stderr, stdout,
};

#[tokio::test]
async fn a_group_with_pending_messages_is_flagged() {
    let nats = server_with_topology().await;
    let url = nats.url();
    let published: u64 = 5;
    for i in 0..published {
        let data = format!(r#"{{"n":{i}}}"#);
        let out = eventctl(
            &url,
            &[
                "publish",
                "--type",
                "auth.user.created",
                "--org",
                "o",
                "--source",
                "it",
                "--data",
                &data,
            ],
        )
        .await;
        assert_code(&out, 0);
    }
    // A group that does not exist is not created by accident.
    let out = eventctl(
        &url,
        &["tail", "auth.user.*", "--group", "probe", "--timeout", "5s"],
    )
    .await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("group probe has no consumer probe__auth_user_any on AUTH_EVENTS"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("add --create"), "{}", stderr(&out));
    let v = json(&eventctl(&url, &["lag", "--json"]).await);
    assert_eq!(v["consumers"].as_array().unwrap().len(), 0, "{v}");

    // With --create, the group handles (prints and acks) two through the library's
    // subscriber.
    let drained: u64 = 2;
    let out = eventctl(
        &url,
        &[
            "tail",
            "auth.user.*",
            "--group",
            "probe",
            "--create",
            "--count",
            &drained.to_string(),
            "--timeout",
            "20s",
            "--json",
        ],
    )
    .await;
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len() as u64, drained, "{}", stdout(&out));
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["consumer"], "probe__auth_user_any");
        assert_eq!(l["sequence"], i as u64 + 1);
        assert_eq!(l["event"]["data"]["n"], i as u64);
    }

    let left = published - drained;
    let threshold = left - 1;
    let out = eventctl(
        &url,
        &[
            "lag",
            "--group",
            "probe",
            "--threshold",
            &threshold.to_string(),
            "--json",
        ],
    )
    .await;
    assert_code(&out, 0);
    let v = json(&out);
    assert_eq!(v["threshold"], threshold);
    assert_eq!(v["over_threshold"], 1);
    let consumers = v["consumers"].as_array().unwrap();
    assert_eq!(consumers.len(), 1, "{v}");
    let c = &consumers[0];
    assert_eq!(c["stream"], "AUTH_EVENTS");
    assert_eq!(c["consumer"], "probe__auth_user_any");
    // A message pulled just as the tail stopped may be ack-pending rather than pending.
    assert_eq!(
        c["pending"].as_u64().unwrap() + c["ack_pending"].as_u64().unwrap(),
        left
    );
    assert_eq!(c["lag"], left);
    assert_eq!(c["over_threshold"], true);

    // Human: the `!` column; still exit 0 unless asked to fail.
    let out = eventctl(&url, &["lag", "--threshold", &threshold.to_string()]).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.contains("probe__auth_user_any"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.starts_with('!'), "{text}");
    assert!(row.trim_end().ends_with(&left.to_string()), "{text}");
    assert!(
        text.contains("1 of 1 consumer(s) over the threshold"),
        "{text}"
    );

    let out = eventctl(
        &url,
        &[
            "lag",
            "--threshold",
            &threshold.to_string(),
            "--fail-over-threshold",
        ],
    )
    .await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("1 consumer(s) over the lag threshold"),
        "{}",
        stderr(&out)
    );

    // At the threshold is not over it.
    let out = eventctl(
        &url,
        &[
            "lag",
            "--stream",
            "AUTH_EVENTS",
            "--threshold",
            &left.to_string(),
            "--fail-over-threshold",
            "--json",
        ],
    )
    .await;
    assert_code(&out, 0);
    assert_eq!(json(&out)["over_threshold"], 0);

    // The group drains the rest; then its lag is 0.
    let out = eventctl(
        &url,
        &[
            "tail",
            "auth.user.*",
            "--group",
            "probe",
            "--count",
            &left.to_string(),
            "--timeout",
            "45s",
        ],
    )
    .await;
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).matches("AUTH_EVENTS seq ").count() as u64,
        left
    );
    let v = json(&eventctl(&url, &["lag", "--group", "probe", "--json"]).await);
    assert_eq!(v["consumers"][0]["lag"], 0, "{v}");
}

#[tokio::test]
async fn unknown_stream_bad_flag_unreachable() {
    let nats = server_with_topology().await;
    let out = eventctl(&nats.url(), &["lag", "--stream", "NOPE_EVENTS"]).await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).starts_with("error: stream NOPE_EVENTS not found"),
        "{}",
        stderr(&out)
    );
    let out = eventctl(&nats.url(), &["lag", "--threshold", "lots"]).await;
    assert_code(&out, 2);
    let out = eventctl(&nats.url(), &["lag", "--json"]).await;
    assert_code(&out, 0);
    assert_eq!(json(&out)["consumers"].as_array().unwrap().len(), 0);
    assert_unreachable_fails(&["lag"]).await;
}
