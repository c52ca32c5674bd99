//! The options of a `type = "kafka"` sink ([`KafkaOptions`]) and their validation from
//! the raw table ([`kafka`]). Pure: no socket, no certificate read beyond checking that
//! the files are there; the sink itself turns these into librdkafka properties
//! (`sinks::kafka::client`).

use super::check::*;
use super::raw::{RawKafka, RawKafkaSasl};
use super::{OversizePolicy, TlsOptions};
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::time::Duration;

/// A Kafka sink: one producer to one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaOptions {
    /// The bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// The topic: a fixed name or a template with `{source}`, `{kind}`, `{tenant}`.
    pub topic: TopicTemplate,
    pub key: KafkaKey,
    pub acks: KafkaAcks,
    /// Idempotent production (librdkafka's `enable.idempotence`): no duplicates from
    /// the client's own retries, order kept per partition.
    pub idempotent: bool,
    pub compression: KafkaCompression,
    /// How long the client waits to fill a batch (`linger.ms`).
    pub linger: Duration,
    /// Most messages in one produce batch (`batch.num.messages`).
    pub batch_max_messages: usize,
    /// Most bytes in one produce batch (`batch.size`).
    pub batch_max_bytes: usize,
    /// The largest message (value, key and headers) sent: a record longer than this
    /// less 1 KiB (room for the key and headers) follows `oversize`. At most the
    /// topic's `max.message.bytes`.
    pub max_message_bytes: usize,
    pub oversize: OversizePolicy,
    /// How long the client keeps trying one message before it reports it failed
    /// (`message.timeout.ms`); the sink then sends it again with its backoff.
    pub delivery_timeout: Duration,
    pub client_id: String,
    /// TLS to the brokers (`security.protocol` SSL or SASL_SSL) when set.
    pub tls: Option<TlsOptions>,
    pub sasl: Option<KafkaSasl>,
    /// The tenant of every source routed to this sink, for `{tenant}` and the
    /// `c42fwd-tenant` header; filled in by `validate` once the routes are known.
    pub tenants: BTreeMap<String, String>,
}

/// A topic name, literal parts and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    pub text: String,
    pub parts: Vec<TopicPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPart {
    Literal(String),
    Source,
    Kind,
    Tenant,
}

impl TopicTemplate {
    /// The topic of an event of `kind` from `source` of `tenant`.
    pub fn render(&self, source: &str, kind: &str, tenant: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        for p in &self.parts {
            out.push_str(match p {
                TopicPart::Literal(s) => s,
                TopicPart::Source => source,
                TopicPart::Kind => kind,
                TopicPart::Tenant => tenant,
            });
        }
        out
    }

    /// Parses `text`: literal parts of the characters Kafka allows in a topic name
    /// (`A-Z a-z 0-9 . _ -`) and the placeholders `{source}`, `{kind}`, `{tenant}`,
    /// whose values follow the same rule (source and tenant names, source kinds).
    pub fn parse(text: &str) -> Result<TopicTemplate, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let Some(end) = after.find('}') else {
                    return Err(format!("`{text}`: a `{{` without its `}}`"));
                };
                parts.push(match &after[..end] {
                    "source" => TopicPart::Source,
                    "kind" => TopicPart::Kind,
                    "tenant" => TopicPart::Tenant,
                    other => {
                        return Err(format!(
                            "`{{{other}}}` is not a placeholder: use {{source}}, {{kind}} or {{tenant}}"
                        ))
                    }
                });
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let lit = &rest[..end];
                if let Some(c) = lit
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
                {
                    return Err(format!(
                        "`{text}`: {c:?} cannot be in a Kafka topic name (A-Z, a-z, 0-9, `.`, `_`, `-`)"
                    ));
                }
                parts.push(TopicPart::Literal(lit.to_string()));
                rest = &rest[end..];
            }
        }
        if text.len() > 249 {
            return Err("is longer than Kafka's 249 characters".into());
        }
        if text == "." || text == ".." {
            return Err(format!("`{text}` cannot name a Kafka topic"));
        }
        Ok(TopicTemplate {
            text: text.to_string(),
            parts,
        })
    }
}

