//! Concurrent catch-up: a source far behind reads its settled backlog in time slices at
//! once, and delivers and commits them strictly in time order.
//!
//! At the start of a poll at time P, a source whose fetcher allows it
//! ([`WindowFetch::CONCURRENT_CATCH_UP`]), with more than one slice reader (the tenant's
//! `max_concurrent_requests`), and whose watermark is behind the lag window by more
//! than [`catch_up::behind_threshold`] reads `[watermark, P - lag)` here before the
//! poll goes on as usual from `P - lag`. That range is *settled*: every event of it was
//! listed when the poll started and none moves, so each slice `[a, b)` is read by its
//! own [`crate::sources::window::PollCycle`] with the poll time `b` and no lag (offset
//! paging, splits at the result limit and the other answers exactly as in a poll), over
//! its own [`WindowState`]: the first slice starts from the source's state, a later one
//! from an empty state at `a` plus the source's fingerprints at or after `a`.
//!
//! **Order (ARCHITECTURE.md, invariants 1 and 2).** Slices are read at once, but their
//! pages go to the route only in time order: the current (oldest) slice's, then, once
//! its last page was sent, the next one's. Each page goes through the poll loop's own
//! forward path (batches, the bounded in-flight window, commits in batch order behind
//! every acknowledgement), and the state committed after a page is that slice's state
//! after it, joined with what the earlier slices left at or after its watermark
//! ([`WindowState::absorb`]). Since every earlier slice was sent whole before it, such a
//! state holds the window invariant for the whole source: a restart reads again exactly
//! what was not delivered. An event an earlier slice listed outside its own range (out
//! of the query window, of unknown time) can go out a second time from a later slice:
//! a duplicate, never a loss.
//!
//! **Memory (invariant 3).** Slices, new ones and the rests of cut ones (below), are
//! opened while fewer than twice `slice_readers` are open (read, or read and not yet
//! sent). The slices that are not the current one read ahead at
//! most [`AHEAD_PER_READER`] pages per slice reader among them all (`Ahead`: a reader
//! waits for room before it asks for a page), so what the catch-up holds is that many
//! pages and the current slice's two (one in its hand-off, one read and waiting),
//! whatever the number of slices open. The current slice reads its next page while its previous one is being
//! sent, and never waits on the others' read-ahead. The requests themselves are bounded
//! by the tenant's limiter ([`crate::api::limiter`]).
//!
//! **Sizing.** Slices are cut one at a time, so each can use what the earlier ones
//! found. A slice aims at [`SLICE_PAGES`] pages less a tenth of one
//! ([`SHORT_BY_TENTHS`]), so that its last page comes back short and ends its query (a
//! full last page costs one more request only to find the slice's end).
//!
//! A slice whose first page is full and in order is cut where a slice's worth at that
//! page's density reaches, measured from the page's oldest record: its reader reads on
//! to the cut, and the rest is handed back as one slice of that width per reader, read
//! at once, plus what is left, each placed before every slice that starts after it.
//! (The query after the cut starts at the page's newest records, which it lists again:
//! with pages under about 20 records, or many records at those instants, the last page
//! can still come back full.) A rest is opened only when every open slice before it is
//! sized (has read its first page, or is one of those slices of a known width): a
//! slice opened far ahead would hold its open place and its read-ahead while the rests
//! before it are read one at a time.
//!
//! Until a first page measured the density (a cut), new slices are opened `readers` at
//! once, each [`FIRST_SLICE`] wide at first (or the backlog shared among the readers,
//! when shorter), then at most eight times wider or narrower than the last slice read:
//! cut blind, so that a listing no page measures (out of order, short pages) is still
//! read at once. After that, a new slice is opened one at a time, under the same rule
//! as a rest, as wide as `readers` slices at the density last found (at least
//! [`MIN_SLICE`]), so that its first page cuts it for that many readers.
//!
//! Nothing here spawns: the slice readers are futures polled by the source's own task,
//! beside the sending of the current slice; on shutdown or an error they are dropped.

use crate::route::Route;
use crate::sources::catch_up::{self, CatchUp};
use crate::sources::poll::{Commits, Judged, SourceError, WindowFetch, WindowPoller};
use crate::sources::window::{Next, PageEvent, PageVerdict, WindowState, MAX_SHORT_PAGE_ANSWERS};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::FutureExt as _;
use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The span of the first slices of a catch-up.
pub const FIRST_SLICE: Duration = Duration::from_secs(60);

/// The narrowest slice.
pub const MIN_SLICE: Duration = Duration::from_secs(1);

/// How many pages a slice aims at: what a slice reads ahead while an earlier one is
/// sent, so that a slice of that size is read whole at the same time as the others.
pub const SLICE_PAGES: u64 = 2;

/// How far short of [`SLICE_PAGES`] full pages a slice is sized and cut, in tenths of
/// a page. Its last page then comes back short and ends its query; a full last page
/// takes one more request only to find the slice's end, a third more requests at two
/// pages a slice (and the tenant's `max_concurrent_requests` shares them all).
pub const SHORT_BY_TENTHS: u64 = 1;

/// What a slice aims at, in tenths of a page: [`SLICE_PAGES`] pages less
/// [`SHORT_BY_TENTHS`].
const SLICE_TENTHS: u64 = 10 * SLICE_PAGES - SHORT_BY_TENTHS;

/// The records a slice aims at.
fn slice_target(page_size: u32) -> u64 {
    SLICE_TENTHS * u64::from(page_size) / 10
}

