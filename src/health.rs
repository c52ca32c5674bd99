//! Readiness: what `GET /ready` answers, from what the sources and sinks report.
//!
//! `/health` is liveness only: the process and its runtime answer a request (always
//! `200 ok`). `/ready` says whether the daemon does its job. It answers `503` with a
//! JSON body naming every failing source and sink and why, or `200` when none fails:
//!
//! - a **source** fails when its last successful API page is older than
//!   `max(3 x poll_interval, poll_interval + ready_timeout)` (counted from the start
//!   when it has read none yet), or when its last run ended with an error and it has
//!   read no page since (it restarts from its checkpoint);
//! - a **sink** fails when it is stalled ([`crate::sinks`]: a fault that needs an
//!   operator, [`crate::metrics::SinkHealth`]), or when it holds batches and has
//!   delivered none for `ready_timeout` (counted from when it was handed work, or its
//!   last delivery, whichever is later). An idle sink (nothing queued) is ready.
//!
//! `ready_timeout` is `metrics.ready_timeout` (default 60 s). Time is tokio's clock, so
//! the rules run on a paused clock in tests.
//!
//! Sinks report deliveries through their acknowledgement tokens: the pipeline hands
//! each batch's token to [`SinkProgress::track`] as the batch enters the sink, and the
//! token tells it when it is resolved ([`crate::ack::AckObserver`]). Sources report
//! each page read ([`crate::metrics::Metrics::source_polled`]) and their failures.

use crate::ack::{AckObserver, AckToken};
use crate::metrics::{label, Metrics};
use prometheus_client::metrics::gauge::Gauge;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The default `ready_timeout`, until the pipeline sets the configured one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a source may go without a successful page before it counts as failing.
pub fn source_bound(poll_interval: Duration, ready_timeout: Duration) -> Duration {
    poll_interval
        .saturating_mul(3)
        .max(poll_interval.saturating_add(ready_timeout))
}

#[derive(Debug)]
struct SourceState {
    poll_interval: Duration,
    bound: Duration,
    /// The last successful page, or the registration when none yet.
    last_ok: Instant,
    polled: bool,
    /// The error of the last run, while no page was read since.
    failure: Option<String>,
}

/// The readiness state of every source and sink of the running pipeline.
#[derive(Debug)]
pub struct Readiness {
    timeout: Mutex<Duration>,
    sources: Mutex<BTreeMap<String, SourceState>>,
    sinks: Mutex<BTreeMap<String, Arc<SinkProgress>>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            timeout: Mutex::new(DEFAULT_TIMEOUT),
            sources: Mutex::default(),
            sinks: Mutex::default(),
        }
    }
}

/// One failing source or sink, as `/ready` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// `no_recent_poll`, `failed`, `not_delivering`, `stalled`.
    pub reason: &'static str,
    pub detail: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

impl Readiness {
    /// Sets `ready_timeout` (the pipeline: at start, and on a reload, when the bound of
    /// every registered source is computed again).
    pub fn set_timeout(&self, timeout: Duration) {
        *lock(&self.timeout) = timeout;
        for s in lock(&self.sources).values_mut() {
            s.bound = source_bound(s.poll_interval, timeout);
        }
    }

    /// Source `name` is no longer part of the pipeline (a reload removed it).
    pub fn forget_source(&self, name: &str) {
        lock(&self.sources).remove(name);
    }

    /// Sink `name` is no longer part of the pipeline, or its run was stopped to be
    /// started again with other settings (a reload): its progress starts over.
    pub fn forget_sink(&self, name: &str) {
        lock(&self.sinks).remove(name);
    }

    fn timeout(&self) -> Duration {
        *lock(&self.timeout)
    }

    /// A source of the running pipeline, polling every `poll_interval`.
    pub fn register_source(&self, name: &str, poll_interval: Duration) {
        let bound = source_bound(poll_interval, self.timeout());
        lock(&self.sources).insert(
            name.to_string(),
            SourceState {
                poll_interval,
                bound,
                last_ok: Instant::now(),
                polled: false,
                failure: None,
            },
        );
    }

    /// The source read a page from the API.
    pub fn source_polled(&self, name: &str) {
        if let Some(s) = lock(&self.sources).get_mut(name) {
            s.last_ok = Instant::now();
            s.polled = true;
            s.failure = None;
        }
    }

    /// A run of the source ended with `error`; it restarts.
    pub fn source_failed(&self, name: &str, error: &str) {
        if let Some(s) = lock(&self.sources).get_mut(name) {
            s.failure = Some(error.to_string());
        }
    }

