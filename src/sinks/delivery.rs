//! The delivery model every sink runs on: one generic loop ([`run`]) and the
//! [`Transport`] trait it drives, plus what they exchange ([`EncodedBatch`],
//! [`Written`], [`Attempt`]) and what every sink gets from the pipeline
//! ([`SinkContext`]).
//!
//! The loop receives [`SinkBatch`]es in order, encodes each whole batch into one reused
//! buffer, has the transport write it (retrying with the backoff of `crate::retry`
//! until it succeeds, the retries are used up, or `shutdown`), and hands the batch's
//! [`AckToken`] to the transport, which resolves it now or once the receiver settled it
//! (ARCHITECTURE.md, invariant 1: the API is the buffer). Between batches it lets the
//! transport make progress on a timer or on its socket ([`Transport::tick`]: a TCP
//! connection check, reading RELP answers, an HTTP flush on `max_wait`), and writes
//! again what the transport holds when its connection ended
//! ([`Transport::wants_resend`]). When the queue is closed and drained it waits for the
//! held tokens to resolve, lets the transport close, and stops. On `shutdown` it stops
//! at once: unresolved tokens are dropped and count as not delivered.
//!
//! Not here: building a transport from its options (`sinks/mod.rs` dispatches), the
//! error classification (`error.rs`), the delays (`crate::retry`).

use super::error::SinkError;
use super::metrics::SinkMetrics;
use crate::ack::AckToken;
use crate::config::Sink;
use crate::encode::Encoder;
use crate::event::{Batch, Event};
use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::route::SinkBatch;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What every sink gets from the pipeline besides its config.
#[derive(Clone)]
pub struct SinkContext {
    pub metrics: Arc<Metrics>,
    /// Directory for the sink's dead-letter file (`<state_dir>/dead-letter/<sink>.ndjson`).
    pub dead_letter_dir: PathBuf,
    /// Hard stop: cancelled when the shutdown grace period is over.
    pub shutdown: CancellationToken,
    /// Asks the file sinks to reopen their files (SIGHUP, after a log rotation);
    /// [`Reopen::default`] never asks.
    pub reopen: super::file::Reopen,
}

/// How a sink turns an event into one complete framed record.
///
/// `sinks::run` uses [`crate::encode::Encoder`]; `sinks::run_with_encoder` takes any
/// implementation, so that the delivery loop can be tested with known bytes.
pub trait RecordEncoder: Send + Sync {
    /// Appends exactly one framed record for `event` to `out`.
    fn encode(&self, event: &Event, out: &mut Vec<u8>);
}

impl RecordEncoder for Encoder {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) {
        Encoder::encode(self, event, out)
    }
}

/// The records of one batch, encoded back to back into one buffer.
///
/// Stream transports write `bytes()` in one go; the datagram transport needs each
/// record on its own, hence the end offsets. Reused from batch to batch.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// The batch the records were encoded from (record `i` is event `i`), for
    /// transports that need the events too (HTTP bodies); `None` for records pushed
    /// one by one and for the empty "write again what you hold" batch.
    batch: Option<Arc<Batch>>,
}

/// Above this capacity the buffer is given back after a batch, so that one huge batch
/// does not pin its memory for the life of the sink.
pub(crate) const KEEP_BUFFER_CAPACITY: usize = 8 << 20;

impl EncodedBatch {
    /// Encodes every event of `batch`, replacing what was there.
    pub fn encode(&mut self, encoder: &impl RecordEncoder, batch: &Arc<Batch>) {
        self.clear();
        for event in &batch.events {
            encoder.encode(event, &mut self.buf);
            self.ends.push(self.buf.len());
        }
        self.batch = Some(batch.clone());
    }

    /// The batch these records were encoded from, if any (see the field).
    pub fn batch(&self) -> Option<&Batch> {
        self.batch.as_deref()
    }

    /// The shared batch these records were encoded from, if any.
    pub fn shared_batch(&self) -> Option<&Arc<Batch>> {
        self.batch.as_ref()
    }

    /// The event record `i` was encoded from, when the records came from a batch.
    pub fn event(&self, i: usize) -> Option<&crate::event::Event> {
        self.batch.as_ref().and_then(|b| b.events.get(i))
    }

    /// Appends one already-encoded record (tests, and callers with their own encoding).
    pub fn push_record(&mut self, record: &[u8]) {
        self.buf.extend_from_slice(record);
        self.ends.push(self.buf.len());
    }

    /// A copy of the records (not of the batch they came from), for a transport that
    /// keeps them after the loop reuses this buffer (RELP's window).
    pub(crate) fn copy_records(&self) -> EncodedBatch {
        EncodedBatch {
            buf: self.buf.clone(),
            ends: self.ends.clone(),
            batch: None,
        }
    }

