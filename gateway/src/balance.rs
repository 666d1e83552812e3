//! Choosing a backend: round robin (an atomic counter over the ready set) or
//! least in-flight (the better of two random picks, "power of two choices").

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::ValueEnum;

use crate::discover::Backend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Each ready executor in turn: k·n requests give each of k executors n.
    RoundRobin,
    /// Of two random ready executors, the one with fewer requests in flight.
    LeastInflight,
}

#[derive(Debug)]
pub struct Balancer {
    strategy: Strategy,
    next: AtomicUsize,
}

impl Balancer {
    pub fn new(strategy: Strategy) -> Balancer {
        Balancer {
            strategy,
            next: AtomicUsize::new(0),
        }
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Picks from `ready`, skipping backends whose key is in `tried`.
    pub fn pick(&self, ready: &[Arc<Backend>], tried: &[&str]) -> Option<Arc<Backend>> {
        let candidates: Vec<&Arc<Backend>> = ready
            .iter()
            .filter(|b| !tried.contains(&b.key.as_str()))
            .collect();
        match (candidates.len(), self.strategy) {
            (0, _) => None,
            (1, _) => Some(Arc::clone(candidates[0])),
            (n, Strategy::RoundRobin) => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
                Some(Arc::clone(candidates[i]))
            }
            (n, Strategy::LeastInflight) => {
                // Two distinct random picks (fastrand's thread-local generator).
                let a = fastrand::usize(..n);
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                let (x, y) = (candidates[a], candidates[b]);
                Some(Arc::clone(if y.inflight() < x.inflight() { y } else { x }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::Target;

    fn backends(n: usize) -> Vec<Arc<Backend>> {
        (0..n)
            .map(|i| {
                let uri = format!("http://10.0.0.{i}:8080/").parse().unwrap();
                Arc::new(Backend::new(format!("b{i}"), format!("b{i}"), Target::Http(uri)))
            })
            .collect()
    }

    #[test]
    fn round_robin_is_exact() {
        let set = backends(3);
        let lb = Balancer::new(Strategy::RoundRobin);
        let mut counts = [0; 3];
        for _ in 0..300 {
            let b = lb.pick(&set, &[]).unwrap();
            counts[set.iter().position(|x| Arc::ptr_eq(x, &b)).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn tried_backends_are_skipped() {
        let set = backends(2);
        for strategy in [Strategy::RoundRobin, Strategy::LeastInflight] {
            let lb = Balancer::new(strategy);
            for _ in 0..10 {
                assert_eq!(lb.pick(&set, &["b0"]).unwrap().key, "b1");
            }
            assert!(lb.pick(&set, &["b0", "b1"]).is_none());
        }
        assert!(Balancer::new(Strategy::RoundRobin).pick(&[], &[]).is_none());
    }

    #[test]
    fn least_inflight_avoids_the_busy_backend() {
        let set = backends(2);
        let _busy: Vec<_> = (0..5).map(|_| set[0].begin()).collect();
        let lb = Balancer::new(Strategy::LeastInflight);
        for _ in 0..50 {
            assert_eq!(lb.pick(&set, &[]).unwrap().key, "b1");
        }
    }

    #[test]
    fn least_inflight_spreads_when_idle() {
        let set = backends(4);
        let lb = Balancer::new(Strategy::LeastInflight);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(lb.pick(&set, &[]).unwrap().key.clone());
        }
        assert_eq!(seen.len(), 4);
    }
}
