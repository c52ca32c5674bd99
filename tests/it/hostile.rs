//! A hostile Code42 API against the real `c42fwd` binary: a small axum server (Incydr
//! login and `search-audit-log` only) that lists 3,000 events the way a broken or
//! malicious server would: one event with a later timestamp inside a full page, an
//! event from the future listed in every window, pages newest first, short pages whose
//! `totalResultCount` says more exist, a body that never ends, a body that stalls, and a
//! 1 GiB error body (streamed, never allocated).
//!
//! For each: every event arrives exactly once in the file sink, and the metric (read from
//! the daemon's `/metrics`) and the WARN line that name the anomaly appear. For the
//! bodies that would exhaust memory, the daemon's peak RSS (`VmHWM`) stays under
//! [`RSS_BOUND`]. The listing lies are told a second time to a backlog read in concurrent
//! time slices (four requests at once, slow enough to overlap): every event arrives,
//! exactly once but the event from the future, which each slice that lists it forwards.

use crate::support::config::{file_sink_from_audit, head, METRICS_ON_A_FREE_PORT};
use crate::support::daemon::{log_path, log_tail, Daemon};
use crate::support::metrics::{metric_sum, scrape};
use crate::support::{file_records, multiset};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Events of the tenant.
const EVENTS: usize = 3_000;
/// The daemon's page size.
const PAGE: usize = 1_000;
/// Peak RSS allowed to the daemon while it is sent a body that never ends or a huge
/// error body.
const RSS_BOUND: u64 = 200 * 1024 * 1024;
/// Debug builds on a shared 2-core machine.
const DEADLINE: Duration = Duration::from_secs(90);

/// How the server lies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lie {
    /// One event (listing position 500) says it occurred near the end of the window.
    LaterTimestamp,
    /// One event a day in the future, listed among the others in every query.
    Future,
    /// Every query listed newest first.
    NewestFirst,
    /// The first answers that would be full pages come cut to 750 events, with the
    /// true `totalResultCount`.
    ShortPage,
    /// Every answer that would be a full page comes cut so.
    AlwaysShort,
    /// The first search answer is a body that never ends.
    EndlessBody,
    /// The first search answer stalls after its first bytes, for ever.
    StalledBody,
    /// The first search answer is a 500 with a 1 GiB body.
    HugeErrorBody,
}

struct Hostile {
    lie: Lie,
    /// (time, JSON text), in listing order.
    events: Vec<(DateTime<Utc>, String)>,
    /// How many more lies of the "first answers" kinds are due.
    lies_left: AtomicU32,
    /// How long each search takes before it is answered (so that concurrent ones
    /// overlap).
    delay: Duration,
    /// Searches being answered now, and the most at once.
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn event_json(i: usize, at: DateTime<Utc>) -> String {
    format!(
        r#"{{"type$":"audit_log::logged_in/1","actorId":"u{i}","actorName":"user{i}@example.com","actorIpAddress":"10.0.0.{}","timestamp":"{}","success":true}}"#,
        i % 250,
        iso(at)
    )
}

impl Hostile {
    fn new(lie: Lie) -> Arc<Hostile> {
        Hostile::slow(lie, Duration::ZERO)
    }

    /// The same lies, each search answered after `delay`.
    fn slow(lie: Lie, delay: Duration) -> Arc<Hostile> {
        let base = Utc::now() - TimeDelta::minutes(30);
        let mut events: Vec<(DateTime<Utc>, String)> = (0..EVENTS)
            .map(|i| {
                let at = base + TimeDelta::milliseconds(500 * i as i64);
                (at, event_json(i, at))
            })
            .collect();
        match lie {
            Lie::LaterTimestamp => {
                let at = base + TimeDelta::milliseconds(500 * (EVENTS as i64 - 50) + 250);
                events[500] = (at, event_json(90_500, at));
            }
            Lie::Future => {
                let at = Utc::now() + TimeDelta::days(1);
                events.insert(1_200, (at, event_json(91_200, at)));
            }
            _ => {}
        }
        let lies = match lie {
            Lie::ShortPage => 2,
            Lie::EndlessBody | Lie::StalledBody | Lie::HugeErrorBody => 1,
            _ => 0,
        };
        Arc::new(Hostile {
            lie,
            events,
            lies_left: AtomicU32::new(lies),
            delay,
            in_flight: AtomicU32::new(0),
            max_in_flight: AtomicU32::new(0),
        })
    }

