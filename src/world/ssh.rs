//! `--ssh-url`: every etcd connection tunnelled through one SSH connection (direct-tcpip
//! channels to the seeds, resolved on the SSH server's side).

use std::path::PathBuf;

use etcd_client::{Client, ConnectOptions};

/// Where to log in: `[ssh://]user@host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: String,
    pub host: String,
    pub port: u16,
}

/// What `--ssh-*` say.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: Target,
    /// `--ssh-id`: the private key; else OpenSSH's defaults.
    pub identity: Option<PathBuf>,
    /// `--ssh-hostkey`: the server's expected host key; else `~/.ssh/known_hosts`.
    pub hostkey: Option<String>,
    /// `--ssh-accept-new`: trust an unknown host key on first use and remember it.
    pub accept_new: bool,
}

/// One SSH connection, opened on first use and again after it drops.
pub struct Tunnel {
    settings: Settings,
}

impl Tunnel {
    pub fn new(settings: Settings) -> Tunnel {
        Tunnel { settings }
    }

    /// `user@host:port`, for messages.
    pub fn target(&self) -> String {
        let t = &self.settings.target;
        format!("{}@{}:{}", t.user, t.host, t.port)
    }
}

/// A client of the etcd endpoint `seed`, reached through the tunnel.
pub async fn client(
    tunnel: &std::sync::Arc<Tunnel>,
    seed: &str,
    options: ConnectOptions,
) -> Result<Client, etcd_client::Error> {
    let _ = (tunnel, seed, options);
    Err(etcd_client::Error::InvalidArgs("SSH tunnels are not implemented yet".into()))
}

/// Parse `--ssh-url`: `[ssh://]user@host[:port]` (port 22 by default). Pure.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let rest = text.strip_prefix("ssh://").unwrap_or(text);
    let (user, hostport) = rest.split_once('@').ok_or("expected [ssh://]user@host[:port]")?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("invalid port `{p}`"))?),
        None => (hostport, 22),
    };
    if user.is_empty() || host.is_empty() {
        return Err("expected [ssh://]user@host[:port]".into());
    }
    Ok(Target { user: user.to_string(), host: host.to_string(), port })
}
