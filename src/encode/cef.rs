//! CEF output: `CEF:0|Code42|<product>|<version>|<class id>|<name>|<severity>|<extension>`.
//!
//! Owned here: the CEF header and extension of a normalized record, escaping exactly as
//! "Implementing ArcSight CEF" (rev 25) says, the dictionary's length limits, the common
//! keys (time, category, actor, source IP, user agent, outcome, actor type, exact
//! timestamp), the alert keys (driven by `cef_map::ALERT_KEYS`: rule, state, the
//! observations summarized and, bounded, whole), the session keys (`cef/sessions.rs`,
//! driven by `cef_map::SESSION_KEYS`) and the `details` field (`cs6`, label
//! `details`) that carries, as compact JSON, every field no key took. Deliberately not
//! here: which type-specific field goes to which key (`cef_map.rs`), the syslog header
//! and the framing (`mod.rs`).
//!
//! Escaping: header fields escape `\` and `|`; the spec has no escape for a line break
//! in the header, so CR and LF there become a space. Extension values escape `\` and
//! `=`, and CR / LF become the two characters `\r` / `\n`. Keys are fixed ASCII.
//! Lengths: a value longer than its key's limit is cut on a UTF-8 character boundary
//! before escaping; limits count bytes, so a value never has more characters than the
//! dictionary allows either.
//!
//! **Invariant:** the output holds no CR or LF byte, and the header has exactly seven
//! unescaped `|`.

mod sessions;

use super::cef_map::{self, label_limit, AlertKey, AlertValue, CefKey, KeyValue, ALERT_KEYS};
use super::file_events_map::FILE_EVENT_CEF_KEYS;
use super::json::{
    compact_len, put, write_bounded, write_compact, write_problems, write_str, write_str_limited,
    Count, Emit,
};
use crate::event::SourceKind;
use crate::normalize::json::{self, decode_str, read_i64};
use crate::normalize::scan;
use crate::normalize::time::{write_rfc3339, Civil};
use crate::normalize::{Field, Problems, Record};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::net::IpAddr;

/// Device Vendor.
pub const VENDOR: &str = "Code42";
/// Device Version: the version of c42fwd's mapping (this module and `cef_map.rs`), not
/// of the Code42 service, which does not expose one. Bumped when a field moves.
pub const MAPPING_VERSION: &str = "1";
/// `cs6Label`: the key of the compact-JSON field with everything no other key took.
pub const DETAILS_LABEL: &str = "details";
/// `cs5Label`: the exact event time, RFC 3339 with nine fractional digits.
pub const TIMESTAMP_LABEL: &str = "eventTimestamp";
/// `cs1Label`: the API's `actorType`.
pub const ACTOR_TYPE_LABEL: &str = "actorType";
/// `c6a1Label` when the actor's first address is IPv6.
pub const IPV6_LABEL: &str = "actorIpAddress";
/// `c6a1Label` when an alert's first sending address is IPv6.
pub const ALERT_IPV6_LABEL: &str = "sendingIpAddress";
/// Keys c42fwd adds inside `details`, with a leading `_` that no Audit Log field has.
pub const DETAILS_PROBLEMS_KEY: &str = "_problems";
pub const DETAILS_TRUNCATED_KEY: &str = "_truncated";

// Dictionary limits of the header and the common keys. (Vendor 63, product 63 and
// version 31 hold for the constants of `header_prefix`, which a test checks.)
const CLASS_ID_LIMIT: usize = 1023;
const NAME_LIMIT: usize = 512;
const TEXT_LIMIT: usize = 1023; // suser, suid, requestClientApplication, cat, labels
const CS_LIMIT: usize = 4000;
/// `act` (deviceAction).
const ACT_LIMIT: usize = 63;
/// Room kept free in `details` for `,"_truncated":N`.
const DETAILS_RESERVE: usize = 40;
/// A string that does not fit in `details` is cut only if at least this much of it fits;
/// below that, it is left out whole (and counted in `_truncated`).
const DETAILS_MIN_PARTIAL: usize = 24;

/// Device Product, per data set.
pub fn product(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::AuditLog => "Audit Log",
        SourceKind::Alerts => "Alerts",
        SourceKind::SyncLog => "Directory Sync Log",
        SourceKind::Sessions => "Sessions",
        SourceKind::FileEvents => "File Events",
    }
}

