//! The filter language of the alert service: `query-alerts` and
//! `rules/query-rule-metadata` bodies, and which records they select.
//!
//! Owns parsing a search body (`tenantId`, `groupClause`, `groups[].filterClause`,
//! `groups[].filters[].{term, operator, value}`, `pgNum`, `pgSize`, `srtKey`,
//! `srtDirection`) into a [`Search`], evaluating it against any record that exposes its
//! fields by term ([`Record`]), and the conservative `createdAt` interval a search
//! implies (so a query over a large backlog scans only the alerts that can match).
//! It does not know what an alert contains (`alerts`) nor speak HTTP (`alert_routes`).
//!
//! Behaviour (the real service is ASP.NET; these follow its model binding and Code42's
//! examples, `docs/api.md`):
//! - Body keys match case-insensitively (`TenantId` = `tenantId`); `pgNum` / `pgSize`
//!   may be numbers or numeric strings (Code42's example sends `"pgSize": "20"`).
//! - Terms match case-insensitively and ignore `_`: `CreatedAt`, `createdAt`, and the
//!   console's names `DateObserved`, `AlertState`, `AlertId`, `RuleName`, `RuleType`.
//! - Schema errors answer 400 (the `Err` of [`parse_search`]): missing `tenantId`,
//!   `groupClause`, `pgNum`, `pgSize` or `srtKey`, `pgSize` over 500, an unknown term,
//!   operator or sort key. Semantic errors (an operator the term does not take, a
//!   value that is no date / no known state) answer 200 with no results and a
//!   `problems` entry (`IllegalOperator`, `IllegalValue`, `MissingFilters`).
//! - `IS` / `IS_NOT` compare case-insensitively; `CONTAINS` / `DOES_NOT_CONTAIN` are
//!   case-insensitive substring tests. A null field is "not equal" and "does not
//!   contain" anything.
//! - Dates take ISO-8601 (`Z`, an offset, or none for UTC) or `YYYY-MM-DD`. With a
//!   timestamp: `ON_OR_AFTER` >=, `ON_OR_BEFORE` <=, `GREATER_THAN` >, `LESS_THAN` <,
//!   `ON` the same UTC day. With a bare date the day is the unit: `ON_OR_BEFORE
//!   2024-03-01` includes all of that day.
//! - `groupClause` joins groups, `filterClause` joins filters of a group; no groups
//!   selects everything; a group without filters is the `MissingFilters` problem.
//! - Sorting is stable: equal keys keep creation order. Missing `srtDirection` = DESC.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::Value;
use std::borrow::Cow;

/// The largest page `query-alerts` serves.
pub(crate) const MAX_PAGE_SIZE: u64 = 500;

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// What kind of values a term holds, which decides the operators it takes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Text,
    /// A closed set of values; `IS` / `IS_NOT` only; values are checked.
    Enum(&'static [&'static str]),
    Date,
    Bool,
}

/// One searchable term: its accepted names (lowercase, no `_`), its id, its kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TermDef {
    pub(crate) names: &'static [&'static str],
    pub(crate) id: u8,
    pub(crate) kind: Kind,
}

/// A field of a record, as a filter sees it.
#[derive(Debug)]
pub(crate) enum Field<'a> {
    Text(Option<Cow<'a, str>>),
    /// Several values (watchlist names): `IS` / `CONTAINS` hold when one value does,
    /// `IS_NOT` / `DOES_NOT_CONTAIN` when none does.
    List(Vec<Cow<'a, str>>),
    Date(Option<i64>),
    Bool(bool),
}

/// An owned sort key: nulls first, text compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SortKey {
    Text(Option<String>),
    Date(Option<i64>),
    Bool(bool),
}

impl From<Field<'_>> for SortKey {
    fn from(f: Field<'_>) -> Self {
        match f {
            Field::Text(t) => SortKey::Text(t.map(|s| s.to_lowercase())),
            Field::List(v) => SortKey::Text((!v.is_empty()).then(|| v.join("\n").to_lowercase())),
            Field::Date(d) => SortKey::Date(d),
            Field::Bool(b) => SortKey::Bool(b),
        }
    }
}

