//! One API read per event in steady state: a poll proves the part of the lag window the
//! previous poll read by the API's count instead of reading it again.
//!
//! # Why
//! A poll at P queries `[watermark, P)` ([`super::window`], "One poll"), and the
//! watermark stays `lag` behind the poll time, so with a 5-minute lag and a 30-second
//! interval every event is downloaded about ten times. Most of those reads only find
//! what was forwarded already.
//!
//! # The scheme
//! [`Reread`] remembers, in memory only, `verified_to`: the end of the previous poll's
//! window when that poll read it cleanly ([`PollCycle::verified_to`]: done, no query
//! distrusted, no suspect event, no event of unknown time, no short page, no instant
//! read through the export). At the next poll P, with `W` the watermark and
//! `R = verified_to`, the fetcher's count of `[W, R)` ([`WindowFetch::count`], asked at
//! or after P) is compared with the copies the window state holds there
//! ([`WindowState::copies_between`]; the state holds every forwarded event at or after
//! the watermark). Equal: the poll's first query starts at `R`
//! ([`PollCycle::start_at_verified`]); the watermark moves as usual. Different: the
//! range is halved and each half counted ([`Search`], at most [`MAX_COUNTS_PER_POLL`]
//! counts), down to ranges of [`MIN_SPLIT`], and the poll reads only the ranges whose
//! counts differ (or were not asked), then `[R, P)`. No count, an error before anything
//! was proven, or no `verified_to`: the poll reads from `W`, as without this module. A
//! failed count never fails the poll: it is logged (WARN when the failures start, DEBUG
//! while they go on) and counted.
//!
//! **A refinement of the first scheme (one count of `[W, R)`, then all or nothing):**
//! the ingestion delay keeps events showing up just behind the previous poll time (and
//! a few later still), so the count of the whole prefix almost always differs, and an
//! all-or-nothing skip would read the whole window nearly every poll. The halving finds
//! where the late events are. How much it saves depends on how they spread: if a large
//! share of the events shows up anywhere up to minutes late, every part of the window
//! gets some at every poll, and no range-based read can avoid reading most of it
//! again (README, "Performance").
//!
//! **Why the lag guarantee holds (ARCHITECTURE.md, invariants 2 and 9):** an event that
//! occurred before `P - lag` is visible by P (the lag assumption), and every count is
//! asked at or after P, so an event inside a range that the previous polls did not see
//! makes the API count more than the state holds there, and the range is read again; the
//! fingerprints keep what was forwarded from going out twice. Equal counts could hide a
//! missing event only if another record the state holds in the range were not counted
//! there:
//! - a record that left the result set: Audit Log events never do. Sources whose
//!   records can (`WindowFetch::ALWAYS_RE_ANCHOR`: alerts, sessions) never skip, and the
//!   skip is an opt-in of the fetcher ([`WindowFetch::COUNT_VERIFIES_PREFIX`]);
//! - a record of unknown time, whose fingerprint stands at the poll time that saw it:
//!   after such a poll, and after a restart (the checkpoint does not say which
//!   fingerprints stand in for an unknown time), no poll skips until the watermark has
//!   passed every such fingerprint (`hold_until`);
//! - a count whose time bounds differ from the search's: the count takes the search's
//!   own body (the same `dateRange`, start inclusive, end exclusive, the same filters;
//!   `docs/api.md`).
//!
//! Reconciliation ([`super::reconcile`]) is untouched: it compares closed windows with
//! the API whatever the polls read.
//!
//! It does not read pages or forward anything: that is the poll loop's.

use crate::metrics::label;
use crate::sources::poll::{SourceError, WindowFetch, WindowPoller};
use crate::sources::window::{PollCycle, WindowState};
use chrono::{DateTime, TimeDelta, Utc};
use std::ops::ControlFlow;
use tokio_util::sync::CancellationToken;

