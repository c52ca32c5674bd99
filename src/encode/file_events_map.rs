//! The CEF keys of a file event record: which dotted field (`normalize::file_events`
//! flattens the event) goes to which CEF key.
//!
//! Standard keys where CEF has one (`act`, `fname`, `filePath`, `fsize`, `fileHash`,
//! `fileType`, `shost`, `dhost`, `duser`, `request`, `msg`, `sproc`,
//! `deviceExternalId`; `rt`, `suser`, `suid` and `src` come from the record's time,
//! actor and source address), numbered custom keys for the rest, each labelled with the
//! API field it holds. `cs6` is `details` (every field no key took), as for the other
//! data sets. Owned here: the table; `docs/formats.md` is generated from it.

use super::cef_map::{AlertKey, AlertValue, KeyValue};

const fn k(
    key: &'static str,
    label: Option<(&'static str, &'static str)>,
    value: AlertValue,
    kind: KeyValue,
    limit: usize,
) -> AlertKey {
    AlertKey {
        key,
        label,
        value,
        kind,
        limit,
    }
}

use AlertValue::{Field, FirstUrl, List};
use KeyValue::{Integer, Scalar};

/// The keys of a file event, in the order they are written.
pub const FILE_EVENT_CEF_KEYS: &[AlertKey] = &[
    k("act", None, Field("event.action"), Scalar, 63),
    k("fname", None, Field("file.name"), Scalar, 1023),
    k("filePath", None, Field("file.directory"), Scalar, 1023),
    k("fsize", None, Field("file.sizeInBytes"), Integer, 20),
    k("fileHash", None, Field("file.hash.sha256"), Scalar, 255),
    k("fileType", None, Field("file.category"), Scalar, 1023),
    k("shost", None, Field("source.name"), Scalar, 1023),
    k("dhost", None, Field("destination.name"), Scalar, 1023),
    k(
        "duser",
        None,
        List("destination.email.recipients"),
        Scalar,
        1023,
    ),
    k("request", None, FirstUrl("destination.tabs"), Scalar, 1023),
    k(
        "msg",
        None,
        Field("destination.email.subject"),
        Scalar,
        1023,
    ),
    k("sproc", None, Field("process.executable"), Scalar, 1023),
    k(
        "deviceExternalId",
        None,
        Field("user.deviceUid"),
        Scalar,
        255,
    ),
    k(
        "cs1",
        Some(("cs1Label", "event.id")),
        Field("event.id"),
        Scalar,
        4000,
    ),
    k(
        "cs2",
        Some(("cs2Label", "destination.category")),
        Field("destination.category"),
        Scalar,
        4000,
    ),
    k(
        "cs3",
        Some(("cs3Label", "file.hash.md5")),
        Field("file.hash.md5"),
        Scalar,
        4000,
    ),
    k(
        "cs4",
        Some(("cs4Label", "event.shareType")),
        List("event.shareType"),
        Scalar,
        4000,
    ),
    k(
        "cs5",
        Some(("cs5Label", "event.inserted")),
        Field("event.inserted"),
        Scalar,
        4000,
    ),
    k(
        "flexString1",
        Some(("flexString1Label", "risk.severity")),
        Field("risk.severity"),
        Scalar,
        1023,
    ),
    k(
        "flexString2",
        Some((
            "flexString2Label",
            "destination.removableMedia.serialNumber",
        )),
        Field("destination.removableMedia.serialNumber"),
        Scalar,
        1023,
    ),
    k(
        "cn1",
        Some(("cn1Label", "risk.score")),
        Field("risk.score"),
        Integer,
        20,
    ),
    k(
        "cn2",
        Some(("cn2Label", "destination.removableMedia.capacity")),
        Field("destination.removableMedia.capacity"),
        Integer,
        20,
    ),
];

/// The file event key table of `docs/formats.md`.
pub fn render_file_event_keys() -> String {
    super::cef_map::render_key_table(
        FILE_EVENT_CEF_KEYS
            .iter()
            .map(|k| (k.key, k.label, k.value.describe(), k.kind, k.limit)),
    )
}

/// The file event action table of `docs/formats.md`.
pub fn render_file_event_actions() -> String {
    use crate::normalize::file_events::{
        FILE_EVENT_ACTIONS, FILE_EVENT_CATEGORY, FILE_EVENT_DEFAULT_CLASS_ID,
        FILE_EVENT_DEFAULT_SEVERITY,
    };
    let mut out = String::from(
        "| Device Event Class ID | `event.action` | Legacy `eventType` | Name | Category | Severity without `risk.severity` |\n|---|---|---|---|---|---|\n",
    );
    for a in FILE_EVENT_ACTIONS {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} | {} |\n",
            a.class_id,
            a.name,
            a.legacy.map_or(String::new(), |l| format!("`{l}`")),
            a.display,
            a.category,
            a.severity
        ));
    }
    out.push_str(&format!(
        "| `{FILE_EVENT_DEFAULT_CLASS_ID}` | any other | | the action humanized | {FILE_EVENT_CATEGORY} | {FILE_EVENT_DEFAULT_SEVERITY} |\n"
    ));
    out
}

/// The `risk.severity` table of `docs/formats.md`.
pub fn render_file_event_severities() -> String {
    let mut out = String::from("| `risk.severity` | CEF severity |\n|---|---|\n");
    for (name, v) in crate::normalize::file_events::FILE_EVENT_RISK_SEVERITIES {
        out.push_str(&format!("| `{name}` | {v} |\n"));
    }
    out
}
