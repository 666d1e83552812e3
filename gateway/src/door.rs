//! Limits at the door, before any executor is involved, as layers over the
//! API routes (outermost first): `admit` refuses new requests while the
//! gateway drains, names the client ([`client`]: the peer, or what a trusted
//! proxy says) and applies its requests/s token bucket (`governor`); the body
//! is buffered; `fair_share` holds each client to its runs in flight and its
//! execution-time budget ([`fair`]); then the concurrency cap with
//! load shedding (tower's `GlobalConcurrencyLimit` + `LoadShed`), and the
//! body limit (axum's `DefaultBodyLimit`, answered by the body extractor).

pub mod client;
pub mod fair;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Governor};
use runbox_api::server::{self, BodyBuffer, BodyLimit};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

pub use self::client::{ClientKey, TrustedProxies};
pub use self::fair::{Fairness, FairnessConfig, Refusal, Ticket};
use crate::metrics::{ClientLimit, Metrics};
use crate::rescue::{self, GatewayError};

/// How often buckets that are full again (idle clients) are forgotten.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);

type Buckets<C> = Governor<ClientKey, DashMapStateStore<ClientKey>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A token bucket per client ([`ClientKey`]): `burst` requests at once, refilled at
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

    /// Takes a token for `client`, or says how many whole seconds (at least 1)
    /// until one is free.
    pub fn check(&self, client: impl Into<ClientKey>) -> Result<(), u64> {
        self.buckets.check_key(&client.into()).map_err(|not_until| {
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
    trusted: TrustedProxies,
    rate: Option<RateLimiter>,
    fairness: Fairness,
    slots: Arc<Semaphore>,
    max_body_bytes: usize,
    metrics: Option<Metrics>,
}

impl Door {
    /// A door trusting no proxy, without per-client fairness (see
    /// [`Door::trusting`], [`Door::fair`]) or metrics ([`Door::counting`]).
    pub fn new(rate: Option<RateLimiter>, max_concurrency: usize, max_body_bytes: usize) -> Door {
        Door {
            draining: AtomicBool::new(false),
            trusted: TrustedProxies::none(),
            rate,
            fairness: Fairness::off(),
            slots: Arc::new(Semaphore::new(max_concurrency.max(1))),
            max_body_bytes,
            metrics: None,
        }
    }

    /// Believes the forwarding headers of peers in `trusted`.
    pub fn trusting(self, trusted: TrustedProxies) -> Door {
        Door { trusted, ..self }
    }

    /// Holds each client to `fairness`.
    pub fn fair(self, fairness: Fairness) -> Door {
        Door { fairness, ..self }
    }

    /// Counts per-client refusals in `metrics`.
    pub fn counting(self, metrics: Metrics) -> Door {
        Door {
            metrics: Some(metrics),
            ..self
        }
    }

    pub fn fairness(&self) -> &Fairness {
        &self.fairness
    }

    fn refused(&self, limit: ClientLimit) {
        if let Some(m) = &self.metrics {
            m.client_refused(limit);
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

/// Wraps the API routes in the door's layers; `buffer` reads each body
/// whole (deadline, memory budget) after `admit` and before any permit.
pub fn layers<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    door: &Arc<Door>,
    buffer: Option<BodyBuffer>,
) -> Router<S> {
    let shed = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(rescue::layer_error))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(Arc::clone(
            &door.slots,
        )));
    let routes = routes
        .layer(axum::Extension(BodyLimit(door.max_body_bytes)))
        .layer(DefaultBodyLimit::max(door.max_body_bytes))
        .layer(shed)
        .layer(middleware::from_fn_with_state(Arc::clone(door), fair_share));
    let routes = match buffer {
        Some(buffer) => routes.layer(middleware::from_fn_with_state(buffer, server::buffer_body)),
        None => routes,
    };
    routes.layer(middleware::from_fn_with_state(Arc::clone(door), admit))
}

/// Draining, then the client's [`ClientKey`] (from the peer address of the
/// connection and, behind a trusted proxy, its forwarding headers; put in
/// the request's extensions for the layers inside) and its requests/s
/// limit. A request without a peer address, as in a `oneshot` test, has no
/// key and no per-client limits.
async fn admit(State(door): State<Arc<Door>>, mut request: Request, next: Next) -> Response {
    if door.is_closed() {
        return GatewayError::ShuttingDown.into_response();
    }
    let key = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| door.trusted.client_key(peer.ip(), request.headers()));
    if let Some(key) = key {
        if let Some(rate) = &door.rate
            && let Err(retry_after_secs) = rate.check(key)
        {
            door.refused(ClientLimit::Requests);
            return GatewayError::RateLimited { retry_after_secs }.into_response();
        }
        request.extensions_mut().insert(key);
        // The body buffer charges the client's share of its budget to this
        // address too (behind a trusted proxy, the client's, not the proxy's).
        request.extensions_mut().insert(server::ClientAddr(key.ip()));
    }
    next.run(request).await
}

/// Per-client fairness for `POST /execute` (nothing else is charged): the
/// run is charged its `limits.timeout_ms` (else the default charge) against
/// the client's budget and takes one of its in-flight slots, or is refused
/// with 429 `rate_limited`. The slot is held until the answer is back (or
/// the request is dropped: a client that hangs up frees it and keeps paying
/// the whole charge); what the run did not use comes back then.
///
/// What came back decides the refund: a run's result gives back all but its
/// `duration_ms`; a 4xx or 503 (nothing ran: malformed, refused, busy, no
/// executor) gives back everything; a 502, 504 or 500 (the run may have
/// happened, for an unknown time) and a result without a duration give back
/// nothing.
async fn fair_share(State(door): State<Arc<Door>>, request: Request, next: Next) -> Response {
    let charged = request.method() == Method::POST
        && request.uri().path() == "/execute"
        && !door.fairness.config().is_off();
    let key = request.extensions().get::<ClientKey>().copied();
    let (Some(key), true) = (key, charged) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, door.max_body_bytes).await {
        Ok(body) => body,
        Err(error) => return rescue::unreadable_body(&error, door.max_body_bytes).into_response(),
    };
    let charge = door.fairness.config().charge(requested_timeout_ms(&body));
    let ticket = match door.fairness.admit(key, charge) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            door.refused(match refusal {
                Refusal::InFlight { .. } => ClientLimit::InFlight,
                Refusal::Budget { .. } => ClientLimit::Budget,
            });
            tracing::debug!(client = %key, ?refusal, "refused by per-client fairness");
            return GatewayError::from(refusal).into_response();
        }
    };
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let status = response.status();
    if status == StatusCode::OK {
        // The answer is in memory already (the forwarder reads it whole).
        let (parts, body) = response.into_parts();
        return match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => {
                if let Some(used) = run_duration(&bytes) {
                    ticket.used(used);
                }
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(_) => GatewayError::UpstreamFailed.into_response(),
        };
    }
    if status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE {
        ticket.nothing_ran();
    }
    response
}

