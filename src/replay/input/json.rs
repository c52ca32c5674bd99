//! JSON inputs: one record per line, and response bodies split into their records as
//! they are read.
//!
//! The body splitter is a byte state machine like the API client's page splitter
//! (`crate::api::stream`), with what a file needs and a response does not: the line
//! where each record starts, a broken record rejected while the reading goes on, and
//! several documents one after the other (pages saved into one file). It tracks object
//! keys only along the path to the kept array and copies only that array's elements.

use super::{next_line, Format, Item, Parser, Record, Rejected, Source};
use crate::api::{parse_event_time, sync_log_entry_time, AlertSummary};
use crate::event::{Event, SourceKind};
use crate::normalize::json::scan_object_until;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::io::BufRead;

/// When the record of JSON text `raw` occurred, read as the live source reads it: the
/// value of its time field (found by the normalizer's one-pass reader of the top-level
/// members, `raw` being valid JSON already) parsed by the API client's own time parser;
/// when the field is not there, the live source's reader itself gives the reason.
pub(super) fn occurred(kind: SourceKind, raw: &str) -> Result<DateTime<Utc>, String> {
    if !raw.starts_with('{') {
        return Err("not a json object".to_string());
    }
    let key = match kind {
        SourceKind::AuditLog => "timestamp",
        SourceKind::SyncLog => "logEventTimeStamp",
        SourceKind::Alerts => "createdAt",
        // A session's window time is its `beginTime`, epoch milliseconds.
        SourceKind::Sessions => return crate::api::SessionKeys::parse(raw).begin,
        // Nested (`event.inserted`): read by the live source's reader below.
        SourceKind::FileEvents => "",
    };
    let mut value = None;
    scan_object_until(raw, |m| {
        if !m.key_escaped && m.key == key {
            value = Some(m.value);
            return false;
        }
        true
    });
    if let Some(v) = value {
        return crate::api::parse_time_value(v);
    }
    match kind {
        SourceKind::AuditLog => parse_event_time(raw),
        SourceKind::SyncLog => sync_log_entry_time(raw),
        SourceKind::Alerts => AlertSummary::parse(raw).created_at,
        SourceKind::Sessions => crate::api::SessionKeys::parse(raw).begin,
        SourceKind::FileEvents => crate::api::file_event_inserted(raw),
    }
}

/// The event of a record: its text as the live source hands it on (alerts: observation
/// data expanded, as the alerts source does).
pub(super) fn event(kind: SourceKind, raw: Box<RawValue>, t: DateTime<Utc>) -> Event {
    if kind != SourceKind::Alerts {
        return Event::new(kind, raw, t);
    }
    let expanded = crate::api::expand_observation_data(raw.get());
    let raw = if expanded.expanded == 0 {
        raw
    } else {
        // Valid JSON by construction; the text as read if not.
        RawValue::from_string(expanded.text).unwrap_or(raw)
    };
    Event::new(kind, raw, t)
}

/// The item of one record's JSON text, starting at `line`.
pub(super) fn item_of(kind: SourceKind, text: String, line: u64) -> Item {
    match RawValue::from_string(text) {
        Ok(raw) => match occurred(kind, raw.get()) {
            Ok(t) => Item::Record(Record {
                event: event(kind, raw, t),
                line,
            }),
            Err(reason) => Item::Rejected(Rejected {
                line,
                reason,
                raw: raw.get().to_string(),
            }),
        },
        Err(e) => Item::Rejected(Rejected {
            line,
            reason: format!("not json: {e}"),
            raw: String::new(),
        }),
    }
}

/// One record per line; blank lines are skipped.
pub(super) struct Lines {
    src: Source,
    kind: SourceKind,
    line: u64,
    buf: Vec<u8>,
}

impl Lines {
    pub(super) fn new(src: Source, kind: SourceKind) -> Self {
        Lines {
            src,
            kind,
            line: 0,
            buf: Vec::with_capacity(4096),
        }
    }
}

impl Parser for Lines {
    fn next_item(&mut self) -> Option<Result<Item, (Option<u64>, String)>> {
        let bytes = match next_line(&mut self.src, &mut self.buf, &mut self.line)? {
            Ok(bytes) => bytes,
            Err(e) => return Some(Err(e)),
        };
        let line = self.line;
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t.to_string(),
            Err(e) => {
                return Some(Ok(Item::Rejected(Rejected {
                    line,
                    reason: format!("not valid utf-8: {e}"),
                    raw: String::from_utf8_lossy(bytes).into_owned(),
                })))
            }
        };
        Some(Ok(match item_of(self.kind, text, line) {
            Item::Rejected(mut r) if r.raw.is_empty() => {
                r.raw = String::from_utf8_lossy(bytes).into_owned();
                Item::Rejected(r)
            }
            item => item,
        }))
    }
}

