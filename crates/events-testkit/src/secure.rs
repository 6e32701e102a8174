//! A secured server: TLS from a test CA (made with `rcgen`) and nkey users with
//! permissions, as `deploy/secure/nats.conf` runs it.
//!
//! The kit does not depend on the `events` library, so the caller passes the permissions
//! include it generated (`events::security::render_auth_conf`), exactly what `eventctl auth
//! init` writes:
//!
//! ```no_run
//! use events_testkit::{SecureNatsServer, TestPki};
//!
//! # async fn example(auth_conf: String, seed: String) {
//! let nats = SecureNatsServer::start(auth_conf).await;
//! let client = nats.client("auth-service", &seed).await; // TLS + nkey + its inbox prefix
//! # let _ = client;
//! let stranger = TestPki::generate(); // another CA: its clients must be refused
//! # let _ = stranger;
//! # }
//! ```

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::server::{NatsServer, new_temp_dir};

/// How long [`SecureNatsServer::client`] may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A CA, a server certificate for `127.0.0.1` and `localhost`, and a client certificate,
/// as PEM files in a temporary directory (deleted on drop). Keys are written mode 0600.
#[derive(Debug)]
pub struct TestPki {
    dir: TempDir,
}

impl TestPki {
    /// Generates a fresh CA and the certificates it signs.
    ///
    /// # Panics
    /// If a key or certificate cannot be made or written.
    pub fn generate() -> TestPki {
        let pki = TestPki {
            dir: new_temp_dir(),
        };
        let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
        let ca_params = ca_params();
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("CA certificate: {e}"));
        pki.write("ca.pem", &ca_cert.pem(), false);
        let issuer = Issuer::new(ca_params, ca_key);
        for (name, purpose) in [
            ("server", ExtendedKeyUsagePurpose::ServerAuth),
            ("client", ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let key = KeyPair::generate().unwrap_or_else(|e| panic!("{name} key: {e}"));
            let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
                .unwrap_or_else(|e| panic!("{name} certificate params: {e}"));
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![purpose];
            let cert = params
                .signed_by(&key, &issuer)
                .unwrap_or_else(|e| panic!("{name} certificate: {e}"));
            pki.write(&format!("{name}-cert.pem"), &cert.pem(), false);
            pki.write(&format!("{name}-key.pem"), &key.serialize_pem(), true);
        }
        pki
    }

    fn write(&self, name: &str, text: &str, secret: bool) {
        let path = self.dir.path().join(name);
        let mode = if secret { 0o600 } else { 0o644 };
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM): what clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM), for `127.0.0.1` and `localhost`.
    pub fn server_cert_file(&self) -> PathBuf {
        self.dir.path().join("server-cert.pem")
    }

    /// The server's private key (PEM).
    pub fn server_key_file(&self) -> PathBuf {
        self.dir.path().join("server-key.pem")
    }

    /// A client certificate (PEM), for mutual TLS.
    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.path().join("client-cert.pem")
    }

    /// The client certificate's private key (PEM).
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.path().join("client-key.pem")
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "events-testkit CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Options for a [`SecureNatsServer`], from [`SecureNatsServer::builder`].
#[derive(Debug, Clone)]
pub struct SecureNatsServerBuilder {
    auth_conf: String,
    mutual_tls: bool,
}

impl SecureNatsServerBuilder {
    /// Require a client certificate signed by the test CA (`verify: true`).
    pub fn mutual_tls(mut self, on: bool) -> Self {
        self.mutual_tls = on;
        self
    }

    /// Starts the server; see [`SecureNatsServer::start`].
    ///
    /// # Panics
    /// If the certificates cannot be made or the server is not ready within 20 s.
    pub async fn start(self) -> SecureNatsServer {
        let pki = TestPki::generate();
        let tls = tls_block(&pki, self.mutual_tls);
        let server = NatsServer::builder()
            .healthz_only()
            .extra_config(tls)
            .extra_config(self.auth_conf)
            .start()
            .await;
        SecureNatsServer {
            server,
            pki,
            mutual_tls: self.mutual_tls,
        }
    }
}

fn tls_block(pki: &TestPki, verify: bool) -> String {
    let path = |p: PathBuf| {
        p.to_string_lossy()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: {verify}\n  timeout: 2\n}}",
        path(pki.server_cert_file()),
        path(pki.server_key_file()),
        path(pki.ca_file()),
    )
}

/// A [`NatsServer`] that requires TLS (certificates from its own [`TestPki`]) and
/// authenticates nkey users with the permissions of the given include.
#[derive(Debug)]
pub struct SecureNatsServer {
    server: NatsServer,
    pki: TestPki,
    mutual_tls: bool,
}

impl SecureNatsServer {
    /// Starts a server requiring TLS, with `auth_conf` (an `authorization { ... }` block)
    /// in its config. Ready once `/healthz` is ok.
    ///
    /// # Panics
    /// If the certificates cannot be made or the server is not ready within 20 s.
    pub async fn start(auth_conf: impl Into<String>) -> SecureNatsServer {
        Self::builder(auth_conf).start().await
    }

    /// A builder, for mutual TLS.
    pub fn builder(auth_conf: impl Into<String>) -> SecureNatsServerBuilder {
        SecureNatsServerBuilder {
            auth_conf: auth_conf.into(),
            mutual_tls: false,
        }
    }

    /// The server process (ports, log, monitoring).
    pub fn server(&self) -> &NatsServer {
        &self.server
    }

    /// The certificates it serves and trusts.
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// The client URL, `tls://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.server.port())
    }

    /// Options for `identity` with its nkey `seed`: the test CA as root, TLS required,
    /// the identity's inbox prefix `_INBOX_<identity>`, and with mutual TLS the client
    /// certificate.
    pub fn connect_options(&self, identity: &str, seed: &str) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .add_root_certificates(self.pki.ca_file())
            .require_tls(true)
            .nkey(seed.to_owned())
            .custom_inbox_prefix(format!("_INBOX_{identity}"))
            .name(identity)
            .connection_timeout(Duration::from_secs(5));
        if self.mutual_tls {
            options = options
                .add_client_certificate(self.pki.client_cert_file(), self.pki.client_key_file());
        }
        options
    }

    /// A client connected as `identity`; see [`connect_options`](Self::connect_options).
    ///
    /// # Panics
    /// If it cannot connect within 10 s.
    pub async fn client(&self, identity: &str, seed: &str) -> Client {
        let attempt = self.connect_options(identity, seed).connect(self.url());
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => self.server.fail(&format!("connect as {identity}: {e}")),
            Err(_) => self.server.fail(&format!(
                "connect as {identity}: no connection within {CONNECT_TIMEOUT:?}"
            )),
        }
    }
}
