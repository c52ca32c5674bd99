//! OAUTHBEARER: the token a Kafka sink logs in with, from an OAuth 2.0 / OIDC identity
//! provider with the client credentials grant (RFC 6749, section 4.4).
//!
//! librdkafka asks for a token when the producer starts and again before the current
//! one expires (at 80% of its lifetime); it asks on its own thread, through the
//! producer's context (`client::Reporter`), which calls [`TokenSource::fetch`]. The
//! request is `POST token_url` with `grant_type=client_credentials` (and `scope` when
//! set) in a form body, the client id and secret in HTTP Basic (each form-encoded
//! first, as RFC 6749 section 2.3.1 says and the Kafka Java client does). The answer
//! (section 5.1) gives `access_token` and `expires_in`; the principal librdkafka
//! reports is the token's `sub` claim when it is a JWT, else the client id.
//!
//! The token and the secret never reach a log line, an error or a `Debug` output
//! (ARCHITECTURE.md, invariant 6). A refused or failed request is an error librdkafka
//! turns into an authentication failure: the route stalls with
//! `kafka_authentication` (`classify`), and librdkafka asks again.
//!
//! Not here: SASL extensions (librdkafka sends them only with a token it fetched
//! itself, through libcurl, which this build leaves out; the configuration refuses
//! them).

use crate::config::{OAuthLogin, TlsOptions};
use crate::sinks::error::SinkError;
use crate::sinks::http::client::{build_client, error_chain, read_limited, server_text};
use base64::Engine as _;
use rdkafka::client::OAuthToken;
use std::time::Duration;

/// How long one token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A token endpoint that gives no lifetime is asked again after this long.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Where a sink's OAUTHBEARER tokens come from.
pub(super) struct TokenSource {
    login: OAuthLogin,
    client: reqwest::Client,
    /// The runtime the request runs on (librdkafka's thread has none).
    runtime: tokio::runtime::Handle,
}

impl TokenSource {
    /// Fails when the runtime is missing or `token_ca_file` cannot be read.
    pub(super) fn new(
        sink: &str,
        brokers: &str,
        login: &OAuthLogin,
    ) -> Result<TokenSource, SinkError> {
        let tls = TlsOptions {
            ca_file: login.token_ca_file.clone(),
            ..TlsOptions::default()
        };
        let client = build_client(sink, &login.token_url, &tls, TOKEN_TIMEOUT)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SinkError::Kafka {
            brokers: brokers.to_string(),
            kind: "kafka_config",
            retriable: false,
            detail: "the OAUTHBEARER token source needs the tokio runtime".into(),
        })?;
        Ok(TokenSource {
            login: login.clone(),
            client,
            runtime,
        })
    }

    /// A token, now. Blocking: librdkafka calls it on its own thread; the request runs
    /// on a thread of its own, so that it is never inside the runtime it blocks on.
    pub(super) fn fetch(&self) -> Result<OAuthToken, String> {
        std::thread::scope(|s| {
            s.spawn(|| self.runtime.block_on(self.request()))
                .join()
                .unwrap_or_else(|_| Err("the token request panicked".into()))
        })
    }

    async fn request(&self) -> Result<OAuthToken, String> {
        let url = &self.login.token_url;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.login.scope {
            form.push(("scope", scope));
        }
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let resp = self
            .client
            .post(url)
            .basic_auth(
                encode(&self.login.client_id),
                Some(encode(self.login.client_secret.expose())),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("token endpoint {url}: {}", error_chain(&e.without_url())))?;
        let status = resp.status();
        let body = read_limited(resp)
            .await
            .map_err(|e| format!("token endpoint {url}: {}", error_chain(&e.without_url())))?;
        if !status.is_success() {
            // An error answer is `{"error": ..., "error_description": ...}`: no secret.
            return Err(format!(
                "token endpoint {url} answered {status}: {}",
                server_text(&body)
            ));
        }
        token_of(&body, now_ms(), &self.login.client_id)
            .map_err(|e| format!("token endpoint {url}: {e}"))
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The token in a token endpoint's answer (RFC 6749, section 5.1), for librdkafka:
/// expiring after `expires_in` (a number, or a string of one, as some providers send
/// it), else at the JWT's `exp`, else after [`DEFAULT_LIFETIME`]; the principal its
/// `sub` claim, else `client_id`. Errors never quote the answer (it holds the token).
pub(super) fn token_of(body: &[u8], now_ms: i64, client_id: &str) -> Result<OAuthToken, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        token_type: Option<String>,
        expires_in: Option<serde_json::Value>,
    }
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("the answer is not a JSON token response ({e})"))?;
    let token = a
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("the answer has no access_token")?;
    if let Some(t) = a.token_type.as_deref() {
        if !t.eq_ignore_ascii_case("bearer") {
            return Err(format!("the token_type is {t:?}, not Bearer"));
        }
    }
    let claims = jwt_claims(&token);
    let expires_in = match &a.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let lifetime_ms = match (expires_in, claims.as_ref().and_then(|c| c.exp)) {
        (Some(s), _) if s > 0 => now_ms.saturating_add(s.saturating_mul(1000)),
        (_, Some(exp)) if exp.saturating_mul(1000) > now_ms => exp.saturating_mul(1000),
        (Some(_), _) | (_, Some(_)) => return Err("the token has already expired".into()),
        (None, None) => now_ms.saturating_add(DEFAULT_LIFETIME.as_millis() as i64),
    };
    let principal_name = claims
        .and_then(|c| c.sub)
        .filter(|s| !s.is_empty() && !s.contains('\0'))
        .unwrap_or_else(|| client_id.to_string());
    if token.contains('\0') {
        return Err("the access_token holds a NUL character".into());
    }
    Ok(OAuthToken {
        token,
        principal_name,
        lifetime_ms,
    })
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<i64>,
}

