//! Unit tests of the delivery loop and the transports against local sockets and files,
//! with a stand-in encoder (the raw JSON text plus LF) so that the bytes are known.
//! The end-to-end tests with the real encoder and a real rsyslog are in `tests/it/sinks.rs`.

use super::testkit::{batch_of, event};
use super::*;
use crate::ack::{AckWaiter, Outcome};
use crate::config::{FileOptions, OversizePolicy, RelpOptions, TcpOptions, TlsOptions, UdpOptions};
use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use crate::event::Event;
use crate::metrics::{label, Metrics};
use crate::retry::BackoffPolicy;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// The event's JSON text followed by LF.
struct JsonLines;

impl RecordEncoder for JsonLines {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) {
        out.extend_from_slice(event.json().as_bytes());
        out.push(b'\n');
    }
}

/// The event's JSON text, unframed (datagrams).
struct JsonDatagrams;

impl RecordEncoder for JsonDatagrams {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) {
        out.extend_from_slice(event.json().as_bytes());
    }
}

fn sink(name: &str, kind: SinkKind) -> Sink {
    Sink {
        name: name.to_string(),
        kind,
        encoding: EncoderOptions {
            format: Format::JsonRaw,
            syslog: SyslogStyle::None,
            framing: Framing::Lf,
            facility: 13,
            hostname: "test".into(),
            app_name: "c42fwd".into(),
        },
        dead_letter_max_bytes: crate::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry: BackoffPolicy {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
            max_retries: None,
        },
    }
}

fn tcp_kind(port: u16) -> SinkKind {
    SinkKind::Tcp(TcpOptions {
        host: "127.0.0.1".into(),
        port,
        connect_timeout: Duration::from_secs(5),
        keepalive: Some(Duration::from_secs(30)),
        tls: None,
    })
}

fn context(dead_letter_dir: &std::path::Path) -> SinkContext {
    SinkContext {
        metrics: Arc::new(Metrics::new()),
        dead_letter_dir: dead_letter_dir.to_path_buf(),
        shutdown: CancellationToken::new(),
        reopen: Default::default(),
    }
}

