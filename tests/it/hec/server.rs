//! An in-test Splunk HTTP Event Collector: the documented behaviour of
//! `/services/collector/event`, `/services/collector/health` and
//! `/services/collector/ack`, on 127.0.0.1 (port 0), with injectable faults.
//!
//! What it checks like HEC does: the token (`Authorization: Splunk <token>`: missing
//! -> 401 code 2, wrong -> `invalid_token_status` code 4), the request channel when
//! indexer acknowledgement is on (missing -> 400 code 10, not a GUID -> 400 code 11),
//! gzip bodies (`Content-Encoding: gzip`), the batch format (concatenated JSON
//! envelopes: unparsable -> 400 code 6 with `invalid-event-number`, no `event` ->
//! code 12, blank `event` -> code 13, empty body -> code 5). Accepted requests get
//! `{"text":"Success","code":0}` and, with acknowledgement on, an `ackId` per channel;
//! `{"acks":[ids]}` polls answer `{"acks":{"id":bool}}`, true once `ack_delay` has
//! passed (and acks are not held), and each id is forgotten once reported true.
//!
//! Faults: bursts of 503 (code 9, server busy), slow ack answers (sent a while after the
//! acks they report were forgotten), a 400 for any request holding a marker
//! string (naming the event with `invalid-event-number`, or not), acknowledgements
//! that never come for chosen requests, a health endpoint that reports unhealthy for
//! the first checks, a switch that holds every ack false until released, and a token
//! that can be changed while the server runs (a rotated token, then a fixed one).
//!
//! Shared by the integration tests (`tests/it/hec.rs`) and the bench
//! (`benches/http_sinks.rs`, through `#[path]`): it depends only on external crates.
#![allow(dead_code)] // the bench uses a subset

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct HecServerOptions {
    pub token: String,
    pub indexer_ack: bool,
    /// How long after its request an ack reads true.
    pub ack_delay: Duration,
    /// How long an ack poll's answer takes to leave, after the server marked (and
    /// forgot) the acks it reports true: an answer a client may drop halfway.
    pub ack_answer_delay: Duration,
    /// Event requests (numbered from 1, in arrival order, every attempt counts) whose
    /// ack never becomes true: a lost acknowledgement.
    pub lose_acks_of: BTreeSet<u64>,
    /// Request `n` (from 1) is answered 503 "server is busy" when
    /// `(n - 1) % busy_every < busy_burst`; 0 = never.
    pub busy_every: u64,
    pub busy_burst: u64,
    /// A request whose body holds this text is answered 400 "invalid data format".
    pub reject_marker: Option<String>,
    /// Whether that answer names the event (`invalid-event-number`), as HEC does.
    pub name_invalid_event: bool,
    /// The status of a wrong token (HEC answers 403; some front ends 401).
    pub invalid_token_status: u16,
    /// The first this many health checks answer 503 "unhealthy".
    pub unhealthy_checks: u64,
    /// Keep every envelope (false: only count them, for the bench).
    pub store: bool,
}

impl Default for HecServerOptions {
    fn default() -> Self {
        HecServerOptions {
            token: "11111111-2222-3333-4444-555555555555".into(),
            indexer_ack: true,
            ack_delay: Duration::ZERO,
            ack_answer_delay: Duration::ZERO,
            lose_acks_of: BTreeSet::new(),
            busy_every: 0,
            busy_burst: 0,
            reject_marker: None,
            name_invalid_event: true,
            invalid_token_status: 403,
            unhealthy_checks: 0,
            store: true,
        }
    }
}

/// One envelope HEC accepted.
#[derive(Debug, Clone)]
pub struct Indexed {
    pub envelope: Value,
    /// The `event` value exactly as sent.
    pub event_raw: String,
    /// The event request (numbered from 1) that carried it.
    pub request: u64,
    pub channel: Option<String>,
    /// Reported indexed by an ack poll (always true with acknowledgement off).
    pub confirmed: bool,
}

#[derive(Debug, Default, Clone)]
pub struct HecStats {
    /// Event requests, every attempt.
    pub requests: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub gzip_requests: u64,
    /// Envelopes accepted (also counted when `store` is off).
    pub accepted_events: u64,
    pub ack_polls: u64,
    pub health_checks: u64,
    /// Health checks done before the first event request arrived.
    pub health_checks_before_first_event: Option<u64>,
    pub channels: BTreeSet<String>,
}

struct AckEntry {
    ready_at: Option<Instant>,
    /// Indices into `received`.
    events: std::ops::Range<usize>,
}

struct Inner {
    opts: HecServerOptions,
    stats: HecStats,
    received: Vec<Indexed>,
    acks: HashMap<(String, u64), AckEntry>,
    next_ack: HashMap<String, u64>,
    hold_acks: bool,
}

type Shared = Arc<(Mutex<Inner>, watch::Sender<u64>)>;

pub struct HecServer {
    addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
}

