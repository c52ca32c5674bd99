//! What emulated Audit Log event number `i` says.
//!
//! Owns the deterministic content of events: the event type (every type of
//! [`c42fwd_catalog::AUDIT_EVENT_TYPES`]), the actor, user agent and IP
//! address, and the type-specific details of Code42's article "Audit Log event details"
//! (`docs/api.md`), rendered straight to JSON text. Content is a pure function of
//! `(seed, i)`; a duplicate event (see `timeline`) renders its predecessor's content.
//! User-controlled text (names, notes, descriptions, agents, query text) is now and then
//! hostile: delimiters, newlines, quotes, non-ASCII, forged syslog lines, multi-KB
//! values. It does not decide when an event occurs or is visible (`timeline`), nor which
//! events a query selects (`query`).

use super::json::{self, escape_into, key, kv_bool, kv_str, kv_str_array, kv_u64, push_str};
use super::timeline::{hash3, Precision, Rng, Timeline};
use c42fwd_catalog::AUDIT_EVENT_TYPES;

const SALT_CONTENT: u64 = 101;
const SALT_POOL: u64 = 102;
const SALT_RESOURCE: u64 = 103;

/// The `actorType` of an event; also what the `userTypes` filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActorType {
    User,
    SupportUser,
    ApiClient,
    System,
    Unknown,
}

impl ActorType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "USER",
            ActorType::SupportUser => "SUPPORT_USER",
            ActorType::ApiClient => "API_CLIENT",
            ActorType::System => "SYSTEM",
            ActorType::Unknown => "UNKNOWN",
        }
    }

    /// Parses a `userTypes` filter value; the spec shows both `USER` and `User`.
    pub(crate) fn parse(s: &str) -> Option<ActorType> {
        let s = s.trim().to_ascii_uppercase();
        Some(match s.as_str() {
            "USER" => ActorType::User,
            "SUPPORT_USER" | "SUPPORTUSER" => ActorType::SupportUser,
            "API_CLIENT" | "APICLIENT" => ActorType::ApiClient,
            "SYSTEM" => ActorType::System,
            "UNKNOWN" => ActorType::Unknown,
            _ => return None,
        })
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// One actor of the emulated tenant.
#[derive(Debug)]
pub(crate) struct Actor {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: ActorType,
    /// `,"actorId":"..","actorName":".."` already escaped: actors repeat, escaping
    /// them once is part of what makes serving fast.
    json: String,
}

/// A user other events are about (`userId` / `username`).
#[derive(Debug)]
pub(crate) struct Person {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) display: String,
}

