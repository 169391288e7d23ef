//! `gzip`: a file compressed with gzip from an input file or from `content`, written to
//! `path` when it differs from what compressing the input now makes. The output is
//! deterministic (no file name, mtime 0, the same compressor), so converged means the file
//! on disk is byte for byte that stream: compressed again and compared as it streams. Input
//! and output are watched with inotify; the output is written atomically.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use async_trait::async_trait;
use flate2::{Compression, GzBuilder};
use serde::{Deserialize, Serialize};

use super::tar::{output_autoedges, sync_output, validate_output};
use super::{ApplyCtx, AutoEdgeInfo, Changes, ResResult, Resource, ResourceError, WatchCtx};
use crate::contract::{Meta, ValidationError};
use crate::os::fswatch::Scope;

/// Upstream's levels (Go's `compress/gzip`): -1 default, 0 none, 1 fastest to 9 smallest;
/// -2 (Huffman only) is refused, as the compressor used here has no such mode.
pub const LEVEL_DEFAULT: i64 = -1;
pub const LEVEL_HUFFMAN_ONLY: i64 = -2;

/// The largest `content` (it is in the graph, and in memory).
pub const MAX_CONTENT_BYTES: usize = 64 * 1024 * 1024;

fn default_level() -> i64 {
    LEVEL_DEFAULT
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gzip {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// The compressed file; defaults to the name.
    #[serde(default)]
    pub path: Option<String>,
    /// The file to compress, absolute. Unset: `content` is compressed.
    #[serde(default)]
    pub input: Option<String>,
    /// What to compress when there is no `input` (empty: an empty stream).
    #[serde(default)]
    pub content: String,
    /// -1 (default, 6), 0 (no compression) to 9 (best compression).
    #[serde(default = "default_level")]
    pub level: i64,
}

impl Gzip {
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or(&self.name)
    }

    fn compression(&self) -> Compression {
        match u32::try_from(self.level) {
            Ok(l) => Compression::new(l),
            Err(_) => Compression::default(),
        }
    }

    /// Compress the input as it is now into `out`.
    fn build(&self, out: &mut dyn Write) -> ResResult<()> {
        let mut input: Box<dyn Read> = match &self.input {
            Some(p) => Box::new(std::fs::File::open(p).map_err(|e| ResourceError::io(format!("input {p}"), e))?),
            None => Box::new(self.content.as_bytes()),
        };
        let mut gz = GzBuilder::new().mtime(0).operating_system(255).write(out, self.compression());
        io::copy(&mut input, &mut gz).map_err(|e| ResourceError::io("compressing", e))?;
        gz.finish().map_err(|e| ResourceError::io("compressing", e))?;
        Ok(())
    }

    fn sync_check_apply(&self, apply: bool) -> ResResult<Changes> {
        let path = PathBuf::from(self.path());
        let from = self.input.as_deref().map_or_else(|| "content".to_string(), |i| i.to_string());
        sync_output(&path, apply, |w| self.build(w), |exists| match exists {
            true => format!("rewrite {} (it differs from {from}, compressed)", path.display()),
            false => format!("create {} from {from}", path.display()),
        })
    }
}

#[async_trait]
impl Resource for Gzip {
    crate::resource_common!("gzip");

    fn validate(&self) -> Result<(), ValidationError> {
        let field = if self.path.is_some() { "path" } else { "name" };
        let output = validate_output(field, self.path())?;
        if let Some(input) = &self.input {
            let p = validate_output("input", input)?;
            if p == output {
                return Err(ValidationError::new("input", "is the output: a file cannot be compressed onto itself"));
            }
        }
        if self.content.len() > MAX_CONTENT_BYTES {
            return Err(ValidationError::new("content", format!("is larger than {MAX_CONTENT_BYTES} bytes")));
        }
        match self.level {
            LEVEL_HUFFMAN_ONLY => Err(ValidationError::new(
                "level",
                "-2 (huffman_only) is not offered by this agent's compressor; use 1 (best_speed) for speed",
            )),
            LEVEL_DEFAULT..=9 => Ok(()),
            l => Err(ValidationError::new("level", format!("{l} is not a level: -1 (default) or 0 to 9"))),
        }
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let _out = ctx.fs.subscribe(Scope::File(self.path().into()), ctx.waker.clone()).await;
        let _input = match &self.input {
            Some(i) => Some(ctx.fs.subscribe(Scope::File(i.into()), ctx.waker.clone()).await),
            None => None,
        };
        ctx.first_event_then_wait().await
    }

    async fn check_apply(&self, _ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.sync_check_apply(apply))
            .await
            .map_err(|e| ResourceError::msg(format!("gzip check panicked: {e}")))?
    }

    /// The compressed file is this resource's; the input's resource and the output's
    /// directory's are applied first (a `tar` making the input, say).
    fn autoedges(&self) -> AutoEdgeInfo {
        output_autoedges(self.path(), self.input.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tar::{output_matches, write_output};

    fn gzip(j: serde_json::Value) -> Gzip {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn levels_are_upstreams_but_huffman_only() {
        let g = |level: i64| gzip(serde_json::json!({"name": "/o.gz", "level": level})).validate();
        for ok in [-1, 0, 1, 9] {
            assert!(g(ok).is_ok(), "{ok}");
        }
        for bad in [-3, -2, 10] {
            assert_eq!(g(bad).unwrap_err().field, "level", "{bad}");
        }
        assert_eq!(gzip(serde_json::json!({"name": "/o.gz"})).level, LEVEL_DEFAULT);
        let onto = gzip(serde_json::json!({"name": "/o.gz", "input": "/o.gz"}));
        assert_eq!(onto.validate().unwrap_err().field, "input");
    }

    #[test]
    fn the_stream_is_deterministic_and_decompresses_to_the_input() {
        let g = gzip(serde_json::json!({"name": "/o.gz", "content": "hello\n", "level": 9}));
        let (mut one, mut two) = (Vec::new(), Vec::new());
        g.build(&mut one).unwrap();
        g.build(&mut two).unwrap();
        assert_eq!(one, two);
        let mut back = String::new();
        flate2::read::GzDecoder::new(one.as_slice()).read_to_string(&mut back).unwrap();
        assert_eq!(back, "hello\n");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.gz");
        write_output(&out, |w| g.build(w)).unwrap();
        assert!(output_matches(&out, |w| g.build(w)).unwrap());
        let other = gzip(serde_json::json!({"name": "/o.gz", "content": "hello\n", "level": 1}));
        assert!(!output_matches(&out, |w| other.build(w)).unwrap(), "another level is another stream");
    }
}
