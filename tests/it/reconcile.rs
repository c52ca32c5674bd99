//! Completeness and start edges, with the real `c42fwd` binary against the emulator:
//! a lag configured shorter than the tenant's real one is repaired by reconciliation
//! (every event exactly once, the late ones counted and reported); a checkpoint from the
//! future is refused; a source that keeps failing keeps its start edge across restarts
//! of the source and of the process; checkpoints are private whatever the umask.

use crate::support::config::{
    credentials, file_sink_from_audit, head, Api, METRICS_ON_A_FREE_PORT,
};
use crate::support::daemon::{c42fwd, log_path, log_tail, start_emulator, Daemon};
use crate::support::metrics::{self, scrape};
use crate::support::wait_for;
use crate::support::{file_records, multiset};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    out: PathBuf,
}

impl Setup {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn checkpoint(&self) -> PathBuf {
        self.state().join("checkpoints/audit.json")
    }

    /// The daemon's log. Its stderr is a file, not a terminal: no colour codes in it.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(log_path(&self.config)).unwrap_or_default();
        assert!(
            !log.contains('\x1b'),
            "ANSI escape codes in a log that is not a terminal:\n{log}"
        );
        log
    }

    /// The events written by the file sink, as a multiset of their JSON texts.
    fn received(&self) -> HashMap<String, usize> {
        file_records(&self.out)
    }

    fn write_secret(&self, secret: &str) {
        std::fs::write(self.dir.path().join("secret"), format!("{secret}\n")).unwrap();
    }
}

/// The emulator's Audit Log (Incydr) -> one file sink of raw JSON lines; `source` holds
/// the source's own keys (lag, reconcile_after, ...).
fn setup(emu: &EmulatorHandle, opts: &EmulatorOptions, source: &str) -> Setup {
    setup_api(emu, opts, Api::Incydr, source)
}

fn setup_api(emu: &EmulatorHandle, opts: &EmulatorOptions, api: Api, source: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c42fwd.toml");
    let out = dir.path().join("out.ndjson");
    let text = format!(
        r#"
{head}
{METRICS_ON_A_FREE_PORT}
[tenants.emu]
base_url = "{base}"
{credentials}

[sources.audit]
type = "audit_log"
tenant = "emu"
poll_interval = "200ms"
{source}

{file_sink}"#,
        head = head(dir.path(), "10s"),
        base = emu.base_url(),
        credentials = credentials(api, opts, Some(&dir.path().join("secret"))),
        file_sink = file_sink_from_audit(&out),
    );
    std::fs::write(&config, text).unwrap();
    let s = Setup { dir, config, out };
    s.write_secret(match api {
        Api::Incydr => &opts.client_secret,
        Api::Legacy => &opts.password,
    });
    s
}

/// The value of one metric line (`name{labels}`), 0 when absent.
async fn metric(addr: &str, series: &str) -> f64 {
    metrics::metric(&scrape(addr).await.unwrap_or_default(), series)
}

