//! CSV inputs: the Audit Log's CSV exports (the API's and the console's) and the
//! Directory Sync Log's CSV export, each row turned back into the JSON object the API
//! returns for it.
//!
//! Columns are found by name (case, spaces and underscores ignored), not by position,
//! so a reordered or partial export still reads. The type-specific fields of an Audit
//! Log event travel in the API export's `Details` column as a JSON object; its members
//! are put back into the event as they were written (key order, number text). What a CSV
//! export cannot carry is listed in `docs/replay-formats.md`.
//!
//! The rows are parsed by the `csv` crate (RFC 4180: quoted fields with commas, quotes
//! and line breaks). To hand on a rejected row verbatim, the bytes the parser reads are
//! also kept on a tape, from the start of the row being read on.

use super::json::item_of;
use super::{Format, Item, Parser, Rejected, Source};
use crate::event::SourceKind;
use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, OnceLock};

/// A column's name as compared: lower case ASCII letters and digits only.
fn norm(name: &[u8]) -> String {
    name.iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(|b| b.to_ascii_lowercase() as char)
        .collect()
}

/// The fields of an Audit Log event a CSV column can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuditField {
    Type,
    Timestamp,
    ActorName,
    ActorId,
    ActorIp,
    ActorAgent,
    ActorType,
    Success,
    Details,
}

/// The field of a column of the API's export (`Type,Timestamp,ActorName,...`).
fn api_column(n: &str) -> Option<AuditField> {
    Some(match n {
        "type" => AuditField::Type,
        "timestamp" => AuditField::Timestamp,
        "actorname" => AuditField::ActorName,
        "actorid" => AuditField::ActorId,
        "actoripaddress" => AuditField::ActorIp,
        "actoragent" => AuditField::ActorAgent,
        "actortype" => AuditField::ActorType,
        "success" => AuditField::Success,
        "details" => AuditField::Details,
        _ => return None,
    })
}

/// The field of a column of the console's export, which names its columns as the
/// console's Audit Log list does (`Username`, `Event type`, `Date observed`,
/// `IP address`, ...); the API's names are accepted too.
fn console_column(n: &str) -> Option<AuditField> {
    api_column(n).or(Some(match n {
        "eventtype" | "event" => AuditField::Type,
        "dateobserved" | "date" | "eventtime" | "time" => AuditField::Timestamp,
        "username" | "actor" | "user" => AuditField::ActorName,
        "userid" | "useruid" => AuditField::ActorId,
        "ipaddress" | "ip" => AuditField::ActorIp,
        "useragent" => AuditField::ActorAgent,
        "usertype" => AuditField::ActorType,
        "result" => AuditField::Success,
        "detail" | "eventdetails" => AuditField::Details,
        _ => return None,
    }))
}

const SYNC_LOG_COLUMNS: &[&str] = &[
    "username",
    "action",
    "field",
    "oldValue",
    "newValue",
    "providerName",
    "logEventTimeStamp",
];

/// The CSV format of a file from its first bytes, if its header is a known one.
pub(super) fn header_format(t: &[u8]) -> Option<Format> {
    let line = t.split(|b| *b == b'\n').next()?;
    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line);
    let mut rec = ::csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut rec).ok()? {
        return None;
    }
    let names: Vec<String> = rec.iter().map(norm).collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("logeventtimestamp") && has("action") {
        return Some(Format::SyncLogCsv);
    }
    let fields = |f: fn(&str) -> Option<AuditField>| -> Vec<AuditField> {
        names.iter().filter_map(|n| f(n)).collect()
    };
    let api = fields(api_column);
    if api.contains(&AuditField::Type) && api.contains(&AuditField::Timestamp) {
        return Some(Format::AuditApiCsv);
    }
    let console = fields(console_column);
    if console.contains(&AuditField::Type) && console.contains(&AuditField::Timestamp) {
        return Some(Format::AuditConsoleCsv);
    }
    None
}

/// The bytes read by the CSV parser, from the start of the current row on.
#[derive(Default)]
struct Tape {
    /// The file offset of `bytes[0]`.
    base: u64,
    bytes: Vec<u8>,
}

