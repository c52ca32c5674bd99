//! The HTTP-based sinks: Splunk HEC (`hec`) and the generic HTTP sink (`generic`), and
//! the layers they share, from the bottom up:
//!
//! - `client`: the reqwest client built from the sink's TLS settings; reading answers;
//! - `verdict`: what an answer (or a failed attempt) means: delivered, retried, stalled,
//!   or the data refused;
//! - `ledger`: the acknowledgement tokens of the sink batches whose records are in
//!   requests not yet settled;
//! - `body`: the request body formats and a sealed body (gzip, the place of each
//!   record, splitting);
//! - `batcher`: sink batches encoded and cut into bodies by `max_events`, `max_bytes`
//!   and `max_wait`;
//! - `outbox`: what a sink holds between the delivery loop and its courier: the
//!   batcher, the bodies ready to go, the ledger and the hand-over of tokens;
//! - `courier`: one request sent with retries, stalls, splitting of refused data and
//!   dead-lettering;
//! - `hec` and `generic`: each sink's headers, classification, health check and its
//!   transport of the delivery loop (`crate::sinks::delivery`).
//!
//! A lower layer never imports a higher one. Not here: the delivery contract with the
//! pipeline (`crate::sinks`), the backoff delays (`crate::retry`).

mod batcher;
mod body;
pub(crate) mod client;
mod courier;
pub(super) mod generic;
pub(super) mod hec;
mod ledger;
mod outbox;
#[cfg(test)]
mod testkit;
mod verdict;

/// Builds the client an HTTP-based sink would start with (its TLS files read and
/// parsed), for [`super::preflight`].
pub(super) fn check_client(
    sink: &str,
    url: &reqwest::Url,
    tls: &crate::config::TlsOptions,
    request_timeout: std::time::Duration,
) -> Result<(), super::SinkError> {
    client::build_client(
        sink,
        &crate::config::redacted_url(url),
        tls,
        request_timeout,
    )
    .map(drop)
}
