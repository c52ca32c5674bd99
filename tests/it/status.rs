//! Catch-up feedback and `c42fwd status`, with the real binary against the emulator: a
//! source with a backlog read in small pages, slowed by the API's rate limit, logs that
//! it is behind, its progress every 10 s and exactly one "caught up" line; `c42fwd
//! status` shows its source and sink with the figures of the run (also as JSON); against
//! a stopped daemon, or a configuration without metrics, it fails naming the address.

use crate::support::config::{emu_tenant, file_sink_from_audit, head, METRICS_ON_A_FREE_PORT};
use crate::support::daemon::{c42fwd, log_path, log_tail, start_emulator, Daemon};
use crate::support::metrics::{metric, scrape};
use crate::support::{file_records, multiset, wait_for};
use c42fwd_emulator::{EmulatorOptions, FaultOptions};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const BACKLOG: u64 = 1000;
const BEHIND: &str = "source is behind the lag window, catching up";
const PROGRESS: &str = "source catching up";
const CAUGHT_UP: &str = "source caught up with the lag window";

async fn status(config: &Path, extra: &[&str]) -> Output {
    c42fwd()
        .args(["status", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The daemon's log lines holding `what`.
fn lines_with(config: &Path, what: &str) -> Vec<String> {
    std::fs::read_to_string(log_path(config))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_catch_up_is_reported_and_status_shows_the_running_daemon() {
    // 1000 events over the two hours before the emulator started, read 50 a page; every
    // second request is answered 429 with Retry-After 1 s, so the catch-up takes about
    // 20 s: long enough for a progress line (every 10 s).
    let opts = EmulatorOptions {
        backlog: BACKLOG,
        backlog_span: Duration::from_secs(7200),
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        lag: Duration::ZERO,
        faults: FaultOptions {
            rate_limit_every: 2,
            retry_after: Duration::from_secs(1),
            ..FaultOptions::default()
        },
        ..EmulatorOptions::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let source = "[sources.audit]\ntype = \"audit_log\"\ntenant = \"emu\"\nstart = \"3h\"\nlag = \"0s\"\npoll_interval = \"200ms\"\npage_size = 50\n";
    let body = format!(
        "{}\n{source}\n{}",
        emu_tenant(&emu, &opts),
        file_sink_from_audit(&out)
    );
    let config = dir.path().join("c42fwd.toml");
    std::fs::write(
        &config,
        format!("{}{METRICS_ON_A_FREE_PORT}{body}", head(dir.path(), "10s")),
    )
    .unwrap();
    let daemon = Daemon::start(&config).await;
    let addr = daemon.metrics_addr().await;
    // The same configuration with the port the daemon got, for `status --config`.
    let bound = dir.path().join("bound.toml");
    std::fs::write(
        &bound,
        format!(
            "{}[metrics]\nlisten = \"{addr}\"\n{body}",
            head(dir.path(), "10s")
        ),
    )
    .unwrap();

    // Behind at once: about three hours (the start), with its position.
    wait_for(
        "the line saying the source is behind",
        Duration::from_secs(30),
        || !lines_with(&config, BEHIND).is_empty(),
    )
    .await;
    let first = lines_with(&config, BEHIND).remove(0);
    assert!(first.contains("source=audit"), "{first}");
    assert!(
        first.contains("behind=2h 59m") || first.contains("behind=3h"),
        "{first}"
    );
    assert!(first.contains("position=20"), "{first}");

    // While it catches up, `status` shows it behind, with a rate.
    let mid = status(&bound, &["--json"]).await;
    assert_eq!(mid.status.code(), Some(0), "{}", text(&mid.stderr));
    let v: serde_json::Value = serde_json::from_slice(&mid.stdout).unwrap();
    let src = &v["sources"][0];
    assert_eq!(src["name"], "audit", "{v:#}");
    if !lines_with(&config, CAUGHT_UP).is_empty() {
        panic!(
            "caught up before the first status: the test's backlog is too small\n{}",
            log_tail(&config)
        );
    }
    assert!(
        src["behind_seconds"].as_f64().unwrap() > 60.0,
        "behind while catching up: {v:#}"
    );
    assert!(src["events_per_second"].as_f64().is_some(), "{v:#}");

    let truth = multiset(crate::support::daemon::backlog(&emu));
    assert_eq!(truth.values().sum::<usize>() as u64, BACKLOG);
    wait_for("every event in the file", Duration::from_secs(120), || {
        file_records(&out) == truth
    })
    .await;
    wait_for("the caught-up line", Duration::from_secs(30), || {
        !lines_with(&config, CAUGHT_UP).is_empty()
    })
    .await;
    // A few more polls inside the lag window: still one caught-up line.
    let requests =
        |text: &str| crate::support::metrics::metric_sum(text, "c42fwd_api_requests_total", &[]);
    let before = requests(&scrape(&addr).await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = requests(&scrape(&addr).await.unwrap());
        if now >= before + 4.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no more polls\n{}",
            log_tail(&config)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caught = lines_with(&config, CAUGHT_UP);
    assert_eq!(caught.len(), 1, "exactly one caught-up line: {caught:#?}");
    // The line counts what was forwarded while the source was behind: at least every
    // event older than the position it reports (its second, as written), at most the
    // backlog (an event of the last seconds, within the threshold, can come after it).
    let field = |key: &str| {
        caught[0]
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {}", caught[0]))
            .to_string()
    };
    let counted: u64 = field("events=").parse().unwrap();
    let position = chrono::DateTime::parse_from_rfc3339(&field("position=")).unwrap();
    let older = crate::support::daemon::backlog(&emu)
        .iter()
        .filter(|j| {
            let v: serde_json::Value = serde_json::from_str(j).unwrap();
            chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).unwrap()
                < position
        })
        .count() as u64;
    assert!(
        (older..=BACKLOG).contains(&counted) && older > BACKLOG / 2,
        "the backlog older than the position ({older}) in the catch-up: {}",
        caught[0]
    );
    assert!(caught[0].contains("source=audit"), "{}", caught[0]);
    // The catch-up lasted more than 10 s: at least one progress line, with its figures.
    let progress = lines_with(&config, PROGRESS);
    assert!(
        !progress.is_empty(),
        "no progress line\n{}",
        log_tail(&config)
    );
    for l in &progress {
        for field in [
            "source=audit",
            "behind=",
            "position=20",
            "events=",
            "rate=",
            "eta=",
        ] {
            assert!(l.contains(field), "{field} in {l}");
        }
    }
    assert_eq!(lines_with(&config, BEHIND).len(), 1, "one catch-up");

    // Caught up: `status` shows the source at the lag window and the sink done.
    let shown = status(&bound, &[]).await;
    let table = text(&shown.stdout);
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown.stderr));
    assert!(
        table.starts_with(&format!(
            "c42fwd {} at {addr}, up ",
            env!("CARGO_PKG_VERSION")
        )),
        "{table}"
    );
    assert!(!table.contains("not reported"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("audit "))
        .unwrap_or_else(|| panic!("no row for the source:\n{table}"));
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(&cells[..3], ["audit", "audit_log", "emu"], "{table}");
    let behind = humantime::parse_duration(cells[5]).unwrap();
    assert!(behind < Duration::from_secs(60), "not behind: {table}");
    assert_eq!(cells[7], BACKLOG.to_string(), "events: {table}");
    assert_eq!(cells[8], "0", "errors: {table}");
    assert!(cells[9].ends_with(" ago"), "last poll: {table}");
    let sink = table
        .lines()
        .find(|l| l.starts_with("out "))
        .unwrap_or_else(|| panic!("no row for the sink:\n{table}"));
    let cells: Vec<&str> = sink
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(&cells[..3], ["out", "0", &BACKLOG.to_string()], "{table}");
    assert!(cells[6].ends_with(" ago") && cells[7] == "ok", "{table}");
    let json = status(&bound, &["--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["sources"][0]["events_total"], BACKLOG, "{v:#}");
    assert_eq!(v["sources"][0]["kind"], "audit_log", "{v:#}");
    assert!(
        v["sources"][0]["behind_seconds"].as_f64().unwrap() < 60.0,
        "{v:#}"
    );
    assert_eq!(v["sinks"][0]["delivered_total"], BACKLOG, "{v:#}");
    assert_eq!(v["sinks"][0]["pending_batches"], 0, "{v:#}");
    assert!(v["rate_interval_seconds"].as_f64().unwrap() > 0.5, "{v:#}");
    // The metrics the status reads.
    let m = scrape(&addr).await.unwrap();
    assert_eq!(
        metric(
            &m,
            "c42fwd_source_info{source=\"audit\",kind=\"audit_log\",tenant=\"emu\"}"
        ),
        1.0,
        "{m}"
    );

    // `--watch` off a terminal: plain blocks, one after another.
    let mut watch = c42fwd();
    watch
        .args(["status", "--watch", "500ms", "--config"])
        .arg(&bound)
        .stdout(std::process::Stdio::piped());
    let mut child = watch.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.matches("\nSOURCE ").count() < 2 {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(
            deadline,
            tokio::io::AsyncReadExt::read(&mut stdout, &mut buf),
        )
        .await
        .expect("two blocks of --watch within 30 s")
        .unwrap();
        assert!(n > 0, "--watch ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        !seen.contains('\x1b'),
        "no escape codes off a terminal: {seen:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("--watch stops on SIGTERM")
        .unwrap();
    assert!(ended.success(), "{ended:?}");

    // `--watch --json`: one object per line.
    let mut child = c42fwd()
        .args(["status", "--json", "--watch", "500ms", "--config"])
        .arg(&bound)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    for _ in 0..2 {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a JSON line of --watch within 30 s")
            .unwrap()
            .expect("--watch --json goes on");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["sources"][0]["name"], "audit", "{line}");
        assert!(v["rate_interval_seconds"].as_f64().is_some(), "{line}");
    }
    child.kill().await.unwrap();

    let stopped = daemon.terminate().await;
    assert!(stopped.success(), "{stopped:?}\n{}", log_tail(&config));
    // No daemon: exit 1, naming the address and where it came from.
    let gone = status(&bound, &[]).await;
    let err = text(&gone.stderr);
    assert_eq!(gone.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("http://{addr}/metrics")), "{err}");
    assert!(
        err.contains(&format!("metrics.listen in {}", bound.display())),
        "{err}"
    );
    assert!(err.contains("is the daemon running"), "{err}");
    assert!(gone.stdout.is_empty());
    // A configuration without metrics, or with port 0: exit 2, saying what to do.
    let none = dir.path().join("none.toml");
    std::fs::write(&none, format!("{}{body}", head(dir.path(), "10s"))).unwrap();
    let out = status(&none, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("has no metrics endpoint"),
        "{}",
        text(&out.stderr)
    );
    let out = status(&config, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--addr"),
        "{}",
        text(&out.stderr)
    );
    emu.shutdown().await;
}