/// A record a search can be evaluated against.
pub(crate) trait Record {
    fn field(&self, term: u8) -> Field<'_>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Is,
    IsNot,
    Contains,
    DoesNotContain,
    OnOrAfter,
    OnOrBefore,
    On,
    LessThan,
    GreaterThan,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "IS" => Op::Is,
            "IS_NOT" => Op::IsNot,
            "CONTAINS" => Op::Contains,
            "DOES_NOT_CONTAIN" => Op::DoesNotContain,
            "ON_OR_AFTER" => Op::OnOrAfter,
            "ON_OR_BEFORE" => Op::OnOrBefore,
            "ON" => Op::On,
            "LESS_THAN" => Op::LessThan,
            "GREATER_THAN" => Op::GreaterThan,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    /// Lowercased needle.
    Text {
        op: Op,
        needle: String,
    },
    /// Canonical value; `negate` for IS_NOT.
    Enum {
        value: &'static str,
        negate: bool,
    },
    /// Accepts dates in `[lo, hi)`.
    Date {
        lo: i64,
        hi: i64,
    },
    Bool {
        value: bool,
        negate: bool,
    },
}

#[derive(Debug, Clone)]
struct Filter {
    term: u8,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
struct Group {
    any: bool,
    filters: Vec<Filter>,
}

/// A parsed search.
#[derive(Debug, Clone)]
pub(crate) struct Search {
    pub(crate) tenant_id: String,
    any: bool,
    groups: Vec<Group>,
    pub(crate) page: u64,
    pub(crate) page_size: u64,
    pub(crate) sort_term: u8,
    pub(crate) sort_desc: bool,
    /// `problems` entries (JSON text); when there are any the search selects nothing.
    pub(crate) problems: Vec<String>,
}

/// Looks up a key case-insensitively (ASP.NET model binding).
pub(crate) fn body_key<'v>(
    obj: &'v serde_json::Map<String, Value>,
    name: &str,
) -> Option<&'v Value> {
    get(obj, name)
}

fn get<'v>(obj: &'v serde_json::Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A number or a numeric string.
fn integer(v: Option<&Value>, name: &str) -> Result<Option<i64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{name} must be an integer, got {n}")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} must be an integer, got {s:?}")),
        Some(other) => Err(format!("{name} must be an integer, got {other}")),
    }
}

fn clause(v: Option<&Value>, name: &str) -> Result<bool, String> {
    match v
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_uppercase())
    {
        Some(s) if s == "AND" => Ok(false),
        Some(s) if s == "OR" => Ok(true),
        Some(s) => Err(format!("{name} must be AND or OR, got {s:?}")),
        None => Err(format!("{name} is required (AND or OR)")),
    }
}

/// The text of a filter value: strings as they are, booleans and numbers as written.
fn value_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `CreatedAt`, `created_at` and `CREATEDAT` all name the same term.
fn term_key(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| *c != '_' && *c != ' ')
        .flat_map(char::to_lowercase)
        .collect()
}

pub(crate) fn find_term(terms: &[TermDef], name: &str) -> Option<TermDef> {
    let k = term_key(name);
    terms
        .iter()
        .copied()
        .find(|t| t.names.contains(&k.as_str()))
}

fn problem(kind: &str, bad: &str) -> String {
    let mut s = String::from("{\"type$\":\"QUERY_PROBLEM\"");
    super::json::kv_str(&mut s, "badFilter", bad);
    super::json::kv_str(&mut s, "type", kind);
    s.push('}');
    s
}

/// A date value: `(instant, whole_day)`. A bare `YYYY-MM-DD` is its midnight (UTC) and
/// makes the day the unit of comparison.
pub(crate) fn parse_date(s: &str) -> Option<(i64, bool)> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)?
            .and_utc()
            .timestamp_nanos_opt()
            .map(|t| (t, true));
    }
    let dt = DateTime::parse_from_rfc3339(s)
        .map(|d| d.naive_utc())
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()?;
    dt.and_utc().timestamp_nanos_opt().map(|t| (t, false))
}

