//! The Splunk HEC sink against an in-test HEC (`hec/server.rs`): batches, gzip,
//! channel, token, health check, indexer acknowledgements, 503 bursts, a rejected
//! batch that goes to the dead-letter file, TLS; and one run of the real `c42fwd`
//! binary from the emulated tenant to the in-test HEC.
//!
//! The sinks are driven directly (`sinks::run` fed by an mpsc queue, one `AckWaiter`
//! per batch) so that the tests can see exactly when each batch counts as delivered.

pub mod server;

use crate::support::config::{emu_tenant, head};
use crate::support::http::{audit_event, dead_letters, encoding, fast_retry, outcome, plain_tls};
use crate::support::metrics::{get, metric, poll_endpoint};
use crate::support::sink::TestSink;
use crate::support::{multiset, PATIENCE};
use c42fwd::ack::Outcome;
use c42fwd::config::{HecOptions, HttpBatching, Sink, SinkKind, TlsOptions, TlsVersion};
use c42fwd::encode::{Encoder, Format};
use c42fwd::event::Event;
use c42fwd::metrics::{label, Metrics};
use c42fwd::secret::Secret;
use c42fwd::sinks::{self};
use server::{HecServer, HecServerOptions, Indexed};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

fn hec_options(endpoint: &str, token: &str) -> HecOptions {
    HecOptions {
        endpoint: endpoint.parse().expect("endpoint url"),
        token: Secret::new(token),
        index: Some("code42".into()),
        source: Some("c42fwd".into()),
        sourcetype: Some("code42:audit".into()),
        host: "fwd-test".into(),
        channel: None,
        gzip: true,
        batching: HttpBatching {
            max_events: 7,
            max_bytes: 64 * 1024,
            max_wait: Duration::from_millis(50),
        },
        indexer_ack: true,
        ack_poll_interval: Duration::from_millis(20),
        ack_poll_initial: Duration::from_millis(20),
        max_pending_acks: 64,
        ack_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(10),
        tls: plain_tls(),
    }
}

fn hec_sink(name: &str, o: HecOptions, format: Format) -> Sink {
    Sink {
        name: name.into(),
        kind: SinkKind::Hec(o),
        encoding: encoding(format),
        dead_letter_max_bytes: c42fwd::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry: fast_retry(),
    }
}

fn seq_of(i: &Indexed) -> u64 {
    i.envelope["event"]["seq"].as_u64().expect("event has seq")
}

