//! What the Splunk HEC sink (`hec`) and the generic HTTP sink (`http`) share.
//!
//! Owned here:
//! - the HTTP client: [`build_client`] turns [`TlsOptions`] into a reqwest client
//!   (rustls). Without `ca_file` the built-in webpki roots (Mozilla's list, compiled in)
//!   are trusted; with `ca_file` only that bundle is, so that a private CA cannot be
//!   side-stepped by a public one. No proxy from the environment, no redirects.
//! - batching: a [`Batcher`] encodes the events of the [`SinkBatch`]es it is given and
//!   cuts them into request bodies ([`SealedChunk`]) bounded by `max_events` and
//!   `max_bytes` (uncompressed body size; one record larger than that goes alone), and
//!   tells the caller when `max_wait` is up. Gzip happens when a chunk is sealed.
//! - the [`AckLedger`]: one request may carry several sink batches and one sink batch
//!   may span several requests. Each batch's [`AckToken`] resolves only when every
//!   request holding its records was delivered or dead-lettered; dropping the ledger
//!   (shutdown) drops the tokens, which counts as not delivered (ARCHITECTURE.md, invariant 1).
//! - classification of an answer ([`classify_status`]: 2xx delivered; 408, 429, 5xx,
//!   timeouts and connection errors retried; 400, 413 and 422 refuse the data; any
//!   other status stalls) and the one retry loop around a request
//!   ([`Courier::post_chunk`]), with the shared backoff that honours `Retry-After`
//!   (`crate::retry`).
//! - stalls: a status that says the set-up is wrong (401, 403, 404, 405, ...) holds the
//!   request and retries it with backoff; the route waits, nothing is dead-lettered, and
//!   `stall` reports it (ERROR every minute, `sink_stalled`, `/health`) until the
//!   receiver takes a request again.
//! - refused data ([`Courier::send_all`]): a request whose data is refused is split
//!   (around the record the receiver names, else in halves) until each refused record
//!   is alone; those go to the sink's dead-letter file with the receiver's reason,
//!   counted in `sink_discarded{reason}`; every other record is delivered. A batch
//!   counts as delivered once all its records are delivered or dead-lettered (the
//!   latter by explicit policy). A full dead-letter file stalls the sink instead.
//!
//! Not here: the body formats (each sink has its [`BodyWriter`]), HEC's health check
//! and indexer acknowledgements (`hec`), and the backoff delays (`crate::retry`).
//!
//! **Invariant (ARCHITECTURE.md, 6: secrets never leave):** secrets only ever travel in
//! headers marked sensitive; error texts, logs and dead-letter reasons are passed through
//! [`Courier::redact`], and URLs are shown through `config::redacted_url`.

use super::stall::Stall;
use super::{DeadLetterFile, SinkError, SinkMetrics};
use crate::ack::AckToken;
use crate::config::{HttpBatching, TlsOptions, TlsVersion};
use crate::encode::{Encoder, EncoderOptions, Format, SyslogStyle};
use crate::event::{Batch, Event};
use crate::metrics::label;
use crate::retry::retry_after;
use crate::retry::BackoffPolicy;
use crate::route::SinkBatch;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

// ---------------------------------------------------------------------------------
// The client

/// Builds the reqwest client of one HTTP-based sink. Fails (not retriable) when a TLS
/// file cannot be read or parsed: that does not heal by waiting.
pub(crate) fn build_client(
    sink: &str,
    shown_url: &str,
    tls: &TlsOptions,
    request_timeout: Duration,
) -> Result<reqwest::Client, SinkError> {
    let err = |detail: String| SinkError::Http {
        url: shown_url.to_string(),
        kind: "tls_config",
        retriable: false,
        detail,
    };
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| err(format!("cannot read {what} {}: {e}", path.display())))
    };
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        // A sink talks to the host in its URL: a proxy comes only from the config,
        // never from `HTTPS_PROXY` in the service's environment.
        .no_proxy()
        // A redirect would resend the credentials somewhere else; a 3xx is reported
        // (and retried) instead, so the operator fixes the URL.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        // Below the 60 s idle timeout of most servers and load balancers, so that a
        // pooled connection is not reused just as the server closes it.
        .pool_idle_timeout(Duration::from_secs(50))
        .min_tls_version(match tls.min_version {
            TlsVersion::Tls12 => reqwest::tls::Version::TLS_1_2,
            TlsVersion::Tls13 => reqwest::tls::Version::TLS_1_3,
        });
    if let Some(ca) = &tls.ca_file {
        let pem = read("tls.ca_file", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            err(format!(
                "tls.ca_file {}: {}",
                ca.display(),
                error_chain(&e.without_url())
            ))
        })?;
        if certs.is_empty() {
            return Err(err(format!(
                "tls.ca_file {} holds no PEM certificate",
                ca.display()
            )));
        }
        b = b.tls_built_in_root_certs(false);
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        let mut pem = read("tls.client_cert", cert)?;
        pem.push(b'\n');
        pem.extend_from_slice(&read("tls.client_key", key)?);
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            err(format!(
                "tls.client_cert {} / tls.client_key {}: {}",
                cert.display(),
                key.display(),
                error_chain(&e.without_url())
            ))
        })?;
        b = b.identity(id);
    }
    if tls.insecure_skip_verify {
        tracing::warn!(
            sink,
            url = shown_url,
            "WARNING: tls.insecure_skip_verify is on: the server's certificate is not checked, \
             so anyone on the network path can read and change what this sink sends"
        );
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| {
        err(format!(
            "cannot build the http client: {}",
            error_chain(&e.without_url())
        ))
    })
}

