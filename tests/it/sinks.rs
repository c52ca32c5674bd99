//! Integration tests: sinks over real sockets and files, with the real encoder, against
//! a real rsyslogd (`rsyslog.rs`) and plain receivers (`support.rs`).
//!
//! The expected bytes of every record come from encoding the same events with the same
//! [`Encoder`] in the test and removing the framing: the tests check delivery (every
//! record arrives exactly once or, after a broken connection, at least once; intact; in
//! order), not the format, which has its own golden tests.

use crate::support::rsyslog::Rsyslog;
use crate::support::sink::{delivered, TestSink};
use crate::support::{
    event, event_at, lf_records, octet_frames, unused_tcp_port, wait_for, TcpReceiver, PATIENCE,
};
use c42fwd::ack::Outcome;
use c42fwd::config::{FileOptions, OversizePolicy, Sink, SinkKind, TcpOptions, UdpOptions};
use c42fwd::encode::{Encoder, EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::event::{Batch, Event};
use c42fwd::metrics::label;
use c42fwd::retry::BackoffPolicy;
use c42fwd::sinks::{self, TRUNCATION_MARKER};
use std::sync::Arc;
use std::time::Duration;

fn options(format: Format, syslog: SyslogStyle, framing: Framing) -> EncoderOptions {
    EncoderOptions {
        format,
        syslog,
        framing,
        facility: 13,
        hostname: "c42fwd-test".into(),
        app_name: "c42fwd".into(),
    }
}

fn fast_retry() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(200),
        max_retries: None,
    }
}

fn sink_config(name: &str, kind: SinkKind, encoding: EncoderOptions) -> Sink {
    Sink {
        name: name.to_string(),
        kind,
        encoding,
        dead_letter_max_bytes: c42fwd::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry: fast_retry(),
    }
}

fn tcp(port: u16) -> SinkKind {
    SinkKind::Tcp(TcpOptions {
        host: "127.0.0.1".into(),
        port,
        connect_timeout: Duration::from_secs(5),
        keepalive: Some(Duration::from_secs(60)),
        tls: None,
    })
}

fn udp(port: u16, max_datagram: usize, oversize: OversizePolicy) -> SinkKind {
    SinkKind::Udp(UdpOptions {
        host: "127.0.0.1".into(),
        port,
        max_datagram,
        oversize,
    })
}

/// Values that stress escaping and framing: LF and CR inside values, CEF and JSON
/// specials, non-ASCII text.
const NOTES: &[&str] = &[
    "plain",
    "line one\nline two",
    "windows\r\nline",
    "pipe | equals = backslash \\ end",
    "quote \" brace } bracket ]",
    "unicode é ✓ 日本語",
    "trailing newline\n",
];

/// An Audit Log event with a unique `seq` and a note from [`NOTES`].
fn audit_event(seq: usize) -> Event {
    let json = serde_json::json!({
        "type$": "audit_log::logged_in/1",
        "actorId": format!("10000000000{seq:05}"),
        "actorName": format!("user{seq}@example.com"),
        "actorAgent": "Mozilla/5.0",
        "actorIpAddress": format!("10.0.{}.{}", seq / 250, seq % 250),
        "actorType": "USER",
        "timestamp": format!("2024-05-01T12:{:02}:{:02}.123Z", (seq / 60) % 60, seq % 60),
        "seq": seq,
        "note": NOTES[seq % NOTES.len()],
    });
    // The occurrence time is the event's own, so that the same `seq` always encodes
    // to the same bytes.
    let occurred = chrono::DateTime::parse_from_rfc3339(json["timestamp"].as_str().expect("str"))
        .expect("rfc 3339")
        .with_timezone(&chrono::Utc);
    event_at(&json.to_string(), occurred)
}

fn audit_events(range: std::ops::Range<usize>) -> Vec<Event> {
    range.map(audit_event).collect()
}

/// The message each event becomes on the wire, framing removed (what rsyslog's
/// `%rawmsg%` shows), from the same encoder the sink uses.
fn expected_messages(opts: &EncoderOptions, events: &[Event]) -> Vec<String> {
    let encoder = Encoder::new(opts.clone());
    events
        .iter()
        .map(|e| {
            let mut framed = Vec::new();
            encoder.encode(e, &mut framed);
            let msg = match opts.framing {
                Framing::OctetCounting => {
                    let mut frames = octet_frames(&framed);
                    assert_eq!(frames.len(), 1, "one record is one frame");
                    frames.remove(0)
                }
                Framing::Lf => {
                    let mut records = lf_records(&framed);
                    assert_eq!(records.len(), 1, "one record is one line");
                    records.remove(0)
                }
                Framing::None => framed,
            };
            let msg = String::from_utf8(msg).expect("records are utf-8");
            assert!(
                !msg.contains('\n'),
                "the encoder left a raw LF in a record: {msg:?}"
            );
            msg
        })
        .collect()
}

