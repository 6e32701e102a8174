//! Prints the configuration entry `<id>:<role>:<sha256 hex>` for an admin token read from
//! stdin (so the secret stays out of shell history and process lists). The role is
//! `viewer`, `operator` or `admin` (the default).
//!
//! Run with:
//!
//! ```text
//! printf %s "$TOKEN" | cargo run -q -p events-admin --example hash_token -- ops admin
//! ```

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(id) = std::env::args().nth(1) else {
        eprintln!(
            "usage: hash_token <token id> [viewer|operator|admin]   (the token is read from stdin)"
        );
        return ExitCode::from(2);
    };
    let role = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "admin".to_owned());
    let mut secret = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut secret) {
        eprintln!("error: failed to read the token from stdin: {e}");
        return ExitCode::FAILURE;
    }
    // A trailing newline from `echo` is not part of the token.
    let secret = secret.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        eprintln!("error: empty token on stdin");
        return ExitCode::FAILURE;
    }
    let entry = format!("{id}:{role}:{}", events_admin::hash_token(secret));
    match events_admin::AdminToken::parse(&entry) {
        Ok(_) => {
            println!("{entry}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
