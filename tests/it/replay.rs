//! `c42fwd replay`, as a user runs it: archived exports -> the real binary -> real
//! receivers (rsyslog, a TCP receiver).
//!
//! What is held: a replayed event is the very record the live `run` path sends for it;
//! an interrupted replay (SIGKILL) run again loses nothing and sends again no more than
//! the documented bound; bad lines are rejected with `FILE:LINE: reason` and kept
//! verbatim; overlapping exports send each event once; the exit codes.

use crate::support::config::{emu_tenant, head};
use crate::support::daemon::{c42fwd, log_tail, start_emulator, Daemon};
use crate::support::pki::TestPki;
use crate::support::relp_server::HeldRelp;
use crate::support::rsyslog::{
    ClientAuth, RelpListener, RelpTlsLib, Rsyslog, RsyslogOptions, TlsListener,
};
use crate::support::{lf_records, multiset, NumberedReceiver, TcpReceiver, PATIENCE};
use c42fwd_emulator::{EmulatorOptions, ExportFormat};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A tenant and a source that `replay` never contacts: a configuration needs one.
const IDLE_TENANT: &str = r#"[tenants.idle]
api = "incydr"
base_url = "https://127.0.0.1:9"
client_id = "replay-test"
client_secret = "not-used"

[sources.idle]
type = "audit_log"
tenant = "idle"
"#;

/// A config for `replay` under `dir`: state in `dir/state`, the sinks `sinks` (TOML),
/// every one on the route of the idle source.
fn replay_config(dir: &Path, sinks: &str, names: &[&str]) -> PathBuf {
    let path = dir.join("replay.toml");
    let names = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &path,
        format!(
            "{}\n{IDLE_TENANT}\n{sinks}\n[[routes]]\nsources = [\"idle\"]\nsinks = [{names}]\n",
            head(dir, "10s")
        ),
    )
    .unwrap();
    path
}

/// A TCP sink `name` to 127.0.0.1:`port`: CEF behind RFC 5424, octet counting.
fn cef_tcp_sink(name: &str, port: u16) -> String {
    format!(
        "[sinks.{name}]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\nformat = \"cef\"\n\
         [sinks.{name}.retry]\ninitial = \"50ms\"\nmax = \"200ms\"\n"
    )
}

/// A TCP sink `name`: the event's JSON text alone, one per line (so that a receiver's
/// bytes are the events).
fn json_lines_tcp_sink(name: &str, port: u16) -> String {
    format!(
        "[sinks.{name}]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\nformat = \"json\"\n\
         syslog = \"none\"\nframing = \"lf\"\nqueue_batches = 2\n\
         [sinks.{name}.retry]\ninitial = \"50ms\"\nmax = \"200ms\"\n"
    )
}

