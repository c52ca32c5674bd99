//! Validation of one `[sinks.NAME]` table: the options of its kind, its encoding and
//! its delivery settings (queue, retry, dead-letter size). It produces a [`Sink`]; it
//! opens no socket and reads no certificate beyond checking that the file is there.

use super::check::*;
use super::raw::{Facility, RawSink, RawTls};
use super::*;
use crate::encode::{EncoderOptions, Format, Framing, SyslogStyle};
use crate::retry::BackoffPolicy;

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

fn tls(at: &dyn Fn(&str) -> String, t: &RawTls, p: &mut Problems) -> TlsOptions {
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
    let kind_name = s.kind.as_str();
    let stream = matches!(kind_name, "tcp" | "relp");
    let network = matches!(kind_name, "tcp" | "udp" | "relp");
    let http = matches!(kind_name, "hec" | "http");

    // Keys that do not apply to this sink type are errors, not silently ignored.
    let mut not_for = |key: &str, set: bool, applies: bool| {
        if set && !applies {
            p.add(at(key), format!("does not apply to a {kind_name} sink"));
        }
    };
    not_for("host", s.host.is_some(), network);
    not_for("port", s.port.is_some(), network);
    not_for("connect_timeout", s.connect_timeout.is_some(), stream);
    not_for("keepalive", s.keepalive.is_some(), kind_name == "tcp");
    not_for("max_datagram", s.max_datagram.is_some(), kind_name == "udp");
    not_for("oversize", s.oversize.is_some(), kind_name == "udp");
    not_for("path", s.path.is_some(), kind_name == "file");
    not_for("tls", s.tls.is_some(), stream || http);
    not_for("window", s.window.is_some(), kind_name == "relp");
    not_for(
        "ack_timeout",
        s.ack_timeout.is_some(),
        kind_name == "relp" || kind_name == "hec",
    );
    not_for("endpoint", s.endpoint.is_some(), kind_name == "hec");
    not_for("url", s.url.is_some(), kind_name == "http");
    not_for("token", s.token.is_some(), kind_name == "hec");
    for (k, set) in [
        ("index", s.index.is_some()),
        ("source", s.source.is_some()),
        ("sourcetype", s.sourcetype.is_some()),
        ("channel", s.channel.is_some()),
        ("indexer_ack", s.indexer_ack.is_some()),
        ("ack_poll_interval", s.ack_poll_interval.is_some()),
    ] {
        not_for(k, set, kind_name == "hec");
    }
    for (k, set) in [
        ("gzip", s.gzip.is_some()),
        ("max_events", s.max_events.is_some()),
        ("max_bytes", s.max_bytes.is_some()),
        ("max_wait", s.max_wait.is_some()),
        ("request_timeout", s.request_timeout.is_some()),
    ] {
        not_for(k, set, http);
    }
    for (k, set) in [
        ("body", s.body.is_some()),
        ("headers", s.headers.is_some()),
        ("username", s.username.is_some()),
        ("password", s.password.is_some()),
        ("bearer_token", s.bearer_token.is_some()),
    ] {
        not_for(k, set, kind_name == "http");
    }

    let host = || -> Option<String> {
        match &s.host {
            Some(h) if !h.trim().is_empty() => Some(h.trim().to_string()),
            _ => None,
        }
    };
    let port = |p: &mut Problems| -> Option<u16> {
        match s.port {
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            Some(n) => {
                p.add(at("port"), format!("{n} is out of range 1-65535"));
                None
            }
            None => {
                p.add(at("port"), "is required");
                None
            }
        }
    };
    let stream_tls = |p: &mut Problems| s.tls.as_ref().map(|t| tls(&at, t, p));
    // HTTP sinks always have TLS settings (used for https URLs); SNI is reqwest's own.
    let http_tls = |p: &mut Problems| {
        let t = tls(&at, s.tls.as_ref().unwrap_or(&RawTls::default()), p);
        if t.server_name.is_some() {
            p.add(
                at("tls.server_name"),
                "does not apply to an http-based sink: the URL's host is the server name",
            );
        }
        t
    };
    let batching = |p: &mut Problems| {
        let b = HttpBatching {
            max_events: s.max_events.unwrap_or(500).max(0) as usize,
            max_bytes: s.max_bytes.unwrap_or(1024 * 1024).max(0) as usize,
            max_wait: s.max_wait.unwrap_or(Duration::from_secs(1)),
        };
        if !(1..=100_000).contains(&b.max_events) {
            p.add(at("max_events"), "must be 1 to 100000");
        }
        if !(1024..=512 * 1024 * 1024).contains(&b.max_bytes) {
            p.add(at("max_bytes"), "must be 1 KiB to 512 MiB");
        }
        p.duration(at("max_wait"), b.max_wait, MAX_WAIT);
        b
    };
    let request_timeout = s.request_timeout.unwrap_or(Duration::from_secs(30));
    p.duration(at("request_timeout"), request_timeout, SINK_REQUEST_TIMEOUT);
    let connect_timeout = s.connect_timeout.unwrap_or(Duration::from_secs(10));
    p.duration(at("connect_timeout"), connect_timeout, CONNECT_TIMEOUT);
    if let Some(k) = s.keepalive {
        p.duration(at("keepalive"), k, KEEPALIVE);
    }

    let kind = match kind_name {
        "stdout" => Some(SinkKind::Stdout),
        "file" => match &s.path {
            Some(path) if !path.as_os_str().is_empty() => {
                Some(SinkKind::File(FileOptions { path: path.clone() }))
            }
            _ => {
                p.add(at("path"), "is required");
                None
            }
        },
        "tcp" => {
            let h = host();
            if h.is_none() {
                p.add(at("host"), "is required");
            }
            let port = port(p);
            let tls = stream_tls(p);
            Some(SinkKind::Tcp(TcpOptions {
                host: h?,
                port: port?,
                connect_timeout,
                keepalive: s.keepalive,
                tls,
            }))
        }
        "relp" => {
            let h = host();
            if h.is_none() {
                p.add(at("host"), "is required");
            }
            let port = port(p);
            let tls = stream_tls(p);
            let window = s.window.unwrap_or(128);
            if !(1..=100_000).contains(&window) {
                p.add(at("window"), format!("{window} is out of range 1-100000"));
            }
            let ack_timeout = s.ack_timeout.unwrap_or(Duration::from_secs(30));
            p.duration(at("ack_timeout"), ack_timeout, ACK_TIMEOUT);
            Some(SinkKind::Relp(RelpOptions {
                host: h?,
                port: port?,
                connect_timeout,
                window: window.max(1) as usize,
                ack_timeout,
                tls,
            }))
        }
        "udp" => {
            let h = host();
            if h.is_none() {
                p.add(at("host"), "is required");
            }
            let port = port(p);
            let max_datagram = s.max_datagram.unwrap_or(2048);
            if !(480..=65507).contains(&max_datagram) {
                p.add(
                    at("max_datagram"),
                    format!("{max_datagram} is out of range 480-65507 bytes"),
                );
            }
            let oversize = match s.oversize.as_deref().unwrap_or("truncate") {
                "truncate" => Some(OversizePolicy::Truncate),
                "dead_letter" => Some(OversizePolicy::DeadLetter),
                other => {
                    p.add(
                        at("oversize"),
                        format!("`{other}` is not a policy: use \"truncate\" or \"dead_letter\""),
                    );
                    None
                }
            };
            Some(SinkKind::Udp(UdpOptions {
                host: h?,
                port: port?,
                max_datagram: max_datagram as usize,
                oversize: oversize?,
            }))
        }
        "hec" => {
            let endpoint = match &s.endpoint {
                Some(e) => url(&at("endpoint"), e.trim_end_matches('/'), p),
                None => {
                    p.add(
                        at("endpoint"),
                        "is required (e.g. \"https://splunk.example.com:8088\")",
                    );
                    None
                }
            };
            let token = match &s.token {
                Some(t) => secret(at("token"), t, p),
                None => {
                    p.add(at("token"), "is required");
                    None
                }
            };
            let tls = http_tls(p);
            let batching = batching(p);
            let indexer_ack = s.indexer_ack.unwrap_or(false);
            let ack_poll_interval = s.ack_poll_interval.unwrap_or(Duration::from_secs(1));
            let ack_timeout = s.ack_timeout.unwrap_or(Duration::from_secs(300));
            p.duration(
                at("ack_poll_interval"),
                ack_poll_interval,
                ACK_POLL_INTERVAL,
            );
            p.duration(at("ack_timeout"), ack_timeout, ACK_TIMEOUT);
            if let Some(c) = &s.channel {
                if !is_uuid(c) {
                    p.add(
                        at("channel"),
                        format!(
                            "`{c}` is not a GUID such as \"0e8a6c5f-2d3b-4a1c-9f7e-1b2c3d4e5f60\""
                        ),
                    );
                }
            }
            Some(SinkKind::Hec(HecOptions {
                endpoint: endpoint?,
                token: token?,
                index: s.index.clone(),
                source: s.source.clone(),
                sourcetype: s.sourcetype.clone(),
                host: s.hostname.clone().unwrap_or_else(default_hostname),
                channel: s.channel.clone(),
                gzip: s.gzip.unwrap_or(true),
                batching,
                indexer_ack,
                ack_poll_interval,
                ack_timeout,
                request_timeout,
                tls,
            }))
        }
        "http" => {
            let u = match &s.url {
                Some(u) => url(&at("url"), u, p),
                None => {
                    p.add(at("url"), "is required");
                    None
                }
            };
            let body = match s.body.as_deref().unwrap_or("ndjson") {
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
            for (k, v) in s.headers.iter().flatten() {
                let valid_name = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid_name {
                    p.add(
                        format!("sinks.{name}.headers.{k}"),
                        "is not a valid header name",
                    );
                } else if v.bytes().any(|b| b == b'\r' || b == b'\n') {
                    p.add(
                        format!("sinks.{name}.headers.{k}"),
                        "a header value must not contain CR or LF",
                    );
                } else if k.eq_ignore_ascii_case("authorization") {
                    p.add(
                        format!("sinks.{name}.headers.{k}"),
                        "put credentials in username/password or bearer_token, where they are kept secret",
                    );
                } else {
                    headers.push((k.clone(), v.clone()));
                }
            }
            let auth = match (&s.username, &s.password, &s.bearer_token) {
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
            let tls = http_tls(p);
            let batching = batching(p);
            Some(SinkKind::Http(HttpOptions {
                url: u?,
                body: body?,
                headers,
                auth: auth?,
                gzip: s.gzip.unwrap_or(false),
                batching,
                request_timeout,
                tls,
            }))
        }
        other => {
            p.add(
                at("type"),
                format!(
                    "`{other}` is not a sink type: use \"stdout\", \"file\", \"tcp\", \"udp\", \"relp\", \"hec\" or \"http\""
                ),
            );
            None
        }
    };
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
    // HTTP sinks carry records in JSON bodies: no syslog header unless asked for.
    let default_syslog = if http { "none" } else { "rfc5424" };
    let syslog = match s.syslog.as_deref().unwrap_or(default_syslog) {
        "rfc5424" => Some(SyslogStyle::Rfc5424),
        "rfc3164" => Some(SyslogStyle::Rfc3164),
        "none" => Some(SyslogStyle::None),
        other => {
            p.add(
                at("syslog"),
                format!(
                    "`{other}` is not a syslog header: use \"rfc5424\", \"rfc3164\" or \"none\""
                ),
            );
            None
        }
    };
    let framing = match (kind_name, s.framing.as_deref()) {
        ("udp" | "relp" | "hec" | "http", None) => Some(Framing::None),
        ("udp" | "relp" | "hec" | "http", Some(_)) => {
            p.add(
                at("framing"),
                format!("does not apply to a {kind_name} sink: the transport delimits records"),
            );
            None
        }
        ("tcp", None) => Some(Framing::OctetCounting),
        (_, None) => Some(Framing::Lf),
        (_, Some("octet_counting")) => Some(Framing::OctetCounting),
        (_, Some("lf")) => Some(Framing::Lf),
        (_, Some(other)) => {
            p.add(
                at("framing"),
                format!("`{other}` is not a framing: use \"octet_counting\" or \"lf\""),
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
    if p.0.len() != before {
        return None;
    }
    Some(Sink {
        name: name.to_string(),
        kind: kind?,
        encoding: EncoderOptions {
            format: format?,
            syslog: syslog?,
            framing: framing?,
            facility: facility?,
            hostname,
            app_name,
        },
        queue_batches: queue_batches as usize,
        retry,
        dead_letter_max_bytes: dead_letter_max_bytes as u64,
    })
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

    #[test]
    fn keys_that_do_not_apply_are_errors() {
        let text = MINIMAL.replace(
            "[[routes]]",
            "[sinks.out]\ntype = \"stdout\"\nport = 5\n\n[[routes]]",
        );
        let p = problems(&text);
        assert!(
            p.contains(&"sinks.out.port: does not apply to a stdout sink".to_string()),
            "{p:?}"
        );
    }

    #[test]
    fn tls_relp_hec_and_http_sinks() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let text = MINIMAL
            .replace(
                "port = 6514",
                &format!("port = 6514\n[sinks.siem.tls]\nca_file = \"{}\"\nserver_name = \"siem.internal\"\nmin_version = \"1.3\"", ca.display()),
            )
            .replace(
                "[[routes]]",
                r#"[sinks.relp]
type = "relp"
host = "127.0.0.1"
port = 2514
window = 64
[sinks.hec]
type = "hec"
endpoint = "https://splunk.example.com:8088/"
token = "hec-token-value"
index = "code42"
sourcetype = "code42:audit"
indexer_ack = true
format = "json"
[sinks.web]
type = "http"
url = "https://collector.example.com/ingest"
bearer_token = "web-token-value"
headers = { "X-Tenant" = "acme" }
body = "json_array"
gzip = true

[[routes]]"#,
            )
            .replace("sinks = [\"siem\"]", "sinks = [\"siem\", \"relp\", \"hec\", \"web\"]");
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
        let p = problems(&bad);
        assert!(p.contains(&"sinks.relp.framing: does not apply to a relp sink: the transport delimits records".to_string()), "{p:?}");
        assert!(
            p.contains(&"sinks.relp.keepalive: does not apply to a relp sink".to_string()),
            "{p:?}"
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
