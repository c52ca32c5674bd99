//! The stdout sink: every batch is written to standard output in one write and flushed.
//!
//! Used by the demo and by `c42fwd ... | other-tool` pipelines. A failed write to
//! stdout (closed pipe) is permanent: there is nothing to reconnect to.
//!
//! Not done here: locking stdout against other writers. Logs go to stderr, so the
//! records on stdout are not interleaved with them.

use super::delivery::{Attempt, EncodedBatch, Transport, Written};
use super::error::SinkError;
use tokio::io::{AsyncWriteExt, Stdout};

pub(crate) struct StdoutWriter {
    out: Stdout,
}

impl StdoutWriter {
    pub(crate) fn new() -> Self {
        StdoutWriter {
            out: tokio::io::stdout(),
        }
    }
}

impl Transport for StdoutWriter {
    async fn write(
        &mut self,
        records: &EncodedBatch,
        _attempt: Attempt,
    ) -> Result<Written, SinkError> {
        // The batch is already one buffer: one write, then a flush so that a reader
        // sees each batch as soon as it is acknowledged.
        let result = async {
            self.out.write_all(records.bytes()).await?;
            self.out.flush().await
        }
        .await;
        result.map_err(|source| SinkError::Stdout { source })?;
        Ok(Written {
            records: records.len(),
            bytes: records.bytes().len(),
        })
    }
}
