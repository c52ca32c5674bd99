//! Validation of one `[sinks.NAME]` table: the options of its kind (one function per
//! kind, from the raw struct of that kind to the options struct the sink is built
//! from), its encoding and its delivery settings (queue, retry, dead-letter size). It
//! produces a [`Sink`]; it opens no socket and reads no certificate beyond checking
//! that the file is there. Which keys a kind takes is settled by `raw::sink`.

use super::check::*;
use super::raw::{
    Facility, RawFileSink, RawHec, RawHttp, RawRelp, RawSink, RawSinkKind, RawSinkShared,
    RawStdout, RawTcp, RawTls, RawUdp, RawUnix,
};
use super::*;
use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use crate::retry::BackoffPolicy;

/// Builds the key path of a key of the sink being validated (`sinks.NAME.key`).
type At<'a> = dyn Fn(&str) -> String + 'a;

fn facility_number(f: &Facility) -> Result<u8, String> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ];
    match f {
        Facility::Number(n) if (0..=23).contains(n) => Ok(*n as u8),
        Facility::Number(n) => Err(format!("{n} is out of range 0-23")),
        Facility::Name(s) => NAMES
            .iter()
            .position(|x| x.eq_ignore_ascii_case(s))
            .map(|i| i as u8)
            .ok_or_else(|| format!("`{s}` is not a facility name such as \"local0\" or \"audit\"")),
    }
}

/// The machine's host name, for the syslog HOSTNAME field.
pub fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn tls(at: &At, t: &RawTls, p: &mut Problems) -> TlsOptions {
    for (k, f) in [
        ("tls.ca_file", &t.ca_file),
        ("tls.client_cert", &t.client_cert),
        ("tls.client_key", &t.client_key),
    ] {
        if let Some(f) = f {
            if let Err(e) = std::fs::metadata(f) {
                p.add(at(k), format!("cannot read {}: {e}", f.display()));
            }
        }
    }
    if t.client_cert.is_some() != t.client_key.is_some() {
        p.add(
            at("tls.client_cert"),
            "client_cert and client_key go together: give both or neither",
        );
    }
    if t.insecure_skip_verify && t.ca_file.is_some() {
        p.add(
            at("tls.insecure_skip_verify"),
            "is set together with ca_file: the CA would not be checked; remove one",
        );
    }
    let min_version = match t.min_version.as_deref().unwrap_or("1.2") {
        "1.2" => TlsVersion::Tls12,
        "1.3" => TlsVersion::Tls13,
        other => {
            p.add(
                at("tls.min_version"),
                format!("`{other}` is not a TLS version: use \"1.2\" or \"1.3\""),
            );
            TlsVersion::Tls12
        }
    };
    if let Some(n) = &t.server_name {
        if n.trim().is_empty() {
            p.add(at("tls.server_name"), "must not be empty");
        }
    }
    TlsOptions {
        ca_file: t.ca_file.clone(),
        client_cert: t.client_cert.clone(),
        client_key: t.client_key.clone(),
        server_name: t.server_name.clone(),
        min_version,
        insecure_skip_verify: t.insecure_skip_verify,
    }
}

