//! Limits at the door, before any executor is involved, as layers over the
//! API routes (outermost first): a draining gateway refuses new requests, a
//! per-client-IP token bucket (`governor`), the concurrency cap with load
//! shedding (tower's `GlobalConcurrencyLimit` + `LoadShed`), and the body
//! limit (axum's `DefaultBodyLimit`, answered by the body extractor).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Governor};
use runbox_api::server::BodyLimit;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::rescue::{self, GatewayError};

/// How often buckets that are full again (idle clients) are forgotten.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);

type Buckets<C> = Governor<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A token bucket per client IP: `burst` requests at once, refilled at
/// `rate_per_sec`. Memory stays bounded: buckets that have refilled are
/// dropped every [`HOUSEKEEPING_INTERVAL`] (governor's `retain_recent`).
#[derive(Debug)]
pub struct RateLimiter<C: Clock = DefaultClock> {
    buckets: Arc<Buckets<C>>,
    housekeeping: Option<JoinHandle<()>>,
}

impl RateLimiter {
    /// A limiter on the real clock whose housekeeping runs as a task (call
    /// inside a tokio runtime). `rate_per_sec` must be positive and finite.
    pub fn new(rate_per_sec: f64, burst: u32) -> Result<RateLimiter, String> {
        let mut limiter = RateLimiter::with_clock(rate_per_sec, burst, DefaultClock::default())?;
        let buckets = Arc::clone(&limiter.buckets);
        limiter.housekeeping = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                housekeep(&buckets);
            }
        }));
        Ok(limiter)
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter on `clock`, without the housekeeping task (see
    /// [`RateLimiter::housekeep`]).
    pub fn with_clock(rate_per_sec: f64, burst: u32, clock: C) -> Result<RateLimiter<C>, String> {
        let bad =
            || format!("the rate limit must be a positive number of requests per second, not {rate_per_sec}");
        if !(rate_per_sec.is_finite() && rate_per_sec > 0.0) {
            return Err(bad());
        }
        let period = Duration::try_from_secs_f64(1.0 / rate_per_sec).map_err(|_| bad())?;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period).ok_or_else(bad)?.allow_burst(burst);
        Ok(RateLimiter {
            buckets: Arc::new(Governor::dashmap_with_clock(quota, clock)),
            housekeeping: None,
        })
    }

    /// Takes a token for `ip`, or says how many whole seconds (at least 1)
    /// until one is free.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.buckets.check_key(&ip.to_canonical()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.buckets.clock().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }

    /// Forgets the clients whose bucket is full again.
    pub fn housekeep(&self) {
        housekeep(&self.buckets);
    }

    /// Clients with a bucket in memory now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

fn housekeep<C: Clock>(buckets: &Buckets<C>) {
    buckets.retain_recent();
    buckets.shrink_to_fit();
}

impl<C: Clock> Drop for RateLimiter<C> {
    fn drop(&mut self) {
        if let Some(task) = &self.housekeeping {
            task.abort();
        }
    }
}

/// What the door's layers share.
#[derive(Debug)]
pub struct Door {
    draining: AtomicBool,
    rate: Option<RateLimiter>,
    slots: Arc<Semaphore>,
    max_body_bytes: usize,
}

impl Door {
    pub fn new(rate: Option<RateLimiter>, max_concurrency: usize, max_body_bytes: usize) -> Door {
        Door {
            draining: AtomicBool::new(false),
            rate,
            slots: Arc::new(Semaphore::new(max_concurrency.max(1))),
            max_body_bytes,
        }
    }

    /// From now on new requests get 503 `shutting_down`.
    pub fn close(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Wraps the API routes in the door's layers.
pub fn layers<S: Clone + Send + Sync + 'static>(routes: Router<S>, door: &Arc<Door>) -> Router<S> {
    let shed = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(rescue::layer_error))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(Arc::clone(
            &door.slots,
        )));
    routes
        .layer(axum::Extension(BodyLimit(door.max_body_bytes)))
        .layer(DefaultBodyLimit::max(door.max_body_bytes))
        .layer(shed)
        .layer(middleware::from_fn_with_state(Arc::clone(door), admit))
}

/// Draining and the per-client rate limit (clients are known by the peer
/// address of the connection; a request without one, as in a `oneshot`
/// test, is not rate limited).
async fn admit(State(door): State<Arc<Door>>, request: Request, next: Next) -> Response {
    if door.is_closed() {
        return GatewayError::ShuttingDown.into_response();
    }
    if let (Some(rate), Some(ConnectInfo(peer))) =
        (&door.rate, request.extensions().get::<ConnectInfo<SocketAddr>>())
        && let Err(retry_after_secs) = rate.check(peer.ip())
    {
        return GatewayError::RateLimited { retry_after_secs }.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(rate: f64, burst: u32) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            RateLimiter::with_clock(rate, burst, clock.clone()).unwrap(),
            clock,
        )
    }

    #[test]
    fn bucket_allows_a_burst_then_refills() {
        let (rl, clock) = limiter(2.0, 3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(rl.check(ip).is_ok());
        }
        assert_eq!(rl.check(ip), Err(1), "0.5 s to the next token, rounded up");
        assert!(rl.check(other).is_ok(), "buckets are per client");
        clock.advance(Duration::from_millis(499));
        assert!(rl.check(ip).is_err(), "just under the refill");
        clock.advance(Duration::from_millis(1));
        assert!(rl.check(ip).is_ok(), "at the refill");
        assert!(rl.check(ip).is_err());
    }

    #[test]
    fn retry_after_counts_whole_seconds_to_the_next_token() {
        let (rl, clock) = limiter(0.25, 1);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(rl.check(ip).is_ok());
        assert_eq!(rl.check(ip), Err(4));
        clock.advance(Duration::from_millis(2500));
        assert_eq!(rl.check(ip), Err(2), "1.5 s left");
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_same_client() {
        let (rl, _clock) = limiter(1.0, 1);
        assert!(rl.check("192.0.2.1".parse().unwrap()).is_ok());
        assert!(rl.check("::ffff:192.0.2.1".parse().unwrap()).is_err());
    }

    #[test]
    fn housekeeping_forgets_clients_whose_bucket_refilled() {
        let (rl, clock) = limiter(10.0, 2);
        for i in 0..100u8 {
            assert!(rl.check(IpAddr::from([10, 0, 0, i])).is_ok());
        }
        let busy = IpAddr::from([10, 0, 1, 1]);
        assert!(rl.check(busy).is_ok());
        assert_eq!(rl.tracked(), 101);
        // governor forgets a bucket one period after it refilled: the ones
        // used once at 0 refilled at 100 ms and go at 200 ms; `busy` spends
        // both its tokens then, so its bucket is not full.
        clock.advance(Duration::from_millis(200));
        assert!(rl.check(busy).is_ok());
        assert!(rl.check(busy).is_ok());
        rl.housekeep();
        assert_eq!(rl.tracked(), 1, "only the client still short of tokens is kept");
        assert!(rl.check(busy).is_err(), "and its state is intact");
    }

    #[test]
    fn nonsense_rates_are_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert!(
                RateLimiter::with_clock(rate, 1, FakeRelativeClock::default()).is_err(),
                "{rate}"
            );
        }
    }
}
