//! Delivery acknowledgements: how a sink tells a source that a batch is safe.
//!
//! The pipeline gives every sink of a route its own [`AckToken`] for each batch; the
//! source keeps the matching [`AckWaiter`]. The waiter resolves to
//! [`Outcome::Delivered`] only when *every* token was resolved with
//! [`AckToken::delivered`]. A token that is dropped unresolved (a sink task that stopped,
//! a shutdown in the middle of a retry) counts as [`Outcome::NotDelivered`]: the
//! source then does not commit past that batch (ARCHITECTURE.md, invariant 1).
//!
//! This module does no I/O and spawns nothing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The final state of a batch across all sinks of its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every sink has the batch (written, acknowledged, or dead-lettered by policy).
    Delivered,
    /// At least one sink did not take it; the checkpoint must not move past it.
    NotDelivered,
}

struct Shared {
    remaining: AtomicUsize,
    failed: AtomicBool,
    tx: Mutex<Option<oneshot::Sender<Outcome>>>,
}

impl Shared {
    fn resolve_one(&self, ok: bool) {
        if !ok {
            self.failed.store(true, Ordering::Release);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let outcome = if self.failed.load(Ordering::Acquire) {
                Outcome::NotDelivered
            } else {
                Outcome::Delivered
            };
            if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(outcome);
            }
        }
    }
}

/// Told when a token is resolved: how the readiness of a sink learns of its deliveries
/// (`crate::health`).
pub trait AckObserver: Send + Sync {
    /// The token was resolved: `delivered`, or failed / dropped unresolved.
    fn resolved(&self, delivered: bool);
}

/// One sink's obligation to report on one batch. Resolve it exactly once.
pub struct AckToken {
    shared: Arc<Shared>,
    done: bool,
    observer: Option<Arc<dyn AckObserver>>,
}

impl std::fmt::Debug for AckToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckToken")
            .field("done", &self.done)
            .finish()
    }
}

impl AckToken {
    /// The sink has the batch: written and flushed, acknowledged by the peer, or
    /// handled by an explicit discard policy (dead-letter file).
    pub fn delivered(mut self) {
        self.finish(true);
    }

    /// The sink gives up on the batch; the route will not commit past it.
    pub fn failed(mut self) {
        self.finish(false);
    }

    /// This token tells `observer` when it is resolved (replacing any earlier one).
    pub fn observed_by(mut self, observer: Arc<dyn AckObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn finish(&mut self, ok: bool) {
        self.done = true;
        self.shared.resolve_one(ok);
        if let Some(o) = self.observer.take() {
            o.resolved(ok);
        }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if !self.done {
            self.finish(false);
        }
    }
}

/// The source's side: resolves once every sink has reported.
#[derive(Debug)]
pub struct AckWaiter {
    rx: oneshot::Receiver<Outcome>,
    /// The outcome once seen: `try_outcome` and `wait` may both be called, in any order,
    /// any number of times (a oneshot receiver yields its value only once).
    seen: Option<Outcome>,
}

impl AckWaiter {
    pub async fn wait(mut self) -> Outcome {
        if let Some(o) = self.seen {
            return o;
        }
        (&mut self.rx).await.unwrap_or(Outcome::NotDelivered)
    }

    /// Non-blocking look: `None` while some sink has not reported yet.
    pub fn try_outcome(&mut self) -> Option<Outcome> {
        if self.seen.is_none() {
            self.seen = match self.rx.try_recv() {
                Ok(o) => Some(o),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => Some(Outcome::NotDelivered),
            };
        }
        self.seen
    }
}

/// Creates `sinks` tokens and the waiter that resolves when all of them are resolved.
/// With zero sinks the waiter resolves to `Delivered` at once.
pub fn ack_set(sinks: usize) -> (Vec<AckToken>, AckWaiter) {
    let (tx, rx) = oneshot::channel();
    if sinks == 0 {
        let _ = tx.send(Outcome::Delivered);
        return (Vec::new(), AckWaiter { rx, seen: None });
    }
    let shared = Arc::new(Shared {
        remaining: AtomicUsize::new(sinks),
        failed: AtomicBool::new(false),
        tx: Mutex::new(Some(tx)),
    });
    let tokens = (0..sinks)
        .map(|_| AckToken {
            shared: shared.clone(),
            done: false,
            observer: None,
        })
        .collect();
    (tokens, AckWaiter { rx, seen: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivered_only_when_every_sink_delivered() {
        let (mut t, w) = ack_set(2);
        t.pop().unwrap().delivered();
        t.pop().unwrap().delivered();
        assert_eq!(w.wait().await, Outcome::Delivered);
    }

    #[tokio::test]
    async fn one_failure_fails_the_batch() {
        let (mut t, w) = ack_set(2);
        t.pop().unwrap().failed();
        t.pop().unwrap().delivered();
        assert_eq!(w.wait().await, Outcome::NotDelivered);
    }

    #[tokio::test]
    async fn dropped_token_counts_as_not_delivered() {
        let (mut t, mut w) = ack_set(2);
        t.pop().unwrap().delivered();
        assert_eq!(w.try_outcome(), None);
        drop(t);
        assert_eq!(w.wait().await, Outcome::NotDelivered);
    }

    #[tokio::test]
    async fn outcome_can_be_looked_at_then_awaited() {
        let (mut t, mut w) = ack_set(1);
        t.pop().unwrap().delivered();
        assert_eq!(w.try_outcome(), Some(Outcome::Delivered));
        assert_eq!(w.try_outcome(), Some(Outcome::Delivered));
        assert_eq!(w.wait().await, Outcome::Delivered);
    }

    #[tokio::test]
    async fn an_observer_hears_each_resolution_once() {
        struct Count(std::sync::Mutex<Vec<bool>>);
        impl AckObserver for Count {
            fn resolved(&self, delivered: bool) {
                self.0.lock().unwrap().push(delivered);
            }
        }
        let seen = Arc::new(Count(std::sync::Mutex::new(Vec::new())));
        let (mut t, _w) = ack_set(3);
        t.pop().unwrap().observed_by(seen.clone()).delivered();
        t.pop().unwrap().observed_by(seen.clone()).failed();
        drop(t.pop().unwrap().observed_by(seen.clone()));
        assert_eq!(*seen.0.lock().unwrap(), vec![true, false, false]);
    }

    #[tokio::test]
    async fn zero_sinks_is_delivered() {
        let (_t, w) = ack_set(0);
        assert_eq!(w.wait().await, Outcome::Delivered);
    }
}