pub(super) fn sink(name: &str, s: RawSink, p: &mut Problems) -> Option<Sink> {
    let at = |k: &str| format!("sinks.{name}.{k}");
    let before = p.0.len();
    // HTTP sinks carry records in JSON bodies: no syslog header unless asked for. The
    // datagram and message transports delimit records themselves: no framing.
    let (kind, framing, default_syslog) = match s.kind {
        RawSinkKind::Stdout(RawStdout { framing }) => (
            Some(SinkKind::Stdout),
            stream_framing(&at, framing.as_deref(), Framing::Lf, p),
            SyslogStyle::Rfc5424,
        ),
        RawSinkKind::File(f) => {
            let framing = stream_framing(&at, f.framing.as_deref(), Framing::Lf, p);
            (file(&at, f, p), framing, SyslogStyle::Rfc5424)
        }
        RawSinkKind::Tcp(t) => {
            let framing = stream_framing(&at, t.framing.as_deref(), Framing::OctetCounting, p);
            (tcp(&at, t, p), framing, SyslogStyle::Rfc5424)
        }
        RawSinkKind::Relp(r) => (relp(&at, r, p), Some(Framing::None), SyslogStyle::Rfc5424),
        RawSinkKind::Udp(u) => (udp(&at, u, p), Some(Framing::None), SyslogStyle::Rfc5424),
        RawSinkKind::Unix(u) => {
            let (kind, framing) = unix(&at, u, p);
            (kind, framing, SyslogStyle::Rfc5424)
        }
        RawSinkKind::Hec(h) => (
            hec(&at, h, s.shared.hostname.as_deref(), p),
            Some(Framing::None),
            SyslogStyle::None,
        ),
        RawSinkKind::Http(h) => (http(&at, h, p), Some(Framing::None), SyslogStyle::None),
        // A Kafka message is one record: no framing, no syslog header unless asked for.
        RawSinkKind::Kafka(k) => (
            super::kafka::kafka(&at, k, |t, p| tls(&at, t, p), p),
            Some(Framing::None),
            SyslogStyle::None,
        ),
    };
    let encoding = encoding(&at, &s.shared, framing, default_syslog, p);
    let delivery = delivery(&at, &s.shared, p);
    if p.0.len() != before {
        return None;
    }
    let (queue_batches, retry, dead_letter_max_bytes) = delivery;
    Some(Sink {
        name: name.to_string(),
        kind: kind?,
        encoding: encoding?,
        queue_batches,
        retry,
        dead_letter_max_bytes,
    })
}

/// `framing` of a byte-stream sink (stdout, file, tcp, unix stream), `default` when not set.
fn stream_framing(
    at: &At,
    framing: Option<&str>,
    default: Framing,
    p: &mut Problems,
) -> Option<Framing> {
    match framing {
        None => Some(default),
        Some("octet_counting") => Some(Framing::OctetCounting),
        Some("lf") => Some(Framing::Lf),
        Some(other) => {
            p.add(
                at("framing"),
                format!("`{other}` is not a framing: use \"octet_counting\" or \"lf\""),
            );
            None
        }
    }
}

fn file(at: &At, f: RawFileSink, p: &mut Problems) -> Option<SinkKind> {
    match f.path {
        Some(path) if !path.as_os_str().is_empty() => Some(SinkKind::File(FileOptions { path })),
        _ => {
            p.add(at("path"), "is required");
            None
        }
    }
}

/// `host` and `port` of a network sink, both required.
fn address(
    at: &At,
    host: Option<String>,
    port: Option<i64>,
    p: &mut Problems,
) -> (Option<String>, Option<u16>) {
    let host = host.map(|h| h.trim().to_string()).filter(|h| !h.is_empty());
    if host.is_none() {
        p.add(at("host"), "is required");
    }
    let port = match port {
        Some(n) if (1..=65535).contains(&n) => Some(n as u16),
        Some(n) => {
            p.add(at("port"), format!("{n} is out of range 1-65535"));
            None
        }
        None => {
            p.add(at("port"), "is required");
            None
        }
    };
    (host, port)
}

fn connect_timeout(at: &At, d: Option<Duration>, p: &mut Problems) -> Duration {
    let d = d.unwrap_or(Duration::from_secs(10));
    p.duration(at("connect_timeout"), d, CONNECT_TIMEOUT);
    d
}

fn tcp(at: &At, t: RawTcp, p: &mut Problems) -> Option<SinkKind> {
    let connect_timeout = connect_timeout(at, t.connect_timeout, p);
    if let Some(k) = t.keepalive {
        p.duration(at("keepalive"), k, KEEPALIVE);
    }
    let (host, port) = address(at, t.host, t.port, p);
    let tls = t.tls.as_ref().map(|t| tls(at, t, p));
    Some(SinkKind::Tcp(TcpOptions {
        host: host?,
        port: port?,
        connect_timeout,
        keepalive: t.keepalive,
        tls,
    }))
}

fn relp(at: &At, r: RawRelp, p: &mut Problems) -> Option<SinkKind> {
    let connect_timeout = connect_timeout(at, r.connect_timeout, p);
    let (host, port) = address(at, r.host, r.port, p);
    let tls = r.tls.as_ref().map(|t| tls(at, t, p));
    let window = r.window.unwrap_or(128);
    if !(1..=100_000).contains(&window) {
        p.add(at("window"), format!("{window} is out of range 1-100000"));
    }
    let ack_timeout = r.ack_timeout.unwrap_or(Duration::from_secs(30));
    p.duration(at("ack_timeout"), ack_timeout, ACK_TIMEOUT);
    Some(SinkKind::Relp(RelpOptions {
        host: host?,
        port: port?,
        connect_timeout,
        window: window.max(1) as usize,
        ack_timeout,
        tls,
    }))
}

