//! The `file_events` source's filters: the raw table of the file and the checked form
//! the source runs on.
//!
//! Each list is one filter group of the `/v2/file-events` query (`IS` per value, the
//! values OR-ed); the groups are AND-ed with each other and with the source's own
//! insert-time window. `filter_groups` adds raw groups in the API's own terms
//! (`docs/api.md`: `term`, `operator`, `value`), checked here against the terms and
//! operators the API documents, so a typo is refused before start. Not here: the
//! request body (`api::file_events`).

use super::check::{filter_group, Problems};
use super::FilterClause;
use serde::Deserialize;

/// `[sources.NAME.filters]` of a `file_events` source.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFileEventFilters {
    /// `event.action` values (`file-created`, `removable-media-created`, ...).
    #[serde(default)]
    pub event_actions: Vec<String>,
    /// `file.category` values (`Document`, `SourceCode`, ...).
    #[serde(default)]
    pub file_categories: Vec<String>,
    /// `user.email` values: whose activity.
    #[serde(default)]
    pub actors: Vec<String>,
    /// `risk.severity` values.
    #[serde(default)]
    pub risk_severities: Vec<String>,
    /// `destination.category` values (`Removable Media`, `Cloud Storage`, `Email`, ...):
    /// where the file went, the gateway's successor of the legacy exposure types.
    #[serde(default)]
    pub destination_categories: Vec<String>,
}

/// One `[[sources.NAME.filter_groups]]` of a `file_events` source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileEventFilterGroup {
    /// `AND` (default) or `OR`.
    pub clause: Option<String>,
    pub filters: Vec<RawFileEventFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileEventFilter {
    pub term: String,
    pub operator: String,
    pub value: Option<String>,
}

/// The checked filters of a `file_events` source. Empty lists mean "all".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileEventFilters {
    pub event_actions: Vec<String>,
    pub file_categories: Vec<String>,
    pub actors: Vec<String>,
    pub risk_severities: Vec<String>,
    pub destination_categories: Vec<String>,
    pub groups: Vec<FileEventFilterGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEventFilterGroup {
    pub clause: FilterClause,
    pub filters: Vec<FileEventFilter>,
}

/// One filter in the API's terms: `term` as the API spells it (`risk.score`),
/// `operator` upper case (`GREATER_THAN`), `value` as text (absent for `EXISTS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEventFilter {
    pub term: String,
    pub operator: String,
    pub value: Option<String>,
}

/// The `risk.severity` values the API documents.
pub const RISK_SEVERITIES: &[&str] = &["NO_RISK_INDICATED", "LOW", "MODERATE", "HIGH", "CRITICAL"];

/// The operators the API documents for file event filters.
pub const OPERATORS: &[&str] = &[
    "IS",
    "IS_NOT",
    "IS_ANY",
    "IS_NONE",
    "ON_OR_BEFORE",
    "ON_OR_AFTER",
    "ON",
    "WITHIN_THE_LAST",
    "LESS_THAN",
    "GREATER_THAN",
    "EXISTS",
    "DOES_NOT_EXIST",
];

/// A term of the API: dotted lower camel case segments (`file.hash.sha256`) or
/// `@timestamp`. The API's list is long and grows; its shape is what is checked here,
/// the API itself refuses a term it does not know (a 400 that stops the source with
/// the API's own words).
fn is_term(t: &str) -> bool {
    t == "@timestamp"
        || (!t.is_empty()
            && t.split('.').all(|seg| {
                seg.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && seg.chars().all(|c| c.is_ascii_alphanumeric())
            }))
}

