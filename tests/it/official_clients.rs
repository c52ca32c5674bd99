//! The official Code42 clients, unchanged, against the emulator: the `incydr` CLI (the
//! incydr SDK 2.12, Incydr gateway) and code42cli 1.19 (on py42 1.29, the legacy API with
//! its service discovery), run as the programs users run, from the Python virtual
//! environments `scripts/python-clients.sh` creates (`./scripts/test.sh` runs it).
//!
//! Each test starts its own emulator (no live stream, no lag, so a range's events are
//! fixed), runs a CLI on a range of it with a temporary HOME and working directory (the
//! user's profiles and keyring are never touched), and checks that the CLI exited 0 and
//! printed (or sent to a TCP receiver of the test) exactly the records the emulator
//! holds for that range, that the emulator's per-route counters show the requests the
//! client is known to make, and that it called no route the emulator does not serve.
//! `docs/official-clients.md` says how each client is run and what it calls.
//!
//! The environments are found in `$C42FWD_PY_DIR` (default `target/py` of this
//! repository): `incydr/bin/incydr` and `code42cli/bin/code42`. A missing one fails the
//! test with the command that creates it.

use crate::support::source::emulator;
use crate::support::{multiset, TcpReceiver};
use c42fwd_emulator::{EmulatorHandle, EmulatorOptions};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one CLI run may take before the test fails (debug builds, two shared cores,
/// Python start-up).
const CLI_DEADLINE: Duration = Duration::from_secs(180);

/// The emulated tenant: 3,000 events and 240 alerts over the hour before the start, no
/// live stream and no lag, so that every range in the past is complete and fixed.
fn options() -> EmulatorOptions {
    EmulatorOptions {
        backlog: 3_000,
        backlog_span: Duration::from_secs(3_600),
        rate: 0.0,
        alert_backlog: 240,
        alert_rate: 0.0,
        sync_log_backlog: 0,
        sync_log_rate: 0.0,
        lag: Duration::ZERO,
        ..EmulatorOptions::default()
    }
}

/// A range of whole seconds (the CLIs take no finer times) inside the backlog: from 45
/// to about 15 minutes before the start, about half of it (1,500 events, 120 alerts),
/// below the 10,000 results a CLI can read from one range. Its end is moved by whole
/// seconds until the range holds no multiple of 100 events: then no CLI reads a last
/// page without events, which both mishandle (`docs/official-clients.md`).
fn range(emu: &EmulatorHandle) -> (DateTime<Utc>, DateTime<Utc>) {
    let s = |m: i64| {
        (emu.started_at() - TimeDelta::minutes(m))
            .duration_trunc(TimeDelta::seconds(1))
            .expect("whole seconds")
    };
    let (start, mut end) = (s(45), s(15));
    while emu.events_between(start, end).len() % 100 == 0 {
        end += TimeDelta::seconds(1);
    }
    (start, end)
}

/// `2026-01-31 10:00:00`, the form both CLIs take (UTC).
fn cli_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Where the virtual environment `name` is (`incydr` or `code42cli`).
fn venv(name: &str) -> PathBuf {
    let root = std::env::var_os("C42FWD_PY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py"));
    root.join(name)
}

/// The path of `program` in the environment `name`; panics with the command that
/// creates the environment when it is missing.
fn program(name: &str, program: &str) -> PathBuf {
    let p = venv(name).join("bin").join(program);
    assert!(
        p.is_file(),
        "the official client `{program}` is missing: {} does not exist. Create the Python \
         environments of the official clients with `./scripts/python-clients.sh` (run by \
         ./scripts/test.sh), or point C42FWD_PY_DIR at a directory holding incydr/ and code42cli/",
        p.display()
    );
    p
}

/// A place for one client's profile, keyring, checkpoints and working directory.
struct Home(tempfile::TempDir);

impl Home {
    fn new() -> Self {
        Home(tempfile::tempdir().expect("temp dir"))
    }

