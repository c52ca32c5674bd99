//! The TCP syslog sink, plain or over TLS (RFC 5425): one connection, each batch
//! written whole and then acknowledged.
//!
//! The host is resolved again on every (re)connect, so a collector that moved (DNS
//! fail-over) is found; each address is tried in turn within the connect timeout (which
//! also bounds the TLS handshake). `TCP_NODELAY` stays off: a batch is one buffer
//! already, and Nagle costs nothing then. TCP keepalive is set through `socket2` when
//! configured, so that a peer that vanished without a FIN (a dead host, a NAT that forgot
//! us) is noticed on an idle connection. TLS settings are turned into a rustls config
//! once, when the sink starts (`tls.rs`); unusable certificate files stop the sink there.
//!
//! # Delivery, and what plain TCP can lose
//!
//! A batch is acknowledged once `write` took every byte and `flush` returned. Syslog
//! over TCP or TLS has no application acknowledgement: "written" means "in our kernel's
//! send buffer". When the receiver dies, what sits between our `write` and its `read`
//! is gone: our send buffer, the segments in flight, the receiver's socket receive
//! buffer, and whatever the receiver had read but not yet stored (rsyslog's in-memory
//! queue). On loopback with Linux's buffer autotuning that is up to a few megabytes,
//! thousands of small records. Four things narrow the window, none closes it:
//!
//! 1. Before each batch the connection is checked without blocking: a syslog receiver
//!    never sends, so a readable socket means the peer closed or reset it (or, for TLS,
//!    sent `close_notify` or an alert), and we reconnect *before* writing instead of
//!    writing into a dead socket.
//! 2. A batch whose write failed is written again whole on the new connection.
//! 3. When the connection broke (a reset, a failed write, a TLS session that ended
//!    without `close_notify`), the most recent batches written on it, up to
//!    [`RESEND_TAIL_BYTES`] (and at least the last batch), are written again first:
//!    they are what was most likely still in the buffers. Both re-sends are counted in
//!    `sink_resent` (at-least-once: records the peer had stored arrive twice; a
//!    receiver crash costs at most that many duplicates). An orderly close is not a
//!    break: the peer's kernel sends FIN only when its application closed with nothing
//!    unread. Plain TCP cannot tell that from a receiver killed right after it read
//!    (both send FIN); what such a receiver read and had not stored is lost.
//! 4. The first batch on a new connection is acknowledged only after the peer kept the
//!    connection open for [`FIRST_WRITE_LINGER`]: a TLS listener reached over plain TCP
//!    resets the connection as soon as it reads our first bytes (it sees no TLS record),
//!    and an rsyslog that rejects a client certificate after the handshake closes at
//!    once too. Without this each such connection would swallow one batch; with it the
//!    batch is held and the error says what is likely wrong.
//!
//! `tests/it/tls.rs` SIGKILLs rsyslog in the middle of a 100,000-record stream and
//! prints how many records were lost and how many duplicated. Measured here (loopback,
//! records of ~110 bytes, rsyslog writing each message before reading on): in most runs
//! nothing was lost and up to 9,000 records (the re-sent tail) arrived twice; in about
//! one run out of five, 1,000 to 8,300 records just older than the tail were lost, when
//! more than 1 MiB sat in the buffers. The RELP sink is the answer for collectors that
//! must acknowledge: the same test through it loses nothing.
//!
//! A peer that accepts but stops reading makes the write wait (the route stalls: that
//! is the backpressure we want); only `shutdown` ends that wait.

use super::tls::{Liveness, SinkStream, TlsClient};
use super::{host_port, Attempt, EncodedBatch, SinkError, SinkMetrics, Written};
use socket2::{SockRef, TcpKeepalive};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// How long the peer must keep a new connection open after our first write before that
/// write counts as taken (see the module docs, point 4). A peer that refuses what we
/// sent closes within a round trip and a read, milliseconds on a LAN; half a second
/// leaves room for a loaded receiver, and it is paid once per connection, not per batch.
pub(crate) const FIRST_WRITE_LINGER: Duration = Duration::from_millis(500);

/// How much of what was recently written is kept to be written again after a broken
/// connection (module docs, point 3). What may be in flight is our send buffer plus the
/// peer's receive buffer plus what the peer read and had not stored; Linux autotunes
/// those to megabytes on a fast path with a slow reader, but with a receiver that keeps
/// up (the case that matters: a receiver that crashes, not one that is stalled) it is
/// far less. 1 MiB covers what `tests/it/tls.rs` measured with a wide margin, and
/// bounds the duplicates a receiver restart causes (about 10,000 records of 100 bytes).
pub(crate) const RESEND_TAIL_BYTES: usize = 1 << 20;

