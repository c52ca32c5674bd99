//! Why a sink could not write, and what that means: [`SinkError`] (every message names
//! the peer or the file), its classification ([`SinkError::is_retriable`]: wait and try
//! again, or stop the sink) and the fixed `kind` label of `sink_errors`.
//!
//! Not here: what to do about an error (the delivery loop in `delivery.rs` backs off,
//! and `crate::retry` decides the delays) and the metrics (`metrics.rs`).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

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
    /// A Kafka sink: the client, a broker, or a delivery report said so. `brokers` is
    /// the bootstrap list (no credentials); `kind` is the `sink_errors` label.
    #[error("kafka {brokers}: {detail}")]
    Kafka {
        brokers: String,
        kind: &'static str,
        retriable: bool,
        detail: String,
    },
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
            SinkError::Stdout { .. } | SinkError::DeadLetter { .. } => false,
            SinkError::Http { retriable, .. } | SinkError::Kafka { retriable, .. } => *retriable,
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
            SinkError::Http { kind, .. } | SinkError::Kafka { kind, .. } => kind,
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
pub(crate) fn network_error_is_retriable(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_trouble_is_retriable_and_a_broken_stdout_is_not() {
        let io = |k: std::io::ErrorKind| std::io::Error::from(k);
        let addr = || "h:1".to_string();
        for kind in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::TimedOut,
        ] {
            assert!(SinkError::Connect {
                addr: addr(),
                source: io(kind)
            }
            .is_retriable());
            assert!(SinkError::Write {
                addr: addr(),
                source: io(kind)
            }
            .is_retriable());
        }
        assert!(SinkError::ConnectTimeout {
            addr: addr(),
            timeout: Duration::from_secs(1)
        }
        .is_retriable());
        assert!(!SinkError::Connect {
            addr: addr(),
            source: io(std::io::ErrorKind::PermissionDenied)
        }
        .is_retriable());
        assert!(!SinkError::Stdout {
            source: io(std::io::ErrorKind::BrokenPipe)
        }
        .is_retriable());
        assert!(!SinkError::DeadLetter {
            path: "/x".into(),
            source: io(std::io::ErrorKind::PermissionDenied)
        }
        .is_retriable());
        let e = SinkError::Connect {
            addr: "siem.example:6514".into(),
            source: io(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(
            e.to_string()
                .starts_with("cannot connect to siem.example:6514: "),
            "{e}"
        );
    }
}