fn count_by_seq(items: &[Indexed]) -> HashMap<u64, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(seq_of(i)).or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn every_event_is_indexed_exactly_once_through_503_bursts_with_acks() {
    let hec = HecServer::start(HecServerOptions {
        busy_every: 4,
        busy_burst: 2,
        ack_delay: Duration::from_millis(30),
        ..Default::default()
    })
    .await;
    let dl = tempfile::tempdir().unwrap();
    let o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    // 12 batches of 23 events; requests of 7: most requests span two batches.
    let mut waiters = Vec::new();
    let mut next = 0;
    for _ in 0..12 {
        let events: Vec<Event> = (next..next + 23).map(|s| audit_event(s, None)).collect();
        next += 23;
        waiters.push((next - 23..next, sink.send(events).await));
    }
    for (seqs, w) in waiters {
        assert_eq!(outcome(w).await, Outcome::Delivered);
        // Delivered only after HEC said indexed: every event of the batch is confirmed.
        let confirmed: BTreeSet<u64> = hec.indexed().iter().map(seq_of).collect();
        for s in seqs {
            assert!(
                confirmed.contains(&(s as u64)),
                "event {s} delivered before it was indexed"
            );
        }
    }
    let stats = hec.stats();
    assert!(
        stats.statuses.get(&503).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    assert_eq!(stats.gzip_requests, stats.requests, "every request is gzip");
    assert_eq!(stats.channels.len(), 1, "one channel for the whole run");
    let received = hec.received();
    let counts = count_by_seq(&received);
    assert_eq!(counts.len(), next);
    assert!(
        counts.values().all(|&n| n == 1),
        "an event was indexed twice"
    );
    // The envelope: metadata, time from the event, the record as a JSON value.
    let first = received.iter().find(|i| seq_of(i) == 61).unwrap();
    let e = &first.envelope;
    assert_eq!(e["host"], "fwd-test");
    assert_eq!(e["index"], "code42");
    assert_eq!(e["source"], "c42fwd");
    assert_eq!(e["sourcetype"], "code42:audit");
    assert_eq!(e["fields"]["c42_source"], "audit_log");
    assert_eq!(e["fields"]["c42_source_name"], "audit");
    assert_eq!(e["time"].as_f64().unwrap(), 1714564861.061);
    assert_eq!(
        e["event"]["note"],
        "line one\nline two \"quoted\" | pipe = equals"
    );
    assert_eq!(sink.counter("events", None), next as u64);
    assert_eq!(sink.counter("resent", None), 0);
    assert!(sink.counter("errors", Some(("kind", "http_503"))) > 0);
    let ctx = sink.finish().await;
    assert!(ctx
        .metrics
        .render()
        .contains("c42fwd_sink_hec_acks_pending{sink=\"splunk\"} 0"));
}

#[tokio::test]
async fn nothing_is_delivered_before_hec_says_indexed() {
    let hec = HecServer::start(HecServerOptions::default()).await;
    hec.hold_acks(true);
    let dl = tempfile::tempdir().unwrap();
    let o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    let mut w = sink
        .send((0..20).map(|s| audit_event(s, None)).collect())
        .await;
    // HEC has every event and has been asked about them several times, answering
    // "not yet": the batch must still be pending.
    let polls_after =
        |n: u64| move |s: &server::HecStats, r: &[Indexed]| r.len() == 20 && s.ack_polls >= n;
    hec.wait_until("20 events and 3 ack polls", PATIENCE, polls_after(3))
        .await;
    assert_eq!(w.try_outcome(), None, "delivered before indexed");
    assert!(hec.indexed().is_empty());
    hec.hold_acks(false);
    assert_eq!(outcome(w).await, Outcome::Delivered);
    assert_eq!(hec.indexed().len(), 20);
    sink.finish().await;
}

/// The first ack poll comes `ack_poll_initial` after a send, not `ack_poll_interval`:
/// with the slowest pace at its 5-minute maximum, batches are still confirmed and
/// delivered one after the other as HEC indexes them (the test would wait out its
/// patience if any poll waited for the interval).
#[tokio::test]
async fn ack_polls_start_fast_whatever_the_slowest_interval() {
    let hec = HecServer::start(HecServerOptions::default()).await;
    let dl = tempfile::tempdir().unwrap();
    let mut o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    o.ack_poll_interval = Duration::from_secs(300);
    o.ack_poll_initial = Duration::from_millis(20);
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    for round in 0..3usize {
        let w = sink
            .send((0..7).map(|s| audit_event(round * 7 + s, None)).collect())
            .await;
        assert_eq!(outcome(w).await, Outcome::Delivered, "round {round}");
    }
    assert_eq!(hec.indexed().len(), 21);
    sink.finish().await;
}

/// HEC forgets an `ackId` once it reported it indexed, so an ack poll's answer must
/// never be dropped: a batch arriving while a poll waits for its answer (the loop then
/// drops the tick it was in) must not lose the acknowledgements it brings. Had the
/// answer been lost, the first batch would wait for its `ack_timeout` (a minute, longer
/// than the test's patience) and go twice.
#[tokio::test]
async fn a_batch_arriving_during_an_ack_poll_loses_no_acknowledgement() {
    let hec = HecServer::start(HecServerOptions {
        ack_answer_delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let dl = tempfile::tempdir().unwrap();
    let mut o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    o.ack_timeout = Duration::from_secs(60);
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    let w1 = sink
        .send((0..7).map(|s| audit_event(s, None)).collect())
        .await;
    // The poll about the first request has reached HEC, which marked it indexed and
    // forgot it; its answer is on the way. Now a second batch comes.
    hec.wait_until("7 events and an ack poll", PATIENCE, |s, r| {
        r.len() == 7 && s.ack_polls >= 1
    })
    .await;
    let w2 = sink
        .send((7..14).map(|s| audit_event(s, None)).collect())
        .await;
    assert_eq!(outcome(w1).await, Outcome::Delivered);
    assert_eq!(outcome(w2).await, Outcome::Delivered);
    assert_eq!(hec.indexed().len(), 14);
    assert_eq!(sink.counter("resent", None), 0);
    assert_eq!(hec.stats().requests, 2);
    sink.finish().await;
}

/// At most `max_pending_acks` requests wait for their acknowledgement: beyond that the
/// sink takes no batch from its queue until HEC confirms one, and then everything goes.
#[tokio::test]
async fn no_more_than_max_pending_acks_requests_wait_for_their_acknowledgement() {
    let hec = HecServer::start(HecServerOptions::default()).await;
    hec.hold_acks(true);
    let dl = tempfile::tempdir().unwrap();
    let mut o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    o.max_pending_acks = 2;
    o.batching.max_events = 5;
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    let mut waiters = Vec::new();
    for b in 0..4usize {
        waiters.push(
            sink.send((0..5).map(|s| audit_event(b * 5 + s, None)).collect())
                .await,
        );
    }
    // Two requests out, and asked about several times: had the sink taken the third
    // batch, its request would have come long before.
    hec.wait_until("2 requests and 5 ack polls", PATIENCE, |s, _| {
        s.requests >= 2 && s.ack_polls >= 5
    })
    .await;
    assert_eq!(hec.stats().requests, 2, "{:?}", hec.stats());
    assert_eq!(hec.received().len(), 10);
    assert!(waiters.iter_mut().all(|w| w.try_outcome().is_none()));
    hec.hold_acks(false);
    for w in waiters {
        assert_eq!(outcome(w).await, Outcome::Delivered);
    }
    assert_eq!(hec.indexed().len(), 20);
    assert_eq!(hec.stats().requests, 4);
    sink.finish().await;
}

#[tokio::test]
async fn shutdown_with_unacknowledged_batches_leaves_them_not_delivered() {
    let hec = HecServer::start(HecServerOptions::default()).await;
    hec.hold_acks(true);
    let dl = tempfile::tempdir().unwrap();
    let o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    let mut sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    let w1 = sink
        .send((0..10).map(|s| audit_event(s, None)).collect())
        .await;
    let w2 = sink
        .send((10..14).map(|s| audit_event(s, None)).collect())
        .await;
    hec.wait_until("14 events and an ack poll", PATIENCE, |s, r| {
        r.len() == 14 && s.ack_polls >= 1
    })
    .await;
    sink.ctx.shutdown.cancel();
    assert_eq!(outcome(w1).await, Outcome::NotDelivered);
    assert_eq!(outcome(w2).await, Outcome::NotDelivered);
    assert!(sink.ended().await.is_ok());
    assert_eq!(
        sink.ctx
            .metrics
            .sink_events
            .get_or_create(&label("sink", "splunk"))
            .get(),
        0
    );
}

#[tokio::test]
async fn a_lost_acknowledgement_makes_the_request_go_again() {
    let hec = HecServer::start(HecServerOptions {
        lose_acks_of: BTreeSet::from([1]),
        ..Default::default()
    })
    .await;
    let dl = tempfile::tempdir().unwrap();
    let mut o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    o.ack_timeout = Duration::from_millis(300);
    o.batching.max_events = 5;
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    let w = sink
        .send((0..5).map(|s| audit_event(s, None)).collect())
        .await;
    assert_eq!(outcome(w).await, Outcome::Delivered);
    let received = hec.received();
    // At least once: the first copy was never confirmed, the second one was.
    assert_eq!(received.len(), 10);
    assert!(count_by_seq(&received).values().all(|&n| n == 2));
    assert_eq!(hec.indexed().len(), 5);
    assert_eq!(sink.counter("resent", None), 5);
    assert_eq!(sink.counter("errors", Some(("kind", "ack_timeout"))), 1);
    assert_eq!(sink.counter("events", None), 5);
    sink.finish().await;
}

#[tokio::test]
async fn a_refused_event_alone_is_dead_lettered_and_the_rest_indexed() {
    let hec = HecServer::start(HecServerOptions {
        reject_marker: Some("POISON".into()),
        ..Default::default()
    })
    .await;
    let dl = tempfile::tempdir().unwrap();
    let mut o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    o.batching.max_events = 10;
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    let mut waiters = Vec::new();
    let mut poisoned = None;
    for b in 0..5 {
        let events: Vec<Event> = (b * 10..b * 10 + 10)
            .map(|s| audit_event(s, (s == 23).then_some("POISON")))
            .collect();
        if b == 2 {
            poisoned = Some(events[3].clone());
        }
        waiters.push(sink.send(events).await);
    }
    for w in waiters {
        assert_eq!(outcome(w).await, Outcome::Delivered, "the route goes on");
    }
    // HEC named event 3 of the request: only it is dead-lettered, the others of its
    // request are indexed, each once.
    let counts = count_by_seq(&hec.indexed());
    let expected: BTreeSet<u64> = (0..50).filter(|&s| s != 23).collect();
    assert_eq!(counts.keys().copied().collect::<BTreeSet<u64>>(), expected);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    let lines = dead_letters(&dl.path().join("splunk.ndjson"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["sink"], "splunk");
    assert_eq!(
        lines[0]["reason"],
        "http 400 Bad Request: Invalid data format (code 6, invalid-event-number 3)"
    );
    let enc = Encoder::new(encoding(Format::JsonRaw));
    let mut rec = Vec::new();
    enc.encode(&poisoned.unwrap(), &mut rec);
    assert_eq!(lines[0]["record"].as_str().unwrap().as_bytes(), &rec[..]);
    assert_eq!(sink.counter("discarded", Some(("reason", "http_400"))), 1);
    assert_eq!(sink.counter("events", None), 49);
    // Named: one refused request, then its good parts; no bisection.
    assert_eq!(hec.stats().statuses.get(&400).copied(), Some(1));
    sink.finish().await;
}

#[tokio::test]
async fn without_an_event_number_the_request_is_bisected_down_to_the_refused_events() {
    let hec = HecServer::start(HecServerOptions {
        reject_marker: Some("POISON".into()),
        name_invalid_event: false,
        ..Default::default()
    })
    .await;
    let dl = tempfile::tempdir().unwrap();
    let mut o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    o.batching.max_events = 64;
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    let bad = [5u64, 6, 40];
    let events: Vec<Event> = (0..64)
        .map(|s| audit_event(s, bad.contains(&(s as u64)).then_some("POISON")))
        .collect();
    let w = sink.send(events).await;
    assert_eq!(outcome(w).await, Outcome::Delivered);
    let counts = count_by_seq(&hec.indexed());
    assert_eq!(counts.len(), 61);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    let lines = dead_letters(&dl.path().join("splunk.ndjson"));
    let dead: Vec<u64> = lines
        .iter()
        .map(|l| {
            let rec: serde_json::Value =
                serde_json::from_str(l["record"].as_str().unwrap()).unwrap();
            rec["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(dead, bad);
    assert_eq!(
        lines[0]["reason"],
        "http 400 Bad Request: Invalid data format (code 6)"
    );
    assert_eq!(sink.counter("events", None), 61);
    let splits = sink
        .ctx
        .metrics
        .sink_request_splits
        .get_or_create(&label("sink", "splunk"))
        .get();
    assert!(
        (3..=20).contains(&splits),
        "{splits} splits for 3 bad of 64"
    );
    sink.finish().await;
}

fn stalled_gauge(m: &Metrics, sink: &str, reason: &str) -> i64 {
    m.sink_stalled
        .get_or_create(&vec![
            ("sink", sink.to_string()),
            ("reason", reason.to_string()),
        ])
        .get()
}

#[tokio::test]
async fn a_wrong_token_stalls_the_route_and_it_resumes_once_the_token_works() {
    let hec = HecServer::start(HecServerOptions {
        invalid_token_status: 401,
        ..Default::default()
    })
    .await;
    let dl = tempfile::tempdir().unwrap();
    let secret = "wrong-but-secret-token-value";
    let o = hec_options(&hec.endpoint(), secret);
    let cfg = hec_sink("splunk", o, Format::JsonRaw);
    assert!(!format!("{cfg:?}").contains(secret));
    let sink = TestSink::start_in(cfg, dl.path());
    let mut w = sink
        .send((0..3).map(|s| audit_event(s, None)).collect())
        .await;
    crate::support::wait_for("three refused attempts", PATIENCE, || {
        sink.counter("errors", Some(("kind", "http_401"))) >= 3
    })
    .await;
    // Stalled: nothing delivered, nothing dead-lettered, the stall is visible.
    assert_eq!(w.try_outcome(), None);
    assert!(hec.received().is_empty());
    assert!(!dl.path().join("splunk.ndjson").exists());
    let m = &sink.ctx.metrics;
    assert_eq!(stalled_gauge(m, "splunk", "http_401"), 1);
    let stalled = m.health.stalled();
    assert_eq!(stalled.len(), 1);
    assert_eq!(stalled[0].reason, "http_401");
    assert!(
        stalled[0].detail.contains("Invalid token (code 4)"),
        "{stalled:?}"
    );
    assert_eq!(
        m.ready
            .report(tokio::time::Instant::now(), &m.health.stalled())
            .0,
        503
    );
    // The token is fixed on the HEC side: the sink goes on by itself.
    hec.set_token(secret);
    assert_eq!(outcome(w).await, Outcome::Delivered);
    let counts = count_by_seq(&hec.indexed());
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&n| n == 1));
    assert_eq!(stalled_gauge(m, "splunk", "http_401"), 0);
    assert!(m.health.stalled().is_empty());
    assert_eq!(
        m.ready
            .report(tokio::time::Instant::now(), &m.health.stalled())
            .0,
        200
    );
    assert_eq!(sink.counter("discarded", Some(("reason", "http_401"))), 0);
    let ctx = sink.finish().await;
    let text = ctx.metrics.render();
    assert!(!text.contains(secret));
    assert!(
        text.contains("c42fwd_sink_stalls_total{sink=\"splunk\",reason=\"http_401\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_token_revoked_while_acks_are_pending_shows_as_a_stall_at_once() {
    let hec = HecServer::start(HecServerOptions::default()).await;
    hec.hold_acks(true);
    let dl = tempfile::tempdir().unwrap();
    let token = HecServerOptions::default().token;
    let o = hec_options(&hec.endpoint(), &token);
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    let mut w = sink
        .send((0..5).map(|s| audit_event(s, None)).collect())
        .await;
    hec.wait_until("5 events", PATIENCE, |_, r| r.len() == 5)
        .await;
    hec.set_token("revoked-0000-0000-0000-000000000000");
    let m = sink.ctx.metrics.clone();
    crate::support::wait_for("the stall from the ack endpoint", PATIENCE, || {
        stalled_gauge(&m, "splunk", "http_403") == 1
    })
    .await;
    assert_eq!(w.try_outcome(), None);
    assert_eq!(
        m.ready
            .report(tokio::time::Instant::now(), &m.health.stalled())
            .0,
        503
    );
    hec.set_token(&token);
    hec.hold_acks(false);
    assert_eq!(outcome(w).await, Outcome::Delivered);
    assert_eq!(stalled_gauge(&m, "splunk", "http_403"), 0);
    assert!(m.health.stalled().is_empty());
    assert_eq!(hec.indexed().len(), 5);
    sink.finish().await;
}

#[tokio::test]
async fn health_is_checked_before_sending_and_waited_for() {
    let hec = HecServer::start(HecServerOptions {
        unhealthy_checks: 3,
        indexer_ack: false,
        ..Default::default()
    })
    .await;
    let dl = tempfile::tempdir().unwrap();
    let mut o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    o.indexer_ack = false;
    o.gzip = false;
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::Cef), dl.path());
    let w = sink
        .send((0..3).map(|s| audit_event(s, None)).collect())
        .await;
    assert_eq!(outcome(w).await, Outcome::Delivered);
    let stats = hec.stats();
    assert_eq!(stats.health_checks_before_first_event, Some(4));
    assert_eq!(stats.gzip_requests, 0);
    assert_eq!(stats.ack_polls, 0);
    // Acknowledgement off: a channel is still sent (a generated UUID).
    let channel = stats.channels.iter().next().expect("a channel was sent");
    assert!(server_is_guid(channel), "{channel}");
    // CEF goes in as a JSON string.
    let r = hec.received();
    assert!(r[0].envelope["event"]
        .as_str()
        .unwrap()
        .starts_with("CEF:0|Code42|"));
    sink.finish().await;
}

fn server_is_guid(s: &str) -> bool {
    s.len() == 36 && s.split('-').map(str::len).eq([8, 4, 4, 4, 12])
}

#[tokio::test]
async fn a_configured_channel_is_used() {
    let hec = HecServer::start(HecServerOptions::default()).await;
    let dl = tempfile::tempdir().unwrap();
    let mut o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    o.channel = Some("0e8a6c5f-2d3b-4a1c-9f7e-1b2c3d4e5f60".into());
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonNormalized), dl.path());
    let w = sink
        .send((0..3).map(|s| audit_event(s, None)).collect())
        .await;
    assert_eq!(outcome(w).await, Outcome::Delivered);
    assert_eq!(
        hec.stats().channels,
        BTreeSet::from(["0e8a6c5f-2d3b-4a1c-9f7e-1b2c3d4e5f60".to_string()])
    );
    let r = hec.indexed();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].envelope["event"]["class_id"], "logged_in");
    sink.finish().await;
}

#[tokio::test]
async fn an_unreachable_hec_stalls_the_route_and_loses_nothing() {
    let port = crate::support::unused_tcp_port();
    let dl = tempfile::tempdir().unwrap();
    let o = hec_options(&format!("http://127.0.0.1:{port}"), "t0ken-value");
    let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
    let mut w = sink.send(vec![audit_event(0, None)]).await;
    crate::support::wait_for("the health check to fail twice", PATIENCE, || {
        sink.counter("errors", Some(("kind", "health"))) >= 2
    })
    .await;
    // The health check is what fails here (it logs and waits); nothing is delivered.
    assert_eq!(w.try_outcome(), None);
    assert_eq!(sink.counter("events", None), 0);
    sink.ctx.shutdown.cancel();
    assert_eq!(outcome(w).await, Outcome::NotDelivered);
}

#[tokio::test]
async fn the_healthcheck_asks_hec_checks_the_token_and_sends_no_event() {
    let hec = HecServer::start(HecServerOptions {
        unhealthy_checks: 1,
        ..Default::default()
    })
    .await;
    let o = hec_options(&hec.endpoint(), &HecServerOptions::default().token);
    let cfg = hec_sink("splunk", o, Format::JsonRaw);
    let e = sinks::healthcheck(&cfg).await.unwrap_err();
    assert!(e.is_retriable());
    assert!(e.to_string().contains("HEC is unhealthy"), "{e}");
    sinks::healthcheck(&cfg).await.expect("healthy now");
    assert_eq!(hec.stats().health_checks, 2);
    // The token probe is one empty event request, answered "No data".
    assert_eq!(hec.stats().requests, 1);
    assert_eq!(hec.stats().statuses.get(&400).copied(), Some(1));
    assert_eq!(hec.stats().accepted_events, 0);
    // A wrong token: the health endpoint does not care, the probe does.
    let o = hec_options(&hec.endpoint(), "t0ken-value");
    let e = sinks::healthcheck(&hec_sink("splunk", o, Format::JsonRaw))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("splunk hec refused the token: http 403 Forbidden: Invalid token (code 4)"),
        "{text}"
    );
    assert!(!text.contains("t0ken-value"));
    let port = crate::support::unused_tcp_port();
    let o = hec_options(&format!("http://127.0.0.1:{port}"), "t0ken-value");
    assert!(sinks::healthcheck(&hec_sink("splunk", o, Format::JsonRaw))
        .await
        .is_err());
}

