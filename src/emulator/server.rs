//! The emulator's HTTP routes (axum), both API generations.
//!
//! Owns the request/response shapes of every emulated endpoint, the order in which a
//! request is judged (count it, inject a fault, check the token, then serve) and the
//! emulator's clock. It does not generate events (`events`), select them (`query`) nor
//! lay out bodies (`render`).

use super::auth::{self, TokenIssuer};
use super::events::Generator;
use super::faults::{FaultState, Injected};
use super::query::{parse_query, Query, Selection};
use super::render::{self, EventChunks, Format};
use super::timeline::{Timeline, NANOS_PER_SEC};
use super::EmulatorOptions;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The emulator's clock: its start time plus the real time elapsed plus whatever tests
/// added with `advance`. `tokio::time::Instant`, so a paused test runtime pauses it too.
pub(crate) struct Clock {
    start_ns: i64,
    origin: tokio::time::Instant,
    offset_ns: AtomicI64,
}

impl Clock {
    fn new(start_ns: i64) -> Self {
        Clock {
            start_ns,
            origin: tokio::time::Instant::now(),
            offset_ns: AtomicI64::new(0),
        }
    }

    pub(crate) fn now_ns(&self) -> i64 {
        let elapsed = i64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(i64::MAX);
        self.start_ns
            .saturating_add(elapsed)
            .saturating_add(self.offset_ns.load(Ordering::SeqCst))
    }

    pub(crate) fn advance(&self, by: Duration) {
        let ns = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        let _ = self
            .offset_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                Some(o.saturating_add(ns))
            });
    }
}

/// Shared state of one emulator instance.
pub(crate) struct Emulator {
    pub(crate) gen: Arc<Generator>,
    pub(crate) clock: Clock,
    pub(crate) faults: FaultState,
    tokens: TokenIssuer,
    /// Signs download tokens of `/v1/audit/export` (a different key than bearer tokens).
    download_key: u64,
    nonce: AtomicU64,
    opts: EmulatorOptions,
    local: SocketAddr,
}

impl Emulator {
    pub(crate) fn new(opts: EmulatorOptions, local: SocketAddr) -> Self {
        let start_ns = opts
            .start_time
            .and_then(|t| t.timestamp_nanos_opt())
            .unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
        let dur_ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let timeline = Timeline::new(
            opts.seed,
            start_ns,
            opts.backlog,
            dur_ns(opts.backlog_span),
            opts.rate,
            dur_ns(opts.lag),
        );
        Emulator {
            gen: Arc::new(Generator::new(opts.seed, timeline)),
            clock: Clock::new(start_ns),
            faults: FaultState::new(opts.faults.clone()),
            tokens: TokenIssuer::new(fastrand::u64(..), opts.tenant_id.clone()),
            download_key: fastrand::u64(..),
            nonce: AtomicU64::new(fastrand::u64(..)),
            opts,
            local,
        }
    }

    fn now_s(&self) -> i64 {
        self.clock.now_ns().div_euclid(NANOS_PER_SEC)
    }

    fn issue_token(&self, subject: &str) -> String {
        self.faults.count_token();
        let ttl = self.opts.token_ttl.as_secs().max(1) as i64;
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
        self.tokens.issue(subject, self.now_s(), ttl, nonce)
    }

