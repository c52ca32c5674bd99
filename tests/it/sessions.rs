//! Integration tests of the Sessions source against the emulator: sessions that change
//! after they are created (`lastUpdated` moves) are forwarded once per version, with
//! their file events when asked, through small API pages whose order moves while they
//! are read, with expiring tokens and injected faults, and from a backlog of several
//! window pages; through the real binary to a real rsyslog with a live stream, a
//! SIGKILL and a SIGTERM restart, no version is lost and none arrives twice but those a
//! kill caught in flight (sent, not yet in the checkpoint); `demo --source sessions`.
//!
//! Versions are told apart by `(sessionId, lastUpdated)`, compared with the emulator's
//! ground truth (`EmulatorHandle::session_versions_between`). Waits are on conditions
//! with a deadline, never fixed sleeps.

use crate::support::config::{emu_tenant, head};
use crate::support::daemon::{log_tail, start_emulator, Daemon};
use crate::support::rsyslog::{Rsyslog, RsyslogOptions};
use crate::support::source::*;
use crate::support::wait_for;
use c42fwd::checkpoint::Store;
use c42fwd::config::{ApiGeneration, SessionOptions, Source, SourceSpec, StartAt};
use c42fwd::event::SourceKind;
use c42fwd::metrics::Metrics;
use c42fwd::sources::sessions::{session_fingerprint, SessionsFetch};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions, FaultOptions};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

type Version = (String, i64);

fn session_opts(rate: f64, update_every: Duration) -> EmulatorOptions {
    EmulatorOptions {
        seed: 31,
        // Only sessions are read here: keep the rest small.
        backlog: 10,
        backlog_span: Duration::from_secs(600),
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        session_backlog: 0,
        session_rate: rate,
        session_update_every: update_every,
        lag: Duration::from_secs(1),
        ..EmulatorOptions::default()
    }
}

/// `(sessionId, lastUpdated)` of a forwarded session record.
fn version_of(json: &str) -> Version {
    let v: serde_json::Value = serde_json::from_str(json).expect("session json");
    (
        v["sessionId"].as_str().expect("sessionId").to_string(),
        v["lastUpdated"].as_i64().expect("lastUpdated"),
    )
}

fn ids(versions: &[Version]) -> HashSet<String> {
    versions.iter().map(|(id, _)| id.clone()).collect()
}

