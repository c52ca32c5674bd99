//! The UDP syslog sink: one record per datagram, with an explicit size policy.
//!
//! A record larger than `max_datagram` is never sent split or silently dropped
//! (ARCHITECTURE.md, invariant 5): with [`OversizePolicy::Truncate`] it is cut on a UTF-8
//! boundary and ends with [`TRUNCATION_MARKER`] (counted in `sink_truncated`); with
//! [`OversizePolicy::DeadLetter`] the whole record goes to the sink's dead-letter file
//! instead (counted in `sink_discarded{reason="oversize"}`).
//!
//! Delivery: a batch is acknowledged when the kernel accepted every datagram and the
//! dead-letter lines of the batch are in their file. UDP has no acknowledgement; that
//! is the trade-off an operator picks with this sink. The socket is connected, so an
//! ICMP "port unreachable" from a receiver that is down surfaces as a refused send: the
//! sink then backs off, resolves the host again and goes on from the record that was
//! refused (the kernel did not send it); records already sent are not sent again.
//!
//! The unix sink in datagram mode is this writer with a Unix-domain datagram socket
//! ([`Target::Unix`]): a receiver that is down (nothing bound at the path, or the
//! socket left behind by a stopped one) refuses the connect or the send, and the same
//! back-off and going on from the refused record apply. A full receive queue makes the
//! send wait (backpressure), which UDP cannot do.
//!
//! Not done here: framing (UDP records come from the encoder unframed) and fragment
//! avoidance beyond `max_datagram` (the operator sizes it for the path MTU).

use super::connect::{host_port, resolve};
use super::dead_letter::DeadLetterFile;
use super::delivery::{Attempt, EncodedBatch, Transport, Written};
use super::error::SinkError;
use super::metrics::SinkMetrics;
use crate::config::{OversizePolicy, UdpOptions};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use tokio::net::{UdpSocket, UnixDatagram};

/// Ends every truncated record, so that a reader sees that something was cut.
pub const TRUNCATION_MARKER: &[u8] = b"...[truncated]";

/// Writes into `out` (cleared first) `record` cut to at most `max` bytes: the cut falls
/// on a UTF-8 character boundary and not inside a backslash escape, and the result ends
/// with [`TRUNCATION_MARKER`]. A final LF (line framing) is kept. A record that fits is
/// copied unchanged.
pub fn truncate_record(record: &[u8], max: usize, out: &mut Vec<u8>) {
    out.clear();
    if record.len() <= max {
        out.extend_from_slice(record);
        return;
    }
    let lf: &[u8] = if record.ends_with(b"\n") { b"\n" } else { b"" };
    let marker = if max >= TRUNCATION_MARKER.len() + lf.len() {
        TRUNCATION_MARKER
    } else {
        b""
    };
    let mut cut = max.saturating_sub(marker.len() + lf.len());
    // `record[cut]` is the first byte left out (cut < max < len): while it is a UTF-8
    // continuation byte, the character it belongs to would be split.
    while cut > 0 && record[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    // An odd run of backslashes at the end would escape the marker's first character
    // (CEF, JSON): leave the lone backslash out too.
    let backslashes = record[..cut]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    if backslashes % 2 == 1 {
        cut -= 1;
    }
    out.extend_from_slice(&record[..cut]);
    out.extend_from_slice(marker);
    out.extend_from_slice(lf);
}

/// Resolves `host` and returns a socket connected to its first address.
pub(crate) async fn connect(host: &str, port: u16) -> Result<(UdpSocket, SocketAddr), SinkError> {
    let addr = host_port(host, port);
    let peer = resolve(host, port).await?[0];
    let local: SocketAddr = if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let setup = async {
        let socket = UdpSocket::bind(local).await?;
        socket.connect(peer).await?;
        Ok(socket)
    };
    let socket = setup.await.map_err(|source| SinkError::Connect {
        addr: format!("{addr} ({peer})"),
        source,
    })?;
    Ok((socket, peer))
}

/// Where a datagram writer sends: a UDP host, or a Unix-domain datagram socket (the
/// unix sink in datagram mode: the same size policy and the same going on from the
/// refused record).
pub(crate) enum Target {
    Udp { host: String, port: u16 },
    Unix { path: PathBuf },
}

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Udp { host, port } => host_port(host, *port),
            Target::Unix { path } => path.display().to_string(),
        }
    }
}

/// A connected datagram socket.
enum Socket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Socket {
    async fn send(&self, datagram: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Udp(s) => s.send(datagram).await,
            Socket::Unix(s) => s.send(datagram).await,
        }
    }
}

/// Returns an unbound datagram socket connected to the socket at `path`.
pub(crate) fn connect_unix(path: &Path) -> Result<UnixDatagram, SinkError> {
    let setup = || {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(socket)
    };
    setup().map_err(|source| SinkError::Connect {
        addr: path.display().to_string(),
        source,
    })
}

/// The writer of a datagram sink (UDP, unix datagram).
pub(crate) struct UdpWriter {
    sink: String,
    target: Target,
    max_datagram: usize,
    oversize: OversizePolicy,
    socket: Option<(Socket, String)>,
    connected_once: bool,
    dead_letter: DeadLetterFile,
    metrics: SinkMetrics,
    /// Progress through the current batch, kept across retries of it.
    next: usize,
    sent: Written,
    truncated: u64,
    /// Scratch buffer for truncated records.
    scratch: Vec<u8>,
}

