//! HEC's health: the wait at start and the checks of `validate --connect`.
//!
//! Owned here: one look at `GET /services/collector/health` ([`probe_health`]), the
//! wait at start while HEC is unhealthy ([`wait_until_healthy`]), and
//! [`healthcheck`]: the health endpoint (which ignores the token) and then the token
//! itself, with an empty `POST /services/collector/event`, which HEC answers 400 code 5
//! "No data" for a token it accepts and 401 / 403 for one it does not.
//!
//! Not here: the request format (`hec::wire`), the event requests (`hec`).

use super::wire::{base_headers, classify, endpoint, uuid_v4, HecAnswer};
use crate::config::HecOptions;
use crate::sinks::error::SinkError;
use crate::sinks::http::client::{build_client, error_chain, read_limited, server_text};
use crate::sinks::http::courier::Courier;
use crate::sinks::http::verdict::status_detail;
use reqwest::StatusCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;

/// What one look at `/services/collector/health` found.
enum Health {
    /// 2xx, with HEC's text.
    Healthy(String),
    /// 5xx, 429 or no answer: wait and look again.
    Unhealthy {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// Another answer (a 4xx: no health endpoint here, e.g. behind a proxy).
    NoHealthEndpoint(String),
}

async fn probe_health(client: &reqwest::Client, url: &Url) -> Health {
    let check = async {
        let resp = client.get(url.clone()).send().await?;
        let status = resp.status();
        let ra = crate::retry::retry_after(resp.headers());
        let body = read_limited(resp).await?;
        Ok::<_, reqwest::Error>((status, body, ra))
    };
    match check.await {
        Ok((status, body, retry_after)) => {
            let text = HecAnswer::parse(&body)
                .text
                .map(|t| server_text(t.as_bytes()))
                .unwrap_or_else(|| server_text(&body));
            if status.is_success() {
                Health::Healthy(text)
            } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                Health::Unhealthy {
                    detail: status_detail(status, &text),
                    retry_after,
                }
            } else {
                Health::NoHealthEndpoint(status_detail(status, &text))
            }
        }
        Err(e) => Health::Unhealthy {
            detail: error_chain(&e.without_url()),
            retry_after: None,
        },
    }
}

/// Checks HEC's health until it is healthy. `false` when `shutdown` came first.
pub(super) async fn wait_until_healthy(
    courier: &Courier,
    url: &Url,
    shutdown: &CancellationToken,
) -> bool {
    let sink = courier.sink.as_str();
    let shown = crate::config::redacted_url(url);
    let mut backoff = courier.retry.backoff();
    loop {
        let health = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return false,
            h = probe_health(&courier.client, url) => h,
        };
        let (detail, retry_after) = match health {
            Health::Healthy(text) => {
                tracing::info!(sink, url = %shown, answer = %text, "splunk hec is healthy");
                return true;
            }
            Health::NoHealthEndpoint(answer) => {
                tracing::warn!(
                    sink,
                    url = %shown,
                    %answer,
                    "splunk hec health endpoint gave no health answer; starting without it"
                );
                return true;
            }
            Health::Unhealthy {
                detail,
                retry_after,
            } => (detail, retry_after),
        };
        courier.metrics.error(&SinkError::Http {
            url: shown.clone(),
            kind: "health",
            retriable: true,
            detail: detail.clone(),
        });
        let Some(delay) = backoff.next_delay_after(retry_after) else {
            tracing::warn!(sink, url = %shown, reason = %detail, "splunk hec still not healthy; starting anyway");
            return true;
        };
        tracing::warn!(sink, url = %shown, reason = %detail, retry_in = ?delay, "splunk hec is not healthy; waiting before sending");
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Checks that the sink can work without sending events: its TLS files load, HEC's
/// health endpoint answers healthy (or is absent: a 4xx), and HEC accepts the token
/// (an empty event request: 400 code 5 "No data" with a good token, 401 / 403 with a
/// bad one).
pub(crate) async fn healthcheck(sink: &str, opts: &HecOptions) -> Result<(), SinkError> {
    let url = endpoint(&opts.endpoint, &["services", "collector", "health"]);
    let shown = crate::config::redacted_url(&url);
    let client = build_client(sink, &shown, &opts.tls, opts.request_timeout)?;
    if let Health::Unhealthy { detail, .. } = probe_health(&client, &url).await {
        return Err(SinkError::Http {
            url: shown,
            kind: "health",
            retriable: true,
            detail,
        });
    }
    check_token(&client, opts).await
}

/// Sends an empty event request and reads what HEC says of the token.
async fn check_token(client: &reqwest::Client, opts: &HecOptions) -> Result<(), SinkError> {
    let url = endpoint(&opts.endpoint, &["services", "collector", "event"]);
    let shown = crate::config::redacted_url(&url);
    let err = |kind, detail: String| SinkError::Http {
        url: shown.clone(),
        kind,
        retriable: false,
        detail: detail.replace(opts.token.expose(), "[redacted]"),
    };
    let channel = opts.channel.clone().unwrap_or_else(uuid_v4);
    let headers = base_headers(opts, &channel, &shown)?;
    let answer = async {
        let resp = client
            .post(url.clone())
            .headers(headers)
            .body("")
            .send()
            .await?;
        let status = resp.status();
        let body = read_limited(resp).await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    let (status, body) = answer
        .await
        .map_err(|e| err("connect", error_chain(&e.without_url())))?;
    let a = HecAnswer::parse(&body);
    let detail = classify(status, &body, None).detail().to_string();
    match (status.as_u16(), a.code) {
        (200..=299, _) | (400, Some(5)) => Ok(()),
        (401 | 403, _) => Err(err(
            "token",
            format!("splunk hec refused the token: {detail}"),
        )),
        _ => Err(err(
            "token",
            format!(
                "an empty event request (to check the token) got an unexpected answer: {detail}"
            ),
        )),
    }
}
