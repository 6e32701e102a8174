//! `eventctl auth init`: an nkey identity per service and tool, their permissions as a
//! nats-server include, and (once) a development CA with server and client certificates.
//!
//! Secrets (seeds, private keys) are created with mode 0600 from the first byte: the file
//! is opened with that mode, never chmod-ed afterwards.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use events::security::{GeneratedIdentity, IdentitiesSpec, generate, render_auth_conf};
use events::topology::TopologySpec;

use crate::args::Profile;
use crate::output::Table;

/// The include `deploy/secure/nats.conf` loads, in the output directory.
pub(crate) const AUTH_CONF: &str = "auth.conf";

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuthCommand {
    /// Generate an nkey per identity (seeds mode 0600), the permissions include and a dev CA.
    #[command(after_help = "Examples:\n  \
        eventctl auth init\n  \
        eventctl auth init --out .data/secure --force\n\n\
Writes DIR/<identity>.nk (the nkey seed, mode 0600), DIR/auth.conf (public keys and \
permissions, included by deploy/secure/nats.conf) and, when DIR/tls does not exist yet, a \
development CA with a server certificate for 127.0.0.1/localhost and a client \
certificate (private keys mode 0600). Existing seeds are kept and the command refuses, \
unless --force (then every seed is replaced: restart the server and the services). \
Seeds never belong in git: the default DIR is under the git-ignored .data/.")]
    Init(InitArgs),
}

/// `auth init` options.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Output directory (created mode 0700).
    #[arg(long, default_value = ".data/secure", value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Who produces and consumes what.
    #[arg(
        long,
        default_value = "deploy/secure/identities.toml",
        value_name = "FILE"
    )]
    pub(crate) identities: PathBuf,
    /// The topology the permissions are derived from.
    #[arg(long, default_value = "deploy/streams.toml", value_name = "FILE")]
    pub(crate) streams: PathBuf,
    /// Profile of the topology file.
    #[arg(long, value_enum, default_value = "dev")]
    pub(crate) profile: Profile,
    /// Replace existing seeds (new keys for every identity).
    #[arg(long)]
    pub(crate) force: bool,
    /// Do not create the development CA and certificates.
    #[arg(long)]
    pub(crate) no_tls: bool,
}

/// Runs an `auth` subcommand (no connection needed).
pub(crate) fn run(cmd: AuthCommand) -> anyhow::Result<()> {
    match cmd {
        AuthCommand::Init(args) => init(&args),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn init(args: &InitArgs) -> anyhow::Result<()> {
    let streams = args.streams.display().to_string();
    let topology = TopologySpec::from_toml(&read(&args.streams)?, &streams, args.profile.as_str())?;
    let identities_name = args.identities.display().to_string();
    let spec = IdentitiesSpec::from_toml(&read(&args.identities)?, &identities_name)?;
    let generated = generate(&spec, &topology)?;
    create_private_dir(&args.out)?;
    let seeds: Vec<PathBuf> = generated
        .iter()
        .map(|id| seed_path(&args.out, id))
        .collect();
    if !args.force
        && let Some(existing) = seeds.iter().find(|p| p.exists())
    {
        bail!(
            "{} exists; keep the current identities, or run again with --force to replace every seed",
            existing.display()
        );
    }
    for (id, path) in generated.iter().zip(&seeds) {
        write_new(path, format!("{}\n", id.seed()).as_bytes(), 0o600)?;
    }
    let auth_conf = args.out.join(AUTH_CONF);
    write_new(&auth_conf, render_auth_conf(&generated).as_bytes(), 0o644)?;
    let tls = if args.no_tls {
        None
    } else {
        tls::ensure(&args.out.join("tls"))?
    };
    print_summary(&generated, &seeds, &auth_conf, tls.as_deref());
    Ok(())
}

fn seed_path(dir: &Path, id: &GeneratedIdentity) -> PathBuf {
    dir.join(format!("{}.nk", id.name()))
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes `bytes` to a new file created with `mode`; an old file is removed first, so the
/// new one never inherits a wider mode.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn print_summary(ids: &[GeneratedIdentity], seeds: &[PathBuf], conf: &Path, tls: Option<&Path>) {
    let mut table = Table::new(&["IDENTITY", "ROLE", "PUBLIC KEY", "SEED FILE (0600)"]);
    for (id, seed) in ids.iter().zip(seeds) {
        table.row(vec![
            id.name().to_owned(),
            id.spec.role.as_str().to_owned(),
            id.public_key.clone(),
            seed.display().to_string(),
        ]);
    }
    println!("{}", table.render());
    println!("permissions include: {}", conf.display());
    match tls {
        Some(dir) => println!(
            "development CA and certificates: {} (created)",
            dir.display()
        ),
        None => println!("TLS: not generated (--no-tls, or the tls directory already exists)"),
    }
    println!("next: nats-server -c deploy/secure/nats.conf (from the repository root)");
}

mod tls {
    //! The development CA, a server certificate for 127.0.0.1/localhost and a client
    //! certificate, made once (an existing directory is kept: clients trust its CA).

    use std::path::{Path, PathBuf};

    use anyhow::Context as _;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    use super::{create_private_dir, write_new};

    /// Creates `dir` with the certificates unless it exists; `Some(dir)` if created.
    pub(super) fn ensure(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
        if dir.exists() {
            return Ok(None);
        }
        create_private_dir(dir)?;
        let ca_key = KeyPair::generate().context("cannot generate the CA key")?;
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "events development CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).context("cannot sign the CA")?;
        write_new(&dir.join("ca.pem"), ca_cert.pem().as_bytes(), 0o644)?;
        write_new(
            &dir.join("ca-key.pem"),
            ca_key.serialize_pem().as_bytes(),
            0o600,
        )?;
        let issuer = Issuer::new(ca, ca_key);
        for (name, purpose) in [
            ("server", ExtendedKeyUsagePurpose::ServerAuth),
            ("client", ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let key = KeyPair::generate().context("cannot generate a key")?;
            let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
                .context("certificate names")?;
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![purpose];
            let cert = params
                .signed_by(&key, &issuer)
                .with_context(|| format!("cannot sign the {name} certificate"))?;
            write_new(
                &dir.join(format!("{name}-cert.pem")),
                cert.pem().as_bytes(),
                0o644,
            )?;
            let key_pem = key.serialize_pem();
            write_new(
                &dir.join(format!("{name}-key.pem")),
                key_pem.as_bytes(),
                0o600,
            )?;
        }
        Ok(Some(dir.to_owned()))
    }
}
