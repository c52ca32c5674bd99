//! The quirks of the real Code42 API, with the real `c42fwd` binary against the emulator
//! with every quirk on (`docs/api-compatibility.md`, "Quirks handled"):
//! - an Audit Log page without `events` (what the service answers when no records are
//!   found) is an empty page: an idle tenant is polled for ten minutes of the
//!   emulator's time with no ERROR, no source restart and no result-window split, and
//!   the next event is forwarded by the first poll after it became visible (both
//!   generations); a page past the result window, also without `events` but with a
//!   count beyond it, still splits the query;
//! - alert queries take the tenant id from the access token's `tenantUid` claim (no
//!   customer-endpoint call), fall back to the customer endpoint when the token names
//!   no tenant, and stop with a clear error, backing off, when that answer is unusable;
//! - the legacy alert service gets `Authorization: Bearer`, and one that takes only
//!   `v3_user_token` gets it after one refusal, remembered and said once.
//!
//! The emulator's clock is moved with `advance`; waits are on the emulator's request
//! counts and on the files the daemon writes, with a deadline.

use crate::support::config::{credentials, file_sink_from, head, Api, METRICS_ON_A_FREE_PORT};
use crate::support::daemon::{c42fwd, log_path, log_tail, start_emulator, Daemon};
use crate::support::metrics::{metric_sum, scrape};
use crate::support::{file_records, multiset, PATIENCE};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions, Quirks};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// A daemon reading one source of the emulator into a file of raw JSON lines, its log
/// in JSON.
struct Run {
    _dir: tempfile::TempDir,
    config: PathBuf,
    out: PathBuf,
    daemon: Daemon,
    metrics: String,
}

impl Run {
    /// Starts `c42fwd run` with the source `src` of `kind` (`audit_log`, `alerts`) and
    /// the source keys `keys`.
    async fn start(
        emu: &EmulatorHandle,
        opts: &EmulatorOptions,
        api: Api,
        kind: &str,
        keys: &str,
    ) -> Run {
        Run::start_with_tenant_keys(emu, opts, api, kind, keys, "").await
    }

    /// Like [`Run::start`], with `tenant_keys` added to the tenant.
    async fn start_with_tenant_keys(
        emu: &EmulatorHandle,
        opts: &EmulatorOptions,
        api: Api,
        kind: &str,
        keys: &str,
        tenant_keys: &str,
    ) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("c42fwd.toml");
        let out = dir.path().join("out.ndjson");
        let credentials = credentials(api, opts, None);
        let text = format!(
            r#"
{head}
{METRICS_ON_A_FREE_PORT}
[tenants.emu]
base_url = "{base}"
{credentials}
{tenant_keys}

[sources.src]
type = "{kind}"
tenant = "emu"
poll_interval = "200ms"
{keys}

{file_sink}"#,
            head = head(dir.path(), "10s"),
            base = emu.base_url(),
            file_sink = file_sink_from("src", &out),
        );
        std::fs::write(&config, text).unwrap();
        let mut cmd = c42fwd();
        cmd.args(["--log", "info", "--log-format", "json", "run", "--config"])
            .arg(&config);
        let daemon = Daemon::spawn(&config, cmd);
        let metrics = daemon.metrics_addr().await;
        Run {
            _dir: dir,
            config,
            out,
            daemon,
            metrics,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.config)).unwrap_or_default()
    }

    /// The log lines (JSON) that contain `text`.
    fn log_lines(&self, text: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_string)
            .collect()
    }

    fn received(&self) -> HashMap<String, usize> {
        file_records(&self.out)
    }

    /// The `id` of every alert the file holds.
    fn alert_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .received()
            .keys()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a json line");
                v["id"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        ids.sort();
        ids
    }

    async fn wait(&self, what: &str, cond: impl FnMut() -> bool) {
        wait_for_or_log(self, what, cond).await
    }

    /// No ERROR in the log, no source restart in the metrics; then SIGTERM and a clean
    /// exit.
    async fn stop_cleanly(self) -> String {
        let text = scrape(&self.metrics).await.expect("metrics answer");
        assert_eq!(
            metric_sum(&text, "c42fwd_task_failures_total", &[]),
            0.0,
            "a source restarted:\n{}",
            log_tail(&self.config)
        );
        assert_eq!(
            metric_sum(&text, "c42fwd_task_panics_total", &[]),
            0.0,
            "{text}"
        );
        let errors = self.log_lines("\"level\":\"ERROR\"");
        assert!(errors.is_empty(), "ERROR logged: {errors:#?}");
        let log = self.log();
        let status = self.daemon.terminate().await;
        assert!(status.success(), "exit status {status:?}:\n{log}");
        log
    }
}