/// The longest prefix of `s` of at most `limit` bytes that ends on a char boundary.
pub(crate) fn truncate(s: &str, limit: usize) -> &str {
    if s.len() <= limit {
        return s;
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The longest prefix of `b` of at most `limit` bytes that does not split a UTF-8
/// sequence, given that `b` is valid UTF-8.
fn truncate_bytes(b: &[u8], limit: usize) -> &[u8] {
    if b.len() <= limit {
        return b;
    }
    let mut end = limit;
    while end > 0 && (b[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &b[..end]
}

/// Appends a header field: truncated, `\` and `|` escaped, CR/LF replaced by a space.
fn header_field(out: &mut Vec<u8>, s: &str, limit: usize) {
    escape_header_field(out, s, limit, scan::find_cef_header_special);
}

/// The header escaping CEF and LEEF share: cut at `limit` bytes on a character
/// boundary, `\` and `|` escaped, and every other byte that `find_special` reports
/// (the format's separators: CR and LF, and TAB for LEEF) replaced by a space.
pub(super) fn escape_header_field(
    out: &mut Vec<u8>,
    s: &str,
    limit: usize,
    find_special: impl Fn(&[u8]) -> Option<usize>,
) {
    let mut rest = truncate(s, limit).as_bytes();
    while let Some(i) = find_special(rest) {
        put(out, &rest[..i]);
        put(
            out,
            match rest[i] {
                b'\\' => b"\\\\",
                b'|' => b"\\|",
                _ => b" ",
            },
        );
        rest = &rest[i + 1..];
    }
    put(out, rest);
}

/// Appends extension-value bytes with `\`, `=`, CR and LF escaped.
fn escape_value(out: &mut Vec<u8>, b: &[u8]) {
    let mut rest = b;
    while let Some(i) = scan::find_cef_value_special(rest) {
        put(out, &rest[..i]);
        put(
            out,
            match rest[i] {
                b'\\' => b"\\\\",
                b'=' => b"\\=",
                b'\n' => b"\\n",
                _ => b"\\r",
            },
        );
        rest = &rest[i + 1..];
    }
    put(out, rest);
}

/// Writes the inside of a JSON string token that has escapes (`inner`) as a CEF
/// extension value: JSON-decoded and CEF-escaped in one pass, cut at `limit` bytes of
/// decoded text on a character boundary. (Decoding to a `String` first and escaping
/// that costs an allocation and a second pass; this runs for every such value.)
fn write_json_inner(out: &mut Vec<u8>, inner: &str, limit: usize) {
    let b = inner.as_bytes();
    let mut remaining = limit;
    let mut run = 0;
    loop {
        let rest = b.get(run..).unwrap_or_default();
        let next = scan::find_backslash_or_eq(rest).map(|i| run + i);
        let chunk = &rest[..next.map_or(rest.len(), |i| i - run)];
        if chunk.len() > remaining {
            put(out, truncate_bytes(chunk, remaining));
            return;
        }
        put(out, chunk);
        remaining -= chunk.len();
        let Some(i) = next else {
            return;
        };
        let (c, after) = if b[i] == b'=' {
            ('=', i + 1)
        } else {
            json::decode_escape(b, i)
        };
        if c.len_utf8() > remaining {
            return;
        }
        remaining -= c.len_utf8();
        match c {
            '\\' => put(out, b"\\\\"),
            '=' => put(out, b"\\="),
            '\n' => put(out, b"\\n"),
            '\r' => put(out, b"\\r"),
            c => put(out, c.encode_utf8(&mut [0u8; 4]).as_bytes()),
        }
        run = after;
    }
}

/// An extension value being written: escapes, and stops at the key's length limit.
/// Every chunk it is given must be valid UTF-8 on its own (the JSON writers guarantee
/// it), so that a cut never splits a character.
///
/// The limit counts the text before escaping. The chunks (a JSON writer hands over
/// many of a few bytes each) are appended as they are, and the value is escaped once,
/// in place, when it is dropped: one scan of the whole value for the bytes CEF escapes
/// instead of one per chunk, and nothing moved when it has none, which is nearly always.
struct CefValue<'o> {
    out: &'o mut Vec<u8>,
    /// Where the value starts in `out`.
    start: usize,
    remaining: usize,
    cut: bool,
}

impl<'o> CefValue<'o> {
    fn new(out: &'o mut Vec<u8>, limit: usize) -> Self {
        let start = out.len();
        CefValue {
            out,
            start,
            remaining: limit,
            cut: false,
        }
    }
}

impl Emit for CefValue<'_> {
    #[inline]
    fn emit(&mut self, bytes: &[u8]) {
        if self.cut {
            return;
        }
        let b = if bytes.len() > self.remaining {
            self.cut = true;
            truncate_bytes(bytes, self.remaining)
        } else {
            bytes
        };
        self.remaining -= b.len();
        put(self.out, b);
    }
}

impl Drop for CefValue<'_> {
    fn drop(&mut self) {
        let Some(i) = self
            .out
            .get(self.start..)
            .and_then(scan::find_cef_value_special)
        else {
            return;
        };
        let rest = self.out.split_off(self.start + i);
        escape_value(self.out, &rest);
    }
}

/// The extension being written. Keys are passed whole, with the space that separates
/// them from the previous value and the `=` (`" suid="`), so that each costs one copy.
struct Ext<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> Ext<'o> {
    #[inline]
    fn key(&mut self, key: &str) {
        self.out.extend_from_slice(key.as_bytes());
    }

    fn value(&mut self, limit: usize) -> CefValue<'_> {
        CefValue::new(self.out, limit)
    }

    #[inline]
    fn text(&mut self, key: &str, value: &str, limit: usize) {
        self.key(key);
        self.value(limit).emit(value.as_bytes());
    }

    fn int(&mut self, key: &str, v: i64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    /// A field value: a JSON string as its text, anything else as compact JSON.
    fn field_value(&mut self, key: &str, field: &Field<'_>, limit: usize) {
        self.key(key);
        match field.value_str_inner() {
            Some(inner) if field.value_escaped => write_json_inner(self.out, inner, limit),
            Some(inner) => self.value(limit).emit(inner.as_bytes()),
            None => write_compact(&mut self.value(limit), field.value),
        }
    }
}