    /// Runs `cmd args`, with HOME, the XDG directories and the working directory in this
    /// temporary directory, no proxy, a plain-text keyring in HOME and `extra_env`; panics
    /// (with both outputs) unless it exits 0 within [`CLI_DEADLINE`]. Returns stdout.
    async fn run(&self, cmd: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> String {
        let home = self.0.path();
        let mut c = tokio::process::Command::new(cmd);
        c.args(args)
            .current_dir(home)
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            // code42cli keeps passwords in the keyring: a file in this HOME, not the
            // user's keyring (keyrings.alt ships with code42cli).
            .env(
                "PYTHON_KEYRING_BACKEND",
                "keyrings.alt.file.PlaintextKeyring",
            )
            .env("PYTHONWARNINGS", "ignore")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("INCYDR_USE_RICH", "false")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "200")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        for v in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
            "INCYDR_URL",
            "INCYDR_API_CLIENT_ID",
            "INCYDR_API_CLIENT_SECRET",
        ] {
            c.env_remove(v);
        }
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let shown = format!("{} {}", cmd.display(), args.join(" "));
        let out = tokio::time::timeout(CLI_DEADLINE, c.output())
            .await
            .unwrap_or_else(|_| panic!("`{shown}` did not finish within {CLI_DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("cannot start `{shown}`: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let log = std::fs::read_to_string(home.join(".code42cli/log/code42_errors.log"))
            .unwrap_or_default();
        assert!(
            out.status.success(),
            "`{shown}` failed ({}):\nstderr: {stderr}\nstdout: {}\ncode42cli error log: {log}",
            out.status,
            &stdout[..stdout.len().min(4_000)]
        );
        stdout
    }
}

/// The JSON records of a text with one JSON object per line (blank lines and anything
/// that is not an object are refused).
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON record ({e}): {l:?}"));
            assert!(v.is_object(), "not a JSON object: {l:?}");
            v
        })
        .collect()
}

/// Records compared as multisets of their canonical JSON text (a CLI re-serializes
/// them: other escapes, other spacing, same values).
fn canonical(records: &[Value]) -> std::collections::HashMap<String, usize> {
    multiset(records.iter().map(Value::to_string))
}

