//! The RELP sink: acknowledged syslog, as rsyslog's librelp speaks it, plain or over TLS.
//!
//! # The protocol (as librelp 1.x speaks it; checked against librelp 1.11 in the tests)
//!
//! Every message either way is one frame: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`,
//! with `TXNR` a decimal transaction number (at most 9 digits), `COMMAND` a word,
//! `DATALEN` the decimal length of `DATA` (and no `SP DATA` when it is 0). A session:
//!
//! ```text
//! client: 1 open 57 relp_version=0\nrelp_software=c42fwd,0.1.0\ncommands=syslog LF
//! server: 1 rsp 93 200 OK\nrelp_version=0\nrelp_software=librelp,...\ncommands=syslog\n LF
//! client: 2 syslog 47 <13>1 2024-05-01T12:00:00Z host app - - - hello LF
//! client: 3 syslog ...                                 (up to `window` unanswered frames)
//! server: 2 rsp 6 200 OK LF
//! server: 3 rsp 6 200 OK LF
//! client: 4 close 0 LF                                 (at the end; the server answers rsp)
//! server: 0 serverclose 0 LF                           (a server that shuts down; txnr 0)
//! ```
//!
//! Transaction numbers increase by one per command and wrap from 999999999 to 1, as
//! librelp's do; 0 is the server's. librelp answers the frames of a session in the order
//! it received them, so an `rsp` must answer the oldest unanswered frame; anything else
//! breaks the session (it would mean we lost track of what was acknowledged).
//!
//! # Delivery
//!
//! Each record is one `syslog` frame whose data is the syslog message (RELP sinks get
//! `Framing::None` from the encoder: the frame delimits the record). Frames of several
//! batches may be in flight, at most `window` unanswered. A batch is Delivered when every
//! one of its frames got `200 OK`, and batches are acknowledged in order.
//!
//! When a session breaks (reset, `serverclose`, no `rsp` within `ack_timeout`, a
//! protocol error, a refused frame), every frame that was sent but not answered is sent
//! again, in order, on the next session, after the one backoff of `crate::retry`; they
//! are counted in `sink_resent`. The receiver may have stored some of them before the
//! break, so they can arrive twice: RELP gives at-least-once, never loss. A frame the
//! server refuses (`rsp` with a code other than 200) is an error that carries the
//! server's text; it is retried like a broken session (a server that refuses the same
//! frame forever stalls the route, it does not lose it), and counted as
//! `sink_errors{kind="relp_refused"}`.
//!
//! What "acknowledged" means on the server side is the server's business: rsyslog's
//! imrelp answers once the message is in its main queue. A receiver killed with
//! messages in an in-memory queue loses them unless its queue is on disk (or direct).
//!
//! Not done here: the backoff (`crate::retry`), TLS settings (`tls.rs`), encoding.

use super::connect::{self, host_port};
use super::delivery::{EncodedBatch, RecordEncoder, SinkContext};
use super::error::SinkError;
use super::metrics::SinkMetrics;
use super::tls::{SinkStream, TlsClient};
use crate::ack::AckToken;
use crate::config::{RelpOptions, Sink, SinkKind};
use crate::retry::Backoff;
use crate::route::SinkBatch;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

// ---------------------------------------------------------------------------------
// Frames (pure)
// ---------------------------------------------------------------------------------

/// The largest transaction number; the next one is 1 again.
pub(crate) const MAX_TXNR: u32 = 999_999_999;

/// The transaction number after `txnr`, wrapping as librelp does.
pub(crate) fn next_txnr(txnr: u32) -> u32 {
    if txnr >= MAX_TXNR {
        1
    } else {
        txnr + 1
    }
}

/// Largest `DATALEN` accepted from a server: an `rsp` is a few hundred bytes; a length
/// beyond this means we are not talking to a RELP server (or lost sync with it).
const MAX_INCOMING_DATALEN: usize = 1 << 20;

/// The longest command name librelp knows is `serverclose`; 32 leaves room.
const MAX_COMMAND_LEN: usize = 32;

/// One frame, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub txnr: u32,
    pub command: &'a str,
    pub data: &'a [u8],
}

