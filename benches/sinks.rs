//! Throughput of the stream sinks on loopback: plain TCP (the baseline), syslog over TLS,
//! RELP and RELP over TLS, each to an in-bench responder (not rsyslog: rsyslog's own
//! file writing would be what is measured). The TCP/TLS responder reads and throws the
//! bytes away; the RELP responder parses every frame and answers `200 OK`, as imrelp
//! does. TLS uses a certificate made here with rcgen (ECDSA P-256), verified by the sink
//! against its CA file, as in production.
//!
//! The sink runs in this process, fed batches of 500 events (about 330 bytes each once
//! encoded as raw JSON with an RFC 5424 header) through its bounded queue, as the
//! pipeline feeds it; the clock starts after a one-event warm-up that opened the
//! connection and stops when every batch's acknowledgement resolved as Delivered (for
//! RELP: every frame answered). Each scenario runs in its own child
//! process, so that the peak RSS printed (`VmHWM`) is that run's alone; it covers the
//! sink, the responder and the producer. It measures; it asserts nothing about speed.
//!
//! `cargo bench --bench sinks` sends 300,000 events per scenario;
//! `C42FWD_BENCH_EVENTS=N` changes that, `C42FWD_BENCH_RELP_WINDOW=N` the RELP window
//! (default 128, the config default). Under `cargo test` (no `--bench` argument) it runs
//! a small smoke size, so the harness itself stays tested.

// Benches measure real elapsed time, outside any tokio clock: std's `Instant` is the
// right tool here; the product's ban on it (clippy.toml) is for code tests must pause.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use c42fwd::ack::{ack_set, AckWaiter, Outcome};
use c42fwd::config::{RelpOptions, Sink, SinkKind, TcpOptions, TlsOptions};
use c42fwd::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::event::{Batch, Event, SourceKind};
use c42fwd::metrics::Metrics;
use c42fwd::retry::BackoffPolicy;
use c42fwd::route::SinkBatch;
use c42fwd::sinks::{self, SinkContext};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 500;
const SCENARIOS: [&str; 4] = ["tcp", "tls", "relp", "relp-tls"];

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let events: usize = std::env::var("C42FWD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 300_000 } else { 2_000 });
    match std::env::var("C42FWD_BENCH_CHILD").ok().as_deref() {
        Some(which) => child(which, events),
        None => {
            for which in SCENARIOS {
                let status = std::process::Command::new(std::env::current_exe().expect("exe"))
                    .args(std::env::args().skip(1))
                    .env("C42FWD_BENCH_CHILD", which)
                    .env("C42FWD_BENCH_EVENTS", events.to_string())
                    .status()
                    .expect("run bench child");
                assert!(status.success(), "{which} bench failed: {status}");
            }
        }
    }
}

fn child(which: &str, events: usize) {
    let window: usize = std::env::var("C42FWD_BENCH_RELP_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let r = rt.block_on(run(which, events, window));
    let what = match which {
        "tcp" => "tcp, octet counting".to_string(),
        "tls" => "tls (rustls), octet counting".to_string(),
        "relp" => format!("relp, window {window}"),
        _ => format!("relp over tls, window {window}"),
    };
    println!(
        "sinks: {what}: {} events, {:.2} s, {:.0} events/s, {:.1} MB/s of records, peak RSS {:.1} MiB",
        r.events,
        r.elapsed.as_secs_f64(),
        r.events as f64 / r.elapsed.as_secs_f64(),
        r.record_bytes as f64 / r.elapsed.as_secs_f64() / 1e6,
        peak_rss_kib() as f64 / 1024.0
    );
}

struct Report {
    events: usize,
    elapsed: Duration,
    record_bytes: u64,
}

/// A CA file for the sink and the server's TLS acceptor, made with rcgen.
fn pki(dir: &Path) -> (std::path::PathBuf, TlsAcceptor) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("sign");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write ca");
    let chain = vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    (ca_file, TlsAcceptor::from(Arc::new(config)))
}

