//! `--ssh-url`: every etcd connection tunnelled through one SSH connection (direct-tcpip
//! channels to the seeds, resolved on the SSH server's side).
//!
//! A [`Tunnel`] holds one SSH session for the whole process, opened on first use and opened
//! again when it has dropped. Each etcd connection is a channel of it: [`client`] opens one
//! to the seed's host and port and runs gRPC (and TLS, for an `https://` seed) over it.
//! Callers retry with backoff, so every attempt here is tried once, bounded by a timeout.
//!
//! The server's host key is checked against `--ssh-hostkey`, or else against the user's
//! `~/.ssh/known_hosts` and `/etc/ssh/ssh_known_hosts` (plain, `[host]:port`, hashed and
//! wildcard entries, `@revoked` lines); an unknown key is trusted only with
//! `--ssh-accept-new`, which records it. The parsing and matching are pure functions.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, TlsOptions};
use russh::client::{self, Handle};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use tonic::transport::Endpoint;
use tracing::{debug, info};

pub mod control;
mod known_hosts;
mod quickack;
pub use known_hosts::{
    HostKey, Known, check_hostkey, check_known_hosts, host_matches, known_algorithms, known_hosts_line,
    parse_hostkey,
};

/// The SSH port when `--ssh-url` gives none.
pub const SSH_PORT: u16 = 22;
/// The user when `--ssh-url` gives none (agents run as root, as upstream's default).
pub const DEFAULT_USER: &str = "root";
/// etcd's client port, for a seed without one.
pub const ETCD_PORT: u16 = 2379;
/// The keys tried without `--ssh-id`, in `~/.ssh`, in this order (as OpenSSH tries them).
pub const DEFAULT_IDS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];
/// Opening the SSH session: TCP, key exchange, host key check and login. Below the etcd
/// probe's own bound, so that an SSH failure is reported as what it is.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(2500);
/// Opening one channel to a seed.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(2);
/// A silent SSH server is given up after this many unanswered keepalives at this interval.
const KEEPALIVE: Duration = Duration::from_secs(5);
const KEEPALIVE_MAX: usize = 3;
/// The gRPC settings of `world::etcd`'s direct connections, for connections over the tunnel.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const GRPC_KEEPALIVE: Duration = Duration::from_secs(2);

/// Where to log in: `[ssh://][user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: String,
    /// A name or an address; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
}

impl Target {
    /// How known_hosts names this server: `host`, or `[host]:port` for another port than 22.
    pub fn known_hosts_name(&self) -> String {
        if self.port == SSH_PORT { self.host.clone() } else { format!("[{}]:{}", self.host, self.port) }
    }

    fn address(&self) -> (String, u16) {
        (self.host.clone(), self.port)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
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
    /// `--ssh-control-persist`: share one login between commands, kept this long after its
    /// last use ([`control`]).
    pub control_persist: Option<std::time::Duration>,
}

/// Why the tunnel cannot carry a connection. Each is one line that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to the SSH server {target}: {reason} (is sshd running there? check --ssh-url)")]
    Connect { target: String, reason: String },
    #[error("no answer from the SSH server {target} within {after:?} (check --ssh-url and the network)")]
    Timeout { target: String, after: Duration },
    #[error("the SSH connection to {target} failed: {reason}")]
    Protocol { target: String, reason: String },
    #[error(
        "the SSH server {target} is unknown: its host key {fingerprint} is not in {files}; check that it is the server's key (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there) and pass it with --ssh-hostkey, or trust it on first use with --ssh-accept-new"
    )]
    UnknownHost { target: String, fingerprint: String, files: String },
    #[error(
        "the host key of the SSH server {target} has changed: it is {fingerprint}, but {file}:{line} has another (the connection may be intercepted); if the server's key was replaced on purpose, remove the old entry with `ssh-keygen -R '{name}'` and connect again"
    )]
    ChangedHost { target: String, fingerprint: String, file: String, line: usize, name: String },
    #[error(
        "the host key of the SSH server {target} ({fingerprint}) is revoked in {file}:{line}; refusing it"
    )]
    RevokedHost { target: String, fingerprint: String, file: String, line: usize },
    #[error(
        "the host key of the SSH server {target} is {fingerprint}, not the one --ssh-hostkey gives ({expected}); check which server answers before changing --ssh-hostkey"
    )]
    WrongHostKey { target: String, fingerprint: String, expected: String },
    #[error(
        "the SSH server {target} presents a host certificate; pass its plain host key with --ssh-hostkey"
    )]
    HostCertificate { target: String },
    #[error("cannot read {file}: {reason}")]
    KnownHostsRead { file: String, reason: String },
    #[error("cannot add the host key of the SSH server {target} to {file} (--ssh-accept-new): {reason}")]
    KnownHostsWrite { target: String, file: String, reason: String },
    #[error("no SSH key to log in with: none of {tried} exists; pass one with --ssh-id")]
    NoKey { tried: String },
    #[error("cannot use the SSH key {file}: {reason}; pass a usable private key with --ssh-id")]
    BadKey { file: String, reason: String },
    #[error(
        "the SSH server {target} refused the key {keys} for user {user}: add its public key to ~{user}/.ssh/authorized_keys there, or pass another key with --ssh-id"
    )]
    Refused { target: String, user: String, keys: String },
    #[error(
        "the SSH server {target} does not allow TCP forwarding, which the tunnel needs (AllowTcpForwarding in its sshd_config)"
    )]
    Forwarding { target: String },
    /// The server could not reach the seed: etcd is down or elsewhere.
    #[error("the SSH server {target} cannot connect to {address}: {reason}")]
    Channel { target: String, address: String, reason: String },
}

