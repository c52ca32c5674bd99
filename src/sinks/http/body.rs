//! Request bodies: how records go into a JSON body, the body formats, and a body
//! ready to go with the place of each of its records.
//!
//! Owned here: [`Embedding`] (a JSON record as a JSON value, anything else as a JSON
//! string), the [`BodyWriter`] trait with the plain formats of the generic
//! sink ([`JsonBody`]: NDJSON or a JSON array; HEC's envelopes are `hec::wire::HecEnvelope`), [`SealedChunk`] (the
//! bytes on the wire, gzip-compressed or not, and where each record lies in them, so
//! that a refused request can be split and its records dead-lettered as the encoder
//! made them) and gzip.
//!
//! Not here: cutting batches into bodies (`batcher`), sending them (`courier`).

use super::ledger::{AckId, AckLedger};
use crate::encode::{EncoderOptions, Format, SyslogStyle};
use crate::event::{Batch, Event};
use bytes::Bytes;
use std::borrow::Cow;
use std::io::{Read, Write};
use std::sync::Arc;

/// How a record goes into a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Embedding {
    /// The record is JSON (JSON formats without a syslog header): put in as a value.
    JsonValue,
    /// The record is text (CEF, LEEF, anything behind a syslog header): a JSON string.
    JsonString,
}

impl Embedding {
    pub(crate) fn for_encoding(opts: &EncoderOptions) -> Embedding {
        if matches!(opts.format, Format::JsonRaw | Format::JsonNormalized)
            && opts.syslog == SyslogStyle::None
        {
            Embedding::JsonValue
        } else {
            Embedding::JsonString
        }
    }

    /// Appends `record` to `body` as one JSON value and returns where it lies.
    pub(crate) fn write(self, body: &mut Vec<u8>, record: &[u8]) -> Span {
        let start = body.len();
        // An empty record is not a JSON value; the string form keeps the body valid.
        let value = self == Embedding::JsonValue && !record.trim_ascii().is_empty();
        if value {
            body.extend_from_slice(record);
            // A raw API event may be pretty-printed. Its CR and LF can only be
            // whitespace between tokens (JSON strings cannot hold them raw), and a
            // space means the same: replacing them keeps an NDJSON line one line.
            let rec = &mut body[start..];
            let mut from = 0;
            while let Some(i) = memchr::memchr2(b'\n', b'\r', &rec[from..]) {
                rec[from + i] = b' ';
                from += i + 1;
            }
        } else {
            // Serializing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *body, &*String::from_utf8_lossy(record));
        }
        Span {
            start,
            end: body.len(),
            quoted: !value,
        }
    }
}

/// Where one record's JSON value lies in an (uncompressed) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    end: usize,
    /// Put in as a JSON string (to be unescaped to get the record back).
    quoted: bool,
}

/// The format of a request body; one per sink.
pub(crate) trait BodyWriter: Send {
    /// Written once before the first record (`[` of a JSON array).
    fn open(&self, _body: &mut Vec<u8>) {}
    /// Written between two records.
    fn separator(&self, _body: &mut Vec<u8>) {}
    /// Written once after the last record.
    fn close(&self, _body: &mut Vec<u8>) {}
    /// Called before the events of `batch` are written (per-batch parts, once).
    fn begin_batch(&mut self, _batch: &Batch) {}
    /// Appends one event, whose encoded record is `record`; returns the record's span.
    fn write(&self, body: &mut Vec<u8>, event: &Event, record: &[u8], embedding: Embedding)
        -> Span;
}

/// The generic HTTP sink's bodies: one JSON document per line (NDJSON), or one JSON
/// array per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonBody {
    NdJson,
    Array,
}

impl BodyWriter for JsonBody {
    fn open(&self, body: &mut Vec<u8>) {
        if *self == JsonBody::Array {
            body.push(b'[');
        }
    }
    fn separator(&self, body: &mut Vec<u8>) {
        if *self == JsonBody::Array {
            body.push(b',');
        }
    }
    fn close(&self, body: &mut Vec<u8>) {
        if *self == JsonBody::Array {
            body.push(b']');
        }
    }
    fn write(&self, body: &mut Vec<u8>, _: &Event, record: &[u8], e: Embedding) -> Span {
        let span = e.write(body, record);
        if *self == JsonBody::NdJson {
            body.push(b'\n');
        }
        span
    }
}

/// One record in a body: where the writer's bytes for it lie (`item`, e.g. a whole HEC
/// envelope), where the record itself lies in them (`span`), its batch, and the event
/// it was encoded from (for the dead-letter file).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) span: Span,
    pub(super) ack: AckId,
    pub(super) origin: Option<Origin>,
}

/// Event `index` of `batch`: what a record was encoded from (an `Arc` and an index,
/// no copy of the event).
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(super) batch: Arc<Batch>,
    pub(super) index: usize,
}

/// The fixed parts of a sink's body format, to rebuild a body from some of its items.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    open: Vec<u8>,
    separator: Vec<u8>,
    pub(super) close: Vec<u8>,
}

impl Shape {
    pub(super) fn of(writer: &impl BodyWriter) -> Shape {
        let mut s = Shape::default();
        writer.open(&mut s.open);
        writer.separator(&mut s.separator);
        writer.close(&mut s.close);
        s
    }
}

