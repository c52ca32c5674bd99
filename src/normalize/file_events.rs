//! The File Events data set: the `event.action`s c42fwd knows, each with its CEF
//! Device Event Class ID, a display name, a category and a default severity; the
//! severity of `risk.severity`; and the flattening of the nested event into dotted
//! fields (`file.hash.sha256`) that every output format maps.
//!
//! Class ids keep continuity with code42cli, the tool people migrate from: its ids for
//! file events were `C42200` created, `C42201` modified, `C42202` deleted, `C42203`
//! read by an application, `C42204` emailed and `C42000` for anything else; the newer
//! actions (removable media, cloud sync, browser upload, print, download, cloud share,
//! git push) take the next numbers, `C42205` on, in the order of
//! [`FILE_EVENT_ACTIONS`]. An action the table does not know keeps `C42000`, its own
//! text humanized as name, and the severity of its risk. The legacy generation's
//! `eventType` spellings (`CREATED`, `READ_BY_APP`, ...) map to the same rows, so a
//! replayed legacy export keeps its ids.
//!
//! Owned here: the table, the severity rule and which dotted fields are the common
//! ones (`@timestamp` the time, `user.email` / `user.id` the actor, `source.ip` the
//! source address). Deliberately not here: output keys (`crate::encode`).

use super::json::{self, Member};
use super::{take_time, FastHash, Field, Fields, Record, SourceIps};
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::OnceLock;

/// One `event.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEventAction {
    /// As the Incydr gateway spells it (`file-created`).
    pub name: &'static str,
    /// The legacy generation's `eventType` for the same activity, if it had one.
    pub legacy: Option<&'static str>,
    /// The CEF Device Event Class ID.
    pub class_id: &'static str,
    pub display: &'static str,
    pub category: &'static str,
    /// CEF severity 0-10 when the event carries no `risk.severity`.
    pub severity: u8,
}

const fn a(
    name: &'static str,
    legacy: Option<&'static str>,
    class_id: &'static str,
    display: &'static str,
    category: &'static str,
    severity: u8,
) -> FileEventAction {
    FileEventAction {
        name,
        legacy,
        class_id,
        display,
        category,
        severity,
    }
}

/// The actions c42fwd maps (module doc).
pub const FILE_EVENT_ACTIONS: &[FileEventAction] = &[
    a(
        "file-created",
        Some("CREATED"),
        "C42200",
        "File created",
        "endpoint",
        3,
    ),
    a(
        "file-modified",
        Some("MODIFIED"),
        "C42201",
        "File modified",
        "endpoint",
        3,
    ),
    a(
        "file-deleted",
        Some("DELETED"),
        "C42202",
        "File deleted",
        "endpoint",
        3,
    ),
    a(
        "application-read",
        Some("READ_BY_APP"),
        "C42203",
        "File read by an application",
        "application",
        5,
    ),
    a(
        "file-emailed",
        Some("EMAILED"),
        "C42204",
        "File emailed",
        "email",
        5,
    ),
    a(
        "removable-media-created",
        None,
        "C42205",
        "File created on removable media",
        "removable_media",
        6,
    ),
    a(
        "removable-media-modified",
        None,
        "C42206",
        "File modified on removable media",
        "removable_media",
        6,
    ),
    a(
        "removable-media-deleted",
        None,
        "C42207",
        "File deleted on removable media",
        "removable_media",
        4,
    ),
    a(
        "sync-app-created",
        None,
        "C42208",
        "File created in a cloud sync folder",
        "cloud_sync",
        5,
    ),
    a(
        "sync-app-modified",
        None,
        "C42209",
        "File modified in a cloud sync folder",
        "cloud_sync",
        5,
    ),
    a(
        "sync-app-deleted",
        None,
        "C42210",
        "File deleted from a cloud sync folder",
        "cloud_sync",
        3,
    ),
    a(
        "file-uploaded",
        None,
        "C42211",
        "File uploaded by a browser",
        "browser_upload",
        6,
    ),
    a("file-printed", None, "C42212", "File printed", "print", 5),
    a(
        "file-downloaded",
        None,
        "C42213",
        "File downloaded",
        "download",
        3,
    ),
    a(
        "file-shared",
        None,
        "C42214",
        "File shared from cloud storage",
        "cloud_share",
        6,
    ),
    a(
        "git-push",
        None,
        "C42215",
        "Files pushed with git",
        "git",
        6,
    ),
];