impl SshError {
    /// Whether the trouble is etcd behind the tunnel (not the tunnel itself).
    pub fn is_etcd_unreachable(&self) -> bool {
        matches!(self, SshError::Channel { .. })
    }

    /// The [`SshError`] in an error's chain (also inside an `io::Error`, which hides its
    /// inner error from `source()`).
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a SshError> {
        let mut next = Some(e);
        while let Some(err) = next {
            if let Some(s) = err.downcast_ref::<SshError>() {
                return Some(s);
            }
            if let Some(s) = err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<SshError>())
            {
                return Some(s);
            }
            next = err.source();
        }
        None
    }

    /// The [`SshError`] an etcd client error carries, if any.
    pub fn of_etcd(e: &etcd_client::Error) -> Option<&SshError> {
        match e {
            etcd_client::Error::IoError(io) => SshError::find(io),
            etcd_client::Error::TransportError(t) => SshError::find(t),
            etcd_client::Error::GRpcStatus(s) => SshError::find(s),
            _ => None,
        }
    }

    /// As an etcd client error (for the callers of [`client`]): an I/O error that carries it.
    fn into_etcd(self) -> etcd_client::Error {
        etcd_client::Error::IoError(std::io::Error::other(self))
    }
}

type Session = Handle<Checker>;

/// One SSH connection, opened on first use and again after it drops.
pub struct Tunnel {
    settings: Settings,
    state: tokio::sync::Mutex<State>,
    /// Attempts to connect finished so far: callers that waited for an attempt share its
    /// failure instead of each trying again (the seeds are probed at once, and a dead server
    /// would otherwise be tried once per seed, one after the other).
    attempts: AtomicU64,
    /// Whether this process started a control server already (`--ssh-control-persist`): one
    /// is enough, even while the SSH server is down and every attempt fails.
    control_started: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    session: Option<Arc<Session>>,
    /// How the last attempt failed.
    failure: Option<SshError>,
}

impl Tunnel {
    pub fn new(settings: Settings) -> Tunnel {
        Tunnel {
            settings,
            state: tokio::sync::Mutex::new(State::default()),
            attempts: AtomicU64::new(0),
            control_started: Default::default(),
        }
    }

    /// `user@host:port`, for messages.
    pub fn target(&self) -> String {
        self.settings.target.to_string()
    }

    /// Log in now, if not logged in.
    async fn warm_up(&self) -> Result<(), SshError> {
        self.session().await.map(|_| ())
    }

