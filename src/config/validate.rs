//! Phase two of the configuration: from [`RawConfig`] to [`Config`], or a list of
//! problems, each with the key path it belongs to.
//!
//! What it checks: every reference (routes to sources and sinks, sources to tenants),
//! every range (ports, page sizes, queue and batch sizes, every duration against its
//! [`Bounds`] so that nothing computed from a config value can overflow, the 90-day
//! retention of the start position), names that can be file names, URL syntax,
//! credentials complete for the tenant's API generation, and that every secret can be
//! read (environment variable set, file readable). It does not touch the network and
//! opens no socket; `run` uses this same path before it starts anything.

use super::raw::{Facility, RawConfig, RawSink, RawSource, RawTenant, RawTls, SecretRef};
use super::*;
use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use crate::retry::BackoffPolicy;
use std::fmt;
use std::path::Path;

/// Code42 keeps events for 90 days; a start position further back reads nothing.
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// The API's largest page for `search-audit-log`.
pub const MAX_PAGE_SIZE: i64 = 10_000;

/// The largest page of `query-alerts`.
pub const MAX_ALERT_PAGE_SIZE: i64 = 500;

/// Inclusive bounds of a duration key. Every duration in the file has one: wide enough
/// for any real deployment, narrow enough that no deadline, backoff or window computed
/// from it can overflow (`Instant + d`, `d * 10`, `now - lag`). README.md lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: Duration,
    pub max: Duration,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
const HOUR: Duration = secs(3600);
const DAY: Duration = secs(24 * 3600);

pub const SHUTDOWN_GRACE: Bounds = Bounds {
    min: secs(1),
    max: HOUR,
};
pub const TENANT_REQUEST_TIMEOUT: Bounds = Bounds {
    min: secs(1),
    max: HOUR,
};
pub const LAG: Bounds = Bounds {
    min: Duration::ZERO,
    max: DAY,
};
pub const POLL_INTERVAL: Bounds = Bounds {
    min: ms(100),
    max: DAY,
};
pub const RECONCILE_AFTER: Bounds = Bounds {
    min: secs(1),
    max: DAY,
};
pub const CONNECT_TIMEOUT: Bounds = Bounds {
    min: ms(100),
    max: secs(600),
};
/// Linux refuses a keepalive idle time above 32767 s; the kernel default is 2 h.
pub const KEEPALIVE: Bounds = Bounds {
    min: secs(1),
    max: secs(7200),
};
pub const ACK_TIMEOUT: Bounds = Bounds {
    min: secs(1),
    max: HOUR,
};
pub const ACK_POLL_INTERVAL: Bounds = Bounds {
    min: ms(10),
    max: secs(300),
};
pub const MAX_WAIT: Bounds = Bounds {
    min: ms(1),
    max: secs(600),
};
pub const SINK_REQUEST_TIMEOUT: Bounds = Bounds {
    min: secs(1),
    max: HOUR,
};
pub const RETRY: Bounds = Bounds {
    min: ms(1),
    max: HOUR,
};

/// Source, sink and tenant names become file names (`checkpoints/<source>.json`,
/// `dead-letter/<sink>.ndjson`) and metric labels.
pub const MAX_NAME_LEN: usize = 64;

/// A duration as a user would write it, exactly (`100ms`, `90s`, `5m`, `24h`), so that
/// the value in an error message can be pasted back into the file.
pub fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() % 1_000_000 != 0 {
        format!("{}ns", d.as_nanos())
    } else if d.subsec_nanos() != 0 {
        format!("{}ms", d.as_millis())
    } else if s == 0 {
        "0s".to_string()
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Whether `name` can name a tenant, source or sink: it is safe as a file name on its
/// own (no separator, not `.` or `..`, not hidden) and as a metric label.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Why `name` cannot name a tenant, source or sink, if it cannot.
pub fn name_problem(name: &str) -> Option<String> {
    if valid_name(name) {
        return None;
    }
    Some(format!(
        "`{}` is not a usable name: it must be 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 _ . - \
         and not start with a dot (it becomes a file name in the state directory)",
        name.escape_debug()
    ))
}

/// Alert filter terms as the API spells them (`docs/api.md`, alerts, and the alert
/// summary fields). Config accepts any case and the console's names (`AlertState`,
/// `DateObserved`, `AlertId`).
pub const ALERT_TERMS: &[&str] = &[
    "Id",
    "Name",
    "Description",
    "Actor",
    "ActorId",
    "Target",
    "Severity",
    "RiskSeverity",
    "RuleId",
    "RuleName",
    "RuleSource",
    "State",
    "Type",
    "CreatedAt",
];

fn alert_term(t: &str) -> Option<&'static str> {
    let lower = t.to_ascii_lowercase();
    let alias = match lower.as_str() {
        "alertstate" => "state",
        "dateobserved" => "createdat",
        "alertid" => "id",
        other => other,
    };
    ALERT_TERMS
        .iter()
        .copied()
        .find(|x| x.eq_ignore_ascii_case(alias))
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `sinks.siem.port`; empty for file-level problems.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The configuration could not be used. `problems` lists every problem found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file, when the configuration came from one.
    pub file: Option<PathBuf>,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "invalid configuration {}", p.display())?,
            None => f.write_str("invalid configuration")?,
        }
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        problems: vec![Problem {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }],
    })?;
    parse_str(&text).map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        e
    })
}

/// Parses and validates configuration text.
pub fn parse_str(text: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::new(text);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // toml's message carries the line and column and a snippet; keep only the
        // first line of its message proper, prefixed with the location.
        let message = toml_error_message(&inner, text);
        ConfigError {
            file: None,
            problems: vec![Problem {
                path: if path == "." { String::new() } else { path },
                message,
            }],
        }
    })?;
    validate(raw, chrono::Utc::now())
}

fn toml_error_message(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

/// Collects problems while walking the raw config.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// `value` of key `path` must lie within `b`.
    fn duration(&mut self, path: impl Into<String>, value: Duration, b: Bounds) {
        if value < b.min || value > b.max {
            self.add(
                path,
                format!(
                    "`{}` is out of range {} to {}",
                    show_duration(value),
                    show_duration(b.min),
                    show_duration(b.max)
                ),
            );
        }
    }

    /// The name of a tenant, source or sink (`section.name`).
    fn name(&mut self, section: &str, name: &str) {
        if let Some(m) = name_problem(name) {
            self.add(format!("{section}.{}", name.escape_debug()), m);
        }
    }
}

/// Validates a raw config. `now` is a parameter so that tests are deterministic.
pub fn validate(raw: RawConfig, now: DateTime<Utc>) -> Result<Config, ConfigError> {
    let mut p = Problems::default();

    let state_dir = raw
        .state_dir
        .unwrap_or_else(|| PathBuf::from("/var/lib/c42fwd"));
    if state_dir.as_os_str().is_empty() {
        p.add("state_dir", "must not be empty");
    }
    let metrics_listen = raw.metrics.as_ref().and_then(|m| {
        m.listen
            .parse::<SocketAddr>()
            .map_err(|e| {
                p.add(
                    "metrics.listen",
                    format!(
                        "`{}` is not an address such as 127.0.0.1:9842: {e}",
                        m.listen
                    ),
                )
            })
            .ok()
    });
    let shutdown_grace = raw.shutdown_grace.unwrap_or(Duration::from_secs(30));
    p.duration("shutdown_grace", shutdown_grace, SHUTDOWN_GRACE);

    // A bad name is one problem; the entry is still checked and kept, so that what
    // refers to it does not report a second, misleading "no ... named" problem.
    let mut tenants = BTreeMap::new();
    for (name, t) in raw.tenants {
        p.name("tenants", &name);
        if let Some(t) = tenant(&name, t, &mut p) {
            tenants.insert(name, t);
        }
    }
    let mut sources = BTreeMap::new();
    for (name, s) in raw.sources {
        p.name("sources", &name);
        if let Some(s) = source(&name, s, &tenants, now, &mut p) {
            sources.insert(name, s);
        }
    }
    let mut sinks = BTreeMap::new();
    for (name, s) in raw.sinks {
        p.name("sinks", &name);
        if let Some(s) = sink(&name, s, &mut p) {
            sinks.insert(name, s);
        }
    }

    let mut routes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut used_sinks = std::collections::BTreeSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        if r.sources.is_empty() {
            p.add(
                format!("routes[{i}].sources"),
                "must name at least one source",
            );
        }
        if r.sinks.is_empty() {
            p.add(format!("routes[{i}].sinks"), "must name at least one sink");
        }
        for s in &r.sources {
            if !sources.contains_key(s) && !source_named(s, &p) {
                p.add(
                    format!("routes[{i}].sources"),
                    format!("no source named `{s}`"),
                );
            }
        }
        for k in &r.sinks {
            if !sinks.contains_key(k) && !sink_named(k, &p) {
                p.add(format!("routes[{i}].sinks"), format!("no sink named `{k}`"));
            }
            used_sinks.insert(k.clone());
        }
        for s in &r.sources {
            let entry = routes.entry(s.clone()).or_default();
            for k in &r.sinks {
                if !entry.contains(k) {
                    entry.push(k.clone());
                }
            }
        }
    }
    for name in sources.keys() {
        if !routes.contains_key(name) {
            p.add(
                format!("sources.{name}"),
                "is not in any route: add a [[routes]] entry that sends it to a sink",
            );
        }
    }
    for name in sinks.keys() {
        if !used_sinks.contains(name) {
            p.add(format!("sinks.{name}"), "is not used by any route");
        }
    }
    if sources.is_empty() && !p.0.iter().any(|x| x.path.starts_with("sources.")) {
        p.add("sources", "at least one source is needed");
    }

    if !p.0.is_empty() {
        return Err(ConfigError {
            file: None,
            problems: p.0,
        });
    }
    Ok(Config {
        state_dir,
        metrics_listen,
        shutdown_grace,
        tenants,
        sources,
        sinks,
        routes,
    })
}