/// Sends `batches` of `per_batch` events to a TCP sink with `framing` and checks that
/// rsyslog got every record exactly once, intact and in order.
async fn tcp_to_rsyslog(format: Format, framing: Framing, batches: usize, per_batch: usize) {
    let mut rsyslog = Rsyslog::start_default().await;
    let opts = options(format, SyslogStyle::Rfc5424, framing);
    let dl = tempfile::tempdir().expect("tempdir");
    let sink = TestSink::start_in(
        sink_config("siem", tcp(rsyslog.tcp_port()), opts.clone()),
        dl.path(),
    );
    let events = audit_events(0..batches * per_batch);
    let expected = expected_messages(&opts, &events);
    let mut waiters = Vec::new();
    for chunk in events.chunks(per_batch) {
        waiters.push(sink.send(chunk.to_vec()).await);
    }
    for w in waiters {
        delivered(w).await;
    }
    rsyslog.wait_for_lines(expected.len(), PATIENCE).await;
    let ctx = sink.finish().await;
    // A clean stop flushes rsyslog: anything extra (a duplicate) would show now.
    rsyslog.stop().await;
    assert_eq!(rsyslog.lines(), expected);
    let m = &ctx.metrics;
    assert_eq!(
        m.sink_events.get_or_create(&label("sink", "siem")).get(),
        expected.len() as u64
    );
    assert_eq!(m.sink_resent.get_or_create(&label("sink", "siem")).get(), 0);
}

#[tokio::test]
async fn tcp_octet_counting_cef_to_rsyslog_arrives_exactly_once_intact() {
    tcp_to_rsyslog(Format::Cef, Framing::OctetCounting, 5, 40).await;
}

#[tokio::test]
async fn tcp_lf_framed_cef_to_rsyslog_arrives_exactly_once_intact() {
    tcp_to_rsyslog(Format::Cef, Framing::Lf, 5, 40).await;
}

#[tokio::test]
async fn tcp_lf_framed_json_to_rsyslog_arrives_exactly_once_intact() {
    tcp_to_rsyslog(Format::JsonRaw, Framing::Lf, 3, 30).await;
}

#[tokio::test]
async fn tcp_octet_counting_frames_are_exact_on_the_wire() {
    let receiver = TcpReceiver::bind().await;
    let opts = options(Format::Cef, SyslogStyle::Rfc5424, Framing::OctetCounting);
    let dl = tempfile::tempdir().expect("tempdir");
    let sink = TestSink::start_in(
        sink_config("wire", tcp(receiver.port()), opts.clone()),
        dl.path(),
    );
    let events = audit_events(0..50);
    let w1 = sink.send(events[..20].to_vec()).await;
    let w2 = sink.send(events[20..].to_vec()).await;
    delivered(w1).await;
    delivered(w2).await;
    let mut wire = Vec::new();
    let encoder = Encoder::new(opts.clone());
    for e in &events {
        encoder.encode(e, &mut wire);
    }
    let got = receiver.wait_for_bytes(wire.len(), PATIENCE).await;
    sink.finish().await;
    assert_eq!(
        got, wire,
        "the bytes on the wire are the encoder's, back to back"
    );
    let frames: Vec<String> = octet_frames(&got)
        .into_iter()
        .map(|f| String::from_utf8(f).expect("utf-8"))
        .collect();
    assert_eq!(frames, expected_messages(&opts, &events));
    assert_eq!(receiver.received().connections.len(), 1);
}

#[tokio::test]
async fn udp_to_rsyslog_one_record_per_datagram() {
    let rsyslog = Rsyslog::start_default().await;
    let opts = options(Format::Cef, SyslogStyle::Rfc5424, Framing::None);
    let dl = tempfile::tempdir().expect("tempdir");
    let sink = TestSink::start_in(
        sink_config(
            "udp",
            udp(rsyslog.udp_port(), 8192, OversizePolicy::Truncate),
            opts.clone(),
        ),
        dl.path(),
    );
    let events = audit_events(0..30);
    let w1 = sink.send(events[..15].to_vec()).await;
    let w2 = sink.send(events[15..].to_vec()).await;
    delivered(w1).await;
    delivered(w2).await;
    let expected = expected_messages(&opts, &events);
    let mut lines = rsyslog.wait_for_lines(expected.len(), PATIENCE).await;
    sink.finish().await;
    // UDP gives no order guarantee in general; on loopback from one socket it keeps
    // it, but the test only needs the set.
    let mut want = expected.clone();
    lines.sort();
    want.sort();
    assert_eq!(lines, want);
}

