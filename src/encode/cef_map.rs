//! The CEF field mapping: which Audit Log, Alerts and Directory Sync Log field goes to
//! which CEF extension key.
//!
//! Owned here: the CEF keys c42fwd uses for type-specific fields, with their length
//! limits from the CEF dictionary, the rules per Audit Log event type, the rules common
//! to every audit type, the rules of the Sync Log ([`SYNC_LOG_RULES`]), the key table
//! of alerts ([`ALERT_KEYS`]) and that of sessions ([`SESSION_KEYS`]). `docs/formats.md` is generated from these tables (the
//! test in `formats_doc.rs` fails when the document is out of date; `UPDATE_DOCS=1`
//! rewrites it). Deliberately not here: the common keys (time, actor, IPs, outcome:
//! fixed in `cef.rs`), escaping, and the `details` field that takes everything no rule
//! maps.
//!
//! How a rule applies: for each field of the event, the rules of the event's type are
//! tried first, then the common rules; the first rule that names the field decides its
//! key. When several fields want the same key, the one named earlier in the rules wins
//! (so `sha256` beats `md5` for `fileHash`) and the others go to `details`. A field whose
//! value does not fit its key (an object for `duser`, a non-integer for `cn1`, `null`)
//! also goes to `details`. Nothing is dropped.
//!
//! The slot plan, the same for every type so that SIEM searches stay simple:
//! `cs2` the id of the object acted on, `cs3` its name, `cs4` the new value or the list
//! concerned, `flexString1` the old value, `flexString2` a secondary attribute, `cn1..3`
//! counts; every label is the API field name.

use crate::event::SourceKind;
use crate::normalize::alerts::{ALERT_TYPES, MAX_FILE_NAMES, RISK_SEVERITIES, RULE_SEVERITIES};
use crate::normalize::catalog::AUDIT_EVENT_TYPES;
use crate::normalize::sync_log::SYNC_LOG_ACTIONS;
use crate::normalize::FastHash;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::OnceLock;

/// A CEF extension key that a type-specific field can be mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CefKey {
    Duid,
    Duser,
    Fname,
    Fsize,
    FileHash,
    FileId,
    FilePath,
    FileType,
    Msg,
    Reason,
    Cs2,
    Cs3,
    Cs4,
    FlexString1,
    FlexString2,
    Cn1,
    Cn2,
    Cn3,
}

/// What kind of JSON value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyValue {
    /// A string, number or boolean, written as text.
    Scalar,
    /// Like `Scalar`, and also arrays and objects, written as compact JSON.
    Any,
    /// A JSON integer (or a string holding one) in the `i64` range.
    Integer,
}

impl CefKey {
    /// Every key, in the order the extension writes them.
    pub const ALL: [CefKey; 18] = [
        CefKey::Duid,
        CefKey::Duser,
        CefKey::Fname,
        CefKey::Fsize,
        CefKey::FileHash,
        CefKey::FileId,
        CefKey::FilePath,
        CefKey::FileType,
        CefKey::Msg,
        CefKey::Reason,
        CefKey::Cs2,
        CefKey::Cs3,
        CefKey::Cs4,
        CefKey::FlexString1,
        CefKey::FlexString2,
        CefKey::Cn1,
        CefKey::Cn2,
        CefKey::Cn3,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The CEF key name.
    pub fn name(self) -> &'static str {
        match self {
            CefKey::Duid => "duid",
            CefKey::Duser => "duser",
            CefKey::Fname => "fname",
            CefKey::Fsize => "fsize",
            CefKey::FileHash => "fileHash",
            CefKey::FileId => "fileId",
            CefKey::FilePath => "filePath",
            CefKey::FileType => "fileType",
            CefKey::Msg => "msg",
            CefKey::Reason => "reason",
            CefKey::Cs2 => "cs2",
            CefKey::Cs3 => "cs3",
            CefKey::Cs4 => "cs4",
            CefKey::FlexString1 => "flexString1",
            CefKey::FlexString2 => "flexString2",
            CefKey::Cn1 => "cn1",
            CefKey::Cn2 => "cn2",
            CefKey::Cn3 => "cn3",
        }
    }

    /// `" name="`: the key as the extension writes it after a previous value.
    pub fn ext_key(self) -> &'static str {
        match self {
            CefKey::Duid => " duid=",
            CefKey::Duser => " duser=",
            CefKey::Fname => " fname=",
            CefKey::Fsize => " fsize=",
            CefKey::FileHash => " fileHash=",
            CefKey::FileId => " fileId=",
            CefKey::FilePath => " filePath=",
            CefKey::FileType => " fileType=",
            CefKey::Msg => " msg=",
            CefKey::Reason => " reason=",
            CefKey::Cs2 => " cs2=",
            CefKey::Cs3 => " cs3=",
            CefKey::Cs4 => " cs4=",
            CefKey::FlexString1 => " flexString1=",
            CefKey::FlexString2 => " flexString2=",
            CefKey::Cn1 => " cn1=",
            CefKey::Cn2 => " cn2=",
            CefKey::Cn3 => " cn3=",
        }
    }

    /// `" cs2Label="` for the custom keys, like [`CefKey::ext_key`].
    pub fn ext_label(self) -> Option<&'static str> {
        Some(match self {
            CefKey::Cs2 => " cs2Label=",
            CefKey::Cs3 => " cs3Label=",
            CefKey::Cs4 => " cs4Label=",
            CefKey::FlexString1 => " flexString1Label=",
            CefKey::FlexString2 => " flexString2Label=",
            CefKey::Cn1 => " cn1Label=",
            CefKey::Cn2 => " cn2Label=",
            CefKey::Cn3 => " cn3Label=",
            _ => return None,
        })
    }

    /// The key of the label that names the field, for the custom keys.
    pub fn label(self) -> Option<&'static str> {
        Some(match self {
            CefKey::Cs2 => "cs2Label",
            CefKey::Cs3 => "cs3Label",
            CefKey::Cs4 => "cs4Label",
            CefKey::FlexString1 => "flexString1Label",
            CefKey::FlexString2 => "flexString2Label",
            CefKey::Cn1 => "cn1Label",
            CefKey::Cn2 => "cn2Label",
            CefKey::Cn3 => "cn3Label",
            _ => return None,
        })
    }

    /// Maximum length of the value (bytes of UTF-8, so never more characters than the
    /// CEF dictionary allows), from the dictionary of "Implementing ArcSight CEF" rev 25.
    pub fn limit(self) -> usize {
        match self {
            CefKey::FileHash => 255,
            CefKey::Cs2 | CefKey::Cs3 | CefKey::Cs4 => 4000,
            // Integers: the longest i64 text.
            CefKey::Fsize | CefKey::Cn1 | CefKey::Cn2 | CefKey::Cn3 => 20,
            _ => 1023,
        }
    }

    pub fn value_kind(self) -> KeyValue {
        match self {
            CefKey::Fsize | CefKey::Cn1 | CefKey::Cn2 | CefKey::Cn3 => KeyValue::Integer,
            CefKey::Cs2 | CefKey::Cs3 | CefKey::Cs4 | CefKey::FlexString1 | CefKey::FlexString2 => {
                KeyValue::Any
            }
            _ => KeyValue::Scalar,
        }
    }
}