/// Whether a field value can go to `key` (else it goes to `details`).
fn fits(key: CefKey, raw: &str) -> bool {
    if raw == "null" {
        return false;
    }
    match key.value_kind() {
        KeyValue::Integer => read_i64(raw).is_some(),
        KeyValue::Scalar => !matches!(raw.as_bytes().first(), Some(b'{' | b'[')),
        KeyValue::Any => true,
    }
}

/// Where each mapped key's value comes from: `(preference, field index)`.
type Slots = [Option<(u16, usize)>; CefKey::ALL.len()];

/// Fields past this index are never mapped to a key (they all go to `details`); it
/// bounds the bit set that remembers which fields were mapped.
const MAX_MAPPED_FIELD: usize = 128;

fn assign(rec: &Record<'_>) -> (Slots, u128) {
    let mut slots: Slots = [None; CefKey::ALL.len()];
    for (i, f) in rec.fields.iter().enumerate().take(MAX_MAPPED_FIELD) {
        let Some((key, pref)) = cef_map::lookup_for(rec.source, rec.catalog_index, &f.key) else {
            continue;
        };
        if !fits(key, f.value) {
            continue;
        }
        let slot = &mut slots[key.index()];
        match slot {
            Some((p, _)) if *p <= pref => {}
            _ => *slot = Some((pref, i)),
        }
    }
    let mut mapped = 0u128;
    for (_, i) in slots.iter().flatten() {
        mapped |= 1 << i;
    }
    (slots, mapped)
}

/// `CEF:0|Device Vendor|Device Product|Device Version|`: constant per data set.
fn header_prefix(kind: SourceKind) -> &'static str {
    // Spelled out (they must equal VENDOR, product() and MAPPING_VERSION, which a test
    // checks) so that the hot path copies one constant instead of escaping three.
    match kind {
        SourceKind::AuditLog => "CEF:0|Code42|Audit Log|1|",
        SourceKind::Alerts => "CEF:0|Code42|Alerts|1|",
        SourceKind::SyncLog => "CEF:0|Code42|Directory Sync Log|1|",
        SourceKind::Sessions => "CEF:0|Code42|Sessions|1|",
        SourceKind::FileEvents => "CEF:0|Code42|File Events|1|",
    }
}

