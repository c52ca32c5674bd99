//! The unit of data that flows from a source to the sinks.
//!
//! An [`Event`] is one record as the Code42 API returned it: the JSON text is kept
//! byte for byte (`raw`), so that the JSON-raw output and the fingerprints are exactly
//! what the API said. Only the occurrence time is parsed up front, because the window
//! logic needs it; everything else is read by `normalize` when a sink encodes.
//!
//! A [`Batch`] is what a source hands to the pipeline in one go (usually one API page).
//! It is shared read-only between the sinks of its route (`Arc<Batch>`); each sink gets
//! its own [`crate::ack::AckToken`] beside it.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use std::sync::Arc;

/// Which Code42 data set an event came from. Decides the normalization mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    AuditLog,
    Alerts,
    SyncLog,
    Sessions,
    FileEvents,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::AuditLog => "audit_log",
            SourceKind::Alerts => "alerts",
            SourceKind::SyncLog => "sync_log",
            SourceKind::Sessions => "sessions",
            SourceKind::FileEvents => "file_events",
        }
    }
}

/// One event, as the API returned it.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: SourceKind,
    /// The JSON object exactly as received (no re-serialization).
    pub raw: Box<RawValue>,
    /// When the event occurred (the API's `timestamp` / `createdAt` / ...), UTC.
    pub occurred: DateTime<Utc>,
}

impl Event {
    /// Builds an event from a raw JSON object. Does not validate anything beyond
    /// what the caller already parsed; the occurrence time is the caller's reading.
    pub fn new(kind: SourceKind, raw: Box<RawValue>, occurred: DateTime<Utc>) -> Self {
        Event {
            kind,
            raw,
            occurred,
        }
    }

    /// The raw JSON text of the event.
    pub fn json(&self) -> &str {
        self.raw.get()
    }
}

/// A group of events that is delivered and acknowledged as a unit.
#[derive(Debug)]
pub struct Batch {
    /// The configured name of the source that produced it (used in logs and metrics).
    pub source: Arc<str>,
    pub events: Vec<Event>,
}