/// Length limit of a `*Label` key's value (cs/cn labels 1023, flexString labels 128).
pub fn label_limit(key: CefKey) -> usize {
    match key {
        CefKey::FlexString1 | CefKey::FlexString2 => 128,
        _ => 1023,
    }
}

/// "These API fields, in order of preference, go to this key."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub key: CefKey,
    pub fields: &'static [&'static str],
}

const fn r(key: CefKey, fields: &'static [&'static str]) -> Rule {
    Rule { key, fields }
}

use CefKey::*;

/// Rules that apply to every event type (after the type's own rules).
pub const COMMON_RULES: &[Rule] = &[
    r(
        Duid,
        &["userId", "affectedUserId", "affectedUserUid", "userUid"],
    ),
    r(
        Duser,
        &[
            "username",
            "userName",
            "affectedUserName",
            "affectedUsername",
        ],
    ),
    r(Fname, &["fileName", "filename"]),
    r(Fsize, &["fileSize"]),
    r(
        FileHash,
        &[
            "sha256",
            "sha256Checksum",
            "fileSha256",
            "md5",
            "md5Checksum",
            "fileMd5",
        ],
    ),
    r(FileId, &["fileId"]),
    r(FilePath, &["filePath", "path"]),
    r(FileType, &["fileType"]),
    r(Msg, &["description", "note", "notes", "message", "comment"]),
    r(Reason, &["reason"]),
    r(FlexString1, &["oldValue", "previousValue"]),
    r(Cs4, &["newValue"]),
];

