//! The Sessions data set: the session states c42fwd knows (the Device Event Class ID of
//! a session is its current state), how a session's risk severity becomes a CEF / LEEF
//! severity, and the summary of a session's history a SIEM searches on.
//!
//! Owned here: the table of states (OpenAPI `SessionState`, `docs/api.md`), the severity
//! scale of scores (0 no risk to 4 critical), and [`summarize_session`]'s readers of
//! `states`, `scores`, `riskIndicators` and `triggeredAlerts`: the current state (the
//! newest by `sourceTimestamp`), the latest score, the risk indicator names and the
//! alerts. Deliberately not here: which output key gets what (`crate::encode`), and
//! reshaping the session: the record keeps every key exactly as the API sent it.
//!
//! **Invariant:** total like the rest of `normalize`: any value of these keys (not an
//! array, elements that are not objects, missing or mistyped members) yields `None` or
//! a partial summary, never a panic; every list is bounded by [`MAX_LISTED`].

use serde::Deserialize;
use std::borrow::Cow;

/// One session state (`SessionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    /// As the API spells it; also the Device Event Class ID.
    pub name: &'static str,
    /// The record's name.
    pub display: &'static str,
}

const fn st(name: &'static str, display: &'static str) -> SessionState {
    SessionState { name, display }
}

/// Every state of the OpenAPI `SessionState` enum.
pub const SESSION_STATES: &[SessionState] = &[
    st("OPEN", "Session open"),
    st("IN_PROGRESS", "Session in progress"),
    st("CLOSED", "Session closed"),
    st("CLOSED_TP", "Session closed as a true positive"),
    st("CLOSED_FP", "Session closed as a false positive"),
    st("OPEN_NEW_DATA", "Session reopened with new data"),
];

/// Class id of a session without a readable state.
pub const SESSION_CLASS_ID: &str = "session";
/// Name of a session without a readable state.
pub const SESSION_NAME: &str = "Session";
/// The category of every session.
pub const SESSION_CATEGORY: &str = "sessions";
/// Severity of a session without a readable score: a session groups risky activity,
/// so the middle of the scale.
pub const SESSION_DEFAULT_SEVERITY: u8 = 5;
/// The most names kept in each list of the summary.
pub const MAX_LISTED: usize = 10;

/// A score's `severity` (0 no risk, 1 low, 2 moderate, 3 high, 4 critical) in CEF 0-10,
/// where CEF puts "Low", "Medium", "High" and "Very-High".
pub const SESSION_SEVERITIES: &[(i64, &str, u8)] = &[
    (0, "no risk", 1),
    (1, "low", 3),
    (2, "moderate", 5),
    (3, "high", 8),
    (4, "critical", 10),
];

/// The state's row, by the API's name.
pub fn session_state(name: &str) -> Option<&'static SessionState> {
    SESSION_STATES.iter().find(|s| s.name == name)
}

/// The CEF severity of a score's `severity`; `None` outside 0-4.
pub fn session_severity(risk: i64) -> Option<u8> {
    SESSION_SEVERITIES
        .iter()
        .find(|(v, _, _)| *v == risk)
        .map(|(_, _, s)| *s)
}

/// What a session's arrays add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSummary<'a> {
    /// The newest state of `states` (by `sourceTimestamp`; the later one on a tie).
    pub state: Option<Cow<'a, str>>,
    /// The newest score of `scores` and its `severity` (0-4).
    pub score: Option<i64>,
    pub risk_severity: Option<i64>,
    /// The first [`MAX_LISTED`] distinct `riskIndicators[].indicatorName`.
    pub indicators: Vec<Cow<'a, str>>,
    /// The first [`MAX_LISTED`] distinct `triggeredAlerts[].ruleId`.
    pub rule_ids: Vec<Cow<'a, str>>,
    /// The first [`MAX_LISTED`] `triggeredAlerts[].alertId`.
    pub alert_ids: Vec<Cow<'a, str>>,
    /// How many `triggeredAlerts` (when it is an array).
    pub alert_count: Option<u64>,
}

#[derive(Deserialize)]
struct Timed<'a> {
    #[serde(borrow, default)]
    state: Option<Cow<'a, str>>,
    #[serde(default)]
    score: Option<serde_json::Value>,
    #[serde(default)]
    severity: Option<serde_json::Value>,
    #[serde(rename = "sourceTimestamp", default)]
    at: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Indicator<'a> {
    #[serde(rename = "indicatorName", borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Alert<'a> {
    #[serde(rename = "alertId", borrow, default)]
    alert_id: Option<Cow<'a, str>>,
    #[serde(rename = "ruleId", borrow, default)]
    rule_id: Option<Cow<'a, str>>,
}

