//! Reading a running daemon's HTTP endpoints (`/metrics`, `/health`, `/ready`) and the samples in
//! a Prometheus text.

use std::path::Path;
use std::time::Duration;

/// `GET http://addr/path`: the status and the body.
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Polls `GET addr/path` until `done` holds for (status, body); panics after `within`
/// with the last answer and the daemon's log.
pub async fn poll_endpoint(
    addr: &str,
    path: &str,
    config: &Path,
    what: &str,
    mut done: impl FnMut(u16, &str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let last = match reqwest::get(format!("http://{addr}{path}")).await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                if done(status, &body) {
                    return body;
                }
                format!("{status} {body}")
            }
            Err(e) => e.to_string(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} on {path}; last answer: {last}\nc42fwd log:\n{}",
            super::daemon::log_tail(config)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A metric's value in a Prometheus text (0 when the line is absent).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `GET http://addr/metrics`: the Prometheus text, `None` when the endpoint does not
/// answer or answers with an error status.
pub async fn scrape(addr: &str) -> Option<String> {
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .ok()?;
    resp.text().await.ok()
}

/// The sum of the samples of `name` whose line holds every one of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
