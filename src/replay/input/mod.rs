//! Reading archived Code42 exports: one file (or stdin) in, a stream of events out.
//!
//! [`open`] (or [`open_reader`] for stdin) detects the compression by its magic bytes
//! (gzip, zstd, none), then the format from the first bytes of the decompressed content
//! (the file name only breaks a tie the content leaves open), and hands back an
//! [`Opened`]: an iterator of [`Item`]s, each a [`Record`] (an [`Event`] whose `raw` is
//! the JSON object in the shape the live API returns, and whose `occurred` is read by
//! the same code the live sources use) or a [`Rejected`] record (its 1-based line, the
//! reason, its verbatim text). A record that cannot be parsed never stops the reading;
//! an [`InputError`] (the file cannot be opened, the gzip stream is truncated, the
//! format is unknown, the JSON document is broken) ends it, after every record read
//! before it.
//!
//! Synchronous (std::io; the caller runs it on a blocking thread) and streaming: the
//! memory held is one record plus the read buffers, whatever the file size. The formats,
//! how each is detected and what each loses against the API's JSON are documented in
//! `docs/replay-formats.md` (held to [`FORMATS`] by a test).
//!
//! - `json`: JSON lines, and the streaming splitter of response bodies.
//! - `csv`: the Audit Log CSV exports (API and console) and the Sync Log CSV export.
//! - `cef`: the Audit Log's server-side CEF export.
//! - `array`: top-level JSON arrays of records.

mod array;
mod cef;
mod csv;
mod json;
#[cfg(test)]
mod tests;

use crate::event::{Event, SourceKind};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a file is compressed, detected by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// An export format [`open`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// A `search-audit-log` / `search-results-export` JSON response body
    /// (`{"events":[...], ...}`); several bodies one after the other are read in turn.
    AuditJsonBody,
    /// One raw Audit Log event per line (c42fwd's `file` sink with `format = "json"`,
    /// the official CLIs' json-lines / raw-json output).
    AuditJsonLines,
    /// The API's CSV export (`Accept: text/csv`, the redeemed download token).
    AuditApiCsv,
    /// The console's CSV export (Administration > Audit Log > Export).
    AuditConsoleCsv,
    /// The API's server-side CEF export (`Accept: text/x-cef`).
    AuditCef,
    /// A `query-details` JSON response body (`{"alerts":[...]}`).
    AlertsDetailsBody,
    /// One alert (details, observations included) per line.
    AlertsJsonLines,
    /// The Directory Sync Log CSV export (`/api/v3/DirectorySyncLog/csv`).
    SyncLogCsv,
    /// The Directory Sync Log JSON export (`{"data":{"Directory Sync Logs":[...]}}`).
    SyncLogJson,
    /// One Sync Log entry per line (c42fwd's `file` sink with `format = "json"`).
    SyncLogJsonLines,
    /// A top-level JSON array of raw Audit Log events (`[{...},{...}]`).
    AuditJsonArray,
    /// A top-level JSON array of alert details.
    AlertsJsonArray,
    /// A top-level JSON array of Sync Log entries.
    SyncLogJsonArray,
}

/// Every format, in the order detection tries them.
pub const FORMATS: &[Format] = &[
    Format::AuditJsonBody,
    Format::AlertsDetailsBody,
    Format::SyncLogJson,
    Format::AuditJsonLines,
    Format::AlertsJsonLines,
    Format::SyncLogJsonLines,
    Format::AuditJsonArray,
    Format::AlertsJsonArray,
    Format::SyncLogJsonArray,
    Format::AuditCef,
    Format::AuditApiCsv,
    Format::AuditConsoleCsv,
    Format::SyncLogCsv,
];

impl Format {
    /// The data set the format's records belong to.
    pub fn kind(self) -> SourceKind {
        match self {
            Format::AuditJsonBody
            | Format::AuditJsonLines
            | Format::AuditApiCsv
            | Format::AuditConsoleCsv
            | Format::AuditCef
            | Format::AuditJsonArray => SourceKind::AuditLog,
            Format::AlertsDetailsBody | Format::AlertsJsonLines | Format::AlertsJsonArray => {
                SourceKind::Alerts
            }
            Format::SyncLogCsv
            | Format::SyncLogJson
            | Format::SyncLogJsonLines
            | Format::SyncLogJsonArray => SourceKind::SyncLog,
        }
    }

