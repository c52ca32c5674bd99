//! What emulated alert number `i` says, and how the alert service shows it.
//!
//! Owns the deterministic content of alerts (rule, actor, severities, watchlists, the
//! triage an analyst did before the emulator started, 1-3 observations whose `data` is
//! a JSON document inside a string), alert ids (reversible to the alert number, so a
//! lookup needs no table), the alert rules, and the JSON text of summaries, details,
//! aggregates and rule metadata. Everything is a pure function of `(seed, i)` plus the
//! [`AlertChange`] a client made through add-note / update-state, which the caller
//! passes in.
//!
//! Quirks kept from the real service: timestamps carry 7 fractional digits (.NET
//! ticks); `createdAt` is monotonic in `i` with equal values now and then; untouched
//! alerts have `stateLastModifiedBy` / `stateLastModifiedAt` null; an actor that is a
//! cloud alias has a null `actorId`; file names, paths, rule names and notes are now and
//! then hostile (`|`, `=`, `\`, newlines, quotes, non-ASCII, forged syslog / CEF).
//! It does not decide which alerts a query selects (`alert_query`) nor speak HTTP.

use super::events::{uuid, FIRST, HOSTILE, LAST};
use super::json::{self, key, kv_bool, kv_str, kv_u64, push_str};
use super::timeline::{hash3, Rng, Timeline, NANOS_PER_SEC};

const SALT_ALERT: u64 = 201;
const SALT_ALERT_ID: u64 = 202;
const SALT_FEISTEL: u64 = 203;
const SALT_RULES: u64 = 204;
const SALT_OBSERVATIONS: u64 = 205;

/// The alert service's timestamps have 100 ns resolution (7 fractional digits).
pub(crate) const TICK_NS: i64 = 100;

/// `ns` truncated to a whole tick.
pub(crate) fn to_tick(ns: i64) -> i64 {
    ns.div_euclid(TICK_NS).saturating_mul(TICK_NS)
}

/// The smallest tick-aligned instant `>= ns`.
pub(crate) fn ceil_tick(ns: i64) -> i64 {
    if ns > i64::MAX - TICK_NS {
        return i64::MAX;
    }
    let t = to_tick(ns);
    if t == ns {
        t
    } else {
        t + TICK_NS
    }
}

/// Appends a quoted alert-service timestamp.
fn push_ticks(out: &mut String, ns: i64) {
    out.push('"');
    json::push_timestamp_digits(out, ns, 7);
    out.push('"');
}

fn kv_ticks(out: &mut String, k: &str, ns: i64) {
    key(out, k);
    push_ticks(out, ns);
}

fn kv_opt_str(out: &mut String, k: &str, v: Option<&str>) {
    key(out, k);
    match v {
        Some(v) => push_str(out, v),
        None => out.push_str("null"),
    }
}

/// The rule types (and so alert types) of the OpenAPI `RuleType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AlertType {
    EndpointExfiltration,
    CloudSharePermissions,
    FileTypeMismatch,
    FileNameMatch,
    Composite,
}

impl AlertType {
    pub(crate) const NAMES: &'static [&'static str] = &[
        "FED_ENDPOINT_EXFILTRATION",
        "FED_CLOUD_SHARE_PERMISSIONS",
        "FED_FILE_TYPE_MISMATCH",
        "FED_FILE_NAME_MATCH",
        "FED_COMPOSITE",
    ];

    pub(crate) fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The observation `type` this rule type records.
    fn observation_type(self) -> &'static str {
        match self {
            AlertType::EndpointExfiltration | AlertType::Composite => "FedEndpointExfiltration",
            AlertType::CloudSharePermissions => "FedCloudSharePermissions",
            AlertType::FileTypeMismatch => "FedFileTypeMismatch",
            AlertType::FileNameMatch => "FedFileNameMatch",
        }
    }
}

/// Every state the OpenAPI `AlertState` names; generated alerts use the first four.
pub(crate) const ALERT_STATES: &[&str] = &[
    "OPEN",
    "RESOLVED",
    "IN_PROGRESS",
    "PENDING",
    "RESOLVED_TP",
    "RESOLVED_FP",
];
pub(crate) const SEVERITIES: &[&str] = &["HIGH", "MEDIUM", "LOW"];
pub(crate) const RISK_SEVERITIES: &[&str] = &[
    "UNKNOWN",
    "NO_RISK_INDICATED",
    "LOW",
    "MODERATE",
    "HIGH",
    "CRITICAL",
];

/// The canonical spelling of a state value (`open`, `Dismissed` -> `RESOLVED`, ...).
/// The console and Code42's article (`docs/api.md`) call a resolved alert "Dismissed".
pub(crate) fn canonical_state(s: &str) -> Option<&'static str> {
    let up = s.trim().to_ascii_uppercase().replace([' ', '-'], "_");
    if up == "DISMISSED" {
        return Some("RESOLVED");
    }
    ALERT_STATES.iter().copied().find(|st| *st == up)
}

/// One alert rule of the tenant (`RULE_METADATA`).
#[derive(Debug)]
pub(crate) struct Rule {
    /// The rule metadata id (`id` of `RULE_METADATA`).
    pub(crate) id: String,
    /// The id alerts carry as `ruleId` (`docs/api.md`: the rule's `observerRuleId`).
    pub(crate) observer_rule_id: String,
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) kind: AlertType,
    pub(crate) severity: &'static str,
    pub(crate) rule_source: &'static str,
    pub(crate) is_system: bool,
    pub(crate) is_enabled: bool,
    pub(crate) created_by: &'static str,
    pub(crate) created_ns: i64,
    pub(crate) modified_by: &'static str,
    pub(crate) modified_ns: i64,
}

