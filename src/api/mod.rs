//! The Code42 API client for one tenant, both generations (see `docs/api.md`).
//!
//! [`ApiClient`] owns the HTTP client (rustls, the configured proxy or none, the request
//! timeout, an optional extra CA bundle), the access token (obtained on first use,
//! refreshed shortly before it expires and once on a 401), the tenant id (the token's
//! own `tenantUid` claim, else the customer endpoint), and, for legacy tenants, the
//! service discovery of the Audit Log and alert service URLs and the authorization
//! scheme their alert service takes (Bearer, or the `v3_user_token` fallback). Every
//! call goes through one retry loop: 429 (honouring `Retry-After`), 5xx, timeouts and
//! connection errors are retried with the shared [`crate::retry`] backoff; everything
//! else is a typed [`ApiError`] that names the endpoint and carries the server's message.
//!
//! The calls of each data set live in their own file: `audit` (Audit Log search, count,
//! export), `alerts` (`query-alerts`, `query-details`, and the one reshaping of an alert,
//! [`expand_observation_data`]) and `sync_log` (Directory Sync Log). Pages are split into
//! raw records while they arrive (`stream`).
//!
//! **Invariant:** secrets (client secret, password, TOTP code, access token) are put on
//! the wire and nowhere else: they are [`crate::secret::Secret`]s, which never print, and no error,
//! log line or `Debug` output of this module contains one.
//!
//! This module does not decide what to query or when (that is [`crate::sources`]), and
//! does not spawn tasks: a call is a future that can be dropped at any await to cancel.

mod alerts;
mod audit;
mod auth;
pub mod clock;
mod file_events;
pub mod limiter;
mod sessions;
mod stream;
mod sync_log;

pub use alerts::{
    expand_observation_data, AlertDetails, AlertQuery, AlertSummary, AlertsPage, ExpandedAlert,
    MAX_ALERT_PAGE_SIZE, MAX_DETAILS_IDS,
};
pub use audit::{parse_event_time, AuditPage, AuditQuery};
pub use file_events::{
    file_event_id, file_event_inserted, file_event_time_and_id, page_token_refused, FileEventPage,
    FileEventQuery, MAX_FILE_EVENT_PAGE_SIZE,
};
pub use sessions::{SessionKeys, SessionQuery, SessionsPage, MAX_SESSION_PAGE_SIZE};
pub use sync_log::{
    sync_log_entry_time, sync_log_time_param, SyncLogPage, SyncLogQuery, SyncLogTimeBound,
    MAX_SYNC_LOG_PAGE_SIZE,
};

use crate::config::{ApiGeneration, Credentials, ServiceUrls, Tenant};
use crate::metrics::Metrics;
use crate::retry::retry_after;
use crate::retry::BackoffPolicy;
use auth::AccessToken;
use bytes::Bytes;
use chrono::Utc;
use reqwest::header::AUTHORIZATION;
use reqwest::{StatusCode, Url};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

/// Errors of API calls. Each names the endpoint (`POST /v1/audit/search-audit-log`).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot set up the api client for tenant {tenant}: {reason}")]
    Setup { tenant: String, reason: String },
    #[error("{endpoint}: authentication failed with status {status}: {message}")]
    AuthFailed {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint}: unauthorized (401) even with a fresh access token: {message}")]
    Unauthorized { endpoint: String, message: String },
    #[error("{endpoint}: request rejected with status {status}: {message}")]
    Rejected {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint}: rate limited (429)")]
    RateLimited {
        endpoint: String,
        retry_after: Option<Duration>,
    },
    #[error("{endpoint}: server error {status}: {message}")]
    Server {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint}: request timed out")]
    Timeout { endpoint: String },
    #[error("{endpoint}: connection failed: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("{endpoint}: transport error: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("{endpoint}: unexpected response: {reason}")]
    Decode { endpoint: String, reason: String },
    /// The server answered 200 but could not apply the query (the alert service's
    /// `problems`: an operator a term does not take, a value it does not know).
    #[error("{endpoint}: the server cannot apply the query: {problems}")]
    QueryProblems { endpoint: String, problems: String },
    /// The response body held more records than asked for, or more bytes than the
    /// tenant's `max_response_bytes`: the client stopped reading it.
    #[error("{endpoint}: response refused: {reason}")]
    ResponseTooLarge { endpoint: String, reason: String },
}

impl ApiError {
    /// Whether trying the same call again later can succeed (429, 5xx, timeouts,
    /// connection and transport errors). Permanent errors need a human: bad credentials,
    /// a rejected request (400, 403, 404), a response we cannot read.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::Server { .. }
                | ApiError::Timeout { .. }
                | ApiError::Connect { .. }
                | ApiError::Transport { .. }
        )
    }

    /// Whether the response was refused as larger than asked for: the caller can ask
    /// again for less.
    pub fn is_oversized(&self) -> bool {
        matches!(self, ApiError::ResponseTooLarge { .. })
    }

    /// The reason label of `c42fwd_api_retries_total`.
    fn retry_reason(&self) -> &'static str {
        match self {
            ApiError::RateLimited { .. } => "429",
            ApiError::Server { .. } => "5xx",
            ApiError::Timeout { .. } => "timeout",
            ApiError::Connect { .. } => "connect",
            _ => "transport",
        }
    }
}

