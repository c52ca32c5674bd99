//! The generic HTTP sink: batches of records POSTed to one URL.
//!
//! A request body is NDJSON (one record per line, `application/x-ndjson`) or one JSON
//! array (`application/json`). JSON records go in as JSON values, CEF / LEEF /
//! syslog-headed ones as JSON strings. Bodies are cut by `max_events`, `max_bytes`
//! and `max_wait`, optionally gzip-compressed (`Content-Encoding: gzip`), and sent
//! with the configured headers and basic or bearer authentication (the credentials
//! travel only in a header marked sensitive).
//!
//! Delivery: a batch is Delivered when every request holding its records got a 2xx
//! (or, for records the endpoint refused as bad data, once they are in the
//! dead-letter file). 408, 429 and 5xx, timeouts and connection errors are retried with
//! the shared backoff (honouring `Retry-After`). A 400 (or 413, 422) refuses the data:
//! the request is split in halves until each refused record is alone, those go to the
//! dead-letter file with the status and the server's text, the rest is delivered. Any
//! other status (401 and 403 credentials, 404 and 405 URL, ...) stalls the route until
//! the endpoint takes requests again (`verdict`, `courier`). One request is in flight at a
//! time: a generic endpoint promises nothing about the order of concurrent requests.
//!
//! Credentials (basic, bearer) on a plain `http://` URL are logged as a WARN at start.
//!
//! Owned here: the body format chosen by `body` (the writers are `body::NdJson` and
//! `body::JsonArray`), the headers and credentials, the classification of an answer
//! (the shared rule with the server's text), the health check and the delivery.
//!
//! Not done here: batching and gzip (`batcher`, `body`), the retry loop, stalls,
//! splitting and dead-lettering (`courier`).

use super::body::JsonBody;
use super::client::{build_client, error_chain, server_text};
use super::courier::Courier;
use super::ledger::AckLedger;
use super::outbox::Outbox;
use super::verdict::{classify_status, status_detail, Verdict};
use crate::ack::AckToken;
use crate::config::{HttpAuth, HttpBody, HttpOptions, Sink};
use crate::sinks::dead_letter::DeadLetterFile;
use crate::sinks::delivery::{Attempt, EncodedBatch, SinkContext, Transport, Written};
use crate::sinks::error::SinkError;
use crate::sinks::metrics::SinkMetrics;
use base64::Engine;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE,
};
use reqwest::StatusCode;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The classification of an answer (see `verdict::classify_status`); the detail
/// is the status and the start of the server's text.
pub(crate) fn classify(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Verdict {
    classify_status(
        status,
        retry_after,
        status_detail(status, &server_text(body)),
    )
}

/// Checks that the sink can work without sending records: its client builds (TLS
/// files load, headers are valid) and the endpoint answers a `HEAD` request through
/// that client, so a certificate the sink would refuse (or a refused connection) is
/// found here. A generic endpoint has no request that is safe to send as a probe of
/// the credentials: any HTTP answer counts as reachable.
pub(crate) async fn healthcheck(sink: &str, opts: &HttpOptions) -> Result<(), SinkError> {
    let shown = crate::config::redacted_url(&opts.url);
    let client = build_client(sink, &shown, &opts.tls, opts.request_timeout)?;
    let (headers, _) = headers(opts, &shown)?;
    match client.head(opts.url.clone()).headers(headers).send().await {
        Ok(_) => Ok(()),
        Err(e) => Err(SinkError::Http {
            url: shown,
            kind: if e.is_timeout() { "timeout" } else { "connect" },
            retriable: true,
            detail: error_chain(&e.without_url()),
        }),
    }
}

/// The request headers: content type and encoding, authentication, then the
/// configured headers (which may replace the content type).
fn headers(o: &HttpOptions, shown: &str) -> Result<(HeaderMap, Vec<String>), SinkError> {
    let bad = |what: String| SinkError::Http {
        url: shown.to_string(),
        kind: "config",
        retriable: false,
        detail: what,
    };
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(match o.body {
            HttpBody::NdJson => "application/x-ndjson",
            HttpBody::JsonArray => "application/json",
        }),
    );
    if o.gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let mut secrets = Vec::new();
    let auth = match &o.auth {
        HttpAuth::None => None,
        HttpAuth::Basic { username, password } => {
            let b64 = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()));
            secrets.push(password.expose().to_string());
            secrets.push(b64.clone());
            Some(format!("Basic {b64}"))
        }
        HttpAuth::Bearer(token) => {
            secrets.push(token.expose().to_string());
            Some(format!("Bearer {}", token.expose()))
        }
    };
    if let Some(a) = auth {
        let mut v = HeaderValue::from_str(&a).map_err(|_| {
            bad("the credentials hold characters that cannot go in an http header".into())
        })?;
        v.set_sensitive(true);
        h.insert(AUTHORIZATION, v);
    }
    for (k, v) in &o.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad(format!("headers.{k} is not a valid header name")))?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            bad(format!(
                "headers.{k} holds characters that cannot go in an http header"
            ))
        })?;
        h.insert(name, value);
    }
    Ok((h, secrets))
}

/// The generic HTTP sink as a transport of the delivery loop: a batch taken by
/// [`write`](Transport::write) goes into the body being filled, and every body that is
/// full (or due: [`tick`](Transport::tick) on `max_wait`) is sent by the courier, which
/// retries, stalls, splits and dead-letters inside; its token resolves once every
/// request holding its records was delivered or dead-lettered.
pub(crate) struct HttpSink {
    courier: Courier,
    outbox: Outbox<JsonBody>,
    shutdown: CancellationToken,
}

