//! The TCP syslog sink: one connection, each batch written whole and then acknowledged.
//!
//! The host is resolved again on every (re)connect, so a collector that moved (DNS
//! fail-over) is found; each address is tried in turn within the connect timeout.
//! `TCP_NODELAY` stays off: a batch is one buffer already, and Nagle costs nothing then.
//! TCP keepalive is set through `socket2` when configured, so that a peer that vanished
//! without a FIN (a dead host, a NAT that forgot us) is noticed on an idle connection.
//!
//! Delivery: a batch is acknowledged once `write` took every byte and `flush` returned.
//! Plain TCP syslog has no application acknowledgement, so bytes in the kernel's send
//! buffer when the peer dies are lost; two things narrow that window. Before each batch
//! the connection is checked without blocking: a syslog receiver never sends, so a
//! readable socket means the peer closed or reset it, and we reconnect *before* writing
//! instead of writing into a dead socket. And a batch whose write failed is written
//! again whole on the new connection (at-least-once: records of it that the peer had
//! already read arrive twice and are counted in `sink_resent`). The RELP sink is the
//! answer for collectors that must acknowledge.
//!
//! A peer that accepts but stops reading makes the write wait (the route stalls: that
//! is the backpressure we want); only `shutdown` ends that wait.
//!
//! Not done here: TLS (a separate sink wraps the same writing loop around a TLS stream).

use super::{host_port, Attempt, EncodedBatch, SinkError, SinkMetrics, Written};
use socket2::{SockRef, TcpKeepalive};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub(crate) struct TcpWriter {
    sink: String,
    host: String,
    port: u16,
    connect_timeout: Duration,
    keepalive: Option<Duration>,
    conn: Option<(TcpStream, SocketAddr)>,
    connected_once: bool,
    /// Records of the current batch that a failed attempt may have written.
    partial: usize,
    metrics: SinkMetrics,
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

/// What a non-blocking look at a connection that should never receive anything says.
#[derive(Debug, PartialEq, Eq)]
enum Liveness {
    Open,
    /// The peer closed (FIN) or reset the connection.
    Closed(&'static str),
}

/// Looks at the socket without blocking and without waiting for the runtime's readiness
/// events (which may not have been delivered yet): `recv` on the non-blocking socket.
/// Anything the peer sent is read and thrown away (syslog receivers send nothing; if
/// one does, keeping it would hide a later FIN behind it).
fn liveness(stream: &TcpStream) -> Liveness {
    let sock = SockRef::from(stream);
    let mut buf = [MaybeUninit::<u8>::uninit(); 512];
    loop {
        match sock.recv(&mut buf) {
            Ok(0) => return Liveness::Closed("closed by the peer"),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Liveness::Open,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Liveness::Closed("reset by the peer"),
        }
    }
}

impl TcpWriter {
    pub(crate) fn new(
        sink: &str,
        host: String,
        port: u16,
        connect_timeout: Duration,
        keepalive: Option<Duration>,
        metrics: SinkMetrics,
    ) -> Self {
        TcpWriter {
            sink: sink.to_string(),
            host,
            port,
            connect_timeout,
            keepalive,
            conn: None,
            connected_once: false,
            partial: 0,
            metrics,
        }
    }

    /// Takes the open connection out of `self` (the caller puts it back after a
    /// successful write), or makes a new one.
    async fn take_connection(&mut self) -> Result<(TcpStream, SocketAddr), SinkError> {
        if let Some((stream, peer)) = self.conn.take() {
            match liveness(&stream) {
                Liveness::Open => return Ok((stream, peer)),
                Liveness::Closed(why) => {
                    tracing::warn!(sink = %self.sink, peer = %peer, "connection {why}; reconnecting before the next batch");
                }
            }
        }
        let (stream, peer) = connect(&self.host, self.port, self.connect_timeout).await?;
        // Batches are written whole; Nagle's algorithm has nothing to coalesce.
        let _ = stream.set_nodelay(false);
        if let Some(idle) = self.keepalive {
            // Probe after `idle` of silence, then every third of it: with the kernel's
            // default probe count a dead peer is noticed within about 4 x idle.
            let interval = (idle / 3).max(Duration::from_secs(1));
            let ka = TcpKeepalive::new().with_time(idle).with_interval(interval);
            if let Err(e) = SockRef::from(&stream).set_tcp_keepalive(&ka) {
                // Not fatal: the connection works, only dead-peer detection is slower.
                tracing::warn!(sink = %self.sink, peer = %peer, error = %e, "cannot set tcp keepalive");
            }
        }
        let addr = host_port(&self.host, self.port);
        if self.connected_once {
            self.metrics.reconnected();
            tracing::info!(sink = %self.sink, addr = %addr, peer = %peer, "reconnected");
        } else {
            tracing::info!(sink = %self.sink, addr = %addr, peer = %peer, "connected");
            self.connected_once = true;
        }
        Ok((stream, peer))
    }

    pub(crate) async fn write_batch(
        &mut self,
        records: &EncodedBatch,
        attempt: Attempt,
    ) -> Result<Written, SinkError> {
        if attempt == Attempt::First {
            self.partial = 0;
        }
        let (mut stream, peer) = self.take_connection().await?;
        if self.partial > 0 {
            self.metrics.resent(self.partial);
        }
        let bytes = records.bytes();
        let mut written = 0;
        let result = async {
            while written < bytes.len() {
                let n = stream.write(&bytes[written..]).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                written += n;
            }
            stream.flush().await
        }
        .await;
        match result {
            Ok(()) => {
                self.partial = 0;
                self.conn = Some((stream, peer));
                Ok(Written {
                    records: records.len(),
                    bytes: bytes.len(),
                })
            }
            Err(source) => {
                // The connection is dropped here; the retry makes a new one.
                let addr = format!("{} ({peer})", host_port(&self.host, self.port));
                self.partial = self.partial.max(records.records_started_before(written));
                Err(SinkError::Write { addr, source })
            }
        }
    }
}