fn assert_exactly_once(
    got: &HashMap<String, usize>,
    truth_cut: &HashMap<String, usize>,
    truth_all: &HashMap<String, usize>,
) {
    for (k, n) in truth_cut {
        let g = got.get(k).copied().unwrap_or(0);
        assert_eq!(
            g, *n,
            "received {g} times, the tenant has it {n} times: {k}"
        );
    }
    for (k, g) in got {
        let n = truth_all.get(k).copied().unwrap_or(0);
        assert!(
            *g <= n,
            "received {g} times, the tenant has it {n} times: {k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lag_shorter_than_the_tenants_is_repaired_by_reconciliation_exactly_once() {
    lag_too_short_is_repaired(Api::Incydr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_without_a_count_endpoint_is_repaired_by_re_reading() {
    lag_too_short_is_repaired(Api::Legacy).await;
}

async fn lag_too_short_is_repaired(api: Api) {
    // The tenant: most events show up within 1 s, 5% of them 3 s later than that.
    let opts = EmulatorOptions {
        seed: 23,
        backlog: 0,
        rate: 40.0,
        lag: Duration::from_secs(1),
        late_fraction: 0.05,
        late_by: Duration::from_secs(3),
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    // c42fwd believes in 2 s: the late events are skipped by the poll. Windows are
    // compared 3 s past the lag, when even the late ones (at most 4 s) are visible.
    let s = setup_api(
        &emu,
        &opts,
        api,
        "start = \"1h\"\nlag = \"2s\"\nreconcile_after = \"3s\"",
    );
    let daemon = Daemon::start(&s.config).await;

    let first = emu.started_at() - chrono::Duration::hours(1);
    let cut = emu.started_at() + chrono::Duration::seconds(8);
    let truth_cut = multiset(emu.events_between(first, cut));
    assert!(truth_cut.values().sum::<usize>() > 200);
    let within = Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = s.received();
        if truth_cut
            .iter()
            .all(|(k, n)| got.get(k).copied().unwrap_or(0) >= *n)
        {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            // Everything that tells where they went: their times, what the emulator
            // served, what the daemon counted, its whole log.
            let mut missing: Vec<String> = truth_cut
                .keys()
                .filter(|k| !got.contains_key(*k))
                .map(|k| {
                    serde_json::from_str::<serde_json::Value>(k)
                        .ok()
                        .and_then(|v| v["timestamp"].as_str().map(str::to_string))
                        .unwrap_or_else(|| k.clone())
                })
                .collect();
            missing.sort();
            let counted: Vec<String> = scrape(&daemon.metrics_addr().await)
                .await
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("c42fwd_source"))
                .map(str::to_string)
                .collect();
            panic!(
                "{} of {} events never arrived within {within:?}, occurred at {missing:?}\n\
                 emulator started {} served {:?}\ndaemon metrics:\n{}\nlog:\n{}",
                missing.len(),
                truth_cut.len(),
                emu.started_at(),
                emu.stats(),
                counted.join("\n"),
                s.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reconciled = metric(
        &daemon.metrics_addr().await,
        "c42fwd_source_reconciled_total{source=\"audit\"}",
    )
    .await;
    assert!(daemon.terminate().await.success());

    let truth_all = multiset(emu.events_between(first, Utc::now() + chrono::Duration::seconds(1)));
    assert_exactly_once(&s.received(), &truth_cut, &truth_all);
    // The late ones came through reconciliation, counted and reported.
    let late_total = (truth_cut.values().sum::<usize>() as f64) * 0.05;
    assert!(
        reconciled >= 1.0 && reconciled <= 3.0 * late_total + 10.0,
        "c42fwd_source_reconciled_total = {reconciled}, about {late_total} late events"
    );
    let log = s.log();
    let warn = log
        .lines()
        .find(|l| l.contains("the lag is too short"))
        .unwrap_or_else(|| panic!("no WARN about the lag:\n{}", log_tail(&s.config)));
    assert!(
        warn.contains("WARN") && warn.contains("short_by") && warn.contains("lag=2s"),
        "{warn}"
    );
    // Incydr answered with its count; legacy has none, and the window was re-read.
    let counted = match api {
        Api::Incydr => "api_count=Some(",
        Api::Legacy => "api_count=None",
    };
    assert!(warn.contains(counted), "{warn}");
}

/// This host's clock runs 6 s ahead of the tenant's (a fresh virtual machine whose time
/// sync has not stepped its clock yet, a host without NTP), with a lag of 2 s against a
/// tenant that lists its events within 1 s and no reconciliation: by this host's clock
/// every event shows up 7 s late, past the lag, and a window on this host's clock would
/// skip them all for good. The window follows the API's clock (its `Date` headers):
/// every event arrives, by the poll, exactly once; the skew is logged and exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_clock_ahead_of_the_apis_skips_nothing() {
    for api in [Api::Incydr, Api::Legacy] {
        host_clock_ahead_skips_nothing(api).await;
    }
}

async fn host_clock_ahead_skips_nothing(api: Api) {
    let ahead = chrono::Duration::seconds(6);
    let opts = EmulatorOptions {
        seed: 29,
        backlog: 0,
        rate: 40.0,
        lag: Duration::from_secs(1),
        start_time: Some(Utc::now() - ahead),
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let s = setup_api(&emu, &opts, api, "start = \"1h\"\nlag = \"2s\"");
    let daemon = Daemon::start(&s.config).await;

    let first = emu.started_at() - chrono::Duration::hours(1);
    let cut = emu.started_at() + chrono::Duration::seconds(6);
    let truth_cut = multiset(emu.events_between(first, cut));
    assert!(truth_cut.values().sum::<usize>() > 150);
    let all_in = |got: &HashMap<String, usize>| {
        truth_cut
            .iter()
            .all(|(k, n)| got.get(k).copied().unwrap_or(0) >= *n)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut got = s.received();
    while !all_in(&got) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = s.received();
    }
    let arrived = all_in(&got);
    let ts = |k: &String| {
        serde_json::from_str::<serde_json::Value>(k)
            .ok()
            .and_then(|v| v["timestamp"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let mut missing_at: Vec<String> = truth_cut
        .keys()
        .filter(|k| !got.contains_key(*k))
        .map(ts)
        .collect();
    missing_at.sort();
    let mut got_at: Vec<String> = got.keys().map(ts).collect();
    got_at.sort();
    let missing = missing_at.len();
    assert!(
        arrived,
        "{api:?}: {missing} of {} events never arrived (occurred {:?} to {:?}; received {:?} to {:?}; emulator started {}); log:\n{}",
        truth_cut.len(),
        missing_at.first(),
        missing_at.last(),
        got_at.first(),
        got_at.last(),
        emu.started_at(),
        s.log()
    );
    let text = scrape(&daemon.metrics_addr().await)
        .await
        .unwrap_or_default();
    let offset = metrics::metric(&text, "c42fwd_api_clock_offset_seconds{tenant=\"emu\"}");
    assert!(daemon.terminate().await.success());
    // The lower bound of the true -6 s: within the Date header's second and a round trip.
    assert!((-7.5..=-6.0).contains(&offset), "{api:?}: offset {offset}");
    let truth_all = multiset(emu.events_between(first, Utc::now() + chrono::Duration::seconds(1)));
    assert_exactly_once(&s.received(), &truth_cut, &truth_all);
    let log = s.log();
    let warn = log
        .lines()
        .find(|l| l.contains("the api's clock is"))
        .unwrap_or_else(|| panic!("{api:?}: no WARN about the clock:\n{log}"));
    assert!(
        warn.contains("WARN") && warn.contains("behind this host's"),
        "{warn}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_in_the_future_is_refused_and_marked_by_checkpoint_show() {
    let opts = EmulatorOptions {
        backlog: 200,
        rate: 0.0,
        lag: Duration::ZERO,
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let s = setup(&emu, &opts, "start = \"2h\"\nlag = \"1s\"");
    std::fs::create_dir_all(s.state().join("checkpoints")).unwrap();
    let future = (Utc::now() + chrono::Duration::hours(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = format!(
        r#"{{"version":1,"source":"audit","kind":"audit_log","watermark":"{future}","fingerprints":[],"updated_at":"{future}"}}"#
    );
    std::fs::write(s.checkpoint(), &text).unwrap();

    let out = c42fwd()
        .args(["checkpoint", "show", "--config"])
        .arg(&s.config)
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("IN THE FUTURE (by 2h 59m")
            && shown.contains("the source will refuse to start")
            && shown.contains("c42fwd checkpoint reset --config <config file> audit"),
        "{shown}"
    );

    let daemon = Daemon::start(&s.config).await;
    wait_for("the refusal in the log", Duration::from_secs(30), || {
        s.log().contains("in the future")
    })
    .await;
    let log = s.log();
    let line = log.lines().find(|l| l.contains("in the future")).unwrap();
    assert!(
        line.contains("ERROR")
            && line.contains(&s.checkpoint().display().to_string())
            && line.contains("c42fwd checkpoint reset --config <config file> audit"),
        "{line}"
    );
    assert!(daemon.terminate().await.success());
    assert!(s.received().is_empty(), "nothing was read past the refusal");
    assert_eq!(
        std::fs::read_to_string(s.checkpoint()).unwrap(),
        text,
        "the checkpoint is left for the operator"
    );
}

/// The start edge written in the checkpoint.
fn start_edge(checkpoint: &Path) -> (DateTime<Utc>, DateTime<Utc>) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checkpoint).unwrap()).unwrap();
    let t = |k: &str| {
        DateTime::parse_from_rfc3339(v[k].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    (t("start"), t("watermark"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_keeps_its_start_edge_and_checkpoints_are_private_under_umask_0() {
    use std::os::unix::fs::PermissionsExt;
    let opts = EmulatorOptions {
        seed: 5,
        backlog: 0,
        rate: 30.0,
        lag: Duration::ZERO,
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let s = setup(&emu, &opts, "start = \"1s\"\nlag = \"1s\"");
    // The API refuses the secret: the source fails, and is restarted, again and again.
    s.write_secret("not-the-secret");
    let log = std::fs::File::create(log_path(&s.config)).unwrap();
    // The umask is cleared in the child only: the test process's own is shared by every
    // parallel test.
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" --log info run --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_c42fwd"))
        .arg(&s.config)
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start c42fwd under umask 000");
    // The supervisor's stable line for a failed task (the only task that fails here).
    let failures = |s: &Setup| {
        s.log()
            .matches("task failed; it restarts from its checkpoint")
            .count()
    };
    // Three failures: the supervisor's backoff (1 s, 2 s) has let a few seconds pass,
    // enough for a recomputed "1s ago" to lie well after the first edge.
    wait_for("three source failures", Duration::from_secs(30), || {
        failures(&s) >= 3
    })
    .await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&s.checkpoint()),
        0o600,
        "checkpoint file under umask 0"
    );
    assert_eq!(mode(s.checkpoint().parent().unwrap()), 0o700);
    let (edge, watermark) = start_edge(&s.checkpoint());
    assert_eq!(edge, watermark, "nothing was read yet");
    child.kill().await.unwrap();
    let _ = child.wait().await;

    // Some seconds later the process starts again, still failing: same edge.
    let before = failures(&s);
    let daemon = Daemon::start(&s.config).await;
    wait_for(
        "a failure after the restart",
        Duration::from_secs(30),
        || failures(&s) > before,
    )
    .await;
    assert_eq!(start_edge(&s.checkpoint()), (edge, watermark));
    assert!(daemon.terminate().await.success());
    assert!(
        Utc::now() - edge > chrono::Duration::seconds(3),
        "time has passed"
    );

    // The secret fixed: everything from the first edge on arrives, exactly once.
    s.write_secret(&opts.client_secret);
    let daemon = Daemon::start(&s.config).await;
    let cut = edge + chrono::Duration::seconds(3);
    let truth_cut = multiset(emu.events_between(edge, cut));
    assert!(truth_cut.values().sum::<usize>() > 50);
    wait_for(
        "every event from the first edge",
        Duration::from_secs(60),
        || {
            let got = s.received();
            truth_cut
                .iter()
                .all(|(k, n)| got.get(k).copied().unwrap_or(0) >= *n)
        },
    )
    .await;
    assert!(daemon.terminate().await.success());
    let truth_all = multiset(emu.events_between(edge, Utc::now() + chrono::Duration::seconds(1)));
    assert_exactly_once(&s.received(), &truth_cut, &truth_all);
    assert_eq!(
        start_edge(&s.checkpoint()).0,
        edge,
        "the edge stays recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_count_reconciliation_asks_for_agrees_with_the_tenant() {
    use c42fwd::api::AlertQuery;
    use c42fwd::config::ApiGeneration;
    use c42fwd::metrics::Metrics;
    use std::sync::Arc;
    let opts = EmulatorOptions {
        backlog: 0,
        alert_backlog: 400,
        alert_rate: 0.0,
        lag: Duration::ZERO,
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    for api in [ApiGeneration::Incydr, ApiGeneration::Legacy] {
        let tenant = crate::support::source::tenant(api, &emu, &opts);
        let client = crate::support::source::client(&tenant, &Arc::new(Metrics::new()));
        let end = emu.started_at();
        for span in [chrono::Duration::minutes(10), chrono::Duration::hours(2)] {
            let start = end - span;
            // `query-alerts` windows are inclusive at both ends; the ground truth's end is
            // exclusive: no alert sits exactly at the emulator's start.
            let truth = emu.alert_summaries_between(start, end).len() as u64;
            assert!(truth > 10, "the window holds alerts: {truth}");
            let q = AlertQuery {
                start,
                end,
                page: 3,
                page_size: 200,
                groups: &[],
            };
            let n = client.count_alerts(&q).await.expect("count_alerts");
            assert_eq!(n, truth, "{api:?} over {span}");
        }
    }
}

/// Alerts, through the real poller in-process: 10% of the alerts show up 3 s past the
/// emulator's 1 s lag, the source believes in 2 s; reconciliation (on `totalCount`)
/// brings every alert exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_alerts_are_reconciled_exactly_once() {
    use crate::support::source::{client, counter, in_range, run_source, tenant, test_sink};
    use c42fwd::api::expand_observation_data;
    use c42fwd::checkpoint::Store;
    use c42fwd::config::{ApiGeneration, Source, SourceSpec, StartAt};
    use c42fwd::metrics::Metrics;
    use c42fwd::sources::alerts::AlertsFetch;
    use std::sync::Arc;
    let o = EmulatorOptions {
        seed: 31,
        backlog: 0,
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 25.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        lag: Duration::from_secs(1),
        late_fraction: 0.1,
        late_by: Duration::from_secs(3),
        ..Default::default()
    };
    let emu = start_emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(ApiGeneration::Incydr, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at();
    let cut = start + chrono::Duration::seconds(6);
    let src = Source {
        name: "alerts".into(),
        tenant: "emulated".into(),
        kind: SourceSpec::Alerts(Vec::new()),
        lag: Duration::from_secs(2),
        poll_interval: Duration::from_millis(200),
        start: StartAt::At(start),
        page_size: 100,
        reconcile_after: Some(Duration::from_secs(3)),
    };
    let (route, seen, _sink) = test_sink();
    let mut run = run_source::<AlertsFetch>(&src, client, &store, metrics.clone(), route);
    let mut expected: Vec<String> = emu
        .alerts_between(start, cut)
        .iter()
        .map(|a| expand_observation_data(a).text)
        .collect();
    expected.sort();
    assert!(expected.len() > 100, "{}", expected.len());
    run.wait_for("every alert before the cut", || {
        in_range(&seen, start, cut).len() >= expected.len()
    })
    .await;
    run.stop().await;
    assert!(
        in_range(&seen, start, cut) == expected,
        "each alert exactly once"
    );
    let reconciled = counter(&metrics, "c42fwd_source_reconciled_total");
    assert!(
        (1..=expected.len() as u64 / 4).contains(&reconciled),
        "late alerts came through reconciliation: {reconciled}"
    );
}
