//! Top-level JSON arrays of records: `[ {...}, {...} ]`, as a saved list of Audit Log
//! events, alert details or Sync Log entries is (`jq -s`, a script's `json.dump` of a
//! list, a console's "copy as JSON"), pretty-printed over many lines or not.
//!
//! Split while read, like the response bodies (`super::json::Body`), by a byte state
//! machine that knows only strings and nesting: each element of the top-level array is
//! copied out (the line its first byte is on noted) and handed to the same
//! `super::json::item_of` as every JSON input, so an element that is not an object, not
//! JSON or has no usable time is a reject with its line and the reading goes on.
//! Several arrays one after the other (`[...]\n[...]`, pages saved into one file) are
//! read in turn. Memory: one element plus the read buffer.

use super::json::{pump, Copied, Copying, JsonString, Splitter};
use super::{Item, Parser, Source};
use crate::event::SourceKind;
use std::collections::VecDeque;

pub(super) struct Array {
    src: Source,
    st: State,
    finished: bool,
}

/// The splitter's state, apart from the source it reads.
struct State {
    kind: SourceKind,
    /// The line of the byte being read (1-based).
    line: u64,
    /// Inside a top-level array.
    open: bool,
    string: JsonString,
    element: Option<Copying>,
    pending: VecDeque<Item>,
}

impl Array {
    pub(super) fn new(src: Source, kind: SourceKind) -> Self {
        Array {
            src,
            st: State {
                kind,
                line: 1,
                open: false,
                string: JsonString::default(),
                element: None,
                pending: VecDeque::new(),
            },
            finished: false,
        }
    }
}

impl Splitter for State {
    const WHAT: &'static str = "array";
    fn byte(&mut self, b: u8) -> Result<(), String> {
        self.take(b)
    }
    fn pending(&mut self) -> &mut VecDeque<Item> {
        &mut self.pending
    }
    fn line(&self) -> u64 {
        self.line
    }
    fn open(&self) -> bool {
        self.open
    }
}

impl State {
    fn take(&mut self, b: u8) -> Result<(), String> {
        if b == b'\n' {
            self.line += 1;
        }
        if let Some(e) = &mut self.element {
            if let Copied::End(end) = e.take(b, self.line, &mut self.string)? {
                let e = self.element.take().expect("copying an element");
                self.finish(e);
                if end == b']' {
                    self.open = false;
                }
            }
            return Ok(());
        }
        if b.is_ascii_whitespace() {
            return Ok(());
        }
        if !self.open {
            if b != b'[' {
                return Err(format!(
                    "not a json array at line {} (the file started as one)",
                    self.line
                ));
            }
            self.open = true;
            return Ok(());
        }
        match b {
            b']' => self.open = false,
            b',' => {}
            _ => {
                self.element = Some(Copying::start(b, self.line, &mut self.string));
            }
        }
        Ok(())
    }

    /// An element copied out: its event, or why not.
    fn finish(&mut self, e: Copying) {
        self.pending.push_back(e.into_item(self.kind));
    }
}