    /// A stream to `host:port`: through a shared login's control socket when
    /// `--ssh-control-persist` is given and one answers (else one is started for the next
    /// command, and this one logs in itself), or over this tunnel's own session.
    async fn stream(&self, host: &str, port: u16) -> Result<Box<dyn Conduit>, SshError> {
        if let Some(persist) = self.settings.control_persist {
            let path = control::socket_of(&self.settings);
            match control::connect(&path, host, port).await {
                Ok(s) => return Ok(Box::new(s)),
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    if !self.control_started.swap(true, Ordering::SeqCst) {
                        control::spawn_server(&control::server_flags(&self.settings, persist));
                    }
                }
                Err(e) => debug!("SSH control socket {}: {e}; logging in", path.display()),
            }
        }
        Ok(Box::new(self.channel(host, port).await?))
    }

    /// The open session, or a new one if there is none or it has dropped. One attempt.
    async fn session(&self) -> Result<Arc<Session>, SshError> {
        let seen = self.attempts.load(Ordering::SeqCst);
        let mut state = self.state.lock().await;
        if let Some(s) = state.session.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        if let Some(e) = state.failure.as_ref().filter(|_| self.attempts.load(Ordering::SeqCst) != seen) {
            return Err(e.clone());
        }
        if state.session.take().is_some() {
            info!("the SSH connection to {} dropped; connecting again", self.target());
        }
        let target = self.target();
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, self.open())
            .await
            .unwrap_or(Err(SshError::Timeout { target, after: CONNECT_TIMEOUT }));
        state.failure = opened.as_ref().err().cloned();
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let s = Arc::new(opened?);
        state.session = Some(s.clone());
        Ok(s)
    }

    /// Forget `dead` (if it is still the session), so that the next use connects again.
    async fn discard(&self, dead: &Arc<Session>) {
        let mut state = self.state.lock().await;
        if state.session.as_ref().is_some_and(|s| Arc::ptr_eq(s, dead)) {
            state.session = None;
        }
    }

    /// Connect, check the host key, log in.
    async fn open(&self) -> Result<Session, SshError> {
        let s = &self.settings;
        let target = self.target();
        // Keys are read before connecting: a missing key needs no server to report.
        let keys = load_keys(s.identity.as_deref())?;
        let checker = Checker::new(s)?;
        let mut config = client::Config {
            keepalive_interval: Some(KEEPALIVE),
            keepalive_max: KEEPALIVE_MAX,
            nodelay: true,
            ..client::Config::default()
        };
        config.preferred.key = prefer(&config.preferred.key, &checker.expected_algorithms()).into();
        let socket = tokio::net::TcpStream::connect(s.target.address())
            .await
            .map_err(|e| SshError::from(russh::Error::from(e)).at(&target))?;
        let _ = socket.set_nodelay(true);
        let mut session = client::connect_stream(Arc::new(config), quickack::QuickAck(socket), checker)
            .await
            .map_err(|e| e.at(&target))?;
        login(&mut session, &s.target, &keys).await?;
        debug!("SSH connection to {target} open");
        Ok(session)
    }

    /// A direct-tcpip channel to `host:port`, as the SSH server resolves them.
    async fn channel(&self, host: &str, port: u16) -> Result<russh::ChannelStream<client::Msg>, SshError> {
        let session = self.session().await?;
        let target = self.target();
        let address = join_host_port(host, port);
        let open = session.channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0);
        match tokio::time::timeout(CHANNEL_TIMEOUT, open).await {
            Ok(Ok(channel)) => Ok(channel.into_stream()),
            Ok(Err(russh::Error::ChannelOpenFailure(why))) => Err(channel_refused(target, address, why)),
            Ok(Err(e)) => {
                self.discard(&session).await;
                Err(SshError::Protocol { target, reason: words(&e) })
            }
            Err(_) => {
                // A session that cannot open a channel in time is as good as dropped.
                self.discard(&session).await;
                Err(SshError::Timeout { target, after: CHANNEL_TIMEOUT })
            }
        }
    }
}

fn channel_refused(target: String, address: String, why: russh::ChannelOpenFailure) -> SshError {
    use russh::ChannelOpenFailure as F;
    let reason = match why {
        F::AdministrativelyProhibited => return SshError::Forwarding { target },
        F::ConnectFailed => "connection failed".into(),
        F::ResourceShortage => "the SSH server is short of resources".into(),
        F::UnknownChannelType => "the SSH server does not support direct-tcpip channels".into(),
        F::Other { reason, .. } => reason,
    };
    SshError::Channel { target, address, reason }
}

