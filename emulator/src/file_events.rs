//! File Events (`POST /v2/file-events`): what file event `i` says, which events a
//! search selects, and the `pgToken` paging of the answer.
//!
//! Event `i` is a pure function of `(seed, i)`, like the Audit Log: its own timeline
//! orders the events by the time the service *inserted* them (`event.inserted`), the
//! key c42fwd sorts and windows on; `@timestamp` (when it happened on the device) lies
//! before that, mostly by seconds, sometimes by days (a laptop that was offline). An
//! event shows up in searches up to the lag after its insert time. A 10,000,000-event
//! backlog costs no memory: a time range maps to an index range by binary search.
//!
//! Paging follows `docs/api.md`: `pgNum` (1-based) and `pgSize` (at most 10,000) page
//! by offset within the 10,000-result window; a `pgToken` (`""` on the first page)
//! pages by cursor past it, each answer carrying the `nextPgToken` of the next page,
//! absent on the last. The emulator's tokens are stateless: the cursor (the index to
//! go on from), the time of issue and a MAC over both and the query, so a token of
//! another query, a forged one and an expired one are refused with a
//! `INVALID_PAGE_TOKEN` problem (400).
//!
//! What the emulator does not do (`docs/emulator.md`): sorting by anything but
//! `event.inserted` ascending (others answer `ILLEGAL_SORT`), and terms outside
//! [`Term`] (answered `ILLEGAL_VALUE`).

use super::events::HOSTILE;
use super::json::{escape_into, push_str, push_timestamp};
use super::server::{header_str, json_response, Emulator};
use super::timeline::{hash3, Rng, Timeline, NANOS_PER_SEC};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;

/// The route, as counted in the statistics.
pub(crate) const ROUTE: &str = "/v2/file-events";
/// The largest page (`pgSize`) and the offset window of `pgNum` paging.
pub(crate) const MAX_PAGE: u64 = 10_000;

const SALT_CONTENT: u64 = 0xf11e_0001;

/// The values of `event.action` the emulator generates: the endpoint, removable-media,
/// cloud-sync, browser, email, print, cloud-share and git activity of `docs/api.md`.
pub const FILE_EVENT_ACTIONS: &[&str] = &[
    "file-created",
    "file-modified",
    "file-deleted",
    "application-read",
    "file-emailed",
    "removable-media-created",
    "removable-media-modified",
    "removable-media-deleted",
    "sync-app-created",
    "sync-app-modified",
    "sync-app-deleted",
    "file-uploaded",
    "file-printed",
    "file-downloaded",
    "file-shared",
    "git-push",
];

/// `risk.severity` values (the OpenAPI's enum).
pub const RISK_SEVERITIES: &[&str] = &["NO_RISK_INDICATED", "LOW", "MODERATE", "HIGH", "CRITICAL"];

/// Exposure kinds of sharing (`event.shareType`).
const SHARE_TYPES: &[&str] = &[
    "SharedViaLink",
    "IsPublic",
    "OutsideTrustedDomains",
    "SharedToDomain",
];

const FILE_CATEGORIES: &[&str] = &[
    "Document",
    "Spreadsheet",
    "Presentation",
    "Pdf",
    "Image",
    "Archive",
    "SourceCode",
    "Audio",
    "Video",
    "Executable",
];
const EXTENSIONS: &[(&str, &str)] = &[
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("zip", "application/zip"),
    ("rs", "text/x-rust"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("exe", "application/x-msdownload"),
];
const USERS: &[&str] = &[
    "ari.example@example.com",
    "casey@example.com",
    "cody@example.com",
    "mari.departing@example.com",
    "theboss@example.com",
    "contractor+ext@partner.example",
];
const HOSTS: &[&str] = &[
    "Mari's MacBook",
    "DESKTOP-7F3K2L",
    "ari-thinkpad",
    "build-agent-04",
];
const OS: &[&str] = &["Windows 10", "Mac OS X 14.4", "Linux 6.1"];
const DIRECTORIES: &[&str] = &[
    "C:\\Users\\ari\\Documents\\",
    "/Users/mari/Desktop/",
    "/home/casey/src/project/",
    "C:\\Users\\cody\\Downloads\\Q3 \"final\"\\",
    "/Users/mari/Library/CloudStorage/Dropbox/",
];
const BASE_NAMES: &[&str] = &[
    "Q3 sales deck",
    "customer-list",
    "roadmap_2027",
    "payroll",
    "main",
    "design spec v2",
];
const CLOUD: &[(&str, &str)] = &[
    ("Dropbox", "dropbox.com"),
    ("OneDrive", "onedrive.live.com"),
    ("Google Drive", "drive.google.com"),
    ("iCloud", "icloud.com"),
    ("Box", "box.com"),
];
const WEB: &[(&str, &str, &str)] = &[
    ("Social Media", "LinkedIn", "https://www.linkedin.com/feed/"),
    (
        "Webmail",
        "Gmail",
        "https://mail.google.com/mail/u/0/#inbox",
    ),
    (
        "Cloud Storage",
        "WeTransfer",
        "https://wetransfer.com/?q=a|b&c=d e",
    ),
    (
        "Code Repository",
        "GitHub",
        "https://github.com/example/private-repo",
    ),
    ("Messaging", "Slack", "https://app.slack.com/client/T0/C0"),
];
const MEDIA: &[(&str, &str, &str)] = &[
    ("SanDisk", "Cruzer Blade", "USB 3.0 Bus"),
    ("Kingston", "DataTraveler", "USB 2.0 Bus"),
    ("Samsung", "T7 Shield", "USB 3.2 Bus"),
];
const INDICATORS: &[(&str, u64)] = &[
    ("Remote activity", 2),
    ("Removable media", 5),
    ("Personal cloud storage", 6),
    ("Source code", 4),
    ("File mismatch", 3),
    ("Departing employee", 8),
    ("Off hours", 1),
];

/// What the filters look at, for one event, without rendering it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) inserted_ns: i64,
    pub(crate) timestamp_ns: i64,
    pub(crate) action: usize,
    pub(crate) user: usize,
    pub(crate) category: usize,
    pub(crate) score: u64,
    pub(crate) seed: u64,
}