/// Live sessions, each updated every 1.5 s (up to three times), read in API pages of 7
/// (so the `endTime` order moves under the reader): every version of every session that
/// began in the first three seconds arrives exactly once, with its file events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_sessions_are_forwarded_once_per_version_with_their_file_events() {
    let o = session_opts(5.0, Duration::from_millis(1500));
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(ApiGeneration::Incydr, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = emu.started_at() - TimeDelta::seconds(60);
    let cut = emu.started_at() + TimeDelta::seconds(3);
    let src = Source {
        name: "sessions".into(),
        tenant: "emulated".into(),
        kind: SourceSpec::Sessions(SessionOptions {
            has_alerts: true,
            include_events: true,
        }),
        lag: Duration::from_secs(60),
        poll_interval: Duration::from_millis(100),
        start: StartAt::At(first),
        page_size: 7,
        reconcile_after: None,
    };
    let (route, seen, _sink) = test_sink();
    let mut run = run_source::<SessionsFetch>(&src, client, &store, metrics.clone(), route);
    // Every version of the sessions begun before the cut is out once the emulator's
    // clock is past the last of them (three updates, 1.5 s apart, after the lag).
    let settled = cut + TimeDelta::milliseconds(1000 + 3 * 1500 + 1000);
    let got = |seen: &Seen| -> Vec<Version> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(j, _, _)| version_of(j))
            .collect()
    };
    let truth = || emu.session_versions_between(first, cut, true);
    run.wait_for("every version of the sessions begun before the cut", || {
        // The emulator's clock follows the wall clock from its start.
        let now = Utc::now();
        let want: BTreeSet<Version> = truth().into_iter().collect();
        let have: BTreeSet<Version> = got(&seen).into_iter().collect();
        now >= settled && want.is_subset(&have)
    })
    .await;
    run.stop().await;

    let want = truth();
    let want_ids = ids(&want);
    assert!(want_ids.len() >= 8, "sessions began: {}", want_ids.len());
    let updated = want.len() - want_ids.len();
    assert!(updated >= 5, "the sessions were updated: {updated} updates");
    // Forwarded versions of those sessions: each exactly once, the same set.
    let mut counts: HashMap<Version, usize> = HashMap::new();
    for v in got(&seen)
        .into_iter()
        .filter(|(id, _)| want_ids.contains(id))
    {
        *counts.entry(v).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "versions forwarded twice: {twice:?}");
    let have: BTreeSet<Version> = counts.into_keys().collect();
    assert_eq!(have, want.into_iter().collect::<BTreeSet<_>>());
    // Each record is the session with its file events, alerts, scores and states.
    for (json, occurred, kind) in seen.lock().unwrap().iter() {
        assert_eq!(*kind, SourceKind::Sessions);
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert!(
            !v["fileEvents"].as_array().unwrap().is_empty(),
            "file events: {json}"
        );
        assert!(!v["triggeredAlerts"].as_array().unwrap().is_empty());
        assert_eq!(
            v["scores"].as_array().unwrap().len(),
            v["states"].as_array().unwrap().len()
        );
        assert_eq!(
            occurred.timestamp_millis(),
            v["beginTime"].as_i64().unwrap()
        );
    }
    assert_eq!(counter(&metrics, "c42fwd_source_details_missing_total"), 0);
}

/// `has_alerts = false`: the sessions without alerts, whose file events the API refuses
/// (404): each version still goes out once, without `fileEvents`, and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_without_alerts_go_out_without_file_events_and_are_counted() {
    let o = session_opts(8.0, Duration::from_millis(1500));
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(ApiGeneration::Incydr, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = emu.started_at() - TimeDelta::seconds(60);
    let cut = emu.started_at() + TimeDelta::seconds(3);
    let src = Source {
        name: "quiet".into(),
        tenant: "emulated".into(),
        kind: SourceSpec::Sessions(SessionOptions {
            has_alerts: false,
            include_events: true,
        }),
        lag: Duration::from_secs(60),
        poll_interval: Duration::from_millis(100),
        start: StartAt::At(first),
        page_size: 50,
        reconcile_after: None,
    };
    let (route, seen, _sink) = test_sink();
    let mut run = run_source::<SessionsFetch>(&src, client, &store, metrics.clone(), route);
    let settled = cut + TimeDelta::milliseconds(1000 + 3 * 1500 + 1000);
    let truth = || -> BTreeSet<Version> {
        emu.session_versions_between(first, cut, false)
            .into_iter()
            .collect()
    };
    run.wait_for("every version of the sessions without alerts", || {
        let have: BTreeSet<Version> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(j, _, _)| version_of(j))
            .collect();
        Utc::now() >= settled && truth().is_subset(&have)
    })
    .await;
    run.stop().await;
    assert!(!truth().is_empty());
    let records = seen.lock().unwrap().clone();
    for (json, _, _) in &records {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert!(v.get("fileEvents").is_none(), "{json}");
        assert!(v["triggeredAlerts"].as_array().unwrap().is_empty());
    }
    assert_eq!(
        counter(&metrics, "c42fwd_source_details_missing_total"),
        records.len() as u64
    );
}

