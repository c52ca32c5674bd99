//! Sinks: where encoded records go. Each runs as one task fed by a bounded queue.
//!
//! Contract with the pipeline: a sink receives [`SinkBatch`]es
//! from its queue in order, writes each batch's records, and resolves the batch's
//! [`AckToken`](crate::ack::AckToken) from the real result of the write (ARCHITECTURE.md,
//! invariant 1: the API is the buffer). On a retriable error it backs off and tries
//! again (a dead sink stalls its route and loses nothing); it stops when its queue is
//! closed and drained (and the tokens it holds resolved), or at once when `shutdown` is
//! cancelled, in which case unresolved tokens are dropped and count as not delivered.
//!
//! This module only dispatches: [`run`] builds the transport of a sink kind from its
//! options and runs it on the one delivery loop, [`healthcheck`] checks a sink without
//! sending, and the public API is re-exported here. The parts:
//! - the kit every transport uses: `delivery` (the loop, the `Transport` trait,
//!   [`EncodedBatch`], [`SinkContext`]), `error` ([`SinkError`] and its
//!   classification), `metrics` (per-sink metric handles), `connect` (resolve, connect
//!   with timeout, the TLS handshake entry, socket options), `tls` (the rustls client
//!   and the stream type), `dead_letter` ([`DeadLetterFile`]), `stall` (a sink held
//!   back by a set-up fault);
//! - the transports, each one constructor from its options struct and one
//!   `delivery::Transport` impl: `stdout`, `file`, `tcp` (plain or TLS, with its
//!   resend tail; also the unix sink's stream mode), `udp` (also its datagram mode),
//!   `unix` (the unix sink: picks one of those two by mode), `relp/` (a window of frames acknowledged by the server),
//!   `http/` (Splunk HEC and the generic HTTP sink, split by layer), `kafka/` (through
//!   librdkafka, the `kafka` feature: delivery reports settle the batches).
//! - `testkit` (tests only): events and sink batches for the unit tests.
//!
//! Not done here: spawning (the pipeline spawns one task per sink and hands it the
//! queue), encoding rules (`crate::encode`), and deciding the backoff delays
//! (`crate::retry`, the one retry mechanism).

mod connect;
mod dead_letter;
mod delivery;
mod error;
mod file;
mod http;
#[cfg(feature = "kafka")]
mod kafka;
mod metrics;
mod relp;
mod stall;
mod stdout;
mod tcp;
#[cfg(test)]
mod testkit;
mod tls;
mod udp;
mod unix;

pub use dead_letter::{DeadLetterFile, DEFAULT_MAX_BYTES as DEAD_LETTER_MAX_BYTES};
pub use delivery::{EncodedBatch, RecordEncoder, SinkContext};
pub use error::SinkError;
pub use file::{Reopen, ReopenFiles};
use metrics::SinkMetrics;
pub use udp::{truncate_record, TRUNCATION_MARKER};

use crate::config::{Sink, SinkKind};
use crate::encode::Encoder;
use crate::route::SinkBatch;
use tokio::sync::mpsc;

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
    run_with_encoder(cfg, rx, ctx, encoder).await
}

/// [`run`] with a given encoder instead of the one `cfg.encoding` describes.
pub async fn run_with_encoder(
    cfg: Sink,
    rx: mpsc::Receiver<SinkBatch>,
    ctx: SinkContext,
    encoder: impl RecordEncoder,
) -> Result<(), SinkError> {
    let metrics = SinkMetrics::new(&ctx.metrics, &cfg.name);
    let sink = cfg.name.as_str();
    let m = || metrics.clone();
    let (cfg, ctx, metrics) = (&cfg, &ctx, &metrics);
    match &cfg.kind {
        SinkKind::Stdout => {
            let t = stdout::StdoutWriter::new();
            delivery::run(t, cfg, rx, ctx, metrics, encoder).await
        }
        SinkKind::File(o) => {
            let t = file::FileWriter::new(sink, o, m(), ctx.reopen.clone());
            delivery::run(t, cfg, rx, ctx, metrics, encoder).await
        }
        SinkKind::Tcp(o) => {
            let t = started(tcp::StreamWriter::tcp(sink, o, m()), sink, metrics)?;
            delivery::run(t, cfg, rx, ctx, metrics, encoder).await
        }
        SinkKind::Udp(o) => {
            let dead_letter = DeadLetterFile::for_sink(cfg, ctx);
            let t = udp::UdpWriter::new(sink, o, dead_letter, m());
            delivery::run(t, cfg, rx, ctx, metrics, encoder).await
        }
        SinkKind::Unix(o) => match unix::UnixWriter::new(cfg, o, ctx, m()) {
            unix::UnixWriter::Stream(t) => delivery::run(t, cfg, rx, ctx, metrics, encoder).await,
            unix::UnixWriter::Datagram(t) => delivery::run(t, cfg, rx, ctx, metrics, encoder).await,
        },
        SinkKind::Relp(o) => {
            let t = started(relp::RelpSink::new(sink, o, m()), sink, metrics)?;
            delivery::run(t, cfg, rx, ctx, metrics, encoder).await
        }
        SinkKind::Hec(o) => match http::hec::HecSink::start(cfg, o, ctx, m()).await? {
            Some(t) => delivery::run(t, cfg, rx, ctx, metrics, encoder).await,
            // Shutdown while waiting for HEC to be healthy.
            None => Ok(()),
        },
        SinkKind::Http(o) => {
            let t = http::generic::HttpSink::start(cfg, o, ctx, m()).await?;
            delivery::run(t, cfg, rx, ctx, metrics, encoder).await
        }
        #[cfg(feature = "kafka")]
        SinkKind::Kafka(o) => {
            let t = started(
                kafka::KafkaSink::start(cfg, o, ctx, m()).await,
                sink,
                metrics,
            )?;
            delivery::run(t, cfg, rx, ctx, metrics, encoder).await
        }
        #[cfg(not(feature = "kafka"))]
        SinkKind::Kafka(_) => Err(kafka_not_built(sink)),
    }
}

