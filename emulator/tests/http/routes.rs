//! The routes the official clients call, where they call them, and the emulator's own
//! statistics: per-route requests and records, and every route it does not serve
//! (answered 404 with a JSON body naming it).

use crate::audit_log::{emulator, t0, v1_token, v2_token};
use c42fwd_emulator::*;
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use std::time::Duration;

fn options() -> EmulatorOptions {
    EmulatorOptions {
        seed: 5,
        backlog: 600,
        backlog_span: Duration::from_secs(3_600),
        rate: 0.0,
        alert_backlog: 50,
        alert_rate: 0.0,
        lag: Duration::ZERO,
        start_time: Some(t0()),
        ..EmulatorOptions::default()
    }
}

/// The official client's discovery, step by step, with `urljoin` semantics
/// (`Url::join` of an absolute path): ServerEnv, the first `sts` replaced, `/v1/<KEY>`
/// joined onto the store, the service path joined onto the answer. Every step lands on
/// a root route, none on the prefixed ones, and the records served are counted per route.
#[tokio::test]
async fn discovery_joined_like_urljoin_reaches_the_services_at_the_root() {
    let (h, c) = emulator(options()).await;
    let token = v1_token(&h, &c).await;
    let env: Value = c
        .get(format!("{}/api/v1/ServerEnv", h.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let store = Url::parse(&env["stsBaseUrl"].as_str().unwrap().replacen(
        "sts",
        "simple-key-value-store",
        1,
    ))
    .unwrap();
    let mut bases = Vec::new();
    for key in [
        "AUDIT-LOG_API-URL",
        "AlertService-API_URL",
        "FedObserver-API_URL",
    ] {
        let r = c
            .get(store.join(&format!("/v1/{key}")).unwrap())
            .header("accept", "*/*")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{key}");
        let text = r.text().await.unwrap();
        let base = Url::parse(&text).unwrap();
        assert_ne!(base.path(), "/", "the answer carries a path, to be dropped");
        bases.push(base);
    }
    let search = bases[0].join("/rpc/search/search-audit-log").unwrap();
    assert_eq!(
        search.as_str(),
        format!("{}/rpc/search/search-audit-log", h.base_url())
    );
    let r = c
        .post(search)
        .bearer_auth(&token)
        .json(&json!({
            "page": 0,
            "pageSize": 10_000,
            "dateRange": {"startTime": "2024-02-29T23:00:00.000000Z", "endTime": "2024-03-01T00:00:00.000000Z"},
            "eventTypes": [], "actorIds": [], "actorNames": [], "actorIpAddresses": [],
            "affectedUserIds": [], "affectedUserNames": [],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.unwrap();
    let n = page["events"].as_array().unwrap().len() as u64;
    assert_eq!(n, 600, "the whole backlog");

    let alerts = bases[1].join("/svc/api/v1/query-alerts").unwrap();
    let r = c
        .post(alerts)
        .bearer_auth(&token)
        .json(&json!({
            "tenantId": EmulatorOptions::default().tenant_id,
            "groupClause": "AND",
            "groups": [],
            "pgNum": 0,
            "pgSize": 30,
            "srtKey": "CreatedAt",
            "srtDirection": "asc",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["alerts"].as_array().unwrap().len(), 30);
    let rules = bases[2]
        .join("/svc/api/v1/Rules/query-rule-metadata")
        .unwrap();
    let r = c
        .post(rules)
        .bearer_auth(&token)
        .json(&json!({"tenantId": EmulatorOptions::default().tenant_id, "groups": [], "groupClause": "AND", "pgNum": 0, "pgSize": 10, "srtKey": "CreatedAt", "srtDirection": "DESC"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let s = h.stats();
    assert_eq!(s.requests_to("/v1/{key}"), 3);
    assert_eq!(s.requests_to("/simple-key-value-store/v1/{key}"), 0);
    assert_eq!(s.requests_to("/rpc/search/search-audit-log"), 1);
    assert_eq!(s.requests_to("/audit-log/rpc/search/search-audit-log"), 0);
    assert_eq!(s.events_from("/rpc/search/search-audit-log"), 600);
    assert_eq!(s.events_from("/svc/api/v1/query-alerts"), 30);
    assert_eq!(s.requests_to("/svc/api/v1/Rules/query-rule-metadata"), 1);
    assert_eq!(s.events_served, 600, "audit events only");
    assert_eq!(s.unknown_requests(), 0, "{:?}", s.unknown);
    h.shutdown().await;
}

/// The prefixed paths (for clients that append to the discovered URL) stay, each
/// counted on its own route.
#[tokio::test]
async fn the_prefixed_legacy_paths_are_served_and_counted_apart() {
    let (h, c) = emulator(options()).await;
    let token = v1_token(&h, &c).await;
    let kv = c
        .get(format!(
            "{}/simple-key-value-store/v1/AUDIT-LOG_API-URL",
            h.base_url()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = c
        .post(format!("{kv}/rpc/search/search-audit-log"))
        .bearer_auth(&token)
        .json(&json!({"page": 0, "pageSize": 100, "dateRange": {"startTime": "2024-02-29T23:00:00Z", "endTime": "2024-03-01T00:00:00Z"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let details = c
        .post(format!(
            "{}/alert-service/svc/api/v1/query-details",
            h.base_url()
        ))
        .bearer_auth(&token)
        .json(&json!({"alertIds": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(details.status(), StatusCode::OK);
    let s = h.stats();
    assert_eq!(s.requests_to("/simple-key-value-store/v1/{key}"), 1);
    assert_eq!(s.requests_to("/v1/{key}"), 0);
    assert_eq!(s.events_from("/audit-log/rpc/search/search-audit-log"), 100);
    assert_eq!(s.events_from("/rpc/search/search-audit-log"), 0);
    assert_eq!(s.requests_to("/alert-service/svc/api/v1/query-details"), 1);
    assert_eq!(s.events_from("/alert-service/svc/api/v1/query-details"), 0);
    h.shutdown().await;
}

/// Every method and path the emulator does not serve answers 404 with a JSON body
/// naming both, and is counted by `METHOD /path`; so is a key the store does not hold.
#[tokio::test]
async fn unknown_routes_answer_404_naming_them_and_are_counted() {
    let (h, c) = emulator(options()).await;
    let base = h.base_url();
    let asks = [
        (
            c.get(format!("{base}/api/v4/Nothing?x=1")),
            "GET",
            "/api/v4/Nothing",
        ),
        (
            c.post(format!("{base}/v1/customer")),
            "POST",
            "/v1/customer",
        ),
        (
            c.delete(format!("{base}/rpc/search/search-audit-log")),
            "DELETE",
            "/rpc/search/search-audit-log",
        ),
        (
            c.get(format!("{base}/v1/NO-SUCH-KEY")),
            "GET",
            "/v1/NO-SUCH-KEY",
        ),
    ];
    for (req, method, route) in asks {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {route}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["method"], method);
        assert_eq!(v["route"], route);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains(&format!("{method} {route}")),
            "{v}"
        );
    }
    let s = h.stats();
    assert_eq!(s.unknown_requests(), 4, "{:?}", s.unknown);
    for what in [
        "GET /api/v4/Nothing",
        "POST /v1/customer",
        "DELETE /rpc/search/search-audit-log",
        "GET /v1/NO-SUCH-KEY",
    ] {
        assert_eq!(s.unknown.get(what), Some(&1), "{what}: {:?}", s.unknown);
    }
    assert_eq!(
        s.requests_to("/v1/customer"),
        0,
        "a wrong method is no request to it"
    );
    h.shutdown().await;
}

/// `GET /_emulator/stats` serves what `EmulatorHandle::stats` returns, and is not
/// counted itself.
#[tokio::test]
async fn stats_are_served_over_http_too() {
    let (h, c) = emulator(options()).await;
    let token = v2_token(&h, &c).await;
    let r = c
        .post(format!("{}/v1/audit/search-audit-log", h.base_url()))
        .bearer_auth(&token)
        .json(&json!({"page": 0, "pageSize": 250, "dateRange": {"startTime": "2024-02-29T23:00:00Z", "endTime": "2024-03-01T00:00:00Z"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap();
    c.get(format!("{}/nope", h.base_url()))
        .send()
        .await
        .unwrap();
    let get = || async {
        c.get(format!("{}/_emulator/stats", h.base_url()))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let v = get().await;
    let s = h.stats();
    assert_eq!(v["requests"]["/v1/oauth"], 1);
    assert_eq!(v["requests"]["/v1/audit/search-audit-log"], 1);
    assert_eq!(v["events"]["/v1/audit/search-audit-log"], 250);
    assert_eq!(v["unknown"]["GET /nope"], 1);
    assert_eq!(v["events_served"], 250);
    assert_eq!(v["tokens_issued"], 1);
    // In flight per data route, keyed as the requests are; the login is no data route.
    assert_eq!(v["max_in_flight"]["/v1/audit/search-audit-log"], 1);
    assert_eq!(v["max_in_flight"].get("/v1/oauth"), None);
    assert_eq!(
        v,
        serde_json::to_value(&s).unwrap(),
        "the same as in process"
    );
    assert_eq!(get().await, v, "asking for the stats changes none");
    h.shutdown().await;
}

/// After a user login py42 asks who it is (`/api/v1/User/my`, with the token); before
/// one, how the user logs in (`LoginConfiguration`, v1 or v3, no token).
#[tokio::test]
async fn user_my_and_login_configuration() {
    let (h, c) = emulator(EmulatorOptions {
        totp: Some("123456".into()),
        ..options()
    })
    .await;
    let base = h.base_url();
    let r = c
        .get(format!("{base}/api/v1/User/my"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a token is needed");
    let login: Value = c
        .get(format!("{base}/api/v3/auth/jwt?useBody=true"))
        .basic_auth("admin@example.com", Some("emulator-password"))
        .header("totp-auth", "123456")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["v3_user_token"].as_str().unwrap();
    let me: Value = c
        .get(format!("{base}/api/v1/User/my"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"]["username"], "admin@example.com");
    for v in ["v1", "v3"] {
        let cfg: Value = c
            .get(format!(
                "{base}/api/{v}/LoginConfiguration?username=admin@example.com"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            cfg["data"]["loginType"], "LOCAL_2FA",
            "{v}: the tenant asks for a code"
        );
    }
    h.shutdown().await;

    let (h, c) = emulator(options()).await;
    let cfg = |user: &'static str| {
        let c = c.clone();
        let url = format!("{}/api/v1/LoginConfiguration?username={user}", h.base_url());
        async move {
            let v: Value = c.get(url).send().await.unwrap().json().await.unwrap();
            v["data"]["loginType"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(cfg("admin@example.com").await, "LOCAL");
    assert_eq!(
        cfg("someone@else.example").await,
        "LOCAL_2FA",
        "an unknown user"
    );
    let s = h.stats();
    assert_eq!(s.requests_to("/api/v1/LoginConfiguration"), 2);
    h.shutdown().await;
}