/// Hands the source to the parser, keeping what it read on the tape.
struct Tee {
    inner: Source,
    tape: Arc<Mutex<Tape>>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut t) = self.tape.lock() {
            t.bytes.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// What each column becomes.
enum Layout {
    Audit(Vec<Option<AuditField>>),
    SyncLog(Vec<Option<usize>>),
}

pub(super) struct CsvParser {
    rdr: ::csv::Reader<Tee>,
    tape: Arc<Mutex<Tape>>,
    kind: SourceKind,
    layout: Layout,
    header_len: usize,
    rec: ::csv::ByteRecord,
    /// The JSON text being built (reused).
    json: String,
    types: TypeTags,
}

/// [`type_tag`] of the `Type` texts seen so far: a file has few distinct ones, and each
/// is looked up once.
#[derive(Default)]
struct TypeTags {
    seen: HashMap<String, String>,
}

impl TypeTags {
    /// At most this many texts are kept (an export has a few dozen event types).
    const MAX: usize = 4096;

    fn tag(&mut self, v: &str) -> &str {
        if !self.seen.contains_key(v) {
            if self.seen.len() >= Self::MAX {
                self.seen.clear();
            }
            self.seen.insert(v.to_string(), type_tag(v));
        }
        &self.seen[v]
    }
}

impl CsvParser {
    pub(super) fn new(src: Source, format: Format) -> Result<Self, String> {
        let tape = Arc::new(Mutex::new(Tape::default()));
        let mut rdr = ::csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .buffer_capacity(64 * 1024)
            .from_reader(Tee {
                inner: src,
                tape: tape.clone(),
            });
        let header = rdr
            .byte_headers()
            .map_err(|e| format!("cannot read the csv header: {e}"))?
            .clone();
        let names: Vec<String> = header.iter().map(norm).collect();
        let layout = match format {
            Format::SyncLogCsv => Layout::SyncLog(
                names
                    .iter()
                    .map(|n| {
                        SYNC_LOG_COLUMNS
                            .iter()
                            .position(|c| norm(c.as_bytes()) == *n)
                    })
                    .collect(),
            ),
            Format::AuditApiCsv => Layout::Audit(names.iter().map(|n| api_column(n)).collect()),
            _ => Layout::Audit(names.iter().map(|n| console_column(n)).collect()),
        };
        let mut p = CsvParser {
            rdr,
            tape,
            kind: format.kind(),
            layout,
            header_len: header.len(),
            rec: ::csv::ByteRecord::new(),
            json: String::with_capacity(4096),
            types: TypeTags::default(),
        };
        let end = p.rdr.position().byte();
        p.forget_before(end);
        Ok(p)
    }

    /// Drops the tape before file offset `at` (the start of the next row).
    fn forget_before(&mut self, at: u64) {
        if let Ok(mut t) = self.tape.lock() {
            let k = (at.saturating_sub(t.base) as usize).min(t.bytes.len());
            // Drained in large steps: a drain moves what is left to the front.
            if k >= 256 * 1024 || k == t.bytes.len() {
                t.bytes.drain(..k);
                t.base += k as u64;
            }
        }
    }

    /// The row's text between file offsets `start` and `end`, without its line end.
    fn verbatim(&self, start: u64, end: u64) -> String {
        let Ok(t) = self.tape.lock() else {
            return String::new();
        };
        let from = (start.saturating_sub(t.base) as usize).min(t.bytes.len());
        let to = (end.saturating_sub(t.base) as usize).clamp(from, t.bytes.len());
        let mut s = &t.bytes[from..to];
        while let [rest @ .., b'\n' | b'\r'] = s {
            s = rest;
        }
        String::from_utf8_lossy(s).into_owned()
    }
}

impl Parser for CsvParser {
    fn next_item(&mut self) -> Option<Result<Item, (Option<u64>, String)>> {
        loop {
            let before = self.rdr.position().clone();
            match self.rdr.read_byte_record(&mut self.rec) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => {
                    let line = before.line();
                    return Some(Err((
                        Some(line),
                        format!("cannot read past line {}: {e}", line.saturating_sub(1)),
                    )));
                }
            }
            let pos = self.rec.position().cloned().unwrap_or(before);
            let line = pos.line();
            let end = self.rdr.position().byte();
            // A blank line: the csv crate skips those itself; a lone empty field is one too.
            if self.rec.len() == 1 && self.rec[0].is_empty() {
                self.forget_before(end);
                continue;
            }
            let built = if self.rec.len() != self.header_len {
                Err(format!(
                    "has {} fields, the header has {}",
                    self.rec.len(),
                    self.header_len
                ))
            } else {
                self.build()
            };
            let item = match built {
                Ok(()) => {
                    // A copy of exactly its length (the event keeps it as is); the
                    // buffer stays, with its capacity, for the next row.
                    let text = self.json.clone();
                    match item_of(self.kind, text, line) {
                        Item::Rejected(mut r) => {
                            if let Some(fault) = self.details_fault() {
                                r.reason = fault;
                            }
                            r.raw = self.verbatim(pos.byte(), end);
                            Item::Rejected(r)
                        }
                        item => item,
                    }
                }
                Err(reason) => Item::Rejected(Rejected {
                    line,
                    reason,
                    raw: self.verbatim(pos.byte(), end),
                }),
            };
            self.forget_before(end);
            return Some(Ok(item));
        }
    }
}

