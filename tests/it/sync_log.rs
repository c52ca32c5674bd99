//! Integration tests of the Directory Sync Log source against the emulator, both API
//! generations: a backlog over many pages plus a live stream visible up to a second
//! late, every entry exactly once (compared as multisets with the emulator's ground
//! truth: the log has byte-identical entries and many equal millisecond timestamps),
//! and a restart in the middle from the checkpoint.
//!
//! The harness (emulator, client, recording sink, poller run) is `support::source`,
//! shared with `alerts.rs`.

use crate::support::source::*;
use c42fwd::api::{SyncLogQuery, MAX_SYNC_LOG_PAGE_SIZE};
use c42fwd::checkpoint::Store;
use c42fwd::config::{ApiGeneration, Source, SourceSpec, StartAt};
use c42fwd::event::SourceKind;
use c42fwd::metrics::Metrics;
use c42fwd::sources::sync_log::SyncLogFetch;
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn sync_opts(backlog: u64, rate: f64) -> EmulatorOptions {
    EmulatorOptions {
        seed: 5,
        backlog: 10,
        backlog_span: Duration::from_secs(600),
        rate: 0.0,
        alert_backlog: 0,
        alert_rate: 0.0,
        sync_log_backlog: backlog,
        // Inside the retention and the source's start: the whole backlog is read.
        sync_log_span: Duration::from_secs(600),
        sync_log_rate: rate,
        lag: Duration::from_secs(1),
        totp: Some("123456".into()),
        ..EmulatorOptions::default()
    }
}

fn sync_source(start: DateTime<Utc>, page_size: u32) -> Source {
    Source {
        name: "sync".into(),
        tenant: "emulated".into(),
        kind: SourceSpec::SyncLog,
        lag: Duration::from_secs(2),
        poll_interval: Duration::from_millis(200),
        start: StartAt::At(start),
        page_size,
        reconcile_after: None,
    }
}

fn truth(emu: &EmulatorHandle, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
    let mut v = emu.sync_log_between(start, end);
    v.sort();
    v
}

/// The number of byte-identical pairs in `v` (sorted): the multiset case.
fn repeats(v: &[String]) -> usize {
    v.windows(2).filter(|w| w[0] == w[1]).count()
}