/// Class id of an action the table does not know, or of an event without one.
pub const FILE_EVENT_DEFAULT_CLASS_ID: &str = "C42000";
/// Name of an event without a readable `event.action`.
pub const FILE_EVENT_NAME: &str = "File event";
/// Category of actions the table does not know.
pub const FILE_EVENT_CATEGORY: &str = "file_activity";
/// Severity of an unknown action without `risk.severity`.
pub const FILE_EVENT_DEFAULT_SEVERITY: u8 = 3;

/// CEF severity of each `risk.severity` (the values the API documents).
pub const FILE_EVENT_RISK_SEVERITIES: &[(&str, u8)] = &[
    ("NO_RISK_INDICATED", 1),
    ("LOW", 3),
    ("MODERATE", 5),
    ("HIGH", 8),
    ("CRITICAL", 10),
];

/// The action's row, by its gateway or legacy spelling.
pub fn file_event_action(name: &str) -> Option<&'static FileEventAction> {
    FILE_EVENT_ACTIONS
        .iter()
        .find(|a| a.name == name || a.legacy == Some(name))
}

/// The CEF severity of a `risk.severity` value.
pub fn risk_severity(s: &str) -> Option<u8> {
    FILE_EVENT_RISK_SEVERITIES
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, v)| *v)
}

/// The dotted paths of the documented file event fields, so that a flattened key is
/// a `&'static str` instead of an allocation per field.
const KNOWN_PATHS: &[&str] = &[
    "@timestamp",
    "event.id",
    "event.inserted",
    "event.ingested",
    "event.action",
    "event.shareType",
    "event.observer",
    "event.detectorDisplayName",
    "event.vector",
    "user.email",
    "user.id",
    "user.deviceUid",
    "file.name",
    "file.originalName",
    "file.directory",
    "file.originalDirectory",
    "file.category",
    "file.mimeType",
    "file.mimeTypeByBytes",
    "file.mimeTypeByExtension",
    "file.sizeInBytes",
    "file.owner",
    "file.created",
    "file.modified",
    "file.hash.md5",
    "file.hash.sha256",
    "file.hash.md5Error",
    "file.hash.sha256Error",
    "file.id",
    "file.url",
    "file.directoryId",
    "file.cloudDriveId",
    "file.classifications",
    "file.acquiredFrom",
    "file.changeType",
    "file.archiveId",
    "file.parentArchiveId",
    "file.passwordProtected",
    "report.id",
    "report.name",
    "report.description",
    "report.headers",
    "report.count",
    "report.type",
    "source.category",
    "source.name",
    "source.user.email",
    "source.domain",
    "source.ip",
    "source.privateIp",
    "source.operatingSystem",
    "source.email.sender",
    "source.email.from",
    "source.remoteHostname",
    "source.removableMedia",
    "source.removableMedia.vendor",
    "source.removableMedia.mediaName",
    "source.removableMedia.serialNumber",
    "source.removableMedia.capacity",
    "source.removableMedia.busType",
    "source.removableMedia.name",
    "source.removableMedia.volumeName",
    "source.removableMedia.partitionId",
    "source.tabs",
    "source.accountName",
    "source.accountType",
    "source.domains",
    "source.identifiers",
    "destination.category",
    "destination.name",
    "destination.user.email",
    "destination.ip",
    "destination.privateIp",
    "destination.operatingSystem",
    "destination.printJobName",
    "destination.printerName",
    "destination.printedFilesBackupPath",
    "destination.email.recipients",
    "destination.email.subject",
    "destination.removableMedia",
    "destination.removableMedia.vendor",
    "destination.removableMedia.mediaName",
    "destination.removableMedia.serialNumber",
    "destination.removableMedia.capacity",
    "destination.removableMedia.busType",
    "destination.removableMedia.name",
    "destination.removableMedia.volumeName",
    "destination.removableMedia.partitionId",
    "destination.tabs",
    "destination.accountName",
    "destination.accountType",
    "destination.domains",
    "destination.remoteHostname",
    "destination.identifiers",
    "process.executable",
    "process.owner",
    "process.extension.browser",
    "process.extension.version",
    "process.extension.loggedInUser",
    "risk.score",
    "risk.severity",
    "risk.indicators",
    "risk.trusted",
    "risk.trustReason",
    "risk.untrustedValues.accountNames",
    "risk.untrustedValues.domains",
    "risk.untrustedValues.gitRepositoryUris",
    "risk.untrustedValues.slackWorkspaces",
    "risk.untrustedValues.urlPaths",
    "responseControls.preventativeControl",
    "responseControls.userJustification.reason",
    "responseControls.userJustification.text",
    "git.eventId",
    "git.lastCommitHash",
    "git.repositoryUri",
    "git.repositoryUser",
    "git.repositoryEmail",
    "git.repositoryEndpointPath",
];

