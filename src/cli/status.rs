//! `c42fwd status`: the state of a running daemon, from its metrics endpoint
//! (`crate::status` reads and renders it).
//!
//! The address comes from `metrics.listen` of `--config` (read like the checkpoint
//! commands read it: no secret has to be readable) or from `--addr`. A wildcard listen
//! address (`0.0.0.0`, `[::]`) is asked on the loopback address. Rates need two scrapes:
//! one status scrapes twice, a second apart; `--watch` compares each refresh with the one
//! before. Exit codes: 0 shown, 1 the daemon does not answer (or answers with something
//! else than its metrics), 2 a usage or configuration error (no `[metrics]` table, a
//! listen port of 0).

use crate::config;
use crate::status::{self, Scrape};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const AFTER_HELP: &str = "\
Sources: POSITION is the watermark read up to, AGE how far that is behind now, BEHIND how
far it is behind the lag window (0 when the source keeps up), RATE the events forwarded
per second between two scrapes, ERRORS the runs that failed or panicked (each restarted).
Sinks: PENDING is the batches handed to the sink and not settled yet (queued, being
written or awaiting the receiver's acknowledgement), ERRORS its write errors (retried),
DISCARDED the records dead-lettered or dropped by policy.

Exit codes: 0 shown; 1 no daemon answers at the address; 2 a usage or configuration
error (no metrics.listen, a listen port of 0: use --addr).";

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The time between the two scrapes of one status, for its rates.
const RATE_INTERVAL: Duration = Duration::from_secs(1);

/// Show a running daemon's sources and sinks, from its metrics endpoint.
#[derive(Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct StatusArgs {
    /// The daemon's TOML configuration: its metrics endpoint is `metrics.listen`.
    #[arg(long, short, env = "C42FWD_CONFIG", required_unless_present = "addr")]
    pub config: Option<PathBuf>,
    /// The metrics endpoint (HOST:PORT) instead of the configuration's `metrics.listen`.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Refresh every INTERVAL (default 2s) until interrupted: in place on a terminal,
    /// one block after another otherwise.
    #[arg(
        long,
        value_name = "INTERVAL",
        num_args = 0..=1,
        default_missing_value = "2s",
        value_parser = parse_interval
    )]
    pub watch: Option<Duration>,
    /// Print JSON: one object (one per line with --watch).
    #[arg(long)]
    pub json: bool,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e}"))?;
    if d < Duration::from_millis(500) {
        return Err(format!("`{s}` is shorter than 500ms"));
    }
    Ok(d)
}

pub fn status(a: StatusArgs) -> ExitCode {
    let (addr, configured) = match endpoint(&a) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let rt = match super::start_runtime(false) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let failed_where = match (&a.addr, &a.config) {
        (None, Some(c)) => format!("metrics.listen in {}", c.display()),
        _ => "--addr".to_string(),
    };
    rt.block_on(async move {
        let client = match reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT)
            .no_proxy()
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: cannot build the HTTP client: {e}");
                return ExitCode::from(1);
            }
        };
        let scraper = Scraper {
            client,
            addr,
            from: failed_where,
            configured,
        };
        match a.watch {
            None => once(&scraper, a.json).await,
            Some(every) => watch(&scraper, every, a.json).await,
        }
    })
}

/// Where to scrape: `--addr`, or the configuration's `metrics.listen` (a wildcard
/// address asked on loopback).
/// Also the sources of the configuration, when one was read.
fn endpoint(a: &StatusArgs) -> Result<(String, Vec<String>), String> {
    if let Some(addr) = &a.addr {
        return Ok((addr.clone(), Vec::new()));
    }
    let Some(path) = &a.config else {
        return Err("give --config FILE or --addr HOST:PORT".to_string());
    };
    let cfg = config::load_state(path).map_err(|e| e.to_string())?;
    let Some(listen) = cfg.metrics_listen else {
        return Err(format!(
            "{} has no metrics endpoint ([metrics] listen): `c42fwd status` reads the running daemon's metrics; enable them, or give --addr HOST:PORT",
            path.display()
        ));
    };
    let sources = cfg.sources.into_keys().collect();
    local(listen).map(|a| (a.to_string(), sources)).ok_or_else(|| {
        format!(
            "metrics.listen in {} is {listen}, port 0 (a free port at each start): the daemon logs its address (`metrics on http://...`); give it with --addr HOST:PORT",
            path.display()
        )
    })
}

/// The address to connect to for a daemon listening on `listen`; `None` for port 0.
fn local(listen: SocketAddr) -> Option<SocketAddr> {
    if listen.port() == 0 {
        return None;
    }
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(SocketAddr::new(ip, listen.port()))
}

struct Scraper {
    client: reqwest::Client,
    addr: String,
    /// Where the address came from, for errors.
    from: String,
    /// The sources of the configuration read (none with `--addr`).
    configured: Vec<String>,
}

impl Scraper {
    /// One scrape, or the error to print (naming the address and where it came from).
    async fn scrape(&self) -> Result<Scrape, String> {
        let url = format!("http://{}/metrics", self.addr);
        let fail = |what: String| format!("no c42fwd metrics at {url} ({}): {what}", self.from);
        let resp = self.client.get(&url).send().await.map_err(|e| {
            if e.is_connect() {
                fail(format!(
                    "cannot connect ({}); is the daemon running, with metrics enabled?",
                    root_cause(&e)
                ))
            } else if e.is_timeout() {
                fail(format!("no answer within {SCRAPE_TIMEOUT:?}"))
            } else {
                fail(root_cause(&e))
            }
        })?;
        let code = resp.status();
        if !code.is_success() {
            return Err(fail(format!("it answered {code}")));
        }
        let text = resp
            .text()
            .await
            .map_err(|e| fail(format!("reading the answer: {}", root_cause(&e))))?;
        let scrape = Scrape::parse(&text).map_err(|e| fail(format!("not Prometheus text: {e}")))?;
        if !scrape.is_c42fwd() {
            return Err(fail(
                "the answer has no c42fwd_build_info: another program listens there".into(),
            ));
        }
        Ok(scrape)
    }

