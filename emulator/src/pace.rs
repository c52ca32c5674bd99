//! Realism for measuring clients: a per-request latency and a transfer rate on every
//! data endpoint.
//!
//! The emulator answers from memory in microseconds; the real API answers a page in
//! hundreds of milliseconds and sends it at what the path allows. A client that reads
//! one page at a time is fast against the first and slow against the second, so
//! benchmarks and tests that measure catch-up speed need both: [`EmulatorOptions::latency`]
//! (`--latency 250ms`) holds every request to a data endpoint that long before it is
//! served, and [`EmulatorOptions::bandwidth`] (`--bandwidth 20MB/s`) sends its response
//! body at that rate, in pieces of at most 10 ms worth of bytes (1 byte to 64 KiB), each
//! released when the bytes before it would have crossed the link. The body is pulled
//! from its renderer piece by piece as the pacing lets it go, never buffered whole: a
//! 10,000-event page at 20 MB/s is rendered over the half second it takes to send.
//!
//! The data endpoints are those that serve or change tenant data: the Audit Log
//! (search, count, export and its download token, the legacy search and export, at
//! the root and under `/audit-log`), alerts (query-alerts, query-details, the
//! aggregate, notes, state changes, rule metadata, both generations, every path they
//! are served at) and the Directory Sync Log (JSON and CSV). They are paced whatever
//! the answer (a page, a 429, a 401). Authentication (token and JWT endpoints),
//! discovery (customer, user, login configuration, `ServerEnv`, the key-value store),
//! unknown routes and `/_emulator/stats` are not: a client calls them once at start
//! and once per token lifetime, not once per page, so their latency adds a constant to
//! a run and no rate; leaving them out keeps the start of every test and the
//! refresh-on-401 paths as fast as before, and the statistics readable while a slow
//! page is being served.
//!
//! Owned here: the [`ByteRate`] type and its parser, and the axum middleware
//! ([`pace`]) that `server::router` puts in front of the data routes only. Not here:
//! which routes exist (`server`, `service_routes`).
//!
//! [`EmulatorOptions::latency`]: crate::EmulatorOptions::latency
//! [`EmulatorOptions::bandwidth`]: crate::EmulatorOptions::bandwidth

use super::server::Emulator;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{Stream, StreamExt};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A transfer rate, bytes per second (more than 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRate(u64);

impl ByteRate {
    /// `None` for 0.
    pub fn per_second(bytes: u64) -> Option<ByteRate> {
        (bytes > 0).then_some(ByteRate(bytes))
    }

    pub fn bytes_per_second(self) -> u64 {
        self.0
    }

    /// How many bytes go out at once: 10 ms worth, 1 byte to 64 KiB.
    fn piece(self) -> usize {
        (self.0 / 100).clamp(1, 64 * 1024) as usize
    }

    /// When `sent` bytes have crossed the link, counted from `start`.
    fn through_at(self, start: Instant, sent: u64) -> Instant {
        let nanos = u128::from(sent) * 1_000_000_000 / u128::from(self.0);
        start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The units a [`ByteRate`] may be written in, with their size in bytes.
const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
];

impl FromStr for ByteRate {
    type Err = String;

    /// `20MB/s`, `512KiB/s`, `1.5MB/s`, `100000B/s` (a `/s` is optional; a space
    /// before the unit is allowed). Decimal units are powers of 1000, binary ones
    /// (`KiB`, `MiB`, `GiB`) of 1024.
    fn from_str(s: &str) -> Result<ByteRate, String> {
        let expected = "expected a number and a unit per second, such as 20MB/s, 512KiB/s \
                        or 100000B/s (units: B, kB, MB, GB, KiB, MiB, GiB)";
        let text = s.trim();
        let text = text.strip_suffix("/s").unwrap_or(text).trim_end();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim_start();
        let Some(&(_, size)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(if unit.is_empty() {
                format!("invalid transfer rate {s:?}: no unit; {expected}")
            } else {
                format!("invalid transfer rate {s:?}: unknown unit {unit:?}; {expected}")
            });
        };
        let n: f64 = number
            .parse()
            .map_err(|_| format!("invalid transfer rate {s:?}: {expected}"))?;
        let bytes = n * size as f64;
        if !bytes.is_finite() || bytes < 1.0 {
            return Err(format!(
                "invalid transfer rate {s:?}: must be at least 1 byte per second"
            ));
        }
        if bytes > u64::MAX as f64 {
            return Err(format!("invalid transfer rate {s:?}: too large"));
        }
        Ok(ByteRate(bytes as u64))
    }
}

impl fmt::Display for ByteRate {
    /// The largest unit that divides the rate exactly (`20MB/s`, `512KiB/s`, `3B/s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, size) = [
            ("GiB", 1u64 << 30),
            ("GB", 1_000_000_000),
            ("MiB", 1 << 20),
            ("MB", 1_000_000),
            ("KiB", 1 << 10),
            ("kB", 1_000),
        ]
        .into_iter()
        .find(|(_, size)| self.0 % size == 0)
        .unwrap_or(("B", 1));
        write!(f, "{}{unit}/s", self.0 / size)
    }
}

/// The middleware in front of the data routes: waits `latency`, serves, and sends the
/// body at `bandwidth`.
pub(crate) async fn pace(State(st): State<Arc<Emulator>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let _in_flight = st.faults.data_request(route);
    let latency = st.opts.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let resp = next.run(req).await;
    match st.opts.bandwidth {
        None => resp,
        Some(rate) => {
            let (parts, body) = resp.into_parts();
            let body = Body::from_stream(paced(body.into_data_stream(), rate));
            Response::from_parts(parts, body)
        }
    }
}

