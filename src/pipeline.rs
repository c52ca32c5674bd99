//! The pipeline: builds the running parts from a validated [`Config`] and runs them.
//!
//! Invariant: this is the only module that spawns the daemon's tasks (ARCHITECTURE.md,
//! invariant 7), and the sink tasks of `c42fwd replay` too ([`SinkSet`]). It owns the task tracker and the two stop signals:
//! - `stop_sources`: sources stop reading, wait for the acknowledgements of what they
//!   sent, commit the delivered prefix and return. Their [`Route`]s drop, the sinks'
//!   queues close, and each sink drains its queue and returns.
//! - `hard_stop`: cancelled when the shutdown grace period is over; sinks abandon
//!   whatever they were retrying (the tokens they drop count as not delivered, so
//!   nothing undelivered is ever committed).
//!
//! Every source and sink task is supervised ([`Supervisor`]):
//! - a source that fails (the API refused it, a batch was not delivered) is logged as
//!   an ERROR, counted in `c42fwd_task_failures_total{task}`, and started again from
//!   its checkpoint after a backoff;
//! - a panic in a source or a sink is caught, logged as an ERROR with its message,
//!   counted in `c42fwd_task_panics_total{task}`, and the task is started again after a
//!   backoff. A sink's queue outlives its runs (see [`supervise_sink`]): the batches a
//!   panic dropped count as not delivered, their sources read them again, nothing is
//!   lost (at least once);
//! - the backoff starts over after a run that lasted [`HEALTHY_RUN`].
//!
//! A sink that fails for good (a permanent error it reported) stops the whole pipeline
//! with an error, so that the service manager sees it.
//!
//! Reloads ([`run_reloading`], SIGHUP for `c42fwd run`): the running parts are kept by
//! name (`Running`), each source with a stop token of its own (a child of
//! `stop_sources`) and each sink with its own hard stop (a child of `hard_stop`). A
//! reload validates the new file whole, compares it with the running configuration
//! ([`reload::Plan`]), stops the sources it changes or removes (they drain and commit,
//! as on shutdown), then the sinks it changes or removes (their queues close, they
//! deliver what they hold), each within `shutdown_grace`, then starts the new sinks and
//! sources; what it does not change keeps running untouched. Every SIGHUP also asks the
//! file sinks to reopen their files. SIGHUPs during a reload are one more reload after
//! it; SIGTERM during a reload stops it where it is and shuts down as usual.

use crate::api::ApiClient;
use crate::checkpoint::Store;
use crate::config::{Config, SourceSpec};
use crate::metrics::Metrics;
use crate::retry::BackoffPolicy;
use crate::route::{Route, SinkBatch};
use crate::sinks::{self, ReopenFiles, SinkContext};
use crate::sources::alerts::AlertsFetch;
use crate::sources::audit::AuditLogFetch;
use crate::sources::file_events::FileEventsFetch;
use crate::sources::sessions::SessionsFetch;
use crate::sources::sync_log::SyncLogFetch;
use crate::sources::{WindowFetch, WindowPoller};
use anyhow::Context;
use futures_util::FutureExt as _;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod reload;
use reload::Plan;
pub use reload::{Loader, Reloads};

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
    run_with_faults(cfg, metrics, shutdown, Faults::default()).await
}

/// Panics injected into named tasks, once each. Only this crate's own unit tests can
/// arm one: its field and the code that honours it are compiled under `cfg(test)`
/// only, so no configuration key, environment variable or cargo feature of a build a
/// user runs reaches it (outside unit tests it is an empty struct).
#[derive(Clone, Default)]
struct Faults {
    #[cfg(test)]
    panic_once: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl Faults {
    /// Whether task `task` (`sink:NAME`, `source:NAME`) is to panic once; disarms it.
    #[cfg(test)]
    fn take(&self, task: &str) -> bool {
        let mut armed = self.panic_once.lock().unwrap_or_else(|e| e.into_inner());
        armed.remove(task)
    }

    #[cfg(test)]
    fn armed(tasks: &[&str]) -> Faults {
        Faults {
            panic_once: Arc::new(std::sync::Mutex::new(
                tasks.iter().map(|t| t.to_string()).collect(),
            )),
        }
    }
}

async fn run_with_faults(
    cfg: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    faults: Faults,
) -> anyhow::Result<()> {
    run_reloading_with_faults(cfg, metrics, shutdown, Reloads::never(), faults).await
}

/// Runs the configuration until SIGTERM / Ctrl-C, reloading `file` on SIGHUP (see
/// [`reload`]), then drains and returns.
#[cfg(unix)]
pub async fn run_until_signal_reloading(
    cfg: Config,
    file: std::path::PathBuf,
) -> anyhow::Result<()> {
    // First: until the handler is installed, a SIGHUP ends the process.
    let reloads = Reloads::on_sighup(file).context("cannot install the SIGHUP handler")?;
    run_reloading(cfg, Arc::new(Metrics::new()), shutdown_signal(), reloads).await
}

/// [`run`], with a reload of the configuration on every request of `reloads`.
pub async fn run_reloading(
    cfg: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    reloads: Reloads,
) -> anyhow::Result<()> {
    run_reloading_with_faults(cfg, metrics, shutdown, reloads, Faults::default()).await
}

async fn run_reloading_with_faults(
    cfg: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    reloads: Reloads,
    faults: Faults,
) -> anyhow::Result<()> {
    metrics.ready.set_timeout(cfg.ready_timeout);
    let stop_metrics = CancellationToken::new();
    let side_tasks = TaskTracker::new();

    if let Some(addr) = cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        // The bound address, not the configured one: with port 0 this line is the only
        // place that says where the endpoint is.
        let addr = listener.local_addr().unwrap_or(addr);
        tracing::info!(%addr, "metrics on http://{addr}/metrics");
        let serve = crate::metrics::serve(
            listener,
            metrics.clone(),
            stop_metrics.clone().cancelled_owned(),
        );
        let m = metrics.clone();
        side_tasks.spawn(async move {
            // Its listener went into the server: it cannot be started again, but its
            // end must not go unnoticed.
            if let Err(panic) = catch_panic(serve).await {
                panicked(&m, "metrics", &panic);
                tracing::error!(task = "metrics", panic = %panic, "the metrics endpoint panicked and stopped");
            }
        });
    }

    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("cannot create state directory {}", cfg.state_dir.display()))?;
    let store = Store::open(&cfg.state_dir)
        .with_context(|| format!("cannot open checkpoints in {}", cfg.state_dir.display()))?;

    let (failed, mut sink_failed_rx) = mpsc::channel::<(String, String)>(8);
    let daemon = Daemon {
        tracker: TaskTracker::new(),
        stop_sources: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        store,
        metrics: metrics.clone(),
        failed,
        reopen: ReopenFiles::new(),
        faults,
    };
    let mut running = Running::start(cfg, &daemon)?;
    metrics.config_last_reload.set(crate::metrics::unix_now());

    let Reloads {
        mut trigger,
        file,
        load,
    } = reloads;
    tokio::pin!(shutdown);
    let mut failure = None;
    'run: loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutdown requested: draining in-flight batches");
                break 'run;
            }
            Some((sink, error)) = sink_failed_rx.recv() => {
                failure = Some(anyhow::anyhow!("sink `{sink}` failed: {error}"));
                break 'run;
            }
            () = trigger.next() => {
                // Every SIGHUP reopens the files at once (log rotation), whatever the
                // configuration holds; SIGHUPs during a reload are one more reload.
                daemon.reopen.request();
                let mut again = true;
                while again {
                    again = false;
                    let reload = reload_once(&mut running, &file, &load, &daemon);
                    tokio::pin!(reload);
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut shutdown => {
                                tracing::info!("shutdown requested during a reload: the reload stops where it is; draining in-flight batches");
                                break 'run;
                            }
                            () = &mut reload => break,
                            () = trigger.next() => {
                                daemon.reopen.request();
                                again = true;
                            }
                        }
                    }
                }
            }
        }
    }
    let grace = running.cfg.shutdown_grace;
    daemon.stop_sources.cancel();
    // The routes now hold the only senders: when every source has returned, the sinks'
    // queues close and the sinks drain and return.
    drop(running);
    daemon.tracker.close();
    if tokio::time::timeout(grace, daemon.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?grace,
            "shutdown grace period over: abandoning undelivered batches (they were not committed)"
        );
        daemon.hard_stop.cancel();
        daemon.tracker.wait().await;
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