/// What the message key is, and so which records share a partition (and its order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaKey {
    /// The source's name: every event of a source in one partition, in the order the
    /// source read them (the order of its checkpoint).
    Source,
    /// The tenant's name: one partition per tenant.
    Tenant,
    /// No key: the client spreads messages over the partitions; no order across them.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaAcks {
    /// Every in-sync replica has the message (`acks=all`).
    All,
    /// The partition leader has it (`acks=1`).
    Leader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaCompression {
    Zstd,
    Lz4,
    Gzip,
    None,
}

impl KafkaCompression {
    /// librdkafka's `compression.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::Zstd => "zstd",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub login: SaslLogin,
}

/// What a SASL login presents.
#[derive(Debug, Clone, PartialEq)]
pub enum SaslLogin {
    /// PLAIN and SCRAM: a user name and its password.
    Password { username: String, password: Secret },
    /// OAUTHBEARER: a token from an OAuth 2.0 / OIDC identity provider.
    OAuth(OAuthLogin),
}

/// OAUTHBEARER with the client credentials grant: the sink asks `token_url` for a token
/// (HTTP Basic with `client_id` and `client_secret`, `scope` if set) whenever librdkafka
/// needs one (at the start, and before the last one expires), and librdkafka presents
/// it to the brokers (`sinks::kafka::oauth`).
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthLogin {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Option<String>,
    /// The CA file that verifies an https token endpoint (else the system's).
    pub token_ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OAuthBearer,
}

