//! The Sessions source: [`SessionsFetch`] reads `GET /v1/sessions` (sessions that began
//! in the query window) for the shared poll/commit loop of [`super::poll`]
//! ([`SessionsPoller`]), each version of a session once.
//!
//! **A session is forwarded once per version.** Sessions change after they are created
//! (scores, states, notes, events; `lastUpdated` moves). The fingerprint of a session is
//! the hash of `(sessionId, lastUpdated)` ([`session_fingerprint`]), run with unique
//! keys (see [`super::window`]): a version already forwarded is never forwarded again,
//! and a session whose `lastUpdated` moved is a new version that goes out once more,
//! whole (the SIEM sees its latest state, score and alerts; `lastUpdated` tells the
//! versions apart). A session without `lastUpdated` is versioned by its whole text.
//!
//! **Where updates are found, and the limit.** The API filters sessions by `beginTime`
//! only and orders them by `endTime` or score (`docs/api.md`, Sessions): there is no
//! "updated since". The window time of a session is therefore its `beginTime` (also the
//! event's `occurred`), and the source's `lag` is its *update window*: every poll reads
//! the sessions that began within `lag` of the poll again (the watermark never passes
//! `poll time - lag`: ARCHITECTURE.md, invariant 2) and forwards the versions it has not
//! forwarded. An update to a session that began longer than `lag` ago is not seen; the
//! default of a day (at most 30) is a cost/coverage trade-off the operator sets. The
//! checkpoint holds one fingerprint per forwarded version inside the window.
//!
//! **Time order.** The window logic wants each query's records oldest first by window
//! time, which the API cannot list. So one "page" of the loop is the whole window read
//! through the API's pages (`order_by=end_time`, `ASC`, at most 50 a page), kept as the
//! [`WINDOW_PAGE`] earliest by `(beginTime, sessionId)` and handed over sorted. A window
//! whose first page counts more than that is not read whole: its earliest part that
//! holds a full window page is found by halving the time with one-session requests (the
//! API's `totalCount`), read, and the loop continues from the newest session it got
//! (re-anchoring); so a large backlog costs about 20 counts and one read per window
//! page, not a read of everything left for each. While
//! the API pages, sessions that are updated move to the end of the `endTime` order and
//! shift the offsets; a session read twice in one read counts once (its newest version
//! is kept), and a read that holds fewer distinct sessions than the API's own count
//! says is read again, up to [`MAX_READS`] times, then taken as it is: the next poll
//! reads the window again and finds what this one missed.
//!
//! **File events** (`include_events = true`): each version forwarded is sent with the
//! file events the API returns for the session (`GET /v1/sessions/{id}/events`) as its
//! `fileEvents` array, inside the one record (a session and the activity it groups stay
//! together in the SIEM). A session the API has no events for (404: no alerts), or whose
//! events it refuses (another 4xx) or answers unreadably, goes out without `fileEvents`,
//! logged and counted (`c42fwd_source_details_missing_total`).

use crate::api::{ApiClient, ApiError, SessionKeys, SessionQuery, MAX_SESSION_PAGE_SIZE};
use crate::config::{self, SessionOptions, SourceSpec};
use crate::event::{Event, SourceKind};
use crate::metrics::{label, Metrics};
use crate::sources::poll::{api_err, FetchedPage, SourceError, WindowFetch, WindowPoller};
use crate::sources::window::{fingerprint, QueryWindow};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Polls one tenant's sessions for one configured source.
pub type SessionsPoller = WindowPoller<SessionsFetch>;

/// The most sessions one page of the loop holds (see the module docs).
pub const WINDOW_PAGE: u32 = 1_000;

/// How often one window is read when the reads hold fewer sessions than the API counts.
pub const MAX_READS: u32 = 3;

/// The most API pages of one window read (500,000 sessions at 50 a page): a bound on a
/// listing that never ends.
const MAX_PAGES_PER_READ: u32 = 10_000;

/// A session of a window read, before it is known to be new.
#[derive(Debug)]
pub struct SessionItem {
    raw: Box<RawValue>,
    id: Option<String>,
    /// Its window time: `beginTime`, or the window start when that cannot be read.
    occurred: DateTime<Utc>,
}

/// The fingerprint of one version of a session: `(sessionId, lastUpdated)`, or the text
/// when either is missing.
pub fn session_fingerprint(id: Option<&str>, last_updated: Option<i64>, raw: &str) -> u64 {
    match (id, last_updated) {
        (Some(id), Some(v)) => fingerprint(&format!("session\u{0}{id}\u{0}{v}")),
        _ => fingerprint(raw),
    }
}

