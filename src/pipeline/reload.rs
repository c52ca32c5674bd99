//! Reloading the configuration (SIGHUP): what asks for a reload ([`Reloads`]), what a
//! new configuration changes against the running one ([`Plan`]), and the settings only
//! a restart applies ([`keep_restart_only`]). Applying a plan is the pipeline's
//! (`Running::apply` in `pipeline.rs`): it is the only place that spawns.
//!
//! The rules (README.md, "Reloading"):
//! - the new file is read and validated whole first (secrets resolved, the API client
//!   of every changed tenant built, the TLS files of every sink to start read); on any
//!   problem the reload is refused, every problem logged, and the running
//!   configuration stays;
//! - a sink is restarted when its own options changed, and stopped when removed;
//! - a source is restarted when its own options, its tenant's options, the set of its
//!   sinks or the options of one of them changed, and stopped when removed: a restart
//!   rebuilds its route whole, so a source never sends to a sink it no longer routes to
//!   nor misses one it now does;
//! - everything else keeps running untouched: its task, its connection, its queue;
//! - `state_dir` (the checkpoints, the dead-letter files, the lock) and
//!   `metrics.listen` (a bound socket) change only with a restart: the running value
//!   stays, a WARN says so and `c42fwd_config_restart_pending` is 1; the rest of the
//!   reload applies. Refusing the whole reload for them would hold back a sink or
//!   source change the operator needs now, for a setting that cannot take effect
//!   before the next restart anyway.

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Reads a new configuration for a reload (blocking: files, the environment).
pub type Loader = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// What asks for reloads, and how a reload reads its configuration.
pub struct Reloads {
    pub(super) trigger: Trigger,
    /// The configuration file, for the log.
    pub(super) file: PathBuf,
    pub(super) load: Loader,
}

pub(super) enum Trigger {
    #[cfg(unix)]
    Hangup(tokio::signal::unix::Signal),
    Requests(mpsc::UnboundedReceiver<()>),
    Never,
}

impl Trigger {
    /// The next request. Requests made since the last call are one (SIGHUPs that
    /// come while a reload runs are one more reload after it). Never resolves when
    /// nothing can ask any more.
    pub(super) async fn next(&mut self) {
        match self {
            #[cfg(unix)]
            Trigger::Hangup(s) => {
                if s.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            Trigger::Requests(r) => {
                if r.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            Trigger::Never => std::future::pending().await,
        }
    }
}

impl Reloads {
    /// Reloads `file` on every SIGHUP. The handler is installed here: from now on a
    /// SIGHUP no longer ends the process (its default).
    #[cfg(unix)]
    pub fn on_sighup(file: PathBuf) -> std::io::Result<Reloads> {
        use tokio::signal::unix::{signal, SignalKind};
        let hangup = signal(SignalKind::hangup())?;
        let path = file.clone();
        Ok(Reloads {
            trigger: Trigger::Hangup(hangup),
            file,
            load: Arc::new(move || crate::config::load(&path)),
        })
    }

    /// Reloads with `load` on every item of `requests` (in-process callers, tests);
    /// `file` names the configuration in the log.
    pub fn on_request(
        requests: mpsc::UnboundedReceiver<()>,
        file: PathBuf,
        load: Loader,
    ) -> Reloads {
        Reloads {
            trigger: Trigger::Requests(requests),
            file,
            load,
        }
    }

    /// No reload is ever asked for.
    pub fn never() -> Reloads {
        Reloads {
            trigger: Trigger::Never,
            file: PathBuf::new(),
            load: Arc::new(|| {
                Err(ConfigError {
                    file: None,
                    problems: Vec::new(),
                })
            }),
        }
    }
}

/// Keeps in `new` the running values of the settings only a restart applies
/// (`state_dir`, `metrics.listen`), logging a WARN for each one the file changes, and
/// sets `c42fwd_config_restart_pending`.
pub(super) fn keep_restart_only(running: &Config, mut new: Config, metrics: &Metrics) -> Config {
    let mut pending = false;
    if new.state_dir != running.state_dir {
        tracing::warn!(
            setting = "state_dir",
            running = %running.state_dir.display(),
            configured = %new.state_dir.display(),
            "this setting changes only with a restart; the running value stays until then"
        );
        new.state_dir = running.state_dir.clone();
        pending = true;
    }
    if new.metrics_listen != running.metrics_listen {
        let shown =
            |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
        tracing::warn!(
            setting = "metrics.listen",
            running = %shown(running.metrics_listen),
            configured = %shown(new.metrics_listen),
            "this setting changes only with a restart; the running value stays until then"
        );
        new.metrics_listen = running.metrics_listen;
        pending = true;
    }
    metrics.config_restart_pending.set(i64::from(pending));
    new
}

/// Why a part stops or starts on a reload, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    Added,
    Removed,
    /// Its own options changed.
    Changed,
    /// A source whose tenant's options changed.
    TenantChanged,
    /// A source whose set of sinks changed.
    RouteChanged,
    /// A source one of whose sinks is restarted.
    SinkChanged,
}

impl Why {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Why::Added => "added",
            Why::Removed => "removed",
            Why::Changed => "its options changed",
            Why::TenantChanged => "its tenant's options changed",
            Why::RouteChanged => "the sinks of its routes changed",
            Why::SinkChanged => "a sink of its routes is restarted",
        }
    }
}

