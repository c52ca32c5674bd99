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
//! # Layout
//!
//! This file is the transport on the delivery loop (`sinks/delivery.rs`): a batch
//! written is copied into the window and its frames are sent (waiting for answers
//! while the window is full); its token is held until every frame got `200 OK`; ticks
//! between batches read the server's answers and write what waits; an error breaks
//! the session, rewinds the window, and the loop's backoff runs before the next
//! session sends the unanswered frames again. `frame.rs`: frames and responses (pure);
//! `session.rs`: one session on one connection; `window.rs`: frames in flight,
//! answers, rewinds (pure).
//!
//! Not done here: the backoff (`crate::retry`, run by the delivery loop), TLS settings
//! (`sinks/tls.rs`), encoding.

mod frame;
mod session;
mod window;

use self::session::{Endpoint, Session, Step};
use self::window::{InFlight, Window};
use super::delivery::{Attempt, EncodedBatch, Transport, Written};
use super::error::SinkError;
use super::metrics::SinkMetrics;
use super::tls::TlsClient;
use crate::ack::AckToken;
use crate::config::RelpOptions;
use crate::retry::deadline_after;
use std::time::Duration;
use tokio::time::Instant;

/// One RELP sink: its settings, the window, and the session while one is open.
pub(crate) struct RelpSink {
    name: String,
    endpoint: Endpoint,
    /// At most this many frames unanswered.
    window_size: usize,
    ack_timeout: Duration,
    metrics: SinkMetrics,
    window: Window,
    session: Option<Session>,
    connected_once: bool,
    /// Frames rewound by broken sessions, counted in `sink_resent` when the next
    /// session opens to send them again.
    rewound: usize,
    /// A frame was answered since [`Transport::made_progress`] was last asked.
    answered: bool,
}

/// Where the sink's sessions go; loads the TLS settings (an unusable certificate file
/// is a permanent error).
fn endpoint(sink: &str, opts: &RelpOptions) -> Result<Endpoint, SinkError> {
    Ok(Endpoint {
        host: opts.host.clone(),
        port: opts.port,
        connect_timeout: opts.connect_timeout,
        tls: opts
            .tls
            .as_ref()
            .map(|t| TlsClient::new(sink, &opts.host, t))
            .transpose()?,
    })
}

/// Opens a session and closes it: the server answers `open` with 200 and offers
/// `syslog`.
pub(crate) async fn healthcheck(sink: &str, opts: &RelpOptions) -> Result<(), SinkError> {
    let session = Session::open(&endpoint(sink, opts)?).await?;
    session.close(opts.connect_timeout).await;
    Ok(())
}

impl RelpSink {
    /// The sink `sink`; opens no session until there is something to send.
    pub(crate) fn new(
        sink: &str,
        opts: &RelpOptions,
        metrics: SinkMetrics,
    ) -> Result<Self, SinkError> {
        Ok(RelpSink {
            name: sink.to_string(),
            endpoint: endpoint(sink, opts)?,
            window_size: opts.window.max(1),
            ack_timeout: opts.ack_timeout,
            metrics,
            window: Window::default(),
            session: None,
            connected_once: false,
            rewound: 0,
            answered: false,
        })
    }

    async fn open(&mut self) -> Result<Session, SinkError> {
        let session = Session::open(&self.endpoint).await?;
        let tls = self.endpoint.tls.is_some();
        let (sink, addr, peer) = (&self.name, &session.addr, session.peer);
        if self.connected_once {
            self.metrics.reconnected();
            tracing::info!(sink = %sink, addr = %addr, peer = %peer, tls, "relp session reopened");
        } else {
            self.connected_once = true;
            tracing::info!(sink = %sink, addr = %addr, peer = %peer, tls, "relp session open");
        }
        // What the broken session left unanswered goes out first on this one.
        if self.rewound > 0 {
            self.metrics.resent(std::mem::take(&mut self.rewound));
        }
        Ok(session)
    }

