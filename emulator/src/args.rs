//! The command-line options of `c42fwd emulate` (and the emulator part of `demo`).
//!
//! Owns only the flags and their translation into [`EmulatorOptions`]; the CLI module
//! decides which subcommand embeds them. Secrets can come from the environment so they
//! stay out of process listings, and print as `[redacted]` in `Debug`.

use super::{ByteRate, EmulatorOptions, FaultOptions, QuirkArgs};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The value of a secret flag (client secret, password, TOTP code). Its `Debug` shows
/// `[redacted]`, so the parsed arguments can be printed; only [`EmulateArgs::options`]
/// reads the value. The emulator's own type: it does not depend on the product, so the
/// product's `Secret` is out of reach, and this needs nothing more than a hidden `Debug`.
#[derive(Clone)]
pub struct SecretArg(String);

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

fn secret(s: &str) -> Result<SecretArg, String> {
    Ok(SecretArg(s.to_owned()))
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

fn rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .parse()
        .map_err(|_| format!("invalid rate {s:?}: expected events per second"))?;
    if r.is_finite() && r >= 0.0 {
        Ok(r)
    } else {
        Err(format!("invalid rate {s:?}: must be a finite number >= 0"))
    }
}

fn byte_rate(s: &str) -> Result<ByteRate, String> {
    s.parse()
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "invalid fraction {s:?}: expected a number from 0 to 1"
        )),
    }
}

/// The alert and Directory Sync Log streams of the emulated tenant, and how late events
/// of every stream may be.
#[derive(clap::Args, Debug, Clone)]
pub struct ServiceArgs {
    /// Alerts created before start-up (spread over the backlog span).
    #[arg(long, default_value_t = 300)]
    pub alert_backlog: u64,
    /// Live alerts per second after start-up (0 = none).
    #[arg(long, value_parser = rate, default_value = "0.05")]
    pub alert_rate: f64,
    /// Directory Sync Log entries before start-up (spread over 120 days; 90 are kept).
    #[arg(long, default_value_t = 2_000)]
    pub sync_log_backlog: u64,
    /// Live Directory Sync Log entries per second after start-up (0 = none).
    #[arg(long, value_parser = rate, default_value = "0.02")]
    pub sync_log_rate: f64,
    /// Sessions begun before start-up (spread over the backlog span).
    #[arg(long, default_value_t = 60)]
    pub session_backlog: u64,
    /// Live sessions per second after start-up (0 = none).
    #[arg(long, value_parser = rate, default_value = "0.02")]
    pub session_rate: f64,
    /// How long after its previous version a session is updated (1 to 4 versions).
    #[arg(long, value_parser = duration, default_value = "10m")]
    pub session_update_every: Duration,
    /// File events inserted before start-up (spread over the backlog span).
    #[arg(long, default_value_t = 20_000)]
    pub file_event_backlog: u64,
    /// Live file events per second after start-up (0 = none).
    #[arg(long, value_parser = rate, default_value = "5")]
    pub file_event_rate: f64,
    /// How long a `nextPgToken` of /v2/file-events stays valid.
    #[arg(long, value_parser = duration, default_value = "10m")]
    pub file_event_token_ttl: Duration,
    /// Events later than the lag (here, in the boxed part: `Command::Emulate` stays
    /// small).
    #[command(flatten)]
    pub late: LateArgs,
    /// Behaviours of the real service that can be turned around.
    #[command(flatten)]
    pub quirks: QuirkArgs,
    /// The response time and transfer rate of the data endpoints.
    #[command(flatten)]
    pub pacing: PacingArgs,
}

/// How slow the data endpoints are: the Audit Log, alerts and Directory Sync Log
/// (authentication and discovery are not slowed: clients call them once per token,
/// not once per page).
#[derive(clap::Args, Debug, Clone)]
pub struct PacingArgs {
    /// Every request to a data endpoint (Audit Log, alerts, Directory Sync Log; not
    /// authentication or discovery: docs/emulator.md) waits this long before it is
    /// answered, e.g. "250ms" (a real API answers a page in hundreds of milliseconds).
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub latency: Duration,
    /// Data endpoints send their response bodies at this rate, paced while the body is
    /// rendered (e.g. "20MB/s", "512KiB/s"; units B, kB, MB, GB, KiB, MiB, GiB).
    /// Default: as fast as the socket takes them.
    #[arg(long, value_parser = byte_rate)]
    pub bandwidth: Option<ByteRate>,
}