    pub fn clear(&mut self) {
        if self.buf.capacity() > KEEP_BUFFER_CAPACITY {
            self.buf = Vec::new();
        }
        self.buf.clear();
        self.ends.clear();
        self.batch = None;
    }

    /// All records, back to back.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record `i`.
    pub fn record(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    pub fn records(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.record(i))
    }

    /// How many records start before byte offset `written`: the records a peer may
    /// have (partly) received when a write broke off there.
    pub fn records_started_before(&self, written: usize) -> usize {
        if written == 0 {
            return 0;
        }
        // Record i starts at ends[i-1] (0 for the first); it was started if that is
        // below `written`.
        1 + self.ends[..self.ends.len().saturating_sub(1)]
            .iter()
            .take_while(|&&end| end < written)
            .count()
    }
}

/// What a transport reports after it wrote a whole batch: what the loop counts in
/// `sink_events` / `sink_bytes` now. A transport that counts only once the receiver
/// acknowledged (RELP) reports nothing here and counts itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Records handed to the transport (sent, or truncated and sent).
    pub records: usize,
    pub bytes: usize,
}

/// Whether this is the first attempt at a batch or a retry of the same batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    First,
    Retry,
}

/// One way of delivering records: what the loop [`run`] needs of a sink. Static
/// dispatch: `run` is generic over it, one task per sink.
///
/// The loop calls, in this order and never concurrently (`&mut self`):
/// - [`write`](Transport::write) for each non-empty batch, `Attempt::First` and then
///   `Attempt::Retry` with the same records after each retriable error, until it
///   returns `Ok`; the future may be dropped at any await (shutdown);
/// - [`hold`](Transport::hold) with the batch's token, exactly once after a successful
///   write of that batch and before anything else is called;
/// - [`tick`](Transport::tick) between batches once [`next_tick`](Transport::next_tick)
///   is due, raced against the queue: it must be cancel-safe (a batch arriving drops
///   it);
/// - `write` with an empty `records` (`Attempt::First`, then `Retry`) whenever
///   [`wants_resend`](Transport::wants_resend) says what it holds must go out again;
/// - [`queue_closed`](Transport::queue_closed) once, when the queue is closed and
///   drained; then ticks and resend writes while [`holds_acks`](Transport::holds_acks);
///   then [`close`](Transport::close).
///
/// An error from `write` or `tick` is counted (`sink_errors{kind}`) and classified by
/// [`SinkError::is_retriable`]: permanent stops the sink (the batch in hand is failed,
/// held tokens are dropped: not delivered); retriable waits the next backoff delay and
/// calls `write` again (after a `tick` error: with empty records). The backoff starts
/// again from its first delay once [`made_progress`](Transport::made_progress) says so.
pub(crate) trait Transport {
    /// Writes one encoded batch (empty: only what must go out again). After an error
    /// the transport drops its connection or handle, and the next call (a retry of the
    /// same batch, [`Attempt::Retry`]) starts with a fresh one; a transport that keeps
    /// the batch itself (RELP's window) must not take it twice on a retry.
    async fn write(
        &mut self,
        records: &EncodedBatch,
        attempt: Attempt,
    ) -> Result<Written, SinkError>;

    /// Takes the token of the batch just written: resolved now (the default), or kept
    /// and resolved once the batch settled (TCP: the connection was seen open a while
    /// after the write; RELP: every frame got `200 OK`). Tokens are resolved in batch
    /// order. A dropped token counts as not delivered.
    fn hold(&mut self, ack: AckToken) {
        ack.delivered();
    }

    /// Whether tokens are held that wait for their batches to settle.
    fn holds_acks(&self) -> bool {
        false
    }

    /// Whether what the transport holds must be written again (an empty `write`)
    /// before the next batch: its connection ended with tokens held.
    fn wants_resend(&self) -> bool {
        false
    }

    /// When [`tick`](Transport::tick) is due (`None`: never; now: as soon as the loop
    /// is idle, and `tick` itself waits for its socket).
    fn next_tick(&self) -> Option<Instant> {
        None
    }

