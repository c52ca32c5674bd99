//! Phase one of the configuration: the TOML file as serde structs, nothing more.
//!
//! Every table denies unknown keys, so a typo is an error with its key path (and line)
//! rather than a silently ignored setting. Values stay close to the text (durations are
//! parsed by `humantime`, but ranges, references and secrets are checked in
//! `validate`). A source or sink is the struct of its `type` (`sink`, `source`), read
//! in two steps (`tagged`) so that a key its kind does not take is refused here, with
//! the keys that kind takes.
//!
//! It owns the shape of the file; it does not check values, and it opens no file the
//! configuration names.

mod sink;
mod source;
mod tagged;

pub use sink::*;
pub use source::*;

use super::check::Problem;
use serde::de::DeserializeSeed;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The file as read: every section typed, each source and sink as the struct of its kind.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub state_dir: Option<PathBuf>,
    pub shutdown_grace: Option<Duration>,
    pub metrics: Option<RawMetrics>,
    pub tenants: BTreeMap<String, RawTenant>,
    pub sources: BTreeMap<String, RawSource>,
    pub sinks: BTreeMap<String, RawSink>,
    pub routes: Vec<RawRoute>,
}

/// Step one of reading the file: everything but the sources and sinks typed; those as
/// their keys, each with its place, for `tagged` to check against their `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outline {
    state_dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    shutdown_grace: Option<Duration>,
    metrics: Option<RawMetrics>,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    sources: BTreeMap<Spanned<String>, tagged::Keys>,
    #[serde(default)]
    sinks: BTreeMap<Spanned<String>, tagged::Keys>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

/// Reads configuration text. A syntax error or a value of the wrong shape is one
/// problem (toml stops there); sources and sinks with a missing or unknown `type`, or
/// with keys their type does not take, are all reported at once.
pub fn parse(text: &str) -> Result<RawConfig, Vec<Problem>> {
    let outline: Outline = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| vec![serde_problem(e, text)])?;
    let mut problems = Vec::new();
    let source_kinds =
        tagged::kinds_of::<SourceType>("sources", &outline.sources, text, &mut problems);
    let sink_kinds = tagged::kinds_of::<SinkType>("sinks", &outline.sinks, text, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(toml::Deserializer::new(text), &mut track);
    let sections = tagged::Sections {
        sources: &source_kinds,
        sinks: &sink_kinds,
    };
    let tagged = sections.deserialize(de).map_err(|e| {
        vec![serde_problem(
            serde_path_to_error::Error::new(track.path(), e),
            text,
        )]
    })?;
    Ok(RawConfig {
        state_dir: outline.state_dir,
        shutdown_grace: outline.shutdown_grace,
        metrics: outline.metrics,
        tenants: outline.tenants,
        sources: tagged.sources,
        sinks: tagged.sinks,
        routes: outline.routes,
    })
}

/// A serde error as a problem: its key path, and toml's message prefixed with the line.
fn serde_problem(e: serde_path_to_error::Error<toml::de::Error>, text: &str) -> Problem {
    let path = e.path().to_string();
    let inner = e.into_inner();
    // toml's message carries the line and column and a snippet; keep only the first
    // line of its message proper, prefixed with the location.
    let msg = inner.message().trim().to_string();
    Problem {
        path: if path == "." { String::new() } else { path },
        message: match inner.span() {
            Some(span) => format!("{}: {msg}", line(text, span)),
            None => msg,
        },
    }
}

