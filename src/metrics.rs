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
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

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
    /// `c42fwd_source_window_splits_total{source}`: query windows split because the
    /// result count exceeded the per-query limit.
    pub source_window_splits: CounterFamily,
    /// `c42fwd_source_bad_timestamps_total{source}`: events whose time could not be
    /// parsed, forwarded with the start of their query window as their time.
    pub source_bad_timestamps: CounterFamily,
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
    /// `c42fwd_api_requests_total{tenant,endpoint,status}`.
    pub api_requests: CounterFamily,
    /// `c42fwd_api_responses_cut_total{tenant,endpoint,reason}`: response bodies the
    /// client stopped reading: `records` (more records than asked for), `size` (over
    /// the tenant's `max_response_bytes`), `error_body` (a non-2xx body past its first
    /// KiBs).
    pub api_responses_cut: CounterFamily,
    /// `c42fwd_api_retries_total{tenant,reason}`: 429, 5xx, timeout, connect, auth.
    pub api_retries: CounterFamily,
    /// `c42fwd_api_token_refreshes_total{tenant}`.
    pub api_token_refreshes: CounterFamily,
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
    /// `c42fwd_sink_hec_acks_pending{sink}`: HEC requests accepted by Splunk whose
    /// indexer acknowledgement has not come yet (their batches are not Delivered yet).
    pub sink_hec_acks_pending: GaugeFamily,
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
        Metrics {
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
            sink_hec_acks_pending: reg!(
                "sink_hec_acks_pending",
                "HEC requests waiting for their indexer acknowledgement",
                GaugeFamily
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` (Prometheus text format) and `GET /health` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::http::header;
    use axum::routing::get;
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
        .route("/health", get(|| async { "ok\n" }));
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
}