/// The object keys leading from the top-level object to the array of records.
fn path_of(format: Format) -> &'static [&'static [u8]] {
    match format {
        Format::AlertsDetailsBody => &[b"alerts"],
        Format::SyncLogJson => &[b"data", b"Directory Sync Logs"],
        _ => &[b"events"],
    }
}

/// A response body (or several, one after the other), split into its records.
pub(super) struct Body {
    src: Source,
    state: BodyState,
    finished: bool,
}

impl Body {
    pub(super) fn new(src: Source, format: Format) -> Self {
        Body {
            src,
            state: BodyState {
                kind: format.kind(),
                path: path_of(format),
                line: 1,
                depth: 0,
                string: JsonString::default(),
                key_string: false,
                frames: Vec::new(),
                capture: None,
                pending: VecDeque::new(),
            },
            finished: false,
        }
    }
}

impl Parser for Body {
    fn next_item(&mut self) -> Option<Result<Item, (Option<u64>, String)>> {
        pump(&mut self.src, &mut self.state, &mut self.finished)
    }
}

/// A byte state machine that splits a JSON input into records while it is read: the
/// response bodies (`BodyState`) and top-level arrays (`super::array`).
pub(super) trait Splitter {
    /// What the input is, for the error of an input that ends early.
    const WHAT: &'static str;
    /// Takes one byte; an error ends the input with its reason.
    fn byte(&mut self, b: u8) -> Result<(), String>;
    /// The records split off and not yet handed out.
    fn pending(&mut self) -> &mut VecDeque<Item>;
    /// The line of the byte being read (1-based).
    fn line(&self) -> u64;
    /// Inside a record or a container that has not ended.
    fn open(&self) -> bool;
}

/// The one read loop of the splitters: hands out what is pending, else feeds bytes until
/// a record is split off, the input ends (early: a reject with its line) or a byte is
/// refused (a reject, and the end of this input).
pub(super) fn pump<S: Splitter>(
    src: &mut Source,
    st: &mut S,
    finished: &mut bool,
) -> Option<Result<Item, (Option<u64>, String)>> {
    loop {
        if let Some(item) = st.pending().pop_front() {
            return Some(Ok(item));
        }
        if *finished {
            return None;
        }
        let line = st.line();
        let buf = match src.fill_buf() {
            Ok(b) => b,
            Err(e) => {
                *finished = true;
                return Some(Err((
                    Some(line),
                    format!("cannot read past line {line}: {e}"),
                )));
            }
        };
        if buf.is_empty() {
            *finished = true;
            if st.open() {
                return Some(Err((
                    Some(line),
                    format!("the json {} ends early, at line {line}", S::WHAT),
                )));
            }
            return None;
        }
        let mut used = 0;
        let mut failed = None;
        for &b in buf {
            used += 1;
            if let Err(reason) = st.byte(b) {
                failed = Some(reason);
                break;
            }
            if !st.pending().is_empty() {
                break;
            }
        }
        src.consume(used);
        if let Some(reason) = failed {
            *finished = true;
            return Some(Err((Some(st.line()), reason)));
        }
    }
}

/// An object or array along the path to the kept array.
struct Frame {
    obj: bool,
    /// This container is on the path: the top-level object, or the value of the path's
    /// next key in an object on the path.
    on_path: bool,
    expect_key: bool,
    key: Vec<u8>,
}

/// One record being copied out of a JSON input (a body's kept array, a top-level
/// array), byte by byte, up to the `,` or `]` that ends it.
pub(super) struct Copying {
    text: Vec<u8>,
    /// The line of its first byte.
    line: u64,
    /// Nesting inside the record.
    depth: u32,
}

/// What a byte meant to the record being copied.
pub(super) enum Copied {
    /// It was part of the record.
    More,
    /// It was the `,` or `]` after the record, which has ended (the byte is not in it).
    End(u8),
}

impl Copying {
    /// Starts a record at its first byte `b`, read on `line`.
    pub(super) fn start(b: u8, line: u64, string: &mut JsonString) -> Self {
        let mut text = Vec::with_capacity(1024);
        text.push(b);
        let depth = match b {
            b'{' | b'[' => 1,
            b'"' => {
                string.open();
                0
            }
            _ => 0,
        };
        Copying { text, line, depth }
    }

