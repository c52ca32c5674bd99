//! The Audit Log poller: reads `search-audit-log` with the window logic of
//! [`super::window`], hands each page (minus what was already forwarded) to its route as
//! a [`Batch`], and commits the checkpoint behind the sinks' acknowledgements.
//!
//! **Invariant (DESIGN 1):** the checkpoint moves to the window state after batch n only
//! when batches 1..=n were all Delivered by every sink of the route, in order. A batch
//! that comes back NotDelivered stops the commits and the source (with an error naming
//! the batch); the pipeline restarts it from the checkpoint, which re-reads the batch
//! from the API (the API is the buffer).
//!
//! **Invariant (DESIGN 3):** at most [`MAX_IN_FLIGHT`] batches wait for their
//! acknowledgement; past that the poller waits, as it does when a sink queue is full.
//!
//! The poller never spawns; every await that can block forever also watches
//! `shutdown`. On shutdown it stops reading, waits for the outstanding
//! acknowledgements (which resolve when the sinks deliver or are stopped, their tokens
//! then counting as not delivered), commits the delivered prefix and returns `Ok`.
//!
//! It does not retry API errors itself (the client does, for retriable ones); a
//! permanent API error stops the source with that error.

use crate::ack::Outcome;
use crate::api::{parse_event_time, ApiClient, ApiError, AuditQuery};
use crate::checkpoint::{Checkpoint, CheckpointError, Store};
use crate::config::{self, ApiGeneration, AuditFilters, SourceSpec, StartAt};
use crate::event::{Batch, Event, SourceKind};
use crate::metrics::{label, Metrics};
use crate::pipeline::Route;
use crate::sources::window::{
    Next, PageEvent, PageVerdict, PollCycle, WindowState, EXPORT_RESULT_LIMIT, SEARCH_RESULT_LIMIT,
};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long Code42 keeps Audit Log events.
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// The most batches waiting for their acknowledgement at once.
pub const MAX_IN_FLIGHT: usize = 64;

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
    #[error("source {name}: is not an audit log source")]
    NotAuditLog { name: String },
    #[error(
        "source {name}: start position {start} is more than 90 days back; the api keeps 90 days"
    )]
    StartTooOld { name: String, start: DateTime<Utc> },
    #[error(
        "source {name}: checkpoint watermark {watermark} is more than 90 days old, events since then are no longer in the api; run `c42fwd checkpoint reset {name}` to start over from the configured start"
    )]
    CheckpointTooOld {
        name: String,
        watermark: DateTime<Utc>,
    },
    #[error("source {name}: checkpoint {path} is for a {found} source, not audit_log")]
    WrongKind {
        name: String,
        path: String,
        found: &'static str,
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
        "source {name}: more than {limit} events occurred at the single instant {at}; neither search nor export can read them all"
    )]
    TooManyAtOneInstant {
        name: String,
        at: DateTime<Utc>,
        limit: u64,
    },
}

/// Polls one tenant's Audit Log for one configured source.
pub struct AuditLogPoller {
    name: Arc<str>,
    filters: AuditFilters,
    lag: Duration,
    poll_interval: Duration,
    start: StartAt,
    page_size: u32,
    client: Arc<ApiClient>,
    store: Store,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for AuditLogPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLogPoller")
            .field("name", &self.name)
            .field("tenant", &self.client.tenant())
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
    /// The window state to commit once this entry and all before it are Delivered.
    state: WindowState,
}

/// Why the polling loop ended without an error.
enum Stop {
    Shutdown,
}