/// (name, description, type, severity, source, system, enabled). Admin-written names
/// and descriptions are user-controlled text, so some are hostile.
type RuleSpec = (
    &'static str,
    &'static str,
    AlertType,
    &'static str,
    &'static str,
    bool,
    bool,
);

const RULES: &[RuleSpec] = &[
    (
        "Departing employee endpoint exfiltration system rule",
        "System rule for departing employee endpoint exfiltration.",
        AlertType::EndpointExfiltration,
        "HIGH",
        "Departing Employee",
        true,
        true,
    ),
    (
        "Removable media exfiltration",
        "Alert me on all removable media exfiltration.",
        AlertType::EndpointExfiltration,
        "MEDIUM",
        "Alerting",
        false,
        true,
    ),
    (
        "Zip files to personal cloud | webmail",
        "Archives synced to personal cloud; threshold=10 files, path C:\\Users\\*",
        AlertType::EndpointExfiltration,
        "LOW",
        "Alerting",
        false,
        true,
    ),
    (
        "Public link shares",
        "Files shared publicly from corporate Google Drive.",
        AlertType::CloudSharePermissions,
        "HIGH",
        "Alerting",
        false,
        true,
    ),
    (
        "Departing employee cloud share",
        "System rule for departing employee cloud sharing.",
        AlertType::CloudSharePermissions,
        "HIGH",
        "Departing Employee",
        true,
        true,
    ),
    (
        "Suspicious file mismatch",
        "Extension does not match the file's content.\nReview with the owner.",
        AlertType::FileTypeMismatch,
        "LOW",
        "Alerting",
        false,
        true,
    ),
    (
        "Legacy mismatch rule (disabled)",
        "Kept for history.",
        AlertType::FileTypeMismatch,
        "MEDIUM",
        "Alerting",
        false,
        false,
    ),
    (
        "Secrets by file name (*.key, id_rsa)",
        "File names that look like keys or credentials.",
        AlertType::FileNameMatch,
        "HIGH",
        "Alerting",
        false,
        true,
    ),
    (
        "Règle «confidentiel» 機密",
        "Fichiers nommés «confidentiel» ou 機密 — équipe sécurité",
        AlertType::FileNameMatch,
        "MEDIUM",
        "Alerting",
        false,
        true,
    ),
    (
        "High risk employee composite",
        "Exfiltration and sharing by high risk employees.",
        AlertType::Composite,
        "HIGH",
        "High Risk Employee",
        true,
        true,
    ),
    (
        "Composite: USB + cloud",
        "CEF:0|Evil|Inject|1|100|x|10|src=10.0.0.1",
        AlertType::Composite,
        "MEDIUM",
        "Alerting",
        false,
        true,
    ),
];

/// A user an alert is about; a cloud alias has no authority id.
#[derive(Debug)]
pub(crate) struct AlertActor {
    pub(crate) name: String,
    pub(crate) id: Option<String>,
}

const ANALYSTS: &[&str] = &[
    "soc.analyst@example.com",
    "ana.lyst@example.com",
    "zoë.admin@example.com",
    "key-6f1c2b9e-soar-playbook",
];

/// (id suffix, name, type): watchlists an actor can be on.
const WATCHLISTS: &[(&str, &str)] = &[
    ("Departing employees", "DEPARTING_EMPLOYEE"),
    ("High impact employees", "HIGH_IMPACT_EMPLOYEE"),
    ("Flight risk", "FLIGHT_RISK"),
    ("New hires", "NEW_EMPLOYEE"),
    ("Contractors", "CONTRACT_EMPLOYEE"),
    ("Engineering | R&D = core", "DEPARTMENT"),
    ("Cloud admins", "ELEVATED_ACCESS_PRIVILEGES"),
    ("Performance concerns", "PERFORMANCE_CONCERNS"),
];

const NOTES: &[&str] = &[
    "Reviewed with manager; benign.",
    "Escalated to legal.",
    "User confirmed the upload was a backup.",
    "Follow up after HR interview.",
];

/// A note on an alert (the SDK's `Note`: id, lastModifiedAt, lastModifiedBy, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    pub(crate) id: String,
    pub(crate) message: String,
    pub(crate) by: String,
    pub(crate) at_ns: i64,
}

/// What clients changed on one alert. Only changed alerts have one, so a large backlog
/// costs no memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AlertChange {
    /// (state, by, at).
    pub(crate) state: Option<(&'static str, String, i64)>,
    pub(crate) note: Option<Note>,
    /// Changes so far, to give each new note its own id.
    pub(crate) revisions: u64,
}

/// One alert, with any client change applied.
#[derive(Debug)]
pub(crate) struct Alert<'g> {
    pub(crate) index: u64,
    pub(crate) id: String,
    pub(crate) rule: &'g Rule,
    pub(crate) actor: &'g AlertActor,
    pub(crate) risk_severity: &'static str,
    /// (index into `WATCHLISTS`, isSignificant).
    pub(crate) watchlists: Vec<(usize, bool)>,
    /// Tick-aligned.
    pub(crate) created_ns: i64,
    pub(crate) state: &'static str,
    pub(crate) state_by: Option<String>,
    pub(crate) state_at: Option<i64>,
    pub(crate) note: Option<Note>,
}