fn intern(path: &str) -> Option<&'static str> {
    type Index = HashMap<&'static str, (), BuildHasherDefault<FastHash>>;
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX
        .get_or_init(|| KNOWN_PATHS.iter().map(|p| (*p, ())).collect())
        .get_key_value(path)
        .map(|(k, _)| *k)
}

/// Nesting deeper than this is kept whole at its path (a hostile event cannot make
/// the reader recurse without bound).
const MAX_DEPTH: usize = 6;

/// What the flattening found that is not a field of the record itself.
#[derive(Debug, Default)]
pub(super) struct Seen<'a> {
    pub(super) action: Option<Cow<'a, str>>,
    pub(super) risk_severity: Option<u8>,
    time: bool,
    email: bool,
    user_id: bool,
    ip: bool,
}

/// Reads a whole file event into `rec` in one pass over its text
/// ([`json::scan_object_nested`]): objects are flattened into dotted fields as they are
/// walked, the common keys are taken into the record, the rest is pushed to `fields`.
/// `keep` false: read the common keys only (a syslog header), keep no field.
pub(super) fn read<'a>(
    raw: &'a str,
    rec: &mut Record<'a>,
    seen: &mut Seen<'a>,
    keep: bool,
) -> json::ObjectScan {
    if keep {
        // A file event has a hundred-odd fields: one allocation for all of them instead
        // of the list doubling its way up from its inline dozen.
        rec.fields.reserve(KNOWN_PATHS.len());
    }
    let mut flattener = Flattener {
        rec,
        seen,
        path: String::with_capacity(64),
        opened: [0; MAX_DEPTH],
        keep,
        guesses: Guesses {
            paths: if keep {
                GUESS.with(|g| g.take())
            } else {
                Vec::new()
            },
            nested: 0,
        },
    };
    let scan = json::scan_object_nested(raw, &mut flattener);
    if keep {
        GUESS.with(|g| g.set(flattener.guesses.paths));
    }
    scan
}

/// The walk's state: the dotted path of the object being read.
struct Flattener<'r, 'a> {
    rec: &'r mut Record<'a>,
    seen: &'r mut Seen<'a>,
    /// The path of the innermost open object (`source.removableMedia`), empty at the
    /// top level.
    path: String,
    /// `opened[d]`: the length of `path` before the object opened at depth `d` added
    /// its key, restored when it closes.
    opened: [usize; MAX_DEPTH],
    keep: bool,
    guesses: Guesses,
}