/// Checks the filters of source `name`.
pub(super) fn file_event_filters(
    name: &str,
    filters: Option<RawFileEventFilters>,
    groups: Option<Vec<RawFileEventFilterGroup>>,
    p: &mut Problems,
) -> FileEventFilters {
    let f = filters.unwrap_or_default();
    let at = |k: &str| format!("sources.{name}.filters.{k}");
    for (k, list) in [
        ("event_actions", &f.event_actions),
        ("file_categories", &f.file_categories),
        ("actors", &f.actors),
        ("risk_severities", &f.risk_severities),
        ("destination_categories", &f.destination_categories),
    ] {
        for (i, v) in list.iter().enumerate() {
            if v.trim().is_empty() {
                p.add(format!("{}[{i}]", at(k)), "must not be empty");
            }
        }
    }
    for (i, s) in f.risk_severities.iter().enumerate() {
        if !RISK_SEVERITIES.contains(&s.as_str()) {
            p.add(
                format!("{}[{i}]", at("risk_severities")),
                format!("`{s}` is not one of {}", RISK_SEVERITIES.join(", ")),
            );
        }
    }
    let mut out = Vec::new();
    for (g, raw) in groups.into_iter().flatten().enumerate() {
        let gat = format!("sources.{name}.filter_groups[{g}]");
        let clause = filter_group(&gat, raw.clause.as_deref(), raw.filters.len(), p);
        let mut filters = Vec::new();
        for (i, f) in raw.filters.into_iter().enumerate() {
            let fat = format!("{gat}.filters[{i}]");
            if !is_term(&f.term) {
                p.add(
                    format!("{fat}.term"),
                    format!(
                        "`{}` is not a file event term such as \"event.action\" or \"file.category\"",
                        f.term
                    ),
                );
                continue;
            }
            let op = f.operator.to_ascii_uppercase();
            if !OPERATORS.contains(&op.as_str()) {
                p.add(
                    format!("{fat}.operator"),
                    format!("`{}` is not one of {}", f.operator, OPERATORS.join(", ")),
                );
                continue;
            }
            let needs_value = !matches!(op.as_str(), "EXISTS" | "DOES_NOT_EXIST");
            if needs_value && f.value.is_none() {
                p.add(format!("{fat}.value"), format!("{op} needs a value"));
                continue;
            }
            filters.push(FileEventFilter {
                term: f.term,
                operator: op,
                value: f.value,
            });
        }
        out.push(FileEventFilterGroup { clause, filters });
    }
    FileEventFilters {
        event_actions: f.event_actions,
        file_categories: f.file_categories,
        actors: f.actors,
        risk_severities: f.risk_severities,
        destination_categories: f.destination_categories,
        groups: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_support::{parse_str, problems, MINIMAL};
    use crate::config::SourceSpec;

    const FILES: &str = r#"[sources.files]
type = "file_events"
tenant = "acme"
page_size = 10000
[sources.files.filters]
event_actions = ["removable-media-created", "file-uploaded"]
risk_severities = ["HIGH", "CRITICAL"]
destination_categories = ["Removable Media"]
[[sources.files.filter_groups]]
clause = "or"
filters = [{ term = "risk.score", operator = "greater_than", value = "5" }, { term = "file.hash.sha256", operator = "EXISTS" }]

[sinks.siem]"#;

    fn with_files() -> String {
        MINIMAL
            .replace("[sinks.siem]", FILES)
            .replace("sources = [\"audit\"]", "sources = [\"audit\", \"files\"]")
    }

    #[test]
    fn a_file_events_source_with_its_filters() {
        let c = parse_str(&with_files()).unwrap();
        let s = &c.sources["files"];
        assert_eq!(s.page_size, 10_000);
        let SourceSpec::FileEvents(f) = &s.kind else {
            panic!("{:?}", s.kind)
        };
        assert_eq!(
            f.event_actions,
            ["removable-media-created", "file-uploaded"]
        );
        assert_eq!(f.destination_categories, ["Removable Media"]);
        assert_eq!(f.groups[0].clause, FilterClause::Or);
        assert_eq!(f.groups[0].filters[0].operator, "GREATER_THAN");
        assert_eq!(f.groups[0].filters[1].value, None);
        let bad = with_files().replace("page_size = 10000", "page_size = 10001");
        assert!(problems(&bad)[0].starts_with("sources.files.page_size"));
    }

    #[test]
    fn a_legacy_tenant_cannot_have_a_file_events_source() {
        let text = with_files().replace(
            "api = \"incydr\"\nbase_url = \"https://api.us.code42.com\"\nclient_id = \"key-123\"\nclient_secret = \"s3cret\"",
            "api = \"legacy\"\nbase_url = \"https://console.us.code42.com\"\nusername = \"u@example.com\"\npassword = \"p\"",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("sources.files.type: file_events needs an incydr tenant"),
            "{p:?}"
        );
    }

    #[test]
    fn terms_are_checked_by_shape() {
        for t in [
            "@timestamp",
            "event.action",
            "file.hash.sha256",
            "risk.score",
        ] {
            assert!(is_term(t), "{t}");
        }
        for t in [
            "",
            "Event.action",
            "event..action",
            "event.action ",
            "file-name",
            "a.b-c",
        ] {
            assert!(!is_term(t), "{t}");
        }
    }

    #[test]
    fn bad_filters_are_named_by_their_path() {
        let mut p = Problems::default();
        let groups = vec![RawFileEventFilterGroup {
            clause: Some("XOR".into()),
            filters: vec![
                RawFileEventFilter {
                    term: "risk.score".into(),
                    operator: "greater_than".into(),
                    value: Some("5".into()),
                },
                RawFileEventFilter {
                    term: "Risk".into(),
                    operator: "IS".into(),
                    value: Some("x".into()),
                },
                RawFileEventFilter {
                    term: "event.action".into(),
                    operator: "IS".into(),
                    value: None,
                },
            ],
        }];
        let raw = RawFileEventFilters {
            risk_severities: vec!["SEVERE".into()],
            ..RawFileEventFilters::default()
        };
        let f = file_event_filters("fe", Some(raw), Some(groups), &mut p);
        let paths: Vec<&str> = p.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "sources.fe.filters.risk_severities[0]",
                "sources.fe.filter_groups[0].clause",
                "sources.fe.filter_groups[0].filters[1].term",
                "sources.fe.filter_groups[0].filters[2].value",
            ]
        );
        assert_eq!(f.groups[0].filters.len(), 1);
        assert_eq!(f.groups[0].filters[0].operator, "GREATER_THAN");
    }
}
