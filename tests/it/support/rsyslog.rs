//! Starts a real rsyslogd as a receiver for tests.
//!
//! Each [`Rsyslog`] is its own `rsyslogd -n` (foreground) with a config, work
//! directory, pid file and output file in its own temp dir: no system config is read,
//! and tests run in parallel. Inputs listen on 127.0.0.1 only:
//! - `imtcp`, which takes octet-counted (RFC 6587) and LF-framed messages on the same
//!   listener (rsyslog tells them apart by the first byte of each frame);
//! - `imudp`, one message per datagram;
//! - any number of `imtcp` inputs over TLS ([`TlsListener`]: the `gtls` stream driver,
//!   rsyslog-gnutls), each with its own server certificate and authentication mode
//!   (`anon`: no client certificate asked for; `x509/name`: a client certificate from
//!   the CA with a permitted name is required);
//! - at most one `imrelp` input ([`RelpListener`], rsyslog-relp), plain or over TLS
//!   (librelp's TLS, with gnutls).
//!
//! The certificates are files the test made (`support/pki.rs` generates them with
//! rcgen); the harness only points rsyslog at them.
//!
//! Every message received is written to `received.log` with the template `%rawmsg%\n`
//! (the message exactly as received, framing removed). rsyslog's own messages go to
//! `rsyslogd.log`, which is shown when something fails.
//!
//! Ports: every input binds port 0, so the kernel picks a free port and nothing can race
//! us for it. imtcp writes the port it got to a file (`listenPortFileName`, rsyslog
//! 8.38 and later, written only when the port was 0; one file per imtcp input); imudp
//! and imrelp have no such option, so their ports are read from `/proc/<pid>/fd` and
//! `/proc/net/{udp,tcp}` (the UDP socket on 127.0.0.1 that the rsyslogd process holds;
//! the one listening TCP socket that is not an imtcp port). A restart binds the same
//! ports explicitly. Readiness is that
//! signal, not a sleep: rsyslogd holds a listening socket on the TCP port (named by the
//! port file on a first start); rsyslogd holds the UDP socket (datagrams that arrive before its input
//! thread reads them wait in the socket buffer).
//!
//! If `rsyslogd` is missing the harness fails loudly: tests that need it never skip.

#![allow(dead_code)] // a harness: not every test uses every method

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long rsyslogd gets to come up (or to exit on SIGTERM).
const STARTUP: Duration = Duration::from_secs(20);

/// Which inputs to start and how to write what they receive.
#[derive(Debug, Clone)]
pub struct RsyslogOptions {
    pub tcp: bool,
    pub udp: bool,
    /// The output template (RainerScript string template syntax).
    pub template: String,
    /// rsyslog's `maxMessageSize`: longer messages are cut by rsyslog itself.
    pub max_message_size: usize,
    /// imtcp inputs over TLS, by name (see [`Rsyslog::tls_port`]).
    pub tls: Vec<TlsListener>,
    pub relp: Option<RelpListener>,
    /// Run the main queue in direct mode: a message is written to the output file by
    /// the thread that received it, before the input reads on (and before imrelp
    /// answers `rsp`). Without it rsyslog acknowledges RELP frames once they are in its
    /// in-memory queue, which a SIGKILL empties; with it a killed rsyslog has lost
    /// nothing it acknowledged, which is what the RELP restart test needs to tell the
    /// sink's guarantees apart from rsyslog's own queueing.
    pub direct_queue: bool,
}

impl Default for RsyslogOptions {
    fn default() -> Self {
        RsyslogOptions {
            tcp: true,
            udp: true,
            template: "%rawmsg%\\n".to_string(),
            max_message_size: 256 * 1024,
            tls: Vec::new(),
            relp: None,
            direct_queue: false,
        }
    }
}

