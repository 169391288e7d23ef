//! How to reach etcd: the seeds, and how the connection is secured (TLS with a client
//! certificate, an etcd user, an SSH tunnel). Built once by the command line from its flags
//! and files, then shared by everything that connects ([`super::etcd::connect`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use super::ssh;

/// Where etcd is and how to talk to it.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    /// Client URLs in their normal form (`http://HOST:PORT` or `https://HOST:PORT`).
    pub seeds: Vec<String>,
    pub tls: Option<Tls>,
    pub user: Option<Credentials>,
    /// Every connection to etcd goes through this SSH connection.
    pub ssh: Option<Arc<ssh::Tunnel>>,
}

impl std::fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("seeds", &self.seeds)
            .field("tls", &self.tls.as_ref().map(|t| &t.files))
            .field("user", &self.user.as_ref().map(|u| &u.name))
            .field("ssh", &self.ssh.as_ref().map(|s| s.target()))
            .finish()
    }
}

impl EtcdAccess {
    /// Plain access to `seeds` (no TLS, no user, no tunnel).
    pub fn plain(seeds: Vec<String>) -> EtcdAccess {
        EtcdAccess { seeds, ..EtcdAccess::default() }
    }

    /// The seeds as one string, for messages.
    pub fn label(&self) -> String {
        self.seeds.join(",")
    }

    /// The client's options for one endpoint: TLS when the seed is `https://`, the user.
    pub fn connect_options(&self, base: ConnectOptions, seed: &str) -> ConnectOptions {
        let mut o = base;
        if let Some(u) = &self.user {
            o = o.with_user(u.name.clone(), u.password.clone()).with_auto_token_refresh(true);
        }
        if seed.starts_with("https://")
            && let Some(tls) = &self.tls
        {
            o = o.with_tls(tls.options());
        }
        o
    }
}

/// The files TLS was configured from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// TLS to etcd: the CA that signed etcd's certificate, and this client's certificate.
#[derive(Clone)]
pub struct Tls {
    pub files: TlsFiles,
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// Read the PEM files. Each error names the file and the flag.
    pub fn load(files: TlsFiles) -> Result<Tls, AccessError> {
        let ca = read(&files.ca, "--etcd-ca")?;
        let identity = match (&files.cert, &files.key) {
            (Some(c), Some(k)) => Some((read(c, "--etcd-cert")?, read(k, "--etcd-key")?)),
            (None, None) => None,
            (Some(_), None) => return Err(AccessError::Pair("--etcd-cert is given without --etcd-key")),
            (None, Some(_)) => return Err(AccessError::Pair("--etcd-key is given without --etcd-cert")),
        };
        Ok(Tls { files, ca, identity })
    }

    pub fn options(&self) -> TlsOptions {
        let mut o = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca));
        if let Some((cert, key)) = &self.identity {
            o = o.identity(Identity::from_pem(cert, key));
        }
        o
    }
}

/// An etcd user and its password.
#[derive(Clone)]
pub struct Credentials {
    pub name: String,
    pub password: String,
}

/// Why the flags do not make a usable access.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read {flag} {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Pair(&'static str),
    #[error("{0}")]
    Invalid(String),
}

fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, AccessError> {
    std::fs::read(path).map_err(|source| AccessError::Read { flag, path: path.to_path_buf(), source })
}
