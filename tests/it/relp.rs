//! The RELP sink against a real rsyslog (imrelp, rsyslog-relp / librelp), plain and over
//! TLS (librelp's gnutls driver), including a SIGKILL of rsyslog in the middle of a
//! 100,000-event stream: with RELP nothing is lost, duplicates are counted.
//!
//! The protocol details (framing, windows, `500` answers, ack timeouts, transaction
//! number wrap) are unit-tested against scripted servers in `src/sinks/relp.rs`; here the
//! peer is the real librelp.

use crate::support::pki::{TestPki, CLIENT_NAME};
use crate::support::rsyslog::{ClientAuth, RelpListener, RelpTlsLib, Rsyslog, RsyslogOptions};
use crate::support::sink::{
    delivered, expected_lines, fast_retry, produce, seq_events, sink_config, Tally, TestSink,
};
use crate::support::{wait_for, PATIENCE};
use c42fwd::ack::Outcome;
use c42fwd::config::{RelpOptions, SinkKind, TlsOptions};
use c42fwd::encode::Framing;
use c42fwd::sinks;
use std::time::Duration;

fn relp_kind(port: u16, window: usize, tls: Option<TlsOptions>) -> SinkKind {
    SinkKind::Relp(RelpOptions {
        host: "127.0.0.1".into(),
        port,
        connect_timeout: Duration::from_secs(5),
        window,
        ack_timeout: Duration::from_secs(10),
        tls,
    })
}

async fn rsyslog_with_relp(relp: RelpListener, direct_queue: bool) -> Rsyslog {
    Rsyslog::start(RsyslogOptions {
        tcp: false,
        udp: false,
        relp: Some(relp),
        direct_queue,
        ..Default::default()
    })
    .await
}

/// Five batches through a RELP sink: every record arrives exactly once, in order, and
/// each batch is acknowledged only after its `rsp`s.
async fn relp_exactly_once(rsyslog: &mut Rsyslog, tls: Option<TlsOptions>) {
    let cfg = sink_config(
        "relp",
        relp_kind(rsyslog.relp_port(), 16, tls),
        Framing::None,
        fast_retry(None),
    );
    let opts = cfg.encoding.clone();
    let sink = TestSink::start(cfg);
    let events = seq_events(0..200);
    let mut waiters = Vec::new();
    for chunk in events.chunks(40) {
        waiters.push(sink.send(chunk.to_vec()).await);
    }
    for w in waiters {
        delivered(w).await;
    }
    // RELP acknowledged them: they are in rsyslog (its queue, then its file).
    rsyslog.wait_for_lines(events.len(), PATIENCE).await;
    assert_eq!(sink.events(), events.len() as u64);
    assert_eq!(sink.resent(), 0);
    sink.finish().await;
    rsyslog.stop().await;
    assert_eq!(rsyslog.lines(), expected_lines(&opts, &events));
}

#[tokio::test]
async fn relp_to_rsyslog_delivers_exactly_once_in_order() {
    let mut rsyslog = rsyslog_with_relp(RelpListener::default(), false).await;
    relp_exactly_once(&mut rsyslog, None).await;
}

/// RELP over TLS with a client certificate that librelp checks by name.
async fn relp_over_mutual_tls(tls_lib: RelpTlsLib) {
    let pki = TestPki::generate();
    let relp = RelpListener {
        tls: Some((
            pki.server.clone(),
            ClientAuth::Name {
                permitted_peer: CLIENT_NAME.into(),
            },
        )),
        tls_lib,
    };
    let mut rsyslog = rsyslog_with_relp(relp, false).await;
    relp_exactly_once(&mut rsyslog, Some(pki.client(true))).await;
}

#[tokio::test]
async fn relp_over_tls_gnutls_with_a_client_certificate_delivers_exactly_once() {
    relp_over_mutual_tls(RelpTlsLib::Gnutls).await;
}

#[tokio::test]
async fn relp_over_tls_openssl_with_a_client_certificate_delivers_exactly_once() {
    relp_over_mutual_tls(RelpTlsLib::Openssl).await;
}

#[tokio::test]
async fn relp_over_tls_without_client_authentication_delivers_exactly_once() {
    let pki = TestPki::generate();
    let relp = RelpListener {
        tls: Some((pki.server.clone(), ClientAuth::None)),
        tls_lib: RelpTlsLib::Openssl,
    };
    let mut rsyslog = rsyslog_with_relp(relp, false).await;
    relp_exactly_once(&mut rsyslog, Some(pki.client(false))).await;
}

#[tokio::test]
async fn relp_over_tls_without_the_required_client_certificate_delivers_nothing() {
    let pki = TestPki::generate();
    let relp = RelpListener {
        tls: Some((
            pki.server.clone(),
            ClientAuth::Name {
                permitted_peer: CLIENT_NAME.into(),
            },
        )),
        tls_lib: RelpTlsLib::Gnutls,
    };
    let mut rsyslog = rsyslog_with_relp(relp, false).await;
    let port = rsyslog.relp_port();
    let mut sink = TestSink::start(sink_config(
        "relp-refused",
        relp_kind(port, 16, Some(pki.client(false))),
        Framing::None,
        fast_retry(Some(2)),
    ));
    let waiter = sink.send(seq_events(0..10)).await;
    let err = sink.ended().await.expect_err("the session must be refused");
    assert_eq!(waiter.wait().await, Outcome::NotDelivered);
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(
        msg.contains("client certificate"),
        "the error says what is likely: {msg}"
    );
    assert!(err.is_retriable(), "{msg}");
    assert_eq!(sink.events(), 0);
    rsyslog.stop().await;
    assert!(rsyslog.lines().is_empty(), "{:?}", rsyslog.lines());
}