/// 12,000 entries of backlog (enough for byte-identical copies, one in 5,000) in pages
/// of 1,000, plus a live stream: every entry before the cut exactly once.
async fn every_entry_exactly_once(api: ApiGeneration) {
    let o = sync_opts(12_000, 30.0);
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let client = client(&tenant(api, &emu, &o), &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at() + TimeDelta::seconds(3);
    let src = sync_source(start, 1_000);
    let (route, seen, _sink) = test_sink();
    let mut run = run_source::<SyncLogFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the cut", || {
        committed_watermark(&store, "sync").is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    let expected = truth(&emu, start, cut);
    assert!(
        expected.len() > 2_500,
        "live entries too: {}",
        expected.len()
    );
    assert!(repeats(&expected) > 0, "the log has byte-identical entries");
    let got = in_range(&seen, start, cut);
    assert_eq!(got.len(), expected.len(), "every entry exactly once");
    assert!(got == expected, "the delivered entries are the emulator's");
    assert_eq!(kinds(&seen), vec![SourceKind::SyncLog]);
    assert!(
        emu.stats().requests_to("/api/v3/DirectorySyncLog") >= 12,
        "several pages: {:?}",
        emu.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_every_sync_log_entry_exactly_once() {
    every_entry_exactly_once(ApiGeneration::Incydr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_every_sync_log_entry_exactly_once() {
    every_entry_exactly_once(ApiGeneration::Legacy).await;
}

/// Stopped after three batches with more in flight to a stalled sink, started again
/// from the checkpoint: across both runs every entry exactly once. Read one page at a
/// time (`sliced` false: the test counts what the stalled sink holds page by page), or
/// in concurrent time slices (three requests at once, each answered after 30 ms so
/// that they overlap; later slices are read ahead when the first run stops).
async fn restart_in_the_middle(api: ApiGeneration, sliced: bool) {
    let o = EmulatorOptions {
        latency: Duration::from_millis(if sliced { 30 } else { 0 }),
        ..sync_opts(3_000, 20.0)
    };
    let emu = emulator(o.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let mut t = tenant(api, &emu, &o);
    t.max_concurrent_requests = if sliced { 3 } else { 1 };
    let client = client(&t, &metrics);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = emu.started_at() - TimeDelta::seconds(700);
    let cut = emu.started_at() + TimeDelta::seconds(3);
    let src = sync_source(start, 250);

    let (route, seen1, batches, sink1) = stalling_sink(3);
    let mut run = run_source::<SyncLogFetch>(&src, client.clone(), &store, metrics.clone(), route);
    run.wait_for("three batches", || batches.load(Ordering::SeqCst) >= 3)
        .await;
    run.wait_for("their checkpoint", || {
        committed_watermark(&store, "sync").is_some_and(|w| w > start)
    })
    .await;
    run.stop_with_stalled_sink(sink1).await;
    let first = seen1.lock().unwrap().len();
    if sliced {
        let at_once = emu.stats().max_data_in_flight;
        assert!(
            (2..=3).contains(&at_once),
            "{at_once} requests at once: the slices were not read at once within the limit"
        );
        assert!((1..=750).contains(&first), "stopped in the middle: {first}");
    } else {
        assert_eq!(first, 750, "stopped in the middle");
    }

    let (route, seen2, _s2) = test_sink();
    let mut run = run_source::<SyncLogFetch>(&src, client, &store, metrics.clone(), route);
    run.wait_for("the committed watermark to pass the cut", || {
        committed_watermark(&store, "sync").is_some_and(|w| w >= cut)
    })
    .await;
    run.stop().await;

    let mut got = in_range(&seen1, start, cut);
    got.extend(in_range(&seen2, start, cut));
    got.sort();
    let expected = truth(&emu, start, cut);
    assert_eq!(
        got.len(),
        expected.len(),
        "every entry exactly once across the restart"
    );
    assert!(got == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_sync_log_restart_in_the_middle_loses_and_repeats_nothing() {
    restart_in_the_middle(ApiGeneration::Incydr, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sync_log_restart_in_the_middle_loses_and_repeats_nothing() {
    restart_in_the_middle(ApiGeneration::Legacy, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incydr_sync_log_restart_in_the_middle_of_slices_loses_and_repeats_nothing() {
    restart_in_the_middle(ApiGeneration::Incydr, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sync_log_restart_in_the_middle_of_slices_loses_and_repeats_nothing() {
    restart_in_the_middle(ApiGeneration::Legacy, true).await;
}

/// The client alone: paging one range in ascending time order gives the ground truth,
/// and a window edge with sub-millisecond digits loses nothing (the query is widened to
/// whole milliseconds; entries outside the window come back and are the caller's to
/// drop).
#[tokio::test]
async fn pages_cover_the_window_at_sub_millisecond_edges() {
    let o = sync_opts(1_500, 0.0);
    let emu = emulator(o.clone()).await;
    let client = c42fwd::api::ApiClient::new(
        &tenant(ApiGeneration::Incydr, &emu, &o),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    // Edges 0.4 ms into a millisecond that holds entries.
    let all = truth(
        &emu,
        emu.started_at() - TimeDelta::seconds(700),
        emu.started_at(),
    );
    let entry_time = |s: &str| c42fwd::api::sync_log_entry_time(s).unwrap();
    let mut times: Vec<DateTime<Utc>> = all.iter().map(|s| entry_time(s)).collect();
    times.sort();
    let start = times[200] + TimeDelta::microseconds(400);
    let end = times[1_200] + TimeDelta::microseconds(400);
    let mut paged = Vec::new();
    let mut page = 0;
    let size = 128;
    loop {
        let p = client
            .query_sync_log(&SyncLogQuery {
                start,
                end,
                page,
                page_size: size,
            })
            .await
            .unwrap();
        let n = p.entries.len();
        paged.extend(p.entries.into_iter().map(|e| e.get().to_string()));
        if n < size as usize {
            break;
        }
        page += 1;
    }
    let in_order: Vec<DateTime<Utc>> = paged.iter().map(|s| entry_time(s)).collect();
    assert!(in_order.windows(2).all(|w| w[0] <= w[1]), "ascending");
    // Everything of the window is there, each copy once...
    let mut window: Vec<String> = paged
        .iter()
        .filter(|s| (start..end).contains(&entry_time(s)))
        .cloned()
        .collect();
    window.sort();
    assert_eq!(window, truth(&emu, start, end));
    // ... including the entries of the millisecond the window starts in.
    assert!(paged.iter().any(|s| entry_time(s) == times[200]));
    assert!(MAX_SYNC_LOG_PAGE_SIZE >= size);
}
