//! The window logic of DESIGN invariant 2: which events to forward, and where the next
//! query starts. Pure: no I/O, no clock, no async; the poller feeds it what the API
//! returned and does what it says.
//!
//! # The state
//! [`WindowState`] is a `watermark` plus the fingerprints of the events at or after the
//! watermark that were already forwarded.
//!
//! **Invariant:** every event that occurred before the watermark was forwarded, and
//! every forwarded event at or after it has its fingerprint in the state.
//!
//! A fingerprint is the xxh3-64 of the event's raw JSON text. Audit events carry no id,
//! and two distinct events *can* be byte-identical (same content, same timestamp), so
//! fingerprints form a multiset: fingerprint -> how many copies were forwarded. When a
//! window is read again, the n-th copy of a fingerprint in that read is skipped only
//! if n is at most the stored count; copies beyond that are new and go out.
//!
//! # One poll ([`PollCycle`])
//! A poll at time P queries `[watermark, P)` (start inclusive) in pages of `page_size`,
//! oldest first. After a page whose newest event occurred at T, every event before
//! `min(T, P - lag)` is known to be read (events before `P - lag` were all visible when
//! the query ran, and the listing is in time order), so the watermark moves there (never
//! back) and older fingerprints are pruned. When the query is exhausted, the watermark
//! moves to `P - lag`: the last `lag` of time is read again next poll, which is how late
//! events are caught, and the fingerprints keep them from being sent twice.
//!
//! # Splitting at the result limit
//! `search-audit-log` serves at most 10,000 results of one query. When the next page
//! would cross that limit (or the server says it did), the query is split: a new query
//! starts at the time of the newest event read (inclusive: events at that very instant
//! may straddle the cut; fingerprints keep them from going out twice). Each split
//! strictly advances the start, so a poll always terminates; the one case where it
//! cannot advance (more results than the limit at one single instant) is handed to the
//! caller as [`Next::ExportInstant`], to be read through the export endpoint.
//!
//! Within the live region (events after `P - lag`), late events are still being
//! inserted while we page; an insertion before the current page shifts offsets, and a
//! shifted event would be counted twice in one read. There a full page is therefore
//! followed by a new query from its newest event instead of by the next offset page.
//! A source whose records can also leave the result set while a poll pages (alerts: a
//! state filter stops matching, an alert is deleted) would see offsets shift the other
//! way and skip a record; it polls with [`PollCycle::with_re_anchoring`], which
//! re-anchors after every full page, settled or not. Re-anchoring stops only where it
//! cannot advance (a whole page at one instant), and there offset paging takes over.
//!
//! # Records with an id
//! Alerts carry an id, and an alert's text changes when its state does. Their fingerprint
//! is the hash of the id, and the poll runs with [`PollCycle::with_unique_keys`]: a key
//! already forwarded is never forwarded again, however many copies a read returns (the
//! multiset rule would let a second copy in one read through).

use crate::checkpoint::SeenEvent;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::time::Duration;
use xxhash_rust::xxh3::xxh3_64;

/// The most results `search-audit-log` serves for one query (seeds 000 and 002).
pub const SEARCH_RESULT_LIMIT: u64 = 10_000;

/// The most results `search-results-export` serves for one query.
pub const EXPORT_RESULT_LIMIT: u64 = 100_000;

/// The fingerprint of an event: xxh3-64 of its raw JSON text, byte for byte.
pub fn fingerprint(raw_json: &str) -> u64 {
    xxh3_64(raw_json.as_bytes())
}

/// What the window logic needs to know about one event of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageEvent {
    pub fingerprint: u64,
    /// When it occurred (for an event whose timestamp cannot be parsed, the caller passes
    /// the start of the query window, and `time_known` is false).
    pub occurred: DateTime<Utc>,
    /// Whether `occurred` is the event's own time. An event whose time could not be read
    /// is never skipped as "before the watermark" and never moves the query forward (its
    /// time is a stand-in); its fingerprint is kept against the poll time, so that the
    /// polls that still return it (while its true, unknown time is inside their window)
    /// recognise it instead of sending it again.
    pub time_known: bool,
}

impl PageEvent {
    pub fn new(raw_json: &str, occurred: DateTime<Utc>) -> Self {
        PageEvent {
            fingerprint: fingerprint(raw_json),
            occurred,
            time_known: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    count: u32,
    occurred: DateTime<Utc>,
}

/// Watermark plus the multiset of fingerprints of forwarded events at or after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    watermark: DateTime<Utc>,
    seen: HashMap<u64, Seen>,
}

impl WindowState {
    /// A fresh state: nothing before `watermark` will be read.
    pub fn new(watermark: DateTime<Utc>) -> Self {
        WindowState {
            watermark,
            seen: HashMap::new(),
        }
    }

    /// Rebuilds the state saved in a checkpoint. Fingerprints before the watermark (which
    /// a correct checkpoint does not hold) are dropped; repeated hashes add up.
    pub fn restore(watermark: DateTime<Utc>, fingerprints: &[SeenEvent]) -> Self {
        let mut state = WindowState::new(watermark);
        for s in fingerprints.iter().filter(|s| s.time >= watermark) {
            let e = state.seen.entry(s.hash).or_insert(Seen {
                count: 0,
                occurred: s.time,
            });
            e.count = e.count.saturating_add(s.count);
        }
        state
    }