/// Writes the CEF record (header and extension) of `rec`.
pub(crate) fn write_cef(out: &mut Vec<u8>, rec: &Record<'_>, civil: &Civil) {
    out.extend_from_slice(header_prefix(rec.source).as_bytes());
    header_field(out, &rec.class_id, CLASS_ID_LIMIT);
    out.push(b'|');
    header_field(out, &rec.name, NAME_LIMIT);
    out.push(b'|');
    out.extend_from_slice(itoa::Buffer::new().format(rec.severity.min(10)).as_bytes());
    out.push(b'|');

    let mut ext = Ext { out };
    ext.int("rt=", rec.time.timestamp_millis());
    ext.text(" cat=", rec.category, TEXT_LIMIT);
    if let Some(id) = &rec.actor.id {
        ext.text(" suid=", id, TEXT_LIMIT);
    }
    if let Some(name) = &rec.actor.name {
        ext.text(" suser=", name, TEXT_LIMIT);
    }
    match rec.source_ips.first() {
        Some((ip, IpAddr::V4(_))) => ext.text(" src=", ip, TEXT_LIMIT),
        Some((ip, IpAddr::V6(_))) => {
            let label = match rec.source {
                SourceKind::Alerts => ALERT_IPV6_LABEL,
                _ => IPV6_LABEL,
            };
            ext.text(" c6a1Label=", label, TEXT_LIMIT);
            ext.text(" c6a1=", ip, TEXT_LIMIT);
        }
        None => {}
    }
    if let Some(agent) = &rec.actor.agent {
        ext.text(" requestClientApplication=", agent, TEXT_LIMIT);
    }
    match rec.success {
        Some(true) => ext.key(" outcome=success"),
        Some(false) => ext.key(" outcome=failure"),
        None => {}
    }
    match rec.source {
        SourceKind::Alerts => {
            let mapped = write_keyed(&mut ext, rec, civil, ALERT_KEYS);
            write_details(&mut ext, rec, mapped);
            return;
        }
        SourceKind::FileEvents => {
            let mapped = write_keyed(&mut ext, rec, civil, FILE_EVENT_CEF_KEYS);
            write_details(&mut ext, rec, mapped);
            return;
        }
        // The action is the class id too, but `act` is where SIEM rules on
        // provisioning look for it.
        SourceKind::SyncLog if !rec.problems.contains(Problems::MISSING_TYPE) => {
            ext.text(" act=", &rec.class_id, ACT_LIMIT)
        }
        SourceKind::Sessions => {
            let mapped = sessions::write_session_keys(&mut ext, rec, civil);
            write_details(&mut ext, rec, mapped);
            return;
        }
        _ => {}
    }

    let (slots, mapped) = assign(rec);
    for key in CefKey::ALL {
        if key == CefKey::Cs2 {
            if let Some(kind) = &rec.actor.kind {
                ext.key(" cs1Label=");
                ext.key(ACTOR_TYPE_LABEL);
                ext.text(" cs1=", kind, CS_LIMIT);
            }
        }
        if key == CefKey::FlexString1 {
            ext.key(" cs5Label=");
            ext.key(TIMESTAMP_LABEL);
            ext.key(" cs5=");
            write_rfc3339(ext.out, civil, 9);
        }
        let Some((_, i)) = slots[key.index()] else {
            continue;
        };
        let Some(field) = rec.fields.get(i) else {
            continue;
        };
        if let Some(label) = key.ext_label() {
            ext.text(label, &field.key, label_limit(key));
        }
        match key.value_kind() {
            KeyValue::Integer => {
                if let Some(v) = read_i64(field.value) {
                    ext.int(key.ext_key(), v);
                }
            }
            _ => ext.field_value(key.ext_key(), field, key.limit()),
        }
    }
    write_details(&mut ext, rec, mapped);
}

/// Whether an alert field can go to its key whole (else it stays in `details`).
fn alert_field_fits(k: &AlertKey, raw: &str) -> bool {
    if raw == "null" {
        return false;
    }
    let container = matches!(raw.as_bytes().first(), Some(b'{' | b'['));
    match (k.value, k.kind) {
        // Anything but null can be written bounded: a container or a string is cut
        // from the inside, a scalar (short, nearly always) whole.
        (AlertValue::BoundedJson(_), _) => {
            container || raw.starts_with('"') || raw.len() <= k.limit
        }
        (_, KeyValue::Integer) => read_i64(raw).is_some(),
        (_, KeyValue::Scalar) if container => false,
        (_, KeyValue::Any) if container => compact_len(raw) <= k.limit,
        _ => match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            // Measure the decoded text only when the raw one is too long: escapes only
            // ever make the raw text longer.
            Some(inner) if inner.len() > k.limit => {
                json::decode_str(raw).is_some_and(|t| t.len() <= k.limit)
            }
            Some(_) => true,
            None => raw.len() <= k.limit,
        },
    }
}

/// The field `name` of `rec`, with its index, among the fields a key may take (the
/// first [`MAX_MAPPED_FIELD`]: the index is a bit of the `mapped` set).
fn mapped_field<'a, 'r>(rec: &'a Record<'r>, name: &str) -> Option<(usize, &'a Field<'r>)> {
    rec.fields
        .iter()
        .enumerate()
        .take(MAX_MAPPED_FIELD)
        .find(|(_, f)| f.key == name)
}

