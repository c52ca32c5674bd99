//! Normalization: an API [`Event`] becomes a [`Record`] with the same meaning for every
//! output format (class id, name, category, severity, time, actor, source IPs, outcome)
//! plus every other field of the event, untouched.
//!
//! Per data set (the event's [`SourceKind`]), the common keys are:
//! - Audit Log: `type$` (class id `audit_log::<id>/1`), `timestamp`, `actorId`,
//!   `actorName`, `actorType`, `actorAgent`, `actorIpAddress`, `success`.
//! - Alerts: `type` (class id), `name`, `createdAt`, `actor`, `actorId`, `type$`; the
//!   severity is read from `severity` and `riskSeverity` (which stay in the fields), and
//!   the `observations` array is summarized ([`alerts::summarize_observations`]) without
//!   being taken: it stays whole in the fields.
//! - Directory Sync Log: `action` (class id) and `logEventTimeStamp`; `username` and the
//!   rest stay in the fields (the entry's user is the one acted on, not an actor).
//! - Sessions: `lastUpdated` (epoch ms: the time of this version) and `actorId`; the
//!   class id is the current state and the severity the latest score's, read from
//!   `states` and `scores`, which stay whole in the fields with `riskIndicators` and
//!   `triggeredAlerts` ([`sessions::SessionSummary`]).
//!
//! Owned here: reading the raw event text once, borrowing from it wherever the JSON has
//! no escapes (the record holds `&str` slices of the event text, and its field
//! list lives inline: no heap allocation for a typical Audit Log event), and deciding which
//! keys are the common ones. Deliberately not here: any output format (that is
//! `crate::encode`), any I/O, any clock.
//!
//! **Invariant 4 (ARCHITECTURE.md): [`normalize`] is total.** Every input yields a record: an
//! event that is not an object, lacks `type$` or `timestamp`, or has a common key of the
//! wrong JSON type still produces one, with the reason in [`Record::problems`]. No key is
//! dropped: a common key is taken out of [`Record::fields`] only when its value was
//! understood completely (a string where a string belongs, a boolean for `success`, a
//! parseable `timestamp`); anything else stays in `fields` as the API sent it.

pub mod alerts;
pub mod catalog;
pub mod file_events;
pub mod json;
pub(crate) mod scan;
pub mod sessions;
pub mod sync_log;
pub mod time;

use crate::event::{Event, SourceKind};
use alerts::ObservationSummary;
use catalog::{AuditEventType, AUDIT_EVENT_TYPES};
use chrono::{DateTime, Utc};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::sync::OnceLock;

pub use time::parse_rfc3339;

/// Class id of an event whose type cannot be read (no `type$`, not an object...).
pub const UNKNOWN_CLASS_ID: &str = "unknown";
/// Category of event types the catalog does not know.
pub const UNKNOWN_CATEGORY: &str = "other";
/// CEF severity of event types the catalog does not know (see `catalog`).
pub const UNKNOWN_SEVERITY: u8 = 3;
/// Key under which a non-object event is kept whole in [`Record::fields`].
pub const RAW_VALUE_KEY: &str = "_raw";

/// One key of the event that is not a common one, exactly as the API sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// The key, unescaped (borrowed unless the key had JSON escapes).
    pub key: Cow<'a, str>,
    /// The value's JSON text, as received: valid JSON (a slice of the event's
    /// `RawValue`), possibly with insignificant whitespace inside arrays and objects.
    pub value: &'a str,
    /// The value is a JSON string with escapes (`false` for plain strings and for
    /// every other kind of value): lets a reader decode without looking again.
    pub value_escaped: bool,
}

impl<'a> Field<'a> {
    /// If the value is a JSON string: the text between its quotes, still escaped when
    /// `value_escaped`.
    pub fn value_str_inner(&self) -> Option<&'a str> {
        let b = self.value.as_bytes();
        if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
            return None;
        }
        self.value.get(1..self.value.len() - 1)
    }

    /// The value's text if it is a JSON string, decoded.
    pub fn value_str(&self) -> Option<Cow<'a, str>> {
        json::Member {
            key: "",
            key_escaped: false,
            value: self.value,
            value_escaped: self.value_escaped,
        }
        .value_str()
    }
}

/// The other fields of an event, in the event's order. Inline up to 12 fields.
pub type Fields<'a> = SmallVec<[Field<'a>; 12]>;

/// Who did it (Audit Log `actorId`, `actorName`, `actorType`, `actorAgent`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor<'a> {
    pub id: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    /// `USER`, `SUPPORT_USER`, `API_CLIENT`, `SYSTEM`, `UNKNOWN` (passed through as sent).
    pub kind: Option<Cow<'a, str>>,
    /// The user agent of the client that made the call.
    pub agent: Option<Cow<'a, str>>,
}

/// The actor's IP addresses: the API's `actorIpAddress`, which is empty, one address,
/// or a comma-separated list (client first, then proxies). Only a text whose every
/// element is an IPv4 or IPv6 address becomes a `SourceIps`; the original text is kept
/// so that its exact form is never lost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceIps<'a> {
    text: Option<Cow<'a, str>>,
    /// The first address: its place in `text` and its value (read once, here, because
    /// every CEF record needs it).
    first: Option<(usize, usize, IpAddr)>,
    count: usize,
}

impl<'a> SourceIps<'a> {
    /// `Some` when `text` is empty or a list of valid addresses, `None` otherwise.
    pub fn parse(text: Cow<'a, str>) -> Option<SourceIps<'a>> {
        if text.trim().is_empty() {
            return Some(SourceIps::default());
        }
        let mut first = None;
        let mut count = 0;
        let mut offset = 0;
        for part in text.split(',') {
            let t = part.trim();
            let ip = parse_ip(t)?;
            if first.is_none() {
                // `part` starts at `offset` in `text`; `t` after its leading spaces.
                let start = offset + (part.len() - part.trim_start().len());
                first = Some((start, start + t.len(), ip));
            }
            count += 1;
            offset += part.len() + 1;
        }
        Some(SourceIps {
            text: Some(text),
            first,
            count,
        })
    }

    /// The text as the API sent it (empty when there is no address).
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or("")
    }

