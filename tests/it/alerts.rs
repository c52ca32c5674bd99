//! Integration tests of the Alerts source against the emulator, both API generations:
//! every alert exactly once with its observations (compared with the emulator's ground
//! truth, `data` parsed into structure), details fetched in chunks of at most 100,
//! restarts from the checkpoint, the configured filter groups as the emulator applies
//! them, and a filter the service cannot apply reported instead of read as "no alerts".
//!
//! `support::source` (shared with `sync_log.rs`) runs any [`WindowPoller`] against an in-test
//! `mpsc` sink that records each batch's events and resolves its ack token. Waits are on
//! conditions with a deadline, never fixed sleeps.

use crate::support::source::*;
use c42fwd::api::{expand_observation_data, ApiClient};
use c42fwd::checkpoint::Store;
use c42fwd::config::{
    AlertFilter, AlertFilterGroup, AlertOperator, ApiGeneration, FilterClause, Source, SourceSpec,
    StartAt,
};
use c42fwd::event::SourceKind;
use c42fwd::metrics::Metrics;
use c42fwd::sources::alerts::AlertsFetch;
use c42fwd::sources::{AlertsPoller, SourceError};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn alert_opts(alert_backlog: u64, alert_rate: f64) -> EmulatorOptions {
    EmulatorOptions {
        seed: 11,
        // The Audit Log is not read here: keep it small.
        backlog: 10,
        backlog_span: Duration::from_secs(600),
        rate: 0.0,
        alert_backlog,
        alert_rate,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        lag: Duration::from_secs(1),
        totp: Some("123456".into()),
        ..EmulatorOptions::default()
    }
}

fn alerts_source(
    name: &str,
    start: DateTime<Utc>,
    page_size: u32,
    groups: Vec<AlertFilterGroup>,
) -> Source {
    Source {
        name: name.into(),
        tenant: "emulated".into(),
        kind: SourceSpec::Alerts(groups),
        lag: Duration::from_secs(2),
        poll_interval: Duration::from_millis(200),
        start: StartAt::At(start),
        page_size,
        reconcile_after: None,
    }
}

/// The ground truth as the source forwards it: details with `data` parsed, sorted.
fn truth(emu: &EmulatorHandle, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
    let mut v: Vec<String> = emu
        .alerts_between(start, end)
        .iter()
        .map(|a| expand_observation_data(a).text)
        .collect();
    v.sort();
    v
}

fn field(alert: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(alert).expect("alert json");
    v[key].as_str().unwrap_or_default().to_string()
}

fn details_route(api: ApiGeneration) -> &'static str {
    match api {
        ApiGeneration::Incydr => "/v1/alerts/query-details",
        ApiGeneration::Legacy => "/svc/api/v1/query-details",
    }
}

