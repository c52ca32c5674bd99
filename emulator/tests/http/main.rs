//! The emulator's tests: each starts an emulator on 127.0.0.1:0 and talks to it over
//! real HTTP (reqwest) through the crate's public API only, as c42fwd's client would.
//!
//! - `audit_log`: authentication, discovery, the Audit Log search and export, faults;
//!   it also holds the helpers the other file shares (start, tokens).
//! - `routes`: where the official clients reach the services, the statistics (per
//!   route, over HTTP too) and the answer to routes the emulator does not serve.
//! - `services`: alerts, rule metadata and the Directory Sync Log.
//! - `sessions`: the session routes, their paging and order, sessions that change.
//! - `quirks`: the switchable behaviours of the real service.
//! - `pacing`: the latency and transfer rate of the data endpoints.

mod audit_log;
mod file_events;
mod pacing;
mod quirks;
mod routes;
mod services;
mod sessions;
