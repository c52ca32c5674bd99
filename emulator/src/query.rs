//! What an Audit Log search asks for, and which event numbers answer it.
//!
//! Owns the parsing of search bodies of both API generations (the union of their
//! fields; dates as ISO-8601 strings or epoch seconds) and [`Selection`]: the events of
//! a date range that are visible at the time of the search and pass the filters, in
//! occurrence order. Counting and skipping use index arithmetic where every event of a
//! stretch is known to qualify (no filters, older than the lag), and look at events one
//! by one only where they must. It does not render events nor know about HTTP.

use super::events::{ActorType, Generator};
use super::timeline::NANOS_PER_SEC;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// A search body, as either generation sends it. Unknown keys (`type$`) are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SearchBody {
    actor_ids: Option<Vec<String>>,
    actor_ip_addresses: Option<Vec<String>>,
    actor_names: Option<Vec<String>>,
    date_range: Option<DateRangeBody>,
    event_types: Option<Vec<String>>,
    resource_ids: Option<Vec<String>>,
    user_types: Option<Vec<String>>,
    affected_user_ids: Option<Vec<String>>,
    affected_user_names: Option<Vec<String>>,
    // Code42's article spells these two differently from its own example body
    // (`docs/api.md`).
    affected_user_uids: Option<Vec<String>>,
    affected_usernames: Option<Vec<String>>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// Kept raw so that a number is read from its exact decimal text: an epoch-seconds
/// float such as `1700000000.123456789` must not lose its nanoseconds to `f64`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DateRangeBody {
    start_time: Option<Box<RawValue>>,
    end_time: Option<Box<RawValue>>,
}

/// The filters of a search. Values within one filter are OR-ed, filters are AND-ed
/// (the OpenAPI description of `search-audit-log`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Filter {
    /// Catalog indices allowed; `None` = any type.
    types: Option<Vec<bool>>,
    actor_ids: Vec<String>,
    actor_names: Vec<String>,
    actor_ips: Vec<String>,
    /// Bit set of `ActorType::bit`; `None` = any.
    user_types: Option<u8>,
    resource_ids: Vec<String>,
    affected_ids: Vec<String>,
    affected_names: Vec<String>,
}

impl Filter {
    pub(crate) fn is_empty(&self) -> bool {
        self.types.is_none()
            && self.actor_ids.is_empty()
            && self.actor_names.is_empty()
            && self.actor_ips.is_empty()
            && self.user_types.is_none()
            && self.resource_ids.is_empty()
            && self.affected_ids.is_empty()
            && self.affected_names.is_empty()
    }

    pub(crate) fn matches(&self, g: &Generator, i: u64) -> bool {
        let (head, _) = g.head(i);
        if let Some(types) = &self.types {
            if !types[head.type_idx] {
                return false;
            }
        }
        let actor = g.actor(&head);
        if let Some(bits) = self.user_types {
            if bits & actor.kind.bit() == 0 {
                return false;
            }
        }
        if !self.actor_ids.is_empty() && !self.actor_ids.contains(&actor.id) {
            return false;
        }
        if !self.actor_names.is_empty()
            && !self
                .actor_names
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&actor.name))
        {
            return false;
        }
        if !self.actor_ips.is_empty() {
            // A proxied request lists several addresses; any of them matches.
            let ip = g.ip(&head);
            let hit = self
                .actor_ips
                .iter()
                .any(|want| ip == want || ip.split(',').any(|part| part.trim() == want));
            if !hit {
                return false;
            }
        }
        if !self.affected_ids.is_empty() || !self.affected_names.is_empty() {
            let Some(p) = g.affected(&head) else {
                return false;
            };
            if !self.affected_ids.is_empty() && !self.affected_ids.contains(&p.id) {
                return false;
            }
            if !self.affected_names.is_empty()
                && !self
                    .affected_names
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&p.username))
            {
                return false;
            }
        }
        if !self.resource_ids.is_empty() {
            match g.resource_id(&head) {
                Some(r) if self.resource_ids.contains(&r) => {}
                _ => return false,
            }
        }
        true
    }
}

/// A parsed search.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    /// Inclusive lower bound on occurrence time, ns since the epoch.
    pub(crate) start_ns: i64,
    /// Exclusive upper bound.
    pub(crate) end_ns: i64,
    pub(crate) filter: Filter,
    pub(crate) page: u64,
    pub(crate) page_size: u64,
    /// Whether the body named a page or page size (the legacy CSV export pages only then).
    pub(crate) paged: bool,
}

