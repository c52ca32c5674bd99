//! Live harness: an emulated tenant with a live Audit Log stream -> `c42fwd run` with the
//! default `lag` and `poll_interval` -> TCP receiver, for a fixed duration.
//!
//! It measures what a steady daemon costs the API: events forwarded (received by the
//! TCP receiver), records the emulator served, the read amplification (records served
//! per event forwarded), the requests per endpoint, and the child's CPU time and peak
//! RSS (from /proc). It asserts nothing about speed or amplification.
//!
//! `cargo bench --bench live` runs 5 minutes; `C42FWD_BENCH_LIVE=30m` changes the
//! duration, `C42FWD_BENCH_RATE=N` the events per second (200), `C42FWD_BENCH_LATENCY=250ms`
//! the emulator's latency per data request (0), `C42FWD_BENCH_EMU_LAG=5s` the emulator's
//! ingestion lag (its default, 2 minutes: 70% of events show up within a tenth of it,
//! the others up to all of it), `C42FWD_BENCH_BIN=PATH` runs another build of c42fwd.
//! Under `cargo test` (no `--bench` argument) it runs a few seconds, reading a small
//! backlog without ingestion lag, so the harness itself stays tested.

// Benches measure real elapsed time, outside any tokio clock: std's `Instant` is the
// right tool here; the product's ban on it (clippy.toml) is for code tests must pause.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{cpu_secs, vm_hwm_kib};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn duration_var(name: &str) -> Option<Duration> {
    std::env::var(name).ok().map(|v| {
        humantime::parse_duration(&v)
            .unwrap_or_else(|e| panic!("{name}: a duration such as 5m or 250ms: {e}"))
    })
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let run_for = duration_var("C42FWD_BENCH_LIVE").unwrap_or(if bench_mode {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(4)
    });
    let rate: f64 = std::env::var("C42FWD_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200.0);
    let latency = duration_var("C42FWD_BENCH_LATENCY").unwrap_or_default();
    // The smoke run has time for one poll only: it reads a small backlog, visible at once.
    let emu_lag = duration_var("C42FWD_BENCH_EMU_LAG").unwrap_or(if bench_mode {
        c42fwd_emulator::EmulatorOptions::default().lag
    } else {
        Duration::ZERO
    });
    let backlog = if bench_mode { 0 } else { 1_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let r = rt.block_on(run(run_for, rate, latency, emu_lag, backlog));
    let requests: Vec<String> = r
        .requests
        .iter()
        .map(|(route, n)| format!("{route} {n}"))
        .collect();
    println!(
        "live: {:?} at {rate} events/s, emulator lag {emu_lag:?}, api latency {latency:?}, c42fwd lag and poll_interval at their defaults: {} events forwarded, {} records served, read amplification {:.2}; requests: {}; c42fwd CPU {:.2} s ({:.2} CPU-s per million events forwarded), peak RSS {:.1} MiB",
        run_for,
        r.forwarded,
        r.served,
        r.served as f64 / r.forwarded.max(1) as f64,
        requests.join(", "),
        r.cpu_secs,
        r.cpu_secs * 1e6 / r.forwarded.max(1) as f64,
        r.peak_rss_kib as f64 / 1024.0
    );
}

struct Report {
    forwarded: u64,
    served: u64,
    requests: std::collections::BTreeMap<String, u64>,
    cpu_secs: f64,
    peak_rss_kib: u64,
}

async fn run(
    run_for: Duration,
    rate: f64,
    latency: Duration,
    emu_lag: Duration,
    backlog: u64,
) -> Report {
    let opts = c42fwd_emulator::EmulatorOptions {
        backlog,
        backlog_span: Duration::from_secs(30),
        rate,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        file_event_backlog: 0,
        file_event_rate: 0.0,
        lag: emu_lag,
        latency,
        ..Default::default()
    };
    let emu = c42fwd_emulator::start(
        opts.clone(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .expect("emulator");

    let rx = common::OctetReceiver::start(None).await;
    let (port, received) = (rx.port, rx.received);

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

[sources.audit]
type = "audit_log"
tenant = "emu"
start = "1m"

[sinks.tcp]
type = "tcp"
host = "127.0.0.1"
port = {port}
format = "cef"

[[routes]]
sources = ["audit"]
sinks = ["tcp"]
"#,
        state = dir.path().join("state").display(),
        base = emu.base_url(),
        id = opts.client_id,
        secret = opts.client_secret,
    )
    .unwrap();
    drop(f);

    let bin =
        std::env::var("C42FWD_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_c42fwd").into());
    let mut child = Command::new(bin)
        .args(["--log", "warn", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .spawn()
        .expect("start c42fwd");
    let pid = child.id();
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < run_for {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu_secs = cpu_secs(pid).unwrap_or(f64::NAN);
    if let Some(kib) = vm_hwm_kib(pid) {
        peak = peak.max(kib);
    }
    let stats = emu.stats();
    let forwarded = received.load(Ordering::Relaxed);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.wait().expect("wait for c42fwd");
    emu.shutdown().await;
    assert!(status.success(), "c42fwd exited with {status}");
    assert!(forwarded > 0, "no event arrived in {run_for:?}");
    Report {
        forwarded,
        served: stats.events_served,
        requests: stats.requests,
        cpu_secs,
        peak_rss_kib: peak,
    }
}
