//! The agent's local blob cache, `<prefix>/blobs/<sha256>`: every blob of a deploy it has
//! verified, so that the next deploy fetches from etcd only the blobs this host does not
//! have. Untrusted like etcd: a cached blob is used only after its size and sha256 are
//! checked again, and one that does not match is deleted. Private (`0700` directory, `0600`
//! files), written whole or not at all (a temporary file renamed into place), and bounded:
//! [`BlobCache::prune`] keeps only the blobs of the bundles kept unpacked.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{Mode, fchmod, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

use super::bundle::{CHUNK_SIZE, MAX_FILE_SIZE, MAX_MANIFEST_CHUNKS, Manifest, is_sha256_hex, sha256_hex};

const PRIVATE_DIR: u32 = 0o700;
const PRIVATE_FILE: u32 = 0o600;
/// Prefix of the temporary files of writes under way (removed by [`BlobCache::prune`]).
const TMP: &str = ".tmp-";

/// What the cache holds for a blob.
#[derive(Debug, PartialEq)]
pub enum Cached {
    Hit(Hit),
    Miss,
    /// A file was there but is not the blob (deleted; `String` says why).
    Bad(String),
}

/// A cached blob that verified: its bytes, and which file held them (device, inode), so
/// that a link to it can be checked to be that very file.
#[derive(Debug, PartialEq)]
pub struct Hit {
    pub data: Vec<u8>,
    file: (libc::dev_t, libc::ino_t),
}

pub struct BlobCache {
    dir: PathBuf,
    fd: OwnedFd,
}

impl BlobCache {
    /// `<prefix>/blobs/`, created private; one left wider is narrowed through a descriptor
    /// that does not follow a link (a symlink there is refused).
    pub fn open(prefix: &Path) -> std::io::Result<BlobCache> {
        let dir = prefix.join("blobs");
        match std::fs::DirBuilder::new().mode(PRIVATE_DIR).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = open(&dir, flags, Mode::empty())?;
        if fstat(&fd)?.st_mode & 0o7777 != PRIVATE_DIR {
            fchmod(&fd, Mode::from_bits_truncate(PRIVATE_DIR))?;
        }
        Ok(BlobCache { dir, fd })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The blob `sha` of `size` bytes, read (never through a link, never more than `size`
    /// bytes) and checked against its size and sha256. A file that is not the blob is
    /// deleted.
    pub fn get(&self, sha: &str, size: u64) -> Cached {
        if !is_sha256_hex(sha) || size > MAX_FILE_SIZE {
            return Cached::Miss;
        }
        match self.read(sha, size) {
            Ok(Some(hit)) if sha256_hex(&hit.data) == sha => Cached::Hit(hit),
            Ok(Some(_)) => self.discard(sha, "its bytes do not match its sha256".into()),
            Ok(None) => Cached::Miss,
            Err(why) => self.discard(sha, why),
        }
    }

    /// The manifest of bundle `bundle`, if it is cached and verifies (its sha256 is the
    /// bundle ID and it follows the bundle rules).
    pub fn manifest(&self, bundle: &str) -> Option<Manifest> {
        let max = (MAX_MANIFEST_CHUNKS * CHUNK_SIZE) as u64;
        let size = fstatat(&self.fd, bundle, AtFlags::AT_SYMLINK_NOFOLLOW)
            .ok()
            .map(|s| s.st_size as u64)
            .filter(|s| *s <= max)?;
        let Cached::Hit(hit) = self.get(bundle, size) else { return None };
        let m: Manifest = serde_json::from_slice(&hit.data).ok()?;
        (m.verify_id(bundle).is_ok() && m.check().is_ok()).then_some(m)
    }

    /// `Ok(None)`: no such file. `Err`: something is there that cannot be the blob.
    fn read(&self, sha: &str, size: u64) -> Result<Option<Hit>, String> {
        // Non-blocking: a FIFO planted there must not hang the agent.
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(&self.fd, sha, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(format!("cannot be opened as a file ({e})")),
        };
        let st = fstat(&fd).map_err(|e| e.to_string())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err("not a regular file".into());
        }
        if st.st_size as u64 != size {
            return Err(format!("{} bytes, not {size}", st.st_size));
        }
        let mut data = Vec::with_capacity(size as usize);
        std::fs::File::from(fd).take(size + 1).read_to_end(&mut data).map_err(|e| e.to_string())?;
        if data.len() as u64 != size {
            return Err(format!("{} bytes read, not {size}", data.len()));
        }
        Ok(Some(Hit { data, file: (st.st_dev, st.st_ino) }))
    }

    /// Link the cached blob `sha`, which verified as `hit`, as `name` in the directory `at`
    /// (a hard link: no copy, and far cheaper than creating a file). Only if it is still the
    /// very file that verified, a private regular file: otherwise the link is removed again
    /// and `false` says to write the blob instead.
    pub fn link_into(&self, sha: &str, hit: &Hit, at: &OwnedFd, name: &str) -> bool {
        if linkat(&self.fd, sha, at, name, AtFlags::empty()).is_err() {
            return false;
        }
        let same = fstatat(at, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
            st.st_mode & libc::S_IFMT == libc::S_IFREG
                && st.st_mode & 0o7777 == PRIVATE_FILE
                && (st.st_dev, st.st_ino) == hit.file
        });
        if !same {
            let _ = unlinkat(at, name, UnlinkatFlags::NoRemoveDir);
        }
        same
    }