fn udp(at: &At, u: RawUdp, p: &mut Problems) -> Option<SinkKind> {
    let (host, port) = address(at, u.host, u.port, p);
    let max_datagram = max_datagram(at, u.max_datagram, 2048, 65507, p);
    let oversize = oversize(at, u.oversize.as_deref(), p);
    Some(SinkKind::Udp(UdpOptions {
        host: host?,
        port: port?,
        max_datagram,
        oversize: oversize?,
    }))
}

/// `max_datagram` of a datagram sink: `default` when not set, at most `max` bytes.
fn max_datagram(at: &At, n: Option<i64>, default: i64, max: i64, p: &mut Problems) -> usize {
    let n = n.unwrap_or(default);
    if !(480..=max).contains(&n) {
        p.add(
            at("max_datagram"),
            format!("{n} is out of range 480-{max} bytes"),
        );
    }
    n.max(0) as usize
}

/// `oversize` of a datagram sink: what happens to a record larger than `max_datagram`.
fn oversize(at: &At, policy: Option<&str>, p: &mut Problems) -> Option<OversizePolicy> {
    match policy.unwrap_or("truncate") {
        "truncate" => Some(OversizePolicy::Truncate),
        "dead_letter" => Some(OversizePolicy::DeadLetter),
        other => {
            p.add(
                at("oversize"),
                format!("`{other}` is not a policy: use \"truncate\" or \"dead_letter\""),
            );
            None
        }
    }
}

/// The largest datagram a unix sink may send: the kernel's default socket send buffer
/// (`net.core.wmem_default`, 212992 bytes) less room for its bookkeeping.
const UNIX_MAX_DATAGRAM: i64 = 200_000;

/// A unix sink and its framing: `framing` applies to stream mode only, `max_datagram`
/// and `oversize` to datagram mode only.
fn unix(at: &At, u: RawUnix, p: &mut Problems) -> (Option<SinkKind>, Option<Framing>) {
    let path = match u.path {
        Some(path) if !path.as_os_str().is_empty() => Some(path),
        _ => {
            p.add(at("path"), "is required");
            None
        }
    };
    let connect_timeout = connect_timeout(at, u.connect_timeout, p);
    let only = |key: &str, mode: &str, p: &mut Problems| {
        p.add(
            at(key),
            format!("`{key}` applies to mode = \"{mode}\" only"),
        );
    };
    let (mode, framing) = match u.mode.as_deref().unwrap_or("stream") {
        "stream" => {
            if u.max_datagram.is_some() {
                only("max_datagram", "datagram", p);
            }
            if u.oversize.is_some() {
                only("oversize", "datagram", p);
            }
            let framing = stream_framing(at, u.framing.as_deref(), Framing::Lf, p);
            (Some(UnixMode::Stream), framing)
        }
        "datagram" => {
            if u.framing.is_some() {
                only("framing", "stream", p);
            }
            let max_datagram = max_datagram(at, u.max_datagram, 8192, UNIX_MAX_DATAGRAM, p);
            let oversize = oversize(at, u.oversize.as_deref(), p);
            let mode = oversize.map(|oversize| UnixMode::Datagram {
                max_datagram,
                oversize,
            });
            (mode, Some(Framing::None))
        }
        other => {
            p.add(
                at("mode"),
                format!("`{other}` is not a mode: use \"stream\" or \"datagram\""),
            );
            (None, None)
        }
    };
    let kind = (|| {
        Some(SinkKind::Unix(UnixOptions {
            path: path?,
            mode: mode?,
            connect_timeout,
        }))
    })();
    (kind, framing)
}

/// The keys of either HTTP-based sink's raw struct (`RawHec`, `RawHttp`) that both take.
macro_rules! http_common_of {
    ($h:expr) => {
        HttpCommon {
            tls: $h.tls.as_ref(),
            max_events: $h.max_events,
            max_bytes: $h.max_bytes,
            max_wait: $h.max_wait,
            request_timeout: $h.request_timeout,
        }
    };
}

/// The keys the two HTTP-based sinks share: TLS for https URLs, batching, timeout.
struct HttpCommon<'a> {
    tls: Option<&'a RawTls>,
    max_events: Option<i64>,
    max_bytes: Option<i64>,
    max_wait: Option<Duration>,
    request_timeout: Option<Duration>,
}