    /// A short name for messages and the docs.
    pub fn name(self) -> &'static str {
        match self {
            Format::AuditJsonBody => "audit-log-json-body",
            Format::AuditJsonLines => "audit-log-json-lines",
            Format::AuditApiCsv => "audit-log-api-csv",
            Format::AuditConsoleCsv => "audit-log-console-csv",
            Format::AuditCef => "audit-log-cef",
            Format::AlertsDetailsBody => "alerts-details-body",
            Format::AlertsJsonLines => "alerts-json-lines",
            Format::SyncLogCsv => "sync-log-csv",
            Format::SyncLogJson => "sync-log-json",
            Format::SyncLogJsonLines => "sync-log-json-lines",
            Format::AuditJsonArray => "audit-log-json-array",
            Format::AlertsJsonArray => "alerts-json-array",
            Format::SyncLogJsonArray => "sync-log-json-array",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user said about the files' data set (`--source-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindHint {
    #[default]
    Auto,
    Kind(SourceKind),
}

/// One record read from a file.
#[derive(Debug, Clone)]
pub struct Record {
    pub event: Event,
    /// The 1-based line where the record starts.
    pub line: u64,
}

/// A record that could not be read; the reading goes on after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The 1-based line where the record starts.
    pub line: u64,
    /// Why, naming the field at fault when there is one.
    pub reason: String,
    /// The record's text as it was in the file (without its line end; invalid UTF-8
    /// replaced).
    pub raw: String,
}

#[derive(Debug, Clone)]
pub enum Item {
    Record(Record),
    Rejected(Rejected),
}

/// The rest of a file cannot be read (it cannot be opened, its compressed stream is
/// broken, its format is unknown, its JSON document is broken).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    /// The path as given (`-` for stdin).
    pub name: String,
    /// The line reached, when known.
    pub line: Option<u64>,
    pub reason: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.name, self.reason),
            None => write!(f, "{}: {}", self.name, self.reason),
        }
    }
}

/// One format's reader of records.
trait Parser: Send {
    /// The next item; `Err` is a reason the rest cannot be read, at the given line.
    fn next_item(&mut self) -> Option<Result<Item, (Option<u64>, String)>>;
}

/// An opened file: its detected format and compression, and its records in file order.
/// After an `Err` the iterator yields `None`.
pub struct Opened {
    pub format: Format,
    pub compression: Compression,
    name: String,
    parser: Box<dyn Parser>,
    consumed: Arc<AtomicU64>,
    failed: bool,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// Compressed (on-disk) bytes consumed so far, for progress. Runs ahead of the
    /// records handed out by at most the read buffers.
    pub fn bytes_read(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// The path as given (`-` for stdin).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Iterator for Opened {
    type Item = Result<Item, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.parser.next_item()? {
            Ok(item) => Some(Ok(item)),
            Err((line, reason)) => {
                self.failed = true;
                Some(Err(InputError {
                    name: self.name.clone(),
                    line,
                    reason,
                }))
            }
        }
    }
}

/// Opens `path` and detects its compression and format.
pub fn open(path: &Path, hint: KindHint) -> Result<Opened, InputError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| InputError {
        name: name.clone(),
        line: None,
        reason: format!("cannot open: {e}"),
    })?;
    open_named(name, Box::new(file), hint)
}

/// Like [`open`] for an already open stream (`-`, stdin); `name` names it in messages
/// and breaks format ties like a file name.
pub fn open_reader(
    name: &str,
    r: Box<dyn Read + Send>,
    hint: KindHint,
) -> Result<Opened, InputError> {
    open_named(name.to_string(), r, hint)
}

/// How much decompressed content the format detection looks at, at most.
const SNIFF: usize = 64 * 1024;
/// The read buffer of the decompressed content.
const BUFFER: usize = 64 * 1024;

/// The decompressed content, buffered.
pub(crate) type Source = BufReader<Box<dyn Read + Send>>;

/// An input that cannot be read on: the line it stopped at, and why.
type Unreadable = (Option<u64>, String);

/// The next line of a line-based input that is not blank, without its line end, with
/// `line` moved to its number (1-based); `None` at the end of the input, an error (with
/// the line that could not be read) when reading fails.
pub(super) fn next_line<'a>(
    src: &mut Source,
    buf: &'a mut Vec<u8>,
    line: &mut u64,
) -> Option<Result<&'a [u8], Unreadable>> {
    loop {
        buf.clear();
        match src.read_until(b'\n', buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                return Some(Err((
                    Some(*line + 1),
                    format!("cannot read past line {line}: {e}"),
                )))
            }
        }
        *line += 1;
        let mut end = buf.len();
        while end > 0 && matches!(buf[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        if !buf[..end].iter().all(u8::is_ascii_whitespace) {
            return Some(Ok(&buf[..end]));
        }
    }
}

