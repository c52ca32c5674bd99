//! The pipeline: builds the running parts from a validated [`Config`] and runs them.
//!
//! Invariant: this is the only module that spawns the daemon's tasks (DESIGN invariant
//! 7). It owns the task tracker and the two stop signals:
//! - `stop_sources`: sources stop reading, wait for the acknowledgements of what they
//!   sent, commit the delivered prefix and return. Their [`Route`]s drop, the sinks'
//!   queues close, and each sink drains its queue and returns.
//! - `hard_stop`: cancelled when the shutdown grace period is over; sinks abandon
//!   whatever they were retrying (the tokens they drop count as not delivered, so
//!   nothing undelivered is ever committed).
//!
//! Sources are supervised: a source that fails (the API refused it, a batch was not
//! delivered) is started again from its checkpoint after a backoff. A sink that fails
//! for good stops the whole pipeline with an error, so that the service manager sees it.

use crate::ack::{ack_set, AckWaiter};
use crate::api::ApiClient;
use crate::checkpoint::Store;
use crate::config::{Config, SourceSpec};
use crate::event::Batch;
use crate::metrics::Metrics;
use crate::retry::BackoffPolicy;
use crate::sinks::{self, SinkBatch, SinkContext};
use crate::sources::alerts::AlertsFetch;
use crate::sources::audit::AuditLogFetch;
use crate::sources::sync_log::SyncLogFetch;
use crate::sources::{WindowFetch, WindowPoller};
use anyhow::Context;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A source's handle on the sinks of its route.
///
/// `send` hands the batch to every sink's bounded queue (waiting while a queue is full:
/// this is the backpressure of DESIGN invariant 3) and returns the waiter that resolves
/// when every sink has reported on the batch.
#[derive(Clone)]
pub struct Route {
    sinks: Vec<mpsc::Sender<SinkBatch>>,
}

/// Every sink of the route has stopped; nothing more can be delivered.
#[derive(Debug, thiserror::Error)]
#[error("the sinks of this route have stopped")]
pub struct RouteClosed;

impl Route {
    pub fn new(sinks: Vec<mpsc::Sender<SinkBatch>>) -> Self {
        Route { sinks }
    }

    pub async fn send(&self, batch: Batch) -> Result<AckWaiter, RouteClosed> {
        let batch = Arc::new(batch);
        let (tokens, waiter) = ack_set(self.sinks.len());
        for (tx, ack) in self.sinks.iter().zip(tokens) {
            tx.send(SinkBatch {
                batch: batch.clone(),
                ack,
            })
            .await
            .map_err(|_| RouteClosed)?;
        }
        Ok(waiter)
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the configuration until SIGTERM / Ctrl-C, then drains and returns.
pub async fn run_until_signal(cfg: Config) -> anyhow::Result<()> {
    run(cfg, Arc::new(Metrics::new()), shutdown_signal()).await
}

/// Runs the configuration until `shutdown` resolves (or a sink fails for good), then
/// drains within the configured grace period.
pub async fn run(
    cfg: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let stop_sources = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let stop_metrics = CancellationToken::new();
    let side_tasks = TaskTracker::new();

    if let Some(addr) = cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        tracing::info!(%addr, "metrics on http://{addr}/metrics");
        side_tasks.spawn(crate::metrics::serve(
            listener,
            metrics.clone(),
            stop_metrics.clone().cancelled_owned(),
        ));
    }

    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("cannot create state directory {}", cfg.state_dir.display()))?;
    let store = Store::open(&cfg.state_dir)
        .with_context(|| format!("cannot open checkpoints in {}", cfg.state_dir.display()))?;

