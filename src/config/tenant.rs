//! Validation of one `[tenants.NAME]` table: the API generation, base and per-service
//! URLs, credentials complete for that generation and readable, proxy, timeouts and
//! the response size limit. It produces a [`Tenant`]; it does not know sources or sinks.

use super::check::*;
use super::raw::RawTenant;
use super::*;

pub(super) fn tenant(name: &str, t: RawTenant, p: &mut Problems) -> Option<Tenant> {
    let at = |k: &str| format!("tenants.{name}.{k}");
    let before = p.0.len();
    let api = match t.api.as_str() {
        "incydr" => Some(ApiGeneration::Incydr),
        "legacy" => Some(ApiGeneration::Legacy),
        other => {
            p.add(
                at("api"),
                format!("`{other}` is not an API generation: use \"incydr\" or \"legacy\""),
            );
            None
        }
    };
    let base_url = url(&at("base_url"), t.base_url.trim_end_matches('/'), p);
    if let Some(u) = &base_url {
        if u.scheme() == "http" && !is_loopback(u) {
            p.add(
                at("base_url"),
                "plain http to a host other than loopback would send credentials in clear: use https",
            );
        }
    }
    let mut services = ServiceUrls::default();
    if let Some(s) = &t.services {
        services.audit_log = s
            .audit_log
            .as_deref()
            .and_then(|v| url(&at("services.audit_log"), v.trim_end_matches('/'), p));
        services.alerts = s
            .alerts
            .as_deref()
            .and_then(|v| url(&at("services.alerts"), v.trim_end_matches('/'), p));
        services.fed_observer = s
            .fed_observer
            .as_deref()
            .and_then(|v| url(&at("services.fed_observer"), v.trim_end_matches('/'), p));
        if api == Some(ApiGeneration::Incydr) {
            p.add(
                at("services"),
                "only the legacy API uses per-service URLs; the Incydr gateway is one base URL",
            );
        }
    }

    let has_client = t.client_id.is_some() || t.client_secret.is_some();
    let has_user = t.username.is_some() || t.password.is_some() || t.totp.is_some();
    let credentials = match (has_client, has_user, api) {
        (true, true, _) => {
            p.add(
                at("client_id"),
                "give either client_id/client_secret or username/password, not both",
            );
            None
        }
        (false, false, _) => {
            p.add(
                at("client_id"),
                "credentials are missing: set client_id and client_secret",
            );
            None
        }
        (false, true, Some(ApiGeneration::Incydr)) => {
            p.add(
                at("username"),
                "the Incydr API authenticates API clients only: use client_id and client_secret",
            );
            None
        }
        (true, false, _) => match (&t.client_id, &t.client_secret) {
            (Some(id), Some(s)) => {
                if id.trim().is_empty() {
                    p.add(at("client_id"), "must not be empty");
                }
                let secret = secret(at("client_secret"), s, p);
                secret.map(|secret| Credentials::ApiClient {
                    client_id: id.clone(),
                    secret,
                })
            }
            (None, _) => {
                p.add(at("client_id"), "is missing (client_secret is set)");
                None
            }
            (_, None) => {
                p.add(at("client_secret"), "is missing (client_id is set)");
                None
            }
        },
        (false, true, _) => match (&t.username, &t.password) {
            (Some(u), Some(pw)) => {
                let password = secret(at("password"), pw, p);
                let totp = t.totp.as_ref().and_then(|x| secret(at("totp"), x, p));
                if let Some(code) = &totp {
                    if !(code.expose().len() == 6
                        && code.expose().bytes().all(|b| b.is_ascii_digit()))
                    {
                        p.add(at("totp"), "must be a 6-digit code");
                    }
                }
                password.map(|password| Credentials::User {
                    username: u.clone(),
                    password,
                    totp,
                })
            }
            (None, _) => {
                p.add(at("username"), "is missing (password is set)");
                None
            }
            (_, None) => {
                p.add(at("password"), "is missing (username is set)");
                None
            }
        },
    };
    let proxy = t.proxy.as_deref().and_then(|v| url(&at("proxy"), v, p));
    let request_timeout = t.request_timeout.unwrap_or(Duration::from_secs(60));
    p.duration(
        at("request_timeout"),
        request_timeout,
        TENANT_REQUEST_TIMEOUT,
    );
    let max_response_bytes = match t.max_response_bytes {
        None => DEFAULT_MAX_RESPONSE_BYTES,
        Some(n) => match u64::try_from(n) {
            Ok(n) if MAX_RESPONSE_BYTES_RANGE.contains(&n) => n,
            _ => {
                p.add(
                    at("max_response_bytes"),
                    format!("{n} is out of range 1048576-1073741824 bytes (1 MiB to 1 GiB)"),
                );
                DEFAULT_MAX_RESPONSE_BYTES
            }
        },
    };
    let max_concurrent_requests = match t.max_concurrent_requests {
        None => DEFAULT_MAX_CONCURRENT_REQUESTS,
        Some(n) => match usize::try_from(n) {
            Ok(n) if MAX_CONCURRENT_REQUESTS_RANGE.contains(&n) => n,
            _ => {
                p.add(
                    at("max_concurrent_requests"),
                    format!(
                        "{n} is out of range {}-{} (data requests in flight at once)",
                        MAX_CONCURRENT_REQUESTS_RANGE.start(),
                        MAX_CONCURRENT_REQUESTS_RANGE.end()
                    ),
                );
                DEFAULT_MAX_CONCURRENT_REQUESTS
            }
        },
    };
    if let Some(ca) = &t.ca_file {
        if let Err(e) = std::fs::metadata(ca) {
            p.add(at("ca_file"), format!("cannot read {}: {e}", ca.display()));
        }
    }
    if p.0.len() != before {
        return None;
    }
    Some(Tenant {
        name: name.to_string(),
        api: api?,
        base_url: base_url?,
        services,
        credentials: credentials?,
        proxy,
        request_timeout,
        ca_file: t.ca_file,
        max_response_bytes,
        max_concurrent_requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn max_response_bytes_defaults_and_is_range_checked() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(
            c.tenants["acme"].max_response_bytes,
            DEFAULT_MAX_RESPONSE_BYTES
        );
        let with = |v: &str| {
            MINIMAL.replace(
                "client_secret = \"s3cret\"",
                &format!("client_secret = \"s3cret\"\nmax_response_bytes = {v}"),
            )
        };
        let c = parse_str(&with("4194304")).unwrap();
        assert_eq!(c.tenants["acme"].max_response_bytes, 4 * 1024 * 1024);
        for bad in ["0", "-1", "1000", "2147483648"] {
            let p = problems(&with(bad));
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].starts_with("tenants.acme.max_response_bytes: ")
                    && p[0].contains("out of range"),
                "{bad}: {p:?}"
            );
        }
    }

    #[test]
    fn max_concurrent_requests_defaults_and_is_range_checked() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(c.tenants["acme"].max_concurrent_requests, 2);
        let with = |v: &str| {
            MINIMAL.replace(
                "client_secret = \"s3cret\"",
                &format!("client_secret = \"s3cret\"\nmax_concurrent_requests = {v}"),
            )
        };
        let c = parse_str(&with("16")).unwrap();
        assert_eq!(c.tenants["acme"].max_concurrent_requests, 16);
        let c = parse_str(&with("1")).unwrap();
        assert_eq!(c.tenants["acme"].max_concurrent_requests, 1);
        for bad in ["0", "-1", "17", "4294967296"] {
            let p = problems(&with(bad));
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].starts_with("tenants.acme.max_concurrent_requests: ")
                    && p[0].contains("out of range 1-16"),
                "{bad}: {p:?}"
            );
        }
    }

    #[test]
    fn secrets_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-file\n").unwrap();
        let text = MINIMAL.replace(
            "client_secret = \"s3cret\"",
            &format!("client_secret = {{ file = \"{}\" }}", f.display()),
        );
        let c = parse_str(&text).unwrap();
        match &c.tenants["acme"].credentials {
            Credentials::ApiClient { secret, .. } => assert_eq!(secret.expose(), "from-file"),
            other => panic!("{other:?}"),
        }
        // Debug output of the whole config never shows the secret.
        assert!(!format!("{c:?}").contains("from-file"));

        let text = MINIMAL.replace(
            "client_secret = \"s3cret\"",
            "client_secret = \"s3cret\"\nproxy = \"http://user:proxypass@proxy:3128\"",
        );
        let c = parse_str(&text).unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("proxypass") && !debug.contains("s3cret"),
            "{debug}"
        );
        assert!(
            debug.contains("http://user:%5Bredacted%5D@proxy:3128/")
                || debug.contains("[redacted]"),
            "{debug}"
        );

        let text = MINIMAL.replace(
            "client_secret = \"s3cret\"",
            "client_secret = { env = \"C42FWD_TEST_SURELY_UNSET_VAR\" }",
        );
        let p = problems(&text);
        assert_eq!(
            p,
            vec!["tenants.acme.client_secret: environment variable C42FWD_TEST_SURELY_UNSET_VAR is not set"]
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let text = MINIMAL.replace("https://api.us.code42.com", "http://api.us.code42.com");
        assert!(problems(&text)[0].starts_with("tenants.acme.base_url: plain http"));
        let text = MINIMAL.replace("https://api.us.code42.com", "http://127.0.0.1:4242");
        assert!(problems(&text).is_empty());
    }

    #[test]
    fn legacy_user_login_with_totp() {
        let text = MINIMAL
            .replace("api = \"incydr\"", "api = \"legacy\"")
            .replace(
                "client_id = \"key-123\"\nclient_secret = \"s3cret\"",
                "username = \"admin@example.com\"\npassword = \"pw\"\ntotp = \"12345\"",
            );
        assert_eq!(
            problems(&text),
            vec!["tenants.acme.totp: must be a 6-digit code"]
        );
        let ok = text.replace("\"12345\"", "\"123456\"");
        assert!(problems(&ok).is_empty());
    }
}
