//! The Kafka sink: every event one message, produced through librdkafka
//! (`rdkafka`, the `kafka` feature).
//!
//! Message: the record as the sink's encoder makes it (CEF, LEEF, JSON, normalized
//! JSON; no framing and no syslog header unless `syslog` asks for one). Topic: the
//! `topic` template with `{source}`, `{kind}` and `{tenant}` filled in. Key (`key`):
//! the source's name (default: every event of a source in one partition, in the order
//! the source read them), the tenant's, or none. Headers: `c42fwd-source`,
//! `c42fwd-tenant`, `c42fwd-kind` (audit_log, alerts, ...), `c42fwd-event-type` (the
//! CEF class id: the audit type name, the alert type, the sync log action) and
//! `c42fwd-version`.
//!
//! Delivery (ARCHITECTURE.md, invariant 1): a batch is Delivered only once the broker
//! acknowledged every one of its messages (librdkafka's delivery report, with
//! `acks = all` and idempotent production by default) or its oversize records are in
//! the dead-letter file. The sink keeps each batch ([`Pending`]) with the state of
//! every record until then, and resolves the tokens in batch order. A message that
//! librdkafka reports failed is classified (`classify`): retriable ones (timeouts,
//! leader moves, not enough replicas, no broker reachable) and set-up faults (SASL
//! refused, no ACL, unknown topic, a broker limit below `max_message_bytes`) are sent
//! again after the sink's backoff (a set-up fault also stalls the sink:
//! `sinks::stall`); a record the broker refused as such is dead-lettered; a fatal
//! error of the idempotent producer builds the producer anew and sends every message
//! not acknowledged yet again (at-least-once). The client's own errors (every broker
//! down, authentication, TLS) stall the sink until a message is acknowledged again,
//! while librdkafka keeps the messages and reconnects. A record larger than
//! `max_message_bytes` less [`HEADER_ALLOWANCE`] (kept for key and headers) never
//! reaches the client: it follows `oversize`, as on the UDP sink (dead-lettered by default, counted in
//! `sink_discarded{reason="oversize"}`; or truncated, counted in `sink_truncated`).
//!
//! Backpressure (invariant 3): at most [`MAX_UNSETTLED_RECORDS`] records wait for
//! their reports; beyond that the sink takes no batch from its queue.
//!
//! Not here: the librdkafka properties and the report channel (`client`), what an
//! error code means (`classify`), the retry loop (`sinks::delivery`).

mod classify;
mod client;
mod oauth;

use crate::ack::AckToken;
use crate::config::{KafkaKey, KafkaOptions, OversizePolicy, Sink};
use crate::event::Batch;
use crate::sinks::dead_letter::DeadLetterFile;
use crate::sinks::delivery::{Attempt, EncodedBatch, SinkContext, Transport, Written};
use crate::sinks::error::SinkError;
use crate::sinks::metrics::SinkMetrics;
use crate::sinks::stall::Stall;
use classify::Class;
use client::{Producer, Report};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Records taken from the queue and not yet settled, at most (then the sink waits).
pub(crate) const MAX_UNSETTLED_RECORDS: usize = 20_000;

/// How long messages may wait without any acknowledgement before the sink shows
/// itself stalled (`kafka_unreachable`): librdkafka keeps them and reconnects, and says
/// nothing while a broker is silent (stopped, partitioned away) until its request
/// times out.
pub(crate) const SILENCE_STALLS_AFTER: Duration = Duration::from_secs(10);

/// Batches waiting for their reports, at most.
const MAX_PENDING_BATCHES: usize = 1024;

/// What the headers and the key add to a message, at most, beside the record: the
/// names and values of the five headers (names of at most 64 bytes, an event type cut
/// to [`MAX_EVENT_TYPE_HEADER`]), the key, and librdkafka's framing of them.
const HEADER_ALLOWANCE: usize = 1024;