// A source or sink that failed validation is not in the map, but a route naming it
// should not produce a second, misleading "no source named" problem.
fn source_named(name: &str, p: &Problems) -> bool {
    let prefix = format!("sources.{name}.");
    p.0.iter().any(|x| x.path.starts_with(&prefix))
}

fn sink_named(name: &str, p: &Problems) -> bool {
    let prefix = format!("sinks.{name}.");
    p.0.iter().any(|x| x.path.starts_with(&prefix))
}

fn url(path: &str, value: &str, p: &mut Problems) -> Option<Url> {
    match Url::parse(value) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
            if u.host_str().is_none() {
                p.add(path, format!("`{value}` has no host"));
                return None;
            }
            Some(u)
        }
        Ok(u) => {
            p.add(
                path,
                format!("`{value}`: scheme `{}` is not http or https", u.scheme()),
            );
            None
        }
        Err(e) => {
            p.add(path, format!("`{value}` is not a URL: {e}"));
            None
        }
    }
}

fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// Reads a secret from where the config says it is.
pub fn read_secret(r: &SecretRef) -> Result<Secret, String> {
    let value = match r {
        SecretRef::Inline(v) => v.clone(),
        SecretRef::Env(var) => match std::env::var(var) {
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => {
                return Err(format!("environment variable {var} is not set"))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("environment variable {var} is not valid UTF-8"))
            }
        },
        SecretRef::File(path) => match std::fs::read_to_string(path) {
            // A trailing newline from `echo secret > file` is not part of the secret.
            Ok(v) => v.trim_end_matches(['\n', '\r']).to_string(),
            Err(e) => return Err(format!("cannot read secret file {}: {e}", path.display())),
        },
    };
    if value.is_empty() {
        return Err(match r {
            SecretRef::Inline(_) => "is empty".to_string(),
            SecretRef::Env(var) => format!("environment variable {var} is empty"),
            SecretRef::File(path) => format!("secret file {} is empty", path.display()),
        });
    }
    Ok(Secret::new(value))
}

fn secret(path: String, r: &SecretRef, p: &mut Problems) -> Option<Secret> {
    read_secret(r).map_err(|m| p.add(path, m)).ok()
}

fn tenant(name: &str, t: RawTenant, p: &mut Problems) -> Option<Tenant> {
    let at = |k: &str| format!("tenants.{name}.{k}");
    let before = p.0.len();
    let api = match t.api.as_str() {
        "incydr" => Some(ApiGeneration::Incydr),
        "legacy" => Some(ApiGeneration::Legacy),
        other => {
            p.add(
                at("api"),
                format!("`{other}` is not an API generation: use \"incydr\" or \"legacy\""),
            );
            None
        }
    };
    let base_url = url(&at("base_url"), t.base_url.trim_end_matches('/'), p);
    if let Some(u) = &base_url {
        if u.scheme() == "http" && !is_loopback(u) {
            p.add(
                at("base_url"),
                "plain http to a host other than loopback would send credentials in clear: use https",
            );
        }
    }
    let mut services = ServiceUrls::default();
    if let Some(s) = &t.services {
        services.audit_log = s
            .audit_log
            .as_deref()
            .and_then(|v| url(&at("services.audit_log"), v.trim_end_matches('/'), p));
        services.alerts = s
            .alerts
            .as_deref()
            .and_then(|v| url(&at("services.alerts"), v.trim_end_matches('/'), p));
        services.fed_observer = s
            .fed_observer
            .as_deref()
            .and_then(|v| url(&at("services.fed_observer"), v.trim_end_matches('/'), p));
        if api == Some(ApiGeneration::Incydr) {
            p.add(
                at("services"),
                "only the legacy API uses per-service URLs; the Incydr gateway is one base URL",
            );
        }
    }

    let has_client = t.client_id.is_some() || t.client_secret.is_some();
    let has_user = t.username.is_some() || t.password.is_some() || t.totp.is_some();
    let credentials = match (has_client, has_user, api) {
        (true, true, _) => {
            p.add(
                at("client_id"),
                "give either client_id/client_secret or username/password, not both",
            );
            None
        }
        (false, false, _) => {
            p.add(
                at("client_id"),
                "credentials are missing: set client_id and client_secret",
            );
            None
        }
        (false, true, Some(ApiGeneration::Incydr)) => {
            p.add(
                at("username"),
                "the Incydr API authenticates API clients only: use client_id and client_secret",
            );
            None
        }
        (true, false, _) => match (&t.client_id, &t.client_secret) {
            (Some(id), Some(s)) => {
                if id.trim().is_empty() {
                    p.add(at("client_id"), "must not be empty");
                }
                let secret = secret(at("client_secret"), s, p);
                secret.map(|secret| Credentials::ApiClient {
                    client_id: id.clone(),
                    secret,
                })
            }
            (None, _) => {
                p.add(at("client_id"), "is missing (client_secret is set)");
                None
            }
            (_, None) => {
                p.add(at("client_secret"), "is missing (client_id is set)");
                None
            }
        },
        (false, true, _) => match (&t.username, &t.password) {
            (Some(u), Some(pw)) => {
                let password = secret(at("password"), pw, p);
                let totp = t.totp.as_ref().and_then(|x| secret(at("totp"), x, p));
                if let Some(code) = &totp {
                    if !(code.expose().len() == 6
                        && code.expose().bytes().all(|b| b.is_ascii_digit()))
                    {
                        p.add(at("totp"), "must be a 6-digit code");
                    }
                }
                password.map(|password| Credentials::User {
                    username: u.clone(),
                    password,
                    totp,
                })
            }
            (None, _) => {
                p.add(at("username"), "is missing (password is set)");
                None
            }
            (_, None) => {
                p.add(at("password"), "is missing (username is set)");
                None
            }
        },
    };
    let proxy = t.proxy.as_deref().and_then(|v| url(&at("proxy"), v, p));
    let request_timeout = t.request_timeout.unwrap_or(Duration::from_secs(60));
    p.duration(
        at("request_timeout"),
        request_timeout,
        TENANT_REQUEST_TIMEOUT,
    );
    let max_response_bytes = match t.max_response_bytes {
        None => DEFAULT_MAX_RESPONSE_BYTES,
        Some(n) => match u64::try_from(n) {
            Ok(n) if MAX_RESPONSE_BYTES_RANGE.contains(&n) => n,
            _ => {
                p.add(
                    at("max_response_bytes"),
                    format!("{n} is out of range 1048576-1073741824 bytes (1 MiB to 1 GiB)"),
                );
                DEFAULT_MAX_RESPONSE_BYTES
            }
        },
    };
    if let Some(ca) = &t.ca_file {
        if let Err(e) = std::fs::metadata(ca) {
            p.add(at("ca_file"), format!("cannot read {}: {e}", ca.display()));
        }
    }
    if p.0.len() != before {
        return None;
    }
    Some(Tenant {
        name: name.to_string(),
        api: api?,
        base_url: base_url?,
        services,
        credentials: credentials?,
        proxy,
        request_timeout,
        ca_file: t.ca_file,
        max_response_bytes,
    })
}

