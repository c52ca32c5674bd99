//! `/v2/file-events`: offset paging inside the 10,000-result window, `pgToken` paging
//! past it (`nextPgToken` absent on the last page), tokens bound to their query and
//! expiring, ingestion lag on the insert time, and the problems of a bad request.

use super::audit_log::{emulator, t0, v2_token};
use c42fwd_emulator::EmulatorOptions;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

fn options() -> EmulatorOptions {
    EmulatorOptions {
        seed: 5,
        backlog: 0,
        rate: 0.0,
        file_event_backlog: 23_456,
        file_event_rate: 0.0,
        backlog_span: Duration::from_secs(3_600),
        lag: Duration::ZERO,
        start_time: Some(t0()),
        ..EmulatorOptions::default()
    }
}

fn window(start: DateTime<Utc>, end: DateTime<Utc>) -> Value {
    json!([{"filterClause": "AND", "filters": [
        {"term": "event.inserted", "operator": "ON_OR_AFTER", "value": start.to_rfc3339()},
        {"term": "event.inserted", "operator": "ON_OR_BEFORE", "value": end.to_rfc3339()},
    ]}])
}

async fn search(c: &reqwest::Client, base: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let r = c
        .post(format!("{base}/v2/file-events"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    (status, v)
}

fn ids(v: &Value) -> Vec<String> {
    v["fileEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn page_tokens_read_past_the_result_window_and_the_last_page_has_none() {
    let (h, c) = emulator(options()).await;
    let token = v2_token(&h, &c).await;
    let base = h.base_url();
    let (start, end) = (t0() - chrono::Duration::hours(2), t0());
    let truth = h.file_event_ids_between(start, end);
    assert_eq!(truth.len(), 23_456);
    let mut got = Vec::new();
    let mut pg_token = String::new();
    let mut pages = 0;
    loop {
        let body = json!({"groupClause": "AND", "groups": window(start, end), "pgNum": 1,
            "pgSize": 10_000, "pgToken": pg_token, "srtKey": "event.inserted", "srtDir": "asc"});
        let (status, v) = search(&c, &base, &token, body).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["totalCount"], 23_456);
        got.extend(ids(&v));
        pages += 1;
        match v.get("nextPgToken").and_then(Value::as_str) {
            Some(t) => pg_token = t.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got, truth, "every event once, in insert order");

    // Offset paging stops at the window: pgNum 2 of 10,000 reaches past 10,000.
    let body = json!({"groups": window(start, end), "pgNum": 2, "pgSize": 10_000});
    let (status, v) = search(&c, &base, &token, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["problems"][0]["type"], "INVALID_PAGE_NUMBER");
    // ... and inside it, pages by number, without tokens.
    let body = json!({"groups": window(start, end), "pgNum": 2, "pgSize": 5_000});
    let (status, v) = search(&c, &base, &token, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&v), truth[5_000..10_000]);
    assert!(v.get("nextPgToken").is_none());
}

#[tokio::test]
async fn tokens_belong_to_their_query_and_expire() {
    let opts = EmulatorOptions {
        file_event_token_ttl: Duration::from_secs(60),
        ..options()
    };
    let (h, c) = emulator(opts).await;
    let token = v2_token(&h, &c).await;
    let base = h.base_url();
    let (start, end) = (t0() - chrono::Duration::hours(2), t0());
    let first = json!({"groups": window(start, end), "pgSize": 100, "pgToken": ""});
    let (_, v) = search(&c, &base, &token, first).await;
    let next = v["nextPgToken"].as_str().unwrap().to_owned();
    // Another query (another page size) refuses it.
    let other = json!({"groups": window(start, end), "pgSize": 50, "pgToken": next});
    let (status, v) = search(&c, &base, &token, other).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["problems"][0]["type"], "INVALID_PAGE_TOKEN");
    let same = json!({"groups": window(start, end), "pgSize": 100, "pgToken": next});
    let (status, v) = search(&c, &base, &token, same.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&v), h.file_event_ids_between(start, end)[100..200]);
    h.advance(Duration::from_secs(61));
    let token = v2_token(&h, &c).await;
    let (status, v) = search(&c, &base, &token, same).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["problems"][0]["type"], "INVALID_PAGE_TOKEN");
    assert!(v["problems"][0]["description"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn live_events_show_up_within_the_lag_of_their_insert_time() {
    let opts = EmulatorOptions {
        file_event_backlog: 0,
        file_event_rate: 50.0,
        lag: Duration::from_secs(30),
        ..options()
    };
    let (h, c) = emulator(opts).await;
    h.advance(Duration::from_secs(60));
    let token = v2_token(&h, &c).await;
    let (start, end) = (t0(), t0() + chrono::Duration::seconds(60));
    let truth = h.file_event_ids_between(start, end);
    let body = json!({"groups": window(start, end), "pgSize": 10_000, "pgToken": ""});
    let (_, v) = search(&c, &h.base_url(), &token, body.clone()).await;
    let now = ids(&v);
    assert!(
        now.len() < truth.len(),
        "the last 30 s are not all visible yet"
    );
    assert!(now.len() >= truth.len() / 2 - 100, "older events are");
    h.advance(Duration::from_secs(31));
    let (_, v) = search(&c, &h.base_url(), &token, body).await;
    assert_eq!(ids(&v), truth, "all visible after the lag");
}

#[tokio::test]
async fn filters_and_bad_requests() {
    let (h, c) = emulator(options()).await;
    let token = v2_token(&h, &c).await;
    let base = h.base_url();
    let (start, end) = (t0() - chrono::Duration::hours(2), t0());
    let mut groups = window(start, end);
    groups
        .as_array_mut()
        .unwrap()
        .push(json!({"filterClause": "OR", "filters": [
        {"term": "event.action", "operator": "IS", "value": "removable-media-created"},
        {"term": "event.action", "operator": "IS", "value": "file-uploaded"}]}));
    let body = json!({"groupClause": "AND", "groups": groups, "pgSize": 10_000, "pgToken": ""});
    let (status, v) = search(&c, &base, &token, body).await;
    assert_eq!(status, StatusCode::OK);
    let events = v["fileEvents"].as_array().unwrap();
    assert!(events.len() > 1_000);
    assert_eq!(v["totalCount"].as_u64().unwrap() as usize, events.len());
    assert!(events.iter().all(|e| matches!(
        e["event"]["action"].as_str(),
        Some("removable-media-created" | "file-uploaded")
    )));
    for (body, kind) in [
        (json!({"pgSize": 10_001}), "INVALID_PAGE_SIZE"),
        (json!({"srtKey": "file.name"}), "ILLEGAL_SORT"),
        (
            json!({"groups": [{"filters": [{"term": "nope", "operator": "IS", "value": "x"}]}]}),
            "ILLEGAL_VALUE",
        ),
        (json!({"pgToken": "forged_1_2"}), "INVALID_PAGE_TOKEN"),
    ] {
        let (status, v) = search(&c, &base, &token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["problems"][0]["type"], kind);
    }
    assert_eq!(h.stats().requests_to("/v2/file-events"), 5);
}