/// Events that show up later than the emulator's lag: a tenant slower than it says.
#[derive(clap::Args, Debug, Clone)]
pub struct LateArgs {
    /// Fraction (0 to 1) of events that show up later than the lag (by --late-by).
    #[arg(long, value_parser = fraction, default_value = "0")]
    pub late_fraction: f64,
    /// How much later than the lag those late events show up.
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub late_by: Duration,
}

/// Options of the emulated Code42 tenant.
#[derive(clap::Args, Debug, Clone)]
pub struct EmulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4242")]
    pub listen: SocketAddr,
    /// Seed of the event generator: same seed, same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Events that occurred before start-up.
    #[arg(long, default_value_t = 5_000)]
    pub backlog: u64,
    /// Span the backlog is spread over, before start-up (e.g. "1h", "7d").
    #[arg(long, value_parser = duration, default_value = "1h")]
    pub backlog_span: Duration,
    /// Live events per second after start-up (0 = none).
    #[arg(long, value_parser = rate, default_value = "2")]
    pub rate: f64,
    /// Alerts and Directory Sync Log (boxed: `Command::Emulate` stays small).
    #[command(flatten)]
    pub services: Box<ServiceArgs>,
    /// Maximum ingestion lag: events show up in searches up to this long after they occur.
    #[arg(long, value_parser = duration, default_value = "2m")]
    pub lag: Duration,
    /// Lifetime of issued tokens.
    #[arg(long, value_parser = duration, default_value = "15m")]
    pub token_ttl: Duration,
    /// API client id accepted by /v1/oauth and /api/v3/oauth/token.
    #[arg(long, default_value = "key-emulator")]
    pub client_id: String,
    /// API client secret.
    #[arg(long, env = "C42_EMULATOR_CLIENT_SECRET", value_parser = secret, default_value = "emulator-secret", hide_default_value = true, hide_env_values = true)]
    pub client_secret: SecretArg,
    /// User name accepted by /api/v3/auth/jwt.
    #[arg(long, default_value = "admin@example.com")]
    pub username: String,
    /// Password of that user.
    #[arg(long, env = "C42_EMULATOR_PASSWORD", value_parser = secret, default_value = "emulator-password", hide_default_value = true, hide_env_values = true)]
    pub password: SecretArg,
    /// Require this TOTP code in a `totp-auth` header on /api/v3/auth/jwt.
    #[arg(long, env = "C42_EMULATOR_TOTP", value_parser = secret, hide_env_values = true)]
    pub totp: Option<SecretArg>,
    /// Answer every Nth request with 429 (0 = never).
    #[arg(long, default_value_t = 0)]
    pub rate_limit_every: u32,
    /// Retry-After of those 429 answers.
    #[arg(long, value_parser = duration, default_value = "1s")]
    pub retry_after: Duration,
    /// Answer every Mth request with 500 (0 = never).
    #[arg(long, default_value_t = 0)]
    pub server_error_every: u32,
}

impl EmulateArgs {
    pub fn options(&self) -> EmulatorOptions {
        EmulatorOptions {
            seed: self.seed,
            backlog: self.backlog,
            backlog_span: self.backlog_span,
            rate: self.rate,
            alert_backlog: self.services.alert_backlog,
            alert_rate: self.services.alert_rate,
            sync_log_backlog: self.services.sync_log_backlog,
            sync_log_rate: self.services.sync_log_rate,
            session_backlog: self.services.session_backlog,
            session_rate: self.services.session_rate,
            session_update_every: self.services.session_update_every,
            lag: self.lag,
            late_fraction: self.services.late.late_fraction,
            late_by: self.services.late.late_by,
            token_ttl: self.token_ttl,
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.0.clone(),
            username: self.username.clone(),
            password: self.password.0.clone(),
            totp: self.totp.as_ref().map(|t| t.0.clone()),
            faults: FaultOptions {
                rate_limit_every: self.rate_limit_every,
                retry_after: self.retry_after,
                server_error_every: self.server_error_every,
                unauthorized_next: 0,
            },
            quirks: self.services.quirks.quirks(),
            latency: self.services.pacing.latency,
            bandwidth: self.services.pacing.bandwidth,
            file_event_backlog: self.services.file_event_backlog,
            file_event_rate: self.services.file_event_rate,
            file_event_token_ttl: self.services.file_event_token_ttl,
            ..EmulatorOptions::default()
        }
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: EmulateArgs,
    }