    fn take_lie(&self) -> bool {
        self.lies_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Every event the tenant has, as a multiset of JSON texts.
    fn truth(&self) -> HashMap<String, usize> {
        multiset(self.events.iter().map(|(_, e)| e.clone()))
    }
}

async fn oauth() -> Response {
    axum::Json(serde_json::json!({
        "access_token": "hostile-token",
        "token_type": "bearer",
        "expires_in": 900,
    }))
    .into_response()
}

fn parse_time(v: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("an ISO time"))
        .expect("an ISO time")
        .with_timezone(&Utc)
}

/// A body of `chunks` copies of one 64 KiB chunk after `prefix` (`None`: for ever).
fn streamed(prefix: &'static str, fill: u8, chunks: Option<usize>) -> Body {
    let chunk = Bytes::from(vec![fill; 64 * 1024]);
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
        prefix.as_bytes(),
    ))]);
    match chunks {
        Some(n) => {
            Body::from_stream(body.chain(futures_util::stream::repeat(chunk).take(n).map(Ok)))
        }
        None => Body::from_stream(body.chain(futures_util::stream::repeat(chunk).map(Ok))),
    }
}

/// Counts a search out of `Hostile::in_flight` when dropped.
struct Searching<'a>(&'a Hostile);

impl Drop for Searching<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn search(State(h): State<Arc<Hostile>>, body: Bytes) -> Response {
    let now = h.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    h.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _searching = Searching(&h);
    if !h.delay.is_zero() {
        tokio::time::sleep(h.delay).await;
    }
    let q: serde_json::Value = serde_json::from_slice(&body).expect("a json query");
    let (start, end) = (
        parse_time(&q["dateRange"]["startTime"]),
        parse_time(&q["dateRange"]["endTime"]),
    );
    let page = q["page"].as_u64().expect("page") as usize;
    let size = q["pageSize"].as_u64().expect("pageSize") as usize;
    match h.lie {
        Lie::EndlessBody if h.take_lie() => {
            // One event that never ends.
            return Response::new(streamed(r#"{"events":[{"x":""#, b'a', None));
        }
        Lie::StalledBody if h.take_lie() => {
            let stalled = futures_util::stream::iter([Ok::<_, std::io::Error>(
                Bytes::from_static(br#"{"events":[{"x":1},"#),
            )])
            .chain(futures_util::stream::pending());
            return Response::new(Body::from_stream(stalled));
        }
        Lie::HugeErrorBody if h.take_lie() => {
            let mut r = Response::new(streamed("internal error ", b'e', Some(16 * 1024)));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
        _ => {}
    }
    let mut matching: Vec<&String> = h
        .events
        .iter()
        // The event from the future in every query, whatever its window (a query of a
        // catch-up slice ends long before now: the events after it are not listed).
        .filter(|(t, _)| (*t >= start && *t < end) || (h.lie == Lie::Future && *t > Utc::now()))
        .map(|(_, e)| e)
        .collect();
    if h.lie == Lie::NewestFirst {
        matching.reverse();
    }
    let total = matching.len();
    let mut events: Vec<&String> = matching.into_iter().skip(page * size).take(size).collect();
    let cut = match h.lie {
        Lie::ShortPage => events.len() == size && h.take_lie(),
        Lie::AlwaysShort => true,
        _ => false,
    };
    if cut && events.len() == size {
        events.truncate(size * 3 / 4);
    }
    let mut out = String::from(r#"{"events":["#);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push(']');
    if matches!(h.lie, Lie::ShortPage | Lie::AlwaysShort) {
        out.push_str(&format!(r#","totalResultCount":{total}"#));
    }
    out.push('}');
    ([("content-type", "application/json")], out).into_response()
}

/// Starts the hostile server on 127.0.0.1 (port 0); returns its base URL.
async fn serve(h: Arc<Hostile>) -> String {
    let app = axum::Router::new()
        .route("/v1/oauth", post(oauth))
        .route("/v1/audit/search-audit-log", post(search))
        .with_state(h);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    out: PathBuf,
}

fn write_config(base: &str, extra_tenant: &str, page: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c42fwd.toml");
    let out = dir.path().join("out.ndjson");
    std::fs::write(
        &config,
        format!(
            r#"
{head}
{METRICS_ON_A_FREE_PORT}
[tenants.hostile]
api = "incydr"
base_url = "{base}"
client_id = "id"
client_secret = "secret"
request_timeout = "3s"
{extra_tenant}

[sources.audit]
type = "audit_log"
tenant = "hostile"
start = "1h"
lag = "1s"
poll_interval = "300ms"
page_size = {page}

{file_sink}"#,
            head = head(dir.path(), "5s"),
            file_sink = file_sink_from_audit(&out),
        ),
    )
    .unwrap();
    Setup {
        _dir: dir,
        config,
        out,
    }
}

/// The sum of a counter's samples whose line holds every one of `labels`.
async fn metric(addr: &str, name: &str, labels: &[&str]) -> u64 {
    metric_sum(&scrape(addr).await.unwrap_or_default(), name, labels) as u64
}

fn peak_rss(daemon: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb * 1024
}

/// Runs the daemon against a server telling `lie` until every event arrived, checks
/// exactly once and that `metric_name{labels}` counted something and the log has
/// `log_says`; returns the daemon's peak RSS.
async fn every_event_once(
    lie: Lie,
    extra_tenant: &str,
    metric_name: &str,
    labels: &[&str],
    log_says: &str,
) -> u64 {
    let told = Told {
        metric_name,
        labels,
        log_says,
    };
    every_event_arrives(Hostile::new(lie), extra_tenant, PAGE, &told, |_| false).await
}

/// What a lie must leave behind: a metric that counted it (`metric_name` with every one
/// of `labels`) and a log line.
struct Told<'a> {
    metric_name: &'a str,
    labels: &'a [&'a str],
    log_says: &'a str,
}

/// [`every_event_once`] against `h` with pages of `page`, where an event for which
/// `may_repeat` holds may arrive more often than the tenant has it (never less).
async fn every_event_arrives(
    h: Arc<Hostile>,
    extra_tenant: &str,
    page: usize,
    told: &Told<'_>,
    may_repeat: impl Fn(&str) -> bool,
) -> u64 {
    let Told {
        metric_name,
        labels,
        log_says,
    } = *told;
    let base = serve(h.clone()).await;
    let setup = write_config(&base, extra_tenant, page);
    let daemon = Daemon::start(&setup.config).await;
    let addr = daemon.metrics_addr().await;
    let truth = h.truth();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let got = file_records(&setup.out);
        if truth.iter().all(|(k, n)| got.get(k) >= Some(n)) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let missing = truth.keys().filter(|k| !got.contains_key(*k)).count();
            panic!(
                "not every event arrived: {missing} of {} missing\nc42fwd log:\n{}",
                truth.len(),
                log_tail(&setup.config)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut counted = 0;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    while counted == 0 && tokio::time::Instant::now() < give_up {
        counted = metric(&addr, metric_name, labels).await;
        if counted == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        counted > 0,
        "{metric_name}{labels:?} counted nothing\nc42fwd log:\n{}",
        log_tail(&setup.config)
    );
    // A few more polls: nothing may come twice.
    let polled = metric(&addr, "c42fwd_api_requests_total", &["search-audit-log"]).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(&addr, "c42fwd_api_requests_total", &["search-audit-log"]).await < polled + 3 {
        assert!(
            tokio::time::Instant::now() < until,
            "the source stopped polling"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = peak_rss(&daemon);
    assert!(daemon.terminate().await.success(), "c42fwd exits 0");
    let got = file_records(&setup.out);
    for (k, n) in &got {
        if may_repeat(k) {
            assert!(truth.get(k) <= Some(n), "{k}");
            continue;
        }
        assert_eq!(
            Some(n),
            truth.get(k),
            "received {n} times, the tenant has it {:?} times: {k}",
            truth.get(k)
        );
    }
    let log = std::fs::read_to_string(log_path(&setup.config)).unwrap();
    assert!(
        log.contains(log_says),
        "the log does not say {log_says:?}:\n{}",
        log_tail(&setup.config)
    );
    assert!(
        !log.contains("hostile-token"),
        "the access token is in the log"
    );
    rss
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_later_timestamp_inside_a_full_page_loses_nothing() {
    every_event_once(
        Lie::LaterTimestamp,
        "",
        "c42fwd_source_out_of_order_total",
        &[r#"reason="out_of_order""#, r#"source="audit""#],
        "out of time order",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_the_future_is_forwarded_once() {
    every_event_once(
        Lie::Future,
        // One page at a time: the lie is told to the poll's own queries (a backlog
        // read in slices asks other ones).
        "max_concurrent_requests = 1",
        "c42fwd_source_out_of_order_total",
        &[r#"reason="future""#],
        "outside the query window",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_listed_newest_first_lose_nothing() {
    every_event_once(
        Lie::NewestFirst,
        "",
        "c42fwd_source_out_of_order_total",
        &[r#"reason="out_of_order""#],
        "out of time order",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_page_with_a_larger_count_is_asked_again() {
    every_event_once(
        Lie::ShortPage,
        // One page at a time: the lie is told to the poll's own queries (a backlog
        // read in slices asks other ones).
        "max_concurrent_requests = 1",
        "c42fwd_source_short_pages_total",
        &[r#"source="audit""#],
        "short page while its own count says more results exist",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_is_cut_off_and_memory_stays_bounded() {
    // A cap the debug build reaches well within the request timeout (the timeout is
    // the other bound, see the stalled body).
    let rss = every_event_once(
        Lie::EndlessBody,
        "max_response_bytes = 4194304",
        "c42fwd_api_responses_cut_total",
        &[r#"reason="size""#],
        "larger than asked for",
    )
    .await;
    assert!(rss < RSS_BOUND, "peak RSS {} MiB", rss >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_times_out_and_is_retried() {
    every_event_once(
        Lie::StalledBody,
        "",
        "c42fwd_api_retries_total",
        &[r#"reason="timeout""#],
        "api call failed, retrying",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_error_body_is_read_only_in_part() {
    let rss = every_event_once(
        Lie::HugeErrorBody,
        "",
        "c42fwd_api_responses_cut_total",
        &[r#"reason="error_body""#],
        "server error 500",
    )
    .await;
    assert!(rss < RSS_BOUND, "peak RSS {} MiB", rss >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_keeps_contradicting_its_count_stops_the_source_with_an_error() {
    let h = Hostile::new(Lie::AlwaysShort);
    let base = serve(h.clone()).await;
    let setup = write_config(&base, "", PAGE);
    let daemon = Daemon::start(&setup.config).await;
    let addr = daemon.metrics_addr().await;
    let says = "the source stops rather than guess where the data ends";
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !std::fs::read_to_string(log_path(&setup.config))
        .unwrap_or_default()
        .contains(says)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no error for the contradicting api\nc42fwd log:\n{}",
            log_tail(&setup.config)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric(&addr, "c42fwd_source_short_pages_total", &[]).await >= 3);
    assert!(daemon.terminate().await.success());
    let log = std::fs::read_to_string(log_path(&setup.config)).unwrap();
    let line = log.lines().find(|l| l.contains(says)).unwrap();
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("source audit")
            && line.contains("(750 results in all)")
            && line.contains("said 3000"),
        "{line}"
    );
    // What the short pages held went out, each once, and nothing was guessed beyond.
    let got = file_records(&setup.out);
    assert!(got.values().all(|n| *n == 1), "an event went out twice");
    assert_eq!(got.len(), PAGE * 3 / 4, "the events of the short page");
}

/// The lies above told to a backlog read in concurrent time slices: the tenant allows
/// four requests at once, each search takes 20 ms (so that they overlap), pages of 200
/// (so that slices have full pages to cut short). The server saw more than one search
/// at once, and no event is lost.
async fn read_in_slices(lie: Lie, told: Told<'_>, may_repeat: impl Fn(&str) -> bool) {
    let h = Hostile::slow(lie, Duration::from_millis(20));
    every_event_arrives(
        h.clone(),
        "max_concurrent_requests = 4",
        200,
        &told,
        may_repeat,
    )
    .await;
    let at_once = h.max_in_flight.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&at_once),
        "{at_once} searches at once: the slices were not read at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_timestamp_read_in_concurrent_slices_loses_nothing() {
    let told = Told {
        metric_name: "c42fwd_source_out_of_order_total",
        labels: &[r#"reason="out_of_order""#, r#"source="audit""#],
        log_says: "out of time order",
    };
    read_in_slices(Lie::LaterTimestamp, told, |_| false).await;
}

/// Every slice's query lists the event from the future, outside its window: it may go
/// out more than once (each slice keeps its own window), never not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_the_future_read_in_concurrent_slices_loses_nothing() {
    let told = Told {
        metric_name: "c42fwd_source_out_of_order_total",
        labels: &[r#"reason="future""#],
        log_says: "outside the query window",
    };
    read_in_slices(Lie::Future, told, |e| e.contains(r#""actorId":"u91200""#)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_listed_newest_first_read_in_concurrent_slices_lose_nothing() {
    let told = Told {
        metric_name: "c42fwd_source_out_of_order_total",
        labels: &[r#"reason="out_of_order""#],
        log_says: "out of time order",
    };
    read_in_slices(Lie::NewestFirst, told, |_| false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_page_read_in_concurrent_slices_is_asked_again() {
    let told = Told {
        metric_name: "c42fwd_source_short_pages_total",
        labels: &[r#"source="audit""#],
        log_says: "short page while its own count says more results exist",
    };
    read_in_slices(Lie::ShortPage, told, |_| false).await;
}