/// `limits.timeout_ms` of an execute request, if it has a usable one; the
/// rest of the body is not looked at (the executor parses and judges it).
fn requested_timeout_ms(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Peek {
        limits: Option<PeekLimits>,
    }
    #[derive(serde::Deserialize)]
    struct PeekLimits {
        timeout_ms: Option<f64>,
    }
    let ms = serde_json::from_slice::<Peek>(body).ok()?.limits?.timeout_ms?;
    // Whole numbers ≥ 1 as the contract takes them (`as` saturates).
    (ms.is_finite() && ms >= 1.0 && ms.fract() == 0.0).then_some(ms as u64)
}

/// `duration_ms` of a run's result.
fn run_duration(body: &[u8]) -> Option<Duration> {
    #[derive(serde::Deserialize)]
    struct Ran {
        duration_ms: f64,
    }
    let ms = serde_json::from_slice::<Ran>(body).ok()?.duration_ms;
    Duration::try_from_secs_f64(ms / 1000.0).ok()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(rate: f64, burst: u32) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            RateLimiter::with_clock(rate, burst, clock.clone()).unwrap(),
            clock,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
        assert!(rl.check(ip("192.0.2.1")).is_ok());
        assert!(rl.check(ip("::ffff:192.0.2.1")).is_err());
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let (rl, _clock) = limiter(1.0, 1);
        assert!(rl.check(ip("2001:db8:0:1::1")).is_ok());
        assert!(rl.check(ip("2001:db8:0:1:ffff::2")).is_err(), "same /64");
        assert!(rl.check(ip("2001:db8:0:2::1")).is_ok(), "the next /64");
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

    /// The door's layers over stand-in routes: `POST /execute` answers as
    /// its `x-answer` header says (`ok:<duration_ms>`, `ok` without a
    /// duration, `hold` until released, or a status code), echoing the body
    /// length as `x-body-len`; `GET /runtimes` answers 200.
    struct Harness {
        door: Arc<Door>,
        app: Router,
        arrived: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<()>>,
        release: Arc<Semaphore>,
    }

    impl Harness {
        fn new(fairness: FairnessConfig) -> Harness {
            Harness::with(Door::new(None, 64, 1 << 10).fair(Fairness::manual(fairness).unwrap()))
        }

        fn with(door: Door) -> Harness {
            let door = Arc::new(door.counting(Metrics::new()));
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let release = Arc::new(Semaphore::new(0));
            let hold = Arc::clone(&release);
            let execute = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (tx, hold) = (tx.clone(), Arc::clone(&hold));
                async move {
                    let answer = headers
                        .get("x-answer")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("ok:0")
                        .to_owned();
                    let len = [("x-body-len", body.len().to_string())];
                    if answer == "hold" {
                        let _ = tx.send(());
                        hold.acquire().await.unwrap().forget();
                        return (len, r#"{"duration_ms": 0.0}"#.to_owned()).into_response();
                    }
                    if answer == "ok" {
                        return (len, r#"{"status": "ok"}"#.to_owned()).into_response();
                    }
                    if let Some(ms) = answer.strip_prefix("ok:") {
                        let json = format!(r#"{{"id": "x", "stdout": "", "duration_ms": {ms}}}"#);
                        return (len, json).into_response();
                    }
                    let status = StatusCode::from_u16(answer.parse().unwrap()).unwrap();
                    (status, len, "{}").into_response()
                }
            };
            let routes = Router::new()
                .route("/execute", axum::routing::post(execute))
                .route("/runtimes", axum::routing::get(|| async { "{}" }));
            Harness {
                app: layers(routes, &door, None),
                door,
                arrived: tokio::sync::Mutex::new(rx),
                release,
            }
        }

        fn fairness(&self) -> &Fairness {
            self.door.fairness()
        }

        fn send(&self, request: Request) -> tokio::task::JoinHandle<Response> {
            let app = self.app.clone();
            tokio::spawn(async move { tower::ServiceExt::oneshot(app, request).await.unwrap() })
        }

        async fn call(&self, request: Request) -> Response {
            self.send(request).await.unwrap()
        }

        /// Waits until a `hold` request has reached the stand-in handler.
        async fn arrival(&self) {
            self.arrived.lock().await.recv().await.unwrap();
        }

        fn refusals(&self, limit: &str) -> Option<f64> {
            let text = self.door.metrics.as_ref().unwrap().render();
            let series = format!("gateway_client_refusals_total{{limit=\"{limit}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse().ok())
        }
    }

    fn fairness(max_inflight: usize, budget_seconds: f64, budget_rate: f64) -> FairnessConfig {
        FairnessConfig {
            max_inflight,
            budget_seconds,
            budget_rate,
            default_charge: Duration::from_secs(5),
            max_charge: Duration::from_secs(30),
        }
    }

    /// `POST /execute` from `peer` with `body`, answered as `answer` says.
    fn execute(peer: &str, body: &str, answer: &str) -> Request {
        let mut request = Request::post("/execute")
            .header("content-type", "application/json")
            .header("x-answer", answer)
            .body(Body::from(body.to_owned()))
            .unwrap();
        let peer: SocketAddr = (ip(peer), 40000).into();
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    }

    fn timeout(ms: u64) -> String {
        format!(r#"{{"code": "print(1)", "limits": {{"timeout_ms": {ms}}}}}"#)
    }

    fn client(s: &str) -> ClientKey {
        ClientKey::of(ip(s))
    }

    async fn expect_rate_limited(response: Response, retry_after: &str) -> String {
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], retry_after);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: runbox_api::ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body.error.code, runbox_api::ErrorCode::RateLimited);
        body.error.message
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_is_charged_its_timeout_and_given_back_what_it_did_not_use() {
        let h = Harness::new(fairness(0, 10.0, 1.0));
        let a = client("192.0.2.1");
        let body = timeout(4000);
        let r = h.call(execute("192.0.2.1", &body, "ok:500")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-body-len"],
            body.len().to_string(),
            "the body got through whole"
        );
        assert!(
            close(h.fairness().available(a), 9.5),
            "{}",
            h.fairness().available(a)
        );
        // No timeout_ms: the default charge; an answer without a duration keeps it all.
        let r = h.call(execute("192.0.2.1", r#"{"code": ""}"#, "ok")).await;
        assert_eq!(r.status(), 200);
        assert!(
            close(h.fairness().available(a), 4.5),
            "{}",
            h.fairness().available(a)
        );
        // A timeout over the longest run is charged the longest run, cut to the burst.
        let held = h.send(execute("192.0.2.9", &timeout(600_000), "hold"));
        h.arrival().await;
        assert!(close(h.fairness().available(client("192.0.2.9")), 0.0));
        h.release.add_permits(1);
        assert_eq!(held.await.unwrap().status(), 200);
        // GET /runtimes is never charged, nor refused.
        for _ in 0..20 {
            let mut get = Request::get("/runtimes").body(Body::empty()).unwrap();
            get.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 1))));
            assert_eq!(h.call(get).await.status(), 200);
        }
        assert!(close(h.fairness().available(a), 4.5));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_that_ran_nothing_cost_nothing_and_uncertain_ones_cost_all() {
        let h = Harness::new(fairness(0, 10.0, 1.0));
        let a = client("192.0.2.1");
        for answer in ["400", "413", "422", "429", "503"] {
            let r = h.call(execute("192.0.2.1", &timeout(3000), answer)).await;
            assert_eq!(r.status().as_str(), answer);
            assert!(close(h.fairness().available(a), 10.0), "{answer}");
        }
        // Not JSON: charged the default, and the executor's 400 gives it back.
        let r = h.call(execute("192.0.2.1", "{", "400")).await;
        assert_eq!(r.status(), 400);
        assert!(close(h.fairness().available(a), 10.0));
        for (answer, left) in [("502", 7.0), ("504", 4.0), ("500", 1.0)] {
            h.call(execute("192.0.2.1", &timeout(3000), answer)).await;
            assert!(close(h.fairness().available(a), left), "{answer}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn over_budget_is_429_with_the_seconds_until_the_charge_fits() {
        let h = Harness::new(fairness(0, 10.0, 2.0));
        let r = h.call(execute("192.0.2.1", &timeout(8000), "ok:8000")).await;
        assert_eq!(r.status(), 200);
        let r = h.call(execute("192.0.2.1", &timeout(8000), "ok:1")).await;
        let message = expect_rate_limited(r, "3").await;
        assert!(message.contains("budget"), "{message}");
        assert_eq!(h.refusals("budget"), Some(1.0));
        let other = h.call(execute("192.0.2.2", &timeout(8000), "ok:1")).await;
        assert_eq!(other.status(), 200, "another client has its own budget");
        tokio::time::advance(Duration::from_secs(3)).await;
        let r = h.call(execute("192.0.2.1", &timeout(8000), "ok:1")).await;
        assert_eq!(r.status(), 200, "refilled as Retry-After said");
    }

    #[tokio::test(start_paused = true)]
    async fn past_its_inflight_cap_a_client_gets_429_and_others_are_served() {
        let h = Harness::new(fairness(1, 0.0, 0.0));
        let first = h.send(execute("192.0.2.1", &timeout(1000), "hold"));
        h.arrival().await;
        let r = h.call(execute("192.0.2.1", &timeout(1000), "ok:1")).await;
        let message = expect_rate_limited(r, "1").await;
        assert!(message.contains("in flight"), "{message}");
        assert_eq!(h.refusals("inflight"), Some(1.0));
        let other = h.call(execute("192.0.2.2", &timeout(1000), "ok:1")).await;
        assert_eq!(other.status(), 200);
        h.release.add_permits(1);
        assert_eq!(first.await.unwrap().status(), 200);
        assert_eq!(h.fairness().inflight(client("192.0.2.1")), 0);
        let again = h.call(execute("192.0.2.1", &timeout(1000), "ok:1")).await;
        assert_eq!(again.status(), 200, "the slot came back");
        assert_eq!(h.fairness().tracked(), 0, "nothing held for idle clients");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_hangs_up_mid_run_frees_its_slot_and_pays_its_charge() {
        let h = Harness::new(fairness(1, 10.0, 1.0));
        let a = client("192.0.2.1");
        let call = h.send(execute("192.0.2.1", &timeout(3000), "hold"));
        h.arrival().await;
        assert_eq!(h.fairness().inflight(a), 1);
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        assert_eq!(h.fairness().inflight(a), 0, "the slot is not leaked");
        assert!(
            close(h.fairness().available(a), 7.0),
            "hanging up does not refund"
        );
        let r = h.call(execute("192.0.2.1", &timeout(3000), "ok:1")).await;
        assert_eq!(r.status(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn fairness_follows_the_client_a_trusted_proxy_names() {
        let trusted = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
        let door = Door::new(None, 64, 1 << 10)
            .trusting(trusted)
            .fair(Fairness::manual(fairness(1, 0.0, 0.0)).unwrap());
        let h = Harness::with(door);
        let via = |peer: &str, xff: &str, answer: &str| {
            let mut r = execute(peer, &timeout(1000), answer);
            r.headers_mut().insert("x-forwarded-for", xff.parse().unwrap());
            r
        };
        let held = h.send(via("10.0.0.1", "203.0.113.1", "hold"));
        h.arrival().await;
        assert_eq!(h.fairness().inflight(client("203.0.113.1")), 1);
        // Another client behind the same proxy is served...
        let r = h.call(via("10.0.0.1", "203.0.113.2", "ok:1")).await;
        assert_eq!(r.status(), 200);
        // ...the same one, through another proxy hop, is not.
        let r = h.call(via("10.0.0.2", "203.0.113.1, 10.0.0.1", "ok:1")).await;
        expect_rate_limited(r, "1").await;
        // An untrusted peer cannot borrow another client's name, nor dodge its own.
        let spoofing = h.send(via("198.51.100.1", "203.0.113.3", "hold"));
        h.arrival().await;
        let r = h.call(via("198.51.100.1", "203.0.113.4", "ok:1")).await;
        expect_rate_limited(r, "1").await;
        h.release.add_permits(2);
        assert_eq!(held.await.unwrap().status(), 200);
        assert_eq!(spoofing.await.unwrap().status(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_peer_address_nothing_is_charged() {
        let h = Harness::new(fairness(1, 10.0, 1.0));
        let mut calls = Vec::new();
        for _ in 0..3 {
            let mut request = execute("192.0.2.1", &timeout(9000), "hold");
            request.extensions_mut().remove::<ConnectInfo<SocketAddr>>();
            calls.push(h.send(request));
            h.arrival().await;
        }
        assert_eq!(h.fairness().tracked(), 0);
        h.release.add_permits(3);
        for call in calls {
            assert_eq!(call.await.unwrap().status(), 200);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_the_door_cannot_read_whole_is_413_and_uncharged() {
        let h = Harness::new(fairness(1, 10.0, 1.0));
        let big = format!(r#"{{"code": "{}"}}"#, "x".repeat(2 << 10));
        let r = h.call(execute("192.0.2.1", &big, "ok:1")).await;
        assert_eq!(r.status(), 413);
        assert_eq!(h.fairness().tracked(), 0);
    }

    #[test]
    fn the_charge_reads_only_a_usable_timeout() {
        for (body, want) in [
            (r#"{"code": "", "limits": {"timeout_ms": 1500}}"#, Some(1500)),
            (
                r#"{"limits": {"timeout_ms": 2e3, "fuel": 5}, "x": [1, {"y": null}]}"#,
                Some(2000),
            ),
            (r#"{"limits": {"timeout_ms": 0}}"#, None),
            (r#"{"limits": {"timeout_ms": -5}}"#, None),
            (r#"{"limits": {"timeout_ms": 1.5}}"#, None),
            (r#"{"limits": {"timeout_ms": "9"}}"#, None),
            (r#"{"limits": {"timeout_ms": 1e400}}"#, None),
            (r#"{"limits": {"timeout_ms": null}}"#, None),
            (r#"{"limits": null}"#, None),
            (r#"{"limits": 7}"#, None),
            (r#"{"code": ""}"#, None),
            (r#"[1, 2]"#, None),
            ("{", None),
            ("", None),
        ] {
            assert_eq!(requested_timeout_ms(body.as_bytes()), want, "{body}");
        }
        assert_eq!(
            requested_timeout_ms(br#"{"limits": {"timeout_ms": 1e30}}"#),
            Some(u64::MAX),
            "huge is cut to the longest run later"
        );
        assert_eq!(
            run_duration(br#"{"duration_ms": 12.5, "stdout": "x"}"#),
            Some(Duration::from_micros(12_500))
        );
        assert_eq!(run_duration(br#"{"duration_ms": -1}"#), None);
        assert_eq!(run_duration(b"nonsense"), None);
    }
}
