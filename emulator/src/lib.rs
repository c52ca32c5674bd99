//! An emulated Code42 / Incydr tenant, for c42fwd's tests, benchmarks, `c42fwd demo` and
//! `c42fwd emulate`.
//!
//! The real API cannot be reached from here, so this crate serves both API
//! generations the way the real service behaves (see `docs/api.md`), quirks included:
//! the Incydr gateway (`/v1/oauth`, `/v1/customer`, `/v1/audit/*`: the 10,000-result
//! window answered with `totalResultCount` only, empty pages without `events`, epoch-float
//! dates, download tokens, access tokens that are JWTs carrying `tenantUid`) and
//! the legacy services (`/api/v3/auth/jwt` with TOTP, `/api/v3/oauth/token`, tenant,
//! `/api/v1/User/my`, `LoginConfiguration`, `ServerEnv` + key-value-store discovery,
//! `/rpc/search/*` with its Elasticsearch-style window error and server-side CSV/CEF).
//! The legacy services answer where the official clients call them (at the root: they
//! join absolute paths onto the discovered URLs, which drops the URLs' paths) and under
//! the paths those URLs carry (`/audit-log/...`, `/alert-service/...`), each route
//! counted on its own. Any other method or path answers 404 with a JSON body naming it,
//! and is counted as unknown: [`EmulatorStats`] (per-route requests and records, unknown
//! routes) is what [`EmulatorHandle::stats`] returns and what `GET /_emulator/stats`
//! serves. Both generations also
//! serve alerts (query-alerts with the full filter language, query-details with its
//! 100-id limit, query-details-aggregate, add-note, update-state, the legacy
//! resolve-alert / reopen-alert, rule metadata) and the Directory Sync Log
//! (`/api/v3/DirectorySyncLog[/csv]`, 90-day retention).
//!
//! # Layout
//! - `timeline`: event number <-> occurrence time, ties, duplicates, ingestion delay.
//! - `events`: what event number `i` says, rendered straight to JSON text.
//! - `query`: search bodies and the `Selection` of events that answer them.
//! - `render`: JSON / CSV / CEF bodies, produced in chunks while they are sent.
//! - `alerts`: what alert `i` says (rule, actor, observations, triage), its id, and the
//!   JSON of summaries, details, aggregates and rules.
//! - `alert_query`: the alert service's filter language and paging.
//! - `sync_log`: the Directory Sync Log: entries, parameters, retention, sort, bodies.
//! - `file_events`: File Events (`/v2/file-events`): what event `i` says, filter
//!   groups, offset and `pgToken` paging.
//! - `service_routes`: the axum routes of alerts, rules and the Sync Log.
//! - `auth`: credentials and stateless JWT-shaped tokens.
//! - `faults`: injected 429 / 500 / 401 and the statistics tests read.
//! - `pace`: the latency and transfer rate of the data endpoints (`--latency`,
//!   `--bandwidth`), and which endpoints those are.
//! - `quirks`: switchable behaviours of the real service (empty pages without
//!   `events`, the legacy alert service's authorization scheme, the token's claims).
//! - `server`: the shared state, and the auth, discovery and Audit Log routes.
//! - `args`: the `c42fwd emulate` command-line options.
//! - `tests/http`: the crate's tests, over real HTTP against its public API.
//!
//! # Dependencies
//! A crate of its own in c42fwd's workspace, so the product's library holds no test
//! tool: the `c42fwd` binary pulls it in through its default `emulator` feature (for
//! `demo` and `emulate`), the product's tests and benches through a dev-dependency.
//! The dependency points one way only: the emulator depends on the product's Audit Log
//! event catalog (`c42fwd-catalog`: which event types exist and how their `type$` is
//! spelled, so it generates exactly what c42fwd maps) and never on the `c42fwd`
//! package, which Cargo could not build anyway (the binary needs the emulator). It
//! keeps what else it needs to itself: its secret flags print as `[redacted]` through
//! its own [`SecretArg`], and the Sync Log actions it generates are its own list
//! ([`SYNC_LOG_ACTIONS`]), since Code42 publishes none for the product to own.
//!
//! Where Code42's documentation leaves behaviour open, the choice is written down where
//! it is made: alert filters in `alert_query`, alert endpoints in `service_routes`, the
//! Sync Log in `sync_log` (1-based `page[number]`,
//! `{"data":{"Directory Sync Logs":[..],..}}`).
//!
//! Invariant: the event log is never materialised. Event `i` is a pure function of
//! `(seed, i)`; a backlog of a million events costs no memory and a time range maps to an
//! index range by binary search. Alerts and Sync Log entries work the same way, each on
//! its own timeline; the only per-alert memory is the change map of alerts a client
//! modified.
//!
//! Time: the emulator runs on its own clock, `start_time + elapsed + offset`. Tests move
//! it forward with [`EmulatorHandle::advance`] (to expire tokens, or let lagging
//! events become visible) instead of sleeping; with no `start_time` and no advance it
//! equals the wall clock.
//!
//! It is a test and development tool, not part of the daemon's pipeline, so it spawns
//! its own server task ([`start`]). It does not emulate sessions, the legacy forensic
//! search, or the rule-management endpoints beyond rule metadata.
#![forbid(unsafe_code)]

