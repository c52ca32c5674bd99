//! The unix sink: records to a collector on the same host through a Unix-domain socket
//! (rsyslog's `imuxsock`, syslog-ng's `unix-stream()` / `unix-dgram()`, Fluent Bit's
//! syslog input in `unix_tcp` / `unix_udp` mode).
//!
//! Two modes, each the transport of another sink on a different socket:
//! - `stream` (`SOCK_STREAM`): the TCP sink's writer (`tcp.rs`) on a
//!   [`SinkStream::Unix`](super::tls::SinkStream) connection: framed records (LF by
//!   default, or octet counting), the resend tail written again first after every
//!   connection end the sink did not cause (a collector restarting closes its end, and
//!   what it had not read dies with the socket), acknowledgements once a batch settled.
//!   A refused connect (nothing listens at the path) or a missing path is retried with
//!   the sink's backoff, so the collector can start after c42fwd.
//! - `datagram` (`SOCK_DGRAM`): the UDP sink's writer (`udp.rs`) on a connected
//!   Unix datagram socket: one record per datagram, `max_datagram` with the same
//!   explicit oversize policy (truncate with a marker, or dead-letter; counted). The
//!   kernel delivers a Unix datagram or refuses it, and a receiver whose queue is full
//!   makes the send wait; a receiver that restarted is found again by reconnecting.
//!
//! Metrics, retries and stalls are those of the delivery loop, like every sink.

use super::dead_letter::DeadLetterFile;
use super::delivery::SinkContext;
use super::error::SinkError;
use super::metrics::SinkMetrics;
use super::tcp::StreamWriter;
use super::udp::{self, Target, UdpWriter};
use crate::config::{Sink, UnixMode, UnixOptions};

/// The transport of a unix sink, by mode.
pub(crate) enum UnixWriter {
    Stream(StreamWriter),
    Datagram(UdpWriter),
}

impl UnixWriter {
    /// Connects nothing yet: the first write does.
    pub(crate) fn new(
        cfg: &Sink,
        opts: &UnixOptions,
        ctx: &SinkContext,
        metrics: SinkMetrics,
    ) -> Self {
        match opts.mode {
            UnixMode::Stream => UnixWriter::Stream(StreamWriter::unix(
                &cfg.name,
                &opts.path,
                opts.connect_timeout,
                metrics,
            )),
            UnixMode::Datagram {
                max_datagram,
                oversize,
            } => UnixWriter::Datagram(UdpWriter::to(
                &cfg.name,
                Target::Unix {
                    path: opts.path.clone(),
                },
                max_datagram,
                oversize,
                DeadLetterFile::for_sink(cfg, ctx),
                metrics,
            )),
        }
    }
}

/// Checks that the sink can work without sending anything: connects to the socket (a
/// stream connection is closed again) and checks that it is of the mode's type.
pub(crate) async fn healthcheck(opts: &UnixOptions) -> Result<(), SinkError> {
    match opts.mode {
        UnixMode::Stream => super::connect::connect_unix(&opts.path, opts.connect_timeout)
            .await
            .map(drop),
        UnixMode::Datagram { .. } => udp::connect_unix(&opts.path).map(drop),
    }
}
