//! Starting commands outside the agent's process group.

/// Start `cmd` in a process group of its own, so that the agent can kill everything it starts
/// and a signal to the agent's group (Ctrl-C in a terminal) does not reach it.
///
/// The group is set in a `pre_exec` hook, which makes the standard library fork rather than
/// use `posix_spawn`. With `posix_spawn` the child joins its new group with every signal
/// blocked, so a Ctrl-C sent to the agent's group in that instant stays pending and kills the
/// command as soon as it unblocks them. After a fork the child handles such a signal with the
/// agent's inherited handler until it has left the group, and survives it.
pub fn own_process_group(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook calls only setpgid(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| if libc::setpgid(0, 0) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
    }
}