impl SaslMechanism {
    /// librdkafka's `sasl.mechanism`.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// The bounds of the Kafka sink's durations.
pub const KAFKA_LINGER: Bounds = Bounds {
    min: Duration::ZERO,
    max: Duration::from_secs(60),
};
pub const KAFKA_DELIVERY_TIMEOUT: Bounds = Bounds {
    min: Duration::from_secs(1),
    max: Duration::from_secs(3600),
};

/// The most a record may be: librdkafka's own ceiling for `message.max.bytes`.
const MAX_MESSAGE_BYTES_LIMIT: i64 = 1_000_000_000;

/// Validates the table of a kafka sink; `tls` is the shared TLS check of the sinks.
pub(super) fn kafka(
    at: &dyn Fn(&str) -> String,
    k: RawKafka,
    tls: impl Fn(&super::raw::RawTls, &mut Problems) -> TlsOptions,
    p: &mut Problems,
) -> Option<super::SinkKind> {
    if !cfg!(feature = "kafka") {
        p.add(
            at("type"),
            "this c42fwd was built without the `kafka` feature: build it with the default features",
        );
    }
    let mut brokers = Vec::new();
    match &k.brokers {
        None => p.add(
            at("brokers"),
            "is required (e.g. [\"kafka1.example.com:9092\"])",
        ),
        Some(list) if list.is_empty() => p.add(at("brokers"), "must name at least one broker"),
        Some(list) => {
            for b in list {
                let b = b.trim();
                let ok = b.rsplit_once(':').is_some_and(|(h, port)| {
                    !h.is_empty()
                        && !h.contains([',', ' ', '/'])
                        && port.parse::<u16>().is_ok_and(|n| n > 0)
                });
                if ok {
                    brokers.push(b.to_string());
                } else {
                    p.add(
                        at("brokers"),
                        format!("`{b}` is not host:port (e.g. \"kafka1.example.com:9092\")"),
                    );
                }
            }
        }
    }
    let topic = match &k.topic {
        None => {
            p.add(
                at("topic"),
                "is required (e.g. \"code42\" or \"code42.{kind}\")",
            );
            None
        }
        Some(t) => TopicTemplate::parse(t)
            .map_err(|m| p.add(at("topic"), m))
            .ok(),
    };
    let key = match k.key.as_deref().unwrap_or("source") {
        "source" => Some(KafkaKey::Source),
        "tenant" => Some(KafkaKey::Tenant),
        "none" => Some(KafkaKey::None),
        other => {
            p.add(
                at("key"),
                format!("`{other}` is not a key: use \"source\", \"tenant\" or \"none\""),
            );
            None
        }
    };
    let acks = match k.acks.as_deref().unwrap_or("all") {
        "all" => Some(KafkaAcks::All),
        "leader" | "1" => Some(KafkaAcks::Leader),
        other => {
            p.add(
                at("acks"),
                format!(
                    "`{other}` is not an acks setting: use \"all\" or \"leader\" (an event is \
                     delivered only once the broker acknowledged it, so there is no acks = 0)"
                ),
            );
            None
        }
    };
    let idempotent = k.idempotent.unwrap_or(acks != Some(KafkaAcks::Leader));
    if idempotent && acks == Some(KafkaAcks::Leader) {
        p.add(
            at("idempotent"),
            "idempotent production needs acks = \"all\": set acks = \"all\" or idempotent = false",
        );
    }
    let compression = match k.compression.as_deref().unwrap_or("zstd") {
        "zstd" => Some(KafkaCompression::Zstd),
        "lz4" => Some(KafkaCompression::Lz4),
        "gzip" => Some(KafkaCompression::Gzip),
        "none" => Some(KafkaCompression::None),
        other => {
            p.add(
                at("compression"),
                format!(
                    "`{other}` is not a compression: use \"zstd\", \"lz4\", \"gzip\" or \"none\""
                ),
            );
            None
        }
    };
    let linger = k.linger.unwrap_or(Duration::from_millis(5));
    p.duration(at("linger"), linger, KAFKA_LINGER);
    let delivery_timeout = k.delivery_timeout.unwrap_or(Duration::from_secs(120));
    p.duration(
        at("delivery_timeout"),
        delivery_timeout,
        KAFKA_DELIVERY_TIMEOUT,
    );
    let int = |key: &str, v: Option<i64>, default: i64, lo: i64, hi: i64, p: &mut Problems| {
        let n = v.unwrap_or(default);
        if !(lo..=hi).contains(&n) {
            p.add(at(key), format!("{n} is out of range {lo}-{hi}"));
        }
        n.clamp(lo, hi) as usize
    };
    let max_message_bytes = int(
        "max_message_bytes",
        k.max_message_bytes,
        1_000_000,
        4096,
        MAX_MESSAGE_BYTES_LIMIT,
        p,
    );
    let batch_max_messages = int(
        "batch_max_messages",
        k.batch_max_messages,
        10_000,
        1,
        1_000_000,
        p,
    );
    let batch_max_bytes = int(
        "batch_max_bytes",
        k.batch_max_bytes,
        max_message_bytes.min(1_000_000) as i64,
        1024,
        MAX_MESSAGE_BYTES_LIMIT,
        p,
    );
    if k.batch_max_bytes.is_some() && batch_max_bytes > max_message_bytes {
        p.add(
            at("batch_max_bytes"),
            format!(
                "{batch_max_bytes} is larger than max_message_bytes ({max_message_bytes}): the \
                 broker refuses a batch larger than the topic's max.message.bytes"
            ),
        );
    }
    let oversize = match k.oversize.as_deref().unwrap_or("dead_letter") {
        "dead_letter" => Some(OversizePolicy::DeadLetter),
        "truncate" => Some(OversizePolicy::Truncate),
        other => {
            p.add(
                at("oversize"),
                format!("`{other}` is not a policy: use \"dead_letter\" or \"truncate\""),
            );
            None
        }
    };
    let client_id = k.client_id.clone().unwrap_or_else(|| "c42fwd".to_string());
    if client_id.is_empty() || client_id.len() > 255 {
        p.add(at("client_id"), "must be 1 to 255 characters");
    }
    let tls = k.tls.as_ref().map(|t| {
        if t.server_name.is_some() {
            p.add(
                at("tls.server_name"),
                "does not apply to a kafka sink: each broker's own host name is verified",
            );
        }
        if t.min_version.is_some() {
            p.add(
                at("tls.min_version"),
                "does not apply to a kafka sink: the client negotiates TLS 1.2 or newer",
            );
        }
        tls(t, p)
    });
    let sasl = k.sasl.as_ref().and_then(|s| sasl_of(at, s, p));
    Some(super::SinkKind::Kafka(KafkaOptions {
        brokers,
        topic: topic?,
        key: key?,
        acks: acks?,
        idempotent,
        compression: compression?,
        linger,
        batch_max_messages,
        batch_max_bytes,
        max_message_bytes,
        oversize: oversize?,
        delivery_timeout,
        client_id,
        tls,
        sasl: match k.sasl {
            Some(_) => Some(sasl?),
            None => None,
        },
        tenants: BTreeMap::new(),
    }))
}

const MECHANISMS: &str = "\"PLAIN\", \"SCRAM-SHA-256\", \"SCRAM-SHA-512\" or \"OAUTHBEARER\"";

fn sasl_of(at: &dyn Fn(&str) -> String, s: &RawKafkaSasl, p: &mut Problems) -> Option<KafkaSasl> {
    let mechanism = match s
        .mechanism
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("PLAIN") => Some(SaslMechanism::Plain),
        Some("SCRAM-SHA-256") => Some(SaslMechanism::ScramSha256),
        Some("SCRAM-SHA-512") => Some(SaslMechanism::ScramSha512),
        Some("OAUTHBEARER") => Some(SaslMechanism::OAuthBearer),
        Some(_) => {
            let other = s.mechanism.as_deref().unwrap_or_default();
            p.add(
                at("sasl.mechanism"),
                format!("`{other}` is not supported: use {MECHANISMS} (GSSAPI is not built in)"),
            );
            None
        }
        None => {
            p.add(at("sasl.mechanism"), format!("is required: {MECHANISMS}"));
            None
        }
    };
    let login = match mechanism {
        Some(SaslMechanism::OAuthBearer) => oauth_of(at, s, p).map(SaslLogin::OAuth),
        _ => password_of(at, s, p, mechanism.is_some()),
    };
    Some(KafkaSasl {
        mechanism: mechanism?,
        login: login?,
    })
}

