//! End-to-end throughput harness: emulated tenant -> `c42fwd run` -> TCP receiver.
//!
//! Runs the emulator in this process with a backlog of events, starts the real
//! `c42fwd` binary as a child process with a config that reads the whole backlog and
//! sends it as CEF + RFC 5424, octet-counted, to a TCP receiver in this process, and
//! prints events/s, the child's CPU time (user + system, from /proc, taken when the last
//! event arrived) per million events, and its peak RSS (`VmHWM` from /proc). It measures; it asserts
//! nothing about speed.
//!
//! `cargo bench --bench throughput` runs 1,000,000 Audit Log events;
//! `C42FWD_BENCH_EVENTS=N` changes the count, `C42FWD_BENCH_SOURCE=alerts` (or
//! `sync_log`, `file_events`, or `sessions`: N sessions, those with alerts delivered) reads that source instead, `C42FWD_BENCH_FORMAT=json|leef` changes the
//! body, `C42FWD_BENCH_QUEUE=N` the sink's queue (batches), `C42FWD_BENCH_PAGE=N` the page size, `C42FWD_BENCH_SOURCE_KEYS` adds TOML lines to the
//! source (for example `reconcile = false`), `C42FWD_BENCH_TENANT_KEYS` to the tenant
//! (for example `max_concurrent_requests = 4`), `C42FWD_BENCH_PERF=FILE` samples the
//! child with `perf record -g` into FILE (the figures then include perf's overhead),
//! `C42FWD_BENCH_BIN=PATH` runs another build of c42fwd (or a wrapper that execs one,
//! such as a heap profiler). Under `cargo test` (no
//! `--bench` argument) it runs a small smoke size, so the harness itself stays tested.

// Benches measure real elapsed time, outside any tokio clock: std's `Instant` is the
// right tool here; the product's ban on it (clippy.toml) is for code tests must pause.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{cpu_secs, vm_hwm_kib};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let events: u64 = std::env::var("C42FWD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 1_000_000 } else { 20_000 });
    let format = std::env::var("C42FWD_BENCH_FORMAT").unwrap_or_else(|_| "cef".into());
    let source = std::env::var("C42FWD_BENCH_SOURCE").unwrap_or_else(|_| "audit_log".into());
    let queue: u32 = std::env::var("C42FWD_BENCH_QUEUE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    // The real API answers in hundreds of milliseconds; `C42FWD_BENCH_LATENCY=250ms`
    // makes every data request of the emulator wait that long.
    let latency = std::env::var("C42FWD_BENCH_LATENCY")
        .ok()
        .map(|v| {
            humantime::parse_duration(&v).expect("C42FWD_BENCH_LATENCY: a duration such as 250ms")
        })
        .unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(run(events, &format, &source, queue, latency));
    println!(
        "throughput: {} {source} events, format {format}, queue {queue}, api latency {latency:?}, {:.2} s, {:.0} events/s, {:.1} MB/s, c42fwd CPU {:.2} s ({:.2} CPU-s per million events), peak RSS {:.1} MiB",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events as f64 / report.elapsed.as_secs_f64(),
        report.bytes as f64 / report.elapsed.as_secs_f64() / 1e6,
        report.cpu_secs,
        report.cpu_secs * 1e6 / report.events.max(1) as f64,
        report.peak_rss_kib as f64 / 1024.0
    );
}

struct Report {
    events: u64,
    bytes: u64,
    elapsed: Duration,
    /// User + system CPU seconds of the c42fwd process when the last event arrived.
    cpu_secs: f64,
    peak_rss_kib: u64,
}

