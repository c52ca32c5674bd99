//! The TCP syslog sink, plain or over TLS (RFC 5425): one connection, each batch
//! written whole; what was written recently is kept and written again on the next
//! connection when the receiver goes away. The same writer ([`StreamWriter`]) serves the
//! unix sink in stream mode (`unix.rs`): a Unix stream socket has the same life (a
//! receiver that restarts closes it, and what it had not read is lost with it), so the
//! tail and the settling below apply unchanged; host resolution, keepalive, TLS and
//! `TCP_USER_TIMEOUT` are TCP's only.
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
//! Syslog over TCP or TLS has no application acknowledgement: a successful `write` means
//! "in our kernel's send buffer". On its way to the receiver's storage a record sits in
//! our send buffer, in flight, in the receiver's socket receive buffer, then in the
//! receiver's memory. The sink keeps what may still be in the first three, the *resend
//! tail* ([`ResendTail`]), and writes it again, first, on the next connection whenever a
//! connection ends without c42fwd closing it. It notices that
//!
//! 1. with a non-blocking look at the socket before each batch and, while batches are
//!    kept, on a timer between batches: a syslog receiver never sends, so a readable
//!    socket means FIN, reset, or (TLS) `close_notify`, an alert, or a FIN without
//!    `close_notify`;
//! 2. from a failed write or flush (reset, broken pipe); the batch being written is
//!    written again whole on the new connection, after the tail;
//! 3. when the peer closes a new connection within [`FIRST_WRITE_LINGER`] of our first
//!    write: a TLS listener reached over plain TCP resets the connection as soon as it
//!    reads our first bytes (it sees no TLS record), and an rsyslog that rejects a client
//!    certificate after the handshake closes at once too. The batch is held and the
//!    error says what is likely wrong.
//!
//! Every kind of end counts, FIN as much as a reset: a FIN says only that the receiver's
//! process closed or died with nothing unread in its socket. A receiver killed right
//! after it read sends FIN too, and whatever we wrote after its death was thrown away by
//! its kernel. A TLS `close_notify` is an orderly end of the session, but what we wrote
//! after the peer sent it is never read either.
//!
//! The tail is whole batches (complete frames back to back, octet-counted or LF), so a
//! re-send never starts or ends inside a frame; a write cut off mid-frame dies with its
//! connection. A batch leaves the tail when one of these says the receiver's process
//! has read it:
//!
//! - *flow control*: [`ResendTail::window`] bytes or more were written after it on the
//!   same connection. What the receiver has not read yet is at most our send buffer (the
//!   largest `SO_SNDBUF` seen) plus its socket receive buffer (taken to be at most
//!   [`RECEIVER_BUFFER_BYTES`]), so a batch that far behind the last write was read;
//! - *age*: the connection was seen open [`TAIL_AGE`] after the batch was written (a
//!   receiver that keeps reading has read it by then; one that stopped reading stops our
//!   writes too, so nothing new piles up behind it). The kernel ends a connection whose
//!   data stays unacknowledged for [`UNACKED_TIMEOUT`] (`TCP_USER_TIMEOUT`, half the
//!   age), so a batch that old on an open connection at least reached the receiver's
//!   kernel: a receiver host that died without a FIN or a reset is noticed in time.
//!
//! A batch's acknowledgement waits until the connection was seen open [`ACK_SETTLE`]
//! after the write (or flow control proves it read): a receiver that dies at once has
//! closed the connection by then, and the batch stays unacknowledged until it was
//! written again, so the checkpoint does not move past it even if c42fwd stops before it
//! could reconnect. The delay is short and sources keep up to 64 batches in flight, so
//! it costs little throughput (not measured on the benches yet).
//!
//! Re-sent records are counted in `sink_resent` (records: at-least-once, the receiver
//! may have stored some of them already), and every reconnect that re-sent logs a WARN
//! with how many records and bytes.
//!
//! What this cannot close (README, "TCP and TLS sinks: what can be lost"): records the
//! receiver had read into its own memory and not stored when it died, once they had
//! left the tail (the tail covers them while they are in it); a receiver host
//! that loses power (its kernel acknowledged bytes its process never read); more than
//! [`RECEIVER_BUFFER_BYTES`] unread in the receiver's socket, or records it left unread
//! for longer than [`TAIL_AGE`], when it dies; c42fwd stopped while a tail was waiting
//! to be re-sent. Only an application acknowledgement (RELP, HEC indexer
//! acknowledgements) closes those.
//!
//! `tests/it/tcp_resend.rs` kills receivers (rsyslog with SIGKILL, a receiver that reads
//! and closes) under the real binary and checks that every event arrives;
//! `tests/it/tls.rs` SIGKILLs rsyslog in the middle of a 100,000-record stream, checks
//! that nothing was lost and prints how many records were duplicated.
//!
//! A peer that accepts but stops reading makes the write wait (the route stalls: that
//! is the backpressure we want); only `shutdown` ends that wait.

