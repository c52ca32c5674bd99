//! The librdkafka producer of a Kafka sink: its properties from [`KafkaOptions`]
//! ([`properties`], secrets included, so the result is never printed), and the
//! context ([`Reporter`]) through which librdkafka's threads hand the sink every
//! delivery report and every client error, on a channel the sink's task reads.

use super::oauth::TokenSource;
use crate::config::{KafkaAcks, KafkaOptions, SaslLogin};
use crate::sinks::error::SinkError;
use rdkafka::client::OAuthToken;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tokio::sync::mpsc;

/// How many messages librdkafka may hold at most; the sink stops taking batches well
/// before (`MAX_IN_FLIGHT_RECORDS`), so that a produce call never finds the queue full
/// in normal operation.
pub(super) const CLIENT_QUEUE_MESSAGES: usize = 1_000_000;

/// What librdkafka's threads tell the sink.
#[derive(Debug)]
pub(super) enum Report {
    /// The broker acknowledged the message with this opaque.
    Delivered { opaque: usize },
    /// The message failed for good inside the client (after its own retries).
    Failed {
        opaque: usize,
        code: RDKafkaErrorCode,
        text: String,
    },
    /// An error of the client, not of one message (brokers down, authentication).
    Client {
        code: RDKafkaErrorCode,
        text: String,
    },
}

/// The producer's context: forwards reports to the sink's task, logs to `tracing`.
pub(super) struct Reporter {
    tx: mpsc::UnboundedSender<Report>,
    sink: String,
    /// The OAUTHBEARER login's tokens, when the sink has one.
    tokens: Option<TokenSource>,
}

impl ClientContext for Reporter {
    // librdkafka asks for a token only with `sasl.mechanism = OAUTHBEARER`.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let Some(tokens) = &self.tokens else {
            return Err("no OAUTHBEARER login is configured".into());
        };
        match tokens.fetch() {
            Ok(t) => {
                tracing::debug!(
                    sink = %self.sink,
                    principal = %t.principal_name,
                    "kafka oauthbearer token obtained"
                );
                Ok(t)
            }
            Err(e) => {
                tracing::warn!(sink = %self.sink, "kafka oauthbearer token: {e}");
                Err(e.into())
            }
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // Problems reach the sink as error events (`error`); the log is for developers.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::warn!(sink = %self.sink, facility = fac, "librdkafka: {message}")
            }
            _ => tracing::debug!(sink = %self.sink, facility = fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error
            .rdkafka_error_code()
            .unwrap_or(RDKafkaErrorCode::Unknown);
        let _ = self.tx.send(Report::Client {
            code,
            text: reason.to_string(),
        });
    }
}

impl ProducerContext for Reporter {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let report = match result {
            Ok(_) => Report::Delivered { opaque },
            Err((e, _)) => Report::Failed {
                opaque,
                code: e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown),
                text: e.to_string(),
            },
        };
        // The receiver is gone only when the sink stops; nothing to tell then.
        let _ = self.tx.send(report);
    }
}

pub(super) type Producer = ThreadedProducer<Reporter>;