fn http_common(at: &At, c: HttpCommon, p: &mut Problems) -> (TlsOptions, HttpBatching, Duration) {
    let request_timeout = c.request_timeout.unwrap_or(Duration::from_secs(30));
    p.duration(at("request_timeout"), request_timeout, SINK_REQUEST_TIMEOUT);
    // HTTP sinks always have TLS settings (used for https URLs); SNI is reqwest's own.
    let tls = tls(at, c.tls.unwrap_or(&RawTls::default()), p);
    if tls.server_name.is_some() {
        p.add(
            at("tls.server_name"),
            "does not apply to an http-based sink: the URL's host is the server name",
        );
    }
    let batching = HttpBatching {
        max_events: c.max_events.unwrap_or(500).max(0) as usize,
        max_bytes: c.max_bytes.unwrap_or(1024 * 1024).max(0) as usize,
        max_wait: c.max_wait.unwrap_or(Duration::from_secs(1)),
    };
    if !(1..=100_000).contains(&batching.max_events) {
        p.add(at("max_events"), "must be 1 to 100000");
    }
    if !(1024..=512 * 1024 * 1024).contains(&batching.max_bytes) {
        p.add(at("max_bytes"), "must be 1 KiB to 512 MiB");
    }
    p.duration(at("max_wait"), batching.max_wait, MAX_WAIT);
    (tls, batching, request_timeout)
}

/// A HEC sink; `hostname` (a key every sink has) is the `host` of its envelope.
fn hec(at: &At, h: RawHec, hostname: Option<&str>, p: &mut Problems) -> Option<SinkKind> {
    let (tls, batching, request_timeout) = http_common(at, http_common_of!(h), p);
    let endpoint = match &h.endpoint {
        Some(e) => url(&at("endpoint"), e.trim_end_matches('/'), p),
        None => {
            p.add(
                at("endpoint"),
                "is required (e.g. \"https://splunk.example.com:8088\")",
            );
            None
        }
    };
    let token = match &h.token {
        Some(t) => secret(at("token"), t, p),
        None => {
            p.add(at("token"), "is required");
            None
        }
    };
    let ack_poll_interval = h.ack_poll_interval.unwrap_or(HEC_ACK_POLL_INTERVAL);
    let ack_poll_initial = h
        .ack_poll_initial
        .unwrap_or(HEC_ACK_POLL_INITIAL.min(ack_poll_interval));
    let ack_timeout = h.ack_timeout.unwrap_or(Duration::from_secs(300));
    p.duration(
        at("ack_poll_interval"),
        ack_poll_interval,
        ACK_POLL_INTERVAL,
    );
    p.duration(at("ack_poll_initial"), ack_poll_initial, ACK_POLL_INITIAL);
    let in_range = |d: Duration| d >= ACK_POLL_INITIAL.min && d <= ACK_POLL_INITIAL.max;
    if h.ack_poll_initial.is_some()
        && in_range(ack_poll_initial)
        && ack_poll_initial > ack_poll_interval
    {
        p.add(
            at("ack_poll_initial"),
            format!(
                "`{}` is longer than `ack_poll_interval` (`{}`): the first poll after a send \
                 comes after at most the slowest one",
                show_duration(ack_poll_initial),
                show_duration(ack_poll_interval)
            ),
        );
    }
    let max_pending_acks = h.max_pending_acks.unwrap_or(HEC_MAX_PENDING_ACKS as i64);
    if !(1..=MAX_PENDING_ACKS_LIMIT as i64).contains(&max_pending_acks) {
        p.add(
            at("max_pending_acks"),
            format!("`{max_pending_acks}` is out of range 1 to {MAX_PENDING_ACKS_LIMIT} requests"),
        );
    }
    p.duration(at("ack_timeout"), ack_timeout, ACK_TIMEOUT);
    if let Some(c) = &h.channel {
        if !is_uuid(c) {
            p.add(
                at("channel"),
                format!("`{c}` is not a GUID such as \"0e8a6c5f-2d3b-4a1c-9f7e-1b2c3d4e5f60\""),
            );
        }
    }
    Some(SinkKind::Hec(HecOptions {
        endpoint: endpoint?,
        token: token?,
        index: h.index,
        source: h.source,
        sourcetype: h.sourcetype,
        host: hostname.map_or_else(default_hostname, str::to_string),
        channel: h.channel,
        gzip: h.gzip.unwrap_or(true),
        batching,
        indexer_ack: h.indexer_ack.unwrap_or(false),
        ack_poll_interval,
        ack_poll_initial,
        max_pending_acks: max_pending_acks.clamp(1, MAX_PENDING_ACKS_LIMIT as i64) as usize,
        ack_timeout,
        request_timeout,
        tls,
    }))
}

