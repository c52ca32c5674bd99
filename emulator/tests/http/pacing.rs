//! The latency and transfer rate of the data endpoints (`EmulatorOptions::latency`,
//! `EmulatorOptions::bandwidth`), over real HTTP.
//!
//! The emulator runs on tokio's paused clock here, so an hour of latency passes as soon
//! as nothing else is left to do: the tests read what each request waited on that
//! clock, which says exactly which endpoints are slowed and by how much, without
//! timing anything real. One test measures wall time, as a lower bound only (the
//! emulator delays at least that long), the way a benchmark sees it.

use crate::audit_log::{emulator, t0, v1_token, v2_token};
use c42fwd_emulator::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

const HOUR: Duration = Duration::from_secs(3600);

/// 1,000 backlog events over 10 hours, no live stream, no lag.
fn options() -> EmulatorOptions {
    EmulatorOptions {
        seed: 11,
        backlog: 1_000,
        backlog_span: Duration::from_secs(36_000),
        rate: 0.0,
        alert_backlog: 50,
        alert_rate: 0.0,
        sync_log_backlog: 100,
        sync_log_rate: 0.0,
        lag: Duration::ZERO,
        start_time: Some(t0()),
        ..EmulatorOptions::default()
    }
}

fn search_body(page_size: u64) -> Value {
    json!({"page": 0, "pageSize": page_size, "dateRange": {
        "startTime": "2024-02-29T14:00:00Z", "endTime": "2024-03-01T00:00:00Z"}})
}

/// What one request waited on tokio's clock, its status and its body.
async fn timed(req: reqwest::RequestBuilder) -> (Duration, StatusCode, String) {
    let start = Instant::now();
    let r = req.send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    (Instant::now() - start, status, body)
}

/// Every data endpoint waits the latency, whatever it answers; authentication,
/// discovery, unknown routes and the statistics do not.
#[tokio::test(start_paused = true)]
async fn latency_holds_every_data_endpoint_and_nothing_else() {
    let (h, c) = emulator(EmulatorOptions {
        latency: HOUR,
        ..options()
    })
    .await;
    let base = h.base_url();
    let start = Instant::now();
    let token = v2_token(&h, &c).await;
    let v1 = v1_token(&h, &c).await;
    assert!(
        Instant::now() - start < HOUR,
        "authentication is not slowed"
    );
    let fast: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "customer",
            c.get(format!("{base}/v1/customer")).bearer_auth(&token),
        ),
        ("server env", c.get(format!("{base}/api/v1/ServerEnv"))),
        ("unknown", c.get(format!("{base}/nope"))),
        ("stats", c.get(format!("{base}/_emulator/stats"))),
    ];
    for (what, req) in fast {
        let (waited, _, _) = timed(req).await;
        assert!(waited < HOUR, "{what} waited {waited:?}");
    }
    let search = search_body(10);
    let alerts = json!({"tenantId": EmulatorOptions::default().tenant_id, "groups": [],
        "groupClause": "AND", "pgNum": 0, "pgSize": 10, "srtDirection": "asc",
        "srtKey": "CreatedAt"});
    let sync = "/api/v3/DirectorySyncLog?eventOccurredAfter=2024-01-01T00:00:00.000Z";
    let slow: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "/v1/audit/search-audit-log",
            c.post(format!("{base}/v1/audit/search-audit-log"))
                .bearer_auth(&token)
                .json(&search),
        ),
        (
            "/v1/audit/search-results-count",
            c.post(format!("{base}/v1/audit/search-results-count"))
                .bearer_auth(&token)
                .json(&search),
        ),
        (
            "/v1/audit/search-results-export",
            c.post(format!("{base}/v1/audit/search-results-export"))
                .bearer_auth(&token)
                .json(&search),
        ),
        (
            "/rpc/search/search-audit-log",
            c.post(format!("{base}/rpc/search/search-audit-log"))
                .header("authorization", format!("v3_user_token {v1}"))
                .json(&search),
        ),
        (
            "/v1/alerts/query-alerts",
            c.post(format!("{base}/v1/alerts/query-alerts"))
                .bearer_auth(&token)
                .json(&alerts),
        ),
        (
            "/svc/api/v1/query-details",
            c.post(format!("{base}/svc/api/v1/query-details"))
                .header("authorization", format!("v3_user_token {v1}"))
                .json(&json!({"tenantId": EmulatorOptions::default().tenant_id, "alertIds": []})),
        ),
        (
            "/api/v3/DirectorySyncLog",
            c.get(format!("{base}{sync}")).bearer_auth(&token),
        ),
        (
            // A refused request is slowed too: the latency is the service's.
            "/v1/audit/search-audit-log",
            c.post(format!("{base}/v1/audit/search-audit-log"))
                .bearer_auth("not-a-token")
                .json(&search),
        ),
    ];
    let n = slow.len() as u64;
    for (route, req) in slow {
        let before = h.stats().requests_to(route);
        let (waited, status, body) = timed(req).await;
        assert!(waited >= HOUR, "{route} waited only {waited:?}");
        assert!(waited < 2 * HOUR, "{route} waited {waited:?}");
        assert!(
            status.is_success() || status == StatusCode::UNAUTHORIZED,
            "{route}: {status} {body}"
        );
        assert_eq!(h.stats().requests_to(route), before + 1, "{route} counted");
    }
    let s = h.stats();
    assert_eq!(s.events_from("/v1/audit/search-audit-log"), 10);
    assert_eq!(s.events_from("/rpc/search/search-audit-log"), 10);
    assert_eq!(s.events_from("/v1/audit/search-results-export"), 1_000);
    assert!(s.events_from("/api/v3/DirectorySyncLog") > 0);
    assert!(Instant::now() - start >= HOUR * n as u32);
    h.shutdown().await;
}

