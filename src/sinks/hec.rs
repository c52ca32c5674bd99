//! The Splunk HTTP Event Collector sink.
//!
//! Each event becomes one HEC envelope, `{"time": <occurred, epoch seconds with
//! millis>, "host", "source", "sourcetype", "index", "fields": {"c42_source": <source
//! kind>, "c42_source_name": <configured source>}, "event": <record>}` (absent
//! `source` / `sourcetype` / `index` are left to the token's defaults). JSON records go
//! in as JSON values, CEF / LEEF / syslog-headed ones as strings. Envelopes are
//! concatenated into one request body (HEC's batch format), cut by `max_events`,
//! `max_bytes` and `max_wait`, gzip-compressed by default, and posted to
//! `/services/collector/event` with `Authorization: Splunk <token>` and the
//! `X-Splunk-Request-Channel` header.
//!
//! The channel is the configured one or a random UUID v4 made at start. It is sent
//! even with indexer acknowledgement off: HEC ignores it then, and a token that has
//! acknowledgement turned on (and so insists on a channel, code 10) still works.
//!
//! At start the sink checks `GET /services/collector/health` and waits, with the
//! shared backoff, while HEC answers that it is unhealthy (503: queues full) or does
//! not answer; a health endpoint that is missing (a 4xx, e.g. behind a proxy) is logged
//! and not waited for.
//!
//! Delivery: without indexer acknowledgement a batch is Delivered when HEC answered
//! 2xx. With it (`indexer_ack = true`), a 2xx only brings an `ackId`; the sink polls
//! `POST /services/collector/ack` with `{"acks":[ids]}` every `ack_poll_interval`,
//! and a request's batches are Delivered only once HEC says its id is `true`
//! (indexed). A request not confirmed within `ack_timeout` is sent again (counted in
//! `sink_resent`; at-least-once). At most [`MAX_UNACKED`] requests wait for their
//! acknowledgement (plus the requests cut from the one batch being taken); beyond
//! that the sink stops taking batches (backpressure, ARCHITECTURE.md invariant 3). If HEC
//! answers 2xx without an `ackId` although acknowledgement is on, the token has it
//! turned off: a warning says so once, and such requests count as delivered on 2xx.
//!
//! Classification ([`classify`]): 503 (code 9, server busy), 429, other 5xx, 408,
//! timeouts and connection errors are retried with the shared backoff, honouring
//! `Retry-After`. 401 and 403 (token missing, invalid or disabled: codes 1 to 4), and
//! a 400 that blames the set-up rather than the data (code 7 incorrect index, 10 and
//! 11 the channel, 14 acknowledgement disabled, 16 query-string authorization) stall
//! the route: the request is held and retried with backoff, nothing is dead-lettered,
//! and the stall shows in logs, `c42fwd_sink_stalled` and `/health` until HEC takes a
//! request again (a fixed or re-enabled token needs no restart). Any other 400 (code 5
//! no data, 6 invalid data format, 12 and 13 event field missing or blank, 15 indexed
//! fields) and 413 refuse the data: when HEC names the event (`invalid-event-number`)
//! that event is dead-lettered with HEC's text, the events before it are sent again
//! (HEC may have indexed them already: at-least-once) and the ones after it too; without
//! a number the request is split in halves until each refused event is alone
//! (`http_common`).
//!
//! At start, a token sent over plain `http://` is logged as a WARN.
//!
//! `validate --connect` ([`healthcheck`]) checks the health endpoint (which ignores the
//! token) and then the token itself: an empty `POST /services/collector/event`, which
//! HEC answers 400 code 5 "No data" for a token it accepts and 401 / 403 for one it
//! does not.
//!
//! Not done here: batching, gzip, the retry loop and dead-lettering (`http_common`).

use super::http_common::{
    build_client, classify_status, error_chain, read_limited, server_text, sleep_until,
    status_detail, AckLedger, Batcher, BodyWriter, Courier, Embedding, SealedChunk, Span, Verdict,
};
use super::{DeadLetterFile, SinkContext, SinkError, SinkMetrics};
use crate::config::{HecOptions, Sink, SinkKind};
use crate::encode::Encoder;
use crate::event::{Batch, Event};
use crate::metrics::label;
use crate::retry::deadline_after;
use crate::route::SinkBatch;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Requests that may wait for their indexer acknowledgement at once. Each holds its
/// (compressed) body for a possible resend, so this bounds the memory of the wait:
/// at most this many times `max_bytes`, usually a tenth of that with gzip.
pub(crate) const MAX_UNACKED: usize = 64;

