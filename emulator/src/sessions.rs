//! The emulated Incydr sessions (`docs/api.md`, Sessions): what session number `i` says
//! in each of its versions, which sessions `GET /v1/sessions` selects and in what order,
//! and the routes `GET /v1/sessions`, `GET /v1/sessions/{id}` and
//! `GET /v1/sessions/{id}/events`.
//!
//! A session is a pure function of `(seed, i, version)`: it begins at the time its own
//! [`Timeline`] gives index `i` (millisecond-aligned), and it is **updated after it is
//! created**: version 0 appears when the session is first observed, each later version
//! (at most [`MAX_VERSIONS`] in all) `update_every` after the previous one, and a request
//! at `now` sees the newest version whose `lastUpdated` is not after `now`. Each version
//! adds a score, a state (`OPEN`, `IN_PROGRESS`, `OPEN_NEW_DATA`, then `CLOSED_TP` or
//! `CLOSED_FP`), events and perhaps a note, and moves `endTime` and `lastUpdated`. So the
//! order by `end_time` changes while a client pages, as it does in the real service.
//!
//! Behaviour choices, where the OpenAPI document leaves room:
//! - `on_or_after` (inclusive) and `before` (exclusive) are epoch milliseconds and
//!   filter on `beginTime`, as the document says; there is no filter on `lastUpdated`.
//!   A value that is not an integer is a 400 naming the parameter.
//! - `has_alerts` defaults to `true` (only sessions that triggered an alert); `false`
//!   selects the sessions without one.
//! - `order_by` is `end_time` (default) or `score` (the latest score), `sort_direction`
//!   `ASC` or `DESC` (default), case-insensitive; ties keep `beginTime` order. Anything
//!   else is a 400.
//! - `page_number` is 0-based (default 0); `page_size` defaults to 10 and takes 1 to
//!   [`MAX_PAGE_SIZE`] (the document's description says at most 50; more is a 400).
//! - `actor_id`, `state` (repeatable, the current state) and `severity` (repeatable, the
//!   latest score's severity) filter; the other documented filters are accepted and
//!   ignored.
//! - `GET /v1/sessions/{id}/events` answers `{"queryResult":{"fileEvents":[...],
//!   "totalCount":n,"nextPgToken":null,"problems":null}}` (the file event search's
//!   response), or 404 for a session without alerts, as the document says.
//! - Values carry the hostile characters of the other data sets (separators of every
//!   output format, line breaks, quotes, non-ASCII) in notes, summaries and one risk
//!   indicator name.

use super::events::{FIRST, HOSTILE, LAST};
use super::json::{self, kv_str, kv_u64, push_str};
use super::server::{bad_request, Auth, Emulator};
use super::timeline::{hash3, Rng, Timeline};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::ops::Range;
use std::sync::Arc;

const SALT_SESSION: u64 = 401;
const SALT_VERSIONS: u64 = 402;
const NANOS_PER_MILLI: i64 = 1_000_000;
/// The most versions of one session (the first and its updates).
pub(crate) const MAX_VERSIONS: u64 = 4;
pub(crate) const DEFAULT_PAGE_SIZE: u64 = 10;
pub(crate) const MAX_PAGE_SIZE: u64 = 50;

pub(crate) const ROUTE_SEARCH: &str = "/v1/sessions";
pub(crate) const ROUTE_DETAIL: &str = "/v1/sessions/{id}";
pub(crate) const ROUTE_EVENTS: &str = "/v1/sessions/{id}/events";

/// `(indicatorId, indicatorName, categoryId, subCategoryId)`.
const INDICATORS: &[(&str, &str, &str, &str)] = &[
    (
        "7a1c3b2e-5d4f-4e60-9a81-0b2c3d4e5f60",
        "Personal cloud upload",
        "destinations",
        "cloud-storage-personal",
    ),
    (
        "8b2d4c3f-6e50-4f71-8b92-1c3d4e5f6071",
        "Removable media",
        "destinations",
        "removable-media",
    ),
    (
        "9c3e5d40-7f61-4082-9ca3-2d4e5f607182",
        "File mismatch",
        "files",
        "file-mismatch",
    ),
    (
        "ad4f6e51-8072-4193-8db4-3e5f60718293",
        "Departing employee",
        "users",
        "departing",
    ),
    (
        "be507f62-9183-42a4-9ec5-4f60718293a4",
        "Zip or compressed file",
        "files",
        "archive",
    ),
    (
        "cf618073-a294-43b5-8fd6-5071829304b5",
        "Off hours activity",
        "behavior",
        "off-hours",
    ),
    (
        "d0729184-b3a5-44c6-90e7-61829304a5c6",
        "Untrusted domain: upload|share=1 \\ «x»",
        "destinations",
        "untrusted-domain",
    ),
];

