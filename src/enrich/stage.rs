//! The enrichment stage of the pipeline: between the source and the sink, it fills each
//! batch's enrichment and passes every message on in the order it came.
//!
//! Up to [`MAX_BATCHES_IN_FLIGHT`] batches are enriched at once (an ordered queue of futures),
//! each with its lookups running concurrently; a batch leaves only after all before it, so
//! rows keep log order while a slow lookup holds back only what follows it. The channel
//! bounds on both sides keep memory flat.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::mpsc;

use super::Enricher;
use crate::pipeline::ToSink;

/// Batches being enriched at once.
pub const MAX_BATCHES_IN_FLIGHT: usize = 64;

/// Runs until the input closes and everything is passed on; dropping `output` then tells the
/// sink the input ended.
pub async fn run(
    enricher: Arc<Enricher>,
    mut input: mpsc::Receiver<ToSink>,
    output: mpsc::Sender<ToSink>,
) {
    let mut in_flight = FuturesOrdered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some(msg) = in_flight.next(), if !in_flight.is_empty() => {
                if output.send(msg).await.is_err() {
                    return;
                }
            }
            msg = input.recv(), if open && in_flight.len() < MAX_BATCHES_IN_FLIGHT => match msg {
                Some(msg) => in_flight.push_back(enrich_message(enricher.clone(), msg)),
                None => open = false,
            },
            else => break,
        }
    }
}

async fn enrich_message(enricher: Arc<Enricher>, msg: ToSink) -> ToSink {
    match msg {
        ToSink::Batch(mut batch) => {
            let lookups = batch.events.rows_iter().map(|f| enricher.enrich(f.ip));
            batch.enrichment = futures::future::join_all(lookups).await;
            ToSink::Batch(batch)
        }
        other => other,
    }
}