/// A page goes at the configured rate: its size over the rate on the clock, and the
/// same bytes as without pacing.
#[tokio::test(start_paused = true)]
async fn bandwidth_paces_the_body_to_its_size_over_the_rate() {
    let rate = 100_000u64;
    let (paced, _) = emulator(EmulatorOptions {
        bandwidth: ByteRate::per_second(rate),
        ..options()
    })
    .await;
    let (plain, _) = emulator(options()).await;
    // No pooled connections: each carries reqwest's 90 s idle timer, and the paused
    // clock can jump to it while a piece crosses the socket (seen: 180 s for 3 s).
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut bodies = Vec::new();
    for h in [&plain, &paced] {
        let token = v2_token(h, &c).await;
        let (waited, status, body) = timed(
            c.post(format!("{}/v1/audit/search-audit-log", h.base_url()))
                .bearer_auth(&token)
                .json(&search_body(500)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        bodies.push((waited, body));
    }
    let (_, ref unpaced) = bodies[0];
    let (waited, ref body) = bodies[1];
    assert_eq!(body, unpaced, "pacing changes no byte");
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 500);
    let least = Duration::from_secs_f64(body.len() as f64 / rate as f64);
    assert!(
        waited >= least.saturating_sub(Duration::from_millis(1)),
        "{} bytes at {rate} B/s in {waited:?}",
        body.len()
    );
    assert!(
        waited < least + Duration::from_secs(1),
        "{waited:?} for {} bytes",
        body.len()
    );
    // Without a bandwidth the same page came at once.
    assert!(
        bodies[0].0 < Duration::from_millis(100),
        "{:?}",
        bodies[0].0
    );
    paced.shutdown().await;
    plain.shutdown().await;
}

/// On the wall clock: 200 ms of latency makes a search take at least 200 ms. A lower
/// bound on the emulator's delay, not a measure of anyone's speed.
#[tokio::test]
async fn latency_is_at_least_what_was_asked_on_the_wall_clock() {
    let (h, c) = emulator(EmulatorOptions {
        latency: Duration::from_millis(200),
        ..options()
    })
    .await;
    let token = v2_token(&h, &c).await;
    #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    let r = c
        .post(format!("{}/v1/audit/search-audit-log", h.base_url()))
        .bearer_auth(&token)
        .json(&search_body(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    h.shutdown().await;
}