/// An error and its causes, joined with `: ` (reqwest's own text says little; the
/// cause, such as "connection refused" or a certificate problem, is in the chain).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

/// A server's text made safe for one log line: control characters become spaces and
/// it is cut to 200 characters (an HTML error page must not flood the log).
pub(crate) fn server_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for c in text.trim().chars().take(200) {
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

// ---------------------------------------------------------------------------------
// Classification

/// What to do after an answer (or a failed attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The receiver has the request.
    Accepted,
    /// Weather (busy, unreachable, timed out): try the same request again after the
    /// backoff (or `retry_after`).
    Retry {
        /// The `sink_errors{kind}` label.
        kind: &'static str,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// A fault of the set-up that no record is to blame for and that waiting alone does
    /// not fix (credentials refused, wrong URL or method): the route stalls, the same
    /// request is tried again with backoff, and the stall shows in logs, metrics and
    /// `/health` (`stall`). Nothing is dead-lettered.
    Stall {
        /// The `sink_errors{kind}` and `sink_stalled{reason}` label.
        kind: &'static str,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// The receiver refused the data of the request for good: split the request until
    /// the refused records are alone, dead-letter those, deliver the rest.
    Reject {
        /// The `sink_discarded{reason}` label (a fixed string per status).
        reason: &'static str,
        detail: String,
        /// The index of the (first) refused record in the request, when the receiver
        /// names it (HEC's `invalid-event-number`).
        first_bad: Option<usize>,
    },
}

impl Verdict {
    /// The status and the server's text (empty for [`Verdict::Accepted`]).
    pub(crate) fn detail(&self) -> &str {
        match self {
            Verdict::Accepted => "",
            Verdict::Retry { detail, .. }
            | Verdict::Stall { detail, .. }
            | Verdict::Reject { detail, .. } => detail,
        }
    }
}

/// The rule both sinks share for an HTTP status:
/// - 2xx: delivered;
/// - 408 (request timeout), 429 (too many requests), every 5xx: retried (weather);
/// - 400 (bad request), 413 (too large) and 422 (unprocessable): the data is refused,
///   [`Verdict::Reject`] (the request is split to find the records to blame; a 413
///   heals by splitting alone);
/// - any other status, 401 and 403 (credentials), 404 and 405 (URL, method), 407, 411,
///   415, 1xx and 3xx (redirects are not followed) included: [`Verdict::Stall`]. These
///   say the set-up is wrong, not a record; dead-lettering would send every record to
///   the dead-letter file at full speed until someone notices.
pub(crate) fn classify_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: String,
) -> Verdict {
    let retry = |kind| Verdict::Retry {
        kind,
        retry_after,
        detail: detail.clone(),
    };
    let stall = |kind| Verdict::Stall {
        kind,
        retry_after,
        detail: detail.clone(),
    };
    let reject = |reason| Verdict::Reject {
        reason,
        detail: detail.clone(),
        first_bad: None,
    };
    match status.as_u16() {
        200..=299 => Verdict::Accepted,
        408 => retry("http_408"),
        429 => retry("http_429"),
        503 => retry("http_503"),
        500..=599 => retry("http_5xx"),
        400 => reject("http_400"),
        413 => reject("http_413"),
        422 => reject("http_422"),
        401 => stall("http_401"),
        403 => stall("http_403"),
        404 => stall("http_404"),
        405 => stall("http_405"),
        _ if status.is_client_error() => stall("http_4xx"),
        _ => stall("http_unexpected"),
    }
}

/// What the operator is told to look at while a sink is stalled for `kind`.
pub(crate) fn stall_hint(kind: &str) -> &'static str {
    match kind {
        "http_401" | "http_403" | "http_407" => {
            "the receiver refused the credentials (a wrong, rotated or disabled token?)"
        }
        "http_404" | "http_405" => "the receiver has no such endpoint (check the url)",
        "hec_index" => "splunk refused the index (not allowed for this token?)",
        "hec_channel" => "splunk refused the request channel",
        _ => "the receiver refuses every request (check the sink's settings)",
    }
}

/// `http 400 Bad Request` (+ `: text` when there is one).
pub(crate) fn status_detail(status: StatusCode, text: &str) -> String {
    let mut s = format!("http {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        s.push(' ');
        s.push_str(reason);
    }
    if !text.is_empty() {
        s.push_str(": ");
        s.push_str(text);
    }
    s
}

