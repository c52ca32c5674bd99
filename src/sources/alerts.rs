//! The Alerts source: [`AlertsFetch`] reads `query-alerts` pages (alerts created in the
//! query window, oldest first, AND-ed with the configured filter groups) for the shared
//! poll/commit loop of [`super::poll`] ([`AlertsPoller`]), and turns the new ones into
//! events with `query-details`, at most [`crate::api::MAX_DETAILS_IDS`] ids per
//! request.
//!
//! **Fingerprints are alert ids** (the hash of the id, run with unique keys, see
//! [`super::window`]): an alert's summary text changes with its state, its id does not,
//! so an alert is forwarded once, on first sight, whatever happens to it later. The
//! window time of an alert is its `createdAt`, which is also the event's `occurred`.
//!
//! Each event is the alert's DETAIL text (summary fields, observations, note), with
//! each observation's `data` (a JSON document inside a string) put back as structure
//! ([`expand_observation_data`]); a `data` that is not JSON stays a string and is counted
//! (`c42fwd_source_bad_observation_data_total`).
//!
//! **Nothing is dropped silently (ARCHITECTURE.md, invariant 5):** an alert whose details
//! do not come back (deleted between the two calls) is logged, counted
//! (`c42fwd_source_details_missing_total`) and forwarded as its summary, which carries
//! every field but the observations and the note. An alert without an id (which
//! `query-details` cannot be asked about) goes the same way.

use crate::api::{
    expand_observation_data, AlertQuery, AlertSummary, ApiClient, MAX_ALERT_PAGE_SIZE,
};
use crate::config::{self, AlertFilterGroup, SourceSpec};
use crate::event::{Event, SourceKind};
use crate::metrics::{label, Metrics};
use crate::sources::poll::{api_err, FetchedPage, SourceError, WindowFetch, WindowPoller};
use crate::sources::window::{fingerprint, QueryWindow, SEARCH_RESULT_LIMIT};
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

/// Polls one tenant's alerts for one configured source.
pub type AlertsPoller = WindowPoller<AlertsFetch>;

/// An alert of a `query-alerts` page, before it is known to be new.
#[derive(Debug)]
pub struct AlertItem {
    /// The summary as received (forwarded only when the details are missing).
    summary: Box<RawValue>,
    id: Option<String>,
    created_at: DateTime<Utc>,
}

/// The fingerprint of an alert: the hash of its id, or of its text when it has none.
pub fn alert_fingerprint(id: Option<&str>, raw: &str) -> u64 {
    match id {
        Some(id) => fingerprint(id),
        None => fingerprint(raw),
    }
}

/// Reads the alerts of one source (its filter groups) for the poll loop.
pub struct AlertsFetch {
    name: Arc<str>,
    groups: Vec<AlertFilterGroup>,
    client: Arc<ApiClient>,
    metrics: Arc<Metrics>,
}

/// What became of the alerts of one batch, for metrics and logs.
#[derive(Debug, Default)]
struct Assembly {
    events: Vec<Event>,
    /// Ids (or `None` for alerts without one) forwarded as their summary.
    missing: Vec<Option<String>>,
    bad_data: u64,
}

/// Builds the events of `items` from their details, in the order of `items` (see the
/// module docs for alerts without details). Pure.
fn assemble(items: Vec<AlertItem>, details: &mut crate::api::AlertDetails) -> Assembly {
    let mut out = Assembly::default();
    for item in items {
        let detail = item.id.as_deref().and_then(|id| details.take(id));
        let raw = match detail {
            Some(detail) => {
                let expanded = expand_observation_data(detail.get());
                out.bad_data += u64::from(expanded.unparsable);
                if expanded.expanded == 0 {
                    detail
                } else {
                    // Valid JSON by construction; the unexpanded detail if not.
                    RawValue::from_string(expanded.text).unwrap_or(detail)
                }
            }
            None => {
                out.missing.push(item.id);
                item.summary
            }
        };
        out.events
            .push(Event::new(SourceKind::Alerts, raw, item.created_at));
    }
    out
}

