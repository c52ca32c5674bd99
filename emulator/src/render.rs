//! Response bodies made of events: JSON, CSV and server-side CEF, produced in chunks.
//!
//! Owns the layout of each output format and the chunked body that walks a
//! [`Selection`] lazily, so a 100,000-event export is generated while it is sent and
//! never held whole. It does not decide which events are selected, nor HTTP status.

use super::json;
use super::query::Selection;
use bytes::Bytes;
use std::convert::Infallible;

/// Roughly how much text one body chunk carries.
const CHUNK: usize = 64 * 1024;

/// The output format a client asked for with `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
    Cef,
}

impl Format {
    pub(crate) fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("text/csv") => Format::Csv,
            Some(a) if a.contains("text/x-cef") => Format::Cef,
            _ => Format::Json,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Cef => "text/x-cef; charset=utf-8",
        }
    }
}

/// The CSV header line. Type-specific fields go, as a JSON object, in `Details`.
pub(crate) const CSV_HEADER: &str =
    "Type,Timestamp,ActorName,ActorId,ActorIpAddress,ActorAgent,ActorType,Success,Details\n";

/// The header line of the console's CSV export: the columns of the console's Audit Log
/// list, named as the console names them. Code42 documents the list, not the export's
/// exact header; this is the shape c42fwd's replay documents reading.
pub(crate) const CONSOLE_CSV_HEADER: &str =
    "Date observed,Username,Event type,IP address,User agent,User type\n";

/// Builds the text after the last event, given how many events were written.
pub(crate) type Suffix = Box<dyn FnOnce(u64) -> String + Send>;

/// A body that renders up to `limit` selected events from `pos` on, in chunks.
pub(crate) struct EventChunks {
    sel: Selection,
    pos: u64,
    remaining: u64,
    written: u64,
    format: Format,
    prefix: Option<String>,
    suffix: Option<Suffix>,
}

impl EventChunks {
    pub(crate) fn new(
        sel: Selection,
        skip: u64,
        limit: u64,
        format: Format,
        prefix: String,
        suffix: Suffix,
    ) -> Self {
        let pos = sel.seek(skip);
        EventChunks {
            sel,
            pos,
            remaining: limit,
            written: 0,
            format,
            prefix: Some(prefix),
            suffix: Some(suffix),
        }
    }

    /// The whole body at once (tests and small answers).
    #[cfg(test)]
    pub(crate) fn collect_string(self) -> String {
        let mut s = String::new();
        for chunk in self.flatten() {
            s.push_str(std::str::from_utf8(&chunk).unwrap_or_default());
        }
        s
    }
}

impl Iterator for EventChunks {
    type Item = Result<Bytes, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        let suffix_left = self.suffix.is_some();
        if !suffix_left {
            return None;
        }
        let mut out = self.prefix.take().unwrap_or_default();
        while out.len() < CHUNK && self.remaining > 0 {
            let Some(i) = self.sel.next(&mut self.pos) else {
                self.remaining = 0;
                break;
            };
            if self.format == Format::Json && self.written > 0 {
                out.push(',');
            }
            write_event(self.sel.generator(), i, self.format, &mut out);
            self.written += 1;
            self.remaining -= 1;
        }
        if self.remaining == 0 {
            if let Some(suffix) = self.suffix.take() {
                out.push_str(&suffix(self.written));
            }
        }
        Some(Ok(Bytes::from(out)))
    }
}

pub(crate) fn write_event(g: &super::events::Generator, i: u64, format: Format, out: &mut String) {
    match format {
        Format::Json => g.render(i, out),
        Format::Csv => {
            let p = g.parts(i);
            for (n, field) in [
                p.pascal,
                &p.timestamp,
                p.actor_name,
                p.actor_id,
                p.ip,
                &p.agent,
                p.actor_type,
                if p.success { "true" } else { "false" },
                &p.details,
            ]
            .into_iter()
            .enumerate()
            {
                if n > 0 {
                    out.push(',');
                }
                csv_field(out, field);
            }
            out.push('\n');
        }
        Format::Cef => {
            // The shape of Code42's server-side CEF sample (`docs/api.md`): vendor, product and
            // version "N/A", the type as name, "[]" as class id, severity 0, and a
            // leading space before the extension. Unlike that sample we escape
            // extension values, so that a value cannot start a new record.
            let p = g.parts(i);
            out.push_str("CEF:0|N/A|N/A|N/A|");
            out.push_str(p.pascal);
            out.push_str("|[]|0| ActorId=");
            cef_value(out, p.actor_id);
            out.push_str(" ActorName=");
            cef_value(out, p.actor_name);
            out.push_str(" ActorIP=");
            cef_value(out, p.ip);
            out.push_str(" ActorAgent=");
            cef_value(out, &p.agent);
            out.push_str(" EventTime=");
            out.push_str(&p.timestamp);
            out.push('\n');
        }
    }
}

