//! The daemon's counters and gauges, with stable names, exposed in Prometheus text format.
//!
//! One [`Metrics`] value is created by the pipeline and shared (`Arc`) with every
//! component. Components only increment; they never read metrics to make decisions.
//! Label values are configured names (source, sink, tenant) and fixed reason strings:
//! never event content, never secrets.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

pub type Labels = Vec<(&'static str, String)>;
type CounterFamily = Family<Labels, Counter>;
type GaugeFamily = Family<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>;
type FloatGaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;

/// All metrics of one c42fwd process. Field docs give the metric name and labels.
pub struct Metrics {
    registry: Registry,
    /// `c42fwd_source_events_total{source}`: events read from the API and forwarded.
    pub source_events: CounterFamily,
    /// `c42fwd_source_duplicates_skipped_total{source}`: events seen again inside the
    /// lag window and not forwarded a second time.
    pub source_duplicates_skipped: CounterFamily,
    /// `c42fwd_source_batches_committed_total{source}`.
    pub source_batches_committed: CounterFamily,
    /// `c42fwd_source_watermark_seconds{source}`: the committed watermark, Unix seconds.
    pub source_watermark: FloatGaugeFamily,
    /// `c42fwd_source_position_seconds{source}`: the watermark the source has read up to
    /// (sent, maybe not yet acknowledged and committed), Unix seconds.
    pub source_position: FloatGaugeFamily,
    /// `c42fwd_source_behind_seconds{source}`: how far the position is behind the lag
    /// window (`now - lag - position`, at least 0), computed at each scrape.
    source_behind: FloatGaugeFamily,
    /// `c42fwd_source_info{source,kind,tenant}`: always 1 for each running source.
    source_info: GaugeFamily,
    /// `c42fwd_source_window_splits_total{source}`: query windows split because the
    /// result count exceeded the per-query limit.
    pub source_window_splits: CounterFamily,
    /// `c42fwd_source_bad_timestamps_total{source}`: events whose time could not be
    /// parsed, forwarded with the start of their query window as their time.
    pub source_bad_timestamps: CounterFamily,
    /// `c42fwd_source_reconciled_total{source}`: events found missing when a closed window
    /// was compared with the API (they appeared after the configured lag), forwarded then.
    pub source_reconciled: CounterFamily,
    /// `c42fwd_source_details_missing_total{source}`: alerts listed by `query-alerts`
    /// whose details `query-details` did not return (deleted in between); their summary
    /// is forwarded instead.
    pub source_details_missing: CounterFamily,
    /// `c42fwd_source_bad_observation_data_total{source}`: alert observations whose
    /// `data` string is not JSON; forwarded as the string it was.
    pub source_bad_observation_data: CounterFamily,
    /// `c42fwd_source_out_of_order_total{source,reason}`: events the API listed out of
    /// time order (`out_of_order`), later than the poll time plus a tolerance
    /// (`future`), or after the query window (`after_query_end`). They are forwarded;
    /// they never move the watermark.
    pub source_out_of_order: CounterFamily,
    /// `c42fwd_source_short_pages_total{source}`: short pages whose response count said
    /// more results exist; each one is asked again.
    pub source_short_pages: CounterFamily,
    /// `c42fwd_source_api_records_total{source}`: records the API served to the source's
    /// reads (polls, reconciliation re-reads, exports of an instant), forwarded or not;
    /// over `c42fwd_source_events_total` it is the source's read amplification.
    pub source_api_records: CounterFamily,
    /// `c42fwd_source_reread_skipped_total{source}`: polls that did not read the lag
    /// window again because the API's count proved it complete.
    pub source_reread_skipped: CounterFamily,
    /// `c42fwd_source_reread_total{source,reason}`: polls of a source that can skip the
    /// re-read that read the lag window again all the same: `count_differs` (the API
    /// counts another number of events there than were forwarded), `unverified` (the
    /// previous poll was not a clean read, or was made before a restart), `no_count`
    /// (the API has no count), `count_error` (the count request failed).
    pub source_reread: CounterFamily,
    /// `c42fwd_api_requests_total{tenant,endpoint,status}`.
    pub api_requests: CounterFamily,
    /// `c42fwd_api_responses_cut_total{tenant,endpoint,reason}`: response bodies the
    /// client stopped reading: `records` (more records than asked for), `size` (over
    /// the tenant's `max_response_bytes`), `error_body` (a non-2xx body past its first
    /// KiBs).
    pub api_responses_cut: CounterFamily,
    /// `c42fwd_api_retries_total{tenant,reason}`: 429, 5xx, timeout, connect, auth (a
    /// 401 answered by logging in again), auth_scheme (the legacy alert service tried
    /// with `v3_user_token`).
    pub api_retries: CounterFamily,
    /// `c42fwd_api_token_refreshes_total{tenant}`.
    pub api_token_refreshes: CounterFamily,
    /// `c42fwd_api_clock_offset_seconds{tenant}`: the API's clock minus this host's, as
    /// estimated from the responses' `Date` headers (the lower bound; see
    /// [`crate::api::clock`]). Query windows follow the API's clock.
    pub api_clock_offset: FloatGaugeFamily,
    /// `c42fwd_api_concurrency_limit{tenant}`: how many data requests the tenant may
    /// have in flight now (its `max_concurrent_requests`, halved by 429s and grown back;
    /// [`crate::api::limiter`]).
    pub api_concurrency_limit: GaugeFamily,
    /// `c42fwd_api_requests_in_flight{tenant}`: data requests in flight now.
    pub api_requests_in_flight: GaugeFamily,
    /// `c42fwd_sink_events_total{sink}`: records the sink delivered.
    pub sink_events: CounterFamily,
    /// `c42fwd_sink_bytes_total{sink}`.
    pub sink_bytes: CounterFamily,
    /// `c42fwd_sink_errors_total{sink,kind}`.
    pub sink_errors: CounterFamily,
    /// `c42fwd_sink_reconnects_total{sink}`.
    pub sink_reconnects: CounterFamily,
    /// `c42fwd_sink_resent_total{sink}`: records sent again after a broken connection.
    pub sink_resent: CounterFamily,
    /// `c42fwd_sink_discarded_total{sink,reason}`: records that went to the dead-letter
    /// file or were dropped by an explicit policy.
    pub sink_discarded: CounterFamily,
    /// `c42fwd_sink_truncated_total{sink}`: records cut to fit the transport.
    pub sink_truncated: CounterFamily,
    /// `c42fwd_sink_queue_batches{sink}`: batches waiting in the sink's queue.
    pub sink_queue: GaugeFamily,
    /// `c42fwd_sink_pending_batches{sink}`: batches handed to the sink and not settled
    /// yet (queued, being written, or waiting for the receiver's acknowledgement).
    pub sink_pending: GaugeFamily,
    /// `c42fwd_sink_hec_acks_pending{sink}`: HEC requests accepted by Splunk whose
    /// indexer acknowledgement has not come yet (their batches are not Delivered yet).
    pub sink_hec_acks_pending: GaugeFamily,
    /// `c42fwd_task_panics_total{task}`: panics caught in a supervised task
    /// (`source:NAME`, `sink:NAME`, `metrics`); sources and sinks are restarted.
    pub task_panics: CounterFamily,
    /// `c42fwd_task_failures_total{task}`: runs of a supervised task that ended with an
    /// error (a source the API refused, a batch not delivered); the task is restarted.
    pub task_failures: CounterFamily,
    /// `c42fwd_sink_stalled{sink,reason}`: 1 while the sink holds its route back for a
    /// fault that waiting alone does not fix (credentials refused, wrong URL, the
    /// dead-letter file full), 0 once it delivers again.
    pub sink_stalled: GaugeFamily,
    /// `c42fwd_sink_stalls_total{sink,reason}`: times a sink entered that state.
    pub sink_stalls: CounterFamily,
    /// `c42fwd_sink_request_splits_total{sink}`: requests the receiver refused as bad
    /// data, split to find the records it refused.
    pub sink_request_splits: CounterFamily,
    /// `c42fwd_sink_dead_letter_bytes{sink}`: the size of the sink's dead-letter file.
    pub sink_dead_letter_bytes: GaugeFamily,
    /// `c42fwd_task_restarts_total{task}`: times a supervised task was started again
    /// after it failed or panicked.
    pub task_restarts: CounterFamily,
    /// `c42fwd_source_last_poll_seconds{source}`: when the source last read a page from
    /// the API successfully, Unix seconds.
    pub source_last_poll: FloatGaugeFamily,
    /// `c42fwd_source_last_commit_seconds{source}`: when the source last saved its
    /// checkpoint, Unix seconds.
    pub source_last_commit: FloatGaugeFamily,
    /// `c42fwd_sink_last_delivery_seconds{sink}`: when the sink last delivered a batch,
    /// Unix seconds.
    pub sink_last_delivery: FloatGaugeFamily,
    /// `c42fwd_config_reloads_total{result}`: reloads asked for (SIGHUP), by result:
    /// `ok` (applied), `invalid` (refused; the running configuration stays).
    pub config_reloads: CounterFamily,
    /// `c42fwd_config_last_reload_seconds`: when the configuration in effect was last
    /// loaded successfully (at start, then at every applied reload), Unix seconds.
    pub config_last_reload: Gauge<f64, AtomicU64>,
    /// `c42fwd_config_restart_pending`: 1 while the file changes a setting that only a
    /// restart applies (`state_dir`, `metrics.listen`), 0 otherwise.
    pub config_restart_pending: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// `c42fwd_build_info{version}`: always 1; the version is the label.
    build_info: GaugeFamily,
    /// `c42fwd_start_time_seconds`: when this process started, Unix seconds.
    start_time: Gauge<f64, AtomicU64>,
    /// `c42fwd_uptime_seconds`: how long this process has run, set at every scrape.
    uptime: Gauge<f64, AtomicU64>,
    started: tokio::time::Instant,
    /// The running sources: their lag (for `c42fwd_source_behind_seconds`) and the
    /// labels of their `c42fwd_source_info`.
    sources: Mutex<BTreeMap<String, RunningSource>>,
    /// The stalled sinks, and why (part of `/ready`).
    pub health: SinkHealth,
    /// What `/ready` reports ([`crate::health`]).
    pub ready: crate::health::Readiness,
}

/// What the metrics keep of a running source.
struct RunningSource {
    lag: f64,
    info: Labels,
}

/// Now, in Unix seconds (with fractions), for the time gauges.
pub fn unix_now() -> f64 {
    unix_seconds(chrono::Utc::now())
}

/// `t` in Unix seconds (with fractions).
pub fn unix_seconds(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
}

/// Why a sink is stalled, as `/ready` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stalled {
    pub sink: String,
    /// The `reason` label of `c42fwd_sink_stalled`.
    pub reason: &'static str,
    /// The last failure, as logged (no secrets: callers pass redacted text).
    pub detail: String,
    /// RFC 3339, when the stall began.
    pub since: String,
}

