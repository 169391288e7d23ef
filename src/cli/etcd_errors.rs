//! Errors that carry an etcd client error somewhere in their chain, as one line a user reads:
//! the typed errors below the cli keep the client's error as a source, and here, at the
//! edge, it becomes its [`EtcdError`] line.

use crate::world::etcd::{EtcdError, describe};

/// `e` with the etcd client error in its chain, if any, replaced by its one-line
/// [`EtcdError`] (at `url`): the contexts above it are kept; the client's text, and wrappers
/// that only repeat it, are dropped.
pub fn readable(e: anyhow::Error, url: &str) -> anyhow::Error {
    readable_as(e, url, None)
}

/// [`readable`] for a client that authenticated as `user` (a refusal names it).
pub fn readable_as(e: anyhow::Error, url: &str, user: Option<&str>) -> anyhow::Error {
    let chain: Vec<&(dyn std::error::Error + 'static)> = e.chain().collect();
    let Some((i, client)) =
        chain.iter().enumerate().find_map(|(i, c)| c.downcast_ref::<etcd_client::Error>().map(|c| (i, c)))
    else {
        return e;
    };
    // Wrappers repeat the client error at their end: that part goes, the line says it.
    let (raw, short) = (client.to_string(), describe(client));
    let mut parts: Vec<String> = chain[..i]
        .iter()
        .map(|c| {
            let s = c.to_string();
            let s = s.strip_suffix(raw.as_str()).or_else(|| s.strip_suffix(short.as_str())).unwrap_or(&s);
            s.trim_end_matches([':', ' ']).to_string()
        })
        .filter(|s| !s.is_empty() && s != "etcd")
        .collect();
    let mut line = EtcdError::new(url, client);
    line.user = user.map(str::to_string);
    parts.push(line.to_string());
    anyhow::anyhow!(parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etcd_error_deep_in_a_chain_is_replaced_by_its_line() {
        use anyhow::Context;
        let refused =
            etcd_client::Error::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = Err::<(), _>(refused).context("reading deploy 3").unwrap_err();
        assert_eq!(
            format!("{:#}", readable(e, "http://h:1")),
            "reading deploy 3: cannot reach etcd at http://h:1: connection refused (is etcd running? `mgmt etcd` starts one)"
        );
        let plain = anyhow::anyhow!("not about etcd");
        assert_eq!(format!("{:#}", readable(plain, "http://h:1")), "not about etcd");
    }

    #[test]
    fn a_fetch_error_from_etcd_reads_as_its_etcd_line() {
        use anyhow::Context;
        // A typed wrapper that repeats the client's error is dropped from the line.
        let fetch = crate::deploy::store::FetchError::from(etcd_client::Error::IoError(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        ));
        let e = Err::<(), _>(fetch).context("reading deploy 4").unwrap_err();
        assert_eq!(
            format!("{:#}", readable(e, "http://h:1")),
            "reading deploy 4: cannot reach etcd at http://h:1: connection refused (is etcd running? `mgmt etcd` starts one)"
        );
    }

    #[test]
    fn a_store_error_from_etcd_reads_as_its_etcd_line() {
        use anyhow::Context;
        let store = crate::deploy::store::StoreError::from(etcd_client::Error::IoError(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        ));
        let e = Err::<(), _>(store).context("reading the history").unwrap_err();
        assert_eq!(
            format!("{:#}", readable(e, "http://h:1")),
            "reading the history: cannot reach etcd at http://h:1: connection refused (is etcd running? `mgmt etcd` starts one)"
        );
    }
}
