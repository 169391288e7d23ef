//! The cluster world: etcd (v3 API). Key layout under the namespace (default `/_mgmt`),
//! documented in docs/etcd.md as a stable interface:
//!
//! - `hosts/<hostname>`: [`HostStatus`] as JSON, on this agent's lease (a dead agent's key
//!   disappears when the lease expires; a stopped agent revokes it).
//! - `exported/<hostname>/<kind>/<name>`: [`Exported`] as JSON. Not on a lease: an agent that
//!   restarts does not make every collector drop and re-add its resources.
//! - `kv/<key>`: [`KvValue`] as JSON, written by the `kv` resource.
//!
//! Background tasks keep etcd in line with what the agent wants (registration and status,
//! exports) and mirror what it reads (exports of every host, kv). Each recovers on its own
//! from an outage: it retries with jittered backoff ([`Backoff`]), and a mirror
//! ([`super::mirror`]) re-reads its prefix and watches again from the revision it read (which
//! also covers compaction). An outage is logged once, when it starts, and once when it ends.
//!
//! The agent talks to one endpoint of `--seeds` at a time: the first that answers. After a
//! failed request the endpoint is checked and, if it no longer answers, another is chosen,
//! so one dead member never fails requests while another answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use tokio::sync::{Notify, broadcast, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::access::EtcdAccess;
/// Re-exported: the cli retries with it too.
use super::backoff::Backoff;
use super::mirror::{self, Mirrored, Watched};
use super::{Exported, HostStatus, KvValue, World, WorldError};

/// How to reach the cluster and who we are in it.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub access: EtcdAccess,
    /// Key prefix, e.g. `/_mgmt` (no trailing `/`).
    pub namespace: String,
    pub hostname: String,
    pub lease_ttl: u64,
    /// Where the agent remembers its lease, so that after a crash it can take its own
    /// registration over instead of waiting for the lease to expire.
    pub lease_file: Option<PathBuf>,
}

/// Keys of the layout, in one place.
#[derive(Debug, Clone)]
pub struct Keys {
    ns: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Keys {
        let ns = namespace.trim_end_matches('/');
        Keys { ns: if ns.is_empty() { String::new() } else { ns.to_string() } }
    }
    pub fn hosts(&self) -> String {
        format!("{}/hosts/", self.ns)
    }
    pub fn host(&self, hostname: &str) -> String {
        format!("{}/hosts/{hostname}", self.ns)
    }
    pub fn exported(&self) -> String {
        format!("{}/exported/", self.ns)
    }
    pub fn exported_by(&self, hostname: &str) -> String {
        format!("{}/exported/{hostname}/", self.ns)
    }
    pub fn export(&self, e: &Exported) -> String {
        format!("{}/exported/{}/{}/{}", self.ns, e.host, e.kind, e.name)
    }
    pub fn kv_prefix(&self) -> String {
        format!("{}/kv/", self.ns)
    }
    pub fn kv(&self, key: &str) -> String {
        format!("{}/kv/{key}", self.ns)
    }
}

/// Check a hostname for use in keys.
pub fn validate_hostname(h: &str) -> Result<(), StartError> {
    if h.is_empty() || h.contains('/') || h.chars().any(char::is_whitespace) {
        return Err(StartError::Hostname(h.to_string()));
    }
    Ok(())
}

/// Why an agent could not join the cluster at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("hostname `{0}` cannot be used in a cluster: it must be non-empty, without `/` or spaces")]
    Hostname(String),
    #[error(transparent)]
    Duplicate(#[from] DuplicateHost),
    #[error("the cluster registration stopped")]
    Stopped,
}

/// Another agent holds this host's registration.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "another agent is already registered as `{host}` in this cluster ({key}); each agent needs its own --hostname"
)]
pub struct DuplicateHost {
    pub host: String,
    pub key: String,
}

/// Why a seed URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    #[error("empty URL (expected http://HOST:PORT)")]
    Empty,
    #[error("unsupported scheme `{0}`: use http://HOST:PORT, or https://HOST:PORT with --etcd-ca")]
    Scheme(String),
    #[error(
        "user names and passwords do not go in seed URLs (argv is visible to every user): use --etcd-user with --etcd-password-file or MGMT_ETCD_PASSWORD"
    )]
    Credentials,
    #[error(
        "a path, query or fragment is not supported in a seed URL (it would be ignored); use http://HOST:PORT"
    )]
    Path,
    #[error("no host: use http://HOST:PORT")]
    NoHost,
    #[error("invalid host `{0}`: use a name, an IPv4 address or an IPv6 address in brackets")]
    Host(String),
    #[error("empty port: use http://HOST:PORT, or http://HOST for etcd's client port 2379")]
    NoPort,
    #[error("invalid port `{0}`: a port is a number from 1 to 65535")]
    Port(String),
}

/// Check a seed (an etcd client URL) and give it in its normal form, `http://HOST:PORT`. A
/// URL without a scheme is taken as http. Everything the client would silently ignore or
/// change (credentials, a path, an out-of-range port) is refused. Pure, for `--seeds`.
pub fn parse_seed(text: &str) -> Result<String, SeedError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SeedError::Empty);
    }
    let (scheme, rest) = match text.split_once("://") {
        None => ("http", text),
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => ("http", rest),
            "https" => ("https", rest),
            _ => return Err(SeedError::Scheme(scheme.to_string())),
        },
    };
    // A lone trailing `/` is the empty path; anything more is a path the client would drop.
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(SeedError::Credentials);
    }
    if authority.contains(['/', '?', '#']) {
        return Err(SeedError::Path);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| SeedError::Host(authority.to_string()))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(SeedError::Host(format!("[{addr}]")));
        }
        let port = match after {
            "" => ETCD_PORT,
            _ => after.strip_prefix(':').ok_or_else(|| SeedError::Host(authority.to_string()))?,
        };
        (format!("[{addr}]"), port)
    } else {
        // No port means etcd's client port, whatever the transport (an SSH tunnel too).
        let (host, port) = authority.rsplit_once(':').unwrap_or((authority, ETCD_PORT));
        if host.contains(':') {
            return Err(SeedError::Host(host.to_string()));
        }
        (host.to_string(), port)
    };
    if host.is_empty() {
        return Err(SeedError::NoHost);
    }
    if !host.starts_with('[') && !crate::text::is_host_name(&host) {
        return Err(SeedError::Host(host));
    }
    if port.is_empty() {
        return Err(SeedError::NoPort);
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.chars().all(|c| c.is_ascii_digit()) => Ok(format!("{scheme}://{host}:{p}")),
        _ => Err(SeedError::Port(port.to_string())),
    }
}

/// etcd's client port, for a seed that names none.
const ETCD_PORT: &str = "2379";

/// etcd's longest lease TTL in seconds (`MaxLeaseTTL` in etcd's lease package).
pub const MAX_LEASE_TTL: u64 = 9_000_000_000;

/// How long one endpoint may take to answer the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
}

/// A client of one endpoint, if it answers a status request and has a leader (a member cut
/// off from the others answers, but cannot serve requests).
async fn probe(seed: &str, access: &EtcdAccess) -> Result<Client, EtcdError> {
    let ask = async {
        let options = access.connect_options(connect_options(), seed);
        let mut c = match &access.ssh {
            Some(tunnel) => {
                super::ssh::client(tunnel, seed, options, access.tls.as_ref().map(|t| t.options())).await?
            }
            None => Client::connect([seed], Some(options)).await?,
        };
        let status = c.status().await?;
        Ok::<_, etcd_client::Error>((c, status.leader()))
    };
    match tokio::time::timeout(PROBE_TIMEOUT, ask).await {
        Err(_) => Err(EtcdError::unreachable(seed, format!("no answer within {PROBE_TIMEOUT:?}"))),
        Ok(Err(e)) => {
            let error = EtcdError::new(seed, &e);
            // A closed connection right after connecting is etcd refusing this client's
            // certificate, or a plain etcd hanging up on TLS, depending on timing: ask.
            let closed = tls_fault(&error.detail).is_none() && closed_after_connecting(&error.detail);
            if closed
                && access.ssh.is_none()
                && seed.starts_with("https://")
                && answers_plain_etcd(seed).await
            {
                return Err(error.not_tls());
            }
            Err(error.with_access(access, true))
        }
        Ok(Ok((_, 0))) => Err(EtcdError::unreachable(seed, "this member has no leader")),
        Ok(Ok((c, _))) => Ok(c),
    }
}

