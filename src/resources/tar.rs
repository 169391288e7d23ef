//! `tar`: an archive of files and directories, written to `path` when it differs from what
//! the inputs make. The archive is deterministic: entries in input order and, within a
//! directory, by name; every mtime is 0 and no user or group names are stored (numeric ids
//! and modes are), so the same inputs always make the same bytes. Converged means the file
//! on disk is byte for byte that archive: built again and compared as it streams, the
//! comparison stopping at the first difference. Inputs and output are watched with inotify;
//! the output is written atomically.

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ::tar::{Builder, EntryType, Header};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyCtx, AutoEdgeInfo, Changes, ResResult, Resource, ResourceError, WatchCtx};
use crate::contract::path::AbsPath;
use crate::contract::{Meta, ValidationError};
use crate::os::fswatch::Scope;
use crate::os::write_atomic_from;

/// Upstream's formats (Go's `archive/tar` numbers): let the writer choose (ustar, with pax
/// records where ustar cannot hold a name), ustar only, pax, GNU.
pub const FORMAT_UNKNOWN: i64 = 0;
pub const FORMAT_USTAR: i64 = 2;
pub const FORMAT_PAX: i64 = 4;
pub const FORMAT_GNU: i64 = 8;

/// The most entries archived: a bound on what one check walks.
pub const MAX_ENTRIES: usize = 200_000;

/// The mode of a new output (an existing one keeps its own).
pub const NEW_OUTPUT_MODE: u32 = 0o644;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tar {
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    /// The archive; defaults to the name.
    #[serde(default)]
    pub path: Option<String>,
    /// Files and directories to archive, absolute. A directory with a trailing `/` adds
    /// what is in it; without one, the directory itself too (its name prefixes its entries).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// 0 (unknown: ustar, with pax records when needed), 2 (ustar), 4 (pax), 8 (gnu).
    #[serde(default)]
    pub format: i64,
}

impl Tar {
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or(&self.name)
    }
}

/// Check an output path: absolute, a file. Pure.
pub fn validate_output(field: &'static str, p: &str) -> Result<AbsPath, ValidationError> {
    let path = AbsPath::parse(p).map_err(|e| ValidationError::new(field, format!("`{}` {e}", p.escape_debug())))?;
    if path.is_dir() || path.is_root() {
        return Err(ValidationError::new(field, format!("`{}` must name a file, not a directory", p.escape_debug())));
    }
    Ok(path)
}

/// Whether `output` is `input` or below it (an archive that would hold itself). Pure.
pub fn output_inside(output: &AbsPath, input: &AbsPath) -> bool {
    let dir = input.as_str().trim_end_matches('/');
    output.as_str() == dir || output.as_str().starts_with(&format!("{dir}/"))
}

/// A `Write` that compares what is written with a file, failing at the first difference.
struct Compare<R> {
    have: R,
    differs: bool,
}

impl<R: Read> Write for Compare<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut have = vec![0; buf.len()];
        let mut got = 0;
        while got < buf.len() {
            match self.have.read(&mut have[got..])? {
                0 => break,
                n => got += n,
            }
        }
        if have[..got] != *buf {
            self.differs = true;
            return Err(io::Error::other("differs"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the file at `path` is exactly what `build` writes. Building stops at the first
/// difference; an error of the build itself is returned.
pub fn output_matches(path: &Path, build: impl FnOnce(&mut dyn Write) -> ResResult<()>) -> ResResult<bool> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(ResourceError::io(format!("reading {}", path.display()), e)),
    };
    let mut cmp = Compare { have: BufReader::with_capacity(64 * 1024, file), differs: false };
    match build(&mut cmp) {
        Err(_) if cmp.differs => return Ok(false),
        r => r?,
    }
    let mut rest = [0u8; 1];
    let longer = cmp.have.read(&mut rest).map_err(|e| ResourceError::io(format!("reading {}", path.display()), e))?;
    Ok(longer == 0)
}

/// Compare the file at `path` with what `build` writes and, with `apply`, write it: no change
/// when they match, else the one change `describe` words (given whether the file exists).
pub fn sync_output(
    path: &Path,
    apply: bool,
    build: impl Fn(&mut dyn Write) -> ResResult<()> + Sync,
    describe: impl FnOnce(bool) -> String,
) -> ResResult<Changes> {
    if output_matches(path, &build)? {
        return Ok(vec![]);
    }
    let line = describe(path.exists());
    if apply {
        write_output(path, &build)?;
    }
    Ok(vec![line.into()])
}

/// The reader end of a build running on another thread: its end of data is the end of the
/// build, which fails the read if the build failed (so a broken archive is never renamed
/// into place).
struct Built<'s> {
    pipe: io::PipeReader,
    builder: Option<std::thread::ScopedJoinHandle<'s, ResResult<()>>>,
}