/// A client of the etcd endpoint `seed`, reached through the tunnel. `options` carries the
/// user; `tls` is the TLS configuration for an `https://` seed (etcd's certificate is checked
/// against the seed's host name, as without the tunnel).
pub async fn client(
    tunnel: &Arc<Tunnel>,
    seed: &str,
    options: ConnectOptions,
    tls: Option<TlsOptions>,
) -> Result<Client, etcd_client::Error> {
    let (host, port) = seed_address(seed).map_err(etcd_client::Error::InvalidArgs)?;
    // The first channel is opened here, so that its failure is reported as it is; tonic
    // asks the connector again whenever it reconnects.
    let first = tunnel.stream(&host, port).await.map_err(SshError::into_etcd)?;
    let first = Arc::new(std::sync::Mutex::new(Some(first)));
    let tunnel = tunnel.clone();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let (tunnel, first, host) = (tunnel.clone(), first.clone(), host.clone());
        async move {
            let taken = first.lock().unwrap().take();
            let stream = match taken {
                Some(s) => s,
                None => tunnel.stream(&host, port).await?,
            };
            Ok::<_, SshError>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let mut endpoint = Endpoint::from_shared(seed.to_string())?
        .connect_timeout(CHANNEL_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .http2_keep_alive_interval(GRPC_KEEPALIVE)
        .keep_alive_timeout(GRPC_KEEPALIVE)
        .keep_alive_while_idle(true);
    if seed.starts_with("https://") {
        endpoint = endpoint.tls_config(tls.unwrap_or_default())?;
    }
    let channel = endpoint.connect_with_connector(connector).await?;
    Client::from_channel(etcd_client::Channel::Tonic(channel), Some(options)).await
}

/// A byte stream to etcd: an SSH channel, or a control socket's connection.
pub trait Conduit: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conduit for T {}

/// Checks the server's host key during the key exchange.
struct Checker {
    target: Target,
    policy: Policy,
}

enum Policy {
    /// `--ssh-hostkey`.
    Given(HostKey),
    /// known_hosts files: the user's (first, and where `--ssh-accept-new` writes), the system's.
    KnownHosts { user: Option<PathBuf>, files: Vec<PathBuf>, accept_new: bool },
}

impl Checker {
    fn new(s: &Settings) -> Result<Checker, SshError> {
        let policy = match &s.hostkey {
            Some(text) => Policy::Given(parse_hostkey(text).map_err(|e| SshError::Protocol {
                target: s.target.to_string(),
                reason: format!("--ssh-hostkey: {e}"),
            })?),
            None => {
                let user = home().map(|h| h.join(".ssh/known_hosts"));
                let mut files: Vec<PathBuf> = user.iter().cloned().collect();
                files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
                Policy::KnownHosts { user, files, accept_new: s.accept_new }
            }
        };
        Ok(Checker { target: s.target.clone(), policy })
    }

    /// The host key algorithms already trusted for this server, to ask for first (as
    /// OpenSSH does: a server with several keys then shows the one we can check).
    fn expected_algorithms(&self) -> Vec<Algorithm> {
        match &self.policy {
            Policy::Given(HostKey::Key(k)) => vec![k.algorithm()],
            Policy::Given(HostKey::Fingerprint(_)) => vec![],
            Policy::KnownHosts { files, .. } => {
                let name = self.target.known_hosts_name();
                files
                    .iter()
                    .filter_map(|f| std::fs::read_to_string(f).ok())
                    .flat_map(|text| known_algorithms(&text, &name))
                    .collect()
            }
        }
    }

    fn check(&self, key: &PublicKey) -> Result<(), SshError> {
        let target = self.target.to_string();
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match &self.policy {
            Policy::Given(expected) if expected.matches(key) => Ok(()),
            Policy::Given(expected) => {
                Err(SshError::WrongHostKey { target, fingerprint, expected: expected.describe() })
            }
            Policy::KnownHosts { user, files, accept_new } => {
                if self.look_up(files, key, &fingerprint)? {
                    return Ok(());
                }
                match user {
                    Some(file) if *accept_new => self.accept(file, key, &fingerprint),
                    _ => {
                        let files = files.iter().map(|f| shown(f)).collect::<Vec<_>>().join(" or ");
                        Err(SshError::UnknownHost { target, fingerprint, files })
                    }
                }
            }
        }
    }

    /// Whether the known_hosts `files` trust `key`; an error if one revokes it, or if one has
    /// another key of its type for the server and none trusts it.
    fn look_up(&self, files: &[PathBuf], key: &PublicKey, fingerprint: &str) -> Result<bool, SshError> {
        let (target, name) = (self.target.to_string(), self.target.known_hosts_name());
        let mut trusted = false;
        let mut changed = None;
        for file in files {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SshError::KnownHostsRead { file: shown(file), reason: e.to_string() }),
            };
            match check_known_hosts(&text, &name, key) {
                Known::Revoked { line } => {
                    let (fingerprint, file) = (fingerprint.to_string(), shown(file));
                    return Err(SshError::RevokedHost { target, fingerprint, file, line });
                }
                Known::Trusted => trusted = true,
                Known::Changed { line } => changed = changed.or(Some((shown(file), line))),
                Known::Unknown => {}
            }
        }
        match changed {
            Some((file, line)) if !trusted => {
                Err(SshError::ChangedHost { target, fingerprint: fingerprint.to_string(), file, line, name })
            }
            _ => Ok(trusted),
        }
    }

    /// `--ssh-accept-new`: remember `key` in the user's known_hosts `file`.
    fn accept(&self, file: &Path, key: &PublicKey, fingerprint: &str) -> Result<(), SshError> {
        let target = self.target.to_string();
        remember(file, &self.target.known_hosts_name(), key).map_err(|reason| SshError::KnownHostsWrite {
            target: target.clone(),
            file: shown(file),
            reason,
        })?;
        info!(
            "trusting the SSH server {target} on first use: added its host key {fingerprint} to {}",
            shown(file)
        );
        Ok(())
    }
}