pub(crate) struct TcpWriter {
    sink: String,
    host: String,
    port: u16,
    connect_timeout: Duration,
    keepalive: Option<Duration>,
    tls: Option<TlsClient>,
    conn: Option<Connection>,
    connected_once: bool,
    /// Records of the current batch that a failed attempt may have written.
    partial: usize,
    /// The batches written and acknowledged most recently, oldest first, as (bytes,
    /// records), kept to be written again if their connection turns out broken (module
    /// docs, point 3). At most [`RESEND_TAIL_BYTES`] unless one batch is larger.
    tail: VecDeque<(Vec<u8>, usize)>,
    tail_bytes: usize,
    /// `tail` went out on a connection that broke: write it first on the next one.
    resend_tail: bool,
    metrics: SinkMetrics,
}

struct Connection {
    stream: SinkStream,
    peer: SocketAddr,
    /// No batch was written on it yet.
    fresh: bool,
}

/// Resolves `host` and connects to the first address that answers within `timeout`
/// (the timeout applies to each address).
pub(crate) async fn connect(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), SinkError> {
    let addr = host_port(host, port);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| SinkError::Resolve {
            addr: addr.clone(),
            source,
        })?
        .collect();
    let mut last = SinkError::NoAddress { addr: addr.clone() };
    for peer in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(peer)).await {
            Ok(Ok(stream)) => return Ok((stream, peer)),
            Ok(Err(source)) => {
                last = SinkError::Connect {
                    addr: format!("{addr} ({peer})"),
                    source,
                }
            }
            Err(_) => {
                last = SinkError::ConnectTimeout {
                    addr: format!("{addr} ({peer})"),
                    timeout,
                }
            }
        }
    }
    Err(last)
}

impl TcpWriter {
    pub(crate) fn new(
        sink: &str,
        host: String,
        port: u16,
        connect_timeout: Duration,
        keepalive: Option<Duration>,
        tls: Option<TlsClient>,
        metrics: SinkMetrics,
    ) -> Self {
        TcpWriter {
            sink: sink.to_string(),
            host,
            port,
            connect_timeout,
            keepalive,
            tls,
            conn: None,
            connected_once: false,
            partial: 0,
            tail: VecDeque::new(),
            tail_bytes: 0,
            resend_tail: false,
            metrics,
        }
    }

    fn addr(&self, peer: SocketAddr) -> String {
        format!("{} ({peer})", host_port(&self.host, self.port))
    }

    /// The connection that broke carried `tail`: write it again on the next one.
    fn connection_broke(&mut self) {
        if !self.tail.is_empty() {
            self.resend_tail = true;
        }
    }

    fn tail_records(&self) -> usize {
        self.tail.iter().map(|(_, n)| n).sum()
    }

    /// Keeps a copy of a batch just written; drops the oldest beyond the byte bound.
    fn remember(&mut self, records: &EncodedBatch) {
        let mut buf = Vec::new();
        while self.tail_bytes + records.bytes().len() > RESEND_TAIL_BYTES {
            let Some((old, _)) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= old.len();
            // Reuse the largest buffer given back.
            if old.capacity() > buf.capacity() {
                buf = old;
            }
        }
        buf.clear();
        buf.extend_from_slice(records.bytes());
        self.tail_bytes += buf.len();
        self.tail.push_back((buf, records.len()));
    }

    /// Takes the open connection out of `self` (the caller puts it back after a
    /// successful write), or makes a new one.
    async fn take_connection(&mut self) -> Result<Connection, SinkError> {
        if let Some(mut conn) = self.conn.take() {
            match conn.stream.liveness() {
                Liveness::Open => return Ok(conn),
                Liveness::Closed { why, clean } => {
                    tracing::warn!(sink = %self.sink, peer = %conn.peer, "connection {why}; reconnecting before the next batch");
                    // After an orderly close the peer had read everything that reached
                    // it (see `Liveness`): nothing to write again.
                    if !clean {
                        self.connection_broke();
                    }
                }
            }
        }
        let (stream, peer) = super::tls::connect(
            &self.host,
            self.port,
            self.connect_timeout,
            self.tls.as_ref(),
        )
        .await?;
        // Batches are written whole; Nagle's algorithm has nothing to coalesce.
        let _ = stream.tcp().set_nodelay(false);
        if let Some(idle) = self.keepalive {
            set_keepalive(stream.tcp(), idle, &self.sink, peer);
        }
        let addr = host_port(&self.host, self.port);
        let tls = stream.is_tls();
        if self.connected_once {
            self.metrics.reconnected();
            tracing::info!(sink = %self.sink, addr = %addr, peer = %peer, tls, "reconnected");
        } else {
            tracing::info!(sink = %self.sink, addr = %addr, peer = %peer, tls, "connected");
            self.connected_once = true;
        }
        Ok(Connection {
            stream,
            peer,
            fresh: true,
        })
    }

