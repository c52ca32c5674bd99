//! The dead-letter file of one sink: records a sink rejected by an explicit policy
//! (DESIGN invariant 5), kept so that nothing is dropped silently.
//!
//! Format: `<dead_letter_dir>/<sink>.ndjson`, append-only, one JSON object per line:
//! `{"time": RFC 3339 UTC, "sink": name, "reason": fixed string, "record": the full
//! record as text}`. The file and its directory are created on first use, not before,
//! so a sink that never rejects anything leaves no file behind.
//!
//! Not done here: deciding what to reject (the transports do) and counting (the caller
//! counts `sink_discarded{reason}` once the lines are written).

use super::SinkError;
use chrono::{SecondsFormat, Utc};
use std::path::{Path, PathBuf};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

/// Appends rejected records to one sink's dead-letter file.
#[derive(Debug)]
pub struct DeadLetterFile {
    sink: String,
    path: PathBuf,
    file: Option<File>,
    /// Lines waiting to be written by the next `flush` (one write per batch).
    pending: Vec<u8>,
    pending_records: usize,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    time: String,
    sink: &'a str,
    reason: &'a str,
    record: std::borrow::Cow<'a, str>,
}

impl DeadLetterFile {
    /// Names the file; opens nothing yet.
    pub fn new(dir: &Path, sink: &str) -> Self {
        DeadLetterFile {
            sink: sink.to_string(),
            path: dir.join(format!("{sink}.ndjson")),
            file: None,
            pending: Vec::new(),
            pending_records: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one record for the next [`flush`](Self::flush). Records are text in
    /// every format we produce; anything else is kept with replacement characters
    /// rather than lost.
    pub fn push(&mut self, reason: &str, record: &[u8]) {
        let line = Line {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            sink: &self.sink,
            reason,
            record: String::from_utf8_lossy(record),
        };
        // Serializing a struct of strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.pending, &line);
        self.pending.push(b'\n');
        self.pending_records += 1;
    }

    /// Records queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending_records
    }

    /// Writes the queued lines (creating the file on first use) and returns how many
    /// records were written. On error the lines stay queued and the handle is dropped,
    /// so a later call reopens the file and writes them once.
    pub async fn flush(&mut self) -> Result<usize, SinkError> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let result = self.write_pending().await;
        match result {
            Ok(()) => {
                self.pending.clear();
                Ok(std::mem::take(&mut self.pending_records))
            }
            Err(source) => {
                self.file = None;
                Err(SinkError::DeadLetter {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }

    async fn write_pending(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await?;
            tracing::info!(sink = %self.sink, path = %self.path.display(), "dead-letter file opened");
            self.file = Some(file);
        }
        if let Some(file) = self.file.as_mut() {
            file.write_all(&self.pending).await?;
            // tokio's File finishes the write in the background: flush waits for it
            // and reports its error, so a written line is really in the file.
            file.flush().await?;
        }
        Ok(())
    }
}