impl client::Handler for Checker {
    type Error = SshError;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, SshError> {
        match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.check(key).map(|()| true),
            PublicKeyOrCertificate::Certificate(_) => {
                Err(SshError::HostCertificate { target: self.target.to_string() })
            }
        }
    }
}

/// Errors of russh itself (the handler's error type carries them): those of the TCP
/// connection and of the protocol. They do not know the target: [`SshError::at`] adds it.
impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> SshError {
        match e {
            russh::Error::IO(io) => SshError::Connect { target: String::new(), reason: io_words(&io) },
            e => SshError::Protocol { target: String::new(), reason: words(&e) },
        }
    }
}

impl SshError {
    /// The error with `target` filled in where russh could not say it.
    fn at(self, target: &str) -> SshError {
        match self {
            SshError::Connect { target: t, reason } if t.is_empty() => {
                SshError::Connect { target: target.into(), reason }
            }
            SshError::Protocol { target: t, reason } if t.is_empty() => {
                SshError::Protocol { target: target.into(), reason }
            }
            other => other,
        }
    }
}

/// russh's error in a few words (an I/O error by its kind).
fn words(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io_words(io),
        russh::Error::Disconnect | russh::Error::HUP => "the server closed the connection".into(),
        russh::Error::KeepaliveTimeout => "the server stopped answering".into(),
        other => other.to_string(),
    }
}

fn io_words(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::TimedOut => "connection timed out".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::UnexpectedEof | K::BrokenPipe => "the server closed the connection".into(),
        _ => io.to_string(),
    }
}

/// Log in as the target's user with the first of `keys` the server accepts.
async fn login(
    session: &mut Session,
    target: &Target,
    keys: &[(PathBuf, Arc<PrivateKey>)],
) -> Result<(), SshError> {
    let proto = |e: russh::Error| SshError::Protocol { target: target.to_string(), reason: words(&e) };
    let rsa_hash = if keys.iter().any(|(_, k)| is_rsa(&k.algorithm())) {
        session.best_supported_rsa_hash().await.map_err(proto)?.flatten()
    } else {
        None
    };
    for (file, key) in keys {
        let key = PrivateKeyWithHashAlg::new(key.clone(), rsa_hash);
        match session.authenticate_publickey(&target.user, key).await.map_err(proto)? {
            russh::client::AuthResult::Success => return Ok(()),
            russh::client::AuthResult::Failure { .. } => {
                debug!("the SSH server {target} refused the key {}", shown(file))
            }
        }
    }
    let keys = keys.iter().map(|(f, _)| shown(f)).collect::<Vec<_>>().join(", ");
    Err(SshError::Refused { target: target.to_string(), user: target.user.clone(), keys })
}