impl Head {
    fn severity(&self) -> &'static str {
        RISK_SEVERITIES[severity_of(self.score)]
    }
    fn action(&self) -> &'static str {
        FILE_EVENT_ACTIONS[self.action]
    }
    fn destination_category(&self) -> Option<&'static str> {
        match self.action() {
            "removable-media-created" | "removable-media-modified" | "removable-media-deleted" => {
                Some("Removable Media")
            }
            "sync-app-created" | "sync-app-modified" | "sync-app-deleted" | "file-shared" => {
                Some("Cloud Storage")
            }
            "file-uploaded" | "application-read" | "git-push" => {
                Some(WEB[(self.seed % WEB.len() as u64) as usize].0)
            }
            "file-emailed" => Some("Email"),
            "file-printed" => Some("Printer"),
            _ => None,
        }
    }
}

fn severity_of(score: u64) -> usize {
    match score {
        0 => 0,
        1..=3 => 1,
        4..=6 => 2,
        7..=9 => 3,
        _ => 4,
    }
}

/// The file events of the tenant.
pub(crate) struct FileEventLog {
    seed: u64,
    pub(crate) timeline: Timeline,
    /// The per-tenant part of event ids.
    tenant_part: String,
    token_key: u64,
}

impl FileEventLog {
    pub(crate) fn new(seed: u64, timeline: Timeline, token_key: u64) -> Self {
        let mut rng = Rng::new(hash3(seed, SALT_CONTENT, u64::MAX));
        FileEventLog {
            seed,
            timeline,
            tenant_part: super::events::uuid(&mut rng),
            token_key,
        }
    }

    fn rng(&self, i: u64) -> Rng {
        Rng::new(hash3(self.seed, SALT_CONTENT, i))
    }

    pub(crate) fn head(&self, i: u64) -> Head {
        let mut rng = self.rng(i);
        let action = rng.below(FILE_EVENT_ACTIONS.len() as u64) as usize;
        let user = rng.below(USERS.len() as u64) as usize;
        let category = rng.below(FILE_CATEGORIES.len() as u64) as usize;
        let score = match rng.below(10) {
            0..=4 => 0,
            5..=7 => 1 + rng.below(6),
            _ => 7 + rng.below(8),
        };
        let seed = rng.next_u64();
        let inserted_ns = self.timeline.occurred_ns(i);
        // Mostly seconds between the device seeing it and the service inserting it;
        // one in twenty from a device that was offline for hours or days.
        let delay = if rng.below(20) == 0 {
            (1 + rng.below(72 * 3600)) * NANOS_PER_SEC as u64
        } else {
            rng.below(90 * NANOS_PER_SEC as u64)
        };
        Head {
            inserted_ns,
            timestamp_ns: inserted_ns.saturating_sub(delay as i64),
            action,
            user,
            category,
            score,
            seed,
        }
    }

    /// The id of event `i`: unique per event (`0_<tenant>_<device>_<file>_<n>`).
    fn id(&self, i: u64, h: &Head, out: &mut String) {
        out.push_str("0_");
        out.push_str(&self.tenant_part);
        out.push('_');
        push_u64(out, h.seed >> 1);
        out.push('_');
        push_u64(out, hash3(self.seed, 7, i) >> 1);
        out.push('_');
        push_u64(out, i);
    }

    /// The id of event `i` as a string (tests).
    pub(crate) fn id_of(&self, i: u64) -> String {
        let mut s = String::new();
        self.id(i, &self.head(i), &mut s);
        s
    }

