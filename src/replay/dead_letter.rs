//! `c42fwd replay --dead-letter SINK`: sends the records of a sink's dead-letter file
//! again, once the cause (a receiver's configuration, an index, a size limit) was fixed.
//!
//! The lines (`crate::sinks::dead_letter`) carry the event each record was encoded
//! from (`kind`, `occurred`, `event`): it goes through the sink's encoder again, with
//! the configuration as it is now. Lines of earlier builds hold only the encoded
//! record. Such a line is sent again only when re-encoding is sound without the event:
//! when the sink's format is `json` without a syslog header, the record *is* the
//! event's JSON text, so it is taken as the event. Otherwise it is rejected (counted,
//! reported with its line, written to the rejects file) with the reason.
//!
//! The file is first renamed to `<sink>.ndjson.redriving-<time>` (so that records the
//! sink refuses again during the re-drive go to a new `<sink>.ndjson`, not into the
//! file being read), and once every record of it was delivered it is renamed
//! `<sink>.ndjson.redriven-<time>`, so it is never sent twice. A re-drive cut short
//! leaves the `.redriving-` file; the next re-drive of the sink picks it up first, and
//! its replay checkpoint lets it go on where it stopped. A `--dry-run` re-drive reads
//! the files under their own names and renames nothing ([`list`]).

use super::input::{InputError, Item, Record, Rejected};
use crate::encode::{Format, SyslogStyle};
use crate::event::{Event, SourceKind};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The format name shown for a dead-letter file.
pub const FORMAT_NAME: &str = "c42fwd dead-letter file";

const REDRIVING: &str = ".redriving-";

/// The dead-letter files of sink `sink` to re-drive, oldest first: those a cut-short
/// re-drive left, then the current `<sink>.ndjson` (renamed to a `.redriving-` name
/// here). Empty when there is nothing to re-drive.
pub fn prepare(state_dir: &Path, sink: &str) -> std::io::Result<Vec<PathBuf>> {
    prepare_or_list(state_dir, sink, true)
}

/// The files [`prepare`] would hand out, without renaming anything: the current
/// `<sink>.ndjson` under its own name (`--dry-run` writes nothing).
pub fn list(state_dir: &Path, sink: &str) -> std::io::Result<Vec<PathBuf>> {
    prepare_or_list(state_dir, sink, false)
}

fn prepare_or_list(state_dir: &Path, sink: &str, rename: bool) -> std::io::Result<Vec<PathBuf>> {
    let dir = state_dir.join("dead-letter");
    let base = format!("{sink}.ndjson");
    let mut out: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{base}{REDRIVING}")))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    out.sort();
    let current = dir.join(&base);
    if current.is_file() && !rename {
        out.push(current);
    } else if current.is_file() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let moved = dir.join(format!("{base}{REDRIVING}{stamp}"));
        std::fs::rename(&current, &moved)?;
        out.push(moved);
    }
    Ok(out)
}

/// After every record of `path` (a `.redriving-` file) was delivered: renames it
/// `.redriven-<time>`. Returns the new name.
pub fn retire(path: &Path) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let base = name.split(REDRIVING).next().unwrap_or(&name).to_string();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let to = path.with_file_name(format!("{base}.redriven-{stamp}"));
    std::fs::rename(path, &to)?;
    Ok(to)
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    record: Option<std::borrow::Cow<'a, str>>,
    kind: Option<SourceKind>,
    occurred: Option<&'a str>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
}

/// Reads one dead-letter file as replay items.
pub struct Reader {
    path: PathBuf,
    lines: BufReader<std::fs::File>,
    /// Lines without the event may be taken as the event (see the module docs).
    record_is_event: bool,
    line: u64,
    bytes: u64,
    buf: String,
}

