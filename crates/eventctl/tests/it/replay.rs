//! `replay`: the time-window replay.

use time::format_description::well_known::Rfc3339;

use crate::{
    NatsServer, assert_code, assert_unreachable_fails, eventctl, json, server_with_topology,
    stderr, stdout,
};

#[tokio::test]
async fn dry_run_counts_and_replay_copies_exactly_the_window() {
    let nats: NatsServer = server_with_topology().await;
    let url = nats.url();
    let js = nats.jetstream().await;
    let bodies = ["{\"a\":0}", "{\"a\":1}", "{\"a\":2}", "{\"a\":3}"];
    for b in bodies {
        js.publish("auth.user.created", b.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let stream = js.get_stream("AUTH_EVENTS").await.unwrap();
    let mut times = Vec::new();
    for seq in 1..=bodies.len() as u64 {
        times.push(stream.get_raw_message(seq).await.unwrap().time);
    }
    // The window [time of #2, time of #4) holds #2 and #3.
    let (first, end) = (1usize, 3usize);
    assert!(
        times[first - 1] < times[first] && times[end - 1] < times[end],
        "{times:?}"
    );
    let from = times[first].format(&Rfc3339).unwrap();
    let to = times[end].format(&Rfc3339).unwrap();
    let expected = &bodies[first..end];
    let target = "analytics.replay.test";
    let base = [
        "replay",
        "--stream",
        "AUTH_EVENTS",
        "--from",
        &from,
        "--to",
        &to,
        "--to-subject",
        target,
    ];

    let mut args = base.to_vec();
    args.extend(["--dry-run", "--json"]);
    let v = json(&eventctl(&url, &args).await);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["matched"], expected.len());
    assert_eq!(v["first_sequence"], first as u64 + 1);
    assert_eq!(v["last_sequence"], end as u64);
    let analytics = || async {
        json(&eventctl(&url, &["streams", "info", "ANALYTICS_EVENTS", "--json"]).await)["messages"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(analytics().await, 0);

    let mut args = base.to_vec();
    args.push("--dry-run");
    let out = eventctl(&url, &args).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).starts_with(&format!(
            "would replay {} message(s) of AUTH_EVENTS",
            expected.len()
        )),
        "{}",
        stdout(&out)
    );

    // For real: exactly the window's bodies, in order, in the target's stream.
    let out = eventctl(&url, &base).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).starts_with(&format!("replayed {} message(s)", expected.len())),
        "{}",
        stdout(&out)
    );
    // No progress bar when stderr is not a terminal.
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(analytics().await, expected.len() as u64);
    let target_stream = js.get_stream("ANALYTICS_EVENTS").await.unwrap();
    for (i, body) in expected.iter().enumerate() {
        let m = target_stream.get_raw_message(i as u64 + 1).await.unwrap();
        assert_eq!(m.subject.as_str(), target);
        assert_eq!(&m.payload[..], body.as_bytes());
    }

    // A subject filter that matches nothing in the window.
    let mut args = base.to_vec();
    args.extend(["--subject", "auth.user.deleted", "--json", "--dry-run"]);
    assert_eq!(json(&eventctl(&url, &args).await)["matched"], 0);
}

#[tokio::test]
async fn unknown_stream_bad_window_unreachable() {
    let nats = server_with_topology().await;
    let url = nats.url();
    let out = eventctl(
        &url,
        &[
            "replay",
            "--stream",
            "NOPE_EVENTS",
            "--from",
            "-1h",
            "--to-subject",
            "auth.x.y",
        ],
    )
    .await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("stream NOPE_EVENTS not found"),
        "{}",
        stderr(&out)
    );
    // from after to: the library refuses (exit 1, naming the window).
    let out = eventctl(
        &url,
        &[
            "replay",
            "--stream",
            "AUTH_EVENTS",
            "--from",
            "-1h",
            "--to",
            "-2h",
            "--to-subject",
            "auth.x.y",
        ],
    )
    .await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("invalid time window"),
        "{}",
        stderr(&out)
    );
    for args in [
        &[
            "replay",
            "--stream",
            "AUTH_EVENTS",
            "--from",
            "soon",
            "--to-subject",
            "auth.x.y",
        ][..],
        &["replay", "--stream", "AUTH_EVENTS", "--from", "-1h"],
        &[
            "replay",
            "--stream",
            "AUTH_EVENTS",
            "--from",
            "-1h",
            "--to-subject",
            "auth.*",
        ],
    ] {
        assert_code(&eventctl(&url, args).await, 2);
    }
    assert_unreachable_fails(&[
        "replay",
        "--stream",
        "AUTH_EVENTS",
        "--from",
        "-1h",
        "--to-subject",
        "auth.x.y",
    ])
    .await;
}
