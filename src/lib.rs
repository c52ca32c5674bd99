//! c42fwd forwards Code42 / Incydr security events to SIEMs and log collectors.
//!
//! # Layout
//! The modules follow the data flow (see `ARCHITECTURE.md`):
//!
//! - [`config`]: the TOML file, validated in two phases into types the program runs on.
//! - [`api`]: the Code42 API client (both generations): auth, token refresh, retries.
//! - [`sources`]: pollers that read the API ([`sources::audit`]) and the pure window
//!   logic that makes every event go out exactly once ([`sources::window`]).
//! - [`event`]: the unit that flows ([`event::Event`], [`event::Batch`]).
//! - [`normalize`]: pure mapping of API events to a common record (class id, severity...).
//! - [`encode`]: pure encoders: CEF, JSON, syslog headers, framing.
//! - [`sinks`]: where records go (stdout, file, TCP, UDP), each behind a bounded queue.
//! - [`ack`]: delivery acknowledgements from sinks back to sources.
//! - [`checkpoint`]: the per-source cursor files, replaced atomically.
//! - [`pipeline`]: builds and runs the whole thing; the only place that spawns tasks.
//! - [`emulator`]: an emulated Code42 tenant (both API generations) for tests and demos.
//! - [`metrics`], [`retry`], [`secret`]: shared pieces.
//! - [`cli`]: the command-line interface; `main.rs` only calls it.
#![forbid(unsafe_code)]

pub mod ack;
pub mod api;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod encode;
pub mod event;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod retry;
pub mod secret;
pub mod sinks;
pub mod sources;
