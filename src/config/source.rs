//! Validation of one `[sources.NAME]` table: the keys every source has (tenant, lag,
//! poll interval, start, page size, reconciliation) and the filters of its kind. It
//! produces a [`Source`]; that its tenant exists is checked against the tenants already
//! validated, and routes are `validate`'s.

use super::check::*;
use super::raw::{RawAlerts, RawAuditLog, RawSessions, RawSource, RawSourceKind, RawSyncLog};
use super::*;

/// Code42 keeps events for 90 days; a start position further back reads nothing.
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// The API's largest page for `search-audit-log`.
pub const MAX_PAGE_SIZE: i64 = 10_000;

/// The largest page of `query-alerts`.
pub const MAX_ALERT_PAGE_SIZE: i64 = 500;

/// The largest page of `GET /v1/sessions` (`docs/api.md`, Sessions).
pub const MAX_SESSION_PAGE_SIZE: i64 = 50;

/// A sessions source's `lag` is its update window (`docs/api.md`, Sessions): how long
/// after a session began its updates are still seen. A day by default, 1 minute to 30
/// days (`check::SESSION_LAG`).
pub const SESSION_LAG_DEFAULT: Duration = Duration::from_secs(24 * 3600);

/// Alert filter terms as the API spells them (`docs/api.md`, alerts, and the alert
/// summary fields). Config accepts any case and the console's names (`AlertState`,
/// `DateObserved`, `AlertId`).
pub const ALERT_TERMS: &[&str] = &[
    "Id",
    "Name",
    "Description",
    "Actor",
    "ActorId",
    "Target",
    "Severity",
    "RiskSeverity",
    "RuleId",
    "RuleName",
    "RuleSource",
    "State",
    "Type",
    "CreatedAt",
];

fn alert_term(t: &str) -> Option<&'static str> {
    let lower = t.to_ascii_lowercase();
    let alias = match lower.as_str() {
        "alertstate" => "state",
        "dateobserved" => "createdat",
        "alertid" => "id",
        other => other,
    };
    ALERT_TERMS
        .iter()
        .copied()
        .find(|x| x.eq_ignore_ascii_case(alias))
}

/// Parses a start position: a duration back from now (`"30d"`) or an RFC 3339 time.
pub fn parse_start(value: &str, now: DateTime<Utc>) -> Result<StartAt, String> {
    if let Ok(d) = humantime::parse_duration(value) {
        if d > RETENTION {
            return Err(format!(
                "`{value}` is more than 90 days back; Code42 keeps events for 90 days"
            ));
        }
        return Ok(StartAt::Ago(d));
    }
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            if t > now {
                return Err(format!("`{value}` is in the future"));
            }
            let oldest = now - chrono::Duration::from_std(RETENTION).unwrap_or_default();
            if t < oldest {
                return Err(format!(
                    "`{value}` is more than 90 days back; Code42 keeps events for 90 days"
                ));
            }
            Ok(StartAt::At(t))
        }
        Err(_) => Err(format!(
            "`{value}` is neither a duration such as \"30d\" nor an RFC 3339 time such as \"2026-01-31T00:00:00Z\""
        )),
    }
}