/// The private keys to offer: `--ssh-id`, or those of OpenSSH's defaults that exist.
fn load_keys(identity: Option<&Path>) -> Result<Vec<(PathBuf, Arc<PrivateKey>)>, SshError> {
    let files: Vec<PathBuf> = match identity {
        Some(f) => vec![expand_home(f)],
        None => {
            let dir = home().unwrap_or_default().join(".ssh");
            let candidates: Vec<PathBuf> = DEFAULT_IDS.iter().map(|n| dir.join(n)).collect();
            let present: Vec<PathBuf> = candidates.iter().filter(|f| f.exists()).cloned().collect();
            if present.is_empty() {
                let tried = candidates.iter().map(|f| shown(f)).collect::<Vec<_>>().join(", ");
                return Err(SshError::NoKey { tried });
            }
            present
        }
    };
    files
        .into_iter()
        .map(|f| match russh::keys::load_secret_key(&f, None) {
            Ok(k) => Ok((f, Arc::new(k))),
            Err(e) => Err(SshError::BadKey { file: shown(&f), reason: key_words(&e) }),
        })
        .collect()
}

fn key_words(e: &russh::keys::Error) -> String {
    match e {
        russh::keys::Error::KeyIsEncrypted => {
            "it has a passphrase, which mgmt cannot ask for (use a key without one, or remove it with `ssh-keygen -p`)"
                .into()
        }
        russh::keys::Error::IO(io) if io.kind() == std::io::ErrorKind::NotFound => "no such file".into(),
        russh::keys::Error::IO(io) => io.to_string(),
        other => format!("not an OpenSSH private key ({other})"),
    }
}

/// The user's home: `$HOME`, else the password database's.
fn home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.dir)
}

/// `~/x` as the home's `x` (a path from an environment variable is not expanded by a shell).
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), home()) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ => path.to_path_buf(),
    }
}

/// A path for messages: under the home as `~/...`.
fn shown(path: &Path) -> String {
    match home().and_then(|h| path.strip_prefix(h).ok().map(Path::to_path_buf)) {
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}

/// Append `name key` to the known_hosts `file` (creating `~/.ssh` 0700 if needed).
fn remember(file: &Path, name: &str, key: &PublicKey) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = file.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| e.to_string())?;
    }
    let line = known_hosts_line(name, key)?;
    let before = std::fs::read(file).unwrap_or_default();
    let sep = if before.is_empty() || before.ends_with(b"\n") { "" } else { "\n" };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(file)
        .map_err(|e| e.to_string())?;
    f.write_all(format!("{sep}{line}\n").as_bytes()).map_err(|e| e.to_string())
}

fn is_rsa(a: &Algorithm) -> bool {
    matches!(a, Algorithm::Rsa { .. })
}

/// `host:port`, with an IPv6 address in brackets.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Put the algorithms in `first` (and RSA's variants, for an RSA key) ahead of the others,
/// keeping both orders. Pure.
pub fn prefer(all: &[Algorithm], first: &[Algorithm]) -> Vec<Algorithm> {
    let wanted = |a: &Algorithm| first.iter().any(|f| f == a || (is_rsa(f) && is_rsa(a)));
    let (mut front, back): (Vec<Algorithm>, Vec<Algorithm>) = all.iter().cloned().partition(wanted);
    front.extend(back);
    front
}