/// How a family of event types fills its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    TrustedActivity { kind: &'static str, change: Change },
    UserLifecycle,
    UserValueChange { field: UserField },
    CloudAlias,
    ExternalAttributes,
    Roles,
    LocalAuth,
    Login,
    AlertNote,
    AlertRule,
    AlertState,
    AlertRuleUsers { with_users: bool },
    WatchlistRemovedFromRule,
    ApiClient { change: ApiClientChange },
    Case { change: CaseChange },
    ChecksumPurged,
    ContentInspection,
    Watchlist { change: WatchlistChange },
    WatchlistDefinition { key: &'static str },
    WatchlistMembership,
    Federation,
    IdentityProvider { org: bool },
    FileDownload,
    Search,
    SupportAccess { enabled: bool },
    PathPurged,
    Restore { ended: bool },
    ZipDownloaded,
    RiskFactor,
    RiskProfileDate,
    RiskNotes,
    RiskIndicator { changed: bool },
    Scim,
    SharingPermission,
    TemporaryFileAccess { granted: bool },
    Generic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Added,
    Changed,
    Deleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserField {
    Email,
    Name,
    Username,
    ExternalReference,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiClientChange {
    Created,
    Deleted,
    Description,
    Name,
    Permissions,
    Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaseChange {
    Created,
    Assignee,
    Subject,
    FileEvent,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchlistChange {
    Created,
    Name,
    Description,
    Other,
}

fn change_of(name: &str) -> Change {
    if name.ends_with("_added") {
        Change::Added
    } else if name.ends_with("_deleted") {
        Change::Deleted
    } else {
        Change::Changed
    }
}

/// Maps a catalog type name to its detail family. Unknown names get `Generic`, so a
/// type added to the catalog later is still generated (with common fields only).
fn family_of(name: &str) -> Family {
    use Family::*;
    const TRUSTED: &[(&str, &str)] = &[
        ("account_name_", "ACCOUNT_NAME"),
        ("domain_", "DOMAIN"),
        ("git_repository_", "GIT_REPOSITORY"),
        ("ip_address_", "IP_ADDRESS"),
        ("slack_workspace_", "SLACK"),
        ("url_", "URL_PATH"),
    ];
    for (prefix, kind) in TRUSTED {
        if name.starts_with(prefix) {
            return TrustedActivity {
                kind,
                change: change_of(name),
            };
        }
    }
    match name {
        "user_activated" | "user_created" | "user_deactivated" => UserLifecycle,
        "user_email_changed" => UserValueChange {
            field: UserField::Email,
        },
        "user_name_changed" => UserValueChange {
            field: UserField::Name,
        },
        "username_changed" => UserValueChange {
            field: UserField::Username,
        },
        "user_external_reference_changed" => UserValueChange {
            field: UserField::ExternalReference,
        },
        "cloud_alias_added" | "cloud_alias_removed" => CloudAlias,
        "user_external_attributes_changed" => ExternalAttributes,
        "user_roles_assigned" | "user_roles_revoked" => Roles,
        "local_auth_only_changed" => LocalAuth,
        "logged_in" => Login,
        "alert_note_edited" => AlertNote,
        "alert_state_changed" => AlertState,
        "all_users_removed_from_alert_rule" => AlertRuleUsers { with_users: false },
        "users_added_to_alert_rule" | "users_removed_from_alert_rule" => {
            AlertRuleUsers { with_users: true }
        }
        "watchlist_removed_from_alert_rule" => WatchlistRemovedFromRule,
        n if n.starts_with("alert_rule_") => AlertRule,
        n if n.starts_with("api_client_") => ApiClient {
            change: match n {
                "api_client_created" => ApiClientChange::Created,
                "api_client_deleted" => ApiClientChange::Deleted,
                "api_client_description_changed" => ApiClientChange::Description,
                "api_client_name_changed" => ApiClientChange::Name,
                "api_client_secret_reset" => ApiClientChange::Secret,
                _ => ApiClientChange::Permissions,
            },
        },
        n if n.starts_with("case_") => Case {
            change: match n {
                "case_created" => CaseChange::Created,
                "case_assignee_changed" => CaseChange::Assignee,
                "case_subject_changed" => CaseChange::Subject,
                "case_file_event_added" | "case_file_event_removed" => CaseChange::FileEvent,
                _ => CaseChange::Other,
            },
        },
        "checksum_purged" => ChecksumPurged,
        n if n.starts_with("content_inspection_entity_") => ContentInspection,
        "user_added_to_watchlist_membership" | "user_removed_from_watchlist_membership" => {
            WatchlistMembership
        }
        n if n.starts_with("department_") => WatchlistDefinition { key: "departments" },
        n if n.starts_with("groups_") => WatchlistDefinition { key: "groups" },
        n if n.starts_with("excluded_users_") => WatchlistDefinition {
            key: "excludedUserIds",
        },
        n if n.starts_with("included_users_") => WatchlistDefinition {
            key: "includedUserIds",
        },
        n if n.starts_with("watchlist_") => Watchlist {
            change: match n {
                "watchlist_created" => WatchlistChange::Created,
                "watchlist_name_changed" => WatchlistChange::Name,
                "watchlist_description_changed" => WatchlistChange::Description,
                _ => WatchlistChange::Other,
            },
        },
        n if n.starts_with("federation_") => Federation,
        n if n.starts_with("identity_provider_") => IdentityProvider {
            org: n.ends_with("_org"),
        },
        // A failed download carries the same details as a successful one.
        "file_downloaded" | "file_download_io_error" => FileDownload,
        "search_issued" => Search,
        "incydr_support_user_access_enabled" => SupportAccess { enabled: true },
        "incydr_support_user_access_disabled" => SupportAccess { enabled: false },
        "path_purged" => PathPurged,
        "restore_started" => Restore { ended: false },
        "restore_ended" => Restore { ended: true },
        "zip_file_downloaded" => ZipDownloaded,
        "risk_factor_added" | "risk_factor_removed" => RiskFactor,
        "risk_profile_start_date_changed" | "risk_profile_end_date_changed" => RiskProfileDate,
        "risk_profile_notes_changed" => RiskNotes,
        "risk_indicator_changed" => RiskIndicator { changed: true },
        "risk_indicator_created" => RiskIndicator { changed: false },
        n if n.starts_with("scim_provisioner_") => Scim,
        "sharing_permission_removed" => SharingPermission,
        "temporary_file_access_granted" => TemporaryFileAccess { granted: true },
        "temporary_file_access_revoked" => TemporaryFileAccess { granted: false },
        _ => Generic,
    }
}

impl Family {
    /// True for families whose event is about a user (`userId` / `username`), which
    /// the `affectedUserIds` / `affectedUserNames` filters match.
    fn about_user(self) -> bool {
        matches!(
            self,
            Family::UserLifecycle
                | Family::UserValueChange { .. }
                | Family::CloudAlias
                | Family::ExternalAttributes
                | Family::Roles
                | Family::LocalAuth
                | Family::WatchlistMembership
                | Family::RiskFactor
                | Family::RiskProfileDate
                | Family::RiskNotes
        )
    }
}

struct TypeInfo {
    name: &'static str,
    family: Family,
    /// `{"type$":"audit_log::<name>/1"`
    open_json: String,
    /// `SearchIssued` for `search_issued`: the type as CSV and CEF exports show it.
    pascal: String,
    /// `Search issued`: the type as the console shows it.
    display: &'static str,
}

/// The per-event choices filters look at, drawn before the details.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) type_idx: usize,
    pub(crate) actor: usize,
    pub(crate) ip: usize,
    agent: Agent,
    pub(crate) success: bool,
    resource: u64,
}

#[derive(Debug, Clone, Copy)]
enum Agent {
    Empty,
    Pool(usize),
    /// A multi-KB agent string made of this many repeats of `LONG_CHUNK`.
    Long(usize),
}

/// The event's common fields and its details as separate strings, for the CSV and CEF
/// renderers, which lay them out differently from the API's JSON.
#[derive(Debug)]
pub(crate) struct EventParts<'a> {
    pub(crate) pascal: &'a str,
    /// The console's name of the type.
    pub(crate) display: &'static str,
    pub(crate) actor_id: &'a str,
    pub(crate) actor_name: &'a str,
    pub(crate) actor_type: &'static str,
    pub(crate) agent: String,
    pub(crate) ip: &'a str,
    pub(crate) timestamp: String,
    pub(crate) success: bool,
    /// A JSON object with the type-specific fields.
    pub(crate) details: String,
}

/// The deterministic generator: given the options' seed, the same event number always
/// renders to the same bytes. Holds only small pools (actors, agents, addresses).
pub(crate) struct Generator {
    pub(crate) timeline: Timeline,
    seed: u64,
    types: Vec<TypeInfo>,
    actors: Vec<Actor>,
    /// Index ranges of `actors` by role.
    humans: usize,
    support: usize,
    api_clients: std::ops::Range<usize>,
    system: usize,
    unknown: usize,
    provisioner: usize,
    intake: usize,
    people: Vec<Person>,
    /// Pre-escaped `,"actorAgent":".."` fragments.
    agents_json: Vec<String>,
    agents: Vec<&'static str>,
    /// Pre-escaped `,"actorIpAddress":".."` fragments and their raw values.
    ips: Vec<String>,
    ips_json: Vec<String>,
    logged_in: usize,
    search_issued: usize,
    file_downloaded: usize,
}

pub(crate) const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoë", "josé",
    "søren", "aiko", "chloé",
];
pub(crate) const LAST: &[&str] = &[
    "smith", "jones", "garcia", "müller", "nakamura", "okafor", "rossi", "dubois", "kowalski",
    "nguyen", "silva", "o'brien",
];

const BROWSER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.81",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
];
const SDK_AGENTS: &[&str] = &[
    "py42 1.29.0 python 3.11.4",
    "code42cli/1.19.0 (py42 1.29.0; python 3.11.4)",
    "incydr/2.12.0 python/3.12.2",
    "Code42 Insider Threat app for Splunk 3.1.2",
    "okhttp/4.12.0",
    "curl/8.5.0",
];
const HOSTILE_AGENTS: &[&str] = &[
    "Mozilla/5.0 \"quoted\" |pipe| key=value back\\slash",
    "agent\n<13>1 2020-01-01T00:00:00Z evil - - - forged",
    "エージェント/1.0 (日本語; café) 🚀",
    "crlf\r\nX-Injected: yes",
];

/// User-controlled text that tries to break encoders and framing.
pub(crate) const HOSTILE: &[&str] = &[
    "a|b|c pipe|delimited",
    "key=value=more equals",
    "back\\slash \\path\\ end\\",
    "line one\nline two",
    "carriage\rreturn",
    "quote \"quoted\" text",
    "café résumé naïve",
    "日本語のテキスト",
    "emoji 🚨🔥👀",
    "\n<13>1 2020-01-01T00:00:00Z evil - - - forged",
    "mixed |=\\\n\r\" é 日本 🚀",
    "tab\tseparated\tvalues",
    "CEF:0|Evil|Inject|1|100|x|10|src=10.0.0.1",
    "control \u{1}\u{7}\u{1b}[31m chars",
];
const LONG_CHUNK: &str = "long value |=\\ é 日本 🚀 \"q\" ";