/// A batch of `n` small events `{"seq":"<tag>-<i>"}` and its waiter.
fn batch(tag: &str, n: usize) -> (SinkBatch, AckWaiter) {
    let events = (0..n)
        .map(|i| event(&format!(r#"{{"seq":"{tag}-{i}"}}"#)))
        .collect();
    batch_of(events)
}

fn sink_label(name: &str) -> crate::metrics::Labels {
    label("sink", name)
}

/// Waits (bounded) until `cond` holds; for conditions that have no signal of their own
/// (a metric reaching a value).
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn file_sink_appends_creates_directories_and_acks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a/b/out.ndjson");
    for round in ["r1", "r2"] {
        let ctx = context(dir.path());
        let (tx, rx) = mpsc::channel(4);
        let (b1, w1) = batch(&format!("{round}a"), 2);
        let (b2, w2) = batch(&format!("{round}b"), 1);
        tx.send(b1).await.expect("queue");
        tx.send(b2).await.expect("queue");
        drop(tx);
        run_with_encoder(
            sink("file", SinkKind::File(FileOptions { path: path.clone() })),
            rx,
            ctx.clone(),
            JsonLines,
        )
        .await
        .expect("file sink");
        assert_eq!(w1.wait().await, Outcome::Delivered);
        assert_eq!(w2.wait().await, Outcome::Delivered);
        assert_eq!(
            ctx.metrics
                .sink_events
                .get_or_create(&sink_label("file"))
                .get(),
            3
        );
    }
    let text = std::fs::read_to_string(&path).expect("output file");
    assert_eq!(
        text,
        concat!(
            "{\"seq\":\"r1a-0\"}\n{\"seq\":\"r1a-1\"}\n{\"seq\":\"r1b-0\"}\n",
            "{\"seq\":\"r2a-0\"}\n{\"seq\":\"r2a-1\"}\n{\"seq\":\"r2b-0\"}\n"
        )
    );
}

/// A rotation: the file is renamed away while the sink runs; until the reopen request
/// the sink appends to the renamed file (its handle), then, idle, it opens the path
/// again and every later batch goes to the new file. Each record is in exactly one of
/// them, and the old one gets nothing after the reopen.
#[tokio::test]
async fn file_sink_reopens_its_path_on_request_after_a_rename() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.ndjson");
    let rotated = dir.path().join("out.ndjson.1");
    let reopen = ReopenFiles::new();
    let mut ctx = context(dir.path());
    ctx.reopen = reopen.subscribe();
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(run_with_encoder(
        sink("file", SinkKind::File(FileOptions { path: path.clone() })),
        rx,
        ctx.clone(),
        JsonLines,
    ));
    let (b, w) = batch("before", 2);
    tx.send(b).await.expect("queue");
    assert_eq!(w.wait().await, Outcome::Delivered);
    std::fs::rename(&path, &rotated).expect("rename");
    // Renamed, not yet reopened: the batch goes to the renamed file.
    let (b, w) = batch("renamed", 1);
    tx.send(b).await.expect("queue");
    assert_eq!(w.wait().await, Outcome::Delivered);
    assert!(!path.exists());
    reopen.request();
    // Idle, the sink reopens by itself: the path exists again before any batch.
    wait_until("the file created again", || path.exists()).await;
    let (b, w) = batch("after", 2);
    tx.send(b).await.expect("queue");
    assert_eq!(w.wait().await, Outcome::Delivered);
    // A request with a batch right behind it: the batch goes to the newest file.
    std::fs::rename(&path, dir.path().join("out.ndjson.2")).expect("rename");
    reopen.request();
    let (b, w) = batch("third", 1);
    tx.send(b).await.expect("queue");
    assert_eq!(w.wait().await, Outcome::Delivered);
    drop(tx);
    task.await.expect("join").expect("file sink");
    let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("read");
    assert_eq!(
        read(&rotated),
        "{\"seq\":\"before-0\"}\n{\"seq\":\"before-1\"}\n{\"seq\":\"renamed-0\"}\n"
    );
    assert_eq!(
        read(&dir.path().join("out.ndjson.2")),
        "{\"seq\":\"after-0\"}\n{\"seq\":\"after-1\"}\n"
    );
    assert_eq!(read(&path), "{\"seq\":\"third-0\"}\n");
}

#[tokio::test]
async fn file_sink_that_cannot_open_retries_and_holds_the_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A regular file where a directory is needed: opening fails with a retriable error.
    std::fs::write(dir.path().join("blocker"), b"").expect("blocker");
    let path = dir.path().join("blocker/out.log");
    let ctx = context(dir.path());
    let (tx, rx) = mpsc::channel(4);
    let (b, mut w) = batch("x", 1);
    tx.send(b).await.expect("queue");
    let task = tokio::spawn(run_with_encoder(
        sink("f", SinkKind::File(FileOptions { path })),
        rx,
        ctx.clone(),
        JsonLines,
    ));
    let m = ctx.metrics.clone();
    wait_until("two open errors", || {
        m.sink_errors
            .get_or_create(&vec![
                ("sink", "f".to_string()),
                ("kind", "open".to_string()),
            ])
            .get()
            >= 2
    })
    .await;
    assert_eq!(
        w.try_outcome(),
        None,
        "no ack while the file cannot be written"
    );
    ctx.shutdown.cancel();
    task.await
        .expect("join")
        .expect("cancelled sink returns ok");
    assert_eq!(w.wait().await, Outcome::NotDelivered);
}

#[tokio::test]
async fn tcp_sink_writes_batches_and_acks_after_the_write() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ctx = context(std::path::Path::new("/nonexistent"));
    let (tx, rx) = mpsc::channel(4);
    let (b1, w1) = batch("a", 3);
    let (b2, w2) = batch("b", 2);
    tx.send(b1).await.expect("queue");
    tx.send(b2).await.expect("queue");
    drop(tx);
    let task = tokio::spawn(run_with_encoder(
        sink("tcp", tcp_kind(port)),
        rx,
        ctx.clone(),
        JsonLines,
    ));
    let (mut conn, _) = listener.accept().await.expect("accept");
    let mut got = String::new();
    // The sink closes the connection when its queue is drained.
    conn.read_to_string(&mut got).await.expect("read");
    task.await.expect("join").expect("sink");
    assert_eq!(w1.wait().await, Outcome::Delivered);
    assert_eq!(w2.wait().await, Outcome::Delivered);
    let expected: String = ["a-0", "a-1", "a-2", "b-0", "b-1"]
        .iter()
        .map(|s| format!("{{\"seq\":\"{s}\"}}\n"))
        .collect();
    assert_eq!(got, expected);
    let l = sink_label("tcp");
    assert_eq!(ctx.metrics.sink_events.get_or_create(&l).get(), 5);
    assert_eq!(
        ctx.metrics.sink_bytes.get_or_create(&l).get(),
        expected.len() as u64
    );
    assert_eq!(ctx.metrics.sink_reconnects.get_or_create(&l).get(), 0);
}

