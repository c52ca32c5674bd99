//! Per-source checkpoint files: the durable cursor of each poller.
//!
//! One file per source, `<state_dir>/checkpoints/<source>.json`, in a versioned JSON
//! format:
//!
//! ```json
//! {"version":1,"source":"audit","kind":"audit_log",
//!  "watermark":"2024-05-01T10:00:00.123456789Z",
//!  "fingerprints":[{"hash":"9f86d081884c7d65","time":"2024-05-01T10:00:00.5Z","count":1}],
//!  "updated_at":"2024-05-01T10:05:00Z",
//!  "start":"2024-05-01T09:00:00Z",
//!  "reconcile":{"since":"2024-05-01T09:00:00Z","covered":"2024-05-01T10:00:00Z",
//!               "buckets":[{"start":"2024-05-01T09:55:00Z","seen":[...]}]}}
//! ```
//!
//! `watermark` and `fingerprints` are the window state of ARCHITECTURE.md invariant 2 (see
//! [`crate::sources::window`]): every event that occurred before the watermark was
//! delivered, and the fingerprints (xxh3 of the raw JSON, with how many byte-identical
//! copies were delivered) cover the delivered events at or after it.
//!
//! `start` is the start edge the source was given when it first ran (written before its
//! first poll, so that restarts never move it); `reconcile` is the bookkeeping of
//! [`crate::sources::reconcile`]: the windows still to be compared with the API's own
//! counts, with the fingerprints forwarded in each. Both are optional on load, so the
//! files of earlier builds still load.
//!
//! **Invariant:** a save replaces the file atomically (temp file, fsync, rename, fsync of
//! the directory): after a crash the file holds either the old or the new checkpoint,
//! never a mix. The store never holds secrets: it only ever receives times, counts and
//! hashes. Files are created 0600 and the directory 0700, whatever the umask: the
//! checkpoints reveal when and how much a tenant logs.
//!
//! This module does not decide *when* to save (the poller commits only delivered
//! prefixes, ARCHITECTURE.md invariant 1) and does not interpret the window state.

use crate::event::SourceKind;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The checkpoint format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// How far past the clock a watermark may lie before the checkpoint is refused: clocks of
/// hosts that copy state between them differ by seconds, not minutes; a watermark further
/// ahead means a clock step or a foreign state directory, and starting from it would skip
/// everything in between.
pub const FUTURE_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

/// How far the watermark of `cp` lies beyond `now` plus [`FUTURE_TOLERANCE`]
/// (measured from `now`), or `None` when it does not.
pub fn in_the_future(cp: &Checkpoint, now: DateTime<Utc>) -> Option<chrono::TimeDelta> {
    let ahead = cp.watermark.signed_duration_since(now);
    (ahead > chrono::TimeDelta::from_std(FUTURE_TOLERANCE).unwrap_or(chrono::TimeDelta::MAX))
        .then_some(ahead)
}

/// "3h 12m": how far a watermark lies ahead, to the second.
pub fn ahead_text(ahead: chrono::TimeDelta) -> String {
    let secs = ahead.num_seconds().max(0).unsigned_abs();
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

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
    /// The start edge fixed when the source first ran (`None` in files of earlier builds).
    pub start: Option<DateTime<Utc>>,
    /// Windows still to be reconciled (`None` in files of earlier builds).
    pub reconcile: Option<ReconcileRecord>,
}

/// The reconciliation bookkeeping of one source, as stored (interpreted by
/// [`crate::sources::reconcile`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReconcileRecord {
    /// Nothing before this was forwarded by a build that kept this record: re-reads never
    /// reach before it.
    pub since: Option<DateTime<Utc>>,
    /// The windows up to this time have been looked at (registered or let go).
    pub covered: Option<DateTime<Utc>>,
    /// The width of the windows below, in seconds (kept: a changed configuration must not
    /// make the stored windows overlap).
    pub bucket_seconds: Option<u64>,
    /// The windows waiting for their comparison, oldest first.
    pub buckets: Vec<BucketRecord>,
}