/// A field's text, or why it is not UTF-8.
fn text<'a>(rec: &'a ::csv::ByteRecord, i: usize, name: &str) -> Result<&'a str, String> {
    std::str::from_utf8(&rec[i]).map_err(|e| format!("{name}: not valid utf-8: {e}"))
}

/// Appends `"key":` and `value` as a JSON string.
fn push_str_member(out: &mut String, key: &str, value: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    push_json_string(out, value);
}

fn push_json_string(out: &mut String, value: &str) {
    if !value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push('"');
        out.push_str(value);
        out.push('"');
        return;
    }
    // serde_json's own escaping, as the API's JSON would have it.
    let mut buf = Vec::with_capacity(value.len() + 8);
    serde_json::to_writer(&mut buf, value).expect("a string serializes");
    out.push_str(std::str::from_utf8(&buf).expect("serde_json writes utf-8"));
}

impl CsvParser {
    /// Why the row's `Details` column is not a JSON object, if it is the fault.
    fn details_fault(&self) -> Option<String> {
        let Layout::Audit(cols) = &self.layout else {
            return None;
        };
        let i = cols.iter().position(|c| *c == Some(AuditField::Details))?;
        let v = std::str::from_utf8(self.rec.get(i)?).ok()?.trim();
        if v.is_empty() {
            return None;
        }
        details_fault(v)
    }

    /// Builds the row's JSON object into `self.json`.
    fn build(&mut self) -> Result<(), String> {
        self.json.clear();
        self.json.push('{');
        match &self.layout {
            Layout::SyncLog(cols) => build_sync_log(&self.rec, cols, &mut self.json)?,
            Layout::Audit(cols) => build_audit(&self.rec, cols, &mut self.types, &mut self.json)?,
        }
        self.json.push('}');
        Ok(())
    }
}

fn build_sync_log(
    rec: &::csv::ByteRecord,
    cols: &[Option<usize>],
    out: &mut String,
) -> Result<(), String> {
    // In the order the API writes them.
    for (k, name) in SYNC_LOG_COLUMNS.iter().enumerate() {
        let Some(i) = cols.iter().position(|c| *c == Some(k)) else {
            continue;
        };
        let v = text(rec, i, name)?;
        match *name {
            // Nullable: an empty field was null (the export writes null as empty).
            "field" | "oldValue" | "newValue" if v.is_empty() => {
                if !out.ends_with('{') {
                    out.push(',');
                }
                out.push('"');
                out.push_str(name);
                out.push_str("\":null");
            }
            _ => push_str_member(out, name, v),
        }
    }
    Ok(())
}

/// `Type` column text -> the `type$` value: the PascalCase name of the API export
/// (`SearchIssued`), the console's display name (`Search issued`) or the snake_case
/// name (`search_issued`) of a catalog type; an unknown PascalCase name is turned into
/// snake_case by its capitals.
pub(super) fn type_tag(v: &str) -> String {
    struct Names {
        /// PascalCase and snake_case names, exactly.
        exact: HashMap<String, &'static str>,
        /// Display names, case and spacing ignored.
        display: HashMap<String, &'static str>,
    }
    static NAMES: OnceLock<Names> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        let mut exact = HashMap::new();
        let mut display = HashMap::new();
        for t in crate::normalize::catalog::AUDIT_EVENT_TYPES {
            exact.insert(pascal_case(t.name), t.name);
            exact.insert(t.name.to_string(), t.name);
            display.insert(norm(t.display.as_bytes()), t.name);
        }
        Names { exact, display }
    });
    let v = v.trim();
    if v.starts_with("audit_log::") {
        return v.to_string();
    }
    let name = match names
        .exact
        .get(v)
        .or_else(|| names.display.get(&norm(v.as_bytes())))
    {
        Some(n) => (*n).to_string(),
        None => snake_case(v),
    };
    format!("audit_log::{name}/1")
}