    /// The progress of sink `name` (registered on first use), with its
    /// `c42fwd_sink_last_delivery_seconds` gauge from `metrics`.
    pub fn sink(&self, name: &str, metrics: &Metrics) -> Arc<SinkProgress> {
        lock(&self.sinks)
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(SinkProgress {
                    state: Mutex::new(SinkState::default()),
                    last_delivery: metrics
                        .sink_last_delivery
                        .get_or_create(&label("sink", name))
                        .clone(),
                    pending: metrics
                        .sink_pending
                        .get_or_create(&label("sink", name))
                        .clone(),
                })
            })
            .clone()
    }

    /// Every failing source and sink at `now`; `stalled`: the stalled sinks as
    /// [`crate::metrics::SinkHealth`] has them.
    pub fn failing(&self, now: Instant, stalled: &[crate::metrics::Stalled]) -> Vec<Failing> {
        let mut out = Vec::new();
        for (name, s) in lock(&self.sources).iter() {
            if let Some(e) = &s.failure {
                out.push(Failing {
                    source: Some(name.clone()),
                    sink: None,
                    reason: "failed",
                    detail: format!("its last run failed and it restarts: {e}"),
                });
                continue;
            }
            let quiet = now.saturating_duration_since(s.last_ok);
            if quiet > s.bound {
                let detail = if s.polled {
                    format!(
                        "last successful poll {} ago, more than {}",
                        secs(quiet),
                        secs(s.bound)
                    )
                } else {
                    format!(
                        "no successful poll in the {} since it started, more than {}",
                        secs(quiet),
                        secs(s.bound)
                    )
                };
                out.push(Failing {
                    source: Some(name.clone()),
                    sink: None,
                    reason: "no_recent_poll",
                    detail,
                });
            }
        }
        let timeout = self.timeout();
        for (name, p) in lock(&self.sinks).iter() {
            let st = lock(&p.state);
            if let Some(busy) = st.busy_since {
                let since = st.last_delivery.map_or(busy, |d| d.max(busy));
                let quiet = now.saturating_duration_since(since);
                if quiet > timeout {
                    out.push(Failing {
                        source: None,
                        sink: Some(name.clone()),
                        reason: "not_delivering",
                        detail: format!(
                            "holds {} batch(es) and delivered none for {}, more than {}",
                            st.outstanding,
                            secs(quiet),
                            secs(timeout)
                        ),
                    });
                }
            }
        }
        for s in stalled {
            out.push(Failing {
                source: None,
                sink: Some(s.sink.clone()),
                reason: "stalled",
                detail: format!("stalled since {} ({}): {}", s.since, s.reason, s.detail),
            });
        }
        out
    }

    /// The `/ready` answer at `now`: 200 and `{"status":"ready","failing":[]}`, or 503
    /// and `{"status":"not_ready","failing":[...]}`.
    pub fn report(&self, now: Instant, stalled: &[crate::metrics::Stalled]) -> (u16, String) {
        let failing = self.failing(now, stalled);
        let (status, word) = if failing.is_empty() {
            (200, "ready")
        } else {
            (503, "not_ready")
        };
        let body = serde_json::json!({ "status": word, "failing": failing });
        (status, format!("{body}\n"))
    }
}

#[derive(Debug, Default)]
struct SinkState {
    /// Batches handed to the sink and not resolved yet.
    outstanding: usize,
    /// When `outstanding` last went from 0 to 1; `None` while idle.
    busy_since: Option<Instant>,
    last_delivery: Option<Instant>,
}

