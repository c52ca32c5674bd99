//! Batching: encoded batches cut into request bodies.
//!
//! A [`Batcher`] takes the records of the batches the delivery loop encoded and cuts
//! them into request bodies ([`SealedChunk`]) bounded by `max_events` and `max_bytes`
//! (uncompressed body size; one record larger than that goes alone), and tells the
//! caller when `max_wait` is up. Gzip happens when a chunk is sealed. Each batch's
//! entry in the [`AckLedger`] is held once by every body that carries its records.
//!
//! Not here: the body formats and gzip (`body`), the hand-over of tokens and the
//! bodies waiting to go (`outbox`), sending (`courier`).

use super::body::{compress, BodyWriter, Embedding, Item, Origin, SealedChunk, Shape};
use super::ledger::{AckId, AckLedger};
use crate::config::HttpBatching;
use crate::encode::EncoderOptions;
use crate::event::{Batch, Event};
use crate::sinks::delivery::EncodedBatch;
use std::sync::Arc;
use tokio::time::Instant;

/// A request body being filled.
struct Chunk {
    body: Vec<u8>,
    records: Vec<Item>,
    acks: Vec<AckId>,
    opened: Instant,
}

/// Cuts encoded batches into request bodies.
pub(crate) struct Batcher<W: BodyWriter> {
    writer: W,
    embedding: Embedding,
    limits: HttpBatching,
    gzip: bool,
    /// Bytes `close` adds (counted against `max_bytes` before it is written).
    close_len: usize,
    shape: Arc<Shape>,
    current: Option<Chunk>,
}

impl<W: BodyWriter> Batcher<W> {
    /// `encoding` is how the records given to [`push`](Batcher::push) were encoded
    /// (it decides how they go into a JSON body).
    pub(crate) fn new(
        writer: W,
        encoding: &EncoderOptions,
        limits: HttpBatching,
        gzip: bool,
    ) -> Self {
        let shape = Arc::new(Shape::of(&writer));
        Batcher {
            close_len: shape.close.len(),
            shape,
            embedding: Embedding::for_encoding(encoding),
            writer,
            limits,
            gzip,
            current: None,
        }
    }

    /// Takes one batch, whose events the delivery loop encoded into `records` (record
    /// `i` is event `i`): it gets an entry in `ledger` (whose token comes later, see
    /// [`AckLedger::attach`]), its records go into bodies, and bodies that are full are
    /// sealed into `ready`, in order. Returns the batch's ledger entry.
    pub(crate) fn push(
        &mut self,
        batch: &Arc<Batch>,
        records: &EncodedBatch,
        ledger: &mut AckLedger,
        ready: &mut Vec<SealedChunk>,
    ) -> AckId {
        let id = ledger.open();
        self.writer.begin_batch(batch);
        for (index, record) in records.records().enumerate() {
            let Some(event) = batch.events.get(index) else {
                break;
            };
            let origin = Origin {
                batch: batch.clone(),
                index,
            };
            self.add(event, record, id, origin, ledger, ready);
        }
        // Every record of the batch is in some body now: from here on the token
        // resolves when the last of those bodies is delivered.
        ledger.release(id);
        id
    }

    fn add(
        &mut self,
        event: &Event,
        record: &[u8],
        id: AckId,
        origin: Origin,
        ledger: &mut AckLedger,
        ready: &mut Vec<SealedChunk>,
    ) {
        let limits = self.limits;
        let mut chunk = self.current.take().unwrap_or_else(|| self.open());
        let mark = chunk.body.len();
        if !chunk.records.is_empty() {
            self.writer.separator(&mut chunk.body);
        }
        let mut start = chunk.body.len();
        let mut span = self
            .writer
            .write(&mut chunk.body, event, record, self.embedding);
        if !chunk.records.is_empty() && chunk.body.len() + self.close_len > limits.max_bytes {
            // It does not fit: the body goes as it was, the record starts the next.
            chunk.body.truncate(mark);
            ready.push(self.seal(chunk));
            chunk = self.open();
            start = chunk.body.len();
            span = self
                .writer
                .write(&mut chunk.body, event, record, self.embedding);
        }
        chunk.records.push(Item {
            start,
            end: chunk.body.len(),
            span,
            ack: id,
            origin: Some(origin),
        });
        if chunk.acks.last() != Some(&id) {
            chunk.acks.push(id);
            ledger.retain(id);
        }
        if chunk.records.len() >= limits.max_events
            || chunk.body.len() + self.close_len >= limits.max_bytes
        {
            ready.push(self.seal(chunk));
        } else {
            self.current = Some(chunk);
        }
    }