/// A backlog larger than a window page (1,000 sessions): the window is read in parts
/// (its earliest part holding a full page, found by the API's counts), and every session
/// arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_several_window_pages_arrives_exactly_once() {
    let o = EmulatorOptions {
        session_backlog: 2_600,
        backlog_span: Duration::from_secs(1_200),
        ..session_opts(0.0, Duration::from_secs(365 * 86_400))
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(ApiGeneration::Incydr, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = emu.started_at() - TimeDelta::seconds(1_500);
    let src = Source {
        name: "sessions".into(),
        tenant: "emulated".into(),
        kind: SourceSpec::Sessions(SessionOptions {
            has_alerts: true,
            include_events: false,
        }),
        lag: Duration::from_secs(60),
        poll_interval: Duration::from_millis(200),
        start: StartAt::At(first),
        page_size: 50,
        reconcile_after: None,
    };
    // Every session of the backlog is first observed within a second of its begin.
    let truth = || -> BTreeSet<Version> {
        emu.session_versions_between(first, emu.started_at(), true)
            .into_iter()
            .collect()
    };
    let settled = emu.started_at() + TimeDelta::seconds(2);
    let (route, seen, _sink) = test_sink();
    let mut run = run_source::<SessionsFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("every session of the backlog", || {
        let have: BTreeSet<Version> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(j, _, _)| version_of(j))
            .collect();
        Utc::now() >= settled && truth().is_subset(&have)
    })
    .await;
    run.stop().await;
    let want = truth();
    assert!(want.len() > 2_000, "{}", want.len());
    let got: Vec<Version> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(j, _, _)| version_of(j))
        .collect();
    let mut counts: HashMap<&Version, usize> = HashMap::new();
    for v in &got {
        *counts.entry(v).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let extra: Vec<_> = got.iter().filter(|v| !want.contains(*v)).collect();
    assert!(
        twice.is_empty() && extra.is_empty(),
        "twice {twice:?}, not the tenant's {extra:?}"
    );
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
    let requests = emu.stats().requests_to("/v1/sessions");
    eprintln!("{} sessions in {requests} requests", want.len());
}

/// Tokens that expire every two seconds, 401s, 429s and 500s on the session routes:
/// every version still arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_tokens_and_faults_lose_no_version_and_repeat_none() {
    let o = EmulatorOptions {
        token_ttl: Duration::from_secs(2),
        faults: FaultOptions {
            rate_limit_every: 5,
            retry_after: Duration::ZERO,
            server_error_every: 7,
            // One 401 to a fresh token (the client refreshes once; a second would be
            // the permanent refusal the supervisor handles).
            unauthorized_next: 1,
        },
        ..session_opts(4.0, Duration::from_secs(3))
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(ApiGeneration::Incydr, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = emu.started_at() - TimeDelta::seconds(60);
    let cut = emu.started_at() + TimeDelta::seconds(3);
    let src = Source {
        name: "sessions".into(),
        tenant: "emulated".into(),
        kind: SourceSpec::Sessions(SessionOptions {
            has_alerts: true,
            include_events: false,
        }),
        lag: Duration::from_secs(60),
        poll_interval: Duration::from_millis(100),
        start: StartAt::At(first),
        page_size: 10,
        reconcile_after: None,
    };
    let (route, seen, _sink) = test_sink();
    let mut run = run_source::<SessionsFetch>(&src, client, &store, metrics.clone(), route);
    let settled = cut + TimeDelta::milliseconds(1000 + 3 * 3000 + 1000);
    let got = |seen: &Seen| -> Vec<Version> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(j, _, _)| version_of(j))
            .collect()
    };
    let truth = || emu.session_versions_between(first, cut, true);
    run.wait_for("every version of the sessions begun before the cut", || {
        let want: BTreeSet<Version> = truth().into_iter().collect();
        let have: BTreeSet<Version> = got(&seen).into_iter().collect();
        Utc::now() >= settled && want.is_subset(&have)
    })
    .await;
    run.stop().await;
    let stats = emu.stats();
    assert!(stats.rate_limited > 0 && stats.server_errors > 0 && stats.unauthorized > 0);
    assert!(stats.tokens_issued > 2, "tokens expired and were renewed");
    let want = truth();
    let want_ids = ids(&want);
    let mut counts: HashMap<Version, usize> = HashMap::new();
    for v in got(&seen)
        .into_iter()
        .filter(|(id, _)| want_ids.contains(id))
    {
        *counts.entry(v).or_default() += 1;
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "a version twice: {counts:?}"
    );
    assert_eq!(
        counts.into_keys().collect::<BTreeSet<_>>(),
        want.into_iter().collect::<BTreeSet<_>>()
    );
}

