//! End to end, as a user runs it: the emulated tenant -> the real `c42fwd` binary
//! (`run --config`) -> a real rsyslog.
//!
//! The sinks send the API event untouched (`format = "json"`) behind an RFC 5424
//! header, so that what rsyslog wrote can be compared byte for byte with the
//! emulator's ground truth: every event that occurred before a cut-off must arrive
//! exactly as often as the tenant has it (byte-identical events exist), and no event
//! may arrive more often than that, ever, in normal operation.

use crate::support::config::{emu_tenant, emu_tenant_secret_file, head};
use crate::support::daemon::{log_tail, start_emulator, Daemon};
use crate::support::rsyslog::{Rsyslog, RsyslogOptions};
use crate::support::{multiset, unused_tcp_port, wait_for};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions, FaultOptions};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The body of an RFC 5424 message as rsyslog's `%rawmsg%` shows it:
/// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`, with `SD` = `-`.
pub fn rfc5424_parts(line: &str) -> (String, String) {
    let mut it = line.splitn(8, ' ');
    let _pri_version = it.next();
    let _ts = it.next();
    let _host = it.next();
    let app = it.next().unwrap_or_default().to_string();
    let _procid = it.next();
    let _msgid = it.next();
    let _sd = it.next();
    (app, it.next().unwrap_or_default().to_string())
}

