//! Admission control: at most `concurrency` executions at once, a bounded
//! queue in front of them, and an immediate "no" beyond that. The guards
//! that hold a slot or a place in the queue also keep the gauges and the
//! busy / queue-wait time counters ([`crate::metrics`]) true, however the
//! request ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Interval, Metrics};

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

/// A running execution's slot; frees it (and updates the gauges and the
/// busy time) on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _busy: Interval,
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
                // Dropped with the queue place, however the wait ends.
                let _waiting = inner.metrics.queue_wait();
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
            _busy: inner.metrics.slot_busy(),
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

    /// The value of an unlabelled series in `m`'s exposition.
    fn value(m: &Metrics, name: &str) -> f64 {
        let text = m.render();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    const BUSY: &str = crate::metrics::BUSY_SECONDS_TOTAL;
    const WAIT: &str = crate::metrics::QUEUE_WAIT_SECONDS_TOTAL;

    #[tokio::test(start_paused = true)]
    async fn busy_time_is_summed_over_slots_and_seen_before_a_slot_is_released() {
        let m = Metrics::new(&["python"]);
        let a = Admission::new(2, 0, Duration::from_secs(5), m.clone());
        let s1 = a.admit().await.unwrap();
        let s2 = a.admit().await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(s2);
        assert_eq!(value(&m, BUSY), 2.0, "1 s done on s2, 1 s so far on s1");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(value(&m, BUSY), 4.0, "s1 is still running, and seen");
        drop(s1);
        assert_eq!(
            value(&m, BUSY),
            4.0,
            "held 3 s and 1 s: 4 s, the release adds nothing seen"
        );
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(value(&m, BUSY), 4.0, "idle slots are not busy");
        assert_eq!(value(&m, WAIT), 0.0, "nobody queued");
    }

    #[tokio::test(start_paused = true)]
    async fn queue_wait_counts_admitted_timed_out_and_abandoned_waits() {
        let m = Metrics::new(&["python"]);
        let a = Admission::new(1, 4, Duration::from_secs(5), m.clone());
        let busy = a.admit().await.unwrap();

        // Admitted after 2 s in the queue.
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.admit().await.map(drop) }
        });
        while a.queued() == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(value(&m, WAIT), 2.0, "a waiting request is seen while it waits");
        drop(busy);
        waiter.await.unwrap().unwrap();
        assert_eq!(value(&m, WAIT), 2.0);
        assert_eq!(a.queued(), 0);

        // Timed out after the full 5 s.
        let busy = a.admit().await.unwrap();
        assert_eq!(a.admit().await.unwrap_err(), Rejected::QueueTimeout);
        assert_eq!(value(&m, WAIT), 7.0);

        // Abandoned by its client after 1 s.
        let abandoned = tokio::spawn({
            let a = a.clone();
            async move { a.admit().await.map(drop) }
        });
        while a.queued() == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        assert_eq!(a.queued(), 0);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            value(&m, WAIT),
            8.0,
            "the abandoned wait stops counting when it is dropped"
        );

        // A request refused because the queue is full waited for nothing.
        drop(busy);
        let full = Admission::new(1, 0, Duration::from_secs(5), m.clone());
        let _held = full.admit().await.unwrap();
        assert_eq!(full.admit().await.unwrap_err(), Rejected::QueueFull);
        assert_eq!(value(&m, WAIT), 8.0);
    }
}
