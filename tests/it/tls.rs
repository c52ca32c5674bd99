//! Syslog over TLS (RFC 5425) from the TCP sink to a real rsyslog (imtcp with the gtls
//! stream driver), with certificates this test makes with rcgen; and how much the plain
//! TCP sink loses or duplicates when rsyslog is killed in the middle of a stream.
//!
//! Failures are checked three ways: the error the sink stops with (these tests give the
//! sink a bounded number of retries, so that it ends with the error it saw), the
//! `sink_errors` kind, and the acknowledgement (never Delivered, so a source would commit
//! nothing), plus rsyslog's output (none of our records in it).

use crate::support::pki::{TestPki, CLIENT_NAME};
use crate::support::rsyslog::{ClientAuth, Rsyslog, RsyslogOptions, ServerTls, TlsListener};
use crate::support::sink::*;
use crate::support::{event, wait_for, PATIENCE};
use c42fwd::ack::Outcome;
use c42fwd::config::{SinkKind, TcpOptions, TlsOptions};
use c42fwd::encode::Framing;
use c42fwd::sinks::{self, SinkError};
use std::time::Duration;

fn listener(name: &str, server: &ServerTls, auth: ClientAuth) -> TlsListener {
    TlsListener {
        name: name.to_string(),
        server: server.clone(),
        auth,
    }
}

async fn rsyslog_with_tls(listeners: Vec<TlsListener>) -> Rsyslog {
    Rsyslog::start(RsyslogOptions {
        tcp: true,
        udp: false,
        tls: listeners,
        ..Default::default()
    })
    .await
}

/// Sends three batches and checks rsyslog got every record exactly once, in order.
async fn deliver_exactly_once(rsyslog: &mut Rsyslog, kind: SinkKind) {
    let cfg = sink_config("tls", kind, Framing::OctetCounting, fast_retry(None));
    let opts = cfg.encoding.clone();
    let sink = TestSink::start(cfg);
    let events = seq_events(0..120);
    for chunk in events.chunks(40) {
        delivered(sink.send(chunk.to_vec()).await).await;
    }
    rsyslog.wait_for_lines(events.len(), PATIENCE).await;
    assert_eq!(sink.events(), events.len() as u64);
    sink.finish().await;
    rsyslog.stop().await;
    assert_eq!(rsyslog.lines(), expected_lines(&opts, &events));
}