/// The longest `c42fwd-event-type` value: the type comes from the API, and an event
/// with a huge one must not make its message too large for the broker.
const MAX_EVENT_TYPE_HEADER: usize = 128;

/// The opaque of a message: the producer's generation, the batch's sequence number and
/// the record's index in its batch.
const INDEX_BITS: u32 = 24;
const SEQ_MASK: u32 = (1 << 24) - 1;

fn opaque(generation: u16, seq: u32, index: usize) -> usize {
    ((generation as usize) << 48) | (((seq & SEQ_MASK) as usize) << INDEX_BITS) | index
}

fn unpack(opaque: usize) -> (u16, u32, usize) {
    (
        (opaque >> 48) as u16,
        ((opaque >> INDEX_BITS) as u32) & SEQ_MASK,
        opaque & ((1 << INDEX_BITS) - 1),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Handed to the client; its report has not come.
    InFlight,
    /// To be produced again (a failure, or a producer built anew).
    Resend,
    /// Acknowledged by the broker, or dead-lettered.
    Done,
}

/// A batch taken from the queue and not yet settled.
struct Pending {
    seq: u32,
    /// The records, copied: the loop reuses its buffer for the next batch.
    records: EncodedBatch,
    batch: Arc<Batch>,
    state: Vec<State>,
    in_flight: usize,
    resend: usize,
    delivered: usize,
    bytes: usize,
    /// Given by `hold` after the write; `None` until then.
    ack: Option<AckToken>,
}

impl Pending {
    fn settled(&self) -> bool {
        self.ack.is_some() && self.in_flight == 0 && self.resend == 0
    }
}

/// The Kafka sink as a transport of the delivery loop.
pub(crate) struct KafkaSink {
    sink: String,
    opts: KafkaOptions,
    /// The bootstrap list, for messages.
    brokers: String,
    producer: Option<Producer>,
    reports: mpsc::UnboundedReceiver<Report>,
    generation: u16,
    next_seq: u32,
    pending: VecDeque<Pending>,
    /// Records of `pending`, all states.
    unsettled: usize,
    dead_letter: DeadLetterFile,
    /// Dead-lettered records queued, by reason, not yet counted (counted once flushed).
    dead_oversize: u64,
    dead_refused: u64,
    metrics: SinkMetrics,
    stall: Stall,
    /// The error the next tick returns, so that the loop backs off before the records
    /// marked `Resend` go again.
    failure: Option<SinkError>,
    /// A fatal producer error: build the producer anew before the next resend.
    rebuild: bool,
    progress: bool,
    /// When the cluster last acknowledged a message, or messages began to wait.
    last_ack: Instant,
    /// A stall of the client's own (authentication, TLS) that "all brokers down" must
    /// not hide: the connections are down because of it.
    cause: Option<(&'static str, &'static str, String)>,
    scratch: Vec<u8>,
}

impl KafkaSink {
    /// Builds the producer (it connects in the background) and prepares the
    /// dead-letter file.
    pub(crate) async fn start(
        cfg: &Sink,
        opts: &KafkaOptions,
        ctx: &SinkContext,
        metrics: SinkMetrics,
    ) -> Result<Self, SinkError> {
        let sink = cfg.name.as_str();
        let (producer, reports) = client::producer(sink, opts)?;
        let mut dead_letter = DeadLetterFile::for_sink(cfg, ctx);
        dead_letter.prepare().await?;
        tracing::info!(
            sink,
            brokers = %opts.brokers.join(","),
            topic = %opts.topic.text,
            acks = ?opts.acks,
            idempotent = opts.idempotent,
            compression = opts.compression.as_str(),
            tls = opts.tls.is_some(),
            sasl = opts.sasl.as_ref().map(|s| s.mechanism.as_str()),
            "kafka sink starting"
        );
        if opts.sasl.is_some() && opts.tls.is_none() {
            tracing::warn!(
                sink,
                "kafka sasl without tls: the credentials and the events travel in plaintext; \
                 add a [sinks.NAME.tls] table"
            );
        }
        if opts.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
            tracing::warn!(
                sink,
                "kafka tls certificate verification is off (insecure_skip_verify)"
            );
        }
        Ok(KafkaSink {
            sink: sink.to_string(),
            brokers: opts.brokers.join(","),
            opts: opts.clone(),
            producer: Some(producer),
            reports,
            generation: 0,
            next_seq: 0,
            pending: VecDeque::new(),
            unsettled: 0,
            dead_letter,
            dead_oversize: 0,
            dead_refused: 0,
            stall: Stall::new(&ctx.metrics, sink),
            metrics,
            failure: None,
            rebuild: false,
            progress: false,
            last_ack: Instant::now(),
            cause: None,
            scratch: Vec::new(),
        })
    }

    fn error(&self, kind: &'static str, detail: String) -> SinkError {
        SinkError::Kafka {
            brokers: self.brokers.clone(),
            kind,
            retriable: true,
            detail,
        }
    }

    /// Takes a new batch: keeps it, then hands every record to the client.
    async fn take(&mut self, records: &EncodedBatch) -> Result<(), SinkError> {
        let Some(batch) = records.shared_batch().cloned() else {
            return Err(SinkError::Kafka {
                brokers: self.brokers.clone(),
                kind: "kafka_internal",
                retriable: false,
                detail: "a batch without its events".into(),
            });
        };
        if records.len() >= 1 << INDEX_BITS {
            return Err(SinkError::Kafka {
                brokers: self.brokers.clone(),
                kind: "kafka_internal",
                retriable: false,
                detail: format!(
                    "a batch of {} records is more than one sink batch holds",
                    records.len()
                ),
            });
        }
        if !self.in_flight() {
            self.last_ack = Instant::now();
        }
        let seq = self.next_seq;
        self.next_seq = (self.next_seq + 1) & SEQ_MASK;
        let n = records.len();
        self.unsettled += n;
        self.pending.push_back(Pending {
            seq,
            records: records.copy_records(),
            batch,
            state: vec![State::InFlight; n],
            in_flight: n,
            resend: 0,
            delivered: 0,
            bytes: 0,
            ack: None,
        });
        let p = self.pending.len() - 1;
        let mut truncated = 0;
        for i in 0..n {
            let size = self.pending[p].records.record(i).len() + HEADER_ALLOWANCE;
            if size > self.opts.max_message_bytes {
                match self.opts.oversize {
                    OversizePolicy::DeadLetter => {
                        let pend = &self.pending[p];
                        self.dead_letter.push(
                            "oversize",
                            pend.records.record(i),
                            pend.batch.events.get(i),
                        );
                        self.dead_oversize += 1;
                        let pend = &mut self.pending[p];
                        pend.state[i] = State::Done;
                        pend.in_flight -= 1;
                        continue;
                    }
                    OversizePolicy::Truncate => truncated += 1,
                }
            }
            self.produce(p, i).await;
        }
        if truncated > 0 {
            self.metrics.truncated(truncated);
            tracing::warn!(
                sink = %self.sink,
                truncated,
                max_message_bytes = self.opts.max_message_bytes,
                "records larger than max_message_bytes in this batch were truncated"
            );
        }
        Ok(())
    }

    /// Hands record `i` of pending batch `p` (state `InFlight`) to the client. A full
    /// client queue waits for reports; any other refusal is handled like a failed
    /// delivery report.
    async fn produce(&mut self, p: usize, i: usize) {
        loop {
            let result = {
                let Some(producer) = self.producer.as_ref() else {
                    return;
                };
                let pend = &self.pending[p];
                let event = &pend.batch.events[i];
                let source: &str = &pend.batch.source;
                let tenant = self
                    .opts
                    .tenants
                    .get(source)
                    .map(String::as_str)
                    .unwrap_or("unknown");
                let kind = event.kind.as_str();
                let topic = self.opts.topic.render(source, kind, tenant);
                let mut payload = pend.records.record(i);
                if payload.len() + HEADER_ALLOWANCE > self.opts.max_message_bytes {
                    crate::sinks::udp::truncate_record(
                        payload,
                        self.opts.max_message_bytes - HEADER_ALLOWANCE,
                        &mut self.scratch,
                    );
                    payload = &self.scratch;
                }
                let event_type = event_type(event);
                let headers = OwnedHeaders::new_with_capacity(5)
                    .insert(Header {
                        key: "c42fwd-source",
                        value: Some(source),
                    })
                    .insert(Header {
                        key: "c42fwd-tenant",
                        value: Some(tenant),
                    })
                    .insert(Header {
                        key: "c42fwd-kind",
                        value: Some(kind),
                    })
                    .insert(Header {
                        key: "c42fwd-event-type",
                        value: Some(event_type.as_str()),
                    })
                    .insert(Header {
                        key: "c42fwd-version",
                        value: Some(env!("CARGO_PKG_VERSION")),
                    });
                let record =
                    BaseRecord::with_opaque_to(&topic, opaque(self.generation, pend.seq, i))
                        .payload(payload)
                        .headers(headers);
                let record = match self.opts.key {
                    KafkaKey::Source => record.key(source),
                    KafkaKey::Tenant => record.key(tenant),
                    KafkaKey::None => record,
                };
                producer.send(record).map_err(|(e, _)| e)
            };
            match result {
                Ok(()) => return,
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    // The client holds as much as it may: let it deliver some first.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    self.drain_reports();
                }
                Err(e) => {
                    let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
                    self.failed(p, i, code, e.to_string());
                    return;
                }
            }
        }
    }

    fn in_flight(&self) -> bool {
        self.pending.iter().any(|p| p.in_flight > 0)
    }

    fn resend_due(&self) -> bool {
        self.pending.iter().any(|p| p.resend > 0)
    }

    /// Reads every report that is there, without waiting.
    fn drain_reports(&mut self) {
        while let Ok(r) = self.reports.try_recv() {
            self.report(r);
        }
    }

    fn locate(&self, opaque: usize) -> Option<(usize, usize)> {
        let (generation, seq, i) = unpack(opaque);
        if generation != self.generation {
            // From a producer since dropped: its messages were marked to go again.
            return None;
        }
        let front = self.pending.front()?.seq;
        let p = (seq.wrapping_sub(front) & SEQ_MASK) as usize;
        let pend = self.pending.get(p)?;
        (pend.seq == seq && i < pend.state.len() && pend.state[i] == State::InFlight)
            .then_some((p, i))
    }

    fn report(&mut self, r: Report) {
        match r {
            Report::Delivered { opaque } => {
                let Some((p, i)) = self.locate(opaque) else {
                    return;
                };
                let pend = &mut self.pending[p];
                pend.state[i] = State::Done;
                pend.in_flight -= 1;
                pend.delivered += 1;
                pend.bytes += pend.records.record(i).len();
                self.progress = true;
                self.last_ack = Instant::now();
                self.cause = None;
                self.stall.resumed();
            }
            Report::Failed { opaque, code, text } => {
                if let Some((p, i)) = self.locate(opaque) {
                    self.failed(p, i, code, text);
                }
            }
            Report::Client { code, text } => {
                let detail = format!("{text} ({code:?})");
                match classify::client(code) {
                    Some(Class::Stall { reason, hint }) => {
                        let e = self.error(reason, detail);
                        self.metrics.error(&e);
                        match (&self.cause, reason) {
                            // The brokers are down because they refuse us: keep saying why.
                            (Some((why, hint, detail)), "kafka_unreachable") => {
                                self.stall.failed(why, detail, hint)
                            }
                            _ => {
                                let shown = e.to_string();
                                self.stall.failed(reason, &shown, hint);
                                if reason != "kafka_unreachable" {
                                    self.cause = Some((reason, hint, shown));
                                }
                            }
                        }
                    }
                    Some(Class::Fatal) => {
                        let e = self.error("kafka_fatal", detail);
                        self.metrics.error(&e);
                        tracing::error!(sink = %self.sink, error = %e, "the kafka producer failed for good; it is built anew and what it held is sent again");
                        self.rebuild = true;
                        self.failure.get_or_insert(e);
                    }
                    _ => tracing::debug!(sink = %self.sink, error = %detail, "kafka client error"),
                }
            }
        }
    }

    /// Record `i` of batch `p` (in flight) failed with `code`.
    fn failed(&mut self, p: usize, i: usize, code: RDKafkaErrorCode, text: String) {
        let detail = format!("{text} ({code:?})");
        let class = classify::delivery(code);
        let pend = &mut self.pending[p];
        pend.in_flight -= 1;
        if class == Class::Refused {
            pend.state[i] = State::Done;
            self.dead_letter.push(
                "kafka_refused",
                pend.records.record(i),
                pend.batch.events.get(i),
            );
            self.dead_refused += 1;
            tracing::warn!(sink = %self.sink, error = %detail, "the broker refused a record; it goes to the dead-letter file");
            return;
        }
        pend.state[i] = State::Resend;
        pend.resend += 1;
        let e = match class {
            Class::Stall { reason, hint } => {
                let e = self.error(reason, detail);
                self.stall.failed(reason, &e.to_string(), hint);
                e
            }
            Class::Fatal => {
                self.rebuild = true;
                self.error("kafka_fatal", detail)
            }
            _ => {
                if code == RDKafkaErrorCode::MessageTimedOut {
                    let e = self.error("kafka_unreachable", detail.clone());
                    self.stall.failed(
                        "kafka_unreachable",
                        &e.to_string(),
                        "no broker acknowledged the message within delivery_timeout: check the \
                         cluster and the network",
                    );
                }
                self.error("kafka_delivery", detail)
            }
        };
        self.failure.get_or_insert(e);
    }

    /// Builds the producer anew (after a fatal error): every record not acknowledged
    /// goes again, from a new generation whose reports are the only ones read.
    async fn rebuild(&mut self) -> Result<(), SinkError> {
        let (producer, reports) = client::producer(&self.sink, &self.opts)?;
        let old = self.producer.replace(producer);
        self.reports = reports;
        self.generation = self.generation.wrapping_add(1);
        self.rebuild = false;
        // Dropping a producer purges its queue and waits for its thread: off the runtime.
        let _ = tokio::task::spawn_blocking(move || drop(old)).await;
        for pend in &mut self.pending {
            for s in pend.state.iter_mut() {
                if *s == State::InFlight {
                    *s = State::Resend;
                    pend.in_flight -= 1;
                    pend.resend += 1;
                }
            }
        }
        Ok(())
    }

    /// Produces again every record marked `Resend`, in batch order.
    async fn resend(&mut self) {
        let mut again = 0;
        for p in 0..self.pending.len() {
            if self.pending[p].resend == 0 {
                continue;
            }
            for i in 0..self.pending[p].state.len() {
                if self.pending[p].state[i] == State::Resend {
                    let pend = &mut self.pending[p];
                    pend.state[i] = State::InFlight;
                    pend.resend -= 1;
                    pend.in_flight += 1;
                    again += 1;
                    self.produce(p, i).await;
                }
            }
        }
        if again > 0 {
            self.metrics.resent(again);
        }
    }

    /// Writes the dead-letter lines queued; counts them once they are in the file.
    async fn flush_dead_letters(&mut self) -> Result<(), SinkError> {
        if self.dead_letter.pending() == 0 {
            return Ok(());
        }
        let n = self.dead_letter.flush().await?;
        self.metrics.discarded("oversize", self.dead_oversize);
        self.metrics.discarded("kafka_refused", self.dead_refused);
        if self.dead_oversize > 0 {
            tracing::warn!(
                sink = %self.sink,
                dead_lettered = self.dead_oversize,
                max_message_bytes = self.opts.max_message_bytes,
                dead_letter_file = %self.dead_letter.path().display(),
                "records larger than max_message_bytes were dead-lettered"
            );
        }
        debug_assert_eq!(n as u64, self.dead_oversize + self.dead_refused);
        self.dead_oversize = 0;
        self.dead_refused = 0;
        Ok(())
    }

    /// Resolves, in order, the batches whose every record is settled (none while
    /// dead-letter lines wait for their file).
    fn settle(&mut self) {
        if self.dead_letter.pending() > 0 {
            return;
        }
        while self.pending.front().is_some_and(Pending::settled) {
            let Some(pend) = self.pending.pop_front() else {
                break;
            };
            self.unsettled -= pend.state.len();
            self.metrics.delivered(pend.delivered, pend.bytes);
            if let Some(ack) = pend.ack {
                ack.delivered();
            }
        }
    }
}

