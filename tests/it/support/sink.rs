//! A sink task fed by hand ([`TestSink`]) and numbered events to feed it
//! ([`seq_events`], [`Tally`]), for the syslog-over-TLS and RELP tests.

use super::{event, sink_batch, PATIENCE};
use c42fwd::ack::{AckWaiter, Outcome};
use c42fwd::config::{Sink, SinkKind, TcpOptions, TlsOptions};
use c42fwd::encode::{Encoder, EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::event::Event;
use c42fwd::metrics::{label, Metrics};
use c42fwd::retry::BackoffPolicy;
use c42fwd::route::SinkBatch;
use c42fwd::sinks::{self, SinkContext, SinkError};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Retries a test can wait through.
pub fn fast_retry(max_retries: Option<u32>) -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(200),
        max_retries,
    }
}

pub fn encoding(framing: Framing) -> EncoderOptions {
    EncoderOptions {
        format: Format::JsonRaw,
        syslog: SyslogStyle::Rfc5424,
        framing,
        facility: 13,
        hostname: "c42fwd-test".into(),
        app_name: "c42fwd".into(),
    }
}

pub fn sink_config(name: &str, kind: SinkKind, framing: Framing, retry: BackoffPolicy) -> Sink {
    Sink {
        name: name.to_string(),
        kind,
        encoding: encoding(framing),
        dead_letter_max_bytes: c42fwd::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry,
    }
}

pub fn tcp_kind(port: u16, tls: Option<TlsOptions>) -> SinkKind {
    SinkKind::Tcp(TcpOptions {
        host: "127.0.0.1".into(),
        port,
        connect_timeout: Duration::from_secs(5),
        keepalive: Some(Duration::from_secs(60)),
        tls,
    })
}

/// A sink task fed through its queue by the test.
pub struct TestSink {
    tx: Option<mpsc::Sender<SinkBatch>>,
    pub ctx: SinkContext,
    task: Option<JoinHandle<Result<(), SinkError>>>,
    name: String,
    _dead_letter: Option<TempDir>,
}

impl TestSink {
    /// A sink whose dead-letter file goes to a temporary directory of its own.
    pub fn start(cfg: Sink) -> TestSink {
        let dead_letter = tempfile::tempdir().expect("tempdir");
        let mut sink = TestSink::start_in(cfg, dead_letter.path());
        sink._dead_letter = Some(dead_letter);
        sink
    }

    /// A sink whose dead-letter file goes to `dead_letter_dir`, for tests that read it.
    pub fn start_in(cfg: Sink, dead_letter_dir: &Path) -> TestSink {
        let (tx, rx) = mpsc::channel(cfg.queue_batches);
        let ctx = SinkContext {
            metrics: Arc::new(Metrics::new()),
            dead_letter_dir: dead_letter_dir.to_path_buf(),
            shutdown: CancellationToken::new(),
            reopen: Default::default(),
        };
        let name = cfg.name.clone();
        let task = tokio::spawn(sinks::run(cfg, rx, ctx.clone()));
        TestSink {
            tx: Some(tx),
            ctx,
            task: Some(task),
            name,
            _dead_letter: None,
        }
    }

    /// Queues a batch (waits while the queue is full); `None` if the sink stopped.
    pub async fn try_send(&self, events: Vec<Event>) -> Option<AckWaiter> {
        let (sb, waiter) = sink_batch("audit", events);
        let tx = self.tx.as_ref().expect("queue open");
        tx.send(sb).await.ok().map(|()| waiter)
    }

    pub async fn send(&self, events: Vec<Event>) -> AckWaiter {
        self.try_send(events).await.expect("sink queue open")
    }

    /// A clone of the queue's sender, for a producer task.
    pub fn sender(&self) -> mpsc::Sender<SinkBatch> {
        self.tx.clone().expect("queue open")
    }

