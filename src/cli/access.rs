//! The flags that secure the connection to etcd (TLS, an etcd user, an SSH tunnel), and the
//! [`EtcdAccess`] they make with the seeds.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::world::access::{Credentials, EtcdAccess, Tls, TlsFiles};
use crate::world::ssh;

/// Environment variable holding the etcd user's password (there is no flag: argv is
/// visible to every user of the host).
pub const PASSWORD_ENV: &str = "MGMT_ETCD_PASSWORD";

/// How the connection to etcd is secured. Global within its command, like the seeds.
#[derive(Args, Debug, Clone, Default)]
pub struct SecureArgs {
    /// The CA certificate (PEM) that signed etcd's server certificate; needed for https:// seeds.
    #[arg(
        long,
        global = true,
        env = "MGMT_ETCD_CA",
        value_name = "FILE",
        help_heading = "Secure connection"
    )]
    pub etcd_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for an etcd started with --client-cert-auth.
    #[arg(
        long,
        global = true,
        env = "MGMT_ETCD_CERT",
        value_name = "FILE",
        help_heading = "Secure connection"
    )]
    pub etcd_cert: Option<PathBuf>,
    /// The private key (PEM) of --etcd-cert.
    #[arg(
        long,
        global = true,
        env = "MGMT_ETCD_KEY",
        value_name = "FILE",
        help_heading = "Secure connection"
    )]
    pub etcd_key: Option<PathBuf>,
    /// The etcd user to authenticate as; its password comes from --etcd-password-file or the
    /// MGMT_ETCD_PASSWORD environment variable, never from the command line.
    #[arg(
        long,
        global = true,
        env = "MGMT_ETCD_USER",
        value_name = "NAME",
        help_heading = "Secure connection"
    )]
    pub etcd_user: Option<String>,
    /// A file holding the etcd user's password (one line).
    #[arg(
        long,
        global = true,
        env = "MGMT_ETCD_PASSWORD_FILE",
        value_name = "FILE",
        help_heading = "Secure connection"
    )]
    pub etcd_password_file: Option<PathBuf>,
    /// Tunnel every etcd connection through SSH to this host: [ssh://][user@]host[:port] (user
    /// root and port 22 by default). The seeds are then reached from that host.
    #[arg(long, global = true, env = "MGMT_SSH_URL", value_name = "URL", value_parser = ssh::parse_target,
          help_heading = "Secure connection")]
    pub ssh_url: Option<ssh::Target>,
    /// The SSH private key [default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa, as OpenSSH tries them].
    #[arg(long, global = true, env = "MGMT_SSH_ID", value_name = "FILE", help_heading = "Secure connection")]
    pub ssh_id: Option<PathBuf>,
    /// The SSH server's host key, as in known_hosts (`ssh-ed25519 AAAA...`) or as a
    /// fingerprint (`SHA256:...`); without it, the key must be in ~/.ssh/known_hosts.
    #[arg(
        long,
        global = true,
        env = "MGMT_SSH_HOSTKEY",
        value_name = "KEY",
        value_parser = ssh::check_hostkey,
        help_heading = "Secure connection"
    )]
    pub ssh_hostkey: Option<String>,
    /// Trust the SSH server's host key if it is not in ~/.ssh/known_hosts yet, and add it
    /// there (as OpenSSH's StrictHostKeyChecking=accept-new). A changed key is still refused.
    #[arg(long, global = true, env = "MGMT_SSH_ACCEPT_NEW", help_heading = "Secure connection")]
    pub ssh_accept_new: bool,
}

/// [`SecureArgs`] given before the subcommand: no environment variables (those belong to
/// the subcommand's own), hidden from the top-level help like the leading seeds.
#[derive(Args, Debug, Clone, Default)]
pub struct LeadingSecureArgs {
    #[arg(long = "etcd-ca", id = "leading_etcd_ca", value_name = "FILE", hide = true)]
    pub etcd_ca: Option<PathBuf>,
    #[arg(long = "etcd-cert", id = "leading_etcd_cert", value_name = "FILE", hide = true)]
    pub etcd_cert: Option<PathBuf>,
    #[arg(long = "etcd-key", id = "leading_etcd_key", value_name = "FILE", hide = true)]
    pub etcd_key: Option<PathBuf>,
    #[arg(long = "etcd-user", id = "leading_etcd_user", value_name = "NAME", hide = true)]
    pub etcd_user: Option<String>,
    #[arg(long = "etcd-password-file", id = "leading_etcd_password_file", value_name = "FILE", hide = true)]
    pub etcd_password_file: Option<PathBuf>,
    #[arg(long = "ssh-url", id = "leading_ssh_url", value_name = "URL", value_parser = ssh::parse_target,
          hide = true)]
    pub ssh_url: Option<ssh::Target>,
    #[arg(long = "ssh-id", id = "leading_ssh_id", value_name = "FILE", hide = true)]
    pub ssh_id: Option<PathBuf>,
    #[arg(long = "ssh-hostkey", id = "leading_ssh_hostkey", value_name = "KEY", value_parser = ssh::check_hostkey,
          hide = true)]
    pub ssh_hostkey: Option<String>,
    #[arg(long = "ssh-accept-new", id = "leading_ssh_accept_new", hide = true)]
    pub ssh_accept_new: bool,
}

