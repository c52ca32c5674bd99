//! LEEF output for IBM QRadar: `LEEF:2.0|Code42|<product>|<version>|<EventID>|x09|<attributes>`
//! or, for LEEF 1.0, `LEEF:1.0|Code42|<product>|<version>|<EventID>|<attributes>`.
//!
//! Owned here: the LEEF header and attributes of a normalized record, for the four data
//! sets: the predefined LEEF attributes where one means what we have (`devTime` with its
//! `devTimeFormat`, `cat`, `sev`, `usrName`, `src`), the keys c42fwd adds
//! (`eventName`, `eventTimestamp`, the audit actor's keys, an alert's observation
//! summary), then every other field of the event under its own API name, and `details`
//! for the fields that cannot have a key of their own. Deliberately not here: the
//! syslog header and the framing (`mod.rs`), and any mapping of fields to CEF keys:
//! LEEF is open-ended, so a field keeps its API name and a QRadar custom property can
//! pick it by that name.
//!
//! Delimiter: TAB, in both versions (LEEF 1.0 has no other; LEEF 2.0 declares it as
//! `x09` in the header). Escaping, the same in both versions:
//! - header fields: `\` -> `\\`, `|` -> `\|`; TAB, CR and LF become a space;
//! - values: TAB -> `\t`, LF -> `\n`, CR -> `\r`, and a `\` is doubled exactly when what
//!   follows it could otherwise be read as one of these escapes (a `\`, `t`, `n`, `r`,
//!   an escaped character, or the end of the value). So no value can hold the delimiter
//!   or a line break, every value reads back exactly, and a Windows path such as
//!   `C:\Users\x` (which QRadar shows as it is, unescaping nothing) stays readable.
//! - keys: fixed ASCII names, or an API field name that is a safe identifier (ASCII
//!   letter or `_`, then letters, digits, `_`, `.`, `-`; at most 128 bytes) and is not
//!   one of the keys c42fwd writes itself. Any other field goes into `details`.
//!
//! No length limits: the LEEF specification defines none, so values are written whole;
//! the largest ones (an alert's `observations`, `details`) come last, so that a
//! receiver that cuts a long payload loses the least.
//!
//! **Invariant:** the output holds no CR or LF byte, and a TAB only between attributes.

use super::json::{put, write_compact, write_problems, write_str, Emit};
use crate::event::SourceKind;
use crate::normalize::json::unescape_with;
use crate::normalize::scan;
use crate::normalize::time::{write_rfc3339, Civil};
use crate::normalize::{Field, Record};
use smallvec::SmallVec;
use std::collections::HashSet;

/// The attribute delimiter of both LEEF versions.
pub const DELIMITER: u8 = b'\t';
/// How the LEEF 2.0 header declares [`DELIMITER`].
pub const DELIMITER_DECLARATION: &str = "x09";
/// Device Version, shared with CEF: the version of c42fwd's mapping.
pub const MAPPING_VERSION: &str = super::cef::MAPPING_VERSION;
/// The `devTimeFormat` (a Java `SimpleDateFormat` pattern, as QRadar reads it): the
/// form of IBM's own example, milliseconds and a numeric zone.
pub const DEV_TIME_FORMAT: &str = "yyyy-MM-dd'T'HH:mm:ss.SSSZ";
/// The key of the exact event time, as CEF's `cs5` label.
pub const TIMESTAMP_KEY: &str = "eventTimestamp";
/// The key of the compact-JSON object of fields that have no key of their own.
pub const DETAILS_KEY: &str = "details";
/// The longest API field name used as a key.
pub const MAX_KEY_LEN: usize = 128;
/// The EventID is cut like CEF's Device Event Class ID.
const EVENT_ID_LIMIT: usize = 1023;

/// Which LEEF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeefVersion {
    V1,
    V2,
}

/// One key c42fwd writes itself: the key and what it holds (for `docs/formats.md`).
pub type KeyDoc = (&'static str, &'static str);

/// Keys every record starts with, in order.
pub const COMMON_KEYS: &[KeyDoc] = &[
    (
        "devTimeFormat",
        "`yyyy-MM-dd'T'HH:mm:ss.SSSZ` (left out, with `devTime`, for a year outside 0-9999)",
    ),
    (
        "devTime",
        "the event time in that format, UTC, milliseconds truncated: `2024-06-30T12:34:56.000+0000`",
    ),
    (
        "cat",
        "the category (the same as CEF `cat`); QRadar maps EventID and `cat` to a QID",
    ),
    ("sev", "the severity 1-10 (the CEF severity; 0 becomes 1)"),
    ("eventName", "the record's name (the CEF Name)"),
];

