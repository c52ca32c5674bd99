//! The replay engine: reads the input files, sends their records through the real
//! sinks, and commits each file's replay checkpoint once its records are acknowledged.
//!
//! ```text
//!  reader (blocking pool)                     engine (async)                 sinks (pipeline)
//!  files -> input::open -> items --Chunk--> pace -> Route::send ---------> queue -> encode -> write
//!   resume skip, filters, dedupe,              ^                                        │
//!   rejects file                               └ commit checkpoint <- AckWaiter (in order)
//! ```
//!
//! - The reader runs on tokio's blocking pool (the input side is synchronous
//!   `std::io`). It expands the arguments (directories recursively, sorted by name),
//!   skips what a file's checkpoint says is settled, applies `--since`, `--until`,
//!   `--event-types` and the dedupe set, writes rejected lines to the rejects file,
//!   and hands the rest over in chunks of at most [`CHUNK_RECORDS`] records through a
//!   bounded channel.
//! - The engine paces chunks (`--rate`), sends each as one `Batch` through a `Route`
//!   to every sink (waiting while a sink's queue is full: backpressure), and keeps at
//!   most [`WINDOW`] chunks in flight. It resolves their acknowledgements in order and
//!   advances each file's checkpoint over acknowledged chunks only (ARCHITECTURE.md,
//!   invariant 1): a checkpoint is written every [`CHECKPOINT_EVERY`] settled items
//!   and at the end of each file. After a SIGKILL a second run therefore sends again
//!   at most `WINDOW * CHUNK_RECORDS + CHECKPOINT_EVERY` records of a file
//!   ([`MAX_DUPLICATES_AFTER_KILL`]). A sink that takes nothing more therefore stops
//!   the reader with at most [`MAX_READ_AHEAD`] records read and not acknowledged.
//! - The sinks are the daemon's own, started by `pipeline::SinkSet` from the same
//!   configuration; a sink that fails for good ends the replay (exit 1).
//!
//! A replay ends when every chunk was acknowledged by every sink, then lets the sinks
//! drain and return.

use super::checkpoint::{Identity, Progress, ReplayStore, Stored};
use super::dedupe::Dedupe;
use super::input::{self, Item, KindHint};
use super::progress::{Counters, Reporter};
use crate::ack::Outcome;
use crate::config::Sink;
use crate::event::{Batch, Event};
use crate::metrics::Metrics;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::stream::{FuturesOrdered, StreamExt as _};
use futures_util::FutureExt as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The most records of one chunk (one `Batch` to the sinks).
pub const CHUNK_RECORDS: usize = 1024;
/// The most chunks sent and not yet acknowledged. A TCP sink acknowledges a batch once
/// its connection was seen open 100 ms after the write (`sinks::tcp::ACK_SETTLE`), or
/// sooner, once a socket send buffer plus 8 MiB were written after it (flow control
/// proves it read). The first bounds a replay to TCP at about `WINDOW * CHUNK_RECORDS`
/// records per 100 ms (330,000 records/s) only while the chunks in flight hold fewer
/// bytes than the second: with records of 400 bytes or more encoded (Audit Log CEF is
/// about 700 with its RFC 5424 header) flow control settles the oldest chunk first, and
/// the replay runs as fast as the reader and the encoding go (measured above 380,000
/// records/s). A larger window would lift the bound for smaller records at the cost of
/// more duplicates after a SIGKILL ([`MAX_DUPLICATES_AFTER_KILL`]).
pub const WINDOW: usize = 32;
/// Settled items after which a file's checkpoint is written again.
pub const CHECKPOINT_EVERY: u64 = 16_384;
/// The most records of one file a run after a SIGKILL sends again.
pub const MAX_DUPLICATES_AFTER_KILL: u64 = (WINDOW * CHUNK_RECORDS) as u64 + CHECKPOINT_EVERY;
/// Chunks the reader may have handed over that the engine has not taken yet (the
/// bounded channel between them).
pub const CHANNEL_CHUNKS: usize = 2;
/// The most records handed on to the sinks and not yet acknowledged by every one,
/// however slowly they go (backpressure; duplicates skipped and records filtered out
/// are not held): [`WINDOW`] chunks in flight, one more the engine waits to
/// hand to a sink whose queue is full, [`CHANNEL_CHUNKS`] in the channel and the one
/// the reader waits to put in it.
pub const MAX_READ_AHEAD: u64 = ((WINDOW + 1 + CHANNEL_CHUNKS + 1) * CHUNK_RECORDS) as u64;

/// One argument of the command line, expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `-`: standard input (not resumable: it has no identity).
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "-".to_string(),
            Input::File(p) => p.display().to_string(),
        }
    }
}