fn open_named(name: String, r: Box<dyn Read + Send>, hint: KindHint) -> Result<Opened, InputError> {
    let err = |line: Option<u64>, reason: String| InputError {
        name: name.clone(),
        line,
        reason,
    };
    let consumed = Arc::new(AtomicU64::new(0));
    let counted: Box<dyn Read + Send> = Box::new(Counting {
        inner: r,
        n: consumed.clone(),
    });
    let (magic, raw) = peek(counted, 4).map_err(|e| err(None, format!("cannot read: {e}")))?;
    let compression = match magic.as_slice() {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    };
    let content: Box<dyn Read + Send> = match compression {
        Compression::None => raw,
        // Multi-member: `cat a.gz b.gz` is one valid gzip file.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(raw)
                .map_err(|e| err(None, format!("cannot start zstd decoding: {e}")))?,
        ),
    };
    let (head, content) = peek(content, SNIFF).map_err(|e| {
        err(
            Some(1),
            format!("{} content cannot be read: {e}", compression.name()),
        )
    })?;
    let src: Source = BufReader::with_capacity(BUFFER, content);
    let format = detect(&head, &name, hint).map_err(|reason| err(None, reason))?;
    let parser: Box<dyn Parser> = match format {
        Format::AuditJsonLines | Format::AlertsJsonLines | Format::SyncLogJsonLines => {
            Box::new(json::Lines::new(src, format.kind()))
        }
        Format::AuditJsonBody | Format::AlertsDetailsBody | Format::SyncLogJson => {
            Box::new(json::Body::new(src, format))
        }
        Format::AuditApiCsv | Format::AuditConsoleCsv | Format::SyncLogCsv => {
            Box::new(csv::CsvParser::new(src, format).map_err(|reason| err(Some(1), reason))?)
        }
        Format::AuditCef => Box::new(cef::Cef::new(src)),
        Format::AuditJsonArray | Format::AlertsJsonArray | Format::SyncLogJsonArray => {
            Box::new(array::Array::new(src, format.kind()))
        }
    };
    Ok(Opened {
        format,
        compression,
        name,
        parser,
        consumed,
        failed: false,
    })
}

/// The first `n` bytes of `r` (fewer if it ends before), and a reader of all of `r`
/// from its first byte. A read error after some bytes is handed on to the reader, after
/// those bytes, so that the records before it are still read.
fn peek(mut r: Box<dyn Read + Send>, n: usize) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut head = vec![0; n];
    let mut len = 0;
    let mut failed = None;
    while len < n {
        match r.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(k) => len += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if len == 0 => return Err(e),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    head.truncate(len);
    let rest = Deferred { failed, inner: r };
    let whole = io::Cursor::new(head.clone()).chain(rest);
    Ok((head, Box::new(whole)))
}

/// A reader that first returns an error met earlier, then reads on.
struct Deferred {
    failed: Option<io::Error>,
    inner: Box<dyn Read + Send>,
}

impl Read for Deferred {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.failed.take() {
            Some(e) => Err(e),
            None => self.inner.read(buf),
        }
    }
}

