//! What an HTTP-based sink holds between the delivery loop and its courier.
//!
//! Owned here: the [`Outbox`] of one sink: the [`Batcher`] filling the next body, the
//! sealed bodies waiting to go, and the [`AckLedger`] with the hand-over of each batch's
//! token from the delivery loop (the loop gives the token after the batch was taken,
//! `Transport::hold`); when the body being filled is due (`max_wait`, or at once
//! once the queue is closed).
//!
//! Not here: cutting the bodies (`batcher`), sending them (`courier`), and when a
//! request counts as delivered (each sink: on a 2xx, or HEC's indexer acknowledgement).

use super::batcher::Batcher;
use super::body::{BodyWriter, SealedChunk};
use super::ledger::{AckId, AckLedger};
use crate::ack::AckToken;
use crate::config::HttpBatching;
use crate::encode::EncoderOptions;
use crate::sinks::delivery::EncodedBatch;
use tokio::time::Instant;

/// One sink's batches on their way into requests.
pub(crate) struct Outbox<W: BodyWriter> {
    batcher: Batcher<W>,
    /// The tokens of the batches not yet settled.
    pub ledger: AckLedger,
    /// Sealed bodies, in order, not yet given to the courier.
    ready: Vec<SealedChunk>,
    /// The batch taken last, whose token the loop hands over next.
    taken: Option<AckId>,
    /// The queue is closed: the body being filled goes now.
    closed: bool,
}

impl<W: BodyWriter> Outbox<W> {
    pub(crate) fn new(
        writer: W,
        encoding: &EncoderOptions,
        limits: HttpBatching,
        gzip: bool,
    ) -> Self {
        Outbox {
            batcher: Batcher::new(writer, encoding, limits, gzip),
            ledger: AckLedger::default(),
            ready: Vec::new(),
            taken: None,
            closed: false,
        }
    }

    /// Takes the records of one batch (an empty `records`, the loop's "write again what
    /// you hold", takes nothing).
    pub(crate) fn take(&mut self, records: &EncodedBatch) {
        if let Some(batch) = records.shared_batch() {
            let id = self
                .batcher
                .push(batch, records, &mut self.ledger, &mut self.ready);
            self.taken = Some(id);
        }
    }

    /// The token of the batch taken last.
    pub(crate) fn hold(&mut self, ack: AckToken) {
        match self.taken.take() {
            Some(id) => self.ledger.attach(id, ack),
            // The loop hands over a token only after a batch was taken; without one
            // it is dropped, which counts as not delivered.
            None => drop(ack),
        }
    }

    /// When the body being filled must be sealed: its first record waited
    /// `max_wait`, or now once the queue is closed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.closed && !self.batcher.is_empty() {
            return Some(Instant::now());
        }
        self.batcher.deadline()
    }

    /// Seals the body being filled if it is due.
    pub(crate) fn flush_due(&mut self) {
        if self.deadline().is_some_and(|d| d <= Instant::now()) {
            self.ready.extend(self.batcher.flush());
        }
    }

    /// The queue is closed and drained: the body being filled goes at once.
    pub(crate) fn queue_closed(&mut self) {
        self.closed = true;
    }

    /// Puts a request back to be sent again (HEC: its acknowledgement timed out).
    pub(crate) fn resend(&mut self, chunk: SealedChunk) {
        self.ready.push(chunk);
    }

    /// The sealed bodies waiting to go, in order.
    pub(crate) fn take_ready(&mut self) -> Vec<SealedChunk> {
        std::mem::take(&mut self.ready)
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Whether every batch taken is resolved and nothing waits to be sent.
    pub(crate) fn is_settled(&self) -> bool {
        self.ledger.is_empty() && self.batcher.is_empty() && self.ready.is_empty()
    }
}