/// What the daemon starts and stops its parts with, at the start and on every reload.
struct Daemon {
    /// Every source and sink task (closed at shutdown, then waited for).
    tracker: TaskTracker,
    /// Stops every source (each source's own token is a child).
    stop_sources: CancellationToken,
    /// Abandons what every sink holds (each sink's own token is a child).
    hard_stop: CancellationToken,
    store: Store,
    metrics: Arc<Metrics>,
    /// `(sink, error)` of a sink that failed for good: the pipeline stops.
    failed: mpsc::Sender<(String, String)>,
    /// The file sinks' reopen requests (SIGHUP).
    reopen: ReopenFiles,
    faults: Faults,
}

/// One running sink.
struct RunningSink {
    /// Its queue (the one-slot hand-off, see [`supervise_sink`]); the routes hold clones.
    sender: mpsc::Sender<SinkBatch>,
    /// Abandons what this sink holds (a child of the daemon's hard stop).
    hard_stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// One running source.
struct RunningSource {
    /// Stops this source (a child of the daemon's `stop_sources`).
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The daemon's parts as they run, and the configuration they were built from.
struct Running {
    cfg: Config,
    clients: BTreeMap<String, Arc<ApiClient>>,
    sinks: BTreeMap<String, RunningSink>,
    sources: BTreeMap<String, RunningSource>,
}

impl Running {
    /// Builds the API clients, then starts the sinks (so that every route has
    /// somewhere to send), then the sources.
    fn start(cfg: Config, d: &Daemon) -> anyhow::Result<Running> {
        let mut clients = BTreeMap::new();
        for (name, tenant) in &cfg.tenants {
            let client = ApiClient::new(tenant, d.metrics.clone())
                .with_context(|| format!("tenant `{name}`"))?;
            clients.insert(name.clone(), Arc::new(client));
        }
        let mut running = Running {
            cfg,
            clients,
            sinks: BTreeMap::new(),
            sources: BTreeMap::new(),
        };
        let names: Vec<String> = running.cfg.sinks.keys().cloned().collect();
        for name in &names {
            running.start_sink(name, d);
        }
        let names: Vec<String> = running.cfg.sources.keys().cloned().collect();
        for name in &names {
            running.start_source(name, d);
        }
        Ok(running)
    }

    fn start_sink(&mut self, name: &str, d: &Daemon) {
        let sink = &self.cfg.sinks[name];
        let hard_stop = d.hard_stop.child_token();
        let ctx = SinkContext {
            metrics: d.metrics.clone(),
            dead_letter_dir: self.cfg.state_dir.join("dead-letter"),
            shutdown: hard_stop.clone(),
            reopen: d.reopen.subscribe(),
        };
        let (sender, task) = spawn_sink(sink, ctx, &d.tracker, &d.failed, &d.faults);
        self.sinks.insert(
            name.to_string(),
            RunningSink {
                sender,
                hard_stop,
                task,
            },
        );
    }

    /// Starts source `name` on a route to the running sinks of its routes.
    fn start_source(&mut self, name: &str, d: &Daemon) {
        let source = self.cfg.sources[name].clone();
        d.metrics.ready.register_source(name, source.poll_interval);
        let route = Route::new(
            self.cfg.routes[name]
                .iter()
                .map(|k| self.sinks[k].sender.clone())
                .collect(),
        );
        let client = self.clients[&source.tenant].clone();
        let stop = d.stop_sources.child_token();
        #[cfg(test)]
        let route = if d.faults.take(&task_label("source", name)) {
            route.panicking_once()
        } else {
            route
        };
        let task = d.tracker.spawn(supervise_source(
            source,
            client,
            d.store.clone(),
            d.metrics.clone(),
            route,
            stop.clone(),
        ));
        self.sources
            .insert(name.to_string(), RunningSource { stop, task });
    }