/// Reads the sessions of one source for the poll loop.
pub struct SessionsFetch {
    name: Arc<str>,
    options: SessionOptions,
    /// The API page size (at most 50).
    api_page: u32,
    client: Arc<ApiClient>,
    metrics: Arc<Metrics>,
}

/// One session of a read, in the order the loop wants: `(beginTime, key)`.
type Order = (DateTime<Utc>, String);

struct Kept {
    raw: Box<RawValue>,
    id: Option<String>,
    time: Result<DateTime<Utc>, String>,
    fingerprint: u64,
    last_updated: Option<i64>,
}

/// The earliest `limit` sessions of one window read, each once. Pure.
#[derive(Default)]
struct WindowRead {
    kept: BTreeMap<Order, Kept>,
    /// The order key of each kept session id.
    by_id: HashMap<String, Order>,
    /// Every distinct session (id, or text fingerprint) read, kept or not.
    distinct: HashSet<String>,
}

impl WindowRead {
    /// Adds one session as the API listed it; a session already kept keeps its newest
    /// version.
    fn add(&mut self, window_start: DateTime<Utc>, raw: Box<RawValue>, limit: usize) {
        let k = SessionKeys::parse(raw.get());
        let fp = session_fingerprint(k.id.as_deref(), k.last_updated, raw.get());
        let key = k.id.clone().unwrap_or_else(|| format!("\u{0}{fp:016x}"));
        self.distinct.insert(key.clone());
        let sort_time = *k.begin.as_ref().unwrap_or(&window_start);
        if let Some(order) = self.by_id.get(&key) {
            let newer = match (
                self.kept.get(order).and_then(|e| e.last_updated),
                k.last_updated,
            ) {
                (Some(old), Some(new)) => new > old,
                (None, Some(_)) => true,
                _ => false,
            };
            if !newer {
                return;
            }
            let order = order.clone();
            self.kept.remove(&order);
        }
        let order = (sort_time, key.clone());
        self.by_id.insert(key, order.clone());
        self.kept.insert(
            order,
            Kept {
                raw,
                id: k.id,
                time: k.begin,
                fingerprint: fp,
                last_updated: k.last_updated,
            },
        );
        while self.kept.len() > limit {
            if let Some(((_, key), _)) = self.kept.pop_last() {
                self.by_id.remove(&key);
            }
        }
    }

    /// The page for the loop: the kept sessions from `skip` on, oldest first.
    fn into_page(self, window_start: DateTime<Utc>, skip: usize) -> FetchedPage<SessionItem> {
        let mut page = FetchedPage::default();
        for (_, k) in self.kept.into_iter().skip(skip) {
            let (raw, id) = (k.raw, k.id);
            page.push(window_start, k.fingerprint, k.time, |occurred| {
                SessionItem { raw, id, occurred }
            });
        }
        page
    }
}

/// What one read of a window found.
enum Read {
    /// Every page of the window: the earliest sessions kept, the API's largest count.
    Whole(WindowRead, u64),
    /// The first page counted more sessions than a window page holds (the read stopped
    /// there, as asked).
    Over,
}

impl SessionsFetch {
    /// How many sessions began in `[start, end)`, by the API's count (a one-session page).
    async fn count_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<u64, SourceError> {
        let query = SessionQuery {
            start,
            end,
            page: 0,
            page_size: 1,
            has_alerts: self.options.has_alerts,
        };
        let answer = self
            .client
            .query_sessions(&query)
            .await
            .map_err(|e| api_err(&self.name, e))?;
        Ok(answer.total_count.unwrap_or(answer.items.len() as u64))
    }

