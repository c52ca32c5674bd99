//! A second real collector as receiver: syslog-ng (`support/syslog_ng.rs`), fed by the
//! TCP sink (octet counting, plain and TLS, to its `syslog()` driver, which parses
//! RFC 5424 itself) and by the unix sink (stream and datagram, to `unix-stream()` and
//! `unix-dgram()`).
//!
//! What syslog-ng parsed (host, app, msgid, structured data, message) is compared,
//! record by record, with the header and body the same encoder produces for the same
//! events: every record arrives exactly once, its header fields parsed as c42fwd meant
//! them, its CEF or LEEF body intact.

use crate::support::pki::TestPki;
use crate::support::sink::{delivered, fast_retry, tcp_kind, TestSink};
use crate::support::syslog_ng::{Parsed, SyslogNg, SyslogNgOptions};
use crate::support::{event_at, multiset, wait_for, PATIENCE};
use c42fwd::config::{OversizePolicy, Sink, SinkKind, UnixMode, UnixOptions};
use c42fwd::encode::{Encoder, EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::event::Event;
use std::path::Path;
use std::time::Duration;

fn options(format: Format, framing: Framing) -> EncoderOptions {
    EncoderOptions {
        format,
        syslog: SyslogStyle::Rfc5424,
        framing,
        facility: 13,
        hostname: "c42fwd-test".into(),
        app_name: "c42fwd".into(),
    }
}

fn sink(name: &str, kind: SinkKind, encoding: EncoderOptions) -> Sink {
    Sink {
        name: name.to_string(),
        kind,
        encoding,
        dead_letter_max_bytes: c42fwd::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry: fast_retry(None),
    }
}

fn unix(path: &Path, mode: UnixMode) -> SinkKind {
    SinkKind::Unix(UnixOptions {
        path: path.to_path_buf(),
        mode,
        connect_timeout: Duration::from_secs(5),
    })
}

/// Audit Log events of a few types (so that MSGIDs differ), each with a unique `seq`
/// and values that CEF and LEEF must escape.
fn audit_events(range: std::ops::Range<usize>) -> Vec<Event> {
    const TYPES: &[&str] = &[
        "audit_log::logged_in/1",
        "audit_log::logged_out/1",
        "audit_log::user_role_added/1",
    ];
    range
        .map(|seq| {
            let json = serde_json::json!({
                "type$": TYPES[seq % TYPES.len()],
                "actorId": format!("10000000000{seq:05}"),
                "actorName": format!("user{seq}@example.com"),
                "actorIpAddress": format!("10.0.{}.{}", seq / 250, seq % 250),
                "actorType": "USER",
                "timestamp": format!("2024-05-01T12:{:02}:{:02}.123Z", (seq / 60) % 60, seq % 60),
                "seq": seq,
                "note": format!("pipe | equals = backslash \\ tab\there é ✓ {seq}"),
            });
            let occurred =
                chrono::DateTime::parse_from_rfc3339(json["timestamp"].as_str().expect("str"))
                    .expect("rfc 3339")
                    .with_timezone(&chrono::Utc);
            event_at(&json.to_string(), occurred)
        })
        .collect()
}

/// What syslog-ng should parse out of each record: the RFC 5424 header fields and the
/// body, split from the record the encoder makes (c42fwd sends no structured data:
/// its SD is the NILVALUE `-`, which syslog-ng parses as empty).
fn expected(opts: &EncoderOptions, events: &[Event]) -> Vec<Parsed> {
    let mut unframed = opts.clone();
    unframed.framing = Framing::None;
    let encoder = Encoder::new(unframed);
    events
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            encoder.encode(e, &mut out);
            let record = String::from_utf8(out).expect("utf-8 record");
            let f: Vec<&str> = record.splitn(8, ' ').collect();
            assert_eq!(f.len(), 8, "an RFC 5424 record: {record}");
            assert_eq!(f[6], "-", "no structured data: {record}");
            Parsed {
                host: f[2].to_string(),
                app: f[3].to_string(),
                pid: if f[4] == "-" {
                    String::new()
                } else {
                    f[4].to_string()
                },
                msgid: f[5].to_string(),
                sdata: String::new(),
                msg: f[7].trim_start_matches('\u{feff}').to_string(),
            }
        })
        .collect()
}

/// syslog-ng's unix sources add a `[meta sequenceId="N"]` element of their own.
fn without_meta(mut p: Parsed) -> Parsed {
    if p.sdata.starts_with("[meta sequenceId=")
        && p.sdata.ends_with(']')
        && p.sdata.matches('[').count() == 1
    {
        p.sdata.clear();
    }
    p
}

fn key(p: &Parsed) -> String {
    format!("{p:?}")
}

