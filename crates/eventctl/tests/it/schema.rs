//! `schema check | push | list | show | catalog` with the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use events_testkit::NatsServer;
use serde_json::{Value, json};

use crate::{assert_code, eventctl, json, stderr, stdout, tempfile_dir, unreachable_url};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn repo_schemas() -> PathBuf {
    repo().join("schemas")
}

/// A copy of the repository's schemas in a fresh directory; returns `<dir>/schemas`.
fn copy_schemas(dir: &Path) -> PathBuf {
    let to = dir.join("schemas");
    copy_dir(&repo_schemas(), &to);
    to
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// auth.user.created 1.0 with a new required field `phone`, as `version`.
fn with_phone(schemas: &Path, version: &str) -> Value {
    let mut doc = read_json(&schemas.join("auth.user.created/1.0.json"));
    doc["$id"] = json!(format!("urn:events:schema:auth.user.created:{version}"));
    doc["properties"]["phone"] = json!({"type": "string", "description": "a phone number"});
    doc["required"].as_array_mut().unwrap().push(json!("phone"));
    for ex in doc["examples"].as_array_mut().unwrap() {
        ex["phone"] = json!("+44 20 7946 0000");
    }
    doc
}

async fn check(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["schema", "check", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    // The file commands never connect: an unreachable server is fine.
    eventctl(&unreachable_url(), &args).await
}

#[tokio::test]
async fn check_passes_on_the_repository_schemas() {
    let out = check(&repo_schemas(), &["--no-base"]).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("4 schema(s) of 4 type(s) loaded"), "{text}");
    assert!(
        text.contains("ok: every minor is backward compatible"),
        "{text}"
    );
}

#[tokio::test]
async fn a_required_field_added_as_1_1_fails_naming_the_field_and_as_2_0_passes() {
    let dir = tempfile_dir();
    let schemas = copy_schemas(&dir);
    let v11 = schemas.join("auth.user.created/1.1.json");
    write_json(&v11, &with_phone(&schemas, "1.1"));

    let out = check(&schemas, &["--no-base"]).await;
    assert_code(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains(
            "error: auth.user.created 1.1 is not backward compatible with 1.0: field /phone"
        ),
        "{text}"
    );
    assert!(text.contains("(required-added)"), "{text}");
    assert!(
        stderr(&out).contains("1 schema problem(s)"),
        "{}",
        stderr(&out)
    );

    std::fs::remove_file(&v11).unwrap();
    write_json(
        &schemas.join("auth.user.created/2.0.json"),
        &with_phone(&schemas, "2.0"),
    );
    let out = check(&schemas, &["--no-base"]).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("5 schema(s) of 4 type(s)"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn a_misnamed_or_mislabelled_schema_fails_the_check() {
    let dir = tempfile_dir();
    let schemas = copy_schemas(&dir);
    // The file says 1.1, its $id says 1.0.
    std::fs::copy(
        schemas.join("auth.user.created/1.0.json"),
        schemas.join("auth.user.created/1.1.json"),
    )
    .unwrap();
    let out = check(&schemas, &["--no-base"]).await;
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("auth.user.created/1.1.json: $id is"), "{err}");
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs (install git)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_released_schema_changed_incompatibly_fails_against_the_base_ref() {
    let dir = tempfile_dir();
    let schemas = copy_schemas(&dir);
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "schemas"]);

    // Unchanged: compared and fine.
    let out = check(&schemas, &["--base", "main"]).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("base branch main: 4 released schema(s) compared"),
        "{}",
        stdout(&out)
    );

    // auth.user.deleted 1.0 edited in place: deleted_by no longer nullable.
    let file = schemas.join("auth.user.deleted/1.0.json");
    let mut doc = read_json(&file);
    doc["properties"]["deleted_by"]["type"] = json!("string");
    doc["examples"] = json!([{"user_id": "5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10", "revision": 2,
                              "deleted_by": "9e3c1d20-6a4b-4f5e-8c7d-2b1a0f9e8d7c"}]);
    write_json(&file, &doc);
    let out = check(&schemas, &["--base", "main"]).await;
    assert_code(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("error: auth.user.deleted 1.0 changed since main and is not backward compatible: field /deleted_by"),
        "{text}"
    );
    assert!(text.contains("(type-narrowed)"), "{text}");

    // No such ref: said, skipped, not a failure of its own.
    let out = check(&schemas, &["--base", "origin/nope"]).await;
    let text = stdout(&out);
    assert!(text.contains("no ref origin/nope"), "{text}");
    assert!(text.contains("comparison skipped"), "{text}");
    assert_code(&out, 0);
}

