//! Injected faults and the request statistics tests read.
//!
//! Owns the decision "answer this request with 429 / 500 / 401 instead" from the
//! run-time adjustable [`FaultOptions`], and the counters behind
//! [`EmulatorStats`]. It does not build responses (see `server`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Faults the emulator injects; changeable at run time with
/// [`super::EmulatorHandle::set_faults`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultOptions {
    /// Every Nth request (counted from the last `set_faults`, all endpoints) is
    /// answered 429 with `Retry-After`; 0 = never.
    pub rate_limit_every: u32,
    /// The `Retry-After` of those 429s (whole seconds, rounded up).
    pub retry_after: Duration,
    /// Every Mth request is answered 500; 0 = never.
    pub server_error_every: u32,
    /// The next K requests to token-protected endpoints are answered 401 whatever
    /// their token (to test refresh-on-401).
    pub unauthorized_next: u32,
}

impl Default for FaultOptions {
    fn default() -> Self {
        FaultOptions {
            rate_limit_every: 0,
            retry_after: Duration::from_secs(1),
            server_error_every: 0,
            unauthorized_next: 0,
        }
    }
}

/// What the emulator has served, for tests to assert on. Also served as JSON (these
/// field names) at `GET /_emulator/stats`, which is itself not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EmulatorStats {
    /// Requests per endpoint, keyed by route (`/v1/audit/search-audit-log`,
    /// `/v1/{key}`, ...), faulted ones included. Only routes the emulator serves.
    pub requests: BTreeMap<String, u64>,
    /// Records written into response bodies per route: Audit Log events (all
    /// formats), alert summaries (query-alerts), alert details (query-details) and
    /// Directory Sync Log entries (JSON pages and CSV).
    pub events: BTreeMap<String, u64>,
    /// Requests the emulator does not serve, keyed `METHOD /path` (the path as asked,
    /// without its query; for the key-value store, `GET /v1/<KEY>` of a key it does not
    /// know). Each was answered 404 with a JSON body naming it.
    pub unknown: BTreeMap<String, u64>,
    /// 429 answers (injected).
    pub rate_limited: u64,
    /// 500 answers (injected).
    pub server_errors: u64,
    /// 401 answers of any cause: bad credentials, bad or expired token, injected.
    pub unauthorized: u64,
    /// Tokens issued by every token endpoint.
    pub tokens_issued: u64,
    /// Audit Log events written into response bodies (all formats, all routes).
    pub events_served: u64,
    /// Requests let in with `Authorization: v3_user_token <t>` rather than `Bearer`.
    pub v3_user_token_requests: u64,
    /// The most requests to the data endpoints (those behind `--latency`) that were in
    /// the emulator at once, from their arrival to their response's head, since the
    /// start or the last [`super::EmulatorHandle::reset_in_flight_peaks`].
    pub max_data_in_flight: u64,
    /// The same per data route, keyed by the route as served (as `requests`): the most
    /// requests to that one route in the emulator at once.
    pub max_in_flight: BTreeMap<String, u64>,
}

impl EmulatorStats {
    /// Requests to one route; 0 when it was never called.
    pub fn requests_to(&self, route: &str) -> u64 {
        self.requests.get(route).copied().unwrap_or(0)
    }

    /// Requests to all routes the emulator serves.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    /// The most requests to one data route at once; 0 when it was never called.
    pub fn max_in_flight_to(&self, route: &str) -> u64 {
        self.max_in_flight.get(route).copied().unwrap_or(0)
    }

    /// Records served by one route; 0 when it served none.
    pub fn events_from(&self, route: &str) -> u64 {
        self.events.get(route).copied().unwrap_or(0)
    }

    /// Requests to routes the emulator does not serve.
    pub fn unknown_requests(&self) -> u64 {
        self.unknown.values().sum()
    }
}

/// A fault chosen for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injected {
    RateLimited { retry_after_s: u64 },
    ServerError,
    Unauthorized,
}

/// Shared, lock-light fault and statistics state.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    options: Mutex<FaultOptions>,
    /// Requests since the options were last set; the "every Nth" counter.
    seen: AtomicU64,
    unauthorized_left: AtomicU32,
    requests: Mutex<BTreeMap<&'static str, u64>>,
    events: Mutex<BTreeMap<&'static str, u64>>,
    unknown: Mutex<BTreeMap<String, u64>>,
    rate_limited: AtomicU64,
    server_errors: AtomicU64,
    unauthorized: AtomicU64,
    tokens_issued: AtomicU64,
    events_served: AtomicU64,
    v3_user_token_requests: AtomicU64,
    data_in_flight: AtomicU64,
    max_data_in_flight: AtomicU64,
    /// Per data route: (in flight now, the most at once).
    route_in_flight: Mutex<BTreeMap<String, (u64, u64)>>,
}

/// A data request inside the emulator; counted out when dropped.
pub(crate) struct InFlight<'a> {
    state: &'a FaultState,
    route: Option<String>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state.data_in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(route) = &self.route {
            let mut routes = self.state.routes_in_flight();
            if let Some((now, _)) = routes.get_mut(route) {
                *now = now.saturating_sub(1);
            }
        }
    }
}

impl FaultState {
    pub(crate) fn new(options: FaultOptions) -> Self {
        let s = FaultState::default();
        s.set(options);
        s
    }

    /// Replaces the options and restarts the counters they apply to.
    pub(crate) fn set(&self, options: FaultOptions) {
        let mut o = self.options.lock().unwrap_or_else(|e| e.into_inner());
        self.unauthorized_left
            .store(options.unauthorized_next, Ordering::SeqCst);
        self.seen.store(0, Ordering::SeqCst);
        *o = options;
    }