    /// Sends every frame of the window (opening a session if needed), waiting for
    /// answers while the window is full.
    async fn send_all(&mut self) -> Result<(), SinkError> {
        while !self.window.all_sent() {
            if self.session.is_none() {
                self.session = Some(self.open().await?);
            }
            self.fill();
            if !self.window.all_sent() {
                self.step().await?;
            }
        }
        Ok(())
    }

    /// Encodes the next frames while the window and the output buffer have room.
    fn fill(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let now = Instant::now();
        while session.has_room() && self.window.unanswered() < self.window_size {
            let Some(record) = self.window.send_next(session.next_txnr(), now) else {
                break;
            };
            session.queue_syslog(record);
        }
    }

    /// One event on the open session: answers read (batches acknowledged), frames
    /// written, or the ack timeout of the oldest unanswered frame.
    async fn step(&mut self) -> Result<(), SinkError> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        let oldest = self.window.oldest();
        let deadline = oldest.map(|(_, sent)| deadline_after(sent, self.ack_timeout));
        match session.step(deadline).await? {
            Step::Wrote => {}
            Step::Deadline => {
                return Err(session.broken(format!(
                    "no rsp to frame {} within the ack timeout ({:?})",
                    oldest.map(|(txnr, _)| txnr).unwrap_or_default(),
                    self.ack_timeout
                )));
            }
            Step::Read => {
                let (window, metrics, answered) =
                    (&mut self.window, &self.metrics, &mut self.answered);
                session.read_frames(|frame, addr| {
                    for b in window.answer(frame, addr)? {
                        delivered(metrics, b);
                    }
                    *answered = true;
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// The session broke with `e`: what was sent and not answered goes out again on
    /// the next one (after the delivery loop's backoff).
    fn broke(&mut self, e: SinkError) -> SinkError {
        self.session = None;
        let unanswered = self.window.rewind();
        self.rewound += unanswered;
        if unanswered > 0 && e.is_retriable() {
            tracing::warn!(sink = %self.name, error = %e, unanswered, "relp session failed; unanswered frames will be sent again");
        }
        e
    }
}

/// A batch whose every frame got `200 OK`: counted, and its token resolved.
fn delivered(metrics: &SinkMetrics, mut b: InFlight) {
    metrics.delivered(b.records.len(), b.records.bytes().len());
    if let Some(ack) = b.ack.take() {
        ack.delivered();
    }
}

impl Transport for RelpSink {
    /// Takes the batch into the window (once: a retry finds it there) and sends its
    /// frames. Counts nothing: a batch is counted when it is acknowledged.
    async fn write(
        &mut self,
        records: &EncodedBatch,
        attempt: Attempt,
    ) -> Result<Written, SinkError> {
        if attempt == Attempt::First && !records.is_empty() {
            self.window.push(records.copy_records());
        }
        match self.send_all().await {
            Ok(()) => Ok(Written::default()),
            Err(e) => Err(self.broke(e)),
        }
    }

    /// Held until every frame of the batch got `200 OK`.
    fn hold(&mut self, ack: AckToken) {
        if let Some(ack) = self.window.hold(ack) {
            ack.delivered();
        }
    }

    fn holds_acks(&self) -> bool {
        !self.window.is_empty()
    }

    /// A session broke with frames unanswered: they go out again on a new one.
    fn wants_resend(&self) -> bool {
        self.session.is_none() && !self.window.all_sent()
    }

    /// While a session is open, ticks read what the server sends (answers, a
    /// `serverclose`) and write what waits.
    fn next_tick(&self) -> Option<Instant> {
        self.session.as_ref().map(|_| Instant::now())
    }

    async fn tick(&mut self) -> Result<(), SinkError> {
        match self.step().await {
            Ok(()) => {
                self.fill();
                Ok(())
            }
            Err(e) => Err(self.broke(e)),
        }
    }

    fn made_progress(&mut self) -> bool {
        std::mem::take(&mut self.answered)
    }

    /// Everything was acknowledged: `close`, and its `rsp`, within the ack timeout.
    async fn close(&mut self) {
        if let Some(session) = self.session.take() {
            session.close(self.ack_timeout).await;
        }
    }
}

#[cfg(test)]
mod tests;
