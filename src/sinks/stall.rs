//! The stalled state of one sink: a fault that waiting alone does not fix (the receiver
//! refuses the credentials, the URL or method is wrong, the dead-letter file is full).
//!
//! A stalled sink keeps its batches and retries with the shared backoff, so its route
//! waits and nothing is committed or dead-lettered; it resumes by itself once the fault
//! is fixed. What [`Stall`] owns is how that shows: an ERROR on the first failure and
//! then once every [`LOG_EVERY`] while it lasts (not once per retry), the gauge
//! `c42fwd_sink_stalled{sink,reason}`, the counter `c42fwd_sink_stalls_total`, the
//! entry in `/ready` ([`crate::metrics::SinkHealth`]), and an INFO when it is over.
//!
//! Not here: deciding what is a stall (the sinks' classification) and the delays
//! (`crate::retry`).

use crate::metrics::{Labels, Metrics};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often a stall that goes on is logged again.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(60);

struct Current {
    reason: &'static str,
    since: Instant,
    logged: Instant,
    failures: u64,
}

/// One sink's stall state (one per cause that the sink reports on its own).
pub(crate) struct Stall {
    metrics: Arc<Metrics>,
    sink: String,
    current: Option<Current>,
}

impl Stall {
    pub(crate) fn new(metrics: &Arc<Metrics>, sink: &str) -> Self {
        Stall {
            metrics: metrics.clone(),
            sink: sink.to_string(),
            current: None,
        }
    }

    fn labels(&self, reason: &'static str) -> Labels {
        vec![("sink", self.sink.clone()), ("reason", reason.to_string())]
    }

    pub(crate) fn is_stalled(&self) -> bool {
        self.current.is_some()
    }

    /// One more failed attempt for `reason` (a fixed label string). `detail` is the
    /// failure as it may be logged (already redacted); `hint` tells the operator what to
    /// fix. Logs an ERROR when the stall begins, when its reason changes, and then once
    /// every [`LOG_EVERY`].
    pub(crate) fn failed(&mut self, reason: &'static str, detail: &str, hint: &str) {
        self.failed_at(Instant::now(), reason, detail, hint);
    }

    /// [`failed`](Self::failed) at `now`; whether it logged the ERROR.
    fn failed_at(&mut self, now: Instant, reason: &'static str, detail: &str, hint: &str) -> bool {
        let changed = self.current.as_ref().map(|c| c.reason) != Some(reason);
        if changed {
            if let Some(old) = self.current.take() {
                self.end(old.reason);
            }
            self.metrics
                .sink_stalled
                .get_or_create(&self.labels(reason))
                .set(1);
            self.metrics
                .sink_stalls
                .get_or_create(&self.labels(reason))
                .inc();
            self.current = Some(Current {
                reason,
                since: now,
                logged: now,
                failures: 0,
            });
        }
        self.metrics.health.set_stalled(&self.sink, reason, detail);
        let Some(c) = self.current.as_mut() else {
            return false;
        };
        c.failures += 1;
        if changed || now.duration_since(c.logged) >= LOG_EVERY {
            c.logged = now;
            tracing::error!(
                sink = %self.sink,
                reason,
                error = detail,
                stalled_for = ?now.duration_since(c.since),
                failures = c.failures,
                "the sink is stalled: {hint}; its batches wait, nothing of them is committed, \
                 and it tries again with backoff until this is fixed"
            );
            true
        } else {
            tracing::debug!(sink = %self.sink, reason, error = detail, "still stalled");
            false
        }
    }

    /// The sink delivers again: clears the state and logs INFO, if it was stalled.
    pub(crate) fn resumed(&mut self) {
        if let Some(c) = self.current.take() {
            self.end(c.reason);
            tracing::info!(
                sink = %self.sink,
                reason = c.reason,
                stalled_for = ?Instant::now().duration_since(c.since),
                failures = c.failures,
                "the sink is no longer stalled; delivery goes on"
            );
        }
    }

    fn end(&self, reason: &'static str) {
        self.metrics
            .sink_stalled
            .get_or_create(&self.labels(reason))
            .set(0);
        self.metrics.health.clear(&self.sink, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(m: &Metrics, reason: &str) -> i64 {
        m.sink_stalled
            .get_or_create(&vec![("sink", "s".into()), ("reason", reason.into())])
            .get()
    }

    #[test]
    fn a_stall_shows_until_it_is_over_and_logs_once_a_minute() {
        let m = Arc::new(Metrics::new());
        let mut s = Stall::new(&m, "s");
        s.resumed();
        assert!(!s.is_stalled());
        let t0 = Instant::now();
        let fail = |s: &mut Stall, after: Duration| {
            s.failed_at(
                t0 + after,
                "http_403",
                "http 403 Forbidden",
                "fix the token",
            )
        };
        assert!(fail(&mut s, Duration::ZERO), "the first failure logs");
        assert!(!fail(&mut s, Duration::from_secs(1)));
        assert!(!fail(&mut s, Duration::from_secs(59)));
        assert!(fail(&mut s, LOG_EVERY), "a minute later it logs again");
        assert!(!fail(&mut s, LOG_EVERY + Duration::from_secs(30)));
        assert!(s.is_stalled());
        assert_eq!(gauge(&m, "http_403"), 1);
        assert_eq!(m.health.stalled().len(), 1);
        assert_eq!(
            m.sink_stalls
                .get_or_create(&vec![("sink", "s".into()), ("reason", "http_403".into())])
                .get(),
            1,
            "one stall, however many failures"
        );
        // Another cause: the old one is over, the new one shows.
        s.failed("http_401", "http 401 Unauthorized", "fix the token");
        assert_eq!(gauge(&m, "http_403"), 0);
        assert_eq!(gauge(&m, "http_401"), 1);
        assert_eq!(m.health.stalled()[0].reason, "http_401");
        s.resumed();
        assert!(!s.is_stalled());
        assert_eq!(gauge(&m, "http_401"), 0);
        assert!(m.health.stalled().is_empty());
    }
}
