//! The one home of integration-test helpers: test files import helpers only from here,
//! never from each other.
//!
//! This file holds the generic pieces: plain receivers that record raw bytes, event and
//! batch builders, small parsers for what the receivers saw, and polling with a
//! deadline. The submodules hold:
//! - [`config`]: pieces of daemon configs many tests write alike;
//! - [`daemon`]: the `c42fwd` binary, its log and metrics address, the emulator;
//! - [`http`]: a sink fed through its queue, for the HEC and HTTP sink tests;
//! - [`kafka`]: a real Kafka-compatible broker (Tansu) and a consumer;
//! - [`metrics`]: a daemon's `/metrics`, `/health` and `/ready`, samples of a Prometheus text;
//! - [`relp_server`]: a RELP server that holds back its answers on request;
//! - [`rsyslog`]: a real rsyslogd as a receiver;
//! - [`pki`]: test certificates;
//! - [`sink`]: a sink task fed by hand, numbered events, waiting for delivery;
//! - [`source`]: a source poller run against the emulator with a recording sink.
#![allow(dead_code)] // each test module uses its own subset

pub mod config;
pub mod daemon;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod metrics;
pub mod pki;
pub mod relp_server;
pub mod rsyslog;
pub mod sink;
pub mod source;
pub mod syslog_ng;

use c42fwd::ack::{ack_set, AckWaiter};
use c42fwd::event::{Batch, Event, SourceKind};
use c42fwd::route::SinkBatch;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen promptly before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// An event built from a JSON text (which must be valid JSON).
pub fn event(json: &str) -> Event {
    event_at(json, Utc::now())
}

pub fn event_at(json: &str, occurred: DateTime<Utc>) -> Event {
    let raw = RawValue::from_string(json.to_string())
        .unwrap_or_else(|e| panic!("test event is not valid json ({e}): {json}"));
    Event::new(SourceKind::AuditLog, raw, occurred)
}

/// A batch for one sink, with its ack waiter.
pub fn sink_batch(source: &str, events: Vec<Event>) -> (SinkBatch, AckWaiter) {
    let (mut tokens, waiter) = ack_set(1);
    let ack = tokens.pop().expect("ack_set(1) gives one token");
    let batch = Arc::new(Batch {
        source: Arc::from(source),
        events,
    });
    (SinkBatch { batch, ack }, waiter)
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then released). Connecting
/// to it is refused until someone binds it again.
pub fn unused_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Splits RFC 6587 octet-counted frames (`LEN SP MSG`). Panics on anything else, with
/// the offset, so that a framing bug is plain in the test output.
pub fn octet_frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut offset = 0;
    while !bytes.is_empty() {
        let sp = bytes
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or_else(|| panic!("no SP after the length at offset {offset}"));
        let len: usize = std::str::from_utf8(&bytes[..sp])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "bad octet count {:?} at offset {offset}",
                    String::from_utf8_lossy(&bytes[..sp])
                )
            });
        let end = sp + 1 + len;
        assert!(
            end <= bytes.len(),
            "frame at offset {offset} claims {len} bytes, only {} left",
            bytes.len() - sp - 1
        );
        frames.push(bytes[sp + 1..end].to_vec());
        bytes = &bytes[end..];
        offset += end;
    }
    frames
}

/// Splits LF-framed records; the last record must end with LF.
pub fn lf_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "lf-framed stream does not end with LF"
    );
    bytes
        .split(|&b| b == b'\n')
        .filter(|r| !r.is_empty())
        .map(|r| r.to_vec())
        .collect()
}

/// What a [`TcpReceiver`] saw: the bytes of each accepted connection, in accept order.
#[derive(Debug, Default, Clone)]
pub struct TcpReceived {
    pub connections: Vec<Vec<u8>>,
}

impl TcpReceived {
    /// Every byte received, connections concatenated in accept order.
    pub fn bytes(&self) -> Vec<u8> {
        self.connections.concat()
    }
}