/// What a replay does.
#[derive(Debug, Clone)]
pub struct Options {
    pub inputs: Vec<Input>,
    pub hint: KindHint,
    /// The sinks to send to (none in a dry run).
    pub sinks: Vec<Sink>,
    /// Where the replay checkpoints, the rejects file and the sinks' dead-letter files go.
    pub state_dir: PathBuf,
    /// Ignore the checkpoints (and overwrite them).
    pub restart: bool,
    /// `Some(cap)`: skip records already sent in this replay, at most `cap` fingerprints.
    pub dedupe: Option<usize>,
    /// Parse and count, send nothing, write nothing.
    pub dry_run: bool,
    /// Records per second.
    pub rate: Option<u32>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Device Event Class IDs to keep (empty: all), compared without case.
    pub event_types: Vec<String>,
    /// How long the sinks may drain at the end or after Ctrl-C.
    pub shutdown_grace: Duration,
    pub progress: super::progress::Mode,
    /// The most records of one chunk ([`CHUNK_RECORDS`] unless a test wants less).
    pub chunk_records: usize,
    /// The inputs are dead-letter files of a sink encoding with this format and
    /// syslog style (`replay --dead-letter`), not exports.
    pub dead_letter: Option<(crate::encode::Format, crate::encode::SyslogStyle)>,
}

/// What one file came to.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    pub name: String,
    /// `None` when the file could not be opened.
    pub format: Option<&'static str>,
    pub compression: Option<&'static str>,
    pub records: u64,
    pub rejected: u64,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// The file could not be read (to its end).
    pub error: Option<String>,
    /// Skipped whole: its checkpoint says it was replayed completely.
    pub already_done: bool,
    /// Items skipped at the start (settled by an earlier run).
    pub resumed_at: u64,
    /// Every record of it was acknowledged.
    pub delivered: bool,
}

/// The result of a replay.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub files: Vec<FileReport>,
    pub records_read: u64,
    pub sent: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub filtered: u64,
    pub rejected: u64,
    pub elapsed: Duration,
    pub rejects_file: Option<PathBuf>,
    /// A sink failed for good, or a batch was not delivered: the error.
    pub sink_failure: Option<String>,
    /// Ctrl-C / SIGTERM before the end.
    pub interrupted: bool,
    pub dedupe_dropped_days: usize,
    /// Fingerprints dropped with those days.
    pub dedupe_dropped_fingerprints: u64,
    pub dry_run: bool,
}

impl Summary {
    /// 0 everything delivered; 1 rejects, an unreadable file, a sink failure, or an
    /// interruption.
    pub fn exit_code(&self) -> u8 {
        let bad = self.rejected > 0
            || self.sink_failure.is_some()
            || self.interrupted
            || self.files.iter().any(|f| f.error.is_some());
        u8::from(bad)
    }

    /// The summary as printed at the end.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if self.dry_run {
            for f in &self.files {
                let _ = write!(out, "{}: ", f.name);
                match (f.format, &f.error) {
                    (None, Some(e)) => {
                        let _ = writeln!(out, "UNREADABLE: {e}");
                        continue;
                    }
                    (Some(fmt), _) => {
                        let _ = write!(out, "{fmt}");
                        if let Some(c) = f.compression {
                            let _ = write!(out, " ({c})");
                        }
                    }
                    (None, None) => {
                        let _ = write!(out, "?");
                    }
                }
                let _ = write!(out, ", {} records, {} rejected", f.records, f.rejected);
                if let (Some(a), Some(b)) = (f.first, f.last) {
                    let _ = write!(out, ", events from {} to {}", time(a), time(b));
                }
                if let Some(e) = &f.error {
                    let _ = write!(out, ", READ ERROR: {e}");
                }
                out.push('\n');
            }
        }
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.records_read as f64 / secs
        } else {
            0.0
        };
        let failed = self.files.iter().filter(|f| f.error.is_some()).count();
        let _ = writeln!(
            out,
            "replay{}: {} file(s) ({} unreadable), {} records read, {} sent, {} delivered, {} duplicates skipped, {} filtered out, {} rejected, {:.1} s, {:.0} records/s",
            if self.dry_run { " (dry run, nothing sent)" } else { "" },
            self.files.len(),
            failed,
            self.records_read,
            self.sent,
            self.delivered,
            self.duplicates,
            self.filtered,
            self.rejected,
            secs,
            rate,
        );
        if let Some(p) = &self.rejects_file {
            let _ = writeln!(out, "rejected lines written to {}", p.display());
        }
        if self.dedupe_dropped_days > 0 {
            let _ = writeln!(
                out,
                "dedupe: {} day(s) of fingerprints ({} fingerprints) were dropped or not held, at the fingerprint cap or for a day 1,024 days apart from a newer one (see the log; records of those days read again later were sent again)",
                self.dedupe_dropped_days,
                self.dedupe_dropped_fingerprints
            );
        }
        if let Some(e) = &self.sink_failure {
            let _ = writeln!(out, "FAILED: {e}; run the same command again to resume");
        }
        if self.interrupted {
            let _ = writeln!(
                out,
                "interrupted: run the same command again to resume where it stopped"
            );
        }
        out
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Expands `args`: files as given, directories recursively (entries sorted by name),
/// `-` as standard input. A path that does not exist is kept: opening it fails and is
/// reported like any unreadable file.
pub fn expand(args: &[PathBuf]) -> Vec<Input> {
    let mut out = Vec::new();
    for a in args {
        if a.as_os_str() == "-" {
            out.push(Input::Stdin);
        } else if a.is_dir() {
            walk(a, &mut out);
        } else {
            out.push(Input::File(a.clone()));
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<Input>) {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => {
            // Reported when opened.
            out.push(Input::File(dir.to_path_buf()));
            return;
        }
    };
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(Input::File(p));
        }
    }
}

