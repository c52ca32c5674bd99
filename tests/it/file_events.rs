//! File Events end to end: the emulated tenant's `/v2/file-events` -> the real `c42fwd`
//! binary -> a real rsyslog.
//!
//! The raw sink sends each API event untouched (`format = "json"`), so what rsyslog
//! wrote is compared with the emulator's ground truth by `event.id`; a CEF sink beside
//! it shows the mapping through the same route. The pgToken paging is exercised where
//! it matters: past the 10,000 results an offset page could reach (the emulator
//! refuses those, as the service does).

use crate::support::config::{emu_tenant_secret_file, head};
use crate::support::daemon::{log_tail, start_emulator, Daemon};
use crate::support::rsyslog::{Rsyslog, RsyslogOptions};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

/// A `file_events` source `files` to a raw JSON sink `raw` and a CEF sink `cef`, both
/// octet-counted TCP to one rsyslog.
fn write_config(emu: &EmulatorHandle, opts: &EmulatorOptions, rs: &Rsyslog, source: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c42fwd.toml");
    let text = format!(
        r#"
{head}
{tenant}
[sources.files]
type = "file_events"
tenant = "emu"
start = "1h"
poll_interval = "200ms"
{source}

[sinks.raw]
type = "tcp"
host = "127.0.0.1"
port = {tcp}
format = "json"
framing = "octet_counting"
app_name = "raw"
queue_batches = 2

[sinks.cef]
type = "tcp"
host = "127.0.0.1"
port = {tcp}
format = "cef"
framing = "octet_counting"
app_name = "cef"
queue_batches = 2

[[routes]]
sources = ["files"]
sinks = ["raw", "cef"]
"#,
        head = head(dir.path(), "20s"),
        tenant = emu_tenant_secret_file(dir.path(), emu, opts),
        tcp = rs.tcp_port(),
    );
    std::fs::write(&config, text).unwrap();
    Setup { _dir: dir, config }
}

/// `(app, msg)` of an RFC 5424 line.
fn parts(line: &str) -> (String, String) {
    let mut it = line.splitn(8, ' ');
    let app = it.nth(3).unwrap_or_default().to_string();
    (app, it.nth(3).unwrap_or_default().to_string())
}

fn id_of(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("a raw file event is JSON");
    v["event"]["id"].as_str().expect("event.id").to_owned()
}

