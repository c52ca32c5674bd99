//! Sinks: where encoded records go. Each runs as one task fed by a bounded queue.
//!
//! Contract with the pipeline: a sink receives [`SinkBatch`]es from its queue in order,
//! writes each batch's records, and resolves the batch's [`AckToken`] from the real
//! result of the write (ARCHITECTURE.md, invariant 1: the API is the buffer). On a
//! retriable error it backs off and tries again (a dead sink stalls its route and loses
//! nothing); it stops when its queue is closed and drained (and, for TCP, the tokens it
//! holds resolved), or at once when `shutdown` is cancelled, in which case unresolved
//! tokens are dropped and count as not delivered.
//!
//! Owned here: the delivery loop shared by every sink ([`run`]: receive, encode the whole
//! batch into one reused buffer, write, retry, acknowledge; for TCP the token is handed
//! to the transport, which resolves it once the batch settled, and the loop wakes
//! between batches for the transport to look at its connection and write its tail
//! again), the error classification
//! ([`SinkError::is_retriable`]), the per-sink metric handles and the dead-letter file.
//! The transports live in `stdout`, `file`, `tcp` and `udp`; each only knows how to
//! write one encoded batch and how to recover its connection or file handle. `tcp`
//! speaks plain TCP or TLS (`tls`: the rustls client config and the stream type shared
//! with RELP). `relp` has its own loop: a window of frames, each acknowledged by the
//! server's `rsp`, re-sent on a new session when one breaks.
//!
//! Not done here: spawning (the pipeline spawns one task per sink and hands it the
//! queue), encoding rules (`crate::encode`), and deciding the backoff delays
//! (`crate::retry`, the one retry mechanism).

mod dead_letter;
mod file;
mod http;
mod relp;
mod stall;
mod stdout;
mod tcp;
mod tls;
mod udp;

pub use dead_letter::{DeadLetterFile, DEFAULT_MAX_BYTES as DEAD_LETTER_MAX_BYTES};
pub use udp::{truncate_record, TRUNCATION_MARKER};

use crate::ack::AckToken;
use crate::config::{FileOptions, RelpOptions, Sink, SinkKind, TcpOptions, UdpOptions};
use crate::encode::Encoder;
use crate::event::{Batch, Event};
use crate::metrics::{label, Metrics};
use crate::route::SinkBatch;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What every sink gets from the pipeline besides its config.
#[derive(Clone)]
pub struct SinkContext {
    pub metrics: Arc<Metrics>,
    /// Directory for the sink's dead-letter file (`<state_dir>/dead-letter/<sink>.ndjson`).
    pub dead_letter_dir: PathBuf,
    /// Hard stop: cancelled when the shutdown grace period is over.
    pub shutdown: CancellationToken,
}