/// The event's type for the `c42fwd-event-type` header: the CEF class id.
fn event_type(event: &crate::event::Event) -> String {
    let mut rec = crate::normalize::Record::empty(event);
    crate::normalize::normalize_header_into(event, &mut rec);
    let mut t = rec.class_id.into_owned();
    if t.len() > MAX_EVENT_TYPE_HEADER {
        let mut cut = MAX_EVENT_TYPE_HEADER;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
    }
    t
}

impl Transport for KafkaSink {
    async fn write(
        &mut self,
        records: &EncodedBatch,
        attempt: Attempt,
    ) -> Result<Written, SinkError> {
        // A retry of a batch this sink already took (its dead-letter lines could not be
        // written: `hold` has not come for it yet) must not take it twice.
        let taken =
            attempt == Attempt::Retry && self.pending.back().is_some_and(|p| p.ack.is_none());
        if !records.is_empty() && !taken {
            self.take(records).await?;
        } else {
            if self.rebuild {
                self.rebuild().await?;
            }
            self.resend().await;
        }
        self.drain_reports();
        self.flush_dead_letters().await?;
        self.settle();
        // Counted once acknowledged (`settle`).
        Ok(Written::default())
    }

    fn hold(&mut self, ack: AckToken) {
        match self.pending.back_mut() {
            Some(p) if p.ack.is_none() => p.ack = Some(ack),
            // Not taken (cannot happen: `write` took it); not delivered then.
            _ => drop(ack),
        }
        self.settle();
    }

