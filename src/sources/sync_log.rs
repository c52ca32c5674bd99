//! The Directory Sync Log source: [`SyncLogFetch`] reads `GET /api/v3/DirectorySyncLog`
//! pages (entries in the query window, oldest first) for the shared poll/commit loop of
//! [`super::poll`] ([`SyncLogPoller`]).
//!
//! Entries carry no id: each is fingerprinted by its raw text, and byte-identical entries
//! count as a multiset, exactly as Audit Log events (see [`super::window`]). The
//! endpoint takes millisecond times; the client widens each query outwards to whole
//! milliseconds ([`crate::api::SyncLogQuery`]), so an entry with sub-millisecond digits at
//! a window edge is read (perhaps twice) and the fingerprints keep it from going out
//! twice.

use crate::api::{sync_log_entry_time, ApiClient, SyncLogQuery, MAX_SYNC_LOG_PAGE_SIZE};
use crate::config::{self, SourceSpec};
use crate::event::{Event, SourceKind};
use crate::metrics::Metrics;
use crate::sources::poll::{
    api_err, FetchedPage, SourceError, WindowFetch, WindowPoller, RETENTION,
};
use crate::sources::window::{QueryWindow, SEARCH_RESULT_LIMIT};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Polls one tenant's Directory Sync Log for one configured source.
pub type SyncLogPoller = WindowPoller<SyncLogFetch>;

/// Reads the Directory Sync Log of one source for the poll loop.
pub struct SyncLogFetch {
    name: Arc<str>,
    client: Arc<ApiClient>,
}

impl WindowFetch for SyncLogFetch {
    type Item = Event;
    const KIND: SourceKind = SourceKind::SyncLog;
    // Retained for the last 90 days (`docs/api.md`).
    const RETENTION: Option<Duration> = Some(RETENTION);
    const MAX_PAGE_SIZE: u32 = MAX_SYNC_LOG_PAGE_SIZE;
    // No limit is documented; the Audit Log's is assumed (a re-anchored query now and
    // then is all it costs).
    const RESULT_LIMIT: u64 = SEARCH_RESULT_LIMIT;
    const UNIQUE_KEYS: bool = false;
    const ALWAYS_RE_ANCHOR: bool = false;
    // Yes: like the Audit Log, a settled time range stays put, and the fetcher holds
    // nothing between queries.
    const CONCURRENT_CATCH_UP: bool = true;

    fn from_source(
        source: &config::Source,
        client: Arc<ApiClient>,
        _metrics: Arc<Metrics>,
    ) -> Result<Self, SourceError> {
        if !matches!(source.kind, SourceSpec::SyncLog) {
            return Err(SourceError::WrongSourceType {
                name: source.name.clone(),
                expected: SourceKind::SyncLog.as_str(),
            });
        }
        Ok(SyncLogFetch {
            name: Arc::from(source.name.as_str()),
            client,
        })
    }

    async fn fetch_page(&self, q: QueryWindow) -> Result<FetchedPage<Event>, SourceError> {
        let query = SyncLogQuery {
            start: q.start,
            end: q.end,
            page: q.page,
            page_size: q.page_size,
        };
        let page = self
            .client
            .query_sync_log(&query)
            .await
            .map_err(|e| api_err(&self.name, e))?;
        Ok(FetchedPage {
            reported_total: page.total_results,
            ..FetchedPage::by_content(Self::KIND, page.entries, q.start, sync_log_entry_time)
        })
    }

    async fn fetch_instant(&self, at: DateTime<Utc>) -> Result<FetchedPage<Event>, SourceError> {
        // The sync log has no export: more entries than a whole result window in one
        // millisecond cannot be read, and the loop must not skip them.
        Err(SourceError::TooManyAtOneInstant {
            name: self.name.to_string(),
            at,
            limit: Self::RESULT_LIMIT,
        })
    }

    async fn make_events(&self, items: Vec<Event>) -> Result<Vec<Event>, SourceError> {
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::window::fingerprint;
    use serde_json::value::RawValue;

    #[test]
    fn entries_are_fingerprinted_by_content_and_bad_times_stand_at_the_window_start() {
        let start = DateTime::parse_from_rfc3339("2024-05-01T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = r#"{"logEventTimeStamp":"2024-05-01T10:00:00.123Z","action":"add"}"#;
        let raws = vec![
            RawValue::from_string(a.into()).unwrap(),
            RawValue::from_string(a.into()).unwrap(),
            RawValue::from_string(r#"{"action":"no time"}"#.into()).unwrap(),
        ];
        let page = FetchedPage::by_content(SourceKind::SyncLog, raws, start, sync_log_entry_time);
        assert_eq!(page.items.len(), 3);
        assert_eq!(page.marks[0], page.marks[1], "identical entries, same mark");
        assert_eq!(page.marks[0].fingerprint, fingerprint(a));
        assert_eq!(page.items[2].occurred, start);
        assert_eq!(page.bad_times, 1);
        assert!(page.items.iter().all(|e| e.kind == SourceKind::SyncLog));
    }
}
