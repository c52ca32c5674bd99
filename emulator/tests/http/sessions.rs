//! Sessions: `GET /v1/sessions` filtered by `beginTime`, ordered by `endTime`, paged from
//! 0 by at most 50; sessions that change as the emulator's clock moves; one session and
//! its file events; Bearer tokens required.

use crate::audit_log::{emulator, t0, v2_token};
use c42fwd_emulator::*;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

fn options() -> EmulatorOptions {
    EmulatorOptions {
        seed: 9,
        backlog: 0,
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        session_backlog: 120,
        session_rate: 0.0,
        backlog_span: Duration::from_secs(600),
        session_update_every: Duration::from_secs(120),
        lag: Duration::ZERO,
        start_time: Some(t0()),
        ..EmulatorOptions::default()
    }
}

async fn get(c: &Client, url: String, token: &str) -> (StatusCode, Value) {
    let r = c.get(url).bearer_auth(token).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every page of `query` (which must not set page_number / page_size), in pages of 50.
async fn all_pages(h: &EmulatorHandle, c: &Client, token: &str, query: &str) -> (Vec<Value>, u64) {
    let mut out = Vec::new();
    let mut total = None;
    for page in 0.. {
        let (status, v) = get(
            c,
            format!(
                "{}/v1/sessions?{query}&page_number={page}&page_size=50",
                h.base_url()
            ),
            token,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let n = v["totalCount"].as_u64().unwrap();
        assert_eq!(
            *total.get_or_insert(n),
            n,
            "the count is the same on every page"
        );
        let items = v["items"].as_array().unwrap().clone();
        let short = items.len() < 50;
        out.extend(items);
        if short {
            break;
        }
    }
    (out, total.unwrap_or(0))
}

#[tokio::test]
async fn sessions_are_filtered_by_begin_time_ordered_by_end_time_and_paged_by_50() {
    let (h, c) = emulator(options()).await;
    let url = format!("{}/v1/sessions", h.base_url());
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let token = v2_token(&h, &c).await;
    let (status, v) = get(&c, format!("{url}?page_size=51"), &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("page_size"), "{v}");
    let (status, _) = get(&c, format!("{url}?on_or_after=yesterday"), &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let start = (t0() - chrono::Duration::minutes(20)).timestamp_millis();
    let end = t0().timestamp_millis() + 1;
    let range = format!("on_or_after={start}&before={end}&sort_direction=ASC");
    let (alerted, n) = all_pages(&h, &c, &token, &range).await;
    let (quiet, m) = all_pages(&h, &c, &token, &format!("{range}&has_alerts=false")).await;
    assert_eq!(alerted.len() as u64, n);
    assert_eq!(quiet.len() as u64, m);
    assert_eq!(n + m, 120, "every session, with alerts or without");
    assert!(n > m && m > 0);
    let ids: HashSet<&str> = alerted
        .iter()
        .map(|s| s["sessionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, n, "no session twice across pages");
    let ends: Vec<i64> = alerted
        .iter()
        .map(|s| s["endTime"].as_i64().unwrap())
        .collect();
    assert!(
        ends.windows(2).all(|w| w[0] <= w[1]),
        "by endTime, ascending"
    );
    for s in &alerted {
        let begin = s["beginTime"].as_i64().unwrap();
        assert!((start..end).contains(&begin));
        assert!(!s["triggeredAlerts"].as_array().unwrap().is_empty());
    }
    assert!(quiet
        .iter()
        .all(|s| s["triggeredAlerts"].as_array().unwrap().is_empty()));
    // The default order is by endTime, newest first; a beginTime filter cuts the list.
    let (_, v) = get(&c, format!("{url}?page_size=50"), &token).await;
    let first = v["items"][0]["endTime"].as_i64().unwrap();
    assert_eq!(first, *ends.iter().max().unwrap());
    let mid = alerted[alerted.len() / 2]["beginTime"].as_i64().unwrap();
    let (later, _) = all_pages(&h, &c, &token, &format!("on_or_after={mid}&before={end}")).await;
    assert!(later
        .iter()
        .all(|s| s["beginTime"].as_i64().unwrap() >= mid));
    assert!(later.len() < alerted.len());

    // One session, its file events; a session without alerts has none (404).
    let id = alerted[0]["sessionId"].as_str().unwrap();
    let (status, one) = get(&c, format!("{url}/{id}"), &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, alerted[0]);
    let (status, ev) = get(&c, format!("{url}/{id}/events"), &token).await;
    assert_eq!(status, StatusCode::OK);
    let files = ev["queryResult"]["fileEvents"].as_array().unwrap();
    assert_eq!(
        files.len() as u64,
        ev["queryResult"]["totalCount"].as_u64().unwrap()
    );
    let quiet_id = quiet[0]["sessionId"].as_str().unwrap();
    let (status, _) = get(&c, format!("{url}/{quiet_id}/events"), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&c, format!("{url}/not-a-session"), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(h.stats().requests_to("/v1/sessions") >= 8);
}

#[tokio::test]
async fn sessions_change_as_the_clock_moves_and_move_in_the_end_time_order() {
    let (h, c) = emulator(options()).await;
    let token = v2_token(&h, &c).await;
    let start = (t0() - chrono::Duration::minutes(20)).timestamp_millis();
    let range = format!("on_or_after={start}&sort_direction=ASC");
    let (before, _) = all_pages(&h, &c, &token, &range).await;
    h.advance(Duration::from_secs(3_600));
    // An hour outlives the token.
    let token = v2_token(&h, &c).await;
    let (after, _) = all_pages(&h, &c, &token, &range).await;
    let by_id = |v: &[Value]| -> std::collections::HashMap<String, Value> {
        v.iter()
            .map(|s| (s["sessionId"].as_str().unwrap().to_string(), s.clone()))
            .collect()
    };
    let (b, a) = (by_id(&before), by_id(&after));
    assert_eq!(b.len(), a.len(), "the same sessions");
    let mut updated = 0;
    for (id, old) in &b {
        let new = &a[id];
        let (lu0, lu1) = (
            old["lastUpdated"].as_i64().unwrap(),
            new["lastUpdated"].as_i64().unwrap(),
        );
        assert!(lu1 >= lu0);
        if lu1 > lu0 {
            updated += 1;
            assert!(
                new["states"].as_array().unwrap().len() > old["states"].as_array().unwrap().len()
            );
            assert!(
                new["scores"].as_array().unwrap().len() > old["scores"].as_array().unwrap().len()
            );
            assert!(new["endTime"].as_i64() >= old["endTime"].as_i64());
            assert_eq!(new["beginTime"], old["beginTime"], "the begin time stays");
        }
    }
    assert!(updated >= 10, "sessions were updated: {updated}");
    let order = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|s| s["sessionId"].as_str().unwrap().to_string())
            .collect()
    };
    assert_ne!(
        order(&before),
        order(&after),
        "updates move sessions in the endTime order"
    );
}
