//! The axum routes of the alert service, its rules, and the Directory Sync Log, both
//! API generations.
//!
//! Owns the request and response shapes of these endpoints and what a change request
//! does to the alert change map. It does not generate alerts (`alerts`), parse filters
//! (`alert_query`) nor generate Sync Log entries (`sync_log`).
//!
//! Endpoints (POST with a JSON body unless said otherwise):
//! - Incydr gateway, `Authorization: Bearer` only: `/v1/alerts/query-alerts`,
//!   `/v1/alerts/query-details`, `/v1/alerts/query-details-aggregate`,
//!   `/v1/alerts/add-note`, `/v1/alerts/update-state`,
//!   `/v1/alerts/rules/query-rule-metadata`.
//! - Legacy, `Authorization: v3_user_token <t>` (or Bearer):
//!   `/svc/api/v1/{query-alerts, query-details, query-details-aggregate,
//!   add-note, update-state, resolve-alert, reopen-alert, rules/query-rule-metadata,
//!   Rules/query-rule-metadata}` at the root (where the official client calls them:
//!   it joins these absolute paths onto the discovered URL, dropping its path), and the
//!   same under `/alert-service` (with `/fed-observer/svc/api/v1/{Rules,rules}/query-rule-metadata`)
//!   for clients that append to the discovered URL. Each route is counted on its own.
//! - `GET /api/v3/DirectorySyncLog` and `GET /api/v3/DirectorySyncLog/csv` (Bearer).
//!
//! Behaviour choices:
//! - A `tenantId` that is not the tenant's finds nothing: query-alerts and
//!   query-rule-metadata answer 200 with `totalCount` 0, query-details with no alerts
//!   (the alert service is multi-tenant and treats the tenant as a filter). Change
//!   requests (add-note, update-state, resolve, reopen) with a wrong or missing
//!   `tenantId`, an unknown or not yet visible alert id, more than 100 ids, an unknown
//!   state or a note over 2000 characters answer 400 and change nothing.
//! - query-details: more than 100 ids is a 400; unknown or not yet visible ids are
//!   left out; the answer follows the order of the request, each alert once.
//! - query-details-aggregate: an unknown alert id is a 400.
//! - A state change sets `state`, `stateLastModifiedBy` (the token's subject) and
//!   `stateLastModifiedAt` (the emulator's clock). A note replaces the alert's note
//!   (`docs/api.md`: a note replaces any note the alert had); an empty or absent
//!   note on update-state / resolve / reopen leaves the note alone (py42 always sends
//!   `"note": ""`). add-note changes the note only, not the state fields.
//! - Change requests answer 200 with an empty body.