/// Writes ` labelKey=label key=` (the label only for a custom key with one).
fn key_and_label(ext: &mut Ext<'_>, key: &str, label: Option<(&str, &str)>) {
    if let Some((label_key, label)) = label {
        ext.key(" ");
        ext.key(label_key);
        ext.key("=");
        ext.key(label);
    }
    ext.key(" ");
    ext.key(key);
    ext.key("=");
}

/// Writes the alert keys of [`ALERT_KEYS`] that have a value; returns the set of fields
/// they took (bit `i` for `rec.fields[i]`), which `details` leaves out.
fn write_keyed(ext: &mut Ext<'_>, rec: &Record<'_>, civil: &Civil, keys: &[AlertKey]) -> u128 {
    let mut mapped = 0u128;
    let summary = rec.observations.as_deref();
    let field = |name: &str| mapped_field(rec, name);
    for k in keys {
        let key_and_label = |ext: &mut Ext<'_>| key_and_label(ext, k.key, k.label);
        let list = |items: &[Cow<'_, str>]| (!items.is_empty()).then(|| items.join(", "));
        let derived: Option<String> = match k.value {
            AlertValue::Field(name) | AlertValue::BoundedJson(name) => {
                let Some((i, f)) = field(name) else {
                    continue;
                };
                if !alert_field_fits(k, f.value) {
                    continue;
                }
                mapped |= 1 << i;
                key_and_label(ext);
                match k.value {
                    AlertValue::BoundedJson(_) => {
                        let mut v = ext.value(k.limit);
                        if write_bounded(&mut v, f.value, k.limit).is_none() {
                            // `alert_field_fits` leaves only values that can be cut;
                            // should one not be, the value is written whole and cut at
                            // the limit rather than lost.
                            write_compact(&mut v, f.value);
                        }
                    }
                    _ => match read_i64(f.value).filter(|_| k.kind == KeyValue::Integer) {
                        Some(n) => ext
                            .out
                            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
                        None => ext.field_value("", f, k.limit),
                    },
                }
                continue;
            }
            AlertValue::ExactTime => {
                key_and_label(ext);
                write_rfc3339(ext.out, civil, 9);
                continue;
            }
            AlertValue::FileNames => summary.and_then(|s| list(&s.file_names)),
            AlertValue::FirstFilePath => {
                summary.and_then(|s| s.first_file_path.as_deref().map(str::to_owned))
            }
            AlertValue::SyncToServices => summary.and_then(|s| list(&s.sync_to_services)),
            AlertValue::FirstUrl(name) => field(name).and_then(|(_, f)| first_url(f.value)),
            AlertValue::List(name) => {
                let Some((i, f)) = field(name) else {
                    continue;
                };
                match strings_of(f.value) {
                    Some(items) if !items.is_empty() => {
                        mapped |= 1 << i;
                        Some(items.join(", "))
                    }
                    _ => None,
                }
            }
            AlertValue::ExposureTypes => summary.and_then(|s| list(&s.exposure_types)),
            AlertValue::FileCount | AlertValue::TotalFileSize | AlertValue::ObservationCount => {
                let Some(s) = summary else {
                    continue;
                };
                let n = match k.value {
                    AlertValue::FileCount => s.file_count,
                    AlertValue::TotalFileSize => s.total_file_size,
                    _ => i64::try_from(s.count).unwrap_or(i64::MAX),
                };
                key_and_label(ext);
                ext.out
                    .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                continue;
            }
        };
        if let Some(text) = derived {
            key_and_label(ext);
            ext.value(k.limit).emit(text.as_bytes());
        }
    }
    mapped
}

/// The `url` string of the first object of a JSON array, if it has one.
fn first_url(raw: &str) -> Option<String> {
    let mut first = None;
    json::scan_array(raw, |elem| {
        first = Some(elem);
        false
    });
    let mut url = None;
    json::scan_object(first?, |m| {
        if url.is_none() && m.key == "url" {
            url = m.value_str().map(Cow::into_owned);
        }
    });
    url.filter(|u| !u.is_empty())
}

/// The elements of a JSON array of strings (`None` if it is anything else).
fn strings_of(raw: &str) -> Option<Vec<Cow<'_, str>>> {
    let mut out = Vec::new();
    let mut ok = true;
    let is_array = json::scan_array(raw, |elem| {
        match decode_str(elem) {
            Some(s) => out.push(s),
            None => ok = false,
        }
        ok
    });
    (is_array && ok).then_some(out)
}

/// One entry of `details`.
enum DetailValue<'v> {
    /// A raw JSON value from the event.
    Raw(&'v str),
    /// A text c42fwd read from the event (written as a JSON string).
    Text(&'v str),
    /// The names of the record's problems.
    Problems,
}

/// What `details` does with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    Undecided,
    Whole,
    /// A string cut so that its `"key":"..."` takes at most this many bytes.
    Cut(usize),
    Omitted,
}

