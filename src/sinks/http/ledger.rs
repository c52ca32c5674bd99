//! The acknowledgement ledger of an HTTP-based sink.
//!
//! One request may carry several sink batches and one sink batch may span several
//! requests. The [`AckLedger`] holds each batch's [`AckToken`] until every request
//! holding its records was delivered or dead-lettered; dropping the ledger (shutdown)
//! drops the tokens, which counts as not delivered (ARCHITECTURE.md, invariant 1).
//!
//! Not here: which requests hold which batches (`body`, `batcher`), and when a request
//! counts as delivered (`courier`; with indexer acknowledgements, `hec`).

use crate::ack::AckToken;
use std::collections::HashMap;

/// A ledger entry: one sink batch's token.
pub(crate) type AckId = u64;

/// The tokens of the sink batches whose records are in requests not yet settled.
///
/// An entry counts its holds: one while the batcher is still cutting the batch, plus
/// one per request that carries records of it. The token resolves as delivered when
/// the count reaches zero. Dropping the ledger drops the tokens left in it, and a
/// dropped token counts as not delivered.
#[derive(Debug, Default)]
pub(crate) struct AckLedger {
    next: AckId,
    open: HashMap<AckId, (AckToken, usize)>,
}

impl AckLedger {
    pub(crate) fn open(&mut self, token: AckToken) -> AckId {
        let id = self.next;
        self.next += 1;
        self.open.insert(id, (token, 1));
        id
    }

    pub(crate) fn retain(&mut self, id: AckId) {
        if let Some((_, holds)) = self.open.get_mut(&id) {
            *holds += 1;
        }
    }

    pub(crate) fn release(&mut self, id: AckId) {
        if let Some((_, holds)) = self.open.get_mut(&id) {
            *holds -= 1;
            if *holds == 0 {
                if let Some((token, _)) = self.open.remove(&id) {
                    token.delivered();
                }
            }
        }
    }

    pub(crate) fn release_all(&mut self, ids: &[AckId]) {
        for id in ids {
            self.release(*id);
        }
    }

    /// Batches not yet resolved.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }
}
