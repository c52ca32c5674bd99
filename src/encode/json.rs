//! JSON output: the raw API event, the normalized record, and the JSON primitives the
//! CEF `details` field shares.
//!
//! Owned here: the [`Emit`] byte-sink abstraction (so that the same JSON writer can
//! write plainly, count, or write through CEF / LEEF escaping), JSON string escaping,
//! compact copying of raw JSON values (insignificant whitespace removed, nothing else
//! touched), the bounded writer that fits a JSON value into a length limit
//! ([`write_bounded`]), and the key names of the normalized record (documented in
//! `docs/formats.md`). Deliberately not here: syslog headers and framing (`mod.rs`,
//! `syslog.rs`).
//!
//! **Invariant:** everything written here is free of CR and LF bytes, except the raw
//! event under `JsonRaw`, whose raw CR/LF (only possible as whitespace between tokens,
//! since JSON strings cannot hold them) the caller replaces when the framing needs it.

use crate::normalize::json::{decode_str, scan_array, scan_object};
use crate::normalize::scan;
use crate::normalize::time::{write_rfc3339, Civil};
use crate::normalize::{Problems, Record};
use smallvec::SmallVec;

/// A byte sink for the writers in this module.
pub(crate) trait Emit {
    fn emit(&mut self, bytes: &[u8]);
}

impl Emit for Vec<u8> {
    #[inline]
    fn emit(&mut self, bytes: &[u8]) {
        put(self, bytes);
    }
}

/// Appends `b`. The encoders append many pieces of a few bytes (between escapes, keys,
/// separators); for those a byte loop beats a call to `memcpy`, which is what
/// `extend_from_slice` becomes for a length unknown at compile time.
#[inline]
pub(crate) fn put(out: &mut Vec<u8>, b: &[u8]) {
    if b.len() <= 8 {
        for &c in b {
            out.push(c);
        }
    } else {
        out.extend_from_slice(b);
    }
}

/// Counts what would be written.
#[derive(Debug, Default)]
pub(crate) struct Count(pub usize);

impl Emit for Count {
    #[inline]
    fn emit(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Writes the names of `problems` as a JSON array of strings (the JSON record's
/// `problems`, CEF's and LEEF's detail value).
pub(crate) fn write_problems<E: Emit + ?Sized>(e: &mut E, problems: Problems) {
    write_strings(e, problems.names());
}

/// Writes `items` as a JSON array of strings.
pub(crate) fn write_strings<E: Emit + ?Sized, S: AsRef<str>>(
    e: &mut E,
    items: impl IntoIterator<Item = S>,
) {
    e.emit(b"[");
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            e.emit(b",");
        }
        write_str(e, s.as_ref());
    }
    e.emit(b"]");
}

/// Writes `s` as a JSON string token. Every run of bytes passed to `e` is valid UTF-8
/// (runs are cut only at ASCII bytes), which the CEF truncating sink relies on.
pub(crate) fn write_str<E: Emit + ?Sized>(e: &mut E, s: &str) {
    e.emit(b"\"");
    let mut rest = s.as_bytes();
    while let Some(i) = scan::find_json_special(rest) {
        e.emit(&rest[..i]);
        let c = rest[i];
        match c {
            b'"' => e.emit(b"\\\""),
            b'\\' => e.emit(b"\\\\"),
            b'\n' => e.emit(b"\\n"),
            b'\r' => e.emit(b"\\r"),
            b'\t' => e.emit(b"\\t"),
            0x08 => e.emit(b"\\b"),
            0x0c => e.emit(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                e.emit(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 15)],
                ]);
            }
        }
        rest = &rest[i + 1..];
    }
    e.emit(rest);
    e.emit(b"\"");
}

