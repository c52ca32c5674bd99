//! A RELP server written for tests that need what rsyslog cannot be told to do: hold
//! back its answers. It answers `open` (offering `syslog`) and `close` at once; the
//! `200 OK` of each `syslog` frame only while it is not [`HeldRelp::hold`]ing them, and
//! every answer held back once [`HeldRelp::release`]d. It counts the frames by the
//! number they carry (`"actorId":"N"`), as [`super::NumberedReceiver`] does.

use super::{wait_on_changes, Numbered, NumberedTally};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct HeldRelp {
    addr: SocketAddr,
    state: Arc<Mutex<Numbered>>,
    changed: watch::Receiver<u64>,
    holding: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// One frame: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`; `None` while incomplete.
/// Panics on anything else (the sink under test broke the protocol).
fn parse(buf: &[u8]) -> Option<(u32, String, Vec<u8>, usize)> {
    let sp1 = buf.iter().position(|&b| b == b' ')?;
    let sp2 = sp1
        + 1
        + buf[sp1 + 1..]
            .iter()
            .position(|&b| b == b' ' || b == b'\n')?;
    let txnr: u32 = std::str::from_utf8(&buf[..sp1])
        .ok()?
        .parse()
        .expect("txnr");
    let command = String::from_utf8_lossy(&buf[sp1 + 1..sp2]).into_owned();
    let rest = &buf[sp2 + 1..];
    let len_end = rest.iter().position(|&b| b == b' ' || b == b'\n')?;
    let len: usize = std::str::from_utf8(&rest[..len_end])
        .expect("datalen")
        .parse()
        .expect("datalen");
    let data_at = sp2 + 1 + len_end + usize::from(len > 0);
    if buf.len() < data_at + len + 1 {
        return None;
    }
    assert_eq!(buf[data_at + len], b'\n', "a frame without its LF");
    Some((
        txnr,
        command,
        buf[data_at..data_at + len].to_vec(),
        data_at + len + 1,
    ))
}

fn rsp(out: &mut Vec<u8>, txnr: u32, data: &str) {
    out.extend_from_slice(format!("{txnr} rsp {} {data}\n", data.len()).as_bytes());
}

impl HeldRelp {
    /// Listens on 127.0.0.1 (port 0) for frames numbered `0..n`, holding its answers
    /// from the start when `hold`.
    pub async fn bind(n: usize, hold: bool) -> HeldRelp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(Numbered::new(n)));
        let (tx, changed) = watch::channel(0u64);
        let (holding, held) = watch::channel(hold);
        let task = tokio::spawn(accept(listener, state.clone(), Arc::new(tx), held));
        HeldRelp {
            addr,
            state,
            changed,
            holding,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers no more `syslog` frames until [`HeldRelp::release`].
    pub fn hold(&self) {
        self.holding.send_replace(true);
    }

    /// Answers every frame held back, and every later one at once.
    pub fn release(&self) {
        self.holding.send_replace(false);
    }

    pub fn tally(&self) -> NumberedTally {
        self.state.lock().expect("relp state").tally
    }

    /// The numbers below `n` never received (the first `limit` of them).
    pub fn missing(&self, limit: usize) -> Vec<usize> {
        self.state.lock().expect("relp state").missing(limit)
    }

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
            || format!("relp server {} stopped while waiting for {what}", self.addr),
            |now| {
                format!(
                    "relp server {}: timed out after {within:?} waiting for {what}; got {now:?}",
                    self.addr
                )
            },
        )
        .await
    }
}

impl Drop for HeldRelp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    state: Arc<Mutex<Numbered>>,
    tx: Arc<watch::Sender<u64>>,
    held: watch::Receiver<bool>,
) {
    let mut sessions = tokio::task::JoinSet::new();
    while let Ok((conn, _)) = listener.accept().await {
        state.lock().expect("relp state").tally.connections += 1;
        tx.send_modify(|v| *v += 1);
        sessions.spawn(session(conn, state.clone(), tx.clone(), held.clone()));
    }
}

async fn session(
    mut conn: tokio::net::TcpStream,
    state: Arc<Mutex<Numbered>>,
    tx: Arc<watch::Sender<u64>>,
    mut held: watch::Receiver<bool>,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    // The transaction numbers of `syslog` frames not answered yet.
    let mut unanswered: Vec<u32> = Vec::new();
    loop {
        let mut out = Vec::new();
        if !*held.borrow_and_update() {
            for t in unanswered.drain(..) {
                rsp(&mut out, t, "200 OK");
            }
        }
        if !out.is_empty() && conn.write_all(&out).await.is_err() {
            break;
        }
        let n = tokio::select! {
            r = conn.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            r = held.changed() => {
                if r.is_err() {
                    break;
                }
                continue;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut closing = false;
        {
            let mut s = state.lock().expect("relp state");
            while let Some((txnr, command, data, used)) = parse(&buf) {
                buf.drain(..used);
                match command.as_str() {
                    "open" => rsp(
                        &mut out,
                        txnr,
                        "200 OK\nrelp_version=0\nrelp_software=test\ncommands=syslog",
                    ),
                    "syslog" => {
                        s.count(&data);
                        unanswered.push(txnr);
                    }
                    "close" => {
                        rsp(&mut out, txnr, "200 OK");
                        closing = true;
                    }
                    other => panic!("relp server: unexpected command {other:?}"),
                }
            }
        }
        tx.send_modify(|v| *v += 1);
        if !out.is_empty() && conn.write_all(&out).await.is_err() {
            break;
        }
        if closing {
            let _ = conn.write_all(b"0 serverclose 0\n").await;
            break;
        }
    }
    state.lock().expect("relp state").tally.closed += 1;
    tx.send_modify(|v| *v += 1);
}