/// What one run of `c42fwd replay` said and how it ended.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn replay(args: &[&str]) -> Ran {
    let mut cmd = c42fwd();
    cmd.args(["--log", "info", "replay", "--progress", "none"])
        .args(args)
        .stdin(Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("replay ends within 120 s")
        .expect("run c42fwd replay");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path_arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Numbered Audit Log events, one JSON text each, `n` of them from `from`.
fn numbered_events(from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| {
            format!(
                r#"{{"type$":"audit_log::SearchIssued/1","actorId":"{i}","actorName":"user{i}@example.com","timestamp":"2024-05-01T{:02}:{:02}:{:02}.{:03}Z"}}"#,
                (i / 3600) % 24,
                (i / 60) % 60,
                i % 60,
                i % 1000
            )
        })
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// `[`, the records one per line with an indent, `]`: a saved list of records.
fn json_array(records: &[String]) -> Vec<u8> {
    format!("[\n  {}\n]\n", records.join(",\n  ")).into_bytes()
}

/// One record per line.
fn json_lines(records: &[String]) -> Vec<u8> {
    let mut text = records.join("\n");
    text.push('\n');
    text.into_bytes()
}

/// Replays each export (name, bytes) into a real rsyslog of its own, through the CEF
/// TCP sink the live run uses, and returns what each rsyslog received. Every replay
/// must end with exit 0, having read, sent and delivered exactly `n` records.
async fn replay_each_into_rsyslog(
    dir: &Path,
    files: &[(&'static str, Vec<u8>)],
    n: usize,
) -> Vec<(&'static str, Vec<String>)> {
    let mut replayed = Vec::new();
    for (name, bytes) in files {
        let file = dir.join(name);
        std::fs::write(&file, bytes).unwrap();
        let mut rs = Rsyslog::start_default().await;
        let sub = dir.join(name.replace('.', "-"));
        std::fs::create_dir(&sub).unwrap();
        let cfg = replay_config(&sub, &cef_tcp_sink("siem", rs.tcp_port()), &["siem"]);
        let ran = replay(&["--config", path_arg(&cfg), path_arg(&file)]).await;
        assert_eq!(ran.code, 0, "{name}: {}\n{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout
                .contains(&format!("{n} records read, {n} sent, {n} delivered")),
            "{name}: {}",
            ran.stdout
        );
        replayed.push((*name, rs.wait_for_lines(n, PATIENCE).await));
        rs.stop().await;
    }
    replayed
}

/// The live `run` path: the daemon reads the emulated tenant with `source` (the TOML
/// of `[sources.live]`, without its `type`'s section header) and forwards into a real
/// rsyslog through the same CEF TCP sink as [`replay_each_into_rsyslog`], until it has
/// sent every record of `want` (a multiset); returns everything it sent.
async fn live_records(
    emu: &c42fwd_emulator::EmulatorHandle,
    opts: &EmulatorOptions,
    source: &str,
    want: &HashMap<String, usize>,
) -> HashMap<String, usize> {
    let mut rs_live = Rsyslog::start_default().await;
    let live_dir = tempfile::tempdir().unwrap();
    let live_cfg = live_dir.path().join("live.toml");
    std::fs::write(
        &live_cfg,
        format!(
            "{}\n{}\n[sources.live]\ntenant = \"emu\"\n{source}\n\n{}\n[[routes]]\nsources = [\"live\"]\nsinks = [\"siem\"]\n",
            head(live_dir.path(), "10s"),
            emu_tenant(emu, opts),
            cef_tcp_sink("siem", rs_live.tcp_port()),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&live_cfg).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let live = loop {
        let live = multiset(rs_live.lines());
        if want
            .iter()
            .all(|(l, n)| live.get(l).copied().unwrap_or(0) >= *n)
        {
            break live;
        }
        if tokio::time::Instant::now() >= deadline {
            let missing: Vec<&String> = want
                .keys()
                .filter(|l| !live.contains_key(*l))
                .take(3)
                .collect();
            panic!(
                "replayed records the live path did not send (first 3): {missing:#?}\nlive sent {} lines\n{}",
                live.len(),
                log_tail(&live_cfg)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    daemon.terminate().await;
    rs_live.stop().await;
    live
}

/// Every replayed record of every export is a record the live path sent, one per
/// event (`n`); exports named in `lossy` are held to the live records on `key` only.
/// The syslog header carries the event's own time (within `window`, the exported
/// one), not the replay's.
fn assert_replayed_as_live(
    replayed: &[(&str, Vec<String>)],
    live: &HashMap<String, usize>,
    n: usize,
    lossy: &[&str],
    key: fn(&str) -> String,
    window: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
) {
    let live_keys = multiset(
        live.iter()
            .flat_map(|(l, n)| std::iter::repeat(key(l)).take(*n)),
    );
    for (name, lines) in replayed {
        assert_eq!(lines.len(), n, "{name}: one record per event");
        let (got, want) = if lossy.contains(name) {
            (multiset(lines.iter().map(|l| key(l))), &live_keys)
        } else {
            (multiset(lines.clone()), live)
        };
        let differ: Vec<&String> = got
            .iter()
            .filter(|(l, n)| want.get(*l).copied().unwrap_or(0) < **n)
            .map(|(l, _)| l)
            .take(2)
            .collect();
        assert!(
            differ.is_empty(),
            "{name}: records the live path did not send: {differ:#?}"
        );
        let first_time = lines[0].split(' ').nth(1).unwrap_or_default();
        let t = chrono::DateTime::parse_from_rfc3339(first_time)
            .unwrap_or_else(|e| panic!("{name}: header time {first_time:?}: {e}"));
        assert!(
            t >= window.0 - chrono::Duration::seconds(1) && t < window.1,
            "{name}: header time {first_time}, events from {} to {}",
            window.0,
            window.1
        );
    }
}

/// A CEF record's value of extension key `name` (up to the next space).
fn cef_field(l: &str, name: &str) -> String {
    l.split(&format!(" {name}="))
        .nth(1)
        .map(|r| r.split(' ').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// Events exported from the emulator in every Audit Log export format (JSON lines as
/// the official CLIs and the `file` sink with `format = "json"` write them, the
/// `search-results-export` JSON body, a JSON array of the events, the API's CSV
/// export, the console's CSV export, the server-side CEF export, and the JSON body
/// gzip- and zstd-compressed) are replayed into a real rsyslog each, and the live `run`
/// path forwards the same events from the emulated tenant into another: every replayed
/// record is byte for byte a record the live path sent (the event's own time in the
/// syslog header, the same Device Event Class ID), one per event, in every format (the
/// server-side CEF and the console's CSV exports, which are lossy, on the fields they
/// carry).
#[tokio::test]
async fn every_audit_log_export_replays_as_the_records_the_live_run_sends() {
    let opts = EmulatorOptions::default();
    let emu = start_emulator(opts.clone()).await;
    let started = emu.started_at();
    let (from, to) = (
        started - chrono::Duration::minutes(50),
        // Past the emulator's ingestion lag (2 min): the live path sees them all.
        started - chrono::Duration::minutes(5),
    );
    let exported = emu.events_between(from, to);
    assert!(exported.len() > 50, "{} events", exported.len());
    let dir = tempfile::tempdir().unwrap();
    let body = emu.audit_export_between(from, to, ExportFormat::Json);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("audit.jsonl", json_lines(&exported)),
        ("export.json", body.clone().into_bytes()),
        ("list.json", json_array(&exported)),
        (
            "export.csv",
            emu.audit_export_between(from, to, ExportFormat::Csv)
                .into_bytes(),
        ),
        (
            "console.csv",
            emu.audit_export_between(from, to, ExportFormat::ConsoleCsv)
                .into_bytes(),
        ),
        (
            "export.cef",
            emu.audit_export_between(from, to, ExportFormat::Cef)
                .into_bytes(),
        ),
        ("export.json.gz", gzip(body.as_bytes())),
        ("export.json.zst", zstd(body.as_bytes())),
    ];
    let replayed = replay_each_into_rsyslog(dir.path(), &files, exported.len()).await;
    let live = live_records(
        &emu,
        &opts,
        "type = \"audit_log\"\nstart = \"1h\"\nlag = \"3s\"\npoll_interval = \"200ms\"",
        &multiset(replayed[0].1.clone()),
    )
    .await;
    // The server-side CEF export and the console's CSV export are lossy (fewer fields;
    // times to the millisecond in CEF): their records are held to the live ones on
    // what both carry: the Device Event Class ID, the event time to the millisecond
    // (`rt`) and the actor (`suser`).
    let key = |l: &str| -> String {
        let class = l.split('|').nth(4).unwrap_or_default().to_string();
        format!(
            "{class} rt={} suser={}",
            cef_field(l, "rt"),
            cef_field(l, "suser")
        )
    };
    assert_replayed_as_live(
        &replayed,
        &live,
        exported.len(),
        &["export.cef", "console.csv"],
        key,
        (from, to),
    );
    emu.shutdown().await;
}

/// Alerts saved as a `query-details` response body, as alert details one per line and
/// as a JSON array, replayed into a real rsyslog each, are byte for byte the records
/// the live `run` path sends for the same alerts (observations expanded as the live
/// source does it, the alert's own time in the header).
#[tokio::test]
async fn alert_exports_replay_as_the_records_the_live_run_sends() {
    let opts = EmulatorOptions {
        backlog: 10,
        rate: 0.0,
        alert_backlog: 60,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        ..EmulatorOptions::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let started = emu.started_at();
    let (from, to) = (
        started - chrono::Duration::minutes(50),
        started - chrono::Duration::minutes(5),
    );
    let alerts = emu.alerts_between(from, to);
    assert!(alerts.len() >= 20, "{} alerts", alerts.len());
    assert!(alerts.iter().all(|a| a.contains("\"observations\":[")));
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "details.json",
            emu.alert_details_body_between(from, to).into_bytes(),
        ),
        ("alerts.jsonl", json_lines(&alerts)),
        ("alerts-list.json.zst", zstd(&json_array(&alerts))),
    ];
    let replayed = replay_each_into_rsyslog(dir.path(), &files, alerts.len()).await;
    let live = live_records(
        &emu,
        &opts,
        "type = \"alerts\"\nstart = \"1h\"\nlag = \"3s\"\npoll_interval = \"200ms\"",
        &multiset(replayed[0].1.clone()),
    )
    .await;
    assert_replayed_as_live(
        &replayed,
        &live,
        alerts.len(),
        &[],
        |l| l.to_string(),
        (from, to),
    );
    emu.shutdown().await;
}

/// The Directory Sync Log's CSV and JSON exports (and its entries one per line),
/// replayed into a real rsyslog each, are byte for byte the records the live `run`
/// path sends for the same entries.
#[tokio::test]
async fn sync_log_exports_replay_as_the_records_the_live_run_sends() {
    let opts = EmulatorOptions {
        backlog: 10,
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: 300,
        sync_log_span: Duration::from_secs(3_600),
        sync_log_rate: 0.0,
        ..EmulatorOptions::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let started = emu.started_at();
    let (from, to) = (
        started - chrono::Duration::minutes(50),
        started - chrono::Duration::minutes(5),
    );
    let entries = emu.sync_log_between(from, to);
    assert!(entries.len() >= 100, "{} entries", entries.len());
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "sync.csv",
            emu.sync_log_export_between(from, to, ExportFormat::Csv)
                .into_bytes(),
        ),
        (
            "sync.json",
            emu.sync_log_export_between(from, to, ExportFormat::Json)
                .into_bytes(),
        ),
        ("sync.jsonl.gz", gzip(&json_lines(&entries))),
    ];
    let replayed = replay_each_into_rsyslog(dir.path(), &files, entries.len()).await;
    let live = live_records(
        &emu,
        &opts,
        "type = \"sync_log\"\nstart = \"1h\"\nlag = \"3s\"\npoll_interval = \"200ms\"",
        &multiset(replayed[1].1.clone()),
    )
    .await;
    assert_replayed_as_live(
        &replayed,
        &live,
        entries.len(),
        &[],
        |l| l.to_string(),
        (from, to),
    );
    emu.shutdown().await;
}

/// A corrupted row in the middle of a CSV export and a gzip file cut short: each
/// reported as `FILE:LINE: reason` with its exact line, the row kept verbatim in the
/// rejects file, the other records delivered, exit code 1.
#[tokio::test]
async fn a_corrupted_csv_row_and_a_truncated_gzip_are_rejected_with_file_and_line() {
    let opts = EmulatorOptions::default();
    let emu = start_emulator(opts).await;
    let started = emu.started_at();
    let (from, to) = (started - chrono::Duration::minutes(30), started);
    let n = emu.events_between(from, to).len();
    let csv = emu.audit_export_between(from, to, ExportFormat::Csv);
    // Replace the 11th line (the 10th row, one physical line each here) by a bad row.
    let mut lines: Vec<&str> = csv.lines().collect();
    assert!(lines.len() > 20 && lines[1..21].iter().all(|l| l.matches('"').count() % 2 == 0));
    let bad_row = "LoggedIn,2024-01-01T00:00:00Z,only,four";
    lines.insert(11, bad_row);
    let dir = tempfile::tempdir().unwrap();
    let csv_file = dir.path().join("export.csv");
    std::fs::write(&csv_file, format!("{}\n", lines.join("\n"))).unwrap();
    let mut jsonl = emu.events_between(from, to).join("\n");
    jsonl.push('\n');
    let gz = gzip(jsonl.as_bytes());
    let gz_file = dir.path().join("cut.jsonl.gz");
    std::fs::write(&gz_file, &gz[..gz.len() / 2]).unwrap();
    let rx = TcpReceiver::bind().await;
    let cfg = replay_config(
        dir.path(),
        &json_lines_tcp_sink("siem", rx.port()),
        &["siem"],
    );
    // The CSV rows read back into the API's very JSON: without --no-dedupe the events
    // of the gzip file would be skipped as already sent.
    let ran = replay(&[
        "--config",
        path_arg(&cfg),
        "--no-dedupe",
        path_arg(&csv_file),
        path_arg(&gz_file),
    ])
    .await;
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let csv_at = format!("{}:12: has 4 fields, the header has ", csv_file.display());
    assert!(
        ran.stderr.lines().any(|l| l.starts_with(&csv_at)),
        "{}",
        ran.stderr
    );
    let gz_at = format!("{}:", gz_file.display());
    let gz_line = ran
        .stderr
        .lines()
        .find(|l| l.starts_with(&gz_at))
        .unwrap_or_else(|| panic!("no report of the cut gzip: {}", ran.stderr));
    let gz_read: usize = ran
        .stdout
        .lines()
        .next()
        .and_then(|l| l.split(" records read").next())
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    let from_gz = gz_read - n;
    assert!(
        from_gz > 0 && from_gz < n,
        "{from_gz} records from the cut gzip"
    );
    assert!(
        gz_line.starts_with(&format!("{}:{}: ", gz_file.display(), from_gz + 1)),
        "{gz_line}"
    );
    assert!(ran.stdout.contains("2 rejected"), "{}", ran.stdout);
    let rejects = ran
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("rejected lines written to "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no rejects file named: {}", ran.stdout));
    assert_eq!(
        std::fs::read_to_string(&rejects).unwrap(),
        format!("{bad_row}\n")
    );
    assert!(
        ran.stdout.contains(&format!(
            "{gz_read} records read, {gz_read} sent, {gz_read} delivered"
        )),
        "{}",
        ran.stdout
    );
    rx.wait_until("every good record", PATIENCE, |r| {
        r.bytes().iter().filter(|&&b| b == b'\n').count() >= gz_read
    })
    .await;
    emu.shutdown().await;
}

/// Writes `n` small numbered Audit Log events, one per line, to `path` (without
/// holding them): `{"type$":...,"actorId":"I","timestamp":...}` for `I` in `0..n`, the
/// numbers a [`NumberedReceiver`] counts.
fn write_small_numbered_events(path: &Path, n: usize) {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(
            out,
            r#"{{"type$":"audit_log::SearchIssued/1","actorId":"{i}","timestamp":"2024-05-01T{:02}:{:02}:{:02}.{:03}Z"}}"#,
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60,
            i % 1000
        )
        .unwrap();
    }
    out.flush().unwrap();
}

/// The summary's figures of a run: records read, sent, delivered.
fn summary_counts(stdout: &str) -> (u64, u64, u64) {
    let figure = |what: &str| -> u64 {
        stdout
            .split(&format!(" {what}"))
            .next()
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("no `{what}` in the summary: {stdout}"))
    };
    (
        figure("records read"),
        figure("sent,"),
        figure("delivered,"),
    )
}

/// A replay of 1,000,000 records killed with SIGKILL in the middle, run again with the
/// same arguments, delivers every record, and sends again at most the documented bound
/// (`replay::run::MAX_DUPLICATES_AFTER_KILL`): its checkpoint only ever moved over
/// acknowledged records. The receiver counts the records by number as they stream in.
/// A third run finds the file done and sends nothing.
#[tokio::test]
async fn a_million_record_replay_killed_mid_way_resumes_losing_nothing_with_bounded_duplicates() {
    const N: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.jsonl");
    write_small_numbered_events(&file, N);
    let rx = NumberedReceiver::bind(N).await;
    let cfg = replay_config(
        dir.path(),
        &json_lines_tcp_sink("siem", rx.port()),
        &["siem"],
    );

    let started = tokio::time::Instant::now();
    let mut cmd = c42fwd();
    cmd.args(["--log", "info", "replay", "--progress", "none", "--config"])
        .arg(&cfg)
        .arg(&file)
        .stdin(Stdio::null());
    let first = Daemon::spawn(&cfg, cmd);
    // Kill it once half has arrived (past many checkpoints, before the end).
    rx.wait_until("half of the records", Duration::from_secs(300), |t| {
        t.records >= N as u64 / 2
    })
    .await;
    first.kill9().await;
    // Every byte the first run got into the socket, read.
    let before = rx
        .wait_until("the first run's connection closed", PATIENCE, |t| {
            t.closed == t.connections
        })
        .await;
    assert!(
        before.distinct < N as u64,
        "the first run had finished before the kill ({before:?})"
    );
    assert_eq!(before.again, 0, "the first run sent a record twice");

    let ran = replay(&["--config", path_arg(&cfg), path_arg(&file)]).await;
    assert_eq!(
        ran.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        ran.stdout, ran.stderr
    );
    assert!(
        ran.stderr
            .contains("resuming after what an earlier run delivered"),
        "{}",
        ran.stderr
    );
    let (read, sent, delivered) = summary_counts(&ran.stdout);
    assert!(
        read < N as u64 && read == sent && sent == delivered,
        "{}",
        ran.stdout
    );
    let got = rx
        .wait_until("every record", PATIENCE, |t| t.distinct >= N as u64)
        .await;
    eprintln!(
        "1,000,000 records killed and resumed in {:.1} s: {got:?}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(rx.missing(5), Vec::<usize>::new(), "lost");
    assert_eq!(got.foreign, 0, "records that were not in the file");
    // A record cut by the kill is sent again whole (it was not acknowledged).
    assert!(got.torn <= 1, "{got:?}");
    // The second run's records all arrived, each once: what arrived twice is what the
    // first run sent past its last checkpoint.
    assert_eq!(got.records, before.records + read, "{got:?} {before:?}");
    assert!(
        got.again <= c42fwd::replay::run::MAX_DUPLICATES_AFTER_KILL,
        "{} duplicates (bound {})",
        got.again,
        c42fwd::replay::run::MAX_DUPLICATES_AFTER_KILL
    );

    // A third run finds the file done and sends nothing more.
    let ran = replay(&["--config", path_arg(&cfg), "--no-dedupe", path_arg(&file)]).await;
    assert_eq!(
        ran.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        ran.stdout, ran.stderr
    );
    assert!(
        ran.stdout.contains("0 records read, 0 sent"),
        "{}",
        ran.stdout
    );
}

/// `--restart` ignores the checkpoint of a file replayed completely and sends all of
/// it again.
#[tokio::test]
async fn restart_sends_a_completed_file_again() {
    const N: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    write_small_numbered_events(&file, N);
    let rx = NumberedReceiver::bind(N).await;
    let cfg = replay_config(
        dir.path(),
        &json_lines_tcp_sink("siem", rx.port()),
        &["siem"],
    );
    for (args, want) in [
        (vec![], N),
        (vec!["--no-dedupe"], 0),
        (vec!["--restart"], N),
    ] {
        let mut all = vec!["--config", path_arg(&cfg)];
        all.extend(args.iter().copied());
        all.push(path_arg(&file));
        let ran = replay(&all).await;
        assert_eq!(ran.code, 0, "{args:?}: {}\n{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout.contains(&format!(
                "{want} records read, {want} sent, {want} delivered"
            )),
            "{args:?}: {}",
            ran.stdout
        );
    }
    let got = rx
        .wait_until("every record twice", PATIENCE, |t| {
            t.records >= 2 * N as u64
        })
        .await;
    assert_eq!(
        (got.distinct, got.again, got.foreign),
        (N as u64, N as u64, 0),
        "{got:?}"
    );
}

/// A line that is not an event, in the middle of a file, does not stop the replay: it
/// is reported as `FILE:LINE: reason`, kept verbatim in the rejects file the summary
/// names, and the exit code is 1. Every other record arrives. A file that does not
/// exist is reported and the next one is read.
#[tokio::test]
async fn a_bad_line_is_rejected_with_its_file_and_line_and_kept_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let mut lines = numbered_events(0, 10);
    let bad = r#"{"type$":"audit_log::SearchIssued/1","timestamp":"#.to_string();
    lines.insert(4, bad.clone());
    write_lines(&file, &lines);
    let missing = dir.path().join("missing.jsonl");
    let rx = TcpReceiver::bind().await;
    let cfg = replay_config(
        dir.path(),
        &json_lines_tcp_sink("siem", rx.port()),
        &["siem"],
    );
    let ran = replay(&[
        "--config",
        path_arg(&cfg),
        path_arg(&missing),
        path_arg(&file),
    ])
    .await;
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let at = format!("{}:5: ", file.display());
    assert!(
        ran.stderr.lines().any(|l| l.starts_with(&at)),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(&missing.display().to_string()),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stdout
            .contains("10 records read, 10 sent, 10 delivered"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("1 rejected"), "{}", ran.stdout);
    let rejects = ran
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("rejected lines written to "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no rejects file named: {}", ran.stdout));
    assert_eq!(
        std::fs::read_to_string(&rejects).unwrap(),
        format!("{bad}\n")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&rejects).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let got = rx
        .wait_until("ten records", PATIENCE, |r| {
            r.bytes().iter().filter(|&&b| b == b'\n').count() >= 10
        })
        .await;
    let got: Vec<String> = lf_records(&got.bytes())
        .into_iter()
        .map(|r| String::from_utf8(r).unwrap())
        .collect();
    assert_eq!(got, numbered_events(0, 10));
}

/// Two exports that overlap (the second repeats half of the first): each event is sent
/// once, and the summary counts the duplicates skipped. `--no-dedupe` sends them all.
#[tokio::test]
async fn overlapping_exports_send_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    write_lines(&exports.join("1-first.jsonl"), &numbered_events(0, 100));
    write_lines(&exports.join("2-second.jsonl"), &numbered_events(50, 100));
    let rx = TcpReceiver::bind().await;
    let cfg = replay_config(
        dir.path(),
        &json_lines_tcp_sink("siem", rx.port()),
        &["siem"],
    );
    let ran = replay(&["--config", path_arg(&cfg), path_arg(&exports)]).await;
    assert_eq!(
        ran.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        ran.stdout, ran.stderr
    );
    assert!(
        ran.stdout
            .contains("2 file(s) (0 unreadable), 200 records read, 150 sent, 150 delivered, 50 duplicates skipped"),
        "{}",
        ran.stdout
    );
    let got = rx
        .wait_until("150 records", PATIENCE, |r| {
            r.bytes().iter().filter(|&&b| b == b'\n').count() >= 150
        })
        .await;
    let got: HashMap<String, usize> = multiset(
        lf_records(&got.bytes())
            .into_iter()
            .map(|r| String::from_utf8(r).unwrap()),
    );
    assert_eq!(got, multiset(numbered_events(0, 150)), "each event once");
}

/// `--since`, `--until` and `--event-types` choose by the event's own time and type;
/// `--dry-run` sends nothing and says per file what it found.
#[tokio::test]
async fn filters_choose_by_event_time_and_type_and_a_dry_run_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    // 00:00:00 .. 00:01:39, one a second.
    let mut lines = numbered_events(0, 100);
    lines.push(r#"{"type$":"audit_log::FederationCreated/1","actorName":"x","timestamp":"2024-05-01T00:00:30Z"}"#.to_string());
    write_lines(&file, &lines);
    let rx = TcpReceiver::bind().await;
    let cfg = replay_config(
        dir.path(),
        &json_lines_tcp_sink("siem", rx.port()),
        &["siem"],
    );

    let ran = replay(&["--config", path_arg(&cfg), "--dry-run", path_arg(&file)]).await;
    assert_eq!(
        ran.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        ran.stdout, ran.stderr
    );
    assert!(
        ran.stdout.contains("(dry run, nothing sent)"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("101 records read, 0 sent, 0 delivered"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("101 records, 0 rejected, events from 2024-05-01T00:00:00.000Z to 2024-05-01T00:01:39.099Z"),
        "{}",
        ran.stdout
    );
    assert!(rx.received().connections.is_empty(), "a dry run connected");

    let ran = replay(&[
        "--config",
        path_arg(&cfg),
        "--since",
        "2024-05-01T00:00:10Z",
        "--until",
        "2024-05-01T00:00:40Z",
        "--event-types",
        "searchissued",
        path_arg(&file),
    ])
    .await;
    assert_eq!(
        ran.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        ran.stdout, ran.stderr
    );
    assert!(
        ran.stdout
            .contains("101 records read, 30 sent, 30 delivered"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("71 filtered out"), "{}", ran.stdout);
    let got = rx
        .wait_until("30 records", PATIENCE, |r| {
            r.bytes().iter().filter(|&&b| b == b'\n').count() >= 30
        })
        .await;
    let got: Vec<String> = lf_records(&got.bytes())
        .into_iter()
        .map(|r| String::from_utf8(r).unwrap())
        .collect();
    assert_eq!(got, numbered_events(10, 30));
}

/// The short form without a configuration: `--to tcp://HOST:PORT --format cef`.
#[tokio::test]
async fn the_short_form_sends_to_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    write_lines(&file, &numbered_events(0, 5));
    let rx = TcpReceiver::bind().await;
    let url = format!("tcp://127.0.0.1:{}", rx.port());
    let state = dir.path().join("state");
    let ran = replay(&[
        "--to",
        &url,
        "--format",
        "cef",
        "--state-dir",
        path_arg(&state),
        path_arg(&file),
    ])
    .await;
    assert_eq!(
        ran.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        ran.stdout, ran.stderr
    );
    let got = rx.wait_for_bytes(1, PATIENCE).await;
    let frames = crate::support::octet_frames(&got);
    let got = rx
        .wait_until("five frames", PATIENCE, |r| {
            crate::support::octet_frames(&r.bytes()).len() >= 5
        })
        .await;
    let frames2 = crate::support::octet_frames(&got.bytes());
    assert!(!frames.is_empty());
    assert_eq!(frames2.len(), 5);
    let first = String::from_utf8_lossy(&frames2[0]).into_owned();
    assert!(first.starts_with("<"), "{first}");
    assert!(
        first.contains(" 2024-05-01T00:00:00.000000Z "),
        "the event's time: {first}"
    );
    assert!(first.contains("CEF:0|Code42|Audit Log|"), "{first}");
    assert!(
        first.contains("|SearchIssued|"),
        "the Device Event Class ID: {first}"
    );
}

/// The short form to each other kind of receiver, a real rsyslog each: `udp://`,
/// `tls://` (with `--ca`), `relp://` and `relp+tls://`. Every record arrives, and each
/// is byte for byte the record `tcp://` delivers for it (CEF behind an RFC 5424 header
/// with the event's own time): the transport changes, the record does not.
#[tokio::test]
async fn the_short_form_sends_the_same_records_over_udp_tls_and_relp() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let events = numbered_events(0, N);
    write_lines(&file, &events);
    let pki = TestPki::generate();
    let ca = path_arg(&pki.ca).to_string();

    // (scheme, rsyslog, its port, extra arguments)
    let plain = || RsyslogOptions {
        tcp: false,
        udp: false,
        ..RsyslogOptions::default()
    };
    let mut receivers: Vec<(&str, Rsyslog, Vec<String>)> = Vec::new();
    receivers.push(("tcp", Rsyslog::start_default().await, vec![]));
    receivers.push(("udp", Rsyslog::start_default().await, vec![]));
    receivers.push((
        "tls",
        Rsyslog::start(RsyslogOptions {
            tls: vec![TlsListener {
                name: "tls".into(),
                server: pki.server.clone(),
                auth: ClientAuth::None,
            }],
            ..plain()
        })
        .await,
        vec!["--ca".into(), ca.clone()],
    ));
    receivers.push((
        "relp",
        Rsyslog::start(RsyslogOptions {
            relp: Some(RelpListener::default()),
            ..plain()
        })
        .await,
        vec![],
    ));
    receivers.push((
        "relp+tls",
        Rsyslog::start(RsyslogOptions {
            relp: Some(RelpListener {
                tls: Some((pki.server.clone(), ClientAuth::None)),
                tls_lib: RelpTlsLib::Openssl,
            }),
            ..plain()
        })
        .await,
        vec!["--ca".into(), ca.clone()],
    ));

    let mut reference: Option<HashMap<String, usize>> = None;
    for (scheme, rs, extra) in &mut receivers {
        let port = match *scheme {
            "tcp" => rs.tcp_port(),
            "udp" => rs.udp_port(),
            "tls" => rs.tls_port("tls"),
            _ => rs.relp_port(),
        };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let state = dir
            .path()
            .join(format!("state-{}", scheme.replace('+', "-")));
        let mut args = vec![
            "--to",
            &url,
            "--format",
            "cef",
            "--state-dir",
            path_arg(&state),
        ];
        args.extend(extra.iter().map(String::as_str));
        args.push(path_arg(&file));
        let ran = replay(&args).await;
        assert_eq!(ran.code, 0, "{url}: {}\n{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout
                .contains(&format!("{N} records read, {N} sent, {N} delivered")),
            "{url}: {}",
            ran.stdout
        );
        let lines = rs.wait_for_lines(N, PATIENCE).await;
        assert_eq!(lines.len(), N, "{url}: one record per event");
        let first = &lines[0];
        assert!(first.starts_with('<'), "{url}: {first}");
        assert!(
            first.contains(" 2024-05-01T00:00:00.000000Z ")
                && first.contains("CEF:0|Code42|Audit Log|")
                && first.contains("|SearchIssued|"),
            "{url}: {first}"
        );
        // Every event once, by its actor.
        let actors = multiset(lines.iter().map(|l| cef_field(l, "suser")));
        let want = multiset((0..N).map(|i| format!("user{i}@example.com")));
        assert_eq!(actors, want, "{url}: each event once");
        let got = multiset(lines);
        match &reference {
            None => reference = Some(got),
            Some(r) => assert_eq!(&got, r, "{url}: not the records tcp:// delivers"),
        }
        rs.stop().await;
    }
}

/// Exit code 2 for usage and configuration errors, each with its reason.
#[tokio::test]
async fn usage_and_configuration_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    write_lines(&file, &numbered_events(0, 1));
    let cfg = replay_config(dir.path(), &json_lines_tcp_sink("siem", 9), &["siem"]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![path_arg(&file).into()], "--config FILE, or --to URL"),
        (vec!["--config".into(), path_arg(&cfg).into()], "no input"),
        (
            vec![
                "--config".into(),
                path_arg(&cfg).into(),
                "--sink".into(),
                "nope".into(),
                path_arg(&file).into(),
            ],
            "no sink named `nope`",
        ),
        (
            vec!["--to".into(), "ftp://x:1".into(), path_arg(&file).into()],
            "unknown scheme `ftp`",
        ),
        (
            vec!["--to".into(), "tcp://x".into(), path_arg(&file).into()],
            "no port",
        ),
        (
            vec![
                "--config".into(),
                path_arg(&dir.path().join("none.toml")).into(),
                path_arg(&file).into(),
            ],
            "none.toml",
        ),
        (
            vec![
                "--config".into(),
                path_arg(&cfg).into(),
                "--since".into(),
                "yesterday".into(),
                path_arg(&file).into(),
            ],
            "neither an RFC 3339 time nor a date",
        ),
    ];
    for (args, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = replay(&args).await;
        assert_eq!(ran.code, 2, "{args:?}: {}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stderr.contains(says), "{args:?}: {}", ran.stderr);
    }
}

/// One replay per state directory: a second replay while one runs is refused (exit 2,
/// naming the directory and the holder's pid) and reads nothing. A replay of exports
/// runs beside the daemon (`c42fwd run`) on the same state directory; a dead-letter
/// re-drive does not (the daemon's sink appends to that file): it is refused, exit 2,
/// the file left where it is, and runs once the daemon stopped. Off a terminal,
/// `--progress log` writes the figures as a log line every 5 s.
#[tokio::test]
async fn a_second_replay_and_a_redrive_beside_the_daemon_are_refused() {
    const N: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    write_lines(&file, &numbered_events(0, N));
    let rx = TcpReceiver::bind().await;
    // A tenant without events: the daemon on this configuration sends nothing itself.
    let opts = EmulatorOptions {
        backlog: 0,
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        ..EmulatorOptions::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let cfg = dir.path().join("c42fwd.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n{}\n[sources.audit]\ntype = \"audit_log\"\ntenant = \"emu\"\nstart = \"1h\"\npoll_interval = \"200ms\"\n\n{}\n[[routes]]\nsources = [\"audit\"]\nsinks = [\"siem\"]\n",
            head(dir.path(), "10s"),
            emu_tenant(&emu, &opts),
            json_lines_tcp_sink("siem", rx.port()),
        ),
    )
    .unwrap();
    let state = dir.path().join("state");

    // The first replay, paced to 20 records/s: it would run for 30 s.
    let mut cmd = c42fwd();
    cmd.args([
        "--log",
        "info",
        "replay",
        "--progress",
        "log",
        "--rate",
        "20",
        "--config",
    ])
    .arg(&cfg)
    .arg(&file)
    .stdin(Stdio::null());
    let first = Daemon::spawn(&cfg, cmd);
    let pid = first.child.id().expect("running");
    let lock = state.join("replay").join("lock");
    crate::support::wait_for("the first replay's lock", PATIENCE, || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid.to_string())
    })
    .await;
    let second = replay(&["--config", path_arg(&cfg), "--restart", path_arg(&file)]).await;
    assert_eq!(second.code, 2, "{}\n{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains(&format!(
            "state directory {} is in use by another c42fwd replay (pid {pid})",
            state.display()
        )),
        "{}",
        second.stderr
    );
    assert!(
        !second.stdout.contains("records read"),
        "the second replay ran: {}",
        second.stdout
    );
    // Its progress, as a log line with the figures.
    let progress_line = || {
        log_tail(&cfg).lines().any(|l| {
            l.contains("replay progress")
                && l.contains("files_total=1")
                && l.contains("delivered=")
                && l.contains("records_per_second=")
        })
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !progress_line() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress line:\n{}",
            log_tail(&cfg)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Interrupted, the first ends (exit 1) and releases the lock with its process.
    let status = first.terminate().await;
    assert_eq!(status.code(), Some(1), "{status:?}");

    // The daemon on the same state directory.
    let daemon = Daemon::start(&cfg).await;
    let daemon_pid = daemon.child.id().expect("running");
    crate::support::wait_for("the daemon's lock", PATIENCE, || {
        std::fs::read_to_string(state.join("lock"))
            .is_ok_and(|t| t.trim() == daemon_pid.to_string())
    })
    .await;
    // A replay of exports beside it: it goes on where the interrupted one stopped.
    let ran = replay(&["--config", path_arg(&cfg), path_arg(&file)]).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let got = rx
        .wait_until("every record", PATIENCE, |r| {
            multiset(
                lf_records(&r.bytes())
                    .into_iter()
                    .map(|l| String::from_utf8(l).unwrap()),
            )
            .len()
                >= N
        })
        .await;
    let got = multiset(
        lf_records(&got.bytes())
            .into_iter()
            .map(|r| String::from_utf8(r).unwrap()),
    );
    assert_eq!(
        got.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        numbered_events(0, N).into_iter().collect(),
        "every event, none other"
    );

    // A dead-letter re-drive beside it is refused, and leaves the file alone.
    let dl = state.join("dead-letter");
    std::fs::create_dir_all(&dl).unwrap();
    let event = numbered_events(500, 1).remove(0);
    // The event's text as it was (a `Value` would reorder its keys).
    let line = format!(
        r#"{{"time":"2024-05-02T00:00:00.000Z","sink":"siem","reason":"refused by the receiver","record":{},"kind":"audit_log","occurred":"2024-05-01T00:08:20.500Z","event":{event}}}"#,
        serde_json::to_string(&event).unwrap()
    );
    let dl_file = dl.join("siem.ndjson");
    std::fs::write(&dl_file, format!("{line}\n")).unwrap();
    let refused = replay(&["--config", path_arg(&cfg), "--dead-letter", "siem"]).await;
    assert_eq!(refused.code, 2, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains(&format!("(pid {daemon_pid})"))
            && refused.stderr.contains("stop the daemon"),
        "{}",
        refused.stderr
    );
    assert!(dl_file.is_file(), "the dead-letter file was moved");
    assert!(daemon.terminate().await.success());

    // With the daemon stopped, the re-drive runs.
    let ran = replay(&["--config", path_arg(&cfg), "--dead-letter", "siem"]).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("re-delivered whole"), "{}", ran.stdout);
    rx.wait_until("the re-driven record", PATIENCE, |r| {
        lf_records(&r.bytes())
            .iter()
            .any(|l| l.as_slice() == event.as_bytes())
    })
    .await;
    emu.shutdown().await;
}