#[tokio::test]
async fn relp_healthcheck_opens_a_session_and_tells_a_non_relp_listener_apart() {
    let rsyslog = Rsyslog::start(RsyslogOptions {
        tcp: true,
        udp: false,
        relp: Some(RelpListener::default()),
        ..Default::default()
    })
    .await;
    let ok = sink_config(
        "hc",
        relp_kind(rsyslog.relp_port(), 4, None),
        Framing::None,
        fast_retry(None),
    );
    sinks::healthcheck(&ok).await.expect("relp session opens");
    // imtcp takes our `open` as a syslog line and answers nothing.
    let mut wrong = relp_kind(rsyslog.tcp_port(), 4, None);
    if let SinkKind::Relp(RelpOptions {
        connect_timeout, ..
    }) = &mut wrong
    {
        *connect_timeout = Duration::from_millis(500);
    }
    let err = sinks::healthcheck(&sink_config("hc", wrong, Framing::None, fast_retry(None)))
        .await
        .expect_err("imtcp is no relp server");
    assert!(err.to_string().contains("is it a relp listener"), "{err}");
}

/// rsyslog stopped cleanly (it sends `serverclose`) between batches and started again:
/// the batch sent while it is down waits, and everything arrives exactly once.
#[tokio::test]
async fn relp_sink_survives_a_clean_restart_without_duplicates() {
    let mut rsyslog = rsyslog_with_relp(RelpListener::default(), false).await;
    let cfg = sink_config(
        "relp-restart",
        relp_kind(rsyslog.relp_port(), 16, None),
        Framing::None,
        fast_retry(None),
    );
    let opts = cfg.encoding.clone();
    let sink = TestSink::start(cfg);
    let events = seq_events(0..90);
    delivered(sink.send(events[..30].to_vec()).await).await;
    rsyslog.stop().await;
    let mut w2 = sink.send(events[30..60].to_vec()).await;
    assert_eq!(w2.try_outcome(), None, "no ack while rsyslog is down");
    rsyslog.restart().await;
    delivered(w2).await;
    delivered(sink.send(events[60..].to_vec()).await).await;
    assert!(sink.reconnects() >= 1);
    sink.finish().await;
    rsyslog.stop().await;
    // Every frame of the first batch was answered before the stop: nothing to resend.
    assert_eq!(rsyslog.lines(), expected_lines(&opts, &events));
}

/// The test the RELP sink exists for: rsyslog is SIGKILLed in the middle of a stream of
/// 100,000 events and started again. Every event arrives; the frames that were in
/// flight without an answer are sent again (counted) and may arrive twice.
// Two worker threads: the sink keeps writing while the test kills rsyslog (on one
// thread the sink would sit still during the kill, and nothing would be in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_loses_nothing_when_rsyslog_is_killed_mid_stream() {
    const TOTAL: usize = 100_000;
    const PER_BATCH: usize = 500;
    // Direct queue: rsyslog writes a message before it answers its frame, so what it
    // acknowledged survives SIGKILL (with its default in-memory queue it would not,
    // and that loss would be rsyslog's, not the sink's).
    let mut rsyslog = rsyslog_with_relp(RelpListener::default(), true).await;
    let cfg = sink_config(
        "relp-kill",
        relp_kind(rsyslog.relp_port(), 128, None),
        Framing::None,
        fast_retry(None),
    );
    let sink = TestSink::start(cfg);
    let started = tokio::time::Instant::now();
    let producer = produce(sink.sender(), TOTAL, PER_BATCH);
    // Kill when a third was acknowledged: the sink is writing at full speed then.
    wait_for("a third of the stream acknowledged", PATIENCE, || {
        sink.events() >= (TOTAL / 3) as u64
    })
    .await;
    rsyslog.kill().await;
    let at_kill = sink.events();
    rsyslog.restart().await;
    let waiters = producer.await.expect("producer");
    assert_eq!(waiters.len(), TOTAL / PER_BATCH);
    for w in waiters {
        delivered(w).await;
    }
    let resent = sink.resent();
    let reconnects = sink.reconnects();
    sink.finish().await;
    rsyslog.stop().await;
    let tally = Tally::of(&rsyslog.lines(), TOTAL);
    eprintln!(
        "RELP, rsyslog SIGKILLed after {at_kill} of {TOTAL} events were acknowledged, then restarted: \
         {} lost, {} duplicated, {resent} frames re-sent, {reconnects} reconnect(s), {:?}",
        tally.lost.len(),
        tally.duplicates,
        started.elapsed()
    );
    assert_eq!(tally.foreign_lines, 0);
    assert!(
        tally.lost.is_empty(),
        "RELP lost {} events: {}",
        tally.lost.len(),
        tally.lost_ranges()
    );
    assert!(reconnects >= 1);
    assert!(
        tally.duplicates as u64 <= resent,
        "{} duplicates but only {resent} frames re-sent",
        tally.duplicates
    );
}