    pub fn watermark(&self) -> DateTime<Utc> {
        self.watermark
    }

    /// The fingerprints, sorted by (time, hash) so that checkpoints are deterministic.
    pub fn fingerprints(&self) -> Vec<SeenEvent> {
        let mut v: Vec<SeenEvent> = self
            .seen
            .iter()
            .map(|(&hash, s)| SeenEvent {
                hash,
                time: s.occurred,
                count: s.count,
            })
            .collect();
        v.sort_by_key(|s| (s.time, s.hash));
        v
    }

    /// How many distinct fingerprints are held.
    pub fn fingerprint_count(&self) -> usize {
        self.seen.len()
    }

    /// How many copies of this fingerprint were forwarded (0 when unknown).
    pub fn forwarded_copies(&self, fingerprint: u64) -> u32 {
        self.seen.get(&fingerprint).map_or(0, |s| s.count)
    }

    /// Moves the watermark to `to` if that is later (it never moves back) and prunes the
    /// fingerprints of events before it. Returns whether the watermark moved.
    pub fn advance_to(&mut self, to: DateTime<Utc>) -> bool {
        if to <= self.watermark {
            return false;
        }
        self.watermark = to;
        self.seen.retain(|_, s| s.occurred >= to);
        true
    }

    /// Decides whether one event of a read is new, and records it if so. `read_counts`
    /// counts the copies of each fingerprint seen so far in the current read (one query).
    /// With `unique`, a fingerprint identifies one record, forwarded at most once.
    fn admit(&mut self, read_counts: &mut HashMap<u64, u32>, ev: PageEvent, unique: bool) -> bool {
        if ev.occurred < self.watermark {
            // Everything before the watermark was forwarded already (state invariant);
            // a server that rounds the query start may hand such events back.
            return false;
        }
        let n = read_counts.entry(ev.fingerprint).or_insert(0);
        *n += 1;
        let seen = self.seen.entry(ev.fingerprint).or_insert(Seen {
            count: 0,
            occurred: ev.occurred,
        });
        if *n <= seen.count || (unique && seen.count > 0) {
            false
        } else {
            seen.count += 1;
            true
        }
    }
}

/// One request the poller should make: `search-audit-log` over `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// 0-based page number.
    pub page: u32,
    pub page_size: u32,
}

/// What the poller does after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Request this page next.
    Fetch(QueryWindow),
    /// More results than the search limit occurred at this single instant: read
    /// `[at, at + 1ns)` through the export endpoint and hand it to
    /// [`PollCycle::on_export`].
    ExportInstant { at: DateTime<Utc> },
    /// The poll has read everything up to its poll time.
    Done,
}

/// The verdict on one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageVerdict {
    /// One entry per event of the page: forward it (`true`) or skip it as already sent.
    pub forward: Vec<bool>,
    /// How many events were skipped.
    pub duplicates: usize,
    /// Whether the query window was split at the result limit after this page.
    pub split: bool,
    /// Whether the watermark moved.
    pub advanced: bool,
    pub next: Next,
}

/// The state machine of one poll. See the module documentation.
#[derive(Debug, Clone)]
pub struct PollCycle {
    poll_time: DateTime<Utc>,
    /// `poll_time - lag`: every event before it was visible when the poll started.
    settled_before: DateTime<Utc>,
    page_size: u32,
    limit: u64,
    query_start: DateTime<Utc>,
    page: u32,
    read_counts: HashMap<u64, u32>,
    /// Newest event time read in the current query.
    newest_in_query: Option<DateTime<Utc>>,
    splits: u32,
    /// Fingerprints are record keys, not content hashes (see the module docs).
    unique_keys: bool,
    /// Re-anchor after every full page, not only in the live region.
    always_re_anchor: bool,
}

impl PollCycle {
    /// Starts a poll at `poll_time`. `limit` is the result limit of one query
    /// ([`SEARCH_RESULT_LIMIT`], or a smaller one learned from the server).
    pub fn new(
        state: &WindowState,
        poll_time: DateTime<Utc>,
        lag: Duration,
        page_size: u32,
        limit: u64,
    ) -> Self {
        let lag = TimeDelta::from_std(lag).unwrap_or(TimeDelta::MAX);
        let settled_before = poll_time
            .checked_sub_signed(lag)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let limit = limit.max(1);
        PollCycle {
            poll_time,
            settled_before,
            page_size: page_size.clamp(1, u32::try_from(limit).unwrap_or(u32::MAX)),
            limit,
            query_start: state.watermark(),
            page: 0,
            read_counts: HashMap::new(),
            newest_in_query: None,
            splits: 0,
            unique_keys: false,
            always_re_anchor: false,
        }
    }

    /// Follows every full page by a new query from its newest event, settled or not
    /// (for records that can leave the result set while a poll pages; see the module
    /// docs).
    pub fn with_re_anchoring(mut self) -> Self {
        self.always_re_anchor = true;
        self
    }

