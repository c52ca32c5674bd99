//! Starts a real syslog-ng as a receiver for tests.
//!
//! Each [`SyslogNg`] is its own `syslog-ng -F` (foreground, `--no-caps`) with its own
//! config, persist file, pid file, control socket and output file in a temp dir: no
//! system config is read, and tests run in parallel. Its inputs:
//! - `syslog()` over TCP on 127.0.0.1: RFC 6587 octet counting, RFC 5424 parsed by
//!   syslog-ng itself;
//! - optionally `syslog()` over TLS ([`SyslogNgOptions::tls`], the server identity from
//!   `support/pki.rs`; client certificates are not asked for);
//! - `unix-stream()` and `unix-dgram()` sockets in the temp dir, RFC 5424
//!   (`flags(syslog-protocol)`), LF-delimited on the stream socket.
//!
//! Every message is written to `received.ndjson` as one JSON object of the fields
//! syslog-ng parsed (`host`, `app`, `msgid`, `pid`, `sdata`, `msg`: `$HOST`, `$PROGRAM`,
//! `$MSGID`, `$PID`, `$SDATA`, `$MSG`), through `format-json`. syslog-ng's own
//! messages go to `syslog-ng.log`, shown when something fails. The log path uses
//! `flags(flow-control)`, so a receiver that cannot write stops reading.
//!
//! Ports: syslog-ng cannot report a port the kernel picked, so each TCP port is one the
//! kernel gave us on 127.0.0.1:0 and we released; a restart uses the same ports and
//! paths. Readiness is a connect that succeeds on every TCP port and the unix stream
//! socket, and the datagram socket's file existing (syslog-ng binds it before it says
//! it started), not a sleep.
//!
//! The binary: `$SYSLOG_NG` if set, else the copy `scripts/test.sh` unpacks into
//! `target/syslog-ng` (the Debian package `syslog-ng-core`, unpacked rather than
//! installed because it conflicts with the rsyslog package the other tests need), else
//! `/usr/sbin/syslog-ng`. If none is there the harness fails loudly: tests that need it
//! never skip.

#![allow(dead_code)] // a harness: not every test uses every method

use super::rsyslog::ServerTls;
use super::unused_tcp_port;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long syslog-ng gets to come up (or to exit on SIGTERM).
const STARTUP: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Default)]
pub struct SyslogNgOptions {
    /// A `syslog()` source over TLS with this server identity.
    pub tls: Option<ServerTls>,
}

/// One message as syslog-ng parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub host: String,
    pub app: String,
    pub msgid: String,
    pub pid: String,
    pub sdata: String,
    pub msg: String,
}

/// A running syslog-ng. Dropping it kills the process; the temp dir goes with it.
pub struct SyslogNg {
    dir: TempDir,
    opts: SyslogNgOptions,
    child: Option<Child>,
    tcp_port: u16,
    tls_port: Option<u16>,
}

/// The syslog-ng binary and the root it was unpacked in (`None`: installed).
fn binary() -> (PathBuf, Option<PathBuf>) {
    if let Some(p) = std::env::var_os("SYSLOG_NG") {
        return (PathBuf::from(p), None);
    }
    let unpacked = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/syslog-ng");
    let bin = unpacked.join("usr/sbin/syslog-ng");
    if bin.is_file() {
        return (bin, Some(unpacked));
    }
    let installed = PathBuf::from("/usr/sbin/syslog-ng");
    if installed.is_file() {
        return (installed, None);
    }
    panic!(
        "syslog-ng not found (looked at $SYSLOG_NG, {} and /usr/sbin/syslog-ng): these \
         tests need a real syslog-ng receiver; ./scripts/test.sh unpacks the Debian \
         package syslog-ng-core into target/syslog-ng",
        bin.display()
    )
}

