//! Encoding: an [`Event`] becomes the exact bytes a sink writes.
//!
//! Owned here: the output formats (CEF, LEEF 2.0 / 1.0, JSON raw or normalized), the
//! syslog header (RFC 5424, RFC 3164 or none) and the transport framing (RFC 6587 octet
//! counting, LF, or none for datagrams). Pure and total (ARCHITECTURE.md, invariant 4):
//! no I/O, no panic on any input; an encoded record never contains its framing's
//! delimiter unescaped. Deliberately not here: reading the event (`crate::normalize`),
//! and deciding what to do with a record too large for a transport (the sinks' oversize
//! policy).
//!
//! Layout: [`cef`], [`leef`] and `json` write bodies, [`syslog`] writes headers, this
//! file puts header, body and frame together. The reference of every byte is
//! `docs/formats.md`.
//!
//! **Invariant:** under [`Framing::Lf`] a record has no CR or LF before its final LF.
//! CEF and LEEF escape them, JSON escapes them inside strings, the headers are
//! sanitized, and the one place raw text is copied (`JsonRaw`) has its CR/LF
//! (insignificant whitespace, the only place JSON allows them) turned into spaces. A last
//! check enforces it anyway.
//!
//! **Invariant:** under [`Framing::OctetCounting`] the length prefix is the exact byte
//! length of what follows it.

pub mod cef;
pub mod cef_map;
pub mod file_events_map;
pub(crate) mod json;
pub mod leef;
pub mod syslog;

#[cfg(test)]
mod formats_doc;
#[cfg(test)]
mod golden;
#[cfg(test)]
mod props;

use crate::event::Event;
use crate::normalize::{normalize_header_into, normalize_into, Record};

/// The body format of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Cef,
    /// The API's JSON event, untouched.
    JsonRaw,
    /// The normalized record as JSON.
    JsonNormalized,
    /// LEEF 2.0 (QRadar), TAB-delimited, the delimiter declared in the header.
    Leef2,
    /// LEEF 1.0 (QRadar), TAB-delimited.
    Leef1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogStyle {
    Rfc5424,
    Rfc3164,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// RFC 6587 octet counting: `LEN SP MSG`.
    OctetCounting,
    /// One record per line; the record is guaranteed free of LF.
    Lf,
    /// No framing (one record per datagram).
    None,
}

/// Everything that decides the bytes of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderOptions {
    pub format: Format,
    pub syslog: SyslogStyle,
    pub framing: Framing,
    /// Syslog facility number (0-23); default 13 (log audit).
    pub facility: u8,
    /// HOSTNAME field; default the machine's host name.
    pub hostname: String,
    /// APP-NAME field; default `c42fwd`.
    pub app_name: String,
}

/// Turns events into framed records. Cheap to clone; holds no I/O.
#[derive(Debug, Clone)]
pub struct Encoder {
    opts: EncoderOptions,
    /// Sanitized once here, not per record.
    header: syslog::HeaderParts,
}

impl Encoder {
    pub fn new(opts: EncoderOptions) -> Self {
        let header = syslog::HeaderParts::new(opts.facility, &opts.hostname, &opts.app_name);
        Encoder { opts, header }
    }

    pub fn options(&self) -> &EncoderOptions {
        &self.opts
    }

    /// Appends one complete, framed record for `event` to `out`.
    pub fn encode(&self, event: &Event, out: &mut Vec<u8>) {
        let start = out.len();
        // Octet counting puts the length first. Room for it is left now, guessed from
        // the event's own size (records are about as long as their events), so that
        // the message only has to move when the guess was wrong.
        let room = match self.opts.framing {
            Framing::OctetCounting => itoa::Buffer::new().format(event.json().len()).len() + 1,
            _ => 0,
        };
        out.resize(start + room, b' ');
        if self.opts.format == Format::JsonRaw && self.opts.syslog == SyslogStyle::None {
            // Nothing needs the normalized record: skip reading the event at all.
            out.extend_from_slice(event.json().as_bytes());
        } else {
            let mut rec = Record::empty(event);
            if self.opts.format == Format::JsonRaw {
                // The body is the event's text: the header needs only a few keys.
                normalize_header_into(event, &mut rec);
            } else {
                normalize_into(event, &mut rec);
            }
            self.encode_record(&rec, event, out);
        }
        self.frame(out, start, room);
    }

