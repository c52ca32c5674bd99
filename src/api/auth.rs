//! Access tokens: logging in (both generations, both credential kinds) and deciding when
//! a token is too old to use.
//!
//! A token is refreshed before a request when less than `min(60 s, 10% of its
//! lifetime)` remains, so that a request never leaves with a token about to expire; a
//! 401 anyway (revoked, clock skew) discards it and the request loop logs in once more.
//! Logging in holds the token lock, so concurrent callers wait for one login instead of
//! each starting their own.

use super::{join, ApiClient, ApiError, CallAuth, TokenSlot};
use crate::config::{ApiGeneration, Credentials};
use crate::secret::Secret;
use base64::Engine as _;
use std::time::Duration;
use tokio::time::Instant;

/// Lifetime assumed when the server says nothing (`docs/api.md`: legacy tokens last 30 min).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 60);

pub(super) struct AccessToken {
    pub(super) value: Secret,
    obtained: Instant,
    lifetime: Duration,
}

impl AccessToken {
    pub(super) fn new(value: Secret, obtained: Instant, lifetime: Duration) -> Self {
        AccessToken {
            value,
            obtained,
            lifetime,
        }
    }

    /// Whether the token should be replaced before the next request.
    pub(super) fn needs_refresh(&self, now: Instant) -> bool {
        let margin = (self.lifetime / 10).min(Duration::from_secs(60));
        let age = now.saturating_duration_since(self.obtained);
        age + margin >= self.lifetime
    }
}

/// The lifetime of a new token: the shorter of `expires_in` and the `exp` claim of a
/// JWT (a JWT's `exp` is what the server checks; `expires_in` may be rounded up), else
/// [`DEFAULT_LIFETIME`].
fn lifetime(expires_in: Option<u64>, token: &str) -> Duration {
    let from_server = expires_in.map(Duration::from_secs);
    match (from_server, jwt_remaining(token)) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => DEFAULT_LIFETIME,
    }
}

/// The claims of a JWT (`header.payload.signature`, each part base64url, padded or
/// not): its payload as JSON, or `None` when the token is not a decodable JWT (an
/// opaque token is not an error: nothing is read from it then).
///
/// The signature is NOT verified, on purpose: the token came from the tenant's own
/// login endpoint over TLS, and c42fwd reads from it only facts about its own session
/// (when it expires, which tenant it belongs to); it grants nothing on the strength of
/// them. The server checks the signature of every request that carries the token.
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// The tenant id a token names: its JWT payload's `tenantUid` (what the Incydr SDK
/// reads), when the token is a decodable JWT and the claim a usable id.
pub(super) fn jwt_tenant_uid(token: &str) -> Option<String> {
    let claims = jwt_claims(token)?;
    let id = claims.get("tenantUid")?.as_str()?;
    usable_tenant_id(id).then(|| id.to_string())
}

/// Whether `id` can be a tenant id: not empty, at most 128 characters, no white space
/// or control characters (it goes into every alert query body).
pub(super) fn usable_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= 128
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Time left until the JWT's `exp`, to the millisecond.
fn jwt_remaining(token: &str) -> Option<Duration> {
    let v = jwt_claims(token)?;
    let exp_ms = v.get("exp")?.as_i64()?.checked_mul(1000)?;
    let remaining = exp_ms.checked_sub(chrono::Utc::now().timestamp_millis())?;
    (remaining > 0).then(|| Duration::from_millis(remaining as u64))
}