// ---------------------------------------------------------------------------------
// TLS

mod tls {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use std::sync::Arc;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::server::TlsStream;
    use tokio_rustls::TlsAcceptor;

    /// A CA, a server certificate for 127.0.0.1 / localhost, a client certificate.
    pub struct Pki {
        pub dir: tempfile::TempDir,
        pub server_cert: String,
        pub server_key: String,
        pub ca_pem: String,
    }

    impl Pki {
        pub fn new() -> Pki {
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "c42fwd test ca");
            let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
            let leaf = |names: Vec<String>| {
                let key = KeyPair::generate().unwrap();
                let cert = CertificateParams::new(names)
                    .unwrap()
                    .signed_by(&key, &ca)
                    .unwrap();
                (cert.pem(), key.serialize_pem())
            };
            let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
            let (client_cert, client_key) = leaf(vec!["c42fwd-client".into()]);
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
            std::fs::write(dir.path().join("client.pem"), client_cert).unwrap();
            std::fs::write(dir.path().join("client.key"), client_key).unwrap();
            Pki {
                dir,
                server_cert,
                server_key,
                ca_pem: ca.pem(),
            }
        }

        pub fn path(&self, f: &str) -> std::path::PathBuf {
            self.dir.path().join(f)
        }

        /// The server's rustls config; with `client_ca`, client certificates from the
        /// test CA are required.
        pub fn server_config(&self, require_client: bool) -> rustls::ServerConfig {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::{CertificateDer, PrivateKeyDer};
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(self.server_cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
            let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes()).unwrap();
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap();
            let builder = if require_client {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_no_client_auth()
            };
            builder.with_single_cert(certs, key).unwrap()
        }
    }

    /// A TLS listener for axum: handshakes that fail are skipped (the client sees
    /// the failure).
    pub struct TlsListener {
        pub tcp: TcpListener,
        pub acceptor: TlsAcceptor,
    }

    impl axum::serve::Listener for TlsListener {
        type Io = TlsStream<TcpStream>;
        type Addr = std::net::SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            loop {
                let Ok((tcp, addr)) = self.tcp.accept().await else {
                    continue;
                };
                if let Ok(tls) = self.acceptor.accept(tcp).await {
                    return (tls, addr);
                }
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            self.tcp.local_addr()
        }
    }

    async fn tls_hec(pki: &Pki, require_client: bool) -> HecServer {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(pki.server_config(require_client)));
        HecServer::serve(HecServerOptions::default(), TlsListener { tcp, acceptor }).await
    }

    async fn deliver_one(tls: TlsOptions, hec: &HecServer) -> (Outcome, u64) {
        let dl = tempfile::tempdir().unwrap();
        let mut o = hec_options(
            &format!("https://127.0.0.1:{}", hec.addr().port()),
            &HecServerOptions::default().token,
        );
        o.tls = tls;
        let sink = TestSink::start_in(hec_sink("splunk", o, Format::JsonRaw), dl.path());
        let mut w = sink.send(vec![audit_event(0, None)]).await;
        // Either delivered, or the connection keeps failing (certificate refused).
        let mut got = None;
        crate::support::wait_for("delivery or repeated tls failures", PATIENCE, || {
            got = got.or_else(|| w.try_outcome());
            got.is_some() || sink.counter("errors", Some(("kind", "health"))) >= 2
        })
        .await;
        let failures = sink.counter("errors", Some(("kind", "health")));
        sink.ctx.shutdown.cancel();
        let o = match got {
            Some(o) => o,
            None => outcome(w).await,
        };
        (o, failures)
    }

    #[tokio::test]
    async fn https_with_the_ca_file_and_a_client_certificate() {
        let pki = Pki::new();
        let hec = tls_hec(&pki, true).await;
        let mut t = plain_tls();
        t.ca_file = Some(pki.path("ca.pem"));
        t.client_cert = Some(pki.path("client.pem"));
        t.client_key = Some(pki.path("client.key"));
        t.min_version = TlsVersion::Tls13;
        let (o, _) = deliver_one(t, &hec).await;
        assert_eq!(o, Outcome::Delivered);
        assert_eq!(hec.indexed().len(), 1);
    }

    #[tokio::test]
    async fn https_refuses_an_unknown_ca_and_a_missing_client_certificate() {
        let pki = Pki::new();
        // Built-in roots only: the test CA is unknown.
        let hec = tls_hec(&pki, false).await;
        let (o, errors) = deliver_one(plain_tls(), &hec).await;
        assert_eq!(o, Outcome::NotDelivered);
        assert!(errors >= 2);
        assert_eq!(hec.stats().health_checks, 0);
        // The right CA, but the server wants a client certificate.
        let hec = tls_hec(&pki, true).await;
        let mut t = plain_tls();
        t.ca_file = Some(pki.path("ca.pem"));
        let (o, _) = deliver_one(t, &hec).await;
        assert_eq!(o, Outcome::NotDelivered);
        assert!(hec.received().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn validate_connect_refuses_a_bad_hec_token_and_a_certificate_the_sink_would_refuse() {
        let opts = c42fwd_emulator::EmulatorOptions {
            backlog: 0,
            rate: 0.0,
            ..Default::default()
        };
        let emu = crate::support::daemon::start_emulator(opts.clone()).await;
        let hec = HecServer::start(HecServerOptions::default()).await;
        let pki = Pki::new();
        let https = tls_hec(&pki, false).await;
        let dir = tempfile::tempdir().unwrap();
        let wrong = "99999999-8888-7777-6666-555555555555";
        let text = format!(
            r#"
state_dir = "{state}"
{tenant}[sources.a]
type = "audit_log"
tenant = "emu"
[sinks.hec_good]
type = "hec"
endpoint = "{hec}"
token = "{good}"
[sinks.hec_bad]
type = "hec"
endpoint = "{hec}"
token = "{wrong}"
[sinks.https_untrusted]
type = "http"
url = "https://127.0.0.1:{port}/ingest"
[sinks.https_trusted]
type = "http"
url = "https://127.0.0.1:{port}/ingest"
[sinks.https_trusted.tls]
ca_file = "{ca}"
[[routes]]
sources = ["a"]
sinks = ["hec_good", "hec_bad", "https_untrusted", "https_trusted"]
"#,
            state = dir.path().join("state").display(),
            tenant = emu_tenant(&emu, &opts),
            hec = hec.endpoint(),
            good = HecServerOptions::default().token,
            port = https.addr().port(),
            ca = pki.path("ca.pem").display(),
        );
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = crate::support::daemon::c42fwd()
            .args(["validate", "--connect", "--config"])
            .arg(&cfg)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(
            stdout.contains("sinks.hec_good: reachable (healthy, token accepted)"),
            "{stdout}"
        );
        assert!(
            stdout.contains("sinks.hec_bad: FAILED: ")
                && stdout.contains(
                    "splunk hec refused the token: http 403 Forbidden: Invalid token (code 4)"
                ),
            "{stdout}"
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with("sinks.https_untrusted: "))
            .unwrap_or_default();
        assert!(
            line.contains("FAILED") && line.to_lowercase().contains("certificate"),
            "{stdout}"
        );
        assert!(
            stdout.contains("sinks.https_trusted: reachable"),
            "{stdout}"
        );
        assert!(all.contains("2 connection check(s) failed"), "{all}");
        assert!(!all.contains(wrong), "a token was printed: {all}");
    }

    #[tokio::test]
    async fn insecure_skip_verify_accepts_any_certificate() {
        let pki = Pki::new();
        let hec = tls_hec(&pki, false).await;
        let mut t = plain_tls();
        t.insecure_skip_verify = true;
        let (o, _) = deliver_one(t, &hec).await;
        assert_eq!(o, Outcome::Delivered);
    }
}

// ---------------------------------------------------------------------------------
// End to end through the binary

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_indexes_every_emulated_event_exactly_once_in_hec() {
    use crate::support::daemon::{log_tail, start_emulator, Daemon};
    use c42fwd_emulator::EmulatorOptions;
    let opts = EmulatorOptions {
        seed: 31,
        backlog: 2_000,
        backlog_span: Duration::from_secs(600),
        rate: 0.0,
        lag: Duration::from_millis(0),
        ..Default::default()
    };
    let emu = start_emulator(opts.clone()).await;
    let hec = HecServer::start(HecServerOptions {
        busy_every: 5,
        busy_burst: 1,
        ack_delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c42fwd.toml");
    std::fs::write(
        dir.path().join("hec-token"),
        format!("{}\n", HecServerOptions::default().token),
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            r#"
{head}
{tenant}
[sources.audit]
type = "audit_log"
tenant = "emu"
start = "1h"
lag = "1s"
poll_interval = "200ms"
page_size = 300

[sinks.splunk]
type = "hec"
endpoint = "{endpoint}"
token = {{ file = "{token}" }}
format = "json"
index = "code42"
indexer_ack = true
ack_poll_interval = "50ms"
max_events = 128
max_wait = "100ms"

[sinks.splunk.retry]
initial = "20ms"
max = "200ms"

[[routes]]
sources = ["audit"]
sinks = ["splunk"]
"#,
            head = head(dir.path(), "10s"),
            tenant = emu_tenant(&emu, &opts),
            endpoint = hec.endpoint(),
            token = dir.path().join("hec-token").display(),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config).await;
    let truth = crate::support::daemon::backlog(&emu);
    assert!(truth.len() >= 2_000, "the emulator has its backlog");
    let want = multiset(truth.iter().cloned());
    let total = truth.len();
    let all_indexed = hec.wait_for_confirmed(total, Duration::from_secs(90)).await;
    assert!(
        all_indexed,
        "not every event was indexed; hec {:?}\nc42fwd log:\n{}",
        hec.stats(),
        log_tail(&config)
    );
    let status = daemon.terminate().await;
    assert!(status.success(), "c42fwd exits 0 after SIGTERM: {status}");
    let mut got: HashMap<String, usize> = HashMap::new();
    for i in hec.indexed() {
        *got.entry(i.event_raw.clone()).or_insert(0) += 1;
        assert_eq!(i.envelope["index"], "code42");
    }
    for (k, n) in &want {
        assert_eq!(
            got.get(k).copied().unwrap_or(0),
            *n,
            "event indexed a wrong number of times: {k}"
        );
    }
    assert_eq!(
        got.values().sum::<usize>(),
        total,
        "nothing extra was indexed"
    );
    assert!(hec.stats().statuses.get(&503).copied().unwrap_or(0) > 0);
}

// ---------------------------------------------------------------------------------
// Stalls, refused events and the dead-letter cap, through the binary

/// A daemon config: the emulated tenant's Audit Log to one HEC sink, metrics on
/// `metrics`; `sink_extra` goes into the sink's table.
#[allow(clippy::too_many_arguments)]
fn daemon_config(
    dir: &Path,
    emu: &c42fwd_emulator::EmulatorHandle,
    opts: &c42fwd_emulator::EmulatorOptions,
    endpoint: &str,
    token: &str,
    metrics: &str,
    sink_extra: &str,
    page_size: usize,
) -> std::path::PathBuf {
    let config = dir.join("c42fwd.toml");
    std::fs::write(dir.join("hec-token"), format!("{token}\n")).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"
{head}
[metrics]
listen = "{metrics}"

{tenant}
[sources.audit]
type = "audit_log"
tenant = "emu"
start = "1h"
lag = "1s"
poll_interval = "200ms"
page_size = {page_size}

[sinks.splunk]
type = "hec"
endpoint = "{endpoint}"
token = {{ file = "{token_file}" }}
format = "json"
indexer_ack = true
ack_poll_interval = "50ms"
max_wait = "100ms"
{sink_extra}

[sinks.splunk.retry]
initial = "20ms"
max = "200ms"

[[routes]]
sources = ["audit"]
sinks = ["splunk"]
"#,
            head = head(dir, "10s"),
            tenant = emu_tenant(emu, opts),
            token_file = dir.join("hec-token").display(),
        ),
    )
    .unwrap();
    config
}

fn quiet_tenant(backlog: u64, seed: u64) -> c42fwd_emulator::EmulatorOptions {
    c42fwd_emulator::EmulatorOptions {
        seed,
        backlog,
        backlog_span: Duration::from_secs(600),
        rate: 0.0,
        lag: Duration::from_millis(0),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stalls_the_daemon_and_once_fixed_every_event_is_indexed_once() {
    use crate::support::daemon::{log_path, start_emulator, Daemon};
    let opts = quiet_tenant(1_500, 41);
    let emu = start_emulator(opts.clone()).await;
    // HEC knows another token than the one c42fwd has (rotated on the HEC side).
    let hec = HecServer::start(HecServerOptions::default()).await;
    let token = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(
        dir.path(),
        &emu,
        &opts,
        &hec.endpoint(),
        token,
        "127.0.0.1:0",
        "max_events = 200",
        300,
    );
    let daemon = Daemon::start(&config).await;
    let metrics = daemon.metrics_addr().await;
    let text = poll_endpoint(&metrics, "/metrics", &config, "the stall gauge", |_, t| {
        metric(
            t,
            "c42fwd_sink_stalled{sink=\"splunk\",reason=\"http_403\"}",
        ) == 1.0
    })
    .await;
    assert_eq!(
        metric(
            &text,
            "c42fwd_source_batches_committed_total{source=\"audit\"}"
        ),
        0.0
    );
    let (status, body) = get(&metrics, "/ready").await;
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stalled: Vec<_> = ready["failing"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["sink"] == "splunk" && f["reason"] == "stalled")
        .collect();
    assert_eq!(stalled.len(), 1, "{body}");
    assert!(
        stalled[0]["detail"]
            .as_str()
            .unwrap()
            .contains("(http_403)"),
        "{body}"
    );
    // Liveness is not readiness: the process answers.
    assert_eq!(get(&metrics, "/health").await, (200, "ok\n".to_string()));
    assert!(hec.received().is_empty());
    let log = std::fs::read_to_string(log_path(&config)).unwrap();
    assert!(
        log.contains("ERROR") && log.contains("the sink is stalled"),
        "{log}"
    );
    assert!(!log.contains(token), "the token is never logged");
    assert!(
        log.contains("WARN") && log.contains("the hec token is sent over plain http"),
        "{log}"
    );
    // The token works again: no restart, every event exactly once, nothing lost.
    hec.set_token(token);
    let truth = crate::support::daemon::backlog(&emu);
    let total = truth.len();
    assert!(total >= 1_500);
    let all = hec.wait_for_confirmed(total, Duration::from_secs(90)).await;
    assert!(
        all,
        "not every event indexed: {:?}\n{}",
        hec.stats(),
        crate::support::daemon::log_tail(&config)
    );
    poll_endpoint(&metrics, "/ready", &config, "ready", |s, _| s == 200).await;
    let text = get(&metrics, "/metrics").await.1;
    assert_eq!(
        metric(
            &text,
            "c42fwd_sink_stalled{sink=\"splunk\",reason=\"http_403\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &text,
            "c42fwd_sink_stalls_total{sink=\"splunk\",reason=\"http_403\"}"
        ),
        1.0
    );
    assert!(daemon.terminate().await.success());
    let want = multiset(truth.iter().cloned());
    let mut got: HashMap<String, usize> = HashMap::new();
    for i in hec.indexed() {
        *got.entry(i.event_raw.clone()).or_insert(0) += 1;
    }
    assert_eq!(
        got, want,
        "every event indexed exactly as often as the tenant has it"
    );
    assert!(
        !dir.path().join("state/dead-letter/splunk.ndjson").exists(),
        "nothing dead-lettered"
    );
    let log = std::fs::read_to_string(log_path(&config)).unwrap();
    assert!(log.contains("the sink is no longer stalled"), "{log}");
}

/// Starts the daemon under `umask 000`, the most permissive there is.
async fn daemon_with_open_umask(config: &Path) -> crate::support::daemon::Daemon {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000 && exec \"$0\" --log info run --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_c42fwd"))
        .arg(config)
        .kill_on_drop(true);
    crate::support::daemon::Daemon::spawn(config, cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_event_in_a_request_of_500_is_the_only_one_dead_lettered() {
    use crate::support::daemon::start_emulator;
    let opts = quiet_tenant(500, 43);
    let emu = start_emulator(opts.clone()).await;
    let truth = crate::support::daemon::backlog(&emu);
    assert_eq!(truth.len(), 500);
    // An event that occurs once: HEC refuses it (and names it).
    let bad = truth
        .iter()
        .skip(200)
        .find(|t| truth.iter().filter(|u| u.contains(t.as_str())).count() == 1)
        .expect("a unique event")
        .clone();
    let hec = HecServer::start(HecServerOptions {
        reject_marker: Some(bad.clone()),
        ..Default::default()
    })
    .await;
    let token = HecServerOptions::default().token;
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(
        dir.path(),
        &emu,
        &opts,
        &hec.endpoint(),
        &token,
        "127.0.0.1:0",
        "max_events = 500\nmax_bytes = 10000000",
        500,
    );
    let daemon = daemon_with_open_umask(&config).await;
    let metrics = daemon.metrics_addr().await;
    let done = hec.wait_for_confirmed(499, Duration::from_secs(60)).await;
    assert!(
        done,
        "{:?}\n{}",
        hec.stats(),
        crate::support::daemon::log_tail(&config)
    );
    poll_endpoint(&metrics, "/metrics", &config, "the commit", |_, t| {
        metric(t, "c42fwd_source_batches_committed_total{source=\"audit\"}") >= 1.0
    })
    .await;
    assert!(daemon.terminate().await.success());
    let stats = hec.stats();
    assert_eq!(
        stats.statuses.get(&400).copied(),
        Some(1),
        "one refusal: {stats:?}"
    );
    let mut got: HashMap<String, usize> = HashMap::new();
    for i in hec.indexed() {
        *got.entry(i.event_raw.clone()).or_insert(0) += 1;
    }
    assert_eq!(got.len(), 499);
    assert!(!got.contains_key(&bad));
    assert!(
        got.values().all(|&n| n == 1),
        "each good event indexed once"
    );
    let dl_dir = dir.path().join("state/dead-letter");
    let path = dl_dir.join("splunk.ndjson");
    let lines = dead_letters(&path);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["record"].as_str().unwrap(), bad);
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "http 400 Bad Request: Invalid data format (code 6, invalid-event-number "
        ),
        "{reason}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "dead-letter file under umask 000");
        assert_eq!(
            mode(&dl_dir),
            0o700,
            "dead-letter directory under umask 000"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_dead_letter_file_stalls_the_route_and_nothing_more_is_committed() {
    use crate::support::daemon::{log_path, start_emulator};
    let opts = quiet_tenant(200, 47);
    let emu = start_emulator(opts.clone()).await;
    // HEC refuses every event.
    let hec = HecServer::start(HecServerOptions {
        reject_marker: Some("\"event\"".into()),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(
        dir.path(),
        &emu,
        &opts,
        &hec.endpoint(),
        &HecServerOptions::default().token,
        "127.0.0.1:0",
        "max_events = 5\ndead_letter_max_bytes = 8192",
        5,
    );
    let daemon = crate::support::daemon::Daemon::start(&config).await;
    let metrics = daemon.metrics_addr().await;
    let full = "c42fwd_sink_stalled{sink=\"splunk\",reason=\"dead_letter_full\"}";
    let errors = "c42fwd_sink_errors_total{sink=\"splunk\",kind=\"dead_letter_full\"}";
    let text = poll_endpoint(
        &metrics,
        "/metrics",
        &config,
        "the full dead-letter file",
        |_, t| metric(t, full) == 1.0,
    )
    .await;
    let committed = metric(
        &text,
        "c42fwd_source_batches_committed_total{source=\"audit\"}",
    );
    let seen = metric(&text, errors);
    // It stays stalled, retrying, and commits nothing more.
    let text = poll_endpoint(
        &metrics,
        "/metrics",
        &config,
        "more refused flushes",
        |_, t| metric(t, errors) >= seen + 3.0,
    )
    .await;
    assert_eq!(
        metric(
            &text,
            "c42fwd_source_batches_committed_total{source=\"audit\"}"
        ),
        committed,
        "nothing committed while the dead-letter file is full"
    );
    let (status, body) = get(&metrics, "/ready").await;
    assert_eq!(status, 503);
    assert!(body.contains("dead_letter_full"), "{body}");
    let path = dir.path().join("state/dead-letter/splunk.ndjson");
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size <= 8192, "the cap holds: {size}");
    let lines = dead_letters(&path).len();
    // Every committed batch (5 events each) is in the dead-letter file; the batch in
    // hand is not committed.
    assert!(
        committed as usize * 5 <= lines,
        "{committed} batches committed, {lines} dead-lettered"
    );
    assert!(lines < 200);
    assert!(hec.indexed().is_empty());
    let log = std::fs::read_to_string(log_path(&config)).unwrap();
    assert!(
        log.contains("ERROR") && log.contains("dead_letter_max_bytes"),
        "{log}"
    );
    assert!(daemon.terminate().await.success());
}

#[tokio::test]
async fn validate_refuses_a_dead_letter_cap_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    for (cap, ok) in [
        ("0", false),
        ("4095", false),
        ("4096", true),
        ("2000000000000000", false),
    ] {
        std::fs::write(
            &cfg,
            format!(
                r#"
state_dir = "{state}"
[tenants.t]
api = "incydr"
base_url = "https://api.us.code42.com"
client_id = "key-1"
client_secret = "s3cret-value"
[sources.a]
type = "audit_log"
tenant = "t"
[sinks.splunk]
type = "hec"
endpoint = "https://splunk.example.com:8088"
token = "11111111-2222-3333-4444-555555555555"
dead_letter_max_bytes = {cap}
[[routes]]
sources = ["a"]
sinks = ["splunk"]
"#,
                state = dir.path().join("state").display()
            ),
        )
        .unwrap();
        let out = crate::support::daemon::c42fwd()
            .args(["validate", "--config"])
            .arg(&cfg)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if ok {
            assert!(out.status.success(), "{cap}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{cap}");
            assert!(
                err.contains("sinks.splunk.dead_letter_max_bytes") && err.contains("out of range"),
                "{err}"
            );
        }
    }
}

/// A replay config for HEC endpoint `endpoint` (sink `splunk`, plain JSON events) with
/// its state in `state`; the tenant and source are never contacted by `replay`.
fn replay_hec_config(dir: &Path, state: &Path, endpoint: &str) -> std::path::PathBuf {
    let config = dir.join("replay.toml");
    std::fs::write(
        dir.join("hec-token"),
        format!("{}\n", HecServerOptions::default().token),
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"

[tenants.idle]
api = "incydr"
base_url = "https://127.0.0.1:9"
client_id = "replay-test"
client_secret = "not-used"

[sources.idle]
type = "audit_log"
tenant = "idle"

[sinks.splunk]
type = "hec"
endpoint = "{endpoint}"
token = {{ file = "{token_file}" }}
format = "cef"
indexer_ack = true
ack_poll_interval = "50ms"
max_wait = "100ms"

[sinks.splunk.retry]
initial = "20ms"
max = "200ms"

[[routes]]
sources = ["idle"]
sinks = ["splunk"]
"#,
            state = state.display(),
            token_file = dir.join("hec-token").display(),
        ),
    )
    .unwrap();
    config
}

async fn run_replay(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let mut cmd = crate::support::daemon::c42fwd();
    cmd.args(["--log", "info", "replay", "--progress", "none"])
        .args(args)
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("replay ends within 120 s")
        .expect("run c42fwd replay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A record HEC refused for good goes to the sink's dead-letter file with the event it
/// was made from. Once the receiver is fixed, `replay --dead-letter splunk` encodes
/// that event again through the (fixed) configuration, HEC indexes it, and the file is
/// moved aside as re-driven, so a second re-drive finds nothing to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_record_is_re_driven_once_the_receiver_was_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let events: Vec<String> = (0..20)
        .map(|i| {
            let who = if i == 7 { "poison-pill".to_string() } else { format!("user{i}") };
            format!(
                r#"{{"type$":"audit_log::SearchIssued/1","actorName":"{who}@example.com","timestamp":"2024-05-01T10:00:{i:02}.000Z"}}"#
            )
        })
        .collect();
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, format!("{}\n", events.join("\n"))).unwrap();

    // The receiver as it was: it refuses the record of one event for good.
    let broken = HecServer::start(HecServerOptions {
        reject_marker: Some("poison-pill".into()),
        ..Default::default()
    })
    .await;
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = replay_hec_config(cfg_dir.path(), &state, &broken.endpoint());
    let (code, out, err) =
        run_replay(&["--config".as_ref(), cfg.as_os_str(), file.as_os_str()]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("20 records read, 20 sent, 20 delivered"),
        "{out}"
    );
    assert_eq!(broken.indexed().len(), 19);
    let dl = state.join("dead-letter").join("splunk.ndjson");
    let lines = dead_letters(&dl);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "audit_log");
    // The event's text byte for byte (a JSON value in the line, not a string).
    let text = std::fs::read_to_string(&dl).unwrap();
    assert!(text.contains(&format!("\"event\":{}", events[7])), "{text}");
    assert_eq!(lines[0]["occurred"], "2024-05-01T10:00:07.000000000Z");
    assert!(lines[0]["record"]
        .as_str()
        .unwrap()
        .contains("CEF:0|Code42|Audit Log|"));

    // Fixed (here: a receiver that takes it); the config points at it now.
    let fixed = HecServer::start(HecServerOptions::default()).await;
    let cfg_dir2 = tempfile::tempdir().unwrap();
    let cfg2 = replay_hec_config(cfg_dir2.path(), &state, &fixed.endpoint());
    let (code, out, err) = run_replay(&[
        "--config".as_ref(),
        cfg2.as_os_str(),
        "--dead-letter".as_ref(),
        "splunk".as_ref(),
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("1 records read, 1 sent, 1 delivered"), "{out}");
    assert!(out.contains("re-delivered whole, moved to "), "{out}");
    let indexed = fixed.indexed();
    assert_eq!(indexed.len(), 1);
    assert!(
        indexed[0]
            .event_raw
            .contains("suser=poison-pill@example.com"),
        "{}",
        indexed[0].event_raw
    );
    assert!(indexed[0].confirmed, "indexed (acknowledged)");
    assert!(!dl.exists(), "the dead-letter file is still there");
    let moved: Vec<String> = std::fs::read_dir(state.join("dead-letter"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(moved[0].starts_with("splunk.ndjson.redriven-"), "{moved:?}");

    // Nothing is sent twice.
    let (code, out, err) = run_replay(&[
        "--config".as_ref(),
        cfg2.as_os_str(),
        "--dead-letter".as_ref(),
        "splunk".as_ref(),
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("nothing to re-drive"), "{out}");
    assert_eq!(fixed.indexed().len(), 1);
}