    /// Takes the next byte `b`, read on `line`; an unbalanced `}` is an error.
    pub(super) fn take(
        &mut self,
        b: u8,
        line: u64,
        string: &mut JsonString,
    ) -> Result<Copied, String> {
        if string.is_open() {
            self.text.push(b);
            string.closes(b);
            return Ok(Copied::More);
        }
        match b {
            b'"' => string.open(),
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' if self.depth > 0 => self.depth -= 1,
            b',' | b']' if self.depth == 0 => return Ok(Copied::End(b)),
            b'}' => return Err(format!("unbalanced json at line {line}")),
            _ => {}
        }
        self.text.push(b);
        Ok(Copied::More)
    }

    /// The record copied out: its event, or a reject with its line and bytes.
    pub(super) fn into_item(self, kind: SourceKind) -> Item {
        item_of_bytes(kind, self.text, self.line)
    }
}

/// Where a byte scanner of JSON stands with respect to strings (the JSON body, array and
/// top-level readers share it): inside one or not, and after a backslash or not.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct JsonString {
    inside: bool,
    escaped: bool,
}

impl JsonString {
    /// An opening quote was read.
    pub(super) fn open(&mut self) {
        self.inside = true;
    }

    pub(super) fn is_open(&self) -> bool {
        self.inside
    }

    /// Takes one byte of the open string; `true` when it was the closing quote.
    pub(super) fn closes(&mut self, b: u8) -> bool {
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
        } else if b == b'"' {
            self.inside = false;
            return true;
        }
        false
    }
}

struct BodyState {
    kind: SourceKind,
    path: &'static [&'static [u8]],
    /// The line of the byte being read (1-based).
    line: u64,
    depth: usize,
    string: JsonString,
    /// The string being read is a key of the innermost tracked object.
    key_string: bool,
    /// The containers from the top level down, as long as they are on the path.
    frames: Vec<Frame>,
    capture: Option<Copying>,
    pending: VecDeque<Item>,
}

impl Splitter for BodyState {
    const WHAT: &'static str = "document";
    fn byte(&mut self, b: u8) -> Result<(), String> {
        self.take(b)
    }
    fn pending(&mut self) -> &mut VecDeque<Item> {
        &mut self.pending
    }
    fn line(&self) -> u64 {
        self.line
    }
    fn open(&self) -> bool {
        self.depth > 0
    }
}

impl BodyState {
    /// Whether the innermost container is the kept array.
    fn in_target(&self) -> bool {
        self.depth == self.frames.len()
            && self.frames.len() == self.path.len() + 1
            && self.frames.last().is_some_and(|f| f.on_path && !f.obj)
    }

    fn take(&mut self, b: u8) -> Result<(), String> {
        if b == b'\n' {
            self.line += 1;
        }
        if let Some(c) = &mut self.capture {
            if let Copied::End(end) = c.take(b, self.line, &mut self.string)? {
                let c = self.capture.take().expect("capturing");
                self.finish(c);
                if end == b',' {
                    return Ok(());
                }
                return self.structural(end);
            }
            return Ok(());
        }
        if self.string.is_open() {
            if self.string.closes(b) {
                if self.key_string {
                    self.key_string = false;
                    if let Some(f) = self.frames.last_mut() {
                        f.expect_key = false;
                    }
                }
                return Ok(());
            }
            if self.key_string {
                if let Some(f) = self.frames.last_mut() {
                    f.key.push(b);
                }
            }
            return Ok(());
        }
        self.structural(b)
    }