/// The Audit Log keys after [`COMMON_KEYS`], in order.
pub const AUDIT_KEYS: &[KeyDoc] = &[
    ("usrName", "`actorName`"),
    (
        "src",
        "the first address of `actorIpAddress` (IPv4 or IPv6)",
    ),
    ("actorId", "`actorId`"),
    ("actorType", "`actorType`"),
    ("actorAgent", "`actorAgent`"),
    (
        "actorIpAddress",
        "`actorIpAddress` as sent, when it lists more than one address",
    ),
    ("success", "`success`: `true` or `false`"),
    (
        TIMESTAMP_KEY,
        "`timestamp` exactly: RFC 3339 UTC, nine fractional digits",
    ),
];

/// The Alerts keys after [`COMMON_KEYS`], in order.
pub const ALERT_KEYS: &[KeyDoc] = &[
    ("usrName", "`actor`"),
    (
        "src",
        "the first of the observations' `sendingIpAddresses` (IPv4 or IPv6)",
    ),
    ("actorId", "`actorId`"),
    (
        TIMESTAMP_KEY,
        "`createdAt` exactly: RFC 3339 UTC, nine fractional digits",
    ),
    ("observationCount", "number of `observations`"),
    (
        "fileCount",
        "sum of `data.fileCount` (or of the number of `data.files`)",
    ),
    (
        "totalFileSize",
        "sum of `data.totalFileSize` (or of `data.files[].size`)",
    ),
    (
        "exposureTypes",
        "`data.exposureTypes` of every observation, distinct, `, `-separated",
    ),
    (
        "fileNames",
        "the first 10 `data.files[].name`, `, `-separated",
    ),
    (
        "syncToServices",
        "`data.syncToServices` of every observation, distinct, `, `-separated",
    ),
];

/// The File Events keys after [`COMMON_KEYS`], in order; then every other field under
/// its dotted path (`file.name`, `destination.category`).
pub const FILE_EVENT_KEYS: &[KeyDoc] = &[
    ("usrName", "`user.email`"),
    ("src", "`source.ip` (IPv4 or IPv6)"),
    ("actorId", "`user.id`"),
    (
        TIMESTAMP_KEY,
        "`@timestamp` exactly: RFC 3339 UTC, nine fractional digits",
    ),
];

/// The Directory Sync Log keys after [`COMMON_KEYS`], in order.
pub const SYNC_LOG_KEYS: &[KeyDoc] = &[
    ("usrName", "`username` (the user the entry is about)"),
    (
        TIMESTAMP_KEY,
        "`logEventTimeStamp` exactly: RFC 3339 UTC, nine fractional digits",
    ),
];

/// The Sessions keys after [`COMMON_KEYS`], in order.
pub const SESSION_KEYS: &[KeyDoc] = &[
    ("actorId", "`actorId`"),
    (
        TIMESTAMP_KEY,
        "`lastUpdated` (the version) exactly: RFC 3339 UTC, nine fractional digits",
    ),
    (
        "state",
        "the current state: the newest `states[].state` by `sourceTimestamp`",
    ),
    ("score", "the newest `scores[].score`"),
    (
        "riskSeverity",
        "the newest `scores[].severity`: 0 no risk, 1 low, 2 moderate, 3 high, 4 critical",
    ),
    ("alertCount", "number of `triggeredAlerts`"),
    (
        "riskIndicatorNames",
        "the first 10 distinct `riskIndicators[].indicatorName`, `, `-separated",
    ),
    (
        "ruleIds",
        "the first 10 distinct `triggeredAlerts[].ruleId`, `, `-separated",
    ),
];

/// The keys of a data set after [`COMMON_KEYS`].
pub fn source_keys(source: SourceKind) -> &'static [KeyDoc] {
    match source {
        SourceKind::AuditLog => AUDIT_KEYS,
        SourceKind::Alerts => ALERT_KEYS,
        SourceKind::SyncLog => SYNC_LOG_KEYS,
        SourceKind::Sessions => SESSION_KEYS,
        SourceKind::FileEvents => FILE_EVENT_KEYS,
    }
}

/// One key table of `docs/formats.md`.
pub fn render_keys(keys: &[KeyDoc]) -> String {
    let mut out = String::from("| Key | Value |\n|---|---|\n");
    for (k, v) in keys {
        out.push_str(&format!("| `{k}` | {v} |\n"));
    }
    out
}

