//! What an HTTP answer (or a failed attempt) means for the request it answers.
//!
//! Owned here: [`Verdict`] and the rule both sinks share for a status
//! ([`classify_status`]: 2xx delivered; 408, 429, 5xx, timeouts and connection errors
//! retried; 400, 413 and 422 refuse the data; any other status stalls), the verdict of
//! an attempt that got no answer ([`transport_verdict`]), the detail text of a status
//! ([`status_detail`]) and the operator's hint while a sink is stalled ([`stall_hint`]).
//!
//! Not here: HEC's reading of its answer codes (`hec::wire::classify`, which falls back
//! on [`classify_status`]), and what is done with a verdict (`courier`).

use super::client::error_chain;
use reqwest::StatusCode;
use std::time::Duration;

/// What to do after an answer (or a failed attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The receiver has the request.
    Accepted,
    /// Weather (busy, unreachable, timed out): try the same request again after the
    /// backoff (or `retry_after`).
    Retry {
        /// The `sink_errors{kind}` label.
        kind: &'static str,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// A fault of the set-up that no record is to blame for and that waiting alone does
    /// not fix (credentials refused, wrong URL or method): the route stalls, the same
    /// request is tried again with backoff, and the stall shows in logs, metrics and
    /// `/ready` (`stall`). Nothing is dead-lettered.
    Stall {
        /// The `sink_errors{kind}` and `sink_stalled{reason}` label.
        kind: &'static str,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// The receiver refused the data of the request for good: split the request until
    /// the refused records are alone, dead-letter those, deliver the rest.
    Reject {
        /// The `sink_discarded{reason}` label (a fixed string per status).
        reason: &'static str,
        detail: String,
        /// The index of the (first) refused record in the request, when the receiver
        /// names it (HEC's `invalid-event-number`).
        first_bad: Option<usize>,
    },
}

impl Verdict {
    /// The status and the server's text (empty for [`Verdict::Accepted`]).
    pub(crate) fn detail(&self) -> &str {
        match self {
            Verdict::Accepted => "",
            Verdict::Retry { detail, .. }
            | Verdict::Stall { detail, .. }
            | Verdict::Reject { detail, .. } => detail,
        }
    }
}

/// The rule both sinks share for an HTTP status:
/// - 2xx: delivered;
/// - 408 (request timeout), 429 (too many requests), every 5xx: retried (weather);
/// - 400 (bad request), 413 (too large) and 422 (unprocessable): the data is refused,
///   [`Verdict::Reject`] (the request is split to find the records to blame; a 413
///   heals by splitting alone);
/// - any other status, 401 and 403 (credentials), 404 and 405 (URL, method), 407, 411,
///   415, 1xx and 3xx (redirects are not followed) included: [`Verdict::Stall`]. These
///   say the set-up is wrong, not a record; dead-lettering would send every record to
///   the dead-letter file at full speed until someone notices.
pub(crate) fn classify_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: String,
) -> Verdict {
    let retry = |kind| Verdict::Retry {
        kind,
        retry_after,
        detail: detail.clone(),
    };
    let stall = |kind| Verdict::Stall {
        kind,
        retry_after,
        detail: detail.clone(),
    };
    let reject = |reason| Verdict::Reject {
        reason,
        detail: detail.clone(),
        first_bad: None,
    };
    match status.as_u16() {
        200..=299 => Verdict::Accepted,
        408 => retry("http_408"),
        429 => retry("http_429"),
        503 => retry("http_503"),
        500..=599 => retry("http_5xx"),
        400 => reject("http_400"),
        413 => reject("http_413"),
        422 => reject("http_422"),
        401 => stall("http_401"),
        403 => stall("http_403"),
        404 => stall("http_404"),
        405 => stall("http_405"),
        _ if status.is_client_error() => stall("http_4xx"),
        _ => stall("http_unexpected"),
    }
}

/// What the operator is told to look at while a sink is stalled for `kind`.
pub(crate) fn stall_hint(kind: &str) -> &'static str {
    match kind {
        "http_401" | "http_403" | "http_407" => {
            "the receiver refused the credentials (a wrong, rotated or disabled token?)"
        }
        "http_404" | "http_405" => "the receiver has no such endpoint (check the url)",
        "hec_index" => "splunk refused the index (not allowed for this token?)",
        "hec_channel" => "splunk refused the request channel",
        _ => "the receiver refuses every request (check the sink's settings)",
    }
}

/// `http 400 Bad Request` (+ `: text` when there is one).
pub(crate) fn status_detail(status: StatusCode, text: &str) -> String {
    let mut s = format!("http {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        s.push(' ');
        s.push_str(reason);
    }
    if !text.is_empty() {
        s.push_str(": ");
        s.push_str(text);
    }
    s
}

/// A failed attempt that got no answer: timeouts and connection errors (refused,
/// reset, TLS handshake) are retried; so is anything else reqwest reports while
/// sending, except a request it could not even build (a bug, not weather).
pub(crate) fn transport_verdict(e: reqwest::Error) -> Verdict {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_builder() {
        // A request that cannot be built is our bug, not weather nor the data's fault:
        // hold it where it shows.
        return Verdict::Stall {
            kind: "http_request",
            retry_after: None,
            detail: error_chain(&e.without_url()),
        };
    } else {
        "request"
    };
    Verdict::Retry {
        kind,
        retry_after: None,
        detail: error_chain(&e.without_url()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classification() {
        let c = |s: u16| classify_status(StatusCode::from_u16(s).unwrap(), None, String::new());
        for s in [200, 201, 204] {
            assert_eq!(c(s), Verdict::Accepted, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(c(s), Verdict::Retry { .. }), "{s}");
        }
        for (s, kind) in [
            (401, "http_401"),
            (403, "http_403"),
            (404, "http_404"),
            (405, "http_405"),
            (407, "http_4xx"),
            (415, "http_4xx"),
            (301, "http_unexpected"),
            (302, "http_unexpected"),
        ] {
            assert_eq!(
                c(s),
                Verdict::Stall {
                    kind,
                    retry_after: None,
                    detail: String::new()
                },
                "{s}"
            );
        }
        for (s, label) in [(400, "http_400"), (413, "http_413"), (422, "http_422")] {
            assert_eq!(
                c(s),
                Verdict::Reject {
                    reason: label,
                    detail: String::new(),
                    first_bad: None,
                },
                "{s}"
            );
        }
        let v = classify_status(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(3)),
            "busy".into(),
        );
        assert_eq!(
            v,
            Verdict::Retry {
                kind: "http_503",
                retry_after: Some(Duration::from_secs(3)),
                detail: "busy".into()
            }
        );
    }
}
