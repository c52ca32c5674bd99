//! Syslog over TLS (RFC 5425) from the TCP sink to a real rsyslog (imtcp with the gtls
//! stream driver), with certificates this test makes with rcgen; and how much the plain
//! TCP sink loses or duplicates when rsyslog is killed in the middle of a stream.
//!
//! Also home of the helpers the RELP tests share: [`TestPki`] (a CA, server and client
//! certificates, an expired one, one for the wrong name, a CA nobody uses), [`TestSink`]
//! (a sink task fed by hand) and the numbered events ([`seq_events`], [`Tally`]).
//!
//! Failures are checked three ways: the error the sink stops with (these tests give the
//! sink a bounded number of retries, so that it ends with the error it saw), the
//! `sink_errors` kind, and the acknowledgement (never Delivered, so a source would commit
//! nothing), plus rsyslog's output (none of our records in it).

use crate::rsyslog::{ClientAuth, Rsyslog, RsyslogOptions, ServerTls, TlsListener};
use crate::support::{event, sink_batch, wait_for, PATIENCE};
use c42fwd::ack::{AckWaiter, Outcome};
use c42fwd::config::{Sink, SinkKind, TlsOptions, TlsVersion};
use c42fwd::encode::{Encoder, EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::event::Event;
use c42fwd::metrics::{label, Metrics};
use c42fwd::retry::BackoffPolicy;
use c42fwd::sinks::{self, SinkBatch, SinkContext, SinkError};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------

/// The client certificate's name (SAN and CN), what rsyslog's `permittedPeer` names.
pub const CLIENT_NAME: &str = "client.c42fwd.test";

/// Test certificates, written as PEM files into their own temp dir.
pub struct TestPki {
    _dir: TempDir,
    /// The CA that issued every certificate below.
    pub ca: PathBuf,
    /// A CA that issued nothing here: trusting only it, no server is trusted.
    pub other_ca: PathBuf,
    /// For `localhost` and `127.0.0.1`, valid now.
    pub server: ServerTls,
    /// For `localhost` and `127.0.0.1`, expired in 2021.
    pub expired: ServerTls,
    /// Valid, but for `wrong.c42fwd.test` only.
    pub wrong_name: ServerTls,
    /// A client certificate for [`CLIENT_NAME`] and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn leaf_params(names: &[&str], eku: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![eku];
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2090, 1, 1);
    p
}

impl TestPki {
    pub fn generate() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("c42fwd-pki-")
            .tempdir()
            .expect("temp dir for certificates");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write pem");
            path
        };
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = ca_params("c42fwd test ca");
        let ca_pem = ca.self_signed(&ca_key).expect("ca cert").pem();
        let issuer = Issuer::new(ca, ca_key);
        let other_key = KeyPair::generate().expect("other ca key");
        let other_pem = ca_params("c42fwd unrelated ca")
            .self_signed(&other_key)
            .expect("other ca cert")
            .pem();
        let ca = write("ca.pem", ca_pem);
        let other_ca = write("other-ca.pem", other_pem);

        let leaf = |stem: &str, params: CertificateParams| {
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &issuer).expect("sign leaf");
            (
                write(&format!("{stem}.pem"), cert.pem()),
                write(&format!("{stem}.key"), key.serialize_pem()),
            )
        };
        let server_names = ["localhost", "127.0.0.1"];
        let (cert, key) = leaf(
            "server",
            leaf_params(&server_names, ExtendedKeyUsagePurpose::ServerAuth),
        );
        let server = ServerTls {
            ca_file: ca.clone(),
            cert_file: cert,
            key_file: key,
        };
        let mut expired_params = leaf_params(&server_names, ExtendedKeyUsagePurpose::ServerAuth);
        expired_params.not_before = date_time_ymd(2020, 1, 1);
        expired_params.not_after = date_time_ymd(2021, 1, 1);
        let (cert, key) = leaf("expired", expired_params);
        let expired = ServerTls {
            ca_file: ca.clone(),
            cert_file: cert,
            key_file: key,
        };
        let (cert, key) = leaf(
            "wrong-name",
            leaf_params(&["wrong.c42fwd.test"], ExtendedKeyUsagePurpose::ServerAuth),
        );
        let wrong_name = ServerTls {
            ca_file: ca.clone(),
            cert_file: cert,
            key_file: key,
        };
        let (client_cert, client_key) = leaf(
            "client",
            leaf_params(&[CLIENT_NAME], ExtendedKeyUsagePurpose::ClientAuth),
        );
        TestPki {
            _dir: dir,
            ca,
            other_ca,
            server,
            expired,
            wrong_name,
            client_cert,
            client_key,
        }
    }

    /// Client settings that trust the test CA, with or without the client certificate.
    pub fn client(&self, with_certificate: bool) -> TlsOptions {
        TlsOptions {
            ca_file: Some(self.ca.clone()),
            client_cert: with_certificate.then(|| self.client_cert.clone()),
            client_key: with_certificate.then(|| self.client_key.clone()),
            server_name: None,
            min_version: TlsVersion::Tls12,
            insecure_skip_verify: false,
        }
    }
}

