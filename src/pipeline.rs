//! The pipeline: builds sources and sinks from the config and runs them (stub).

use crate::ack::{ack_set, AckWaiter};
use crate::event::Batch;
use crate::sinks::SinkBatch;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A source's handle on the sinks of its route.
///
/// `send` hands the batch to every sink's bounded queue (waiting while a queue is full:
/// this is the backpressure of DESIGN invariant 3) and returns the waiter that resolves
/// when every sink has reported on the batch.
#[derive(Clone)]
pub struct Route {
    sinks: Vec<mpsc::Sender<SinkBatch>>,
}

/// Every sink of the route has stopped; nothing more can be delivered.
#[derive(Debug, thiserror::Error)]
#[error("the sinks of this route have stopped")]
pub struct RouteClosed;

impl Route {
    pub fn new(sinks: Vec<mpsc::Sender<SinkBatch>>) -> Self {
        Route { sinks }
    }

    pub async fn send(&self, batch: Batch) -> Result<AckWaiter, RouteClosed> {
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
