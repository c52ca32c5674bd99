//! Per-source checkpoint files: the durable cursor of each poller.
//!
//! One file per source, `<state_dir>/checkpoints/<source>.json`, in a versioned JSON
//! format:
//!
//! ```json
//! {"version":1,"source":"audit","kind":"audit_log",
//!  "watermark":"2024-05-01T10:00:00.123456789Z",
//!  "fingerprints":[{"hash":"9f86d081884c7d65","time":"2024-05-01T10:00:00.5Z","count":1}],
//!  "updated_at":"2024-05-01T10:05:00Z"}
//! ```
//!
//! `watermark` and `fingerprints` are the window state of DESIGN invariant 2 (see
//! [`crate::sources::window`]): every event that occurred before the watermark was
//! delivered, and the fingerprints (xxh3 of the raw JSON, with how many byte-identical
//! copies were delivered) cover the delivered events at or after it.
//!
//! **Invariant:** a save replaces the file atomically (temp file, fsync, rename, fsync of
//! the directory): after a crash the file holds either the old or the new checkpoint,
//! never a mix. The store never holds secrets: it only ever receives times, counts and
//! hashes.
//!
//! This module does not decide *when* to save (the poller commits only delivered
//! prefixes, DESIGN invariant 1) and does not interpret the window state.

use crate::event::SourceKind;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The checkpoint format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Errors of the checkpoint store. Every one names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot create checkpoint directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read checkpoint {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write checkpoint {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot remove checkpoint {}: {source}", path.display())]
    Remove { path: PathBuf, source: io::Error },
    #[error("checkpoint {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "checkpoint {} has format version {found}, this build reads version {FORMAT_VERSION}",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: u64 },
    #[error(
        "checkpoint {} belongs to source {found:?}, not {expected:?}",
        path.display()
    )]
    WrongSource {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "invalid source name {0:?} for a checkpoint file (letters, digits, '-', '_' and '.' only)"
    )]
    InvalidName(String),
}

/// One fingerprint kept in a checkpoint: `count` byte-identical events with this hash
/// that occurred at `time` were delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenEvent {
    pub hash: u64,
    pub time: DateTime<Utc>,
    pub count: u32,
}

/// The durable state of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub source: String,
    pub kind: SourceKind,
    /// Every event that occurred before this time was delivered.
    pub watermark: DateTime<Utc>,
    /// Delivered events at or after the watermark, sorted by (time, hash).
    pub fingerprints: Vec<SeenEvent>,
    pub updated_at: DateTime<Utc>,
}

/// The checkpoints of one state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

// The on-disk shape. Kept separate from `Checkpoint` so that the file format is spelled
// out in one place and can evolve with `version`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    version: u32,
    source: String,
    kind: SourceKind,
    watermark: String,
    fingerprints: Vec<FileSeen>,
    updated_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSeen {
    /// 16 lowercase hex digits.
    hash: String,
    time: String,
    count: u32,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: Option<serde_json::Value>,
}

fn fmt_time(t: DateTime<Utc>) -> String {
    // Nanoseconds are kept: checkpoint boundaries at sub-millisecond timestamps are
    // exactly where the peers lose or duplicate events.
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn parse_time(path: &Path, field: &str, s: &str) -> Result<DateTime<Utc>, CheckpointError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{field}: {s:?} is not an RFC 3339 time ({e})"),
        })
}

/// Source names become file names: keep them to a portable, traversal-free alphabet.
fn check_name(source: &str) -> Result<(), CheckpointError> {
    if crate::config::validate::valid_name(source) {
        Ok(())
    } else {
        Err(CheckpointError::InvalidName(source.to_string()))
    }
}

impl Store {
    /// Opens (and creates if needed) `<state_dir>/checkpoints`.
    pub fn open(state_dir: impl AsRef<Path>) -> Result<Store, CheckpointError> {
        let dir = state_dir.as_ref().join("checkpoints");
        fs::create_dir_all(&dir).map_err(|source| CheckpointError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Store { dir })
    }

    /// The directory holding the checkpoint files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of one source.
    pub fn path(&self, source: &str) -> Result<PathBuf, CheckpointError> {
        check_name(source)?;
        Ok(self.dir.join(format!("{source}.json")))
    }

