//! Throughput of the HTTP-based sinks on loopback: the Splunk HEC sink (gzip on,
//! indexer acknowledgements on) to the in-test HEC server (`tests/it/hec/server.rs`,
//! counting only), and the generic HTTP sink (NDJSON, gzip) to a counting collector.
//!
//! The sink runs in this process, fed batches of 500 Audit Log events (a pool of
//! distinct events, cloned) through its bounded queue, exactly as the pipeline feeds
//! it; the clock stops when every batch's acknowledgement resolved as Delivered. Each
//! sink runs in its own child process, so that the peak RSS printed (`VmHWM`) is that
//! run's alone; it covers the sink, the in-process server and the producer. It
//! measures; it asserts nothing about speed.
//!
//! `cargo bench --bench http_sinks` sends 300,000 events per sink;
//! `C42FWD_BENCH_EVENTS=N` changes that, `C42FWD_BENCH_FORMAT=cef` encodes CEF instead
//! of raw JSON. The HEC sink runs at the config defaults unless told otherwise:
//! `C42FWD_BENCH_ACK_POLL=200ms` sets `ack_poll_interval`, `C42FWD_BENCH_ACK_INITIAL=5ms`
//! `ack_poll_initial`, `C42FWD_BENCH_PENDING=N` `max_pending_acks`,
//! `C42FWD_BENCH_MAX_EVENTS=N` `max_events`; `C42FWD_BENCH_ACK_DELAY=500ms` makes the
//! server confirm a request only that long after it came (an indexer that takes its
//! time; default: at once). `C42FWD_BENCH_SINKS=hec` runs only that sink. Each line
//! prints events/s, the child's CPU time (user + system, the in-process server and
//! producer included) per million events, and its peak RSS. Under `cargo test` (no
//! `--bench` argument) it runs a small smoke size, so the harness itself stays tested.

// Benches measure real elapsed time, outside any tokio clock: std's `Instant` is the
// right tool here; the product's ban on it (clippy.toml) is for code tests must pause.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "../tests/it/hec/server.rs"]
mod hec_server;

