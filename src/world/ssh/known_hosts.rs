//! known_hosts and `--ssh-hostkey`: which host keys are trusted for a server. Everything here
//! is pure: the tunnel reads (and, with `--ssh-accept-new`, writes) the files.

use russh::keys::{Algorithm, HashAlg, PublicKey};

/// The server's host key as `--ssh-hostkey` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKey {
    Key(PublicKey),
    /// `SHA256:...` (base64 without padding, as `ssh-keygen -l` prints it).
    Fingerprint(String),
}

impl HostKey {
    /// Whether `key` is this key, or has this fingerprint.
    pub fn matches(&self, key: &PublicKey) -> bool {
        match self {
            HostKey::Key(k) => k.key_data() == key.key_data(),
            HostKey::Fingerprint(f) => key.fingerprint(HashAlg::Sha256).to_string() == *f,
        }
    }

    /// Its fingerprint, for messages.
    pub fn describe(&self) -> String {
        match self {
            HostKey::Key(k) => k.fingerprint(HashAlg::Sha256).to_string(),
            HostKey::Fingerprint(f) => f.clone(),
        }
    }
}

/// Parse `--ssh-hostkey`: a key as in known_hosts or a `.pub` file (`ssh-ed25519 AAAA...`,
/// optionally after the host names, as `ssh-keyscan` prints it), its base64 part alone, or
/// a `SHA256:` fingerprint. Pure.
pub fn parse_hostkey(text: &str) -> Result<HostKey, String> {
    let text = text.trim();
    const FORM: &str =
        "expected a public key as in known_hosts (`ssh-ed25519 AAAA...`) or a fingerprint (`SHA256:...`)";
    if let Some(b64) = text.strip_prefix("SHA256:") {
        let b64 = b64.trim_end_matches('=');
        let ok = data_encoding::BASE64_NOPAD.decode(b64.as_bytes()).is_ok_and(|d| d.len() == 32);
        return if ok {
            Ok(HostKey::Fingerprint(format!("SHA256:{b64}")))
        } else {
            Err(format!("invalid fingerprint `{text}`: {FORM}"))
        };
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    for skip in 0..words.len().min(2) {
        if let Some(key) = key_of(&words[skip..]) {
            return Ok(HostKey::Key(key));
        }
    }
    if let [b64] = words.as_slice()
        && let Ok(bytes) = data_encoding::BASE64.decode(b64.as_bytes())
        && let Ok(key) = PublicKey::from_bytes(&bytes)
    {
        return Ok(HostKey::Key(key));
    }
    Err(format!("invalid host key: {FORM}"))
}

/// `--ssh-hostkey` checked for clap: the text as given if [`parse_hostkey`] takes it.
pub fn check_hostkey(text: &str) -> Result<String, String> {
    parse_hostkey(text).map(|_| text.to_string())
}

/// The key in `type base64 ...`.
fn key_of(words: &[&str]) -> Option<PublicKey> {
    match words {
        [kind, b64, ..] => PublicKey::from_openssh(&format!("{kind} {b64}")).ok(),
        _ => None,
    }
}

/// What known_hosts says of a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// A line for this server has this key.
    Trusted,
    /// Lines for this server have other keys of the same type (the first at `line`).
    Changed { line: usize },
    /// A `@revoked` line for this server has this key.
    Revoked { line: usize },
    /// No line for this server has a key of this type.
    Unknown,
}