#[tokio::test]
async fn tcp_sink_reconnects_before_writing_into_a_closed_connection_and_resends_its_tail() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ctx = context(std::path::Path::new("/nonexistent"));
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(run_with_encoder(
        sink("tcp", tcp_kind(port)),
        rx,
        ctx.clone(),
        JsonLines,
    ));

    let (b1, w1) = batch("a", 2);
    tx.send(b1).await.expect("queue");
    let (mut conn, _) = listener.accept().await.expect("accept");
    let expected1 = "{\"seq\":\"a-0\"}\n{\"seq\":\"a-1\"}\n";
    let mut buf = vec![0; expected1.len()];
    conn.read_exact(&mut buf).await.expect("read");
    assert_eq!(buf, expected1.as_bytes());
    assert_eq!(w1.wait().await, Outcome::Delivered);
    // The receiver goes away after reading everything (FIN). The sink cannot know
    // whether it stored what it read (a receiver killed right after reading sends FIN
    // too), so the next connection starts with the batch it had written.
    drop(conn);

    let (b2, w2) = batch("b", 1);
    tx.send(b2).await.expect("queue");
    let (mut conn, _) = listener.accept().await.expect("second accept");
    drop(tx);
    let mut got = String::new();
    conn.read_to_string(&mut got).await.expect("read");
    assert_eq!(got, format!("{expected1}{{\"seq\":\"b-0\"}}\n"));
    assert_eq!(w2.wait().await, Outcome::Delivered);
    task.await.expect("join").expect("sink");
    let l = sink_label("tcp");
    assert_eq!(ctx.metrics.sink_reconnects.get_or_create(&l).get(), 1);
    assert_eq!(ctx.metrics.sink_resent.get_or_create(&l).get(), 2);
    // Counted once: records handed over, not records re-sent.
    assert_eq!(ctx.metrics.sink_events.get_or_create(&l).get(), 3);
}

#[tokio::test]
async fn a_batch_whose_receiver_closes_before_it_settles_is_written_again_without_a_next_batch() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ctx = context(std::path::Path::new("/nonexistent"));
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(run_with_encoder(
        sink("tcp", tcp_kind(port)),
        rx,
        ctx.clone(),
        JsonLines,
    ));
    let first = "{\"seq\":\"a-0\"}\n";
    let second = "{\"seq\":\"b-0\"}\n{\"seq\":\"b-1\"}\n";
    let (b1, w1) = batch("a", 1);
    tx.send(b1).await.expect("queue");
    let (mut conn, _) = listener.accept().await.expect("accept");
    let mut buf = vec![0; first.len()];
    conn.read_exact(&mut buf).await.expect("read");
    assert_eq!(w1.wait().await, Outcome::Delivered);

    let (b2, w2) = batch("b", 2);
    tx.send(b2).await.expect("queue");
    let mut buf = vec![0; second.len()];
    conn.read_exact(&mut buf).await.expect("read");
    // Read, then gone at once, well within the settle time (a receiver killed right
    // after reading): the acknowledgement is still held.
    drop(conn);
    // No other batch comes: the sink notices between batches, reconnects and writes
    // its tail again (the first batch is still in it too), then acknowledges.
    let (mut conn, _) = listener.accept().await.expect("second accept");
    let mut buf = vec![0; first.len() + second.len()];
    conn.read_exact(&mut buf)
        .await
        .expect("read the re-sent tail");
    assert_eq!(buf, format!("{first}{second}").as_bytes());
    assert_eq!(w2.wait().await, Outcome::Delivered);
    let l = sink_label("tcp");
    assert_eq!(ctx.metrics.sink_resent.get_or_create(&l).get(), 3);
    assert_eq!(ctx.metrics.sink_reconnects.get_or_create(&l).get(), 1);
    drop(tx);
    task.await.expect("join").expect("sink");
}

