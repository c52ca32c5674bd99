//! The CEF field mapping: which Audit Log field goes to which CEF extension key.
//!
//! Owned here: the CEF keys c42fwd uses for type-specific fields, with their length
//! limits from the CEF dictionary, the rules per event type, and the rules common to
//! every type. `docs/formats.md` is generated from these tables (the test at the bottom
//! fails when the document is out of date; `UPDATE_DOCS=1` rewrites it).
//! Deliberately not here: the common keys (time, actor, IPs, outcome: fixed in
//! `cef.rs`), escaping, and the `details` field that takes everything no rule maps.
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

use crate::normalize::catalog::AUDIT_EVENT_TYPES;
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
        "file_downloaded" => FILE_DOWNLOAD,
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
    let mut pref: u16 = 0;
    for rules in [type_rules, COMMON_RULES] {
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