fn answer(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).expect("valid status"),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn hec_error(status: u16, code: i64, text: &str) -> Response {
    answer(status, json!({"text": text, "code": code}))
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl HecServer {
    /// Serves on 127.0.0.1, on a port the kernel picks.
    pub async fn start(opts: HecServerOptions) -> HecServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(opts, listener).await
    }

    /// Serves on any axum listener (plain TCP, or TLS in the TLS tests).
    pub async fn serve<L>(opts: HecServerOptions, listener: L) -> HecServer
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let addr = listener.local_addr().expect("local addr");
        let (tx, _) = watch::channel(0u64);
        let shared: Shared = Arc::new((
            Mutex::new(Inner {
                opts,
                stats: HecStats::default(),
                received: Vec::new(),
                acks: HashMap::new(),
                next_ack: HashMap::new(),
                hold_acks: false,
            }),
            tx,
        ));
        let app = Router::new()
            .route("/services/collector/event", post(event))
            .route("/services/collector/health", get(health))
            .route("/services/collector/ack", post(ack))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HecServer { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT` (the sink's `endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.shared.0.lock().expect("hec server state");
        let out = f(&mut inner);
        drop(inner);
        self.shared.1.send_modify(|v| *v += 1);
        out
    }

    pub fn stats(&self) -> HecStats {
        self.shared
            .0
            .lock()
            .expect("hec server state")
            .stats
            .clone()
    }

    /// Every envelope accepted, in arrival order.
    pub fn received(&self) -> Vec<Indexed> {
        self.shared
            .0
            .lock()
            .expect("hec server state")
            .received
            .clone()
    }

    /// The events indexed: accepted and, with acknowledgement on, confirmed.
    pub fn indexed(&self) -> Vec<Indexed> {
        self.received()
            .into_iter()
            .filter(|i| i.confirmed)
            .collect()
    }

    /// From now on only `token` is accepted.
    pub fn set_token(&self, token: &str) {
        self.with(|i| i.opts.token = token.to_string());
    }

    /// While held, every ack reads false.
    pub fn hold_acks(&self, hold: bool) {
        self.with(|i| i.hold_acks = hold);
    }

    /// Waits until `done` holds for the server's state, or panics after `within`.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        done: impl FnMut(&HecStats, &[Indexed]) -> bool,
    ) {
        if !self.wait_for(within, done).await {
            panic!(
                "hec server {}: timed out after {within:?} waiting for {what}; stats {:?}",
                self.addr,
                self.stats()
            );
        }
    }

    /// Waits until at least `n` events were confirmed indexed (`wait_for`).
    pub async fn wait_for_confirmed(&self, n: usize, within: Duration) -> bool {
        self.wait_for(within, |_, r| r.iter().filter(|i| i.confirmed).count() >= n)
            .await
    }

    /// Waits until `done` holds for the server's state; `false` after `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        mut done: impl FnMut(&HecStats, &[Indexed]) -> bool,
    ) -> bool {
        let mut changed = self.shared.1.subscribe();
        let deadline = Instant::now() + within;
        loop {
            {
                let inner = self.shared.0.lock().expect("hec server state");
                if done(&inner.stats, &inner.received) {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
    }
}

impl Drop for HecServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn check_token(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    let Some(auth) = headers.get("authorization") else {
        return Some(hec_error(401, 2, "Token is required"));
    };
    let Some(token) = auth.to_str().ok().and_then(|a| a.strip_prefix("Splunk ")) else {
        return Some(hec_error(401, 3, "Invalid authorization"));
    };
    if token != inner.opts.token {
        return Some(hec_error(
            inner.opts.invalid_token_status,
            4,
            "Invalid token",
        ));
    }
    None
}

/// The channel, or HEC's answer when acknowledgement needs one and it is bad.
fn check_channel(inner: &Inner, headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
    let channel = headers
        .get("x-splunk-request-channel")
        .map(|v| v.to_str().unwrap_or("").to_string());
    if inner.opts.indexer_ack {
        match &channel {
            None => return Err(Box::new(hec_error(400, 10, "Data channel is missing"))),
            Some(c) if !is_guid(c) => {
                return Err(Box::new(hec_error(400, 11, "Invalid data channel")))
            }
            Some(_) => {}
        }
    }
    Ok(channel)
}

async fn health(State(shared): State<Shared>) -> Response {
    let resp = {
        let mut inner = shared.0.lock().expect("hec server state");
        inner.stats.health_checks += 1;
        if inner.stats.health_checks <= inner.opts.unhealthy_checks {
            hec_error(503, 18, "HEC is unhealthy, queues are full")
        } else {
            hec_error(200, 17, "HEC is healthy")
        }
    };
    shared.1.send_modify(|v| *v += 1);
    resp
}

async fn event(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let resp = event_inner(&shared, &headers, &body);
    shared.1.send_modify(|v| *v += 1);
    resp
}

fn event_inner(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let mut guard = shared.0.lock().expect("hec server state");
    let inner = &mut *guard;
    inner.stats.requests += 1;
    let n = inner.stats.requests;
    if inner.stats.health_checks_before_first_event.is_none() {
        inner.stats.health_checks_before_first_event = Some(inner.stats.health_checks);
    }
    let resp = (|| {
        if let Some(r) = check_token(inner, headers) {
            return r;
        }
        let channel = match check_channel(inner, headers) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        if let Some(c) = &channel {
            inner.stats.channels.insert(c.clone());
        }
        let gzip = headers
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        if gzip {
            inner.stats.gzip_requests += 1;
        }
        let o = &inner.opts;
        if o.busy_every > 0 && (n - 1) % o.busy_every < o.busy_burst {
            return hec_error(503, 9, "Server is busy");
        }
        let plain;
        let body: &[u8] = if gzip {
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .is_err()
            {
                return hec_error(400, 6, "Invalid data format");
            }
            plain = out;
            &plain
        } else {
            body
        };
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return hec_error(400, 5, "No data");
        }
        // Parse every envelope first: HEC refuses a request with a bad event.
        let mut parsed = Vec::new();
        let mut count = 0usize;
        for (i, env) in serde_json::Deserializer::from_slice(body)
            .into_iter::<Box<RawValue>>()
            .enumerate()
        {
            let bad = |code, text| {
                answer(
                    400,
                    json!({"text": text, "code": code, "invalid-event-number": i}),
                )
            };
            let name = inner.opts.name_invalid_event;
            let Ok(env) = env else {
                return bad(6, "Invalid data format");
            };
            if let Some(m) = &inner.opts.reject_marker {
                if env.get().contains(m.as_str()) {
                    if !name {
                        return hec_error(400, 6, "Invalid data format");
                    }
                    return bad(6, "Invalid data format");
                }
            }
            count += 1;
            if !inner.opts.store {
                continue;
            }
            #[derive(serde::Deserialize)]
            struct EventOnly {
                event: Option<Box<RawValue>>,
            }
            let Ok(only) = serde_json::from_str::<EventOnly>(env.get()) else {
                return bad(6, "Invalid data format");
            };
            let Some(ev) = only.event else {
                return bad(12, "Event field is required");
            };
            if matches!(ev.get().trim(), "\"\"" | "null") {
                return bad(13, "Event field cannot be blank");
            }
            let Ok(envelope) = serde_json::from_str::<Value>(env.get()) else {
                return bad(6, "Invalid data format");
            };
            parsed.push((envelope, ev.get().to_string()));
        }
        inner.stats.accepted_events += count as u64;
        let first = inner.received.len();
        let ack = inner.opts.indexer_ack;
        for (envelope, event_raw) in parsed {
            inner.received.push(Indexed {
                envelope,
                event_raw,
                request: n,
                channel: channel.clone(),
                confirmed: !ack,
            });
        }
        if !ack {
            return answer(200, json!({"text": "Success", "code": 0}));
        }
        let channel = channel.unwrap_or_default();
        let id = {
            let next = inner.next_ack.entry(channel.clone()).or_insert(0);
            let id = *next;
            *next += 1;
            id
        };
        let ready_at = if inner.opts.lose_acks_of.contains(&n) {
            None
        } else {
            Some(Instant::now() + inner.opts.ack_delay)
        };
        inner.acks.insert(
            (channel, id),
            AckEntry {
                ready_at,
                events: first..inner.received.len(),
            },
        );
        answer(200, json!({"text": "Success", "code": 0, "ackId": id}))
    })();
    *inner
        .stats
        .statuses
        .entry(resp.status().as_u16())
        .or_insert(0) += 1;
    resp
}

async fn ack(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let answer_delay;
    let resp = {
        let mut guard = shared.0.lock().expect("hec server state");
        let inner = &mut *guard;
        inner.stats.ack_polls += 1;
        answer_delay = inner.opts.ack_answer_delay;
        (|| {
            if let Some(r) = check_token(inner, &headers) {
                return r;
            }
            let channel = match check_channel(inner, &headers) {
                Ok(c) => c.unwrap_or_default(),
                Err(r) => return *r,
            };
            if !inner.opts.indexer_ack {
                return hec_error(400, 14, "ACK is disabled");
            }
            #[derive(serde::Deserialize)]
            struct Query {
                acks: Vec<u64>,
            }
            let Ok(q) = serde_json::from_slice::<Query>(&body) else {
                return hec_error(400, 6, "Invalid data format");
            };
            let now = Instant::now();
            let mut out = serde_json::Map::new();
            for id in q.acks {
                let key = (channel.clone(), id);
                let ready = !inner.hold_acks
                    && inner
                        .acks
                        .get(&key)
                        .and_then(|a| a.ready_at)
                        .is_some_and(|t| t <= now);
                if ready {
                    if let Some(a) = inner.acks.remove(&key) {
                        for i in a.events {
                            inner.received[i].confirmed = true;
                        }
                    }
                }
                out.insert(id.to_string(), Value::Bool(ready));
            }
            answer(200, json!({ "acks": out }))
        })()
    };
    shared.1.send_modify(|v| *v += 1);
    if !answer_delay.is_zero() {
        tokio::time::sleep(answer_delay).await;
    }
    resp
}
