//! The contract between sources and sinks: a source hands each [`Batch`] to its
//! [`Route`], which puts one [`SinkBatch`] on the bounded queue of every sink of the
//! route and returns the [`AckWaiter`] that resolves once every sink has reported on it
//! (`crate::ack`). Sources import this module and sinks import this module; neither
//! imports the other, and the pipeline only wires them together.

use crate::ack::{ack_set, AckToken, AckWaiter};
use crate::event::Batch;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One batch on its way to one sink.
#[derive(Debug)]
pub struct SinkBatch {
    pub batch: Arc<Batch>,
    pub ack: AckToken,
}

/// A source's handle on the sinks of its route.
///
/// `send` hands the batch to every sink's bounded queue (waiting while a queue is full:
/// this is the backpressure of ARCHITECTURE.md invariant 3) and returns the waiter that resolves
/// when every sink has reported on the batch.
#[derive(Clone)]
pub struct Route {
    sinks: Vec<mpsc::Sender<SinkBatch>>,
    /// Test builds: panic in `send`, once, to prove that source panics are supervised.
    #[cfg(test)]
    panic_once: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Every sink of the route has stopped; nothing more can be delivered.
#[derive(Debug, thiserror::Error)]
#[error("the sinks of this route have stopped")]
pub struct RouteClosed;

impl Route {
    pub fn new(sinks: Vec<mpsc::Sender<SinkBatch>>) -> Self {
        Route {
            sinks,
            #[cfg(test)]
            panic_once: None,
        }
    }

    /// Test builds: the next `send` panics, once.
    #[cfg(test)]
    pub(crate) fn panicking_once(self) -> Self {
        Route {
            panic_once: Some(Arc::new(std::sync::atomic::AtomicBool::new(true))),
            ..self
        }
    }

    pub async fn send(&self, batch: Batch) -> Result<AckWaiter, RouteClosed> {
        #[cfg(test)]
        if let Some(armed) = &self.panic_once {
            if armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                panic!("injected source panic (test build)");
            }
        }
        let batch = Arc::new(batch);
        let (tokens, waiter) = ack_set(self.sinks.len());
        for (tx, ack) in self.sinks.iter().zip(tokens) {
            tx.send(SinkBatch {
                batch: batch.clone(),
                ack,
            })
            .await
            .map_err(|_| RouteClosed)?;
        }
        Ok(waiter)
    }
}