use super::alert_query::{self, parse_search, Field, Kind, Record, Search, SortKey, TermDef};
use super::alerts::{
    canonical_state, to_tick, Alert, AlertGenerator, AlertType, Note, Rule, ALERT_STATES,
    RISK_SEVERITIES, SEVERITIES,
};
use super::json;
use super::server::{bad_request, Auth, Emulator};
use super::sync_log;
use axum::body::Bytes;
use axum::extract::{Query as UrlQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

/// The most alert ids one request may name (OpenAPI `maxItems`).
pub(crate) const MAX_ALERT_IDS: usize = 100;
/// The longest note (OpenAPI `maxLength`).
const MAX_NOTE_CHARS: usize = 2_000;

type St = State<Arc<Emulator>>;
type Handler = fn(&Emulator, &HeaderMap, &[u8]) -> Response;

/// A POST route that is counted, faulted and authenticated like every other, then
/// served by `f`; the records its answer holds ([`Served`]) are counted for `route`.
fn op(route: &'static str, auth: Auth, f: Handler) -> MethodRouter<Arc<Emulator>> {
    post(
        move |State(st): St, headers: HeaderMap, body: Bytes| async move {
            match st.admit_as(route, &headers, auth) {
                Err(r) => *r,
                Ok(()) => {
                    let r = f(&st, &headers, &body);
                    if let Some(Served(n)) = r.extensions().get::<Served>() {
                        st.faults.count_records(route, *n);
                    }
                    r
                }
            }
        },
    )
}

/// How many records (alert summaries or details) an answer holds, for the statistics.
#[derive(Debug, Clone, Copy)]
struct Served(u64);

/// `r`, marked as holding `n` records.
fn served(mut r: Response, n: u64) -> Response {
    r.extensions_mut().insert(Served(n));
    r
}

/// The routes of this module, to be merged into the emulator's router.
pub(crate) fn routes() -> Router<Arc<Emulator>> {
    let incydr: &[(&'static str, Handler)] = &[
        ("/v1/alerts/query-alerts", query_alerts),
        ("/v1/alerts/query-details", query_details),
        (
            "/v1/alerts/query-details-aggregate",
            query_details_aggregate,
        ),
        ("/v1/alerts/add-note", add_note),
        ("/v1/alerts/update-state", update_state),
        ("/v1/alerts/rules/query-rule-metadata", query_rules),
    ];
    let legacy: &[(&'static str, Handler)] = &[
        ("/alert-service/svc/api/v1/query-alerts", query_alerts),
        ("/alert-service/svc/api/v1/query-details", query_details),
        (
            "/alert-service/svc/api/v1/query-details-aggregate",
            query_details_aggregate,
        ),
        ("/alert-service/svc/api/v1/add-note", add_note),
        ("/alert-service/svc/api/v1/update-state", update_state),
        ("/alert-service/svc/api/v1/resolve-alert", resolve_alert),
        ("/alert-service/svc/api/v1/reopen-alert", reopen_alert),
        // py42 asks the alert service for rules; Code42's article names the fed-observer
        // (`docs/api.md`).
        (
            "/alert-service/svc/api/v1/rules/query-rule-metadata",
            query_rules,
        ),
        (
            "/alert-service/svc/api/v1/Rules/query-rule-metadata",
            query_rules,
        ),
        (
            "/fed-observer/svc/api/v1/Rules/query-rule-metadata",
            query_rules,
        ),
        (
            "/fed-observer/svc/api/v1/rules/query-rule-metadata",
            query_rules,
        ),
    ];
    let mut r = Router::new();
    for &(route, f) in incydr {
        r = r.route(route, op(route, Auth::BearerOnly, f));
    }
    // The legacy services under their prefixes (for clients that append paths to the
    // discovered URLs) and at the root (where the official client reaches them: it joins
    // `/svc/api/v1/...` onto the discovered URL, which drops the prefix).
    let mut root = std::collections::BTreeSet::new();
    for &(route, f) in legacy {
        let auth = if route.starts_with("/alert-service/") {
            Auth::AlertService
        } else {
            Auth::Token
        };
        r = r.route(route, op(route, auth, f));
        let at_root = route
            .trim_start_matches("/alert-service")
            .trim_start_matches("/fed-observer");
        if root.insert(at_root) {
            r = r.route(at_root, op(at_root, auth, f));
        }
    }
    r.route("/api/v3/DirectorySyncLog", get(sync_log_json))
        .route("/api/v3/DirectorySyncLog/csv", get(sync_log_csv))
}

fn json_text(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Parses a JSON object body; `Err` is the 400.
fn object(body: &[u8]) -> Result<Map<String, Value>, Box<Response>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Box::new(bad_request(
            "invalid body: expected a JSON object",
        ))),
        Err(e) => Err(Box::new(bad_request(&format!("invalid body: {e}")))),
    }
}

/// A key looked up case-insensitively (ASP.NET model binding).
fn field_of<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    alert_query::body_key(obj, name)
}

fn same_tenant(st: &Emulator, t: &str) -> bool {
    t.trim().eq_ignore_ascii_case(st.alerts.tenant())
}

// ---------------------------------------------------------------- alert terms

const T_ALERT_ID: u8 = 0;
const T_TENANT_ID: u8 = 1;
const T_TYPE: u8 = 2;
const T_NAME: u8 = 3;
const T_DESCRIPTION: u8 = 4;
const T_ACTOR: u8 = 5;
const T_ACTOR_ID: u8 = 6;
const T_TARGET: u8 = 7;
const T_RISK_SEVERITY: u8 = 8;
const T_RULE_SOURCE: u8 = 9;
const T_CREATED_AT: u8 = 10;
const T_OBSERVATIONS: u8 = 11;
const T_NOTES: u8 = 12;
const T_WATCHLISTS: u8 = 13;
const T_SIGNIFICANT_WATCHLIST: u8 = 14;
const T_STATE: u8 = 15;
const T_STATE_AT: u8 = 16;
const T_STATE_BY: u8 = 17;
const T_LAST_MODIFIED_TIME: u8 = 18;
const T_LAST_MODIFIED_BY: u8 = 19;
const T_RULE_ID: u8 = 20;
const T_EDUCATION: u8 = 21;
const T_SEVERITY: u8 = 22;