/// An event whose encoded record is far larger than a datagram may be.
fn big_event(seq: usize) -> Event {
    let json = serde_json::json!({
        "type$": "audit_log::logged_in/1",
        "actorName": "big@example.com",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "seq": seq,
        "note": "é".repeat(2000),
    });
    event(&json.to_string())
}

#[tokio::test]
async fn udp_oversize_records_are_truncated_with_a_marker() {
    let rsyslog = Rsyslog::start_default().await;
    let opts = options(Format::JsonRaw, SyslogStyle::Rfc5424, Framing::None);
    let dl = tempfile::tempdir().expect("tempdir");
    let max = 1000;
    let sink = TestSink::start_in(
        sink_config(
            "udp-trunc",
            udp(rsyslog.udp_port(), max, OversizePolicy::Truncate),
            opts.clone(),
        ),
        dl.path(),
    );
    let events = vec![audit_event(1), big_event(2), audit_event(3)];
    delivered(sink.send(events.clone()).await).await;
    let expected = expected_messages(&opts, &events);
    let mut lines = rsyslog.wait_for_lines(3, PATIENCE).await;
    lines.sort();
    let truncated: Vec<&String> = lines
        .iter()
        .filter(|l| l.ends_with(std::str::from_utf8(TRUNCATION_MARKER).expect("ascii")))
        .collect();
    assert_eq!(truncated.len(), 1, "{lines:?}");
    let t = truncated[0];
    assert!(t.len() <= max, "{} bytes", t.len());
    let kept = &t[..t.len() - TRUNCATION_MARKER.len()];
    assert!(
        expected[1].starts_with(kept),
        "the kept part is a prefix of the record"
    );
    assert!(lines.contains(&expected[0]) && lines.contains(&expected[2]));
    let ctx = sink.finish().await;
    let l = label("sink", "udp-trunc");
    assert_eq!(ctx.metrics.sink_truncated.get_or_create(&l).get(), 1);
    assert_eq!(ctx.metrics.sink_events.get_or_create(&l).get(), 3);
}

#[tokio::test]
async fn udp_oversize_records_go_to_the_dead_letter_file() {
    let rsyslog = Rsyslog::start_default().await;
    let opts = options(Format::JsonRaw, SyslogStyle::Rfc5424, Framing::None);
    let dl = tempfile::tempdir().expect("tempdir");
    let dl_dir = dl.path().join("dead-letter");
    let sink = TestSink::start_in(
        sink_config(
            "udp-dl",
            udp(rsyslog.udp_port(), 1000, OversizePolicy::DeadLetter),
            opts.clone(),
        ),
        &dl_dir,
    );
    let events = vec![audit_event(1), big_event(2), audit_event(3), big_event(4)];
    delivered(sink.send(events.clone()).await).await;
    let expected = expected_messages(&opts, &events);
    let mut lines = rsyslog.wait_for_lines(2, PATIENCE).await;
    let ctx = sink.finish().await;
    lines.sort();
    assert_eq!(lines, vec![expected[0].clone(), expected[2].clone()]);

    let text =
        std::fs::read_to_string(dl_dir.join("udp-dl.ndjson")).expect("dead-letter file exists");
    let dead: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one json object per line"))
        .collect();
    assert_eq!(dead.len(), 2);
    for (d, want) in dead.iter().zip([&expected[1], &expected[3]]) {
        assert_eq!(d["sink"], "udp-dl");
        assert_eq!(d["reason"], "oversize");
        assert_eq!(d["record"].as_str(), Some(want.as_str()), "the full record");
        assert!(d["time"].is_string());
    }
    let discarded = ctx
        .metrics
        .sink_discarded
        .get_or_create(&vec![
            ("sink", "udp-dl".to_string()),
            ("reason", "oversize".to_string()),
        ])
        .get();
    assert_eq!(discarded, 2);
}

