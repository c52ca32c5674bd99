//! The Audit Log's server-side CEF export (`Accept: text/x-cef`), one event a line:
//! `CEF:0|N/A|N/A|N/A|SearchIssued|[]|0| ActorId=... ActorName=... ActorIP=...
//! ActorAgent=... EventTime=...`, read back into the API's JSON object so that c42fwd
//! encodes it with its own mapping like a live event.
//!
//! The event type is the fifth header field (PascalCase). Extension values are
//! unescaped (`\\`, `\=`, `\n`, `\r`); Code42's own sample does not escape them, so a key
//! starts only where a space is followed by a PascalCase word and an unescaped `=`.
//! What the CEF export lacks against the JSON is listed in `docs/replay-formats.md`.

use super::json::item_of;
use super::{next_line, Item, Parser, Rejected, Source};
use crate::event::SourceKind;

pub(super) struct Cef {
    src: Source,
    line: u64,
    buf: Vec<u8>,
    json: String,
}

impl Cef {
    pub(super) fn new(src: Source) -> Self {
        Cef {
            src,
            line: 0,
            buf: Vec::with_capacity(4096),
            json: String::with_capacity(4096),
        }
    }
}

impl Parser for Cef {
    fn next_item(&mut self) -> Option<Result<Item, (Option<u64>, String)>> {
        let bytes = match next_line(&mut self.src, &mut self.buf, &mut self.line)? {
            Ok(bytes) => bytes,
            Err(e) => return Some(Err(e)),
        };
        let line = self.line;
        let reject = |reason: String| {
            Some(Ok(Item::Rejected(Rejected {
                line,
                reason,
                raw: String::from_utf8_lossy(bytes).into_owned(),
            })))
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => return reject(format!("not valid utf-8: {e}")),
        };
        self.json.clear();
        if let Err(reason) = to_json(text, &mut self.json) {
            return reject(reason);
        }
        Some(Ok(
            match item_of(SourceKind::AuditLog, self.json.clone(), line) {
                Item::Rejected(mut r) => {
                    r.raw = text.to_string();
                    Item::Rejected(r)
                }
                item => item,
            },
        ))
    }
}

/// The extension keys of the export and the API fields they hold, in the order of the
/// API's JSON.
const KEYS: &[(&str, &str)] = &[
    ("ActorId", "actorId"),
    ("ActorName", "actorName"),
    ("ActorAgent", "actorAgent"),
    ("ActorIP", "actorIpAddress"),
    ("ActorIpAddress", "actorIpAddress"),
    ("ActorType", "actorType"),
    ("EventTime", "timestamp"),
];

/// Splits the CEF header off `line`: its seven fields (unescaped) and the extension.
fn header(line: &str) -> Result<(Vec<String>, &str), String> {
    let start = line
        .find("CEF:")
        .ok_or_else(|| "no CEF: header".to_string())?;
    let line = &line[start..];
    let mut fields = Vec::with_capacity(7);
    let mut cur = String::new();
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, n)) => cur.push(n),
                None => cur.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut cur));
                if fields.len() == 7 {
                    return Ok((fields, &line[i + 1..]));
                }
            }
            c => cur.push(c),
        }
    }
    Err(format!(
        "the CEF header has {} of its 8 |-separated parts",
        fields.len() + 1
    ))
}