/// How a call authenticates, which decides what a 401 means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallAuth {
    /// A login endpoint (credentials in the request): a 401 is a permanent failure.
    Login,
    /// Bearer access token: a 401 refreshes the token and retries once.
    Bearer,
    /// The legacy alert service: `Authorization: Bearer <t>` like every other call (what
    /// py42 sends), handled as for `Bearer`; when it answers 401 even to a fresh token,
    /// the same token is tried once as `Authorization: v3_user_token <t>` (the scheme
    /// Code42's older examples show), and if that works the tenant's alert calls use it
    /// from then on (`docs/api-compatibility.md`).
    LegacyAlerts,
}

impl CallAuth {
    /// Whether the call carries the access token (and a 401 may refresh it).
    fn uses_token(self) -> bool {
        matches!(self, CallAuth::Bearer | CallAuth::LegacyAlerts)
    }
}

struct TokenSlot {
    current: Option<AccessToken>,
    /// Bumped at every new token, so that a 401 only discards the token it was sent with.
    generation: u64,
}

/// A client of one tenant's Code42 API. Share it with `Arc`; calls may run concurrently.
pub struct ApiClient {
    tenant: String,
    api: ApiGeneration,
    base_url: Url,
    services: ServiceUrls,
    credentials: Credentials,
    http: reqwest::Client,
    /// The most bytes of one response body read (`max_response_bytes`).
    max_response_bytes: u64,
    backoff: BackoffPolicy,
    metrics: Arc<Metrics>,
    token: Mutex<TokenSlot>,
    tenant_id: OnceCell<String>,
    audit_base: OnceCell<ServiceBase>,
    alerts_base: OnceCell<ServiceBase>,
    /// The legacy alert service refused `Bearer` and took `v3_user_token`: its calls
    /// use that scheme from then on (see [`CallAuth::LegacyAlerts`]).
    alerts_take_v3_user_token: AtomicBool,
    /// The API's clock, from the responses' `Date` headers: the sources' "now".
    clock: Arc<clock::ApiClock>,
    /// The tenant's concurrent data requests (`max_concurrent_requests`, AIMD on 429).
    limiter: limiter::Limiter,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials are left out entirely, not just redacted: nothing to leak.
        f.debug_struct("ApiClient")
            .field("tenant", &self.tenant)
            .field("api", &self.api)
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

/// The default retry policy of API calls: unbounded, like the sinks' (a Code42 outage
/// stalls the source and loses nothing, ARCHITECTURE.md invariant 1); the poller cancels a call
/// by dropping it at shutdown.
pub const DEFAULT_BACKOFF: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(60),
    max_retries: None,
};

impl ApiClient {
    /// Builds the client of `tenant`. Does no network I/O (the first call logs in).
    pub fn new(tenant: &Tenant, metrics: Arc<Metrics>) -> Result<ApiClient, ApiError> {
        let setup = |reason: String| ApiError::Setup {
            tenant: tenant.name.clone(),
            reason,
        };
        if tenant.api == ApiGeneration::Incydr
            && matches!(tenant.credentials, Credentials::User { .. })
        {
            return Err(setup(
                "the incydr api takes api client credentials, not a user login".to_string(),
            ));
        }
        // `timeout` covers the whole exchange, the body included (reqwest wraps the
        // body in the same deadline), so a body that never ends, stalled or still
        // streaming, is cut at `request_timeout`; `read_timeout` ends a stalled one
        // sooner when the request timeout is long.
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("c42fwd/", env!("CARGO_PKG_VERSION")))
            .timeout(tenant.request_timeout)
            .read_timeout(tenant.request_timeout.min(READ_IDLE_TIMEOUT))
            .connect_timeout(tenant.request_timeout.min(Duration::from_secs(30)));
        b = match &tenant.proxy {
            // An explicit proxy, or none at all: the environment's *_PROXY variables are
            // ignored so that what runs is what the config file says.
            Some(p) => b.proxy(
                reqwest::Proxy::all(p.clone())
                    .map_err(|e| setup(format!("invalid proxy url: {}", e.without_url())))?,
            ),
            None => b.no_proxy(),
        };
        if let Some(ca) = &tenant.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| setup(format!("cannot read ca_file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("ca_file {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(setup(format!(
                    "ca_file {} holds no PEM certificate",
                    ca.display()
                )));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| setup(format!("cannot build the http client: {e}")))?;
        Ok(ApiClient {
            tenant: tenant.name.clone(),
            api: tenant.api,
            base_url: tenant.base_url.clone(),
            services: tenant.services.clone(),
            credentials: tenant.credentials.clone(),
            http,
            max_response_bytes: tenant.max_response_bytes,
            backoff: DEFAULT_BACKOFF,
            token: Mutex::new(TokenSlot {
                current: None,
                generation: 0,
            }),
            tenant_id: OnceCell::new(),
            audit_base: OnceCell::new(),
            alerts_base: OnceCell::new(),
            alerts_take_v3_user_token: AtomicBool::new(false),
            clock: Arc::new(clock::ApiClock::new()),
            limiter: limiter::Limiter::new(tenant.max_concurrent_requests)
                .with_metrics(metrics.clone(), &tenant.name),
            metrics,
        })
    }

    /// Replaces the retry policy (tests use short, bounded ones).
    pub fn with_backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.backoff = backoff;
        self
    }

    /// The configured tenant name.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The tenant's limit of concurrent data requests.
    pub fn limiter(&self) -> &limiter::Limiter {
        &self.limiter
    }