    /// The checkpoint of `source`, or `None` when it has none yet.
    pub fn load(&self, source: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = self.path(source)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Read { path, source }),
        };
        let cp = decode(&path, &bytes)?;
        if cp.source != source {
            return Err(CheckpointError::WrongSource {
                path,
                expected: source.to_string(),
                found: cp.source,
            });
        }
        Ok(Some(cp))
    }

    /// Replaces the checkpoint of `source` atomically (see the module invariant).
    pub fn save(&self, source: &str, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let path = self.path(source)?;
        let file = FileV1 {
            version: FORMAT_VERSION,
            source: source.to_string(),
            kind: cp.kind,
            watermark: fmt_time(cp.watermark),
            fingerprints: cp
                .fingerprints
                .iter()
                .map(|s| FileSeen {
                    hash: format!("{:016x}", s.hash),
                    time: fmt_time(s.time),
                    count: s.count,
                })
                .collect(),
            updated_at: fmt_time(cp.updated_at),
        };
        let mut bytes = serde_json::to_vec(&file).map_err(|e| CheckpointError::Write {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        // The temp file lives in the same directory so that the rename is atomic; its
        // name starts with a dot so that `list` never mistakes it for a checkpoint.
        let tmp = self.dir.join(format!(".{source}.json.tmp"));
        let werr = |source| CheckpointError::Write {
            path: path.clone(),
            source,
        };
        write_synced(&tmp, &bytes).map_err(werr)?;
        fs::rename(&tmp, &path).map_err(werr)?;
        sync_dir(&self.dir).map_err(werr)?;
        Ok(())
    }

    /// The names of the sources that have a checkpoint, sorted.
    pub fn list(&self) -> Result<Vec<String>, CheckpointError> {
        let rerr = |source| CheckpointError::Read {
            path: self.dir.clone(),
            source,
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(rerr)? {
            let entry = entry.map_err(rerr)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".json") {
                if check_name(stem).is_ok() {
                    names.push(stem.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Deletes the checkpoint of `source`; the source then starts from its configured
    /// start position. Returns whether there was one.
    pub fn reset(&self, source: &str) -> Result<bool, CheckpointError> {
        let path = self.path(source)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.dir).map_err(|source| CheckpointError::Remove {
                    path: path.clone(),
                    source,
                })?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(CheckpointError::Remove { path, source }),
        }
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    // Look at the version first, so that a file from a newer build is reported as such
    // and not as a pile of unknown fields.
    let v: VersionOnly = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    match v.version {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(FORMAT_VERSION)) => {}
        Some(serde_json::Value::Number(n)) => {
            return Err(match n.as_u64() {
                Some(found) => CheckpointError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found,
                },
                None => corrupt(format!("version {n} is not a format version")),
            })
        }
        Some(other) => return Err(corrupt(format!("version {other} is not a number"))),
        None => return Err(corrupt("no \"version\" field".to_string())),
    }
    let f: FileV1 = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut fingerprints = Vec::with_capacity(f.fingerprints.len());
    for s in &f.fingerprints {
        let hash = u64::from_str_radix(&s.hash, 16)
            .ok()
            .filter(|_| s.hash.len() == 16)
            .ok_or_else(|| corrupt(format!("fingerprint {:?} is not 16 hex digits", s.hash)))?;
        if s.count == 0 {
            return Err(corrupt(format!("fingerprint {} has count 0", s.hash)));
        }
        fingerprints.push(SeenEvent {
            hash,
            time: parse_time(path, "fingerprints.time", &s.time)?,
            count: s.count,
        });
    }
    Ok(Checkpoint {
        source: f.source,
        kind: f.kind,
        watermark: parse_time(path, "watermark", &f.watermark)?,
        fingerprints,
        updated_at: parse_time(path, "updated_at", &f.updated_at)?,
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes a rename or removal in `dir` durable. On platforms where a directory cannot be
/// opened for syncing this is a no-op: the rename is still atomic, only its durability
/// across a power loss is weaker.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, File::open);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sample(source: &str) -> Checkpoint {
        Checkpoint {
            source: source.to_string(),
            kind: SourceKind::AuditLog,
            watermark: t("2024-05-01T10:00:00.123456789Z"),
            fingerprints: vec![
                SeenEvent {
                    hash: 0x0123_4567_89ab_cdef,
                    time: t("2024-05-01T10:00:00.123456789Z"),
                    count: 2,
                },
                SeenEvent {
                    hash: u64::MAX,
                    time: t("2024-05-01T10:00:01Z"),
                    count: 1,
                },
            ],
            updated_at: Utc.with_ymd_and_hms(2024, 5, 1, 10, 5, 0).unwrap(),
        }
    }

    #[test]
    fn save_then_load_round_trips_with_nanoseconds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load("audit").unwrap(), None);
        let cp = sample("audit");
        store.save("audit", &cp).unwrap();
        assert_eq!(store.load("audit").unwrap(), Some(cp));
    }

    #[test]
    fn file_format_is_versioned_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.save("audit", &sample("audit")).unwrap();
        let text = fs::read_to_string(dir.path().join("checkpoints/audit.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["source"], "audit");
        assert_eq!(v["kind"], "audit_log");
        assert_eq!(v["watermark"], "2024-05-01T10:00:00.123456789Z");
        assert_eq!(v["fingerprints"][0]["hash"], "0123456789abcdef");
        assert_eq!(v["fingerprints"][0]["count"], 2);
        assert_eq!(v["updated_at"], "2024-05-01T10:05:00Z");
    }

    #[test]
    fn save_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut cp = sample("audit");
        store.save("audit", &cp).unwrap();
        cp.watermark = t("2024-05-02T00:00:00Z");
        cp.fingerprints.clear();
        store.save("audit", &cp).unwrap();
        assert_eq!(store.load("audit").unwrap(), Some(cp));
        let names: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["audit.json".to_string()]);
    }

    #[test]
    fn a_stale_temp_file_from_a_crash_is_ignored() {
        // A crash between writing the temp file and the rename leaves the temp file
        // behind: the old checkpoint must still be the one that loads.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cp = sample("audit");
        store.save("audit", &cp).unwrap();
        fs::write(store.dir().join(".audit.json.tmp"), b"{\"version\":1, half").unwrap();
        assert_eq!(store.load("audit").unwrap(), Some(cp.clone()));
        assert_eq!(store.list().unwrap(), vec!["audit".to_string()]);
        // and the next save overwrites it
        store.save("audit", &cp).unwrap();
        assert_eq!(store.load("audit").unwrap(), Some(cp));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(store.dir().join("audit.json"), b"{\"version\":1,").unwrap();
        let err = store.load("audit").unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("audit.json") && msg.contains("corrupt"),
            "{msg}"
        );

        fs::write(
            store.dir().join("audit.json"),
            br#"{"version":1,"source":"audit","kind":"audit_log","watermark":"yesterday","fingerprints":[],"updated_at":"2024-05-01T10:05:00Z"}"#,
        )
        .unwrap();
        let msg = store.load("audit").unwrap_err().to_string();
        assert!(
            msg.contains("watermark") && msg.contains("yesterday"),
            "{msg}"
        );

        fs::write(
            store.dir().join("audit.json"),
            br#"{"version":1,"source":"audit","kind":"audit_log","watermark":"2024-05-01T10:05:00Z","fingerprints":[{"hash":"xyz","time":"2024-05-01T10:05:00Z","count":1}],"updated_at":"2024-05-01T10:05:00Z"}"#,
        )
        .unwrap();
        let msg = store.load("audit").unwrap_err().to_string();
        assert!(msg.contains("16 hex digits"), "{msg}");
    }

    #[test]
    fn unsupported_version_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(
            store.dir().join("audit.json"),
            br#"{"version":7,"whatever":true}"#,
        )
        .unwrap();
        let err = store.load("audit").unwrap_err();
        assert!(
            matches!(err, CheckpointError::UnsupportedVersion { found: 7, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("version 7"), "{err}");
        fs::write(store.dir().join("audit.json"), br#"{"source":"audit"}"#).unwrap();
        assert!(store
            .load("audit")
            .unwrap_err()
            .to_string()
            .contains("no \"version\""));
    }

    #[test]
    fn a_file_of_another_source_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.save("audit", &sample("audit")).unwrap();
        fs::copy(
            store.dir().join("audit.json"),
            store.dir().join("other.json"),
        )
        .unwrap();
        let err = store.load("other").unwrap_err();
        assert!(
            matches!(err, CheckpointError::WrongSource { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn list_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.save("b-src", &sample("b-src")).unwrap();
        store.save("a_src", &sample("a_src")).unwrap();
        assert_eq!(
            store.list().unwrap(),
            vec!["a_src".to_string(), "b-src".to_string()]
        );
        assert!(store.reset("a_src").unwrap());
        assert!(!store.reset("a_src").unwrap());
        assert_eq!(store.load("a_src").unwrap(), None);
        assert_eq!(store.list().unwrap(), vec!["b-src".to_string()]);
    }

    #[test]
    fn names_that_could_escape_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(
                matches!(store.load(bad), Err(CheckpointError::InvalidName(_))),
                "{bad:?}"
            );
        }
    }
}