impl Alert<'_> {
    /// The name of watchlist `w` of this alert.
    pub(crate) fn watchlist_name(&self, w: usize) -> &'static str {
        WATCHLISTS[self.watchlists[w].0].0
    }

    /// The latest change of any kind: creation, state or note.
    pub(crate) fn last_modified(&self) -> (i64, Option<&str>) {
        let mut at = (self.created_ns, None);
        if let (Some(t), Some(by)) = (self.state_at, self.state_by.as_deref()) {
            if t >= at.0 {
                at = (t, Some(by));
            }
        }
        if let Some(n) = &self.note {
            if n.at_ns >= at.0 {
                at = (n.at_ns, Some(n.by.as_str()));
            }
        }
        at
    }
}

/// One file an observation lists.
#[derive(Debug, Clone)]
struct ObservedFile {
    event_id: String,
    path: String,
    name: String,
    category: &'static str,
    size: u64,
    /// (by bytes, by extension) for file type mismatches.
    mime: Option<(&'static str, &'static str)>,
    owner: Option<String>,
}

/// One observation, before rendering (kept as data so the aggregate can merge them).
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    id: String,
    /// The `id` inside `data` (`docs/api.md`: not the observation's id).
    data_id: String,
    kind: AlertType,
    observed_ns: i64,
    last_ns: i64,
    sources: Vec<&'static str>,
    exposure: Vec<&'static str>,
    files: Vec<ObservedFile>,
    sync_to: Vec<&'static str>,
    ips: Vec<String>,
    remote: bool,
    outside_emails: Vec<String>,
    patterns: Vec<&'static str>,
    removable: Option<(&'static str, &'static str)>,
}

/// (name, category): what users name their files, hostile ones included.
const FILES: &[(&str, &str)] = &[
    ("roadmap-2025.pptx", "Presentation"),
    ("customer_list.csv", "Spreadsheet"),
    ("source.zip", "Archive"),
    ("payroll Q3.xlsx", "Spreadsheet"),
    ("設計書.pdf", "Pdf"),
    ("résumé.docx", "Document"),
    ("main.rs", "SourceCode"),
    ("1586353274_family_photo.png", "Image"),
    ("id_rsa", "Other"),
];
const HOSTILE_FILES: &[(&str, &str)] = &[
    ("report|Q3=final\\v2.xlsx", "Spreadsheet"),
    ("two\nlines.txt", "Document"),
    ("quote\"d name.docx", "Document"),
    ("tab\tsep=1.csv", "Spreadsheet"),
    ("CEF:0|evil|x=1.txt", "Document"),
    (
        "\n<13>1 2020-01-01T00:00:00Z evil - - - forged.log",
        "Other",
    ),
    ("Ünïcødé 🚀 日本.pdf", "Pdf"),
    ("back\\slash\\name.key", "Other"),
    ("cr\rname.zip", "Archive"),
];
const SYNC_SERVICES: &[&str] = &[
    "Dropbox",
    "Box",
    "GoogleBackupAndSync",
    "OneDrive",
    "iCloud",
];
const CLOUD_SOURCES: &[&str] = &["GoogleDrive", "OneDrive", "Box"];
const NAME_PATTERNS: &[&str] = &["*.key", "id_rsa*", "*confidential*", "*機密*", "*|*=*"];
const MIMES: &[(&str, &str)] = &[
    ("application/zip", "image/jpeg"),
    ("application/x-msdownload", "text/plain"),
    ("application/pdf", "image/png"),
];
const OUTSIDE_DOMAINS: &[&str] = &["gmail.com", "yahoo.co.jp", "partner.example.net"];
const USB: &[(&str, &str)] = &[
    ("SanDisk", "Cruzer Blade"),
    ("Kingston", "DataTraveler 3.0"),
    ("Generic", "USB|DRIVE=1 \\ «clé»"),
];

/// The alert generator. Holds only the rules and small pools.
pub(crate) struct AlertGenerator {
    pub(crate) timeline: Timeline,
    seed: u64,
    tenant: String,
    rules: Vec<Rule>,
    actors: Vec<AlertActor>,
    /// Watchlist ids, parallel to `WATCHLISTS`.
    watchlist_ids: Vec<String>,
}

impl AlertGenerator {
    pub(crate) fn new(seed: u64, timeline: Timeline, tenant: String) -> Self {
        let mut pool = Rng::new(hash3(seed, SALT_RULES, 0));
        let start = timeline.start_ns();
        let day = 86_400 * NANOS_PER_SEC;
        let rules = RULES
            .iter()
            .map(
                |&(name, description, kind, severity, rule_source, is_system, is_enabled)| {
                    let created_ns = to_tick(start - (200 + pool.below(200) as i64) * day);
                    let modified_ns = to_tick(created_ns + pool.below(100) as i64 * day);
                    let by = if is_system {
                        "Code42"
                    } else {
                        *pool.pick(&ANALYSTS[..3])
                    };
                    Rule {
                        id: uuid(&mut pool),
                        observer_rule_id: uuid(&mut pool),
                        name,
                        description,
                        kind,
                        severity,
                        rule_source,
                        is_system,
                        is_enabled,
                        created_by: by,
                        created_ns,
                        modified_by: by,
                        modified_ns,
                    }
                },
            )
            .collect();
        let mut actors: Vec<AlertActor> = (0..32)
            .map(|n| {
                let first = FIRST[n % FIRST.len()];
                let last = LAST[(n / FIRST.len() + n) % LAST.len()];
                AlertActor {
                    name: format!("{first}.{last}@example.com"),
                    id: Some(
                        (900_000_000_000_000_000 + pool.below(99_999_999_999_999_999)).to_string(),
                    ),
                }
            })
            .collect();
        // Cloud aliases no authority user maps to.
        for alias in [
            "b.morales.personal@gmail.com",
            "Sean Cassidy",
            "ｆｕｌｌ｜ｗｉｄｔｈ@example.com",
        ] {
            actors.push(AlertActor {
                name: alias.into(),
                id: None,
            });
        }
        let watchlist_ids = WATCHLISTS.iter().map(|_| uuid(&mut pool)).collect();
        AlertGenerator {
            timeline,
            seed,
            tenant,
            rules,
            actors,
            watchlist_ids,
        }
    }