impl Parser for Array {
    fn next_item(&mut self) -> Option<Result<Item, (Option<u64>, String)>> {
        pump(&mut self.src, &mut self.st, &mut self.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{
        assert_same_as_live, gzip, read_all, records, rejects, tenant, write,
    };
    use super::super::{open, Compression, Format, KindHint};
    use crate::event::SourceKind;

    /// `[`, the records one per line with an indent, `]`: as `jq -s` or a pretty
    /// printer leaves a list of one-line records.
    fn pretty(records: &[String]) -> String {
        format!("[\n  {}\n]\n", records.join(",\n  "))
    }

    #[tokio::test]
    async fn audit_event_arrays_are_the_live_events_on_one_line_pretty_and_compressed() {
        let t = tenant(21, 1_200).await;
        let live = t.audit();
        let compact = format!("[{}]", live.join(","));
        let lines = pretty(&live);
        // Pages saved one after the other.
        let (a, b) = live.split_at(500);
        let two = format!("{}{}", pretty(a), pretty(b));
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes, compression) in [
            (
                "compact.json",
                compact.clone().into_bytes(),
                Compression::None,
            ),
            ("pretty.json", lines.clone().into_bytes(), Compression::None),
            ("two.json", two.into_bytes(), Compression::None),
            ("pretty.json.gz", gzip(lines.as_bytes()), Compression::Gzip),
            (
                "compact.json.zst",
                zstd::encode_all(compact.as_bytes(), 3).unwrap(),
                Compression::Zstd,
            ),
        ] {
            let (o, items, err) = read_all(&write(&dir, name, &bytes), KindHint::Auto);
            assert!(err.is_none(), "{name}: {err:?}");
            assert_eq!(o.format, Format::AuditJsonArray, "{name}");
            assert_eq!(o.compression, compression, "{name}");
            assert!(rejects(&items).is_empty(), "{name}: {:?}", rejects(&items));
            let got = records(&items);
            assert_same_as_live(&got, &live, SourceKind::AuditLog);
            if name == "pretty.json" {
                // Each record's line is the line its first byte is on.
                let want: Vec<u64> = (2..2 + live.len() as u64).collect();
                assert_eq!(got.iter().map(|r| r.line).collect::<Vec<_>>(), want);
            }
        }
    }

    #[tokio::test]
    async fn alert_and_sync_log_arrays_are_the_live_records() {
        let t = tenant(22, 10).await;
        let alerts = t.emu.alerts_between(t.start, t.end);
        let sync = t.emu.sync_log_between(t.start, t.end);
        assert!(alerts.len() >= 20 && sync.len() > 100);
        let dir = tempfile::tempdir().unwrap();
        for (name, live, format, kind) in [
            (
                "a.json",
                &alerts,
                Format::AlertsJsonArray,
                SourceKind::Alerts,
            ),
            (
                "s.json",
                &sync,
                Format::SyncLogJsonArray,
                SourceKind::SyncLog,
            ),
        ] {
            let (o, items, err) =
                read_all(&write(&dir, name, pretty(live).as_bytes()), KindHint::Auto);
            assert!(err.is_none(), "{name}: {err:?}");
            assert_eq!(o.format, format, "{name}");
            let got = records(&items);
            assert_same_as_live(&got, live, kind);
            if kind == SourceKind::Alerts {
                // The observation data is expanded as the alerts source does it.
                assert!(got.iter().any(|r| r.event.json().contains("\"data\":{")));
            }
        }
    }

    #[test]
    fn bad_elements_are_rejected_with_their_line_and_the_rest_is_read() {
        let text = r#"[
  {
    "type$": "audit_log::logged_in/1",
    "actorId": "1",
    "actorName": "a, \"b\" ]} [",
    "timestamp": "2024-01-02T03:04:05.123Z",
    "nested": {"list": [1, {"x": "]"}]}
  },
  "not an object",
  {"type$": "audit_log::logged_in/1", "actorId": "2"},
  {"type$": "audit_log::logged_in/1", "actorId": tru},
  42,
  {"type$": "audit_log::logged_in/1", "actorId": "3",
   "timestamp": "2024-01-02T03:04:06Z"}
]
[{"type$": "audit_log::logged_in/1", "actorId": "4", "timestamp": "2024-01-02T03:04:07Z"}]
"#;
        let dir = tempfile::tempdir().unwrap();
        let (o, items, err) = read_all(&write(&dir, "list.json", text.as_bytes()), KindHint::Auto);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(o.format, Format::AuditJsonArray);
        let got = records(&items);
        assert_eq!(got.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 13, 16]);
        assert!(got[0].event.json().contains(r#""a, \"b\" ]} [""#));
        assert!(
            got[0].event.json().ends_with("]}\n  }"),
            "{}",
            got[0].event.json()
        );
        let bad = rejects(&items);
        let lines: Vec<(u64, &str)> = bad.iter().map(|r| (r.line, r.raw.as_str())).collect();
        assert_eq!(
            lines,
            [
                (9, "\"not an object\""),
                (10, r#"{"type$": "audit_log::logged_in/1", "actorId": "2"}"#),
                (11, r#"{"type$": "audit_log::logged_in/1", "actorId": tru}"#),
                (12, "42"),
            ]
        );
        assert_eq!(bad[0].reason, "not a json object");
        assert_eq!(bad[1].reason, "no timestamp field");
        assert!(bad[2].reason.starts_with("not json"), "{}", bad[2].reason);
        assert_eq!(bad[3].reason, "not a json object");
    }

    #[test]
    fn an_array_cut_short_or_followed_by_something_else_ends_with_an_error_after_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let cut = "[{\"actorId\":\"1\",\"timestamp\":\"2024-01-02T03:04:05Z\"},\n{\"actorId\":\"2\",\"timest";
        let path = write(&dir, "cut.json", cut.as_bytes());
        let (_, items, err) = read_all(&path, KindHint::Kind(SourceKind::AuditLog));
        assert_eq!(records(&items).len(), 1);
        let err = err.expect("an error");
        assert_eq!(err.name, path.display().to_string());
        assert_eq!(err.line, Some(2));
        assert!(err.reason.contains("ends early"), "{err}");

        let then = "[{\"actorId\":\"1\",\"timestamp\":\"2024-01-02T03:04:05Z\"}]\n\nnope\n";
        let (_, items, err) = read_all(
            &write(&dir, "then.json", then.as_bytes()),
            KindHint::Kind(SourceKind::AuditLog),
        );
        assert_eq!(records(&items).len(), 1);
        let err = err.expect("an error");
        assert_eq!(err.line, Some(3));
        assert!(err.reason.contains("not a json array"), "{err}");
    }

    /// An array that never ends: its records come out while it is read (it is never
    /// held whole).
    #[test]
    fn an_endless_array_gives_its_records_as_it_is_read() {
        struct Endless {
            n: u64,
            pending: Vec<u8>,
        }
        impl std::io::Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.pending.is_empty() {
                    let lead = if self.n == 0 { "[\n" } else { ",\n" };
                    self.pending = format!(
                        "{lead}  {{\"type$\": \"audit_log::logged_in/1\", \"actorId\": \"{}\", \"timestamp\": \"2024-01-02T03:04:05Z\"}}",
                        self.n
                    )
                    .into_bytes();
                    self.n += 1;
                }
                let k = buf.len().min(self.pending.len());
                buf[..k].copy_from_slice(&self.pending[..k]);
                self.pending.drain(..k);
                Ok(k)
            }
        }
        let o = super::super::open_reader(
            "-",
            Box::new(Endless {
                n: 0,
                pending: Vec::new(),
            }),
            KindHint::Auto,
        )
        .unwrap();
        assert_eq!(o.format, Format::AuditJsonArray);
        let got: Vec<u64> = o
            .take(100_000)
            .map(|i| match i.unwrap() {
                super::super::Item::Record(r) => r.line,
                super::super::Item::Rejected(r) => panic!("{r:?}"),
            })
            .collect();
        assert_eq!(got.len(), 100_000);
        assert_eq!(got[99_999], 100_001);
    }