    /// Applies a validated `new` configuration by `plan`, with the API clients of
    /// `new`'s tenants already built: stops (drains and commits) the sources to stop,
    /// then the sinks to stop, then starts the new sinks and the new sources. What the
    /// plan keeps is not touched. Each wait is bounded by `new`'s `shutdown_grace`.
    async fn apply(
        &mut self,
        new: Config,
        clients: BTreeMap<String, Arc<ApiClient>>,
        plan: &Plan,
        d: &Daemon,
    ) {
        let grace = new.shutdown_grace;
        // Sources first: they wait for the acknowledgements of what they sent and
        // commit, and their routes (the senders of the sinks to stop) go with them.
        let mut stopping = Vec::new();
        for (name, why) in &plan.stop_sources {
            if let Some(s) = self.sources.remove(name) {
                tracing::info!(source = %name, reason = why.as_str(), "reload: stopping the source (it commits what was delivered)");
                s.stop.cancel();
                stopping.push((name.clone(), s.task));
            }
        }
        let deadline = Instant::now() + grace;
        for (name, mut task) in stopping {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(source = %name, ?grace, "reload: the source did not stop within the grace period (a sink of its routes does not deliver); it is abandoned: what it sent and was not acknowledged stays uncommitted and is read again");
                task.abort();
                let _ = task.await;
            }
            if !new.sources.contains_key(&name) {
                d.metrics.ready.forget_source(&name);
                tracing::info!(source = %name, "reload: source removed (its checkpoint stays)");
            }
        }
        // Then the sinks: their queues close once their senders are gone, and each
        // delivers what it holds.
        let mut stopping = Vec::new();
        for (name, why) in &plan.stop_sinks {
            if let Some(s) = self.sinks.remove(name) {
                tracing::info!(sink = %name, reason = why.as_str(), "reload: stopping the sink (it delivers what it holds)");
                drop(s.sender);
                stopping.push((name.clone(), s.hard_stop, s.task));
            }
        }
        let deadline = Instant::now() + grace;
        for (name, hard_stop, mut task) in stopping {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(sink = %name, ?grace, "reload: the sink did not drain within the grace period; what it holds is abandoned (it was not committed)");
                hard_stop.cancel();
                let _ = task.await;
            }
            d.metrics.sink_stopped(&name);
            tracing::info!(sink = %name, "reload: sink stopped");
        }
        d.metrics.ready.set_timeout(new.ready_timeout);
        self.cfg = new;
        self.clients = clients;
        for (name, why) in &plan.start_sinks {
            tracing::info!(sink = %name, reason = why.as_str(), "reload: starting the sink");
            self.start_sink(name, d);
        }
        for (name, why) in &plan.start_sources {
            tracing::info!(source = %name, reason = why.as_str(), "reload: starting the source (from its checkpoint)");
            self.start_source(name, d);
        }
    }
}

/// One reload: reads and validates the configuration, checks what starting its new
/// parts would refuse, and applies it ([`Running::apply`]) or refuses it whole, the
/// running configuration staying. Counted in `c42fwd_config_reloads_total{result}`.
async fn reload_once(
    running: &mut Running,
    file: &std::path::Path,
    load: &reload::Loader,
    d: &Daemon,
) {
    let file_shown = file.display().to_string();
    tracing::info!(file = %file_shown, "configuration reload requested (SIGHUP)");
    let loader = load.clone();
    let loaded = match tokio::task::spawn_blocking(move || loader()).await {
        Ok(r) => r,
        Err(e) => Err(crate::config::ConfigError {
            file: Some(file.to_path_buf()),
            problems: vec![crate::config::Problem {
                path: String::new(),
                message: format!("reading the configuration failed: {e}"),
            }],
        }),
    };
    let new = match loaded {
        Ok(c) => c,
        Err(e) => {
            let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
            return refused(d, &file_shown, &problems);
        }
    };
    let new = reload::keep_restart_only(&running.cfg, new, &d.metrics);
    let plan = Plan::new(&running.cfg, &new);
    // What the start of a new part would refuse for good refuses the reload now.
    let mut problems = Vec::new();
    let mut clients = BTreeMap::new();
    for (name, tenant) in &new.tenants {
        if running.cfg.tenants.get(name) == Some(tenant) {
            if let Some(c) = running.clients.get(name) {
                clients.insert(name.clone(), c.clone());
                continue;
            }
        }
        match ApiClient::new(tenant, d.metrics.clone()) {
            Ok(c) => {
                clients.insert(name.clone(), Arc::new(c));
            }
            Err(e) => problems.push(format!("tenants.{name}: {e}")),
        }
    }
    for name in plan.start_sinks.keys() {
        if let Err(e) = sinks::preflight(&new.sinks[name]) {
            problems.push(format!("sinks.{name}: {e}"));
        }
    }
    if !problems.is_empty() {
        return refused(d, &file_shown, &problems);
    }
    let summary = (
        plan.start_sources.len(),
        plan.stop_sources.len(),
        plan.start_sinks.len(),
        plan.stop_sinks.len(),
        plan.kept_sources.len(),
        plan.kept_sinks.len(),
    );
    let changed = plan.is_empty() && new != running.cfg;
    running.apply(new, clients, &plan, d).await;
    d.metrics
        .config_reloads
        .get_or_create(&crate::metrics::label("result", "ok"))
        .inc();
    d.metrics.config_last_reload.set(crate::metrics::unix_now());
    let (sources_started, sources_stopped, sinks_started, sinks_stopped, kept_sources, kept_sinks) =
        summary;
    if plan.is_empty() {
        tracing::info!(
            file = %file_shown,
            settings_changed = changed,
            "configuration reloaded: no source or sink changed"
        );
    } else {
        tracing::info!(
            file = %file_shown,
            sources_started,
            sources_stopped,
            sinks_started,
            sinks_stopped,
            kept_sources,
            kept_sinks,
            "configuration reloaded"
        );
    }
}

/// A refused reload: every problem logged, counted as `invalid`; nothing changed.
fn refused(d: &Daemon, file: &str, problems: &[String]) {
    for p in problems {
        tracing::error!(file, problem = %p, "configuration reload: problem");
    }
    tracing::error!(
        file,
        problems = problems.len(),
        "configuration reload refused: the running configuration stays in effect"
    );
    d.metrics
        .config_reloads
        .get_or_create(&crate::metrics::label("result", "invalid"))
        .inc();
}

/// The sinks of a [`SinkSet`], started: each a supervised task under its tracker.
struct StartedSinks {
    /// Each sink's queue (its one-slot hand-off, see [`supervise_sink`]), by name.
    senders: BTreeMap<String, mpsc::Sender<SinkBatch>>,
    /// `(sink, error)` of a sink that failed for good.
    failed: mpsc::Receiver<(String, String)>,
}

/// Starts one supervised task per sink of `sinks` under `tracker`; their dead-letter
/// files go to `<state_dir>/dead-letter/`. `hard_stop` abandons what they hold.
fn start_sinks<'a>(
    sinks: impl IntoIterator<Item = &'a crate::config::Sink>,
    state_dir: &std::path::Path,
    metrics: &Arc<Metrics>,
    hard_stop: &CancellationToken,
    tracker: &TaskTracker,
    faults: &Faults,
) -> StartedSinks {
    let (sink_failed_tx, failed) = mpsc::channel::<(String, String)>(8);
    let mut senders = BTreeMap::new();
    for sink in sinks {
        let ctx = SinkContext {
            metrics: metrics.clone(),
            dead_letter_dir: state_dir.join("dead-letter"),
            shutdown: hard_stop.clone(),
            reopen: Default::default(),
        };
        let (tx, _task) = spawn_sink(sink, ctx, tracker, &sink_failed_tx, faults);
        senders.insert(sink.name.clone(), tx);
    }
    StartedSinks { senders, failed }
}

