//! Throughput of the Kafka sink into a local Kafka-compatible broker: Tansu (in
//! memory, its own process on the same cores; `scripts/test.sh` installs it), a topic
//! of one partition (the default key is the source, so one source is one partition).
//!
//! The sink runs in this process, fed batches of 1,000 Audit Log events (a pool of
//! distinct events, cloned; the default page size) through its bounded queue, as the
//! pipeline feeds it; the clock stops when every batch's acknowledgement resolved as
//! Delivered, that is when the broker acknowledged every message (`acks = all`,
//! idempotent). Each run is a child process of its own, so that the peak RSS printed
//! (`VmHWM`) is that run's alone; its CPU time is this process's (sink, librdkafka's
//! threads, the producer of batches), not the broker's. It measures; it asserts nothing
//! about speed.
//!
//! `cargo bench --bench kafka` sends 1,000,000 events for each of CEF and JSON, each
//! with zstd and without compression; `C42FWD_BENCH_EVENTS=N` changes the count,
//! `C42FWD_BENCH_RUNS=cef:zstd,json:none` the runs. Under `cargo test` (no `--bench`
//! argument) it runs a small smoke size, so the harness itself stays tested. Without
//! a tansu binary (`$TANSU`, cargo's bin directory or `PATH`) it says so and fails.

// Benches measure real elapsed time, outside any tokio clock: std's `Instant` is the
// right tool here; the product's ban on it (clippy.toml) is for code tests must pause.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use c42fwd::ack::{ack_set, Outcome};
use c42fwd::config::{
    KafkaAcks, KafkaCompression, KafkaKey, KafkaOptions, OversizePolicy, Sink, SinkKind,
    TopicTemplate,
};
use c42fwd::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::event::{Batch, Event, SourceKind};
use c42fwd::metrics::Metrics;
use c42fwd::route::SinkBatch;
use c42fwd::sinks::{self, SinkContext};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 1000;

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let events: usize = std::env::var("C42FWD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 1_000_000 } else { 5_000 });
    match std::env::var("C42FWD_BENCH_CHILD").ok() {
        Some(run) => child(&run, events),
        None => {
            let runs = std::env::var("C42FWD_BENCH_RUNS").unwrap_or_else(|_| {
                if bench_mode {
                    "cef:zstd,cef:none,json:zstd,json:none".into()
                } else {
                    "cef:zstd".into()
                }
            });
            for run in runs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let status = Command::new(std::env::current_exe().expect("exe"))
                    .args(std::env::args().skip(1))
                    .env("C42FWD_BENCH_CHILD", run)
                    .env("C42FWD_BENCH_EVENTS", events.to_string())
                    .status()
                    .expect("run bench child");
                assert!(status.success(), "{run} bench failed: {status}");
            }
        }
    }
}

fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    match home.map(|h| h.join("bin").join("tansu")) {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("tansu"),
    }
}

/// The broker, killed when dropped.
struct Broker(std::process::Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker() -> (Broker, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let bin = tansu_binary();
    let child = Command::new(&bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{}` ({e}): install it with `cargo install tansu --locked --features dynostore`",
                bin.display()
            )
        });
    let broker = Broker(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = Command::new(&bin)
        .args([
            "topic",
            "create",
            "c42-bench",
            "--partitions",
            "1",
            "--broker",
            &url,
        ])
        .status()
        .expect("tansu topic create");
    assert!(ok.success(), "tansu topic create failed");
    (broker, format!("127.0.0.1:{port}"))
}

fn child(run: &str, events: usize) {
    let (format, compression) = run.split_once(':').unwrap_or((run, "zstd"));
    let format = match format {
        "json" => Format::JsonRaw,
        "cef" => Format::Cef,
        other => panic!("format {other}: use cef or json"),
    };
    let compression = match compression {
        "zstd" => KafkaCompression::Zstd,
        "lz4" => KafkaCompression::Lz4,
        "gzip" => KafkaCompression::Gzip,
        "none" => KafkaCompression::None,
        other => panic!("compression {other}"),
    };
    let (_broker, bootstrap) = start_broker();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (n, elapsed) = rt.block_on(send(&bootstrap, events, format, compression));
    let cpu = cpu_secs();
    println!(
        "kafka: {format:?}, {}: {n} events, {:.2} s, {:.0} events/s, {:.2} CPU-s per million events \
         (c42fwd side), peak RSS {:.1} MiB",
        compression.as_str(),
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        cpu / (n as f64 / 1e6),
        peak_rss_kib() as f64 / 1024.0
    );
}

async fn send(
    bootstrap: &str,
    events: usize,
    format: Format,
    compression: KafkaCompression,
) -> (usize, Duration) {
    let cfg = Sink {
        name: "kafka".into(),
        kind: SinkKind::Kafka(KafkaOptions {
            brokers: vec![bootstrap.to_string()],
            topic: TopicTemplate::parse("c42-bench").expect("topic"),
            key: KafkaKey::Source,
            acks: KafkaAcks::All,
            idempotent: true,
            compression,
            linger: Duration::from_millis(5),
            batch_max_messages: 10_000,
            batch_max_bytes: 1_000_000,
            max_message_bytes: 1_000_000,
            oversize: OversizePolicy::DeadLetter,
            delivery_timeout: Duration::from_secs(120),
            client_id: "c42fwd-bench".into(),
            tls: None,
            sasl: None,
            tenants: Default::default(),
        }),
        encoding: EncoderOptions {
            format,
            syslog: SyslogStyle::None,
            framing: Framing::None,
            facility: 13,
            hostname: "bench".into(),
            app_name: "c42fwd".into(),
        },
        queue_batches: 4,
        retry: Default::default(),
        dead_letter_max_bytes: sinks::DEAD_LETTER_MAX_BYTES,
    };
    let dead_letter = tempfile::tempdir().expect("tempdir");
    let ctx = SinkContext {
        metrics: Arc::new(Metrics::new()),
        dead_letter_dir: dead_letter.path().to_path_buf(),
        shutdown: CancellationToken::new(),
        reopen: Default::default(),
    };
    let (tx, rx) = mpsc::channel(cfg.queue_batches);
    let sink = tokio::spawn(sinks::run(cfg, rx, ctx));
    let pool = pool();
    let started = Instant::now();
    let batches = events.div_ceil(BATCH);
    let producer = tokio::spawn(async move {
        let mut waiters = Vec::with_capacity(batches);
        for b in 0..batches {
            let n = BATCH.min(events - b * BATCH);
            let evs: Vec<Event> = (0..n)
                .map(|i| pool[(b * BATCH + i) % pool.len()].clone())
                .collect();
            let (mut tokens, waiter) = ack_set(1);
            let batch = Arc::new(Batch {
                source: Arc::from("audit"),
                events: evs,
            });
            let ack = tokens.pop().expect("one token");
            if tx.send(SinkBatch { batch, ack }).await.is_err() {
                panic!("the sink stopped");
            }
            waiters.push(waiter);
        }
        waiters
    });
    let waiters = producer.await.expect("producer");
    for w in waiters {
        assert_eq!(
            w.wait().await,
            Outcome::Delivered,
            "a batch was not delivered"
        );
    }
    let elapsed = started.elapsed();
    sink.abort();
    (events, elapsed)
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

/// User + system CPU time of this process: fields 14 and 15 of `/proc/self/stat`, in
/// clock ticks of USER_HZ (100 on Linux).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
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
