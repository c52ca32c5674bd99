//! Golden-file tests: every fixture event of `tests/fixtures/<data set>/*.json` (Audit
//! Log in `audit/`, Alerts in `alerts/`, Directory Sync Log in `sync_log/`, Sessions in
//! `sessions/`) is encoded as
//! CEF (RFC 5424 header, LF framing), as normalized JSON (no header, LF framing), as
//! LEEF 2.0 (RFC 5424 header, LF framing) and as LEEF 1.0 (no header, LF framing), and
//! compared byte for byte with `tests/golden/<fixture>.cef` / `.json` / `.leef` /
//! `.leef1` (audit fixtures) or `tests/golden/<data set>/<fixture>.*` (the others).
//!
//! `UPDATE_GOLDEN=1 cargo test --lib golden` rewrites the golden files; review the diff
//! before committing it, it is the visible record of every change to the output.

use super::{Encoder, EncoderOptions, Format, Framing, SyslogStyle};
use crate::event::{Event, SourceKind};
use chrono::DateTime;
use serde_json::value::RawValue;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (fixture directory, data set, golden directory), under the crate root.
const SETS: [(&str, SourceKind, &str); 5] = [
    ("tests/fixtures/audit", SourceKind::AuditLog, "tests/golden"),
    (
        "tests/fixtures/alerts",
        SourceKind::Alerts,
        "tests/golden/alerts",
    ),
    (
        "tests/fixtures/sync_log",
        SourceKind::SyncLog,
        "tests/golden/sync_log",
    ),
    (
        "tests/fixtures/sessions",
        SourceKind::Sessions,
        "tests/golden/sessions",
    ),
    (
        "tests/fixtures/file_events",
        SourceKind::FileEvents,
        "tests/golden/file_events",
    ),
];

/// A file event's members as the normalizer flattens them: objects with members become
/// dotted keys, anything else (an empty object included) is a leaf.
pub(super) fn flattened(v: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    fn walk(
        prefix: &str,
        v: &serde_json::Value,
        depth: usize,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        match v.as_object() {
            Some(o) if !o.is_empty() && depth < 6 => {
                for (k, val) in o {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, val, depth + 1, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned(), v.clone());
            }
        }
    }
    let mut out = serde_json::Map::new();
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            walk(k, val, 0, &mut out);
        }
    }
    out
}

/// Every golden output: (extension, format, syslog header).
const OUTPUTS: [(&str, Format, SyslogStyle); 4] = [
    ("cef", Format::Cef, SyslogStyle::Rfc5424),
    ("json", Format::JsonNormalized, SyslogStyle::None),
    ("leef", Format::Leef2, SyslogStyle::Rfc5424),
    ("leef1", Format::Leef1, SyslogStyle::None),
];

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = root().join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

