//! `c42fwd replay`: archived Code42 exports sent through the same normalize -> encode ->
//! sink path as the live sources, so a replayed event looks exactly like the same event
//! forwarded live.
//!
//! - [`input`]: reading the files. Detects each file's format and compression from its
//!   content and turns it, streaming, into [`crate::event::Event`]s in the shape the live
//!   API returns, or rejects that name their line and reason (`docs/replay-formats.md`).

pub mod input;