/// The accepted half-open interval of a date filter.
fn date_interval(op: Op, t: i64, whole_day: bool) -> Option<(i64, i64)> {
    let day = t - t.rem_euclid(DAY_NS);
    let next_day = day.saturating_add(DAY_NS);
    Some(match (op, whole_day) {
        (Op::On, _) => (day, next_day),
        (Op::OnOrAfter, _) => (t, i64::MAX),
        (Op::OnOrBefore, true) => (i64::MIN, next_day),
        (Op::OnOrBefore, false) => (i64::MIN, t.saturating_add(1)),
        (Op::GreaterThan, true) => (next_day, i64::MAX),
        (Op::GreaterThan, false) => (t.saturating_add(1), i64::MAX),
        (Op::LessThan, _) => (i64::MIN, t),
        _ => return None,
    })
}

/// Parses a search body against a term table; `Err` is the 400 message.
pub(crate) fn parse_search(body: &[u8], terms: &[TermDef]) -> Result<Search, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid search body: {e}"))?;
    let Value::Object(obj) = v else {
        return Err("invalid search body: expected a JSON object".into());
    };
    let tenant_id = match get(&obj, "tenantId") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => return Err("tenantId is required".into()),
    };
    let any = clause(get(&obj, "groupClause"), "groupClause")?;
    let page = integer(get(&obj, "pgNum"), "pgNum")?.ok_or("pgNum is required (0-based)")?;
    if page < 0 {
        return Err(format!("pgNum must not be negative, got {page}"));
    }
    let page_size = integer(get(&obj, "pgSize"), "pgSize")?.ok_or("pgSize is required")?;
    if !(0..=MAX_PAGE_SIZE as i64).contains(&page_size) {
        return Err(format!(
            "pgSize must be between 0 and {MAX_PAGE_SIZE}, got {page_size}"
        ));
    }
    let sort_name = get(&obj, "srtKey")
        .and_then(Value::as_str)
        .ok_or("srtKey is required")?;
    let sort =
        find_term(terms, sort_name).ok_or_else(|| format!("unknown srtKey {sort_name:?}"))?;
    let sort_desc = match get(&obj, "srtDirection").and_then(Value::as_str) {
        None => true,
        Some(d) if d.eq_ignore_ascii_case("desc") => true,
        Some(d) if d.eq_ignore_ascii_case("asc") => false,
        Some(d) => return Err(format!("srtDirection must be ASC or DESC, got {d:?}")),
    };
    let mut problems = Vec::new();
    let mut groups = Vec::new();
    let raw_groups = match get(&obj, "groups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err("groups must be an array".into()),
    };
    for (gi, g) in raw_groups.iter().enumerate() {
        let Value::Object(g) = g else {
            return Err(format!("groups[{gi}] must be an object"));
        };
        let group_any = clause(
            get(g, "filterClause"),
            &format!("groups[{gi}].filterClause"),
        )?;
        let raw_filters = match get(g, "filters") {
            Some(Value::Array(a)) => a.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => return Err(format!("groups[{gi}].filters must be an array")),
        };
        if raw_filters.is_empty() {
            problems.push(problem("MissingFilters", &format!("groups[{gi}]")));
        }
        let mut filters = Vec::new();
        for (fi, f) in raw_filters.iter().enumerate() {
            let at = format!("groups[{gi}].filters[{fi}]");
            let Value::Object(f) = f else {
                return Err(format!("{at} must be an object"));
            };
            let term_name = get(f, "term")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at}.term is required"))?;
            let term = find_term(terms, term_name)
                .ok_or_else(|| format!("unknown term {term_name:?} in {at}"))?;
            let op_name = get(f, "operator")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at}.operator is required"))?;
            let op = Op::parse(op_name)
                .ok_or_else(|| format!("unknown operator {op_name:?} in {at}"))?;
            let value = value_text(get(f, "value"));
            let bad = format!(
                "{term_name} {op_name} {}",
                value.as_deref().unwrap_or("null")
            );
            let Some(value) = value else {
                problems.push(problem("MissingValue", &bad));
                continue;
            };
            let matcher = match (term.kind, op) {
                (Kind::Text, Op::Is | Op::IsNot | Op::Contains | Op::DoesNotContain) => {
                    Some(Matcher::Text {
                        op,
                        needle: value.to_lowercase(),
                    })
                }
                (Kind::Enum(values), Op::Is | Op::IsNot) => {
                    // States have aliases (`Dismissed`); other enums match by name.
                    let canon = if values.contains(&"OPEN") {
                        super::alerts::canonical_state(&value)
                    } else {
                        let up = value.trim().to_ascii_uppercase();
                        values.iter().copied().find(|v| *v == up)
                    };
                    match canon {
                        Some(value) => Some(Matcher::Enum {
                            value,
                            negate: op == Op::IsNot,
                        }),
                        None => {
                            problems.push(problem("IllegalValue", &bad));
                            continue;
                        }
                    }
                }
                (
                    Kind::Date,
                    Op::On | Op::OnOrAfter | Op::OnOrBefore | Op::LessThan | Op::GreaterThan,
                ) => match parse_date(&value).and_then(|(t, day)| date_interval(op, t, day)) {
                    Some((lo, hi)) => Some(Matcher::Date { lo, hi }),
                    None => {
                        problems.push(problem("IllegalValue", &bad));
                        continue;
                    }
                },
                (Kind::Bool, Op::Is | Op::IsNot) => {
                    match value.trim().to_ascii_lowercase().as_str() {
                        "true" => Some(Matcher::Bool {
                            value: true,
                            negate: op == Op::IsNot,
                        }),
                        "false" => Some(Matcher::Bool {
                            value: false,
                            negate: op == Op::IsNot,
                        }),
                        _ => {
                            problems.push(problem("IllegalValue", &bad));
                            continue;
                        }
                    }
                }
                _ => None,
            };
            match matcher {
                Some(matcher) => filters.push(Filter {
                    term: term.id,
                    matcher,
                }),
                None => problems.push(problem("IllegalOperator", &bad)),
            }
        }
        groups.push(Group {
            any: group_any,
            filters,
        });
    }
    Ok(Search {
        tenant_id,
        any,
        groups,
        page: page as u64,
        page_size: page_size as u64,
        sort_term: sort.id,
        sort_desc,
        problems,
    })
}

