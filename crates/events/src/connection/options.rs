//! The async-nats `ConnectOptions` of a [`ConnectConfig`]: credentials, TLS, identity,
//! timeouts, the reconnect delay, and the connection-state events logged (and permission
//! denials recorded) through `tracing`.

use std::path::Path;

use async_nats::ConnectOptions;

use super::{AuthConfig, ConnectConfig, ConnectError, Denials, TlsConfig};

/// The async-nats options of `config` (validated; named files read).
pub(super) async fn options(
    config: &ConnectConfig,
    denials: &Denials,
) -> Result<ConnectOptions, ConnectError> {
    config.validate()?;
    let mut options = with_auth(ConnectOptions::new(), &config.auth).await?;
    options = with_tls(options, &config.tls)?;
    if let Some(n) = &config.name {
        options = options.name(n);
    }
    if let Some(prefix) = &config.inbox_prefix {
        options = options.custom_inbox_prefix(prefix);
    }
    Ok(with_callbacks(
        with_timeouts(options, config),
        config,
        denials,
    ))
}

/// Adds the configured credentials (at most one method, as `validate` checks), reading the
/// credentials or seed file.
async fn with_auth(
    mut options: ConnectOptions,
    auth: &AuthConfig,
) -> Result<ConnectOptions, ConnectError> {
    if let Some(path) = &auth.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(file_error("credentials file", path))?;
    }
    if let Some(path) = &auth.nkey_seed_file {
        let seed = tokio::fs::read_to_string(path)
            .await
            .map_err(file_error("nkey seed file", path))?;
        options = options.nkey(seed.trim().to_owned());
    }
    if let Some(token) = &auth.token {
        options = options.token(token.clone());
    }
    if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    Ok(options)
}

/// Adds the CA and client certificate (checking now that their files can be read) and
/// `require_tls`.
fn with_tls(mut options: ConnectOptions, tls: &TlsConfig) -> Result<ConnectOptions, ConnectError> {
    if let Some(ca) = &tls.ca_file {
        check_readable("TLS CA file", ca)?;
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        check_readable("TLS client certificate", cert)?;
        check_readable("TLS client key", key)?;
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if tls.require_tls {
        options = options.require_tls(true);
    }
    Ok(options)
}

fn check_readable(what: &'static str, path: &Path) -> Result<(), ConnectError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(file_error(what, path))
}

/// The error of a named file (`what`) that could not be read.
fn file_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ConnectError {
    let path = path.to_owned();
    move |source| ConnectError::File { what, path, source }
}

/// The connect, request and ping bounds and the reconnect limit.
fn with_timeouts(options: ConnectOptions, config: &ConnectConfig) -> ConnectOptions {
    options
        .connection_timeout(config.connect_timeout)
        .request_timeout(Some(config.request_timeout))
        .ping_interval(config.ping_interval)
        .max_reconnects(config.reconnect.max_reconnects)
}

/// The reconnect delay by `config.reconnect` (logged from the second attempt on), and the
/// event callback: a permission denial is recorded in `denials`, every event is logged
/// with the client name.
fn with_callbacks(
    options: ConnectOptions,
    config: &ConnectConfig,
    denials: &Denials,
) -> ConnectOptions {
    let name = config.name.clone().unwrap_or_default();
    let denials = denials.clone();
    let policy = config.reconnect.clone();
    let delay_name = name.clone();
    options
        .reconnect_delay_callback(move |attempt| {
            let delay = policy.delay(attempt);
            if attempt > 1 {
                tracing::info!(client = %delay_name, attempt, ?delay, "NATS reconnecting");
            }
            delay
        })
        .event_callback(move |event| {
            let name = name.clone();
            let denied = match &event {
                async_nats::Event::ServerError(async_nats::ServerError::Other(text)) => {
                    denials.record_server_error(text)
                }
                _ => None,
            };
            async move {
                match denied {
                    Some(d) => tracing::warn!(client = %name, operation = ?d.operation, subject = %d.subject, "NATS denied this for lack of permission"),
                    None => log_event(&name, &event),
                }
            }
        })
}

fn log_event(name: &str, event: &async_nats::Event) {
    use async_nats::Event as E;
    match event {
        E::Connected => tracing::info!(client = %name, "NATS connected"),
        E::Disconnected => tracing::warn!(client = %name, "NATS disconnected"),
        E::LameDuckMode => {
            tracing::warn!(client = %name, "NATS server entered lame duck mode")
        }
        E::SlowConsumer(sid) => {
            tracing::warn!(client = %name, sid, "NATS slow consumer: messages dropped")
        }
        E::ServerError(err) => tracing::error!(client = %name, error = %err, "NATS server error"),
        E::ClientError(err) => tracing::warn!(client = %name, error = %err, "NATS client error"),
        E::Draining => tracing::info!(client = %name, "NATS draining"),
        E::Closed => tracing::info!(client = %name, "NATS connection closed"),
    }
}
