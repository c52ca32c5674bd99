//! What a Kafka error means for the sink: [`Class`] of a librdkafka error code, for a
//! message's delivery report and for the client's own error events. Pure.
//!
//! - retriable: the cluster is busy, moving leaders, short of replicas, or out of
//!   reach; librdkafka retried inside `delivery_timeout` already, and the sink sends
//!   the message again with its backoff;
//! - stall: a set-up fault an operator must fix (credentials, ACLs, a topic that does
//!   not exist, a broker limit below `max_message_bytes`): the message is held and
//!   sent again with backoff, the stall shows in logs, `c42fwd_sink_stalled` and
//!   `/ready`, and nothing is dead-lettered (ARCHITECTURE.md, invariant 5);
//! - refused: the broker refused this record itself: it is dead-lettered and counted;
//! - fatal: the idempotent producer cannot go on (fenced, sequence lost): the producer
//!   is built anew and every message not yet acknowledged is sent again.

use rdkafka::error::RDKafkaErrorCode as C;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Retriable,
    /// A set-up fault, with the stall's fixed reason label and what to fix.
    Stall {
        reason: &'static str,
        hint: &'static str,
    },
    Refused,
    Fatal,
}

/// The class of an error code in a delivery report (or of a produce call).
pub(crate) fn delivery(code: C) -> Class {
    match code {
        C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed => Class::Stall {
            reason: "kafka_authorization",
            hint: "grant this principal WRITE (and with idempotence IDEMPOTENT_WRITE) on the topic",
        },
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition | C::InvalidTopic => {
            Class::Stall {
                reason: "kafka_unknown_topic",
                hint: "create the topic (or allow auto-creation on the cluster), or fix `topic`",
            }
        }
        C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState => authentication(),
        C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize => Class::Stall {
            reason: "kafka_message_too_large",
            hint: "the broker's limit is below this sink's: lower max_message_bytes and \
                   batch_max_bytes to the topic's max.message.bytes",
        },
        C::PolicyViolation
        | C::InvalidRequiredAcks
        | C::UnsupportedVersion
        | C::UnsupportedForMessageFormat => Class::Stall {
            reason: "kafka_refused_setup",
            hint: "the cluster refuses this producer's settings (acks, compression, headers)",
        },
        C::InvalidMessage | C::InvalidTimestamp | C::InvalidRecord => Class::Refused,
        C::Fatal
        | C::Fenced
        | C::OutOfOrderSequenceNumber
        | C::InvalidProducerEpoch
        | C::UnknownProducerId
        | C::InvalidProducerIdMapping => Class::Fatal,
        _ => Class::Retriable,
    }
}

/// The class of the client's own error events (`error_cb`), which are not about one
/// message. `None`: nothing to show (a single broker's connection ended; librdkafka
/// reconnects and reports `AllBrokersDown` when none is left).
pub(crate) fn client(code: C) -> Option<Class> {
    match code {
        C::AllBrokersDown => Some(Class::Stall {
            reason: "kafka_unreachable",
            hint:
                "no broker of `brokers` answers: check the addresses, the network and the cluster",
        }),
        C::Authentication | C::SaslAuthenticationFailed | C::UnsupportedSASLMechanism => {
            Some(authentication())
        }
        C::SSL => Some(Class::Stall {
            reason: "kafka_tls",
            hint: "the TLS handshake with a broker failed: check tls.ca_file, the client \
                   certificate and that the port speaks TLS",
        }),
        C::Resolve => Some(Class::Stall {
            reason: "kafka_unreachable",
            hint: "a broker's host name does not resolve: check `brokers`",
        }),
        C::Fatal => Some(Class::Fatal),
        _ => None,
    }
}

fn authentication() -> Class {
    Class::Stall {
        reason: "kafka_authentication",
        hint: "the cluster refused the SASL credentials, or no OAUTHBEARER token could be had: \
               check sasl.mechanism, sasl.username and sasl.password (or sasl.token_url, \
               sasl.client_id and sasl.client_secret)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_are_classified_as_the_issue_lists_them() {
        for code in [
            C::LeaderNotAvailable,
            C::NotLeaderForPartition,
            C::RequestTimedOut,
            C::MessageTimedOut,
            C::NotEnoughReplicas,
            C::NotEnoughReplicasAfterAppend,
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::QueueFull,
        ] {
            assert_eq!(delivery(code), Class::Retriable, "{code:?}");
        }
        let reason = |c| match delivery(c) {
            Class::Stall { reason, .. } => reason,
            other => panic!("{c:?}: {other:?}"),
        };
        assert_eq!(reason(C::TopicAuthorizationFailed), "kafka_authorization");
        assert_eq!(reason(C::UnknownTopicOrPartition), "kafka_unknown_topic");
        assert_eq!(reason(C::UnknownTopic), "kafka_unknown_topic");
        assert_eq!(reason(C::SaslAuthenticationFailed), "kafka_authentication");
        assert_eq!(reason(C::MessageSizeTooLarge), "kafka_message_too_large");
        assert_eq!(delivery(C::InvalidRecord), Class::Refused);
        assert_eq!(delivery(C::OutOfOrderSequenceNumber), Class::Fatal);
        assert_eq!(client(C::BrokerTransportFailure), None);
        assert!(matches!(
            client(C::AllBrokersDown),
            Some(Class::Stall {
                reason: "kafka_unreachable",
                ..
            })
        ));
        assert!(matches!(
            client(C::Authentication),
            Some(Class::Stall {
                reason: "kafka_authentication",
                ..
            })
        ));
    }
}
