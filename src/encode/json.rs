//! JSON output: the raw API event, the normalized record, and the JSON primitives the
//! CEF `details` field shares.
//!
//! Owned here: the [`Emit`] byte-sink abstraction (so that the same JSON writer can
//! write plainly, count, or write through CEF escaping), JSON string escaping, compact
//! copying of raw JSON values (insignificant whitespace removed, nothing else touched),
//! and the key names of the normalized record (documented in `docs/formats.md`).
//! Deliberately not here: syslog headers and framing (`mod.rs`, `syslog.rs`).
//!
//! **Invariant:** everything written here is free of CR and LF bytes, except the raw
//! event under `JsonRaw`, whose raw CR/LF (only possible as whitespace between tokens,
//! since JSON strings cannot hold them) the caller replaces when the framing needs it.

use crate::normalize::scan;
use crate::normalize::time::{write_rfc3339, Civil};
use crate::normalize::Record;

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
    if !rec.problems.is_empty() {
        out.extend_from_slice(b",\"problems\":[");
        for (i, p) in rec.problems.names().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, p);
        }
        out.push(b']');
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
}