    /// Counts the request, injects a fault if one is due, and checks the bearer token of
    /// protected routes. `Err` is the response to send instead of serving.
    fn admit(
        &self,
        route: &'static str,
        headers: &HeaderMap,
        protected: bool,
    ) -> Result<(), Refused> {
        match self.faults.on_request(route, protected) {
            Some(Injected::RateLimited { retry_after_s }) => {
                let mut r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate limit exceeded, retry later",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
                return Err(Box::new(r));
            }
            Some(Injected::ServerError) => {
                return Err(Box::new(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error (injected)",
                )))
            }
            Some(Injected::Unauthorized) => {
                return Err(Box::new(
                    self.unauthorized("bearer token rejected (injected)"),
                ))
            }
            None => {}
        }
        if protected {
            let checked = auth::bearer(header_str(headers, header::AUTHORIZATION.as_str()))
                .and_then(|t| self.tokens.verify(t, self.now_s()));
            if let Err(e) = checked {
                return Err(Box::new(self.unauthorized(e.message())));
            }
        }
        Ok(())
    }

    fn unauthorized(&self, message: &str) -> Response {
        self.faults.count_unauthorized();
        let mut r = error(StatusCode::UNAUTHORIZED, message);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }

    fn credentials_ok(&self, id: &str, secret: &str) -> bool {
        id == self.opts.client_id && auth::same_secret(secret, &self.opts.client_secret)
    }

    fn selection(&self, q: &Query, now_ns: i64) -> Selection {
        Selection::new(self.gen.clone(), q, now_ns)
    }

    /// A streamed body of selected events; counts them as served.
    fn stream(
        &self,
        sel: Selection,
        skip: u64,
        limit: u64,
        format: Format,
        prefix: String,
        suffix: render::Suffix,
    ) -> Response {
        let chunks = EventChunks::new(sel, skip, limit, format, prefix, suffix);
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
    }

    /// The root URL clients reach us by: the `Host` they used, unless it contains "sts"
    /// (py42 replaces the FIRST "sts" of the discovery URL, which must be the path
    /// segment), then our socket address.
    fn root(&self, headers: &HeaderMap) -> String {
        match header_str(headers, header::HOST.as_str()) {
            Some(h) if !h.is_empty() && !h.to_ascii_lowercase().contains("sts") => {
                format!("http://{h}")
            }
            _ => {
                let ip = match self.local.ip() {
                    ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
                    ip => ip,
                };
                format!("http://{}", SocketAddr::new(ip, self.local.port()))
            }
        }
    }
}

type St = State<Arc<Emulator>>;

/// The response sent instead of serving a request (boxed: refusals are the cold path
/// and a `Response` is large).
type Refused = Box<Response>;

/// All routes of both generations.
pub(crate) fn router(state: Arc<Emulator>) -> Router {
    Router::new()
        // Generation 2: the Incydr gateway.
        .route("/v1/oauth", post(v2_oauth))
        .route("/v1/customer", get(v2_customer))
        .route("/v1/audit/search-audit-log", post(v2_search))
        .route("/v1/audit/search-results-count", post(v2_count))
        .route("/v1/audit/search-results-export", post(v2_export))
        .route("/v1/audit/export", post(v2_export_token))
        .route("/v1/audit/redeem-download-token", get(v2_redeem))
        // Generation 1: legacy services (py42 / code42cli).
        .route("/api/v3/auth/jwt", get(v1_jwt))
        .route("/c42api/v3/auth/jwt", get(v1_jwt_old))
        .route("/api/v3/oauth/token", post(v1_oauth))
        .route("/api/v3/customer/my", get(v1_customer))
        .route("/c42api/v3/customer/my", get(v1_customer_old))
        .route("/api/v1/ServerEnv", get(v1_server_env))
        .route("/simple-key-value-store/v1/{key}", get(v1_kv))
        .route("/audit-log/rpc/search/search-audit-log", post(v1_search))
        .route(
            "/audit-log/rpc/search/search-results-export",
            post(v1_export),
        )
        .fallback(not_found)
        .with_state(state)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        serde_json::json!({
            "status": status.as_u16(),
            "error": status.canonical_reason().unwrap_or("error"),
            "message": message,
        }),
    )
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint on the code42 emulator",
    )
}

// ---------------------------------------------------------------- generation 2