// ---------------------------------------------------------------------------------
// A sink fed by hand
// ---------------------------------------------------------------------------------

/// Retries a test can wait through.
pub fn fast_retry(max_retries: Option<u32>) -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(200),
        max_retries,
    }
}

pub fn encoding(framing: Framing) -> EncoderOptions {
    EncoderOptions {
        format: Format::JsonRaw,
        syslog: SyslogStyle::Rfc5424,
        framing,
        facility: 13,
        hostname: "c42fwd-test".into(),
        app_name: "c42fwd".into(),
    }
}

pub fn sink_config(name: &str, kind: SinkKind, framing: Framing, retry: BackoffPolicy) -> Sink {
    Sink {
        name: name.to_string(),
        kind,
        encoding: encoding(framing),
        dead_letter_max_bytes: c42fwd::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry,
    }
}

pub fn tcp_kind(port: u16, tls: Option<TlsOptions>) -> SinkKind {
    SinkKind::Tcp {
        host: "127.0.0.1".into(),
        port,
        connect_timeout: Duration::from_secs(5),
        keepalive: Some(Duration::from_secs(60)),
        tls,
    }
}

/// A sink task fed through its queue by the test.
pub struct TestSink {
    tx: Option<mpsc::Sender<SinkBatch>>,
    pub ctx: SinkContext,
    task: Option<JoinHandle<Result<(), SinkError>>>,
    name: String,
    _dead_letter: TempDir,
}

impl TestSink {
    pub fn start(cfg: Sink) -> TestSink {
        let dead_letter = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = mpsc::channel(cfg.queue_batches);
        let ctx = SinkContext {
            metrics: Arc::new(Metrics::new()),
            dead_letter_dir: dead_letter.path().to_path_buf(),
            shutdown: CancellationToken::new(),
        };
        let name = cfg.name.clone();
        let task = tokio::spawn(sinks::run(cfg, rx, ctx.clone()));
        TestSink {
            tx: Some(tx),
            ctx,
            task: Some(task),
            name,
            _dead_letter: dead_letter,
        }
    }

    /// Queues a batch (waits while the queue is full); `None` if the sink stopped.
    pub async fn try_send(&self, events: Vec<Event>) -> Option<AckWaiter> {
        let (sb, waiter) = sink_batch("audit", events);
        let tx = self.tx.as_ref().expect("queue open");
        tx.send(sb).await.ok().map(|()| waiter)
    }

    pub async fn send(&self, events: Vec<Event>) -> AckWaiter {
        self.try_send(events).await.expect("sink queue open")
    }

    /// A clone of the queue's sender, for a producer task.
    pub fn sender(&self) -> mpsc::Sender<SinkBatch> {
        self.tx.clone().expect("queue open")
    }

    fn counter(&self, family: impl Fn(&Metrics) -> u64) -> u64 {
        family(&self.ctx.metrics)
    }

    pub fn events(&self) -> u64 {
        self.counter(|m| {
            m.sink_events
                .get_or_create(&label("sink", &self.name))
                .get()
        })
    }

    pub fn resent(&self) -> u64 {
        self.counter(|m| {
            m.sink_resent
                .get_or_create(&label("sink", &self.name))
                .get()
        })
    }