use super::connect::{self, host_port};
use super::delivery::{Attempt, EncodedBatch, Transport, Written, KEEP_BUFFER_CAPACITY};
use super::error::SinkError;
use super::metrics::SinkMetrics;
use super::tls::{Liveness, SinkStream, TlsClient};
use crate::ack::AckToken;
use crate::config::TcpOptions;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// How long the peer must keep a new connection open after our first write before that
/// write counts as taken (see the module docs, point 3). A peer that refuses what we
/// sent closes within a round trip and a read, milliseconds on a LAN; half a second
/// leaves room for a loaded receiver, and it is paid once per connection, not per batch.
pub(crate) const FIRST_WRITE_LINGER: Duration = Duration::from_millis(500);

/// What the receiver's socket receive buffer is taken to hold at most. Linux autotunes
/// it up to `net.ipv4.tcp_rmem`'s maximum (6 MiB by default on most distributions);
/// a receiver that reads as fast as we write keeps it nearly empty, one that reads
/// slower does not make it grow. With our send buffer this bounds what may be unread
/// when a receiver dies, hence the size of the resend tail.
pub(crate) const RECEIVER_BUFFER_BYTES: usize = 8 << 20;

/// How long after its write a batch stays in the resend tail on a connection that is
/// still open (module docs). Bounds the duplicates a receiver restart causes on a
/// quiet stream to this much of it. Twice [`UNACKED_TIMEOUT`]: a batch this old on a
/// connection that is still open was acknowledged by the receiver's kernel.
pub(crate) const TAIL_AGE: Duration = Duration::from_secs(60);

/// `TCP_USER_TIMEOUT`: the kernel ends a connection on which written data stayed
/// unacknowledged by the peer's kernel this long (a receiver host that died or became
/// unreachable without a FIN or a reset; also one whose window stayed shut, which a
/// new connection and the tail then retry). Without it Linux retransmits for about 15
/// minutes, and batches would leave the tail by age while still in our send buffer.
pub(crate) const UNACKED_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after its write a batch's acknowledgement waits for the connection to be
/// seen still open (module docs). A receiver killed at that moment has closed the
/// connection within a round trip; longer would only delay the checkpoint.
pub(crate) const ACK_SETTLE: Duration = Duration::from_millis(100);

/// One batch written on the current connection, kept until the receiver has read it.
#[derive(Debug)]
struct Sent {
    bytes: Vec<u8>,
    records: usize,
    /// [`ResendTail::offset`] just after this batch.
    end: u64,
    written_at: Instant,
    /// The batch's token, until the batch is settled.
    ack: Option<AckToken>,
}

/// The batches written recently that the receiver may not have read yet, oldest first,
/// with the acknowledgements not given yet (module docs).
///
/// Pure bookkeeping: the writer tells it what was written, when the connection was seen
/// open, and when a new connection began with the tail written again. Held tokens are
/// always the newest batches (a suffix), resolved oldest first.
#[derive(Debug, Default)]
pub(crate) struct ResendTail {
    sent: VecDeque<Sent>,
    bytes: usize,
    records: usize,
    /// Bytes written on the current connection, re-sent ones included.
    offset: u64,
    /// The largest `SO_SNDBUF` seen.
    send_buffer: usize,
    /// The newest batch still waits for its token ([`ResendTail::hold`]).
    awaiting_token: bool,
    /// A buffer given back by a batch that left the tail, for the next one.
    spare: Vec<u8>,
}

