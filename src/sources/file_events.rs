//! The File Events source: [`FileEventsFetch`] reads `/v2/file-events` pages for the
//! shared poll/commit loop of [`super::poll`] ([`FileEventsPoller`]).
//!
//! The window is on the insert time (`event.inserted`), the key the query sorts on:
//! an event that happened days ago on a laptop that was offline is inserted, and so
//! listed, now, inside the window; the lag covers only the time between insertion and
//! searchability. Each event is fingerprinted by its `event.id` (unique keys: an id
//! already forwarded is never forwarded again), by its text when it has none.
//!
//! # Paging by token inside the window logic
//! The poll loop asks for pages by number within one query window ([`QueryWindow`]);
//! this fetcher turns page `n` into the `pgToken` the answer to page `n - 1` carried,
//! kept per query window ([`Cursor`]) for the few windows paged lately ([`Cursors`]):
//! a catch-up reads several time slices at once ([`super::slices`]), each its own
//! query window with its own tokens. The result window of offset paging
//! does not apply to tokens, so the loop pages one query by token far past 10,000
//! results, up to [`QUERY_RESULT_LIMIT`]; there it goes on with a new query from the
//! newest event read, as at any result limit, which keeps the window logic's
//! per-query state bounded (a backlog of millions would otherwise be one query, and
//! its read counts one entry per event). A page whose token is not known (the
//! loop asks a page again after a restart of the query, a token the server refused as
//! expired) is reached by walking the query from its first page again, which costs
//! requests, never events: the walk's pages are read and dropped, only the asked page
//! is returned.
//!
//! Tokens are never written to the checkpoint. The checkpoint holds what the loop
//! commits after acknowledgement (the watermark and the fingerprints at or after it,
//! invariant 1); a restart queries again from the committed watermark with an empty
//! token, and the fingerprints drop what was already forwarded.

use crate::api::{
    file_event_time_and_id, page_token_refused, ApiClient, FileEventQuery, MAX_FILE_EVENT_PAGE_SIZE,
};
use crate::config::{self, FileEventFilters, SourceSpec};
use crate::event::{Event, SourceKind};
use crate::metrics::Metrics;
use crate::sources::poll::{api_err, FetchedPage, WindowFetch, WindowPoller};
use crate::sources::window::{fingerprint, QueryWindow, EXPORT_RESULT_LIMIT};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::sources::poll::{SourceError, RETENTION};

/// The most results one query window is paged through by token before the window
/// logic starts a new query at its newest event: five times the offset window, so
/// token paging is what reads a backlog, while the per-query memory of the window
/// logic stays a few MiB whatever the backlog.
pub const QUERY_RESULT_LIMIT: u64 = 50_000;

/// Polls one tenant's file events for one configured source.
pub type FileEventsPoller = WindowPoller<FileEventsFetch>;

/// Where the pages of the current query window are: the token of each page read so far.
#[derive(Debug, Default)]
struct Cursor {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    page_size: u32,
    /// `tokens[n]`: how to ask page `n` (`Some("")` for the first); `None`: page `n` is
    /// past the last page.
    tokens: Vec<Option<String>>,
}

impl Cursor {
    fn is_for(&self, q: &QueryWindow) -> bool {
        self.start == Some(q.start) && self.end == Some(q.end) && self.page_size == q.page_size
    }

    fn reset(&mut self, q: &QueryWindow) {
        *self = Cursor {
            start: Some(q.start),
            end: Some(q.end),
            page_size: q.page_size,
            tokens: vec![Some(String::new())],
        };
    }

    /// The token of page `n`: `Some(Some(t))` known, `Some(None)` past the end, `None`
    /// not known.
    fn token(&self, n: u32) -> Option<Option<String>> {
        self.tokens.get(n as usize).cloned()
    }