const RULES: &[&str] = &[
    "4f1a9c2e-0b3d-4e5f-8a6b-7c8d9e0f1a2b",
    "5a2b0d3f-1c4e-4f60-9b7c-8d9e0f1a2b3c",
    "6b3c1e40-2d5f-4071-8c8d-9e0f1a2b3c4d",
];
const ANALYSTS: &[&str] = &[
    "analyst-0001@example.com",
    "analyst-0002@example.com",
    "soc|lead=1@example.com",
];
const EXFILTRATION: &[&str] = &[
    "3 files uploaded to drive.google.com",
    "12 files copied to removable media (SanDisk Ultra)",
    "1 archive shared publicly from OneDrive",
    "files sent to a personal e-mail address",
];
const CONTEXT: &[&str] = &[
    "User is on the departing employees watch list",
    "Activity outside of normal working hours",
    "First time the user used this destination",
];
const INSPECTION: &[&str] = &["PENDING", "PII_NOT_FOUND", "PII_FOUND", "UNPROCESSED"];

/// One version of one session, as the service renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) index: u64,
    pub(crate) version: u64,
    pub(crate) id: String,
    pub(crate) actor_id: String,
    pub(crate) begin_ms: i64,
    pub(crate) end_ms: i64,
    pub(crate) first_observed_ms: i64,
    pub(crate) last_updated_ms: i64,
    pub(crate) has_alerts: bool,
    /// The latest score and its severity.
    pub(crate) score: u64,
    pub(crate) severity: u64,
    pub(crate) state: &'static str,
    /// The score history: `base + step * k` in version `k`.
    base: u64,
    step: u64,
    /// How the session is closed in its last version (true positive or false).
    close_tp: bool,
}

/// The sessions of one tenant.
pub(crate) struct Sessions {
    pub(crate) timeline: Timeline,
    seed: u64,
    tenant_id: String,
    update_every_ms: i64,
}

/// A parsed `GET /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionQuery {
    /// Inclusive, epoch ms, on `beginTime`.
    pub(crate) on_or_after: Option<i64>,
    /// Exclusive.
    pub(crate) before: Option<i64>,
    pub(crate) has_alerts: bool,
    pub(crate) by_score: bool,
    pub(crate) desc: bool,
    pub(crate) page_number: u64,
    pub(crate) page_size: u64,
    pub(crate) actor_id: Option<String>,
    pub(crate) states: Vec<String>,
    pub(crate) severities: Vec<u64>,
}

/// Parses the query string of `GET /v1/sessions`; `Err` is the 400 message.
pub(crate) fn parse_query(params: &[(String, String)]) -> Result<SessionQuery, String> {
    let last = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    };
    let all = |name: &str| -> Vec<&str> {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .collect()
    };
    let int = |name: &str| -> Result<Option<i64>, String> {
        match last(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                format!("invalid {name} {v:?}: expected epoch milliseconds (an integer)")
            }),
        }
    };
    let whole = |name: &str, default: u64| -> Result<u64, String> {
        match last(name) {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| format!("invalid {name} {v:?}: expected a whole number")),
        }
    };
    let has_alerts = match last("has_alerts") {
        None | Some("") => true,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => return Err(format!("invalid has_alerts {v:?}: expected true or false")),
    };
    let by_score = match last("order_by") {
        None | Some("") => false,
        Some(v) if v.eq_ignore_ascii_case("end_time") => false,
        Some(v) if v.eq_ignore_ascii_case("score") => true,
        Some(v) => {
            return Err(format!(
                "invalid order_by {v:?}: expected end_time or score"
            ))
        }
    };
    let desc = match last("sort_direction") {
        None | Some("") => true,
        Some(v) if v.eq_ignore_ascii_case("desc") => true,
        Some(v) if v.eq_ignore_ascii_case("asc") => false,
        Some(v) => {
            return Err(format!(
                "invalid sort_direction {v:?}: expected ASC or DESC"
            ))
        }
    };
    let page_size = whole("page_size", DEFAULT_PAGE_SIZE)?;
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(format!(
            "invalid page_size {page_size}: must be between 1 and {MAX_PAGE_SIZE}"
        ));
    }
    let mut severities = Vec::new();
    for s in all("severity") {
        match s.parse::<u64>() {
            Ok(n) if n <= 4 => severities.push(n),
            _ => return Err(format!("invalid severity {s:?}: expected 0 to 4")),
        }
    }
    let states: Vec<String> = all("state").into_iter().map(str::to_string).collect();
    for s in &states {
        if !STATES.contains(&s.as_str()) {
            return Err(format!(
                "invalid state {s:?}: expected one of {}",
                STATES.join(", ")
            ));
        }
    }
    Ok(SessionQuery {
        on_or_after: int("on_or_after")?,
        before: int("before")?,
        has_alerts,
        by_score,
        desc,
        page_number: whole("page_number", 0)?,
        page_size,
        actor_id: last("actor_id")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        states,
        severities,
    })
}