/// Whether `key` is one c42fwd writes itself for `source` (a field of that name cannot
/// use it and goes to `details`).
pub fn is_reserved(source: SourceKind, key: &str) -> bool {
    key == DETAILS_KEY
        || COMMON_KEYS.iter().any(|(k, _)| *k == key)
        || source_keys(source).iter().any(|(k, _)| *k == key)
}

/// Whether an API field name can be a LEEF key as it is.
pub fn is_safe_key(key: &str) -> bool {
    let b = key.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b.len() <= MAX_KEY_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `LEEF:x.0|Code42|<product>|<version>|`: constant per data set and version.
fn header_prefix(kind: SourceKind, version: LeefVersion) -> &'static str {
    // Spelled out (a test checks them against `product()` and the constants) so that
    // the hot path copies one constant.
    match (version, kind) {
        (LeefVersion::V2, SourceKind::AuditLog) => "LEEF:2.0|Code42|Audit Log|1|",
        (LeefVersion::V2, SourceKind::Alerts) => "LEEF:2.0|Code42|Alerts|1|",
        (LeefVersion::V2, SourceKind::SyncLog) => "LEEF:2.0|Code42|Directory Sync Log|1|",
        (LeefVersion::V1, SourceKind::AuditLog) => "LEEF:1.0|Code42|Audit Log|1|",
        (LeefVersion::V1, SourceKind::Alerts) => "LEEF:1.0|Code42|Alerts|1|",
        (LeefVersion::V1, SourceKind::SyncLog) => "LEEF:1.0|Code42|Directory Sync Log|1|",
        (LeefVersion::V2, SourceKind::Sessions) => "LEEF:2.0|Code42|Sessions|1|",
        (LeefVersion::V1, SourceKind::Sessions) => "LEEF:1.0|Code42|Sessions|1|",
        (LeefVersion::V2, SourceKind::FileEvents) => "LEEF:2.0|Code42|File Events|1|",
        (LeefVersion::V1, SourceKind::FileEvents) => "LEEF:1.0|Code42|File Events|1|",
    }
}

/// Appends a header field: cut at `limit` bytes on a character boundary, `\` and `|`
/// escaped, TAB / CR / LF replaced by a space.
fn header_field(out: &mut Vec<u8>, s: &str, limit: usize) {
    super::cef::escape_header_field(out, s, limit, scan::find_leef_header_special);
}

/// An attribute value being written, escaped as the module docs say. The value may
/// arrive in any number of pieces (each valid UTF-8, as every `Emit` writer hands
/// over); [`LeefValue::finish`] must end it.
pub(crate) struct LeefValue<'o> {
    out: &'o mut Vec<u8>,
    /// A `\` was seen and not written yet: whether it must be doubled depends on what
    /// follows it.
    pending_backslash: bool,
}

impl<'o> LeefValue<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>) -> Self {
        LeefValue {
            out,
            pending_backslash: false,
        }
    }

    pub(crate) fn finish(self) {
        if self.pending_backslash {
            // At the end of the value: doubled, so that it cannot join the delimiter
            // (or, in a reader that knows `\<TAB>`, escape it).
            put(self.out, b"\\\\");
        }
    }
}

impl Emit for LeefValue<'_> {
    fn emit(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        loop {
            if self.pending_backslash {
                let Some(&next) = rest.first() else {
                    return;
                };
                let ambiguous = matches!(next, b'\\' | b't' | b'n' | b'r' | b'\t' | b'\n' | b'\r');
                put(self.out, if ambiguous { b"\\\\" } else { b"\\" });
                self.pending_backslash = false;
            }
            let Some(i) = scan::find_leef_value_special(rest) else {
                put(self.out, rest);
                return;
            };
            put(self.out, &rest[..i]);
            match rest[i] {
                b'\\' => self.pending_backslash = true,
                b'\t' => put(self.out, b"\\t"),
                b'\n' => put(self.out, b"\\n"),
                _ => put(self.out, b"\\r"),
            }
            rest = &rest[i + 1..];
        }
    }
}