const fn term(names: &'static [&'static str], id: u8, kind: Kind) -> TermDef {
    TermDef { names, id, kind }
}

/// The alert terms of the OpenAPI `SearchFilter.term` list, plus the console's names
/// from `docs/api.md` (`AlertId`, `DateObserved`, `RuleName`, `AlertState`).
const ALERT_TERMS: &[TermDef] = &[
    term(&["alertid", "id"], T_ALERT_ID, Kind::Text),
    term(&["tenantid"], T_TENANT_ID, Kind::Text),
    term(&["type", "ruletype"], T_TYPE, Kind::Enum(AlertType::NAMES)),
    term(&["name", "rulename"], T_NAME, Kind::Text),
    term(&["description"], T_DESCRIPTION, Kind::Text),
    term(&["actor"], T_ACTOR, Kind::Text),
    term(&["actorid"], T_ACTOR_ID, Kind::Text),
    term(&["target"], T_TARGET, Kind::Text),
    term(
        &["riskseverity"],
        T_RISK_SEVERITY,
        Kind::Enum(RISK_SEVERITIES),
    ),
    term(&["rulesource"], T_RULE_SOURCE, Kind::Text),
    term(&["createdat", "dateobserved"], T_CREATED_AT, Kind::Date),
    term(&["observations"], T_OBSERVATIONS, Kind::Text),
    term(&["notes", "note"], T_NOTES, Kind::Text),
    term(&["watchlists"], T_WATCHLISTS, Kind::Text),
    term(
        &["hasauthsignificantwatchlist"],
        T_SIGNIFICANT_WATCHLIST,
        Kind::Bool,
    ),
    term(&["state", "alertstate"], T_STATE, Kind::Enum(ALERT_STATES)),
    term(&["statelastmodifiedat"], T_STATE_AT, Kind::Date),
    term(&["statelastmodifiedby"], T_STATE_BY, Kind::Text),
    term(&["lastmodifiedtime"], T_LAST_MODIFIED_TIME, Kind::Date),
    term(&["lastmodifiedby"], T_LAST_MODIFIED_BY, Kind::Text),
    term(&["ruleid"], T_RULE_ID, Kind::Text),
    term(&["education"], T_EDUCATION, Kind::Text),
    term(&["severity"], T_SEVERITY, Kind::Enum(SEVERITIES)),
];

/// An alert as the filters see it.
struct AlertView<'g> {
    g: &'g AlertGenerator,
    a: Alert<'g>,
}

fn text(s: &str) -> Field<'_> {
    Field::Text(Some(Cow::Borrowed(s)))
}

impl Record for AlertView<'_> {
    fn field(&self, term: u8) -> Field<'_> {
        let a = &self.a;
        match term {
            T_ALERT_ID => text(&a.id),
            T_TENANT_ID => text(self.g.tenant()),
            T_TYPE => text(a.rule.kind.as_str()),
            T_NAME => text(a.rule.name),
            T_DESCRIPTION => text(a.rule.description),
            T_ACTOR => text(&a.actor.name),
            T_ACTOR_ID => Field::Text(a.actor.id.as_deref().map(Cow::Borrowed)),
            T_TARGET => text("N/A"),
            T_RISK_SEVERITY => text(a.risk_severity),
            T_RULE_SOURCE => text(a.rule.rule_source),
            T_CREATED_AT => Field::Date(Some(a.created_ns)),
            T_OBSERVATIONS => Field::Text(Some(Cow::Owned(self.g.observation_text(a)))),
            T_NOTES => Field::Text(a.note.as_ref().map(|n| Cow::Borrowed(n.message.as_str()))),
            T_WATCHLISTS => Field::List(
                (0..a.watchlists.len())
                    .map(|w| Cow::Borrowed(a.watchlist_name(w)))
                    .collect(),
            ),
            T_SIGNIFICANT_WATCHLIST => Field::Bool(a.watchlists.iter().any(|w| w.1)),
            T_STATE => text(a.state),
            T_STATE_AT => Field::Date(a.state_at),
            T_STATE_BY => Field::Text(a.state_by.as_deref().map(Cow::Borrowed)),
            T_LAST_MODIFIED_TIME => Field::Date(Some(a.last_modified().0)),
            T_LAST_MODIFIED_BY => Field::Text(a.last_modified().1.map(Cow::Borrowed)),
            T_RULE_ID => text(&a.rule.observer_rule_id),
            T_SEVERITY => text(a.rule.severity),
            _ => Field::Text(None),
        }
    }
}