/// One window waiting for its comparison, and what was forwarded in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRecord {
    pub start: DateTime<Utc>,
    pub seen: Vec<SeenEvent>,
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
struct FileV1<S> {
    version: u32,
    source: String,
    kind: SourceKind,
    watermark: String,
    fingerprints: S,
    updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reconcile: Option<FileReconcile<S>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReconcile<S> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    covered: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bucket_seconds: Option<u64>,
    buckets: Vec<FileBucket<S>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBucket<S> {
    start: String,
    seen: S,
}

/// One fingerprint as read back; [`SeenList`] writes the same shape.
#[derive(Deserialize)]
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
        create_private_dir(&dir).map_err(|source| CheckpointError::CreateDir {
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
            fingerprints: SeenList(&cp.fingerprints),
            updated_at: fmt_time(cp.updated_at),
            start: cp.start.map(fmt_time),
            reconcile: cp.reconcile.as_ref().map(|r| FileReconcile {
                since: r.since.map(fmt_time),
                covered: r.covered.map(fmt_time),
                bucket_seconds: r.bucket_seconds,
                buckets: r
                    .buckets
                    .iter()
                    .map(|b| FileBucket {
                        start: fmt_time(b.start),
                        seen: SeenList(&b.seen),
                    })
                    .collect(),
            }),
        };
        // Written as it is serialized (no copy of the whole text: a ledger can hold
        // hundreds of thousands of fingerprints). The temp file lives in the same
        // directory so that the rename is atomic; its name starts with a dot so that
        // `list` never mistakes it for a checkpoint.
        replace_atomically_with(&self.dir, &format!("{source}.json"), |w| {
            serde_json::to_writer(&mut *w, &file).map_err(io::Error::other)?;
            w.write_all(b"\n")
        })
        .map_err(|source| CheckpointError::Write { path, source })
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
    let f: FileV1<Vec<FileSeen>> =
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let opt_time = |field: &str, s: &Option<String>| {
        s.as_deref().map(|s| parse_time(path, field, s)).transpose()
    };
    let reconcile = match &f.reconcile {
        None => None,
        Some(r) => {
            let mut buckets = Vec::with_capacity(r.buckets.len());
            for b in &r.buckets {
                buckets.push(BucketRecord {
                    start: parse_time(path, "reconcile.buckets.start", &b.start)?,
                    seen: decode_seen(path, "reconcile.buckets.seen", &b.seen)?,
                });
            }
            Some(ReconcileRecord {
                since: opt_time("reconcile.since", &r.since)?,
                covered: opt_time("reconcile.covered", &r.covered)?,
                bucket_seconds: r.bucket_seconds,
                buckets,
            })
        }
    };
    Ok(Checkpoint {
        source: f.source,
        kind: f.kind,
        watermark: parse_time(path, "watermark", &f.watermark)?,
        fingerprints: decode_seen(path, "fingerprints", &f.fingerprints)?,
        updated_at: parse_time(path, "updated_at", &f.updated_at)?,
        start: opt_time("start", &f.start)?,
        reconcile,
    })
}

/// A list of fingerprints written as [`FileSeen`] objects, each formatted as it is
/// written: a reconciliation ledger of a busy tenant holds hundreds of thousands, and
/// building the strings of them all first would cost several hundred bytes each for
/// every save.
struct SeenList<'a>(&'a [SeenEvent]);

impl Serialize for SeenList<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq as _, SerializeStruct as _};
        struct One<'a>(&'a SeenEvent);
        impl Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut s = serializer.serialize_struct("FileSeen", 3)?;
                // `fmt::Arguments` is written through the serializer's `collect_str`:
                // no string is built for it.
                s.serialize_field("hash", &format_args!("{:016x}", self.0.hash))?;
                s.serialize_field("time", &fmt_time(self.0.time))?;
                s.serialize_field("count", &self.0.count)?;
                s.end()
            }
        }
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            seq.serialize_element(&One(e))?;
        }
        seq.end()
    }
}

fn decode_seen(
    path: &Path,
    field: &str,
    seen: &[FileSeen],
) -> Result<Vec<SeenEvent>, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = Vec::with_capacity(seen.len());
    for s in seen {
        let hash = u64::from_str_radix(&s.hash, 16)
            .ok()
            .filter(|_| s.hash.len() == 16)
            .ok_or_else(|| corrupt(format!("fingerprint {:?} is not 16 hex digits", s.hash)))?;
        if s.count == 0 {
            return Err(corrupt(format!("fingerprint {} has count 0", s.hash)));
        }
        out.push(SeenEvent {
            hash,
            time: parse_time(path, &format!("{field}.time"), &s.time)?,
            count: s.count,
        });
    }
    Ok(out)
}

