//! `c42fwd replay`: the command line of the replay engine (`crate::replay`).
//!
//! Two ways to say where records go: `--config FILE` (the daemon's configuration:
//! every sink of it, or those named by `--sink`; its state directory) or `--to URL`
//! for one-off use without a configuration (`tcp://`, `tls://`, `udp://`, `relp://`,
//! `relp+tls://` `HOST:PORT`, with `--format`). Exit codes: 0 everything delivered, 1
//! rejected records, an unreadable file, a sink that failed for good or an
//! interruption, 2 a usage or configuration error.

use crate::config::{self, Sink, SinkKind};
use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use crate::event::SourceKind;
use crate::replay::input::KindHint;
use crate::replay::progress::Mode;
use crate::replay::run::{self, Input, Options, Summary};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const AFTER_HELP: &str = "\
Examples:
  c42fwd replay --config /etc/c42fwd.toml /archive/audit/
  c42fwd replay --config /etc/c42fwd.toml --sink splunk --since 2024-05-01 export.csv.gz
  c42fwd replay --to tls://siem.example.com:6514 --ca ca.pem --format cef events.jsonl
  c42fwd replay --config /etc/c42fwd.toml --dead-letter splunk

Formats are detected per file from its content: Audit Log JSON (search responses and
JSON lines), Audit Log CSV (API and console exports), Audit Log CEF, Alerts details (response
bodies and JSON lines), Directory Sync Log (CSV and JSON), top-level JSON arrays of
any of these records, each also gzip or zstd compressed. Directories are read recursively, in name order; `-` is standard input.

One replay at a time per state directory (<state_dir>/replay/lock; a second one exits
2 naming the holder's pid). A replay of exports may run beside `c42fwd run` on the same
state directory; --dead-letter may not (stop the daemon first).

Resume: a checkpoint per input file (path, size, hash of its first 64 KiB) in
<state_dir>/replay/checkpoints/ moves only over acknowledged records; running the same
command again goes on where it stopped. --restart ignores it. Standard input is not
resumable.

Exit codes: 0 everything delivered; 1 rejected records, an unreadable file, a sink that
failed for good, or an interruption; 2 a usage or configuration error.";

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Auto,
    AuditLog,
    Alerts,
    SyncLog,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Cef,
    Leef,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// A progress bar on a terminal, a log line every 5 s otherwise.
    Auto,
    Bar,
    Log,
    None,
}