/// The attributes being written.
struct Attrs<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl Attrs<'_> {
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(DELIMITER);
        }
        self.first = false;
        put(self.out, key.as_bytes());
        self.out.push(b'=');
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        let mut v = LeefValue::new(self.out);
        v.emit(value.as_bytes());
        v.finish();
    }

    fn int(&mut self, key: &str, value: i64) {
        self.key(key);
        put(self.out, itoa::Buffer::new().format(value).as_bytes());
    }

    /// A field value: a JSON string as its text, anything else as compact JSON.
    fn field(&mut self, key: &str, field: &Field<'_>) {
        self.key(key);
        let mut v = LeefValue::new(self.out);
        match field.value_str_inner() {
            Some(inner) if field.value_escaped => {
                unescape_with(inner, |piece| v.emit(piece.as_bytes()))
            }
            Some(inner) => v.emit(inner.as_bytes()),
            None => write_compact(&mut v, field.value),
        }
        v.finish();
    }

    fn list(&mut self, key: &str, items: &[std::borrow::Cow<'_, str>]) {
        if items.is_empty() {
            return;
        }
        self.key(key);
        let mut v = LeefValue::new(self.out);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                v.emit(b", ");
            }
            v.emit(item.as_bytes());
        }
        v.finish();
    }
}

/// Fields up to this many are checked for repeated names pairwise (no allocation);
/// beyond, through a hash set, so that a hostile event with thousands of fields costs
/// linear time.
const PAIRWISE_MAX: usize = 16;

