//! Configuration: one TOML file, read in two phases.
//!
//! Phase one (`raw`) is serde structs that mirror the file, with `deny_unknown_fields`
//! everywhere; a source or sink is the struct of its `type`, so a key that its kind
//! does not take is refused there. Phase two (`validate`, with `tenant`, `source` and
//! `sink` for one section each and `check` for what they share) checks everything that
//! can be checked without the network (references between sections, ranges, URLs,
//! secrets that can be read) and produces the types in this file, in which illegal
//! states cannot be written. Building running components from them (sockets, HTTP
//! clients) is the pipeline's job, not this module's: nothing here opens a socket.
//!
//! Every problem is reported with the key path it belongs to (`sinks.siem.port: ...`),
//! and the line where toml or the key check knows it; all of them at once where the
//! reading can go on, so that `c42fwd validate` shows the whole list.

mod check;
pub mod file_events;
mod kafka;
pub mod raw;
mod sink;
mod source;
mod tenant;
#[cfg(test)]
pub(crate) mod test_support;
pub mod validate;

pub use file_events::FileEventFilters;

use crate::secret::Secret;
use chrono::{DateTime, Utc};
use reqwest::Url;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use check::{
    ConfigError, Problem, HEC_ACK_POLL_INITIAL, HEC_ACK_POLL_INTERVAL, HEC_MAX_PENDING_ACKS,
};
pub use kafka::{
    KafkaAcks, KafkaCompression, KafkaKey, KafkaOptions, KafkaSasl, OAuthLogin, SaslLogin,
    SaslMechanism, TopicPart, TopicTemplate,
};
pub use validate::{load, load_state, parse_state_str, parse_str, StateConfig};

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where checkpoints (one file per source) and dead-letter files live.
    pub state_dir: PathBuf,
    /// Address of the Prometheus `/metrics` endpoint, if enabled.
    pub metrics_listen: Option<SocketAddr>,
    /// How long a source or sink may go without progress before `/ready` names it
    /// (`metrics.ready_timeout`, see [`crate::health`]).
    pub ready_timeout: Duration,
    /// How long shutdown waits for in-flight batches before giving up on them.
    pub shutdown_grace: Duration,
    pub tenants: BTreeMap<String, Tenant>,
    pub sources: BTreeMap<String, Source>,
    pub sinks: BTreeMap<String, Sink>,
    /// For each source name, the names of the sinks that receive it (union of routes).
    /// Every source appears here with at least one sink.
    pub routes: BTreeMap<String, Vec<String>>,
}

/// Which generation of the Code42 API a tenant speaks (see `docs/api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiGeneration {
    /// The Incydr gateway: `/v1/oauth`, `/v1/audit/...`.
    Incydr,
    /// The legacy Code42 API: `/api/v3/auth/jwt`, service discovery, `/rpc/search/...`.
    Legacy,
}

#[derive(Clone, PartialEq)]
pub struct Tenant {
    pub name: String,
    pub api: ApiGeneration,
    /// The console / gateway base URL, without a trailing slash.
    pub base_url: Url,
    /// Explicit per-service URLs (legacy); when absent, service discovery is used.
    pub services: ServiceUrls,
    pub credentials: Credentials,
    /// HTTP(S) proxy for all API calls; `None` means no proxy (environment ignored).
    pub proxy: Option<Url>,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Extra CA certificates (PEM) to trust for the API, besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// The most bytes of one API response body read; a larger one is cut off and
    /// refused (`max_response_bytes`, default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub max_response_bytes: u64,
    /// The most data requests in flight to the tenant at once, before 429s lower it
    /// (`max_concurrent_requests`, default [`DEFAULT_MAX_CONCURRENT_REQUESTS`];
    /// [`crate::api::limiter`]).
    pub max_concurrent_requests: usize,
}

/// The default of a tenant's `max_concurrent_requests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 2;

/// The range `max_concurrent_requests` accepts.
pub const MAX_CONCURRENT_REQUESTS_RANGE: std::ops::RangeInclusive<usize> = 1..=16;

