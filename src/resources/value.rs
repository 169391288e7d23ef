//! `value`: holds a value (`any`), set in the graph or received over send/recv, and sends it
//! on as `any`. The value is also stored in the agent's prefix (`value/`, one JSON file per
//! resource), so that the value of the last run is there after a restart, where upstream
//! keeps it too; a value that is unset removes the stored one.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ApplyCtx, Changes, ResResult, Resource, ResourceError, Sends, ValidationError, WatchCtx};
use crate::contract::{Meta, Value};
use crate::os::write_atomic;

/// The largest value stored, as JSON.
pub const MAX_STORED_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueRes {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// The value, of any type; one received on `any` replaces it.
    #[serde(default)]
    pub any: Option<Value>,
}

/// What a value file holds: the resource's name (the file is named by its hash) and value.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Stored {
    name: String,
    value: Value,
}

/// The file a value named `name` is stored in, below the agent's prefix: named by the hash
/// of the name, since a name may hold any character.
pub fn stored_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("value").join(hex::encode(Sha256::digest(name.as_bytes())))
}

/// What the store holds for a resource.
#[derive(Debug, PartialEq)]
enum Found {
    Nothing,
    Value(Value),
    /// Too large, not JSON, or another name's: never taken for a value, and replaced.
    Damaged(String),
}

/// The value stored for `name`, if any.
fn read_stored(path: &Path, name: &str) -> ResResult<Found> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(ResourceError::io(format!("reading {}", path.display()), e)),
    };
    let mut text = Vec::new();
    file.take(MAX_STORED_BYTES as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| ResourceError::io(format!("reading {}", path.display()), e))?;
    if text.len() > MAX_STORED_BYTES {
        return Ok(Found::Damaged(format!("larger than {MAX_STORED_BYTES} bytes")));
    }
    Ok(match serde_json::from_slice::<Stored>(&text) {
        Ok(s) if s.name == name => Found::Value(s.value),
        Ok(_) => Found::Damaged("another resource's".into()),
        Err(e) => Found::Damaged(format!("not a stored value: {e}")),
    })
}

/// The value the `value` resource `name` holds on this host (stored below `state_dir`, the
/// agent's prefix), if it holds one: what mcl's `value.get_*` read. A damaged store holds none.
pub fn stored(state_dir: &Path, name: &str) -> ResResult<Option<Value>> {
    Ok(match read_stored(&stored_path(state_dir, name), name)? {
        Found::Value(v) => Some(v),
        Found::Nothing | Found::Damaged(_) => None,
    })
}

/// Store `value` for `name` at `path` (`None`: remove it).
fn write_stored(path: &Path, name: &str, value: Option<&Value>) -> ResResult<()> {
    let io_err = |e| ResourceError::io(format!("storing {}", path.display()), e);
    let Some(value) = value else {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(e)),
            _ => Ok(()),
        };
    };
    let json = serde_json::to_vec(&Stored { name: name.to_string(), value: value.clone() })
        .map_err(|e| ResourceError::msg(format!("encoding the value: {e}")))?;
    if json.len() > MAX_STORED_BYTES {
        return Err(ResourceError::msg(format!(
            "the value is {} bytes as JSON; at most {MAX_STORED_BYTES} are stored",
            json.len()
        )));
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err)?;
    }
    write_atomic(path, &json, 0o600, None, None).map_err(io_err)
}

/// The change that makes the store hold `want`, if any. Pure.
fn store_change(found: &Found, want: Option<&Value>) -> Option<String> {
    match (found, want) {
        (Found::Nothing, None) => None,
        (Found::Value(s), Some(w)) if s == w => None,
        (Found::Damaged(why), _) => Some(format!("replace the stored value ({why})")),
        (_, None) => Some("remove the stored value (unset)".into()),
        (Found::Nothing, Some(w)) => Some(format!("store a value of type {} (none was stored)", w.type_name())),
        (Found::Value(_), Some(w)) => Some(format!("store a new value of type {}", w.type_name())),
    }
}

#[async_trait]
impl Resource for ValueRes {
    crate::resource_common!("value");

    fn validate(&self) -> Result<(), ValidationError> {
        let size = serde_json::to_vec(&self.any).map_or(usize::MAX, |j| j.len());
        if size > MAX_STORED_BYTES {
            return Err(ValidationError::new("any", format!("is {size} bytes as JSON; at most {MAX_STORED_BYTES}")));
        }
        Ok(())
    }

    /// Nothing outside changes a value but its store, which is the agent's own.
    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let want = ctx.recv.get("any").or(self.any.as_ref()).cloned();
        // Sent before anything can fail, and in noop mode too: the value is the value.
        if let Some(v) = &want {
            ctx.send(Sends::from([("any".to_string(), v.clone())]));
        }
        let Some(dir) = ctx.local.state_dir.clone() else { return Ok(vec![]) };
        let (name, path) = (self.name.clone(), stored_path(&dir, &self.name));
        tokio::task::spawn_blocking(move || {
            let stored = read_stored(&path, &name)?;
            let Some(change) = store_change(&stored, want.as_ref()) else { return Ok(vec![]) };
            if apply {
                write_stored(&path, &name, want.as_ref())?;
            }
            Ok(vec![change.into()])
        })
        .await
        .map_err(|e| ResourceError::msg(format!("value check panicked: {e}")))?
    }

    fn recv_fields(&self) -> &'static [&'static str] {
        &["any"]
    }

    fn send_fields(&self) -> &'static [&'static str] {
        &["any"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_changes_only_when_the_value_does() {
        let (a, b) = (Value::from("a"), Value::Int(1));
        let stored_a = Found::Value(a.clone());
        assert_eq!(store_change(&stored_a, Some(&a)), None);
        assert_eq!(store_change(&Found::Nothing, None), None);
        assert_eq!(store_change(&Found::Nothing, Some(&b)).unwrap(), "store a value of type int (none was stored)");
        assert_eq!(store_change(&stored_a, Some(&b)).unwrap(), "store a new value of type int");
        assert_eq!(store_change(&stored_a, None).unwrap(), "remove the stored value (unset)");
        let damaged = Found::Damaged("not JSON".into());
        assert_eq!(store_change(&damaged, Some(&a)).unwrap(), "replace the stored value (not JSON)");
    }

    #[test]
    fn a_stored_value_comes_back_only_for_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = stored_path(dir.path(), "n/with slashes");
        assert!(path.starts_with(dir.path().join("value")) && path.file_name().unwrap().len() == 64);
        assert_eq!(read_stored(&path, "n/with slashes").unwrap(), Found::Nothing);
        let v = Value::List(vec![Value::Int(1), Value::from("x")]);
        write_stored(&path, "n/with slashes", Some(&v)).unwrap();
        assert_eq!(read_stored(&path, "n/with slashes").unwrap(), Found::Value(v));
        assert!(matches!(read_stored(&path, "other").unwrap(), Found::Damaged(_)));
        write_stored(&path, "n/with slashes", None).unwrap();
        assert!(!path.exists());
        fs::write(&path, "not json").unwrap();
        assert!(matches!(read_stored(&path, "n/with slashes").unwrap(), Found::Damaged(_)));
    }

    #[test]
    fn any_takes_values_of_every_type() {
        for (json, ty) in [("1", "int"), ("\"s\"", "str"), ("[1, 2]", "list"), ("{\"k\": true}", "map")] {
            let v: ValueRes = serde_json::from_str(&format!("{{\"name\": \"v\", \"any\": {json}}}")).unwrap();
            assert_eq!(v.any.unwrap().type_name(), ty);
        }
    }
}