/// The Audit Log events the emulator holds for `[start, end)`, parsed.
fn events(emu: &EmulatorHandle, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Value> {
    emu.events_between(start, end)
        .iter()
        .map(|e| serde_json::from_str(e).expect("emulator event json"))
        .collect()
}

/// The ids of the alerts the emulator holds, created in `[start, end]` (the CLIs' alert
/// ranges include their end; no alert falls on a whole second).
fn alert_ids(emu: &EmulatorHandle, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
    let ids: Vec<String> = emu
        .alert_summaries_between(start, end)
        .iter()
        .map(|a| {
            let v: Value = serde_json::from_str(a).expect("alert json");
            v["id"].as_str().expect("alert id").to_string()
        })
        .collect();
    assert!(ids.len() > 50, "the range holds alerts: {}", ids.len());
    ids
}

/// The `id`s of records, each once; panics if one appears twice.
fn ids_of(records: &[Value]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for r in records {
        let id = r["id"]
            .as_str()
            .unwrap_or_else(|| panic!("record without id: {r}"));
        assert!(ids.insert(id.to_string()), "alert {id} listed twice");
    }
    ids
}

/// A TCP receiver's records (one JSON object per line, as both CLIs send them), once
/// `n` have arrived.
async fn received(rx: &TcpReceiver, n: usize) -> Vec<Value> {
    let got = rx
        .wait_until(&format!("{n} json lines"), CLI_DEADLINE, |r| {
            r.bytes().iter().filter(|&&b| b == b'\n').count() >= n
        })
        .await;
    json_lines(&String::from_utf8_lossy(&got.bytes()))
}

/// Panics when the client called a route the emulator does not serve.
fn assert_no_unknown_route(emu: &EmulatorHandle) {
    let s = emu.stats();
    assert_eq!(
        s.unknown_requests(),
        0,
        "the client called routes the emulator does not serve: {:?}",
        s.unknown
    );
}

/// The routes the client called, without the ones in `allowed`: none expected.
fn routes_beyond(emu: &EmulatorHandle, allowed: &[&str]) -> BTreeMap<String, u64> {
    emu.stats()
        .requests
        .into_iter()
        .filter(|(r, _)| !allowed.contains(&r.as_str()))
        .collect()
}

/// The arguments and environment of the `incydr` CLI for this emulator.
fn incydr_env(emu: &EmulatorHandle) -> Vec<(&'static str, String)> {
    let o = EmulatorOptions::default();
    vec![
        ("INCYDR_URL", emu.base_url()),
        ("INCYDR_API_CLIENT_ID", o.client_id),
        ("INCYDR_API_CLIENT_SECRET", o.client_secret),
    ]
}

fn as_env<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `incydr audit-log search`, printed as JSON lines and sent to a TCP receiver: both
/// exactly the range's events, read 100 a page from the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incydr_cli_reads_the_audit_log_of_a_range() {
    let incydr = program("incydr", "incydr");
    let emu = emulator(options()).await;
    let (start, end) = range(&emu);
    let expected = events(&emu, start, end);
    assert!(expected.len() > 1_000, "{}", expected.len());
    let env = incydr_env(&emu);
    let home = Home::new();
    let (s, e) = (cli_time(start), cli_time(end));
    let search = ["audit-log", "search", "--start", &s, "--end", &e];

    let printed = home
        .run(
            &incydr,
            &[&search[..], &["-f", "json_lines"]].concat(),
            &as_env(&env),
        )
        .await;
    let printed = json_lines(&printed);
    assert_eq!(
        printed.len(),
        expected.len(),
        "json lines: every event once"
    );
    assert!(
        canonical(&printed) == canonical(&expected),
        "json lines: the range's events"
    );

    let rx = TcpReceiver::bind().await;
    let output = format!("TCP:127.0.0.1:{}", rx.port());
    let out = home
        .run(
            &incydr,
            &[&search[..], &["--output", &output]].concat(),
            &as_env(&env),
        )
        .await;
    assert!(
        out.trim().is_empty(),
        "nothing printed with --output: {out}"
    );
    let sent = received(&rx, expected.len()).await;
    assert_eq!(sent.len(), expected.len(), "tcp: every event once");
    assert!(
        canonical(&sent) == canonical(&expected),
        "tcp: the range's events"
    );

    let stats = emu.stats();
    let route = "/v1/audit/search-audit-log";
    // 100 a page, until a page is short: n / 100 + 1 requests per run.
    let pages = (expected.len() as u64 / 100 + 1) * 2;
    assert_eq!(stats.requests_to(route), pages, "{stats:?}");
    assert_eq!(stats.events_from(route), 2 * expected.len() as u64);
    assert_eq!(
        routes_beyond(&emu, &["/v1/oauth", route]),
        BTreeMap::new(),
        "the incydr cli calls only the token and search routes"
    );
    assert_no_unknown_route(&emu);
    emu.shutdown().await;
}

/// `incydr alerts search` of a range: every alert of the emulator created in it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incydr_cli_reads_the_alerts_of_a_range() {
    let incydr = program("incydr", "incydr");
    let emu = emulator(options()).await;
    let (start, end) = range(&emu);
    let expected = alert_ids(&emu, start, end);
    let env = incydr_env(&emu);
    let home = Home::new();
    let (s, e) = (cli_time(start), cli_time(end));
    let out = home
        .run(
            &incydr,
            &[
                "alerts",
                "search",
                "--start",
                &s,
                "--end",
                &e,
                "-f",
                "json-lines",
            ],
            &as_env(&env),
        )
        .await;
    let got = json_lines(&out);
    assert_eq!(got.len(), expected.len(), "every alert once");
    assert_eq!(
        ids_of(&got),
        expected.iter().cloned().collect::<BTreeSet<_>>()
    );
    let stats = emu.stats();
    assert_eq!(
        stats.events_from("/v1/alerts/query-alerts"),
        expected.len() as u64,
        "each alert served once: {stats:?}"
    );
    assert_no_unknown_route(&emu);
    emu.shutdown().await;
}