    /// Appends event `i` as the JSON object the API returns.
    pub(crate) fn render(&self, i: u64, out: &mut String) {
        let h = self.head(i);
        let mut rng = Rng::new(h.seed);
        let action = h.action();
        let (ext, mime) = EXTENSIONS[h.category % EXTENSIONS.len()];
        let precision = self.timeline.occurred(i).1;
        out.push_str("{\"@timestamp\":\"");
        push_timestamp(out, h.timestamp_ns, precision);
        out.push_str("\",\"event\":{\"id\":\"");
        self.id(i, &h, out);
        out.push_str("\",\"inserted\":\"");
        push_timestamp(out, h.inserted_ns, precision);
        out.push_str("\",\"ingested\":\"");
        push_timestamp(
            out,
            h.inserted_ns - (h.inserted_ns - h.timestamp_ns) / 2,
            precision,
        );
        out.push_str("\",\"action\":");
        push_str(out, action);
        let cloud_observed = action == "file-shared";
        out.push_str(",\"observer\":");
        push_str(
            out,
            if cloud_observed {
                "GoogleDrive"
            } else {
                "Endpoint"
            },
        );
        out.push_str(",\"shareType\":[");
        if cloud_observed {
            let n = 1 + rng.below(2) as usize;
            let first = rng.below(SHARE_TYPES.len() as u64) as usize;
            for k in 0..n {
                if k > 0 {
                    out.push(',');
                }
                push_str(out, SHARE_TYPES[(first + k) % SHARE_TYPES.len()]);
            }
        }
        out.push_str("],\"detectorDisplayName\":null,\"vector\":");
        match action {
            "git-push" => out.push_str("\"GIT_PUSH\""),
            _ => out.push_str("null"),
        }
        // user
        out.push_str("},\"user\":{\"email\":");
        push_str(out, USERS[h.user]);
        out.push_str(",\"id\":\"");
        push_u64(out, 1_000_000 + h.user as u64 * 7919);
        out.push_str("\",\"deviceUid\":\"");
        push_u64(out, 900_000_000 + (h.seed % 97));
        out.push_str("\"}");
        // file
        let hostile = rng.below(100) < 8;
        out.push_str(",\"file\":{\"name\":\"");
        if hostile {
            escape_into(out, rng.pick_str(HOSTILE));
        } else {
            escape_into(out, rng.pick_str(BASE_NAMES));
        }
        out.push('.');
        out.push_str(ext);
        out.push_str("\",\"originalName\":null,\"directory\":");
        if cloud_observed {
            out.push_str("null");
        } else if hostile && rng.chance(50) {
            out.push('"');
            escape_into(out, "C:\\Users\\ari\\");
            escape_into(out, rng.pick_str(HOSTILE));
            escape_into(out, "\\");
            out.push('"');
        } else {
            push_str(out, rng.pick_str(DIRECTORIES));
        }
        out.push_str(",\"originalDirectory\":null,\"category\":");
        push_str(out, FILE_CATEGORIES[h.category]);
        out.push_str(",\"mimeTypeByBytes\":");
        push_str(out, mime);
        out.push_str(",\"mimeTypeByExtension\":");
        push_str(out, mime);
        out.push_str(",\"sizeInBytes\":");
        push_u64(out, rng.below(50_000_000));
        out.push_str(",\"owner\":");
        push_str(out, USERS[h.user].split('@').next().unwrap_or("owner"));
        out.push_str(",\"created\":\"");
        push_timestamp(
            out,
            h.timestamp_ns - (rng.below(86_400 * 30) as i64) * NANOS_PER_SEC,
            precision,
        );
        out.push_str("\",\"modified\":\"");
        push_timestamp(out, h.timestamp_ns, precision);
        out.push_str("\",\"hash\":{");
        if action == "file-deleted" && rng.chance(50) {
            out.push_str("\"md5\":null,\"sha256\":null,\"md5Error\":\"NotAvailable\",\"sha256Error\":\"NotAvailable\"");
        } else {
            out.push_str("\"md5\":\"");
            for _ in 0..2 {
                push_hex(out, rng.next_u64());
            }
            out.push_str("\",\"sha256\":\"");
            for _ in 0..4 {
                push_hex(out, rng.next_u64());
            }
            out.push_str("\",\"md5Error\":null,\"sha256Error\":null");
        }
        out.push_str("},\"id\":");
        if cloud_observed {
            out.push('"');
            push_hex(out, rng.next_u64());
            out.push_str("\",\"url\":\"https://drive.google.com/file/d/");
            push_hex(out, rng.next_u64());
            out.push_str("/view\"");
        } else {
            out.push_str("null,\"url\":null");
        }
        out.push_str(",\"directoryId\":[],\"cloudDriveId\":null,\"classifications\":[");
        if rng.chance(20) {
            out.push_str(
                "{\"value\":\"Confidential\",\"vendor\":\"MICROSOFT INFORMATION PROTECTION\"}",
            );
        }
        out.push_str("],\"acquiredFrom\":[],\"changeType\":");
        push_str(
            out,
            match action {
                a if a.ends_with("created") => "CREATED",
                a if a.ends_with("deleted") => "DELETED",
                _ => "MODIFIED",
            },
        );
        out.push_str(",\"archiveId\":null,\"parentArchiveId\":null,\"passwordProtected\":");
        out.push_str(if ext == "zip" && rng.chance(30) {
            "true"
        } else {
            "false"
        });
        out.push('}');
        // source: the device
        let host = rng.pick_str(HOSTS);
        out.push_str(",\"source\":{\"category\":");
        if action == "file-downloaded" {
            push_str(out, "Cloud Storage");
        } else {
            out.push_str("null");
        }
        out.push_str(",\"name\":");
        push_str(out, host);
        out.push_str(",\"user\":{\"email\":[]},\"domain\":");
        push_str(
            out,
            &format!("{}.corp.example", host.replace(['\'', ' '], "-")),
        );
        out.push_str(",\"ip\":");
        match rng.below(10) {
            0 => push_str(out, "2001:db8::1f"),
            1 => out.push_str("null"),
            _ => push_str(out, &format!("203.0.113.{}", 1 + rng.below(250))),
        }
        out.push_str(",\"privateIp\":[");
        push_str(
            out,
            &format!("10.1.{}.{}", rng.below(255), 1 + rng.below(250)),
        );
        out.push_str(",\"fe80::1\"],\"operatingSystem\":");
        push_str(out, rng.pick_str(OS));
        out.push_str(
            ",\"email\":{\"sender\":null,\"from\":null},\"removableMedia\":null,\"tabs\":[",
        );
        if action == "file-downloaded" {
            out.push_str("{\"title\":\"Shared with me - Google Drive\",\"url\":\"https://drive.google.com/drive/shared-with-me\",\"titleError\":null,\"urlError\":null}");
        }
        out.push_str(
            "],\"accountName\":null,\"accountType\":null,\"domains\":[],\"remoteHostname\":null}",
        );
        // destination
        out.push_str(",\"destination\":{\"category\":");
        match h.destination_category() {
            Some(c) => push_str(out, c),
            None => out.push_str("null"),
        }
        let cloud = CLOUD[(h.seed % CLOUD.len() as u64) as usize];
        let web = WEB[(h.seed % WEB.len() as u64) as usize];
        out.push_str(",\"name\":");
        match action {
            a if a.starts_with("sync-app") || a == "file-shared" => push_str(out, cloud.0),
            "file-uploaded" | "application-read" | "git-push" => push_str(out, web.1),
            "file-emailed" => push_str(out, "Outlook"),
            "file-printed" => push_str(out, "OfficeJet 9020"),
            a if a.starts_with("removable-media") => {
                push_str(out, MEDIA[h.seed as usize % MEDIA.len()].1)
            }
            _ => out.push_str("null"),
        }
        out.push_str(",\"user\":{\"email\":[");
        if cloud_observed {
            push_str(out, "outsider@gmail.example");
        }
        out.push_str("]},\"ip\":null,\"privateIp\":[],\"operatingSystem\":null,\"printJobName\":");
        if action == "file-printed" {
            out.push('"');
            escape_into(out, "Microsoft Word - ");
            escape_into(out, rng.pick_str(BASE_NAMES));
            out.push_str(
                "\",\"printerName\":\"OfficeJet 9020\",\"printedFilesBackupPath\":\"/printed/",
            );
            push_hex(out, h.seed);
            out.push('"');
        } else {
            out.push_str("null,\"printerName\":null,\"printedFilesBackupPath\":null");
        }
        out.push_str(",\"email\":{\"recipients\":");
        if action == "file-emailed" {
            out.push_str(
                "[\"partner@external.example\",\"me.personal@gmail.example\"],\"subject\":",
            );
            if hostile {
                push_str(out, rng.pick_str(HOSTILE));
            } else {
                push_str(out, "Important business documents");
            }
        } else {
            out.push_str("null,\"subject\":null");
        }
        out.push_str("},\"removableMedia\":");
        if action.starts_with("removable-media") {
            let (vendor, media, bus) = MEDIA[h.seed as usize % MEDIA.len()];
            out.push_str("{\"vendor\":");
            push_str(out, vendor);
            out.push_str(",\"name\":\"JUMPDRIVE\",\"serialNumber\":\"");
            push_hex(out, h.seed);
            out.push_str("\",\"capacity\":");
            push_u64(out, 15_631_122_432u64 << (h.seed % 3));
            out.push_str(",\"busType\":");
            push_str(out, bus);
            out.push_str(",\"mediaName\":");
            push_str(out, media);
            out.push_str(",\"volumeName\":[\"MY_FILES\"],\"partitionId\":[\"disk2s1\"]}");
        } else {
            out.push_str("null");
        }
        out.push_str(",\"tabs\":[");
        if matches!(action, "file-uploaded" | "git-push") {
            out.push_str("{\"title\":");
            push_str(out, web.1);
            out.push_str(",\"url\":");
            push_str(out, web.2);
            out.push_str(",\"titleError\":null,\"urlError\":null}");
        }
        out.push_str("],\"accountName\":");
        if action.starts_with("sync-app") {
            push_str(out, USERS[h.user]);
            out.push_str(",\"accountType\":");
            push_str(
                out,
                if h.seed % 2 == 0 {
                    "PERSONAL"
                } else {
                    "BUSINESS"
                },
            );
        } else {
            out.push_str("null,\"accountType\":null");
        }
        out.push_str(",\"domains\":[");
        match action {
            a if a.starts_with("sync-app") || a == "file-shared" => push_str(out, cloud.1),
            "file-uploaded" | "git-push" => {
                push_str(out, web.2.split('/').nth(2).unwrap_or("example.com"))
            }
            _ => {}
        }
        out.push_str("],\"remoteHostname\":null}");
        // process
        out.push_str(",\"process\":{\"executable\":");
        match action {
            "file-uploaded" | "file-downloaded" => push_str(
                out,
                "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
            ),
            "application-read" => push_str(out, "/Applications/Slack.app/Contents/MacOS/Slack"),
            "git-push" => push_str(out, "/usr/bin/git"),
            a if a.starts_with("sync-app") => push_str(out, "Dropbox.exe"),
            _ => out.push_str("null"),
        }
        out.push_str(",\"owner\":");
        push_str(out, USERS[h.user].split('@').next().unwrap_or("owner"));
        out.push_str(",\"extension\":{\"browser\":null,\"version\":null,\"loggedInUser\":null}}");
        // risk
        out.push_str(",\"risk\":{\"score\":");
        push_u64(out, h.score);
        out.push_str(",\"severity\":");
        push_str(out, h.severity());
        out.push_str(",\"indicators\":[");
        if h.score > 0 {
            let (name, weight) = INDICATORS[(h.seed % INDICATORS.len() as u64) as usize];
            out.push_str("{\"name\":");
            push_str(out, name);
            out.push_str(",\"weight\":");
            push_u64(out, weight);
            out.push('}');
        }
        out.push_str("],\"trusted\":");
        out.push_str(if h.score == 0 { "true" } else { "false" });
        out.push_str(",\"trustReason\":");
        if h.score == 0 {
            push_str(out, "TRUSTED_DOMAIN_BROWSER_URL");
        } else {
            out.push_str("null");
        }
        out.push_str(",\"untrustedValues\":{\"accountNames\":[],\"domains\":[],\"gitRepositoryUris\":[],\"slackWorkspaces\":[],\"urlPaths\":[]}}");
        // git
        out.push_str(",\"git\":{\"eventId\":null,\"lastCommitHash\":");
        if action == "git-push" {
            out.push('"');
            push_hex(out, h.seed);
            push_hex(out, rng.next_u64());
            out.push_str("\",\"repositoryUri\":\"git@github.com:example/private-repo.git\",\"repositoryUser\":\"ari-example\",\"repositoryEmail\":");
            push_str(out, USERS[h.user]);
            out.push_str(",\"repositoryEndpointPath\":\"/home/ari/src/private-repo\"}");
        } else {
            out.push_str("null,\"repositoryUri\":null,\"repositoryUser\":null,\"repositoryEmail\":null,\"repositoryEndpointPath\":null}");
        }
        out.push_str(",\"report\":{\"id\":null,\"name\":null,\"description\":null,\"headers\":[],\"count\":null,\"type\":null}");
        out.push_str(",\"responseControls\":{\"preventativeControl\":null,\"userJustification\":{\"reason\":null,\"text\":null}}}");
    }