/// A kafka sink in a build without the `kafka` feature (the configuration refuses it
/// already; this is for options built by hand).
#[cfg(not(feature = "kafka"))]
fn kafka_not_built(sink: &str) -> SinkError {
    SinkError::Kafka {
        brokers: String::new(),
        kind: "kafka_config",
        retriable: false,
        detail: format!("sink `{sink}`: this c42fwd was built without the `kafka` feature"),
    }
}

/// A transport that could not be built (settings that cannot work, such as unusable
/// TLS files): nothing was taken from the queue, so its batches count as not delivered.
fn started<T>(
    built: Result<T, SinkError>,
    sink: &str,
    metrics: &SinkMetrics,
) -> Result<T, SinkError> {
    built.inspect_err(|e| {
        metrics.error(e);
        tracing::error!(sink, error = %e, "the sink cannot start");
    })
}

/// Checks, without the network, what would make a sink fail for good the moment it
/// starts: its TLS settings (certificate files readable and valid). A reload runs it on
/// every sink it is about to start, so that a sink that cannot start refuses the reload
/// instead of stopping the daemon.
pub fn preflight(cfg: &Sink) -> Result<(), SinkError> {
    let tls = |t: Option<&crate::config::TlsOptions>| match t {
        Some(t) => tls::client_config(t).map(drop),
        None => Ok(()),
    };
    match &cfg.kind {
        SinkKind::Tcp(o) => tls(o.tls.as_ref()),
        SinkKind::Relp(o) => tls(o.tls.as_ref()),
        SinkKind::Hec(o) => http::check_client(&cfg.name, &o.endpoint, &o.tls, o.request_timeout),
        SinkKind::Http(o) => http::check_client(&cfg.name, &o.url, &o.tls, o.request_timeout),
        SinkKind::Kafka(o) => tls(o.tls.as_ref()),
        SinkKind::Stdout | SinkKind::File(_) | SinkKind::Udp(_) | SinkKind::Unix(_) => Ok(()),
    }
}

/// Checks that a sink can work, without sending anything: TCP connects (and closes;
/// with TLS it also loads the certificates and completes a handshake), RELP opens a
/// session and closes it, UDP resolves its host and binds a socket, a unix sink connects
/// to its socket (and closes a stream connection again), a file sink opens its file for appending
/// (creating it and its directories, as the sink itself would on start), stdout is
/// always fine. HEC answers its health endpoint and accepts the token; an HTTP sink
/// answers a HEAD request through the TLS settings the sink uses.
pub async fn healthcheck(cfg: &Sink) -> Result<(), SinkError> {
    match &cfg.kind {
        SinkKind::Stdout => Ok(()),
        SinkKind::File(o) => file::open_append(&o.path).await.map(drop),
        SinkKind::Tcp(o) => tcp::healthcheck(&cfg.name, o).await,
        SinkKind::Udp(o) => udp::connect(&o.host, o.port).await.map(drop),
        SinkKind::Unix(o) => unix::healthcheck(o).await,
        SinkKind::Relp(o) => relp::healthcheck(&cfg.name, o).await,
        SinkKind::Hec(o) => http::hec::healthcheck(&cfg.name, o).await,
        SinkKind::Http(o) => http::generic::healthcheck(&cfg.name, o).await,
        #[cfg(feature = "kafka")]
        SinkKind::Kafka(o) => kafka::healthcheck(&cfg.name, o).await,
        #[cfg(not(feature = "kafka"))]
        SinkKind::Kafka(_) => Err(kafka_not_built(&cfg.name)),
    }
}

#[cfg(test)]
mod tests;
