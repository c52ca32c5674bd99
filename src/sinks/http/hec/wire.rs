//! What Splunk HEC's requests and answers look like.
//!
//! Owned here: the endpoints under the configured base URL ([`endpoint`]), the headers
//! of every request ([`base_headers`]: `Authorization: Splunk <token>` marked
//! sensitive, the `X-Splunk-Request-Channel`, JSON), the random channel ([`uuid_v4`]),
//! the event envelope ([`HecEnvelope`], a [`BodyWriter`]) and the reading of HEC's
//! answer body ([`HecAnswer`], [`classify`]).
//!
//! Not here: sending (`courier`), the health checks (`hec::health`), the indexer
//! acknowledgements and the sink's set-up (`hec`).

use crate::config::HecOptions;
use crate::event::{Batch, Event};
use crate::sinks::error::SinkError;
use crate::sinks::http::body::{BodyWriter, Embedding, Span};
use crate::sinks::http::client::server_text;
use crate::sinks::http::verdict::{classify_status, status_detail, Verdict};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use std::time::Duration;
use url::Url;

/// The header HEC reads the channel from.
const CHANNEL: &str = "x-splunk-request-channel";

/// A random UUID version 4 (RFC 4122 layout), for the request channel. Not a secret
/// and not a security boundary: fastrand's generator is enough.
pub(crate) fn uuid_v4() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Appends epoch milliseconds as seconds with three decimals (`1700000000.123`).
fn write_epoch_seconds(out: &mut Vec<u8>, millis: i64) {
    if millis < 0 {
        out.push(b'-');
    }
    let abs = millis.unsigned_abs();
    out.extend_from_slice(itoa::Buffer::new().format(abs / 1000).as_bytes());
    let frac = abs % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Writes HEC envelopes.
pub(crate) struct HecEnvelope {
    /// `,"host":...,"source":...` with the configured values, JSON-escaped once.
    meta: String,
    /// The JSON string of the current batch's source name, escaped once per batch.
    source_name: String,
}

impl HecEnvelope {
    pub(crate) fn new(o: &HecOptions) -> Self {
        let mut meta = String::new();
        let mut field = |k: &str, v: &str| {
            meta.push_str(&format!(",\"{k}\":"));
            meta.push_str(&serde_json::Value::from(v).to_string());
        };
        field("host", &o.host);
        for (k, v) in [
            ("source", &o.source),
            ("sourcetype", &o.sourcetype),
            ("index", &o.index),
        ] {
            if let Some(v) = v {
                field(k, v);
            }
        }
        HecEnvelope {
            meta,
            source_name: "\"\"".into(),
        }
    }
}

impl BodyWriter for HecEnvelope {
    fn begin_batch(&mut self, batch: &Batch) {
        self.source_name = serde_json::Value::from(&*batch.source).to_string();
    }

    fn write(
        &self,
        body: &mut Vec<u8>,
        event: &Event,
        record: &[u8],
        embedding: Embedding,
    ) -> Span {
        body.extend_from_slice(b"{\"time\":");
        write_epoch_seconds(body, event.occurred.timestamp_millis());
        body.extend_from_slice(self.meta.as_bytes());
        body.extend_from_slice(b",\"fields\":{\"c42_source\":\"");
        body.extend_from_slice(event.kind.as_str().as_bytes());
        body.extend_from_slice(b"\",\"c42_source_name\":");
        body.extend_from_slice(self.source_name.as_bytes());
        body.extend_from_slice(b"},\"event\":");
        let span = embedding.write(body, record);
        body.push(b'}');
        span
    }
}

/// HEC's answer body: `{"text": "...", "code": N, "ackId": N, "invalid-event-number": N}`.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct HecAnswer {
    pub(super) text: Option<String>,
    pub(super) code: Option<i64>,
    #[serde(rename = "ackId")]
    pub(super) ack_id: Option<u64>,
    #[serde(rename = "invalid-event-number")]
    pub(super) invalid_event: Option<i64>,
}

