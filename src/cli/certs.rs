//! `mgmt certs DIR`: a private CA and the certificates of a locked-down cluster.
//!
//! One directory holds everything: the CA (`ca.crt`, `ca.key`), etcd's server certificate
//! (`server.crt`), and one client certificate per etcd user (`NAME.crt`, `NAME.key`): `root`
//! (etcd's administrator), `deployer` (`mgmt deploy`) and each host given with `--client`.
//! etcd started with `--client-cert-auth` takes a client certificate's common name as the
//! user, so a host's certificate is its identity: `scripts/etcd-roles` (written next to the
//! certificates as `etcd-roles`) gives each user its role.
//!
//! What to issue, the certificates' parameters and the text printed are pure functions
//! ([`check_client_name`], [`server_names`], [`decide`], [`issue`], [`next_steps`]); [`run`]
//! reads what the directory holds and writes, each file atomically and never over an
//! existing one unless `--force` says so.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};

/// How long the CA is valid: renewing it means a new certificate for every host.
pub const CA_DAYS: u32 = 3650;
/// How long server and client certificates are valid unless `--days` says otherwise.
pub const DEFAULT_DAYS: u32 = 730;
/// The longest `--days`: no certificate outlives the CA by much.
pub const MAX_DAYS: u32 = CA_DAYS;
/// etcd's administrator: the only user that can change users and roles.
pub const ROOT: &str = "root";
/// The user `mgmt deploy` runs as.
pub const DEPLOYER: &str = "deployer";
/// The server certificate's common name. It has a space, which no client name may have, so
/// the server's key can never pass for a user (etcd takes any client certificate's CN as one).
pub const SERVER_CN: &str = "mgmt etcd server";
/// File stems that are not client names.
const RESERVED: &[&str] = &["ca", "server", "etcd-roles"];
/// The roles script, written into the directory so that it is there wherever mgmt is.
pub const ROLES_SCRIPT: &str = include_str!("../../scripts/etcd-roles");
/// The script's file name in the directory.
pub const ROLES_FILE: &str = "etcd-roles";
/// The longest client name: a certificate's common name is at most 64 characters.
const NAME_MAX: usize = 64;
/// Certificates may be used this long before they were issued: clocks differ.
const CLOCK_SKEW: time::Duration = time::Duration::hours(1);

#[derive(Args, Debug, Clone)]
pub struct CertsArgs {
    /// Directory for the CA, the keys and the certificates (created 0700). A CA already in it
    /// is reused, so hosts can be added later; nothing in it is replaced without --force.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Issue a client certificate for this host (repeatable): its common name is the host's
    /// name, which is the agent's --hostname and its etcd user.
    #[arg(long = "client", value_name = "HOST", value_parser = client_arg)]
    pub clients: Vec<String>,
    /// A DNS name or IP address agents reach etcd at (repeatable), added to the server
    /// certificate's names: localhost, 127.0.0.1, ::1 and this machine's hostname.
    #[arg(long = "server-name", value_name = "NAME|IP", value_parser = server_name_arg)]
    pub server_names: Vec<String>,
    /// Days the server and client certificates are valid (the CA: 3650).
    #[arg(long, value_name = "DAYS", default_value_t = DEFAULT_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=MAX_DAYS as i64))]
    pub days: u32,
    /// Issue the server, root, deployer and --client certificates again, with new keys, even
    /// where they exist. The CA is never replaced.
    #[arg(long)]
    pub force: bool,
}

/// Why a request cannot be carried out. The directory is left as it was, except for the
/// files listed as written before the error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertsError {
    #[error(
        "--client `{0}`: a client name is 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`"
    )]
    ClientName(String),
    #[error("--client `{0}`: that name is taken by the {0}.* files of the directory")]
    Reserved(String),
    #[error("--server-name `{0}`: not an IP address or a DNS name (letters, digits, `-`, `.`, `*.` first)")]
    ServerName(String),
    #[error("{have} exists without {missing}: restore it, or give --force to issue both again")]
    HalfPair { have: String, missing: String },
    #[error(
        "{0} exists without ca.key: the CA cannot sign; restore ca.key, or use another directory for a new CA"
    )]
    CaWithoutKey(String),
    #[error("{0} exists without ca.crt: restore ca.crt, or use another directory for a new CA")]
    CaKeyWithoutCert(String),
    #[error("server.crt does not name {0}; give --force to issue it again with every --server-name")]
    ServerNamesMissing(String),
}