    pub fn generation(&self) -> ApiGeneration {
        self.api
    }

    /// The tenant API's clock as estimated from its responses; the sources' windows
    /// end at its "now minus the lag".
    pub fn clock(&self) -> Arc<clock::ApiClock> {
        self.clock.clone()
    }

    /// The tenant id, found once: the access token's own `tenantUid` claim when the
    /// token is a JWT that has one (as the Incydr SDK reads it), else the customer
    /// endpoint (Incydr `GET /v1/customer` -> `tenantId`; legacy
    /// `GET /api/v3/customer/my` -> `data.tenantUid`). An answer without a usable id
    /// is an error that names the endpoint (not retried: the source backs off).
    pub async fn tenant_id(&self) -> Result<String, ApiError> {
        self.tenant_id
            .get_or_try_init(|| async {
                let (token, _) = self.access_token().await?;
                if let Some(id) = auth::jwt_tenant_uid(token.expose()) {
                    tracing::debug!(tenant = %self.tenant, tenant_id = %id, "tenant id from the access token");
                    return Ok(id);
                }
                let (endpoint, path, pointers): (&str, &str, &[&str]) = match self.api {
                    ApiGeneration::Incydr => ("GET /v1/customer", "/v1/customer", &["/tenantId"]),
                    ApiGeneration::Legacy => (
                        "GET /api/v3/customer/my",
                        "/api/v3/customer/my",
                        &["/data/tenantUid", "/tenantUid"],
                    ),
                };
                tracing::info!(
                    tenant = %self.tenant,
                    endpoint,
                    "the access token names no tenant (no tenantUid claim); asking the customer endpoint"
                );
                let url = join(&self.base_url, path);
                let body = self
                    .call(endpoint, CallAuth::Bearer, |c| c.get(url.clone()))
                    .await?;
                let id = json_string_at(endpoint, &body, pointers).map_err(|e| match e {
                    ApiError::Decode { endpoint, reason } => ApiError::Decode {
                        endpoint,
                        reason: format!(
                            "the access token names no tenant and this answer holds none either ({reason}); alert queries need the tenant id"
                        ),
                    },
                    e => e,
                })?;
                if !auth::usable_tenant_id(&id) {
                    return Err(ApiError::Decode {
                        endpoint: endpoint.to_string(),
                        reason: format!(
                            "the tenant id in the answer ({}) is empty or not an id; alert queries need the tenant id",
                            pointers.join(" or ")
                        ),
                    });
                }
                Ok(id)
            })
            .await
            .cloned()
    }

    /// Checks that the credentials work: logs in (or reuses a valid token).
    pub async fn check_login(&self) -> Result<(), ApiError> {
        self.access_token().await.map(|_| ())
    }

    /// One page of a `GET` listing at `path`: the records of the array at `array`, at
    /// most `cap` of them, and the count at `count_key` beside it. A response without
    /// that array is a decode error saying so (`what` names the array).
    #[allow(clippy::too_many_arguments)]
    async fn get_listing(
        &self,
        endpoint: &str,
        path: &str,
        params: &[(&'static str, String)],
        array: &'static [&'static [u8]],
        count_key: &'static [u8],
        cap: usize,
        what: &str,
    ) -> Result<(Vec<Box<serde_json::value::RawValue>>, Option<u64>), ApiError> {
        let url = join(&self.base_url, path);
        let split = self
            .call_reading(
                endpoint,
                CallAuth::Bearer,
                |c| c.get(url.clone()).query(params),
                || {
                    stream::PageSplitter::for_path(array)
                        .counting(count_key)
                        .at_most(cap)
                },
            )
            .await?;
        match split.events {
            Some(records) => Ok((records, split.total_result_count)),
            None => Err(ApiError::Decode {
                endpoint: endpoint.to_string(),
                reason: format!("no {what} array in the response"),
            }),
        }
    }

    // ---- the one request loop ----

    /// Sends a request built by `make` (called again for every attempt), retrying as the
    /// module docs say, and returns the body of the 2xx response.
    async fn call<F>(&self, endpoint: &str, auth: CallAuth, make: F) -> Result<Bytes, ApiError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        self.call_reading(endpoint, auth, make, Collect::default)
            .await
    }