/// rsyslog goes away between batches and comes back on the same port: the batch sent
/// while it is down stays unacknowledged, the sink reconnects, and nothing is lost.
async fn tcp_sink_survives_receiver_restart(hard_kill: bool) {
    let mut rsyslog = Rsyslog::start_default().await;
    let opts = options(Format::Cef, SyslogStyle::Rfc5424, Framing::OctetCounting);
    let dl = tempfile::tempdir().expect("tempdir");
    let sink = TestSink::start_in(
        sink_config("restart", tcp(rsyslog.tcp_port()), opts.clone()),
        dl.path(),
    );
    let events = audit_events(0..90);
    let expected = expected_messages(&opts, &events);

    delivered(sink.send(events[..30].to_vec()).await).await;
    rsyslog.wait_for_lines(30, PATIENCE).await;
    if hard_kill {
        rsyslog.kill().await;
    } else {
        rsyslog.stop().await;
    }

    // The receiver is gone: the sink notices before writing, cannot reconnect, and
    // holds the batch (its ack unresolved) while it retries.
    let mut w2 = sink.send(events[30..60].to_vec()).await;
    wait_for("connect errors while rsyslog is down", PATIENCE, || {
        sink.errors("connect") >= 2
    })
    .await;
    assert_eq!(w2.try_outcome(), None, "no ack while the receiver is down");
    // More batches queue up behind it, in order.
    let w3 = sink.send(events[60..].to_vec()).await;

    rsyslog.restart().await;
    delivered(w2).await;
    delivered(w3).await;
    let lines = rsyslog.wait_for_lines(90, PATIENCE).await;
    let ctx = sink.finish().await;
    rsyslog.stop().await;
    let lines_after_stop = rsyslog.lines();
    assert!(lines_after_stop.len() >= lines.len());

    // Every record of every batch is there; any extra line is a re-sent duplicate,
    // and duplicates are bounded by what the sink counted as re-sent.
    for (i, want) in expected.iter().enumerate() {
        assert!(
            lines_after_stop.contains(want),
            "record {i} lost across the restart: {want}"
        );
    }
    let resent = ctx
        .metrics
        .sink_resent
        .get_or_create(&label("sink", "restart"))
        .get();
    let extra = lines_after_stop.len() - expected.len();
    assert!(
        extra as u64 <= resent,
        "{extra} duplicate lines but only {resent} records counted as re-sent"
    );
    assert_eq!(
        ctx.metrics
            .sink_reconnects
            .get_or_create(&label("sink", "restart"))
            .get(),
        1
    );
}

#[tokio::test]
async fn tcp_sink_reconnects_after_rsyslog_restart_and_loses_nothing() {
    tcp_sink_survives_receiver_restart(false).await;
}

#[tokio::test]
async fn tcp_sink_reconnects_after_rsyslog_is_killed_and_loses_nothing() {
    tcp_sink_survives_receiver_restart(true).await;
}

/// The tcp send buffer can hold up to the third value of `tcp_wmem`.
fn max_tcp_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 << 20)
}