impl HecAnswer {
    pub(super) fn parse(body: &[u8]) -> HecAnswer {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// The classification of an answer to an event request (see the module doc). HEC's
/// `text`, `code` and `invalid-event-number` go into the detail: "http 400 Bad
/// Request: Invalid data format (code 6, invalid-event-number 3)".
pub(crate) fn classify(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Verdict {
    let a = HecAnswer::parse(body);
    let mut text = match &a.text {
        Some(t) => server_text(t.as_bytes()),
        None => server_text(body),
    };
    if let Some(code) = a.code {
        text.push_str(&format!(" (code {code}"));
        if let Some(n) = a.invalid_event {
            text.push_str(&format!(", invalid-event-number {n}"));
        }
        text.push(')');
    }
    let detail = status_detail(status, text.trim());
    // Code 9 is "server is busy": whatever the status, waiting helps.
    if a.code == Some(9) && !status.is_success() {
        return Verdict::Retry {
            kind: "http_503",
            retry_after,
            detail,
        };
    }
    if status == StatusCode::BAD_REQUEST {
        let stall = |kind| Verdict::Stall {
            kind,
            retry_after,
            detail: detail.clone(),
        };
        return match a.code {
            Some(7) => stall("hec_index"),
            Some(10 | 11) => stall("hec_channel"),
            Some(14 | 16) => stall("hec_config"),
            _ => Verdict::Reject {
                reason: "http_400",
                first_bad: a.invalid_event.and_then(|n| usize::try_from(n).ok()),
                detail,
            },
        };
    }
    classify_status(status, retry_after, detail)
}

/// `base` with `tail` appended to its path (an endpoint may sit under a prefix).
pub(super) fn endpoint(base: &Url, tail: &[&str]) -> Url {
    let mut u = base.clone();
    if let Ok(mut segs) = u.path_segments_mut() {
        segs.pop_if_empty().extend(tail);
    }
    u
}

/// The headers of every request: the token (marked sensitive), the channel, JSON.
pub(super) fn base_headers(
    opts: &HecOptions,
    channel: &str,
    shown: &str,
) -> Result<HeaderMap, SinkError> {
    let bad = |what: &str| SinkError::Http {
        url: shown.to_string(),
        kind: "config",
        retriable: false,
        detail: format!("the {what} holds characters that cannot go in an http header"),
    };
    let mut auth = HeaderValue::from_str(&format!("Splunk {}", opts.token.expose()))
        .map_err(|_| bad("token"))?;
    auth.set_sensitive(true);
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, auth);
    h.insert(
        CHANNEL,
        HeaderValue::from_str(channel).map_err(|_| bad("channel"))?,
    );
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpBatching;
    use crate::encode::Format;
    use crate::event::SourceKind;
    use crate::secret::Secret;
    use crate::sinks::http::testkit::{batch_of, batcher, event};
    use serde_json::value::RawValue;
    use std::sync::Arc;

    fn opts() -> HecOptions {
        HecOptions {
            endpoint: Url::parse("https://splunk.example.com:8088").unwrap(),
            token: Secret::new("00000000-0000-0000-0000-000000000000"),
            index: Some("code42".into()),
            source: None,
            sourcetype: Some("code42:\"audit\"".into()),
            host: "fwd01".into(),
            channel: None,
            gzip: true,
            batching: HttpBatching {
                max_events: 500,
                max_bytes: 1 << 20,
                max_wait: Duration::from_secs(1),
            },
            indexer_ack: true,
            ack_poll_interval: Duration::from_secs(1),
            ack_poll_initial: Duration::from_millis(20),
            max_pending_acks: 64,
            ack_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            tls: crate::config::TlsOptions::default(),
        }
    }

    #[test]
    fn uuid_v4_layout() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(a
            .bytes()
            .all(|c| c == b'-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(&parts[2][..1], "4");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn epoch_seconds_with_millis() {
        let s = |ms| {
            let mut out = Vec::new();
            write_epoch_seconds(&mut out, ms);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(s(1_700_000_000_123), "1700000000.123");
        assert_eq!(s(1_700_000_000_005), "1700000000.005");
        assert_eq!(s(0), "0.000");
        assert_eq!(s(-1_500), "-1.500");
    }

    #[test]
    fn envelopes_carry_metadata_and_the_record() {
        let mut w = HecEnvelope::new(&opts());
        w.begin_batch(&Batch {
            source: Arc::from("audit \"main\""),
            events: Vec::new(),
        });
        let occurred = chrono::DateTime::from_timestamp_millis(1_700_000_000_042).unwrap();
        let ev = Event::new(
            SourceKind::Alerts,
            RawValue::from_string(r#"{"id":"a1"}"#.into()).unwrap(),
            occurred,
        );
        let mut body = Vec::new();
        w.write(&mut body, &ev, br#"{"id":"a1"}"#, Embedding::JsonValue);
        w.write(&mut body, &ev, b"CEF:0|x|y", Embedding::JsonString);
        let envs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(envs.len(), 2);
        let e = &envs[0];
        assert_eq!(e["time"].as_f64().unwrap(), 1_700_000_000.042);
        assert_eq!(e["host"], "fwd01");
        assert_eq!(e["index"], "code42");
        assert_eq!(e["sourcetype"], "code42:\"audit\"");
        assert!(
            e.get("source").is_none(),
            "unset source is left to the token"
        );
        assert_eq!(e["fields"]["c42_source"], "alerts");
        assert_eq!(e["fields"]["c42_source_name"], "audit \"main\"");
        assert_eq!(e["event"]["id"], "a1");
        assert_eq!(envs[1]["event"], "CEF:0|x|y");
    }

    #[test]
    fn classification_of_hec_answers() {
        let c =
            |s: u16, body: &str| classify(StatusCode::from_u16(s).unwrap(), body.as_bytes(), None);
        assert_eq!(
            c(200, r#"{"text":"Success","code":0,"ackId":3}"#),
            Verdict::Accepted
        );
        match c(503, r#"{"text":"Server is busy","code":9}"#) {
            Verdict::Retry { kind, detail, .. } => {
                assert_eq!(kind, "http_503");
                assert_eq!(
                    detail,
                    "http 503 Service Unavailable: Server is busy (code 9)"
                );
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            c(500, "<html>"),
            Verdict::Retry {
                kind: "http_5xx",
                ..
            }
        ));
        assert!(matches!(
            c(429, ""),
            Verdict::Retry {
                kind: "http_429",
                ..
            }
        ));
        assert!(matches!(
            c(400, r#"{"text":"Server is busy","code":9}"#),
            Verdict::Retry { .. }
        ));
        for (s, body, reason, detail, first_bad) in [
            (
                400,
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":3}"#,
                "http_400",
                "http 400 Bad Request: Invalid data format (code 6, invalid-event-number 3)",
                Some(3),
            ),
            (
                400,
                r#"{"text":"Event field is required","code":12}"#,
                "http_400",
                "http 400 Bad Request: Event field is required (code 12)",
                None,
            ),
            (
                400,
                r#"{"text":"No data","code":5}"#,
                "http_400",
                "http 400 Bad Request: No data (code 5)",
                None,
            ),
            (
                413,
                "Content too large",
                "http_413",
                "http 413 Payload Too Large: Content too large",
                None,
            ),
        ] {
            assert_eq!(
                c(s, body),
                Verdict::Reject {
                    reason,
                    detail: detail.into(),
                    first_bad,
                },
                "{body}"
            );
        }
        // The token, the index, the channel: the set-up is wrong, not the data.
        for (s, body, kind, detail) in [
            (
                400,
                r#"{"text":"Incorrect index","code":7}"#,
                "hec_index",
                "http 400 Bad Request: Incorrect index (code 7)",
            ),
            (
                400,
                r#"{"text":"Data channel is missing","code":10}"#,
                "hec_channel",
                "http 400 Bad Request: Data channel is missing (code 10)",
            ),
            (
                401,
                r#"{"text":"Token is required","code":2}"#,
                "http_401",
                "http 401 Unauthorized: Token is required (code 2)",
            ),
            (
                403,
                r#"{"text":"Invalid token","code":4}"#,
                "http_403",
                "http 403 Forbidden: Invalid token (code 4)",
            ),
            (
                403,
                r#"{"text":"Token disabled","code":1}"#,
                "http_403",
                "http 403 Forbidden: Token disabled (code 1)",
            ),
        ] {
            assert_eq!(
                c(s, body),
                Verdict::Stall {
                    kind,
                    retry_after: None,
                    detail: detail.into()
                },
                "{body}"
            );
        }
    }

    #[test]
    fn endpoints_keep_a_path_prefix() {
        let base = Url::parse("https://lb.example.com/splunk").unwrap();
        assert_eq!(
            endpoint(&base, &["services", "collector", "event"]).as_str(),
            "https://lb.example.com/splunk/services/collector/event"
        );
        let base = Url::parse("https://splunk:8088").unwrap();
        assert_eq!(
            endpoint(&base, &["services", "collector", "ack"]).as_str(),
            "https://splunk:8088/services/collector/ack"
        );
    }

    #[test]
    fn batcher_with_envelopes_gives_json_records_back() {
        let (mut b, mut ledger, mut ready) = batcher(
            HecEnvelope::new(&opts()),
            Format::JsonRaw,
            opts().batching,
            true,
        );
        let (sb, _w) = batch_of(vec![event("{\n \"a\": 1\n}")]);
        b.push(sb, &mut ledger, &mut ready);
        let c = b.flush().unwrap();
        // The record as dead-lettered: the event, its line breaks made spaces.
        assert_eq!(c.records().unwrap(), vec![b"{  \"a\": 1 }".to_vec()]);
    }
}