/// Records per second: lets `n` records go when their time has come. The schedule is
/// counted from its start (record `k` is due `k / rate` seconds after it, to the
/// nanosecond), so rounding never adds up to a drift; a pause longer than the schedule
/// starts it again from now (no burst to catch up).
#[derive(Debug)]
pub struct Pacer {
    rate: u32,
    /// When the schedule started, and the records it let go since.
    start: Option<Instant>,
    admitted: u64,
}

impl Pacer {
    pub fn new(rate: u32) -> Pacer {
        Pacer {
            rate: rate.max(1),
            start: None,
            admitted: 0,
        }
    }

    /// Waits until `n` more records may go.
    pub async fn admit(&mut self, n: usize) {
        let now = Instant::now();
        let nanos = u128::from(self.admitted) * 1_000_000_000 / u128::from(self.rate);
        let due = self
            .start
            .map(|s| s + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)));
        match due {
            Some(due) if due >= now => tokio::time::sleep_until(due).await,
            _ => {
                self.start = Some(now);
                self.admitted = 0;
            }
        }
        self.admitted += n as u64;
    }
}

/// The records of one chunk: at most `max`, and with `--rate` about a tenth of a
/// second's worth, so that pacing stays smooth (at least ten chunks a second, one
/// record at a time below ten a second).
pub fn chunk_records(rate: Option<u32>, max: usize) -> usize {
    match rate {
        Some(r) => (r as usize / 10).clamp(1, max.max(1)),
        None => max.max(1),
    }
}

/// What the reader hands to the engine.
enum Msg {
    /// File `file` is open (or already done, or unreadable: `report` says).
    Start {
        file: usize,
        id: Option<Identity>,
        report: FileReport,
    },
    /// Records of file `file`, and where the file stands once they are settled.
    Chunk(Chunk),
    /// File `file` ended (read to its end, or cut short by `report.error`).
    End { file: usize, report: FileReport },
}

struct Chunk {
    file: usize,
    events: Vec<Event>,
    /// Items of the file settled once this chunk is.
    upto: u64,
    line: u64,
}

/// The rejects file of one replay: every rejected line, verbatim, one per line, 0600.
struct Rejects {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Rejects {
    fn new(state_dir: &Path) -> Rejects {
        let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
        Rejects {
            path: state_dir
                .join("replay")
                .join(format!("rejects-{stamp}-{}.txt", std::process::id())),
            file: None,
        }
    }

    fn write(&mut self, raw: &str) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                crate::checkpoint::create_private_dir(dir)?;
            }
            let mut o = std::fs::OpenOptions::new();
            o.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            self.file = Some(std::io::BufWriter::new(o.open(&self.path)?));
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(raw.as_bytes())?;
            if !raw.ends_with('\n') {
                f.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<Option<PathBuf>> {
        match self.file.take() {
            Some(mut f) => {
                f.flush()?;
                f.get_ref().sync_all()?;
                Ok(Some(self.path.clone()))
            }
            None => Ok(None),
        }
    }
}

/// An open input: an export, or a dead-letter file.
enum Opened {
    Export(input::Opened),
    DeadLetter(super::dead_letter::Reader),
}

impl Opened {
    fn next(&mut self) -> Option<Result<Item, input::InputError>> {
        match self {
            Opened::Export(o) => o.next(),
            Opened::DeadLetter(d) => d.next(),
        }
    }