    /// Progress between batches: look at the connection, settle what is due, read
    /// answers, flush what waits. Cancel-safe. An error ends the connection or session
    /// and is handled like a failed write (see the trait docs).
    async fn tick(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Whether the receiver took something since the last call (a successful write, an
    /// answer): the backoff then starts again from its first delay. The default: every
    /// successful write or tick is progress.
    fn made_progress(&mut self) -> bool {
        true
    }

    /// Whether the loop may take the next batch from the queue now. `false` holds the
    /// batches in the queue (backpressure: HEC with too many requests waiting for
    /// their indexer acknowledgement) while ticks go on; `next_tick` must then be
    /// `Some`.
    fn accepts_batches(&self) -> bool {
        true
    }

    /// Whether the transport retries inside `write` and `tick` itself (HTTP's
    /// courier: `Retry-After`, stalls) and counts and logs its failures: an error it
    /// returns then ends the sink as it is, without being counted, logged or retried
    /// again by the loop.
    fn retries_inside(&self) -> bool {
        false
    }

    /// The queue is closed and drained: nothing more will be written; send what is
    /// buffered (HTTP's open request body) on the next ticks.
    fn queue_closed(&mut self) {}

    /// Everything was settled and the sink stops: end the session politely (RELP's
    /// `close`). Failures do not matter any more; bounded by the transport's own
    /// timeout, and by `shutdown`.
    async fn close(&mut self) {}
}

/// Runs one sink on `transport` until its queue is closed and drained and every held
/// token resolved (returns `Ok`), `ctx.shutdown` is cancelled (returns `Ok` at once;
/// the tokens in hand are dropped, which counts as not delivered), or a permanent error
/// or used-up retries (the batch's token is failed and the error returned).
pub(crate) async fn run<T: Transport>(
    mut transport: T,
    cfg: &Sink,
    mut rx: mpsc::Receiver<SinkBatch>,
    ctx: &SinkContext,
    metrics: &SinkMetrics,
    encoder: impl RecordEncoder,
) -> Result<(), SinkError> {
    let mut records = EncodedBatch::default();
    let shutdown = &ctx.shutdown;
    let sink = cfg.name.as_str();
    let mut delivery = Delivery {
        cfg,
        metrics,
        shutdown,
        backoff: None,
    };

    loop {
        // Held acknowledgements whose connection ended: write what is held again now,
        // so that they can settle without waiting for the next batch.
        if transport.wants_resend() && delivery.resend(&mut transport, &rx, None).await?.is_none() {
            return Ok(());
        }
        let tick = transport.next_tick();
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            r = tick_at(&mut transport, tick) => {
                if delivery.ticked(&mut transport, r, &rx).await?.is_none() {
                    return Ok(());
                }
                continue;
            }
            next = rx.recv(), if transport.accepts_batches() => next,
        };
        metrics.queue_len(rx.len());
        let Some(SinkBatch { batch, ack }) = next else {
            tracing::debug!(sink, "queue closed and drained; sink stops");
            return delivery.drain(&mut transport, &rx).await;
        };
        if batch.events.is_empty() {
            // Nothing to write: do not connect just to write zero bytes.
            ack.delivered();
            continue;
        }
        records.encode(&encoder, &batch);
        match delivery
            .write(&mut transport, &records, &rx, Some(&batch.source), None)
            .await
        {
            Ok(Some(written)) => {
                metrics.delivered(written.records, written.bytes);
                transport.hold(ack);
            }
            // The token goes with us: not delivered.
            Ok(None) => return Ok(()),
            Err(e) => {
                ack.failed();
                return Err(e);
            }
        }
    }
}

/// Waits until `at`, then ticks; forever when there is nothing to wait for.
async fn tick_at<T: Transport>(transport: &mut T, at: Option<Instant>) -> Result<(), SinkError> {
    match at {
        Some(at) => {
            // Due now (RELP reading its answers): no timer needed.
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            transport.tick().await
        }
        None => std::future::pending().await,
    }
}

/// What writing with retries needs of the sink task.
struct Delivery<'a> {
    cfg: &'a Sink,
    metrics: &'a SinkMetrics,
    shutdown: &'a CancellationToken,
    /// The delays after failures since the transport last made progress.
    backoff: Option<Backoff>,
}

/// Empty records: "write again what you hold".
const NOTHING: &EncodedBatch = &EncodedBatch {
    buf: Vec::new(),
    ends: Vec::new(),
    batch: None,
};

