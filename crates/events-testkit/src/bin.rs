//! Finding the `nats-server` binary.

use std::env;
use std::path::{Path, PathBuf};

/// Environment variable that names the `nats-server` binary to use; it wins over every
/// other place [`nats_server_bin`] looks.
pub const NATS_SERVER_BIN_ENV: &str = "NATS_SERVER_BIN";

const NOT_FOUND: &str = "nats-server not found: run scripts/setup-nats.sh (installs the pinned \
                         2.15.1 into .tools/nats) or set NATS_SERVER_BIN";

/// The `nats-server` binary the test kit runs.
///
/// Looks, in order, at:
/// 1. `$NATS_SERVER_BIN` (an error if it is set but names no file: a typo should not
///    silently fall back to another version);
/// 2. `<workspace root>/.tools/nats/bin/nats-server`, where `scripts/setup-nats.sh`
///    installs the pinned version;
/// 3. `nats-server` on `PATH`.
///
/// # Panics
///
/// If none of these exists. Tests never skip for want of a server: a skipped test
/// proves nothing.
pub fn nats_server_bin() -> PathBuf {
    if let Some(path) = env::var_os(NATS_SERVER_BIN_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{NATS_SERVER_BIN_ENV}={} is not a file; {NOT_FOUND}",
            path.display()
        );
        return path;
    }
    let local = workspace_root().join(".tools/nats/bin/nats-server");
    if local.is_file() {
        return local;
    }
    if let Some(path) = find_on_path("nats-server") {
        return path;
    }
    panic!("{NOT_FOUND}");
}

/// The workspace root: this crate lives in `<root>/crates/events-testkit`.
fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Canonical only for readable paths in logs; the joined path works as well.
    root.canonicalize().unwrap_or(root)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}
