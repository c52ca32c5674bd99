//! The TCP and TLS sinks when the receiver goes away by itself, end to end: the emulated
//! tenant -> the real `c42fwd run` -> a receiver that dies again and again in the
//! middle of the stream. Every event must arrive at least once (at-least-once: the
//! records written again after each end are duplicates, and are counted in
//! `c42fwd_sink_resent_total`).
//!
//! Receivers: a small one in this file that reads, then "crashes" ten times (it throws
//! away what its last read brought, as a process killed before storing it would, and
//! closes: after reading everything there was, which the kernel turns into a FIN, or
//! with data unread, a reset); the same over TLS, also ending sessions with
//! `close_notify`; rsyslog killed with SIGKILL ten times; rsyslog over TLS killed (a FIN
//! without `close_notify`).
//!
//! The sinks send the API event untouched (`format = "json"`, no syslog header,
//! octet-counted) so that what arrived can be compared with the emulator's ground
//! truth, and a frame torn by a re-send would show as a framing error.

use crate::support::config::{emu_tenant_secret_file, head, METRICS_ON_A_FREE_PORT};
use crate::support::daemon::{log_path, log_tail, start_emulator, Daemon};
use crate::support::metrics::{self, scrape};
use crate::support::multiset;
use crate::support::pki::TestPki;
use crate::support::rsyslog::{ClientAuth, Rsyslog, RsyslogOptions, TlsListener};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions};
use chrono::Utc;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How long the whole stream may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(120);

/// How many times each receiver dies.
const KILLS: usize = 10;

fn emulator_options(seed: u64) -> EmulatorOptions {
    EmulatorOptions {
        seed,
        backlog: 20_000,
        backlog_span: Duration::from_secs(1200),
        rate: 100.0,
        lag: Duration::from_secs(1),
        ..Default::default()
    }
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The daemon's metrics address, known once it started (it listens on port 0).
    metrics: String,
}

/// A config that reads the emulator's Audit Log and sends it, as raw JSON in
/// octet-counted frames, to one TCP sink named `tcp` on `port` (with the `tls` table
/// when given); metrics on a port of their own.
fn write_config(emu: &EmulatorHandle, opts: &EmulatorOptions, port: u16, tls: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c42fwd.toml");
    let text = format!(
        r#"
{head}
{METRICS_ON_A_FREE_PORT}
{tenant}
[sources.audit]
type = "audit_log"
tenant = "emu"
start = "1h"
lag = "3s"
poll_interval = "200ms"
page_size = 500

[sinks.tcp]
type = "tcp"
host = "127.0.0.1"
port = {port}
format = "json"
syslog = "none"
framing = "octet_counting"
queue_batches = 2
[sinks.tcp.retry]
initial = "20ms"
max = "500ms"
{tls}

[[routes]]
sources = ["audit"]
sinks = ["tcp"]
"#,
        head = head(dir.path(), "10s"),
        tenant = emu_tenant_secret_file(dir.path(), emu, opts),
    );
    std::fs::write(&config, text).expect("write config");
    Setup {
        dir,
        config,
        metrics: String::new(),
    }
}

/// One counter of the daemon's `/metrics`, 0 when it has no sample yet.
async fn metric(addr: &str, sample: &str) -> u64 {
    let text = scrape(addr).await.expect("GET /metrics");
    metrics::metric(&text, sample) as u64
}

/// The events that occurred up to a few seconds after the emulator started (the
/// backlog and the start of the live stream): all of them must arrive.
fn truth(emu: &EmulatorHandle) -> HashMap<String, usize> {
    let first = emu.started_at() - chrono::Duration::hours(2);
    multiset(emu.events_between(first, emu.started_at() + chrono::Duration::seconds(3)))
}

/// Everything the daemon could have sent by now.
fn truth_all(emu: &EmulatorHandle) -> HashMap<String, usize> {
    let first = emu.started_at() - chrono::Duration::hours(2);
    multiset(emu.events_between(first, Utc::now() + chrono::Duration::seconds(1)))
}

/// How many events of `truth` are missing from `got` (counting multiplicity).
fn missing(truth: &HashMap<String, usize>, got: &HashMap<String, usize>) -> usize {
    truth
        .iter()
        .map(|(k, n)| n.saturating_sub(got.get(k).copied().unwrap_or(0)))
        .sum()
}

/// Records received beyond what the tenant has: the duplicates.
fn duplicates(all: &HashMap<String, usize>, got: &HashMap<String, usize>) -> usize {
    got.iter()
        .map(|(k, g)| g.saturating_sub(all.get(k).copied().unwrap_or(0)))
        .sum()
}