/// Parses a search body of either generation. Errors are the 400 message.
pub(crate) fn parse_query(body: &[u8], g: &Generator) -> Result<Query, String> {
    let b: SearchBody = if body.iter().all(|c| c.is_ascii_whitespace()) {
        SearchBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| format!("invalid search body: {e}"))?
    };
    let (start_ns, end_ns) = match &b.date_range {
        Some(r) => (
            parse_time(r.start_time.as_deref(), "dateRange.startTime")?.unwrap_or(i64::MIN),
            parse_time(r.end_time.as_deref(), "dateRange.endTime")?.unwrap_or(i64::MAX),
        ),
        None => (i64::MIN, i64::MAX),
    };
    let page = b.page.unwrap_or(0);
    if page < 0 {
        return Err(format!("page must not be negative, got {page}"));
    }
    let page_size = b.page_size.unwrap_or(100);
    if page_size < 1 {
        return Err(format!("pageSize must be at least 1, got {page_size}"));
    }
    let list = |v: Option<Vec<String>>| -> Vec<String> {
        v.unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let types = match b.event_types {
        Some(names) if names.iter().any(|n| !n.trim().is_empty()) => {
            let mut allowed = vec![false; g.type_count()];
            for n in names {
                if let Some(idx) = g.type_index(&type_filter_name(&n)) {
                    allowed[idx] = true;
                }
            }
            Some(allowed)
        }
        _ => None,
    };
    let user_types = match b.user_types {
        Some(v) if v.iter().any(|n| !n.trim().is_empty()) => {
            let mut bits = 0u8;
            for n in v.iter().filter(|n| !n.trim().is_empty()) {
                bits |= ActorType::parse(n)
                    .ok_or_else(|| format!("unknown userTypes value {n:?}"))?
                    .bit();
            }
            Some(bits)
        }
        _ => None,
    };
    let mut affected_ids = list(b.affected_user_ids);
    affected_ids.extend(list(b.affected_user_uids));
    let mut affected_names = list(b.affected_user_names);
    affected_names.extend(list(b.affected_usernames));
    Ok(Query {
        start_ns,
        end_ns,
        filter: Filter {
            types,
            actor_ids: list(b.actor_ids),
            actor_names: list(b.actor_names),
            actor_ips: list(b.actor_ip_addresses),
            user_types,
            resource_ids: list(b.resource_ids),
            affected_ids,
            affected_names,
        },
        page: page as u64,
        page_size: page_size as u64,
        paged: b.page.is_some() || b.page_size.is_some(),
    })
}

/// `logged_in`, `audit_log::logged_in/1` and `LoggedIn` all name the same type.
fn type_filter_name(n: &str) -> String {
    let n = c42fwd_catalog::audit_type_name(n.trim());
    if n.bytes().any(|b| b.is_ascii_uppercase()) {
        let mut out = String::new();
        for (k, c) in n.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if k > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    } else {
        n.to_string()
    }
}

/// Reads a date: an ISO-8601 string (`Z`, an offset, or none for UTC; a bare date is
/// midnight) or a number of epoch seconds, read exactly from its decimal text.
fn parse_time(raw: Option<&RawValue>, field: &str) -> Result<Option<i64>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get().trim();
    if text == "null" {
        return Ok(None);
    }
    let bad = || format!("invalid {field}: {text}");
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|_| bad())?;
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let dt = DateTime::parse_from_rfc3339(s)
            .map(|d| d.naive_utc())
            .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
            .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
            .or_else(|_| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
            })
            .map_err(|_| bad())?;
        return dt.and_utc().timestamp_nanos_opt().map(Some).ok_or_else(bad);
    }
    epoch_seconds(text).map(Some).ok_or_else(bad)
}

/// Exact epoch seconds from decimal text: `1700000000`, `-1.5`, `1700000000.123456789`;
/// an exponent falls back to `f64`.
fn epoch_seconds(text: &str) -> Option<i64> {
    if text.contains(['e', 'E']) {
        let f: f64 = text.parse().ok()?;
        if !f.is_finite() || f.abs() > 9.2e9 {
            return None;
        }
        return Some((f * 1e9).round() as i64);
    }
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nanos: i64 = 0;
    for k in 0..9 {
        nanos = nanos * 10 + frac.as_bytes().get(k).map_or(0, |b| i64::from(b - b'0'));
    }
    let total = secs.checked_mul(NANOS_PER_SEC)?.checked_add(nanos)?;
    Some(if neg { -total } else { total })
}

/// The events a search at `now` returns, in occurrence order, as a lazily walked index
/// range: `[lo, full_end)` are all visible, `[full_end, scan_end)` are checked one by one
/// against their ingestion delay.
pub(crate) struct Selection {
    gen: Arc<Generator>,
    filter: Filter,
    lo: u64,
    full_end: u64,
    scan_end: u64,
    now_ns: i64,
}

