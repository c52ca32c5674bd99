//! The Directory Sync Log data set: the `action`s c42fwd knows, with a display name, a
//! category and a CEF / LEEF severity.
//!
//! Owned here: the table of actions. Code42's article (`docs/api.md`) names the entry's
//! columns (`username`, `action`, `field`, `oldValue`, `newValue`, `providerName`,
//! `logEventTimeStamp`) but not the values `action` takes; the table lists the
//! provisioning actions the emulator generates (user added / updated / deactivated /
//! reactivated / moved, role assigned / removed, sync failure), which is where an
//! operator's SIEM rules will look. An action the table does not know keeps its own text
//! as class id, a humanized name, category [`SYNC_LOG_CATEGORY`] and severity
//! [`SYNC_LOG_DEFAULT_SEVERITY`]: nothing depends on the table being complete.
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

const fn a(
    name: &'static str,
    display: &'static str,
    category: &'static str,
    severity: u8,
) -> SyncLogAction {
    SyncLogAction {
        name,
        display,
        category,
        severity,
    }
}

/// The actions c42fwd knows. Severities follow the Audit Log catalog's habits: routine
/// attribute changes 3, changes of access (roles, (de)activation) 5, a provisioning
/// failure (a user the directory meant to change is not changed) 7.
pub const SYNC_LOG_ACTIONS: &[SyncLogAction] = &[
    a("USER_ADDED", "User added", "provisioning", 3),
    a("USER_UPDATED", "User updated", "provisioning", 3),
    a(
        "USER_MOVED",
        "User moved to another organization",
        "provisioning",
        3,
    ),
    a("USER_DEACTIVATED", "User deactivated", "provisioning", 5),
    a("USER_REACTIVATED", "User reactivated", "provisioning", 5),
    a("ROLE_ASSIGNED", "Role assigned", "roles", 5),
    a("ROLE_REMOVED", "Role removed", "roles", 5),
    a("USER_SYNC_FAILED", "User sync failed", "sync_errors", 7),
];

/// Class id of an entry without a readable `action`.
pub const SYNC_LOG_CLASS_ID: &str = "sync_log_entry";
/// Name of an entry without a readable `action`.
pub const SYNC_LOG_NAME: &str = "Directory sync log entry";
/// Category of actions the table does not know.
pub const SYNC_LOG_CATEGORY: &str = "sync_log";
/// Severity of actions the table does not know.
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
