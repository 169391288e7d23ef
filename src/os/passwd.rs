//! The local account databases, `/etc/passwd` and `/etc/group`, read directly (not through
//! NSS): what the shadow tools manage, exactly, and fast. Parsing is pure; reading is bounded
//! in size so that a huge or hostile file fails a check instead of wedging the agent.
//!
//! Lines that are empty, comments (`#`), NIS markers (`+`/`-`) or malformed (too few fields,
//! an id that is not a number) are skipped, as glibc's `files` backend skips them.

use std::io::Read;
use std::path::Path;

/// The local users.
pub const PASSWD: &str = "/etc/passwd";
/// The local groups.
pub const GROUP: &str = "/etc/group";

/// The largest account file read (far above any real one).
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    /// The primary group's id.
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    /// The users listed as members (supplementary membership).
    pub members: Vec<String>,
}

/// The fields of a data line, or `None` for a line that holds no entry.
fn fields(line: &str, n: usize) -> Option<Vec<&str>> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.starts_with(['#', '+', '-']) {
        return None;
    }
    let f: Vec<&str> = line.splitn(n, ':').collect();
    (f.len() == n && !f[0].is_empty()).then_some(f)
}

/// One `/etc/passwd` line (`name:x:uid:gid:gecos:home:shell`). Pure.
pub fn parse_passwd_line(line: &str) -> Option<PasswdEntry> {
    let f = fields(line, 7)?;
    Some(PasswdEntry {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        gecos: f[4].to_string(),
        home: f[5].to_string(),
        shell: f[6].to_string(),
    })
}

/// One `/etc/group` line (`name:x:gid:member,member`). Pure.
pub fn parse_group_line(line: &str) -> Option<GroupEntry> {
    let f = fields(line, 4)?;
    Some(GroupEntry {
        name: f[0].to_string(),
        gid: f[2].parse().ok()?,
        members: f[3].split(',').map(str::trim).filter(|m| !m.is_empty()).map(String::from).collect(),
    })
}

/// Every entry of a passwd file's text. Pure.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines().filter_map(parse_passwd_line).collect()
}

/// Every entry of a group file's text. Pure.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines().filter_map(parse_group_line).collect()
}

/// The local users and groups, as one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    pub users: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
}

impl Accounts {
    /// Parse both files' text. Pure.
    pub fn parse(passwd: &str, group: &str) -> Self {
        Accounts { users: parse_passwd(passwd), groups: parse_group(group) }
    }
    /// The first user of that name (the one the system sees).
    pub fn user(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.name == name)
    }
    /// The first user with that uid.
    pub fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.uid == uid)
    }
    pub fn group(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.name == name)
    }
    pub fn group_by_gid(&self, gid: u32) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.gid == gid)
    }
    /// The groups that list `user` as a member, other than its primary group, sorted.
    pub fn supplementary_groups(&self, user: &PasswdEntry) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .iter()
            .filter(|g| g.gid != user.gid && g.members.contains(&user.name))
            .map(|g| g.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// A file's text, at most [`MAX_BYTES`]; a missing file is empty.
pub fn read_bounded(path: &Path) -> std::io::Result<String> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    f.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(std::io::Error::other(format!("{} is larger than {MAX_BYTES} bytes", path.display())));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Read the local account files (blocking, bounded).
pub fn read_accounts() -> std::io::Result<Accounts> {
    let passwd = read_bounded(Path::new(PASSWD))?;
    let group = read_bounded(Path::new(GROUP))?;
    Ok(Accounts::parse(&passwd, &group))
}

/// A user's home directory as `/etc/passwd` has it (blocking, bounded).
pub fn home_of(user: &str) -> std::io::Result<Option<String>> {
    let text = read_bounded(Path::new(PASSWD))?;
    Ok(text.lines().filter_map(parse_passwd_line).find(|u| u.name == user).map(|u| u.home))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # a comment\n\
        \n\
        +nis\n\
        alice:x:1500:1500:Alice A,,,:/home/alice:/bin/sh\n\
        broken:x:notanumber:1:::\n\
        short:x:1\n\
        bob:x:1501:100::/home/bob:/usr/sbin/nologin\r\n\
        alice:x:9:9::/dup:/bin/false\n";

    const GROUP_TEXT: &str = "root:x:0:\n\
        users:x:100:alice, carol\n\
        alice:x:1500:alice\n\
        wheel:x:10:bob,alice\n\
        bad:x:-3:\n";

    #[test]
    fn passwd_lines_are_parsed_and_junk_skipped() {
        let users = parse_passwd(PASSWD_TEXT);
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["root", "alice", "bob", "alice"]);
        let alice = &users[1];
        assert_eq!((alice.uid, alice.gid), (1500, 1500));
        assert_eq!(alice.gecos, "Alice A,,,");
        assert_eq!((alice.home.as_str(), alice.shell.as_str()), ("/home/alice", "/bin/sh"));
        assert_eq!(users[2].shell, "/usr/sbin/nologin", "a CR at the end is not part of the shell");
    }

    #[test]
    fn an_empty_shell_and_colons_in_the_last_field() {
        let u = parse_passwd_line("svc:x:5:5:::").unwrap();
        assert_eq!((u.home.as_str(), u.shell.as_str()), ("", ""));
        assert!(parse_passwd_line(":x:5:5:::").is_none(), "no name");
        assert!(parse_passwd_line("big:x:4294967296:0:::").is_none(), "uid beyond u32");
    }

    #[test]
    fn group_members_and_lookups() {
        let a = Accounts::parse(PASSWD_TEXT, GROUP_TEXT);
        assert_eq!(a.groups.len(), 4, "a negative gid is skipped");
        assert_eq!(a.group("users").unwrap().members, ["alice", "carol"]);
        assert!(a.group("root").unwrap().members.is_empty());
        assert_eq!(a.user("alice").unwrap().uid, 1500, "the first entry wins");
        assert_eq!(a.user_by_uid(1501).unwrap().name, "bob");
        assert_eq!(a.group_by_gid(10).unwrap().name, "wheel");
        let alice = a.user("alice").unwrap();
        assert_eq!(a.supplementary_groups(alice), ["users", "wheel"], "the primary group is not listed");
        let bob = a.user("bob").unwrap();
        assert_eq!(a.supplementary_groups(bob), ["wheel"]);
    }

    #[test]
    fn reading_is_bounded_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_bounded(&dir.path().join("none")).unwrap(), "");
        let big = dir.path().join("big");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_BYTES + 1).unwrap();
        assert!(read_bounded(&big).unwrap_err().to_string().contains("larger than"));
    }
}