fn inserted(json: &str) -> DateTime<Utc> {
    let v: serde_json::Value = serde_json::from_str(json).expect("JSON");
    v["event"]["inserted"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .expect("event.inserted")
}

/// The raw sink's events in arrival order, and the CEF sink's lines.
fn received(rs: &Rsyslog) -> (Vec<String>, Vec<String>) {
    let (mut raw, mut cef) = (Vec::new(), Vec::new());
    for line in rs.lines() {
        let (app, msg) = parts(&line);
        match app.as_str() {
            "raw" => raw.push(msg),
            "cef" => cef.push(msg),
            _ => {}
        }
    }
    (raw, cef)
}

fn counts(ids: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for id in ids {
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

/// Waits until the raw sink has every id of `truth`.
async fn wait_for_ids(rs: &Rsyslog, config: &Path, truth: &[String], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = counts(received(rs).0.iter().map(|j| id_of(j)));
        let missing = truth.iter().filter(|id| !got.contains_key(*id)).count();
        if missing == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{missing} of {} file events did not arrive within {within:?}\nc42fwd log:\n{}",
                truth.len(),
                log_tail(config)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The CEF value of `key` in an extension (up to the next ` key=`; tests only).
fn cef_value<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let start = msg.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &msg[start..];
    let end = rest
        .match_indices(' ')
        .find(|(i, _)| {
            let after = &rest[i + 1..];
            after
                .split_once('=')
                .is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric()))
        })
        .map_or(rest.len(), |(i, _)| i);
    Some(&rest[..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_event_reaches_rsyslog_once_through_lag_sigkill_and_restarts() {
    let opts = EmulatorOptions {
        seed: 13,
        backlog: 0,
        rate: 0.0,
        file_event_backlog: 12_000,
        backlog_span: Duration::from_secs(1_200),
        file_event_rate: 150.0,
        lag: Duration::from_secs(2),
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let rs = Rsyslog::start(RsyslogOptions::default()).await;
    // Small pages: the in-flight bound below stays well under what was sent.
    let page_size = 50;
    let setup = write_config(
        &emu,
        &opts,
        &rs,
        &format!("lag = \"3s\"\npage_size = {page_size}"),
    );

    // SIGKILL after a random number of events (two sinks: two lines per event).
    let kill_after = 2 * (4_000 + fastrand::usize(..5_000));
    let daemon = Daemon::start(&setup.config).await;
    rs.wait_for_lines(kill_after, Duration::from_secs(120))
        .await;
    daemon.kill9().await;
    let at_kill = received(&rs).0.len();

    // A restart, then a clean stop and another restart.
    let daemon = Daemon::start(&setup.config).await;
    rs.wait_for_lines(2 * (at_kill + 1_000), Duration::from_secs(120))
        .await;
    assert!(
        daemon.terminate().await.success(),
        "c42fwd exits 0 after SIGTERM"
    );
    let at_term = received(&rs).0.len();
    let daemon = Daemon::start(&setup.config).await;

    // Everything inserted up to 4 s after the start, lagging events included.
    let first = emu.started_at() - chrono::Duration::hours(2);
    let cut = emu.started_at() + chrono::Duration::seconds(4);
    let truth_cut = emu.file_event_ids_between(first, cut);
    assert!(truth_cut.len() > 12_000, "the live stream produced events");
    wait_for_ids(&rs, &setup.config, &truth_cut, Duration::from_secs(120)).await;
    assert!(daemon.terminate().await.success());

    let truth_all = emu.file_event_ids_between(first, Utc::now() + chrono::Duration::seconds(1));
    let known: std::collections::HashSet<&String> = truth_all.iter().collect();
    let (raw, cef) = received(&rs);
    let got = counts(raw.iter().map(|j| id_of(j)));
    for id in got.keys() {
        assert!(
            known.contains(id),
            "an event the tenant does not have: {id}"
        );
    }
    // At most the batches in flight at the SIGKILL went out twice; nothing else did
    // (the SIGTERM committed everything it had delivered).
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    let bound = c42fwd::sources::poll::MAX_IN_FLIGHT * page_size;
    eprintln!(
        "file events: sigkill after {at_kill}, sigterm after {at_term}, {} received, {duplicates} duplicates (bound {bound})",
        raw.len()
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than {bound}"
    );
    // The text is the API's, byte for byte.
    let texts: HashMap<String, String> = emu
        .file_events_between(first, cut)
        .into_iter()
        .map(|t| (id_of(&t), t))
        .collect();
    for j in &raw {
        if let Some(t) = texts.get(&id_of(j)) {
            assert_eq!(j, t);
        }
    }
    // The lag window was exercised: some events arrived after later-inserted ones.
    let late = raw
        .windows(2)
        .filter(|w| inserted(&w[1]) < inserted(&w[0]))
        .count();
    assert!(
        late > 0,
        "no late event: the test did not exercise the lag window"
    );

    // The CEF sink carried the same events, each with its class id and its id.
    let cef_ids = counts(
        cef.iter()
            .filter_map(|m| cef_value(m, "cs1").map(str::to_owned)),
    );
    for id in &truth_cut {
        assert!(cef_ids.contains_key(id), "CEF is missing {id}");
    }
    for m in &cef {
        assert!(m.starts_with("CEF:0|Code42|File Events|1|C42"), "{m}");
        assert_eq!(cef_value(m, "cs1Label"), Some("event.id"), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_past_ten_thousand_is_paged_by_token_exactly_once() {
    let opts = EmulatorOptions {
        seed: 17,
        backlog: 0,
        rate: 0.0,
        file_event_backlog: 25_000,
        backlog_span: Duration::from_secs(600),
        file_event_rate: 0.0,
        lag: Duration::ZERO,
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let rs = Rsyslog::start(RsyslogOptions::default()).await;
    let setup = write_config(&emu, &opts, &rs, "lag = \"1s\"\npage_size = 10000");
    let daemon = Daemon::start(&setup.config).await;
    let first = emu.started_at() - chrono::Duration::hours(2);
    let truth = emu.file_event_ids_between(first, emu.started_at());
    assert_eq!(truth.len(), 25_000);
    wait_for_ids(&rs, &setup.config, &truth, Duration::from_secs(120)).await;
    assert!(daemon.terminate().await.success());
    let (raw, _) = received(&rs);
    let got: Vec<String> = raw.iter().map(|j| id_of(j)).collect();
    assert_eq!(got, truth, "every event once, in insert order");
    // One query read by token: an offset page past 10,000 would have been refused
    // (and the source stopped). What was served twice is only the last lag (1 s) of
    // the backlog, read again by each later poll, never the backlog again.
    let served = emu.stats().events_from("/v2/file-events");
    assert!(
        (25_000..26_000).contains(&served),
        "{served} file events served for 25,000"
    );
}

/// A backlog read in concurrent time slices (four requests at once, each answered
/// 20 ms late), each slice its own query window paged by its own tokens: every event
/// once, in insert order, with more than one request in the emulator at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_in_concurrent_slices_is_paged_by_token_exactly_once() {
    let opts = EmulatorOptions {
        seed: 23,
        backlog: 0,
        rate: 0.0,
        file_event_backlog: 12_000,
        backlog_span: Duration::from_secs(600),
        file_event_rate: 0.0,
        lag: Duration::ZERO,
        latency: Duration::from_millis(20),
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let rs = Rsyslog::start(RsyslogOptions::default()).await;
    let setup = write_config(&emu, &opts, &rs, "lag = \"1s\"\npage_size = 500");
    // The tenant's table comes right before the source's.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text.replacen(
        "[sources.files]",
        "max_concurrent_requests = 4\n\n[sources.files]",
        1,
    );
    std::fs::write(&setup.config, text).unwrap();
    let daemon = Daemon::start(&setup.config).await;
    let first = emu.started_at() - chrono::Duration::hours(2);
    let truth = emu.file_event_ids_between(first, emu.started_at());
    assert_eq!(truth.len(), 12_000);
    wait_for_ids(&rs, &setup.config, &truth, Duration::from_secs(120)).await;
    assert!(daemon.terminate().await.success());
    let (raw, _) = received(&rs);
    let got: Vec<String> = raw.iter().map(|j| id_of(j)).collect();
    assert_eq!(got, truth, "every event once, in insert order");
    let stats = emu.stats();
    assert!(
        (2..=4).contains(&stats.max_data_in_flight),
        "{} data requests at once",
        stats.max_data_in_flight
    );
}

/// The file event fetcher of a source `files` (page 100) on an emulator started with
/// `opts`, its tenant allowing `max_concurrent_requests` at once.
async fn fetcher(
    opts: &EmulatorOptions,
    max_concurrent_requests: usize,
) -> (
    EmulatorHandle,
    c42fwd::sources::file_events::FileEventsFetch,
) {
    use crate::support::source::{client, emulator, tenant};
    use c42fwd::config::{ApiGeneration, FileEventFilters, Source, SourceSpec, StartAt};
    use c42fwd::metrics::Metrics;
    use c42fwd::sources::WindowFetch;
    use std::sync::Arc;

    let emu = emulator(opts.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let mut t = tenant(ApiGeneration::Incydr, &emu, opts);
    t.max_concurrent_requests = max_concurrent_requests;
    let api = client(&t, &metrics);
    let source = Source {
        name: "files".into(),
        tenant: "emulated".into(),
        kind: SourceSpec::FileEvents(FileEventFilters::default()),
        lag: Duration::from_secs(1),
        poll_interval: Duration::from_secs(1),
        start: StartAt::Ago(Duration::from_secs(3_600)),
        page_size: 100,
        reconcile_after: None,
    };
    let fetch =
        c42fwd::sources::file_events::FileEventsFetch::from_source(&source, api, metrics).unwrap();
    (emu, fetch)
}

/// The event ids of a fetched page, in order.
fn page_ids(p: &c42fwd::sources::poll::FetchedPage<c42fwd::event::Event>) -> Vec<String> {
    p.items.iter().map(|e| id_of(e.json())).collect()
}

/// The fetcher against the emulator: a page whose token expired, and a page asked
/// without the ones before it, are both reached by walking the query again; the walk
/// returns the asked page, not its first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_unknown_page_token_is_recovered_by_walking_the_query() {
    use c42fwd::sources::window::QueryWindow;
    use c42fwd::sources::WindowFetch;

    let opts = EmulatorOptions {
        seed: 19,
        backlog: 0,
        rate: 0.0,
        file_event_backlog: 1_000,
        backlog_span: Duration::from_secs(600),
        file_event_rate: 0.0,
        lag: Duration::ZERO,
        file_event_token_ttl: Duration::from_secs(60),
        ..Default::default()
    };
    let (emu, fetch) = fetcher(&opts, 1).await;
    let (start, end) = (
        emu.started_at() - chrono::Duration::hours(1),
        emu.started_at(),
    );
    let truth = emu.file_event_ids_between(start, end);
    assert_eq!(truth.len(), 1_000);
    let q = |page| QueryWindow {
        start,
        end,
        page,
        page_size: 100,
    };
    let requests = || emu.stats().requests_to("/v2/file-events");
    for page in 0..3 {
        let p = fetch.fetch_page(q(page)).await.unwrap();
        assert_eq!(page_ids(&p), truth[page as usize * 100..][..100]);
    }
    assert_eq!(
        requests(),
        3,
        "one request a page while the tokens are known"
    );
    // The token of page 3 expires: refused once, then pages 0 to 3 again.
    emu.advance(Duration::from_secs(61));
    let p = fetch.fetch_page(q(3)).await.unwrap();
    assert_eq!(page_ids(&p), truth[300..400]);
    assert_eq!(requests(), 3 + 1 + 4);
    // Page 6 without 4 and 5: walked from the last known token.
    let p = fetch.fetch_page(q(6)).await.unwrap();
    assert_eq!(page_ids(&p), truth[600..700]);
    assert_eq!(requests(), 8 + 3);
    // Past the last page (no nextPgToken on page 9): an empty page, no request.
    let p = fetch.fetch_page(q(9)).await.unwrap();
    assert_eq!(page_ids(&p), truth[900..]);
    let before = requests();
    assert!(fetch.fetch_page(q(10)).await.unwrap().items.is_empty());
    assert_eq!(requests(), before);
}

/// The fetcher against the emulator: two query windows (two slices of a catch-up)
/// paged in turn each keep their own tokens, one request a page; a window whose cursor
/// was let go among many others is walked again, and still returns the asked page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_windows_paged_in_turn_keep_their_own_tokens() {
    use c42fwd::sources::window::QueryWindow;
    use c42fwd::sources::WindowFetch;

    let opts = EmulatorOptions {
        seed: 29,
        backlog: 0,
        rate: 0.0,
        file_event_backlog: 2_000,
        backlog_span: Duration::from_secs(600),
        file_event_rate: 0.0,
        lag: Duration::ZERO,
        ..Default::default()
    };
    // Two requests at once: cursors for six windows are kept.
    let (emu, fetch) = fetcher(&opts, 2).await;
    let end = emu.started_at();
    // Windows that start a minute apart, each with more than 300 events.
    let starts: Vec<_> = (0..7)
        .map(|i| end - chrono::Duration::hours(1) + chrono::Duration::minutes(i))
        .collect();
    let q = |w: usize, page| QueryWindow {
        start: starts[w],
        end,
        page,
        page_size: 100,
    };
    let truth: Vec<Vec<String>> = starts
        .iter()
        .map(|&s| emu.file_event_ids_between(s, end))
        .collect();
    assert!(truth.iter().all(|t| t.len() > 300));
    let requests = || emu.stats().requests_to("/v2/file-events");
    for page in 0..3u32 {
        for (w, truth) in truth.iter().enumerate().take(2) {
            let p = fetch.fetch_page(q(w, page)).await.unwrap();
            assert_eq!(
                page_ids(&p),
                truth[page as usize * 100..][..100],
                "{w} {page}"
            );
        }
    }
    assert_eq!(requests(), 6, "one request a page: no window walked again");
    // Five more windows, one page each: the oldest cursor (window 0) is let go, window
    // 1 is kept.
    for w in 2..7 {
        fetch.fetch_page(q(w, 0)).await.unwrap();
    }
    let before = requests();
    let p = fetch.fetch_page(q(1, 3)).await.unwrap();
    assert_eq!(page_ids(&p), truth[1][300..400]);
    assert_eq!(requests(), before + 1, "window 1 kept its tokens");
    let p = fetch.fetch_page(q(0, 3)).await.unwrap();
    assert_eq!(page_ids(&p), truth[0][300..400]);
    assert_eq!(
        requests(),
        before + 1 + 4,
        "window 0 walked from its first page"
    );
}

/// `c42fwd demo --source file-events`: file events as CEF on stdout, until SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_file_events() {
    use crate::support::daemon::c42fwd;
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = c42fwd()
        .args([
            "demo",
            "--source",
            "file-events",
            "--rate",
            "20",
            "--backlog",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while got.len() < 15 {
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
        assert!(l.contains(" - CEF:0|Code42|File Events|1|C42"), "{l}");
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

/// Rate limits, server errors and refused access tokens on `/v2/file-events` delay the
/// source and lose nothing; every event arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_the_file_event_route_lose_nothing() {
    let opts = EmulatorOptions {
        seed: 23,
        backlog: 0,
        rate: 0.0,
        file_event_backlog: 4_000,
        backlog_span: Duration::from_secs(600),
        file_event_rate: 0.0,
        lag: Duration::ZERO,
        faults: c42fwd_emulator::FaultOptions {
            rate_limit_every: 5,
            retry_after: Duration::from_secs(0),
            server_error_every: 7,
            unauthorized_next: 2,
        },
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let rs = Rsyslog::start(RsyslogOptions::default()).await;
    let setup = write_config(&emu, &opts, &rs, "lag = \"1s\"\npage_size = 250");
    let daemon = Daemon::start(&setup.config).await;
    let first = emu.started_at() - chrono::Duration::hours(2);
    let truth = emu.file_event_ids_between(first, emu.started_at());
    wait_for_ids(&rs, &setup.config, &truth, Duration::from_secs(120)).await;
    assert!(daemon.terminate().await.success());
    let got: Vec<String> = received(&rs).0.iter().map(|j| id_of(j)).collect();
    assert_eq!(got, truth, "every event once, in insert order");
    let stats = emu.stats();
    assert!(
        stats.requests_to("/v2/file-events") > 16 + 2,
        "faults were injected"
    );
}
