//! The generic HTTP sink against an in-test collector: NDJSON and JSON array bodies,
//! basic and bearer authentication, gzip, custom headers; 400 -> split down to the
//! refused record, which goes to the dead-letter file; 401 / 403 / 404 / 405 -> stall;
//! 5xx and 429 -> retried; the HEAD probe of `validate --connect` through TLS.

use crate::support::http::{audit_event, dead_letters, encoding, fast_retry, outcome, plain_tls};
use crate::support::sink::TestSink;
use crate::support::PATIENCE;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use c42fwd::ack::Outcome;
use c42fwd::config::{HttpAuth, HttpBatching, HttpBody, HttpOptions, Sink, SinkKind};
use c42fwd::encode::{Encoder, Format};
use c42fwd::event::Event;
use c42fwd::secret::Secret;
use serde_json::Value;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// One request as the collector saw it.
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    /// The body, gunzipped when it came gzip-encoded.
    body: Vec<u8>,
    status: u16,
}

#[derive(Default)]
struct Script {
    /// Statuses to answer, in order; then 200.
    statuses: VecDeque<u16>,
    /// A request whose body holds this text is answered 400.
    reject_marker: Option<String>,
    seen: Vec<Seen>,
}

type Shared = Arc<(Mutex<Script>, watch::Sender<u64>)>;

struct Collector {
    url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn ingest(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let gzip = headers.get("content-encoding").is_some_and(|v| v == "gzip");
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("gzip body");
        out
    } else {
        body.to_vec()
    };
    let status = {
        let mut s = shared.0.lock().unwrap();
        let marked = s
            .reject_marker
            .as_ref()
            .is_some_and(|m| String::from_utf8_lossy(&body).contains(m.as_str()));
        let status = if marked {
            400
        } else {
            s.statuses.pop_front().unwrap_or(200)
        };
        s.seen.push(Seen {
            headers,
            body,
            status,
        });
        status
    };
    shared.1.send_modify(|v| *v += 1);
    let text = if status == 400 {
        "{\"error\":\"field `note` is poisoned\"}"
    } else {
        "ok"
    };
    (StatusCode::from_u16(status).unwrap(), text)
}

impl Collector {
    async fn start(script: Script) -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let shared: Shared = Arc::new((Mutex::new(script), watch::channel(0).0));
        let app = axum::Router::new()
            .route("/ingest", post(ingest))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector { url, shared, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.0.lock().unwrap().seen.clone()
    }

    /// The records of every 2xx request, in order, parsed per `body`.
    fn accepted_records(&self, body: HttpBody) -> Vec<Value> {
        self.seen()
            .iter()
            .filter(|s| s.status < 300)
            .flat_map(|s| parse_body(body, &s.body))
            .collect()
    }
}

fn parse_body(body: HttpBody, bytes: &[u8]) -> Vec<Value> {
    match body {
        HttpBody::NdJson => {
            assert!(bytes.ends_with(b"\n"), "ndjson body ends with LF");
            bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).expect("each line is json"))
                .collect()
        }
        HttpBody::JsonArray => match serde_json::from_slice(bytes).expect("body is json") {
            Value::Array(v) => v,
            other => panic!("body is not an array: {other}"),
        },
    }
}

fn http_sink(url: &str, body: HttpBody, auth: HttpAuth, gzip: bool, format: Format) -> Sink {
    Sink {
        name: "web".into(),
        kind: SinkKind::Http(HttpOptions {
            url: url.parse().unwrap(),
            body,
            headers: vec![
                ("X-Tenant".into(), "acme".into()),
                ("X-Source".into(), "c42fwd".into()),
            ],
            auth,
            gzip,
            batching: HttpBatching {
                max_events: 6,
                max_bytes: 64 * 1024,
                max_wait: Duration::from_millis(50),
            },
            request_timeout: Duration::from_secs(10),
            tls: plain_tls(),
        }),
        encoding: encoding(format),
        dead_letter_max_bytes: c42fwd::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry: fast_retry(),
    }
}

fn events(range: std::ops::Range<usize>) -> Vec<Event> {
    range.map(|s| audit_event(s, None)).collect()
}