impl Read for Built<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0
            && let Some(h) = self.builder.take()
        {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(io::Error::other(e.to_string())),
                Err(_) => return Err(io::Error::other("the build panicked")),
            }
        }
        Ok(n)
    }
}

/// Write what `build` makes to `path` atomically, streamed (never whole in memory); an
/// existing file keeps its mode and owner.
pub fn write_output(path: &Path, build: impl FnOnce(&mut dyn Write) -> ResResult<()> + Send) -> ResResult<()> {
    let (mode, uid, gid) = match fs::metadata(path) {
        Ok(m) => (m.mode() & 0o7777, Some(m.uid()), Some(m.gid())),
        Err(_) => (NEW_OUTPUT_MODE, None, None),
    };
    let (reader, mut writer) = io::pipe().map_err(|e| ResourceError::io("making a pipe", e))?;
    std::thread::scope(|s| {
        let builder = s.spawn(move || build(&mut writer));
        let mut built = Built { pipe: reader, builder: Some(builder) };
        let r = write_atomic_from(path, &mut built, mode, uid, gid);
        // On an early failure, the build ends on its closed pipe: wait for it.
        drop(built);
        r.map_err(|e| ResourceError::io(format!("writing {}", path.display()), e))
    })
}

/// One input's entries: its path on disk and its name in the archive.
fn entries(input: &str) -> ResResult<Vec<(PathBuf, String)>> {
    let path = PathBuf::from(input.trim_end_matches('/'));
    let meta = fs::metadata(&path).map_err(|e| ResourceError::io(format!("input {input}"), e))?;
    let base = path.file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_default();
    if !meta.is_dir() {
        return Ok(vec![(path, base)]);
    }
    // `dir/` adds what is in it; `dir` adds itself too, its name prefixing the rest.
    let prefix = if input.ends_with('/') { String::new() } else { format!("{base}/") };
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(&path).follow_links(false).sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| ResourceError::msg(format!("walking {input}: {e}")))?;
        let rel = entry.path().strip_prefix(&path).unwrap_or(entry.path()).to_string_lossy().into_owned();
        let name = match (rel.is_empty(), entry.file_type().is_dir()) {
            (true, _) if prefix.is_empty() => continue,
            (true, _) => prefix.clone(),
            (false, true) => format!("{prefix}{rel}/"),
            (false, false) => format!("{prefix}{rel}"),
        };
        out.push((entry.into_path(), name));
        if out.len() > MAX_ENTRIES {
            return Err(ResourceError::msg(format!("{input} holds more than {MAX_ENTRIES} entries")));
        }
    }
    Ok(out)
}

/// The records of a pax extended header (`LEN key=value\n`, LEN counting itself). Pure.
fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while rest + len.to_string().len() != len {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {key}=").as_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// Writes the archive's entries in one format.
struct Archive<'w> {
    builder: Builder<&'w mut dyn Write>,
    format: i64,
}

impl Archive<'_> {
    fn header(&self) -> Header {
        let mut h = if self.format == FORMAT_GNU { Header::new_gnu() } else { Header::new_ustar() };
        h.set_mtime(0);
        h
    }

    /// Append one entry from the file system at `disk`, named `name`.
    fn append(&mut self, disk: &Path, name: &str, top: bool) -> ResResult<()> {
        let io_err = |e| ResourceError::io(format!("archiving {}", disk.display()), e);
        // A top-level input is followed if it is a link, as it is named; below, links are
        // archived as links.
        let meta = if top { fs::metadata(disk) } else { fs::symlink_metadata(disk) }.map_err(io_err)?;
        let mut h = self.header();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid().into());
        h.set_gid(meta.gid().into());
        let ft = meta.file_type();
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            h.set_size(0);
            self.named(&mut h, name, None, io::empty())
        } else if ft.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            h.set_size(0);
            let target = fs::read_link(disk).map_err(io_err)?;
            self.named(&mut h, name, Some(&target), io::empty())
        } else if ft.is_file() {
            let file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(if top { 0 } else { libc::O_NOFOLLOW })
                .open(disk)
                .map_err(io_err)?;
            let len = file.metadata().map_err(io_err)?.len();
            h.set_entry_type(EntryType::Regular);
            h.set_size(len);
            self.named(&mut h, name, None, Exactly { inner: file.take(len), left: len })
        } else {
            Err(ResourceError::msg(format!("{} is not a file, directory or symlink", disk.display())))
        }
    }

    /// Set the entry's name (and link target) as the format allows, then append it.
    fn named(&mut self, h: &mut Header, name: &str, link: Option<&Path>, data: impl Read) -> ResResult<()> {
        let err = |e: io::Error| ResourceError::msg(format!("archiving `{name}`: {e}"));
        if self.format == FORMAT_GNU {
            return match link {
                Some(t) => self.builder.append_link(h, name, t),
                None => self.builder.append_data(h, name, data),
            }
            .map_err(err);
        }
        let mut records: Vec<(&str, Vec<u8>)> = Vec::new();
        if h.set_path(name).is_err() {
            records.push(("path", name.as_bytes().to_vec()));
            h.set_path(short_name(name)).map_err(err)?;
        }
        if let Some(t) = link
            && h.set_link_name(t).is_err()
        {
            records.push(("linkpath", t.as_os_str().as_encoded_bytes().to_vec()));
            h.set_link_name(short_name(&t.to_string_lossy())).map_err(err)?;
        }
        if !records.is_empty() {
            if self.format == FORMAT_USTAR {
                return Err(ResourceError::msg(format!("`{name}` is too long for ustar; use format 0 or 4 (pax)")));
            }
            let refs: Vec<(&str, &[u8])> = records.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let body = pax_records(&refs);
            let mut x = self.header();
            x.set_entry_type(EntryType::XHeader);
            x.set_mode(0o644);
            x.set_size(body.len() as u64);
            x.set_path(short_name(&format!("PaxHeaders/{name}"))).map_err(err)?;
            x.set_cksum();
            self.builder.append(&x, body.as_slice()).map_err(err)?;
        }
        h.set_cksum();
        self.builder.append(h, data).map_err(err)
    }
}