/// PLAIN and SCRAM: `username` and `password`; the OAUTHBEARER keys do not apply.
/// (`known`: the mechanism was understood, so the keys of another one are named.)
fn password_of(
    at: &dyn Fn(&str) -> String,
    s: &RawKafkaSasl,
    p: &mut Problems,
    known: bool,
) -> Option<SaslLogin> {
    if known {
        let oauth_keys = [
            ("token_url", s.token_url.is_some()),
            ("client_id", s.client_id.is_some()),
            ("client_secret", s.client_secret.is_some()),
            ("scope", s.scope.is_some()),
            ("extensions", s.extensions.is_some()),
            ("token_ca_file", s.token_ca_file.is_some()),
        ];
        for (key, _) in oauth_keys.iter().filter(|(_, set)| *set) {
            p.add(
                at(&format!("sasl.{key}")),
                "applies to mechanism = \"OAUTHBEARER\" only",
            );
        }
    }
    let username = match &s.username {
        Some(u) if !u.is_empty() => Some(u.clone()),
        _ => {
            p.add(at("sasl.username"), "is required");
            None
        }
    };
    let password = match &s.password {
        Some(pw) => secret(at("sasl.password"), pw, p),
        None => {
            p.add(at("sasl.password"), "is required");
            None
        }
    };
    Some(SaslLogin::Password {
        username: username?,
        password: password?,
    })
}

