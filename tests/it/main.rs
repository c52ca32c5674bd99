//! The one integration-test binary: real sockets, the emulator, real rsyslog and syslog-ng.
//!
//! Modules follow the system's boundaries; `support` holds shared harnesses.

mod alerts;
mod cli;
mod e2e;
mod file_events;
mod hec;
mod hostile;
mod http;
#[cfg(feature = "kafka")]
mod kafka;
mod official_clients;
mod ops;
mod poller;
mod quirks;
mod reconcile;
mod reload;
mod relp;
mod replay;
mod rsyslog;
mod sessions;
mod sinks;
mod status;
mod support;
mod sync_log;
mod syslog_ng;
mod tcp_resend;
mod tls;
