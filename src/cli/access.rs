//! The flags that secure the connection to etcd (TLS, an etcd user, an SSH tunnel), and the
//! [`EtcdAccess`] they make with the seeds.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::world::access::{Credentials, EtcdAccess, Tls, TlsFiles, password_of_file};
use crate::world::ssh;

pub use crate::world::access::PASSWORD_ENV;

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
    /// Share one SSH login between commands (as OpenSSH's ControlPersist): the first starts a
    /// background holder of the login, kept this many seconds after its last use, and later
    /// commands go through it instead of logging in again.
    #[arg(long, global = true, env = "MGMT_SSH_CONTROL_PERSIST", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400), help_heading = "Secure connection")]
    pub ssh_control_persist: Option<u64>,
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
    #[arg(long = "ssh-control-persist", id = "leading_ssh_control_persist", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400), hide = true)]
    pub ssh_control_persist: Option<u64>,
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
            && self.ssh_control_persist.is_none()
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
        take(self.ssh_control_persist, &mut into.ssh_control_persist, given_after("ssh_control_persist"));
        into.ssh_accept_new |= self.ssh_accept_new;
    }
}

/// Which of the flags are given: what [`check_flags`] looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    /// Some seed is `https://`.
    pub https: bool,
    /// Some seed is `http://`.
    pub http: bool,
    pub ca: bool,
    pub cert: bool,
    pub key: bool,
    pub user: bool,
    pub password_file: bool,
    /// [`PASSWORD_ENV`] is set.
    pub password_env: bool,
    pub ssh_url: bool,
    /// `--ssh-id`, `--ssh-hostkey` or `--ssh-accept-new`.
    pub ssh_details: bool,
}

/// Whether the flags go together, before any file is read. Pure; the error says what to
/// add or drop.
pub fn check_flags(g: Given) -> Result<(), String> {
    let err = |m: &str| Err(m.to_string());
    if g.ca && g.http && !g.https {
        return err("--etcd-ca is given but no seed is https://; use https://HOST:PORT seeds for TLS");
    }
    if !g.ca && g.https {
        return err("https:// seeds need --etcd-ca: the CA certificate that signed etcd's");
    }
    if !g.ca && (g.cert || g.key) {
        return err("--etcd-cert and --etcd-key need --etcd-ca and https:// seeds");
    }
    if g.cert && !g.key {
        return err("--etcd-cert is given without --etcd-key");
    }
    if g.key && !g.cert {
        return err("--etcd-key is given without --etcd-cert");
    }
    if !g.user && (g.password_file || g.password_env) {
        return Err(format!(
            "a password is given (--etcd-password-file or {PASSWORD_ENV}) but no --etcd-user"
        ));
    }
    if g.user && !g.password_file && !g.password_env {
        return Err(format!(
            "--etcd-user needs a password: --etcd-password-file FILE or the {PASSWORD_ENV} environment variable"
        ));
    }
    if !g.ssh_url && g.ssh_details {
        return err("--ssh-id, --ssh-hostkey, --ssh-accept-new and --ssh-control-persist need --ssh-url");
    }
    Ok(())
}

impl SecureArgs {
    /// Which flags are given, with `seeds` and the environment.
    fn given(&self, seeds: &[String]) -> Given {
        Given {
            https: seeds.iter().any(|s| s.starts_with("https://")),
            http: seeds.iter().any(|s| s.starts_with("http://")),
            ca: self.etcd_ca.is_some(),
            cert: self.etcd_cert.is_some(),
            key: self.etcd_key.is_some(),
            user: self.etcd_user.is_some(),
            password_file: self.etcd_password_file.is_some(),
            password_env: std::env::var_os(PASSWORD_ENV).is_some(),
            ssh_url: self.ssh_url.is_some(),
            ssh_details: self.ssh_id.is_some()
                || self.ssh_hostkey.is_some()
                || self.ssh_accept_new
                || self.ssh_control_persist.is_some(),
        }
    }