    fn bytes_read(&self) -> u64 {
        match self {
            Opened::Export(o) => o.bytes_read(),
            Opened::DeadLetter(d) => d.bytes_read(),
        }
    }
}

/// The reader's settings.
struct Reader {
    opts: Options,
    store: Option<ReplayStore>,
    dedupe: Option<Dedupe>,
    rejects: Option<Rejects>,
    counters: Arc<Counters>,
    reporter: Reporter,
    types: Vec<String>,
    chunk: usize,
}

impl Reader {
    fn run(mut self, tx: mpsc::Sender<Msg>) -> (Option<PathBuf>, usize, u64) {
        let inputs = std::mem::take(&mut self.opts.inputs);
        for (i, input) in inputs.iter().enumerate() {
            if !self.file(i, input, &tx) {
                break;
            }
        }
        let rejects = match self.rejects.as_mut().map(Rejects::finish) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                self.reporter
                    .say(&format!("error: cannot write the rejects file: {e}"));
                None
            }
            None => None,
        };
        (
            rejects,
            self.dedupe.as_ref().map_or(0, |d| d.dropped_days.len()),
            self.dedupe.as_ref().map_or(0, |d| d.dropped_fingerprints),
        )
    }

    /// Reads one file; `false` when the engine is gone.
    fn file(&mut self, file: usize, input: &Input, tx: &mpsc::Sender<Msg>) -> bool {
        let name = input.name();
        let mut report = FileReport {
            name: name.clone(),
            ..FileReport::default()
        };
        let (id, resume) = match input {
            Input::Stdin => {
                if !self.opts.dry_run {
                    tracing::info!(
                        "standard input is not resumable: an interrupted replay of it starts over"
                    );
                }
                (None, Progress::default())
            }
            Input::File(p) => match Identity::of(p) {
                Err(e) => {
                    return self.unreadable(file, report, format!("cannot read: {e}"), tx);
                }
                Ok(id) => {
                    let stored = match (&self.store, self.opts.restart) {
                        (Some(s), false) => s.load(&id),
                        _ => Ok(Stored::None),
                    };
                    match stored {
                        Ok(Stored::Same(p)) => (Some(id), p),
                        Ok(Stored::Changed) => {
                            tracing::info!(path = %name, "the file changed since its last replay (size or first bytes): read anew");
                            (Some(id), Progress::default())
                        }
                        Ok(Stored::None) => (Some(id), Progress::default()),
                        Err(e) => return self.unreadable(file, report, e, tx),
                    }
                }
            },
        };
        report.resumed_at = resume.items;
        if resume.complete && self.dedupe.is_none() {
            report.already_done = true;
            report.delivered = true;
            tracing::info!(path = %name, "already replayed completely (its checkpoint says so): skipped; --restart sends it again");
            self.counters.files_done.fetch_add(1, Ordering::Relaxed);
            let _ = tx.blocking_send(Msg::Start {
                file,
                id,
                report: report.clone(),
            });
            return tx.blocking_send(Msg::End { file, report }).is_ok();
        }
        let opened = match (input, self.opts.dead_letter) {
            (Input::File(p), Some((format, syslog))) => {
                super::dead_letter::Reader::open(p, format, syslog).map(Opened::DeadLetter)
            }
            (Input::Stdin, _) => {
                input::open_reader("-", Box::new(std::io::stdin()), self.opts.hint)
                    .map(Opened::Export)
            }
            (Input::File(p), None) => input::open(p, self.opts.hint).map(Opened::Export),
        };
        let mut opened = match opened {
            Ok(o) => o,
            Err(e) => return self.unreadable(file, report, e.to_string(), tx),
        };
        match &opened {
            Opened::Export(o) => {
                report.format = Some(o.format.name());
                report.compression = match o.compression {
                    input::Compression::None => None,
                    input::Compression::Gzip => Some("gzip"),
                    input::Compression::Zstd => Some("zstd"),
                };
            }
            Opened::DeadLetter(_) => report.format = Some(super::dead_letter::FORMAT_NAME),
        }
        if resume.items > 0 {
            tracing::info!(path = %name, items = resume.items, line = resume.line, "resuming after what an earlier run delivered");
        }
        if tx
            .blocking_send(Msg::Start {
                file,
                id,
                report: report.clone(),
            })
            .is_err()
        {
            return false;
        }
        let mut ordinal = 0u64;
        let mut last_line = 0u64;
        let mut events = Vec::with_capacity(self.chunk);
        let mut bytes_before = 0u64;
        let flush = |events: &mut Vec<Event>,
                     upto: u64,
                     line: u64,
                     bytes_before: &mut u64,
                     now: u64,
                     counters: &Counters| {
            counters
                .bytes
                .fetch_add(now.saturating_sub(*bytes_before), Ordering::Relaxed);
            *bytes_before = now;
            tx.blocking_send(Msg::Chunk(Chunk {
                file,
                events: std::mem::replace(events, Vec::with_capacity(events.capacity())),
                upto,
                line,
            }))
            .is_ok()
        };
        loop {
            let item = match opened.next() {
                None => break,
                Some(Ok(item)) => item,
                Some(Err(e)) => {
                    let text = e.to_string();
                    self.reporter.say(&text);
                    report.rejected += 1;
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    report.error = Some(text);
                    break;
                }
            };
            ordinal += 1;
            let settled_before = ordinal <= resume.items;
            match item {
                Item::Rejected(r) => {
                    last_line = r.line;
                    if settled_before {
                        continue;
                    }
                    report.rejected += 1;
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    self.reporter
                        .say(&format!("{name}:{}: {}", r.line, r.reason));
                    if let Some(rj) = self.rejects.as_mut() {
                        if let Err(e) = rj.write(&r.raw) {
                            self.reporter.say(&format!(
                                "error: cannot write the rejects file {}: {e}",
                                rj.path.display()
                            ));
                        }
                    }
                }
                Item::Record(rec) => {
                    last_line = rec.line;
                    let ev = rec.event;
                    if settled_before {
                        // Sent by an earlier run: known to the dedupe set again.
                        let kept = self.keep(&ev);
                        if let (Some(d), true) = (self.dedupe.as_mut(), kept) {
                            d.first_sight(
                                crate::sources::window::fingerprint(ev.json()),
                                ev.occurred,
                                file as u32,
                            );
                        }
                        continue;
                    }
                    report.records += 1;
                    self.counters.records_read.fetch_add(1, Ordering::Relaxed);
                    report.first = Some(report.first.map_or(ev.occurred, |t| t.min(ev.occurred)));
                    report.last = Some(report.last.map_or(ev.occurred, |t| t.max(ev.occurred)));
                    if !self.keep(&ev) {
                        self.counters.filtered.fetch_add(1, Ordering::Relaxed);
                    } else if self.dedupe.as_mut().is_some_and(|d| {
                        !d.first_sight(
                            crate::sources::window::fingerprint(ev.json()),
                            ev.occurred,
                            file as u32,
                        )
                    }) {
                        self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    } else {
                        events.push(ev);
                        if events.len() >= self.chunk
                            && !flush(
                                &mut events,
                                ordinal,
                                last_line,
                                &mut bytes_before,
                                opened.bytes_read(),
                                &self.counters,
                            )
                        {
                            return false;
                        }
                    }
                }
            }
        }
        if !flush(
            &mut events,
            ordinal.max(resume.items),
            last_line.max(resume.line),
            &mut bytes_before,
            opened.bytes_read(),
            &self.counters,
        ) {
            return false;
        }
        self.counters.files_done.fetch_add(1, Ordering::Relaxed);
        tx.blocking_send(Msg::End { file, report }).is_ok()
    }

    fn unreadable(
        &mut self,
        file: usize,
        mut report: FileReport,
        error: String,
        tx: &mpsc::Sender<Msg>,
    ) -> bool {
        self.reporter.say(&format!("{}: {error}", report.name));
        report.error = Some(error);
        self.counters.files_done.fetch_add(1, Ordering::Relaxed);
        let _ = tx.blocking_send(Msg::Start {
            file,
            id: None,
            report: report.clone(),
        });
        tx.blocking_send(Msg::End { file, report }).is_ok()
    }

    /// The filters: event time window and event types.
    fn keep(&self, ev: &Event) -> bool {
        if self.opts.since.is_some_and(|s| ev.occurred < s) {
            return false;
        }
        if self.opts.until.is_some_and(|u| ev.occurred >= u) {
            return false;
        }
        if !self.types.is_empty() {
            let rec = crate::normalize::normalize(ev);
            let id = rec.class_id.to_ascii_lowercase();
            return self.types.contains(&id);
        }
        true
    }
}

