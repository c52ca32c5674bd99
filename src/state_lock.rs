//! The lock of a state directory: one process per state directory (ARCHITECTURE.md,
//! invariant 10).
//!
//! `c42fwd run` and the checkpoint commands that write (`reset`, `set`) take an
//! exclusive lock (`flock` on Unix, `LockFileEx` on Windows, through `fs4`) on
//! `<state_dir>/lock` and hold it for as long as they run. The operating system's lock
//! is the truth: it is released when the process ends, however it ends (a SIGKILL, a
//! crash), so there is no stale lock to clean up. The file holds the holder's process
//! id, written after the lock was taken; it is information for the message that
//! refuses a second process, never what decides.
//!
//! `c42fwd replay` takes a lock of its own, `<state_dir>/replay/lock` ([`acquire_replay`]),
//! the same way: two replays on one state directory would advance the same replay
//! checkpoints and re-drive the same dead-letter files, but a replay of exports may run
//! beside the daemon (it writes only under `<state_dir>/replay/`, apart from the sinks'
//! dead-letter files, which are safe to share: `sinks::dead_letter`). A dead-letter
//! re-drive renames a file the daemon's sink appends to, so it takes the daemon's lock
//! too (`cli/replay.rs`).
//!
//! Not here: what the state directory holds (`checkpoint`, `sinks::dead_letter`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The name of the lock file inside the state directory.
pub const LOCK_FILE: &str = "lock";
/// The replay lock, inside the state directory.
pub const REPLAY_LOCK_FILE: &str = "replay/lock";

/// The lock, held while this value lives.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "state directory {} is in use by another c42fwd process ({}): only one process may use a state directory; stop that one first",
        dir.display(),
        pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"))
    )]
    Held { dir: PathBuf, pid: Option<u32> },
    /// Another replay holds the replay lock.
    #[error(
        "state directory {} is in use by another c42fwd replay ({}): only one replay at a time may use a state directory's replay checkpoints and dead-letter files; wait for it to end or stop it first",
        dir.display(),
        pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"))
    )]
    ReplayHeld { dir: PathBuf, pid: Option<u32> },
    #[error("cannot lock state directory {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Takes the exclusive lock of `state_dir` (created if missing) without waiting, and
/// writes this process's id into the lock file.
pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
    let path = state_dir.join(LOCK_FILE);
    std::fs::create_dir_all(state_dir).map_err(|source| LockError::Io {
        path: path.clone(),
        source,
    })?;
    lock(path, |pid| LockError::Held {
        dir: state_dir.to_path_buf(),
        pid,
    })
}

/// Takes the replay lock of `state_dir` (`<state_dir>/replay/lock`; the directories
/// created if missing, `replay/` 0700) without waiting, and writes this process's id
/// into it. Independent of [`acquire`]: a replay may run beside the daemon.
pub fn acquire_replay(state_dir: &Path) -> Result<StateLock, LockError> {
    let path = state_dir.join(REPLAY_LOCK_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(state_dir)
            .and_then(|()| crate::checkpoint::create_private_dir(dir))
            .map_err(|source| LockError::Io {
                path: path.clone(),
                source,
            })?;
    }
    lock(path, |pid| LockError::ReplayHeld {
        dir: state_dir.to_path_buf(),
        pid,
    })
}

/// Locks the file at `path` (created 0600 if missing); `held` makes the error when
/// another process holds it.
fn lock(
    path: PathBuf,
    held: impl FnOnce(Option<u32>) -> LockError,
) -> Result<StateLock, LockError> {
    let io_err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut opts = OpenOptions::new();
    // Never truncate on open: the file holds the holder's pid until we hold the lock.
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&path).map_err(io_err)?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => return Err(held(read_pid(&mut file))),
        Err(fs4::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    let pid = std::process::id();
    let write = |f: &mut File| -> io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{pid}")?;
        f.sync_all()
    };
    write(&mut file).map_err(io_err)?;
    Ok(StateLock { _file: file, path })
}

/// The process id in a lock file, when it holds one.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_directory_and_the_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let held = acquire(&state).unwrap();
        let text = std::fs::read_to_string(held.path()).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        // flock locks belong to the open file: a second open in this process conflicts
        // as another process would.
        let err = acquire(&state).unwrap_err();
        assert!(
            matches!(err, LockError::Held { pid: Some(p), .. } if p == std::process::id()),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&state.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(held);
        let again = acquire(&state).unwrap();
        drop(again);
    }

    #[test]
    fn the_replay_lock_is_its_own_and_refuses_a_second_replay_naming_the_directory_and_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let daemon = acquire(&state).unwrap();
        // Beside the daemon's lock.
        let replay = acquire_replay(&state).unwrap();
        assert_eq!(replay.path(), state.join("replay").join("lock"));
        let err = acquire_replay(&state).unwrap_err();
        assert!(
            matches!(err, LockError::ReplayHeld { pid: Some(p), .. } if p == std::process::id()),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&state.display().to_string()), "{msg}");
        assert!(msg.contains("another c42fwd replay"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        // The daemon's lock is untouched by the replay's.
        assert!(matches!(acquire(&state), Err(LockError::Held { .. })));
        drop(daemon);
        drop(replay);
        drop(acquire_replay(&state).unwrap());
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_does_not_hold_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999\n").unwrap();
        let lock = acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
    }
}
