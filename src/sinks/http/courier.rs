//! Sending one sink's requests: retries, stalls, splitting refused requests, and
//! dead-lettering.
//!
//! Owned here: the [`Courier`] (client, URL, headers, retry policy, metrics,
//! dead-letter file) and the one retry loop around a request
//! ([`Courier::post_chunk`]), with the shared backoff that honours `Retry-After`
//! (`crate::retry`):
//! - weather (busy, unreachable, timed out) retries the same request, a WARN each time;
//! - stalls: a status that says the set-up is wrong (401, 403, 404, 405, ...) holds the
//!   request and retries it with backoff; the route waits, nothing is dead-lettered, and
//!   `stall` reports it (ERROR every minute, `sink_stalled`, `/ready`) until the
//!   receiver takes a request again.
//! - refused data ([`Courier::send_all`]): a request whose data is refused is split
//!   (around the record the receiver names, else in halves) until each refused record
//!   is alone; those go to the sink's dead-letter file with the receiver's reason,
//!   counted in `sink_discarded{reason}`; every other record is delivered. A batch
//!   counts as delivered once all its records are delivered or dead-lettered (the
//!   latter by explicit policy). A full dead-letter file stalls the sink instead.
//!
//! Not here: what an answer means (`verdict`, and each sink's `classify`), the body
//! formats (`body`), HEC's indexer acknowledgements (`hec`), and the backoff delays
//! (`crate::retry`).
//!
//! **Invariant (ARCHITECTURE.md, 6: secrets never leave):** secrets only ever travel in
//! headers marked sensitive; error texts, logs and dead-letter reasons are passed through
//! [`Courier::redact`], and URLs are shown through `config::redacted_url`.

use super::body::SealedChunk;
use super::client::read_limited;
use super::ledger::AckLedger;
use super::verdict::{stall_hint, transport_verdict, Verdict};
use crate::metrics::label;
use crate::retry::retry_after;
use crate::retry::BackoffPolicy;
use crate::sinks::dead_letter::DeadLetterFile;
use crate::sinks::error::SinkError;
use crate::sinks::metrics::SinkMetrics;
use crate::sinks::stall::Stall;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;

/// What became of one attempt at a request (after the retries and stalls).
#[derive(Debug)]
pub(crate) enum Answer {
    /// 2xx; the response body (HEC's carries the `ackId`).
    Accepted(Bytes),
    /// The data was refused for good (not logged yet: the caller splits or
    /// dead-letters).
    Rejected {
        reason: &'static str,
        detail: String,
        first_bad: Option<usize>,
    },
}

/// Sends one sink's requests: the client, the target, the headers (credentials
/// included, marked sensitive), the retry policy, the metrics and the dead-letter file.
pub(crate) struct Courier {
    pub sink: String,
    pub client: reqwest::Client,
    pub url: Url,
    /// `url` as shown in logs and errors (no password).
    pub shown: String,
    pub headers: HeaderMap,
    pub retry: BackoffPolicy,
    pub metrics: SinkMetrics,
    pub dead_letter: DeadLetterFile,
    /// Secret values (and encodings of them) to blank out of any text we log or store,
    /// in case a server echoes a request header back in an error page.
    secrets: Vec<String>,
    /// The receiver refuses every request (credentials, URL).
    stall: Stall,
}