    pub(crate) async fn write_batch(
        &mut self,
        records: &EncodedBatch,
        attempt: Attempt,
    ) -> Result<Written, SinkError> {
        if attempt == Attempt::First {
            self.partial = 0;
        }
        let mut conn = self.take_connection().await?;
        let resend_tail = self.resend_tail;
        let bytes = records.bytes();
        let mut written = 0;
        let result = async {
            if resend_tail {
                for (old, _) in &self.tail {
                    conn.stream.write_all(old).await?;
                }
            }
            while written < bytes.len() {
                let n = conn.stream.write(&bytes[written..]).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                written += n;
            }
            conn.stream.flush().await
        }
        .await;
        if let Err(source) = result {
            // The connection is dropped here; the retry makes a new one.
            let addr = self.addr(conn.peer);
            self.partial = self.partial.max(records.records_started_before(written));
            self.connection_broke();
            return Err(SinkError::Write { addr, source });
        }
        if conn.fresh {
            if let Liveness::Closed { why: reason, .. } = first_write_linger(&mut conn.stream).await
            {
                let addr = self.addr(conn.peer);
                // The peer may have read some of it before closing: count it all as
                // written, so that the retry counts it as re-sent.
                self.partial = records.len();
                self.connection_broke();
                let hint = if conn.stream.is_tls() {
                    "does the server accept this client (its certificate, its name)? see the server's log"
                } else {
                    "is it a TLS listener? (this sink has no tls settings)"
                };
                return Err(SinkError::ClosedAfterFirstWrite { addr, reason, hint });
            }
            conn.fresh = false;
        }
        // Counted once they are through: duplicates at the receiver are at most this.
        let resent = self.partial + if resend_tail { self.tail_records() } else { 0 };
        if resent > 0 {
            self.metrics.resent(resent);
            tracing::info!(sink = %self.sink, records = resent, "records written again after a broken connection");
        }
        self.resend_tail = false;
        self.partial = 0;
        self.remember(records);
        self.conn = Some(conn);
        Ok(Written {
            records: records.len(),
            bytes: bytes.len(),
        })
    }
}

/// Waits up to [`FIRST_WRITE_LINGER`] for the peer to close a new connection after the
/// first write. Returns `Open` when it kept it open. Whatever the peer sends meanwhile
/// (TLS session tickets) is handled by [`SinkStream::liveness`].
async fn first_write_linger(stream: &mut SinkStream) -> Liveness {
    let deadline = tokio::time::Instant::now() + FIRST_WRITE_LINGER;
    loop {
        match tokio::time::timeout_at(deadline, stream.tcp().readable()).await {
            Err(_) => return Liveness::Open,
            Ok(Err(e)) => {
                return Liveness::Closed {
                    why: format!("error: {e}"),
                    clean: false,
                }
            }
            Ok(Ok(())) => {
                if let closed @ Liveness::Closed { .. } = stream.liveness() {
                    return closed;
                }
                // `liveness` read what there was (TLS session tickets) straight from the
                // socket, behind tokio's back; tokio keeps reporting readable until an
                // I/O through it says WouldBlock. Say it without reading anything: the
                // bytes belong to the TLS session. (A close in that very instant is
                // seen by the check before the next batch.)
                let _ = stream.tcp().try_io(Interest::READABLE, || {
                    Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                });
            }
        }
    }
}

fn set_keepalive(stream: &TcpStream, idle: Duration, sink: &str, peer: SocketAddr) {
    // Probe after `idle` of silence, then every third of it: with the kernel's default
    // probe count a dead peer is noticed within about 4 x idle.
    let interval = (idle / 3).max(Duration::from_secs(1));
    let ka = TcpKeepalive::new().with_time(idle).with_interval(interval);
    if let Err(e) = SockRef::from(stream).set_tcp_keepalive(&ka) {
        // Not fatal: the connection works, only dead-peer detection is slower.
        tracing::warn!(sink, peer = %peer, error = %e, "cannot set tcp keepalive");
    }
}