/// Why a sink could not write (or could not be checked). Messages name the peer or file.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot resolve {addr}: {source}")]
    Resolve { addr: String, source: io::Error },
    #[error("{addr} resolved to no address")]
    NoAddress { addr: String },
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("writing to {addr} failed: {source}")]
    Write { addr: String, source: io::Error },
    #[error("sending a datagram to {addr} failed: {source}")]
    Send { addr: String, source: io::Error },
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("writing {} failed: {source}", path.display())]
    FileWrite { path: PathBuf, source: io::Error },
    #[error("writing to stdout failed: {source}")]
    Stdout { source: io::Error },
    #[error("cannot write the dead-letter file {}: {source}", path.display())]
    DeadLetter { path: PathBuf, source: io::Error },
    /// Writing would take the dead-letter file past `dead_letter_max_bytes`.
    #[error("the dead-letter file {} is full ({size} bytes, dead_letter_max_bytes = {max_bytes})", path.display())]
    DeadLetterFull {
        path: PathBuf,
        size: u64,
        max_bytes: u64,
    },
    #[error("sink {sink}: this transport is not available in this build")]
    Unsupported { sink: String },
    /// An HTTP-based sink (HEC, HTTP): a failed request, an unexpected answer, or a
    /// client that cannot be built (TLS files). `url` never carries credentials;
    /// `kind` is the `sink_errors` label; `retriable` is decided by the sink's
    /// classification (`http::verdict`).
    #[error("{url}: {detail}")]
    Http {
        url: String,
        kind: &'static str,
        retriable: bool,
        detail: String,
    },
    /// A CA bundle, client certificate or key that cannot be used (names the file).
    #[error("invalid tls settings: {reason}")]
    TlsConfig { reason: String },
    /// `certificate`: the failure is about a certificate (ours or the server's).
    #[error("tls handshake with {addr} failed: {reason}")]
    TlsHandshake {
        addr: String,
        reason: String,
        certificate: bool,
    },
    #[error("tls handshake with {addr} timed out after {timeout:?}: the server did not answer the TLS handshake: is it a plaintext listener?")]
    TlsHandshakeTimeout { addr: String, timeout: Duration },
    /// A fresh connection that the peer closed right after our first write: the peer
    /// did not take what we sent (plain TCP to a TLS listener, a rejected client).
    #[error("{addr}: the peer closed the connection after the first record ({reason}): {hint}")]
    ClosedAfterFirstWrite {
        addr: String,
        reason: String,
        hint: &'static str,
    },
    #[error("reading from {addr} failed: {source}")]
    Read { addr: String, source: io::Error },
    /// A broken RELP session: closed, `serverclose`, no `rsp` in time, a protocol error.
    #[error("relp session with {addr}: {reason}")]
    Relp { addr: String, reason: String },
    /// The RELP server answered a command with a code other than 200.
    #[error("relp server {addr} refused {command}: {code} {text}")]
    RelpRefused {
        addr: String,
        command: String,
        code: u16,
        text: String,
    },
}

impl SinkError {
    /// Whether waiting and trying again can help. Network trouble (refused, reset,
    /// broken pipe, timeouts, a name that does not resolve yet) and file errors other
    /// than a permission problem are retriable: the route stalls and nothing is lost.
    /// A broken stdout and an unwritable dead-letter file are not: they do not heal, and
    /// the operator must see the sink stop.
    pub fn is_retriable(&self) -> bool {
        match self {
            SinkError::Resolve { .. }
            | SinkError::NoAddress { .. }
            | SinkError::ConnectTimeout { .. } => true,
            SinkError::Connect { source, .. }
            | SinkError::Write { source, .. }
            | SinkError::Send { source, .. } => network_error_is_retriable(source),
            SinkError::Open { source, .. } | SinkError::FileWrite { source, .. } => {
                source.kind() != io::ErrorKind::PermissionDenied
            }
            SinkError::Stdout { .. }
            | SinkError::DeadLetter { .. }
            | SinkError::Unsupported { .. } => false,
            SinkError::Http { retriable, .. } => *retriable,
            // The sink holds its batch until the operator makes room (a stall).
            SinkError::DeadLetterFull { .. } => true,
            // Unusable files do not heal by waiting: the sink stops at start.
            SinkError::TlsConfig { .. } => false,
            // Certificate problems heal when the server (or its DNS name) is fixed while
            // we wait, and retrying loses nothing (see `tls.rs`). A peer that closes
            // after the first record, a broken or refused RELP session: the batch is
            // held and sent again on a new connection.
            SinkError::TlsHandshake { .. }
            | SinkError::TlsHandshakeTimeout { .. }
            | SinkError::ClosedAfterFirstWrite { .. }
            | SinkError::Relp { .. }
            | SinkError::RelpRefused { .. } => true,
            SinkError::Read { source, .. } => network_error_is_retriable(source),
        }
    }

    /// A short fixed string for the `kind` label of `sink_errors`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Resolve { .. } | SinkError::NoAddress { .. } => "resolve",
            SinkError::ConnectTimeout { .. } => "connect_timeout",
            SinkError::Connect { .. } => "connect",
            SinkError::Write { .. } => "write",
            SinkError::Send { .. } => "send",
            SinkError::Open { .. } => "open",
            SinkError::FileWrite { .. } => "file_write",
            SinkError::Stdout { .. } => "stdout",
            SinkError::DeadLetter { .. } => "dead_letter",
            SinkError::DeadLetterFull { .. } => "dead_letter_full",
            SinkError::Unsupported { .. } => "unsupported",
            SinkError::Http { kind, .. } => kind,
            SinkError::TlsConfig { .. } => "tls_config",
            SinkError::TlsHandshake {
                certificate: true, ..
            } => "tls_certificate",
            SinkError::TlsHandshake { .. } | SinkError::TlsHandshakeTimeout { .. } => {
                "tls_handshake"
            }
            SinkError::ClosedAfterFirstWrite { .. } => "closed_after_first_write",
            SinkError::Read { .. } => "read",
            SinkError::Relp { .. } => "relp_session",
            SinkError::RelpRefused { .. } => "relp_refused",
        }
    }
}

