//! Replay throughput harness: an archived export -> `c42fwd replay` -> TCP receiver.
//!
//! Writes a JSON-lines file and an API CSV export of the emulator's events (1,000,000
//! each under `cargo bench --bench replay`), replays each with the real `c42fwd`
//! binary as CEF + RFC 5424, octet-counted, to a TCP receiver in this process, and
//! prints records/s, the child's CPU time (user + system, from /proc, read when it has
//! exited and not yet been reaped) and its peak RSS (`VmHWM`, sampled while it runs).
//! Each file runs twice: with `--dedupe` (the default) and with `--no-dedupe`. It
//! measures; it asserts nothing about speed.
//!
//! `C42FWD_BENCH_EVENTS=N` changes the count. Under `cargo test` (no `--bench`
//! argument) it runs a small smoke size, so the harness itself stays tested.
//! `C42FWD_BENCH_DIR=DIR` writes the exports into DIR and reuses them when they are
//! there with the same count (generating a million events takes a while);
//! `C42FWD_BENCH_ONLY=json|csv` and `C42FWD_BENCH_DEDUPE=on|off` run one variant;
//! `C42FWD_BENCH_BIN=PATH` runs another build of c42fwd (an older one, to compare);
//! `C42FWD_BENCH_PERF=PREFIX` samples each run with `perf record -g` into
//! `PREFIX-<variant>.data` (the figures then include perf's overhead).

// Benches measure real elapsed time, outside any tokio clock: std's `Instant` is the
// right tool here; the product's ban on it (clippy.toml) is for code tests must pause.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use c42fwd_emulator::ExportFormat;
mod common;

use common::{cpu_secs, state, vm_hwm_kib};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let events: u64 = std::env::var("C42FWD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 1_000_000 } else { 5_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let keep = std::env::var_os("C42FWD_BENCH_DIR").map(std::path::PathBuf::from);
        let dir = keep.as_deref().unwrap_or(tmp.path());
        let (jsonl, csv, n) = exports(dir, events).await;
        let only = std::env::var("C42FWD_BENCH_ONLY").unwrap_or_default();
        let dedupe_only = std::env::var("C42FWD_BENCH_DEDUPE").unwrap_or_default();
        for (name, file) in [("json lines", &jsonl), ("api csv", &csv)] {
            if !only.is_empty() && !name.contains(only.as_str()) {
                continue;
            }
            for dedupe in ["--dedupe", "--no-dedupe"] {
                match dedupe_only.as_str() {
                    "on" if dedupe != "--dedupe" => continue,
                    "off" if dedupe != "--no-dedupe" => continue,
                    _ => {}
                }
                let r = run(tmp.path(), file, n, dedupe).await;
                println!(
                    "replay: {n} records, {name} ({} MiB), {dedupe}, CEF + RFC 5424 over TCP: {:.2} s, {:.0} records/s, c42fwd CPU {:.2} s ({:.2} CPU-s per million records), peak RSS {:.1} MiB",
                    std::fs::metadata(file).map_or(0, |m| m.len()) >> 20,
                    r.elapsed.as_secs_f64(),
                    n as f64 / r.elapsed.as_secs_f64(),
                    r.cpu_secs,
                    r.cpu_secs * 1e6 / n.max(1) as f64,
                    r.peak_rss_kib as f64 / 1024.0
                );
            }
        }
    });
}

/// The exports of `events` events in `dir`: reused when a run before wrote them for
/// the same count, written otherwise.
async fn exports(dir: &Path, events: u64) -> (std::path::PathBuf, std::path::PathBuf, u64) {
    let marker = dir.join("exports.count");
    if let Ok(n) = std::fs::read_to_string(&marker) {
        if n.trim().parse::<u64>().ok() == Some(events) {
            let n = std::fs::read_to_string(dir.join("exports.written")).unwrap();
            return (
                dir.join("audit.jsonl"),
                dir.join("audit.csv"),
                n.trim().parse().unwrap(),
            );
        }
    }
    let (j, c, n) = write_exports(dir, events).await;
    std::fs::write(dir.join("exports.written"), n.to_string()).unwrap();
    std::fs::write(&marker, events.to_string()).unwrap();
    (j, c, n)
}

