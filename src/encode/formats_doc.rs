//! Keeps `docs/formats.md` in step with the code: the generated tables (between
//! `<!-- BEGIN GENERATED: name -->` and `<!-- END GENERATED: name -->`) must equal what
//! `cef_map` and `leef` render now, and every catalog type must be listed.
//! `UPDATE_DOCS=1 cargo test --lib formats_doc` rewrites the generated parts.

use super::cef_map::{
    render_alert_keys, render_alert_severities, render_alert_types, render_common_table,
    render_session_keys, render_session_states, render_sync_log_actions, render_sync_log_rules,
    render_type_table,
};
use super::leef;
use crate::normalize::catalog::AUDIT_EVENT_TYPES;
use std::path::PathBuf;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/formats.md")
}

/// Replaces the body of every generated block; returns the new text and the names of
/// the blocks it found.
fn regenerate(doc: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut found = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find("<!-- BEGIN GENERATED: ") {
        let after = &rest[start..];
        let name_end = after.find(" -->").expect("unterminated BEGIN marker");
        let name = &after["<!-- BEGIN GENERATED: ".len()..name_end];
        let end_marker = format!("<!-- END GENERATED: {name} -->");
        let end = after.find(&end_marker).expect("missing END marker");
        let body = match name {
            "event-types" => render_type_table(),
            "common-rules" => render_common_table(),
            "alert-types" => render_alert_types(),
            "alert-severities" => render_alert_severities(),
            "alert-keys" => render_alert_keys(),
            "sync-log-actions" => render_sync_log_actions(),
            "sync-log-rules" => render_sync_log_rules(),
            "leef-common-keys" => leef::render_keys(leef::COMMON_KEYS),
            "leef-audit-keys" => leef::render_keys(leef::AUDIT_KEYS),
            "leef-alert-keys" => leef::render_keys(leef::ALERT_KEYS),
            "leef-sync-log-keys" => leef::render_keys(leef::SYNC_LOG_KEYS),
            "session-states" => render_session_states(),
            "session-keys" => render_session_keys(),
            "leef-session-keys" => leef::render_keys(leef::SESSION_KEYS),
            "file-event-actions" => super::file_events_map::render_file_event_actions(),
            "file-event-severities" => super::file_events_map::render_file_event_severities(),
            "file-event-keys" => super::file_events_map::render_file_event_keys(),
            "leef-file-event-keys" => leef::render_keys(leef::FILE_EVENT_KEYS),
            other => panic!("unknown generated block {other}"),
        };
        out.push_str(&rest[..start]);
        out.push_str(&after[..name_end + 4]);
        out.push('\n');
        out.push_str(&body);
        out.push_str(&end_marker);
        rest = &after[end + end_marker.len()..];
        found.push(name.to_owned());
    }
    out.push_str(rest);
    (out, found)
}

#[test]
fn formats_doc_is_in_sync_with_the_mapping() {
    let doc = std::fs::read_to_string(path()).expect("docs/formats.md");
    let (fresh, found) = regenerate(&doc);
    assert_eq!(
        found,
        [
            "common-rules",
            "event-types",
            "alert-types",
            "alert-severities",
            "alert-keys",
            "sync-log-actions",
            "sync-log-rules",
            "session-states",
            "session-keys",
            "file-event-actions",
            "file-event-severities",
            "file-event-keys",
            "leef-common-keys",
            "leef-audit-keys",
            "leef-alert-keys",
            "leef-sync-log-keys",
            "leef-session-keys",
            "leef-file-event-keys",
        ],
        "generated blocks"
    );
    if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
        std::fs::write(path(), &fresh).unwrap();
        return;
    }
    assert!(
        fresh == doc,
        "docs/formats.md is out of date: run UPDATE_DOCS=1 cargo test --lib formats_doc"
    );
}

#[test]
fn formats_doc_lists_every_event_type() {
    let doc = std::fs::read_to_string(path()).expect("docs/formats.md");
    for t in AUDIT_EVENT_TYPES {
        let row = format!(
            "| `{}` | {} | {} | {} |",
            t.name, t.display, t.severity, t.category
        );
        assert!(
            doc.contains(&row),
            "docs/formats.md does not list {}",
            t.name
        );
    }
}

#[test]
fn regenerate_replaces_only_block_bodies() {
    let doc =
        "a\n<!-- BEGIN GENERATED: common-rules -->\nold\n<!-- END GENERATED: common-rules -->\nb\n";
    let (fresh, found) = regenerate(doc);
    assert_eq!(found, ["common-rules"]);
    assert!(fresh.starts_with("a\n<!-- BEGIN GENERATED: common-rules -->\n| API fields"));
    assert!(fresh.ends_with("<!-- END GENERATED: common-rules -->\nb\n"));
    assert!(!fresh.contains("\nold\n"));
}