async fn round_trip(body: HttpBody, auth: HttpAuth, gzip: bool, expect_auth: Option<&str>) {
    let c = Collector::start(Script::default()).await;
    let dl = tempfile::tempdir().unwrap();
    let sink = TestSink::start_in(
        http_sink(&c.url, body, auth, gzip, Format::JsonRaw),
        dl.path(),
    );
    let w1 = sink.send(events(0..10)).await;
    let w2 = sink.send(events(10..25)).await;
    assert_eq!(outcome(w1).await, Outcome::Delivered);
    assert_eq!(outcome(w2).await, Outcome::Delivered);
    let records = c.accepted_records(body);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..25).collect::<Vec<u64>>(),
        "every record once, in order"
    );
    assert_eq!(
        records[1]["note"],
        "line one\nline two \"quoted\" | pipe = equals"
    );
    for s in c.seen() {
        let h = &s.headers;
        assert_eq!(h["x-tenant"], "acme");
        assert_eq!(h["x-source"], "c42fwd");
        assert_eq!(
            h["content-type"],
            match body {
                HttpBody::NdJson => "application/x-ndjson",
                HttpBody::JsonArray => "application/json",
            }
        );
        assert_eq!(h.get("content-encoding").is_some(), gzip);
        assert_eq!(
            h.get("authorization").map(|v| v.to_str().unwrap()),
            expect_auth
        );
        assert!(parse_body(body, &s.body).len() <= 6, "max_events holds");
    }
    assert_eq!(sink.counter("events", None), 25);
    sink.finish().await;
}

#[tokio::test]
async fn ndjson_with_basic_auth_and_gzip() {
    round_trip(
        HttpBody::NdJson,
        HttpAuth::Basic {
            username: "fwd".into(),
            password: Secret::new("pa55word"),
        },
        true,
        Some("Basic ZndkOnBhNTV3b3Jk"),
    )
    .await;
}

#[tokio::test]
async fn json_array_with_bearer_auth() {
    round_trip(
        HttpBody::JsonArray,
        HttpAuth::Bearer(Secret::new("bearer-tok-123")),
        false,
        Some("Bearer bearer-tok-123"),
    )
    .await;
}

#[tokio::test]
async fn ndjson_without_auth() {
    round_trip(HttpBody::NdJson, HttpAuth::None, false, None).await;
}

#[tokio::test]
async fn cef_records_go_as_json_strings() {
    let c = Collector::start(Script::default()).await;
    let dl = tempfile::tempdir().unwrap();
    let sink = TestSink::start_in(
        http_sink(
            &c.url,
            HttpBody::JsonArray,
            HttpAuth::None,
            true,
            Format::Cef,
        ),
        dl.path(),
    );
    let evs = events(0..3);
    let w = sink.send(evs.clone()).await;
    assert_eq!(outcome(w).await, Outcome::Delivered);
    let enc = Encoder::new(encoding(Format::Cef));
    let got: Vec<String> = c
        .accepted_records(HttpBody::JsonArray)
        .into_iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect();
    let want: Vec<String> = evs
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            enc.encode(e, &mut out);
            String::from_utf8(out).unwrap()
        })
        .collect();
    assert_eq!(got, want);
    sink.finish().await;
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried() {
    let c = Collector::start(Script {
        statuses: VecDeque::from([503, 500, 429, 502]),
        ..Default::default()
    })
    .await;
    let dl = tempfile::tempdir().unwrap();
    let sink = TestSink::start_in(
        http_sink(
            &c.url,
            HttpBody::NdJson,
            HttpAuth::None,
            false,
            Format::JsonRaw,
        ),
        dl.path(),
    );
    let w = sink.send(events(0..6)).await;
    assert_eq!(outcome(w).await, Outcome::Delivered);
    let seen = c.seen();
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        [503, 500, 429, 502, 200]
    );
    // The same body every time.
    assert!(seen.windows(2).all(|w| w[0].body == w[1].body));
    assert_eq!(c.accepted_records(HttpBody::NdJson).len(), 6);
    assert_eq!(sink.counter("errors", Some(("kind", "http_503"))), 1);
    assert_eq!(sink.counter("errors", Some(("kind", "http_5xx"))), 2);
    assert_eq!(sink.counter("errors", Some(("kind", "http_429"))), 1);
    assert!(
        !dl.path().join("web.ndjson").exists(),
        "nothing dead-lettered"
    );
    sink.finish().await;
}