/// The stalled sinks, set and cleared by the sinks themselves and read by `/ready`.
#[derive(Debug, Default)]
pub struct SinkHealth {
    stalled: Mutex<BTreeMap<(String, &'static str), Stalled>>,
}

impl SinkHealth {
    /// Records (or updates the detail of) a stall of `sink` for `reason`.
    pub fn set_stalled(&self, sink: &str, reason: &'static str, detail: &str) {
        let mut m = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((sink.to_string(), reason))
            .and_modify(|s| s.detail = detail.to_string())
            .or_insert_with(|| Stalled {
                sink: sink.to_string(),
                reason,
                detail: detail.to_string(),
                since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
    }

    /// The stall of `sink` for `reason` is over.
    pub fn clear(&self, sink: &str, reason: &'static str) {
        let mut m = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&(sink.to_string(), reason));
    }

    /// Every stall of `sink` is over (the sink was stopped: a reload removed it or
    /// starts it again); the reasons it was stalled for.
    pub fn forget(&self, sink: &str) -> Vec<&'static str> {
        let mut m = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        let reasons: Vec<&'static str> = m
            .keys()
            .filter(|(s, _)| s == sink)
            .map(|(_, r)| *r)
            .collect();
        for r in &reasons {
            m.remove(&(sink.to_string(), *r));
        }
        reasons
    }

