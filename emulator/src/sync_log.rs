//! The emulated Directory Sync Log (`docs/api.md`): what entry number `i` says, which
//! entries a request selects, and the JSON and CSV bodies.
//!
//! Owns entry content (`username`, `action`, `field`, `oldValue`, `newValue`,
//! `providerName`, `logEventTimeStamp`), the request parameters of
//! `GET /api/v3/DirectorySyncLog[/csv]`, retention, sorting and paging. Entries are a
//! pure function of `(seed, i)` on their own [`Timeline`], like Audit Log events; it does
//! not speak HTTP (`service_routes`).
//!
//! The `action` values are the emulator's own ([`SYNC_LOG_ACTIONS`]): Code42 publishes no
//! list of them (`docs/api.md`, Sync Log), so these are plausible provisioning actions a
//! test tenant sends, not facts about the API. The product knows none of them by name
//! (`c42fwd::normalize::sync_log`); every one takes its generic mapping.
//!
//! Behaviour choices (Code42's article leaves them open; the OpenAPI has only the response
//! object `DirectorySyncLogResponse`, no path):
//! - JSON body: the legacy v3 envelope around the OpenAPI object, keys as the OpenAPI
//!   spells them (with the space): `{"data":{"Directory Sync Logs":[entry...],
//!   "PageNumber":n,"PageSize":s,"TotalResults":t},"error":null,"warnings":null}`.
//! - `page[number]` is 1-based (Code42's example asks for `page[number]=1`); 0 is a
//!   400. `page[size]` defaults to 100, at most 1000 (more is a 400). Without either
//!   parameter the whole range comes back on "page 1" (Code42's article calls it an export).
//! - `eventOccurredAfter` is inclusive, `eventOccurredBefore` exclusive (as the Audit
//!   Log's `dateRange`); both optional. Accepted forms: `yyyy-MM-dd'T'HH:mm:ss.SSSZ`
//!   with `Z`, `+0000` or `+00:00`, the literal quotes around `T` of the
//!   documented pattern, any number of fractional digits, a `+` that arrived as a space (not
//!   percent-encoded), and a bare `yyyy-MM-dd`. Anything else is a 400 naming the
//!   parameter.
//! - Sort: `sortColumn` one of action, field, logEventTimeStamp, newValue, oldValue,
//!   providerName, username (case-insensitive); `sortDirection` asc/desc. Default:
//!   logEventTimeStamp desc (newest first, as the console shows it). Text sorts are
//!   case-insensitive, nulls first, and stable (ties keep time order).
//! - `/csv`: the same filters and sort, no paging, RFC 4180, a header line.
//! - Timestamps have millisecond precision, so equal timestamps are common; now and
//!   then an entry is a byte-identical copy of its predecessor (the `Timeline`'s
//!   duplicates). Entries older than 90 days (on the emulator's clock) are gone;
//!   entries become visible up to the ingestion lag after they occur.

use super::events::{FIRST, HOSTILE, LAST};
use super::json::{self, kv_str, push_str};
use super::timeline::{hash3, Rng, Timeline};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use std::ops::Range;

const SALT_SYNC: u64 = 301;
const NANOS_PER_MILLI: i64 = 1_000_000;
/// Sync Log data is retained for the last 90 days (`docs/api.md`).
pub(crate) const RETENTION_NS: i64 = 90 * 86_400 * 1_000_000_000;
pub(crate) const DEFAULT_PAGE_SIZE: u64 = 100;
pub(crate) const MAX_PAGE_SIZE: u64 = 1_000;

pub(crate) const CSV_HEADER: &str =
    "username,action,field,oldValue,newValue,providerName,logEventTimeStamp\n";

const PROVIDERS: &[&str] = &[
    "Okta",
    "Azure AD",
    "OneLogin",
    "Google Workspace",
    "JumpCloud",
    "Okta (EMEA) | prod=1 \\ «SCIM»",
];
const ROLES: &[&str] = &[
    "Desktop User",
    "Security Center User",
    "Customer Cloud Admin",
    "Insider Risk Analyst",
    "Alert Management",
];
const ORGS: &[&str] = &["Engineering", "Sales", "Finance", "R&D | Labs", "Ventes"];
const TITLES: &[&str] = &[
    "Software Engineer",
    "VP, Sales",
    "Account Executive",
    "Directeur financier",
    "主任",
];
const FAILURES: &[&str] = &[
    "Unable to create user: username already exists",
    "Missing required attribute: email",
    "User is on legal hold; deactivation skipped",
];

