//! The Audit Log source: [`AuditLogFetch`] reads `search-audit-log` pages for the
//! shared poll/commit loop of [`super::poll`] ([`AuditLogPoller`]), and reads a single
//! instant through `search-results-export` when more than a whole search result window
//! occurred at it.
//!
//! Audit events carry no id: each is fingerprinted by its raw text, and byte-identical
//! events count as a multiset (see [`super::window`]).
//!
//! It does not page, commit or wait for acknowledgements itself: that is the loop's job.

use crate::api::{parse_event_time, ApiClient, AuditQuery};
use crate::config::{self, ApiGeneration, AuditFilters, SourceSpec};
use crate::event::{Event, SourceKind};
use crate::metrics::Metrics;
use crate::sources::poll::{api_err, FetchedPage, WindowFetch, WindowPoller};
use crate::sources::window::{QueryWindow, EXPORT_RESULT_LIMIT, SEARCH_RESULT_LIMIT};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

pub use crate::sources::poll::{SourceError, MAX_IN_FLIGHT, RETENTION};

/// Polls one tenant's Audit Log for one configured source.
pub type AuditLogPoller = WindowPoller<AuditLogFetch>;

/// Reads the Audit Log of one source (its filters) for the poll loop.
pub struct AuditLogFetch {
    name: Arc<str>,
    filters: AuditFilters,
    page_size: u32,
    client: Arc<ApiClient>,
}

impl AuditLogFetch {
    fn query(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        page: u32,
        page_size: u32,
    ) -> AuditQuery<'_> {
        AuditQuery {
            start,
            end,
            page,
            page_size,
            filters: &self.filters,
        }
    }

    /// One page of raw events as the loop takes it: each event's time parsed (an
    /// unparsable one stands at the window start, counted by the loop) and its
    /// fingerprint taken from its raw text.
    fn page_of(raws: Vec<Box<RawValue>>, window_start: DateTime<Utc>) -> FetchedPage<Event> {
        FetchedPage::by_content(SourceKind::AuditLog, raws, window_start, parse_event_time)
    }
}

impl WindowFetch for AuditLogFetch {
    type Item = Event;
    const KIND: SourceKind = SourceKind::AuditLog;
    const RETENTION: Option<Duration> = Some(RETENTION);
    const MAX_PAGE_SIZE: u32 = SEARCH_RESULT_LIMIT as u32;
    const RESULT_LIMIT: u64 = SEARCH_RESULT_LIMIT;
    const UNIQUE_KEYS: bool = false;
    const ALWAYS_RE_ANCHOR: bool = false;
    // Yes: events before `now - lag` are all listed and stay put, so a settled time
    // range pages by offset, and the fetcher holds nothing between queries.
    const CONCURRENT_CATCH_UP: bool = true;
    /// Audit Log events never leave the result set, and `search-results-count` takes the
    /// search's own body (`docs/api.md`): on Incydr its count proves a window; legacy
    /// tenants have none (`count` answers `None`, the window is read again).
    const COUNT_VERIFIES_PREFIX: bool = true;

    fn from_source(
        source: &config::Source,
        client: Arc<ApiClient>,
        _metrics: Arc<Metrics>,
    ) -> Result<Self, SourceError> {
        let SourceSpec::AuditLog(filters) = &source.kind else {
            return Err(SourceError::WrongSourceType {
                name: source.name.clone(),
                expected: SourceKind::AuditLog.as_str(),
            });
        };
        if client.generation() == ApiGeneration::Incydr
            && !(filters.affected_user_ids.is_empty() && filters.affected_user_names.is_empty())
        {
            // The gateway's search body has no such fields (OpenAPI SearchAuditLogBody):
            // more events go out than the filter asks for, nothing is lost.
            tracing::warn!(
                source = %source.name,
                "affected_user_ids / affected_user_names filters are not supported by the incydr api and are ignored"
            );
        }
        Ok(AuditLogFetch {
            name: Arc::from(source.name.as_str()),
            filters: filters.clone(),
            page_size: source.page_size.clamp(1, Self::MAX_PAGE_SIZE),
            client,
        })
    }