/// Sends `events` to `kind` in batches of 20, waits for their acknowledgements and for
/// syslog-ng to have written `already + events.len()` messages.
async fn deliver(
    ng: &SyslogNg,
    name: &str,
    kind: SinkKind,
    opts: &EncoderOptions,
    events: &[Event],
    already: usize,
) {
    let s = TestSink::start(sink(name, kind, opts.clone()));
    let mut waiters = Vec::new();
    for chunk in events.chunks(20) {
        waiters.push(s.send(chunk.to_vec()).await);
    }
    for w in waiters {
        delivered(w).await;
    }
    ng.wait_for(already + events.len(), PATIENCE).await;
    assert_eq!(s.events(), events.len() as u64);
    s.finish().await;
}

/// Every expected record exactly once, and nothing else, after a clean stop.
fn assert_exactly_once(got: Vec<Parsed>, want: Vec<Parsed>) {
    let got = multiset(got.into_iter().map(without_meta).map(|p| key(&p)));
    let want = multiset(want.iter().map(key));
    if got != want {
        let missing: Vec<_> = want
            .keys()
            .filter(|k| got.get(*k) != want.get(*k))
            .take(3)
            .collect();
        let extra: Vec<_> = got
            .keys()
            .filter(|k| got.get(*k) != want.get(*k))
            .take(3)
            .collect();
        panic!(
            "syslog-ng did not get every record exactly once ({} kinds expected, {} got)\nexpected, not got as often: {missing:#?}\ngot, not expected as often: {extra:#?}",
            want.len(),
            got.len()
        );
    }
}

/// The header fields c42fwd sends, as syslog-ng parsed them.
fn assert_header(p: &Parsed) {
    assert_eq!(p.host, "c42fwd-test", "{p:?}");
    assert_eq!(p.app, "c42fwd", "{p:?}");
    assert!(!p.msgid.is_empty(), "syslog-ng parsed no MSGID: {p:?}");
}

#[tokio::test]
async fn tcp_octet_counting_to_syslog_ng_parses_the_header_and_keeps_cef_and_leef_intact() {
    let mut ng = SyslogNg::start(SyslogNgOptions::default()).await;
    let cef = options(Format::Cef, Framing::OctetCounting);
    let leef = options(Format::Leef2, Framing::OctetCounting);
    let (a, b) = (audit_events(0..60), audit_events(60..120));
    deliver(&ng, "cef", tcp_kind(ng.tcp_port(), None), &cef, &a, 0).await;
    deliver(
        &ng,
        "leef",
        tcp_kind(ng.tcp_port(), None),
        &leef,
        &b,
        a.len(),
    )
    .await;
    ng.stop().await;
    let got = ng.received();
    for p in &got {
        assert_header(p);
        assert_eq!(p.sdata, "", "c42fwd sends no structured data: {p:?}");
    }
    assert!(
        got[..60].iter().all(|p| p.msg.starts_with("CEF:0|")),
        "{:?}",
        got[0]
    );
    assert!(
        got[60..].iter().all(|p| p.msg.starts_with("LEEF:")),
        "{:?}",
        got[60]
    );
    let msgids: std::collections::BTreeSet<_> = got.iter().map(|p| p.msgid.clone()).collect();
    assert!(msgids.len() >= 2, "MSGIDs differ by event type: {msgids:?}");
    let mut want = expected(&cef, &a);
    want.extend(expected(&leef, &b));
    assert_exactly_once(got, want);
}

#[tokio::test]
async fn tls_to_syslog_ng_delivers_every_record_exactly_once_parsed() {
    let pki = TestPki::generate();
    let mut ng = SyslogNg::start(SyslogNgOptions {
        tls: Some(pki.server.clone()),
    })
    .await;
    let cef = options(Format::Cef, Framing::OctetCounting);
    let events = audit_events(0..90);
    let kind = tcp_kind(ng.tls_port(), Some(pki.client(false)));
    deliver(&ng, "tls", kind, &cef, &events, 0).await;
    ng.stop().await;
    let got = ng.received();
    got.iter().for_each(assert_header);
    assert_exactly_once(got, expected(&cef, &events));
}

#[tokio::test]
async fn unix_stream_to_syslog_ng_exactly_once_and_a_restart_loses_nothing() {
    let mut ng = SyslogNg::start(SyslogNgOptions::default()).await;
    let opts = options(Format::Cef, Framing::Lf);
    let events = audit_events(0..90);
    let s = TestSink::start(sink(
        "local",
        unix(&ng.unix_stream_path(), UnixMode::Stream),
        opts.clone(),
    ));
    delivered(s.send(events[..30].to_vec()).await).await;
    ng.wait_for(30, PATIENCE).await;

    // The collector restarts: the batch sent meanwhile waits, nothing is lost.
    ng.stop().await;
    let mut w2 = s.send(events[30..60].to_vec()).await;
    wait_for("connect errors while syslog-ng is down", PATIENCE, || {
        s.errors("connect") >= 2
    })
    .await;
    assert_eq!(w2.try_outcome(), None, "no ack while the receiver is down");
    let w3 = s.send(events[60..].to_vec()).await;
    ng.restart().await;
    delivered(w2).await;
    delivered(w3).await;
    ng.wait_for(90, PATIENCE).await;
    let resent = s.resent();
    assert!(s.reconnects() >= 1);
    s.finish().await;
    ng.stop().await;
    let got = ng.received();
    got.iter().for_each(assert_header);
    // At least once across the restart; duplicates only what was counted as re-sent.
    let want = expected(&opts, &events);
    let have = multiset(got.iter().cloned().map(without_meta).map(|p| key(&p)));
    for (i, w) in want.iter().enumerate() {
        assert!(
            have.contains_key(&key(w)),
            "record {i} lost across the restart: {w:?}"
        );
    }
    let extra = got.len() - want.len();
    assert!(
        extra as u64 <= resent,
        "{extra} duplicates, {resent} counted as re-sent"
    );
}