impl ResendTail {
    /// What may sit between our write and the receiver's read (module docs).
    pub(crate) fn window(&self) -> u64 {
        (self.send_buffer + RECEIVER_BUFFER_BYTES) as u64
    }

    pub(crate) fn saw_send_buffer(&mut self, bytes: usize) {
        self.send_buffer = self.send_buffer.max(bytes);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    pub(crate) fn records(&self) -> usize {
        self.records
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a batch's token waits for the batch to settle.
    pub(crate) fn holds_acks(&self) -> bool {
        self.sent.back().is_some_and(|s| s.ack.is_some())
    }

    /// The batches to write again, oldest first, each whole.
    pub(crate) fn batches(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.sent.iter().map(|s| s.bytes.as_slice())
    }

    /// The number of records of each batch of [`ResendTail::batches`].
    pub(crate) fn batch_records(&self) -> impl Iterator<Item = usize> + '_ {
        self.sent.iter().map(|s| s.records)
    }

    /// A new connection began; with `resent`, the whole tail was written on it first,
    /// and it counts as written now.
    pub(crate) fn new_connection(&mut self, resent: bool, now: Instant) {
        self.offset = 0;
        self.awaiting_token = false;
        if resent {
            for s in &mut self.sent {
                self.offset += s.bytes.len() as u64;
                s.end = self.offset;
                s.written_at = now;
            }
        } else {
            // Nothing of it reached the new connection: it cannot be settled there.
            debug_assert!(self.sent.is_empty(), "a tail left behind");
        }
        self.settle_by_flow_control();
    }

    /// Keeps a copy of a batch just written whole on the current connection; its token
    /// comes with [`ResendTail::hold`].
    pub(crate) fn push(&mut self, batch: &EncodedBatch, now: Instant) {
        let n = batch.bytes().len();
        let mut buf = std::mem::take(&mut self.spare);
        buf.clear();
        // The buffer given back is reused (no churn of large allocations, which
        // fragments the heap), grown to exactly the batch's size: grown by `extend`
        // (doubling) the copies would hold up to twice what the tail keeps, and the tail
        // is the sink's largest memory. One far larger than the batch is let go.
        if buf.capacity() > 2 * n {
            buf = Vec::new();
        }
        buf.reserve_exact(n);
        buf.extend_from_slice(batch.bytes());
        self.offset += buf.len() as u64;
        self.bytes += buf.len();
        self.records += batch.len();
        self.sent.push_back(Sent {
            bytes: buf,
            records: batch.len(),
            end: self.offset,
            written_at: now,
            ack: None,
        });
        self.awaiting_token = true;
        self.settle_by_flow_control();
    }

    /// The token of the batch [`ResendTail::push`] took last: held until it settles.
    /// Any other token (nothing was kept) is resolved at once.
    pub(crate) fn hold(&mut self, ack: AckToken) {
        match self.sent.back_mut() {
            Some(s) if self.awaiting_token && s.ack.is_none() => s.ack = Some(ack),
            _ => ack.delivered(),
        }
        self.awaiting_token = false;
    }

    /// The connection was seen open at `now`: settles the batches written
    /// [`ACK_SETTLE`] before, drops those written [`TAIL_AGE`] before.
    pub(crate) fn seen_open(&mut self, now: Instant) {
        let held = self.first_held();
        for s in self.sent.range_mut(held..) {
            if now < s.written_at + ACK_SETTLE {
                break;
            }
            if let Some(ack) = s.ack.take() {
                ack.delivered();
            }
        }
        while self
            .sent
            .front()
            .is_some_and(|s| now >= s.written_at + TAIL_AGE)
        {
            self.drop_oldest();
        }
    }

    /// When [`ResendTail::seen_open`] has something to do next.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let settle = self
            .sent
            .get(self.first_held())
            .map(|s| s.written_at + ACK_SETTLE);
        let expire = self.sent.front().map(|s| s.written_at + TAIL_AGE);
        match (settle, expire) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The index of the oldest batch whose token is held (held tokens are a suffix).
    fn first_held(&self) -> usize {
        self.sent.partition_point(|s| s.ack.is_none())
    }

    /// Drops (and settles) the batches that flow control proves read.
    fn settle_by_flow_control(&mut self) {
        let window = self.window();
        while self
            .sent
            .front()
            .is_some_and(|s| self.offset - s.end >= window)
        {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        let Some(s) = self.sent.pop_front() else {
            return;
        };
        if let Some(ack) = s.ack {
            ack.delivered();
        }
        self.bytes -= s.bytes.len();
        self.records -= s.records;
        // Keep one buffer for the next batch, unless it is unusually large.
        if s.bytes.capacity() > self.spare.capacity() && s.bytes.capacity() <= KEEP_BUFFER_CAPACITY
        {
            self.spare = s.bytes;
        }
    }
}

/// Where a stream writer connects: a TCP host (plain or TLS), or a Unix-domain stream
/// socket (the unix sink in stream mode; the same tail and settling apply: a receiver
/// that restarts closes the connection, and what it had not read is lost with it).
enum Endpoint {
    Tcp {
        host: String,
        port: u16,
        keepalive: Option<Duration>,
        tls: Option<TlsClient>,
    },
    Unix {
        path: PathBuf,
    },
}

impl Endpoint {
    /// How the receiver is named in messages.
    fn name(&self) -> String {
        match self {
            Endpoint::Tcp { host, port, .. } => host_port(host, *port),
            Endpoint::Unix { path } => path.display().to_string(),
        }
    }
}

/// The writer of a stream sink (TCP, TLS, unix stream): one connection, the resend
/// tail, acknowledgements once a batch settled (module docs).
pub(crate) struct StreamWriter {
    sink: String,
    endpoint: Endpoint,
    connect_timeout: Duration,
    conn: Option<Connection>,
    connected_once: bool,
    /// Records of the current batch that a failed attempt may have written.
    partial: usize,
    /// Written again first on every new connection (module docs).
    tail: ResendTail,
    metrics: SinkMetrics,
}

struct Connection {
    stream: SinkStream,
    /// The address connected to (TCP), or the socket's path.
    peer: String,
    /// No batch was written on it yet.
    fresh: bool,
}

impl StreamWriter {
    /// The writer of TCP sink `sink`; loads the TLS settings (an unusable certificate
    /// file is a permanent error: the sink cannot start). Connects on the first write.
    pub(crate) fn tcp(
        sink: &str,
        opts: &TcpOptions,
        metrics: SinkMetrics,
    ) -> Result<Self, SinkError> {
        let TcpOptions {
            host,
            port,
            connect_timeout,
            keepalive,
            tls,
        } = opts;
        let tls = tls
            .as_ref()
            .map(|t| TlsClient::new(sink, host, t))
            .transpose()?;
        let endpoint = Endpoint::Tcp {
            host: host.clone(),
            port: *port,
            keepalive: *keepalive,
            tls,
        };
        Ok(Self::new(sink, endpoint, *connect_timeout, metrics))
    }

    /// The writer of a unix sink in stream mode, connecting to the socket at `path`.
    pub(crate) fn unix(
        sink: &str,
        path: &Path,
        connect_timeout: Duration,
        metrics: SinkMetrics,
    ) -> Self {
        let endpoint = Endpoint::Unix {
            path: path.to_path_buf(),
        };
        Self::new(sink, endpoint, connect_timeout, metrics)
    }

    fn new(
        sink: &str,
        endpoint: Endpoint,
        connect_timeout: Duration,
        metrics: SinkMetrics,
    ) -> Self {
        StreamWriter {
            sink: sink.to_string(),
            endpoint,
            connect_timeout,
            conn: None,
            connected_once: false,
            partial: 0,
            tail: ResendTail::default(),
            metrics,
        }
    }

    fn addr(&self, peer: &str) -> String {
        match &self.endpoint {
            Endpoint::Tcp { .. } => format!("{} ({peer})", self.endpoint.name()),
            Endpoint::Unix { .. } => peer.to_string(),
        }
    }

    /// The peer ended the connection (`why`); the next one starts with the tail.
    fn ended(&self, peer: &str, why: &str) {
        tracing::warn!(
            sink = %self.sink,
            peer = %peer,
            tail_records = self.tail.records(),
            tail_bytes = self.tail.bytes(),
            "connection {why}; reconnecting, and writing the records the receiver may not have read again first"
        );
    }

    /// Connects to the endpoint, with the socket options a long-lived connection gets.
    async fn connect(&self) -> Result<(SinkStream, String), SinkError> {
        match &self.endpoint {
            Endpoint::Tcp {
                host,
                port,
                keepalive,
                tls,
            } => {
                let (stream, peer) =
                    connect::connect(host, *port, self.connect_timeout, tls.as_ref()).await?;
                let tcp = stream.tcp().expect("a tcp connection");
                // Batches are written whole; Nagle's algorithm has nothing to coalesce.
                let _ = tcp.set_nodelay(false);
                if let Some(idle) = keepalive {
                    connect::set_keepalive(tcp, *idle, &self.sink, peer);
                }
                // Without it Linux retransmits for about 15 minutes, and batches would
                // leave the tail by age while still in our send buffer (module docs).
                connect::set_unacked_timeout(tcp, UNACKED_TIMEOUT, &self.sink, peer);
                Ok((stream, peer.to_string()))
            }
            Endpoint::Unix { path } => {
                let stream = connect::connect_unix(path, self.connect_timeout).await?;
                Ok((SinkStream::Unix(stream), path.display().to_string()))
            }
        }
    }

    /// Takes the open connection out of `self` (the caller puts it back after a
    /// successful write), or makes a new one.
    async fn take_connection(&mut self) -> Result<Connection, SinkError> {
        if let Some(mut conn) = self.conn.take() {
            match conn.stream.liveness() {
                Liveness::Open => {
                    self.tail.seen_open(Instant::now());
                    return Ok(conn);
                }
                Liveness::Closed { why } => self.ended(&conn.peer, &why),
            }
        }
        let (stream, peer) = self.connect().await?;
        let addr = self.endpoint.name();
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
}

impl Transport for StreamWriter {
    /// Writes one batch whole (an empty one: only what a new connection must carry
    /// first, the tail). Every new connection starts with the tail.
    async fn write(
        &mut self,
        records: &EncodedBatch,
        attempt: Attempt,
    ) -> Result<Written, SinkError> {
        if attempt == Attempt::First {
            self.partial = 0;
        }
        let mut conn = self.take_connection().await?;
        let resend = conn.fresh && !self.tail.is_empty();
        // Records of this batch that earlier attempts started writing.
        let prior = self.partial;
        let bytes = records.bytes();
        let mut written = 0;
        let mut tail_started = (0, 0);
        let result = async {
            if resend {
                for (old, n) in self.tail.batches().zip(self.tail.batch_records()) {
                    tail_started = (tail_started.0 + n, tail_started.1 + old.len());
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
        let started = records.records_started_before(written);
        // Every record handed to a socket once more counts, whether this attempt
        // succeeds or not: the receiver may have stored each copy.
        let again = tail_started.0 + started.min(prior);
        if again > 0 {
            self.metrics.resent(again);
            tracing::warn!(
                sink = %self.sink,
                peer = %conn.peer,
                records = again,
                tail_bytes = tail_started.1,
                "records written again on a new connection: the previous one ended without c42fwd closing it"
            );
        }
        self.partial = prior.max(started);
        if let Err(source) = result {
            // The connection is dropped here; the retry makes a new one, which starts
            // with the tail.
            let addr = self.addr(&conn.peer);
            return Err(SinkError::Write { addr, source });
        }
        if conn.fresh {
            if let Liveness::Closed { why: reason } = first_write_linger(&mut conn.stream).await {
                let addr = self.addr(&conn.peer);
                let hint = if conn.stream.is_tls() {
                    "does the server accept this client (its certificate, its name)? see the server's log"
                } else if conn.stream.tcp().is_none() {
                    "does the process listening on the socket accept a stream connection? see its log"
                } else {
                    "is it a TLS listener? (this sink has no tls settings)"
                };
                return Err(SinkError::ClosedAfterFirstWrite { addr, reason, hint });
            }
            conn.fresh = false;
            self.tail.new_connection(resend, Instant::now());
        }
        self.partial = 0;
        if let Ok(size) = conn.stream.socket().send_buffer_size() {
            self.tail.saw_send_buffer(size);
        }
        if !records.is_empty() {
            self.tail.push(records, Instant::now());
        }
        self.conn = Some(conn);
        Ok(Written {
            records: records.len(),
            bytes: bytes.len(),
        })
    }

    /// The token of the batch just written: resolved once the batch settles.
    fn hold(&mut self, ack: AckToken) {
        self.tail.hold(ack);
    }

    fn holds_acks(&self) -> bool {
        self.tail.holds_acks()
    }

    /// Held tokens whose connection ended: the tail must be written again before they
    /// can settle, without waiting for the next batch.
    fn wants_resend(&self) -> bool {
        self.conn.is_none() && self.tail.holds_acks()
    }

    /// When [`Transport::tick`] should look at the connection next (`None`: no need).
    fn next_tick(&self) -> Option<Instant> {
        self.conn.as_ref().and(self.tail.next_due())
    }

    /// Looks at the connection between batches: settles what is due if it is open,
    /// drops it if the peer ended it (the tail goes out on the next one).
    async fn tick(&mut self) -> Result<(), SinkError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        match conn.stream.liveness() {
            Liveness::Open => self.tail.seen_open(Instant::now()),
            Liveness::Closed { why } => {
                let peer = std::mem::take(&mut conn.peer);
                self.conn = None;
                self.ended(&peer, &why);
            }
        }
        Ok(())
    }
}

/// Checks that the sink can work without sending anything: connects (with TLS: loads
/// the certificates and completes a handshake) and closes.
pub(crate) async fn healthcheck(sink: &str, opts: &TcpOptions) -> Result<(), SinkError> {
    let client = opts
        .tls
        .as_ref()
        .map(|t| TlsClient::new(sink, &opts.host, t))
        .transpose()?;
    connect::connect(&opts.host, opts.port, opts.connect_timeout, client.as_ref())
        .await
        .map(drop)
}

/// Waits up to [`FIRST_WRITE_LINGER`] for the peer to close a new connection after the
/// first write. Returns `Open` when it kept it open. Whatever the peer sends meanwhile
/// (TLS session tickets) is handled by [`SinkStream::liveness`].
async fn first_write_linger(stream: &mut SinkStream) -> Liveness {
    let deadline = tokio::time::Instant::now() + FIRST_WRITE_LINGER;
    loop {
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Err(_) => return Liveness::Open,
            Ok(Err(e)) => {
                return Liveness::Closed {
                    why: format!("error: {e}"),
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
                stream.clear_readable();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{ack_set, AckWaiter, Outcome};

    fn batch(records: &[&str]) -> EncodedBatch {
        let mut b = EncodedBatch::default();
        for r in records {
            b.push_record(r.as_bytes());
        }
        b
    }

    fn token() -> (AckToken, AckWaiter) {
        let (mut tokens, waiter) = ack_set(1);
        (tokens.pop().expect("one token"), waiter)
    }

    fn kept(tail: &ResendTail) -> Vec<String> {
        tail.batches()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn batches_are_kept_whole_and_in_order_with_their_counts() {
        let t0 = Instant::now();
        let mut tail = ResendTail::default();
        tail.new_connection(false, t0);
        tail.push(&batch(&["5 a-0-0", "5 a-0-1"]), t0);
        tail.push(&batch(&["b-0\n"]), t0);
        assert_eq!(kept(&tail), vec!["5 a-0-05 a-0-1", "b-0\n"]);
        assert_eq!(tail.records(), 3);
        assert_eq!(tail.bytes(), 18);
        assert!(!tail.holds_acks());
    }

    #[test]
    fn a_token_is_held_until_the_connection_is_seen_open_after_the_settle_time() {
        let t0 = Instant::now();
        let mut tail = ResendTail::default();
        tail.new_connection(false, t0);
        tail.push(&batch(&["x\n"]), t0);
        let (ack, mut waiter) = token();
        tail.hold(ack);
        assert!(tail.holds_acks());
        assert_eq!(tail.next_due(), Some(t0 + ACK_SETTLE));
        tail.seen_open(t0 + ACK_SETTLE / 2);
        assert_eq!(waiter.try_outcome(), None, "too early to settle");
        tail.seen_open(t0 + ACK_SETTLE);
        assert_eq!(waiter.try_outcome(), Some(Outcome::Delivered));
        // Settled, but still kept: the receiver may not have read it yet.
        assert_eq!(kept(&tail), vec!["x\n"]);
        assert!(!tail.holds_acks());
        assert_eq!(tail.next_due(), Some(t0 + TAIL_AGE));
        tail.seen_open(t0 + TAIL_AGE - Duration::from_millis(1));
        assert!(!tail.is_empty());
        tail.seen_open(t0 + TAIL_AGE);
        assert!(tail.is_empty());
        assert_eq!((tail.records(), tail.bytes()), (0, 0));
        assert_eq!(tail.next_due(), None);
    }

    #[test]
    fn flow_control_settles_and_drops_what_is_a_window_behind_the_last_write() {
        let t0 = Instant::now();
        let mut tail = ResendTail::default();
        tail.new_connection(false, t0);
        tail.saw_send_buffer(1000);
        tail.saw_send_buffer(10);
        assert_eq!(tail.window(), (1000 + RECEIVER_BUFFER_BYTES) as u64);
        tail.push(&batch(&["first\n"]), t0);
        let (ack, mut first) = token();
        tail.hold(ack);
        // Exactly one window written after it: the receiver has read it.
        let filler = "f".repeat(tail.window() as usize - 1) + "\n";
        tail.push(&batch(&[filler.as_str()]), t0);
        let (ack, mut second) = token();
        tail.hold(ack);
        assert_eq!(first.try_outcome(), Some(Outcome::Delivered));
        assert_eq!(second.try_outcome(), None);
        assert_eq!(tail.records(), 1);
        assert_eq!(tail.bytes(), filler.len());
    }

    #[test]
    fn a_new_connection_carrying_the_tail_starts_its_clocks_and_offsets_again() {
        let t0 = Instant::now();
        let mut tail = ResendTail::default();
        tail.new_connection(false, t0);
        tail.push(&batch(&["a\n"]), t0);
        let (ack, mut a) = token();
        tail.hold(ack);
        tail.push(&batch(&["b\n"]), t0);
        let (ack, mut b) = token();
        tail.hold(ack);
        // The connection ended; the tail was written on the next one at t1.
        let t1 = t0 + ACK_SETTLE * 3;
        tail.new_connection(true, t1);
        tail.seen_open(t0 + ACK_SETTLE * 2);
        assert_eq!(a.try_outcome(), None, "settles only after its re-send");
        assert_eq!(kept(&tail), vec!["a\n", "b\n"]);
        assert_eq!(tail.next_due(), Some(t1 + ACK_SETTLE));
        tail.seen_open(t1 + ACK_SETTLE);
        assert_eq!(a.try_outcome(), Some(Outcome::Delivered));
        assert_eq!(b.try_outcome(), Some(Outcome::Delivered));
        // Offsets count from the new connection: a window after the re-sent bytes.
        let filler = "f".repeat(tail.window() as usize) + "\n";
        tail.push(&batch(&[filler.as_str()]), t1);
        assert_eq!(kept(&tail), vec![filler]);
    }

    #[test]
    fn a_token_without_a_kept_batch_is_resolved_at_once_and_a_dropped_tail_fails_its_tokens() {
        let t0 = Instant::now();
        let mut tail = ResendTail::default();
        let (ack, mut w) = token();
        tail.hold(ack);
        assert_eq!(w.try_outcome(), Some(Outcome::Delivered));
        tail.push(&batch(&["a\n"]), t0);
        let (ack, mut held) = token();
        tail.hold(ack);
        // A second token for the same batch is not kept.
        let (ack, mut extra) = token();
        tail.hold(ack);
        assert_eq!(extra.try_outcome(), Some(Outcome::Delivered));
        assert_eq!(held.try_outcome(), None);
        // The sink stopped (cancelled) with the batch unsettled: not delivered.
        drop(tail);
        assert_eq!(held.try_outcome(), Some(Outcome::NotDelivered));
    }
}