    /// Page `n` answered with `next`. Learned only where page `n`'s own token is known:
    /// a cursor made anew while the request was out (the old one let go) knows nothing
    /// of the pages before, and a gap filled with "past the end" would end the query
    /// there when one of them is asked again.
    fn learn(&mut self, n: u32, next: Option<String>) {
        let at = n as usize + 1;
        if self.tokens.len() < at {
            return;
        }
        self.tokens.truncate(at);
        self.tokens.push(next);
    }
}

/// The cursors of the query windows paged lately, the most recently used last. A
/// catch-up keeps at most twice its slice readers open, and the poll its own window:
/// [`Cursors::new`] keeps that many and a few more. A cursor let go costs requests only
/// (its window is walked from its first page again), never events.
#[derive(Debug)]
struct Cursors {
    recent: VecDeque<Cursor>,
    cap: usize,
}

impl Cursors {
    fn new(readers: usize) -> Self {
        Cursors {
            recent: VecDeque::new(),
            cap: readers.saturating_mul(2).saturating_add(2),
        }
    }

    /// The cursor of `q`'s window, a new one if it has none.
    fn of(&mut self, q: &QueryWindow) -> &mut Cursor {
        match self.recent.iter().position(|c| c.is_for(q)) {
            Some(i) => {
                if i + 1 != self.recent.len() {
                    let c = self.recent.remove(i).expect("found above");
                    self.recent.push_back(c);
                }
            }
            None => {
                if self.recent.len() >= self.cap {
                    self.recent.pop_front();
                }
                let mut c = Cursor::default();
                c.reset(q);
                self.recent.push_back(c);
            }
        }
        self.recent
            .back_mut()
            .expect("one was pushed or moved last")
    }
}

/// Reads the file events of one source (its filters) for the poll loop.
pub struct FileEventsFetch {
    name: Arc<str>,
    filters: FileEventFilters,
    client: Arc<ApiClient>,
    cursors: Mutex<Cursors>,
}

/// What one token page holds.
struct TokenPage {
    events: Vec<Box<RawValue>>,
    next: Option<String>,
    total: Option<u64>,
}

impl FileEventsFetch {
    fn cursors(&self) -> std::sync::MutexGuard<'_, Cursors> {
        self.cursors.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn request(
        &self,
        q: &QueryWindow,
        token: &str,
    ) -> Result<TokenPage, crate::api::ApiError> {
        let page = self
            .client
            .search_file_events(&FileEventQuery {
                start: q.start,
                end: q.end,
                page_size: q.page_size,
                page_token: token,
                filters: &self.filters,
            })
            .await?;
        Ok(TokenPage {
            events: page.events,
            next: page.next_page_token,
            total: page.total_count,
        })
    }

    /// Page `q.page` of `q`, by its token, walking the query from its first page where
    /// the token is not known; `None`: the query has no such page (it ended before).
    async fn token_page(&self, q: &QueryWindow) -> Result<Option<TokenPage>, SourceError> {
        let mut walked_again = false;
        loop {
            let known = {
                let mut cursors = self.cursors();
                let c = cursors.of(q);
                // The nearest page at or before the asked one whose token is known.
                let mut n = q.page;
                loop {
                    match c.token(n) {
                        Some(t) => break (n, t),
                        None if n == 0 => break (0, Some(String::new())),
                        None => n -= 1,
                    }
                }
            };
            let (mut n, mut token) = known;
            if n < q.page && n > 0 {
                tracing::debug!(source = %self.name, from = n, to = q.page, "walking the file event query to a page whose token is not known");
            }
            loop {
                let Some(t) = token else {
                    return Ok(None);
                };
                let page = match self.request(q, &t).await {
                    Ok(p) => p,
                    Err(e) if page_token_refused(&e) && !walked_again && !t.is_empty() => {
                        // Expired (a long stall behind a full sink queue) or forgotten by
                        // the server: start the query over, once.
                        tracing::info!(source = %self.name, page = n, "page token refused by the api; reading the query again from its first page");
                        walked_again = true;
                        self.cursors().of(q).reset(q);
                        break;
                    }
                    Err(e) => return Err(api_err(&self.name, e)),
                };
                self.cursors().of(q).learn(n, page.next.clone());
                if n == q.page {
                    return Ok(Some(page));
                }
                n += 1;
                token = page.next;
            }
        }
    }
}