mod alert_query;
mod alerts;
mod args;
mod auth;
mod events;
mod faults;
mod file_events;
mod json;
mod pace;
mod query;
mod quirks;
mod render;
mod server;
mod service_routes;
mod sessions;
mod sync_log;
mod timeline;

pub use args::{EmulateArgs, LateArgs, SecretArg, ServiceArgs};
pub use faults::{EmulatorStats, FaultOptions};
pub use file_events::{FILE_EVENT_ACTIONS, RISK_SEVERITIES as FILE_EVENT_RISK_SEVERITIES};
pub use pace::ByteRate;
pub use quirks::{QuirkArgs, Quirks};
pub use sync_log::SYNC_LOG_ACTIONS;

use chrono::{DateTime, Utc};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// An export format of [`EmulatorHandle::audit_export_between`] and
/// [`EmulatorHandle::sync_log_export_between`] (the Sync Log has no CEF: JSON instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Json,
    Csv,
    Cef,
    /// The console's CSV export of the Audit Log (`Date observed`, `Username`,
    /// `Event type`, `IP address`, `User agent`, `User type`); Audit Log only.
    ConsoleCsv,
}

/// How the emulated tenant behaves. `Default` gives a small, quiet tenant.
#[derive(Clone)]
pub struct EmulatorOptions {
    /// Same seed, same events (byte for byte, given the same `start_time`).
    pub seed: u64,
    /// Events that occurred before the emulator started.
    pub backlog: u64,
    /// The backlog is spread evenly (with jitter) over this span before the start.
    pub backlog_span: Duration,
    /// Live events per second from the start; 0 = none.
    pub rate: f64,
    /// Alerts created before the emulator started, spread over `backlog_span`.
    pub alert_backlog: u64,
    /// Live alerts per second from the start; 0 = none.
    pub alert_rate: f64,
    /// Directory Sync Log entries before the start, spread over `sync_log_span`.
    pub sync_log_backlog: u64,
    /// The span of the Sync Log backlog; longer than the 90-day retention by default, so
    /// the oldest entries are already gone.
    pub sync_log_span: Duration,
    /// Live Sync Log entries per second from the start; 0 = none.
    pub sync_log_rate: f64,
    /// Each event becomes visible in searches up to this long after it occurred.
    pub lag: Duration,
    /// Lifetime of issued tokens (whole seconds; the JWT `exp` has no finer grain).
    pub token_ttl: Duration,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
    /// When set, `/api/v3/auth/jwt` requires this code in a `totp-auth` header.
    pub totp: Option<String>,
    pub tenant_id: String,
    /// The paged-search window (10,000 in the real service).
    pub search_limit: usize,
    /// The most results one export may return (100,000 in the real service).
    pub export_limit: usize,
    pub faults: FaultOptions,
    /// Behaviours of the real service, each switchable (see [`Quirks`]).
    pub quirks: Quirks,
    /// The fraction (0 to 1) of events, alerts and Sync Log entries that show up
    /// `late_by` later than `lag` would have them: a tenant slower than its stated lag.
    /// Chosen by index, so the same seed makes the same events late.
    pub late_fraction: f64,
    /// How much later than the lag the late ones show up.
    pub late_by: Duration,
    /// The emulator's clock at start-up; `None` = the wall clock. Pin it for
    /// byte-for-byte reproducible timestamps.
    pub start_time: Option<DateTime<Utc>>,
    /// How long every request to a data endpoint waits before it is served (the
    /// real API's response time; `pace` lists the endpoints). Zero: none.
    pub latency: Duration,
    /// The rate at which data endpoints send their response bodies, in pieces paced
    /// as they are rendered; `None`: as fast as the socket takes them.
    pub bandwidth: Option<ByteRate>,
    /// Sessions that began before the emulator started, spread over `backlog_span`.
    pub session_backlog: u64,
    /// Live sessions per second from the start; 0 = none.
    pub session_rate: f64,
    /// How long after its previous version a session is updated (each has one to four
    /// versions: `lastUpdated` moves, a score and a state are added).
    pub session_update_every: Duration,
    /// File events inserted before the emulator started, spread over `backlog_span`.
    pub file_event_backlog: u64,
    /// Live file events per second from the start; 0 = none.
    pub file_event_rate: f64,
    /// How long a `nextPgToken` of `/v2/file-events` stays valid.
    pub file_event_token_ttl: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            seed: 42,
            backlog: 5_000,
            backlog_span: Duration::from_secs(3_600),
            rate: 2.0,
            alert_backlog: 300,
            alert_rate: 0.05,
            sync_log_backlog: 2_000,
            sync_log_span: Duration::from_secs(120 * 86_400),
            sync_log_rate: 0.02,
            lag: Duration::from_secs(120),
            token_ttl: Duration::from_secs(900),
            client_id: "key-emulator".into(),
            client_secret: "emulator-secret".into(),
            username: "admin@example.com".into(),
            password: "emulator-password".into(),
            totp: None,
            tenant_id: "c42e7a1b-0000-4000-8000-00000000e001".into(),
            search_limit: 10_000,
            export_limit: 100_000,
            faults: FaultOptions::default(),
            quirks: Quirks::default(),
            late_fraction: 0.0,
            late_by: Duration::ZERO,
            start_time: None,
            latency: Duration::ZERO,
            bandwidth: None,
            session_backlog: 60,
            session_rate: 0.02,
            session_update_every: Duration::from_secs(600),
            file_event_backlog: 5_000,
            file_event_rate: 5.0,
            file_event_token_ttl: Duration::from_secs(600),
        }
    }
}