const TRUSTED_ACTIVITY: &[Rule] = &[
    r(Cs2, &["trustedActivityId", "activityId"]),
    r(Cs3, &["value"]),
    r(FlexString2, &["activityType", "type"]),
];
const USER_LIFECYCLE: &[Rule] = &[r(FlexString2, &["orgId", "orgUid", "orgName"])];
const USER_VALUE_CHANGE: &[Rule] = &[];
const CLOUD_ALIAS: &[Rule] = &[r(Cs4, &["cloudAlias", "alias"])];
const EXTERNAL_ATTRIBUTES: &[Rule] = &[r(Cs4, &["changes", "changedAttributes"])];
const ROLES: &[Rule] = &[r(Cs4, &["roleNames", "roles", "roleIds"])];
const LOCAL_AUTH: &[Rule] = &[r(Cs4, &["updatedLocalAuthOnlyStatus", "localAuthOnly"])];
const LOGIN: &[Rule] = &[
    r(Cs3, &["loginType"]),
    r(FlexString2, &["authenticationMethod", "authMethod"]),
];
const ALERT_NOTE: &[Rule] = &[r(Cs2, &["alertId"])];
const ALERT_STATE: &[Rule] = &[
    r(Cs2, &["alertId", "alertIds"]),
    r(FlexString1, &["oldState", "previousState"]),
    r(Cs4, &["newState", "state"]),
];
const ALERT_RULE: &[Rule] = &[
    r(Cs2, &["ruleId"]),
    r(Cs3, &["ruleName"]),
    r(FlexString2, &["ruleType", "ruleSource"]),
];
const ALERT_RULE_USERS: &[Rule] = &[
    r(Cs2, &["ruleId"]),
    r(Cs3, &["ruleName"]),
    r(Cs4, &["userIds", "usernames"]),
];
const WATCHLIST_FROM_RULE: &[Rule] = &[
    r(Cs2, &["ruleId"]),
    r(Cs3, &["ruleName"]),
    r(FlexString2, &["watchlistId"]),
    r(Cs4, &["watchlistName"]),
];
const API_CLIENT: &[Rule] = &[
    r(Cs2, &["apiClientId"]),
    r(Cs3, &["name", "apiClientName"]),
    r(Cs4, &["permissions"]),
];
const API_CLIENT_NAME: &[Rule] = &[
    r(Cs2, &["apiClientId"]),
    r(FlexString1, &["oldName"]),
    r(Cs4, &["newName"]),
];
const API_CLIENT_DESCRIPTION: &[Rule] = &[
    r(Cs2, &["apiClientId"]),
    r(Cs3, &["name", "apiClientName"]),
    r(FlexString1, &["oldDescription"]),
    r(Cs4, &["newDescription"]),
];
const CASE: &[Rule] = &[
    r(Cs2, &["caseId"]),
    r(Cn1, &["caseNumber"]),
    r(Cs3, &["caseName", "name"]),
    r(Duid, &["subject", "subjectUserUid"]),
];
const CASE_ASSIGNEE: &[Rule] = &[
    r(Cs2, &["caseId"]),
    r(Cn1, &["caseNumber"]),
    r(Cs3, &["caseName", "name"]),
    r(FlexString1, &["previousAssignee", "oldAssignee"]),
    r(Cs4, &["assignee", "newAssignee"]),
];
const CASE_SUBJECT: &[Rule] = &[
    r(Cs2, &["caseId"]),
    r(Cn1, &["caseNumber"]),
    r(Cs3, &["caseName", "name"]),
    r(FlexString1, &["previousSubject", "oldSubject"]),
    r(Duid, &["subject", "newSubject"]),
];
const CASE_FILE_EVENT: &[Rule] = &[
    r(Cs2, &["caseId"]),
    r(Cn1, &["caseNumber"]),
    r(Cs3, &["caseName", "name"]),
    r(FlexString2, &["fileEventId", "eventId"]),
];
const CHECKSUM_PURGED: &[Rule] = &[r(FlexString2, &["fileEventId", "eventId"])];
const CONTENT_INSPECTION: &[Rule] = &[
    r(Cs2, &["entityId"]),
    r(Cs3, &["entityName", "name"]),
    r(FlexString2, &["entityType"]),
    r(Cs4, &["pattern"]),
];
const WATCHLIST: &[Rule] = &[
    r(Cs2, &["watchlistId"]),
    r(Cs3, &["watchlistName", "name"]),
    r(FlexString2, &["watchlistType"]),
];
const WATCHLIST_NAME: &[Rule] = &[
    r(Cs2, &["watchlistId"]),
    r(Cs3, &["watchlistName"]),
    r(FlexString2, &["watchlistType"]),
    r(FlexString1, &["oldName"]),
    r(Cs4, &["newName"]),
];
const WATCHLIST_DESCRIPTION: &[Rule] = &[
    r(Cs2, &["watchlistId"]),
    r(Cs3, &["watchlistName", "name"]),
    r(FlexString2, &["watchlistType"]),
    r(FlexString1, &["oldDescription"]),
    r(Cs4, &["newDescription"]),
];
const WATCHLIST_DEPARTMENTS: &[Rule] = &[
    r(Cs2, &["watchlistId"]),
    r(Cs3, &["watchlistName", "name"]),
    r(Cs4, &["departments", "department"]),
];
const WATCHLIST_GROUPS: &[Rule] = &[
    r(Cs2, &["watchlistId"]),
    r(Cs3, &["watchlistName", "name"]),
    r(Cs4, &["groups", "groupNames", "groupIds"]),
];
const WATCHLIST_EXCLUDED: &[Rule] = &[
    r(Cs2, &["watchlistId"]),
    r(Cs3, &["watchlistName", "name"]),
    r(Cs4, &["excludedUserIds", "userIds"]),
];
const WATCHLIST_INCLUDED: &[Rule] = &[
    r(Cs2, &["watchlistId"]),
    r(Cs3, &["watchlistName", "name"]),
    r(Cs4, &["includedUserIds", "userIds"]),
];
const FEDERATION: &[Rule] = &[
    r(Cs2, &["federationId"]),
    r(Cs3, &["federationName", "displayName", "name"]),
    r(Cs4, &["metadataUrl"]),
    r(FlexString2, &["metadataMd5sum"]),
];
const IDENTITY_PROVIDER: &[Rule] = &[
    r(Cs2, &["identityProviderId", "providerId"]),
    r(Cs3, &["identityProviderName", "displayName", "name"]),
    r(Cs4, &["metadataUrl"]),
    r(FlexString2, &["metadataMd5sum"]),
];
const IDENTITY_PROVIDER_ORG: &[Rule] = &[
    r(Cs2, &["identityProviderId", "providerId"]),
    r(Cs3, &["identityProviderName", "displayName", "name"]),
    r(FlexString2, &["orgId", "orgUid"]),
    r(Cs4, &["orgName"]),
];
const FILE_DOWNLOAD: &[Rule] = &[
    r(Cs2, &["fileEventId", "eventId"]),
    r(FlexString2, &["downloadSource"]),
];
const ZIP_DOWNLOAD: &[Rule] = &[r(Cs2, &["restoreId"])];
const SEARCH: &[Rule] = &[
    r(Cs3, &["type", "queryType"]),
    r(Cs4, &["requestJson", "query"]),
    r(Cn1, &["resultCount"]),
];
const SUPPORT_ACCESS: &[Rule] = &[r(Duser, &["supportUsername"]), r(Cs4, &["expiresAt"])];
const PATH_PURGED: &[Rule] = &[r(Cs2, &["deviceId", "deviceGuid"])];
const RESTORE: &[Rule] = &[
    r(Cs2, &["restoreId"]),
    r(Cs3, &["restoreType"]),
    r(FlexString2, &["sourceDeviceId"]),
    r(Cs4, &["targetDeviceId", "destinationDeviceId"]),
    r(Duser, &["restoreOwnerUsername"]),
    r(Cn1, &["fileCount", "numFiles"]),
    r(Cn2, &["totalSize", "totalBytes"]),
];
const RISK_FACTOR: &[Rule] = &[r(Cs4, &["riskFactors"])];
const RISK_PROFILE_VALUE: &[Rule] = &[];
const RISK_INDICATOR: &[Rule] = &[
    r(Cs2, &["riskIndicatorId"]),
    r(Cs3, &["riskIndicatorName", "name"]),
    r(FlexString1, &["oldSeverity"]),
    r(Cs4, &["severity", "newSeverity"]),
];
const SCIM: &[Rule] = &[
    r(Cs2, &["provisionerId"]),
    r(Cs3, &["provisionerName", "name"]),
];
const SHARING_PERMISSION: &[Rule] = &[
    r(FlexString2, &["cloudService"]),
    r(Duser, &["sharedWith"]),
    r(Cs4, &["permission"]),
];
const TEMPORARY_ACCESS: &[Rule] = &[
    r(FlexString2, &["cloudService"]),
    r(Cn1, &["accessDurationMinutes"]),
];