pub(super) fn source(
    name: &str,
    s: RawSource,
    has_tenant: &dyn Fn(&str) -> bool,
    now: DateTime<Utc>,
    p: &mut Problems,
) -> Option<Source> {
    let at = |k: &str| format!("sources.{name}.{k}");
    let before = p.0.len();
    // query-alerts pages at most 500 alerts; the other endpoints 10,000 records.
    let (kind, default_page, max_page) = match s.kind {
        RawSourceKind::AuditLog(a) => (audit_log(name, a, p), 1000, MAX_PAGE_SIZE),
        RawSourceKind::Alerts(a) => (alerts(name, a, p), 100, MAX_ALERT_PAGE_SIZE),
        RawSourceKind::SyncLog(RawSyncLog {}) => (SourceSpec::SyncLog, 1000, MAX_PAGE_SIZE),
        RawSourceKind::Sessions(RawSessions {
            has_alerts,
            include_events,
        }) => (
            SourceSpec::Sessions(SessionOptions {
                has_alerts: has_alerts.unwrap_or(true),
                include_events: include_events.unwrap_or(false),
            }),
            MAX_SESSION_PAGE_SIZE,
            MAX_SESSION_PAGE_SIZE,
        ),
        RawSourceKind::FileEvents(f) => (
            SourceSpec::FileEvents(super::file_events::file_event_filters(
                name,
                f.filters,
                f.filter_groups,
                p,
            )),
            1000,
            MAX_PAGE_SIZE,
        ),
    };
    let sessions = matches!(kind, SourceSpec::Sessions(_));
    let s = s.shared;
    if !has_tenant(&s.tenant) {
        let failed =
            p.0.iter()
                .any(|x| x.path.starts_with(&format!("tenants.{}.", s.tenant)));
        if !failed {
            p.add(at("tenant"), format!("no tenant named `{}`", s.tenant));
        }
    }
    let (lag, lag_bounds) = if sessions {
        (s.lag.unwrap_or(SESSION_LAG_DEFAULT), SESSION_LAG)
    } else {
        (s.lag.unwrap_or(Duration::from_secs(300)), LAG)
    };
    p.duration(at("lag"), lag, lag_bounds);
    if sessions && (s.reconcile == Some(true) || s.reconcile_after.is_some()) {
        let key = if s.reconcile_after.is_some() {
            "reconcile_after"
        } else {
            "reconcile"
        };
        p.add(
            at(key),
            "does not apply to sessions: each poll reads the whole update window (`lag`) again",
        );
    }
    let poll_interval = s.poll_interval.unwrap_or(Duration::from_secs(30));
    p.duration(at("poll_interval"), poll_interval, POLL_INTERVAL);
    let reconcile_after = s.reconcile_after.unwrap_or(DEFAULT_RECONCILE_AFTER);
    p.duration(at("reconcile_after"), reconcile_after, RECONCILE_AFTER);
    if s.reconcile == Some(false) && s.reconcile_after.is_some() {
        p.add(
            at("reconcile_after"),
            "has no effect with reconcile = false",
        );
    }
    let start = match parse_start(s.start.as_deref().unwrap_or("24h"), now) {
        Ok(v) => Some(v),
        Err(m) => {
            p.add(at("start"), m);
            None
        }
    };
    let page_size = s.page_size.unwrap_or(default_page);
    if !(1..=max_page).contains(&page_size) {
        p.add(
            at("page_size"),
            format!("{page_size} is out of range: the API pages 1 to {max_page} records"),
        );
    }
    if p.0.len() != before {
        return None;
    }
    Some(Source {
        name: name.to_string(),
        tenant: s.tenant,
        kind,
        lag,
        poll_interval,
        start: start?,
        page_size: page_size as u32,
        reconcile_after: (s.reconcile != Some(false) && !sessions).then_some(reconcile_after),
    })
}

/// An `audit_log` source: its filters' event and user types are checked.
fn audit_log(name: &str, a: RawAuditLog, p: &mut Problems) -> SourceSpec {
    let f = a.filters.unwrap_or_default();
    for (i, t) in f.event_types.iter().enumerate() {
        if !t
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            || t.is_empty()
        {
            p.add(
                format!("sources.{name}.filters.event_types[{i}]"),
                format!("`{t}` is not an event type name such as \"logged_in\""),
            );
        }
    }
    for (i, t) in f.user_types.iter().enumerate() {
        if !["USER", "SUPPORT_USER", "API_CLIENT", "SYSTEM", "UNKNOWN"].contains(&t.as_str()) {
            p.add(
                format!("sources.{name}.filters.user_types[{i}]"),
                format!("`{t}` is not one of USER, SUPPORT_USER, API_CLIENT, SYSTEM, UNKNOWN"),
            );
        }
    }
    SourceSpec::AuditLog(AuditFilters {
        event_types: f.event_types,
        actor_ids: f.actor_ids,
        actor_names: f.actor_names,
        actor_ip_addresses: f.actor_ip_addresses,
        user_types: f.user_types,
        affected_user_ids: f.affected_user_ids,
        affected_user_names: f.affected_user_names,
    })
}