/// `POST /v1/oauth`: client credentials as HTTP Basic or form fields.
async fn v2_oauth(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = st.admit("/v1/oauth", &headers, false) {
        return *r;
    }
    let form: HashMap<String, String> = serde_urlencoded_pairs(&body);
    if let Some(g) = form.get("grant_type") {
        if g != "client_credentials" {
            return bad_request("unsupported grant_type; expected client_credentials");
        }
    }
    let creds = auth::basic(header_str(&headers, header::AUTHORIZATION.as_str())).or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    });
    match creds {
        Some((id, secret)) if st.credentials_ok(&id, &secret) => {
            let token = st.issue_token(&id);
            json_response(
                StatusCode::OK,
                serde_json::json!({
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": st.opts.token_ttl.as_secs().max(1),
                }),
            )
        }
        _ => st.unauthorized("invalid client credentials"),
    }
}

/// Parses an `application/x-www-form-urlencoded` body (no dependency for one form).
fn serde_urlencoded_pairs(body: &[u8]) -> HashMap<String, String> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let decode = |s: &[u8]| -> String {
        let mut out = Vec::with_capacity(s.len());
        let mut k = 0;
        while k < s.len() {
            let escaped = match (s[k], s.get(k + 1), s.get(k + 2)) {
                (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
                _ => None,
            };
            match (escaped, s[k]) {
                (Some(v), _) => {
                    out.push(v);
                    k += 3;
                    continue;
                }
                (None, b'+') => out.push(b' '),
                (None, b) => out.push(b),
            }
            k += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(eq) => (decode(&p[..eq]), decode(&p[eq + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

async fn v2_customer(State(st): St, headers: HeaderMap) -> Response {
    if let Err(r) = st.admit("/v1/customer", &headers, true) {
        return *r;
    }
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "name": "Emulated Tenant",
            "registrationKey": "EMUL-ATED-TENA-NT01",
            "tenantId": st.opts.tenant_id,
        }),
    )
}

fn parse(st: &Emulator, body: &[u8]) -> Result<Query, Refused> {
    parse_query(body, &st.gen).map_err(|e| Box::new(bad_request(&e)))
}

async fn v2_search(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = st.admit("/v1/audit/search-audit-log", &headers, true) {
        return *r;
    }
    let q = match parse(&st, &body) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let limit = st.opts.search_limit as u64;
    if q.page_size > limit {
        return bad_request(&format!(
            "pageSize must be at most {limit}, got {}",
            q.page_size
        ));
    }
    let sel = st.selection(&q, st.clock.now_ns());
    // The gateway's quirk: a page reaching past the result window has no `events`,
    // only the total.
    if (q.page + 1).saturating_mul(q.page_size) > limit {
        return json_response(
            StatusCode::OK,
            serde_json::json!({"totalResultCount": sel.count()}),
        );
    }
    let start = q.page * q.page_size;
    let format = Format::from_accept(header_str(&headers, header::ACCEPT.as_str()));
    match format {
        Format::Json => st.stream(
            sel,
            start,
            q.page_size,
            format,
            "{\"events\":[".into(),
            counted(&st, render::pagination_suffix(start)),
        ),
        _ => st.stream(
            sel,
            start,
            q.page_size,
            Format::Csv,
            render::CSV_HEADER.into(),
            counted(&st, render::fixed_suffix("")),
        ),
    }
}

/// Wraps a suffix so the number of events written lands in the statistics.
fn counted(st: &Arc<Emulator>, inner: render::Suffix) -> render::Suffix {
    let st = st.clone();
    Box::new(move |n| {
        st.faults.count_events(n);
        inner(n)
    })
}

async fn v2_count(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = st.admit("/v1/audit/search-results-count", &headers, true) {
        return *r;
    }
    let q = match parse(&st, &body) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let n = st.selection(&q, st.clock.now_ns()).count();
    json_response(StatusCode::OK, serde_json::json!({"totalResultCount": n}))
}

/// The export limit check both generations share: counts first, refuses with 400.
fn export_selection(st: &Emulator, q: &Query, now_ns: i64) -> Result<Selection, Refused> {
    let sel = st.selection(q, now_ns);
    let n = sel.count();
    let limit = st.opts.export_limit as u64;
    if n > limit {
        return Err(Box::new(bad_request(&format!(
            "export of {n} results exceeds the limit of {limit}; narrow the date range or filters"
        ))));
    }
    Ok(sel)
}

async fn v2_export(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = st.admit("/v1/audit/search-results-export", &headers, true) {
        return *r;
    }
    let q = match parse(&st, &body) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let sel = match export_selection(&st, &q, st.clock.now_ns()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match Format::from_accept(header_str(&headers, header::ACCEPT.as_str())) {
        Format::Json => st.stream(
            sel,
            0,
            u64::MAX,
            Format::Json,
            "{\"events\":[".into(),
            counted(&st, render::fixed_suffix("]}")),
        ),
        _ => st.stream(
            sel,
            0,
            u64::MAX,
            Format::Csv,
            render::CSV_HEADER.into(),
            counted(&st, render::fixed_suffix("")),
        ),
    }
}

/// `POST /v1/audit/export`: the download token carries the search and the time it was
/// asked, signed, so redeeming it later returns what was visible then.
async fn v2_export_token(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = st.admit("/v1/audit/export", &headers, true) {
        return *r;
    }
    let q = match parse(&st, &body) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let now = st.clock.now_ns();
    if let Err(r) = export_selection(&st, &q, now) {
        return *r;
    }
    let mut token = URL_SAFE_NO_PAD.encode(&body);
    token.push('.');
    token.push_str(&now.to_string());
    let sig = xxhash_rust::xxh3::xxh3_64_with_seed(token.as_bytes(), st.download_key);
    token.push('.');
    token.push_str(&format!("{sig:016x}"));
    json_response(StatusCode::OK, serde_json::json!({"downloadToken": token}))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RedeemParams {
    download_token: Option<String>,
}

async fn v2_redeem(
    State(st): St,
    headers: HeaderMap,
    UrlQuery(p): UrlQuery<RedeemParams>,
) -> Response {
    if let Err(r) = st.admit("/v1/audit/redeem-download-token", &headers, true) {
        return *r;
    }
    let Some(token) = p.download_token else {
        return bad_request("missing downloadToken query parameter");
    };
    let decoded = (|| {
        let (signed, sig) = token.rsplit_once('.')?;
        let want = xxhash_rust::xxh3::xxh3_64_with_seed(signed.as_bytes(), st.download_key);
        if format!("{want:016x}") != sig {
            return None;
        }
        let (body, at) = signed.split_once('.')?;
        Some((URL_SAFE_NO_PAD.decode(body).ok()?, at.parse::<i64>().ok()?))
    })();
    let Some((body, at)) = decoded else {
        return bad_request("invalid downloadToken");
    };
    let q = match parse(&st, &body) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let sel = st.selection(&q, at);
    st.stream(
        sel,
        0,
        u64::MAX,
        Format::Csv,
        render::CSV_HEADER.into(),
        counted(&st, render::fixed_suffix("")),
    )
}

// ---------------------------------------------------------------- generation 1

#[derive(serde::Deserialize)]
struct GrantParams {
    grant_type: Option<String>,
}

async fn v1_jwt(State(st): St, headers: HeaderMap) -> Response {
    legacy_jwt(&st, "/api/v3/auth/jwt", &headers)
}

async fn v1_jwt_old(State(st): St, headers: HeaderMap) -> Response {
    legacy_jwt(&st, "/c42api/v3/auth/jwt", &headers)
}

/// User login: Basic user:password, plus `totp-auth` when the tenant requires it. The
/// error bodies carry the keys py42 looks for (it raises its MFA error on
/// `TIME_BASED_ONE_TIME_PASSWORD_REQUIRED`).
fn legacy_jwt(st: &Arc<Emulator>, route: &'static str, headers: &HeaderMap) -> Response {
    if let Err(r) = st.admit(route, headers, false) {
        return *r;
    }
    let legacy_error = |key: &str, description: &str| {
        st.faults.count_unauthorized();
        json_response(
            StatusCode::UNAUTHORIZED,
            serde_json::json!([{"name": key, "description": description, "objects": []}]),
        )
    };
    let Some((user, password)) = auth::basic(header_str(headers, header::AUTHORIZATION.as_str()))
    else {
        return legacy_error("INVALID_CREDENTIALS", "missing basic credentials");
    };
    if !user.eq_ignore_ascii_case(&st.opts.username)
        || !auth::same_secret(&password, &st.opts.password)
    {
        return legacy_error("INVALID_CREDENTIALS", "invalid username or password");
    }
    if let Some(totp) = &st.opts.totp {
        match header_str(headers, "totp-auth") {
            None => {
                return legacy_error(
                    "TIME_BASED_ONE_TIME_PASSWORD_REQUIRED",
                    "a time-based one-time password is required (totp-auth header)",
                )
            }
            Some(code) if !auth::same_secret(code.trim(), totp) => {
                return legacy_error(
                    "INVALID_TIME_BASED_ONE_TIME_PASSWORD",
                    "invalid one-time password",
                )
            }
            Some(_) => {}
        }
    }
    let token = st.issue_token(&user);
    json_response(
        StatusCode::OK,
        serde_json::json!({"data": {"v3_user_token": token}}),
    )
}

async fn v1_oauth(
    State(st): St,
    headers: HeaderMap,
    UrlQuery(p): UrlQuery<GrantParams>,
) -> Response {
    if let Err(r) = st.admit("/api/v3/oauth/token", &headers, false) {
        return *r;
    }
    if p.grant_type
        .as_deref()
        .is_some_and(|g| g != "client_credentials")
    {
        return bad_request("unsupported grant_type; expected client_credentials");
    }
    match auth::basic(header_str(&headers, header::AUTHORIZATION.as_str())) {
        Some((id, secret)) if st.credentials_ok(&id, &secret) => {
            let token = st.issue_token(&id);
            json_response(
                StatusCode::OK,
                serde_json::json!({
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": st.opts.token_ttl.as_secs().max(1),
                }),
            )
        }
        _ => st.unauthorized("invalid client credentials"),
    }
}

async fn v1_customer(State(st): St, headers: HeaderMap) -> Response {
    legacy_customer(&st, "/api/v3/customer/my", &headers)
}

async fn v1_customer_old(State(st): St, headers: HeaderMap) -> Response {
    legacy_customer(&st, "/c42api/v3/customer/my", &headers)
}

fn legacy_customer(st: &Emulator, route: &'static str, headers: &HeaderMap) -> Response {
    if let Err(r) = st.admit(route, headers, true) {
        return *r;
    }
    json_response(
        StatusCode::OK,
        serde_json::json!({"data": {"tenantUid": st.opts.tenant_id, "name": "Emulated Tenant", "registrationKey": "EMUL-ATED-TENA-NT01"}}),
    )
}

/// Service discovery, step 1. Unauthenticated here: it reveals nothing but URLs.
async fn v1_server_env(State(st): St, headers: HeaderMap) -> Response {
    if let Err(r) = st.admit("/api/v1/ServerEnv", &headers, false) {
        return *r;
    }
    let root = st.root(&headers);
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "stsBaseUrl": format!("{root}/sts"),
            "serverEnv": "EMULATED",
            "clusterName": "c42fwd-emulator",
        }),
    )
}

/// Service discovery, step 2: plain-text base URLs by key.
async fn v1_kv(State(st): St, headers: HeaderMap, Path(key): Path<String>) -> Response {
    if let Err(r) = st.admit("/simple-key-value-store/v1/{key}", &headers, false) {
        return *r;
    }
    let root = st.root(&headers);
    let url = match key.as_str() {
        "AUDIT-LOG_API-URL" => format!("{root}/audit-log"),
        "AlertService-API_URL" => format!("{root}/alert-service"),
        "FedObserver-API_URL" => format!("{root}/fed-observer"),
        _ => return error(StatusCode::NOT_FOUND, "no such key in the key-value store"),
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], url).into_response()
}

const LEGACY_RESPONSE_PREFIX: &str =
    "{\"type$\":\"audit_log::audit_log_queries.search_audit_log.response/1\",\"events\":[";

/// The legacy service answers a page past the window like the Elasticsearch behind it.
fn window_error(limit: u64, asked: u64) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        serde_json::json!({
            "type$": "audit_log::error/1",
            "error": "search_phase_execution_exception",
            "message": format!(
                "Result window is too large, from + size must be less than or equal to: [{limit}] but was [{asked}]. \
                 See the scroll api for a more efficient way to request large data sets. \
                 This limit can be set by changing the [index.max_result_window] index level setting."
            ),
        }),
    )
}

