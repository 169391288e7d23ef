//! `--ssh-control-persist SECONDS`: one SSH login shared by a user's commands, as OpenSSH's
//! ControlMaster with ControlPersist shares one.
//!
//! A command that finds no control socket logs in itself as usual (so its errors are its
//! own) and starts a background `mgmt ssh-control` with the same settings, which logs in,
//! listens on the socket and carries each connection asked of it over its session, until
//! it has been idle for the given time. Later commands connect through the socket: no
//! login of their own. The socket is in a directory of the user's only (0700, checked), and
//! the server takes only connections of its own user (the peer's credentials).
//!
//! On the socket a client writes `HOST PORT\n`; the server answers `ok\n` and the bytes then
//! flow to HOST:PORT as the SSH server resolves it, or `error WHY\n`.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

use super::{Settings, Tunnel};

/// The longest request line: a host name (at most 253 bytes), a space, a port.
const MAX_REQUEST: usize = 300;
/// How long a client waits for the server's answer (a channel open).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The control socket for `settings`: in `$XDG_RUNTIME_DIR/mgmt/`, else `/tmp/mgmt-UID/`;
/// named after what identifies the login (user, host, port, key, host key), so that
/// different settings never share one.
pub fn socket_path(settings: &Settings, runtime_dir: Option<&Path>, uid: u32) -> PathBuf {
    let dir = match runtime_dir {
        Some(d) => d.join("mgmt"),
        None => PathBuf::from(format!("/tmp/mgmt-{uid}")),
    };
    let mut h = Sha256::new();
    let t = &settings.target;
    for part in [
        t.user.as_str(),
        t.host.as_str(),
        &t.port.to_string(),
        &settings.identity.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        settings.hostkey.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    dir.join(format!("ssh-{}.sock", &hex::encode(h.finalize())[..16]))
}

/// The socket of this process's user for `settings`.
pub fn socket_of(settings: &Settings) -> PathBuf {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute());
    socket_path(settings, runtime.as_deref(), nix::unistd::getuid().as_raw())
}

/// The socket's directory, made 0700 if missing; refused unless it is ours and only ours.
fn private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let m = std::fs::symlink_metadata(dir)?;
    let ours = m.uid() == nix::unistd::getuid().as_raw();
    if !m.is_dir() || !ours || m.mode() & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} is not a directory of this user's only (0700): not used for SSH control sockets",
            dir.display()
        )));
    }
    Ok(())
}

/// A stream to `host:port` through the control socket at `path`, if a server answers there.
pub async fn connect(path: &Path, host: &str, port: u16) -> io::Result<UnixStream> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let mut s = UnixStream::connect(path).await?;
    s.write_all(format!("{host} {port}\n").as_bytes()).await?;
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, read_line(&mut s))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer from the SSH control socket"))??;
    match answer.strip_prefix("error ") {
        None if answer == "ok" => Ok(s),
        Some(why) => Err(io::Error::other(why.to_string())),
        None => Err(io::Error::other(format!("unexpected answer `{answer}` on the SSH control socket"))),
    }
}

/// One line (without its newline), at most [`MAX_REQUEST`] bytes, read a byte at a time so
/// that nothing after it is consumed.
async fn read_line(s: &mut UnixStream) -> io::Result<String> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    loop {
        let b = s.read_u8().await?;
        if b == b'\n' {
            return String::from_utf8(line).map_err(|_| io::Error::other("a line that is not UTF-8"));
        }
        if line.len() >= MAX_REQUEST {
            return Err(io::Error::other("a line too long"));
        }
        line.push(b);
    }
}

/// Start `mgmt ssh-control` in the background with these flags (the command's own SSH
/// flags), detached from the command's terminal and process group. Best effort.
pub fn spawn_server(flags: &[String]) {
    let Ok(exe) = std::env::current_exe() else { return };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("ssh-control")
        .args(flags)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::os::spawn::own_process_group(&mut cmd);
    if let Err(e) = cmd.spawn() {
        debug!("starting the SSH control server: {e}");
    }
}

/// The flags that start a server with `settings`, held `persist`.
pub fn server_flags(settings: &Settings, persist: Duration) -> Vec<String> {
    let t = &settings.target;
    let mut f = vec![
        "--ssh-url".to_string(),
        format!("{}@{}", t.user, super::join_host_port(&t.host, t.port)),
        "--ssh-control-persist".to_string(),
        persist.as_secs().to_string(),
    ];
    if let Some(id) = &settings.identity {
        f.extend(["--ssh-id".to_string(), id.display().to_string()]);
    }
    if let Some(k) = &settings.hostkey {
        f.extend(["--ssh-hostkey".to_string(), k.clone()]);
    }
    if settings.accept_new {
        f.push("--ssh-accept-new".to_string());
    }
    f
}

