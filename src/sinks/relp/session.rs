//! One RELP session on one connection: open (connect, TLS handshake, `open` and its
//! `200` with the server's offers, all within the connect timeout), the pipelined
//! writing of `syslog` frames and reading of what the server sends, one event at a
//! time ([`Session::step`]), and the polite `close`.
//!
//! Not here: which frames to send and what an answer means (`window.rs`, the
//! transport in `relp/mod.rs`).

use super::frame::{
    encode_frame, next_txnr, offered_commands, open_offers, parse_frame, parse_response, Frame,
};
use crate::sinks::connect::{self, host_port};
use crate::sinks::error::SinkError;
use crate::sinks::tls::{SinkStream, TlsClient};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;

/// Bytes of frames encoded ahead of the socket; beyond this the writer waits for the
/// socket before it encodes more (the window bounds frames, this bounds bytes).
const OUT_HIGH_WATER: usize = 256 * 1024;

/// Added to a TLS session that ends before `open` is answered.
const OPEN_TLS_HINT: &str = ": does the server require a client certificate \
    (tls.client_cert / tls.client_key) that it accepts? see the server's log";

/// An open session: `open` was answered with 200.
pub(super) struct Session {
    reader: ReadHalf<SinkStream>,
    writer: WriteHalf<SinkStream>,
    /// `host:port (peer)`, for messages.
    pub(super) addr: String,
    pub(super) peer: SocketAddr,
    /// Bytes read and not yet parsed.
    rbuf: Vec<u8>,
    /// The transaction number of the next command we send.
    next_txnr: u32,
    /// Frames encoded ahead of the socket (`syslog` frames are pipelined), written
    /// from `out_pos`; `need_flush`: written since the last flush.
    out: Vec<u8>,
    out_pos: usize,
    need_flush: bool,
}

/// Where a session goes and how: what `open` needs.
pub(super) struct Endpoint {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) connect_timeout: Duration,
    pub(super) tls: Option<TlsClient>,
}

/// What one [`Session::step`] did.
pub(super) enum Step {
    /// Bytes arrived: [`Session::read_frames`] has frames to look at (maybe none yet).
    Read,
    /// Some of the pipelined frames went out, or were flushed.
    Wrote,
    /// The deadline passed first.
    Deadline,
}

impl Session {
    /// Connects (and shakes hands), sends `open` and waits for its `200`, all within
    /// the connect timeout.
    pub(super) async fn open(s: &Endpoint) -> Result<Session, SinkError> {
        let addr = host_port(&s.host, s.port);
        let opened = tokio::time::timeout(s.connect_timeout, async {
            let (stream, peer) =
                connect::connect(&s.host, s.port, s.connect_timeout, s.tls.as_ref()).await?;
            let addr = format!("{addr} ({peer})");
            let (reader, writer) = tokio::io::split(stream);
            let mut session = Session {
                reader,
                writer,
                addr,
                peer,
                rbuf: Vec::with_capacity(16 * 1024),
                next_txnr: 1,
                out: Vec::with_capacity(64 * 1024),
                out_pos: 0,
                need_flush: false,
            };
            let txnr = session
                .send_command("open", open_offers().as_bytes())
                .await?;
            let data = session.response_to(txnr).await.map_err(|e| match e {
                // librelp drops a TLS client it does not accept right after the
                // handshake, without a word: say what is likely.
                SinkError::Relp { addr, reason } if s.tls.is_some() => SinkError::Relp {
                    addr,
                    reason: format!("{reason} before answering `open`{OPEN_TLS_HINT}"),
                },
                SinkError::Read { addr, source } if s.tls.is_some() => SinkError::Relp {
                    addr,
                    reason: format!(
                        "the session ended before `open` was answered ({source}){OPEN_TLS_HINT}"
                    ),
                },
                other => other,
            })?;
            let rsp = parse_response(&data).map_err(|reason| session.broken(reason))?;
            if rsp.code != 200 {
                return Err(SinkError::RelpRefused {
                    addr: session.addr.clone(),
                    command: "open".into(),
                    code: rsp.code,
                    text: rsp.text,
                });
            }
            let commands = offered_commands(rsp.rest);
            if !commands.iter().any(|c| c == "syslog") {
                return Err(session.broken(format!(
                    "the server does not offer the syslog command (it offers {commands:?})"
                )));
            }
            Ok(session)
        })
        .await;
        match opened {
            Ok(r) => r,
            Err(_) => Err(SinkError::Relp {
                addr,
                reason: format!(
                    "no answer to `open` within the connect timeout ({:?}): is it a relp listener{}?",
                    s.connect_timeout,
                    if s.tls.is_some() { " with tls" } else { "" }
                ),
            }),
        }
    }

    pub(super) fn broken(&self, reason: impl Into<String>) -> SinkError {
        SinkError::Relp {
            addr: self.addr.clone(),
            reason: reason.into(),
        }
    }

    fn take_txnr(&mut self) -> u32 {
        let t = self.next_txnr;
        self.next_txnr = next_txnr(t);
        t
    }

    /// Writes one command and flushes it (used for `open` and `close`; `syslog` frames
    /// are pipelined: [`Session::queue_syslog`], [`Session::step`]).
    async fn send_command(&mut self, command: &str, data: &[u8]) -> Result<u32, SinkError> {
        let txnr = self.take_txnr();
        let mut frame = Vec::with_capacity(data.len() + 32);
        encode_frame(&mut frame, txnr, command, data);
        let addr = self.addr.clone();
        let write = async {
            self.writer.write_all(&frame).await?;
            self.writer.flush().await
        };
        write
            .await
            .map_err(|source| SinkError::Write { addr, source })?;
        Ok(txnr)
    }