/// The session JSON of an RFC 5424 line as rsyslog's `%rawmsg%` shows it.
fn message(line: &str) -> &str {
    line.splitn(8, ' ').nth(7).unwrap_or_default()
}

fn received(rs: &Rsyslog) -> Vec<Version> {
    rs.lines().iter().map(|l| version_of(message(l))).collect()
}

/// Whether a version was in the checkpoint: began before its watermark, or its
/// fingerprint is held.
fn committed(
    store: &Store,
    begin_of: &HashMap<String, DateTime<Utc>>,
) -> impl Fn(&Version) -> bool {
    let cp = store.load("sessions").unwrap().expect("a checkpoint");
    let held: HashSet<u64> = cp.fingerprints.iter().map(|s| s.hash).collect();
    let watermark = cp.watermark;
    let begin_of = begin_of.clone();
    move |(id, lu): &Version| {
        begin_of.get(id).is_some_and(|b| *b < watermark)
            || held.contains(&session_fingerprint(Some(id), Some(*lu), ""))
    }
}

/// The real binary, a live stream of sessions each updated every 2 s, TCP to rsyslog;
/// SIGKILL mid-stream and a restart, then SIGTERM and a restart. Every final version
/// arrives, every version published while the daemon ran arrives, and the only ones
/// that arrive twice were sent before the kill and not yet in its checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_version_once_through_rsyslog_across_sigkill_and_sigterm() {
    let o = session_opts(3.0, Duration::from_secs(2));
    let emu = start_emulator(o.clone()).await;
    let rs = Rsyslog::start(RsyslogOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c42fwd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
{head}
{tenant}
[sources.sessions]
type = "sessions"
tenant = "emu"
start = "10m"
lag = "1m"
poll_interval = "200ms"
page_size = 20

[sinks.octet]
type = "tcp"
host = "127.0.0.1"
port = {tcp}
format = "json"
framing = "octet_counting"
app_name = "octet"

[[routes]]
sources = ["sessions"]
sinks = ["octet"]
"#,
            head = head(dir.path(), "20s"),
            tenant = emu_tenant(&emu, &o),
            tcp = rs.tcp_port(),
        ),
    )
    .unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let started = Utc::now();
    let daemon = Daemon::start(&config).await;
    rs.wait_for_lines(25, Duration::from_secs(60)).await;
    let killed = Utc::now();
    daemon.kill9().await;
    let before_kill = received(&rs);
    let all_begins = |emu: &EmulatorHandle| -> HashMap<String, DateTime<Utc>> {
        emu.sessions_between(
            emu.started_at() - TimeDelta::hours(1),
            Utc::now() + TimeDelta::hours(1),
        )
        .iter()
        .map(|j| {
            let v: serde_json::Value = serde_json::from_str(j).unwrap();
            (
                v["sessionId"].as_str().unwrap().to_string(),
                DateTime::from_timestamp_millis(v["beginTime"].as_i64().unwrap()).unwrap(),
            )
        })
        .collect()
    };
    let was_committed = committed(&store, &all_begins(&emu));
    let in_flight: HashSet<Version> = before_kill
        .iter()
        .filter(|v| !was_committed(v))
        .cloned()
        .collect();

    let restarted = Utc::now();
    let daemon = Daemon::start(&config).await;
    let n = rs.lines().len();
    rs.wait_for_lines(n + 15, Duration::from_secs(60)).await;
    let terminated = Utc::now();
    assert!(daemon.terminate().await.success(), "{}", log_tail(&config));
    let restarted_again = Utc::now();
    let daemon = Daemon::start(&config).await;

    // Sessions begun until shortly after the second restart; all their versions are
    // published three updates (6 s) after they were first observed.
    let cut = restarted_again + TimeDelta::seconds(2);
    wait_for(
        "the emulator's clock to pass the last version of the sessions before the cut",
        Duration::from_secs(60),
        || Utc::now() >= cut + TimeDelta::seconds(9),
    )
    .await;
    let first = emu.started_at() - TimeDelta::hours(1);
    let truth = emu.session_versions_between(first, cut, true);
    // A version is due when it is a session's last, or was current (2 s, from its
    // `lastUpdated`) wholly while a daemon ran (a margin of a second each side).
    let down = [(killed, restarted), (terminated, restarted_again)];
    let last: HashMap<String, i64> = truth.iter().fold(HashMap::new(), |mut m, (id, lu)| {
        let e = m.entry(id.clone()).or_insert(*lu);
        *e = (*e).max(*lu);
        m
    });
    let due: BTreeSet<Version> = truth
        .iter()
        .filter(|(id, lu)| {
            let at = DateTime::from_timestamp_millis(*lu).unwrap();
            let running = at >= started + TimeDelta::seconds(2)
                && down.iter().all(|(from, to)| {
                    at + TimeDelta::seconds(3) < *from || at > *to + TimeDelta::seconds(1)
                });
            last.get(id) == Some(lu) || running
        })
        .cloned()
        .collect();
    assert!(due.len() >= 40, "versions due: {}", due.len());
    wait_for(
        "every due version at rsyslog",
        Duration::from_secs(60),
        || {
            let have: BTreeSet<Version> = received(&rs).into_iter().collect();
            due.is_subset(&have)
        },
    )
    .await;
    assert!(daemon.terminate().await.success(), "{}", log_tail(&config));

    let got = received(&rs);
    let updated = got.len() - ids(&got).len();
    assert!(
        updated >= 10,
        "updated sessions were forwarded again: {updated}"
    );
    let mut counts: HashMap<Version, usize> = HashMap::new();
    for v in got {
        *counts.entry(v).or_default() += 1;
    }
    for (v, n) in &counts {
        match n {
            1 => {}
            2 => assert!(
                in_flight.contains(v),
                "{v:?} arrived twice but was not in flight at the kill"
            ),
            _ => panic!("{v:?} arrived {n} times"),
        }
    }
    let versions_of_truth: HashSet<Version> = truth.into_iter().collect();
    let unknown: Vec<_> = counts
        .keys()
        .filter(|v| {
            DateTime::from_timestamp_millis(v.1).unwrap() < cut && !versions_of_truth.contains(v)
        })
        .filter(|(id, _)| last.contains_key(id))
        .collect();
    assert!(
        unknown.is_empty(),
        "versions the tenant never had: {unknown:?}"
    );
    eprintln!(
        "sessions through rsyslog: {} versions due, {} in flight at the kill",
        due.len(),
        in_flight.len()
    );
}

/// `c42fwd demo --source sessions`: the emulated tenant's sessions as CEF on stdout,
/// each with its session id and version; SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_sessions() {
    use tokio::io::AsyncBufReadExt;
    let mut child = crate::support::daemon::c42fwd()
        .args([
            "demo",
            "--source",
            "sessions",
            "--rate",
            "2",
            "--backlog",
            "8",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while got.len() < 5 {
            match lines.next_line().await.unwrap() {
                Some(l) => got.push(l),
                None => break,
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "demo printed only {} lines in 60 s",
        got.len()
    );
    for l in &got {
        assert!(
            l.contains(" - CEF:0|Code42|Sessions|1|"),
            "not a session: {l}"
        );
        assert!(l.contains(" externalId=") && l.contains("|rt="), "{l}");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("demo exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
