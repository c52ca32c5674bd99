//! End-to-end tests of the alert service, rule metadata and Directory Sync Log routes
//! over real HTTP (reqwest against 127.0.0.1:0).
//!
//! Each test starts its own emulator, so they run in parallel; time moves only with
//! `advance`. Expected results come from the ground-truth methods of the handle
//! (`alert_summaries_between`, `alerts_between`, `sync_log_between`).

use crate::audit_log::{emulator, t0, v1_token, v2_token};
use c42fwd_emulator::*;
use chrono::{DateTime, Utc};
use reqwest::{Client, StatusCode};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);

/// 2,000 alerts over the 10 hours before the start, 3,000 Sync Log entries over the
/// 120 days before it; no live streams, no lag.
fn options() -> EmulatorOptions {
    EmulatorOptions {
        seed: 11,
        backlog: 10,
        backlog_span: 10 * HOUR,
        rate: 0.0,
        alert_backlog: 2_000,
        alert_rate: 0.0,
        sync_log_backlog: 3_000,
        sync_log_span: 120 * DAY,
        sync_log_rate: 0.0,
        lag: Duration::ZERO,
        start_time: Some(t0()),
        ..EmulatorOptions::default()
    }
}

fn tenant() -> String {
    EmulatorOptions::default().tenant_id
}

fn all_summaries(h: &EmulatorHandle) -> Vec<Value> {
    h.alert_summaries_between(t0() - chrono::Duration::hours(11), t0())
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect()
}

fn body(groups: Value, clause: &str, page: u64, size: u64, dir: &str) -> Value {
    json!({
        "tenantId": tenant(),
        "groupClause": clause,
        "groups": groups,
        "pgNum": page,
        "pgSize": size,
        "srtKey": "CreatedAt",
        "srtDirection": dir,
    })
}

fn group(clause: &str, filters: &[(&str, &str, Value)]) -> Value {
    json!({
        "filterClause": clause,
        "filters": filters
            .iter()
            .map(|(t, o, v)| json!({"term": t, "operator": o, "value": v}))
            .collect::<Vec<_>>(),
    })
}

async fn post_json(c: &Client, url: String, auth: &str, body: &Value) -> (StatusCode, String) {
    let r = c
        .post(url)
        .header("authorization", auth)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The raw text of each alert of a response, byte for byte.
fn raw_alerts(text: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        alerts: Vec<&'a RawValue>,
    }
    let p: Page = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    p.alerts.iter().map(|a| a.get().to_string()).collect()
}

