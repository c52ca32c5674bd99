//! A real Kafka-compatible broker for the Kafka sink's tests: Tansu (a Kafka broker
//! written in Rust, from crates.io; `scripts/test.sh` installs it with
//! `cargo install tansu --locked --features dynostore` when it is missing), started
//! per test on a free 127.0.0.1 port with in-memory storage, and a real consumer
//! (librdkafka's) that reads a topic back from its first offset.
//!
//! Faults: [`Tansu::pause`] / [`Tansu::resume`] stop and continue the broker's process
//! (SIGSTOP / SIGCONT): the broker keeps its storage, so a test sees the route stall
//! and resume without a restart (the in-memory engine would lose the topic on one).

use super::PATIENCE;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where the tansu binary is: `$TANSU`, else cargo's bin directory, else `PATH`.
pub fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(p) = home.map(|h| h.join("bin").join("tansu")) {
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("tansu")
}

/// One broker process.
pub struct Tansu {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts a broker; with `authentication`, clients must log in with SASL SCRAM
    /// before any other request (and, the storage starting empty, no login succeeds).
    pub async fn start(authentication: bool) -> Tansu {
        let bin = tansu_binary();
        let port = super::unused_tcp_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("tansu.log")).expect("tansu log");
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(&bin);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
        if authentication {
            cmd.arg("--authentication");
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start the Kafka-compatible broker `{}` ({e}): the kafka tests need it; \
                 scripts/test.sh installs it with `cargo install tansu --locked --features dynostore`",
                bin.display()
            )
        });
        let t = Tansu { child, port, dir };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "tansu did not listen on 127.0.0.1:{port}: {}",
                t.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        t
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `brokers` value of a sink.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    fn cli(&self, args: &[&str]) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let out = Command::new(tansu_binary())
            .args(args)
            .args(["--broker", &url])
            .output()
            .expect("run tansu");
        assert!(
            out.status.success(),
            "tansu {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        self.cli(&[
            "topic",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
        ]);
    }

    /// Stops the broker's process where it is (SIGSTOP): connections stay open and
    /// nothing answers.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, s: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, s).expect("signal tansu");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as a consumer read it.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: String,
    pub headers: Vec<(String, String)>,
}

impl Consumed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` (all its `partitions`) from the first offset until `n` messages
/// arrived or `within` passed; what it read, in partition and offset order. (The
/// consumer blocks: it runs on the blocking pool.)
pub async fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    within: Duration,
) -> Vec<Consumed> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || consume_now(&b, &t, partitions, n, within))
        .await
        .expect("consumer thread")
}

/// At least how many messages `topic` holds: the sum of its partitions' high
/// watermarks less their low ones. (Tansu 0.6 answers the latest offset with the base
/// offset of a partition's last record batch, so this lags by up to one batch; exact
/// counts come from reading the topic, [`consume_all`].)
pub async fn stored(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .expect("consumer");
        (0..partitions)
            .map(
                |p| match consumer.fetch_watermarks(&t, p, Duration::from_secs(5)) {
                    Ok((lo, hi)) => hi - lo,
                    Err(_) => 0,
                },
            )
            .sum()
    })
    .await
    .expect("watermark thread")
}

/// Waits until `topic` holds at least `n` messages (by [`stored`]).
pub async fn wait_stored(bootstrap: &str, topic: &str, partitions: i32, n: i64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let have = stored(bootstrap, topic, partitions).await;
        if have >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {n} messages in {topic}: {have} there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads all of `topic`: until no message came for 2 s after the first (10 s before
/// it), at most `within` (the broker's latest offsets cannot be trusted, see
/// [`stored`]).
pub async fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    within: Duration,
) -> Vec<Consumed> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        read(
            &b,
            &t,
            partitions,
            usize::MAX,
            within,
            Some(Duration::from_secs(2)),
        )
    })
    .await
    .expect("consumer thread")
}

fn consume_now(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    within: Duration,
) -> Vec<Consumed> {
    read(bootstrap, topic, partitions, n, within, None)
}

fn read(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    within: Duration,
    quiet: Option<Duration>,
) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "c42fwd-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    let mut last = tokio::time::Instant::now();
    while out.len() < n && tokio::time::Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            // Quiet only counts once something came: the first fetch (metadata,
            // offsets) can take longer than the quiet time on a loaded machine.
            let first = Duration::from_secs(10);
            if quiet.is_some_and(|q| last.elapsed() >= if out.is_empty() { first } else { q }) {
                break;
            }
            continue;
        };
        last = tokio::time::Instant::now();
        let m = m.unwrap_or_else(|e| panic!("consumer error on {topic}: {e}"));
        let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), text(h.value).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Consumed {
            partition: m.partition(),
            offset: m.offset(),
            key: text(m.key()),
            payload: text(m.payload()).unwrap_or_default(),
            headers,
        });
    }
    out.sort_by_key(|m| (m.partition, m.offset));
    out
}