    /// The addresses in order, each as its original text (trimmed) and parsed.
    pub fn iter(&self) -> impl Iterator<Item = (&str, IpAddr)> + '_ {
        self.text
            .as_deref()
            .into_iter()
            .flat_map(|t| t.split(','))
            .filter_map(|t| {
                let t = t.trim();
                parse_ip(t).map(|ip| (t, ip))
            })
    }

    /// The first address (the client, when the list went through proxies).
    pub fn first(&self) -> Option<(&str, IpAddr)> {
        let (start, end, ip) = self.first?;
        Some((self.text().get(start..end)?, ip))
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Parses an IPv4 or IPv6 address exactly as `std` does, with a fast path for the
/// dotted quads that nearly every event carries (std's general parser costs several
/// times more, and this runs for every event).
pub fn parse_ip(t: &str) -> Option<IpAddr> {
    parse_ipv4_fast(t.as_bytes())
        .map(IpAddr::from)
        .or_else(|| t.parse().ok())
}

/// `a.b.c.d`, each 0-255 in decimal without leading zeros (as std requires). `None`
/// means "not in this simple form", not "invalid": the caller asks std then.
fn parse_ipv4_fast(b: &[u8]) -> Option<[u8; 4]> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u32 = 0;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 3 {
            v = v * 10 + u32::from(b[i] - b'0');
            i += 1;
        }
        let len = i - start;
        if len == 0 || v > 255 || (len > 1 && b[start] == b'0') {
            return None;
        }
        *octet = v as u8;
    }
    (i == b.len()).then_some(octets)
}

/// What was wrong with an event's shape. Several can hold at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Problems(u8);

impl Problems {
    /// The event is not a JSON object (it is kept whole under [`RAW_VALUE_KEY`]).
    pub const NOT_AN_OBJECT: Problems = Problems(1);
    /// No type string (`type$` of an audit event, `type` of an alert, `action` of a sync
    /// log entry): the class id is [`UNKNOWN_CLASS_ID`], [`alerts::ALERT_CLASS_ID`] or
    /// [`sync_log::SYNC_LOG_CLASS_ID`].
    pub const MISSING_TYPE: Problems = Problems(2);
    /// No parseable time (`timestamp`, `createdAt`, `logEventTimeStamp`): the record's
    /// time is the event's `occurred`.
    pub const MISSING_TIME: Problems = Problems(4);
    /// The text could not be read as JSON (cannot happen for a `RawValue`; kept so that
    /// a reader bug shows up as a counted problem, never as a lost event). The event is
    /// kept whole under [`RAW_VALUE_KEY`].
    pub const UNREADABLE: Problems = Problems(8);

    const NAMES: [(Problems, &'static str); 4] = [
        (Problems::NOT_AN_OBJECT, "not_an_object"),
        (Problems::MISSING_TYPE, "missing_type"),
        (Problems::MISSING_TIME, "missing_timestamp"),
        (Problems::UNREADABLE, "unreadable"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, p: Problems) -> bool {
        self.0 & p.0 == p.0
    }

    fn insert(&mut self, p: Problems) {
        self.0 |= p.0;
    }

    /// Stable snake_case names of the problems present (used in the outputs).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(p, _)| self.contains(*p))
            .map(|(_, n)| n)
    }
}

/// The normalized form of one event. Borrows from the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub source: SourceKind,
    /// The CEF Device Event Class ID: the audit type name (`logged_in`), the alert
    /// `type` (`FED_COMPOSITE`) or the sync log `action` (`USER_ADDED`), also for types
    /// the tables do not know; [`UNKNOWN_CLASS_ID`], [`alerts::ALERT_CLASS_ID`] or
    /// [`sync_log::SYNC_LOG_CLASS_ID`] when the event has none.
    pub class_id: Cow<'a, str>,
    /// The console's display name (an alert's own `name`), or the type name humanized
    /// (`Some new event`).
    pub name: Cow<'a, str>,
    pub category: &'static str,
    /// CEF severity 0-10.
    pub severity: u8,
    /// Index of the type in [`AUDIT_EVENT_TYPES`] when the catalog knows it.
    pub catalog_index: Option<usize>,
    /// The `type$` text as sent (`audit_log::logged_in/1`, `ALERT_DETAILS`).
    pub type_tag: Option<Cow<'a, str>>,
    /// When the event occurred, to the nanosecond: the event's own `timestamp` /
    /// `createdAt` / `logEventTimeStamp` when it parses exactly, otherwise the caller's
    /// reading in [`Event::occurred`].
    pub time: DateTime<Utc>,
    /// `time` broken down, when the parser had it for free (a UTC timestamp).
    pub(crate) civil: Option<time::Civil>,
    pub actor: Actor<'a>,
    pub source_ips: SourceIps<'a>,
    /// The API's `success`.
    pub success: Option<bool>,
    /// Every key not taken as a common one, in the event's order.
    pub fields: Fields<'a>,
    pub problems: Problems,
    /// Alerts only: what the `observations` array adds up to, when it is an array.
    /// (Boxed: alerts are rare next to audit events, and the record stays small.)
    pub observations: Option<Box<ObservationSummary<'a>>>,
    /// Sessions only: the current state, latest score, risk indicators and alerts.
    pub session: Option<Box<sessions::SessionSummary<'a>>>,
}

impl<'a> Record<'a> {
    /// `time` broken down into calendar fields (UTC).
    pub(crate) fn civil(&self) -> time::Civil {
        self.civil.unwrap_or_else(|| time::Civil::of(&self.time))
    }

    /// The catalog row of this event's type, if known.
    pub fn event_type(&self) -> Option<&'static AuditEventType> {
        self.catalog_index.and_then(|i| AUDIT_EVENT_TYPES.get(i))
    }

    /// Whether `type$` says nothing the record does not say otherwise: the canonical
    /// `audit_log::<class id>/1` of an audit event, or one of the shapes the alert
    /// service tags an alert with (`ALERT_DETAILS`, `ALERT_SUMMARY`,
    /// `ALERT_DETAILS_AGGREGATE`). The encoders leave a canonical `type$` out.
    pub fn type_tag_is_canonical(&self) -> bool {
        let Some(t) = &self.type_tag else {
            return false;
        };
        match self.source {
            SourceKind::AuditLog => t
                .strip_prefix("audit_log::")
                .and_then(|r| r.strip_suffix("/1"))
                .is_some_and(|name| name == self.class_id),
            SourceKind::Alerts => matches!(
                t.as_ref(),
                "ALERT_DETAILS" | "ALERT_SUMMARY" | "ALERT_DETAILS_AGGREGATE"
            ),
            SourceKind::SyncLog => false,
            SourceKind::Sessions => false,
            SourceKind::FileEvents => false,
        }
    }
}