impl HttpSink {
    /// Builds the client (TLS files, headers) and prepares the dead-letter file.
    pub(crate) async fn start(
        cfg: &Sink,
        opts: &HttpOptions,
        ctx: &SinkContext,
        metrics: SinkMetrics,
    ) -> Result<Self, SinkError> {
        let sink = cfg.name.as_str();
        let shown = crate::config::redacted_url(&opts.url);
        let client = build_client(sink, &shown, &opts.tls, opts.request_timeout)?;
        let (headers, secrets) = headers(opts, &shown)?;
        let mut courier = Courier::new(
            sink,
            client,
            opts.url.clone(),
            headers,
            cfg.retry,
            metrics,
            DeadLetterFile::for_sink(cfg, ctx),
            secrets,
        );
        courier.dead_letter.prepare().await?;
        tracing::info!(
            sink,
            url = %courier.shown,
            body = ?opts.body,
            gzip = opts.gzip,
            "http sink starting"
        );
        courier.warn_if_plaintext_credentials("authorization header");
        let writer = match opts.body {
            HttpBody::NdJson => JsonBody::NdJson,
            HttpBody::JsonArray => JsonBody::Array,
        };
        Ok(HttpSink {
            courier,
            outbox: Outbox::new(writer, &cfg.encoding, opts.batching, opts.gzip),
            shutdown: ctx.shutdown.clone(),
        })
    }
}

impl Transport for HttpSink {
    async fn write(
        &mut self,
        records: &EncodedBatch,
        _attempt: Attempt,
    ) -> Result<Written, SinkError> {
        self.outbox.take(records);
        for chunk in self.outbox.take_ready() {
            let delivered = |c: &Courier, chunk, _, ledger: &mut AckLedger| {
                c.delivered(&chunk, ledger);
                None
            };
            let sent = self
                .courier
                .send_all(
                    chunk,
                    classify,
                    &mut self.outbox.ledger,
                    &self.shutdown,
                    delivered,
                )
                .await?;
            if !sent {
                // Shutdown: the loop stops; what was not sent stays not delivered.
                break;
            }
        }
        // Counted by the courier, request by request.
        Ok(Written::default())
    }

    fn hold(&mut self, ack: AckToken) {
        self.outbox.hold(ack);
    }

    fn holds_acks(&self) -> bool {
        !self.outbox.is_settled()
    }

    fn wants_resend(&self) -> bool {
        self.outbox.has_ready()
    }

    fn next_tick(&self) -> Option<Instant> {
        self.outbox.deadline()
    }

    async fn tick(&mut self) -> Result<(), SinkError> {
        // Only seals the due body (cancel-safe); the loop then sends it with an empty
        // `write`, because `wants_resend` says a body is ready.
        self.outbox.flush_due();
        Ok(())
    }

    fn retries_inside(&self) -> bool {
        true
    }

    fn queue_closed(&mut self) {
        self.outbox.queue_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpBatching;
    use crate::secret::Secret;
    use url::Url;

    fn cfg(auth: HttpAuth, headers: Vec<(String, String)>) -> HttpOptions {
        HttpOptions {
            url: Url::parse("https://collector.example.com/ingest").unwrap(),
            body: HttpBody::NdJson,
            headers,
            auth,
            gzip: true,
            batching: HttpBatching {
                max_events: 10,
                max_bytes: 4096,
                max_wait: Duration::from_secs(1),
            },
            request_timeout: Duration::from_secs(5),
            tls: crate::config::TlsOptions::default(),
        }
    }

    #[test]
    fn headers_carry_auth_marked_sensitive_and_custom_values() {
        let (h, secrets) = headers(
            &cfg(
                HttpAuth::Basic {
                    username: "fwd".into(),
                    password: Secret::new("pa55word"),
                },
                vec![
                    ("X-Tenant".into(), "acme".into()),
                    ("Content-Type".into(), "application/vnd.acme+json".into()),
                ],
            ),
            "https://collector.example.com/ingest",
        )
        .unwrap();
        let auth = h.get(AUTHORIZATION).unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(auth.to_str().unwrap(), "Basic ZndkOnBhNTV3b3Jk");
        assert!(!format!("{h:?}").contains("ZndkOnBhNTV3b3Jk"));
        assert_eq!(h["x-tenant"], "acme");
        assert_eq!(h[CONTENT_TYPE], "application/vnd.acme+json");
        assert_eq!(h[CONTENT_ENCODING], "gzip");
        assert!(secrets.contains(&"pa55word".to_string()));

        let (h, _) = headers(
            &cfg(HttpAuth::Bearer(Secret::new("tok-123")), Vec::new()),
            "u",
        )
        .unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer tok-123");
        assert_eq!(h[CONTENT_TYPE], "application/x-ndjson");
        let (h, _) = headers(&cfg(HttpAuth::None, Vec::new()), "u").unwrap();
        assert!(h.get(AUTHORIZATION).is_none());
    }

    #[test]
    fn classification_keeps_the_server_text() {
        let v = classify(
            StatusCode::BAD_REQUEST,
            b"{\"error\":\"bad field\"}\n",
            None,
        );
        assert_eq!(
            v,
            Verdict::Reject {
                reason: "http_400",
                detail: "http 400 Bad Request: {\"error\":\"bad field\"}".into(),
                first_bad: None,
            }
        );
        assert!(matches!(
            classify(StatusCode::REQUEST_TIMEOUT, b"", None),
            Verdict::Retry {
                kind: "http_408",
                ..
            }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, b"", None),
            Verdict::Retry {
                kind: "http_5xx",
                ..
            }
        ));
        assert_eq!(
            classify(StatusCode::NO_CONTENT, b"", None),
            Verdict::Accepted
        );
    }
}
