//! Replay checkpoints: how far a replay of one input file got, so that a second run
//! with the same arguments goes on from there.
//!
//! One file per input file, `<state_dir>/replay/checkpoints/<id>.json`, where `<id>` is
//! the xxh3 of the input's absolute path (hex):
//!
//! ```json
//! {"version":1,"path":"/archive/audit-2024-05.jsonl.gz","size":123456,
//!  "head":"9f86d081884c7d65","items":5000,"line":5003,"complete":false,
//!  "updated_at":"2024-05-01T10:05:00Z"}
//! ```
//!
//! A file is identified by its path, its size and the xxh3 of its first
//! [`HEAD_BYTES`] bytes (`head`): a file that was changed or replaced since (another
//! size, other first bytes) is read anew from its start. `items` counts the items of
//! the file (records and rejected lines, in file order) whose fate is settled: every
//! record among them was acknowledged by every sink (or skipped by a filter or as a
//! duplicate), every rejected line was written to the rejects file. `line` is the
//! input line of the last of them, for people. `complete` is set when the whole file
//! was settled.
//!
//! **Invariant:** the checkpoint only moves forward over acknowledged items, in file
//! order (the engine commits in order, ARCHITECTURE.md invariant 1), and is replaced
//! atomically (`crate::checkpoint::replace_atomically`). Files are 0600 in a 0700
//! directory. Standard input has no identity and no checkpoint.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// How many leading bytes of a file identify it beside its path and size.
pub const HEAD_BYTES: usize = 64 * 1024;

/// The format version this build writes and reads.
const VERSION: u32 = 1;

/// What identifies one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The absolute path.
    pub path: PathBuf,
    pub size: u64,
    /// xxh3 of the first [`HEAD_BYTES`] bytes.
    pub head: u64,
}

impl Identity {
    /// Reads the identity of the file at `path` (its size and first bytes).
    pub fn of(path: &Path) -> std::io::Result<Identity> {
        let abs = std::path::absolute(path)?;
        let mut f = std::fs::File::open(path)?;
        let size = f.metadata()?.len();
        let mut head = Vec::with_capacity(HEAD_BYTES);
        (&mut f).take(HEAD_BYTES as u64).read_to_end(&mut head)?;
        Ok(Identity {
            path: abs,
            size,
            head: xxhash_rust::xxh3::xxh3_64(&head),
        })
    }
}

/// Where a replay of one file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Items settled, from the start of the file.
    pub items: u64,
    /// The input line of the last settled item.
    pub line: u64,
    /// The whole file is settled.
    pub complete: bool,
}

#[derive(Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    path: String,
    size: u64,
    head: String,
    items: u64,
    line: u64,
    complete: bool,
    updated_at: String,
}

/// The replay checkpoints of one state directory.
#[derive(Debug, Clone)]
pub struct ReplayStore {
    dir: PathBuf,
}

/// What a stored checkpoint said about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// No checkpoint: a first replay of this file.
    None,
    /// A checkpoint of this very file.
    Same(Progress),
    /// A checkpoint of this path, but the file changed since (size or first bytes):
    /// it is read anew.
    Changed,
}

impl ReplayStore {
    /// Opens (creating, 0700) `<state_dir>/replay/checkpoints`.
    pub fn open(state_dir: &Path) -> std::io::Result<ReplayStore> {
        let dir = state_dir.join("replay").join("checkpoints");
        crate::checkpoint::create_private_dir(&state_dir.join("replay"))?;
        crate::checkpoint::create_private_dir(&dir)?;
        Ok(ReplayStore { dir })
    }

    fn name(id: &Identity) -> String {
        format!(
            "{:016x}.json",
            xxhash_rust::xxh3::xxh3_64(id.path.as_os_str().as_encoded_bytes())
        )
    }

    /// The checkpoint file of `id`.
    pub fn path(&self, id: &Identity) -> PathBuf {
        self.dir.join(Self::name(id))
    }

    /// The stored progress of `id`. A checkpoint that cannot be read or parsed is an
    /// error naming its file.
    pub fn load(&self, id: &Identity) -> Result<Stored, String> {
        let path = self.path(id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Stored::None),
            Err(e) => {
                return Err(format!(
                    "cannot read replay checkpoint {}: {e}",
                    path.display()
                ))
            }
        };
        let f: FileV1 = serde_json::from_slice(&bytes)
            .map_err(|e| format!("replay checkpoint {} is corrupt: {e}", path.display()))?;
        if f.version != VERSION {
            return Err(format!(
                "replay checkpoint {} has version {}, this build reads {VERSION}",
                path.display(),
                f.version
            ));
        }
        if Path::new(&f.path) != id.path {
            // Two paths with one hash: treat as none (and overwrite).
            return Ok(Stored::None);
        }
        if f.size != id.size || f.head != format!("{:016x}", id.head) {
            return Ok(Stored::Changed);
        }
        Ok(Stored::Same(Progress {
            items: f.items,
            line: f.line,
            complete: f.complete,
        }))
    }

    /// Replaces the checkpoint of `id` atomically.
    pub fn save(&self, id: &Identity, p: Progress) -> Result<(), String> {
        let f = FileV1 {
            version: VERSION,
            path: id.path.to_string_lossy().into_owned(),
            size: id.size,
            head: format!("{:016x}", id.head),
            items: p.items,
            line: p.line,
            complete: p.complete,
            updated_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        let mut bytes = serde_json::to_vec(&f).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        crate::checkpoint::replace_atomically(&self.dir, &Self::name(id), &bytes).map_err(|e| {
            format!(
                "cannot write replay checkpoint {}: {e}",
                self.path(id).display()
            )
        })
    }
}

/// `updated_at` is informational only; kept parseable for people and tools.
#[allow(dead_code)]
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_a_changed_file_is_read_anew() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, b"{\"a\":1}\n{\"a\":2}\n").unwrap();
        let store = ReplayStore::open(&dir.path().join("state")).unwrap();
        let id = Identity::of(&input).unwrap();
        assert_eq!(store.load(&id).unwrap(), Stored::None);
        let p = Progress {
            items: 1,
            line: 1,
            complete: false,
        };
        store.save(&id, p).unwrap();
        assert_eq!(store.load(&id).unwrap(), Stored::Same(p));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path(&id))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Same size, other first bytes.
        std::fs::write(&input, b"{\"a\":3}\n{\"a\":4}\n").unwrap();
        let changed = Identity::of(&input).unwrap();
        assert_eq!(changed.size, id.size);
        assert_eq!(store.load(&changed).unwrap(), Stored::Changed);
        // Grown.
        std::fs::write(&input, b"{\"a\":3}\n{\"a\":4}\n{\"a\":5}\n").unwrap();
        assert_eq!(
            store.load(&Identity::of(&input).unwrap()).unwrap(),
            Stored::Changed
        );
    }
}
