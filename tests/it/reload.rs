//! SIGHUP, with the real `c42fwd` binary against the emulator's live stream: a reload
//! with an invalid configuration is refused with every problem logged and the daemon
//! keeps forwarding on the old one; a reload that adds a sink starts it and restarts
//! only the source that routes to it (drained and committed: nothing lost, nothing
//! sent twice, the unchanged sink never reopened); a file sink reopens its file after
//! a rename (logrotate without `copytruncate`), each event in exactly one of the files.

use crate::support::config::{emu_tenant, file_sink_from_audit, head, METRICS_ON_A_FREE_PORT};
use crate::support::daemon::{log_path, start_emulator, Daemon};
use crate::support::metrics::{metric, scrape};
use crate::support::{file_records, lf_records, multiset, TcpReceiver};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An emulator with 100 Audit Log events over the two hours before it started and a
/// live stream of 20 events a second, no lag. (The sources still keep a lag window of
/// 2 s: with none, an event listed a moment after the poll that moved the watermark
/// past its time would wait for reconciliation.)
async fn emulator() -> (EmulatorHandle, EmulatorOptions) {
    let opts = EmulatorOptions {
        backlog: 100,
        backlog_span: Duration::from_secs(7200),
        rate: 20.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        lag: Duration::ZERO,
        ..EmulatorOptions::default()
    };
    (start_emulator(opts.clone()).await, opts)
}

/// The config text: metrics on a free port, the tenant, the source `audit` polling
/// every 200 ms from 3 hours back with `audit_more` (further keys of the source), and
/// `sinks` (the sinks and routes).
fn config_text(dir: &Path, tenant: &str, audit_more: &str, sinks: &str) -> String {
    format!(
        "{head}{METRICS_ON_A_FREE_PORT}{tenant}\n[sources.audit]\ntype = \"audit_log\"\ntenant = \"emu\"\nstart = \"3h\"\nlag = \"2s\"\npoll_interval = \"200ms\"\n{audit_more}\n{sinks}",
        head = head(dir, "10s"),
    )
}

fn write(config: &Path, text: &str) {
    // Replaced in one step, as an editor or a configuration manager does.
    let tmp = config.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, config).unwrap();
}

/// Every event of the tenant from three hours before it started until `until`.
fn truth(emu: &EmulatorHandle, until: DateTime<Utc>) -> Vec<String> {
    emu.events_between(emu.started_at() - chrono::Duration::hours(3), until)
}

