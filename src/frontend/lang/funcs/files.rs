//! Reading files for `os` and `deploy`: bounded in size, and for the deploy, confined to its
//! directory.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::super::value::CallError;
use super::args::MAX_FILE;

/// The file's text: at most [`MAX_FILE`] bytes, and valid UTF-8.
pub fn read_text(path: &Path) -> Result<String, CallError> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| CallError(format!("cannot read {shown}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CallError(format!("cannot read {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(CallError(format!("{shown} is larger than the limit of {MAX_FILE} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| CallError(format!("{shown} is not UTF-8 text")))
}

/// The real path of `path`, written from the deploy's root (`/files/a.txt`), below `root`:
/// a relative path, a `..` and a symlink leading outside the root are refused.
pub fn in_root(root: &Path, path: &str) -> Result<PathBuf, CallError> {
    if root.as_os_str().is_empty() {
        return Err(CallError::new("the program has no deploy directory to read from"));
    }
    let relative = path.strip_prefix('/').ok_or_else(|| {
        CallError(format!("the path must be absolute (from the deploy's root), got: `{path}`"))
    })?;
    let mut out = root.to_path_buf();
    for part in Path::new(relative).components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            _ => return Err(CallError(format!("the path `{path}` leaves the deploy"))),
        }
    }
    if let (Ok(real), Ok(real_root)) = (out.canonicalize(), root.canonicalize())
        && !real.starts_with(&real_root)
    {
        return Err(CallError(format!("the path `{path}` leads outside the deploy")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_below_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        std::fs::write(dir.path().join("files/a"), "hi").unwrap();
        assert_eq!(in_root(dir.path(), "/files/a").unwrap(), dir.path().join("files/a"));
        assert!(in_root(dir.path(), "files/a").is_err());
        assert!(in_root(Path::new(""), "/files/a").is_err());
        assert!(in_root(dir.path(), "/files/../../etc/passwd").is_err());
        std::os::unix::fs::symlink("/etc", dir.path().join("files/out")).unwrap();
        assert!(in_root(dir.path(), "/files/out/passwd").is_err());
        assert_eq!(read_text(&dir.path().join("files/a")).unwrap(), "hi");
        assert!(read_text(&dir.path().join("files/missing")).is_err());
    }
}