    /// Appends the unframed message (header and body) of an already normalized record.
    /// `event` must be the event `rec` was made from (`JsonRaw` copies its text).
    pub fn encode_record(&self, rec: &Record<'_>, event: &Event, out: &mut Vec<u8>) {
        let civil = rec.civil();
        match self.opts.syslog {
            SyslogStyle::Rfc5424 => {
                self.header
                    .write_5424(out, rec.severity, &civil, &rec.class_id)
            }
            SyslogStyle::Rfc3164 => self.header.write_3164(out, rec.severity, &civil),
            SyslogStyle::None => {}
        }
        match self.opts.format {
            Format::Cef => cef::write_cef(out, rec, &civil),
            Format::JsonRaw => out.extend_from_slice(event.json().as_bytes()),
            Format::JsonNormalized => json::write_normalized(out, rec),
            Format::Leef2 => leef::write_leef(out, rec, &civil, leef::LeefVersion::V2),
            Format::Leef1 => leef::write_leef(out, rec, &civil, leef::LeefVersion::V1),
        }
    }

    /// Frames the message that starts at `out[start + room]`; `room` bytes were left
    /// free before it for the octet count.
    fn frame(&self, out: &mut Vec<u8>, start: usize, room: usize) {
        match self.opts.framing {
            Framing::Lf => {
                // Only raw JSON can hold CR/LF here, and there they are whitespace
                // between tokens: a space means the same. For the other formats this
                // finds nothing; it is the last line of defence of the invariant.
                let msg = &mut out[start..];
                let mut from = 0;
                while let Some(i) = memchr::memchr2(b'\n', b'\r', &msg[from..]) {
                    msg[from + i] = b' ';
                    from += i + 1;
                }
                out.push(b'\n');
            }
            Framing::OctetCounting => {
                let msg_start = start + room;
                let len = out.len() - msg_start;
                let mut digits = itoa::Buffer::new();
                let prefix = digits.format(len).as_bytes();
                let need = prefix.len() + 1;
                if need > room {
                    out.resize(out.len() + (need - room), 0);
                    out.copy_within(msg_start..msg_start + len, start + need);
                } else if need < room {
                    out.copy_within(msg_start..msg_start + len, start + need);
                    out.truncate(start + need + len);
                }
                out[start..start + prefix.len()].copy_from_slice(prefix);
                out[start + prefix.len()] = b' ';
            }
            Framing::None => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::SourceKind;
    use chrono::DateTime;
    use serde_json::value::RawValue;

    /// Every kind of source, for the tests that go through each.
    pub(crate) const KINDS: [SourceKind; 5] = [
        SourceKind::AuditLog,
        SourceKind::Alerts,
        SourceKind::SyncLog,
        SourceKind::Sessions,
        SourceKind::FileEvents,
    ];

    pub(crate) fn event(json: &str) -> Event {
        event_of(SourceKind::AuditLog, json)
    }

    pub(crate) fn event_of(kind: SourceKind, json: &str) -> Event {
        let raw = RawValue::from_string(json.to_owned()).unwrap();
        let occurred = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Event::new(kind, raw, occurred)
    }

    pub(crate) fn encoder(format: Format, syslog: SyslogStyle, framing: Framing) -> Encoder {
        Encoder::new(EncoderOptions {
            format,
            syslog,
            framing,
            facility: 13,
            hostname: "fwd01.example.com".into(),
            app_name: "c42fwd".into(),
        })
    }

    fn encode(enc: &Encoder, json: &str) -> String {
        let mut out = Vec::new();
        enc.encode(&event(json), &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The message of an octet-counted record, its count checked: the message's length
    /// in bytes, without leading zeros.
    fn counted(record: &str) -> &str {
        let (len, msg) = record.split_once(' ').unwrap();
        assert!(!len.starts_with('0'), "{record}");
        assert_eq!(len.parse::<usize>().unwrap(), msg.len(), "{record}");
        msg
    }

    const SEARCH: &str = r#"{"type$":"audit_log::search_issued/1","actorId":"910391548587130243","actorName":"","actorAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6)","actorIpAddress":"","timestamp":"2020-08-13T15:52:40.240585Z","success":true,"type":"query","requestJson":"{\"groups\":[],\"pgSize\":100}","resultCount":15}"#;

    /// `SEARCH` as `format` behind an RFC 5424 header, octet-counted: the message after
    /// the header (both checked).
    fn search_in_rfc5424(format: Format) -> String {
        let enc = encoder(format, SyslogStyle::Rfc5424, Framing::OctetCounting);
        let record = encode(&enc, SEARCH);
        let header =
            "<108>1 2020-08-13T15:52:40.240585Z fwd01.example.com c42fwd - search_issued - ";
        let msg = counted(&record).strip_prefix(header);
        msg.unwrap_or_else(|| panic!("not behind {header:?}: {record}"))
            .to_string()
    }

    #[test]
    fn cef_with_rfc5424_and_octet_counting() {
        assert_eq!(
            search_in_rfc5424(Format::Cef),
            "CEF:0|Code42|Audit Log|1|search_issued|Forensic Search query|4|\
             rt=1597333960240 cat=investigation suid=910391548587130243 suser= \
             requestClientApplication=Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) \
             outcome=success cs3Label=type cs3=query \
             cs4Label=requestJson cs4={\"groups\":[],\"pgSize\":100} \
             cs5Label=eventTimestamp cs5=2020-08-13T15:52:40.240585000Z \
             cn1Label=resultCount cn1=15"
        );
    }

    #[test]
    fn json_raw_is_untouched_except_line_breaks_under_lf() {
        let pretty = "{\n  \"type$\": \"audit_log::logged_in/1\",\r\n  \"actorName\": \"a\\nb\"\n}";
        let enc = encoder(Format::JsonRaw, SyslogStyle::None, Framing::None);
        assert_eq!(encode(&enc, pretty), pretty);
        let enc = encoder(Format::JsonRaw, SyslogStyle::None, Framing::Lf);
        let line = encode(&enc, pretty);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with("}\n"));
        let a: serde_json::Value = serde_json::from_str(pretty).unwrap();
        let b: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(a, b);
        let enc = encoder(Format::JsonRaw, SyslogStyle::Rfc3164, Framing::Lf);
        let line = encode(&enc, pretty);
        assert!(line.starts_with("<109>Nov 14 22:13:20 fwd01.example.com c42fwd: { "));
    }

    #[test]
    fn json_normalized_record() {
        let enc = encoder(Format::JsonNormalized, SyslogStyle::None, Framing::Lf);
        let line = encode(&enc, SEARCH);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["class_id"], "search_issued");
        assert_eq!(v["time"], "2020-08-13T15:52:40.240585000Z");
        assert_eq!(v["actor"]["id"], "910391548587130243");
        assert_eq!(v["outcome"], "success");
        assert_eq!(v["source_ips"], serde_json::json!([]));
        assert_eq!(v["fields"]["resultCount"], 15);
        assert_eq!(v["fields"]["requestJson"], "{\"groups\":[],\"pgSize\":100}");
        assert!(v.get("problems").is_none());
    }

    #[test]
    fn octet_count_is_right_whatever_the_guess() {
        // The room left for the count is guessed from the event's length; records much
        // shorter or longer than their event must come out right too.
        let long = format!(
            r#"{{"type$":"audit_log::logged_in/1","actorName":"{}"}}"#,
            "x".repeat(20_000)
        );
        let padded = format!("{{{}}}", " ".repeat(5_000));
        for json in [SEARCH, long.as_str(), padded.as_str(), "[1]"] {
            for format in [
                Format::Cef,
                Format::JsonRaw,
                Format::JsonNormalized,
                Format::Leef2,
                Format::Leef1,
            ] {
                for syslog in [SyslogStyle::Rfc5424, SyslogStyle::None] {
                    let enc = encoder(format, syslog, Framing::OctetCounting);
                    counted(&encode(&enc, json));
                }
            }
        }
    }

    #[test]
    fn leef_with_rfc5424_and_octet_counting() {
        assert_eq!(
            search_in_rfc5424(Format::Leef2),
            "LEEF:2.0|Code42|Audit Log|1|search_issued|x09|\
             devTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ\tdevTime=2020-08-13T15:52:40.240+0000\t\
             cat=investigation\tsev=4\teventName=Forensic Search query\tusrName=\t\
             actorId=910391548587130243\t\
             actorAgent=Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6)\tsuccess=true\t\
             eventTimestamp=2020-08-13T15:52:40.240585000Z\ttype=query\t\
             requestJson={\"groups\":[],\"pgSize\":100}\tresultCount=15"
        );
        let enc = encoder(Format::Leef1, SyslogStyle::None, Framing::Lf);
        let s = encode(&enc, SEARCH);
        assert!(s.starts_with("LEEF:1.0|Code42|Audit Log|1|search_issued|devTimeFormat="));
        assert!(s.ends_with("\tresultCount=15\n"));
    }

    #[test]
    fn records_are_appended() {
        let enc = encoder(Format::Cef, SyslogStyle::None, Framing::OctetCounting);
        let mut out = b"previous".to_vec();
        enc.encode(&event(SEARCH), &mut out);
        assert!(out.starts_with(b"previous"));
        let msg = counted(std::str::from_utf8(&out[8..]).unwrap());
        assert!(msg.starts_with("CEF:0|"));
    }
}