/// A request body ready to go: the bytes on the wire and what they carry.
#[derive(Debug)]
pub(crate) struct SealedChunk {
    /// The body as sent (gzip-compressed when `gzip`).
    pub wire: Bytes,
    pub gzip: bool,
    pub(super) records: Vec<Item>,
    /// The ledger entries of the sink batches with records in this request, each
    /// holding one count in the ledger.
    pub acks: Vec<AckId>,
    pub(super) shape: Arc<Shape>,
    /// A part of a refused request (0: as the batcher cut it).
    pub(super) depth: u32,
    /// Known refused (the receiver named this record): dead-letter it with this
    /// reason and detail without sending it again.
    pub(super) refused: Option<(&'static str, String)>,
}

impl SealedChunk {
    pub(crate) fn events(&self) -> usize {
        self.records.len()
    }

    fn plain(&self) -> std::io::Result<Cow<'_, [u8]>> {
        Ok(if self.gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.wire[..]).read_to_end(&mut out)?;
            Cow::Owned(out)
        } else {
            Cow::Borrowed(&self.wire[..])
        })
    }

    /// The records, as the encoder made them (for the dead-letter file).
    /// The event each record was encoded from, when known, in record order.
    pub(crate) fn origins(&self) -> impl Iterator<Item = Option<&Event>> + '_ {
        self.records
            .iter()
            .map(|it| it.origin.as_ref().and_then(|o| o.batch.events.get(o.index)))
    }

    pub(crate) fn records(&self) -> std::io::Result<Vec<Vec<u8>>> {
        let body = self.plain()?;
        self.records
            .iter()
            .map(|it| {
                let s = it.span;
                let raw = body.get(s.start..s.end).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "record span out of body")
                })?;
                Ok(if s.quoted {
                    serde_json::from_slice::<String>(raw)
                        .map(String::into_bytes)
                        .unwrap_or_else(|_| raw.to_vec())
                } else {
                    raw.to_vec()
                })
            })
            .collect()
    }

    /// New requests holding the records of each of `parts` (ranges of record indices),
    /// each with one hold in `ledger` on its batches. The holds of `self` are left to
    /// the caller to release.
    pub(super) fn split(
        &self,
        parts: &[std::ops::Range<usize>],
        ledger: &mut AckLedger,
    ) -> std::io::Result<Vec<SealedChunk>> {
        let body = self.plain()?;
        let mut out = Vec::with_capacity(parts.len());
        for range in parts {
            let items = self.records.get(range.clone()).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "split out of request")
            })?;
            let mut plain = self.shape.open.clone();
            let mut records = Vec::with_capacity(items.len());
            let mut acks: Vec<AckId> = Vec::new();
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    plain.extend_from_slice(&self.shape.separator);
                }
                let bytes = body.get(it.start..it.end).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "record out of body")
                })?;
                let start = plain.len();
                plain.extend_from_slice(bytes);
                let shift = |at: usize| at - it.start + start;
                records.push(Item {
                    start,
                    end: plain.len(),
                    span: Span {
                        start: shift(it.span.start),
                        end: shift(it.span.end),
                        quoted: it.span.quoted,
                    },
                    ack: it.ack,
                    origin: it.origin.clone(),
                });
                if acks.last() != Some(&it.ack) {
                    acks.push(it.ack);
                    ledger.retain(it.ack);
                }
            }
            plain.extend_from_slice(&self.shape.close);
            let (wire, gzip) = compress(plain, self.gzip);
            out.push(SealedChunk {
                wire,
                gzip,
                records,
                acks,
                shape: self.shape.clone(),
                depth: self.depth + 1,
                refused: None,
            });
        }
        Ok(out)
    }
}

/// The body as it goes on the wire: gzip-compressed when `gzip` (and the compression
/// worked: compressing into memory does not fail, and if it ever did, the body goes
/// uncompressed rather than not at all).
pub(super) fn compress(body: Vec<u8>, gzip: bool) -> (Bytes, bool) {
    if gzip {
        if let Ok(z) = self::gzip(&body) {
            return (Bytes::from(z), true);
        }
    }
    (Bytes::from(body), false)
}

/// Compresses a body. Level 1: JSON and CEF compress well at any level, and the CPU
/// the sink saves is the CPU the encoders get.
fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::http::testkit::encoder;

    #[test]
    fn embedding_follows_the_encoding() {
        for (format, syslog, embedding) in [
            (Format::JsonRaw, SyslogStyle::None, Embedding::JsonValue),
            (
                Format::JsonNormalized,
                SyslogStyle::None,
                Embedding::JsonValue,
            ),
            (Format::Cef, SyslogStyle::None, Embedding::JsonString),
            (Format::JsonRaw, SyslogStyle::Rfc5424, Embedding::JsonString),
        ] {
            let opts = encoder(format, syslog).options().clone();
            assert_eq!(
                Embedding::for_encoding(&opts),
                embedding,
                "{format:?} {syslog:?}"
            );
        }
    }

    #[test]
    fn values_lose_line_breaks_and_strings_are_escaped() {
        let mut body = Vec::new();
        let s = Embedding::JsonValue.write(&mut body, b"{\n  \"a\": \"x\\ny\"\r\n}");
        assert!(!s.quoted);
        assert_eq!(&body[..], b"{   \"a\": \"x\\ny\"  }");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["a"], "x\ny");
        let mut body = Vec::new();
        let s = Embedding::JsonString.write(&mut body, b"CEF:0|a\\|b|c=\"d\"\nx");
        assert!(s.quoted);
        let back: String = serde_json::from_slice(&body).unwrap();
        assert_eq!(back, "CEF:0|a\\|b|c=\"d\"\nx");
        let mut body = Vec::new();
        Embedding::JsonValue.write(&mut body, b"  ");
        assert_eq!(&body[..], b"\"  \"");
    }
}