/// What a reload from one configuration to another stops and starts. A changed part is
/// in both lists: stopped (drained, committed) first, then started anew.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    pub stop_sources: BTreeMap<String, Why>,
    pub stop_sinks: BTreeMap<String, Why>,
    pub start_sinks: BTreeMap<String, Why>,
    pub start_sources: BTreeMap<String, Why>,
    /// Sources and sinks that keep running untouched.
    pub kept_sources: BTreeSet<String>,
    pub kept_sinks: BTreeSet<String>,
}

impl Plan {
    /// The plan from `old` to `new` (both validated).
    pub(super) fn new(old: &Config, new: &Config) -> Plan {
        let mut plan = Plan::default();
        for (name, sink) in &old.sinks {
            match new.sinks.get(name) {
                None => {
                    plan.stop_sinks.insert(name.clone(), Why::Removed);
                }
                Some(s) if s != sink => {
                    plan.stop_sinks.insert(name.clone(), Why::Changed);
                    plan.start_sinks.insert(name.clone(), Why::Changed);
                }
                Some(_) => {
                    plan.kept_sinks.insert(name.clone());
                }
            }
        }
        for name in new.sinks.keys() {
            if !old.sinks.contains_key(name) {
                plan.start_sinks.insert(name.clone(), Why::Added);
            }
        }
        let sinks_of = |cfg: &Config, source: &str| -> BTreeSet<String> {
            cfg.routes
                .get(source)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        for (name, source) in &old.sources {
            let Some(s) = new.sources.get(name) else {
                plan.stop_sources.insert(name.clone(), Why::Removed);
                continue;
            };
            let old_sinks = sinks_of(old, name);
            let why = if s != source {
                Some(Why::Changed)
            } else if old.tenants.get(&source.tenant) != new.tenants.get(&s.tenant) {
                Some(Why::TenantChanged)
            } else if old_sinks != sinks_of(new, name) {
                Some(Why::RouteChanged)
            } else if old_sinks.iter().any(|k| plan.stop_sinks.contains_key(k)) {
                Some(Why::SinkChanged)
            } else {
                None
            };
            match why {
                Some(why) => {
                    plan.stop_sources.insert(name.clone(), why);
                    plan.start_sources.insert(name.clone(), why);
                }
                None => {
                    plan.kept_sources.insert(name.clone());
                }
            }
        }
        for name in new.sources.keys() {
            if !old.sources.contains_key(name) {
                plan.start_sources.insert(name.clone(), Why::Added);
            }
        }
        plan
    }

    /// Whether the reload stops or starts nothing.
    pub(super) fn is_empty(&self) -> bool {
        self.stop_sources.is_empty()
            && self.stop_sinks.is_empty()
            && self.start_sinks.is_empty()
            && self.start_sources.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration of tenants `a` and `b`, sources `s1` (tenant a), `s2` (tenant
    /// b), sinks `k1`, `k2`, with `routes` (TOML `[[routes]]` tables) and `more` at the
    /// end of the file.
    fn cfg(tweak: impl FnOnce(&mut String)) -> Config {
        let mut text = r#"
state_dir = "/tmp/c42fwd-reload-plan"
[tenants.a]
api = "incydr"
base_url = "https://api.us.code42.com"
client_id = "id-a"
client_secret = "secret-a"
[tenants.b]
api = "incydr"
base_url = "https://api.us.code42.com"
client_id = "id-b"
client_secret = "secret-b"
[sources.s1]
type = "audit_log"
tenant = "a"
poll_interval = "30s"
[sources.s2]
type = "audit_log"
tenant = "b"
[sinks.k1]
type = "file"
path = "/tmp/k1"
[sinks.k2]
type = "file"
path = "/tmp/k2"
[[routes]]
sources = ["s1"]
sinks = ["k1"]
[[routes]]
sources = ["s2"]
sinks = ["k2"]
"#
        .to_string();
        tweak(&mut text);
        crate::config::parse_str(&text).unwrap()
    }

    fn names<V>(m: &BTreeMap<String, V>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let plan = Plan::new(&cfg(|_| {}), &cfg(|_| {}));
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.kept_sources.len(), 2);
        assert_eq!(plan.kept_sinks.len(), 2);
    }

    #[test]
    fn a_changed_sink_restarts_it_and_the_sources_that_route_to_it_only() {
        let new = cfg(|t| *t = t.replace("path = \"/tmp/k1\"", "path = \"/tmp/k1-new\""));
        let plan = Plan::new(&cfg(|_| {}), &new);
        assert_eq!(names(&plan.stop_sinks), ["k1"]);
        assert_eq!(names(&plan.start_sinks), ["k1"]);
        assert_eq!(plan.stop_sources.get("s1"), Some(&Why::SinkChanged));
        assert_eq!(names(&plan.start_sources), ["s1"]);
        assert_eq!(plan.kept_sources, BTreeSet::from(["s2".to_string()]));
        assert_eq!(plan.kept_sinks, BTreeSet::from(["k2".to_string()]));
    }

    #[test]
    fn a_new_sink_on_a_route_restarts_that_source_and_keeps_the_old_sink() {
        let new = cfg(|t| {
            *t = t.replace(
                "sources = [\"s1\"]\nsinks = [\"k1\"]",
                "sources = [\"s1\"]\nsinks = [\"k1\", \"k3\"]",
            );
            t.push_str("[sinks.k3]\ntype = \"file\"\npath = \"/tmp/k3\"\n");
        });
        let plan = Plan::new(&cfg(|_| {}), &new);
        assert!(plan.stop_sinks.is_empty(), "{plan:?}");
        assert_eq!(plan.start_sinks.get("k3"), Some(&Why::Added));
        assert_eq!(plan.stop_sources.get("s1"), Some(&Why::RouteChanged));
        assert_eq!(names(&plan.start_sources), ["s1"]);
        assert_eq!(plan.kept_sinks.len(), 2);
        assert_eq!(plan.kept_sources, BTreeSet::from(["s2".to_string()]));
    }

    #[test]
    fn a_changed_tenant_restarts_its_sources_only() {
        let new = cfg(|t| {
            *t = t.replace(
                "client_secret = \"secret-b\"",
                "client_secret = \"rotated\"",
            )
        });
        let plan = Plan::new(&cfg(|_| {}), &new);
        assert_eq!(plan.stop_sources.get("s2"), Some(&Why::TenantChanged));
        assert_eq!(names(&plan.start_sources), ["s2"]);
        assert!(plan.stop_sinks.is_empty() && plan.start_sinks.is_empty());
        assert_eq!(plan.kept_sources, BTreeSet::from(["s1".to_string()]));
    }

    #[test]
    fn changed_source_options_restart_that_source() {
        let new = cfg(|t| *t = t.replace("poll_interval = \"30s\"", "poll_interval = \"10s\""));
        let plan = Plan::new(&cfg(|_| {}), &new);
        assert_eq!(plan.stop_sources.get("s1"), Some(&Why::Changed));
        assert_eq!(names(&plan.start_sources), ["s1"]);
        assert!(plan.stop_sinks.is_empty());
    }

    #[test]
    fn removed_parts_stop_and_added_ones_start() {
        let new = cfg(|t| {
            let cut = t.find("[[routes]]\nsources = [\"s2\"]").unwrap();
            t.truncate(cut);
            *t = t.replace(
                "[sources.s2]\ntype = \"audit_log\"\ntenant = \"b\"\n",
                "[sources.s3]\ntype = \"sync_log\"\ntenant = \"b\"\n",
            );
            *t = t.replace("[sinks.k2]\ntype = \"file\"\npath = \"/tmp/k2\"\n", "");
            t.push_str("[[routes]]\nsources = [\"s3\"]\nsinks = [\"k1\"]\n");
        });
        let plan = Plan::new(&cfg(|_| {}), &new);
        assert_eq!(plan.stop_sources.get("s2"), Some(&Why::Removed));
        assert_eq!(plan.stop_sinks.get("k2"), Some(&Why::Removed));
        assert_eq!(plan.start_sources.get("s3"), Some(&Why::Added));
        assert!(plan.start_sinks.is_empty());
        assert_eq!(plan.kept_sources, BTreeSet::from(["s1".to_string()]));
        assert_eq!(plan.kept_sinks, BTreeSet::from(["k1".to_string()]));
    }

    #[test]
    fn restart_only_settings_keep_their_running_values_and_say_so() {
        let metrics = Metrics::new();
        let old = cfg(|_| {});
        let new = cfg(|t| {
            *t = t.replace("/tmp/c42fwd-reload-plan", "/tmp/elsewhere");
            t.push_str("[metrics]\nlisten = \"127.0.0.1:9842\"\n");
        });
        let kept = keep_restart_only(&old, new, &metrics);
        assert_eq!(kept.state_dir, old.state_dir);
        assert_eq!(kept.metrics_listen, None);
        assert!(metrics.render().contains("c42fwd_config_restart_pending 1"));
        let again = keep_restart_only(&old, cfg(|_| {}), &metrics);
        assert_eq!(again, old);
        assert!(metrics.render().contains("c42fwd_config_restart_pending 0"));
    }
}