async fn run(events: u64, format: &str, source: &str, queue: u32, latency: Duration) -> Report {
    // The backlog occurred over the last two hours and is fully visible (no live
    // stream); only the measured source has one.
    let mut opts = c42fwd_emulator::EmulatorOptions {
        backlog: 0,
        backlog_span: Duration::from_secs(2 * 3600),
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_span: Duration::from_secs(2 * 3600),
        sync_log_rate: 0.0,
        file_event_backlog: 0,
        file_event_rate: 0.0,
        lag: Duration::from_millis(0),
        latency,
        ..Default::default()
    };
    let page_size = match source {
        "audit_log" => {
            opts.backlog = events;
            10_000
        }
        "alerts" => {
            opts.alert_backlog = events;
            500
        }
        "sync_log" => {
            opts.sync_log_backlog = events;
            1_000
        }
        "sessions" => {
            // One version each for the whole run: every session is read once.
            opts.session_backlog = events;
            opts.session_update_every = Duration::from_secs(365 * 86_400);
            50
        }
        "file_events" => {
            opts.file_event_backlog = events;
            10_000
        }
        other => panic!(
            "C42FWD_BENCH_SOURCE={other}: use audit_log, alerts, sync_log, sessions or file_events"
        ),
    };
    let page_size: u32 = std::env::var("C42FWD_BENCH_PAGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(page_size);
    let emu = c42fwd_emulator::start(
        opts.clone(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .expect("emulator");
    // Sessions: the source asks for those that triggered an alert (the API's default).
    let events = if source == "sessions" {
        let from = emu.started_at() - chrono::Duration::hours(3);
        emu.session_versions_between(from, emu.started_at(), true)
            .len() as u64
    } else {
        events
    };

    let rx = common::OctetReceiver::start(Some(events)).await;
    let (port, received, bytes, done) = (rx.port, rx.received, rx.bytes, rx.done);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c42fwd.toml");
    let mut f = std::fs::File::create(&config).unwrap();
    write!(
        f,
        r#"
state_dir = "{state}"

[tenants.emu]
api = "incydr"
base_url = "{base}"
client_id = "{id}"
client_secret = "{secret}"
{tenant_keys}

[sources.audit]
type = "{source}"
tenant = "emu"
start = "3h"
lag = "{lag}"
poll_interval = "1s"
page_size = {page_size}
{source_keys}

[sinks.tcp]
type = "tcp"
host = "127.0.0.1"
port = {port}
format = "{format}"
queue_batches = {queue}

[[routes]]
sources = ["audit"]
sinks = ["tcp"]
"#,
        source_keys = std::env::var("C42FWD_BENCH_SOURCE_KEYS").unwrap_or_default(),
        tenant_keys = std::env::var("C42FWD_BENCH_TENANT_KEYS").unwrap_or_default(),
        // A sessions source's lag is its update window, at least a minute.
        lag = if source == "sessions" { "1m" } else { "1s" },
        state = dir.path().join("state").display(),
        base = emu.base_url(),
        id = opts.client_id,
        secret = opts.client_secret,
        format = match format {
            "json" | "leef" | "json_normalized" => format,
            _ => "cef",
        },
    )
    .unwrap();
    drop(f);

    let start = Instant::now();
    let bin =
        std::env::var("C42FWD_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_c42fwd").into());
    let mut child = Command::new(bin)
        .args(["--log", "warn", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .spawn()
        .expect("start c42fwd");
    let pid = child.id();
    let perf = std::env::var("C42FWD_BENCH_PERF").ok().map(|file| {
        Command::new("perf")
            .args(["record", "-g", "-F", "499", "-q", "-o", &file, "-p"])
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("start perf")
    });

    // Sample the peak RSS while it runs (VmHWM is the kernel's own high-water mark, so
    // sampling only has to catch the process alive).
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = vm_hwm_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let waited = tokio::time::timeout(Duration::from_secs(1800), done.notified()).await;
    let elapsed = start.elapsed();
    let cpu_secs = cpu_secs(pid).unwrap_or(f64::NAN);
    if let Some(kib) = vm_hwm_kib(pid) {
        peak.fetch_max(kib, Ordering::Relaxed);
    }
    sampler.abort();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.wait().expect("wait for c42fwd");
    if let Some(mut p) = perf {
        // perf ends with the process it samples.
        let _ = p.wait();
    }
    let served = emu.stats();
    println!(
        "emulator: {} events served in {} requests ({:.2} served per event delivered)",
        served.events_served,
        served.requests.values().sum::<u64>(),
        served.events_served as f64 / received.load(Ordering::Relaxed).max(1) as f64
    );
    emu.shutdown().await;
    assert!(
        waited.is_ok(),
        "only {} of {events} events arrived",
        received.load(Ordering::Relaxed)
    );
    assert!(status.success(), "c42fwd exited with {status}");
    Report {
        events: received.load(Ordering::Relaxed),
        bytes: bytes.load(Ordering::Relaxed),
        elapsed,
        cpu_secs,
        peak_rss_kib: peak.load(Ordering::Relaxed),
    }
}