/// Copies a raw JSON value without its insignificant whitespace. Strings are copied
/// byte for byte (escapes included), so the value means exactly what it meant.
pub(crate) fn write_compact<E: Emit + ?Sized>(e: &mut E, raw: &str) {
    let b = raw.as_bytes();
    // Scalars (the common case) cannot contain insignificant whitespace: a RawValue is
    // trimmed, and strings keep their spaces.
    if !matches!(b.first(), Some(b'{' | b'[')) {
        e.emit(b);
        return;
    }
    let mut run = 0;
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_str = true,
                b' ' | b'\n' | b'\r' | b'\t' => {
                    e.emit(&b[run..i]);
                    run = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    e.emit(&b[run.min(b.len())..]);
}

/// The length of [`write_compact`]'s output.
pub(crate) fn compact_len(raw: &str) -> usize {
    let mut c = Count(0);
    write_compact(&mut c, raw);
    c.0
}

/// Writes the longest prefix of `s` whose JSON string token fits in `max` bytes;
/// returns the bytes written.
pub(crate) fn write_str_limited<E: Emit + ?Sized>(e: &mut E, s: &str, max: usize) -> usize {
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

/// The key c42fwd adds to an object (and, as `{"_truncated":N}`, to an array) that
/// [`write_bounded`] had to cut: how many of its members were cut or left out. No API
/// object has a key with a leading `_`.
pub(crate) const TRUNCATED_KEY: &str = "_truncated";
/// Below this much room a string is not cut nor a container opened: the value is left
/// out whole (a stub that short says nothing).
pub(crate) const MIN_PARTIAL: usize = 24;
/// Containers nested deeper than this are never opened to be cut (they are placed whole
/// or left out): it bounds the recursion whatever the input.
const MAX_CUT_DEPTH: usize = 16;

/// Writes the compact form of `raw` (valid JSON) in at most `budget` bytes and returns
/// the bytes written, or `None` (and writes nothing) when not even a cut form fits.
///
/// A value that fits is written whole (as [`write_compact`]). One that does not is cut
/// from the inside, keeping the output valid JSON: an object or array keeps its members
/// in order while they fit whole; a member that does not is cut the same way (a string
/// to its longest prefix that fits, a container recursively) when at least
/// [`MIN_PARTIAL`] bytes are left for it, and left out otherwise. Every object that lost
/// something ends with `"_truncated":N`, every array with `{"_truncated":N}`, N counting
/// its members cut or left out (as CEF `details` does).
pub(crate) fn write_bounded<E: Emit + ?Sized>(
    e: &mut E,
    raw: &str,
    budget: usize,
) -> Option<usize> {
    let len = compact_len(raw);
    if len <= budget {
        write_compact(e, raw);
        return Some(len);
    }
    write_cut(e, raw, budget, 0)
}

/// Whether [`write_cut`] can write a cut form of `raw` in `budget` bytes.
fn cut_fits(raw: &str, budget: usize, depth: usize) -> bool {
    if budget < MIN_PARTIAL {
        return false;
    }
    match raw.as_bytes().first() {
        Some(b'"') => true,
        Some(b'{' | b'[') if depth < MAX_CUT_DEPTH => {
            budget > container_reserve(raw.starts_with('{'), member_count(raw))
        }
        _ => false,
    }
}

fn member_count(raw: &str) -> usize {
    let mut n = 0;
    if raw.starts_with('{') {
        scan_object(raw, |_| n += 1);
    } else {
        scan_array(raw, |_| {
            n += 1;
            true
        });
    }
    n
}

/// Bytes kept free in a cut container for its truncation marker and closing bracket.
fn container_reserve(object: bool, members: usize) -> usize {
    let digits = itoa::Buffer::new().format(members).len();
    // `,"_truncated":N}` or `,{"_truncated":N}]`
    let marker = TRUNCATED_KEY.len() + 4 + digits;
    if object {
        marker + 1
    } else {
        marker + 3
    }
}

/// Writes a cut form of `raw` (which does not fit whole) in at most `budget` bytes.
fn write_cut<E: Emit + ?Sized>(e: &mut E, raw: &str, budget: usize, depth: usize) -> Option<usize> {
    if !cut_fits(raw, budget, depth) {
        return None;
    }
    if raw.starts_with('"') {
        let text = decode_str(raw).unwrap_or_default();
        return Some(write_str_limited(e, &text, budget));
    }
    let object = raw.starts_with('{');
    // (key text inside its quotes, still escaped; value)
    let mut members: SmallVec<[(&str, &str); 16]> = SmallVec::new();
    if object {
        scan_object(raw, |m| members.push((m.key, m.value)));
    } else {
        scan_array(raw, |v| {
            members.push(("", v));
            true
        });
    }
    let limit = budget - container_reserve(object, members.len());
    e.emit(if object { b"{" } else { b"[" });
    let mut used = 1;
    let mut cut = 0usize;
    let mut first = true;
    for (key, value) in members {
        let sep = usize::from(!first);
        // `"key":` as the API wrote the key (its escapes kept).
        let head = if object { key.len() + 3 } else { 0 };
        let whole = compact_len(value);
        let room = limit.saturating_sub(used + sep + head);
        let fits_whole = whole <= room;
        if !fits_whole {
            cut += 1;
            if !cut_fits(value, room, depth + 1) {
                continue;
            }
        }
        if !first {
            e.emit(b",");
        }
        first = false;
        if object {
            e.emit(b"\"");
            e.emit(key.as_bytes());
            e.emit(b"\":");
        }
        let written = if fits_whole {
            write_compact(e, value);
            whole
        } else {
            write_cut(e, value, room, depth + 1).unwrap_or(0)
        };
        used += sep + head + written;
    }
    if cut > 0 {
        let mut buf = itoa::Buffer::new();
        let digits = buf.format(cut);
        if !first {
            e.emit(b",");
            used += 1;
        }
        if !object {
            e.emit(b"{");
            used += 1;
        }
        e.emit(b"\"");
        e.emit(TRUNCATED_KEY.as_bytes());
        e.emit(b"\":");
        e.emit(digits.as_bytes());
        used += TRUNCATED_KEY.len() + 3 + digits.len();
        if !object {
            e.emit(b"}");
            used += 1;
        }
    }
    e.emit(if object { b"}" } else { b"]" });
    Some(used + 1)
}

fn write_opt_str<E: Emit + ?Sized>(e: &mut E, s: Option<&str>) {
    match s {
        Some(s) => write_str(e, s),
        None => e.emit(b"null"),
    }
}

/// Writes the normalized record as one compact JSON object. Key names are stable and
/// documented in `docs/formats.md`; optional values are `null`, never left out, except
/// `problems`, which appears only when the event was malformed.
pub(crate) fn write_normalized(out: &mut Vec<u8>, rec: &Record<'_>) {
    out.extend_from_slice(b"{\"source\":");
    write_str(out, rec.source.as_str());
    out.extend_from_slice(b",\"class_id\":");
    write_str(out, &rec.class_id);
    out.extend_from_slice(b",\"name\":");
    write_str(out, &rec.name);
    out.extend_from_slice(b",\"category\":");
    write_str(out, rec.category);
    out.extend_from_slice(b",\"severity\":");
    out.extend_from_slice(itoa::Buffer::new().format(rec.severity).as_bytes());
    out.extend_from_slice(b",\"type\":");
    write_opt_str(out, rec.type_tag.as_deref());
    out.extend_from_slice(b",\"time\":\"");
    write_rfc3339(out, &Civil::of(&rec.time), 9);
    out.extend_from_slice(b"\",\"actor\":{\"id\":");
    write_opt_str(out, rec.actor.id.as_deref());
    out.extend_from_slice(b",\"name\":");
    write_opt_str(out, rec.actor.name.as_deref());
    out.extend_from_slice(b",\"type\":");
    write_opt_str(out, rec.actor.kind.as_deref());
    out.extend_from_slice(b",\"agent\":");
    write_opt_str(out, rec.actor.agent.as_deref());
    out.extend_from_slice(b"},\"source_ips\":[");
    for (i, (ip, _)) in rec.source_ips.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, ip);
    }
    out.extend_from_slice(b"],\"outcome\":");
    out.extend_from_slice(match rec.success {
        Some(true) => b"\"success\"".as_slice(),
        Some(false) => b"\"failure\"",
        None => b"null",
    });
    out.extend_from_slice(b",\"fields\":{");
    for (i, f) in rec.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, &f.key);
        out.push(b':');
        write_compact(out, f.value);
    }
    out.push(b'}');
    if let Some(o) = rec.observations.as_deref() {
        let list = |out: &mut Vec<u8>, key: &[u8], items: &[std::borrow::Cow<'_, str>]| {
            out.extend_from_slice(key);
            write_strings(out, items);
        };
        let int = |out: &mut Vec<u8>, key: &[u8], v: i64| {
            out.extend_from_slice(key);
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        };
        int(out, b",\"observation_summary\":{\"count\":", o.count as i64);
        int(out, b",\"unreadable\":", o.unreadable as i64);
        int(out, b",\"file_count\":", o.file_count);
        int(out, b",\"total_file_size\":", o.total_file_size);
        list(out, b",\"exposure_types\":", &o.exposure_types);
        list(out, b",\"file_names\":", &o.file_names);
        out.extend_from_slice(b",\"first_file_path\":");
        write_opt_str(out, o.first_file_path.as_deref());
        list(out, b",\"sync_to_services\":", &o.sync_to_services);
        out.push(b'}');
    }
    if let Some(s) = rec.session.as_deref() {
        let int = |out: &mut Vec<u8>, key: &[u8], v: Option<i64>| {
            out.extend_from_slice(key);
            match v {
                Some(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
        };
        out.extend_from_slice(b",\"session_summary\":{\"state\":");
        write_opt_str(out, s.state.as_deref());
        int(out, b",\"score\":", s.score);
        int(out, b",\"risk_severity\":", s.risk_severity);
        int(
            out,
            b",\"alert_count\":",
            s.alert_count.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        );
        out.extend_from_slice(b",\"risk_indicators\":");
        write_strings(out, &s.indicators);
        out.extend_from_slice(b",\"rule_ids\":");
        write_strings(out, &s.rule_ids);
        out.extend_from_slice(b",\"alert_ids\":");
        write_strings(out, &s.alert_ids);
        out.push(b'}');
    }
    if !rec.problems.is_empty() {
        out.extend_from_slice(b",\"problems\":");
        write_problems(out, rec.problems);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn strings_round_trip_through_serde() {
        for text in [
            "",
            "plain",
            "q\"b\\s",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            "é😀\u{2028}",
        ] {
            let json = s(|v| write_str(v, text));
            assert!(!json.contains('\n') && !json.contains('\r'));
            assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text);
        }
    }

    #[test]
    fn compact_removes_only_insignificant_whitespace() {
        let raw = "{ \"a b\" : [ 1 ,\n\t2 ] ,\r\n \"c\" : \"x \\\" y\\\\\" , \"d\":{ } }";
        let c = s(|v| write_compact(v, raw));
        assert_eq!(c, r#"{"a b":[1,2],"c":"x \" y\\","d":{}}"#);
        assert_eq!(compact_len(raw), c.len());
        let a: serde_json::Value = serde_json::from_str(raw).unwrap();
        let b: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(a, b);
        assert_eq!(s(|v| write_compact(v, "\"a  b\"")), "\"a  b\"");
        assert_eq!(s(|v| write_compact(v, "-1.5e3")), "-1.5e3");
    }

    fn bounded(raw: &str, budget: usize) -> Option<String> {
        let mut v = Vec::new();
        let n = write_bounded(&mut v, raw, budget)?;
        assert_eq!(n, v.len());
        assert!(n <= budget);
        Some(String::from_utf8(v).unwrap())
    }

    #[test]
    fn bounded_values_are_whole_cut_or_left_out() {
        assert_eq!(bounded("[ 1, 2 ]", 5).as_deref(), Some("[1,2]"));
        assert_eq!(bounded("12345", 4), None, "a number is never cut");
        assert_eq!(
            bounded(r#""abc""#, 4),
            None,
            "too little room to be worth cutting"
        );
        let long = format!(r#""{}""#, "x".repeat(100));
        assert_eq!(
            bounded(&long, 30).unwrap(),
            format!(r#""{}""#, "x".repeat(28))
        );
        // Members in order while they fit; the first that does not is cut to the room
        // left (so the later ones are left out); the object says how many.
        let obj = format!(r#"{{"a":1,"b":{long},"c":2,"d":[1,2,3]}}"#);
        assert_eq!(
            bounded(&obj, 60).unwrap(),
            r#"{"a":1,"b":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","_truncated":3}"#
        );
        let arr = format!("[{long},{long},{long}]");
        let cut = bounded(&arr, 150).unwrap();
        assert!(cut.ends_with(r#"{"_truncated":2}]"#), "{cut}");
        let v: serde_json::Value = serde_json::from_str(&cut).unwrap();
        assert_eq!(v[0].as_str().unwrap().len(), 100);
        // Nested: the cut goes inside.
        let nested = format!(r#"[{{"data":{{"files":[{long},{long}]}}}}]"#);
        let cut = bounded(&nested, 180).unwrap();
        let v: serde_json::Value = serde_json::from_str(&cut).unwrap();
        let files = v[0]["data"]["files"].as_array().unwrap();
        assert!(files[0].as_str().unwrap().len() >= MIN_PARTIAL - 2);
        // The first file cut, the second left out.
        assert_eq!(files.last().unwrap()["_truncated"], 2);
        assert_eq!(v[0]["data"]["_truncated"], 1);
        assert_eq!(v[0]["_truncated"], 1);
    }

    #[test]
    fn deep_nesting_is_not_opened_past_the_limit() {
        // 100 nested arrays around one string: too deep to be opened all the way, so the
        // cut stops at MAX_CUT_DEPTH and leaves the innermost part out.
        let deep = format!("{}\"x\"{}", "[".repeat(100), "]".repeat(100));
        let y = "y".repeat(300);
        let padded = format!(r#"[{deep},"{y}"]"#);
        let cut = bounded(&padded, 150).unwrap();
        serde_json::from_str::<serde_json::Value>(&cut).unwrap();
        assert!(cut.contains(r#"{"_truncated":1}"#), "{cut}");
        assert!(cut.matches('[').count() <= MAX_CUT_DEPTH + 1, "{cut}");
    }
}
