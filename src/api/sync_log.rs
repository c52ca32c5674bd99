//! The Directory Sync Log (`docs/api.md`): `GET /api/v3/DirectorySyncLog` with
//! `eventOccurredAfter` / `eventOccurredBefore` (`yyyy-MM-dd'T'HH:mm:ss.SSSZ`, UTC),
//! `sortColumn=logEventTimeStamp`, `sortDirection=asc`, `page[number]`, `page[size]`, and
//! a Bearer token, on the tenant's base URL (both generations).
//!
//! Pages are cut into one `Box<RawValue>` per entry while they arrive
//! ([`super::stream`]), keeping the exact text the API sent: entries have no id, so the
//! window logic fingerprints that text.
//!
//! The query parameters have millisecond precision while the window logic works in
//! nanoseconds: the start is rounded down and the end up, so that the query always covers
//! the window; what it returns outside the window is dropped by the window logic.
//! Code42's article (`docs/api.md`) does not say whether `eventOccurredAfter` includes
//! its bound (the emulator does, like the Audit Log's `dateRange`; the name says it does
//! not), so the start is moved one more millisecond back: right either way, for the price
//! of re-reading one millisecond.
//!
//! Response: the legacy v3 envelope around the OpenAPI `DirectorySyncLogResponse`,
//! pages numbered from 1 (Code42's example asks for `page[number]=1`, `docs/api.md`), at most
//! [`MAX_SYNC_LOG_PAGE_SIZE`] entries a page.
//!
//! This module does not decide which window to query (that is
//! [`crate::sources::sync_log`]).

use super::stream::record_cap;
use super::{ApiClient, ApiError};
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The number of the first page (`page[number]`; Code42's example asks for page 1).
const FIRST_PAGE: u32 = 1;

/// The largest `page[size]`.
pub const MAX_SYNC_LOG_PAGE_SIZE: u32 = 1_000;

/// Where a response lists its entries: the legacy v3 envelope around the OpenAPI
/// `DirectorySyncLogResponse`, `{"data":{"Directory Sync Logs":[...],"PageNumber":n,
/// "PageSize":s,"TotalResults":t},"error":null,"warnings":null}`.
const ENTRIES_PATH: &[&[u8]] = &[b"data", b"Directory Sync Logs"];

/// The entry field that holds when the entry occurred (the `sortColumn`).
const TIME_FIELD: &str = "logEventTimeStamp";

/// One `DirectorySyncLog` request.
#[derive(Debug, Clone, Copy)]
pub struct SyncLogQuery {
    /// Inclusive.
    pub start: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
    /// 0-based (sent as the API numbers its pages).
    pub page: u32,
    pub page_size: u32,
}

/// One page: the entries, oldest first, each as the exact JSON text received.
#[derive(Debug, Default)]
pub struct SyncLogPage {
    pub entries: Vec<Box<RawValue>>,
    /// `data.TotalResults`: how many entries the whole query matches, when sent.
    pub total_results: Option<u64>,
}

/// Which side of the window a query time bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncLogTimeBound {
    /// `eventOccurredAfter`: rounded down to the millisecond, then one more back
    /// (whether "after" includes its bound is not documented).
    After,
    /// `eventOccurredBefore`: rounded up to the millisecond.
    Before,
}

/// A query time as the API takes it: `yyyy-MM-dd'T'HH:mm:ss.SSS` and `Z`, UTC, widened
/// outwards to whole milliseconds (see the module docs).
pub fn sync_log_time_param(t: DateTime<Utc>, bound: SyncLogTimeBound) -> String {
    let sub_milli = i64::from(t.nanosecond() % 1_000_000);
    let t = match bound {
        SyncLogTimeBound::After => {
            t - TimeDelta::nanoseconds(sub_milli) - TimeDelta::milliseconds(1)
        }
        SyncLogTimeBound::Before if sub_milli == 0 => t,
        SyncLogTimeBound::Before => t + TimeDelta::nanoseconds(1_000_000 - sub_milli),
    };
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// When a sync log entry occurred (`logEventTimeStamp`), read from its raw text. The
/// error says why it could not be read.
pub fn sync_log_entry_time(raw: &str) -> Result<DateTime<Utc>, String> {
    #[derive(Deserialize)]
    struct View<'a> {
        #[serde(borrow, default, rename = "logEventTimeStamp")]
        time: Option<&'a RawValue>,
    }
    if !raw.trim_start().starts_with('{') {
        return Err("entry is not a json object".to_string());
    }
    let v: View<'_> =
        serde_json::from_str(raw).map_err(|e| format!("entry is not a json object: {e}"))?;
    let t = v.time.ok_or_else(|| format!("no {TIME_FIELD} field"))?;
    super::parse_time_value(t.get())
}

