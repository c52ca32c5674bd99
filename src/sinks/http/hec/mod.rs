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
//! `POST /services/collector/ack` with `{"acks":[ids]}` on an adaptive schedule
//! (`schedule`: `ack_poll_initial` after a send and while HEC confirms requests,
//! doubling up to `ack_poll_interval` while it confirms none), between batches and
//! after the requests a batch completed, so that a steady stream of batches does not
//! put the polls off; a request's batches are Delivered only once HEC says its id is
//! `true` (indexed). A request not confirmed within `ack_timeout` is sent again (counted in
//! `sink_resent`; at-least-once). At most `max_pending_acks` requests wait for their
//! acknowledgement (plus the requests cut from the one batch being taken); beyond
//! that the sink stops taking batches (backpressure, ARCHITECTURE.md invariant 3). If HEC
//! answers 2xx without an `ackId` although acknowledgement is on, the token has it
//! turned off: a warning says so once, and such requests count as delivered on 2xx.
//!
//! Classification (`wire::classify`): 503 (code 9, server busy), 429, other 5xx, 408,
//! timeouts and connection errors are retried with the shared backoff, honouring
//! `Retry-After`. 401 and 403 (token missing, invalid or disabled: codes 1 to 4), and
//! a 400 that blames the set-up rather than the data (code 7 incorrect index, 10 and
//! 11 the channel, 14 acknowledgement disabled, 16 query-string authorization) stall
//! the route: the request is held and retried with backoff, nothing is dead-lettered,
//! and the stall shows in logs, `c42fwd_sink_stalled` and `/ready` until HEC takes a
//! request again (a fixed or re-enabled token needs no restart). Any other 400 (code 5
//! no data, 6 invalid data format, 12 and 13 event field missing or blank, 15 indexed
//! fields) and 413 refuse the data: when HEC names the event (`invalid-event-number`)
//! that event is dead-lettered with HEC's text, the events before it are sent again
//! (HEC may have indexed them already: at-least-once) and the ones after it too; without
//! a number the request is split in halves until each refused event is alone
//! (`courier`).
//!
//! At start, a token sent over plain `http://` is logged as a WARN.
//!
//! `validate --connect` (`health::healthcheck`) checks the health endpoint (which ignores the
//! token) and then the token itself: an empty `POST /services/collector/event`, which
//! HEC answers 400 code 5 "No data" for a token it accepts and 401 / 403 for one it
//! does not.
//!
//! Owned here: the sink's set-up (client, headers, channel, courier, the wait for a
//! healthy HEC) and its transport of the delivery loop ([`HecSink`]), with the ledger of requests waiting for their
//! indexer acknowledgement and its polling. The request and answer formats are in
//! `wire`, the health checks in `health`.
//!
//! Not done here: batching and gzip (`batcher`, `body`), the retry loop, splitting and
//! dead-lettering (`courier`).

mod health;
mod schedule;
mod wire;

pub(crate) use health::healthcheck;

use crate::ack::AckToken;
use crate::config::{HecOptions, Sink};
use crate::metrics::label;
use crate::sinks::dead_letter::DeadLetterFile;
use crate::sinks::delivery::{Attempt, EncodedBatch, SinkContext, Transport, Written};
use crate::sinks::error::SinkError;
use crate::sinks::http::body::SealedChunk;
use crate::sinks::http::client::{build_client, error_chain, read_limited, server_text};
use crate::sinks::http::courier::Courier;
use crate::sinks::http::ledger::AckLedger;
use crate::sinks::http::outbox::Outbox;
use crate::sinks::http::verdict::status_detail;
use crate::sinks::metrics::SinkMetrics;
use health::wait_until_healthy;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING};
use reqwest::StatusCode;
use schedule::AckSchedule;
use std::collections::{BTreeMap, HashMap};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;
use wire::{base_headers, classify, endpoint, uuid_v4, HecAnswer, HecEnvelope};

