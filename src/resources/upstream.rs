//! Upstream's kinds this agent does not have, and why: an unknown-kind error for one of them
//! says so, rather than only listing the kinds there are.

/// Why upstream's kind `kind` is not here; `None` for a kind upstream does not have either
/// (a typo, most likely) or one this agent has.
pub fn missing_upstream_kind(kind: &str) -> Option<&'static str> {
    let family = |prefix: &str| kind == prefix || kind.starts_with(&format!("{prefix}:"));
    Some(match kind {
        "augeas" | "consul:kv" | "firewalld" | "gsettings" | "json:edit" | "net" | "panic" | "password"
        | "remote" | "schedule" => "not in this agent yet",
        "aws:ec2" | "hetzner:vm" => "left out: a cloud machine needs an API client per provider",
        "nspawn" => "left out: virtualisation and containers are not managed by this agent",
        "fwattr" => "left out: hardware and firmware are not managed by this agent",
        "deploy:tar" => "left out: deploys here are content-addressed bundles (`mgmt deploy`), not tar files",
        _ if family("http") || family("dhcp") || family("tftp") => {
            "left out for now: a network service the agent would serve itself"
        }
        _ if family("virt") || family("docker") => {
            "left out: virtualisation and containers are not managed by this agent"
        }
        _ if family("bmc") || family("fwupd") => {
            "left out: hardware and firmware are not managed by this agent"
        }
        _ => return None,
    })
}

/// `unknown ... `kind`...`, with why upstream's kind is missing when it is one.
pub fn explain_unknown_kind(message: String, kind: &str) -> String {
    match missing_upstream_kind(kind) {
        Some(why) => {
            format!("{message}; upstream's `{kind}` kind is {why} (docs/resources.md, \"Upstream's kinds\")")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_missing_kinds_are_explained_and_typos_are_not() {
        assert_eq!(missing_upstream_kind("virt:network:host"), Some(missing_upstream_kind("virt").unwrap()));
        assert!(missing_upstream_kind("http:server:file").unwrap().contains("network service"));
        assert!(missing_upstream_kind("aws:ec2").unwrap().contains("cloud"));
        assert_eq!(missing_upstream_kind("fiel"), None);
        assert_eq!(missing_upstream_kind("httpd"), None, "only the `http` family, not a prefix of a word");
        assert_eq!(explain_unknown_kind("unknown kind `fiel`".into(), "fiel"), "unknown kind `fiel`");
        let m = explain_unknown_kind("unknown kind `virt`".into(), "virt");
        assert!(
            m.starts_with("unknown kind `virt`; upstream's `virt` kind is left out: virtualisation"),
            "{m}"
        );
    }
}