/// The `key=value` pairs of a CEF extension, values unescaped.
fn extension(ext: &str) -> Vec<(&str, String)> {
    let b = ext.as_bytes();
    // Where each key starts: the first non-space, or after a space, a PascalCase word
    // followed by an unescaped '='.
    let key_at = |i: usize| -> Option<usize> {
        if !b.get(i).is_some_and(u8::is_ascii_uppercase) {
            return None;
        }
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        (b.get(j) == Some(&b'=')).then_some(j)
    };
    let mut starts = Vec::new();
    let first = b.iter().position(|c| *c != b' ').unwrap_or(b.len());
    if let Some(eq) = key_at(first) {
        starts.push((first, eq));
    }
    for i in first..b.len() {
        if b[i] == b' ' && (i == 0 || b[i - 1] != b'\\') {
            if let Some(eq) = key_at(i + 1) {
                if starts.last().map_or(true, |(_, e)| *e < i) {
                    starts.push((i + 1, eq));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (n, (k, eq)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(b.len(), |(next, _)| next - 1);
        let raw = &ext[eq + 1..end.max(eq + 1)];
        out.push((&ext[*k..*eq], unescape(raw)));
    }
    out
}

fn unescape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            s.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => s.push('\n'),
            Some('r') => s.push('\r'),
            Some(n) => s.push(n),
            None => s.push('\\'),
        }
    }
    s
}

fn member(out: &mut String, key: &str, value: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    out.push_str(&serde_json::to_string(value).expect("a string serializes"));
}

/// The API's JSON object of one CEF line, into `out`.
fn to_json(line: &str, out: &mut String) -> Result<(), String> {
    let (fields, ext) = header(line)?;
    let ty = [&fields[4], &fields[5]]
        .into_iter()
        .find(|f| !f.is_empty() && f.as_str() != "[]")
        .ok_or_else(|| "the CEF header names no event type".to_string())?;
    let pairs = extension(ext);
    if !pairs.iter().any(|(k, _)| *k == "EventTime") {
        return Err("no EventTime in the CEF extension".to_string());
    }
    out.push('{');
    member(out, "type$", &super::csv::type_tag(ty));
    for (cef_key, api_key) in KEYS {
        if let Some((_, v)) = pairs.iter().find(|(k, _)| k == cef_key) {
            member(out, api_key, v);
        }
    }
    for (k, v) in &pairs {
        if k.eq_ignore_ascii_case("Success") {
            match v.as_str() {
                "true" => out.push_str(",\"success\":true"),
                "false" => out.push_str(",\"success\":false"),
                _ => return Err(format!("Success: {v:?} is not true or false")),
            }
        } else if !KEYS.iter().any(|(c, _)| c == k) {
            // A key of no known meaning: kept under its own name, lower camel case.
            let mut name = k.to_string();
            if let Some(f) = name.get_mut(..1) {
                f.make_ascii_lowercase();
            }
            member(out, &name, v);
        }
    }
    out.push('}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescaped_values_with_spaces_and_escaped_ones_split_at_the_keys() {
        let got = extension(" ActorId=42 ActorIP= ActorAgent=Mozilla/5.0 (X11; Linux x86_64) a=b rv:1 EventTime=2024-01-01T00:00:00Z");
        assert_eq!(
            got,
            [
                ("ActorId", "42".to_string()),
                ("ActorIP", String::new()),
                (
                    "ActorAgent",
                    "Mozilla/5.0 (X11; Linux x86_64) a=b rv:1".to_string()
                ),
                ("EventTime", "2024-01-01T00:00:00Z".to_string()),
            ]
        );
        let got = extension(r"ActorName=a\=b c\\ Fake\=x\nline EventTime=t");
        assert_eq!(got[0], ("ActorName", "a=b c\\ Fake=x\nline".to_string()));
        assert_eq!(got[1], ("EventTime", "t".to_string()));
    }

    #[test]
    fn lines_become_the_api_json() {
        let mut out = String::new();
        to_json(
            "CEF:0|N/A|N/A|N/A|SearchIssued|[]|0| ActorId=910 ActorIP= ActorAgent=curl/8 (x) EventTime=2020-08-13T15:52:40.240585Z",
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"type$":"audit_log::search_issued/1","actorId":"910","actorAgent":"curl/8 (x)","actorIpAddress":"","timestamp":"2020-08-13T15:52:40.240585Z"}"#
        );
        let mut out = String::new();
        let e = to_json("CEF:0|N/A|N/A|N/A|LoggedIn|[]|0| ActorId=1", &mut out).unwrap_err();
        assert_eq!(e, "no EventTime in the CEF extension");
        let e = to_json("CEF:0|N/A|N/A|N/A|LoggedIn", &mut out).unwrap_err();
        assert_eq!(e, "the CEF header has 5 of its 8 |-separated parts");
    }
}
