//! The Audit Log event-type catalog: the `c42fwd-catalog` crate of the workspace
//! (`catalog/`), re-exported here so that the product's paths stay
//! `crate::normalize::catalog::*`.
//!
//! Why it is a crate of its own: the emulator generates these event types and needs the
//! table, but it cannot depend on this package (the `c42fwd` binary depends on the
//! emulator, and Cargo forbids the cycle). The catalog has no dependencies, so it sits
//! below both; the product owns it, the emulator only reads it.

pub use c42fwd_catalog::*;