/// Spawns the supervised task of `sink` under `tracker`; returns its queue's sender
/// and the task. A permanent failure is reported on `failed`.
fn spawn_sink(
    sink: &crate::config::Sink,
    ctx: SinkContext,
    tracker: &TaskTracker,
    failed: &mpsc::Sender<(String, String)>,
    faults: &Faults,
) -> (mpsc::Sender<SinkBatch>, tokio::task::JoinHandle<()>) {
    // One slot: the sink's real queue of `queue_batches` is the channel of its
    // current run, filled from this one (see `supervise_sink`).
    let (tx, rx) = mpsc::channel(1);
    let sink = sink.clone();
    let failed = failed.clone();
    let faults = faults.clone();
    let task = tracker.spawn(async move {
        let name = sink.name.clone();
        if let Err(e) = supervise_sink(sink, rx, ctx, faults).await {
            tracing::error!(sink = %name, error = %e, "sink stopped");
            // Never wait here: after the first failure nobody reads this channel,
            // and a sink task must not outlive the shutdown because of it.
            let _ = failed.try_send((name, e.to_string()));
        }
    });
    (tx, task)
}

/// Running sinks for a caller other than the daemon (`c42fwd replay`): the same
/// supervised sink tasks as [`run`] starts, spawned here so that this module stays the
/// only one that spawns them (ARCHITECTURE.md, invariant 7). The caller sends through
/// [`SinkSet::route`] and ends with [`SinkSet::finish`].
pub struct SinkSet {
    tracker: TaskTracker,
    hard_stop: CancellationToken,
    senders: BTreeMap<String, mpsc::Sender<SinkBatch>>,
    failed: mpsc::Receiver<(String, String)>,
}

impl SinkSet {
    /// Starts `sinks`; their dead-letter files go to `<state_dir>/dead-letter/`.
    pub fn start(
        sinks: &[crate::config::Sink],
        state_dir: &std::path::Path,
        metrics: &Arc<Metrics>,
    ) -> SinkSet {
        let tracker = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        let StartedSinks { senders, failed } = start_sinks(
            sinks,
            state_dir,
            metrics,
            &hard_stop,
            &tracker,
            &Faults::default(),
        );
        tracker.close();
        SinkSet {
            tracker,
            hard_stop,
            senders,
            failed,
        }
    }

    /// A route to every sink of the set: each batch sent goes to all of them.
    pub fn route(&self) -> Route {
        Route::new(self.senders.values().cloned().collect())
    }

    /// Resolves with `(sink, error)` when a sink failed for good; never otherwise
    /// while the set's own senders are held.
    pub async fn failed(&mut self) -> Option<(String, String)> {
        self.failed.recv().await
    }

    /// Closes the queues (every route the caller made must be dropped by now), lets the
    /// sinks drain what they hold for `grace` at most, then abandons the rest.
    pub async fn finish(self, grace: Duration) {
        drop(self.senders);
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "grace period over: abandoning what the sinks still hold"
            );
            self.hard_stop.cancel();
            self.tracker.wait().await;
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

/// Restart delays of a failed or panicked task.
const RESTART: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(300),
    max_retries: None,
};

/// A run at least this long counts as healthy: the next failure starts the backoff over.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The `task` label of a supervised task: `source:NAME`, `sink:NAME` (names cannot
/// hold `:`).
fn task_label(kind: &str, name: &str) -> String {
    format!("{kind}:{name}")
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Runs `fut`; a panic inside it becomes `Err(message)` instead of ending the task.
///
/// `AssertUnwindSafe`: after a panic, the run's own state is dropped whole and the next
/// run builds everything again from the configuration and the checkpoint. What outlives
/// a run is panic-proof: metrics are atomics, the API client's token lock is a tokio
/// mutex (no poisoning; the unwinding drops its guard), checkpoints are replaced
/// atomically on disk, ack tokens dropped unresolved count as not delivered, and a
/// sink's queue is only ever borrowed by a run.
async fn catch_panic<F: Future>(fut: F) -> Result<F::Output, String> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|payload| panic_message(&*payload))
}

fn panicked(metrics: &Metrics, task: &str, _message: &str) {
    metrics
        .task_panics
        .get_or_create(&crate::metrics::label("task", task))
        .inc();
}

/// What one run of a supervised task came to.
enum Ended<T> {
    /// The task is done (stopped, or failed in a way its own policy handles): `T`.
    Done(T),
    /// The task failed and is to run again after a backoff; the error, for the log.
    /// (Only sources fail this way; a sink's failures are its own `Done(Err(..))`.)
    Failed(String),
}

/// What the supervisor decided after a run.
enum Next<T> {
    Done(T),
    /// The backoff is over: run the task again.
    Restart,
    /// `stop` was cancelled while waiting to restart.
    Stopped,
}

/// Restarts one task with backoff after a failure or a panic; see the module docs.
struct Supervisor {
    task: String,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    backoff: crate::retry::Backoff,
}

impl Supervisor {
    fn new(task: String, metrics: Arc<Metrics>, stop: CancellationToken) -> Self {
        Supervisor {
            task,
            metrics,
            stop,
            backoff: RESTART.backoff(),
        }
    }

