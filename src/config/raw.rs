//! Phase one of the configuration: the TOML file as serde structs, nothing more.
//!
//! Every table denies unknown keys, so a typo is an error with its key path rather than
//! a silently ignored setting. Values stay close to the text (durations are parsed by
//! `humantime`, but ranges, references and secrets are checked in `validate`).
//! Sources and sinks are flat tables with a `type` key: `validate` then says precisely
//! which keys do not apply to that type, which serde's tagged enums cannot.

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub state_dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    pub metrics: Option<RawMetrics>,
    #[serde(default)]
    pub tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    pub sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    pub sinks: BTreeMap<String, RawSink>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: String,
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
pub struct RawSource {
    #[serde(rename = "type")]
    pub kind: String,
    pub tenant: String,
    #[serde(default, with = "humantime_serde")]
    pub lag: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// `"30d"` (how far back) or an RFC 3339 time.
    pub start: Option<String>,
    pub page_size: Option<i64>,
    /// Compare closed windows with the API's own counts (default true).
    pub reconcile: Option<bool>,
    /// How long past `lag` a window is compared (default 10m).
    #[serde(default, with = "humantime_serde")]
    pub reconcile_after: Option<Duration>,
    /// Audit Log filters.
    pub filters: Option<RawAuditFilters>,
    /// Alerts filter groups.
    pub filter_groups: Option<Vec<RawAlertFilterGroup>>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    #[serde(rename = "type")]
    pub kind: String,
    // network sinks
    pub host: Option<String>,
    pub port: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub keepalive: Option<Duration>,
    // udp
    pub max_datagram: Option<i64>,
    pub oversize: Option<String>,
    // file
    pub path: Option<PathBuf>,
    // tls (tcp, relp; CA and client certificate also for hec/http)
    pub tls: Option<RawTls>,
    // relp
    pub window: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub ack_timeout: Option<Duration>,
    // hec / http
    pub endpoint: Option<String>,
    pub url: Option<String>,
    pub token: Option<SecretRef>,
    pub index: Option<String>,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    pub channel: Option<String>,
    pub indexer_ack: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub ack_poll_interval: Option<Duration>,
    pub gzip: Option<bool>,
    pub max_events: Option<i64>,
    pub max_bytes: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub max_wait: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    pub body: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub bearer_token: Option<SecretRef>,
    // encoding
    pub format: Option<String>,
    pub syslog: Option<String>,
    pub framing: Option<String>,
    pub facility: Option<Facility>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    // delivery
    pub queue_batches: Option<i64>,
    pub retry: Option<RawRetry>,
    pub dead_letter_max_bytes: Option<i64>,
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
}