    /// Counts a request to `route` and decides whether it gets a fault.
    /// Rate limiting wins over server errors, which win over injected 401s; the 401s
    /// apply only to token-protected routes (`protected`), where a client refreshes.
    pub(crate) fn on_request(&self, route: &'static str, protected: bool) -> Option<Injected> {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route)
            .or_default() += 1;
        let o = self
            .options
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if o.rate_limit_every > 0 && n % u64::from(o.rate_limit_every) == 0 {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            let ms = o.retry_after.as_millis() as u64;
            return Some(Injected::RateLimited {
                retry_after_s: ms.div_ceil(1_000),
            });
        }
        if o.server_error_every > 0 && n % u64::from(o.server_error_every) == 0 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
            return Some(Injected::ServerError);
        }
        if protected
            && self
                .unauthorized_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
                .is_ok()
        {
            return Some(Injected::Unauthorized);
        }
        None
    }

    pub(crate) fn count_unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_token(&self) -> u64 {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts `n` Audit Log events served by `route`.
    pub(crate) fn count_events(&self, route: &'static str, n: u64) {
        self.events_served.fetch_add(n, Ordering::Relaxed);
        self.count_records(route, n);
    }

    /// Counts `n` records (of any kind) served by `route`.
    pub(crate) fn count_records(&self, route: &'static str, n: u64) {
        *self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route)
            .or_default() += n;
    }

    /// Counts a request to a route the emulator does not serve (`METHOD /path`).
    pub(crate) fn count_unknown(&self, what: String) {
        *self
            .unknown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(what)
            .or_default() += 1;
    }

    /// A data request to `route` (the route as served; `None` when not known)
    /// arrived: counted in, in all and per route, until the guard is dropped.
    pub(crate) fn data_request(&self, route: Option<String>) -> InFlight<'_> {
        let now = self.data_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_data_in_flight.fetch_max(now, Ordering::SeqCst);
        if let Some(route) = &route {
            let mut routes = self.routes_in_flight();
            let (now, max) = routes.entry(route.clone()).or_default();
            *now += 1;
            *max = (*max).max(*now);
        }
        InFlight { state: self, route }
    }

    /// Restarts the in-flight maxima from what is in flight now.
    pub(crate) fn reset_in_flight_peaks(&self) {
        let mut routes = self.routes_in_flight();
        for (now, max) in routes.values_mut() {
            *max = *now;
        }
        self.max_data_in_flight
            .store(self.data_in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    fn routes_in_flight(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u64, u64)>> {
        self.route_in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn count_v3_user_token(&self) {
        self.v3_user_token_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> EmulatorStats {
        EmulatorStats {
            requests: self
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            events: self
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            unknown: self
                .unknown
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
            tokens_issued: self.tokens_issued.load(Ordering::Relaxed),
            events_served: self.events_served.load(Ordering::Relaxed),
            v3_user_token_requests: self.v3_user_token_requests.load(Ordering::Relaxed),
            max_data_in_flight: self.max_data_in_flight.load(Ordering::SeqCst),
            max_in_flight: self
                .routes_in_flight()
                .iter()
                .map(|(k, (_, max))| (k.clone(), *max))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_and_next_k() {
        let f = FaultState::new(FaultOptions {
            rate_limit_every: 3,
            retry_after: Duration::from_millis(1_500),
            server_error_every: 4,
            unauthorized_next: 2,
        });
        let got: Vec<_> = (0..8).map(|_| f.on_request("/x", true)).collect();
        use Injected::*;
        assert_eq!(
            got,
            vec![
                Some(Unauthorized),
                Some(Unauthorized),
                Some(RateLimited { retry_after_s: 2 }),
                Some(ServerError),
                None,
                Some(RateLimited { retry_after_s: 2 }),
                None,
                Some(ServerError),
            ]
        );
        let s = f.snapshot();
        assert_eq!((s.rate_limited, s.server_errors), (2, 2));
        assert_eq!(s.requests_to("/x"), 8);
        f.set(FaultOptions::default());
        assert_eq!(f.on_request("/y", true), None);
        assert_eq!(f.snapshot().total_requests(), 9);
    }

    #[test]
    fn in_flight_peaks_per_route_and_their_reset() {
        let f = FaultState::default();
        let a1 = f.data_request(Some("/a".into()));
        let a2 = f.data_request(Some("/a".into()));
        let b = f.data_request(Some("/b".into()));
        drop(a1);
        let s = f.snapshot();
        assert_eq!(s.max_data_in_flight, 3);
        assert_eq!((s.max_in_flight_to("/a"), s.max_in_flight_to("/b")), (2, 1));
        assert_eq!(s.max_in_flight_to("/c"), 0);
        // From what is in flight now: one of /a, one of /b.
        f.reset_in_flight_peaks();
        let s = f.snapshot();
        assert_eq!(s.max_data_in_flight, 2);
        assert_eq!((s.max_in_flight_to("/a"), s.max_in_flight_to("/b")), (1, 1));
        drop((a2, b));
        let _a3 = f.data_request(Some("/a".into()));
        let s = f.snapshot();
        assert_eq!(s.max_data_in_flight, 2);
        assert_eq!(s.max_in_flight_to("/a"), 1);
    }

    #[test]
    fn unauthorized_spares_unprotected_routes() {
        let f = FaultState::new(FaultOptions {
            unauthorized_next: 1,
            ..FaultOptions::default()
        });
        assert_eq!(f.on_request("/v1/oauth", false), None);
        assert_eq!(
            f.on_request("/v1/customer", true),
            Some(Injected::Unauthorized)
        );
        assert_eq!(f.on_request("/v1/customer", true), None);
    }
}
