//! `c42fwd replay`: archived Code42 exports sent through the same normalize -> encode ->
//! sink path as the live sources, so a replayed event looks exactly like the same event
//! forwarded live.
//!
//! - [`input`]: reading the files. Detects each file's format and compression from its
//!   content and turns it, streaming, into [`crate::event::Event`]s in the shape the live
//!   API returns, or rejects that name their line and reason (`docs/replay-formats.md`).
//! - [`run`]: the engine (reader, pacing, sending through the real sinks, ordered
//!   acknowledgements and checkpoints, summary).
//! - [`checkpoint`]: the per-file replay checkpoints; [`dedupe`]: the fingerprint maps
//!   of `--dedupe`; [`progress`]: bar, log lines and counters; [`dead_letter`]: the
//!   re-drive of a sink's dead-letter file.

pub mod checkpoint;
pub mod dead_letter;
pub mod dedupe;
pub mod input;
pub mod progress;
pub mod run;
