//! The Alerts data set: the alert types c42fwd knows, how an alert's severities become
//! one CEF / LEEF severity, and the summary of an alert's observations.
//!
//! Owned here: the table of alert `type`s (OpenAPI `RuleType`, `docs/api.md`) with a display
//! name and a category, the two severity scales of an alert (the rule's static
//! `severity` HIGH / MEDIUM / LOW and the events' `riskSeverity`), and
//! [`summarize_observations`], which reads the `observations` array once and counts
//! what a SIEM searches on (files, bytes, exposure types, file names, destinations,
//! sending addresses). Deliberately not here: which output key gets what
//! (`crate::encode`), and reshaping the observations: the record keeps the array
//! exactly as the source handed it over (each `data` already parsed into structure
//! when it was JSON, a string otherwise).
//!
//! **Invariant:** the summary is total like the rest of `normalize`: any value of
//! `observations` (not an array, elements that are not objects, `data` that is a
//! string, counts that are not integers) yields a summary or `None`, never a panic;
//! every list it keeps is bounded, so a hostile alert cannot make it grow without limit.

use super::json::{self, read_i64, scan_array, scan_object};
use super::parse_ip;
use std::borrow::Cow;

/// One alert type (the `type` of an alert, which is the type of the rule that raised it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertType {
    /// As the API spells it; also the Device Event Class ID.
    pub name: &'static str,
    /// The name of the rule type in the console (`docs/api.md`: "Exposure on an endpoint").
    pub display: &'static str,
    pub category: &'static str,
}

const fn t(name: &'static str, display: &'static str, category: &'static str) -> AlertType {
    AlertType {
        name,
        display,
        category,
    }
}

/// Every alert type of the OpenAPI `RuleType` enum.
pub const ALERT_TYPES: &[AlertType] = &[
    t(
        "FED_ENDPOINT_EXFILTRATION",
        "Exposure on an endpoint",
        "exfiltration",
    ),
    t(
        "FED_CLOUD_SHARE_PERMISSIONS",
        "Cloud share permissions changes",
        "cloud_sharing",
    ),
    t(
        "FED_FILE_TYPE_MISMATCH",
        "Suspicious file type mismatch",
        "file_type_mismatch",
    ),
    t("FED_FILE_NAME_MATCH", "File name match", "file_name_match"),
    t("FED_COMPOSITE", "Composite rule", "composite"),
];

/// Class id of an alert without a readable `type`.
pub const ALERT_CLASS_ID: &str = "alert";
/// Name of an alert with neither a `name` nor a known `type`.
pub const ALERT_NAME: &str = "Alert";
/// Category of alert types the table does not know.
pub const ALERT_CATEGORY: &str = "alerts";
/// Severity of an alert whose `severity` and `riskSeverity` are both missing or
/// unknown: an alert is by definition something a rule flagged, so the middle of the
/// scale rather than the low default of unknown Audit Log types.
pub const ALERT_DEFAULT_SEVERITY: u8 = 5;

/// The type's row, by the API's name.
pub fn alert_type(name: &str) -> Option<&'static AlertType> {
    ALERT_TYPES.iter().find(|t| t.name == name)
}

/// The rule severity scale (`SeverityRating`) in CEF 0-10: HIGH and MEDIUM and LOW sit
/// where CEF puts "High", "Medium" and "Low".
pub const RULE_SEVERITIES: &[(&str, u8)] = &[("HIGH", 8), ("MEDIUM", 5), ("LOW", 3)];

/// The event risk scale (`RiskSeverityRating`) in CEF 0-10. `CRITICAL` is the one value
/// that reaches CEF "Very-High"; `UNKNOWN` says nothing and so does not count.
pub const RISK_SEVERITIES: &[(&str, Option<u8>)] = &[
    ("CRITICAL", Some(10)),
    ("HIGH", Some(8)),
    ("MODERATE", Some(5)),
    ("LOW", Some(3)),
    ("NO_RISK_INDICATED", Some(1)),
    ("UNKNOWN", None),
];