struct DetailEntry<'v> {
    key: &'v str,
    value: DetailValue<'v>,
    /// Length of `"key":value` without the separating comma.
    len: usize,
    placement: Placement,
}

/// Entries at most this long are placed before longer ones, so that one huge value
/// cannot push out many small ones.
const DETAILS_SMALL: usize = 1024;

/// Writes `cs6Label=details cs6={...}` when anything is left for it.
///
/// The value is always valid JSON of at most `cs6`'s 4000 bytes: entries are placed
/// whole in event order (short ones first, then long ones that still fit); a string
/// that does not fit is cut to the room left if enough is left, anything else is left
/// out; `"_truncated":N` counts the entries cut or left out.
fn write_details(ext: &mut Ext<'_>, rec: &Record<'_>, mapped: u128) {
    let type_tag = rec
        .type_tag
        .as_deref()
        .filter(|_| !rec.type_tag_is_canonical());
    // An alert's addresses come from its observations, which it carries whole.
    let ip_list = (rec.source == SourceKind::AuditLog && rec.source_ips.len() > 1)
        .then(|| rec.source_ips.text());
    // The entries, as an iterator that is cheap to make again (it only borrows).
    let entries = || {
        let leftovers = rec
            .fields
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i >= MAX_MAPPED_FIELD || mapped & (1 << i) == 0)
            .map(|(_, f)| (f.key.as_ref(), DetailValue::Raw(f.value)));
        type_tag
            .map(|t| ("type$", DetailValue::Text(t)))
            .into_iter()
            .chain(ip_list.map(|t| ("actorIpAddress", DetailValue::Text(t))))
            .chain(leftovers)
            .chain(
                (!rec.problems.is_empty()).then_some((DETAILS_PROBLEMS_KEY, DetailValue::Problems)),
            )
    };
    let entry_len = |key: &str, value: &DetailValue<'_>| {
        let mut c = Count(0);
        write_str(&mut c, key);
        c.0 += 1;
        match value {
            DetailValue::Raw(raw) => c.0 += compact_len(raw),
            DetailValue::Text(t) => write_str(&mut c, t),
            DetailValue::Problems => write_problems(&mut c, rec.problems),
        }
        c.0
    };

    if entries().next().is_none() {
        return;
    }
    // Nearly always everything fits: then it is written in one pass, nothing to
    // decide, nothing counted first. Only when the value reaches the limit is that
    // written taken back and the entries placed one by one below.
    let mark = ext.out.len();
    let head = |ext: &mut Ext<'_>| {
        ext.key(" cs6Label=");
        ext.key(DETAILS_LABEL);
        ext.key(" cs6=");
    };
    head(ext);
    {
        let mut v = ext.value(CS_LIMIT);
        for (i, (key, value)) in entries().enumerate() {
            v.emit(if i == 0 { b"{" } else { b"," });
            write_str(&mut v, key);
            v.emit(b":");
            match value {
                DetailValue::Raw(raw) => write_compact(&mut v, raw),
                DetailValue::Text(t) => write_str(&mut v, t),
                DetailValue::Problems => write_problems(&mut v, rec.problems),
            }
        }
        v.emit(b"}");
        if !v.cut {
            return;
        }
    }
    ext.out.truncate(mark);
    head(ext);

    let mut entries: SmallVec<[DetailEntry<'_>; 8]> = entries()
        .map(|(key, value)| DetailEntry {
            key,
            len: entry_len(key, &value),
            value,
            placement: Placement::Undecided,
        })
        .collect();

    // Decide. `used` counts the braces and every placed entry with its comma.
    let budget = CS_LIMIT - DETAILS_RESERVE;
    let mut used = 2;
    for small_pass in [true, false] {
        for e in entries.iter_mut() {
            if e.placement != Placement::Undecided || (small_pass && e.len > DETAILS_SMALL) {
                continue;
            }
            let sep = usize::from(used > 2);
            if used + sep + e.len <= budget {
                e.placement = Placement::Whole;
                used += sep + e.len;
            } else if !small_pass {
                let head = {
                    let mut c = Count(0);
                    write_str(&mut c, e.key);
                    c.0 + 1
                };
                let is_string = match e.value {
                    DetailValue::Raw(raw) => raw.starts_with('"'),
                    DetailValue::Text(_) => true,
                    DetailValue::Problems => false,
                };
                let room = budget.saturating_sub(used + sep + head);
                e.placement = if is_string && room >= DETAILS_MIN_PARTIAL {
                    // The string token gets `room`; the entry at most `head + room`.
                    used += sep + head + room;
                    Placement::Cut(room)
                } else {
                    Placement::Omitted
                };
            }
        }
    }

    // The budget above keeps the value under the limit; the sink's own limit is only
    // a second guard.
    let mut v = ext.value(CS_LIMIT);
    v.emit(b"{");
    let mut first = true;
    let mut left_out = 0usize;
    // Whole entries in event order, then the cut ones.
    for cut_pass in [false, true] {
        for e in &entries {
            let room = match (e.placement, cut_pass) {
                (Placement::Whole, false) => None,
                (Placement::Cut(room), true) => Some(room),
                (Placement::Omitted, true) => {
                    left_out += 1;
                    continue;
                }
                _ => continue,
            };
            if !first {
                v.emit(b",");
            }
            first = false;
            write_str(&mut v, e.key);
            v.emit(b":");
            match (room, &e.value) {
                (None, DetailValue::Raw(raw)) => write_compact(&mut v, raw),
                (None, DetailValue::Text(t)) => write_str(&mut v, t),
                (None, DetailValue::Problems) => write_problems(&mut v, rec.problems),
                (Some(room), value) => {
                    left_out += 1;
                    let text = match value {
                        DetailValue::Raw(raw) => decode_str(raw),
                        DetailValue::Text(t) => Some(Cow::Borrowed(*t)),
                        DetailValue::Problems => None,
                    };
                    write_str_limited(&mut v, text.as_deref().unwrap_or(""), room);
                }
            }
        }
    }
    if left_out > 0 {
        if !first {
            v.emit(b",");
        }
        write_str(&mut v, DETAILS_TRUNCATED_KEY);
        v.emit(b":");
        v.emit(itoa::Buffer::new().format(left_out).as_bytes());
    }
    v.emit(b"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_prefix_spells_out_the_constants() {
        for kind in super::super::tests::KINDS {
            let mut v = b"CEF:0|".to_vec();
            for (s, limit) in [(VENDOR, 63), (product(kind), 63), (MAPPING_VERSION, 31)] {
                assert!(s.len() <= limit);
                header_field(&mut v, s, limit);
                v.push(b'|');
            }
            assert_eq!(header_prefix(kind).as_bytes(), v);
        }
    }

    #[test]
    fn header_escaping() {
        let mut v = Vec::new();
        header_field(&mut v, "a|b\\c\nd\re=f", 100);
        assert_eq!(v, b"a\\|b\\\\c d e=f");
    }

    #[test]
    fn value_escaping() {
        let mut v = Vec::new();
        escape_value(&mut v, b"a=b\\c\nd\re|f g");
        assert_eq!(v, b"a\\=b\\\\c\\nd\\re|f g");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("😀", 3), "");
        assert_eq!(truncate_bytes("a😀".as_bytes(), 4), b"a");
        let mut out = b"k=".to_vec();
        {
            let mut v = CefValue::new(&mut out, 4);
            v.emit("a=".as_bytes());
            v.emit("é".as_bytes());
            v.emit("x".as_bytes());
        }
        // The limit counts the text before escaping; what was before the value is
        // left as it was.
        assert_eq!(out, "k=a\\=é".as_bytes());
        let mut out = Vec::new();
        {
            let mut v = CefValue::new(&mut out, 100);
            for chunk in ["{", "\"a\\\\b\"", ":", "\"x=1\ny\r\"", "}"] {
                v.emit(chunk.as_bytes());
            }
        }
        assert_eq!(out, br#"{"a\\\\b":"x\=1\ny\r"}"#);
    }

    #[test]
    fn escaped_json_strings_are_decoded_escaped_and_cut() {
        let inner = r#"a=\"b\\c\nd\re\u00e9\ud83d\ude00\ud800f\/"#;
        let text: String =
            serde_json::from_str(&format!("\"{}\"", inner.replace("\\ud800", "\\ufffd"))).unwrap();
        for limit in 0..40 {
            let mut got = Vec::new();
            write_json_inner(&mut got, inner, limit);
            let mut want = Vec::new();
            escape_value(&mut want, truncate(&text, limit).as_bytes());
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap(),
                "{limit}"
            );
        }
    }

    #[test]
    fn limited_json_strings_fit() {
        for max in 2..40 {
            let mut v = Vec::new();
            let n = write_str_limited(&mut v, "ab\"c\u{1}dé😀ef\\\n", max);
            assert_eq!(n, v.len());
            assert!(n <= max);
            let s: String = serde_json::from_str(std::str::from_utf8(&v).unwrap()).unwrap();
            assert!("ab\"c\u{1}dé😀ef\\\n".starts_with(&s));
        }
    }

    fn alert_cef(json: &str) -> std::collections::BTreeMap<String, String> {
        use super::super::tests::{encoder, event_of};
        use super::super::{Format, Framing, SyslogStyle};
        let mut out = Vec::new();
        encoder(Format::Cef, SyslogStyle::None, Framing::None)
            .encode(&event_of(SourceKind::Alerts, json), &mut out);
        let text = String::from_utf8(out).unwrap();
        let ext = text.splitn(8, '|').last().unwrap();
        // Values here hold no escapes and no ` k=`: a plain split is enough.
        let mut map = std::collections::BTreeMap::new();
        let mut key = String::new();
        for part in ext.split(' ') {
            match part.split_once('=') {
                Some((k, v)) if k.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    key = k.to_owned();
                    map.insert(key.clone(), v.to_owned());
                }
                _ => {
                    let v = map.get_mut(&key).unwrap();
                    v.push(' ');
                    v.push_str(part);
                }
            }
        }
        map
    }

    #[test]
    fn alert_fields_that_do_not_fit_their_key_stay_in_details() {
        let long_id = "i".repeat(41);
        let m = alert_cef(&format!(
            r#"{{"type":"FED_COMPOSITE","id":"{long_id}","target":null,"state":{{"s":1}},"ruleId":"r1","severity":"HIGH"}}"#
        ));
        assert_eq!(m.get("externalId"), None);
        assert_eq!(m.get("duser"), None);
        assert_eq!(m.get("act"), None);
        assert_eq!(m["cs1"], "r1");
        assert_eq!(m["flexString1"], "HIGH");
        let details: serde_json::Value = serde_json::from_str(&m["cs6"]).unwrap();
        assert_eq!(details["id"], long_id.as_str());
        assert_eq!(details["target"], serde_json::Value::Null);
        assert_eq!(details["state"]["s"], 1);
        assert!(details.get("ruleId").is_none());
    }

    #[test]
    fn details_of_exactly_the_limit_are_whole_and_one_byte_more_are_placed() {
        let with = |n: usize| {
            alert_cef(&format!(
                r#"{{"type":"FED_COMPOSITE","createdAt":"2024-01-01T00:00:00Z","zz":"{}"}}"#,
                "x".repeat(n)
            ))["cs6"]
                .clone()
        };
        // The value's length grows with the string: find the one that is the limit.
        let n = CS_LIMIT - (with(10).len() - 10);
        let whole = with(n);
        assert_eq!(whole.len(), CS_LIMIT);
        let v: serde_json::Value = serde_json::from_str(&whole).unwrap();
        assert_eq!(v["zz"].as_str().unwrap().len(), n);
        assert!(v.get(DETAILS_TRUNCATED_KEY).is_none());

        let cut = with(n + 1);
        assert!(cut.len() <= CS_LIMIT, "{}", cut.len());
        let v: serde_json::Value = serde_json::from_str(&cut).unwrap();
        assert_eq!(v[DETAILS_TRUNCATED_KEY], 1);
        assert!(v["zz"].as_str().unwrap().len() < n);
    }

    #[test]
    fn alert_summary_keys() {
        let m = alert_cef(
            r#"{"type":"FED_ENDPOINT_EXFILTRATION","createdAt":"2024-01-01T00:00:00Z","observations":[{"data":{"fileCount":2,"totalFileSize":10,"exposureTypes":["A","B"],"files":[{"name":"f1","path":"/p/"},{"name":"f2"}],"syncToServices":["Box"],"sendingIpAddresses":["2001:db8::1"]}},{"data":"not json"}]}"#,
        );
        assert_eq!(m["cn1"], "2");
        assert_eq!(m["cn2"], "10");
        assert_eq!(m["cn3"], "2");
        assert_eq!(m["cs2"], "A, B");
        assert_eq!(m["fname"], "f1, f2");
        assert_eq!(m["filePath"], "/p/");
        assert_eq!(m["destinationServiceName"], "Box");
        assert_eq!(m["c6a1Label"], ALERT_IPV6_LABEL);
        assert_eq!(m["c6a1"], "2001:db8::1");
        // The observations are in cs4, whole, and nowhere else.
        let obs: serde_json::Value = serde_json::from_str(&m["cs4"]).unwrap();
        assert_eq!(obs[1]["data"], "not json");
        assert!(!m.contains_key("cs6"));
    }
}