#[tokio::test]
async fn tcp_sink_with_its_peer_down_holds_the_ack_until_cancelled() {
    // A port that nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let ctx = context(std::path::Path::new("/nonexistent"));
    let (tx, rx) = mpsc::channel(4);
    let (b, mut w) = batch("a", 1);
    tx.send(b).await.expect("queue");
    let task = tokio::spawn(run_with_encoder(
        sink("down", tcp_kind(port)),
        rx,
        ctx.clone(),
        JsonLines,
    ));
    let m = ctx.metrics.clone();
    wait_until("three connect errors", || {
        m.sink_errors
            .get_or_create(&vec![
                ("sink", "down".to_string()),
                ("kind", "connect".to_string()),
            ])
            .get()
            >= 3
    })
    .await;
    assert_eq!(w.try_outcome(), None, "no ack while the peer is down");
    ctx.shutdown.cancel();
    task.await
        .expect("join")
        .expect("cancelled sink returns ok");
    assert_eq!(w.wait().await, Outcome::NotDelivered);
    drop(tx);
}

fn udp_kind(port: u16, max_datagram: usize, oversize: OversizePolicy) -> SinkKind {
    SinkKind::Udp(UdpOptions {
        host: "127.0.0.1".into(),
        port,
        max_datagram,
        oversize,
    })
}

async fn recv_datagrams(socket: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0; 65536];
    while out.len() < n {
        let len = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
            .await
            .expect("datagram in time")
            .expect("recv");
        out.push(buf[..len].to_vec());
    }
    out
}