/// One row of the console's CSV export (Administration > Audit Log > Export), under
/// [`CONSOLE_CSV_HEADER`]. Never served by the API: rendered for tests and demos.
pub(crate) fn write_console_csv_row(g: &super::events::Generator, i: u64, out: &mut String) {
    let p = g.parts(i);
    // `2024-05-01 12:00:00.123456`: the time as the console shows it, UTC
    // without a zone.
    let date = p.timestamp.replacen('T', " ", 1);
    let date = date.strip_suffix('Z').unwrap_or(&date);
    let user_type = match p.actor_type {
        "USER" => "User",
        "SUPPORT_USER" => "Code42 support user",
        "API_CLIENT" => "API client",
        "SYSTEM" => "System",
        _ => "Unknown",
    };
    for (n, field) in [date, p.actor_name, p.display, p.ip, &p.agent, user_type]
        .into_iter()
        .enumerate()
    {
        if n > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push('\n');
}

/// RFC 4180: quote when the field holds a comma, quote, CR or LF; double the quotes.
pub(crate) fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// CEF extension escaping: `\`, `=`, CR and LF.
fn cef_value(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// `,"paginationRangeStartIndex":s,"paginationRangeEndIndex":e}` for a page from `start`.
pub(crate) fn pagination_suffix(start: u64) -> Suffix {
    Box::new(move |written| {
        let mut s = String::from("],\"paginationRangeStartIndex\":");
        json::push_u64(&mut s, start);
        s.push_str(",\"paginationRangeEndIndex\":");
        json::push_u64(&mut s, start + written);
        s.push('}');
        s
    })
}

/// A fixed closing text.
pub(crate) fn fixed_suffix(text: &'static str) -> Suffix {
    Box::new(move |_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Generator;
    use crate::query::parse_query;
    use crate::timeline::{Timeline, NANOS_PER_SEC};
    use std::sync::Arc;

    fn selection(n: u64) -> Selection {
        let t0 = 1_700_000_000 * NANOS_PER_SEC;
        let g = Arc::new(Generator::new(
            4,
            Timeline::new(4, t0, n, 600 * NANOS_PER_SEC, 0.0, 0),
        ));
        let q = parse_query(b"{}", &g).unwrap();
        Selection::new(g, &q, t0)
    }

    #[test]
    fn json_body_streams_in_chunks_and_parses() {
        let body = EventChunks::new(
            selection(3_000),
            0,
            u64::MAX,
            Format::Json,
            "{\"events\":[".into(),
            fixed_suffix("]}"),
        );
        let chunks: Vec<Bytes> = body.map(|c| c.unwrap()).collect();
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        let text: Vec<u8> = chunks.concat();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 3_000);
    }

    #[test]
    fn pages_report_their_range() {
        let body = EventChunks::new(
            selection(250),
            200,
            100,
            Format::Json,
            "{\"events\":[".into(),
            pagination_suffix(200),
        );
        let v: serde_json::Value = serde_json::from_str(&body.collect_string()).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 50);
        assert_eq!(v["paginationRangeStartIndex"], 200);
        assert_eq!(v["paginationRangeEndIndex"], 250);
        let empty = EventChunks::new(
            selection(0),
            0,
            10,
            Format::Json,
            "{\"events\":[".into(),
            pagination_suffix(0),
        );
        let v: serde_json::Value = serde_json::from_str(&empty.collect_string()).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn csv_and_cef_keep_one_record_per_line() {
        let csv = EventChunks::new(
            selection(5_000),
            0,
            u64::MAX,
            Format::Csv,
            CSV_HEADER.into(),
            fixed_suffix(""),
        )
        .collect_string();
        let mut records = 0;
        let mut in_quotes = false;
        for c in csv.chars() {
            match c {
                '"' => in_quotes = !in_quotes,
                '\n' if !in_quotes => records += 1,
                _ => {}
            }
        }
        assert_eq!(records, 5_001, "header + one record per event");
        let cef = EventChunks::new(
            selection(5_000),
            0,
            u64::MAX,
            Format::Cef,
            String::new(),
            fixed_suffix(""),
        )
        .collect_string();
        assert_eq!(cef.lines().count(), 5_000);
        assert!(cef
            .lines()
            .all(|l| l.starts_with("CEF:0|N/A|N/A|N/A|") && l.contains(" EventTime=")));
    }
}