    // Sinks first, so that every route has somewhere to send.
    let (sink_failed_tx, mut sink_failed_rx) = mpsc::channel::<(String, String)>(8);
    let mut senders = BTreeMap::new();
    for (name, sink) in &cfg.sinks {
        let (tx, rx) = mpsc::channel(sink.queue_batches);
        senders.insert(name.clone(), tx);
        let ctx = SinkContext {
            metrics: metrics.clone(),
            dead_letter_dir: cfg.state_dir.join("dead-letter"),
            shutdown: hard_stop.clone(),
        };
        let sink = sink.clone();
        let failed = sink_failed_tx.clone();
        tracker.spawn(async move {
            let name = sink.name.clone();
            if let Err(e) = sinks::run(sink, rx, ctx).await {
                tracing::error!(sink = %name, error = %e, "sink stopped");
                // Never wait here: after the first failure nobody reads this channel,
                // and a sink task must not outlive the shutdown because of it.
                let _ = failed.try_send((name, e.to_string()));
            }
        });
    }
    drop(sink_failed_tx);

    let mut clients = BTreeMap::new();
    for (name, tenant) in &cfg.tenants {
        let client =
            ApiClient::new(tenant, metrics.clone()).with_context(|| format!("tenant `{name}`"))?;
        clients.insert(name.clone(), Arc::new(client));
    }

    let mut source_tasks = Vec::new();
    for (name, source) in &cfg.sources {
        let route = Route::new(
            cfg.routes[name]
                .iter()
                .map(|k| senders[k].clone())
                .collect(),
        );
        let client = clients[&source.tenant].clone();
        let source = source.clone();
        let store = store.clone();
        let metrics = metrics.clone();
        let stop = stop_sources.clone();
        source_tasks.push(tracker.spawn(supervise_source(
            source, client, store, metrics, route, stop,
        )));
    }
    // The routes now hold the only senders: when every source has returned, the sinks'
    // queues close and the sinks drain and return.
    drop(senders);
    tracker.close();

    let mut failure = None;
    tokio::select! {
        _ = shutdown => tracing::info!("shutdown requested: draining in-flight batches"),
        Some((sink, error)) = sink_failed_rx.recv() => {
            failure = Some(anyhow::anyhow!("sink `{sink}` failed: {error}"));
        }
    }
    stop_sources.cancel();
    if tokio::time::timeout(cfg.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?cfg.shutdown_grace,
            "shutdown grace period over: abandoning undelivered batches (they were not committed)"
        );
        hard_stop.cancel();
        tracker.wait().await;
    }
    stop_metrics.cancel();
    side_tasks.close();
    side_tasks.wait().await;
    match failure {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Builds and runs one poller of fetcher `F` until it stops; the error as text.
async fn run_poller<F: WindowFetch>(
    source: &crate::config::Source,
    client: &Arc<ApiClient>,
    store: &Store,
    metrics: &Arc<Metrics>,
    route: &Route,
    stop: &CancellationToken,
) -> Result<(), String> {
    match WindowPoller::<F>::new(source, client.clone(), store.clone(), metrics.clone()) {
        Ok(p) => p
            .run(route.clone(), stop.clone())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs one source, starting it again from its checkpoint when it fails, until `stop`.
async fn supervise_source(
    source: crate::config::Source,
    client: Arc<ApiClient>,
    store: Store,
    metrics: Arc<Metrics>,
    route: Route,
    stop: CancellationToken,
) {
    let policy = BackoffPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(300),
        max_retries: None,
    };
    let mut backoff = policy.backoff();
    loop {
        let result = match &source.kind {
            SourceSpec::AuditLog(_) => {
                run_poller::<AuditLogFetch>(&source, &client, &store, &metrics, &route, &stop).await
            }
            SourceSpec::Alerts(_) => {
                run_poller::<AlertsFetch>(&source, &client, &store, &metrics, &route, &stop).await
            }
            SourceSpec::SyncLog => {
                run_poller::<SyncLogFetch>(&source, &client, &store, &metrics, &route, &stop).await
            }
        };
        match result {
            Ok(()) => return,
            Err(e) if stop.is_cancelled() => {
                tracing::error!(source = %source.name, error = %e, "source stopped with an error during shutdown");
                return;
            }
            Err(e) => {
                let delay = backoff.next_delay().unwrap_or(policy.max);
                tracing::error!(
                    source = %source.name,
                    error = %e,
                    retry_in = ?delay,
                    "source failed; it restarts from its checkpoint"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}