    /// Every current stall, by sink name.
    pub fn stalled(&self) -> Vec<Stalled> {
        let m = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        m.values().cloned().collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("c42fwd");
        macro_rules! reg {
            ($name:literal, $help:literal, $t:ty) => {{
                let f = <$t>::default();
                registry.register($name, $help, f.clone());
                f
            }};
        }
        let m = Metrics {
            source_events: reg!("source_events", "Events read and forwarded", CounterFamily),
            source_duplicates_skipped: reg!(
                "source_duplicates_skipped",
                "Events seen again inside the lag window, not forwarded twice",
                CounterFamily
            ),
            source_batches_committed: reg!(
                "source_batches_committed",
                "Batches whose checkpoint was committed",
                CounterFamily
            ),
            source_watermark: reg!(
                "source_watermark_seconds",
                "Committed watermark (Unix seconds)",
                FloatGaugeFamily
            ),
            source_position: reg!(
                "source_position_seconds",
                "Watermark the source has read up to, sent but maybe not yet committed (Unix seconds)",
                FloatGaugeFamily
            ),
            source_behind: reg!(
                "source_behind_seconds",
                "How far the source's position is behind the lag window (now - lag - position)",
                FloatGaugeFamily
            ),
            source_info: reg!(
                "source_info",
                "Always 1 for each running source; its kind and tenant are labels",
                GaugeFamily
            ),
            source_window_splits: reg!(
                "source_window_splits",
                "Query windows split because of the per-query result limit",
                CounterFamily
            ),
            source_bad_timestamps: reg!(
                "source_bad_timestamps",
                "Events forwarded with an unparsable timestamp",
                CounterFamily
            ),
            source_reconciled: reg!(
                "source_reconciled",
                "Events forwarded late by reconciliation: they appeared after the configured lag",
                CounterFamily
            ),
            source_details_missing: reg!(
                "source_details_missing",
                "Alerts whose details were missing, forwarded as their summary",
                CounterFamily
            ),
            source_bad_observation_data: reg!(
                "source_bad_observation_data",
                "Alert observations whose data is not JSON, forwarded as a string",
                CounterFamily
            ),
            source_out_of_order: reg!(
                "source_out_of_order",
                "Events listed out of time order, from the future or after the query window",
                CounterFamily
            ),
            source_short_pages: reg!(
                "source_short_pages",
                "Short pages contradicted by their response count, asked again",
                CounterFamily
            ),
            source_api_records: reg!(
                "source_api_records",
                "Records the API served to the source's reads, forwarded or not",
                CounterFamily
            ),
            source_reread_skipped: reg!(
                "source_reread_skipped",
                "Polls that did not read the lag window again: the API's count proved it complete",
                CounterFamily
            ),
            source_reread: reg!(
                "source_reread",
                "Polls that read the lag window again, by reason",
                CounterFamily
            ),
            api_requests: reg!("api_requests", "Code42 API requests", CounterFamily),
            api_responses_cut: reg!(
                "api_responses_cut",
                "Code42 API response bodies cut off (too many records, too large, error body)",
                CounterFamily
            ),
            api_retries: reg!("api_retries", "Code42 API requests retried", CounterFamily),
            api_token_refreshes: reg!(
                "api_token_refreshes",
                "Access tokens obtained",
                CounterFamily
            ),
            api_clock_offset: reg!(
                "api_clock_offset_seconds",
                "The API's clock minus this host's, from the responses' Date headers",
                FloatGaugeFamily
            ),
            api_concurrency_limit: reg!(
                "api_concurrency_limit",
                "Data requests the tenant may have in flight now (halved by 429s)",
                GaugeFamily
            ),
            api_requests_in_flight: reg!(
                "api_requests_in_flight",
                "Data requests in flight to the tenant's API",
                GaugeFamily
            ),
            sink_events: reg!("sink_events", "Records delivered by a sink", CounterFamily),
            sink_bytes: reg!("sink_bytes", "Bytes written by a sink", CounterFamily),
            sink_errors: reg!("sink_errors", "Sink errors", CounterFamily),
            sink_reconnects: reg!("sink_reconnects", "Sink reconnects", CounterFamily),
            sink_resent: reg!(
                "sink_resent",
                "Records sent again after a broken connection",
                CounterFamily
            ),
            sink_discarded: reg!(
                "sink_discarded",
                "Records dead-lettered or dropped by policy",
                CounterFamily
            ),
            sink_truncated: reg!(
                "sink_truncated",
                "Records truncated to fit the transport",
                CounterFamily
            ),
            sink_queue: reg!(
                "sink_queue_batches",
                "Batches queued for a sink",
                GaugeFamily
            ),
            sink_pending: reg!(
                "sink_pending_batches",
                "Batches handed to a sink and not settled yet (queued, written, unacknowledged)",
                GaugeFamily
            ),
            sink_hec_acks_pending: reg!(
                "sink_hec_acks_pending",
                "HEC requests waiting for their indexer acknowledgement",
                GaugeFamily
            ),
            task_panics: reg!(
                "task_panics",
                "Panics caught in a supervised task (restarted)",
                CounterFamily
            ),
            task_failures: reg!(
                "task_failures",
                "Runs of a supervised task that ended with an error (restarted)",
                CounterFamily
            ),
            sink_stalled: reg!(
                "sink_stalled",
                "1 while the sink holds its route back for a fault that needs an operator",
                GaugeFamily
            ),
            sink_stalls: reg!(
                "sink_stalls",
                "Times a sink stalled for a fault that needs an operator",
                CounterFamily
            ),
            sink_request_splits: reg!(
                "sink_request_splits",
                "Requests refused as bad data, split to find the refused records",
                CounterFamily
            ),
            sink_dead_letter_bytes: reg!(
                "sink_dead_letter_bytes",
                "Size of the sink's dead-letter file",
                GaugeFamily
            ),
            task_restarts: reg!(
                "task_restarts",
                "Times a supervised task was started again after a failure or a panic",
                CounterFamily
            ),
            source_last_poll: reg!(
                "source_last_poll_seconds",
                "When the source last read a page from the API successfully (Unix seconds)",
                FloatGaugeFamily
            ),
            source_last_commit: reg!(
                "source_last_commit_seconds",
                "When the source last saved its checkpoint (Unix seconds)",
                FloatGaugeFamily
            ),
            sink_last_delivery: reg!(
                "sink_last_delivery_seconds",
                "When the sink last delivered a batch (Unix seconds)",
                FloatGaugeFamily
            ),
            config_reloads: reg!(
                "config_reloads",
                "Configuration reloads asked for (SIGHUP), by result",
                CounterFamily
            ),
            config_last_reload: reg!(
                "config_last_reload_seconds",
                "When the configuration in effect was last loaded successfully (Unix seconds)",
                Gauge<f64, AtomicU64>
            ),
            config_restart_pending: reg!(
                "config_restart_pending",
                "1 while the configuration file changes a setting that only a restart applies",
                Gauge<i64, std::sync::atomic::AtomicI64>
            ),
            build_info: reg!(
                "build_info",
                "Always 1; the version of this build is the label",
                GaugeFamily
            ),
            start_time: reg!(
                "start_time_seconds",
                "When this process started (Unix seconds)",
                Gauge<f64, AtomicU64>
            ),
            uptime: reg!(
                "uptime_seconds",
                "How long this process has run",
                Gauge<f64, AtomicU64>
            ),
            started: tokio::time::Instant::now(),
            sources: Mutex::default(),
            health: SinkHealth::default(),
            ready: crate::health::Readiness::default(),
            registry,
        };
        m.build_info
            .get_or_create(&label("version", env!("CARGO_PKG_VERSION")))
            .set(1);
        m.start_time.set(unix_now());
        m
    }

