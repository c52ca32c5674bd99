//! File Events calls: `POST /v2/file-events` with the filter-group query, paged by
//! `pgToken` (the first page with an empty token, then each answer's `nextPgToken`),
//! sorted by the time each event was inserted (`event.inserted`, ascending).
//!
//! Pages are split into one `Box<RawValue>` per event while they arrive
//! ([`super::stream`], invariant 3), keeping `nextPgToken` and `problems` beside them.
//! A page token the server no longer accepts (`INVALID_PAGE_TOKEN`: expired, or of
//! another query) is reported as [`ApiError::Rejected`]; [`page_token_refused`] tells
//! it apart, so that the source can start the query again from its first page. It does
//! not page or window itself: that is `sources::file_events`.

use super::stream::{record_cap, PageSplitter};
use super::{join, ApiClient, ApiError, CallAuth};
use crate::config::FileEventFilters;
use crate::normalize::json::{self, ObjectScan};
use crate::normalize::time;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The largest `pgSize` the API serves.
pub const MAX_FILE_EVENT_PAGE_SIZE: u32 = 10_000;

/// The term the source windows and sorts on: when the service inserted the event.
pub const INSERTED_TERM: &str = "event.inserted";

/// One `/v2/file-events` request.
#[derive(Debug, Clone, Copy)]
pub struct FileEventQuery<'a> {
    /// Inclusive (insert time).
    pub start: DateTime<Utc>,
    /// Exclusive (insert time).
    pub end: DateTime<Utc>,
    pub page_size: u32,
    /// `""` for the first page, then the previous answer's `nextPgToken`.
    pub page_token: &'a str,
    pub filters: &'a FileEventFilters,
}

/// One page of results.
#[derive(Debug, Default)]
pub struct FileEventPage {
    /// The events, in insert order, each as the exact JSON text received.
    pub events: Vec<Box<RawValue>>,
    /// The token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
    /// `totalCount`: results of the whole query at the time of this request.
    pub total_count: Option<u64>,
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn filter(term: &str, operator: &str, value: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"term": term, "operator": operator, "value": value})
}

/// The request body: the insert-time window, one OR group per configured list, the
/// raw groups, all AND-ed; sorted by insert time, oldest first.
pub(crate) fn query_body(q: &FileEventQuery<'_>) -> serde_json::Value {
    let f = q.filters;
    // The API's window operators are inclusive at both ends: the exclusive end is the
    // last nanosecond before it.
    let last = q.end - TimeDelta::nanoseconds(1);
    let mut groups = vec![serde_json::json!({
        "filterClause": "AND",
        "filters": [
            filter(INSERTED_TERM, "ON_OR_AFTER", iso(q.start).into()),
            filter(INSERTED_TERM, "ON_OR_BEFORE", iso(last.max(q.start)).into()),
        ],
    })];
    for (term, values) in [
        ("event.action", &f.event_actions),
        ("file.category", &f.file_categories),
        ("user.email", &f.actors),
        ("risk.severity", &f.risk_severities),
        ("destination.category", &f.destination_categories),
    ] {
        if values.is_empty() {
            continue;
        }
        let filters: Vec<_> = values
            .iter()
            .map(|v| filter(term, "IS", v.as_str().into()))
            .collect();
        groups.push(serde_json::json!({"filterClause": "OR", "filters": filters}));
    }
    for g in &f.groups {
        let filters: Vec<_> = g
            .filters
            .iter()
            .map(|x| {
                filter(
                    &x.term,
                    &x.operator,
                    x.value
                        .as_deref()
                        .map_or(serde_json::Value::Null, Into::into),
                )
            })
            .collect();
        groups.push(serde_json::json!({"filterClause": g.clause.as_str(), "filters": filters}));
    }
    serde_json::json!({
        "groupClause": "AND",
        "groups": groups,
        "pgNum": 1,
        "pgSize": q.page_size,
        "pgToken": q.page_token,
        "srtDir": "asc",
        "srtKey": INSERTED_TERM,
    })
}

/// Whether `e` is the server refusing a page token (expired, or of another query).
pub fn page_token_refused(e: &ApiError) -> bool {
    matches!(e, ApiError::Rejected { status: 400, message, .. } if message.contains("INVALID_PAGE_TOKEN"))
}

/// Reads a file event's insert time (`event.inserted`), the time the source windows
/// on. The error says why.
pub fn file_event_inserted(raw: &str) -> Result<DateTime<Utc>, String> {
    #[derive(Deserialize)]
    struct Ev<'a> {
        #[serde(borrow, default)]
        event: Option<Inner<'a>>,
    }
    #[derive(Deserialize)]
    struct Inner<'a> {
        #[serde(borrow, default)]
        inserted: Option<&'a RawValue>,
    }
    let e: Ev<'_> =
        serde_json::from_str(raw).map_err(|e| format!("file event is not a json object: {e}"))?;
    let t = e
        .event
        .and_then(|e| e.inserted)
        .ok_or_else(|| "no event.inserted field".to_string())?;
    super::parse_time_value(t.get())
}