/// Every `action` the emulator generates, in the order of `SyncLog::entry`'s cases: an
/// attribute change, a user added, a role assigned or removed, a user deactivated or
/// reactivated, a user moved to another organization, a failed sync of a user.
pub const SYNC_LOG_ACTIONS: &[&str] = &[
    "USER_UPDATED",
    "USER_ADDED",
    "ROLE_ASSIGNED",
    "ROLE_REMOVED",
    "USER_DEACTIVATED",
    "USER_REACTIVATED",
    "USER_MOVED",
    "USER_SYNC_FAILED",
];

/// Which column a request sorts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Column {
    Action,
    Field,
    LogEventTimeStamp,
    NewValue,
    OldValue,
    ProviderName,
    Username,
}

impl Column {
    const NAMES: &'static [(&'static str, Column)] = &[
        ("action", Column::Action),
        ("field", Column::Field),
        ("logEventTimeStamp", Column::LogEventTimeStamp),
        ("newValue", Column::NewValue),
        ("oldValue", Column::OldValue),
        ("providerName", Column::ProviderName),
        ("username", Column::Username),
    ];

    fn parse(s: &str) -> Option<Column> {
        Column::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s.trim()))
            .map(|(_, c)| *c)
    }
}

/// One Sync Log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) username: String,
    pub(crate) action: &'static str,
    pub(crate) field: Option<&'static str>,
    pub(crate) old_value: Option<String>,
    pub(crate) new_value: Option<String>,
    pub(crate) provider: &'static str,
    /// Millisecond-aligned.
    pub(crate) at_ns: i64,
}

impl Entry {
    fn column(&self, c: Column) -> Option<&str> {
        match c {
            Column::Action => Some(self.action),
            Column::Field => self.field,
            Column::NewValue => self.new_value.as_deref(),
            Column::OldValue => self.old_value.as_deref(),
            Column::ProviderName => Some(self.provider),
            Column::Username => Some(&self.username),
            Column::LogEventTimeStamp => None,
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncQuery {
    /// Inclusive, ns since the epoch.
    pub(crate) after_ns: Option<i64>,
    /// Exclusive.
    pub(crate) before_ns: Option<i64>,
    pub(crate) column: Column,
    pub(crate) desc: bool,
    /// (1-based page number, page size), when the request pages.
    pub(crate) page: Option<(u64, u64)>,
}

/// Reads a `yyyy-MM-dd'T'HH:mm:ss.SSSZ` parameter in the forms clients send.
pub(crate) fn parse_time(raw: &str) -> Option<i64> {
    let mut s = raw.trim().replace("'T'", "T");
    // An unencoded '+' in a query string decodes to a space: "...00.000 0000".
    if let Some(pos) = s.rfind(' ') {
        let tail = &s[pos + 1..];
        if pos >= 19 && !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit() || b == b':') {
            s.replace_range(pos..pos + 1, "+");
        }
    }
    let dt = if s.ends_with(['Z', 'z']) {
        DateTime::parse_from_rfc3339(&s).ok()?.naive_utc()
    } else if let Ok(d) = DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        d.naive_utc()
    } else if let Ok(d) = NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f") {
        d
    } else {
        NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .ok()?
            .and_hms_opt(0, 0, 0)?
    };
    dt.and_utc().timestamp_nanos_opt()
}