const CASE_NAMES: &[&str] = &[
    "Departing employee review",
    "Source code exfiltration",
    "Q3 sales deck on personal drive",
    "USB copy investigation",
    "Contractor offboarding",
];
const RULE_NAMES: &[&str] = &[
    "Departing employees - cloud uploads",
    "Removable media exfiltration",
    "Source code to personal GitHub",
    "High impact employees",
    "Zip files to webmail",
];
const WATCHLIST_NAMES: &[&str] = &[
    "Departing employees",
    "High impact employees",
    "Flight risk",
    "New hires",
    "Contractors",
];
const NOTES: &[&str] = &[
    "Reviewed with manager; benign.",
    "Escalated to legal.",
    "User confirmed the upload was a backup.",
    "Follow up after HR interview.",
];
const DESCRIPTIONS: &[&str] = &[
    "Corporate tenant",
    "Engineering collaboration",
    "Approved by security",
    "Partner access",
];
const ROLES: &[&str] = &[
    "Customer Cloud Admin",
    "Security Center User",
    "Alert Management",
    "Audit Log Viewer",
    "Insider Risk Admin",
    "Incydr Analyst",
    "Desktop User",
];
const RISK_FACTORS: &[&str] = &[
    "FLIGHT_RISK",
    "HIGH_IMPACT_EMPLOYEE",
    "PERFORMANCE_CONCERNS",
    "ELEVATED_ACCESS_PRIVILEGES",
    "POOR_SECURITY_PRACTICES",
    "SUSPICIOUS_SYSTEM_ACTIVITY",
    "CONTRACT_EMPLOYEE",
];
const ATTRIBUTES: &[&str] = &[
    "country",
    "division",
    "department",
    "employee_type",
    "locality",
    "manager_user_id",
    "region",
    "title",
];
const DEPARTMENTS: &[&str] = &["Engineering", "Sales", "Finance", "Legal", "R&D", "Ventes"];
const GROUPS: &[&str] = &["eng-all", "sales-emea", "contractors", "finance-leads"];
const FILE_NAMES: &[&str] = &[
    "roadmap-2025.pptx",
    "customer_list.csv",
    "source.zip",
    "payroll Q3.xlsx",
    "設計書.pdf",
    "résumé.docx",
];
const STATES: &[&str] = &["OPEN", "IN_PROGRESS", "PENDING", "RESOLVED"];
const SEVERITIES: &[&str] = &["LOW", "MODERATE", "HIGH", "CRITICAL"];
const CLOUD_SERVICES: &[&str] = &["GOOGLE_DRIVE", "ONEDRIVE", "BOX"];
const INDICATORS: &[&str] = &[
    "Remote activity",
    "Removable media",
    "Personal cloud storage",
    "Source code",
    "Zip files",
];

impl Generator {
    pub(crate) fn new(seed: u64, timeline: Timeline) -> Self {
        let types: Vec<TypeInfo> = AUDIT_EVENT_TYPES
            .iter()
            .map(|t| {
                let mut open_json = String::from("{\"type$\":\"audit_log::");
                open_json.push_str(t.name);
                open_json.push_str("/1\"");
                TypeInfo {
                    name: t.name,
                    family: family_of(t.name),
                    open_json,
                    pascal: pascal_case(t.name),
                    display: t.display,
                }
            })
            .collect();
        let position = |n: &str| types.iter().position(|t| t.name == n).unwrap_or(0);
        let (logged_in, search_issued, file_downloaded) = (
            position("logged_in"),
            position("search_issued"),
            position("file_downloaded"),
        );

        let mut pool = Rng::new(hash3(seed, SALT_POOL, 0));
        let people: Vec<Person> = (0..64)
            .map(|n| {
                let first = FIRST[n % FIRST.len()];
                let last = LAST[(n / FIRST.len() + n) % LAST.len()];
                let id = 900_000_000_000_000_000 + pool.below(99_999_999_999_999_999);
                Person {
                    id: id.to_string(),
                    username: format!("{first}.{last}{}@example.com", n / 24),
                    display: format!("{} {}", capitalize(first), capitalize(last)),
                }
            })
            .collect();

        let mut actors = Vec::new();
        let mut actor = |id: String, name: String, kind: ActorType| {
            let mut json = String::new();
            kv_str(&mut json, "actorId", &id);
            kv_str(&mut json, "actorName", &name);
            actors.push(Actor {
                id,
                name,
                kind,
                json,
            });
        };
        for p in &people[..40] {
            actor(p.id.clone(), p.username.clone(), ActorType::User);
        }
        let humans = 40;
        actor(
            "910391548587130243".into(),
            "marvin@code42.com".into(),
            ActorType::SupportUser,
        );
        let support = humans;
        for name in [
            "SIEM forwarder",
            "py42 automation",
            "SOAR playbook",
            "Splunk app",
        ] {
            actor(
                format!("key-{}", uuid(&mut pool)),
                name.into(),
                ActorType::ApiClient,
            );
        }
        let api_clients = support + 1..support + 5;
        actor(String::new(), "system".into(), ActorType::System);
        let system = api_clients.end;
        actor(
            (900_000_000_000_000_000 + pool.below(99_999_999_999_999_999)).to_string(),
            String::new(),
            ActorType::Unknown,
        );
        let unknown = system + 1;
        actor(
            (900_000_000_000_000_000 + pool.below(99_999_999_999_999_999)).to_string(),
            "azure_1234@cloud.code42.com".into(),
            ActorType::User,
        );
        let provisioner = unknown + 1;
        // The "initial intake" actor of Code42's troubleshooting note (`docs/api.md`): no
        // user, no address, no agent.
        actor(String::new(), String::new(), ActorType::Unknown);
        let intake = provisioner + 1;

        let agents: Vec<&'static str> = BROWSER_AGENTS
            .iter()
            .chain(SDK_AGENTS)
            .chain(HOSTILE_AGENTS)
            .copied()
            .collect();
        let agents_json = key_values("actorAgent", &agents);

        // Addresses: mostly IPv4, some IPv6, some proxy chains, one empty.
        let mut ips = vec![String::new()];
        for n in 0..160u64 {
            let h = pool.next_u64();
            ips.push(match n % 4 {
                0 => format!("10.{}.{}.{}", h % 256, (h >> 8) % 256, (h >> 16) % 254 + 1),
                1 => format!("192.0.2.{}", (h >> 16) % 254 + 1),
                2 => format!("203.0.113.{}", (h >> 16) % 254 + 1),
                _ => format!("198.51.100.{}", (h >> 16) % 254 + 1),
            });
        }
        for _ in 0..32 {
            let h = pool.next_u64();
            ips.push(format!(
                "2001:db8:{:x}:{:x}::{:x}",
                h & 0xffff,
                (h >> 16) & 0xffff,
                (h >> 32) & 0xffff
            ));
        }
        for _ in 0..16 {
            let h = pool.next_u64();
            ips.push(format!(
                "10.1.{}.{}, 2001:db8::{:x}",
                h % 256,
                (h >> 8) % 254 + 1,
                (h >> 16) & 0xfff
            ));
        }
        let ips_json = key_values("actorIpAddress", &ips);

        Generator {
            timeline,
            seed,
            types,
            actors,
            humans,
            support,
            api_clients,
            system,
            unknown,
            provisioner,
            intake,
            people,
            agents_json,
            agents,
            ips,
            ips_json,
            logged_in,
            search_issued,
            file_downloaded,
        }
    }

    pub(crate) fn type_count(&self) -> usize {
        self.types.len()
    }

    /// The catalog index of a type name, as the `eventTypes` filter names it.
    pub(crate) fn type_index(&self, name: &str) -> Option<usize> {
        self.types.iter().position(|t| t.name == name)
    }

    pub(crate) fn actor(&self, head: &Head) -> &Actor {
        &self.actors[head.actor]
    }

    pub(crate) fn ip(&self, head: &Head) -> &str {
        &self.ips[head.ip]
    }