/// The daemon's WARNs that it wrote records again on a new connection: how many, and
/// how many records they announced in all.
fn resend_warnings(setup: &Setup) -> (usize, f64) {
    let log = std::fs::read_to_string(log_path(&setup.config)).unwrap_or_default();
    let warns: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("records written again on a new connection"))
        .collect();
    let records = warns
        .iter()
        .filter_map(|l| {
            let v = l.split(" records=").nth(1)?;
            v.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum();
    (warns.len(), records)
}

/// Checks the end state shared by every test: nothing lost, duplicates within what the
/// daemon counted as re-sent, one reconnect and one WARN per death at least; then
/// stops the daemon (it must exit 0).
async fn assert_nothing_lost(
    setup: &Setup,
    emu: &EmulatorHandle,
    daemon: Daemon,
    got: HashMap<String, usize>,
    deaths: usize,
) {
    let resent = metric(&setup.metrics, "c42fwd_sink_resent_total{sink=\"tcp\"}").await;
    let reconnects = metric(&setup.metrics, "c42fwd_sink_reconnects_total{sink=\"tcp\"}").await;
    assert!(daemon.terminate().await.success(), "c42fwd exits 0");
    let all = truth_all(emu);
    let dups = duplicates(&all, &got);
    let (warnings, announced) = resend_warnings(setup);
    eprintln!(
        "{deaths} receiver deaths: nothing lost, {dups} duplicates, {resent} records re-sent, \
         {reconnects} reconnects, {warnings} resend warnings announcing {announced} records"
    );
    assert!(
        reconnects >= deaths as u64,
        "{reconnects} reconnects for {deaths} receiver deaths"
    );
    assert!(resent > 0, "records were written again after the deaths");
    assert!(
        dups as u64 <= resent,
        "{dups} duplicates but only {resent} records counted as re-sent"
    );
    // Every record written again was announced: the WARNs name them all (a death that
    // found nothing unread to write again has no WARN of its own, and may not).
    assert!(
        warnings >= 1 && announced >= resent as f64,
        "{warnings} WARNs announced {announced} of the {resent} records re-sent:\n{}",
        log_tail(&setup.config)
    );
}

// ---------------------------------------------------------------------------------
// A receiver that reads, then dies
// ---------------------------------------------------------------------------------

/// What the crashing receiver stored (complete frames it did not throw away).
#[derive(Default)]
struct Stored {
    frames: HashMap<String, usize>,
    /// Frames that were not a valid octet count or not UTF-8: a re-send that started
    /// inside a frame would show here.
    framing_errors: usize,
}

/// How a receiver dies once its life is over.
#[derive(Debug, Clone, Copy)]
enum Death {
    /// Reads what else there is first (until the stream pauses): closed with nothing
    /// unread, its kernel sends a FIN.
    AfterReading,
    /// Leaves the rest unread: its kernel answers with a reset.
    WithDataUnread,
    /// (TLS) Ends the session with `close_notify`, then closes.
    CloseNotify,
}

/// Accepts one connection at a time (with `tls`, runs the TLS handshake). On the first
/// `kills` connections, the k-th (from one) reads until `k * quota` bytes came in, so
/// that it dies in the first batch of a connection as well as after several. Then it
/// throws away what that last read brought (a process killed before storing it) and
/// dies: the `deaths` in turn. After that it stores everything.
struct CrashingReceiver {
    port: u16,
    stored: Arc<Mutex<Stored>>,
    deaths: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl CrashingReceiver {
    async fn start(
        kills: usize,
        quota: usize,
        deaths_in_turn: &'static [Death],
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stored = Arc::new(Mutex::new(Stored::default()));
        let deaths = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (stored, deaths) = (stored.clone(), deaths.clone());
            async move {
                let mut n = 0;
                while let Ok((conn, _)) = listener.accept().await {
                    let dies = (n < kills)
                        .then(|| ((n + 1) * quota, deaths_in_turn[n % deaths_in_turn.len()]));
                    match &tls {
                        None => serve(conn, dies, &stored).await,
                        Some(acceptor) => match acceptor.accept(conn).await {
                            Ok(conn) => serve(conn, dies, &stored).await,
                            // A failed handshake is no life: the sink tries again.
                            Err(_) => continue,
                        },
                    }
                    if dies.is_some() {
                        deaths.fetch_add(1, Ordering::SeqCst);
                    }
                    n += 1;
                }
            }
        });
        CrashingReceiver {
            port,
            stored,
            deaths,
            task,
        }
    }

    fn frames(&self) -> HashMap<String, usize> {
        self.stored.lock().expect("stored").frames.clone()
    }

    /// Waits until every event of `truth` was stored and every death happened.
    async fn wait_for_all(&self, truth: &HashMap<String, usize>, kills: usize, setup: &Setup) {
        let deadline = tokio::time::Instant::now() + ARRIVAL;
        loop {
            let lost = missing(truth, &self.frames());
            let deaths = self.deaths.load(Ordering::SeqCst);
            if lost == 0 && deaths == kills {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "after {ARRIVAL:?} and {deaths} deaths, {lost} events never arrived\n{}",
                log_tail(&setup.config)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            self.stored.lock().expect("stored").framing_errors,
            0,
            "a re-send started or ended inside a frame"
        );
    }
}

impl Drop for CrashingReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one connection; `dies`: after how many bytes, and how.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: S,
    dies: Option<(usize, Death)>,
    stored: &Mutex<Stored>,
) {
    let mut pending = Vec::new();
    let mut chunk = vec![0; 16 * 1024];
    let mut total = 0;
    loop {
        let n = match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        total += n;
        if let Some((life, death)) = dies {
            if total >= life {
                // Dies with this read in memory only: never stored. A frame torn at
                // the end goes with the connection too.
                match death {
                    Death::AfterReading => {
                        // Until the stream pauses (or a little more came): then
                        // nothing is left unread.
                        let mut more = 0;
                        while more < life {
                            match tokio::time::timeout(
                                Duration::from_millis(5),
                                conn.read(&mut chunk),
                            )
                            .await
                            {
                                Ok(Ok(n)) if n > 0 => more += n,
                                _ => break,
                            }
                        }
                    }
                    Death::WithDataUnread => {}
                    Death::CloseNotify => {
                        let _ = conn.shutdown().await;
                    }
                }
                return;
            }
        }
        pending.extend_from_slice(&chunk[..n]);
        let used = take_frames(&pending, &mut stored.lock().expect("stored"));
        pending.drain(..used);
    }
}

