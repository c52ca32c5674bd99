//! The poll/commit loop every API source shares: [`WindowPoller`] drives the window
//! logic of [`super::window`] over a [`WindowFetch`], the small per-source part that
//! knows one endpoint (Audit Log search, `query-alerts` + `query-details`, Directory Sync
//! Log), hands each page (minus what was already forwarded) to its route as a [`Batch`],
//! and commits the checkpoint behind the sinks' acknowledgements.
//!
//! **Invariant 1 (ARCHITECTURE.md: the API is the buffer):** the checkpoint moves to the
//! window state after batch n only when batches 1..=n were all Delivered by every sink of
//! the route, in order. A batch that comes back NotDelivered stops the commits and the
//! source (with an error naming the batch); the pipeline restarts it from the checkpoint,
//! which re-reads the batch from the API (the API is the buffer).
//!
//! **Invariant 2 (ARCHITECTURE.md: the lag is a safety window):** a poll queries from the
//! watermark, forwards only what the window state has not seen, and moves the watermark
//! to at most `poll_time - lag` ([`PollCycle`]); the state committed after a batch is the
//! one that batch was decided with, so a restart re-reads exactly what was not yet
//! delivered.
//!
//! A source without a checkpoint writes one holding its start edge before its first
//! poll, so that a restart never recomputes the edge from a later clock; a checkpoint
//! whose watermark lies in the future is refused. After each poll that caught up, the
//! closed windows that are due are compared with the API ([`super::reconcile`]); what
//! that finds goes out through the same forward/commit path. Before the first page of a
//! poll, a source whose counts prove a window ([`WindowFetch::COUNT_VERIFIES_PREFIX`])
//! proves what the previous poll read instead of reading it again ([`super::reread`]).
//!
//! **Invariant 3 (ARCHITECTURE.md: every queue is bounded):** at most [`MAX_IN_FLIGHT`]
//! batches wait for their acknowledgement; past that the poller waits, as it does when a
//! sink queue is full.
//!
//! The poller never spawns a task of its own (a checkpoint save runs on tokio's blocking
//! pool and is awaited in place, one at a time, in batch order); every await that can
//! block forever also watches `shutdown`. On shutdown it stops reading, waits for the
//! outstanding acknowledgements (which resolve when the sinks deliver or are stopped,
//! their tokens then counting as not delivered), commits the delivered prefix and returns
//! `Ok`.
//!
//! It does not retry API errors itself (the client does, for retriable ones); a
//! permanent API error stops the source with that error. Two answers are handled
//! here instead: a page refused as larger than asked for is asked again for less
//! ([`PollCycle::on_oversized_page`]), and what the window logic found suspect in a
//! listing (events out of order, from the future, a short page its own count
//! contradicts) is logged and counted (`report_listing`). It knows nothing of any
//! endpoint: that is the [`WindowFetch`] of each source.

use crate::ack::Outcome;
use crate::api::clock::ApiClock;
use crate::api::{ApiClient, ApiError};
use crate::checkpoint::{self as cp_store, Checkpoint, CheckpointError, ReconcileRecord, Store};
use crate::config::{self, StartAt};
use crate::event::{Batch, Event, SourceKind};
use crate::metrics::{label, Metrics};
use crate::route::Route;
use crate::sources::catch_up::{self, CatchUp, Report};
use crate::sources::reconcile::{Journal, Ledger, Mark};
use crate::sources::reread::Reread;
use crate::sources::window::{
    fingerprint, Anomaly, Next, PageEvent, PageVerdict, PollCycle, QueryWindow, WindowState,
    MAX_SHORT_PAGE_ANSWERS,
};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long Code42 keeps Audit Log and Directory Sync Log records (`docs/api.md`).
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// The most batches waiting for their acknowledgement at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// The most events of one batch: a page's new events go out in batches of at most this
/// many, so what a sink queue holds and what a stream sink keeps to write again stays
/// small whatever the page size (a page of 10,000 Audit Log events is about 5 MiB of
/// JSON). The checkpoint moves only when a page's last batch, and every one before it,
/// was delivered.
pub const MAX_BATCH_EVENTS: usize = 2_500;

/// The most bytes of event JSON in one batch (a batch holds at least one event, however
/// large): [`MAX_BATCH_EVENTS`] is sized for Audit Log events of about 500 bytes, and a
/// file event is about 3.4 KB, so without this a batch of them would be 8 MiB and a sink
/// queue of four batches a whole page of 10,000. Audit Log batches stay at 2,500.
pub const MAX_BATCH_BYTES: usize = 2 << 20;

/// The next batch of `events`: at most `max_events` of them and, past the first, at
/// most `max_bytes` of event JSON.
fn next_batch(
    events: &mut std::iter::Peekable<std::vec::IntoIter<Event>>,
    max_events: usize,
    max_bytes: usize,
) -> Vec<Event> {
    let mut chunk = Vec::new();
    let mut bytes = 0usize;
    while chunk.len() < max_events {
        let Some(e) = events.peek() else { break };
        let len = e.json().len();
        if !chunk.is_empty() && bytes.saturating_add(len) > max_bytes {
            break;
        }
        bytes = bytes.saturating_add(len);
        chunk.extend(events.next());
    }
    chunk
}

/// The most suspect events of one page named in their own WARN line.
const MAX_NAMED_ANOMALIES: usize = 5;

/// Why a source stopped. Each names the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {name}: {error}")]
    Api {
        name: String,
        #[source]
        error: ApiError,
    },
    #[error("source {name}: {error}")]
    Checkpoint {
        name: String,
        #[source]
        error: CheckpointError,
    },
    #[error("source {name}: is not a {expected} source")]
    WrongSourceType {
        name: String,
        expected: &'static str,
    },
    #[error(
        "source {name}: start position {start} is more than 90 days back; the api keeps 90 days"
    )]
    StartTooOld { name: String, start: DateTime<Utc> },
    #[error(
        "source {name}: checkpoint watermark {watermark} is more than 90 days old, events since then are no longer in the api; run `c42fwd checkpoint reset --config <config file> {name}` to start over from the configured start"
    )]
    CheckpointTooOld {
        name: String,
        watermark: DateTime<Utc>,
    },
    #[error(
        "source {name}: checkpoint {path} has its watermark {watermark} in the future (now {now}, {ahead} ahead); starting from it would skip every event until then; if the clock is right, run `c42fwd checkpoint reset --config <config file> {name}` to start over from the configured start"
    )]
    CheckpointInFuture {
        name: String,
        path: String,
        watermark: DateTime<Utc>,
        now: DateTime<Utc>,
        ahead: String,
    },
    #[error("source {name}: checkpoint {path} is for a {found} source, not {expected}")]
    WrongKind {
        name: String,
        path: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error(
        "source {name}: batch {batch} ({events} events) was not delivered by every sink of the route; the checkpoint stays at {watermark} and the source stops"
    )]
    NotDelivered {
        name: String,
        batch: u64,
        events: usize,
        watermark: DateTime<Utc>,
    },
    #[error("source {name}: the sinks of its route have stopped")]
    RouteClosed { name: String },
    #[error(
        "source {name}: more than {limit} events occurred at the single instant {at}; the api cannot serve them all"
    )]
    TooManyAtOneInstant {
        name: String,
        at: DateTime<Utc>,
        limit: u64,
    },
    #[error(
        "source {name}: the api refused even a one-record first page from {start} as past its result window (a response without its records?)"
    )]
    ResultWindowRefused { name: String, start: DateTime<Utc> },
    #[error(
        "source {name}: the api answered page {page} of the window [{start}, {end}) {answers} times with a short page ({received} results in all) while its own count said {reported}; the source stops rather than guess where the data ends"
    )]
    ShortPageContradicted {
        name: String,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        page: u32,
        received: u64,
        reported: u64,
        answers: u32,
    },
}