/// A failed attempt that got no answer: timeouts and connection errors (refused,
/// reset, TLS handshake) are retried; so is anything else reqwest reports while
/// sending, except a request it could not even build (a bug, not weather).
fn transport_verdict(e: reqwest::Error) -> Verdict {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_builder() {
        // A request that cannot be built is our bug, not weather nor the data's fault:
        // hold it where it shows.
        return Verdict::Stall {
            kind: "http_request",
            retry_after: None,
            detail: error_chain(&e.without_url()),
        };
    } else {
        "request"
    };
    Verdict::Retry {
        kind,
        retry_after: None,
        detail: error_chain(&e.without_url()),
    }
}

// ---------------------------------------------------------------------------------
// Bodies

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

/// A request body being filled.
struct Chunk {
    body: Vec<u8>,
    records: Vec<Item>,
    acks: Vec<AckId>,
    opened: Instant,
}

/// One record in a body: where the writer's bytes for it lie (`item`, e.g. a whole HEC
/// envelope), where the record itself lies in them (`span`), and its batch.
#[derive(Debug, Clone, Copy)]
struct Item {
    start: usize,
    end: usize,
    span: Span,
    ack: AckId,
}

/// The fixed parts of a sink's body format, to rebuild a body from some of its items.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    open: Vec<u8>,
    separator: Vec<u8>,
    close: Vec<u8>,
}