/// An ack poll on its way: owned by the sink, so that a poll cut short (the loop drops
/// a `tick` when a batch arrives) is picked up where it was, never sent again. HEC
/// forgets an `ackId` once it reported it indexed: an answer dropped on the floor
/// would leave its requests waiting for `ack_timeout` and send them twice.
type AckPoll = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<(StatusCode, bytes::Bytes), reqwest::Error>> + Send,
    >,
>;

/// A request HEC accepted and has not confirmed as indexed yet.
struct Unacked {
    chunk: SealedChunk,
    sent: Instant,
}

/// The HEC sink as a transport of the delivery loop: a batch taken by
/// [`write`](Transport::write) goes into the body being filled, every body that is full
/// (or due on `max_wait`) is sent by the courier, and with indexer acknowledgement the
/// accepted requests wait in `unacked` until [`tick`](Transport::tick) polls HEC and
/// finds them indexed (or sends them again after `ack_timeout`). A batch's token
/// resolves once every request holding its records was delivered (indexed) or
/// dead-lettered.
pub(crate) struct HecSink {
    courier: Courier,
    opts: HecOptions,
    ack_url: Url,
    ack_headers: HeaderMap,
    outbox: Outbox<HecEnvelope>,
    /// By `ackId`.
    unacked: BTreeMap<u64, Unacked>,
    acks_pending: prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>,
    warned_no_ack_id: bool,
    ack_poll_failing: bool,
    /// When HEC is asked next about `unacked`.
    schedule: AckSchedule,
    /// The ack poll sent and not answered yet.
    poll_in_flight: Option<AckPoll>,
    shutdown: CancellationToken,
}

