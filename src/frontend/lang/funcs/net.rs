//! mcl's `net` module: addresses, networks and URLs, read as Go reads them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::super::value::{CallError, Val};
use super::Builtin;
use super::args::{fixed, native};

const M: &str = "net";

pub const FUNCS: &[Builtin] = &[
    fixed(M, "cidr_to_first", "func(str) str", cidr_to_first, "the first usable address of the network"),
    fixed(M, "cidr_to_ip", "func(str) str", cidr_to_ip, "the address of `192.0.2.7/24`: `192.0.2.7`"),
    fixed(
        M,
        "cidr_to_last",
        "func(str) str",
        cidr_to_last,
        "the last usable address of the network (before broadcast, for IPv4)",
    ),
    fixed(M, "cidr_to_mask", "func(str) str", cidr_to_mask, "the network mask: `255.255.255.0`"),
    fixed(M, "cidr_to_network", "func(str) str", cidr_to_network, "the network: `192.0.2.0/24`"),
    fixed(M, "cidr_to_prefix", "func(str) str", cidr_to_prefix, "the prefix length, as text: `24`"),
    fixed(M, "ip_in_cidr", "func(str, str) bool", ip_in_cidr, "whether the address is in the network"),
    fixed(
        M,
        "is_mac",
        "func(str) bool",
        is_mac,
        "whether the text is a MAC address written `00:11:22:aa:bb:cc`",
    ),
    fixed(M, "macfmt", "func(str) str", macfmt, "the MAC address in lower case with colons"),
    fixed(M, "oldmacfmt", "func(str) str", oldmacfmt, "the MAC address in lower case with dashes"),
    fixed(
        M,
        "split_hostport",
        "func(str) struct{host str; port str}",
        split_hostport,
        "the host and port of `host:port` or `[v6]:port`",
    ),
    fixed(
        M,
        "url_parser",
        "func(str) struct{scheme str; host str; path str; raw_query str}",
        url_parser,
        "the parts of a URL",
    ),
];

/// An address and prefix length: `192.0.2.7/24`.
fn cidr(text: &str) -> Result<(IpAddr, u32), CallError> {
    let bad = || CallError(format!("invalid CIDR address: {text}"));
    let (ip, bits) = text.trim().split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits > max || !bits_text_ok(text) {
        return Err(bad());
    }
    Ok((ip, bits))
}

fn bits_text_ok(text: &str) -> bool {
    text.trim().rsplit('/').next().is_some_and(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
}

fn as_u128(ip: IpAddr) -> (u128, u32) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn from_u128(n: u128, width: u32) -> IpAddr {
    if width == 32 { IpAddr::V4(Ipv4Addr::from(n as u32)) } else { IpAddr::V6(Ipv6Addr::from(n)) }
}

/// The mask of a `bits` prefix, in the low `width` bits.
fn mask(bits: u32, width: u32) -> u128 {
    if bits == 0 { 0 } else { (u128::MAX << (128 - bits)) >> (128 - width) }
}

fn network(text: &str) -> Result<(u128, u128, u32, u32), CallError> {
    let (ip, bits) = cidr(text)?;
    let (n, width) = as_u128(ip);
    let m = mask(bits, width);
    Ok((n & m, m, bits, width))
}

native!(
    fn cidr_to_ip(text: str) -> str {
        cidr(text)?.0.to_string()
    }
);
native!(
    fn cidr_to_prefix(text: str) -> str {
        cidr(text)?.1.to_string()
    }
);
native!(
    fn cidr_to_mask(text: str) -> str {
        let (_, m, _, width) = network(text)?;
        // Go writes an IPv4 mask as an address, and an IPv6 one in hex.
        if width == 32 { from_u128(m, 32).to_string() } else { format!("{m:032x}") }
    }
);
native!(
    fn cidr_to_network(text: str) -> str {
        let (net, _, bits, width) = network(text)?;
        format!("{}/{bits}", from_u128(net, width))
    }
);
native!(
    fn cidr_to_first(text: str) -> str {
        let (net, m, _, width) = network(text)?;
        let first = net
            .checked_add(1)
            .filter(|f| f & m == net)
            .ok_or_else(|| CallError::new("no usable next address"))?;
        from_u128(first, width).to_string()
    }
);
native!(
    fn cidr_to_last(text: str) -> str {
        let (net, m, bits, width) = network(text)?;
        let all = if width == 32 { u128::from(u32::MAX) } else { u128::MAX };
        let broadcast = net | (!m & all);
        let last = if width == 32 && bits < 31 { broadcast - 1 } else { broadcast };
        from_u128(last, width).to_string()
    }
);
native!(
    fn ip_in_cidr(ip: str, net_text: str) -> bool {
        let addr: IpAddr = ip.trim().parse().map_err(|_| CallError(format!("invalid IP address: {ip}")))?;
        let (net, m, _, width) = network(net_text)?;
        let (n, w) = as_u128(addr);
        w == width && n & m == net
    }
);
native!(
    fn is_mac(text: str) -> bool {
        parse_mac(text).is_ok_and(|m| m == text)
    }
);
native!(
    fn macfmt(text: str) -> str {
        parse_mac(text)?
    }
);
native!(
    fn oldmacfmt(text: str) -> str {
        parse_mac(text)?.replace(':', "-")
    }
);

/// A 6-byte MAC address written with `:` or `-`, as lower-case with colons.
fn parse_mac(text: &str) -> Result<String, CallError> {
    let bad = || CallError(format!("invalid MAC address: {text}"));
    if text.len() != 17 {
        return Err(bad());
    }
    let sep = text.as_bytes()[2];
    if sep != b':' && sep != b'-' {
        return Err(bad());
    }
    let parts: Vec<&str> = text.split(sep as char).collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(bad());
    }
    Ok(parts.join(":").to_lowercase())
}