/// The hash of the fixed lookup tables built once here and in `encode::cef_map` (type
/// names, mapping rules). Their keys are short field and type names and the tables never
/// grow, so there is nothing for an attacker to flood (what SipHash guards against) and
/// a hash that costs more than the lookup is waste. This one reads at most the first and
/// the last eight bytes with fixed-size loads (no loop) and mixes in the length; keys
/// that share both ends and length still compare equal only if they are equal.
#[derive(Default)]
pub(crate) struct FastHash(u64);

impl std::hash::Hasher for FastHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        fn load(b: &[u8]) -> u64 {
            let mut w = [0u8; 8];
            let n = b.len().min(8);
            w[..n].copy_from_slice(&b[..n]);
            u64::from_le_bytes(w)
        }
        let head = load(bytes);
        let tail = load(&bytes[bytes.len().saturating_sub(8)..]);
        let h = (self.0 ^ head ^ tail.rotate_left(29) ^ (bytes.len() as u64))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

/// Position of a type name in [`AUDIT_EVENT_TYPES`] (the table is built once).
pub fn catalog_index(name: &str) -> Option<usize> {
    type Index = HashMap<&'static str, usize, BuildHasherDefault<FastHash>>;
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX
        .get_or_init(|| {
            AUDIT_EVENT_TYPES
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name, i))
                .collect()
        })
        .get(name)
        .copied()
}

/// `some_new_event` -> `Some new event`: the name of a type the catalog does not know.
pub fn humanize_type_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        match c {
            '_' => out.push(' '),
            c if i == 0 => out.extend(c.to_uppercase()),
            c => out.push(c),
        }
    }
    out
}

/// Normalizes one event. Pure and total: see the module invariant.
pub fn normalize(event: &Event) -> Record<'_> {
    let mut rec = Record::empty(event);
    normalize_into(event, &mut rec);
    rec
}

impl<'a> Record<'a> {
    /// The record of an event before anything was read from it.
    pub(crate) fn empty(event: &'a Event) -> Record<'a> {
        Record {
            source: event.kind,
            class_id: Cow::Borrowed(UNKNOWN_CLASS_ID),
            name: Cow::Borrowed("Unknown event"),
            category: UNKNOWN_CATEGORY,
            severity: UNKNOWN_SEVERITY,
            catalog_index: None,
            type_tag: None,
            time: event.occurred,
            civil: None,
            actor: Actor::default(),
            source_ips: SourceIps::default(),
            success: None,
            fields: Fields::new(),
            problems: Problems::default(),
            observations: None,
            session: None,
        }
    }
}

/// [`normalize`] into a record the caller holds, made by [`Record::empty`] from the same
/// event. (The encoder uses it so that the record, most of a kilobyte with its inline
/// field list, is built where it is used instead of being moved there.)
pub(crate) fn normalize_into<'a>(event: &'a Event, rec: &mut Record<'a>) {
    read_into(event, rec, false);
}

/// What a syslog header needs and nothing more: class id, name, category, severity and
/// time. Stops reading the event once the keys that decide them were seen (`type$` and
/// `timestamp` of an audit event; `type`, `createdAt`, `severity`, `riskSeverity` of
/// an alert; `action` and `logEventTimeStamp` of a sync log entry); the actor, the
/// source IPs, the outcome and the fields are left empty. (For `JsonRaw` behind a syslog
/// header, where the body is the event text itself.)
pub(crate) fn normalize_header_into<'a>(event: &'a Event, rec: &mut Record<'a>) {
    read_into(event, rec, true);
}

fn read_into<'a>(event: &'a Event, rec: &mut Record<'a>, header_only: bool) {
    let raw = event.json();
    let (scan, mut other) = if rec.source == SourceKind::FileEvents {
        // Nested objects, flattened as they are walked: a pass of its own
        // (`file_events::read`), not the collector's member by member.
        let mut other = Other::default();
        let scan = file_events::read(raw, rec, &mut other.file_event, !header_only);
        (scan, other)
    } else {
        let mut collector = Collector {
            rec,
            seen: 0,
            header_only,
            other: Other::default(),
        };
        let scan = json::scan_object_until(raw, |m| collector.member(m));
        collector.finish();
        (scan, collector.other)
    };
    match scan {
        json::ObjectScan::Object => {}
        json::ObjectScan::NotAnObject | json::ObjectScan::Unreadable => {
            // Forward the event whole rather than half-read.
            rec.actor = Actor::default();
            rec.source_ips = SourceIps::default();
            rec.success = None;
            rec.type_tag = None;
            rec.time = event.occurred;
            rec.civil = None;
            rec.problems = Problems::default();
            rec.observations = None;
            rec.session = None;
            other = Other::default();
            rec.fields.clear();
            rec.fields.push(Field {
                key: Cow::Borrowed(RAW_VALUE_KEY),
                value: raw,
                // A string event is decoded through `value_str`, which must know.
                value_escaped: raw.contains('\\'),
            });
            rec.problems
                .insert(if scan == json::ObjectScan::NotAnObject {
                    Problems::NOT_AN_OBJECT
                } else {
                    Problems::UNREADABLE
                });
        }
    }
    classify(rec, other);
}