/// The code42cli profile of an API client on this emulator (py42's `from_api_client`,
/// checked by the CLI when it stores the secret).
async fn code42cli_api_client_profile(home: &Home, code42: &Path, emu: &EmulatorHandle) {
    let o = EmulatorOptions::default();
    let out = home
        .run(
            code42,
            &[
                "profile",
                "create-api-client",
                "-n",
                "emu",
                "-s",
                &emu.base_url(),
                "--api-client-id",
                &o.client_id,
                "--secret",
                &o.client_secret,
                "-y",
            ],
            &[],
        )
        .await;
    assert!(out.contains("Successfully created profile 'emu'"), "{out}");
}

/// The routes py42 uses for the legacy Audit Log, found the way it finds them: the
/// key-value store at the root (`/v1/{key}`) and the search at the root
/// (`/rpc/search/...`), never under the discovered URL's path (`/audit-log/...`).
const LEGACY_AUDIT_ROUTES: &[&str] = &[
    "/api/v3/oauth/token",
    "/api/v1/ServerEnv",
    "/v1/{key}",
    "/rpc/search/search-audit-log",
];

/// code42cli with an API client: `audit-logs search` and `audit-logs send-to` over TCP,
/// both exactly the range's events, found through ServerEnv and the key-value store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code42cli_reads_the_audit_log_of_a_range_with_an_api_client() {
    let code42 = program("code42cli", "code42");
    let emu = emulator(options()).await;
    let (start, end) = range(&emu);
    let expected = events(&emu, start, end);
    let home = Home::new();
    code42cli_api_client_profile(&home, &code42, &emu).await;
    let (s, e) = (cli_time(start), cli_time(end));

    let out = home
        .run(
            &code42,
            &["audit-logs", "search", "-b", &s, "-e", &e, "-f", "RAW-JSON"],
            &[],
        )
        .await;
    let printed = json_lines(&out);
    assert_eq!(printed.len(), expected.len(), "search: every event once");
    assert!(
        canonical(&printed) == canonical(&expected),
        "search: the range's events"
    );

    let rx = TcpReceiver::bind().await;
    let to = format!("127.0.0.1:{}", rx.port());
    home.run(
        &code42,
        &[
            "audit-logs",
            "send-to",
            "-b",
            &s,
            "-e",
            &e,
            "-p",
            "TCP",
            &to,
        ],
        &[],
    )
    .await;
    let sent = received(&rx, expected.len()).await;
    assert_eq!(sent.len(), expected.len(), "send-to: every event once");
    assert!(
        canonical(&sent) == canonical(&expected),
        "send-to: the range's events"
    );

    let stats = emu.stats();
    let search = "/rpc/search/search-audit-log";
    // 500 a page, until a page is short, per run.
    let pages = (expected.len() as u64 / 500 + 1) * 2;
    assert_eq!(stats.requests_to(search), pages, "{stats:?}");
    assert_eq!(stats.events_from(search), 2 * expected.len() as u64);
    assert_eq!(
        routes_beyond(&emu, LEGACY_AUDIT_ROUTES),
        BTreeMap::new(),
        "py42 joins /rpc/search/... onto the discovered url, dropping its /audit-log path"
    );
    assert_no_unknown_route(&emu);
    emu.shutdown().await;
}

