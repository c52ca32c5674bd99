//! The RELP sink on the delivery loop against scripted servers on 127.0.0.1:0 (the
//! tests against a real rsyslog are in `tests/it/relp.rs`).

use super::frame::{encode_frame, parse_frame};
use super::*;
use crate::config::{Sink, SinkKind};
use crate::route::SinkBatch;
use crate::sinks::delivery::{self, RecordEncoder, SinkContext};
use crate::sinks::testkit::{batch_of, event};
use tokio::sync::mpsc;

use crate::ack::{AckWaiter, Outcome};
use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use crate::event::Event;
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
        dead_letter_max_bytes: crate::sinks::dead_letter::DEFAULT_MAX_BYTES,
        queue_batches: 4,
        retry: BackoffPolicy {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
            max_retries: retries,
        },
    }
}

fn batch(n: usize) -> (SinkBatch, AckWaiter) {
    batch_of(
        (0..n)
            .map(|i| event(&format!(r#"{{"seq":{i}}}"#)))
            .collect(),
    )
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
                                                encode_frame(&mut out, t, "rsp", text.as_bytes());
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
        reopen: Default::default(),
    };
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            let SinkKind::Relp(opts) = &cfg.kind else {
                panic!("a relp sink");
            };
            let metrics = SinkMetrics::new(&ctx.metrics, &cfg.name);
            let sink = RelpSink::new(&cfg.name, opts, metrics.clone())?;
            delivery::run(sink, &cfg, rx, &ctx, &metrics, RawJson).await
        }
    });
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

/// Runs a sink with a window of 8 against `script`, sends one batch of `records`, and
/// waits for the sink to stop with an error, the batch not delivered.
async fn stops_with(
    script: impl Fn(usize, u32, &str, usize) -> Reply + Send + Sync + 'static,
    ack_timeout: Duration,
    retries: u32,
    records: usize,
) -> (SinkError, u16, Seen) {
    let (port, seen) = scripted_server(script).await;
    let sink = start(relp_sink(port, 8, ack_timeout, Some(retries)));
    let w = sink.send(records).await;
    let err = sink.ended().await.expect_err("the sink stops");
    assert_eq!(outcome(w).await, Outcome::NotDelivered);
    (err, port, seen)
}

#[tokio::test]
async fn a_refused_frame_is_an_error_with_the_servers_text() {
    let refuse = |_: usize, _: u32, _: &str, _: usize| Reply::Rsp("500 queue full, try later");
    let (err, port, _) = stops_with(refuse, Duration::from_secs(5), 0, 3).await;
    let msg = err.to_string();
    assert!(msg.contains("500 queue full, try later"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert_eq!(err.kind(), "relp_refused");
}

#[tokio::test]
async fn no_rsp_within_the_ack_timeout_breaks_the_session() {
    let silent = |_: usize, _: u32, _: &str, _: usize| Reply::Nothing;
    let (err, _, _) = stops_with(silent, Duration::from_millis(200), 0, 2).await;
    assert!(
        err.to_string()
            .contains("no rsp to frame 2 within the ack timeout"),
        "{err}"
    );
}

#[tokio::test]
async fn serverclose_breaks_the_session() {
    let close = |_: usize, _: u32, _: &str, _: usize| Reply::Raw(b"0 serverclose 0\n");
    let (err, _, _) = stops_with(close, Duration::from_secs(5), 0, 2).await;
    assert!(err.to_string().contains("serverclose"), "{err}");
    assert!(err.is_retriable());
}

#[tokio::test]
async fn sessions_that_open_but_never_answer_use_up_the_retries() {
    // Every session opens fine and then stays silent: reopening is not progress, so
    // the backoff goes on and `max_retries` ends it (one first try, two retries).
    let silent = |_: usize, _: u32, _: &str, _: usize| Reply::Nothing;
    let (err, _, seen) = stops_with(silent, Duration::from_millis(100), 2, 1).await;
    assert!(err.to_string().contains("within the ack timeout"), "{err}");
    let sessions: Vec<usize> = seen.lock().unwrap().iter().map(|(c, _, _)| *c).collect();
    assert_eq!(
        sessions,
        vec![1, 2, 3],
        "the frame on each of three sessions"
    );
}