/// One certificate to issue: its file stem in the directory and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub stem: String,
    pub kind: LeafKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafKind {
    /// etcd's server certificate, with these names (DNS names and IP addresses).
    Server(Vec<String>),
    /// A client certificate whose common name (etcd's user) is the stem.
    Client,
}

impl Leaf {
    pub fn crt(&self) -> String {
        format!("{}.crt", self.stem)
    }
    pub fn key(&self) -> String {
        format!("{}.key", self.stem)
    }
    /// What the certificate is for, as printed.
    pub fn purpose(&self) -> String {
        match (&self.kind, self.stem.as_str()) {
            (LeafKind::Server(names), _) => format!("etcd's server certificate: {}", names.join(", ")),
            (LeafKind::Client, ROOT) => "etcd user root: administration (etcd-roles, compaction)".into(),
            (LeafKind::Client, DEPLOYER) => "etcd user deployer: mgmt deploy".into(),
            (LeafKind::Client, host) => format!("etcd user {host}: the agent on {host}"),
        }
    }
}

/// A client name: what etcd, the agent's `--hostname` and a file name all accept.
pub fn check_client_name(name: &str) -> Result<(), CertsError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > NAME_MAX || name.starts_with(['.', '-']) || !name.chars().all(ok_char)
    {
        return Err(CertsError::ClientName(name.to_string()));
    }
    if RESERVED.contains(&name) {
        return Err(CertsError::Reserved(name.to_string()));
    }
    Ok(())
}

/// `--client`'s parser: a bad name is a usage error, in the words of [`check_client_name`].
fn client_arg(name: &str) -> Result<String, String> {
    check_client_name(name).map(|()| name.to_string()).map_err(|e| without_flag(&e))
}

/// `--server-name`'s parser.
fn server_name_arg(name: &str) -> Result<String, String> {
    check_server_name(name).map(|()| name.to_string()).map_err(|e| without_flag(&e))
}

/// An error's message without its leading "--flag `value`: ", which clap says itself.
fn without_flag(e: &CertsError) -> String {
    let m = e.to_string();
    m.split_once("`: ").map(|(_, rest)| rest.to_string()).unwrap_or(m)
}

/// A server name: an IP address, or a DNS name (a leading `*.` allowed).
fn check_server_name(name: &str) -> Result<(), CertsError> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let labels = name.strip_prefix("*.").unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.len() > 253 || !labels.split('.').all(label_ok) {
        return Err(CertsError::ServerName(name.to_string()));
    }
    Ok(())
}

/// The server certificate's names: the loopback ones, this machine's hostname (when it is a
/// usable DNS name) and every `--server-name`, each once, in that order.
pub fn server_names(hostname: &str, given: &[String]) -> Result<Vec<String>, CertsError> {
    for n in given {
        check_server_name(n)?;
    }
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if check_server_name(hostname).is_ok() {
        names.push(hostname.to_string());
    }
    names.extend(given.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(canonical_name(n)));
    Ok(names)
}

/// A name as certificates compare it: IP addresses by value, DNS names without case.
fn canonical_name(n: &str) -> String {
    n.parse::<IpAddr>().map(|ip| ip.to_string()).unwrap_or_else(|_| n.to_ascii_lowercase())
}

/// Every certificate a run issues, in order: the server's, root's, the deployer's and each
/// `--client` once.
pub fn leaves(hostname: &str, args: &CertsArgs) -> Result<Vec<Leaf>, CertsError> {
    let mut out = vec![Leaf {
        stem: "server".into(),
        kind: LeafKind::Server(server_names(hostname, &args.server_names)?),
    }];
    for name in [ROOT, DEPLOYER].into_iter().chain(args.clients.iter().map(String::as_str)) {
        check_client_name(name)?;
        if !out.iter().any(|l| l.stem == name) {
            out.push(Leaf { stem: name.to_string(), kind: LeafKind::Client });
        }
    }
    Ok(out)
}

/// What to do with one certificate and key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Keep,
    Replace,
}