/// The alert numbers a search at `now` selects, sorted (not paged).
fn select_alerts(st: &Emulator, s: &Search, now: i64) -> Vec<u64> {
    let g = &st.alerts;
    let tl = &g.timeline;
    let (lo_t, hi_t) = s.interval(T_CREATED_AT);
    if lo_t >= hi_t {
        return Vec::new();
    }
    let lo = if lo_t == i64::MIN {
        0
    } else {
        g.first_created_at_or_after(lo_t)
    };
    // Nothing created after `now` can be visible.
    let k_now = tl.first_after(now);
    let hi = if hi_t == i64::MAX {
        k_now
    } else {
        g.first_created_at_or_after(hi_t).min(k_now)
    };
    let changes = st.alert_changes_snapshot();
    let mut matched: Vec<(SortKey, u64)> = Vec::new();
    for i in lo..hi.max(lo) {
        if !tl.visible(i, now) {
            continue;
        }
        let view = AlertView {
            g,
            a: g.alert(i, changes.get(&i)),
        };
        if s.matches(&view) {
            matched.push((SortKey::from(view.field(s.sort_term)), i));
        }
    }
    in_sort_order(matched, s.sort_desc)
}

/// The matches' ids by their sort keys. Stable: equal keys keep the matches' order (of
/// creation) in both directions.
fn in_sort_order<T>(mut matched: Vec<(SortKey, T)>, desc: bool) -> Vec<T> {
    if desc {
        matched.sort_by(|a, b| b.0.cmp(&a.0));
    } else {
        matched.sort_by(|a, b| a.0.cmp(&b.0));
    }
    matched.into_iter().map(|(_, id)| id).collect()
}

/// The closing `],"totalCount":n,"problems":[...]}` of a search response.
fn close_search(out: &mut String, total: u64, problems: &[String]) {
    out.push_str("],\"totalCount\":");
    json::push_u64(out, total);
    out.push_str(",\"problems\":[");
    out.push_str(&problems.join(","));
    out.push_str("]}");
}

fn page_of<T: Copy>(all: &[T], s: &Search) -> Vec<T> {
    let start = s.page.saturating_mul(s.page_size);
    all.iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(s.page_size as usize)
        .copied()
        .collect()
}

fn query_alerts(st: &Emulator, _: &HeaderMap, body: &[u8]) -> Response {
    let s = match parse_search(body, ALERT_TERMS) {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    let now = st.clock.now_ns();
    let all = if s.selects_anything() && same_tenant(st, &s.tenant_id) {
        select_alerts(st, &s, now)
    } else {
        Vec::new()
    };
    let changes = st.alert_changes_snapshot();
    let mut out = String::from("{\"type$\":\"ALERT_QUERY_RESPONSE\",\"alerts\":[");
    let page = page_of(&all, &s);
    for (n, &i) in page.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        st.alerts
            .render_summary(&st.alerts.alert(i, changes.get(&i)), &mut out);
    }
    close_search(&mut out, all.len() as u64, &s.problems);
    served(json_text(out), page.len() as u64)
}

/// The alert ids of a body's `alertIds`, at most 100.
fn alert_ids(obj: &Map<String, Value>) -> Result<Vec<String>, Box<Response>> {
    let Some(Value::Array(ids)) = field_of(obj, "alertIds") else {
        return Err(Box::new(bad_request(
            "alertIds is required (an array of alert ids)",
        )));
    };
    if ids.len() > MAX_ALERT_IDS {
        return Err(Box::new(bad_request(&format!(
            "alertIds holds {} ids; at most {MAX_ALERT_IDS} are allowed per request",
            ids.len()
        ))));
    }
    ids.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| Box::new(bad_request("alertIds must hold strings")))
        })
        .collect()
}