    pub(crate) fn tenant(&self) -> &str {
        &self.tenant
    }

    pub(crate) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// One past the last alert number that exists (a bound for an endless live stream).
    pub(crate) fn end(&self) -> u64 {
        self.timeline.end()
    }

    /// The rendered (tick-aligned) creation time of alert `i`.
    pub(crate) fn created_ns(&self, i: u64) -> i64 {
        to_tick(self.timeline.occurred_ns(i))
    }

    /// The first alert whose rendered `createdAt` is `>= t`.
    pub(crate) fn first_created_at_or_after(&self, t: i64) -> u64 {
        self.timeline.first_at_or_after(ceil_tick(t))
    }

    /// A 4-round Feistel permutation of the alert number, so ids look random yet
    /// decode to the number without a table.
    fn permute(&self, x: u64, inverse: bool) -> u64 {
        let round = |k: u64, half: u32| -> u32 {
            hash3(self.seed, SALT_FEISTEL, (k << 32) | u64::from(half)) as u32
        };
        let (mut l, mut r) = ((x >> 32) as u32, x as u32);
        if inverse {
            for k in (0..4).rev() {
                (l, r) = (r ^ round(k, l), l);
            }
        } else {
            for k in 0..4 {
                (l, r) = (r, l ^ round(k, r));
            }
        }
        (u64::from(l) << 32) | u64::from(r)
    }

    /// The id of alert `i`: UUID-shaped, 64 bits of permuted number and 64 check bits.
    pub(crate) fn id_of(&self, i: u64) -> String {
        let a = self.permute(i, false);
        let b = hash3(self.seed, SALT_ALERT_ID, i);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// The alert number an id names, if it is one of ours (any case, dashes optional).
    pub(crate) fn index_of(&self, id: &str) -> Option<u64> {
        let hex: String = id.trim().chars().filter(|&c| c != '-').collect();
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let a = u64::from_str_radix(&hex[..16], 16).ok()?;
        let b = u64::from_str_radix(&hex[16..], 16).ok()?;
        let i = self.permute(a, true);
        (i < self.end() && hash3(self.seed, SALT_ALERT_ID, i) == b).then_some(i)
    }

    /// Alert `i` as generated, with `change` applied.
    pub(crate) fn alert(&self, i: u64, change: Option<&AlertChange>) -> Alert<'_> {
        let mut rng = Rng::new(hash3(self.seed, SALT_ALERT, i));
        let rule = &self.rules[rng.below(self.rules.len() as u64) as usize];
        let actor = &self.actors[rng.below(self.actors.len() as u64) as usize];
        let risk_severity = match rng.below(100) {
            0..=9 => "CRITICAL",
            10..=34 => "HIGH",
            35..=64 => "MODERATE",
            65..=89 => "LOW",
            _ => "NO_RISK_INDICATED",
        };
        let mut watchlists: Vec<(usize, bool)> = Vec::new();
        for _ in 0..rng.below(3) {
            let w = rng.below(WATCHLISTS.len() as u64) as usize;
            if watchlists.iter().all(|(x, _)| *x != w) {
                watchlists.push((w, rng.chance(60)));
            }
        }
        let created_ns = self.created_ns(i);
        let mut alert = Alert {
            index: i,
            id: self.id_of(i),
            rule,
            actor,
            risk_severity,
            watchlists,
            created_ns,
            state: "OPEN",
            state_by: None,
            state_at: None,
            note: None,
        };
        // Triage done before the emulator started: only backlog alerts, and only when
        // the analyst's action lies before the start, so nothing is dated in the future.
        let start = self.timeline.start_ns();
        let visible_at = self
            .timeline
            .occurred_ns(i)
            .saturating_add(self.timeline.delay_ns(i));
        let triage_at =
            to_tick(visible_at + rng.below(6 * 3_600 * 1_000_000) as i64 * 1_000).max(created_ns);
        if rng.chance(40) && triage_at < start {
            let analyst = *rng.pick(ANALYSTS);
            alert.state = match rng.below(10) {
                0..=4 => "RESOLVED",
                5..=7 => "IN_PROGRESS",
                _ => "PENDING",
            };
            alert.state_by = Some(analyst.to_string());
            alert.state_at = Some(triage_at);
            if rng.chance(50) {
                let message = if rng.chance(80) {
                    rng.pick_str(NOTES)
                } else {
                    rng.pick_str(HOSTILE)
                };
                alert.note = Some(Note {
                    id: self.note_id(i, 0),
                    message: message.to_string(),
                    by: analyst.to_string(),
                    at_ns: triage_at,
                });
            }
        }
        if let Some(c) = change {
            if let Some((state, by, at)) = &c.state {
                alert.state = state;
                alert.state_by = Some(by.clone());
                alert.state_at = Some(*at);
            }
            if let Some(n) = &c.note {
                alert.note = Some(n.clone());
            }
        }
        alert
    }