impl WindowFetch for FileEventsFetch {
    type Item = Event;
    const KIND: SourceKind = SourceKind::FileEvents;
    const RETENTION: Option<Duration> = Some(RETENTION);
    const MAX_PAGE_SIZE: u32 = MAX_FILE_EVENT_PAGE_SIZE;
    // Token paging has no result window; the limit bounds what one query of the window
    // logic keeps per result (its read counts and pruned fingerprints, about 50 bytes
    // each: invariant 3), and a query that reaches it goes on from its newest event.
    const RESULT_LIMIT: u64 = QUERY_RESULT_LIMIT;
    const UNIQUE_KEYS: bool = true;
    const ALWAYS_RE_ANCHOR: bool = false;
    // Each slice is its own query window, with its own page-token cursor (`Cursors`).
    const CONCURRENT_CATCH_UP: bool = true;

    fn from_source(
        source: &config::Source,
        client: Arc<ApiClient>,
        _metrics: Arc<Metrics>,
    ) -> Result<Self, SourceError> {
        let SourceSpec::FileEvents(filters) = &source.kind else {
            return Err(SourceError::WrongSourceType {
                name: source.name.clone(),
                expected: SourceKind::FileEvents.as_str(),
            });
        };
        Ok(FileEventsFetch {
            name: Arc::from(source.name.as_str()),
            filters: filters.clone(),
            cursors: Mutex::new(Cursors::new(client.limiter().max())),
            client,
        })
    }

    async fn fetch_page(&self, q: QueryWindow) -> Result<FetchedPage<Event>, SourceError> {
        let Some(page) = self.token_page(&q).await? else {
            return Ok(FetchedPage::default());
        };
        Ok(FetchedPage {
            // The count is of the query at the time of each request: later pages may
            // count events that became visible behind the cursor since the first, so
            // only the first page's is held against the page it came with.
            reported_total: page.total.filter(|_| q.page == 0),
            ..page_of(page.events, q.start)
        })
    }

    /// Not asked for (there is no result limit), but complete should it be: every page
    /// of `[at, at + 1ns)` by token, up to the export limit.
    async fn fetch_instant(&self, at: DateTime<Utc>) -> Result<FetchedPage<Event>, SourceError> {
        let q = QueryWindow {
            start: at,
            end: at + TimeDelta::nanoseconds(1),
            page: 0,
            page_size: MAX_FILE_EVENT_PAGE_SIZE,
        };
        let mut raws = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .request(&q, &token)
                .await
                .map_err(|e| api_err(&self.name, e))?;
            raws.extend(page.events);
            if raws.len() as u64 > EXPORT_RESULT_LIMIT {
                return Err(SourceError::TooManyAtOneInstant {
                    name: self.name.to_string(),
                    at,
                    limit: EXPORT_RESULT_LIMIT,
                });
            }
            match page.next {
                Some(t) => token = t,
                None => break,
            }
        }
        Ok(page_of(raws, at))
    }

    async fn make_events(&self, items: Vec<Event>) -> Result<Vec<Event>, SourceError> {
        Ok(items)
    }
}