#[tokio::test]
async fn udp_sink_sends_one_datagram_per_record_and_truncates_oversize() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = receiver.local_addr().expect("addr").port();
    let ctx = context(std::path::Path::new("/nonexistent"));
    let big = format!(r#"{{"seq":"big","pad":"{}"}}"#, "z".repeat(1000));
    let (b, w) = batch_of(vec![
        event(r#"{"seq":"s-0"}"#),
        event(&big),
        event(r#"{"seq":"s-2"}"#),
    ]);
    let (tx, rx) = mpsc::channel(4);
    tx.send(b).await.expect("queue");
    drop(tx);
    run_with_encoder(
        sink("udp", udp_kind(port, 500, OversizePolicy::Truncate)),
        rx,
        ctx.clone(),
        JsonDatagrams,
    )
    .await
    .expect("udp sink");
    assert_eq!(w.wait().await, Outcome::Delivered);
    let got = recv_datagrams(&receiver, 3).await;
    assert_eq!(got[0], br#"{"seq":"s-0"}"#);
    assert_eq!(got[1].len(), 500);
    assert!(got[1].starts_with(br#"{"seq":"big","pad":"zzz"#));
    assert!(got[1].ends_with(TRUNCATION_MARKER));
    assert_eq!(got[2], br#"{"seq":"s-2"}"#);
    let l = sink_label("udp");
    assert_eq!(ctx.metrics.sink_truncated.get_or_create(&l).get(), 1);
    assert_eq!(ctx.metrics.sink_events.get_or_create(&l).get(), 3);
}

#[tokio::test]
async fn udp_sink_dead_letters_oversize_records() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = receiver.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let dl_dir = dir.path().join("dead-letter");
    let ctx = context(&dl_dir);
    let big = format!(r#"{{"seq":"big","pad":"{}"}}"#, "z".repeat(1000));
    let (b, w) = batch_of(vec![
        event(r#"{"seq":"s-0"}"#),
        event(&big),
        event(r#"{"seq":"s-2"}"#),
    ]);
    let (tx, rx) = mpsc::channel(4);
    tx.send(b).await.expect("queue");
    drop(tx);
    assert!(!dl_dir.exists(), "created on first use only");
    run_with_encoder(
        sink("udp-dl", udp_kind(port, 500, OversizePolicy::DeadLetter)),
        rx,
        ctx.clone(),
        JsonDatagrams,
    )
    .await
    .expect("udp sink");
    assert_eq!(
        w.wait().await,
        Outcome::Delivered,
        "dead-lettering is an explicit policy"
    );
    let got = recv_datagrams(&receiver, 2).await;
    assert_eq!(
        got,
        vec![br#"{"seq":"s-0"}"#.to_vec(), br#"{"seq":"s-2"}"#.to_vec()]
    );
    let text = std::fs::read_to_string(dl_dir.join("udp-dl.ndjson")).expect("dead-letter file");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["sink"], "udp-dl");
    assert_eq!(lines[0]["reason"], "oversize");
    assert_eq!(lines[0]["record"], big.as_str());
    assert!(lines[0]["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let discarded = ctx
        .metrics
        .sink_discarded
        .get_or_create(&vec![
            ("sink", "udp-dl".to_string()),
            ("reason", "oversize".to_string()),
        ])
        .get();
    assert_eq!(discarded, 1);
}

#[tokio::test]
async fn an_unwritable_dead_letter_file_fails_the_batch_and_stops_the_sink() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = receiver.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").expect("blocker");
    let ctx = context(&blocker);
    let big = "z".repeat(1000);
    let (b, w) = batch_of(vec![event(&format!("\"{big}\""))]);
    let (tx, rx) = mpsc::channel(4);
    tx.send(b).await.expect("queue");
    let err = run_with_encoder(
        sink("udp-dl", udp_kind(port, 500, OversizePolicy::DeadLetter)),
        rx,
        ctx,
        JsonDatagrams,
    )
    .await
    .expect_err("dead-letter file cannot be created");
    assert!(matches!(err, SinkError::DeadLetter { .. }));
    assert!(err.to_string().contains("not-a-dir/udp-dl.ndjson"), "{err}");
    assert_eq!(w.wait().await, Outcome::NotDelivered);
}

#[tokio::test]
async fn healthcheck_connects_resolves_and_opens() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    healthcheck(&sink("t", tcp_kind(port)))
        .await
        .expect("tcp up");
    drop(listener);
    let err = healthcheck(&sink("t", tcp_kind(port)))
        .await
        .expect_err("tcp down");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    healthcheck(&sink("u", udp_kind(port, 1000, OversizePolicy::Truncate)))
        .await
        .expect("udp resolves");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x/y.log");
    healthcheck(&sink(
        "f",
        SinkKind::File(FileOptions { path: path.clone() }),
    ))
    .await
    .expect("file");
    assert!(path.exists());
}

#[tokio::test]
async fn an_empty_batch_is_delivered_without_touching_the_peer() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let ctx = context(std::path::Path::new("/nonexistent"));
    let (tx, rx) = mpsc::channel(4);
    let (b, w) = batch("empty", 0);
    tx.send(b).await.expect("queue");
    drop(tx);
    run_with_encoder(sink("empty", tcp_kind(port)), rx, ctx.clone(), JsonLines)
        .await
        .expect("no connection needed");
    assert_eq!(w.wait().await, Outcome::Delivered);
    let errors = ctx.metrics.render();
    assert!(!errors.contains("c42fwd_sink_errors_total{"), "{errors}");
}

#[tokio::test]
async fn a_sink_with_an_unusable_ca_file_stops_at_start_and_delivers_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-ca.pem");
    let tls = Some(TlsOptions {
        ca_file: Some(missing.clone()),
        ..TlsOptions::default()
    });
    for kind in [
        SinkKind::Tcp(TcpOptions {
            host: "127.0.0.1".into(),
            port: 9,
            connect_timeout: Duration::from_secs(1),
            keepalive: None,
            tls: tls.clone(),
        }),
        SinkKind::Relp(RelpOptions {
            host: "127.0.0.1".into(),
            port: 9,
            connect_timeout: Duration::from_secs(1),
            window: 8,
            ack_timeout: Duration::from_secs(1),
            tls: tls.clone(),
        }),
    ] {
        let cfg = Sink {
            queue_batches: 2,
            // Unbounded retries: the error must stop the sink by itself.
            retry: BackoffPolicy::default(),
            ..sink("s", kind)
        };
        let (tx, rx) = mpsc::channel(2);
        let (b, waiter) = batch("ca", 1);
        tx.send(b).await.expect("queue");
        let ctx = context(dir.path());
        let err = tokio::time::timeout(Duration::from_secs(5), run(cfg, rx, ctx))
            .await
            .expect("stops at once")
            .expect_err("unusable ca file");
        assert!(matches!(err, SinkError::TlsConfig { .. }), "{err}");
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
        assert_eq!(waiter.wait().await, Outcome::NotDelivered);
        drop(tx);
    }
}