/// Parses a start position: a duration back from now (`"30d"`) or an RFC 3339 time.
pub fn parse_start(value: &str, now: DateTime<Utc>) -> Result<StartAt, String> {
    if let Ok(d) = humantime::parse_duration(value) {
        if d > RETENTION {
            return Err(format!(
                "`{value}` is more than 90 days back; Code42 keeps events for 90 days"
            ));
        }
        return Ok(StartAt::Ago(d));
    }
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            if t > now {
                return Err(format!("`{value}` is in the future"));
            }
            let oldest = now - chrono::Duration::from_std(RETENTION).unwrap_or_default();
            if t < oldest {
                return Err(format!(
                    "`{value}` is more than 90 days back; Code42 keeps events for 90 days"
                ));
            }
            Ok(StartAt::At(t))
        }
        Err(_) => Err(format!(
            "`{value}` is neither a duration such as \"30d\" nor an RFC 3339 time such as \"2026-01-31T00:00:00Z\""
        )),
    }
}

fn source(
    name: &str,
    s: RawSource,
    tenants: &BTreeMap<String, Tenant>,
    now: DateTime<Utc>,
    p: &mut Problems,
) -> Option<Source> {
    let at = |k: &str| format!("sources.{name}.{k}");
    let before = p.0.len();
    let filters_given = s.filters.is_some();
    let mut s = s;
    let kind = match s.kind.as_str() {
        "audit_log" => {
            let f = s.filters.take().unwrap_or_default();
            for (i, t) in f.event_types.iter().enumerate() {
                if !t
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    || t.is_empty()
                {
                    p.add(
                        format!("sources.{name}.filters.event_types[{i}]"),
                        format!("`{t}` is not an event type name such as \"logged_in\""),
                    );
                }
            }
            for (i, t) in f.user_types.iter().enumerate() {
                if !["USER", "SUPPORT_USER", "API_CLIENT", "SYSTEM", "UNKNOWN"]
                    .contains(&t.as_str())
                {
                    p.add(
                        format!("sources.{name}.filters.user_types[{i}]"),
                        format!(
                            "`{t}` is not one of USER, SUPPORT_USER, API_CLIENT, SYSTEM, UNKNOWN"
                        ),
                    );
                }
            }
            Some(SourceSpec::AuditLog(AuditFilters {
                event_types: f.event_types,
                actor_ids: f.actor_ids,
                actor_names: f.actor_names,
                actor_ip_addresses: f.actor_ip_addresses,
                user_types: f.user_types,
                affected_user_ids: f.affected_user_ids,
                affected_user_names: f.affected_user_names,
            }))
        }
        "alerts" => {
            let mut groups = Vec::new();
            for (g, raw) in s.filter_groups.iter().flatten().enumerate() {
                let gat = format!("sources.{name}.filter_groups[{g}]");
                let clause = match raw
                    .clause
                    .as_deref()
                    .map(str::to_ascii_uppercase)
                    .as_deref()
                {
                    None | Some("AND") => FilterClause::And,
                    Some("OR") => FilterClause::Or,
                    Some(other) => {
                        p.add(
                            format!("{gat}.clause"),
                            format!("`{other}` is not AND or OR"),
                        );
                        FilterClause::And
                    }
                };
                if raw.filters.is_empty() {
                    p.add(format!("{gat}.filters"), "must have at least one filter");
                }
                let mut filters = Vec::new();
                for (i, f) in raw.filters.iter().enumerate() {
                    let fat = format!("{gat}.filters[{i}]");
                    let Some(term) = alert_term(&f.term) else {
                        p.add(
                            format!("{fat}.term"),
                            format!(
                                "`{}` is not an alert filter term: use one of {}",
                                f.term,
                                ALERT_TERMS.join(", ")
                            ),
                        );
                        continue;
                    };
                    let Some(operator) = AlertOperator::parse(&f.operator) else {
                        p.add(
                            format!("{fat}.operator"),
                            format!(
                                "`{}` is not an operator: use IS, IS_NOT, CONTAINS, DOES_NOT_CONTAIN, ON, ON_OR_AFTER or ON_OR_BEFORE",
                                f.operator
                            ),
                        );
                        continue;
                    };
                    let date_term = term == "CreatedAt";
                    let date_op = matches!(
                        operator,
                        AlertOperator::On | AlertOperator::OnOrAfter | AlertOperator::OnOrBefore
                    );
                    if date_term != date_op {
                        p.add(
                            format!("{fat}.operator"),
                            format!(
                                "{} does not apply to {term}: dates take ON, ON_OR_AFTER, ON_OR_BEFORE; other terms IS, IS_NOT, CONTAINS, DOES_NOT_CONTAIN",
                                operator.as_str()
                            ),
                        );
                        continue;
                    }
                    filters.push(AlertFilter {
                        term: term.to_string(),
                        operator,
                        value: f.value.clone(),
                    });
                }
                groups.push(AlertFilterGroup { clause, filters });
            }
            Some(SourceSpec::Alerts(groups))
        }
        "sync_log" => Some(SourceSpec::SyncLog),
        other => {
            p.add(
                at("type"),
                format!(
                    "`{other}` is not a source type: use \"audit_log\", \"alerts\" or \"sync_log\""
                ),
            );
            None
        }
    };
    if filters_given && s.kind != "audit_log" {
        p.add(
            at("filters"),
            format!("does not apply to a {} source", s.kind),
        );
    }
    if s.filter_groups.is_some() && s.kind != "alerts" {
        p.add(
            at("filter_groups"),
            format!("does not apply to a {} source", s.kind),
        );
    }
    if !tenants.contains_key(&s.tenant) {
        let failed =
            p.0.iter()
                .any(|x| x.path.starts_with(&format!("tenants.{}.", s.tenant)));
        if !failed {
            p.add(at("tenant"), format!("no tenant named `{}`", s.tenant));
        }
    }
    let lag = s.lag.unwrap_or(Duration::from_secs(300));
    p.duration(at("lag"), lag, LAG);
    let poll_interval = s.poll_interval.unwrap_or(Duration::from_secs(30));
    p.duration(at("poll_interval"), poll_interval, POLL_INTERVAL);
    let reconcile_after = s.reconcile_after.unwrap_or(DEFAULT_RECONCILE_AFTER);
    p.duration(at("reconcile_after"), reconcile_after, RECONCILE_AFTER);
    if s.reconcile == Some(false) && s.reconcile_after.is_some() {
        p.add(
            at("reconcile_after"),
            "has no effect with reconcile = false",
        );
    }
    let start = match parse_start(s.start.as_deref().unwrap_or("24h"), now) {
        Ok(v) => Some(v),
        Err(m) => {
            p.add(at("start"), m);
            None
        }
    };
    // query-alerts pages at most 500 alerts; the other endpoints 10,000 records.
    let max_page = if s.kind == "alerts" {
        MAX_ALERT_PAGE_SIZE
    } else {
        MAX_PAGE_SIZE
    };
    let page_size = s
        .page_size
        .unwrap_or(if s.kind == "alerts" { 100 } else { 1000 });
    if !(1..=max_page).contains(&page_size) {
        p.add(
            at("page_size"),
            format!("{page_size} is out of range: the API pages 1 to {max_page} records"),
        );
    }
    if p.0.len() != before {
        return None;
    }
    Some(Source {
        name: name.to_string(),
        tenant: s.tenant,
        kind: kind?,
        lag,
        poll_interval,
        start: start?,
        page_size: page_size as u32,
        reconcile_after: (s.reconcile != Some(false)).then_some(reconcile_after),
    })
}

/// How long past `lag` a closed window waits before it is compared with the API's count.
pub const DEFAULT_RECONCILE_AFTER: Duration = Duration::from_secs(600);

fn facility_number(f: &Facility) -> Result<u8, String> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ];
    match f {
        Facility::Number(n) if (0..=23).contains(n) => Ok(*n as u8),
        Facility::Number(n) => Err(format!("{n} is out of range 0-23")),
        Facility::Name(s) => NAMES
            .iter()
            .position(|x| x.eq_ignore_ascii_case(s))
            .map(|i| i as u8)
            .ok_or_else(|| format!("`{s}` is not a facility name such as \"local0\" or \"audit\"")),
    }
}