/// One page as the loop takes it: each event's insert time (an unreadable one stands at
/// the window start, counted by the loop) and its fingerprint, of its `event.id`.
fn page_of(raws: Vec<Box<RawValue>>, window_start: DateTime<Utc>) -> FetchedPage<Event> {
    let mut page = FetchedPage::default();
    for raw in raws {
        let (time, id) = file_event_time_and_id(raw.get());
        let fp = match id {
            Some(id) => fingerprint(&id),
            None => fingerprint(raw.get()),
        };
        page.push(window_start, fp, time, |occurred| {
            Event::new(SourceKind::FileEvents, raw, occurred)
        });
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn pages_are_fingerprinted_by_id_and_timed_by_insertion() {
        let raws = vec![
            RawValue::from_string(
                r#"{"@timestamp":"2026-01-01T00:00:00Z","event":{"id":"a","inserted":"2026-01-02T00:00:00.5Z"}}"#.into(),
            )
            .unwrap(),
            RawValue::from_string(
                r#"{"@timestamp":"2026-01-01T00:00:01Z","event":{"id":"a","inserted":"2026-01-02T00:00:00.5Z"},"x":1}"#.into(),
            )
            .unwrap(),
            RawValue::from_string(r#"{"event":{"id":"b"}}"#.into()).unwrap(),
        ];
        let start = t("2026-01-02T00:00:00Z");
        let page = page_of(raws, start);
        assert_eq!(page.marks[0].occurred, t("2026-01-02T00:00:00.5Z"));
        // the same id, whatever the text: the same fingerprint
        assert_eq!(page.marks[0].fingerprint, page.marks[1].fingerprint);
        assert_eq!(page.marks[0].fingerprint, fingerprint("a"));
        // no insert time: the window start stands in, counted
        assert_eq!(page.marks[2].occurred, start);
        assert!(!page.marks[2].time_known);
        assert_eq!(page.bad_times, 1);
        assert_eq!(page.items.len(), 3, "nothing dropped");
    }

    #[test]
    fn the_cursor_knows_the_tokens_of_one_window_only() {
        let q = |page| QueryWindow {
            start: t("2026-01-01T00:00:00Z"),
            end: t("2026-01-01T01:00:00Z"),
            page,
            page_size: 100,
        };
        let mut c = Cursor::default();
        assert!(!c.is_for(&q(0)));
        c.reset(&q(0));
        assert_eq!(c.token(0), Some(Some(String::new())));
        assert_eq!(c.token(1), None);
        c.learn(0, Some("t1".into()));
        c.learn(1, Some("t2".into()));
        assert_eq!(c.token(2), Some(Some("t2".into())));
        c.learn(2, None);
        assert_eq!(c.token(3), Some(None), "past the last page");
        // asking page 1 again forgets what came after it
        c.learn(0, Some("t1b".into()));
        assert_eq!(c.token(1), Some(Some("t1b".into())));
        assert_eq!(c.token(2), None);
        let mut other = q(0);
        other.page_size = 50;
        assert!(!c.is_for(&other));
        // A cursor that does not know page 4 learns nothing from its answer: no gap of
        // "past the end" before it.
        c.reset(&q(0));
        c.learn(4, Some("t5".into()));
        assert_eq!(c.token(1), None);
        assert_eq!(c.token(5), None);
    }

    #[test]
    fn a_cursor_let_go_while_its_request_was_out_leaves_no_false_end() {
        let q = |minute, page| QueryWindow {
            start: t("2026-01-01T00:00:00Z") + TimeDelta::minutes(minute),
            end: t("2026-01-01T01:00:00Z"),
            page,
            page_size: 100,
        };
        let mut cs = Cursors::new(1);
        cs.of(&q(0, 0)).learn(0, Some("a1".into()));
        // Page 3 of window 0 is asked; meanwhile four other windows let its cursor go.
        for m in 1..=4 {
            cs.of(&q(m, 0));
        }
        assert_eq!(cs.recent.len(), 4, "bounded");
        // The answer comes back to a new cursor, which learns nothing from it.
        cs.of(&q(0, 3)).learn(3, Some("a4".into()));
        let c = cs.of(&q(0, 1));
        assert_eq!(c.token(0), Some(Some(String::new())));
        assert_eq!(c.token(1), None, "not known: walked again, not the end");
        assert_eq!(c.token(4), None);
    }
}
