//! Syslog headers: RFC 5424 and RFC 3164 (BSD), written in front of a record's body.
//!
//! Owned here: PRI (facility and a syslog severity derived from the CEF severity), the
//! timestamps (the event's time, not the time of sending: a SIEM then files the event
//! when it happened), and the sanitizing of HOSTNAME / APP-NAME / TAG / MSGID to the
//! characters and lengths the RFCs allow, done once per encoder. Deliberately not here:
//! the body and the framing.
//!
//! RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`, TIMESTAMP in UTC
//! with six fractional digits (the most RFC 5424 allows; truncated, never rounded),
//! PROCID `-` (the encoder does no I/O, and the process id says nothing about the
//! event), no structured data, MSG without BOM. RFC 3164: `<PRI>Mmm dd hh:mm:ss HOSTNAME
//! TAG: MSG`, in UTC (the RFC has no zone; UTC is the only unambiguous choice).

use crate::normalize::time::{write_rfc3164, write_rfc3339, Civil};

/// RFC 5424 limits.
const HOSTNAME_MAX: usize = 255;
const APP_NAME_MAX: usize = 48;
const MSGID_MAX: usize = 32;
/// RFC 3164: the TAG is at most 32 alphanumeric characters.
const TAG_MAX: usize = 32;

/// The syslog severity (RFC 5424 table 2) of a CEF severity 0-10: 0 informational,
/// 1-3 (CEF Low) notice, 4-6 (Medium) warning, 7-8 (High) error, 9-10 (Very-High)
/// critical. Emergency and alert are left to the receiving system's own judgement.
pub fn syslog_severity(cef: u8) -> u8 {
    match cef {
        0 => 6,
        1..=3 => 5,
        4..=6 => 4,
        7..=8 => 3,
        _ => 2,
    }
}

/// `PRINTUSASCII` (33-126) only, at most `max` bytes, `-` (NILVALUE) when empty.
pub fn sanitize_5424(s: &str, max: usize) -> String {
    let v: String = s
        .bytes()
        .filter(|b| (33..=126).contains(b))
        .take(max)
        .map(char::from)
        .collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v
    }
}

/// An RFC 3164 TAG: ASCII letters, digits, `-`, `_`, `.`; at most 32; `c42fwd` if empty.
pub fn sanitize_tag(s: &str) -> String {
    let v: String = s
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        .take(TAG_MAX)
        .map(char::from)
        .collect();
    if v.is_empty() {
        "c42fwd".to_owned()
    } else {
        v
    }
}

/// The parts of a header that do not change between records.
#[derive(Debug, Clone)]
pub struct HeaderParts {
    facility: u8,
    hostname: String,
    app_name: String,
    tag: String,
}

impl HeaderParts {
    /// `facility` above 23 is clamped to 23 (local7): config validation rejects it, but
    /// the encoder must not produce an invalid PRI whatever it is given.
    pub fn new(facility: u8, hostname: &str, app_name: &str) -> HeaderParts {
        HeaderParts {
            facility: facility.min(23),
            hostname: sanitize_5424(hostname, HOSTNAME_MAX),
            app_name: sanitize_5424(app_name, APP_NAME_MAX),
            tag: sanitize_tag(app_name),
        }
    }

    fn pri(&self, out: &mut Vec<u8>, cef_severity: u8) {
        let pri = u16::from(self.facility) * 8 + u16::from(syslog_severity(cef_severity));
        out.push(b'<');
        out.extend_from_slice(itoa::Buffer::new().format(pri).as_bytes());
        out.push(b'>');
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - ` (MSG follows).
    pub fn write_5424(&self, out: &mut Vec<u8>, cef_severity: u8, civil: &Civil, msgid: &str) {
        self.pri(out, cef_severity);
        out.extend_from_slice(b"1 ");
        if civil.has_four_digit_year() {
            write_rfc3339(out, civil, 6);
        } else {
            out.push(b'-');
        }
        out.push(b' ');
        out.extend_from_slice(self.hostname.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.app_name.as_bytes());
        out.extend_from_slice(b" - ");
        let m = msgid.as_bytes();
        let m = &m[..m.len().min(MSGID_MAX)];
        if !m.is_empty() && m.iter().all(|b| (33..=126).contains(b)) {
            // Every known class id takes this path: snake_case ASCII.
            out.extend_from_slice(m);
        } else {
            let start = out.len();
            out.extend(
                msgid
                    .bytes()
                    .filter(|b| (33..=126).contains(b))
                    .take(MSGID_MAX),
            );
            if out.len() == start {
                out.push(b'-');
            }
        }
        out.extend_from_slice(b" - ");
    }

    /// `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: ` (MSG follows).
    pub fn write_3164(&self, out: &mut Vec<u8>, cef_severity: u8, civil: &Civil) {
        self.pri(out, cef_severity);
        write_rfc3164(out, civil);
        out.push(b' ');
        out.extend_from_slice(self.hostname.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.tag.as_bytes());
        out.extend_from_slice(b": ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::time::parse_rfc3339;

    fn civil(s: &str) -> Civil {
        Civil::of(&parse_rfc3339(s).unwrap())
    }

    #[test]
    fn rfc5424_header() {
        let h = HeaderParts::new(13, "siem-fwd.example.com", "c42fwd");
        let mut v = Vec::new();
        h.write_5424(
            &mut v,
            7,
            &civil("2020-08-13T15:52:40.240585999Z"),
            "logged_in",
        );
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "<107>1 2020-08-13T15:52:40.240585Z siem-fwd.example.com c42fwd - logged_in - "
        );
    }

    #[test]
    fn rfc5424_sanitizes_and_cuts() {
        let h = HeaderParts::new(200, "bad host\nname", &"a".repeat(100));
        let mut v = Vec::new();
        h.write_5424(
            &mut v,
            10,
            &civil("2020-01-01T00:00:00Z"),
            "x y\u{e9}z|".repeat(20).as_str(),
        );
        let s = String::from_utf8(v).unwrap();
        // facility clamped to 23, severity 10 -> critical (2)
        assert!(s.starts_with("<186>1 2020-01-01T00:00:00.000000Z badhostname "));
        let parts: Vec<&str> = s.split(' ').collect();
        assert_eq!(parts[3].len(), 48);
        assert_eq!(parts[5].len(), 32);
        assert!(parts[5].bytes().all(|b| (33..=126).contains(&b)));
        let h = HeaderParts::new(1, "", "");
        let mut v = Vec::new();
        h.write_5424(&mut v, 0, &civil("2020-01-01T00:00:00Z"), " \u{e9}");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "<14>1 2020-01-01T00:00:00.000000Z - - - - - "
        );
    }

    #[test]
    fn rfc3164_header() {
        let h = HeaderParts::new(13, "fwd01", "c42 fwd[1]");
        let mut v = Vec::new();
        h.write_3164(&mut v, 3, &civil("2024-03-05T07:08:09.5Z"));
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "<109>Mar  5 07:08:09 fwd01 c42fwd1: "
        );
    }

    #[test]
    fn severity_mapping_is_monotonic() {
        let mut last = 7;
        for cef in 0..=255u8 {
            let s = syslog_severity(cef);
            assert!(s <= last && s <= 7);
            last = s;
        }
        assert_eq!(syslog_severity(5), 4);
    }
}
