//! Normalize + encode throughput, per format, on a realistic mix of Audit Log events, and
//! on the alert, sync log and file event fixtures.
//!
//! `cargo bench --bench encode`. The figure that matters is the `encode/cef_5424_octet`
//! throughput (the default sink setup): the aim is at least a million events per second
//! on one core. Each iteration encodes the whole mix into one reused buffer, as a sink
//! does with a batch. Alerts are few (an alert summarizes minutes of activity) and
//! large (observations with file lists), so `encode_alerts/*` is about cost per alert,
//! not about a rate a tenant could reach.

// Benches measure real elapsed time, outside any tokio clock: std's `Instant` is the
// right tool here; the product's ban on it (clippy.toml) is for code tests must pause.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use c42fwd::encode::{Encoder, EncoderOptions, Format, Framing, SyslogStyle};
use c42fwd::event::{Event, SourceKind};
use c42fwd::normalize::normalize;
use chrono::DateTime;
use criterion::{black_box, criterion_group, Criterion, Throughput};
use serde_json::value::RawValue;

/// Shapes as the API sends them (Code42's examples in `docs/api.md` and the SDK
/// fixtures), with the share of each type roughly as in a busy tenant: logins and
/// searches dominate.
const MIX: &[&str] = &[
    r#"{"type$":"audit_log::logged_in/1","actorId":"898209175991065670","actorName":"whiteoak_ffs_user2@code42.com","actorAgent":"py42 0.2.0 python 2.7.14 Code42ForSplunk.v3.0.12.b250","actorIpAddress":"50.93.255.223, 64.252.71.111","timestamp":"2022-10-03T13:14:46.962Z","actorType":"UNKNOWN","success":true,"loginType":"SSO","authenticationMethod":"SAML"}"#,
    r#"{"type$":"audit_log::logged_in/1","actorId":"1015070955620029617","actorName":"arthur.pendragon@example.com","actorAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36","actorIpAddress":"67.220.16.122","timestamp":"2021-08-30T16:16:19.165123456Z","actorType":"USER","success":true,"loginType":"LOCAL","authenticationMethod":"PASSWORD"}"#,
    r#"{"type$":"audit_log::search_issued/1","actorId":"910391548587130243","actorName":"analyst@example.com","actorAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/84.0.4147.105 Safari/537.36","actorIpAddress":"203.0.113.7","timestamp":"2020-08-13T15:52:40.240585Z","actorType":"USER","success":true,"type":"query","requestJson":"{\"groups\":[{\"filters\":[{\"term\":\"eventTimestamp\",\"operator\":\"WITHIN_THE_LAST\",\"value\":\"P30D\",\"display\":null}],\"filterClause\":\"AND\"},{\"filters\":[{\"term\":\"exposure\",\"operator\":\"IS\",\"value\":\"ApplicationRead\",\"display\":null}],\"filterClause\":\"OR\"}],\"groupClause\":\"AND\",\"pgSize\":100,\"pgNum\":1,\"srtKey\":null,\"srtDir\":\"desc\",\"purpose\":\"USER_EXECUTED_SEARCH\"}","resultCount":15}"#,
    r#"{"type$":"audit_log::file_downloaded/1","actorId":"1015070955620029617","actorName":"arthur.pendragon@example.com","actorAgent":"incydr-cli 2.1.0 python 3.11","actorIpAddress":"2001:db8:85a3::8a2e:370:7334","timestamp":"2024-02-29T23:59:59.123456789Z","actorType":"USER","success":true,"fileId":"6d1e0f4c3b2a","fileName":"Q3 forecast final.xlsx","fileSize":1048576,"md5":"9e107d9d372bb6826bd81d3542a419d6","sha256":"d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592","downloadSource":"FORENSIC_SEARCH"}"#,
    r#"{"type$":"audit_log::user_roles_assigned/1","actorId":"api-client-7","actorName":"key-42f1","actorAgent":"python-requests/2.31.0","actorIpAddress":"198.51.100.23","timestamp":"2023-05-01T08:00:00.000Z","actorType":"API_CLIENT","success":true,"userId":"1040917394772356789","username":"chloe.dubois@example.com","roleNames":["Security Center User","Customer Cloud Admin"]}"#,
    r#"{"type$":"audit_log::alert_state_changed/1","actorId":"1015070955620029617","actorName":"analyst@example.com","actorAgent":"Mozilla/5.0","actorIpAddress":"192.0.2.10","timestamp":"2024-06-30T12:34:56.000001Z","actorType":"USER","success":true,"alertId":"2f1c0c1e-6b1f-4c5e-9a0e-6a1d0e6b7c11","oldState":"OPEN","newState":"RESOLVED","note":"False positive: approved transfer to partner share"}"#,
    r#"{"type$":"audit_log::domain_changed/1","actorId":"1015070955620029617","actorName":"admin@example.com","actorAgent":"Mozilla/5.0","actorIpAddress":"192.0.2.10","timestamp":"2024-01-15T09:30:00.250Z","actorType":"USER","success":true,"trustedActivityId":"ta-778","activityType":"DOMAIN","value":"partner42.example.com","description":"Partner file share","previousValue":"partner41.example.com","previousDescription":"Old partner"}"#,
    r#"{"type$":"audit_log::federation_metadata_updated/1","actorId":"thwlhuOyiq2svbdcqfmm2demndi","actorName":"SYSTEM","actorAgent":null,"actorIpAddress":null,"timestamp":"2022-09-28T19:57:10.072Z","actorType":"SYSTEM","federationId":"1034183599256332463","metadataUrl":"https://md.incommon.org/InCommon/InCommon-metadata.xml","displayName":"Auth Provider Federation","metadataMd5sum":"4df933958e17eea24f51f3bf0d375327"}"#,
];