/// The interned paths of the nested fields of the last event read on this thread, in
/// order (`""` where one was not known): the events of a page share their shape, so
/// the `n`th nested field's path is nearly always the one before's, and one comparison
/// finds it instead of a hash lookup ([`intern`]).
struct Guesses {
    paths: Vec<&'static str>,
    /// How many nested fields were met so far.
    nested: usize,
}

/// The most nested fields [`Guesses`] remembers.
const MAX_GUESSES: usize = 512;

thread_local! {
    static GUESS: std::cell::Cell<Vec<&'static str>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Guesses {
    /// The interned text of `path`, the path of the next nested field.
    fn interned(&mut self, path: &str) -> Option<&'static str> {
        let n = self.nested;
        self.nested += 1;
        if let Some(&g) = self.paths.get(n) {
            if g == path {
                return Some(g);
            }
        }
        let p = intern(path);
        match self.paths.get_mut(n) {
            Some(slot) => *slot = p.unwrap_or(""),
            None if n < MAX_GUESSES => self.paths.push(p.unwrap_or("")),
            None => {}
        }
        p
    }
}

impl Flattener<'_, '_> {
    /// Appends `key` to the path; returns the length to truncate back to.
    fn push_key(&mut self, key: &str) -> usize {
        let len = self.path.len();
        if len > 0 {
            self.path.push('.');
        }
        self.path.push_str(key);
        len
    }
}

impl<'a> json::NestedVisitor<'a> for Flattener<'_, 'a> {
    fn open(&mut self, key: &'a str, key_escaped: bool, depth: usize) -> bool {
        // An object nested too deep is a leaf, kept whole.
        if depth >= MAX_DEPTH {
            return false;
        }
        let key = json::decode_inner(key, key_escaped);
        self.opened[depth] = self.push_key(&key);
        true
    }

    fn close(&mut self, depth: usize) {
        if let Some(&len) = self.opened.get(depth) {
            self.path.truncate(len);
        }
    }

    fn leaf(&mut self, m: Member<'a>, depth: usize) {
        let key = json::decode_inner(m.key, m.key_escaped);
        let len = self.push_key(&key);
        let key = if depth == 0 || !self.keep {
            key
        } else {
            match self.guesses.interned(&self.path) {
                Some(p) => Cow::Borrowed(p),
                None => Cow::Owned(self.path.clone()),
            }
        };
        leaf(self.rec, self.seen, &self.path, key, m, self.keep);
        self.path.truncate(len);
    }
}

fn leaf<'a>(
    rec: &mut Record<'a>,
    seen: &mut Seen<'a>,
    path: &str,
    key: Cow<'a, str>,
    m: Member<'a>,
    keep: bool,
) {
    let taken = match path {
        "@timestamp" if !seen.time => {
            seen.time = take_time(rec, m);
            seen.time
        }
        "user.email" if !seen.email => {
            seen.email = set(&mut rec.actor.name, m.value_str());
            seen.email
        }
        "user.id" if !seen.user_id => {
            seen.user_id = set(&mut rec.actor.id, m.value_str());
            seen.user_id
        }
        "source.ip" if !seen.ip => {
            seen.ip = match m.value_str().and_then(SourceIps::parse) {
                // One address: a list stays a field whole (nothing else would keep
                // the addresses after the first).
                Some(ips) if ips.len() == 1 => {
                    rec.source_ips = ips;
                    true
                }
                _ => false,
            };
            seen.ip
        }
        _ => false,
    };
    match path {
        "event.action" if seen.action.is_none() => {
            seen.action = m.value_str().filter(|s| !s.is_empty());
        }
        "risk.severity" if seen.risk_severity.is_none() => {
            seen.risk_severity = m.value_str().and_then(|s| risk_severity(&s));
        }
        _ => {}
    }
    if taken || !keep {
        return;
    }
    push(&mut rec.fields, key, m);
}

fn set<'a>(slot: &mut Option<Cow<'a, str>>, v: Option<Cow<'a, str>>) -> bool {
    match v {
        Some(v) => {
            *slot = Some(v);
            true
        }
        None => false,
    }
}

