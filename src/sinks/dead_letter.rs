//! The dead-letter file of one sink: records a sink rejected by an explicit policy
//! (ARCHITECTURE.md, invariant 5), kept so that nothing is dropped silently.
//!
//! Format: `<dead_letter_dir>/<sink>.ndjson`, append-only, one JSON object per line:
//! `{"time": RFC 3339 UTC, "sink": name, "reason": fixed string, "record": the full
//! record as text, "kind": "audit_log" | "alerts" | "sync_log", "occurred": RFC 3339
//! UTC, "event": the event's raw JSON}`. The last three (written since the replay
//! command exists, absent in the lines of earlier builds) say what the record was
//! made from, so that `c42fwd replay --dead-letter SINK` can encode the event again
//! through the fixed configuration (`crate::replay::dead_letter`). The file and its directory are created on first use, not before,
//! so a sink that never rejects anything leaves no file behind. They hold full security
//! records: the file is created 0600 and the directory 0700, whatever the umask.
//!
//! Size cap: the file never grows past `dead_letter_max_bytes`. Lines that would take it
//! past the cap are not written; `flush` fails with [`SinkError::DeadLetterFull`]
//! (retriable), so the sink holds its batch and its route stalls (nothing is committed)
//! instead of filling the disk. The stall shows as an ERROR (repeated every minute),
//! `c42fwd_sink_stalled{reason="dead_letter_full"}` and `/ready`. Every later flush
//! opens the file afresh, so moving the file away (or truncating it) lets the sink go
//! on by itself. `c42fwd_sink_dead_letter_bytes` is the file's size.
//!
//! Torn lines: a write cut short (the disk full, a crash) leaves a last line without
//! its newline. Whenever the file is opened (at sink start through
//! [`DeadLetterFile::prepare`], and on every reopen) such a tail is cut off, with a
//! WARN naming the file and the byte offset, so the file stays one JSON object per line.
//!
//! Two processes, one file: `c42fwd replay` may run beside the daemon on the same state
//! directory, and its sink of the same name appends to the same file. Every flush
//! (open, torn-tail cut, size check, write) therefore runs under an exclusive OS lock
//! (`fs4`) of the file itself, and reads the file's size afresh
//! under it: the lines of one flush are never interleaved with another process's, a
//! torn-tail cut never cuts another process's line in the middle of its write, and the
//! cap counts both writers' lines.
//!
//! Not done here: deciding what to reject (the transports do) and counting (the caller
//! counts `sink_discarded{reason}` once the lines are written).

use super::delivery::SinkContext;
use super::error::SinkError;
use super::stall::Stall;
use crate::metrics::{label, Metrics};
use chrono::{SecondsFormat, Utc};
use prometheus_client::metrics::gauge::Gauge;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The default of `dead_letter_max_bytes`: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The stall reason (label) of a full dead-letter file.
const FULL: &str = "dead_letter_full";

/// Appends rejected records to one sink's dead-letter file.
pub struct DeadLetterFile {
    sink: String,
    path: PathBuf,
    file: Option<File>,
    /// Lines waiting to be written by the next `flush` (one write per batch).
    pending: Vec<u8>,
    pending_records: usize,
    max_bytes: u64,
    /// The file's size as last known (read when it is opened).
    size: u64,
    size_gauge: Gauge<i64, std::sync::atomic::AtomicI64>,
    full: Stall,
    /// The flush lock created the file (for the log line of `open`).
    just_created: bool,
}

impl std::fmt::Debug for DeadLetterFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterFile")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("max_bytes", &self.max_bytes)
            .field("pending_records", &self.pending_records)
            .finish()
    }
}

#[derive(serde::Serialize)]
struct Line<'a> {
    time: String,
    sink: &'a str,
    reason: &'a str,
    record: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<crate::event::SourceKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    occurred: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a serde_json::value::RawValue>,
}

impl DeadLetterFile {
    /// Names the file, with the default cap and metrics of its own; opens nothing yet.
    pub fn new(dir: &Path, sink: &str) -> Self {
        Self::with_limit(dir, sink, DEFAULT_MAX_BYTES, &Arc::new(Metrics::new()))
    }

    /// The file of the sink `cfg` in the pipeline's dead-letter directory.
    pub fn for_sink(cfg: &crate::config::Sink, ctx: &SinkContext) -> Self {
        Self::with_limit(
            &ctx.dead_letter_dir,
            &cfg.name,
            cfg.dead_letter_max_bytes,
            &ctx.metrics,
        )
    }