    async fn fetch_page(&self, q: QueryWindow) -> Result<FetchedPage<Event>, SourceError> {
        let page = self
            .client
            .search_audit_log(&self.query(q.start, q.end, q.page, q.page_size))
            .await
            .map_err(|e| api_err(&self.name, e))?;
        if page.past_result_window {
            return Ok(FetchedPage::past_result_window());
        }
        Ok(FetchedPage {
            reported_total: page.total_result_count,
            ..Self::page_of(page.events, q.start)
        })
    }

    /// Reads `[at, at + 1ns)` through the export endpoint, after checking (Incydr: with
    /// the count endpoint; legacy: by the size of the answer) that it holds everything.
    async fn fetch_instant(&self, at: DateTime<Utc>) -> Result<FetchedPage<Event>, SourceError> {
        let query = self.query(at, at + TimeDelta::nanoseconds(1), 0, self.page_size);
        let too_many = || SourceError::TooManyAtOneInstant {
            name: self.name.to_string(),
            at,
            limit: EXPORT_RESULT_LIMIT,
        };
        let count = self
            .client
            .count_audit_log(&query)
            .await
            .map_err(|e| api_err(&self.name, e))?;
        if count.is_some_and(|n| n > EXPORT_RESULT_LIMIT) {
            return Err(too_many());
        }
        let raws = self
            .client
            .export_audit_log(&query)
            .await
            .map_err(|e| api_err(&self.name, e))?;
        // Without a count (legacy), a full export may have been cut: refuse rather than
        // skip the rest silently.
        if count.is_none() && raws.len() as u64 >= EXPORT_RESULT_LIMIT {
            return Err(too_many());
        }
        Ok(Self::page_of(raws, at))
    }

    async fn make_events(&self, items: Vec<Event>) -> Result<Vec<Event>, SourceError> {
        Ok(items)
    }