#[tokio::test]
async fn unix_stream_leef_to_syslog_ng_arrives_exactly_once_parsed() {
    // LF framing, the unix sink's default: what syslog-ng's unix-stream() reads.
    let mut ng = SyslogNg::start(SyslogNgOptions::default()).await;
    let opts = options(Format::Leef2, Framing::Lf);
    let events = audit_events(0..60);
    deliver(
        &ng,
        "local",
        unix(&ng.unix_stream_path(), UnixMode::Stream),
        &opts,
        &events,
        0,
    )
    .await;
    ng.stop().await;
    let got = ng.received();
    got.iter().for_each(assert_header);
    assert_exactly_once(got, expected(&opts, &events));
}

#[tokio::test]
async fn unix_datagram_to_syslog_ng_one_record_per_datagram_exactly_once() {
    let mut ng = SyslogNg::start(SyslogNgOptions::default()).await;
    let opts = options(Format::Cef, Framing::None);
    let events = audit_events(0..80);
    let mode = UnixMode::Datagram {
        max_datagram: 8192,
        oversize: OversizePolicy::Truncate,
    };
    deliver(
        &ng,
        "dgram",
        unix(&ng.unix_dgram_path(), mode),
        &opts,
        &events,
        0,
    )
    .await;
    ng.stop().await;
    let got = ng.received();
    got.iter().for_each(assert_header);
    assert_exactly_once(got, expected(&opts, &events));
}

#[tokio::test]
async fn unix_datagram_oversize_records_are_truncated_with_a_marker_and_counted() {
    let mut ng = SyslogNg::start(SyslogNgOptions::default()).await;
    let opts = options(Format::Cef, Framing::None);
    let mode = UnixMode::Datagram {
        max_datagram: 480,
        oversize: OversizePolicy::Truncate,
    };
    let s = TestSink::start(sink(
        "small",
        unix(&ng.unix_dgram_path(), mode),
        opts.clone(),
    ));
    // Records of more than 480 bytes: a long actor name (`suser` in CEF).
    let events: Vec<Event> = (0..10)
        .map(|i| {
            let json = serde_json::json!({
                "type$": "audit_log::logged_in/1",
                "actorName": format!("{}{i}@example.com", "x".repeat(600)),
                "timestamp": "2024-05-01T12:00:00.123Z",
            });
            event_at(&json.to_string(), chrono::Utc::now())
        })
        .collect();
    delivered(s.send(events.clone()).await).await;
    ng.wait_for(events.len(), PATIENCE).await;
    let ctx = s.finish().await;
    let truncated = ctx
        .metrics
        .sink_truncated
        .get_or_create(&c42fwd::metrics::label("sink", "small"))
        .get();
    ng.stop().await;
    let got = ng.received();
    assert_eq!(got.len(), events.len(), "one datagram per record");
    assert_eq!(
        truncated,
        events.len() as u64,
        "every record was larger than 480 bytes"
    );
    for p in &got {
        assert_header(p);
        assert!(
            p.msg
                .ends_with(std::str::from_utf8(c42fwd::sinks::TRUNCATION_MARKER).unwrap()),
            "{p:?}"
        );
    }
}

#[tokio::test]
async fn unix_healthcheck_connects_and_names_a_missing_socket() {
    let ng = SyslogNg::start(SyslogNgOptions::default()).await;
    let dgram = UnixMode::Datagram {
        max_datagram: 8192,
        oversize: OversizePolicy::Truncate,
    };
    let cfg = |path: &Path, mode| sink("h", unix(path, mode), options(Format::Cef, Framing::Lf));
    c42fwd::sinks::healthcheck(&cfg(&ng.unix_stream_path(), UnixMode::Stream))
        .await
        .expect("stream socket");
    c42fwd::sinks::healthcheck(&cfg(&ng.unix_dgram_path(), dgram))
        .await
        .expect("datagram socket");
    let missing = ng.unix_stream_path().with_file_name("missing.sock");
    for mode in [UnixMode::Stream, dgram] {
        let e = c42fwd::sinks::healthcheck(&cfg(&missing, mode))
            .await
            .expect_err("no socket there");
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
        assert!(e.is_retriable(), "{e}");
    }
    // A stream sink pointed at the datagram socket is refused by the kernel.
    c42fwd::sinks::healthcheck(&cfg(&ng.unix_dgram_path(), UnixMode::Stream))
        .await
        .expect_err("wrong socket type");
}