/// Writes `events` Audit Log events as JSON lines and as an API CSV export; returns
/// both paths and the count written.
async fn write_exports(dir: &Path, events: u64) -> (std::path::PathBuf, std::path::PathBuf, u64) {
    let opts = c42fwd_emulator::EmulatorOptions {
        backlog: events,
        backlog_span: Duration::from_secs(2 * 3600),
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        lag: Duration::from_millis(0),
        ..Default::default()
    };
    let emu = c42fwd_emulator::start(
        opts,
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .expect("emulator");
    let end = emu.started_at() + chrono::Duration::seconds(1);
    let start = end - chrono::Duration::hours(3);
    let jsonl = dir.join("audit.jsonl");
    let csv = dir.join("audit.csv");
    let mut j = std::io::BufWriter::new(std::fs::File::create(&jsonl).unwrap());
    let mut c = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    let mut n = 0u64;
    // In slices of ten minutes: never the whole export in memory.
    let mut at = start;
    let mut first = true;
    while at < end {
        let to = (at + chrono::Duration::minutes(10)).min(end);
        for e in emu.events_between(at, to) {
            j.write_all(e.as_bytes()).unwrap();
            j.write_all(b"\n").unwrap();
            n += 1;
        }
        let part = emu.audit_export_between(at, to, ExportFormat::Csv);
        let body = if first {
            &part[..]
        } else {
            // Every slice starts with the header line.
            part.split_once('\n').map_or("", |(_, rest)| rest)
        };
        c.write_all(body.as_bytes()).unwrap();
        first = false;
        at = to;
    }
    j.flush().unwrap();
    c.flush().unwrap();
    emu.shutdown().await;
    (jsonl, csv, n)
}

struct Report {
    elapsed: Duration,
    cpu_secs: f64,
    peak_rss_kib: u64,
}

async fn run(dir: &Path, file: &Path, n: u64, dedupe: &str) -> Report {
    let rx = common::OctetReceiver::start(Some(n)).await;
    let (port, received, done, rx_task) = (rx.port, rx.received, rx.done, rx.task);
    let run_dir = tempfile::tempdir_in(dir).unwrap();
    let config = run_dir.path().join("replay.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"

[tenants.idle]
api = "incydr"
base_url = "https://127.0.0.1:9"
client_id = "bench"
client_secret = "not-used"

[sources.idle]
type = "audit_log"
tenant = "idle"

[sinks.tcp]
type = "tcp"
host = "127.0.0.1"
port = {port}
format = "cef"

[[routes]]
sources = ["idle"]
sinks = ["tcp"]
"#,
            state = run_dir.path().join("state").display()
        ),
    )
    .unwrap();
    let start = Instant::now();
    let bin =
        std::env::var_os("C42FWD_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_c42fwd").into());
    let mut child = Command::new(bin)
        .args([
            "--log",
            "warn",
            "replay",
            "--progress",
            "none",
            dedupe,
            "--config",
        ])
        .arg(&config)
        .arg(file)
        .stdout(Stdio::null())
        .spawn()
        .expect("start c42fwd");
    let pid = child.id();
    let perf = std::env::var("C42FWD_BENCH_PERF").ok().map(|prefix| {
        let variant = format!(
            "{}{dedupe}",
            file.file_stem().and_then(|s| s.to_str()).unwrap_or("file")
        );
        Command::new("perf")
            .args(["record", "-g", "-F", "499", "-q", "-o"])
            .arg(format!("{prefix}-{variant}.data"))
            .arg("-p")
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("start perf")
    });
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = vm_hwm_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let waited = tokio::time::timeout(Duration::from_secs(1800), done.notified()).await;
    // Until it is reaped, an exited child's /proc/<pid>/stat keeps its CPU times.
    let (elapsed, cpu) = loop {
        if state(pid) == Some('Z') {
            break (start.elapsed(), cpu_secs(pid).unwrap_or(f64::NAN));
        }
        if let Some(kib) = vm_hwm_kib(pid) {
            peak.fetch_max(kib, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    sampler.abort();
    rx_task.abort();
    let status = child.wait().expect("wait for c42fwd");
    if let Some(mut p) = perf {
        // perf ends with the process it samples.
        let _ = p.wait();
    }
    assert!(
        waited.is_ok(),
        "only {} of {n} records arrived",
        received.load(Ordering::Relaxed)
    );
    assert!(status.success(), "c42fwd replay exited with {status}");
    Report {
        elapsed,
        cpu_secs: cpu,
        peak_rss_kib: peak.load(Ordering::Relaxed),
    }
}
