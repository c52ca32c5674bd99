//! A sink task fed by hand through its queue ([`Running`]) and what the HEC and HTTP
//! sink tests feed it and read back: audit events with a unique `seq`, dead letters.

use super::{event_at, sink_batch, PATIENCE};
use c42fwd::ack::{AckWaiter, Outcome};
use c42fwd::config::{Sink, TlsOptions};
use c42fwd::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::event::Event;
use c42fwd::metrics::{label, Metrics};
use c42fwd::retry::BackoffPolicy;
use c42fwd::route::SinkBatch;
use c42fwd::sinks::{self, SinkContext, SinkError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn fast_retry() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(100),
        max_retries: None,
    }
}

pub fn plain_tls() -> TlsOptions {
    TlsOptions::default()
}

pub fn encoding(format: Format) -> EncoderOptions {
    EncoderOptions {
        format,
        syslog: SyslogStyle::None,
        framing: Framing::None,
        facility: 13,
        hostname: "c42fwd-test".into(),
        app_name: "c42fwd".into(),
    }
}

/// A sink task fed by a queue, with its own metrics and shutdown token.
pub struct Running {
    pub tx: Option<mpsc::Sender<SinkBatch>>,
    pub ctx: SinkContext,
    pub task: JoinHandle<Result<(), SinkError>>,
    pub name: String,
}

impl Running {
    pub fn start(cfg: Sink, dead_letter_dir: &Path) -> Running {
        let (tx, rx) = mpsc::channel(cfg.queue_batches);
        let ctx = SinkContext {
            metrics: Arc::new(Metrics::new()),
            dead_letter_dir: dead_letter_dir.to_path_buf(),
            shutdown: CancellationToken::new(),
        };
        let name = cfg.name.clone();
        let task = tokio::spawn(sinks::run(cfg, rx, ctx.clone()));
        Running {
            tx: Some(tx),
            ctx,
            task,
            name,
        }
    }

    pub async fn send(&self, events: Vec<Event>) -> AckWaiter {
        let (sb, waiter) = sink_batch("audit", events);
        self.tx
            .as_ref()
            .expect("queue open")
            .send(sb)
            .await
            .expect("sink queue open");
        waiter
    }

    pub fn counter(&self, family: &str, extra: Option<(&'static str, &str)>) -> u64 {
        let m = &self.ctx.metrics;
        let mut l = label("sink", &self.name);
        if let Some((k, v)) = extra {
            l.push((k, v.to_string()));
        }
        match family {
            "events" => m.sink_events.get_or_create(&l).get(),
            "resent" => m.sink_resent.get_or_create(&l).get(),
            "errors" => m.sink_errors.get_or_create(&l).get(),
            "discarded" => m.sink_discarded.get_or_create(&l).get(),
            other => panic!("no counter {other}"),
        }
    }

    /// Closes the queue and waits for the sink to drain it and stop.
    pub async fn finish(mut self) -> SinkContext {
        drop(self.tx.take());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("sink drains and stops")
            .expect("sink task")
            .expect("sink ends without error");
        self.ctx
    }
}

pub async fn outcome(waiter: AckWaiter) -> Outcome {
    tokio::time::timeout(PATIENCE, waiter.wait())
        .await
        .expect("batch resolved in time")
}

/// An Audit Log event with a unique `seq`; `marker` is put in its `note` when given.
pub fn audit_event(seq: usize, marker: Option<&str>) -> Event {
    let ts = format!(
        "2024-05-01T12:{:02}:{:02}.{:03}Z",
        (seq / 60) % 60,
        seq % 60,
        seq % 1000
    );
    let json = serde_json::json!({
        "type$": "audit_log::logged_in/1",
        "actorId": format!("9{seq:08}"),
        "actorName": format!("user{seq}@example.com"),
        "actorIpAddress": "10.0.0.1",
        "timestamp": ts,
        "seq": seq,
        "note": marker.unwrap_or("line one\nline two \"quoted\" | pipe = equals"),
    });
    let occurred = chrono::DateTime::parse_from_rfc3339(&ts)
        .expect("rfc 3339")
        .with_timezone(&chrono::Utc);
    event_at(&json.to_string(), occurred)
}

/// Reads a dead-letter file: one JSON object per line.
pub fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead-letter line is json"))
        .collect()
}