    /// Treats fingerprints as record keys: each is forwarded at most once (see the
    /// module docs, "Records with an id").
    pub fn with_unique_keys(mut self) -> Self {
        self.unique_keys = true;
        self
    }

    /// The request to make now.
    pub fn current(&self) -> QueryWindow {
        QueryWindow {
            start: self.query_start,
            end: self.poll_time.max(self.query_start),
            page: self.page,
            page_size: self.page_size,
        }
    }

    /// The result limit this cycle believes in (smaller than the one it was given when
    /// the server refused a page earlier): pass it to the next cycle.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many times this poll split its query window at the result limit.
    pub fn splits(&self) -> u32 {
        self.splits
    }

    /// `poll_time - lag`.
    pub fn settled_before(&self) -> DateTime<Utc> {
        self.settled_before
    }

    /// Takes the page returned for [`Self::current`]: decides which events are new
    /// (recording them in `state`), moves the watermark, and says what comes next.
    pub fn on_page(&mut self, state: &mut WindowState, events: &[PageEvent]) -> PageVerdict {
        let poll_time = self.poll_time;
        let forward: Vec<bool> = events
            .iter()
            .map(|&ev| {
                // The poll time is at or after the watermark (the watermark never passes
                // `poll_time - lag` of an earlier poll), so an event of unknown time is
                // judged by its fingerprint alone.
                let ev = if ev.time_known {
                    ev
                } else {
                    PageEvent {
                        occurred: poll_time,
                        ..ev
                    }
                };
                state.admit(&mut self.read_counts, ev, self.unique_keys)
            })
            .collect();
        let duplicates = forward.iter().filter(|f| !**f).count();
        // Listings are in time order, so the newest is the last; `max` and the filter keep
        // an event of unknown time (its stand-in time) from moving the query.
        if let Some(newest) = events
            .iter()
            .filter(|e| e.time_known)
            .map(|e| e.occurred)
            .max()
        {
            self.newest_in_query = Some(self.newest_in_query.map_or(newest, |n| n.max(newest)));
        }

        if events.len() < self.page_size as usize {
            // Exhausted: every event visible at request time in [query_start, poll_time)
            // was read, and earlier queries of this poll read the rest.
            let advanced = state.advance_to(self.settled_before);
            return PageVerdict {
                forward,
                duplicates,
                split: false,
                advanced,
                next: Next::Done,
            };
        }

        let newest = self.newest_in_query.unwrap_or(self.query_start);
        let advanced = state.advance_to(newest.min(self.settled_before));
        let next_page_end = (u64::from(self.page) + 2) * u64::from(self.page_size);
        let (split, next) = if next_page_end > self.limit {
            self.split_at(newest)
        } else if (self.always_re_anchor || newest >= self.settled_before)
            && newest > self.query_start
        {
            // Live region (or records that can vanish): re-anchor instead of paging by
            // offset (see module docs).
            self.restart_query_at(newest);
            (false, Next::Fetch(self.current()))
        } else {
            self.page += 1;
            (false, Next::Fetch(self.current()))
        };
        PageVerdict {
            forward,
            duplicates,
            split,
            advanced,
            next,
        }
    }

    /// The server refused the current page because it lies past its result window
    /// (Incydr omits `events`; legacy answers 400 "Result window is too large"). Learns
    /// the smaller limit and splits the query. Returns what to do next.
    pub fn on_past_result_window(&mut self) -> Next {
        let served = u64::from(self.page) * u64::from(self.page_size);
        if served == 0 {
            // Not even the first page fits: the server's limit is below our page size.
            self.page_size = (self.page_size / 2).max(1);
            self.limit = u64::from(self.page_size);
            return Next::Fetch(self.current());
        }
        self.limit = served;
        let newest = self.newest_in_query.unwrap_or(self.query_start);
        self.split_at(newest).1
    }

    /// Takes everything that occurred at `at` (as read through the export endpoint after
    /// [`Next::ExportInstant`]): decides which events are new and moves past the instant.
    /// The caller must have checked that the export was complete (below its own limit).
    pub fn on_export(
        &mut self,
        state: &mut WindowState,
        at: DateTime<Utc>,
        events: &[PageEvent],
    ) -> PageVerdict {
        // A new query: its own read counts.
        self.read_counts.clear();
        let forward: Vec<bool> = events
            .iter()
            .map(|&ev| state.admit(&mut self.read_counts, ev, self.unique_keys))
            .collect();
        let duplicates = forward.iter().filter(|f| !**f).count();
        let after = at + TimeDelta::nanoseconds(1);
        let advanced = state.advance_to(after.min(self.settled_before));
        self.restart_query_at(after);
        let next = if after >= self.poll_time {
            Next::Done
        } else {
            Next::Fetch(self.current())
        };
        PageVerdict {
            forward,
            duplicates,
            split: false,
            advanced,
            next,
        }
    }

    fn split_at(&mut self, newest: DateTime<Utc>) -> (bool, Next) {
        if newest <= self.query_start {
            // Every result of the query window occurred at one instant: a new window from
            // that instant would be the same window again.
            return (false, Next::ExportInstant { at: newest });
        }
        self.splits += 1;
        self.restart_query_at(newest);
        (true, Next::Fetch(self.current()))
    }