/// The machine's host name, for the syslog HOSTNAME field.
pub fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn tls(at: &dyn Fn(&str) -> String, t: &RawTls, p: &mut Problems) -> TlsOptions {
    for (k, f) in [
        ("tls.ca_file", &t.ca_file),
        ("tls.client_cert", &t.client_cert),
        ("tls.client_key", &t.client_key),
    ] {
        if let Some(f) = f {
            if let Err(e) = std::fs::metadata(f) {
                p.add(at(k), format!("cannot read {}: {e}", f.display()));
            }
        }
    }
    if t.client_cert.is_some() != t.client_key.is_some() {
        p.add(
            at("tls.client_cert"),
            "client_cert and client_key go together: give both or neither",
        );
    }
    if t.insecure_skip_verify && t.ca_file.is_some() {
        p.add(
            at("tls.insecure_skip_verify"),
            "is set together with ca_file: the CA would not be checked; remove one",
        );
    }
    let min_version = match t.min_version.as_deref().unwrap_or("1.2") {
        "1.2" => TlsVersion::Tls12,
        "1.3" => TlsVersion::Tls13,
        other => {
            p.add(
                at("tls.min_version"),
                format!("`{other}` is not a TLS version: use \"1.2\" or \"1.3\""),
            );
            TlsVersion::Tls12
        }
    };
    if let Some(n) = &t.server_name {
        if n.trim().is_empty() {
            p.add(at("tls.server_name"), "must not be empty");
        }
    }
    TlsOptions {
        ca_file: t.ca_file.clone(),
        client_cert: t.client_cert.clone(),
        client_key: t.client_key.clone(),
        server_name: t.server_name.clone(),
        min_version,
        insecure_skip_verify: t.insecure_skip_verify,
    }
}