    /// The earliest end `e` in `(start, end]` (to the millisecond, the API's precision)
    /// such that `[start, e)` holds at least `limit` sessions by the API's count, found
    /// by halving: the window page is then read from that part alone, instead of the
    /// whole window again for each window page of a large backlog.
    async fn narrow_end(&self, q: QueryWindow, limit: u64) -> Result<DateTime<Utc>, SourceError> {
        let (mut lo, mut hi) = (q.start, q.end);
        for _ in 0..48 {
            if hi - lo <= TimeDelta::milliseconds(1) {
                break;
            }
            let mid = lo + (hi - lo) / 2;
            if self.count_between(q.start, mid).await? >= limit {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi)
    }

    /// Reads the window `q` once through the API's pages; with `stop_over`, stops after
    /// the first page when the API counts more sessions than that.
    async fn read_window(
        &self,
        q: QueryWindow,
        limit: usize,
        stop_over: Option<u64>,
    ) -> Result<Read, SourceError> {
        let mut read = WindowRead::default();
        let mut reported = 0u64;
        let mut page = 0u32;
        loop {
            let query = SessionQuery {
                start: q.start,
                end: q.end,
                page,
                page_size: self.api_page,
                has_alerts: self.options.has_alerts,
            };
            let answer = self
                .client
                .query_sessions(&query)
                .await
                .map_err(|e| api_err(&self.name, e))?;
            reported = reported.max(answer.total_count.unwrap_or(0));
            if stop_over.is_some_and(|o| page == 0 && reported > o) {
                return Ok(Read::Over);
            }
            let n = answer.items.len();
            for raw in answer.items {
                read.add(q.start, raw, limit);
            }
            // A short page ends the listing (the count is not trusted to: it can be
            // stale, and sessions begin while a client pages).
            if n < self.api_page as usize {
                return Ok(Read::Whole(read, reported));
            }
            let listed = (u64::from(page) + 1) * u64::from(self.api_page);
            let counted = answer.total_count.is_some()
                && listed >= reported.saturating_add(4 * u64::from(self.api_page));
            if counted || page >= MAX_PAGES_PER_READ {
                // Far more listed than the api counts, or an endless listing: what was
                // read goes on; the next poll reads the window again.
                tracing::warn!(
                    source = %self.name,
                    query_start = %q.start,
                    query_end = %q.end,
                    listed,
                    reported,
                    "the api kept listing full pages of sessions past its own count; the read stops here"
                );
                return Ok(Read::Whole(read, reported));
            }
            page = page.saturating_add(1);
        }
    }
}

impl WindowFetch for SessionsFetch {
    type Item = SessionItem;
    const KIND: SourceKind = SourceKind::Sessions;
    // Session retention is not documented; the config caps the start position.
    const RETENTION: Option<Duration> = None;
    const MAX_PAGE_SIZE: u32 = WINDOW_PAGE;
    // A window page is assembled here from as many API pages as it takes: no result
    // window is documented for sessions, and this one is never reached by a page.
    const RESULT_LIMIT: u64 = 1_000_000;
    const UNIQUE_KEYS: bool = true;
    // Sessions change (and so move in the API's order) between two reads.
    const ALWAYS_RE_ANCHOR: bool = true;
    // No: the whole update window is read again every poll (sessions change), and
    // nothing of it is settled.
    const CONCURRENT_CATCH_UP: bool = false;