    /// Names the file, capped at `max_bytes`; opens nothing yet.
    pub fn with_limit(dir: &Path, sink: &str, max_bytes: u64, metrics: &Arc<Metrics>) -> Self {
        DeadLetterFile {
            sink: sink.to_string(),
            path: dir.join(format!("{sink}.ndjson")),
            file: None,
            pending: Vec::new(),
            pending_records: 0,
            max_bytes,
            size: 0,
            size_gauge: metrics
                .sink_dead_letter_bytes
                .get_or_create(&label("sink", sink))
                .clone(),
            full: Stall::new(metrics, sink),
            just_created: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the cross-process flush lock, an exclusive OS lock of the file itself
    /// (waiting, on the blocking pool, while another writer flushes); creates the file
    /// (0600) and its directory (0700) if missing. Released when the returned handle is
    /// dropped.
    async fn lock(&mut self) -> std::io::Result<std::fs::File> {
        if let Some(dir) = self.path.parent() {
            if tokio::fs::metadata(dir).await.is_err() {
                tokio::fs::create_dir_all(dir).await?;
            }
            set_mode(dir, 0o700).await?;
        }
        let path = self.path.clone();
        let (f, created) = tokio::task::spawn_blocking(move || {
            // Only for the log line of `open`: which process created it does not matter.
            let created = !path.exists();
            let mut o = std::fs::OpenOptions::new();
            o.append(true).create(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            let f = o.open(&path)?;
            fs4::FileExt::lock(&f)?;
            Ok::<_, std::io::Error>((f, created))
        })
        .await
        .map_err(std::io::Error::other)??;
        self.just_created |= created;
        Ok(f)
    }

    /// At sink start: cuts a torn last line left by an earlier run and reads the size,
    /// if the file exists (it is not created here).
    pub async fn prepare(&mut self) -> Result<(), SinkError> {
        match tokio::fs::metadata(&self.path).await {
            Ok(_) => {
                // Not while another process writes its lines.
                let _locked = self.lock().await.map_err(|source| self.error(source))?;
                self.size = cut_torn_tail(&self.sink, &self.path)
                    .await
                    .map_err(|source| self.error(source))?;
                self.size_gauge
                    .set(i64::try_from(self.size).unwrap_or(i64::MAX));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.error(source)),
        }
    }

    fn error(&self, source: std::io::Error) -> SinkError {
        SinkError::DeadLetter {
            path: self.path.clone(),
            source,
        }
    }

    /// Queues one record for the next [`flush`](Self::flush), with the event it was
    /// encoded from when known. Records are text in every format we produce; anything
    /// else is kept with replacement characters rather than lost.
    pub fn push(&mut self, reason: &str, record: &[u8], origin: Option<&crate::event::Event>) {
        let line = Line {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            sink: &self.sink,
            reason,
            record: String::from_utf8_lossy(record),
            kind: origin.map(|e| e.kind),
            occurred: origin.map(|e| e.occurred.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            event: origin.map(|e| &*e.raw),
        };
        // Serializing a struct of strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.pending, &line);
        self.pending.push(b'\n');
        self.pending_records += 1;
    }

    /// Records queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending_records
    }

    /// Writes the queued lines (creating the file on first use) and returns how many
    /// records were written. On error the lines stay queued and the handle is dropped,
    /// so a later call reopens the file and writes them once. When the lines would take
    /// the file past its cap nothing is written and the error is
    /// [`SinkError::DeadLetterFull`].
    pub async fn flush(&mut self) -> Result<usize, SinkError> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        if self.full.is_stalled() {
            // The operator may have moved the file away or truncated it: look again.
            self.file = None;
        }
        let _locked = match self.lock().await {
            Ok(f) => f,
            Err(source) => return Err(self.error(source)),
        };
        if self.file.is_none() {
            if let Err(source) = self.open().await {
                return Err(self.error(source));
            }
        } else if let Some(f) = self.file.as_ref() {
            // Another process may have appended since our last flush.
            match f.metadata().await {
                Ok(m) => self.size = m.len(),
                Err(source) => {
                    self.file = None;
                    return Err(self.error(source));
                }
            }
        }
        let need = self.pending.len() as u64;
        if self.size.saturating_add(need) > self.max_bytes {
            let e = SinkError::DeadLetterFull {
                path: self.path.clone(),
                size: self.size,
                max_bytes: self.max_bytes,
            };
            self.full.failed(
                FULL,
                &e.to_string(),
                "the dead-letter file reached dead_letter_max_bytes: move it away or raise \
                 the limit, and the sink goes on by itself",
            );
            return Err(e);
        }
        match self.write_pending().await {
            Ok(()) => {
                self.pending.clear();
                self.size += need;
                self.size_gauge
                    .set(i64::try_from(self.size).unwrap_or(i64::MAX));
                self.full.resumed();
                Ok(std::mem::take(&mut self.pending_records))
            }
            Err(source) => {
                self.file = None;
                Err(self.error(source))
            }
        }
    }

    /// Opens (and, the first time, creates) the file for appending; cuts a torn tail.
    async fn open(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            if tokio::fs::metadata(dir).await.is_err() {
                tokio::fs::create_dir_all(dir).await?;
            }
            // Also when it exists: an earlier build created it under the umask.
            set_mode(dir, 0o700).await?;
        }
        let created = std::mem::take(&mut self.just_created)
            || tokio::fs::metadata(&self.path).await.is_err();
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(&self.path).await?;
        // The umask may have taken bits away from 0600 (or a umask of 0 could not add
        // any), and a file an earlier build created kept the umask's: make it exactly
        // owner read-write.
        set_mode(&self.path, 0o600).await?;
        if created {
            tracing::info!(sink = %self.sink, path = %self.path.display(), "dead-letter file created");
            self.size = 0;
        } else {
            self.size = cut_torn_tail(&self.sink, &self.path).await?;
            tracing::info!(sink = %self.sink, path = %self.path.display(), size = self.size, "dead-letter file opened");
        }
        self.size_gauge
            .set(i64::try_from(self.size).unwrap_or(i64::MAX));
        self.file = Some(file);
        Ok(())
    }

    async fn write_pending(&mut self) -> std::io::Result<()> {
        if let Some(file) = self.file.as_mut() {
            file.write_all(&self.pending).await?;
            // tokio's File finishes the write in the background: flush waits for it
            // and reports its error, so a written line is really in the file.
            file.flush().await?;
        }
        Ok(())
    }
}

#[cfg(unix)]
async fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await
}