impl Reader {
    /// Opens `path` for a sink encoding with `format` and `syslog`.
    pub fn open(path: &Path, format: Format, syslog: SyslogStyle) -> Result<Reader, InputError> {
        let f = std::fs::File::open(path).map_err(|e| InputError {
            name: path.display().to_string(),
            line: None,
            reason: format!("cannot open: {e}"),
        })?;
        Ok(Reader {
            path: path.to_path_buf(),
            lines: BufReader::with_capacity(64 * 1024, f),
            record_is_event: format == Format::JsonRaw && syslog == SyslogStyle::None,
            line: 0,
            bytes: 0,
            buf: String::new(),
        })
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn item(&self, text: &str) -> Result<Event, String> {
        let l: Line<'_> = serde_json::from_str(text)
            .map_err(|e| format!("not a dead-letter line (json object expected): {e}"))?;
        match (l.kind, l.event) {
            (Some(kind), Some(raw)) => {
                let occurred = l
                    .occurred
                    .and_then(crate::normalize::parse_rfc3339)
                    .ok_or_else(|| {
                        "the line has an event but no valid `occurred` time".to_string()
                    })?;
                Ok(Event::new(kind, raw.to_owned(), occurred))
            }
            _ if self.record_is_event => {
                let record = l
                    .record
                    .ok_or("the line has neither an event nor a record")?;
                let raw = RawValue::from_string(record.into_owned()).map_err(|e| {
                    format!("the record of this line (an earlier build's) is not json: {e}")
                })?;
                let occurred = crate::api::parse_event_time(raw.get()).map_err(|e| {
                    format!("the record of this line (an earlier build's) has no event time: {e}")
                })?;
                Ok(Event::new(SourceKind::AuditLog, raw, occurred))
            }
            _ => Err(
                "written by an earlier build: the line holds only the encoded record, \
                      not the event, and this sink's format is not plain `json`, so it cannot \
                      be encoded again through the current configuration; send the record \
                      by hand (it is in the rejects file)"
                    .to_string(),
            ),
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Item, InputError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.lines.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(n) => {
                    self.bytes += n as u64;
                    self.line += 1;
                    let text = self.buf.trim_end_matches(['\n', '\r']);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let line = self.line;
                    return Some(Ok(match self.item(text) {
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
                        name: self.path.display().to_string(),
                        line: Some(self.line + 1),
                        reason: e.to_string(),
                    }))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str, format: Format, syslog: SyslogStyle) -> Vec<Item> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.ndjson");
        std::fs::write(&p, text).unwrap();
        Reader::open(&p, format, syslog)
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn new_lines_give_the_event_and_old_ones_only_when_sound() {
        let new = r#"{"time":"2026-01-01T00:00:00.000Z","sink":"s","reason":"r","record":"CEF:0|x","kind":"alerts","occurred":"2025-05-01T10:00:00.5Z","event":{"id":"a1","createdAt":"2025-05-01T10:00:00.5Z"}}"#;
        let old = r#"{"time":"2026-01-01T00:00:00.000Z","sink":"s","reason":"r","record":"{\"timestamp\":\"2025-05-01T10:00:00Z\",\"a\":1}"}"#;
        let got = items(
            &format!("{new}\n{old}\n"),
            Format::Cef,
            SyslogStyle::Rfc5424,
        );
        match &got[0] {
            Item::Record(r) => {
                assert_eq!(r.event.kind, SourceKind::Alerts);
                assert_eq!(
                    r.event.json(),
                    r#"{"id":"a1","createdAt":"2025-05-01T10:00:00.5Z"}"#
                );
                assert_eq!(r.line, 1);
            }
            other => panic!("{other:?}"),
        }
        match &got[1] {
            Item::Rejected(r) => {
                assert_eq!(r.line, 2);
                assert_eq!(r.raw, old);
                assert!(r.reason.contains("earlier build"), "{}", r.reason);
            }
            other => panic!("{other:?}"),
        }
        // The same old line for a plain-json sink: the record is the event.
        let got = items(&format!("{old}\n"), Format::JsonRaw, SyslogStyle::None);
        match &got[0] {
            Item::Record(r) => assert_eq!(
                r.event.json(),
                r#"{"timestamp":"2025-05-01T10:00:00Z","a":1}"#
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prepare_moves_the_file_aside_and_retire_marks_it_done() {
        let dir = tempfile::tempdir().unwrap();
        assert!(prepare(dir.path(), "s").unwrap().is_empty());
        let dl = dir.path().join("dead-letter");
        std::fs::create_dir(&dl).unwrap();
        std::fs::write(dl.join("s.ndjson"), "{}\n").unwrap();
        std::fs::write(dl.join("other.ndjson"), "{}\n").unwrap();
        // A dry run's listing moves nothing.
        assert_eq!(list(dir.path(), "s").unwrap(), [dl.join("s.ndjson")]);
        assert!(dl.join("s.ndjson").exists());
        let files = prepare(dir.path(), "s").unwrap();
        assert_eq!(files.len(), 1);
        assert!(!dl.join("s.ndjson").exists());
        let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("s.ndjson.redriving-"), "{name}");
        // A second call picks the cut-short one up again.
        assert_eq!(prepare(dir.path(), "s").unwrap(), files);
        let done = retire(&files[0]).unwrap();
        let done = done.file_name().unwrap().to_str().unwrap().to_string();
        assert!(done.starts_with("s.ndjson.redriven-"), "{done}");
        assert!(prepare(dir.path(), "s").unwrap().is_empty());
    }
}