/// librdkafka's properties for these options. Holds the SASL password: never print it.
pub(super) fn properties(o: &KafkaOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", o.brokers.join(","))
        .set("client.id", &o.client_id)
        .set(
            "acks",
            match o.acks {
                KafkaAcks::All => "all",
                KafkaAcks::Leader => "1",
            },
        )
        .set("enable.idempotence", o.idempotent.to_string())
        .set("compression.type", o.compression.as_str())
        .set("linger.ms", o.linger.as_millis().to_string())
        .set("batch.num.messages", o.batch_max_messages.to_string())
        .set("batch.size", o.batch_max_bytes.to_string())
        // A request carries at least one batch and a message's own framing.
        .set(
            "message.max.bytes",
            (o.max_message_bytes.max(o.batch_max_bytes) + 64 * 1024).to_string(),
        )
        .set(
            "message.timeout.ms",
            o.delivery_timeout.as_millis().to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            CLIENT_QUEUE_MESSAGES.to_string(),
        )
        .set("queue.buffering.max.kbytes", (2 * 1024 * 1024).to_string())
        .set("socket.keepalive.enable", "true")
        // Only what the broker acknowledged counts; nothing is sent without a report.
        .set("delivery.report.only.error", "false")
        .set_log_level(RDKafkaLogLevel::Info);
    let protocol = match (&o.tls, &o.sasl) {
        (None, None) => "plaintext",
        (Some(_), None) => "ssl",
        (None, Some(_)) => "sasl_plaintext",
        (Some(_), Some(_)) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(t) = &o.tls {
        if let Some(ca) = &t.ca_file {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        if let (Some(cert), Some(key)) = (&t.client_cert, &t.client_key) {
            c.set("ssl.certificate.location", cert.display().to_string())
                .set("ssl.key.location", key.display().to_string());
        }
        if t.insecure_skip_verify {
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        } else {
            c.set("ssl.endpoint.identification.algorithm", "https");
        }
    }
    if let Some(s) = &o.sasl {
        c.set("sasl.mechanism", s.mechanism.as_str());
        match &s.login {
            SaslLogin::Password { username, password } => {
                c.set("sasl.username", username)
                    .set("sasl.password", password.expose());
            }
            // The token comes from `Reporter::generate_oauth_token` (`oauth.rs`).
            SaslLogin::OAuth(_) => {}
        }
    }
    c
}

/// A producer for `o`, its reports on the returned channel. Fails when librdkafka
/// refuses the properties (a certificate file it cannot load).
pub(super) fn producer(
    sink: &str,
    o: &KafkaOptions,
) -> Result<(Producer, mpsc::UnboundedReceiver<Report>), SinkError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let tokens = match o.sasl.as_ref().map(|s| &s.login) {
        Some(SaslLogin::OAuth(login)) => Some(TokenSource::new(sink, &o.brokers.join(","), login)?),
        _ => None,
    };
    let context = Reporter {
        tx,
        sink: sink.to_string(),
        tokens,
    };
    let producer = properties(o)
        .create_with_context(context)
        .map_err(|e| SinkError::Kafka {
            brokers: o.brokers.join(","),
            kind: "kafka_config",
            retriable: false,
            detail: format!("the kafka client refused its settings: {e}"),
        })?;
    Ok((producer, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(sasl: &str) -> KafkaOptions {
        use crate::config::test_support::{parse_str, MINIMAL};
        let text = MINIMAL.replace(
            "type = \"tcp\"\nhost = \"siem.example.com\"\nport = 6514",
            &format!(
                "type = \"kafka\"\nbrokers = [\"k1:9093\"]\ntopic = \"t\"\n\
                 [sinks.siem.tls]\n[sinks.siem.sasl]\n{sasl}"
            ),
        );
        let c = parse_str(&text).unwrap_or_else(|e| panic!("{e}"));
        match &c.sinks["siem"].kind {
            crate::config::SinkKind::Kafka(k) => k.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oauthbearer_sets_the_mechanism_and_no_password() {
        let c = properties(&options(
            "mechanism = \"OAUTHBEARER\"\ntoken_url = \"https://idp.example.com/token\"\n\
             client_id = \"c42fwd\"\nclient_secret = \"the-secret\"",
        ));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("OAUTHBEARER"));
        for key in ["sasl.username", "sasl.password", "sasl.oauthbearer.method"] {
            assert_eq!(c.get(key), None, "{key}");
        }
        // The secret stays with the token source, out of librdkafka's properties.
        assert!(!format!("{:?}", c.config_map()).contains("the-secret"));
    }

    #[test]
    fn a_password_mechanism_sets_no_oauth_property() {
        let c = properties(&options(
            "mechanism = \"SCRAM-SHA-256\"\nusername = \"svc\"\npassword = \"pw\"",
        ));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(c.get("sasl.username"), Some("svc"));
        assert_eq!(c.get("sasl.password"), Some("pw"));
        assert_eq!(c.get("sasl.oauthbearer.method"), None);
    }
}