    /// Source `source` read a page from the API: the gauge and `/ready`.
    pub fn source_polled(&self, source: &str) {
        self.source_last_poll
            .get_or_create(&label("source", source))
            .set(unix_now());
        self.ready.source_polled(source);
    }

    /// Source `source` (of `kind`, reading `tenant`, with `lag`) starts a run: its
    /// `c42fwd_source_info` and its `c42fwd_source_behind_seconds` from now on.
    pub fn source_started(&self, source: &str, kind: &str, tenant: &str, lag: std::time::Duration) {
        let info: Labels = vec![
            ("source", source.to_string()),
            ("kind", kind.to_string()),
            ("tenant", tenant.to_string()),
        ];
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let old = sources.insert(
            source.to_string(),
            RunningSource {
                lag: lag.as_secs_f64(),
                info: info.clone(),
            },
        );
        if let Some(old) = old.filter(|o| o.info != info) {
            // Another kind or tenant under the same name (a changed configuration).
            self.source_info.remove(&old.info);
        }
        self.source_info.get_or_create(&info).set(1);
    }

    /// Source `source` has read up to `position` (its window state's watermark).
    pub fn source_position(&self, source: &str, position: chrono::DateTime<chrono::Utc>) {
        self.source_position
            .get_or_create(&label("source", source))
            .set(unix_seconds(position));
    }