async fn v1_search(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = st.admit("/audit-log/rpc/search/search-audit-log", &headers, true) {
        return *r;
    }
    let q = match parse(&st, &body) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let limit = st.opts.search_limit as u64;
    let asked = (q.page + 1).saturating_mul(q.page_size);
    if asked > limit {
        return window_error(limit, asked);
    }
    let sel = st.selection(&q, st.clock.now_ns());
    let start = q.page * q.page_size;
    match Format::from_accept(header_str(&headers, header::ACCEPT.as_str())) {
        Format::Json => st.stream(
            sel,
            start,
            q.page_size,
            Format::Json,
            LEGACY_RESPONSE_PREFIX.into(),
            counted(&st, render::fixed_suffix("]}")),
        ),
        Format::Csv => st.stream(
            sel,
            start,
            q.page_size,
            Format::Csv,
            render::CSV_HEADER.into(),
            counted(&st, render::fixed_suffix("")),
        ),
        Format::Cef => st.stream(
            sel,
            start,
            q.page_size,
            Format::Cef,
            String::new(),
            counted(&st, render::fixed_suffix("")),
        ),
    }
}

/// Legacy export: JSON (default), CSV or CEF. The seed: page and pageSize apply to CSV
/// output and are ignored for CEF and JSON.
async fn v1_export(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = st.admit(
        "/audit-log/rpc/search/search-results-export",
        &headers,
        true,
    ) {
        return *r;
    }
    let q = match parse(&st, &body) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let sel = match export_selection(&st, &q, st.clock.now_ns()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match Format::from_accept(header_str(&headers, header::ACCEPT.as_str())) {
        Format::Json => st.stream(
            sel,
            0,
            u64::MAX,
            Format::Json,
            LEGACY_RESPONSE_PREFIX.into(),
            counted(&st, render::fixed_suffix("]}")),
        ),
        Format::Csv => {
            let (skip, limit) = if q.paged {
                (q.page.saturating_mul(q.page_size), q.page_size)
            } else {
                (0, u64::MAX)
            };
            st.stream(
                sel,
                skip,
                limit,
                Format::Csv,
                render::CSV_HEADER.into(),
                counted(&st, render::fixed_suffix("")),
            )
        }
        Format::Cef => st.stream(
            sel,
            0,
            u64::MAX,
            Format::Cef,
            String::new(),
            counted(&st, render::fixed_suffix("")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        let m = serde_urlencoded_pairs(
            b"grant_type=client_credentials&client_id=key-1&client_secret=a%2Bb+c%3D",
        );
        assert_eq!(m["grant_type"], "client_credentials");
        assert_eq!(m["client_id"], "key-1");
        assert_eq!(m["client_secret"], "a+b c=");
    }

    #[test]
    fn the_clock_advances_on_demand() {
        let c = Clock::new(1_000);
        let before = c.now_ns();
        c.advance(Duration::from_secs(60));
        assert!(c.now_ns() >= before + 60 * NANOS_PER_SEC);
    }
}
