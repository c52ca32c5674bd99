//! Audit Log calls: `search-audit-log` (paged), `search-results-count` (Incydr) and
//! `search-results-export` (JSON), with the request body of each generation.
//!
//! Pages are not parsed into a `serde_json::Value` tree, nor held whole: the body is cut
//! into one `Box<RawValue>` per event while it arrives ([`super::stream`]), keeping the
//! exact text the API sent (what the fingerprints and the JSON-raw output need).

use super::stream::{record_cap, PageSplitter, SplitPage};
use super::{join, ApiClient, ApiError, CallAuth};
use crate::config::{ApiGeneration, AuditFilters};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One `search-audit-log` request.
#[derive(Debug, Clone, Copy)]
pub struct AuditQuery<'a> {
    /// Inclusive.
    pub start: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
    /// 0-based.
    pub page: u32,
    pub page_size: u32,
    pub filters: &'a AuditFilters,
}

/// One page of results.
#[derive(Debug, Default)]
pub struct AuditPage {
    /// The events, oldest first, each as the exact JSON text received.
    pub events: Vec<Box<RawValue>>,
    /// The server refused the page because it lies past its result window (Incydr: no
    /// `events`, and a `totalResultCount` beyond what was read; legacy: 400 "Result
    /// window is too large"). An answer without `events` whose count says nothing is
    /// left is an empty page, not a refusal (see [`missing_events`]).
    pub past_result_window: bool,
    /// `totalResultCount`, when the server sent it.
    pub total_result_count: Option<u64>,
}

/// The most events `search-results-export` serves for one query.
const MAX_EXPORT_RESULTS: usize = 100_000;

#[derive(Deserialize)]
struct CountResponse {
    #[serde(rename = "totalResultCount")]
    total_result_count: u64,
}

fn iso(t: DateTime<Utc>) -> String {
    // Full precision: the window logic works in nanoseconds, and a start rounded down
    // only returns events the fingerprints then skip.
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The request body of a search (`paged`) or an export, in the shape of `generation`.
fn query_body(generation: ApiGeneration, q: &AuditQuery<'_>, paged: bool) -> serde_json::Value {
    let f = q.filters;
    let date_range = serde_json::json!({"startTime": iso(q.start), "endTime": iso(q.end)});
    let mut body = match generation {
        ApiGeneration::Incydr => serde_json::json!({
            "actorIds": f.actor_ids,
            "actorIpAddresses": f.actor_ip_addresses,
            "actorNames": f.actor_names,
            "dateRange": date_range,
            "eventTypes": f.event_types,
            "resourceIds": [],
            "userTypes": f.user_types,
        }),
        ApiGeneration::Legacy => serde_json::json!({
            "type$": "audit_log::audit_log_queries.search_audit_log/1",
            "dateRange": date_range,
            "eventTypes": f.event_types,
            "userTypes": f.user_types,
            "actorIds": f.actor_ids,
            "actorNames": f.actor_names,
            "actorIpAddresses": f.actor_ip_addresses,
            "affectedUserIds": f.affected_user_ids,
            "affectedUserNames": f.affected_user_names,
        }),
    };
    // The legacy export takes (and ignores) paging fields, as in Code42's example (`docs/api.md`).
    if paged || generation == ApiGeneration::Legacy {
        body["page"] = q.page.into();
        body["pageSize"] = q.page_size.into();
    }
    body
}

/// What an answer without an `events` key means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissingEvents {
    /// No records from this offset on: an empty page.
    Empty,
    /// Records exist past this offset that the server did not send: it refused the
    /// page as past its result window.
    PastResultWindow,
}

/// Classifies an answer without `events` for a page starting at result `offset`, by
/// the `totalResultCount` it carries. Both generations leave `events` out when no
/// records are found (`{"paginationRangeStartIndex":10000, "paginationRangeEndIndex":
/// 10000, "totalResultCount":1593}`), and the gateway leaves it out of a page past its
/// 10,000-result window, where the count is beyond the offset. So: no count, or a count
/// at or below the offset (the range is exhausted) is an empty page; a count beyond the
/// offset is the refusal, which makes the window logic learn the limit and split.
pub(crate) fn missing_events(total_result_count: Option<u64>, offset: u64) -> MissingEvents {
    match total_result_count {
        Some(total) if total > offset => MissingEvents::PastResultWindow,
        _ => MissingEvents::Empty,
    }
}

/// The page of an answer to a query whose first result is number `offset`.
fn page_of(split: SplitPage, offset: u64) -> AuditPage {
    let total_result_count = split.total_result_count;
    let past_result_window = match &split.events {
        Some(_) => false,
        None => missing_events(total_result_count, offset) == MissingEvents::PastResultWindow,
    };
    AuditPage {
        events: split.events.unwrap_or_default(),
        past_result_window,
        total_result_count,
    }
}