/// The rules of one catalog type, `None` for a name the table does not know (a test
/// keeps every catalog type known, so a new type forces a decision here).
pub fn type_rules(name: &str) -> Option<&'static [Rule]> {
    const TRUSTED_PREFIXES: [&str; 6] = [
        "account_name_",
        "domain_",
        "git_repository_",
        "ip_address_",
        "slack_workspace_",
        "url_",
    ];
    if TRUSTED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Some(TRUSTED_ACTIVITY);
    }
    Some(match name {
        "user_activated" | "user_created" | "user_deactivated" => USER_LIFECYCLE,
        "user_email_changed"
        | "user_name_changed"
        | "username_changed"
        | "user_external_reference_changed" => USER_VALUE_CHANGE,
        "cloud_alias_added" | "cloud_alias_removed" => CLOUD_ALIAS,
        "user_external_attributes_changed" => EXTERNAL_ATTRIBUTES,
        "user_roles_assigned" | "user_roles_revoked" => ROLES,
        "local_auth_only_changed" => LOCAL_AUTH,
        "logged_in" => LOGIN,
        "alert_note_edited" => ALERT_NOTE,
        "alert_state_changed" => ALERT_STATE,
        "alert_rule_created"
        | "alert_rule_deleted"
        | "alert_rule_disabled"
        | "alert_rule_edited"
        | "alert_rule_enabled"
        | "all_users_removed_from_alert_rule" => ALERT_RULE,
        "users_added_to_alert_rule" | "users_removed_from_alert_rule" => ALERT_RULE_USERS,
        "watchlist_removed_from_alert_rule" => WATCHLIST_FROM_RULE,
        "api_client_created"
        | "api_client_deleted"
        | "api_client_permissions_assigned"
        | "api_client_permissions_revoked"
        | "api_client_secret_reset" => API_CLIENT,
        "api_client_name_changed" => API_CLIENT_NAME,
        "api_client_description_changed" => API_CLIENT_DESCRIPTION,
        "case_assignee_changed" => CASE_ASSIGNEE,
        "case_subject_changed" => CASE_SUBJECT,
        "case_file_event_added" | "case_file_event_removed" => CASE_FILE_EVENT,
        "case_archived" | "case_closed" | "case_created" | "case_deleted" | "case_exported" => CASE,
        "checksum_purged" => CHECKSUM_PURGED,
        "content_inspection_entity_created"
        | "content_inspection_entity_deleted"
        | "content_inspection_entity_updated" => CONTENT_INSPECTION,
        "watchlist_created"
        | "watchlist_deleted"
        | "watchlist_definition_changed"
        | "user_added_to_watchlist_membership"
        | "user_removed_from_watchlist_membership" => WATCHLIST,
        "watchlist_name_changed" => WATCHLIST_NAME,
        "watchlist_description_changed" => WATCHLIST_DESCRIPTION,
        "department_added_to_watchlist_definition"
        | "department_removed_from_watchlist_definition" => WATCHLIST_DEPARTMENTS,
        "groups_added_to_watchlist_definition" | "groups_removed_from_watchlist_definition" => {
            WATCHLIST_GROUPS
        }
        "excluded_users_added_to_watchlist_definition"
        | "excluded_users_removed_from_watchlist_definition" => WATCHLIST_EXCLUDED,
        "included_users_added_to_watchlist_definition"
        | "included_users_removed_from_watchlist_definition" => WATCHLIST_INCLUDED,
        "federation_created"
        | "federation_deleted"
        | "federation_metadata_updated"
        | "federation_updated" => FEDERATION,
        "identity_provider_created"
        | "identity_provider_deleted"
        | "identity_provider_metadata_updated"
        | "identity_provider_updated" => IDENTITY_PROVIDER,
        "identity_provider_assigned_to_org" | "identity_provider_removed_from_org" => {
            IDENTITY_PROVIDER_ORG
        }
        "file_downloaded" | "file_download_io_error" => FILE_DOWNLOAD,
        "zip_file_downloaded" => ZIP_DOWNLOAD,
        "search_issued" => SEARCH,
        "incydr_support_user_access_disabled" | "incydr_support_user_access_enabled" => {
            SUPPORT_ACCESS
        }
        "path_purged" => PATH_PURGED,
        "restore_started" | "restore_ended" => RESTORE,
        "risk_factor_added" | "risk_factor_removed" => RISK_FACTOR,
        "risk_profile_end_date_changed"
        | "risk_profile_notes_changed"
        | "risk_profile_start_date_changed" => RISK_PROFILE_VALUE,
        "risk_indicator_changed" | "risk_indicator_created" => RISK_INDICATOR,
        "scim_provisioner_configuration_updated"
        | "scim_provisioner_created"
        | "scim_provisioner_credentials_changed"
        | "scim_provisioner_deleted" => SCIM,
        "sharing_permission_removed" => SHARING_PERMISSION,
        "temporary_file_access_granted" | "temporary_file_access_revoked" => TEMPORARY_ACCESS,
        _ => return None,
    })
}

/// The type rules of a catalog type by its index in `AUDIT_EVENT_TYPES` (computed once).
pub fn type_rules_by_index(index: Option<usize>) -> &'static [Rule] {
    static TABLE: OnceLock<Vec<&'static [Rule]>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        AUDIT_EVENT_TYPES
            .iter()
            .map(|t| type_rules(t.name).unwrap_or(&[]))
            .collect()
    });
    index.and_then(|i| table.get(i).copied()).unwrap_or(&[])
}

/// Decides the key of one field: `(key, preference)`, lower preference wins. Type rules
/// come before common rules.
pub fn key_for(type_rules: &'static [Rule], field: &str) -> Option<(CefKey, u16)> {
    key_in(&[type_rules, COMMON_RULES], field)
}