impl Selection {
    pub(crate) fn new(gen: Arc<Generator>, query: &Query, now_ns: i64) -> Self {
        let tl = &gen.timeline;
        let lo = tl.first_at_or_after(query.start_ns);
        let hi = if query.end_ns == i64::MAX {
            tl.end()
        } else {
            tl.first_at_or_after(query.end_ns)
        };
        // Nothing that occurred after `now` can be visible; everything that occurred
        // at least `lag` ago is.
        let k_now = tl.first_after(now_ns);
        let k_full = tl.first_after(now_ns.saturating_sub(tl.lag_ns()));
        let scan_end = hi.min(k_now).max(lo);
        let full_end = k_full.min(scan_end).max(lo);
        Selection {
            gen,
            filter: query.filter.clone(),
            lo,
            full_end,
            scan_end,
            now_ns,
        }
    }

    pub(crate) fn generator(&self) -> &Generator {
        &self.gen
    }

    #[inline]
    fn accept(&self, i: u64) -> bool {
        (i < self.full_end || self.gen.timeline.visible(i, self.now_ns))
            && (self.filter.is_empty() || self.filter.matches(&self.gen, i))
    }

    /// How many events the search finds in all.
    pub(crate) fn count(&self) -> u64 {
        if self.filter.is_empty() {
            let tail = (self.full_end..self.scan_end)
                .filter(|&i| self.gen.timeline.visible(i, self.now_ns))
                .count() as u64;
            (self.full_end - self.lo) + tail
        } else {
            (self.lo..self.scan_end).filter(|&i| self.accept(i)).count() as u64
        }
    }

    /// A cursor positioned so that [`Selection::next`] yields result number `skip`
    /// (0-based) first.
    pub(crate) fn seek(&self, skip: u64) -> u64 {
        let mut pos = self.lo;
        let mut skip = skip;
        if self.filter.is_empty() {
            let direct = skip.min(self.full_end - self.lo);
            pos += direct;
            skip -= direct;
        }
        while skip > 0 {
            match self.next(&mut pos) {
                Some(_) => skip -= 1,
                None => break,
            }
        }
        pos
    }