/// Parses the query parameters of a request; `Err` is the 400 message.
pub(crate) fn parse_query(params: &[(String, String)]) -> Result<SyncQuery, String> {
    let get = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let time = |name: &str| -> Result<Option<i64>, String> {
        match get(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => parse_time(v).map(Some).ok_or_else(|| {
                format!("invalid {name} {v:?}: expected yyyy-MM-dd'T'HH:mm:ss.SSSZ")
            }),
        }
    };
    let after_ns = time("eventOccurredAfter")?;
    let before_ns = time("eventOccurredBefore")?;
    let column = match get("sortColumn") {
        None => Column::LogEventTimeStamp,
        Some(c) => Column::parse(c).ok_or_else(|| {
            format!(
                "invalid sortColumn {c:?}: expected one of action, field, logEventTimeStamp, \
                 newValue, oldValue, providerName, username"
            )
        })?,
    };
    let desc = match get("sortDirection") {
        None => true,
        Some(d) if d.trim().eq_ignore_ascii_case("desc") => true,
        Some(d) if d.trim().eq_ignore_ascii_case("asc") => false,
        Some(d) => return Err(format!("invalid sortDirection {d:?}: expected asc or desc")),
    };
    let number = |name: &str| -> Result<Option<u64>, String> {
        get(name)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("invalid {name} {v:?}: expected a whole number"))
            })
            .transpose()
    };
    let page_number = number("page[number]")?;
    let page_size = number("page[size]")?;
    let page = if page_number.is_none() && page_size.is_none() {
        None
    } else {
        let n = page_number.unwrap_or(1);
        if n < 1 {
            return Err("invalid page[number] 0: pages are numbered from 1".into());
        }
        let s = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&s) {
            return Err(format!(
                "invalid page[size] {s}: must be between 1 and {MAX_PAGE_SIZE}"
            ));
        }
        Some((n, s))
    };
    Ok(SyncQuery {
        after_ns,
        before_ns,
        column,
        desc,
        page,
    })
}

/// The smallest millisecond-aligned instant `>= ns`.
fn ceil_ms(ns: i64) -> i64 {
    if ns > i64::MAX - NANOS_PER_MILLI {
        return i64::MAX;
    }
    let t = ns
        .div_euclid(NANOS_PER_MILLI)
        .saturating_mul(NANOS_PER_MILLI);
    if t == ns {
        t
    } else {
        t + NANOS_PER_MILLI
    }
}

/// The Sync Log generator. Holds only a pool of user names.
pub(crate) struct SyncLog {
    pub(crate) timeline: Timeline,
    seed: u64,
    users: Vec<String>,
}

impl SyncLog {
    pub(crate) fn new(seed: u64, timeline: Timeline) -> Self {
        let mut users: Vec<String> = (0..48)
            .map(|n| {
                let first = FIRST[(n * 7) % FIRST.len()];
                let last = LAST[(n / 3 + n) % LAST.len()];
                format!("{first}.{last}{}@example.com", n / 24)
            })
            .collect();
        // E-mail local parts may legally hold these.
        users.push("ops|oncall=1@example.com".into());
        users.push("\"quoted local\"@example.com".into());
        SyncLog {
            timeline,
            seed,
            users,
        }
    }

    /// The rendered (millisecond) time of entry `i`.
    pub(crate) fn time_ns(&self, i: u64) -> i64 {
        self.timeline
            .occurred_ns(i)
            .div_euclid(NANOS_PER_MILLI)
            .saturating_mul(NANOS_PER_MILLI)
    }

    /// The entries whose rendered time lies in `[start, end)`, visible or not.
    pub(crate) fn index_range(&self, start_ns: i64, end_ns: i64) -> Range<u64> {
        let lo = self.timeline.first_at_or_after(ceil_ms(start_ns));
        let hi = if end_ns == i64::MAX {
            self.timeline.end()
        } else {
            self.timeline.first_at_or_after(ceil_ms(end_ns))
        };
        lo..hi.max(lo)
    }