/// The default of a tenant's `max_response_bytes`: a full Audit Log page of 10,000
/// events is a few MiB; this leaves room for large alert details.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// The range `max_response_bytes` accepts.
pub const MAX_RESPONSE_BYTES_RANGE: std::ops::RangeInclusive<u64> =
    1024 * 1024..=1024 * 1024 * 1024;

// Written by hand: a proxy URL may carry a password (`http://user:pw@proxy:3128`), and
// `Debug` output must never show a secret (ARCHITECTURE.md, invariant 6).
impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("name", &self.name)
            .field("api", &self.api)
            .field("base_url", &self.base_url.as_str())
            .field("services", &self.services)
            .field("credentials", &self.credentials)
            .field("proxy", &self.proxy.as_ref().map(redacted_url))
            .field("request_timeout", &self.request_timeout)
            .field("ca_file", &self.ca_file)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .finish()
    }
}

/// A URL for logs and `Debug`: a password in it and the values of its query string
/// (collectors take API keys there: `?api-key=...`) are replaced by `[redacted]`; the
/// query's parameter names stay, to tell URLs apart.
pub fn redacted_url(u: &Url) -> String {
    if u.password().is_none() && u.query().is_none() {
        return u.to_string();
    }
    let mut u = u.clone();
    if u.password().is_some() {
        // Cannot fail for a URL that already has a password (it has a host).
        let _ = u.set_password(Some("[redacted]"));
    }
    if u.query().is_some() {
        let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let mut q = u.query_pairs_mut();
        q.clear();
        for k in &names {
            q.append_pair(k, "[redacted]");
        }
        drop(q);
    }
    u.to_string()
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceUrls {
    pub audit_log: Option<Url>,
    pub alerts: Option<Url>,
    pub fed_observer: Option<Url>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// OAuth client credentials (Incydr `/v1/oauth`, legacy `/api/v3/oauth/token`).
    ApiClient { client_id: String, secret: Secret },
    /// Legacy user login (`/api/v3/auth/jwt` with Basic, optional `totp-auth`).
    User {
        username: String,
        password: Secret,
        totp: Option<Secret>,
    },
}

/// Where a source starts when it has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// This far back from the moment of the first start (at most 90 days).
    Ago(Duration),
    /// An absolute time (at most 90 days back when the source first starts).
    At(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub tenant: String,
    pub kind: SourceSpec,
    /// How long after it occurred an event may still appear (ARCHITECTURE.md, invariant 2).
    pub lag: Duration,
    /// Pause between polls once the source is caught up.
    pub poll_interval: Duration,
    pub start: StartAt,
    /// Events per API page (also the batch size handed to the sinks).
    pub page_size: u32,
    /// How long past `lag` a closed window is compared with the API's own count
    /// ([`crate::sources::reconcile`]); `None`: reconciliation is off.
    pub reconcile_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    AuditLog(AuditFilters),
    /// Alerts (`query-alerts` + `query-details`), with optional filter groups that are
    /// AND-ed with the source's own `CreatedAt` window.
    Alerts(Vec<AlertFilterGroup>),
    /// The Directory Sync Log (`/api/v3/DirectorySyncLog`).
    SyncLog,
    /// Incydr sessions (`GET /v1/sessions`), each version (`lastUpdated`) once.
    Sessions(SessionOptions),
    /// File Events (`/v2/file-events`), with optional filters.
    FileEvents(FileEventFilters),
}

/// What a `sessions` source asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// The API's `has_alerts`: sessions that triggered an alert (true, the API's
    /// default) or those that did not.
    pub has_alerts: bool,
    /// Each session's file events (`GET /v1/sessions/{id}/events`) are put into its
    /// record as `fileEvents`.
    pub include_events: bool,
}

/// One `groups[]` entry of a `query-alerts` body (`docs/api.md`): filters joined by `clause`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFilterGroup {
    pub clause: FilterClause,
    pub filters: Vec<AlertFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterClause {
    And,
    Or,
}