    /// Runs `run` once, catching a panic; after a failure or a panic, waits out the
    /// backoff (or `stop`).
    async fn run<T>(&mut self, run: impl Future<Output = Ended<T>>) -> Next<T> {
        let started = Instant::now();
        let outcome = catch_panic(run).await;
        if started.elapsed() >= HEALTHY_RUN {
            self.backoff = RESTART.backoff();
        }
        let delay = match &outcome {
            Ok(Ended::Done(_)) => Duration::ZERO,
            _ => self.backoff.next_delay().unwrap_or(RESTART.max),
        };
        let task = self.task.as_str();
        match outcome {
            Ok(Ended::Done(v)) => return Next::Done(v),
            Ok(Ended::Failed(error)) => {
                self.metrics
                    .task_failures
                    .get_or_create(&crate::metrics::label("task", task))
                    .inc();
                tracing::error!(task, error = %error, retry_in = ?delay, "task failed; it restarts from its checkpoint");
            }
            Err(panic) => {
                panicked(&self.metrics, task, &panic);
                if self.stop.is_cancelled() {
                    tracing::error!(task, panic = %panic, "task panicked during shutdown");
                    return Next::Stopped;
                }
                tracing::error!(task, panic = %panic, retry_in = ?delay, "task panicked; it restarts");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {
                self.metrics
                    .task_restarts
                    .get_or_create(&crate::metrics::label("task", task))
                    .inc();
                Next::Restart
            }
            _ = self.stop.cancelled() => Next::Stopped,
        }
    }
}

/// Runs one source, starting it again from its checkpoint when it fails or panics,
/// until `stop`.
async fn supervise_source(
    source: crate::config::Source,
    client: Arc<ApiClient>,
    store: Store,
    metrics: Arc<Metrics>,
    route: Route,
    stop: CancellationToken,
) {
    let mut supervisor = Supervisor::new(
        task_label("source", &source.name),
        metrics.clone(),
        stop.clone(),
    );
    loop {
        let run = async {
            let result = match &source.kind {
                SourceSpec::AuditLog(_) => {
                    run_poller::<AuditLogFetch>(&source, &client, &store, &metrics, &route, &stop)
                        .await
                }
                SourceSpec::Alerts(_) => {
                    run_poller::<AlertsFetch>(&source, &client, &store, &metrics, &route, &stop)
                        .await
                }
                SourceSpec::SyncLog => {
                    run_poller::<SyncLogFetch>(&source, &client, &store, &metrics, &route, &stop)
                        .await
                }
                SourceSpec::Sessions(_) => {
                    run_poller::<SessionsFetch>(&source, &client, &store, &metrics, &route, &stop)
                        .await
                }
                SourceSpec::FileEvents(_) => {
                    run_poller::<FileEventsFetch>(&source, &client, &store, &metrics, &route, &stop)
                        .await
                }
            };
            match result {
                Ok(()) => Ended::Done(()),
                Err(e) if stop.is_cancelled() => {
                    tracing::error!(source = %source.name, error = %e, "source stopped with an error during shutdown");
                    Ended::Done(())
                }
                Err(e) => {
                    metrics.ready.source_failed(&source.name, &e);
                    Ended::Failed(e)
                }
            }
        };
        match supervisor.run(run).await {
            Next::Restart => {}
            Next::Done(()) | Next::Stopped => return,
        }
    }
}

/// Runs one sink until its queue is closed and drained, the hard stop, or a permanent
/// error (returned), restarting it after a panic.
///
/// The queue the routes fill (`queue`) belongs to this supervisor, not to a run: each
/// run gets a fresh channel of `queue_batches` that [`forward`] fills from it. A panic
/// drops that run, its channel and the batches in it, whose tokens then count as not
/// delivered (their sources stop and read them again from their checkpoints); the
/// queue itself, and every batch still in it, survives for the next run.
async fn supervise_sink(
    sink: crate::config::Sink,
    mut queue: mpsc::Receiver<SinkBatch>,
    ctx: SinkContext,
    faults: Faults,
) -> Result<(), sinks::SinkError> {
    let mut supervisor = Supervisor::new(
        task_label("sink", &sink.name),
        ctx.metrics.clone(),
        ctx.shutdown.clone(),
    );
    let progress = ctx.metrics.ready.sink(&sink.name, &ctx.metrics);
    loop {
        let (tx, rx) = mpsc::channel(sink.queue_batches);
        let delivery = run_sink(&sink, rx, ctx.clone(), &faults);
        let queue = &mut queue;
        let progress = &progress;
        let run = async move {
            tokio::pin!(delivery);
            let result = tokio::select! {
                r = &mut delivery => r,
                () = forward(queue, tx, progress) => delivery.await,
            };
            Ended::Done(result)
        };
        match supervisor.run(run).await {
            Next::Done(result) => return result,
            Next::Restart => {}
            // The hard stop: what is still queued stays uncommitted.
            Next::Stopped => return Ok(()),
        }
    }
}

/// Moves batches from `queue` into the channel of a sink's current run, never holding
/// one itself: a slot in `to` is reserved before a batch is taken, so that when the run
/// ends (or panics) every batch is either in `queue` or was the run's. Returns when
/// `queue` is closed and drained (dropping `to`, which lets the run drain and return)
/// or when the run is gone. Each batch's token is tracked by `progress` from here on,
/// for `/ready` ([`crate::health`]).
async fn forward(
    queue: &mut mpsc::Receiver<SinkBatch>,
    to: mpsc::Sender<SinkBatch>,
    progress: &Arc<crate::health::SinkProgress>,
) {
    loop {
        let Ok(slot) = to.reserve().await else { return };
        let Some(SinkBatch { batch, ack }) = queue.recv().await else {
            return;
        };
        slot.send(SinkBatch {
            batch,
            ack: progress.track(ack),
        });
    }
}

/// One run of a sink's delivery loop.
async fn run_sink(
    sink: &crate::config::Sink,
    rx: mpsc::Receiver<SinkBatch>,
    ctx: SinkContext,
    faults: &Faults,
) -> Result<(), sinks::SinkError> {
    #[cfg(test)]
    if faults.take(&task_label("sink", &sink.name)) {
        let encoder =
            test_faults::PanicOnce::new(crate::encode::Encoder::new(sink.encoding.clone()));
        return sinks::run_with_encoder(sink.clone(), rx, ctx, encoder).await;
    }
    let _ = faults;
    sinks::run(sink.clone(), rx, ctx).await
}

/// The encoder of a sink armed to panic: it panics on its first event, inside the
/// sink's delivery loop, with the batch (and its ack token) in the sink's hands.
#[cfg(test)]
mod test_faults {
    use crate::encode::Encoder;
    use crate::event::Event;
    use crate::sinks::RecordEncoder;
    use std::sync::atomic::{AtomicBool, Ordering};

    pub(super) struct PanicOnce {
        inner: Encoder,
        armed: AtomicBool,
    }

    impl PanicOnce {
        pub(super) fn new(inner: Encoder) -> Self {
            PanicOnce {
                inner,
                armed: AtomicBool::new(true),
            }
        }
    }