/// A client of the endpoint in `seeds` that answers first (all are asked at once).
///
/// A client of several endpoints would spread requests over them, and those sent to a dead
/// one would fail; this one talks to a single live endpoint. Long-running users connect
/// again after an error, which chooses again.
pub async fn connect(access: &EtcdAccess) -> Result<Client, EtcdError> {
    let mut probes = tokio::task::JoinSet::new();
    for (i, seed) in access.seeds.iter().enumerate() {
        let (seed, access) = (seed.clone(), access.clone());
        probes.spawn(async move { (i, probe(&seed, &access).await) });
    }
    let mut errors: Vec<Option<EtcdError>> = vec![None; access.seeds.len()];
    while let Some(done) = probes.join_next().await {
        match done {
            Ok((_, Ok(c))) => return Ok(c),
            Ok((i, Err(e))) => errors[i] = Some(e),
            Err(e) => debug!("an etcd probe ended abnormally: {e}"),
        }
    }
    Err(EtcdError::of_all(errors.into_iter().flatten().collect()))
}

/// gRPC errors carry their whole source chain; the first part says it all.
fn first_part(e: &str) -> &str {
    e.split(", source:").next().unwrap_or(e)
}

/// What kind of trouble an etcd error is (from its text: the server's messages are stable,
/// and transport errors come in many types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// No answer, or a broken connection: an outage.
    Unreachable,
    /// The NOSPACE alarm: etcd answers but refuses writes until space is freed.
    NoSpace,
    /// etcd answers but refuses this client (authentication or permissions).
    Refused,
    /// TLS failed: etcd's certificate is not trusted, etcd refused this client's certificate,
    /// or the two ends do not speak TLS alike.
    Tls,
    /// The lease is gone: etcd expired it (paused longer than its TTL), or lost it (restarted
    /// without its data), or someone revoked it.
    LeaseLost,
    /// etcd answers but refuses one request as too large (`--max-request-bytes`, or the gRPC
    /// message limit): retrying the same request cannot help.
    TooLarge,
    /// etcd answers but rejects the request for another reason (its message says which).
    Rejected,
    /// The SSH tunnel of `--ssh-url` cannot carry the connection (its message says why).
    Tunnel,
}

pub fn classify(error: &str) -> Trouble {
    let e = error.to_ascii_lowercase();
    if e.contains("lease not found") {
        Trouble::LeaseLost
    } else if tls_fault(error).is_some() {
        Trouble::Tls
    } else if e.contains("database space exceeded") || e.contains("nospace") {
        Trouble::NoSpace
    } else if e.contains("request is too large")
        || e.contains("message larger than max")
        || e.contains("message length too large")
    {
        Trouble::TooLarge
    } else if [
        "user name is empty",
        "permission denied",
        "authentication failed",
        "invalid auth token",
        "invalid auth management",
        "unauthenticated",
        "user name not found",
    ]
    .iter()
    .any(|m| e.contains(m))
    {
        Trouble::Refused
    } else {
        Trouble::Unreachable
    }
}

/// What a TLS error text says went wrong (rustls' own words, as tonic passes them on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFault {
    /// etcd's certificate is not accepted; the reason in rustls' words (`UnknownIssuer`).
    ServerCert(String),
    /// etcd ended the handshake with an alert about this client's certificate (none given,
    /// expired, signed by a CA it does not trust).
    ClientCert,
    /// The other end does not answer TLS (an `https://` seed for a plain etcd).
    NotTls,
    /// Another TLS failure (no common protocol version or cipher suite).
    Other,
}

/// The alerts a TLS server sends when it refuses the client's certificate.
const CLIENT_CERT_ALERTS: [&str; 7] = [
    "badcertificate",
    "certificateexpired",
    "certificaterequired",
    "certificateunknown",
    "certificaterevoked",
    "unknownca",
    "unsupportedcertificate",
];

/// The TLS fault an error text describes, if it is one. Pure, from rustls' messages
/// (`invalid peer certificate: UnknownIssuer`, `received fatal alert: BadCertificate`,
/// `tls handshake eof`).
pub fn tls_fault(error: &str) -> Option<TlsFault> {
    let e = error.to_ascii_lowercase();
    if let Some(i) = e.find("invalid peer certificate: ") {
        let reason = &error[i + "invalid peer certificate: ".len()..];
        return Some(TlsFault::ServerCert(first_part(reason).trim_end_matches(['"', ')']).to_string()));
    }
    if let Some(i) = e.find("received fatal alert: ") {
        let alert = &e[i + "received fatal alert: ".len()..];
        return Some(if CLIENT_CERT_ALERTS.iter().any(|a| alert.starts_with(a)) {
            TlsFault::ClientCert
        } else {
            TlsFault::Other
        });
    }
    if e.contains("tls handshake eof") || e.contains("corrupt message") || e.contains("invalidcontenttype") {
        return Some(TlsFault::NotTls);
    }
    if e.contains("peer is incompatible") || e.contains("peer misbehaved") {
        return Some(TlsFault::Other);
    }
    None
}

/// Whether `detail` says the connection was closed under a request (not refused, not timed
/// out): right after a TLS handshake, that is etcd refusing the client's certificate (with
/// TLS 1.3 it checks it only after the client has finished its side).
fn closed_after_connecting(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    ["operation was canceled", "connection closed", "connection reset", "connection lost"]
        .iter()
        .any(|m| d.contains(m))
}

/// Whether the endpoint of `url` (`https://host:port`) answers a plain HTTP request for
/// etcd's version, as a plain etcd does (a TLS one answers it with an error). Asked only on
/// the way to an error message, where a closed connection says too little.
async fn answers_plain_etcd(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(addr) = url.strip_prefix("https://").map(|a| a.trim_end_matches('/')) else { return false };
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = "GET /version HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        stream.take(4096).read_to_end(&mut reply).await.ok()?;
        let reply = String::from_utf8_lossy(&reply);
        Some(reply.starts_with("HTTP/1.1 200") && reply.contains("etcdserver"))
    };
    tokio::time::timeout(Duration::from_secs(1), ask).await.ok().flatten().unwrap_or(false)
}

/// An etcd error as a user reads it: one line that says what happened, at which URL, and
/// what to do. Built by [`EtcdError::new`] from the client's error, for every command and
/// for the agent's log alike; never the client's debug text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.line())]
pub struct EtcdError {
    pub trouble: Trouble,
    /// The endpoint (or endpoints, comma-separated) asked.
    pub url: String,
    /// What went wrong, in a few words: `connection refused`, or etcd's own message.
    pub detail: String,
    /// The etcd user the client authenticated as (`--etcd-user`), for refusals.
    pub user: Option<String>,
    /// What the request was allowed to do, for a refused permission: `write /_mgmt/hosts/a`,
    /// `read under /_mgmt/exported/`.
    pub keys: Option<String>,
}

impl EtcdError {
    /// The error `e` of a request to `url`.
    pub fn new(url: &str, e: &etcd_client::Error) -> EtcdError {
        if let Some(s) = super::ssh::SshError::of_etcd(e) {
            let trouble = if s.is_etcd_unreachable() { Trouble::Unreachable } else { Trouble::Tunnel };
            return EtcdError {
                trouble,
                url: url.to_string(),
                detail: s.to_string(),
                user: None,
                keys: None,
            };
        }
        let detail = describe(e);
        let mut trouble = classify(&detail);
        if trouble == Trouble::Unreachable && answered(e) {
            trouble = Trouble::Rejected;
        }
        EtcdError { trouble, url: url.to_string(), detail, user: None, keys: None }
    }

    /// No answer from `url`, for the reason given.
    pub fn unreachable(url: &str, detail: impl Into<String>) -> EtcdError {
        EtcdError {
            trouble: Trouble::Unreachable,
            url: url.to_string(),
            detail: detail.into(),
            user: None,
            keys: None,
        }
    }

    /// This error told with what `access` tried: which user, which certificate, and which
    /// side of TLS failed. `fresh`: the connection was just opened, so one closed under the
    /// first request after a TLS handshake is etcd refusing this client's certificate.
    pub fn with_access(mut self, access: &EtcdAccess, fresh: bool) -> EtcdError {
        self.user = access.user_name();
        let https = !self.url.is_empty() && self.url.split(',').all(|u| u.starts_with("https://"));
        let fault = match tls_fault(&self.detail) {
            Some(f) => Some(f),
            None if fresh
                && https
                && self.trouble == Trouble::Unreachable
                && closed_after_connecting(&self.detail) =>
            {
                Some(TlsFault::ClientCert)
            }
            None => None,
        };
        let Some(fault) = fault else {
            // A listener that takes the connection and hangs up on the first request: etcd
            // answering plain HTTP/2 on a TLS port (how it hangs up varies with timing).
            if fresh
                && !https
                && self.trouble == Trouble::Unreachable
                && closed_after_connecting(&self.detail)
            {
                self.detail.push_str("; if etcd serves TLS there, use an https:// seed with --etcd-ca");
            }
            return self;
        };
        let raw = &self.detail;
        self.detail = match fault {
            TlsFault::ServerCert(reason) => server_cert_words(&reason, access, raw),
            TlsFault::ClientCert => client_cert_words(access, raw),
            TlsFault::NotTls => return self.not_tls(),
            TlsFault::Other => format!("the handshake failed ({raw})"),
        };
        self.trouble = Trouble::Tls;
        self
    }