impl FilterClause {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterClause::And => "AND",
            FilterClause::Or => "OR",
        }
    }
}

/// One filter: `term` in the API's PascalCase (`Severity`, `State`, `RuleName`, `RuleId`,
/// `Actor`, `ActorId`, `Description`, `Name`, `Type`, `Id`, `CreatedAt`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFilter {
    pub term: String,
    pub operator: AlertOperator,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOperator {
    Is,
    IsNot,
    Contains,
    DoesNotContain,
    OnOrAfter,
    OnOrBefore,
    On,
}

impl AlertOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertOperator::Is => "IS",
            AlertOperator::IsNot => "IS_NOT",
            AlertOperator::Contains => "CONTAINS",
            AlertOperator::DoesNotContain => "DOES_NOT_CONTAIN",
            AlertOperator::OnOrAfter => "ON_OR_AFTER",
            AlertOperator::OnOrBefore => "ON_OR_BEFORE",
            AlertOperator::On => "ON",
        }
    }

    pub fn parse(s: &str) -> Option<AlertOperator> {
        Some(match s.to_ascii_uppercase().as_str() {
            "IS" => AlertOperator::Is,
            "IS_NOT" => AlertOperator::IsNot,
            "CONTAINS" => AlertOperator::Contains,
            "DOES_NOT_CONTAIN" => AlertOperator::DoesNotContain,
            "ON_OR_AFTER" => AlertOperator::OnOrAfter,
            "ON_OR_BEFORE" => AlertOperator::OnOrBefore,
            "ON" => AlertOperator::On,
            _ => return None,
        })
    }
}

/// Optional Audit Log filters (`docs/api.md`). Empty lists mean "all".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilters {
    pub event_types: Vec<String>,
    pub actor_ids: Vec<String>,
    pub actor_names: Vec<String>,
    pub actor_ip_addresses: Vec<String>,
    pub user_types: Vec<String>,
    pub affected_user_ids: Vec<String>,
    pub affected_user_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    pub encoding: crate::encode::EncoderOptions,
    /// Capacity of the sink's queue, in batches (ARCHITECTURE.md, invariant 3).
    pub queue_batches: usize,
    /// Bounds of the reconnect / retry backoff.
    pub retry: crate::retry::BackoffPolicy,
    /// The largest size of the sink's dead-letter file; past it the sink stalls.
    pub dead_letter_max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Stdout,
    File(FileOptions),
    /// Syslog over TCP, or over TLS (RFC 5425).
    Tcp(TcpOptions),
    /// RELP (acknowledged syslog, as rsyslog's librelp speaks it).
    Relp(RelpOptions),
    /// Splunk HTTP Event Collector.
    Hec(HecOptions),
    /// A generic HTTP endpoint taking batches of JSON.
    Http(HttpOptions),
    Udp(UdpOptions),
    /// A Unix-domain socket on this host (a local collector), stream or datagram.
    Unix(UnixOptions),
    /// A Kafka topic (or several, by template).
    Kafka(KafkaOptions),
}

/// A file sink: records appended to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    pub path: PathBuf,
}

/// Syslog over TCP (RFC 6587 framing), plain or TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOptions {
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub keepalive: Option<Duration>,
    /// Syslog over TLS (RFC 5425) when set.
    pub tls: Option<TlsOptions>,
}

/// RELP: every record one `syslog` frame, acknowledged by the receiver's `rsp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelpOptions {
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    /// Largest number of `syslog` frames sent but not yet answered by `rsp`.
    pub window: usize,
    /// How long a frame may wait for its `rsp` before the session counts as broken.
    pub ack_timeout: Duration,
    pub tls: Option<TlsOptions>,
}

/// Syslog over UDP: one record per datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpOptions {
    pub host: String,
    pub port: u16,
    /// Largest datagram sent; larger records follow `oversize`.
    pub max_datagram: usize,
    pub oversize: OversizePolicy,
}

