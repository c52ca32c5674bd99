//! Test helpers shared by the unit tests of the HTTP layers: events, encoders, batch
//! limits and sink batches with their waiters.

use super::batcher::Batcher;
use super::body::{BodyWriter, SealedChunk};
use super::ledger::AckLedger;
use crate::ack::ack_set;
use crate::config::{HttpBatching, TlsOptions, TlsVersion};
use crate::encode::{Encoder, EncoderOptions, Format, Framing, SyslogStyle};
use crate::event::{Batch, Event, SourceKind};
use crate::route::SinkBatch;
use chrono::DateTime;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn event(json: &str) -> Event {
    Event::new(
        SourceKind::AuditLog,
        RawValue::from_string(json.to_string()).unwrap(),
        DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    )
}

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

pub(crate) fn sink_batch(events: Vec<Event>) -> (SinkBatch, crate::ack::AckWaiter) {
    let (mut t, w) = ack_set(1);
    let batch = Arc::new(Batch {
        source: Arc::from("audit"),
        events,
    });
    (
        SinkBatch {
            batch,
            ack: t.pop().unwrap(),
        },
        w,
    )
}

pub(crate) fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| event(&format!(r#"{{"seq":{i},"note":"{}"}}"#, "x".repeat(i % 7))))
        .collect()
}

/// A batcher (records without a syslog header), an empty ledger, and no sealed body.
pub(crate) fn batcher<W: BodyWriter>(
    writer: W,
    format: Format,
    limits: HttpBatching,
    gzip: bool,
) -> (Batcher<W>, AckLedger, Vec<SealedChunk>) {
    let b = Batcher::new(writer, encoder(format, SyslogStyle::None), limits, gzip);
    (b, AckLedger::default(), Vec::new())
}

/// TLS settings with no files: the built-in roots, verification on, TLS 1.2 or newer.
pub(crate) fn plain_tls() -> TlsOptions {
    TlsOptions {
        ca_file: None,
        client_cert: None,
        client_key: None,
        server_name: None,
        min_version: TlsVersion::Tls12,
        insecure_skip_verify: false,
    }
}