    fn holds_acks(&self) -> bool {
        !self.pending.is_empty()
    }

    fn wants_resend(&self) -> bool {
        // Dead-letter lines to write before their batches can settle.
        self.dead_letter.pending() > 0
    }

    fn next_tick(&self) -> Option<Instant> {
        // Reports are read as soon as they come (`tick` waits on their channel).
        Some(Instant::now())
    }

    async fn tick(&mut self) -> Result<(), SinkError> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        self.settle();
        if self.wants_resend() {
            return Ok(());
        }
        // Cancel-safe: a report is either received and handled at once, or left.
        let silence = (self.in_flight() && !self.stall.is_stalled())
            .then_some(self.last_ack + SILENCE_STALLS_AFTER);
        let r = match silence {
            Some(at) => tokio::select! {
                r = self.reports.recv() => r,
                _ = tokio::time::sleep_until(at) => {
                    let waiting: usize = self.pending.iter().map(|p| p.in_flight).sum();
                    let e = self.error(
                        "kafka_unreachable",
                        format!("no acknowledgement for {SILENCE_STALLS_AFTER:?} while {waiting} messages wait"),
                    );
                    self.metrics.error(&e);
                    self.stall.failed(
                        "kafka_unreachable",
                        &e.to_string(),
                        "the cluster takes no messages: check the brokers and the network \
                         (librdkafka keeps the messages and reconnects)",
                    );
                    return Ok(());
                }
            },
            None => self.reports.recv().await,
        };
        let Some(r) = r else {
            return std::future::pending().await;
        };
        self.report(r);
        self.drain_reports();
        self.settle();
        match self.failure.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn made_progress(&mut self) -> bool {
        std::mem::take(&mut self.progress)
    }