#[tokio::test]
async fn tls_to_rsyslog_verifies_the_server_and_delivers_exactly_once() {
    let pki = TestPki::generate();
    let mut rsyslog = rsyslog_with_tls(vec![listener("anon", &pki.server, ClientAuth::None)]).await;
    // The host is an IP address: the certificate's IP SAN is what is verified.
    let kind = tcp_kind(rsyslog.tls_port("anon"), Some(pki.client(false)));
    deliver_exactly_once(&mut rsyslog, kind).await;
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate_rsyslog_checks_delivers_exactly_once() {
    let pki = TestPki::generate();
    let auth = ClientAuth::Name {
        permitted_peer: CLIENT_NAME.into(),
    };
    let mut rsyslog = rsyslog_with_tls(vec![listener("x509", &pki.server, auth)]).await;
    let mut tls = pki.client(true);
    // Verify against the DNS name although we connect to an IP address.
    tls.server_name = Some("localhost".into());
    let kind = tcp_kind(rsyslog.tls_port("x509"), Some(tls));
    deliver_exactly_once(&mut rsyslog, kind).await;
}

/// Runs a sink that must fail: it gets two retries, then stops with its last error.
/// Checks that the batch was never acknowledged as delivered and that rsyslog has none
/// of the records; returns the error and the number of errors of `kind`.
async fn refused(rsyslog: &mut Rsyslog, kind: SinkKind, error_kind: &str) -> (SinkError, u64) {
    let cfg = sink_config("refused", kind, Framing::OctetCounting, fast_retry(Some(2)));
    let opts = cfg.encoding.clone();
    let mut sink = TestSink::start(cfg);
    let events = seq_events(0..10);
    let waiter = sink.send(events.clone()).await;
    let err = sink.ended().await.expect_err("the sink must fail");
    eprintln!("refused as it should be: {err}");
    assert_eq!(
        waiter.wait().await,
        Outcome::NotDelivered,
        "a refused batch must not be acknowledged (nothing may be committed)"
    );
    let errors = sink.errors(error_kind);
    assert!(
        errors >= 1,
        "expected sink_errors{{kind={error_kind}}}, got error {err} ({})",
        err.kind()
    );
    assert_eq!(sink.events(), 0);
    // A clean stop flushes rsyslog: nothing of ours may be in its output.
    rsyslog.stop().await;
    let lines = rsyslog.lines();
    for want in expected_lines(&opts, &events) {
        assert!(!lines.contains(&want), "delivered although refused: {want}");
    }
    (err, errors)
}

#[tokio::test]
async fn a_server_certificate_from_an_unknown_ca_is_refused_with_a_clear_error() {
    let pki = TestPki::generate();
    let mut rsyslog = rsyslog_with_tls(vec![listener("anon", &pki.server, ClientAuth::None)]).await;
    let port = rsyslog.tls_port("anon");
    let mut tls = pki.client(false);
    tls.ca_file = Some(pki.other_ca.clone());
    let (err, errors) = refused(&mut rsyslog, tcp_kind(port, Some(tls)), "tls_certificate").await;
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(
        msg.contains("UnknownIssuer") || msg.contains("unknown issuer"),
        "{msg}"
    );
    // Retriable: it was tried three times (the first try and two retries).
    assert!(err.is_retriable());
    assert_eq!(errors, 3, "{msg}");
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_with_a_clear_error() {
    let pki = TestPki::generate();
    let mut rsyslog =
        rsyslog_with_tls(vec![listener("expired", &pki.expired, ClientAuth::None)]).await;
    let port = rsyslog.tls_port("expired");
    let (err, _) = refused(
        &mut rsyslog,
        tcp_kind(port, Some(pki.client(false))),
        "tls_certificate",
    )
    .await;
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.to_lowercase().contains("expired"), "{msg}");
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused_with_a_clear_error() {
    let pki = TestPki::generate();
    let mut rsyslog =
        rsyslog_with_tls(vec![listener("wrong", &pki.wrong_name, ClientAuth::None)]).await;
    let port = rsyslog.tls_port("wrong");
    let mut tls = pki.client(false);
    tls.server_name = Some("localhost".into());
    let (err, _) = refused(&mut rsyslog, tcp_kind(port, Some(tls)), "tls_certificate").await;
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("not valid for name"), "{msg}");
    assert!(msg.contains("localhost"), "{msg}");
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_certificate_for_another_name() {
    let pki = TestPki::generate();
    let mut rsyslog =
        rsyslog_with_tls(vec![listener("wrong", &pki.wrong_name, ClientAuth::None)]).await;
    let tls = TlsOptions {
        ca_file: None,
        insecure_skip_verify: true,
        ..pki.client(false)
    };
    let kind = tcp_kind(rsyslog.tls_port("wrong"), Some(tls));
    deliver_exactly_once(&mut rsyslog, kind).await;
}

#[tokio::test]
async fn a_client_without_the_certificate_rsyslog_requires_delivers_nothing() {
    let pki = TestPki::generate();
    let auth = ClientAuth::Name {
        permitted_peer: CLIENT_NAME.into(),
    };
    let mut rsyslog = rsyslog_with_tls(vec![listener("x509", &pki.server, auth)]).await;
    let port = rsyslog.tls_port("x509");
    // gnutls completes the handshake and rsyslog then drops the unauthenticated peer:
    // the sink sees the close within its first-write linger and holds the batch.
    let (err, _) = refused(
        &mut rsyslog,
        tcp_kind(port, Some(pki.client(false))),
        "closed_after_first_write",
    )
    .await;
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(
        msg.contains("closed the connection after the first record"),
        "{msg}"
    );
}

#[tokio::test]
async fn tls_to_a_plaintext_listener_says_so() {
    let pki = TestPki::generate();
    let mut rsyslog = rsyslog_with_tls(Vec::new()).await;
    let port = rsyslog.tcp_port();
    let kind = SinkKind::Tcp(TcpOptions {
        host: "127.0.0.1".into(),
        port,
        // The handshake is bounded by the connect timeout.
        connect_timeout: Duration::from_millis(500),
        keepalive: None,
        tls: Some(pki.client(false)),
    });
    let (err, _) = refused(&mut rsyslog, kind, "tls_handshake").await;
    let msg = err.to_string();
    assert!(
        msg.contains("the server did not answer the TLS handshake: is it a plaintext listener?"),
        "{msg}"
    );
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
}

#[tokio::test]
async fn plaintext_to_a_tls_listener_says_so() {
    let pki = TestPki::generate();
    let mut rsyslog = rsyslog_with_tls(vec![listener("anon", &pki.server, ClientAuth::None)]).await;
    let port = rsyslog.tls_port("anon");
    let (err, _) = refused(
        &mut rsyslog,
        tcp_kind(port, None),
        "closed_after_first_write",
    )
    .await;
    let msg = err.to_string();
    assert!(
        msg.contains("the peer closed the connection after the first record")
            && msg.contains("is it a TLS listener?"),
        "{msg}"
    );
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
}

#[tokio::test]
async fn healthcheck_reports_the_certificate_problem() {
    let pki = TestPki::generate();
    let rsyslog = rsyslog_with_tls(vec![listener("expired", &pki.expired, ClientAuth::None)]).await;
    let cfg = sink_config(
        "hc",
        tcp_kind(rsyslog.tls_port("expired"), Some(pki.client(false))),
        Framing::OctetCounting,
        fast_retry(None),
    );
    let err = sinks::healthcheck(&cfg)
        .await
        .expect_err("expired certificate");
    assert_eq!(err.kind(), "tls_certificate", "{err}");
}

/// TLS sink, rsyslog killed and started again between batches: the batch in the gap is
/// held, the one before is written again (counted: the TLS session ended without
/// `close_notify`, so the sink cannot know it was stored), nothing is lost.
#[tokio::test]
async fn tls_sink_resends_across_a_receiver_restart() {
    let pki = TestPki::generate();
    let mut rsyslog = rsyslog_with_tls(vec![listener("anon", &pki.server, ClientAuth::None)]).await;
    let cfg = sink_config(
        "tls-restart",
        tcp_kind(rsyslog.tls_port("anon"), Some(pki.client(false))),
        Framing::OctetCounting,
        fast_retry(None),
    );
    let opts = cfg.encoding.clone();
    let sink = TestSink::start(cfg);
    let events = seq_events(0..90);
    delivered(sink.send(events[..30].to_vec()).await).await;
    rsyslog.wait_for_lines(30, PATIENCE).await;
    rsyslog.kill().await;
    let w2 = sink.send(events[30..60].to_vec()).await;
    rsyslog.restart().await;
    delivered(w2).await;
    delivered(sink.send(events[60..].to_vec()).await).await;
    let resent = sink.resent();
    assert!(
        resent >= 30,
        "the previous batch is written again: resent {resent}"
    );
    assert_eq!(sink.reconnects(), 1);
    // Written is not yet read: wait for rsyslog to have every record before stopping
    // it (a record still missing after PATIENCE is lost, and the wait says so).
    let want = expected_lines(&opts, &events);
    wait_for("every record in rsyslog's output", PATIENCE, || {
        let lines: std::collections::HashSet<String> = rsyslog.lines().into_iter().collect();
        want.iter().all(|w| lines.contains(w))
    })
    .await;
    sink.finish().await;
    rsyslog.stop().await;
    let lines = rsyslog.lines();
    let extra = lines.len() - events.len();
    assert!(
        extra as u64 <= resent,
        "{extra} duplicates, {resent} re-sent"
    );
}

/// Plain TCP has no acknowledgement: what a SIGKILL of the receiver in the middle of a
/// stream costs. rsyslog runs with a direct queue (it stores a message before it reads
/// on), so what it loses is what sat in the socket buffers, which the sink's resend
/// tail covers: nothing may be lost, duplicates stay within what the sink counted as
/// re-sent. Prints the duplicates; see `src/sinks/tcp.rs`.
// Two worker threads: the sink keeps writing while the test kills rsyslog (on one
// thread the sink would sit still during the kill, and nothing would be in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_loss_window_when_rsyslog_is_killed_mid_stream() {
    const TOTAL: usize = 100_000;
    const PER_BATCH: usize = 500;
    let mut rsyslog = Rsyslog::start(RsyslogOptions {
        udp: false,
        direct_queue: true,
        ..Default::default()
    })
    .await;
    let cfg = sink_config(
        "tcp-kill",
        tcp_kind(rsyslog.tcp_port(), None),
        Framing::OctetCounting,
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
    // "Acknowledged" only means "written to our socket": before stopping rsyslog, make
    // sure it read everything, or the end of the stream would be lost in the stop.
    // Records on one connection arrive in order: once a sentinel is in the file, all
    // that was written before it is too.
    delivered(sink.send(vec![event(r#"{"sentinel":true}"#)]).await).await;
    wait_for("the sentinel in rsyslog's output", PATIENCE, || {
        rsyslog.lines().iter().any(|l| l.contains("sentinel"))
    })
    .await;
    sink.finish().await;
    rsyslog.stop().await;
    let lines = rsyslog.lines();
    let tally = Tally::of(&lines, TOTAL);
    eprintln!(
        "plain TCP, rsyslog SIGKILLed after {at_kill} of {TOTAL} events were acknowledged, then restarted: \
         {} lost ({}), {} duplicated, {resent} re-sent by the sink, {reconnects} reconnect(s), {:?}",
        tally.lost.len(),
        tally.lost_ranges(),
        tally.duplicates,
        started.elapsed()
    );
    assert_eq!(tally.foreign_lines, 1, "only the sentinel");
    assert!(
        tally.duplicates as u64 <= resent,
        "{} duplicates but only {resent} re-sent",
        tally.duplicates
    );
    assert!(reconnects >= 1);
    // What sat in the socket buffers (ours and rsyslog's) when it died was written
    // again on the new connection.
    assert!(
        tally.lost.is_empty(),
        "lost {} records: {}",
        tally.lost.len(),
        tally.lost_ranges()
    );
}