impl LeadingSecureArgs {
    pub fn is_empty(&self) -> bool {
        self.etcd_ca.is_none()
            && self.etcd_cert.is_none()
            && self.etcd_key.is_none()
            && self.etcd_user.is_none()
            && self.etcd_password_file.is_none()
            && self.ssh_url.is_none()
            && self.ssh_id.is_none()
            && self.ssh_hostkey.is_none()
            && !self.ssh_accept_new
    }

    /// Fill `into` with what was given before the subcommand, unless the same flag was
    /// given after it (`given_after(id)`).
    pub fn merge_into(self, into: &mut SecureArgs, given_after: &dyn Fn(&str) -> bool) {
        fn take<T>(leading: Option<T>, into: &mut Option<T>, after: bool) {
            if let Some(v) = leading.filter(|_| !after) {
                *into = Some(v);
            }
        }
        take(self.etcd_ca, &mut into.etcd_ca, given_after("etcd_ca"));
        take(self.etcd_cert, &mut into.etcd_cert, given_after("etcd_cert"));
        take(self.etcd_key, &mut into.etcd_key, given_after("etcd_key"));
        take(self.etcd_user, &mut into.etcd_user, given_after("etcd_user"));
        take(self.etcd_password_file, &mut into.etcd_password_file, given_after("etcd_password_file"));
        take(self.ssh_url, &mut into.ssh_url, given_after("ssh_url"));
        take(self.ssh_id, &mut into.ssh_id, given_after("ssh_id"));
        take(self.ssh_hostkey, &mut into.ssh_hostkey, given_after("ssh_hostkey"));
        into.ssh_accept_new |= self.ssh_accept_new;
    }
}

impl SecureArgs {
    /// The access to `seeds` these flags describe: files read, combinations checked.
    pub fn access(&self, seeds: &[String]) -> Result<EtcdAccess> {
        let https = seeds.iter().any(|s| s.starts_with("https://"));
        let tls = match &self.etcd_ca {
            Some(ca) => {
                if !https && !seeds.is_empty() {
                    bail!("--etcd-ca is given but no seed is https://; use https://HOST:PORT seeds for TLS");
                }
                let files =
                    TlsFiles { ca: ca.clone(), cert: self.etcd_cert.clone(), key: self.etcd_key.clone() };
                Some(Tls::load(files)?)
            }
            None if https => bail!("https:// seeds need --etcd-ca: the CA certificate that signed etcd's"),
            None if self.etcd_cert.is_some() || self.etcd_key.is_some() => {
                bail!("--etcd-cert and --etcd-key need --etcd-ca and https:// seeds")
            }
            None => None,
        };
        let user = self.credentials()?;
        let ssh = self.ssh_url.clone().map(|target| {
            Arc::new(ssh::Tunnel::new(ssh::Settings {
                target,
                identity: self.ssh_id.clone(),
                hostkey: self.ssh_hostkey.clone(),
                accept_new: self.ssh_accept_new,
            }))
        });
        if ssh.is_none() && (self.ssh_id.is_some() || self.ssh_hostkey.is_some() || self.ssh_accept_new) {
            bail!("--ssh-id, --ssh-hostkey and --ssh-accept-new need --ssh-url");
        }
        Ok(EtcdAccess { seeds: seeds.to_vec(), tls, user, ssh })
    }

    fn credentials(&self) -> Result<Option<Credentials>> {
        let from_env = std::env::var(PASSWORD_ENV).ok();
        let Some(name) = self.etcd_user.clone() else {
            if self.etcd_password_file.is_some() || from_env.is_some() {
                bail!("a password is given (--etcd-password-file or {PASSWORD_ENV}) but no --etcd-user");
            }
            return Ok(None);
        };
        let password = match (&self.etcd_password_file, from_env) {
            (Some(file), _) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read --etcd-password-file {}", file.display()))?;
                text.strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text)
                    .to_string()
            }
            (None, Some(p)) => p,
            (None, None) => bail!(
                "--etcd-user {name} needs a password: --etcd-password-file FILE or the {PASSWORD_ENV} environment variable"
            ),
        };
        Ok(Some(Credentials { name, password }))
    }
}
