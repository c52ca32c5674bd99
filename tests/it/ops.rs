//! Operating the daemon, with the real `c42fwd` binary against the emulator: one
//! process per state directory (a second `run`, `checkpoint reset` and `set` are
//! refused while one runs, and work once it stopped), `checkpoint set` starts a source
//! from a given time, the checkpoint commands need no secret, and `/ready` follows the
//! API and the sinks while `/health` stays 200.

use crate::support::config::{emu_tenant, file_sink_from_audit, head, METRICS_ON_A_FREE_PORT};
use crate::support::daemon::{c42fwd, log_tail, start_emulator, Daemon};
use crate::support::metrics::{get, poll_endpoint};
use crate::support::{file_records, multiset, unused_tcp_port, wait_for, TcpReceiver};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions, FaultOptions};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// An emulator with a backlog of `backlog` Audit Log events over the two hours before
/// it started, no live stream, no lag.
async fn emulator(backlog: u64) -> (EmulatorHandle, EmulatorOptions) {
    let opts = EmulatorOptions {
        backlog,
        backlog_span: Duration::from_secs(7200),
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        lag: Duration::ZERO,
        ..EmulatorOptions::default()
    };
    (start_emulator(opts.clone()).await, opts)
}

/// A config in `dir`: metrics on a free port with `ready_timeout = "1s"`, the tenant
/// `tenant` (its TOML), the source `audit` polling every 200 ms from 3 hours back,
/// and `sink` (the sinks and routes).
fn write_config(dir: &Path, tenant: &str, sink: &str) -> PathBuf {
    let config = dir.join("c42fwd.toml");
    let text = format!(
        "{head}{METRICS_ON_A_FREE_PORT}ready_timeout = \"1s\"\n{tenant}\n[sources.audit]\ntype = \"audit_log\"\ntenant = \"emu\"\nstart = \"3h\"\nlag = \"0s\"\npoll_interval = \"200ms\"\n\n{sink}",
        head = head(dir, "10s"),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// Runs `c42fwd ARGS --config CONFIG EXTRA` to its end.
async fn cli(args: &[&str], config: &Path, extra: &[&str]) -> Output {
    c42fwd()
        .args(args)
        .arg("--config")
        .arg(config)
        .args(extra)
        .output()
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts that `out` is the refusal of a state directory held by `pid`.
fn assert_refused(what: &str, out: &Output, state: &Path, pid: u32) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert!(
        err.contains(&format!("state directory {} is in use", state.display())),
        "{what} names the directory: {err}"
    );
    assert!(
        err.contains(&format!("(pid {pid})")),
        "{what} names the pid: {err}"
    );
}

#[tokio::test]
async fn a_second_instance_and_checkpoint_changes_are_refused_while_one_runs() {
    let (emu, opts) = emulator(50).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let config = write_config(
        dir.path(),
        &emu_tenant(&emu, &opts),
        &file_sink_from_audit(&out),
    );
    let state = dir.path().join("state");
    let daemon = Daemon::start(&config).await;
    // Once it serves its metrics, it holds the lock (taken before anything starts).
    daemon.metrics_addr().await;
    let pid = daemon.child.id().expect("running");
    assert_eq!(
        std::fs::read_to_string(state.join("lock")).unwrap(),
        format!("{pid}\n"),
        "the lock file holds the holder's pid"
    );

    let second = cli(&["run"], &config, &[]).await;
    assert_refused("a second run", &second, &state, pid);
    let reset = cli(&["checkpoint", "reset"], &config, &["audit"]).await;
    assert_refused("checkpoint reset", &reset, &state, pid);
    let set = cli(&["checkpoint", "set"], &config, &["audit", "1h"]).await;
    assert_refused("checkpoint set", &set, &state, pid);
    // Reading is fine.
    let show = cli(&["checkpoint", "show"], &config, &[]).await;
    assert!(show.status.success(), "{}", text(&show.stderr));
    assert!(
        text(&show.stdout).contains("watermark:"),
        "{}",
        text(&show.stdout)
    );
    // The daemon was not disturbed: it still forwards everything.
    let truth = multiset(crate::support::daemon::backlog(&emu));
    wait_for("every event in the file", Duration::from_secs(30), || {
        file_records(&out) == truth
    })
    .await;

    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}\n{}", log_tail(&config));
    let set = cli(&["checkpoint", "set"], &config, &["audit", "1h"]).await;
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(
        text(&set.stdout).contains("checkpoint of `audit` set: it starts from "),
        "{}",
        text(&set.stdout)
    );
    let reset = cli(&["checkpoint", "reset"], &config, &["audit"]).await;
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert!(text(&reset.stdout).contains("checkpoint of `audit` removed"));
    // And a run after them starts (the lock was released with the process).
    let again = Daemon::start(&config).await;
    again.metrics_addr().await;
    assert!(again.terminate().await.success());
    emu.shutdown().await;
}

#[tokio::test]
async fn checkpoint_set_then_run_forwards_only_the_events_from_that_time() {
    let (emu, opts) = emulator(400).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let config = write_config(
        dir.path(),
        &emu_tenant(&emu, &opts),
        &file_sink_from_audit(&out),
    );
    let started = emu.started_at();
    let from = started - chrono::Duration::minutes(50);
    let from_text = from.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);

    // A time in the future is refused, as a checkpoint from the future would be.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let refused = cli(&["checkpoint", "set"], &config, &["audit", &future]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("is in the future"),
        "{}",
        text(&refused.stderr)
    );

    let set = cli(&["checkpoint", "set"], &config, &["audit", &from_text]).await;
    assert!(set.status.success(), "{}", text(&set.stderr));
    let show = cli(&["checkpoint", "show"], &config, &["audit"]).await;
    assert!(
        text(&show.stdout).contains(&format!(
            "watermark:    {}",
            from.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        )),
        "{}",
        text(&show.stdout)
    );

    let before = emu.events_between(started - chrono::Duration::hours(3), from);
    let after = multiset(emu.events_between(from, started + chrono::Duration::seconds(1)));
    assert!(
        before.len() > 100 && after.len() > 100,
        "both sides hold events"
    );
    let daemon = Daemon::start(&config).await;
    wait_for(
        "every event from the set time",
        Duration::from_secs(30),
        || file_records(&out) == after,
    )
    .await;
    let addr = daemon.metrics_addr().await;
    poll_endpoint(&addr, "/ready", &config, "ready", |s, _| s == 200).await;
    assert!(daemon.terminate().await.success());
    let got = file_records(&out);
    assert_eq!(got, after, "exactly the events from the set time, once");
    for e in &before {
        assert!(!got.contains_key(e), "an event before the set time: {e}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn checkpoint_commands_need_no_secret() {
    let (emu, opts) = emulator(10).await;
    let dir = tempfile::tempdir().unwrap();
    let tenant = format!(
        "[tenants.emu]\napi = \"incydr\"\nbase_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = {{ env = \"C42FWD_IT_OPS_NEVER_SET\" }}\n",
        emu.base_url(),
        opts.client_id
    );
    let config = write_config(
        dir.path(),
        &tenant,
        &file_sink_from_audit(&dir.path().join("out.ndjson")),
    );
    let run = |args: &'static [&'static str], extra: &'static [&'static str]| {
        let config = config.clone();
        async move {
            c42fwd()
                .env_remove("C42FWD_IT_OPS_NEVER_SET")
                .args(args)
                .arg("--config")
                .arg(&config)
                .args(extra)
                .output()
                .await
                .unwrap()
        }
    };
    // The secret matters to the daemon: validate refuses the file.
    let validate = run(&["validate"], &[]).await;
    assert_eq!(validate.status.code(), Some(2));
    assert!(text(&validate.stderr).contains("C42FWD_IT_OPS_NEVER_SET is not set"));
    for (args, extra, says) in [
        (&["checkpoint", "show"][..], &[][..], "audit: no checkpoint"),
        (
            &["checkpoint", "set"][..],
            &["audit", "2h"][..],
            "checkpoint of `audit` set",
        ),
        (&["checkpoint", "show"][..], &["audit"][..], "watermark:"),
        (
            &["checkpoint", "reset"][..],
            &["audit"][..],
            "checkpoint of `audit` removed",
        ),
    ] {
        let out = run(args, extra).await;
        assert!(
            out.status.success(),
            "{args:?} {extra:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains(says),
            "{args:?}: {}",
            text(&out.stdout)
        );
    }
    emu.shutdown().await;
}