/// Alert details as the alert source hands them over (`data` parsed): the repository's
/// fixtures, so that the bench needs nothing outside the crate.
const ALERTS: &[&str] = &[
    include_str!("../tests/fixtures/alerts/endpoint_exfiltration_seed.json"),
    include_str!("../tests/fixtures/alerts/cloud_share_permissions_two_observations.json"),
    include_str!("../tests/fixtures/alerts/composite_three_observations.json"),
    include_str!("../tests/fixtures/alerts/file_name_match_data_string.json"),
];

const SYNC_LOG: &[&str] = &[
    include_str!("../tests/fixtures/sync_log/user_updated_email.json"),
    include_str!("../tests/fixtures/sync_log/user_added.json"),
    include_str!("../tests/fixtures/sync_log/role_assigned.json"),
    include_str!("../tests/fixtures/sync_log/user_deactivated.json"),
];

/// File events as `/v2/file-events` sends them (about 2.5 KB of nested JSON each, a
/// hundred-odd fields once flattened): the repository's fixtures, one per action.
const FILE_EVENTS: &[&str] = &[
    include_str!("../tests/fixtures/file_events/application-read.json"),
    include_str!("../tests/fixtures/file_events/file-deleted.json"),
    include_str!("../tests/fixtures/file_events/file-downloaded.json"),
    include_str!("../tests/fixtures/file_events/file-emailed.json"),
    include_str!("../tests/fixtures/file_events/file-printed.json"),
    include_str!("../tests/fixtures/file_events/file-shared.json"),
    include_str!("../tests/fixtures/file_events/file-uploaded.json"),
    include_str!("../tests/fixtures/file_events/git-push.json"),
    include_str!("../tests/fixtures/file_events/removable-media-created.json"),
    include_str!("../tests/fixtures/file_events/sync-app-modified.json"),
];

