//! The adaptive limit of one tenant's concurrent data requests (AIMD).
//!
//! Every request a tenant's [`super::ApiClient`] makes with its access token (the data
//! endpoints: Audit Log, alerts, Sync Log, file events, sessions, and service
//! discovery) holds a [`Permit`] of the tenant's [`Limiter`] while it is sent and its
//! body read; the login does not (it is what the others wait for). At most
//! [`Limiter::limit`] permits are out at once: the tenant's `max_concurrent_requests`
//! (default [`crate::config::DEFAULT_MAX_CONCURRENT_REQUESTS`]) while the API is quiet.
//!
//! A 429 halves the current limit (rounded down, never below 1): multiplicative
//! decrease. Requests sent together are answered together, so a 429 within
//! [`COALESCE`] of the last cut does not cut again. The limit then grows back by one
//! for every [`QUIET_PERIOD`] without a 429 (additive increase), up to the configured
//! maximum. A request held back waits for a permit; the retry of a 429 (after its
//! backoff and `Retry-After`) asks for a new one.
//!
//! The current limit and the requests in flight are the gauges
//! `c42fwd_api_concurrency_limit{tenant}` and `c42fwd_api_requests_in_flight{tenant}`.
//! Time is tokio's clock (paused in tests). Spawns nothing.

use crate::metrics::{label, Metrics};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long the API must answer without a 429 before the limit grows by one.
pub const QUIET_PERIOD: Duration = Duration::from_secs(30);

/// 429s this close after a cut answer requests sent with the one that caused it: they
/// do not cut the limit again.
pub const COALESCE: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Inner {
    limit: usize,
    in_flight: usize,
    /// The last cut, or the last growth step: the quiet period counts from there.
    since: Instant,
    last_cut: Option<Instant>,
}

/// The concurrency limit of one tenant. See the module docs.
pub struct Limiter {
    max: usize,
    inner: Mutex<Inner>,
    released: Notify,
    metrics: Option<(Arc<Metrics>, String)>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Limiter")
            .field("max", &self.max)
            .field("limit", &inner.limit)
            .field("in_flight", &inner.in_flight)
            .finish()
    }
}

/// A request slot; given back when dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    limiter: &'a Limiter,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut inner = self.limiter.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        self.limiter.publish(&inner);
        drop(inner);
        self.limiter.released.notify_waiters();
    }
}

