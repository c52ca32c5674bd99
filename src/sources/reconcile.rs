//! Reconciliation: proof that a closed window is complete. The poll loop trusts that an
//! event shows up in the API within `lag` of occurring; a tenant whose ingestion is
//! slower would have those events skipped, silently. This module owns the check that
//! catches them.
//!
//! # The ledger
//! Time is cut into buckets (5 minutes, or `reconcile_after` when that is shorter; wider
//! when `lag + reconcile_after` would need more than [`MAX_PENDING_BUCKETS`]). A bucket
//! read while it was *live* (its end less than `lag + reconcile_after` before the poll
//! time) is registered in the [`Ledger`], and every event forwarded into a registered
//! bucket is recorded there with its fingerprint. Buckets read only after that (a backlog)
//! are trusted as complete on first read and cost nothing.
//!
//! A registered bucket is *due* once the watermark has passed its end and its end lies
//! `lag + reconcile_after` in the past. Then the API's own count for it is asked
//! ([`WindowFetch::count`]: the Audit Log's `search-results-count` on Incydr, the
//! `totalCount` of `query-alerts`); a source without a count endpoint (the legacy Audit
//! Log, the Sync Log), or a count that differs from what was forwarded, re-reads the
//! bucket (a count below it is no proof either: a record forwarded with an unreadable
//! time stands in the bucket of its query start, and would hide a missing one),
//! and what the recorded fingerprints do not cover is forwarded, counted in
//! `c42fwd_source_reconciled_total{source}` and reported in a WARN that says by how much
//! the configured lag is too short. Then the bucket leaves the ledger.
//!
//! **Invariant:** the ledger is part of the checkpoint and moves with it: the ledger
//! committed after a batch is the one of the moment the batch was sent (a [`Journal`]
//! gives it from a mark, without a copy per batch), so the events a reconciliation
//! forwards are committed behind their acknowledgement like any other batch, and a
//! crash before that re-reads the bucket at the next start.
//!
//! **Invariant:** the ledger is bounded: a bucket is registered only while it is live and
//! leaves once compared, so at most `(lag + reconcile_after) / width + 2` buckets are kept,
//! each with the fingerprints of the events forwarded in it.
//!
//! It does not decide which events are new in the poll (that is [`super::window`]) and
//! does not send anything itself: reconciled events go through the poll loop's own
//! forward/commit path.

use crate::checkpoint::{BucketRecord, ReconcileRecord, SeenEvent};
use crate::metrics::label;
use crate::route::Route;
use crate::sources::poll::{Commits, PageRead, SourceError, WindowFetch, WindowPoller};
use crate::sources::window::{Next, PageVerdict, WindowState};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The widest bucket.
pub const MAX_BUCKET: Duration = Duration::from_secs(300);

/// Buckets are widened so that no more than about this many are pending at once.
pub const MAX_PENDING_BUCKETS: u64 = 512;

/// The bucket width for a source: `reconcile_after` capped at [`MAX_BUCKET`], at least
/// one second, and wide enough that `lag + reconcile_after` spans at most
/// [`MAX_PENDING_BUCKETS`] buckets. Whole seconds, so that buckets align on the clock.
pub fn bucket_width(lag: Duration, after: Duration) -> Duration {
    let narrow = after.min(MAX_BUCKET).as_secs().max(1);
    // Saturating: a `Config` built in code skips the validation's bounds.
    let spread = lag
        .saturating_add(after)
        .as_secs()
        .div_ceil(MAX_PENDING_BUCKETS);
    Duration::from_secs(narrow.max(spread))
}

/// One bucket waiting for its comparison: what was forwarded in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Bucket {
    /// fingerprint -> (event time, copies forwarded).
    seen: HashMap<u64, (DateTime<Utc>, u32)>,
}

