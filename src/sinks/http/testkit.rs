//! Test helpers shared by the unit tests of the HTTP layers: encoders, batch limits,
//! a batcher fed like the delivery loop feeds it, TLS settings; events and sink
//! batches come from the sinks' `testkit`.

use super::batcher::Batcher;
use super::body::{BodyWriter, SealedChunk};
use super::ledger::AckLedger;
use crate::config::HttpBatching;
use crate::encode::{Encoder, EncoderOptions, Format, Framing, SyslogStyle};
use crate::event::Event;
use crate::route::SinkBatch;
use crate::sinks::delivery::EncodedBatch;
pub(crate) use crate::sinks::testkit::{batch_of, event};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) fn encoder(format: Format, syslog: SyslogStyle) -> Encoder {
    Encoder::new(EncoderOptions {
        format,
        syslog,
        framing: Framing::None,
        facility: 13,
        hostname: "h".into(),
        app_name: "c42fwd".into(),
    })
}

pub(crate) fn limits(max_events: usize, max_bytes: usize) -> HttpBatching {
    HttpBatching {
        max_events,
        max_bytes,
        max_wait: Duration::from_secs(1),
    }
}

pub(crate) fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| event(&format!(r#"{{"seq":{i},"note":"{}"}}"#, "x".repeat(i % 7))))
        .collect()
}

/// A batcher that takes sink batches as the delivery loop hands them over: encoded
/// with its encoder (records without a syslog header), then the token attached.
pub(crate) struct TestBatcher<W: BodyWriter> {
    inner: Batcher<W>,
    encoder: Encoder,
    records: EncodedBatch,
}

impl<W: BodyWriter> TestBatcher<W> {
    pub(crate) fn push(
        &mut self,
        sb: SinkBatch,
        ledger: &mut AckLedger,
        ready: &mut Vec<SealedChunk>,
    ) {
        self.records.encode(&self.encoder, &sb.batch);
        let id = self.inner.push(&sb.batch, &self.records, ledger, ready);
        ledger.attach(id, sb.ack);
    }

    pub(crate) fn flush(&mut self) -> Option<SealedChunk> {
        self.inner.flush()
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.inner.deadline()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// A [`TestBatcher`], an empty ledger, and no sealed body.
pub(crate) fn batcher<W: BodyWriter>(
    writer: W,
    format: Format,
    limits: HttpBatching,
    gzip: bool,
) -> (TestBatcher<W>, AckLedger, Vec<SealedChunk>) {
    let encoder = encoder(format, SyslogStyle::None);
    let inner = Batcher::new(writer, encoder.options(), limits, gzip);
    let b = TestBatcher {
        inner,
        encoder,
        records: EncodedBatch::default(),
    };
    (b, AckLedger::default(), Vec::new())
}