/// A plain TCP receiver on 127.0.0.1 (port 0) that records every byte of every
/// connection, for tests that check the exact bytes on the wire (framing).
pub struct TcpReceiver {
    addr: SocketAddr,
    state: Arc<Mutex<TcpReceived>>,
    changed: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl TcpReceiver {
    /// Listens on 127.0.0.1, on a port the kernel picks.
    pub async fn bind() -> Self {
        Self::bind_port(0).await
    }

    /// Listens on 127.0.0.1:`port` (a peer that comes up on a port a sink already
    /// tries, see [`unused_tcp_port`]).
    pub async fn bind_port(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(TcpReceived::default()));
        let (tx, changed) = watch::channel(0u64);
        let task = tokio::spawn(accept_loop(listener, state.clone(), Arc::new(tx)));
        TcpReceiver {
            addr,
            state,
            changed,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn received(&self) -> TcpReceived {
        self.state.lock().expect("receiver state").clone()
    }

    /// Waits until `done` holds for what was received, and returns it; panics with
    /// what did arrive when `within` passes first.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&TcpReceived) -> bool,
    ) -> TcpReceived {
        wait_on_changes(
            &self.changed,
            within,
            || self.received(),
            &mut done,
            || format!("tcp receiver {} stopped while waiting for {what}", self.addr),
            |now| {
                format!(
                    "tcp receiver {}: timed out after {within:?} waiting for {what}; got {} connection(s), {} bytes: {:?}",
                    self.addr,
                    now.connections.len(),
                    now.bytes().len(),
                    String::from_utf8_lossy(&now.bytes())
                )
            },
        )
        .await
    }

    /// Waits for at least `n` bytes in total.
    pub async fn wait_for_bytes(&self, n: usize, within: Duration) -> Vec<u8> {
        self.wait_until(&format!("{n} bytes"), within, |r| {
            r.connections.iter().map(Vec::len).sum::<usize>() >= n
        })
        .await
        .bytes()
    }
}

impl Drop for TcpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<TcpReceived>>,
    tx: Arc<watch::Sender<u64>>,
) {
    let mut readers = tokio::task::JoinSet::new();
    while let Ok((mut conn, _)) = listener.accept().await {
        let index = {
            let mut s = state.lock().expect("receiver state");
            s.connections.push(Vec::new());
            s.connections.len() - 1
        };
        tx.send_modify(|v| *v += 1);
        let (state, tx) = (state.clone(), tx.clone());
        readers.spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            while let Ok(n) = conn.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                state.lock().expect("receiver state").connections[index]
                    .extend_from_slice(&buf[..n]);
                tx.send_modify(|v| *v += 1);
            }
        });
    }
}

/// A plain UDP receiver on 127.0.0.1 (port 0) that records every datagram.
pub struct UdpReceiver {
    addr: SocketAddr,
    state: Arc<Mutex<Vec<Vec<u8>>>>,
    changed: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl UdpReceiver {
    pub async fn bind() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(Vec::new()));
        let (tx, changed) = watch::channel(0u64);
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                let mut buf = vec![0; 65536];
                while let Ok(n) = socket.recv(&mut buf).await {
                    state
                        .lock()
                        .expect("receiver state")
                        .push(buf[..n].to_vec());
                    tx.send_modify(|v| *v += 1);
                }
            }
        });
        UdpReceiver {
            addr,
            state,
            changed,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn datagrams(&self) -> Vec<Vec<u8>> {
        self.state.lock().expect("receiver state").clone()
    }

    /// Waits for at least `n` datagrams and returns all received so far.
    pub async fn wait_for_datagrams(&self, n: usize, within: Duration) -> Vec<Vec<u8>> {
        wait_on_changes(
            &self.changed,
            within,
            || self.datagrams(),
            |now| now.len() >= n,
            || {
                format!(
                    "udp receiver {} stopped while waiting for {n} datagrams",
                    self.addr
                )
            },
            |now| {
                format!(
                    "udp receiver {}: timed out after {within:?} waiting for {n} datagrams; got {}",
                    self.addr,
                    now.len()
                )
            },
        )
        .await
    }
}

/// Waits until `done` holds for `snapshot()`, looking again at every change `changed`
/// announces; panics with `stopped()` when the receiver's task ends, or with
/// `timed_out(last snapshot)` when `within` passes first.
pub(crate) async fn wait_on_changes<T>(
    changed: &watch::Receiver<u64>,
    within: Duration,
    snapshot: impl Fn() -> T,
    mut done: impl FnMut(&T) -> bool,
    stopped: impl Fn() -> String,
    timed_out: impl Fn(&T) -> String,
) -> T {
    let mut changed = changed.clone();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = snapshot();
        if done(&now) {
            return now;
        }
        let woke = tokio::time::timeout_at(deadline, changed.changed()).await;
        assert!(!matches!(woke, Ok(Err(_))), "{}", stopped());
        if woke.is_err() {
            panic!("{}", timed_out(&now));
        }
    }
}

impl Drop for UdpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `cond` holds (for conditions without a signal of their own, such as a
/// metric reaching a value), polling briefly; panics naming `what` after `within`.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Counts each item: what arrived, compared with the ground truth as multisets (the
/// tenant may hold byte-identical events).
pub fn multiset<I: IntoIterator<Item = String>>(items: I) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

/// The records a file sink wrote (one per line), as a multiset of their texts.
pub fn file_records(path: &std::path::Path) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    multiset(text.lines().filter(|l| !l.is_empty()).map(str::to_string))
}

