//! What the source and the sync log tests share: an emulator, a client, a recording
//! sink, a poller run with a deadline.

use c42fwd::api::ApiClient;
use c42fwd::checkpoint::Store;
use c42fwd::config::{ApiGeneration, Credentials, ServiceUrls, Tenant};
use c42fwd::event::SourceKind;
use c42fwd::metrics::Metrics;
use c42fwd::retry::BackoffPolicy;
use c42fwd::route::Route;
use c42fwd::route::SinkBatch;
use c42fwd::secret::Secret;
use c42fwd::sources::{SourceError, WindowFetch, WindowPoller};
use c42fwd_emulator::{self as emulator, EmulatorHandle, EmulatorOptions};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous: debug builds on a shared 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub async fn emulator(opts: EmulatorOptions) -> EmulatorHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    emulator::start(opts, listener)
        .await
        .expect("emulator starts")
}

/// A tenant of the emulator: Incydr with API client credentials, legacy with a user
/// login and TOTP code (and service discovery for the alert service).
pub fn tenant(api: ApiGeneration, emu: &EmulatorHandle, o: &EmulatorOptions) -> Tenant {
    let credentials = match api {
        ApiGeneration::Incydr => Credentials::ApiClient {
            client_id: o.client_id.clone(),
            secret: Secret::new(o.client_secret.clone()),
        },
        ApiGeneration::Legacy => Credentials::User {
            username: o.username.clone(),
            password: Secret::new(o.password.clone()),
            totp: o.totp.clone().map(Secret::new),
        },
    };
    Tenant {
        name: "emulated".into(),
        api,
        base_url: emu.base_url().parse().expect("emulator url"),
        services: ServiceUrls::default(),
        credentials,
        proxy: None,
        request_timeout: Duration::from_secs(30),
        ca_file: None,
        max_response_bytes: c42fwd::config::DEFAULT_MAX_RESPONSE_BYTES,
        max_concurrent_requests: c42fwd::config::DEFAULT_MAX_CONCURRENT_REQUESTS,
    }
}

pub fn client(tenant: &Tenant, metrics: &Arc<Metrics>) -> Arc<ApiClient> {
    Arc::new(
        ApiClient::new(tenant, metrics.clone())
            .expect("client")
            .with_backoff(BackoffPolicy {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(200),
                max_retries: None,
            }),
    )
}

/// One delivered event: raw JSON, occurrence time, kind.
pub type Seen = Arc<Mutex<Vec<(String, DateTime<Utc>, SourceKind)>>>;

/// A sink that records and acknowledges every batch.
pub fn test_sink() -> (Route, Seen, JoinHandle<()>) {
    let (route, seen, _, task) = stalling_sink(usize::MAX);
    (route, seen, task)
}

/// A sink that records and acknowledges its first `batches` batches (counted in the
/// returned counter), then stops reading (its queue fills, the source waits) until
/// its task is aborted, which drops the batches it held unacknowledged.
pub fn stalling_sink(batches: usize) -> (Route, Seen, Arc<AtomicUsize>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<SinkBatch>(4);
    let seen: Seen = Arc::default();
    let out = seen.clone();
    let delivered = Arc::new(AtomicUsize::new(0));
    let count = delivered.clone();
    let task = tokio::spawn(async move {
        let mut n = 0;
        while let Some(sb) = rx.recv().await {
            n += 1;
            if n > batches {
                // Held, neither delivered nor failed, until the task is aborted.
                let _held = sb;
                std::future::pending::<()>().await;
                continue;
            }
            {
                let mut seen = out.lock().unwrap();
                for e in &sb.batch.events {
                    seen.push((e.json().to_string(), e.occurred, e.kind));
                }
            }
            sb.ack.delivered();
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (Route::new(vec![tx]), seen, delivered, task)
}

/// The delivered events that occurred in `[start, end)`, sorted (a multiset).
pub fn in_range(seen: &Seen, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
    let mut v: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, t, _)| *t >= start && *t < end)
        .map(|(s, _, _)| s.clone())
        .collect();
    v.sort();
    v
}

pub fn kinds(seen: &Seen) -> Vec<SourceKind> {
    let mut k: Vec<SourceKind> = seen.lock().unwrap().iter().map(|(_, _, k)| *k).collect();
    k.dedup();
    k
}

pub fn committed_watermark(store: &Store, source: &str) -> Option<DateTime<Utc>> {
    store.load(source).ok().flatten().map(|c| c.watermark)
}

/// The sum of a counter over all its label sets.
pub fn counter(metrics: &Metrics, name: &str) -> u64 {
    super::metrics::metric_sum(&metrics.render(), name, &[]) as u64
}

pub struct Run {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), SourceError>>,
}

/// Starts a poller of fetcher `F` on a task of the test runtime.
pub fn run_source<F: WindowFetch>(
    src: &c42fwd::config::Source,
    client: Arc<ApiClient>,
    store: &Store,
    metrics: Arc<Metrics>,
    route: Route,
) -> Run {
    let poller = WindowPoller::<F>::new(src, client, store.clone(), metrics).expect("poller");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(poller.run(route, shutdown.clone()));
    Run { shutdown, task }
}

impl Run {
    /// Waits until `cond` holds, checking every 50 ms; fails at the deadline, or at
    /// once with the poller's error if the poller stops.
    pub async fn wait_for(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let give_up = tokio::time::Instant::now() + DEADLINE;
        while !cond() {
            if self.task.is_finished() {
                let r = (&mut self.task).await.expect("poller task");
                panic!("the poller stopped while waiting for {what}: {r:?}");
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cancels the poller while its sink stalls, then stops the sink (what the
    /// pipeline's hard stop does): the poller commits the delivered prefix only and
    /// returns `Ok`.
    pub async fn stop_with_stalled_sink(self, sink: JoinHandle<()>) {
        self.shutdown.cancel();
        sink.abort();
        let r = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("poller stops after shutdown")
            .expect("poller task");
        r.expect("poller returns ok on shutdown");
    }

    /// Cancels the poller and checks that it returns `Ok` promptly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("poller stops after shutdown")
            .expect("poller task");
        r.expect("poller returns ok on shutdown");
    }
}