/// Secrets never print.
impl fmt::Debug for EmulatorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorOptions")
            .field("seed", &self.seed)
            .field("backlog", &self.backlog)
            .field("backlog_span", &self.backlog_span)
            .field("rate", &self.rate)
            .field("alert_backlog", &self.alert_backlog)
            .field("alert_rate", &self.alert_rate)
            .field("sync_log_backlog", &self.sync_log_backlog)
            .field("sync_log_span", &self.sync_log_span)
            .field("sync_log_rate", &self.sync_log_rate)
            .field("lag", &self.lag)
            .field("token_ttl", &self.token_ttl)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("totp", &self.totp.as_ref().map(|_| "[redacted]"))
            .field("tenant_id", &self.tenant_id)
            .field("search_limit", &self.search_limit)
            .field("export_limit", &self.export_limit)
            .field("faults", &self.faults)
            .field("quirks", &self.quirks)
            .field("late_fraction", &self.late_fraction)
            .field("late_by", &self.late_by)
            .field("start_time", &self.start_time)
            .field("latency", &self.latency)
            .field("bandwidth", &self.bandwidth)
            .field("session_backlog", &self.session_backlog)
            .field("session_rate", &self.session_rate)
            .field("session_update_every", &self.session_update_every)
            .field("file_event_backlog", &self.file_event_backlog)
            .field("file_event_rate", &self.file_event_rate)
            .field("file_event_token_ttl", &self.file_event_token_ttl)
            .finish()
    }
}