    /// Like [`Self::call`], but the 2xx body is fed chunk by chunk to a fresh reader
    /// from `new_reader` (a broken body is retried like any transport error).
    async fn call_reading<F, R>(
        &self,
        endpoint: &str,
        auth: CallAuth,
        make: F,
        new_reader: impl Fn() -> R,
    ) -> Result<R::Output, ApiError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        R: BodyReader,
    {
        let mut backoff = self.backoff.backoff();
        let mut reauthenticated = false;
        // This call tries `v3_user_token` after `Bearer` failed (CallAuth::LegacyAlerts).
        let mut trying_v3_user_token = false;
        loop {
            let mut request = make(&self.http);
            let mut generation = 0;
            let v3_user_token = auth == CallAuth::LegacyAlerts
                && (trying_v3_user_token || self.alerts_take_v3_user_token.load(Ordering::Relaxed));
            if auth.uses_token() {
                let (token, g) = self.access_token().await?;
                generation = g;
                let scheme = if v3_user_token {
                    "v3_user_token"
                } else {
                    "Bearer"
                };
                request = request.header(AUTHORIZATION, format!("{scheme} {}", token.expose()));
            }
            // A data request waits for a slot under the tenant's limit and holds it
            // while it is sent and its body read (not during a backoff below).
            let asked = Utc::now();
            let permit = if auth.uses_token() {
                Some(self.limiter.acquire().await)
            } else {
                None
            };
            let sent = Utc::now();
            let failure = match request.send().await {
                Ok(resp) => {
                    self.observe_date(sent, resp.headers());
                    let status = resp.status();
                    self.count_request(endpoint, status.as_str());
                    if status.is_success() && trying_v3_user_token {
                        self.remember_v3_user_token(endpoint);
                    }
                    if status.is_success() {
                        let mut reader = new_reader();
                        match read_body(resp, &mut reader, self.max_response_bytes).await {
                            Ok(()) => {
                                tracing::trace!(
                                    tenant = %self.tenant,
                                    endpoint,
                                    waited_ms = (sent - asked).num_milliseconds(),
                                    took_ms = (Utc::now() - sent).num_milliseconds(),
                                    "answered (waited for a slot under the tenant's limit, then sent and read)"
                                );
                                return reader.finish().map_err(|reason| ApiError::Decode {
                                    endpoint: endpoint.to_string(),
                                    reason,
                                });
                            }
                            Err(BodyError::Transport(e)) => transport_error(endpoint, &e),
                            Err(BodyError::Decode(reason)) => {
                                return Err(ApiError::Decode {
                                    endpoint: endpoint.to_string(),
                                    reason,
                                })
                            }
                            Err(BodyError::Oversized { label, reason }) => {
                                self.count_cut(endpoint, label);
                                return Err(ApiError::ResponseTooLarge {
                                    endpoint: endpoint.to_string(),
                                    reason,
                                });
                            }
                        }
                    } else if status == StatusCode::UNAUTHORIZED
                        && auth.uses_token()
                        && !reauthenticated
                    {
                        // The token expired early or was revoked: get a new one, once.
                        reauthenticated = true;
                        self.discard_token(generation).await;
                        self.count_retry("auth");
                        tracing::info!(tenant = %self.tenant, endpoint, "401 with the current access token, logging in again");
                        continue;
                    } else if status == StatusCode::UNAUTHORIZED
                        && auth == CallAuth::LegacyAlerts
                        && !v3_user_token
                    {
                        // 401 to `Bearer` with a fresh token: the older scheme, once.
                        trying_v3_user_token = true;
                        self.count_retry("auth_scheme");
                        tracing::debug!(tenant = %self.tenant, endpoint, "401 to Bearer with a fresh token, trying v3_user_token");
                        continue;
                    } else {
                        let retry_after = retry_after(resp.headers());
                        let (body, cut) = read_error_body(resp).await;
                        if cut {
                            self.count_cut(endpoint, "error_body");
                        }
                        let message = server_message(&body);
                        let endpoint = endpoint.to_string();
                        let status_u16 = status.as_u16();
                        match status {
                            StatusCode::TOO_MANY_REQUESTS => {
                                if permit.is_some() {
                                    let limit = self.limiter.rate_limited();
                                    tracing::debug!(tenant = %self.tenant, limit, "429: concurrent data requests lowered");
                                }
                                ApiError::RateLimited {
                                    endpoint,
                                    retry_after,
                                }
                            }
                            s if s.is_server_error() => ApiError::Server {
                                endpoint,
                                status: status_u16,
                                message,
                            },
                            StatusCode::UNAUTHORIZED if auth.uses_token() => {
                                return Err(ApiError::Unauthorized { endpoint, message })
                            }
                            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                                if auth == CallAuth::Login =>
                            {
                                return Err(ApiError::AuthFailed {
                                    endpoint,
                                    status: status_u16,
                                    message,
                                })
                            }
                            _ => {
                                return Err(ApiError::Rejected {
                                    endpoint,
                                    status: status_u16,
                                    message,
                                })
                            }
                        }
                    }
                }
                Err(e) => {
                    self.count_request(endpoint, "error");
                    transport_error(endpoint, &e)
                }
            };
            drop(permit);
            if !failure.is_retriable() {
                return Err(failure);
            }
            let server_delay = match &failure {
                ApiError::RateLimited { retry_after, .. } => *retry_after,
                _ => None,
            };
            match backoff.next_delay_after(server_delay) {
                Some(delay) => {
                    self.count_retry(failure.retry_reason());
                    tracing::warn!(
                        tenant = %self.tenant,
                        error = %failure,
                        retry_in_ms = delay.as_millis() as u64,
                        attempt = backoff.attempts(),
                        "api call failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                None => return Err(failure),
            }
        }
    }

    /// The legacy alert service took `v3_user_token` after refusing `Bearer`: its calls
    /// use that scheme from now on; said once per tenant.
    fn remember_v3_user_token(&self, endpoint: &str) {
        if !self.alerts_take_v3_user_token.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                tenant = %self.tenant,
                endpoint,
                "the legacy alert service refused Authorization: Bearer and accepted Authorization: v3_user_token; this tenant's alert calls use v3_user_token from now on"
            );
        }
    }