    /// Entry `i` (its predecessor's content when it is a duplicate).
    pub(crate) fn entry(&self, i: u64) -> Entry {
        let src = self.timeline.source(i);
        let mut rng = Rng::new(hash3(self.seed, SALT_SYNC, src));
        let username = rng.pick(&self.users).clone();
        let provider = match rng.below(10) {
            0..=4 => "Okta",
            5..=7 => "Azure AD",
            _ => rng.pick_str(PROVIDERS),
        };
        let text = |rng: &mut Rng, normal: &[&str]| -> String {
            if rng.chance(15) {
                rng.pick_str(HOSTILE).to_string()
            } else {
                rng.pick_str(normal).to_string()
            }
        };
        let (action, field, old_value, new_value) = match rng.below(100) {
            0..=39 => {
                let field = rng.pick_str(&[
                    "email",
                    "firstName",
                    "lastName",
                    "title",
                    "department",
                    "userExtRef",
                ]);
                let (old, new) = match field {
                    "email" => (
                        username.clone(),
                        format!("{}.{}@example.org", rng.pick_str(FIRST), rng.pick_str(LAST)),
                    ),
                    "firstName" => (text(&mut rng, FIRST), text(&mut rng, FIRST)),
                    "lastName" => (text(&mut rng, LAST), text(&mut rng, LAST)),
                    "department" => (text(&mut rng, ORGS), text(&mut rng, ORGS)),
                    "userExtRef" => (
                        format!("00u{:x}", rng.next_u64() >> 20),
                        format!("00u{:x}", rng.next_u64() >> 20),
                    ),
                    _ => (text(&mut rng, TITLES), text(&mut rng, TITLES)),
                };
                ("USER_UPDATED", Some(field), Some(old), Some(new))
            }
            40..=54 => ("USER_ADDED", Some("username"), None, Some(username.clone())),
            55..=66 => (
                "ROLE_ASSIGNED",
                Some("role"),
                None,
                Some(rng.pick_str(ROLES).to_string()),
            ),
            67..=72 => (
                "ROLE_REMOVED",
                Some("role"),
                Some(rng.pick_str(ROLES).to_string()),
                None,
            ),
            73..=82 => (
                "USER_DEACTIVATED",
                Some("active"),
                Some("true".into()),
                Some("false".into()),
            ),
            83..=87 => (
                "USER_REACTIVATED",
                Some("active"),
                Some("false".into()),
                Some("true".into()),
            ),
            88..=94 => (
                "USER_MOVED",
                Some("org"),
                Some(text(&mut rng, ORGS)),
                Some(text(&mut rng, ORGS)),
            ),
            _ => (
                "USER_SYNC_FAILED",
                None,
                None,
                Some(rng.pick_str(FAILURES).to_string()),
            ),
        };
        Entry {
            username,
            action,
            field,
            old_value,
            new_value,
            provider,
            at_ns: self.time_ns(i),
        }
    }

    /// The entries a request at `now` returns, in the requested order (not paged).
    pub(crate) fn select(&self, q: &SyncQuery, now_ns: i64) -> Vec<Entry> {
        let oldest = now_ns.saturating_sub(RETENTION_NS);
        let start = q.after_ns.unwrap_or(i64::MIN).max(oldest);
        let end = q.before_ns.unwrap_or(i64::MAX);
        let range = self.index_range(start, end);
        // Nothing that occurred after `now` can be visible.
        let k_now = self.timeline.first_after(now_ns);
        let mut entries: Vec<Entry> = (range.start..range.end.min(k_now).max(range.start))
            .filter(|&i| self.timeline.visible(i, now_ns))
            .map(|i| self.entry(i))
            .collect();
        // Stable sorts on top of time order: equal keys stay oldest first.
        match q.column {
            Column::LogEventTimeStamp => {
                if q.desc {
                    entries.sort_by_key(|e| std::cmp::Reverse(e.at_ns));
                }
            }
            c => {
                let mut keyed: Vec<(Option<String>, Entry)> = entries
                    .into_iter()
                    .map(|e| (e.column(c).map(str::to_lowercase), e))
                    .collect();
                if q.desc {
                    keyed.sort_by(|a, b| b.0.cmp(&a.0));
                } else {
                    keyed.sort_by(|a, b| a.0.cmp(&b.0));
                }
                entries = keyed.into_iter().map(|(_, e)| e).collect();
            }
        }
        entries
    }

    /// The JSON text of one entry.
    pub(crate) fn render(&self, e: &Entry, out: &mut String) {
        out.push_str("{\"username\":");
        push_str(out, &e.username);
        kv_str(out, "action", e.action);
        let opt = |out: &mut String, k: &str, v: Option<&str>| {
            json::key(out, k);
            match v {
                Some(v) => push_str(out, v),
                None => out.push_str("null"),
            }
        };
        opt(out, "field", e.field);
        opt(out, "oldValue", e.old_value.as_deref());
        opt(out, "newValue", e.new_value.as_deref());
        kv_str(out, "providerName", e.provider);
        json::key(out, "logEventTimeStamp");
        out.push('"');
        json::push_timestamp_digits(out, e.at_ns, 3);
        out.push_str("\"}");
    }

