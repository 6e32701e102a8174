//! `schema check`'s comparison with git's base branch: a schema version that the base
//! branch already has (released) may change only compatibly; one that disappeared is
//! reported. Read with `git show REF:path`; a missing ref or repository skips this part.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use events::schema::compat;
use events::schema::{SchemaKey, SchemaSet};
use serde_json::Value;

/// Runs `git args` in `dir`; `Ok(None)` when git is missing or the command fails.
fn git(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

fn git_text(dir: &Path, args: &[&str]) -> Option<String> {
    git(dir, args).map(|b| String::from_utf8_lossy(&b).trim_end().to_owned())
}

/// The problems of `set` (loaded from `dir`) against the schemas of `dir` at `base`.
/// Prints what was compared, or why the comparison was skipped.
///
/// # Errors
/// If a base document cannot be read or parsed although the ref exists.
pub(super) fn compare_with_base(
    dir: &Path,
    base: &str,
    set: &SchemaSet,
) -> anyhow::Result<Vec<String>> {
    let commit = format!("{base}^{{commit}}");
    if git(dir, &["rev-parse", "--verify", "--quiet", &commit]).is_none() {
        println!("base branch: no ref {base} here (or not a git repository): comparison skipped");
        return Ok(Vec::new());
    }
    // The directory's path inside the repository, e.g. `schemas/`.
    let prefix = git_text(dir, &["rev-parse", "--show-prefix"]).unwrap_or_default();
    let listed = git_text(
        dir,
        &[
            "ls-tree",
            "-r",
            "--name-only",
            "--full-name",
            base,
            "--",
            ".",
        ],
    )
    .with_context(|| format!("listing {prefix} at {base}"))?;
    let mut problems = Vec::new();
    let mut compared = 0;
    for path in listed.lines() {
        let relative = path.strip_prefix(&prefix).unwrap_or(path);
        let Some(key) = SchemaKey::from_file_path(relative) else {
            continue; // catalog.toml and other files
        };
        let bytes = git(dir, &["show", &format!("{base}:{path}")])
            .with_context(|| format!("reading {path} at {base}"))?;
        let old: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{path} at {base} is not JSON"))?;
        compared += 1;
        problems.extend(compare_one(&key, &old, set, base));
    }
    println!("base branch {base}: {compared} released schema(s) compared");
    Ok(problems)
}

/// The problems of one released schema: changed incompatibly, or removed.
fn compare_one(key: &SchemaKey, old: &Value, set: &SchemaSet, base: &str) -> Vec<String> {
    let version = key.version.to_string();
    let Some(now) = set.get(key.event_type.as_str(), &version) else {
        // Dropping an old major after its migration is legitimate (SCHEMA_VERSIONING.md,
        // path A step 4), so this is a warning only.
        println!("warning: {key} exists in {base} but not here: events of it may still be stored");
        return Vec::new();
    };
    compat::compare(old, now.document())
        .into_iter()
        .map(|i| {
            format!(
                "{key} changed since {base} and is not backward compatible: {i}; a released version only changes compatibly (add a new minor, or a new major for a breaking change)"
            )
        })
        .collect()
}
