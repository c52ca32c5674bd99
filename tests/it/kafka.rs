//! The Kafka sink against a real Kafka-compatible broker (Tansu, `support::kafka`),
//! read back with a real consumer: every event once and in order per key, the
//! headers, the oversize policy, a paused broker (the route stalls and resumes, nothing
//! lost), a wrong SASL password (a clear stall), and the real binary through a SIGKILL
//! and restart.

use crate::support::config::{emu_tenant_secret_file, head, METRICS_ON_A_FREE_PORT};
use crate::support::daemon::{log_tail, start_emulator, Daemon};
use crate::support::kafka::{consume_all, wait_stored, Consumed, Tansu};
use crate::support::sink::{delivered, fast_retry, TestSink};
use crate::support::{event, multiset, PATIENCE};
use c42fwd::ack::Outcome;
use c42fwd::config::{
    KafkaAcks, KafkaCompression, KafkaKey, KafkaOptions, KafkaSasl, OAuthLogin, OversizePolicy,
    SaslLogin, SaslMechanism, Sink, SinkKind, TopicTemplate,
};
use c42fwd::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::secret::Secret;
use c42fwd_emulator::EmulatorOptions;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn kafka_options(bootstrap: &str, topic: &str) -> KafkaOptions {
    KafkaOptions {
        brokers: vec![bootstrap.to_string()],
        topic: TopicTemplate::parse(topic).expect("topic"),
        key: KafkaKey::Source,
        acks: KafkaAcks::All,
        idempotent: true,
        compression: KafkaCompression::Zstd,
        linger: Duration::from_millis(5),
        batch_max_messages: 10_000,
        batch_max_bytes: 1_000_000,
        max_message_bytes: 1_000_000,
        oversize: OversizePolicy::DeadLetter,
        delivery_timeout: Duration::from_secs(30),
        client_id: "c42fwd-test".into(),
        tls: None,
        sasl: None,
        tenants: BTreeMap::from([("audit".to_string(), "acme".to_string())]),
    }
}

fn kafka_sink(name: &str, o: KafkaOptions) -> Sink {
    Sink {
        name: name.to_string(),
        kind: SinkKind::Kafka(o),
        encoding: EncoderOptions {
            format: Format::JsonRaw,
            syslog: SyslogStyle::None,
            framing: Framing::None,
            facility: 13,
            hostname: "c42fwd-test".into(),
            app_name: "c42fwd".into(),
        },
        dead_letter_max_bytes: c42fwd::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry: fast_retry(None),
    }
}

/// `{"seq":N,...}` events, as audit events with a type.
fn numbered(range: std::ops::Range<usize>) -> Vec<c42fwd::event::Event> {
    range
        .map(|i| {
            event(&format!(
                r#"{{"type$":"audit_log::logged_in/1","seq":{i},"actorName":"u{i}@example.com"}}"#
            ))
        })
        .collect()
}

fn seq_of(m: &Consumed) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&m.payload)
        .unwrap_or_else(|e| panic!("message is not the event's JSON ({e}): {}", m.payload));
    v["seq"].as_u64().expect("seq")
}