    /// The index range of events inserted in `[start_ns, end_ns)`.
    pub(crate) fn index_range(&self, start_ns: i64, end_ns: i64) -> std::ops::Range<u64> {
        let lo = self.timeline.first_at_or_after(start_ns);
        let hi = self.timeline.first_at_or_after(end_ns).max(lo);
        lo..hi
    }

    fn token(&self, query_hash: u64, pos: u64, issued_s: i64) -> String {
        let mac = hash3(self.token_key ^ query_hash, issued_s as u64, pos);
        format!("{issued_s}_{pos}_{mac:016x}")
    }

    /// The cursor of `token`, if it is one of ours for this query and not expired.
    fn cursor(&self, token: &str, query_hash: u64, now_s: i64, ttl_s: i64) -> Result<u64, String> {
        let mut parts = token.splitn(3, '_');
        let (Some(a), Some(b), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("pgToken is not a page token".into());
        };
        let (Ok(issued), Ok(pos)) = (a.parse::<i64>(), b.parse::<u64>()) else {
            return Err("pgToken is not a page token".into());
        };
        if self.token(query_hash, pos, issued) != format!("{a}_{b}_{c}") {
            return Err("pgToken does not belong to this query".into());
        }
        if now_s.saturating_sub(issued) > ttl_s {
            return Err("pgToken has expired; start the search again with an empty pgToken".into());
        }
        Ok(pos)
    }
}