/// The visible alert an id names now.
fn visible_alert(st: &Emulator, id: &str, now: i64) -> Option<u64> {
    st.alerts
        .index_of(id)
        .filter(|&i| st.alerts.timeline.visible(i, now))
}

/// The start of a query-details answer; the alerts and `]}` follow.
pub(crate) const DETAILS_RESPONSE_START: &str =
    "{\"type$\":\"ALERT_DETAILS_RESPONSE\",\"alerts\":[";

fn query_details(st: &Emulator, _: &HeaderMap, body: &[u8]) -> Response {
    let obj = match object(body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let ids = match alert_ids(&obj) {
        Ok(ids) => ids,
        Err(r) => return *r,
    };
    let other_tenant = field_of(&obj, "tenantId")
        .and_then(Value::as_str)
        .is_some_and(|t| !same_tenant(st, t));
    let now = st.clock.now_ns();
    let changes = st.alert_changes_snapshot();
    let mut out = String::from(DETAILS_RESPONSE_START);
    let mut seen = HashSet::new();
    if !other_tenant {
        for id in &ids {
            let Some(i) = visible_alert(st, id, now) else {
                continue;
            };
            if !seen.insert(i) {
                continue;
            }
            if seen.len() > 1 {
                out.push(',');
            }
            st.alerts
                .render_details(&st.alerts.alert(i, changes.get(&i)), &mut out);
        }
    }
    out.push_str("]}");
    served(json_text(out), seen.len() as u64)
}

fn query_details_aggregate(st: &Emulator, _: &HeaderMap, body: &[u8]) -> Response {
    let obj = match object(body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let Some(id) = field_of(&obj, "alertId").and_then(Value::as_str) else {
        return bad_request("alertId is required");
    };
    let other_tenant = field_of(&obj, "tenantId")
        .and_then(Value::as_str)
        .is_some_and(|t| !same_tenant(st, t));
    let now = st.clock.now_ns();
    let Some(i) = visible_alert(st, id, now).filter(|_| !other_tenant) else {
        return bad_request(&format!("unknown alertId {id:?}"));
    };
    let changes = st.alert_changes_snapshot();
    let mut out = String::from("{\"type$\":\"ALERT_DETAILS_IN_AGGREGATE_RESPONSE\",\"alert\":");
    st.alerts
        .render_aggregate(&st.alerts.alert(i, changes.get(&i)), &mut out);
    out.push('}');
    json_text(out)
}

/// The common checks of change requests: the tenant, and every id known and visible.
fn target_alerts(
    st: &Emulator,
    obj: &Map<String, Value>,
    ids: &[String],
) -> Result<Vec<u64>, Box<Response>> {
    match field_of(obj, "tenantId").and_then(Value::as_str) {
        None => return Err(Box::new(bad_request("tenantId is required"))),
        Some(t) if !same_tenant(st, t) => {
            return Err(Box::new(bad_request(&format!(
                "tenantId {t:?} is not this tenant"
            ))))
        }
        Some(_) => {}
    }
    let now = st.clock.now_ns();
    ids.iter()
        .map(|id| {
            visible_alert(st, id, now)
                .ok_or_else(|| Box::new(bad_request(&format!("unknown alertId {id:?}"))))
        })
        .collect()
}

/// An optional note: `Ok(None)` when absent or empty.
fn note_text(obj: &Map<String, Value>) -> Result<Option<String>, Box<Response>> {
    match field_of(obj, "note") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_NOTE_CHARS => Err(Box::new(bad_request(
            &format!("note is longer than {MAX_NOTE_CHARS} characters"),
        ))),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Box::new(bad_request("note must be a string"))),
    }
}

/// Applies a state and/or note change to each alert, all under one lock.
fn apply(
    st: &Emulator,
    targets: &[u64],
    by: &str,
    state: Option<&'static str>,
    note: Option<&str>,
) {
    let at = to_tick(st.clock.now_ns());
    let mut changes = st.alert_changes.lock().unwrap_or_else(|e| e.into_inner());
    for &i in targets {
        let c = changes.entry(i).or_default();
        if let Some(state) = state {
            c.state = Some((state, by.to_string(), at));
        }
        if let Some(message) = note {
            c.revisions += 1;
            c.note = Some(Note {
                id: st.alerts.note_id(i, c.revisions),
                message: message.to_string(),
                by: by.to_string(),
                at_ns: at,
            });
        }
    }
}

