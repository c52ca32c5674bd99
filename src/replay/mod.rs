//! `c42fwd replay`: archived Code42 exports (and dead-letter files) sent through the
//! same normalize -> encode -> sink path as the live sources.
//!
//! - `input/`: detecting a file's format and compression and reading its records
//!   (streaming, synchronous `std::io`).
//! - [`run`]: the engine (reader, pacing, sending through the real sinks, ordered
//!   acknowledgements and checkpoints, summary).
//! - [`checkpoint`]: the per-file replay checkpoints; [`dedupe`]: the fingerprint sets
//!   of `--dedupe`; [`progress`]: bar, log lines and counters; [`dead_letter`]: the
//!   re-drive of a sink's dead-letter file.

pub mod checkpoint;
pub mod dead_letter;
pub mod dedupe;
pub mod input;
pub mod progress;
pub mod run;