    /// This error at an endpoint that does not answer TLS.
    fn not_tls(mut self) -> EtcdError {
        self.detail = format!("etcd does not answer TLS there ({}); is it an http:// endpoint?", self.detail);
        self.trouble = Trouble::Tls;
        self
    }

    /// This error of a request that was to do `keys` (`write /_mgmt/hosts/a`): a refused
    /// permission names them.
    pub fn on_keys(mut self, keys: impl Into<String>) -> EtcdError {
        self.keys = Some(keys.into());
        self
    }

    /// One error for several endpoints that all failed: an endpoint that answered and
    /// refused says more than those that did not answer; endpoints that failed alike are
    /// named together.
    pub fn of_all(mut errors: Vec<EtcdError>) -> EtcdError {
        if let Some(i) = errors.iter().position(|e| e.trouble != Trouble::Unreachable) {
            return errors.swap_remove(i);
        }
        if errors.is_empty() {
            return EtcdError::unreachable("(no endpoint)", "no etcd endpoint given");
        }
        let url = errors.iter().map(|e| e.url.as_str()).collect::<Vec<_>>().join(",");
        let detail = if errors.iter().all(|e| e.detail == errors[0].detail) {
            errors[0].detail.clone()
        } else {
            errors.iter().map(|e| format!("{}: {}", e.url, e.detail)).collect::<Vec<_>>().join("; ")
        };
        EtcdError { trouble: Trouble::Unreachable, url, detail, user: errors.swap_remove(0).user, keys: None }
    }

    fn line(&self) -> String {
        // Without a URL (a step that does not know it), the line reads as well without one.
        let url = if self.url.is_empty() { String::new() } else { format!(" at {}", self.url) };
        let d = &self.detail;
        let lower = d.to_ascii_lowercase();
        let to = self.keys.as_ref().map(|k| format!(" to {k}")).unwrap_or_default();
        match (self.trouble, &self.user) {
            (Trouble::Unreachable, _) => {
                format!("cannot reach etcd{url}: {d} (is etcd running? `mgmt etcd` starts one)")
            }
            (Trouble::Tls, _) => format!("TLS to etcd{url} failed: {d}"),
            (Trouble::Refused, Some(u)) if lower.contains("permission denied") => format!(
                "etcd{url} denied user {u} permission{to}: {d} (no role of {u} grants it; see \"TLS and users\" in docs/cluster.md)"
            ),
            (Trouble::Refused, None) if lower.contains("permission denied") => format!(
                "etcd{url} denied permission{to}: {d} (no role of this client's etcd user grants it; see \"TLS and users\" in docs/cluster.md)"
            ),
            (Trouble::Refused, Some(u)) if lower.contains("invalid auth token") => format!(
                "etcd{url} no longer accepts the token of user {u}: {d} (a new one is taken when connecting again)"
            ),
            (Trouble::Refused, Some(u)) => format!(
                "etcd{url} refused the credentials of user {u}: {d} (check the user and its password in --etcd-password-file or {})",
                crate::world::access::PASSWORD_ENV
            ),
            (Trouble::Refused, None) => format!(
                "etcd{url} requires authentication: {d} (give --etcd-user with --etcd-password-file or {}, or a client certificate whose common name is an etcd user)",
                crate::world::access::PASSWORD_ENV
            ),
            (Trouble::TooLarge, _) => format!(
                "etcd{url} refused a request as too large: {d} (mgmt keeps requests under 1.5 MiB, etcd's default; is etcd's --max-request-bytes lower?)"
            ),
            (Trouble::NoSpace, _) => format!(
                "etcd is out of space{url} (NOSPACE alarm: its --quota-backend-bytes is reached): {d} (free space with `etcdctl compact`, `etcdctl defrag` and `etcdctl alarm disarm`; see docs/etcd.md)"
            ),
            (Trouble::Rejected, _) => format!("etcd{url} rejected the request: {d}"),
            (Trouble::LeaseLost, _) => format!("etcd{url}: {d}"),
            (Trouble::Tunnel, _) => d.clone(),
        }
    }
}

/// Why etcd's certificate is not accepted, in words: `reason` is rustls' (`UnknownIssuer`).
fn server_cert_words(reason: &str, access: &EtcdAccess, raw: &str) -> String {
    let ca = access.tls.as_ref().map(|t| t.files.ca.display().to_string()).unwrap_or_default();
    let r = reason.to_ascii_lowercase();
    if r.contains("unknownissuer") || r.contains("badsignature") {
        format!(
            "etcd's certificate is not signed by the CA in --etcd-ca {ca} ({raw}); give the CA that signed etcd's --cert-file"
        )
    } else if r.contains("notvalidforname") || r.contains("not valid for name") {
        format!(
            "etcd's certificate does not name the seed's host ({raw}); use a host name or address it was issued for"
        )
    } else if r.contains("expired") {
        format!("etcd's certificate has expired ({raw}); etcd needs a new --cert-file")
    } else if r.contains("notvalidyet") || r.contains("not valid yet") || r.contains("not valid before") {
        format!("etcd's certificate is not valid yet ({raw}); is this host's clock right?")
    } else {
        format!("etcd's certificate is not accepted with --etcd-ca {ca} ({raw})")
    }
}

/// Why etcd refused this client's certificate: none given, expired (checked here: etcd's
/// alert does not always say), or not signed by a CA etcd trusts.
fn client_cert_words(access: &EtcdAccess, raw: &str) -> String {
    // An alert says more than a closed connection; the latter is left out.
    let why = if raw.to_ascii_lowercase().contains("alert") { format!(" ({raw})") } else { String::new() };
    let Some((tls, cert)) = access.tls.as_ref().and_then(|t| Some((t, t.files.cert.as_ref()?))) else {
        return format!(
            "etcd requires a client certificate{why}; give --etcd-cert and --etcd-key, signed by a CA in etcd's --trusted-ca-file"
        );
    };
    let cert = cert.display();
    match tls.client_cert_validity(std::time::SystemTime::now()) {
        crate::world::access::Validity::Expired => {
            format!("etcd refused the client certificate {cert}: it has expired{why}; renew it")
        }
        crate::world::access::Validity::NotYet => {
            format!(
                "etcd refused the client certificate {cert}: it is not valid yet{why}; is this host's clock right?"
            )
        }
        crate::world::access::Validity::Current => format!(
            "etcd refused the client certificate {cert}: it is not signed by a CA in etcd's --trusted-ca-file{why}; use a certificate from etcd's CA"
        ),
    }
}

/// What went wrong in a few words: the kind of an OS error anywhere in the error's sources
/// (`connection refused`), else etcd's own message (`user name is empty`), else the first
/// part of the client's text. Never a debug dump.
pub fn describe(e: &etcd_client::Error) -> String {
    use etcd_client::Error as E;
    let source: Option<&(dyn std::error::Error + 'static)> = match e {
        E::TransportError(t) => Some(t),
        E::GRpcStatus(s) => Some(s),
        E::IoError(io) => Some(io),
        _ => None,
    };
    let mut next = source;
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io_words(io);
        }
        next = err.source();
    }
    match e {
        E::GRpcStatus(s) if !s.message().is_empty() => {
            let m = s.message();
            crate::text::head(m.strip_prefix("etcdserver: ").unwrap_or(m), 512).into_owned()
        }
        _ => crate::text::head(first_part(&e.to_string()), 512).into_owned(),
    }
}

/// Whether etcd itself answered with an error: a gRPC status other than those of a request
/// that did not get through (cancelled 1, unknown 2, deadline exceeded 4, aborted 10,
/// unavailable 14).
pub fn answered(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if !matches!(i32::from(s.code()), 1 | 2 | 4 | 10 | 14))
}