    fn restart_query_at(&mut self, start: DateTime<Utc>) {
        self.query_start = start;
        self.page = 0;
        self.read_counts.clear();
        self.newest_in_query = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn secs(n: i64) -> DateTime<Utc> {
        t("2024-05-01T00:00:00Z") + TimeDelta::seconds(n)
    }

    fn raw(id: u32, at: DateTime<Utc>) -> String {
        format!(
            r#"{{"type$":"audit_log::logged_in/1","actorId":"{id}","timestamp":"{}"}}"#,
            at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )
    }

    fn ev(id: u32, at: DateTime<Utc>) -> PageEvent {
        PageEvent::new(&raw(id, at), at)
    }

    /// A toy server: the events visible at a time, in time order; serves pages of
    /// `search-audit-log` over `[start, end)` with a result limit, and exports.
    struct Server {
        events: Vec<(PageEvent, DateTime<Utc>)>, // (event, visible from)
        limit: u64,
    }

    enum Reply {
        Page(Vec<PageEvent>),
        PastWindow,
    }

    impl Server {
        fn visible(
            &self,
            now: DateTime<Utc>,
            start: DateTime<Utc>,
            end: DateTime<Utc>,
        ) -> Vec<PageEvent> {
            let mut v: Vec<PageEvent> = self
                .events
                .iter()
                .filter(|(e, vis)| *vis <= now && e.occurred >= start && e.occurred < end)
                .map(|(e, _)| *e)
                .collect();
            v.sort_by_key(|e| e.occurred);
            v
        }

        fn search(&self, now: DateTime<Utc>, q: QueryWindow) -> Reply {
            let from = u64::from(q.page) * u64::from(q.page_size);
            if from + u64::from(q.page_size) > self.limit {
                return Reply::PastWindow;
            }
            let v = self.visible(now, q.start, q.end);
            Reply::Page(
                v.into_iter()
                    .skip(from as usize)
                    .take(q.page_size as usize)
                    .collect(),
            )
        }
    }

    struct PollResult {
        forwarded: Vec<PageEvent>,
        splits: u32,
        requests: u32,
        limit: u64,
    }

    /// Runs one poll to completion against the toy server, with all requests at `now`.
    fn poll(
        state: &mut WindowState,
        server: &Server,
        now: DateTime<Utc>,
        lag_s: u64,
        page_size: u32,
        limit: u64,
    ) -> PollResult {
        poll_with_clock(
            state,
            server,
            now,
            TimeDelta::zero(),
            lag_s,
            page_size,
            limit,
        )
    }

    /// Like `poll`, but the server's clock advances by `step` at every request, so that
    /// late events become visible while the poll pages through the live region.
    fn poll_with_clock(
        state: &mut WindowState,
        server: &Server,
        now: DateTime<Utc>,
        step: TimeDelta,
        lag_s: u64,
        page_size: u32,
        limit: u64,
    ) -> PollResult {
        let mut clock = now;
        let mut cycle = PollCycle::new(state, now, Duration::from_secs(lag_s), page_size, limit);
        let mut forwarded = Vec::new();
        let mut requests = 0;
        let mut next = Next::Fetch(cycle.current());
        loop {
            requests += 1;
            clock += step;
            assert!(requests < 10_000, "poll does not terminate");
            let before = state.watermark();
            let verdict = match next {
                Next::Done => break,
                Next::Fetch(q) => match server.search(clock, q) {
                    Reply::PastWindow => {
                        next = cycle.on_past_result_window();
                        continue;
                    }
                    Reply::Page(page) => {
                        let v = cycle.on_page(state, &page);
                        forwarded.extend(
                            page.iter()
                                .zip(&v.forward)
                                .filter(|(_, f)| **f)
                                .map(|(e, _)| *e),
                        );
                        v
                    }
                },
                Next::ExportInstant { at } => {
                    let page = server.visible(clock, at, at + TimeDelta::nanoseconds(1));
                    let v = cycle.on_export(state, at, &page);
                    forwarded.extend(
                        page.iter()
                            .zip(&v.forward)
                            .filter(|(_, f)| **f)
                            .map(|(e, _)| *e),
                    );
                    v
                }
            };
            assert!(state.watermark() >= before, "watermark moved back");
            next = verdict.next;
        }
        PollResult {
            forwarded,
            splits: cycle.splits(),
            requests,
            limit: cycle.limit(),
        }
    }

    fn sorted(mut v: Vec<PageEvent>) -> Vec<PageEvent> {
        v.sort_by_key(|e| (e.occurred, e.fingerprint));
        v
    }

    #[test]
    fn fingerprint_is_xxh3_of_the_raw_text() {
        assert_eq!(fingerprint("{}"), xxh3_64(b"{}"));
        assert_ne!(fingerprint(r#"{"a":1}"#), fingerprint(r#"{"a": 1}"#));
    }

    #[test]
    fn first_poll_forwards_everything_and_moves_watermark_to_poll_time_minus_lag() {
        let server = Server {
            events: (0..10)
                .map(|i| (ev(i, secs(i as i64)), secs(i as i64)))
                .collect(),
            limit: SEARCH_RESULT_LIMIT,
        };
        let mut state = WindowState::new(secs(0));
        let r = poll(&mut state, &server, secs(100), 5, 4, SEARCH_RESULT_LIMIT);
        assert_eq!(r.forwarded.len(), 10);
        assert_eq!(state.watermark(), secs(95));
        assert_eq!(
            state.fingerprint_count(),
            0,
            "nothing at or after the watermark"
        );
        let r = poll(&mut state, &server, secs(110), 5, 4, SEARCH_RESULT_LIMIT);
        assert!(r.forwarded.is_empty());
    }

    #[test]
    fn late_events_inside_the_lag_are_caught_once() {
        // e1 occurs at 50 but only shows up at 53 (lag 5).
        let e0 = ev(0, secs(49));
        let e1 = ev(1, secs(50));
        let e2 = ev(2, secs(51));
        let server = Server {
            events: vec![(e0, secs(49)), (e1, secs(53)), (e2, secs(51))],
            limit: SEARCH_RESULT_LIMIT,
        };
        let mut state = WindowState::new(secs(0));
        let r = poll(&mut state, &server, secs(52), 5, 100, SEARCH_RESULT_LIMIT);
        assert_eq!(r.forwarded, vec![e0, e2]);
        assert_eq!(state.watermark(), secs(47));
        let r = poll(&mut state, &server, secs(54), 5, 100, SEARCH_RESULT_LIMIT);
        assert_eq!(
            r.forwarded,
            vec![e1],
            "late event caught, the others not resent"
        );
        let r = poll(&mut state, &server, secs(70), 5, 100, SEARCH_RESULT_LIMIT);
        assert!(r.forwarded.is_empty());
        assert_eq!(state.watermark(), secs(65));
    }

    #[test]
    fn equal_timestamps_across_a_page_boundary() {
        // Five distinct events at the same instant, page size 2, while the poll time is
        // close (live region): re-anchoring at that instant must not lose or repeat any.
        let at = secs(50);
        let evs: Vec<PageEvent> = (0..5).map(|i| ev(i, at)).collect();
        let server = Server {
            events: evs.iter().map(|e| (*e, at)).collect(),
            limit: SEARCH_RESULT_LIMIT,
        };
        let mut state = WindowState::new(secs(0));
        let r = poll(&mut state, &server, secs(51), 5, 2, SEARCH_RESULT_LIMIT);
        assert_eq!(sorted(r.forwarded), sorted(evs.clone()));
        let r = poll(&mut state, &server, secs(52), 5, 2, SEARCH_RESULT_LIMIT);
        assert!(r.forwarded.is_empty());
        // settled region too: poll long after
        let mut state = WindowState::new(secs(0));
        let r = poll(&mut state, &server, secs(500), 5, 2, SEARCH_RESULT_LIMIT);
        assert_eq!(sorted(r.forwarded), sorted(evs));
    }

    #[test]
    fn nanosecond_timestamps_at_the_watermark() {
        // Two events one nanosecond apart, the watermark lands exactly on the first.
        let a = t("2024-05-01T00:00:10.123456789Z");
        let b = t("2024-05-01T00:00:10.123456790Z");
        let ea = ev(1, a);
        let eb = ev(2, b);
        let server = Server {
            events: vec![(ea, a), (eb, b)],
            limit: SEARCH_RESULT_LIMIT,
        };
        let mut state = WindowState::new(secs(0));
        // page size 1 forces a watermark move to `a` after the first page
        let r = poll(&mut state, &server, secs(1000), 5, 1, SEARCH_RESULT_LIMIT);
        assert_eq!(r.forwarded, vec![ea, eb]);
        // restart right at `a` with its fingerprint: `a` is not resent, `b` is not lost
        let mut state = WindowState::restore(
            a,
            &[SeenEvent {
                hash: ea.fingerprint,
                time: a,
                count: 1,
            }],
        );
        let r = poll(&mut state, &server, secs(1000), 5, 1, SEARCH_RESULT_LIMIT);
        assert_eq!(r.forwarded, vec![eb]);
    }

    #[test]
    fn byte_identical_events_are_a_multiset() {
        let at = secs(50);
        let same = ev(7, at);
        let other = ev(8, at);
        // two identical copies visible at first, a third identical one arrives late
        let mut server = Server {
            events: vec![(same, at), (same, at), (other, at)],
            limit: SEARCH_RESULT_LIMIT,
        };
        let mut state = WindowState::new(secs(0));
        let r = poll(&mut state, &server, secs(52), 5, 100, SEARCH_RESULT_LIMIT);
        assert_eq!(r.forwarded.len(), 3, "both identical copies go out");
        assert_eq!(state.forwarded_copies(same.fingerprint), 2);
        let r = poll(&mut state, &server, secs(53), 5, 100, SEARCH_RESULT_LIMIT);
        assert!(
            r.forwarded.is_empty(),
            "re-reading the window resends nothing"
        );
        server.events.push((same, secs(53)));
        let r = poll(&mut state, &server, secs(54), 5, 100, SEARCH_RESULT_LIMIT);
        assert_eq!(r.forwarded, vec![same], "the third copy is new");
        assert_eq!(state.forwarded_copies(same.fingerprint), 3);
    }

    #[test]
    fn window_is_split_at_the_result_limit() {
        // 25,000 events, one per millisecond, long settled: the 10,000 limit forces splits.
        let base = secs(0);
        let evs: Vec<PageEvent> = (0..25_000u32)
            .map(|i| ev(i, base + TimeDelta::milliseconds(i64::from(i))))
            .collect();
        let server = Server {
            events: evs.iter().map(|e| (*e, e.occurred)).collect(),
            limit: SEARCH_RESULT_LIMIT,
        };
        let mut state = WindowState::new(base);
        let r = poll(
            &mut state,
            &server,
            secs(3600),
            60,
            1000,
            SEARCH_RESULT_LIMIT,
        );
        assert_eq!(r.forwarded.len(), 25_000);
        assert_eq!(sorted(r.forwarded), sorted(evs));
        assert_eq!(r.splits, 2);
        assert_eq!(state.watermark(), secs(3540));
    }

    #[test]
    fn split_with_equal_timestamps_at_the_cut() {
        // The 10th..12th results share an instant; the limit is 10 results per query.
        let mut evs = Vec::new();
        for i in 0..9 {
            evs.push(ev(i, secs(i64::from(i))));
        }
        for i in 9..12 {
            evs.push(ev(i, secs(20)));
        }
        for i in 12..30 {
            evs.push(ev(i, secs(i64::from(i) + 10)));
        }
        let server = Server {
            events: evs.iter().map(|e| (*e, e.occurred)).collect(),
            limit: 10,
        };
        let mut state = WindowState::new(secs(0));
        let r = poll(&mut state, &server, secs(1000), 5, 5, 10);
        assert_eq!(sorted(r.forwarded), sorted(evs));
        assert!(r.splits >= 2);
    }

    #[test]
    fn a_smaller_server_limit_is_learned_from_its_refusal() {
        let evs: Vec<PageEvent> = (0..100u32).map(|i| ev(i, secs(i64::from(i)))).collect();
        let server = Server {
            events: evs.iter().map(|e| (*e, e.occurred)).collect(),
            limit: 25,
        };
        let mut state = WindowState::new(secs(0));
        let r = poll(&mut state, &server, secs(1000), 5, 10, SEARCH_RESULT_LIMIT);
        assert_eq!(sorted(r.forwarded), sorted(evs.clone()));
        assert_eq!(r.limit, 20);
        // even a page size larger than the server's limit gets through
        let mut state = WindowState::new(secs(0));
        let r = poll(&mut state, &server, secs(1000), 5, 100, SEARCH_RESULT_LIMIT);
        assert_eq!(sorted(r.forwarded), sorted(evs));
    }

    #[test]
    fn more_than_the_limit_at_one_instant_goes_to_export_and_terminates() {
        let at = secs(30);
        let mut evs: Vec<PageEvent> = (0..50u32).map(|i| ev(i, at)).collect();
        evs.push(ev(99, secs(31)));
        evs.insert(0, ev(98, secs(29)));
        let server = Server {
            events: evs.iter().map(|e| (*e, e.occurred)).collect(),
            limit: 10,
        };
        let mut state = WindowState::new(secs(0));
        let r = poll(&mut state, &server, secs(1000), 5, 5, 10);
        assert_eq!(sorted(r.forwarded), sorted(evs));
        assert!(r.requests < 100);
    }

    #[test]
    fn export_instant_is_requested_when_a_full_window_sits_at_the_start() {
        let at = secs(30);
        let mut state = WindowState::new(at);
        let mut cycle = PollCycle::new(&state, secs(1000), Duration::from_secs(5), 5, 10);
        let page: Vec<PageEvent> = (0..5u32).map(|i| ev(i, at)).collect();
        let v = cycle.on_page(&mut state, &page);
        assert_eq!(
            v.next,
            Next::Fetch(QueryWindow {
                start: at,
                end: secs(1000),
                page: 1,
                page_size: 5
            })
        );
        let page: Vec<PageEvent> = (5..10u32).map(|i| ev(i, at)).collect();
        let v = cycle.on_page(&mut state, &page);
        assert_eq!(v.next, Next::ExportInstant { at });
        assert!(!v.split);
    }

    #[test]
    fn restart_from_a_saved_checkpoint_mid_stream() {
        // Poll, "crash" after saving the state of the first batch only, restart: every
        // event exactly once over both runs.
        let evs: Vec<PageEvent> = (0..40u32).map(|i| ev(i, secs(i64::from(i / 3)))).collect();
        let server = Server {
            events: evs.iter().map(|e| (*e, e.occurred)).collect(),
            limit: SEARCH_RESULT_LIMIT,
        };
        let mut state = WindowState::new(secs(0));
        let mut cycle = PollCycle::new(
            &state,
            secs(100),
            Duration::from_secs(5),
            7,
            SEARCH_RESULT_LIMIT,
        );
        let Reply::Page(page) = server.search(secs(100), cycle.current()) else {
            panic!()
        };
        let v = cycle.on_page(&mut state, &page);
        let first: Vec<PageEvent> = page
            .iter()
            .zip(&v.forward)
            .filter(|(_, f)| **f)
            .map(|(e, _)| *e)
            .collect();
        assert_eq!(first.len(), 7);
        // what a checkpoint keeps
        let saved = (state.watermark(), state.fingerprints());
        assert_eq!(
            saved.0, first[6].occurred,
            "watermark = newest of the batch"
        );
        // restart
        let mut state = WindowState::restore(saved.0, &saved.1);
        let r = poll(&mut state, &server, secs(101), 5, 7, SEARCH_RESULT_LIMIT);
        let mut all = first;
        all.extend(r.forwarded);
        assert_eq!(sorted(all), sorted(evs));
    }

    #[test]
    fn restore_drops_fingerprints_before_the_watermark_and_sums_repeats() {
        let s = WindowState::restore(
            secs(10),
            &[
                SeenEvent {
                    hash: 1,
                    time: secs(9),
                    count: 1,
                },
                SeenEvent {
                    hash: 2,
                    time: secs(10),
                    count: 1,
                },
                SeenEvent {
                    hash: 2,
                    time: secs(10),
                    count: 2,
                },
            ],
        );
        assert_eq!(s.forwarded_copies(1), 0);
        assert_eq!(s.forwarded_copies(2), 3);
        assert_eq!(
            s.fingerprints(),
            vec![SeenEvent {
                hash: 2,
                time: secs(10),
                count: 3
            }]
        );
    }

    #[test]
    fn an_event_of_unknown_time_is_forwarded_on_a_later_page_and_once_only() {
        // Page 0 of a settled (catch-up) query moves the watermark past the query start;
        // an event whose time could not be read stands at that start. It must still go
        // out, and polls that return it again must recognise it.
        let mut state = WindowState::new(secs(0));
        let mut c = PollCycle::new(&state, secs(1000), Duration::from_secs(5), 2, 100);
        let v = c.on_page(&mut state, &[ev(1, secs(10)), ev(2, secs(20))]);
        assert_eq!(v.forward, vec![true, true]);
        assert_eq!(state.watermark(), secs(20));
        let unknown = |start| PageEvent {
            fingerprint: 99,
            occurred: start,
            time_known: false,
        };
        let v = c.on_page(&mut state, &[unknown(c.current().start)]);
        assert_eq!(
            v.forward,
            vec![true],
            "an event of unknown time was dropped"
        );
        assert_eq!(v.duplicates, 0);

        let mut c = PollCycle::new(&state, secs(1001), Duration::from_secs(5), 2, 100);
        let v = c.on_page(&mut state, &[unknown(c.current().start)]);
        assert_eq!(
            v.forward,
            vec![false],
            "an event of unknown time was sent twice"
        );
        // Its stand-in time did not move the query.
        assert_eq!(c.current().start, secs(995));
    }

    #[test]
    fn unique_keys_are_forwarded_once_even_twice_in_one_read() {
        // An alert id seen twice in one read (an offset shift between pages), and again
        // with another text (its state changed) in a later poll: forwarded once.
        let key = fingerprint("alert-1");
        let at = secs(50);
        let a = PageEvent {
            fingerprint: key,
            occurred: at,
            time_known: true,
        };
        let mut state = WindowState::new(secs(0));
        let mut c =
            PollCycle::new(&state, secs(52), Duration::from_secs(5), 10, 100).with_unique_keys();
        let v = c.on_page(&mut state, &[a, ev(2, at), a]);
        assert_eq!(v.forward, vec![true, true, false]);
        assert_eq!(state.forwarded_copies(key), 1);
        let mut c =
            PollCycle::new(&state, secs(53), Duration::from_secs(5), 10, 100).with_unique_keys();
        let v = c.on_page(&mut state, &[a]);
        assert_eq!(v.forward, vec![false]);
        // the multiset rule, by contrast, lets the second copy of one read through
        let mut state = WindowState::new(secs(0));
        let mut c = PollCycle::new(&state, secs(52), Duration::from_secs(5), 10, 100);
        let v = c.on_page(&mut state, &[a, a]);
        assert_eq!(v.forward, vec![true, true]);
    }

    #[test]
    fn re_anchoring_loses_nothing_when_a_record_leaves_the_results_mid_poll() {
        // Ten settled records, pages of three; after the first page, record 1 stops
        // matching the query (an alert resolved under a `State IS OPEN` filter).
        let evs: Vec<PageEvent> = (0..10u32).map(|i| ev(i, secs(i64::from(i)))).collect();
        let read = |re_anchor: bool| {
            let mut state = WindowState::new(secs(0));
            let mut cycle = PollCycle::new(
                &state,
                secs(1000),
                Duration::from_secs(5),
                3,
                SEARCH_RESULT_LIMIT,
            );
            if re_anchor {
                cycle = cycle.with_re_anchoring();
            }
            let mut server = Server {
                events: evs.iter().map(|e| (*e, e.occurred)).collect(),
                limit: SEARCH_RESULT_LIMIT,
            };
            let mut out = Vec::new();
            let mut next = Next::Fetch(cycle.current());
            let mut requests = 0;
            while let Next::Fetch(q) = next {
                requests += 1;
                assert!(requests < 100);
                let Reply::Page(page) = server.search(secs(1000), q) else {
                    panic!("no limit here")
                };
                let v = cycle.on_page(&mut state, &page);
                out.extend(
                    page.iter()
                        .zip(&v.forward)
                        .filter(|(_, f)| **f)
                        .map(|(e, _)| *e),
                );
                server.events.retain(|(e, _)| *e != evs[1]);
                next = v.next;
            }
            out
        };
        let offset_paged = read(false);
        assert!(
            !offset_paged.contains(&evs[3]),
            "offset paging skips the record that shifted into the page already read"
        );
        let re_anchored = read(true);
        assert_eq!(re_anchored, evs, "each once, in order, none skipped");
    }

    #[test]
    fn watermark_never_moves_back() {
        let mut s = WindowState::new(secs(100));
        assert!(!s.advance_to(secs(50)));
        assert_eq!(s.watermark(), secs(100));
        // a poll whose poll_time - lag is before the watermark leaves it alone
        let server = Server {
            events: vec![(ev(1, secs(101)), secs(101))],
            limit: SEARCH_RESULT_LIMIT,
        };
        let r = poll(&mut s, &server, secs(103), 60, 10, SEARCH_RESULT_LIMIT);
        assert_eq!(r.forwarded.len(), 1);
        assert_eq!(s.watermark(), secs(100));
        assert!(s.advance_to(secs(102)));
        assert_eq!(
            s.fingerprint_count(),
            0,
            "pruned when the watermark passed it"
        );
    }

    #[test]
    fn events_before_the_watermark_are_never_resent() {
        let mut s = WindowState::new(secs(100));
        let mut c = PollCycle::new(
            &s,
            secs(200),
            Duration::from_secs(5),
            10,
            SEARCH_RESULT_LIMIT,
        );
        let v = c.on_page(&mut s, &[ev(1, secs(99)), ev(2, secs(100))]);
        assert_eq!(v.forward, vec![false, true]);
        assert_eq!(v.duplicates, 1);
    }

    #[test]
    fn live_region_re_anchors_instead_of_paging_by_offset() {
        let mut s = WindowState::new(secs(0));
        let mut c = PollCycle::new(
            &s,
            secs(100),
            Duration::from_secs(10),
            2,
            SEARCH_RESULT_LIMIT,
        );
        // settled: next offset page
        let v = c.on_page(&mut s, &[ev(1, secs(10)), ev(2, secs(20))]);
        assert_eq!(
            v.next,
            Next::Fetch(QueryWindow {
                start: secs(0),
                end: secs(100),
                page: 1,
                page_size: 2
            })
        );
        assert_eq!(s.watermark(), secs(20));
        // live (after poll_time - lag = 90): new query from the newest event
        let v = c.on_page(&mut s, &[ev(3, secs(91)), ev(4, secs(95))]);
        assert_eq!(
            v.next,
            Next::Fetch(QueryWindow {
                start: secs(95),
                end: secs(100),
                page: 0,
                page_size: 2
            })
        );
        assert_eq!(s.watermark(), secs(90), "capped at poll_time - lag");
        // the new query re-reads the event at 95 and skips it by fingerprint
        let v = c.on_page(&mut s, &[ev(4, secs(95))]);
        assert_eq!(v.forward, vec![false]);
        assert_eq!(v.next, Next::Done);
    }

    /// Many polls over a stream where each event becomes visible up to 3 s late, with
    /// small pages, a small limit, restarts from the checkpoint now and then, and a server
    /// clock that moves while a poll pages: the union of what went out is the stream.
    fn live_stream_exactly_once(seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut server = Server {
            events: Vec::new(),
            limit: 12,
        };
        let mut all = Vec::new();
        for i in 0..600u32 {
            // bursts of equal timestamps at millisecond steps, some byte-identical events
            let at =
                secs(0) + TimeDelta::milliseconds(i64::from(i / 3) * 97 + i64::from(rng.u32(0..3)));
            let id = if rng.u8(0..10) == 0 { 0 } else { i };
            let e = ev(id, at);
            let vis = at + TimeDelta::milliseconds(i64::from(rng.u32(0..3000)));
            server.events.push((e, vis));
            all.push(e);
        }
        let mut state = WindowState::new(secs(0));
        let mut out = Vec::new();
        let mut limit = 12;
        let mut now = secs(0);
        while now < secs(80) {
            now += TimeDelta::milliseconds(i64::from(rng.u32(100..1500)));
            let step = TimeDelta::milliseconds(i64::from(rng.u32(0..40)));
            let r = poll_with_clock(&mut state, &server, now, step, 4, 4, limit);
            limit = r.limit;
            out.extend(r.forwarded);
            if rng.u8(0..5) == 0 {
                state = WindowState::restore(state.watermark(), &state.fingerprints());
            }
        }
        assert_eq!(sorted(out), sorted(all), "seed {seed}");
    }

    #[test]
    fn a_live_stream_with_random_lag_is_forwarded_exactly_once() {
        for seed in 0..30 {
            live_stream_exactly_once(seed);
        }
    }
}
