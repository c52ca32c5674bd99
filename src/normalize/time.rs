//! Event time: parsing the API's RFC 3339 text and writing the forms the encoders need.
//!
//! Owned here: a strict, allocation-free RFC 3339 parser that keeps every fractional
//! digit up to nanoseconds, and writers for the fixed-width RFC 3339 form (9, 6 or 3
//! fractional digits), epoch milliseconds and the RFC 3164 `Mmm dd hh:mm:ss` stamp.
//! Deliberately not here: time zones other than a numeric offset, and any clock: these
//! functions are pure and never read the current time.
//!
//! Why not chrono's parser: it allocates nothing either, but it accepts more than the
//! API ever sends and costs several times more per event; the encoders run this once
//! per record at a million records per second.

use chrono::{DateTime, NaiveDate, Utc};

const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1-12, day 1-31) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // The casts are in range by construction: d in 1..=31, m in 1..=12.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)` exactly (`t`/`z` and a space
/// separator are accepted, as RFC 3339 allows). Returns `None` for anything else,
/// including leap seconds and more than nine fractional digits, so that a caller can
/// keep the original text instead of a lossy reading of it.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    parse_rfc3339_civil(s).map(|(t, _)| t)
}

/// Like [`parse_rfc3339`], and also the broken-down time when the text was already in
/// UTC (`Z` or `+00:00`, as the API sends it), so that the encoders need not compute it
/// back from the instant.
pub fn parse_rfc3339_civil(s: &str) -> Option<(DateTime<Utc>, Option<Civil>)> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(&b[start..i])? * 10u32.pow((9 - n) as u32);
    }
    let offset_secs: i64 = match b.get(i..) {
        Some([b'Z' | b'z']) => 0,
        Some([sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]) => {
            let oh = i64::from(digits(&[*h1, *h2])?);
            let om = i64::from(digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs =
        days * SECS_PER_DAY + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
            - offset_secs;
    let t = if offset_secs == 0 {
        // Building from the calendar fields is cheaper than from a day count (which
        // chrono has to turn back into a year and a day of the year).
        NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?
            .and_hms_nano_opt(hour, minute, second, nanos)?
            .and_utc()
    } else {
        DateTime::<Utc>::from_timestamp(secs, nanos)?
    };
    let civil = (offset_secs == 0).then_some(Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    });
    Some((t, civil))
}

/// The broken-down UTC time the writers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0..=999_999_999 (a chrono leap second is folded into the last nanosecond of the
    /// second, because none of our output formats can express it).
    pub nanos: u32,
}

impl Civil {
    pub fn of(t: &DateTime<Utc>) -> Civil {
        let secs = t.timestamp();
        let nanos = t.timestamp_subsec_nanos().min(999_999_999);
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            nanos,
        }
    }

    /// Whether the year fits the four digits RFC 3339 and RFC 5424 require.
    pub fn has_four_digit_year(&self) -> bool {
        (0..=9999).contains(&self.year)
    }
}

fn push2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

fn put2(buf: &mut [u8], at: usize, v: u32) {
    buf[at] = b'0' + (v / 10 % 10) as u8;
    buf[at + 1] = b'0' + (v % 10) as u8;
}