impl Delivery<'_> {
    /// The queue is closed and drained: resolves what is held before stopping (a
    /// dropped token counts as not delivered: correct, but the source would read those
    /// batches again), then lets the transport close.
    async fn drain<T: Transport>(
        &mut self,
        transport: &mut T,
        rx: &mpsc::Receiver<SinkBatch>,
    ) -> Result<(), SinkError> {
        transport.queue_closed();
        while transport.holds_acks() {
            if transport.wants_resend() {
                match self.resend(transport, rx, None).await? {
                    Some(()) => continue,
                    None => return Ok(()),
                }
            }
            let tick = transport.next_tick();
            let r = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                r = tick_at(transport, tick) => r,
            };
            if self.ticked(transport, r, rx).await?.is_none() {
                return Ok(());
            }
        }
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => {}
            _ = transport.close() => {}
        }
        Ok(())
    }

    /// After a tick: progress resets the backoff; an error is handled like a failed
    /// write of what the transport holds. `Ok(None)`: `shutdown` came first.
    async fn ticked<T: Transport>(
        &mut self,
        transport: &mut T,
        result: Result<(), SinkError>,
        rx: &mpsc::Receiver<SinkBatch>,
    ) -> Result<Option<()>, SinkError> {
        match result {
            Ok(()) => {
                if transport.made_progress() {
                    self.backoff = None;
                }
                Ok(Some(()))
            }
            Err(e) => self.resend(transport, rx, Some(e)).await,
        }
    }

    /// Writes again what the transport holds (after `failed`, if given: that error
    /// counts as the first failed attempt). `Ok(None)`: `shutdown` came first.
    async fn resend<T: Transport>(
        &mut self,
        transport: &mut T,
        rx: &mpsc::Receiver<SinkBatch>,
        failed: Option<SinkError>,
    ) -> Result<Option<()>, SinkError> {
        Ok(self
            .write(transport, NOTHING, rx, None, failed)
            .await?
            .map(drop))
    }

    /// Writes `records` (of the batch from `source`; `None`: only what the transport
    /// must write again) until it succeeds, backing off between attempts; `failed` is
    /// an error that already counts as the first attempt. `Ok(None)`: `shutdown` came
    /// first. An error is permanent, or the retries are used up; it is logged here.
    async fn write<T: Transport>(
        &mut self,
        transport: &mut T,
        records: &EncodedBatch,
        rx: &mpsc::Receiver<SinkBatch>,
        source: Option<&str>,
        mut failed: Option<SinkError>,
    ) -> Result<Option<Written>, SinkError> {
        let sink = self.cfg.name.as_str();
        let mut attempt = if failed.is_some() {
            Attempt::Retry
        } else {
            Attempt::First
        };
        loop {
            let e = match failed.take() {
                Some(e) => e,
                None => {
                    let result = tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => return Ok(None),
                        r = transport.write(records, attempt) => r,
                    };
                    match result {
                        Ok(written) => {
                            if attempt == Attempt::Retry {
                                match source {
                                    Some(source) => {
                                        tracing::info!(sink, source, "batch delivered after retry")
                                    }
                                    None => {
                                        tracing::info!(sink, "records written again after retry")
                                    }
                                }
                            }
                            if transport.made_progress() {
                                self.backoff = None;
                            }
                            return Ok(Some(written));
                        }
                        Err(e) => e,
                    }
                }
            };
            if transport.retries_inside() {
                // Counted and logged where it happened; it ends the sink.
                return Err(e);
            }
            self.metrics.error(&e);
            // While we retry, the queue fills behind us: keep the gauge honest.
            self.metrics.queue_len(rx.len());
            if !e.is_retriable() {
                tracing::error!(sink, error = %e, "permanent sink error; the sink stops");
                return Err(e);
            }
            let delay = self
                .backoff
                .get_or_insert_with(|| self.cfg.retry.backoff())
                .next_delay();
            let Some(delay) = delay else {
                tracing::error!(sink, error = %e, "retries used up; the sink stops");
                return Err(e);
            };
            tracing::warn!(sink, error = %e, retry_in = ?delay, "sink error; will retry the batch");
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(delay) => {}
            }
            attempt = Attempt::Retry;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_batch_knows_its_records() {
        let mut b = EncodedBatch::default();
        b.push_record(b"aa\n");
        b.push_record(b"bbb\n");
        b.push_record(b"c\n");
        assert_eq!(b.len(), 3);
        assert_eq!(b.bytes(), b"aa\nbbb\nc\n");
        assert_eq!(b.record(1), b"bbb\n");
        assert_eq!(
            b.records().collect::<Vec<_>>(),
            vec![&b"aa\n"[..], b"bbb\n", b"c\n"]
        );
        assert_eq!(b.records_started_before(0), 0);
        assert_eq!(b.records_started_before(1), 1);
        assert_eq!(b.records_started_before(3), 1);
        assert_eq!(b.records_started_before(4), 2);
        assert_eq!(b.records_started_before(7), 2);
        assert_eq!(b.records_started_before(8), 3);
        assert_eq!(b.records_started_before(9), 3);
        b.clear();
        assert!(b.is_empty());
    }
}