    /// Takes the response's `Date` into the clock estimate; logs a skew that appears or
    /// goes.
    fn observe_date(&self, sent: chrono::DateTime<Utc>, headers: &reqwest::header::HeaderMap) {
        let Some(date) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(clock::parse_http_date)
        else {
            return;
        };
        let skew = self.clock.observe(sent, Utc::now(), date);
        let offset = self.clock.offset();
        self.metrics
            .api_clock_offset
            .get_or_create(&vec![("tenant", self.tenant.clone())])
            .set(offset.num_milliseconds() as f64 / 1000.0);
        match skew {
            clock::Skew::Unchanged => {}
            clock::Skew::Appeared(o) => tracing::warn!(
                tenant = %self.tenant,
                offset_s = o.num_milliseconds() as f64 / 1000.0,
                "the api's clock is {} this host's (from its Date headers): query windows follow the api's clock, so no event is skipped, but this host's time is wrong or the api's is; check time sync (NTP)",
                clock::describe(o)
            ),
            clock::Skew::Gone(o) => tracing::info!(
                tenant = %self.tenant,
                offset_s = o.num_milliseconds() as f64 / 1000.0,
                "the api's clock agrees with this host's again"
            ),
        }
    }

    fn count_request(&self, endpoint: &str, status: &str) {
        self.metrics
            .api_requests
            .get_or_create(&vec![
                ("tenant", self.tenant.clone()),
                ("endpoint", endpoint.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    fn count_cut(&self, endpoint: &str, reason: &'static str) {
        self.metrics
            .api_responses_cut
            .get_or_create(&vec![
                ("tenant", self.tenant.clone()),
                ("endpoint", endpoint.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    fn count_retry(&self, reason: &'static str) {
        self.metrics
            .api_retries
            .get_or_create(&vec![
                ("tenant", self.tenant.clone()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }
}

/// Consumes a response body as it arrives.
trait BodyReader {
    type Output;
    fn feed(&mut self, chunk: &[u8]) -> Result<(), String>;
    fn finish(self) -> Result<Self::Output, String>;
    /// Past how many records the reader refuses the body, once it holds more.
    fn too_many(&self) -> Option<usize> {
        None
    }
}

/// Keeps the whole body (small responses: tokens, tenant, discovery, counts).
#[derive(Default)]
struct Collect(Vec<u8>);

impl BodyReader for Collect {
    type Output = Bytes;
    fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.0.extend_from_slice(chunk);
        Ok(())
    }
    fn finish(self) -> Result<Bytes, String> {
        Ok(Bytes::from(self.0))
    }
}

/// For the benches only (`benches/encode.rs`): splits a `/v2/file-events` response
/// body handed over in `chunk`-byte pieces, as a response is read; the events cut out.
#[doc(hidden)]
pub fn bench_split_file_events(body: &[u8], chunk: usize) -> Result<usize, String> {
    let mut s = file_events::splitter(usize::MAX);
    for piece in body.chunks(chunk.max(1)) {
        s.feed(piece)?;
    }
    Ok(s.finish()?.events.map_or(0, |e| e.len()))
}

impl BodyReader for stream::PageSplitter {
    type Output = stream::SplitPage;
    fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        stream::PageSplitter::feed(self, chunk)
    }
    fn finish(self) -> Result<stream::SplitPage, String> {
        stream::PageSplitter::finish(self)
    }
    fn too_many(&self) -> Option<usize> {
        stream::PageSplitter::too_many(self)
    }
}

/// How long a response body may send nothing before the read fails (when the
/// tenant's `request_timeout` is longer).
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes of a non-2xx body read for its message; the rest is never read.
pub const MAX_ERROR_BODY: usize = 4 * 1024;

enum BodyError {
    Transport(reqwest::Error),
    Decode(String),
    /// Refused as larger than asked for; `label` is the reason label of
    /// `c42fwd_api_responses_cut_total`.
    Oversized {
        label: &'static str,
        reason: String,
    },
}

/// Feeds a 2xx body to `reader`, stopping (and dropping the connection) as soon as it
/// holds more than `max_bytes`, or more records than the reader accepts: memory stays
/// bounded whatever the server sends.
async fn read_body<R: BodyReader>(
    mut resp: reqwest::Response,
    reader: &mut R,
    max_bytes: u64,
) -> Result<(), BodyError> {
    let mut read: u64 = 0;
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        read = read.saturating_add(chunk.len() as u64);
        if read > max_bytes {
            return Err(BodyError::Oversized {
                label: "size",
                reason: format!("the body is larger than max_response_bytes ({max_bytes})"),
            });
        }
        reader.feed(&chunk).map_err(BodyError::Decode)?;
        if let Some(max) = reader.too_many() {
            return Err(BodyError::Oversized {
                label: "records",
                reason: format!("it holds more than {max} records"),
            });
        }
    }
    Ok(())
}

/// The first [`MAX_ERROR_BODY`] bytes of an error body (what its message needs), and
/// whether there was more. A body that breaks off or stalls yields what came.
async fn read_error_body(mut resp: reqwest::Response) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ERROR_BODY - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return (body, true);
        }
        body.extend_from_slice(&chunk);
    }
    (body, false)
}

/// Reads a time as the APIs write it: an ISO-8601 string (any number of fractional
/// digits: audit events carry up to nanoseconds, alerts 7 digits) or epoch seconds. `text`
/// is the JSON text of the value; the error says why it is not a time.
pub(crate) fn parse_time_value(text: &str) -> Result<chrono::DateTime<Utc>, String> {
    if text.starts_with('"') {
        let v: String = serde_json::from_str(text).map_err(|e| format!("timestamp {text}: {e}"))?;
        chrono::DateTime::parse_from_rfc3339(&v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("timestamp {v:?} is not ISO-8601: {e}"))
    } else if let Ok(secs) = text.parse::<f64>() {
        let whole = secs.floor();
        let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
        chrono::DateTime::from_timestamp(whole as i64, nanos)
            .ok_or_else(|| format!("timestamp {text} is out of range"))
    } else {
        Err(format!("timestamp {text} is neither a string nor a number"))
    }
}

/// The URL of `path` (absolute, starting with `/`) on `base`: appended to a URL the
/// user wrote, joined like `urljoin` on a URL the API discovered (see [`ServiceBase`]).
fn join<B: JoinPath + ?Sized>(base: &B, path: &str) -> String {
    base.join_path(path)
}

/// How an absolute path is put on a base URL.
trait JoinPath {
    fn join_path(&self, path: &str) -> String;
}

/// A URL from the configuration (`base_url`, `services.*`): `path` is appended, whatever
/// trailing slash it has, so a base URL with a path of its own (a gateway behind a
/// prefix) keeps it.
impl JoinPath for Url {
    fn join_path(&self, path: &str) -> String {
        format!("{}{}", self.as_str().trim_end_matches('/'), path)
    }
}

/// The base URL of a legacy service: written in the configuration (appended to, like
/// every configured URL), or discovered from the API (joined the way the official client
/// joins it, `docs/api.md`: an absolute path replaces the base's path and query).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ServiceBase {
    Configured(Url),
    Discovered(Url),
}

impl JoinPath for ServiceBase {
    fn join_path(&self, path: &str) -> String {
        match self {
            ServiceBase::Configured(u) => u.join_path(path),
            ServiceBase::Discovered(u) => url_join_absolute(u, path).to_string(),
        }
    }
}

/// `urllib.parse.urljoin(base, path)` for an absolute `path` (starting with one `/`):
/// the scheme, user info, host and port of `base`, the path and query of `path`; the
/// path, query and fragment of `base` are dropped. `Url::join` has exactly these
/// semantics for such a path, and cannot fail on a base that has a host.
fn url_join_absolute(base: &Url, path: &str) -> Url {
    debug_assert!(path.starts_with('/') && !path.starts_with("//"));
    // Only a base without a host (`mailto:x`) cannot be joined, and `discovered_url`
    // never yields one; such a base is kept as it is.
    base.join(path).unwrap_or_else(|_| base.clone())
}

/// A URL as the official client reads it from the discovery answers: the text as it
/// came (surrounding white space and quotes aside), with `https://` in front when it
/// names neither `http://` nor `https://`. Only http(s) URLs with a host are taken.
fn discovered_url(text: &str) -> Result<Url, String> {
    let text = text.trim().trim_matches('"').trim();
    if text.is_empty() {
        return Err("the answer is empty".to_string());
    }
    let with_scheme = if text.starts_with("http://") || text.starts_with("https://") {
        text.to_string()
    } else {
        format!("https://{text}")
    };
    let u = Url::parse(&with_scheme).map_err(|e| format!("{text:?} is not a url: {e}"))?;
    if !matches!(u.host_str(), Some(h) if !h.is_empty()) {
        return Err(format!("{text:?} names no host"));
    }
    Ok(u)
}

fn transport_error(endpoint: &str, e: &reqwest::Error) -> ApiError {
    let endpoint = endpoint.to_string();
    // `without_url`: the endpoint already names the call, and a URL is not ours to print.
    let reason = error_chain(e);
    if e.is_timeout() {
        ApiError::Timeout { endpoint }
    } else if e.is_connect() {
        ApiError::Connect { endpoint, reason }
    } else if e.is_builder() {
        ApiError::Decode { endpoint, reason }
    } else {
        ApiError::Transport { endpoint, reason }
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut out = String::new();
    let mut cur: Option<&dyn std::error::Error> = e.source();
    while let Some(err) = cur {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&err.to_string());
        cur = err.source();
    }
    if out.is_empty() {
        // reqwest's own Display names the URL; keep only its kind.
        out = if e.is_body() {
            "error reading the response body".to_string()
        } else if e.is_decode() {
            "error decoding the response body".to_string()
        } else {
            "request failed".to_string()
        };
    }
    out
}

/// The server's explanation of an error, short: a JSON `message` / `error` /
/// `description` field, or the start of the text.
fn server_message(body: &[u8]) -> String {
    const MAX: usize = 300;
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in [
            "message",
            "error_description",
            "error",
            "description",
            "detail",
        ] {
            if let Some(s) = v.get(key).and_then(|x| x.as_str()) {
                return truncate(s, MAX);
            }
        }
        if let Some(p) = v.get("problems").filter(|p| !p.is_null()) {
            return truncate(&p.to_string(), MAX);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty response body)".to_string()
    } else {
        truncate(text, MAX)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The first string found at one of the JSON pointers.
fn json_string_at(endpoint: &str, body: &[u8], pointers: &[&str]) -> Result<String, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::Decode {
        endpoint: endpoint.to_string(),
        reason: format!("not json: {e}"),
    })?;
    pointers
        .iter()
        .find_map(|p| v.pointer(p).and_then(|x| x.as_str()))
        .map(str::to_string)
        .ok_or_else(|| ApiError::Decode {
            endpoint: endpoint.to_string(),
            reason: format!("no {} in the response", pointers.join(" or ")),
        })
}

/// The key-value store of a legacy tenant, given `stsBaseUrl`: the official client's rule
/// (replace the first `sts` of the whole text with `simple-key-value-store`, then read it
/// as [`discovered_url`] does).
fn key_value_store_url(sts_base_url: &str) -> Result<Url, String> {
    discovered_url(&sts_base_url.replacen("sts", "simple-key-value-store", 1))
}

/// The key-value store URL of `key`: `/v1/<key>` joined onto the store's URL.
fn key_value_url(store: &Url, key: &str) -> Url {
    url_join_absolute(store, &format!("/v1/{key}"))
}

impl ApiClient {
    /// The base URL of the Audit Log service (legacy): the configured
    /// `services.audit_log`, else service discovery (fetched once).
    async fn audit_base(&self) -> Result<&ServiceBase, ApiError> {
        self.audit_base
            .get_or_try_init(|| self.service_base(&self.services.audit_log, "AUDIT-LOG_API-URL"))
            .await
    }

    /// A legacy service's base: the URL configured for it (used as written: paths are
    /// appended), else the one `key` discovers (paths are joined onto it).
    async fn service_base(
        &self,
        configured: &Option<Url>,
        key: &str,
    ) -> Result<ServiceBase, ApiError> {
        if self.api == ApiGeneration::Incydr {
            return Ok(ServiceBase::Configured(self.base_url.clone()));
        }
        if let Some(u) = configured {
            return Ok(ServiceBase::Configured(u.clone()));
        }
        self.discover_service(key)
            .await
            .map(ServiceBase::Discovered)
    }

    /// Legacy service discovery, as the official client does it (`docs/api.md`):
    /// `GET /api/v1/ServerEnv` -> `stsBaseUrl`; its first `sts` replaced by
    /// `simple-key-value-store` is the key-value store; `GET /v1/<key>` joined onto it
    /// (no token, `Accept: */*`) answers the service's base URL in plain text.
    async fn discover_service(&self, key: &str) -> Result<Url, ApiError> {
        const ENV: &str = "GET /api/v1/ServerEnv";
        let url = join(&self.base_url, "/api/v1/ServerEnv");
        let body = self
            .call(ENV, CallAuth::Bearer, |c| c.get(url.clone()))
            .await?;
        let sts = json_string_at(ENV, &body, &["/stsBaseUrl", "/data/stsBaseUrl"])?;
        let store = key_value_store_url(&sts).map_err(|reason| ApiError::Decode {
            endpoint: ENV.to_string(),
            reason: format!("stsBaseUrl: {reason}"),
        })?;
        let endpoint = format!("GET {{simple-key-value-store}}/v1/{key}");
        let url = key_value_url(&store, key);
        let body = self
            .call(&endpoint, CallAuth::Login, |c| {
                c.get(url.clone()).header(reqwest::header::ACCEPT, "*/*")
            })
            .await?;
        let found =
            discovered_url(&String::from_utf8_lossy(&body)).map_err(|reason| ApiError::Decode {
                endpoint: endpoint.clone(),
                reason,
            })?;
        tracing::info!(tenant = %self.tenant, service = key, url = %found, "discovered service url");
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_message_prefers_json_fields_and_truncates() {
        assert_eq!(server_message(br#"{"message":"bad date"}"#), "bad date");
        assert_eq!(
            server_message(br#"{"error":"invalid_client"}"#),
            "invalid_client"
        );
        assert_eq!(server_message(b""), "(empty response body)");
        let long = "x".repeat(1000);
        assert_eq!(server_message(long.as_bytes()).len(), 303);
    }

    /// The key-value store URL of `key` for a `stsBaseUrl`, as text.
    fn kv(sts: &str, key: &str) -> String {
        key_value_url(&key_value_store_url(sts).unwrap(), key).to_string()
    }

    #[test]
    fn key_value_store_replaces_the_first_sts_and_joins_v1_key() {
        assert_eq!(
            kv("https://sts-east.us.code42.com", "AUDIT-LOG_API-URL"),
            "https://simple-key-value-store-east.us.code42.com/v1/AUDIT-LOG_API-URL"
        );
        // A path in stsBaseUrl is replaced by `/v1/<key>`, with or without its `sts`.
        assert_eq!(
            kv("http://127.0.0.1:9/sts", "AlertService-API_URL"),
            "http://127.0.0.1:9/v1/AlertService-API_URL"
        );
        assert_eq!(
            kv("https://sts.example.com/some/path/", "FedObserver-API_URL"),
            "https://simple-key-value-store.example.com/v1/FedObserver-API_URL"
        );
        // Only the first `sts`, wherever it is, as the official client does it: the
        // host `hosts.example.com` loses its own `sts`, the path keeps its one.
        assert_eq!(
            key_value_store_url("http://hosts.example.com/sts")
                .unwrap()
                .as_str(),
            "http://hosimple-key-value-store.example.com/sts"
        );
        // No scheme: https, as the official client assumes.
        assert_eq!(
            kv("sts-east.us.code42.com", "AUDIT-LOG_API-URL"),
            "https://simple-key-value-store-east.us.code42.com/v1/AUDIT-LOG_API-URL"
        );
        // A query of the base goes away with its path.
        assert_eq!(
            kv("https://sts.example.com/x?a=b#f", "K"),
            "https://simple-key-value-store.example.com/v1/K"
        );
        // No `sts` at all: the URL as it is.
        assert_eq!(
            kv("https://console.example.com:4285/", "K"),
            "https://console.example.com:4285/v1/K"
        );
    }

    #[test]
    fn discovered_service_urls_lose_their_path() {
        let d = |text: &str, path: &str| {
            join(
                &ServiceBase::Discovered(discovered_url(text).unwrap()),
                path,
            )
        };
        let search = "/rpc/search/search-audit-log";
        assert_eq!(
            d("https://audit-log-east.us.code42.com", search),
            "https://audit-log-east.us.code42.com/rpc/search/search-audit-log"
        );
        assert_eq!(
            d("http://127.0.0.1:9/audit-log", search),
            "http://127.0.0.1:9/rpc/search/search-audit-log"
        );
        assert_eq!(
            d(
                "http://127.0.0.1:9/alert-service/",
                "/svc/api/v1/query-alerts"
            ),
            "http://127.0.0.1:9/svc/api/v1/query-alerts"
        );
        assert_eq!(
            d("https://h.example.com/a/b?x=1#y", search),
            "https://h.example.com/rpc/search/search-audit-log"
        );
        // Plain text as it comes: a line end, quotes, no scheme, a port, user info.
        assert_eq!(
            d("\"https://h.example.com\"\n", search),
            "https://h.example.com/rpc/search/search-audit-log"
        );
        assert_eq!(
            d(
                "alert-service-east.us.code42.com",
                "/svc/api/v1/query-alerts"
            ),
            "https://alert-service-east.us.code42.com/svc/api/v1/query-alerts"
        );
        assert_eq!(
            d("https://u:p@h.example.com:8443/x", search),
            "https://u:p@h.example.com:8443/rpc/search/search-audit-log"
        );
    }

    #[test]
    fn discovered_urls_must_name_a_host() {
        for bad in ["", "  \n", "\"\"", "https://", "https://exa mple.com"] {
            let err = discovered_url(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn urljoin_of_an_absolute_path() {
        let j = |b: &str, p: &str| url_join_absolute(&Url::parse(b).unwrap(), p).to_string();
        assert_eq!(j("http://h", "/a"), "http://h/a");
        assert_eq!(j("http://h/", "/a"), "http://h/a");
        assert_eq!(j("http://h/x/y", "/a/b"), "http://h/a/b");
        assert_eq!(j("http://h/x/y/", "/a"), "http://h/a");
        assert_eq!(
            j("http://h:81/x?q=1#f", "/a?grant=1"),
            "http://h:81/a?grant=1"
        );
    }

    #[test]
    fn configured_urls_are_appended_to() {
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(join(&u, "/v1/oauth"), "http://127.0.0.1:8080/v1/oauth");
        let u = Url::parse("http://h/base/").unwrap();
        assert_eq!(join(&u, "/rpc/x"), "http://h/base/rpc/x");
        let c = ServiceBase::Configured(Url::parse("https://h/audit-log").unwrap());
        assert_eq!(
            join(&c, "/rpc/search/search-audit-log"),
            "https://h/audit-log/rpc/search/search-audit-log"
        );
    }

    fn tenant(api: ApiGeneration, credentials: Credentials) -> Tenant {
        Tenant {
            name: "acme".into(),
            api,
            base_url: Url::parse("http://127.0.0.1:9").unwrap(),
            services: ServiceUrls::default(),
            credentials,
            proxy: None,
            request_timeout: Duration::from_secs(5),
            ca_file: None,
            max_response_bytes: crate::config::DEFAULT_MAX_RESPONSE_BYTES,
            max_concurrent_requests: crate::config::DEFAULT_MAX_CONCURRENT_REQUESTS,
        }
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let t = tenant(
            ApiGeneration::Legacy,
            Credentials::User {
                username: "admin".into(),
                password: crate::secret::Secret::new("hunter2"),
                totp: Some(crate::secret::Secret::new("123456")),
            },
        );
        let c = ApiClient::new(&t, Arc::new(Metrics::new())).unwrap();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("acme"), "{dbg}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("123456"), "{dbg}");
    }

    #[test]
    fn incydr_refuses_a_user_login() {
        let t = tenant(
            ApiGeneration::Incydr,
            Credentials::User {
                username: "admin".into(),
                password: crate::secret::Secret::new("hunter2"),
                totp: None,
            },
        );
        let err = ApiClient::new(&t, Arc::new(Metrics::new())).unwrap_err();
        assert!(err.to_string().contains("tenant acme"), "{err}");
        assert!(!err.is_retriable());
    }

    #[test]
    fn retriable_classification() {
        let e = |x: ApiError| x.is_retriable();
        let ep = || "POST /x".to_string();
        assert!(e(ApiError::RateLimited {
            endpoint: ep(),
            retry_after: None
        }));
        assert!(e(ApiError::Server {
            endpoint: ep(),
            status: 503,
            message: String::new()
        }));
        assert!(e(ApiError::Timeout { endpoint: ep() }));
        assert!(!e(ApiError::Rejected {
            endpoint: ep(),
            status: 400,
            message: String::new()
        }));
        assert!(!e(ApiError::Unauthorized {
            endpoint: ep(),
            message: String::new()
        }));
        assert!(!e(ApiError::AuthFailed {
            endpoint: ep(),
            status: 401,
            message: String::new()
        }));
    }
}