/// What a [`NumberedReceiver`] counted so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NumberedTally {
    /// Complete records (LF-ended lines) received.
    pub records: u64,
    /// Numbers seen at least once.
    pub distinct: u64,
    /// Records seen again (each copy past the first of its number).
    pub again: u64,
    /// Records that carry no number below the receiver's `n` (not one of the file's).
    pub foreign: u64,
    /// Connections that ended inside a record (the sender killed mid-write).
    pub torn: u64,
    pub connections: u64,
    /// Connections the peer closed (or that failed), every byte of them read.
    pub closed: u64,
}

/// A plain TCP receiver on 127.0.0.1 (port 0) for LF-framed records that each carry a
/// number (`"actorId":"N"`, see `numbered_events`): it counts the copies of every
/// number below `n` as the bytes stream in and keeps nothing else, so that a test of
/// millions of records holds a byte per record, not the records.
pub struct NumberedReceiver {
    addr: SocketAddr,
    state: Arc<Mutex<Numbered>>,
    changed: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

/// The number of a record: the digits after `"actorId":"`.
pub(crate) fn record_number(line: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"actorId\":\"";
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = &line[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// What a receiver of numbered records keeps: the tally, and how many copies of each
/// number below `n` came (a byte each).
pub(crate) struct Numbered {
    pub(crate) tally: NumberedTally,
    counts: Vec<u8>,
}

impl Numbered {
    pub(crate) fn new(n: usize) -> Numbered {
        Numbered {
            tally: NumberedTally::default(),
            counts: vec![0u8; n],
        }
    }

    /// Counts one complete record.
    pub(crate) fn count(&mut self, record: &[u8]) {
        self.tally.records += 1;
        match record_number(record).filter(|&i| i < self.counts.len()) {
            Some(i) => {
                if self.counts[i] == 0 {
                    self.tally.distinct += 1;
                } else {
                    self.tally.again += 1;
                }
                self.counts[i] = self.counts[i].saturating_add(1);
            }
            None => self.tally.foreign += 1,
        }
    }

    /// The numbers below `n` never received (the first `limit` of them).
    pub(crate) fn missing(&self, limit: usize) -> Vec<usize> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == 0)
            .map(|(i, _)| i)
            .take(limit)
            .collect()
    }
}

impl NumberedReceiver {
    /// Listens on 127.0.0.1, on a port the kernel picks, for records numbered `0..n`.
    pub async fn bind(n: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(Numbered::new(n)));
        let (tx, changed) = watch::channel(0u64);
        let task = tokio::spawn(numbered_accept_loop(listener, state.clone(), Arc::new(tx)));
        NumberedReceiver {
            addr,
            state,
            changed,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn tally(&self) -> NumberedTally {
        self.state.lock().expect("receiver state").tally
    }

    /// The numbers below `n` never received (the first `limit` of them).
    pub fn missing(&self, limit: usize) -> Vec<usize> {
        self.state.lock().expect("receiver state").missing(limit)
    }

    /// Waits until `done` holds for the tally, and returns it; panics with the tally
    /// when `within` passes first.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&NumberedTally) -> bool,
    ) -> NumberedTally {
        wait_on_changes(
            &self.changed,
            within,
            || self.tally(),
            &mut done,
            || format!("numbered receiver {} stopped while waiting for {what}", self.addr),
            |now| {
                format!(
                    "numbered receiver {}: timed out after {within:?} waiting for {what}; got {now:?}",
                    self.addr
                )
            },
        )
        .await
    }
}

impl Drop for NumberedReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn numbered_accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<Numbered>>,
    tx: Arc<watch::Sender<u64>>,
) {
    let mut readers = tokio::task::JoinSet::new();
    while let Ok((mut conn, _)) = listener.accept().await {
        state.lock().expect("receiver state").tally.connections += 1;
        tx.send_modify(|v| *v += 1);
        let (state, tx) = (state.clone(), tx.clone());
        readers.spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            // The start of a record the last read ended inside.
            let mut partial: Vec<u8> = Vec::new();
            loop {
                let n = match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut s = state.lock().expect("receiver state");
                let mut rest = &buf[..n];
                while let Some(lf) = rest.iter().position(|&b| b == b'\n') {
                    if partial.is_empty() {
                        s.count(&rest[..lf]);
                    } else {
                        partial.extend_from_slice(&rest[..lf]);
                        s.count(&partial);
                        partial.clear();
                    }
                    rest = &rest[lf + 1..];
                }
                partial.extend_from_slice(rest);
                drop(s);
                tx.send_modify(|v| *v += 1);
            }
            let mut s = state.lock().expect("receiver state");
            s.tally.torn += u64::from(!partial.is_empty());
            s.tally.closed += 1;
            drop(s);
            tx.send_modify(|v| *v += 1);
        });
    }
}