    /// A byte outside strings and records.
    fn structural(&mut self, b: u8) -> Result<(), String> {
        if b.is_ascii_whitespace() {
            return Ok(());
        }
        if self.depth == 0 {
            if b != b'{' {
                return Err(format!(
                    "not a json object at line {} (a response body is one)",
                    self.line
                ));
            }
            self.frames.clear();
            self.frames.push(Frame {
                obj: true,
                on_path: true,
                expect_key: true,
                key: Vec::new(),
            });
            self.depth = 1;
            return Ok(());
        }
        if self.in_target() && b != b']' {
            if b == b',' {
                return Ok(());
            }
            self.capture = Some(Copying::start(b, self.line, &mut self.string));
            return Ok(());
        }
        let tracked = self.depth == self.frames.len();
        match b {
            b'{' | b'[' => {
                if tracked && self.frames.len() <= self.path.len() {
                    let parent = self.frames.last().expect("tracked");
                    let on_path = parent.on_path
                        && parent.obj
                        && self.path.get(self.frames.len() - 1) == Some(&parent.key.as_slice());
                    if on_path {
                        self.frames.push(Frame {
                            obj: b == b'{',
                            on_path,
                            expect_key: b == b'{',
                            key: Vec::new(),
                        });
                    }
                }
                self.depth += 1;
            }
            b'}' | b']' => {
                if tracked {
                    self.frames.pop();
                }
                self.depth -= 1;
            }
            b'"' => {
                self.string.open();
                if let Some(f) = self.frames.last_mut() {
                    if tracked && f.obj && f.expect_key {
                        self.key_string = true;
                        f.key.clear();
                    }
                }
            }
            b',' => {
                if let Some(f) = self.frames.last_mut() {
                    if tracked && f.obj {
                        f.expect_key = true;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A record copied out: its event, or why not.
    fn finish(&mut self, c: Copying) {
        self.pending.push_back(c.into_item(self.kind));
    }
}

/// The item of one record's bytes copied out of a file (trailing white space dropped):
/// its event, or a reject carrying the bytes (shared by the body, lines and array
/// readers).
pub(super) fn item_of_bytes(kind: SourceKind, mut text: Vec<u8>, line: u64) -> Item {
    while text.last().is_some_and(u8::is_ascii_whitespace) {
        text.pop();
    }
    match String::from_utf8(text) {
        Ok(text) => {
            // A copy for the reject of a record that is not json (one memcpy; the
            // parse costs far more).
            let copy = text.clone();
            match item_of(kind, text, line) {
                Item::Rejected(mut r) if r.raw.is_empty() => {
                    r.raw = copy;
                    Item::Rejected(r)
                }
                item => item,
            }
        }
        Err(e) => Item::Rejected(Rejected {
            line,
            reason: format!("not valid utf-8: {}", e.utf8_error()),
            raw: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }),
    }
}

/// What detection needs to know of the first JSON object of a file: its top-level keys
/// and its `type$` value (as far as the first bytes go).
pub(super) struct TopLevel {
    keys: Vec<Vec<u8>>,
    type_tag: Option<Vec<u8>>,
}

impl TopLevel {
    pub(super) fn has(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key.as_bytes())
    }

    /// The data set of a record of this shape, when its keys tell.
    pub(super) fn record_kind(&self) -> Option<SourceKind> {
        if let Some(tag) = &self.type_tag {
            if tag.starts_with(b"audit_log::") {
                return Some(SourceKind::AuditLog);
            }
            if tag.starts_with(b"ALERT") {
                return Some(SourceKind::Alerts);
            }
        }
        if self.has("logEventTimeStamp") {
            Some(SourceKind::SyncLog)
        } else if self.has("createdAt") && (self.has("ruleId") || self.has("observations")) {
            Some(SourceKind::Alerts)
        } else if self.has("timestamp") && (self.has("actorId") || self.has("actorName")) {
            Some(SourceKind::AuditLog)
        } else {
            None
        }
    }
}

/// Reads the top-level keys of the JSON object `t` starts with (up to its end or the
/// end of `t`). Not a validating parser.
pub(super) fn top_level(t: &[u8]) -> TopLevel {
    let mut out = TopLevel {
        keys: Vec::new(),
        type_tag: None,
    };
    let (mut depth, mut quoted) = (0u32, JsonString::default());
    let mut expect_key = false;
    let mut string: Option<Vec<u8>> = None; // a key or the `type$` value being read
    let mut want_tag = false;
    let mut reading_tag = false;
    for &b in t {
        if quoted.is_open() {
            if quoted.closes(b) {
                if let Some(s) = string.take() {
                    if reading_tag {
                        out.type_tag = Some(s);
                        reading_tag = false;
                    } else {
                        want_tag = s == b"type$";
                        out.keys.push(s);
                        expect_key = false;
                    }
                }
                continue;
            }
            if let Some(s) = &mut string {
                s.push(b);
            }
            continue;
        }
        match b {
            b'"' => {
                quoted.open();
                if depth == 1 && expect_key {
                    string = Some(Vec::new());
                } else if depth == 1 && want_tag {
                    string = Some(Vec::new());
                    reading_tag = true;
                    want_tag = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth == 1 {
                    expect_key = true;
                }
                want_tag = false;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => {
                expect_key = true;
                want_tag = false;
            }
            _ => {}
        }
    }
    out
}