#[tokio::test]
async fn catalog_check_accepts_the_committed_catalog_and_refuses_a_stale_one() {
    let catalog = repo().join("docs/EVENT_CATALOG.md");
    let dir_arg = repo_schemas();
    let args = |out: &Path, check: bool| {
        let mut a = vec![
            "schema".to_owned(),
            "catalog".to_owned(),
            "--dir".to_owned(),
            dir_arg.to_str().unwrap().to_owned(),
            "--out".to_owned(),
            out.to_str().unwrap().to_owned(),
        ];
        if check {
            a.push("--check".to_owned());
        }
        a
    };
    let run = |a: Vec<String>| async move {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        eventctl(&unreachable_url(), &refs).await
    };
    let out = run(args(&catalog, true)).await;
    assert_code(&out, 0);
    assert!(stdout(&out).contains("is up to date"), "{}", stdout(&out));

    // Generating into a new file gives the committed text, byte for byte.
    let tmp = tempfile_dir().join("EVENT_CATALOG.md");
    assert_code(&run(args(&tmp, false)).await, 0);
    assert_eq!(
        std::fs::read_to_string(&tmp).unwrap(),
        std::fs::read_to_string(&catalog).unwrap()
    );

    // A hand edit makes it stale.
    let edited = std::fs::read_to_string(&tmp)
        .unwrap()
        .replace("inserts the user", "adds the user");
    std::fs::write(&tmp, edited).unwrap();
    let out = run(args(&tmp, true)).await;
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("is out of date (first difference at line"),
        "{err}"
    );
    assert!(err.contains("run `eventctl schema catalog`"), "{err}");
}

#[tokio::test]
async fn push_list_show_against_a_server() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let dir = repo_schemas();
    let dir = dir.to_str().unwrap();

    let out = eventctl(&url, &["schema", "list"]).await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("no schema registry EVENT_SCHEMAS"),
        "{}",
        stderr(&out)
    );

    let out = eventctl(&url, &["schema", "push", "--dir", dir]).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("auth.user.created 1.0: stored"), "{text}");
    assert!(
        text.contains("4 of 4 schema(s) written to EVENT_SCHEMAS"),
        "{text}"
    );
    let again = eventctl(&url, &["schema", "push", "--dir", dir]).await;
    assert_code(&again, 0);
    assert!(
        stdout(&again).contains("0 of 4 schema(s) written"),
        "{}",
        stdout(&again)
    );

    let out = eventctl(&url, &["schema", "list", "--json"]).await;
    assert_code(&out, 0);
    let items = json(&out);
    let uris: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris.len(), 4, "{items}");
    assert!(
        uris.contains(&"urn:events:schema:auth.user.created:1.0"),
        "{items}"
    );
    let table = eventctl(&url, &["schema", "list"]).await;
    assert_code(&table, 0);
    assert!(
        stdout(&table).contains("auth.organization.created"),
        "{}",
        stdout(&table)
    );

    let out = eventctl(&url, &["schema", "show", "auth.user.created", "1.0"]).await;
    assert_code(&out, 0);
    assert_eq!(
        json(&out),
        read_json(&repo_schemas().join("auth.user.created/1.0.json"))
    );
    let out = eventctl(&url, &["schema", "show", "auth.user.created", "7.0"]).await;
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("no schema auth.user.created 7.0 in EVENT_SCHEMAS"),
        "{}",
        stderr(&out)
    );
    let out = eventctl(&url, &["schema", "show", "auth.user.created", "one"]).await;
    assert_code(&out, 2);
}
