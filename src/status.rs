//! `c42fwd status`: what a running daemon says about itself, read from the Prometheus
//! text of its metrics endpoint. Pure: [`Scrape::parse`] reads a text, [`status`] turns
//! one scrape (and the one before it, for rates) into a [`Status`], [`render`] prints it
//! as tables; `Status` is also the `--json` output. The command itself (configuration,
//! HTTP, `--watch`) is `cli/status.rs`.
//!
//! What each figure is (the metric names are in the README's table):
//! - a source's **position** is the watermark it has read up to
//!   (`c42fwd_source_position_seconds`), **age** how far that is behind now, **behind**
//!   how far it is behind the lag window (`c42fwd_source_behind_seconds`, computed by the
//!   daemon at the scrape); **rate** is events forwarded per second between the two
//!   scrapes (`c42fwd_source_events_total`, over the daemon's own `c42fwd_uptime_seconds`
//!   between them); **errors** the runs that failed or panicked
//!   (`c42fwd_task_failures_total` and `c42fwd_task_panics_total` of `source:NAME`);
//! - a sink's **pending** is the batches handed to it and not settled
//!   (`c42fwd_sink_pending_batches`), **delivered** the records it delivered, **rate**
//!   as for sources, **errors** its write errors (`c42fwd_sink_errors_total`, each
//!   retried), **discarded** the records dead-lettered or dropped by policy.

use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

/// One sample of a Prometheus text.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The samples of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Reads a Prometheus (or OpenMetrics) text exposition; the error names the line.
    pub fn parse(text: &str) -> Result<Scrape, String> {
        let mut samples = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            samples.push(sample(line).map_err(|e| format!("line {}: {e}: {line}", n + 1))?);
        }
        Ok(Scrape { samples })
    }

    /// The value of `name` with the label `key="value"` (the first such sample).
    pub fn get(&self, name: &str, key: &str, value: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.label(key) == Some(value))
            .map(|s| s.value)
    }

    /// The sum of the samples of `name` with the label `key="value"`.
    pub fn sum(&self, name: &str, key: &str, value: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && s.label(key) == Some(value))
            .map(|s| s.value)
            .sum()
    }

    /// The value of the unlabelled `name`.
    pub fn scalar(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels.is_empty())
            .map(|s| s.value)
    }

    /// Every value of the label `key` among the samples of `names`.
    fn label_values(&self, names: &[&str], key: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| names.contains(&s.name.as_str()))
            .filter_map(|s| s.label(key).map(str::to_string))
            .collect()
    }

    /// A sample of `name` with `key="value"`, for its other labels.
    fn find(&self, name: &str, key: &str, value: &str) -> Option<&Sample> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.label(key) == Some(value))
    }

    /// Whether this looks like a c42fwd daemon's metrics.
    pub fn is_c42fwd(&self) -> bool {
        self.samples.iter().any(|s| s.name == "c42fwd_build_info")
    }
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One sample line: `name{k="v",...} value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // Skip separators.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(&(start, c)) = chars.peek() else {
                return Err("unterminated labels".into());
            };
            if c == '}' {
                rest = &after[start + 1..];
                break;
            }
            let mut key_end = start;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    key_end = i;
                    break;
                }
            }
            let key = after[start..key_end].trim();
            if key.is_empty() {
                return Err("a label without a name".into());
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key}: no quoted value"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("label {key}: unterminated value"));
            }
            labels.push((key.to_string(), value));
        }
    }
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = value
        .parse::<f64>()
        .map_err(|e| format!("value `{value}`: {e}"))?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// What `c42fwd status` shows, and prints as JSON with `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The endpoint, `HOST:PORT`.
    pub addr: String,
    /// When it was scraped (RFC 3339).
    pub at: String,
    pub version: Option<String>,
    pub uptime_seconds: Option<f64>,
    /// The time between the two scrapes the rates are computed over, by the daemon's
    /// clock; `None` without an earlier scrape (or after a restart of the daemon).
    pub rate_interval_seconds: Option<f64>,
    pub sources: Vec<SourceStatus>,
    pub sinks: Vec<SinkStatus>,
    /// Sources of the configuration the daemon does not report (not started, or it runs
    /// another configuration); set by the caller, which knows the configuration.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_reported: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub kind: Option<String>,
    pub tenant: Option<String>,
    /// The watermark read up to (RFC 3339).
    pub position: Option<String>,
    /// The committed watermark (RFC 3339): where a restart starts.
    pub committed: Option<String>,
    /// Now minus the position.
    pub age_seconds: Option<f64>,
    /// How far the position is behind the lag window.
    pub behind_seconds: Option<f64>,
    pub events_total: u64,
    /// Events forwarded per second between the two scrapes.
    pub events_per_second: Option<f64>,
    /// Runs that failed or panicked (each restarted).
    pub errors: u64,
    /// The last page read from the API (RFC 3339).
    pub last_poll: Option<String>,
    pub last_poll_age_seconds: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkStatus {
    pub name: String,
    /// Batches handed to the sink and not settled.
    pub pending_batches: Option<i64>,
    /// Batches waiting in its queue (part of `pending_batches`).
    pub queued_batches: Option<i64>,
    pub delivered_total: u64,
    pub delivered_per_second: Option<f64>,
    /// Write errors (each retried).
    pub errors: u64,
    /// Records dead-lettered or dropped by policy.
    pub discarded: u64,
    /// The last delivery (RFC 3339).
    pub last_delivery: Option<String>,
    pub last_delivery_age_seconds: Option<f64>,
    /// The reasons it is stalled for, if it is.
    pub stalled: Vec<String>,
}