    fn open(&self) -> Chunk {
        // Modest: a body waiting for its acknowledgement keeps its allocation, and
        // most bodies are far below `max_bytes`.
        let mut body = Vec::with_capacity(self.limits.max_bytes.min(64 * 1024));
        self.writer.open(&mut body);
        Chunk {
            body,
            records: Vec::new(),
            acks: Vec::new(),
            opened: Instant::now(),
        }
    }

    fn seal(&self, mut chunk: Chunk) -> SealedChunk {
        self.writer.close(&mut chunk.body);
        let (wire, gzip) = compress(chunk.body, self.gzip);
        SealedChunk {
            wire,
            gzip,
            records: chunk.records,
            acks: chunk.acks,
            shape: self.shape.clone(),
            depth: 0,
            refused: None,
        }
    }

    /// When the body being filled must go (its first record waited `max_wait`).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.current
            .as_ref()
            .map(|c| crate::retry::deadline_after(c.opened, self.limits.max_wait))
    }

    /// Seals the body being filled, if it holds anything.
    pub(crate) fn flush(&mut self) -> Option<SealedChunk> {
        let chunk = self.current.take()?;
        Some(self.seal(chunk))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.current.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Outcome;
    use crate::encode::{Format, SyslogStyle};
    use crate::sinks::http::body::JsonBody;
    use crate::sinks::http::testkit::{batch_of, batcher, encoder, event, events, limits};
    use std::io::Read;
    use std::time::Duration;

    #[test]
    fn batches_are_cut_by_events_and_tokens_wait_for_every_part() {
        let (mut b, mut ledger, mut ready) =
            batcher(JsonBody::NdJson, Format::JsonRaw, limits(4, 1 << 20), false);
        let (sb1, mut w1) = batch_of(events(6));
        let (sb2, mut w2) = batch_of(events(3));
        b.push(sb1, &mut ledger, &mut ready);
        b.push(sb2, &mut ledger, &mut ready);
        // 9 events, 4 per request: two full requests, one in the making.
        assert_eq!(ready.len(), 2);
        assert_eq!(ready[0].events(), 4);
        assert_eq!(ready[1].events(), 4);
        assert_eq!(ready[0].acks, vec![0]);
        assert_eq!(ready[1].acks, vec![0, 1]);
        assert!(b.deadline().is_some());
        let last = b.flush().unwrap();
        assert_eq!(last.events(), 1);
        assert!(b.is_empty() && b.deadline().is_none());

        ledger.release_all(&ready[0].acks);
        assert_eq!(
            w1.try_outcome(),
            None,
            "batch 1 still has records in request 2"
        );
        ledger.release_all(&ready[1].acks);
        assert_eq!(w1.try_outcome(), Some(Outcome::Delivered));
        assert_eq!(
            w2.try_outcome(),
            None,
            "batch 2 still has a record in request 3"
        );
        ledger.release_all(&last.acks);
        assert_eq!(w2.try_outcome(), Some(Outcome::Delivered));
        assert_eq!(ledger.len(), 0);

        let body = String::from_utf8(ready[0].wire.to_vec()).unwrap();
        let lines: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3]["seq"], 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_max_wait_beyond_any_clock_gives_a_far_deadline_not_a_panic() {
        // A `Config` built in code skips the validation's bound on `max_wait`.
        let (mut b, mut ledger, mut ready) = batcher(
            JsonBody::NdJson,
            Format::JsonRaw,
            HttpBatching {
                max_wait: Duration::MAX,
                ..limits(10, 1 << 20)
            },
            false,
        );
        let (sb, _w) = batch_of(events(1));
        b.push(sb, &mut ledger, &mut ready);
        let deadline = b.deadline().expect("a body is being filled");
        assert!(deadline > Instant::now() + Duration::from_secs(300 * 24 * 3600));
    }

    #[test]
    fn dropping_the_ledger_leaves_batches_not_delivered() {
        let (mut b, mut ledger, mut ready) =
            batcher(JsonBody::NdJson, Format::JsonRaw, limits(2, 1 << 20), false);
        let (sb, w) = batch_of(events(4));
        b.push(sb, &mut ledger, &mut ready);
        ledger.release_all(&ready[0].acks);
        drop(ledger);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(w.wait()), Outcome::NotDelivered);
    }

    #[test]
    fn empty_batches_resolve_at_once() {
        let (mut b, mut ledger, mut ready) =
            batcher(JsonBody::NdJson, Format::JsonRaw, limits(2, 1 << 20), false);
        let (sb, mut w) = batch_of(Vec::new());
        b.push(sb, &mut ledger, &mut ready);
        assert!(ready.is_empty() && b.is_empty());
        assert_eq!(w.try_outcome(), Some(Outcome::Delivered));
    }

    #[test]
    fn bodies_stay_within_max_bytes_and_big_records_go_alone() {
        let max = 1024;
        let (mut b, mut ledger, mut ready) =
            batcher(JsonBody::Array, Format::JsonRaw, limits(1000, max), false);
        let mut evs = events(100);
        evs.insert(50, event(&format!(r#"{{"big":"{}"}}"#, "z".repeat(3000))));
        let (sb, _w) = batch_of(evs);
        b.push(sb, &mut ledger, &mut ready);
        ready.extend(b.flush());
        let mut seen = 0;
        for c in &ready {
            let v: Vec<serde_json::Value> = serde_json::from_slice(&c.wire).unwrap();
            assert_eq!(v.len(), c.events());
            if v.iter().any(|e| e.get("big").is_some()) {
                assert_eq!(v.len(), 1, "the big record goes alone");
            } else {
                assert!(c.wire.len() <= max, "{} > {max}", c.wire.len());
            }
            seen += v.len();
        }
        assert_eq!(seen, 101);
    }

    #[test]
    fn gzip_bodies_give_their_records_back() {
        let (mut b, mut ledger, mut ready) =
            batcher(JsonBody::Array, Format::Cef, limits(10, 1 << 20), true);
        let evs = events(5);
        let (sb, _w) = batch_of(evs.clone());
        b.push(sb, &mut ledger, &mut ready);
        let c = b.flush().unwrap();
        assert!(c.gzip);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&c.wire[..])
            .read_to_end(&mut plain)
            .unwrap();
        let v: Vec<String> = serde_json::from_slice(&plain).unwrap();
        assert_eq!(v.len(), 5);
        let enc = encoder(Format::Cef, SyslogStyle::None);
        let expected: Vec<Vec<u8>> = evs
            .iter()
            .map(|e| {
                let mut out = Vec::new();
                enc.encode(e, &mut out);
                out
            })
            .collect();
        assert_eq!(c.records().unwrap(), expected);
        assert_eq!(v[0].as_bytes(), &expected[0][..]);
    }

    #[test]
    fn a_split_request_keeps_every_record_its_format_and_its_batches() {
        let (mut b, mut ledger, mut ready) =
            batcher(JsonBody::Array, Format::JsonRaw, limits(10, 1 << 20), true);
        let (sb1, mut w1) = batch_of(events(4));
        let (sb2, mut w2) = batch_of(events(6));
        b.push(sb1, &mut ledger, &mut ready);
        b.push(sb2, &mut ledger, &mut ready);
        let chunk = ready.pop().unwrap();
        assert_eq!(chunk.events(), 10);
        let all = chunk.records().unwrap();
        let parts = chunk.split(&[0..3, 3..4, 4..10], &mut ledger).unwrap();
        ledger.release_all(&chunk.acks);
        assert_eq!(
            parts.iter().map(|p| p.events()).collect::<Vec<_>>(),
            [3, 1, 6]
        );
        let mut back = Vec::new();
        for p in &parts {
            assert!(p.gzip);
            assert_eq!(p.depth, 1);
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&p.wire[..])
                .read_to_end(&mut plain)
                .unwrap();
            let v: Vec<serde_json::Value> = serde_json::from_slice(&plain).unwrap();
            assert_eq!(v.len(), p.events(), "each part is one whole json array");
            back.extend(p.records().unwrap());
        }
        assert_eq!(back, all);
        assert_eq!(parts[0].acks, vec![0]);
        assert_eq!(parts[1].acks, vec![0]);
        assert_eq!(parts[2].acks, vec![1]);
        // A part can be split again, down to one record.
        let halves = parts[2].split(&[0..3, 3..6], &mut ledger).unwrap();
        ledger.release_all(&parts[2].acks);
        let ones = halves[0]
            .split(std::slice::from_ref(&(0..1)), &mut ledger)
            .unwrap();
        assert_eq!(ones[0].records().unwrap(), vec![all[4].clone()]);
        assert_eq!(ones[0].depth, 3);
        // Batch 1 is done when its two parts are; batch 2 when every piece of it is.
        ledger.release_all(&parts[0].acks);
        assert_eq!(w1.try_outcome(), None);
        ledger.release_all(&parts[1].acks);
        assert_eq!(w1.try_outcome(), Some(Outcome::Delivered));
        ledger.release_all(&halves[1].acks);
        ledger.release_all(&halves[0].acks);
        assert_eq!(w2.try_outcome(), None, "the one-record piece is still out");
        ledger.release_all(&ones[0].acks);
        assert_eq!(w2.try_outcome(), Some(Outcome::Delivered));
        assert_eq!(ledger.len(), 0);
    }
}
