//! Golden-file tests: every fixture event in `tests/fixtures/audit/*.json` is encoded as
//! CEF (RFC 5424 header, LF framing) and as normalized JSON (no header, LF framing), and
//! compared byte for byte with `tests/golden/<fixture>.cef` / `.json`.
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

fn fixtures() -> Vec<PathBuf> {
    let dir = root().join("tests/fixtures/audit");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

/// The event as a poller would build it. `occurred` is a fixed instant, so the golden
/// files show that the record's time comes from the event's own `timestamp` and that
/// malformed events fall back to `occurred`.
fn fixture_event(path: &Path) -> Event {
    let text = std::fs::read_to_string(path).unwrap();
    let raw =
        RawValue::from_string(text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let occurred = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    Event::new(SourceKind::AuditLog, raw, occurred)
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

#[test]
fn golden_files_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cef = encoder(Format::Cef, SyslogStyle::Rfc5424);
    let json = encoder(Format::JsonNormalized, SyslogStyle::None);
    let fixtures = fixtures();
    assert!(fixtures.len() >= 10, "fixtures missing");
    let mut failures = Vec::new();
    let mut expected_files = Vec::new();
    for path in &fixtures {
        let event = fixture_event(path);
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for (enc, ext) in [(&cef, "cef"), (&json, "json")] {
            let mut out = Vec::new();
            enc.encode(&event, &mut out);
            let golden = root().join("tests/golden").join(format!("{stem}.{ext}"));
            expected_files.push(golden.clone());
            if update {
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
    // A golden file without a fixture is a test that silently stopped running.
    for entry in std::fs::read_dir(root().join("tests/golden")).unwrap() {
        let p = entry.unwrap().path();
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

/// The normalized JSON golden files are JSON, one line each, and keep every fixture
/// key somewhere (common keys taken, the others under `fields`).
#[test]
fn normalized_goldens_keep_every_key() {
    let json = encoder(Format::JsonNormalized, SyslogStyle::None);
    for path in fixtures() {
        let event = fixture_event(&path);
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
        for (k, val) in obj {
            let common = [
                "type$",
                "timestamp",
                "actorId",
                "actorName",
                "actorType",
                "actorAgent",
                "actorIpAddress",
                "success",
            ];
            if !common.contains(&k.as_str()) {
                // serde_json keeps the last of repeated keys, as the output does.
                assert_eq!(&v["fields"][k], val, "{}: {k}", path.display());
            }
        }
    }
}