impl HecSink {
    /// Builds the client (TLS files, token and channel headers), prepares the
    /// dead-letter file and waits until HEC is healthy. `Ok(None)` when `shutdown`
    /// came first.
    pub(crate) async fn start(
        cfg: &Sink,
        opts: &HecOptions,
        ctx: &SinkContext,
        metrics: SinkMetrics,
    ) -> Result<Option<Self>, SinkError> {
        let sink = cfg.name.as_str();
        let event_url = endpoint(&opts.endpoint, &["services", "collector", "event"]);
        let shown = crate::config::redacted_url(&event_url);
        let client = build_client(sink, &shown, &opts.tls, opts.request_timeout)?;
        let channel = opts.channel.clone().unwrap_or_else(uuid_v4);
        let ack_headers = base_headers(opts, &channel, &shown)?;
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
            metrics,
            DeadLetterFile::for_sink(cfg, ctx),
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
            return Ok(None);
        }
        Ok(Some(HecSink {
            ack_url: endpoint(&opts.endpoint, &["services", "collector", "ack"]),
            ack_headers,
            outbox: Outbox::new(
                HecEnvelope::new(opts),
                &cfg.encoding,
                opts.batching,
                opts.gzip,
            ),
            unacked: BTreeMap::new(),
            acks_pending: ctx
                .metrics
                .sink_hec_acks_pending
                .get_or_create(&label("sink", sink))
                .clone(),
            warned_no_ack_id: false,
            ack_poll_failing: false,
            schedule: AckSchedule::new(opts.ack_poll_initial, opts.ack_poll_interval),
            poll_in_flight: None,
            shutdown: ctx.shutdown.clone(),
            courier,
            opts: opts.clone(),
        }))
    }

    /// Sends the bodies that are ready, in order. Stops early on shutdown (what was not
    /// sent stays not delivered).
    async fn send_ready(&mut self) -> Result<(), SinkError> {
        let shutdown = self.shutdown.clone();
        for chunk in self.outbox.take_ready() {
            if !self.send(chunk, &shutdown).await? {
                break;
            }
        }
        Ok(())
    }

    /// Polls HEC if the schedule says a poll is due (or finishes the one on its way),
    /// and puts the requests whose acknowledgement timed out aside to be sent again.
    /// Cancel-safe: a poll cut short goes on at the next call ([`AckPoll`]).
    async fn poll_if_due(&mut self) {
        if self.poll_in_flight.is_none() && !self.schedule.is_due(Instant::now()) {
            return;
        }
        let shutdown = self.shutdown.clone();
        let Some(confirmed) = self.poll_acks(&shutdown).await else {
            return;
        };
        for chunk in self.take_timed_out() {
            self.outbox.resend(chunk);
        }
        self.schedule
            .polled(Instant::now(), confirmed, self.unacked.len());
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
            outbox,
            unacked,
            acks_pending,
            warned_no_ack_id,
            schedule,
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
                    let now = Instant::now();
                    let entry = Unacked { chunk, sent: now };
                    schedule.sent(now);
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
            .send_all(chunk, classify, &mut outbox.ledger, shutdown, accepted)
            .await
    }

    /// Asks HEC which of the waiting requests are indexed and resolves those; how many
    /// it confirmed (0 when the poll failed: it is tried again on the schedule). `None`
    /// when `shutdown` interrupted it.
    async fn poll_acks(&mut self, shutdown: &CancellationToken) -> Option<usize> {
        let poll = match &mut self.poll_in_flight {
            Some(poll) => poll,
            None => {
                let ids: Vec<u64> = self.unacked.keys().copied().collect();
                let body = serde_json::json!({ "acks": ids }).to_string();
                let request = self
                    .courier
                    .client
                    .post(self.ack_url.clone())
                    .headers(self.ack_headers.clone())
                    .body(body);
                self.poll_in_flight.insert(Box::pin(async move {
                    let resp = request.send().await?;
                    let status = resp.status();
                    let body = read_limited(resp).await?;
                    Ok((status, body))
                }))
            }
        };
        let result = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            r = poll => r,
        };
        self.poll_in_flight = None;
        #[derive(serde::Deserialize)]
        struct AckStatus {
            acks: HashMap<String, bool>,
        }
        let mut refused_token = None;
        let mut confirmed = 0;
        let problem = match result {
            Ok((status, body)) if status.is_success() => {
                match serde_json::from_slice::<AckStatus>(&body) {
                    Ok(a) => {
                        for (id, indexed) in a.acks {
                            let Ok(id) = id.parse::<u64>() else { continue };
                            if indexed {
                                if let Some(u) = self.unacked.remove(&id) {
                                    self.courier.delivered(&u.chunk, &mut self.outbox.ledger);
                                    confirmed += 1;
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
        Some(confirmed)
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

impl Transport for HecSink {
    async fn write(
        &mut self,
        records: &EncodedBatch,
        _attempt: Attempt,
    ) -> Result<Written, SinkError> {
        self.outbox.take(records);
        self.send_ready().await?;
        // Batches may follow each other without a pause, in which case the loop never
        // ticks between them: poll here when a poll is due, so that the
        // acknowledgements keep pace with the sends.
        self.poll_if_due().await;
        // Counted by the courier, request by request (with indexer acknowledgement:
        // once indexed).
        Ok(Written::default())
    }

    fn hold(&mut self, ack: AckToken) {
        self.outbox.hold(ack);
    }

    fn holds_acks(&self) -> bool {
        !self.outbox.is_settled() || !self.unacked.is_empty()
    }

    fn wants_resend(&self) -> bool {
        self.outbox.has_ready()
    }

    fn next_tick(&self) -> Option<Instant> {
        // A poll on its way is finished as soon as the loop is idle.
        let poll = match self.poll_in_flight {
            Some(_) => Some(Instant::now()),
            None => self.schedule.next(),
        };
        match (poll, self.outbox.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn tick(&mut self) -> Result<(), SinkError> {
        // Cancel-safe: a poll cut short stays on its way and is finished by the next
        // tick or write ([`AckPoll`]); what is due to go is only put aside here and
        // sent by the loop's empty `write`, because `wants_resend` says so.
        self.poll_if_due().await;
        self.outbox.flush_due();
        Ok(())
    }

    fn accepts_batches(&self) -> bool {
        // Backpressure (ARCHITECTURE.md, invariant 3): no more batches while
        // `max_pending_acks` requests wait for their acknowledgement.
        self.unacked.len() < self.opts.max_pending_acks
    }

    fn retries_inside(&self) -> bool {
        true
    }

    fn queue_closed(&mut self) {
        self.outbox.queue_closed();
    }
}
