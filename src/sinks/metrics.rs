//! The handles on one sink's metrics, looked up once when the sink starts (label sets
//! are fixed per sink), and the few ways a transport reports on itself: errors by kind,
//! discards by reason, reconnects, records written again, truncations.
//!
//! Not here: the metric definitions and their names (`crate::metrics`).

use super::error::SinkError;
use crate::metrics::{label, Metrics};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;

/// Handles on one sink's metrics, looked up once (label sets are fixed per sink).
#[derive(Clone)]
pub(crate) struct SinkMetrics {
    pub(crate) metrics: Arc<Metrics>,
    sink: String,
    pub(crate) events: Counter,
    pub(crate) bytes: Counter,
    reconnects: Counter,
    resent: Counter,
    truncated: Counter,
    pub(crate) queue: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl SinkMetrics {
    pub(crate) fn new(metrics: &Arc<Metrics>, sink: &str) -> Self {
        let l = label("sink", sink);
        SinkMetrics {
            events: metrics.sink_events.get_or_create(&l).clone(),
            bytes: metrics.sink_bytes.get_or_create(&l).clone(),
            reconnects: metrics.sink_reconnects.get_or_create(&l).clone(),
            resent: metrics.sink_resent.get_or_create(&l).clone(),
            truncated: metrics.sink_truncated.get_or_create(&l).clone(),
            queue: metrics.sink_queue.get_or_create(&l).clone(),
            metrics: metrics.clone(),
            sink: sink.to_string(),
        }
    }

    pub(crate) fn error(&self, e: &SinkError) {
        self.metrics
            .sink_errors
            .get_or_create(&vec![
                ("sink", self.sink.clone()),
                ("kind", e.kind().to_string()),
            ])
            .inc();
    }

    pub(crate) fn discarded(&self, reason: &'static str, n: u64) {
        if n > 0 {
            self.metrics
                .sink_discarded
                .get_or_create(&vec![
                    ("sink", self.sink.clone()),
                    ("reason", reason.to_string()),
                ])
                .inc_by(n);
        }
    }

    /// What was delivered (records and bytes, counted once, not per attempt).
    pub(crate) fn delivered(&self, records: usize, bytes: usize) {
        self.events.inc_by(records as u64);
        self.bytes.inc_by(bytes as u64);
    }

    /// The sink's queue holds `batches` now.
    pub(crate) fn queue_len(&self, batches: usize) {
        self.queue.set(batches as i64);
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.inc();
    }

    pub(crate) fn resent(&self, n: usize) {
        self.resent.inc_by(n as u64);
    }

    pub(crate) fn truncated(&self, n: u64) {
        self.truncated.inc_by(n);
    }
}
