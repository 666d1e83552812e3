//! Admission control: at most `concurrency` executions at once, a bounded
//! queue in front of them, and an immediate "no" beyond that.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    slots: Arc<Semaphore>,
    concurrency: usize,
    queue_capacity: usize,
    queued: AtomicUsize,
    running: AtomicUsize,
    queue_timeout: Duration,
    metrics: Metrics,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("every execution slot is busy and the queue is full")]
    QueueFull,
    #[error("no execution slot became free in time")]
    QueueTimeout,
}

/// A running execution's slot; frees it (and updates the gauges) on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    inner: Arc<Inner>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let n = self.inner.running.fetch_sub(1, Ordering::SeqCst) - 1;
        self.inner.metrics.set_inflight(n);
    }
}

/// Counts a waiting request out of the queue on drop, whether it got a slot,
/// timed out, or its client went away.
struct Queued<'a>(&'a Inner);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let n = self.0.queued.fetch_sub(1, Ordering::SeqCst) - 1;
        self.0.metrics.set_queue_depth(n);
    }
}

impl Admission {
    pub fn new(concurrency: usize, queue_capacity: usize, queue_timeout: Duration, metrics: Metrics) -> Self {
        metrics.set_concurrency_limit(concurrency);
        metrics.set_inflight(0);
        metrics.set_queue_depth(0);
        Admission {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(concurrency)),
                concurrency,
                queue_capacity,
                queued: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                queue_timeout,
                metrics,
            }),
        }
    }

    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// Executions running now.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::SeqCst)
    }

    /// Takes a free slot, or waits in the queue for one if there is room.
    pub async fn admit(&self) -> Result<Slot, Rejected> {
        let inner = &self.inner;
        let permit = match Arc::clone(&inner.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let before = inner.queued.fetch_add(1, Ordering::SeqCst);
                let _queued = Queued(inner);
                if before >= inner.queue_capacity {
                    return Err(Rejected::QueueFull);
                }
                inner.metrics.set_queue_depth(before + 1);
                let wait = Arc::clone(&inner.slots).acquire_owned();
                match tokio::time::timeout(inner.queue_timeout, wait).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) | Err(_) => return Err(Rejected::QueueTimeout),
                }
            }
        };
        let n = inner.running.fetch_add(1, Ordering::SeqCst) + 1;
        inner.metrics.set_inflight(n);
        Ok(Slot {
            _permit: permit,
            inner: Arc::clone(inner),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn admits_up_to_concurrency_then_queues_then_rejects() {
        let a = Admission::new(2, 1, Duration::from_secs(5), Metrics::new(&["python"]));
        let s1 = a.admit().await.unwrap();
        let _s2 = a.admit().await.unwrap();
        assert_eq!(a.running(), 2);

        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.admit().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert_eq!(a.queued(), 1);
        assert_eq!(a.admit().await.unwrap_err(), Rejected::QueueFull);

        drop(s1);
        waiter.await.unwrap().unwrap();
        assert_eq!(a.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_request_times_out() {
        let a = Admission::new(1, 4, Duration::from_millis(100), Metrics::new(&["python"]));
        let _busy = a.admit().await.unwrap();
        assert_eq!(a.admit().await.unwrap_err(), Rejected::QueueTimeout);
        assert_eq!(a.queued(), 0);
    }
}