fn add_note(st: &Emulator, headers: &HeaderMap, body: &[u8]) -> Response {
    let obj = match object(body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let Some(id) = field_of(&obj, "alertId").and_then(Value::as_str) else {
        return bad_request("alertId is required");
    };
    let note = match note_text(&obj) {
        Ok(Some(n)) => n,
        Ok(None) => return bad_request("note is required"),
        Err(r) => return *r,
    };
    let targets = match target_alerts(st, &obj, &[id.to_string()]) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    apply(st, &targets, &st.caller(headers), None, Some(&note));
    StatusCode::OK.into_response()
}

/// update-state / resolve-alert / reopen-alert: `fixed` is the state the legacy verbs
/// imply; update-state reads it from the body.
fn change_state(
    st: &Emulator,
    headers: &HeaderMap,
    body: &[u8],
    fixed: Option<&'static str>,
) -> Response {
    let obj = match object(body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let ids = match alert_ids(&obj) {
        Ok(ids) => ids,
        Err(r) => return *r,
    };
    let state = match fixed {
        Some(s) => s,
        None => match field_of(&obj, "state").and_then(Value::as_str) {
            None => return bad_request("state is required"),
            Some(s) => match canonical_state(s) {
                Some(s) => s,
                None => {
                    return bad_request(&format!(
                        "invalid state {s:?}: expected one of {}",
                        ALERT_STATES.join(", ")
                    ))
                }
            },
        },
    };
    let note = match note_text(&obj) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let targets = match target_alerts(st, &obj, &ids) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    apply(
        st,
        &targets,
        &st.caller(headers),
        Some(state),
        note.as_deref(),
    );
    StatusCode::OK.into_response()
}

fn update_state(st: &Emulator, headers: &HeaderMap, body: &[u8]) -> Response {
    change_state(st, headers, body, None)
}

fn resolve_alert(st: &Emulator, headers: &HeaderMap, body: &[u8]) -> Response {
    change_state(st, headers, body, Some("RESOLVED"))
}

fn reopen_alert(st: &Emulator, headers: &HeaderMap, body: &[u8]) -> Response {
    change_state(st, headers, body, Some("OPEN"))
}

// ---------------------------------------------------------------- rules

const R_ID: u8 = 0;
const R_TENANT_ID: u8 = 1;
const R_OBSERVER_RULE_ID: u8 = 2;
const R_TYPE: u8 = 3;
const R_NAME: u8 = 4;
const R_DESCRIPTION: u8 = 5;
const R_IS_ENABLED: u8 = 6;
const R_IS_SYSTEM: u8 = 7;
const R_MODIFIED_AT: u8 = 8;
const R_MODIFIED_BY: u8 = 9;
const R_CREATED_AT: u8 = 10;
const R_CREATED_BY: u8 = 11;
const R_RULE_SOURCE: u8 = 12;
const R_SEVERITY: u8 = 13;
const R_RULE_WARNING: u8 = 14;
const R_LOG_STRING: u8 = 15;

/// The rule terms of the OpenAPI, plus the console's `IsSystem`, `RuleSource` and
/// `Severity` (`docs/api.md`).
const RULE_TERMS: &[TermDef] = &[
    term(&["rulemetadataid", "id"], R_ID, Kind::Text),
    term(&["tenantid"], R_TENANT_ID, Kind::Text),
    term(&["observerruleid"], R_OBSERVER_RULE_ID, Kind::Text),
    term(&["type"], R_TYPE, Kind::Enum(AlertType::NAMES)),
    term(&["name"], R_NAME, Kind::Text),
    term(&["description"], R_DESCRIPTION, Kind::Text),
    term(&["isenabled"], R_IS_ENABLED, Kind::Bool),
    term(&["issystem"], R_IS_SYSTEM, Kind::Bool),
    term(&["modifiedat"], R_MODIFIED_AT, Kind::Date),
    term(&["modifiedby"], R_MODIFIED_BY, Kind::Text),
    term(&["createdat"], R_CREATED_AT, Kind::Date),
    term(&["createdby"], R_CREATED_BY, Kind::Text),
    term(&["rulesource"], R_RULE_SOURCE, Kind::Text),
    term(&["severity"], R_SEVERITY, Kind::Enum(SEVERITIES)),
    term(&["rulewarning"], R_RULE_WARNING, Kind::Text),
    term(&["logstring"], R_LOG_STRING, Kind::Text),
];

struct RuleView<'g> {
    tenant: &'g str,
    r: &'g Rule,
}

impl Record for RuleView<'_> {
    fn field(&self, term: u8) -> Field<'_> {
        let r = self.r;
        match term {
            R_ID => text(&r.id),
            R_TENANT_ID => text(self.tenant),
            R_OBSERVER_RULE_ID => text(&r.observer_rule_id),
            R_TYPE => text(r.kind.as_str()),
            R_NAME => text(r.name),
            R_DESCRIPTION => text(r.description),
            R_IS_ENABLED => Field::Bool(r.is_enabled),
            R_IS_SYSTEM => Field::Bool(r.is_system),
            R_MODIFIED_AT => Field::Date(Some(r.modified_ns)),
            R_MODIFIED_BY => text(r.modified_by),
            R_CREATED_AT => Field::Date(Some(r.created_ns)),
            R_CREATED_BY => text(r.created_by),
            R_RULE_SOURCE => text(r.rule_source),
            R_SEVERITY => text(r.severity),
            _ => Field::Text(None),
        }
    }
}