/// The header HEC reads the channel from.
const CHANNEL: &str = "x-splunk-request-channel";

/// A random UUID version 4 (RFC 4122 layout), for the request channel. Not a secret
/// and not a security boundary: fastrand's generator is enough.
pub(crate) fn uuid_v4() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Appends epoch milliseconds as seconds with three decimals (`1700000000.123`).
fn write_epoch_seconds(out: &mut Vec<u8>, millis: i64) {
    if millis < 0 {
        out.push(b'-');
    }
    let abs = millis.unsigned_abs();
    out.extend_from_slice(itoa::Buffer::new().format(abs / 1000).as_bytes());
    let frac = abs % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Writes HEC envelopes.
pub(crate) struct HecEnvelope {
    /// `,"host":...,"source":...` with the configured values, JSON-escaped once.
    meta: String,
    /// The JSON string of the current batch's source name, escaped once per batch.
    source_name: String,
}

impl HecEnvelope {
    pub(crate) fn new(o: &HecOptions) -> Self {
        let mut meta = String::new();
        let mut field = |k: &str, v: &str| {
            meta.push_str(&format!(",\"{k}\":"));
            meta.push_str(&serde_json::Value::from(v).to_string());
        };
        field("host", &o.host);
        for (k, v) in [
            ("source", &o.source),
            ("sourcetype", &o.sourcetype),
            ("index", &o.index),
        ] {
            if let Some(v) = v {
                field(k, v);
            }
        }
        HecEnvelope {
            meta,
            source_name: "\"\"".into(),
        }
    }
}

impl BodyWriter for HecEnvelope {
    fn begin_batch(&mut self, batch: &Batch) {
        self.source_name = serde_json::Value::from(&*batch.source).to_string();
    }

    fn write(
        &self,
        body: &mut Vec<u8>,
        event: &Event,
        record: &[u8],
        embedding: Embedding,
    ) -> Span {
        body.extend_from_slice(b"{\"time\":");
        write_epoch_seconds(body, event.occurred.timestamp_millis());
        body.extend_from_slice(self.meta.as_bytes());
        body.extend_from_slice(b",\"fields\":{\"c42_source\":\"");
        body.extend_from_slice(event.kind.as_str().as_bytes());
        body.extend_from_slice(b"\",\"c42_source_name\":");
        body.extend_from_slice(self.source_name.as_bytes());
        body.extend_from_slice(b"},\"event\":");
        let span = embedding.write(body, record);
        body.push(b'}');
        span
    }
}

/// HEC's answer body: `{"text": "...", "code": N, "ackId": N, "invalid-event-number": N}`.
#[derive(Debug, Default, serde::Deserialize)]
struct HecAnswer {
    text: Option<String>,
    code: Option<i64>,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
    #[serde(rename = "invalid-event-number")]
    invalid_event: Option<i64>,
}

impl HecAnswer {
    fn parse(body: &[u8]) -> HecAnswer {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// The classification of an answer to an event request (see the module doc). HEC's
/// `text`, `code` and `invalid-event-number` go into the detail: "http 400 Bad
/// Request: Invalid data format (code 6, invalid-event-number 3)".
pub(crate) fn classify(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Verdict {
    let a = HecAnswer::parse(body);
    let mut text = match &a.text {
        Some(t) => server_text(t.as_bytes()),
        None => server_text(body),
    };
    if let Some(code) = a.code {
        text.push_str(&format!(" (code {code}"));
        if let Some(n) = a.invalid_event {
            text.push_str(&format!(", invalid-event-number {n}"));
        }
        text.push(')');
    }
    let detail = status_detail(status, text.trim());
    // Code 9 is "server is busy": whatever the status, waiting helps.
    if a.code == Some(9) && !status.is_success() {
        return Verdict::Retry {
            kind: "http_503",
            retry_after,
            detail,
        };
    }
    if status == StatusCode::BAD_REQUEST {
        let stall = |kind| Verdict::Stall {
            kind,
            retry_after,
            detail: detail.clone(),
        };
        return match a.code {
            Some(7) => stall("hec_index"),
            Some(10 | 11) => stall("hec_channel"),
            Some(14 | 16) => stall("hec_config"),
            _ => Verdict::Reject {
                reason: "http_400",
                first_bad: a.invalid_event.and_then(|n| usize::try_from(n).ok()),
                detail,
            },
        };
    }
    classify_status(status, retry_after, detail)
}

/// `base` with `tail` appended to its path (an endpoint may sit under a prefix).
fn endpoint(base: &Url, tail: &[&str]) -> Url {
    let mut u = base.clone();
    if let Ok(mut segs) = u.path_segments_mut() {
        segs.pop_if_empty().extend(tail);
    }
    u
}

/// A request HEC accepted and has not confirmed as indexed yet.
struct Unacked {
    chunk: SealedChunk,
    sent: Instant,
}

struct HecSink {
    courier: Courier,
    opts: HecOptions,
    ack_url: Url,
    ack_headers: HeaderMap,
    ledger: AckLedger,
    /// By `ackId`.
    unacked: BTreeMap<u64, Unacked>,
    acks_pending: prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>,
    warned_no_ack_id: bool,
    ack_poll_failing: bool,
}

pub(crate) async fn run(
    cfg: Sink,
    mut rx: mpsc::Receiver<SinkBatch>,
    ctx: SinkContext,
    encoder: Encoder,
) -> Result<(), SinkError> {
    let SinkKind::Hec(opts) = &cfg.kind else {
        return Err(SinkError::Unsupported { sink: cfg.name });
    };
    let opts = opts.clone();
    let sink = cfg.name.as_str();
    let metrics = SinkMetrics::new(&ctx.metrics, sink);
    let event_url = endpoint(&opts.endpoint, &["services", "collector", "event"]);
    let shown = crate::config::redacted_url(&event_url);
    let client = build_client(sink, &shown, &opts.tls, opts.request_timeout)?;
    let channel = opts.channel.clone().unwrap_or_else(uuid_v4);
    let ack_headers = base_headers(&opts, &channel, &shown)?;
    let mut headers = ack_headers.clone();
    if opts.gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let mut courier = Courier::new(
        sink,
        client,
        event_url,
        headers,
        cfg.retry,
        metrics.clone(),
        DeadLetterFile::for_sink(&cfg, &ctx),
        vec![opts.token.expose().to_string()],
    );
    courier.dead_letter.prepare().await?;
    tracing::info!(
        sink,
        url = %courier.shown,
        channel = %channel,
        indexer_ack = opts.indexer_ack,
        gzip = opts.gzip,
        "splunk hec sink starting"
    );
    courier.warn_if_plaintext_credentials("hec token");
    let health_url = endpoint(&opts.endpoint, &["services", "collector", "health"]);
    if !wait_until_healthy(&courier, &health_url, &ctx.shutdown).await {
        return Ok(());
    }
    let mut hec = HecSink {
        ack_url: endpoint(&opts.endpoint, &["services", "collector", "ack"]),
        ack_headers,
        ledger: AckLedger::default(),
        unacked: BTreeMap::new(),
        acks_pending: ctx
            .metrics
            .sink_hec_acks_pending
            .get_or_create(&label("sink", sink))
            .clone(),
        warned_no_ack_id: false,
        ack_poll_failing: false,
        courier,
        opts,
    };
    hec.run(&mut rx, encoder, &ctx.shutdown).await
}

/// What one look at `/services/collector/health` found.
enum Health {
    /// 2xx, with HEC's text.
    Healthy(String),
    /// 5xx, 429 or no answer: wait and look again.
    Unhealthy {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// Another answer (a 4xx: no health endpoint here, e.g. behind a proxy).
    NoHealthEndpoint(String),
}

async fn probe_health(client: &reqwest::Client, url: &Url) -> Health {
    let check = async {
        let resp = client.get(url.clone()).send().await?;
        let status = resp.status();
        let ra = crate::retry::retry_after(resp.headers());
        let body = read_limited(resp).await?;
        Ok::<_, reqwest::Error>((status, body, ra))
    };
    match check.await {
        Ok((status, body, retry_after)) => {
            let text = HecAnswer::parse(&body)
                .text
                .map(|t| server_text(t.as_bytes()))
                .unwrap_or_else(|| server_text(&body));
            if status.is_success() {
                Health::Healthy(text)
            } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                Health::Unhealthy {
                    detail: status_detail(status, &text),
                    retry_after,
                }
            } else {
                Health::NoHealthEndpoint(status_detail(status, &text))
            }
        }
        Err(e) => Health::Unhealthy {
            detail: error_chain(&e.without_url()),
            retry_after: None,
        },
    }
}

/// Checks HEC's health until it is healthy. `false` when `shutdown` came first.
async fn wait_until_healthy(courier: &Courier, url: &Url, shutdown: &CancellationToken) -> bool {
    let sink = courier.sink.as_str();
    let shown = crate::config::redacted_url(url);
    let mut backoff = courier.retry.backoff();
    loop {
        let health = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return false,
            h = probe_health(&courier.client, url) => h,
        };
        let (detail, retry_after) = match health {
            Health::Healthy(text) => {
                tracing::info!(sink, url = %shown, answer = %text, "splunk hec is healthy");
                return true;
            }
            Health::NoHealthEndpoint(answer) => {
                tracing::warn!(
                    sink,
                    url = %shown,
                    %answer,
                    "splunk hec health endpoint gave no health answer; starting without it"
                );
                return true;
            }
            Health::Unhealthy {
                detail,
                retry_after,
            } => (detail, retry_after),
        };
        courier.metrics.error(&SinkError::Http {
            url: shown.clone(),
            kind: "health",
            retriable: true,
            detail: detail.clone(),
        });
        let Some(delay) = backoff.next_delay_after(retry_after) else {
            tracing::warn!(sink, url = %shown, reason = %detail, "splunk hec still not healthy; starting anyway");
            return true;
        };
        tracing::warn!(sink, url = %shown, reason = %detail, retry_in = ?delay, "splunk hec is not healthy; waiting before sending");
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Checks that the sink can work without sending events: its TLS files load, HEC's
/// health endpoint answers healthy (or is absent: a 4xx), and HEC accepts the token
/// (an empty event request: 400 code 5 "No data" with a good token, 401 / 403 with a
/// bad one).
pub(crate) async fn healthcheck(cfg: &Sink) -> Result<(), SinkError> {
    let SinkKind::Hec(opts) = &cfg.kind else {
        return Ok(());
    };
    let url = endpoint(&opts.endpoint, &["services", "collector", "health"]);
    let shown = crate::config::redacted_url(&url);
    let client = build_client(&cfg.name, &shown, &opts.tls, opts.request_timeout)?;
    if let Health::Unhealthy { detail, .. } = probe_health(&client, &url).await {
        return Err(SinkError::Http {
            url: shown,
            kind: "health",
            retriable: true,
            detail,
        });
    }
    check_token(&client, opts).await
}

/// The headers of every request: the token (marked sensitive), the channel, JSON.
fn base_headers(opts: &HecOptions, channel: &str, shown: &str) -> Result<HeaderMap, SinkError> {
    let bad = |what: &str| SinkError::Http {
        url: shown.to_string(),
        kind: "config",
        retriable: false,
        detail: format!("the {what} holds characters that cannot go in an http header"),
    };
    let mut auth = HeaderValue::from_str(&format!("Splunk {}", opts.token.expose()))
        .map_err(|_| bad("token"))?;
    auth.set_sensitive(true);
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, auth);
    h.insert(
        CHANNEL,
        HeaderValue::from_str(channel).map_err(|_| bad("channel"))?,
    );
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(h)
}

/// Sends an empty event request and reads what HEC says of the token.
async fn check_token(client: &reqwest::Client, opts: &HecOptions) -> Result<(), SinkError> {
    let url = endpoint(&opts.endpoint, &["services", "collector", "event"]);
    let shown = crate::config::redacted_url(&url);
    let err = |kind, detail: String| SinkError::Http {
        url: shown.clone(),
        kind,
        retriable: false,
        detail: detail.replace(opts.token.expose(), "[redacted]"),
    };
    let channel = opts.channel.clone().unwrap_or_else(uuid_v4);
    let headers = base_headers(opts, &channel, &shown)?;
    let answer = async {
        let resp = client
            .post(url.clone())
            .headers(headers)
            .body("")
            .send()
            .await?;
        let status = resp.status();
        let body = read_limited(resp).await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    let (status, body) = answer
        .await
        .map_err(|e| err("connect", error_chain(&e.without_url())))?;
    let a = HecAnswer::parse(&body);
    let detail = classify(status, &body, None).detail().to_string();
    match (status.as_u16(), a.code) {
        (200..=299, _) | (400, Some(5)) => Ok(()),
        (401 | 403, _) => Err(err(
            "token",
            format!("splunk hec refused the token: {detail}"),
        )),
        _ => Err(err(
            "token",
            format!(
                "an empty event request (to check the token) got an unexpected answer: {detail}"
            ),
        )),
    }
}

impl HecSink {
    async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<SinkBatch>,
        encoder: Encoder,
        shutdown: &CancellationToken,
    ) -> Result<(), SinkError> {
        let mut batcher = Batcher::new(
            HecEnvelope::new(&self.opts),
            encoder,
            self.opts.batching,
            self.opts.gzip,
        );
        let mut ready: Vec<SealedChunk> = Vec::new();
        let mut closed = false;
        let mut next_poll: Option<Instant> = None;
        loop {
            if closed && batcher.is_empty() && self.unacked.is_empty() {
                tracing::debug!(sink = %self.courier.sink, "queue closed and drained; sink stops");
                return Ok(());
            }
            let deadline = batcher.deadline();
            let take = !closed && self.unacked.len() < MAX_UNACKED;
            if self.unacked.is_empty() {
                next_poll = None;
            } else if next_poll.is_none() {
                next_poll = Some(deadline_after(Instant::now(), self.opts.ack_poll_interval));
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                _ = sleep_until(next_poll), if next_poll.is_some() => {
                    next_poll = Some(deadline_after(Instant::now(), self.opts.ack_poll_interval));
                    if !self.poll_acks(shutdown).await {
                        return Ok(());
                    }
                    ready.extend(self.take_timed_out());
                }
                _ = sleep_until(deadline), if deadline.is_some() => ready.extend(batcher.flush()),
                next = rx.recv(), if take => {
                    self.courier.metrics.queue.set(rx.len() as i64);
                    match next {
                        Some(sb) => batcher.push(sb, &mut self.ledger, &mut ready),
                        None => {
                            closed = true;
                            ready.extend(batcher.flush());
                        }
                    }
                }
            }
            for chunk in ready.drain(..) {
                if !self.send(chunk, shutdown).await? {
                    return Ok(());
                }
            }
        }
    }

    /// Sends one request until HEC has every record of it (or its refused records are
    /// dead-lettered). `false` when `shutdown` interrupted it.
    async fn send(
        &mut self,
        chunk: SealedChunk,
        shutdown: &CancellationToken,
    ) -> Result<bool, SinkError> {
        let HecSink {
            courier,
            opts,
            ledger,
            unacked,
            acks_pending,
            warned_no_ack_id,
            ..
        } = self;
        let indexer_ack = opts.indexer_ack;
        let accepted = |c: &Courier,
                        chunk: SealedChunk,
                        body: bytes::Bytes,
                        ledger: &mut AckLedger| {
            let ack_id = HecAnswer::parse(&body).ack_id;
            match (indexer_ack, ack_id) {
                (true, Some(id)) => {
                    let entry = Unacked {
                        chunk,
                        sent: Instant::now(),
                    };
                    let old = unacked.insert(id, entry);
                    acks_pending.set(unacked.len() as i64);
                    if let Some(old) = old {
                        // HEC handed out an id we still wait for: it restarted and
                        // forgot the old one, which will never be confirmed now.
                        tracing::warn!(sink = %c.sink, ack_id = id, "splunk hec reused an ackId; sending the older request again");
                        c.metrics.resent(old.chunk.events());
                        return Some(old.chunk);
                    }
                    None
                }
                (true, None) => {
                    if !*warned_no_ack_id {
                        *warned_no_ack_id = true;
                        tracing::warn!(
                            sink = %c.sink,
                            url = %c.shown,
                            "indexer_ack is on but splunk hec returned no ackId: indexer acknowledgement \
                             is off for this token; batches count as delivered when hec accepts them"
                        );
                    }
                    c.delivered(&chunk, ledger);
                    None
                }
                (false, _) => {
                    c.delivered(&chunk, ledger);
                    None
                }
            }
        };
        courier
            .send_all(chunk, classify, ledger, shutdown, accepted)
            .await
    }

    /// Asks HEC which of the waiting requests are indexed and resolves those. `false`
    /// when `shutdown` interrupted it. A failed poll is retried at the next interval.
    async fn poll_acks(&mut self, shutdown: &CancellationToken) -> bool {
        let ids: Vec<u64> = self.unacked.keys().copied().collect();
        let body = serde_json::json!({ "acks": ids }).to_string();
        let poll = async {
            let resp = self
                .courier
                .client
                .post(self.ack_url.clone())
                .headers(self.ack_headers.clone())
                .body(body)
                .send()
                .await?;
            let status = resp.status();
            let body = read_limited(resp).await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let result = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return false,
            r = poll => r,
        };
        #[derive(serde::Deserialize)]
        struct AckStatus {
            acks: HashMap<String, bool>,
        }
        let mut refused_token = None;
        let problem = match result {
            Ok((status, body)) if status.is_success() => {
                match serde_json::from_slice::<AckStatus>(&body) {
                    Ok(a) => {
                        for (id, indexed) in a.acks {
                            let Ok(id) = id.parse::<u64>() else { continue };
                            if indexed {
                                if let Some(u) = self.unacked.remove(&id) {
                                    self.courier.delivered(&u.chunk, &mut self.ledger);
                                }
                            }
                        }
                        self.acks_pending.set(self.unacked.len() as i64);
                        None
                    }
                    Err(e) => Some(format!(
                        "unreadable ack answer: {e}: {}",
                        server_text(&body)
                    )),
                }
            }
            Ok((status, body)) => {
                let a = HecAnswer::parse(&body);
                let text = a.text.unwrap_or_else(|| server_text(&body));
                refused_token = matches!(status.as_u16(), 401 | 403).then(|| {
                    if status == StatusCode::UNAUTHORIZED {
                        "http_401"
                    } else {
                        "http_403"
                    }
                });
                Some(status_detail(status, &text))
            }
            Err(e) => Some(error_chain(&e.without_url())),
        };
        match problem {
            None => {
                // The token works for the ack endpoint: whatever stalled on it is over.
                self.courier.resumed();
                if self.ack_poll_failing {
                    tracing::info!(sink = %self.courier.sink, "splunk hec ack polling works again");
                }
                self.ack_poll_failing = false;
            }
            Some(detail) => {
                let e = SinkError::Http {
                    url: crate::config::redacted_url(&self.ack_url),
                    kind: "ack_poll",
                    retriable: true,
                    detail: self.courier.redact(&detail),
                };
                self.courier.metrics.error(&e);
                if let Some(kind) = refused_token {
                    // A token revoked while requests wait for their acknowledgement:
                    // show the stall now, not only when they time out and go again.
                    self.courier.stalled(kind, &e.to_string());
                }
                // Once per outage, not once per interval.
                if !self.ack_poll_failing {
                    tracing::warn!(sink = %self.courier.sink, error = %e, "polling splunk hec for indexer acknowledgements failed; will keep trying");
                }
                self.ack_poll_failing = true;
            }
        }
        true
    }

    /// Removes the requests that waited longer than `ack_timeout`, to be sent again.
    fn take_timed_out(&mut self) -> Vec<SealedChunk> {
        let now = Instant::now();
        let late: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, u)| now.duration_since(u.sent) >= self.opts.ack_timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in late {
            if let Some(u) = self.unacked.remove(&id) {
                let e = SinkError::Http {
                    url: self.courier.shown.clone(),
                    kind: "ack_timeout",
                    retriable: true,
                    detail: format!(
                        "ackId {id} not confirmed within {:?}",
                        self.opts.ack_timeout
                    ),
                };
                self.courier.metrics.error(&e);
                tracing::warn!(sink = %self.courier.sink, error = %e, events = u.chunk.events(), "indexer acknowledgement timed out; sending the request again");
                self.courier.metrics.resent(u.chunk.events());
                out.push(u.chunk);
            }
        }
        self.acks_pending.set(self.unacked.len() as i64);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpBatching, TlsOptions, TlsVersion};
    use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
    use crate::event::SourceKind;
    use crate::secret::Secret;
    use serde_json::value::RawValue;
    use std::sync::Arc;

    fn opts() -> HecOptions {
        HecOptions {
            endpoint: Url::parse("https://splunk.example.com:8088").unwrap(),
            token: Secret::new("00000000-0000-0000-0000-000000000000"),
            index: Some("code42".into()),
            source: None,
            sourcetype: Some("code42:\"audit\"".into()),
            host: "fwd01".into(),
            channel: None,
            gzip: true,
            batching: HttpBatching {
                max_events: 500,
                max_bytes: 1 << 20,
                max_wait: Duration::from_secs(1),
            },
            indexer_ack: true,
            ack_poll_interval: Duration::from_secs(1),
            ack_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            tls: TlsOptions {
                ca_file: None,
                client_cert: None,
                client_key: None,
                server_name: None,
                min_version: TlsVersion::Tls12,
                insecure_skip_verify: false,
            },
        }
    }

    #[test]
    fn uuid_v4_layout() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(a
            .bytes()
            .all(|c| c == b'-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(&parts[2][..1], "4");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn epoch_seconds_with_millis() {
        let s = |ms| {
            let mut out = Vec::new();
            write_epoch_seconds(&mut out, ms);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(s(1_700_000_000_123), "1700000000.123");
        assert_eq!(s(1_700_000_000_005), "1700000000.005");
        assert_eq!(s(0), "0.000");
        assert_eq!(s(-1_500), "-1.500");
    }

    #[test]
    fn envelopes_carry_metadata_and_the_record() {
        let mut w = HecEnvelope::new(&opts());
        w.begin_batch(&Batch {
            source: Arc::from("audit \"main\""),
            events: Vec::new(),
        });
        let occurred = chrono::DateTime::from_timestamp_millis(1_700_000_000_042).unwrap();
        let ev = Event::new(
            SourceKind::Alerts,
            RawValue::from_string(r#"{"id":"a1"}"#.into()).unwrap(),
            occurred,
        );
        let mut body = Vec::new();
        w.write(&mut body, &ev, br#"{"id":"a1"}"#, Embedding::JsonValue);
        w.write(&mut body, &ev, b"CEF:0|x|y", Embedding::JsonString);
        let envs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(envs.len(), 2);
        let e = &envs[0];
        assert_eq!(e["time"].as_f64().unwrap(), 1_700_000_000.042);
        assert_eq!(e["host"], "fwd01");
        assert_eq!(e["index"], "code42");
        assert_eq!(e["sourcetype"], "code42:\"audit\"");
        assert!(
            e.get("source").is_none(),
            "unset source is left to the token"
        );
        assert_eq!(e["fields"]["c42_source"], "alerts");
        assert_eq!(e["fields"]["c42_source_name"], "audit \"main\"");
        assert_eq!(e["event"]["id"], "a1");
        assert_eq!(envs[1]["event"], "CEF:0|x|y");
    }

    #[test]
    fn classification_of_hec_answers() {
        let c =
            |s: u16, body: &str| classify(StatusCode::from_u16(s).unwrap(), body.as_bytes(), None);
        assert_eq!(
            c(200, r#"{"text":"Success","code":0,"ackId":3}"#),
            Verdict::Accepted
        );
        match c(503, r#"{"text":"Server is busy","code":9}"#) {
            Verdict::Retry { kind, detail, .. } => {
                assert_eq!(kind, "http_503");
                assert_eq!(
                    detail,
                    "http 503 Service Unavailable: Server is busy (code 9)"
                );
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            c(500, "<html>"),
            Verdict::Retry {
                kind: "http_5xx",
                ..
            }
        ));
        assert!(matches!(
            c(429, ""),
            Verdict::Retry {
                kind: "http_429",
                ..
            }
        ));
        assert!(matches!(
            c(400, r#"{"text":"Server is busy","code":9}"#),
            Verdict::Retry { .. }
        ));
        for (s, body, reason, detail, first_bad) in [
            (
                400,
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":3}"#,
                "http_400",
                "http 400 Bad Request: Invalid data format (code 6, invalid-event-number 3)",
                Some(3),
            ),
            (
                400,
                r#"{"text":"Event field is required","code":12}"#,
                "http_400",
                "http 400 Bad Request: Event field is required (code 12)",
                None,
            ),
            (
                400,
                r#"{"text":"No data","code":5}"#,
                "http_400",
                "http 400 Bad Request: No data (code 5)",
                None,
            ),
            (
                413,
                "Content too large",
                "http_413",
                "http 413 Payload Too Large: Content too large",
                None,
            ),
        ] {
            assert_eq!(
                c(s, body),
                Verdict::Reject {
                    reason,
                    detail: detail.into(),
                    first_bad,
                },
                "{body}"
            );
        }
        // The token, the index, the channel: the set-up is wrong, not the data.
        for (s, body, kind, detail) in [
            (
                400,
                r#"{"text":"Incorrect index","code":7}"#,
                "hec_index",
                "http 400 Bad Request: Incorrect index (code 7)",
            ),
            (
                400,
                r#"{"text":"Data channel is missing","code":10}"#,
                "hec_channel",
                "http 400 Bad Request: Data channel is missing (code 10)",
            ),
            (
                401,
                r#"{"text":"Token is required","code":2}"#,
                "http_401",
                "http 401 Unauthorized: Token is required (code 2)",
            ),
            (
                403,
                r#"{"text":"Invalid token","code":4}"#,
                "http_403",
                "http 403 Forbidden: Invalid token (code 4)",
            ),
            (
                403,
                r#"{"text":"Token disabled","code":1}"#,
                "http_403",
                "http 403 Forbidden: Token disabled (code 1)",
            ),
        ] {
            assert_eq!(
                c(s, body),
                Verdict::Stall {
                    kind,
                    retry_after: None,
                    detail: detail.into()
                },
                "{body}"
            );
        }
    }

    #[test]
    fn endpoints_keep_a_path_prefix() {
        let base = Url::parse("https://lb.example.com/splunk").unwrap();
        assert_eq!(
            endpoint(&base, &["services", "collector", "event"]).as_str(),
            "https://lb.example.com/splunk/services/collector/event"
        );
        let base = Url::parse("https://splunk:8088").unwrap();
        assert_eq!(
            endpoint(&base, &["services", "collector", "ack"]).as_str(),
            "https://splunk:8088/services/collector/ack"
        );
    }

    #[test]
    fn batcher_with_envelopes_gives_json_records_back() {
        let enc = Encoder::new(EncoderOptions {
            format: Format::JsonRaw,
            syslog: SyslogStyle::None,
            framing: Framing::None,
            facility: 13,
            hostname: "h".into(),
            app_name: "c42fwd".into(),
        });
        let mut b = Batcher::new(HecEnvelope::new(&opts()), enc, opts().batching, true);
        let (mut t, _w) = crate::ack::ack_set(1);
        let json = "{\n \"a\": 1\n}";
        let ev = Event::new(
            SourceKind::AuditLog,
            RawValue::from_string(json.into()).unwrap(),
            chrono::Utc::now(),
        );
        let sb = SinkBatch {
            batch: Arc::new(Batch {
                source: Arc::from("audit"),
                events: vec![ev],
            }),
            ack: t.pop().unwrap(),
        };
        let mut ledger = AckLedger::default();
        let mut ready = Vec::new();
        b.push(sb, &mut ledger, &mut ready);
        let c = b.flush().unwrap();
        // The record as dead-lettered: the event, its line breaks made spaces.
        assert_eq!(c.records().unwrap(), vec![b"{  \"a\": 1 }".to_vec()]);
    }
}
