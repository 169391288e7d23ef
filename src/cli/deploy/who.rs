//! Who publishes a deploy or a rollback, for its record.

use crate::deploy::store::MAX_DEPLOYER;

/// `Name <email>` from git's configuration (of the repository at `start`, or else at the
/// current directory; else the user's and the system's), or else `user@host`; at most
/// [`MAX_DEPLOYER`] bytes.
pub fn deployer(start: &std::path::Path) -> String {
    let config = git2::Repository::discover(start)
        .or_else(|_| git2::Repository::discover("."))
        .ok()
        .and_then(|r| r.config().ok())
        .or_else(|| git2::Config::open_default().ok());
    let get = |key: &str| {
        config
            .as_ref()
            .and_then(|c| c.get_string(key).ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let who = identity(get("user.name"), get("user.email"), &user_at_host);
    cut(&who, MAX_DEPLOYER).to_string()
}

/// The deployer from git's `user.name` and `user.email`, or `fallback()` (pure).
pub fn identity(name: Option<String>, email: Option<String>, fallback: &dyn Fn() -> String) -> String {
    match (name, email) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (Some(n), None) => n,
        (None, Some(e)) => format!("<{e}>"),
        (None, None) => fallback(),
    }
}

/// `$USER@hostname` (the user of the process when `USER` is not set).
fn user_at_host() -> String {
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        let uid = nix::unistd::getuid();
        nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string())
    });
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployer_is_the_git_identity_or_else_user_at_host() {
        let fallback = || "ops@web1".to_string();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(identity(s("Ada"), s("ada@example.com"), &fallback), "Ada <ada@example.com>");
        assert_eq!(identity(s("Ada"), None, &fallback), "Ada");
        assert_eq!(identity(None, s("ada@example.com"), &fallback), "<ada@example.com>");
        assert_eq!(identity(None, None, &fallback), "ops@web1");
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 3), "abc");
        assert_eq!(cut("éé", 3), "é");
    }
}