/// [`key_for`] over any list of rule tables, in order.
fn key_in(tables: &[&'static [Rule]], field: &str) -> Option<(CefKey, u16)> {
    let mut pref: u16 = 0;
    for rules in tables.iter().copied() {
        for rule in rules {
            for name in rule.fields {
                // Length and first byte first: most names differ there, and that is
                // cheaper than a full comparison (this runs for every field).
                if name.len() == field.len()
                    && name.as_bytes().first() == field.as_bytes().first()
                    && *name == field
                {
                    return Some((rule.key, pref));
                }
                pref = pref.saturating_add(1);
            }
        }
    }
    None
}

/// `a` / `b` -> `cs2`; ... : one rule list as Markdown (for `docs/formats.md`).
pub fn render_rules(rules: &[Rule]) -> String {
    if rules.is_empty() {
        return "(common rules only)".to_owned();
    }
    rules
        .iter()
        .map(|r| {
            let fields: Vec<String> = r.fields.iter().map(|f| format!("`{f}`")).collect();
            format!("{} → `{}`", fields.join(" / "), r.key.name())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The per-type table of `docs/formats.md`: one row per catalog type.
pub fn render_type_table() -> String {
    let mut out = String::from(
        "| Device Event Class ID | Name | Severity | Category | Type-specific fields → CEF keys |\n\
         |---|---|---|---|---|\n",
    );
    for t in AUDIT_EVENT_TYPES {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            t.name,
            t.display,
            t.severity,
            t.category,
            render_rules(type_rules(t.name).unwrap_or(&[]))
        ));
    }
    out
}

/// The common-rules table of `docs/formats.md`.
pub fn render_common_table() -> String {
    let mut out =
        String::from("| API fields (in order of preference) | CEF key | Limit |\n|---|---|---|\n");
    for r in COMMON_RULES {
        let fields: Vec<String> = r.fields.iter().map(|f| format!("`{f}`")).collect();
        let limit = match r.key.value_kind() {
            KeyValue::Integer => "integer".to_owned(),
            _ => r.key.limit().to_string(),
        };
        out.push_str(&format!(
            "| {} | `{}` | {} |\n",
            fields.join(", "),
            r.key.name(),
            limit
        ));
    }
    out
}

/// The rules of the Directory Sync Log, the only ones that apply to it (the Audit Log's
/// common rules were made for audit fields). Same slot plan: `cs3` names what changed,
/// `flexString1` / `cs4` hold the old / new value, `flexString2` the secondary attribute
/// (here the identity provider); the user acted on is `duser`.
pub const SYNC_LOG_RULES: &[Rule] = &[
    r(Duser, &["username"]),
    r(Cs3, &["field"]),
    r(FlexString1, &["oldValue"]),
    r(Cs4, &["newValue"]),
    r(FlexString2, &["providerName"]),
];

/// [`lookup`] for an event of any data set (alerts have their own table, [`ALERT_KEYS`],
/// and no rules).
pub fn lookup_for(
    source: SourceKind,
    catalog_index: Option<usize>,
    field: &str,
) -> Option<(CefKey, u16)> {
    match source {
        SourceKind::AuditLog => lookup(catalog_index, field),
        SourceKind::SyncLog => key_in(&[SYNC_LOG_RULES], field),
        SourceKind::Alerts | SourceKind::Sessions | SourceKind::FileEvents => None,
    }
}

/// Where the value of an alert's CEF key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertValue {
    /// The alert field of that name, as the API sent it, when it fits the key whole
    /// (else it stays in `details`).
    Field(&'static str),
    /// The alert field of that name as compact JSON, cut from the inside to the key's
    /// limit when it is longer (`_truncated` says what was cut; see `json::write_bounded`).
    BoundedJson(&'static str),
    /// The exact alert time (`createdAt`), RFC 3339 with nine fractional digits.
    ExactTime,
    /// The first file names of the observations, `, `-separated.
    FileNames,
    /// The path of the first observed file that has one.
    FirstFilePath,
    /// The observations' `syncToServices`, distinct, `, `-separated.
    SyncToServices,
    /// The observations' `exposureTypes`, distinct, `, `-separated.
    ExposureTypes,
    /// The sum of the observations' `fileCount`.
    FileCount,
    /// The sum of the observations' `totalFileSize`.
    TotalFileSize,
    /// The number of observations.
    ObservationCount,
    /// The `url` of the first object of the array field of that name (a file event's
    /// browser tabs).
    FirstUrl(&'static str),
    /// The array-of-strings field of that name, `, `-separated.
    List(&'static str),
}

impl AlertValue {
    /// What the value is, for `docs/formats.md`.
    pub fn describe(self) -> String {
        match self {
            AlertValue::Field(f) => format!("`{f}`"),
            AlertValue::BoundedJson(f) => {
                format!("`{f}` as compact JSON, cut from the inside to the limit")
            }
            AlertValue::ExactTime => {
                "`createdAt`, RFC 3339 UTC with nine fractional digits".to_owned()
            }
            AlertValue::FileNames => format!(
                "the first {MAX_FILE_NAMES} `data.files[].name` of the observations, `, `-separated"
            ),
            AlertValue::FirstFilePath => "the first `data.files[].path`".to_owned(),
            AlertValue::SyncToServices => {
                "`data.syncToServices` of every observation, distinct, `, `-separated".to_owned()
            }
            AlertValue::ExposureTypes => {
                "`data.exposureTypes` of every observation, distinct, `, `-separated".to_owned()
            }
            AlertValue::FileCount => {
                "sum of `data.fileCount` (or of the number of `data.files`)".to_owned()
            }
            AlertValue::TotalFileSize => {
                "sum of `data.totalFileSize` (or of `data.files[].size`)".to_owned()
            }
            AlertValue::ObservationCount => "number of `observations`".to_owned(),
            AlertValue::FirstUrl(f) => format!("the first `{f}[].url`"),
            AlertValue::List(f) => format!("`{f}`, `, `-separated"),
        }
    }
}

/// One extension key of an alert record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertKey {
    /// The CEF key (`duser`).
    pub key: &'static str,
    /// For custom keys: the label key and the label (`("cs1Label", "ruleId")`).
    pub label: Option<(&'static str, &'static str)>,
    pub value: AlertValue,
    pub kind: KeyValue,
    /// The dictionary's length limit of the value, in bytes.
    pub limit: usize,
}

const fn ak(
    key: &'static str,
    label: Option<(&'static str, &'static str)>,
    value: AlertValue,
    kind: KeyValue,
    limit: usize,
) -> AlertKey {
    AlertKey {
        key,
        label,
        value,
        kind,
        limit,
    }
}

/// The extension keys of an alert, in the order they are written, after the common ones
/// (`rt` `createdAt`, `cat`, `suid` `actorId`, `suser` `actor`, `src` / `c6a1` the first
/// sending address) and before `details` (`cs6`). A key whose value is absent (or does
/// not fit it) is left out; the field then stays in `details`.
pub const ALERT_KEYS: &[AlertKey] = &[
    ak(
        "duser",
        None,
        AlertValue::Field("target"),
        KeyValue::Scalar,
        1023,
    ),
    ak(
        "externalId",
        None,
        AlertValue::Field("id"),
        KeyValue::Scalar,
        40,
    ),
    ak(
        "act",
        None,
        AlertValue::Field("state"),
        KeyValue::Scalar,
        63,
    ),
    ak(
        "msg",
        None,
        AlertValue::Field("description"),
        KeyValue::Scalar,
        1023,
    ),
    ak("fname", None, AlertValue::FileNames, KeyValue::Scalar, 1023),
    ak(
        "filePath",
        None,
        AlertValue::FirstFilePath,
        KeyValue::Scalar,
        1023,
    ),
    ak(
        "destinationServiceName",
        None,
        AlertValue::SyncToServices,
        KeyValue::Scalar,
        1023,
    ),
    ak(
        "cs1",
        Some(("cs1Label", "ruleId")),
        AlertValue::Field("ruleId"),
        KeyValue::Scalar,
        4000,
    ),
    ak(
        "cs2",
        Some(("cs2Label", "exposureTypes")),
        AlertValue::ExposureTypes,
        KeyValue::Scalar,
        4000,
    ),
    ak(
        "cs3",
        Some(("cs3Label", "watchlists")),
        AlertValue::Field("watchlists"),
        KeyValue::Any,
        4000,
    ),
    ak(
        "cs4",
        Some(("cs4Label", "observations")),
        AlertValue::BoundedJson("observations"),
        KeyValue::Any,
        4000,
    ),
    ak(
        "cs5",
        Some(("cs5Label", "eventTimestamp")),
        AlertValue::ExactTime,
        KeyValue::Scalar,
        4000,
    ),
    ak(
        "flexString1",
        Some(("flexString1Label", "severity")),
        AlertValue::Field("severity"),
        KeyValue::Scalar,
        1023,
    ),
    ak(
        "flexString2",
        Some(("flexString2Label", "riskSeverity")),
        AlertValue::Field("riskSeverity"),
        KeyValue::Scalar,
        1023,
    ),
    ak(
        "cn1",
        Some(("cn1Label", "fileCount")),
        AlertValue::FileCount,
        KeyValue::Integer,
        20,
    ),
    ak(
        "cn2",
        Some(("cn2Label", "totalFileSize")),
        AlertValue::TotalFileSize,
        KeyValue::Integer,
        20,
    ),
    ak(
        "cn3",
        Some(("cn3Label", "observationCount")),
        AlertValue::ObservationCount,
        KeyValue::Integer,
        20,
    ),
];

/// One row of a CEF key table of `docs/formats.md`: the key, its label, what it holds,
/// its kind and its limit.
pub(crate) type KeyRow = (
    &'static str,
    Option<(&'static str, &'static str)>,
    String,
    KeyValue,
    usize,
);

/// A CEF key table of `docs/formats.md` (alerts, sessions, file events).
pub(crate) fn render_key_table(rows: impl IntoIterator<Item = KeyRow>) -> String {
    let mut out = String::from("| CEF key | Label | Value | Limit |\n|---|---|---|---|\n");
    for (key, label, value, kind, limit) in rows {
        let limit = match kind {
            KeyValue::Integer => "integer".to_owned(),
            _ => limit.to_string(),
        };
        let label = label.map_or(String::new(), |(_, l)| format!("`{l}`"));
        out.push_str(&format!("| `{key}` | {label} | {value} | {limit} |\n"));
    }
    out
}

/// The alert key table of `docs/formats.md`.
pub fn render_alert_keys() -> String {
    render_key_table(
        ALERT_KEYS
            .iter()
            .map(|k| (k.key, k.label, k.value.describe(), k.kind, k.limit)),
    )
}

/// The alert type table of `docs/formats.md`.
pub fn render_alert_types() -> String {
    let mut out = String::from(
        "| Device Event Class ID (`type`) | Rule type (Name when the alert has no `name`) | Category |\n|---|---|---|\n",
    );
    for t in ALERT_TYPES {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            t.name, t.display, t.category
        ));
    }
    out
}

/// The alert severity table of `docs/formats.md`.
pub fn render_alert_severities() -> String {
    let mut out = String::from("| Field | Value | CEF severity |\n|---|---|---|\n");
    for (name, v) in RULE_SEVERITIES {
        out.push_str(&format!("| `severity` | `{name}` | {v} |\n"));
    }
    for (name, v) in RISK_SEVERITIES {
        let v = v.map_or("(not counted)".to_owned(), |v| v.to_string());
        out.push_str(&format!("| `riskSeverity` | `{name}` | {v} |\n"));
    }
    out
}

/// The sync log action table of `docs/formats.md`.
pub fn render_sync_log_actions() -> String {
    if SYNC_LOG_ACTIONS.is_empty() {
        return "No action has a row of its own: Code42 documents none.\n".to_owned();
    }
    let mut out = String::from(
        "| Device Event Class ID (`action`) | Name | Severity | Category |\n|---|---|---|---|\n",
    );
    for a in SYNC_LOG_ACTIONS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            a.name, a.display, a.severity, a.category
        ));
    }
    out
}