async fn run(which: &str, events: usize, window: usize) -> Report {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_file, acceptor) = pki(dir.path());
    let tls = which.ends_with("tls").then_some(TlsOptions {
        ca_file: Some(ca_file),
        ..TlsOptions::default()
    });
    let relp = which.starts_with("relp");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tls.is_some().then_some(acceptor);
    tokio::spawn(serve(listener, acceptor, relp));

    let kind = if relp {
        SinkKind::Relp(RelpOptions {
            host: "127.0.0.1".into(),
            port,
            connect_timeout: Duration::from_secs(5),
            window,
            ack_timeout: Duration::from_secs(30),
            tls,
        })
    } else {
        SinkKind::Tcp(TcpOptions {
            host: "127.0.0.1".into(),
            port,
            connect_timeout: Duration::from_secs(5),
            keepalive: None,
            tls,
        })
    };
    let cfg = Sink {
        name: which.to_string(),
        kind,
        encoding: EncoderOptions {
            format: Format::JsonRaw,
            syslog: SyslogStyle::Rfc5424,
            framing: if relp {
                Framing::None
            } else {
                Framing::OctetCounting
            },
            facility: 13,
            hostname: "bench-host".into(),
            app_name: "c42fwd".into(),
        },
        dead_letter_max_bytes: c42fwd::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry: BackoffPolicy::default(),
    };
    let (tx, rx) = mpsc::channel(cfg.queue_batches);
    let ctx = SinkContext {
        metrics: Arc::new(Metrics::new()),
        dead_letter_dir: dir.path().to_path_buf(),
        shutdown: CancellationToken::new(),
        reopen: Default::default(),
    };
    let sink = tokio::spawn(sinks::run(cfg, rx, ctx.clone()));

    let pool = event_pool();
    // Warm-up: one event opens the connection (TLS handshake, RELP `open`, and for
    // TCP/TLS the first-write linger of `src/sinks/tcp.rs`, half a second), so that the
    // clock measures the steady state.
    let (mut tokens, warm) = ack_set(1);
    tx.send(SinkBatch {
        batch: Arc::new(Batch {
            source: Arc::from("audit"),
            events: vec![pool[0].clone()],
        }),
        ack: tokens.pop().expect("token"),
    })
    .await
    .expect("sink queue open");
    assert_eq!(
        warm.wait().await,
        Outcome::Delivered,
        "warm-up not delivered"
    );
    let warm_bytes = ctx
        .metrics
        .sink_bytes
        .get_or_create(&c42fwd::metrics::label("sink", which))
        .get();
    let started = Instant::now();
    // Waiters are awaited by a second task so that the producer never waits for acks
    // (the queue bound paces it, as in the pipeline).
    let (wtx, mut wrx) = mpsc::unbounded_channel::<AckWaiter>();
    let checker = tokio::spawn(async move {
        while let Some(w) = wrx.recv().await {
            assert_eq!(
                w.wait().await,
                Outcome::Delivered,
                "a batch was not delivered"
            );
        }
    });
    let mut sent = 0;
    while sent < events {
        let n = BATCH.min(events - sent);
        let (mut tokens, waiter) = ack_set(1);
        let batch = Arc::new(Batch {
            source: Arc::from("audit"),
            events: (0..n)
                .map(|i| pool[(sent + i) % pool.len()].clone())
                .collect(),
        });
        tx.send(SinkBatch {
            batch,
            ack: tokens.pop().expect("token"),
        })
        .await
        .expect("sink queue open");
        wtx.send(waiter).expect("checker alive");
        sent += n;
    }
    drop(wtx);
    checker.await.expect("every batch delivered");
    let elapsed = started.elapsed();
    drop(tx);
    sink.await.expect("sink task").expect("sink ends cleanly");
    let record_bytes = ctx
        .metrics
        .sink_bytes
        .get_or_create(&c42fwd::metrics::label("sink", which))
        .get()
        - warm_bytes;
    Report {
        events,
        elapsed,
        record_bytes,
    }
}

/// 1,000 distinct events shaped like Audit Log events, cloned into batches.
fn event_pool() -> Vec<Event> {
    (0..1000)
        .map(|i| {
            let json = format!(
                r#"{{"type$":"audit_log::logged_in/1","actorId":"10000000000{i:05}","actorName":"user{i}@example.com","actorAgent":"Mozilla/5.0 (X11; Linux x86_64)","actorIpAddress":"10.0.{}.{}","actorType":"USER","timestamp":"2024-05-01T12:00:00.123Z","seq":{i}}}"#,
                i / 250,
                i % 250
            );
            let raw = serde_json::value::RawValue::from_string(json).expect("json");
            Event::new(SourceKind::AuditLog, raw, chrono::Utc::now())
        })
        .collect()
}

/// Accepts connections (one at a time is enough: the sink keeps one), with TLS when
/// given an acceptor, and reads (TCP) or answers (RELP) until the peer closes.
async fn serve(listener: TcpListener, acceptor: Option<TlsAcceptor>, relp: bool) {
    let received = Arc::new(AtomicU64::new(0));
    while let Ok((sock, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        let received = received.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(a) => {
                    let Ok(stream) = a.accept(sock).await else {
                        return;
                    };
                    respond(stream, relp, &received).await
                }
                None => respond(sock, relp, &received).await,
            }
        });
    }
}

async fn respond<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, relp: bool, received: &AtomicU64) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        received.fetch_add(n as u64, Ordering::Relaxed);
        if !relp {
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut used = 0;
        out.clear();
        while let Some((txnr, command, len)) = relp_frame(&pending[used..]) {
            used += len;
            match command.as_str() {
                "open" => {
                    let offers = "200 OK\nrelp_version=0\ncommands=syslog\n";
                    out.extend_from_slice(
                        format!("{txnr} rsp {} {offers}\n", offers.len()).as_bytes(),
                    )
                }
                "close" => {
                    out.extend_from_slice(format!("{txnr} rsp 0\n").as_bytes());
                    let _ = s.write_all(&out).await;
                    let _ = s.shutdown().await;
                    return;
                }
                _ => out.extend_from_slice(format!("{txnr} rsp 6 200 OK\n").as_bytes()),
            }
        }
        pending.drain(..used);
        if s.write_all(&out).await.is_err() || s.flush().await.is_err() {
            return;
        }
    }
}

/// `TXNR SP COMMAND SP DATALEN [SP DATA] LF` at the start of `b`: (txnr, command,
/// frame length), or `None` until the whole frame is there. The sink is trusted here.
fn relp_frame(b: &[u8]) -> Option<(String, String, usize)> {
    let sp1 = b.iter().position(|&c| c == b' ')?;
    let sp2 = sp1 + 1 + b[sp1 + 1..].iter().position(|&c| c == b' ')?;
    let end_len = sp2 + 1 + b[sp2 + 1..].iter().position(|&c| c == b' ' || c == b'\n')?;
    let len: usize = std::str::from_utf8(&b[sp2 + 1..end_len])
        .ok()?
        .parse()
        .ok()?;
    let total = if len == 0 {
        end_len + 1
    } else {
        end_len + 1 + len + 1
    };
    if b.len() < total {
        return None;
    }
    Some((
        String::from_utf8_lossy(&b[..sp1]).into_owned(),
        String::from_utf8_lossy(&b[sp1 + 1..sp2]).into_owned(),
        total,
    ))
}

/// The peak resident set of this process (`VmHWM`), KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
