//! The file sink: records appended to one file, one write and one flush per batch.
//!
//! The file and its parent directories are created when missing. After any error the
//! handle is dropped and the next attempt reopens the path, so a file that was removed
//! or rotated away is created again and a transient error (disk full) heals once the
//! cause is gone. A batch whose write broke off part-way is written again whole: the
//! file may then hold a partial copy of some records before the full copy (counted in
//! `sink_resent`); with appends shared with other writers we cannot safely cut it.
//!
//! Not done here: rotation (logrotate with `copytruncate`, or a rename followed by the
//! reopen after the next error, is the operator's tool) and fsync (a later option).

use super::delivery::{Attempt, EncodedBatch, Transport, Written};
use super::error::SinkError;
use super::metrics::SinkMetrics;
use crate::config::FileOptions;
use std::path::{Path, PathBuf};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

pub(crate) struct FileWriter {
    sink: String,
    path: PathBuf,
    file: Option<File>,
    opened_once: bool,
    /// Records of the current batch that a failed attempt may have written.
    partial: usize,
    metrics: SinkMetrics,
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
    pub(crate) fn new(sink: &str, opts: &FileOptions, metrics: SinkMetrics) -> Self {
        FileWriter {
            sink: sink.to_string(),
            path: opts.path.clone(),
            file: None,
            opened_once: false,
            partial: 0,
            metrics,
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
}
