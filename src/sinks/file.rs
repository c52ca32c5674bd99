//! The file sink: records appended to one file, one write and one flush per batch.
//!
//! The file and its parent directories are created when missing. After any error the
//! handle is dropped and the next attempt reopens the path, so a file that was removed
//! or rotated away is created again and a transient error (disk full) heals once the
//! cause is gone. A batch whose write broke off part-way is written again whole: the
//! file may then hold a partial copy of some records before the full copy (counted in
//! `sink_resent`); with appends shared with other writers we cannot safely cut it.
//!
//! Rotation: on SIGHUP the pipeline asks every file sink to reopen its path
//! ([`ReopenFiles`]). Between batches the sink then syncs the old file to disk, closes
//! it and opens the path again (creating the file a rotation renamed away); a batch
//! that arrives first does the same before it is written. Every batch is acknowledged
//! only after its write was flushed into the file it went to, so each record is in
//! exactly one of the old and the new file, and nothing goes to the old file once the
//! reopen was done: logrotate without `copytruncate` works (`postrotate`: `kill -HUP`).
//!
//! Not done here: an fsync per batch (a later option).

use super::delivery::{Attempt, EncodedBatch, Transport, Written};
use super::error::SinkError;
use super::metrics::SinkMetrics;
use crate::config::FileOptions;
use std::path::{Path, PathBuf};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

/// The pipeline's side of the reopen request: [`ReopenFiles::request`] asks every
/// file sink started with one of its [`Reopen`]s to reopen its file.
pub struct ReopenFiles(watch::Sender<u64>);

impl ReopenFiles {
    pub fn new() -> Self {
        ReopenFiles(watch::channel(0).0)
    }

    /// A receiver for one sink run: it sees the requests made from now on.
    pub fn subscribe(&self) -> Reopen {
        Reopen(Some(self.0.subscribe()))
    }

    /// Asks every file sink to reopen its file (requests not yet seen are one).
    pub fn request(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Default for ReopenFiles {
    fn default() -> Self {
        Self::new()
    }
}

/// A file sink's side of the reopen request. The default never asks.
#[derive(Clone, Debug, Default)]
pub struct Reopen(Option<watch::Receiver<u64>>);

impl Reopen {
    /// Whether a reopen was asked for since the last call; marks it seen.
    fn take(&mut self) -> bool {
        match &mut self.0 {
            Some(rx) if rx.has_changed().unwrap_or(false) => {
                rx.mark_unchanged();
                true
            }
            _ => false,
        }
    }

    /// Waits until a reopen is asked for (never, without a sender). Cancel-safe.
    async fn asked(&mut self) {
        match &mut self.0 {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    // The pipeline is gone: no request will come.
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    fn is_live(&self) -> bool {
        self.0.is_some()
    }
}

pub(crate) struct FileWriter {
    sink: String,
    path: PathBuf,
    file: Option<File>,
    opened_once: bool,
    /// Records of the current batch that a failed attempt may have written.
    partial: usize,
    metrics: SinkMetrics,
    reopen: Reopen,
    /// A reopen was asked for and is not done yet (a tick that began it was dropped
    /// for a batch): the next write does it.
    reopen_pending: bool,
}

/// Opens `path` for appending, creating it and its parent directories.
pub(crate) async fn open_append(path: &Path) -> Result<File, SinkError> {
    let open = async {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
    };
    open.await.map_err(|source| SinkError::Open {
        path: path.to_path_buf(),
        source,
    })
}

impl FileWriter {
    /// Opens nothing yet: the first write opens (and creates) the file.
    /// `reopen`: the pipeline's reopen requests (SIGHUP).
    pub(crate) fn new(
        sink: &str,
        opts: &FileOptions,
        metrics: SinkMetrics,
        reopen: Reopen,
    ) -> Self {
        FileWriter {
            sink: sink.to_string(),
            path: opts.path.clone(),
            file: None,
            opened_once: false,
            partial: 0,
            metrics,
            reopen,
            reopen_pending: false,
        }
    }

    /// A reopen was asked for: the old file (every batch in it was flushed already)
    /// is synced to disk and closed, and the path opened again. A failed sync is
    /// logged (what the batches wrote is in the file either way); a failed open is
    /// counted and logged, and the next write opens the path again, with retries.
    async fn reopen(&mut self) {
        self.reopen_pending = true;
        if let Some(old) = self.file.take() {
            if let Err(e) = old.sync_all().await {
                tracing::warn!(sink = %self.sink, path = %self.path.display(), error = %e, "cannot sync the file before reopening it");
            }
        }
        let opened = open_append(&self.path).await;
        self.reopen_pending = false;
        match opened {
            Ok(f) => {
                self.file = Some(f);
                self.opened_once = true;
                tracing::info!(sink = %self.sink, path = %self.path.display(), "file reopened on request");
            }
            Err(e) => {
                self.metrics.error(&e);
                tracing::warn!(sink = %self.sink, error = %e, "cannot reopen the file; the next batch tries again");
            }
        }
    }
}

impl Transport for FileWriter {
    async fn write(
        &mut self,
        records: &EncodedBatch,
        attempt: Attempt,
    ) -> Result<Written, SinkError> {
        if attempt == Attempt::First {
            self.partial = 0;
        }
        if self.reopen.take() || self.reopen_pending {
            self.reopen().await;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = open_append(&self.path).await?;
                if self.opened_once {
                    tracing::info!(sink = %self.sink, path = %self.path.display(), "file reopened");
                } else {
                    tracing::info!(sink = %self.sink, path = %self.path.display(), "file opened");
                    self.opened_once = true;
                }
                self.file.insert(f)
            }
        };
        if self.partial > 0 {
            self.metrics.resent(self.partial);
        }
        let bytes = records.bytes();
        let mut written = 0;
        let result = async {
            while written < bytes.len() {
                let n = file.write(&bytes[written..]).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                written += n;
            }
            // tokio's File completes writes in the background; flush waits for them
            // and surfaces their error, so an acknowledged batch is in the file.
            file.flush().await
        }
        .await;
        match result {
            Ok(()) => {
                self.partial = 0;
                Ok(Written {
                    records: records.len(),
                    bytes: bytes.len(),
                })
            }
            Err(source) => {
                self.file = None;
                self.partial = self.partial.max(records.records_started_before(written));
                Err(SinkError::FileWrite {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }

    /// Idle, the sink waits for a reopen request in [`tick`](Transport::tick).
    fn next_tick(&self) -> Option<Instant> {
        self.reopen.is_live().then(Instant::now)
    }

    /// Cancel-safe: a tick dropped after the request was seen leaves
    /// `reopen_pending`, and the next write reopens.
    async fn tick(&mut self) -> Result<(), SinkError> {
        if !self.reopen_pending {
            self.reopen.asked().await;
        }
        self.reopen().await;
        Ok(())
    }
}