    fn from_source(
        source: &config::Source,
        client: Arc<ApiClient>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SourceError> {
        let SourceSpec::Sessions(options) = &source.kind else {
            return Err(SourceError::WrongSourceType {
                name: source.name.clone(),
                expected: SourceKind::Sessions.as_str(),
            });
        };
        Ok(SessionsFetch {
            name: Arc::from(source.name.as_str()),
            options: *options,
            api_page: source.page_size.clamp(1, MAX_SESSION_PAGE_SIZE),
            client,
            metrics,
        })
    }

    fn window_page_size(_configured: u32) -> u32 {
        WINDOW_PAGE
    }

    async fn fetch_page(&self, q: QueryWindow) -> Result<FetchedPage<SessionItem>, SourceError> {
        let skip = q.page as usize * q.page_size as usize;
        let limit = skip + q.page_size as usize;
        // The part of the window read: all of it, or (a window with more sessions than a
        // window page) the earliest part that holds a full one.
        let mut part = q;
        let mut may_narrow = true;
        let mut reads = 0;
        loop {
            reads += 1;
            let stop_over = (may_narrow && part.end == q.end).then_some(limit as u64);
            let (read, reported) = match self.read_window(part, limit, stop_over).await? {
                Read::Whole(read, reported) => (read, reported),
                Read::Over => {
                    part.end = self.narrow_end(q, limit as u64).await?;
                    // Narrowed once per fetch; a part that is the whole window after
                    // all is read whole.
                    may_narrow = false;
                    continue;
                }
            };
            if part.end < q.end && read.kept.len() < limit {
                // The part held fewer than a full page after all (the counts moved): a
                // short page would end the whole window, so the whole window is read.
                part.end = q.end;
                continue;
            }
            let distinct = read.distinct.len() as u64;
            if distinct >= reported || reads >= MAX_READS {
                if distinct < reported {
                    tracing::warn!(
                        source = %self.name,
                        query_start = %q.start,
                        query_end = %q.end,
                        distinct,
                        reported,
                        "the sessions moved while they were paged; fewer were read than the api counts, the next poll reads the window again"
                    );
                }
                return Ok(read.into_page(q.start, skip));
            }
        }
    }

    async fn fetch_instant(
        &self,
        at: DateTime<Utc>,
    ) -> Result<FetchedPage<SessionItem>, SourceError> {
        // More sessions than a window page that began in the same nanosecond: the API
        // cannot serve them in an order the loop can resume from.
        Err(SourceError::TooManyAtOneInstant {
            name: self.name.to_string(),
            at,
            limit: u64::from(WINDOW_PAGE),
        })
    }

    async fn make_events(&self, items: Vec<SessionItem>) -> Result<Vec<Event>, SourceError> {
        let mut out = Vec::with_capacity(items.len());
        let mut missing = 0u64;
        for item in items {
            let occurred = item.occurred;
            let raw = match (self.options.include_events, item.id.as_deref()) {
                (true, Some(id)) => {
                    let events = match self.client.session_events(id).await {
                        Ok(events) => events,
                        // A refusal of this one session (a 400 for an id the API does
                        // not take, an answer it cannot read) must not hold the source
                        // back for ever: the session goes out without its events.
                        Err(e @ (ApiError::Rejected { .. } | ApiError::Decode { .. })) => {
                            tracing::warn!(
                                source = %self.name,
                                session = %id,
                                error = %e,
                                "the file events of a session could not be read; it is forwarded without them"
                            );
                            None
                        }
                        Err(e) => return Err(api_err(&self.name, e)),
                    };
                    match events.as_deref().and_then(file_events_of) {
                        Some(list) => with_file_events(item.raw, &list),
                        None => {
                            missing += 1;
                            item.raw
                        }
                    }
                }
                (true, None) => {
                    missing += 1;
                    item.raw
                }
                (false, _) => item.raw,
            };
            out.push(Event::new(SourceKind::Sessions, raw, occurred));
        }
        if missing > 0 {
            self.metrics
                .source_details_missing
                .get_or_create(&label("source", &self.name))
                .inc_by(missing);
            tracing::warn!(
                source = %self.name,
                count = missing,
                "the api returned no file events for these sessions; they are forwarded without fileEvents"
            );
        }
        Ok(out)
    }
}

/// The `fileEvents` array of a `queryResult`, as received.
fn file_events_of(query_result: &RawValue) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct QueryResult {
        #[serde(rename = "fileEvents")]
        file_events: Option<Box<RawValue>>,
    }
    serde_json::from_str::<QueryResult>(query_result.get())
        .ok()?
        .file_events
        .filter(|v| v.get().trim_start().starts_with('['))
}

/// The session object with `"fileEvents":<list>` added as its last key (the session
/// unchanged if it is not an object).
fn with_file_events(session: Box<RawValue>, list: &RawValue) -> Box<RawValue> {
    let text = session.get().trim_end();
    let Some(body) = text.strip_suffix('}') else {
        return session;
    };
    let empty = body.trim() == "{";
    let joined = format!(
        "{body}{}\"fileEvents\":{}}}",
        if empty { "" } else { "," },
        list.get()
    );
    RawValue::from_string(joined).unwrap_or(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::window::{PollCycle, WindowState};

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn session(id: &str, begin: i64, updated: i64) -> Box<RawValue> {
        RawValue::from_string(format!(
            r#"{{"sessionId":"{id}","beginTime":{begin},"lastUpdated":{updated},"states":[]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_version_is_the_id_and_last_updated() {
        let a = r#"{"sessionId":"s","lastUpdated":1,"states":["OPEN"]}"#;
        let b = r#"{"sessionId":"s","lastUpdated":1,"states":["OPEN","IN_PROGRESS"]}"#;
        assert_eq!(
            session_fingerprint(Some("s"), Some(1), a),
            session_fingerprint(Some("s"), Some(1), b),
            "the same version whatever its text"
        );
        assert_ne!(
            session_fingerprint(Some("s"), Some(1), a),
            session_fingerprint(Some("s"), Some(2), a)
        );
        assert_ne!(
            session_fingerprint(None, Some(1), a),
            session_fingerprint(None, Some(1), b),
            "without an id, the text is the version"
        );
    }

    #[test]
    fn a_read_is_sorted_by_begin_time_keeps_the_newest_copy_and_the_earliest_sessions() {
        let start = t(0);
        let mut r = WindowRead::default();
        // As the API lists them: by end time, with a session listed twice because it
        // was updated (and moved) while the read paged.
        r.add(start, session("c", 3_000, 10), 3);
        r.add(start, session("a", 1_000, 20), 3);
        r.add(start, session("d", 4_000, 30), 3);
        r.add(start, session("b", 2_000, 40), 3);
        r.add(start, session("a", 1_000, 50), 3);
        r.add(start, session("a", 1_000, 15), 3);
        assert_eq!(r.distinct.len(), 4);
        let page = r.into_page(start, 0);
        let ids: Vec<String> = page.items.iter().map(|i| i.id.clone().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"], "the three earliest by beginTime");
        assert!(page.items[0].raw.get().contains("\"lastUpdated\":50"));
        assert_eq!(page.marks[0].occurred, t(1_000));
        assert_eq!(
            page.marks[0].fingerprint,
            session_fingerprint(Some("a"), Some(50), "")
        );
    }

    /// The versioning rule end to end on the window logic: a poll reads the window; the
    /// next poll reads the same sessions, one of them updated: only the update goes out;
    /// a third poll with nothing new sends nothing; an update after the session left the
    /// update window is not seen.
    #[test]
    fn an_updated_session_goes_out_once_per_version() {
        let lag = Duration::from_secs(60);
        let mut state = WindowState::new(t(0));
        let poll = |state: &mut WindowState, now: i64, sessions: &[(&str, i64, i64)]| {
            let mut r = WindowRead::default();
            let from = state.watermark();
            for (id, begin, updated) in sessions {
                if t(*begin) >= from {
                    r.add(from, session(id, *begin, *updated), WINDOW_PAGE as usize);
                }
            }
            let page = r.into_page(from, 0);
            let mut cycle =
                PollCycle::new(state, t(now), lag, WINDOW_PAGE, 1_000_000).with_unique_keys();
            let v = cycle.on_page(state, &page.marks);
            page.items
                .iter()
                .zip(&v.forward)
                .filter(|(_, f)| **f)
                .map(|(i, _)| {
                    let k = SessionKeys::parse(i.raw.get());
                    (k.id.unwrap(), k.last_updated.unwrap())
                })
                .collect::<Vec<_>>()
        };
        let sent = poll(
            &mut state,
            30_000,
            &[("a", 1_000, 2_000), ("b", 5_000, 6_000)],
        );
        assert_eq!(sent, [("a".into(), 2_000), ("b".into(), 6_000)]);
        let sent = poll(
            &mut state,
            40_000,
            &[("a", 1_000, 35_000), ("b", 5_000, 6_000)],
        );
        assert_eq!(sent, [("a".to_string(), 35_000)], "only the new version");
        let sent = poll(
            &mut state,
            45_000,
            &[("a", 1_000, 35_000), ("b", 5_000, 6_000)],
        );
        assert!(sent.is_empty(), "no version twice: {sent:?}");
        // `b` began at 5 s; at 70 s the watermark has passed it (70 - 60 = 10 s).
        let _ = poll(
            &mut state,
            70_000,
            &[("a", 1_000, 35_000), ("b", 5_000, 6_000)],
        );
        let sent = poll(
            &mut state,
            80_000,
            &[("a", 1_000, 35_000), ("b", 5_000, 75_000)],
        );
        assert!(
            sent.is_empty(),
            "an update past the update window is not seen: {sent:?}"
        );
    }

    #[test]
    fn file_events_join_the_session_record() {
        let qr = RawValue::from_string(
            r#"{"fileEvents":[{"event":{"id":"e1"}}],"totalCount":1,"nextPgToken":null}"#.into(),
        )
        .unwrap();
        let list = file_events_of(&qr).unwrap();
        let joined = with_file_events(session("s", 1, 2), &list);
        let v: serde_json::Value = serde_json::from_str(joined.get()).unwrap();
        assert_eq!(v["fileEvents"][0]["event"]["id"], "e1");
        assert_eq!(v["sessionId"], "s");
        let empty = RawValue::from_string("{}".into()).unwrap();
        assert_eq!(
            with_file_events(empty, &list).get(),
            r#"{"fileEvents":[{"event":{"id":"e1"}}]}"#
        );
        let no_list = RawValue::from_string(r#"{"fileEvents":null}"#.into()).unwrap();
        assert!(file_events_of(&no_list).is_none());
    }
}