/// What to do with a pair, given which of its files exist: never write over one without
/// `force`, and never keep half a pair.
pub fn decide(leaf: &Leaf, crt_exists: bool, key_exists: bool, force: bool) -> Result<Action, CertsError> {
    match (crt_exists, key_exists, force) {
        (false, false, _) => Ok(Action::Create),
        (_, _, true) => Ok(Action::Replace),
        (true, true, false) => Ok(Action::Keep),
        (true, false, false) => Err(CertsError::HalfPair { have: leaf.crt(), missing: leaf.key() }),
        (false, true, false) => Err(CertsError::HalfPair { have: leaf.key(), missing: leaf.crt() }),
    }
}

/// The names asked for (`--server-name`) that an existing server certificate lacks, joined
/// for a message; `None` if it has them all.
pub fn missing_names(have: &[String], wanted: &[String]) -> Option<String> {
    let have: std::collections::HashSet<String> = have.iter().map(|n| canonical_name(n)).collect();
    let missing: Vec<&str> =
        wanted.iter().filter(|w| !have.contains(&canonical_name(w))).map(String::as_str).collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, now: time::OffsetDateTime, days: u32) {
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// A new CA, valid [`CA_DAYS`] from `now`. Its name says where and when it was made, so that
/// one CA is told from another in error messages.
pub fn new_ca(
    hostname: &str,
    now: time::OffsetDateTime,
) -> Result<(Issued, Issuer<'static, KeyPair>), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "mgmt");
    let place = if hostname.is_empty() { String::new() } else { format!(" {hostname}") };
    dn.push(DnType::CommonName, format!("mgmt CA{place} {}", now.date()));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, now, CA_DAYS);
    let cert = params.self_signed(&key)?;
    let issued = Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
    Ok((issued, Issuer::new(params, key)))
}

/// A certificate for `leaf`, signed by `ca`, valid `days` from `now`, with a new key.
pub fn issue(
    leaf: &Leaf,
    ca: &Issuer<'_, KeyPair>,
    now: time::OffsetDateTime,
    days: u32,
) -> Result<Issued, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "mgmt");
    match &leaf.kind {
        LeafKind::Server(names) => {
            dn.push(DnType::CommonName, SERVER_CN);
            params.subject_alt_names = names
                .iter()
                .map(|n| match n.parse::<IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
                })
                .collect::<Result<_, rcgen::Error>>()?;
            // Client auth too: etcd's gateway and its peers present the server certificate
            // as a client certificate.
            params.extended_key_usages =
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        }
        LeafKind::Client => {
            dn.push(DnType::CommonName, leaf.stem.clone());
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, days);
    let cert = params.signed_by(&key, ca)?;
    Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// What a certificate file says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: String,
    /// DNS names and IP addresses.
    pub names: Vec<String>,
    pub is_ca: bool,
    /// Unix seconds.
    pub not_after: i64,
    /// The DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
}

/// Reads a PEM certificate.
pub fn cert_info(pem: &str) -> Option<CertInfo> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let common_name =
        cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or("").to_string();
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => ip_of(b).map(|ip| ip.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CertInfo {
        common_name,
        names,
        is_ca: cert.is_ca(),
        not_after: cert.validity().not_after.timestamp(),
        public_key: cert.public_key().raw.to_vec(),
    })
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// A kept certificate's expiry, as printed: an expired one says so.
pub fn expiry(not_after: i64, now: i64) -> String {
    if not_after <= now {
        format!("EXPIRED on {}", date(not_after))
    } else {
        format!("valid until {}", date(not_after))
    }
}

/// A date as printed: `YYYY-MM-DD`.
fn date(unix: i64) -> String {
    let full = super::deploy::utc(unix.max(0) as u64);
    full.split(' ').next().unwrap_or(&full).to_string()
}