/// OAUTHBEARER: the token endpoint and the client's credentials. The token endpoint
/// gets the client secret, so plain http is refused but to loopback (as for the
/// tenant's `base_url`).
fn oauth_of(at: &dyn Fn(&str) -> String, s: &RawKafkaSasl, p: &mut Problems) -> Option<OAuthLogin> {
    for (key, set) in [
        ("username", s.username.is_some()),
        ("password", s.password.is_some()),
    ] {
        if set {
            p.add(
                at(&format!("sasl.{key}")),
                "does not apply to OAUTHBEARER: the client logs in with client_id and client_secret",
            );
        }
    }
    let token_url = match s.token_url.as_deref() {
        Some(v) => url(&at("sasl.token_url"), v, p).and_then(|u| {
            if u.scheme() == "http" && !is_loopback(&u) {
                p.add(
                    at("sasl.token_url"),
                    "plain http to a host other than loopback would send the client secret in clear: use https",
                );
                return None;
            }
            Some(v.to_string())
        }),
        None => {
            p.add(
                at("sasl.token_url"),
                "is required with OAUTHBEARER: the identity provider's token endpoint",
            );
            None
        }
    };
    let client_id = match &s.client_id {
        Some(c) if !c.is_empty() => Some(c.clone()),
        _ => {
            p.add(at("sasl.client_id"), "is required with OAUTHBEARER");
            None
        }
    };
    let client_secret = match &s.client_secret {
        Some(r) => secret(at("sasl.client_secret"), r, p),
        None => {
            p.add(at("sasl.client_secret"), "is required with OAUTHBEARER");
            None
        }
    };
    let scope = match s.scope.as_deref() {
        Some(v) if v.trim().is_empty() => {
            p.add(
                at("sasl.scope"),
                "is empty: leave it out, or name the scope",
            );
            None
        }
        other => Some(other.map(str::to_string)),
    };
    if s.extensions.is_some() {
        // librdkafka sends SASL extensions only with a token it fetched itself (through
        // libcurl, which this build leaves out); a token c42fwd fetches goes without.
        p.add(
            at("sasl.extensions"),
            "SASL extensions are not supported (Confluent Cloud's OAuth needs them: log in \
             there with an API key, mechanism = \"PLAIN\")",
        );
    }
    let token_ca_file = match &s.token_ca_file {
        None => Some(None),
        Some(f) if f.is_file() => Some(Some(f.clone())),
        Some(f) => {
            p.add(
                at("sasl.token_ca_file"),
                format!("{} is not a readable file", f.display()),
            );
            None
        }
    };
    Some(OAuthLogin {
        token_url: token_url?,
        client_id: client_id?,
        client_secret: client_secret?,
        scope: scope?,
        token_ca_file: token_ca_file?,
    })
}

