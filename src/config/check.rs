//! The shared machinery of validation: the problem collector, the [`Bounds`] of every
//! duration key, how a duration is shown, the rule for names, and the URL and secret
//! checks that tenants and sinks both use.
//!
//! It owns no section of the file: `tenant`, `source` and `sink` validate theirs with
//! these tools, and `validate` puts the sections together.

use super::raw::SecretRef;
use crate::secret::Secret;
use reqwest::Url;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

/// `min..=max`, for the table below.
const fn between(min: Duration, max: Duration) -> Bounds {
    Bounds { min, max }
}

pub const SHUTDOWN_GRACE: Bounds = between(secs(1), HOUR);
pub const READY_TIMEOUT: Bounds = between(secs(1), DAY);
pub const TENANT_REQUEST_TIMEOUT: Bounds = between(secs(1), HOUR);
pub const LAG: Bounds = between(Duration::ZERO, DAY);
/// A sessions source's `lag`, its update window (`config::source`).
pub const SESSION_LAG: Bounds = between(secs(60), secs(30 * 24 * 3600));
pub const POLL_INTERVAL: Bounds = between(ms(100), DAY);
pub const RECONCILE_AFTER: Bounds = between(secs(1), DAY);
pub const CONNECT_TIMEOUT: Bounds = between(ms(100), secs(600));
/// Linux refuses a keepalive idle time above 32767 s; the kernel default is 2 h.
pub const KEEPALIVE: Bounds = between(secs(1), secs(7200));
pub const ACK_TIMEOUT: Bounds = between(secs(1), HOUR);
pub const ACK_POLL_INTERVAL: Bounds = between(ms(10), secs(300));
/// The HEC sink's ack poll defaults (`sinks/http/hec/schedule.rs`): the slowest pace,
/// the first poll after a send, and the requests that may wait for acknowledgement.
pub const HEC_ACK_POLL_INTERVAL: Duration = secs(1);
pub const HEC_ACK_POLL_INITIAL: Duration = ms(20);
pub const HEC_MAX_PENDING_ACKS: usize = 64;
/// The most `max_pending_acks` may be: each pending request holds its body.
pub const MAX_PENDING_ACKS_LIMIT: usize = 4096;
/// The first HEC ack poll after a send; also at most the sink's `ack_poll_interval`.
pub const ACK_POLL_INITIAL: Bounds = between(ms(1), secs(300));
pub const MAX_WAIT: Bounds = between(ms(1), secs(600));
pub const SINK_REQUEST_TIMEOUT: Bounds = between(secs(1), HOUR);
pub const RETRY: Bounds = between(ms(1), HOUR);

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

/// Collects problems while walking the raw config.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// `value` of key `path` must lie within `b`.
    pub(super) fn duration(&mut self, path: impl Into<String>, value: Duration, b: Bounds) {
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
    pub(super) fn name(&mut self, section: &str, name: &str) {
        if let Some(m) = name_problem(name) {
            self.add(format!("{section}.{}", name.escape_debug()), m);
        }
    }
}

/// The clause of the filter group at `gat` (`AND`, the default, or `OR`, in any case),
/// with a problem for any other clause and for a group of no filters.
pub(super) fn filter_group(
    gat: &str,
    clause: Option<&str>,
    filters: usize,
    p: &mut Problems,
) -> super::FilterClause {
    let clause = match clause.map(str::to_ascii_uppercase).as_deref() {
        None | Some("AND") => super::FilterClause::And,
        Some("OR") => super::FilterClause::Or,
        Some(other) => {
            p.add(
                format!("{gat}.clause"),
                format!("`{other}` is not AND or OR"),
            );
            super::FilterClause::And
        }
    };
    if filters == 0 {
        p.add(format!("{gat}.filters"), "must have at least one filter");
    }
    clause
}

pub(super) fn url(path: &str, value: &str, p: &mut Problems) -> Option<Url> {
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

pub(super) fn is_loopback(u: &Url) -> bool {
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

pub(super) fn secret(path: String, r: &SecretRef, p: &mut Problems) -> Option<Secret> {
    read_secret(r).map_err(|m| p.add(path, m)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

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
            (
                "`sinks.NAME.connect_timeout` (tcp, relp, unix)",
                CONNECT_TIMEOUT,
            ),
            ("`sinks.NAME.keepalive` (tcp)", KEEPALIVE),
            ("`sinks.NAME.ack_timeout` (relp; hec)", ACK_TIMEOUT),
            ("`sinks.NAME.ack_poll_interval` (hec)", ACK_POLL_INTERVAL),
            ("`sinks.NAME.ack_poll_initial` (hec)", ACK_POLL_INITIAL),
            ("`sinks.NAME.max_wait` (hec, http)", MAX_WAIT),
            (
                "`sinks.NAME.request_timeout` (hec, http)",
                SINK_REQUEST_TIMEOUT,
            ),
            ("`sinks.NAME.retry.initial`, `retry.max`", RETRY),
            (
                "`sinks.NAME.linger` (kafka)",
                super::super::kafka::KAFKA_LINGER,
            ),
            (
                "`sinks.NAME.delivery_timeout` (kafka)",
                super::super::kafka::KAFKA_DELIVERY_TIMEOUT,
            ),
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
}