impl ApiClient {
    /// A valid access token and its generation, logging in when needed.
    pub(super) async fn access_token(&self) -> Result<(Secret, u64), ApiError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = &slot.current {
            if !t.needs_refresh(Instant::now()) {
                return Ok((t.value.clone(), slot.generation));
            }
        }
        // Boxed: logging in goes through the same request loop that calls this function.
        let token = Box::pin(self.log_in()).await?;
        let value = token.value.clone();
        slot.current = Some(token);
        slot.generation += 1;
        self.metrics
            .api_token_refreshes
            .get_or_create(&crate::metrics::label("tenant", &self.tenant))
            .inc();
        Ok((value, slot.generation))
    }

    /// Forgets the token of `generation` after a 401 (a newer one is kept).
    pub(super) async fn discard_token(&self, generation: u64) {
        let mut slot: tokio::sync::MutexGuard<'_, TokenSlot> = self.token.lock().await;
        if slot.generation == generation {
            slot.current = None;
        }
    }

    async fn log_in(&self) -> Result<AccessToken, ApiError> {
        let started = Instant::now();
        let (endpoint, body) = match (&self.api, &self.credentials) {
            (api, Credentials::ApiClient { client_id, secret }) => {
                // Both generations: the client id and secret as HTTP basic authentication.
                let (endpoint, path) = match api {
                    ApiGeneration::Incydr => ("POST /v1/oauth", "/v1/oauth"),
                    ApiGeneration::Legacy => (
                        "POST /api/v3/oauth/token",
                        "/api/v3/oauth/token?grant_type=client_credentials",
                    ),
                };
                let url = join(&self.base_url, path);
                let body = self
                    .call(endpoint, CallAuth::Login, |c| {
                        c.post(url.clone())
                            .basic_auth(client_id, Some(secret.expose()))
                    })
                    .await?;
                (endpoint, body)
            }
            (
                ApiGeneration::Legacy,
                Credentials::User {
                    username,
                    password,
                    totp,
                },
            ) => {
                let endpoint = "GET /api/v3/auth/jwt";
                let url = join(&self.base_url, "/api/v3/auth/jwt?useBody=true");
                let body = self
                    .call(endpoint, CallAuth::Login, |c| {
                        let r = c
                            .get(url.clone())
                            .basic_auth(username, Some(password.expose()));
                        match totp {
                            Some(code) => r.header("totp-auth", code.expose()),
                            None => r,
                        }
                    })
                    .await?;
                (endpoint, body)
            }
            (ApiGeneration::Incydr, Credentials::User { .. }) => {
                // Refused by `ApiClient::new`; kept total rather than panicking.
                return Err(ApiError::Setup {
                    tenant: self.tenant.clone(),
                    reason: "the incydr api takes api client credentials, not a user login"
                        .to_string(),
                });
            }
        };
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
            endpoint: endpoint.to_string(),
            reason: format!("not json: {e}"),
        })?;
        let token = [
            "/access_token",
            "/data/access_token",
            "/data/v3_user_token",
            "/v3_user_token",
        ]
        .iter()
        .find_map(|p| v.pointer(p).and_then(|x| x.as_str()))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Decode {
            endpoint: endpoint.to_string(),
            reason: "no access token in the response".to_string(),
        })?;
        let expires_in = ["/expires_in", "/data/expires_in"]
            .iter()
            .find_map(|p| v.pointer(p).and_then(|x| x.as_u64()));
        let life = lifetime(expires_in, token);
        tracing::info!(
            tenant = %self.tenant,
            endpoint,
            lifetime_s = life.as_secs(),
            "obtained an access token"
        );
        Ok(AccessToken::new(Secret::new(token), started, life))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin_is_the_smaller_of_a_minute_and_a_tenth() {
        let t0 = Instant::now();
        let t = AccessToken::new(Secret::new("x"), t0, Duration::from_secs(900));
        assert!(!t.needs_refresh(t0 + Duration::from_secs(839)));
        assert!(t.needs_refresh(t0 + Duration::from_secs(840)));
        // a short-lived token is not refreshed at every request
        let t = AccessToken::new(Secret::new("x"), t0, Duration::from_secs(10));
        assert!(!t.needs_refresh(t0 + Duration::from_secs(8)));
        assert!(t.needs_refresh(t0 + Duration::from_secs(9)));
    }

    fn jwt(payload: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(r#"{"alg":"HS256"}"#), b64(payload))
    }

    #[test]
    fn the_tenant_id_is_read_from_the_tenant_uid_claim() {
        assert_eq!(
            jwt_tenant_uid(&jwt(r#"{"sub":"k","tenantUid":"t-1","exp":1}"#)).as_deref(),
            Some("t-1")
        );
        // padded base64url, as some encoders write it, and the url-safe alphabet
        let payload = r#"{"tenantUid":"c42e7a1b-0000-4000-8000-00000000e001","n":"??>"}"#;
        let padded = base64::engine::general_purpose::URL_SAFE.encode(payload);
        assert!(padded.ends_with('='), "{padded}");
        assert!(padded.contains('_') || padded.contains('-'), "{padded}");
        assert_eq!(
            jwt_tenant_uid(&format!("eyJhbGciOiJub25lIn0.{padded}.sig")).as_deref(),
            Some("c42e7a1b-0000-4000-8000-00000000e001")
        );
    }

    #[test]
    fn a_token_without_a_usable_tenant_uid_names_no_tenant() {
        for token in [
            jwt(r#"{"sub":"k","exp":1}"#),
            jwt(r#"{"tenantUid":""}"#),
            jwt(r#"{"tenantUid":"has space"}"#),
            jwt(r#"{"tenantUid":42}"#),
            jwt(r#"{"tenantUid":null}"#),
            jwt(&format!(r#"{{"tenantUid":"{}"}}"#, "x".repeat(129))),
            jwt(r#"["tenantUid"]"#),
            jwt("not json"),
            "opaque-token".to_string(),
            "two.parts".to_string(),
            "a.b.c.d".to_string(),
            "a.!!!.c".to_string(),
            String::new(),
            "..".to_string(),
        ] {
            assert_eq!(jwt_tenant_uid(&token), None, "{token}");
        }
        // four parts are not a JWT, whatever the second holds
        let four = format!("{}.x", jwt(r#"{"tenantUid":"t"}"#));
        assert_eq!(jwt_tenant_uid(&four), None);
    }

    #[test]
    fn lifetime_from_expires_in_then_jwt_exp_then_default() {
        assert_eq!(lifetime(Some(900), "opaque"), Duration::from_secs(900));
        assert_eq!(lifetime(None, "opaque"), DEFAULT_LIFETIME);
        let exp = chrono::Utc::now().timestamp() + 120;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"tenantUid":"t","exp":{exp}}}"#));
        let jwt = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        let l = lifetime(None, &jwt);
        assert!(
            l <= Duration::from_secs(120) && l >= Duration::from_secs(110),
            "{l:?}"
        );
        // the shorter one wins
        assert_eq!(lifetime(Some(60), &jwt), Duration::from_secs(60));
        assert!(lifetime(Some(900), &jwt) <= Duration::from_secs(120));
    }
}