/// A file event's insert time and `event.id` (a non-empty string) in one reading of
/// the event, for the source's hot path.
///
/// The text is a split event, which the splitter validated as JSON already: it is read
/// by [`json::scan_object_until`] (boundaries only, no second validation), up to the
/// `event` member and inside it up to `inserted` and `id`, not through the rest of the
/// event (a file event is a few KB, these two are near its start). The first member of
/// a name counts. The time is read by [`time::parse_rfc3339`] and, where that strict
/// reader says no, by [`super::parse_time_value`], which accepts what chrono does.
pub fn file_event_time_and_id(raw: &str) -> (Result<DateTime<Utc>, String>, Option<Cow<'_, str>>) {
    let mut event = None;
    let top = json::scan_object_until(raw, |m| {
        if json::decode_inner(m.key, m.key_escaped) == "event" {
            event = Some(m.value);
            return false;
        }
        true
    });
    if top != ObjectScan::Object {
        return (Err("file event is not a json object".to_string()), None);
    }
    let Some(event) = event.filter(|v| *v != "null") else {
        return (Err("no event.inserted field".to_string()), None);
    };
    let (mut inserted, mut id) = (None, None);
    let inner = json::scan_object_until(event, |m| {
        match &*json::decode_inner(m.key, m.key_escaped) {
            "inserted" if inserted.is_none() => inserted = Some(m),
            "id" if id.is_none() => id = Some(m),
            _ => {}
        }
        inserted.is_none() || id.is_none()
    });
    if inner != ObjectScan::Object {
        return (
            Err("event of a file event is not a json object".to_string()),
            None,
        );
    }
    let id = id.and_then(|m| m.value_str()).filter(|s| !s.is_empty());
    let time = match inserted {
        Some(m) => m
            .value_str()
            .and_then(|s| time::parse_rfc3339(&s))
            .map_or_else(|| super::parse_time_value(m.value), Ok),
        None => Err("no event.inserted field".to_string()),
    };
    (time, id)
}