/// `line N` of the place `span` starts at.
fn line(text: &str, span: std::ops::Range<usize>) -> String {
    let n = text[..span.start.min(text.len())].matches('\n').count() + 1;
    format!("line {n}")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: String,
    #[serde(default, with = "humantime_serde")]
    pub ready_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    /// `incydr` or `legacy`.
    pub api: String,
    pub base_url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretRef>,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub totp: Option<SecretRef>,
    pub proxy: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    pub ca_file: Option<PathBuf>,
    pub services: Option<RawServices>,
    /// The most bytes of one API response body.
    pub max_response_bytes: Option<i64>,
    /// The most data requests in flight to the tenant at once.
    pub max_concurrent_requests: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServices {
    pub audit_log: Option<String>,
    pub alerts: Option<String>,
    pub fed_observer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertFilterGroup {
    /// `AND` (default) or `OR`: how this group's filters combine.
    pub clause: Option<String>,
    pub filters: Vec<RawAlertFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertFilter {
    pub term: String,
    pub operator: String,
    pub value: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAuditFilters {
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub actor_ids: Vec<String>,
    #[serde(default)]
    pub actor_names: Vec<String>,
    #[serde(default)]
    pub actor_ip_addresses: Vec<String>,
    #[serde(default)]
    pub user_types: Vec<String>,
    #[serde(default)]
    pub affected_user_ids: Vec<String>,
    #[serde(default)]
    pub affected_user_names: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub server_name: Option<String>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default, with = "humantime_serde")]
    pub initial: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub sources: Vec<String>,
    pub sinks: Vec<String>,
}

/// A syslog facility: a number (0-23) or a name (`local0`, `auth`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facility {
    Number(i64),
    Name(String),
}

impl<'de> Deserialize<'de> for Facility {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Facility;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a facility number (0-23) or name such as \"local0\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Facility, E> {
                Ok(Facility::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Facility, E> {
                Ok(Facility::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Facility, E> {
                Ok(Facility::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Where a secret comes from. Inline strings are allowed (for trials) but an
/// environment variable or a file is what the examples show.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Inline(String),
    Env(String),
    File(PathBuf),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Inline(_) => f.write_str("Inline([redacted])"),
            SecretRef::Env(v) => write!(f, "Env({v:?})"),
            SecretRef::File(p) => write!(f, "File({p:?})"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, { env = \"VAR\" } or { file = \"/path\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretRef, E> {
                Ok(SecretRef::Inline(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "expected { env = \"VAR\" } or { file = \"/path\" }, found an empty table",
                    ));
                };
                let out = match key.as_str() {
                    "env" => SecretRef::Env(map.next_value()?),
                    "file" => SecretRef::File(map.next_value()?),
                    other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "unexpected key `{extra}`: give exactly one of `env` or `file`"
                    )));
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn unknown_key_is_an_error_with_its_path() {
        let text = MINIMAL.replace("port = 6514", "port = 6514\nprot = 1");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("sinks.siem.prot: "), "{p:?}");
        assert!(p[0].contains("unknown field"), "{p:?}");
        assert_eq!(
            p,
            vec![format!(
                "sinks.siem.prot: line {}: unknown field `prot` for a tcp sink; {}",
                line_of(&text, "prot"),
                sink_takes("tcp")
            )]
        );
    }

    #[test]
    fn bad_duration_names_the_key() {
        let text = MINIMAL.replace(
            "type = \"audit_log\"",
            "type = \"audit_log\"\nlag = \"5 parsecs\"",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("sources.audit.lag: "), "{p:?}");
    }

    #[test]
    fn keys_that_do_not_apply_are_errors() {
        let text = MINIMAL.replace(
            "[[routes]]",
            "[sinks.out]\ntype = \"stdout\"\nport = 5\n\n[[routes]]",
        );
        assert_eq!(
            problems(&text),
            vec![format!(
                "sinks.out.port: line {}: `port` does not apply to a stdout sink \
                 (only tcp, udp and relp sinks take it); {}",
                line_of(&text, "port = 5"),
                sink_takes("stdout")
            )]
        );
    }

    /// The number of the first line of `text` that starts with `start`.
    fn line_of(text: &str, start: &str) -> usize {
        text.lines()
            .position(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starts with {start:?}"))
            + 1
    }

    /// `MINIMAL` with the keys of its `siem` sink replaced by `table`.
    fn with_siem(table: &str) -> String {
        const SIEM: &str = "type = \"tcp\"\nhost = \"siem.example.com\"\nport = 6514";
        assert!(MINIMAL.contains(SIEM));
        MINIMAL.replace(SIEM, table)
    }

    /// `MINIMAL` with the keys of its `audit` source replaced by `table`.
    fn with_audit(table: &str) -> String {
        assert!(MINIMAL.contains("type = \"audit_log\"\ntenant = \"acme\""));
        MINIMAL.replace("type = \"audit_log\"\ntenant = \"acme\"", table)
    }

    /// Every sink type with its required keys.
    const SINKS: &[(&str, &str)] = &[
        ("stdout", "type = \"stdout\""),
        (
            "file",
            "type = \"file\"\npath = \"/tmp/c42fwd-test/out.log\"",
        ),
        ("tcp", "type = \"tcp\"\nhost = \"h\"\nport = 1"),
        ("udp", "type = \"udp\"\nhost = \"h\"\nport = 1"),
        ("relp", "type = \"relp\"\nhost = \"h\"\nport = 1"),
        (
            "hec",
            "type = \"hec\"\nendpoint = \"https://splunk.example.com:8088\"\ntoken = \"t\"",
        ),
        (
            "http",
            "type = \"http\"\nurl = \"https://collector.example.com/in\"",
        ),
    ];

    const SINK_SHARED: &str = "`format`, `syslog`, `facility`, `hostname`, `app_name`, \
                               `queue_batches`, `retry`, `dead_letter_max_bytes`";
    const SOURCE_SHARED: &str = "`tenant`, `lag`, `poll_interval`, `start`, `page_size`, \
                                 `reconcile`, `reconcile_after`";

    /// The keys each kind takes, as the messages list them: the contract of `raw::sink`
    /// and `raw::source`.
    fn sink_takes(kind: &str) -> String {
        let own = match kind {
            "stdout" => "`framing`, ",
            "file" => "`path`, `framing`, ",
            "tcp" => "`host`, `port`, `connect_timeout`, `keepalive`, `tls`, `framing`, ",
            "udp" => "`host`, `port`, `max_datagram`, `oversize`, ",
            "relp" => "`host`, `port`, `connect_timeout`, `tls`, `window`, `ack_timeout`, ",
            "hec" => {
                "`endpoint`, `token`, `index`, `source`, `sourcetype`, `channel`, \
                      `indexer_ack`, `ack_poll_interval`, `ack_poll_initial`, \
                      `max_pending_acks`, `ack_timeout`, `tls`, `gzip`, \
                      `max_events`, `max_bytes`, `max_wait`, `request_timeout`, "
            }
            "http" => {
                "`url`, `body`, `headers`, `username`, `password`, `bearer_token`, \
                       `tls`, `gzip`, `max_events`, `max_bytes`, `max_wait`, \
                       `request_timeout`, "
            }
            other => panic!("{other}"),
        };
        format!("a {kind} sink takes `type`, {own}{SINK_SHARED}")
    }

    fn source_takes(kind: &str) -> String {
        let own = match kind {
            "audit_log" => "an audit_log source takes `type`, `filters`, ",
            "alerts" => "an alerts source takes `type`, `filter_groups`, ",
            "sync_log" => "a sync_log source takes `type`, ",
            other => panic!("{other}"),
        };
        format!("{own}{SOURCE_SHARED}")
    }

    #[test]
    fn an_unknown_key_names_the_sink_the_key_the_type_and_the_keys_it_takes() {
        for (kind, table) in SINKS {
            let ok = with_siem(table);
            assert_eq!(problems(&ok), Vec::<String>::new(), "{kind}");
            let text = with_siem(&format!("{table}\nbogus = 1"));
            let want = format!(
                "sinks.siem.bogus: line {}: unknown field `bogus` for a {kind} sink; {}",
                line_of(&text, "bogus"),
                sink_takes(kind)
            );
            assert_eq!(problems(&text), vec![want], "{kind}");
        }
        for (kind, a, table) in [
            ("audit_log", "an", "type = \"audit_log\"\ntenant = \"acme\""),
            ("alerts", "an", "type = \"alerts\"\ntenant = \"acme\""),
            ("sync_log", "a", "type = \"sync_log\"\ntenant = \"acme\""),
        ] {
            let ok = with_audit(table);
            assert_eq!(problems(&ok), Vec::<String>::new(), "{kind}");
            let text = with_audit(&format!("{table}\ngroups = []"));
            let want = format!(
                "sources.audit.groups: line {}: unknown field `groups` for {a} {kind} source; {}",
                line_of(&text, "groups"),
                source_takes(kind)
            );
            assert_eq!(problems(&text), vec![want], "{kind}");
        }
    }

    #[test]
    fn a_key_of_another_kind_is_refused_naming_the_kinds_that_take_it() {
        for (table, key, kind, by) in [
            (
                "type = \"tcp\"\nhost = \"h\"\nport = 1\nwindow = 8",
                "window",
                "tcp",
                "(only relp sinks take it)",
            ),
            (
                "type = \"relp\"\nhost = \"h\"\nport = 1\nendpoint = \"https://h\"",
                "endpoint",
                "relp",
                "(only hec sinks take it)",
            ),
            (
                "type = \"udp\"\nhost = \"h\"\nport = 1\npath = \"/tmp/x\"",
                "path",
                "udp",
                "(only file and unix sinks take it)",
            ),
            (
                "type = \"udp\"\nhost = \"h\"\nport = 1\ntls = {}",
                "tls",
                "udp",
                "(only tcp, relp, hec, kafka and http sinks take it)",
            ),
            (
                "type = \"http\"\nurl = \"https://h\"\nframing = \"lf\"",
                "framing",
                "http",
                ": the transport delimits records (only stdout, file, tcp and unix sinks take it)",
            ),
        ] {
            let text = with_siem(table);
            let sep = if by.starts_with(':') { "" } else { " " };
            let want = format!(
                "sinks.siem.{key}: line {}: `{key}` does not apply to a {kind} sink{sep}{by}; {}",
                line_of(&text, key),
                sink_takes(kind)
            );
            assert_eq!(problems(&text), vec![want], "{key} on {kind}");
        }
        for (table, key, kind, by) in [
            (
                "type = \"audit_log\"\ntenant = \"acme\"\nfilter_groups = []",
                "filter_groups",
                "audit_log",
                "alerts and file_events",
            ),
            (
                "type = \"alerts\"\ntenant = \"acme\"\nfilters = {}",
                "filters",
                "alerts",
                "audit_log and file_events",
            ),
        ] {
            let text = with_audit(table);
            let want = format!(
                "sources.audit.{key}: line {}: `{key}` does not apply to an {kind} source \
                 (only {by} sources take it); {}",
                line_of(&text, key),
                source_takes(kind)
            );
            assert_eq!(problems(&text), vec![want], "{key} on {kind}");
        }
    }

    #[test]
    fn an_unknown_or_missing_type_lists_the_valid_types() {
        let text = with_siem("type = \"amqp\"\nhost = \"h\"");
        assert_eq!(
            problems(&text),
            vec![format!(
                "sinks.siem.type: line {}: `amqp` is not a sink type: use \"stdout\", \
                 \"file\", \"tcp\", \"udp\", \"unix\", \"relp\", \"hec\", \"kafka\" or \"http\"",
                line_of(&text, "type = \"amqp\"")
            )]
        );
        let text = with_siem("host = \"h\"");
        assert_eq!(
            problems(&text),
            vec![format!(
                "sinks.siem: line {}: missing field `type`: a sink's type is one of \"stdout\", \
                 \"file\", \"tcp\", \"udp\", \"unix\", \"relp\", \"hec\", \"kafka\" or \"http\"",
                line_of(&text, "[sinks.siem]")
            )]
        );
        let text = with_audit("type = 7\ntenant = \"acme\"");
        assert_eq!(
            problems(&text),
            vec![format!(
                "sources.audit.type: line {}: `7` is not a source type: use \"audit_log\", \
                 \"alerts\", \"sync_log\", \"sessions\" or \"file_events\"",
                line_of(&text, "type = 7")
            )]
        );
    }

    #[test]
    fn every_misplaced_key_of_every_table_is_reported_at_once() {
        let text = with_siem("type = \"tcp\"\nhost = \"h\"\nport = 1\nwindow = 8")
            .replace(
                "[[routes]]",
                "[sinks.u]\ntype = \"udp\"\npath = \"/x\"\n[[routes]]",
            )
            .replace("tenant = \"acme\"", "tenant = \"acme\"\nfilter_groups = []");
        let p = problems(&text);
        let paths: Vec<&str> = p.iter().map(|x| x.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "sources.audit.filter_groups",
                "sinks.siem.window",
                "sinks.u.path"
            ],
            "{p:?}"
        );
    }

    #[test]
    fn a_bad_value_in_a_kind_keeps_its_key_path_and_line() {
        let text = with_siem("type = \"relp\"\nhost = \"h\"\nport = 1\nwindow = \"big\"");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(&format!(
                "sinks.siem.window: line {}: invalid type: string \"big\", expected i64",
                line_of(&text, "window")
            )),
            "{p:?}"
        );
        let text = with_siem(
            "type = \"tcp\"\nhost = \"h\"\nport = 1\n[sinks.siem.tls]\nmin_versionn = \"1.3\"",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(&format!(
                "sinks.siem.tls.min_versionn: line {}: unknown field `min_versionn`",
                line_of(&text, "min_versionn")
            )),
            "{p:?}"
        );
        let text = with_audit("type = \"audit_log\"\ntenant = \"acme\"\nlag = \"5 parsecs\"");
        assert_eq!(
            problems(&text),
            vec![format!(
                "sources.audit.lag: line {}: invalid value: string \"5 parsecs\", expected a duration",
                line_of(&text, "lag")
            )]
        );
    }
}