impl AuditLogPoller {
    pub fn new(
        source: &config::Source,
        client: Arc<ApiClient>,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<AuditLogPoller, SourceError> {
        #[allow(unreachable_patterns)] // other source kinds will come
        let filters = match &source.kind {
            SourceSpec::AuditLog(f) => f.clone(),
            _ => {
                return Err(SourceError::NotAuditLog {
                    name: source.name.clone(),
                })
            }
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
        Ok(AuditLogPoller {
            name: Arc::from(source.name.as_str()),
            filters,
            lag: source.lag,
            poll_interval: source.poll_interval,
            start: source.start,
            page_size: source.page_size.clamp(1, SEARCH_RESULT_LIMIT as u32),
            client,
            store,
            metrics,
        })
    }

    /// Runs until `shutdown` is cancelled (then `Ok`) or an error stops the source.
    pub async fn run(self, route: Route, shutdown: CancellationToken) -> Result<(), SourceError> {
        let mut state = self.initial_state(Utc::now())?;
        tracing::info!(
            source = %self.name,
            tenant = %self.client.tenant(),
            watermark = %state.watermark(),
            fingerprints = state.fingerprint_count(),
            "audit log source starting"
        );
        let mut flight = Commits {
            queue: VecDeque::new(),
            next_seq: 0,
            committed_watermark: state.watermark(),
        };
        let result = self
            .poll_loop(&route, &shutdown, &mut state, &mut flight)
            .await;
        // Our handle on the sink queues goes first, so that the sinks can drain and stop.
        drop(route);
        match result {
            Ok(Stop::Shutdown) => {
                // Every outstanding acknowledgement resolves: a sink either delivers or is
                // stopped by the pipeline's hard stop, which drops its tokens.
                self.drain(&mut flight).await?;
                tracing::info!(source = %self.name, "audit log source stopped");
                Ok(())
            }
            Err(e) => {
                // Commit what is already known to be delivered, without waiting.
                let _ = self.commit_resolved(&mut flight);
                Err(e)
            }
        }
    }

    fn initial_state(&self, now: DateTime<Utc>) -> Result<WindowState, SourceError> {
        let oldest = now - TimeDelta::from_std(RETENTION).unwrap_or(TimeDelta::MAX);
        match self.store.load(&self.name).map_err(|e| self.cp_err(e))? {
            Some(cp) => {
                if cp.kind != SourceKind::AuditLog {
                    return Err(SourceError::WrongKind {
                        name: self.name.to_string(),
                        path: self
                            .store
                            .path(&self.name)
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        found: cp.kind.as_str(),
                    });
                }
                if cp.watermark < oldest {
                    return Err(SourceError::CheckpointTooOld {
                        name: self.name.to_string(),
                        watermark: cp.watermark,
                    });
                }
                Ok(WindowState::restore(cp.watermark, &cp.fingerprints))
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
                Ok(WindowState::new(start))
            }
        }
    }

    async fn poll_loop(
        &self,
        route: &Route,
        shutdown: &CancellationToken,
        state: &mut WindowState,
        flight: &mut Commits,
    ) -> Result<Stop, SourceError> {
        let mut limit = SEARCH_RESULT_LIMIT;
        loop {
            if shutdown.is_cancelled() {
                return Ok(Stop::Shutdown);
            }
            let started = tokio::time::Instant::now();
            let mut cycle = PollCycle::new(state, Utc::now(), self.lag, self.page_size, limit);
            let mut next = Next::Fetch(cycle.current());
            loop {
                let (events, verdict) = match next {
                    Next::Done => break,
                    Next::Fetch(q) => {
                        let query = AuditQuery {
                            start: q.start,
                            end: q.end,
                            page: q.page,
                            page_size: q.page_size,
                            filters: &self.filters,
                        };
                        let page = tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => return Ok(Stop::Shutdown),
                            r = self.client.search_audit_log(&query) => r.map_err(|e| self.api_err(e))?,
                        };
                        if page.past_result_window {
                            let splits = cycle.splits();
                            next = cycle.on_past_result_window();
                            if cycle.splits() > splits {
                                self.count_split();
                            }
                            tracing::info!(
                                source = %self.name,
                                page = q.page,
                                limit = cycle.limit(),
                                "server refused a page past its result window, splitting the query window"
                            );
                            continue;
                        }
                        let (events, marks) = self.to_events(page.events, q.start);
                        let verdict = cycle.on_page(state, &marks);
                        if verdict.split {
                            self.count_split();
                            tracing::info!(
                                source = %self.name,
                                limit = cycle.limit(),
                                "query window reached the result limit, continuing from its newest event"
                            );
                        }
                        (events, verdict)
                    }
                    Next::ExportInstant { at } => {
                        let Some((events, marks)) = self.export_instant(at, shutdown).await? else {
                            return Ok(Stop::Shutdown);
                        };
                        let verdict = cycle.on_export(state, at, &marks);
                        (events, verdict)
                    }
                };
                next = verdict.next;
                if self
                    .forward(events, &verdict, state, route, shutdown, flight)
                    .await?
                    .is_some()
                {
                    return Ok(Stop::Shutdown);
                }
                self.commit_resolved(flight)?;
            }
            limit = cycle.limit();
            // Caught up to the poll time: wait for the next poll, committing as the
            // acknowledgements arrive.
            let deadline = started + self.poll_interval;
            loop {
                self.commit_resolved(flight)?;
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(Stop::Shutdown),
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = flight.front_outcome() => {}
                }
            }
        }
    }