/// The claims of a JWT (`header.payload.signature`, base64url), unverified: the broker
/// verifies the token; these only give its principal and lifetime.
fn jwt_claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            b64.encode(r#"{"alg":"RS256"}"#),
            b64.encode(claims)
        )
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn a_token_lives_expires_in_seconds_and_names_its_subject() {
        let t = jwt(r#"{"sub":"svc-kafka","exp":1700009999}"#);
        let body = format!(r#"{{"access_token":"{t}","token_type":"bearer","expires_in":3600}}"#);
        let got = token_of(body.as_bytes(), NOW, "client").unwrap();
        assert_eq!(got.token, t);
        assert_eq!(got.principal_name, "svc-kafka");
        assert_eq!(got.lifetime_ms, NOW + 3_600_000);
        // A string expires_in (some providers), and a token that is not a JWT.
        let got = token_of(
            br#"{"access_token":"opaque","token_type":"Bearer","expires_in":"600"}"#,
            NOW,
            "client",
        )
        .unwrap();
        assert_eq!(
            (got.principal_name.as_str(), got.lifetime_ms),
            ("client", NOW + 600_000)
        );
    }

    #[test]
    fn without_expires_in_the_jwt_exp_or_a_default_lifetime_stands() {
        let t = jwt(r#"{"sub":"s","exp":1700000900}"#);
        let got = token_of(format!(r#"{{"access_token":"{t}"}}"#).as_bytes(), NOW, "c").unwrap();
        assert_eq!(got.lifetime_ms, 1_700_000_900_000);
        let got = token_of(br#"{"access_token":"opaque"}"#, NOW, "c").unwrap();
        assert_eq!(got.lifetime_ms, NOW + 300_000);
    }

    #[test]
    fn a_bad_answer_is_an_error_that_never_quotes_the_token() {
        for (body, want) in [
            (&b"<html>oops</html>"[..], "not a JSON token response"),
            (br#"{"token_type":"Bearer"}"#, "no access_token"),
            (
                br#"{"access_token":"tok-SECRET","token_type":"mac"}"#,
                "not Bearer",
            ),
            (
                br#"{"access_token":"tok-SECRET","expires_in":-5}"#,
                "already expired",
            ),
        ] {
            let e = token_of(body, NOW, "c").err().expect("an error");
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("tok-SECRET"), "{e}");
        }
        let expired = jwt(r#"{"exp":1600000000}"#);
        let e = token_of(
            format!(r#"{{"access_token":"{expired}"}}"#).as_bytes(),
            NOW,
            "c",
        )
        .err()
        .expect("expired");
        assert!(e.contains("already expired"), "{e}");
    }
}