/// Decides, for each field, whether it gets its own key: a safe name, not reserved, and
/// not a repetition of an earlier field's name (the first one wins, as everywhere).
fn own_keys(rec: &Record<'_>) -> SmallVec<[bool; 16]> {
    let fields = &rec.fields;
    let allowed = |k: &str| is_safe_key(k) && !is_reserved(rec.source, k);
    if fields.len() <= PAIRWISE_MAX {
        return fields
            .iter()
            .enumerate()
            .map(|(i, f)| allowed(&f.key) && !fields[..i].iter().any(|g| g.key == f.key))
            .collect();
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(fields.len());
    fields
        .iter()
        .map(|f| seen.insert(f.key.as_ref()) && allowed(&f.key))
        .collect()
}

/// Writes the LEEF record (header and attributes) of `rec`.
pub(crate) fn write_leef(out: &mut Vec<u8>, rec: &Record<'_>, civil: &Civil, version: LeefVersion) {
    out.extend_from_slice(header_prefix(rec.source, version).as_bytes());
    header_field(out, &rec.class_id, EVENT_ID_LIMIT);
    out.push(b'|');
    if version == LeefVersion::V2 {
        out.extend_from_slice(DELIMITER_DECLARATION.as_bytes());
        out.push(b'|');
    }

    let mut a = Attrs { out, first: true };
    if civil.has_four_digit_year() {
        a.text("devTimeFormat", DEV_TIME_FORMAT);
        a.key("devTime");
        // `...SSSZ` with the zone as `SimpleDateFormat`'s `Z` reads it.
        write_rfc3339(a.out, civil, 3);
        a.out.pop();
        a.out.extend_from_slice(b"+0000");
    }
    a.text("cat", rec.category);
    a.int("sev", i64::from(rec.severity.clamp(1, 10)));
    a.text("eventName", &rec.name);

    let own = own_keys(rec);
    // A field written by a source-specific key instead of under its own name.
    let mut consumed: Option<usize> = None;
    match rec.source {
        SourceKind::AuditLog | SourceKind::Alerts | SourceKind::FileEvents => {
            if let Some(name) = &rec.actor.name {
                a.text("usrName", name);
            }
        }
        SourceKind::SyncLog => {
            if let Some((i, f)) = rec
                .fields
                .iter()
                .enumerate()
                .find(|(_, f)| f.key == "username")
            {
                if let Some(name) = f.value_str() {
                    a.text("usrName", &name);
                    consumed = Some(i);
                }
            }
        }
        // A session names its actor by id only.
        SourceKind::Sessions => {}
    }
    if let Some((ip, _)) = rec.source_ips.first() {
        a.text("src", ip);
    }
    if let Some(id) = &rec.actor.id {
        a.text("actorId", id);
    }
    if rec.source == SourceKind::AuditLog {
        if let Some(kind) = &rec.actor.kind {
            a.text("actorType", kind);
        }
        if let Some(agent) = &rec.actor.agent {
            a.text("actorAgent", agent);
        }
        if rec.source_ips.len() > 1 {
            a.text("actorIpAddress", rec.source_ips.text());
        }
        if let Some(ok) = rec.success {
            a.text("success", if ok { "true" } else { "false" });
        }
    }
    a.key(TIMESTAMP_KEY);
    write_rfc3339(a.out, civil, 9);
    if let Some(s) = rec.observations.as_deref() {
        a.int(
            "observationCount",
            i64::try_from(s.count).unwrap_or(i64::MAX),
        );
        a.int("fileCount", s.file_count);
        a.int("totalFileSize", s.total_file_size);
        a.list("exposureTypes", &s.exposure_types);
        a.list("fileNames", &s.file_names);
        a.list("syncToServices", &s.sync_to_services);
    }
    if let Some(s) = rec.session.as_deref() {
        if let Some(state) = &s.state {
            a.text("state", state);
        }
        if let Some(n) = s.score {
            a.int("score", n);
        }
        if let Some(n) = s.risk_severity {
            a.int("riskSeverity", n);
        }
        if let Some(n) = s.alert_count {
            a.int("alertCount", i64::try_from(n).unwrap_or(i64::MAX));
        }
        a.list("riskIndicatorNames", &s.indicators);
        a.list("ruleIds", &s.rule_ids);
    }

    // An alert's observations are by far its largest field: last of the fields.
    let last = (rec.source == SourceKind::Alerts)
        .then(|| {
            rec.fields
                .iter()
                .enumerate()
                .position(|(i, f)| f.key == "observations" && own[i])
        })
        .flatten();
    for (i, f) in rec.fields.iter().enumerate() {
        if own[i] && Some(i) != consumed && Some(i) != last {
            a.field(&f.key, f);
        }
    }
    if let Some(i) = last {
        a.field("observations", &rec.fields[i]);
    }
    write_details(&mut a, rec, &own, consumed);
}

/// `details={...}`: the fields without a key of their own (and what else `details`
/// carries in CEF: a non-canonical `type$`, the problems), when there are any.
fn write_details(a: &mut Attrs<'_>, rec: &Record<'_>, own: &[bool], consumed: Option<usize>) {
    let type_tag = rec
        .type_tag
        .as_deref()
        .filter(|_| !rec.type_tag_is_canonical());
    let mut leftovers = rec
        .fields
        .iter()
        .enumerate()
        .filter(|(i, _)| !own[*i] && Some(*i) != consumed)
        .map(|(_, f)| f)
        .peekable();
    if type_tag.is_none() && leftovers.peek().is_none() && rec.problems.is_empty() {
        return;
    }
    a.key(DETAILS_KEY);
    let mut v = LeefValue::new(a.out);
    let mut sep: &[u8] = b"{";
    if let Some(t) = type_tag {
        v.emit(sep);
        sep = b",";
        write_str(&mut v, "type$");
        v.emit(b":");
        write_str(&mut v, t);
    }
    for f in leftovers {
        v.emit(sep);
        sep = b",";
        write_str(&mut v, &f.key);
        v.emit(b":");
        write_compact(&mut v, f.value);
    }
    if !rec.problems.is_empty() {
        v.emit(sep);
        write_str(&mut v, super::cef::DETAILS_PROBLEMS_KEY);
        v.emit(b":");
        write_problems(&mut v, rec.problems);
    }
    v.emit(b"}");
    v.finish();
}

#[cfg(test)]
mod tests {
    use super::super::cef::product;
    // The reference decoder of the module docs' value escaping.
    use super::super::props::leef_unescape as unescape;
    use super::*;

    fn escaped(pieces: &[&str]) -> String {
        let mut out = Vec::new();
        let mut v = LeefValue::new(&mut out);
        for p in pieces {
            v.emit(p.as_bytes());
        }
        v.finish();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_escape_only_what_is_ambiguous() {
        for (value, want) in [
            ("plain = value | x", "plain = value | x"),
            (r"C:\Users\burt\Downloads", r"C:\Users\burt\Downloads"),
            (r"C:\temp\new\report", r"C:\\temp\\new\\report"),
            ("a\tb\nc\rd", r"a\tb\nc\rd"),
            (r"\", r"\\"),
            (r"\\", r"\\\\"),
            ("\\\t", r"\\\t"),
            (r"x\", r"x\\"),
            (r"\x", r"\x"),
        ] {
            assert_eq!(escaped(&[value]), want, "{value:?}");
            assert_eq!(unescape(want), value);
        }
    }

    #[test]
    fn escaping_does_not_depend_on_how_the_value_is_split() {
        let value = "a\\\\tb\\\t\\n\\\\\\x\\";
        let whole = escaped(&[value]);
        for i in 0..=value.len() {
            for j in i..=value.len() {
                assert_eq!(escaped(&[&value[..i], &value[i..j], &value[j..]]), whole);
            }
        }
        assert!(!whole.contains(['\t', '\n', '\r']));
        assert_eq!(unescape(&whole), value);
    }

    #[test]
    fn header_fields_escape_pipes_and_backslashes() {
        let mut v = Vec::new();
        header_field(&mut v, "a|b\\c\td\ne\rf=g", 100);
        assert_eq!(v, b"a\\|b\\\\c d e f=g");
    }

    #[test]
    fn header_prefix_spells_out_the_constants() {
        for kind in super::super::tests::KINDS {
            for (version, tag) in [(LeefVersion::V1, "1.0"), (LeefVersion::V2, "2.0")] {
                let want = format!(
                    "LEEF:{tag}|{}|{}|{MAPPING_VERSION}|",
                    super::super::cef::VENDOR,
                    product(kind)
                );
                assert_eq!(header_prefix(kind, version), want);
            }
        }
    }

    fn leef_of(kind: SourceKind, json: &str) -> Vec<(String, String)> {
        use super::super::tests::{encoder, event_of};
        use super::super::{Format, Framing, SyslogStyle};
        let mut out = Vec::new();
        encoder(Format::Leef2, SyslogStyle::None, Framing::None)
            .encode(&event_of(kind, json), &mut out);
        let text = String::from_utf8(out).unwrap();
        let attrs = text.splitn(7, '|').last().unwrap();
        attrs
            .split('\t')
            .map(|a| {
                let (k, v) = a.split_once('=').unwrap();
                (k.to_owned(), unescape(v))
            })
            .collect()
    }

    #[test]
    fn repeated_reserved_and_odd_names_go_to_details_on_both_paths() {
        // Few fields (pairwise check) and many fields (hash set): the same decisions.
        for padding in [0, 30] {
            let mut json = String::from(
                r#"{"action":"USER_ADDED","logEventTimeStamp":"2024-01-01T00:00:00Z","username":"u1","#,
            );
            for i in 0..padding {
                json.push_str(&format!(r#""pad{i}":{i},"#));
            }
            json.push_str(r#""k":1,"k":2,"sev":"high","a b":true,"username":"u2"}"#);
            let attrs = leef_of(SourceKind::SyncLog, &json);
            let get = |k: &str| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
            assert_eq!(get("usrName"), Some("u1"));
            assert_eq!(get("k"), Some("1"));
            assert_eq!(get("sev"), Some("3"));
            let details: serde_json::Value = serde_json::from_str(get("details").unwrap()).unwrap();
            assert_eq!(
                details,
                serde_json::json!({"k": 2, "sev": "high", "a b": true, "username": "u2"}),
                "{padding}"
            );
            assert_eq!(attrs.iter().filter(|(k, _)| k == "k").count(), 1);
        }
    }

    #[test]
    fn alert_observations_come_last_and_whole() {
        let obs = format!(
            r#"[{{"data":{{"files":[{{"name":"{}"}}]}}}}]"#,
            "n".repeat(5000)
        );
        let json = format!(
            r#"{{"type":"FED_COMPOSITE","observations":{obs},"state":"OPEN","createdAt":"2024-01-01T00:00:00Z"}}"#
        );
        let attrs = leef_of(SourceKind::Alerts, &json);
        let (k, v) = attrs.last().unwrap();
        assert_eq!(k, "observations");
        assert_eq!(v, &obs, "LEEF has no length limit");
        assert!(attrs.iter().any(|(k, v)| k == "state" && v == "OPEN"));
        assert!(attrs
            .iter()
            .any(|(k, v)| k == "fileNames" && v.len() == 5000));
    }

    #[test]
    fn key_names() {
        for ok in ["a", "fileName", "_x", "a.b-c_9", &"k".repeat(MAX_KEY_LEN)] {
            assert!(is_safe_key(ok), "{ok}");
        }
        for bad in [
            "",
            "type$",
            "9a",
            "a b",
            "a=b",
            "a\tb",
            "é",
            "-a",
            &"k".repeat(MAX_KEY_LEN + 1),
        ] {
            assert!(!is_safe_key(bad), "{bad}");
        }
        for (k, _) in COMMON_KEYS.iter().chain(AUDIT_KEYS) {
            assert!(is_safe_key(k));
            assert!(is_reserved(SourceKind::AuditLog, k));
        }
        assert!(is_reserved(SourceKind::Alerts, "fileCount"));
        assert!(!is_reserved(SourceKind::AuditLog, "fileCount"));
        assert!(is_reserved(SourceKind::SyncLog, DETAILS_KEY));
    }
}
