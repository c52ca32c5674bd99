//! Sources: the pollers that read the Code42 API and hand batches to a route.
//!
//! [`window`] is the pure logic that decides what to forward and where to query next
//! (ARCHITECTURE.md, invariant 2); [`poll`] is the one poll/commit loop that drives it
//! with the API client, commits checkpoints only behind delivered batches (invariant 1)
//! and reports a source that is behind the lag window ([`catch_up`], pure), over a small
//! per-source [`poll::WindowFetch`]: [`audit`] (Audit Log search), [`alerts`]
//! (`query-alerts` + `query-details`), [`sync_log`] (Directory Sync Log),
//! [`sessions`] (Incydr sessions, each version once) and [`file_events`]
//! (`/v2/file-events`, paged by token); [`reread`] proves by the API's counts what the
//! previous poll read, so that a steady poll reads each event about once. Sources
//! never spawn tasks: the pipeline runs each poller's `run` future (checkpoint saves go
//! to tokio's blocking pool and are awaited in place).

pub mod alerts;
pub mod audit;
pub mod catch_up;
pub mod file_events;
pub mod poll;
pub mod reconcile;
pub mod reread;
pub mod sessions;
pub mod slices;
pub mod sync_log;
pub mod window;

pub use alerts::AlertsPoller;
pub use audit::AuditLogPoller;
pub use file_events::FileEventsPoller;
pub use poll::{SourceError, WindowFetch, WindowPoller};
pub use sessions::SessionsPoller;
pub use sync_log::SyncLogPoller;