/// `catalog::audit_type_name` (`audit_log::logged_in/1` -> `logged_in`), with a byte
/// search instead of a char search: it runs for every event.
fn type_name(tag: &str) -> &str {
    let s = tag.strip_prefix("audit_log::").unwrap_or(tag);
    match memchr::memrchr(b'/', s.as_bytes()) {
        // `/` is ASCII, so `i` is a char boundary.
        Some(i) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// Sets class id, name, category and severity from what was collected.
fn classify<'a>(rec: &mut Record<'a>, other: Other<'a>) {
    match rec.source {
        SourceKind::AuditLog => {
            let class_id: Option<Cow<'_, str>> = match &rec.type_tag {
                Some(Cow::Borrowed(t)) => Some(Cow::Borrowed(type_name(t))),
                Some(Cow::Owned(t)) => Some(Cow::Owned(type_name(t).to_owned())),
                None => None,
            };
            match class_id {
                Some(id) if !id.is_empty() => {
                    rec.catalog_index = catalog_index(&id);
                    match rec.event_type() {
                        Some(t) => {
                            rec.name = Cow::Borrowed(t.display);
                            rec.category = t.category;
                            rec.severity = t.severity.min(10);
                        }
                        None => rec.name = Cow::Owned(humanize_type_name(&id)),
                    }
                    rec.class_id = id;
                }
                _ => rec.problems.insert(Problems::MISSING_TYPE),
            }
        }
        SourceKind::Alerts => {
            let known = other.kind.as_deref().and_then(alerts::alert_type);
            rec.category = known.map_or(alerts::ALERT_CATEGORY, |t| t.category);
            rec.severity = alerts::alert_severity(other.rule_severity, other.risk_severity);
            // The alert's own name (its rule's name) is what the console shows.
            rec.name = match (other.title, known, &other.kind) {
                (Some(title), _, _) => title,
                (None, Some(t), _) => Cow::Borrowed(t.display),
                (None, None, Some(kind)) => Cow::Owned(humanize_type_name(kind)),
                (None, None, None) => Cow::Borrowed(alerts::ALERT_NAME),
            };
            match other.kind {
                Some(kind) => rec.class_id = kind,
                None => {
                    rec.class_id = Cow::Borrowed(alerts::ALERT_CLASS_ID);
                    rec.problems.insert(Problems::MISSING_TYPE);
                }
            }
        }
        SourceKind::SyncLog => match other.kind {
            Some(action) => {
                match sync_log::sync_log_action(&action) {
                    Some(a) => {
                        rec.name = Cow::Borrowed(a.display);
                        rec.category = a.category;
                        rec.severity = a.severity.min(10);
                    }
                    None => {
                        rec.name = Cow::Owned(humanize_type_name(&action.to_lowercase()));
                        rec.category = sync_log::SYNC_LOG_CATEGORY;
                        rec.severity = sync_log::SYNC_LOG_DEFAULT_SEVERITY;
                    }
                }
                rec.class_id = action;
            }
            None => {
                rec.class_id = Cow::Borrowed(sync_log::SYNC_LOG_CLASS_ID);
                rec.name = Cow::Borrowed(sync_log::SYNC_LOG_NAME);
                rec.category = sync_log::SYNC_LOG_CATEGORY;
                rec.severity = sync_log::SYNC_LOG_DEFAULT_SEVERITY;
                rec.problems.insert(Problems::MISSING_TYPE);
            }
        },
        SourceKind::Sessions => classify_session(rec),
        SourceKind::FileEvents => file_events::classify(rec, other.file_event),
    }
}

/// A session's class id (its current state), name, category and severity (its latest
/// score's).
fn classify_session(rec: &mut Record<'_>) {
    rec.category = sessions::SESSION_CATEGORY;
    let summary = rec.session.as_deref();
    rec.severity = summary
        .and_then(|s| s.risk_severity)
        .and_then(sessions::session_severity)
        .unwrap_or(sessions::SESSION_DEFAULT_SEVERITY);
    match summary.and_then(|s| s.state.clone()) {
        Some(state) => {
            rec.name = match sessions::session_state(&state) {
                Some(s) => Cow::Borrowed(s.display),
                None => Cow::Owned(format!(
                    "Session {}",
                    humanize_type_name(&state.to_lowercase()).to_lowercase()
                )),
            };
            rec.class_id = Cow::Owned(state.into_owned());
        }
        None => {
            rec.class_id = Cow::Borrowed(sessions::SESSION_CLASS_ID);
            rec.name = Cow::Borrowed(sessions::SESSION_NAME);
            rec.problems.insert(Problems::MISSING_TYPE);
        }
    }
}

/// What the collector read for an alert or a sync log entry that is not a field of the
/// record itself, for [`classify`].
#[derive(Default)]
struct Other<'a> {
    /// The alert's `type` or the entry's `action` (non-empty).
    kind: Option<Cow<'a, str>>,
    /// The alert's `name` (non-empty).
    title: Option<Cow<'a, str>>,
    rule_severity: Option<u8>,
    risk_severity: Option<u8>,
    /// What a file event's flattening saw.
    file_event: file_events::Seen<'a>,
}

// Bits of `Collector::seen`: a common key is taken at most once; a repeated key stays
// in `fields` like any other.
const SEEN_TYPE: u16 = 1;
const SEEN_TIME: u16 = 2;
const SEEN_ACTOR_ID: u16 = 4;
const SEEN_ACTOR_NAME: u16 = 8;
const SEEN_ACTOR_TYPE: u16 = 16;
const SEEN_ACTOR_AGENT: u16 = 32;
const SEEN_IP: u16 = 64;
const SEEN_SUCCESS: u16 = 128;
// Alerts and sync log entries reuse `SEEN_TYPE` (`type` / `action`), `SEEN_TIME`
// (`createdAt` / `logEventTimeStamp`), `SEEN_ACTOR_ID` (`actorId`) and
// `SEEN_ACTOR_NAME` (`actor`), plus these.
const SEEN_TYPE_TAG: u16 = 256;
const SEEN_TITLE: u16 = 512;
const SEEN_RULE_SEVERITY: u16 = 1024;
const SEEN_RISK_SEVERITY: u16 = 2048;
const SEEN_OBSERVATIONS: u16 = 4096;
/// What the header of an alert needs: once these are read, header-only reading stops.
const ALERT_HEADER: u16 = SEEN_TYPE | SEEN_TIME | SEEN_RULE_SEVERITY | SEEN_RISK_SEVERITY;
// Sessions reuse `SEEN_TIME` (`lastUpdated`), `SEEN_ACTOR_ID` (`actorId`), `SEEN_TYPE`
// (`states`), `SEEN_RULE_SEVERITY` (`scores`), `SEEN_OBSERVATIONS` (`riskIndicators`)
// and `SEEN_TITLE` (`triggeredAlerts`).
/// What the header of a session needs.
const SESSION_HEADER: u16 = SEEN_TYPE | SEEN_TIME | SEEN_RULE_SEVERITY;

/// Stores `value` in `slot` if there is one; says whether there was.
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    let some = value.is_some();
    if some {
        *slot = value;
    }
    some
}

/// Takes the common keys out of the members of the top-level object and keeps the rest.
struct Collector<'r, 'a> {
    rec: &'r mut Record<'a>,
    seen: u16,
    /// Take only what the header needs, keep nothing else, stop when it is all in.
    header_only: bool,
    other: Other<'a>,
}