/// Every session state the service knows.
pub(crate) const STATES: &[&str] = &[
    "OPEN",
    "IN_PROGRESS",
    "CLOSED",
    "CLOSED_TP",
    "CLOSED_FP",
    "OPEN_NEW_DATA",
];

fn severity_of(score: u64) -> u64 {
    match score {
        0 => 0,
        1..=3 => 1,
        4..=6 => 2,
        7..=8 => 3,
        _ => 4,
    }
}

impl Sessions {
    pub(crate) fn new(
        seed: u64,
        timeline: Timeline,
        tenant_id: String,
        update_every_ms: i64,
    ) -> Self {
        Sessions {
            timeline,
            seed,
            tenant_id,
            update_every_ms: update_every_ms.max(1),
        }
    }

    fn begin_ms(&self, i: u64) -> i64 {
        self.timeline.occurred_ns(i).div_euclid(NANOS_PER_MILLI)
    }

    /// How many versions session `i` has in all (1 to [`MAX_VERSIONS`]).
    fn versions(&self, i: u64) -> u64 {
        1 + hash3(self.seed, SALT_VERSIONS, i) % MAX_VERSIONS
    }

    fn first_observed_ms(&self, i: u64) -> i64 {
        self.begin_ms(i) + (hash3(self.seed, SALT_VERSIONS ^ 1, i) % 1000) as i64
    }

    fn last_updated_ms(&self, i: u64, version: u64) -> i64 {
        self.first_observed_ms(i)
            .saturating_add(self.update_every_ms.saturating_mul(version as i64))
    }

    /// The newest version of session `i` a request at `now_ns` sees, if any.
    pub(crate) fn version_at(&self, i: u64, now_ns: i64) -> Option<u64> {
        let now_ms = now_ns.div_euclid(NANOS_PER_MILLI);
        if !self.timeline.visible(i, now_ns) || self.first_observed_ms(i) > now_ms {
            return None;
        }
        let since = now_ms - self.first_observed_ms(i);
        Some((since / self.update_every_ms).min(self.versions(i) as i64 - 1) as u64)
    }

    /// Every version of session `i` published by `now_ns` (by `lastUpdated`).
    pub(crate) fn versions_until(&self, i: u64, now_ns: i64) -> Range<u64> {
        let now_ms = now_ns.div_euclid(NANOS_PER_MILLI);
        let n = (0..self.versions(i))
            .take_while(|&v| self.last_updated_ms(i, v) <= now_ms)
            .count() as u64;
        0..n
    }

    /// The sessions whose `beginTime` lies in `[start_ms, end_ms)`, visible or not.
    pub(crate) fn index_range(&self, start_ms: i64, end_ms: i64) -> Range<u64> {
        let at = |ms: i64| ms.saturating_mul(NANOS_PER_MILLI);
        let lo = self.timeline.first_at_or_after(at(start_ms));
        let hi = if end_ms == i64::MAX {
            self.timeline.end()
        } else {
            self.timeline.first_at_or_after(at(end_ms))
        };
        lo..hi.max(lo)
    }

