//! Hand-written JSON text output for the emulator's hot path.
//!
//! Owns string escaping (RFC 8259: `"`, `\` and control characters; everything else,
//! non-ASCII included, passes through as UTF-8), integer and timestamp formatting.
//! Serving hundreds of thousands of events per second leaves no room for building a
//! `serde_json::Value` per event. It does not decide what an event contains.

use super::timeline::{Precision, NANOS_PER_SEC};

/// Appends `s` escaped for the inside of a JSON string (no surrounding quotes).
pub(crate) fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            // Other control characters (and DEL, which JSON allows raw but many log
            // tools choke on) as \u00XX.
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Appends `s` as a quoted JSON string.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
}

/// Appends `,"key":"value"`.
pub(crate) fn kv_str(out: &mut String, key: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
    push_str(out, value);
}

/// Appends `,"key":` so the caller can write any value after it.
pub(crate) fn key(out: &mut String, key: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
}

/// Appends `,"key":123`.
pub(crate) fn kv_u64(out: &mut String, k: &str, value: u64) {
    key(out, k);
    push_u64(out, value);
}

/// Appends `,"key":true|false`.
pub(crate) fn kv_bool(out: &mut String, k: &str, value: bool) {
    key(out, k);
    out.push_str(if value { "true" } else { "false" });
}

/// Appends `,"key":["a","b"]`.
pub(crate) fn kv_str_array<'a>(
    out: &mut String,
    k: &str,
    values: impl IntoIterator<Item = &'a str>,
) {
    key(out, k);
    out.push('[');
    for (n, v) in values.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        push_str(out, v);
    }
    out.push(']');
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
}

fn push_padded(out: &mut String, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut x = v;
    for slot in buf[20 - width..].iter_mut().rev() {
        *slot = b'0' + (x % 10) as u8;
        x /= 10;
    }
    for &b in &buf[20 - width..] {
        out.push(b as char);
    }
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m as u64, d as u64)
}

/// Appends `YYYY-MM-DDTHH:MM:SS.fffZ` with 3, 6 or 9 fractional digits (no quotes).
/// Years outside 0..=9999 are clamped: the emulator never produces them.
pub(crate) fn push_timestamp(out: &mut String, ns: i64, precision: Precision) {
    let secs = ns.div_euclid(NANOS_PER_SEC);
    let frac = ns.rem_euclid(NANOS_PER_SEC) as u64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u64;
    push_padded(out, y.clamp(0, 9_999) as u64, 4);
    out.push('-');
    push_padded(out, mo, 2);
    out.push('-');
    push_padded(out, d, 2);
    out.push('T');
    push_padded(out, sod / 3_600, 2);
    out.push(':');
    push_padded(out, sod / 60 % 60, 2);
    out.push(':');
    push_padded(out, sod % 60, 2);
    out.push('.');
    match precision {
        Precision::Millis => push_padded(out, frac / 1_000_000, 3),
        Precision::Micros => push_padded(out, frac / 1_000, 6),
        Precision::Nanos => push_padded(out, frac, 9),
    }
    out.push('Z');
}

/// Appends `YYYY-MM-DDTHH:MM:SS.<digits>Z` with `digits` (1..=9) fractional digits,
/// truncated (no quotes). The alert service prints 7 (.NET ticks of 100 ns), the
/// Directory Sync Log 3.
pub(crate) fn push_timestamp_digits(out: &mut String, ns: i64, digits: usize) {
    let digits = digits.clamp(1, 9);
    let mut full = String::with_capacity(30);
    push_timestamp(&mut full, ns, Precision::Nanos);
    // `full` is `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: keep the first `digits` of the nine.
    let dot = full.len() - 11;
    out.push_str(&full[..dot + 1 + digits]);
    out.push('Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_through_serde() {
        let nasty = "a\"b\\c\nd\re\tf\u{1}g\u{7f}h é 日本語 🚨 |=<13>";
        let mut out = String::new();
        push_str(&mut out, nasty);
        assert!(!out.contains('\n') && !out.contains('\r'));
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, nasty);
    }

    #[test]
    fn timestamps_with_any_number_of_digits() {
        let ns = 1_586_353_825_364_441_099;
        let mut out = String::new();
        push_timestamp_digits(&mut out, ns, 7);
        assert_eq!(out, "2020-04-08T13:50:25.3644410Z");
        out.clear();
        push_timestamp_digits(&mut out, ns, 3);
        assert_eq!(out, "2020-04-08T13:50:25.364Z");
    }

    #[test]
    fn integers_and_timestamps_format_like_chrono() {
        let mut out = String::new();
        push_u64(&mut out, 0);
        out.push(' ');
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, "0 18446744073709551615");
        for ns in [
            0i64,
            1_597_333_960_240_585_123,
            951_782_400_000_000_001,
            4_102_444_799_999_999_999,
        ] {
            for (p, fmt) in [
                (Precision::Millis, chrono::SecondsFormat::Millis),
                (Precision::Micros, chrono::SecondsFormat::Micros),
                (Precision::Nanos, chrono::SecondsFormat::Nanos),
            ] {
                let mut out = String::new();
                push_timestamp(&mut out, ns, p);
                let want = chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(fmt, true);
                assert_eq!(out, want);
            }
        }
    }
}