/// The event as a poller would build it. `occurred` is a fixed instant, so the golden
/// files show that the record's time comes from the event's own time field and that
/// malformed events fall back to `occurred`.
fn fixture_event(path: &Path, kind: SourceKind) -> Event {
    let text = std::fs::read_to_string(path).unwrap();
    let raw =
        RawValue::from_string(text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let occurred = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    Event::new(kind, raw, occurred)
}

fn encoder(format: Format, syslog: SyslogStyle) -> Encoder {
    Encoder::new(EncoderOptions {
        format,
        syslog,
        framing: Framing::Lf,
        facility: 13,
        hostname: "fwd01.example.com".into(),
        app_name: "c42fwd".into(),
    })
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn golden_files_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    let mut expected_files = Vec::new();
    for (fixture_dir, kind, golden_dir) in SETS {
        let fixtures = fixtures(fixture_dir);
        assert!(fixtures.len() >= 6, "{fixture_dir}: fixtures missing");
        for path in &fixtures {
            let event = fixture_event(path, kind);
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            for (ext, format, syslog) in OUTPUTS {
                let mut out = Vec::new();
                encoder(format, syslog).encode(&event, &mut out);
                let golden = root().join(golden_dir).join(format!("{stem}.{ext}"));
                expected_files.push(golden.clone());
                if update {
                    std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
                    std::fs::write(&golden, &out).unwrap();
                    continue;
                }
                match std::fs::read(&golden) {
                    Ok(want) if want == out => {}
                    Ok(want) => failures.push(format!(
                        "{}:\n  want {}\n  got  {}",
                        golden.display(),
                        String::from_utf8_lossy(&want).trim_end(),
                        String::from_utf8_lossy(&out).trim_end()
                    )),
                    Err(e) => failures.push(format!("{}: {e}", golden.display())),
                }
            }
        }
    }
    // A golden file without a fixture is a test that silently stopped running.
    let mut present = Vec::new();
    files_under(&root().join("tests/golden"), &mut present);
    for p in present {
        if !expected_files.contains(&p) {
            failures.push(format!("{}: no fixture produces it", p.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "golden files differ (UPDATE_GOLDEN=1 rewrites them):\n{}",
        failures.join("\n")
    );
}

/// The keys normalization takes out of `fields` when their value is understood.
fn common_keys(kind: SourceKind) -> &'static [&'static str] {
    match kind {
        SourceKind::AuditLog => &[
            "type$",
            "timestamp",
            "actorId",
            "actorName",
            "actorType",
            "actorAgent",
            "actorIpAddress",
            "success",
        ],
        SourceKind::Alerts => &["type$", "type", "name", "createdAt", "actor", "actorId"],
        SourceKind::SyncLog => &["action", "logEventTimeStamp"],
        SourceKind::Sessions => &["lastUpdated", "actorId"],
        SourceKind::FileEvents => &["@timestamp", "user.email", "user.id", "source.ip"],
    }
}

/// The normalized JSON golden files are JSON, one line each, and keep every fixture
/// key somewhere (common keys taken, the others under `fields`).
#[test]
fn normalized_goldens_keep_every_key() {
    let json = encoder(Format::JsonNormalized, SyslogStyle::None);
    for (dir, kind, _) in SETS {
        for path in fixtures(dir) {
            let event = fixture_event(&path, kind);
            let mut out = Vec::new();
            json.encode(&event, &mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            // A lone UTF-16 surrogate escape (`\ud800`) is valid JSON text that serde_json's
            // `Value` refuses; the output passes it through exactly as the API sent it, so
            // such a fixture cannot be compared through `Value`.
            let Ok(original) = serde_json::from_str::<serde_json::Value>(event.json()) else {
                assert!(event.json().contains("\\ud800"), "{}", path.display());
                assert!(String::from_utf8_lossy(&out).contains("\\ud800"));
                continue;
            };
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let Some(obj) = original.as_object() else {
                assert_eq!(v["fields"]["_raw"], original);
                continue;
            };
            let flat = flattened(&original);
            let obj = if kind == SourceKind::FileEvents {
                &flat
            } else {
                obj
            };
            for (k, val) in obj {
                if !common_keys(kind).contains(&k.as_str()) {
                    // serde_json keeps the last of repeated keys, as the output does.
                    assert_eq!(&v["fields"][k], val, "{}: {k}", path.display());
                }
            }
        }
    }
}

/// Every LEEF golden record reads back into attributes whose keys are unique, and every
/// CEF / LEEF golden record is one line (the hostile fixtures try hard to break both).
#[test]
fn leef_goldens_have_unique_keys_and_one_line() {
    for (dir, kind, golden_dir) in SETS {
        for path in fixtures(dir) {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            for ext in ["cef", "leef", "leef1"] {
                let p = root().join(golden_dir).join(format!("{stem}.{ext}"));
                let Ok(text) = std::fs::read_to_string(&p) else {
                    continue; // reported by golden_files_match
                };
                let body = text.strip_suffix('\n').expect("LF-framed");
                assert!(!body.contains(['\n', '\r']), "{}", p.display());
                if ext == "cef" {
                    continue;
                }
                let leef = &body[body.find("LEEF:").expect("LEEF header")..];
                let attrs = leef
                    .splitn(if ext == "leef" { 7 } else { 6 }, '|')
                    .last()
                    .unwrap();
                let mut keys = std::collections::HashSet::new();
                for a in attrs.split('\t') {
                    let (k, _) = a.split_once('=').expect("key=value");
                    assert!(keys.insert(k), "{}: {k} twice", p.display());
                }
                assert!(
                    keys.contains("eventTimestamp"),
                    "{} ({kind:?})",
                    p.display()
                );
            }
        }
    }
}
