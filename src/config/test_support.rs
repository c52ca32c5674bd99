//! What the configuration tests share: a minimal valid file and ways to vary it.

pub(crate) use super::parse_str;

pub(crate) const MINIMAL: &str = r#"
state_dir = "/tmp/c42fwd-test"

[tenants.acme]
api = "incydr"
base_url = "https://api.us.code42.com"
client_id = "key-123"
client_secret = "s3cret"

[sources.audit]
type = "audit_log"
tenant = "acme"

[sinks.siem]
type = "tcp"
host = "siem.example.com"
port = 6514

[[routes]]
sources = ["audit"]
sinks = ["siem"]
"#;

pub(crate) fn problems(text: &str) -> Vec<String> {
    match parse_str(text) {
        Ok(_) => vec![],
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

/// `MINIMAL` with a RELP, a HEC and an HTTP sink, all routed.
pub(crate) fn with_every_sink() -> String {
    MINIMAL
        .replace(
            "[[routes]]",
            r#"[sinks.relp]
type = "relp"
host = "127.0.0.1"
port = 2514
[sinks.hec]
type = "hec"
endpoint = "https://splunk.example.com:8088"
token = "t"
[sinks.web]
type = "http"
url = "https://collector.example.com/ingest"

[[routes]]"#,
        )
        .replace(
            "sinks = [\"siem\"]",
            "sinks = [\"siem\", \"relp\", \"hec\", \"web\"]",
        )
}
pub(crate) fn set(text: &str, after: &str, key: &str, value: &str) -> String {
    assert!(text.contains(after), "{after}");
    text.replacen(after, &format!("{after}\n{key} = \"{value}\""), 1)
}