impl Limiter {
    /// A limiter of at most `max` (at least 1) requests at once, starting at `max`.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Limiter {
            max,
            inner: Mutex::new(Inner {
                limit: max,
                in_flight: 0,
                since: Instant::now(),
                last_cut: None,
            }),
            released: Notify::new(),
            metrics: None,
        }
    }

    /// Reports the limit and the requests in flight as the tenant's gauges.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>, tenant: &str) -> Self {
        self.metrics = Some((metrics, tenant.to_string()));
        self.publish(&self.lock());
        self
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The current limit (after the growth the quiet time has earned).
    pub fn limit(&self) -> usize {
        let mut inner = self.lock();
        self.grow(&mut inner);
        inner.limit
    }

    /// Requests holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Waits for a free slot under the current limit.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so that a release between the check and the
            // wait is not missed.
            released.as_mut().enable();
            {
                let mut inner = self.lock();
                self.grow(&mut inner);
                if inner.in_flight < inner.limit {
                    inner.in_flight += 1;
                    self.publish(&inner);
                    return Permit { limiter: self };
                }
            }
            // Someone holds a permit (the limit is at least 1): its release wakes us.
            released.await;
        }
    }

    /// The API answered 429: the limit halves (not below 1), unless it was cut within
    /// [`COALESCE`]. Returns the limit now.
    pub fn rate_limited(&self) -> usize {
        let now = Instant::now();
        let mut inner = self.lock();
        self.grow(&mut inner);
        if inner
            .last_cut
            .is_some_and(|at| now.saturating_duration_since(at) < COALESCE)
        {
            inner.since = now;
            return inner.limit;
        }
        inner.limit = (inner.limit / 2).max(1);
        inner.last_cut = Some(now);
        inner.since = now;
        self.publish(&inner);
        inner.limit
    }

    /// Adds one to the limit for each whole quiet period since the last change.
    fn grow(&self, inner: &mut Inner) {
        if inner.limit >= self.max {
            return;
        }
        let now = Instant::now();
        let quiet = now.saturating_duration_since(inner.since);
        let steps = (quiet.as_nanos() / QUIET_PERIOD.as_nanos()) as usize;
        if steps == 0 {
            return;
        }
        inner.limit = (inner.limit + steps).min(self.max);
        inner.since += QUIET_PERIOD * steps as u32;
        self.publish(inner);
        // A waiter may fit under the new limit.
        self.released.notify_waiters();
    }

    fn publish(&self, inner: &Inner) {
        if let Some((metrics, tenant)) = &self.metrics {
            let l = label("tenant", tenant);
            metrics
                .api_concurrency_limit
                .get_or_create(&l)
                .set(inner.limit as i64);
            metrics
                .api_requests_in_flight
                .get_or_create(&l)
                .set(inner.in_flight as i64);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is a few numbers, always consistent between statements: a panic
        // elsewhere while it was held leaves it usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    #[tokio::test(start_paused = true)]
    async fn at_most_the_limit_is_handed_out() {
        let l = Limiter::new(2);
        let a = l.acquire().await;
        let _b = l.acquire().await;
        assert_eq!(l.in_flight(), 2);
        let mut third = Box::pin(l.acquire());
        assert!((&mut third).now_or_never().is_none(), "a third permit");
        drop(a);
        let _c = third.await;
        assert_eq!(l.in_flight(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_limit_and_quiet_periods_grow_it_back_by_one() {
        let l = Limiter::new(8);
        assert_eq!(l.rate_limited(), 4);
        // Answers to the requests sent with the first one: no second cut.
        tokio::time::advance(COALESCE / 2).await;
        assert_eq!(l.rate_limited(), 4);
        tokio::time::advance(COALESCE).await;
        assert_eq!(l.rate_limited(), 2);
        tokio::time::advance(COALESCE).await;
        assert_eq!(l.rate_limited(), 1);
        tokio::time::advance(COALESCE).await;
        assert_eq!(l.rate_limited(), 1, "never below one");
        tokio::time::advance(QUIET_PERIOD - Duration::from_millis(1)).await;
        assert_eq!(l.limit(), 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(l.limit(), 2);
        tokio::time::advance(QUIET_PERIOD * 3).await;
        assert_eq!(l.limit(), 5);
        tokio::time::advance(QUIET_PERIOD * 100).await;
        assert_eq!(l.limit(), 8, "never above the maximum");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_holds_back_requests_until_permits_come_back() {
        let l = Limiter::new(4);
        let held: Vec<_> = [l.acquire().await, l.acquire().await, l.acquire().await]
            .into_iter()
            .collect();
        assert_eq!(l.rate_limited(), 2);
        let mut next = Box::pin(l.acquire());
        assert!((&mut next).now_or_never().is_none());
        let mut held = held;
        held.pop();
        assert!((&mut next).now_or_never().is_none(), "2 of 2 still out");
        held.pop();
        let _p = next.await;
        assert_eq!(l.in_flight(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_a_permit_when_the_limit_grows_back() {
        let l = Limiter::new(2);
        l.rate_limited();
        let _a = l.acquire().await;
        let waiter = l.acquire();
        tokio::pin!(waiter);
        assert!((&mut waiter).now_or_never().is_none());
        // The holder keeps its permit: only the growth after a quiet period lets the
        // waiter in.
        tokio::time::advance(QUIET_PERIOD).await;
        assert_eq!(l.limit(), 2);
        let _b = waiter.await;
        assert_eq!(l.in_flight(), 2);
    }

    #[test]
    fn gauges_follow_the_limit_and_the_permits() {
        let metrics = Arc::new(Metrics::new());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = Limiter::new(4).with_metrics(metrics.clone(), "acme");
            let _p = l.acquire().await;
            l.rate_limited();
            let text = metrics.render();
            assert!(
                text.contains("c42fwd_api_concurrency_limit{tenant=\"acme\"} 2"),
                "{text}"
            );
            assert!(
                text.contains("c42fwd_api_requests_in_flight{tenant=\"acme\"} 1"),
                "{text}"
            );
        });
    }
}
