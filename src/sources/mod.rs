//! Sources: the pollers that read the Code42 API and hand batches to a route.
//!
//! [`window`] is the pure logic that decides what to forward and where to query next
//! (DESIGN invariant 2); [`audit`] is the Audit Log poller that drives it with the API
//! client and commits checkpoints only behind delivered batches (invariant 1). Sources
//! never spawn tasks: the pipeline runs each poller's `run` future.

pub mod audit;
pub mod window;

pub use audit::{AuditLogPoller, SourceError};