/// The sync log rule table of `docs/formats.md`.
pub fn render_sync_log_rules() -> String {
    let mut out = String::from("| API field | CEF key | Label | Limit |\n|---|---|---|---|\n");
    for r in SYNC_LOG_RULES {
        for f in r.fields {
            let label = if r.key.label().is_some() {
                format!("`{f}`")
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| `{f}` | `{}` | {label} | {} |\n",
                r.key.name(),
                r.key.limit()
            ));
        }
    }
    out
}

/// Where the value of a session's CEF key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionValue {
    /// The session field of that name, when it fits the key whole (else it stays in
    /// `details`).
    Field(&'static str),
    /// The session field of that name as compact JSON, cut from the inside to the key's
    /// limit when it is longer.
    BoundedJson(&'static str),
    /// The exact time of this version (`lastUpdated`), RFC 3339 with nine fractional
    /// digits.
    ExactTime,
    /// The current state: the newest of `states`.
    State,
    /// The newest `scores[].score`.
    Score,
    /// The newest `scores[].severity` (0 no risk to 4 critical).
    RiskSeverity,
    /// The distinct `riskIndicators[].indicatorName`, `, `-separated.
    Indicators,
    /// The distinct `triggeredAlerts[].ruleId`, `, `-separated.
    RuleIds,
    /// The `triggeredAlerts[].alertId`, `, `-separated.
    AlertIds,
    /// The number of `triggeredAlerts`.
    AlertCount,
}

impl SessionValue {
    /// What the value is, for `docs/formats.md`.
    pub fn describe(self) -> String {
        use crate::normalize::sessions::MAX_LISTED;
        match self {
            SessionValue::Field(f) => format!("`{f}`"),
            SessionValue::BoundedJson(f) => {
                format!("`{f}` as compact JSON, cut from the inside to the limit")
            }
            SessionValue::ExactTime => {
                "`lastUpdated` (the version), RFC 3339 UTC with nine fractional digits".to_owned()
            }
            SessionValue::State => {
                "the current state: the newest `states[].state` by `sourceTimestamp`".to_owned()
            }
            SessionValue::Score => "the newest `scores[].score`".to_owned(),
            SessionValue::RiskSeverity => {
                "the newest `scores[].severity`: 0 no risk, 1 low, 2 moderate, 3 high, 4 critical"
                    .to_owned()
            }
            SessionValue::Indicators => format!(
                "the first {MAX_LISTED} distinct `riskIndicators[].indicatorName`, `, `-separated"
            ),
            SessionValue::RuleIds => format!(
                "the first {MAX_LISTED} distinct `triggeredAlerts[].ruleId`, `, `-separated"
            ),
            SessionValue::AlertIds => {
                format!("the first {MAX_LISTED} `triggeredAlerts[].alertId`, `, `-separated")
            }
            SessionValue::AlertCount => "number of `triggeredAlerts`".to_owned(),
        }
    }
}

/// One extension key of a session record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey {
    pub key: &'static str,
    pub label: Option<(&'static str, &'static str)>,
    pub value: SessionValue,
    pub kind: KeyValue,
    pub limit: usize,
}