#[cfg(not(unix))]
async fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// Cuts what follows the last newline of the file at `path` (a line whose write was
/// cut short) and returns the size it keeps. Logs a WARN with the offset when it cuts.
pub(crate) async fn cut_torn_tail(sink: &str, path: &Path) -> std::io::Result<u64> {
    let mut f = OpenOptions::new().read(true).write(true).open(path).await?;
    let len = f.metadata().await?.len();
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = len;
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start)).await?;
        f.read_exact(&mut buf[..n]).await?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
            break start + i as u64 + 1;
        }
        end = start;
    };
    if keep < len {
        f.set_len(keep).await?;
        f.sync_all().await?;
        tracing::warn!(
            sink,
            path = %path.display(),
            offset = keep,
            torn_bytes = len - keep,
            "the dead-letter file ended with a torn line (a write cut short, e.g. the disk \
             was full); cut it off at this offset"
        );
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_torn_last_line_is_cut_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut dl = DeadLetterFile::new(dir.path(), "s");
        dl.push("r", b"one", None);
        dl.push("r", b"two", None);
        assert_eq!(dl.flush().await.unwrap(), 2);
        let good = std::fs::metadata(dl.path()).unwrap().len();
        // A write cut short: half a line, no newline.
        let mut raw = std::fs::read(dl.path()).unwrap();
        raw.extend_from_slice(b"{\"time\":\"2026-01-01T00:00:00.000Z\",\"sink\":\"s\",\"rea");
        std::fs::write(dl.path(), &raw).unwrap();
        let mut again = DeadLetterFile::new(dir.path(), "s");
        again.prepare().await.unwrap();
        assert_eq!(std::fs::metadata(again.path()).unwrap().len(), good);
        again.push("r", b"three", None);
        again.flush().await.unwrap();
        let l = lines(again.path());
        assert_eq!(l.len(), 3);
        assert_eq!(l[2]["record"], "three");
    }

    /// Two writers of one file (the daemon's sink and a replay's sink of the same name):
    /// the cap counts both writers' lines, and a flush waits while the other holds the
    /// flush lock.
    #[tokio::test]
    async fn two_writers_of_one_file_share_its_cap_and_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        // The size of one line (fixed: the time has a fixed width).
        let probe_dir = tempfile::tempdir().unwrap();
        let mut probe = DeadLetterFile::new(probe_dir.path(), "s");
        probe.push("r", b"one", None);
        probe.flush().await.unwrap();
        let line = std::fs::metadata(probe.path()).unwrap().len();
        let cap = line * 2 + line / 2;
        let mut a = DeadLetterFile::with_limit(dir.path(), "s", cap, &metrics);
        let mut b = DeadLetterFile::with_limit(dir.path(), "s", cap, &metrics);
        a.push("r", b"one", None);
        assert_eq!(a.flush().await.unwrap(), 1);
        b.push("r", b"two", None);
        assert_eq!(b.flush().await.unwrap(), 1);
        // `a` alone has written one line; with `b`'s the file holds two, and a third
        // would pass the cap.
        a.push("r", b"six", None);
        let e = a.flush().await.unwrap_err();
        assert!(matches!(e, SinkError::DeadLetterFull { .. }), "{e}");
        assert_eq!(lines(a.path()).len(), 2);

        // While another process holds the flush lock, a flush waits for it.
        let held = std::fs::File::open(b.path()).unwrap();
        fs4::FileExt::lock(&held).unwrap();
        let mut c = DeadLetterFile::new(dir.path(), "t");
        let path_t = c.path().to_path_buf();
        // Another sink's file: its own lock, not held.
        c.push("r", b"x", None);
        c.flush().await.unwrap();
        let mut d = DeadLetterFile::with_limit(dir.path(), "s", 1 << 20, &metrics);
        d.push("r", b"waits", None);
        let flushing = tokio::spawn(async move { d.flush().await.map(|n| (n, d)) });
        // Let it reach the lock (a poll of the file, which must stay as it is).
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(!flushing.is_finished());
        assert_eq!(lines(a.path()).len(), 2);
        fs4::FileExt::unlock(&held).unwrap();
        let (n, _d) = flushing.await.unwrap().unwrap();
        assert_eq!(n, 1);
        assert_eq!(lines(a.path()).len(), 3);
        assert_eq!(lines(&path_t).len(), 1);
    }

    #[tokio::test]
    async fn a_file_with_no_whole_line_is_emptied_and_a_sound_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.ndjson");
        // Longer than one read block, without a newline.
        std::fs::write(&path, vec![b'x'; 100_000]).unwrap();
        assert_eq!(cut_torn_tail("s", &path).await.unwrap(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let mut sound = b"{}\n".repeat(30_000);
        std::fs::write(&path, &sound).unwrap();
        assert_eq!(cut_torn_tail("s", &path).await.unwrap(), sound.len() as u64);
        sound.extend_from_slice(&[b'y'; 70_000]);
        std::fs::write(&path, &sound).unwrap();
        assert_eq!(cut_torn_tail("s", &path).await.unwrap(), 90_000);
        // Starting with no file leaves no file.
        let mut dl = DeadLetterFile::new(dir.path(), "none");
        dl.prepare().await.unwrap();
        assert!(!dl.path().exists());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_is_0600_and_its_directory_0700() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let dl_dir = dir.path().join("state").join("dead-letter");
        let mut dl = DeadLetterFile::new(&dl_dir, "s");
        dl.push("r", b"secret record", None);
        dl.flush().await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dl.path()), 0o600);
        assert_eq!(mode(&dl_dir), 0o700);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_file_and_directory_left_open_by_an_earlier_build_are_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let dl_dir = dir.path().join("dead-letter");
        std::fs::create_dir(&dl_dir).unwrap();
        std::fs::set_permissions(&dl_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dl_dir.join("s.ndjson");
        std::fs::write(&path, b"{}\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut dl = DeadLetterFile::new(&dl_dir, "s");
        dl.push("r", b"secret record", None);
        dl.flush().await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dl_dir), 0o700);
        assert_eq!(lines(&path).len(), 2, "the old line is kept");
    }

    #[tokio::test]
    async fn past_the_cap_nothing_is_written_until_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut dl = DeadLetterFile::with_limit(dir.path(), "s", 400, &metrics);
        dl.push("r", &[b'a'; 100], None);
        assert_eq!(dl.flush().await.unwrap(), 1);
        let first = std::fs::metadata(dl.path()).unwrap().len();
        dl.push("r", &[b'b'; 100], None);
        dl.push("r", &[b'c'; 100], None);
        let e = dl.flush().await.unwrap_err();
        assert!(matches!(e, SinkError::DeadLetterFull { .. }), "{e}");
        assert!(e.is_retriable());
        assert!(e.to_string().contains("s.ndjson"), "{e}");
        assert_eq!(dl.pending(), 2, "the lines wait");
        assert_eq!(std::fs::metadata(dl.path()).unwrap().len(), first);
        assert_eq!(metrics.health.stalled()[0].reason, "dead_letter_full");
        // The operator moves the file away: the next flush writes the waiting lines.
        std::fs::rename(dl.path(), dir.path().join("moved")).unwrap();
        assert_eq!(dl.flush().await.unwrap(), 2);
        assert_eq!(lines(dl.path()).len(), 2);
        assert!(metrics.health.stalled().is_empty());
        let size = metrics
            .sink_dead_letter_bytes
            .get_or_create(&label("sink", "s"))
            .get();
        assert_eq!(size as u64, std::fs::metadata(dl.path()).unwrap().len());
    }
}