/// Appends `TXNR SP COMMAND SP DATALEN [SP DATA] LF` to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(txnr).as_bytes());
    out.push(b' ');
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    out.extend_from_slice(n.format(data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// Parses the first frame in `buf`: `Ok(None)` when `buf` holds only part of one,
/// `Ok(Some((frame, bytes used)))`, or an error saying what is wrong (no resync is
/// attempted: the session is broken).
pub(crate) fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, String> {
    let mut pos = 0;
    let Some(txnr) = number_field(buf, &mut pos, 9, "transaction number")? else {
        return Ok(None);
    };
    if txnr > MAX_TXNR as usize {
        return Err(format!("transaction number {txnr} is out of range"));
    }
    // COMMAND SP
    let start = pos;
    loop {
        match buf.get(pos) {
            None if pos - start > MAX_COMMAND_LEN => break,
            None => return Ok(None),
            Some(b' ') => break,
            Some(b) if b.is_ascii_alphabetic() => pos += 1,
            Some(&b) => {
                return Err(format!(
                    "unexpected byte 0x{b:02x} in the command of frame {txnr}"
                ))
            }
        }
    }
    if pos == start || pos - start > MAX_COMMAND_LEN {
        return Err(format!("frame {txnr} has no valid command"));
    }
    let command = std::str::from_utf8(&buf[start..pos]).map_err(|e| e.to_string())?;
    pos += 1;
    // DATALEN, then LF (no data) or SP DATA LF.
    let len_start = pos;
    let datalen = loop {
        match buf.get(pos) {
            None if pos - len_start > 9 => {
                return Err(format!("the data length of frame {txnr} is too long"))
            }
            None => return Ok(None),
            Some(b) if b.is_ascii_digit() => pos += 1,
            Some(b' ' | b'\n') if pos > len_start => {
                break std::str::from_utf8(&buf[len_start..pos])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or_else(|| format!("bad data length in frame {txnr}"))?
            }
            Some(&b) => {
                return Err(format!(
                    "unexpected byte 0x{b:02x} in the data length of frame {txnr}"
                ))
            }
        }
    };
    if datalen > MAX_INCOMING_DATALEN {
        return Err(format!(
            "frame {txnr} announces {datalen} bytes of data, more than a relp server sends"
        ));
    }
    if datalen == 0 {
        // librelp writes `0 serverclose 0\n`; tolerate `... 0 \n` as well.
        if buf[pos] == b' ' {
            match buf.get(pos + 1) {
                None => return Ok(None),
                Some(b'\n') => pos += 1,
                Some(_) => return Err(format!("frame {txnr} has data but a data length of 0")),
            }
        }
        return Ok(Some((
            Frame {
                txnr: txnr as u32,
                command,
                data: &[],
            },
            pos + 1,
        )));
    }
    if buf[pos] != b' ' {
        return Err(format!(
            "frame {txnr}: no data after a data length of {datalen}"
        ));
    }
    let data_start = pos + 1;
    let end = data_start + datalen;
    match buf.get(end) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((
            Frame {
                txnr: txnr as u32,
                command,
                data: &buf[data_start..end],
            },
            end + 1,
        ))),
        Some(&b) => Err(format!(
            "frame {txnr} does not end with LF after {datalen} bytes of data (found 0x{b:02x})"
        )),
    }
}

/// Reads `digits SP` at `pos`: `Ok(None)` if the buffer ends first.
fn number_field(
    buf: &[u8],
    pos: &mut usize,
    max_digits: usize,
    what: &str,
) -> Result<Option<usize>, String> {
    let start = *pos;
    loop {
        match buf.get(*pos) {
            None if *pos - start > max_digits => return Err(format!("the {what} is too long")),
            None => return Ok(None),
            Some(b) if b.is_ascii_digit() => *pos += 1,
            Some(b' ') if *pos > start && *pos - start <= max_digits => {
                let n = std::str::from_utf8(&buf[start..*pos])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad {what}"))?;
                *pos += 1;
                return Ok(Some(n));
            }
            Some(&b) => {
                return Err(format!(
                    "unexpected byte 0x{b:02x} where the {what} should be: is this a relp server?"
                ))
            }
        }
    }
}

/// The data of an `rsp`: `CODE [SP TEXT] [LF OFFERS]`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response<'a> {
    pub code: u16,
    pub text: String,
    /// What follows the first line (the server's offers, in an `open` answer).
    pub rest: &'a [u8],
}

pub(crate) fn parse_response(data: &[u8]) -> Result<Response<'_>, String> {
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let code = line
        .get(..3)
        .filter(|c| c.iter().all(u8::is_ascii_digit))
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "an rsp without a status code: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            )
        })?;
    let text = String::from_utf8_lossy(line.get(3..).unwrap_or_default())
        .trim()
        .to_string();
    Ok(Response { code, text, rest })
}