/// Stores the complete octet-counted frames at the start of `bytes`; returns the
/// number of bytes they took.
fn take_frames(bytes: &[u8], stored: &mut Stored) -> usize {
    let mut at = 0;
    loop {
        let rest = &bytes[at..];
        let Some(sp) = rest.iter().position(|&b| b == b' ') else {
            if rest.len() > 10 || !rest.iter().all(u8::is_ascii_digit) {
                stored.framing_errors += 1;
            }
            return at;
        };
        let Some(len) = std::str::from_utf8(&rest[..sp])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
        else {
            stored.framing_errors += 1;
            // Resynchronise at the next byte: the test fails anyway.
            at += sp + 1;
            continue;
        };
        if rest.len() < sp + 1 + len {
            return at;
        }
        match std::str::from_utf8(&rest[sp + 1..sp + 1 + len]) {
            Ok(msg) => *stored.frames.entry(msg.to_string()).or_default() += 1,
            Err(_) => stored.framing_errors += 1,
        }
        at += sp + 1 + len;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_dies_after_reading_ten_times_loses_nothing() {
    let opts = emulator_options(41);
    let emu = start_emulator(opts.clone()).await;
    // Lives of 128 KiB to 1.25 MiB: the ten deaths happen while the backlog streams
    // at full speed, in the first batch of a connection and after several.
    let receiver = CrashingReceiver::start(
        KILLS,
        128 * 1024,
        &[Death::AfterReading, Death::WithDataUnread],
        None,
    )
    .await;
    let mut setup = write_config(&emu, &opts, receiver.port, "");
    let daemon = Daemon::start(&setup.config).await;
    setup.metrics = daemon.metrics_addr().await;
    let truth = truth(&emu);
    assert!(truth.values().sum::<usize>() > 20_000);
    receiver.wait_for_all(&truth, KILLS, &setup).await;
    assert_nothing_lost(&setup, &emu, daemon, receiver.frames(), KILLS).await;
    drop(setup.dir);
}

/// The server side of TLS for the in-test receiver, with the test PKI's server
/// certificate.
fn acceptor(pki: &TestPki) -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&pki.server.cert_file)
        .expect("server certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("server certificate");
    let key = PrivateKeyDer::from_pem_file(&pki.server.key_file).expect("server key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

fn tls_table(pki: &TestPki) -> String {
    format!(
        "[sinks.tcp.tls]\nca_file = \"{}\"\n",
        pki.ca.display().to_string().replace('"', "\\\"")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_receiver_that_ends_its_sessions_mid_stream_loses_nothing() {
    let pki = TestPki::generate();
    let opts = emulator_options(53);
    let emu = start_emulator(opts.clone()).await;
    // close_notify, a bare FIN and a reset in turn, each after reading.
    let receiver = CrashingReceiver::start(
        KILLS,
        128 * 1024,
        &[
            Death::CloseNotify,
            Death::AfterReading,
            Death::WithDataUnread,
        ],
        Some(acceptor(&pki)),
    )
    .await;
    let mut setup = write_config(&emu, &opts, receiver.port, &tls_table(&pki));
    let daemon = Daemon::start(&setup.config).await;
    setup.metrics = daemon.metrics_addr().await;
    let truth = truth(&emu);
    receiver.wait_for_all(&truth, KILLS, &setup).await;
    assert_nothing_lost(&setup, &emu, daemon, receiver.frames(), KILLS).await;
}

// ---------------------------------------------------------------------------------
// rsyslog, killed
// ---------------------------------------------------------------------------------

/// What rsyslog stored, as event texts (`%rawmsg%`: the frame's content). A line torn
/// by the kill and glued to the next one after the restart matches no event.
fn rsyslog_events(rs: &Rsyslog) -> HashMap<String, usize> {
    multiset(rs.lines())
}

/// SIGKILLs rsyslog `kills` times, each time once it stored `every` more lines, and
/// starts it again on the same port; then waits for every event of the truth.
async fn kill_rsyslog_repeatedly(
    rs: &mut Rsyslog,
    setup: &Setup,
    emu: &EmulatorHandle,
    kills: usize,
    every: usize,
) {
    for k in 1..=kills {
        // Each kill hits a connection the sink made to this rsyslog (the previous
        // kill's reconnect) after it stored `every` more lines.
        let want = k * every;
        let deadline = tokio::time::Instant::now() + ARRIVAL;
        while rs.lines().len() < want
            || metric(&setup.metrics, "c42fwd_sink_reconnects_total{sink=\"tcp\"}").await
                < (k - 1) as u64
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "kill {k}: rsyslog did not reach {want} lines on a new connection\n{}",
                log_tail(&setup.config)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rs.kill_and_restart().await;
    }
    let truth = truth(emu);
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        let lost = missing(&truth, &rsyslog_events(rs));
        if lost == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {ARRIVAL:?}, {lost} events never reached rsyslog\n{}\n{}",
            log_tail(&setup.config),
            rs.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_killed_ten_times_mid_stream_loses_nothing() {
    let opts = emulator_options(43);
    let emu = start_emulator(opts.clone()).await;
    // Direct queue: rsyslog writes each message before it reads on, so what it lost in
    // a kill is only what was in its socket and ours (its own in-memory queue would add
    // up to its size, which the tail also covers, but not deterministically).
    let mut rs = Rsyslog::start(RsyslogOptions {
        udp: false,
        direct_queue: true,
        ..Default::default()
    })
    .await;
    let mut setup = write_config(&emu, &opts, rs.tcp_port(), "");
    let daemon = Daemon::start(&setup.config).await;
    setup.metrics = daemon.metrics_addr().await;
    kill_rsyslog_repeatedly(&mut rs, &setup, &emu, KILLS, 1_000).await;
    let got = rsyslog_events(&rs);
    assert_nothing_lost(&setup, &emu, daemon, got, KILLS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_over_tls_killed_mid_stream_loses_nothing() {
    let pki = TestPki::generate();
    let opts = emulator_options(47);
    let emu = start_emulator(opts.clone()).await;
    let mut rs = Rsyslog::start(RsyslogOptions {
        tcp: false,
        udp: false,
        direct_queue: true,
        tls: vec![TlsListener {
            name: "anon".into(),
            server: pki.server.clone(),
            auth: ClientAuth::None,
        }],
        ..Default::default()
    })
    .await;
    let mut setup = write_config(&emu, &opts, rs.tls_port("anon"), &tls_table(&pki));
    let daemon = Daemon::start(&setup.config).await;
    setup.metrics = daemon.metrics_addr().await;
    // A killed rsyslog never sends close_notify: the session ends with a bare FIN (or a
    // reset when it had data unread).
    kill_rsyslog_repeatedly(&mut rs, &setup, &emu, 5, 2_000).await;
    let got = rsyslog_events(&rs);
    assert_nothing_lost(&setup, &emu, daemon, got, 5).await;
}