/// Writes `YYYY-MM-DDTHH:MM:SS[.f]Z` with exactly `frac_digits` (0..=9) fractional
/// digits, truncated (never rounded, so that ordering is kept). A year outside
/// 0..=9999 is written with as many digits and the sign it needs: still readable,
/// never a panic.
pub fn write_rfc3339(out: &mut Vec<u8>, c: &Civil, frac_digits: u32) {
    let frac_digits = frac_digits.min(9) as usize;
    // Built on the stack and copied once: this runs twice per CEF record.
    let mut buf = *b"0000-00-00T00:00:00.000000000Z";
    let year_len = if c.has_four_digit_year() {
        let y = c.year as u32;
        put2(&mut buf, 0, y / 100);
        put2(&mut buf, 2, y % 100);
        4
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(c.year).as_bytes());
        0
    };
    put2(&mut buf, 5, c.month);
    put2(&mut buf, 8, c.day);
    put2(&mut buf, 11, c.hour);
    put2(&mut buf, 14, c.minute);
    put2(&mut buf, 17, c.second);
    let mut end = 19;
    if frac_digits > 0 {
        let mut n = c.nanos;
        for i in (20..29).rev() {
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        end = 20 + frac_digits;
    }
    buf[end] = b'Z';
    out.extend_from_slice(&buf[4 - year_len..=end]);
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Writes the RFC 3164 TIMESTAMP `Mmm dd hh:mm:ss` (day space-padded), in UTC.
pub fn write_rfc3164(out: &mut Vec<u8>, c: &Civil) {
    let m = MONTHS[(c.month.clamp(1, 12) - 1) as usize];
    out.extend_from_slice(m);
    out.push(b' ');
    if c.day < 10 {
        out.push(b' ');
        out.push(b'0' + c.day as u8);
    } else {
        push2(out, c.day);
    }
    out.push(b' ');
    push2(out, c.hour);
    out.push(b':');
    push2(out, c.minute);
    out.push(b':');
    push2(out, c.second);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, TimeZone};

    fn s(c: &Civil, digits: u32) -> String {
        let mut v = Vec::new();
        write_rfc3339(&mut v, c, digits);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn parses_api_timestamps_with_any_precision() {
        let t = parse_rfc3339("2020-08-13T15:52:40.240585Z").unwrap();
        assert_eq!(t.timestamp(), 1_597_333_960);
        assert_eq!(t.timestamp_subsec_nanos(), 240_585_000);
        let t = parse_rfc3339("2022-10-03T13:14:46.962123456Z").unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 962_123_456);
        let t = parse_rfc3339("2022-10-03T13:14:46Z").unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 0);
        let t = parse_rfc3339("2022-10-03T15:14:46.5+02:00").unwrap();
        assert_eq!(
            t,
            Utc.with_ymd_and_hms(2022, 10, 3, 13, 14, 46).unwrap()
                + chrono::Duration::milliseconds(500)
        );
    }

    #[test]
    fn agrees_with_chrono_on_valid_input() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59.999999999Z",
            "1969-12-31T23:59:59.1Z",
            "2400-12-31T00:00:00-11:30",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.123Z",
        ] {
            let ours = parse_rfc3339(text).unwrap();
            let theirs = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_keep_exactly() {
        for text in [
            "",
            "2020-08-13",
            "2020-13-01T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2020-08-13T24:00:00Z",
            "2020-08-13T23:59:60Z",
            "2020-08-13T23:59:59.Z",
            "2020-08-13T23:59:59.1234567890Z",
            "2020-08-13T23:59:59",
            "2020-08-13T23:59:59+0200",
            "2020-08-13T23:59:59Zjunk",
            "2020-08-13X23:59:59Z",
            "２020-08-13T23:59:59Z",
            "+020-08-13T23:59:59Z",
        ] {
            assert!(parse_rfc3339(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn parsed_civil_time_is_the_instant_s() {
        for text in [
            "2020-08-13T15:52:40.240585Z",
            "2000-02-29T23:59:59.999999999+00:00",
            "1970-01-01T00:00:00Z",
        ] {
            let (t, civil) = parse_rfc3339_civil(text).unwrap();
            assert_eq!(civil, Some(Civil::of(&t)), "{text}");
        }
        let (_, civil) = parse_rfc3339_civil("2020-08-13T15:52:40+01:00").unwrap();
        assert_eq!(civil, None);
    }

    #[test]
    fn writes_fixed_width_truncated_fractions() {
        let t = parse_rfc3339("2020-08-13T15:52:40.240585999Z").unwrap();
        let c = Civil::of(&t);
        assert_eq!(s(&c, 9), "2020-08-13T15:52:40.240585999Z");
        assert_eq!(s(&c, 6), "2020-08-13T15:52:40.240585Z");
        assert_eq!(s(&c, 3), "2020-08-13T15:52:40.240Z");
        assert_eq!(s(&c, 0), "2020-08-13T15:52:40Z");
    }

    #[test]
    fn civil_round_trips_over_a_wide_range() {
        let mut secs: i64 = -62_135_596_800; // 0001-01-01
        while secs < 253_402_300_799 {
            let t = DateTime::<Utc>::from_timestamp(secs, 123_456_789).unwrap();
            let text = s(&Civil::of(&t), 9);
            assert_eq!(text, t.to_rfc3339_opts(SecondsFormat::Nanos, true));
            assert_eq!(parse_rfc3339(&text), Some(t));
            secs += 7_777_777;
        }
    }

    #[test]
    fn odd_years_do_not_panic() {
        let t = DateTime::<Utc>::MIN_UTC;
        let c = Civil::of(&t);
        assert!(!c.has_four_digit_year());
        assert!(s(&c, 9).starts_with('-'));
        let c = Civil::of(&DateTime::<Utc>::MAX_UTC);
        assert!(s(&c, 9).ends_with('Z'));
        let mut v = Vec::new();
        write_rfc3164(&mut v, &c);
        assert_eq!(v.len(), 15);
    }

    #[test]
    fn rfc3164_stamp_pads_the_day_with_a_space() {
        let t = parse_rfc3339("2024-03-05T07:08:09.5Z").unwrap();
        let mut v = Vec::new();
        write_rfc3164(&mut v, &Civil::of(&t));
        assert_eq!(v, b"Mar  5 07:08:09");
    }
}