impl<'a> Collector<'_, 'a> {
    /// Takes or keeps one member; returns whether to go on reading.
    fn member(&mut self, m: json::Member<'a>) -> bool {
        let key = json::decode_inner(m.key, m.key_escaped);
        if self.header_only {
            return match self.rec.source {
                SourceKind::AuditLog => {
                    if matches!(key.as_ref(), "type$" | "timestamp") {
                        self.take(&key, m);
                    }
                    self.seen & (SEEN_TYPE | SEEN_TIME) != SEEN_TYPE | SEEN_TIME
                }
                SourceKind::Alerts => {
                    if matches!(
                        key.as_ref(),
                        "type" | "createdAt" | "severity" | "riskSeverity"
                    ) && !self.take_alert(&key, m)
                    {
                        self.peek_alert(&key, m);
                    }
                    self.seen & ALERT_HEADER != ALERT_HEADER
                }
                SourceKind::SyncLog => {
                    self.take_sync_log(&key, m);
                    self.seen & (SEEN_TYPE | SEEN_TIME) != SEEN_TYPE | SEEN_TIME
                }
                SourceKind::Sessions => {
                    if !self.take_session(&key, m) {
                        self.peek_session(&key, m);
                    }
                    self.seen & SESSION_HEADER != SESSION_HEADER
                }
                // Read by `file_events::read`, never by the collector.
                SourceKind::FileEvents => false,
            };
        }
        let taken = match self.rec.source {
            SourceKind::AuditLog => self.take(&key, m),
            SourceKind::Alerts => {
                let taken = self.take_alert(&key, m);
                if !taken {
                    self.peek_alert(&key, m);
                }
                taken
            }
            SourceKind::SyncLog => self.take_sync_log(&key, m),
            SourceKind::Sessions => {
                let taken = self.take_session(&key, m);
                if !taken {
                    self.peek_session(&key, m);
                }
                taken
            }
            // Read by `file_events::read`, never by the collector.
            SourceKind::FileEvents => return false,
        };
        if !taken {
            self.rec.fields.push(Field {
                key,
                value: m.value,
                value_escaped: m.value_escaped,
            });
        }
        true
    }

    /// Takes a common key of an alert; returns whether it was taken.
    fn take_alert(&mut self, key: &str, m: json::Member<'a>) -> bool {
        let bit = match key {
            "type" => SEEN_TYPE,
            "createdAt" => SEEN_TIME,
            "actor" => SEEN_ACTOR_NAME,
            "actorId" => SEEN_ACTOR_ID,
            "name" => SEEN_TITLE,
            "type$" => SEEN_TYPE_TAG,
            _ => return false,
        };
        if self.seen & bit != 0 {
            return false;
        }
        let rec = &mut *self.rec;
        let other = &mut self.other;
        // Unlike the audit keys, `null` is not taken: an alert's keys are all always
        // present, so a null says something ("no actor id": a cloud alias) that the
        // fields keep.
        let taken = match bit {
            SEEN_TYPE => set(&mut other.kind, m.value_str().filter(|s| !s.is_empty())),
            SEEN_TITLE => set(&mut other.title, m.value_str().filter(|s| !s.is_empty())),
            SEEN_TIME => take_time(rec, m),
            SEEN_ACTOR_NAME => set(&mut rec.actor.name, m.value_str()),
            SEEN_ACTOR_ID => set(&mut rec.actor.id, m.value_str()),
            _ => set(&mut rec.type_tag, m.value_str()),
        };
        if taken {
            self.seen |= bit;
        }
        taken
    }

    /// Reads what an alert's record needs from a key that stays in the fields.
    fn peek_alert(&mut self, key: &str, m: json::Member<'a>) {
        let bit = match key {
            "severity" => SEEN_RULE_SEVERITY,
            "riskSeverity" => SEEN_RISK_SEVERITY,
            "observations" if !self.header_only => SEEN_OBSERVATIONS,
            _ => return,
        };
        if self.seen & bit != 0 {
            return;
        }
        self.seen |= bit;
        match bit {
            SEEN_RULE_SEVERITY => {
                self.other.rule_severity = m.value_str().and_then(|s| alerts::rule_severity(&s))
            }
            SEEN_RISK_SEVERITY => {
                self.other.risk_severity = m.value_str().and_then(|s| alerts::risk_severity(&s))
            }
            _ => {
                let Some(summary) = alerts::summarize_observations(m.value) else {
                    return;
                };
                if !summary.sending_ips.is_empty() {
                    // The addresses the observed activity came from: the actor's
                    // machine, which is what `source_ips` means for every source.
                    let text = summary.sending_ips.join(", ");
                    if let Some(ips) = SourceIps::parse(Cow::Owned(text)) {
                        self.rec.source_ips = ips;
                    }
                }
                self.rec.observations = Some(Box::new(summary));
            }
        }
    }

    /// Takes a common key of a session (`lastUpdated`, `actorId`); returns whether it
    /// was taken.
    fn take_session(&mut self, key: &str, m: json::Member<'a>) -> bool {
        let bit = match key {
            "lastUpdated" => SEEN_TIME,
            "actorId" => SEEN_ACTOR_ID,
            _ => return false,
        };
        if self.seen & bit != 0 {
            return false;
        }
        let taken = match bit {
            SEEN_TIME => match json::read_i64(m.value).and_then(DateTime::from_timestamp_millis) {
                Some(t) => {
                    self.rec.time = t;
                    self.rec.civil = None;
                    true
                }
                None => false,
            },
            _ => set(&mut self.rec.actor.id, m.value_str()),
        };
        if taken {
            self.seen |= bit;
        }
        taken
    }

    /// Reads what a session's record needs from a key that stays in the fields.
    fn peek_session(&mut self, key: &str, m: json::Member<'a>) {
        let bit = match key {
            "states" => SEEN_TYPE,
            "scores" => SEEN_RULE_SEVERITY,
            "riskIndicators" if !self.header_only => SEEN_OBSERVATIONS,
            "triggeredAlerts" if !self.header_only => SEEN_TITLE,
            _ => return,
        };
        if self.seen & bit != 0 {
            return;
        }
        self.seen |= bit;
        let s = self.rec.session.get_or_insert_with(Box::default);
        match bit {
            SEEN_TYPE => s.read_states(m.value),
            SEEN_RULE_SEVERITY => s.read_scores(m.value),
            SEEN_OBSERVATIONS => s.read_indicators(m.value),
            _ => s.read_alerts(m.value),
        }
    }

    /// Takes a common key of a sync log entry; returns whether it was taken.
    fn take_sync_log(&mut self, key: &str, m: json::Member<'a>) -> bool {
        let bit = match key {
            "action" => SEEN_TYPE,
            "logEventTimeStamp" => SEEN_TIME,
            _ => return false,
        };
        if self.seen & bit != 0 {
            return false;
        }
        let taken = match bit {
            SEEN_TYPE => set(
                &mut self.other.kind,
                m.value_str().filter(|s| !s.is_empty()),
            ),
            _ => take_time(self.rec, m),
        };
        if taken {
            self.seen |= bit;
        }
        taken
    }

    /// Takes `key` as a common key of an audit event if it is one and its value fits;
    /// returns whether it was taken.
    fn take(&mut self, key: &str, m: json::Member<'a>) -> bool {
        if self.rec.source != SourceKind::AuditLog {
            return false;
        }
        // Dispatch on length and first byte before comparing: most keys of an event
        // are common ones, and this runs for every key.
        let b = key.as_bytes();
        let bit = match (b.len(), b.first()) {
            (5, Some(b't')) if key == "type$" => SEEN_TYPE,
            (9, Some(b't')) if key == "timestamp" => SEEN_TIME,
            (7, Some(b'a')) if key == "actorId" => SEEN_ACTOR_ID,
            (9, Some(b'a')) if key == "actorName" => SEEN_ACTOR_NAME,
            (9, Some(b'a')) if key == "actorType" => SEEN_ACTOR_TYPE,
            (10, Some(b'a')) if key == "actorAgent" => SEEN_ACTOR_AGENT,
            (14, Some(b'a')) if key == "actorIpAddress" => SEEN_IP,
            (7, Some(b's')) if key == "success" => SEEN_SUCCESS,
            _ => return false,
        };
        if self.seen & bit != 0 {
            return false;
        }
        let text = m.value;
        let rec = &mut *self.rec;
        // `null` is taken as "absent" for every common key: it carries nothing more.
        let taken = text == "null"
            || match bit {
                SEEN_TYPE => set(&mut rec.type_tag, m.value_str()),
                SEEN_TIME => m
                    .value_str()
                    .and_then(|s| time::parse_rfc3339_civil(&s))
                    .map(|(t, civil)| {
                        rec.time = t;
                        rec.civil = civil;
                    })
                    .is_some(),
                SEEN_SUCCESS => set(&mut rec.success, text.parse::<bool>().ok()),
                SEEN_IP => m
                    .value_str()
                    .and_then(SourceIps::parse)
                    .map(|ips| rec.source_ips = ips)
                    .is_some(),
                SEEN_ACTOR_ID => set(&mut rec.actor.id, m.value_str()),
                SEEN_ACTOR_NAME => set(&mut rec.actor.name, m.value_str()),
                SEEN_ACTOR_TYPE => set(&mut rec.actor.kind, m.value_str()),
                _ => set(&mut rec.actor.agent, m.value_str()),
            };
        if taken {
            self.seen |= bit;
        }
        taken
    }

    fn finish(&mut self) {
        if self.seen & SEEN_TIME == 0 {
            self.rec.problems.insert(Problems::MISSING_TIME);
        }
    }
}