    /// Keep the private file `name` in `at`, just written from a verified blob, as the cached
    /// blob `sha`: a hard link, no copy. A blob already cached stays as it is (it is
    /// verified when used).
    pub fn adopt(&self, at: &OwnedFd, name: &str, sha: &str) -> std::io::Result<()> {
        if !is_sha256_hex(sha) {
            return Err(std::io::Error::other(format!("`{sha}` is not a sha256")));
        }
        match linkat(at, name, &self.fd, sha, AtFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn discard(&self, sha: &str, why: String) -> Cached {
        let _ = unlinkat(&self.fd, sha, UnlinkatFlags::NoRemoveDir);
        Cached::Bad(why)
    }

    /// Keep a verified blob: written to a private temporary file, renamed into place. Not
    /// synced: a file cut short by a crash fails the check on the next read.
    pub fn put(&self, sha: &str, data: &[u8]) -> std::io::Result<()> {
        if !is_sha256_hex(sha) {
            return Err(std::io::Error::other(format!("`{sha}` is not a sha256")));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(TMP)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(PRIVATE_FILE))
            .tempfile_in(&self.dir)?;
        tmp.write_all(data)?;
        tmp.persist(self.dir.join(sha)).map_err(|e| e.error)?;
        Ok(())
    }

    /// Delete every cached blob not in `keep`, and any other entry (a leftover temporary
    /// file, anything put there by hand). Returns how many were deleted.
    pub fn prune(&self, keep: &HashSet<String>) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        let mut deleted = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if keep.contains(name.as_ref()) && e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(e.path())
            } else {
                std::fs::remove_file(e.path())
            };
            deleted += usize::from(removed.is_ok());
        }
        deleted
    }
}

/// What the cache must keep: the manifests of the bundles kept unpacked in `deploys` (the
/// directories named by a bundle ID) and every blob they list. A bundle whose manifest is
/// not cached keeps nothing: its blobs are fetched again if it is needed.
pub fn kept_blobs(cache: &BlobCache, deploys: &Path) -> HashSet<String> {
    let mut keep = HashSet::new();
    let Ok(entries) = std::fs::read_dir(deploys) else { return keep };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_sha256_hex(&name) {
            continue;
        }
        if let Some(m) = cache.manifest(&name) {
            keep.extend(m.files.into_iter().map(|f| f.sha256));
            keep.insert(name);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_cached_blob_is_used_only_while_it_verifies() {
        let t = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(t.path()).unwrap();
        let (data, sha) = (b"hello\n".to_vec(), sha256_hex(b"hello\n"));
        assert_eq!(cache.get(&sha, 6), Cached::Miss);
        cache.put(&sha, &data).unwrap();
        let meta = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(meta(cache.dir()), 0o700);
        assert_eq!(meta(&cache.dir().join(&sha)), 0o600);
        let Cached::Hit(hit) = cache.get(&sha, 6) else { panic!("not a hit") };
        assert_eq!(hit.data, data);
        // Linked, not copied; only while it is the file that verified.
        let dir = t.path().join("unpacked");
        std::fs::create_dir(&dir).unwrap();
        let at: OwnedFd = std::fs::File::open(&dir).unwrap().into();
        assert!(cache.link_into(&sha, &hit, &at, "a"));
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), data);
        std::fs::write(dir.join("b"), &data).unwrap();
        assert!(cache.adopt(&at, "b", &sha).is_ok(), "already cached: kept as it is");
        std::fs::remove_file(cache.dir().join(&sha)).unwrap();
        std::fs::copy(dir.join("b"), cache.dir().join(&sha)).unwrap();
        assert!(!cache.link_into(&sha, &hit, &at, "c"), "another file than the one that verified");
        assert!(!dir.join("c").exists());
        // Another size than the manifest's: not read, deleted.
        assert!(matches!(cache.get(&sha, 7), Cached::Bad(_)));
        assert_eq!(cache.get(&sha, 6), Cached::Miss);
        // Same size, other bytes.
        std::fs::write(cache.dir().join(&sha), b"HELLO\n").unwrap();
        assert!(matches!(cache.get(&sha, 6), Cached::Bad(_)));
        assert!(!cache.dir().join(&sha).exists());
        // A link is never followed.
        let target = t.path().join("target");
        std::fs::write(&target, &data).unwrap();
        std::os::unix::fs::symlink(&target, cache.dir().join(&sha)).unwrap();
        assert!(matches!(cache.get(&sha, 6), Cached::Bad(_)));
        assert!(target.exists());
        // Names that are not sha256s are never looked up.
        assert_eq!(cache.get("../target", 6), Cached::Miss);
        assert!(cache.put("../x", b"x").is_err());
    }

    #[test]
    fn pruning_keeps_only_what_kept_bundles_list() {
        let t = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(t.path()).unwrap();
        for d in [&b"a"[..], b"b", b"c"] {
            cache.put(&sha256_hex(d), d).unwrap();
        }
        std::fs::write(cache.dir().join(".tmp-left"), b"x").unwrap();
        let keep: HashSet<String> = [sha256_hex(b"a")].into();
        assert_eq!(cache.prune(&keep), 3);
        let left: Vec<String> = std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![sha256_hex(b"a")]);
    }

    #[test]
    fn a_wide_cache_directory_is_made_private() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("blobs")).unwrap();
        std::fs::set_permissions(t.path().join("blobs"), std::fs::Permissions::from_mode(0o777)).unwrap();
        BlobCache::open(t.path()).unwrap();
        let mode = std::fs::metadata(t.path().join("blobs")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }
}
