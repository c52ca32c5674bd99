//! What the end-to-end harnesses (`throughput`, `live`, `replay`) share: the receiver
//! that counts octet-counted records, and the child process's CPU time and peak RSS
//! read from /proc. Included by each with `mod common;` (a directory module, so cargo
//! does not take it for a bench of its own).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// A TCP receiver on a free loopback port that counts RFC 6587 octet-counted records
/// (and their bytes, the length prefix included), one connection at a time: a reconnect
/// continues the count.
pub struct OctetReceiver {
    pub port: u16,
    pub received: Arc<AtomicU64>,
    pub bytes: Arc<AtomicU64>,
    /// Notified once `expected` records arrived.
    pub done: Arc<tokio::sync::Notify>,
    pub task: tokio::task::JoinHandle<()>,
}

impl OctetReceiver {
    /// `expected`: the record count that notifies `done` (`None`: never).
    pub async fn start(expected: Option<u64>) -> OctetReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let done = Arc::new(tokio::sync::Notify::new());
        let task = {
            let (received, bytes, done) = (received.clone(), bytes.clone(), done.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        return;
                    };
                    let mut r = BufReader::with_capacity(1 << 20, sock);
                    let mut len = Vec::with_capacity(8);
                    let mut body = vec![0u8; 64 * 1024];
                    loop {
                        // RFC 6587 octet counting: LEN SP MSG
                        len.clear();
                        match r.read_until(b' ', &mut len).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        let n: usize = std::str::from_utf8(&len[..len.len() - 1])
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .expect("octet-counted frame");
                        if body.len() < n {
                            body.resize(n, 0);
                        }
                        if r.read_exact(&mut body[..n]).await.is_err() {
                            break;
                        }
                        bytes.fetch_add(n as u64 + len.len() as u64, Ordering::Relaxed);
                        if Some(received.fetch_add(1, Ordering::Relaxed) + 1) == expected {
                            done.notify_one();
                        }
                    }
                }
            })
        };
        OctetReceiver {
            port,
            received,
            bytes,
            done,
            task,
        }
    }
}

/// The fields of `/proc/<pid>/stat` from field 3 on (the command name, field 2, is in
/// parentheses and may hold spaces: they are counted from after it).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The process state (field 3 of `/proc/<pid>/stat`).
pub fn state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// User + system CPU time of a process: fields 14 and 15 of `/proc/<pid>/stat`, in
/// clock ticks of USER_HZ, which Linux fixes at 100 for everything it shows userspace.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let fields = stat_fields(pid)?;
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // The fields start at field 3, so fields 14 and 15 are at 11 and 12.
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// Peak resident set size (`VmHWM` of `/proc/<pid>/status`), KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
