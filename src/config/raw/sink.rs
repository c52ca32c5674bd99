//! The sink tables, one struct per `type`. Keys that do not apply to a kind are not in
//! its struct: a `window` on a tcp sink or a `path` on a udp sink is refused while the
//! file is read, with the keys that kind takes.
//!
//! The ranges and meanings of the values are checked in `config::sink`, not here.

use super::tagged::kinds;
use super::{Facility, RawRetry, RawTls, SecretRef};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The sink kinds. The keys both HTTP-based kinds (hec, http) take come in as `$http`,
/// so that they are written once.
macro_rules! sink_kinds {
    ($($http:tt)*) => {
        kinds! {
            section "sink", tag SinkType, table RawSink, kind RawSinkKind,
            hints [
                ("framing", "the transport delimits records"),
            ],
            /// The keys every sink takes: how records are encoded and how they are delivered.
            shared RawSinkShared {
                // encoding
                format: Option<String>,
                syslog: Option<String>,
                facility: Option<Facility>,
                hostname: Option<String>,
                app_name: Option<String>,
                // delivery
                queue_batches: Option<i64>,
                retry: Option<RawRetry>,
                dead_letter_max_bytes: Option<i64>,
            };
            /// Records on standard output.
            Stdout(RawStdout) = "stdout" {
                framing: Option<String>,
            }
            /// Records appended to one file.
            File(RawFileSink) = "file" {
                path: Option<PathBuf>,
                framing: Option<String>,
            }
            /// Syslog over TCP, or over TLS.
            Tcp(RawTcp) = "tcp" {
                host: Option<String>,
                port: Option<i64>,
                #[serde(default, with = "humantime_serde")]
                connect_timeout: Option<Duration>,
                #[serde(default, with = "humantime_serde")]
                keepalive: Option<Duration>,
                tls: Option<RawTls>,
                framing: Option<String>,
            }
            /// Syslog over UDP.
            Udp(RawUdp) = "udp" {
                host: Option<String>,
                port: Option<i64>,
                max_datagram: Option<i64>,
                oversize: Option<String>,
            }
            /// A Unix-domain socket on this host, stream or datagram.
            Unix(RawUnix) = "unix" {
                path: Option<PathBuf>,
                mode: Option<String>,
                #[serde(default, with = "humantime_serde")]
                connect_timeout: Option<Duration>,
                framing: Option<String>,
                max_datagram: Option<i64>,
                oversize: Option<String>,
            }
            /// RELP, plain or over TLS.
            Relp(RawRelp) = "relp" {
                host: Option<String>,
                port: Option<i64>,
                #[serde(default, with = "humantime_serde")]
                connect_timeout: Option<Duration>,
                tls: Option<RawTls>,
                window: Option<i64>,
                #[serde(default, with = "humantime_serde")]
                ack_timeout: Option<Duration>,
            }
            /// Splunk HTTP Event Collector.
            Hec(RawHec) = "hec" {
                endpoint: Option<String>,
                token: Option<SecretRef>,
                index: Option<String>,
                source: Option<String>,
                sourcetype: Option<String>,
                channel: Option<String>,
                indexer_ack: Option<bool>,
                #[serde(default, with = "humantime_serde")]
                ack_poll_interval: Option<Duration>,
                #[serde(default, with = "humantime_serde")]
                ack_poll_initial: Option<Duration>,
                max_pending_acks: Option<i64>,
                #[serde(default, with = "humantime_serde")]
                ack_timeout: Option<Duration>,
                $($http)*
            }
            /// A Kafka topic (or several, by template), through librdkafka.
            Kafka(RawKafka) = "kafka" {
                brokers: Option<Vec<String>>,
                topic: Option<String>,
                key: Option<String>,
                acks: Option<String>,
                idempotent: Option<bool>,
                compression: Option<String>,
                #[serde(default, with = "humantime_serde")]
                linger: Option<Duration>,
                batch_max_messages: Option<i64>,
                batch_max_bytes: Option<i64>,
                max_message_bytes: Option<i64>,
                oversize: Option<String>,
                #[serde(default, with = "humantime_serde")]
                delivery_timeout: Option<Duration>,
                client_id: Option<String>,
                tls: Option<RawTls>,
                sasl: Option<Box<RawKafkaSasl>>,
            }
            /// A generic HTTP endpoint taking batches of JSON.
            Http(RawHttp) = "http" {
                url: Option<String>,
                body: Option<String>,
                headers: Option<BTreeMap<String, String>>,
                username: Option<String>,
                password: Option<SecretRef>,
                bearer_token: Option<SecretRef>,
                $($http)*
            }
        }
    };
}

/// The `sasl` table of a kafka sink.
#[derive(Debug, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawKafkaSasl {
    pub mechanism: Option<String>,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    /// OAUTHBEARER: the identity provider's token endpoint (client credentials).
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretRef>,
    pub scope: Option<String>,
    /// OAUTHBEARER: SASL extensions sent to the broker (Confluent Cloud's
    /// `logicalCluster` and `identityPoolId`).
    pub extensions: Option<BTreeMap<String, String>>,
    /// OAUTHBEARER: the CA file that verifies the token endpoint (else the system's).
    pub token_ca_file: Option<PathBuf>,
}

sink_kinds! {
    // TLS settings (CA, client certificate) for https URLs, batching, timeout.
    tls: Option<RawTls>,
    gzip: Option<bool>,
    max_events: Option<i64>,
    max_bytes: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    max_wait: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    request_timeout: Option<Duration>,
}