use c42fwd::ack::{ack_set, AckWaiter, Outcome};
use c42fwd::config::{
    HecOptions, HttpAuth, HttpBatching, HttpBody, HttpOptions, Sink, SinkKind, TlsOptions,
};
use c42fwd::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::event::{Batch, Event, SourceKind};
use c42fwd::metrics::Metrics;
use c42fwd::route::SinkBatch;
use c42fwd::secret::Secret;
use c42fwd::sinks::{self, SinkContext};
use hec_server::{HecServer, HecServerOptions};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 500;

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let events: usize = std::env::var("C42FWD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 300_000 } else { 5_000 });
    match std::env::var("C42FWD_BENCH_CHILD").ok().as_deref() {
        Some(which) => child(which, events),
        None => {
            // One child per sink: a clean peak RSS for each.
            let sinks = std::env::var("C42FWD_BENCH_SINKS").unwrap_or_else(|_| "hec,http".into());
            for which in sinks.split(',').map(str::trim).filter(|s| !s.is_empty()) {
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
    let format = match std::env::var("C42FWD_BENCH_FORMAT").as_deref() {
        Ok("cef") => Format::Cef,
        _ => Format::JsonRaw,
    };
    let duration = |var: &str, default: Duration| {
        std::env::var(var)
            .ok()
            .map(|v| humantime::parse_duration(&v).unwrap_or_else(|e| panic!("{var}: {e}")))
            .unwrap_or(default)
    };
    let number = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|e| panic!("{var}: {e}")))
            .unwrap_or(default)
    };
    let hec = HecKnobs {
        ack_poll: duration(
            "C42FWD_BENCH_ACK_POLL",
            c42fwd::config::HEC_ACK_POLL_INTERVAL,
        ),
        ack_initial: duration(
            "C42FWD_BENCH_ACK_INITIAL",
            c42fwd::config::HEC_ACK_POLL_INITIAL,
        ),
        ack_delay: duration("C42FWD_BENCH_ACK_DELAY", Duration::ZERO),
        pending: number("C42FWD_BENCH_PENDING", c42fwd::config::HEC_MAX_PENDING_ACKS),
        max_events: number("C42FWD_BENCH_MAX_EVENTS", 500),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let r = rt.block_on(run(which, events, format, &hec));
    let what = match which {
        "hec" => format!(
            "hec, gzip, indexer acks (poll {:?} backing off to {:?}, {} pending, {} events a request, indexed after {:?})",
            hec.ack_initial, hec.ack_poll, hec.pending, hec.max_events, hec.ack_delay
        ),
        _ => "http, ndjson, gzip".to_string(),
    };
    let cpu = cpu_secs();
    println!(
        "http_sinks: {what}, {:?}: {} events, {:.2} s, {:.0} events/s, {:.1} MB/s on the wire, \
         {:.2} CPU-s per million events, {} ack polls, peak RSS {:.1} MiB",
        format,
        r.events,
        r.elapsed.as_secs_f64(),
        r.events as f64 / r.elapsed.as_secs_f64(),
        r.wire_bytes as f64 / r.elapsed.as_secs_f64() / 1e6,
        cpu / (r.events as f64 / 1e6),
        r.ack_polls,
        peak_rss_kib() as f64 / 1024.0
    );
}

/// The HEC settings a run uses (the config defaults unless the environment says).
struct HecKnobs {
    ack_poll: Duration,
    ack_initial: Duration,
    ack_delay: Duration,
    pending: usize,
    max_events: usize,
}

struct Report {
    events: usize,
    elapsed: Duration,
    wire_bytes: u64,
    ack_polls: u64,
}

fn tls() -> TlsOptions {
    TlsOptions::default()
}

/// The config defaults (`max_events` 500, `max_bytes` 1 MiB, `max_wait` 1 s).
fn batching(max_events: usize) -> HttpBatching {
    HttpBatching {
        max_events,
        max_bytes: 1024 * 1024,
        max_wait: Duration::from_secs(1),
    }
}

/// A pool of distinct, realistic Audit Log events.
fn pool() -> Vec<Event> {
    (0..1000)
        .map(|i| {
            let ts = format!("2024-05-01T12:{:02}:{:02}.{:03}Z", (i / 60) % 60, i % 60, i);
            let json = serde_json::json!({
                "type$": "audit_log::file_downloaded/1",
                "actorId": format!("9100000000{i:05}"),
                "actorName": format!("analyst{i}@example.com"),
                "actorAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
                "actorIpAddress": format!("10.1.{}.{}", i / 250, i % 250),
                "timestamp": ts,
                "actorType": "USER",
                "fileName": format!("quarterly-report-{i}.xlsx"),
                "fileSize": 1_048_576 + i,
                "sha256": format!("{:064x}", i * 7919),
                "md5": format!("{:032x}", i * 104729),
            });
            let occurred = chrono::DateTime::parse_from_rfc3339(&ts)
                .unwrap()
                .with_timezone(&chrono::Utc);
            Event::new(
                SourceKind::AuditLog,
                serde_json::value::RawValue::from_string(json.to_string()).unwrap(),
                occurred,
            )
        })
        .collect()
}

async fn run(which: &str, events: usize, format: Format, knobs: &HecKnobs) -> Report {
    let encoding = EncoderOptions {
        format,
        syslog: SyslogStyle::None,
        framing: Framing::None,
        facility: 13,
        hostname: "bench".into(),
        app_name: "c42fwd".into(),
    };
    // Keep the servers alive for the whole run.
    let mut _hec = None;
    let mut _collector = None;
    let kind = match which {
        "hec" => {
            let opts = HecServerOptions {
                store: false,
                ack_delay: knobs.ack_delay,
                ..Default::default()
            };
            let token = opts.token.clone();
            let server = HecServer::start(opts).await;
            let kind = SinkKind::Hec(HecOptions {
                endpoint: server.endpoint().parse().unwrap(),
                token: Secret::new(token),
                index: Some("code42".into()),
                source: None,
                sourcetype: Some("code42:audit".into()),
                host: "bench".into(),
                channel: None,
                gzip: true,
                batching: batching(knobs.max_events),
                indexer_ack: true,
                ack_poll_interval: knobs.ack_poll,
                ack_poll_initial: knobs.ack_initial,
                max_pending_acks: knobs.pending,
                ack_timeout: Duration::from_secs(300),
                request_timeout: Duration::from_secs(30),
                tls: tls(),
            });
            _hec = Some(server);
            kind
        }
        _ => {
            let (url, task) = counting_collector().await;
            _collector = Some(task);
            SinkKind::Http(HttpOptions {
                url: url.parse().unwrap(),
                body: HttpBody::NdJson,
                headers: Vec::new(),
                auth: HttpAuth::Bearer(Secret::new("bench-token")),
                gzip: true,
                batching: batching(500),
                request_timeout: Duration::from_secs(30),
                tls: tls(),
            })
        }
    };
    let cfg = Sink {
        name: which.into(),
        kind,
        encoding,
        dead_letter_max_bytes: c42fwd::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry: Default::default(),
    };
    let metrics = Arc::new(Metrics::new());
    let dir = tempfile::tempdir().unwrap();
    let ctx = SinkContext {
        metrics: metrics.clone(),
        dead_letter_dir: dir.path().to_path_buf(),
        shutdown: CancellationToken::new(),
        reopen: Default::default(),
    };
    let (tx, rx) = mpsc::channel(cfg.queue_batches);
    let started = Instant::now();
    let sink = tokio::spawn(sinks::run(cfg, rx, ctx));
    let (wtx, mut wrx) = mpsc::channel::<AckWaiter>(4096);
    let waiting = tokio::spawn(async move {
        while let Some(w) = wrx.recv().await {
            assert_eq!(
                w.wait().await,
                Outcome::Delivered,
                "a batch was not delivered"
            );
        }
    });
    let pool = pool();
    let mut sent = 0;
    while sent < events {
        let n = BATCH.min(events - sent);
        let batch: Vec<Event> = (sent..sent + n)
            .map(|i| pool[i % pool.len()].clone())
            .collect();
        sent += n;
        let (mut tokens, waiter) = ack_set(1);
        let sb = SinkBatch {
            batch: Arc::new(Batch {
                source: Arc::from("audit"),
                events: batch,
            }),
            ack: tokens.pop().unwrap(),
        };
        tx.send(sb).await.expect("sink running");
        wtx.send(waiter).await.expect("waiter task running");
    }
    drop(tx);
    drop(wtx);
    waiting.await.expect("every batch delivered");
    let elapsed = started.elapsed();
    sink.await.expect("sink task").expect("sink ends cleanly");
    let l = c42fwd::metrics::label("sink", which);
    assert_eq!(metrics.sink_events.get_or_create(&l).get(), events as u64);
    let wire_bytes = metrics.sink_bytes.get_or_create(&l).get();
    let ack_polls = _hec.as_ref().map_or(0, |s| s.stats().ack_polls);
    Report {
        events,
        elapsed,
        wire_bytes,
        ack_polls,
    }
}

/// An HTTP endpoint that gunzips and counts NDJSON lines.
async fn counting_collector() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    let lines = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/ingest",
        axum::routing::post(move |body: axum::body::Bytes| {
            let lines = lines.clone();
            async move {
                let mut plain = Vec::new();
                let ok = flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut plain)
                    .is_ok();
                let n = memchr::memchr_iter(b'\n', &plain).count();
                lines.fetch_add(n as u64, Ordering::Relaxed);
                if ok {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::BAD_REQUEST
                }
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

/// User + system CPU time of this process: fields 14 and 15 of `/proc/self/stat`, in
/// clock ticks of USER_HZ (100 on Linux).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces: count from after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `rest` starts at field 3, so fields 14 and 15 are at 11 and 12.
    (ticks(11) + ticks(12)) as f64 / 100.0
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