fn sink(name: &str, s: RawSink, p: &mut Problems) -> Option<Sink> {
    let at = |k: &str| format!("sinks.{name}.{k}");
    let before = p.0.len();
    let kind_name = s.kind.as_str();
    let stream = matches!(kind_name, "tcp" | "relp");
    let network = matches!(kind_name, "tcp" | "udp" | "relp");
    let http = matches!(kind_name, "hec" | "http");

    // Keys that do not apply to this sink type are errors, not silently ignored.
    let mut not_for = |key: &str, set: bool, applies: bool| {
        if set && !applies {
            p.add(at(key), format!("does not apply to a {kind_name} sink"));
        }
    };
    not_for("host", s.host.is_some(), network);
    not_for("port", s.port.is_some(), network);
    not_for("connect_timeout", s.connect_timeout.is_some(), stream);
    not_for("keepalive", s.keepalive.is_some(), kind_name == "tcp");
    not_for("max_datagram", s.max_datagram.is_some(), kind_name == "udp");
    not_for("oversize", s.oversize.is_some(), kind_name == "udp");
    not_for("path", s.path.is_some(), kind_name == "file");
    not_for("tls", s.tls.is_some(), stream || http);
    not_for("window", s.window.is_some(), kind_name == "relp");
    not_for(
        "ack_timeout",
        s.ack_timeout.is_some(),
        kind_name == "relp" || kind_name == "hec",
    );
    not_for("endpoint", s.endpoint.is_some(), kind_name == "hec");
    not_for("url", s.url.is_some(), kind_name == "http");
    not_for("token", s.token.is_some(), kind_name == "hec");
    for (k, set) in [
        ("index", s.index.is_some()),
        ("source", s.source.is_some()),
        ("sourcetype", s.sourcetype.is_some()),
        ("channel", s.channel.is_some()),
        ("indexer_ack", s.indexer_ack.is_some()),
        ("ack_poll_interval", s.ack_poll_interval.is_some()),
    ] {
        not_for(k, set, kind_name == "hec");
    }
    for (k, set) in [
        ("gzip", s.gzip.is_some()),
        ("max_events", s.max_events.is_some()),
        ("max_bytes", s.max_bytes.is_some()),
        ("max_wait", s.max_wait.is_some()),
        ("request_timeout", s.request_timeout.is_some()),
    ] {
        not_for(k, set, http);
    }
    for (k, set) in [
        ("body", s.body.is_some()),
        ("headers", s.headers.is_some()),
        ("username", s.username.is_some()),
        ("password", s.password.is_some()),
        ("bearer_token", s.bearer_token.is_some()),
    ] {
        not_for(k, set, kind_name == "http");
    }

    let host = || -> Option<String> {
        match &s.host {
            Some(h) if !h.trim().is_empty() => Some(h.trim().to_string()),
            _ => None,
        }
    };
    let port = |p: &mut Problems| -> Option<u16> {
        match s.port {
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            Some(n) => {
                p.add(at("port"), format!("{n} is out of range 1-65535"));
                None
            }
            None => {
                p.add(at("port"), "is required");
                None
            }
        }
    };
    let stream_tls = |p: &mut Problems| s.tls.as_ref().map(|t| tls(&at, t, p));
    // HTTP sinks always have TLS settings (used for https URLs); SNI is reqwest's own.
    let http_tls = |p: &mut Problems| {
        let t = tls(&at, s.tls.as_ref().unwrap_or(&RawTls::default()), p);
        if t.server_name.is_some() {
            p.add(
                at("tls.server_name"),
                "does not apply to an http-based sink: the URL's host is the server name",
            );
        }
        t
    };
    let batching = |p: &mut Problems| {
        let b = HttpBatching {
            max_events: s.max_events.unwrap_or(500).max(0) as usize,
            max_bytes: s.max_bytes.unwrap_or(1024 * 1024).max(0) as usize,
            max_wait: s.max_wait.unwrap_or(Duration::from_secs(1)),
        };
        if !(1..=100_000).contains(&b.max_events) {
            p.add(at("max_events"), "must be 1 to 100000");
        }
        if !(1024..=512 * 1024 * 1024).contains(&b.max_bytes) {
            p.add(at("max_bytes"), "must be 1 KiB to 512 MiB");
        }
        p.duration(at("max_wait"), b.max_wait, MAX_WAIT);
        b
    };
    let request_timeout = s.request_timeout.unwrap_or(Duration::from_secs(30));
    p.duration(at("request_timeout"), request_timeout, SINK_REQUEST_TIMEOUT);
    let connect_timeout = s.connect_timeout.unwrap_or(Duration::from_secs(10));
    p.duration(at("connect_timeout"), connect_timeout, CONNECT_TIMEOUT);
    if let Some(k) = s.keepalive {
        p.duration(at("keepalive"), k, KEEPALIVE);
    }

    let kind = match kind_name {
        "stdout" => Some(SinkKind::Stdout),
        "file" => match &s.path {
            Some(path) if !path.as_os_str().is_empty() => {
                Some(SinkKind::File(FileOptions { path: path.clone() }))
            }
            _ => {
                p.add(at("path"), "is required");
                None
            }
        },
        "tcp" => {
            let h = host();
            if h.is_none() {
                p.add(at("host"), "is required");
            }
            let port = port(p);
            let tls = stream_tls(p);
            Some(SinkKind::Tcp(TcpOptions {
                host: h?,
                port: port?,
                connect_timeout,
                keepalive: s.keepalive,
                tls,
            }))
        }
        "relp" => {
            let h = host();
            if h.is_none() {
                p.add(at("host"), "is required");
            }
            let port = port(p);
            let tls = stream_tls(p);
            let window = s.window.unwrap_or(128);
            if !(1..=100_000).contains(&window) {
                p.add(at("window"), format!("{window} is out of range 1-100000"));
            }
            let ack_timeout = s.ack_timeout.unwrap_or(Duration::from_secs(30));
            p.duration(at("ack_timeout"), ack_timeout, ACK_TIMEOUT);
            Some(SinkKind::Relp(RelpOptions {
                host: h?,
                port: port?,
                connect_timeout,
                window: window.max(1) as usize,
                ack_timeout,
                tls,
            }))
        }
        "udp" => {
            let h = host();
            if h.is_none() {
                p.add(at("host"), "is required");
            }
            let port = port(p);
            let max_datagram = s.max_datagram.unwrap_or(2048);
            if !(480..=65507).contains(&max_datagram) {
                p.add(
                    at("max_datagram"),
                    format!("{max_datagram} is out of range 480-65507 bytes"),
                );
            }
            let oversize = match s.oversize.as_deref().unwrap_or("truncate") {
                "truncate" => Some(OversizePolicy::Truncate),
                "dead_letter" => Some(OversizePolicy::DeadLetter),
                other => {
                    p.add(
                        at("oversize"),
                        format!("`{other}` is not a policy: use \"truncate\" or \"dead_letter\""),
                    );
                    None
                }
            };
            Some(SinkKind::Udp(UdpOptions {
                host: h?,
                port: port?,
                max_datagram: max_datagram as usize,
                oversize: oversize?,
            }))
        }
        "hec" => {
            let endpoint = match &s.endpoint {
                Some(e) => url(&at("endpoint"), e.trim_end_matches('/'), p),
                None => {
                    p.add(
                        at("endpoint"),
                        "is required (e.g. \"https://splunk.example.com:8088\")",
                    );
                    None
                }
            };
            let token = match &s.token {
                Some(t) => secret(at("token"), t, p),
                None => {
                    p.add(at("token"), "is required");
                    None
                }
            };
            let tls = http_tls(p);
            let batching = batching(p);
            let indexer_ack = s.indexer_ack.unwrap_or(false);
            let ack_poll_interval = s.ack_poll_interval.unwrap_or(Duration::from_secs(1));
            let ack_timeout = s.ack_timeout.unwrap_or(Duration::from_secs(300));
            p.duration(
                at("ack_poll_interval"),
                ack_poll_interval,
                ACK_POLL_INTERVAL,
            );
            p.duration(at("ack_timeout"), ack_timeout, ACK_TIMEOUT);
            if let Some(c) = &s.channel {
                if !is_uuid(c) {
                    p.add(
                        at("channel"),
                        format!(
                            "`{c}` is not a GUID such as \"0e8a6c5f-2d3b-4a1c-9f7e-1b2c3d4e5f60\""
                        ),
                    );
                }
            }
            Some(SinkKind::Hec(HecOptions {
                endpoint: endpoint?,
                token: token?,
                index: s.index.clone(),
                source: s.source.clone(),
                sourcetype: s.sourcetype.clone(),
                host: s.hostname.clone().unwrap_or_else(default_hostname),
                channel: s.channel.clone(),
                gzip: s.gzip.unwrap_or(true),
                batching,
                indexer_ack,
                ack_poll_interval,
                ack_timeout,
                request_timeout,
                tls,
            }))
        }
        "http" => {
            let u = match &s.url {
                Some(u) => url(&at("url"), u, p),
                None => {
                    p.add(at("url"), "is required");
                    None
                }
            };
            let body = match s.body.as_deref().unwrap_or("ndjson") {
                "ndjson" => Some(HttpBody::NdJson),
                "json_array" => Some(HttpBody::JsonArray),
                other => {
                    p.add(
                        at("body"),
                        format!("`{other}` is not a body: use \"ndjson\" or \"json_array\""),
                    );
                    None
                }
            };
            let mut headers = Vec::new();
            for (k, v) in s.headers.iter().flatten() {
                let valid_name = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid_name {
                    p.add(
                        format!("sinks.{name}.headers.{k}"),
                        "is not a valid header name",
                    );
                } else if v.bytes().any(|b| b == b'\r' || b == b'\n') {
                    p.add(
                        format!("sinks.{name}.headers.{k}"),
                        "a header value must not contain CR or LF",
                    );
                } else if k.eq_ignore_ascii_case("authorization") {
                    p.add(
                        format!("sinks.{name}.headers.{k}"),
                        "put credentials in username/password or bearer_token, where they are kept secret",
                    );
                } else {
                    headers.push((k.clone(), v.clone()));
                }
            }
            let auth = match (&s.username, &s.password, &s.bearer_token) {
                (None, None, None) => Some(HttpAuth::None),
                (Some(u), Some(pw), None) => {
                    secret(at("password"), pw, p).map(|password| HttpAuth::Basic {
                        username: u.clone(),
                        password,
                    })
                }
                (None, None, Some(t)) => secret(at("bearer_token"), t, p).map(HttpAuth::Bearer),
                (_, _, Some(_)) => {
                    p.add(
                        at("bearer_token"),
                        "give either bearer_token or username/password, not both",
                    );
                    None
                }
                (Some(_), None, None) => {
                    p.add(at("password"), "is missing (username is set)");
                    None
                }
                (None, Some(_), None) => {
                    p.add(at("username"), "is missing (password is set)");
                    None
                }
            };
            let tls = http_tls(p);
            let batching = batching(p);
            Some(SinkKind::Http(HttpOptions {
                url: u?,
                body: body?,
                headers,
                auth: auth?,
                gzip: s.gzip.unwrap_or(false),
                batching,
                request_timeout,
                tls,
            }))
        }
        other => {
            p.add(
                at("type"),
                format!(
                    "`{other}` is not a sink type: use \"stdout\", \"file\", \"tcp\", \"udp\", \"relp\", \"hec\" or \"http\""
                ),
            );
            None
        }
    };
    let format = match s.format.as_deref().unwrap_or("cef") {
        "cef" => Some(Format::Cef),
        "json" => Some(Format::JsonRaw),
        "json_normalized" => Some(Format::JsonNormalized),
        "leef" => Some(Format::Leef2),
        "leef1" => Some(Format::Leef1),
        other => {
            p.add(
                at("format"),
                format!("`{other}` is not a format: use \"cef\", \"leef\", \"leef1\", \"json\" or \"json_normalized\""),
            );
            None
        }
    };
    // HTTP sinks carry records in JSON bodies: no syslog header unless asked for.
    let default_syslog = if http { "none" } else { "rfc5424" };
    let syslog = match s.syslog.as_deref().unwrap_or(default_syslog) {
        "rfc5424" => Some(SyslogStyle::Rfc5424),
        "rfc3164" => Some(SyslogStyle::Rfc3164),
        "none" => Some(SyslogStyle::None),
        other => {
            p.add(
                at("syslog"),
                format!(
                    "`{other}` is not a syslog header: use \"rfc5424\", \"rfc3164\" or \"none\""
                ),
            );
            None
        }
    };
    let framing = match (kind_name, s.framing.as_deref()) {
        ("udp" | "relp" | "hec" | "http", None) => Some(Framing::None),
        ("udp" | "relp" | "hec" | "http", Some(_)) => {
            p.add(
                at("framing"),
                format!("does not apply to a {kind_name} sink: the transport delimits records"),
            );
            None
        }
        ("tcp", None) => Some(Framing::OctetCounting),
        (_, None) => Some(Framing::Lf),
        (_, Some("octet_counting")) => Some(Framing::OctetCounting),
        (_, Some("lf")) => Some(Framing::Lf),
        (_, Some(other)) => {
            p.add(
                at("framing"),
                format!("`{other}` is not a framing: use \"octet_counting\" or \"lf\""),
            );
            None
        }
    };
    let facility = match s.facility.as_ref().map(facility_number) {
        None => Some(13),
        Some(Ok(n)) => Some(n),
        Some(Err(m)) => {
            p.add(at("facility"), m);
            None
        }
    };
    let hostname = s.hostname.clone().unwrap_or_else(default_hostname);
    if hostname.is_empty() {
        p.add(at("hostname"), "must not be empty");
    }
    let app_name = s.app_name.clone().unwrap_or_else(|| "c42fwd".to_string());
    if app_name.is_empty() || app_name.len() > 48 {
        p.add(at("app_name"), "must be 1 to 48 characters");
    }
    let queue_batches = s.queue_batches.unwrap_or(4);
    if !(1..=1024).contains(&queue_batches) {
        p.add(
            at("queue_batches"),
            format!("{queue_batches} is out of range 1-1024"),
        );
    }
    let dead_letter_max_bytes = s
        .dead_letter_max_bytes
        .unwrap_or(crate::sinks::DEAD_LETTER_MAX_BYTES as i64);
    if !(4096..=(1i64 << 50)).contains(&dead_letter_max_bytes) {
        p.add(
            at("dead_letter_max_bytes"),
            format!(
                "{dead_letter_max_bytes} is out of range 4096-{}",
                1i64 << 50
            ),
        );
    }
    let mut retry = BackoffPolicy::default();
    if let Some(r) = &s.retry {
        if let Some(i) = r.initial {
            retry.initial = i;
        }
        if let Some(m) = r.max {
            retry.max = m;
        }
        p.duration(at("retry.initial"), retry.initial, RETRY);
        p.duration(at("retry.max"), retry.max, RETRY);
        if retry.initial > retry.max {
            p.add(at("retry.initial"), "must not be greater than retry.max");
        }
    }
    if p.0.len() != before {
        return None;
    }
    Some(Sink {
        name: name.to_string(),
        kind: kind?,
        encoding: EncoderOptions {
            format: format?,
            syslog: syslog?,
            framing: framing?,
            facility: facility?,
            hostname,
            app_name,
        },
        queue_batches: queue_batches as usize,
        retry,
        dead_letter_max_bytes: dead_letter_max_bytes as u64,
    })
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
state_dir = "/tmp/c42fwd-test"

[tenants.acme]
api = "incydr"
base_url = "https://api.us.code42.com"
client_id = "key-123"
client_secret = "s3cret"

[sources.audit]
type = "audit_log"
tenant = "acme"

[sinks.siem]
type = "tcp"
host = "siem.example.com"
port = 6514

[[routes]]
sources = ["audit"]
sinks = ["siem"]
"#;

    fn problems(text: &str) -> Vec<String> {
        match parse_str(text) {
            Ok(_) => vec![],
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_config_gets_sane_defaults() {
        let c = parse_str(MINIMAL).unwrap();
        let s = &c.sources["audit"];
        assert_eq!(s.lag, Duration::from_secs(300));
        assert_eq!(s.page_size, 1000);
        assert_eq!(s.start, StartAt::Ago(Duration::from_secs(24 * 3600)));
        let k = &c.sinks["siem"];
        assert_eq!(k.encoding.format, Format::Cef);
        assert_eq!(k.encoding.syslog, SyslogStyle::Rfc5424);
        assert_eq!(k.encoding.framing, Framing::OctetCounting);
        assert_eq!(c.routes["audit"], vec!["siem".to_string()]);
    }

    #[test]
    fn reconciliation_is_on_by_default_tunable_and_can_be_turned_off() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(
            c.sources["audit"].reconcile_after,
            Some(DEFAULT_RECONCILE_AFTER)
        );
        let with = |keys: &str| {
            MINIMAL.replace(
                "type = \"audit_log\"",
                &format!("type = \"audit_log\"\n{keys}"),
            )
        };
        let c = parse_str(&with("reconcile_after = \"30m\"")).unwrap();
        assert_eq!(
            c.sources["audit"].reconcile_after,
            Some(Duration::from_secs(1800))
        );
        let c = parse_str(&with("reconcile = false")).unwrap();
        assert_eq!(c.sources["audit"].reconcile_after, None);
        for (keys, want) in [
            (
                "reconcile_after = \"0s\"",
                "sources.audit.reconcile_after: `0s` is out of range 1s to 24h",
            ),
            (
                "reconcile_after = \"2d\"",
                "sources.audit.reconcile_after: `48h` is out of range 1s to 24h",
            ),
            (
                "reconcile = false\nreconcile_after = \"1m\"",
                "sources.audit.reconcile_after: has no effect with reconcile = false",
            ),
        ] {
            let p = problems(&with(keys));
            assert_eq!(p, vec![want.to_string()], "{keys}");
        }
    }

    #[test]
    fn max_response_bytes_defaults_and_is_range_checked() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(
            c.tenants["acme"].max_response_bytes,
            DEFAULT_MAX_RESPONSE_BYTES
        );
        let with = |v: &str| {
            MINIMAL.replace(
                "client_secret = \"s3cret\"",
                &format!("client_secret = \"s3cret\"\nmax_response_bytes = {v}"),
            )
        };
        let c = parse_str(&with("4194304")).unwrap();
        assert_eq!(c.tenants["acme"].max_response_bytes, 4 * 1024 * 1024);
        for bad in ["0", "-1", "1000", "2147483648"] {
            let p = problems(&with(bad));
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].starts_with("tenants.acme.max_response_bytes: ")
                    && p[0].contains("out of range"),
                "{bad}: {p:?}"
            );
        }
    }

    #[test]
    fn unknown_key_is_an_error_with_its_path() {
        let text = MINIMAL.replace("port = 6514", "port = 6514\nprot = 1");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("sinks.siem.prot: "), "{p:?}");
        assert!(p[0].contains("unknown field"), "{p:?}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = MINIMAL
            .replace("port = 6514", "port = 70000")
            .replace("tenant = \"acme\"", "tenant = \"nope\"")
            .replace("type = \"audit_log\"", "type = \"audit_log\"\nlag = \"2d\"");
        let p = problems(&text);
        assert!(
            p.contains(&"sinks.siem.port: 70000 is out of range 1-65535".to_string()),
            "{p:?}"
        );
        assert!(
            p.contains(&"sources.audit.tenant: no tenant named `nope`".to_string()),
            "{p:?}"
        );
        assert!(
            p.contains(&"sources.audit.lag: `48h` is out of range 0s to 24h".to_string()),
            "{p:?}"
        );
    }

    /// Every duration key of the file, with a TOML snippet that sets it, where it goes
    /// in `MINIMAL`, and its bounds.
    fn duration_keys() -> Vec<(&'static str, &'static str, &'static str, Bounds)> {
        const TOP: &str = "state_dir = \"/tmp/c42fwd-test\"";
        const TENANT: &str = "client_secret = \"s3cret\"";
        const SOURCE: &str = "type = \"audit_log\"";
        const TCP: &str = "port = 6514";
        vec![
            ("shutdown_grace", "shutdown_grace", TOP, SHUTDOWN_GRACE),
            (
                "tenants.acme.request_timeout",
                "request_timeout",
                TENANT,
                TENANT_REQUEST_TIMEOUT,
            ),
            ("sources.audit.lag", "lag", SOURCE, LAG),
            (
                "sources.audit.poll_interval",
                "poll_interval",
                SOURCE,
                POLL_INTERVAL,
            ),
            (
                "sources.audit.reconcile_after",
                "reconcile_after",
                SOURCE,
                RECONCILE_AFTER,
            ),
            (
                "sinks.siem.connect_timeout",
                "connect_timeout",
                TCP,
                CONNECT_TIMEOUT,
            ),
            ("sinks.siem.keepalive", "keepalive", TCP, KEEPALIVE),
            (
                "sinks.relp.ack_timeout",
                "ack_timeout",
                "type = \"relp\"",
                ACK_TIMEOUT,
            ),
            (
                "sinks.hec.ack_timeout",
                "ack_timeout",
                "type = \"hec\"",
                ACK_TIMEOUT,
            ),
            (
                "sinks.hec.ack_poll_interval",
                "ack_poll_interval",
                "type = \"hec\"",
                ACK_POLL_INTERVAL,
            ),
            ("sinks.hec.max_wait", "max_wait", "type = \"hec\"", MAX_WAIT),
            (
                "sinks.hec.request_timeout",
                "request_timeout",
                "type = \"hec\"",
                SINK_REQUEST_TIMEOUT,
            ),
            (
                "sinks.web.max_wait",
                "max_wait",
                "type = \"http\"",
                MAX_WAIT,
            ),
            (
                "sinks.web.request_timeout",
                "request_timeout",
                "type = \"http\"",
                SINK_REQUEST_TIMEOUT,
            ),
        ]
    }

    /// `MINIMAL` with a RELP, a HEC and an HTTP sink, all routed.
    fn with_every_sink() -> String {
        MINIMAL
            .replace(
                "[[routes]]",
                r#"[sinks.relp]
type = "relp"
host = "127.0.0.1"
port = 2514
[sinks.hec]
type = "hec"
endpoint = "https://splunk.example.com:8088"
token = "t"
[sinks.web]
type = "http"
url = "https://collector.example.com/ingest"

[[routes]]"#,
            )
            .replace(
                "sinks = [\"siem\"]",
                "sinks = [\"siem\", \"relp\", \"hec\", \"web\"]",
            )
    }

    fn set(text: &str, after: &str, key: &str, value: &str) -> String {
        assert!(text.contains(after), "{after}");
        text.replacen(after, &format!("{after}\n{key} = \"{value}\""), 1)
    }

    #[test]
    fn every_duration_is_range_checked_with_its_key_path() {
        let base = with_every_sink();
        assert!(problems(&base).is_empty(), "{:?}", problems(&base));
        for (path, key, after, b) in duration_keys() {
            let min = show_duration(b.min);
            let max = show_duration(b.max);
            for ok in [b.min, b.max] {
                let text = set(&base, after, key, &show_duration(ok));
                assert!(
                    problems(&text).is_empty(),
                    "{path} = {ok:?}: {:?}",
                    problems(&text)
                );
            }
            let mut bad = vec![
                b.max + Duration::from_millis(1),
                Duration::from_secs(u64::MAX),
            ];
            if !b.min.is_zero() {
                bad.push(b.min - Duration::from_millis(1));
            }
            for value in bad {
                let shown = show_duration(value);
                let text = set(&base, after, key, &shown);
                let want = format!("{path}: `{shown}` is out of range {min} to {max}");
                assert_eq!(problems(&text), vec![want], "{path} = {shown}");
            }
        }
    }

    #[test]
    fn the_overflowing_poll_interval_of_the_issue_is_refused() {
        let text = set(
            MINIMAL,
            "type = \"audit_log\"",
            "poll_interval",
            "18446744073709551615s",
        );
        assert_eq!(
            problems(&text),
            vec![
                "sources.audit.poll_interval: `18446744073709551615s` is out of range 100ms to 24h"
            ]
        );
    }

    #[test]
    fn retry_bounds_and_order() {
        let with_retry = |r: &str| {
            MINIMAL.replace(
                "port = 6514",
                &format!("port = 6514\n[sinks.siem.retry]\n{r}"),
            )
        };
        assert!(problems(&with_retry("initial = \"1ms\"\nmax = \"1h\"")).is_empty());
        assert_eq!(
            problems(&with_retry("initial = \"0s\"")),
            vec!["sinks.siem.retry.initial: `0s` is out of range 1ms to 1h"]
        );
        assert_eq!(
            problems(&with_retry("max = \"2h\"")),
            vec!["sinks.siem.retry.max: `2h` is out of range 1ms to 1h"]
        );
        assert_eq!(
            problems(&with_retry("initial = \"2s\"\nmax = \"1s\"")),
            vec!["sinks.siem.retry.initial: must not be greater than retry.max"]
        );
    }

    #[test]
    fn numbers_are_range_checked_with_their_key_paths() {
        let base = with_every_sink();
        for (after, key, value, want) in [
            (
                "port = 6514",
                "queue_batches",
                "0",
                "sinks.siem.queue_batches: 0 is out of range 1-1024",
            ),
            (
                "port = 6514",
                "queue_batches",
                "1025",
                "sinks.siem.queue_batches: 1025 is out of range 1-1024",
            ),
            (
                "port = 2514",
                "window",
                "0",
                "sinks.relp.window: 0 is out of range 1-100000",
            ),
            (
                "type = \"hec\"",
                "max_events",
                "0",
                "sinks.hec.max_events: must be 1 to 100000",
            ),
            (
                "type = \"http\"",
                "max_bytes",
                "1023",
                "sinks.web.max_bytes: must be 1 KiB to 512 MiB",
            ),
            (
                "type = \"audit_log\"",
                "page_size",
                "10001",
                "sources.audit.page_size: 10001 is out of range: the API pages 1 to 10000 records",
            ),
            (
                "type = \"audit_log\"",
                "page_size",
                "-1",
                "sources.audit.page_size: -1 is out of range: the API pages 1 to 10000 records",
            ),
            (
                "port = 6514",
                "facility",
                "24",
                "sinks.siem.facility: 24 is out of range 0-23",
            ),
        ] {
            let text = base.replacen(after, &format!("{after}\n{key} = {value}"), 1);
            assert_eq!(problems(&text), vec![want.to_string()], "{key} = {value}");
        }
        let udp = MINIMAL.replace("type = \"tcp\"", "type = \"udp\"\nmax_datagram = 479");
        assert_eq!(
            problems(&udp),
            vec!["sinks.siem.max_datagram: 479 is out of range 480-65507 bytes"]
        );
    }

    #[test]
    fn names_must_be_usable_as_file_names() {
        for good in ["audit", "a", "Siem_2.prod-eu", &"x".repeat(MAX_NAME_LEN)] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a b",
            "../etc",
            "tab\t",
            "é",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            let m = name_problem(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(
                m.contains("A-Z a-z 0-9 _ . -") && m.contains("1 to 64"),
                "{m}"
            );
        }
        // In a file: one problem per bad name, at its path, and no follow-up problem
        // about routes or references to it.
        let text = MINIMAL
            .replace("[sources.audit]", "[sources.\"../audit\"]")
            .replace("sources = [\"audit\"]", "sources = [\"../audit\"]")
            .replace("[sinks.siem]", "[sinks.\".siem\"]")
            .replace("sinks = [\"siem\"]", "sinks = [\".siem\"]")
            .replace("[tenants.acme]", "[tenants.\"ac me\"]")
            .replace("tenant = \"acme\"", "tenant = \"ac me\"");
        let p = problems(&text);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("tenants.ac me: `ac me` is not a usable name"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("sources.../audit: `../audit` is not a usable name"),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("sinks..siem: `.siem` is not a usable name"),
            "{p:?}"
        );
    }

    /// The README's table of ranges says what the code checks.
    #[test]
    fn readme_lists_every_duration_range() {
        let readme = include_str!("../../README.md");
        for (key, b) in [
            ("`shutdown_grace`", SHUTDOWN_GRACE),
            ("`tenants.NAME.request_timeout`", TENANT_REQUEST_TIMEOUT),
            ("`sources.NAME.lag`", LAG),
            ("`sources.NAME.poll_interval`", POLL_INTERVAL),
            ("`sources.NAME.reconcile_after`", RECONCILE_AFTER),
            ("`sinks.NAME.connect_timeout` (tcp, relp)", CONNECT_TIMEOUT),
            ("`sinks.NAME.keepalive` (tcp)", KEEPALIVE),
            ("`sinks.NAME.ack_timeout` (relp; hec)", ACK_TIMEOUT),
            ("`sinks.NAME.ack_poll_interval` (hec)", ACK_POLL_INTERVAL),
            ("`sinks.NAME.max_wait` (hec, http)", MAX_WAIT),
            (
                "`sinks.NAME.request_timeout` (hec, http)",
                SINK_REQUEST_TIMEOUT,
            ),
            ("`sinks.NAME.retry.initial`, `retry.max`", RETRY),
        ] {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| {key} |")))
                .unwrap_or_else(|| panic!("README has no row for {key}"));
            let range = format!("| {} to {}", show_duration(b.min), show_duration(b.max));
            assert!(row.contains(&range), "README row {row:?} lacks {range:?}");
        }
        assert!(readme.contains(&format!(
            "1 to {MAX_NAME_LEN} characters from `A-Z a-z 0-9 _ . -`"
        )));
    }

    #[test]
    fn durations_are_shown_as_written() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(86400), "24h"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::MAX, "18446744073709551615999999999ns"),
            (Duration::from_secs(u64::MAX), "18446744073709551615s"),
        ] {
            assert_eq!(show_duration(d), s);
            if d != Duration::MAX {
                assert_eq!(humantime::parse_duration(s).ok(), Some(d), "{s}");
            }
        }
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
    fn start_position_is_limited_to_retention() {
        let now = Utc::now();
        assert!(parse_start("91d", now).unwrap_err().contains("90 days"));
        assert_eq!(
            parse_start("30d", now).unwrap(),
            StartAt::Ago(Duration::from_secs(30 * 86400))
        );
        assert!(parse_start("2001-01-01T00:00:00Z", now).is_err());
        assert!(parse_start("yesterday", now)
            .unwrap_err()
            .contains("RFC 3339"));
        let t = (now - chrono::Duration::days(1)).to_rfc3339();
        assert!(matches!(parse_start(&t, now).unwrap(), StartAt::At(_)));
    }

    #[test]
    fn secrets_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-file\n").unwrap();
        let text = MINIMAL.replace(
            "client_secret = \"s3cret\"",
            &format!("client_secret = {{ file = \"{}\" }}", f.display()),
        );
        let c = parse_str(&text).unwrap();
        match &c.tenants["acme"].credentials {
            Credentials::ApiClient { secret, .. } => assert_eq!(secret.expose(), "from-file"),
            other => panic!("{other:?}"),
        }
        // Debug output of the whole config never shows the secret.
        assert!(!format!("{c:?}").contains("from-file"));

        let text = MINIMAL.replace(
            "client_secret = \"s3cret\"",
            "client_secret = \"s3cret\"\nproxy = \"http://user:proxypass@proxy:3128\"",
        );
        let c = parse_str(&text).unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("proxypass") && !debug.contains("s3cret"),
            "{debug}"
        );
        assert!(
            debug.contains("http://user:%5Bredacted%5D@proxy:3128/")
                || debug.contains("[redacted]"),
            "{debug}"
        );

        let text = MINIMAL.replace(
            "client_secret = \"s3cret\"",
            "client_secret = { env = \"C42FWD_TEST_SURELY_UNSET_VAR\" }",
        );
        let p = problems(&text);
        assert_eq!(
            p,
            vec!["tenants.acme.client_secret: environment variable C42FWD_TEST_SURELY_UNSET_VAR is not set"]
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let text = MINIMAL.replace("https://api.us.code42.com", "http://api.us.code42.com");
        assert!(problems(&text)[0].starts_with("tenants.acme.base_url: plain http"));
        let text = MINIMAL.replace("https://api.us.code42.com", "http://127.0.0.1:4242");
        assert!(problems(&text).is_empty());
    }

    #[test]
    fn keys_that_do_not_apply_are_errors() {
        let text = MINIMAL.replace(
            "[[routes]]",
            "[sinks.out]\ntype = \"stdout\"\nport = 5\n\n[[routes]]",
        );
        let p = problems(&text);
        assert!(
            p.contains(&"sinks.out.port: does not apply to a stdout sink".to_string()),
            "{p:?}"
        );
    }

    #[test]
    fn unrouted_source_and_unused_sink() {
        let text = MINIMAL.replace(
            "sources = [\"audit\"]\nsinks = [\"siem\"]",
            "sources = []\nsinks = []",
        );
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|x| x.starts_with("sources.audit: is not in any route")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x == "sinks.siem: is not used by any route"),
            "{p:?}"
        );
    }

    #[test]
    fn legacy_user_login_with_totp() {
        let text = MINIMAL
            .replace("api = \"incydr\"", "api = \"legacy\"")
            .replace(
                "client_id = \"key-123\"\nclient_secret = \"s3cret\"",
                "username = \"admin@example.com\"\npassword = \"pw\"\ntotp = \"12345\"",
            );
        assert_eq!(
            problems(&text),
            vec!["tenants.acme.totp: must be a 6-digit code"]
        );
        let ok = text.replace("\"12345\"", "\"123456\"");
        assert!(problems(&ok).is_empty());
    }

    /// The shipped examples must stay valid. Secrets named by environment variable are
    /// replaced inline here, because tests must not depend on (or set) the environment.
    #[test]
    fn shipped_examples_validate() {
        for (name, text) in [
            ("c42fwd.toml", include_str!("../../examples/c42fwd.toml")),
            ("minimal.toml", include_str!("../../examples/minimal.toml")),
            (
                "emulator.toml",
                include_str!("../../examples/emulator.toml"),
            ),
        ] {
            // Files the example names do not exist here: point them at one that does.
            let text = text
                .replace("{ env = \"C42FWD_ACME_SECRET\" }", "\"x\"")
                .replace("{ env = \"C42FWD_HEC_TOKEN\" }", "\"x\"")
                .replace("{ file = \"/etc/c42fwd/collector.token\" }", "\"x\"")
                .replace("/etc/c42fwd/qradar-ca.pem", "Cargo.toml")
                .replace("/etc/c42fwd/client.pem", "Cargo.toml")
                .replace("/etc/c42fwd/client.key", "Cargo.toml");
            if let Err(e) = parse_str(&text) {
                panic!("examples/{name}: {e}");
            }
        }
    }

    /// `examples/emulator.toml` reads `c42fwd emulate` with its defaults: its lag must
    /// cover the emulator's, or live events would only be caught by reconciliation.
    #[test]
    fn the_emulator_example_lag_covers_the_emulators_lag() {
        let c = parse_str(include_str!("../../examples/emulator.toml")).unwrap();
        let emulated = c42fwd_emulator::EmulatorOptions::default();
        for (name, s) in &c.sources {
            assert!(
                s.lag >= emulated.lag,
                "sources.{name}.lag {:?} is shorter than the emulator's {:?}",
                s.lag,
                emulated.lag
            );
            assert!(
                s.reconcile_after.is_some(),
                "sources.{name}: reconciliation on"
            );
        }
    }

    #[test]
    fn alert_filter_groups_and_sync_log() {
        let text = MINIMAL
            .replace(
                "[sinks.siem]",
                r#"[sources.alerts]
type = "alerts"
tenant = "acme"
[[sources.alerts.filter_groups]]
clause = "or"
filters = [
  { term = "severity", operator = "IS", value = "HIGH" },
  { term = "AlertState", operator = "is_not", value = "RESOLVED" },
]
[sources.sync]
type = "sync_log"
tenant = "acme"

[sinks.siem]"#,
            )
            .replace(
                "sources = [\"audit\"]",
                "sources = [\"audit\", \"alerts\", \"sync\"]",
            );
        let c = parse_str(&text).unwrap();
        match &c.sources["alerts"].kind {
            SourceSpec::Alerts(groups) => {
                assert_eq!(groups.len(), 1);
                assert_eq!(groups[0].clause, FilterClause::Or);
                assert_eq!(groups[0].filters[0].term, "Severity");
                assert_eq!(groups[0].filters[1].term, "State");
                assert_eq!(groups[0].filters[1].operator, AlertOperator::IsNot);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.sources["alerts"].page_size, 100);
        assert!(matches!(c.sources["sync"].kind, SourceSpec::SyncLog));

        let bad = text.replace("value = \"HIGH\"", "value = \"HIGH\", extra = 1");
        assert!(
            problems(&bad)[0].contains("unknown field"),
            "{:?}",
            problems(&bad)
        );
        let bad = text.replace("operator = \"IS\"", "operator = \"ON_OR_AFTER\"");
        let p = problems(&bad);
        assert!(
            p[0].starts_with("sources.alerts.filter_groups[0].filters[0].operator: ON_OR_AFTER does not apply to Severity"),
            "{p:?}"
        );
        let bad = text.replace("term = \"severity\"", "term = \"colour\"");
        assert!(problems(&bad)[0].starts_with(
            "sources.alerts.filter_groups[0].filters[0].term: `colour` is not an alert filter term"
        ));
        let bad = text.replace(
            "type = \"sync_log\"\ntenant = \"acme\"",
            "type = \"sync_log\"\ntenant = \"acme\"\n[sources.sync.filters]",
        );
        let p = problems(&bad);
        assert!(
            p.contains(&"sources.sync.filters: does not apply to a sync_log source".to_string()),
            "{p:?}"
        );
        let bad = text.replace("type = \"alerts\"", "type = \"alerts\"\npage_size = 501");
        assert!(problems(&bad).contains(
            &"sources.alerts.page_size: 501 is out of range: the API pages 1 to 500 records"
                .to_string()
        ));
    }

    #[test]
    fn tls_relp_hec_and_http_sinks() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let text = MINIMAL
            .replace(
                "port = 6514",
                &format!("port = 6514\n[sinks.siem.tls]\nca_file = \"{}\"\nserver_name = \"siem.internal\"\nmin_version = \"1.3\"", ca.display()),
            )
            .replace(
                "[[routes]]",
                r#"[sinks.relp]
type = "relp"
host = "127.0.0.1"
port = 2514
window = 64
[sinks.hec]
type = "hec"
endpoint = "https://splunk.example.com:8088/"
token = "hec-token-value"
index = "code42"
sourcetype = "code42:audit"
indexer_ack = true
format = "json"
[sinks.web]
type = "http"
url = "https://collector.example.com/ingest"
bearer_token = "web-token-value"
headers = { "X-Tenant" = "acme" }
body = "json_array"
gzip = true

[[routes]]"#,
            )
            .replace("sinks = [\"siem\"]", "sinks = [\"siem\", \"relp\", \"hec\", \"web\"]");
        let c = parse_str(&text).unwrap();
        match &c.sinks["siem"].kind {
            SinkKind::Tcp(TcpOptions { tls: Some(t), .. }) => {
                assert_eq!(t.server_name.as_deref(), Some("siem.internal"));
                assert_eq!(t.min_version, TlsVersion::Tls13);
                assert!(!t.insecure_skip_verify);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.sinks["relp"].kind,
            SinkKind::Relp(RelpOptions { window: 64, .. })
        ));
        assert_eq!(c.sinks["relp"].encoding.framing, Framing::None);
        match &c.sinks["hec"].kind {
            SinkKind::Hec(h) => {
                assert_eq!(h.endpoint.as_str(), "https://splunk.example.com:8088/");
                assert!(h.indexer_ack && h.gzip);
                assert_eq!(h.token.expose(), "hec-token-value");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.sinks["hec"].encoding.syslog, SyslogStyle::None);
        match &c.sinks["web"].kind {
            SinkKind::Http(h) => {
                assert_eq!(h.body, HttpBody::JsonArray);
                assert_eq!(
                    h.headers,
                    vec![("X-Tenant".to_string(), "acme".to_string())]
                );
                assert!(matches!(&h.auth, HttpAuth::Bearer(t) if t.expose() == "web-token-value"));
            }
            other => panic!("{other:?}"),
        }
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hec-token-value") && !debug.contains("web-token-value"),
            "{debug}"
        );

        let bad = text.replace(
            "window = 64",
            "window = 64\nframing = \"lf\"\nkeepalive = \"1s\"",
        );
        let p = problems(&bad);
        assert!(p.contains(&"sinks.relp.framing: does not apply to a relp sink: the transport delimits records".to_string()), "{p:?}");
        assert!(
            p.contains(&"sinks.relp.keepalive: does not apply to a relp sink".to_string()),
            "{p:?}"
        );
        let bad = text.replace(
            "body = \"json_array\"",
            "body = \"json_array\"\nheaders = { Authorization = \"x\" }",
        );
        assert!(
            problems(&bad)
                .iter()
                .any(|x| x.contains("duplicate key") || x.starts_with("sinks.web.headers")),
            "{:?}",
            problems(&bad)
        );
        let bad = text.replace(
            "min_version = \"1.3\"",
            "min_version = \"1.1\"\nclient_cert = \"/nonexistent.pem\"",
        );
        let p = problems(&bad);
        assert!(
            p.iter()
                .any(|x| x.starts_with("sinks.siem.tls.min_version: `1.1`")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("sinks.siem.tls.client_cert: cannot read /nonexistent.pem")),
            "{p:?}"
        );
        assert!(p.iter().any(|x| x == "sinks.siem.tls.client_cert: client_cert and client_key go together: give both or neither"), "{p:?}");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let p = problems("state_dir = \n");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("line 1"), "{p:?}");
    }
}