fn matches_filter(f: &Filter, r: &impl Record) -> bool {
    let field = r.field(f.term);
    match (&f.matcher, field) {
        (Matcher::Text { op, needle }, Field::Text(v)) => {
            let v = v.map(|s| s.to_lowercase());
            match (op, v) {
                (Op::Is, Some(v)) => v == *needle,
                (Op::IsNot, Some(v)) => v != *needle,
                (Op::Contains, Some(v)) => v.contains(needle.as_str()),
                (Op::DoesNotContain, Some(v)) => !v.contains(needle.as_str()),
                (Op::IsNot | Op::DoesNotContain, None) => true,
                _ => false,
            }
        }
        (Matcher::Text { op, needle }, Field::List(values)) => {
            let lower: Vec<String> = values.iter().map(|v| v.to_lowercase()).collect();
            match op {
                Op::Is => lower.iter().any(|v| v == needle),
                Op::IsNot => lower.iter().all(|v| v != needle),
                Op::Contains => lower.iter().any(|v| v.contains(needle.as_str())),
                _ => lower.iter().all(|v| !v.contains(needle.as_str())),
            }
        }
        (Matcher::Enum { value, negate }, Field::Text(v)) => {
            let hit = v.is_some_and(|v| v.eq_ignore_ascii_case(value));
            hit != *negate
        }
        (Matcher::Date { lo, hi }, Field::Date(Some(t))) => *lo <= t && t < *hi,
        (Matcher::Bool { value, negate }, Field::Bool(b)) => (b == *value) != *negate,
        _ => false,
    }
}

