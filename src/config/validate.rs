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
//!
//! This module owns the file as a whole (the top-level keys, routes, the references
//! between sections) and the entry points [`load`] and [`parse_str`]; each section's
//! checks are in `tenant`, `source` and `sink`, their shared tools in `check`, and
//! which keys a table may hold is settled by `raw`. The public constants and helpers
//! of those modules are re-exported here, where callers have always found them.

use super::check::Problems;
use super::raw::RawConfig;
use super::*;
use super::{sink::sink, source::source, tenant::tenant};
use std::path::Path;

/// The default of `metrics.ready_timeout`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

pub use super::check::*;
pub use super::sink::default_hostname;
pub use super::source::{
    parse_start, ALERT_TERMS, DEFAULT_RECONCILE_AFTER, MAX_ALERT_PAGE_SIZE, MAX_PAGE_SIZE,
    RETENTION,
};

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    parse_str(&text).map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        e
    })
}

/// Parses and validates configuration text.
pub fn parse_str(text: &str) -> Result<Config, ConfigError> {
    let raw = super::raw::parse(text).map_err(|problems| ConfigError {
        file: None,
        problems,
    })?;
    validate(raw, chrono::Utc::now())
}

/// What the checkpoint commands need of a configuration: the state directory and the
/// sources. Reading it resolves no secret and checks no tenant or sink beyond the
/// file's syntax, so `c42fwd checkpoint` works where the daemon's secrets are not
/// readable (another user, a shell without the service's environment). `c42fwd status`
/// reads it too, for `metrics.listen`.
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub state_dir: PathBuf,
    pub sources: BTreeMap<String, Source>,
    /// `metrics.listen`, if the file has a `[metrics]` table.
    pub metrics_listen: Option<SocketAddr>,
}

/// Reads a configuration file for the checkpoint commands (see [`StateConfig`]).
pub fn load_state(path: &Path) -> Result<StateConfig, ConfigError> {
    let text = read(path)?;
    parse_state_str(&text).map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        e
    })
}

/// Parses configuration text into a [`StateConfig`]: the file's syntax, `state_dir`
/// and every source are checked; tenants only by name, sinks and routes not at all.
pub fn parse_state_str(text: &str) -> Result<StateConfig, ConfigError> {
    let raw = super::raw::parse(text).map_err(|problems| ConfigError {
        file: None,
        problems,
    })?;
    let now = chrono::Utc::now();
    let mut p = Problems::default();
    let state_dir = state_dir(raw.state_dir, &mut p);
    let metrics_listen = metrics_listen(raw.metrics.as_ref(), &mut p);
    let tenants: std::collections::BTreeSet<String> = raw.tenants.into_keys().collect();
    let mut sources = BTreeMap::new();
    for (name, s) in raw.sources {
        p.name("sources", &name);
        if let Some(s) = source(&name, s, &|t| tenants.contains(t), now, &mut p) {
            sources.insert(name, s);
        }
    }
    if !p.0.is_empty() {
        return Err(ConfigError {
            file: None,
            problems: p.0,
        });
    }
    Ok(StateConfig {
        state_dir,
        sources,
        metrics_listen,
    })
}

/// `metrics.listen`, parsed (a problem when it is no socket address).
fn metrics_listen(raw: Option<&super::raw::RawMetrics>, p: &mut Problems) -> Option<SocketAddr> {
    raw.and_then(|m| {
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
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        problems: vec![Problem {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }],
    })
}

fn state_dir(raw: Option<PathBuf>, p: &mut Problems) -> PathBuf {
    let state_dir = raw.unwrap_or_else(|| PathBuf::from("/var/lib/c42fwd"));
    if state_dir.as_os_str().is_empty() {
        p.add("state_dir", "must not be empty");
    }
    state_dir
}

/// Validates a raw config. `now` is a parameter so that tests are deterministic.
pub fn validate(raw: RawConfig, now: DateTime<Utc>) -> Result<Config, ConfigError> {
    let mut p = Problems::default();

    let state_dir = state_dir(raw.state_dir, &mut p);
    let ready_timeout = raw
        .metrics
        .as_ref()
        .and_then(|m| m.ready_timeout)
        .unwrap_or(DEFAULT_READY_TIMEOUT);
    p.duration("metrics.ready_timeout", ready_timeout, READY_TIMEOUT);
    let metrics_listen = metrics_listen(raw.metrics.as_ref(), &mut p);
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
        if let Some(s) = source(&name, s, &|t| tenants.contains_key(t), now, &mut p) {
            sources.insert(name, s);
        }
    }
    // File Events are read from the Incydr gateway only (`docs/api.md`).
    for (name, s) in &sources {
        let legacy = tenants
            .get(&s.tenant)
            .is_some_and(|t: &Tenant| t.api == ApiGeneration::Legacy);
        if matches!(s.kind, SourceSpec::FileEvents(_)) && legacy {
            p.add(
                format!("sources.{name}.type"),
                format!(
                    "file_events needs an incydr tenant; tenant `{}` has api = \"legacy\" (c42fwd reads file events from /v2/file-events only)",
                    s.tenant
                ),
            );
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
    super::kafka::fill_tenants(&mut sinks, &routes, |s| {
        sources.get(s).map(|s| s.tenant.clone())
    });
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
        ready_timeout,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::encode::{Format, Framing, SyslogStyle};

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

    /// The checkpoint commands' reading resolves no secret and checks no sink: a
    /// secret from an unset variable, a missing secret file, a sink's missing CA file
    /// are all fine; the state directory and the sources are still checked.
    #[test]
    fn the_state_view_reads_no_secret_and_checks_only_what_it_needs() {
        let text = with_every_sink()
            .replace(
                "client_secret = \"s3cret\"",
                "client_secret = { env = \"C42FWD_UNIT_TEST_NEVER_SET\" }",
            )
            .replace(
                "port = 6514",
                "port = 6514\n[sinks.siem.tls]\nca_file = \"/nonexistent/ca.pem\"",
            );
        let full = problems(&text);
        assert!(
            full.iter()
                .any(|p| p.contains("C42FWD_UNIT_TEST_NEVER_SET")),
            "{full:?}"
        );
        let state = parse_state_str(&text).unwrap();
        assert_eq!(state.state_dir, PathBuf::from("/tmp/c42fwd-test"));
        assert_eq!(state.sources.keys().collect::<Vec<_>>(), vec!["audit"]);
        // A source problem is still one, and so is a tenant that does not exist.
        let bad = text.replace("tenant = \"acme\"", "tenant = \"nope\"\nstart = \"120d\"");
        let e = parse_state_str(&bad).unwrap_err().to_string();
        assert!(
            e.contains("sources.audit.tenant: no tenant named `nope`"),
            "{e}"
        );
        assert!(e.contains("sources.audit.start"), "{e}");
    }

    #[test]
    fn ready_timeout_defaults_to_a_minute_and_is_range_checked() {
        assert_eq!(
            parse_str(MINIMAL).unwrap().ready_timeout,
            DEFAULT_READY_TIMEOUT
        );
        let with = |v: &str| {
            MINIMAL.replace(
                "[tenants.acme]",
                &format!(
                    "[metrics]\nlisten = \"127.0.0.1:0\"\nready_timeout = \"{v}\"\n[tenants.acme]"
                ),
            )
        };
        assert_eq!(
            parse_str(&with("5s")).unwrap().ready_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(
            problems(&with("500ms")),
            vec!["metrics.ready_timeout: `500ms` is out of range 1s to 24h".to_string()]
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let p = problems("state_dir = \n");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("line 1"), "{p:?}");
    }
}