/// A due bucket: the window to compare, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueWindow {
    /// The bucket's key (its aligned start).
    pub key: DateTime<Utc>,
    /// The bucket start, or the ledger's `since` when that is later.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The reconciliation bookkeeping of one source. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    width: TimeDelta,
    /// `lag + reconcile_after`.
    settle: TimeDelta,
    /// Nothing before this was forwarded with a ledger keeping it: never re-read.
    since: DateTime<Utc>,
    /// Buckets before this were registered or let go.
    covered: DateTime<Utc>,
    /// Shared with the snapshots taken for the batches in flight: a record copies only
    /// the bucket it writes to, not the ledger.
    buckets: BTreeMap<DateTime<Utc>, Arc<Bucket>>,
    /// The poll time of the current cycle (not stored).
    poll_time: DateTime<Utc>,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Ledger {
    /// A ledger for a source with `lag` and `after`, from its stored record (`None`: a
    /// checkpoint without one, whose forwarded events before `watermark` are unknown).
    pub fn restore(
        record: Option<&ReconcileRecord>,
        watermark: DateTime<Utc>,
        lag: Duration,
        after: Duration,
    ) -> Ledger {
        let configured = bucket_width(lag, after);
        // A stored width stays while its buckets do: a changed width would make them
        // overlap the new ones.
        let width = record
            .filter(|r| !r.buckets.is_empty())
            .and_then(|r| r.bucket_seconds)
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
            .unwrap_or(configured);
        let mut ledger = Ledger {
            width: delta(width),
            settle: delta(lag)
                .checked_add(&delta(after))
                .unwrap_or(TimeDelta::MAX),
            since: record.and_then(|r| r.since).unwrap_or(watermark),
            covered: record.and_then(|r| r.covered).unwrap_or(watermark),
            buckets: BTreeMap::new(),
            poll_time: watermark,
        };
        for b in record.map(|r| r.buckets.as_slice()).unwrap_or_default() {
            let bucket = Arc::make_mut(ledger.buckets.entry(b.start).or_default());
            for s in &b.seen {
                let e = bucket.seen.entry(s.hash).or_insert((s.time, 0));
                e.1 = e.1.saturating_add(s.count);
            }
        }
        ledger
    }

    /// The record stored in the checkpoint.
    pub fn to_record(&self) -> ReconcileRecord {
        ReconcileRecord {
            since: Some(self.since),
            covered: Some(self.covered),
            bucket_seconds: u64::try_from(self.width.num_seconds()).ok(),
            buckets: self
                .buckets
                .iter()
                .map(|(&start, b)| BucketRecord {
                    start,
                    seen: Self::seen_of(b),
                })
                .collect(),
        }
    }

    fn seen_of(b: &Bucket) -> Vec<SeenEvent> {
        let mut v: Vec<SeenEvent> = b
            .seen
            .iter()
            .map(|(&hash, &(time, count))| SeenEvent { hash, time, count })
            .collect();
        v.sort_by_key(|s| (s.time, s.hash));
        v
    }

    /// The aligned start of the bucket holding `t`.
    fn key(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let w = self.width.num_nanoseconds().unwrap_or(i64::MAX).max(1);
        let ns = t.timestamp_nanos_opt().unwrap_or(i64::MIN);
        DateTime::from_timestamp_nanos(ns - ns.rem_euclid(w))
    }

    fn end_of(&self, key: DateTime<Utc>) -> DateTime<Utc> {
        key.checked_add_signed(self.width)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Buckets ending after this are live in the current cycle.
    fn live_after(&self) -> DateTime<Utc> {
        self.poll_time
            .checked_sub_signed(self.settle)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Starts a poll cycle at `poll_time`: the live buckets are judged against it.
    pub fn begin_cycle(&mut self, poll_time: DateTime<Utc>) {
        self.poll_time = poll_time;
    }

    /// Records one forwarded event (its window fingerprint and time).
    pub fn record(&mut self, fingerprint: u64, time: DateTime<Utc>) {
        if time < self.since {
            return;
        }
        let key = self.key(time);
        let live = self.end_of(key) > self.live_after();
        let bucket = if live {
            Arc::make_mut(self.buckets.entry(key).or_default())
        } else {
            match self.buckets.get_mut(&key) {
                Some(b) => Arc::make_mut(b),
                None => return,
            }
        };
        let e = bucket.seen.entry(fingerprint).or_insert((time, 0));
        e.1 = e.1.saturating_add(1);
    }

    /// The watermark reached `watermark`: registers the live buckets it passed over
    /// (those without a forwarded event need their comparison too).
    pub fn cover(&mut self, watermark: DateTime<Utc>) {
        // Buckets ending at or before `live_after` are not live: start after them.
        let mut key = self.key(self.covered.max(self.live_after()).max(self.since));
        while key < watermark {
            let end = self.end_of(key);
            if end > self.live_after() {
                self.buckets.entry(key).or_default();
            }
            if end <= key {
                break;
            }
            key = end;
        }
        self.covered = self.covered.max(watermark);
    }

    /// The oldest bucket due at `now` for a source whose watermark is `watermark`.
    pub fn due(&self, now: DateTime<Utc>, watermark: DateTime<Utc>) -> Option<DueWindow> {
        let settled = now
            .checked_sub_signed(self.settle)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let (&key, _) = self.buckets.iter().next()?;
        let end = self.end_of(key);
        (end <= settled && end <= watermark).then_some(DueWindow {
            key,
            start: key.max(self.since),
            end,
        })
    }

    /// How many events were forwarded in the bucket `key`.
    pub fn forwarded(&self, key: DateTime<Utc>) -> u64 {
        self.buckets
            .get(&key)
            .map_or(0, |b| b.seen.values().map(|&(_, n)| u64::from(n)).sum())
    }

    /// The fingerprints forwarded in the bucket `key`.
    pub fn seen(&self, key: DateTime<Utc>) -> Vec<SeenEvent> {
        self.buckets
            .get(&key)
            .map(|b| Self::seen_of(b))
            .unwrap_or_default()
    }

    /// The bucket `key` was compared: it leaves the ledger.
    pub fn finish(&mut self, key: DateTime<Utc>) {
        self.buckets.remove(&key);
    }

    /// Whether any pending bucket recorded `fingerprint`.
    pub fn knows(&self, fingerprint: u64) -> bool {
        self.buckets
            .values()
            .any(|b| b.seen.contains_key(&fingerprint))
    }

    /// How many buckets are pending.
    pub fn pending(&self) -> usize {
        self.buckets.len()
    }
}

/// One change made to a running source's ledger.
#[derive(Debug, Clone, Copy)]
enum Change {
    BeginCycle(DateTime<Utc>),
    Record(u64, DateTime<Utc>),
    Cover(DateTime<Utc>),
    Finish(DateTime<Utc>),
}

/// The ledger of a running source, and the ledger as of its last committed batch.
///
/// A checkpoint holds the ledger of the moment its batch was sent (module invariant),
/// while the live one has moved on with the batches still in flight. Instead of a copy
/// per batch in flight (each a copy of the bucket being filled: quadratic in the events
/// of a bucket, and gigabytes for a busy tenant's backlog inside the live horizon),
/// the changes since the last commit are kept in order and applied to the committed
/// copy when a commit point is reached: memory is two ledgers plus one change per event
/// in flight, and each change is applied twice.
#[derive(Debug, Clone)]
pub struct Journal {
    live: Ledger,
    committed: Ledger,
    changes: std::collections::VecDeque<Change>,
    /// The number of changes applied to `committed` (the index of `changes[0]`).
    applied: u64,
}

/// A position in a [`Journal`]: the ledger after every change before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark(u64);

impl Journal {
    pub fn new(ledger: Ledger) -> Journal {
        Journal {
            committed: ledger.clone(),
            live: ledger,
            changes: std::collections::VecDeque::new(),
            applied: 0,
        }
    }

    /// The ledger as it is now.
    pub fn live(&self) -> &Ledger {
        &self.live
    }

    fn change(&mut self, c: Change) {
        Self::apply(&mut self.live, c);
        self.changes.push_back(c);
    }

    fn apply(l: &mut Ledger, c: Change) {
        match c {
            Change::BeginCycle(t) => l.begin_cycle(t),
            Change::Record(f, t) => l.record(f, t),
            Change::Cover(w) => l.cover(w),
            Change::Finish(k) => l.finish(k),
        }
    }

    /// [`Ledger::begin_cycle`].
    pub fn begin_cycle(&mut self, poll_time: DateTime<Utc>) {
        self.change(Change::BeginCycle(poll_time));
    }

    /// [`Ledger::record`].
    pub fn record(&mut self, fingerprint: u64, time: DateTime<Utc>) {
        self.change(Change::Record(fingerprint, time));
    }

    /// [`Ledger::cover`].
    pub fn cover(&mut self, watermark: DateTime<Utc>) {
        self.change(Change::Cover(watermark));
    }

    /// [`Ledger::finish`].
    pub fn finish(&mut self, key: DateTime<Utc>) {
        self.change(Change::Finish(key));
    }

    /// Where the live ledger is now.
    pub fn mark(&self) -> Mark {
        Mark(self.applied + self.changes.len() as u64)
    }

    /// The ledger as it was at `mark`, which is at or after every mark asked before.
    /// The changes before it are let go.
    pub fn at(&mut self, mark: Mark) -> &Ledger {
        while self.applied < mark.0 {
            let Some(c) = self.changes.pop_front() else {
                break;
            };
            Self::apply(&mut self.committed, c);
            self.applied += 1;
        }
        &self.committed
    }
}

/// What one comparison found.
struct Found {
    missing: u64,
    /// The largest `seen - occurred` of the missing events.
    lateness: TimeDelta,
}

impl<F: WindowFetch> WindowPoller<F> {
    /// Compares every due bucket with the API and forwards what is missing. `Break`
    /// when shutdown interrupted it.
    pub(super) async fn reconcile_due(
        &self,
        route: &Route,
        shutdown: &CancellationToken,
        state: &WindowState,
        flight: &mut Commits,
    ) -> Result<ControlFlow<()>, SourceError> {
        let Some(ledger) = flight.ledger.as_mut() else {
            return Ok(ControlFlow::Continue(()));
        };
        ledger.cover(state.watermark());
        loop {
            let Some(w) = flight
                .ledger
                .as_ref()
                .and_then(|l| l.live().due(self.clock.now(), state.watermark()))
            else {
                return Ok(ControlFlow::Continue(()));
            };
            let forwarded = flight
                .ledger
                .as_ref()
                .map_or(0, |l| l.live().forwarded(w.key));
            let count = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(ControlFlow::Break(())),
                r = self.fetch.count(w.start, w.end) => r?,
            };
            // Only an equal count proves the bucket complete: a larger one says events
            // are missing, a smaller one may hide a missing event behind one the ledger
            // holds in this bucket and the API counts elsewhere (a record forwarded with
            // an unreadable time stands at its query start).
            if count != Some(forwarded) {
                let ControlFlow::Continue(found) =
                    self.re_read(w, route, shutdown, state, flight).await?
                else {
                    return Ok(ControlFlow::Break(()));
                };
                if found.missing > 0 {
                    self.report(w, count, forwarded, &found);
                } else if let Some(n) = count.filter(|&n| n > forwarded) {
                    // The count said more, the listing has nothing more to give: the API
                    // contradicts itself. Nothing can be forwarded; say so.
                    tracing::warn!(
                        source = %self.name,
                        window_start = %w.start,
                        window_end = %w.end,
                        api_count = n,
                        forwarded,
                        "the api counts more events in a closed window than its listing returns; nothing more to forward"
                    );
                }
            }
            if let Some(l) = flight.ledger.as_mut() {
                l.finish(w.key);
            }
            // The bucket's removal is committed behind whatever it forwarded.
            flight.push(None, 0, state.clone());
            self.commit_resolved(flight).await?;
        }
    }

    /// Reads the window `w` again and forwards what its recorded fingerprints do not
    /// cover. `Break` when shutdown interrupted it.
    async fn re_read(
        &self,
        w: DueWindow,
        route: &Route,
        shutdown: &CancellationToken,
        state: &WindowState,
        flight: &mut Commits,
    ) -> Result<ControlFlow<(), Found>, SourceError> {
        let seen = flight
            .ledger
            .as_ref()
            .map(|l| l.live().seen(w.key))
            .unwrap_or_default();
        // The window logic decides what is new, against the bucket's own fingerprints:
        // a poll of `[start, end)` whose every event is settled (lag 0).
        let mut window = WindowState::restore(w.start, &seen);
        let mut cycle = self.cycle(&window, w.end, Duration::ZERO, F::RESULT_LIMIT);
        let mut found = Found {
            missing: 0,
            lateness: TimeDelta::zero(),
        };
        let mut next = Next::Fetch(cycle.current());
        loop {
            let (page, verdict) = match next {
                // A re-read gives no count to contradict (`on_page` never asks for one).
                Next::Done | Next::CountMismatch { .. } => return Ok(ControlFlow::Continue(found)),
                Next::Fetch(q) => {
                    let page = match self.read_page(&mut cycle, q, shutdown).await? {
                        PageRead::Page(page) => page,
                        PageRead::Again(n) => {
                            next = n;
                            continue;
                        }
                        PageRead::Shutdown => return Ok(ControlFlow::Break(())),
                    };
                    let verdict = cycle.on_page(&mut window, &page.marks);
                    (page, verdict)
                }
                Next::ExportInstant { at } => {
                    let Some(page) = self.read_instant(at, shutdown).await? else {
                        return Ok(ControlFlow::Break(()));
                    };
                    let verdict = cycle.on_export(&mut window, at, &page.marks);
                    (page, verdict)
                }
            };
            next = verdict.next;
            // Only the bucket's own events are compared with its fingerprints: a record
            // an API hands back from outside the window (a widened time filter) belongs
            // to a neighbouring bucket, which has its own comparison.
            let forward: Vec<bool> = page
                .marks
                .iter()
                .zip(&verdict.forward)
                .map(|(m, &f)| {
                    // A record whose time could not be read stands at the query start,
                    // so it may have been recorded in another bucket (or only in the
                    // poll's own window state): it is new only if neither knows it.
                    let known_elsewhere = || {
                        state.forwarded_copies(m.fingerprint) > 0
                            || flight
                                .ledger
                                .as_ref()
                                .is_some_and(|l| l.live().knows(m.fingerprint))
                    };
                    f && m.occurred < w.end && (m.time_known || !known_elsewhere())
                })
                .collect();
            let now = self.clock.now();
            for (m, _) in page.marks.iter().zip(&forward).filter(|(_, f)| **f) {
                found.missing += 1;
                found.lateness = found.lateness.max(now.signed_duration_since(m.occurred));
            }
            // What the bucket already had is not a duplicate of the poll: not counted as
            // one; and the source's own watermark does not move here.
            let verdict = PageVerdict {
                forward,
                duplicates: 0,
                advanced: false,
                ..verdict
            };
            let sent = self
                .forward(
                    page.items,
                    &page.marks,
                    &verdict,
                    state,
                    route,
                    shutdown,
                    flight,
                )
                .await?;
            if sent.is_break() {
                return Ok(ControlFlow::Break(()));
            }
            self.commit_resolved(flight).await?;
        }
    }

    fn report(&self, w: DueWindow, count: Option<u64>, forwarded: u64, found: &Found) {
        self.metrics
            .source_reconciled
            .get_or_create(&label("source", &self.name))
            .inc_by(found.missing);
        let lateness = found.lateness.to_std().unwrap_or_default();
        let short_by = lateness.saturating_sub(self.lag);
        let secs = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
        tracing::warn!(
            source = %self.name,
            window_start = %w.start,
            window_end = %w.end,
            missing = found.missing,
            forwarded_before = forwarded,
            api_count = ?count,
            lag = %secs(self.lag),
            lateness = %secs(lateness),
            short_by = %secs(short_by),
            "events appeared in the api after the configured lag; reconciliation forwarded them now: the lag is too short, raising it by short_by covers them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const MIN: Duration = Duration::from_secs(60);

    /// The committed ledger of a journal at each mark is the ledger as it was when the
    /// mark was taken, whatever was changed since: records into a bucket being filled,
    /// buckets registered by a moving watermark, and buckets finished.
    #[test]
    fn a_journal_gives_the_ledger_of_each_mark() {
        let start = t("2024-05-01T09:00:00Z");
        let mut journal = Journal::new(ledger("2024-05-01T09:00:00Z"));
        let mut expected: Vec<(Mark, Ledger)> = Vec::new();
        let mut state: u64 = 7;
        for step in 0..400i64 {
            // A small deterministic generator: records at and around the moving time,
            // now and then a new cycle, a cover, or a finished bucket.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let at = start + TimeDelta::seconds(step * 3 - (state >> 60) as i64);
            match state >> 61 {
                0 => journal.begin_cycle(at + TimeDelta::minutes(2)),
                1 => journal.cover(at),
                2 => {
                    let key = journal.live().buckets.keys().next().copied();
                    if let Some(key) = key {
                        journal.finish(key);
                    }
                }
                _ => journal.record(state % 50, at),
            }
            if step % 7 == 0 {
                expected.push((journal.mark(), journal.live().clone()));
            }
        }
        assert!(expected.len() > 50);
        assert!(
            expected.iter().any(|(_, l)| l.pending() > 1),
            "the walk registers several buckets"
        );
        for (mark, ledger) in expected {
            assert_eq!(journal.at(mark), &ledger);
        }
        let end = journal.mark();
        let live = journal.live().clone();
        assert_eq!(journal.at(end), &live);
        assert!(journal.changes.is_empty());
    }

    /// lag 1m, reconcile after 4m: 4-minute buckets, due 5 minutes after their end.
    fn ledger(watermark: &str) -> Ledger {
        Ledger::restore(None, t(watermark), MIN, 4 * MIN)
    }

    #[test]
    fn bucket_width_is_bounded_both_ways() {
        assert_eq!(bucket_width(MIN, 10 * MIN), MAX_BUCKET);
        assert_eq!(bucket_width(MIN, 4 * MIN), 4 * MIN);
        assert_eq!(
            bucket_width(Duration::ZERO, Duration::from_millis(10)),
            Duration::from_secs(1)
        );
        // 24h + 24h in 5-minute buckets would be 576: widened to stay within the bound.
        let w = bucket_width(Duration::from_secs(86_400), Duration::from_secs(86_400));
        assert!(172_800 / w.as_secs() <= MAX_PENDING_BUCKETS, "{w:?}");
        // Durations no validation bounded: the widest bucket there is, not a panic.
        let w = bucket_width(Duration::MAX, Duration::MAX);
        assert_eq!(w.as_secs(), u64::MAX.div_ceil(MAX_PENDING_BUCKETS));
    }

    #[test]
    fn only_buckets_read_while_live_are_kept_and_become_due_after_the_settle_time() {
        let mut l = ledger("2024-05-01T09:00:00Z");
        // A cycle at 10:00 reads a backlog from 09:00: settled buckets end before 09:55.
        l.begin_cycle(t("2024-05-01T10:00:00Z"));
        l.record(1, t("2024-05-01T09:10:00Z"));
        l.record(2, t("2024-05-01T09:56:00Z"));
        l.record(2, t("2024-05-01T09:56:00Z"));
        l.cover(t("2024-05-01T09:59:00Z"));
        // 09:52-09:56 (end after 09:55), 09:56-10:00: the backlog bucket is not kept.
        assert_eq!(l.pending(), 2);
        assert_eq!(l.forwarded(t("2024-05-01T09:56:00Z")), 2);
        assert_eq!(l.forwarded(t("2024-05-01T09:52:00Z")), 0);
        // Due only once the watermark passed the end and the end is 5 minutes old.
        let now = t("2024-05-01T10:00:59Z");
        assert_eq!(l.due(now, t("2024-05-01T09:59:00Z")), None);
        let now = t("2024-05-01T10:01:00Z");
        let due = l.due(now, t("2024-05-01T09:59:00Z")).unwrap();
        assert_eq!(
            (due.start, due.end),
            (t("2024-05-01T09:52:00Z"), t("2024-05-01T09:56:00Z"))
        );
        l.finish(due.key);
        assert_eq!(l.due(now, t("2024-05-01T09:59:00Z")), None, "10:00 not yet");
        let due = l
            .due(t("2024-05-01T10:05:00Z"), t("2024-05-01T10:00:00Z"))
            .unwrap();
        assert_eq!(due.start, t("2024-05-01T09:56:00Z"));
        assert_eq!(l.seen(due.key).len(), 1);
        assert_eq!(l.seen(due.key)[0].count, 2);
        assert!(
            l.knows(2) && !l.knows(1),
            "the backlog event was not recorded"
        );
        l.finish(due.key);
        assert_eq!(l.pending(), 0);
        assert!(!l.knows(2));
    }

    #[test]
    fn a_bucket_stays_recorded_once_registered_and_nothing_before_since_counts() {
        let mut l = ledger("2024-05-01T09:57:30Z");
        l.begin_cycle(t("2024-05-01T10:00:00Z"));
        l.record(9, t("2024-05-01T09:57:00Z")); // before since: forwarded by an older build
        l.record(1, t("2024-05-01T09:58:00Z"));
        l.cover(t("2024-05-01T09:59:00Z"));
        // Much later, the rest of the same bucket is forwarded by a cycle that no
        // longer sees it as live: it is still recorded, or the re-read would resend it.
        l.begin_cycle(t("2024-05-01T11:00:00Z"));
        l.record(2, t("2024-05-01T09:59:30Z"));
        let key = t("2024-05-01T09:56:00Z");
        assert_eq!(l.forwarded(key), 2);
        let due = l
            .due(t("2024-05-01T11:00:00Z"), t("2024-05-01T10:30:00Z"))
            .unwrap();
        assert_eq!(due.key, key);
        assert_eq!(due.start, t("2024-05-01T09:57:30Z"), "clamped to since");
        // and nothing of the long-settled stretch was registered
        l.cover(t("2024-05-01T10:30:00Z"));
        assert_eq!(l.pending(), 1);
    }

    #[test]
    fn the_ledger_round_trips_through_its_record() {
        let mut l = ledger("2024-05-01T09:58:00Z");
        l.begin_cycle(t("2024-05-01T10:00:00Z"));
        l.record(1, t("2024-05-01T09:58:00.000000001Z"));
        l.record(1, t("2024-05-01T09:58:00.000000001Z"));
        l.record(3, t("2024-05-01T09:59:00Z"));
        l.cover(t("2024-05-01T10:05:00Z"));
        let rec = l.to_record();
        assert_eq!(rec.bucket_seconds, Some(240));
        let mut back = Ledger::restore(Some(&rec), t("2000-01-01T00:00:00Z"), MIN, 4 * MIN);
        back.begin_cycle(l.poll_time);
        assert_eq!(back, l);
        // a stored width wins over a changed configuration while its buckets remain
        let wider = Ledger::restore(Some(&rec), t("2000-01-01T00:00:00Z"), MIN, 20 * MIN);
        assert_eq!(wider.width, TimeDelta::minutes(4));
    }

    #[test]
    fn cover_is_bounded_by_the_live_stretch() {
        // A watermark that jumps a month ahead registers only the live buckets.
        let mut l = ledger("2024-04-01T00:00:00Z");
        l.begin_cycle(t("2024-05-01T10:00:00Z"));
        l.cover(t("2024-05-01T09:59:00Z"));
        assert!(l.pending() <= 3, "{}", l.pending());
    }
}
