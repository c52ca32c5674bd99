//! The source tables, one struct per `type`: Audit Log filters only on an `audit_log`
//! source, alert filter groups only on an `alerts` source, neither on a `sync_log`
//! source; anything else is refused while the file is read.
//!
//! Ranges, terms and operators are checked in `config::source`, not here.

use super::tagged::kinds;
use super::{RawAlertFilterGroup, RawAuditFilters};
use std::time::Duration;

kinds! {
    section "source", tag SourceType, table RawSource, kind RawSourceKind,
    hints [],
    /// The keys every source takes: its tenant, timing, start and paging.
    shared RawSourceShared {
        tenant: String,
        #[serde(default, with = "humantime_serde")]
        lag: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        poll_interval: Option<Duration>,
        // `"30d"` (how far back) or an RFC 3339 time.
        start: Option<String>,
        page_size: Option<i64>,
        // Compare closed windows with the API's own counts (default true).
        reconcile: Option<bool>,
        // How long past `lag` a window is compared (default 10m).
        #[serde(default, with = "humantime_serde")]
        reconcile_after: Option<Duration>,
    };
    /// The Audit Log, with optional filters.
    AuditLog(RawAuditLog) = "audit_log" {
        filters: Option<RawAuditFilters>,
    }
    /// Alerts, with optional filter groups.
    Alerts(RawAlerts) = "alerts" {
        filter_groups: Option<Vec<RawAlertFilterGroup>>,
    }
    /// The Directory Sync Log.
    SyncLog(RawSyncLog) = "sync_log" {}
    /// Incydr sessions, each version once.
    Sessions(RawSessions) = "sessions" {
        has_alerts: Option<bool>,
        include_events: Option<bool>,
    }
    /// File Events, with optional filters and raw filter groups.
    FileEvents(RawFileEvents) = "file_events" {
        filters: Option<crate::config::file_events::RawFileEventFilters>,
        filter_groups: Option<Vec<crate::config::file_events::RawFileEventFilterGroup>>,
    }
}