    /// Source `source` saved its checkpoint.
    pub fn source_committed(&self, source: &str) {
        self.source_last_commit
            .get_or_create(&label("source", source))
            .set(unix_now());
    }

    /// Sink `name` was stopped by a reload (removed, or to start again with other
    /// settings): its stalls are over, `/ready` forgets its progress.
    pub fn sink_stopped(&self, name: &str) {
        for reason in self.health.forget(name) {
            self.sink_stalled
                .get_or_create(&vec![
                    ("sink", name.to_string()),
                    ("reason", reason.to_string()),
                ])
                .set(0);
        }
        self.ready.forget_sink(name);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let now = unix_now();
        for (name, s) in self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let l = label("source", name);
            let position = self.source_position.get_or_create(&l).get();
            if position > 0.0 {
                self.source_behind
                    .get_or_create(&l)
                    .set((now - s.lag - position).max(0.0));
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` (Prometheus text format), `GET /health` (liveness: `200 ok`
/// whenever the process and its runtime answer) and `GET /ready` (readiness, see
/// [`crate::health`]) until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::http::header;
    use axum::routing::get;
    let ready = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route(
            "/health",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "ok\n",
                )
            }),
        )
        .route(
            "/ready",
            get(move || {
                let (status, body) = ready
                    .ready
                    .report(tokio::time::Instant::now(), &ready.health.stalled());
                let status = axum::http::StatusCode::from_u16(status)
                    .unwrap_or(axum::http::StatusCode::SERVICE_UNAVAILABLE);
                async move { (status, [(header::CONTENT_TYPE, "application/json")], body) }
            }),
        );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}

/// Shorthand for a one-label set.
pub fn label(key: &'static str, value: &str) -> Labels {
    vec![(key, value.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table of metrics has one row for every registered metric, with
    /// its type, and no row for a metric that does not exist.
    #[test]
    fn readme_lists_every_metric_once_with_its_type() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Metrics\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a Metrics section");
        let rows: Vec<(String, String)> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| {
                let (name, rest) = l.split_once("` | ")?;
                let kind = rest.split(" |").next()?;
                Some((name.to_string(), kind.to_string()))
            })
            .collect();
        let text = Metrics::new().render();
        let mut n = 0;
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
            let shown = match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            };
            let found: Vec<_> = rows.iter().filter(|(r, _)| *r == shown).collect();
            assert_eq!(found.len(), 1, "{shown} in the README's table");
            assert_eq!(found[0].1, kind, "the type of {shown}");
            n += 1;
        }
        assert_eq!(
            rows.len(),
            n,
            "rows for metrics that do not exist: {rows:?}"
        );
        assert!(n >= 40, "only {n} metrics rendered");
    }

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
    }

    #[test]
    fn behind_is_computed_at_each_scrape_from_the_position_and_the_lag() {
        let m = Metrics::new();
        let behind = "c42fwd_source_behind_seconds{source=\"audit\"} ";
        m.source_started(
            "audit",
            "audit_log",
            "acme",
            std::time::Duration::from_secs(600),
        );
        assert_eq!(sample(&m.render(), behind), None, "no position yet");
        let now = chrono::Utc::now();
        m.source_position("audit", now - chrono::TimeDelta::seconds(3600));
        let b = sample(&m.render(), behind).unwrap();
        assert!((3000.0..3060.0).contains(&b), "{b}");
        m.source_position("audit", now - chrono::TimeDelta::seconds(300));
        assert_eq!(
            sample(&m.render(), behind),
            Some(0.0),
            "inside the lag window"
        );
        let text = m.render();
        assert!(
            text.contains(
                "c42fwd_source_info{source=\"audit\",kind=\"audit_log\",tenant=\"acme\"} 1\n"
            ),
            "{text}"
        );
        // Started again on another tenant: one info series, the new one.
        m.source_started("audit", "audit_log", "emea", std::time::Duration::ZERO);
        let text = m.render();
        assert_eq!(text.matches("c42fwd_source_info{").count(), 1, "{text}");
        assert!(text.contains("tenant=\"emea\"} 1"), "{text}");
    }

    #[test]
    fn renders_stable_names() {
        let m = Metrics::new();
        m.sink_events
            .get_or_create(&label("sink", "siem"))
            .inc_by(3);
        let text = m.render();
        assert!(
            text.contains("c42fwd_sink_events_total{sink=\"siem\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn stalled_sinks_show_in_ready_until_cleared() {
        let m = Metrics::new();
        let ready = |m: &Metrics| {
            m.ready
                .report(tokio::time::Instant::now(), &m.health.stalled())
        };
        assert_eq!(ready(&m).0, 200);
        m.health.set_stalled(
            "splunk",
            "http_403",
            "http 403 Forbidden: Invalid token (code 4)",
        );
        m.health.set_stalled("splunk", "http_403", "again");
        let (status, body) = ready(&m);
        assert_eq!(status, 503);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "not_ready");
        assert_eq!(v["failing"][0]["sink"], "splunk");
        assert_eq!(v["failing"][0]["reason"], "stalled");
        assert!(v["failing"][0]["detail"]
            .as_str()
            .unwrap()
            .ends_with("(http_403): again"));
        assert_eq!(v["failing"].as_array().unwrap().len(), 1);
        m.health.clear("splunk", "http_403");
        assert_eq!(ready(&m).0, 200);
    }

    #[test]
    fn build_info_and_start_time_are_rendered() {
        let text = Metrics::new().render();
        assert!(
            text.contains(&format!(
                "c42fwd_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.contains("c42fwd_start_time_seconds 17"), "{text}");
        assert!(text.contains("c42fwd_uptime_seconds "), "{text}");
    }
}