fn rfc3339(unix: f64) -> Option<String> {
    if unix <= 0.0 || !unix.is_finite() {
        return None;
    }
    DateTime::<Utc>::from_timestamp(unix.floor() as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn age(now: DateTime<Utc>, unix: Option<f64>) -> Option<f64> {
    let unix = unix.filter(|u| *u > 0.0)?;
    Some((crate::metrics::unix_seconds(now) - unix).max(0.0))
}

/// The status shown for the scrape `cur` of `addr` at `now`, with rates against `prev`
/// (an earlier scrape of the same daemon).
pub fn status(addr: &str, prev: Option<&Scrape>, cur: &Scrape, now: DateTime<Utc>) -> Status {
    let uptime = cur.scalar("c42fwd_uptime_seconds");
    let interval = prev
        .and_then(|p| Some(uptime? - p.scalar("c42fwd_uptime_seconds")?))
        .filter(|dt| *dt > 0.0);
    let rate = |name: &str, key: &str, value: &str| -> Option<f64> {
        let dt = interval?;
        let before = prev?.sum(name, key, value);
        let after = cur.sum(name, key, value);
        (after >= before).then(|| (after - before) / dt)
    };
    let source_names = cur.label_values(
        &[
            "c42fwd_source_info",
            "c42fwd_source_events_total",
            "c42fwd_source_position_seconds",
            "c42fwd_source_watermark_seconds",
        ],
        "source",
    );
    let sources = source_names
        .into_iter()
        .map(|name| {
            let info = cur.find("c42fwd_source_info", "source", &name);
            let position = cur.get("c42fwd_source_position_seconds", "source", &name);
            let last_poll = cur.get("c42fwd_source_last_poll_seconds", "source", &name);
            let task = format!("source:{name}");
            SourceStatus {
                kind: info.and_then(|s| s.label("kind")).map(str::to_string),
                tenant: info.and_then(|s| s.label("tenant")).map(str::to_string),
                position: position.and_then(rfc3339),
                committed: cur
                    .get("c42fwd_source_watermark_seconds", "source", &name)
                    .and_then(rfc3339),
                age_seconds: age(now, position),
                behind_seconds: cur.get("c42fwd_source_behind_seconds", "source", &name),
                events_total: cur.sum("c42fwd_source_events_total", "source", &name) as u64,
                events_per_second: rate("c42fwd_source_events_total", "source", &name),
                errors: (cur.sum("c42fwd_task_failures_total", "task", &task)
                    + cur.sum("c42fwd_task_panics_total", "task", &task))
                    as u64,
                last_poll: last_poll.and_then(rfc3339),
                last_poll_age_seconds: age(now, last_poll),
                name,
            }
        })
        .collect();
    let sink_names = cur.label_values(
        &[
            "c42fwd_sink_events_total",
            "c42fwd_sink_pending_batches",
            "c42fwd_sink_queue_batches",
        ],
        "sink",
    );
    let sinks = sink_names
        .into_iter()
        .map(|name| {
            let last = cur.get("c42fwd_sink_last_delivery_seconds", "sink", &name);
            SinkStatus {
                pending_batches: cur
                    .get("c42fwd_sink_pending_batches", "sink", &name)
                    .map(|v| v as i64),
                queued_batches: cur
                    .get("c42fwd_sink_queue_batches", "sink", &name)
                    .map(|v| v as i64),
                delivered_total: cur.sum("c42fwd_sink_events_total", "sink", &name) as u64,
                delivered_per_second: rate("c42fwd_sink_events_total", "sink", &name),
                errors: cur.sum("c42fwd_sink_errors_total", "sink", &name) as u64,
                discarded: cur.sum("c42fwd_sink_discarded_total", "sink", &name) as u64,
                last_delivery: last.and_then(rfc3339),
                last_delivery_age_seconds: age(now, last),
                stalled: cur
                    .samples
                    .iter()
                    .filter(|s| {
                        s.name == "c42fwd_sink_stalled"
                            && s.label("sink") == Some(name.as_str())
                            && s.value > 0.0
                    })
                    .filter_map(|s| s.label("reason").map(str::to_string))
                    .collect(),
                name,
            }
        })
        .collect();
    Status {
        addr: addr.to_string(),
        at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        version: cur
            .samples
            .iter()
            .find(|s| s.name == "c42fwd_build_info")
            .and_then(|s| s.label("version"))
            .map(str::to_string),
        uptime_seconds: uptime,
        rate_interval_seconds: interval,
        sources,
        sinks,
        not_reported: Vec::new(),
    }
}

fn secs(s: Option<f64>) -> String {
    match s {
        Some(s) if s.is_finite() && s >= 0.0 => {
            humantime::format_duration(Duration::from_secs(s.round() as u64)).to_string()
        }
        _ => "-".to_string(),
    }
}

fn ago(s: Option<f64>) -> String {
    match s {
        Some(_) => format!("{} ago", secs(s)),
        None => "never".to_string(),
    }
}

fn per_second(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.1}/s"))
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Columns padded to their widest cell, two spaces apart.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `status` as the tables `c42fwd status` prints.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "c42fwd {} at {}, up {}, {}{}",
        s.version.as_deref().unwrap_or("(unknown version)"),
        s.addr,
        secs(s.uptime_seconds),
        s.at,
        match s.rate_interval_seconds {
            Some(dt) => format!("; rates over the last {dt:.1}s"),
            None => String::new(),
        }
    );
    out.push('\n');
    if s.sources.is_empty() {
        out.push_str("no sources reported\n");
    } else {
        let rows: Vec<Vec<String>> = s
            .sources
            .iter()
            .map(|x| {
                vec![
                    x.name.clone(),
                    or_dash(x.kind.as_ref()),
                    or_dash(x.tenant.as_ref()),
                    or_dash(x.position.as_ref()),
                    secs(x.age_seconds),
                    secs(x.behind_seconds),
                    per_second(x.events_per_second),
                    x.events_total.to_string(),
                    x.errors.to_string(),
                    ago(x.last_poll_age_seconds),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "SOURCE",
                "KIND",
                "TENANT",
                "POSITION",
                "AGE",
                "BEHIND",
                "RATE",
                "EVENTS",
                "ERRORS",
                "LAST POLL",
            ],
            &rows,
        ));
    }
    if !s.not_reported.is_empty() {
        let _ = writeln!(
            out,
            "not reported by the daemon (not started, or it runs another configuration): {}",
            s.not_reported.join(", ")
        );
    }
    out.push('\n');
    if s.sinks.is_empty() {
        out.push_str("no sinks reported\n");
    } else {
        let rows: Vec<Vec<String>> = s
            .sinks
            .iter()
            .map(|x| {
                vec![
                    x.name.clone(),
                    or_dash(x.pending_batches),
                    x.delivered_total.to_string(),
                    per_second(x.delivered_per_second),
                    x.errors.to_string(),
                    x.discarded.to_string(),
                    ago(x.last_delivery_age_seconds),
                    if x.stalled.is_empty() {
                        "ok".to_string()
                    } else {
                        format!("STALLED ({})", x.stalled.join(", "))
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "SINK",
                "PENDING",
                "DELIVERED",
                "RATE",
                "ERRORS",
                "DISCARDED",
                "LAST DELIVERY",
                "STATE",
            ],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two scrapes of a daemon 2 s apart, as its endpoint renders them (OpenMetrics).
    const BEFORE: &str = r#"# HELP c42fwd_source_events Events read and forwarded.
# TYPE c42fwd_source_events counter
c42fwd_source_events_total{source="audit"} 1000
c42fwd_source_events_total{source="alerts"} 7
# TYPE c42fwd_sink_events counter
c42fwd_sink_events_total{sink="siem"} 900
# TYPE c42fwd_uptime_seconds gauge
c42fwd_uptime_seconds 100.0
# EOF
"#;

    const AFTER: &str = r#"# HELP c42fwd_source_events Events read and forwarded.
# TYPE c42fwd_source_events counter
c42fwd_source_events_total{source="audit"} 1500
c42fwd_source_events_total{source="alerts"} 7
# TYPE c42fwd_source_info gauge
c42fwd_source_info{source="audit",kind="audit_log",tenant="acme"} 1
c42fwd_source_info{source="alerts",kind="alerts",tenant="acme \"eu\""} 1
c42fwd_source_position_seconds{source="audit"} 1767261600.5
c42fwd_source_watermark_seconds{source="audit"} 1767261500.0
c42fwd_source_behind_seconds{source="audit"} 2400.2
c42fwd_source_position_seconds{source="alerts"} 1767268200.0
c42fwd_source_behind_seconds{source="alerts"} 0.0
c42fwd_source_last_poll_seconds{source="audit"} 1767268797.0
c42fwd_task_failures_total{task="source:audit"} 2
c42fwd_task_panics_total{task="source:audit"} 1
c42fwd_task_failures_total{task="sink:siem"} 5
c42fwd_sink_events_total{sink="siem"} 1400
c42fwd_sink_events_total{sink="splunk"} 0
c42fwd_sink_pending_batches{sink="siem"} 3
c42fwd_sink_queue_batches{sink="siem"} 1
c42fwd_sink_errors_total{sink="siem",kind="io"} 4
c42fwd_sink_errors_total{sink="siem",kind="timeout"} 1
c42fwd_sink_discarded_total{sink="siem",reason="oversize"} 2
c42fwd_sink_last_delivery_seconds{sink="siem"} 1767268799.0
c42fwd_sink_stalled{sink="splunk",reason="http_403"} 1
c42fwd_sink_stalled{sink="siem",reason="http_403"} 0
c42fwd_build_info{version="1.2.3"} 1
c42fwd_uptime_seconds 102.0
# EOF
"#;

    fn now() -> DateTime<Utc> {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn parses_names_labels_escapes_and_values() {
        let s = Scrape::parse(AFTER).unwrap();
        assert_eq!(
            s.get("c42fwd_source_position_seconds", "source", "audit"),
            Some(1767261600.5)
        );
        let info = s.find("c42fwd_source_info", "source", "alerts").unwrap();
        assert_eq!(info.label("tenant"), Some("acme \"eu\""));
        assert_eq!(s.sum("c42fwd_sink_errors_total", "sink", "siem"), 5.0);
        assert_eq!(s.scalar("c42fwd_uptime_seconds"), Some(102.0));
        assert!(s.is_c42fwd());
        assert!(!Scrape::parse(BEFORE).unwrap().is_c42fwd());
        let e = Scrape::parse("ok\n").unwrap_err();
        assert!(e.starts_with("line 1: "), "{e}");
        let e = Scrape::parse("# x\na{b=\"c} 1\n").unwrap_err();
        assert!(e.starts_with("line 2: label b: unterminated value"), "{e}");
        assert!(Scrape::parse("a{b=\"c\"} x\n").is_err());
    }

    #[test]
    fn the_status_of_two_scrapes() {
        let s = status(
            "127.0.0.1:9842",
            Some(&Scrape::parse(BEFORE).unwrap()),
            &Scrape::parse(AFTER).unwrap(),
            now(),
        );
        assert_eq!(s.rate_interval_seconds, Some(2.0));
        assert_eq!(s.version.as_deref(), Some("1.2.3"));
        let names: Vec<_> = s.sources.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["alerts", "audit"]);
        let audit = &s.sources[1];
        assert_eq!(audit.kind.as_deref(), Some("audit_log"));
        assert_eq!(audit.tenant.as_deref(), Some("acme"));
        assert_eq!(audit.position.as_deref(), Some("2026-01-01T10:00:00Z"));
        assert_eq!(audit.committed.as_deref(), Some("2026-01-01T09:58:20Z"));
        assert_eq!(audit.age_seconds, Some(7199.5));
        assert_eq!(audit.behind_seconds, Some(2400.2));
        assert_eq!(audit.events_total, 1500);
        assert_eq!(audit.events_per_second, Some(250.0));
        assert_eq!(audit.errors, 3, "two failed runs and a panic");
        assert_eq!(audit.last_poll_age_seconds, Some(3.0));
        assert_eq!(s.sources[0].events_per_second, Some(0.0));
        assert_eq!(s.sources[0].last_poll, None);
        let siem = &s.sinks[0];
        assert_eq!(siem.name, "siem");
        assert_eq!(
            (siem.pending_batches, siem.queued_batches),
            (Some(3), Some(1))
        );
        assert_eq!(siem.delivered_per_second, Some(250.0));
        assert_eq!((siem.errors, siem.discarded), (5, 2));
        assert!(siem.stalled.is_empty(), "a stall gauge at 0 is no stall");
        assert_eq!(s.sinks[1].stalled, ["http_403"]);
        assert_eq!(s.sinks[1].delivered_per_second, Some(0.0), "absent: none");
        // Without an earlier scrape, or after a restart (uptime went down): no rates.
        let cur = Scrape::parse(AFTER).unwrap();
        let alone = status("a", None, &cur, now());
        assert_eq!(alone.sources[1].events_per_second, None);
        let alone = status("a", Some(&cur), &Scrape::parse(BEFORE).unwrap(), now());
        assert_eq!(alone.rate_interval_seconds, None);
    }

    #[test]
    fn renders_tables() {
        let s = status(
            "127.0.0.1:9842",
            Some(&Scrape::parse(BEFORE).unwrap()),
            &Scrape::parse(AFTER).unwrap(),
            now(),
        );
        let text = render(&s);
        let expected = r#"c42fwd 1.2.3 at 127.0.0.1:9842, up 1m 42s, 2026-01-01T12:00:00Z; rates over the last 2.0s

SOURCE  KIND       TENANT     POSITION              AGE  BEHIND  RATE     EVENTS  ERRORS  LAST POLL
alerts  alerts     acme "eu"  2026-01-01T11:50:00Z  10m  0s      0.0/s    7       0       never
audit   audit_log  acme       2026-01-01T10:00:00Z  2h   40m     250.0/s  1500    3       3s ago

SINK    PENDING  DELIVERED  RATE     ERRORS  DISCARDED  LAST DELIVERY  STATE
siem    3        1400       250.0/s  5       2          1s ago         ok
splunk  -        0          0.0/s    0       0          never          STALLED (http_403)
"#;
        assert_eq!(text, expected, "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["sources"][1]["behind_seconds"], 2400.2);
        assert_eq!(json["sinks"][0]["pending_batches"], 3);
        let mut s = s;
        s.not_reported = vec!["sync".into()];
        assert!(render(&s).contains(
            "\nnot reported by the daemon (not started, or it runs another configuration): sync\n\nSINK"
        ));
        let empty = render(&status("x", None, &Scrape::default(), now()));
        assert!(empty.contains("no sources reported\n"), "{empty}");
        assert!(empty.contains("no sinks reported\n"), "{empty}");
    }
}