/// code42cli with an API client: `alerts search` and `alerts send-to`, exactly the
/// range's alerts, each with its details (observations), through the discovered alert
/// service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code42cli_reads_the_alerts_of_a_range_with_an_api_client() {
    let code42 = program("code42cli", "code42");
    let emu = emulator(options()).await;
    let (start, end) = range(&emu);
    let expected: BTreeSet<String> = alert_ids(&emu, start, end).into_iter().collect();
    let home = Home::new();
    code42cli_api_client_profile(&home, &code42, &emu).await;
    let (s, e) = (cli_time(start), cli_time(end));

    let out = home
        .run(
            &code42,
            &["alerts", "search", "-b", &s, "-e", &e, "-f", "RAW-JSON"],
            &[],
        )
        .await;
    let printed = json_lines(&out);
    assert_eq!(ids_of(&printed), expected, "search: the range's alerts");
    assert!(
        printed.iter().all(|a| a["observations"].is_array()),
        "search: alerts with their details"
    );

    let rx = TcpReceiver::bind().await;
    let to = format!("127.0.0.1:{}", rx.port());
    home.run(
        &code42,
        &["alerts", "send-to", "-b", &s, "-e", &e, "-p", "TCP", &to],
        &[],
    )
    .await;
    let sent = received(&rx, expected.len()).await;
    assert_eq!(ids_of(&sent), expected, "send-to: the range's alerts");

    let stats = emu.stats();
    let n = expected.len() as u64;
    assert_eq!(
        stats.events_from("/svc/api/v1/query-alerts"),
        2 * n,
        "{stats:?}"
    );
    assert_eq!(stats.events_from("/svc/api/v1/query-details"), 2 * n);
    assert_eq!(
        routes_beyond(
            &emu,
            &[
                "/api/v3/oauth/token",
                "/api/v1/ServerEnv",
                "/v1/{key}",
                "/api/v3/customer/my",
                "/svc/api/v1/query-alerts",
                "/svc/api/v1/query-details",
            ]
        ),
        BTreeMap::new(),
        "py42 calls the alert service at the root of the discovered url"
    );
    assert_no_unknown_route(&emu);
    emu.shutdown().await;
}

/// code42cli with a user name, password and one-time code (`profile create -u
/// --password --totp`; the password kept in a keyring file of the temporary HOME): the
/// login checks `/api/v1/User/my`, and `audit-logs search` reads the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code42cli_reads_the_audit_log_with_a_user_login_and_totp() {
    let code42 = program("code42cli", "code42");
    let o = EmulatorOptions {
        totp: Some("424242".into()),
        ..options()
    };
    let emu = emulator(o.clone()).await;
    let (start, end) = range(&emu);
    let expected = events(&emu, start, end);
    let home = Home::new();
    let url = emu.base_url();
    let out = home
        .run(
            &code42,
            &[
                "profile",
                "create",
                "-n",
                "user",
                "-s",
                &url,
                "-u",
                &o.username,
                "--password",
                &o.password,
                "--totp",
                "424242",
                "-y",
            ],
            &[],
        )
        .await;
    assert!(out.contains("Successfully created profile 'user'"), "{out}");
    let (s, e) = (cli_time(start), cli_time(end));
    let out = home
        .run(
            &code42,
            &[
                "audit-logs",
                "search",
                "-b",
                &s,
                "-e",
                &e,
                "-f",
                "RAW-JSON",
                "--totp",
                "424242",
            ],
            &[],
        )
        .await;
    let printed = json_lines(&out);
    assert_eq!(printed.len(), expected.len(), "every event once");
    assert!(
        canonical(&printed) == canonical(&expected),
        "the range's events"
    );

    let stats = emu.stats();
    assert_eq!(
        stats.requests_to("/api/v3/auth/jwt"),
        2,
        "one login per run: {stats:?}"
    );
    assert_eq!(stats.unauthorized, 0, "the password and code were right");
    assert_eq!(
        stats.requests_to("/api/v1/User/my"),
        2,
        "py42 checks each login"
    );
    assert_eq!(
        routes_beyond(
            &emu,
            &[
                &["/api/v3/auth/jwt", "/api/v1/User/my"][..],
                &LEGACY_AUDIT_ROUTES[1..]
            ]
            .concat()
        ),
        BTreeMap::new()
    );
    assert_no_unknown_route(&emu);
    emu.shutdown().await;
}