/// CEF severity of a rule `severity` text (ASCII case ignored).
pub fn rule_severity(s: &str) -> Option<u8> {
    RULE_SEVERITIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, v)| *v)
}

/// CEF severity of a `riskSeverity` text (ASCII case ignored).
pub fn risk_severity(s: &str) -> Option<u8> {
    RISK_SEVERITIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .and_then(|(_, v)| *v)
}

/// The alert's severity: the higher of the two scales, so that neither a LOW rule that
/// matched CRITICAL events nor a HIGH rule on harmless events is under-reported.
pub fn alert_severity(rule: Option<u8>, risk: Option<u8>) -> u8 {
    match (rule, risk) {
        (None, None) => ALERT_DEFAULT_SEVERITY,
        (a, b) => a.max(b).unwrap_or(ALERT_DEFAULT_SEVERITY).min(10),
    }
}

/// At most this many file names are kept (the first ones, in order): enough to show
/// what was moved, small enough for a CEF key. The full list stays in `observations`.
pub const MAX_FILE_NAMES: usize = 10;
/// At most this many distinct values per list (exposure types, destinations, addresses).
pub const MAX_DISTINCT: usize = 32;

/// What an alert's observations add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservationSummary<'a> {
    /// Elements of the `observations` array.
    pub count: usize,
    /// Observations whose `data` is not an object (a string the source could not parse,
    /// `null`, missing): they count in `count` and nowhere else.
    pub unreadable: usize,
    /// Sum of each observation's `data.fileCount`, or of the length of its `data.files`
    /// when it has no integer `fileCount`.
    pub file_count: i64,
    /// Sum of each observation's `data.totalFileSize`, or of its files' `size` when it
    /// has no integer `totalFileSize`.
    pub total_file_size: i64,
    /// `data.exposureTypes`, distinct, in order of appearance.
    pub exposure_types: Vec<Cow<'a, str>>,
    /// `data.files[].name`, the first [`MAX_FILE_NAMES`], in order.
    pub file_names: Vec<Cow<'a, str>>,
    /// `data.files[].path` of the first file that has one.
    pub first_file_path: Option<Cow<'a, str>>,
    /// `data.syncToServices`, distinct, in order.
    pub sync_to_services: Vec<Cow<'a, str>>,
    /// `data.sendingIpAddresses` that are IP addresses, distinct, in order.
    pub sending_ips: Vec<Cow<'a, str>>,
}

/// Pushes `v` unless it is already there or the list is full.
fn push_distinct<'a>(list: &mut Vec<Cow<'a, str>>, v: Cow<'a, str>) {
    if list.len() < MAX_DISTINCT && !list.contains(&v) {
        list.push(v);
    }
}

/// Each string element of the array `raw` (other elements are skipped).
fn strings<'a>(raw: &'a str, mut f: impl FnMut(Cow<'a, str>)) {
    scan_array(raw, |e| {
        if let Some(s) = json::decode_str(e) {
            f(s);
        }
        true
    });
}

/// Reads an alert's `observations` value. `None` when it is not an array.
pub fn summarize_observations(raw: &str) -> Option<ObservationSummary<'_>> {
    let mut s = ObservationSummary::default();
    let is_array = scan_array(raw, |obs| {
        s.count += 1;
        let mut data = None;
        scan_object(obs, |m| {
            if data.is_none() && json::decode_inner(m.key, m.key_escaped) == "data" {
                data = Some(m.value);
            }
        });
        match data {
            Some(d) if d.starts_with('{') => add_data(&mut s, d),
            _ => s.unreadable += 1,
        }
        true
    });
    // `scan_array` is false for a non-array and for an array it could not read to the
    // end; the elements it did read are counted either way.
    (is_array || s.count > 0).then_some(s)
}