    #[test]
    fn defaults_and_flags_map_to_options() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.args.listen(), "127.0.0.1:4242".parse().unwrap());
        let o = cli.args.options();
        assert_eq!(o.client_id, "key-emulator");
        assert_eq!(o.client_secret, "emulator-secret");
        assert_eq!(o.lag, Duration::from_secs(120));
        assert_eq!(o.quirks, crate::Quirks::default());
        assert_eq!((o.latency, o.bandwidth), (Duration::ZERO, None));
        let cli = Cli::try_parse_from([
            "x",
            "--listen",
            "0.0.0.0:9",
            "--seed",
            "7",
            "--backlog",
            "10",
            "--backlog-span",
            "2h",
            "--rate",
            "0.5",
            "--lag",
            "30s",
            "--token-ttl",
            "1m",
            "--client-secret",
            "s3cret-value",
            "--totp",
            "123456",
            "--rate-limit-every",
            "5",
            "--retry-after",
            "2s",
            "--server-error-every",
            "7",
            "--alert-backlog",
            "12",
            "--alert-rate",
            "0.25",
            "--sync-log-backlog",
            "34",
            "--sync-log-rate",
            "0",
            "--late-fraction",
            "0.05",
            "--late-by",
            "3m",
            "--keep-empty-events",
            "--alerts-v3-user-token-only",
            "--token-without-tenant-uid",
            "--latency",
            "250ms",
            "--bandwidth",
            "20MB/s",
            "--file-event-backlog",
            "56",
            "--file-event-rate",
            "1.5",
            "--file-event-token-ttl",
            "30s",
        ])
        .unwrap();
        let o = cli.args.options();
        assert_eq!(
            (o.late_fraction, o.late_by),
            (0.05, Duration::from_secs(180))
        );
        assert_eq!((o.seed, o.backlog, o.rate), (7, 10, 0.5));
        assert_eq!(o.latency, Duration::from_millis(250));
        assert_eq!(
            o.bandwidth.map(ByteRate::bytes_per_second),
            Some(20_000_000)
        );
        assert_eq!((o.alert_backlog, o.alert_rate), (12, 0.25));
        assert_eq!((o.sync_log_backlog, o.sync_log_rate), (34, 0.0));
        assert_eq!((o.file_event_backlog, o.file_event_rate), (56, 1.5));
        assert_eq!(o.file_event_token_ttl, Duration::from_secs(30));
        assert_eq!(o.backlog_span, Duration::from_secs(7_200));
        assert_eq!(o.totp.as_deref(), Some("123456"));
        assert_eq!(o.faults.rate_limit_every, 5);
        assert_eq!(o.faults.server_error_every, 7);
        assert_eq!(
            o.quirks,
            crate::Quirks {
                omit_empty_events: false,
                alerts_v3_user_token_only: true,
                token_tenant_uid: false,
            }
        );
        let printed = format!("{:?} {:?}", cli.args, o);
        assert!(
            !printed.contains("s3cret-value") && !printed.contains("123456"),
            "{printed}"
        );
        assert!(Cli::try_parse_from(["x", "--rate", "-1"]).is_err());
        assert!(Cli::try_parse_from(["x", "--alert-rate", "-1"]).is_err());
        let o = Cli::try_parse_from([
            "x",
            "--session-backlog",
            "5",
            "--session-rate",
            "0.5",
            "--session-update-every",
            "30s",
        ])
        .unwrap()
        .args
        .options();
        assert_eq!((o.session_backlog, o.session_rate), (5, 0.5));
        assert_eq!(o.session_update_every, Duration::from_secs(30));
        assert!(Cli::try_parse_from(["x", "--session-rate", "-1"]).is_err());
        assert!(Cli::try_parse_from(["x", "--lag", "soon"]).is_err());
        assert!(Cli::try_parse_from(["x", "--late-fraction", "1.5"]).is_err());
        assert!(Cli::try_parse_from(["x", "--latency", "slow"]).is_err());
        let e = Cli::try_parse_from(["x", "--bandwidth", "20mbps"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--bandwidth") && e.contains("such as 20MB/s"),
            "{e}"
        );
    }
}