/// The commands a server offers in its `open` answer (`commands=syslog,...`).
fn offered_commands(offers: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(offers)
        .lines()
        .filter_map(|l| l.strip_prefix("commands="))
        .flat_map(|c| c.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// What we offer in `open`.
fn open_offers() -> String {
    format!(
        "relp_version=0\nrelp_software=c42fwd,{}\ncommands=syslog",
        env!("CARGO_PKG_VERSION")
    )
}

// ---------------------------------------------------------------------------------
// The window of batches and frames (pure bookkeeping)
// ---------------------------------------------------------------------------------

/// One batch taken from the queue and not yet acknowledged.
struct InFlight {
    ack: Option<AckToken>,
    records: EncodedBatch,
    /// Records `..sent` went out on the current session (or were answered before).
    sent: usize,
    /// Records `..answered` got `200 OK`.
    answered: usize,
}

/// The frames sent and not answered, in sending order, and the batches they belong to.
/// Invariant: the unanswered frames are exactly, in order, the records
/// `answered..sent` of each batch in turn.
#[derive(Default)]
struct Window {
    batches: VecDeque<InFlight>,
    /// Transaction number and sending time of each unanswered frame.
    unanswered: VecDeque<(u32, Instant)>,
}

impl Window {
    /// The next record to send: (batch index, record index).
    fn next_unsent(&self) -> Option<(usize, usize)> {
        self.batches
            .iter()
            .position(|b| b.sent < b.records.len())
            .map(|i| (i, self.batches[i].sent))
    }

    fn all_sent(&self) -> bool {
        self.batches.iter().all(|b| b.sent == b.records.len())
    }

    /// Records the `200 OK` for the oldest unanswered frame; returns the batches that
    /// are now complete, in order, for the caller to acknowledge.
    fn answer_oldest(&mut self) -> Vec<InFlight> {
        self.unanswered.pop_front();
        if let Some(b) = self.batches.iter_mut().find(|b| b.answered < b.sent) {
            b.answered += 1;
        }
        self.take_complete()
    }

    /// Batches at the front that every frame of which was answered (also empty ones).
    fn take_complete(&mut self) -> Vec<InFlight> {
        let mut done = Vec::new();
        while self
            .batches
            .front()
            .is_some_and(|b| b.answered == b.records.len())
        {
            done.extend(self.batches.pop_front());
        }
        done
    }

    /// A session ended: what was sent and not answered goes out again on the next one.
    /// Returns how many frames that is.
    fn rewind(&mut self) -> usize {
        self.unanswered.clear();
        let mut n = 0;
        for b in &mut self.batches {
            n += b.sent - b.answered;
            b.sent = b.answered;
        }
        n
    }
}

// ---------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------

/// Settings of one RELP sink.
struct Settings {
    name: String,
    host: String,
    port: u16,
    connect_timeout: Duration,
    window: usize,
    ack_timeout: Duration,
    tls: Option<TlsClient>,
}

impl Settings {
    fn from_config(cfg: &Sink) -> Result<Settings, SinkError> {
        let SinkKind::Relp(RelpOptions {
            host,
            port,
            connect_timeout,
            window,
            ack_timeout,
            tls,
        }) = &cfg.kind
        else {
            return Err(SinkError::Unsupported {
                sink: cfg.name.clone(),
            });
        };
        Ok(Settings {
            name: cfg.name.clone(),
            host: host.clone(),
            port: *port,
            connect_timeout: *connect_timeout,
            window: (*window).max(1),
            ack_timeout: *ack_timeout,
            tls: tls
                .as_ref()
                .map(|t| TlsClient::new(&cfg.name, host, t))
                .transpose()?,
        })
    }
}

/// Added to a TLS session that ends before `open` is answered.
const OPEN_TLS_HINT: &str = ": does the server require a client certificate \
    (tls.client_cert / tls.client_key) that it accepts? see the server's log";

/// An open session: `open` was answered with 200.
struct Session {
    reader: ReadHalf<SinkStream>,
    writer: WriteHalf<SinkStream>,
    addr: String,
    peer: SocketAddr,
    /// Bytes read and not yet parsed.
    rbuf: Vec<u8>,
    /// The transaction number of the next command we send.
    next_txnr: u32,
}

impl Session {
    /// Connects (and shakes hands), sends `open` and waits for its `200`, all within
    /// the connect timeout.
    async fn open(s: &Settings) -> Result<Session, SinkError> {
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

    fn broken(&self, reason: impl Into<String>) -> SinkError {
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
    /// go through the pipelined writer in [`drive`]).
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

    /// Ends the session politely: `close`, then its `rsp` (or the server closing),
    /// within `timeout`. Failures do not matter any more: everything was acknowledged.
    async fn close(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            let txnr = self.send_command("close", b"").await?;
            self.response_to(txnr).await?;
            let _ = self.writer.shutdown().await;
            Ok::<_, SinkError>(())
        })
        .await;
    }
}

/// Opens a session and closes it: the server answers `open` with 200 and offers
/// `syslog`.
pub(crate) async fn healthcheck(cfg: &Sink) -> Result<(), SinkError> {
    let settings = Settings::from_config(cfg)?;
    let session = Session::open(&settings).await?;
    session.close(settings.connect_timeout).await;
    Ok(())
}

/// Bytes of frames encoded ahead of the socket; beyond this the writer waits for the
/// socket before it encodes more (the window bounds frames, this bounds bytes).
const OUT_HIGH_WATER: usize = 256 * 1024;

/// How a session ended without an error.
enum Ended {
    /// The queue is closed and drained, everything was acknowledged, `close` was sent.
    Finished,
    /// `shutdown` was cancelled.
    Cancelled,
}

/// Runs one RELP sink (see the module docs). Returns `Ok` when the queue is closed and
/// everything taken from it was acknowledged, or at once when `shutdown` is cancelled
/// (unacknowledged tokens are dropped: not delivered); `Err` on a permanent error or
/// when the retries allowed are used up (the tokens in hand are failed).
pub(crate) async fn run(
    cfg: Sink,
    rx: mpsc::Receiver<SinkBatch>,
    ctx: SinkContext,
    encoder: impl RecordEncoder,
) -> Result<(), SinkError> {
    let metrics = SinkMetrics::new(&ctx.metrics, &cfg.name);
    let settings = match Settings::from_config(&cfg) {
        Ok(s) => s,
        Err(e) => {
            // Nothing was taken from the queue: its batches count as not delivered.
            metrics.error(&e);
            tracing::error!(sink = %cfg.name, error = %e, "the sink cannot start");
            return Err(e);
        }
    };
    let mut sink = RelpSink {
        settings,
        rx,
        ctx,
        metrics,
        window: Window::default(),
        queue_open: true,
        connected_once: false,
    };
    sink.run(&cfg, &encoder).await
}

struct RelpSink {
    settings: Settings,
    rx: mpsc::Receiver<SinkBatch>,
    ctx: SinkContext,
    metrics: SinkMetrics,
    window: Window,
    /// The queue has not said "closed and drained" yet.
    queue_open: bool,
    connected_once: bool,
}

impl RelpSink {
    async fn run(&mut self, cfg: &Sink, encoder: &impl RecordEncoder) -> Result<(), SinkError> {
        let shutdown = self.ctx.shutdown.clone();
        let mut backoff: Option<Backoff> = None;
        loop {
            // Connect only when there is something to send.
            if self.window.batches.is_empty() {
                if !self.queue_open {
                    return Ok(());
                }
                let next = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(()),
                    next = self.rx.recv() => next,
                };
                self.take(next, encoder);
                self.deliver_complete();
                continue;
            }
            let opened = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                r = Session::open(&self.settings) => r,
            };
            let result = match opened {
                Ok(session) => {
                    self.opened(&session);
                    let mut progress = false;
                    let r = self.drive(session, encoder, &mut progress).await;
                    if progress {
                        // The session worked for a while: a later break starts the
                        // backoff from the beginning.
                        backoff = None;
                    }
                    r
                }
                Err(e) => Err(e),
            };
            let e = match result {
                Ok(Ended::Finished) | Ok(Ended::Cancelled) => return Ok(()),
                Err(e) => e,
            };
            let resend = self.window.rewind();
            self.metrics.error(&e);
            self.metrics.queue.set(self.rx.len() as i64);
            if !e.is_retriable() {
                tracing::error!(sink = %cfg.name, error = %e, "permanent sink error; the sink stops");
                self.fail_all();
                return Err(e);
            }
            let Some(delay) = backoff
                .get_or_insert_with(|| cfg.retry.backoff())
                .next_delay()
            else {
                tracing::error!(sink = %cfg.name, error = %e, "retries used up; the sink stops");
                self.fail_all();
                return Err(e);
            };
            tracing::warn!(sink = %cfg.name, error = %e, unanswered = resend, retry_in = ?delay, "relp session failed; unanswered frames will be sent again");
            if resend > 0 {
                self.metrics.resent(resend);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn opened(&mut self, session: &Session) {
        let tls = self.settings.tls.is_some();
        if self.connected_once {
            self.metrics.reconnected();
            tracing::info!(sink = %self.settings.name, addr = %session.addr, peer = %session.peer, tls, "relp session reopened");
        } else {
            self.connected_once = true;
            tracing::info!(sink = %self.settings.name, addr = %session.addr, peer = %session.peer, tls, "relp session open");
        }
    }

    /// Adds a batch from the queue to the window (`None`: the queue is closed).
    fn take(&mut self, next: Option<SinkBatch>, encoder: &impl RecordEncoder) {
        self.metrics.queue.set(self.rx.len() as i64);
        match next {
            None => {
                tracing::debug!(sink = %self.settings.name, "queue closed and drained");
                self.queue_open = false;
            }
            Some(SinkBatch { batch, ack }) => {
                let mut records = EncodedBatch::default();
                records.encode(encoder, &batch);
                self.window.batches.push_back(InFlight {
                    ack: Some(ack),
                    records,
                    sent: 0,
                    answered: 0,
                });
            }
        }
    }

    /// Acknowledges the batches at the front whose frames were all answered.
    fn deliver_complete(&mut self) {
        for mut b in self.window.take_complete() {
            self.delivered(&mut b);
        }
    }

    fn delivered(&self, b: &mut InFlight) {
        self.metrics.events.inc_by(b.records.len() as u64);
        self.metrics.bytes.inc_by(b.records.bytes().len() as u64);
        if let Some(ack) = b.ack.take() {
            ack.delivered();
        }
    }

    fn fail_all(&mut self) {
        for mut b in self.window.batches.drain(..) {
            if let Some(ack) = b.ack.take() {
                ack.failed();
            }
        }
    }

    /// Pipelines frames on one session until it breaks, the queue is finished, or
    /// shutdown. Sets `progress` when a frame was answered.
    async fn drive(
        &mut self,
        session: Session,
        encoder: &impl RecordEncoder,
        progress: &mut bool,
    ) -> Result<Ended, SinkError> {
        let shutdown = self.ctx.shutdown.clone();
        let Session {
            mut reader,
            mut writer,
            addr,
            peer,
            mut rbuf,
            next_txnr: mut txnr,
        } = session;
        let broken = |reason: String| SinkError::Relp {
            addr: addr.clone(),
            reason,
        };
        let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut out_pos = 0;
        let mut need_flush = false;
        let window = self.settings.window;
        let ack_timeout = self.settings.ack_timeout;
        loop {
            // Encode frames while the window and the output buffer have room.
            if out_pos == out.len() {
                out.clear();
                out_pos = 0;
            }
            while out.len() - out_pos < OUT_HIGH_WATER && self.window.unanswered.len() < window {
                let Some((bi, ri)) = self.window.next_unsent() else {
                    break;
                };
                let b = &mut self.window.batches[bi];
                encode_frame(&mut out, txnr, "syslog", b.records.record(ri));
                b.sent += 1;
                self.window.unanswered.push_back((txnr, Instant::now()));
                txnr = next_txnr(txnr);
            }
            if !self.queue_open && self.window.batches.is_empty() && out_pos == out.len() {
                let session = Session {
                    reader,
                    writer,
                    addr: addr.clone(),
                    peer,
                    rbuf,
                    next_txnr: txnr,
                };
                session.close(ack_timeout).await;
                return Ok(Ended::Finished);
            }
            // Take the next batch once everything in hand is on its way and the window
            // has room: the pipe stays full across batch boundaries.
            let can_take =
                self.queue_open && self.window.all_sent() && self.window.unanswered.len() < window;
            let deadline = self
                .window
                .unanswered
                .front()
                .map(|&(_, t)| crate::retry::deadline_after(t, ack_timeout));
            let oldest = self.window.unanswered.front().map(|&(t, _)| t);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(Ended::Cancelled),
                r = reader.read_buf(&mut rbuf) => {
                    let n = r.map_err(|source| SinkError::Read { addr: addr.clone(), source })?;
                    if n == 0 {
                        return Err(broken("the server closed the connection".into()));
                    }
                    let mut used = 0;
                    while let Some((frame, len)) = parse_frame(&rbuf[used..]).map_err(&broken)? {
                        used += len;
                        self.answer(frame, &addr)?;
                        *progress = true;
                    }
                    rbuf.drain(..used);
                }
                r = write_or_flush(&mut writer, &out[out_pos..]), if out_pos < out.len() || need_flush => {
                    match r.map_err(|source| SinkError::Write { addr: addr.clone(), source })? {
                        Some(0) => {
                            return Err(SinkError::Write { addr: addr.clone(), source: std::io::ErrorKind::WriteZero.into() });
                        }
                        Some(n) => {
                            out_pos += n;
                            need_flush = true;
                        }
                        None => need_flush = false,
                    }
                }
                next = self.rx.recv(), if can_take => {
                    self.take(next, encoder);
                    self.deliver_complete();
                }
                _ = sleep_until_opt(deadline) => {
                    return Err(broken(format!(
                        "no rsp to frame {} within the ack timeout ({ack_timeout:?})",
                        oldest.unwrap_or_default()
                    )));
                }
            }
        }
    }

    /// Handles one frame from the server during the pipelined phase.
    fn answer(&mut self, frame: Frame<'_>, addr: &str) -> Result<(), SinkError> {
        let broken = |reason: String| SinkError::Relp {
            addr: addr.to_string(),
            reason,
        };
        match frame.command {
            "rsp" => {
                let Some(&(expected, _)) = self.window.unanswered.front() else {
                    return Err(broken(format!(
                        "an rsp to frame {} that was not sent",
                        frame.txnr
                    )));
                };
                if frame.txnr != expected {
                    return Err(broken(format!(
                        "an rsp to frame {} while frame {expected} is the oldest unanswered",
                        frame.txnr
                    )));
                }
                let rsp = parse_response(frame.data).map_err(broken)?;
                if rsp.code != 200 {
                    return Err(SinkError::RelpRefused {
                        addr: addr.to_string(),
                        command: format!("syslog frame {}", frame.txnr),
                        code: rsp.code,
                        text: rsp.text,
                    });
                }
                for mut b in self.window.answer_oldest() {
                    self.delivered(&mut b);
                }
                Ok(())
            }
            "serverclose" => Err(broken("the server closed the session (serverclose)".into())),
            other => Err(broken(format!(
                "unexpected command `{other}` (frame {}) from the server",
                frame.txnr
            ))),
        }
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

/// The sink's records as `syslog` frames, for benches and tests of the framing.
#[cfg(test)]
fn frames_of(records: &EncodedBatch, first_txnr: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut t = first_txnr;
    for r in records.records() {
        encode_frame(&mut out, t, "syslog", r);
        t = next_txnr(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode_as_librelp_writes_them() {
        let mut out = Vec::new();
        encode_frame(&mut out, 1, "open", b"relp_version=0");
        encode_frame(&mut out, 2, "syslog", b"<13>hello\nworld");
        encode_frame(&mut out, 3, "close", b"");
        assert_eq!(
            out,
            b"1 open 14 relp_version=0\n2 syslog 15 <13>hello\nworld\n3 close 0\n"
        );
    }

    #[test]
    fn frames_parse_whole_partial_and_back_to_back() {
        let wire = b"2 rsp 6 200 OK\n0 serverclose 0\n1 rsp 22 200 OK\ncommands=syslog\n";
        let (f, n) = parse_frame(wire).unwrap().unwrap();
        assert_eq!(
            f,
            Frame {
                txnr: 2,
                command: "rsp",
                data: b"200 OK"
            }
        );
        let (f, m) = parse_frame(&wire[n..]).unwrap().unwrap();
        assert_eq!((f.txnr, f.command, f.data), (0, "serverclose", &b""[..]));
        let (f, k) = parse_frame(&wire[n + m..]).unwrap().unwrap();
        assert_eq!(f.data, b"200 OK\ncommands=syslog");
        assert_eq!(n + m + k, wire.len());
        // Every proper prefix is incomplete, never an error.
        for cut in 0..n {
            assert_eq!(parse_frame(&wire[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        for bad in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"\x15\x03\x03\x00\x02\x02\x28",
            b"1 rsp 6 200 OKX",
            b"1 r$p 6 200 OK\n",
            b"12345678901 rsp 0\n",
            b"1 rsp 99999999 x",
        ] {
            assert!(
                parse_frame(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn transaction_numbers_wrap_like_librelp() {
        assert_eq!(next_txnr(1), 2);
        assert_eq!(next_txnr(MAX_TXNR - 1), MAX_TXNR);
        assert_eq!(next_txnr(MAX_TXNR), 1);
        let mut b = EncodedBatch::default();
        b.push_record(b"a");
        b.push_record(b"b");
        assert_eq!(
            frames_of(&b, MAX_TXNR),
            b"999999999 syslog 1 a\n1 syslog 1 b\n"
        );
    }

    #[test]
    fn responses_carry_code_text_and_offers() {
        let r = parse_response(b"200 OK\nrelp_version=0\ncommands=syslog,foo\n").unwrap();
        assert_eq!((r.code, r.text.as_str()), (200, "OK"));
        assert_eq!(offered_commands(r.rest), vec!["syslog", "foo"]);
        let r = parse_response(b"500 command not supported").unwrap();
        assert_eq!((r.code, r.text.as_str()), (500, "command not supported"));
        assert!(parse_response(b"OK").is_err());
    }

    fn in_flight(n: usize) -> InFlight {
        let mut records = EncodedBatch::default();
        for i in 0..n {
            records.push_record(format!("r{i}").as_bytes());
        }
        InFlight {
            ack: None,
            records,
            sent: 0,
            answered: 0,
        }
    }

    /// Marks the next unsent record as sent with `txnr`.
    fn send(w: &mut Window, txnr: u32) -> (usize, usize) {
        let (bi, ri) = w.next_unsent().expect("something to send");
        w.batches[bi].sent += 1;
        w.unanswered.push_back((txnr, Instant::now()));
        (bi, ri)
    }

    #[test]
    fn window_completes_batches_in_order_and_rewinds_what_was_unanswered() {
        let mut w = Window::default();
        w.batches.push_back(in_flight(2));
        w.batches.push_back(in_flight(0));
        w.batches.push_back(in_flight(3));
        assert_eq!(send(&mut w, 1), (0, 0));
        assert_eq!(send(&mut w, 2), (0, 1));
        assert_eq!(send(&mut w, 3), (2, 0));
        assert!(w.answer_oldest().is_empty());
        // The second answer completes batch 0 and the empty batch behind it.
        assert_eq!(w.answer_oldest().len(), 2);
        assert_eq!(w.batches.len(), 1);
        // The session breaks with frame 3 unanswered: it is sent again, first.
        assert_eq!(w.rewind(), 1);
        assert!(w.unanswered.is_empty());
        assert_eq!(w.next_unsent(), Some((0, 0)));
        for t in 10..13 {
            send(&mut w, t);
        }
        assert!(w.all_sent());
        assert!(w.answer_oldest().is_empty());
        assert!(w.answer_oldest().is_empty());
        assert_eq!(w.answer_oldest().len(), 1);
        assert!(w.batches.is_empty());
    }

    // --- The sink against scripted servers -------------------------------------------

    use crate::ack::{ack_set, AckWaiter, Outcome};
    use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
    use crate::event::{Batch, Event, SourceKind};
    use crate::metrics::{label, Metrics};
    use crate::retry::BackoffPolicy;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    /// The event's JSON text, unframed.
    struct RawJson;

    impl RecordEncoder for RawJson {
        fn encode(&self, event: &Event, out: &mut Vec<u8>) {
            out.extend_from_slice(event.json().as_bytes());
        }
    }

    fn relp_sink(port: u16, window: usize, ack_timeout: Duration, retries: Option<u32>) -> Sink {
        Sink {
            name: "relp".into(),
            kind: SinkKind::Relp(RelpOptions {
                host: "127.0.0.1".into(),
                port,
                connect_timeout: Duration::from_secs(5),
                window,
                ack_timeout,
                tls: None,
            }),
            encoding: EncoderOptions {
                format: Format::JsonRaw,
                syslog: SyslogStyle::None,
                framing: Framing::None,
                facility: 13,
                hostname: "test".into(),
                app_name: "c42fwd".into(),
            },
            dead_letter_max_bytes: crate::sinks::DEAD_LETTER_MAX_BYTES,
            queue_batches: 4,
            retry: BackoffPolicy {
                initial: Duration::from_millis(5),
                max: Duration::from_millis(50),
                max_retries: retries,
            },
        }
    }

    fn batch(n: usize) -> (SinkBatch, AckWaiter) {
        let (mut tokens, waiter) = ack_set(1);
        let events = (0..n)
            .map(|i| {
                let raw = serde_json::value::RawValue::from_string(format!(r#"{{"seq":{i}}}"#))
                    .expect("json");
                Event::new(SourceKind::AuditLog, raw, chrono::Utc::now())
            })
            .collect();
        let sb = SinkBatch {
            batch: Arc::new(Batch {
                source: Arc::from("audit"),
                events,
            }),
            ack: tokens.pop().expect("one token"),
        };
        (sb, waiter)
    }

    /// What a scripted server does with one frame.
    enum Reply {
        Rsp(&'static str),
        Nothing,
        /// Raw bytes (e.g. a `serverclose`).
        Raw(&'static [u8]),
        /// Close the connection without answering.
        Close,
    }

    /// `syslog` frames the server saw: (connection number, txnr, data).
    type Seen = Arc<Mutex<Vec<(usize, u32, String)>>>;

    /// A RELP server on 127.0.0.1:0 that answers `open` (checking our offers) and runs
    /// `script(connection, txnr, data, unanswered)` for every `syslog` frame;
    /// `unanswered` counts frames the script did not answer yet on this connection
    /// including this one.
    async fn scripted_server(
        script: impl Fn(usize, u32, &str, usize) -> Reply + Send + Sync + 'static,
    ) -> (u16, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen: Seen = Arc::default();
        let script = Arc::new(script);
        tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut conn_no = 0;
                while let Ok((mut conn, _)) = listener.accept().await {
                    conn_no += 1;
                    let (seen, script) = (seen.clone(), script.clone());
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut unanswered: Vec<u32> = Vec::new();
                        loop {
                            let mut chunk = [0u8; 4096];
                            let n = match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            buf.extend_from_slice(&chunk[..n]);
                            let mut out = Vec::new();
                            let mut used = 0;
                            while let Some((f, len)) =
                                parse_frame(&buf[used..]).expect("client frames parse")
                            {
                                used += len;
                                let data = String::from_utf8_lossy(f.data).to_string();
                                match f.command {
                                    "open" => {
                                        assert_eq!(f.txnr, 1, "open is transaction 1");
                                        assert!(data.starts_with("relp_version=0\n"), "{data}");
                                        assert!(data.contains("\nrelp_software=c42fwd,"), "{data}");
                                        assert!(data.ends_with("\ncommands=syslog"), "{data}");
                                        encode_frame(&mut out, 1, "rsp", b"200 OK\nrelp_version=0\nrelp_software=scripted\ncommands=syslog\n");
                                    }
                                    "syslog" => {
                                        seen.lock().unwrap().push((conn_no, f.txnr, data.clone()));
                                        unanswered.push(f.txnr);
                                        match script(conn_no, f.txnr, &data, unanswered.len()) {
                                            Reply::Rsp(text) => {
                                                for t in unanswered.drain(..) {
                                                    encode_frame(
                                                        &mut out,
                                                        t,
                                                        "rsp",
                                                        text.as_bytes(),
                                                    );
                                                }
                                            }
                                            Reply::Nothing => {}
                                            Reply::Raw(bytes) => out.extend_from_slice(bytes),
                                            Reply::Close => {
                                                // What was answered before goes out.
                                                let _ = conn.write_all(&out).await;
                                                return;
                                            }
                                        }
                                    }
                                    "close" => {
                                        encode_frame(&mut out, f.txnr, "rsp", b"");
                                        let _ = conn.write_all(&out).await;
                                        return;
                                    }
                                    other => panic!("unexpected command {other}"),
                                }
                            }
                            buf.drain(..used);
                            if conn.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        (port, seen)
    }

    struct Running {
        tx: Option<mpsc::Sender<SinkBatch>>,
        ctx: SinkContext,
        task: tokio::task::JoinHandle<Result<(), SinkError>>,
    }

    fn start(cfg: Sink) -> Running {
        let (tx, rx) = mpsc::channel(cfg.queue_batches);
        let ctx = SinkContext {
            metrics: Arc::new(Metrics::new()),
            dead_letter_dir: std::env::temp_dir(),
            shutdown: CancellationToken::new(),
        };
        let task = tokio::spawn(run(cfg, rx, ctx.clone(), RawJson));
        Running {
            tx: Some(tx),
            ctx,
            task,
        }
    }

    impl Running {
        async fn send(&self, n: usize) -> AckWaiter {
            let (sb, w) = batch(n);
            self.tx
                .as_ref()
                .unwrap()
                .send(sb)
                .await
                .expect("queue open");
            w
        }

        async fn ended(self) -> Result<(), SinkError> {
            tokio::time::timeout(Duration::from_secs(10), self.task)
                .await
                .expect("sink ends in time")
                .expect("no panic")
        }

        fn resent(&self) -> u64 {
            self.ctx
                .metrics
                .sink_resent
                .get_or_create(&label("sink", "relp"))
                .get()
        }
    }

    async fn outcome(w: AckWaiter) -> Outcome {
        tokio::time::timeout(Duration::from_secs(10), w.wait())
            .await
            .expect("ack resolved in time")
    }

    #[tokio::test]
    async fn frames_are_numbered_windowed_and_acknowledged_per_batch() {
        // Answer only when the window is full: a sink that overran it would show up as
        // more unanswered frames than the window.
        let (port, seen) = scripted_server(|_, _, _, unanswered| {
            assert!(
                unanswered <= 4,
                "{unanswered} frames unanswered, window is 4"
            );
            if unanswered == 4 {
                Reply::Rsp("200 OK")
            } else {
                Reply::Nothing
            }
        })
        .await;
        let mut sink = start(relp_sink(port, 4, Duration::from_secs(5), None));
        let w1 = sink.send(8).await;
        let w2 = sink.send(4).await;
        assert_eq!(outcome(w1).await, Outcome::Delivered);
        assert_eq!(outcome(w2).await, Outcome::Delivered);
        sink.tx = None;
        sink.ended().await.expect("clean end");
        let seen = seen.lock().unwrap().clone();
        let txnrs: Vec<u32> = seen.iter().map(|(_, t, _)| *t).collect();
        assert_eq!(
            txnrs,
            (2..14).collect::<Vec<u32>>(),
            "one session, txnr from 2"
        );
        assert_eq!(seen[0].2, r#"{"seq":0}"#);
        assert_eq!(
            seen[8].2, r#"{"seq":0}"#,
            "second batch starts at its first record"
        );
    }

    #[tokio::test]
    async fn a_broken_session_sends_the_unanswered_frames_again() {
        // First connection: answer frames 2 and 3, then hang up while more are in
        // flight. Later connections: answer everything.
        let (port, seen) = scripted_server(|conn, txnr, _, _| match (conn, txnr) {
            (1, 2 | 3) => Reply::Rsp("200 OK"),
            (1, 6) => Reply::Close,
            (1, _) => Reply::Nothing,
            _ => Reply::Rsp("200 OK"),
        })
        .await;
        let sink = start(relp_sink(port, 8, Duration::from_secs(5), None));
        let w = sink.send(10).await;
        assert_eq!(outcome(w).await, Outcome::Delivered);
        let resent = sink.resent();
        let seen = seen.lock().unwrap().clone();
        let second: Vec<&str> = seen
            .iter()
            .filter(|(c, _, _)| *c == 2)
            .map(|(_, _, d)| d.as_str())
            .collect();
        let want: Vec<String> = (2..10).map(|i| format!(r#"{{"seq":{i}}}"#)).collect();
        assert_eq!(
            second, want,
            "the session resumes with the first unanswered record"
        );
        assert!(
            resent >= 3,
            "frames 4.. were in flight when the session broke: {resent}"
        );
        assert_eq!(
            sink.ctx
                .metrics
                .sink_events
                .get_or_create(&label("sink", "relp"))
                .get(),
            10
        );
    }

    #[tokio::test]
    async fn a_refused_frame_is_an_error_with_the_servers_text() {
        let (port, _) = scripted_server(|_, _, _, _| Reply::Rsp("500 queue full, try later")).await;
        let sink = start(relp_sink(port, 8, Duration::from_secs(5), Some(0)));
        let w = sink.send(3).await;
        let err = sink.ended().await.expect_err("refused");
        assert_eq!(outcome(w).await, Outcome::NotDelivered);
        let msg = err.to_string();
        assert!(msg.contains("500 queue full, try later"), "{msg}");
        assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
        assert_eq!(err.kind(), "relp_refused");
    }

    #[tokio::test]
    async fn no_rsp_within_the_ack_timeout_breaks_the_session() {
        let (port, _) = scripted_server(|_, _, _, _| Reply::Nothing).await;
        let sink = start(relp_sink(port, 8, Duration::from_millis(200), Some(0)));
        let w = sink.send(2).await;
        let err = sink.ended().await.expect_err("timeout");
        assert_eq!(outcome(w).await, Outcome::NotDelivered);
        assert!(
            err.to_string()
                .contains("no rsp to frame 2 within the ack timeout"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn serverclose_breaks_the_session() {
        let (port, _) = scripted_server(|_, _, _, _| Reply::Raw(b"0 serverclose 0\n")).await;
        let sink = start(relp_sink(port, 8, Duration::from_secs(5), Some(0)));
        let w = sink.send(2).await;
        let err = sink.ended().await.expect_err("serverclose");
        assert_eq!(outcome(w).await, Outcome::NotDelivered);
        assert!(err.to_string().contains("serverclose"), "{err}");
        assert!(err.is_retriable());
    }
}
