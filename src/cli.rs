//! The command-line interface: parses arguments, sets up logging, maps errors to exit
//! codes. All real work is in the library modules; this file only decides which to call.
//!
//! Exit codes: 0 success (including a drained shutdown on SIGTERM / Ctrl-C), 1 a runtime
//! failure, 2 an invalid configuration or command line, or a state directory in use by
//! another process (`crate::state_lock`). `replay` (`cli/replay.rs`) also exits 1 when
//! records were rejected or an input file could not be read; `status` (`cli/status.rs`)
//! exits 1 when no daemon answers at the metrics address.

use crate::checkpoint::Store;
use crate::config::{self, Config, ConfigError};
use crate::pipeline;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "emulator")]
mod emulated;
mod manual;
pub mod replay;
pub mod status;

#[derive(Parser, Debug)]
#[command(
    name = "c42fwd",
    version,
    about = "Forward Code42 / Incydr security events to SIEMs and log collectors"
)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax); overrides RUST_LOG.
    #[arg(long, global = true, env = "C42FWD_LOG")]
    log: Option<String>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the forwarder until SIGTERM / Ctrl-C; SIGHUP reloads the configuration and
    /// reopens the file sinks' files.
    Run(ConfigArg),
    /// Check a configuration file without touching the network; exit 2 on problems.
    /// With --connect, also log in to every tenant and check every sink; exit 1 if one fails.
    Validate(ValidateArgs),
    /// Forward a live stream from a built-in emulated tenant to stdout as CEF, no config needed.
    #[cfg(feature = "emulator")]
    Demo(emulated::DemoArgs),
    /// Serve an emulated Code42 tenant (both API generations) for tests and trials.
    #[cfg(feature = "emulator")]
    Emulate(c42fwd_emulator::EmulateArgs),
    /// Show, reset or set the per-source checkpoints.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Replay archived Code42 exports (files, directories, `-`) into the sinks; resumable.
    Replay(Box<replay::ReplayArgs>),
    /// Show a running daemon's sources (position, behind, rate, errors) and sinks
    /// (pending, delivered, last delivery), from its metrics endpoint; --watch refreshes.
    Status(status::StatusArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    #[command(hide = true)]
    Completions(manual::CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per subcommand with --dir.
    #[command(hide = true)]
    Manpage(manual::ManpageArgs),
}

/// The clap definition of the whole command line, for the generated completions and
/// man page.
fn command() -> clap::Command {
    Cli::command()
}

#[derive(Args, Debug)]
struct ConfigArg {
    /// The TOML configuration file.
    #[arg(long, short, env = "C42FWD_CONFIG")]
    config: PathBuf,
}

#[derive(Args, Debug)]
struct ValidateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Also log in to each tenant and check that each sink is reachable (TCP connect,
    /// TLS handshake, RELP session, HEC health, file writable).
    #[arg(long)]
    connect: bool,
}

#[derive(Subcommand, Debug)]
enum CheckpointCommand {
    /// Print every checkpoint (or one source's).
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this source.
        source: Option<String>,
    },
    /// Delete a source's checkpoint: it starts again from its `start` position.
    /// Refused while a daemon runs on the state directory.
    Reset {
        #[command(flatten)]
        config: ConfigArg,
        source: String,
    },
    /// Start a source from TIME: an RFC 3339 time or a duration back from now ("2h"),
    /// at most 90 days back and not in the future. Its events before TIME are not
    /// forwarded. Refused while a daemon runs on the state directory.
    Set {
        #[command(flatten)]
        config: ConfigArg,
        source: String,
        time: String,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.log.as_deref(), cli.log_format);
    match cli.command {
        Command::Validate(a) => validate(&a.config.config, a.connect),
        Command::Run(a) => match load(&a.config) {
            Ok(cfg) => match lock_state(&cfg.state_dir) {
                // Held until the process ends: one process per state directory.
                Ok(_lock) => runtime_then(|| run_daemon(cfg, a.config.clone())),
                Err(code) => code,
            },
            Err(code) => code,
        },
        #[cfg(feature = "emulator")]
        Command::Demo(a) => runtime_then(|| emulated::demo(a)),
        #[cfg(feature = "emulator")]
        Command::Emulate(a) => runtime_then(|| emulated::emulate(a)),
        Command::Checkpoint(c) => checkpoint(c),
        Command::Replay(a) => replay::replay(*a),
        Command::Status(a) => status::status(a),
        Command::Completions(a) => manual::run_completions(command(), a),
        Command::Manpage(a) => manual::run_manpage(command(), a),
    }
}

