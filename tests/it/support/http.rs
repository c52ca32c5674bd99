//! What the HEC and HTTP sink tests feed a sink (`support::sink::TestSink`) and read
//! back: audit events with a unique `seq`, dead letters.

use super::{event_at, PATIENCE};
use c42fwd::ack::{AckWaiter, Outcome};
use c42fwd::config::TlsOptions;
use c42fwd::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::event::Event;
use c42fwd::retry::BackoffPolicy;
use std::path::Path;
use std::time::Duration;

pub fn fast_retry() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(100),
        max_retries: None,
    }
}

pub fn plain_tls() -> TlsOptions {
    TlsOptions::default()
}

pub fn encoding(format: Format) -> EncoderOptions {
    EncoderOptions {
        format,
        syslog: SyslogStyle::None,
        framing: Framing::None,
        facility: 13,
        hostname: "c42fwd-test".into(),
        app_name: "c42fwd".into(),
    }
}

pub async fn outcome(waiter: AckWaiter) -> Outcome {
    tokio::time::timeout(PATIENCE, waiter.wait())
        .await
        .expect("batch resolved in time")
}

/// An Audit Log event with a unique `seq`; `marker` is put in its `note` when given.
pub fn audit_event(seq: usize, marker: Option<&str>) -> Event {
    let ts = format!(
        "2024-05-01T12:{:02}:{:02}.{:03}Z",
        (seq / 60) % 60,
        seq % 60,
        seq % 1000
    );
    let json = serde_json::json!({
        "type$": "audit_log::logged_in/1",
        "actorId": format!("9{seq:08}"),
        "actorName": format!("user{seq}@example.com"),
        "actorIpAddress": "10.0.0.1",
        "timestamp": ts,
        "seq": seq,
        "note": marker.unwrap_or("line one\nline two \"quoted\" | pipe = equals"),
    });
    let occurred = chrono::DateTime::parse_from_rfc3339(&ts)
        .expect("rfc 3339")
        .with_timezone(&chrono::Utc);
    event_at(&json.to_string(), occurred)
}

/// Reads a dead-letter file: one JSON object per line.
pub fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead-letter line is json"))
        .collect()
}