/// Network errors are transient unless they say that this socket can never work
/// (a permission problem, an invalid address or option, an unsupported operation).
/// Refused, reset, aborted, broken pipe, timed out, unreachable: all retriable.
fn network_error_is_retriable(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    )
}

/// How a sink turns an event into one complete framed record.
///
/// [`run`] uses [`crate::encode::Encoder`]; [`run_with_encoder`] takes any
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
}

/// Above this capacity the buffer is given back after a batch, so that one huge batch
/// does not pin its memory for the life of the sink.
pub(crate) const KEEP_BUFFER_CAPACITY: usize = 8 << 20;

impl EncodedBatch {
    /// Encodes every event of `batch`, replacing what was there.
    pub fn encode(&mut self, encoder: &impl RecordEncoder, batch: &Batch) {
        self.clear();
        for event in &batch.events {
            encoder.encode(event, &mut self.buf);
            self.ends.push(self.buf.len());
        }
    }

    /// Appends one already-encoded record (tests, and callers with their own encoding).
    pub fn push_record(&mut self, record: &[u8]) {
        self.buf.extend_from_slice(record);
        self.ends.push(self.buf.len());
    }

    pub fn clear(&mut self) {
        if self.buf.capacity() > KEEP_BUFFER_CAPACITY {
            self.buf = Vec::new();
        }
        self.buf.clear();
        self.ends.clear();
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

/// Handles on one sink's metrics, looked up once (label sets are fixed per sink).
#[derive(Clone)]
pub(crate) struct SinkMetrics {
    metrics: Arc<Metrics>,
    sink: String,
    events: Counter,
    bytes: Counter,
    reconnects: Counter,
    resent: Counter,
    truncated: Counter,
    queue: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl SinkMetrics {
    fn new(metrics: &Arc<Metrics>, sink: &str) -> Self {
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

    fn error(&self, e: &SinkError) {
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

/// What a transport reports after it wrote a whole batch.
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

/// The four transports behind one delivery loop (static dispatch, no boxing).
// One value per sink task: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Transport {
    Stdout(stdout::StdoutWriter),
    File(file::FileWriter),
    Tcp(tcp::TcpWriter),
    Udp(udp::UdpWriter),
}

impl Transport {
    /// `None` for the sinks that have their own delivery loop (RELP, HEC, HTTP); an
    /// error for settings that cannot work (TLS files).
    fn new(
        cfg: &Sink,
        ctx: &SinkContext,
        metrics: &SinkMetrics,
    ) -> Result<Option<Self>, SinkError> {
        Ok(Some(match &cfg.kind {
            SinkKind::Stdout => Transport::Stdout(stdout::StdoutWriter::new()),
            SinkKind::File(FileOptions { path }) => Transport::File(file::FileWriter::new(
                &cfg.name,
                path.clone(),
                metrics.clone(),
            )),
            SinkKind::Tcp(TcpOptions {
                host,
                port,
                connect_timeout,
                keepalive,
                tls,
            }) => Transport::Tcp(tcp::TcpWriter::new(
                &cfg.name,
                host.clone(),
                *port,
                *connect_timeout,
                *keepalive,
                tls.as_ref()
                    .map(|t| tls::TlsClient::new(&cfg.name, host, t))
                    .transpose()?,
                metrics.clone(),
            )),
            SinkKind::Udp(UdpOptions {
                host,
                port,
                max_datagram,
                oversize,
            }) => Transport::Udp(udp::UdpWriter::new(
                &cfg.name,
                host.clone(),
                *port,
                *max_datagram,
                *oversize,
                DeadLetterFile::for_sink(cfg, ctx),
                metrics.clone(),
            )),
            SinkKind::Relp(RelpOptions { .. }) | SinkKind::Hec(_) | SinkKind::Http(_) => {
                return Ok(None)
            }
        }))
    }

    /// Takes the token of the batch just written: resolved now, or (TCP) once the
    /// batch settled (`tcp.rs`).
    fn hold(&mut self, ack: AckToken) {
        match self {
            Transport::Tcp(w) => w.hold(ack),
            _ => ack.delivered(),
        }
    }

    /// Whether tokens wait for their batches to settle.
    fn holds_acks(&self) -> bool {
        matches!(self, Transport::Tcp(w) if w.holds_acks())
    }

    /// Whether the transport must write again what it holds before the next batch.
    fn wants_resend(&self) -> bool {
        matches!(self, Transport::Tcp(w) if w.wants_resend())
    }

    /// When [`Transport::tick`] is due (`None`: never).
    fn next_tick(&self) -> Option<tokio::time::Instant> {
        match self {
            Transport::Tcp(w) => w.next_tick(),
            _ => None,
        }
    }

    /// Between batches: lets the transport look at its connection.
    fn tick(&mut self) {
        if let Transport::Tcp(w) = self {
            w.tick()
        }
    }

    /// Writes one whole batch. After an error the transport drops its connection or
    /// handle, and the next call (a retry of the same batch) starts with a fresh one.
    async fn write_batch(
        &mut self,
        records: &EncodedBatch,
        attempt: Attempt,
    ) -> Result<Written, SinkError> {
        match self {
            Transport::Stdout(w) => w.write_batch(records).await,
            Transport::File(w) => w.write_batch(records, attempt).await,
            Transport::Tcp(w) => w.write_batch(records, attempt).await,
            Transport::Udp(w) => w.write_batch(records, attempt).await,
        }
    }
}

/// Runs one sink until its queue is closed and drained (returns `Ok`), `ctx.shutdown`
/// is cancelled (returns `Ok` at once; the token of the batch in hand is dropped, which
/// counts as not delivered), or a permanent error (the batch's token is failed and the
/// error returned).
pub async fn run(
    cfg: Sink,
    rx: mpsc::Receiver<SinkBatch>,
    ctx: SinkContext,
) -> Result<(), SinkError> {
    let encoder = Encoder::new(cfg.encoding.clone());
    // RELP and the HTTP-based sinks have their own delivery loops (windows of
    // unacknowledged frames, batching by size and time); the stream and file sinks
    // share `run_with_encoder`.
    match &cfg.kind {
        SinkKind::Relp(RelpOptions { .. }) => relp::run(cfg, rx, ctx, encoder).await,
        SinkKind::Hec(_) => http::hec::run(cfg, rx, ctx, encoder).await,
        SinkKind::Http(_) => http::generic::run(cfg, rx, ctx, encoder).await,
        _ => run_with_encoder(cfg, rx, ctx, encoder).await,
    }
}

/// [`run`] with a given encoder instead of the one `cfg.encoding` describes.
pub async fn run_with_encoder(
    cfg: Sink,
    mut rx: mpsc::Receiver<SinkBatch>,
    ctx: SinkContext,
    encoder: impl RecordEncoder,
) -> Result<(), SinkError> {
    let metrics = SinkMetrics::new(&ctx.metrics, &cfg.name);
    let mut transport = match Transport::new(&cfg, &ctx, &metrics) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(SinkError::Unsupported {
                sink: cfg.name.clone(),
            })
        }
        Err(e) => {
            // Nothing was taken from the queue: its batches count as not delivered.
            metrics.error(&e);
            tracing::error!(sink = %cfg.name, error = %e, "the sink cannot start");
            return Err(e);
        }
    };
    let mut records = EncodedBatch::default();
    let nothing = EncodedBatch::default();
    let shutdown = &ctx.shutdown;
    let sink = cfg.name.as_str();
    let delivery = Delivery {
        cfg: &cfg,
        metrics: &metrics,
        shutdown,
    };

    loop {
        // Held acknowledgements whose connection ended: write the tail again now, so
        // that they can settle without waiting for the next batch.
        if transport.wants_resend() {
            match delivery.write(&mut transport, &nothing, &rx, None).await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let tick = transport.next_tick();
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = sleep_until(tick) => {
                transport.tick();
                continue;
            }
            next = rx.recv() => next,
        };
        metrics.queue.set(rx.len() as i64);
        let Some(SinkBatch { batch, ack }) = next else {
            tracing::debug!(sink, "queue closed and drained; sink stops");
            // Resolve what is held before stopping (a dropped token counts as not
            // delivered: correct, but the source would read those batches again).
            while transport.holds_acks() {
                if transport.wants_resend() {
                    match delivery.write(&mut transport, &nothing, &rx, None).await {
                        Ok(Some(_)) => continue,
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
                let tick = transport.next_tick();
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = sleep_until(tick) => transport.tick(),
                }
            }
            return Ok(());
        };
        if batch.events.is_empty() {
            // Nothing to write: do not connect just to write zero bytes.
            ack.delivered();
            continue;
        }
        records.encode(&encoder, &batch);
        match delivery
            .write(&mut transport, &records, &rx, Some(&batch.source))
            .await
        {
            Ok(Some(written)) => {
                metrics.events.inc_by(written.records as u64);
                metrics.bytes.inc_by(written.bytes as u64);
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

/// Sleeps until `at`; forever when there is nothing to wait for.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What writing with retries needs of the sink task.
struct Delivery<'a> {
    cfg: &'a Sink,
    metrics: &'a SinkMetrics,
    shutdown: &'a CancellationToken,
}

impl Delivery<'_> {
    /// Writes `records` (of the batch from `source`; `None`: only what the transport
    /// must write again) until it succeeds, backing off between attempts. `Ok(None)`:
    /// `shutdown` came first. An error is permanent, or the retries are used up; it is
    /// logged here.
    async fn write(
        &self,
        transport: &mut Transport,
        records: &EncodedBatch,
        rx: &mpsc::Receiver<SinkBatch>,
        source: Option<&str>,
    ) -> Result<Option<Written>, SinkError> {
        let sink = self.cfg.name.as_str();
        let mut backoff = None;
        let mut attempt = Attempt::First;
        loop {
            let result = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(None),
                r = transport.write_batch(records, attempt) => r,
            };
            let e = match result {
                Ok(written) => {
                    if attempt == Attempt::Retry {
                        match source {
                            Some(source) => {
                                tracing::info!(sink, source, "batch delivered after retry")
                            }
                            None => tracing::info!(sink, "records written again after retry"),
                        }
                    }
                    return Ok(Some(written));
                }
                Err(e) => e,
            };
            self.metrics.error(&e);
            // While we retry, the queue fills behind us: keep the gauge honest.
            self.metrics.queue.set(rx.len() as i64);
            if !e.is_retriable() {
                tracing::error!(sink, error = %e, "permanent sink error; the sink stops");
                return Err(e);
            }
            let delay = backoff
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

/// Checks that a sink can work, without sending anything: TCP connects (and closes;
/// with TLS it also loads the certificates and completes a handshake), RELP opens a
/// session and closes it, UDP resolves its host and binds a socket, a file sink opens its file for appending
/// (creating it and its directories, as the sink itself would on start), stdout is
/// always fine. HEC answers its health endpoint and accepts the token; an HTTP sink
/// answers a HEAD request through the TLS settings the sink uses.
pub async fn healthcheck(cfg: &Sink) -> Result<(), SinkError> {
    match &cfg.kind {
        SinkKind::Stdout => Ok(()),
        SinkKind::File(FileOptions { path }) => file::open_append(path).await.map(drop),
        SinkKind::Tcp(TcpOptions {
            host,
            port,
            connect_timeout,
            tls,
            ..
        }) => {
            let client = tls
                .as_ref()
                .map(|t| tls::TlsClient::new(&cfg.name, host, t))
                .transpose()?;
            tls::connect(host, *port, *connect_timeout, client.as_ref())
                .await
                .map(drop)
        }
        SinkKind::Udp(UdpOptions { host, port, .. }) => udp::connect(host, *port).await.map(drop),
        SinkKind::Relp(RelpOptions { .. }) => relp::healthcheck(cfg).await,
        SinkKind::Hec(_) => http::hec::healthcheck(cfg).await,
        SinkKind::Http(_) => http::generic::healthcheck(cfg).await,
    }
}

/// `host:port` as it appears in messages (IPv6 literals in brackets).
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests;
