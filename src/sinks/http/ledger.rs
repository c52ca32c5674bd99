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
/// the count reaches zero and the token is there: the delivery loop hands it over
/// ([`attach`](AckLedger::attach)) after the batch was taken, and its requests may be
/// delivered before that. Dropping the ledger drops the tokens left in it, and a
/// dropped token counts as not delivered.
#[derive(Debug, Default)]
pub(crate) struct AckLedger {
    next: AckId,
    open: HashMap<AckId, (Option<AckToken>, usize)>,
}

impl AckLedger {
    /// A new entry, held once (by the batcher cutting the batch); its token comes with
    /// [`attach`](AckLedger::attach).
    pub(crate) fn open(&mut self) -> AckId {
        let id = self.next;
        self.next += 1;
        self.open.insert(id, (None, 1));
        id
    }

    /// Gives entry `id` its token: resolved now if every request holding the batch's
    /// records is settled already, else once the last of them is.
    pub(crate) fn attach(&mut self, id: AckId, token: AckToken) {
        match self.open.get_mut(&id) {
            Some((slot, holds)) if *holds > 0 => *slot = Some(token),
            Some(_) => {
                self.open.remove(&id);
                token.delivered();
            }
            // Not opened: not ours to resolve (dropped: not delivered).
            None => drop(token),
        }
    }

    pub(crate) fn retain(&mut self, id: AckId) {
        if let Some((_, holds)) = self.open.get_mut(&id) {
            *holds += 1;
        }
    }

    pub(crate) fn release(&mut self, id: AckId) {
        if let Some((token, holds)) = self.open.get_mut(&id) {
            *holds = holds.saturating_sub(1);
            if *holds == 0 && token.is_some() {
                if let Some((Some(token), _)) = self.open.remove(&id) {
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

    /// Whether every batch taken is resolved.
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Batches not yet resolved.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{ack_set, Outcome};

    #[test]
    fn a_token_attached_after_its_requests_settled_resolves_at_once() {
        let (mut tokens, mut w) = ack_set(2);
        let mut ledger = AckLedger::default();
        // Batch 0: its one request is delivered before the loop hands over the token.
        let early = ledger.open();
        ledger.retain(early);
        ledger.release(early); // the batcher is done with it
        ledger.release(early); // its request was delivered
        assert_eq!(ledger.len(), 1, "kept until the token comes");
        ledger.attach(early, tokens.pop().unwrap());
        // Batch 1: the token comes while its request is still out.
        let late = ledger.open();
        ledger.retain(late);
        ledger.release(late);
        ledger.attach(late, tokens.pop().unwrap());
        assert_eq!(w.try_outcome(), None);
        ledger.release(late);
        assert_eq!(w.try_outcome(), Some(Outcome::Delivered));
        assert!(ledger.is_empty());
    }
}
