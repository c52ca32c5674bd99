//! Alert calls (`docs/api.md`): `query-alerts` (paged summaries in a `CreatedAt`
//! window, AND-ed with the configured filter groups) and `query-details` (full alerts
//! with their observations, at most [`MAX_DETAILS_IDS`] ids per request), for both
//! generations:
//! - Incydr: `POST /v1/alerts/query-alerts` and `/v1/alerts/query-details` on the
//!   gateway, `Authorization: Bearer <t>`;
//! - legacy: `POST {alerts}/svc/api/v1/query-alerts` and `/query-details` on the alert
//!   service (the configured `services.alerts`, else discovery key
//!   `AlertService-API_URL`), `Authorization: Bearer <t>` as py42 sends it, falling back
//!   to `Authorization: v3_user_token <t>` for an alert service that refuses `Bearer`
//!   even with a fresh token (see `CallAuth::LegacyAlerts`).
//!
//! The `query-alerts` body carries the tenant id, and so does the legacy `query-details`
//! body (as py42 sends them; the Incydr SDK sends details only the ids): the access
//! token's `tenantUid` claim, else `GET /v1/customer` or `GET /api/v3/customer/my`
//! ([`ApiClient::tenant_id`]).
//! Responses are cut into one `Box<RawValue>` per alert while they arrive
//! ([`super::stream`]), keeping the exact text the API sent.
//!
//! It also owns the one reshaping of an alert that c42fwd does,
//! [`expand_observation_data`]: an observation's `data` is a JSON document inside a
//! string, which no SIEM can search; it is put back as structure, everything else of the
//! alert's text left byte for byte.
//!
//! This module does not decide which window to query, which alerts are new, or what to
//! do with an alert whose details are missing: that is [`crate::sources::alerts`].

use super::stream::{record_cap, PageSplitter};
use super::{join, ApiClient, ApiError, CallAuth};
use crate::config::{AlertFilterGroup, ApiGeneration};
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// The largest `pgSize` of `query-alerts` (`docs/api.md`).
pub const MAX_ALERT_PAGE_SIZE: u32 = 500;

/// The most ids one `query-details` request takes (more is a 400, `docs/api.md`).
pub const MAX_DETAILS_IDS: usize = 100;

/// Where both responses list their alerts: the top-level `alerts` array.
const ALERTS_ARRAY: &[&[u8]] = &[b"alerts"];

/// One `query-alerts` request: alerts created in `[start, end]`, oldest first.
#[derive(Debug, Clone, Copy)]
pub struct AlertQuery<'a> {
    /// Inclusive (`ON_OR_AFTER`). Sent rounded down to the microsecond.
    pub start: DateTime<Utc>,
    /// Inclusive (`ON_OR_BEFORE`). Sent rounded up to the microsecond.
    pub end: DateTime<Utc>,
    /// 0-based (`pgNum`).
    pub page: u32,
    /// `pgSize`, at most [`MAX_ALERT_PAGE_SIZE`] (larger values are capped).
    pub page_size: u32,
    /// The configured filter groups, AND-ed with the window's own group.
    pub groups: &'a [AlertFilterGroup],
}

/// One page of `query-alerts`: the alert summaries, oldest first, each as the exact
/// JSON text received.
#[derive(Debug, Default)]
pub struct AlertsPage {
    pub alerts: Vec<Box<RawValue>>,
    /// `totalCount`: how many alerts the whole query matches, when the server sent it.
    pub total_count: Option<u64>,
}

/// What the poller needs from a summary: its id and creation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSummary {
    /// `None` when the summary has no usable `id` (then no details can be asked for).
    pub id: Option<String>,
    /// `createdAt`, or why it could not be read.
    pub created_at: Result<DateTime<Utc>, String>,
}