    fn accepts_batches(&self) -> bool {
        // While records wait to go again, no new ones: the resends keep their place
        // in the partition's order.
        !self.resend_due()
            && self.failure.is_none()
            && self.unsettled < MAX_UNSETTLED_RECORDS
            && self.pending.len() < MAX_PENDING_BATCHES
    }

    async fn close(&mut self) {
        let producer = self.producer.take();
        let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
    }
}

/// `validate --connect`: the cluster answers a metadata request through the sink's
/// settings (addresses, TLS, SASL); with a fixed topic, that topic exists.
pub(crate) async fn healthcheck(name: &str, opts: &KafkaOptions) -> Result<(), SinkError> {
    let brokers = opts.brokers.join(",");
    let fixed = opts
        .topic
        .parts
        .iter()
        .all(|p| matches!(p, crate::config::TopicPart::Literal(_)))
        .then(|| opts.topic.text.clone());
    let (producer, _reports) = client::producer(name, opts)?;
    let result = tokio::task::spawn_blocking(move || {
        let md = producer
            .client()
            .fetch_metadata(fixed.as_deref(), Duration::from_secs(10));
        drop(producer);
        md.map(|md| {
            md.topics()
                .iter()
                .find(|t| Some(t.name()) == fixed.as_deref())
                .and_then(|t| t.error())
                .map(|e| RDKafkaErrorCode::from(e).to_string())
        })
    })
    .await
    .map_err(|e| SinkError::Kafka {
        brokers: brokers.clone(),
        kind: "kafka_healthcheck",
        retriable: true,
        detail: e.to_string(),
    })?;
    match result {
        Ok(None) => Ok(()),
        Ok(Some(topic_error)) => Err(SinkError::Kafka {
            brokers,
            kind: "kafka_unknown_topic",
            retriable: false,
            detail: format!("topic `{}`: {topic_error}", opts.topic.text),
        }),
        Err(e) => Err(SinkError::Kafka {
            brokers,
            kind: "kafka_unreachable",
            retriable: true,
            detail: format!("no metadata from the cluster: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_event_type_is_cut_for_its_header() {
        let long = "é".repeat(200);
        let raw =
            format!(r#"{{"type$":"audit_log::{long}/1","timestamp":"2024-05-01T12:00:00Z"}}"#);
        let e = crate::event::Event::new(
            crate::event::SourceKind::AuditLog,
            serde_json::value::RawValue::from_string(raw).unwrap(),
            chrono::Utc::now(),
        );
        let t = event_type(&e);
        assert!(
            t.len() <= MAX_EVENT_TYPE_HEADER && t.starts_with("éé"),
            "{t}"
        );
        let short = crate::event::Event::new(
            crate::event::SourceKind::AuditLog,
            serde_json::value::RawValue::from_string(
                r#"{"type$":"audit_log::logged_in/1"}"#.to_string(),
            )
            .unwrap(),
            chrono::Utc::now(),
        );
        assert_eq!(event_type(&short), "logged_in");
    }

    #[test]
    fn opaques_carry_generation_batch_and_index() {
        for (g, s, i) in [
            (0, 0, 0),
            (7, SEQ_MASK, (1 << INDEX_BITS) - 1),
            (u16::MAX, 12345, 999),
        ] {
            assert_eq!(unpack(opaque(g, s, i)), (g, s, i));
        }
    }
}