fn occurred(json: &str) -> DateTime<Utc> {
    let v: serde_json::Value = serde_json::from_str(json).expect("event is JSON");
    v["timestamp"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .expect("event has a timestamp")
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

/// A config that reads the emulator's Audit Log and sends JSON with RFC 5424 headers
/// over TCP (octet counted and LF) and UDP to one rsyslog, one `app_name` per sink.
fn write_config(
    emu: &EmulatorHandle,
    opts: &EmulatorOptions,
    rs: &Rsyslog,
    extra_source: &str,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c42fwd.toml");
    let text = format!(
        r#"
{head}
{tenant}
[sources.audit]
type = "audit_log"
tenant = "emu"
start = "1h"
lag = "3s"
poll_interval = "200ms"
{extra_source}

[sinks.octet]
type = "tcp"
host = "127.0.0.1"
port = {tcp}
format = "json"
framing = "octet_counting"
app_name = "octet"
queue_batches = 2

[sinks.lf]
type = "tcp"
host = "127.0.0.1"
port = {tcp}
format = "json"
framing = "lf"
app_name = "lf"
queue_batches = 2

[sinks.udp]
type = "udp"
host = "127.0.0.1"
port = {udp}
format = "json"
app_name = "udp"
max_datagram = 65000

[[routes]]
sources = ["audit"]
sinks = ["octet", "lf", "udp"]
"#,
        head = head(dir.path(), "20s"),
        tenant = emu_tenant_secret_file(dir.path(), emu, opts),
        tcp = rs.tcp_port(),
        udp = rs.udp_port(),
    );
    std::fs::write(&config, text).unwrap();
    Setup { _dir: dir, config }
}

/// What rsyslog received, per sink (`app_name`), as a multiset of event JSON texts.
fn received_by_sink(rs: &Rsyslog) -> HashMap<String, HashMap<String, usize>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for line in rs.lines() {
        let (app, msg) = rfc5424_parts(&line);
        out.entry(app).or_default().push(msg);
    }
    out.into_iter().map(|(k, v)| (k, multiset(v))).collect()
}

fn count(m: &HashMap<String, usize>) -> usize {
    m.values().sum()
}

/// Waits until every sink has every event of `truth`, or panics after `within`.
async fn wait_for_all(
    rs: &Rsyslog,
    config: &Path,
    sinks: &[&str],
    truth: &HashMap<String, usize>,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = received_by_sink(rs);
        let complete = sinks.iter().all(|s| {
            got.get(*s)
                .map(|m| {
                    truth
                        .iter()
                        .all(|(k, n)| m.get(k).copied().unwrap_or(0) >= *n)
                })
                .unwrap_or(false)
        });
        if complete {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let summary: Vec<String> = sinks
                .iter()
                .map(|s| {
                    let m = got.get(*s).cloned().unwrap_or_default();
                    let missing = truth.keys().filter(|k| !m.contains_key(*k)).count();
                    format!(
                        "{s}: {} received, {missing} of {} distinct missing",
                        count(&m),
                        truth.len()
                    )
                })
                .collect();
            panic!(
                "not every event arrived within {within:?}: {}\nc42fwd log:\n{}",
                summary.join("; "),
                log_tail(config)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts: every event in `truth_cut` arrived exactly as often as the tenant has it,
/// and no event (before or after the cut) arrived more often than that.
fn assert_exactly_once(
    sink: &str,
    got: &HashMap<String, usize>,
    truth_all: &HashMap<String, usize>,
    truth_cut: &HashMap<String, usize>,
) {
    for (k, n) in truth_cut {
        let g = got.get(k).copied().unwrap_or(0);
        assert_eq!(
            g, *n,
            "{sink}: event received {g} times, the tenant has it {n} times: {k}"
        );
    }
    for (k, g) in got {
        let n = truth_all.get(k).copied().unwrap_or(0);
        assert!(
            *g <= n,
            "{sink}: event received {g} times, the tenant has it {n} times: {k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_with_lag_reaches_rsyslog_exactly_once_over_tcp_and_udp() {
    let opts = EmulatorOptions {
        seed: 7,
        backlog: 3_000,
        backlog_span: Duration::from_secs(600),
        rate: 150.0,
        lag: Duration::from_secs(2),
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let rs = Rsyslog::start(RsyslogOptions::default()).await;
    let setup = write_config(&emu, &opts, &rs, "page_size = 500");
    let daemon = Daemon::start(&setup.config).await;

    // Everything that occurred up to 4 s after the start, lagging events included,
    // must arrive; c42fwd's lag window (3 s) covers the emulator's lag (2 s).
    let first = emu.started_at() - chrono::Duration::hours(2);
    let cut = emu.started_at() + chrono::Duration::seconds(4);
    let truth_cut = multiset(emu.events_between(first, cut));
    assert!(count(&truth_cut) > 3_000, "the live stream produced events");
    wait_for_all(
        &rs,
        &setup.config,
        &["octet", "lf", "udp"],
        &truth_cut,
        Duration::from_secs(90),
    )
    .await;

    let status = daemon.terminate().await;
    assert!(status.success(), "c42fwd exits 0 after SIGTERM: {status}");
    // Everything it could have sent occurred before now.
    let truth_all = multiset(emu.events_between(first, Utc::now() + chrono::Duration::seconds(1)));
    let got = received_by_sink(&rs);
    for sink in ["octet", "lf", "udp"] {
        assert_exactly_once(sink, &got[sink], &truth_all, &truth_cut);
    }
    // The lag window really was exercised: some events arrived after later ones.
    let lines: Vec<String> = rs
        .lines()
        .iter()
        .map(|l| rfc5424_parts(l))
        .filter(|(app, _)| app == "octet")
        .map(|(_, m)| m)
        .collect();
    let out_of_order = lines
        .windows(2)
        .filter(|w| occurred(&w[1]) < occurred(&w[0]))
        .count();
    assert!(
        out_of_order > 0,
        "no late event was caught: the test did not exercise the lag window"
    );
    drop(setup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_a_random_point_then_restart_loses_nothing() {
    let opts = EmulatorOptions {
        seed: 11,
        backlog: 20_000,
        backlog_span: Duration::from_secs(1800),
        rate: 100.0,
        lag: Duration::from_secs(1),
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let rs = Rsyslog::start(RsyslogOptions {
        udp: true,
        ..Default::default()
    })
    .await;
    // Small pages, so that the in-flight bound (below) is well under what was sent.
    let page_size = 50;
    let setup = write_config(&emu, &opts, &rs, &format!("page_size = {page_size}"));

    // Kill after a random number of events, somewhere in the backlog.
    // (Lines of the three sinks together: each has about a third of them.)
    let kill_after = 3 * (5_000 + fastrand::usize(..12_000));
    let daemon = Daemon::start(&setup.config).await;
    rs.wait_for_lines(kill_after, Duration::from_secs(120))
        .await;
    daemon.kill9().await;
    let before_restart = received_by_sink(&rs);

    let daemon = Daemon::start(&setup.config).await;
    let first = emu.started_at() - chrono::Duration::hours(2);
    let cut = emu.started_at() + chrono::Duration::seconds(3);
    let truth_cut = multiset(emu.events_between(first, cut));
    wait_for_all(
        &rs,
        &setup.config,
        &["octet", "lf", "udp"],
        &truth_cut,
        Duration::from_secs(120),
    )
    .await;
    assert!(daemon.terminate().await.success());

    let truth_all = multiset(emu.events_between(first, Utc::now() + chrono::Duration::seconds(1)));
    let got = received_by_sink(&rs);
    // In flight at the kill: the batches the source sent and has not committed, at most
    // MAX_IN_FLIGHT (those queued for a sink, being written, written but not yet
    // acknowledged, acknowledged but not yet committed); each batch is one page. Not
    // fewer: a TCP sink acknowledges a write only once the connection was seen open
    // after it (100 ms; 500 ms for a connection's first write), and a fast machine
    // writes many pages in that time. Everything resent (a checkpoint never committed
    // or not read back) is more than this bound.
    let bound = c42fwd::sources::poll::MAX_IN_FLIGHT * page_size;
    assert!(
        bound < 5_000,
        "the bound must be below what each sink had before the kill"
    );
    for sink in ["octet", "lf", "udp"] {
        let m = &got[sink];
        for (k, n) in &truth_cut {
            assert!(
                m.get(k).copied().unwrap_or(0) >= *n,
                "{sink}: lost an event: {k}"
            );
        }
        let duplicates: usize = m
            .iter()
            .map(|(k, g)| g.saturating_sub(truth_all.get(k).copied().unwrap_or(0)))
            .sum();
        eprintln!(
            "sigkill after {} {sink} events: {duplicates} duplicates after restart (bound {bound})",
            before_restart.get(sink).map(count).unwrap_or(0)
        );
        assert!(
            duplicates <= bound,
            "{sink}: {duplicates} duplicates, more than the in-flight bound {bound}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_rate_limits_and_server_errors_lose_nothing() {
    let opts = EmulatorOptions {
        seed: 23,
        backlog: 6_000,
        backlog_span: Duration::from_secs(900),
        rate: 50.0,
        lag: Duration::from_secs(1),
        token_ttl: Duration::from_secs(2),
        faults: FaultOptions {
            rate_limit_every: 5,
            retry_after: Duration::from_secs(1),
            server_error_every: 7,
            unauthorized_next: 2,
        },
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let rs = Rsyslog::start(RsyslogOptions::default()).await;
    let setup = write_config(&emu, &opts, &rs, "page_size = 250");
    let daemon = Daemon::start(&setup.config).await;

    let first = emu.started_at() - chrono::Duration::hours(2);
    let cut = emu.started_at() + chrono::Duration::seconds(5);
    let truth_cut = multiset(emu.events_between(first, cut));
    wait_for_all(
        &rs,
        &setup.config,
        &["octet", "lf", "udp"],
        &truth_cut,
        Duration::from_secs(120),
    )
    .await;
    assert!(daemon.terminate().await.success());

    let stats = emu.stats();
    assert!(
        stats.rate_limited > 0,
        "the emulator served 429s: {stats:?}"
    );
    assert!(
        stats.server_errors > 0,
        "the emulator served 500s: {stats:?}"
    );
    assert!(
        stats.tokens_issued > 1,
        "tokens expired and were renewed: {stats:?}"
    );
    let truth_all = multiset(emu.events_between(first, Utc::now() + chrono::Duration::seconds(1)));
    let got = received_by_sink(&rs);
    for sink in ["octet", "lf", "udp"] {
        assert_exactly_once(sink, &got[sink], &truth_all, &truth_cut);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_stalls_the_route_and_commits_nothing() {
    let opts = EmulatorOptions {
        seed: 5,
        backlog: 500,
        backlog_span: Duration::from_secs(300),
        rate: 0.0,
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    // A port nobody listens on.
    let port = unused_tcp_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            r#"
{head}{tenant}[sources.audit]
type = "audit_log"
tenant = "emu"
start = "1h"
[sinks.dead]
type = "tcp"
host = "127.0.0.1"
port = {port}
[sinks.dead.retry]
initial = "50ms"
max = "200ms"
[[routes]]
sources = ["audit"]
sinks = ["dead"]
"#,
            head = head(dir.path(), "2s"),
            tenant = emu_tenant(&emu, &opts),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config).await;
    // The source reads the backlog (one page) and hands it over; wait for that signal.
    wait_for(
        "the emulator to serve a search",
        Duration::from_secs(30),
        || {
            emu.stats()
                .requests
                .iter()
                .any(|(k, n)| k.contains("search-audit-log") && *n > 0)
        },
    )
    .await;
    let status = daemon.terminate().await;
    assert!(status.success(), "{status}");
    // Nothing was delivered, so nothing was committed: no checkpoint advanced.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_c42fwd"))
        .args(["checkpoint", "show", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("audit"), "{text}");
    // The checkpoint holds the start edge (written before the first poll) and moved
    // from it at most over time that held no event: the backlog's first event is not
    // before `backlog_span` ahead of the emulator's start (a catch-up in time slices
    // commits an empty slice, which loses nothing).
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let watermark = field("watermark:")
        .and_then(|w| chrono::DateTime::parse_from_rfc3339(&w).ok())
        .map(|w| w.with_timezone(&Utc));
    let first_possible =
        emu.started_at() - chrono::Duration::from_std(opts.backlog_span).expect("span");
    assert!(
        field("start:").is_some() && watermark.is_some_and(|w| w <= first_possible),
        "the route was dead, yet a checkpoint was committed past an event:\n{text}"
    );
    assert_eq!(field("fingerprints:").as_deref(), Some("0"), "{text}");
}

/// A SIGKILL in the middle of a backlog read in concurrent time slices (four requests
/// at once, each answered after 30 ms so that the slices overlap), then a restart:
/// every event arrives, and what arrives twice is only what the checkpoint committed
/// before the kill did not hold (events at or after its watermark), no more than the
/// batches in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_sliced_catch_up_loses_nothing() {
    let opts = EmulatorOptions {
        seed: 13,
        backlog: 20_000,
        backlog_span: Duration::from_secs(1800),
        rate: 0.0,
        lag: Duration::from_secs(1),
        latency: Duration::from_millis(30),
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let rs = Rsyslog::start(RsyslogOptions::default()).await;
    // Small pages, so that the in-flight bound (below) is well under what was sent.
    let page_size = 50;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c42fwd.toml");
    let text = format!(
        r#"
{head}
{tenant}max_concurrent_requests = 4

[sources.audit]
type = "audit_log"
tenant = "emu"
start = "1h"
lag = "3s"
poll_interval = "200ms"
page_size = {page_size}

[sinks.octet]
type = "tcp"
host = "127.0.0.1"
port = {tcp}
format = "json"
framing = "octet_counting"
app_name = "octet"
queue_batches = 2

[[routes]]
sources = ["audit"]
sinks = ["octet"]
"#,
        head = head(dir.path(), "20s"),
        tenant = emu_tenant(&emu, &opts),
        tcp = rs.tcp_port(),
    );
    std::fs::write(&config, text).unwrap();

    let kill_after = 8_000 + fastrand::usize(..8_000);
    let daemon = Daemon::start(&config).await;
    rs.wait_for_lines(kill_after, Duration::from_secs(120))
        .await;
    let at_once = emu.stats().max_data_in_flight;
    daemon.kill9().await;
    assert!(
        (2..=4).contains(&at_once),
        "{at_once} requests at once before the kill: not a catch-up in slices within the limit"
    );
    let cut = emu.started_at();
    let held = {
        let store = c42fwd::checkpoint::Store::open(dir.path().join("state")).unwrap();
        store
            .load("audit")
            .unwrap()
            .expect("a checkpoint committed before the kill")
            .watermark
    };
    assert!(
        held < cut - chrono::Duration::minutes(2),
        "killed after the catch-up: the checkpoint is at {held}"
    );
    let before_restart = rs.lines().len();

    let daemon = Daemon::start(&config).await;
    let first = emu.started_at() - chrono::Duration::hours(2);
    let truth = multiset(emu.events_between(first, cut));
    assert_eq!(count(&truth), 20_000);
    wait_for_all(&rs, &config, &["octet"], &truth, Duration::from_secs(120)).await;
    assert!(daemon.terminate().await.success());

    let got = received_by_sink(&rs).remove("octet").unwrap_or_default();
    for (k, n) in &truth {
        assert!(got.get(k).copied().unwrap_or(0) >= *n, "lost an event: {k}");
    }
    // The batches in flight at the kill: at most MAX_IN_FLIGHT pages sent and not
    // committed, however many slices were open (they are sent one after the other).
    let bound = c42fwd::sources::poll::MAX_IN_FLIGHT * page_size;
    assert!(
        bound < 8_000,
        "the bound must be below what arrived before the kill"
    );
    let mut duplicates = 0;
    for (k, g) in &got {
        let n = truth.get(k).copied().unwrap_or(0);
        assert!(n > 0, "an event the tenant does not have: {k}");
        if *g > n {
            assert!(
                occurred(k) >= held,
                "sent again though the checkpoint at {held} held it: {k}"
            );
            duplicates += g - n;
        }
    }
    eprintln!(
        "sigkill after {before_restart} events, {at_once} requests at once: \
         {duplicates} duplicates after restart (bound {bound})"
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than the in-flight bound {bound}"
    );
}
