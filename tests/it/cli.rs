//! The command line as a user meets it: `validate`, `run` with a bad file, `demo`,
//! `checkpoint`, `emulate`.

use crate::support::daemon::c42fwd;
use crate::support::unused_tcp_port;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"
state_dir = "STATE"
[tenants.acme]
api = "incydr"
base_url = "https://api.us.code42.com"
client_id = "key-1"
client_secret = "TOPSECRET-VALUE"
[sources.audit]
type = "audit_log"
tenant = "acme"
[sinks.siem]
type = "tcp"
host = "siem.example.com"
port = 514
[[routes]]
sources = ["audit"]
sinks = ["siem"]
"#;

#[tokio::test]
async fn validate_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(&dir, "good.toml", GOOD);
    let out = c42fwd()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": ok (1 tenant(s), 1 source(s), 1 sink(s))")
    );
}

#[tokio::test]
async fn validate_lists_every_problem_with_its_key_path_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD
        .replace("port = 514", "port = 0")
        .replace("tenant = \"acme\"", "tenant = \"acme\"\nstart = \"120d\"")
        .replace(
            "client_secret = \"TOPSECRET-VALUE\"",
            "client_secret = { env = \"C42FWD_IT_UNSET_SECRET\" }",
        );
    let cfg = write(&dir, "bad.toml", &bad);
    let out = c42fwd()
        .env_remove("C42FWD_IT_UNSET_SECRET")
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "names the file: {err}");
    assert!(
        err.contains("sinks.siem.port: 0 is out of range 1-65535"),
        "{err}"
    );
    assert!(
        err.contains("sources.audit.start: `120d` is more than 90 days back"),
        "{err}"
    );
    assert!(
        err.contains(
            "tenants.acme.client_secret: environment variable C42FWD_IT_UNSET_SECRET is not set"
        ),
        "{err}"
    );
}

/// The duration that once validated and then panicked the poll loop, an out-of-range
/// grace period and retry, and names that cannot be file names: `validate` and `run`
/// refuse them with exit 2, each with its key path and the allowed range.
#[tokio::test]
async fn overflowing_durations_and_unusable_names_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD
        .replace(
            "tenant = \"acme\"",
            "tenant = \"acme\"\npoll_interval = \"18446744073709551615s\"",
        )
        .replace(
            "state_dir = \"STATE\"",
            "state_dir = \"STATE\"\nshutdown_grace = \"2h\"",
        )
        .replace(
            "port = 514",
            "port = 514\n[sinks.\"../siem\".retry]\nmax = \"100000h\"",
        )
        .replace("[sinks.siem]", "[sinks.\"../siem\"]")
        .replace("sinks = [\"siem\"]", "sinks = [\"../siem\"]");
    let cfg = write(&dir, "overflow.toml", &bad);
    for command in ["validate", "run"] {
        let out = c42fwd()
            .args([command, "--config"])
            .arg(&cfg)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        for want in [
            "sources.audit.poll_interval: `18446744073709551615s` is out of range 100ms to 24h",
            "shutdown_grace: `2h` is out of range 1s to 1h",
            "sinks.../siem.retry.max: `100000h` is out of range 1ms to 1h",
            "sinks.../siem: `../siem` is not a usable name: it must be 1 to 64 characters from A-Z a-z 0-9 _ . -",
        ] {
            assert!(err.contains(want), "{command}: wants {want:?} in: {err}");
        }
        assert!(!err.contains("panicked"), "{command}: {err}");
    }
}

#[tokio::test]
async fn unknown_keys_and_syntax_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "typo.toml",
        &GOOD.replace("port = 514", "port = 514\nhostt = \"x\""),
    );
    let out = c42fwd()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sinks.siem.hostt: ") && err.contains("unknown field"),
        "{err}"
    );

    let cfg = write(&dir, "syntax.toml", "[tenants.acme\napi = 1\n");
    let out = c42fwd()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1"), "{err}");

    let out = c42fwd()
        .args(["validate", "--config", "/nonexistent/c42fwd.toml"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/c42fwd.toml"));
}

#[tokio::test]
async fn run_refuses_a_bad_config_with_exit_2_and_never_prints_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "bad.toml",
        &GOOD.replace("port = 514", "port = 99999"),
    );
    let out = c42fwd()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("sinks.siem.port"), "{all}");
    assert!(
        !all.contains("TOPSECRET-VALUE"),
        "a secret was printed: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_streams_cef_with_rfc5424_headers_and_stops_cleanly_on_sigterm() {
    let mut child = c42fwd()
        .args(["demo", "--rate", "20", "--backlog", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while got.len() < 15 {
            match lines.next_line().await.unwrap() {
                Some(l) => got.push(l),
                None => break,
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "demo printed only {} lines in 60 s",
        got.len()
    );
    for l in &got {
        // <PRI>1 TIMESTAMP HOST c42fwd - MSGID - CEF:0|Code42|...
        assert!(l.starts_with('<') && l.contains(">1 "), "not RFC 5424: {l}");
        assert!(l.contains(" c42fwd "), "{l}");
        assert!(l.contains(" - CEF:0|Code42|"), "not CEF: {l}");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("demo exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn checkpoint_show_and_reset_name_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD.replace("STATE", &dir.path().join("state").display().to_string());
    let cfg = write(&dir, "c.toml", &text);
    let out = c42fwd()
        .args(["checkpoint", "show", "--config"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("audit") && text.contains("no checkpoint"),
        "{text}"
    );

    let out = c42fwd()
        .args(["checkpoint", "reset", "--config"])
        .arg(&cfg)
        .arg("nope")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no source named `nope`"));

    let out = c42fwd()
        .args(["checkpoint", "reset", "--config"])
        .arg(&cfg)
        .arg("audit")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("`audit` had no checkpoint"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_connect_logs_in_and_checks_sinks() {
    let opts = c42fwd_emulator::EmulatorOptions {
        backlog: 0,
        rate: 0.0,
        ..Default::default()
    };
    let emu = crate::support::daemon::start_emulator(opts.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = listener.local_addr().unwrap().port();
    let dead = unused_tcp_port();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
state_dir = "{state}"
[tenants.good]
api = "incydr"
base_url = "{base}"
client_id = "{id}"
client_secret = "{secret}"
[tenants.bad]
api = "incydr"
base_url = "{base}"
client_id = "{id}"
client_secret = "wrong-secret-value"
[sources.a]
type = "audit_log"
tenant = "good"
[sources.b]
type = "audit_log"
tenant = "bad"
[sinks.live]
type = "tcp"
host = "127.0.0.1"
port = {live}
[sinks.dead]
type = "tcp"
host = "127.0.0.1"
port = {dead}
connect_timeout = "2s"
[[routes]]
sources = ["a", "b"]
sinks = ["live", "dead"]
"#,
        state = dir.path().join("state").display(),
        base = emu.base_url(),
        id = opts.client_id,
        secret = opts.client_secret,
    );
    let cfg = write(&dir, "c.toml", &text);
    let out = c42fwd()
        .args(["validate", "--connect", "--config"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("tenants.good: logged in"), "{stdout}");
    assert!(
        stdout.contains("tenants.bad: FAILED: ") && stdout.contains("401"),
        "{stdout}"
    );
    assert!(stdout.contains("sinks.live: reachable"), "{stdout}");
    assert!(
        stdout.contains("sinks.dead: FAILED: ") && stdout.contains(&format!("127.0.0.1:{dead}")),
        "{stdout}"
    );
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !all.contains("wrong-secret-value") && !all.contains(&opts.client_secret),
        "a secret was printed: {all}"
    );
    drop(listener);
}
