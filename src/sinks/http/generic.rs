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

use super::batcher::{sleep_until, Batcher};
use super::body::{BodyWriter, JsonArray, NdJson, SealedChunk};
use super::client::{build_client, error_chain, server_text};
use super::courier::Courier;
use super::ledger::AckLedger;
use super::verdict::{classify_status, status_detail, Verdict};
use crate::config::{HttpAuth, HttpBody, Sink, SinkKind};
use crate::encode::Encoder;
use crate::route::SinkBatch;
use crate::sinks::dead_letter::DeadLetterFile;
use crate::sinks::delivery::SinkContext;
use crate::sinks::error::SinkError;
use crate::sinks::metrics::SinkMetrics;
use base64::Engine;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE,
};
use reqwest::StatusCode;
use std::time::Duration;
use tokio::sync::mpsc;

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
pub(crate) async fn healthcheck(cfg: &Sink) -> Result<(), SinkError> {
    let SinkKind::Http(opts) = &cfg.kind else {
        return Ok(());
    };
    let shown = crate::config::redacted_url(&opts.url);
    let client = build_client(&cfg.name, &shown, &opts.tls, opts.request_timeout)?;
    let (headers, _) = headers(cfg, &shown)?;
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

pub(crate) async fn run(
    cfg: Sink,
    rx: mpsc::Receiver<SinkBatch>,
    ctx: SinkContext,
    encoder: Encoder,
) -> Result<(), SinkError> {
    let SinkKind::Http(opts) = &cfg.kind else {
        return Err(SinkError::Unsupported { sink: cfg.name });
    };
    match opts.body {
        HttpBody::NdJson => run_with(NdJson, &cfg, rx, ctx, encoder).await,
        HttpBody::JsonArray => run_with(JsonArray, &cfg, rx, ctx, encoder).await,
    }
}

/// The request headers: content type and encoding, authentication, then the
/// configured headers (which may replace the content type).
fn headers(cfg: &Sink, shown: &str) -> Result<(HeaderMap, Vec<String>), SinkError> {
    let SinkKind::Http(o) = &cfg.kind else {
        return Ok((HeaderMap::new(), Vec::new()));
    };
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

async fn run_with(
    writer: impl BodyWriter,
    cfg: &Sink,
    mut rx: mpsc::Receiver<SinkBatch>,
    ctx: SinkContext,
    encoder: Encoder,
) -> Result<(), SinkError> {
    let SinkKind::Http(opts) = &cfg.kind else {
        return Err(SinkError::Unsupported {
            sink: cfg.name.clone(),
        });
    };
    let sink = cfg.name.as_str();
    let shown = crate::config::redacted_url(&opts.url);
    let client = build_client(sink, &shown, &opts.tls, opts.request_timeout)?;
    let (headers, secrets) = headers(cfg, &shown)?;
    let mut courier = Courier::new(
        sink,
        client,
        opts.url.clone(),
        headers,
        cfg.retry,
        SinkMetrics::new(&ctx.metrics, sink),
        DeadLetterFile::for_sink(cfg, &ctx),
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
    let shutdown = &ctx.shutdown;
    let mut batcher = Batcher::new(writer, encoder, opts.batching, opts.gzip);
    let mut ledger = AckLedger::default();
    let mut ready: Vec<SealedChunk> = Vec::new();
    let mut closed = false;
    loop {
        if closed && batcher.is_empty() {
            tracing::debug!(sink, "queue closed and drained; sink stops");
            return Ok(());
        }
        let deadline = batcher.deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = sleep_until(deadline), if deadline.is_some() => ready.extend(batcher.flush()),
            next = rx.recv(), if !closed => {
                courier.metrics.queue.set(rx.len() as i64);
                match next {
                    Some(sb) => batcher.push(sb, &mut ledger, &mut ready),
                    None => {
                        closed = true;
                        ready.extend(batcher.flush());
                    }
                }
            }
        }
        for chunk in ready.drain(..) {
            let delivered = |c: &Courier, chunk: SealedChunk, _, ledger: &mut AckLedger| {
                c.delivered(&chunk, ledger);
                None
            };
            if !courier
                .send_all(chunk, classify, &mut ledger, shutdown, delivered)
                .await?
            {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpBatching, HttpOptions};
    use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
    use crate::secret::Secret;
    use crate::sinks::http::testkit::plain_tls;
    use url::Url;

    fn cfg(auth: HttpAuth, headers: Vec<(String, String)>) -> Sink {
        Sink {
            name: "web".into(),
            kind: SinkKind::Http(HttpOptions {
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
                tls: plain_tls(),
            }),
            encoding: EncoderOptions {
                format: Format::JsonRaw,
                syslog: SyslogStyle::None,
                framing: Framing::None,
                facility: 13,
                hostname: "h".into(),
                app_name: "c42fwd".into(),
            },
            dead_letter_max_bytes: crate::sinks::dead_letter::DEFAULT_MAX_BYTES,
            queue_batches: 4,
            retry: Default::default(),
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