/// A file event's `event.id`, if it has a non-empty string one.
pub fn file_event_id(raw: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Ev {
        #[serde(default)]
        event: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        id: Option<serde_json::Value>,
    }
    let e: Ev = serde_json::from_str(raw).ok()?;
    match e.event?.id? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// The `problems` of an answer worth reporting (not null, not `[]`).
fn real_problems(problems: &RawValue) -> Option<String> {
    let text = problems.get().trim();
    (text != "null" && text != "[]").then(|| text.to_string())
}

/// The splitter of a `/v2/file-events` answer: the `fileEvents`, their `totalCount` and
/// the `nextPgToken`, at most `cap` records.
pub(super) fn splitter(cap: usize) -> PageSplitter {
    PageSplitter::for_path(&[b"fileEvents"])
        .counting(b"totalCount")
        .keeping(b"nextPgToken")
        .at_most(cap)
}

impl ApiClient {
    /// One page of `/v2/file-events`.
    pub async fn search_file_events(
        &self,
        q: &FileEventQuery<'_>,
    ) -> Result<FileEventPage, ApiError> {
        let endpoint = "POST /v2/file-events";
        let url = join(&self.base_url, "/v2/file-events");
        let body = query_body(q);
        let cap = record_cap(q.page_size as usize);
        let split = self
            .call_reading(
                endpoint,
                CallAuth::Bearer,
                |c| c.post(url.clone()).json(&body),
                || splitter(cap),
            )
            .await?;
        if let Some(problems) = split.problems.as_deref().and_then(real_problems) {
            return Err(ApiError::QueryProblems {
                endpoint: endpoint.to_string(),
                problems,
            });
        }
        let next_page_token = match split.kept.as_deref().map(RawValue::get) {
            None | Some("null") => None,
            Some(text) => match serde_json::from_str::<String>(text) {
                Ok(t) if !t.is_empty() => Some(t),
                Ok(_) => None,
                Err(_) => {
                    return Err(ApiError::Decode {
                        endpoint: endpoint.to_string(),
                        reason: format!("nextPgToken {text} is not a string"),
                    })
                }
            },
        };
        Ok(FileEventPage {
            events: split.events.unwrap_or_default(),
            next_page_token,
            total_count: split.total_result_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file_events::{FileEventFilter, FileEventFilterGroup};
    use crate::config::FilterClause;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_body_windows_on_insert_time_and_ands_the_filters() {
        let filters = FileEventFilters {
            event_actions: vec!["file-uploaded".into(), "removable-media-created".into()],
            risk_severities: vec!["HIGH".into()],
            groups: vec![FileEventFilterGroup {
                clause: FilterClause::Or,
                filters: vec![FileEventFilter {
                    term: "risk.score".into(),
                    operator: "GREATER_THAN".into(),
                    value: Some("5".into()),
                }],
            }],
            ..FileEventFilters::default()
        };
        let q = FileEventQuery {
            start: t("2026-05-01T10:00:00.000000001Z"),
            end: t("2026-05-01T11:00:00Z"),
            page_size: 10_000,
            page_token: "",
            filters: &filters,
        };
        let b = query_body(&q);
        assert_eq!(b["groupClause"], "AND");
        assert_eq!(b["srtKey"], "event.inserted");
        assert_eq!(b["srtDir"], "asc");
        assert_eq!(b["pgToken"], "");
        assert_eq!(b["pgSize"], 10_000);
        let g = &b["groups"];
        assert_eq!(
            g[0]["filters"][0]["value"],
            "2026-05-01T10:00:00.000000001Z"
        );
        assert_eq!(g[0]["filters"][1]["operator"], "ON_OR_BEFORE");
        assert_eq!(
            g[0]["filters"][1]["value"],
            "2026-05-01T10:59:59.999999999Z"
        );
        assert_eq!(g[1]["filterClause"], "OR");
        assert_eq!(g[1]["filters"][1]["value"], "removable-media-created");
        assert_eq!(g[2]["filters"][0]["term"], "risk.severity");
        assert_eq!(g[3]["filters"][0]["operator"], "GREATER_THAN");
        assert_eq!(g.as_array().unwrap().len(), 4);
    }

    #[test]
    fn insert_time_and_id_are_read_from_the_event_object() {
        let raw = r#"{"@timestamp":"2026-05-01T09:00:00Z","event":{"id":"0_a_1","inserted":"2026-05-01T10:00:00.123456Z"}}"#;
        assert_eq!(
            file_event_inserted(raw).unwrap(),
            t("2026-05-01T10:00:00.123456Z")
        );
        assert_eq!(file_event_id(raw).as_deref(), Some("0_a_1"));
        assert!(file_event_inserted(r#"{"event":{}}"#)
            .unwrap_err()
            .contains("event.inserted"));
        assert!(file_event_inserted("[1]").is_err());
        assert_eq!(file_event_id(r#"{"event":{"id":""}}"#), None);
        assert_eq!(file_event_id(r#"{"event":{"id":7}}"#), None);
        let (time, id) = file_event_time_and_id(raw);
        assert_eq!(time.unwrap(), t("2026-05-01T10:00:00.123456Z"));
        assert_eq!(id.as_deref(), Some("0_a_1"));
        let (time, id) = file_event_time_and_id(r#"{"event":{"id":"x"}}"#);
        assert!(time.unwrap_err().contains("event.inserted"));
        assert_eq!(id.as_deref(), Some("x"));
    }

    #[test]
    fn insert_time_and_id_read_like_the_api_sends_them_and_otherwise() {
        // Escaped keys and ids are decoded; the first member of a name counts.
        let raw = r#"{"x":{"inserted":"1999-01-01T00:00:00Z"},"\u0065vent":{"id":"a\"b","inserted":"2026-05-01T10:00:00.5Z","id":"c"},"event":{}}"#;
        let (time, id) = file_event_time_and_id(raw);
        assert_eq!(time.unwrap(), t("2026-05-01T10:00:00.5Z"));
        assert_eq!(id.as_deref(), Some("a\"b"));
        // What the strict reader refuses, chrono reads (an offset), as before.
        let (time, _) =
            file_event_time_and_id(r#"{"event":{"inserted":"2026-05-01T12:00:00+02:00"}}"#);
        assert_eq!(time.unwrap(), t("2026-05-01T10:00:00Z"));
        // Epoch seconds as a number, as `parse_time_value` reads them.
        let (time, _) = file_event_time_and_id(r#"{"event":{"inserted":1700000000.25}}"#);
        assert_eq!(time.unwrap(), t("2023-11-14T22:13:20.25Z"));
        for bad in [
            r#"[1]"#,
            r#"{"event":null}"#,
            r#"{"event":7}"#,
            r#"{"other":1}"#,
            r#"{"event":{"inserted":"yesterday","id":""}}"#,
            r#"{"event":{"inserted":null}}"#,
        ] {
            let (time, id) = file_event_time_and_id(bad);
            assert!(time.is_err(), "{bad}");
            assert_eq!(id, None, "{bad}");
        }
    }

    #[test]
    fn a_refused_token_is_told_apart() {
        let refused = ApiError::Rejected {
            endpoint: "POST /v2/file-events".into(),
            status: 400,
            message: r#"{"problems":[{"type":"INVALID_PAGE_TOKEN"}]}"#.into(),
        };
        assert!(page_token_refused(&refused));
        let other = ApiError::Rejected {
            endpoint: "POST /v2/file-events".into(),
            status: 400,
            message: "INVALID_PAGE_SIZE".into(),
        };
        assert!(!page_token_refused(&other));
    }
}
