//! CEF output: `CEF:0|Code42|<product>|<version>|<class id>|<name>|<severity>|<extension>`.
//!
//! Owned here: the CEF header and extension of a normalized record, escaping exactly as
//! "Implementing ArcSight CEF" (rev 25) says, the dictionary's length limits, the common
//! keys (time, category, actor, source IP, user agent, outcome, actor type, exact
//! timestamp) and the `details` field (`cs6`, label `details`) that carries, as compact
//! JSON, every field no key took. Deliberately not here: which type-specific field goes
//! to which key (`cef_map.rs`), the syslog header and the framing (`mod.rs`).
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

use super::cef_map::{self, label_limit, CefKey, KeyValue};
use super::json::{compact_len, put, write_compact, write_str, Count, Emit};
use crate::event::SourceKind;
use crate::normalize::json::{self, decode_str, read_i64};
use crate::normalize::scan;
use crate::normalize::time::{write_rfc3339, Civil};
use crate::normalize::{Field, Record};
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
/// Keys c42fwd adds inside `details` (API keys never start with `_`).
pub const DETAILS_PROBLEMS_KEY: &str = "_problems";
pub const DETAILS_TRUNCATED_KEY: &str = "_truncated";

// Dictionary limits of the header and the common keys. (Vendor 63, product 63 and
// version 31 hold for the constants of `header_prefix`, which a test checks.)
const CLASS_ID_LIMIT: usize = 1023;
const NAME_LIMIT: usize = 512;
const TEXT_LIMIT: usize = 1023; // suser, suid, requestClientApplication, cat, labels
const CS_LIMIT: usize = 4000;
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
    let mut rest = truncate(s, limit).as_bytes();
    while let Some(i) = scan::find_cef_header_special(rest) {
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
struct CefValue<'o> {
    out: &'o mut Vec<u8>,
    remaining: usize,
    cut: bool,
}

impl Emit for CefValue<'_> {
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
        escape_value(self.out, b);
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
        CefValue {
            out: self.out,
            remaining: limit,
            cut: false,
        }
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
const MAX_MAPPED_FIELD: usize = 64;

fn assign(rec: &Record<'_>) -> (Slots, u64) {
    let mut slots: Slots = [None; CefKey::ALL.len()];
    for (i, f) in rec.fields.iter().enumerate().take(MAX_MAPPED_FIELD) {
        let Some((key, pref)) = cef_map::lookup(rec.catalog_index, &f.key) else {
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
    let mut mapped = 0u64;
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
            ext.text(" c6a1Label=", IPV6_LABEL, TEXT_LIMIT);
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

    let (slots, mapped) = assign(rec);
    for key in CefKey::ALL {
        if key == CefKey::Cs2 {
            if let Some(kind) = &rec.actor.kind {
                ext.text(" cs1Label=actorType cs1=", kind, CS_LIMIT);
            }
        }
        if key == CefKey::FlexString1 {
            ext.key(" cs5Label=eventTimestamp cs5=");
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
fn write_details(ext: &mut Ext<'_>, rec: &Record<'_>, mapped: u64) {
    let type_tag = rec
        .type_tag
        .as_deref()
        .filter(|_| !rec.type_tag_is_canonical());
    let ip_list = (rec.source_ips.len() > 1).then(|| rec.source_ips.text());
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
            DetailValue::Problems => write_problems(&mut c, rec),
        }
        c.0
    };

    // Nearly always everything fits: then write it in one pass, nothing to decide.
    let mut count = 0;
    let mut total = 1; // the closing brace; each entry adds itself and a `{` or `,`
    for (key, value) in entries() {
        count += 1;
        total += 1 + entry_len(key, &value);
    }
    if count == 0 {
        return;
    }
    ext.key(" cs6Label=details cs6=");
    if total <= CS_LIMIT {
        let mut v = ext.value(CS_LIMIT);
        for (i, (key, value)) in entries().enumerate() {
            v.emit(if i == 0 { b"{" } else { b"," });
            write_str(&mut v, key);
            v.emit(b":");
            match value {
                DetailValue::Raw(raw) => write_compact(&mut v, raw),
                DetailValue::Text(t) => write_str(&mut v, t),
                DetailValue::Problems => write_problems(&mut v, rec),
            }
        }
        v.emit(b"}");
        return;
    }

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
                (None, DetailValue::Problems) => write_problems(&mut v, rec),
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

fn write_problems<E: Emit>(e: &mut E, rec: &Record<'_>) {
    e.emit(b"[");
    for (i, p) in rec.problems.names().enumerate() {
        if i > 0 {
            e.emit(b",");
        }
        write_str(e, p);
    }
    e.emit(b"]");
}

/// Writes the longest prefix of `s` whose JSON string token fits in `max` bytes;
/// returns the bytes written.
fn write_str_limited<E: Emit>(e: &mut E, s: &str, max: usize) -> usize {
    let mut len = 2; // the quotes
    let mut end = 0;
    for (i, c) in s.char_indices() {
        let l = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if len + l > max {
            break;
        }
        len += l;
        end = i + c.len_utf8();
    }
    let mut c = Count(0);
    write_str(&mut c, &s[..end]);
    if c.0 > max {
        // Cannot happen (the loop counted the same escapes); keep the bound anyway.
        return 0;
    }
    write_str(e, &s[..end]);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_prefix_spells_out_the_constants() {
        for kind in [
            SourceKind::AuditLog,
            SourceKind::Alerts,
            SourceKind::SyncLog,
        ] {
            let mut v = b"CEF:0|".to_vec();
            for (s, limit) in [(VENDOR, 63), (product(kind), 63), (MAPPING_VERSION, 31)] {
                assert!(s.len() <= limit);
                header_field(&mut v, s, limit);
                v.push(b'|');
            }
            assert_eq!(header_prefix(kind).as_bytes(), v);
        }
        assert_eq!(DETAILS_LABEL, "details");
        assert_eq!(TIMESTAMP_LABEL, "eventTimestamp");
        assert_eq!(ACTOR_TYPE_LABEL, "actorType");
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
        let mut out = Vec::new();
        let mut v = CefValue {
            out: &mut out,
            remaining: 4,
            cut: false,
        };
        v.emit("a=".as_bytes());
        v.emit("é".as_bytes());
        v.emit("x".as_bytes());
        assert_eq!(out, "a\\=é".as_bytes());
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
}