const fn sk(
    key: &'static str,
    label: Option<(&'static str, &'static str)>,
    value: SessionValue,
    kind: KeyValue,
    limit: usize,
) -> SessionKey {
    SessionKey {
        key,
        label,
        value,
        kind,
        limit,
    }
}

/// The extension keys of a session, in the order they are written, after the common
/// ones (`rt` `lastUpdated`, `cat`, `suid` `actorId`) and before `details` (`cs6`). The
/// standard keys where one means the same (`externalId` the session id, `act` its
/// state, `start` / `end` its activity, `msg` / `reason` its summaries), numbered custom
/// keys with labels for the rest. A key whose value is absent (or does not fit it) is
/// left out; the field then stays in `details`.
pub const SESSION_KEYS: &[SessionKey] = &[
    sk(
        "externalId",
        None,
        SessionValue::Field("sessionId"),
        KeyValue::Scalar,
        40,
    ),
    sk("act", None, SessionValue::State, KeyValue::Scalar, 63),
    sk(
        "start",
        None,
        SessionValue::Field("beginTime"),
        KeyValue::Integer,
        20,
    ),
    sk(
        "end",
        None,
        SessionValue::Field("endTime"),
        KeyValue::Integer,
        20,
    ),
    sk(
        "msg",
        None,
        SessionValue::Field("exfiltrationSummary"),
        KeyValue::Scalar,
        1023,
    ),
    sk(
        "reason",
        None,
        SessionValue::Field("contextSummary"),
        KeyValue::Scalar,
        1023,
    ),
    sk(
        "cs1",
        Some(("cs1Label", "riskIndicators")),
        SessionValue::Indicators,
        KeyValue::Scalar,
        4000,
    ),
    sk(
        "cs2",
        Some(("cs2Label", "ruleIds")),
        SessionValue::RuleIds,
        KeyValue::Scalar,
        4000,
    ),
    sk(
        "cs3",
        Some(("cs3Label", "alertIds")),
        SessionValue::AlertIds,
        KeyValue::Scalar,
        4000,
    ),
    sk(
        "cs4",
        Some(("cs4Label", "states")),
        SessionValue::BoundedJson("states"),
        KeyValue::Any,
        4000,
    ),
    sk(
        "cs5",
        Some(("cs5Label", "eventTimestamp")),
        SessionValue::ExactTime,
        KeyValue::Scalar,
        4000,
    ),
    sk(
        "cn1",
        Some(("cn1Label", "score")),
        SessionValue::Score,
        KeyValue::Integer,
        20,
    ),
    sk(
        "cn2",
        Some(("cn2Label", "riskSeverity")),
        SessionValue::RiskSeverity,
        KeyValue::Integer,
        20,
    ),
    sk(
        "cn3",
        Some(("cn3Label", "alertCount")),
        SessionValue::AlertCount,
        KeyValue::Integer,
        20,
    ),
];

/// The session key table of `docs/formats.md`.
pub fn render_session_keys() -> String {
    render_key_table(
        SESSION_KEYS
            .iter()
            .map(|k| (k.key, k.label, k.value.describe(), k.kind, k.limit)),
    )
}

/// The session state and severity tables of `docs/formats.md`.
pub fn render_session_states() -> String {
    use crate::normalize::sessions::{SESSION_SEVERITIES, SESSION_STATES};
    let mut out = String::from(
        "| Device Event Class ID (current state) | Name | Category |\n|---|---|---|\n",
    );
    for s in SESSION_STATES {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            s.name,
            s.display,
            crate::normalize::sessions::SESSION_CATEGORY
        ));
    }
    out.push_str("\n| Latest `scores[].severity` | Meaning | CEF severity |\n|---|---|---|\n");
    for (v, meaning, cef) in SESSION_SEVERITIES {
        out.push_str(&format!("| `{v}` | {meaning} | {cef} |\n"));
    }
    out
}

