//! Reading archived export files (temporary: JSON lines of Audit Log events only).

use crate::event::{Event, SourceKind};
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    AuditJsonBody,
    AuditJsonLines,
    AuditApiCsv,
    AuditConsoleCsv,
    AuditCef,
    AlertsDetailsBody,
    AlertsJsonLines,
    SyncLogCsv,
    SyncLogJson,
}

pub const FORMATS: &[Format] = &[Format::AuditJsonLines];

impl Format {
    pub fn kind(self) -> SourceKind {
        match self {
            Format::AlertsDetailsBody | Format::AlertsJsonLines => SourceKind::Alerts,
            Format::SyncLogCsv | Format::SyncLogJson => SourceKind::SyncLog,
            _ => SourceKind::AuditLog,
        }
    }
    pub fn name(self) -> &'static str {
        "audit log json lines"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindHint {
    Auto,
    Kind(SourceKind),
}

#[derive(Debug)]
pub struct Record {
    pub event: Event,
    pub line: u64,
}

#[derive(Debug)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
    pub raw: String,
}

#[derive(Debug)]
pub enum Item {
    Record(Record),
    Rejected(Rejected),
}

#[derive(Debug)]
pub struct InputError {
    pub path: PathBuf,
    pub line: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.path.display(), self.reason),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

impl std::error::Error for InputError {}

pub struct Opened {
    pub format: Format,
    pub compression: Compression,
    name: PathBuf,
    reader: BufReader<Box<dyn Read + Send>>,
    line: u64,
    bytes: u64,
    buf: String,
}

impl Opened {
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

impl Iterator for Opened {
    type Item = Result<Item, InputError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(n) => {
                    self.bytes += n as u64;
                    self.line += 1;
                    let text = self.buf.trim_end_matches(['\n', '\r']);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let line = self.line;
                    let parsed = RawValue::from_string(text.to_string())
                        .map_err(|e| format!("not json: {e}"))
                        .and_then(|raw| {
                            crate::api::parse_event_time(raw.get())
                                .map(|t| Event::new(self.format.kind(), raw, t))
                        });
                    return Some(Ok(match parsed {
                        Ok(event) => Item::Record(Record { event, line }),
                        Err(reason) => Item::Rejected(Rejected {
                            line,
                            reason,
                            raw: text.to_string(),
                        }),
                    }));
                }
                Err(e) => {
                    return Some(Err(InputError {
                        path: self.name.clone(),
                        line: Some(self.line + 1),
                        reason: e.to_string(),
                    }))
                }
            }
        }
    }
}

pub fn open(path: &Path, hint: KindHint) -> Result<Opened, InputError> {
    let f = std::fs::File::open(path).map_err(|e| InputError {
        path: path.to_path_buf(),
        line: None,
        reason: format!("cannot open: {e}"),
    })?;
    open_reader(&path.display().to_string(), Box::new(f), hint)
}

pub fn open_reader(
    name: &str,
    r: Box<dyn Read + Send>,
    _hint: KindHint,
) -> Result<Opened, InputError> {
    Ok(Opened {
        format: Format::AuditJsonLines,
        compression: Compression::None,
        name: PathBuf::from(name),
        reader: BufReader::with_capacity(64 * 1024, r),
        line: 0,
        bytes: 0,
        buf: String::new(),
    })
}