/// A receiver that is down: the replay retries, delivers nothing and commits nothing;
/// interrupted (SIGTERM) it ends with exit 1, and once the receiver is up the same
/// command delivers every record, each once.
#[tokio::test]
async fn a_replay_to_a_receiver_that_is_down_resumes_once_it_is_up() {
    const N: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    write_lines(&file, &numbered_events(0, N));
    let port = crate::support::unused_tcp_port();
    let cfg = replay_config(dir.path(), &json_lines_tcp_sink("siem", port), &["siem"]);
    let mut cmd = c42fwd();
    cmd.args([
        "--log",
        "info",
        "replay",
        "--progress",
        "none",
        "--grace",
        "1s",
        "--config",
    ])
    .arg(&cfg)
    .arg(&file)
    .stdin(Stdio::null());
    let first = Daemon::spawn(&cfg, cmd);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !log_tail(&cfg).contains("will retry") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retry:\n{}",
            log_tail(&cfg)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = first.terminate().await;
    assert_eq!(status.code(), Some(1), "{status:?}\n{}", log_tail(&cfg));

    let rx = TcpReceiver::bind_port(port).await;
    let ran = replay(&["--config", path_arg(&cfg), path_arg(&file)]).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains(&format!("{N} records read, {N} sent, {N} delivered")),
        "nothing was settled by the first run: {}",
        ran.stdout
    );
    let got = rx
        .wait_until("every record", PATIENCE, |r| {
            r.bytes().iter().filter(|&&b| b == b'\n').count() >= N
        })
        .await;
    let got = multiset(
        lf_records(&got.bytes())
            .into_iter()
            .map(|r| String::from_utf8(r).unwrap()),
    );
    assert_eq!(got, multiset(numbered_events(0, N)), "each event once");
}