/// The seed's host and port (`http://HOST:PORT`), as the SSH server is asked to connect to
/// them: an IPv6 address without brackets; etcd's port 2379 if the seed has none. Pure.
pub fn seed_address(seed: &str) -> Result<(String, u16), String> {
    let rest = seed.split_once("://").map_or(seed, |(_, r)| r);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let bad = || format!("invalid seed `{seed}`");
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
        (addr, if after.is_empty() { None } else { Some(after.strip_prefix(':').ok_or_else(bad)?) })
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        None => ETCD_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Parse `--ssh-url`: `[ssh://][user@]host[:port]`, user root and port 22 by default; an
/// IPv6 address in brackets (or bare, without a port). Pure.
pub fn parse_target(text: &str) -> Result<Target, String> {
    const FORM: &str = "expected [ssh://][user@]host[:port]";
    let text = text.trim();
    let rest = match text.split_once("://") {
        None => text,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("ssh") => rest,
        Some((scheme, _)) => return Err(format!("unsupported scheme `{scheme}`: {FORM}")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err(format!("a path, query or fragment is not supported: {FORM}"));
    }
    let (user, hostport) = rest.rsplit_once('@').unwrap_or((DEFAULT_USER, rest));
    if user.contains(':') {
        return Err("a password is not supported in --ssh-url: SSH logs in with a key (--ssh-id)".into());
    }
    if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid user `{user}`: {FORM}"));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| format!("unclosed `[`: {FORM}"))?;
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address `{addr}`"));
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| format!("unexpected `{after}`: {FORM}"))?),
        };
        (addr, port)
    } else if hostport.matches(':').count() > 1 {
        if hostport.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid host `{hostport}`: write an IPv6 address in brackets, [ADDR]:PORT"));
        }
        (hostport, None)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("no host: {FORM}"));
    }
    if !host.contains(':') && !crate::text::is_host_name(host) {
        return Err(format!("invalid host `{host}`"));
    }
    let port = match port {
        None => SSH_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0 && p.chars().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| format!("invalid port `{p}`: a port is a number from 1 to 65535"))?,
    };
    Ok(Target { user: user.to_string(), host: host.to_string(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: &str, host: &str, port: u16) -> Target {
        Target { user: user.into(), host: host.into(), port }
    }

    #[test]
    fn targets_take_user_host_and_port_with_upstream_defaults() {
        assert_eq!(parse_target("ssh://deploy@db1:2222"), Ok(target("deploy", "db1", 2222)));
        assert_eq!(parse_target("deploy@db1"), Ok(target("deploy", "db1", 22)));
        assert_eq!(parse_target("db1.example.com"), Ok(target("root", "db1.example.com", 22)));
        assert_eq!(parse_target("SSH://me@10.0.0.1:22/"), Ok(target("me", "10.0.0.1", 22)));
        assert_eq!(parse_target("me@[::1]:2200"), Ok(target("me", "::1", 2200)));
        assert_eq!(parse_target("ssh://[fe80::1]"), Ok(target("root", "fe80::1", 22)));
        assert_eq!(parse_target("me@2001:db8::7"), Ok(target("me", "2001:db8::7", 22)));
    }

    #[test]
    fn targets_refuse_what_would_be_ignored_or_ambiguous() {
        for bad in [
            "",
            "me@",
            "@host",
            "http://me@host",
            "me:secret@host",
            "me@host:0",
            "me@host:65536",
            "me@host:ssh",
            "me@host/path",
            "me@host?hostkey=x",
            "me@[::1",
            "me@[nothost]:22",
            "me@[::1]22",
            "me@2001:db8::7:zz",
            "me@bad..name",
        ] {
            assert!(parse_target(bad).is_err(), "{bad} was accepted");
        }
        assert!(parse_target("me:pw@host").unwrap_err().contains("--ssh-id"));
    }

    #[test]
    fn targets_are_shown_and_named_in_known_hosts_as_openssh_does() {
        assert_eq!(target("me", "db1", 22).known_hosts_name(), "db1");
        assert_eq!(target("me", "db1", 2222).known_hosts_name(), "[db1]:2222");
        assert_eq!(target("me", "::1", 2222).known_hosts_name(), "[::1]:2222");
        assert_eq!(target("me", "::1", 22).known_hosts_name(), "::1");
        assert_eq!(target("me", "::1", 22).to_string(), "me@[::1]:22");
        assert_eq!(target("me", "db1", 2222).to_string(), "me@db1:2222");
    }

    #[test]
    fn a_seed_without_a_port_means_etcds_port_not_ssh() {
        assert_eq!(seed_address("http://10.0.0.5"), Ok(("10.0.0.5".into(), 2379)));
        assert_eq!(seed_address("http://etcd1:2380"), Ok(("etcd1".into(), 2380)));
        assert_eq!(seed_address("https://[::1]:12379"), Ok(("::1".into(), 12379)));
        assert_eq!(seed_address("https://[::1]"), Ok(("::1".into(), 2379)));
        assert_eq!(seed_address("etcd1"), Ok(("etcd1".into(), 2379)));
        assert!(seed_address("http://host:0").is_err());
        assert!(seed_address("http://:2379").is_err());
        // Seeds come normalised with a port; both agree on it.
        let seed = crate::world::etcd::parse_seed("http://[::1]:2379/").unwrap();
        assert_eq!(seed_address(&seed), Ok(("::1".into(), 2379)));
    }

    #[test]
    fn known_types_are_asked_for_first() {
        let all = [Algorithm::Ed25519, Algorithm::Rsa { hash: Some(HashAlg::Sha512) }, Algorithm::Dsa];
        assert_eq!(prefer(&all, &[]), all.to_vec());
        assert_eq!(
            prefer(&all, &[Algorithm::Rsa { hash: None }]),
            vec![Algorithm::Rsa { hash: Some(HashAlg::Sha512) }, Algorithm::Ed25519, Algorithm::Dsa]
        );
    }
}