native!(
    fn split_hostport(text: str) -> val {
        let (host, port) = host_port(text)?;
        Val::Struct(vec![("host".into(), Val::Str(host)), ("port".into(), Val::Str(port))])
    }
);

/// Go's `net.SplitHostPort`.
fn host_port(text: &str) -> Result<(String, String), CallError> {
    let bad = |why: &str| CallError(format!("address {text}: {why}"));
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']' in address"))?;
        let port = after.strip_prefix(':').ok_or_else(|| bad("missing port in address"))?;
        return Ok((host.to_string(), port.to_string()));
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("missing port in address"))?;
    if host.contains(':') {
        return Err(bad("too many colons in address"));
    }
    Ok((host.to_string(), port.to_string()))
}

native!(
    fn url_parser(text: str) -> val {
        let (scheme, rest) = text
            .split_once(':')
            .filter(|(s, _)| valid_scheme(s))
            .ok_or_else(|| CallError::new("empty schemes are invalid"))?;
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, path) = match rest.strip_prefix("//") {
            Some(authority) => {
                let cut = authority.find('/').unwrap_or(authority.len());
                let host = &authority[..cut];
                (host.rsplit_once('@').map_or(host, |(_, h)| h), &authority[cut..])
            }
            None => ("", rest),
        };
        let field = |n: &str, v: &str| (n.to_string(), Val::Str(v.to_string()));
        Val::Struct(vec![
            field("scheme", &scheme.to_lowercase()),
            field("host", host),
            field("path", path),
            field("raw_query", query),
        ])
    }
);

fn valid_scheme(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{call, f, s};
    use super::*;

    fn run(name: &str, args: Vec<Val>) -> Result<Val, CallError> {
        call(f(M, name), args)
    }

    #[test]
    fn networks() {
        let c = || s("192.168.1.77/24");
        assert_eq!(run("cidr_to_ip", vec![c()]), Ok(s("192.168.1.77")));
        assert_eq!(run("cidr_to_prefix", vec![c()]), Ok(s("24")));
        assert_eq!(run("cidr_to_mask", vec![c()]), Ok(s("255.255.255.0")));
        assert_eq!(run("cidr_to_network", vec![c()]), Ok(s("192.168.1.0/24")));
        assert_eq!(run("cidr_to_first", vec![c()]), Ok(s("192.168.1.1")));
        assert_eq!(run("cidr_to_last", vec![c()]), Ok(s("192.168.1.254")));
        assert_eq!(run("cidr_to_network", vec![s("10.1.2.3/0")]), Ok(s("0.0.0.0/0")));
        assert_eq!(run("cidr_to_network", vec![s("2001:db8::1/64")]), Ok(s("2001:db8::/64")));
        assert_eq!(run("cidr_to_last", vec![s("2001:db8::/127")]), Ok(s("2001:db8::1")));
        assert_eq!(run("ip_in_cidr", vec![s("192.168.1.9"), c()]), Ok(Val::Bool(true)));
        assert_eq!(run("ip_in_cidr", vec![s("192.168.2.9"), c()]), Ok(Val::Bool(false)));
        for bad in ["192.168.1.1", "192.168.1.1/33", "x/8", "1.2.3.4/+8", "::/129"] {
            assert!(run("cidr_to_ip", vec![s(bad)]).is_err(), "{bad}");
        }
        assert!(run("cidr_to_first", vec![s("10.0.0.1/32")]).is_err());
    }

    #[test]
    fn macs_hosts_and_urls() {
        assert_eq!(run("macfmt", vec![s("00-AA-bb-CC-dd-EE")]), Ok(s("00:aa:bb:cc:dd:ee")));
        assert_eq!(run("oldmacfmt", vec![s("00:aa:bb:cc:dd:ee")]), Ok(s("00-aa-bb-cc-dd-ee")));
        assert_eq!(run("is_mac", vec![s("00:aa:bb:cc:dd:ee")]), Ok(Val::Bool(true)));
        assert_eq!(run("is_mac", vec![s("00:AA:bb:cc:dd:ee")]), Ok(Val::Bool(false)));
        assert!(run("macfmt", vec![s("00:aa:bb:cc:dd")]).is_err());
        let hp = run("split_hostport", vec![s("[::1]:80")]).unwrap();
        assert_eq!(hp.to_string(), r#"struct{host => "::1", port => "80"}"#);
        assert!(run("split_hostport", vec![s("host")]).is_err());
        let url = run("url_parser", vec![s("https://www.example.com/search?q=mgmt#x")]).unwrap();
        assert_eq!(
            url.to_string(),
            r#"struct{scheme => "https", host => "www.example.com", path => "/search", raw_query => "q=mgmt"}"#
        );
        assert!(run("url_parser", vec![s("no-scheme")]).is_err());
    }
}