/// An `alerts` source: every filter group's clause, terms and operators are checked.
fn alerts(name: &str, a: RawAlerts, p: &mut Problems) -> SourceSpec {
    let mut groups = Vec::new();
    for (g, raw) in a.filter_groups.iter().flatten().enumerate() {
        let gat = format!("sources.{name}.filter_groups[{g}]");
        let clause = filter_group(&gat, raw.clause.as_deref(), raw.filters.len(), p);
        let mut filters = Vec::new();
        for (i, f) in raw.filters.iter().enumerate() {
            let fat = format!("{gat}.filters[{i}]");
            let Some(term) = alert_term(&f.term) else {
                p.add(
                    format!("{fat}.term"),
                    format!(
                        "`{}` is not an alert filter term: use one of {}",
                        f.term,
                        ALERT_TERMS.join(", ")
                    ),
                );
                continue;
            };
            let Some(operator) = AlertOperator::parse(&f.operator) else {
                p.add(
                    format!("{fat}.operator"),
                    format!(
                        "`{}` is not an operator: use IS, IS_NOT, CONTAINS, DOES_NOT_CONTAIN, ON, ON_OR_AFTER or ON_OR_BEFORE",
                        f.operator
                    ),
                );
                continue;
            };
            let date_term = term == "CreatedAt";
            let date_op = matches!(
                operator,
                AlertOperator::On | AlertOperator::OnOrAfter | AlertOperator::OnOrBefore
            );
            if date_term != date_op {
                p.add(
                    format!("{fat}.operator"),
                    format!(
                        "{} does not apply to {term}: dates take ON, ON_OR_AFTER, ON_OR_BEFORE; other terms IS, IS_NOT, CONTAINS, DOES_NOT_CONTAIN",
                        operator.as_str()
                    ),
                );
                continue;
            }
            filters.push(AlertFilter {
                term: term.to_string(),
                operator,
                value: f.value.clone(),
            });
        }
        groups.push(AlertFilterGroup { clause, filters });
    }
    SourceSpec::Alerts(groups)
}