    /// Reads until one whole frame is buffered; returns it with its length.
    async fn read_frame(&mut self) -> Result<(u32, String, Vec<u8>), SinkError> {
        loop {
            if let Some((frame, used)) =
                parse_frame(&self.rbuf).map_err(|reason| self.broken(reason))?
            {
                let out = (frame.txnr, frame.command.to_string(), frame.data.to_vec());
                self.rbuf.drain(..used);
                return Ok(out);
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes into `rbuf`; a closed connection is an error.
    async fn fill(&mut self) -> Result<(), SinkError> {
        let n = self
            .reader
            .read_buf(&mut self.rbuf)
            .await
            .map_err(|source| SinkError::Read {
                addr: self.addr.clone(),
                source,
            })?;
        if n == 0 {
            return Err(self.broken("the server closed the connection"));
        }
        Ok(())
    }

    /// Waits for the `rsp` to `txnr` (the only command in flight).
    async fn response_to(&mut self, txnr: u32) -> Result<Vec<u8>, SinkError> {
        let (t, command, data) = self.read_frame().await?;
        match command.as_str() {
            "rsp" if t == txnr => Ok(data),
            "serverclose" => Err(self.broken("the server closed the session (serverclose)")),
            _ => Err(self.broken(format!(
                "expected the rsp to frame {txnr}, got `{command}` for frame {t}"
            ))),
        }
    }

    /// Whether more frames may be encoded ahead of the socket (the window bounds
    /// frames, [`OUT_HIGH_WATER`] bytes).
    pub(super) fn has_room(&self) -> bool {
        self.out.len() - self.out_pos < OUT_HIGH_WATER
    }

    /// Encodes a `syslog` frame with the next transaction number behind what waits for
    /// the socket; returns the number.
    pub(super) fn queue_syslog(&mut self, record: &[u8]) -> u32 {
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let txnr = self.take_txnr();
        encode_frame(&mut self.out, txnr, "syslog", record);
        txnr
    }

    /// The transaction number the next frame will carry.
    pub(super) fn next_txnr(&self) -> u32 {
        self.next_txnr
    }

    /// Whether pipelined bytes wait to be written or flushed.
    pub(super) fn has_output(&self) -> bool {
        self.out_pos < self.out.len() || self.need_flush
    }

    /// Waits for one thing to happen on the session: bytes from the server, some of
    /// the pipelined frames written (or flushed), or `deadline`. Cancel-safe: each
    /// branch either completes or leaves the session as it was.
    pub(super) async fn step(&mut self, deadline: Option<Instant>) -> Result<Step, SinkError> {
        let can_write = self.has_output();
        tokio::select! {
            biased;
            r = self.reader.read_buf(&mut self.rbuf) => {
                let n = r.map_err(|source| SinkError::Read { addr: self.addr.clone(), source })?;
                if n == 0 {
                    return Err(self.broken("the server closed the connection"));
                }
                Ok(Step::Read)
            }
            r = write_or_flush(&mut self.writer, &self.out[self.out_pos..]), if can_write => {
                let write_error = |source| SinkError::Write { addr: self.addr.clone(), source };
                match r.map_err(write_error)? {
                    Some(0) => Err(write_error(std::io::ErrorKind::WriteZero.into())),
                    Some(n) => {
                        self.out_pos += n;
                        self.need_flush = true;
                        Ok(Step::Wrote)
                    }
                    None => {
                        self.need_flush = false;
                        Ok(Step::Wrote)
                    }
                }
            }
            _ = sleep_until_opt(deadline) => Ok(Step::Deadline),
        }
    }

    /// Hands every whole frame read so far to `f`, in order, and forgets it; a frame
    /// that does not parse breaks the session.
    pub(super) fn read_frames(
        &mut self,
        mut f: impl FnMut(&Frame<'_>, &str) -> Result<(), SinkError>,
    ) -> Result<(), SinkError> {
        let mut used = 0;
        let result = loop {
            match parse_frame(&self.rbuf[used..]) {
                Ok(Some((frame, len))) => {
                    used += len;
                    if let Err(e) = f(&frame, &self.addr) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Err(reason) => break Err(self.broken(reason)),
            }
        };
        self.rbuf.drain(..used);
        result
    }

    /// Ends the session politely: `close`, then its `rsp` (or the server closing),
    /// within `timeout`. Failures do not matter any more: everything was acknowledged.
    pub(super) async fn close(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            let txnr = self.send_command("close", b"").await?;
            self.response_to(txnr).await?;
            let _ = self.writer.shutdown().await;
            Ok::<_, SinkError>(())
        })
        .await;
    }
}

/// Writes some of `buf` (`Some(bytes written)`), or flushes when `buf` is empty
/// (`None`): one branch of the session's `select!`, cancel-safe both ways. TLS needs the
/// flush: rustls keeps the last records it made until asked to write them out.
async fn write_or_flush(
    writer: &mut WriteHalf<SinkStream>,
    buf: &[u8],
) -> std::io::Result<Option<usize>> {
    if buf.is_empty() {
        writer.flush().await.map(|()| None)
    } else {
        writer.write(buf).await.map(Some)
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