/// The `/ready` body's failing entries as (name, reason).
fn failing(body: &str) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("/ready body {body:?}: {e}"));
    v["failing"]
        .as_array()
        .expect("a failing list")
        .iter()
        .map(|f| {
            let name = f["source"].as_str().or(f["sink"].as_str()).unwrap_or("");
            (
                name.to_string(),
                f["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn ready_turns_503_while_the_api_fails_and_back_while_health_stays_200() {
    let (emu, opts) = emulator(20).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &emu_tenant(&emu, &opts),
        &file_sink_from_audit(&dir.path().join("out.ndjson")),
    );
    let daemon = Daemon::start(&config).await;
    let addr = daemon.metrics_addr().await;
    poll_endpoint(&addr, "/metrics", &config, "a poll and a commit", |_, t| {
        t.contains("c42fwd_source_last_poll_seconds{source=\"audit\"}")
            && t.contains("c42fwd_source_last_commit_seconds{source=\"audit\"}")
    })
    .await;
    let body = poll_endpoint(&addr, "/ready", &config, "ready", |s, _| s == 200).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"],
        "ready"
    );

    // Every API request fails: the source polls nothing more.
    emu.set_faults(FaultOptions {
        server_error_every: 1,
        ..FaultOptions::default()
    });
    let body = poll_endpoint(&addr, "/ready", &config, "not ready", |s, _| s == 503).await;
    assert!(
        failing(&body).contains(&("audit".to_string(), "no_recent_poll".to_string())),
        "{body}"
    );
    assert_eq!(get(&addr, "/health").await, (200, "ok\n".to_string()));

    emu.set_faults(FaultOptions::default());
    poll_endpoint(&addr, "/ready", &config, "ready again", |s, _| s == 200).await;
    assert_eq!(get(&addr, "/health").await, (200, "ok\n".to_string()));
    assert!(daemon.terminate().await.success());
    emu.shutdown().await;
}

#[tokio::test]
async fn ready_turns_503_while_a_sink_cannot_deliver_and_back_while_health_stays_200() {
    let (emu, opts) = emulator(200).await;
    let dir = tempfile::tempdir().unwrap();
    let port = unused_tcp_port();
    let sink = format!(
        "[sinks.siem]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\nformat = \"json\"\nsyslog = \"none\"\nframing = \"lf\"\n[sinks.siem.retry]\ninitial = \"10ms\"\nmax = \"100ms\"\n\n[[routes]]\nsources = [\"audit\"]\nsinks = [\"siem\"]\n"
    );
    let config = write_config(dir.path(), &emu_tenant(&emu, &opts), &sink);
    let daemon = Daemon::start(&config).await;
    let addr = daemon.metrics_addr().await;
    let body = poll_endpoint(&addr, "/ready", &config, "not ready", |s, _| s == 503).await;
    assert!(
        failing(&body).contains(&("siem".to_string(), "not_delivering".to_string())),
        "{body}"
    );
    assert_eq!(get(&addr, "/health").await, (200, "ok\n".to_string()));

    // The receiver comes up on the sink's port: it delivers, /ready recovers.
    let receiver = TcpReceiver::bind_port(port).await;
    let n = crate::support::daemon::backlog(&emu).len();
    receiver
        .wait_until("every event", Duration::from_secs(30), |r| {
            r.bytes().iter().filter(|&&b| b == b'\n').count() >= n
        })
        .await;
    poll_endpoint(&addr, "/ready", &config, "ready again", |s, _| s == 200).await;
    let text = get(&addr, "/metrics").await.1;
    assert!(
        text.contains("c42fwd_sink_last_delivery_seconds{sink=\"siem\"}"),
        "{text}"
    );
    assert_eq!(get(&addr, "/health").await, (200, "ok\n".to_string()));
    assert!(daemon.terminate().await.success());
    emu.shutdown().await;
}
