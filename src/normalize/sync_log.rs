//! The Directory Sync Log data set: the `action`s whose meaning Code42 documents, each
//! with a display name, a category and a CEF / LEEF severity; and the generic mapping of
//! every other action.
//!
//! Owned here: the table of actions and the values of the generic mapping. Code42
//! publishes no list of the values `action` takes (`docs/api.md`, "Directory Sync Log"):
//! its article names the entry's columns (`username`, `action`, `field`, `oldValue`,
//! `newValue`, `providerName`, `logEventTimeStamp`) and lets a client sort on `action`,
//! nothing more. So [`SYNC_LOG_ACTIONS`] holds only documented actions, which today is
//! none, and c42fwd does not pretend to know what an action means: every action keeps
//! its own text as class id (what an operator's SIEM rules match on), a humanized name,
//! category [`SYNC_LOG_CATEGORY`] and severity [`SYNC_LOG_DEFAULT_SEVERITY`]. A row
//! belongs in the table only with the Code42 source that documents it, written in
//! `docs/api.md`. The actions the emulator generates are the emulator's own (the
//! `c42fwd-emulator` crate), not facts about the API.
//! Deliberately not here: output keys (`crate::encode`).

/// One Sync Log action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncLogAction {
    /// As the API spells it; also the Device Event Class ID.
    pub name: &'static str,
    pub display: &'static str,
    pub category: &'static str,
    /// CEF severity 0-10.
    pub severity: u8,
}

/// The actions Code42 documents: none yet (module doc).
pub const SYNC_LOG_ACTIONS: &[SyncLogAction] = &[];

/// Class id of an entry without a readable `action`.
pub const SYNC_LOG_CLASS_ID: &str = "sync_log_entry";
/// Name of an entry without a readable `action`.
pub const SYNC_LOG_NAME: &str = "Directory sync log entry";
/// Category of actions the table does not know.
pub const SYNC_LOG_CATEGORY: &str = "sync_log";
/// Severity of actions the table does not know: the Audit Log catalog's routine level.
pub const SYNC_LOG_DEFAULT_SEVERITY: u8 = 3;

/// The action's row, by the API's name.
pub fn sync_log_action(name: &str) -> Option<&'static SyncLogAction> {
    SYNC_LOG_ACTIONS.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn actions_are_unique_and_in_range() {
        let mut names = HashSet::new();
        for a in SYNC_LOG_ACTIONS {
            assert!(names.insert(a.name), "{} twice", a.name);
            assert!(a.severity <= 10);
            assert_eq!(sync_log_action(a.name), Some(a));
        }
        assert_eq!(sync_log_action("user_added"), None);
    }
}
