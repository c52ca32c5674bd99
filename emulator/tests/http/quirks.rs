//! The switchable quirks of the real service ([`Quirks`]), each with its default and
//! turned around: empty Audit Log pages without `events` (both generations), the
//! legacy alert service that takes only `v3_user_token`, tokens with and without their
//! `tenantUid` claim.

use crate::audit_log::{emulator, t0, v1_token, v2_token};
use base64::Engine;
use c42fwd_emulator::*;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// 1,000 backlog events over the hour before `t0`, no live stream, no lag.
fn options(quirks: Quirks) -> EmulatorOptions {
    EmulatorOptions {
        seed: 3,
        backlog: 1_000,
        backlog_span: Duration::from_secs(3_600),
        rate: 0.0,
        alert_backlog: 20,
        alert_rate: 0.0,
        lag: Duration::ZERO,
        start_time: Some(t0()),
        quirks,
        ..EmulatorOptions::default()
    }
}

async fn search(c: &Client, url: &str, token: &str, page: u64, size: u64) -> Value {
    let r = c
        .post(url)
        .bearer_auth(token)
        .json(&json!({
            "type$": "audit_log::audit_log_queries.search_audit_log/1",
            "dateRange": {"startTime": (t0() - chrono::Duration::hours(2)).to_rfc3339(),
                          "endTime": t0().to_rfc3339()},
            "page": page, "pageSize": size,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test]
async fn an_empty_page_has_no_events_key_by_default_in_both_generations() {
    let (h, c) = emulator(options(Quirks::default())).await;
    let v2 = format!("{}/v1/audit/search-audit-log", h.base_url());
    let v1 = format!("{}/audit-log/rpc/search/search-audit-log", h.base_url());
    let t2 = v2_token(&h, &c).await;
    let t1 = v1_token(&h, &c).await;
    for (url, token) in [(&v2, &t2), (&v1, &t1)] {
        // The last full page still has its events...
        let full = search(&c, url, token, 1, 500).await;
        assert_eq!(full["events"].as_array().map(Vec::len), Some(500), "{full}");
        // ... the one after it has none, and no `events` key: only where it starts and
        // the total, which is not beyond it.
        let empty = search(&c, url, token, 2, 500).await;
        assert!(empty.get("events").is_none(), "{empty}");
        assert_eq!(empty["totalResultCount"], 1_000, "{empty}");
        assert_eq!(empty["paginationRangeStartIndex"], 1_000, "{empty}");
        assert_eq!(empty["paginationRangeEndIndex"], 1_000, "{empty}");
    }
    // The legacy answer keeps its type.
    let empty = search(&c, &v1, &t1, 5, 500).await;
    assert_eq!(
        empty["type$"],
        "audit_log::audit_log_queries.search_audit_log.response/1"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn keep_empty_events_answers_an_empty_array_and_the_window_refusal_stays() {
    let quirks = Quirks {
        omit_empty_events: false,
        ..Quirks::default()
    };
    let (h, c) = emulator(EmulatorOptions {
        search_limit: 1_200,
        ..options(quirks)
    })
    .await;
    let v2 = format!("{}/v1/audit/search-audit-log", h.base_url());
    let token = v2_token(&h, &c).await;
    let empty = search(&c, &v2, &token, 5, 200).await;
    assert_eq!(empty["events"], json!([]), "{empty}");
    // A page reaching past the result window is still the gateway's refusal: no
    // events, a total beyond what was read.
    let refused = search(&c, &v2, &token, 2, 500).await;
    assert!(refused.get("events").is_none(), "{refused}");
    assert_eq!(refused["totalResultCount"], 1_000, "{refused}");
    assert!(
        refused.get("paginationRangeStartIndex").is_none(),
        "{refused}"
    );
    h.shutdown().await;
}

async fn legacy_alerts(c: &Client, h: &EmulatorHandle, authorization: &str) -> StatusCode {
    c.post(format!(
        "{}/alert-service/svc/api/v1/query-alerts",
        h.base_url()
    ))
    .header("authorization", authorization)
    .json(&json!({
        "tenantId": EmulatorOptions::default().tenant_id,
        "groupClause": "AND", "groups": [], "pgNum": 0, "pgSize": 10,
        "srtKey": "CreatedAt", "srtDirection": "ASC",
    }))
    .send()
    .await
    .unwrap()
    .status()
}

#[tokio::test]
async fn the_legacy_alert_service_takes_bearer_unless_told_to_take_only_v3_user_token() {
    let (h, c) = emulator(options(Quirks::default())).await;
    let token = v1_token(&h, &c).await;
    assert_eq!(
        legacy_alerts(&c, &h, &format!("Bearer {token}")).await,
        StatusCode::OK
    );
    assert_eq!(
        legacy_alerts(&c, &h, &format!("v3_user_token {token}")).await,
        StatusCode::OK
    );
    assert_eq!(h.stats().v3_user_token_requests, 1);
    h.shutdown().await;

    let (h, c) = emulator(options(Quirks {
        alerts_v3_user_token_only: true,
        ..Quirks::default()
    }))
    .await;
    let token = v1_token(&h, &c).await;
    assert_eq!(
        legacy_alerts(&c, &h, &format!("Bearer {token}")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        legacy_alerts(&c, &h, &format!("v3_user_token {token}")).await,
        StatusCode::OK
    );
    assert_eq!(h.stats().unauthorized, 1);
    assert_eq!(h.stats().v3_user_token_requests, 1);
    // The gateway is not the legacy alert service: Bearer still works there.
    let gateway = v2_token(&h, &c).await;
    let r = c
        .post(format!("{}/v1/alerts/query-alerts", h.base_url()))
        .bearer_auth(gateway)
        .json(
            &json!({"tenantId": EmulatorOptions::default().tenant_id, "groupClause": "AND",
                      "groups": [], "pgNum": 0, "pgSize": 10, "srtKey": "CreatedAt",
                      "srtDirection": "ASC"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.shutdown().await;
}

fn claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a three-part JWT: {token}");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("json payload")
}

#[tokio::test]
async fn tokens_are_jwts_whose_payload_names_the_tenant_unless_told_otherwise() {
    let (h, c) = emulator(options(Quirks::default())).await;
    for token in [v2_token(&h, &c).await, v1_token(&h, &c).await] {
        let v = claims(&token);
        assert_eq!(v["tenantUid"], EmulatorOptions::default().tenant_id, "{v}");
        let iat = v["iat"].as_i64().expect("iat");
        // The emulator's clock started at t0 and runs on.
        assert!(
            (t0().timestamp()..t0().timestamp() + 600).contains(&iat),
            "{v}"
        );
        assert_eq!(v["exp"].as_i64(), Some(iat + 900), "{v}");
        assert!(v["sub"].is_string(), "{v}");
    }
    h.shutdown().await;

    let (h, c) = emulator(options(Quirks {
        token_tenant_uid: false,
        ..Quirks::default()
    }))
    .await;
    let token = v2_token(&h, &c).await;
    let v = claims(&token);
    assert!(v.get("tenantUid").is_none(), "{v}");
    // Still a good token.
    let r = c
        .get(format!("{}/v1/customer", h.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.shutdown().await;
}