fn push<'a>(fields: &mut Fields<'a>, key: Cow<'a, str>, m: Member<'a>) {
    fields.push(Field {
        key,
        value: m.value,
        value_escaped: m.value_escaped,
    });
}

/// Sets class id, name, category and severity from what the flattening saw.
pub(super) fn classify<'a>(rec: &mut Record<'a>, seen: Seen<'a>) {
    let known = seen.action.as_deref().and_then(file_event_action);
    rec.class_id = Cow::Borrowed(known.map_or(FILE_EVENT_DEFAULT_CLASS_ID, |a| a.class_id));
    rec.category = known.map_or(FILE_EVENT_CATEGORY, |a| a.category);
    rec.name = match (known, seen.action) {
        (Some(a), _) => Cow::Borrowed(a.display),
        (None, Some(action)) => Cow::Owned(super::humanize_type_name(&action.replace('-', "_"))),
        (None, None) => {
            rec.problems.insert(super::Problems::MISSING_TYPE);
            Cow::Borrowed(FILE_EVENT_NAME)
        }
    };
    rec.severity = seen
        .risk_severity
        .or(known.map(|a| a.severity))
        .unwrap_or(FILE_EVENT_DEFAULT_SEVERITY)
        .min(10);
    if !seen.time {
        rec.problems.insert(super::Problems::MISSING_TIME);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The paths guessed from the last event read on the thread never change what an
    /// event reads as: events of every shape, in turn and in a different thread each,
    /// flatten to the same fields.
    #[test]
    fn the_guessed_paths_never_change_the_fields() {
        use crate::event::{Event, SourceKind};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/file_events");
        let mut texts: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        texts.sort();
        // A shape that shares its first fields with the others and then differs.
        texts.push(
            r#"{"@timestamp":"2026-01-01T00:00:00Z","event":{"id":"x","zz":1,"action":"file-created"},"file":{"q":{"r":"s"}}}"#
                .to_string(),
        );
        assert!(texts.len() > 5);
        let fields = |text: &str| -> Vec<(String, String)> {
            let raw = serde_json::value::RawValue::from_string(text.trim().to_owned()).unwrap();
            let ev = Event::new(SourceKind::FileEvents, raw, chrono::DateTime::UNIX_EPOCH);
            let rec = super::super::normalize(&ev);
            rec.fields
                .iter()
                .map(|f| (f.key.to_string(), f.value.to_string()))
                .collect()
        };
        let alone: Vec<_> = texts
            .iter()
            .map(|t| {
                let t = t.clone();
                std::thread::spawn(move || fields(&t)).join().unwrap()
            })
            .collect();
        for round in 0..3 {
            for (t, want) in texts.iter().zip(&alone).rev() {
                assert_eq!(&fields(t), want, "round {round}");
            }
        }
        assert!(alone.iter().any(|f| f.iter().any(|(k, _)| k == "file.q.r")));
    }

    #[test]
    fn the_table_is_consistent() {
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for a in FILE_EVENT_ACTIONS {
            assert!(names.insert(a.name), "{} twice", a.name);
            assert!(ids.insert(a.class_id), "{} twice", a.class_id);
            assert!(a.severity <= 10);
            assert_eq!(file_event_action(a.name), Some(a));
            if let Some(l) = a.legacy {
                assert_eq!(file_event_action(l), Some(a));
            }
        }
        assert_eq!(
            file_event_action("file-created").unwrap().class_id,
            "C42200"
        );
        assert_eq!(file_event_action("READ_BY_APP").unwrap().class_id, "C42203");
        assert_eq!(file_event_action("EMAILED").unwrap().class_id, "C42204");
        assert_eq!(file_event_action("teleported"), None);
        for p in KNOWN_PATHS {
            assert_eq!(intern(p), Some(*p));
        }
        assert_eq!(intern("file.nonsense"), None);
    }
}