/// Waits until `got()` holds every event of `want` (60 s at most); on a time-out,
/// panics with what is missing and the daemon's log.
async fn wait_holds(
    config: &Path,
    what: &str,
    want: &[String],
    mut got: impl FnMut() -> HashMap<String, usize>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = got();
        let missing: Vec<&String> = want.iter().filter(|e| !now.contains_key(*e)).collect();
        if missing.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "timed out waiting for {what}: {} of {} missing, e.g. {}\nc42fwd log:\n{}",
                missing.len(),
                want.len(),
                missing[0],
                std::fs::read_to_string(log_path(config)).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that each record of `got` is an event of the tenant (`all`: the truth up to
/// after the daemon stopped) and is there no more often than the tenant holds it (the
/// tenant may hold byte-identical events): nothing twice.
fn assert_once_each(what: &str, got: &HashMap<String, usize>, all: &HashMap<String, usize>) {
    for (record, n) in got {
        let want = all.get(record).copied().unwrap_or(0);
        assert!(want > 0, "{what}: not an event of the tenant: {record}");
        assert!(
            *n <= want,
            "{what}: {n} x (the tenant has it {want} x) {record}"
        );
    }
}

async fn reloads(addr: &str, result: &str) -> f64 {
    let text = scrape(addr).await.expect("metrics");
    metric(
        &text,
        &format!("c42fwd_config_reloads_total{{result=\"{result}\"}}"),
    )
}

struct Setup {
    emu: EmulatorHandle,
    dir: tempfile::TempDir,
    config: PathBuf,
    out: PathBuf,
    daemon: Daemon,
    metrics: String,
}

/// A daemon forwarding the live stream to the file sink `out`, once it holds the backlog.
async fn start() -> Setup {
    let (emu, opts) = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let config = dir.path().join("c42fwd.toml");
    let tenant = emu_tenant(&emu, &opts);
    write(
        &config,
        &config_text(dir.path(), &tenant, "", &file_sink_from_audit(&out)),
    );
    let daemon = Daemon::start(&config).await;
    let metrics = daemon.metrics_addr().await;
    let backlog = truth(&emu, emu.started_at());
    wait_holds(&config, "the backlog in the file", &backlog, || {
        file_records(&out)
    })
    .await;
    Setup {
        emu,
        dir,
        config,
        out,
        daemon,
        metrics,
    }
}

#[tokio::test]
async fn sighup_with_an_invalid_config_keeps_the_old_one_running_and_forwarding() {
    let mut s = start().await;
    let good = std::fs::read_to_string(&s.config).unwrap();
    // Two problems: both must be logged, each with its key path.
    let bad = good
        .replace("poll_interval = \"200ms\"", "poll_interval = \"1ms\"")
        .replace("syslog = \"none\"", "syslog = \"none\"\nqueue_batches = 0");
    assert_ne!(bad, good);
    write(&s.config, &bad);
    s.daemon.hup();
    let log = s.daemon.wait_log("configuration reload refused", 1).await;
    let problems: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("configuration reload: problem"))
        .collect();
    assert!(
        problems
            .iter()
            .any(|l| l.contains("sources.audit.poll_interval")),
        "{log}"
    );
    assert!(
        problems
            .iter()
            .any(|l| l.contains("sinks.out.queue_batches")),
        "{log}"
    );
    assert!(log.contains("problems=2"), "{log}");
    assert!(
        !log.contains("reload: stopping"),
        "nothing was stopped: {log}"
    );
    assert_eq!(reloads(&s.metrics, "invalid").await, 1.0);
    assert_eq!(reloads(&s.metrics, "ok").await, 0.0);

    // Still forwarding, on the old configuration: the live events after the refusal
    // arrive.
    let refused_at = s.emu.now();
    let want = truth(&s.emu, refused_at + chrono::Duration::seconds(2));
    wait_holds(
        &s.config,
        "the live events after the refusal",
        &want,
        || file_records(&s.out),
    )
    .await;

    // Fixed, it is taken on the next SIGHUP.
    write(
        &s.config,
        &good.replace("poll_interval = \"200ms\"", "poll_interval = \"300ms\""),
    );
    s.daemon.hup();
    let log = s.daemon.wait_log("configuration reloaded", 1).await;
    assert!(log.contains("sources_started=1"), "{log}");
    assert_eq!(reloads(&s.metrics, "ok").await, 1.0);
    let after = s.emu.now();
    let want = truth(&s.emu, after + chrono::Duration::seconds(2));
    wait_holds(&s.config, "the live events after the reload", &want, || {
        file_records(&s.out)
    })
    .await;

    let status = s.daemon.terminate().await;
    assert!(status.success(), "{status:?}");
    let all = multiset(truth(&s.emu, s.emu.now() + chrono::Duration::seconds(5)));
    let got = file_records(&s.out);
    assert_once_each("out", &got, &all);
    s.emu.shutdown().await;
    drop(s.dir);
}

/// The sink `tcp` sending LF-framed JSON to 127.0.0.1:`port`.
fn tcp_sink(port: u16) -> String {
    format!(
        "[sinks.tcp]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\nformat = \"json\"\nsyslog = \"none\"\nframing = \"lf\"\n"
    )
}

/// What a TCP receiver got, as a multiset of LF-framed records.
fn tcp_records(rx: &TcpReceiver) -> HashMap<String, usize> {
    multiset(
        lf_records(&rx.received().bytes())
            .into_iter()
            .map(|r| String::from_utf8(r).expect("utf-8 record")),
    )
}

/// The unchanged sink is a TCP sink: the TCP sink holds each batch's acknowledgement
/// until its connection was seen open a while after the write, so batches are in
/// flight when the source is stopped for the reload; the source must wait for them and
/// commit, or the restarted source sends them again. The receiver sees one connection:
/// the unchanged sink was not restarted.
#[tokio::test]
async fn sighup_with_a_new_sink_starts_it_without_losing_or_duplicating_events() {
    let (emu, opts) = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = TcpReceiver::bind().await;
    let config = dir.path().join("c42fwd.toml");
    let tenant = emu_tenant(&emu, &opts);
    let route = |sinks: &str| format!("[[routes]]\nsources = [\"audit\"]\nsinks = [{sinks}]\n");
    let before = format!("{}\n{}", tcp_sink(receiver.port()), route("\"tcp\""));
    write(&config, &config_text(dir.path(), &tenant, "", &before));
    let mut daemon = Daemon::start(&config).await;
    let metrics = daemon.metrics_addr().await;
    let backlog = truth(&emu, emu.started_at());
    wait_holds(&config, "the backlog at the receiver", &backlog, || {
        tcp_records(&receiver)
    })
    .await;

    let out2 = dir.path().join("out2.ndjson");
    let after = format!(
        "{}\n[sinks.out2]\ntype = \"file\"\npath = \"{}\"\nformat = \"json\"\nsyslog = \"none\"\n\n{}",
        tcp_sink(receiver.port()),
        out2.display(),
        route("\"tcp\", \"out2\"")
    );
    write(&config, &config_text(dir.path(), &tenant, "", &after));
    daemon.hup();
    let log = daemon.wait_log("configuration reloaded", 1).await;
    let reloaded_at = emu.now();
    assert!(
        log.contains("sources_started=1")
            && log.contains("sinks_started=1")
            && log.contains("sinks_stopped=0")
            && log.contains("kept_sinks=1"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("reload: stopping the source")
                && l.contains("source=audit")
                && l.contains("the sinks of its routes changed")),
        "{log}"
    );
    assert!(!log.contains("reload: stopping the sink"), "{log}");
    assert_eq!(reloads(&metrics, "ok").await, 1.0);

    // Both sinks get what happens from now on.
    let until = reloaded_at + chrono::Duration::seconds(3);
    let want = truth(&emu, until);
    wait_holds(&config, "every event at the receiver", &want, || {
        tcp_records(&receiver)
    })
    .await;
    let fresh = emu.events_between(reloaded_at, until);
    assert!(fresh.len() >= 20, "{} live events", fresh.len());
    wait_holds(
        &config,
        "the events after the reload in out2",
        &fresh,
        || file_records(&out2),
    )
    .await;

    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
    let all = multiset(truth(&emu, emu.now() + chrono::Duration::seconds(5)));
    let got = tcp_records(&receiver);
    let got2 = file_records(&out2);
    // Nothing lost: every event up to `until` reached the receiver; nothing twice in
    // either sink.
    assert!(want.iter().all(|e| got.contains_key(e)));
    assert_once_each("tcp", &got, &all);
    assert_once_each("out2", &got2, &all);
    // out2 holds only events the receiver has: it started where the restarted
    // source's checkpoint stood, not from the source's past.
    for e in got2.keys() {
        assert!(got.contains_key(e), "in out2 but not at the receiver: {e}");
    }
    assert!(!got2.contains_key(&backlog[0]), "out2 got the past");
    // The sink that did not change kept its connection throughout.
    assert_eq!(
        receiver.received().connections.len(),
        1,
        "the unchanged sink reconnected"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn the_file_sink_reopens_its_file_after_a_rename_on_sighup() {
    let mut s = start().await;
    let rotated = s.dir.path().join("out.ndjson.1");
    std::fs::rename(&s.out, &rotated).unwrap();
    // Until the SIGHUP, the sink still appends to the renamed file, as logrotate expects.
    s.daemon.hup();
    s.daemon.wait_log("file reopened on request", 1).await;
    // The reopen does not wait for the reload, which runs beside it.
    s.daemon
        .wait_log("configuration reloaded: no source or sink changed", 1)
        .await;
    let old_len = std::fs::metadata(&rotated).unwrap().len();
    let hup_at = s.emu.now();
    let both = || {
        let mut m = file_records(&rotated);
        for (k, n) in file_records(&s.out) {
            *m.entry(k).or_insert(0) += n;
        }
        m
    };
    let until = hup_at + chrono::Duration::seconds(3);
    let want = truth(&s.emu, until);
    wait_holds(&s.config, "every event in the two files", &want, both).await;
    let status = s.daemon.terminate().await;
    assert!(status.success(), "{status:?}");

    assert_eq!(
        std::fs::metadata(&rotated).unwrap().len(),
        old_len,
        "written to the old file after the reopen"
    );
    let new = file_records(&s.out);
    let fresh = s.emu.events_between(hup_at, until);
    assert!(
        fresh.iter().all(|e| new.contains_key(e)),
        "the events after the SIGHUP are in the new file"
    );
    let all = multiset(truth(&s.emu, s.emu.now() + chrono::Duration::seconds(5)));
    assert_once_each("both files", &both(), &all);
    s.emu.shutdown().await;
}

/// A new sink that could not start (its CA file holds no certificate) refuses the
/// reload before anything stops; a changed `state_dir` is kept at its running value
/// with a WARN and `c42fwd_config_restart_pending` while the rest of the reload applies.
#[tokio::test]
async fn a_sink_that_cannot_start_refuses_the_reload_and_restart_only_settings_are_kept() {
    let mut s = start().await;
    let good = std::fs::read_to_string(&s.config).unwrap();
    let ca = s.dir.path().join("ca.pem");
    std::fs::write(&ca, "no certificate here\n").unwrap();
    let bad = good.replace("sinks = [\"out\"]", "sinks = [\"out\", \"bad\"]")
        + &format!(
            "\n[sinks.bad]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 6514\n[sinks.bad.tls]\nca_file = \"{}\"\n",
            ca.display()
        );
    write(&s.config, &bad);
    s.daemon.hup();
    let log = s.daemon.wait_log("configuration reload refused", 1).await;
    assert!(
        log.lines()
            .any(|l| l.contains("configuration reload: problem")
                && l.contains("sinks.bad: invalid tls settings: ca file")),
        "{log}"
    );
    assert!(
        !log.contains("reload: stopping"),
        "nothing was stopped: {log}"
    );
    assert_eq!(reloads(&s.metrics, "invalid").await, 1.0);

    let state = s.dir.path().join("state");
    let elsewhere = s.dir.path().join("elsewhere");
    let moved = good
        .replace(
            &format!("state_dir = \"{}\"", state.display()),
            &format!("state_dir = \"{}\"", elsewhere.display()),
        )
        .replace("poll_interval = \"200ms\"", "poll_interval = \"300ms\"");
    assert_ne!(moved, good);
    write(&s.config, &moved);
    s.daemon.hup();
    let log = s.daemon.wait_log("configuration reloaded", 1).await;
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("this setting changes only with a restart")
            && l.contains("state_dir")),
        "{log}"
    );
    assert!(log.contains("sources_started=1"), "{log}");
    let text = scrape(&s.metrics).await.expect("metrics");
    assert_eq!(metric(&text, "c42fwd_config_restart_pending"), 1.0);
    assert_eq!(
        metric(&text, "c42fwd_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    // The restarted source still commits into the running state directory.
    let want = truth(&s.emu, s.emu.now() + chrono::Duration::seconds(2));
    wait_holds(&s.config, "the live events after the reload", &want, || {
        file_records(&s.out)
    })
    .await;
    assert!(s.daemon.terminate().await.success());
    assert!(state.join("checkpoints").is_dir());
    assert!(!elsewhere.exists(), "the new state_dir was used");
    let all = multiset(truth(&s.emu, s.emu.now() + chrono::Duration::seconds(5)));
    assert_once_each("out", &file_records(&s.out), &all);
    s.emu.shutdown().await;
}

/// A sink removed by a reload delivers what it holds and stops (its file gets nothing
/// more), its source restarts on the remaining sink, which keeps its file open; nothing
/// is lost or sent twice to the remaining sink.
#[tokio::test]
async fn a_removed_sink_drains_and_stops_while_the_kept_one_goes_on() {
    let (emu, opts) = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c42fwd.toml");
    let tenant = emu_tenant(&emu, &opts);
    let (out, out2) = (
        dir.path().join("out.ndjson"),
        dir.path().join("out2.ndjson"),
    );
    let file_sink = |name: &str, path: &Path| {
        format!(
            "[sinks.{name}]\ntype = \"file\"\npath = \"{}\"\nformat = \"json\"\nsyslog = \"none\"\n",
            path.display()
        )
    };
    let both = format!(
        "{}{}[[routes]]\nsources = [\"audit\"]\nsinks = [\"out\", \"out2\"]\n",
        file_sink("out", &out),
        file_sink("out2", &out2)
    );
    write(&config, &config_text(dir.path(), &tenant, "", &both));
    let mut daemon = Daemon::start(&config).await;
    let backlog = truth(&emu, emu.started_at());
    wait_holds(&config, "the backlog in out", &backlog, || {
        file_records(&out)
    })
    .await;
    wait_holds(&config, "the backlog in out2", &backlog, || {
        file_records(&out2)
    })
    .await;

    let one = format!(
        "{}[[routes]]\nsources = [\"audit\"]\nsinks = [\"out\"]\n",
        file_sink("out", &out)
    );
    write(&config, &config_text(dir.path(), &tenant, "", &one));
    daemon.hup();
    let log = daemon.wait_log("configuration reloaded", 1).await;
    assert!(
        log.lines().any(|l| l.contains("reload: stopping the sink")
            && l.contains("sink=out2")
            && l.contains("removed")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("reload: sink stopped") && l.contains("sink=out2")),
        "{log}"
    );
    assert!(
        log.contains("sinks_stopped=1") && log.contains("kept_sinks=1"),
        "{log}"
    );
    let out2_len = std::fs::metadata(&out2).unwrap().len();
    let until = emu.now() + chrono::Duration::seconds(3);
    let want = truth(&emu, until);
    wait_holds(&config, "every event in out", &want, || file_records(&out)).await;
    let log = daemon.log();
    assert!(daemon.terminate().await.success());
    assert_eq!(
        std::fs::metadata(&out2).unwrap().len(),
        out2_len,
        "the removed sink got more"
    );
    let all = multiset(truth(&emu, emu.now() + chrono::Duration::seconds(5)));
    assert_once_each("out", &file_records(&out), &all);
    assert_once_each("out2", &file_records(&out2), &all);
    // The kept sink was neither stopped nor started again: one writer throughout (a
    // new one would log `file opened` again).
    let opened = log
        .lines()
        .filter(|l| l.contains("file opened") && l.contains("sink=out "))
        .count();
    assert_eq!(opened, 1, "the kept sink was restarted: {log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("reload: st") && l.contains("sink=out ")),
        "{log}"
    );
    emu.shutdown().await;
}