impl AlertSummary {
    /// Reads `id` and `createdAt` from a summary's (or a detail's) raw JSON text,
    /// without building a tree of it.
    pub fn parse(raw: &str) -> AlertSummary {
        #[derive(Deserialize)]
        struct View<'a> {
            #[serde(borrow, default)]
            id: Option<&'a RawValue>,
            #[serde(borrow, default, rename = "createdAt")]
            created_at: Option<&'a RawValue>,
        }
        match parse_object::<View<'_>>(raw) {
            Ok(v) => AlertSummary {
                id: v.id.and_then(|r| id_text(r.get())),
                created_at: v
                    .created_at
                    .ok_or_else(|| "no createdAt field".to_string())
                    .and_then(|t| super::parse_time_value(t.get())),
            },
            Err(e) => AlertSummary {
                id: None,
                created_at: Err(format!("alert is not a json object: {e}")),
            },
        }
    }
}

/// Deserializes a view of a JSON object. Only of an object: serde would also fill a
/// struct from an array, field by field.
fn parse_object<'a, T: Deserialize<'a>>(raw: &'a str) -> Result<T, String> {
    if !raw.trim_start().starts_with('{') {
        return Err("not a json object".to_string());
    }
    serde_json::from_str(raw).map_err(|e| e.to_string())
}

/// An id as a string: a JSON string's value, or a number's digits.
fn id_text(json: &str) -> Option<String> {
    if json.starts_with('"') {
        serde_json::from_str::<String>(json)
            .ok()
            .filter(|s| !s.is_empty())
    } else if json.bytes().all(|b| b.is_ascii_digit()) && !json.is_empty() {
        Some(json.to_string())
    } else {
        None
    }
}

/// The answer of `query-details` for a set of ids: each alert's raw JSON text by id.
/// Ids the server did not return (the alert was deleted between the two calls) are
/// simply absent.
#[derive(Debug, Default)]
pub struct AlertDetails {
    by_id: HashMap<String, Box<RawValue>>,
    /// Details that came back without an id (kept to be reported, never used).
    pub without_id: usize,
}