/// An OS error in a few words.
fn io_words(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    // TLS errors come as I/O errors of other kinds; their own words say which.
    if io.get_ref().is_some() {
        let text = io.to_string();
        if tls_fault(&text).is_some() {
            return crate::text::head(&text, 512).into_owned();
        }
    }
    match io.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::TimedOut => "connection timed out".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::AddrNotAvailable => "address not available".into(),
        K::BrokenPipe | K::NotConnected | K::UnexpectedEof => "connection lost".into(),
        _ => crate::text::head(&io.to_string(), 512).into_owned(),
    }
}

/// Logs trouble with etcd once when it starts (or changes kind) and once when it ends,
/// however many tasks notice.
struct Health {
    state: std::sync::Mutex<Option<Trouble>>,
    seeds: String,
    /// What the errors are told with (the user, the certificates).
    access: EtcdAccess,
    /// The last error while etcd refuses this agent (TLS, credentials): what a request made
    /// meanwhile is told, rather than "not connected".
    refusal: std::sync::Mutex<Option<EtcdError>>,
}

impl Health {
    /// A request for `what` failed; `keys` is what it was to do (for a refused permission).
    fn failed(&self, what: &str, keys: Option<String>, e: &etcd_client::Error) {
        let mut e = EtcdError::new(&self.seeds, e).with_access(&self.access, false);
        e.keys = keys;
        self.failed_with(what, e);
    }
    fn failed_with(&self, what: &str, e: EtcdError) {
        let kind = e.trouble;
        *self.refusal.lock().unwrap() = matches!(kind, Trouble::Refused | Trouble::Tls).then(|| e.clone());
        let before = self.state.lock().unwrap().replace(kind);
        if before == Some(kind) {
            debug!("etcd trouble goes on ({what}: {e})");
            return;
        }
        warn!("{what}: {e}; still enforcing the running graph, retrying in the background");
    }
    fn ok(&self) {
        self.refusal.lock().unwrap().take();
        let before = self.state.lock().unwrap().take();
        let seeds = &self.seeds;
        match before {
            None => {}
            Some(Trouble::NoSpace) => info!("etcd at {seeds} accepts writes again"),
            Some(Trouble::Refused | Trouble::Tls | Trouble::TooLarge | Trouble::Rejected) => {
                info!("etcd at {seeds} accepts this agent's requests again")
            }
            Some(_) => info!("etcd at {seeds} reachable again"),
        }
    }
    fn is_down(&self) -> bool {
        self.state.lock().unwrap().is_some()
    }
}

/// The most operations put in one transaction: etcd refuses more than 128 by default.
pub const TXN_MAX_OPS: usize = 100;

/// The most key and value bytes put in one transaction: etcd refuses requests over 1.5 MiB
/// by default. One export may take up to [`crate::contract::limits::MAX_EXPORT_BYTES`]
/// (1 MiB), so two never share a transaction when they would not fit together.
pub const TXN_MAX_BYTES: usize = 1024 * 1024 + 64 * 1024;

/// What etcd's request encoding adds to each operation's key and value, rounded up.
const TXN_OP_OVERHEAD: usize = 64;
/// What publishing this host's exports changes: the keys to write (new or different) and
/// to delete (no longer exported), and what `exported/<hostname>/` holds afterwards.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExportDiff {
    pub puts: Vec<(String, Vec<u8>)>,
    pub deletes: Vec<String>,
    pub after: BTreeMap<String, Vec<u8>>,
}

/// Compare the wanted exports with what is stored under this host's prefix. Pure.
pub fn export_diff(keys: &Keys, desired: &[Exported], mut existing: BTreeMap<String, Vec<u8>>) -> ExportDiff {
    let mut diff = ExportDiff::default();
    for e in desired {
        let key = keys.export(e);
        let value = serde_json::to_vec(e).expect("exports serialize");
        if existing.remove(&key).as_deref() != Some(value.as_slice()) {
            diff.puts.push((key.clone(), value.clone()));
        }
        diff.after.insert(key, value);
    }
    diff.deletes = existing.into_keys().collect();
    diff
}

/// How to split operations of the given sizes (key plus value bytes), in order, into
/// transactions: the number of operations in each. A transaction holds at most
/// [`TXN_MAX_OPS`] operations and [`TXN_MAX_BYTES`] bytes; an operation bigger than that on
/// its own goes alone (etcd is the judge of it then).
pub fn txn_batches(sizes: &[usize]) -> Vec<usize> {
    let mut batches = Vec::new();
    let (mut count, mut bytes) = (0usize, 0usize);
    for size in sizes {
        let size = size.saturating_add(TXN_OP_OVERHEAD);
        if count > 0 && (count == TXN_MAX_OPS || bytes.saturating_add(size) > TXN_MAX_BYTES) {
            batches.push(count);
            (count, bytes) = (0, 0);
        }
        count += 1;
        bytes = bytes.saturating_add(size);
    }
    if count > 0 {
        batches.push(count);
    }
    batches
}

pub struct EtcdWorld {
    cfg: EtcdConfig,
    keys: Keys,
    /// A client of one live endpoint, once one answered; replaced when it stops answering.
    client: watch::Sender<Option<Client>>,
    /// Poked by a task whose request failed: check the endpoint, choose another if it is dead.
    endpoint_trouble: Notify,
    health: Arc<Health>,
    /// The exports wanted, with a generation number, and the last generation published.
    desired_exports: watch::Sender<(u64, Vec<Exported>)>,
    published_exports: watch::Sender<u64>,
    /// What `exported/<hostname>/` held after the last publication.
    published_keys: std::sync::Mutex<Option<BTreeMap<String, Vec<u8>>>>,
    collected: watch::Sender<Vec<Exported>>,
    status: watch::Sender<Option<HostStatus>>,
    kv_changes: broadcast::Sender<String>,
    lease: Arc<std::sync::Mutex<Option<i64>>>,
    cancel: CancellationToken,
    /// The registration task: a shutdown waits for it, so that no lease it is granting or
    /// keeping alive outlives the revocation.
    register: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error(transparent)]
    Duplicate(DuplicateHost),
    #[error(transparent)]
    Etcd(#[from] etcd_client::Error),
}

impl EtcdWorld {
    /// Start the background tasks and wait (up to `startup_wait`) for the registration: a
    /// duplicate hostname is an error; an unreachable cluster is a warning (the agent runs
    /// its graph and joins when etcd answers).
    pub async fn start(cfg: EtcdConfig, startup_wait: Duration) -> Result<Arc<EtcdWorld>, StartError> {
        validate_hostname(&cfg.hostname)?;
        let keys = Keys::new(&cfg.namespace);
        let health = Arc::new(Health {
            state: std::sync::Mutex::new(None),
            seeds: cfg.access.label(),
            access: cfg.access.clone(),
            refusal: std::sync::Mutex::new(None),
        });
        let world = Arc::new(EtcdWorld {
            keys,
            client: watch::channel(None).0,
            endpoint_trouble: Notify::new(),
            health,
            desired_exports: watch::channel((0, Vec::new())).0,
            published_exports: watch::channel(0).0,
            published_keys: std::sync::Mutex::new(None),
            collected: watch::channel(Vec::new()).0,
            status: watch::channel(None).0,
            kv_changes: broadcast::channel(1024).0,
            lease: Arc::default(),
            cancel: CancellationToken::new(),
            register: std::sync::Mutex::new(None),
            cfg,
        });

        tokio::spawn(world.clone().connect_task());

        let (first_tx, first_rx) = oneshot::channel();
        let exports_nudge = Arc::new(Notify::new());
        let register = tokio::spawn(world.clone().register_task(first_tx, exports_nudge.clone()));
        *world.register.lock().unwrap() = Some(register);
        tokio::spawn(world.clone().export_task(exports_nudge.clone()));
        let mut exported = world.clone().mirror(Watched::Prefix(world.keys.exported()));
        tokio::spawn(world.clone().collect_task(exported.clone(), exports_nudge));
        let kv = world.clone().mirror(Watched::Prefix(world.keys.kv_prefix()));
        tokio::spawn(world.clone().kv_task(kv));

        let deadline = tokio::time::Instant::now() + startup_wait;
        match tokio::time::timeout_at(deadline, first_rx).await {
            Ok(Ok(Err(e))) => {
                world.cancel.cancel();
                return Err(e);
            }
            Ok(Ok(Ok(()))) => {
                info!("joined the cluster at {} as `{}`", world.cfg.access.label(), world.cfg.hostname)
            }
            Ok(Err(_)) => return Err(StartError::Stopped),
            Err(_) => match world.health.refusal.lock().unwrap().clone() {
                Some(e) => warn!("{e}; running the graph and joining when etcd accepts this agent"),
                None => warn!(
                    "etcd at {} did not answer within {:?}; running the graph and joining when it does",
                    world.cfg.access.label(),
                    startup_wait
                ),
            },
        }
        // Start with what the cluster exports, not with nothing and then everything.
        let _ = tokio::time::timeout_at(deadline, exported.wait_for(|m| m.read)).await;
        Ok(world)
    }