/// Gives every kafka sink the tenants of the sources routed to it (`routes`: source
/// name to its sinks; `tenant_of`: source name to its tenant).
pub(super) fn fill_tenants(
    sinks: &mut BTreeMap<String, super::Sink>,
    routes: &BTreeMap<String, Vec<String>>,
    tenant_of: impl Fn(&str) -> Option<String>,
) {
    for (source, to) in routes {
        let Some(tenant) = tenant_of(source) else {
            continue;
        };
        for name in to {
            if let Some(super::Sink {
                kind: super::SinkKind::Kafka(k),
                ..
            }) = sinks.get_mut(name)
            {
                k.tenants.insert(source.clone(), tenant.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::SinkKind;

    fn kafka_config(keys: &str) -> String {
        MINIMAL.replace(
            "type = \"tcp\"\nhost = \"siem.example.com\"\nport = 6514",
            &format!("type = \"kafka\"\n{keys}"),
        )
    }

    fn opts(keys: &str) -> KafkaOptions {
        let c = parse_str(&kafka_config(keys)).unwrap_or_else(|e| panic!("{e}"));
        match &c.sinks["siem"].kind {
            SinkKind::Kafka(k) => k.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_kafka_sink_has_safe_defaults_and_knows_its_sources_tenants() {
        let k = opts("brokers = [\"k1:9092\", \"k2:9093\"]\ntopic = \"code42.{kind}\"");
        assert_eq!(k.brokers, vec!["k1:9092", "k2:9093"]);
        assert_eq!(
            k.topic.render("audit", "audit_log", "acme"),
            "code42.audit_log"
        );
        assert_eq!(k.key, KafkaKey::Source);
        assert_eq!(k.acks, KafkaAcks::All);
        assert!(k.idempotent);
        assert_eq!(k.compression, KafkaCompression::Zstd);
        assert_eq!(k.oversize, OversizePolicy::DeadLetter);
        assert_eq!(k.max_message_bytes, 1_000_000);
        assert!(k.tls.is_none() && k.sasl.is_none());
        assert_eq!(k.tenants.len(), 1, "{:?}", k.tenants);
        let c = parse_str(&kafka_config("brokers = [\"k:9092\"]\ntopic = \"t\"")).unwrap();
        assert_eq!(
            c.sinks["siem"].encoding.syslog,
            crate::encode::SyslogStyle::None
        );
        assert_eq!(
            c.sinks["siem"].encoding.framing,
            crate::encode::Framing::None
        );
    }

    #[test]
    fn kafka_problems_name_their_keys() {
        let p = problems(&kafka_config(
            "brokers = [\"nohost\"]\ntopic = \"code42.{who}\"\nacks = \"0\"\ncompression = \"snappy\"\n\
             key = \"actor\"\nmax_message_bytes = 10",
        ));
        for want in [
            "sinks.siem.brokers: `nohost` is not host:port",
            "sinks.siem.topic: `{who}` is not a placeholder",
            "sinks.siem.acks: `0` is not an acks setting",
            "sinks.siem.compression: `snappy` is not a compression",
            "sinks.siem.key: `actor` is not a key",
            "sinks.siem.max_message_bytes: 10 is out of range",
        ] {
            assert!(p.iter().any(|x| x.starts_with(want)), "{want}: {p:?}");
        }
        let p = problems(&kafka_config(
            "brokers = [\"k:9092\"]\ntopic = \"a b\"\nacks = \"leader\"\nidempotent = true",
        ));
        assert!(
            p.iter()
                .any(|x| x.starts_with("sinks.siem.topic: `a b`: ' '")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("sinks.siem.idempotent: idempotent production needs acks")),
            "{p:?}"
        );
        let p = problems(&kafka_config(
            "brokers = [\"k:9092\"]\ntopic = \"t\"\n[sinks.siem.sasl]\nmechanism = \"GSSAPI\"\nusername = \"u\"",
        ));
        assert!(
            p.iter()
                .any(|x| x.starts_with("sinks.siem.sasl.mechanism: `GSSAPI` is not supported")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x == "sinks.siem.sasl.password: is required"),
            "{p:?}"
        );
    }

    #[test]
    fn the_sasl_password_comes_from_the_environment_and_never_prints() {
        std::env::set_var("C42FWD_TEST_KAFKA_PW", "kafka-pw-value");
        let k = opts(
            "brokers = [\"k:9093\"]\ntopic = \"t\"\n[sinks.siem.sasl]\nmechanism = \"SCRAM-SHA-512\"\n\
             username = \"svc\"\npassword = { env = \"C42FWD_TEST_KAFKA_PW\" }\n[sinks.siem.tls]",
        );
        let sasl = k.sasl.clone().expect("sasl");
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        let SaslLogin::Password { username, password } = &sasl.login else {
            panic!("{:?}", sasl.login)
        };
        assert_eq!(
            (username.as_str(), password.expose()),
            ("svc", "kafka-pw-value")
        );
        assert!(k.tls.is_some());
        assert!(!format!("{k:?}").contains("kafka-pw-value"));
    }

    #[test]
    fn oauthbearer_takes_a_token_endpoint_and_client_credentials_and_never_prints_the_secret() {
        std::env::set_var("C42FWD_TEST_KAFKA_OAUTH", "oauth-secret-value");
        let k = opts(
            "brokers = [\"k:9093\"]\ntopic = \"t\"\n[sinks.siem.tls]\n[sinks.siem.sasl]\n\
             mechanism = \"oauthbearer\"\ntoken_url = \"https://idp.example.com/oauth2/token\"\n\
             client_id = \"c42fwd\"\nclient_secret = { env = \"C42FWD_TEST_KAFKA_OAUTH\" }\n\
             scope = \"kafka\"",
        );
        let sasl = k.sasl.clone().expect("sasl");
        assert_eq!(sasl.mechanism, SaslMechanism::OAuthBearer);
        assert_eq!(sasl.mechanism.as_str(), "OAUTHBEARER");
        let SaslLogin::OAuth(a) = &sasl.login else {
            panic!("{:?}", sasl.login)
        };
        assert_eq!(a.token_url, "https://idp.example.com/oauth2/token");
        assert_eq!(a.client_id, "c42fwd");
        assert_eq!(a.client_secret.expose(), "oauth-secret-value");
        assert_eq!(a.scope.as_deref(), Some("kafka"));
        assert!(!format!("{k:?}").contains("oauth-secret-value"));
    }

    #[test]
    fn oauthbearer_problems_name_their_keys() {
        let p = problems(&kafka_config(
            "brokers = [\"k:9093\"]\ntopic = \"t\"\n[sinks.siem.sasl]\nmechanism = \"OAUTHBEARER\"\n\
             username = \"u\"\ntoken_url = \"http://idp.example.com/token\"\nscope = \" \"\n\
             extensions = { logicalCluster = \"lkc-1\" }\n\
             token_ca_file = \"/nonexistent/ca.pem\"",
        ));
        for want in [
            "sinks.siem.sasl.username: does not apply to OAUTHBEARER",
            "sinks.siem.sasl.token_url: plain http to a host other than loopback",
            "sinks.siem.sasl.client_id: is required with OAUTHBEARER",
            "sinks.siem.sasl.client_secret: is required with OAUTHBEARER",
            "sinks.siem.sasl.scope: is empty",
            "sinks.siem.sasl.extensions: SASL extensions are not supported",
            "sinks.siem.sasl.token_ca_file: /nonexistent/ca.pem is not a readable file",
        ] {
            assert!(p.iter().any(|x| x.starts_with(want)), "{want}: {p:?}");
        }
        let p = problems(&kafka_config(
            "brokers = [\"k:9093\"]\ntopic = \"t\"\n[sinks.siem.sasl]\nmechanism = \"OAUTHBEARER\"",
        ));
        assert!(
            p.iter()
                .any(|x| x.starts_with("sinks.siem.sasl.token_url: is required with OAUTHBEARER")),
            "{p:?}"
        );
        // The OAUTHBEARER keys with a password mechanism are named, not ignored.
        let p = problems(&kafka_config(
            "brokers = [\"k:9093\"]\ntopic = \"t\"\n[sinks.siem.sasl]\nmechanism = \"PLAIN\"\n\
             username = \"u\"\npassword = \"p\"\nclient_id = \"c\"",
        ));
        assert!(
            p.iter()
                .any(|x| x
                    == "sinks.siem.sasl.client_id: applies to mechanism = \"OAUTHBEARER\" only"),
            "{p:?}"
        );
        // Loopback may be plain http (a local token service, tests).
        let k = opts(
            "brokers = [\"k:9093\"]\ntopic = \"t\"\n[sinks.siem.sasl]\nmechanism = \"OAUTHBEARER\"\n\
             token_url = \"http://127.0.0.1:8080/token\"\nclient_id = \"c\"\nclient_secret = \"s\"",
        );
        assert!(matches!(
            k.sasl.map(|s| s.login),
            Some(SaslLogin::OAuth(OAuthLogin { scope: None, .. }))
        ));
    }

    #[test]
    fn topic_templates() {
        let t = TopicTemplate::parse("c42.{tenant}.{source}-{kind}").unwrap();
        assert_eq!(
            t.render("audit", "audit_log", "acme"),
            "c42.acme.audit-audit_log"
        );
        assert_eq!(
            TopicTemplate::parse("plain").unwrap().render("a", "b", "c"),
            "plain"
        );
        assert!(TopicTemplate::parse("x{kind").is_err());
        assert!(TopicTemplate::parse("").is_err());
        assert!(TopicTemplate::parse("..").is_err());
    }
}