/// A Unix-domain socket sink: the socket's path and how records travel on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixOptions {
    pub path: PathBuf,
    pub mode: UnixMode,
    /// Bounds a connect (stream) or the set-up of the socket (datagram).
    pub connect_timeout: Duration,
}

/// How a Unix-domain socket sink carries records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixMode {
    /// `SOCK_STREAM`: framed records (octet counting or LF), written again after a
    /// connection end like the TCP sink's.
    Stream,
    /// `SOCK_DGRAM`: one record per datagram; larger ones follow `oversize`.
    Datagram {
        max_datagram: usize,
        oversize: OversizePolicy,
    },
}

/// TLS client settings (rustls). Verification is on unless `insecure_skip_verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM CA bundle to trust; `None` = the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key, for mutual TLS (both or neither).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The name to verify and send as SNI; default the sink's host.
    pub server_name: Option<String>,
    pub min_version: TlsVersion,
    /// Accept any certificate. Logged as a warning at every start.
    pub insecure_skip_verify: bool,
}

/// The settings of an empty `tls` table: the system's roots, verification on, the
/// sink's host as the name to verify, TLS 1.2 or newer.
impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca_file: None,
            client_cert: None,
            client_key: None,
            server_name: None,
            min_version: TlsVersion::Tls12,
            insecure_skip_verify: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// When an HTTP-based sink sends a batch: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpBatching {
    pub max_events: usize,
    pub max_bytes: usize,
    pub max_wait: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HecOptions {
    /// The HEC base URL, e.g. `https://splunk.example.com:8088` (paths are added).
    pub endpoint: Url,
    pub token: Secret,
    pub index: Option<String>,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    /// The `host` of the envelope; default the machine's host name.
    pub host: String,
    /// `X-Splunk-Request-Channel`; generated (UUID) when indexer acks are on and none is set.
    pub channel: Option<String>,
    pub gzip: bool,
    pub batching: HttpBatching,
    /// Poll `/services/collector/ack` so that Delivered means indexed.
    pub indexer_ack: bool,
    /// The slowest pace of ack polls: what the adaptive schedule backs off to while HEC
    /// confirms nothing (`sinks/http/hec/schedule.rs`).
    pub ack_poll_interval: Duration,
    /// The first ack poll after a send, and the pace while HEC confirms requests.
    pub ack_poll_initial: Duration,
    /// Requests that may wait for their indexer acknowledgement at once; beyond that
    /// the sink takes no more batches (backpressure).
    pub max_pending_acks: usize,
    pub ack_timeout: Duration,
    pub request_timeout: Duration,
    /// TLS settings for https endpoints (`server_name` does not apply).
    pub tls: TlsOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpBody {
    /// One JSON document per line.
    NdJson,
    /// One JSON array per request.
    JsonArray,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HttpAuth {
    None,
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    pub url: Url,
    pub body: HttpBody,
    /// Extra request headers (names validated; values are not secrets).
    pub headers: Vec<(String, String)>,
    pub auth: HttpAuth,
    pub gzip: bool,
    pub batching: HttpBatching,
    pub request_timeout: Duration,
    /// TLS settings for https URLs (`server_name` does not apply).
    pub tls: TlsOptions,
}

/// What happens to a record larger than the transport allows (ARCHITECTURE.md, invariant 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OversizePolicy {
    /// Cut it and mark the cut; counted.
    Truncate,
    /// Write it to the sink's dead-letter file instead; counted.
    DeadLetter,
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn urls_in_logs_hide_passwords_and_query_values() {
        let u = "https://user:pw@collector.example.com/in?api-key=s3cret&x=1"
            .parse()
            .unwrap();
        let shown = redacted_url(&u);
        assert!(
            !shown.contains("pw@") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(
            shown.contains("collector.example.com/in?api-key="),
            "{shown}"
        );
        let plain = "https://splunk.example.com:8088/services/collector"
            .parse()
            .unwrap();
        assert_eq!(
            redacted_url(&plain),
            "https://splunk.example.com:8088/services/collector"
        );
    }
}