    /// The sink's counter `family` (`events`, `resent`, `reconnects`, `errors`,
    /// `discarded`), with one more label when `extra` is given.
    pub fn counter(&self, family: &str, extra: Option<(&'static str, &str)>) -> u64 {
        let m = &self.ctx.metrics;
        let mut l = label("sink", &self.name);
        if let Some((k, v)) = extra {
            l.push((k, v.to_string()));
        }
        match family {
            "events" => m.sink_events.get_or_create(&l).get(),
            "resent" => m.sink_resent.get_or_create(&l).get(),
            "reconnects" => m.sink_reconnects.get_or_create(&l).get(),
            "errors" => m.sink_errors.get_or_create(&l).get(),
            "discarded" => m.sink_discarded.get_or_create(&l).get(),
            other => panic!("no counter {other}"),
        }
    }

    pub fn events(&self) -> u64 {
        self.counter("events", None)
    }

    pub fn resent(&self) -> u64 {
        self.counter("resent", None)
    }

    pub fn reconnects(&self) -> u64 {
        self.counter("reconnects", None)
    }

    pub fn errors(&self, kind: &str) -> u64 {
        self.counter("errors", Some(("kind", kind)))
    }

    /// Waits for the sink task to end by itself and returns how it ended.
    pub async fn ended(&mut self) -> Result<(), SinkError> {
        let task = self.task.take().expect("sink task");
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the sink stops in time")
            .expect("sink task panicked")
    }

    /// Closes the queue and waits for the sink to drain it and stop without error;
    /// returns its context (metrics, dead-letter directory).
    pub async fn finish(mut self) -> SinkContext {
        self.tx = None;
        self.ended().await.expect("sink ends without error");
        self.ctx.clone()
    }
}

impl Drop for TestSink {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
    }
}

pub async fn delivered(waiter: AckWaiter) {
    let outcome = tokio::time::timeout(PATIENCE, waiter.wait())
        .await
        .expect("batch acknowledged in time");
    assert_eq!(outcome, Outcome::Delivered);
}

// ---------------------------------------------------------------------------------
// Numbered events and what arrived of them
// ---------------------------------------------------------------------------------

/// Small events `{"seq":N,"pad":"..."}` for N in `range`.
pub fn seq_events(range: std::ops::Range<usize>) -> Vec<Event> {
    range
        .map(|i| event(&format!(r#"{{"seq":{i},"note":"event number {i}"}}"#)))
        .collect()
}

/// The message each event becomes (framing removed): what rsyslog's `%rawmsg%` shows.
pub fn expected_lines(opts: &EncoderOptions, events: &[Event]) -> Vec<String> {
    let mut unframed = opts.clone();
    unframed.framing = Framing::None;
    let encoder = Encoder::new(unframed);
    events
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            encoder.encode(e, &mut out);
            String::from_utf8(out).expect("utf-8 record")
        })
        .collect()
}

/// How often each sequence number arrived.
pub struct Tally {
    pub lost: Vec<usize>,
    pub duplicates: usize,
    pub foreign_lines: usize,
}

impl Tally {
    pub fn of(lines: &[String], sent: usize) -> Tally {
        let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
        let mut foreign_lines = 0;
        for line in lines {
            let seq = line
                .split_once("{\"seq\":")
                .and_then(|(_, rest)| rest.split(',').next())
                .and_then(|n| n.parse::<usize>().ok());
            match seq {
                Some(n) if n < sent => *seen.entry(n).or_default() += 1,
                _ => foreign_lines += 1,
            }
        }
        Tally {
            lost: (0..sent).filter(|n| !seen.contains_key(n)).collect(),
            duplicates: seen.values().map(|c| c - 1).sum(),
            foreign_lines,
        }
    }

    /// The lost sequence numbers as ranges, for the report.
    pub fn lost_ranges(&self) -> String {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.lost.len() {
            let start = self.lost[i];
            let mut end = start;
            while i + 1 < self.lost.len() && self.lost[i + 1] == end + 1 {
                i += 1;
                end = self.lost[i];
            }
            out.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
            i += 1;
        }
        out.join(", ")
    }
}

/// Feeds `total` numbered events in batches of `per_batch` through `tx`; returns the
/// waiters in order. The queue's bound paces it.
pub fn produce(
    tx: mpsc::Sender<SinkBatch>,
    total: usize,
    per_batch: usize,
) -> JoinHandle<Vec<AckWaiter>> {
    tokio::spawn(async move {
        let mut waiters = Vec::new();
        let mut start = 0;
        while start < total {
            let end = (start + per_batch).min(total);
            let (sb, waiter) = sink_batch("audit", seq_events(start..end));
            if tx.send(sb).await.is_err() {
                break;
            }
            waiters.push(waiter);
            start = end;
        }
        waiters
    })
}
