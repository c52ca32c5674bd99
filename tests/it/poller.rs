//! Integration tests of the Audit Log poller against the emulator, both API generations:
//! every event exactly once (compared as multisets with the emulator's ground truth)
//! through window splitting, a live stream with ingestion lag, token expiry and 401s,
//! 429s and 500s, and restarts from the checkpoint.
//!
//! The sink is an in-test `mpsc` receiver that records each batch's events and resolves
//! its ack token. Waits are on conditions with a deadline, never fixed sleeps.

use c42fwd::api::ApiClient;
use c42fwd::checkpoint::Store;
use c42fwd::config::{ApiGeneration, AuditFilters, Credentials, Source, SourceSpec, StartAt};
use c42fwd::metrics::Metrics;
use c42fwd::retry::BackoffPolicy;
use c42fwd::route::Route;
use c42fwd::route::SinkBatch;
use c42fwd::secret::Secret;
use c42fwd::sources::audit::AuditLogFetch;
use c42fwd::sources::{AuditLogPoller, SourceError};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions, FaultOptions};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn opts(backlog: u64, rate: f64) -> EmulatorOptions {
    EmulatorOptions {
        seed: 7,
        backlog,
        backlog_span: Duration::from_secs(600),
        rate,
        lag: Duration::from_secs(1),
        totp: Some("123456".into()),
        ..EmulatorOptions::default()
    }
}

// The emulator tenant of every poller test: Incydr with API client credentials, legacy
// with a user login and TOTP code (and service discovery).
use crate::support::metrics::{metric, metric_sum};
use crate::support::source::{client, counter, emulator, run_source, tenant, DEADLINE};

fn source(start: DateTime<Utc>, page_size: u32) -> Source {
    Source {
        name: "audit".into(),
        tenant: "emulated".into(),
        kind: SourceSpec::AuditLog(AuditFilters::default()),
        lag: Duration::from_secs(2),
        poll_interval: Duration::from_millis(200),
        start: StartAt::At(start),
        page_size,
        reconcile_after: None,
    }
}

/// What the test sink saw: each delivered event's raw JSON and time.
type Seen = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

/// A sink that records and acknowledges batches; `fail_from` = the 1-based batch number
/// from which it fails batches instead (recording nothing).
fn test_sink(fail_from: Option<u64>) -> (Route, Seen, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<SinkBatch>(4);
    let seen: Seen = Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(sb) = rx.recv().await {
            n += 1;
            if fail_from.is_some_and(|f| n >= f) {
                sb.ack.failed();
                continue;
            }
            {
                let mut seen = out.lock().unwrap();
                for e in &sb.batch.events {
                    seen.push((e.json().to_string(), e.occurred));
                }
            }
            sb.ack.delivered();
        }
    });
    (Route::new(vec![tx]), seen, task)
}

fn in_range(seen: &Seen, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
    let mut v: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, t)| *t >= start && *t < end)
        .map(|(s, _)| s.clone())
        .collect();
    v.sort();
    v
}

fn truth(emu: &EmulatorHandle, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
    let mut v = emu.events_between(start, end);
    v.sort();
    v
}

fn committed_watermark(store: &Store) -> Option<DateTime<Utc>> {
    store.load("audit").ok().flatten().map(|c| c.watermark)
}

/// How [`backlog_and_live_exactly_once`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// One page at a time, pages of 2,000: the poll's own queries reach the result
    /// limit and split.
    OnePageAtATime,
    /// Concurrent time slices (three requests at once, each answered 50 ms late so that
    /// they overlap), pages of 10,000 so that a slice's query reaches the result limit
    /// and is split.
    Slices,
}