impl Search {
    /// True when the search can select anything at all.
    pub(crate) fn selects_anything(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether `r` passes the filters.
    pub(crate) fn matches(&self, r: &impl Record) -> bool {
        if self.groups.is_empty() {
            return true;
        }
        let group = |g: &Group| {
            if g.any {
                g.filters.iter().any(|f| matches_filter(f, r))
            } else {
                g.filters.iter().all(|f| matches_filter(f, r))
            }
        };
        if self.any {
            self.groups.iter().any(group)
        } else {
            self.groups.iter().all(group)
        }
    }

    /// A half-open interval that contains the value of date term `term` of every
    /// record the search can match (a superset; `matches` still decides).
    pub(crate) fn interval(&self, term: u8) -> (i64, i64) {
        const ALL: (i64, i64) = (i64::MIN, i64::MAX);
        let filter_iv = |f: &Filter| match (&f.matcher, f.term == term) {
            (Matcher::Date { lo, hi }, true) => (*lo, *hi),
            _ => ALL,
        };
        let combine = |any: bool, ivs: &mut dyn Iterator<Item = (i64, i64)>| {
            if any {
                // A union: the hull of the parts (empty if there are none).
                ivs.fold((i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)))
            } else {
                ivs.fold(ALL, |a, b| (a.0.max(b.0), a.1.min(b.1)))
            }
        };
        if self.groups.is_empty() {
            return ALL;
        }
        let groups: Vec<(i64, i64)> = self
            .groups
            .iter()
            .map(|g| combine(g.any, &mut g.filters.iter().map(filter_iv)))
            .collect();
        combine(self.any, &mut groups.into_iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERMS: &[TermDef] = &[
        TermDef {
            names: &["name"],
            id: 0,
            kind: Kind::Text,
        },
        TermDef {
            names: &["state", "alertstate"],
            id: 1,
            kind: Kind::Enum(super::super::alerts::ALERT_STATES),
        },
        TermDef {
            names: &["createdat", "dateobserved"],
            id: 2,
            kind: Kind::Date,
        },
        TermDef {
            names: &["flag"],
            id: 3,
            kind: Kind::Bool,
        },
    ];

    struct R {
        name: Option<&'static str>,
        state: &'static str,
        at: i64,
        flag: bool,
    }

    impl Record for R {
        fn field(&self, term: u8) -> Field<'_> {
            match term {
                0 => Field::Text(self.name.map(Cow::Borrowed)),
                1 => Field::Text(Some(Cow::Borrowed(self.state))),
                2 => Field::Date(Some(self.at)),
                _ => Field::Bool(self.flag),
            }
        }
    }

    fn search(groups: &str) -> Search {
        let body = format!(
            r#"{{"tenantId":"t","groupClause":"AND","groups":{groups},"pgNum":0,"pgSize":10,"srtKey":"CreatedAt"}}"#
        );
        parse_search(body.as_bytes(), TERMS).unwrap()
    }

    fn one(term: &str, op: &str, value: &str) -> Search {
        search(&format!(
            r#"[{{"filterClause":"AND","filters":[{{"term":"{term}","operator":"{op}","value":{value}}}]}}]"#
        ))
    }

    const MAR1: i64 = 1_709_251_200_000_000_000; // 2024-03-01T00:00:00Z

    fn r(name: Option<&'static str>, state: &'static str, at: i64) -> R {
        R {
            name,
            state,
            at,
            flag: false,
        }
    }

    #[test]
    fn text_operators() {
        let a = r(Some("Exfil |= Rule"), "OPEN", 0);
        let none = r(None, "OPEN", 0);
        assert!(one("Name", "IS", r#""exfil |= rule""#).matches(&a));
        assert!(!one("name", "IS", r#""exfil""#).matches(&a));
        assert!(one("NAME", "IS_NOT", r#""exfil""#).matches(&a));
        assert!(one("name", "contains", r#""IL |=""#).matches(&a));
        assert!(!one("name", "DOES_NOT_CONTAIN", r#""rule""#).matches(&a));
        assert!(one("name", "DOES_NOT_CONTAIN", r#""zzz""#).matches(&a));
        assert!(!one("name", "CONTAINS", r#""x""#).matches(&none));
        assert!(one("name", "IS_NOT", r#""x""#).matches(&none));
        assert!(one("name", "DOES_NOT_CONTAIN", r#""x""#).matches(&none));
    }

    #[test]
    fn enum_and_bool_operators_and_problems() {
        let a = r(None, "RESOLVED", 0);
        assert!(one("AlertState", "IS", r#""Dismissed""#).matches(&a));
        assert!(one("state", "IS", r#""resolved""#).matches(&a));
        assert!(!one("State", "IS_NOT", r#""RESOLVED""#).matches(&a));
        let bad = one("State", "CONTAINS", r#""RES""#);
        assert!(!bad.selects_anything());
        assert!(
            bad.problems[0].contains("IllegalOperator"),
            "{:?}",
            bad.problems
        );
        let bad = one("State", "IS", r#""CLOSED""#);
        assert!(bad.problems[0].contains("IllegalValue"));
        let f = R {
            flag: true,
            ..r(None, "OPEN", 0)
        };
        assert!(one("flag", "IS", "true").matches(&f));
        assert!(one("flag", "IS", r#""True""#).matches(&f));
        assert!(!one("flag", "IS_NOT", "true").matches(&f));
        let missing = search(r#"[{"filterClause":"AND","filters":[]}]"#);
        assert!(missing.problems[0].contains("MissingFilters"));
    }

    #[test]
    fn date_operators_with_timestamps_and_days() {
        let at = |t: i64| r(None, "OPEN", t);
        let noon = MAR1 + DAY_NS / 2;
        let ts = r#""2024-03-01T12:00:00.000Z""#;
        assert!(one("CreatedAt", "ON_OR_AFTER", ts).matches(&at(noon)));
        assert!(!one("CreatedAt", "ON_OR_AFTER", ts).matches(&at(noon - 1)));
        assert!(one("createdAt", "ON_OR_BEFORE", ts).matches(&at(noon)));
        assert!(!one("createdAt", "ON_OR_BEFORE", ts).matches(&at(noon + 1)));
        assert!(!one("createdAt", "LESS_THAN", ts).matches(&at(noon)));
        assert!(!one("createdAt", "GREATER_THAN", ts).matches(&at(noon)));
        assert!(one("createdAt", "GREATER_THAN", ts).matches(&at(noon + 1)));
        // Offsets are honoured.
        assert!(
            one("createdAt", "ON_OR_AFTER", r#""2024-03-01T13:00:00+01:00""#).matches(&at(noon))
        );
        // Days: ON is the UTC day, ON_OR_BEFORE includes the whole day.
        let day = r#""2024-03-01""#;
        assert!(one("DateObserved", "ON", day).matches(&at(MAR1)));
        assert!(one("DateObserved", "ON", day).matches(&at(MAR1 + DAY_NS - 1)));
        assert!(!one("DateObserved", "ON", day).matches(&at(MAR1 + DAY_NS)));
        assert!(!one("DateObserved", "ON", day).matches(&at(MAR1 - 1)));
        assert!(one("DateObserved", "ON", ts).matches(&at(MAR1 + 1)));
        assert!(one("DateObserved", "ON_OR_BEFORE", day).matches(&at(MAR1 + DAY_NS - 1)));
        assert!(one("DateObserved", "ON_OR_AFTER", day).matches(&at(MAR1)));
        assert!(!one("DateObserved", "ON_OR_AFTER", day).matches(&at(MAR1 - 1)));
        assert!(one("CreatedAt", "IS", day).problems[0].contains("IllegalOperator"));
        assert!(one("CreatedAt", "ON", r#""yesterday""#).problems[0].contains("IllegalValue"));
    }

    #[test]
    fn and_or_at_both_levels_and_the_interval() {
        let groups = r#"[
            {"filterClause":"OR","filters":[
                {"term":"state","operator":"IS","value":"OPEN"},
                {"term":"state","operator":"IS","value":"PENDING"}]},
            {"filterClause":"AND","filters":[
                {"term":"CreatedAt","operator":"ON_OR_AFTER","value":"2024-03-01T00:00:00Z"},
                {"term":"CreatedAt","operator":"LESS_THAN","value":"2024-03-02T00:00:00Z"}]}]"#;
        let and = search(groups);
        assert!(and.matches(&r(None, "OPEN", MAR1)));
        assert!(and.matches(&r(None, "PENDING", MAR1 + 5)));
        assert!(!and.matches(&r(None, "RESOLVED", MAR1)));
        assert!(!and.matches(&r(None, "OPEN", MAR1 + DAY_NS)));
        assert_eq!(and.interval(2), (MAR1, MAR1 + DAY_NS));
        let body = format!(
            r#"{{"tenantId":"t","groupClause":"or","groups":{groups},"pgNum":"0","pgSize":"20","srtKey":"createdAt","srtDirection":"asc"}}"#
        );
        let or = parse_search(body.as_bytes(), TERMS).unwrap();
        assert!(or.matches(&r(None, "RESOLVED", MAR1)));
        assert!(or.matches(&r(None, "OPEN", 0)));
        assert!(!or.matches(&r(None, "RESOLVED", 0)));
        assert_eq!(or.interval(2), (i64::MIN, i64::MAX));
        assert_eq!((or.page_size, or.sort_desc), (20, false));
    }

    #[test]
    fn schema_errors_are_refused() {
        let ok = r#""tenantId":"t","groupClause":"AND","groups":[],"pgNum":0"#;
        let err = |body: String| parse_search(body.as_bytes(), TERMS).unwrap_err();
        assert!(err(format!(r#"{{{ok},"pgSize":501,"srtKey":"CreatedAt"}}"#)).contains("pgSize"));
        assert!(err(format!(r#"{{{ok},"pgSize":-1,"srtKey":"CreatedAt"}}"#)).contains("pgSize"));
        assert!(err(format!(r#"{{{ok},"pgSize":5,"srtKey":"Nope"}}"#)).contains("srtKey"));
        assert!(
            err(r#"{"groupClause":"AND","pgNum":0,"pgSize":5,"srtKey":"name"}"#.into())
                .contains("tenantId")
        );
        assert!(err(format!(
            r#"{{{ok},"pgSize":5,"srtKey":"name","groups":[{{"filterClause":"AND","filters":[{{"term":"bogus","operator":"IS","value":"x"}}]}}]}}"#
        ))
        .contains("unknown term"));
        assert!(err(format!(
            r#"{{{ok},"pgSize":5,"srtKey":"name","groups":[{{"filterClause":"AND","filters":[{{"term":"name","operator":"LIKE","value":"x"}}]}}]}}"#
        ))
        .contains("unknown operator"));
        // Keys bind case-insensitively.
        let s = parse_search(
            br#"{"TenantId":"t","GroupClause":"AND","PgNum":1,"PgSize":"7","SrtKey":"Name"}"#,
            TERMS,
        )
        .unwrap();
        assert_eq!((s.page, s.page_size, s.sort_term), (1, 7, 0));
    }

    #[test]
    fn sort_keys_order_nulls_first_and_ignore_case() {
        let key = |f: Field| SortKey::from(f);
        let null = key(Field::Text(None));
        let b = key(Field::Text(Some(Cow::Borrowed("B"))));
        let a = key(Field::Text(Some(Cow::Borrowed("a"))));
        assert!(null < a && a < b);
        assert!(key(Field::Date(Some(1))) < key(Field::Date(Some(2))));
        assert!(key(Field::Date(None)) < key(Field::Date(Some(i64::MIN))));
    }

    #[test]
    fn lists_match_any_or_none() {
        struct L;
        impl Record for L {
            fn field(&self, _: u8) -> Field<'_> {
                Field::List(vec![
                    Cow::Borrowed("Flight risk"),
                    Cow::Borrowed("New hires"),
                ])
            }
        }
        let list = |op: &str, v: &str| one("name", op, &format!("{v:?}")).matches(&L);
        assert!(list("IS", "new HIRES"));
        assert!(!list("IS", "new"));
        assert!(list("IS_NOT", "new"));
        assert!(!list("IS_NOT", "flight risk"));
        assert!(list("CONTAINS", "risk"));
        assert!(!list("DOES_NOT_CONTAIN", "risk"));
        assert!(list("DOES_NOT_CONTAIN", "zzz"));
    }
}