/// Serve the control socket of `tunnel` until it has carried nothing for `persist`.
pub async fn serve(tunnel: Arc<Tunnel>, persist: Duration) -> io::Result<()> {
    let path = socket_of(&tunnel.settings);
    let dir = path.parent().ok_or_else(|| io::Error::other("no directory"))?;
    private_dir(dir)?;
    if UnixStream::connect(&path).await.is_ok() {
        debug!("an SSH control server answers at {} already", path.display());
        return Ok(());
    }
    // A socket left by a server that died.
    let _ = std::fs::remove_file(&path);
    // Logged in before listening: a server that cannot log in serves no one.
    tunnel.warm_up().await.map_err(io::Error::other)?;
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    info!(
        "SSH control socket {} for {}, held {persist:?} after its last use",
        path.display(),
        tunnel.target()
    );
    let active = Arc::new(AtomicUsize::new(0));
    let mut idle_since = tokio::time::Instant::now();
    let me = nix::unistd::getuid().as_raw();
    loop {
        let check = tokio::time::sleep(Duration::from_millis(500));
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((conn, _)) = accepted else { continue };
                if conn.peer_cred().map(|c| c.uid()).ok() != Some(me) {
                    warn!("refused a connection to the SSH control socket from another user");
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (tunnel, active) = (tunnel.clone(), active.clone());
                tokio::spawn(async move {
                    carry(conn, &tunnel).await;
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
            _ = check => {}
        }
        if active.load(Ordering::SeqCst) > 0 {
            idle_since = tokio::time::Instant::now();
        } else if idle_since.elapsed() >= persist {
            break;
        }
    }
    // Only our own socket: another server may have replaced it meanwhile.
    drop(listener);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// One client: its request, then its bytes both ways over a channel.
async fn carry(mut conn: UnixStream, tunnel: &Tunnel) {
    let request = match tokio::time::timeout(ANSWER_TIMEOUT, read_line(&mut conn)).await {
        Ok(Ok(line)) => line,
        _ => return,
    };
    let Some((host, port)) = request.split_once(' ').and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
    else {
        let _ = conn.write_all(b"error a request is `HOST PORT`\n").await;
        return;
    };
    match tunnel.channel(host, port).await {
        Ok(mut channel) => {
            if conn.write_all(b"ok\n").await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut channel).await;
            }
        }
        Err(e) => {
            let _ = conn.write_all(format!("error {e}\n").as_bytes()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Target;
    use super::*;

    fn settings(user: &str, id: Option<&str>) -> Settings {
        Settings {
            target: Target { user: user.into(), host: "h".into(), port: 22 },
            identity: id.map(PathBuf::from),
            hostkey: None,
            accept_new: false,
            control_persist: None,
        }
    }

    #[test]
    fn each_login_has_its_own_socket_in_a_private_directory() {
        let run = Path::new("/run/user/1000");
        let a = socket_path(&settings("root", None), Some(run), 1000);
        assert_eq!(a.parent(), Some(Path::new("/run/user/1000/mgmt")));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("ssh-") && name.ends_with(".sock"), "{name}");
        assert_eq!(a, socket_path(&settings("root", None), Some(run), 1000), "stable");
        assert_ne!(a, socket_path(&settings("deploy", None), Some(run), 1000), "another user");
        assert_ne!(a, socket_path(&settings("root", Some("/k")), Some(run), 1000), "another key");
        assert!(socket_path(&settings("root", None), None, 1000).starts_with("/tmp/mgmt-1000/"));
    }

    #[test]
    fn a_server_is_started_with_the_same_login() {
        let mut s = settings("root", Some("/k"));
        s.hostkey = Some("ssh-ed25519 AAAA".into());
        let f = server_flags(&s, Duration::from_secs(60));
        assert_eq!(
            f,
            [
                "--ssh-url",
                "root@h:22",
                "--ssh-control-persist",
                "60",
                "--ssh-id",
                "/k",
                "--ssh-hostkey",
                "ssh-ed25519 AAAA"
            ]
        );
    }
}