/// How many pages the slices after the current one read ahead, per slice reader, among
/// them all.
pub const AHEAD_PER_READER: usize = 2;

/// One page of a slice, decided, with the slice's state after it.
struct SlicePage<T> {
    items: Vec<T>,
    marks: Vec<PageEvent>,
    verdict: PageVerdict,
    state: WindowState,
    /// Its place in the read-ahead of the slices after the current one (`None`: read
    /// while its slice was the current one), given back when the page is dropped.
    _ahead: Option<OwnedSemaphorePermit>,
}

/// The read-ahead of the slices that are not the current one: at most
/// [`AHEAD_PER_READER`] x `slice_readers` pages read and not yet sent among all of
/// them, whatever the number of slices open. The current slice reads without it (it
/// never waits on the later ones, which wait on it).
#[derive(Clone)]
struct Ahead {
    pages: Arc<Semaphore>,
    /// The id of the current slice.
    current: watch::Receiver<u64>,
}

impl Ahead {
    /// A place for one more page of slice `id`; `None` once it is the current slice.
    async fn place(&mut self, id: u64) -> Option<OwnedSemaphorePermit> {
        loop {
            if *self.current.borrow_and_update() == id {
                return None;
            }
            tokio::select! {
                p = self.pages.clone().acquire_owned() => return p.ok(),
                changed = self.current.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

/// What a slice reader leaves when its slice is read.
struct SliceEnd {
    state: WindowState,
    limit: u64,
    /// Records the slice listed (for the next slice's size).
    listed: u64,
    span: TimeDelta,
}

/// A slice being read or waiting to be sent.
struct Open<T> {
    id: u64,
    start: DateTime<Utc>,
    pages: mpsc::Receiver<SlicePage<T>>,
    /// Set once its reader finished: `None` inside while it reads.
    end: Option<Option<SliceEnd>>,
    /// It hands back no rest that reaches far: its first page was read (or its reader
    /// finished), or it is a slice's worth at the density its neighbour showed (what it
    /// may still hand back lies inside it).
    sized: bool,
    /// The width of a slice's worth its first page showed, when it cut the slice: the
    /// span once it finished (its own may hold an empty stretch before its first
    /// record).
    cut_width: Option<TimeDelta>,
}

/// What the catch-up loop waited for.
enum Step<T> {
    Stop,
    Finished((u64, Result<Option<SliceEnd>, SourceError>)),
    Page(Option<SlicePage<T>>),
    Cut(Cut),
}

/// A slice reader read its first page: whether it kept only `[a, m)` of its slice, and
/// the rest it handed back, to be read as slices of their own.
struct Cut {
    id: u64,
    /// The rest, in slices (each sized, but for the last): empty when it keeps the
    /// whole slice.
    rests: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// The span a slice's worth of records takes there, when it cut.
    kept: Option<TimeDelta>,
}

impl Cut {
    /// Takes it in: the slice is sized, its rests wait to be opened, and the span of a
    /// slice's worth is the width it found (new slices are `readers` times that).
    /// Whether it cut (its page measured the density).
    fn apply<T>(
        self,
        open: &mut VecDeque<Open<T>>,
        rests: &mut BTreeMap<DateTime<Utc>, (DateTime<Utc>, bool)>,
        span: &mut TimeDelta,
    ) -> bool {
        if let Some(o) = open.iter_mut().find(|o| o.id == self.id) {
            o.sized = true;
            o.cut_width = self.kept;
        }
        let last = self.rests.len().saturating_sub(1);
        rests.extend(
            self.rests
                .into_iter()
                .enumerate()
                .map(|(i, (a, b))| (a, (b, i < last))),
        );
        if let Some(kept) = self.kept {
            *span = kept;
        }
        self.kept.is_some()
    }
}

type Reader<'a> = BoxFuture<'a, (u64, Result<Option<SliceEnd>, SourceError>)>;

impl<F: WindowFetch> WindowPoller<F> {
    /// Reads the settled backlog `[watermark, poll_time - lag)` in concurrent slices
    /// when the source is far behind (see the module docs); does nothing otherwise.
    /// On return `state` is where the slices got to (the usual poll goes on from it).
    /// `Break` when shutdown interrupted it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn catch_up_in_slices(
        &self,
        route: &Route,
        shutdown: &CancellationToken,
        state: &mut WindowState,
        flight: &mut Commits,
        poll_time: DateTime<Utc>,
        limit: &mut u64,
        progress: &mut CatchUp,
    ) -> Result<ControlFlow<()>, SourceError> {
        let readers = self.slice_readers;
        if !F::CONCURRENT_CATCH_UP || readers < 2 {
            return Ok(ControlFlow::Continue(()));
        }
        let behind = catch_up::behind(poll_time, self.lag, state.watermark());
        if behind <= catch_up::behind_threshold(self.poll_interval) {
            return Ok(ControlFlow::Continue(()));
        }
        let end = poll_time - TimeDelta::from_std(self.lag).unwrap_or(TimeDelta::MAX);
        let start = state.watermark();
        tracing::debug!(
            source = %self.name,
            start = %start,
            end = %end,
            readers,
            "reading the backlog in time slices at once"
        );
        let target = slice_target(self.page_size);
        let backlog = end - start;
        let mut span = TimeDelta::from_std(FIRST_SLICE)
            .unwrap_or(TimeDelta::MAX)
            .min(backlog / readers as i32)
            .max(min_slice());
        let mut next_start = start;
        let mut next_id = 0u64;
        let mut open: VecDeque<Open<F::Item>> = VecDeque::new();
        let mut reading: FuturesUnordered<Reader<'_>> = FuturesUnordered::new();
        // The state the earlier slices left (what they sent is all in flight).
        let mut carry: Option<WindowState> = None;
        // A reader that found its slice dense keeps a slice's worth and hands back the
        // rest, in slices of that width and what is left, each read before every slice
        // that starts after it.
        let (cut_tx, mut cut_rx) = mpsc::unbounded_channel::<Cut>();
        // A first page measured the density: new slices are cut by it from now on.
        let mut measured = false;
        // The rests handed back, not yet opened, each with whether it is sized (a
        // slice's worth, not what was left): each is read before every slice that
        // starts after it.
        let mut rests: BTreeMap<DateTime<Utc>, (DateTime<Utc>, bool)> = BTreeMap::new();
        let (current_tx, current_rx) = watch::channel(0u64);
        let ahead = Ahead {
            pages: Arc::new(Semaphore::new(AHEAD_PER_READER * readers)),
            current: current_rx,
        };
        loop {
            while let Ok(cut) = cut_rx.try_recv() {
                measured |= cut.apply(&mut open, &mut rests, &mut span);
            }
            // The rests of dense slices first, up to twice the readers open, in time
            // order: not while an earlier slice may still hand back a rest before it
            // (a rest read far ahead holds its open place and its read-ahead while the
            // slices before it are read one at a time).
            while open.len() < 2 * readers {
                let Some((&a, _)) = rests.first_key_value() else {
                    break;
                };
                if open.iter().any(|o| !o.sized && o.start < a) {
                    break;
                }
                let (a, (b, sized)) = rests.pop_first().expect("the first rest");
                let seed = WindowState::restore(a, &state.fingerprints());
                let (slice, reader) = self.open_slice(
                    &mut next_id,
                    a,
                    b,
                    seed,
                    *limit,
                    &cut_tx,
                    ahead.clone(),
                    shutdown,
                );
                reading.push(reader);
                let at = open.iter().position(|o| o.start > a).unwrap_or(open.len());
                open.insert(at, Open { sized, ..slice });
            }
            // Then new slices. Until a first page showed the density (a cut), the listing
            // may be one no page measures (out of order, short pages, sparse): `readers`
            // slices of `span` at once, cut blind. Once one did: one slice at a time,
            // once every open one is sized (one still reading its first page could hand
            // back a rest that goes before it), as wide as `readers` slices at that
            // density, so that its first page cuts it into slices that many readers
            // read at once.
            loop {
                let room = if measured {
                    open.len() < 2 * readers && open.iter().all(|o| o.sized)
                } else {
                    open.len() < readers
                };
                if !room || !rests.is_empty() || next_start >= end {
                    break;
                }
                let a = next_start;
                let width = if measured {
                    span.checked_mul(readers as i32)
                } else {
                    Some(span)
                };
                let b = width
                    .and_then(|w| a.checked_add_signed(w))
                    .unwrap_or(end)
                    .min(end);
                next_start = b;
                let seed = if next_id == 0 {
                    state.clone()
                } else {
                    WindowState::restore(a, &state.fingerprints())
                };
                let (slice, reader) = self.open_slice(
                    &mut next_id,
                    a,
                    b,
                    seed,
                    *limit,
                    &cut_tx,
                    ahead.clone(),
                    shutdown,
                );
                reading.push(reader);
                open.push_back(slice);
            }
            let Some(current) = open.front_mut() else {
                break;
            };
            current_tx.send_if_modified(|c| std::mem::replace(c, current.id) != current.id);
            if current.end.is_some() && current.pages.is_empty() {
                // Read whole and sent: the next slice's turn.
                let done = open.pop_front().expect("the current slice");
                match done.end.flatten() {
                    Some(end) => {
                        let mut s = end.state;
                        if let Some(c) = &carry {
                            s.absorb(c);
                        }
                        carry = Some(s);
                    }
                    // Its reader stopped at shutdown.
                    None => return Ok(ControlFlow::Break(())),
                }
                continue;
            }
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Step::Stop,
                Some(done) = reading.next(), if !reading.is_empty() => Step::Finished(done),
                Some(cut) = cut_rx.recv() => Step::Cut(cut),
                page = current.pages.recv() => Step::Page(page),
            };
            let page = match step {
                Step::Stop => return Ok(ControlFlow::Break(())),
                Step::Finished((id, r)) => {
                    finished(&mut open, id, r?, limit, &mut span, target);
                    continue;
                }
                Step::Cut(cut) => {
                    measured |= cut.apply(&mut open, &mut rests, &mut span);
                    continue;
                }
                Step::Page(Some(page)) => page,
                // The reader finished (its sender went with it); its end was recorded
                // in the same poll of `reading`, and the check above takes the turn.
                Step::Page(None) => continue,
            };
            let mut snapshot = page.state;
            if let Some(c) = &carry {
                snapshot.absorb(c);
            }
            // The slices read on while this page is sent.
            let sent = {
                let send = self.forward(
                    page.items,
                    &page.marks,
                    &page.verdict,
                    &snapshot,
                    route,
                    shutdown,
                    flight,
                );
                tokio::pin!(send);
                loop {
                    let step = tokio::select! {
                        r = &mut send => break r?,
                        Some(done) = reading.next(), if !reading.is_empty() => Step::<F::Item>::Finished(done),
                        Some(cut) = cut_rx.recv() => Step::Cut(cut),
                    };
                    match step {
                        Step::Finished((id, r)) => {
                            finished(&mut open, id, r?, limit, &mut span, target);
                        }
                        Step::Cut(cut) => {
                            measured |= cut.apply(&mut open, &mut rests, &mut span);
                        }
                        Step::Stop | Step::Page(_) => unreachable!("not selected here"),
                    }
                }
            };
            if sent.is_break() {
                return Ok(ControlFlow::Break(()));
            }
            self.commit_resolved(flight).await?;
            *state = snapshot;
            self.observe(progress, state, flight);
        }
        if let Some(c) = carry {
            *state = c;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// A new slice `[a, b)` from `seed`, and its reader.
    #[allow(clippy::too_many_arguments)]
    fn open_slice<'a>(
        &'a self,
        next_id: &mut u64,
        a: DateTime<Utc>,
        b: DateTime<Utc>,
        seed: WindowState,
        limit: u64,
        cuts: &mpsc::UnboundedSender<Cut>,
        ahead: Ahead,
        shutdown: &'a CancellationToken,
    ) -> (Open<F::Item>, Reader<'a>) {
        let (tx, rx) = mpsc::channel(1);
        let id = *next_id;
        *next_id += 1;
        let reader = self
            .read_slice(id, a, b, seed, limit, tx, cuts.clone(), ahead, shutdown)
            .map(move |r| (id, r))
            .boxed();
        let slice = Open {
            id,
            start: a,
            pages: rx,
            end: None,
            sized: false,
            cut_width: None,
        };
        (slice, reader)
    }

    /// Reads the slice `[a, b)` from `state`, handing each decided page to `pages`;
    /// `None` when shutdown (or the end of the catch-up) stopped it. Its first page says
    /// on `cuts` whether it keeps the whole slice: a page that is full and in order
    /// tells how far a slice's worth reaches ([`cut_at`]), and past that the rest is
    /// handed back, to be read by other readers ([`rests_after_cut`]).
    #[allow(clippy::too_many_arguments)]
    async fn read_slice(
        &self,
        id: u64,
        a: DateTime<Utc>,
        mut b: DateTime<Utc>,
        mut state: WindowState,
        limit: u64,
        pages: mpsc::Sender<SlicePage<F::Item>>,
        cuts: mpsc::UnboundedSender<Cut>,
        mut ahead: Ahead,
        shutdown: &CancellationToken,
    ) -> Result<Option<SliceEnd>, SourceError> {
        // Settled: the slice's end is its poll time, and no lag is left to re-read.
        let mut cycle = self.cycle(&state, b, Duration::ZERO, limit);
        let mut next = Next::Fetch(cycle.current());
        let mut listed = 0u64;
        let mut first = true;
        loop {
            if let Next::CountMismatch {
                query,
                received,
                reported,
            } = next
            {
                return Err(SourceError::ShortPageContradicted {
                    name: self.name.to_string(),
                    start: query.start,
                    end: query.end,
                    page: query.page,
                    received,
                    reported,
                    answers: MAX_SHORT_PAGE_ANSWERS,
                });
            }
            if matches!(next, Next::Done) {
                break;
            }
            // A later slice waits for room in the read-ahead before it reads a page.
            let place = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(None),
                p = ahead.place(id) => p,
            };
            let (items, marks, verdict) = match self
                .read_and_judge(&mut cycle, &mut state, next, shutdown)
                .await?
            {
                Judged::Page(items, marks, verdict) => (items, marks, verdict),
                Judged::Again(n) => {
                    next = n;
                    continue;
                }
                Judged::Finished => break,
                Judged::Shutdown => return Ok(None),
            };
            next = verdict.next;
            listed += marks.len() as u64;
            // (A short page its own count contradicts is asked again: the answer to
            // that is the first page.)
            if verdict.short_page.is_none() && std::mem::take(&mut first) {
                let mut cut = Cut {
                    id,
                    rests: Vec::new(),
                    kept: None,
                };
                if let Some((m, width)) = cut_at(a, b, self.page_size, &marks, &verdict) {
                    cut.rests = rests_after_cut(m, width, b, self.slice_readers);
                    cut.kept = Some(width);
                    tracing::trace!(source = %self.name, slice = id, at = %m, rests = cut.rests.len(), "slice cut by its first page's density");
                    b = m;
                    // A new query from where the page got to, ending at the cut.
                    cycle = self.cycle(&state, b, Duration::ZERO, cycle.limit());
                    next = Next::Fetch(cycle.current());
                }
                let _ = cuts.send(cut);
            }
            let page = SlicePage {
                items,
                marks,
                verdict,
                state: state.clone(),
                _ahead: place,
            };
            if pages.send(page).await.is_err() {
                return Ok(None);
            }
        }
        Ok(Some(SliceEnd {
            state,
            limit: cycle.limit(),
            listed,
            span: b - a,
        }))
    }
}

/// Where a slice `[a, b)` whose first page was `marks` is cut, and the span a slice's
/// worth of records takes at the density of that page: the cut is where [`SLICE_PAGES`]
/// such pages less [`SHORT_BY_TENTHS`] reach from the page's oldest record (not from
/// `a`: a slice that starts before a backlog's first record would be cut far past its
/// second page), when that is well before `b`; `None` for a page that is not full, was
/// not in order, or ended its query.
fn cut_at(
    a: DateTime<Utc>,
    b: DateTime<Utc>,
    page_size: u32,
    marks: &[PageEvent],
    verdict: &PageVerdict,
) -> Option<(DateTime<Utc>, TimeDelta)> {
    if marks.len() < page_size as usize
        || verdict.out_of_order()
        || !verdict.anomalies.is_empty()
        || !matches!(verdict.next, Next::Fetch(_))
    {
        return None;
    }
    let mut known = marks.iter().filter(|m| m.time_known).map(|m| m.occurred);
    let first = known.next()?;
    let (oldest, last, n) = known.fold((first, first, 1i128), |(lo, hi, n), t| {
        (lo.min(t), hi.max(t), n + 1)
    });
    let oldest = oldest.max(a);
    if last <= oldest {
        return None;
    }
    // n records span n - 1 gaps (those of known time, within the slice): a slice's
    // worth is that many records at this density.
    let gaps = i128::from((last - oldest).num_nanoseconds()?);
    let tenths = i128::from(SLICE_TENTHS);
    let width = TimeDelta::nanoseconds(i64::try_from(gaps * tenths * n / (10 * (n - 1))).ok()?)
        .max(min_slice());
    let m = oldest.checked_add_signed(width)?;
    (m > last && m.checked_add_signed(min_slice())? < b).then_some((m, width))
}

/// The rest `[m, b)` of a slice cut at `m`, as slices to be read: up to `readers` of
/// `width` (a slice's worth at the density its first page showed), so that that many
/// readers start on them at once, where one rest would be read, and cut, one first page
/// after another; then what is left.
fn rests_after_cut(
    m: DateTime<Utc>,
    width: TimeDelta,
    b: DateTime<Utc>,
    readers: usize,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut rests = Vec::with_capacity(readers + 1);
    let mut start = m;
    for _ in 0..readers {
        match start.checked_add_signed(width) {
            Some(end) if end.checked_add_signed(min_slice()).is_some_and(|e| e < b) => {
                rests.push((start, end));
                start = end;
            }
            _ => break,
        }
    }
    rests.push((start, b));
    rests
}

fn min_slice() -> TimeDelta {
    TimeDelta::from_std(MIN_SLICE).unwrap_or(TimeDelta::MAX)
}

/// Records that the reader of slice `id` finished, and sizes the next slices by what
/// it found.
fn finished<T>(
    open: &mut VecDeque<Open<T>>,
    id: u64,
    end: Option<SliceEnd>,
    limit: &mut u64,
    span: &mut TimeDelta,
    target: u64,
) {
    let o = open.iter_mut().find(|o| o.id == id);
    if let Some(e) = &end {
        *limit = (*limit).min(e.limit);
        *span = match o.as_ref().and_then(|o| o.cut_width) {
            Some(width) => width,
            None => next_span(e.span, e.listed, target),
        };
    }
    if let Some(o) = o {
        o.end = Some(end);
        o.sized = true;
    }
}

/// The span of the next slice: `target` records at the density of the last one, at
/// most eight times wider or narrower than it, at least [`MIN_SLICE`].
fn next_span(last: TimeDelta, listed: u64, target: u64) -> TimeDelta {
    let factor = if listed == 0 {
        8.0
    } else {
        (target as f64 / listed as f64).clamp(0.125, 8.0)
    };
    let nanos = last.num_nanoseconds().unwrap_or(i64::MAX) as f64 * factor;
    let nanos = if nanos >= i64::MAX as f64 {
        i64::MAX
    } else {
        nanos as i64
    };
    TimeDelta::nanoseconds(nanos).max(min_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiClient;
    use crate::checkpoint::Store;
    use crate::config::{self, StartAt};
    use crate::event::{Event, SourceKind};
    use crate::metrics::Metrics;
    use crate::route::SinkBatch;
    use crate::sources::poll::FetchedPage;
    use crate::sources::window::QueryWindow;
    use serde_json::value::RawValue;
    use std::collections::{BTreeSet, HashMap};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    const PAGE: u32 = 10;
    const READERS: usize = 3;

    #[derive(Default)]
    struct Stats {
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        /// The start of each query, in the order its answer came.
        answered: Mutex<Vec<DateTime<Utc>>>,
        /// The events of all answers.
        events: AtomicUsize,
        /// The time all answers took, summed (ms on the paused clock).
        busy_ms: AtomicUsize,
    }

    /// A settled Audit Log backlog whose answers take a delay of their own per query
    /// (on tokio's paused clock), so that later slices often answer first.
    struct Backlog {
        at: Arc<Vec<DateTime<Utc>>>,
        stats: Arc<Stats>,
    }

    fn raw(i: usize, t: DateTime<Utc>) -> Box<RawValue> {
        RawValue::from_string(format!(r#"{{"timestamp":"{}","n":{i}}}"#, t.to_rfc3339())).unwrap()
    }

    fn time_of(raw: &str) -> Result<DateTime<Utc>, String> {
        let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        v["timestamp"]
            .as_str()
            .ok_or("no timestamp")?
            .parse()
            .map_err(|e: chrono::ParseError| e.to_string())
    }

    impl WindowFetch for Backlog {
        type Item = Event;
        const KIND: SourceKind = SourceKind::AuditLog;
        const RETENTION: Option<Duration> = None;
        const MAX_PAGE_SIZE: u32 = 100;
        // Small, so that dense slices split at it.
        const RESULT_LIMIT: u64 = 30;
        const UNIQUE_KEYS: bool = false;
        const ALWAYS_RE_ANCHOR: bool = false;
        const CONCURRENT_CATCH_UP: bool = true;

        fn from_source(
            source: &config::Source,
            _: Arc<ApiClient>,
            _: Arc<Metrics>,
        ) -> Result<Self, SourceError> {
            Err(SourceError::WrongSourceType {
                name: source.name.clone(),
                expected: "test",
            })
        }

        async fn fetch_page(&self, q: QueryWindow) -> Result<FetchedPage<Event>, SourceError> {
            let now = self.stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
            // 1 to 40 ms, by the query: unrelated to the slice's place in time.
            let spread = q.start.timestamp_nanos_opt().unwrap_or(0).unsigned_abs() / 1_000;
            let delay = 1 + xxhash_rust::xxh3::xxh3_64(&spread.to_le_bytes()) % 40;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            self.stats
                .busy_ms
                .fetch_add(delay as usize, Ordering::SeqCst);
            self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.stats.answered.lock().unwrap().push(q.start);
            let raws = self
                .at
                .iter()
                .enumerate()
                .filter(|(_, t)| **t >= q.start && **t < q.end)
                .skip(q.page as usize * q.page_size as usize)
                .take(q.page_size as usize)
                .map(|(i, t)| raw(i, *t))
                .collect::<Vec<_>>();
            self.stats.events.fetch_add(raws.len(), Ordering::SeqCst);
            Ok(FetchedPage::by_content(
                SourceKind::AuditLog,
                raws,
                q.start,
                time_of,
            ))
        }

        async fn fetch_instant(
            &self,
            at: DateTime<Utc>,
        ) -> Result<FetchedPage<Event>, SourceError> {
            Err(SourceError::TooManyAtOneInstant {
                name: "audit".into(),
                at,
                limit: Self::RESULT_LIMIT,
            })
        }

        async fn make_events(&self, items: Vec<Event>) -> Result<Vec<Event>, SourceError> {
            Ok(items)
        }
    }

    /// Two hours of events up to ten minutes ago: one every 7 s, and a burst of 45 in
    /// one second (past the result limit of one query).
    fn backlog() -> Vec<DateTime<Utc>> {
        let now = Utc::now();
        let from = now - TimeDelta::hours(2);
        let mut at: Vec<DateTime<Utc>> = (0..1000)
            .map(|i| from + TimeDelta::seconds(7 * i))
            .take_while(|t| *t < now - TimeDelta::minutes(10))
            .collect();
        let burst = from + TimeDelta::minutes(50);
        at.extend((0..45).map(|i| burst + TimeDelta::milliseconds(20 * i)));
        at.sort();
        at
    }

    fn poller(
        at: &Arc<Vec<DateTime<Utc>>>,
        stats: &Arc<Stats>,
        store: &Store,
        readers: usize,
    ) -> WindowPoller<Backlog> {
        WindowPoller::for_test(
            Backlog {
                at: at.clone(),
                stats: stats.clone(),
            },
            store.clone(),
            Arc::new(Metrics::new()),
            StartAt::Ago(Duration::from_secs(3 * 3600)),
            Duration::from_secs(1),
            Duration::from_secs(30),
            PAGE,
            readers,
        )
    }

    /// What a sink saw: each event's number and time in the order delivered, and every
    /// batch that arrived while the checkpoint already claimed a time past its first
    /// event (a commit ahead of an undelivered batch).
    #[derive(Default)]
    struct Seen {
        events: Vec<(usize, DateTime<Utc>)>,
        ahead: Vec<String>,
    }

    /// A sink that checks each batch against the checkpoint, then settles it with
    /// `deliver(batch number)`, until `want` events were delivered (then `enough`).
    fn sink(
        mut rx: mpsc::Receiver<SinkBatch>,
        store: Store,
        want: usize,
        deliver: impl Fn(usize) -> bool + Send + 'static,
        enough: CancellationToken,
    ) -> tokio::task::JoinHandle<Seen> {
        tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut n = 0;
            while let Some(sb) = rx.recv().await {
                n += 1;
                let first = sb.batch.events.iter().map(|e| e.occurred).min();
                if let (Some(cp), Some(first)) = (store.load("audit").unwrap(), first) {
                    if cp.watermark > first {
                        seen.ahead
                            .push(format!("batch {n}: {} > {first}", cp.watermark));
                    }
                }
                if !deliver(n) {
                    sb.ack.failed();
                    continue;
                }
                for e in sb.batch.events.iter() {
                    let v: serde_json::Value = serde_json::from_str(e.json()).unwrap();
                    seen.events
                        .push((v["n"].as_u64().unwrap() as usize, e.occurred));
                }
                sb.ack.delivered();
                if seen.events.len() >= want {
                    enough.cancel();
                }
            }
            seen
        })
    }

    /// Reads the backlog `at` with `readers` slice readers into a sink that delivers
    /// everything, until it saw every event: what it saw, the fetcher's figures, the
    /// checkpoint store (and its directory) and the time it took on the paused clock.
    async fn catch_up_all(
        at: &Arc<Vec<DateTime<Utc>>>,
        readers: usize,
    ) -> (Seen, Arc<Stats>, Store, tempfile::TempDir, Duration) {
        let stats = Arc::new(Stats::default());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (tx, rx) = mpsc::channel(2);
        let stop = CancellationToken::new();
        let seen = sink(rx, store.clone(), at.len(), |_| true, stop.clone());
        let started = tokio::time::Instant::now();
        let run = tokio::spawn(
            poller(at, &stats, &store, readers).run(Route::new(vec![tx]), stop.clone()),
        );
        run.await.unwrap().unwrap();
        let elapsed = started.elapsed();
        (seen.await.unwrap(), stats, store, dir, elapsed)
    }

    fn assert_in_time_order(events: &[(usize, DateTime<Utc>)]) {
        for w in events.windows(2) {
            assert!(w[0].1 <= w[1].1, "{:?} delivered before {:?}", w[0], w[1]);
        }
    }

    /// Events `0..n` each delivered once, in time order, and no checkpoint ahead of a
    /// batch not yet delivered.
    fn assert_every_event_once_in_order(seen: &Seen, n: usize) {
        assert!(seen.ahead.is_empty(), "{:?}", seen.ahead);
        assert_in_time_order(&seen.events);
        let numbers: Vec<usize> = seen.events.iter().map(|e| e.0).collect();
        let distinct: BTreeSet<usize> = numbers.iter().copied().collect();
        assert_eq!(distinct.len(), numbers.len(), "an event went out twice");
        assert_eq!(distinct, (0..n).collect(), "an event is missing");
    }

    #[tokio::test(start_paused = true)]
    async fn slices_are_read_at_once_and_delivered_and_committed_in_time_order() {
        let at = Arc::new(backlog());
        let (seen, stats, store, _dir, _) = catch_up_all(&at, READERS).await;

        assert_every_event_once_in_order(&seen, at.len());
        // The fake has no limiter (the client's bounds the requests themselves): at
        // most twice the readers are open, the rests of dense slices included.
        let max = stats.max_in_flight.load(Ordering::SeqCst);
        assert!(max > 1, "the slices were not read at once");
        assert!(
            max <= 2 * READERS,
            "{max} fetches at once, readers {READERS}"
        );
        let answered = stats.answered.lock().unwrap().clone();
        assert!(
            answered.windows(2).any(|w| w[1] < w[0]),
            "no later slice answered before an earlier one: the test proves nothing"
        );
        let cp = store.load("audit").unwrap().unwrap();
        assert!(cp.watermark >= *at.last().unwrap(), "{cp:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn one_reader_reads_one_page_at_a_time() {
        let at = Arc::new(backlog());
        let (seen, stats, _, _dir, _) = catch_up_all(&at, 1).await;
        assert_eq!(seen.events.len(), at.len());
        assert_in_time_order(&seen.events);
        assert_eq!(stats.max_in_flight.load(Ordering::SeqCst), 1);
    }

    /// A batch in the middle of the slices is not delivered: the source stops, and its
    /// next run resumes from the checkpoint: nothing lost, and what the first run
    /// delivered again only past the checkpoint it committed.
    #[tokio::test(start_paused = true)]
    async fn a_failed_batch_mid_catch_up_loses_nothing_across_a_restart() {
        let at = Arc::new(backlog());
        let stats = Arc::new(Stats::default());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();

        let (tx, rx) = mpsc::channel(2);
        let stop = CancellationToken::new();
        let first = sink(rx, store.clone(), usize::MAX, |n| n < 30, stop.clone());
        let result = poller(&at, &stats, &store, READERS)
            .run(Route::new(vec![tx]), stop.clone())
            .await;
        assert!(
            matches!(result, Err(SourceError::NotDelivered { batch: 30, .. })),
            "{result:?}"
        );
        let first = first.await.unwrap();
        assert!(first.ahead.is_empty(), "{:?}", first.ahead);
        let held = store.load("audit").unwrap().unwrap().watermark;
        assert!(first.events.iter().all(|e| e.1 < at[at.len() - 1]));

        let (tx, rx) = mpsc::channel(2);
        let stop = CancellationToken::new();
        let second = sink(rx, store.clone(), usize::MAX, |_| true, stop.clone());
        let run = tokio::spawn(
            poller(&at, &stats, &store, READERS).run(Route::new(vec![tx]), stop.clone()),
        );
        // Until the whole backlog was committed.
        let last = *at.last().unwrap();
        while store.load("audit").unwrap().unwrap().watermark <= last {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        stop.cancel();
        run.await.unwrap().unwrap();
        let second = second.await.unwrap();
        assert!(second.ahead.is_empty(), "{:?}", second.ahead);
        assert_in_time_order(&second.events);

        let mut copies: HashMap<usize, usize> = HashMap::new();
        for (n, _) in first.events.iter().chain(&second.events) {
            *copies.entry(*n).or_default() += 1;
        }
        assert_eq!(copies.len(), at.len(), "an event is missing");
        // Sent twice: only what the first run delivered at or after its checkpoint.
        for (n, c) in &copies {
            assert!(*c <= 2, "event {n} {c} times");
            if *c == 2 {
                assert!(at[*n] >= held, "event {n} at {} before {held}", at[*n]);
            }
        }
    }

    /// A sink that takes nothing: the catch-up reads ahead, then waits. What it read is
    /// bounded by the route's queue, the current slice's two pages and the read-ahead
    /// of the later slices, however many slices are open.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_sink_stops_the_read_ahead_at_its_bound() {
        let at = Arc::new(backlog());
        let stats = Arc::new(Stats::default());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (tx, _rx) = mpsc::channel(2);
        let stop = CancellationToken::new();
        let run = tokio::spawn(
            poller(&at, &stats, &store, READERS).run(Route::new(vec![tx]), stop.clone()),
        );
        // Long enough for every reader to read all it may (answers take at most 40 ms).
        tokio::time::sleep(Duration::from_secs(60)).await;
        let read = stats.events.load(Ordering::SeqCst);
        // Two batches in the route's queue and one being put in it, two pages of the
        // current slice, and the later slices' read-ahead (in events: the empty answer
        // that ends a query holds a place too, and nothing else).
        let bound = (3 + 2 + AHEAD_PER_READER * READERS) * PAGE as usize;
        assert!(read >= 3 * PAGE as usize, "the catch-up read: {read}");
        assert!(read <= bound, "{read} events read, more than {bound}");
        stop.cancel();
        run.abort();
    }

    /// A dense backlog after an empty hour (where the first slices find nothing and
    /// grow wide): once a first page shows its density, the readers read at once, not
    /// one slice's first page after another's. (At least half of them on average: the
    /// blind slices opened far ahead before that hold part of the read-ahead. The build
    /// before read 1.2 of 3 at once here; this one 1.85 to 2.1, by the answers' delays.)
    #[tokio::test(start_paused = true)]
    async fn a_dense_backlog_is_read_by_every_reader_at_once() {
        let from = Utc::now() - TimeDelta::hours(2);
        let at: Arc<Vec<DateTime<Utc>>> =
            Arc::new((0..3000).map(|i| from + TimeDelta::seconds(i)).collect());
        let (seen, stats, _, _dir, elapsed) = catch_up_all(&at, READERS).await;
        assert_every_event_once_in_order(&seen, at.len());
        // The answers' time over the time taken: how many were read at once, on average.
        let busy = stats.busy_ms.load(Ordering::SeqCst) as f64 / 1000.0;
        let at_once = busy / elapsed.as_secs_f64();
        assert!(
            at_once >= 0.5 * READERS as f64,
            "{at_once:.2} fetches at once on average, readers {READERS} ({busy:.1} s of answers in {elapsed:?})"
        );
        // Two pages a slice, the last one short: not the half more requests that a full
        // last page costs to find each slice's end (nor a third page per slice).
        let answers = stats.answered.lock().unwrap().len();
        let pages = at.len().div_ceil(PAGE as usize);
        assert!(
            answers <= pages * 4 / 3,
            "{answers} requests for {pages} pages"
        );
    }

    #[test]
    fn a_slice_is_cut_by_the_density_from_its_first_record_not_from_its_start() {
        let a = Utc::now() - TimeDelta::hours(3);
        let b = a + TimeDelta::hours(2);
        // The first record an hour into the slice, then one every 10 s.
        let first = a + TimeDelta::hours(1);
        let marks: Vec<PageEvent> = (0..PAGE as i64)
            .map(|i| PageEvent {
                fingerprint: i as u64,
                occurred: first + TimeDelta::seconds(10 * i),
                time_known: true,
            })
            .collect();
        let verdict = PageVerdict {
            forward: vec![true; marks.len()],
            duplicates: 0,
            split: false,
            advanced: false,
            anomalies: Vec::new(),
            listed_after: None,
            short_page: None,
            next: Next::Fetch(QueryWindow {
                start: first + TimeDelta::seconds(90),
                end: b,
                page: 0,
                page_size: PAGE,
            }),
        };
        // Ten records 10 s apart: a slice's worth (1.9 pages, 19 records) spans 190 s
        // from its first record.
        let (m, width) = cut_at(a, b, PAGE, &marks, &verdict).expect("a full page in order");
        assert_eq!(width, TimeDelta::seconds(190));
        assert_eq!(m, first + TimeDelta::seconds(190));
        // Records of unknown time say nothing of it either: the known ones do.
        let mut unknown = marks.clone();
        unknown[0].time_known = false;
        unknown[0].occurred = a;
        let (m2, _) = cut_at(a, b, PAGE, &unknown, &verdict).expect("nine known records");
        assert!(m2 > first + TimeDelta::seconds(171), "{m2}");
        // A record listed before the slice's start (a lying page) does not widen it.
        let mut early = marks.clone();
        early[0].occurred = a - TimeDelta::hours(5);
        let (_, width) =
            cut_at(a, a + TimeDelta::hours(10), PAGE, &early, &verdict).expect("in order");
        assert!(width < TimeDelta::hours(3), "{width}");
        // A page that is not full says nothing of the density.
        assert!(cut_at(a, b, PAGE, &marks[1..], &verdict).is_none());
        // Nor one whose reach is past the slice's end.
        assert!(cut_at(a, first + TimeDelta::seconds(120), PAGE, &marks, &verdict).is_none());
    }

    #[test]
    fn the_rest_of_a_cut_is_a_slice_per_reader_then_what_is_left() {
        let m = Utc::now();
        let w = TimeDelta::seconds(100);
        let b = m + TimeDelta::seconds(1000);
        let rests = rests_after_cut(m, w, b, 3);
        assert_eq!(
            rests,
            vec![
                (m, m + w),
                (m + w, m + w * 2),
                (m + w * 2, m + w * 3),
                (m + w * 3, b)
            ]
        );
        // Near the end, no slice narrower than the narrowest is left over: the last one
        // takes it.
        let b = m + TimeDelta::milliseconds(100_500);
        assert_eq!(rests_after_cut(m, w, b, 3), vec![(m, b)]);
        // The rests cover [m, b) without a gap or an overlap.
        for readers in 1..6 {
            let b = m + TimeDelta::seconds(250);
            let rests = rests_after_cut(m, w, b, readers);
            assert_eq!(rests.first().unwrap().0, m);
            assert_eq!(rests.last().unwrap().1, b);
            assert!(rests.len() <= readers + 1, "{rests:?}");
            assert!(
                rests.iter().all(|(a, b)| *b - *a >= min_slice()),
                "{rests:?}"
            );
            for pair in rests.windows(2) {
                assert_eq!(pair[0].1, pair[1].0);
            }
        }
    }
}