    /// `search-results-count` over the window with the source's filters (Incydr); `None`
    /// on legacy tenants, which have no count endpoint.
    async fn count(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Option<u64>, SourceError> {
        self.client
            .count_audit_log(&self.query(start, end, 0, 1))
            .await
            .map_err(|e| api_err(&self.name, e))
    }
}

impl AuditLogPoller {
    /// Parses each event's time. An unparsable one is logged, counted, and forwarded with
    /// the window start as its time (ARCHITECTURE.md, invariant 5: nothing is dropped silently).
    #[cfg(test)]
    fn to_events(
        &self,
        raws: Vec<Box<RawValue>>,
        window_start: DateTime<Utc>,
    ) -> (Vec<Event>, Vec<crate::sources::window::PageEvent>) {
        let page = AuditLogFetch::page_of(raws, window_start);
        self.count_bad_times(&page, window_start);
        (page.items, page.marks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, SeenEvent, Store};
    use crate::config::{Credentials, ServiceUrls, Source, StartAt, Tenant};
    use crate::secret::Secret;

    fn poller(dir: &std::path::Path, start: StartAt) -> (AuditLogPoller, Arc<Metrics>) {
        let tenant = Tenant {
            name: "acme".into(),
            api: ApiGeneration::Incydr,
            base_url: "http://127.0.0.1:9".parse().unwrap(),
            services: ServiceUrls::default(),
            credentials: Credentials::ApiClient {
                client_id: "id".into(),
                secret: Secret::new("s"),
            },
            proxy: None,
            request_timeout: Duration::from_secs(5),
            ca_file: None,
            max_response_bytes: crate::config::DEFAULT_MAX_RESPONSE_BYTES,
            max_concurrent_requests: crate::config::DEFAULT_MAX_CONCURRENT_REQUESTS,
        };
        let metrics = Arc::new(Metrics::new());
        let client = Arc::new(ApiClient::new(&tenant, metrics.clone()).unwrap());
        let source = Source {
            name: "audit".into(),
            tenant: "acme".into(),
            kind: SourceSpec::AuditLog(AuditFilters::default()),
            lag: Duration::from_secs(300),
            poll_interval: Duration::from_secs(10),
            start,
            page_size: 100,
            reconcile_after: None,
        };
        let store = Store::open(dir).unwrap();
        (
            AuditLogPoller::new(&source, client, store, metrics.clone()).unwrap(),
            metrics,
        )
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn unparsable_timestamps_are_forwarded_with_the_window_start_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (p, metrics) = poller(dir.path(), StartAt::Ago(Duration::from_secs(60)));
        let raws = vec![
            RawValue::from_string(r#"{"timestamp":"2024-05-01T10:00:00.5Z"}"#.into()).unwrap(),
            RawValue::from_string(r#"{"timestamp":"soon"}"#.into()).unwrap(),
        ];
        let start = t("2024-05-01T09:00:00Z");
        let (events, marks) = p.to_events(raws, start);
        assert_eq!(events.len(), 2, "nothing dropped");
        assert_eq!(events[0].occurred, t("2024-05-01T10:00:00.5Z"));
        assert_eq!(events[1].occurred, start);
        assert_eq!(marks[1].occurred, start);
        assert!(metrics
            .render()
            .contains("c42fwd_source_bad_timestamps_total{source=\"audit\"} 1"));
    }

    #[test]
    fn start_position_from_config_or_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let now = t("2024-05-01T00:00:00Z");
        let (p, _) = poller(dir.path(), StartAt::Ago(Duration::from_secs(3600)));
        assert_eq!(
            p.initial_state(now).unwrap().watermark(),
            t("2024-04-30T23:00:00Z")
        );
        let (p, _) = poller(dir.path(), StartAt::At(t("2024-02-02T00:00:00Z")));
        assert_eq!(
            p.initial_state(now).unwrap().watermark(),
            t("2024-02-02T00:00:00Z")
        );
        let (p, _) = poller(dir.path(), StartAt::At(t("2024-01-31T00:00:00Z")));
        assert!(matches!(
            p.initial_state(now),
            Err(SourceError::StartTooOld { .. })
        ));
        let (p, _) = poller(dir.path(), StartAt::Ago(Duration::from_secs(91 * 86_400)));
        let err = p.initial_state(now).unwrap_err();
        assert!(err.to_string().contains("90 days"), "{err}");

        // a checkpoint wins over the configured start
        let cp = Checkpoint {
            source: "audit".into(),
            kind: SourceKind::AuditLog,
            watermark: t("2024-04-30T12:00:00Z"),
            fingerprints: vec![SeenEvent {
                hash: 7,
                time: t("2024-04-30T12:00:01Z"),
                count: 2,
            }],
            updated_at: now,
            start: None,
            reconcile: None,
        };
        p.store.save("audit", &cp).unwrap();
        let s = p.initial_state(now).unwrap();
        assert_eq!(s.watermark(), cp.watermark);
        assert_eq!(s.forwarded_copies(7), 2);

        // ... unless it is older than the retention
        let old = Checkpoint {
            watermark: t("2024-01-01T00:00:00Z"),
            ..cp.clone()
        };
        p.store.save("audit", &old).unwrap();
        let err = p.initial_state(now).unwrap_err();
        assert!(
            err.to_string()
                .contains("checkpoint reset --config <config file> audit"),
            "{err}"
        );

        // ... or of another kind
        let other = Checkpoint {
            kind: SourceKind::Alerts,
            ..cp
        };
        p.store.save("audit", &other).unwrap();
        assert!(matches!(
            p.initial_state(now),
            Err(SourceError::WrongKind { .. })
        ));
    }

    #[test]
    fn a_checkpoint_in_the_future_is_refused_with_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let now = t("2024-05-01T00:00:00Z");
        let (p, _) = poller(dir.path(), StartAt::Ago(Duration::from_secs(3600)));
        let mut cp = Checkpoint {
            source: "audit".into(),
            kind: SourceKind::AuditLog,
            // within the tolerance: a clock a little behind the one that wrote it
            watermark: t("2024-05-01T00:04:59Z"),
            fingerprints: vec![],
            updated_at: now,
            start: None,
            reconcile: None,
        };
        p.store.save("audit", &cp).unwrap();
        assert_eq!(p.initial_state(now).unwrap().watermark(), cp.watermark);
        cp.watermark = t("2024-05-01T03:00:00Z");
        p.store.save("audit", &cp).unwrap();
        let err = p.initial_state(now).unwrap_err();
        assert!(
            matches!(err, SourceError::CheckpointInFuture { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in [
            "audit.json",
            "2024-05-01 03:00:00 UTC",
            "3h",
            "in the future",
            "c42fwd checkpoint reset --config <config file> audit",
        ] {
            assert!(msg.contains(part), "{part:?} in {msg}");
        }
    }
}