impl Shape {
    fn of(writer: &impl BodyWriter) -> Shape {
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
    records: Vec<Item>,
    /// The ledger entries of the sink batches with records in this request, each
    /// holding one count in the ledger.
    pub acks: Vec<AckId>,
    shape: Arc<Shape>,
    /// A part of a refused request (0: as the batcher cut it).
    depth: u32,
    /// Known refused (the receiver named this record): dead-letter it with this
    /// reason and detail without sending it again.
    refused: Option<(&'static str, String)>,
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
    fn split(
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
fn compress(body: Vec<u8>, gzip: bool) -> (Bytes, bool) {
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

/// Encodes sink batches and cuts them into request bodies.
pub(crate) struct Batcher<W: BodyWriter> {
    writer: W,
    encoder: Encoder,
    embedding: Embedding,
    limits: HttpBatching,
    gzip: bool,
    /// Bytes `close` adds (counted against `max_bytes` before it is written).
    close_len: usize,
    shape: Arc<Shape>,
    record: Vec<u8>,
    current: Option<Chunk>,
}

impl<W: BodyWriter> Batcher<W> {
    pub(crate) fn new(writer: W, encoder: Encoder, limits: HttpBatching, gzip: bool) -> Self {
        let shape = Arc::new(Shape::of(&writer));
        Batcher {
            close_len: shape.close.len(),
            shape,
            embedding: Embedding::for_encoding(encoder.options()),
            writer,
            encoder,
            limits,
            gzip,
            record: Vec::new(),
            current: None,
        }
    }

    /// Takes one sink batch: its token goes into `ledger`, its records into bodies;
    /// bodies that are full are sealed into `ready`, in order.
    pub(crate) fn push(
        &mut self,
        sb: SinkBatch,
        ledger: &mut AckLedger,
        ready: &mut Vec<SealedChunk>,
    ) {
        let SinkBatch { batch, ack } = sb;
        let id = ledger.open(ack);
        self.writer.begin_batch(&batch);
        for event in &batch.events {
            self.record.clear();
            self.encoder.encode(event, &mut self.record);
            self.add(event, id, ledger, ready);
        }
        // Every record of the batch is in some body now: from here on the token
        // resolves when the last of those bodies is delivered.
        ledger.release(id);
    }

    fn add(
        &mut self,
        event: &Event,
        id: AckId,
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
            .write(&mut chunk.body, event, &self.record, self.embedding);
        if !chunk.records.is_empty() && chunk.body.len() + self.close_len > limits.max_bytes {
            // It does not fit: the body goes as it was, the record starts the next.
            chunk.body.truncate(mark);
            ready.push(self.seal(chunk));
            chunk = self.open();
            start = chunk.body.len();
            span = self
                .writer
                .write(&mut chunk.body, event, &self.record, self.embedding);
        }
        chunk.records.push(Item {
            start,
            end: chunk.body.len(),
            span,
            ack: id,
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

// ---------------------------------------------------------------------------------
// Acknowledgements

/// A ledger entry: one sink batch's token.
pub(crate) type AckId = u64;

/// The tokens of the sink batches whose records are in requests not yet settled.
///
/// An entry counts its holds: one while the batcher is still cutting the batch, plus
/// one per request that carries records of it. The token resolves as delivered when
/// the count reaches zero. Dropping the ledger drops the tokens left in it, and a
/// dropped token counts as not delivered.
#[derive(Debug, Default)]
pub(crate) struct AckLedger {
    next: AckId,
    open: HashMap<AckId, (AckToken, usize)>,
}

impl AckLedger {
    pub(crate) fn open(&mut self, token: AckToken) -> AckId {
        let id = self.next;
        self.next += 1;
        self.open.insert(id, (token, 1));
        id
    }

    pub(crate) fn retain(&mut self, id: AckId) {
        if let Some((_, holds)) = self.open.get_mut(&id) {
            *holds += 1;
        }
    }

    pub(crate) fn release(&mut self, id: AckId) {
        if let Some((_, holds)) = self.open.get_mut(&id) {
            *holds -= 1;
            if *holds == 0 {
                if let Some((token, _)) = self.open.remove(&id) {
                    token.delivered();
                }
            }
        }
    }

    pub(crate) fn release_all(&mut self, ids: &[AckId]) {
        for id in ids {
            self.release(*id);
        }
    }

    /// Batches not yet resolved.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }
}

// ---------------------------------------------------------------------------------
// Sending

/// What became of one attempt at a request (after the retries and stalls).
#[derive(Debug)]
pub(crate) enum Answer {
    /// 2xx; the response body (HEC's carries the `ackId`).
    Accepted(Bytes),
    /// The data was refused for good (not logged yet: the caller splits or
    /// dead-letters).
    Rejected {
        reason: &'static str,
        detail: String,
        first_bad: Option<usize>,
    },
}

/// Sends one sink's requests: the client, the target, the headers (credentials
/// included, marked sensitive), the retry policy, the metrics and the dead-letter file.
pub(crate) struct Courier {
    pub sink: String,
    pub client: reqwest::Client,
    pub url: Url,
    /// `url` as shown in logs and errors (no password).
    pub shown: String,
    pub headers: HeaderMap,
    pub retry: BackoffPolicy,
    pub metrics: SinkMetrics,
    pub dead_letter: DeadLetterFile,
    /// Secret values (and encodings of them) to blank out of any text we log or store,
    /// in case a server echoes a request header back in an error page.
    secrets: Vec<String>,
    /// The receiver refuses every request (credentials, URL).
    stall: Stall,
}

/// The largest answer body read; an answer is a status and a short JSON text.
const MAX_ANSWER: usize = 64 * 1024;

impl Courier {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sink: &str,
        client: reqwest::Client,
        url: Url,
        headers: HeaderMap,
        retry: BackoffPolicy,
        metrics: SinkMetrics,
        dead_letter: DeadLetterFile,
        secrets: Vec<String>,
    ) -> Self {
        Courier {
            sink: sink.to_string(),
            client,
            shown: crate::config::redacted_url(&url),
            url,
            headers,
            retry,
            stall: Stall::new(&metrics.metrics, sink),
            metrics,
            dead_letter,
            secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(),
        }
    }

    /// Logs a WARN when credentials would travel over plain `http://`: anyone on the
    /// network path can read them there.
    pub(crate) fn warn_if_plaintext_credentials(&self, what: &str) {
        if self.url.scheme() == "http" && !self.secrets.is_empty() {
            tracing::warn!(
                sink = %self.sink,
                url = %self.shown,
                "the {what} is sent over plain http: anyone on the network path can read \
                 it and the records; use an https url"
            );
        }
    }

    /// Reports a stall seen outside [`post_chunk`](Self::post_chunk) (HEC's ack
    /// endpoint refusing the token); `detail` is already redacted.
    pub(crate) fn stalled(&mut self, kind: &'static str, detail: &str) {
        self.stall.failed(kind, detail, stall_hint(kind));
    }

    /// The receiver took a request: a stall is over.
    pub(crate) fn resumed(&mut self) {
        self.stall.resumed();
    }

    /// `text` with every secret value replaced by `[redacted]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }

    pub(crate) fn error(&self, kind: &'static str, retriable: bool, detail: &str) -> SinkError {
        SinkError::Http {
            url: self.shown.clone(),
            kind,
            retriable,
            detail: self.redact(detail),
        }
    }

    /// Sends one request body to `self.url` until it is accepted or its data refused
    /// for good, through weather (retried with backoff, a WARN per retry) and stalls
    /// (retried with backoff, reported by [`Stall`]). `classify` reads an answer
    /// (status, body, `Retry-After`). Returns `Ok(None)` when `shutdown` interrupted it,
    /// and an error when the retry policy gave up.
    pub(crate) async fn post_chunk(
        &mut self,
        chunk: &SealedChunk,
        classify: impl Fn(StatusCode, &[u8], Option<Duration>) -> Verdict,
        shutdown: &CancellationToken,
    ) -> Result<Option<Answer>, SinkError> {
        let mut backoff = None;
        loop {
            let attempt = async {
                let resp = self
                    .client
                    .post(self.url.clone())
                    .headers(self.headers.clone())
                    .body(chunk.wire.clone())
                    .send()
                    .await;
                match resp {
                    Ok(resp) => {
                        let status = resp.status();
                        let ra = retry_after(resp.headers());
                        match read_limited(resp).await {
                            Ok(body) => (classify(status, &body, ra), body),
                            Err(e) => (transport_verdict(e), Bytes::new()),
                        }
                    }
                    Err(e) => (transport_verdict(e), Bytes::new()),
                }
            };
            let (verdict, body) = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(None),
                r = attempt => r,
            };
            let (kind, retry_after, detail, stalled) = match verdict {
                Verdict::Accepted => {
                    if backoff.is_some() && !self.stall.is_stalled() {
                        tracing::info!(sink = %self.sink, url = %self.shown, "request accepted after retry");
                    }
                    self.stall.resumed();
                    return Ok(Some(Answer::Accepted(body)));
                }
                Verdict::Reject {
                    reason,
                    detail,
                    first_bad,
                } => {
                    // The receiver read the request: whatever stalled it is fixed.
                    self.stall.resumed();
                    return Ok(Some(Answer::Rejected {
                        reason,
                        detail: self.redact(&detail),
                        first_bad,
                    }));
                }
                Verdict::Retry {
                    kind,
                    retry_after,
                    detail,
                } => (kind, retry_after, detail, false),
                Verdict::Stall {
                    kind,
                    retry_after,
                    detail,
                } => (kind, retry_after, detail, true),
            };
            let e = self.error(kind, true, &detail);
            self.metrics.error(&e);
            let delay = backoff
                .get_or_insert_with(|| self.retry.backoff())
                .next_delay_after(retry_after);
            let Some(delay) = delay else {
                tracing::error!(sink = %self.sink, error = %e, "retries used up; the sink stops");
                return Err(e);
            };
            if stalled {
                self.stall.failed(kind, &e.to_string(), stall_hint(kind));
            } else {
                tracing::warn!(sink = %self.sink, error = %e, retry_in = ?delay, "request failed; will send it again");
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Sends `chunk` until every record in it is delivered or dead-lettered. A request
    /// whose data the receiver refuses is split: around the record the receiver names
    /// (which is dead-lettered at once), or else in halves, until each refused record
    /// is alone in its request; a refused single record goes to the dead-letter file
    /// with the receiver's reason. `accepted` gets every request the receiver took
    /// (the whole chunk, or its parts) and may hand back a request to send again.
    /// `Ok(false)` when `shutdown` interrupted it.
    pub(crate) async fn send_all(
        &mut self,
        chunk: SealedChunk,
        classify: impl Fn(StatusCode, &[u8], Option<Duration>) -> Verdict,
        ledger: &mut AckLedger,
        shutdown: &CancellationToken,
        mut accepted: impl FnMut(&Courier, SealedChunk, Bytes, &mut AckLedger) -> Option<SealedChunk>,
    ) -> Result<bool, SinkError> {
        let mut work = std::collections::VecDeque::from([chunk]);
        while let Some(chunk) = work.pop_front() {
            if let Some((reason, detail)) = &chunk.refused {
                if !self
                    .dead_letter(&chunk, reason, detail, ledger, shutdown)
                    .await?
                {
                    return Ok(false);
                }
                continue;
            }
            let answer = match self.post_chunk(&chunk, &classify, shutdown).await? {
                None => return Ok(false),
                Some(a) => a,
            };
            match answer {
                Answer::Accepted(body) => {
                    if let Some(again) = accepted(self, chunk, body, ledger) {
                        work.push_front(again);
                    }
                }
                Answer::Rejected { reason, detail, .. } if chunk.events() <= 1 => {
                    if !self
                        .dead_letter(&chunk, reason, &detail, ledger, shutdown)
                        .await?
                    {
                        return Ok(false);
                    }
                }
                Answer::Rejected {
                    reason,
                    detail,
                    first_bad,
                } => {
                    let n = chunk.events();
                    let parts: Vec<std::ops::Range<usize>> = match first_bad {
                        // The receiver names the record: what comes before it is good,
                        // what follows is unknown.
                        Some(k) if k < n => [0..k, k..k + 1, k + 1..n]
                            .into_iter()
                            .filter(|r| !r.is_empty())
                            .collect(),
                        _ => vec![0..n / 2, n / 2..n],
                    };
                    let mut split = chunk.split(&parts, ledger).map_err(|e| {
                        self.error(
                            "dead_letter",
                            false,
                            &format!("cannot split a refused request: {e}"),
                        )
                    })?;
                    if let Some(k) = first_bad.filter(|&k| k < n) {
                        let i = usize::from(k > 0);
                        split[i].refused = Some((reason, detail.clone()));
                    }
                    ledger.release_all(&chunk.acks);
                    self.metrics
                        .metrics
                        .sink_request_splits
                        .get_or_create(&label("sink", &self.sink))
                        .inc();
                    let log = |msg: &str| {
                        if chunk.depth == 0 {
                            tracing::warn!(sink = %self.sink, url = %self.shown, reason = %detail, records = n, first_bad, "{msg}");
                        } else {
                            tracing::debug!(sink = %self.sink, reason = %detail, records = n, first_bad, "{msg}");
                        }
                    };
                    log(
                        "the receiver refused the data of a request; splitting it to deliver \
                         the good records and dead-letter only the refused ones",
                    );
                    for part in split.into_iter().rev() {
                        work.push_front(part);
                    }
                }
            }
        }
        Ok(true)
    }

    /// The receiver has the request: count it and resolve what it completes.
    pub(crate) fn delivered(&self, chunk: &SealedChunk, ledger: &mut AckLedger) {
        self.metrics.events.inc_by(chunk.events() as u64);
        self.metrics.bytes.inc_by(chunk.wire.len() as u64);
        ledger.release_all(&chunk.acks);
    }

    /// Records refused for good: they go to the dead-letter file with `detail` as the
    /// reason, are counted under `reason`, logged once, and count as delivered by
    /// explicit policy. While the dead-letter file is full the sink waits
    /// (with backoff; `DeadLetterFile` reports the stall) and nothing resolves. An
    /// unwritable dead-letter file stops the sink (its tokens then count as not
    /// delivered). `Ok(false)` when `shutdown` came first.
    pub(crate) async fn dead_letter(
        &mut self,
        chunk: &SealedChunk,
        reason: &'static str,
        detail: &str,
        ledger: &mut AckLedger,
        shutdown: &CancellationToken,
    ) -> Result<bool, SinkError> {
        let records = chunk.records().map_err(|e| {
            self.error(
                "dead_letter",
                false,
                &format!("cannot recover the records of a rejected request: {e}"),
            )
        })?;
        for r in &records {
            self.dead_letter.push(detail, r);
        }
        let mut backoff = None;
        let n = loop {
            match self.dead_letter.flush().await {
                Ok(n) => break n,
                Err(e @ SinkError::DeadLetterFull { .. }) => {
                    self.metrics.error(&e);
                    let Some(delay) = backoff
                        .get_or_insert_with(|| self.retry.backoff())
                        .next_delay()
                    else {
                        tracing::error!(sink = %self.sink, error = %e, "retries used up; the sink stops");
                        return Err(e);
                    };
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ok(false),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        };
        self.metrics.discarded(reason, n as u64);
        tracing::error!(
            sink = %self.sink,
            url = %self.shown,
            reason = detail,
            records = n,
            dead_letter = %self.dead_letter.path().display(),
            "the receiver refused records for good: they went to the dead-letter file and the route goes on"
        );
        ledger.release_all(&chunk.acks);
        Ok(true)
    }
}

/// Reads at most [`MAX_ANSWER`] bytes of an answer body.
pub(crate) async fn read_limited(mut resp: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(part) = resp.chunk().await? {
        let room = MAX_ANSWER - out.len();
        out.extend_from_slice(&part[..part.len().min(room)]);
        if out.len() >= MAX_ANSWER {
            break;
        }
    }
    Ok(Bytes::from(out))
}

/// Sleeps until `deadline`, or forever when there is none (for `select!` arms).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{ack_set, Outcome};
    use crate::encode::Framing;
    use crate::event::SourceKind;
    use chrono::DateTime;
    use serde_json::value::RawValue;
    use std::sync::Arc;

    fn event(json: &str) -> Event {
        Event::new(
            SourceKind::AuditLog,
            RawValue::from_string(json.to_string()).unwrap(),
            DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        )
    }

    fn encoder(format: Format, syslog: SyslogStyle) -> Encoder {
        Encoder::new(EncoderOptions {
            format,
            syslog,
            framing: Framing::None,
            facility: 13,
            hostname: "h".into(),
            app_name: "c42fwd".into(),
        })
    }

    /// NDJSON, the simplest writer, for the batcher tests.
    struct Lines;
    impl BodyWriter for Lines {
        fn write(&self, body: &mut Vec<u8>, _: &Event, record: &[u8], e: Embedding) -> Span {
            let span = e.write(body, record);
            body.push(b'\n');
            span
        }
    }

    struct Array;
    impl BodyWriter for Array {
        fn open(&self, body: &mut Vec<u8>) {
            body.push(b'[');
        }
        fn separator(&self, body: &mut Vec<u8>) {
            body.push(b',');
        }
        fn close(&self, body: &mut Vec<u8>) {
            body.push(b']');
        }
        fn write(&self, body: &mut Vec<u8>, _: &Event, record: &[u8], e: Embedding) -> Span {
            e.write(body, record)
        }
    }

    fn limits(max_events: usize, max_bytes: usize) -> HttpBatching {
        HttpBatching {
            max_events,
            max_bytes,
            max_wait: Duration::from_secs(1),
        }
    }

    fn sink_batch(events: Vec<Event>) -> (SinkBatch, crate::ack::AckWaiter) {
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

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| event(&format!(r#"{{"seq":{i},"note":"{}"}}"#, "x".repeat(i % 7))))
            .collect()
    }

    #[test]
    fn status_classification() {
        let c = |s: u16| classify_status(StatusCode::from_u16(s).unwrap(), None, String::new());
        for s in [200, 201, 204] {
            assert_eq!(c(s), Verdict::Accepted, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(c(s), Verdict::Retry { .. }), "{s}");
        }
        for (s, kind) in [
            (401, "http_401"),
            (403, "http_403"),
            (404, "http_404"),
            (405, "http_405"),
            (407, "http_4xx"),
            (415, "http_4xx"),
            (301, "http_unexpected"),
            (302, "http_unexpected"),
        ] {
            assert_eq!(
                c(s),
                Verdict::Stall {
                    kind,
                    retry_after: None,
                    detail: String::new()
                },
                "{s}"
            );
        }
        for (s, label) in [(400, "http_400"), (413, "http_413"), (422, "http_422")] {
            assert_eq!(
                c(s),
                Verdict::Reject {
                    reason: label,
                    detail: String::new(),
                    first_bad: None,
                },
                "{s}"
            );
        }
        let v = classify_status(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(3)),
            "busy".into(),
        );
        assert_eq!(
            v,
            Verdict::Retry {
                kind: "http_503",
                retry_after: Some(Duration::from_secs(3)),
                detail: "busy".into()
            }
        );
    }

    #[test]
    fn server_text_is_one_short_line() {
        let body = format!("<html>\r\n<b>oops</b>\n{}", "y".repeat(1000));
        let t = server_text(body.as_bytes());
        assert!(!t.contains('\n') && !t.contains('\r'));
        assert_eq!(t.chars().count(), 200);
    }

    #[test]
    fn embedding_follows_the_encoding() {
        let opts = |format, syslog| encoder(format, syslog).options().clone();
        assert_eq!(
            Embedding::for_encoding(&opts(Format::JsonRaw, SyslogStyle::None)),
            Embedding::JsonValue
        );
        assert_eq!(
            Embedding::for_encoding(&opts(Format::JsonNormalized, SyslogStyle::None)),
            Embedding::JsonValue
        );
        assert_eq!(
            Embedding::for_encoding(&opts(Format::Cef, SyslogStyle::None)),
            Embedding::JsonString
        );
        assert_eq!(
            Embedding::for_encoding(&opts(Format::JsonRaw, SyslogStyle::Rfc5424)),
            Embedding::JsonString
        );
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

    #[test]
    fn batches_are_cut_by_events_and_tokens_wait_for_every_part() {
        let mut b = Batcher::new(
            Lines,
            encoder(Format::JsonRaw, SyslogStyle::None),
            limits(4, 1 << 20),
            false,
        );
        let mut ledger = AckLedger::default();
        let mut ready = Vec::new();
        let (sb1, mut w1) = sink_batch(events(6));
        let (sb2, mut w2) = sink_batch(events(3));
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
        let mut b = Batcher::new(
            Lines,
            encoder(Format::JsonRaw, SyslogStyle::None),
            HttpBatching {
                max_wait: Duration::MAX,
                ..limits(10, 1 << 20)
            },
            false,
        );
        let mut ledger = AckLedger::default();
        let mut ready = Vec::new();
        let (sb, _w) = sink_batch(events(1));
        b.push(sb, &mut ledger, &mut ready);
        let deadline = b.deadline().expect("a body is being filled");
        assert!(deadline > Instant::now() + Duration::from_secs(300 * 24 * 3600));
    }

    #[test]
    fn dropping_the_ledger_leaves_batches_not_delivered() {
        let mut b = Batcher::new(
            Lines,
            encoder(Format::JsonRaw, SyslogStyle::None),
            limits(2, 1 << 20),
            false,
        );
        let mut ledger = AckLedger::default();
        let mut ready = Vec::new();
        let (sb, w) = sink_batch(events(4));
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
        let mut b = Batcher::new(
            Lines,
            encoder(Format::JsonRaw, SyslogStyle::None),
            limits(2, 1 << 20),
            false,
        );
        let mut ledger = AckLedger::default();
        let mut ready = Vec::new();
        let (sb, mut w) = sink_batch(Vec::new());
        b.push(sb, &mut ledger, &mut ready);
        assert!(ready.is_empty() && b.is_empty());
        assert_eq!(w.try_outcome(), Some(Outcome::Delivered));
    }

    #[test]
    fn bodies_stay_within_max_bytes_and_big_records_go_alone() {
        let max = 1024;
        let mut b = Batcher::new(
            Array,
            encoder(Format::JsonRaw, SyslogStyle::None),
            limits(1000, max),
            false,
        );
        let mut ledger = AckLedger::default();
        let mut ready = Vec::new();
        let mut evs = events(100);
        evs.insert(50, event(&format!(r#"{{"big":"{}"}}"#, "z".repeat(3000))));
        let (sb, _w) = sink_batch(evs);
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
        let mut b = Batcher::new(
            Array,
            encoder(Format::Cef, SyslogStyle::None),
            limits(10, 1 << 20),
            true,
        );
        let mut ledger = AckLedger::default();
        let mut ready = Vec::new();
        let evs = events(5);
        let (sb, _w) = sink_batch(evs.clone());
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
        let mut b = Batcher::new(
            Array,
            encoder(Format::JsonRaw, SyslogStyle::None),
            limits(10, 1 << 20),
            true,
        );
        let mut ledger = AckLedger::default();
        let mut ready = Vec::new();
        let (sb1, mut w1) = sink_batch(events(4));
        let (sb2, mut w2) = sink_batch(events(6));
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

    /// A receiver that refuses (400) any request holding a record with a `seq` in
    /// `bad`, as a generic HTTP endpoint does; counts the requests.
    async fn refusing_receiver(
        bad: &'static [u64],
    ) -> (Url, Arc<std::sync::Mutex<(u64, Vec<u64>)>>) {
        let seen = Arc::new(std::sync::Mutex::new((0u64, Vec::new())));
        let state = seen.clone();
        let app = axum::Router::new().route(
            "/in",
            axum::routing::post(move |body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let v: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                    let seqs: Vec<u64> = v.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
                    let mut s = state.lock().unwrap();
                    s.0 += 1;
                    if seqs.iter().any(|q| bad.contains(q)) {
                        (axum::http::StatusCode::BAD_REQUEST, "bad record")
                    } else {
                        s.1.extend(seqs);
                        (axum::http::StatusCode::OK, "ok")
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/in", l.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn bisection_isolates_the_refused_records_and_delivers_the_rest() {
        let (url, seen) = refusing_receiver(&[17, 18, 99]).await;
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let mut courier = Courier::new(
            "s",
            reqwest::Client::new(),
            url,
            HeaderMap::new(),
            BackoffPolicy::default(),
            SinkMetrics::new(&metrics, "s"),
            DeadLetterFile::new(dir.path(), "s"),
            Vec::new(),
        );
        let mut b = Batcher::new(
            Array,
            encoder(Format::JsonRaw, SyslogStyle::None),
            limits(100, 1 << 20),
            false,
        );
        let mut ledger = AckLedger::default();
        let mut ready = Vec::new();
        let (sb, mut w) = sink_batch(events(100));
        b.push(sb, &mut ledger, &mut ready);
        let chunk = ready.pop().unwrap();
        let classify = |status, body: &[u8], ra| {
            classify_status(status, ra, status_detail(status, &server_text(body)))
        };
        let delivered = |c: &Courier, chunk: SealedChunk, _, l: &mut AckLedger| {
            c.delivered(&chunk, l);
            None
        };
        let done = courier
            .send_all(
                chunk,
                classify,
                &mut ledger,
                &CancellationToken::new(),
                delivered,
            )
            .await
            .unwrap();
        assert!(done);
        assert_eq!(w.try_outcome(), Some(Outcome::Delivered));
        let (requests, mut got) = seen.lock().unwrap().clone();
        got.sort();
        let want: Vec<u64> = (0..100).filter(|s| ![17, 18, 99].contains(s)).collect();
        assert_eq!(got, want, "every good record once");
        // Three bad records of 100: about 3 * 2 * log2(100) requests, far from 100.
        assert!(requests < 45, "{requests} requests");
        let dead: Vec<u64> = std::fs::read_to_string(dir.path().join("s.ndjson"))
            .unwrap()
            .lines()
            .map(|l| {
                let line: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(line["reason"], "http 400 Bad Request: bad record");
                let rec: serde_json::Value =
                    serde_json::from_str(line["record"].as_str().unwrap()).unwrap();
                rec["seq"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(dead, [17, 18, 99]);
        assert_eq!(
            metrics
                .sink_discarded
                .get_or_create(&vec![("sink", "s".into()), ("reason", "http_400".into())])
                .get(),
            3
        );
    }

    #[test]
    fn redaction_blanks_secrets() {
        let c = Courier::new(
            "s",
            reqwest::Client::new(),
            Url::parse("https://u:pw@example.com/x").unwrap(),
            HeaderMap::new(),
            BackoffPolicy::default(),
            SinkMetrics::new(&Arc::new(crate::metrics::Metrics::new()), "s"),
            DeadLetterFile::new(std::path::Path::new("/nonexistent"), "s"),
            vec!["hunter22".into(), "ab".into()],
        );
        assert_eq!(
            c.redact("echo: Splunk hunter22 ab"),
            "echo: Splunk [redacted] ab"
        );
        assert!(!c.shown.contains("pw"));
        let e = c.error("x", true, "token hunter22");
        assert!(!e.to_string().contains("hunter22"), "{e}");
    }

    #[test]
    fn client_tls_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let tls = |ca: Option<std::path::PathBuf>| TlsOptions {
            ca_file: ca,
            client_cert: None,
            client_key: None,
            server_name: None,
            min_version: TlsVersion::Tls12,
            insecure_skip_verify: false,
        };
        let t = Duration::from_secs(5);
        assert!(build_client("s", "https://x", &tls(None), t).is_ok());
        let missing = dir.path().join("missing.pem");
        let e = build_client("s", "https://x", &tls(Some(missing.clone())), t).unwrap_err();
        assert!(!e.is_retriable());
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = build_client("s", "https://x", &tls(Some(empty)), t).unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
        let mut insecure = tls(None);
        insecure.insecure_skip_verify = true;
        insecure.min_version = TlsVersion::Tls13;
        assert!(build_client("s", "https://x", &insecure, t).is_ok());
    }
}