impl UdpWriter {
    /// Binds nothing yet: the first write resolves the host and connects a socket.
    pub(crate) fn new(
        sink: &str,
        opts: &UdpOptions,
        dead_letter: DeadLetterFile,
        metrics: SinkMetrics,
    ) -> Self {
        let target = Target::Udp {
            host: opts.host.clone(),
            port: opts.port,
        };
        Self::to(
            sink,
            target,
            opts.max_datagram,
            opts.oversize,
            dead_letter,
            metrics,
        )
    }

    /// A writer to `target`, with the size policy of its sink.
    pub(crate) fn to(
        sink: &str,
        target: Target,
        max_datagram: usize,
        oversize: OversizePolicy,
        dead_letter: DeadLetterFile,
        metrics: SinkMetrics,
    ) -> Self {
        UdpWriter {
            sink: sink.to_string(),
            target,
            max_datagram,
            oversize,
            socket: None,
            connected_once: false,
            dead_letter,
            metrics,
            next: 0,
            sent: Written::default(),
            truncated: 0,
            scratch: Vec::new(),
        }
    }

    async fn take_socket(&mut self) -> Result<(Socket, String), SinkError> {
        if let Some(s) = self.socket.take() {
            return Ok(s);
        }
        let (socket, peer) = match &self.target {
            Target::Udp { host, port } => {
                let (socket, peer) = connect(host, *port).await?;
                (Socket::Udp(socket), peer.to_string())
            }
            Target::Unix { path } => (
                Socket::Unix(connect_unix(path)?),
                path.display().to_string(),
            ),
        };
        let addr = self.target.name();
        if self.connected_once {
            self.metrics.reconnected();
            tracing::info!(sink = %self.sink, addr = %addr, peer = %peer, "datagram socket reconnected");
        } else {
            tracing::info!(sink = %self.sink, addr = %addr, peer = %peer, "datagram socket connected");
            self.connected_once = true;
        }
        Ok((socket, peer))
    }
}

impl Transport for UdpWriter {
    async fn write(
        &mut self,
        records: &EncodedBatch,
        attempt: Attempt,
    ) -> Result<Written, SinkError> {
        if attempt == Attempt::First {
            self.next = 0;
            self.sent = Written::default();
            self.truncated = 0;
        }
        if self.next < records.len() {
            let (socket, peer) = self.take_socket().await?;
            while self.next < records.len() {
                let record = records.record(self.next);
                let datagram = if record.len() <= self.max_datagram {
                    record
                } else {
                    match self.oversize {
                        OversizePolicy::Truncate => {
                            truncate_record(record, self.max_datagram, &mut self.scratch);
                            &self.scratch[..]
                        }
                        OversizePolicy::DeadLetter => {
                            self.dead_letter
                                .push("oversize", record, records.event(self.next));
                            self.next += 1;
                            continue;
                        }
                    }
                };
                if let Err(source) = socket.send(datagram).await {
                    // The kernel did not take this datagram: the retry starts with it.
                    let addr = match &self.target {
                        Target::Udp { .. } => format!("{} ({peer})", self.target.name()),
                        Target::Unix { .. } => peer,
                    };
                    return Err(SinkError::Send { addr, source });
                }
                if record.len() > self.max_datagram {
                    self.truncated += 1;
                    self.metrics.truncated(1);
                }
                self.sent.records += 1;
                self.sent.bytes += datagram.len();
                self.next += 1;
            }
            self.socket = Some((socket, peer));
        }
        let dead_lettered = self.dead_letter.flush().await?;
        self.metrics.discarded("oversize", dead_lettered as u64);
        if self.truncated > 0 || dead_lettered > 0 {
            tracing::warn!(
                sink = %self.sink,
                max_datagram = self.max_datagram,
                truncated = self.truncated,
                dead_lettered,
                dead_letter_file = %self.dead_letter.path().display(),
                "records larger than max_datagram in this batch"
            );
        }
        Ok(self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_cuts_on_a_char_boundary_and_marks_the_cut() {
        let mut out = Vec::new();
        truncate_record(b"short", 100, &mut out);
        assert_eq!(out, b"short");

        let record = "é".repeat(100); // 200 bytes of two-byte characters
        for max in 20..40 {
            truncate_record(record.as_bytes(), max, &mut out);
            assert!(out.len() <= max, "{max}: {}", out.len());
            assert!(out.ends_with(TRUNCATION_MARKER));
            let text = std::str::from_utf8(&out).expect("valid utf-8 after the cut");
            assert!(text.starts_with("éé"));
        }
    }

    #[test]
    fn truncation_keeps_a_final_lf_and_does_not_end_on_an_escape() {
        let mut out = Vec::new();
        let record = format!("{}\n", "a".repeat(100));
        truncate_record(record.as_bytes(), 50, &mut out);
        assert_eq!(out.len(), 50);
        assert!(out.ends_with(b"...[truncated]\n"));

        // cut would fall right after the backslash of `\=`
        let record = format!("{}\\={}", "x".repeat(35), "y".repeat(100));
        truncate_record(record.as_bytes(), 50, &mut out);
        let text = String::from_utf8(out.clone()).expect("utf-8");
        assert_eq!(text, format!("{}...[truncated]", "x".repeat(35)));
    }
}