/// Every page of a query-alerts search (Incydr), as raw summaries.
async fn all_pages(h: &EmulatorHandle, c: &Client, auth: &str, mut q: Value) -> Vec<String> {
    let size = q["pgSize"].as_u64().unwrap();
    let mut out = Vec::new();
    for page in 0.. {
        q["pgNum"] = json!(page);
        let (status, text) = post_json(
            c,
            format!("{}/v1/alerts/query-alerts", h.base_url()),
            auth,
            &q,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type$"], "ALERT_QUERY_RESPONSE");
        assert_eq!(v["problems"], json!([]), "{text}");
        let got = raw_alerts(&text);
        let n = got.len() as u64;
        out.extend(got);
        if n < size {
            assert_eq!(v["totalCount"], out.len(), "totalCount of {q}");
            break;
        }
    }
    out
}

fn ids(raw: &[String]) -> Vec<String> {
    raw.iter()
        .map(|s| {
            serde_json::from_str::<Value>(s).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn query_alerts_pages_and_sorts_like_ground_truth() {
    let (h, c) = emulator(options()).await;
    let auth = format!("Bearer {}", v2_token(&h, &c).await);
    let truth = h.alert_summaries_between(t0() - chrono::Duration::hours(11), t0());
    assert_eq!(truth.len(), 2_000);

    let asc = all_pages(&h, &c, &auth, body(json!([]), "AND", 0, 500, "ASC")).await;
    assert_eq!(
        asc, truth,
        "ascending pages are the ground truth, byte for byte"
    );

    // Descending is a stable sort: equal createdAt keep creation order.
    let desc = all_pages(&h, &c, &auth, body(json!([]), "AND", 0, 333, "desc")).await;
    let mut want: Vec<(String, String)> = truth
        .iter()
        .map(|s| {
            let v: Value = serde_json::from_str(s).unwrap();
            (v["createdAt"].as_str().unwrap().to_string(), s.clone())
        })
        .collect();
    let ties = want.windows(2).filter(|w| w[0].0 == w[1].0).count();
    assert!(ties > 10, "the backlog has equal createdAt values: {ties}");
    want.sort_by(|a, b| b.0.cmp(&a.0));
    assert_eq!(desc, want.into_iter().map(|w| w.1).collect::<Vec<_>>());

    // The body of Code42's example (`docs/api.md`): numbers as strings, lowercase
    // direction; a page past the end.
    let mut q = body(json!([]), "OR", 0, 20, "desc");
    q["pgSize"] = json!("20");
    q["pgNum"] = json!("99");
    let (status, text) = post_json(
        &c,
        format!("{}/v1/alerts/query-alerts", h.base_url()),
        &auth,
        &q,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["alerts"].as_array().unwrap().len(), &v["totalCount"]),
        (20, &json!(2_000))
    );

    // Over 500 per page is refused.
    let (status, text) = post_json(
        &c,
        format!("{}/v1/alerts/query-alerts", h.base_url()),
        &auth,
        &body(json!([]), "AND", 0, 501, "ASC"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("pgSize"), "{text}");
    h.shutdown().await;
}

#[tokio::test]
async fn every_operator_and_term_kind_filters_like_ground_truth() {
    let (h, c) = emulator(options()).await;
    let auth = format!("Bearer {}", v2_token(&h, &c).await);
    let truth = all_summaries(&h);
    let sample = &truth[123];
    let actor = sample["actor"].as_str().unwrap().to_string();
    let id = sample["id"].as_str().unwrap().to_string();
    let created = sample["createdAt"].as_str().unwrap().to_string();
    let day = created[..10].to_string();
    fn s(v: &Value, k: &str) -> String {
        v[k].as_str().unwrap_or_default().to_lowercase()
    }

    type Pred = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(&str, &str, Value, Pred)> = vec![
        ("Actor", "IS", json!(actor.to_uppercase()), {
            let a = actor.to_lowercase();
            Box::new(move |v| s(v, "actor") == a)
        }),
        ("actor", "IS_NOT", json!(actor), {
            let a = actor.to_lowercase();
            Box::new(move |v| s(v, "actor") != a)
        }),
        (
            "RuleName",
            "CONTAINS",
            json!("EXFIL"),
            Box::new(|v| s(v, "name").contains("exfil")),
        ),
        (
            "Description",
            "DOES_NOT_CONTAIN",
            json!("system"),
            Box::new(|v| !s(v, "description").contains("system")),
        ),
        (
            "Severity",
            "IS",
            json!("high"),
            Box::new(|v| v["severity"] == "HIGH"),
        ),
        (
            "RiskSeverity",
            "IS_NOT",
            json!("LOW"),
            Box::new(|v| v["riskSeverity"] != "LOW"),
        ),
        (
            "AlertState",
            "IS",
            json!("Dismissed"),
            Box::new(|v| v["state"] == "RESOLVED"),
        ),
        (
            "state",
            "IS_NOT",
            json!("OPEN"),
            Box::new(|v| v["state"] != "OPEN"),
        ),
        (
            "Type",
            "IS",
            json!("FED_COMPOSITE"),
            Box::new(|v| v["type"] == "FED_COMPOSITE"),
        ),
        ("AlertId", "IS", json!(id), {
            let id = id.clone();
            Box::new(move |v| v["id"] == id.as_str())
        }),
        ("CreatedAt", "ON_OR_AFTER", json!(created), {
            let c = created.clone();
            Box::new(move |v| v["createdAt"].as_str().unwrap() >= c.as_str())
        }),
        ("createdAt", "ON_OR_BEFORE", json!(created), {
            let c = created.clone();
            Box::new(move |v| v["createdAt"].as_str().unwrap() <= c.as_str())
        }),
        ("DateObserved", "ON", json!(day), {
            let d = day.clone();
            Box::new(move |v| v["createdAt"].as_str().unwrap().starts_with(d.as_str()))
        }),
        (
            "Watchlists",
            "IS",
            json!("flight RISK"),
            Box::new(|v| {
                v["watchlists"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w["name"] == "Flight risk")
            }),
        ),
        (
            "HasAuthSignificantWatchlist",
            "IS",
            json!(true),
            Box::new(|v| {
                v["watchlists"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w["isSignificant"] == true)
            }),
        ),
        (
            "RuleSource",
            "IS",
            json!("Departing Employee"),
            Box::new(|v| v["ruleSource"] == "Departing Employee"),
        ),
        ("ActorId", "IS_NOT", json!("x"), Box::new(|_| true)),
        (
            "ActorId",
            "CONTAINS",
            json!("9"),
            Box::new(|v| s(v, "actorId").contains('9')),
        ),
        (
            "StateLastModifiedBy",
            "CONTAINS",
            json!("analyst"),
            Box::new(|v| s(v, "stateLastModifiedBy").contains("analyst")),
        ),
    ];
    for (term, op, value, pred) in cases {
        let q = body(
            json!([group("AND", &[(term, op, value.clone())])]),
            "AND",
            0,
            500,
            "ASC",
        );
        let got = ids(&all_pages(&h, &c, &auth, q).await);
        let want: Vec<String> = truth
            .iter()
            .filter(|v| pred(v))
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect();
        assert!(!want.is_empty(), "{term} {op} {value} selects something");
        assert_eq!(got, want, "{term} {op} {value}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn and_or_combine_at_both_levels() {
    let (h, c) = emulator(options()).await;
    let auth = format!("Bearer {}", v2_token(&h, &c).await);
    let truth = all_summaries(&h);
    let states = group(
        "OR",
        &[
            ("State", "IS", json!("PENDING")),
            ("State", "IS", json!("IN_PROGRESS")),
        ],
    );
    let high = group("AND", &[("Severity", "IS", json!("HIGH"))]);
    let pick = |p: &dyn Fn(&Value) -> bool| -> Vec<String> {
        truth
            .iter()
            .filter(|v| p(v))
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    let busy = |v: &Value| v["state"] == "PENDING" || v["state"] == "IN_PROGRESS";
    let and = all_pages(
        &h,
        &c,
        &auth,
        body(json!([states, high]), "AND", 0, 500, "ASC"),
    )
    .await;
    assert_eq!(ids(&and), pick(&|v| busy(v) && v["severity"] == "HIGH"));
    let or = all_pages(
        &h,
        &c,
        &auth,
        body(json!([states, high]), "OR", 0, 500, "ASC"),
    )
    .await;
    assert_eq!(ids(&or), pick(&|v| busy(v) || v["severity"] == "HIGH"));
    assert!(and.len() < or.len() && !and.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn problems_tenants_and_schema_errors() {
    let (h, c) = emulator(options()).await;
    let auth = format!("Bearer {}", v2_token(&h, &c).await);
    let url = format!("{}/v1/alerts/query-alerts", h.base_url());
    // A tenant that is not ours finds nothing (not an error).
    let mut q = body(json!([]), "AND", 0, 10, "ASC");
    q["tenantId"] = json!("someone-else");
    let (status, text) = post_json(&c, url.clone(), &auth, &q).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["totalCount"].clone(), v["alerts"].clone()),
        (json!(0), json!([]))
    );
    // An operator the term does not take: 200 with a problem and no results.
    let q = body(
        json!([group("AND", &[("State", "CONTAINS", json!("OP"))])]),
        "AND",
        0,
        10,
        "ASC",
    );
    let (status, text) = post_json(&c, url.clone(), &auth, &q).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["problems"][0]["type"], "IllegalOperator", "{text}");
    assert_eq!(v["totalCount"], 0);
    // Schema errors: 400 naming the thing.
    for (q, needle) in [
        (
            body(
                json!([group("AND", &[("Bogus", "IS", json!("x"))])]),
                "AND",
                0,
                10,
                "ASC",
            ),
            "Bogus",
        ),
        (body(json!([]), "XOR", 0, 10, "ASC"), "groupClause"),
        (
            json!({"groupClause": "AND", "pgNum": 0, "pgSize": 5, "srtKey": "CreatedAt"}),
            "tenantId",
        ),
    ] {
        let (status, text) = post_json(&c, url.clone(), &auth, &q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(text.contains(needle), "{text}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn query_details_serves_ground_truth_and_refuses_over_100_ids() {
    let (h, c) = emulator(options()).await;
    let bearer = format!("Bearer {}", v2_token(&h, &c).await);
    let truth = h.alerts_between(t0() - chrono::Duration::hours(11), t0());
    let want: Vec<String> = [7usize, 3, 1_999]
        .iter()
        .map(|&k| truth[k].clone())
        .collect();
    let mut asked: Vec<String> = ids(&want);
    asked.insert(1, "00000000-0000-0000-0000-000000000000".into());
    asked.push(asked[0].clone());
    let (status, text) = post_json(
        &c,
        format!("{}/v1/alerts/query-details", h.base_url()),
        &bearer,
        &json!({ "alertIds": asked }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type$"], "ALERT_DETAILS_RESPONSE");
    assert_eq!(
        raw_alerts(&text),
        want,
        "request order, unknown left out, once each"
    );
    for a in v["alerts"].as_array().unwrap() {
        assert_eq!(a["type$"], "ALERT_DETAILS");
        for o in a["observations"].as_array().unwrap() {
            let data = o["data"].as_str().expect("data is a string");
            let d: Value = serde_json::from_str(data).expect("data holds JSON");
            assert!(d["type$"].as_str().unwrap().starts_with("OBSERVED_"));
        }
    }

    // The legacy route with the legacy header form serves the same bytes.
    let legacy = format!("v3_user_token {}", v1_token(&h, &c).await);
    let (status, text2) = post_json(
        &c,
        format!("{}/alert-service/svc/api/v1/query-details", h.base_url()),
        &legacy,
        &json!({ "tenantId": tenant(), "alertIds": asked }),
    )
    .await;
    assert_eq!((status, text2), (StatusCode::OK, text));
    // The Incydr gateway only knows Bearer.
    let (status, _) = post_json(
        &c,
        format!("{}/v1/alerts/query-details", h.base_url()),
        &legacy,
        &json!({ "alertIds": asked }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let too_many: Vec<String> =
        ids(&h.alert_summaries_between(t0() - chrono::Duration::hours(11), t0()))
            .into_iter()
            .take(101)
            .collect();
    let (status, text) = post_json(
        &c,
        format!("{}/v1/alerts/query-details", h.base_url()),
        &bearer,
        &json!({ "alertIds": too_many }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("101") && text.contains("100"), "{text}");
    let (status, _) = post_json(
        &c,
        format!("{}/v1/alerts/query-details", h.base_url()),
        &bearer,
        &json!({ "alertIds": &too_many[..100] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The aggregate: one observation with all the files.
    let (status, text) = post_json(
        &c,
        format!(
            "{}/alert-service/svc/api/v1/query-details-aggregate",
            h.base_url()
        ),
        &legacy,
        &json!({ "alertId": asked[0] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type$"], "ALERT_DETAILS_IN_AGGREGATE_RESPONSE");
    let files: usize = serde_json::from_str::<Value>(&want[0]).unwrap()["observations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            serde_json::from_str::<Value>(o["data"].as_str().unwrap()).unwrap()["files"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    let data: Value =
        serde_json::from_str(v["alert"]["observation"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["fileCount"], files);
    h.shutdown().await;
}

#[tokio::test]
async fn state_changes_and_notes_show_in_later_queries() {
    let (h, c) = emulator(options()).await;
    let bearer = format!("Bearer {}", v2_token(&h, &c).await);
    let legacy = format!("v3_user_token {}", v1_token(&h, &c).await);
    let truth = all_summaries(&h);
    let open: Vec<String> = truth
        .iter()
        .filter(|v| v["state"] == "OPEN")
        .take(2)
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    h.advance(Duration::from_secs(60));
    let details = |id: String| {
        let c = c.clone();
        let url = format!("{}/v1/alerts/query-details", h.base_url());
        let bearer = bearer.clone();
        async move {
            let (_, text) = post_json(&c, url, &bearer, &json!({ "alertIds": [id] })).await;
            serde_json::from_str::<Value>(&text).unwrap()["alerts"][0].clone()
        }
    };

    let (status, text) = post_json(
        &c,
        format!("{}/v1/alerts/update-state", h.base_url()),
        &bearer,
        &json!({"tenantId": tenant(), "alertIds": open, "state": "RESOLVED", "note": "fp | =\nok"}),
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, ""));
    let a = details(open[0].clone()).await;
    assert_eq!(a["state"], "RESOLVED");
    assert_eq!(a["stateLastModifiedBy"], "key-emulator");
    let at = a["stateLastModifiedAt"].as_str().unwrap();
    assert!(at > t0().to_rfc3339().as_str() && at.len() == 28, "{at}");
    assert_eq!(a["note"]["message"], "fp | =\nok");

    // Filters see the change; so does the ground truth.
    let q = body(
        json!([group(
            "AND",
            &[
                ("AlertId", "IS", json!(open[1])),
                ("State", "IS", json!("RESOLVED"))
            ]
        )]),
        "AND",
        0,
        10,
        "ASC",
    );
    assert_eq!(all_pages(&h, &c, &bearer, q).await.len(), 1);
    let created: DateTime<Utc> = a["createdAt"].as_str().unwrap().parse().unwrap();
    let gt = h.alerts_between(created, created + chrono::Duration::nanoseconds(100));
    assert!(gt
        .iter()
        .any(|s| s.contains(&open[0]) && s.contains("\"state\":\"RESOLVED\"")));

    // add-note replaces the note only; the state fields stay.
    let (status, _) = post_json(
        &c,
        format!("{}/v1/alerts/add-note", h.base_url()),
        &bearer,
        &json!({"tenantId": tenant(), "alertId": open[0], "note": "second note"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let b = details(open[0].clone()).await;
    assert_eq!(b["note"]["message"], "second note");
    assert_ne!(b["note"]["id"], a["note"]["id"]);
    assert_eq!(b["stateLastModifiedAt"], a["stateLastModifiedAt"]);

    // Legacy reopen / resolve, attributed to the logged-in user; an empty note keeps the note.
    h.advance(Duration::from_secs(5));
    let (status, _) = post_json(
        &c,
        format!("{}/alert-service/svc/api/v1/reopen-alert", h.base_url()),
        &legacy,
        &json!({"tenantId": tenant(), "alertIds": [open[0]], "note": ""}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let r = details(open[0].clone()).await;
    assert_eq!(
        (r["state"].as_str(), r["stateLastModifiedBy"].as_str()),
        (Some("OPEN"), Some("admin@example.com"))
    );
    assert!(r["stateLastModifiedAt"].as_str() > a["stateLastModifiedAt"].as_str());
    assert_eq!(r["note"]["message"], "second note");
    let (status, _) = post_json(
        &c,
        format!("{}/alert-service/svc/api/v1/resolve-alert", h.base_url()),
        &legacy,
        &json!({"tenantId": tenant(), "alertIds": [open[0]]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(details(open[0].clone()).await["state"], "RESOLVED");

    // Refusals change nothing: an unknown id, a wrong tenant, a bad state, 101 ids.
    let url = format!("{}/v1/alerts/update-state", h.base_url());
    for bad in [
        json!({"tenantId": tenant(), "alertIds": [open[1], "nope"], "state": "PENDING"}),
        json!({"tenantId": "other", "alertIds": [open[1]], "state": "PENDING"}),
        json!({"tenantId": tenant(), "alertIds": [open[1]], "state": "CLOSED"}),
        json!({"tenantId": tenant(), "alertIds": vec![open[1].clone(); 101], "state": "PENDING"}),
    ] {
        let (status, text) = post_json(&c, url.clone(), &bearer, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!text.is_empty());
    }
    assert_eq!(details(open[1].clone()).await["state"], "RESOLVED");
    h.shutdown().await;
}

#[tokio::test]
async fn alerts_appear_within_the_lag() {
    let lag = Duration::from_secs(60);
    let (h, c) = emulator(EmulatorOptions {
        alert_backlog: 0,
        // ~300 alerts: one page, so the whole answer is judged at one instant.
        alert_rate: 1.0,
        lag,
        ..options()
    })
    .await;
    let auth = format!("Bearer {}", v2_token(&h, &c).await);
    h.advance(Duration::from_secs(300));
    let now = h.now();
    let all =
        |h: &EmulatorHandle| h.alert_summaries_between(t0(), t0() + chrono::Duration::seconds(300));
    let created = all(&h);
    assert!((200..=500).contains(&created.len()), "{}", created.len());
    let seen = all_pages(&h, &c, &auth, body(json!([]), "AND", 0, 500, "ASC")).await;
    let seen_ids: std::collections::HashSet<String> = ids(&seen).into_iter().collect();
    let mut missing_recent = 0;
    for s in &created {
        let v: Value = serde_json::from_str(s).unwrap();
        let at: DateTime<Utc> = v["createdAt"].as_str().unwrap().parse().unwrap();
        let id = v["id"].as_str().unwrap();
        if at <= now - chrono::Duration::from_std(lag).unwrap() {
            assert!(seen_ids.contains(id), "alert older than the lag is visible");
        } else if !seen_ids.contains(id) {
            missing_recent += 1;
        }
    }
    assert!(
        missing_recent > 0,
        "some recent alerts are still being ingested"
    );
    // A not yet visible alert is unknown to query-details.
    let hidden = ids(&created)
        .into_iter()
        .rev()
        .find(|id| !seen_ids.contains(id))
        .unwrap();
    let details = |id: String| {
        let c = c.clone();
        let url = format!("{}/v1/alerts/query-details", h.base_url());
        let auth = auth.clone();
        async move {
            let (_, text) = post_json(&c, url, &auth, &json!({ "alertIds": [id] })).await;
            serde_json::from_str::<Value>(&text).unwrap()["alerts"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(details(hidden.clone()).await, 0);
    h.advance(lag);
    assert_eq!(details(hidden).await, 1);
    h.shutdown().await;
}

#[tokio::test]
async fn rule_metadata_on_every_route() {
    let (h, c) = emulator(options()).await;
    let bearer = format!("Bearer {}", v2_token(&h, &c).await);
    let legacy = format!("v3_user_token {}", v1_token(&h, &c).await);
    let q = json!({
        "tenantId": tenant(), "groupClause": "AND",
        "groups": [group("AND", &[("Type", "IS", json!("FED_ENDPOINT_EXFILTRATION"))])],
        "pgNum": 0, "pgSize": 100, "srtKey": "CreatedAt", "srtDirection": "DESC",
    });
    let mut bodies = Vec::new();
    for (path, auth) in [
        ("/v1/alerts/rules/query-rule-metadata", &bearer),
        (
            "/alert-service/svc/api/v1/rules/query-rule-metadata",
            &legacy,
        ),
        (
            "/fed-observer/svc/api/v1/Rules/query-rule-metadata",
            &legacy,
        ),
    ] {
        let (status, text) = post_json(&c, format!("{}{path}", h.base_url()), auth, &q).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        bodies.push(text);
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    let v: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(v["type$"], "RULE_METADATA_SEARCH_RESPONSE");
    let rules = v["ruleMetadata"].as_array().unwrap();
    assert_eq!(v["totalCount"], rules.len());
    assert!(rules.len() >= 2);
    assert!(rules
        .iter()
        .all(|r| r["type"] == "FED_ENDPOINT_EXFILTRATION"));
    assert!(rules
        .windows(2)
        .all(|w| w[0]["createdAt"].as_str() >= w[1]["createdAt"].as_str()));
    // Alerts name their rule by its observerRuleId.
    let rule_ids: Vec<&str> = rules
        .iter()
        .map(|r| r["observerRuleId"].as_str().unwrap())
        .collect();
    assert!(all_summaries(&h)
        .iter()
        .filter(|a| a["type"] == "FED_ENDPOINT_EXFILTRATION")
        .all(|a| rule_ids.contains(&a["ruleId"].as_str().unwrap())));
    let disabled = json!({
        "tenantId": tenant(), "groupClause": "AND",
        "groups": [group("AND", &[("IsEnabled", "IS", json!("false"))])],
        "pgNum": 0, "pgSize": 100, "srtKey": "Name", "srtDirection": "ASC",
    });
    let (_, text) = post_json(
        &c,
        format!("{}/v1/alerts/rules/query-rule-metadata", h.base_url()),
        &bearer,
        &disabled,
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["totalCount"], 1);
    assert_eq!(v["ruleMetadata"][0]["isEnabled"], false);
    h.shutdown().await;
}

// ---------------------------------------------------------------- Directory Sync Log

async fn sync_log(
    h: &EmulatorHandle,
    c: &Client,
    token: &str,
    path_and_query: &str,
) -> (StatusCode, String) {
    let r = c
        .get(format!("{}{path_and_query}", h.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

fn sync_entries(text: &str) -> (Vec<String>, Value) {
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        #[serde(borrow, rename = "Directory Sync Logs")]
        logs: Vec<&'a RawValue>,
        #[serde(rename = "TotalResults")]
        total: u64,
        #[serde(rename = "PageNumber")]
        number: u64,
        #[serde(rename = "PageSize")]
        size: u64,
    }
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        data: Data<'a>,
    }
    let b: Body = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (
        b.data.logs.iter().map(|l| l.get().to_string()).collect(),
        json!({"total": b.data.total, "number": b.data.number, "size": b.data.size}),
    )
}

/// 89 days back to the start: inside the retention window however the clock moved.
fn window() -> (DateTime<Utc>, DateTime<Utc>) {
    (t0() - chrono::Duration::days(89), t0())
}

#[tokio::test]
async fn sync_log_pages_sorts_and_matches_ground_truth() {
    let (h, c) = emulator(options()).await;
    let token = v2_token(&h, &c).await;
    let (from, to) = window();
    let truth = h.sync_log_between(from, to);
    assert!(truth.len() > 1_500, "{}", truth.len());
    let range = format!(
        "eventOccurredAfter={}&eventOccurredBefore={}",
        from.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        to.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );

    // 1-based pages of 100, ascending: the ground truth, byte for byte.
    let mut got = Vec::new();
    for page in 1.. {
        let (status, text) = sync_log(
            &h,
            &c,
            &token,
            &format!(
                "/api/v3/DirectorySyncLog?{range}&sortColumn=logEventTimeStamp&sortDirection=asc&page%5Bnumber%5D={page}&page%5Bsize%5D=100"
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let (entries, meta) = sync_entries(&text);
        assert_eq!(meta["total"], truth.len());
        assert_eq!(
            (meta["number"].as_u64(), meta["size"].as_u64()),
            (Some(page), Some(100))
        );
        let n = entries.len();
        got.extend(entries);
        if n < 100 {
            break;
        }
    }
    assert_eq!(got, truth);

    // Default: everything, newest first (a stable sort: equal times keep their order).
    let (_, text) = sync_log(&h, &c, &token, &format!("/api/v3/DirectorySyncLog?{range}")).await;
    let (desc, meta) = sync_entries(&text);
    assert_eq!(
        (meta["number"].as_u64(), meta["size"].as_u64()),
        (Some(1), Some(truth.len() as u64))
    );
    let mut want: Vec<(String, String)> = truth
        .iter()
        .map(|s| {
            let v: Value = serde_json::from_str(s).unwrap();
            (
                v["logEventTimeStamp"].as_str().unwrap().to_string(),
                s.clone(),
            )
        })
        .collect();
    want.sort_by(|a, b| b.0.cmp(&a.0));
    assert_eq!(desc, want.into_iter().map(|w| w.1).collect::<Vec<_>>());

    // By user name, descending, case-insensitive.
    let (_, text) = sync_log(
        &h,
        &c,
        &token,
        &format!("/api/v3/DirectorySyncLog?{range}&sortColumn=username&sortDirection=desc"),
    )
    .await;
    let (by_user, _) = sync_entries(&text);
    let users: Vec<String> = by_user
        .iter()
        .map(|s| {
            serde_json::from_str::<Value>(s).unwrap()["username"]
                .as_str()
                .unwrap()
                .to_lowercase()
        })
        .collect();
    assert!(users.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(by_user.len(), truth.len());

    // Refusals name the parameter.
    for (q, needle) in [
        ("page%5Bnumber%5D=0", "page[number]"),
        ("page%5Bsize%5D=5000", "page[size]"),
        ("sortColumn=timestamp", "sortColumn"),
        ("eventOccurredAfter=last%20week", "eventOccurredAfter"),
    ] {
        let (status, text) =
            sync_log(&h, &c, &token, &format!("/api/v3/DirectorySyncLog?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(text.contains(needle), "{text}");
    }
    let r = c
        .get(format!("{}/api/v3/DirectorySyncLog", h.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    h.shutdown().await;
}

#[tokio::test]
async fn sync_log_accepts_the_documented_date_forms_and_serves_csv() {
    let (h, c) = emulator(options()).await;
    let token = v2_token(&h, &c).await;
    let from = t0() - chrono::Duration::days(30);
    let to = t0() - chrono::Duration::days(20);
    let truth = h.sync_log_between(from, to);
    assert!(!truth.is_empty());
    let f = |t: DateTime<Utc>, fmt: &str| t.format(fmt).to_string();
    for (a, b) in [
        // The literal quotes around T of the documented pattern (`docs/api.md`), and four
        // fractional digits.
        (
            f(from, "%Y-%m-%d'T'%H:%M:%S.0000Z"),
            f(to, "%Y-%m-%d'T'%H:%M:%S.0000Z"),
        ),
        // Java's Z pattern: +0000, percent-encoded.
        (
            f(from, "%Y-%m-%dT%H:%M:%S.000%%2B0000"),
            f(to, "%Y-%m-%dT%H:%M:%S.000%%2B0000"),
        ),
        // ... and not encoded: the '+' arrives as a space.
        (
            f(from, "%Y-%m-%dT%H:%M:%S.000+0000"),
            f(to, "%Y-%m-%dT%H:%M:%S.000+0000"),
        ),
    ] {
        let (status, text) = sync_log(
            &h,
            &c,
            &token,
            &format!("/api/v3/DirectorySyncLog?eventOccurredAfter={a}&eventOccurredBefore={b}&sortDirection=asc"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{a}: {text}");
        assert_eq!(sync_entries(&text).0, truth, "{a}");
    }

    let r = c
        .get(format!(
            "{}/api/v3/DirectorySyncLog/csv?eventOccurredAfter={}&eventOccurredBefore={}&sortDirection=asc&page%5Bsize%5D=1",
            h.base_url(),
            f(from, "%Y-%m-%d'T'%H:%M:%S.000Z"),
            f(to, "%Y-%m-%d'T'%H:%M:%S.000Z")
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    assert!(
        csv.starts_with("username,action,field,oldValue,newValue,providerName,logEventTimeStamp\n")
    );
    // One record per entry (paging does not apply), quoted fields may hold newlines.
    let mut records = 0;
    let mut quoted = false;
    for ch in csv.chars() {
        match ch {
            '"' => quoted = !quoted,
            '\n' if !quoted => records += 1,
            _ => {}
        }
    }
    assert_eq!(records, truth.len() + 1);
    let last: Value = serde_json::from_str(truth.last().unwrap()).unwrap();
    assert!(csv
        .trim_end()
        .ends_with(last["logEventTimeStamp"].as_str().unwrap()));
    h.shutdown().await;
}

#[tokio::test]
async fn sync_log_retention_and_lag() {
    let lag = Duration::from_secs(120);
    let (h, c) = emulator(EmulatorOptions {
        sync_log_rate: 1.0,
        lag,
        ..options()
    })
    .await;
    let token = v2_token(&h, &c).await;
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    // Older than 90 days: the entries occurred, but the service no longer has them.
    let (old_from, old_to) = (
        t0() - chrono::Duration::days(119),
        t0() - chrono::Duration::days(91),
    );
    assert!(!h.sync_log_between(old_from, old_to).is_empty());
    let (status, text) = sync_log(
        &h,
        &c,
        &token,
        &format!(
            "/api/v3/DirectorySyncLog?eventOccurredAfter={}&eventOccurredBefore={}",
            fmt(old_from),
            fmt(old_to)
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sync_entries(&text).1["total"], 0);

    // Live entries show up only after their ingestion delay.
    h.advance(Duration::from_secs(600));
    let (from, to) = (t0(), t0() + chrono::Duration::seconds(600));
    let query = format!(
        "/api/v3/DirectorySyncLog?eventOccurredAfter={}&eventOccurredBefore={}&sortDirection=asc",
        fmt(from),
        fmt(to)
    );
    let truth = h.sync_log_between(from, to);
    let (_, text) = sync_log(&h, &c, &token, &query).await;
    let now_seen = sync_entries(&text).0;
    assert!(
        now_seen.len() < truth.len(),
        "{} < {}",
        now_seen.len(),
        truth.len()
    );
    let settled = h.sync_log_between(from, to - chrono::Duration::from_std(lag).unwrap());
    assert!(now_seen.len() >= settled.len());
    h.advance(lag);
    let (_, text) = sync_log(&h, &c, &token, &query).await;
    assert_eq!(sync_entries(&text).0, truth);
    h.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_alerts_and_sync_log() {
    let mut bodies = Vec::new();
    for seed in [11, 11, 12] {
        let (h, c) = emulator(EmulatorOptions { seed, ..options() }).await;
        let auth = format!("Bearer {}", v2_token(&h, &c).await);
        let (_, alerts) = post_json(
            &c,
            format!("{}/v1/alerts/query-alerts", h.base_url()),
            &auth,
            &body(json!([]), "AND", 3, 100, "DESC"),
        )
        .await;
        let details = h.alerts_between(t0() - chrono::Duration::hours(11), t0());
        let (from, to) = window();
        bodies.push((alerts, details, h.sync_log_between(from, to)));
        h.shutdown().await;
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_ne!(bodies[0].0, bodies[2].0);
    assert_ne!(bodies[0].1, bodies[2].1);
    assert_ne!(bodies[0].2, bodies[2].2);
}