/// `inner` at `rate`: pieces of at most [`ByteRate::piece`] bytes, each released once
/// the bytes before it and its own would have crossed the link since the first one was
/// ready. `inner` is pulled only when what it gave last has gone out.
pub(crate) fn paced<S>(inner: S, rate: ByteRate) -> impl Stream<Item = Result<Bytes, axum::Error>>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin + Send + 'static,
{
    struct Paced<S> {
        inner: S,
        /// What `inner` gave and has not gone out yet.
        held: Bytes,
        /// When the first byte was ready.
        start: Option<Instant>,
        sent: u64,
        done: bool,
    }
    let state = Paced {
        inner,
        held: Bytes::new(),
        start: None,
        sent: 0,
        done: false,
    };
    let piece = rate.piece();
    futures_util::stream::unfold(state, move |mut s| async move {
        loop {
            if !s.held.is_empty() {
                let out = s.held.split_to(s.held.len().min(piece));
                let start = *s.start.get_or_insert_with(Instant::now);
                s.sent += out.len() as u64;
                tokio::time::sleep_until(rate.through_at(start, s.sent)).await;
                return Some((Ok(out), s));
            }
            if s.done {
                return None;
            }
            match s.inner.next().await {
                Some(Ok(b)) => s.held = b,
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
                None => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn rates_parse_in_decimal_and_binary_units() {
        for (text, bytes) in [
            ("20MB/s", 20_000_000),
            ("512KiB/s", 512 * 1024),
            ("1.5MB/s", 1_500_000),
            ("100000B/s", 100_000),
            ("1 GiB/s", 1 << 30),
            ("64kB", 64_000),
            ("3KB/s", 3_000),
            (" 2MiB/s ", 2 << 20),
        ] {
            assert_eq!(
                text.parse::<ByteRate>().map(ByteRate::bytes_per_second),
                Ok(bytes),
                "{text}"
            );
        }
        for (text, why) in [
            ("20", "no unit"),
            ("20mb/s", "unknown unit \"mb\""),
            ("20 MQ/s", "unknown unit \"MQ\""),
            ("fast", "unknown unit \"fast\""),
            ("MB/s", "expected a number"),
            ("1.2.3MB/s", "expected a number"),
            ("0MB/s", "at least 1 byte per second"),
            ("0.5B/s", "at least 1 byte per second"),
            ("-1MB/s", "unknown unit \"-1MB\""),
        ] {
            let e = text.parse::<ByteRate>().unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains(&format!("{text:?}")), "{text}: {e}");
        }
        assert_eq!(ByteRate(20_000_000).to_string(), "20MB/s");
        assert_eq!(ByteRate(512 * 1024).to_string(), "512KiB/s");
        assert_eq!(ByteRate(1_500_000).to_string(), "1500kB/s");
        assert_eq!(ByteRate(7).to_string(), "7B/s");
        assert_eq!(ByteRate::per_second(0), None);
    }

    /// Ten 10 KiB chunks from a renderer that counts how far it was pulled.
    fn source(pulled: Arc<AtomicUsize>) -> impl Stream<Item = Result<Bytes, axum::Error>> + Unpin {
        futures_util::stream::iter(0..10).map(move |i| {
            pulled.fetch_add(1, Ordering::SeqCst);
            Ok(Bytes::from(vec![b'a' + i as u8; 10 * 1024]))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_takes_its_size_over_the_rate_and_is_pulled_piece_by_piece() {
        let pulled = Arc::new(AtomicUsize::new(0));
        // 100 KiB at 100 KiB/s: one second; pieces of 1024 bytes (10 ms worth).
        let rate = ByteRate(100 * 1024);
        assert_eq!(rate.piece(), 1024);
        let start = Instant::now();
        let mut body = Box::pin(paced(source(pulled.clone()), rate));
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(first.len(), 1024);
        assert_eq!(Instant::now() - start, Duration::from_millis(10));
        assert_eq!(
            pulled.load(Ordering::SeqCst),
            1,
            "one chunk rendered, not the whole body"
        );
        let mut got = first.to_vec();
        let mut pieces = 1;
        while let Some(b) = body.next().await {
            let b = b.unwrap();
            assert!(b.len() <= 1024);
            got.extend_from_slice(&b);
            pieces += 1;
            if got.len() == 50 * 1024 {
                // Half way: half the time, and the renderer half way too.
                assert_eq!(Instant::now() - start, Duration::from_millis(500));
                assert_eq!(pulled.load(Ordering::SeqCst), 5);
            }
        }
        assert_eq!(pieces, 100);
        assert_eq!(got.len(), 100 * 1024);
        assert!(got[..10 * 1024].iter().all(|&b| b == b'a'));
        assert!(got[90 * 1024..].iter().all(|&b| b == b'j'));
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn fast_rates_go_in_64_kib_pieces_and_slow_ones_byte_by_byte() {
        let fast = ByteRate(20_000_000);
        assert_eq!(fast.piece(), 64 * 1024);
        let start = Instant::now();
        let body = paced(source(Arc::default()), fast);
        let sizes: Vec<usize> = body.map(|b| b.unwrap().len()).collect().await;
        assert_eq!(sizes.iter().sum::<usize>(), 100 * 1024);
        // 102,400 bytes at 20 MB/s: 5.12 ms (tokio's timers have a 1 ms grain).
        let took = Instant::now() - start;
        assert!(
            took >= Duration::from_micros(5_120) && took <= Duration::from_millis(6),
            "{took:?}"
        );
        let slow = ByteRate(50);
        assert_eq!(slow.piece(), 1);
        let start = Instant::now();
        let one = futures_util::stream::iter([Ok(Bytes::from_static(b"hello"))]);
        let body: Vec<_> = paced(one, slow).map(|b| b.unwrap()).collect().await;
        assert_eq!(body.len(), 5);
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
    }
}