fn events_of(kind: SourceKind, mix: &[&str]) -> Vec<Event> {
    mix.iter()
        .map(|json| {
            let raw = RawValue::from_string(json.trim().to_owned()).unwrap();
            Event::new(kind, raw, DateTime::UNIX_EPOCH)
        })
        .collect()
}

fn events() -> Vec<Event> {
    events_of(SourceKind::AuditLog, MIX)
}

/// The event set a `C42FWD_BENCH_FIXED` name asks for: `<config>` (audit),
/// `<config>@alerts`, `<config>@sync_log` or `<config>@file_events`.
fn events_for(name: &str) -> (&str, Vec<Event>) {
    match name.split_once('@') {
        Some((config, "alerts")) => (config, events_of(SourceKind::Alerts, ALERTS)),
        Some((config, "sync_log")) => (config, events_of(SourceKind::SyncLog, SYNC_LOG)),
        Some((config, "file_events")) => (config, events_of(SourceKind::FileEvents, FILE_EVENTS)),
        Some((_, other)) => panic!("unknown event set {other}"),
        None => (name, events()),
    }
}

fn encoder(format: Format, syslog: SyslogStyle, framing: Framing) -> Encoder {
    Encoder::new(EncoderOptions {
        format,
        syslog,
        framing,
        facility: 13,
        hostname: "fwd01.example.com".into(),
        app_name: "c42fwd".into(),
    })
}

const CONFIGS: &[(&str, Format, SyslogStyle, Framing)] = &[
    (
        "cef_5424_octet",
        Format::Cef,
        SyslogStyle::Rfc5424,
        Framing::OctetCounting,
    ),
    ("cef_none_lf", Format::Cef, SyslogStyle::None, Framing::Lf),
    (
        "cef_3164_lf",
        Format::Cef,
        SyslogStyle::Rfc3164,
        Framing::Lf,
    ),
    (
        "json_raw_5424_octet",
        Format::JsonRaw,
        SyslogStyle::Rfc5424,
        Framing::OctetCounting,
    ),
    (
        "json_raw_none_lf",
        Format::JsonRaw,
        SyslogStyle::None,
        Framing::Lf,
    ),
    (
        "json_normalized_5424_octet",
        Format::JsonNormalized,
        SyslogStyle::Rfc5424,
        Framing::OctetCounting,
    ),
    (
        "json_normalized_none_lf",
        Format::JsonNormalized,
        SyslogStyle::None,
        Framing::Lf,
    ),
    (
        "leef2_5424_octet",
        Format::Leef2,
        SyslogStyle::Rfc5424,
        Framing::OctetCounting,
    ),
    (
        "leef1_none_lf",
        Format::Leef1,
        SyslogStyle::None,
        Framing::Lf,
    ),
];

/// The configurations measured on alerts and sync log entries.
const OTHER_SOURCE_CONFIGS: &[&str] = &[
    "cef_5424_octet",
    "leef2_5424_octet",
    "json_normalized_none_lf",
];