    /// The id of revision `rev` of alert `i`'s note.
    pub(crate) fn note_id(&self, i: u64, rev: u64) -> String {
        format!("{:016x}", hash3(self.seed ^ rev, SALT_ALERT_ID + 1, i))
    }

    /// The observations of an alert, oldest first; all before its creation.
    pub(crate) fn observations(&self, a: &Alert) -> Vec<Observation> {
        let mut rng = Rng::new(hash3(self.seed, SALT_OBSERVATIONS, a.index));
        let n = 1 + rng.below(3) as usize;
        // Microsecond offsets, so derived times do not share the alert's sub-second digits.
        let micros = |rng: &mut Rng, max_s: u64| rng.below(max_s * 1_000_000) as i64 * 1_000;
        let mut end = a.created_ns - 30 * NANOS_PER_SEC - micros(&mut rng, 270);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let last_ns = to_tick(end);
            let observed_ns = to_tick(last_ns - micros(&mut rng, 600));
            end = observed_ns - 60 * NANOS_PER_SEC - micros(&mut rng, 1_800);
            let kind = match a.rule.kind {
                AlertType::Composite => *rng.pick(&[
                    AlertType::EndpointExfiltration,
                    AlertType::CloudSharePermissions,
                    AlertType::FileTypeMismatch,
                    AlertType::FileNameMatch,
                ]),
                k => k,
            };
            out.push(self.observation(&mut rng, a, kind, observed_ns, last_ns));
        }
        out.reverse();
        out
    }

    fn observation(
        &self,
        rng: &mut Rng,
        a: &Alert,
        kind: AlertType,
        observed_ns: i64,
        last_ns: i64,
    ) -> Observation {
        let user = a
            .actor
            .name
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        let nfiles = 1 + rng.below(5) as usize;
        let files = (0..nfiles)
            .map(|_| {
                let (name, category) = if rng.chance(25) {
                    *rng.pick(HOSTILE_FILES)
                } else {
                    *rng.pick(FILES)
                };
                let path = match kind {
                    AlertType::CloudSharePermissions => String::new(),
                    _ => match rng.below(4) {
                        0 => format!("C:/Users/{user}/Downloads/"),
                        1 => format!("C:\\Users\\{user}\\Desktop\\"),
                        2 => format!("/Users/{user}/Dropbox/"),
                        _ => format!("/home/{user}/src/|pipe=dir/"),
                    },
                };
                ObservedFile {
                    event_id: format!(
                        "0_{}_{}_{}_{}",
                        uuid(rng),
                        900_000_000_000_000_000 + rng.below(99_999_999_999_999_999),
                        900_000_000_000_000_000 + rng.below(99_999_999_999_999_999),
                        rng.below(10)
                    ),
                    path,
                    name: name.to_string(),
                    category,
                    size: 1_024 + rng.below(200_000_000),
                    mime: (kind == AlertType::FileTypeMismatch).then(|| *rng.pick(MIMES)),
                    owner: (kind == AlertType::CloudSharePermissions).then(|| a.actor.name.clone()),
                }
            })
            .collect();
        let mut o = Observation {
            id: uuid(rng),
            data_id: uuid(rng),
            kind,
            observed_ns,
            last_ns,
            sources: vec!["Endpoint"],
            exposure: Vec::new(),
            files,
            sync_to: Vec::new(),
            ips: Vec::new(),
            remote: rng.chance(30),
            outside_emails: Vec::new(),
            patterns: Vec::new(),
            removable: None,
        };
        match kind {
            AlertType::EndpointExfiltration | AlertType::Composite => {
                let options = [
                    "RemovableMedia",
                    "ApplicationRead",
                    "CloudStorage",
                    "IsPublic",
                ];
                o.exposure.push(*rng.pick(&options));
                if rng.chance(40) {
                    let extra = *rng.pick(&options);
                    if !o.exposure.contains(&extra) {
                        o.exposure.push(extra);
                    }
                }
                if o.exposure.contains(&"CloudStorage") {
                    o.sync_to.push(*rng.pick(SYNC_SERVICES));
                }
                if o.exposure.contains(&"RemovableMedia") {
                    o.removable = Some(*rng.pick(USB));
                }
                o.ips.push(format!("192.0.2.{}", 1 + rng.below(254)));
                if rng.chance(20) {
                    o.ips.push(format!("2001:db8::{:x}", rng.below(0xffff)));
                }
            }
            AlertType::CloudSharePermissions => {
                o.sources = vec![*rng.pick(CLOUD_SOURCES)];
                o.exposure.push(*rng.pick(&[
                    "PublicLinkShare",
                    "PublicSearchableShare",
                    "SharedOutsideTrustedDomain",
                ]));
                for _ in 0..rng.below(3) {
                    let domain = rng.pick_str(OUTSIDE_DOMAINS);
                    o.outside_emails.push(format!(
                        "{}.{}@{domain}",
                        rng.pick_str(FIRST),
                        rng.pick_str(LAST)
                    ));
                }
            }
            AlertType::FileTypeMismatch => {
                o.exposure.push("ApplicationRead");
                o.ips.push(format!(
                    "10.{}.{}.{}",
                    rng.below(256),
                    rng.below(256),
                    1 + rng.below(254)
                ));
            }
            AlertType::FileNameMatch => {
                o.exposure
                    .push(*rng.pick(&["ApplicationRead", "RemovableMedia"]));
                o.patterns.push(rng.pick_str(NAME_PATTERNS));
                if rng.chance(50) {
                    let p = rng.pick_str(NAME_PATTERNS);
                    if !o.patterns.contains(&p) {
                        o.patterns.push(p);
                    }
                }
            }
        }
        o
    }

    fn push_summary_fields(&self, a: &Alert, out: &mut String) {
        kv_str(out, "tenantId", &self.tenant);
        kv_str(out, "type", a.rule.kind.as_str());
        kv_str(out, "name", a.rule.name);
        kv_str(out, "description", a.rule.description);
        kv_str(out, "actor", &a.actor.name);
        kv_opt_str(out, "actorId", a.actor.id.as_deref());
        kv_str(out, "target", "N/A");
        kv_str(out, "severity", a.rule.severity);
        kv_str(out, "riskSeverity", a.risk_severity);
        kv_str(out, "ruleId", &a.rule.observer_rule_id);
        kv_str(out, "ruleSource", a.rule.rule_source);
        key(out, "watchlists");
        out.push('[');
        for (n, &(w, significant)) in a.watchlists.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str("{\"type$\":\"WATCHLIST\"");
            kv_str(out, "id", &self.watchlist_ids[w]);
            kv_str(out, "name", WATCHLISTS[w].0);
            kv_str(out, "type", WATCHLISTS[w].1);
            kv_bool(out, "isSignificant", significant);
            out.push('}');
        }
        out.push(']');
        kv_str(out, "id", &a.id);
        kv_ticks(out, "createdAt", a.created_ns);
        kv_str(out, "state", a.state);
        kv_opt_str(out, "stateLastModifiedBy", a.state_by.as_deref());
        key(out, "stateLastModifiedAt");
        match a.state_at {
            Some(t) => push_ticks(out, t),
            None => out.push_str("null"),
        }
    }

    /// `{"type$":"ALERT_SUMMARY",...}` as query-alerts lists it.
    pub(crate) fn render_summary(&self, a: &Alert, out: &mut String) {
        out.push_str("{\"type$\":\"ALERT_SUMMARY\"");
        self.push_summary_fields(a, out);
        out.push('}');
    }

    /// `{"type$":"ALERT_DETAILS",...,"observations":[...],"note":...}` as query-details
    /// returns it.
    pub(crate) fn render_details(&self, a: &Alert, out: &mut String) {
        out.push_str("{\"type$\":\"ALERT_DETAILS\"");
        self.push_summary_fields(a, out);
        key(out, "observations");
        out.push('[');
        for (n, o) in self.observations(a).iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str("{\"type$\":\"OBSERVATION\"");
            kv_str(out, "id", &o.id);
            kv_ticks(out, "observedAt", o.observed_ns);
            kv_ticks(out, "lastObservedAt", o.last_ns);
            kv_str(out, "type", o.kind.observation_type());
            let mut data = String::new();
            render_data(o, false, &mut data);
            kv_str(out, "data", &data);
            out.push('}');
        }
        out.push(']');
        key(out, "note");
        match &a.note {
            Some(n) => {
                out.push_str("{\"type$\":\"NOTE\"");
                kv_str(out, "id", &n.id);
                kv_ticks(out, "lastModifiedAt", n.at_ns);
                kv_str(out, "lastModifiedBy", &n.by);
                kv_str(out, "message", &n.message);
                out.push('}');
            }
            None => out.push_str("null"),
        }
        out.push('}');
    }

    /// query-details-aggregate: the alert with all its activity in one observation.
    pub(crate) fn render_aggregate(&self, a: &Alert, out: &mut String) {
        out.push_str("{\"type$\":\"ALERT_DETAILS_AGGREGATE\"");
        self.push_summary_fields(a, out);
        let obs = self.observations(a);
        let merged = merge(&obs);
        key(out, "observation");
        out.push_str("{\"type$\":\"OBSERVATION_AGGREGATE\"");
        kv_ticks(out, "observedAt", merged.observed_ns);
        kv_str(out, "type", merged.kind.observation_type());
        let mut data = String::new();
        render_data(&merged, true, &mut data);
        kv_str(out, "data", &data);
        out.push_str("}}");
    }

    /// `{"type$":"RULE_METADATA",...}` (the shape and key order of Code42's example,
    /// `docs/api.md`).
    pub(crate) fn render_rule(&self, r: &Rule, out: &mut String) {
        out.push_str("{\"type$\":\"RULE_METADATA\"");
        kv_str(out, "modifiedBy", r.modified_by);
        kv_ticks(out, "modifiedAt", r.modified_ns);
        kv_str(out, "name", r.name);
        kv_str(out, "description", r.description);
        kv_str(out, "severity", r.severity);
        kv_bool(out, "isSystem", r.is_system);
        kv_bool(out, "isEnabled", r.is_enabled);
        kv_str(out, "ruleSource", r.rule_source);
        kv_str(out, "tenantId", &self.tenant);
        kv_str(out, "observerRuleId", &r.observer_rule_id);
        kv_str(out, "type", r.kind.as_str());
        kv_str(out, "id", &r.id);
        kv_str(out, "createdBy", r.created_by);
        kv_ticks(out, "createdAt", r.created_ns);
        out.push('}');
    }

    /// The observations' data strings concatenated (what the `Observations` term
    /// searches).
    pub(crate) fn observation_text(&self, a: &Alert) -> String {
        let mut s = String::new();
        for o in self.observations(a) {
            render_data(&o, false, &mut s);
            s.push('\n');
        }
        s
    }
}

