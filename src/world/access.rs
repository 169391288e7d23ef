//! How to reach etcd: the seeds, and how the connection is secured (TLS with a client
//! certificate, an etcd user, an SSH tunnel). Built once by the command line from its flags
//! and files, then shared by everything that connects ([`super::etcd::connect`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use super::ssh;

/// Environment variable holding the etcd user's password (there is no flag: argv is
/// visible to every user of the host).
pub const PASSWORD_ENV: &str = "MGMT_ETCD_PASSWORD";

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

    /// Who etcd takes this client for: the `--etcd-user`, else the common name of the client
    /// certificate (etcd with authentication on takes it as the user).
    pub fn user_name(&self) -> Option<String> {
        self.user
            .as_ref()
            .map(|u| u.name.clone())
            .or_else(|| self.tls.as_ref().and_then(Tls::client_cert_name))
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

    /// Whether this client's certificate is valid at `now` by its own dates (etcd's refusal
    /// of an expired certificate does not always say so). `Current` when there is none or it
    /// cannot be read: then the dates are not the reason.
    pub fn client_cert_validity(&self, now: std::time::SystemTime) -> Validity {
        use rustls_pki_types::pem::PemObject;
        let Some((cert, _)) = &self.identity else {
            return Validity::Current;
        };
        let Ok(der) = rustls_pki_types::CertificateDer::from_pem_slice(cert) else {
            return Validity::Current;
        };
        let Ok(ee) = webpki::EndEntityCert::try_from(&der) else {
            return Validity::Current;
        };
        let Ok(since) = now.duration_since(std::time::UNIX_EPOCH) else {
            return Validity::Current;
        };
        // Without trust anchors the chain cannot be built, but the dates are checked first.
        let verified = ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[],
            &[],
            rustls_pki_types::UnixTime::since_unix_epoch(since),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        );
        match verified {
            Err(webpki::Error::CertExpired { .. }) => Validity::Expired,
            Err(webpki::Error::CertNotValidYet { .. }) => Validity::NotYet,
            _ => Validity::Current,
        }
    }

    /// The common name of the client certificate: the etcd user it logs in as when etcd has
    /// authentication on. `None` without a certificate or a readable name.
    pub fn client_cert_name(&self) -> Option<String> {
        use rustls_pki_types::pem::PemObject;
        let (cert, _) = self.identity.as_ref()?;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(cert).ok()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).ok()?;
        let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?;
        Some(cn.to_string())
    }

    pub fn options(&self) -> TlsOptions {
        let mut o = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca));
        if let Some((cert, key)) = &self.identity {
            o = o.identity(Identity::from_pem(cert, key));
        }
        o
    }
}

/// Whether a certificate's dates cover a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Current,
    Expired,
    NotYet,
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

/// The password in the text of a password file: the text without its line end (`echo pw >
/// file` and editors add one). A file of several lines, or an empty one, is a mistake: the
/// password would not be what its owner thinks.
pub fn password_of_file(text: &str) -> Result<&str, &'static str> {
    let line = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text);
    if line.contains(['\n', '\r']) {
        Err("holds more than one line; the password is the whole of its one line")
    } else if line.is_empty() {
        Err("is empty")
    } else {
        Ok(line)
    }
}

fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, AccessError> {
    std::fs::read(path).map_err(|source| AccessError::Read { flag, path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_holds_one_line() {
        assert_eq!(password_of_file("pw\n"), Ok("pw"));
        assert_eq!(password_of_file("pw\r\n"), Ok("pw"));
        assert_eq!(password_of_file("pw"), Ok("pw"));
        assert_eq!(password_of_file(" p w \n"), Ok(" p w "), "spaces are part of a password");
        assert!(password_of_file("pw\n\n").is_err());
        assert!(password_of_file("pw\nother\n").is_err());
        assert!(password_of_file("").is_err());
        assert!(password_of_file("\n").is_err());
    }
}