/// The commands that use the directory, printed after it is written. `dir` is absolute;
/// `server` is the name agents reach etcd at; `hosts` the `--client` names of this run.
pub fn next_steps(dir: &Path, server: &str, hosts: &[String]) -> String {
    let d = dir.display();
    let q = |s: &str| shlex::try_quote(s).map(|c| c.into_owned()).unwrap_or_else(|_| s.to_string());
    let dq = q(&d.to_string());
    let ca = q(&format!("{d}/ca.crt"));
    let hosts: Vec<&String> = hosts.iter().filter(|h| ![ROOT, DEPLOYER].contains(&h.as_str())).collect();
    let host_flags: String = hosts.iter().map(|h| format!(" --host {}", q(h))).collect();
    let host = hosts.first().map(|h| h.as_str()).unwrap_or("HOST");
    let (hc, hk) = (q(&format!("{d}/{host}.crt")), q(&format!("{d}/{host}.key")));
    let (dc, dk) = (q(&format!("{d}/{DEPLOYER}.crt")), q(&format!("{d}/{DEPLOYER}.key")));
    let seeds = format!("https://{}:2379", bracket(server));
    let roles_hint = if hosts.is_empty() { " (add --host NAME for each agent's host)" } else { "" };
    format!(
        "Start etcd on this machine with TLS and client certificates:\n  \
         mgmt etcd --tls-dir {dq}\n\
         Create etcd's users and roles and turn authentication on{roles_hint} (run it again after adding hosts):\n  \
         {dq}/{ROLES_FILE} --tls-dir {dq}{host_flags}\n\
         Copy ca.crt, {host}.crt and {host}.key to {host} (same paths), and run its agent there:\n  \
         mgmt run --hostname {} --seeds {seeds} --etcd-ca {ca} --etcd-cert {hc} --etcd-key {hk} empty\n\
         Deploy:\n  \
         mgmt deploy --seeds {seeds} --etcd-ca {ca} --etcd-cert {dc} --etcd-key {dk} yaml graph.yaml\n",
        q(host)
    )
}

/// A host for a URL: an IPv6 address in brackets.
fn bracket(host: &str) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() { format!("[{host}]") } else { host.to_string() }
}

/// The name agents are told to reach etcd at: the first `--server-name` that is not a
/// loopback name, else this machine's hostname, else 127.0.0.1.
pub fn server_for_agents(hostname: &str, given: &[String]) -> String {
    let loopback = |n: &str| n == "localhost" || n.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    given
        .iter()
        .find(|n| !loopback(n) && !n.starts_with("*."))
        .cloned()
        .or_else(|| check_server_name(hostname).ok().map(|()| hostname.to_string()))
        .unwrap_or_else(|| "127.0.0.1".into())
}

// ---- I/O ----

/// Write `content` to `dir/name` with `mode`, atomically (a temporary file renamed into
/// place); over an existing file only if `replace`.
fn write_file(dir: &Path, name: &str, content: &[u8], mode: u32, replace: bool) -> Result<()> {
    let path = dir.join(name);
    // Created 0600 by tempfile, so a key is never readable by others, not even for a moment.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(content)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    if replace {
        tmp.persist(&path).map(|_| ()).map_err(|e| e.error)
    } else {
        tmp.persist_noclobber(&path).map(|_| ()).map_err(|e| e.error)
    }
    .with_context(|| format!("writing {}", path.display()))
}