#[tokio::test]
async fn a_bad_request_is_split_until_only_the_refused_record_is_dead_lettered() {
    let c = Collector::start(Script {
        reject_marker: Some("POISON".into()),
        ..Default::default()
    })
    .await;
    let dl = tempfile::tempdir().unwrap();
    let secret = "bearer-secret-xyz";
    let sink = TestSink::start_in(
        http_sink(
            &c.url,
            HttpBody::NdJson,
            HttpAuth::Bearer(Secret::new(secret)),
            true,
            Format::JsonRaw,
        ),
        dl.path(),
    );
    // Batches of 6 = one request each; record 8 of the second one is poisoned.
    let bad: Vec<Event> = (6..12)
        .map(|s| audit_event(s, (s == 8).then_some("POISON")))
        .collect();
    let w1 = sink.send(events(0..6)).await;
    let w2 = sink.send(bad.clone()).await;
    let w3 = sink.send(events(12..18)).await;
    for w in [w1, w2, w3] {
        assert_eq!(outcome(w).await, Outcome::Delivered);
    }
    let mut seqs: Vec<u64> = c
        .accepted_records(HttpBody::NdJson)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..18).filter(|&s| s != 8).collect::<Vec<u64>>());
    let path = dl.path().join("web.ndjson");
    let lines = dead_letters(&path);
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["reason"],
        "http 400 Bad Request: {\"error\":\"field `note` is poisoned\"}"
    );
    let enc = Encoder::new(encoding(Format::JsonRaw));
    let mut rec = Vec::new();
    enc.encode(&bad[2], &mut rec);
    assert_eq!(lines[0]["record"].as_str().unwrap().as_bytes(), &rec[..]);
    assert!(!std::fs::read_to_string(&path).unwrap().contains(secret));
    assert_eq!(sink.counter("discarded", Some(("reason", "http_400"))), 1);
    assert_eq!(sink.counter("events", None), 17);
    // 6 records, one bad: 6 -> 3 -> 2 -> 1 refused, each refused request split once.
    assert_eq!(c.seen().iter().filter(|s| s.status == 400).count(), 4);
    sink.finish().await;
}

#[tokio::test]
async fn refused_credentials_and_a_wrong_url_stall_and_dead_letter_nothing() {
    let c = Collector::start(Script {
        statuses: VecDeque::from([401, 403, 403, 404, 405]),
        ..Default::default()
    })
    .await;
    let dl = tempfile::tempdir().unwrap();
    let sink = TestSink::start_in(
        http_sink(
            &c.url,
            HttpBody::JsonArray,
            HttpAuth::Bearer(Secret::new("rotated-token-1")),
            false,
            Format::JsonRaw,
        ),
        dl.path(),
    );
    let w = sink.send(events(0..6)).await;
    assert_eq!(outcome(w).await, Outcome::Delivered);
    let seen = c.seen();
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        [401, 403, 403, 404, 405, 200]
    );
    assert!(seen.windows(2).all(|w| w[0].body == w[1].body));
    assert!(
        !dl.path().join("web.ndjson").exists(),
        "nothing dead-lettered"
    );
    let m = &sink.ctx.metrics;
    for reason in ["http_401", "http_403", "http_404", "http_405"] {
        let l = vec![("sink", "web".to_string()), ("reason", reason.to_string())];
        assert_eq!(m.sink_stalls.get_or_create(&l).get(), 1, "{reason}");
        assert_eq!(
            m.sink_stalled.get_or_create(&l).get(),
            0,
            "{reason} is over"
        );
    }
    assert!(m.health.stalled().is_empty());
    sink.finish().await;
}

#[tokio::test]
async fn max_wait_sends_a_partial_batch() {
    let c = Collector::start(Script::default()).await;
    let dl = tempfile::tempdir().unwrap();
    let sink = TestSink::start_in(
        http_sink(
            &c.url,
            HttpBody::NdJson,
            HttpAuth::None,
            false,
            Format::JsonRaw,
        ),
        dl.path(),
    );
    // 2 events < max_events: only max_wait can send them (the queue stays open).
    let w = sink.send(events(0..2)).await;
    assert_eq!(
        tokio::time::timeout(PATIENCE, w.wait()).await.unwrap(),
        Outcome::Delivered
    );
    assert_eq!(c.seen().len(), 1);
    sink.finish().await;
}