impl Courier {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sink: &str,
        client: reqwest::Client,
        url: Url,
        headers: HeaderMap,
        retry: BackoffPolicy,
        metrics: SinkMetrics,
        dead_letter: DeadLetterFile,
        secrets: Vec<String>,
    ) -> Self {
        Courier {
            sink: sink.to_string(),
            client,
            shown: crate::config::redacted_url(&url),
            url,
            headers,
            retry,
            stall: Stall::new(&metrics.metrics, sink),
            metrics,
            dead_letter,
            secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(),
        }
    }

    /// Logs a WARN when credentials would travel over plain `http://`: anyone on the
    /// network path can read them there.
    pub(crate) fn warn_if_plaintext_credentials(&self, what: &str) {
        if self.url.scheme() == "http" && !self.secrets.is_empty() {
            tracing::warn!(
                sink = %self.sink,
                url = %self.shown,
                "the {what} is sent over plain http: anyone on the network path can read \
                 it and the records; use an https url"
            );
        }
    }

    /// Reports a stall seen outside [`post_chunk`](Self::post_chunk) (HEC's ack
    /// endpoint refusing the token); `detail` is already redacted.
    pub(crate) fn stalled(&mut self, kind: &'static str, detail: &str) {
        self.stall.failed(kind, detail, stall_hint(kind));
    }

    /// The receiver took a request: a stall is over.
    pub(crate) fn resumed(&mut self) {
        self.stall.resumed();
    }

    /// `text` with every secret value replaced by `[redacted]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }

    pub(crate) fn error(&self, kind: &'static str, retriable: bool, detail: &str) -> SinkError {
        SinkError::Http {
            url: self.shown.clone(),
            kind,
            retriable,
            detail: self.redact(detail),
        }
    }

    /// Sends one request body to `self.url` until it is accepted or its data refused
    /// for good, through weather (retried with backoff, a WARN per retry) and stalls
    /// (retried with backoff, reported by [`Stall`]). `classify` reads an answer
    /// (status, body, `Retry-After`). Returns `Ok(None)` when `shutdown` interrupted it,
    /// and an error when the retry policy gave up.
    pub(crate) async fn post_chunk(
        &mut self,
        chunk: &SealedChunk,
        classify: impl Fn(StatusCode, &[u8], Option<Duration>) -> Verdict,
        shutdown: &CancellationToken,
    ) -> Result<Option<Answer>, SinkError> {
        let mut backoff = None;
        loop {
            let attempt = async {
                let resp = self
                    .client
                    .post(self.url.clone())
                    .headers(self.headers.clone())
                    .body(chunk.wire.clone())
                    .send()
                    .await;
                match resp {
                    Ok(resp) => {
                        let status = resp.status();
                        let ra = retry_after(resp.headers());
                        match read_limited(resp).await {
                            Ok(body) => (classify(status, &body, ra), body),
                            Err(e) => (transport_verdict(e), Bytes::new()),
                        }
                    }
                    Err(e) => (transport_verdict(e), Bytes::new()),
                }
            };
            let (verdict, body) = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(None),
                r = attempt => r,
            };
            let (kind, retry_after, detail, stalled) = match verdict {
                Verdict::Accepted => {
                    if backoff.is_some() && !self.stall.is_stalled() {
                        tracing::info!(sink = %self.sink, url = %self.shown, "request accepted after retry");
                    }
                    self.stall.resumed();
                    return Ok(Some(Answer::Accepted(body)));
                }
                Verdict::Reject {
                    reason,
                    detail,
                    first_bad,
                } => {
                    // The receiver read the request: whatever stalled it is fixed.
                    self.stall.resumed();
                    return Ok(Some(Answer::Rejected {
                        reason,
                        detail: self.redact(&detail),
                        first_bad,
                    }));
                }
                Verdict::Retry {
                    kind,
                    retry_after,
                    detail,
                } => (kind, retry_after, detail, false),
                Verdict::Stall {
                    kind,
                    retry_after,
                    detail,
                } => (kind, retry_after, detail, true),
            };
            let e = self.error(kind, true, &detail);
            self.metrics.error(&e);
            let delay = backoff
                .get_or_insert_with(|| self.retry.backoff())
                .next_delay_after(retry_after);
            let Some(delay) = delay else {
                tracing::error!(sink = %self.sink, error = %e, "retries used up; the sink stops");
                return Err(e);
            };
            if stalled {
                self.stall.failed(kind, &e.to_string(), stall_hint(kind));
            } else {
                tracing::warn!(sink = %self.sink, error = %e, retry_in = ?delay, "request failed; will send it again");
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Sends `chunk` until every record in it is delivered or dead-lettered. A request
    /// whose data the receiver refuses is split: around the record the receiver names
    /// (which is dead-lettered at once), or else in halves, until each refused record
    /// is alone in its request; a refused single record goes to the dead-letter file
    /// with the receiver's reason. `accepted` gets every request the receiver took
    /// (the whole chunk, or its parts) and may hand back a request to send again.
    /// `Ok(false)` when `shutdown` interrupted it.
    pub(crate) async fn send_all(
        &mut self,
        chunk: SealedChunk,
        classify: impl Fn(StatusCode, &[u8], Option<Duration>) -> Verdict,
        ledger: &mut AckLedger,
        shutdown: &CancellationToken,
        mut accepted: impl FnMut(&Courier, SealedChunk, Bytes, &mut AckLedger) -> Option<SealedChunk>,
    ) -> Result<bool, SinkError> {
        let mut work = std::collections::VecDeque::from([chunk]);
        while let Some(chunk) = work.pop_front() {
            if let Some((reason, detail)) = &chunk.refused {
                if !self
                    .dead_letter(&chunk, reason, detail, ledger, shutdown)
                    .await?
                {
                    return Ok(false);
                }
                continue;
            }
            let answer = match self.post_chunk(&chunk, &classify, shutdown).await? {
                None => return Ok(false),
                Some(a) => a,
            };
            match answer {
                Answer::Accepted(body) => {
                    if let Some(again) = accepted(self, chunk, body, ledger) {
                        work.push_front(again);
                    }
                }
                Answer::Rejected { reason, detail, .. } if chunk.events() <= 1 => {
                    if !self
                        .dead_letter(&chunk, reason, &detail, ledger, shutdown)
                        .await?
                    {
                        return Ok(false);
                    }
                }
                Answer::Rejected {
                    reason,
                    detail,
                    first_bad,
                } => {
                    let n = chunk.events();
                    let parts: Vec<std::ops::Range<usize>> = match first_bad {
                        // The receiver names the record: what comes before it is good,
                        // what follows is unknown.
                        Some(k) if k < n => [0..k, k..k + 1, k + 1..n]
                            .into_iter()
                            .filter(|r| !r.is_empty())
                            .collect(),
                        _ => vec![0..n / 2, n / 2..n],
                    };
                    let mut split = chunk.split(&parts, ledger).map_err(|e| {
                        self.error(
                            "dead_letter",
                            false,
                            &format!("cannot split a refused request: {e}"),
                        )
                    })?;
                    if let Some(k) = first_bad.filter(|&k| k < n) {
                        let i = usize::from(k > 0);
                        split[i].refused = Some((reason, detail.clone()));
                    }
                    ledger.release_all(&chunk.acks);
                    self.metrics
                        .metrics
                        .sink_request_splits
                        .get_or_create(&label("sink", &self.sink))
                        .inc();
                    let log = |msg: &str| {
                        if chunk.depth == 0 {
                            tracing::warn!(sink = %self.sink, url = %self.shown, reason = %detail, records = n, first_bad, "{msg}");
                        } else {
                            tracing::debug!(sink = %self.sink, reason = %detail, records = n, first_bad, "{msg}");
                        }
                    };
                    log(
                        "the receiver refused the data of a request; splitting it to deliver \
                         the good records and dead-letter only the refused ones",
                    );
                    for part in split.into_iter().rev() {
                        work.push_front(part);
                    }
                }
            }
        }
        Ok(true)
    }

    /// The receiver has the request: count it and resolve what it completes.
    pub(crate) fn delivered(&self, chunk: &SealedChunk, ledger: &mut AckLedger) {
        self.metrics.events.inc_by(chunk.events() as u64);
        self.metrics.bytes.inc_by(chunk.wire.len() as u64);
        ledger.release_all(&chunk.acks);
    }

    /// Records refused for good: they go to the dead-letter file with `detail` as the
    /// reason, are counted under `reason`, logged once, and count as delivered by
    /// explicit policy. While the dead-letter file is full the sink waits
    /// (with backoff; `DeadLetterFile` reports the stall) and nothing resolves. An
    /// unwritable dead-letter file stops the sink (its tokens then count as not
    /// delivered). `Ok(false)` when `shutdown` came first.
    pub(crate) async fn dead_letter(
        &mut self,
        chunk: &SealedChunk,
        reason: &'static str,
        detail: &str,
        ledger: &mut AckLedger,
        shutdown: &CancellationToken,
    ) -> Result<bool, SinkError> {
        let records = chunk.records().map_err(|e| {
            self.error(
                "dead_letter",
                false,
                &format!("cannot recover the records of a rejected request: {e}"),
            )
        })?;
        for (r, origin) in records.iter().zip(chunk.origins()) {
            self.dead_letter.push(detail, r, origin);
        }
        let mut backoff = None;
        let n = loop {
            match self.dead_letter.flush().await {
                Ok(n) => break n,
                Err(e @ SinkError::DeadLetterFull { .. }) => {
                    self.metrics.error(&e);
                    let Some(delay) = backoff
                        .get_or_insert_with(|| self.retry.backoff())
                        .next_delay()
                    else {
                        tracing::error!(sink = %self.sink, error = %e, "retries used up; the sink stops");
                        return Err(e);
                    };
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ok(false),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        };
        self.metrics.discarded(reason, n as u64);
        tracing::error!(
            sink = %self.sink,
            url = %self.shown,
            reason = detail,
            records = n,
            dead_letter = %self.dead_letter.path().display(),
            "the receiver refused records for good: they went to the dead-letter file and the route goes on"
        );
        ledger.release_all(&chunk.acks);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Outcome;
    use crate::encode::Format;
    use crate::sinks::http::body::JsonBody;
    use crate::sinks::http::client::server_text;
    use crate::sinks::http::testkit::{batch_of, batcher, events, limits};
    use crate::sinks::http::verdict::{classify_status, status_detail};
    use std::sync::Arc;

    /// A receiver that refuses (400) any request holding a record with a `seq` in
    /// `bad`, as a generic HTTP endpoint does; counts the requests.
    async fn refusing_receiver(
        bad: &'static [u64],
    ) -> (Url, Arc<std::sync::Mutex<(u64, Vec<u64>)>>) {
        let seen = Arc::new(std::sync::Mutex::new((0u64, Vec::new())));
        let state = seen.clone();
        let app = axum::Router::new().route(
            "/in",
            axum::routing::post(move |body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let v: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                    let seqs: Vec<u64> = v.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
                    let mut s = state.lock().unwrap();
                    s.0 += 1;
                    if seqs.iter().any(|q| bad.contains(q)) {
                        (axum::http::StatusCode::BAD_REQUEST, "bad record")
                    } else {
                        s.1.extend(seqs);
                        (axum::http::StatusCode::OK, "ok")
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/in", l.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn bisection_isolates_the_refused_records_and_delivers_the_rest() {
        let (url, seen) = refusing_receiver(&[17, 18, 99]).await;
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let mut courier = Courier::new(
            "s",
            reqwest::Client::new(),
            url,
            HeaderMap::new(),
            BackoffPolicy::default(),
            SinkMetrics::new(&metrics, "s"),
            DeadLetterFile::new(dir.path(), "s"),
            Vec::new(),
        );
        let (mut b, mut ledger, mut ready) = batcher(
            JsonBody::Array,
            Format::JsonRaw,
            limits(100, 1 << 20),
            false,
        );
        let (sb, mut w) = batch_of(events(100));
        b.push(sb, &mut ledger, &mut ready);
        let chunk = ready.pop().unwrap();
        let classify = |status, body: &[u8], ra| {
            classify_status(status, ra, status_detail(status, &server_text(body)))
        };
        let delivered = |c: &Courier, chunk: SealedChunk, _, l: &mut AckLedger| {
            c.delivered(&chunk, l);
            None
        };
        let done = courier
            .send_all(
                chunk,
                classify,
                &mut ledger,
                &CancellationToken::new(),
                delivered,
            )
            .await
            .unwrap();
        assert!(done);
        assert_eq!(w.try_outcome(), Some(Outcome::Delivered));
        let (requests, mut got) = seen.lock().unwrap().clone();
        got.sort();
        let want: Vec<u64> = (0..100).filter(|s| ![17, 18, 99].contains(s)).collect();
        assert_eq!(got, want, "every good record once");
        // Three bad records of 100: about 3 * 2 * log2(100) requests, far from 100.
        assert!(requests < 45, "{requests} requests");
        let dead: Vec<u64> = std::fs::read_to_string(dir.path().join("s.ndjson"))
            .unwrap()
            .lines()
            .map(|l| {
                let line: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(line["reason"], "http 400 Bad Request: bad record");
                let rec: serde_json::Value =
                    serde_json::from_str(line["record"].as_str().unwrap()).unwrap();
                rec["seq"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(dead, [17, 18, 99]);
        assert_eq!(
            metrics
                .sink_discarded
                .get_or_create(&vec![("sink", "s".into()), ("reason", "http_400".into())])
                .get(),
            3
        );
    }

    #[test]
    fn redaction_blanks_secrets() {
        let c = Courier::new(
            "s",
            reqwest::Client::new(),
            Url::parse("https://u:pw@example.com/x").unwrap(),
            HeaderMap::new(),
            BackoffPolicy::default(),
            SinkMetrics::new(&Arc::new(crate::metrics::Metrics::new()), "s"),
            DeadLetterFile::new(std::path::Path::new("/nonexistent"), "s"),
            vec!["hunter22".into(), "ab".into()],
        );
        assert_eq!(
            c.redact("echo: Splunk hunter22 ab"),
            "echo: Splunk [redacted] ab"
        );
        assert!(!c.shown.contains("pw"));
        let e = c.error("x", true, "token hunter22");
        assert!(!e.to_string().contains("hunter22"), "{e}");
    }
}