/// The last (at most) 99 bytes of a name, on a character boundary: what an old reader
/// sees of a name a pax record holds.
fn short_name(name: &str) -> &str {
    let mut start = name.len().saturating_sub(99);
    while !name.is_char_boundary(start) {
        start += 1;
    }
    name[start..].trim_start_matches('/')
}

/// A file's content, exactly as long as its header said: a file that shrank while it was
/// archived is an error, not a broken archive.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 {
            return Err(io::Error::other("the file changed while it was archived"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl Tar {
    /// Write the archive the inputs make now.
    fn build(&self, out: &mut dyn Write) -> ResResult<()> {
        let mut archive = Archive { builder: Builder::new(out), format: self.format };
        let mut count = 0;
        for input in &self.inputs {
            let list = entries(input)?;
            count += list.len();
            if count > MAX_ENTRIES {
                return Err(ResourceError::msg(format!("the inputs hold more than {MAX_ENTRIES} entries")));
            }
            for (i, (disk, name)) in list.iter().enumerate() {
                let top = i == 0 && !fs::symlink_metadata(input.trim_end_matches('/')).is_ok_and(|m| m.is_dir());
                archive.append(disk, name, top)?;
            }
        }
        archive.builder.finish().map_err(|e| ResourceError::msg(format!("finishing the archive: {e}")))
    }

    fn sync_check_apply(&self, apply: bool) -> ResResult<Changes> {
        let path = PathBuf::from(self.path());
        sync_output(&path, apply, |w| self.build(w), |exists| match exists {
            true => format!("rewrite {} (it differs from the inputs' archive)", path.display()),
            false => format!("create {} from {}", path.display(), crate::text::count(self.inputs.len(), "input")),
        })
    }
}

#[async_trait]
impl Resource for Tar {
    crate::resource_common!("tar");

    fn validate(&self) -> Result<(), ValidationError> {
        let field = if self.path.is_some() { "path" } else { "name" };
        let output = validate_output(field, self.path())?;
        if ![FORMAT_UNKNOWN, FORMAT_USTAR, FORMAT_PAX, FORMAT_GNU].contains(&self.format) {
            return Err(ValidationError::new(
                "format",
                format!("{} is not a format: 0 (unknown), 2 (ustar), 4 (pax) or 8 (gnu)", self.format),
            ));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let p = AbsPath::parse(input)
                .map_err(|e| ValidationError::new("inputs", format!("#{i} `{}` {e}", input.escape_debug())))?;
            if p.is_root() {
                return Err(ValidationError::new("inputs", format!("#{i}: refusing to archive `/`")));
            }
            if output_inside(&output, &p) {
                return Err(ValidationError::new(
                    "inputs",
                    format!("#{i} `{input}` holds the archive `{}`, which would archive itself", self.path()),
                ));
            }
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        let mut subs = vec![ctx.fs.subscribe(Scope::File(self.path().into()), ctx.waker.clone()).await];
        for input in &self.inputs {
            let p = PathBuf::from(input.trim_end_matches('/'));
            let scope = if input.ends_with('/') || p.is_dir() { Scope::Tree(p) } else { Scope::File(p) };
            subs.push(ctx.fs.subscribe(scope, ctx.waker.clone()).await);
        }
        let waited = ctx.first_event_then_wait().await;
        drop(subs);
        waited
    }

    async fn check_apply(&self, _ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.sync_check_apply(apply))
            .await
            .map_err(|e| ResourceError::msg(format!("tar check panicked: {e}")))?
    }

    /// The archive is this resource's; the inputs' resources and the archive's directory's
    /// are applied first.
    fn autoedges(&self) -> AutoEdgeInfo {
        output_autoedges(self.path(), self.inputs.iter().map(String::as_str))
    }
}

/// An archive's autoedges: it provides `output` and needs its directory and its inputs.
pub fn output_autoedges<'a>(output: &str, inputs: impl Iterator<Item = &'a str>) -> AutoEdgeInfo {
    let Ok(out) = AbsPath::parse(output) else { return AutoEdgeInfo::default() };
    let target = out.target();
    let mut requires: Vec<PathBuf> =
        inputs.filter_map(|i| AbsPath::parse(i).ok()).map(|p| PathBuf::from(p.as_str())).collect();
    if let Some(dir) = target.parent() {
        requires.push(dir.join(""));
    }
    AutoEdgeInfo { provides: vec![target], requires }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(inputs: &[&str], path: &str) -> Tar {
        Tar {
            name: path.into(),
            meta: Meta::default(),
            path: None,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            format: 0,
        }
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_records(&[("path", b"abc")]), b"12 path=abc\n");
        let long = "x".repeat(95);
        let r = pax_records(&[("path", long.as_bytes())]);
        assert_eq!(r.len(), 105);
        assert!(r.starts_with(b"105 path="));
        // Where the length's own digits tip it over to one more digit.
        let tipping = "x".repeat(91);
        assert!(pax_records(&[("path", tipping.as_bytes())]).starts_with(b"101 path="));
    }

    #[test]
    fn an_archive_inside_its_inputs_is_refused() {
        assert_eq!(tar(&["/srv/data/"], "/srv/data/a.tar").validate().unwrap_err().field, "inputs");
        assert_eq!(tar(&["/srv/data"], "/srv/data/x/a.tar").validate().unwrap_err().field, "inputs");
        assert!(tar(&["/srv/data/", "/etc/hosts"], "/srv/data.tar").validate().is_ok());
        assert_eq!(tar(&["rel/"], "/a.tar").validate().unwrap_err().field, "inputs");
        assert_eq!(tar(&[], "/a/").validate().unwrap_err().field, "name");
        let mut t = tar(&[], "/a.tar");
        t.format = 3;
        assert_eq!(t.validate().unwrap_err().field, "format");
    }

    #[test]
    fn the_same_inputs_make_the_same_bytes_and_only_them_match() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("in/sub")).unwrap();
        fs::write(d.join("in/b"), "b").unwrap();
        fs::write(d.join("in/sub/a"), "a").unwrap();
        fs::write(d.join("f"), "f").unwrap();
        let out = d.join("o.tar");
        let t = tar(&[&format!("{}/in", d.display()), &format!("{}/f", d.display())], out.to_str().unwrap());
        let mut one = Vec::new();
        t.build(&mut one).unwrap();
        let mut two = Vec::new();
        t.build(&mut two).unwrap();
        assert_eq!(one, two);
        let names: Vec<String> = ::tar::Archive::new(one.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["in/", "in/b", "in/sub/", "in/sub/a", "f"]);
        assert!(!output_matches(&out, |w| t.build(w)).unwrap());
        write_output(&out, |w| t.build(w)).unwrap();
        assert_eq!(fs::read(&out).unwrap(), one);
        assert!(output_matches(&out, |w| t.build(w)).unwrap());
        fs::write(d.join("in/b"), "B").unwrap();
        assert!(!output_matches(&out, |w| t.build(w)).unwrap());
    }

    #[test]
    fn long_names_take_pax_records_or_gnu_entries_and_ustar_refuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("n".repeat(200));
        fs::write(&long, "x").unwrap();
        let mut t = tar(&[long.to_str().unwrap()], "/o.tar");
        for format in [FORMAT_UNKNOWN, FORMAT_PAX, FORMAT_GNU] {
            t.format = format;
            let mut out = Vec::new();
            t.build(&mut out).unwrap();
            let mut a = ::tar::Archive::new(out.as_slice());
            let names: Vec<String> =
                a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
            assert_eq!(names, ["n".repeat(200)], "format {format}");
        }
        t.format = FORMAT_USTAR;
        assert!(t.build(&mut Vec::new()).unwrap_err().to_string().contains("too long for ustar"));
    }

    #[test]
    fn a_failed_build_leaves_the_old_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o");
        fs::write(&out, "old").unwrap();
        let r = write_output(&out, |w| {
            w.write_all(b"partial").map_err(|e| ResourceError::io("w", e))?;
            Err(ResourceError::msg("input vanished"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read_to_string(&out).unwrap(), "old");
    }
}