/// Takes an RFC 3339 string as the record's time; returns whether it parsed exactly.
fn take_time<'a>(rec: &mut Record<'a>, m: json::Member<'a>) -> bool {
    m.value_str()
        .and_then(|s| time::parse_rfc3339_civil(&s))
        .map(|(t, civil)| {
            rec.time = t;
            rec.civil = civil;
        })
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    pub(crate) fn event(json: &str) -> Event {
        let raw = RawValue::from_string(json.to_owned()).unwrap();
        let occurred = DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        Event::new(SourceKind::AuditLog, raw, occurred)
    }

    const LOGIN: &str = r#"{"type$":"audit_log::logged_in/1","actorId":"898209175991065670","actorName":"whiteoak_ffs_user2@code42.com","actorAgent":"py42 0.2.0 python 2.7.14 Code42ForSplunk.v3.0.12.b250","actorIpAddress":"50.93.255.223, 64.252.71.111","timestamp":"2022-10-03T13:14:46.962123456Z","actorType":"UNKNOWN","success":true}"#;

    #[test]
    fn takes_the_common_keys_of_an_audit_event() {
        let ev = event(LOGIN);
        let r = normalize(&ev);
        assert_eq!(r.class_id, "logged_in");
        assert_eq!(r.name, "Console login");
        assert_eq!(r.category, "authentication");
        assert_eq!(r.severity, 3);
        assert_eq!(r.time.timestamp_subsec_nanos(), 962_123_456);
        assert_eq!(r.actor.id.as_deref(), Some("898209175991065670"));
        assert_eq!(
            r.actor.name.as_deref(),
            Some("whiteoak_ffs_user2@code42.com")
        );
        assert_eq!(r.actor.kind.as_deref(), Some("UNKNOWN"));
        assert!(r.actor.agent.as_deref().unwrap().starts_with("py42"));
        let ips: Vec<_> = r.source_ips.iter().map(|(t, _)| t).collect();
        assert_eq!(ips, ["50.93.255.223", "64.252.71.111"]);
        assert_eq!(r.success, Some(true));
        assert!(r.fields.is_empty());
        assert!(r.problems.is_empty());
        assert!(r.type_tag_is_canonical());
        // Plain strings are borrowed from the event, not copied.
        assert!(matches!(r.actor.name, Some(Cow::Borrowed(_))));
        assert!(!r.fields.spilled());
    }

    #[test]
    fn keeps_type_specific_and_unknown_fields_in_order() {
        let ev = event(
            r#"{"type$":"audit_log::search_issued/1","timestamp":"2020-08-13T15:52:40.240585Z","type":"query","requestJson":"{\"a\":1}","resultCount":15,"zz":{"n":[1,2]}}"#,
        );
        let r = normalize(&ev);
        let keys: Vec<_> = r.fields.iter().map(|f| f.key.as_ref()).collect();
        assert_eq!(keys, ["type", "requestJson", "resultCount", "zz"]);
        assert_eq!(r.fields[3].value, r#"{"n":[1,2]}"#);
    }

    #[test]
    fn unknown_types_get_a_humanized_name() {
        let ev =
            event(r#"{"type$":"audit_log::brand_new_thing/2","timestamp":"2024-01-01T00:00:00Z"}"#);
        let r = normalize(&ev);
        assert_eq!(r.class_id, "brand_new_thing");
        assert_eq!(r.name, "Brand new thing");
        assert_eq!(r.category, UNKNOWN_CATEGORY);
        assert_eq!(r.severity, UNKNOWN_SEVERITY);
        assert_eq!(r.catalog_index, None);
        assert!(!r.type_tag_is_canonical());
    }

    #[test]
    fn wrong_types_stay_in_fields() {
        let ev = event(
            r#"{"type$":7,"timestamp":"yesterday","actorId":42,"actorName":null,"success":"yes","actorIpAddress":"null"}"#,
        );
        let r = normalize(&ev);
        assert_eq!(r.class_id, UNKNOWN_CLASS_ID);
        assert!(r.problems.contains(Problems::MISSING_TYPE));
        assert!(r.problems.contains(Problems::MISSING_TIME));
        assert_eq!(r.time, ev.occurred);
        assert_eq!(r.actor.id, None);
        assert_eq!(r.actor.name, None);
        let keys: Vec<_> = r.fields.iter().map(|f| f.key.as_ref()).collect();
        assert_eq!(
            keys,
            ["type$", "timestamp", "actorId", "success", "actorIpAddress"]
        );
    }

    #[test]
    fn header_only_reading_agrees_with_full_reading() {
        for json in [
            LOGIN,
            r#"{"timestamp":"2024-01-01T00:00:00Z","x":1,"type$":"audit_log::user_created/1"}"#,
            r#"{"type$":7,"timestamp":"bad","type$":"audit_log::logged_in/1"}"#,
            r#"{"a":1}"#,
            "[1]",
            r#""s""#,
        ] {
            let ev = event(json);
            let full = normalize(&ev);
            let mut head = Record::empty(&ev);
            normalize_header_into(&ev, &mut head);
            assert_eq!(head.class_id, full.class_id, "{json}");
            assert_eq!(head.name, full.name);
            assert_eq!(head.severity, full.severity);
            assert_eq!(head.time, full.time);
            assert_eq!(head.civil(), full.civil());
        }
    }

    #[test]
    fn repeated_common_keys_are_kept() {
        let ev = event(r#"{"actorId":"a","actorId":"b"}"#);
        let r = normalize(&ev);
        assert_eq!(r.actor.id.as_deref(), Some("a"));
        assert_eq!(r.fields.len(), 1);
        assert_eq!(r.fields[0].value, r#""b""#);
    }

    #[test]
    fn non_objects_are_kept_whole() {
        for json in ["[1,2]", "\"text\"", "12", "null", "true", "  [ ]"] {
            let ev = event(json);
            let r = normalize(&ev);
            assert!(r.problems.contains(Problems::NOT_AN_OBJECT), "{json}");
            assert_eq!(r.fields.len(), 1);
            assert_eq!(r.fields[0].key, RAW_VALUE_KEY);
            assert_eq!(r.fields[0].value, ev.json());
        }
    }

    #[test]
    fn string_values_keep_their_inside() {
        let ev = event(r#"{"a":"x\"y\u00e9\ud83d\ude00z","b":"plain","c":12}"#);
        let r = normalize(&ev);
        assert_eq!(
            r.fields[0].value_str_inner(),
            Some(r#"x\"y\u00e9\ud83d\ude00z"#)
        );
        assert!(r.fields[0].value_escaped);
        assert_eq!(r.fields[0].value_str().as_deref(), Some("x\"yé😀z"));
        assert_eq!(r.fields[1].value_str_inner(), Some("plain"));
        assert!(!r.fields[1].value_escaped);
        assert_eq!(r.fields[2].value_str_inner(), None);
        assert_eq!(r.fields[2].value_str(), None);
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let ev = event(r#"{"actorName":"a\nb\u00e9","k\"ey":"v","type$":"audit_log::x\u007cy/1"}"#);
        let r = normalize(&ev);
        assert_eq!(r.actor.name.as_deref(), Some("a\nbé"));
        assert_eq!(r.fields[0].key, "k\"ey");
        assert_eq!(r.class_id, "x|y");
    }

    #[test]
    fn ip_lists() {
        fn ok(s: &str) -> Option<SourceIps<'_>> {
            SourceIps::parse(Cow::Borrowed(s))
        }
        assert!(ok("").unwrap().is_empty());
        assert!(ok(" ").unwrap().is_empty());
        assert_eq!(ok("2001:db8::1").unwrap().len(), 1);
        assert_eq!(ok("10.0.0.1,2001:db8::1 , 192.0.2.7").unwrap().len(), 3);
        assert!(ok("null").is_none());
        assert!(ok("1.2.3.4,").is_none());
        assert!(ok("1.2.3.4, host.example").is_none());
        assert_eq!(
            ok("2001:db8::1, 10.0.0.1").unwrap().first().unwrap().0,
            "2001:db8::1"
        );
    }

    #[test]
    fn type_names_as_the_catalog_reads_them() {
        for tag in [
            "audit_log::logged_in/1",
            "audit_log::x/y/2",
            "logged_in",
            "audit_log::",
            "/",
            "",
            "audit_log::é/1",
            "audit_log:logged_in/1",
        ] {
            assert_eq!(type_name(tag), catalog::audit_type_name(tag), "{tag}");
        }
    }

    #[test]
    fn fast_ipv4_parsing_agrees_with_std() {
        for t in [
            "0.0.0.0",
            "1.2.3.4",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.4.5",
            "1..3.4",
            "",
            "1.2.3.-4",
            "1234.1.1.1",
            "1.2.3.04",
            "10.0.0.1 ",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::1",
            "1.2.3.4%eth0",
            "a.b.c.d",
            "9.9.9.9\u{0}",
        ] {
            assert_eq!(parse_ip(t), t.parse::<IpAddr>().ok(), "{t:?}");
            if let Some(o) = parse_ipv4_fast(t.as_bytes()) {
                assert_eq!(
                    t.parse::<std::net::Ipv4Addr>().ok(),
                    Some(o.into()),
                    "{t:?}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn ip_parsing_agrees_with_std(t in "[0-9.:a-f]{0,20}", a in proptest::prelude::any::<[u8; 4]>()) {
            proptest::prop_assert_eq!(parse_ip(&t), t.parse::<IpAddr>().ok());
            let quad = std::net::Ipv4Addr::from(a).to_string();
            proptest::prop_assert_eq!(parse_ip(&quad), Some(IpAddr::from(a)));
        }
    }

    #[test]
    fn catalog_lookup_finds_every_type() {
        for (i, t) in AUDIT_EVENT_TYPES.iter().enumerate() {
            assert_eq!(catalog_index(t.name), Some(i));
        }
        assert_eq!(catalog_index("nope"), None);
        assert_eq!(catalog_index(""), None);
    }

    fn event_of(kind: SourceKind, json: &str) -> Event {
        let raw = RawValue::from_string(json.to_owned()).unwrap();
        Event::new(
            kind,
            raw,
            DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
        )
    }

    const ALERT: &str = r#"{"type$":"ALERT_DETAILS","tenantId":"123456","type":"FED_ENDPOINT_EXFILTRATION","name":"Departing employee endpoint exfiltration system rule","description":"System rule","actor":"burt.morales@example.com","actorId":"9001","target":"N/A","severity":"MEDIUM","riskSeverity":"CRITICAL","ruleId":"123456789424242","ruleSource":"Departing Employee","watchlists":[],"id":"987654321424242","createdAt":"2020-04-08T13:50:25.3644410Z","state":"OPEN","stateLastModifiedBy":null,"stateLastModifiedAt":null,"observations":[{"type$":"OBSERVATION","id":"1","observedAt":"2020-04-08T13:40:00.0000000Z","type":"FedEndpointExfiltration","data":{"fileCount":2,"totalFileSize":311096,"exposureTypes":["CloudStorage"],"files":[{"name":"a.png"}],"sendingIpAddresses":["2001:db8::7","192.0.2.1"]}}],"note":null}"#;

    #[test]
    fn takes_the_common_keys_of_an_alert() {
        let ev = event_of(SourceKind::Alerts, ALERT);
        let r = normalize(&ev);
        assert_eq!(r.class_id, "FED_ENDPOINT_EXFILTRATION");
        assert_eq!(
            r.name,
            "Departing employee endpoint exfiltration system rule"
        );
        assert_eq!(r.category, "exfiltration");
        // MEDIUM rule, CRITICAL events: the higher one.
        assert_eq!(r.severity, 10);
        assert_eq!(r.time.timestamp_subsec_nanos(), 364_441_000);
        assert_eq!(r.actor.name.as_deref(), Some("burt.morales@example.com"));
        assert_eq!(r.actor.id.as_deref(), Some("9001"));
        assert!(r.type_tag_is_canonical());
        assert!(r.problems.is_empty());
        let ips: Vec<_> = r.source_ips.iter().map(|(t, _)| t).collect();
        assert_eq!(ips, ["2001:db8::7", "192.0.2.1"]);
        let s = r.observations.as_deref().unwrap();
        assert_eq!((s.count, s.file_count, s.total_file_size), (1, 2, 311_096));
        // Severity, observations and every other key stay in the fields, in order.
        let keys: Vec<_> = r.fields.iter().map(|f| f.key.as_ref()).collect();
        assert_eq!(
            keys,
            [
                "tenantId",
                "description",
                "target",
                "severity",
                "riskSeverity",
                "ruleId",
                "ruleSource",
                "watchlists",
                "id",
                "state",
                "stateLastModifiedBy",
                "stateLastModifiedAt",
                "observations",
                "note"
            ]
        );
    }

    #[test]
    fn odd_alerts_still_make_records() {
        let ev = event_of(
            SourceKind::Alerts,
            r#"{"type":"","name":7,"actor":null,"createdAt":"not a time","severity":"URGENT","observations":"x"}"#,
        );
        let r = normalize(&ev);
        assert_eq!(r.class_id, alerts::ALERT_CLASS_ID);
        assert_eq!(r.name, alerts::ALERT_NAME);
        assert_eq!(r.severity, alerts::ALERT_DEFAULT_SEVERITY);
        assert_eq!(r.time, ev.occurred);
        assert!(r.problems.contains(Problems::MISSING_TYPE));
        assert!(r.problems.contains(Problems::MISSING_TIME));
        assert_eq!(r.observations, None);
        assert_eq!(r.fields.len(), 6, "nothing taken, nothing lost");
        let ev = event_of(
            SourceKind::Alerts,
            r#"{"type":"FED_NEW_KIND","severity":"low"}"#,
        );
        let r = normalize(&ev);
        assert_eq!(r.class_id, "FED_NEW_KIND");
        assert_eq!(r.name, "FED NEW KIND");
        assert_eq!(r.category, alerts::ALERT_CATEGORY);
        assert_eq!(r.severity, 3);
    }

    #[test]
    fn takes_the_common_keys_of_a_sync_log_entry() {
        let ev = event_of(
            SourceKind::SyncLog,
            r#"{"username":"ops|oncall=1@example.com","action":"ROLE_ASSIGNED","field":"role","oldValue":null,"newValue":"Security Center User","providerName":"Okta","logEventTimeStamp":"2024-03-01T10:00:00.123Z"}"#,
        );
        let r = normalize(&ev);
        // Code42 documents no action (sync_log's module doc): the generic mapping.
        assert_eq!(r.class_id, "ROLE_ASSIGNED");
        assert_eq!(r.name, "Role assigned");
        assert_eq!(r.category, sync_log::SYNC_LOG_CATEGORY);
        assert_eq!(r.severity, sync_log::SYNC_LOG_DEFAULT_SEVERITY);
        assert_eq!(r.time.timestamp_subsec_millis(), 123);
        assert_eq!(r.actor, Actor::default());
        let keys: Vec<_> = r.fields.iter().map(|f| f.key.as_ref()).collect();
        assert_eq!(
            keys,
            ["username", "field", "oldValue", "newValue", "providerName"]
        );
        let ev = event_of(
            SourceKind::SyncLog,
            r#"{"action":"USER_LOCKED_OUT","logEventTimeStamp":1709287200123}"#,
        );
        let r = normalize(&ev);
        assert_eq!(r.class_id, "USER_LOCKED_OUT");
        assert_eq!(r.name, "User locked out");
        assert_eq!(r.category, sync_log::SYNC_LOG_CATEGORY);
        assert!(r.problems.contains(Problems::MISSING_TIME));
        assert_eq!(r.fields[0].key, "logEventTimeStamp");
        let ev = event_of(SourceKind::SyncLog, "[]");
        let r = normalize(&ev);
        assert_eq!(r.class_id, sync_log::SYNC_LOG_CLASS_ID);
        assert!(r.problems.contains(Problems::NOT_AN_OBJECT));
    }

    #[test]
    fn header_only_reading_agrees_for_every_source() {
        for (kind, json) in [
            (SourceKind::Alerts, ALERT),
            (
                SourceKind::Alerts,
                r#"{"riskSeverity":"HIGH","type":"FED_COMPOSITE"}"#,
            ),
            (
                SourceKind::Alerts,
                r#"{"createdAt":"2024-01-01T00:00:00Z","x":[1,2]}"#,
            ),
            (SourceKind::Alerts, r#"[{"type":"FED_COMPOSITE"}]"#),
            (
                SourceKind::SyncLog,
                r#"{"action":"USER_ADDED","logEventTimeStamp":"2024-01-01T00:00:00.5Z"}"#,
            ),
            (SourceKind::SyncLog, r#"{"username":"u"}"#),
        ] {
            let ev = event_of(kind, json);
            let full = normalize(&ev);
            let mut head = Record::empty(&ev);
            normalize_header_into(&ev, &mut head);
            assert_eq!(head.class_id, full.class_id, "{json}");
            assert_eq!(head.severity, full.severity, "{json}");
            assert_eq!(head.time, full.time, "{json}");
        }
    }
}