/// What one source remembers between polls to skip re-reading (in memory only: after a
/// restart the first polls read fully, which is safe). See the module docs.
#[derive(Debug, Clone, Default)]
pub(super) struct Reread {
    /// The end of the previous poll's window, when that poll read it cleanly.
    verified_to: Option<DateTime<Utc>>,
    /// A fingerprint at or before this time may stand for a record of unknown time
    /// (or comes from a checkpoint, which does not say): no skip while the watermark
    /// is not past it.
    hold_until: Option<DateTime<Utc>>,
    /// The last count request failed (the WARN is logged once per run of failures).
    failing: bool,
}

/// Why a poll read its lag window again (the `reason` label of
/// `c42fwd_source_reread_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    CountDiffers,
    Unverified,
    NoCount,
    CountError,
}

impl Why {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Why::CountDiffers => "count_differs",
            Why::Unverified => "unverified",
            Why::NoCount => "no_count",
            Why::CountError => "count_error",
        }
    }
}

impl Reread {
    /// The memory of a source starting from `state`: nothing verified, and no skip
    /// until the watermark has passed the fingerprints the state was restored with.
    pub(super) fn new(state: &WindowState) -> Reread {
        Reread {
            verified_to: None,
            hold_until: state.latest_fingerprint_time(),
            failing: false,
        }
    }

    /// The poll of `cycle` ended (read to its poll time, or stopped): what it proves for
    /// the next one.
    pub(super) fn after(&mut self, cycle: &PollCycle) {
        self.verified_to = cycle.verified_to();
        if cycle.saw_stand_ins() {
            let t = cycle.poll_time();
            self.hold_until = Some(self.hold_until.map_or(t, |h| h.max(t)));
        }
    }

    /// The verified prefix `[watermark, R)` the next poll may prove by a count, or why
    /// not (`Err`); `Ok(None)`: there is nothing before `R` to prove (a lag of zero).
    pub(super) fn prefix(
        &self,
        state: &WindowState,
        poll_time: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, Why> {
        let w = state.watermark();
        let Some(r) = self.verified_to.filter(|&r| r <= poll_time) else {
            return Err(Why::Unverified);
        };
        if r <= w {
            return Ok(None);
        }
        if self.hold_until.is_some_and(|h| h >= w) {
            return Err(Why::Unverified);
        }
        Ok(Some(r))
    }
}

/// The most count requests one poll makes to find which parts of its verified prefix
/// the API's counts prove: one for the whole prefix, then halvings of the ranges whose
/// counts differed: each halving of a range holding one late event costs one or two
/// counts, so the usual tail of events that showed up just behind the previous poll
/// and one or two late events elsewhere in a prefix of 5 minutes are each found
/// within a second or less (a read of that much instead of the whole lag window).
pub const MAX_COUNTS_PER_POLL: u32 = 20;

/// A range whose count differed is halved only while it is wider than this (reading
/// it costs less than more requests).
pub const MIN_SPLIT: TimeDelta = TimeDelta::milliseconds(100);

/// One count to ask: the range, and the other half of the range it was cut from (asked
/// only when this one's count differs; when this one is proven, the other half is
/// where the difference is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ask {
    range: (DateTime<Utc>, DateTime<Utc>),
    sibling: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The search for the parts of a verified prefix `[w, r)` that the API's counts prove.
/// Counts add up over ranges, and the API's count of a range can only be at least what
/// was forwarded in it (every forwarded record is in the API), so a range whose count
/// equals the copies held is proven, and a range whose count differs holds a record
/// not yet forwarded in one of its halves. A range is proven only by an equal count of
/// its own, asked at or after the poll time (never by a subtraction: counts asked at
/// different times do not subtract). Pure; the caller asks the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    asked: u32,
    current: Option<Ask>,
    /// Ranges to ask next.
    todo: Vec<Ask>,
    /// Ranges not proven (their count differed, or was not asked).
    suspects: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Search {
    /// The search over the prefix `[w, r)`.
    pub fn new(w: DateTime<Utc>, r: DateTime<Utc>) -> Search {
        Search {
            asked: 0,
            current: None,
            todo: if w < r {
                vec![Ask {
                    range: (w, r),
                    sibling: None,
                }]
            } else {
                Vec::new()
            },
            suspects: Vec::new(),
        }
    }

    /// The next range `[a, b)` whose count to ask, or `None`: done.
    pub fn probe(&mut self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if let Some(q) = self.current {
            return Some(q.range);
        }
        if self.asked >= MAX_COUNTS_PER_POLL {
            return None;
        }
        let q = match self.todo.pop() {
            Some(q) => q,
            None => {
                // Halve the widest suspect that is worth it.
                let (i, &(a, b)) = self
                    .suspects
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, &(a, b))| b - a)?;
                if b - a <= MIN_SPLIT {
                    return None;
                }
                self.suspects.swap_remove(i);
                let mid = a + (b - a) / 2;
                Ask {
                    range: (a, mid),
                    sibling: Some((mid, b)),
                }
            }
        };
        self.current = Some(q);
        Some(q.range)
    }

    /// The answer for the range [`Self::probe`] gave: whether the API's count of it
    /// equals the copies forwarded there.
    pub fn answer(&mut self, proven: bool) {
        let Some(q) = self.current.take() else { return };
        self.asked += 1;
        if proven {
            self.suspects.extend(q.sibling);
        } else {
            self.suspects.push(q.range);
            self.todo.extend(q.sibling.map(|range| Ask {
                range,
                sibling: None,
            }));
        }
    }

    /// The ranges not proven, in time order, adjacent ones joined: everything not
    /// asked, or whose count differed.
    pub fn unproven(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut v: Vec<(DateTime<Utc>, DateTime<Utc>)> = self.suspects.clone();
        for q in self.current.iter().chain(&self.todo) {
            v.push(q.range);
            v.extend(q.sibling);
        }
        v.sort();
        let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if last.1 >= a => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }

    /// How many counts were answered.
    pub fn asked(&self) -> u32 {
        self.asked
    }
}