fn http(at: &At, h: RawHttp, p: &mut Problems) -> Option<SinkKind> {
    let (tls, batching, request_timeout) = http_common(at, http_common_of!(h), p);
    let u = match &h.url {
        Some(u) => url(&at("url"), u, p),
        None => {
            p.add(at("url"), "is required");
            None
        }
    };
    let body = match h.body.as_deref().unwrap_or("ndjson") {
        "ndjson" => Some(HttpBody::NdJson),
        "json_array" => Some(HttpBody::JsonArray),
        other => {
            p.add(
                at("body"),
                format!("`{other}` is not a body: use \"ndjson\" or \"json_array\""),
            );
            None
        }
    };
    let mut headers = Vec::new();
    for (k, v) in h.headers.iter().flatten() {
        let valid_name = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let problem = if !valid_name {
            Some("is not a valid header name")
        } else if v.bytes().any(|b| b == b'\r' || b == b'\n') {
            Some("a header value must not contain CR or LF")
        } else if k.eq_ignore_ascii_case("authorization") {
            Some("put credentials in username/password or bearer_token, where they are kept secret")
        } else {
            None
        };
        match problem {
            Some(m) => p.add(at(&format!("headers.{k}")), m),
            None => headers.push((k.clone(), v.clone())),
        }
    }
    let auth = match (&h.username, &h.password, &h.bearer_token) {
        (None, None, None) => Some(HttpAuth::None),
        (Some(u), Some(pw), None) => {
            secret(at("password"), pw, p).map(|password| HttpAuth::Basic {
                username: u.clone(),
                password,
            })
        }
        (None, None, Some(t)) => secret(at("bearer_token"), t, p).map(HttpAuth::Bearer),
        (_, _, Some(_)) => {
            p.add(
                at("bearer_token"),
                "give either bearer_token or username/password, not both",
            );
            None
        }
        (Some(_), None, None) => {
            p.add(at("password"), "is missing (username is set)");
            None
        }
        (None, Some(_), None) => {
            p.add(at("username"), "is missing (password is set)");
            None
        }
    };
    Some(SinkKind::Http(HttpOptions {
        url: u?,
        body: body?,
        headers,
        auth: auth?,
        gzip: h.gzip.unwrap_or(false),
        batching,
        request_timeout,
        tls,
    }))
}

/// How records are encoded: the keys every sink has, with the kind's framing and
/// default syslog header.
fn encoding(
    at: &At,
    s: &RawSinkShared,
    framing: Option<Framing>,
    default_syslog: SyslogStyle,
    p: &mut Problems,
) -> Option<EncoderOptions> {
    let format = match s.format.as_deref().unwrap_or("cef") {
        "cef" => Some(Format::Cef),
        "json" => Some(Format::JsonRaw),
        "json_normalized" => Some(Format::JsonNormalized),
        "leef" => Some(Format::Leef2),
        "leef1" => Some(Format::Leef1),
        other => {
            p.add(
                at("format"),
                format!("`{other}` is not a format: use \"cef\", \"leef\", \"leef1\", \"json\" or \"json_normalized\""),
            );
            None
        }
    };
    let syslog = match s.syslog.as_deref() {
        None => Some(default_syslog),
        Some("rfc5424") => Some(SyslogStyle::Rfc5424),
        Some("rfc3164") => Some(SyslogStyle::Rfc3164),
        Some("none") => Some(SyslogStyle::None),
        Some(other) => {
            p.add(
                at("syslog"),
                format!(
                    "`{other}` is not a syslog header: use \"rfc5424\", \"rfc3164\" or \"none\""
                ),
            );
            None
        }
    };
    let facility = match s.facility.as_ref().map(facility_number) {
        None => Some(13),
        Some(Ok(n)) => Some(n),
        Some(Err(m)) => {
            p.add(at("facility"), m);
            None
        }
    };
    let hostname = s.hostname.clone().unwrap_or_else(default_hostname);
    if hostname.is_empty() {
        p.add(at("hostname"), "must not be empty");
    }
    let app_name = s.app_name.clone().unwrap_or_else(|| "c42fwd".to_string());
    if app_name.is_empty() || app_name.len() > 48 {
        p.add(at("app_name"), "must be 1 to 48 characters");
    }
    Some(EncoderOptions {
        format: format?,
        syslog: syslog?,
        framing: framing?,
        facility: facility?,
        hostname,
        app_name,
    })
}