/// c42fwd's own legacy client finds and calls the services where py42 does (the routes
/// the code42cli tests above see): the key-value store at `/v1/{key}`, the search and the
/// alert service at the root, never under the discovered URLs' paths, and no unknown
/// route. Configured service URLs are appended to, path included. (Needs no Python.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c42fwd_discovers_and_calls_the_legacy_services_where_py42_does() {
    use c42fwd::api::{AlertQuery, ApiClient, AuditQuery};
    use c42fwd::config::{ApiGeneration, AuditFilters, Credentials};
    use c42fwd::metrics::Metrics;
    use c42fwd::secret::Secret;
    use std::sync::Arc;

    let o = options();
    let emu = emulator(o.clone()).await;
    let (start, end) = range(&emu);
    let mut t = crate::support::source::tenant(ApiGeneration::Legacy, &emu, &o);
    t.credentials = Credentials::ApiClient {
        client_id: o.client_id.clone(),
        secret: Secret::new(o.client_secret.clone()),
    };
    let filters = AuditFilters::default();
    let audit = |page| AuditQuery {
        start,
        end,
        page,
        page_size: 10_000,
        filters: &filters,
    };
    let alerts = AlertQuery {
        start,
        end,
        page: 0,
        page_size: 500,
        groups: &[],
    };

    let client = ApiClient::new(&t, Arc::new(Metrics::new())).unwrap();
    let page = client.search_audit_log(&audit(0)).await.unwrap();
    let got: Vec<Value> = page
        .events
        .iter()
        .map(|e| serde_json::from_str(e.get()).unwrap())
        .collect();
    assert!(canonical(&got) == canonical(&events(&emu, start, end)));
    let listed = client.query_alerts(&alerts).await.unwrap();
    assert_eq!(listed.alerts.len(), alert_ids(&emu, start, end).len());
    let s = emu.stats();
    assert_eq!(
        s.requests_to("/v1/{key}"),
        2,
        "one look-up per service: {s:?}"
    );
    assert_eq!(s.requests_to("/rpc/search/search-audit-log"), 1);
    assert_eq!(s.requests_to("/svc/api/v1/query-alerts"), 1);
    assert_eq!(
        routes_beyond(
            &emu,
            &[
                LEGACY_AUDIT_ROUTES,
                &["/api/v3/customer/my", "/svc/api/v1/query-alerts"]
            ]
            .concat()
        ),
        BTreeMap::new(),
        "the routes code42cli calls, no others"
    );
    assert_no_unknown_route(&emu);

    // URLs the user configures are used as written: paths appended.
    t.services.audit_log = Some(format!("{}/audit-log", emu.base_url()).parse().unwrap());
    t.services.alerts = Some(format!("{}/alert-service", emu.base_url()).parse().unwrap());
    let client = ApiClient::new(&t, Arc::new(Metrics::new())).unwrap();
    client.search_audit_log(&audit(0)).await.unwrap();
    client.query_alerts(&alerts).await.unwrap();
    let s = emu.stats();
    assert_eq!(
        s.requests_to("/audit-log/rpc/search/search-audit-log"),
        1,
        "{s:?}"
    );
    assert_eq!(s.requests_to("/alert-service/svc/api/v1/query-alerts"), 1);
    assert_eq!(
        s.requests_to("/v1/{key}"),
        2,
        "no discovery for configured urls"
    );
    assert_no_unknown_route(&emu);
    emu.shutdown().await;
}
