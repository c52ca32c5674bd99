//! c42fwd forwards Code42 / Incydr security events to SIEMs and log collectors.
//!
//! # Layout
//! The modules follow the data flow (see `ARCHITECTURE.md`, which also lists the
//! invariants the code keeps):
//!
//! - [`config`]: the TOML file, validated in two phases (serde structs, then every check
//!   that needs no network) into the types the program runs on.
//! - [`api`]: the Code42 API client for one tenant (both generations): authentication
//!   and token refresh, service discovery, retries, the Audit Log, Alerts and Directory
//!   Sync Log calls, and a streaming parser that splits a page into per-event raw JSON.
//! - [`sources`]: the pollers ([`sources::audit`], [`sources::alerts`],
//!   [`sources::sync_log`]) over one poll / send / commit loop ([`sources::poll`]), the
//!   pure window logic that makes every event go out exactly once ([`sources::window`]),
//!   and the reconciliation of closed windows against the API's own counts
//!   ([`sources::reconcile`]).
//! - [`event`]: the unit that flows ([`event::Event`], [`event::Batch`]).
//! - [`normalize`]: pure mapping of API events to a common record (class id, category,
//!   severity...), with the Audit Log event-type catalog, the alert types and the Sync
//!   Log actions; hand-written for speed: a zero-copy JSON reader, a byte scanner and an
//!   RFC 3339 parser (`ARCHITECTURE.md`, "Cross-cutting concerns").
//! - [`encode`]: pure encoders: CEF, LEEF (2.0 and 1.0), JSON (raw or normalized),
//!   syslog headers (RFC 5424, RFC 3164, none), framing (octet counting, LF, none).
//! - [`sinks`]: where records go, each behind a bounded queue: syslog over TCP / TLS
//!   (with a resend tail) and UDP, RELP, Splunk HEC (with indexer acknowledgements),
//!   generic HTTP, stdout and file; the stall / health state of a sink held back by a
//!   set-up fault, and the dead-letter file.
//! - [`route`]: the contract between sources and sinks (`Route`, `SinkBatch`).
//! - [`ack`]: delivery acknowledgements from sinks back to sources.
//! - [`checkpoint`]: the per-source checkpoint files (window state, start edge,
//!   reconciliation ledger), replaced atomically.
//! - [`pipeline`]: builds and runs the whole thing: wires routes, supervision with backoff,
//!   shutdown with a grace period; the only place that spawns the daemon's tasks.
//! - [`replay`]: `c42fwd replay`, archived export files sent into the sinks; its
//!   [`replay::input`] reads every export format (JSON bodies and lines, CSV, CEF,
//!   gzip / zstd) into the same events the live sources produce.
//! - [`metrics`] (counters, gauges, `/metrics`, `/health` and `/ready`), [`health`]
//!   (the readiness rules of `/ready`), [`state_lock`] (one process per state
//!   directory), [`retry`] (the one backoff mechanism), [`secret`] (a string that
//!   never prints): shared pieces.
//! - [`status`]: `c42fwd status`, a running daemon's metrics read and shown as tables.
//! - [`cli`]: the command-line interface; `main.rs` only calls it. Its `demo` and
//!   `emulate` subcommands (the default `emulator` feature) serve the emulated Code42
//!   tenant of the workspace's `c42fwd-emulator` crate, which the tests and benches also
//!   use; the product's library does not contain it.
#![forbid(unsafe_code)]

pub mod ack;
pub mod api;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod encode;
pub mod event;
pub mod health;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod replay;
pub mod retry;
pub mod route;
pub mod secret;
pub mod sinks;
pub mod sources;
pub mod state_lock;
pub mod status;