impl AlertDetails {
    /// Takes the details of `id` out (each is handed out once).
    pub fn take(&mut self, id: &str) -> Option<Box<RawValue>> {
        self.by_id.remove(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds one alert of a `query-details` answer, keyed by its id.
    pub fn insert(&mut self, raw: Box<RawValue>) {
        match AlertSummary::parse(raw.get()).id {
            Some(id) => {
                self.by_id.insert(id, raw);
            }
            None => self.without_id += 1,
        }
    }
}

/// A filter time as the alert service takes it: ISO-8601 UTC with microseconds (what
/// py42 sends). Alerts carry 100 ns (`createdAt` has seven digits), so the window start
/// is rounded down and its end up: the query then covers at least the window, and the
/// window logic drops what lies outside it.
fn filter_time(t: DateTime<Utc>, round_up: bool) -> String {
    let sub_micro = i64::from(t.nanosecond() % 1_000);
    let t = if sub_micro == 0 {
        t
    } else if round_up {
        t + TimeDelta::nanoseconds(1_000 - sub_micro)
    } else {
        t - TimeDelta::nanoseconds(sub_micro)
    };
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The request body of `query-alerts`. The window is its own group (`CreatedAt`
/// ON_OR_AFTER start, ON_OR_BEFORE end) and the groups are joined with AND, so that a
/// configured OR group can never widen the window.
fn query_body(tenant_id: &str, q: &AlertQuery<'_>) -> serde_json::Value {
    let mut groups = vec![serde_json::json!({
        "filterClause": "AND",
        "filters": [
            {"term": "CreatedAt", "operator": "ON_OR_AFTER", "value": filter_time(q.start, false)},
            {"term": "CreatedAt", "operator": "ON_OR_BEFORE", "value": filter_time(q.end, true)},
        ],
    })];
    for g in q.groups {
        let filters: Vec<serde_json::Value> = g
            .filters
            .iter()
            .map(|f| {
                serde_json::json!({"term": f.term, "operator": f.operator.as_str(), "value": f.value})
            })
            .collect();
        groups.push(serde_json::json!({"filterClause": g.clause.as_str(), "filters": filters}));
    }
    serde_json::json!({
        "tenantId": tenant_id,
        "groupClause": "AND",
        "groups": groups,
        "pgNum": q.page,
        "pgSize": q.page_size.clamp(1, MAX_ALERT_PAGE_SIZE),
        "srtKey": "CreatedAt",
        "srtDirection": "ASC",
    })
}

/// The `query-details` bodies for `ids`: each id once, in first-seen order, at most
/// [`MAX_DETAILS_IDS`] per body; with the tenant id when given (the legacy alert
/// service, as py42 sends it; the Incydr SDK sends only the ids).
fn details_bodies(ids: &[String], tenant_id: Option<&str>) -> Vec<serde_json::Value> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
    unique
        .chunks(MAX_DETAILS_IDS)
        .map(|chunk| match tenant_id {
            Some(t) => serde_json::json!({ "tenantId": t, "alertIds": chunk }),
            None => serde_json::json!({ "alertIds": chunk }),
        })
        .collect()
}

/// How an alert's text changed in [`expand_observation_data`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandedAlert {
    /// The alert's JSON text, with every parsable `data` string replaced by its document.
    pub text: String,
    /// Observations whose `data` was put back as structure.
    pub expanded: u32,
    /// Observations whose `data` is a string that is not a JSON object or array: kept as
    /// the string it was (counted by the caller, ARCHITECTURE.md invariant 5).
    pub unparsable: u32,
}

/// Replaces `"data":"<escaped json>"` in each element of the alert's top-level
/// `observations` by the parsed document, keeping every other byte of `raw` as it was
/// (key order, spacing, number formats). A `data` that is already structured, null, or
/// a string holding a scalar is left alone; a string that is not JSON at all is left
/// alone and counted in `unparsable`. Pure and total: a `raw` that is not an alert object
/// comes back unchanged.
pub fn expand_observation_data(raw: &str) -> ExpandedAlert {
    #[derive(Deserialize)]
    struct AlertView<'a> {
        #[serde(borrow, default)]
        observations: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct ObservationView<'a> {
        #[serde(borrow, default)]
        data: Option<&'a RawValue>,
    }
    let unchanged = || ExpandedAlert {
        text: raw.to_string(),
        expanded: 0,
        unparsable: 0,
    };
    let Ok(alert) = parse_object::<AlertView<'_>>(raw) else {
        return unchanged();
    };
    let Some(observations) = alert.observations else {
        return unchanged();
    };
    let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(observations.get()) else {
        return unchanged();
    };
    // (byte range of the `data` value in `raw`, replacement text)
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut unparsable = 0;
    for obs in list {
        let Ok(view) = parse_object::<ObservationView<'_>>(obs.get()) else {
            continue;
        };
        let Some(data) = view.data else { continue };
        let text = data.get();
        if !text.starts_with('"') {
            continue;
        }
        let Ok(inner) = serde_json::from_str::<String>(text) else {
            continue;
        };
        match serde_json::from_str::<Box<RawValue>>(&inner) {
            Ok(doc) if matches!(doc.get().as_bytes().first(), Some(b'{' | b'[')) => {
                // The borrowed views are slices of `raw` itself, so their place in it is
                // their address minus the start of `raw`.
                if let Some(at) = offset_in(raw, text) {
                    edits.push((at, at + text.len(), doc.get().to_string()));
                }
            }
            Ok(_) => {}
            Err(_) => unparsable += 1,
        }
    }
    if edits.is_empty() {
        return ExpandedAlert {
            unparsable,
            ..unchanged()
        };
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(raw.len());
    let mut pos = 0;
    let expanded = edits.len() as u32;
    for (start, end, replacement) in edits {
        if start < pos {
            // Overlapping views cannot happen for distinct observations; be total anyway.
            continue;
        }
        out.push_str(&raw[pos..start]);
        out.push_str(&replacement);
        pos = end;
    }
    out.push_str(&raw[pos..]);
    ExpandedAlert {
        text: out,
        expanded,
        unparsable,
    }
}