    /// Reads `[at, at + 1ns)` through the export endpoint (more than the search limit
    /// occurred at `at`). `None` on shutdown.
    async fn export_instant(
        &self,
        at: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<Option<(Vec<Event>, Vec<PageEvent>)>, SourceError> {
        tracing::error!(
            source = %self.name,
            at = %at,
            "a whole search result window occurred at one instant; reading that instant through search-results-export"
        );
        let query = AuditQuery {
            start: at,
            end: at + TimeDelta::nanoseconds(1),
            page: 0,
            page_size: self.page_size,
            filters: &self.filters,
        };
        let too_many = || SourceError::TooManyAtOneInstant {
            name: self.name.to_string(),
            at,
            limit: EXPORT_RESULT_LIMIT,
        };
        let count = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(None),
            r = self.client.count_audit_log(&query) => r.map_err(|e| self.api_err(e))?,
        };
        if count.is_some_and(|n| n > EXPORT_RESULT_LIMIT) {
            return Err(too_many());
        }
        let raws = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(None),
            r = self.client.export_audit_log(&query) => r.map_err(|e| self.api_err(e))?,
        };
        // Without a count (legacy), a full export may have been cut: refuse rather than
        // skip the rest silently.
        if count.is_none() && raws.len() as u64 >= EXPORT_RESULT_LIMIT {
            return Err(too_many());
        }
        Ok(Some(self.to_events(raws, at)))
    }

    /// Parses each event's time. An unparsable one is logged, counted, and forwarded with
    /// the window start as its time (DESIGN invariant 5: nothing dropped silently).
    fn to_events(
        &self,
        raws: Vec<Box<RawValue>>,
        window_start: DateTime<Utc>,
    ) -> (Vec<Event>, Vec<PageEvent>) {
        let mut events = Vec::with_capacity(raws.len());
        let mut marks = Vec::with_capacity(raws.len());
        let mut bad = 0u64;
        let mut first_reason = None;
        for raw in raws {
            let occurred = match parse_event_time(raw.get()) {
                Ok(t) => t,
                Err(reason) => {
                    bad += 1;
                    first_reason.get_or_insert(reason);
                    window_start
                }
            };
            marks.push(PageEvent::new(raw.get(), occurred));
            events.push(Event::new(SourceKind::AuditLog, raw, occurred));
        }
        if let Some(reason) = first_reason {
            self.metrics
                .source_bad_timestamps
                .get_or_create(&label("source", &self.name))
                .inc_by(bad);
            tracing::warn!(
                source = %self.name,
                count = bad,
                reason = %reason,
                window_start = %window_start,
                "events with an unparsable timestamp are forwarded with the window start as their time"
            );
        }
        (events, marks)
    }

    /// Sends the new events of a page as one batch and queues its commit. `Some(Stop)`
    /// when shutdown interrupted the send.
    async fn forward(
        &self,
        events: Vec<Event>,
        verdict: &PageVerdict,
        state: &WindowState,
        route: &Route,
        shutdown: &CancellationToken,
        flight: &mut Commits,
    ) -> Result<Option<Stop>, SourceError> {
        let fresh: Vec<Event> = events
            .into_iter()
            .zip(&verdict.forward)
            .filter_map(|(e, f)| f.then_some(e))
            .collect();
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
            return Ok(None);
        }
        // Bounded in-flight window (module invariant).
        while flight.queue.len() >= MAX_IN_FLIGHT {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(Some(Stop::Shutdown)),
                _ = flight.front_outcome() => {}
            }
            self.commit_resolved(flight)?;
        }
        let n = fresh.len();
        let batch = Batch {
            source: self.name.clone(),
            events: fresh,
        };
        let waiter = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(Some(Stop::Shutdown)),
            r = route.send(batch) => r.map_err(|_| SourceError::RouteClosed { name: self.name.to_string() })?,
        };
        self.metrics
            .source_events
            .get_or_create(&src)
            .inc_by(n as u64);
        flight.push(Some(waiter.wait().boxed()), n, state.clone());
        Ok(None)
    }

    /// Commits the longest prefix of in-flight entries known to be Delivered (one save for
    /// all of them); a NotDelivered one stops the source.
    fn commit_resolved(&self, flight: &mut Commits) -> Result<(), SourceError> {
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
                    last = Some(done.state);
                }
                Some(Outcome::NotDelivered) => {
                    let (batch, events) = (front.seq, front.events);
                    if let Some(s) = last.take() {
                        self.save(flight, &s, batches)?;
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
        if let Some(s) = last {
            self.save(flight, &s, batches)?;
        }
        Ok(())
    }

    /// Waits, in order, for every outstanding acknowledgement and commits the delivered
    /// prefix (shutdown path). A batch not delivered is simply not committed: it is read
    /// again at the next start.
    async fn drain(&self, flight: &mut Commits) -> Result<(), SourceError> {
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
        self.commit_resolved_prefix_only(flight)
    }

    /// Like `commit_resolved`, but stops quietly at a NotDelivered entry.
    fn commit_resolved_prefix_only(&self, flight: &mut Commits) -> Result<(), SourceError> {
        let mut last = None;
        let mut batches = 0u64;
        while flight.queue.front().and_then(|f| f.outcome) == Some(Outcome::Delivered) {
            let done = flight.queue.pop_front().expect("front exists");
            if done.events > 0 {
                batches += 1;
            }
            last = Some(done.state);
        }
        if let Some(s) = last {
            self.save(flight, &s, batches)?;
        }
        Ok(())
    }

    fn save(
        &self,
        flight: &mut Commits,
        state: &WindowState,
        batches: u64,
    ) -> Result<(), SourceError> {
        let cp = Checkpoint {
            source: self.name.to_string(),
            kind: SourceKind::AuditLog,
            watermark: state.watermark(),
            fingerprints: state.fingerprints(),
            updated_at: Utc::now(),
        };
        // A small file, written at most once per page: done inline rather than on a
        // blocking thread, since sources do not spawn.
        self.store
            .save(&self.name, &cp)
            .map_err(|e| self.cp_err(e))?;
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

    fn count_split(&self) {
        self.metrics
            .source_window_splits
            .get_or_create(&label("source", &self.name))
            .inc();
    }

    fn api_err(&self, error: ApiError) -> SourceError {
        SourceError::Api {
            name: self.name.to_string(),
            error,
        }
    }

    fn cp_err(&self, error: CheckpointError) -> SourceError {
        SourceError::Checkpoint {
            name: self.name.to_string(),
            error,
        }
    }
}

/// The FIFO of batches waiting for their acknowledgement, with the state to commit
/// after each.
struct Commits {
    queue: VecDeque<InFlight>,
    /// The number of the last batch sent.
    next_seq: u64,
    /// The watermark of the last checkpoint written (or loaded).
    committed_watermark: DateTime<Utc>,
}

impl Commits {
    fn push(
        &mut self,
        ack: Option<BoxFuture<'static, Outcome>>,
        events: usize,
        state: WindowState,
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
            state,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SeenEvent;
    use crate::config::{Credentials, ServiceUrls, Source, Tenant};
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
        assert!(err.to_string().contains("checkpoint reset audit"), "{err}");

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
}