fn push_u64(out: &mut String, v: u64) {
    use std::fmt::Write as _;
    let _ = write!(out, "{v}");
}

fn push_hex(out: &mut String, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for k in (0..16).rev() {
        out.push(HEX[((v >> (k * 4)) & 0xf) as usize] as char);
    }
}

// ---- the query ----

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Body_ {
    group_clause: Option<String>,
    groups: Option<Vec<GroupBody>>,
    pg_num: Option<i64>,
    pg_size: Option<i64>,
    pg_token: Option<String>,
    srt_dir: Option<String>,
    srt_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GroupBody {
    filter_clause: Option<String>,
    filters: Option<Vec<FilterBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FilterBody {
    term: Option<String>,
    operator: Option<String>,
    value: Option<Value>,
}

/// The terms the emulator can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Inserted,
    Timestamp,
    Action,
    Id,
    UserEmail,
    FileCategory,
    RiskSeverity,
    RiskScore,
    DestinationCategory,
    Observer,
}

impl Term {
    fn parse(s: &str) -> Option<Term> {
        Some(match s {
            "event.inserted" => Term::Inserted,
            "@timestamp" => Term::Timestamp,
            "event.action" => Term::Action,
            "event.id" => Term::Id,
            "user.email" => Term::UserEmail,
            "file.category" => Term::FileCategory,
            "risk.severity" => Term::RiskSeverity,
            "risk.score" => Term::RiskScore,
            "destination.category" => Term::DestinationCategory,
            "event.observer" => Term::Observer,
            _ => return None,
        })
    }
    fn is_time(self) -> bool {
        matches!(self, Term::Inserted | Term::Timestamp)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Is,
    IsNot,
    IsAny,
    IsNone,
    OnOrAfter,
    OnOrBefore,
    LessThan,
    GreaterThan,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone)]
struct Filter {
    term: Term,
    op: Op,
    values: Vec<String>,
    /// Times and numbers, read once.
    number: i64,
}

#[derive(Debug, Clone)]
struct Group {
    and: bool,
    filters: Vec<Filter>,
}

/// A parsed search.
#[derive(Debug, Clone)]
pub(crate) struct Search {
    and: bool,
    groups: Vec<Group>,
    pub(crate) page_size: u64,
    /// 1-based.
    pub(crate) page_num: u64,
    pub(crate) token: Option<String>,
    /// The hash of everything but the paging position: a token is for one query only.
    hash: u64,
    /// The insert-time range every result must lie in (from AND-ed filters).
    start_ns: i64,
    end_ns: i64,
    /// Every filter is captured by the range: no per-event check needed.
    range_only: bool,
}

fn time_value(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt()),
        Value::Number(n) => n.as_i64().map(|ms| ms.saturating_mul(1_000_000)),
        _ => None,
    }
}

