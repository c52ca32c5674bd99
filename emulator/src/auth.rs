//! Credentials and tokens of the emulated tenant.
//!
//! Owns checking HTTP Basic credentials (API client id/secret, user name/password),
//! and issuing and verifying bearer tokens. Tokens are JWT-shaped
//! (`base64url(header).base64url(payload).base64url(signature)`, the payload carrying
//! `sub`, `tenantUid` (unless `Quirks::token_tenant_uid` is off), `iat` and `exp`) and stateless: the signature is a keyed hash with
//! a key drawn at start-up, so verifying needs no token table and a token from another
//! emulator instance is "unknown". The expiry is judged on the emulator's clock, which
//! tests can advance. Nothing here logs; error texts never contain a credential.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

/// Issues and verifies bearer tokens.
pub(crate) struct TokenIssuer {
    key: u64,
    tenant: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    Missing,
    Malformed,
    Unknown,
    Expired,
}

impl TokenError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            TokenError::Missing => "missing bearer token",
            TokenError::Malformed => "malformed bearer token",
            TokenError::Unknown => "unknown bearer token",
            TokenError::Expired => "bearer token expired",
        }
    }
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"c42-emulator"}"#;

impl TokenIssuer {
    pub(crate) fn new(key: u64, tenant: String) -> Self {
        TokenIssuer { key, tenant }
    }

    fn sign(&self, signed_part: &str) -> String {
        let h = xxhash_rust::xxh3::xxh3_128_with_seed(signed_part.as_bytes(), self.key);
        URL_SAFE_NO_PAD.encode(h.to_be_bytes())
    }

    /// A token for `subject`, valid from `now_s` for `ttl_s` seconds; its payload names
    /// the tenant (`tenantUid`) unless `with_tenant` is false.
    pub(crate) fn issue(
        &self,
        subject: &str,
        now_s: i64,
        ttl_s: i64,
        nonce: u64,
        with_tenant: bool,
    ) -> String {
        let mut payload = serde_json::json!({
            "sub": subject,
            "iat": now_s,
            "exp": now_s.saturating_add(ttl_s),
            "jti": format!("{nonce:016x}"),
            "iss": "c42fwd-emulator",
        });
        if with_tenant {
            payload["tenantUid"] = self.tenant.clone().into();
        }
        let payload = payload.to_string();
        let mut t = URL_SAFE_NO_PAD.encode(HEADER);
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let sig = self.sign(&t);
        t.push('.');
        t.push_str(&sig);
        t
    }

    /// Checks a token's signature and expiry at `now_s`.
    pub(crate) fn verify(&self, token: &str, now_s: i64) -> Result<(), TokenError> {
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (_, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if self.sign(signed) != sig {
            return Err(TokenError::Unknown);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let v: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        let exp = v["exp"].as_i64().ok_or(TokenError::Malformed)?;
        if now_s >= exp {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// The token of an `Authorization` header: `Bearer <t>` (what py42 and the Incydr SDK
/// send everywhere), or `v3_user_token <t>` (the scheme Code42's older examples show
/// for the legacy alert service).
pub(crate) fn bearer(header: Option<&str>) -> Result<&str, TokenError> {
    let h = header.ok_or(TokenError::Missing)?.trim();
    let (scheme, token) = h.split_once(' ').ok_or(TokenError::Malformed)?;
    if scheme.eq_ignore_ascii_case("bearer") || scheme == "v3_user_token" {
        let token = token.trim();
        if token.is_empty() {
            Err(TokenError::Missing)
        } else {
            Ok(token)
        }
    } else {
        Err(TokenError::Missing)
    }
}

/// The `sub` claim of a token this emulator issued (call after `verify`): who a state
/// change is attributed to.
pub(crate) fn subject(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["sub"].as_str().map(str::to_string)
}

/// User name and password of a `Basic` header.
pub(crate) fn basic(header: Option<&str>) -> Option<(String, String)> {
    let h = header?.trim();
    let (scheme, b64) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Compares secrets without an early exit on the first differing byte.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (k, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(k).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire() {
        let issuer = TokenIssuer::new(42, "tenant-1".into());
        let t = issuer.issue("key-abc", 1_000, 900, 7, true);
        assert_eq!(t.split('.').count(), 3);
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(payload["tenantUid"], "tenant-1");
        assert_eq!(payload["exp"], 1_900);
        assert_eq!(payload["sub"], "key-abc");
        assert_eq!(subject(&t).as_deref(), Some("key-abc"));
        assert_eq!(subject("x.y"), None);
        assert_eq!(issuer.verify(&t, 1_899), Ok(()));
        let anonymous = issuer.issue("key-abc", 1_000, 900, 8, false);
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(anonymous.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(payload.get("tenantUid").is_none(), "{payload}");
        assert_eq!(issuer.verify(&anonymous, 1_000), Ok(()));
        assert_eq!(issuer.verify(&t, 1_900), Err(TokenError::Expired));
        let other = TokenIssuer::new(43, "tenant-1".into());
        assert_eq!(other.verify(&t, 1_000), Err(TokenError::Unknown));
        assert_eq!(issuer.verify("nonsense", 1_000), Err(TokenError::Malformed));
        let mut tampered = t.clone();
        tampered.insert(5, 'x');
        assert!(issuer.verify(&tampered, 1_000).is_err());
    }

    #[test]
    fn headers_parse() {
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("v3_user_token abc")), Ok("abc"));
        assert_eq!(bearer(Some("Basic abc")), Err(TokenError::Missing));
        assert_eq!(bearer(None), Err(TokenError::Missing));
        let h = format!("Basic {}", STANDARD.encode("id:sec:ret"));
        assert_eq!(basic(Some(&h)), Some(("id".into(), "sec:ret".into())));
        assert_eq!(basic(Some("Bearer x")), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