#[tokio::test]
async fn a_batch_cut_off_mid_write_is_sent_again_whole() {
    use tokio::io::AsyncReadExt;
    // A listener with a tiny receive buffer (inherited by accepted connections), so
    // that a batch larger than the sender's largest send buffer cannot be in flight
    // whole: the sink is still writing when the first connection is reset.
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .expect("addr")
                .into(),
        )
        .expect("bind");
    socket.listen(8).expect("listen");
    socket.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(socket.into()).expect("tokio listener");
    let port = listener.local_addr().expect("addr").port();

    let opts = options(Format::JsonRaw, SyslogStyle::None, Framing::Lf);
    let dl = tempfile::tempdir().expect("tempdir");
    let sink = TestSink::start_in(sink_config("cut", tcp(port), opts.clone()), dl.path());
    let pad = "x".repeat(64 * 1024);
    let n = (2 * max_tcp_send_buffer()) / pad.len() + 16;
    let events: Vec<Event> = (0..n)
        .map(|i| event(&format!(r#"{{"seq":{i},"pad":"{pad}"}}"#)))
        .collect();
    let mut wire = Vec::new();
    let encoder = Encoder::new(opts);
    for e in &events {
        encoder.encode(e, &mut wire);
    }
    let mut w = sink.send(events).await;

    let (mut first, _) = listener.accept().await.expect("first connection");
    let mut head = vec![0; 1024];
    first.read_exact(&mut head).await.expect("first bytes");
    assert_eq!(head, wire[..1024]);
    assert_eq!(w.try_outcome(), None, "not acknowledged mid-write");
    // Unread data at close makes the kernel reset the connection.
    drop(first);

    let (mut second, _) = listener.accept().await.expect("reconnect");
    let mut got = vec![0; wire.len()];
    tokio::time::timeout(PATIENCE, second.read_exact(&mut got))
        .await
        .expect("whole batch in time")
        .expect("read");
    assert!(
        got == wire,
        "the second connection carries the whole batch again"
    );
    delivered(w).await;
    assert_eq!(sink.reconnects(), 1);
    assert!(
        sink.resent() >= 1,
        "the records cut off are counted as re-sent"
    );
    assert!(sink.errors("write") >= 1);
    assert_eq!(sink.events(), n as u64);
    sink.finish().await;
}

#[tokio::test]
async fn an_unresolved_batch_is_not_delivered_when_the_sink_is_cancelled() {
    let opts = options(Format::Cef, SyslogStyle::Rfc5424, Framing::OctetCounting);
    let dl = tempfile::tempdir().expect("tempdir");
    let mut sink = TestSink::start_in(
        sink_config("nobody", tcp(unused_tcp_port()), opts),
        dl.path(),
    );
    let mut w = sink.send(audit_events(0..3)).await;
    wait_for("connect errors", PATIENCE, || sink.errors("connect") >= 2).await;
    assert_eq!(w.try_outcome(), None);
    sink.ctx.shutdown.cancel();
    // A cancelled sink stops at once (within `PATIENCE`).
    let result = sink.ended().await;
    assert!(result.is_ok(), "cancellation is a clean stop: {result:?}");
    assert_eq!(w.wait().await, Outcome::NotDelivered);
}

#[tokio::test]
async fn a_full_queue_makes_the_route_wait_until_the_sink_catches_up() {
    let port = unused_tcp_port();
    let opts = options(Format::JsonRaw, SyslogStyle::None, Framing::Lf);
    let dl = tempfile::tempdir().expect("tempdir");
    let mut cfg = sink_config("slow", tcp(port), opts.clone());
    cfg.queue_batches = 1;
    let sink = TestSink::start_in(cfg, dl.path());
    let route = c42fwd::route::Route::new(vec![sink.sender()]);
    let batch = |r: std::ops::Range<usize>| Batch {
        source: Arc::from("audit"),
        events: audit_events(r),
    };

    // The sink takes the first batch and is stuck with it (nobody listens); the
    // second fills the one-batch queue; the third must wait.
    let w1 = route.send(batch(0..5)).await.expect("route");
    let w2 = route.send(batch(5..10)).await.expect("route");
    let (receiver, w3) = {
        let third = route.send(batch(10..15));
        tokio::pin!(third);
        wait_for("connect errors", PATIENCE, || sink.errors("connect") >= 2).await;
        assert!(
            futures_util::poll!(&mut third).is_pending(),
            "send waits while the queue is full"
        );

        // The receiver comes up on that port: everything drains, in order.
        let receiver = TcpReceiver::bind_port(port).await;
        let w3 = tokio::time::timeout(PATIENCE, third)
            .await
            .expect("send completes once the sink catches up")
            .expect("route");
        (receiver, w3)
    };
    for w in [w1, w2, w3] {
        delivered(w).await;
    }
    let expected: Vec<String> = expected_messages(&opts, &audit_events(0..15));
    let total: usize = expected.iter().map(|m| m.len() + 1).sum();
    let got = receiver.wait_for_bytes(total, PATIENCE).await;
    let lines: Vec<String> = lf_records(&got)
        .into_iter()
        .map(|r| String::from_utf8(r).expect("utf-8"))
        .collect();
    assert_eq!(lines, expected);
    drop(route); // the route holds a sender too: the queue closes with both gone
    let ctx = sink.finish().await;
    assert_eq!(
        ctx.metrics
            .sink_queue
            .get_or_create(&label("sink", "slow"))
            .get(),
        0
    );
}

#[tokio::test]
async fn file_sink_appends_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out/records.log");
    let opts = options(Format::Cef, SyslogStyle::Rfc5424, Framing::Lf);
    let events = audit_events(0..40);
    for half in [&events[..20], &events[20..]] {
        let sink = TestSink::start_in(
            sink_config(
                "file",
                SinkKind::File(FileOptions { path: path.clone() }),
                opts.clone(),
            ),
            dir.path(),
        );
        delivered(sink.send(half[..10].to_vec()).await).await;
        delivered(sink.send(half[10..].to_vec()).await).await;
        sink.finish().await;
    }
    let text = std::fs::read_to_string(&path).expect("file written");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines, expected_messages(&opts, &events));
}

#[tokio::test]
async fn healthcheck_reports_a_dead_tcp_peer_by_address() {
    let opts = options(Format::Cef, SyslogStyle::Rfc5424, Framing::OctetCounting);
    let rsyslog = Rsyslog::start_default().await;
    sinks::healthcheck(&sink_config("up", tcp(rsyslog.tcp_port()), opts.clone()))
        .await
        .expect("rsyslog accepts connections");
    let port = unused_tcp_port();
    let err = sinks::healthcheck(&sink_config("down", tcp(port), opts))
        .await
        .expect_err("nothing listens");
    assert!(err.is_retriable());
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );
}