    /// The next selected event number at or after `*pos`, advancing the cursor.
    #[inline]
    pub(crate) fn next(&self, pos: &mut u64) -> Option<u64> {
        while *pos < self.scan_end {
            let i = *pos;
            *pos += 1;
            if self.accept(i) {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Timeline;

    const T0: i64 = 1_700_000_000 * NANOS_PER_SEC;

    fn gen(lag_s: i64) -> Arc<Generator> {
        let tl = Timeline::new(
            21,
            T0,
            20_000,
            3_600 * NANOS_PER_SEC,
            10.0,
            lag_s * NANOS_PER_SEC,
        );
        Arc::new(Generator::new(21, tl))
    }

    fn q(body: &str, g: &Generator) -> Query {
        parse_query(body.as_bytes(), g).unwrap()
    }

    fn all(sel: &Selection) -> Vec<u64> {
        let mut pos = sel.seek(0);
        std::iter::from_fn(|| sel.next(&mut pos)).collect()
    }

    #[test]
    fn dates_parse_as_strings_and_exact_epoch_numbers() {
        let g = gen(0);
        let iso = q(
            r#"{"dateRange":{"startTime":"2023-11-14T22:13:20.123456789Z","endTime":"2023-11-14T23:13:20+01:00"}}"#,
            &g,
        );
        assert_eq!(iso.start_ns, T0 + 123_456_789);
        assert_eq!(iso.end_ns, T0);
        let num = q(
            r#"{"dateRange":{"startTime":1700000000.123456789,"endTime":1700000001}}"#,
            &g,
        );
        assert_eq!(num.start_ns, T0 + 123_456_789);
        assert_eq!(num.end_ns, T0 + NANOS_PER_SEC);
        let naive = q(
            r#"{"dateRange":{"startTime":"2023-11-14T22:13:20","endTime":null}}"#,
            &g,
        );
        assert_eq!(naive.start_ns, T0);
        assert_eq!(naive.end_ns, i64::MAX);
        assert_eq!(epoch_seconds("1.7e9"), Some(1_700_000_000 * NANOS_PER_SEC));
        assert_eq!(epoch_seconds("-1.5"), Some(-1_500_000_000));
        assert!(
            parse_query(br#"{"dateRange":{"startTime":"yesterday"}}"#, &g)
                .unwrap_err()
                .contains("dateRange.startTime")
        );
        assert!(parse_query(br#"{"pageSize":0}"#, &g).is_err());
        assert!(parse_query(br#"{"userTypes":["ROBOT"]}"#, &g).is_err());
        assert!(parse_query(b"not json", &g).is_err());
    }

    #[test]
    fn type_names_in_three_spellings() {
        assert_eq!(type_filter_name("logged_in"), "logged_in");
        assert_eq!(type_filter_name("audit_log::logged_in/1"), "logged_in");
        assert_eq!(type_filter_name("LoggedIn"), "logged_in");
    }

    #[test]
    fn selection_respects_range_bounds_and_counts() {
        let g = gen(0);
        let start = g.timeline.occurred_ns(100);
        let end = g.timeline.occurred_ns(200);
        let body = format!(
            r#"{{"dateRange":{{"startTime":{}.{:09},"endTime":{}.{:09}}}}}"#,
            start / NANOS_PER_SEC,
            start % NANOS_PER_SEC,
            end / NANOS_PER_SEC,
            end % NANOS_PER_SEC
        );
        let sel = Selection::new(g.clone(), &q(&body, &g), T0);
        let got = all(&sel);
        let want: Vec<u64> = (0..20_000)
            .filter(|&i| (start..end).contains(&g.timeline.occurred_ns(i)))
            .collect();
        assert_eq!(got, want);
        assert_eq!(sel.count(), want.len() as u64);
        let mut pos = sel.seek(10);
        assert_eq!(sel.next(&mut pos), Some(want[10]));
    }

    #[test]
    fn lagging_events_are_hidden_until_visible() {
        let g = gen(300);
        let now = T0 + 600 * NANOS_PER_SEC;
        let sel = Selection::new(g.clone(), &q("{}", &g), now);
        let got = all(&sel);
        let want: Vec<u64> = (0..30_000)
            .filter(|&i| g.timeline.visible(i, now))
            .collect();
        assert_eq!(got, want);
        assert_eq!(sel.count(), want.len() as u64);
        // Some recent events are missing "in the middle", not only at the end.
        let last = *got.last().unwrap();
        assert!(got.len() < (last + 1) as usize);
        let mut pos = sel.seek(got.len() as u64 - 5);
        assert_eq!(sel.next(&mut pos), Some(got[got.len() - 5]));
    }

    #[test]
    fn filters_select_matching_events_only() {
        let g = gen(0);
        let sel = Selection::new(
            g.clone(),
            &q(
                r#"{"eventTypes":["search_issued","LoggedIn"],"userTypes":["Api_Client"]}"#,
                &g,
            ),
            T0,
        );
        let got = all(&sel);
        assert!(got.len() > 100);
        for &i in &got {
            let mut s = String::new();
            g.render(i, &mut s);
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            assert_eq!(v["actorType"], "API_CLIENT");
            let t = v["type$"].as_str().unwrap();
            assert!(
                t.contains("search_issued") || t.contains("logged_in"),
                "{t}"
            );
        }
        assert_eq!(sel.count(), got.len() as u64);
        let mut pos = sel.seek(7);
        assert_eq!(sel.next(&mut pos), Some(got[7]));

        // Actor and address filters.
        let mut s = String::new();
        g.render(got[0], &mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let body = serde_json::json!({"actorIds":[v["actorId"]],"actorNames":[v["actorName"]]})
            .to_string();
        let by_actor = all(&Selection::new(g.clone(), &q(&body, &g), T0));
        assert!(by_actor.contains(&got[0]));
        for i in by_actor {
            let mut s = String::new();
            g.render(i, &mut s);
            assert!(s.contains(v["actorId"].as_str().unwrap()));
        }
        let none = Selection::new(g.clone(), &q(r#"{"eventTypes":["no_such_type"]}"#, &g), T0);
        assert_eq!(none.count(), 0);
    }

    #[test]
    fn resource_and_affected_user_filters() {
        let g = gen(0);
        let roles = Selection::new(
            g.clone(),
            &q(r#"{"eventTypes":["user_roles_assigned"]}"#, &g),
            T0,
        );
        let first = all(&roles)[0];
        let mut s = String::new();
        g.render(first, &mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let uid = v["userId"].as_str().unwrap();
        for body in [
            serde_json::json!({"resourceIds":[uid]}),
            serde_json::json!({"affectedUserIds":[uid]}),
            serde_json::json!({"affectedUserNames":[v["username"]]}),
        ] {
            let got = all(&Selection::new(g.clone(), &q(&body.to_string(), &g), T0));
            assert!(got.contains(&first), "{body}");
            for i in got {
                let mut s = String::new();
                g.render(i, &mut s);
                assert!(s.contains(uid), "{body}: {s}");
            }
        }
    }
}