    fn status(&self, prev: Option<&Scrape>, cur: &Scrape) -> status::Status {
        let mut s = status::status(&self.addr, prev, cur, chrono::Utc::now());
        s.not_reported = self
            .configured
            .iter()
            .filter(|name| !s.sources.iter().any(|x| &x.name == *name))
            .cloned()
            .collect();
        s
    }
}

/// The innermost error of `e` (reqwest's own text says only "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn text(s: &status::Status, json: bool, pretty: bool) -> String {
    if !json {
        return status::render(s);
    }
    let body = if pretty {
        serde_json::to_string_pretty(s)
    } else {
        serde_json::to_string(s)
    };
    body.map(|b| b + "\n").unwrap_or_default()
}

/// Two scrapes a second apart, one status.
async fn once(scraper: &Scraper, json: bool) -> ExitCode {
    let result = async {
        let first = scraper.scrape().await?;
        tokio::time::sleep(RATE_INTERVAL).await;
        let second = scraper.scrape().await?;
        Ok::<_, String>(scraper.status(Some(&first), &second))
    }
    .await;
    match result {
        Ok(s) => print(&text(&s, json, true)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A status every `every` until Ctrl-C or SIGTERM; a daemon that stops answering is
/// shown as such and asked again.
async fn watch(scraper: &Scraper, every: Duration, json: bool) -> ExitCode {
    let terminal = std::io::stdout().is_terminal() && !json;
    let mut prev: Option<Scrape> = None;
    let mut first = true;
    loop {
        let block = match scraper.scrape().await {
            Ok(cur) => {
                if first {
                    first = false;
                    prev = Some(cur);
                    if !pause(RATE_INTERVAL).await {
                        return ExitCode::SUCCESS;
                    }
                    continue;
                }
                let block = text(&scraper.status(prev.as_ref(), &cur), json, false);
                prev = Some(cur);
                block
            }
            Err(e) => {
                prev = None;
                first = true;
                if json {
                    eprintln!("error: {e}");
                    String::new()
                } else {
                    format!("error: {e}\n")
                }
            }
        };
        let out = if terminal {
            // Home, clear the screen: a refresh in place.
            format!("\x1b[H\x1b[2J{block}")
        } else if json || block.is_empty() {
            block
        } else {
            format!("{block}\n")
        };
        if print(&out) != ExitCode::SUCCESS {
            return ExitCode::from(1);
        }
        if !pause(every).await {
            return ExitCode::SUCCESS;
        }
    }
}

/// Waits `d`; `false` when interrupted (Ctrl-C, SIGTERM).
async fn pause(d: Duration) -> bool {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = tokio::signal::ctrl_c() => false,
        () = term => false,
    }
}

fn print(s: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_asked_on_loopback() {
        let l = |s: &str| local(s.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(l("0.0.0.0:9842").as_deref(), Some("127.0.0.1:9842"));
        assert_eq!(l("[::]:9842").as_deref(), Some("[::1]:9842"));
        assert_eq!(l("10.1.2.3:9842").as_deref(), Some("10.1.2.3:9842"));
        assert_eq!(l("127.0.0.1:0"), None);
    }

    fn args(config: Option<PathBuf>) -> StatusArgs {
        StatusArgs {
            config,
            addr: None,
            watch: None,
            json: false,
        }
    }

    #[test]
    fn the_endpoint_comes_from_the_configuration_without_its_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let base = "[tenants.acme]\napi = \"incydr\"\nbase_url = \"https://api.us.code42.com\"\nclient_id = \"key-1\"\nclient_secret = { env = \"C42FWD_TEST_STATUS_UNSET\" }\n[sources.audit]\ntype = \"audit_log\"\ntenant = \"acme\"\n";
        std::fs::write(
            &path,
            format!("[metrics]\nlisten = \"0.0.0.0:9842\"\n{base}"),
        )
        .unwrap();
        assert_eq!(
            endpoint(&args(Some(path.clone()))).unwrap(),
            ("127.0.0.1:9842".to_string(), vec!["audit".to_string()])
        );
        std::fs::write(&path, base).unwrap();
        let e = endpoint(&args(Some(path.clone()))).unwrap_err();
        assert!(
            e.contains("has no metrics endpoint ([metrics] listen)"),
            "{e}"
        );
        assert!(e.contains(&path.display().to_string()), "{e}");
        std::fs::write(
            &path,
            format!("[metrics]\nlisten = \"127.0.0.1:0\"\n{base}"),
        )
        .unwrap();
        let e = endpoint(&args(Some(path.clone()))).unwrap_err();
        assert!(e.contains("port 0") && e.contains("--addr"), "{e}");
        let with_addr = StatusArgs {
            addr: Some("10.0.0.1:1".into()),
            ..args(Some(path))
        };
        assert_eq!(endpoint(&with_addr).unwrap().0, "10.0.0.1:1");
    }

    #[test]
    fn intervals_below_half_a_second_are_refused() {
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_interval("100ms").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
