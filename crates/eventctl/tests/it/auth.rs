//! `auth init`: seeds mode 0600, an include the shipped secure config accepts, no silent
//! overwrite.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::{assert_code, eventctl, stderr, stdout, streams_toml, unreachable_url};

const IDENTITIES: [&str; 4] = [
    "auth-service",
    "catalog-service",
    "operator",
    "admin-server",
];

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A copy of the repository layout the secure config expects: `deploy/secure/nats.conf`
/// including `../../.data/secure/auth.conf`.
fn layout() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let secure = root.path().join("deploy/secure");
    std::fs::create_dir_all(&secure).unwrap();
    std::fs::copy(
        repo_file("deploy/secure/nats.conf"),
        secure.join("nats.conf"),
    )
    .unwrap();
    let out = root.path().join(".data/secure");
    (root, out)
}

async fn init(out: &Path, extra: &[&str]) -> std::process::Output {
    let identities = repo_file("deploy/secure/identities.toml");
    let streams = streams_toml();
    let mut args = vec![
        "auth",
        "init",
        "--out",
        out.to_str().unwrap(),
        "--identities",
        identities.to_str().unwrap(),
        "--streams",
        streams.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    // No server is needed: the URL is never dialled.
    eventctl(&unreachable_url(), &args).await
}

#[tokio::test]
async fn auth_init_writes_private_seeds_and_an_include_the_secure_config_accepts() {
    let (root, out) = layout();
    let run = init(&out, &[]).await;
    assert_code(&run, 0);
    assert_eq!(mode(&out), 0o700);
    let include = std::fs::read_to_string(out.join("auth.conf")).unwrap();
    for id in IDENTITIES {
        let seed_file = out.join(format!("{id}.nk"));
        assert_eq!(mode(&seed_file), 0o600, "{id}");
        let seed = std::fs::read_to_string(&seed_file).unwrap();
        assert!(seed.starts_with("SU"), "{id}: {seed}");
        let public = nkeys::KeyPair::from_seed(seed.trim()).unwrap().public_key();
        assert!(include.contains(&public), "{id}'s key is not in auth.conf");
        assert!(
            !include.contains(seed.trim()),
            "a seed leaked into auth.conf"
        );
        assert!(stdout(&run).contains(&public));
    }
    for key in ["ca-key.pem", "server-key.pem", "client-key.pem"] {
        assert_eq!(mode(&out.join("tls").join(key)), 0o600, "{key}");
    }
    let check = std::process::Command::new(events_testkit::nats_server_bin())
        .args(["-c", "deploy/secure/nats.conf", "-t"])
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nats-server -t refused the secure config:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
async fn auth_init_keeps_existing_seeds_unless_forced() {
    let (_root, out) = layout();
    assert_code(&init(&out, &["--no-tls"]).await, 0);
    let seed_file = out.join("operator.nk");
    let before = std::fs::read_to_string(&seed_file).unwrap();
    let again = init(&out, &["--no-tls"]).await;
    assert_code(&again, 1);
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(&seed_file).unwrap(), before);
    // A seed made world-readable by hand is replaced by a private one.
    std::fs::set_permissions(&seed_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_code(&init(&out, &["--no-tls", "--force"]).await, 0);
    assert_ne!(std::fs::read_to_string(&seed_file).unwrap(), before);
    assert_eq!(mode(&seed_file), 0o600);
    assert!(!out.join("tls").exists(), "--no-tls wrote certificates");
}