/// Reads an audit event's `timestamp` (ISO-8601, up to nanoseconds; epoch seconds are
/// accepted too) without building a tree of the event. The error says why.
pub fn parse_event_time(raw: &str) -> Result<DateTime<Utc>, String> {
    #[derive(Deserialize)]
    struct Stamp<'a> {
        #[serde(borrow, default)]
        timestamp: Option<&'a RawValue>,
    }
    let s: Stamp<'_> =
        serde_json::from_str(raw).map_err(|e| format!("event is not a json object: {e}"))?;
    let ts = s
        .timestamp
        .ok_or_else(|| "no timestamp field".to_string())?;
    super::parse_time_value(ts.get())
}

impl ApiClient {
    /// One page of `search-audit-log`.
    pub async fn search_audit_log(&self, q: &AuditQuery<'_>) -> Result<AuditPage, ApiError> {
        let (endpoint, url) = match self.api {
            ApiGeneration::Incydr => (
                "POST /v1/audit/search-audit-log",
                join(&self.base_url, "/v1/audit/search-audit-log"),
            ),
            ApiGeneration::Legacy => (
                "POST {audit}/rpc/search/search-audit-log",
                join(self.audit_base().await?, "/rpc/search/search-audit-log"),
            ),
        };
        let body = query_body(self.api, q, true);
        let cap = record_cap(q.page_size as usize);
        let result = self
            .call_reading(
                endpoint,
                CallAuth::Bearer,
                |c| c.post(url.clone()).json(&body),
                || PageSplitter::new().at_most(cap),
            )
            .await;
        match result {
            Ok(split) => Ok(page_of(
                split,
                u64::from(q.page).saturating_mul(u64::from(q.page_size)),
            )),
            // Legacy signals the 10,000-result window with a 400 (`docs/api.md`).
            Err(ApiError::Rejected {
                status: 400,
                message,
                ..
            }) if message.to_ascii_lowercase().contains("result window") => Ok(AuditPage {
                past_result_window: true,
                ..AuditPage::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// `search-results-count`: how many events the query matches. `None` for legacy
    /// tenants, whose API has no count endpoint.
    pub async fn count_audit_log(&self, q: &AuditQuery<'_>) -> Result<Option<u64>, ApiError> {
        if self.api == ApiGeneration::Legacy {
            return Ok(None);
        }
        let endpoint = "POST /v1/audit/search-results-count";
        let url = join(&self.base_url, "/v1/audit/search-results-count");
        let body = query_body(self.api, q, true);
        let bytes = self
            .call(endpoint, CallAuth::Bearer, |c| {
                c.post(url.clone()).json(&body)
            })
            .await?;
        let r: CountResponse = serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            endpoint: endpoint.to_string(),
            reason: format!("no totalResultCount: {e}"),
        })?;
        Ok(Some(r.total_result_count))
    }

    /// `search-results-export` as JSON: every event of the window (up to the export
    /// limit, 100,000), no paging. `q.page` and `q.page_size` are not used.
    pub async fn export_audit_log(
        &self,
        q: &AuditQuery<'_>,
    ) -> Result<Vec<Box<RawValue>>, ApiError> {
        let (endpoint, url) = match self.api {
            ApiGeneration::Incydr => (
                "POST /v1/audit/search-results-export",
                join(&self.base_url, "/v1/audit/search-results-export"),
            ),
            ApiGeneration::Legacy => (
                "POST {audit}/rpc/search/search-results-export",
                join(
                    self.audit_base().await?,
                    "/rpc/search/search-results-export",
                ),
            ),
        };
        let body = query_body(self.api, q, false);
        let split = self
            .call_reading(
                endpoint,
                CallAuth::Bearer,
                |c| {
                    c.post(url.clone())
                        .header(reqwest::header::ACCEPT, "application/json")
                        .json(&body)
                },
                || PageSplitter::new().at_most(record_cap(MAX_EXPORT_RESULTS)),
            )
            .await?;
        let page = page_of(split, 0);
        if page.past_result_window {
            return Err(ApiError::Decode {
                endpoint: endpoint.to_string(),
                reason: format!(
                    "no events in the export response, while its totalResultCount says {}",
                    page.total_result_count.unwrap_or_default()
                ),
            });
        }
        Ok(page.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn event_time_keeps_nanoseconds() {
        let ts = parse_event_time(
            r#"{"type$":"audit_log::logged_in/1","timestamp":"2024-05-01T10:00:00.123456789Z"}"#,
        )
        .unwrap();
        assert_eq!(ts, t("2024-05-01T10:00:00.123456789Z"));
        assert_eq!(ts.timestamp_subsec_nanos(), 123_456_789);
        assert_eq!(
            parse_event_time(r#"{"timestamp":"2020-08-13T15:52:40.240585Z"}"#).unwrap(),
            t("2020-08-13T15:52:40.240585Z")
        );
        assert_eq!(
            parse_event_time(r#"{"timestamp":1714557600.5}"#).unwrap(),
            t("2024-05-01T10:00:00.5Z")
        );
    }

    #[test]
    fn bad_timestamps_say_why() {
        assert!(parse_event_time(r#"{"a":1}"#)
            .unwrap_err()
            .contains("no timestamp"));
        assert!(parse_event_time(r#"{"timestamp":"yesterday"}"#)
            .unwrap_err()
            .contains("yesterday"));
        assert!(parse_event_time(r#"{"timestamp":null}"#).is_err());
        assert!(parse_event_time("[1,2]").is_err());
    }

    fn parse_search(body: &[u8]) -> Result<AuditPage, String> {
        parse_search_at(body, 0)
    }

    fn parse_search_at(body: &[u8], offset: u64) -> Result<AuditPage, String> {
        let mut s = PageSplitter::new();
        s.feed(body)?;
        s.finish().map(|split| page_of(split, offset))
    }

    #[test]
    fn missing_events_is_an_empty_page_unless_the_count_goes_beyond_the_offset() {
        use MissingEvents::*;
        assert_eq!(missing_events(None, 0), Empty);
        assert_eq!(missing_events(None, 500), Empty);
        assert_eq!(missing_events(Some(0), 0), Empty);
        assert_eq!(missing_events(Some(0), 100), Empty);
        // the range is exhausted: the count is at or below what was already read
        assert_eq!(missing_events(Some(1593), 10_000), Empty);
        assert_eq!(missing_events(Some(100), 100), Empty);
        // records exist past the offset that were not sent
        assert_eq!(missing_events(Some(101), 100), PastResultWindow);
        assert_eq!(missing_events(Some(25_000), 10_000), PastResultWindow);
        assert_eq!(missing_events(Some(1), 0), PastResultWindow);
    }

    #[test]
    fn a_page_without_events_is_classified_by_its_count_and_offset() {
        // The real service's answer when no records are found.
        let idle =
            br#"{"paginationRangeStartIndex":0,"paginationRangeEndIndex":0,"totalResultCount":0}"#;
        let p = parse_search_at(idle, 0).unwrap();
        assert!(!p.past_result_window && p.events.is_empty());
        assert_eq!(p.total_result_count, Some(0));
        let after_the_last = br#"{"paginationRangeStartIndex":10000,"paginationRangeEndIndex":10000,"totalResultCount":1593}"#;
        assert!(
            !parse_search_at(after_the_last, 10_000)
                .unwrap()
                .past_result_window
        );
        let legacy = br#"{"type$":"audit_log::audit_log_queries.search_audit_log.response/1"}"#;
        let p = parse_search_at(legacy, 200).unwrap();
        assert!(!p.past_result_window && p.events.is_empty());
        assert_eq!(p.total_result_count, None);
        // the gateway past its result window: a count beyond the offset
        let refused = br#"{"totalResultCount":25000}"#;
        assert!(parse_search_at(refused, 10_000).unwrap().past_result_window);
        assert!(parse_search_at(refused, 0).unwrap().past_result_window);
        // an empty array is an empty page whatever the count says (the window logic
        // judges a count that contradicts it)
        let p = parse_search_at(br#"{"events":[],"totalResultCount":50}"#, 0).unwrap();
        assert!(!p.past_result_window);
        assert_eq!(p.total_result_count, Some(50));
    }

    #[test]
    fn search_page_keeps_raw_event_text() {
        let body = br#"{"type$":"x","events":[{"b": 1,  "timestamp":"2024-05-01T10:00:00Z"},{"a":"\u00e9"}],"paginationRangeStartIndex":0}"#;
        let p = parse_search(body).unwrap();
        assert!(!p.past_result_window);
        assert_eq!(p.events.len(), 2);
        assert_eq!(
            p.events[0].get(),
            r#"{"b": 1,  "timestamp":"2024-05-01T10:00:00Z"}"#
        );
        assert_eq!(p.events[1].get(), r#"{"a":"\u00e9"}"#);
    }

    #[test]
    fn search_page_past_the_window() {
        let p = parse_search(br#"{"totalResultCount":25000}"#).unwrap();
        assert!(p.past_result_window);
        assert_eq!(p.total_result_count, Some(25000));
        assert!(parse_search(b"<html>").is_err());
    }

    #[test]
    fn request_bodies_per_generation() {
        let filters = AuditFilters {
            event_types: vec!["logged_in".into()],
            affected_user_ids: vec!["u1".into()],
            ..AuditFilters::default()
        };
        let q = AuditQuery {
            start: t("2024-05-01T10:00:00.000000001Z"),
            end: t("2024-05-01T11:00:00Z"),
            page: 2,
            page_size: 500,
            filters: &filters,
        };
        let b = query_body(ApiGeneration::Incydr, &q, true);
        assert_eq!(
            b["dateRange"]["startTime"],
            "2024-05-01T10:00:00.000000001Z"
        );
        assert_eq!(b["dateRange"]["endTime"], "2024-05-01T11:00:00Z");
        assert_eq!(b["page"], 2);
        assert_eq!(b["pageSize"], 500);
        assert_eq!(b["eventTypes"][0], "logged_in");
        assert!(b.get("type$").is_none());
        let b = query_body(ApiGeneration::Incydr, &q, false);
        assert!(b.get("page").is_none());
        let b = query_body(ApiGeneration::Legacy, &q, true);
        assert_eq!(
            b["type$"],
            "audit_log::audit_log_queries.search_audit_log/1"
        );
        assert_eq!(b["affectedUserIds"][0], "u1");
        assert_eq!(b["page"], 2);
    }
}