async fn wait_for_or_log(run: &Run, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}; c42fwd log:\n{}",
            log_tail(&run.config)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Requests the emulator answered on routes ending with `suffix` (whatever path a
/// generation puts in front of it).
fn requests_ending(emu: &EmulatorHandle, suffix: &str) -> u64 {
    emu.stats()
        .requests
        .iter()
        .filter(|(route, _)| route.ends_with(suffix))
        .map(|(_, n)| *n)
        .sum()
}

fn customer_calls(emu: &EmulatorHandle) -> u64 {
    let s = emu.stats();
    s.requests_to("/v1/customer")
        + s.requests_to("/api/v3/customer/my")
        + s.requests_to("/c42api/v3/customer/my")
}

// ------------------------------------------------------------------ the Audit Log

/// A tenant with one event, which shows up in searches only ten minutes after it
/// occurred (just before the emulator started), tokens that expire after five.
fn idle_tenant() -> EmulatorOptions {
    EmulatorOptions {
        seed: 5,
        backlog: 1,
        backlog_span: Duration::from_secs(2),
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        lag: Duration::ZERO,
        late_fraction: 1.0,
        late_by: Duration::from_secs(600),
        token_ttl: Duration::from_secs(300),
        quirks: Quirks::default(),
        ..EmulatorOptions::default()
    }
}

/// Idle for ten minutes of the emulator's time (its clock moved in steps, each
/// followed by polls that see only pages without `events`): nothing is forwarded, no
/// ERROR, no restart, no split; the event is forwarded by the first poll after it
/// became visible.
async fn an_idle_tenant_is_quiet_and_the_next_event_comes_at_once(api: Api) {
    let opts = idle_tenant();
    assert!(opts.quirks.omit_empty_events);
    let emu = start_emulator(opts.clone()).await;
    let event = emu.events_between(
        emu.started_at() - chrono::Duration::hours(1),
        emu.started_at(),
    );
    assert_eq!(event.len(), 1);
    let run = Run::start(
        &emu,
        &opts,
        api,
        "audit_log",
        "start = \"1h\"\nlag = \"15m\"",
    )
    .await;
    let searches = || requests_ending(&emu, "search-audit-log");
    run.wait("the first poll", || searches() >= 1).await;

    // 18 steps of 25 s: 450 s, and the real time the test takes (far less than the
    // 148 s left before the event shows up).
    for step in 0..18 {
        let before = searches();
        emu.advance(Duration::from_secs(25));
        run.wait(&format!("two polls after step {step}"), || {
            searches() >= before + 2
        })
        .await;
        assert!(
            run.received().is_empty(),
            "forwarded before it was visible, at step {step}"
        );
    }
    // Past the event's ten minutes: it is visible now.
    assert_eq!(emu.stats().events_served, 0);
    let before = searches();
    emu.advance(Duration::from_secs(180));
    // The searches made by the time the emulator served the event: the poll that read
    // it started after the advance (one more may have been in flight then, and one
    // may have started since): one poll interval, not a restart or a backoff later.
    let mut served_after = None;
    run.wait("the event served", || {
        let s = emu.stats();
        if s.events_served > 0 {
            served_after = Some(
                s.requests
                    .iter()
                    .filter(|(route, _)| route.ends_with("search-audit-log"))
                    .map(|(_, n)| *n)
                    .sum::<u64>(),
            );
        }
        served_after.is_some()
    })
    .await;
    let after = served_after.unwrap_or_default();
    assert!(
        after <= before + 3,
        "{} searches between the event becoming visible and its being served",
        after - before
    );
    run.wait("the event", || !run.received().is_empty()).await;
    assert_eq!(run.received(), multiset(event));
    // Ten idle minutes outlived the tokens: c42fwd logged in again.
    assert!(emu.stats().tokens_issued >= 2, "{:?}", emu.stats());
    let log = run.stop_cleanly().await;
    assert!(
        !log.contains("past its result window"),
        "an empty page was taken for a result-window refusal:\n{log}"
    );
}

#[tokio::test]
async fn incydr_an_idle_tenant_is_quiet_and_the_next_event_comes_at_once() {
    an_idle_tenant_is_quiet_and_the_next_event_comes_at_once(Api::Incydr).await;
}

#[tokio::test]
async fn legacy_an_idle_tenant_is_quiet_and_the_next_event_comes_at_once() {
    an_idle_tenant_is_quiet_and_the_next_event_comes_at_once(Api::Legacy).await;
}

/// With a result window of 100 and 350 events, the gateway's refusal (no `events`, a
/// count beyond the offset) still splits the query, and the empty page after the
/// last event (no `events`, a count at the offset) still ends it: every event once.
/// One request at a time: a catch-up in slices sizes them to stay under the result
/// window, and this is about the one query that does not.
#[tokio::test]
async fn a_refused_page_still_splits_while_an_empty_one_ends_the_query() {
    let opts = EmulatorOptions {
        seed: 9,
        backlog: 350,
        backlog_span: Duration::from_secs(600),
        rate: 0.0,
        alert_backlog: 0,
        sync_log_backlog: 0,
        lag: Duration::ZERO,
        search_limit: 100,
        quirks: Quirks::default(),
        ..EmulatorOptions::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let truth = multiset(emu.events_between(
        emu.started_at() - chrono::Duration::hours(1),
        emu.started_at() + chrono::Duration::seconds(1),
    ));
    assert_eq!(truth.values().sum::<usize>(), 350);
    let run = Run::start_with_tenant_keys(
        &emu,
        &opts,
        Api::Incydr,
        "audit_log",
        "start = \"1h\"\nlag = \"1s\"\npage_size = 50",
        "max_concurrent_requests = 1",
    )
    .await;
    run.wait("every event", || {
        run.received().values().sum::<usize>() >= 350
    })
    .await;
    let splits = scrape(&run.metrics).await.unwrap_or_default();
    assert!(
        metric_sum(&splits, "c42fwd_source_window_splits_total", &[]) >= 1.0,
        "{splits}"
    );
    assert_eq!(run.received(), truth);
    run.stop_cleanly().await;
}

// ------------------------------------------------------------------ alerts

fn alert_tenant(quirks: Quirks) -> EmulatorOptions {
    EmulatorOptions {
        seed: 13,
        backlog: 0,
        rate: 0.0,
        alert_backlog: 30,
        alert_rate: 0.0,
        backlog_span: Duration::from_secs(3_600),
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        lag: Duration::ZERO,
        quirks,
        ..EmulatorOptions::default()
    }
}

fn alert_truth(emu: &EmulatorHandle) -> Vec<String> {
    let mut ids: Vec<String> = emu
        .alert_summaries_between(
            emu.started_at() - chrono::Duration::hours(2),
            emu.started_at() + chrono::Duration::seconds(1),
        )
        .iter()
        .map(|s| {
            let v: serde_json::Value = serde_json::from_str(s).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    ids
}

const ALERT_KEYS: &str = "start = \"2h\"\nlag = \"1s\"";

/// Every alert arrives; returns the run, still going.
async fn read_every_alert(emu: &EmulatorHandle, opts: &EmulatorOptions, api: Api) -> Run {
    let truth = alert_truth(emu);
    assert_eq!(truth.len(), 30);
    let run = Run::start(emu, opts, api, "alerts", ALERT_KEYS).await;
    run.wait("every alert", || run.received().len() >= truth.len())
        .await;
    assert_eq!(run.alert_ids(), truth);
    run
}

async fn alerts_take_the_tenant_id_from_the_token(api: Api) {
    let opts = alert_tenant(Quirks::default());
    let emu = start_emulator(opts.clone()).await;
    let run = read_every_alert(&emu, &opts, api).await;
    let s = emu.stats();
    assert_eq!(customer_calls(&emu), 0, "{s:?}");
    // Bearer, as py42 sends it, and the alert service took it at once.
    assert_eq!(s.v3_user_token_requests, 0, "{s:?}");
    assert_eq!(s.unauthorized, 0, "{s:?}");
    run.stop_cleanly().await;
}

#[tokio::test]
async fn incydr_alerts_take_the_tenant_id_from_the_token() {
    alerts_take_the_tenant_id_from_the_token(Api::Incydr).await;
}

#[tokio::test]
async fn legacy_alerts_take_the_tenant_id_from_the_token_and_send_bearer() {
    alerts_take_the_tenant_id_from_the_token(Api::Legacy).await;
}

async fn a_token_without_tenant_uid_falls_back_to_the_customer_endpoint(api: Api) {
    let opts = alert_tenant(Quirks {
        token_tenant_uid: false,
        ..Quirks::default()
    });
    let emu = start_emulator(opts.clone()).await;
    let run = read_every_alert(&emu, &opts, api).await;
    // Asked once, kept: more polls ask no more.
    let polls = requests_ending(&emu, "query-alerts");
    run.wait("more polls", || {
        requests_ending(&emu, "query-alerts") >= polls + 3
    })
    .await;
    assert_eq!(customer_calls(&emu), 1, "{:?}", emu.stats());
    let log = run.stop_cleanly().await;
    assert!(
        log.contains("the access token names no tenant"),
        "the fallback is said:\n{log}"
    );
}

#[tokio::test]
async fn incydr_a_token_without_tenant_uid_falls_back_to_the_customer_endpoint() {
    a_token_without_tenant_uid_falls_back_to_the_customer_endpoint(Api::Incydr).await;
}

#[tokio::test]
async fn legacy_a_token_without_tenant_uid_falls_back_to_the_customer_endpoint() {
    a_token_without_tenant_uid_falls_back_to_the_customer_endpoint(Api::Legacy).await;
}

/// Neither the token nor the customer endpoint names the tenant: each run of the
/// source asks once and stops with an error that says so, and the source backs off
/// between runs (no loop of requests).
#[tokio::test]
async fn an_unusable_customer_answer_is_a_clear_error_not_a_tight_loop() {
    let opts = EmulatorOptions {
        tenant_id: String::new(),
        ..alert_tenant(Quirks {
            token_tenant_uid: false,
            ..Quirks::default()
        })
    };
    let emu = start_emulator(opts.clone()).await;
    let run = Run::start(&emu, &opts, Api::Incydr, "alerts", ALERT_KEYS).await;
    const FAILED: &str = "task failed; it restarts from its checkpoint";
    run.wait("two failed runs", || run.log_lines(FAILED).len() >= 2)
        .await;
    let calls = customer_calls(&emu);
    let failures = run.log_lines(FAILED);
    // One call per run (the run after the last failure may have made its own).
    assert!(
        calls >= 2 && calls <= failures.len() as u64 + 1,
        "{calls} customer calls for {} failed runs",
        failures.len()
    );
    assert!(
        failures[0].contains("GET /v1/customer") && failures[0].contains("tenant id"),
        "the error names the endpoint and what is missing: {}",
        failures[0]
    );
    assert_eq!(requests_ending(&emu, "query-alerts"), 0);
    let text = scrape(&run.metrics).await.unwrap_or_default();
    assert!(
        metric_sum(&text, "c42fwd_task_failures_total", &["source:src"]) >= 2.0,
        "{text}"
    );
    let log = run.log();
    assert!(!log.contains(&opts.client_secret), "a secret in the log");
    let status = run.daemon.terminate().await;
    assert!(status.success(), "{status:?}");
}

/// An alert service that takes only `v3_user_token`: refused `Bearer` twice (the token,
/// then a fresh one), it gets `v3_user_token` once and from then on, said once with a
/// WARN; nothing more is refused.
#[tokio::test]
async fn a_legacy_alert_service_that_refuses_bearer_gets_v3_user_token_remembered() {
    let opts = alert_tenant(Quirks {
        alerts_v3_user_token_only: true,
        ..Quirks::default()
    });
    let emu = start_emulator(opts.clone()).await;
    let run = read_every_alert(&emu, &opts, Api::Legacy).await;
    let polls = requests_ending(&emu, "query-alerts");
    run.wait("more polls", || {
        requests_ending(&emu, "query-alerts") >= polls + 3
    })
    .await;
    let s = emu.stats();
    assert_eq!(s.unauthorized, 2, "{s:?}");
    assert!(s.v3_user_token_requests >= 4, "{s:?}");
    let said = run.log_lines("accepted Authorization: v3_user_token");
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(said[0].contains("\"level\":\"WARN\""), "{}", said[0]);
    let log = run.stop_cleanly().await;
    assert!(!log.contains(&opts.password), "a secret in the log");
}