type RuleIndex = HashMap<&'static str, (CefKey, u16), BuildHasherDefault<FastHash>>;

/// [`key_for`] for the type at `catalog_index` (or an unknown type), through a hash
/// table per type built once: this runs for every field of every event.
pub fn lookup(catalog_index: Option<usize>, field: &str) -> Option<(CefKey, u16)> {
    static TABLES: OnceLock<Vec<RuleIndex>> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        // One table per catalog type, then one for unknown types (common rules only).
        (0..=AUDIT_EVENT_TYPES.len())
            .map(|i| {
                let rules = type_rules_by_index(Some(i));
                let mut t = RuleIndex::default();
                for name in rules.iter().chain(COMMON_RULES).flat_map(|r| r.fields) {
                    if let Some(k) = key_for(rules, name) {
                        t.entry(name).or_insert(k);
                    }
                }
                t
            })
            .collect()
    });
    let i = catalog_index
        .filter(|&i| i < AUDIT_EVENT_TYPES.len())
        .unwrap_or(AUDIT_EVENT_TYPES.len());
    tables.get(i)?.get(field).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_catalog_type_has_a_mapping() {
        for t in AUDIT_EVENT_TYPES {
            assert!(
                type_rules(t.name).is_some(),
                "no CEF mapping for {}",
                t.name
            );
        }
        assert!(type_rules("not_a_type").is_none());
    }

    #[test]
    fn a_type_never_maps_a_field_twice_or_a_key_from_two_rules() {
        for t in AUDIT_EVENT_TYPES {
            let rules = type_rules(t.name).unwrap();
            let mut keys = HashSet::new();
            let mut fields = HashSet::new();
            for rule in rules {
                assert!(keys.insert(rule.key), "{}: {:?} twice", t.name, rule.key);
                for f in rule.fields {
                    assert!(fields.insert(*f), "{}: {f} twice", t.name);
                }
            }
        }
        let mut fields = HashSet::new();
        for rule in COMMON_RULES {
            for f in rule.fields {
                assert!(fields.insert(*f), "common: {f} twice");
            }
        }
    }

    #[test]
    fn type_rules_win_over_common_rules() {
        let search = type_rules("search_issued").unwrap();
        assert_eq!(key_for(search, "resultCount").map(|k| k.0), Some(Cn1));
        assert_eq!(key_for(search, "userId").map(|k| k.0), Some(Duid));
        assert_eq!(key_for(search, "zz"), None);
        let support = type_rules("incydr_support_user_access_enabled").unwrap();
        let (_, p_type) = key_for(support, "supportUsername").unwrap();
        let (_, p_common) = key_for(support, "username").unwrap();
        assert!(p_type < p_common);
        let (_, sha) = key_for(&[], "sha256").unwrap();
        let (_, md5) = key_for(&[], "md5").unwrap();
        assert!(sha < md5);
    }

    #[test]
    fn hashed_lookup_agrees_with_the_rules() {
        let mut names: Vec<&str> = COMMON_RULES
            .iter()
            .flat_map(|r| r.fields.iter().copied())
            .collect();
        for t in AUDIT_EVENT_TYPES {
            names.extend(
                type_rules(t.name)
                    .unwrap()
                    .iter()
                    .flat_map(|r| r.fields.iter().copied()),
            );
        }
        names.extend(["", "zz", "actorId", "USERID", "userid"]);
        for i in (0..AUDIT_EVENT_TYPES.len())
            .map(Some)
            .chain([None, Some(100_000)])
        {
            for name in &names {
                assert_eq!(
                    lookup(i, name),
                    key_for(type_rules_by_index(i), name),
                    "{i:?} {name}"
                );
            }
        }
    }

    #[test]
    fn index_table_matches_names() {
        for (i, t) in AUDIT_EVENT_TYPES.iter().enumerate() {
            assert_eq!(type_rules_by_index(Some(i)), type_rules(t.name).unwrap());
        }
        assert!(type_rules_by_index(None).is_empty());
        assert!(type_rules_by_index(Some(10_000)).is_empty());
    }

    #[test]
    fn sync_log_and_alert_tables_are_consistent() {
        let mut keys = HashSet::new();
        for r in SYNC_LOG_RULES {
            assert!(keys.insert(r.key));
            for f in r.fields {
                assert_eq!(
                    lookup_for(SourceKind::SyncLog, None, f).map(|k| k.0),
                    Some(r.key)
                );
            }
        }
        // The audit rules do not leak into the sync log, nor any rule into alerts.
        assert_eq!(lookup_for(SourceKind::SyncLog, None, "userId"), None);
        assert_eq!(lookup_for(SourceKind::Alerts, None, "username"), None);
        let mut keys = HashSet::new();
        let mut fields = HashSet::new();
        for k in ALERT_KEYS {
            assert!(keys.insert(k.key), "{} twice", k.key);
            if let AlertValue::Field(f) | AlertValue::BoundedJson(f) = k.value {
                assert!(fields.insert(f), "{f} twice");
            }
            if let Some((label_key, _)) = k.label {
                assert_eq!(label_key, format!("{}Label", k.key));
                assert!(keys.insert(label_key));
            }
            // Every alert key is one the CEF dictionary has with at least this limit.
            assert!(k.limit <= 4000);
        }
        // The common keys and `details` are not in the table.
        for k in ["rt", "cat", "suid", "suser", "src", "c6a1", "cs6"] {
            assert!(!keys.contains(k), "{k}");
        }
    }

    #[test]
    fn keys_are_listed_once_in_order() {
        for (i, k) in CefKey::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(k.ext_key(), format!(" {}=", k.name()));
            assert_eq!(
                k.ext_label().map(String::from),
                k.label().map(|l| format!(" {l}="))
            );
        }
    }
}