/// How batches are delivered: queue capacity, retry backoff, dead-letter size.
fn delivery(at: &At, s: &RawSinkShared, p: &mut Problems) -> (usize, BackoffPolicy, u64) {
    let queue_batches = s.queue_batches.unwrap_or(4);
    if !(1..=1024).contains(&queue_batches) {
        p.add(
            at("queue_batches"),
            format!("{queue_batches} is out of range 1-1024"),
        );
    }
    let dead_letter_max_bytes = s
        .dead_letter_max_bytes
        .unwrap_or(crate::sinks::DEAD_LETTER_MAX_BYTES as i64);
    if !(4096..=(1i64 << 50)).contains(&dead_letter_max_bytes) {
        p.add(
            at("dead_letter_max_bytes"),
            format!(
                "{dead_letter_max_bytes} is out of range 4096-{}",
                1i64 << 50
            ),
        );
    }
    let mut retry = BackoffPolicy::default();
    if let Some(r) = &s.retry {
        if let Some(i) = r.initial {
            retry.initial = i;
        }
        if let Some(m) = r.max {
            retry.max = m;
        }
        p.duration(at("retry.initial"), retry.initial, RETRY);
        p.duration(at("retry.max"), retry.max, RETRY);
        if retry.initial > retry.max {
            p.add(at("retry.initial"), "must not be greater than retry.max");
        }
    }
    (
        queue_batches.clamp(1, 1024) as usize,
        retry,
        dead_letter_max_bytes.max(0) as u64,
    )
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn retry_bounds_and_order() {
        let with_retry = |r: &str| {
            MINIMAL.replace(
                "port = 6514",
                &format!("port = 6514\n[sinks.siem.retry]\n{r}"),
            )
        };
        assert!(problems(&with_retry("initial = \"1ms\"\nmax = \"1h\"")).is_empty());
        assert_eq!(
            problems(&with_retry("initial = \"0s\"")),
            vec!["sinks.siem.retry.initial: `0s` is out of range 1ms to 1h"]
        );
        assert_eq!(
            problems(&with_retry("max = \"2h\"")),
            vec!["sinks.siem.retry.max: `2h` is out of range 1ms to 1h"]
        );
        assert_eq!(
            problems(&with_retry("initial = \"2s\"\nmax = \"1s\"")),
            vec!["sinks.siem.retry.initial: must not be greater than retry.max"]
        );
    }

    /// The ack poll knobs of a HEC sink: their defaults, their ranges, and the first
    /// poll never slower than the slowest.
    #[test]
    fn hec_ack_poll_knobs_defaults_ranges_and_order() {
        let hec = |keys: &str| {
            with_every_sink().replace("token = \"t\"", &format!("token = \"t\"\n{keys}"))
        };
        let opts = |keys: &str| match crate::config::validate::parse_str(&hec(keys))
            .unwrap()
            .sinks["hec"]
            .kind
            .clone()
        {
            SinkKind::Hec(h) => h,
            other => panic!("{other:?}"),
        };
        let d = opts("");
        assert_eq!(
            (d.ack_poll_initial, d.ack_poll_interval, d.max_pending_acks),
            (Duration::from_millis(20), Duration::from_secs(1), 64)
        );
        // An interval below the default first poll takes the first poll down with it.
        let fast = opts("ack_poll_interval = \"10ms\"");
        assert_eq!(fast.ack_poll_initial, Duration::from_millis(10));
        let set =
            opts("ack_poll_initial = \"1ms\"\nack_poll_interval = \"5m\"\nmax_pending_acks = 4096");
        assert_eq!(
            (
                set.ack_poll_initial,
                set.ack_poll_interval,
                set.max_pending_acks
            ),
            (Duration::from_millis(1), Duration::from_secs(300), 4096)
        );
        assert_eq!(
            opts("ack_poll_initial = \"1s\"").ack_poll_initial,
            Duration::from_secs(1)
        );
        assert_eq!(
            problems(&hec("ack_poll_initial = \"2s\"")),
            vec![
                "sinks.hec.ack_poll_initial: `2s` is longer than `ack_poll_interval` (`1s`): \
                 the first poll after a send comes after at most the slowest one"
            ]
        );
        assert_eq!(
            problems(&hec("ack_poll_initial = \"0s\"")),
            vec!["sinks.hec.ack_poll_initial: `0s` is out of range 1ms to 5m"]
        );
        assert_eq!(
            problems(&hec(
                "ack_poll_initial = \"6m\"\nack_poll_interval = \"5m\""
            )),
            vec!["sinks.hec.ack_poll_initial: `6m` is out of range 1ms to 5m"]
        );
        for bad in ["0", "-1", "4097"] {
            assert_eq!(
                problems(&hec(&format!("max_pending_acks = {bad}"))),
                vec![format!(
                    "sinks.hec.max_pending_acks: `{bad}` is out of range 1 to 4096 requests"
                )]
            );
        }
    }

    /// `TlsOptions::default()` (what tests and code build by hand) is exactly what an
    /// empty `tls` table validates to.
    #[test]
    fn an_empty_tls_table_is_the_default_tls_options() {
        let text = MINIMAL.replace("port = 6514", "port = 6514\n[sinks.siem.tls]");
        let c = crate::config::validate::parse_str(&text).unwrap();
        match &c.sinks["siem"].kind {
            SinkKind::Tcp(TcpOptions { tls: Some(t), .. }) => {
                assert_eq!(t, &TlsOptions::default())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unix_sinks_stream_by_default_and_datagram_with_its_own_keys() {
        let unix = |keys: &str| {
            MINIMAL.replace(
                "type = \"tcp\"\nhost = \"siem.example.com\"\nport = 6514",
                &format!("type = \"unix\"\n{keys}"),
            )
        };
        let c = parse_str(&unix("path = \"/run/collector.sock\"")).expect("stream");
        let s = &c.sinks["siem"];
        match &s.kind {
            SinkKind::Unix(o) => {
                assert_eq!(o.path, PathBuf::from("/run/collector.sock"));
                assert_eq!(o.mode, UnixMode::Stream);
                assert_eq!(o.connect_timeout, Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.encoding.framing, Framing::Lf);
        let c = parse_str(&unix("path = \"/s\"\nframing = \"octet_counting\""))
            .expect("octet counting");
        assert_eq!(c.sinks["siem"].encoding.framing, Framing::OctetCounting);

        let c = parse_str(&unix(
            "path = \"/s\"\nmode = \"datagram\"\noversize = \"dead_letter\"",
        ))
        .expect("datagram");
        let s = &c.sinks["siem"];
        assert!(
            matches!(
                &s.kind,
                SinkKind::Unix(UnixOptions {
                    mode: UnixMode::Datagram {
                        max_datagram: 8192,
                        oversize: OversizePolicy::DeadLetter
                    },
                    ..
                })
            ),
            "{:?}",
            s.kind
        );
        assert_eq!(s.encoding.framing, Framing::None);

        assert_eq!(
            problems(&unix("mode = \"stream\"")),
            vec!["sinks.siem.path: is required"]
        );
        assert_eq!(
            problems(&unix("path = \"/s\"\nmode = \"seqpacket\"")),
            vec!["sinks.siem.mode: `seqpacket` is not a mode: use \"stream\" or \"datagram\""]
        );
        assert_eq!(
            problems(&unix(
                "path = \"/s\"\nmax_datagram = 4096\noversize = \"truncate\""
            )),
            vec![
                "sinks.siem.max_datagram: `max_datagram` applies to mode = \"datagram\" only",
                "sinks.siem.oversize: `oversize` applies to mode = \"datagram\" only",
            ]
        );
        assert_eq!(
            problems(&unix(
                "path = \"/s\"\nmode = \"datagram\"\nframing = \"lf\"\nmax_datagram = 300000"
            )),
            vec![
                "sinks.siem.framing: `framing` applies to mode = \"stream\" only",
                "sinks.siem.max_datagram: 300000 is out of range 480-200000 bytes",
            ]
        );
    }

    #[test]
    fn tls_relp_hec_and_http_sinks() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let text = with_every_sink()
            .replace(
                "port = 6514",
                &format!("port = 6514\n[sinks.siem.tls]\nca_file = \"{}\"\nserver_name = \"siem.internal\"\nmin_version = \"1.3\"", ca.display()),
            )
            .replace("port = 2514", "port = 2514\nwindow = 64")
            .replace(
                "endpoint = \"https://splunk.example.com:8088\"\ntoken = \"t\"",
                r#"endpoint = "https://splunk.example.com:8088/"
token = "hec-token-value"
index = "code42"
sourcetype = "code42:audit"
indexer_ack = true
format = "json""#,
            )
            .replace(
                "url = \"https://collector.example.com/ingest\"",
                r#"url = "https://collector.example.com/ingest"
bearer_token = "web-token-value"
headers = { "X-Tenant" = "acme" }
body = "json_array"
gzip = true"#,
            );
        for set in ["window = 64", "indexer_ack = true", "gzip = true"] {
            assert!(text.contains(set), "{set}");
        }
        let c = parse_str(&text).unwrap();
        match &c.sinks["siem"].kind {
            SinkKind::Tcp(TcpOptions { tls: Some(t), .. }) => {
                assert_eq!(t.server_name.as_deref(), Some("siem.internal"));
                assert_eq!(t.min_version, TlsVersion::Tls13);
                assert!(!t.insecure_skip_verify);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.sinks["relp"].kind,
            SinkKind::Relp(RelpOptions { window: 64, .. })
        ));
        assert_eq!(c.sinks["relp"].encoding.framing, Framing::None);
        match &c.sinks["hec"].kind {
            SinkKind::Hec(h) => {
                assert_eq!(h.endpoint.as_str(), "https://splunk.example.com:8088/");
                assert!(h.indexer_ack && h.gzip);
                assert_eq!(h.token.expose(), "hec-token-value");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.sinks["hec"].encoding.syslog, SyslogStyle::None);
        match &c.sinks["web"].kind {
            SinkKind::Http(h) => {
                assert_eq!(h.body, HttpBody::JsonArray);
                assert_eq!(
                    h.headers,
                    vec![("X-Tenant".to_string(), "acme".to_string())]
                );
                assert!(matches!(&h.auth, HttpAuth::Bearer(t) if t.expose() == "web-token-value"));
            }
            other => panic!("{other:?}"),
        }
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hec-token-value") && !debug.contains("web-token-value"),
            "{debug}"
        );

        let bad = text.replace(
            "window = 64",
            "window = 64\nframing = \"lf\"\nkeepalive = \"1s\"",
        );
        // Keys a relp sink does not take are refused while the file is read.
        let line = |k: &str| bad.lines().position(|l| l.starts_with(k)).unwrap() + 1;
        let takes = "a relp sink takes `type`, `host`, `port`, `connect_timeout`, `tls`, \
                     `window`, `ack_timeout`, `format`, `syslog`, `facility`, `hostname`, \
                     `app_name`, `queue_batches`, `retry`, `dead_letter_max_bytes`";
        assert_eq!(
            problems(&bad),
            vec![
                format!(
                    "sinks.relp.framing: line {}: `framing` does not apply to a relp sink: \
                     the transport delimits records (only stdout, file, tcp and unix sinks take it); \
                     {takes}",
                    line("framing")
                ),
                format!(
                    "sinks.relp.keepalive: line {}: `keepalive` does not apply to a relp sink \
                     (only tcp sinks take it); {takes}",
                    line("keepalive")
                ),
            ]
        );
        let bad = text.replace(
            "body = \"json_array\"",
            "body = \"json_array\"\nheaders = { Authorization = \"x\" }",
        );
        assert!(
            problems(&bad)
                .iter()
                .any(|x| x.contains("duplicate key") || x.starts_with("sinks.web.headers")),
            "{:?}",
            problems(&bad)
        );
        let bad = text.replace(
            "min_version = \"1.3\"",
            "min_version = \"1.1\"\nclient_cert = \"/nonexistent.pem\"",
        );
        let p = problems(&bad);
        assert!(
            p.iter()
                .any(|x| x.starts_with("sinks.siem.tls.min_version: `1.1`")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("sinks.siem.tls.client_cert: cannot read /nonexistent.pem")),
            "{p:?}"
        );
        assert!(p.iter().any(|x| x == "sinks.siem.tls.client_cert: client_cert and client_key go together: give both or neither"), "{p:?}");
    }
}
