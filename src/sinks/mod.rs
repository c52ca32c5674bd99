//! Sinks: where encoded records go. Each runs as one task fed by a bounded queue.
//!
//! Contract with the pipeline: a sink receives [`SinkBatch`]es from its queue in order,
//! writes each batch's records, and resolves the batch's [`AckToken`] from the real
//! result of the write (DESIGN invariant 1 and STYLE habit 6). On a retriable error it
//! backs off and tries again (a dead sink stalls its route and loses nothing); it stops
//! when its queue is closed and drained, or at once when `shutdown` is cancelled, in which
//! case unresolved tokens are dropped and count as not delivered.

use crate::ack::AckToken;
use crate::event::Batch;
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One batch on its way to one sink.
#[derive(Debug)]
pub struct SinkBatch {
    pub batch: Arc<Batch>,
    pub ack: AckToken,
}

/// What every sink gets from the pipeline besides its config.
#[derive(Clone)]
pub struct SinkContext {
    pub metrics: Arc<Metrics>,
    /// Directory for the sink's dead-letter file (`<state_dir>/dead-letter/<sink>.ndjson`).
    pub dead_letter_dir: PathBuf,
    /// Hard stop: cancelled when the shutdown grace period is over.
    pub shutdown: CancellationToken,
}