/// Where one file of the replay stands in the engine.
#[derive(Default)]
struct FileState {
    id: Option<Identity>,
    progress: Progress,
    /// Items settled since the last checkpoint write.
    unsaved: u64,
    report: Option<FileReport>,
    /// Chunks of it not yet acknowledged.
    in_flight: usize,
    ended: bool,
    /// A chunk of it was not delivered.
    failed: bool,
}

/// What one in-flight chunk settles once acknowledged.
struct Commit {
    file: usize,
    upto: u64,
    line: u64,
    records: u64,
}

/// Runs a replay until every record was acknowledged (or `shutdown`, or a sink failed
/// for good). Returns the summary; `Err` only for what prevents starting at all.
pub async fn replay(
    opts: Options,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let counters = Arc::new(Counters::default());
    counters
        .files_total
        .store(opts.inputs.len() as u64, Ordering::Relaxed);
    let total_bytes: u64 = opts
        .inputs
        .iter()
        .map(|i| match i {
            Input::File(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
            Input::Stdin => 0,
        })
        .sum();
    let reporter = Reporter::new(opts.progress, total_bytes, counters.clone());
    let store = if opts.dry_run {
        None
    } else {
        std::fs::create_dir_all(&opts.state_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create state directory {}: {e}",
                opts.state_dir.display()
            )
        })?;
        Some(ReplayStore::open(&opts.state_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot open replay checkpoints in {}: {e}",
                opts.state_dir.display()
            )
        })?)
    };
    let chunk = chunk_records(opts.rate, opts.chunk_records);
    let reader = Reader {
        store: store.clone(),
        dedupe: opts.dedupe.map(Dedupe::new),
        rejects: (!opts.dry_run).then(|| Rejects::new(&opts.state_dir)),
        counters: counters.clone(),
        reporter: reporter.clone(),
        // As given, and as the Audit Log class id it names (`SearchIssued` and
        // `Search issued` are `search_issued`).
        types: opts
            .event_types
            .iter()
            .flat_map(|t| {
                [
                    t.to_ascii_lowercase(),
                    input::audit_class_id(t).to_ascii_lowercase(),
                ]
            })
            .collect(),
        chunk,
        opts: opts.clone(),
    };
    // Two chunks ahead of the engine: the sinks' queues hold more, and every chunk
    // waiting here is memory (about 0.6 MiB of JSON lines each).
    let (tx, mut rx) = mpsc::channel::<Msg>(CHANNEL_CHUNKS);
    let reading = tokio::task::spawn_blocking(move || reader.run(tx));

    let mut sinks = (!opts.dry_run)
        .then(|| crate::pipeline::SinkSet::start(&opts.sinks, &opts.state_dir, &metrics));
    let route = sinks.as_ref().map(|s| s.route());
    let mut pacer = opts.rate.map(Pacer::new);
    let mut files: Vec<FileState> = (0..opts.inputs.len())
        .map(|_| FileState::default())
        .collect();
    type Acked = futures_util::future::BoxFuture<'static, (Outcome, Commit)>;
    let mut in_flight: FuturesOrdered<Acked> = FuturesOrdered::new();
    let mut summary = Summary {
        dry_run: opts.dry_run,
        ..Summary::default()
    };
    let mut reader_done = false;
    let mut stopping = false;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval_at(
        Instant::now() + super::progress::LOG_EVERY,
        super::progress::LOG_EVERY,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    enum Ev {
        Msg(Option<Msg>),
        Acked(Option<(Outcome, Commit)>),
        SinkFailed(Option<(String, String)>),
        Shutdown,
        GraceOver,
        Tick,
    }
    let mut grace_over: Option<Instant> = None;
    let mut sinks_gone = false;
    loop {
        if reader_done && in_flight.is_empty() {
            break;
        }
        let sink_failed = async {
            match sinks.as_mut() {
                Some(s) if !sinks_gone => s.failed().await,
                _ => std::future::pending().await,
            }
        };
        let ev = tokio::select! {
            biased;
            f = sink_failed => Ev::SinkFailed(f),
            _ = &mut shutdown, if !stopping => Ev::Shutdown,
            // Before the records: ready once per LOG_EVERY, it would never be chosen
            // while acknowledgements and chunks are always ready.
            _ = tick.tick() => Ev::Tick,
            a = in_flight.next(), if !in_flight.is_empty() => Ev::Acked(a),
            m = rx.recv(), if !reader_done && in_flight.len() < WINDOW => Ev::Msg(m),
            _ = tokio::time::sleep_until(grace_over.unwrap_or_else(Instant::now)), if grace_over.is_some() => Ev::GraceOver,
        };
        match ev {
            Ev::Tick => reporter.tick(),
            Ev::GraceOver => {
                tracing::warn!(grace = ?opts.shutdown_grace, "grace period over: what was not acknowledged is sent again by the next run");
                break;
            }
            Ev::Shutdown => {
                stopping = true;
                grace_over = Some(Instant::now() + opts.shutdown_grace);
                summary.interrupted = true;
                tracing::info!("interrupted: waiting for the acknowledgements of what was sent");
                // Stop reading; what is in flight is still committed when acknowledged.
                reader_done = true;
                rx.close();
            }
            // Every sink task ended without an error: what is in flight resolves (as
            // not delivered if they dropped it) and a later send fails.
            Ev::SinkFailed(None) => sinks_gone = true,
            Ev::SinkFailed(Some((sink, error))) => {
                summary.sink_failure = Some(format!("sink `{sink}` failed: {error}"));
                break;
            }
            Ev::Msg(None) => reader_done = true,
            Ev::Msg(Some(Msg::Start { file, id, report })) => {
                files[file].id = id;
                files[file].progress = Progress {
                    items: report.resumed_at,
                    ..Progress::default()
                };
                files[file].report = Some(report);
            }
            Ev::Msg(Some(Msg::End { file, report })) => {
                let f = &mut files[file];
                f.ended = true;
                f.report = Some(report);
                if f.in_flight == 0 && !f.failed {
                    finish_file(f, store.as_ref()).await;
                }
            }
            Ev::Msg(Some(Msg::Chunk(c))) => {
                let n = c.events.len();
                let commit = Commit {
                    file: c.file,
                    upto: c.upto,
                    line: c.line,
                    records: n as u64,
                };
                files[c.file].in_flight += 1;
                let route = match (&route, n) {
                    (Some(r), 1..) => r,
                    _ => {
                        in_flight.push_back(async move { (Outcome::Delivered, commit) }.boxed());
                        continue;
                    }
                };
                if let Some(p) = pacer.as_mut() {
                    p.admit(n).await;
                }
                let batch = Batch {
                    source: Arc::from("replay"),
                    events: c.events,
                };
                // A sink whose queue is full holds the send (backpressure): the progress
                // lines go on meanwhile.
                let send = route.send(batch);
                let mut send = std::pin::pin!(send);
                let sent = loop {
                    tokio::select! {
                        biased;
                        r = &mut send => break Some(r),
                        _ = &mut shutdown, if !stopping => break None,
                        _ = tick.tick() => reporter.tick(),
                    }
                };
                match sent {
                    Some(Ok(waiter)) => {
                        counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                        in_flight.push_back(async move { (waiter.wait().await, commit) }.boxed());
                    }
                    Some(Err(_)) => {
                        summary.sink_failure =
                            Some("the sinks stopped before every record was sent".to_string());
                        break;
                    }
                    None => {
                        files[c.file].in_flight -= 1;
                        stopping = true;
                        grace_over = Some(Instant::now() + opts.shutdown_grace);
                        summary.interrupted = true;
                        reader_done = true;
                        rx.close();
                    }
                }
            }
            Ev::Acked(None) => {}
            Ev::Acked(Some((outcome, commit))) => {
                let f = &mut files[commit.file];
                f.in_flight -= 1;
                if outcome != Outcome::Delivered {
                    f.failed = true;
                    summary.sink_failure.get_or_insert_with(|| {
                        "a batch was not delivered by every sink (see the log)".to_string()
                    });
                    break;
                }
                if f.failed {
                    continue;
                }
                // A dry run delivers nothing: its chunks settle without a sink.
                if !opts.dry_run {
                    counters
                        .delivered
                        .fetch_add(commit.records, Ordering::Relaxed);
                }
                f.unsaved += commit.upto.saturating_sub(f.progress.items);
                f.progress.items = commit.upto;
                f.progress.line = commit.line;
                if f.ended && f.in_flight == 0 {
                    finish_file(f, store.as_ref()).await;
                } else if f.unsaved >= CHECKPOINT_EVERY {
                    save(f, store.as_ref()).await;
                }
            }
        }
    }
    // Whatever ends the loop, the reader stops at its next chunk.
    rx.close();
    drop(rx);
    if summary.sink_failure.is_none() {
        // Interrupted: what is in flight may still be acknowledged within the grace,
        // counted from the interruption (one grace in all, not one per step).
        let deadline = grace_over.unwrap_or_else(|| Instant::now() + opts.shutdown_grace);
        while let Ok(Some((outcome, commit))) =
            tokio::time::timeout_at(deadline, in_flight.next()).await
        {
            let f = &mut files[commit.file];
            f.in_flight -= 1;
            if outcome != Outcome::Delivered || f.failed {
                f.failed = true;
                continue;
            }
            counters
                .delivered
                .fetch_add(commit.records, Ordering::Relaxed);
            f.progress.items = commit.upto;
            f.progress.line = commit.line;
            f.unsaved += 1;
        }
        for f in files.iter_mut().filter(|f| f.unsaved > 0 && !f.ended) {
            save(f, store.as_ref()).await;
        }
    }
    drop(in_flight);
    drop(route);
    if let Some(s) = sinks {
        // What is left of the grace after an interruption; all of it at a normal end.
        let left = grace_over.map_or(opts.shutdown_grace, |g| {
            g.saturating_duration_since(Instant::now())
        });
        s.finish(left).await;
    }
    let (rejects, dropped, dropped_fingerprints) = reading.await.unwrap_or_default();
    reporter.done();
    summary.rejects_file = rejects;
    summary.dedupe_dropped_days = dropped;
    summary.dedupe_dropped_fingerprints = dropped_fingerprints;
    summary.records_read = counters.records_read.load(Ordering::Relaxed);
    summary.sent = counters.sent.load(Ordering::Relaxed);
    summary.delivered = counters.delivered.load(Ordering::Relaxed);
    summary.duplicates = counters.duplicates.load(Ordering::Relaxed);
    summary.filtered = counters.filtered.load(Ordering::Relaxed);
    summary.rejected = counters.rejected.load(Ordering::Relaxed);
    summary.files = files
        .into_iter()
        .filter_map(|f| {
            let done = f.ended && !f.failed && f.in_flight == 0;
            f.report.map(|mut r| {
                r.delivered = r.delivered || (done && r.error.is_none());
                r
            })
        })
        .collect();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Every chunk of an ended file was acknowledged: its checkpoint says complete (when
/// the file was read to its end).
async fn finish_file(f: &mut FileState, store: Option<&ReplayStore>) {
    if f.report.as_ref().is_some_and(|r| r.error.is_none()) {
        f.progress.complete = true;
    }
    save(f, store).await;
}

/// Writes the checkpoint of `f` (not for stdin, not in a dry run), on the blocking
/// pool, awaited here. A checkpoint that cannot be written is logged: the replay goes
/// on, and a later run sends that part again.
async fn save(f: &mut FileState, store: Option<&ReplayStore>) {
    let (Some(store), Some(id)) = (store, f.id.clone()) else {
        return;
    };
    if f.report.as_ref().is_some_and(|r| r.already_done) {
        return;
    }
    let store = store.clone();
    let p = f.progress;
    f.unsaved = 0;
    let path = id.path.clone();
    match tokio::task::spawn_blocking(move || store.save(&id, p)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(path = %path.display(), error = %e, "cannot save the replay checkpoint")
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "the replay checkpoint save failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_lets_records_go_at_the_rate() {
        let mut p = Pacer::new(100);
        let t0 = Instant::now();
        for _ in 0..10 {
            p.admit(10).await;
        }
        // The first ten go at once, each later ten 100 ms after the last.
        assert_eq!(t0.elapsed(), Duration::from_millis(900));
        // A pause longer than the schedule gives no burst credit.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t1 = Instant::now();
        p.admit(10).await;
        p.admit(10).await;
        assert_eq!(t1.elapsed(), Duration::from_millis(100));
    }

    /// The schedule `--rate` keeps, on the paused clock, with the chunks the engine
    /// cuts for each rate: a chunk goes when the records before it are due (at
    /// `records before / rate`, within the millisecond of tokio's timers), so at no time
    /// more than one chunk beyond the rate has gone, and each second lets the rate go.
    #[tokio::test(start_paused = true)]
    async fn the_pacing_schedule_keeps_the_rate_at_every_chunk() {
        for rate in [1u32, 3, 7, 10, 99, 1_000, 4_000, 65_536, 1_000_000] {
            let chunk = chunk_records(Some(rate), CHUNK_RECORDS);
            assert!((1..=CHUNK_RECORDS).contains(&chunk), "{rate}: {chunk}");
            if rate >= 10 {
                assert!(chunk as u64 * 10 <= u64::from(rate), "{rate}: {chunk}");
            }
            let mut p = Pacer::new(rate);
            let t0 = Instant::now();
            let mut before = 0u64;
            // Three seconds' worth, at most 300 chunks.
            let total = (3 * u64::from(rate)).min(300 * chunk as u64);
            while before < total {
                p.admit(chunk).await;
                let at = t0.elapsed();
                // tokio's timers wake on the millisecond after the deadline; the
                // schedule goes on from the deadline, so that adds up to no drift.
                let due = Duration::from_nanos(
                    u64::try_from(u128::from(before) * 1_000_000_000 / u128::from(rate)).unwrap(),
                );
                assert!(
                    at >= due && at < due + Duration::from_millis(1),
                    "rate {rate}: the chunk after {before} records went at {at:?}, due {due:?}"
                );
                // Never ahead of the rate by more than this chunk.
                let allowed = at.as_secs_f64() * f64::from(rate) + chunk as f64;
                assert!(
                    (before + chunk as u64) as f64 <= allowed + 1.0,
                    "rate {rate}: {} records by {at:?}",
                    before + chunk as u64
                );
                before += chunk as u64;
            }
            // Over the whole run: the rate, within one chunk.
            let secs = t0.elapsed().as_secs_f64();
            let rate_seen = (before - chunk as u64) as f64 / secs.max(f64::MIN_POSITIVE);
            if secs > 0.0 {
                // Never faster; slower only by the last timer's millisecond.
                let r = f64::from(rate);
                assert!(
                    rate_seen <= r * (1.0 + 1e-9) && rate_seen >= r * secs / (secs + 0.001),
                    "rate {rate}: {rate_seen}/s over {secs} s"
                );
            }
        }
        assert_eq!(chunk_records(None, CHUNK_RECORDS), CHUNK_RECORDS);
        assert_eq!(chunk_records(Some(5), 0), 1);
    }

    #[test]
    fn directories_expand_recursively_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("b/inner")).unwrap();
        for f in ["b/inner/z.jsonl", "b/a.jsonl", "c.jsonl", "a.jsonl"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let got = expand(&[d.to_path_buf(), PathBuf::from("-")]);
        let want: Vec<Input> = ["a.jsonl", "b/a.jsonl", "b/inner/z.jsonl", "c.jsonl"]
            .iter()
            .map(|f| Input::File(d.join(f)))
            .chain([Input::Stdin])
            .collect();
        assert_eq!(got, want);
    }
}
