//! Incydr sessions (`docs/api.md`, Sessions): `GET /v1/sessions` with `on_or_after` /
//! `before` (epoch milliseconds, on the session's `beginTime`), `has_alerts`,
//! `order_by=end_time`, `sort_direction=ASC`, `page_number` (0-based) and `page_size`
//! (at most [`MAX_SESSION_PAGE_SIZE`]), Bearer token, on the tenant's base URL; and
//! `GET /v1/sessions/{id}/events`, a session's file events.
//!
//! Pages are cut into one `Box<RawValue>` per session while they arrive
//! ([`super::stream`]): the exact text the API sent is what is forwarded. The API can
//! only filter and page by `beginTime` window and order by `endTime` or score, never by
//! `beginTime`; putting a window's sessions in time order is the source's job
//! ([`crate::sources::sessions`]).
//!
//! The query times have millisecond precision while the window logic works in
//! nanoseconds: the start is rounded down and the end up, so that the query always covers
//! the window; what it returns outside the window is the window logic's to drop.

use super::stream::record_cap;
use super::{ApiClient, ApiError, CallAuth};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The largest `page_size` (the OpenAPI description: "Max of '50'").
pub const MAX_SESSION_PAGE_SIZE: u32 = 50;

/// Where a response lists its sessions: `{"items":[...],"totalCount":n}`.
const ITEMS_PATH: &[&[u8]] = &[b"items"];

/// One `GET /v1/sessions` request.
#[derive(Debug, Clone, Copy)]
pub struct SessionQuery {
    /// Inclusive, on `beginTime`.
    pub start: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
    /// 0-based.
    pub page: u32,
    pub page_size: u32,
    pub has_alerts: bool,
}

/// One page: the sessions as received, in the API's order (by `endTime`, oldest first).
#[derive(Debug, Default)]
pub struct SessionsPage {
    pub items: Vec<Box<RawValue>>,
    /// `totalCount`: how many sessions the whole query matches.
    pub total_count: Option<u64>,
}

/// The keys of a session the source needs: its id, begin time and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub id: Option<String>,
    /// `beginTime` (epoch ms), or why it cannot be read.
    pub begin: Result<DateTime<Utc>, String>,
    /// `lastUpdated` (epoch ms), the session's version.
    pub last_updated: Option<i64>,
}

impl SessionKeys {
    /// Reads the keys of one session's JSON text; never fails (a missing key is `None`
    /// or an `Err` reason).
    pub fn parse(raw: &str) -> SessionKeys {
        #[derive(Deserialize)]
        struct Keys<'a> {
            #[serde(rename = "sessionId", borrow, default)]
            id: Option<std::borrow::Cow<'a, str>>,
            #[serde(rename = "beginTime", default)]
            begin: Option<serde_json::Value>,
            #[serde(rename = "lastUpdated", default)]
            last_updated: Option<serde_json::Value>,
        }
        let Ok(k) = serde_json::from_str::<Keys<'_>>(raw) else {
            return SessionKeys {
                id: None,
                begin: Err("the session is not a JSON object with readable keys".into()),
                last_updated: None,
            };
        };
        let ms = |v: &Option<serde_json::Value>| v.as_ref().and_then(serde_json::Value::as_i64);
        let begin = match ms(&k.begin) {
            Some(t) => DateTime::from_timestamp_millis(t)
                .ok_or_else(|| format!("beginTime {t} is out of range")),
            None => Err("no beginTime in epoch milliseconds".into()),
        };
        SessionKeys {
            id: k.id.map(|s| s.into_owned()).filter(|s| !s.is_empty()),
            begin,
            last_updated: ms(&k.last_updated),
        }
    }
}