/// What one source reads, and how: the endpoint-specific part of a poller.
///
/// `fetch_page` reads one page of a [`QueryWindow`] (records oldest first, each with its
/// fingerprint and time); the loop decides which items are new, and `make_events` turns
/// those into the events sent (the alerts source fetches their details there).
pub trait WindowFetch: Send + Sync + Sized + 'static {
    /// A record of a page, before it is known to be new.
    type Item: Send + 'static;
    /// The kind written into checkpoints and events.
    const KIND: SourceKind;
    /// How long the API keeps the records: a start or checkpoint further back is refused.
    /// `None`: not documented, not checked here (the config still caps the start).
    const RETENTION: Option<Duration>;
    /// The largest page the endpoint serves.
    const MAX_PAGE_SIZE: u32;
    /// The most results one query serves; a window with more is split.
    const RESULT_LIMIT: u64;
    /// Fingerprints are record keys (ids), forwarded at most once each.
    const UNIQUE_KEYS: bool;
    /// Records can leave the result set while a poll pages (mutable fields under a
    /// filter, deletions): offsets are never trusted, every full page is followed by a
    /// query from its newest record ([`PollCycle::with_re_anchoring`]).
    const ALWAYS_RE_ANCHOR: bool;
    /// A backlog may be read in time slices at once, committed in order
    /// ([`super::slices`]): the records of a settled time range do not change while
    /// they are paged, and the fetcher keeps no cursor between two queries, or one per
    /// query window.
    const CONCURRENT_CATCH_UP: bool;
    /// The API's [`Self::count`] of a window proves that no record of it was missed
    /// when it equals what was forwarded there: records never leave the result set, and
    /// the count's time bounds are the search's. Then a poll proves the part of the lag
    /// window the previous poll read by a count instead of reading it again
    /// ([`super::reread`]). Never used with [`Self::ALWAYS_RE_ANCHOR`].
    const COUNT_VERIFIES_PREFIX: bool = false;

    /// The page size of the loop for a configured `page_size`: by default the
    /// configured one, capped at [`Self::MAX_PAGE_SIZE`]. (Sessions take the configured
    /// size for the API's pages and read a window page of their own.)
    fn window_page_size(configured: u32) -> u32 {
        configured.clamp(1, Self::MAX_PAGE_SIZE)
    }

    /// Builds the fetcher of `source` (which must be of this fetcher's type).
    fn from_source(
        source: &config::Source,
        client: Arc<ApiClient>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SourceError>;

    /// One page of `q`.
    fn fetch_page(
        &self,
        q: QueryWindow,
    ) -> impl Future<Output = Result<FetchedPage<Self::Item>, SourceError>> + Send;

    /// Everything that occurred at the single instant `at` (more than a whole result
    /// window did; see [`Next::ExportInstant`]), complete, or an error.
    fn fetch_instant(
        &self,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<FetchedPage<Self::Item>, SourceError>> + Send;

    /// The events to send for the new items of a page, in order.
    fn make_events(
        &self,
        items: Vec<Self::Item>,
    ) -> impl Future<Output = Result<Vec<Event>, SourceError>> + Send;

    /// How many records the API holds in `[start, end)`, when it has a count for that
    /// (see [`super::reconcile`]); `None`: the window is re-read to compare.
    fn count(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<u64>, SourceError>> + Send {
        let _ = (start, end);
        std::future::ready(Ok(None))
    }
}

/// One page as a [`WindowFetch`] read it.
#[derive(Debug)]
pub struct FetchedPage<T> {
    pub items: Vec<T>,
    /// One per item: what the window logic needs.
    pub marks: Vec<PageEvent>,
    /// The server refused the page because it lies past its result window.
    pub past_result_window: bool,
    /// Items whose time could not be read (the window start stood in), and the first
    /// reason.
    pub bad_times: u64,
    pub bad_time_reason: Option<String>,
    /// How many results the whole query has, as the response itself reported
    /// (`totalResultCount`, `totalCount`, `TotalResults`); `None` when it did not.
    pub reported_total: Option<u64>,
}

impl<T> Default for FetchedPage<T> {
    fn default() -> Self {
        FetchedPage {
            items: Vec::new(),
            marks: Vec::new(),
            past_result_window: false,
            bad_times: 0,
            bad_time_reason: None,
            reported_total: None,
        }
    }
}

impl FetchedPage<Event> {
    /// A page of records that carry no id (Audit Log events, Sync Log entries): each
    /// one fingerprinted by its raw text, its time read by `time_of` (an unreadable time
    /// stands at the window start, counted by the loop).
    pub fn by_content(
        kind: SourceKind,
        raws: Vec<Box<RawValue>>,
        window_start: DateTime<Utc>,
        time_of: fn(&str) -> Result<DateTime<Utc>, String>,
    ) -> Self {
        let mut page = FetchedPage::default();
        for raw in raws {
            let time = time_of(raw.get());
            let fp = fingerprint(raw.get());
            page.push(window_start, fp, time, |occurred| {
                Event::new(kind, raw, occurred)
            });
        }
        page
    }
}

impl<T> FetchedPage<T> {
    /// The answer "this page lies past the server's result window".
    pub fn past_result_window() -> Self {
        FetchedPage {
            past_result_window: true,
            ..FetchedPage::default()
        }
    }

    /// Adds one record. An unreadable `time` is replaced by `window_start` (the record
    /// is forwarded, never dropped: ARCHITECTURE.md invariant 5) and counted; `item` is built with
    /// the time that stands.
    pub fn push(
        &mut self,
        window_start: DateTime<Utc>,
        fingerprint: u64,
        time: Result<DateTime<Utc>, String>,
        item: impl FnOnce(DateTime<Utc>) -> T,
    ) {
        let time_known = time.is_ok();
        let occurred = match time {
            Ok(t) => t,
            Err(reason) => {
                self.bad_times += 1;
                self.bad_time_reason.get_or_insert(reason);
                window_start
            }
        };
        self.marks.push(PageEvent {
            fingerprint,
            occurred,
            time_known,
        });
        self.items.push(item(occurred));
    }
}

/// Polls one tenant's API for one configured source. See the module docs.
pub struct WindowPoller<F: WindowFetch> {
    pub(super) name: Arc<str>,
    pub(super) fetch: F,
    pub(super) lag: Duration,
    pub(super) poll_interval: Duration,
    start: StartAt,
    pub(super) page_size: u32,
    /// The most events of one batch ([`MAX_BATCH_EVENTS`]; smaller in tests).
    batch_events: usize,
    /// How many time slices of a backlog are read at once (the tenant's
    /// `max_concurrent_requests`; 1 reads it one page at a time; [`super::slices`]).
    pub(super) slice_readers: usize,
    reconcile_after: Option<Duration>,
    /// The tenant's name, for the logs (the fetcher holds the client).
    tenant: String,
    pub(super) store: Store,
    pub(super) metrics: Arc<Metrics>,
    /// The tenant API's clock: every "now" of the window (its end, reconciliation's
    /// due times) is the API's, so that a host clock running ahead skips nothing.
    pub(super) clock: Arc<ApiClock>,
    /// The tenant's client, to read the API's clock before the first window is cut
    /// (`None` in unit tests with fake fetchers).
    api: Option<Arc<ApiClient>>,
}

impl<F: WindowFetch> std::fmt::Debug for WindowPoller<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowPoller")
            .field("kind", &F::KIND)
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// A batch handed to the route, waiting for its acknowledgement.
struct InFlight {
    seq: u64,
    events: usize,
    /// `None` once the outcome is known (or for a state change without a batch).
    ack: Option<BoxFuture<'static, Outcome>>,
    outcome: Option<Outcome>,
    /// What to commit once this entry and all before it are Delivered; `None` for a
    /// batch that is not the last of its page (its page is committed with that one).
    commit: Option<CommitPoint>,
}

/// The window state to commit, with the reconciliation ledger of the same moment.
struct CommitPoint {
    state: WindowState,
    /// Where the ledger was (`None`: reconciliation is off).
    ledger: Option<Mark>,
}

/// What [`WindowPoller::read_page`] read.
pub(super) enum PageRead<T> {
    /// A page to judge.
    Page(FetchedPage<T>),
    /// The page was refused; the cycle asks this instead.
    Again(Next),
    Shutdown,
}

/// What [`WindowPoller::read_and_judge`] read and decided.
pub(super) enum Judged<T> {
    /// A page (or the events of one instant) and the cycle's verdict on it.
    Page(Vec<T>, Vec<PageEvent>, PageVerdict),
    /// The page was refused; the cycle asks this instead.
    Again(Next),
    /// The cycle asks for nothing more (`Next::Done`, `Next::CountMismatch`).
    Finished,
    Shutdown,
}

impl<F: WindowFetch> WindowPoller<F> {
    pub fn new(
        source: &config::Source,
        client: Arc<ApiClient>,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<WindowPoller<F>, SourceError> {
        let fetch = F::from_source(source, client.clone(), metrics.clone())?;
        Ok(WindowPoller {
            name: Arc::from(source.name.as_str()),
            fetch,
            lag: source.lag,
            poll_interval: source.poll_interval,
            start: source.start,
            page_size: F::window_page_size(source.page_size),
            batch_events: MAX_BATCH_EVENTS,
            slice_readers: if F::CONCURRENT_CATCH_UP {
                client.limiter().max()
            } else {
                1
            },
            reconcile_after: source.reconcile_after,
            tenant: client.tenant().to_string(),
            clock: client.clock(),
            api: Some(client.clone()),
            store,
            metrics,
        })
    }

    /// A poller over `fetch` named `name`, without an API client (the API's clock is
    /// this host's), reading pages of 100 one at a time without reconciliation: for
    /// tests of the other modules of `sources`.
    #[cfg(test)]
    pub(super) fn for_test_named(
        name: &str,
        fetch: F,
        lag: Duration,
        poll_interval: Duration,
        start: StartAt,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Self {
        WindowPoller {
            name: Arc::from(name),
            fetch,
            lag,
            poll_interval,
            start,
            page_size: 100,
            batch_events: MAX_BATCH_EVENTS,
            slice_readers: 1,
            reconcile_after: None,
            tenant: "t".into(),
            store,
            metrics,
            clock: Arc::new(ApiClock::new()),
            api: None,
        }
    }

    /// Runs until `shutdown` is cancelled (then `Ok`) or an error stops the source.
    pub async fn run(self, route: Route, shutdown: CancellationToken) -> Result<(), SourceError> {
        // Before anything can fail: a source that cannot start still shows (`c42fwd
        // status`, `c42fwd_source_info`).
        self.metrics
            .source_started(&self.name, F::KIND.as_str(), &self.tenant, self.lag);
        let initial = self.initial(self.clock.now())?;
        let mut state = initial.window;
        let ledger = self.reconcile_after.map(|after| {
            Journal::new(Ledger::restore(
                initial.ledger.as_ref(),
                state.watermark(),
                self.lag,
                after,
            ))
        });
        let mut flight = Commits {
            queue: VecDeque::new(),
            next_seq: 0,
            committed_watermark: state.watermark(),
            start_edge: initial.start,
            ledger,
            forwarded: 0,
        };
        if initial.fresh {
            // The start edge is fixed before the first poll: a source that fails and is
            // started again (or a restarted process) reads from the same edge, never a
            // later one computed from a later "now".
            self.save(&mut flight, &state, 0).await?;
        }
        self.metrics.source_position(&self.name, state.watermark());
        tracing::info!(
            source = %self.name,
            kind = F::KIND.as_str(),
            tenant = %self.tenant,
            watermark = %state.watermark(),
            fingerprints = state.fingerprint_count(),
            start = ?flight.start_edge,
            "source starting"
        );
        let result = self
            .poll_loop(&route, &shutdown, &mut state, &mut flight)
            .await;
        // Our handle on the sink queues goes first, so that the sinks can drain and stop.
        drop(route);
        match result {
            // The loop ends without an error only when shutdown stopped it.
            Ok(()) => {
                // Every outstanding acknowledgement resolves: a sink either delivers or is
                // stopped by the pipeline's hard stop, which drops its tokens.
                self.drain(&mut flight).await?;
                tracing::info!(source = %self.name, kind = F::KIND.as_str(), "source stopped");
                Ok(())
            }
            Err(e) => {
                // Let what is in flight settle before the supervisor starts the source
                // again from its checkpoint: otherwise every batch still on its way would
                // be read and sent a second time. A dead sink would make that wait last
                // for ever, so shutdown ends it; then only what is already known to be
                // delivered is committed.
                // Only the waiting is cut short, never a commit: a save, once started,
                // finishes before the next one begins.
                let settled = tokio::select! {
                    () = self.settle(&mut flight) => true,
                    _ = shutdown.cancelled() => false,
                };
                let _ = if settled {
                    self.commit_resolved_prefix_only(&mut flight).await
                } else {
                    self.commit_resolved(&mut flight).await
                };
                Err(e)
            }
        }
    }

    /// A poller over `fetch` without an API client (tests with fake fetchers).
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn for_test(
        fetch: F,
        store: Store,
        metrics: Arc<Metrics>,
        start: StartAt,
        lag: Duration,
        poll_interval: Duration,
        page_size: u32,
        slice_readers: usize,
    ) -> Self {
        WindowPoller {
            name: Arc::from("audit"),
            fetch,
            lag,
            poll_interval,
            start,
            page_size,
            batch_events: MAX_BATCH_EVENTS,
            slice_readers,
            reconcile_after: None,
            tenant: "t".into(),
            store,
            metrics,
            clock: Arc::new(ApiClock::new()),
            api: None,
        }
    }

    #[cfg(test)]
    pub(super) fn initial_state(&self, now: DateTime<Utc>) -> Result<WindowState, SourceError> {
        self.initial(now).map(|i| i.window)
    }

    /// Where the source starts: its checkpoint (refused when too old, of another kind or
    /// in the future), or, without one, the configured start.
    fn initial(&self, now: DateTime<Utc>) -> Result<Initial, SourceError> {
        let path = || {
            self.store
                .path(&self.name)
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let oldest = F::RETENTION
            .map(|r| now - TimeDelta::from_std(r).unwrap_or(TimeDelta::MAX))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        match self.store.load(&self.name).map_err(|e| self.cp_err(e))? {
            Some(cp) => {
                if cp.kind != F::KIND {
                    return Err(SourceError::WrongKind {
                        name: self.name.to_string(),
                        path: path(),
                        found: cp.kind.as_str(),
                        expected: F::KIND.as_str(),
                    });
                }
                if cp.watermark < oldest {
                    return Err(SourceError::CheckpointTooOld {
                        name: self.name.to_string(),
                        watermark: cp.watermark,
                    });
                }
                if let Some(ahead) = cp_store::in_the_future(&cp, now) {
                    return Err(SourceError::CheckpointInFuture {
                        name: self.name.to_string(),
                        path: path(),
                        watermark: cp.watermark,
                        now,
                        ahead: cp_store::ahead_text(ahead),
                    });
                }
                Ok(Initial {
                    window: WindowState::restore(cp.watermark, &cp.fingerprints),
                    start: cp.start,
                    ledger: cp.reconcile,
                    fresh: false,
                })
            }
            None => {
                let start = match self.start {
                    StartAt::Ago(d) => TimeDelta::from_std(d)
                        .ok()
                        .and_then(|d| now.checked_sub_signed(d))
                        .unwrap_or(DateTime::<Utc>::MIN_UTC),
                    StartAt::At(t) => t,
                };
                if start < oldest {
                    return Err(SourceError::StartTooOld {
                        name: self.name.to_string(),
                        start,
                    });
                }
                Ok(Initial {
                    window: WindowState::new(start),
                    start: Some(start),
                    ledger: None,
                    fresh: true,
                })
            }
        }
    }

    async fn poll_loop(
        &self,
        route: &Route,
        shutdown: &CancellationToken,
        state: &mut WindowState,
        flight: &mut Commits,
    ) -> Result<(), SourceError> {
        let mut limit = F::RESULT_LIMIT;
        let mut catch_up = CatchUp::new(self.poll_interval);
        let mut reread = Reread::new(state);
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            self.observe(&mut catch_up, state, flight);
            let started = tokio::time::Instant::now();
            // The API's clock is known from any response (the login's is enough); before
            // the first one this host's would cut the window, and a host clock running
            // ahead would move the watermark past events the API does not list yet.
            // Errors here are the first page's too, and reported there.
            if let Some(api) = self.api.as_ref().filter(|_| !self.clock.is_known()) {
                tokio::select! {
                    _ = api.check_login() => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            let poll_time = self.clock.now();
            if let Some(l) = flight.ledger.as_mut() {
                l.begin_cycle(poll_time);
            }
            // Far behind: the settled backlog is read in time slices at once first.
            if self
                .catch_up_in_slices(
                    route,
                    shutdown,
                    state,
                    flight,
                    poll_time,
                    &mut limit,
                    &mut catch_up,
                )
                .await?
                .is_break()
            {
                return Ok(());
            }
            let mut cycle = self.cycle(state, poll_time, self.lag, limit);
            if self
                .skip_verified(&mut reread, &mut cycle, state, shutdown)
                .await?
                .is_break()
            {
                return Ok(());
            }
            let mut next = Next::Fetch(cycle.current());
            loop {
                // (A count mismatch ends the poll where it is found, below.)
                let (items, marks, verdict) = match self
                    .read_and_judge(&mut cycle, state, next, shutdown)
                    .await?
                {
                    Judged::Page(items, marks, verdict) => (items, marks, verdict),
                    Judged::Again(n) => {
                        next = n;
                        continue;
                    }
                    Judged::Finished => break,
                    Judged::Shutdown => return Ok(()),
                };
                if let Next::CountMismatch {
                    query,
                    received,
                    reported,
                } = verdict.next
                {
                    // What this last answer held still goes out (first sight).
                    if self
                        .forward(items, &marks, &verdict, state, route, shutdown, flight)
                        .await?
                        .is_break()
                    {
                        return Ok(());
                    }
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
                next = verdict.next;
                if self
                    .forward(items, &marks, &verdict, state, route, shutdown, flight)
                    .await?
                    .is_break()
                {
                    return Ok(());
                }
                self.commit_resolved(flight).await?;
                self.observe(&mut catch_up, state, flight);
            }
            limit = cycle.limit();
            reread.after(&cycle);
            if self
                .reconcile_due(route, shutdown, state, flight)
                .await?
                .is_break()
            {
                return Ok(());
            }
            self.observe(&mut catch_up, state, flight);
            // Caught up to the poll time: wait for the next poll, committing as the
            // acknowledgements arrive.
            let deadline = crate::retry::deadline_after(started, self.poll_interval);
            loop {
                self.commit_resolved(flight).await?;
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = flight.front_outcome() => {}
                }
            }
        }
    }

    /// Where the source is now: its position gauge, and the catch-up lines
    /// ([`super::catch_up`]) while it is behind the lag window.
    pub(super) fn observe(&self, catch_up: &mut CatchUp, state: &WindowState, flight: &Commits) {
        let position = state.watermark();
        self.metrics.source_position(&self.name, position);
        let behind = catch_up::behind(self.clock.now(), self.lag, position);
        let report = catch_up.observe(
            tokio::time::Instant::now(),
            behind,
            position,
            flight.forwarded,
        );
        let position = position.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match report {
            None => {}
            Some(Report::Behind(p)) => {
                let behind = catch_up::seconds_text(p.behind);
                let rate = format!("{:.1}", p.rate);
                let eta = p
                    .eta
                    .map_or_else(|| "unknown".to_string(), catch_up::seconds_text);
                if p.first {
                    tracing::info!(
                        source = %self.name,
                        behind = %behind,
                        position = %position,
                        lag = %catch_up::seconds_text(self.lag),
                        "source is behind the lag window, catching up"
                    );
                } else {
                    tracing::info!(
                        source = %self.name,
                        behind = %behind,
                        position = %position,
                        events = p.events,
                        rate = %rate,
                        eta = %eta,
                        "source catching up"
                    );
                }
            }
            Some(Report::CaughtUp { took, events }) => {
                let secs = took.as_secs_f64();
                let rate = if secs > 0.0 {
                    events as f64 / secs
                } else {
                    0.0
                };
                tracing::info!(
                    source = %self.name,
                    position = %position,
                    events,
                    took = %catch_up::seconds_text(took),
                    rate = %format!("{rate:.1}"),
                    "source caught up with the lag window"
                );
            }
        }
    }

    /// A poll cycle over `state` at `poll_time`, with this source's paging rules.
    pub(super) fn cycle(
        &self,
        state: &WindowState,
        poll_time: DateTime<Utc>,
        lag: Duration,
        limit: u64,
    ) -> PollCycle {
        let mut cycle = PollCycle::new(state, poll_time, lag, self.page_size, limit);
        if F::UNIQUE_KEYS {
            cycle = cycle.with_unique_keys();
        }
        if F::ALWAYS_RE_ANCHOR {
            cycle = cycle.with_re_anchoring();
        }
        cycle
    }

    /// Reads what `next` asks (a page of the current query, or every event of one
    /// instant) and has `cycle` judge it against `state`: unreadable times counted, the
    /// listing's suspects reported, a split at the result limit counted. The one page
    /// step of a poll and of a catch-up slice.
    pub(super) async fn read_and_judge(
        &self,
        cycle: &mut PollCycle,
        state: &mut WindowState,
        next: Next,
        shutdown: &CancellationToken,
    ) -> Result<Judged<F::Item>, SourceError> {
        match next {
            Next::Done | Next::CountMismatch { .. } => Ok(Judged::Finished),
            Next::Fetch(q) => {
                let page = match self.read_page(cycle, q, shutdown).await? {
                    PageRead::Page(page) => page,
                    PageRead::Again(n) => return Ok(Judged::Again(n)),
                    PageRead::Shutdown => return Ok(Judged::Shutdown),
                };
                self.count_bad_times(&page, q.start);
                let verdict = cycle.on_page_with_total(state, &page.marks, page.reported_total);
                self.report_listing(q, &page.marks, &verdict);
                if verdict.split {
                    self.count_split();
                    tracing::debug!(
                        source = %self.name,
                        limit = cycle.limit(),
                        "query window reached the result limit, continuing from its newest event"
                    );
                }
                Ok(Judged::Page(page.items, page.marks, verdict))
            }
            Next::ExportInstant { at } => {
                let Some(page) = self.read_instant(at, shutdown).await? else {
                    return Ok(Judged::Shutdown);
                };
                self.count_bad_times(&page, at);
                let verdict = cycle.on_export(state, at, &page.marks);
                Ok(Judged::Page(page.items, page.marks, verdict))
            }
        }
    }

    /// Reads the page `q` of `cycle`, handling the answers that only change the plan:
    /// a page refused as past the server's result window or as larger than asked for
    /// makes the cycle ask again over smaller slices ([`PageRead::Again`]). The poll and
    /// the reconciliation re-read both page through here.
    pub(super) async fn read_page(
        &self,
        cycle: &mut PollCycle,
        q: QueryWindow,
        shutdown: &CancellationToken,
    ) -> Result<PageRead<F::Item>, SourceError> {
        let page = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(PageRead::Shutdown),
            r = self.fetch.fetch_page(q) => r,
        };
        let page = match page {
            Ok(page) => page,
            Err(SourceError::Api { name, error }) if error.is_oversized() => {
                tracing::error!(
                    source = %name,
                    start = %q.start,
                    end = %q.end,
                    page = q.page,
                    page_size = q.page_size,
                    error = %error,
                    "the api sent a page larger than asked for; it is refused and the window is read again in smaller slices"
                );
                return match cycle.on_oversized_page() {
                    Some(n) => {
                        self.count_split();
                        Ok(PageRead::Again(n))
                    }
                    None => Err(SourceError::Api { name, error }),
                };
            }
            Err(e) => return Err(e),
        };
        if !page.past_result_window {
            self.metrics.source_polled(&self.name);
            self.count_api_records(page.marks.len());
            return Ok(PageRead::Page(page));
        }
        if q.page == 0 && q.page_size == 1 {
            // Halving the page size cannot help any more: end the poll with an error, so
            // that the source backs off and starts again, instead of asking the same
            // question forever.
            return Err(SourceError::ResultWindowRefused {
                name: self.name.to_string(),
                start: q.start,
            });
        }
        let splits = cycle.splits();
        let next = cycle.on_past_result_window();
        if cycle.splits() > splits {
            self.count_split();
        }
        tracing::info!(
            source = %self.name,
            page = q.page,
            limit = cycle.limit(),
            "server refused a page past its result window, splitting the query window"
        );
        Ok(PageRead::Again(next))
    }

    /// Reads everything that occurred at the instant `at` (after
    /// [`Next::ExportInstant`]); `None` when shutdown interrupted it.
    pub(super) async fn read_instant(
        &self,
        at: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<Option<FetchedPage<F::Item>>, SourceError> {
        tracing::error!(
            source = %self.name,
            at = %at,
            "a whole result window occurred at one instant; reading that instant on its own"
        );
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Ok(None),
            r = self.fetch.fetch_instant(at) => {
                let page = r?;
                self.metrics.source_polled(&self.name);
                self.count_api_records(page.marks.len());
                Ok(Some(page))
            }
        }
    }

    /// Counts and logs the records of a page whose time could not be read.
    pub(super) fn count_bad_times<T>(&self, page: &FetchedPage<T>, window_start: DateTime<Utc>) {
        let Some(reason) = &page.bad_time_reason else {
            return;
        };
        self.metrics
            .source_bad_timestamps
            .get_or_create(&label("source", &self.name))
            .inc_by(page.bad_times);
        tracing::warn!(
            source = %self.name,
            count = page.bad_times,
            reason = %reason,
            window_start = %window_start,
            "events with an unparsable timestamp are forwarded with the window start as their time"
        );
    }

    /// Counts and logs what a page showed about the listing itself: events out of time
    /// order, from the future or after the query window, and a short page its own
    /// count contradicted. Each suspect event is named by its time and fingerprint
    /// (never its content); past [`MAX_NAMED_ANOMALIES`] per page, a summary line.
    pub(super) fn report_listing(
        &self,
        q: QueryWindow,
        marks: &[PageEvent],
        verdict: &PageVerdict,
    ) {
        let src = &self.name;
        if verdict.listed_after.is_some() || !verdict.anomalies.is_empty() {
            let mut counts = [0u64; 3];
            for (n, &(i, anomaly)) in verdict.anomalies.iter().enumerate() {
                counts[anomaly as usize] += 1;
                if n < MAX_NAMED_ANOMALIES {
                    let e = marks[i];
                    tracing::warn!(
                        source = %src,
                        reason = anomaly.as_str(),
                        timestamp = %e.occurred,
                        fingerprint = %format_args!("{:016x}", e.fingerprint),
                        position = u64::from(q.page) * u64::from(q.page_size) + i as u64,
                        query_start = %q.start,
                        query_end = %q.end,
                        "the api listed an event out of time order or outside the query window; it is forwarded, and the window is not trusted to have been read past it"
                    );
                }
            }
            if let Some(after) = verdict.listed_after {
                counts[Anomaly::OutOfOrder as usize] += 1;
                tracing::warn!(
                    source = %src,
                    reason = Anomaly::OutOfOrder.as_str(),
                    listed_after = %after,
                    query_start = %q.start,
                    query_end = %q.end,
                    page = q.page,
                    "the api listed a page that starts before an event an earlier page of the same query listed; the window is read to its end before the watermark moves"
                );
            }
            if verdict.anomalies.len() > MAX_NAMED_ANOMALIES {
                tracing::warn!(
                    source = %src,
                    count = verdict.anomalies.len(),
                    query_start = %q.start,
                    query_end = %q.end,
                    page = q.page,
                    "more events of the page were out of time order or outside the query window than are named one by one"
                );
            }
            for anomaly in [Anomaly::OutOfOrder, Anomaly::Future, Anomaly::AfterQueryEnd] {
                let n = counts[anomaly as usize];
                if n > 0 {
                    self.metrics
                        .source_out_of_order
                        .get_or_create(&vec![
                            ("source", src.to_string()),
                            ("reason", anomaly.as_str().to_string()),
                        ])
                        .inc_by(n);
                }
            }
        }
        if let Some((received, reported)) = verdict.short_page {
            self.metrics
                .source_short_pages
                .get_or_create(&label("source", src))
                .inc();
            tracing::warn!(
                source = %src,
                query_start = %q.start,
                query_end = %q.end,
                page = q.page,
                received,
                reported,
                "the api sent a short page while its own count says more results exist; asking again"
            );
        }
    }

    /// Sends the new items of a page, in batches of at most [`MAX_BATCH_EVENTS`] and
    /// [`MAX_BATCH_BYTES`], and queues its commit after the last. `Break` when shutdown
    /// interrupted the send.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn forward(
        &self,
        items: Vec<F::Item>,
        marks: &[PageEvent],
        verdict: &PageVerdict,
        state: &WindowState,
        route: &Route,
        shutdown: &CancellationToken,
        flight: &mut Commits,
    ) -> Result<ControlFlow<()>, SourceError> {
        let fresh: Vec<F::Item> = items
            .into_iter()
            .zip(&verdict.forward)
            .filter_map(|(e, f)| f.then_some(e))
            .collect();
        if let Some(ledger) = flight.ledger.as_mut() {
            for (m, _) in marks.iter().zip(&verdict.forward).filter(|(_, f)| **f) {
                ledger.record(m.fingerprint, m.occurred);
            }
        }
        let src = label("source", &self.name);
        if verdict.duplicates > 0 {
            self.metrics
                .source_duplicates_skipped
                .get_or_create(&src)
                .inc_by(verdict.duplicates as u64);
        }
        if fresh.is_empty() {
            if verdict.advanced {
                flight.push(None, 0, state.clone());
            }
            return Ok(ControlFlow::Continue(()));
        }
        let events = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(ControlFlow::Break(())),
            r = self.fetch.make_events(fresh) => r?,
        };
        if events.is_empty() {
            if verdict.advanced {
                flight.push(None, 0, state.clone());
            }
            return Ok(ControlFlow::Continue(()));
        }
        let mut events = events.into_iter().peekable();
        loop {
            let chunk = next_batch(&mut events, self.batch_events, MAX_BATCH_BYTES);
            let last = events.peek().is_none();
            // Bounded in-flight window (module invariant).
            while flight.queue.len() >= MAX_IN_FLIGHT {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(ControlFlow::Break(())),
                    _ = flight.front_outcome() => {}
                }
                self.commit_resolved(flight).await?;
            }
            let n = chunk.len();
            let batch = Batch {
                source: self.name.clone(),
                events: chunk,
            };
            let waiter = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(ControlFlow::Break(())),
                r = route.send(batch) => r.map_err(|_| SourceError::RouteClosed { name: self.name.to_string() })?,
            };
            self.metrics
                .source_events
                .get_or_create(&src)
                .inc_by(n as u64);
            flight.forwarded += n as u64;
            let ack = Some(waiter.wait().boxed());
            if last {
                flight.push(ack, n, state.clone());
                return Ok(ControlFlow::Continue(()));
            }
            flight.push_part(ack, n);
        }
    }

    /// Commits the longest prefix of in-flight entries known to be Delivered (one save for
    /// all of them); a NotDelivered one stops the source.
    pub(super) async fn commit_resolved(&self, flight: &mut Commits) -> Result<(), SourceError> {
        flight.poll_outcomes();
        let mut last = None;
        let mut batches = 0u64;
        while let Some(front) = flight.queue.front() {
            match front.outcome {
                Some(Outcome::Delivered) => {
                    let done = flight.queue.pop_front().expect("front exists");
                    if done.events > 0 {
                        batches += 1;
                    }
                    if let Some(c) = done.commit {
                        last = Some(c);
                    }
                }
                Some(Outcome::NotDelivered) => {
                    let (batch, events) = (front.seq, front.events);
                    if let Some(c) = last.take() {
                        self.save_with(flight, &c.state, c.ledger, batches).await?;
                    }
                    return Err(SourceError::NotDelivered {
                        name: self.name.to_string(),
                        batch,
                        events,
                        watermark: flight.committed_watermark,
                    });
                }
                None => break,
            }
        }
        if let Some(c) = last {
            self.save_with(flight, &c.state, c.ledger, batches).await?;
        }
        Ok(())
    }

    /// Waits, in order, for every outstanding acknowledgement and commits the delivered
    /// prefix (shutdown path). A batch not delivered is simply not committed: it is read
    /// again at the next start.
    async fn drain(&self, flight: &mut Commits) -> Result<(), SourceError> {
        self.settle(flight).await;
        self.commit_resolved_prefix_only(flight).await
    }

    /// Waits, in order, for every outstanding acknowledgement, up to the first batch
    /// that was not delivered. Commits nothing.
    async fn settle(&self, flight: &mut Commits) {
        for f in flight.queue.iter_mut() {
            if f.outcome.is_none() {
                if let Some(ack) = f.ack.take() {
                    f.outcome = Some(ack.await);
                }
            }
            if f.outcome == Some(Outcome::NotDelivered) {
                tracing::warn!(
                    source = %self.name,
                    batch = f.seq,
                    "batch not delivered before shutdown; it will be read again at the next start"
                );
                break;
            }
        }
    }

    /// Like `commit_resolved`, but stops quietly at a NotDelivered entry.
    async fn commit_resolved_prefix_only(&self, flight: &mut Commits) -> Result<(), SourceError> {
        let mut last = None;
        let mut batches = 0u64;
        while flight.queue.front().and_then(|f| f.outcome) == Some(Outcome::Delivered) {
            let done = flight.queue.pop_front().expect("front exists");
            if done.events > 0 {
                batches += 1;
            }
            if let Some(c) = done.commit {
                last = Some(c);
            }
        }
        if let Some(c) = last {
            self.save_with(flight, &c.state, c.ledger, batches).await?;
        }
        Ok(())
    }

    /// Saves `state` with the current ledger (the start-up save).
    async fn save(
        &self,
        flight: &mut Commits,
        state: &WindowState,
        batches: u64,
    ) -> Result<(), SourceError> {
        let ledger = flight.ledger.as_ref().map(Journal::mark);
        self.save_with(flight, state, ledger, batches).await
    }

    async fn save_with(
        &self,
        flight: &mut Commits,
        state: &WindowState,
        ledger: Option<Mark>,
        batches: u64,
    ) -> Result<(), SourceError> {
        let reconcile = match (flight.ledger.as_mut(), ledger) {
            (Some(j), Some(mark)) => Some(j.at(mark).to_record()),
            _ => None,
        };
        let cp = Checkpoint {
            source: self.name.to_string(),
            kind: F::KIND,
            watermark: state.watermark(),
            fingerprints: state.fingerprints(),
            updated_at: Utc::now(),
            start: flight.start_edge,
            reconcile,
        };
        // The write and its fsyncs run on tokio's blocking pool, not on a runtime worker.
        // The save is awaited here, so saves stay strictly in batch order and no two ever
        // write the source's temp file at once; the source spawns no task of its own.
        let (store, name) = (self.store.clone(), self.name.clone());
        let saved = match tokio::task::spawn_blocking(move || store.save(&name, &cp)).await {
            Ok(saved) => saved,
            // A panic while saving stays the source's panic, as when the save ran inline:
            // the supervisor catches it and starts the source again.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the runtime is shutting down; the checkpoint was not written.
            Err(e) => Err(CheckpointError::Write {
                path: self.store.path(&self.name).unwrap_or_default(),
                source: std::io::Error::other(e),
            }),
        };
        saved.map_err(|e| self.cp_err(e))?;
        self.metrics.source_committed(&self.name);
        flight.committed_watermark = state.watermark();
        let src = label("source", &self.name);
        if batches > 0 {
            self.metrics
                .source_batches_committed
                .get_or_create(&src)
                .inc_by(batches);
        }
        let w = state.watermark();
        self.metrics
            .source_watermark
            .get_or_create(&src)
            .set(w.timestamp() as f64 + f64::from(w.timestamp_subsec_nanos()) / 1e9);
        Ok(())
    }

    /// Counts the records the API served to a read (`c42fwd_source_api_records_total`).
    pub(super) fn count_api_records(&self, n: usize) {
        self.metrics
            .source_api_records
            .get_or_create(&label("source", &self.name))
            .inc_by(n as u64);
    }

    pub(super) fn count_split(&self) {
        self.metrics
            .source_window_splits
            .get_or_create(&label("source", &self.name))
            .inc();
    }

    fn cp_err(&self, error: CheckpointError) -> SourceError {
        SourceError::Checkpoint {
            name: self.name.to_string(),
            error,
        }
    }
}

/// Where a source starts, as [`WindowPoller::initial`] found it.
struct Initial {
    window: WindowState,
    /// The start edge fixed when the source first ran (unknown for older checkpoints).
    start: Option<DateTime<Utc>>,
    ledger: Option<ReconcileRecord>,
    /// No checkpoint existed: the start edge must be saved before the first poll.
    fresh: bool,
}

/// The FIFO of batches waiting for their acknowledgement, with the state to commit
/// after each.
pub(super) struct Commits {
    queue: VecDeque<InFlight>,
    /// The number of the last batch sent.
    next_seq: u64,
    /// The watermark of the last checkpoint written (or loaded).
    committed_watermark: DateTime<Utc>,
    /// The start edge, kept in every checkpoint.
    start_edge: Option<DateTime<Utc>>,
    /// The current reconciliation ledger and its changes since the last commit
    /// (`None`: reconciliation is off); each entry pushed marks where it is.
    pub(super) ledger: Option<Journal>,
    /// Events sent in this run (for the catch-up lines).
    forwarded: u64,
}

impl Commits {
    pub(super) fn push(
        &mut self,
        ack: Option<BoxFuture<'static, Outcome>>,
        events: usize,
        state: WindowState,
    ) {
        let commit = CommitPoint {
            state,
            ledger: self.ledger.as_ref().map(Journal::mark),
        };
        self.push_entry(ack, events, Some(commit));
    }

    /// Queues a batch that is not the last of its page: nothing is committed after it
    /// alone.
    pub(super) fn push_part(&mut self, ack: Option<BoxFuture<'static, Outcome>>, events: usize) {
        self.push_entry(ack, events, None);
    }

    fn push_entry(
        &mut self,
        ack: Option<BoxFuture<'static, Outcome>>,
        events: usize,
        commit: Option<CommitPoint>,
    ) {
        // Batches are numbered 1, 2, ... in the order they were sent; a state-only entry
        // carries the number of the batch before it.
        if ack.is_some() {
            self.next_seq += 1;
        }
        let outcome = if ack.is_none() {
            // A state change without a batch (the watermark moved over an empty or
            // all-duplicate page): nothing to wait for beyond the entries before it.
            Some(Outcome::Delivered)
        } else {
            None
        };
        self.queue.push_back(InFlight {
            seq: self.next_seq,
            events,
            ack,
            outcome,
            commit,
        });
    }

    /// Records the outcomes that are already known, without waiting.
    fn poll_outcomes(&mut self) {
        for f in self.queue.iter_mut() {
            if f.outcome.is_some() {
                continue;
            }
            let Some(ack) = f.ack.as_mut() else { continue };
            match ack.now_or_never() {
                Some(o) => {
                    f.outcome = Some(o);
                    f.ack = None;
                }
                None => break,
            }
        }
    }

    /// Resolves when the oldest unresolved entry gets its outcome (never, when there is
    /// none: callers select it against something else).
    async fn front_outcome(&mut self) {
        let Some(f) = self.queue.iter_mut().find(|f| f.outcome.is_none()) else {
            return std::future::pending().await;
        };
        if let Some(ack) = f.ack.as_mut() {
            let o = ack.await;
            f.outcome = Some(o);
            f.ack = None;
        }
    }
}

/// An API error as the error of source `name`.
pub(super) fn api_err(name: &str, error: ApiError) -> SourceError {
    SourceError::Api {
        name: name.to_string(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiGeneration, AuditFilters, Credentials, ServiceUrls, SourceSpec};

    /// What a test tenant's Audit Log answers: the part of [`WindowFetch`] the tests
    /// vary ([`Fake`] is the rest).
    trait Tenant: Send + Sync + Sized + 'static {
        /// The most results one query serves.
        const RESULT_LIMIT: u64 = 100;

        /// The tenant of a configured source; `None`: the test builds its poller itself.
        fn for_source() -> Option<Self> {
            None
        }

        fn page(&self, q: QueryWindow) -> Result<FetchedPage<Event>, SourceError>;

        fn instant(&self) -> FetchedPage<Event> {
            FetchedPage::default()
        }

        fn count(&self) -> Option<u64> {
            None
        }
    }

    /// An Audit Log endpoint that answers as its [`Tenant`] says.
    struct Fake<T>(T);

    impl<T: Tenant> WindowFetch for Fake<T> {
        type Item = Event;
        const KIND: SourceKind = SourceKind::AuditLog;
        const RETENTION: Option<Duration> = None;
        const MAX_PAGE_SIZE: u32 = 100;
        const RESULT_LIMIT: u64 = T::RESULT_LIMIT;
        const UNIQUE_KEYS: bool = false;
        const ALWAYS_RE_ANCHOR: bool = false;
        const CONCURRENT_CATCH_UP: bool = true;

        fn from_source(
            source: &config::Source,
            _: Arc<ApiClient>,
            _: Arc<Metrics>,
        ) -> Result<Self, SourceError> {
            T::for_source()
                .map(Fake)
                .ok_or_else(|| SourceError::WrongSourceType {
                    name: source.name.clone(),
                    expected: "test",
                })
        }

        async fn fetch_page(&self, q: QueryWindow) -> Result<FetchedPage<Event>, SourceError> {
            self.0.page(q)
        }

        async fn fetch_instant(&self, _: DateTime<Utc>) -> Result<FetchedPage<Event>, SourceError> {
            Ok(self.0.instant())
        }

        async fn make_events(&self, items: Vec<Event>) -> Result<Vec<Event>, SourceError> {
            Ok(items)
        }

        async fn count(
            &self,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<Option<u64>, SourceError> {
            Ok(self.0.count())
        }
    }

    /// A server that answers every page "past the result window", as a gateway response
    /// without its `events` would read.
    struct Refusing;

    impl Tenant for Refusing {
        fn for_source() -> Option<Self> {
            Some(Refusing)
        }

        fn page(&self, _: QueryWindow) -> Result<FetchedPage<Event>, SourceError> {
            Ok(FetchedPage::past_result_window())
        }

        fn instant(&self) -> FetchedPage<Event> {
            FetchedPage::past_result_window()
        }
    }

    fn client(metrics: &Arc<Metrics>) -> Arc<ApiClient> {
        let tenant = config::Tenant {
            name: "t".into(),
            api: ApiGeneration::Incydr,
            base_url: "http://127.0.0.1:9".parse().unwrap(),
            services: ServiceUrls::default(),
            credentials: Credentials::ApiClient {
                client_id: "id".into(),
                secret: crate::secret::Secret::new("s"),
            },
            proxy: None,
            request_timeout: Duration::from_secs(1),
            ca_file: None,
            max_response_bytes: crate::config::DEFAULT_MAX_RESPONSE_BYTES,
            max_concurrent_requests: crate::config::DEFAULT_MAX_CONCURRENT_REQUESTS,
        };
        Arc::new(ApiClient::new(&tenant, metrics.clone()).unwrap())
    }

    fn source() -> config::Source {
        config::Source {
            name: "audit".into(),
            tenant: "t".into(),
            kind: SourceSpec::AuditLog(AuditFilters::default()),
            lag: Duration::from_secs(1),
            poll_interval: Duration::from_secs(1),
            start: StartAt::Ago(Duration::from_secs(60)),
            page_size: 100,
            reconcile_after: None,
        }
    }

    #[tokio::test]
    async fn a_server_that_refuses_every_page_ends_the_poll_with_an_error() {
        let metrics = Arc::new(Metrics::new());
        let client = client(&metrics);
        let source = source();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut poller =
            WindowPoller::<Fake<Refusing>>::new(&source, client, store, metrics).unwrap();
        // The fake answers the pages; the client behind it points nowhere, and reading
        // the API's clock through it would wait for a server that never comes.
        poller.api = None;
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let run = poller.run(Route::new(vec![tx]), CancellationToken::new());
        // Halving a refused first page reaches one record after a few steps; then the
        // poll must stop instead of asking the same question forever.
        let result = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the poller spun instead of giving up");
        assert!(
            matches!(result, Err(SourceError::ResultWindowRefused { .. })),
            "{result:?}"
        );
    }

    /// Audit Log events, ten seconds apart from `BASE_OF_PICKY`; any page over a time
    /// window longer than a minute is refused as larger than asked for.
    struct Picky {
        events: Vec<(DateTime<Utc>, String)>,
        /// What the API's count says.
        count: u64,
    }

    const PICKY_EVENTS: usize = 20;

    impl Picky {
        fn new(base: DateTime<Utc>) -> Picky {
            let events = (0..PICKY_EVENTS)
                .map(|i| {
                    let at = base + TimeDelta::seconds(10 * i as i64);
                    let json = format!(r#"{{"timestamp":"{}","n":{i}}}"#, at.to_rfc3339());
                    (at, json)
                })
                .collect();
            Picky {
                events,
                count: PICKY_EVENTS as u64,
            }
        }
    }

    impl Tenant for Picky {
        const RESULT_LIMIT: u64 = 10_000;

        fn page(&self, q: QueryWindow) -> Result<FetchedPage<Event>, SourceError> {
            if q.end - q.start > TimeDelta::minutes(1) {
                return Err(SourceError::Api {
                    name: "audit".into(),
                    error: ApiError::ResponseTooLarge {
                        endpoint: "search-audit-log".into(),
                        reason: "more records than the page size".into(),
                    },
                });
            }
            let raws = self
                .events
                .iter()
                .filter(|(t, _)| *t >= q.start && *t < q.end)
                .skip(q.page as usize * q.page_size as usize)
                .take(q.page_size as usize)
                .map(|(_, j)| RawValue::from_string(j.clone()).unwrap())
                .collect();
            Ok(FetchedPage::by_content(
                SourceKind::AuditLog,
                raws,
                q.start,
                crate::api::parse_event_time,
            ))
        }

        fn count(&self) -> Option<u64> {
            Some(self.count)
        }
    }

    /// A poller over `fetch` that reconciles 5-minute buckets, with the in-flight state
    /// of a run whose ledger is `ledger` and whose window is `state`.
    fn reconciling_poller(
        fetch: Picky,
        source: &config::Source,
        metrics: &Arc<Metrics>,
        dir: &std::path::Path,
        ledger: Ledger,
        state: &WindowState,
    ) -> (WindowPoller<Fake<Picky>>, Commits) {
        let poller = WindowPoller {
            name: Arc::from("audit"),
            fetch: Fake(fetch),
            lag: source.lag,
            poll_interval: source.poll_interval,
            start: source.start,
            page_size: 100,
            batch_events: MAX_BATCH_EVENTS,
            slice_readers: 1,
            reconcile_after: Some(Duration::from_secs(300)),
            tenant: "t".into(),
            store: Store::open(dir).unwrap(),
            metrics: metrics.clone(),
            clock: Arc::new(ApiClock::new()),
            api: None,
        };
        let flight = Commits {
            queue: VecDeque::new(),
            next_seq: 0,
            committed_watermark: state.watermark(),
            start_edge: None,
            ledger: Some(Journal::new(ledger)),
            forwarded: 0,
        };
        (poller, flight)
    }

    /// A 5-minute bucket that closed an hour ago (its start and end), and the ledger of
    /// a source that read it while live, in the cycle just after it.
    fn bucket_an_hour_ago(source: &config::Source) -> (DateTime<Utc>, DateTime<Utc>, Ledger) {
        let hour_ago = (Utc::now() - TimeDelta::hours(1)).timestamp();
        let key = DateTime::from_timestamp(hour_ago - hour_ago.rem_euclid(300), 0).unwrap();
        let end = key + TimeDelta::minutes(5);
        let mut ledger = Ledger::restore(None, key, source.lag, Duration::from_secs(300));
        ledger.begin_cycle(end + TimeDelta::seconds(1));
        (key, end, ledger)
    }

    /// A route to one sink that acknowledges every batch as delivered; its task returns
    /// the events' JSON once the route is dropped.
    fn delivering_route() -> (Route, tokio::task::JoinHandle<Vec<String>>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::route::SinkBatch>(4);
        let sink = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(sb) = rx.recv().await {
                got.extend(sb.batch.events.iter().map(|e| e.json().to_string()));
                sb.ack.delivered();
            }
            got
        });
        (Route::new(vec![tx]), sink)
    }

    #[tokio::test]
    async fn a_reconciliation_re_read_refused_as_oversized_is_read_again_in_slices() {
        let metrics = Arc::new(Metrics::new());
        let source = source();
        let dir = tempfile::tempdir().unwrap();
        // Read while live, nothing recorded.
        let (key, end, mut ledger) = bucket_an_hour_ago(&source);
        ledger.cover(end + TimeDelta::seconds(1));
        let state = WindowState::new(end + TimeDelta::seconds(1));
        let (poller, mut flight) = reconciling_poller(
            Picky::new(key),
            &source,
            &metrics,
            dir.path(),
            ledger,
            &state,
        );
        let (route, sink) = delivering_route();
        let stop = poller
            .reconcile_due(&route, &CancellationToken::new(), &state, &mut flight)
            .await
            .expect("the refused page is asked again in slices, not an error");
        assert!(stop.is_continue());
        drop(route);
        assert_eq!(sink.await.unwrap().len(), PICKY_EVENTS);
        let src = label("source", "audit");
        assert_eq!(
            metrics.source_reconciled.get_or_create(&src).get(),
            PICKY_EVENTS as u64
        );
        assert!(metrics.source_window_splits.get_or_create(&src).get() >= 1);
    }

    #[tokio::test]
    async fn a_count_below_what_was_forwarded_is_no_proof_the_bucket_is_complete() {
        let metrics = Arc::new(Metrics::new());
        let source = source();
        let dir = tempfile::tempdir().unwrap();
        let (key, end, mut ledger) = bucket_an_hour_ago(&source);
        let picky = Picky::new(key);
        // Forwarded live: every event but the last, and two records whose time could
        // not be read (they stand at the query start, in this bucket; the API counts
        // them elsewhere). The API counts the 20 events: fewer than the 21 recorded.
        for (t, json) in &picky.events[..PICKY_EVENTS - 1] {
            ledger.record(fingerprint(json), *t);
        }
        ledger.record(1, key);
        ledger.record(2, key);
        ledger.cover(end + TimeDelta::seconds(1));
        let state = WindowState::new(end + TimeDelta::seconds(1));
        let (poller, mut flight) =
            reconciling_poller(picky, &source, &metrics, dir.path(), ledger, &state);
        let (route, sink) = delivering_route();
        let stop = poller
            .reconcile_due(&route, &CancellationToken::new(), &state, &mut flight)
            .await
            .unwrap();
        assert!(stop.is_continue());
        drop(route);
        let last = &poller.fetch.0.events[PICKY_EVENTS - 1].1;
        assert_eq!(
            sink.await.unwrap(),
            vec![last.clone()],
            "exactly the missing one"
        );
        assert_eq!(
            metrics
                .source_reconciled
                .get_or_create(&label("source", "audit"))
                .get(),
            1
        );
    }

    /// A tenant without events that tells the test when each page was asked for, on
    /// tokio's clock.
    struct Quiet {
        asked: tokio::sync::mpsc::UnboundedSender<tokio::time::Instant>,
    }

    // The test builds its poller itself, with the channel it reads.
    impl Tenant for Quiet {
        fn page(&self, _: QueryWindow) -> Result<FetchedPage<Event>, SourceError> {
            let _ = self.asked.send(tokio::time::Instant::now());
            Ok(FetchedPage::default())
        }
    }

    /// Once caught up, the poller waits `poll_interval` from the start of one poll to the
    /// start of the next: never earlier, and without drifting. On tokio's paused clock:
    /// the 30 s intervals take no real time.
    #[tokio::test(start_paused = true)]
    async fn waits_the_poll_interval_between_polls() {
        const INTERVAL: Duration = Duration::from_secs(30);
        // The paused clock rounds a timer up to the millisecond.
        const SLACK: Duration = Duration::from_millis(1);
        let (asked, mut polls) = tokio::sync::mpsc::unbounded_channel();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let poller = WindowPoller {
            name: Arc::from("audit"),
            fetch: Fake(Quiet { asked }),
            lag: Duration::from_secs(1),
            poll_interval: INTERVAL,
            start: StartAt::Ago(Duration::from_secs(60)),
            page_size: 100,
            batch_events: MAX_BATCH_EVENTS,
            slice_readers: 1,
            reconcile_after: None,
            tenant: "t".into(),
            store: store.clone(),
            metrics: Arc::new(Metrics::new()),
            clock: Arc::new(ApiClock::new()),
            api: None,
        };
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let stop = CancellationToken::new();
        let run = tokio::spawn(poller.run(Route::new(vec![tx]), stop.clone()));

        let mut at = vec![polls.recv().await.unwrap()];
        for _ in 0..3 {
            at.push(polls.recv().await.unwrap());
        }
        for pair in at.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= INTERVAL && gap <= INTERVAL + SLACK,
                "{gap:?}: {at:?}"
            );
        }

        // Counted as time moves: nothing a second before the next poll is due, one
        // page once it is.
        let last = *at.last().unwrap();
        tokio::time::advance(INTERVAL - Duration::from_secs(1)).await;
        assert!(
            polls.try_recv().is_err(),
            "polled before the interval was over"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let next = polls.recv().await.unwrap();
        assert!(next - last >= INTERVAL && next - last <= INTERVAL + SLACK);

        stop.cancel();
        run.await.unwrap().unwrap();
        assert!(polls.try_recv().is_err(), "polled after shutdown");
        let cp = store
            .load("audit")
            .unwrap()
            .expect("the polls were committed");
        assert!(cp.watermark > cp.start.unwrap(), "{cp:?}");
    }

    /// The log lines of the current thread, captured (tests on the current-thread
    /// runtime see the lines of the tasks they spawn).
    fn capture_logs() -> (
        tracing::subscriber::DefaultGuard,
        Arc<std::sync::Mutex<Vec<u8>>>,
    ) {
        #[derive(Clone)]
        struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = Buffer(buf.clone());
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        (tracing::subscriber::set_default(sub), buf)
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_far_back_says_once_it_is_behind_and_once_it_caught_up() {
        let (_guard, logs) = capture_logs();
        let (asked, mut polls) = tokio::sync::mpsc::unbounded_channel();
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let poller = WindowPoller {
            name: Arc::from("audit"),
            fetch: Fake(Quiet { asked }),
            lag: Duration::from_secs(1),
            poll_interval: Duration::from_secs(30),
            start: StartAt::Ago(Duration::from_secs(7200)),
            page_size: 100,
            batch_events: MAX_BATCH_EVENTS,
            slice_readers: 1,
            reconcile_after: None,
            tenant: "t".into(),
            store: Store::open(dir.path()).unwrap(),
            metrics: metrics.clone(),
            clock: Arc::new(ApiClock::new()),
            api: None,
        };
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let stop = CancellationToken::new();
        let run = tokio::spawn(poller.run(Route::new(vec![tx]), stop.clone()));
        for _ in 0..4 {
            polls.recv().await.unwrap();
        }
        stop.cancel();
        run.await.unwrap().unwrap();
        let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        let behind: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("source is behind the lag window, catching up"))
            .collect();
        assert_eq!(behind.len(), 1, "{text}");
        assert!(behind[0].contains("source=audit behind=1h 59m"), "{text}");
        assert_eq!(
            text.matches("source caught up with the lag window").count(),
            1,
            "{text}"
        );
        assert!(!text.contains("source catching up"), "{text}");
        // The position is the last poll's edge; within the lag window, so not behind.
        let m = metrics.render();
        assert!(
            m.contains("c42fwd_source_info{source=\"audit\",kind=\"audit_log\",tenant=\"t\"} 1"),
            "{m}"
        );
        let position: f64 = m
            .lines()
            .find_map(|l| l.strip_prefix("c42fwd_source_position_seconds{source=\"audit\"} "))
            .and_then(|v| v.parse().ok())
            .expect("the position gauge");
        let age = crate::metrics::unix_now() - position;
        assert!((0.5..60.0).contains(&age), "{age}");
        assert!(
            m.contains("c42fwd_source_behind_seconds{source=\"audit\"} "),
            "{m}"
        );
    }

    /// Ten events a minute ago, served to every query whose window holds them; each page
    /// asked is announced on `asked`.
    struct Ten {
        at: Vec<DateTime<Utc>>,
        asked: tokio::sync::mpsc::UnboundedSender<()>,
    }

    impl Tenant for Ten {
        fn page(&self, q: QueryWindow) -> Result<FetchedPage<Event>, SourceError> {
            let _ = self.asked.send(());
            let raws = self
                .at
                .iter()
                .filter(|t| **t >= q.start && **t < q.end)
                .skip(q.page as usize * q.page_size as usize)
                .take(q.page_size as usize)
                .map(|t| {
                    RawValue::from_string(format!(r#"{{"timestamp":"{}"}}"#, t.to_rfc3339()))
                        .unwrap()
                })
                .collect();
            Ok(FetchedPage::by_content(
                SourceKind::AuditLog,
                raws,
                q.start,
                |raw| {
                    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
                    Ok(v["timestamp"].as_str().unwrap().parse().unwrap())
                },
            ))
        }
    }

    /// A page's events go out in batches of at most `batch_events` (3 here, so 3, 3, 3
    /// and 1), and the checkpoint moves past the page only when all of its batches were
    /// delivered: three of four delivered commit nothing; when the fourth fails, the
    /// source stops and its checkpoint still stands where it started, so the page is
    /// read again whole.
    async fn a_page_in_four_batches(
        deliver_last: bool,
    ) -> (
        Vec<usize>,
        DateTime<Utc>,
        DateTime<Utc>,
        Result<(), SourceError>,
    ) {
        let now = Utc::now();
        let at = (0..10)
            .map(|i| now - TimeDelta::seconds(60) + TimeDelta::milliseconds(i))
            .collect();
        let (asked, mut pages) = tokio::sync::mpsc::unbounded_channel();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let poller = WindowPoller {
            name: Arc::from("audit"),
            fetch: Fake(Ten { at, asked }),
            lag: Duration::from_secs(1),
            poll_interval: Duration::from_secs(30),
            start: StartAt::Ago(Duration::from_secs(120)),
            page_size: 100,
            batch_events: 3,
            slice_readers: 1,
            reconcile_after: None,
            tenant: "t".into(),
            store: store.clone(),
            metrics: Arc::new(Metrics::new()),
            clock: Arc::new(ApiClock::new()),
            api: None,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let stop = CancellationToken::new();
        let run = tokio::spawn(poller.run(Route::new(vec![tx]), stop.clone()));
        let mut batches = Vec::new();
        for _ in 0..4 {
            batches.push(rx.recv().await.unwrap());
        }
        let sizes = batches.iter().map(|b| b.batch.events.len()).collect();
        let start = store
            .load("audit")
            .unwrap()
            .expect("the start edge")
            .watermark;
        let last = batches.pop().unwrap();
        for b in batches {
            b.ack.delivered();
        }
        // Two more polls: the poller had every chance to commit what it could.
        pages.recv().await.unwrap();
        pages.recv().await.unwrap();
        let held = store.load("audit").unwrap().unwrap().watermark;
        assert_eq!(
            held, start,
            "committed before the page's last batch was delivered"
        );
        if deliver_last {
            last.ack.delivered();
            pages.recv().await.unwrap();
            pages.recv().await.unwrap();
            stop.cancel();
        } else {
            last.ack.failed();
        }
        let result = run.await.unwrap();
        let end = store.load("audit").unwrap().unwrap().watermark;
        (sizes, start, end, result)
    }

    #[test]
    fn batches_are_bounded_by_events_and_by_bytes() {
        let ev = |n: usize| {
            let json = format!(r#"{{"x":"{}"}}"#, "a".repeat(n.saturating_sub(8)));
            Event::new(
                SourceKind::AuditLog,
                RawValue::from_string(json).unwrap(),
                Utc::now(),
            )
        };
        let sizes = |events: Vec<Event>, max_events, max_bytes| {
            let mut it = events.into_iter().peekable();
            let mut out = Vec::new();
            while it.peek().is_some() {
                out.push(next_batch(&mut it, max_events, max_bytes).len());
            }
            out
        };
        // By count: 3, 3, 1.
        assert_eq!(sizes((0..7).map(|_| ev(10)).collect(), 3, 1000), [3, 3, 1]);
        // By bytes: 100-byte events, 250 bytes a batch: two each.
        assert_eq!(sizes((0..5).map(|_| ev(100)).collect(), 10, 250), [2, 2, 1]);
        // An event larger than the bound goes out alone, never held back.
        assert_eq!(
            sizes(vec![ev(10), ev(500), ev(10), ev(10)], 10, 250),
            [1, 1, 2]
        );
        // Audit Log batches of 2,500 events of 600 bytes are not cut by the bytes.
        assert_eq!(
            sizes(
                (0..2_501).map(|_| ev(600)).collect(),
                MAX_BATCH_EVENTS,
                MAX_BATCH_BYTES
            ),
            [2_500, 1]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_is_committed_once_every_batch_of_it_was_delivered() {
        let (sizes, start, end, result) = a_page_in_four_batches(true).await;
        assert_eq!(sizes, [3, 3, 3, 1]);
        result.unwrap();
        assert!(
            end > start,
            "the page was delivered but not committed: {end} <= {start}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_whose_last_batch_fails_is_not_committed() {
        let (sizes, start, end, result) = a_page_in_four_batches(false).await;
        assert_eq!(sizes, [3, 3, 3, 1]);
        assert!(
            matches!(result, Err(SourceError::NotDelivered { events: 1, .. })),
            "{result:?}"
        );
        assert_eq!(end, start);
    }
}