/// The format of a file from its first decompressed bytes; the hint and then the name
/// decide what the content leaves open.
fn detect(head: &[u8], name: &str, hint: KindHint) -> Result<Format, String> {
    let text = head
        .strip_prefix(b"\xef\xbb\xbf".as_slice())
        .unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    let lower = name.to_ascii_lowercase();
    let kind_by_name = || {
        if lower.contains("sync") {
            Some(SourceKind::SyncLog)
        } else if lower.contains("alert") {
            Some(SourceKind::Alerts)
        } else if lower.contains("audit") {
            Some(SourceKind::AuditLog)
        } else {
            None
        }
    };
    let hinted = match hint {
        KindHint::Kind(SourceKind::Sessions) => {
            return Err("replay reads no session exports".to_string())
        }
        KindHint::Kind(SourceKind::FileEvents) => {
            return Err("replay does not read file event exports".to_string())
        }
        KindHint::Kind(k) => Some(k),
        KindHint::Auto => None,
    };
    let lines_of = |k: SourceKind| match k {
        SourceKind::AuditLog => Format::AuditJsonLines,
        SourceKind::Alerts => Format::AlertsJsonLines,
        SourceKind::SyncLog => Format::SyncLogJsonLines,
        // Never asked: a sessions hint is refused above and no content names sessions.
        SourceKind::Sessions => Format::AuditJsonLines,
        // Refused above; never guessed from a name.
        SourceKind::FileEvents => Format::AuditJsonLines,
    };
    let array_of = |k: SourceKind| match k {
        SourceKind::AuditLog => Format::AuditJsonArray,
        SourceKind::Alerts => Format::AlertsJsonArray,
        SourceKind::SyncLog => Format::SyncLogJsonArray,
        SourceKind::Sessions => Format::AuditJsonArray,
        SourceKind::FileEvents => Format::AuditJsonArray,
    };
    let format = match start.map(|i| &text[i..]) {
        // Empty: no records whatever the format.
        None => lines_of(hinted.or_else(kind_by_name).unwrap_or(SourceKind::AuditLog)),
        Some(t) if t[0] == b'{' => {
            let top = json::top_level(t);
            if top.has("events") {
                Format::AuditJsonBody
            } else if top.has("alerts") {
                Format::AlertsDetailsBody
            } else if top.has("data") {
                Format::SyncLogJson
            } else if let Some(k) = top.record_kind().or(hinted).or_else(kind_by_name) {
                lines_of(k)
            } else {
                return Err(unknown("a json object of no known shape"));
            }
        }
        Some(t) if t[0] == b'[' => {
            // The first element decides, as the first object of JSON lines does.
            let rest = &t[1..];
            match rest.iter().position(|b| !b.is_ascii_whitespace()) {
                // `[]` (or only `[` in the first bytes): no element to tell.
                None => array_of(hinted.or_else(kind_by_name).unwrap_or(SourceKind::AuditLog)),
                Some(i) if rest[i] == b']' => {
                    array_of(hinted.or_else(kind_by_name).unwrap_or(SourceKind::AuditLog))
                }
                Some(i) if rest[i] == b'{' => {
                    let first = json::top_level(&rest[i..]);
                    if first.has("events") || first.has("alerts") || first.has("data") {
                        return Err(unknown(
                            "a json array of response bodies: save each body as it came, \
                             one after the other, or the records alone",
                        ));
                    }
                    match first.record_kind().or(hinted).or_else(kind_by_name) {
                        Some(k) => array_of(k),
                        None => return Err(unknown("a json array of objects of no known shape")),
                    }
                }
                Some(_) => match hinted.or_else(kind_by_name) {
                    // Its elements are rejected one by one, with their lines.
                    Some(k) => array_of(k),
                    None => return Err(unknown("a json array whose first element is no object")),
                },
            }
        }
        Some(t) if t.starts_with(b"CEF:") => Format::AuditCef,
        Some(t) => match csv::header_format(t) {
            Some(f) => f,
            None => return Err(unknown("neither json, cef nor a known csv header")),
        },
    };
    if let Some(k) = hinted {
        if format.kind() != k {
            return Err(format!(
                "holds {} records ({format}), not {} as the source kind says",
                format.kind().as_str(),
                k.as_str()
            ));
        }
    }
    Ok(format)
}

/// The Audit Log Device Event Class ID (`search_issued`) an event type written as the
/// exports and the console write it (`SearchIssued`, `Search issued`, `search_issued`)
/// stands for; what is no catalog type comes back in snake case.
pub fn audit_class_id(v: &str) -> String {
    crate::normalize::catalog::audit_type_name(&csv::type_tag(v)).to_string()
}

fn unknown(what: &str) -> String {
    let tried: Vec<&str> = FORMATS.iter().map(|f| f.name()).collect();
    format!("unknown format ({what}); tried: {}", tried.join(", "))
}

/// Counts the bytes read from the file (for [`Opened::bytes_read`]).
struct Counting {
    inner: Box<dyn Read + Send>,
    n: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

#[cfg(test)]
mod class_id_tests {
    #[test]
    fn event_types_as_the_exports_and_the_console_write_them_are_class_ids() {
        // The catalog's console name of `search_issued` is "Forensic Search query".
        for v in [
            "SearchIssued",
            "Forensic Search query",
            "search_issued",
            "Search issued",
        ] {
            assert_eq!(super::audit_class_id(v), "search_issued", "{v}");
        }
        // Two types whose names differ only by an underscore stay apart.
        assert_eq!(
            super::audit_class_id("UserNameChanged"),
            "user_name_changed"
        );
        assert_eq!(super::audit_class_id("UsernameChanged"), "username_changed");
    }
}