/// The query parameters of `q` (times widened outwards to whole milliseconds).
fn query_params(q: &SessionQuery) -> Vec<(&'static str, String)> {
    let floor_ms = q.start.timestamp_millis();
    let end_ms = q.end.timestamp_millis();
    let ceil_ms = if q.end.timestamp_subsec_nanos() % 1_000_000 == 0 {
        end_ms
    } else {
        end_ms.saturating_add(1)
    };
    vec![
        ("on_or_after", floor_ms.to_string()),
        ("before", ceil_ms.to_string()),
        ("has_alerts", q.has_alerts.to_string()),
        ("order_by", "end_time".into()),
        ("sort_direction", "ASC".into()),
        ("page_number", q.page.to_string()),
        (
            "page_size",
            q.page_size.clamp(1, MAX_SESSION_PAGE_SIZE).to_string(),
        ),
    ]
}

impl ApiClient {
    /// One page of `GET /v1/sessions`.
    pub async fn query_sessions(&self, q: &SessionQuery) -> Result<SessionsPage, ApiError> {
        let cap = record_cap(q.page_size.clamp(1, MAX_SESSION_PAGE_SIZE) as usize);
        let (items, total_count) = self
            .get_listing(
                "GET /v1/sessions",
                "/v1/sessions",
                &query_params(q),
                ITEMS_PATH,
                b"totalCount",
                cap,
                "items",
            )
            .await?;
        Ok(SessionsPage { items, total_count })
    }

    /// The file events of one session (`GET /v1/sessions/{id}/events`): the
    /// `queryResult` object as received; `None` when the API answers 404 (no such
    /// session, or a session without alerts, which the API documents as a 404).
    pub async fn session_events(&self, id: &str) -> Result<Option<Box<RawValue>>, ApiError> {
        let endpoint = "GET /v1/sessions/{id}/events";
        let mut url = self.base_url.clone();
        // The id goes in as one path segment, percent-encoded, whatever it holds.
        match url.path_segments_mut() {
            Ok(mut segs) => {
                segs.pop_if_empty().extend(["v1", "sessions", id, "events"]);
            }
            Err(()) => {
                return Err(ApiError::Decode {
                    endpoint: endpoint.to_string(),
                    reason: "the tenant's base url cannot take a path".into(),
                })
            }
        }
        let body = match self
            .call(endpoint, CallAuth::Bearer, |c| c.get(url.clone()))
            .await
        {
            Ok(b) => b,
            Err(ApiError::Rejected { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        #[derive(Deserialize)]
        struct Body {
            #[serde(rename = "queryResult")]
            query_result: Option<Box<RawValue>>,
        }
        let parsed: Body = serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
            endpoint: endpoint.to_string(),
            reason: format!("the body is not a JSON object: {e}"),
        })?;
        Ok(parsed.query_result)
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
        let q = SessionQuery {
            start: t("2024-05-01T10:00:00.123456789Z"),
            end: t("2024-05-01T11:00:00.000000001Z"),
            page: 2,
            page_size: 500,
            has_alerts: true,
        };
        let p = query_params(&q);
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("on_or_after"), "1714557600123");
        assert_eq!(get("before"), "1714561200001");
        assert_eq!(get("page_size"), "50", "capped at the API's largest page");
        assert_eq!(get("page_number"), "2");
        assert_eq!(get("sort_direction"), "ASC");
        assert_eq!(get("order_by"), "end_time");
        let q = SessionQuery {
            end: t("2024-05-01T11:00:00Z"),
            ..q
        };
        assert_eq!(query_params(&q)[1].1, "1714561200000");
    }

    #[test]
    fn keys_are_read_from_any_session_text() {
        let k = SessionKeys::parse(
            r#"{"sessionId":"s-1","beginTime":1714557600123,"lastUpdated":1714557700000,"x":[1]}"#,
        );
        assert_eq!(k.id.as_deref(), Some("s-1"));
        assert_eq!(k.begin, Ok(t("2024-05-01T10:00:00.123Z")));
        assert_eq!(k.last_updated, Some(1714557700000));
        let k = SessionKeys::parse(r#"{"sessionId":"","beginTime":"yesterday"}"#);
        assert_eq!(k.id, None);
        assert!(k.begin.is_err());
        assert_eq!(k.last_updated, None);
        assert!(SessionKeys::parse("[1,2]").begin.is_err());
    }
}
