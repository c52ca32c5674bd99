//! Behaviours of the real service that a client must cope with, each one switchable so
//! that a test can show what happens with it and without it.
//!
//! Owns [`Quirks`] (part of [`super::EmulatorOptions`]) and the `c42fwd emulate` flags
//! that change it ([`QuirkArgs`]). The routes read it where the behaviour is made:
//! `server` (empty Audit Log pages, tokens, the alert service's authorization scheme).
//! The defaults are what the real service does; the switches that are off by default
//! emulate variants some tenants show.

/// The quirks of the emulated tenant. `Default` is the real service's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirks {
    /// A `search-audit-log` page (both generations) that holds no event answers
    /// without an `events` key, only the pagination range and `totalResultCount`, as
    /// the real service does when no records are found. On by default; off, an empty
    /// page is `"events":[]`.
    pub omit_empty_events: bool,
    /// The legacy alert service (`/alert-service/...`) accepts only
    /// `Authorization: v3_user_token <t>` and answers 401 to `Bearer <t>`, as some
    /// older deployments did. Off by default: it takes both schemes.
    pub alerts_v3_user_token_only: bool,
    /// Issued tokens carry the `tenantUid` claim (the Incydr SDK reads the tenant id
    /// from it). On by default; off, a client has to ask the customer endpoint.
    pub token_tenant_uid: bool,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            omit_empty_events: true,
            alerts_v3_user_token_only: false,
            token_tenant_uid: true,
        }
    }
}

/// The `c42fwd emulate` flags of [`Quirks`]; each turns one default around.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct QuirkArgs {
    /// Answer an empty Audit Log page with `"events":[]` instead of leaving the key
    /// out (the real service leaves it out).
    #[arg(long)]
    pub keep_empty_events: bool,
    /// Make the legacy alert service accept only `Authorization: v3_user_token <t>`.
    #[arg(long)]
    pub alerts_v3_user_token_only: bool,
    /// Issue tokens without the `tenantUid` claim.
    #[arg(long)]
    pub token_without_tenant_uid: bool,
}

impl QuirkArgs {
    pub fn quirks(&self) -> Quirks {
        Quirks {
            omit_empty_events: !self.keep_empty_events,
            alerts_v3_user_token_only: self.alerts_v3_user_token_only,
            token_tenant_uid: !self.token_without_tenant_uid,
        }
    }
}