    /// Publish what is pending (a run that ends on its own may have changed its exports a
    /// moment ago), stop the tasks and revoke the lease, so the host disappears from the
    /// cluster at once.
    pub async fn shutdown(&self) {
        let wanted = self.desired_exports.borrow().0;
        if !self.health.is_down() && self.client.borrow().is_some() {
            let mut published = self.published_exports.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(2), published.wait_for(|p| *p >= wanted)).await;
        }
        self.cancel.cancel();
        // Once the registration task has stopped, the lease read below is the last one it
        // took, and nothing sees the revocation as a lost lease to replace.
        let register = self.register.lock().unwrap().take();
        if let Some(task) = register {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let lease = *self.lease.lock().unwrap();
        let client = self.client.borrow().clone();
        if let (Some(id), Some(mut c)) = (lease, client) {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(id)).await;
            if let Some(f) = &self.cfg.lease_file {
                let _ = std::fs::remove_file(f);
            }
        }
    }

    /// Connect to the first endpoint that answers, hand the client to every task, and choose
    /// again when a task reports trouble and the endpoint no longer answers.
    async fn connect_task(self: Arc<Self>) {
        let mut backoff = Backoff::new();
        loop {
            match connect(&self.cfg.access).await {
                Ok(c) => {
                    backoff.reset();
                    self.client.send_replace(Some(c.clone()));
                    loop {
                        tokio::select! {
                            _ = self.endpoint_trouble.notified() => {}
                            _ = self.cancel.cancelled() => return,
                        }
                        let mut current = c.clone();
                        let alive = tokio::time::timeout(PROBE_TIMEOUT, current.status()).await;
                        if !matches!(alive, Ok(Ok(ref s)) if s.leader() != 0) {
                            debug!("the etcd endpoint in use does not answer; choosing again");
                            break;
                        }
                    }
                }
                Err(e) => self.health.failed_with("connecting", e),
            }
            backoff.wait(&self.cancel).await;
            if self.cancel.is_cancelled() {
                return;
            }
        }
    }

    /// A request failed: have the endpoint checked (and another chosen if it is dead).
    fn trouble(&self) {
        self.endpoint_trouble.notify_one();
    }

    async fn client(&self) -> Option<Client> {
        let mut rx = self.client.subscribe();
        tokio::select! {
            r = rx.wait_for(|c| c.is_some()) => r.ok().and_then(|c| c.clone()),
            _ = self.cancel.cancelled() => None,
        }
    }

    fn status_json(&self) -> String {
        let s = self.status.borrow().clone().unwrap_or_else(|| HostStatus {
            hostname: self.cfg.hostname.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            ..HostStatus::default()
        });
        serde_json::to_string(&s.bounded()).expect("status serializes")
    }

    fn current_lease(&self) -> Option<i64> {
        *self.lease.lock().unwrap()
    }

    fn remembered_lease(&self) -> Option<i64> {
        let f = self.cfg.lease_file.as_ref()?;
        let text = std::fs::read_to_string(f).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["namespace"] == self.cfg.namespace.as_str()).then(|| v["lease"].as_i64()).flatten()
    }

    fn remember_lease(&self, id: i64) {
        if let Some(f) = &self.cfg.lease_file {
            let v = serde_json::json!({"namespace": self.cfg.namespace, "lease": id});
            if let Err(e) = crate::os::write_atomic(f, v.to_string().as_bytes(), 0o600, None, None) {
                warn!("cannot remember the etcd lease in {}: {e}", f.display());
            }
        }
    }

    /// Claim `hosts/<hostname>` with a new lease. The key may exist only if it is ours: on our
    /// current lease (a short outage), or on the lease a crashed run of this agent left.
    async fn claim(&self, c: &mut Client, previous: Option<i64>) -> Result<i64, RegisterError> {
        let key = self.keys.host(&self.cfg.hostname);
        let lease = c.lease_grant(self.cfg.lease_ttl as i64, None).await?.id();
        let put = TxnOp::put(key.clone(), self.status_json(), Some(PutOptions::new().with_lease(lease)));
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([put.clone()]);
        if c.txn(txn).await?.succeeded() {
            return Ok(lease);
        }
        let mut owners: Vec<i64> = previous.into_iter().collect();
        owners.extend(self.remembered_lease());
        for old in owners {
            let txn =
                Txn::new().when([Compare::lease(key.clone(), CompareOp::Equal, old)]).and_then([put.clone()]);
            if c.txn(txn).await?.succeeded() {
                let _ = c.lease_revoke(old).await;
                return Ok(lease);
            }
        }
        let _ = c.lease_revoke(lease).await;
        Err(RegisterError::Duplicate(DuplicateHost { host: self.cfg.hostname.clone(), key }))
    }

    /// Register, keep the lease alive, publish status changes; re-register after outages.
    async fn register_task(
        self: Arc<Self>,
        first: oneshot::Sender<Result<(), StartError>>,
        exports_nudge: Arc<Notify>,
    ) {
        let mut first = Some(first);
        let mut backoff = Backoff::new();
        let mut lease: Option<i64> = None;
        let mut duplicate_logged = false;
        let key = self.keys.host(&self.cfg.hostname);
        let mut status_rx = self.status.subscribe();
        'outer: while !self.cancel.is_cancelled() {
            // The client of the moment: after an error, another endpoint may have been chosen.
            let Some(mut c) = self.client().await else { return };
            let id = match lease {
                Some(id) => id,
                None => match self.claim(&mut c, self.current_lease()).await {
                    Ok(id) => {
                        self.remember_lease(id);
                        *self.lease.lock().unwrap() = Some(id);
                        lease = Some(id);
                        duplicate_logged = false;
                        if let Some(f) = first.take() {
                            let _ = f.send(Ok(()));
                        }
                        id
                    }
                    Err(RegisterError::Duplicate(e)) => {
                        // At start-up this is fatal; later (or once start-up gave up waiting)
                        // the agent keeps running and keeps trying.
                        if let Some(f) = first.take()
                            && f.send(Err(e.clone().into())).is_ok()
                        {
                            return;
                        }
                        if !duplicate_logged {
                            error!("{e}; retrying");
                            duplicate_logged = true;
                        }
                        backoff.wait(&self.cancel).await;
                        continue;
                    }
                    Err(RegisterError::Etcd(e)) => {
                        self.health.failed(
                            "registering",
                            Some(format!("write {}", self.keys.host(&self.cfg.hostname))),
                            &e,
                        );
                        self.trouble();
                        backoff.wait(&self.cancel).await;
                        continue;
                    }
                },
            };
            // The lease is ours: keep it alive and keep the status current.
            let session = async {
                let (mut keeper, mut stream) = c.clone().lease_keep_alive(id).await?;
                keeper.keep_alive().await?;
                match stream.message().await? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Ok::<bool, etcd_client::Error>(false),
                }
                c.clone()
                    .put(key.clone(), self.status_json(), Some(PutOptions::new().with_lease(id)))
                    .await?;
                self.health.ok();
                backoff.reset();
                exports_nudge.notify_one();
                let mut tick = tokio::time::interval(Duration::from_secs(self.cfg.lease_ttl) / 3);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            keeper.keep_alive().await?;
                            match stream.message().await? {
                                Some(r) if r.ttl() > 0 => {}
                                _ => return Ok(false),
                            }
                        }
                        r = status_rx.changed() => {
                            if r.is_err() { return Ok(true); }
                            // Coalesce a burst of reports into one write.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            drop(status_rx.borrow_and_update());
                            c.clone().put(key.clone(), self.status_json(), Some(PutOptions::new().with_lease(id))).await?;
                        }
                        _ = self.cancel.cancelled() => return Ok(true),
                    }
                }
            };
            // A stop ends the session wherever it is waiting: what etcd answers after the
            // shutdown began (the revoked lease) is not trouble.
            let ended = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => Ok(true),
                r = session => r,
            };
            match ended {
                Ok(true) => break 'outer,
                // The lease expired (a long outage): register again.
                Ok(false) => {
                    info!("the etcd lease of `{}` expired; registering again", self.cfg.hostname);
                    lease = None;
                }
                // Gone for good, whatever the reason: a new lease, at once.
                Err(e) if classify(&e.to_string()) == Trouble::LeaseLost => {
                    info!(
                        "the etcd lease of `{}` was lost ({}): etcd was paused or down longer than --lease-ttl, restarted without its data, or the lease was revoked; registering again",
                        self.cfg.hostname,
                        first_part(&e.to_string())
                    );
                    lease = None;
                    // Never a tight loop, should etcd keep losing leases.
                    backoff.wait(&self.cancel).await;
                }
                Err(e) => {
                    self.health.failed("keeping the lease alive", None, &e);
                    self.trouble();
                    backoff.wait(&self.cancel).await;
                }
            }
        }
    }

    /// Make `exported/<hostname>/` hold exactly what this host exports. What it published
    /// last is remembered, so a change costs one transaction; after an error or a reconnect
    /// the keys are read again first.
    async fn export_task(self: Arc<Self>, nudge: Arc<Notify>) {
        let mut desired_rx = self.desired_exports.subscribe();
        let mut backoff = Backoff::new();
        let mut known: Option<BTreeMap<String, Vec<u8>>> = None;
        loop {
            let Some(mut c) = self.client().await else { return };
            let (generation, desired) = desired_rx.borrow_and_update().clone();
            match self.reconcile_exports(&mut c, &desired, known.take()).await {
                Ok(now) => {
                    *self.published_keys.lock().unwrap() = Some(now.clone());
                    known = Some(now);
                    backoff.reset();
                    self.published_exports.send_replace(generation);
                    tokio::select! {
                        _ = desired_rx.changed() => {}
                        _ = nudge.notified() => known = None,
                        _ = self.cancel.cancelled() => return,
                    }
                }
                Err(e) => {
                    let keys = format!("write under {}", self.keys.exported_by(&self.cfg.hostname));
                    self.health.failed("publishing exports", Some(keys), &e);
                    self.trouble();
                    backoff.wait(&self.cancel).await;
                    if self.cancel.is_cancelled() {
                        return;
                    }
                }
            }
        }
    }

    /// Returns what `exported/<hostname>/` holds afterwards.
    async fn reconcile_exports(
        &self,
        c: &mut Client,
        desired: &[Exported],
        known: Option<BTreeMap<String, Vec<u8>>>,
    ) -> Result<BTreeMap<String, Vec<u8>>, etcd_client::Error> {
        let existing = match known {
            Some(k) => k,
            None => {
                let prefix = self.keys.exported_by(&self.cfg.hostname);
                let have = c.get(prefix, Some(GetOptions::new().with_prefix())).await?;
                have.kvs()
                    .iter()
                    .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec()))
                    .collect()
            }
        };
        let diff = export_diff(&self.keys, desired, existing);
        let ops: Vec<(TxnOp, usize)> = (diff.puts.into_iter())
            .map(|(k, v)| {
                let size = k.len() + v.len();
                (TxnOp::put(k, v, None), size)
            })
            .chain(diff.deletes.into_iter().map(|k| {
                let size = k.len();
                (TxnOp::delete(k, None), size)
            }))
            .collect();
        let sizes: Vec<usize> = ops.iter().map(|(_, size)| *size).collect();
        let mut ops = ops.into_iter().map(|(op, _)| op);
        for n in txn_batches(&sizes) {
            c.txn(Txn::new().and_then(ops.by_ref().take(n).collect::<Vec<_>>())).await?;
        }
        Ok(diff.after)
    }

    /// Mirror `watched` until the world stops: what collects and `kv` read.
    fn mirror(self: Arc<Self>, watched: Watched) -> watch::Receiver<Mirrored> {
        let cancel = self.cancel.clone();
        mirror::spawn(self, watched, cancel)
    }

    /// Turn the mirror of `exported/` into the collected resources.
    /// Also notices this host's exports changed behind its back (deleted with etcdctl, say)
    /// and has them published again.
    async fn collect_task(self: Arc<Self>, mut rx: watch::Receiver<Mirrored>, nudge: Arc<Notify>) {
        let own = self.keys.exported_by(&self.cfg.hostname);
        loop {
            {
                let map = rx.borrow();
                let mine: BTreeMap<String, Vec<u8>> = map
                    .kvs
                    .range(own.clone()..)
                    .take_while(|(k, _)| k.starts_with(&own))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let published = self.published_keys.lock().unwrap();
                if published.as_ref().is_some_and(|p| *p != mine) {
                    nudge.notify_one();
                }
            }
            let list: Vec<Exported> = rx
                .borrow_and_update()
                .kvs
                .iter()
                .filter_map(|(k, v)| match serde_json::from_slice::<Exported>(v) {
                    // Its own exports are in its graph already; seeing them come back
                    // would only cost a useless re-assembly per change.
                    Ok(e) if e.host == self.cfg.hostname => None,
                    Ok(e) => Some(e),
                    Err(err) => {
                        warn!("ignoring {k}: not an exported resource ({err})");
                        None
                    }
                })
                .collect();
            self.collected.send_if_modified(|cur| {
                let changed = *cur != list;
                *cur = list;
                changed
            });
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    /// Turn the mirror of `kv/` into change notifications, key by key.
    async fn kv_task(self: Arc<Self>, mut rx: watch::Receiver<Mirrored>) {
        let prefix = self.keys.kv_prefix();
        let mut last: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        loop {
            let now = rx.borrow_and_update().kvs.clone();
            let changed = now
                .iter()
                .filter(|(k, v)| last.get(*k) != Some(v))
                .map(|(k, _)| k)
                .chain(last.keys().filter(|k| !now.contains_key(*k)));
            for k in changed {
                if let Some(key) = k.strip_prefix(&prefix) {
                    let _ = self.kv_changes.send(key.to_string());
                }
            }
            last = now;
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    fn unreachable(&self, e: impl Into<String>) -> WorldError {
        WorldError::Unreachable(EtcdError::unreachable(&self.cfg.access.label(), e).to_string())
    }

    /// A failed request: an outage is "unreachable"; a refusal (out of space, not allowed)
    /// says so.
    /// The error of a request that was to do `keys` (`write /_mgmt/kv/k`).
    fn request_failed(&self, e: etcd_client::Error, keys: String) -> WorldError {
        self.trouble();
        let e =
            EtcdError::new(&self.cfg.access.label(), &e).with_access(&self.cfg.access, false).on_keys(keys);
        match e.trouble {
            Trouble::Unreachable | Trouble::LeaseLost | Trouble::Tunnel => {
                WorldError::Unreachable(e.to_string())
            }
            _ => WorldError::Other(e.to_string()),
        }
    }

    fn current_client(&self) -> Result<Client, WorldError> {
        self.client.borrow().clone().ok_or_else(|| match self.health.refusal.lock().unwrap().clone() {
            Some(refused) => WorldError::Other(refused.to_string()),
            None => self.unreachable("not connected yet"),
        })
    }
}

/// The mirrors of `exported/` and `kv/` read with the agent's client and tell their trouble
/// like every other task: once when it starts, once when it ends.
#[async_trait]
impl mirror::Link for EtcdWorld {
    async fn client(&self) -> Option<Client> {
        EtcdWorld::client(self).await
    }
    fn failed(&self, what: &str, keys: String, e: &etcd_client::Error) {
        self.health.failed(what, Some(keys), e);
        self.trouble();
    }
    fn ok(&self) {
        self.health.ok();
    }
}

#[async_trait]
impl World for EtcdWorld {
    fn hostname(&self) -> &str {
        &self.cfg.hostname
    }

    async fn export(&self, resources: Vec<Exported>) -> Result<(), WorldError> {
        self.desired_exports.send_if_modified(|(generation, cur)| {
            let changed = *cur != resources;
            if changed {
                *generation += 1;
                *cur = resources;
            }
            changed
        });
        Ok(())
    }

    fn collected(&self) -> watch::Receiver<Vec<Exported>> {
        self.collected.subscribe()
    }

    fn report(&self, status: HostStatus) {
        self.status.send_if_modified(|cur| {
            // `updated` alone is no news.
            let same =
                cur.as_ref().is_some_and(|c| HostStatus { updated: status.updated, ..c.clone() } == status);
            if !same {
                *cur = Some(status);
            }
            !same
        });
    }

    async fn kv_get(&self, key: &str) -> Result<Option<KvValue>, WorldError> {
        let mut c = self.current_client()?;
        let k = self.keys.kv(key);
        let resp = c.get(k.clone(), None).await.map_err(|e| self.request_failed(e, format!("read {k}")))?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some(serde_json::from_slice(kv.value()).unwrap_or(KvValue {
                // Written by something else than mgmt: compare as raw text.
                value: String::from_utf8_lossy(kv.value()).into_owned(),
                host: String::new(),
            }))),
        }
    }

    async fn kv_put(&self, key: &str, value: &str) -> Result<(), WorldError> {
        let mut c = self.current_client()?;
        let v = KvValue { value: value.to_string(), host: self.cfg.hostname.clone() };
        let json = serde_json::to_string(&v).map_err(|e| WorldError::Other(e.to_string()))?;
        let k = self.keys.kv(key);
        c.put(k.clone(), json, None).await.map_err(|e| self.request_failed(e, format!("write {k}")))?;
        Ok(())
    }

    async fn kv_delete(&self, key: &str) -> Result<(), WorldError> {
        let mut c = self.current_client()?;
        let k = self.keys.kv(key);
        c.delete(k.clone(), None).await.map_err(|e| self.request_failed(e, format!("delete {k}")))?;
        Ok(())
    }

    fn kv_changes(&self) -> broadcast::Receiver<String> {
        self.kv_changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(name: &str, content: &str) -> Exported {
        Exported {
            host: "h1".into(),
            kind: "file".into(),
            name: name.into(),
            params: serde_json::json!({"name": name, "content": content}),
            to: None,
        }
    }

    #[test]
    fn publishing_exports_writes_what_changed_and_deletes_what_is_gone() {
        let keys = Keys::new("/_mgmt");
        let (a, b, c) = (exported("/a", "1"), exported("/b", "2"), exported("/c", "3"));
        let stored = export_diff(&keys, &[a.clone(), b.clone()], BTreeMap::new()).after;
        assert_eq!(stored.len(), 2);

        let same = export_diff(&keys, &[a.clone(), b.clone()], stored.clone());
        assert_eq!((same.puts.len(), same.deletes.len()), (0, 0));
        assert_eq!(same.after, stored);

        let b2 = exported("/b", "changed");
        let diff = export_diff(&keys, &[b2.clone(), c.clone()], stored);
        let puts: Vec<&str> = diff.puts.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(puts, [keys.export(&b2), keys.export(&c)]);
        assert_eq!(diff.deletes, [keys.export(&a)]);
        assert_eq!(diff.after.keys().cloned().collect::<Vec<_>>(), [keys.export(&b2), keys.export(&c)]);
        let written: Exported = serde_json::from_slice(&diff.puts[0].1).unwrap();
        assert_eq!(written, b2);
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let k = Keys::new("/_mgmt/");
        assert_eq!(k.host("h1"), "/_mgmt/hosts/h1");
        let e = Exported {
            host: "h1".into(),
            kind: "file".into(),
            name: "/a/b".into(),
            params: Default::default(),
            to: None,
        };
        assert_eq!(k.export(&e), "/_mgmt/exported/h1/file//a/b");
        assert_eq!(k.exported_by("h1"), "/_mgmt/exported/h1/");
        assert_eq!(k.kv("x"), "/_mgmt/kv/x");
    }

    #[test]
    fn seeds_are_given_in_their_normal_form() {
        for (given, normal) in [
            ("http://127.0.0.1:2379", "http://127.0.0.1:2379"),
            ("HTTP://etcd-1.example.com:2379/", "http://etcd-1.example.com:2379"),
            ("127.0.0.1:2379", "http://127.0.0.1:2379"),
            (" http://h:1 ", "http://h:1"),
            ("http://[::1]:2379", "http://[::1]:2379"),
            ("http://etcd_1:2379", "http://etcd_1:2379"),
            ("http://h:65535", "http://h:65535"),
            ("HTTPS://etcd-1:2379/", "https://etcd-1:2379"),
            ("http://h", "http://h:2379"),
            ("https://etcd-1/", "https://etcd-1:2379"),
            ("http://[::1]", "http://[::1]:2379"),
        ] {
            assert_eq!(parse_seed(given).as_deref(), Ok(normal), "{given}");
        }
    }

    #[test]
    fn seeds_the_client_would_misread_are_refused() {
        use SeedError::*;
        for (given, why) in [
            ("", Empty),
            ("unix:///run/etcd.sock", Scheme("unix".into())),
            ("http://user:pw@h:2379", Credentials),
            ("http://h:2379/v3", Path),
            ("http://h:2379?x=1", Path),
            ("http://:2379", NoHost),
            ("http://h:", NoPort),
            ("http://h:99999", Port("99999".into())),
            ("http://h:0", Port("0".into())),
            ("http://h:+80", Port("+80".into())),
            ("http://h:80x", Port("80x".into())),
            ("http://::1:2379", Host("::1".into())),
            ("http://[::g]:2379", Host("[::g]".into())),
            ("http://a b:1", Host("a b".into())),
            ("http://a..b:1", Host("a..b".into())),
            ("http://h:2379#top", Path),
            ("http://h:2379/?x", Path),
            ("http://user@h:2379", Credentials),
            ("user:pw@h:2379", Credentials),
            ("htp://nonsense", Scheme("htp".into())),
            ("ftp://h:21", Scheme("ftp".into())),
            ("http://h:-1", Port("-1".into())),
            ("http://h:65536", Port("65536".into())),
            ("http://h:port", Port("port".into())),
        ] {
            assert_eq!(parse_seed(given), Err(why), "{given}");
        }
        assert!(SeedError::Credentials.to_string().contains("--etcd-user"));
    }

    #[test]
    fn etcd_errors_read_as_one_line_with_the_url_and_a_hint() {
        let refused =
            etcd_client::Error::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = EtcdError::new("http://127.0.0.1:2379", &refused);
        assert_eq!(e.trouble, Trouble::Unreachable);
        assert_eq!(
            e.to_string(),
            "cannot reach etcd at http://127.0.0.1:2379: connection refused (is etcd running? `mgmt etcd` starts one)"
        );
        let auth = etcd_client::Error::Internal("etcdserver: user name is empty".into());
        let e = EtcdError::new("http://h:1", &auth).to_string();
        assert!(e.starts_with("etcd at http://h:1 requires authentication: "), "{e}");
        assert!(e.contains("user name is empty") && e.contains("--etcd-user"), "{e}");
        let denied = etcd_client::Error::Internal("etcdserver: permission denied".into());
        assert!(
            EtcdError::new("http://h:1", &denied)
                .to_string()
                .starts_with("etcd at http://h:1 denied permission")
        );
        let big = etcd_client::Error::Internal("etcdserver: request is too large".into());
        let e = EtcdError::new("http://h:1", &big).to_string();
        assert!(
            e.starts_with("etcd at http://h:1 refused a request as too large")
                && e.contains("--max-request-bytes"),
            "{e}"
        );
        let full = etcd_client::Error::Internal("etcdserver: mvcc: database space exceeded".into());
        let e = EtcdError::new("http://h:1", &full).to_string();
        assert!(e.contains("out of space") && e.contains("alarm disarm"), "{e}");
        for e in [
            EtcdError::new("http://h:1", &refused),
            EtcdError::new("http://h:1", &auth),
            EtcdError::unreachable("", "no answer within 5s"),
        ] {
            let line = e.to_string();
            assert!(!line.contains('\n') && !line.contains("Os {") && !line.contains("tonic"), "{line}");
        }
        assert_eq!(
            EtcdError::unreachable("", "no answer within 5s").to_string(),
            "cannot reach etcd: no answer within 5s (is etcd running? `mgmt etcd` starts one)"
        );
    }

    #[test]
    fn several_endpoints_failing_give_one_error() {
        let down = |u: &str, d: &str| EtcdError::unreachable(u, d);
        let same = EtcdError::of_all(vec![
            down("http://a:1", "connection refused"),
            down("http://b:1", "connection refused"),
        ]);
        assert_eq!(same.url, "http://a:1,http://b:1");
        assert_eq!(same.detail, "connection refused");
        let mixed = EtcdError::of_all(vec![
            down("http://a:1", "connection refused"),
            down("http://b:1", "no answer"),
        ]);
        assert_eq!(mixed.detail, "http://a:1: connection refused; http://b:1: no answer");
        // One that answered and refused says more than those that did not answer.
        let auth = EtcdError::new(
            "http://b:1",
            &etcd_client::Error::Internal("etcdserver: user name is empty".into()),
        );
        let e = EtcdError::of_all(vec![down("http://a:1", "connection refused"), auth.clone()]);
        assert_eq!(e, auth);
    }

    #[test]
    fn tls_errors_say_which_side_failed() {
        assert_eq!(
            tls_fault("invalid peer certificate: UnknownIssuer"),
            Some(TlsFault::ServerCert("UnknownIssuer".into()))
        );
        for alert in ["BadCertificate", "CertificateExpired", "CertificateRequired", "UnknownCA"] {
            assert_eq!(tls_fault(&format!("received fatal alert: {alert}")), Some(TlsFault::ClientCert));
        }
        assert_eq!(tls_fault("received fatal alert: ProtocolVersion"), Some(TlsFault::Other));
        assert_eq!(tls_fault("tls handshake eof"), Some(TlsFault::NotTls));
        for other in ["connection refused", "operation was canceled", "etcdserver: permission denied"] {
            assert_eq!(tls_fault(other), None, "{other}");
        }
        assert_eq!(classify("invalid peer certificate: UnknownIssuer"), Trouble::Tls);
        assert_eq!(classify("received fatal alert: BadCertificate"), Trouble::Tls);
    }

    /// The access of these tests: TLS with a CA and, if given, a client certificate.
    fn tls_access(client: Option<&str>) -> EtcdAccess {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["agent".to_string()]).unwrap();
        if client == Some("expired") {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.self_signed(&key).unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let files = crate::world::access::TlsFiles {
            ca: write("ca.crt", cert.pem()),
            cert: client.map(|_| write("agent.crt", cert.pem())),
            key: client.map(|_| write("agent.key", key.serialize_pem())),
        };
        let tls = crate::world::access::Tls::load(files).unwrap();
        EtcdAccess { seeds: vec!["https://h:1".into()], tls: Some(tls), ..EtcdAccess::default() }
    }

    #[test]
    fn a_refused_client_certificate_is_told_as_missing_expired_or_unknown() {
        let refused = |access: &EtcdAccess, detail: &str, fresh: bool| {
            let e = EtcdError::unreachable("https://h:1", detail).with_access(access, fresh);
            (e.trouble, e.to_string())
        };
        let (t, line) = refused(&tls_access(None), "received fatal alert: BadCertificate", false);
        assert_eq!(t, Trouble::Tls);
        assert!(
            line.starts_with("TLS to etcd at https://h:1 failed: etcd requires a client certificate"),
            "{line}"
        );
        let (_, line) = refused(&tls_access(Some("expired")), "received fatal alert: BadCertificate", false);
        assert!(line.contains("refused the client certificate") && line.contains("it has expired"), "{line}");
        let (_, line) = refused(&tls_access(Some("current")), "received fatal alert: BadCertificate", false);
        assert!(line.contains("it is not signed by a CA in etcd's --trusted-ca-file"), "{line}");
        // A connection closed under the first request after the handshake is a refusal too.
        let (t, line) = refused(&tls_access(Some("expired")), "operation was canceled", true);
        assert_eq!(t, Trouble::Tls);
        assert!(line.contains("it has expired; renew it"), "{line}");
        // Not on a connection that was in use: that is an outage.
        let (t, _) = refused(&tls_access(Some("expired")), "operation was canceled", false);
        assert_eq!(t, Trouble::Unreachable);
        let (t, line) = refused(&tls_access(None), "invalid peer certificate: UnknownIssuer", true);
        assert_eq!(t, Trouble::Tls);
        assert!(line.contains("etcd's certificate is not signed by the CA in --etcd-ca "), "{line}");
        let name = "invalid peer certificate: certificate not valid for name \"db\"; certificate is only valid for DnsName(\"localhost\")";
        let (_, line) = refused(&tls_access(None), name, true);
        assert!(line.contains("etcd's certificate does not name the seed's host"), "{line}");
        let (_, line) = refused(&tls_access(None), "invalid peer certificate: Expired", true);
        assert!(line.contains("etcd's certificate has expired"), "{line}");
        let (t, line) = refused(&tls_access(None), "tls handshake eof", true);
        assert_eq!(t, Trouble::Tls);
        assert!(line.contains("does not answer TLS"), "{line}");
        let (_, line) = refused(&tls_access(None), "received fatal alert: BadCertificate", true);
        assert!(!line.contains('\n') && !line.contains("tonic") && !line.contains("Custom {"), "{line}");
    }

    #[test]
    fn refusals_name_the_user() {
        let access = EtcdAccess {
            user: Some(crate::world::access::Credentials { name: "bob".into(), password: "x".into() }),
            ..EtcdAccess::plain(vec!["http://h:1".into()])
        };
        let auth = etcd_client::Error::Internal(
            "etcdserver: authentication failed, invalid user ID or password".into(),
        );
        let e = EtcdError::new("http://h:1", &auth).with_access(&access, true);
        assert_eq!(e.trouble, Trouble::Refused);
        let line = e.to_string();
        assert!(line.starts_with("etcd at http://h:1 refused the credentials of user bob: "), "{line}");
        assert!(line.contains("authentication failed, invalid user ID or password"), "{line}");
        let denied = etcd_client::Error::Internal("etcdserver: permission denied".into());
        let e = EtcdError::new("http://h:1", &denied).with_access(&access, false).to_string();
        assert!(
            e.starts_with("etcd at http://h:1 denied user bob permission: ") && e.contains("no role of bob"),
            "{e}"
        );
    }

    #[test]
    fn etcd_errors_are_told_apart() {
        assert_eq!(
            classify(
                "grpc request error: status: ResourceExhausted, message: \"etcdserver: mvcc: database space exceeded\""
            ),
            Trouble::NoSpace
        );
        assert_eq!(
            classify(
                "grpc request error: status: InvalidArgument, message: \"etcdserver: user name is empty\""
            ),
            Trouble::Refused
        );
        assert_eq!(classify("etcdserver: permission denied"), Trouble::Refused);
        assert_eq!(classify("lease keep alive error: lease not found"), Trouble::LeaseLost);
        assert_eq!(
            classify(
                "grpc request error: status: NotFound, message: \"etcdserver: requested lease not found\""
            ),
            Trouble::LeaseLost
        );
        assert_eq!(
            classify(
                "grpc request error: status: InvalidArgument, message: \"etcdserver: request is too large\""
            ),
            Trouble::TooLarge
        );
        assert_eq!(
            classify(
                "grpc request error: status: ResourceExhausted, message: \"grpc: received message larger than max (2097167 vs. 2097152)\""
            ),
            Trouble::TooLarge
        );
        assert_eq!(classify("transport error"), Trouble::Unreachable);
        assert_eq!(
            classify("grpc request error: status: Unavailable, message: \"error trying to connect\""),
            Trouble::Unreachable
        );
    }

    #[test]
    fn transactions_stay_under_etcds_request_and_operation_limits() {
        assert!(txn_batches(&[]).is_empty());
        // Four 700 KB exports: never two in one request.
        assert_eq!(txn_batches(&[700_000; 4]), vec![1, 1, 1, 1]);
        // Small ones share a transaction up to the operation limit.
        assert_eq!(txn_batches(&[10; 250]), vec![100, 100, 50]);
        // Small ones go along with a big one while they fit.
        assert_eq!(txn_batches(&[10, 10, 1_048_576, 10]), vec![4]);
        assert_eq!(txn_batches(&[600_000, 600_000, 10]), vec![1, 2]);
        // Too big on its own: alone, never an empty transaction.
        assert_eq!(txn_batches(&[5_000_000, 5_000_000]), vec![1, 1]);
        for sizes in [vec![400_000; 9], vec![1_000_000, 100, 500_000, 600_000, 3], vec![usize::MAX; 3]] {
            let batches = txn_batches(&sizes);
            assert_eq!(batches.iter().sum::<usize>(), sizes.len());
            let mut rest = sizes.as_slice();
            for n in batches {
                let (this, next) = rest.split_at(n);
                let bytes: usize =
                    this.iter().map(|s| s.saturating_add(TXN_OP_OVERHEAD)).fold(0, usize::saturating_add);
                assert!(n == 1 || (n <= TXN_MAX_OPS && bytes <= TXN_MAX_BYTES), "{sizes:?}");
                rest = next;
            }
        }
    }

    #[test]
    fn hostnames_must_fit_in_a_key() {
        assert!(validate_hostname("h1").is_ok());
        assert!(validate_hostname("").is_err());
        assert!(validate_hostname("a/b").is_err());
        assert!(validate_hostname("a b").is_err());
        assert_eq!(
            validate_hostname("a/b").unwrap_err().to_string(),
            "hostname `a/b` cannot be used in a cluster: it must be non-empty, without `/` or spaces"
        );
        let twice = StartError::from(DuplicateHost { host: "h1".into(), key: "/_mgmt/hosts/h1".into() });
        assert_eq!(
            twice.to_string(),
            "another agent is already registered as `h1` in this cluster (/_mgmt/hosts/h1); each agent needs its own --hostname"
        );
    }
}