/// Adds one observation's `data` object.
fn add_data<'a>(s: &mut ObservationSummary<'a>, data: &'a str) {
    let mut file_count = None;
    let mut total_size = None;
    let mut files_seen = 0i64;
    let mut files_size = 0i64;
    scan_object(data, |m| {
        let key = json::decode_inner(m.key, m.key_escaped);
        match key.as_ref() {
            "fileCount" => file_count = file_count.or(read_i64(m.value)),
            "totalFileSize" => total_size = total_size.or(read_i64(m.value)),
            "exposureTypes" => strings(m.value, |v| push_distinct(&mut s.exposure_types, v)),
            "syncToServices" => strings(m.value, |v| push_distinct(&mut s.sync_to_services, v)),
            "sendingIpAddresses" => strings(m.value, |v| {
                if parse_ip(v.trim()).is_some() {
                    push_distinct(&mut s.sending_ips, v)
                }
            }),
            "files" => {
                scan_array(m.value, |file| {
                    files_seen += 1;
                    add_file(s, file, &mut files_size);
                    true
                });
            }
            _ => {}
        }
    });
    s.file_count = s
        .file_count
        .saturating_add(file_count.unwrap_or(files_seen));
    s.total_file_size = s
        .total_file_size
        .saturating_add(total_size.unwrap_or(files_size));
}