/// A running emulator started with [`start`]. Dropping it without [`Self::shutdown`]
/// leaves the server running until the runtime stops.
pub struct EmulatorHandle {
    state: Arc<server::Emulator>,
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Starts the emulator on `listener`, serving on a task of the current runtime.
pub async fn start(
    opts: EmulatorOptions,
    listener: tokio::net::TcpListener,
) -> std::io::Result<EmulatorHandle> {
    let addr = listener.local_addr()?;
    let state = Arc::new(server::Emulator::new(opts, addr));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = server::router(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(EmulatorHandle {
        state,
        addr,
        stop,
        task,
    })
}

/// Serves the emulator on `listener` until `shutdown` completes (for `c42fwd emulate`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    opts: EmulatorOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let state = Arc::new(server::Emulator::new(opts, addr));
    axum::serve(listener, server::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// How long [`EmulatorHandle::shutdown`] lets open responses finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl EmulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (a wildcard bind address is replaced by loopback).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Replaces the injected faults; the "every Nth" counters restart.
    pub fn set_faults(&self, f: FaultOptions) {
        self.state.faults.set(f);
    }

    pub fn stats(&self) -> EmulatorStats {
        self.state.faults.snapshot()
    }

    /// Restarts the in-flight maxima of the statistics (`max_data_in_flight`,
    /// `max_in_flight`) from the requests in flight now, so that a test can measure a
    /// phase of a run on its own.
    pub fn reset_in_flight_peaks(&self) {
        self.state.faults.reset_in_flight_peaks();
    }

    /// The emulator's clock at start-up.
    pub fn started_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.state.gen.timeline.start_ns())
    }