/// The key first: a certificate is never there without its key.
fn write_pair(dir: &Path, leaf_stem: &str, issued: &Issued, replace: bool) -> Result<()> {
    write_file(dir, &format!("{leaf_stem}.key"), issued.key_pem.as_bytes(), 0o600, replace)?;
    write_file(dir, &format!("{leaf_stem}.crt"), issued.cert_pem.as_bytes(), 0o644, replace)
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The directory's CA, or a new one: the signer and a line saying which.
fn open_ca(
    dir: &Path,
    hostname: &str,
    now: time::OffsetDateTime,
) -> Result<(Issuer<'static, KeyPair>, &'static str, String)> {
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    match (crt.exists(), key.exists()) {
        (false, false) => {
            let (issued, issuer) = new_ca(hostname, now).context("generating the CA")?;
            write_file(dir, "ca.key", issued.key_pem.as_bytes(), 0o600, false)?;
            write_file(dir, "ca.crt", issued.cert_pem.as_bytes(), 0o644, false)?;
            let until = cert_info(&issued.cert_pem).map(|i| date(i.not_after)).unwrap_or_default();
            Ok((issuer, "created", format!("the CA, valid until {until}")))
        }
        (true, false) => bail!(CertsError::CaWithoutKey(crt.display().to_string())),
        (false, true) => bail!(CertsError::CaKeyWithoutCert(key.display().to_string())),
        (true, true) => {
            let cert_pem = read_text(&crt)?;
            let key = KeyPair::from_pem(&read_text(&key)?)
                .map_err(|e| anyhow::anyhow!("{}: not a private key in PEM: {e}", key.display()))?;
            let info = cert_info(&cert_pem)
                .with_context(|| format!("{}: not a certificate in PEM", crt.display()))?;
            if !info.is_ca {
                bail!("{}: not a CA certificate", crt.display());
            }
            if info.public_key != key.subject_public_key_info() {
                bail!("{} and ca.key do not belong together (different keys)", crt.display());
            }
            if info.not_after <= now.unix_timestamp() {
                bail!(
                    "{}: the CA expired on {}; make a new one in another directory",
                    crt.display(),
                    date(info.not_after)
                );
            }
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
                .map_err(|e| anyhow::anyhow!("{}: {e}", crt.display()))?;
            Ok((issuer, "kept", format!("the CA, valid until {}", date(info.not_after))))
        }
    }
}

/// Refuse to keep a server certificate that lacks a name asked for.
fn check_kept_server(dir: &Path, wanted: &[String]) -> Result<CertInfo> {
    let path = dir.join("server.crt");
    let info = cert_info(&read_text(&path)?)
        .with_context(|| format!("{}: not a certificate in PEM", path.display()))?;
    if let Some(missing) = missing_names(&info.names, wanted) {
        bail!(CertsError::ServerNamesMissing(missing));
    }
    Ok(info)
}

pub fn run(args: CertsArgs) -> Result<u8> {
    let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let leaves = leaves(&hostname, &args)?;
    let now = time::OffsetDateTime::now_utc();

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir).with_context(|| format!("reading {}", args.dir.display()))?;
    println!("{}:", dir.display());
    let width = leaves.iter().map(|l| l.crt().len() + l.key().len() + 2).max().unwrap_or(0);
    let say = |verb: &str, files: &str, what: &str| println!("  {verb:<8} {files:<width$}  {what}");

    let (ca, verb, what) = open_ca(&dir, &hostname, now)?;
    say(verb, "ca.crt, ca.key", &what);
    let mut kept = false;
    for leaf in &leaves {
        let action = decide(leaf, dir.join(leaf.crt()).exists(), dir.join(leaf.key()).exists(), args.force)?;
        let verb = match action {
            Action::Keep => {
                let info = match &leaf.kind {
                    LeafKind::Server(_) => check_kept_server(&dir, &args.server_names)?,
                    LeafKind::Client => {
                        let p = dir.join(leaf.crt());
                        cert_info(&read_text(&p)?)
                            .with_context(|| format!("{}: not a certificate in PEM", p.display()))?
                    }
                };
                // What the kept file says, not what this run would have asked for.
                let purpose = match &leaf.kind {
                    LeafKind::Server(_) => {
                        Leaf { kind: LeafKind::Server(info.names.clone()), ..leaf.clone() }.purpose()
                    }
                    LeafKind::Client => leaf.purpose(),
                };
                let what = format!("{purpose}; {}", expiry(info.not_after, now.unix_timestamp()));
                say("kept", &format!("{}, {}", leaf.crt(), leaf.key()), &what);
                kept = true;
                continue;
            }
            Action::Create => "created",
            Action::Replace => "replaced",
        };
        let issued = issue(leaf, &ca, now, args.days).with_context(|| format!("issuing {}", leaf.crt()))?;
        write_pair(&dir, &leaf.stem, &issued, action == Action::Replace)?;
        let until = cert_info(&issued.cert_pem).map(|i| date(i.not_after)).unwrap_or_default();
        say(
            verb,
            &format!("{}, {}", leaf.crt(), leaf.key()),
            &format!("{}; valid until {until}", leaf.purpose()),
        );
    }
    let verb = if write_roles_script(&dir)? { "wrote" } else { "kept" };
    say(verb, ROLES_FILE, "creates etcd's users and roles (see docs/security.md)");
    if kept {
        println!("  (--force issues kept certificates again, with new keys; never the CA)");
    }
    println!();
    print!("{}", next_steps(&dir, &server_for_agents(&hostname, &args.server_names), &args.clients));
    Ok(0)
}