/// The `problems` of a `query-alerts` answer worth reporting (not null, not `[]`),
/// shortened for an error message.
fn real_problems(problems: &RawValue) -> Option<String> {
    const MAX: usize = 500;
    let text = problems.get();
    let empty = matches!(text, "null" | "[]" | "{}" | "\"\"")
        || serde_json::from_str::<Vec<&RawValue>>(text).is_ok_and(|v| v.is_empty());
    if empty {
        return None;
    }
    Some(super::truncate(text, MAX))
}

/// Where `inner` (a subslice of `outer`) starts in `outer`, by address.
fn offset_in(outer: &str, inner: &str) -> Option<usize> {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    (i >= o && i + inner.len() <= o + outer.len()).then(|| i - o)
}

impl ApiClient {
    /// The base URL of the alert service: the gateway for Incydr; for legacy, the
    /// configured `services.alerts`, else service discovery (fetched once).
    async fn alerts_base(&self) -> Result<&super::ServiceBase, ApiError> {
        self.alerts_base
            .get_or_try_init(|| self.service_base(&self.services.alerts, "AlertService-API_URL"))
            .await
    }

    /// Endpoint name, URL and auth of an alert-service call (`query-alerts`, ...).
    async fn alerts_endpoint(&self, call: &str) -> Result<(String, String, CallAuth), ApiError> {
        Ok(match self.api {
            ApiGeneration::Incydr => (
                format!("POST /v1/alerts/{call}"),
                join(&self.base_url, &format!("/v1/alerts/{call}")),
                CallAuth::Bearer,
            ),
            ApiGeneration::Legacy => (
                format!("POST {{alerts}}/svc/api/v1/{call}"),
                join(self.alerts_base().await?, &format!("/svc/api/v1/{call}")),
                CallAuth::LegacyAlerts,
            ),
        })
    }

    /// One page of `query-alerts`.
    pub async fn query_alerts(&self, q: &AlertQuery<'_>) -> Result<AlertsPage, ApiError> {
        let tenant_id = self.tenant_id().await?;
        let (endpoint, url, auth) = self.alerts_endpoint("query-alerts").await?;
        let body = query_body(&tenant_id, q);
        let cap = record_cap(q.page_size.clamp(1, MAX_ALERT_PAGE_SIZE) as usize);
        let split = self
            .call_reading(
                &endpoint,
                auth,
                |c| c.post(url.clone()).json(&body),
                || {
                    PageSplitter::for_path(ALERTS_ARRAY)
                        .counting(b"totalCount")
                        .at_most(cap)
                },
            )
            .await?;
        if let Some(problems) = split.problems.as_deref().and_then(real_problems) {
            // A 200 without results: forwarding nothing forever would be a silent loss.
            return Err(ApiError::QueryProblems { endpoint, problems });
        }
        match split.events {
            Some(alerts) => Ok(AlertsPage {
                alerts,
                total_count: split.total_result_count,
            }),
            None => Err(ApiError::Decode {
                endpoint,
                reason: "no alerts array in the response".to_string(),
            }),
        }
    }

    /// The `totalCount` of `query-alerts` for the window and filters of `q` (asked with a
    /// one-alert page): how many alerts the service matches now. The window is inclusive
    /// at both ends and rounded outwards, so the count can only be too high, never low.
    pub async fn count_alerts(&self, q: &AlertQuery<'_>) -> Result<u64, ApiError> {
        #[derive(Deserialize)]
        struct Count {
            #[serde(rename = "totalCount")]
            total_count: Option<u64>,
        }
        let tenant_id = self.tenant_id().await?;
        let (endpoint, url, auth) = self.alerts_endpoint("query-alerts").await?;
        let one = AlertQuery {
            page: 0,
            page_size: 1,
            ..*q
        };
        let body = query_body(&tenant_id, &one);
        let bytes = self
            .call(&endpoint, auth, |c| c.post(url.clone()).json(&body))
            .await?;
        let decode = |reason: String| ApiError::Decode {
            endpoint: endpoint.clone(),
            reason,
        };
        let count: Count = serde_json::from_slice(&bytes).map_err(|e| decode(e.to_string()))?;
        count
            .total_count
            .ok_or_else(|| decode("no totalCount in the response".to_string()))
    }