/// A RELP sink `name` to 127.0.0.1:`port`: the event's JSON text alone in each frame,
/// answers awaited for up to 2 minutes.
fn json_relp_sink(name: &str, port: u16) -> String {
    format!(
        "[sinks.{name}]\ntype = \"relp\"\nhost = \"127.0.0.1\"\nport = {port}\nformat = \"json\"\n\
         syslog = \"none\"\nack_timeout = \"120s\"\n\
         [sinks.{name}.retry]\ninitial = \"50ms\"\nmax = \"200ms\"\n"
    )
}

/// The value of `key=` in a log line (up to the next space).
fn log_field(line: &str, key: &str) -> Option<u64> {
    line.split(&format!(" {key}="))
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// Backpressure: a receiver that takes records and acknowledges none (RELP holding
/// back its `200 OK`s) stops the replay's reader. While it holds them, two progress
/// lines in a row show the same records read, none delivered, and no more than the
/// documented bound (`replay::run::MAX_READ_AHEAD`, 36 chunks of 1,024) of a file of
/// 200,000; once it answers again every record arrives, each once, exit 0.
#[tokio::test]
async fn a_receiver_that_withholds_its_acknowledgements_stops_the_reader_at_the_bound() {
    const N: usize = 200_000;
    let bound = c42fwd::replay::run::MAX_READ_AHEAD;
    assert!(bound < N as u64 / 2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    write_small_numbered_events(&file, N);
    let relp = HeldRelp::bind(N, true).await;
    let cfg = replay_config(dir.path(), &json_relp_sink("siem", relp.port()), &["siem"]);
    let mut cmd = c42fwd();
    cmd.args(["--log", "info", "replay", "--progress", "log", "--config"])
        .arg(&cfg)
        .arg(&file)
        .stdin(Stdio::null());
    let mut run = Daemon::spawn(&cfg, cmd);
    relp.wait_until("the first frames", PATIENCE, |t| t.records > 0)
        .await;
    // (records, delivered) of each progress line so far.
    let progress = |log: &str| -> Vec<(u64, u64)> {
        log.lines()
            .filter(|l| l.contains("replay progress"))
            .filter_map(|l| Some((log_field(l, "records")?, log_field(l, "delivered")?)))
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (read, delivered) = loop {
        let lines = progress(&run.log());
        if let [.., a, b] = lines[..] {
            if a == b && a.0 > 0 {
                break b;
            }
        }
        if let Ok(Some(status)) = run.child.try_wait() {
            panic!(
                "the replay ended ({status}) while its receiver held back:\n{}",
                run.log()
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the records read did not settle: {lines:?}\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivered, 0, "delivered while no record was acknowledged");
    assert!(
        read <= bound,
        "{read} records read while the receiver acknowledged none (bound {bound})"
    );
    let held = relp.tally();
    eprintln!("held back: {read} records read (bound {bound}), the receiver holds {held:?}");
    assert!(held.records <= read, "{held:?}, {read} read");

    relp.release();
    let status = tokio::time::timeout(Duration::from_secs(120), run.child.wait())
        .await
        .expect("the replay ends once the receiver answers")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", run.log());
    let got = relp.tally();
    assert_eq!(relp.missing(5), Vec::<usize>::new(), "lost");
    assert_eq!(
        (got.records, got.distinct, got.again, got.foreign),
        (N as u64, N as u64, 0, 0),
        "{got:?}"
    );
}

/// `--rate N` end to end: every record arrives once and the summary says so; the pacing
/// never lets the records go sooner than the rate allows (the schedule itself is held
/// on the paused clock: `replay::run::tests::the_pacing_schedule_keeps_the_rate_at_every_chunk`).
#[tokio::test]
async fn a_paced_replay_delivers_every_record_once_no_sooner_than_the_rate_allows() {
    const N: usize = 6_000;
    const RATE: u32 = 4_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    write_small_numbered_events(&file, N);
    let rx = NumberedReceiver::bind(N).await;
    let cfg = replay_config(
        dir.path(),
        &json_lines_tcp_sink("siem", rx.port()),
        &["siem"],
    );
    let started = tokio::time::Instant::now();
    let ran = replay(&[
        "--config",
        path_arg(&cfg),
        "--rate",
        &RATE.to_string(),
        path_arg(&file),
    ])
    .await;
    let took = started.elapsed();
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains(&format!("{N} records read, {N} sent, {N} delivered")),
        "{}",
        ran.stdout
    );
    let got = rx
        .wait_until("every record", PATIENCE, |t| t.records >= N as u64)
        .await;
    assert_eq!(
        (got.records, got.distinct, got.foreign),
        (N as u64, N as u64, 0),
        "{got:?}"
    );
    // The last chunk goes when the records before it are due.
    let chunk = c42fwd::replay::run::chunk_records(Some(RATE), c42fwd::replay::run::CHUNK_RECORDS);
    let due = Duration::from_secs_f64((N - chunk) as f64 / f64::from(RATE));
    assert!(took >= due, "{N} records at {RATE}/s in {took:?}");
}