/// How long past `lag` a closed window waits before it is compared with the API's count.
pub const DEFAULT_RECONCILE_AFTER: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn reconciliation_is_on_by_default_tunable_and_can_be_turned_off() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(
            c.sources["audit"].reconcile_after,
            Some(DEFAULT_RECONCILE_AFTER)
        );
        let with = |keys: &str| {
            MINIMAL.replace(
                "type = \"audit_log\"",
                &format!("type = \"audit_log\"\n{keys}"),
            )
        };
        let c = parse_str(&with("reconcile_after = \"30m\"")).unwrap();
        assert_eq!(
            c.sources["audit"].reconcile_after,
            Some(Duration::from_secs(1800))
        );
        let c = parse_str(&with("reconcile = false")).unwrap();
        assert_eq!(c.sources["audit"].reconcile_after, None);
        for (keys, want) in [
            (
                "reconcile_after = \"0s\"",
                "sources.audit.reconcile_after: `0s` is out of range 1s to 24h",
            ),
            (
                "reconcile_after = \"2d\"",
                "sources.audit.reconcile_after: `48h` is out of range 1s to 24h",
            ),
            (
                "reconcile = false\nreconcile_after = \"1m\"",
                "sources.audit.reconcile_after: has no effect with reconcile = false",
            ),
        ] {
            let p = problems(&with(keys));
            assert_eq!(p, vec![want.to_string()], "{keys}");
        }
    }

    #[test]
    fn the_overflowing_poll_interval_of_the_issue_is_refused() {
        let text = set(
            MINIMAL,
            "type = \"audit_log\"",
            "poll_interval",
            "18446744073709551615s",
        );
        assert_eq!(
            problems(&text),
            vec![
                "sources.audit.poll_interval: `18446744073709551615s` is out of range 100ms to 24h"
            ]
        );
    }

    #[test]
    fn start_position_is_limited_to_retention() {
        let now = Utc::now();
        assert!(parse_start("91d", now).unwrap_err().contains("90 days"));
        assert_eq!(
            parse_start("30d", now).unwrap(),
            StartAt::Ago(Duration::from_secs(30 * 86400))
        );
        assert!(parse_start("2001-01-01T00:00:00Z", now).is_err());
        assert!(parse_start("yesterday", now)
            .unwrap_err()
            .contains("RFC 3339"));
        let t = (now - chrono::Duration::days(1)).to_rfc3339();
        assert!(matches!(parse_start(&t, now).unwrap(), StartAt::At(_)));
    }

    #[test]
    fn alert_filter_groups_and_sync_log() {
        let text = MINIMAL
            .replace(
                "[sinks.siem]",
                r#"[sources.alerts]
type = "alerts"
tenant = "acme"
[[sources.alerts.filter_groups]]
clause = "or"
filters = [
  { term = "severity", operator = "IS", value = "HIGH" },
  { term = "AlertState", operator = "is_not", value = "RESOLVED" },
]
[sources.sync]
type = "sync_log"
tenant = "acme"

[sinks.siem]"#,
            )
            .replace(
                "sources = [\"audit\"]",
                "sources = [\"audit\", \"alerts\", \"sync\"]",
            );
        let c = parse_str(&text).unwrap();
        match &c.sources["alerts"].kind {
            SourceSpec::Alerts(groups) => {
                assert_eq!(groups.len(), 1);
                assert_eq!(groups[0].clause, FilterClause::Or);
                assert_eq!(groups[0].filters[0].term, "Severity");
                assert_eq!(groups[0].filters[1].term, "State");
                assert_eq!(groups[0].filters[1].operator, AlertOperator::IsNot);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.sources["alerts"].page_size, 100);
        assert!(matches!(c.sources["sync"].kind, SourceSpec::SyncLog));

        let bad = text.replace("value = \"HIGH\"", "value = \"HIGH\", extra = 1");
        assert!(
            problems(&bad)[0].contains("unknown field"),
            "{:?}",
            problems(&bad)
        );
        let bad = text.replace("operator = \"IS\"", "operator = \"ON_OR_AFTER\"");
        let p = problems(&bad);
        assert!(
            p[0].starts_with("sources.alerts.filter_groups[0].filters[0].operator: ON_OR_AFTER does not apply to Severity"),
            "{p:?}"
        );
        let bad = text.replace("term = \"severity\"", "term = \"colour\"");
        assert!(problems(&bad)[0].starts_with(
            "sources.alerts.filter_groups[0].filters[0].term: `colour` is not an alert filter term"
        ));
        let bad = text.replace(
            "type = \"sync_log\"\ntenant = \"acme\"",
            "type = \"sync_log\"\ntenant = \"acme\"\n[sources.sync.filters]",
        );
        let line = bad
            .lines()
            .position(|l| l == "[sources.sync.filters]")
            .unwrap()
            + 1;
        assert_eq!(
            problems(&bad),
            vec![format!(
                "sources.sync.filters: line {line}: `filters` does not apply to a sync_log source \
                 (only audit_log and file_events sources take it); a sync_log source takes `type`, `tenant`, \
                 `lag`, `poll_interval`, `start`, `page_size`, `reconcile`, `reconcile_after`"
            )]
        );
        let bad = text.replace("type = \"alerts\"", "type = \"alerts\"\npage_size = 501");
        assert!(problems(&bad).contains(
            &"sources.alerts.page_size: 501 is out of range: the API pages 1 to 500 records"
                .to_string()
        ));
    }

    #[test]
    fn sessions_take_their_update_window_page_size_and_options() {
        let with = |keys: &str| {
            MINIMAL.replace(
                "type = \"audit_log\"",
                &format!("type = \"sessions\"\n{keys}"),
            )
        };
        let c = parse_str(&with("")).unwrap();
        let s = &c.sources["audit"];
        assert_eq!(
            s.kind,
            SourceSpec::Sessions(SessionOptions {
                has_alerts: true,
                include_events: false,
            })
        );
        assert_eq!(s.lag, SESSION_LAG_DEFAULT);
        assert_eq!(s.page_size, 50);
        assert_eq!(s.reconcile_after, None, "no reconciliation for sessions");
        let c = parse_str(&with(
            "has_alerts = false\ninclude_events = true\nlag = \"7d\"\npage_size = 10",
        ))
        .unwrap();
        let s = &c.sources["audit"];
        assert_eq!(
            s.kind,
            SourceSpec::Sessions(SessionOptions {
                has_alerts: false,
                include_events: true,
            })
        );
        assert_eq!((s.lag, s.page_size), (Duration::from_secs(7 * 86400), 10));
        for (keys, want) in [
            (
                "page_size = 51",
                "sources.audit.page_size: 51 is out of range: the API pages 1 to 50 records",
            ),
            (
                "lag = \"31d\"",
                "sources.audit.lag: `744h` is out of range 1m to 720h",
            ),
            (
                "reconcile = true",
                "sources.audit.reconcile: does not apply to sessions: each poll reads the whole update window (`lag`) again",
            ),
            (
                "reconcile_after = \"5m\"",
                "sources.audit.reconcile_after: does not apply to sessions: each poll reads the whole update window (`lag`) again",
            ),
        ] {
            assert_eq!(problems(&with(keys)), vec![want.to_string()], "{keys}");
        }
        // A key of another kind is refused by the sessions table.
        assert!(problems(&with("filter_groups = []"))[0].contains("filter_groups"));
    }
}