/// 230 alerts of backlog plus a live stream, visible up to a second late: every alert
/// that was created before the cut arrives exactly once, as its details with every
/// observation's `data` parsed; details are asked in chunks of at most 100 (the emulator
/// refuses more with a 400, which would stop the source).
async fn every_alert_exactly_once_with_details(api: ApiGeneration) {
    let o = alert_opts(230, 8.0);
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(api, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at() + TimeDelta::seconds(3);
    // Pages of 500: the first page holds the whole backlog, whose details take three
    // requests.
    let src = alerts_source("alerts", start, 500, Vec::new());
    let (route, seen, _sink) = test_sink();
    let mut run = run_source::<AlertsFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the cut", || {
        committed_watermark(&store, "alerts").is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    let expected = truth(&emu, start, cut);
    assert!(
        expected.len() >= 250,
        "backlog and live: {}",
        expected.len()
    );
    let got = in_range(&seen, start, cut);
    assert_eq!(got.len(), expected.len(), "every alert exactly once");
    assert!(got == expected, "the delivered alerts are the emulator's");
    assert_eq!(kinds(&seen), vec![SourceKind::Alerts]);
    // The details carry observations whose data is structure now.
    let first: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(first["type$"], "ALERT_DETAILS");
    let obs = first["observations"].as_array().expect("observations");
    assert!(!obs.is_empty());
    assert!(obs.iter().all(|o| o["data"].is_object()), "{obs:?}");
    let stats = emu.stats();
    let details = stats.requests_to(details_route(api));
    assert!(
        details >= 3,
        "230 alerts in one page need three details requests: {stats:?}"
    );
    assert_eq!(counter(&metrics, "c42fwd_source_details_missing_total"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_every_alert_exactly_once_with_details() {
    every_alert_exactly_once_with_details(ApiGeneration::Incydr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_every_alert_exactly_once_with_details() {
    every_alert_exactly_once_with_details(ApiGeneration::Legacy).await;
}

/// Stopped after five batches (pages of 20) while more were in flight to a stalled
/// sink, started again from the checkpoint: across both runs every alert exactly once.
async fn restart_in_the_middle(api: ApiGeneration) {
    let o = alert_opts(250, 4.0);
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(api, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at() + TimeDelta::seconds(3);
    let src = alerts_source("alerts", start, 20, Vec::new());

    let (route, seen1, batches, sink1) = stalling_sink(5);
    let mut run = run_source::<AlertsFetch>(&src, client.clone(), &store, metrics.clone(), route);
    run.wait_for("five batches", || batches.load(Ordering::SeqCst) >= 5)
        .await;
    run.wait_for("their checkpoint", || {
        committed_watermark(&store, "alerts").is_some_and(|w| w > start)
    })
    .await;
    run.stop_with_stalled_sink(sink1).await;
    let first = seen1.lock().unwrap().len();
    // Each re-anchored query starts at its page's read-up-to point, a quarter of the
    // page back from its last alert: five pages of 20 bring 15 to 20 new alerts each.
    assert!(
        (70..=100).contains(&first),
        "stopped in the middle: {first}"
    );

    let (route, seen2, _s2) = test_sink();
    let mut run = run_source::<AlertsFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the cut", || {
        committed_watermark(&store, "alerts").is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    let mut got = in_range(&seen1, start, cut);
    got.extend(in_range(&seen2, start, cut));
    got.sort();
    let expected = truth(&emu, start, cut);
    assert_eq!(
        got.len(),
        expected.len(),
        "every alert exactly once across the restart"
    );
    assert!(got == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_restart_in_the_middle_loses_and_repeats_nothing() {
    restart_in_the_middle(ApiGeneration::Incydr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_restart_in_the_middle_loses_and_repeats_nothing() {
    restart_in_the_middle(ApiGeneration::Legacy).await;
}

fn filter(term: &str, operator: AlertOperator, value: &str) -> AlertFilter {
    AlertFilter {
        term: term.into(),
        operator,
        value: value.into(),
    }
}

/// Configured filter groups are AND-ed with the window: `Severity IS HIGH` gives exactly
/// the HIGH alerts; an OR group (`HIGH` or `LOW`) exactly those, and never widens the
/// window. Two sources of one tenant, each with its own checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_groups_select_what_the_service_selects() {
    let o = alert_opts(250, 0.0);
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(ApiGeneration::Incydr, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A start inside the backlog: alerts before it must not come through the OR group.
    let start = emu.started_at() - TimeDelta::seconds(300);
    let cut = emu.started_at();
    let all = emu.alerts_between(start, cut);
    let all_before = emu.alerts_between(emu.started_at() - TimeDelta::seconds(700), start);
    assert!(!all_before.is_empty());

    let high = vec![AlertFilterGroup {
        clause: FilterClause::And,
        filters: vec![filter("Severity", AlertOperator::Is, "HIGH")],
    }];
    let high_or_low = vec![AlertFilterGroup {
        clause: FilterClause::Or,
        filters: vec![
            filter("Severity", AlertOperator::Is, "HIGH"),
            filter("Severity", AlertOperator::Is, "low"),
        ],
    }];
    for (name, groups, wanted) in [
        ("high", high, &["HIGH"][..]),
        ("high-or-low", high_or_low, &["HIGH", "LOW"][..]),
    ] {
        let src = alerts_source(name, start, 50, groups);
        let (route, seen, _sink) = test_sink();
        let mut run =
            run_source::<AlertsFetch>(&src, client.clone(), &store, metrics.clone(), route);
        run.wait_for("the committed watermark to pass the cut", || {
            committed_watermark(&store, name).is_some_and(|w| w >= cut)
        })
        .await;
        run.stop().await;
        let mut expected: Vec<String> = all
            .iter()
            .filter(|a| wanted.contains(&field(a, "severity").as_str()))
            .map(|a| expand_observation_data(a).text)
            .collect();
        expected.sort();
        assert!(!expected.is_empty() && expected.len() < all.len(), "{name}");
        let got = in_range(&seen, start, cut);
        assert_eq!(
            got.len(),
            expected.len(),
            "{name}: exactly the matching alerts"
        );
        assert!(got == expected, "{name}");
        assert_eq!(
            in_range(&seen, emu.started_at() - TimeDelta::seconds(700), start).len(),
            0,
            "{name}: nothing from before the start"
        );
    }
}

/// A filter the service cannot apply (a severity it does not know) answers 200 with no
/// alerts and a `problems` entry: the source stops with an error that says so, instead of
/// forwarding nothing forever.
#[tokio::test]
async fn a_filter_the_service_cannot_apply_stops_the_source() {
    let o = alert_opts(20, 0.0);
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(ApiGeneration::Incydr, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let groups = vec![AlertFilterGroup {
        clause: FilterClause::And,
        filters: vec![filter("Severity", AlertOperator::Is, "APOCALYPTIC")],
    }];
    let src = alerts_source(
        "alerts",
        emu.started_at() - TimeDelta::seconds(700),
        100,
        groups,
    );
    let (route, seen, _sink) = test_sink();
    let poller = AlertsPoller::new(&src, client, store, metrics).unwrap();
    let err = tokio::time::timeout(DEADLINE, poller.run(route, CancellationToken::new()))
        .await
        .expect("fails fast")
        .unwrap_err();
    assert!(matches!(err, SourceError::Api { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("query-alerts") && msg.contains("cannot apply"),
        "{msg}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

/// The client alone: a paged `query-alerts` over a range and `query-details` of what it
/// listed agree with the ground truth for both generations; an explicit alert service
/// URL replaces discovery.
#[tokio::test]
async fn query_alerts_and_details_agree_with_the_ground_truth() {
    use c42fwd::api::{AlertQuery, AlertSummary};
    let o = alert_opts(250, 0.0);
    let emu = emulator(o.clone()).await;
    // Whole microseconds (what the filter values carry); ON_OR_BEFORE is inclusive, so
    // the truth is everything created before `end` + 1 ns.
    let micros =
        |t: DateTime<Utc>| DateTime::from_timestamp_micros(t.timestamp_micros()).expect("in range");
    let start = micros(emu.started_at() - TimeDelta::seconds(500));
    let end = micros(emu.started_at() - TimeDelta::seconds(100));
    let past_end = end + TimeDelta::nanoseconds(1);
    let mut expected_summaries = emu.alert_summaries_between(start, past_end);
    expected_summaries.sort();
    let expected = truth(&emu, start, past_end);
    assert!(expected.len() > 100);
    for (api, explicit) in [
        (ApiGeneration::Incydr, false),
        (ApiGeneration::Legacy, false),
        (ApiGeneration::Legacy, true),
    ] {
        let mut t = tenant(api, &emu, &o);
        if explicit {
            t.services.alerts = Some(format!("{}/alert-service", emu.base_url()).parse().unwrap());
        }
        let client = ApiClient::new(&t, Arc::new(Metrics::new())).unwrap();
        let mut summaries = Vec::new();
        let mut page = 0;
        loop {
            let q = AlertQuery {
                start,
                end,
                page,
                page_size: 40,
                groups: &[],
            };
            let p = client.query_alerts(&q).await.unwrap();
            let n = p.alerts.len();
            summaries.extend(p.alerts.into_iter().map(|a| a.get().to_string()));
            if n < 40 {
                break;
            }
            page += 1;
        }
        // Listed oldest first.
        let times: Vec<DateTime<Utc>> = summaries
            .iter()
            .map(|s| AlertSummary::parse(s).created_at.unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{api:?} ascending");
        let ids: Vec<String> = summaries
            .iter()
            .map(|s| AlertSummary::parse(s).id.unwrap())
            .collect();
        summaries.sort();
        assert!(summaries == expected_summaries, "{api:?} summaries");
        let mut details = client.query_alert_details(&ids).await.unwrap();
        let mut got: Vec<String> = ids
            .iter()
            .map(|id| expand_observation_data(details.take(id).expect("details").get()).text)
            .collect();
        got.sort();
        assert!(got == expected, "{api:?} details");
    }
    let stats = emu.stats();
    assert_eq!(
        stats.requests_to("/v1/{key}"),
        1,
        "discovery once, for the one legacy client without an explicit url: {stats:?}"
    );
}

/// An alert whose state changes after it was forwarded shows up with another text in the
/// following polls (a 30 s lag re-reads it many times): it is still forwarded once, since
/// its fingerprint is its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_whose_state_changes_is_forwarded_once() {
    let o = alert_opts(0, 3.0);
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(ApiGeneration::Incydr, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut src = alerts_source(
        "alerts",
        emu.started_at() - TimeDelta::seconds(10),
        100,
        Vec::new(),
    );
    src.lag = Duration::from_secs(30);
    let (route, seen, _sink) = test_sink();
    let mut run = run_source::<AlertsFetch>(&src, client.clone(), &store, metrics.clone(), route);
    run.wait_for("a live alert", || !seen.lock().unwrap().is_empty())
        .await;
    let first = seen.lock().unwrap()[0].0.clone();
    let id = field(&first, "id");
    let new_state = if field(&first, "state") == "OPEN" {
        "RESOLVED"
    } else {
        "OPEN"
    };

    // Change its state through the emulator's API, as an analyst would.
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/v1/oauth", emu.base_url()))
        .basic_auth(&o.client_id, Some(&o.client_secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("a token").to_string();
    let status = http
        .post(format!("{}/v1/alerts/update-state", emu.base_url()))
        .bearer_auth(&token)
        .json(&serde_json::json!({"tenantId": o.tenant_id, "alertIds": [id], "state": new_state}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    let mut details = client
        .query_alert_details(std::slice::from_ref(&id))
        .await
        .unwrap();
    let now = details.take(&id).expect("the alert");
    assert_eq!(field(now.get(), "state"), new_state);

    // Several polls re-read it with its new text.
    let route = "/v1/alerts/query-alerts";
    let polls = emu.stats().requests_to(route);
    run.wait_for("three more polls", || {
        emu.stats().requests_to(route) >= polls + 3
    })
    .await;
    run.stop().await;

    let copies = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(a, _, _)| field(a, "id") == id)
        .count();
    assert_eq!(copies, 1, "forwarded once, whatever its state became");
    assert!(counter(&metrics, "c42fwd_source_duplicates_skipped_total") >= 3);
}

/// One page of 500 alerts needs five `query-details` chunks; against an API that takes
/// 150 ms an answer and a tenant allowing three requests at once, the chunks really are
/// asked at once: the emulator saw more than one details request at a time, never more
/// than three data requests, and the alerts still arrive in time order, each once.
async fn details_chunks_are_asked_at_once_within_the_limit(api: ApiGeneration) {
    let o = EmulatorOptions {
        latency: Duration::from_millis(150),
        ..alert_opts(500, 0.0)
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let mut t = tenant(api, &emu, &o);
    t.max_concurrent_requests = 3;
    let client = client(&t, &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at();
    let src = alerts_source("alerts", start, 500, Vec::new());
    let (route, seen, _sink) = test_sink();
    let mut run = run_source::<AlertsFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the backlog", || {
        committed_watermark(&store, "alerts").is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    let stats = emu.stats();
    let details = details_route(api);
    assert!(
        stats.requests_to(details) >= 5,
        "500 alerts need five details requests: {stats:?}"
    );
    let at_once = stats.max_in_flight_to(details);
    assert!(
        (2..=3).contains(&at_once),
        "{at_once} details requests at once (limit 3): {stats:?}"
    );
    assert!(
        stats.max_data_in_flight <= 3,
        "{} data requests at once (limit 3)",
        stats.max_data_in_flight
    );
    let times: Vec<DateTime<Utc>> = seen.lock().unwrap().iter().map(|e| e.1).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "alerts delivered out of time order"
    );
    let expected = truth(&emu, start, cut);
    assert_eq!(expected.len(), 500);
    let got = in_range(&seen, start, cut);
    assert_eq!(got.len(), expected.len(), "every alert exactly once");
    assert!(got == expected, "the delivered alerts are the emulator's");
    assert_eq!(counter(&metrics, "c42fwd_source_details_missing_total"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_details_chunks_are_asked_at_once_within_the_limit() {
    details_chunks_are_asked_at_once_within_the_limit(ApiGeneration::Incydr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_details_chunks_are_asked_at_once_within_the_limit() {
    details_chunks_are_asked_at_once_within_the_limit(ApiGeneration::Legacy).await;
}