impl<F: WindowFetch> WindowPoller<F> {
    /// Before the first page of a poll: proves the prefix the previous poll read by the
    /// API's count and, when it holds, starts `cycle` after it (see the module docs).
    /// `Break` when shutdown interrupted the count.
    pub(super) async fn skip_verified(
        &self,
        reread: &mut Reread,
        cycle: &mut PollCycle,
        state: &WindowState,
        shutdown: &CancellationToken,
    ) -> Result<ControlFlow<()>, SourceError> {
        if !F::COUNT_VERIFIES_PREFIX || F::ALWAYS_RE_ANCHOR {
            return Ok(ControlFlow::Continue(()));
        }
        let w = state.watermark();
        let r = match reread.prefix(state, cycle.poll_time()) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(ControlFlow::Continue(())),
            Err(why) => {
                self.count_reread(why);
                return Ok(ControlFlow::Continue(()));
            }
        };
        let mut search = Search::new(w, r);
        let mut why = None;
        while let Some((a, b)) = search.probe() {
            let count = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(ControlFlow::Break(())),
                c = self.fetch.count(a, b) => c,
            };
            let held = state.copies_between(a, b);
            let n = match count {
                Ok(Some(n)) => n,
                // No count (a legacy tenant) or an error: what was proven stands.
                Ok(None) => {
                    why.get_or_insert(Why::NoCount);
                    break;
                }
                Err(e) => {
                    why.get_or_insert(Why::CountError);
                    if reread.failing {
                        tracing::debug!(source = %self.name, error = %e, "the count of the lag window failed again; reading it again");
                    } else {
                        tracing::warn!(source = %self.name, error = %e, "the count of the lag window failed; reading it again");
                    }
                    reread.failing = true;
                    break;
                }
            };
            reread.failing = false;
            if n != held {
                why.get_or_insert(Why::CountDiffers);
                tracing::debug!(
                    source = %self.name,
                    start = %a,
                    end = %b,
                    count = n,
                    forwarded = held,
                    "the api counts another number of events than were forwarded; that range is read again"
                );
            }
            search.answer(n == held);
        }
        let unproven = search.unproven();
        if unproven.first() == Some(&(w, r)) {
            self.count_reread(why.unwrap_or(Why::CountDiffers));
            return Ok(ControlFlow::Continue(()));
        }
        self.metrics
            .source_reread_skipped
            .get_or_create(&label("source", &self.name))
            .inc();
        let unproven_ns: i64 = unproven
            .iter()
            .map(|&(a, b)| (b - a).num_nanoseconds().unwrap_or(i64::MAX))
            .fold(0, i64::saturating_add);
        tracing::debug!(
            source = %self.name,
            start = %w,
            end = %r,
            counts = search.asked(),
            ranges_read_again = unproven.len(),
            seconds_read_again = unproven_ns as f64 / 1e9,
            "the api's counts prove the lag window read but for the ranges read again"
        );
        cycle.start_at_verified(r, &unproven);
        Ok(ControlFlow::Continue(()))
    }

    fn count_reread(&self, why: Why) {
        self.metrics
            .source_reread
            .get_or_create(&vec![
                ("source", self.name.to_string()),
                ("reason", why.as_str().to_string()),
            ])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiError;
    use crate::checkpoint::Store;
    use crate::config::{self, StartAt};
    use crate::event::{Event, SourceKind};
    use crate::metrics::Metrics;
    use crate::route::Route;
    use crate::sources::poll::FetchedPage;
    use crate::sources::window::QueryWindow;
    use serde_json::value::RawValue;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const LAG: Duration = Duration::from_secs(60);

    /// How the fake answers counts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Counts {
        Work,
        Fail,
        Absent,
    }

    /// What the fake was asked, in order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Asked {
        Count(DateTime<Utc>, DateTime<Utc>),
        Page(QueryWindow),
    }

    /// The paging rules of the fake: an Audit Log, or records that can leave the
    /// result set (alerts).
    trait Mode: Send + Sync + 'static {
        const RE_ANCHOR: bool;
    }
    struct AuditLike;
    impl Mode for AuditLike {
        const RE_ANCHOR: bool = false;
    }
    struct AlertsLike;
    impl Mode for AlertsLike {
        const RE_ANCHOR: bool = true;
    }

    /// A live Audit Log: events (time, text), each visible once the fake has answered
    /// that many count requests (so a late one shows up between two polls).
    struct Live<M> {
        events: Vec<(DateTime<Utc>, String, u32)>,
        counts: Counts,
        /// The first page served lists its events newest first.
        disorder_first_page: bool,
        asked: Arc<Mutex<Vec<Asked>>>,
        answered_counts: Mutex<u32>,
        _mode: std::marker::PhantomData<M>,
    }

    impl<M> Live<M> {
        fn visible(
            &self,
            a: DateTime<Utc>,
            b: DateTime<Utc>,
        ) -> Vec<&(DateTime<Utc>, String, u32)> {
            let counted = *self.answered_counts.lock().unwrap();
            let mut v: Vec<_> = self
                .events
                .iter()
                .filter(|(t, _, from)| *t >= a && *t < b && *from <= counted)
                .collect();
            v.sort_by_key(|(t, _, _)| *t);
            v
        }
    }

    impl<M: Mode> WindowFetch for Live<M> {
        type Item = Event;
        const KIND: SourceKind = SourceKind::AuditLog;
        const RETENTION: Option<Duration> = None;
        const MAX_PAGE_SIZE: u32 = 100;
        const RESULT_LIMIT: u64 = 10_000;
        const UNIQUE_KEYS: bool = false;
        const ALWAYS_RE_ANCHOR: bool = M::RE_ANCHOR;
        const COUNT_VERIFIES_PREFIX: bool = true;
        const CONCURRENT_CATCH_UP: bool = false;

        fn from_source(
            source: &config::Source,
            _: Arc<crate::api::ApiClient>,
            _: Arc<Metrics>,
        ) -> Result<Self, SourceError> {
            Err(SourceError::WrongSourceType {
                name: source.name.clone(),
                expected: "test",
            })
        }

        async fn fetch_page(&self, q: QueryWindow) -> Result<FetchedPage<Event>, SourceError> {
            let first = {
                let mut asked = self.asked.lock().unwrap();
                asked.push(Asked::Page(q));
                asked.iter().filter(|a| matches!(a, Asked::Page(_))).count() == 1
            };
            let mut raws: Vec<Box<RawValue>> = self
                .visible(q.start, q.end)
                .into_iter()
                .skip(q.page as usize * q.page_size as usize)
                .take(q.page_size as usize)
                .map(|(_, j, _)| RawValue::from_string(j.clone()).unwrap())
                .collect();
            if first && self.disorder_first_page {
                raws.reverse();
            }
            Ok(FetchedPage::by_content(
                SourceKind::AuditLog,
                raws,
                q.start,
                crate::api::parse_event_time,
            ))
        }

        async fn fetch_instant(&self, _: DateTime<Utc>) -> Result<FetchedPage<Event>, SourceError> {
            Ok(FetchedPage::default())
        }

        async fn make_events(&self, items: Vec<Event>) -> Result<Vec<Event>, SourceError> {
            Ok(items)
        }

        async fn count(
            &self,
            start: DateTime<Utc>,
            end: DateTime<Utc>,
        ) -> Result<Option<u64>, SourceError> {
            self.asked.lock().unwrap().push(Asked::Count(start, end));
            match self.counts {
                Counts::Fail => Err(SourceError::Api {
                    name: "audit".into(),
                    error: ApiError::Decode {
                        endpoint: "POST /v1/audit/search-results-count".into(),
                        reason: "no totalResultCount".into(),
                    },
                }),
                Counts::Absent => Ok(None),
                Counts::Work => {
                    let n = self.visible(start, end).len() as u64;
                    *self.answered_counts.lock().unwrap() += 1;
                    Ok(Some(n))
                }
            }
        }
    }

    fn event(at: DateTime<Utc>, n: u32) -> String {
        format!(r#"{{"timestamp":"{}","n":{n}}}"#, at.to_rfc3339())
    }

    /// Ten events of the last minute, visible at once; `extra` added.
    fn tenant<M>(counts: Counts, extra: Vec<(DateTime<Utc>, String, u32)>) -> Live<M> {
        let now = Utc::now();
        let mut events: Vec<_> = (0..10)
            .map(|i| {
                let at = now - TimeDelta::seconds(50) + TimeDelta::seconds(5 * i64::from(i));
                (at, event(at, i), 0)
            })
            .collect();
        events.extend(extra);
        live(events, counts)
    }

    fn live<M>(events: Vec<(DateTime<Utc>, String, u32)>, counts: Counts) -> Live<M> {
        Live {
            events,
            counts,
            disorder_first_page: false,
            asked: Arc::new(Mutex::new(Vec::new())),
            answered_counts: Mutex::new(0),
            _mode: std::marker::PhantomData,
        }
    }

    struct Ran {
        asked: Vec<Asked>,
        /// What each poll asked, in order.
        each: Vec<Vec<Asked>>,
        /// The poll time of each poll: the end of its last query.
        polls: Vec<DateTime<Utc>>,
        sent: Vec<String>,
        metrics: Arc<Metrics>,
    }

    /// Cuts what was asked into polls: a poll ends with the pages of its last query,
    /// the first to end later than every earlier one (at its poll time); the next
    /// request after those is the next poll's (a count, or a query ending elsewhere).
    fn polls_of(asked: &[Asked]) -> (Vec<Vec<Asked>>, Vec<DateTime<Utc>>) {
        let (mut each, mut ends) = (vec![Vec::new()], Vec::new());
        let mut last: Option<DateTime<Utc>> = None;
        let mut in_final = false;
        for a in asked {
            let same_final = matches!(a, Asked::Page(q) if Some(q.end) == last);
            if in_final && !same_final {
                each.push(Vec::new());
                in_final = false;
            }
            if let Asked::Page(q) = a {
                if last.map_or(true, |l| q.end > l) {
                    last = Some(q.end);
                    ends.push(q.end);
                    in_final = true;
                }
            }
            each.last_mut().unwrap().push(*a);
        }
        if !in_final {
            each.pop();
        }
        (each, ends)
    }

    impl Ran {
        fn counts(&self) -> usize {
            self.asked
                .iter()
                .filter(|a| matches!(a, Asked::Count(..)))
                .count()
        }

        /// What poll `i` (0-based) asked, in order.
        fn poll(&self, i: usize) -> Vec<Asked> {
            self.each.get(i).cloned().unwrap_or_default()
        }

        fn metric(&self, needle: &str) -> u64 {
            let text = self.metrics.render();
            text.lines()
                .find(|l| l.starts_with(needle))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }
    }

    /// Runs a poller over `fetch` (on `store`) until it has started its last query of
    /// poll number `polls` (0-based), on the paused clock.
    async fn run<M: Mode>(fetch: Live<M>, store: Store, polls: usize) -> Ran {
        let asked = fetch.asked.clone();
        let metrics = Arc::new(Metrics::new());
        let poller = WindowPoller::for_test_named(
            "audit",
            fetch,
            LAG,
            Duration::from_secs(30),
            StartAt::Ago(Duration::from_secs(120)),
            store,
            metrics.clone(),
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::route::SinkBatch>(4);
        let sink = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(sb) = rx.recv().await {
                got.extend(sb.batch.events.iter().map(|e| e.json().to_string()));
                sb.ack.delivered();
            }
            got
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(poller.run(Route::new(vec![tx]), stop.clone()));
        // Watches what was asked (the paused clock moves on while the poller waits).
        loop {
            let seen = polls_of(&asked.lock().unwrap()).1.len();
            if seen > polls {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.cancel();
        task.await.unwrap().unwrap();
        let sent = sink.await.unwrap();
        let asked = asked.lock().unwrap().clone();
        let (each, polls) = polls_of(&asked);
        Ran {
            asked,
            each,
            polls,
            sent,
            metrics,
        }
    }

    fn starts(asked: &[Asked]) -> Vec<DateTime<Utc>> {
        asked
            .iter()
            .filter_map(|a| match a {
                Asked::Page(q) => Some(q.start),
                Asked::Count(..) => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_poll_counts_the_prefix_and_reads_only_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let ran = run(
            tenant::<AuditLike>(Counts::Work, Vec::new()),
            Store::open(dir.path()).unwrap(),
            4,
        )
        .await;
        assert!(ran.polls.len() >= 3, "{:?}", ran.asked);
        // The first poll of a run reads fully, and asks no count.
        assert!(matches!(ran.asked[0], Asked::Page(_)), "{:?}", ran.asked);
        for i in 1..ran.polls.len() {
            let poll = ran.poll(i);
            let p_prev = ran.polls[i - 1];
            assert_eq!(
                poll.first(),
                Some(&Asked::Count(
                    p_prev - TimeDelta::from_std(LAG).unwrap(),
                    p_prev
                )),
                "poll {i}: {poll:?}"
            );
            assert_eq!(
                starts(&poll),
                vec![p_prev],
                "poll {i} reads only past the prefix"
            );
        }
        assert_eq!(ran.sent.len(), 10, "each event once");
        assert_eq!(
            ran.metric("c42fwd_source_reread_skipped_total{source=\"audit\"}") as usize,
            ran.polls.len() - 1
        );
        assert_eq!(
            ran.metric("c42fwd_source_events_total{source=\"audit\"}"),
            10
        );
        // Every record was read once: amplification 1.
        assert_eq!(
            ran.metric("c42fwd_source_api_records_total{source=\"audit\"}"),
            10
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_event_inside_the_proven_prefix_is_found_by_the_count_and_sent_once() {
        let at = Utc::now() - TimeDelta::seconds(32);
        let late = event(at, 99);
        // Visible from the second count on: the second poll proves the window without
        // it, the third one's counts see it.
        let dir = tempfile::tempdir().unwrap();
        let fetch = tenant::<AuditLike>(Counts::Work, vec![(at, late.clone(), 1)]);
        let ran = run(fetch, Store::open(dir.path()).unwrap(), 5).await;
        assert!(ran.polls.len() >= 4, "{:?}", ran.asked);
        assert_eq!(
            ran.sent.iter().filter(|s| **s == late).count(),
            1,
            "{:?}",
            ran.sent
        );
        assert_eq!(ran.sent.len(), 11, "{:?}", ran.sent);
        // The third poll found the difference and read a range around the late event
        // again, not the whole window.
        let third = ran.poll(2);
        let reread: Vec<QueryWindow> = third
            .iter()
            .filter_map(|a| match a {
                Asked::Page(q) if q.end <= ran.polls[1] => Some(*q),
                _ => None,
            })
            .collect();
        assert!(
            reread.iter().any(|q| q.start <= at && at < q.end),
            "{third:?}"
        );
        let w = ran.polls[1] - TimeDelta::from_std(LAG).unwrap();
        assert!(
            reread.iter().map(|q| q.end - q.start).sum::<TimeDelta>() < (ran.polls[1] - w) / 4,
            "{third:?}"
        );
        assert!(ran.metric("c42fwd_source_reread_skipped_total{source=\"audit\"}") >= 3);
    }

    async fn falls_back(counts: Counts, reason: &str) {
        let dir = tempfile::tempdir().unwrap();
        let ran = run(
            tenant::<AuditLike>(counts, Vec::new()),
            Store::open(dir.path()).unwrap(),
            3,
        )
        .await;
        assert!(ran.polls.len() >= 3, "{:?}", ran.asked);
        for i in 1..ran.polls.len() {
            let w = ran.polls[i - 1] - TimeDelta::from_std(LAG).unwrap();
            assert_eq!(
                starts(&ran.poll(i)),
                vec![w],
                "poll {i} reads from the watermark"
            );
        }
        assert_eq!(ran.sent.len(), 10);
        assert_eq!(
            ran.metric(&format!(
                "c42fwd_source_reread_total{{source=\"audit\",reason=\"{reason}\"}}"
            )) as usize,
            ran.polls.len() - 1
        );
        assert_eq!(
            ran.metric("c42fwd_source_reread_skipped_total{source=\"audit\"}"),
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_count_falls_back_to_a_full_read_without_failing_the_poll() {
        falls_back(Counts::Fail, "count_error").await;
    }

    #[tokio::test(start_paused = true)]
    async fn no_count_falls_back_to_a_full_read() {
        falls_back(Counts::Absent, "no_count").await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_of_unknown_time_stops_the_skip_while_its_stand_in_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let at = Utc::now() - TimeDelta::seconds(20);
        let fetch = tenant::<AuditLike>(Counts::Work, vec![(at, r#"{"n":"no time"}"#.into(), 0)]);
        let ran = run(fetch, Store::open(dir.path()).unwrap(), 4).await;
        assert!(ran.polls.len() >= 3, "{:?}", ran.asked);
        assert_eq!(ran.counts(), 0, "{:?}", ran.asked);
        assert_eq!(ran.sent.len(), 11);
        assert!(
            ran.metric("c42fwd_source_reread_total{source=\"audit\",reason=\"unverified\"}") >= 2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_out_of_order_page_disables_the_skip_for_the_next_poll_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut fetch = tenant::<AuditLike>(Counts::Work, Vec::new());
        fetch.disorder_first_page = true;
        let ran = run(fetch, Store::open(dir.path()).unwrap(), 4).await;
        assert!(ran.polls.len() >= 3, "{:?}", ran.asked);
        assert!(
            !ran.poll(1).iter().any(|a| matches!(a, Asked::Count(..))),
            "{:?}",
            ran.poll(1)
        );
        assert!(
            matches!(ran.poll(2).first(), Some(Asked::Count(..))),
            "{:?}",
            ran.poll(2)
        );
        assert_eq!(ran.sent.len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarted_source_reads_fully_until_past_what_its_checkpoint_held() {
        let dir = tempfile::tempdir().unwrap();
        let fetch = tenant::<AuditLike>(Counts::Work, Vec::new());
        let events = fetch.events.clone();
        let first = run(fetch, Store::open(dir.path()).unwrap(), 2).await;
        assert!(first.counts() >= 1);
        let cp = Store::open(dir.path())
            .unwrap()
            .load("audit")
            .unwrap()
            .unwrap();
        assert!(!cp.fingerprints.is_empty());
        let again = run(
            live::<AuditLike>(events, Counts::Work),
            Store::open(dir.path()).unwrap(),
            3,
        )
        .await;
        assert_eq!(again.counts(), 0, "{:?}", again.asked);
        assert_eq!(starts(&again.poll(0)), vec![cp.watermark]);
        assert!(again.sent.is_empty(), "{:?}", again.sent);
    }

    #[tokio::test(start_paused = true)]
    async fn records_that_can_leave_the_result_set_never_skip() {
        let dir = tempfile::tempdir().unwrap();
        let ran = run(
            tenant::<AlertsLike>(Counts::Work, Vec::new()),
            Store::open(dir.path()).unwrap(),
            3,
        )
        .await;
        assert!(ran.polls.len() >= 3);
        assert_eq!(ran.counts(), 0);
        assert_eq!(ran.metric("c42fwd_source_reread_total"), 0);
        // The real sources that can lose records do not opt in.
        const {
            assert!(!crate::sources::alerts::AlertsFetch::COUNT_VERIFIES_PREFIX);
            assert!(!crate::sources::sessions::SessionsFetch::COUNT_VERIFIES_PREFIX);
            assert!(crate::sources::audit::AuditLogFetch::COUNT_VERIFIES_PREFIX);
        }
    }

    #[test]
    fn the_search_halves_the_ranges_whose_counts_differ() {
        let t = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        // A difference only in [40 s, 41 s) of [0, 64 s).
        let mut search = Search::new(t(0), t(64));
        while let Some((a, b)) = search.probe() {
            search.answer(!(a <= t(40) && t(40) < b));
        }
        let unproven = search.unproven();
        assert_eq!(unproven.len(), 1, "{unproven:?}");
        let (a, b) = unproven[0];
        assert!(
            a <= t(40) && t(40) < b && b - a <= TimeDelta::seconds(1),
            "{unproven:?}"
        );
        assert!(search.asked() <= MAX_COUNTS_PER_POLL);
        // An equal first count proves all.
        let mut search = Search::new(t(0), t(64));
        assert_eq!(search.probe(), Some((t(0), t(64))));
        search.answer(true);
        assert_eq!(search.probe(), None);
        assert!(search.unproven().is_empty());
        // Unanswered (a failed count): nothing proven.
        let mut search = Search::new(t(0), t(64));
        search.probe();
        assert_eq!(search.unproven(), vec![(t(0), t(64))]);
    }
}
