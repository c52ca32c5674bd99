//! The one integration-test binary: real sockets, the emulator, real rsyslog.
//!
//! Modules follow the system's boundaries; `support` holds shared harnesses.

mod cli;
mod e2e;
mod poller;
mod rsyslog;
mod sinks;
mod support;