impl SyslogNg {
    /// Starts syslog-ng and waits until its inputs accept.
    pub async fn start(opts: SyslogNgOptions) -> SyslogNg {
        let dir = tempfile::Builder::new()
            .prefix("c42fwd-syslog-ng-")
            .tempdir()
            .expect("temp dir for syslog-ng");
        let tls_port = opts.tls.as_ref().map(|_| unused_tcp_port());
        let mut s = SyslogNg {
            dir,
            opts,
            child: None,
            tcp_port: unused_tcp_port(),
            tls_port,
        };
        s.launch().await;
        s
    }

    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("this syslog-ng has no tls source")
    }

    pub fn unix_stream_path(&self) -> PathBuf {
        self.dir.path().join("stream.sock")
    }

    pub fn unix_dgram_path(&self) -> PathBuf {
        self.dir.path().join("dgram.sock")
    }

    fn output_path(&self) -> PathBuf {
        self.dir.path().join("received.ndjson")
    }

    /// Every message written so far (a partial last line is left out).
    pub fn received(&self) -> Vec<Parsed> {
        let text = std::fs::read_to_string(self.output_path()).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("syslog-ng wrote a line that is not JSON ({e}): {line}")
                });
                let field = |k: &str| v[k].as_str().unwrap_or("").to_string();
                Parsed {
                    host: field("host"),
                    app: field("app"),
                    msgid: field("msgid"),
                    pid: field("pid"),
                    sdata: field("sdata"),
                    msg: field("msg"),
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages were written.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Parsed> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "syslog-ng: timed out after {within:?} waiting for {n} messages; got {}\n{}",
                    got.len(),
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM (syslog-ng writes what it has and exits), waiting for the exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
            match tokio::time::timeout(STARTUP, child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill().await;
                }
            }
        }
    }

    /// Stops and starts again on the same ports and paths.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    pub fn diagnostics(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("syslog-ng.log")).unwrap_or_default();
        format!(
            "--- syslog-ng.log ---\n{log}\n--- syslog-ng.conf ---\n{}",
            self.config()
        )
    }

    fn config(&self) -> String {
        let d = self.dir.path();
        let mut c = String::from("@version: 3.38\n");
        c.push_str(
            "options { keep-hostname(yes); keep-timestamp(yes); flush-lines(0); \
             log-msg-size(262144); chain-hostnames(no); use-dns(no); };\n",
        );
        c.push_str(&format!(
            "source s_tcp {{ syslog(ip(\"127.0.0.1\") port({}) transport(\"tcp\")); }};\n",
            self.tcp_port
        ));
        let mut sources = vec!["s_tcp", "s_stream", "s_dgram"];
        if let (Some(tls), Some(port)) = (&self.opts.tls, self.tls_port) {
            c.push_str(&format!(
                "source s_tls {{ syslog(ip(\"127.0.0.1\") port({port}) transport(\"tls\") \
                 tls(key-file(\"{}\") cert-file(\"{}\") peer-verify(optional-untrusted))); }};\n",
                tls.key_file.display(),
                tls.cert_file.display()
            ));
            sources.push("s_tls");
        }
        c.push_str(&format!(
            "source s_stream {{ unix-stream(\"{}\" flags(syslog-protocol)); }};\n",
            self.unix_stream_path().display()
        ));
        c.push_str(&format!(
            "source s_dgram {{ unix-dgram(\"{}\" flags(syslog-protocol)); }};\n",
            self.unix_dgram_path().display()
        ));
        c.push_str(&format!(
            "destination d_out {{ file(\"{}\" template(\"$(format-json host=$HOST app=$PROGRAM \
             msgid=$MSGID pid=$PID sdata=$SDATA msg=$MSG)\\n\")); }};\n",
            d.join("received.ndjson").display()
        ));
        let srcs: String = sources.iter().map(|s| format!("source({s}); ")).collect();
        c.push_str(&format!(
            "log {{ {srcs}destination(d_out); flags(flow-control); }};\n"
        ));
        c
    }

    async fn launch(&mut self) {
        let d = self.dir.path().to_path_buf();
        let conf = d.join("syslog-ng.conf");
        std::fs::write(&conf, self.config()).expect("write syslog-ng.conf");
        let (bin, root) = binary();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("syslog-ng.log"))
            .expect("syslog-ng.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("-F")
            .arg("--no-caps")
            .arg("--stderr")
            .arg(format!("--cfgfile={}", conf.display()))
            .arg(format!("--persist-file={}", d.join("persist").display()))
            .arg(format!("--pidfile={}", d.join("pid").display()))
            .arg(format!("--control={}", d.join("ctl").display()));
        if let Some(root) = &root {
            // Its libraries, and its modules in the one versioned directory beside them.
            let lib = root.join("usr/lib/syslog-ng");
            let modules = std::fs::read_dir(&lib)
                .ok()
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.is_dir())
                .unwrap_or_else(|| panic!("no module directory in {}", lib.display()));
            cmd.env("LD_LIBRARY_PATH", &lib)
                .arg(format!("--module-path={}", modules.display()));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "syslog-ng exited at start ({status})\n{}",
                    self.diagnostics()
                );
            }
            if self.ready().await {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "syslog-ng did not come up within {STARTUP:?}\n{}",
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
    }

    async fn ready(&self) -> bool {
        let mut ports = vec![self.tcp_port];
        ports.extend(self.tls_port);
        for port in ports {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                return false;
            }
        }
        tokio::net::UnixStream::connect(self.unix_stream_path())
            .await
            .is_ok()
            && self.unix_dgram_path().exists()
    }
}