    impl RecordEncoder for PanicOnce {
        fn encode(&self, event: &Event, out: &mut Vec<u8>) {
            if self.armed.swap(false, Ordering::SeqCst) {
                panic!("injected sink panic (test build)");
            }
            self.inner.encode(event, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use c42fwd_emulator::{self as emulator, EmulatorHandle, EmulatorOptions};
    use std::collections::HashMap;
    use std::path::Path;

    /// The tests that run a `Supervisor` take turns. Two of them read the log through
    /// a thread's default subscriber, and tracing may cache a log line's callsite as
    /// disabled when another thread reaches it first, with no subscriber, while that
    /// subscriber is being set.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn panics(metrics: &Metrics, task: &str) -> u64 {
        metrics
            .task_panics
            .get_or_create(&crate::metrics::label("task", task))
            .get()
    }

    /// Backoff: 1 s doubling, full jitter (each delay in [base, 2 x base)), back to 1 s
    /// after a healthy run. The clock is tokio's paused one: no real waiting.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_restarts_with_backoff_reset_after_a_healthy_run() {
        let _serial = SERIAL.lock().await;
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let mut sup = Supervisor::new("source:t".into(), metrics.clone(), stop.clone());
        let mut delays = Vec::new();
        for run_for in [0, 0, 0, HEALTHY_RUN.as_secs(), 0] {
            let before = Instant::now();
            let next = sup
                .run(async move {
                    tokio::time::sleep(Duration::from_secs(run_for)).await;
                    let always = true;
                    if always {
                        panic!("boom after {run_for} s");
                    }
                    Ended::Done(())
                })
                .await;
            assert!(matches!(next, Next::Restart));
            delays.push(before.elapsed() - Duration::from_secs(run_for));
        }
        // Inclusive: the paused clock rounds a sleep up to the millisecond.
        let within = |d: Duration, base: u64| {
            d >= Duration::from_secs(base) && d <= Duration::from_secs(2 * base)
        };
        assert!(within(delays[0], 1), "{delays:?}");
        assert!(within(delays[1], 2), "{delays:?}");
        assert!(within(delays[2], 4), "{delays:?}");
        assert!(
            within(delays[3], 1),
            "reset after a healthy run: {delays:?}"
        );
        assert!(within(delays[4], 2), "{delays:?}");
        assert_eq!(panics(&metrics, "source:t"), 5);

        // A failure (not a panic) backs off too, is not counted as a panic; a task that
        // is done is returned at once; a stop during the backoff ends the supervision.
        let next = sup
            .run(async { Ended::<()>::Failed("refused".into()) })
            .await;
        assert!(matches!(next, Next::Restart));
        assert_eq!(panics(&metrics, "source:t"), 5);
        assert!(matches!(
            sup.run(async { Ended::Done(7) }).await,
            Next::Done(7)
        ));
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            stopper.cancel();
        });
        let next = sup.run(async { Ended::<()>::Failed("again".into()) }).await;
        assert!(matches!(next, Next::Stopped));
    }

