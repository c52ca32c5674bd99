//! Test helpers shared by the sinks' unit tests: events and sink batches with their
//! waiters.

use crate::ack::{ack_set, AckWaiter};
use crate::event::{Batch, Event, SourceKind};
use crate::route::SinkBatch;
use std::sync::Arc;

/// An Audit Log event with this JSON text, occurring now.
pub(crate) fn event(json: &str) -> Event {
    let raw = serde_json::value::RawValue::from_string(json.to_string()).expect("test json");
    Event::new(SourceKind::AuditLog, raw, chrono::Utc::now())
}

/// A sink batch of `events` from the source `audit`, and the waiter of its one token.
pub(crate) fn batch_of(events: Vec<Event>) -> (SinkBatch, AckWaiter) {
    let (mut tokens, waiter) = ack_set(1);
    let sb = SinkBatch {
        batch: Arc::new(Batch {
            source: Arc::from("audit"),
            events,
        }),
        ack: tokens.pop().expect("one token"),
    };
    (sb, waiter)
}