impl WindowFetch for AlertsFetch {
    type Item = AlertItem;
    const KIND: SourceKind = SourceKind::Alerts;
    // Alert retention is not documented; the config caps the start position.
    const RETENTION: Option<Duration> = None;
    const MAX_PAGE_SIZE: u32 = MAX_ALERT_PAGE_SIZE;
    // No limit is documented for query-alerts; the Audit Log's (an Elasticsearch
    // default) is assumed, which only costs a re-anchored query now and then.
    const RESULT_LIMIT: u64 = SEARCH_RESULT_LIMIT;
    const UNIQUE_KEYS: bool = true;
    // An alert can stop matching a state filter, or be deleted, between two pages.
    const ALWAYS_RE_ANCHOR: bool = true;
    // No: alerts move between pages (above), so no time range of them is settled, and
    // each page fetches its details already; a backlog is read one page at a time.
    const CONCURRENT_CATCH_UP: bool = false;

    fn from_source(
        source: &config::Source,
        client: Arc<ApiClient>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SourceError> {
        let SourceSpec::Alerts(groups) = &source.kind else {
            return Err(SourceError::WrongSourceType {
                name: source.name.clone(),
                expected: SourceKind::Alerts.as_str(),
            });
        };
        Ok(AlertsFetch {
            name: Arc::from(source.name.as_str()),
            groups: groups.clone(),
            client,
            metrics,
        })
    }

    async fn fetch_page(&self, q: QueryWindow) -> Result<FetchedPage<AlertItem>, SourceError> {
        let query = AlertQuery {
            start: q.start,
            end: q.end,
            page: q.page,
            page_size: q.page_size,
            groups: &self.groups,
        };
        let page = self
            .client
            .query_alerts(&query)
            .await
            .map_err(|e| api_err(&self.name, e))?;
        let mut out = FetchedPage {
            reported_total: page.total_count,
            ..FetchedPage::default()
        };
        for raw in page.alerts {
            let s = AlertSummary::parse(raw.get());
            let fp = alert_fingerprint(s.id.as_deref(), raw.get());
            out.push(q.start, fp, s.created_at, |created_at| AlertItem {
                summary: raw,
                id: s.id,
                created_at,
            });
        }
        Ok(out)
    }

    async fn fetch_instant(
        &self,
        at: DateTime<Utc>,
    ) -> Result<FetchedPage<AlertItem>, SourceError> {
        // query-alerts has no export: ten thousand alerts created in the same 100 ns
        // cannot be read, and the loop must not skip them.
        Err(SourceError::TooManyAtOneInstant {
            name: self.name.to_string(),
            at,
            limit: Self::RESULT_LIMIT,
        })
    }

    /// `totalCount` of `query-alerts` over the window, with the source's filter groups.
    async fn count(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Option<u64>, SourceError> {
        let query = AlertQuery {
            start,
            end,
            page: 0,
            page_size: 1,
            groups: &self.groups,
        };
        self.client
            .count_alerts(&query)
            .await
            .map(Some)
            .map_err(|e| api_err(&self.name, e))
    }

    async fn make_events(&self, items: Vec<AlertItem>) -> Result<Vec<Event>, SourceError> {
        let ids: Vec<String> = items.iter().filter_map(|i| i.id.clone()).collect();
        let mut details = self
            .client
            .query_alert_details(&ids)
            .await
            .map_err(|e| api_err(&self.name, e))?;
        if details.without_id > 0 {
            tracing::warn!(
                source = %self.name,
                count = details.without_id,
                "query-details returned alerts without an id; they are ignored"
            );
        }
        let out = assemble(items, &mut details);
        let src = label("source", &self.name);
        if out.bad_data > 0 {
            self.metrics
                .source_bad_observation_data
                .get_or_create(&src)
                .inc_by(out.bad_data);
            tracing::warn!(
                source = %self.name,
                count = out.bad_data,
                "alert observations whose data is not json are forwarded with data as a string"
            );
        }
        if !out.missing.is_empty() {
            self.metrics
                .source_details_missing
                .get_or_create(&src)
                .inc_by(out.missing.len() as u64);
            let shown: Vec<&str> = out
                .missing
                .iter()
                .take(10)
                .map(|id| id.as_deref().unwrap_or("(no id)"))
                .collect();
            tracing::warn!(
                source = %self.name,
                count = out.missing.len(),
                ids = ?shown,
                "query-details did not return these alerts (deleted since they were listed?); their summary is forwarded instead"
            );
        }
        Ok(out.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AlertDetails;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn item(id: Option<&str>, at: &str) -> AlertItem {
        let summary = match id {
            Some(id) => format!(r#"{{"type$":"ALERT_SUMMARY","id":"{id}","createdAt":"{at}"}}"#),
            None => format!(r#"{{"type$":"ALERT_SUMMARY","createdAt":"{at}"}}"#),
        };
        AlertItem {
            summary: RawValue::from_string(summary).unwrap(),
            id: id.map(str::to_string),
            created_at: t(at),
        }
    }

    fn details(raws: &[&str]) -> AlertDetails {
        let mut d = AlertDetails::default();
        for raw in raws {
            d.insert(RawValue::from_string(raw.to_string()).unwrap());
        }
        d
    }

    #[test]
    fn fingerprint_is_the_id_whatever_the_state() {
        let open = r#"{"id":"a1","state":"OPEN"}"#;
        let resolved = r#"{"id":"a1","state":"RESOLVED"}"#;
        assert_eq!(
            alert_fingerprint(Some("a1"), open),
            alert_fingerprint(Some("a1"), resolved)
        );
        assert_eq!(alert_fingerprint(Some("a1"), open), fingerprint("a1"));
        assert_ne!(
            alert_fingerprint(None, open),
            alert_fingerprint(None, resolved)
        );
    }

    #[test]
    fn events_are_the_details_in_listing_order_with_data_expanded() {
        let items = vec![
            item(Some("b"), "2024-05-01T10:00:01.0000001Z"),
            item(Some("a"), "2024-05-01T10:00:02Z"),
        ];
        let mut d = details(&[
            r#"{"id":"a","createdAt":"2024-05-01T10:00:02Z","observations":[{"data":"{\"x\":1}"}],"note":null}"#,
            r#"{"id":"b","createdAt":"2024-05-01T10:00:01.0000001Z","observations":[{"data":"not json"}]}"#,
        ]);
        let out = assemble(items, &mut d);
        assert!(out.missing.is_empty());
        assert_eq!(out.bad_data, 1);
        assert_eq!(out.events.len(), 2);
        assert_eq!(
            out.events[0].json(),
            r#"{"id":"b","createdAt":"2024-05-01T10:00:01.0000001Z","observations":[{"data":"not json"}]}"#
        );
        assert_eq!(out.events[0].occurred, t("2024-05-01T10:00:01.0000001Z"));
        assert_eq!(
            out.events[1].json(),
            r#"{"id":"a","createdAt":"2024-05-01T10:00:02Z","observations":[{"data":{"x":1}}],"note":null}"#
        );
        assert!(out.events.iter().all(|e| e.kind == SourceKind::Alerts));
    }

    #[test]
    fn alerts_without_details_go_out_as_their_summary_and_are_reported() {
        let items = vec![
            item(Some("gone"), "2024-05-01T10:00:00Z"),
            item(None, "2024-05-01T10:00:01Z"),
            item(Some("here"), "2024-05-01T10:00:02Z"),
        ];
        let mut d = details(&[r#"{"id":"here","observations":[]}"#]);
        let out = assemble(items, &mut d);
        assert_eq!(out.missing, vec![Some("gone".to_string()), None]);
        assert_eq!(out.events.len(), 3, "nothing dropped");
        assert!(out.events[0].json().contains(r#""id":"gone""#));
        assert!(out.events[0].json().contains("ALERT_SUMMARY"));
        assert_eq!(out.events[2].json(), r#"{"id":"here","observations":[]}"#);
    }
}