/// A problem answer: `{"fileEvents":[],"problems":[{type, description}],"totalCount":0}`.
pub(crate) fn problem(status: StatusCode, kind: &str, description: &str) -> Response {
    json_response(
        status,
        serde_json::json!({
            "fileEvents": [],
            "nextPgToken": null,
            "problems": [{"type": kind, "description": description}],
            "totalCount": 0,
        }),
    )
}

fn parse_search(body: &[u8]) -> Result<Search, Box<Response>> {
    let bad = |kind: &str, m: String| Box::new(problem(StatusCode::BAD_REQUEST, kind, &m));
    let b: Body_ = serde_json::from_slice(body)
        .map_err(|e| bad("UNEXPECTED_VALUE", format!("invalid search body: {e}")))?;
    let and = match b.group_clause.as_deref() {
        None | Some("AND") => true,
        Some("OR") => false,
        Some(o) => {
            return Err(bad(
                "ILLEGAL_VALUE",
                format!("groupClause {o:?} is not AND or OR"),
            ))
        }
    };
    match (b.srt_key.as_deref(), b.srt_dir.as_deref()) {
        (None | Some("event.inserted"), None | Some("asc")) => {}
        (k, d) => {
            return Err(bad(
                "ILLEGAL_SORT",
                format!("the emulator sorts by event.inserted asc only, not {k:?} {d:?}"),
            ))
        }
    }
    let page_size = b.pg_size.unwrap_or(100);
    if !(1..=MAX_PAGE as i64).contains(&page_size) {
        return Err(bad(
            "INVALID_PAGE_SIZE",
            format!("pgSize must be 1 to {MAX_PAGE}, got {page_size}"),
        ));
    }
    let page_num = b.pg_num.unwrap_or(1);
    if page_num < 1 {
        return Err(bad(
            "INVALID_PAGE_NUMBER",
            format!("pgNum is 1-based, got {page_num}"),
        ));
    }
    let mut groups = Vec::new();
    let mut hash_text = format!("{and}|{page_size}|");
    for g in b.groups.unwrap_or_default() {
        let gand = match g.filter_clause.as_deref() {
            None | Some("AND") => true,
            Some("OR") => false,
            Some(o) => {
                return Err(bad(
                    "ILLEGAL_VALUE",
                    format!("filterClause {o:?} is not AND or OR"),
                ))
            }
        };
        let mut filters = Vec::new();
        for f in g.filters.unwrap_or_default() {
            let term_text = f.term.unwrap_or_default();
            let term = Term::parse(&term_text).ok_or_else(|| {
                bad(
                    "ILLEGAL_VALUE",
                    format!("the emulator cannot filter on term {term_text:?}"),
                )
            })?;
            let op_text = f.operator.unwrap_or_default();
            let op = match op_text.as_str() {
                "IS" => Op::Is,
                "IS_NOT" => Op::IsNot,
                "IS_ANY" => Op::IsAny,
                "IS_NONE" => Op::IsNone,
                "ON_OR_AFTER" => Op::OnOrAfter,
                "ON_OR_BEFORE" => Op::OnOrBefore,
                "LESS_THAN" => Op::LessThan,
                "GREATER_THAN" => Op::GreaterThan,
                "EXISTS" => Op::Exists,
                "DOES_NOT_EXIST" => Op::DoesNotExist,
                o => {
                    return Err(bad(
                        "ILLEGAL_OPERATOR",
                        format!("operator {o:?} is not supported for {term_text}"),
                    ))
                }
            };
            let value = f.value.unwrap_or(Value::Null);
            let values: Vec<String> = match &value {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect(),
                Value::Null => vec![],
                v => vec![v.to_string()],
            };
            let number = if term.is_time() {
                match op {
                    Op::OnOrAfter | Op::OnOrBefore | Op::LessThan | Op::GreaterThan => {
                        time_value(&value).ok_or_else(|| {
                            bad(
                                "ILLEGAL_VALUE",
                                format!("{term_text} needs an ISO-8601 time, got {value}"),
                            )
                        })?
                    }
                    _ => 0,
                }
            } else {
                values.first().and_then(|v| v.parse().ok()).unwrap_or(0)
            };
            hash_text.push_str(&format!("{term_text}/{op_text}/{value};"));
            filters.push(Filter {
                term,
                op,
                values,
                number,
            });
        }
        hash_text.push('|');
        groups.push(Group { and: gand, filters });
    }
    // The insert-time range: from filters that every result must pass.
    let (mut start_ns, mut end_ns) = (i64::MIN, i64::MAX);
    let mut range_only = true;
    let must = and || groups.len() <= 1;
    for g in &groups {
        let each_must = must && (g.and || g.filters.len() <= 1);
        for f in &g.filters {
            let captured = each_must
                && f.term == Term::Inserted
                && matches!(
                    f.op,
                    Op::OnOrAfter | Op::OnOrBefore | Op::LessThan | Op::GreaterThan
                );
            if captured {
                match f.op {
                    Op::OnOrAfter => start_ns = start_ns.max(f.number),
                    Op::GreaterThan => start_ns = start_ns.max(f.number.saturating_add(1)),
                    Op::OnOrBefore => end_ns = end_ns.min(f.number.saturating_add(1)),
                    _ => end_ns = end_ns.min(f.number),
                }
            } else {
                range_only = false;
            }
        }
    }
    Ok(Search {
        and,
        groups,
        page_size: page_size as u64,
        page_num: page_num as u64,
        token: b.pg_token,
        hash: hash3(0x5ea7c4, 0, xxhash(&hash_text)),
        start_ns,
        end_ns,
        range_only,
    })
}

fn xxhash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