    /// One CSV record (with its line end); nulls are empty fields.
    pub(crate) fn render_csv(&self, e: &Entry, out: &mut String) {
        let mut ts = String::new();
        json::push_timestamp_digits(&mut ts, e.at_ns, 3);
        for (n, v) in [
            e.username.as_str(),
            e.action,
            e.field.unwrap_or_default(),
            e.old_value.as_deref().unwrap_or_default(),
            e.new_value.as_deref().unwrap_or_default(),
            e.provider,
            ts.as_str(),
        ]
        .into_iter()
        .enumerate()
        {
            if n > 0 {
                out.push(',');
            }
            super::render::csv_field(out, v);
        }
        out.push('\n');
    }

    /// The JSON response body for `entries` (already selected and sorted).
    /// How many of `total` selected entries the page `page` (1-based number, size)
    /// holds; all of them without a page.
    pub(crate) fn page_len(total: usize, page: Option<(u64, u64)>) -> u64 {
        let total = total as u64;
        let (number, size) = page.unwrap_or((1, total));
        total
            .saturating_sub(number.saturating_sub(1).saturating_mul(size))
            .min(size)
    }

    pub(crate) fn render_page(&self, entries: &[Entry], page: Option<(u64, u64)>) -> String {
        let total = entries.len() as u64;
        let (number, size) = page.unwrap_or((1, total));
        let skip = (number - 1).saturating_mul(size);
        let mut out = String::from("{\"data\":{\"Directory Sync Logs\":[");
        for (n, e) in entries
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .enumerate()
        {
            if n > 0 {
                out.push(',');
            }
            self.render(e, &mut out);
        }
        out.push_str("],\"PageNumber\":");
        json::push_u64(&mut out, number);
        out.push_str(",\"PageSize\":");
        json::push_u64(&mut out, size);
        out.push_str(",\"TotalResults\":");
        json::push_u64(&mut out, total);
        out.push_str("},\"error\":null,\"warnings\":null}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::NANOS_PER_SEC;

    const T0: i64 = 1_709_251_200 * NANOS_PER_SEC; // 2024-03-01T00:00:00Z

    fn log(backlog: u64, span_days: i64, lag_s: i64) -> SyncLog {
        SyncLog::new(
            9,
            Timeline::new(
                9,
                T0,
                backlog,
                span_days * 86_400 * NANOS_PER_SEC,
                0.0,
                lag_s * NANOS_PER_SEC,
            ),
        )
    }

    fn q(params: &[(&str, &str)]) -> Result<SyncQuery, String> {
        let p: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_query(&p)
    }

    #[test]
    fn times_parse_in_every_form_clients_send() {
        let want = T0 + 12 * 3_600 * NANOS_PER_SEC + 60 * NANOS_PER_MILLI;
        for s in [
            "2024-03-01T12:00:00.060Z",
            "2024-03-01'T'12:00:00.0600Z",
            "2024-03-01T12:00:00.060+0000",
            "2024-03-01T12:00:00.060 0000",
            "2024-03-01T12:00:00.060+00:00",
            "2024-03-01T13:00:00.060+0100",
            "2024-03-01'T'12:00:00.060",
        ] {
            assert_eq!(parse_time(s), Some(want), "{s}");
        }
        assert_eq!(parse_time("2024-03-01"), Some(T0));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2024-13-01T00:00:00.000Z"), None);
    }

    #[test]
    fn parameters_validate() {
        let d = q(&[]).unwrap();
        assert_eq!(
            (d.column, d.desc, d.page),
            (Column::LogEventTimeStamp, true, None)
        );
        let p = q(&[
            ("sortColumn", "providerName"),
            ("sortDirection", "ASC"),
            ("page[number]", "2"),
        ])
        .unwrap();
        assert_eq!(
            (p.column, p.desc, p.page),
            (Column::ProviderName, false, Some((2, 100)))
        );
        assert!(q(&[("page[number]", "0")])
            .unwrap_err()
            .contains("page[number]"));
        assert!(q(&[("page[size]", "1001")])
            .unwrap_err()
            .contains("page[size]"));
        assert!(q(&[("sortColumn", "bogus")])
            .unwrap_err()
            .contains("sortColumn"));
        assert!(q(&[("sortDirection", "up")])
            .unwrap_err()
            .contains("sortDirection"));
        assert!(q(&[("eventOccurredAfter", "soon")])
            .unwrap_err()
            .contains("eventOccurredAfter"));
    }

    #[test]
    fn entries_are_deterministic_valid_and_hostile() {
        let a = log(20_000, 60, 0);
        let b = log(20_000, 60, 0);
        let (mut ties, mut dups, mut hostile, mut nulls) = (0, 0, 0, 0);
        let mut actions = std::collections::HashSet::new();
        for i in 0..20_000 {
            let e = a.entry(i);
            assert_eq!(e, b.entry(i));
            let mut s = String::new();
            a.render(&e, &mut s);
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            assert_eq!(v["logEventTimeStamp"].as_str().unwrap().len(), 24);
            actions.insert(e.action);
            if i > 0 && e.at_ns == a.entry(i - 1).at_ns {
                ties += 1;
                if e == a.entry(i - 1) {
                    dups += 1;
                }
            }
            if s.contains("\\n") || s.contains('|') || !s.is_ascii() {
                hostile += 1;
            }
            if v["oldValue"].is_null() {
                nulls += 1;
            }
        }
        assert_eq!(
            actions,
            SYNC_LOG_ACTIONS.iter().copied().collect(),
            "the generated actions are the listed ones"
        );
        assert!(ties > 100, "{ties} equal timestamps");
        assert!(dups >= 1, "{dups} duplicates");
        assert!(hostile > 500 && nulls > 1_000, "{hostile} {nulls}");
    }

    #[test]
    fn selection_honours_retention_lag_sort_and_pages() {
        let g = log(3_000, 120, 300);
        let now = T0;
        let all = g.select(&q(&[("sortDirection", "asc")]).unwrap(), now);
        assert!(!all.is_empty());
        // Retention: nothing older than 90 days.
        assert!(all[0].at_ns >= now - RETENTION_NS);
        assert!(g.index_range(i64::MIN, now - RETENTION_NS).end > 500);
        // Lag: some of the last five minutes are still missing.
        let recent = g.index_range(now - 300 * NANOS_PER_SEC, now);
        let shown = all
            .iter()
            .filter(|e| e.at_ns >= now - 300 * NANOS_PER_SEC)
            .count();
        assert!(shown <= recent.end as usize - recent.start as usize);
        // Desc is the reverse of asc by time.
        let desc = g.select(&q(&[]).unwrap(), now);
        assert_eq!(desc.len(), all.len());
        assert!(desc.windows(2).all(|w| w[0].at_ns >= w[1].at_ns));
        // Text sorts: case-insensitive, nulls first, ties in time order.
        let by_old = g.select(
            &q(&[("sortColumn", "oldValue"), ("sortDirection", "asc")]).unwrap(),
            now,
        );
        assert!(by_old[0].old_value.is_none());
        assert!(by_old.windows(2).all(|w| {
            let k = |e: &Entry| e.old_value.as_deref().map(str::to_lowercase);
            k(&w[0]) < k(&w[1]) || (k(&w[0]) == k(&w[1]) && w[0].at_ns <= w[1].at_ns)
        }));
        // Pages of the JSON body.
        let body = g.render_page(&all, Some((2, 10)));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let page = v["data"]["Directory Sync Logs"].as_array().unwrap();
        assert_eq!(page.len(), 10);
        assert_eq!(v["data"]["TotalResults"], all.len());
        assert_eq!(v["data"]["PageNumber"], 2);
        let mut tenth = String::new();
        g.render(&all[10], &mut tenth);
        assert_eq!(
            page[0].to_string(),
            serde_json::from_str::<serde_json::Value>(&tenth)
                .unwrap()
                .to_string()
        );
    }
}