/// Adds one element of `data.files`.
fn add_file<'a>(s: &mut ObservationSummary<'a>, file: &'a str, size_sum: &mut i64) {
    let mut name = None;
    let mut path = None;
    scan_object(file, |m| {
        let key = json::decode_inner(m.key, m.key_escaped);
        match key.as_ref() {
            "name" if name.is_none() => name = m.value_str(),
            "path" if path.is_none() => path = m.value_str(),
            "size" => {
                if let Some(n) = read_i64(m.value) {
                    *size_sum = size_sum.saturating_add(n);
                }
            }
            _ => {}
        }
    });
    if let Some(n) = name {
        if s.file_names.len() < MAX_FILE_NAMES {
            s.file_names.push(n);
        }
    }
    if s.first_file_path.is_none() {
        s.first_file_path = path.filter(|p| !p.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Code42's example alert detail (`docs/api.md`), with `data` already put back as
    /// structure by the source.
    const EXAMPLE_OBSERVATIONS: &str = r#"[{"type$":"OBSERVATION","id":"112233445566","observedAt":"2020-04-08T13:40:00.0000000Z","type":"FedEndpointExfiltration","data":{"type$":"OBSERVED_ENDPOINT_ACTIVITY","id":"665544332211","sources":["Endpoint"],"exposureTypes":["ApplicationRead","CloudStorage"],"firstActivityAt":"2020-04-08T13:40:00.0000000Z","lastActivityAt":"2020-04-08T13:45:00.0000000Z","fileCount":2,"totalFileSize":311096,"fileCategories":[{"type$":"OBSERVED_FILE_CATEGORY","category":"Image","fileCount":2,"totalFileSize":311096,"isSignificant":false}],"files":[{"type$":"OBSERVED_FILE","eventId":"998877665544","path":"C:/Users/burt.morales/","name":"1586353274_family_photo.png","category":"Image"},{"type$":"OBSERVED_FILE","eventId":"334455667788","path":"C:/Users/burt.morales/Dropbox/","name":"1586353274_family_photo.png","category":"Image"}],"syncToServices":["Dropbox"],"sendingIpAddresses":["192.0.2.0"]}}]"#;

    #[test]
    fn summarizes_the_documented_example_alert() {
        let s = summarize_observations(EXAMPLE_OBSERVATIONS).unwrap();
        assert_eq!(s.count, 1);
        assert_eq!(s.unreadable, 0);
        assert_eq!(s.file_count, 2);
        assert_eq!(s.total_file_size, 311_096);
        assert_eq!(s.exposure_types, ["ApplicationRead", "CloudStorage"]);
        assert_eq!(
            s.file_names,
            ["1586353274_family_photo.png", "1586353274_family_photo.png"]
        );
        assert_eq!(s.first_file_path.as_deref(), Some("C:/Users/burt.morales/"));
        assert_eq!(s.sync_to_services, ["Dropbox"]);
        assert_eq!(s.sending_ips, ["192.0.2.0"]);
        // Plain strings are borrowed from the event.
        assert!(matches!(s.file_names[0], Cow::Borrowed(_)));
    }

    #[test]
    fn adds_up_observations_and_falls_back_to_the_files() {
        let raw = r#"[
            {"data":{"exposureTypes":["RemovableMedia","CloudStorage"],"fileCount":3,"totalFileSize":30,"files":[{"name":"a"}],"sendingIpAddresses":["10.0.0.1","not an ip","2001:db8::1"]}},
            {"data":"{not json"},
            {"data":{"exposureTypes":["CloudStorage","IsPublic"],"files":[{"name":"b\u00e9","size":5,"path":""},{"name":"c","size":"7","path":"/p/"},{"size":1.5}],"sendingIpAddresses":["10.0.0.1"]}},
            7,
            {"id":"no data"}
        ]"#;
        let s = summarize_observations(raw).unwrap();
        assert_eq!(s.count, 5);
        assert_eq!(s.unreadable, 3);
        // 3 from fileCount; 3 entries of `files` for the second, which has no fileCount.
        assert_eq!(s.file_count, 6);
        // 30 from totalFileSize; 5 + 7 from the sizes (1.5 is not an integer).
        assert_eq!(s.total_file_size, 42);
        assert_eq!(
            s.exposure_types,
            ["RemovableMedia", "CloudStorage", "IsPublic"]
        );
        assert_eq!(s.file_names, ["a", "bé", "c"]);
        assert_eq!(s.first_file_path.as_deref(), Some("/p/"));
        assert_eq!(s.sending_ips, ["10.0.0.1", "2001:db8::1"]);
    }

    #[test]
    fn lists_are_bounded_and_sums_saturate() {
        let files: Vec<String> = (0..50).map(|i| format!(r#"{{"name":"f{i}"}}"#)).collect();
        let exposures: Vec<String> = (0..100).map(|i| format!(r#""e{i}""#)).collect();
        let raw = format!(
            r#"[{{"data":{{"fileCount":9223372036854775807,"totalFileSize":9223372036854775807,"files":[{}],"exposureTypes":[{}]}}}},{{"data":{{"fileCount":1,"totalFileSize":1}}}}]"#,
            files.join(","),
            exposures.join(",")
        );
        let s = summarize_observations(&raw).unwrap();
        assert_eq!(s.file_names.len(), MAX_FILE_NAMES);
        assert_eq!(s.file_names[9], "f9");
        assert_eq!(s.exposure_types.len(), MAX_DISTINCT);
        assert_eq!(s.file_count, i64::MAX);
        assert_eq!(s.total_file_size, i64::MAX);
    }

    #[test]
    fn non_arrays_have_no_summary() {
        for raw in ["null", "{}", "\"[]\"", "12", ""] {
            assert_eq!(summarize_observations(raw), None, "{raw}");
        }
        let empty = summarize_observations("[]").unwrap();
        assert_eq!(empty.count, 0);
        // A truncated array still counts what it holds.
        assert_eq!(
            summarize_observations(r#"[{"data":{}}, {"#).unwrap().count,
            1
        );
    }

    #[test]
    fn severities() {
        assert_eq!(alert_severity(rule_severity("HIGH"), None), 8);
        assert_eq!(
            alert_severity(rule_severity("low"), risk_severity("CRITICAL")),
            10
        );
        assert_eq!(
            alert_severity(rule_severity("HIGH"), risk_severity("LOW")),
            8
        );
        assert_eq!(
            alert_severity(None, risk_severity("UNKNOWN")),
            ALERT_DEFAULT_SEVERITY
        );
        assert_eq!(
            alert_severity(rule_severity("URGENT"), None),
            ALERT_DEFAULT_SEVERITY
        );
        assert_eq!(alert_severity(None, risk_severity("NO_RISK_INDICATED")), 1);
        for (_, v) in RULE_SEVERITIES {
            assert!(*v <= 10);
        }
    }

    #[test]
    fn every_type_is_found_by_name() {
        for t in ALERT_TYPES {
            assert_eq!(alert_type(t.name), Some(t));
        }
        assert_eq!(alert_type("fed_composite"), None);
    }
}