/// The roles script, executable, brought up to date if it differs; whether it was written.
fn write_roles_script(dir: &Path) -> Result<bool> {
    if std::fs::read_to_string(dir.join(ROLES_FILE)).is_ok_and(|s| s == ROLES_SCRIPT) {
        return Ok(false);
    }
    write_file(dir, ROLES_FILE, ROLES_SCRIPT.as_bytes(), 0o755, true)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(clients: &[&str], names: &[&str]) -> CertsArgs {
        CertsArgs {
            dir: PathBuf::from("/d"),
            clients: clients.iter().map(|s| s.to_string()).collect(),
            server_names: names.iter().map(|s| s.to_string()).collect(),
            days: DEFAULT_DAYS,
            force: false,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn client_names_are_what_etcd_users_hostnames_and_files_accept() {
        for ok in ["h1", "web-1.example.com", "a_b", "X", &"a".repeat(64)] {
            assert_eq!(check_client_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".h", "-h", "a/b", "a b", "ü", "../x", &"a".repeat(65)] {
            assert_eq!(check_client_name(bad), Err(CertsError::ClientName(bad.to_string())), "{bad}");
        }
        for taken in ["ca", "server", "etcd-roles"] {
            assert_eq!(check_client_name(taken), Err(CertsError::Reserved(taken.to_string())));
        }
    }

    #[test]
    fn server_names_are_loopback_the_hostname_and_those_given_once_each() {
        let got =
            server_names("myhost", &s(&["etcd.example.com", "10.0.0.5", "LOCALHOST", "0:0::1"])).unwrap();
        assert_eq!(got, s(&["localhost", "127.0.0.1", "::1", "myhost", "etcd.example.com", "10.0.0.5"]));
        // A hostname that is no DNS name is left out, not an error.
        assert_eq!(server_names("my host", &[]).unwrap(), s(&["localhost", "127.0.0.1", "::1"]));
        assert_eq!(server_names("", &s(&["*.example.com"])).unwrap()[3], "*.example.com");
        for bad in ["", "a b", "-a.com", "a..b", "http://x", "a_b.com"] {
            assert_eq!(server_names("h", &s(&[bad])), Err(CertsError::ServerName(bad.to_string())), "{bad}");
        }
    }

    #[test]
    fn every_run_issues_server_root_deployer_and_each_client_once() {
        let got = leaves("h", &args(&["h1", "h2", "h1", "deployer"], &[])).unwrap();
        let stems: Vec<&str> = got.iter().map(|l| l.stem.as_str()).collect();
        assert_eq!(stems, ["server", "root", "deployer", "h1", "h2"]);
        assert!(matches!(&got[0].kind, LeafKind::Server(n) if n.contains(&"h".to_string())));
        assert!(leaves("h", &args(&["ca"], &[])).is_err());
    }

    #[test]
    fn nothing_is_written_over_without_force_and_half_pairs_are_refused() {
        let leaf = Leaf { stem: "h1".into(), kind: LeafKind::Client };
        assert_eq!(decide(&leaf, false, false, false), Ok(Action::Create));
        assert_eq!(decide(&leaf, false, false, true), Ok(Action::Create));
        assert_eq!(decide(&leaf, true, true, false), Ok(Action::Keep));
        assert_eq!(decide(&leaf, true, true, true), Ok(Action::Replace));
        assert_eq!(decide(&leaf, true, false, true), Ok(Action::Replace));
        let e = decide(&leaf, true, false, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "h1.crt exists without h1.key: restore it, or give --force to issue both again"
        );
        assert!(matches!(decide(&leaf, false, true, false), Err(CertsError::HalfPair { .. })));
    }

    #[test]
    fn a_kept_server_certificate_must_name_what_is_asked_for() {
        let have = s(&["localhost", "127.0.0.1", "::1", "Etcd.Example.com"]);
        assert_eq!(missing_names(&have, &s(&["etcd.example.com", "0:0:0:0:0:0:0:1"])), None);
        assert_eq!(missing_names(&have, &s(&["10.0.0.5", "x.com"])), Some("10.0.0.5, x.com".into()));
    }

    #[test]
    fn issued_certificates_chain_to_the_ca_and_say_what_etcd_needs() {
        use x509_parser::prelude::*;
        let now = ::time::OffsetDateTime::now_utc();
        let (ca_pem, ca) = new_ca("myhost", now).unwrap();
        let ca_info = cert_info(&ca_pem.cert_pem).unwrap();
        assert!(ca_info.is_ca);
        assert_eq!(date(ca_info.not_after), date((now + ::time::Duration::days(3650)).unix_timestamp()));
        let (_, ca_x) = parse_x509_pem(ca_pem.cert_pem.as_bytes()).unwrap();
        let ca_x = ca_x.parse_x509().unwrap();
        assert!(ca_x.subject().to_string().contains("mgmt CA myhost"), "{}", ca_x.subject());

        let server = Leaf {
            stem: "server".into(),
            kind: LeafKind::Server(s(&["localhost", "127.0.0.1", "::1", "e.x"])),
        };
        let client = Leaf { stem: "h1".into(), kind: LeafKind::Client };
        for (leaf, cn, eku_server) in [(&server, SERVER_CN, true), (&client, "h1", false)] {
            let issued = issue(leaf, &ca, now, 30).unwrap();
            assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let (_, pem) = parse_x509_pem(issued.cert_pem.as_bytes()).unwrap();
            let x = pem.parse_x509().unwrap();
            x.verify_signature(Some(ca_x.public_key())).expect("signed by the CA");
            assert_eq!(x.issuer(), ca_x.subject());
            assert!(!x.is_ca());
            let eku = x.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth, "{cn}: every certificate authenticates clients");
            assert_eq!(eku.server_auth, eku_server, "{cn}");
            let info = cert_info(&issued.cert_pem).unwrap();
            assert_eq!(info.common_name, cn);
            assert_eq!(date(info.not_after), date((now + ::time::Duration::days(30)).unix_timestamp()));
            assert!(
                x.validity().not_before.timestamp() < now.unix_timestamp(),
                "valid at once, despite skew"
            );
            if eku_server {
                assert_eq!(info.names, s(&["localhost", "127.0.0.1", "::1", "e.x"]));
            }
        }
    }

    #[test]
    fn an_expired_certificate_says_so() {
        assert_eq!(expiry(86_400, 0), "valid until 1970-01-02");
        assert_eq!(expiry(86_400, 86_400), "EXPIRED on 1970-01-02");
    }

    #[test]
    fn the_server_common_name_can_never_be_a_client_name() {
        assert!(check_client_name(SERVER_CN).is_err());
    }

    #[test]
    fn next_steps_name_the_files_and_the_commands_to_use_them() {
        let text = next_steps(Path::new("/etc/mgmt/pki"), "etcd.example.com", &s(&["h1", "h2"]));
        for line in [
            "  mgmt etcd --tls-dir /etc/mgmt/pki",
            "  /etc/mgmt/pki/etcd-roles --tls-dir /etc/mgmt/pki --host h1 --host h2",
            "  mgmt run --hostname h1 --seeds https://etcd.example.com:2379 --etcd-ca /etc/mgmt/pki/ca.crt \
             --etcd-cert /etc/mgmt/pki/h1.crt --etcd-key /etc/mgmt/pki/h1.key empty",
            "  mgmt deploy --seeds https://etcd.example.com:2379 --etcd-ca /etc/mgmt/pki/ca.crt \
             --etcd-cert /etc/mgmt/pki/deployer.crt --etcd-key /etc/mgmt/pki/deployer.key yaml graph.yaml",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        // Paths that need quoting are quoted; an IPv6 server is bracketed.
        let text = next_steps(Path::new("/my pki"), "fd00::1", &[]);
        assert!(text.contains("mgmt etcd --tls-dir '/my pki'\n"), "{text}");
        assert!(text.contains("--seeds https://[fd00::1]:2379 "), "{text}");
        assert!(text.contains("add --host NAME"), "{text}");
    }

    #[test]
    fn agents_are_pointed_at_a_name_other_hosts_can_reach() {
        assert_eq!(server_for_agents("myhost", &s(&["127.0.0.1", "localhost", "10.0.0.5"])), "10.0.0.5");
        assert_eq!(server_for_agents("myhost", &[]), "myhost");
        assert_eq!(server_for_agents("", &s(&["::1"])), "127.0.0.1");
    }
}