    pub fn reconnects(&self) -> u64 {
        self.counter(|m| {
            m.sink_reconnects
                .get_or_create(&label("sink", &self.name))
                .get()
        })
    }

    pub fn errors(&self, kind: &str) -> u64 {
        self.counter(|m| {
            m.sink_errors
                .get_or_create(&vec![
                    ("sink", self.name.clone()),
                    ("kind", kind.to_string()),
                ])
                .get()
        })
    }

    /// Waits for the sink task to end by itself and returns how it ended.
    pub async fn ended(&mut self) -> Result<(), SinkError> {
        let task = self.task.take().expect("sink task");
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the sink stops in time")
            .expect("sink task panicked")
    }

    /// Closes the queue and waits for the sink to drain it and stop without error.
    pub async fn finish(mut self) {
        self.tx = None;
        self.ended().await.expect("sink ends without error");
    }
}

impl Drop for TestSink {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
    }
}

pub async fn delivered(waiter: AckWaiter) {
    let outcome = tokio::time::timeout(PATIENCE, waiter.wait())
        .await
        .expect("batch acknowledged in time");
    assert_eq!(outcome, Outcome::Delivered);
}

// ---------------------------------------------------------------------------------
// Numbered events and what arrived of them
// ---------------------------------------------------------------------------------

/// Small events `{"seq":N,"pad":"..."}` for N in `range`.
pub fn seq_events(range: std::ops::Range<usize>) -> Vec<Event> {
    range
        .map(|i| event(&format!(r#"{{"seq":{i},"note":"event number {i}"}}"#)))
        .collect()
}

/// The message each event becomes (framing removed): what rsyslog's `%rawmsg%` shows.
pub fn expected_lines(opts: &EncoderOptions, events: &[Event]) -> Vec<String> {
    let mut unframed = opts.clone();
    unframed.framing = Framing::None;
    let encoder = Encoder::new(unframed);
    events
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            encoder.encode(e, &mut out);
            String::from_utf8(out).expect("utf-8 record")
        })
        .collect()
}

/// How often each sequence number arrived.
pub struct Tally {
    pub lost: Vec<usize>,
    pub duplicates: usize,
    pub foreign_lines: usize,
}

impl Tally {
    pub fn of(lines: &[String], sent: usize) -> Tally {
        let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
        let mut foreign_lines = 0;
        for line in lines {
            let seq = line
                .split_once("{\"seq\":")
                .and_then(|(_, rest)| rest.split(',').next())
                .and_then(|n| n.parse::<usize>().ok());
            match seq {
                Some(n) if n < sent => *seen.entry(n).or_default() += 1,
                _ => foreign_lines += 1,
            }
        }
        Tally {
            lost: (0..sent).filter(|n| !seen.contains_key(n)).collect(),
            duplicates: seen.values().map(|c| c - 1).sum(),
            foreign_lines,
        }
    }

    /// The lost sequence numbers as ranges, for the report.
    pub fn lost_ranges(&self) -> String {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.lost.len() {
            let start = self.lost[i];
            let mut end = start;
            while i + 1 < self.lost.len() && self.lost[i + 1] == end + 1 {
                i += 1;
                end = self.lost[i];
            }
            out.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
            i += 1;
        }
        out.join(", ")
    }
}

/// Feeds `total` numbered events in batches of `per_batch` through `tx`; returns the
/// waiters in order. The queue's bound paces it.
pub fn produce(
    tx: mpsc::Sender<SinkBatch>,
    total: usize,
    per_batch: usize,
) -> JoinHandle<Vec<AckWaiter>> {
    tokio::spawn(async move {
        let mut waiters = Vec::new();
        let mut start = 0;
        while start < total {
            let end = (start + per_batch).min(total);
            let (sb, waiter) = sink_batch("audit", seq_events(start..end));
            if tx.send(sb).await.is_err() {
                break;
            }
            waiters.push(waiter);
            start = end;
        }
        waiters
    })
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

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
    let kind = SinkKind::Tcp {
        host: "127.0.0.1".into(),
        port,
        // The handshake is bounded by the connect timeout.
        connect_timeout: Duration::from_millis(500),
        keepalive: None,
        tls: Some(pki.client(false)),
    };
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