/// The elements of a JSON array that read as `T` (the others are skipped); `None` when
/// the value is not an array.
fn elements<'a, T: Deserialize<'a>>(raw: &'a str) -> Option<Vec<T>> {
    let items: Vec<&'a serde_json::value::RawValue> = serde_json::from_str(raw).ok()?;
    Some(
        items
            .into_iter()
            .filter_map(|v| serde_json::from_str(v.get()).ok())
            .collect(),
    )
}

/// The newest element of a `states` or `scores` array.
fn newest<'a>(raw: &'a str) -> Option<Timed<'a>> {
    let mut best: Option<(i64, Timed<'a>)> = None;
    for t in elements::<Timed<'a>>(raw)? {
        let at =
            t.at.as_ref()
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(i64::MIN);
        if best.as_ref().map_or(true, |(b, _)| at >= *b) {
            best = Some((at, t));
        }
    }
    best.map(|(_, t)| t)
}

fn push_distinct<'a>(list: &mut Vec<Cow<'a, str>>, v: Option<Cow<'a, str>>) {
    if let Some(v) = v.filter(|v| !v.is_empty()) {
        if list.len() < MAX_LISTED && !list.contains(&v) {
            list.push(v);
        }
    }
}

impl<'a> SessionSummary<'a> {
    /// Reads `states` (its JSON text as received).
    pub fn read_states(&mut self, raw: &'a str) {
        self.state = newest(raw).and_then(|t| t.state).filter(|s| !s.is_empty());
    }

    /// Reads `scores`.
    pub fn read_scores(&mut self, raw: &'a str) {
        if let Some(t) = newest(raw) {
            self.score = t.score.as_ref().and_then(serde_json::Value::as_i64);
            self.risk_severity = t.severity.as_ref().and_then(serde_json::Value::as_i64);
        }
    }

    /// Reads `riskIndicators`.
    pub fn read_indicators(&mut self, raw: &'a str) {
        for i in elements::<Indicator<'a>>(raw).unwrap_or_default() {
            push_distinct(&mut self.indicators, i.name);
        }
    }

    /// Reads `triggeredAlerts`.
    pub fn read_alerts(&mut self, raw: &'a str) {
        let Some(alerts) = elements::<Alert<'a>>(raw) else {
            return;
        };
        self.alert_count = Some(alerts.len() as u64);
        for a in alerts {
            push_distinct(&mut self.rule_ids, a.rule_id);
            if self.alert_ids.len() < MAX_LISTED {
                if let Some(id) = a.alert_id.filter(|s| !s.is_empty()) {
                    self.alert_ids.push(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_state_and_score_win_and_lists_are_bounded() {
        let mut s = SessionSummary::default();
        s.read_states(
            r#"[{"state":"OPEN","sourceTimestamp":1},{"state":"CLOSED_TP","sourceTimestamp":3},{"state":"IN_PROGRESS","sourceTimestamp":2}]"#,
        );
        assert_eq!(s.state.as_deref(), Some("CLOSED_TP"));
        s.read_scores(r#"[{"score":3,"severity":1,"sourceTimestamp":1},{"score":9,"severity":4,"sourceTimestamp":2}]"#);
        assert_eq!((s.score, s.risk_severity), (Some(9), Some(4)));
        let many: Vec<String> = (0..30)
            .map(|i| format!(r#"{{"alertId":"a{i}","ruleId":"r{}"}}"#, i % 12))
            .collect();
        let alerts = format!("[{}]", many.join(","));
        s.read_alerts(&alerts);
        assert_eq!(s.alert_count, Some(30));
        assert_eq!(s.alert_ids.len(), MAX_LISTED);
        assert_eq!(s.rule_ids.len(), MAX_LISTED);
        s.read_indicators(
            r#"[{"indicatorName":"a \"q\" \\ b"},{"indicatorName":"a \"q\" \\ b"},{"x":1},7]"#,
        );
        assert_eq!(s.indicators, vec![Cow::Borrowed("a \"q\" \\ b")]);
    }

    #[test]
    fn anything_else_reads_as_nothing() {
        for raw in ["null", "{}", "\"x\"", "[1,2]", "[{\"state\":7}]", "[", ""] {
            let mut s = SessionSummary::default();
            s.read_states(raw);
            s.read_scores(raw);
            s.read_indicators(raw);
            s.read_alerts(raw);
            assert_eq!(s.state, None, "{raw}");
            assert_eq!(s.score, None, "{raw}");
        }
        assert_eq!(session_severity(5), None);
        assert_eq!(session_severity(4), Some(10));
    }
}
