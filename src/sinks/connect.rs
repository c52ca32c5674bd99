//! Reaching a stream receiver (a Unix-domain socket: [`connect_unix`]): resolve the host (again on every connect, so a collector
//! that moved is found), connect to each address in turn within the connect timeout,
//! and with TLS run the handshake within the same timeout. Used by the TCP sink (plain
//! or TLS) and by RELP; also the socket options a long-lived sink connection gets
//! (keepalive, `TCP_USER_TIMEOUT`) and [`host_port`], the way a peer is named in
//! messages.
//!
//! Not here: the TLS configuration and the stream type (`tls.rs`), reconnecting and
//! what is written on a connection (the transports).

use super::error::SinkError;
use super::tls::{SinkStream, TlsClient};
use socket2::{SockRef, TcpKeepalive};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::{TcpStream, UnixStream};

/// `host:port` as it appears in messages (IPv6 literals in brackets).
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Every address `host` resolves to now; at least one.
pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, SinkError> {
    let addr = host_port(host, port);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| SinkError::Resolve {
            addr: addr.clone(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(SinkError::NoAddress { addr });
    }
    Ok(addrs)
}

/// Resolves `host` and connects to the first address that answers within `timeout`
/// (the timeout applies to each address).
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), SinkError> {
    let addr = host_port(host, port);
    let mut last = SinkError::NoAddress { addr: addr.clone() };
    for peer in resolve(host, port).await? {
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

/// Connects to `host:port` (every resolved address in turn, each within `timeout`) and,
/// with `tls`, runs the handshake within the same timeout.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    timeout: Duration,
    tls: Option<&TlsClient>,
) -> Result<(SinkStream, SocketAddr), SinkError> {
    let (tcp, peer) = connect_tcp(host, port, timeout).await?;
    match tls {
        None => Ok((SinkStream::Plain(tcp), peer)),
        Some(client) => {
            let addr = format!("{} ({peer})", host_port(host, port));
            let stream = client.handshake(tcp, &addr, timeout).await?;
            Ok((SinkStream::Tls(Box::new(stream)), peer))
        }
    }
}

/// Connects to the Unix-domain stream socket at `path` within `timeout`.
pub(crate) async fn connect_unix(path: &Path, timeout: Duration) -> Result<UnixStream, SinkError> {
    let addr = path.display().to_string();
    match tokio::time::timeout(timeout, UnixStream::connect(path)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(SinkError::Connect { addr, source }),
        Err(_) => Err(SinkError::ConnectTimeout { addr, timeout }),
    }
}

/// Turns on TCP keepalive: probes after `idle` of silence, then every third of it, so
/// that a peer that vanished without a FIN (a dead host, a NAT that forgot us) is
/// noticed on an idle connection. With the kernel's default probe count a dead peer is
/// noticed within about 4 x idle.
pub(crate) fn set_keepalive(stream: &TcpStream, idle: Duration, sink: &str, peer: SocketAddr) {
    let interval = (idle / 3).max(Duration::from_secs(1));
    let ka = TcpKeepalive::new().with_time(idle).with_interval(interval);
    if let Err(e) = SockRef::from(stream).set_tcp_keepalive(&ka) {
        // Not fatal: the connection works, only dead-peer detection is slower.
        tracing::warn!(sink, peer = %peer, error = %e, "cannot set tcp keepalive");
    }
}

/// `TCP_USER_TIMEOUT`: the kernel ends a connection on which written data stayed
/// unacknowledged by the peer's kernel for `timeout` (`tcp.rs` says why the TCP sink
/// needs it).
#[cfg(target_os = "linux")]
pub(crate) fn set_unacked_timeout(
    stream: &TcpStream,
    timeout: Duration,
    sink: &str,
    peer: SocketAddr,
) {
    if let Err(e) = SockRef::from(stream).set_tcp_user_timeout(Some(timeout)) {
        // Not fatal: a receiver host that vanished is noticed later.
        tracing::warn!(sink, peer = %peer, error = %e, "cannot set tcp_user_timeout");
    }
}

/// Elsewhere the kernel's own retransmission timeout applies.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_unacked_timeout(_: &TcpStream, _: Duration, _: &str, _: SocketAddr) {}
