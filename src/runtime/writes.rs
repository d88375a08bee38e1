//! Counting API writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::telemetry::Metrics;

/// Counts API writes, so a reconcile that changes nothing can be seen to write nothing (in the
/// log per reconcile, and in `sluice_api_writes_total`).
#[derive(Clone)]
pub struct WriteCounter(Arc<AtomicU64>, Arc<Metrics>);

impl WriteCounter {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        WriteCounter(Arc::default(), metrics)
    }
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
        self.1.api_writes.inc();
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