    fn rng(&self, i: u64) -> Rng {
        Rng::new(hash3(self.seed, SALT_SESSION, i))
    }

    /// The session id of `i`: UUID-shaped, the index in its last group.
    pub(crate) fn id_of(&self, i: u64) -> String {
        let h = hash3(self.seed, SALT_SESSION ^ 7, i);
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xffff,
            (h >> 4) & 0xfff,
            h & 0xfff,
            i
        )
    }

    /// The index of a session id of this tenant.
    pub(crate) fn index_of(&self, id: &str) -> Option<u64> {
        let i = u64::from_str_radix(id.rsplit('-').next()?, 16).ok()?;
        (i < self.timeline.end() && self.id_of(i) == id).then_some(i)
    }

    /// Version `version` of session `i`.
    pub(crate) fn session(&self, i: u64, version: u64) -> Session {
        let mut rng = self.rng(i);
        let has_alerts = rng.chance(85);
        let actor = rng.below(40);
        let base = 1 + rng.below(5);
        let step = 1 + rng.below(3);
        let score = base + step * version;
        let close_tp = rng.chance(50);
        let last_updated_ms = self.last_updated_ms(i, version);
        let begin_ms = self.begin_ms(i);
        Session {
            index: i,
            version,
            id: self.id_of(i),
            actor_id: format!("9{actor:017}"),
            begin_ms,
            end_ms: (last_updated_ms - 250).max(begin_ms),
            first_observed_ms: self.first_observed_ms(i),
            last_updated_ms,
            has_alerts,
            score,
            severity: severity_of(score),
            state: state_of(has_alerts, version, self.versions(i), close_tp),
            base,
            step,
            close_tp,
        }
    }

    /// The JSON text of one version of a session (the OpenAPI `SessionDetail`).
    pub(crate) fn render(&self, s: &Session, out: &mut String) {
        // The content's own draws, apart from those `session` made.
        let mut rng = Rng::new(hash3(self.seed, SALT_SESSION ^ 3, s.index));
        let first = FIRST[(s.index as usize * 7) % FIRST.len()];
        let last = LAST[(s.index as usize / 3) % LAST.len()];
        out.push('{');
        out.push_str("\"sessionId\":");
        push_str(out, &s.id);
        kv_str(out, "tenantId", &self.tenant_id);
        kv_str(out, "actorId", &s.actor_id);
        kv_u64(out, "beginTime", s.begin_ms as u64);
        kv_u64(out, "endTime", s.end_ms as u64);
        kv_u64(out, "firstObserved", s.first_observed_ms as u64);
        kv_u64(out, "lastUpdated", s.last_updated_ms as u64);
        // Event counts grow with each version.
        let v = s.version;
        kv_u64(out, "noRiskEvents", 3 + 4 * v + rng.below(5));
        kv_u64(out, "lowEvents", 1 + 2 * v + rng.below(3));
        kv_u64(out, "moderateEvents", v + rng.below(3));
        kv_u64(out, "highEvents", if s.severity >= 3 { 1 + v } else { 0 });
        kv_u64(out, "criticalEvents", if s.severity >= 4 { 1 } else { 0 });
        kv_str(
            out,
            "exfiltrationSummary",
            if rng.chance(20) {
                rng.pick_str(HOSTILE)
            } else {
                rng.pick_str(EXFILTRATION)
            },
        );
        kv_str(out, "contextSummary", rng.pick_str(CONTEXT));
        // Notes: analysts write them once the session is being worked on.
        json::key(out, "notes");
        out.push('[');
        if v >= 1 && rng.chance(60) {
            out.push_str("{\"id\":\"1\"");
            kv_str(
                out,
                "content",
                &format!(
                    "Spoke with {first} {last}: {}",
                    HOSTILE[(s.index as usize) % HOSTILE.len()]
                ),
            );
            kv_u64(
                out,
                "sourceTimestamp",
                self.last_updated_ms(s.index, 1) as u64,
            );
            kv_str(out, "userId", ANALYSTS[(s.index as usize) % ANALYSTS.len()]);
            out.push('}');
        }
        out.push(']');
        // Risk indicators: two to four, distinct.
        json::key(out, "riskIndicators");
        out.push('[');
        let n = 2 + rng.below(3) as usize;
        let offset = rng.below(INDICATORS.len() as u64) as usize;
        for k in 0..n {
            let (id, name, cat, sub) = INDICATORS[(offset + k) % INDICATORS.len()];
            if k > 0 {
                out.push(',');
            }
            out.push_str("{\"indicatorId\":");
            push_str(out, id);
            kv_str(out, "indicatorName", name);
            kv_str(out, "categoryId", cat);
            kv_str(out, "subCategoryId", sub);
            json::key(out, "timestamp");
            push_str(out, &iso_ms(s.begin_ms + 1000 * k as i64));
            out.push('}');
        }
        out.push(']');
        // Scores: one per version, the history of the session's risk.
        json::key(out, "scores");
        out.push('[');
        for k in 0..=v {
            if k > 0 {
                out.push(',');
            }
            let score = s.base + s.step * k;
            out.push_str("{\"score\":");
            json::push_u64(out, score);
            kv_u64(out, "severity", severity_of(score));
            kv_u64(
                out,
                "sourceTimestamp",
                self.last_updated_ms(s.index, k) as u64,
            );
            out.push('}');
        }
        out.push(']');
        // States: the history of the session's state, one per version.
        json::key(out, "states");
        out.push('[');
        for k in 0..=v {
            if k > 0 {
                out.push(',');
            }
            let state = state_of(s.has_alerts, k, self.versions(s.index), s.close_tp);
            out.push_str("{\"state\":");
            push_str(out, state);
            kv_u64(
                out,
                "sourceTimestamp",
                self.last_updated_ms(s.index, k) as u64,
            );
            // The system opens a session and re-opens it on new data; analysts do the rest.
            if !matches!(state, "OPEN" | "OPEN_NEW_DATA") {
                kv_str(
                    out,
                    "userId",
                    ANALYSTS[(s.index as usize + k as usize) % ANALYSTS.len()],
                );
            }
            out.push('}');
        }
        out.push(']');
        json::key(out, "triggeredAlerts");
        out.push('[');
        if s.has_alerts {
            let n = 1 + (s.index % 3);
            for k in 0..n {
                if k > 0 {
                    out.push(',');
                }
                out.push_str("{\"alertId\":");
                push_str(out, &format!("{}-alert-{k}", s.id));
                kv_str(out, "ruleId", RULES[((s.index + k) as usize) % RULES.len()]);
                if k == 0 && s.index % 4 == 0 {
                    kv_str(out, "lessonId", "lesson-data-handling-101");
                }
                out.push('}');
            }
        }
        out.push(']');
        json::key(out, "contentInspectionResults");
        out.push_str("{\"status\":");
        push_str(
            out,
            INSPECTION[(s.index as usize + v as usize) % INSPECTION.len()],
        );
        out.push_str(",\"eventResults\":[]}");
        out.push('}');
    }

    /// The sessions a request at `now` selects, in the requested order (not paged).
    pub(crate) fn select(&self, q: &SessionQuery, now_ns: i64) -> Vec<Session> {
        let start = q.on_or_after.unwrap_or(i64::MIN / NANOS_PER_MILLI);
        let end = q.before.unwrap_or(i64::MAX);
        let range = self.index_range(start, end);
        let k_now = self.timeline.first_after(now_ns);
        let mut out: Vec<Session> = (range.start..range.end.min(k_now).max(range.start))
            .filter_map(|i| self.version_at(i, now_ns).map(|v| self.session(i, v)))
            .filter(|s| s.has_alerts == q.has_alerts)
            .filter(|s| q.actor_id.as_ref().map_or(true, |a| *a == s.actor_id))
            .filter(|s| q.states.is_empty() || q.states.iter().any(|x| x == s.state))
            .filter(|s| q.severities.is_empty() || q.severities.contains(&s.severity))
            .collect();
        // Stable sorts on top of begin order: equal keys stay oldest first.
        if q.by_score {
            out.sort_by_key(|s| s.score);
        } else {
            out.sort_by_key(|s| s.end_ms);
        }
        if q.desc {
            out.reverse();
        }
        out
    }

    /// The body of `GET /v1/sessions/{id}/events`: the file events of a session.
    fn render_events(&self, s: &Session, out: &mut String) -> u64 {
        let n = 1 + s.index % 4 + s.version;
        out.push_str("{\"queryResult\":{\"fileEvents\":[");
        for k in 0..n {
            if k > 0 {
                out.push(',');
            }
            let at = s.begin_ms + 1500 * k as i64;
            out.push_str("{\"@timestamp\":");
            push_str(out, &iso_ms(at));
            out.push_str(",\"event\":{\"id\":");
            push_str(out, &format!("0_{}_{k}", s.id));
            kv_str(out, "action", "file-uploaded");
            out.push_str("},\"file\":{\"name\":");
            push_str(
                out,
                &format!(
                    "Q{}-forecast {}.xlsx",
                    1 + k % 4,
                    HOSTILE[k as usize % HOSTILE.len()]
                ),
            );
            kv_u64(out, "sizeInBytes", 10_000 + 1_000 * k);
            out.push_str("},\"user\":{\"deviceUid\":");
            push_str(out, &format!("dev-{}", s.actor_id));
            out.push_str("},\"risk\":{\"score\":");
            json::push_u64(out, s.score);
            kv_u64(out, "severity", s.severity);
            out.push_str("}}");
        }
        out.push_str("],\"totalCount\":");
        json::push_u64(out, n);
        out.push_str(",\"nextPgToken\":null,\"problems\":null}}");
        n
    }
}