fn query_params(q: &SyncLogQuery) -> Vec<(&'static str, String)> {
    vec![
        (
            "eventOccurredAfter",
            sync_log_time_param(q.start, SyncLogTimeBound::After),
        ),
        (
            "eventOccurredBefore",
            sync_log_time_param(q.end, SyncLogTimeBound::Before),
        ),
        ("sortColumn", TIME_FIELD.to_string()),
        ("sortDirection", "asc".to_string()),
        ("page[number]", (q.page + FIRST_PAGE).to_string()),
        (
            "page[size]",
            q.page_size.clamp(1, MAX_SYNC_LOG_PAGE_SIZE).to_string(),
        ),
    ]
}

impl ApiClient {
    /// One page of `GET /api/v3/DirectorySyncLog`.
    pub async fn query_sync_log(&self, q: &SyncLogQuery) -> Result<SyncLogPage, ApiError> {
        let cap = record_cap(q.page_size.clamp(1, MAX_SYNC_LOG_PAGE_SIZE) as usize);
        let (entries, total_results) = self
            .get_listing(
                "GET /api/v3/DirectorySyncLog",
                "/api/v3/DirectorySyncLog",
                &query_params(q),
                ENTRIES_PATH,
                b"TotalResults",
                cap,
                "data.\"Directory Sync Logs\"",
            )
            .await?;
        Ok(SyncLogPage {
            entries,
            total_results,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn query_times_widen_outwards_to_whole_milliseconds() {
        use SyncLogTimeBound::{After, Before};
        for (at, bound, want) in [
            (
                "2024-05-01T10:00:00.123456789Z",
                After,
                "2024-05-01T10:00:00.122Z",
            ),
            (
                "2024-05-01T10:00:00.123456789Z",
                Before,
                "2024-05-01T10:00:00.124Z",
            ),
            (
                "2024-05-01T10:00:00.123Z",
                After,
                "2024-05-01T10:00:00.122Z",
            ),
            (
                "2024-05-01T10:00:00.123Z",
                Before,
                "2024-05-01T10:00:00.123Z",
            ),
            (
                "2024-05-01T23:59:59.9995Z",
                Before,
                "2024-05-02T00:00:00.000Z",
            ),
        ] {
            assert_eq!(sync_log_time_param(t(at), bound), want, "{at} {bound:?}");
        }
    }

    #[test]
    fn query_parameters() {
        let q = SyncLogQuery {
            start: t("2024-05-01T10:00:00Z"),
            end: t("2024-05-01T11:00:00.0000001Z"),
            page: 0,
            page_size: 250,
        };
        let p = query_params(&q);
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("eventOccurredAfter"), Some("2024-05-01T09:59:59.999Z"));
        assert_eq!(get("eventOccurredBefore"), Some("2024-05-01T11:00:00.001Z"));
        assert_eq!(get("sortColumn"), Some("logEventTimeStamp"));
        assert_eq!(get("sortDirection"), Some("asc"));
        assert_eq!(get("page[number]"), Some(FIRST_PAGE.to_string().as_str()));
        assert_eq!(get("page[size]"), Some("250"));
    }

    #[test]
    fn entry_time() {
        assert_eq!(
            sync_log_entry_time(r#"{"logEventTimeStamp":"2024-05-01T10:00:00.123Z","action":"x"}"#),
            Ok(t("2024-05-01T10:00:00.123Z"))
        );
        assert!(sync_log_entry_time(r#"{"action":"x"}"#)
            .unwrap_err()
            .contains("logEventTimeStamp"));
        assert!(sync_log_entry_time("[]").is_err());
        assert!(sync_log_entry_time(r#"["2024-05-01T10:00:00Z"]"#).is_err());
    }
}
