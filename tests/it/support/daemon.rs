//! The real `c42fwd` binary as a test runs it, and the emulator it reads: a daemon
//! whose stderr goes to a log next to its config, its metrics address, its signals.

use c42fwd_emulator::{self as emulator, EmulatorHandle, EmulatorOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub fn c42fwd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c42fwd"));
    c.kill_on_drop(true);
    c
}

pub async fn start_emulator(opts: EmulatorOptions) -> EmulatorHandle {
    emulator::start(
        opts,
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .expect("start emulator")
}

pub struct Daemon {
    pub child: Child,
    /// Its log, and where in it this run's lines begin (the log is appended across
    /// restarts).
    log: PathBuf,
    log_from: u64,
}

/// Where a daemon started with `config` writes its log (appended across restarts).
pub fn log_path(config: &Path) -> PathBuf {
    config.with_extension("log")
}

/// The last lines of that log, for failure messages.
pub fn log_tail(config: &Path) -> String {
    let text = std::fs::read_to_string(log_path(config)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Daemon {
    pub async fn start(config: &Path) -> Daemon {
        let mut cmd = c42fwd();
        // C42_TEST_DEBUG=1 in the environment of a test run: the daemons log at debug.
        let level = if std::env::var_os("C42_TEST_DEBUG").is_some() {
            "c42fwd=debug"
        } else {
            "info"
        };
        cmd.args(["--log", level, "run", "--config"]).arg(config);
        Daemon::spawn(config, cmd)
    }

    /// Starts `cmd` (a `c42fwd run` of `config`), its stderr appended to the config's log.
    pub fn spawn(config: &Path, mut cmd: Command) -> Daemon {
        let log = log_path(config);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("daemon log file");
        let log_from = file.metadata().expect("daemon log file").len();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start c42fwd");
        Daemon {
            child,
            log,
            log_from,
        }
    }

    /// The address (`127.0.0.1:PORT`) this run says its metrics endpoint listens on:
    /// a config with `metrics.listen` on port 0 gets a free port, with no race.
    pub async fn metrics_addr(&self) -> String {
        const SAYS: &str = "metrics on http://";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let bytes = std::fs::read(&self.log).unwrap_or_default();
            let run = String::from_utf8_lossy(bytes.get(self.log_from as usize..).unwrap_or(&[]));
            if let Some(addr) = run
                .split(SAYS)
                .nth(1)
                .and_then(|rest| rest.split("/metrics").next())
            {
                return addr.to_string();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the daemon did not log its metrics address:\n{run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// This run's log so far.
    pub fn log(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(self.log_from as usize..).unwrap_or(&[])).into_owned()
    }

    /// Waits (60 s at most) until this run's log holds `needle` at least `n` times;
    /// returns the log. Panics with the log when the daemon exits first.
    pub async fn wait_log(&mut self, needle: &str, n: usize) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= n {
                return log;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("c42fwd exited ({status}) while waiting for {n} x `{needle}` in its log:\n{log}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} x `{needle}` in the log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGHUP: reload the configuration, reopen the file sinks' files.
    pub fn hup(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id().expect("running") as i32)
    }

    /// SIGTERM, then the exit status (it must drain and exit on its own).
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("c42fwd exits within 60 s of SIGTERM")
            .unwrap()
    }

    pub async fn kill9(mut self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = self.child.wait().await;
    }
}

/// The events of the emulator's backlog: from two hours before it started to a second
/// after (the tests that use it have no live stream, or ignore it).
pub fn backlog(emu: &EmulatorHandle) -> Vec<String> {
    let first = emu.started_at() - chrono::Duration::hours(2);
    emu.events_between(first, emu.started_at() + chrono::Duration::seconds(1))
}