/// One known_hosts entry for `name` (`host` or `[host]:port`): its line number, marker
/// (`@revoked`, `@cert-authority`) and key.
fn entries<'a>(
    text: &'a str,
    name: &'a str,
) -> impl Iterator<Item = (usize, Option<&'a str>, PublicKey)> + 'a {
    text.lines().enumerate().filter_map(move |(i, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut words: Vec<&str> = line.split_whitespace().collect();
        let marker = words.first().filter(|w| w.starts_with('@')).copied();
        if marker.is_some() {
            words.remove(0);
        }
        let (patterns, key) = (words.first()?, key_of(words.get(1..)?)?);
        host_matches(patterns, name).then_some((i + 1, marker, key))
    })
}

/// Whether `key` is known for the server `name` in the known_hosts `text`. Pure.
pub fn check_known_hosts(text: &str, name: &str, key: &PublicKey) -> Known {
    let mut trusted = false;
    let mut changed = None;
    for (line, marker, k) in entries(text, name) {
        let same = k.key_data() == key.key_data();
        match marker {
            Some("@revoked") if same => return Known::Revoked { line },
            Some(_) => {}
            None if same => trusted = true,
            None if k.algorithm() == key.algorithm() => changed = changed.or(Some(line)),
            None => {}
        }
    }
    match (trusted, changed) {
        (true, _) => Known::Trusted,
        (false, Some(line)) => Known::Changed { line },
        (false, None) => Known::Unknown,
    }
}

/// The algorithms of the keys known for `name`, in file order. Pure.
pub fn known_algorithms(text: &str, name: &str) -> Vec<Algorithm> {
    entries(text, name).filter(|(_, m, _)| m.is_none()).map(|(_, _, k)| k.algorithm()).collect()
}

/// Whether a known_hosts host field (comma-separated patterns: names, `[host]:port`,
/// `*`/`?` wildcards, `!` negations, `|1|salt|hash` hashed names) matches `name`. A matching
/// negation rules the line out, as in OpenSSH. Pure.
pub fn host_matches(patterns: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut matched = false;
    for p in patterns.split(',') {
        let (negated, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        let hit = if let Some(hashed) = p.strip_prefix("|1|") {
            hashed_matches(hashed, &name)
        } else {
            glob(p.to_ascii_lowercase().as_bytes(), name.as_bytes())
        };
        if hit && negated {
            return false;
        }
        matched |= hit;
    }
    matched
}

/// `salt|hash` (base64): HMAC-SHA1 of `name` with `salt` is `hash`.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let Some((salt, hash)) = hashed.split_once('|') else { return false };
    let (Ok(salt), Ok(hash)) =
        (data_encoding::BASE64.decode(salt.as_bytes()), data_encoding::BASE64.decode(hash.as_bytes()))
    else {
        return false;
    };
    let Ok(mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else { return false };
    mac.chain_update(name.as_bytes()).verify_slice(&hash).is_ok()
}

/// `*` and `?` wildcards over bytes.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..])),
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// One known_hosts line for `key` under `name`. Pure.
pub fn known_hosts_line(name: &str, key: &PublicKey) -> Result<String, String> {
    let mut key = key.clone();
    key.set_comment("");
    Ok(format!("{name} {}", key.to_openssh().map_err(|e| e.to_string())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK97RGlKXfPdMSguJXvCKRdZ0zVypT5n3H26v4F+r7Mc";
    const ED2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKDY2ww0rws/x00ovGz5WVqF4DfrVkbaxihBpApN7y8X";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBnxqPkTB8j5AGlyEGvM50cWnfQyZrMWsu9DbmvspKurdJOBOblck1/RSZe31f8RsW1XxZps1+fi9nGomptTDWg=";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    #[test]
    fn host_keys_are_taken_as_keys_lines_base64_or_fingerprints() {
        let k = key(ED);
        assert_eq!(parse_hostkey(ED), Ok(HostKey::Key(k.clone())));
        assert_eq!(parse_hostkey(&format!("{ED} root@db1")), Ok(HostKey::Key(k.clone())));
        assert_eq!(parse_hostkey(&format!("[db1]:2222 {ED}")), Ok(HostKey::Key(k.clone())));
        assert_eq!(parse_hostkey(ED.split(' ').nth(1).unwrap()), Ok(HostKey::Key(k.clone())));
        let fp = k.fingerprint(HashAlg::Sha256).to_string();
        assert_eq!(parse_hostkey(&fp), Ok(HostKey::Fingerprint(fp.clone())));
        assert!(parse_hostkey(&fp).unwrap().matches(&k));
        assert!(!parse_hostkey(&fp).unwrap().matches(&key(ED2)));
        assert!(parse_hostkey(ED).unwrap().matches(&k));
        assert!(!parse_hostkey(ED2).unwrap().matches(&k));
        for bad in ["", "SHA256:short", "MD5:aa:bb", "ssh-ed25519", "ssh-ed25519 !!!", "hello world again"] {
            assert!(parse_hostkey(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn known_hosts_lines_match_plain_ported_wildcard_and_hashed_names() {
        assert!(host_matches("db1,10.0.0.1", "db1"));
        assert!(host_matches("DB1", "db1"));
        assert!(!host_matches("db1", "db2"));
        assert!(host_matches("[db1]:2222", "[db1]:2222"));
        assert!(!host_matches("db1", "[db1]:2222"));
        assert!(host_matches("*.example.com", "db1.example.com"));
        assert!(host_matches("db?", "db7"));
        assert!(!host_matches("*.example.com,!db1.example.com", "db1.example.com"));
        // `ssh-keygen -H` of a line for `[127.0.0.1]:2222`.
        let hashed = "|1|oHTSV+qxuPY3Y/qK1Bn/MJEosPQ=|+9Rg8XyRGSH3oYAgjnC3/eQDkXQ=";
        assert!(host_matches(hashed, "[127.0.0.1]:2222"));
        assert!(!host_matches(hashed, "[127.0.0.1]:2223"));
        assert!(!host_matches(hashed, "127.0.0.1"));
        assert!(!host_matches("|1|bad|bad", "db1"));
    }

    #[test]
    fn known_hosts_say_trusted_changed_revoked_or_unknown() {
        let (ed, ed2, ec) = (key(ED), key(ED2), key(ECDSA));
        let text = format!(
            "# comment\n\n[db1]:2222 {ED}\ndb2 {ED2}\n@revoked * {ED2}\n@cert-authority * {ECDSA}\nbroken line\n"
        );
        assert_eq!(check_known_hosts(&text, "[db1]:2222", &ed), Known::Trusted);
        assert_eq!(check_known_hosts(&text, "[db1]:2222", &ed2), Known::Revoked { line: 5 });
        assert_eq!(check_known_hosts(&text, "[db1]:2222", &ec), Known::Unknown);
        assert_eq!(check_known_hosts(&text, "db1", &ed), Known::Unknown);
        let text = format!("db1 {ED}\ndb1 {ECDSA}\n");
        assert_eq!(check_known_hosts(&text, "db1", &ed2), Known::Changed { line: 1 });
        assert_eq!(check_known_hosts(&text, "db1", &ec), Known::Trusted);
        assert_eq!(known_algorithms(&text, "db1"), vec![ed.algorithm(), ec.algorithm()]);
        // Another key of the same type on a later line is accepted (a host may have several).
        let text = format!("db1 {ED2}\ndb1 {ED}\n");
        assert_eq!(check_known_hosts(&text, "db1", &ed), Known::Trusted);
    }

    #[test]
    fn a_remembered_key_is_then_trusted() {
        let line = known_hosts_line("[::1]:2222", &key(&format!("{ED} comment"))).unwrap();
        assert_eq!(line, format!("[::1]:2222 {ED}"));
        assert_eq!(check_known_hosts(&line, "[::1]:2222", &key(ED)), Known::Trusted);
    }
}
