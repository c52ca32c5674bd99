//! The Audit Log event types c42fwd knows, from the Code42 "Audit Log" article (where
//! the list comes from, and how type names are spelled: `docs/api.md`, "The event-type
//! catalog").
//!
//! One row per event type (111: the article's 110 headings plus "File download: IO error",
//! which it lists inside the "File download" entry): the type name as it appears in the API's `type$` field
//! (`audit_log::<name>/1`), the name the Code42 console shows, a category, and the CEF /
//! LEEF severity (0-10) c42fwd assigns. The Device Event Class ID of an audit event is
//! its type name, so it is stable and readable in SIEM rules, and it stays defined for
//! event types this table does not know yet (they get category `other`, severity 3).
//!
//! A crate of its own, owned by the product: c42fwd re-exports it as
//! `c42fwd::normalize::catalog` (mapping, and the tables of `docs/formats.md`), and the
//! emulator crate depends on it to generate exactly these types. The emulator cannot
//! depend on the `c42fwd` package (the binary depends on the emulator, and Cargo forbids
//! the cycle), so the one thing both need lives here, below both. It is data only: no
//! dependencies, no I/O, nothing else of the product.
#![forbid(unsafe_code)]

/// One known Audit Log event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditEventType {
    /// The type name inside `type$`: `audit_log::<name>/1`.
    pub name: &'static str,
    /// The console's display name (Code42's "Audit Log" article).
    pub display: &'static str,
    pub category: &'static str,
    /// CEF severity 0-10.
    pub severity: u8,
}

const fn t(
    name: &'static str,
    display: &'static str,
    category: &'static str,
    severity: u8,
) -> AuditEventType {
    AuditEventType {
        name,
        display,
        category,
        severity,
    }
}