/// PEM files of a server identity: the CA that clients are checked against (and that
/// issued the client certificates), the server's certificate and its key.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// How a TLS input checks clients.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No client certificate is checked (`anon` for imtcp; no `tls.authMode` for imrelp).
    None,
    /// A client certificate issued by the CA, whose name is `permitted_peer`, is required
    /// (`x509/name` for imtcp, `name` for imrelp).
    Name { permitted_peer: String },
}

/// One imtcp input over TLS.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// The key for [`Rsyslog::tls_port`] (also names its port file).
    pub name: String,
    pub server: ServerTls,
    pub auth: ClientAuth,
}

/// The imrelp input; `tls: None` is plain RELP.
#[derive(Debug, Clone, Default)]
pub struct RelpListener {
    pub tls: Option<(ServerTls, ClientAuth)>,
    pub tls_lib: RelpTlsLib,
}

/// Which TLS library librelp uses (imrelp's module parameter `tls.tlslib`). With
/// gnutls and a server certificate librelp always asks for a client certificate (its
/// default mode is `fingerprint`), so [`ClientAuth::None`] needs openssl.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RelpTlsLib {
    #[default]
    Gnutls,
    Openssl,
}

/// A running rsyslogd. Dropping it kills the process; the temp dir goes with it.
pub struct Rsyslog {
    dir: TempDir,
    opts: RsyslogOptions,
    child: Option<Child>,
    tcp_port: Option<u16>,
    udp_port: Option<u16>,
    tls_ports: BTreeMap<String, u16>,
    relp_port: Option<u16>,
}

/// The ports a started rsyslogd listens on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Ports {
    tcp: Option<u16>,
    udp: Option<u16>,
    tls: BTreeMap<String, u16>,
    relp: Option<u16>,
}

/// The rsyslogd binary: `$RSYSLOGD` if set, else the Debian location or `PATH`.
pub fn rsyslogd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RSYSLOGD") {
        return PathBuf::from(p);
    }
    let mut candidates = vec![
        PathBuf::from("/usr/sbin/rsyslogd"),
        PathBuf::from("/sbin/rsyslogd"),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("rsyslogd")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "rsyslogd not found (looked in /usr/sbin, /sbin and PATH; or set RSYSLOGD): \
                 these tests need a real rsyslog receiver, install it with \
                 `apt-get install rsyslog` (Debian/Ubuntu)"
            )
        })
}

impl Rsyslog {
    /// Starts rsyslogd and waits until its inputs are bound.
    pub async fn start(opts: RsyslogOptions) -> Rsyslog {
        let dir = tempfile::Builder::new()
            .prefix("c42fwd-rsyslog-")
            .tempdir()
            .expect("temp dir for rsyslog");
        std::fs::create_dir(dir.path().join("work")).expect("rsyslog work dir");
        let mut r = Rsyslog {
            dir,
            opts,
            child: None,
            tcp_port: None,
            udp_port: None,
            tls_ports: BTreeMap::new(),
            relp_port: None,
        };
        r.launch().await;
        r
    }

    /// Starts with TCP and UDP inputs and the `%rawmsg%` template.
    pub async fn start_default() -> Rsyslog {
        Rsyslog::start(RsyslogOptions::default()).await
    }

    pub fn tcp_port(&self) -> u16 {
        self.tcp_port.expect("this rsyslog has no tcp input")
    }

    pub fn udp_port(&self) -> u16 {
        self.udp_port.expect("this rsyslog has no udp input")
    }

    /// The port of the TLS input named `name`.
    pub fn tls_port(&self, name: &str) -> u16 {
        *self
            .tls_ports
            .get(name)
            .unwrap_or_else(|| panic!("this rsyslog has no tls input named {name}"))
    }

    pub fn relp_port(&self) -> u16 {
        self.relp_port.expect("this rsyslog has no relp input")
    }

    /// The process id of the running rsyslogd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file every received message is written to.
    pub fn output_path(&self) -> PathBuf {
        self.dir.path().join("received.log")
    }