/// `run`: the daemon, reloading its configuration file on SIGHUP (on Unix).
async fn run_daemon(cfg: Config, file: PathBuf) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        pipeline::run_until_signal_reloading(cfg, file).await
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        pipeline::run_until_signal(cfg).await
    }
}

fn init_logging(filter: Option<&str>, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Whether log lines on stderr get ANSI colours: only on a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (no-color.org). So journald, a
/// container runtime or a file redirect never receive escape codes.
fn colour_on_stderr(is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_terminal && no_color.map_or(true, |v| v.is_empty())
}

fn print_config_error(e: &ConfigError) {
    eprintln!("{e}");
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        print_config_error(&e);
        ExitCode::from(2)
    })
}

fn validate(path: &std::path::Path, connect: bool) -> ExitCode {
    let cfg = match load(path) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    println!(
        "{}: ok ({} tenant(s), {} source(s), {} sink(s))",
        path.display(),
        cfg.tenants.len(),
        cfg.sources.len(),
        cfg.sinks.len()
    );
    if !connect {
        return ExitCode::SUCCESS;
    }
    runtime_then(|| async move {
        let failed = check_connections(&cfg).await;
        if failed > 0 {
            anyhow::bail!("{failed} connection check(s) failed");
        }
        Ok(())
    })
}

/// `validate --connect`: logs in to every tenant and runs every sink's health check,
/// each bounded in time, and prints one line per check. Returns how many failed.
async fn check_connections(cfg: &Config) -> usize {
    use std::time::Duration;
    const LIMIT: Duration = Duration::from_secs(30);
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let mut failed = 0;
    for (name, tenant) in &cfg.tenants {
        // A few quick retries, not the daemon's endless patience.
        let policy = crate::retry::BackoffPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
            max_retries: Some(2),
        };
        let result = match crate::api::ApiClient::new(tenant, metrics.clone()) {
            Ok(c) => {
                let c = c.with_backoff(policy);
                match tokio::time::timeout(LIMIT, c.check_login()).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {LIMIT:?}")),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => println!("tenants.{name}: logged in"),
            Err(e) => {
                failed += 1;
                println!("tenants.{name}: FAILED: {e}");
            }
        }
    }
    for (name, sink) in &cfg.sinks {
        let result = match tokio::time::timeout(LIMIT, crate::sinks::healthcheck(sink)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {LIMIT:?}")),
        };
        match result {
            Ok(()) => match sink.kind {
                crate::config::SinkKind::Hec(_) => {
                    println!("sinks.{name}: reachable (healthy, token accepted)")
                }
                _ => println!("sinks.{name}: reachable"),
            },
            Err(e) => {
                failed += 1;
                println!("sinks.{name}: FAILED: {e}");
            }
        }
    }
    failed
}

/// The async runtime of a command (on several threads, or on this one), or, when it
/// cannot start, the error printed and the exit code to return.
fn start_runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })
}

