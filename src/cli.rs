//! The command-line interface: parses arguments, sets up logging, maps errors to exit
//! codes. All real work is in the library modules; this file only decides which to call.
//!
//! Exit codes: 0 success (including a drained shutdown on SIGTERM / Ctrl-C), 1 a runtime
//! failure, 2 an invalid configuration or command line.

use crate::checkpoint::Store;
use crate::config::{self, Config, ConfigError};
use crate::emulator::{self, EmulateArgs};
use crate::pipeline;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Run the forwarder until SIGTERM / Ctrl-C.
    Run(ConfigArg),
    /// Check a configuration file without touching the network; exit 2 on problems.
    /// With --connect, also log in to every tenant and check every sink; exit 1 if one fails.
    Validate(ValidateArgs),
    /// Forward a live stream from a built-in emulated tenant to stdout as CEF, no config needed.
    Demo(DemoArgs),
    /// Serve an emulated Code42 tenant (both API generations) for tests and trials.
    Emulate(EmulateArgs),
    /// Show or reset the per-source checkpoints.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
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
    Reset {
        #[command(flatten)]
        config: ConfigArg,
        source: String,
    },
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Body format.
    #[arg(long, value_enum, default_value_t = DemoFormat::Cef)]
    format: DemoFormat,
    /// Live audit events per second from the emulated tenant.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Events that already happened in the last hour, forwarded first.
    #[arg(long, default_value_t = 25)]
    backlog: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum DemoFormat {
    Cef,
    Json,
    JsonNormalized,
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
            Ok(cfg) => runtime_then(|| pipeline::run_until_signal(cfg)),
            Err(code) => code,
        },
        Command::Demo(a) => runtime_then(|| demo(a)),
        Command::Emulate(a) => runtime_then(|| async move {
            let listener = tokio::net::TcpListener::bind(a.listen()).await?;
            let addr = listener.local_addr()?;
            eprintln!(
                "c42fwd emulator on http://{addr} (incydr: /v1/..., legacy: /api/v3/..., discovery: /api/v1/ServerEnv)"
            );
            emulator::serve(listener, a.options(), pipeline::shutdown_signal()).await?;
            Ok(())
        }),
        Command::Checkpoint(c) => checkpoint(c),
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
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
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

fn runtime_then<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(f()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn checkpoint(c: CheckpointCommand) -> ExitCode {
    let (cfg_path, source) = match &c {
        CheckpointCommand::Show { config, source } => (&config.config, source.clone()),
        CheckpointCommand::Reset { config, source } => (&config.config, Some(source.clone())),
    };
    let cfg = match load(cfg_path) {
        Ok(c) => c,
        Err(code) => return code,
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// One block per configured source: its checkpoint file, watermark, fingerprints kept
/// and last update, or that it has none yet. Checkpoints hold no secrets, so all of it
/// can be printed.
fn show_checkpoints(
    store: &Store,
    cfg: &Config,
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

/// `c42fwd demo`: the emulator on loopback, a live stream, CEF on stdout, no config.
async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    use crate::config::*;
    use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
    use std::collections::BTreeMap;
    use std::time::Duration;

    let opts = emulator::EmulatorOptions {
        backlog: a.backlog,
        backlog_span: Duration::from_secs(3600),
        rate: a.rate,
        lag: Duration::from_secs(2),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let emu = emulator::start(opts.clone(), listener).await?;
    let state = tempfile::tempdir()?;
    tracing::info!(
        emulator = %emu.base_url(),
        "demo: forwarding the emulated tenant's Audit Log to stdout; Ctrl-C to stop"
    );

    let tenant = Tenant {
        name: "demo".into(),
        api: ApiGeneration::Incydr,
        base_url: emu.base_url().parse()?,
        services: ServiceUrls::default(),
        credentials: Credentials::ApiClient {
            client_id: opts.client_id.clone(),
            secret: crate::secret::Secret::new(opts.client_secret.clone()),
        },
        proxy: None,
        request_timeout: Duration::from_secs(30),
        ca_file: None,
        max_response_bytes: crate::config::DEFAULT_MAX_RESPONSE_BYTES,
    };
    let source = Source {
        name: "audit".into(),
        tenant: "demo".into(),
        kind: SourceSpec::AuditLog(AuditFilters::default()),
        lag: Duration::from_secs(3),
        poll_interval: Duration::from_secs(1),
        start: StartAt::Ago(Duration::from_secs(2 * 3600)),
        page_size: 1000,
        reconcile_after: Some(config::validate::DEFAULT_RECONCILE_AFTER),
    };
    let sink = Sink {
        name: "stdout".into(),
        kind: SinkKind::Stdout,
        encoding: EncoderOptions {
            format: match a.format {
                DemoFormat::Cef => Format::Cef,
                DemoFormat::Json => Format::JsonRaw,
                DemoFormat::JsonNormalized => Format::JsonNormalized,
            },
            syslog: SyslogStyle::Rfc5424,
            framing: Framing::Lf,
            facility: 13,
            hostname: config::validate::default_hostname(),
            app_name: "c42fwd".into(),
        },
        dead_letter_max_bytes: crate::sinks::DEAD_LETTER_MAX_BYTES,
        queue_batches: 4,
        retry: crate::retry::BackoffPolicy::default(),
    };
    let cfg = Config {
        state_dir: state.path().to_path_buf(),
        metrics_listen: None,
        shutdown_grace: Duration::from_secs(5),
        tenants: BTreeMap::from([("demo".into(), tenant)]),
        sources: BTreeMap::from([("audit".into(), source)]),
        sinks: BTreeMap::from([("stdout".into(), sink)]),
        routes: BTreeMap::from([("audit".into(), vec!["stdout".into()])]),
    };
    let result = pipeline::run_until_signal(cfg).await;
    emu.shutdown().await;
    result
}