fn query_rules(st: &Emulator, _: &HeaderMap, body: &[u8]) -> Response {
    let s = match parse_search(body, RULE_TERMS) {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    let g = &st.alerts;
    let mut matched: Vec<(SortKey, usize)> = Vec::new();
    if s.selects_anything() && same_tenant(st, &s.tenant_id) {
        for (n, r) in g.rules().iter().enumerate() {
            let view = RuleView {
                tenant: g.tenant(),
                r,
            };
            if s.matches(&view) {
                matched.push((SortKey::from(view.field(s.sort_term)), n));
            }
        }
    }
    let all: Vec<usize> = in_sort_order(matched, s.sort_desc);
    let mut out = String::from("{\"type$\":\"RULE_METADATA_SEARCH_RESPONSE\",\"ruleMetadata\":[");
    for (k, n) in page_of(&all, &s).into_iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        g.render_rule(&g.rules()[n], &mut out);
    }
    close_search(&mut out, all.len() as u64, &s.problems);
    json_text(out)
}

// ---------------------------------------------------------------- Directory Sync Log

fn sync_log_query(
    st: &Emulator,
    route: &'static str,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(sync_log::SyncQuery, Vec<sync_log::Entry>), Box<Response>> {
    st.admit_as(route, headers, Auth::Token)?;
    let q = sync_log::parse_query(params).map_err(|e| Box::new(bad_request(&e)))?;
    let entries = st.sync_log.select(&q, st.clock.now_ns());
    Ok((q, entries))
}

async fn sync_log_json(
    State(st): St,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Vec<(String, String)>>,
) -> Response {
    match sync_log_query(&st, "/api/v3/DirectorySyncLog", &headers, &params) {
        Err(r) => *r,
        Ok((q, entries)) => {
            let route = "/api/v3/DirectorySyncLog";
            let n = sync_log::SyncLog::page_len(entries.len(), q.page);
            st.faults.count_records(route, n);
            json_text(st.sync_log.render_page(&entries, q.page))
        }
    }
}

async fn sync_log_csv(
    State(st): St,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Vec<(String, String)>>,
) -> Response {
    match sync_log_query(&st, "/api/v3/DirectorySyncLog/csv", &headers, &params) {
        Err(r) => *r,
        Ok((_, entries)) => {
            let mut out = String::from(sync_log::CSV_HEADER);
            st.faults
                .count_records("/api/v3/DirectorySyncLog/csv", entries.len() as u64);
            for e in &entries {
                st.sync_log.render_csv(e, &mut out);
            }
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"DirectorySyncLog.csv\"",
                    ),
                ],
                out,
            )
                .into_response()
        }
    }
}