    /// The access to `seeds` these flags describe: combinations checked, files read.
    pub fn access(&self, seeds: &[String]) -> Result<EtcdAccess> {
        check_flags(self.given(seeds)).map_err(anyhow::Error::msg)?;
        let tls = match &self.etcd_ca {
            Some(ca) => {
                let files =
                    TlsFiles { ca: ca.clone(), cert: self.etcd_cert.clone(), key: self.etcd_key.clone() };
                Some(Tls::load(files)?)
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
                control_persist: self.ssh_control_persist.map(std::time::Duration::from_secs),
            }))
        });
        Ok(EtcdAccess { seeds: seeds.to_vec(), tls, user, ssh })
    }

    /// The user and its password (the file wins over the environment).
    fn credentials(&self) -> Result<Option<Credentials>> {
        let Some(name) = self.etcd_user.clone() else {
            return Ok(None);
        };
        let password = match &self.etcd_password_file {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read --etcd-password-file {}", file.display()))?;
                match password_of_file(&text) {
                    Ok(p) => p.to_string(),
                    Err(why) => bail!("--etcd-password-file {} {why}", file.display()),
                }
            }
            None => {
                std::env::var(PASSWORD_ENV).with_context(|| format!("{PASSWORD_ENV} is not valid UTF-8"))?
            }
        };
        Ok(Some(Credentials { name, password }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_that_do_not_go_together_are_named() {
        let tls = Given { https: true, ca: true, ..Given::default() };
        assert_eq!(check_flags(tls), Ok(()));
        assert_eq!(check_flags(Given { cert: true, key: true, ..tls }), Ok(()));
        let bad = [
            (Given { https: true, ..Given::default() }, "https:// seeds need --etcd-ca"),
            (Given { http: true, ca: true, ..Given::default() }, "no seed is https://"),
            (Given { http: true, cert: true, key: true, ..Given::default() }, "need --etcd-ca"),
            (Given { cert: true, ..tls }, "--etcd-cert is given without --etcd-key"),
            (Given { key: true, ..tls }, "--etcd-key is given without --etcd-cert"),
            (Given { password_env: true, ..tls }, "but no --etcd-user"),
            (Given { password_file: true, ..tls }, "but no --etcd-user"),
            (Given { user: true, ..tls }, "--etcd-user needs a password"),
            (Given { ssh_details: true, ..tls }, "need --ssh-url"),
        ];
        for (given, why) in bad {
            let e = check_flags(given).unwrap_err();
            assert!(e.contains(why), "{given:?}: {e}");
        }
        for ok in [
            Given { user: true, password_env: true, ..tls },
            Given { user: true, password_file: true, password_env: true, ..Given::default() },
            Given { http: true, https: true, ca: true, ..Given::default() },
            Given { ssh_url: true, ssh_details: true, ..Given::default() },
        ] {
            assert_eq!(check_flags(ok), Ok(()), "{ok:?}");
        }
    }
}

/// `mgmt ssh-control`'s arguments: the SSH flags of the command that started it.
#[derive(Args, Debug, Clone)]
pub struct SshControlArgs {
    #[command(flatten)]
    pub secure: SecureArgs,
}

/// `mgmt ssh-control`: hold the login `--ssh-url` names and carry connections for the
/// commands of this user until it has been unused for `--ssh-control-persist` seconds.
pub async fn ssh_control(args: SshControlArgs) -> Result<u8> {
    let (Some(_), Some(persist)) = (&args.secure.ssh_url, args.secure.ssh_control_persist) else {
        bail!("ssh-control needs --ssh-url and --ssh-control-persist");
    };
    let access = args.secure.access(&[])?;
    let tunnel = access.ssh.context("no SSH tunnel")?;
    ssh::control::serve(tunnel, std::time::Duration::from_secs(persist)).await?;
    Ok(0)
}