/// All observations of an alert rolled into one: the first one's type, the union of
/// sources, exposures and destinations, the sum of files.
fn merge(obs: &[Observation]) -> Observation {
    let mut m = obs[0].clone();
    for o in &obs[1..] {
        m.observed_ns = m.observed_ns.min(o.observed_ns);
        m.last_ns = m.last_ns.max(o.last_ns);
        for (dst, src) in [
            (&mut m.sources, &o.sources),
            (&mut m.exposure, &o.exposure),
            (&mut m.sync_to, &o.sync_to),
            (&mut m.patterns, &o.patterns),
        ] {
            for v in src {
                if !dst.contains(v) {
                    dst.push(v);
                }
            }
        }
        for ip in &o.ips {
            if !m.ips.contains(ip) {
                m.ips.push(ip.clone());
            }
        }
        m.outside_emails.extend(o.outside_emails.iter().cloned());
        m.files.extend(o.files.iter().cloned());
        m.remote |= o.remote;
        m.removable = m.removable.or(o.removable);
    }
    m
}

/// The observation's `data` document (before it is put in a string).
fn render_data(o: &Observation, aggregate: bool, out: &mut String) {
    let kind_tag = match o.kind {
        AlertType::CloudSharePermissions => "OBSERVED_CLOUD_SHARE_ACTIVITY",
        _ => "OBSERVED_ENDPOINT_ACTIVITY",
    };
    out.push_str("{\"type$\":");
    push_str(out, kind_tag);
    kv_str(out, "id", &o.data_id);
    json::kv_str_array(out, "sources", o.sources.iter().copied());
    json::kv_str_array(out, "exposureTypes", o.exposure.iter().copied());
    kv_ticks(out, "firstActivityAt", o.observed_ns);
    kv_ticks(out, "lastActivityAt", o.last_ns);
    kv_u64(out, "fileCount", o.files.len() as u64);
    let total: u64 = o.files.iter().map(|f| f.size).sum();
    kv_u64(out, "totalFileSize", total);
    key(out, "fileCategories");
    out.push('[');
    let mut categories: Vec<&'static str> = Vec::new();
    for f in &o.files {
        if !categories.contains(&f.category) {
            categories.push(f.category);
        }
    }
    for (n, c) in categories.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let (count, size) = o
            .files
            .iter()
            .filter(|f| f.category == *c)
            .fold((0u64, 0u64), |(k, s), f| (k + 1, s + f.size));
        out.push_str("{\"type$\":\"OBSERVED_FILE_CATEGORY\"");
        kv_str(out, "category", c);
        kv_u64(out, "fileCount", count);
        kv_u64(out, "totalFileSize", size);
        kv_bool(
            out,
            "isSignificant",
            matches!(*c, "SourceCode" | "Archive" | "Spreadsheet"),
        );
        out.push('}');
    }
    out.push(']');
    key(out, "files");
    out.push('[');
    for (n, f) in o.files.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str("{\"type$\":\"OBSERVED_FILE\"");
        kv_str(out, "eventId", &f.event_id);
        if !f.path.is_empty() {
            kv_str(out, "path", &f.path);
        }
        kv_str(out, "name", &f.name);
        kv_str(out, "category", f.category);
        kv_u64(out, "size", f.size);
        if let Some((by_bytes, by_ext)) = f.mime {
            kv_str(out, "mimeTypeByBytes", by_bytes);
            kv_str(out, "mimeTypeByExtension", by_ext);
        }
        if let Some(owner) = &f.owner {
            kv_str(out, "fileOwner", owner);
        }
        out.push('}');
    }
    out.push(']');
    match o.kind {
        AlertType::CloudSharePermissions => {
            json::kv_str_array(
                out,
                "outsideTrustedDomainsEmails",
                o.outside_emails.iter().map(String::as_str),
            );
            kv_u64(
                out,
                "outsideTrustedDomainsEmailsCount",
                o.outside_emails.len() as u64,
            );
            let mut domains: Vec<&str> = Vec::new();
            for e in &o.outside_emails {
                let d = e.rsplit('@').next().unwrap_or_default();
                if !domains.contains(&d) {
                    domains.push(d);
                }
            }
            kv_u64(
                out,
                "outsideTrustedDomainsTotalDomainCount",
                domains.len() as u64,
            );
            kv_bool(out, "outsideTrustedDomainsTotalDomainCountTruncated", false);
        }
        _ => {
            if !o.sync_to.is_empty() {
                json::kv_str_array(out, "syncToServices", o.sync_to.iter().copied());
            }
            if let Some((vendor, media)) = o.removable {
                json::kv_str_array(out, "removableMediaVendors", [vendor]);
                json::kv_str_array(out, "removableMediaMediaNames", [media]);
            }
            if !o.patterns.is_empty() {
                json::kv_str_array(out, "fileNamePatterns", o.patterns.iter().copied());
            }
            json::kv_str_array(out, "sendingIpAddresses", o.ips.iter().map(String::as_str));
        }
    }
    if aggregate {
        kv_bool(out, "isRemoteActivity", o.remote);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000 * NANOS_PER_SEC;

    fn generator(seed: u64) -> AlertGenerator {
        let tl = Timeline::new(
            seed ^ 0xa1e7,
            T0,
            3_000,
            30 * 86_400 * NANOS_PER_SEC,
            0.0,
            120 * NANOS_PER_SEC,
        );
        AlertGenerator::new(seed, tl, "tenant-1".into())
    }

    fn details(g: &AlertGenerator, i: u64) -> serde_json::Value {
        let mut s = String::new();
        g.render_details(&g.alert(i, None), &mut s);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("alert {i}: {e}: {s}"))
    }

    #[test]
    fn ids_round_trip_and_strangers_are_refused() {
        let g = generator(3);
        let mut seen = std::collections::HashSet::new();
        for i in (0..3_000).step_by(7) {
            let id = g.id_of(i);
            assert_eq!(id.len(), 36);
            assert_eq!(g.index_of(&id), Some(i));
            assert_eq!(g.index_of(&id.to_uppercase()), Some(i));
            assert!(seen.insert(id));
        }
        let mut forged = g.id_of(5);
        forged.replace_range(35.., if forged.ends_with('0') { "1" } else { "0" });
        assert_eq!(g.index_of(&forged), None);
        assert_eq!(g.index_of("not-an-id"), None);
        assert_eq!(generator(4).index_of(&g.id_of(5)), None);
    }

    #[test]
    fn every_alert_parses_and_follows_the_shapes() {
        let g = generator(5);
        let mut types = std::collections::HashSet::new();
        let mut states = std::collections::HashSet::new();
        let mut risks = std::collections::HashSet::new();
        let (mut notes, mut null_actor_ids, mut hostile) = (0, 0, 0);
        let mut prev = i64::MIN;
        for i in 0..3_000 {
            let v = details(&g, i);
            assert_eq!(v["type$"], "ALERT_DETAILS");
            assert_eq!(v["tenantId"], "tenant-1");
            types.insert(v["type"].as_str().unwrap().to_string());
            states.insert(v["state"].as_str().unwrap().to_string());
            risks.insert(v["riskSeverity"].as_str().unwrap().to_string());
            assert!(SEVERITIES.contains(&v["severity"].as_str().unwrap()));
            let created = v["createdAt"].as_str().unwrap();
            assert_eq!(
                created.len(),
                "2020-04-08T13:50:25.3644410Z".len(),
                "{created}"
            );
            let t = chrono::DateTime::parse_from_rfc3339(created)
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
            assert!(t >= prev, "createdAt is monotonic");
            prev = t;
            if v["state"] == "OPEN" {
                assert!(v["stateLastModifiedAt"].is_null() && v["stateLastModifiedBy"].is_null());
            } else {
                assert!(v["stateLastModifiedAt"].as_str().unwrap() < "2023-11-14T22:13:20");
            }
            if !v["note"].is_null() {
                notes += 1;
                assert_eq!(v["note"]["type$"], "NOTE");
            }
            if v["actorId"].is_null() {
                null_actor_ids += 1;
            }
            let obs = v["observations"].as_array().unwrap();
            assert!((1..=3).contains(&obs.len()));
            for o in obs {
                assert_eq!(o["type$"], "OBSERVATION");
                assert!(o["observedAt"].as_str().unwrap() <= o["lastObservedAt"].as_str().unwrap());
                assert!(o["lastObservedAt"].as_str().unwrap() < created);
                let data: serde_json::Value =
                    serde_json::from_str(o["data"].as_str().expect("data is a string")).unwrap();
                let files = data["files"].as_array().unwrap();
                assert_eq!(data["fileCount"], files.len());
                for f in files {
                    let name = f["name"].as_str().unwrap();
                    if name.contains(['|', '=', '\\', '\n']) || !name.is_ascii() {
                        hostile += 1;
                    }
                }
            }
        }
        assert_eq!(types.len(), 5, "{types:?}");
        assert_eq!(states.len(), 4, "{states:?}");
        assert!(risks.len() >= 5, "{risks:?}");
        assert!(notes > 100, "{notes} notes");
        assert!(null_actor_ids > 10);
        assert!(hostile > 200, "{hostile} hostile file names");
    }

    #[test]
    fn changes_apply_and_the_aggregate_merges() {
        let g = generator(6);
        let change = AlertChange {
            state: Some(("RESOLVED", "me@example.com".into(), T0 + 5)),
            note: Some(Note {
                id: "n1".into(),
                message: "done |=".into(),
                by: "me@example.com".into(),
                at_ns: T0 + 5,
            }),
            revisions: 1,
        };
        let a = g.alert(10, Some(&change));
        assert_eq!(a.state, "RESOLVED");
        assert_eq!(a.last_modified(), (T0 + 5, Some("me@example.com")));
        let mut s = String::new();
        g.render_aggregate(&a, &mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["type$"], "ALERT_DETAILS_AGGREGATE");
        assert_eq!(v["observation"]["type$"], "OBSERVATION_AGGREGATE");
        let data: serde_json::Value =
            serde_json::from_str(v["observation"]["data"].as_str().unwrap()).unwrap();
        let total: usize = g.observations(&a).iter().map(|o| o.files.len()).sum();
        assert_eq!(data["fileCount"], total);
        assert!(data["isRemoteActivity"].is_boolean());
        for r in g.rules() {
            let mut s = String::new();
            g.render_rule(r, &mut s);
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            assert_eq!(v["type$"], "RULE_METADATA");
        }
    }

    #[test]
    fn states_parse_like_the_console_names_them() {
        assert_eq!(canonical_state("open"), Some("OPEN"));
        assert_eq!(canonical_state("Dismissed"), Some("RESOLVED"));
        assert_eq!(canonical_state("in progress"), Some("IN_PROGRESS"));
        assert_eq!(canonical_state("closed"), None);
        assert_eq!(ceil_tick(101), 200);
        assert_eq!(ceil_tick(200), 200);
        assert_eq!(to_tick(-1), -100);
        assert_eq!(to_tick(i64::MIN), i64::MIN);
        assert_eq!(ceil_tick(i64::MIN), i64::MIN);
    }
}