    /// `query-details` for `ids`, in requests of at most [`MAX_DETAILS_IDS`] ids, up to
    /// the tenant's `max_concurrent_requests` of them at once (each holds a permit of
    /// the tenant's limiter, [`super::limiter`]); the answers are keyed by id, so the
    /// caller's order is kept whatever order they come in.
    pub async fn query_alert_details(&self, ids: &[String]) -> Result<AlertDetails, ApiError> {
        let mut details = AlertDetails::default();
        if ids.is_empty() {
            return Ok(details);
        }
        let (endpoint, url, auth) = self.alerts_endpoint("query-details").await?;
        let tenant_id = match self.api {
            ApiGeneration::Legacy => Some(self.tenant_id().await?),
            ApiGeneration::Incydr => None,
        };
        let (endpoint, url) = (&endpoint, &url);
        let mut answers = futures_util::stream::iter(details_bodies(ids, tenant_id.as_deref()))
            .map(|body| async move {
                let cap = record_cap(body["alertIds"].as_array().map_or(0, Vec::len));
                let split = self
                    .call_reading(
                        endpoint,
                        auth,
                        |c| c.post(url.clone()).json(&body),
                        || PageSplitter::for_path(ALERTS_ARRAY).at_most(cap),
                    )
                    .await?;
                split.events.ok_or_else(|| ApiError::Decode {
                    endpoint: endpoint.clone(),
                    reason: "no alerts array in the response".to_string(),
                })
            })
            .buffered(self.limiter.max());
        while let Some(alerts) = answers.next().await {
            for raw in alerts? {
                details.insert(raw);
            }
        }
        Ok(details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AlertFilter, AlertOperator, FilterClause};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn summary_id_and_created_at() {
        let s = AlertSummary::parse(
            r#"{"type$":"ALERT_SUMMARY","id":"987654321424242","createdAt":"2020-04-03T15:21:44.6139300Z","state":"OPEN"}"#,
        );
        assert_eq!(s.id.as_deref(), Some("987654321424242"));
        assert_eq!(s.created_at, Ok(t("2020-04-03T15:21:44.61393Z")));
        let s = AlertSummary::parse(r#"{"id":42,"createdAt":"yesterday"}"#);
        assert_eq!(s.id.as_deref(), Some("42"));
        assert!(s.created_at.unwrap_err().contains("yesterday"));
        let s = AlertSummary::parse(r#"{"id":"","createdAt":null}"#);
        assert_eq!(s.id, None);
        assert!(s.created_at.is_err());
        let s = AlertSummary::parse("[1]");
        assert_eq!(s.id, None);
        assert!(s.created_at.is_err());
    }

    #[test]
    fn filter_times_round_outwards_to_the_microsecond() {
        let at = t("2024-05-01T10:00:00.1234567Z");
        assert_eq!(filter_time(at, false), "2024-05-01T10:00:00.123456Z");
        assert_eq!(filter_time(at, true), "2024-05-01T10:00:00.123457Z");
        let exact = t("2024-05-01T10:00:00.123456Z");
        assert_eq!(filter_time(exact, false), "2024-05-01T10:00:00.123456Z");
        assert_eq!(filter_time(exact, true), "2024-05-01T10:00:00.123456Z");
        assert_eq!(
            filter_time(t("2024-05-01T23:59:59.9999999Z"), true),
            "2024-05-02T00:00:00.000000Z"
        );
    }

    #[test]
    fn query_body_ands_the_window_with_the_configured_groups() {
        let groups = vec![AlertFilterGroup {
            clause: FilterClause::Or,
            filters: vec![
                AlertFilter {
                    term: "Severity".into(),
                    operator: AlertOperator::Is,
                    value: "HIGH".into(),
                },
                AlertFilter {
                    term: "State".into(),
                    operator: AlertOperator::IsNot,
                    value: "RESOLVED".into(),
                },
            ],
        }];
        let q = AlertQuery {
            start: t("2024-05-01T10:00:00.0000001Z"),
            end: t("2024-05-01T11:00:00Z"),
            page: 3,
            page_size: 900,
            groups: &groups,
        };
        let b = query_body("tenant-1", &q);
        assert_eq!(b["tenantId"], "tenant-1");
        assert_eq!(b["groupClause"], "AND");
        assert_eq!(b["pgNum"], 3);
        assert_eq!(b["pgSize"], 500, "capped at the api's largest page");
        assert_eq!(b["srtKey"], "CreatedAt");
        assert_eq!(b["srtDirection"], "ASC");
        let window = &b["groups"][0];
        assert_eq!(window["filterClause"], "AND");
        assert_eq!(window["filters"][0]["term"], "CreatedAt");
        assert_eq!(window["filters"][0]["operator"], "ON_OR_AFTER");
        assert_eq!(window["filters"][0]["value"], "2024-05-01T10:00:00.000000Z");
        assert_eq!(window["filters"][1]["operator"], "ON_OR_BEFORE");
        assert_eq!(window["filters"][1]["value"], "2024-05-01T11:00:00.000000Z");
        let own = &b["groups"][1];
        assert_eq!(own["filterClause"], "OR");
        assert_eq!(own["filters"][0]["term"], "Severity");
        assert_eq!(own["filters"][0]["operator"], "IS");
        assert_eq!(own["filters"][0]["value"], "HIGH");
        assert_eq!(own["filters"][1]["operator"], "IS_NOT");
        assert_eq!(b["groups"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn details_are_asked_in_chunks_of_at_most_100_unique_ids() {
        let ids: Vec<String> = (0..250).map(|i| format!("a{i}")).collect();
        let bodies = details_bodies(&ids, None);
        let sizes: Vec<usize> = bodies
            .iter()
            .map(|b| b["alertIds"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert_eq!(bodies[0]["alertIds"][0], "a0");
        assert_eq!(bodies[2]["alertIds"][49], "a249");
        let mut twice = ids[..100].to_vec();
        twice.extend(ids[..101].iter().cloned());
        let sizes: Vec<usize> = details_bodies(&twice, None)
            .iter()
            .map(|b| b["alertIds"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![100, 1], "repeated ids are asked once");
        assert!(details_bodies(&[], None).is_empty());
        assert!(bodies[0].get("tenantId").is_none());
        let legacy = details_bodies(&ids[..3], Some("t-1"));
        assert_eq!(legacy[0]["tenantId"], "t-1");
        assert_eq!(legacy[0]["alertIds"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn only_real_problems_are_reported() {
        let p = |s: &str| real_problems(&RawValue::from_string(s.to_string()).unwrap());
        assert_eq!(p("[]"), None);
        assert_eq!(p("[ ]"), None);
        assert_eq!(p("null"), None);
        let got = p(r#"[{"type":"IllegalValue","badFilter":{"term":"Severity"}}]"#).unwrap();
        assert!(got.contains("IllegalValue"), "{got}");
        let long = format!("[{}]", vec!["1"; 1000].join(","));
        assert!(p(&long).unwrap().len() < 520);
    }

    #[test]
    fn details_are_found_by_id() {
        let mut d = AlertDetails::default();
        d.insert(RawValue::from_string(r#"{"id":"x","observations":[]}"#.into()).unwrap());
        d.insert(RawValue::from_string(r#"{"name":"no id"}"#.into()).unwrap());
        assert_eq!(d.len(), 1);
        assert_eq!(d.without_id, 1);
        assert!(d.take("y").is_none());
        assert_eq!(
            d.take("x").unwrap().get(),
            r#"{"id":"x","observations":[]}"#
        );
        assert!(d.take("x").is_none(), "handed out once");
    }

    /// Code42's example alert (`docs/api.md`), shortened.
    const EXAMPLE_DETAIL: &str = r#"{"type$":"ALERT_DETAILS","tenantId":"123456","id":"987654321424242","createdAt":"2020-04-08T13:50:25.3644410Z","state":"OPEN","observations":[{"type$":"OBSERVATION","id":"112233445566","observedAt":"2020-04-08T13:40:00.0000000Z","type":"FedEndpointExfiltration","data":"{\"type$\":\"OBSERVED_ENDPOINT_ACTIVITY\",\"id\":\"665544332211\",\"fileCount\":2,\"files\":[{\"path\":\"C:/Users/burt.morales/\",\"name\":\"1586353274_family_photo.png\"}],\"note\":\"a \\\"quoted\\\" word\"}"}],"note":null}"#;

    #[test]
    fn observation_data_becomes_structure_and_the_rest_stays_byte_for_byte() {
        let e = expand_observation_data(EXAMPLE_DETAIL);
        assert_eq!(e.expanded, 1);
        assert_eq!(e.unparsable, 0);
        let v: serde_json::Value = serde_json::from_str(&e.text).unwrap();
        let data = &v["observations"][0]["data"];
        assert_eq!(data["type$"], "OBSERVED_ENDPOINT_ACTIVITY");
        assert_eq!(data["fileCount"], 2);
        assert_eq!(data["files"][0]["path"], "C:/Users/burt.morales/");
        assert_eq!(data["note"], r#"a "quoted" word"#);
        // everything before and after the data value is the original text
        let cut = EXAMPLE_DETAIL.find(r#""data":"#).unwrap() + 7;
        assert_eq!(&e.text[..cut], &EXAMPLE_DETAIL[..cut]);
        assert!(e.text.ends_with(r#"word"}}],"note":null}"#), "{}", e.text);
        assert_eq!(v["createdAt"], "2020-04-08T13:50:25.3644410Z");
    }

    #[test]
    fn unparsable_scalar_and_structured_data_are_kept() {
        let raw = r#"{"id":"1","observations":[{"id":"o1","data":"{not json"},{"id":"o2","data":"5"},{"id":"o3","data":{"already":true}},{"id":"o4","data":null},{"id":"o5"},{"id":"o6","data":"[1, 2]"}]}"#;
        let e = expand_observation_data(raw);
        assert_eq!(e.unparsable, 1);
        assert_eq!(e.expanded, 1);
        assert_eq!(
            e.text,
            raw.replace(r#""data":"[1, 2]""#, r#""data":[1, 2]"#)
        );
    }

    #[test]
    fn expanding_is_total() {
        for raw in [
            "",
            "[]",
            "null",
            r#"{"observations":"x"}"#,
            r#"{"observations":[1,"a",null]}"#,
            r#"{"observations":[{"data":"\"nested string\""}]}"#,
            r#"{"nested":{"observations":[{"data":"{}"}]}}"#,
            r#"[[{"data":"{}"}]]"#,
            r#"{"observations":[["{}"]]}"#,
        ] {
            let e = expand_observation_data(raw);
            assert_eq!(e.text, raw);
            assert_eq!(e.expanded, 0);
        }
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..300 {
            let s: String = (0..rng.usize(0..60))
                .map(|_| {
                    rng.choice(['{', '}', '[', ']', '"', '\\', ':', ',', 'a', 'd'])
                        .unwrap()
                })
                .collect();
            let raw = format!(
                r#"{{"observations":[{{"data":{}}}]}}"#,
                serde_json::json!(s)
            );
            let e = expand_observation_data(&raw);
            assert!(
                serde_json::from_str::<serde_json::Value>(&e.text).is_ok(),
                "{raw}"
            );
        }
    }

    #[test]
    fn several_observations_are_all_expanded() {
        let raw = r#"{"id":"1","observations":[{"data":"{\"a\":1}"}, {"data":"{\"b\":[2]}"}],"x":"data"}"#;
        let e = expand_observation_data(raw);
        assert_eq!(e.expanded, 2);
        assert_eq!(
            e.text,
            r#"{"id":"1","observations":[{"data":{"a":1}}, {"data":{"b":[2]}}],"x":"data"}"#
        );
    }
}