fn bench(c: &mut Criterion) {
    let events = events();
    let n = events.len() as u64;

    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Elements(n));
    g.bench_function("audit_mix", |b| {
        b.iter(|| {
            for e in &events {
                black_box(normalize(black_box(e)));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(n));
    for &(name, format, syslog, framing) in CONFIGS {
        let enc = encoder(format, syslog, framing);
        let mut out = Vec::with_capacity(64 * 1024);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for e in &events {
                    enc.encode(black_box(e), &mut out);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();

    for (group, kind, mix) in [
        ("encode_alerts", SourceKind::Alerts, ALERTS),
        ("encode_sync_log", SourceKind::SyncLog, SYNC_LOG),
        ("encode_file_events", SourceKind::FileEvents, FILE_EVENTS),
    ] {
        let events = events_of(kind, mix);
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function("normalize", |b| {
            b.iter(|| {
                for e in &events {
                    black_box(normalize(black_box(e)));
                }
            })
        });
        for &(name, format, syslog, framing) in CONFIGS {
            if !OTHER_SOURCE_CONFIGS.contains(&name) {
                continue;
            }
            let enc = encoder(format, syslog, framing);
            let mut out = Vec::with_capacity(64 * 1024);
            g.bench_function(name, |b| {
                b.iter(|| {
                    out.clear();
                    for e in &events {
                        enc.encode(black_box(e), &mut out);
                    }
                    black_box(out.len())
                })
            });
        }
        g.finish();
    }

    // A page of 1,000 file events as the API sends it, split as it arrives in 16 KiB
    // pieces: what the source does to each event before any sink sees it.
    let mut body = String::from(r#"{"fileEvents":["#);
    for i in 0..1000 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(FILE_EVENTS[i % FILE_EVENTS.len()].trim());
    }
    body.push_str(r#"],"nextPgToken":"abc","totalCount":1000,"problems":null}"#);
    let mut g = c.benchmark_group("split");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("file_events_page", |b| {
        b.iter(|| {
            let n = c42fwd::api::bench_split_file_events(black_box(body.as_bytes()), 16 * 1024);
            assert_eq!(n, Ok(1000));
        })
    });
    g.finish();
}

/// `C42FWD_BENCH_FIXED=<config>:<events>` runs one configuration for a fixed number of
/// events and nothing else, for `perf stat -e cycles:u` on a machine too busy for
/// wall-clock figures: cycles per event do not depend on how often the process was
/// descheduled.
fn fixed(spec: &str) {
    let (name, count) = spec.split_once(':').expect("config:events");
    let count: u64 = count.parse().expect("event count");
    let full_name = name;
    let (name, events) = events_for(name);
    let mut out = Vec::with_capacity(64 * 1024);
    let start = std::time::Instant::now();
    let mut done = 0;
    if name == "baseline_serde_ignore" {
        // The floor for any serde_json-based reader: scan each event, keep nothing.
        while done < count {
            for e in &events {
                black_box(serde_json::from_str::<serde::de::IgnoredAny>(black_box(e.json())).ok());
            }
            done += events.len() as u64;
        }
    } else if name == "scan_only" {
        // normalize's reading of the object alone, without taking anything.
        while done < count {
            for e in &events {
                let mut n = 0usize;
                c42fwd::normalize::json::scan_object(black_box(e.json()), |m| {
                    n += m.value.len();
                });
                black_box(n);
            }
            done += events.len() as u64;
        }
    } else if name == "baseline_copy" {
        // The floor for any encoder: copy each event's bytes.
        while done < count {
            out.clear();
            for e in &events {
                out.extend_from_slice(black_box(e.json()).as_bytes());
            }
            done += events.len() as u64;
        }
    } else if let Some(config) = name.strip_suffix("+prenormalized") {
        // Encoding alone: the records are normalized once, outside the loop.
        let &(_, format, syslog, framing) = CONFIGS
            .iter()
            .find(|c| c.0 == config)
            .expect("unknown config");
        let enc = encoder(format, syslog, framing);
        let records: Vec<_> = events.iter().map(normalize).collect();
        while done < count {
            out.clear();
            for (r, e) in records.iter().zip(&events) {
                enc.encode_record(black_box(r), e, &mut out);
            }
            done += events.len() as u64;
        }
    } else if name == "normalize" {
        while done < count {
            for e in &events {
                black_box(normalize(black_box(e)));
            }
            done += events.len() as u64;
        }
    } else {
        let &(_, format, syslog, framing) = CONFIGS
            .iter()
            .find(|c| c.0 == name)
            .expect("unknown config");
        let enc = encoder(format, syslog, framing);
        while done < count {
            out.clear();
            for e in &events {
                enc.encode(black_box(e), &mut out);
            }
            done += events.len() as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{full_name}: {done} events in {secs:.3} s wall ({:.0} events/s wall)",
        done as f64 / secs
    );
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("C42FWD_BENCH_FIXED") {
        fixed(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
