//! The subcommands that need the emulated Code42 tenant of the `c42fwd-emulator` crate:
//! `c42fwd demo` (the emulator and a pipeline to stdout in one process, no config) and
//! `c42fwd emulate` (the emulator alone). Compiled with the default `emulator` feature
//! only; a build without it has neither subcommand. Owns their flags and wiring, nothing
//! of the emulator or the pipeline themselves.

use crate::config;
use crate::pipeline;
use c42fwd_emulator::EmulateArgs;
use clap::{Args, ValueEnum};

#[derive(Args, Debug)]
pub(super) struct DemoArgs {
    /// Body format.
    #[arg(long, value_enum, default_value_t = DemoFormat::Cef)]
    format: DemoFormat,
    /// Live audit events per second from the emulated tenant.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Events that already happened in the last hour, forwarded first.
    #[arg(long, default_value_t = 25)]
    backlog: u64,
    /// Which data set to forward: the Audit Log, file events or sessions (`--rate` and
    /// `--backlog` count what it forwards; sessions are updated every 10 s up to three
    /// times, every version forwarded).
    #[arg(long, value_enum, default_value_t = DemoSource::AuditLog)]
    source: DemoSource,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum DemoSource {
    AuditLog,
    Sessions,
    FileEvents,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum DemoFormat {
    Cef,
    Json,
    JsonNormalized,
}

/// `c42fwd emulate`: serves the emulator until SIGTERM / Ctrl-C.
pub(super) async fn emulate(a: EmulateArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(a.listen()).await?;
    let addr = listener.local_addr()?;
    eprintln!(
        "c42fwd emulator on http://{addr} (incydr: /v1/..., legacy: /api/v3/..., discovery: /api/v1/ServerEnv, statistics: /_emulator/stats)"
    );
    c42fwd_emulator::serve(listener, a.options(), pipeline::shutdown_signal()).await?;
    Ok(())
}

/// `c42fwd demo`: the emulator on loopback, a live stream, CEF on stdout, no config.
pub(super) async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    use crate::config::*;
    use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
    use std::collections::BTreeMap;
    use std::time::Duration;

    let sessions = a.source == DemoSource::Sessions;
    let files = a.source == DemoSource::FileEvents;
    let audit = a.source == DemoSource::AuditLog;
    let opts = c42fwd_emulator::EmulatorOptions {
        backlog: if audit { a.backlog } else { 0 },
        backlog_span: Duration::from_secs(3600),
        rate: if audit { a.rate } else { 0.0 },
        file_event_backlog: if files { a.backlog } else { 0 },
        file_event_rate: if files { a.rate } else { 0.0 },
        session_backlog: if sessions { a.backlog } else { 0 },
        session_rate: if sessions { a.rate } else { 0.0 },
        session_update_every: Duration::from_secs(10),
        lag: Duration::from_secs(2),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let emu = c42fwd_emulator::start(opts.clone(), listener).await?;
    let state = tempfile::tempdir()?;
    tracing::info!(
        emulator = %emu.base_url(),
        source = match a.source {
            DemoSource::AuditLog => "audit log",
            DemoSource::Sessions => "sessions",
            DemoSource::FileEvents => "file events",
        },
        "demo: forwarding the emulated tenant to stdout; Ctrl-C to stop"
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
        max_concurrent_requests: crate::config::DEFAULT_MAX_CONCURRENT_REQUESTS,
    };
    let source_name = if files { "files" } else { "audit" };
    let source = Source {
        name: source_name.into(),
        tenant: "demo".into(),
        kind: if files {
            SourceSpec::FileEvents(FileEventFilters::default())
        } else {
            SourceSpec::AuditLog(AuditFilters::default())
        },
        lag: Duration::from_secs(3),
        poll_interval: Duration::from_secs(1),
        start: StartAt::Ago(Duration::from_secs(2 * 3600)),
        page_size: 1000,
        reconcile_after: Some(config::validate::DEFAULT_RECONCILE_AFTER),
    };
    let source = if sessions {
        Source {
            name: "sessions".into(),
            kind: SourceSpec::Sessions(SessionOptions {
                has_alerts: true,
                include_events: false,
            }),
            // The update window: every version of a session begun in the last hour.
            lag: Duration::from_secs(3600),
            page_size: 50,
            reconcile_after: None,
            ..source
        }
    } else {
        source
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
        ready_timeout: config::validate::DEFAULT_READY_TIMEOUT,
        shutdown_grace: Duration::from_secs(5),
        tenants: BTreeMap::from([("demo".into(), tenant)]),
        routes: BTreeMap::from([(source.name.clone(), vec!["stdout".into()])]),
        sources: BTreeMap::from([(source.name.clone(), source)]),
        sinks: BTreeMap::from([("stdout".into(), sink)]),
    };
    let result = pipeline::run_until_signal(cfg).await;
    emu.shutdown().await;
    result
}
