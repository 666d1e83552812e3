//! Limits at the door, before any executor is involved: a per-client-IP
//! token bucket and an overall cap on requests in flight.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Buckets kept before idle (full) ones are forgotten.
const MAX_TRACKED_CLIENTS: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    rate_per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `rate_per_sec` tokens refill each second, up to `burst`.
    pub fn new(rate_per_sec: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate_per_sec,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip`, or says how many seconds until one is free.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_CLIENTS {
            let (rate, burst) = (self.rate_per_sec, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.rate_per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate_per_sec;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// At most `limit` requests in flight through the gateway.
#[derive(Debug, Clone)]
pub struct ConcurrencyCap {
    slots: Arc<Semaphore>,
}

impl ConcurrencyCap {
    pub fn new(limit: usize) -> ConcurrencyCap {
        ConcurrencyCap {
            slots: Arc::new(Semaphore::new(limit.max(1))),
        }
    }

    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_a_burst_then_refills() {
        let rl = RateLimiter::new(2.0, 3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(rl.check(ip).is_ok());
        }
        assert_eq!(rl.check(ip), Err(1));
        assert!(rl.check(other).is_ok(), "buckets are per client");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(rl.check(ip).is_ok());
        assert!(rl.check(ip).is_err());
    }

    #[test]
    fn cap_admits_up_to_the_limit() {
        let cap = ConcurrencyCap::new(2);
        let a = cap.try_enter().unwrap();
        let _b = cap.try_enter().unwrap();
        assert!(cap.try_enter().is_none());
        drop(a);
        assert!(cap.try_enter().is_some());
    }
}