    /// Draws the choices of event `i` (of its source, for a duplicate) and returns the
    /// generator positioned for its details.
    pub(crate) fn head(&self, i: u64) -> (Head, Rng) {
        let src = self.timeline.source(i);
        let mut rng = Rng::new(hash3(self.seed, SALT_CONTENT, src));
        // A realistic mix: logins and searches dominate; every type still shows up
        // about once per 300 events.
        let r = rng.below(1_000);
        let type_idx = if r < 300 {
            self.logged_in
        } else if r < 550 {
            self.search_issued
        } else if r < 600 {
            self.file_downloaded
        } else {
            rng.below(self.types.len() as u64) as usize
        };
        let family = self.types[type_idx].family;
        let roll = rng.below(100);
        let actor = match family {
            Family::ExternalAttributes => self.provisioner,
            Family::UserLifecycle | Family::LocalAuth if roll < 10 => self.intake,
            Family::Login => match roll {
                0..=84 => rng.below(self.humans as u64) as usize,
                85..=89 => self.support,
                _ => self.api_clients.start + rng.below(self.api_clients.len() as u64) as usize,
            },
            Family::RiskIndicator { changed: false } if roll < 50 => self.system,
            _ => match roll {
                0..=79 => rng.below(self.humans as u64) as usize,
                80..=84 => self.support,
                85..=94 => {
                    self.api_clients.start + rng.below(self.api_clients.len() as u64) as usize
                }
                95..=97 => self.system,
                _ => self.unknown,
            },
        };
        let kind = self.actors[actor].kind;
        let (agent, ip) = if actor == self.intake || actor == self.provisioner {
            (Agent::Empty, 0)
        } else if kind == ActorType::System {
            (
                Agent::Empty,
                if rng.chance(50) { 0 } else { 1 + actor % 160 },
            )
        } else {
            let agent = if kind == ActorType::ApiClient {
                Agent::Pool(BROWSER_AGENTS.len() + rng.below(SDK_AGENTS.len() as u64) as usize)
            } else {
                match rng.below(1_000) {
                    0..=899 => Agent::Pool(rng.below(BROWSER_AGENTS.len() as u64) as usize),
                    900..=959 => Agent::Pool(
                        BROWSER_AGENTS.len() + rng.below(SDK_AGENTS.len() as u64) as usize,
                    ),
                    960..=996 => Agent::Pool(
                        BROWSER_AGENTS.len()
                            + SDK_AGENTS.len()
                            + rng.below(HOSTILE_AGENTS.len() as u64) as usize,
                    ),
                    _ => Agent::Long(60 + rng.below(120) as usize),
                }
            };
            // Actors mostly come from a few addresses of their own.
            let ip = match rng.below(100) {
                0..=2 => 0,
                3..=84 => 1 + (actor * 3 + rng.below(3) as usize) % 160,
                85..=94 => 161 + rng.below(32) as usize,
                _ => 193 + rng.below(16) as usize,
            };
            (agent, ip)
        };
        let success = match family {
            Family::Login => rng.below(100) >= 8,
            Family::FileDownload => rng.below(100) >= 3,
            _ => rng.below(1_000) >= 5,
        };
        let head = Head {
            type_idx,
            actor,
            ip,
            agent,
            success,
            resource: rng.below(400),
        };
        (head, rng)
    }

    /// The affected user of a user-related event (`userId`, `username`).
    pub(crate) fn affected(&self, head: &Head) -> Option<&Person> {
        if self.types[head.type_idx].family.about_user() {
            Some(&self.people[head.resource as usize % self.people.len()])
        } else {
            None
        }
    }

    /// The id of the thing the event is about, as the `resourceIds` filter matches it
    /// (rule id, case number, watchlist id, user id, ...); `None` for logins/searches.
    pub(crate) fn resource_id(&self, head: &Head) -> Option<String> {
        let family = self.types[head.type_idx].family;
        if let Some(p) = self.affected(head) {
            return Some(p.id.clone());
        }
        let r = head.resource;
        Some(match family {
            Family::Login | Family::Search | Family::SupportAccess { .. } | Family::Generic => {
                return None
            }
            Family::Case { .. } => (r + 1).to_string(),
            Family::ApiClient { .. } => format!("key-{}", self.res_uuid(11, r)),
            Family::AlertRule
            | Family::AlertRuleUsers { .. }
            | Family::WatchlistRemovedFromRule => self.res_uuid(1, r),
            Family::AlertNote | Family::AlertState => self.res_uuid(2, r),
            Family::Watchlist { .. } | Family::WatchlistDefinition { .. } => self.res_uuid(3, r),
            Family::TrustedActivity { .. } => self.res_uuid(4, r),
            Family::Federation => self.res_uuid(5, r),
            Family::IdentityProvider { .. } => self.res_uuid(6, r),
            Family::Scim => self.res_uuid(7, r),
            Family::ContentInspection => self.res_uuid(8, r),
            Family::RiskIndicator { .. } => self.res_uuid(9, r % INDICATORS.len() as u64),
            Family::FileDownload
            | Family::ChecksumPurged
            | Family::SharingPermission
            | Family::TemporaryFileAccess { .. } => self.file_id(r),
            Family::Restore { .. } | Family::ZipDownloaded => (1_000_000 + r * 7_919).to_string(),
            Family::PathPurged => (800_000_000_000_000_000 + r * 104_729).to_string(),
            // Covered by `affected` above.
            _ => return None,
        })
    }

    fn res_uuid(&self, kind: u64, r: u64) -> String {
        uuid(&mut Rng::new(hash3(self.seed, SALT_RESOURCE + kind, r)))
    }

    fn file_id(&self, r: u64) -> String {
        let h1 = hash3(self.seed, SALT_RESOURCE + 20, r);
        let h2 = hash3(self.seed, SALT_RESOURCE + 21, r);
        format!("{h1:016x}{h2:016x}")
    }

    /// Appends the JSON text of event `i` exactly as the API serves it.
    pub(crate) fn render(&self, i: u64, out: &mut String) {
        let (head, mut rng) = self.head(i);
        let ty = &self.types[head.type_idx];
        let actor = &self.actors[head.actor];
        out.push_str(&ty.open_json);
        out.push_str(&actor.json);
        match head.agent {
            Agent::Empty => out.push_str(",\"actorAgent\":\"\""),
            Agent::Pool(n) => out.push_str(&self.agents_json[n]),
            Agent::Long(n) => {
                json::key(out, "actorAgent");
                push_long(out, n);
            }
        }
        out.push_str(&self.ips_json[head.ip]);
        out.push_str(",\"actorType\":\"");
        out.push_str(actor.kind.as_str());
        out.push_str("\",\"timestamp\":\"");
        let (t, p) = self.timeline.occurred(i);
        json::push_timestamp(out, t, p);
        out.push('"');
        kv_bool(out, "success", head.success);
        self.details(&head, &mut rng, t, out);
        out.push('}');
    }