impl Filter {
    fn matches(&self, log: &FileEventLog, i: u64, h: &Head) -> bool {
        let time = |t: i64| match self.op {
            Op::OnOrAfter => t >= self.number,
            Op::OnOrBefore => t <= self.number,
            Op::LessThan => t < self.number,
            Op::GreaterThan => t > self.number,
            Op::Exists => true,
            Op::DoesNotExist => false,
            _ => false,
        };
        let text = |v: Option<&str>| match self.op {
            Op::Is | Op::IsAny => v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::IsNot | Op::IsNone => !v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            _ => false,
        };
        match self.term {
            Term::Inserted => time(h.inserted_ns),
            Term::Timestamp => time(h.timestamp_ns),
            Term::Action => text(Some(h.action())),
            Term::Id => text(Some(&log.id_of(i))),
            Term::UserEmail => text(Some(USERS[h.user])),
            Term::FileCategory => text(Some(FILE_CATEGORIES[h.category])),
            Term::RiskSeverity => text(Some(h.severity())),
            Term::DestinationCategory => text(h.destination_category()),
            Term::Observer => text(Some(if h.action() == "file-shared" {
                "GoogleDrive"
            } else {
                "Endpoint"
            })),
            Term::RiskScore => {
                let s = h.score as i64;
                match self.op {
                    Op::LessThan => s < self.number,
                    Op::GreaterThan => s > self.number,
                    _ => text(Some(&h.score.to_string())),
                }
            }
        }
    }
}

impl Search {
    fn matches(&self, log: &FileEventLog, i: u64) -> bool {
        if self.range_only {
            return true;
        }
        let h = log.head(i);
        let group = |g: &Group| {
            if g.filters.is_empty() {
                return true;
            }
            if g.and {
                g.filters.iter().all(|f| f.matches(log, i, &h))
            } else {
                g.filters.iter().any(|f| f.matches(log, i, &h))
            }
        };
        if self.groups.is_empty() {
            true
        } else if self.and {
            self.groups.iter().all(group)
        } else {
            self.groups.iter().any(group)
        }
    }
}

/// The events a search at `now_ns` selects, by index.
struct Selected<'a> {
    log: &'a FileEventLog,
    search: &'a Search,
    lo: u64,
    /// `[lo, full_end)` are all visible.
    full_end: u64,
    scan_end: u64,
    now_ns: i64,
}

impl<'a> Selected<'a> {
    fn new(log: &'a FileEventLog, search: &'a Search, now_ns: i64) -> Self {
        let tl = &log.timeline;
        let lo = if search.start_ns == i64::MIN {
            0
        } else {
            tl.first_at_or_after(search.start_ns)
        };
        let hi = if search.end_ns == i64::MAX {
            tl.end()
        } else {
            tl.first_at_or_after(search.end_ns)
        };
        let k_now = tl.first_after(now_ns);
        let k_full = tl.first_after(now_ns.saturating_sub(tl.lag_ns()));
        let scan_end = hi.min(k_now).max(lo);
        let full_end = k_full.min(scan_end).max(lo);
        Selected {
            log,
            search,
            lo,
            full_end,
            scan_end,
            now_ns,
        }
    }

    fn accept(&self, i: u64) -> bool {
        (i < self.full_end || self.log.timeline.visible(i, self.now_ns))
            && self.search.matches(self.log, i)
    }

    fn count(&self) -> u64 {
        if self.search.range_only {
            let tail = (self.full_end..self.scan_end)
                .filter(|&i| self.log.timeline.visible(i, self.now_ns))
                .count() as u64;
            (self.full_end - self.lo) + tail
        } else {
            (self.lo..self.scan_end).filter(|&i| self.accept(i)).count() as u64
        }
    }

    /// The position of result number `skip`.
    fn seek(&self, skip: u64) -> u64 {
        let mut pos = self.lo;
        let mut skip = skip;
        if self.search.range_only {
            let direct = skip.min(self.full_end - self.lo);
            pos += direct;
            skip -= direct;
        }
        while skip > 0 {
            match self.next(&mut pos) {
                Some(_) => skip -= 1,
                None => break,
            }
        }
        pos
    }

    fn next(&self, pos: &mut u64) -> Option<u64> {
        *pos = (*pos).max(self.lo);
        while *pos < self.scan_end {
            let i = *pos;
            *pos += 1;
            if self.accept(i) {
                return Some(i);
            }
        }
        None
    }
}

/// How many bytes of events go into one body chunk.
const CHUNK: usize = 64 * 1024;