    #[test]
    fn panic_messages_are_read_from_str_and_string_payloads() {
        let s = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(&*s), "static");
        let n = 3;
        let s = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(&*s), "formatted 3");
        let s = std::panic::catch_unwind(|| std::panic::panic_any(42u8)).unwrap_err();
        assert_eq!(panic_message(&*s), "a panic without a message");
    }

    async fn start_emulator() -> (EmulatorHandle, EmulatorOptions) {
        let opts = EmulatorOptions {
            backlog: 240,
            backlog_span: Duration::from_secs(600),
            rate: 0.0,
            alert_backlog: 0,
            alert_rate: 0.0,
            sync_log_backlog: 0,
            sync_log_rate: 0.0,
            lag: Duration::ZERO,
            ..EmulatorOptions::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let emu = emulator::start(opts.clone(), listener).await.unwrap();
        (emu, opts)
    }

    /// The emulator's Audit Log, pages of 50, as raw JSON lines into a file sink.
    fn config(emu: &EmulatorHandle, opts: &EmulatorOptions, dir: &Path) -> Config {
        config_with(
            emu,
            opts,
            dir,
            "5s",
            &file_sink(&dir.join("out.ndjson"), ""),
        )
    }

    /// The keys of a file sink writing raw JSON lines to `path`; `more`: further keys
    /// or tables of the sink.
    fn file_sink(path: &Path, more: &str) -> String {
        format!(
            "type = \"file\"\npath = \"{}\"\nformat = \"json\"\nsyslog = \"none\"\n{more}",
            path.display()
        )
    }

    /// The emulator's Audit Log, pages of 50, into the sink `out` made of `sink` (its
    /// keys), with a shutdown grace period of `grace`.
    fn config_with(
        emu: &EmulatorHandle,
        opts: &EmulatorOptions,
        dir: &Path,
        grace: &str,
        sink: &str,
    ) -> Config {
        crate::config::parse_str(&format!(
            r#"
state_dir = "{state}"
shutdown_grace = "{grace}"
[tenants.emu]
api = "incydr"
base_url = "{base}"
client_id = "{id}"
client_secret = "{secret}"
[sources.audit]
type = "audit_log"
tenant = "emu"
start = "1h"
lag = "0s"
poll_interval = "200ms"
page_size = 50
[sinks.out]
{sink}
[[routes]]
sources = ["audit"]
sinks = ["out"]
"#,
            state = dir.join("state").display(),
            base = emu.base_url(),
            id = opts.client_id,
            secret = opts.client_secret,
        ))
        .unwrap()
    }

    fn counts(lines: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for l in lines {
            *m.entry(l).or_insert(0) += 1;
        }
        m
    }

    /// The log lines written while it is alive, on this thread (the tests run on a
    /// current-thread runtime, so every task of the pipeline logs here).
    struct Logs {
        buf: Arc<std::sync::Mutex<Vec<u8>>>,
        _guard: tracing::subscriber::DefaultGuard,
    }

    struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LogWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Logs {
        fn capture() -> Logs {
            let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
            let b = buf.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || LogWriter(b.clone()))
                .finish();
            Logs {
                buf,
                _guard: tracing::subscriber::set_default(subscriber),
            }
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
        }
    }

    /// The tenant's truth: every event of the emulator's last hour, counted.
    fn truth_of(emu: &EmulatorHandle) -> HashMap<String, usize> {
        let truth = counts(emu.events_between(emu.now() - chrono::Duration::hours(1), emu.now()));
        assert_eq!(truth.values().sum::<usize>(), 240);
        truth
    }

    /// What the file sink's file `out` holds, per event.
    fn file_counts(out: &Path) -> HashMap<String, usize> {
        counts(
            std::fs::read_to_string(out)
                .unwrap_or_default()
                .lines()
                .map(str::to_string),
        )
    }

    /// Runs the pipeline with `faults` until every event of the emulator is in the
    /// file sink (or 30 s), stops it, and returns what the file holds per event and the
    /// tenant's truth.
    async fn run_until_all_delivered(
        faults: Faults,
        metrics: Arc<Metrics>,
    ) -> (HashMap<String, usize>, HashMap<String, usize>) {
        let (emu, opts) = start_emulator().await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&emu, &opts, dir.path());
        let truth = truth_of(&emu);
        let got = deliver_all(cfg, faults, metrics, &dir.path().join("out.ndjson"), &truth).await;
        emu.shutdown().await;
        (got, truth)
    }

    /// Runs the pipeline of `cfg` with `faults` until every event of `truth` is in the
    /// file `out` (or 30 s), stops it, and returns what the file holds per event.
    async fn deliver_all(
        cfg: Config,
        faults: Faults,
        metrics: Arc<Metrics>,
        out: &Path,
        truth: &HashMap<String, usize>,
    ) -> HashMap<String, usize> {
        let stop = CancellationToken::new();
        let pipeline = tokio::spawn(run_with_faults(
            cfg,
            metrics,
            stop.clone().cancelled_owned(),
            faults,
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // One read of the file a look, not one an event.
            let got = file_counts(out);
            if truth.keys().all(|k| got.contains_key(k)) {
                break;
            }
            assert!(Instant::now() < deadline, "not every event arrived in 30 s");
            assert!(!pipeline.is_finished(), "the pipeline stopped");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        pipeline.await.unwrap().unwrap();
        file_counts(out)
    }

    /// A sink that panics on its first batch is restarted and counted. The batch in
    /// its hands was not delivered: the source read it again. Delivery is at least
    /// once: batches queued behind the lost one may arrive twice.
    #[tokio::test]
    async fn a_sink_panic_is_caught_counted_and_the_sink_restarted_losing_nothing() {
        let _serial = SERIAL.lock().await;
        let metrics = Arc::new(Metrics::new());
        let logs = Logs::capture();
        let (got, truth) =
            run_until_all_delivered(Faults::armed(&["sink:out"]), metrics.clone()).await;
        let log = logs.text();
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains("task panicked; it restarts")
                && l.contains("task=\"sink:out\"")
                && l.contains("panic=injected sink panic (test build)")),
            "{log}"
        );
        assert_eq!(panics(&metrics, "sink:out"), 1);
        assert_eq!(panics(&metrics, "source:audit"), 0);
        for (event, n) in &truth {
            let seen = got.get(event).copied().unwrap_or(0);
            assert!(seen >= *n && seen <= 2 * n, "{seen} x (want {n}): {event}");
        }
        assert!(
            got.keys().all(|k| truth.contains_key(k)),
            "an event not in the tenant"
        );
    }

    /// A source that panics in the middle of its poll loop is restarted from its
    /// checkpoint and counted; it had sent nothing, so every event arrives exactly once.
    #[tokio::test]
    async fn a_source_panic_is_caught_counted_and_the_source_restarted() {
        let _serial = SERIAL.lock().await;
        let metrics = Arc::new(Metrics::new());
        let logs = Logs::capture();
        let (got, truth) =
            run_until_all_delivered(Faults::armed(&["source:audit"]), metrics.clone()).await;
        let log = logs.text();
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains("task panicked; it restarts")
                && l.contains("task=\"source:audit\"")
                && l.contains("panic=injected source panic (test build)")),
            "{log}"
        );
        assert_eq!(panics(&metrics, "source:audit"), 1);
        assert_eq!(panics(&metrics, "sink:out"), 0);
        assert_eq!(got, truth, "every event exactly once");
        assert!(metrics
            .render()
            .contains("c42fwd_task_panics_total{task=\"source:audit\"} 1"));
    }

    /// Waits until source `audit` has sent `n` events into its route (30 s at most, on
    /// the real clock).
    async fn wait_until_sent(
        metrics: &Metrics,
        n: u64,
        pipeline: &tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let sent = || {
            metrics
                .source_events
                .get_or_create(&crate::metrics::label("source", "audit"))
                .get()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while sent() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} events sent in 30 s",
                sent()
            );
            assert!(!pipeline.is_finished(), "the pipeline stopped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The events of `events` that the checkpoint of source `audit` under `state_dir`
    /// counts as delivered: those before its watermark and those among its fingerprints
    /// (none without a checkpoint).
    fn committed<'a>(
        state_dir: &Path,
        events: impl IntoIterator<Item = &'a String>,
    ) -> std::collections::BTreeSet<String> {
        let Some(cp) = Store::open(state_dir).unwrap().load("audit").unwrap() else {
            return Default::default();
        };
        let window = crate::sources::window::WindowState::restore(cp.watermark, &cp.fingerprints);
        events
            .into_iter()
            .filter(|raw| {
                let occurred = crate::api::parse_event_time(raw).unwrap();
                occurred < cp.watermark
                    || window.forwarded_copies(crate::sources::window::fingerprint(raw)) > 0
            })
            .cloned()
            .collect()
    }

    fn batches_committed(metrics: &Metrics) -> u64 {
        metrics
            .source_batches_committed
            .get_or_create(&crate::metrics::label("source", "audit"))
            .get()
    }

    /// The paused clock rounds a timer up to the millisecond.
    const SLACK: Duration = Duration::from_millis(50);

    /// The grace period of [`Held`] pipelines.
    const GRACE: Duration = Duration::from_secs(10);

    /// A pipeline of [`run`] whose sink holds every batch undelivered: the path of the
    /// sink's file is a directory, so every open fails, with an error worth retrying.
    ///
    /// The clock: reading the emulator is real I/O, which tokio's paused clock cannot
    /// wait for (with a socket still pending and no task to run it jumps to the next
    /// timer, firing the HTTP client's timeouts), so [`Held::start`] waits on the real
    /// clock until every batch is in the sink's hands (the source's counter says when),
    /// and [`Held::shut_down`] pauses it: from the shutdown request on, only timers are
    /// left to run (the sink's retries, the grace period), and the grace period passes
    /// in no real time.
    struct Held {
        emu: EmulatorHandle,
        dir: tempfile::TempDir,
        out: std::path::PathBuf,
        cfg: Config,
        truth: HashMap<String, usize>,
        metrics: Arc<Metrics>,
        logs: Logs,
        stop: CancellationToken,
        pipeline: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    impl Held {
        /// Starts the pipeline, its sink's keys `more` added, and returns once all 240
        /// events are sent.
        async fn start(more: &str) -> Held {
            let logs = Logs::capture();
            let (emu, opts) = start_emulator().await;
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out.ndjson");
            std::fs::create_dir(&out).unwrap();
            let cfg = config_with(&emu, &opts, dir.path(), "10s", &file_sink(&out, more));
            assert_eq!(cfg.shutdown_grace, GRACE);
            let truth = truth_of(&emu);
            let metrics = Arc::new(Metrics::new());
            let stop = CancellationToken::new();
            let pipeline = tokio::spawn(run(
                cfg.clone(),
                metrics.clone(),
                stop.clone().cancelled_owned(),
            ));
            wait_until_sent(&metrics, 240, &pipeline).await;
            assert_eq!(batches_committed(&metrics), 0, "delivered before shutdown");
            Held {
                emu,
                dir,
                out,
                cfg,
                truth,
                metrics,
                logs,
                stop,
                pipeline,
            }
        }

        /// Asks for shutdown on the paused clock, runs `then` right after the request,
        /// and returns how long `run` took to return (`Ok`; three grace periods at most).
        /// The clock runs again afterwards.
        async fn shut_down(&mut self, then: impl FnOnce(&Path)) -> Duration {
            tokio::time::pause();
            let asked = Instant::now();
            self.stop.cancel();
            then(&self.out);
            tokio::time::timeout(3 * GRACE, &mut self.pipeline)
                .await
                .expect("run did not return after the grace period")
                .unwrap()
                .unwrap();
            let took = asked.elapsed();
            tokio::time::resume();
            took
        }

        /// What the checkpoint counts as delivered of the tenant's events.
        fn committed(&self) -> std::collections::BTreeSet<String> {
            committed(&self.dir.path().join("state"), self.truth.keys())
        }
    }

    /// A sink that cannot deliver holds every batch when shutdown is asked for. The
    /// sources wait for their acknowledgements for the grace period and no longer: then
    /// the sink is abandoned and `run` returns. Nothing is committed, so a restart
    /// delivers every event, once.
    #[tokio::test]
    async fn shutdown_abandons_an_undeliverable_sink_after_the_grace_period_committing_nothing() {
        let _serial = SERIAL.lock().await;
        let mut held = Held::start("").await;
        let took = held.shut_down(|_| {}).await;
        assert!(
            took >= GRACE && took <= GRACE + SLACK,
            "returned after {took:?}"
        );
        let log = held.logs.text();
        assert!(
            log.contains("shutdown grace period over: abandoning undelivered batches"),
            "{log}"
        );
        assert_eq!(batches_committed(&held.metrics), 0);
        assert!(
            held.committed().is_empty(),
            "committed what no sink delivered"
        );
        assert!(!held.out.is_file());

        // The path fixed, a restart reads everything again from the checkpoint.
        std::fs::remove_dir(&held.out).unwrap();
        let got = deliver_all(
            held.cfg.clone(),
            Faults::default(),
            Arc::new(Metrics::new()),
            &held.out,
            &held.truth,
        )
        .await;
        assert_eq!(got, held.truth, "every event exactly once");
        held.emu.shutdown().await;
    }

    /// A delivering pipeline drains on shutdown. Asked to stop with every batch in its
    /// sink's hands and none delivered yet, the sources stop reading, the sink delivers
    /// what it holds (its next retry, soon, finds the path free), the source commits
    /// it, and `run` returns before the grace period is over. The checkpoint then
    /// covers exactly the delivered events.
    #[tokio::test]
    async fn shutdown_drains_what_the_sink_holds_and_commits_exactly_that() {
        let _serial = SERIAL.lock().await;
        let mut held = Held::start("[sinks.out.retry]\ninitial = \"10ms\"\nmax = \"20ms\"\n").await;
        let took = held
            .shut_down(|out| std::fs::remove_dir(out).unwrap())
            .await;
        assert!(took < GRACE, "returned after {took:?}: not by draining");
        let log = held.logs.text();
        assert!(!log.contains("shutdown grace period over"), "{log}");
        assert_eq!(
            file_counts(&held.out),
            held.truth,
            "every event delivered, once"
        );
        assert_eq!(
            held.committed(),
            held.truth.keys().cloned().collect(),
            "the checkpoint covers exactly the delivered events"
        );
        assert!(batches_committed(&held.metrics) > 0);
        held.emu.shutdown().await;
    }

    /// Reload requests that come while a reload runs are one more reload after it, not
    /// one each; a shutdown during a reload ends `run` as usual. The loader blocks
    /// until the test lets it go, so the requests surely come during a reload.
    #[tokio::test]
    async fn reload_requests_during_a_reload_are_one_more_and_a_shutdown_during_one_drains() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let _serial = SERIAL.lock().await;
        let logs = Logs::capture();
        let (emu, opts) = start_emulator().await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&emu, &opts, dir.path());
        let loads = Arc::new(AtomicUsize::new(0));
        let (gate, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate_rx = std::sync::Mutex::new(gate_rx);
        let load: Loader = {
            let (cfg, loads) = (cfg.clone(), loads.clone());
            Arc::new(move || {
                loads.fetch_add(1, Ordering::SeqCst);
                let _ = gate_rx.lock().unwrap().recv();
                Ok(cfg.clone())
            })
        };
        let (requests, rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let pipeline = tokio::spawn(run_reloading(
            cfg,
            metrics.clone(),
            stop.clone().cancelled_owned(),
            Reloads::on_request(rx, "test.toml".into(), load),
        ));
        let wait_loads = |n: usize| {
            let loads = loads.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                while loads.load(Ordering::SeqCst) < n {
                    assert!(Instant::now() < deadline, "{n} loads");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        let ok = |m: &Metrics| {
            m.config_reloads
                .get_or_create(&crate::metrics::label("result", "ok"))
                .get()
        };
        requests.send(()).unwrap();
        wait_loads(1).await;
        for _ in 0..3 {
            requests.send(()).unwrap();
        }
        // Let the first reload's requests be seen, then let it finish.
        tokio::task::yield_now().await;
        gate.send(()).unwrap();
        wait_loads(2).await;
        gate.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while ok(&metrics) < 2 {
            assert!(Instant::now() < deadline, "two reloads applied");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            2,
            "four requests, two reloads"
        );
        assert!(!pipeline.is_finished());

        // A shutdown while a reload waits for its file.
        requests.send(()).unwrap();
        wait_loads(3).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), pipeline)
            .await
            .expect("run returns after a shutdown during a reload")
            .unwrap()
            .unwrap();
        gate.send(()).unwrap();
        assert_eq!(ok(&metrics), 2);
        let log = logs.text();
        assert!(log.contains("shutdown requested during a reload"), "{log}");
        assert!(log.contains("stopped"), "{log}");
        assert_eq!(
            log.matches("configuration reload requested").count(),
            3,
            "{log}"
        );
        emu.shutdown().await;
    }

    /// A sink that fails for good stops the pipeline (here a TLS sink whose CA file
    /// holds no certificate: a permanent error when the sink starts). `run` returns an
    /// error naming the sink, with no shutdown requested and without waiting out the
    /// grace period (an hour): it returns once every task has, the sources included.
    /// Nothing was delivered, so nothing is committed.
    #[tokio::test]
    async fn a_sink_that_fails_for_good_stops_the_pipeline_with_an_error_naming_it() {
        let _serial = SERIAL.lock().await;
        let (emu, opts) = start_emulator().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "no certificate here\n").unwrap();
        let sink = format!(
            "type = \"tcp\"\nhost = \"127.0.0.1\"\nport = 6514\nformat = \"json\"\n[sinks.out.tls]\nca_file = \"{}\"\n",
            ca.display()
        );
        let cfg = config_with(&emu, &opts, dir.path(), "1h", &sink);
        let truth = truth_of(&emu);
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            run(cfg, Arc::new(Metrics::new()), std::future::pending()),
        )
        .await
        .expect("the pipeline did not stop when its sink failed");
        let err = result.expect_err("a failed sink is an error").to_string();
        assert!(
            err.starts_with("sink `out` failed: invalid tls settings: ca file "),
            "{err}"
        );
        assert!(err.contains(&ca.display().to_string()), "{err}");
        assert!(committed(&dir.path().join("state"), truth.keys()).is_empty());
        emu.shutdown().await;
    }
}