    /// The event's parts for the CSV and CEF renderers.
    pub(crate) fn parts(&self, i: u64) -> EventParts<'_> {
        let (head, mut rng) = self.head(i);
        let ty = &self.types[head.type_idx];
        let actor = &self.actors[head.actor];
        let agent = match head.agent {
            Agent::Empty => String::new(),
            Agent::Pool(n) => self.agents[n].to_string(),
            Agent::Long(n) => LONG_CHUNK.repeat(n),
        };
        let mut timestamp = String::new();
        let (t, p) = self.timeline.occurred(i);
        json::push_timestamp(&mut timestamp, t, p);
        let mut details = String::new();
        self.details(&head, &mut rng, t, &mut details);
        // `details` is `,"k":v,...`: turn it into an object.
        let details = if details.is_empty() {
            "{}".to_string()
        } else {
            format!("{{{}}}", &details[1..])
        };
        EventParts {
            pascal: &ty.pascal,
            display: ty.display,
            actor_id: &actor.id,
            actor_name: &actor.name,
            actor_type: actor.kind.as_str(),
            agent,
            ip: &self.ips[head.ip],
            timestamp,
            success: head.success,
            details,
        }
    }

    fn person(&self, rng: &mut Rng) -> &Person {
        rng.pick(&self.people)
    }

    /// The type-specific fields, each appended as `,"key":value`.
    fn details(&self, head: &Head, rng: &mut Rng, occurred_ns: i64, out: &mut String) {
        let family = self.types[head.type_idx].family;
        let r = head.resource;
        let rid = || self.resource_id(head).unwrap_or_default();
        if let Some(p) = self.affected(head) {
            kv_str(out, "userId", &p.id);
            // Code42's article (`docs/api.md`): "Username change" leaves the affected
            // user empty because the value is in the old/new fields.
            if family
                != (Family::UserValueChange {
                    field: UserField::Username,
                })
            {
                kv_str(out, "username", &p.username);
            }
        }
        match family {
            Family::TrustedActivity { kind, change } => {
                kv_str(out, "trustedActivityId", &rid());
                kv_str(out, "activityType", kind);
                let value = |rng: &mut Rng| -> String {
                    let n = rng.below(90) + 10;
                    match kind {
                        "ACCOUNT_NAME" => format!("acme-corp-{n}"),
                        "DOMAIN" => format!("partner{n}.example.com"),
                        "GIT_REPOSITORY" => format!("https://git.example.com/acme/repo-{n}.git"),
                        "IP_ADDRESS" => format!("203.0.113.{n}/32"),
                        "SLACK" => format!("acme-{n}.slack.com"),
                        _ => format!("https://files.example.com/share/{n}/"),
                    }
                };
                kv_str(out, "value", &value(rng));
                key(out, "description");
                self.text(rng, DESCRIPTIONS, out);
                if change == Change::Changed {
                    kv_str(out, "previousValue", &value(rng));
                    key(out, "previousDescription");
                    self.text(rng, DESCRIPTIONS, out);
                }
            }
            Family::UserLifecycle | Family::Roles | Family::LocalAuth | Family::RiskFactor => {
                match family {
                    Family::Roles => {
                        let n = 1 + rng.below(3) as usize;
                        let start = rng.below(ROLES.len() as u64) as usize;
                        kv_str_array(
                            out,
                            "roleNames",
                            (0..n).map(|k| ROLES[(start + k) % ROLES.len()]),
                        );
                    }
                    Family::LocalAuth => kv_bool(out, "updatedLocalAuthOnlyStatus", rng.chance(50)),
                    Family::RiskFactor => {
                        let n = 1 + rng.below(2) as usize;
                        let start = rng.below(RISK_FACTORS.len() as u64) as usize;
                        kv_str_array(
                            out,
                            "riskFactors",
                            (0..n).map(|k| RISK_FACTORS[(start + k) % RISK_FACTORS.len()]),
                        );
                    }
                    _ => kv_u64(out, "orgId", 1_000 + rng.below(20)),
                }
            }
            Family::UserValueChange { field } => {
                let p = self
                    .affected(head)
                    .map(|p| p.username.as_str())
                    .unwrap_or("");
                match field {
                    UserField::Email | UserField::Username => {
                        kv_str(out, "oldValue", p);
                        kv_str(out, "newValue", &format!("renamed.{}", p));
                    }
                    UserField::Name => {
                        kv_str(out, "oldValue", &self.person(rng).display);
                        key(out, "newValue");
                        let d = &self.person(rng).display;
                        self.text(rng, &[d.as_str()], out);
                    }
                    UserField::ExternalReference => {
                        kv_str(out, "oldValue", &format!("EMP-{}", rng.below(99_999)));
                        key(out, "newValue");
                        self.text(rng, &["EMP-10442", "asset tag 7781", "HD-2231"], out);
                    }
                }
            }
            Family::CloudAlias => {
                let p = self.person(rng);
                let alias = p.username.replace("@example.com", "@gmail.com");
                kv_str(out, "cloudAlias", &alias);
            }
            Family::ExternalAttributes => {
                key(out, "changes");
                out.push('[');
                let n = 1 + rng.below(3) as usize;
                let start = rng.below(ATTRIBUTES.len() as u64) as usize;
                for k in 0..n {
                    if k > 0 {
                        out.push(',');
                    }
                    let field = ATTRIBUTES[(start + k) % ATTRIBUTES.len()];
                    out.push_str("{\"field\":");
                    push_str(out, field);
                    let (old, new) = self.attribute_values(field, rng);
                    out.push_str(",\"oldValue\":");
                    push_str(out, &old);
                    out.push_str(",\"newValue\":");
                    push_str(out, &new);
                    out.push('}');
                }
                out.push(']');
            }
            Family::Login => {
                let (login, method) = match self.actors[head.actor].kind {
                    ActorType::ApiClient => ("API_CLIENT", "CLIENT_CREDENTIALS"),
                    _ => *rng.pick(&[
                        ("LOCAL", "PASSWORD"),
                        ("LOCAL", "PASSWORD_TOTP"),
                        ("SSO", "SAML"),
                        ("SSO", "OIDC"),
                        ("API", "BASIC"),
                    ]),
                };
                kv_str(out, "loginType", login);
                kv_str(out, "authenticationMethod", method);
            }
            Family::AlertNote => {
                kv_str(out, "alertId", &rid());
                key(out, "note");
                self.text(rng, NOTES, out);
            }
            Family::AlertState => {
                kv_str(out, "alertId", &rid());
                let from = rng.below(STATES.len() as u64) as usize;
                let to = (from + 1 + rng.below(3) as usize) % STATES.len();
                kv_str(out, "oldState", STATES[from]);
                kv_str(out, "newState", STATES[to]);
                if rng.chance(30) {
                    key(out, "note");
                    self.text(rng, NOTES, out);
                }
            }
            Family::AlertRule
            | Family::AlertRuleUsers { .. }
            | Family::WatchlistRemovedFromRule => {
                kv_str(out, "ruleId", &rid());
                key(out, "ruleName");
                self.text_at(rng, RULE_NAMES, r as usize, out);
                if family == Family::AlertRule {
                    kv_str(
                        out,
                        "ruleType",
                        rng.pick_str(&[
                            "FED_ENDPOINT_EXFILTRATION",
                            "FED_CLOUD_SHARE_PERMISSIONS",
                            "FED_FILE_TYPE_MISMATCH",
                        ]),
                    );
                }
                if family == (Family::AlertRuleUsers { with_users: true }) {
                    let n = 1 + rng.below(3);
                    key(out, "userIds");
                    out.push('[');
                    for k in 0..n {
                        if k > 0 {
                            out.push(',');
                        }
                        push_str(out, &self.person(rng).id);
                    }
                    out.push(']');
                }
                if family == Family::WatchlistRemovedFromRule {
                    let w = rng.below(400);
                    kv_str(out, "watchlistId", &self.res_uuid(3, w));
                    kv_str(
                        out,
                        "watchlistName",
                        WATCHLIST_NAMES[w as usize % WATCHLIST_NAMES.len()],
                    );
                }
            }
            Family::ApiClient { change } => {
                kv_str(out, "apiClientId", &rid());
                let names = [
                    "SIEM forwarder",
                    "py42 automation",
                    "SOAR playbook",
                    "Splunk app",
                ];
                match change {
                    ApiClientChange::Created => {
                        key(out, "name");
                        self.text(rng, &names, out);
                        key(out, "description");
                        self.text(rng, DESCRIPTIONS, out);
                        self.permissions(rng, out);
                    }
                    ApiClientChange::Name => {
                        kv_str(out, "oldName", rng.pick_str(&names));
                        key(out, "newName");
                        self.text(rng, &names, out);
                    }
                    ApiClientChange::Description => {
                        kv_str(out, "oldDescription", rng.pick_str(DESCRIPTIONS));
                        key(out, "newDescription");
                        self.text(rng, DESCRIPTIONS, out);
                    }
                    ApiClientChange::Permissions => self.permissions(rng, out),
                    ApiClientChange::Deleted | ApiClientChange::Secret => {
                        kv_str(out, "name", rng.pick_str(&names))
                    }
                }
            }
            Family::Case { change } => {
                kv_u64(out, "caseNumber", r + 1);
                key(out, "caseName");
                self.text_at(rng, CASE_NAMES, r as usize, out);
                match change {
                    CaseChange::Created => {
                        key(out, "description");
                        self.text(rng, NOTES, out);
                        kv_str(out, "subject", &self.person(rng).id);
                    }
                    CaseChange::Assignee => {
                        kv_str(out, "previousAssignee", &self.person(rng).id);
                        kv_str(out, "assignee", &self.person(rng).id);
                    }
                    CaseChange::Subject => {
                        kv_str(out, "previousSubject", &self.person(rng).id);
                        kv_str(out, "subject", &self.person(rng).id);
                    }
                    CaseChange::FileEvent => {
                        kv_str(
                            out,
                            "fileEventId",
                            &format!(
                                "0_{}_{}",
                                self.res_uuid(30, rng.below(1 << 20)),
                                rng.below(1 << 40)
                            ),
                        );
                    }
                    CaseChange::Other => {}
                }
            }
            Family::ChecksumPurged => {
                let (md5, sha) = hashes(rng);
                kv_str(out, "fileId", &rid());
                kv_str(out, "md5Checksum", &md5);
                kv_str(out, "sha256Checksum", &sha);
            }
            Family::ContentInspection => {
                kv_str(out, "entityId", &rid());
                key(out, "entityName");
                self.text(
                    rng,
                    &["Project Falcon", "Customer PII", "Source headers"],
                    out,
                );
                kv_str(out, "entityType", rng.pick_str(&["KEYWORD", "REGEX"]));
                kv_str(
                    out,
                    "pattern",
                    rng.pick_str(&[
                        "falcon|raptor",
                        "\\b\\d{3}-\\d{2}-\\d{4}\\b",
                        "(?i)confidential=true",
                    ]),
                );
            }
            Family::Watchlist { change } => {
                kv_str(out, "watchlistId", &rid());
                key(out, "watchlistName");
                self.text_at(rng, WATCHLIST_NAMES, r as usize, out);
                match change {
                    WatchlistChange::Created => kv_str(
                        out,
                        "watchlistType",
                        rng.pick_str(&["DEPARTING_EMPLOYEE", "HIGH_IMPACT_EMPLOYEE", "CUSTOM"]),
                    ),
                    WatchlistChange::Name => {
                        kv_str(out, "oldName", rng.pick_str(WATCHLIST_NAMES));
                        key(out, "newName");
                        self.text(rng, WATCHLIST_NAMES, out);
                    }
                    WatchlistChange::Description => {
                        kv_str(out, "oldDescription", rng.pick_str(DESCRIPTIONS));
                        key(out, "newDescription");
                        self.text(rng, DESCRIPTIONS, out);
                    }
                    WatchlistChange::Other => {}
                }
            }
            Family::WatchlistDefinition { key: field } => {
                kv_str(out, "watchlistId", &rid());
                kv_str(
                    out,
                    "watchlistName",
                    WATCHLIST_NAMES[r as usize % WATCHLIST_NAMES.len()],
                );
                let n = 1 + rng.below(3) as usize;
                match field {
                    "departments" => {
                        let s = rng.below(DEPARTMENTS.len() as u64) as usize;
                        kv_str_array(
                            out,
                            field,
                            (0..n).map(|k| DEPARTMENTS[(s + k) % DEPARTMENTS.len()]),
                        );
                    }
                    "groups" => {
                        let s = rng.below(GROUPS.len() as u64) as usize;
                        kv_str_array(out, field, (0..n).map(|k| GROUPS[(s + k) % GROUPS.len()]));
                    }
                    _ => {
                        let ids: Vec<&str> = (0..n).map(|_| self.person(rng).id.as_str()).collect();
                        kv_str_array(out, field, ids);
                    }
                }
            }
            Family::WatchlistMembership => {
                let w = rng.below(400);
                kv_str(out, "watchlistId", &self.res_uuid(3, w));
                kv_str(
                    out,
                    "watchlistName",
                    WATCHLIST_NAMES[w as usize % WATCHLIST_NAMES.len()],
                );
            }
            Family::Federation => {
                kv_str(out, "federationId", &rid());
                key(out, "federationName");
                self.text(rng, &["Okta", "Azure AD", "Ping"], out);
            }
            Family::IdentityProvider { org } => {
                kv_str(out, "identityProviderId", &rid());
                key(out, "identityProviderName");
                self.text(
                    rng,
                    &["Okta SAML", "Azure AD SAML", "Google Workspace"],
                    out,
                );
                if org {
                    kv_u64(out, "orgId", 1_000 + rng.below(20));
                    kv_str(
                        out,
                        "orgName",
                        rng.pick_str(&["Engineering", "Sales", "Contractors"]),
                    );
                }
            }
            Family::FileDownload | Family::ZipDownloaded => {
                if family == Family::ZipDownloaded {
                    kv_u64(out, "restoreId", 1_000_000 + r * 7_919);
                } else {
                    kv_str(out, "fileId", &rid());
                }
                key(out, "fileName");
                self.text(rng, FILE_NAMES, out);
                kv_u64(out, "fileSize", rng.below(1 << 31));
                let (md5, sha) = hashes(rng);
                kv_str(out, "md5", &md5);
                kv_str(out, "sha256", &sha);
                if family == Family::FileDownload {
                    kv_str(
                        out,
                        "downloadSource",
                        rng.pick_str(&["FORENSIC_SEARCH", "CASE", "ALERT"]),
                    );
                }
            }
            Family::Search => {
                kv_str(out, "type", "query");
                let doc = self.request_json(rng);
                kv_str(out, "requestJson", &doc);
                kv_u64(out, "resultCount", rng.below(10_001));
            }
            Family::SupportAccess { enabled } => {
                if enabled {
                    let mut s = String::new();
                    let hours = 24 * (1 + rng.below(14)) as i64;
                    json::push_timestamp(
                        &mut s,
                        occurred_ns + hours * 3_600 * super::timeline::NANOS_PER_SEC,
                        Precision::Millis,
                    );
                    kv_str(out, "expiresAt", &s);
                }
                kv_str(out, "supportUsername", "marvin@code42.com");
            }
            Family::PathPurged => {
                kv_str(out, "deviceId", &rid());
                key(out, "path");
                self.text(
                    rng,
                    &[
                        "C:\\Users\\jdoe\\Documents\\secret\\",
                        "/Users/jdoe/Downloads/*.zip",
                    ],
                    out,
                );
            }
            Family::Restore { ended } => {
                kv_u64(out, "restoreId", 1_000_000 + r * 7_919);
                kv_str(out, "restoreType", rng.pick_str(&["WEB", "PUSH", "ZIP"]));
                kv_str(
                    out,
                    "sourceDeviceId",
                    &(800_000_000_000_000_000 + rng.below(1 << 40)).to_string(),
                );
                kv_str(
                    out,
                    "targetDeviceId",
                    &(800_000_000_000_000_000 + rng.below(1 << 40)).to_string(),
                );
                kv_str(out, "restoreOwnerUsername", &self.person(rng).username);
                kv_u64(out, "fileCount", 1 + rng.below(5_000));
                if ended {
                    kv_u64(out, "totalSize", rng.below(1 << 34));
                }
            }
            Family::RiskProfileDate => {
                let date = |rng: &mut Rng| {
                    format!("2025-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28))
                };
                if rng.chance(30) {
                    key(out, "oldValue");
                    out.push_str("null");
                } else {
                    kv_str(out, "oldValue", &date(rng));
                }
                kv_str(out, "newValue", &date(rng));
            }
            Family::RiskNotes => {
                key(out, "oldValue");
                self.text(rng, NOTES, out);
                key(out, "newValue");
                self.text(rng, NOTES, out);
            }
            Family::RiskIndicator { changed } => {
                kv_str(out, "riskIndicatorId", &rid());
                kv_str(
                    out,
                    "riskIndicatorName",
                    INDICATORS[r as usize % INDICATORS.len()],
                );
                if changed {
                    kv_str(out, "oldSeverity", rng.pick_str(SEVERITIES));
                }
                kv_str(out, "severity", rng.pick_str(SEVERITIES));
            }
            Family::Scim => {
                kv_str(out, "provisionerId", &rid());
                key(out, "provisionerName");
                self.text(
                    rng,
                    &["Azure AD provisioning", "Okta provisioning", "PingOne"],
                    out,
                );
            }
            Family::SharingPermission | Family::TemporaryFileAccess { .. } => {
                kv_str(out, "fileId", &rid());
                key(out, "fileName");
                self.text(rng, FILE_NAMES, out);
                kv_str(out, "cloudService", rng.pick_str(CLOUD_SERVICES));
                match family {
                    Family::SharingPermission => {
                        kv_str(out, "sharedWith", &self.person(rng).username);
                        kv_str(
                            out,
                            "permission",
                            rng.pick_str(&["READER", "WRITER", "COMMENTER"]),
                        );
                    }
                    Family::TemporaryFileAccess { granted: true } => {
                        kv_u64(out, "accessDurationMinutes", 15)
                    }
                    _ => {}
                }
            }
            Family::Generic => {}
        }
    }

    fn permissions(&self, rng: &mut Rng, out: &mut String) {
        let all = [
            "Alerts: Read",
            "Alerts: Write",
            "Audit Log: Read",
            "Cases: Read",
            "Users: Write",
        ];
        let n = 1 + rng.below(3) as usize;
        let s = rng.below(all.len() as u64) as usize;
        kv_str_array(out, "permissions", (0..n).map(|k| all[(s + k) % all.len()]));
    }

    fn attribute_values(&self, field: &str, rng: &mut Rng) -> (String, String) {
        match field {
            "manager_user_id" => (self.person(rng).id.clone(), self.person(rng).id.clone()),
            "country" => (
                rng.pick_str(&["US", "DE", "FR", "JP"]).to_string(),
                rng.pick_str(&["IE", "GB"]).to_string(),
            ),
            "department" | "division" => (
                rng.pick_str(DEPARTMENTS).to_string(),
                rng.pick_str(DEPARTMENTS).to_string(),
            ),
            _ => {
                let mut s = String::new();
                self.raw_text(
                    rng,
                    &["Senior Engineer", "Contractor", "EMEA", "Minneapolis"],
                    &mut s,
                );
                ("".to_string(), s)
            }
        }
    }

    /// A Forensic Search request document, as `requestJson` carries it (a JSON text
    /// inside a string; the query value is user-controlled).
    fn request_json(&self, rng: &mut Rng) -> String {
        let mut doc = String::from(
            "{\"groups\":[{\"filters\":[{\"term\":\"eventTimestamp\",\"operator\":\"WITHIN_THE_LAST\",\"value\":\"P",
        );
        json::push_u64(&mut doc, 1 + rng.below(90));
        doc.push_str("D\",\"display\":null}],\"filterClause\":\"AND\",\"display\":\"{\\\"data\\\":{\\\"isMultivalue\\\":false},\\\"version\\\":\\\"v1\\\"}\"},{\"filters\":[{\"term\":\"");
        doc.push_str(rng.pick_str(&["fileName", "exposure", "deviceUserName", "md5Checksum"]));
        doc.push_str("\",\"operator\":\"IS\",\"value\":");
        let mut value = String::new();
        self.raw_text(
            rng,
            &["ApplicationRead", "*.zip", "jdoe@example.com"],
            &mut value,
        );
        push_str(&mut doc, &value);
        doc.push_str(",\"display\":null}],\"filterClause\":\"OR\"}],\"groupClause\":\"AND\",\"pgSize\":100,\"pgNum\":1,\"srtKey\":null,\"srtDir\":\"desc\",\"purpose\":\"USER_EXECUTED_SEARCH\"}");
        doc
    }

    /// Appends a quoted JSON string of user-controlled text: usually one of `normal`,
    /// sometimes hostile, rarely a multi-KB value.
    fn text(&self, rng: &mut Rng, normal: &[&str], out: &mut String) {
        let n = rng.below(normal.len() as u64) as usize;
        self.text_at(rng, normal, n, out);
    }

    /// Like `text`, with the normal value fixed (a rule or case keeps its name).
    fn text_at(&self, rng: &mut Rng, normal: &[&str], n: usize, out: &mut String) {
        match rng.below(1_000) {
            0..=879 => push_str(out, normal[n % normal.len()]),
            880..=996 => push_str(out, rng.pick_str(HOSTILE)),
            _ => push_long(out, 60 + rng.below(150) as usize),
        }
    }

    /// Like `text`, unquoted and unescaped (for values built into other documents).
    fn raw_text(&self, rng: &mut Rng, normal: &[&str], out: &mut String) {
        match rng.below(1_000) {
            0..=879 => out.push_str(rng.pick_str(normal)),
            880..=996 => out.push_str(rng.pick_str(HOSTILE)),
            _ => out.push_str(&LONG_CHUNK.repeat(60 + rng.below(150) as usize)),
        }
    }
}