/// A backlog larger than two result windows plus a live stream with ingestion lag:
/// every event that occurred before `cut` arrives exactly once, and queries reach the
/// result limit and split.
async fn backlog_and_live_exactly_once(api: ApiGeneration, reading: Reading) {
    let sliced = reading == Reading::Slices;
    let o = EmulatorOptions {
        latency: Duration::from_millis(if sliced { 50 } else { 0 }),
        ..opts(25_500, 20.0)
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let mut t = tenant(api, &emu, &o);
    t.max_concurrent_requests = if sliced { 3 } else { 1 };
    let client = client(&t, &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at() + TimeDelta::seconds(3);
    let src = source(start, if sliced { 10_000 } else { 2_000 });
    let (route, seen, _sink) = test_sink(None);
    let mut run = run_source::<AuditLogFetch>(&src, client, &store, metrics.clone(), route);

    // The watermark past `cut` means the poller will never look before it again.
    run.wait_for("the committed watermark to pass the cut", || {
        committed_watermark(&store).is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    if sliced {
        let at_once = emu.stats().max_data_in_flight;
        assert!(
            (2..=3).contains(&at_once),
            "{at_once} requests at once: the slices were not read at once within the limit"
        );
    }
    let expected = truth(&emu, start, cut);
    assert!(
        expected.len() > 25_500,
        "live events too: {}",
        expected.len()
    );
    let got = in_range(&seen, start, cut);
    assert_eq!(got.len(), expected.len(), "every event exactly once");
    assert!(
        got == expected,
        "the delivered events are the emulator's events"
    );
    assert!(
        counter(&metrics, "c42fwd_source_window_splits_total") >= if sliced { 1 } else { 2 },
        "too few queries reached the result limit: {}",
        metrics.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_sliced_backlog_and_live_stream_exactly_once() {
    backlog_and_live_exactly_once(ApiGeneration::Incydr, Reading::Slices).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sliced_backlog_and_live_stream_exactly_once() {
    backlog_and_live_exactly_once(ApiGeneration::Legacy, Reading::Slices).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_backlog_and_live_stream_exactly_once() {
    backlog_and_live_exactly_once(ApiGeneration::Incydr, Reading::OnePageAtATime).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_backlog_and_live_stream_exactly_once() {
    backlog_and_live_exactly_once(ApiGeneration::Legacy, Reading::OnePageAtATime).await;
}

/// Tokens that expire every two seconds (refreshed ahead of time, or after a 401 when
/// the clock disagrees), plus an injected 401 on the first request: the client logs in
/// again and nothing is lost or repeated.
async fn expired_tokens_and_401s(api: ApiGeneration) {
    let o = EmulatorOptions {
        token_ttl: Duration::from_secs(2),
        faults: FaultOptions {
            unauthorized_next: 1,
            ..FaultOptions::default()
        },
        ..opts(3_000, 30.0)
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(api, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at() + TimeDelta::seconds(5);
    let src = source(start, 500);
    let (route, seen, _sink) = test_sink(None);
    let mut run = run_source::<AuditLogFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the cut", || {
        committed_watermark(&store).is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    assert!(emu.stats().unauthorized >= 1, "{:?}", emu.stats());
    assert!(
        counter(&metrics, "c42fwd_api_token_refreshes_total") >= 3,
        "{}",
        metrics.render()
    );
    let expected = truth(&emu, start, cut);
    let got = in_range(&seen, start, cut);
    assert_eq!(got.len(), expected.len(), "every event exactly once");
    assert!(got == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_expired_tokens_and_401s_lose_nothing() {
    expired_tokens_and_401s(ApiGeneration::Incydr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_expired_tokens_and_401s_lose_nothing() {
    expired_tokens_and_401s(ApiGeneration::Legacy).await;
}

/// 429 with Retry-After and 500s on a regular beat: retried, nothing lost or repeated.
async fn rate_limits_and_server_errors(api: ApiGeneration) {
    let o = EmulatorOptions {
        faults: FaultOptions {
            rate_limit_every: 7,
            retry_after: Duration::from_secs(1),
            server_error_every: 5,
            unauthorized_next: 0,
        },
        ..opts(12_000, 20.0)
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(api, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at() + TimeDelta::seconds(2);
    let src = source(start, 1_000);
    let (route, seen, _sink) = test_sink(None);
    let mut run = run_source::<AuditLogFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the cut", || {
        committed_watermark(&store).is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    let stats = emu.stats();
    assert!(
        stats.rate_limited >= 1 && stats.server_errors >= 1,
        "{stats:?}"
    );
    assert!(counter(&metrics, "c42fwd_api_retries_total") >= 2);
    let expected = truth(&emu, start, cut);
    let got = in_range(&seen, start, cut);
    assert_eq!(got.len(), expected.len(), "every event exactly once");
    assert!(got == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_rate_limits_and_server_errors_lose_nothing() {
    rate_limits_and_server_errors(ApiGeneration::Incydr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_rate_limits_and_server_errors_lose_nothing() {
    rate_limits_and_server_errors(ApiGeneration::Legacy).await;
}

/// Stop mid-backlog (shutdown commits the delivered prefix), then a sink that fails a
/// batch (the source stops with an error naming it), then a clean run: across the three
/// runs every event arrives exactly once.
async fn restart_from_checkpoint(api: ApiGeneration) {
    let o = opts(15_000, 20.0);
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(api, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at() + TimeDelta::seconds(3);
    let src = source(start, 500);

    // Run 1: stopped by shutdown somewhere in the backlog.
    let (route, seen1, _s1) = test_sink(None);
    let mut run = run_source::<AuditLogFetch>(&src, client.clone(), &store, metrics.clone(), route);
    run.wait_for("part of the backlog", || {
        seen1.lock().unwrap().len() >= 4_000
    })
    .await;
    run.stop().await;
    let after_first = committed_watermark(&store).expect("a checkpoint after run 1");
    assert!(after_first > start);

    // Run 2: the sink fails its third batch; the source stops and says which batch.
    let (route, seen2, _s2) = test_sink(Some(3));
    let poller =
        AuditLogPoller::new(&src, client.clone(), store.clone(), metrics.clone()).expect("poller");
    let err = tokio::time::timeout(DEADLINE, poller.run(route, CancellationToken::new()))
        .await
        .expect("the source stops on its own")
        .expect_err("a failed batch stops the source");
    assert!(
        matches!(err, SourceError::NotDelivered { batch: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("batch 3"), "{err}");
    let delivered = seen2.lock().unwrap().len();
    assert!(
        delivered > 0 && delivered <= 1_000,
        "two batches delivered: {delivered}"
    );

    // Run 3: a good sink, from the checkpoint, up to the cut.
    let (route, seen3, _s3) = test_sink(None);
    let mut run = run_source::<AuditLogFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the cut", || {
        committed_watermark(&store).is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    let mut got = in_range(&seen1, start, cut);
    got.extend(in_range(&seen2, start, cut));
    got.extend(in_range(&seen3, start, cut));
    got.sort();
    let expected = truth(&emu, start, cut);
    assert_eq!(
        got.len(),
        expected.len(),
        "every event exactly once across restarts"
    );
    assert!(got == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_restart_from_checkpoint_loses_nothing() {
    restart_from_checkpoint(ApiGeneration::Incydr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_restart_from_checkpoint_loses_nothing() {
    restart_from_checkpoint(ApiGeneration::Legacy).await;
}

#[tokio::test]
async fn a_start_older_than_the_retention_is_a_clear_error() {
    let o = opts(0, 0.0);
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = Arc::new(
        ApiClient::new(&tenant(ApiGeneration::Incydr, &emu, &o), metrics.clone()).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut src = source(Utc::now(), 100);
    src.start = StartAt::Ago(Duration::from_secs(91 * 24 * 3600));
    let (route, _seen, _sink) = test_sink(None);
    let poller = AuditLogPoller::new(&src, client, store, metrics).unwrap();
    let err = poller
        .run(route, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::StartTooOld { .. }), "{err}");
    assert!(err.to_string().contains("90 days"), "{err}");
    assert_eq!(
        emu.stats().total_requests(),
        0,
        "refused before any request"
    );
}

#[tokio::test]
async fn bad_credentials_are_a_permanent_error_naming_the_endpoint() {
    let o = opts(10, 0.0);
    let emu = emulator(o.clone()).await;
    let mut t = tenant(ApiGeneration::Incydr, &emu, &o);
    t.credentials = Credentials::ApiClient {
        client_id: o.client_id.clone(),
        secret: Secret::new("wrong-secret"),
    };
    let metrics = Arc::new(Metrics::new());
    let client = Arc::new(ApiClient::new(&t, metrics.clone()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (route, _seen, _sink) = test_sink(None);
    let poller =
        AuditLogPoller::new(&source(emu.started_at(), 100), client, store, metrics).unwrap();
    let err = tokio::time::timeout(DEADLINE, poller.run(route, CancellationToken::new()))
        .await
        .expect("fails fast")
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("POST /v1/oauth") && msg.contains("401"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-secret"), "{msg}");
}

#[tokio::test]
async fn shutdown_while_caught_up_returns_ok_promptly() {
    let o = opts(100, 5.0);
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = Arc::new(
        ApiClient::new(&tenant(ApiGeneration::Incydr, &emu, &o), metrics.clone()).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut src = source(emu.started_at() - TimeDelta::seconds(700), 100);
    src.poll_interval = Duration::from_secs(3600);
    let (route, seen, _sink) = test_sink(None);
    let mut run = run_source::<AuditLogFetch>(&src, client, &store, metrics, route);
    run.wait_for("the backlog", || seen.lock().unwrap().len() >= 100)
        .await;
    run.wait_for("a checkpoint", || committed_watermark(&store).is_some())
        .await;
    // The poller now sleeps for an hour; shutdown must not wait for that.
    tokio::time::timeout(Duration::from_secs(10), run.stop())
        .await
        .expect("shutdown is prompt");
}

/// The client alone: count, paged search and export of one range agree with the
/// emulator's ground truth, for both generations; an explicit Audit Log URL replaces
/// service discovery.
#[tokio::test]
async fn search_count_and_export_agree_with_the_ground_truth() {
    use c42fwd::api::AuditQuery;
    let o = opts(3_000, 0.0);
    let emu = emulator(o.clone()).await;
    let start = emu.started_at() - TimeDelta::seconds(400);
    let end = emu.started_at() - TimeDelta::seconds(200);
    let expected = truth(&emu, start, end);
    assert!(expected.len() > 500);
    let filters = AuditFilters::default();
    for api in [ApiGeneration::Incydr, ApiGeneration::Legacy] {
        let mut t = tenant(api, &emu, &o);
        if api == ApiGeneration::Legacy {
            t.services.audit_log = Some(format!("{}/audit-log", emu.base_url()).parse().unwrap());
        }
        let client = ApiClient::new(&t, Arc::new(Metrics::new())).unwrap();
        let mut q = AuditQuery {
            start,
            end,
            page: 0,
            page_size: 250,
            filters: &filters,
        };
        let mut paged = Vec::new();
        loop {
            let page = client.search_audit_log(&q).await.unwrap();
            assert!(!page.past_result_window);
            let n = page.events.len();
            paged.extend(page.events.into_iter().map(|e| e.get().to_string()));
            if n < 250 {
                break;
            }
            q.page += 1;
        }
        paged.sort();
        assert!(paged == expected, "{api:?} search");
        let mut exported: Vec<String> = client
            .export_audit_log(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.get().to_string())
            .collect();
        exported.sort();
        assert!(exported == expected, "{api:?} export");
        let count = client.count_audit_log(&q).await.unwrap();
        match api {
            ApiGeneration::Incydr => assert_eq!(count, Some(expected.len() as u64)),
            ApiGeneration::Legacy => assert_eq!(count, None),
        }
        assert!(!client.tenant_id().await.unwrap().is_empty());
    }
    assert_eq!(
        emu.stats().requests_to("/api/v1/ServerEnv"),
        0,
        "the configured audit log url wins over discovery"
    );
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_setup_error_naming_it() {
    let o = opts(0, 0.0);
    let emu = emulator(o.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut t = tenant(ApiGeneration::Incydr, &emu, &o);
    t.ca_file = Some(dir.path().join("missing.pem"));
    let err = ApiClient::new(&t, Arc::new(Metrics::new())).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    t.ca_file = Some(dir.path().join("empty.pem"));
    let err = ApiClient::new(&t, Arc::new(Metrics::new())).unwrap_err();
    assert!(err.to_string().contains("empty.pem"), "{err}");
}

#[tokio::test]
async fn requests_go_through_the_configured_proxy() {
    // A forward proxy that answers every request itself with 502: if the client goes
    // through it, the error is a server error from the proxy, and the emulator sees
    // nothing.
    let o = opts(10, 0.0);
    let emu = emulator(o.clone()).await;
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let seen_by_proxy = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen_by_proxy.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = proxy.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            log.lock()
                .unwrap()
                .push(head.lines().next().unwrap_or("").to_string());
            let _ = s
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 7\r\nconnection: close\r\n\r\nproxied")
                .await;
        }
    });
    let mut t = tenant(ApiGeneration::Incydr, &emu, &o);
    t.proxy = Some(format!("http://{proxy_addr}").parse().unwrap());
    let client = ApiClient::new(&t, Arc::new(Metrics::new()))
        .unwrap()
        .with_backoff(BackoffPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
            max_retries: Some(1),
        });
    let err = client.check_login().await.unwrap_err();
    assert!(err.to_string().contains("502"), "{err}");
    let lines = seen_by_proxy.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("POST http://") && l.contains("/v1/oauth")),
        "{lines:?}"
    );
    assert_eq!(emu.stats().total_requests(), 0);
}

/// A server whose result window holds two events, read one event per page: every tie
/// (two events at one instant, which the emulator makes now and then) fills a whole
/// window at one instant, which the poller reads through the export endpoint.
async fn ties_beyond_the_window_go_through_export(api: ApiGeneration) {
    let o = EmulatorOptions {
        search_limit: 2,
        ..opts(400, 0.0)
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(api, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at();
    let src = source(start, 1);
    let (route, seen, _sink) = test_sink(None);
    let mut run = run_source::<AuditLogFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the cut", || {
        committed_watermark(&store).is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    let expected = truth(&emu, start, cut);
    let got = in_range(&seen, start, cut);
    assert_eq!(got.len(), expected.len(), "every event exactly once");
    assert!(got == expected);
    let export_route = match api {
        ApiGeneration::Incydr => "/v1/audit/search-results-export",
        ApiGeneration::Legacy => "/rpc/search/search-results-export",
    };
    assert!(
        emu.stats().requests_to(export_route) >= 1,
        "{:?}",
        emu.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_ties_beyond_the_window_go_through_export() {
    ties_beyond_the_window_go_through_export(ApiGeneration::Incydr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_ties_beyond_the_window_go_through_export() {
    ties_beyond_the_window_go_through_export(ApiGeneration::Legacy).await;
}

/// A live stream of 200 events a second polled every 500 ms with a lag of 5 s, whose
/// ingestion delays most events by up to 300 ms and one in a hundred by 2 s more (late,
/// but inside the lag window): the polls prove by counts what they read before, so the
/// emulator serves each event about once (reading the lag window every poll would serve
/// it about ten times), and every event, the late ones too, arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_live_stream_is_read_about_once_and_late_events_arrive_once() {
    let o = EmulatorOptions {
        lag: Duration::from_millis(300),
        late_fraction: 0.01,
        late_by: Duration::from_secs(2),
        ..opts(0, 200.0)
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(ApiGeneration::Incydr, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at();
    let cut = emu.started_at() + TimeDelta::seconds(8);
    let src = Source {
        lag: Duration::from_secs(5),
        poll_interval: Duration::from_millis(500),
        ..source(start, 10_000)
    };
    let (route, seen, _sink) = test_sink(None);
    let mut run = run_source::<AuditLogFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the cut", || {
        committed_watermark(&store).is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    let expected = truth(&emu, start, cut);
    assert!(expected.len() > 1_000, "{}", expected.len());
    let got = in_range(&seen, start, cut);
    assert_eq!(got.len(), expected.len(), "every event exactly once");
    assert!(got == expected, "the delivered events are the emulator's");

    let stats = emu.stats();
    let served = stats.events["/v1/audit/search-audit-log"];
    let forwarded = counter(&metrics, "c42fwd_source_events_total");
    let amplification = served as f64 / forwarded as f64;
    assert!(
        amplification < 1.5,
        "{served} served for {forwarded} forwarded: {amplification:.2}; {stats:?}"
    );
    assert_eq!(counter(&metrics, "c42fwd_source_api_records_total"), served);
    assert!(
        stats.requests["/v1/audit/search-results-count"] > 0,
        "{stats:?}"
    );
    eprintln!("read amplification {amplification:.2}: {stats:?}");
    let r = metrics.render();
    let skipped = counter(&metrics, "c42fwd_source_reread_skipped_total");
    assert!(skipped > 5, "{r}");
    // A poll asks more than one count only when one differed: the late events (and
    // those not yet visible at the previous poll) were looked for, and found.
    assert!(
        stats.requests["/v1/audit/search-results-count"] > skipped,
        "{stats:?} {r}"
    );
}

/// A backlog of many time slices read at once (three requests in flight at most, each
/// answered 50 ms late): every event exactly once, delivered in time order, and never
/// more data requests in the emulator at once than the tenant's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_in_concurrent_slices_arrives_once_in_time_order_within_the_limit() {
    let o = EmulatorOptions {
        latency: Duration::from_millis(50),
        ..opts(12_000, 0.0)
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let mut t = tenant(ApiGeneration::Incydr, &emu, &o);
    t.max_concurrent_requests = 3;
    let client = client(&t, &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at();
    let src = source(start, 500);
    let (route, seen, _sink) = test_sink(None);
    let mut run = run_source::<AuditLogFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the backlog", || {
        committed_watermark(&store).is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    let stats = emu.stats();
    assert!(
        (2..=3).contains(&stats.max_data_in_flight),
        "{} data requests at once",
        stats.max_data_in_flight
    );
    let times: Vec<DateTime<Utc>> = seen.lock().unwrap().iter().map(|e| e.1).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "delivered out of time order"
    );
    let expected = truth(&emu, start, cut);
    let got = in_range(&seen, start, cut);
    assert_eq!(got.len(), expected.len(), "every event exactly once");
    assert!(got == expected);
}

/// A catch-up in slices with four requests allowed at once meets a run of 429s: the
/// tenant's limit (its gauge) drops below four; once the 429s stopped and the requests
/// sent before the cut came back, the emulator never sees more data requests at once
/// than the lowered limit; every event arrives exactly once, in time order.
///
/// On the wall clock: the emulator is served over real sockets, and a paused clock
/// would jump to the next timer whenever the runtime waits on them. The limit grows
/// back by one only after 30 s without a 429 (`api::limiter::QUIET_PERIOD`), far longer
/// than the measured phase; the assertion holds against the limit at the end of that
/// phase anyway, which is the highest it was during it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_during_a_sliced_catch_up_lower_the_requests_at_once() {
    let o = EmulatorOptions {
        latency: Duration::from_millis(100),
        ..opts(20_000, 0.0)
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let mut t = tenant(ApiGeneration::Incydr, &emu, &o);
    t.max_concurrent_requests = 4;
    let client = client(&t, &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at();
    let src = source(start, 200);
    let (route, seen, _sink) = test_sink(None);
    let mut run = run_source::<AuditLogFetch>(&src, client, &store, metrics.clone(), route);
    let gauge = |name: &str| metric(&metrics.render(), &format!("{name}{{tenant=\"emulated\"}}"));
    let limit = || gauge("c42fwd_api_concurrency_limit") as u64;
    let in_flight = || gauge("c42fwd_api_requests_in_flight") as u64;
    let searches = || emu.stats().requests_to("/v1/audit/search-audit-log");

    // The catch-up under way, at four requests at once.
    run.wait_for("a quarter of the backlog, four requests at once", || {
        seen.lock().unwrap().len() >= 5_000 && emu.stats().max_data_in_flight >= 4
    })
    .await;
    assert_eq!(emu.stats().max_data_in_flight, 4, "within the limit");
    assert_eq!(limit(), 4);

    // Every third request answered 429 until the limit was cut twice (the second cut
    // comes at least a second after the first: 429s answering requests sent together
    // cut once).
    emu.set_faults(FaultOptions {
        rate_limit_every: 3,
        retry_after: Duration::from_secs(1),
        ..FaultOptions::default()
    });
    run.wait_for("the limit to be cut twice", || limit() <= 1)
        .await;
    emu.set_faults(FaultOptions::default());
    let rate_limited = emu.stats().rate_limited;
    assert!(rate_limited >= 2, "{rate_limited} 429s");

    // No more cuts once the client has seen every 429 the emulator sent; in flight
    // within the limit once the requests sent before the cuts came back.
    run.wait_for("every 429 seen, the requests of before back", || {
        metric_sum(
            &metrics.render(),
            "c42fwd_api_retries_total",
            &[r#"reason="429""#],
        ) as u64
            >= rate_limited
            && in_flight() <= limit()
    })
    .await;
    emu.reset_in_flight_peaks();
    let from = searches();
    run.wait_for("twenty more pages, or the end of the backlog", || {
        searches() >= from + 20 || committed_watermark(&store).is_some_and(|w| w >= cut)
    })
    .await;
    let peak = emu.stats().max_data_in_flight;
    let lowered = limit();
    assert!(lowered < 4, "the limit grew back already: {lowered}");
    assert!(
        (1..=lowered).contains(&peak),
        "{peak} data requests at once after the limit was lowered to {lowered}"
    );

    run.wait_for("the committed watermark to pass the backlog", || {
        committed_watermark(&store).is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;
    let times: Vec<DateTime<Utc>> = seen.lock().unwrap().iter().map(|e| e.1).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "delivered out of time order"
    );
    let expected = truth(&emu, start, cut);
    let got = in_range(&seen, start, cut);
    assert_eq!(got.len(), expected.len(), "every event exactly once");
    assert!(got == expected);
}