/// Replay archived Code42 exports (files, directories, `-`) into the sinks.
#[derive(Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct ReplayArgs {
    /// The daemon's TOML configuration: its sinks and state directory.
    #[arg(long, short, env = "C42FWD_CONFIG", conflicts_with = "to")]
    pub config: Option<PathBuf>,
    /// Send to this sink of the configuration only (repeatable; default every sink).
    #[arg(long = "sink", value_name = "NAME", requires = "config")]
    pub sinks: Vec<String>,
    /// Without a configuration: one receiver, tcp://HOST:PORT (syslog over TCP, octet
    /// counting), tls://HOST:PORT (syslog over TLS), udp://HOST:PORT, relp://HOST:PORT or
    /// relp+tls://HOST:PORT; RFC 5424 headers.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// The record format for --to.
    #[arg(long, value_enum, default_value_t = FormatArg::Cef, requires = "to")]
    pub format: FormatArg,
    /// For tls:// and relp+tls://: a PEM CA bundle to trust (default the system's roots).
    #[arg(long, value_name = "FILE", requires = "to")]
    pub ca: Option<PathBuf>,
    /// For tls:// and relp+tls://: the name to verify (default the URL's host).
    #[arg(long, value_name = "NAME", requires = "to")]
    pub server_name: Option<String>,
    /// For tls:// and relp+tls://: a PEM client certificate chain (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// For tls:// and relp+tls://: the PEM key of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// With --to: where checkpoints and the rejects file go (with --config: its
    /// state_dir).
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".c42fwd-replay",
        requires = "to"
    )]
    pub state_dir: PathBuf,
    /// Which data set the files hold; `auto` detects it per file.
    #[arg(long, value_enum, default_value_t = KindArg::Auto)]
    pub source_kind: KindArg,
    /// Ignore the replay checkpoints: send every file from its start.
    #[arg(long)]
    pub restart: bool,
    /// Skip records already sent in this replay, by content fingerprint (the default).
    #[arg(long, overrides_with = "no_dedupe")]
    pub dedupe: bool,
    /// Send every record, duplicates included.
    #[arg(long)]
    pub no_dedupe: bool,
    /// The most fingerprints --dedupe holds (about 10 MiB per million); past it the
    /// oldest day's are dropped, with a warning.
    #[arg(long, value_name = "N", default_value_t = crate::replay::dedupe::DEFAULT_CAP)]
    pub dedupe_cap: usize,
    /// Parse and count everything (format per file, event time range, rejects); send
    /// and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// At most N records per second.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
    /// Only events that occurred at or after this time (RFC 3339, or a date: UTC midnight).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only events that occurred before this time (RFC 3339, or a date: UTC midnight).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Only these event types (Device Event Class IDs, e.g. search_issued, or an Audit
    /// Log type as the exports write it, SearchIssued; comma separated or repeated;
    /// case does not matter).
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub event_types: Vec<String>,
    /// Re-drive `<state_dir>/dead-letter/SINK.ndjson` into sink SINK (needs --config).
    #[arg(long, value_name = "SINK", requires = "config", conflicts_with_all = ["paths", "sinks"])]
    pub dead_letter: Option<String>,
    /// How progress is shown.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// How long the sinks may take to deliver what they hold at the end or after
    /// Ctrl-C (default: the configuration's shutdown_grace, 30 s with --to).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub grace: Option<Duration>,
    /// Files, directories (read recursively, in name order), or `-` for standard input.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Some(t) = crate::normalize::parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("`{s}` is neither an RFC 3339 time nor a date (YYYY-MM-DD)"))
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// Builds the one sink of `--to`.
pub fn sink_for_url(a: &ReplayArgs, url: &str) -> Result<Sink, String> {
    let u = url::Url::parse(url)
        .map_err(|e| format!("--to `{url}`: {e} (expected e.g. tcp://host:514)"))?;
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("--to `{url}`: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u
        .port()
        .ok_or_else(|| format!("--to `{url}`: no port (e.g. {}://{host}:514)", u.scheme()))?;
    let tls = || config::TlsOptions {
        ca_file: a.ca.clone(),
        client_cert: a.client_cert.clone(),
        client_key: a.client_key.clone(),
        server_name: a.server_name.clone(),
        ..config::TlsOptions::default()
    };
    let connect_timeout = Duration::from_secs(10);
    let (kind, framing) = match u.scheme() {
        "tcp" | "tls" => (
            SinkKind::Tcp(config::TcpOptions {
                host,
                port,
                connect_timeout,
                keepalive: None,
                tls: (u.scheme() == "tls").then(tls),
            }),
            Framing::OctetCounting,
        ),
        "udp" => (
            SinkKind::Udp(config::UdpOptions {
                host,
                port,
                max_datagram: 2048,
                oversize: config::OversizePolicy::Truncate,
            }),
            Framing::None,
        ),
        "relp" | "relp+tls" => (
            SinkKind::Relp(config::RelpOptions {
                host,
                port,
                connect_timeout,
                window: 128,
                ack_timeout: Duration::from_secs(30),
                tls: (u.scheme() == "relp+tls").then(tls),
            }),
            Framing::None,
        ),
        other => {
            return Err(format!(
                "--to `{url}`: unknown scheme `{other}` (use tcp, tls, udp, relp or relp+tls)"
            ))
        }
    };
    if matches!(u.scheme(), "tcp" | "udp" | "relp")
        && (a.ca.is_some() || a.client_cert.is_some() || a.server_name.is_some())
    {
        return Err(format!(
            "--ca, --client-cert and --server-name need a tls:// or relp+tls:// URL, not `{url}`"
        ));
    }
    Ok(Sink {
        name: "to".to_string(),
        kind,
        encoding: EncoderOptions {
            format: match a.format {
                FormatArg::Cef => Format::Cef,
                FormatArg::Leef => Format::Leef2,
                FormatArg::Json => Format::JsonRaw,
            },
            syslog: SyslogStyle::Rfc5424,
            framing,
            facility: 13,
            hostname: config::validate::default_hostname(),
            app_name: "c42fwd".to_string(),
        },
        queue_batches: 4,
        retry: crate::retry::BackoffPolicy::default(),
        dead_letter_max_bytes: crate::sinks::DEAD_LETTER_MAX_BYTES,
    })
}

/// Runs `c42fwd replay`.
pub fn replay(a: ReplayArgs) -> ExitCode {
    if a.dead_letter.is_none() && a.paths.is_empty() {
        return usage("no input: name files, directories or `-` (or --dead-letter SINK)");
    }
    if a.stdin_twice() {
        return usage("`-` (standard input) can be named once");
    }
    let (sinks, state_dir, grace) = match (&a.config, &a.to) {
        (Some(path), _) => {
            let cfg = match config::load(path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let wanted: Vec<String> = match &a.dead_letter {
                Some(s) => vec![s.clone()],
                None => a.sinks.clone(),
            };
            for s in &wanted {
                if !cfg.sinks.contains_key(s) {
                    return usage(format!(
                        "no sink named `{s}` in {} (sinks: {})",
                        path.display(),
                        cfg.sinks.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            let sinks: Vec<Sink> = cfg
                .sinks
                .values()
                .filter(|s| wanted.is_empty() || wanted.contains(&s.name))
                .cloned()
                .collect();
            (sinks, cfg.state_dir.clone(), cfg.shutdown_grace)
        }
        (None, Some(url)) => match sink_for_url(&a, url) {
            Ok(s) => (vec![s], a.state_dir.clone(), Duration::from_secs(30)),
            Err(e) => return usage(e),
        },
        (None, None) => {
            return usage("say where records go: --config FILE, or --to URL (e.g. tcp://siem:514)")
        }
    };
    // One replay per state directory (ARCHITECTURE.md, invariant 13); a dry run of
    // exports writes nothing and takes no lock.
    let _replay_lock = if a.dry_run && a.dead_letter.is_none() {
        None
    } else {
        match crate::state_lock::acquire_replay(&state_dir) {
            Ok(l) => Some(l),
            Err(e) => return lock_refused(&e),
        }
    };
    // A re-drive renames the dead-letter file the daemon's sink appends to: not while
    // `run` uses the directory, and `run` does not start while the re-drive runs.
    let _daemon_lock = match &a.dead_letter {
        None => None,
        Some(sink) => match crate::state_lock::acquire(&state_dir) {
            Ok(l) => Some(l),
            Err(e @ crate::state_lock::LockError::Held { .. }) => {
                eprintln!(
                    "error: cannot re-drive the dead-letter file of `{sink}` now: {e}. While \
                     `c42fwd run` uses the state directory its sinks append to their \
                     dead-letter files, and records refused during the re-drive would land in \
                     the file being re-driven; stop the daemon, re-drive, then start it again"
                );
                return ExitCode::from(2);
            }
            Err(e) => return lock_refused(&e),
        },
    };
    let (inputs, dead_letter) = match &a.dead_letter {
        Some(sink) => {
            // A dry run renames nothing.
            let files = match if a.dry_run {
                crate::replay::dead_letter::list(&state_dir, sink)
            } else {
                crate::replay::dead_letter::prepare(&state_dir, sink)
            } {
                Ok(f) => f,
                Err(e) => {
                    eprintln!(
                        "error: cannot prepare the dead-letter file of `{sink}` in {}: {e}",
                        state_dir.join("dead-letter").display()
                    );
                    return ExitCode::from(1);
                }
            };
            if files.is_empty() {
                println!(
                    "sink `{sink}` has no dead-letter file ({} does not exist): nothing to re-drive",
                    state_dir
                        .join("dead-letter")
                        .join(format!("{sink}.ndjson"))
                        .display()
                );
                return ExitCode::SUCCESS;
            }
            let enc = &sinks[0].encoding;
            (
                files.into_iter().map(Input::File).collect(),
                Some((enc.format, enc.syslog)),
            )
        }
        None => (run::expand(&a.paths), None),
    };
    let opts = Options {
        inputs,
        hint: match a.source_kind {
            KindArg::Auto => KindHint::Auto,
            KindArg::AuditLog => KindHint::Kind(SourceKind::AuditLog),
            KindArg::Alerts => KindHint::Kind(SourceKind::Alerts),
            KindArg::SyncLog => KindHint::Kind(SourceKind::SyncLog),
        },
        sinks,
        state_dir,
        restart: a.restart,
        dedupe: (!a.no_dedupe).then_some(a.dedupe_cap),
        dry_run: a.dry_run,
        rate: a.rate,
        since: a.since,
        until: a.until,
        event_types: a.event_types.clone(),
        shutdown_grace: a.grace.unwrap_or(grace),
        progress: match a.progress {
            ProgressArg::Auto => Mode::Auto,
            ProgressArg::Bar => Mode::Bar,
            ProgressArg::Log => Mode::Log,
            ProgressArg::None => Mode::None,
        },
        chunk_records: run::CHUNK_RECORDS,
        dead_letter,
    };
    let rt = match super::start_runtime(true) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let summary: Summary = match rt.block_on(run::replay(
        opts,
        metrics,
        crate::pipeline::shutdown_signal(),
    )) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    print!("{}", summary.render());
    if a.dead_letter.is_some() && !a.dry_run {
        for f in &summary.files {
            if f.delivered && f.rejected == 0 && f.error.is_none() {
                match crate::replay::dead_letter::retire(std::path::Path::new(&f.name)) {
                    Ok(to) => println!("{}: re-delivered whole, moved to {}", f.name, to.display()),
                    Err(e) => eprintln!(
                        "error: {}: re-delivered, but cannot move it aside: {e}",
                        f.name
                    ),
                }
            } else {
                println!(
                    "{}: not re-delivered whole: kept; run the same command again after fixing the cause",
                    f.name
                );
            }
        }
    }
    ExitCode::from(summary.exit_code())
}

/// A lock that could not be taken: exit 2 when another process holds it, 1 when it
/// cannot be written.
fn lock_refused(e: &crate::state_lock::LockError) -> ExitCode {
    eprintln!("error: {e}");
    match e {
        crate::state_lock::LockError::Io { .. } => ExitCode::from(1),
        _ => ExitCode::from(2),
    }
}

impl ReplayArgs {
    fn stdin_twice(&self) -> bool {
        self.paths.iter().filter(|p| p.as_os_str() == "-").count() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        a: ReplayArgs,
    }

    fn args(v: &[&str]) -> ReplayArgs {
        Cmd::try_parse_from(std::iter::once("replay").chain(v.iter().copied()))
            .unwrap_or_else(|e| panic!("{v:?}: {e}"))
            .a
    }

    #[test]
    fn every_to_scheme_makes_its_sink() {
        let sink = |url: &str, extra: &[&str]| {
            let mut v = vec!["--to", url];
            v.extend_from_slice(extra);
            v.push("f.jsonl");
            sink_for_url(&args(&v), url)
        };
        let s = sink("tcp://127.0.0.1:514", &[]).unwrap();
        assert!(matches!(&s.kind, SinkKind::Tcp(o) if o.port == 514 && o.tls.is_none()));
        assert_eq!(s.encoding.framing, Framing::OctetCounting);
        assert_eq!(s.encoding.syslog, SyslogStyle::Rfc5424);
        assert_eq!(s.encoding.format, Format::Cef);
        let s = sink(
            "tls://siem.example.com:6514",
            &["--ca", "ca.pem", "--format", "leef"],
        )
        .unwrap();
        assert!(matches!(&s.kind, SinkKind::Tcp(o)
            if o.host == "siem.example.com"
                && o.tls.as_ref().is_some_and(|t| t.ca_file.as_deref() == Some(std::path::Path::new("ca.pem")))));
        assert_eq!(s.encoding.format, Format::Leef2);
        let s = sink("udp://[::1]:514", &["--format", "json"]).unwrap();
        assert!(matches!(&s.kind, SinkKind::Udp(o) if o.host == "::1"));
        assert_eq!(s.encoding.framing, Framing::None);
        assert_eq!(s.encoding.format, Format::JsonRaw);
        let s = sink("relp://127.0.0.1:2514", &[]).unwrap();
        assert!(matches!(&s.kind, SinkKind::Relp(o) if o.tls.is_none()));
        let s = sink("relp+tls://127.0.0.1:2514", &[]).unwrap();
        assert!(matches!(&s.kind, SinkKind::Relp(o) if o.tls.is_some()));
        let e = sink("udp://127.0.0.1:514", &["--ca", "ca.pem"]).unwrap_err();
        assert!(e.contains("need a tls:// or relp+tls:// URL"), "{e}");
        let e = sink("ftp://127.0.0.1:2121", &[]).unwrap_err();
        assert!(e.contains("unknown scheme `ftp`"), "{e}");
    }
}