/// `search_issued` -> `SearchIssued`, as the exports spell the type.
fn pascal_case(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn snake_case(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 4);
    for (i, c) in v.trim().chars().enumerate() {
        if c == ' ' || c == '-' {
            s.push('_');
        } else if c.is_ascii_uppercase() {
            if i > 0 && !s.ends_with('_') {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// The console's words for the actor types, and the API's.
fn actor_type(v: &str) -> String {
    match norm(v.as_bytes()).as_str() {
        "user" => "USER".into(),
        "code42supportuser" | "supportuser" => "SUPPORT_USER".into(),
        "apiclient" => "API_CLIENT".into(),
        "system" => "SYSTEM".into(),
        "unknown" => "UNKNOWN".into(),
        _ => v.to_string(),
    }
}

/// `v` when [`iso_time`] would return it unchanged: ISO-8601 with a `T`, no spaces
/// around it (what the API's export writes).
fn iso_time_as_is(v: &str) -> Option<&str> {
    let b = v.as_bytes();
    let plain = b.len() >= 19
        && b[10] == b'T'
        && b[4] == b'-'
        && v.trim().len() == v.len()
        && !v.ends_with(" UTC");
    plain.then_some(v)
}

/// A time as an export writes it, as the ISO-8601 text the API's JSON has: ISO-8601
/// as is; `YYYY-MM-DD HH:MM:SS[.fff][ UTC]` (a space for the `T`, no zone: UTC, as the
/// console shows it) rewritten.
fn iso_time(v: &str) -> String {
    if let Some(t) = iso_time_as_is(v) {
        return t.to_string();
    }
    let v = v.trim();
    let v = v.strip_suffix(" UTC").unwrap_or(v);
    let b = v.as_bytes();
    if b.len() >= 19 && b[10] == b' ' && b[4] == b'-' && b[13] == b':' {
        let zoned = v[19..].contains(['Z', '+']) || v[19..].contains('-');
        let mut s = format!("{}T{}", &v[..10], &v[11..]);
        if !zoned {
            s.push('Z');
        }
        return s;
    }
    v.to_string()
}

fn build_audit(
    rec: &::csv::ByteRecord,
    cols: &[Option<AuditField>],
    types: &mut TypeTags,
    out: &mut String,
) -> Result<(), String> {
    let find = |f: AuditField| cols.iter().position(|c| *c == Some(f));
    let Some(ti) = find(AuditField::Type) else {
        return Err("no event type column".to_string());
    };
    let ty = text(rec, ti, "Type")?;
    if ty.trim().is_empty() {
        return Err("Type: empty".to_string());
    }
    push_str_member(out, "type$", types.tag(ty));
    // The order of the API's JSON.
    for (f, key) in [
        (AuditField::ActorId, "actorId"),
        (AuditField::ActorName, "actorName"),
        (AuditField::ActorAgent, "actorAgent"),
        (AuditField::ActorIp, "actorIpAddress"),
        (AuditField::ActorType, "actorType"),
        (AuditField::Timestamp, "timestamp"),
    ] {
        let Some(i) = find(f) else { continue };
        let v = text(rec, i, key)?;
        match f {
            AuditField::ActorType => match v {
                // The API's own words, as most rows have them: no allocation.
                "USER" | "SUPPORT_USER" | "API_CLIENT" | "SYSTEM" | "UNKNOWN" => {
                    push_str_member(out, key, v)
                }
                _ => push_str_member(out, key, &actor_type(v)),
            },
            AuditField::Timestamp => match iso_time_as_is(v) {
                Some(t) => push_str_member(out, key, t),
                None => push_str_member(out, key, &iso_time(v)),
            },
            _ => push_str_member(out, key, v),
        }
    }
    if let Some(i) = find(AuditField::Success) {
        let v = text(rec, i, "Success")?;
        let b = match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "success" | "succeeded" | "yes" => Some(true),
                "false" | "failure" | "failed" | "no" => Some(false),
                "" => None,
                _ => return Err(format!("Success: {v:?} is not true or false")),
            },
        };
        if let Some(b) = b {
            out.push_str(if b {
                ",\"success\":true"
            } else {
                ",\"success\":false"
            });
        }
    }
    if let Some(i) = find(AuditField::Details) {
        let v = text(rec, i, "Details")?.trim();
        if !v.is_empty() {
            let members = details_members(v)
                .map_err(|e| details_fault(v).unwrap_or(e))?
                .trim();
            if !members.is_empty() {
                out.push(',');
                out.push_str(members);
            }
        }
    }
    Ok(())
}

/// The members of the `Details` JSON object, as written (`"k":v,...`, without braces).
/// Not validated here: the event they are put into is (`item_of`), and `{`, valid
/// members, `,`, the text between these braces and `}` is one valid object only if that
/// text is a valid member list itself (an unmatched `}` in it would end the object before
/// the last brace). When the event is not valid, [`details_fault`] names the column.
fn details_members(v: &str) -> Result<&str, String> {
    v.strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| "Details: not a json object".to_string())
}

/// Why the `Details` text `v` is not a JSON object, if it is not.
fn details_fault(v: &str) -> Option<String> {
    match serde_json::from_str::<&serde_json::value::RawValue>(v) {
        Err(e) => Some(format!("Details: not json: {e}")),
        Ok(raw) if !raw.get().starts_with('{') => Some("Details: not a json object".into()),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_of_every_spelling() {
        assert_eq!(type_tag("SearchIssued"), "audit_log::search_issued/1");
        assert_eq!(type_tag("search_issued"), "audit_log::search_issued/1");
        assert_eq!(
            type_tag("ZipFileDownloaded"),
            "audit_log::zip_file_downloaded/1"
        );
        assert_eq!(
            type_tag("ZIP file downloaded"),
            "audit_log::zip_file_downloaded/1"
        );
        assert_eq!(type_tag("SomethingNew"), "audit_log::something_new/1");
        // Two types whose names differ only by an underscore.
        assert_eq!(
            type_tag("UserNameChanged"),
            "audit_log::user_name_changed/1"
        );
        assert_eq!(type_tag("UsernameChanged"), "audit_log::username_changed/1");
        assert_eq!(type_tag("audit_log::x_y/2"), "audit_log::x_y/2");
    }

    #[test]
    fn the_fast_paths_give_what_the_slow_ones_give() {
        for v in [
            "2024-01-02T03:04:05.123Z",
            " 2024-01-02T03:04:05.123Z",
            "2024-01-02T03:04:05.123Z\u{a0}",
            "2024-01-02T03:04:05 UTC",
            "2024-01-02 03:04:05",
            "2024-01-02T03:04:05+01:00",
            "garbage-that-is-long-enough",
        ] {
            let slow = iso_time(v);
            if let Some(fast) = iso_time_as_is(v) {
                assert_eq!(fast, slow, "{v:?}");
            }
        }
        assert_eq!(iso_time_as_is("2024-01-02 03:04:05"), None);
        let mut tags = TypeTags::default();
        for v in [
            "SearchIssued",
            "Search issued",
            " SearchIssued",
            "SomethingNew",
        ] {
            assert_eq!(tags.tag(v), type_tag(v), "{v:?}");
            assert_eq!(tags.tag(v), type_tag(v), "{v:?}, cached");
        }
        for v in ["USER", "SUPPORT_USER", "API_CLIENT", "SYSTEM", "UNKNOWN"] {
            assert_eq!(actor_type(v), v);
        }
    }

    #[test]
    fn console_times_become_iso() {
        assert_eq!(
            iso_time("2024-01-02T03:04:05.123Z"),
            "2024-01-02T03:04:05.123Z"
        );
        assert_eq!(iso_time("2024-01-02 03:04:05"), "2024-01-02T03:04:05Z");
        assert_eq!(
            iso_time("2024-01-02 03:04:05.5 UTC"),
            "2024-01-02T03:04:05.5Z"
        );
        assert_eq!(
            iso_time("2024-01-02 03:04:05+01:00"),
            "2024-01-02T03:04:05+01:00"
        );
    }
}