/// The state of a session in version `k` of `versions`.
fn state_of(has_alerts: bool, k: u64, versions: u64, close_tp: bool) -> &'static str {
    let last = k + 1 == versions && versions > 1;
    match (has_alerts, k) {
        (_, 0) => "OPEN",
        (false, _) => "CLOSED",
        (true, _) if last => {
            if close_tp {
                "CLOSED_TP"
            } else {
                "CLOSED_FP"
            }
        }
        (true, 1) => "IN_PROGRESS",
        (true, _) => "OPEN_NEW_DATA",
    }
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ` of epoch milliseconds.
fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn json_text(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    let body = serde_json::json!({"status": 404, "error": "Not Found", "message": what});
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

type St = State<Arc<Emulator>>;

/// The session routes (Bearer only: they exist on the Incydr gateway alone).
pub(crate) fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route(ROUTE_SEARCH, get(search))
        .route(ROUTE_DETAIL, get(detail))
        .route(ROUTE_EVENTS, get(events))
}

async fn search(
    State(st): St,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = st.admit_as(ROUTE_SEARCH, &headers, Auth::BearerOnly) {
        return *r;
    }
    let q = match parse_query(&params) {
        Ok(q) => q,
        Err(e) => return bad_request(&e),
    };
    let all = st.sessions.select(&q, st.clock.now_ns());
    let skip = q.page_number.saturating_mul(q.page_size);
    let page: Vec<&Session> = all
        .iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(q.page_size as usize)
        .collect();
    st.faults.count_records(ROUTE_SEARCH, page.len() as u64);
    let mut out = String::from("{\"items\":[");
    for (k, s) in page.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        st.sessions.render(s, &mut out);
    }
    out.push_str("],\"totalCount\":");
    json::push_u64(&mut out, all.len() as u64);
    out.push('}');
    json_text(out)
}

/// The current version of a visible session, by id.
fn current(st: &Emulator, id: &str) -> Option<Session> {
    let i = st.sessions.index_of(id)?;
    let v = st.sessions.version_at(i, st.clock.now_ns())?;
    Some(st.sessions.session(i, v))
}

async fn detail(State(st): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = st.admit_as(ROUTE_DETAIL, &headers, Auth::BearerOnly) {
        return *r;
    }
    let Some(s) = current(&st, &id) else {
        return not_found(&format!("no session {id}"));
    };
    st.faults.count_records(ROUTE_DETAIL, 1);
    let mut out = String::new();
    st.sessions.render(&s, &mut out);
    json_text(out)
}

async fn events(State(st): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = st.admit_as(ROUTE_EVENTS, &headers, Auth::BearerOnly) {
        return *r;
    }
    let Some(s) = current(&st, &id).filter(|s| s.has_alerts) else {
        return not_found(&format!("no session {id} with alerts"));
    };
    let mut out = String::new();
    let n = st.sessions.render_events(&s, &mut out);
    st.faults.count_records(ROUTE_EVENTS, n);
    json_text(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(update_every_ms: i64) -> Sessions {
        let t = Timeline::new(5, 1_700_000_000_000_000_000, 50, 3_600_000_000_000, 0.0, 0);
        Sessions::new(5, t, "tenant".into(), update_every_ms)
    }

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn versions_move_last_updated_and_end_time_and_are_valid_json() {
        let s = sessions(60_000);
        let mut updated = 0;
        for i in 0..50 {
            let mut prev: Option<Session> = None;
            for v in 0..s.versions(i) {
                let x = s.session(i, v);
                let mut out = String::new();
                s.render(&x, &mut out);
                let json: serde_json::Value = serde_json::from_str(&out).expect("valid json");
                assert_eq!(json["sessionId"], x.id.as_str());
                assert_eq!(json["lastUpdated"], x.last_updated_ms);
                assert_eq!(json["scores"].as_array().unwrap().len() as u64, v + 1);
                assert_eq!(json["states"].as_array().unwrap().len() as u64, v + 1);
                assert_eq!(
                    json["states"][v as usize]["state"], x.state,
                    "the current state is the last of the history"
                );
                if let Some(p) = &prev {
                    assert!(x.last_updated_ms > p.last_updated_ms);
                    assert!(x.end_ms >= p.end_ms);
                    updated += 1;
                }
                prev = Some(x);
            }
            assert_eq!(s.index_of(&s.id_of(i)), Some(i));
        }
        assert!(updated > 20, "sessions are updated: {updated}");
    }

    #[test]
    fn the_visible_version_follows_the_clock() {
        let s = sessions(60_000);
        let i = (0..50).find(|&i| s.versions(i) >= 3).unwrap();
        let first = s.first_observed_ms(i) * NANOS_PER_MILLI;
        assert_eq!(s.version_at(i, first - 1), None);
        assert_eq!(s.version_at(i, first), Some(0));
        assert_eq!(s.version_at(i, first + 60_000 * NANOS_PER_MILLI), Some(1));
        assert_eq!(s.versions_until(i, first + 60_000 * NANOS_PER_MILLI), 0..2);
        assert_eq!(s.version_at(i, i64::MAX / 2), Some(s.versions(i) - 1));
    }

    #[test]
    fn queries_are_parsed_as_documented() {
        let q = parse_query(&params(&[])).unwrap();
        assert!(q.has_alerts && q.desc && !q.by_score);
        assert_eq!((q.page_number, q.page_size), (0, DEFAULT_PAGE_SIZE));
        let q = parse_query(&params(&[
            ("on_or_after", "1000"),
            ("before", "2000"),
            ("order_by", "score"),
            ("sort_direction", "asc"),
            ("page_size", "50"),
            ("state", "OPEN"),
            ("state", "CLOSED_TP"),
            ("has_alerts", "false"),
        ]))
        .unwrap();
        assert_eq!((q.on_or_after, q.before), (Some(1000), Some(2000)));
        assert!(q.by_score && !q.desc && !q.has_alerts);
        assert_eq!(q.states, vec!["OPEN", "CLOSED_TP"]);
        for bad in [
            ("page_size", "51"),
            ("page_size", "0"),
            ("on_or_after", "2024-01-01"),
            ("order_by", "begin_time"),
            ("state", "RESOLVED"),
            ("severity", "5"),
        ] {
            let e = parse_query(&params(&[bad])).unwrap_err();
            assert!(e.contains(bad.0), "{e}");
        }
    }

    #[test]
    fn selection_filters_on_begin_time_and_orders_by_end_time() {
        let s = sessions(1_000);
        let now = i64::MAX / 4;
        let all = s.select(
            &parse_query(&params(&[("sort_direction", "ASC")])).unwrap(),
            now,
        );
        assert!(!all.is_empty());
        assert!(all.windows(2).all(|w| w[0].end_ms <= w[1].end_ms));
        assert!(all.iter().all(|x| x.has_alerts));
        let mid = all[all.len() / 2].begin_ms;
        let q = parse_query(&params(&[("on_or_after", &mid.to_string())])).unwrap();
        let later = s.select(&q, now);
        assert!(later.iter().all(|x| x.begin_ms >= mid));
        assert!(
            later.windows(2).all(|w| w[0].end_ms >= w[1].end_ms),
            "DESC by default"
        );
    }
}