    /// The lines written so far (a complete line only: one still being written is not
    /// returned).
    pub fn lines(&self) -> Vec<String> {
        let bytes = match std::fs::read(self.output_path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("cannot read {}: {e}", self.output_path().display()),
        };
        let complete = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(i) => &bytes[..=i],
            None => return Vec::new(),
        };
        String::from_utf8_lossy(complete)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until at least `n` lines were written and returns all of them; panics with
    /// what arrived and rsyslog's own log when `within` passes first. rsyslog gives no
    /// signal when it wrote a message, so this looks at the file every few milliseconds.
    pub async fn wait_for_lines(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let lines = self.lines();
            if lines.len() >= n {
                return lines;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "rsyslog: timed out after {within:?} waiting for {n} lines; got {}:\n{}\n{}",
                    lines.len(),
                    lines
                        .iter()
                        .rev()
                        .take(10)
                        .rev()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops rsyslogd cleanly (SIGTERM: it drains its queue and flushes its output)
    /// and waits for it to exit. Connections to it are closed by the exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(STARTUP, child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill().await;
                panic!(
                    "rsyslogd did not exit within {STARTUP:?} of SIGTERM\n{}",
                    self.diagnostics()
                );
            }
        }
    }

    /// Kills rsyslogd at once (SIGKILL) and waits for it to be gone: what it had not
    /// written is lost.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Kills rsyslogd (SIGKILL) and starts it again on the same ports.
    pub async fn kill_and_restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }

    /// Stops rsyslogd (if running) and starts it again on the same ports.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// rsyslog's stderr and its own log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- rsyslogd stderr ---\n{}\n--- rsyslogd.log ---\n{}",
            read("stderr.log"),
            read("rsyslogd.log")
        )
    }

    fn config(&self) -> String {
        let d = self.dir.path();
        let q = |p: PathBuf| p.display().to_string().replace('"', "\\\"");
        let mut c = String::new();
        // Global settings first: maxMessageSize must be known before inputs load.
        c.push_str(&format!(
            "global(workDirectory=\"{}\" maxMessageSize=\"{}\" net.enableDNS=\"off\")\n",
            q(d.join("work")),
            self.opts.max_message_size
        ));
        c.push_str(&format!(
            "template(name=\"c42fwd_test\" type=\"string\" string=\"{}\")\n",
            self.opts.template.replace('"', "\\\"")
        ));
        c.push_str(&format!(
            "ruleset(name=\"received\") {{\n  action(type=\"omfile\" file=\"{}\" template=\"c42fwd_test\")\n}}\n",
            q(d.join("received.log"))
        ));
        if self.opts.tcp {
            c.push_str("module(load=\"imtcp\")\n");
            c.push_str(&format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{}\" listenPortFileName=\"{}\" ruleset=\"received\")\n",
                self.tcp_port.unwrap_or(0),
                q(d.join("tcp.port"))
            ));
        }
        if self.opts.direct_queue {
            c.push_str("main_queue(queue.type=\"Direct\")\n");
        }
        if !self.opts.tls.is_empty() {
            if !self.opts.tcp {
                c.push_str("module(load=\"imtcp\")\n");
            }
            for l in &self.opts.tls {
                let (mode, peer) = match &l.auth {
                    ClientAuth::None => ("anon".to_string(), String::new()),
                    ClientAuth::Name { permitted_peer } => (
                        "x509/name".to_string(),
                        format!(" permittedPeer=[\"{}\"]", permitted_peer.replace('"', "")),
                    ),
                };
                c.push_str(&format!(
                    "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{}\" listenPortFileName=\"{}\" \
                     streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"{mode}\"{peer} \
                     streamDriver.CAFile=\"{}\" streamDriver.CertFile=\"{}\" streamDriver.KeyFile=\"{}\" ruleset=\"received\")\n",
                    self.tls_ports.get(&l.name).copied().unwrap_or(0),
                    q(d.join(format!("tls-{}.port", l.name))),
                    q(l.server.ca_file.clone()),
                    q(l.server.cert_file.clone()),
                    q(l.server.key_file.clone()),
                ));
            }
        }
        if let Some(relp) = &self.opts.relp {
            c.push_str(match relp.tls_lib {
                RelpTlsLib::Gnutls => "module(load=\"imrelp\" tls.tlslib=\"gnutls\")\n",
                RelpTlsLib::Openssl => "module(load=\"imrelp\" tls.tlslib=\"openssl\")\n",
            });
            let tls = match &relp.tls {
                None => String::new(),
                Some((server, auth)) => {
                    let auth = match auth {
                        ClientAuth::None => String::new(),
                        ClientAuth::Name { permitted_peer } => format!(
                            " tls.authMode=\"name\" tls.permittedPeer=[\"{}\"]",
                            permitted_peer.replace('"', "")
                        ),
                    };
                    format!(
                        " tls=\"on\" tls.caCert=\"{}\" tls.myCert=\"{}\" tls.myPrivKey=\"{}\"{auth}",
                        q(server.ca_file.clone()),
                        q(server.cert_file.clone()),
                        q(server.key_file.clone())
                    )
                }
            };
            c.push_str(&format!(
                "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"received\"{tls})\n",
                self.relp_port.unwrap_or(0)
            ));
        }
        if self.opts.udp {
            c.push_str("module(load=\"imudp\")\n");
            // UDP has no flow control: a sender that writes a batch of hundreds of
            // datagrams at once overflows the kernel's default receive buffer (about
            // 200 KiB) before imudp's thread reads them, and the kernel drops the rest.
            // A production receiver is sized for its bursts; so is this one (rsyslog,
            // as root, can set a buffer above net.core.rmem_max).
            c.push_str(&format!(
                "input(type=\"imudp\" address=\"127.0.0.1\" port=\"{}\" rcvbufSize=\"64m\" ruleset=\"received\")\n",
                self.udp_port.unwrap_or(0)
            ));
        }
        // Only rsyslog's internal messages reach the default ruleset.
        c.push_str(&format!(
            "action(type=\"omfile\" file=\"{}\")\n",
            q(d.join("rsyslogd.log"))
        ));
        c
    }

    /// Writes the config and starts rsyslogd; waits until its inputs are bound (on the
    /// remembered ports for a restart). A restart whose ports cannot be bound again
    /// (taken by someone else in between) is retried a few times, then fails.
    async fn launch(&mut self) {
        let d = self.dir.path().to_path_buf();
        let conf = d.join("rsyslog.conf");
        std::fs::write(&conf, self.config()).expect("write rsyslog.conf");
        let binary = rsyslogd_binary();
        let mut last_problem = String::new();
        for _attempt in 0..3 {
            let _ = std::fs::remove_file(d.join("tcp.port"));
            for l in &self.opts.tls {
                let _ = std::fs::remove_file(d.join(format!("tls-{}.port", l.name)));
            }
            let _ = std::fs::remove_file(d.join("rsyslogd.pid"));
            let stderr = std::fs::File::create(d.join("stderr.log")).expect("stderr.log");
            let mut child = Command::new(&binary)
                .arg("-n")
                .arg("-f")
                .arg(&conf)
                .arg("-i")
                .arg(d.join("rsyslogd.pid"))
                .current_dir(&d)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {} ({e}): install rsyslog with `apt-get install rsyslog`",
                        binary.display()
                    )
                });
            match self.wait_ready(&mut child).await {
                Ok(ports) => {
                    self.tcp_port = ports.tcp;
                    self.udp_port = ports.udp;
                    self.tls_ports = ports.tls;
                    self.relp_port = ports.relp;
                    self.child = Some(child);
                    return;
                }
                Err(problem) => {
                    let _ = child.kill().await;
                    last_problem = problem;
                }
            }
        }
        panic!(
            "rsyslogd did not come up: {last_problem}\n{}",
            self.diagnostics()
        );
    }

    async fn wait_ready(&self, child: &mut Child) -> Result<Ports, String> {
        let pid = child.id().ok_or("rsyslogd exited at once")?;
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("rsyslogd exited with {status} during start-up"));
            }
            let (ports, missing) = self.bound_ports(pid);
            if missing.is_empty() {
                return Ok(ports);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "inputs not bound within {STARTUP:?}: missing {missing:?} (found {ports:?})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The ports of the inputs that are bound now, and the names of those that are not.
    fn bound_ports(&self, pid: u32) -> (Ports, Vec<String>) {
        let d = self.dir.path();
        let listening = process_ports(pid, "tcp");
        let mut ports = Ports::default();
        let mut missing = Vec::new();
        // An imtcp input: on a restart the port is known and the listening socket is the
        // signal; on a first start, the port file (written once the port was picked).
        let imtcp = |file: &str, known: Option<u16>| -> Option<u16> {
            match known {
                Some(want) => listening.contains(&want).then_some(want),
                None => std::fs::read_to_string(d.join(file))
                    .ok()
                    .and_then(|s| s.trim().parse::<u16>().ok())
                    .filter(|p| listening.contains(p)),
            }
        };
        if self.opts.tcp {
            ports.tcp = imtcp("tcp.port", self.tcp_port);
            if ports.tcp.is_none() {
                missing.push("tcp".to_string());
            }
        }
        for l in &self.opts.tls {
            match imtcp(
                &format!("tls-{}.port", l.name),
                self.tls_ports.get(&l.name).copied(),
            ) {
                Some(p) => {
                    ports.tls.insert(l.name.clone(), p);
                }
                None => missing.push(format!("tls {}", l.name)),
            }
        }
        if self.opts.relp.is_some() {
            ports.relp = match self.relp_port {
                Some(want) => listening.contains(&want).then_some(want),
                // The one listening socket that is no imtcp input's; only decidable once
                // every imtcp input is known.
                None if missing.is_empty() => {
                    let imtcp_ports: HashSet<u16> = ports
                        .tcp
                        .into_iter()
                        .chain(ports.tls.values().copied())
                        .collect();
                    let others: Vec<u16> = listening
                        .iter()
                        .copied()
                        .filter(|p| !imtcp_ports.contains(p))
                        .collect();
                    match others.as_slice() {
                        [one] => Some(*one),
                        _ => None,
                    }
                }
                None => None,
            };
            if ports.relp.is_none() {
                missing.push("relp".to_string());
            }
        }
        if self.opts.udp {
            let udp = process_ports(pid, "udp");
            ports.udp = match self.udp_port {
                Some(want) => udp.contains(&want).then_some(want),
                None => udp.into_iter().next(),
            };
            if ports.udp.is_none() {
                missing.push("udp".to_string());
            }
        }
        (ports, missing)
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// The socket inodes a process holds (`/proc/<pid>/fd/* -> socket:[inode]`).
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        let t = target.to_str()?;
        t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// Ports on 127.0.0.1 of the `proto` ("tcp": listening only; "udp") sockets that
/// process `pid` holds, from `/proc/net/<proto>`.
fn process_ports(pid: u32, proto: &str) -> Vec<u16> {
    let inodes = socket_inodes(pid);
    let Ok(table) = std::fs::read_to_string(format!("/proc/net/{proto}")) else {
        return Vec::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (cols.get(1)?, cols.get(3)?, cols.get(9)?);
            let (ip, port) = local.split_once(':')?;
            // 127.0.0.1 as the kernel prints it (little-endian hex); 0A is LISTEN.
            let listening = proto != "tcp" || *state == "0A";
            (ip == "0100007F" && listening && inodes.contains(&inode.parse().ok()?))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

fn process_holds_port(pid: u32, proto: &str, port: u16) -> bool {
    process_ports(pid, proto).contains(&port)
}

/// The installed rsyslogd version line, e.g. `rsyslogd  8.2302.0 (aka 2023.02) ...`.
pub fn rsyslogd_version() -> String {
    let out = std::process::Command::new(rsyslogd_binary())
        .arg("-v")
        .output()
        .expect("run rsyslogd -v");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}