    /// The emulator's clock now.
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.state.clock.now_ns())
    }

    /// Moves the emulator's clock forward: tokens expire, live events occur and
    /// lagging events become visible as if `by` had passed.
    pub fn advance(&self, by: Duration) {
        self.state.clock.advance(by);
    }

    /// Ground truth for tests: the raw JSON text (exactly as served) of every event that
    /// OCCURRED in `[start, end)`, visible or not. With a live stream, a range in the
    /// future lists events that have not "happened" yet; keep ranges bounded.
    pub fn events_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
        let tl = &self.state.gen.timeline;
        let lo = tl.first_at_or_after(to_ns(start));
        let hi = tl.first_at_or_after(to_ns(end));
        (lo..hi.max(lo))
            .map(|i| {
                let mut s = String::new();
                self.state.gen.render(i, &mut s);
                s
            })
            .collect()
    }

    /// Ground truth for tests: the alert detail JSON (exactly as query-details serves it
    /// now, observations, note and client changes included) of every alert CREATED in
    /// `[start, end)` (by its rendered `createdAt`), visible or not, oldest first.
    pub fn alerts_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
        self.render_alerts(start, end, |g, a, out| g.render_details(a, out))
    }

    /// The alerts of [`Self::alerts_between`] as one `query-details` response body
    /// (`{"type$":"ALERT_DETAILS_RESPONSE","alerts":[...]}`, as the route serves it), the
    /// shape a saved query-details answer has.
    pub fn alert_details_body_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
        format!(
            "{}{}]}}",
            service_routes::DETAILS_RESPONSE_START,
            self.alerts_between(start, end).join(",")
        )
    }

    /// Like [`Self::alerts_between`], the summaries as query-alerts lists them.
    pub fn alert_summaries_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
        self.render_alerts(start, end, |g, a, out| g.render_summary(a, out))
    }

    fn render_alerts(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        render: impl Fn(&alerts::AlertGenerator, &alerts::Alert, &mut String),
    ) -> Vec<String> {
        let g = &self.state.alerts;
        let lo = g.first_created_at_or_after(to_ns(start));
        let hi = g.first_created_at_or_after(to_ns(end));
        let changes = self.state.alert_changes_snapshot();
        (lo..hi.max(lo))
            .map(|i| {
                let mut s = String::new();
                render(g, &g.alert(i, changes.get(&i)), &mut s);
                s
            })
            .collect()
    }

    /// Ground truth for tests: every version of every session that BEGAN in
    /// `[start, end)` (by its millisecond `beginTime`) that was published by now on the
    /// emulator's clock (its `lastUpdated` not after now), with or without alerts as
    /// `has_alerts` says, as `(sessionId, lastUpdated)`, oldest session first.
    pub fn session_versions_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        has_alerts: bool,
    ) -> Vec<(String, i64)> {
        let s = &self.state.sessions;
        let now = self.state.clock.now_ns();
        s.index_range(start.timestamp_millis(), end.timestamp_millis())
            .flat_map(|i| {
                s.versions_until(i, now)
                    .map(move |v| s.session(i, v))
                    .filter(|x| x.has_alerts == has_alerts)
                    .map(|x| (x.id, x.last_updated_ms))
            })
            .collect()
    }

    /// Ground truth for tests: the JSON text of the current version (as
    /// `GET /v1/sessions` serves it now) of every visible session that BEGAN in
    /// `[start, end)`, alerted or not, oldest first.
    pub fn sessions_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
        let s = &self.state.sessions;
        let now = self.state.clock.now_ns();
        s.index_range(start.timestamp_millis(), end.timestamp_millis())
            .filter_map(|i| s.version_at(i, now).map(|v| s.session(i, v)))
            .map(|x| {
                let mut out = String::new();
                s.render(&x, &mut out);
                out
            })
            .collect()
    }

    /// Ground truth for tests: the JSON text (exactly as `/api/v3/DirectorySyncLog`
    /// serves it) of every Sync Log entry that OCCURRED in `[start, end)` (by its
    /// millisecond `logEventTimeStamp`), oldest first, whether or not it is visible yet
    /// or still retained.
    pub fn sync_log_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
        let log = &self.state.sync_log;
        log.index_range(to_ns(start), to_ns(end))
            .map(|i| {
                let mut s = String::new();
                log.render(&log.entry(i), &mut s);
                s
            })
            .collect()
    }

    /// Ground truth for tests: the raw JSON text (exactly as `/v2/file-events` serves
    /// it) of every file event INSERTED in `[start, end)` (`event.inserted`), visible or
    /// not, in insertion order.
    pub fn file_events_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
        let log = &self.state.file_events;
        log.index_range(to_ns(start), to_ns(end))
            .map(|i| {
                let mut s = String::new();
                log.render(i, &mut s);
                s
            })
            .collect()
    }

    /// How many file events were inserted in `[start, end)`, visible or not (no
    /// rendering: for large ranges).
    pub fn file_event_count_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> u64 {
        let r = self.state.file_events.index_range(to_ns(start), to_ns(end));
        r.end - r.start
    }

    /// The `event.id` of every file event inserted in `[start, end)`, in order.
    pub fn file_event_ids_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
        let log = &self.state.file_events;
        log.index_range(to_ns(start), to_ns(end))
            .map(|i| log.id_of(i))
            .collect()
    }

    /// Ground truth for tests: the Audit Log export of every event that OCCURRED in
    /// `[start, end)`, as `search-results-export` renders it in `format` (JSON: the
    /// Incydr body `{"events":[...]}`; CSV with its header line; server-side CEF; the
    /// console's CSV export, which the API does not serve), whole.
    pub fn audit_export_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        format: ExportFormat,
    ) -> String {
        let tl = &self.state.gen.timeline;
        let lo = tl.first_at_or_after(to_ns(start));
        let hi = tl.first_at_or_after(to_ns(end)).max(lo);
        let format = match format {
            ExportFormat::Json => render::Format::Json,
            ExportFormat::Csv => render::Format::Csv,
            ExportFormat::Cef => render::Format::Cef,
            ExportFormat::ConsoleCsv => {
                let mut out = render::CONSOLE_CSV_HEADER.to_string();
                for i in lo..hi {
                    render::write_console_csv_row(&self.state.gen, i, &mut out);
                }
                return out;
            }
        };
        let mut out = match format {
            render::Format::Json => "{\"events\":[".to_string(),
            render::Format::Csv => render::CSV_HEADER.to_string(),
            render::Format::Cef => String::new(),
        };
        for i in lo..hi {
            if format == render::Format::Json && i > lo {
                out.push(',');
            }
            render::write_event(&self.state.gen, i, format, &mut out);
        }
        if format == render::Format::Json {
            out.push_str("]}");
        }
        out
    }

    /// Ground truth for tests: the Sync Log export of every entry that OCCURRED in
    /// `[start, end)`, oldest first, as `/api/v3/DirectorySyncLog/csv` renders it (CSV,
    /// header line included) or `/api/v3/DirectorySyncLog` without paging (JSON).
    pub fn sync_log_export_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        format: ExportFormat,
    ) -> String {
        let log = &self.state.sync_log;
        let entries: Vec<_> = log
            .index_range(to_ns(start), to_ns(end))
            .map(|i| log.entry(i))
            .collect();
        match format {
            ExportFormat::Csv => {
                let mut out = sync_log::CSV_HEADER.to_string();
                for e in &entries {
                    log.render_csv(e, &mut out);
                }
                out
            }
            _ => log.render_page(&entries, None),
        }
    }

    /// Stops accepting, lets open responses finish for a short grace period, and waits
    /// for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Nanoseconds since the epoch, saturated to the representable range (years 1677-2262).
fn to_ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}