/// Every Audit Log event type of Code42's "Audit Log" article, in its order.
pub const AUDIT_EVENT_TYPES: &[AuditEventType] = &[
    t(
        "account_name_added",
        "Account name added",
        "trusted_activity",
        5,
    ),
    t(
        "account_name_changed",
        "Account name changed",
        "trusted_activity",
        5,
    ),
    t(
        "account_name_deleted",
        "Account name deleted",
        "trusted_activity",
        5,
    ),
    t("user_activated", "Activate user", "user_management", 3),
    t("user_created", "Add user", "user_management", 3),
    t("alert_note_edited", "Alert note edited", "alerts", 3),
    t("alert_rule_created", "Alert rule created", "alerts", 3),
    t("alert_rule_deleted", "Alert rule deleted", "alerts", 7),
    t("alert_rule_disabled", "Alert rule disabled", "alerts", 7),
    t("alert_rule_edited", "Alert rule edited", "alerts", 3),
    t("alert_rule_enabled", "Alert rule enabled", "alerts", 3),
    t("alert_state_changed", "Alert state changed", "alerts", 3),
    t(
        "all_users_removed_from_alert_rule",
        "All users removed from alert rule",
        "alerts",
        7,
    ),
    t("api_client_created", "API client created", "api_clients", 7),
    t("api_client_deleted", "API client deleted", "api_clients", 5),
    t(
        "api_client_description_changed",
        "API client description changed",
        "api_clients",
        5,
    ),
    t(
        "api_client_name_changed",
        "API client name changed",
        "api_clients",
        5,
    ),
    t(
        "api_client_permissions_assigned",
        "API client permissions assigned",
        "api_clients",
        7,
    ),
    t(
        "api_client_permissions_revoked",
        "API client permissions revoked",
        "api_clients",
        5,
    ),
    t(
        "api_client_secret_reset",
        "API client secret reset",
        "api_clients",
        7,
    ),
    t("case_archived", "Case archived", "cases", 3),
    t("case_assignee_changed", "Case assignee changed", "cases", 3),
    t("case_closed", "Case closed", "cases", 3),
    t("case_created", "Case created", "cases", 3),
    t("case_deleted", "Case deleted", "cases", 7),
    t("case_exported", "Case exported", "cases", 3),
    t("case_file_event_added", "Case file event added", "cases", 3),
    t(
        "case_file_event_removed",
        "Case file event removed",
        "cases",
        5,
    ),
    t("case_subject_changed", "Case subject changed", "cases", 3),
    t("checksum_purged", "Checksum purged", "restore", 7),
    t(
        "cloud_alias_added",
        "Cloud alias added",
        "user_management",
        3,
    ),
    t(
        "cloud_alias_removed",
        "Cloud alias removed",
        "user_management",
        5,
    ),
    t("logged_in", "Console login", "authentication", 3),
    t(
        "content_inspection_entity_created",
        "Content inspection entity created",
        "risk",
        3,
    ),
    t(
        "content_inspection_entity_deleted",
        "Content inspection entity deleted",
        "risk",
        5,
    ),
    t(
        "content_inspection_entity_updated",
        "Content inspection entity updated",
        "risk",
        3,
    ),
    t("user_deactivated", "Deactivate user", "user_management", 7),
    t(
        "department_added_to_watchlist_definition",
        "Department added to watchlist definition",
        "watchlists",
        3,
    ),
    t(
        "department_removed_from_watchlist_definition",
        "Department removed from watchlist definition",
        "watchlists",
        5,
    ),
    t("domain_added", "Domain added", "trusted_activity", 5),
    t("domain_changed", "Domain changed", "trusted_activity", 5),
    t("domain_deleted", "Domain deleted", "trusted_activity", 5),
    t("user_email_changed", "Email change", "user_management", 3),
    t(
        "excluded_users_added_to_watchlist_definition",
        "Excluded users added to watchlist definition",
        "watchlists",
        3,
    ),
    t(
        "excluded_users_removed_from_watchlist_definition",
        "Excluded users removed from watchlist definition",
        "watchlists",
        5,
    ),
    t(
        "user_external_attributes_changed",
        "External attributes change",
        "user_management",
        3,
    ),
    t(
        "user_external_reference_changed",
        "External reference change",
        "user_management",
        3,
    ),
    t("federation_created", "Federation created", "identity", 7),
    t("federation_deleted", "Federation deleted", "identity", 7),
    t(
        "federation_metadata_updated",
        "Federation metadata updated",
        "identity",
        7,
    ),
    t("federation_updated", "Federation updated", "identity", 7),
    t("file_downloaded", "File download", "investigation", 4),
    t(
        "file_download_io_error",
        "File download: IO error",
        "investigation",
        4,
    ),
    t("search_issued", "Forensic Search query", "investigation", 4),
    t(
        "git_repository_added",
        "Git repository added",
        "trusted_activity",
        5,
    ),
    t(
        "git_repository_changed",
        "Git repository changed",
        "trusted_activity",
        5,
    ),
    t(
        "git_repository_deleted",
        "Git repository deleted",
        "trusted_activity",
        5,
    ),
    t(
        "groups_added_to_watchlist_definition",
        "Groups added to watchlist definition",
        "watchlists",
        3,
    ),
    t(
        "groups_removed_from_watchlist_definition",
        "Groups removed from watchlist definition",
        "watchlists",
        5,
    ),
    t(
        "identity_provider_assigned_to_org",
        "Identity provider assigned to org",
        "identity",
        7,
    ),
    t(
        "identity_provider_created",
        "Identity provider created",
        "identity",
        7,
    ),
    t(
        "identity_provider_deleted",
        "Identity provider deleted",
        "identity",
        7,
    ),
    t(
        "identity_provider_metadata_updated",
        "Identity provider metadata updated",
        "identity",
        7,
    ),
    t(
        "identity_provider_removed_from_org",
        "Identity provider removed from org",
        "identity",
        7,
    ),
    t(
        "identity_provider_updated",
        "Identity provider updated",
        "identity",
        7,
    ),
    t(
        "included_users_added_to_watchlist_definition",
        "Included users added to watchlist definition",
        "watchlists",
        3,
    ),
    t(
        "included_users_removed_from_watchlist_definition",
        "Included users removed from watchlist definition",
        "watchlists",
        5,
    ),
    t(
        "incydr_support_user_access_disabled",
        "Incydr support user access disabled",
        "support_access",
        5,
    ),
    t(
        "incydr_support_user_access_enabled",
        "Incydr support user access enabled",
        "support_access",
        7,
    ),
    t(
        "ip_address_added",
        "IP address added",
        "trusted_activity",
        5,
    ),
    t(
        "ip_address_changed",
        "IP address changed",
        "trusted_activity",
        5,
    ),
    t(
        "ip_address_deleted",
        "IP address deleted",
        "trusted_activity",
        5,
    ),
    t(
        "local_auth_only_changed",
        "Local auth only change",
        "authentication",
        7,
    ),
    t("user_name_changed", "Name change", "user_management", 3),
    t("path_purged", "Path purged", "restore", 7),
    t("restore_ended", "Restore ended", "restore", 3),
    t("restore_started", "Restore started", "restore", 3),
    t("risk_factor_added", "Risk factor added", "risk", 3),
    t("risk_factor_removed", "Risk factor removed", "risk", 5),
    t(
        "risk_profile_end_date_changed",
        "Risk profile end date changed",
        "risk",
        3,
    ),
    t(
        "risk_profile_notes_changed",
        "Risk profile notes changed",
        "risk",
        3,
    ),
    t(
        "risk_profile_start_date_changed",
        "Risk profile start date changed",
        "risk",
        3,
    ),
    t(
        "risk_indicator_changed",
        "Risk indicator changed",
        "risk",
        3,
    ),
    t(
        "risk_indicator_created",
        "Risk indicator created",
        "risk",
        3,
    ),
    t(
        "scim_provisioner_configuration_updated",
        "SCIM provisioner configuration updated",
        "provisioning",
        5,
    ),
    t(
        "scim_provisioner_created",
        "SCIM provisioner created",
        "provisioning",
        5,
    ),
    t(
        "scim_provisioner_credentials_changed",
        "SCIM provisioner credentials changed",
        "provisioning",
        7,
    ),
    t(
        "scim_provisioner_deleted",
        "SCIM provisioner deleted",
        "provisioning",
        5,
    ),
    t(
        "sharing_permission_removed",
        "Sharing permission removed",
        "investigation",
        5,
    ),
    t(
        "slack_workspace_added",
        "Slack Workspace added",
        "trusted_activity",
        5,
    ),
    t(
        "slack_workspace_changed",
        "Slack Workspace changed",
        "trusted_activity",
        5,
    ),
    t(
        "slack_workspace_deleted",
        "Slack Workspace deleted",
        "trusted_activity",
        5,
    ),
    t(
        "temporary_file_access_granted",
        "Temporary file access granted",
        "investigation",
        7,
    ),
    t(
        "temporary_file_access_revoked",
        "Temporary file access revoked",
        "investigation",
        5,
    ),
    t("url_added", "URL added", "trusted_activity", 5),
    t("url_changed", "URL changed", "trusted_activity", 5),
    t("url_deleted", "URL deleted", "trusted_activity", 5),
    t(
        "user_added_to_watchlist_membership",
        "User added to watchlist membership",
        "watchlists",
        3,
    ),
    t(
        "user_removed_from_watchlist_membership",
        "User removed from watchlist membership",
        "watchlists",
        5,
    ),
    t(
        "user_roles_assigned",
        "User roles assigned",
        "user_management",
        7,
    ),
    t(
        "user_roles_revoked",
        "User roles revoked",
        "user_management",
        5,
    ),
    t("username_changed", "Username change", "user_management", 3),
    t(
        "users_added_to_alert_rule",
        "Users added to alert rule",
        "alerts",
        3,
    ),
    t(
        "users_removed_from_alert_rule",
        "Users removed from alert rule",
        "alerts",
        5,
    ),
    t("watchlist_created", "Watchlist created", "watchlists", 3),
    t(
        "watchlist_definition_changed",
        "Watchlist definition changed",
        "watchlists",
        3,
    ),
    t("watchlist_deleted", "Watchlist deleted", "watchlists", 5),
    t(
        "watchlist_description_changed",
        "Watchlist description changed",
        "watchlists",
        3,
    ),
    t(
        "watchlist_name_changed",
        "Watchlist name changed",
        "watchlists",
        3,
    ),
    t(
        "watchlist_removed_from_alert_rule",
        "Watchlist removed from alert rule",
        "alerts",
        5,
    ),
    t("zip_file_downloaded", "ZIP file downloaded", "restore", 3),
];

/// Looks a type name up (`logged_in`, not the full `type$`).
pub fn audit_event_type(name: &str) -> Option<&'static AuditEventType> {
    AUDIT_EVENT_TYPES.iter().find(|t| t.name == name)
}

/// The type name inside a `type$` value: `audit_log::logged_in/1` -> `logged_in`.
/// Returns the input unchanged when it has no such shape.
pub fn audit_type_name(type_tag: &str) -> &str {
    let s = type_tag.strip_prefix("audit_log::").unwrap_or(type_tag);
    match s.rfind('/') {
        Some(i) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for t in AUDIT_EVENT_TYPES {
            assert!(seen.insert(t.name), "duplicate {}", t.name);
            assert!(t
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert!(t.severity <= 10);
        }
        assert_eq!(AUDIT_EVENT_TYPES.len(), 111);
    }

    #[test]
    fn type_tag_parsing() {
        assert_eq!(audit_type_name("audit_log::logged_in/1"), "logged_in");
        assert_eq!(audit_type_name("weird"), "weird");
        assert_eq!(
            audit_event_type("search_issued").unwrap().display,
            "Forensic Search query"
        );
    }
}