fn stalled(sink: &TestSink, name: &str, reason: &str) -> i64 {
    sink.ctx
        .metrics
        .sink_stalled
        .get_or_create(&vec![
            ("sink", name.to_string()),
            ("reason", reason.to_string()),
        ])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_once_in_order_with_headers_and_an_oversize_record_dead_lettered() {
    let kafka = Tansu::start(false).await;
    let topic = "c42.acme.audit_log";
    kafka.create_topic(topic, 3);
    let mut o = kafka_options(&kafka.bootstrap(), "c42.{tenant}.{kind}");
    o.max_message_bytes = 4096;
    let dead = tempfile::tempdir().unwrap();
    let sink = TestSink::start_in(kafka_sink("kafka", o), dead.path());

    let total = 10_000;
    let huge = event(&format!(
        r#"{{"type$":"audit_log::logged_in/1","seq":-1,"pad":"{}"}}"#,
        "x".repeat(8000)
    ));
    let mut waiters = Vec::new();
    for b in 0..20 {
        let mut events = numbered(b * 500..(b + 1) * 500);
        if b == 7 {
            events.insert(250, huge.clone());
        }
        waiters.push(sink.send(events).await);
    }
    for w in waiters {
        delivered(w).await;
    }

    let got = consume_all(&kafka.bootstrap(), topic, 3, PATIENCE).await;
    assert_eq!(
        got.len(),
        total,
        "the topic holds exactly the events sent, each once"
    );
    assert_eq!(got.len(), total);
    // One key (the source), so one partition, in the order sent.
    let seqs: Vec<u64> = got.iter().map(seq_of).collect();
    assert_eq!(seqs, (0..total as u64).collect::<Vec<_>>());
    assert!(got.iter().all(|m| m.partition == got[0].partition));
    let m = &got[0];
    assert_eq!(m.key.as_deref(), Some("audit"));
    assert_eq!(m.header("c42fwd-source"), Some("audit"));
    assert_eq!(m.header("c42fwd-tenant"), Some("acme"));
    assert_eq!(m.header("c42fwd-kind"), Some("audit_log"));
    assert_eq!(m.header("c42fwd-event-type"), Some("logged_in"));
    assert_eq!(m.header("c42fwd-version"), Some(env!("CARGO_PKG_VERSION")));

    // The oversize record: dead-lettered and counted, never sent.
    assert_eq!(sink.counter("discarded", Some(("reason", "oversize"))), 1);
    assert_eq!(sink.events(), total as u64);
    let ctx = sink.finish().await;
    let dl = std::fs::read_to_string(ctx.dead_letter_dir.join("kafka.ndjson")).unwrap();
    assert_eq!(dl.lines().count(), 1);
    assert!(dl.contains("\"reason\":\"oversize\"") && dl.contains(&"x".repeat(8000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_stalls_the_route_which_resumes_losing_nothing() {
    let kafka = Tansu::start(false).await;
    let topic = "c42-pause";
    kafka.create_topic(topic, 1);
    // The client keeps the messages while the broker is stopped (its delivery timeout
    // is longer than the pause); the sink shows the stall once the cluster has been
    // silent for SILENCE_STALLS_AFTER.
    let o = kafka_options(&kafka.bootstrap(), topic);
    let sink = TestSink::start(kafka_sink("kafka", o));

    let batches = 40;
    let per = 250;
    let done = Arc::new(AtomicUsize::new(0));
    let first = sink.send(numbered(0..per)).await;
    delivered(first).await;
    done.fetch_add(1, Ordering::SeqCst);

    kafka.pause();
    let tx = sink.sender();
    let feeder = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut waits = Vec::new();
            for b in 1..batches {
                let (sb, w) = crate::support::sink_batch("audit", numbered(b * per..(b + 1) * per));
                if tx.send(sb).await.is_err() {
                    break;
                }
                let done = done.clone();
                waits.push(tokio::spawn(async move {
                    let o = w.wait().await;
                    if o == Outcome::Delivered {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    o
                }));
            }
            let mut outcomes = Vec::new();
            for w in waits {
                outcomes.push(w.await.expect("waiter"));
            }
            outcomes
        })
    };
    crate::support::wait_for("the sink stalled on the paused broker", PATIENCE, || {
        stalled(&sink, "kafka", "kafka_unreachable") == 1
    })
    .await;
    assert!(
        done.load(Ordering::SeqCst) < batches,
        "batches were acknowledged while the broker was stopped"
    );
    assert!(
        !sink.ctx.metrics.health.stalled().is_empty(),
        "/ready shows the stall"
    );

    kafka.resume();
    let outcomes = tokio::time::timeout(Duration::from_secs(60), feeder)
        .await
        .expect("every batch acknowledged after the broker came back")
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(
        stalled(&sink, "kafka", "kafka_unreachable"),
        0,
        "the stall is over"
    );

    let n = batches * per;
    let got = consume_all(&kafka.bootstrap(), topic, 1, PATIENCE).await;
    // The client kept every message through the pause and the idempotent producer sent
    // each once: all of them, once, in the order sent.
    let seqs: Vec<u64> = got.iter().map(seq_of).collect();
    assert_eq!(
        seqs.len(),
        n,
        "every event once (resent: {})",
        sink.resent()
    );
    assert_eq!(seqs, (0..n as u64).collect::<Vec<_>>(), "in the order sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_paused_past_the_delivery_timeout_gets_every_message_again() {
    let kafka = Tansu::start(false).await;
    let topic = "c42-timeout";
    kafka.create_topic(topic, 1);
    // The client gives messages up after 2 s; the sink sends them again after its
    // backoff, in order, taking no new batch meanwhile. Not idempotent: after a message
    // timeout librdkafka's idempotent producer bumps its epoch (KIP-360), which Tansu
    // 0.6 does not follow (its in-memory engine answers the new epoch with
    // PRODUCER_FENCED and the client bumps again and again); a Kafka cluster does.
    let mut o = kafka_options(&kafka.bootstrap(), topic);
    o.delivery_timeout = Duration::from_secs(2);
    o.idempotent = false;
    let sink = TestSink::start(kafka_sink("kafka", o));

    let batches = 40;
    let per = 250;
    let done = Arc::new(AtomicUsize::new(0));
    let first = sink.send(numbered(0..per)).await;
    delivered(first).await;
    done.fetch_add(1, Ordering::SeqCst);

    kafka.pause();
    let tx = sink.sender();
    let feeder = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut waits = Vec::new();
            for b in 1..batches {
                let (sb, w) = crate::support::sink_batch("audit", numbered(b * per..(b + 1) * per));
                if tx.send(sb).await.is_err() {
                    break;
                }
                let done = done.clone();
                waits.push(tokio::spawn(async move {
                    let o = w.wait().await;
                    if o == Outcome::Delivered {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    o
                }));
            }
            let mut outcomes = Vec::new();
            for w in waits {
                outcomes.push(w.await.expect("waiter"));
            }
            outcomes
        })
    };
    crate::support::wait_for("the sink stalled on the paused broker", PATIENCE, || {
        stalled(&sink, "kafka", "kafka_unreachable") == 1
    })
    .await;
    assert!(
        done.load(Ordering::SeqCst) < batches,
        "batches were acknowledged while the broker was stopped"
    );
    assert!(
        !sink.ctx.metrics.health.stalled().is_empty(),
        "/ready shows the stall"
    );

    kafka.resume();
    let outcomes = tokio::time::timeout(Duration::from_secs(60), feeder)
        .await
        .expect("every batch acknowledged after the broker came back")
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    assert_eq!(
        stalled(&sink, "kafka", "kafka_unreachable"),
        0,
        "the stall is over"
    );

    let n = batches * per;
    let got = consume_all(&kafka.bootstrap(), topic, 1, PATIENCE).await;
    // Nothing lost; a message the broker took just before it stopped and that timed
    // out on the client was sent again, so duplicates are bounded by the resends, and
    // the first copies keep the order.
    let mut seen = HashMap::new();
    let mut firsts = Vec::new();
    for m in &got {
        let s = seq_of(m);
        *seen.entry(s).or_insert(0usize) += 1;
        if seen[&s] == 1 {
            firsts.push(s);
        }
    }
    assert_eq!(seen.len(), n, "every event arrived");
    assert_eq!(
        firsts,
        (0..n as u64).collect::<Vec<_>>(),
        "first copies in the order sent"
    );
    let duplicates = got.len() - n;
    assert!(sink.resent() > 0, "the timed-out messages were sent again");
    assert!(
        duplicates as u64 <= sink.resent(),
        "{duplicates} duplicates, {} resent",
        sink.resent()
    );
    eprintln!(
        "paused past the delivery timeout: {duplicates} duplicates, {} resent",
        sink.resent()
    );
}

/// Tansu, with `--authentication`, refuses every request before a SASL login and keeps
/// its users in its storage, which starts empty in memory; a user cannot be made
/// without logging in first. So the credential here is one the broker does not know:
/// to the client that is what a wrong password is (SCRAM refuses both alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sasl_password_stalls_the_route_with_a_clear_reason() {
    let kafka = Tansu::start(true).await;
    let mut o = kafka_options(&kafka.bootstrap(), "c42-sasl");
    o.sasl = Some(KafkaSasl {
        mechanism: SaslMechanism::ScramSha512,
        login: SaslLogin::Password {
            username: "c42fwd".into(),
            password: Secret::new("wrong-password"),
        },
    });
    let wrong = TestSink::start(kafka_sink("wrong", o));
    let waiter = wrong.send(numbered(0..10)).await;
    crate::support::wait_for("the sink stalled on the refused password", PATIENCE, || {
        stalled(&wrong, "wrong", "kafka_authentication") == 1
    })
    .await;
    let stalls = wrong.ctx.metrics.health.stalled();
    let detail = format!("{stalls:?}");
    assert!(
        detail.contains("kafka_authentication") && !detail.contains("wrong-password"),
        "{detail}"
    );
    assert!(wrong.errors("kafka_authentication") >= 1);
    assert_eq!(wrong.events(), 0, "nothing counts as delivered");
    drop(wrong);
    assert_eq!(
        waiter.wait().await,
        Outcome::NotDelivered,
        "the batch was not delivered"
    );
}

/// A stand-in for an OAuth 2.0 identity provider's token endpoint: it keeps every
/// request (its `Authorization` header and form body) and answers with a JWT access
/// token (`sub` c42fwd, an hour to live), or with 401 `invalid_client`.
struct TokenEndpoint {
    url: String,
    requests: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl TokenEndpoint {
    async fn start(refuse: bool) -> TokenEndpoint {
        use axum::http::{HeaderMap, StatusCode};
        use base64::Engine as _;
        let requests: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
        let kept = requests.clone();
        let app = axum::Router::new().route(
            "/oauth2/token",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let kept = kept.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    kept.lock().unwrap().push((auth, body));
                    if refuse {
                        return (
                            StatusCode::UNAUTHORIZED,
                            r#"{"error":"invalid_client"}"#.to_string(),
                        );
                    }
                    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                    let exp = chrono::Utc::now().timestamp() + 3600;
                    let jwt = format!(
                        "{}.{}.{}",
                        b64.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
                        b64.encode(format!(r#"{{"sub":"c42fwd","exp":{exp},"scope":"kafka"}}"#)),
                        b64.encode("not-checked-by-this-test"),
                    );
                    (
                        StatusCode::OK,
                        format!(
                            r#"{{"access_token":"{jwt}","token_type":"Bearer","expires_in":3600}}"#
                        ),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth2/token", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TokenEndpoint {
            url,
            requests,
            _server: server,
        }
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().unwrap().clone()
    }
}

fn oauth_login(token_url: &str) -> KafkaSasl {
    KafkaSasl {
        mechanism: SaslMechanism::OAuthBearer,
        login: SaslLogin::OAuth(OAuthLogin {
            token_url: token_url.to_string(),
            client_id: "c42fwd-client".into(),
            client_secret: Secret::new("oauth-client-secret"),
            scope: Some("kafka".into()),
            token_ca_file: None,
        }),
    }
}

/// A kafka sink that logs in to `kafka` with OAUTHBEARER through `idp`, sent five
/// events, once it stalled with `kafka_authentication` (Tansu takes no OAUTHBEARER
/// login, so every login ends there).
async fn an_oauth_sink_stalled(
    idp: &TokenEndpoint,
    kafka: &Tansu,
    name: &str,
) -> (TestSink, c42fwd::ack::AckWaiter) {
    let mut o = kafka_options(&kafka.bootstrap(), &format!("c42-{name}"));
    o.sasl = Some(oauth_login(&idp.url));
    let sink = TestSink::start(kafka_sink(name, o));
    let waiter = sink.send(numbered(0..5)).await;
    crate::support::wait_for("the sink stalled on the refused login", PATIENCE, || {
        stalled(&sink, name, "kafka_authentication") == 1
    })
    .await;
    (sink, waiter)
}

/// What a stalled login leaves: nothing delivered, and the secret in no stall text.
async fn nothing_delivered_and_no_secret(sink: TestSink, waiter: c42fwd::ack::AckWaiter) {
    let detail = format!("{:?}", sink.ctx.metrics.health.stalled());
    assert!(!detail.contains("oauth-client-secret"), "{detail}");
    assert_eq!(sink.events(), 0, "nothing counts as delivered");
    drop(sink);
    assert_eq!(waiter.wait().await, Outcome::NotDelivered);
}

/// OAUTHBEARER: the client asks the identity provider for a token with the client
/// credentials grant (HTTP Basic with the client id and secret, the scope in the form)
/// before it logs in to the broker. No broker on this machine takes OAUTHBEARER logins
/// (Tansu's SASL takes PLAIN and SCRAM), so the login itself is refused here: the route
/// stalls with `kafka_authentication`, delivers nothing, and the secret shows nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_asks_the_token_endpoint_with_the_client_credentials() {
    use base64::Engine as _;
    let idp = TokenEndpoint::start(false).await;
    let kafka = Tansu::start(true).await;
    let (sink, waiter) = an_oauth_sink_stalled(&idp, &kafka, "oauth").await;
    let (auth, body) = idp.requests().first().cloned().expect("a token request");
    let basic =
        base64::engine::general_purpose::STANDARD.encode("c42fwd-client:oauth-client-secret");
    assert_eq!(auth, format!("Basic {basic}"), "the client's credentials");
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("client_credentials"),
        "{body}"
    );
    assert_eq!(
        form.get("scope").map(String::as_str),
        Some("kafka"),
        "{body}"
    );
    assert!(
        !body.contains("oauth-client-secret"),
        "the secret is in the header only"
    );
    nothing_delivered_and_no_secret(sink, waiter).await;
}

/// An identity provider that refuses the client's credentials: no token, so no login;
/// the route stalls with `kafka_authentication` and nothing is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_refuses_the_client_stalls_the_route() {
    let idp = TokenEndpoint::start(true).await;
    let kafka = Tansu::start(true).await;
    let (sink, waiter) = an_oauth_sink_stalled(&idp, &kafka, "refused").await;
    assert!(!idp.requests().is_empty(), "the token endpoint was asked");
    nothing_delivered_and_no_secret(sink, waiter).await;
}

/// The real binary from the emulated tenant to the broker, killed with SIGKILL after
/// a random part of the backlog and started again: every event arrives, in order (one
/// key per source, so one partition), and the duplicates after the restart are at most
/// what was in flight at the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_through_a_sigkill_and_restart_loses_nothing_and_keeps_the_order() {
    let kafka = Tansu::start(false).await;
    let topic = "code42.emu.audit_log";
    kafka.create_topic(topic, 3);
    let opts = EmulatorOptions {
        seed: 5,
        backlog: 20_000,
        backlog_span: Duration::from_secs(1800),
        rate: 0.5,
        lag: Duration::ZERO,
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c42fwd.toml");
    let page_size = 50;
    std::fs::write(
        &config,
        format!(
            r#"{head}
{metrics}
{tenant}
[sources.audit]
type = "audit_log"
tenant = "emu"
start = "1h"
lag = "2s"
poll_interval = "200ms"
page_size = {page_size}

[sinks.kafka]
type = "kafka"
brokers = ["{bootstrap}"]
topic = "code42.{{tenant}}.{{kind}}"
format = "json"
compression = "lz4"

[[routes]]
sources = ["audit"]
sinks = ["kafka"]
"#,
            head = head(dir.path(), "20s"),
            metrics = METRICS_ON_A_FREE_PORT,
            tenant = emu_tenant_secret_file(dir.path(), &emu, &opts),
            bootstrap = kafka.bootstrap(),
        ),
    )
    .unwrap();

    let kill_after = 3_000 + fastrand::i64(0..12_000);
    let daemon = Daemon::start(&config).await;
    wait_stored(
        &kafka.bootstrap(),
        topic,
        3,
        kill_after,
        Duration::from_secs(120),
    )
    .await;
    daemon.kill9().await;
    let at_kill = consume_all(&kafka.bootstrap(), topic, 3, PATIENCE)
        .await
        .len();

    let daemon = Daemon::start(&config).await;
    let first = emu.started_at() - chrono::Duration::hours(2);
    let cut = emu.started_at() + chrono::Duration::seconds(1);
    let truth = multiset(emu.events_between(first, cut));
    let want: usize = truth.values().sum();
    let bound = c42fwd::sources::poll::MAX_IN_FLIGHT * page_size;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let got = loop {
        let got = consume_all(&kafka.bootstrap(), topic, 3, PATIENCE).await;
        let mut m: HashMap<&str, usize> = HashMap::new();
        for g in &got {
            *m.entry(g.payload.as_str()).or_default() += 1;
        }
        if truth
            .iter()
            .all(|(k, n)| m.get(k.as_str()).copied().unwrap_or(0) >= *n)
        {
            break got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every event arrived: {} of {want} read; log:\n{}",
            got.len(),
            log_tail(&config)
        );
    };
    assert!(daemon.terminate().await.success());

    assert!(
        got.iter().all(|m| m.partition == got[0].partition),
        "one key, one partition"
    );
    assert!(got
        .iter()
        .all(|m| m.key.as_deref() == Some("audit") && m.header("c42fwd-tenant") == Some("emu")));
    let all =
        multiset(emu.events_between(first, chrono::Utc::now() + chrono::Duration::seconds(1)));
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for g in &got {
        *counts.entry(g.payload.as_str()).or_default() += 1;
    }
    let duplicates: usize = counts
        .iter()
        .map(|(k, n)| n.saturating_sub(all.get(*k).copied().unwrap_or(0)))
        .sum();
    eprintln!(
        "sigkill after {at_kill} messages: {duplicates} duplicates after restart (bound {bound})"
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than the in-flight bound {bound}"
    );
    // In order: the first copy of each event comes in time order (the emulator has no
    // ingestion lag here, so the source reads them in time order).
    let mut firsts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for g in &got {
        if seen.insert(g.payload.as_str()) {
            let v: serde_json::Value = serde_json::from_str(&g.payload).unwrap();
            let t = v["timestamp"].as_str().expect("timestamp");
            firsts.push(chrono::DateTime::parse_from_rfc3339(t).expect("rfc 3339 timestamp"));
        }
    }
    let out_of_order = firsts.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(out_of_order, 0, "events out of order in the partition");
}

/// Broker errors injected by librdkafka's mock cluster (in addition to the real broker
/// above): a produce refused for want of an ACL is a set-up fault: the route stalls
/// with `reason="kafka_authorization"`, nothing is dead-lettered, and delivery goes on
/// by itself once the cluster takes the messages again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_authorization_stalls_and_never_dead_letters() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("c42-acl", 1, 1).expect("mock topic");
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 3],
    );
    let sink = TestSink::start(kafka_sink(
        "acl",
        kafka_options(&cluster.bootstrap_servers(), "c42-acl"),
    ));
    let waiter = sink.send(numbered(0..10)).await;
    crate::support::wait_for("the sink stalled on the refused ACL", PATIENCE, || {
        stalled(&sink, "acl", "kafka_authorization") == 1
    })
    .await;
    delivered(waiter).await;
    assert_eq!(
        stalled(&sink, "acl", "kafka_authorization"),
        0,
        "the stall is over"
    );
    assert_eq!(sink.events(), 10);
    assert_eq!(
        sink.counter("discarded", Some(("reason", "kafka_refused"))),
        0
    );
    assert!(sink.errors("kafka_authorization") >= 1);
    assert!(sink.resent() >= 10, "the refused messages were sent again");
}

/// `validate --connect`'s check of a kafka sink: the cluster answers its metadata, and
/// a fixed topic exists; a port where no broker listens fails with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_asks_the_cluster_for_the_topic() {
    let kafka = Tansu::start(false).await;
    kafka.create_topic("c42-health", 1);
    let ok = kafka_sink("k", kafka_options(&kafka.bootstrap(), "c42-health"));
    c42fwd::sinks::healthcheck(&ok)
        .await
        .expect("the cluster answers and has the topic");
    let nobody = format!("127.0.0.1:{}", crate::support::unused_tcp_port());
    let down = kafka_sink("k", kafka_options(&nobody, "c42-health"));
    let e = c42fwd::sinks::healthcheck(&down)
        .await
        .expect_err("no broker listens there");
    assert_eq!(e.kind(), "kafka_unreachable", "{e}");
    assert!(e.to_string().contains(&nobody), "{e}");
}
