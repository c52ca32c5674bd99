//! The HTTP client of one HEC or HTTP sink, and how its answers are read.
//!
//! Owned here: [`build_client`] turns [`TlsOptions`] into a reqwest client (rustls).
//! Without `ca_file` the built-in webpki roots (Mozilla's list, compiled in) are
//! trusted; with `ca_file` only that bundle is, so that a private CA cannot be
//! side-stepped by a public one. No proxy from the environment, no redirects.
//! [`read_limited`] reads an answer body up to a cap; [`error_chain`] and
//! [`server_text`] turn a reqwest error or a server's text into one safe log line.
//!
//! Not here: what an answer means (`verdict`), sending and retrying (`courier`).

use crate::config::{TlsOptions, TlsVersion};
use crate::sinks::error::SinkError;
use bytes::Bytes;
use std::time::Duration;

/// Builds the reqwest client of one HTTP-based sink. Fails (not retriable) when a TLS
/// file cannot be read or parsed: that does not heal by waiting.
pub(crate) fn build_client(
    sink: &str,
    shown_url: &str,
    tls: &TlsOptions,
    request_timeout: Duration,
) -> Result<reqwest::Client, SinkError> {
    let err = |detail: String| SinkError::Http {
        url: shown_url.to_string(),
        kind: "tls_config",
        retriable: false,
        detail,
    };
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| err(format!("cannot read {what} {}: {e}", path.display())))
    };
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        // A sink talks to the host in its URL: a proxy comes only from the config,
        // never from `HTTPS_PROXY` in the service's environment.
        .no_proxy()
        // A redirect would resend the credentials somewhere else; a 3xx is reported
        // (and retried) instead, so the operator fixes the URL.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        // Below the 60 s idle timeout of most servers and load balancers, so that a
        // pooled connection is not reused just as the server closes it.
        .pool_idle_timeout(Duration::from_secs(50))
        .min_tls_version(match tls.min_version {
            TlsVersion::Tls12 => reqwest::tls::Version::TLS_1_2,
            TlsVersion::Tls13 => reqwest::tls::Version::TLS_1_3,
        });
    if let Some(ca) = &tls.ca_file {
        let pem = read("tls.ca_file", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            err(format!(
                "tls.ca_file {}: {}",
                ca.display(),
                error_chain(&e.without_url())
            ))
        })?;
        if certs.is_empty() {
            return Err(err(format!(
                "tls.ca_file {} holds no PEM certificate",
                ca.display()
            )));
        }
        b = b.tls_built_in_root_certs(false);
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        let mut pem = read("tls.client_cert", cert)?;
        pem.push(b'\n');
        pem.extend_from_slice(&read("tls.client_key", key)?);
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            err(format!(
                "tls.client_cert {} / tls.client_key {}: {}",
                cert.display(),
                key.display(),
                error_chain(&e.without_url())
            ))
        })?;
        b = b.identity(id);
    }
    if tls.insecure_skip_verify {
        tracing::warn!(
            sink,
            url = shown_url,
            "WARNING: tls.insecure_skip_verify is on: the server's certificate is not checked, \
             so anyone on the network path can read and change what this sink sends"
        );
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| {
        err(format!(
            "cannot build the http client: {}",
            error_chain(&e.without_url())
        ))
    })
}

/// An error and its causes, joined with `: ` (reqwest's own text says little; the
/// cause, such as "connection refused" or a certificate problem, is in the chain).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

/// A server's text made safe for one log line: control characters become spaces and
/// it is cut to 200 characters (an HTML error page must not flood the log).
pub(crate) fn server_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for c in text.trim().chars().take(200) {
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// The largest answer body read; an answer is a status and a short JSON text.
const MAX_ANSWER: usize = 64 * 1024;

/// Reads at most [`MAX_ANSWER`] bytes of an answer body.
pub(crate) async fn read_limited(mut resp: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(part) = resp.chunk().await? {
        let room = MAX_ANSWER - out.len();
        out.extend_from_slice(&part[..part.len().min(room)]);
        if out.len() >= MAX_ANSWER {
            break;
        }
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_is_one_short_line() {
        let body = format!("<html>\r\n<b>oops</b>\n{}", "y".repeat(1000));
        let t = server_text(body.as_bytes());
        assert!(!t.contains('\n') && !t.contains('\r'));
        assert_eq!(t.chars().count(), 200);
    }

    #[test]
    fn client_tls_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let tls = |ca: Option<std::path::PathBuf>| TlsOptions {
            ca_file: ca,
            ..TlsOptions::default()
        };
        let t = Duration::from_secs(5);
        assert!(build_client("s", "https://x", &tls(None), t).is_ok());
        let missing = dir.path().join("missing.pem");
        let e = build_client("s", "https://x", &tls(Some(missing.clone())), t).unwrap_err();
        assert!(!e.is_retriable());
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = build_client("s", "https://x", &tls(Some(empty)), t).unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
        let mut insecure = tls(None);
        insecure.insecure_skip_verify = true;
        insecure.min_version = TlsVersion::Tls13;
        assert!(build_client("s", "https://x", &insecure, t).is_ok());
    }
}