/// A multi-KB value: `n` repeats of a chunk full of delimiters and non-ASCII.
fn push_long(out: &mut String, n: usize) {
    out.push('"');
    for _ in 0..n {
        escape_into(out, LONG_CHUNK);
    }
    out.push('"');
}

fn hashes(rng: &mut Rng) -> (String, String) {
    let md5 = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    let sha = format!(
        "{:016x}{:016x}{:016x}{:016x}",
        rng.next_u64(),
        rng.next_u64(),
        rng.next_u64(),
        rng.next_u64()
    );
    (md5, sha)
}

pub(crate) fn uuid(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `search_issued` -> `SearchIssued`.
pub(crate) fn pascal_case(name: &str) -> String {
    name.split('_').map(capitalize).collect()
}

/// `"key":"value"` for each value, rendered once so that events only copy them.
fn key_values(key: &str, values: &[impl AsRef<str>]) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            let mut s = String::new();
            kv_str(&mut s, key, v.as_ref());
            s
        })
        .collect()
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::NANOS_PER_SEC;
    use std::collections::HashSet;

    fn generator(seed: u64) -> Generator {
        let tl = Timeline::new(
            seed,
            1_700_000_000 * NANOS_PER_SEC,
            30_000,
            86_400 * NANOS_PER_SEC,
            5.0,
            0,
        );
        Generator::new(seed, tl)
    }

    fn render(g: &Generator, i: u64) -> String {
        let mut s = String::new();
        g.render(i, &mut s);
        s
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (a, b, c) = (generator(9), generator(9), generator(10));
        for i in [0u64, 1, 999, 29_999, 30_000, 123_456] {
            assert_eq!(render(&a, i), render(&b, i));
        }
        let differ = (0..100).filter(|&i| render(&a, i) != render(&c, i)).count();
        assert!(differ > 90);
    }

    #[test]
    fn every_event_is_valid_json_with_the_common_keys() {
        let g = generator(3);
        let mut prev_ts = String::new();
        for i in 0..30_000u64 {
            let text = render(&g, i);
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("event {i} is not json ({e}): {text}"));
            let tag = v["type$"].as_str().unwrap();
            assert!(
                tag.starts_with("audit_log::") && tag.ends_with("/1"),
                "{tag}"
            );
            for k in [
                "actorId",
                "actorName",
                "actorAgent",
                "actorIpAddress",
                "actorType",
                "timestamp",
            ] {
                assert!(v[k].is_string(), "event {i} lacks {k}: {text}");
            }
            assert!(v["success"].is_boolean());
            let ts = v["timestamp"].as_str().unwrap();
            let frac = ts.rsplit('.').next().unwrap();
            assert!([4, 7, 10].contains(&frac.len()), "{ts}");
            let parsed = chrono::DateTime::parse_from_rfc3339(ts).unwrap();
            assert!(parsed.timestamp_nanos_opt().unwrap() == g.timeline.occurred_ns(i));
            if !prev_ts.is_empty() {
                let p = chrono::DateTime::parse_from_rfc3339(&prev_ts).unwrap();
                assert!(parsed >= p, "event {i}: {ts} before {prev_ts}");
            }
            prev_ts = ts.to_string();
        }
    }

    #[test]
    fn every_catalog_type_is_generated_with_details() {
        let g = generator(5);
        let mut seen = HashSet::new();
        let mut with_details = HashSet::new();
        for i in 0..40_000u64 {
            let text = render(&g, i);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let name = c42fwd_catalog::audit_type_name(v["type$"].as_str().unwrap()).to_string();
            if v.as_object().unwrap().len() > 8 {
                with_details.insert(name.clone());
            }
            seen.insert(name);
        }
        for t in AUDIT_EVENT_TYPES {
            assert!(seen.contains(t.name), "{} never generated", t.name);
            assert!(with_details.contains(t.name), "{} has no details", t.name);
        }
    }

    #[test]
    fn type_specific_fields_follow_the_documentation() {
        let g = generator(11);
        let mut found = std::collections::HashMap::new();
        for i in 0..40_000u64 {
            let v: serde_json::Value = serde_json::from_str(&render(&g, i)).unwrap();
            let name = c42fwd_catalog::audit_type_name(v["type$"].as_str().unwrap()).to_string();
            found.entry(name).or_insert(v);
        }
        let ev = |n: &str| &found[n];
        assert!(ev("logged_in")["loginType"].is_string());
        assert!(ev("logged_in")["authenticationMethod"].is_string());
        let req: serde_json::Value =
            serde_json::from_str(ev("search_issued")["requestJson"].as_str().unwrap()).unwrap();
        assert!(req["groups"].is_array());
        assert!(ev("search_issued")["resultCount"].is_u64());
        assert!(ev("user_roles_assigned")["roleNames"].is_array());
        assert!(ev("user_roles_assigned")["userId"].is_string());
        assert!(ev("case_created")["caseNumber"].is_u64());
        assert!(ev("case_created")["caseName"].is_string());
        assert!(ev("alert_rule_created")["ruleId"].is_string());
        assert!(ev("alert_rule_created")["ruleName"].is_string());
        assert!(ev("watchlist_created")["watchlistId"].is_string());
        assert!(ev("domain_added")["value"].is_string());
        assert!(ev("domain_added")["description"].is_string());
        assert!(ev("file_downloaded")["fileSize"].is_u64());
        assert!(ev("file_downloaded")["md5"].is_string());
        let change = &ev("user_external_attributes_changed")["changes"][0];
        assert!(change["field"].is_string() && change["newValue"].is_string());
        assert_eq!(
            ev("user_external_attributes_changed")["actorName"],
            "azure_1234@cloud.code42.com"
        );
        assert!(ev("username_changed").get("username").is_none());
    }

    #[test]
    fn hostile_values_addresses_and_actor_types_all_occur() {
        let g = generator(13);
        let (mut forged, mut long, mut unicode, mut v6, mut list, mut empty) = (0, 0, 0, 0, 0, 0);
        let mut kinds = HashSet::new();
        for i in 0..30_000u64 {
            let text = render(&g, i);
            if text.contains("\\n<13>1 2020-01-01T00:00:00Z evil") {
                forged += 1;
            }
            if text.len() > 2_000 {
                long += 1;
            }
            if text.contains("日本語") || text.contains('🚨') {
                unicode += 1;
            }
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let ip = v["actorIpAddress"].as_str().unwrap();
            if ip.contains(", ") {
                list += 1;
            } else if ip.contains(':') {
                v6 += 1;
            } else if ip.is_empty() {
                empty += 1;
            }
            kinds.insert(v["actorType"].as_str().unwrap().to_string());
        }
        for (what, n) in [
            ("forged", forged),
            ("long", long),
            ("unicode", unicode),
            ("v6", v6),
            ("list", list),
            ("empty", empty),
        ] {
            assert!(n > 5, "{what}: {n}");
        }
        assert_eq!(kinds.len(), 5, "{kinds:?}");
    }

    #[test]
    fn duplicates_are_byte_identical() {
        let g = generator(17);
        let mut dups = 0;
        for i in 1..60_000u64 {
            if g.timeline.is_duplicate(i) {
                assert_eq!(render(&g, i), render(&g, i - 1));
                dups += 1;
            }
        }
        assert!(dups >= 3, "{dups}");
    }

    #[test]
    fn parts_agree_with_the_json() {
        let g = generator(19);
        for i in 0..2_000u64 {
            let v: serde_json::Value = serde_json::from_str(&render(&g, i)).unwrap();
            let p = g.parts(i);
            assert_eq!(v["timestamp"], p.timestamp.as_str());
            assert_eq!(v["actorAgent"], p.agent.as_str());
            assert_eq!(v["actorIpAddress"], p.ip);
            let details: serde_json::Value = serde_json::from_str(&p.details).unwrap();
            for (k, val) in details.as_object().unwrap() {
                assert_eq!(&v[k], val, "event {i} key {k}");
            }
        }
        assert_eq!(pascal_case("search_issued"), "SearchIssued");
    }
}