    #[test]
    fn what_the_first_element_leaves_open_the_source_kind_or_the_name_decides() {
        let dir = tempfile::tempdir().unwrap();
        let f = |name: &str, text: &str, hint| open(&write(&dir, name, text.as_bytes()), hint);
        assert_eq!(
            f("sync-log.json", "[ ]", KindHint::Auto).unwrap().format,
            Format::SyncLogJsonArray
        );
        assert_eq!(
            f("x.json", "[]", KindHint::Kind(SourceKind::Alerts))
                .unwrap()
                .format,
            Format::AlertsJsonArray
        );
        assert_eq!(
            f("x.json", "[1, 2]", KindHint::Kind(SourceKind::AuditLog))
                .unwrap()
                .format,
            Format::AuditJsonArray
        );
        let err = f("x.json", "[1, 2]", KindHint::Auto).unwrap_err();
        assert!(err.reason.contains("first element is no object"), "{err}");
        assert!(err.reason.contains("tried: "), "{err}");
        let err = f("x.json", "[{\"id\": 1}]", KindHint::Auto).unwrap_err();
        assert!(err.reason.contains("no known shape"), "{err}");
        let err = f("x.json", "[{\"events\": []}]", KindHint::Auto).unwrap_err();
        assert!(err.reason.contains("response bodies"), "{err}");
        // Content that tells is not overridden.
        let audit =
            "[{\"type$\":\"audit_log::logged_in/1\",\"timestamp\":\"2024-01-02T03:04:05Z\"}]";
        let err = f("x.json", audit, KindHint::Kind(SourceKind::SyncLog)).unwrap_err();
        assert!(err.reason.contains("holds audit_log records"), "{err}");
    }
}