/// Creates `dir` (and missing parents) 0700 and makes sure `dir` itself is 0700, whatever
/// the umask or an earlier build left.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

/// Replaces the file `dir/name` by `bytes` atomically (the module invariant): a temp
/// file `dir/.name.tmp` (0600) written and fsynced, renamed over `name`, the directory
/// fsynced. After a crash the file holds either the old or the new bytes. Also used for
/// the replay checkpoints (`crate::replay::checkpoint`).
pub(crate) fn replace_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    replace_atomically_with(dir, name, |w| w.write_all(bytes))
}

/// [`replace_atomically`] with the content written by `write`, through a buffer.
fn replace_atomically_with(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    write_synced(&tmp, write)?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn write_synced(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts.open(path)?;
    #[cfg(unix)]
    {
        // A temp file left behind by a crash keeps the mode it was created with.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    let mut w = io::BufWriter::with_capacity(64 * 1024, f);
    write(&mut w)?;
    let f = w.into_inner().map_err(io::IntoInnerError::into_error)?;
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
            start: None,
            reconcile: None,
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

    /// The fingerprints of the window and of the ledger's buckets are written as
    /// objects of 16 lowercase hex digits, the time (nanoseconds kept) and the count.
    #[test]
    fn fingerprints_are_written_as_hex_time_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut cp = sample("audit");
        cp.reconcile = Some(ReconcileRecord {
            since: None,
            covered: None,
            bucket_seconds: Some(300),
            buckets: vec![BucketRecord {
                start: t("2024-05-01T10:00:00Z"),
                seen: vec![SeenEvent {
                    hash: 0x00f0_0000_0000_0001,
                    time: t("2024-05-01T10:00:02.5Z"),
                    count: 3,
                }],
            }],
        });
        store.save("audit", &cp).unwrap();
        let text = fs::read_to_string(dir.path().join("checkpoints/audit.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["fingerprints"],
            serde_json::json!([
                {"hash": "0123456789abcdef", "time": "2024-05-01T10:00:00.123456789Z", "count": 2},
                {"hash": "ffffffffffffffff", "time": "2024-05-01T10:00:01Z", "count": 1},
            ])
        );
        assert_eq!(
            v["reconcile"]["buckets"][0]["seen"],
            serde_json::json!([{"hash": "00f0000000000001", "time": "2024-05-01T10:00:02.500Z", "count": 3}])
        );
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
    fn start_and_reconcile_round_trip_and_old_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut cp = sample("audit");
        cp.start = Some(t("2024-05-01T09:00:00Z"));
        cp.reconcile = Some(ReconcileRecord {
            since: Some(t("2024-05-01T09:00:00Z")),
            covered: Some(t("2024-05-01T10:00:00.5Z")),
            bucket_seconds: Some(300),
            buckets: vec![BucketRecord {
                start: t("2024-05-01T09:55:00Z"),
                seen: cp.fingerprints.clone(),
            }],
        });
        store.save("audit", &cp).unwrap();
        assert_eq!(store.load("audit").unwrap(), Some(cp));
        // a file written before these fields existed
        fs::write(
            store.dir().join("audit.json"),
            br#"{"version":1,"source":"audit","kind":"audit_log","watermark":"2024-05-01T10:05:00Z","fingerprints":[],"updated_at":"2024-05-01T10:05:00Z"}"#,
        )
        .unwrap();
        let old = store.load("audit").unwrap().unwrap();
        assert_eq!((old.start, old.reconcile), (None, None));
    }

    #[cfg(unix)]
    #[test]
    fn files_are_0600_and_the_directory_0700_whatever_was_there() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let cps = dir.path().join("state/checkpoints");
        fs::create_dir_all(&cps).unwrap();
        fs::set_permissions(&cps, fs::Permissions::from_mode(0o777)).unwrap();
        // a temp file left by a crash, world-readable
        fs::write(cps.join(".audit.json.tmp"), b"x").unwrap();
        fs::set_permissions(
            cps.join(".audit.json.tmp"),
            fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let store = Store::open(dir.path().join("state")).unwrap();
        store.save("audit", &sample("audit")).unwrap();
        assert_eq!(mode(&cps), 0o700);
        assert_eq!(mode(&cps.join("audit.json")), 0o600);
        let fresh = dir.path().join("new/deeper");
        Store::open(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&fresh.join("checkpoints")), 0o700);
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