fn runtime_then<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = match start_runtime(true) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(f()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Takes the lock of the state directory; a held one is exit 2, with the holder's pid.
fn lock_state(dir: &std::path::Path) -> Result<crate::state_lock::StateLock, ExitCode> {
    crate::state_lock::acquire(dir).map_err(|e| {
        eprintln!("error: {e}");
        match e {
            crate::state_lock::LockError::Held { .. }
            | crate::state_lock::LockError::ReplayHeld { .. } => ExitCode::from(2),
            crate::state_lock::LockError::Io { .. } => ExitCode::from(1),
        }
    })
}

fn checkpoint(c: CheckpointCommand) -> ExitCode {
    let (cfg_path, source) = match &c {
        CheckpointCommand::Show { config, source } => (&config.config, source.clone()),
        CheckpointCommand::Reset { config, source }
        | CheckpointCommand::Set { config, source, .. } => (&config.config, Some(source.clone())),
    };
    // Only the state directory and the sources: no secret has to be readable.
    let cfg = match config::load_state(cfg_path) {
        Ok(c) => c,
        Err(e) => {
            print_config_error(&e);
            return ExitCode::from(2);
        }
    };
    if let Some(s) = &source {
        if !cfg.sources.contains_key(s) {
            eprintln!(
                "error: no source named `{s}` in {} (sources: {})",
                cfg_path.display(),
                cfg.sources.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            return ExitCode::from(2);
        }
    }
    // A change while a daemon runs would be undone by its next commit: refused.
    let _lock = match &c {
        CheckpointCommand::Show { .. } => None,
        _ => match lock_state(&cfg.state_dir) {
            Ok(l) => Some(l),
            Err(code) => return code,
        },
    };
    let store = match Store::open(&cfg.state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match c {
        CheckpointCommand::Show { .. } => {
            show_checkpoints(&store, &cfg, source.as_deref()).map(|text| print!("{text}"))
        }
        CheckpointCommand::Reset { .. } => {
            let s = source.unwrap_or_default();
            store.reset(&s).map(|existed| {
                if existed {
                    println!(
                        "checkpoint of `{s}` removed: it starts again from its `start` position"
                    );
                } else {
                    println!("`{s}` had no checkpoint");
                }
            })
        }
        CheckpointCommand::Set { source, time, .. } => {
            let now = chrono::Utc::now();
            let at = match config::validate::parse_start(&time, now) {
                Ok(config::StartAt::At(t)) => t,
                Ok(config::StartAt::Ago(d)) => {
                    now - chrono::TimeDelta::from_std(d).unwrap_or_default()
                }
                Err(m) => {
                    eprintln!("error: {m}");
                    return ExitCode::from(2);
                }
            };
            let kind = match cfg.sources[&source].kind {
                config::SourceSpec::AuditLog(_) => crate::event::SourceKind::AuditLog,
                config::SourceSpec::Alerts(_) => crate::event::SourceKind::Alerts,
                config::SourceSpec::SyncLog => crate::event::SourceKind::SyncLog,
                config::SourceSpec::Sessions(_) => crate::event::SourceKind::Sessions,
                config::SourceSpec::FileEvents(_) => crate::event::SourceKind::FileEvents,
            };
            set_checkpoint(&store, &source, kind, at, now)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Writes the checkpoint that starts `source` at `at`: the watermark and the start
/// edge at `at`, no fingerprints, no reconciliation windows (nothing before `at` is
/// read again).
fn set_checkpoint(
    store: &Store,
    source: &str,
    kind: crate::event::SourceKind,
    at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), crate::checkpoint::CheckpointError> {
    let before = store.load(source).ok().flatten();
    store.save(
        source,
        &crate::checkpoint::Checkpoint {
            source: source.to_string(),
            kind,
            watermark: at,
            fingerprints: Vec::new(),
            updated_at: now,
            start: Some(at),
            reconcile: None,
        },
    )?;
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    match before {
        Some(cp) => println!(
            "checkpoint of `{source}` set: it starts from {at} (its watermark was {})",
            cp.watermark
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ),
        None => println!("checkpoint of `{source}` set: it starts from {at}"),
    }
    Ok(())
}

/// One block per configured source: its checkpoint file, watermark, fingerprints kept
/// and last update, or that it has none yet. Checkpoints hold no secrets, so all of it
/// can be printed.
fn show_checkpoints(
    store: &Store,
    cfg: &config::StateConfig,
    only: Option<&str>,
) -> Result<String, crate::checkpoint::CheckpointError> {
    use std::fmt::Write;
    let mut out = String::new();
    for name in cfg.sources.keys() {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let path = store.path(name)?;
        match store.load(name)? {
            None => {
                let _ = writeln!(
                    out,
                    "{name}: no checkpoint ({} does not exist)",
                    path.display()
                );
            }
            Some(cp) => {
                let _ = writeln!(out, "{name}:");
                let _ = writeln!(out, "  file:         {}", path.display());
                let _ = writeln!(out, "  kind:         {}", cp.kind.as_str());
                let _ = writeln!(
                    out,
                    "  watermark:    {}",
                    cp.watermark
                        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                );
                if let Some(ahead) = crate::checkpoint::in_the_future(&cp, chrono::Utc::now()) {
                    let _ = writeln!(
                        out,
                        "  WARNING:      watermark is IN THE FUTURE (by {}): the source will refuse to start; if the clock is right, run `c42fwd checkpoint reset --config <config file> {name}`",
                        crate::checkpoint::ahead_text(ahead)
                    );
                }
                if let Some(start) = cp.start {
                    let _ = writeln!(
                        out,
                        "  start:        {}",
                        start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    );
                }
                let _ = writeln!(out, "  fingerprints: {}", cp.fingerprints.len());
                if let Some(r) = &cp.reconcile {
                    let _ = writeln!(out, "  reconcile:    {} windows pending", r.buckets.len());
                }
                let _ = writeln!(
                    out,
                    "  updated:      {}",
                    cp.updated_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::colour_on_stderr;
    use std::ffi::OsString;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_on_stderr(true, None));
        assert!(!colour_on_stderr(false, None), "a pipe, a file, journald");
        assert!(!colour_on_stderr(true, Some(OsString::from("1"))));
        assert!(!colour_on_stderr(false, Some(OsString::from("1"))));
        // NO_COLOR set to the empty string does not count (no-color.org).
        assert!(colour_on_stderr(true, Some(OsString::new())));
    }
}