/// Serves one `POST /v2/file-events` request (admitted already).
pub(crate) fn search(st: &Arc<Emulator>, headers: &HeaderMap, body: &[u8]) -> Response {
    let _ = header_str(headers, header::ACCEPT.as_str());
    let search = match parse_search(body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let log = &st.file_events;
    let now_ns = st.clock.now_ns();
    let now_s = now_ns.div_euclid(NANOS_PER_SEC);
    let sel = Selected::new(log, &search, now_ns);
    let ttl_s = st.opts.file_event_token_ttl.as_secs() as i64;
    // Where this page starts, and whether it hands out a next token.
    let (mut pos, tokens) = match search.token.as_deref() {
        None => {
            let offset = (search.page_num - 1).saturating_mul(search.page_size);
            // The offset window: pages by number stop at 10,000 results.
            if offset.saturating_add(search.page_size) > MAX_PAGE {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PAGE_NUMBER",
                    &format!(
                        "pgNum {} with pgSize {} reaches past the {MAX_PAGE}-result window; page with pgToken instead",
                        search.page_num, search.page_size
                    ),
                );
            }
            (sel.seek(offset), false)
        }
        Some("") => (sel.lo, true),
        Some(t) => match log.cursor(t, search.hash, now_s, ttl_s) {
            Ok(p) => (p, true),
            Err(m) => return problem(StatusCode::BAD_REQUEST, "INVALID_PAGE_TOKEN", &m),
        },
    };
    let total = sel.count();
    let mut picked = Vec::with_capacity(search.page_size.min(MAX_PAGE) as usize);
    while (picked.len() as u64) < search.page_size {
        match sel.next(&mut pos) {
            Some(i) => picked.push(i),
            None => break,
        }
    }
    let more = {
        let mut p = pos;
        sel.next(&mut p).is_some()
    };
    let mut prefix = String::from("{\"totalCount\":");
    push_u64(&mut prefix, total);
    if tokens && more {
        prefix.push_str(",\"nextPgToken\":\"");
        prefix.push_str(&log.token(search.hash, pos, now_s));
        prefix.push('"');
    }
    prefix.push_str(",\"problems\":[],\"fileEvents\":[");
    st.faults.count_events(ROUTE, picked.len() as u64);
    let chunks = Chunks {
        st: st.clone(),
        picked,
        next: 0,
        prefix: Some(prefix),
        done: false,
    };
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

struct Chunks {
    st: Arc<Emulator>,
    picked: Vec<u64>,
    next: usize,
    prefix: Option<String>,
    done: bool,
}

impl Iterator for Chunks {
    type Item = Result<Bytes, Infallible>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut out = self.prefix.take().unwrap_or_default();
        while out.len() < CHUNK && self.next < self.picked.len() {
            if self.next > 0 {
                out.push(',');
            }
            self.st.file_events.render(self.picked[self.next], &mut out);
            self.next += 1;
        }
        if self.next >= self.picked.len() {
            out.push_str("]}");
            self.done = true;
        }
        Some(Ok(Bytes::from(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000 * NANOS_PER_SEC;

    fn log(backlog: u64) -> FileEventLog {
        FileEventLog::new(
            7,
            Timeline::new(7, T0, backlog, 3_600 * NANOS_PER_SEC, 0.0, 0),
            1,
        )
    }

    #[test]
    fn every_event_is_json_with_a_unique_id_and_every_action_occurs() {
        let l = log(3_000);
        let mut ids = std::collections::HashSet::new();
        let mut actions = std::collections::HashSet::new();
        let mut severities = std::collections::HashSet::new();
        let mut hostile = 0;
        for i in 0..3_000 {
            let mut s = String::new();
            l.render(i, &mut s);
            let v: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
            assert!(ids.insert(v["event"]["id"].as_str().unwrap().to_owned()));
            actions.insert(v["event"]["action"].as_str().unwrap().to_owned());
            severities.insert(v["risk"]["severity"].as_str().unwrap().to_owned());
            let name = v["file"]["name"].as_str().unwrap();
            if name.contains(['\n', '|', '"', '\\', '=']) {
                hostile += 1;
            }
            let inserted =
                chrono::DateTime::parse_from_rfc3339(v["event"]["inserted"].as_str().unwrap())
                    .unwrap();
            let at =
                chrono::DateTime::parse_from_rfc3339(v["@timestamp"].as_str().unwrap()).unwrap();
            assert!(at <= inserted, "{s}");
        }
        assert_eq!(actions.len(), FILE_EVENT_ACTIONS.len());
        assert_eq!(severities.len(), RISK_SEVERITIES.len());
        assert!(hostile > 10, "{hostile}");
    }

    #[test]
    fn tokens_are_bound_to_their_query_and_expire() {
        let l = log(10);
        let t = l.token(5, 42, 1_000);
        assert_eq!(l.cursor(&t, 5, 1_010, 600), Ok(42));
        assert!(l.cursor(&t, 6, 1_010, 600).is_err());
        assert!(l.cursor(&t, 5, 1_601, 600).unwrap_err().contains("expired"));
        assert!(l.cursor("1000_43_0000000000000000", 5, 1_010, 600).is_err());
        assert!(l.cursor("garbage", 5, 1_010, 600).is_err());
    }

    #[test]
    fn the_insert_range_is_read_from_and_ed_filters_only() {
        let body = br#"{"groupClause":"AND","groups":[{"filterClause":"AND","filters":[
            {"term":"event.inserted","operator":"ON_OR_AFTER","value":"2023-11-14T22:13:20Z"},
            {"term":"event.inserted","operator":"ON_OR_BEFORE","value":"2023-11-14T22:30:00Z"}]}],
            "pgSize":500,"pgToken":"","srtKey":"event.inserted","srtDir":"asc"}"#;
        let s = parse_search(body).unwrap();
        assert!(s.range_only);
        assert_eq!(s.start_ns, T0);
        assert_eq!(s.end_ns, T0 + 1_000 * NANOS_PER_SEC + 1);
        let or = br#"{"groupClause":"OR","groups":[{"filters":[{"term":"event.inserted","operator":"ON_OR_AFTER","value":"2023-11-14T22:13:20Z"}]},{"filters":[{"term":"event.action","operator":"IS","value":"file-created"}]}]}"#;
        let s = parse_search(or).unwrap();
        assert!(!s.range_only);
        assert_eq!(s.start_ns, i64::MIN);
        assert!(parse_search(br#"{"srtKey":"@timestamp"}"#).is_err());
        assert!(parse_search(br#"{"pgSize":10001}"#).is_err());
    }
}