/// One sink's deliveries, for `/ready`, `c42fwd_sink_last_delivery_seconds` and
/// `c42fwd_sink_pending_batches`.
#[derive(Debug)]
pub struct SinkProgress {
    state: Mutex<SinkState>,
    last_delivery: Gauge<f64, AtomicU64>,
    pending: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl SinkProgress {
    /// A batch enters the sink with `token`: it counts as held until the token is
    /// resolved (or dropped).
    pub fn track(self: &Arc<Self>, token: AckToken) -> AckToken {
        {
            let mut st = lock(&self.state);
            if st.outstanding == 0 {
                st.busy_since = Some(Instant::now());
            }
            st.outstanding += 1;
            self.pending.set(st.outstanding as i64);
        }
        token.observed_by(self.clone())
    }
}

impl AckObserver for SinkProgress {
    fn resolved(&self, delivered: bool) {
        let mut st = lock(&self.state);
        st.outstanding = st.outstanding.saturating_sub(1);
        self.pending.set(st.outstanding as i64);
        if st.outstanding == 0 {
            st.busy_since = None;
        }
        if delivered {
            st.last_delivery = Some(Instant::now());
            drop(st);
            self.last_delivery.set(crate::metrics::unix_now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{ack_set, Outcome};

    const T: Duration = Duration::from_secs(60);

    fn names(f: &[Failing]) -> Vec<(String, &'static str)> {
        f.iter()
            .map(|f| {
                (
                    f.source.clone().or(f.sink.clone()).unwrap_or_default(),
                    f.reason,
                )
            })
            .collect()
    }

    #[test]
    fn the_source_bound_is_three_intervals_or_one_plus_the_timeout() {
        assert_eq!(
            source_bound(Duration::from_secs(30), T),
            Duration::from_secs(90)
        );
        assert_eq!(
            source_bound(Duration::from_secs(600), T),
            Duration::from_secs(1800)
        );
        assert_eq!(
            source_bound(Duration::from_millis(200), Duration::from_secs(2)),
            Duration::from_millis(2200)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_is_ready_while_it_polls_within_its_bound() {
        let r = Readiness::default();
        r.set_timeout(T);
        r.register_source("audit", Duration::from_secs(30));
        assert!(r.failing(Instant::now(), &[]).is_empty(), "just started");
        tokio::time::advance(Duration::from_secs(90)).await;
        assert!(r.failing(Instant::now(), &[]).is_empty(), "at the bound");
        tokio::time::advance(Duration::from_secs(1)).await;
        let f = r.failing(Instant::now(), &[]);
        assert_eq!(names(&f), vec![("audit".into(), "no_recent_poll")]);
        assert!(f[0].detail.contains("since it started"), "{}", f[0].detail);
        r.source_polled("audit");
        assert!(r.failing(Instant::now(), &[]).is_empty());
        tokio::time::advance(Duration::from_secs(91)).await;
        let f = r.failing(Instant::now(), &[]);
        assert!(f[0].detail.starts_with("last successful poll 1m 31s ago"));
        r.source_polled("audit");
        // A failed run shows at once, until a page is read again.
        r.source_failed("audit", "checkpoint in the future");
        let (status, body) = r.report(Instant::now(), &[]);
        assert_eq!(status, 503);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "not_ready");
        assert_eq!(v["failing"][0]["source"], "audit");
        assert_eq!(v["failing"][0]["reason"], "failed");
        assert!(v["failing"][0].get("sink").is_none());
        r.source_polled("audit");
        assert_eq!(
            r.report(Instant::now(), &[]),
            (200, "{\"failing\":[],\"status\":\"ready\"}\n".to_string())
        );
        // Sources not registered (or not yet) are not the pipeline's.
        r.source_polled("other");
        assert!(r.failing(Instant::now(), &[]).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_sink_fails_only_while_it_holds_batches_it_does_not_deliver() {
        let m = Metrics::new();
        let r = Readiness::default();
        r.set_timeout(T);
        let p = r.sink("siem", &m);
        // Idle for ever: ready.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(r.failing(Instant::now(), &[]).is_empty());
        let (mut tokens, w1) = ack_set(1);
        let t1 = p.track(tokens.pop().unwrap());
        let (mut tokens, _w2) = ack_set(1);
        let t2 = p.track(tokens.pop().unwrap());
        tokio::time::advance(T).await;
        assert!(r.failing(Instant::now(), &[]).is_empty(), "at the timeout");
        assert!(
            m.render()
                .contains("c42fwd_sink_pending_batches{sink=\"siem\"} 2\n"),
            "two batches held"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let f = r.failing(Instant::now(), &[]);
        assert_eq!(names(&f), vec![("siem".into(), "not_delivering")]);
        assert!(
            f[0].detail.starts_with("holds 2 batch(es)"),
            "{}",
            f[0].detail
        );
        // One delivery: ready again, for another timeout, with one batch still held.
        t1.delivered();
        assert_eq!(w1.wait().await, Outcome::Delivered);
        let text = m.render();
        let at: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("c42fwd_sink_last_delivery_seconds{sink=\"siem\"} "))
            .and_then(|v| v.parse().ok())
            .expect("the gauge is rendered");
        assert!(at > 1.7e9, "unix seconds: {at}");
        assert!(r.failing(Instant::now(), &[]).is_empty());
        tokio::time::advance(T + Duration::from_secs(1)).await;
        assert_eq!(r.failing(Instant::now(), &[]).len(), 1);
        // The last batch given up (dropped): idle, ready.
        drop(t2);
        assert!(r.failing(Instant::now(), &[]).is_empty());
        assert!(m
            .render()
            .contains("c42fwd_sink_pending_batches{sink=\"siem\"} 0\n"));
        // A stall is a failure whatever the queue.
        let stalled = crate::metrics::Stalled {
            sink: "siem".into(),
            reason: "http_403",
            detail: "http 403 Forbidden".into(),
            since: "2026-01-31T10:00:00Z".into(),
        };
        let f = r.failing(Instant::now(), &[stalled]);
        assert_eq!(names(&f), vec![("siem".into(), "stalled")]);
        assert!(f[0].detail.contains("http_403"), "{}", f[0].detail);
    }
}
