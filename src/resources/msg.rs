//! `msg`: a message logged when the resource starts (so once per change of its params) and
//! on every refresh: to the agent's own log always, and to the systemd journal (its native
//! protocol, with fields and a priority) and/or to syslog (`/dev/log`) as asked.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyCtx, Changes, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::contract::Meta;

/// journald's socket for its native protocol.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The syslog socket (journald's too, where it runs).
const SYSLOG_SOCKET: &str = "/dev/log";
/// The largest body plus fields, in bytes: one datagram carries it whole (the kernel's
/// default socket buffer is about 208 KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The longest field name journald accepts.
const MAX_FIELD_NAME: usize = 64;
/// syslog's `user` facility, shifted as in the `<PRI>` header.
const FACILITY_USER: u8 = 1 << 3;

/// The eight syslog severities, by upstream's names.
const PRIORITIES: [&str; 8] = ["Emerg", "Alert", "Crit", "Err", "Warning", "Notice", "Info", "Debug"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Msg {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// The message.
    #[serde(default)]
    pub body: String,
    /// `Emerg`, `Alert`, `Crit`, `Err`, `Warning`, `Notice`, `Info` or `Debug` (any case);
    /// unset: `Notice`.
    #[serde(default)]
    pub priority: String,
    /// Extra journal fields (names of letters, digits and `_`; stored upper-case).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Send it to the systemd journal.
    #[serde(default)]
    pub journal: bool,
    /// Send it to syslog (`/dev/log`).
    #[serde(default)]
    pub syslog: bool,
}

/// The severity number (0 emerg .. 7 debug) of a priority name; empty is `Notice`. Pure.
fn severity(priority: &str) -> Option<u8> {
    if priority.is_empty() {
        return Some(5);
    }
    PRIORITIES.iter().position(|p| p.eq_ignore_ascii_case(priority)).map(|i| i as u8)
}

/// Why a field name cannot be a journal field, if it cannot. Pure.
fn bad_field_name(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    if name.is_empty() {
        Some("a field name must not be empty".into())
    } else if name.len() > MAX_FIELD_NAME {
        Some(format!("field name `{name}` is longer than {MAX_FIELD_NAME} characters"))
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Some(format!("field name `{}` may hold only letters, digits and `_`", name.escape_debug()))
    } else if name.starts_with('_') {
        Some(format!("field name `{name}` must not begin with `_` (the journal's own fields do)"))
    } else if name.as_bytes()[0].is_ascii_digit() {
        Some(format!("field name `{name}` must not begin with a digit"))
    } else if matches!(upper.as_str(), "MESSAGE" | "PRIORITY" | "SYSLOG_IDENTIFIER") {
        Some(format!("field name `{name}` is set by `body`, `priority` or the agent"))
    } else {
        None
    }
}

/// One field of journald's native protocol: `NAME=value\n`, or, for a value with a
/// newline, `NAME\n`, its length as 64-bit little-endian, the value and `\n`. Pure.
fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// The datagram journald receives for one message. Pure.
fn journal_datagram(body: &str, severity: u8, fields: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    push_field(&mut out, "MESSAGE", body);
    push_field(&mut out, "PRIORITY", &severity.to_string());
    push_field(&mut out, "SYSLOG_IDENTIFIER", "mgmt");
    for (k, v) in fields {
        push_field(&mut out, &k.to_ascii_uppercase(), v);
    }
    out
}

/// The datagram a syslog daemon receives: `<PRI>mgmt[pid]: body` (the daemon stamps the
/// time). Pure.
fn syslog_datagram(body: &str, severity: u8, pid: u32) -> Vec<u8> {
    format!("<{}>mgmt[{pid}]: {body}", FACILITY_USER | severity).into_bytes()
}

fn send_datagram(socket: &str, data: &[u8]) -> ResResult<()> {
    let sock = UnixDatagram::unbound().map_err(|e| ResourceError::io("creating a socket", e))?;
    sock.send_to(data, Path::new(socket)).map_err(|e| ResourceError::io(format!("sending to {socket}"), e))?;
    Ok(())
}

impl Msg {
    fn severity(&self) -> u8 {
        severity(&self.priority).unwrap_or(5)
    }

    /// Where it goes, for the change line.
    fn targets(&self) -> String {
        let mut to = vec!["log"];
        if self.journal {
            to.push("journal");
        }
        if self.syslog {
            to.push("syslog");
        }
        to.join(", ")
    }
}

#[async_trait]
impl Resource for Msg {
    crate::resource_common!("msg");

    fn validate(&self) -> Result<(), ValidationError> {
        if severity(&self.priority).is_none() {
            return Err(ValidationError::new(
                "priority",
                format!("`{}` is not one of {}", self.priority.escape_debug(), PRIORITIES.join(", ")),
            ));
        }
        if let Some(why) = self.fields.keys().find_map(|k| bad_field_name(k)) {
            return Err(ValidationError::new("fields", why));
        }
        let upper: std::collections::BTreeSet<_> = self.fields.keys().map(|k| k.to_ascii_uppercase()).collect();
        if upper.len() != self.fields.len() {
            return Err(ValidationError::new("fields", "two field names differ only in case (the journal's are upper-case)"));
        }
        let size = self.body.len() + self.fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if size > MAX_MESSAGE_BYTES {
            return Err(ValidationError::new(
                "body",
                format!("the body and fields are {size} bytes; at most {MAX_MESSAGE_BYTES} fit in one message"),
            ));
        }
        if self.syslog && self.body.contains('\0') {
            return Err(ValidationError::new("body", "syslog cannot carry a NUL byte"));
        }
        Ok(())
    }

    /// Nothing to watch: the message is sent when the resource starts and on refresh.
    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let t = ctx.trigger;
        if !(t.first || t.refresh) {
            return Ok(vec![]);
        }
        let severity = self.severity();
        if apply && self.journal {
            send_datagram(JOURNAL_SOCKET, &journal_datagram(&self.body, severity, &self.fields))?;
        }
        if apply && self.syslog {
            send_datagram(SYSLOG_SOCKET, &syslog_datagram(&self.body, severity, std::process::id()))?;
        }
        let level = PRIORITIES[usize::from(severity)].to_ascii_lowercase();
        Ok(vec![format!("log {:?} ({}; priority {level})", self.body, self.targets()).into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Msg {
        Msg {
            name: "m".into(),
            meta: Meta::default(),
            body: "hello".into(),
            priority: String::new(),
            fields: BTreeMap::new(),
            journal: true,
            syslog: false,
        }
    }

    #[test]
    fn priorities_are_upstreams_names_in_any_case_and_default_to_notice() {
        assert_eq!(severity(""), Some(5));
        assert_eq!(severity("Emerg"), Some(0));
        assert_eq!(severity("warning"), Some(4));
        assert_eq!(severity("Debug"), Some(7));
        assert_eq!(severity("loud"), None);
        let mut m = msg();
        m.priority = "loud".into();
        assert_eq!(m.validate().unwrap_err().field, "priority");
    }

    #[test]
    fn field_names_are_checked_as_the_journal_stores_them() {
        assert_eq!(bad_field_name("HOST_ROLE"), None);
        assert_eq!(bad_field_name("role2"), None);
        for bad in ["", "_PID", "2X", "A-B", "a b", "MESSAGE", "priority", &"X".repeat(65)] {
            assert!(bad_field_name(bad).is_some(), "{bad}");
        }
        let mut m = msg();
        m.fields = [("role".to_string(), "a".to_string()), ("ROLE".to_string(), "b".to_string())].into();
        assert!(m.validate().is_err());
    }

    #[test]
    fn the_native_protocol_frames_multiline_values_by_length() {
        let fields = [("role".to_string(), "db".to_string())].into();
        let d = journal_datagram("two\nlines", 3, &fields);
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\nPRIORITY=3\nSYSLOG_IDENTIFIER=mgmt\nROLE=db\n");
        assert_eq!(d, want);
    }

    #[test]
    fn syslog_lines_carry_the_user_facility_and_severity() {
        assert_eq!(syslog_datagram("hi", 3, 42), b"<11>mgmt[42]: hi".to_vec());
    }

    #[test]
    fn oversized_messages_are_refused() {
        let mut m = msg();
        m.body = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert_eq!(m.validate().unwrap_err().field, "body");
    }
}
