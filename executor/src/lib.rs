//! # runbox executor
//!
//! Runs untrusted code snippets, each in a fresh WebAssembly sandbox.
//!
//! ## Layout: one request, top to bottom
//!
//! - [`api`]: `POST /execute` arrives; the body is parsed by type into a
//!   `runbox_api::ExecuteRequest` (every failure one JSON error shape with a
//!   stable `code`), the runtime is picked from the [`runtimes`] registry and
//!   the limits resolved against that runtime's defaults and maxima.
//! - [`admission`]: the job waits for one of `concurrency` execution slots in
//!   a bounded queue, or is turned away at once with 429.
//! - [`runtimes`]: the seam: each runtime is a module that loads a sandbox;
//!   the registry maps a request's `runtime` to one.
//! - [`sandbox`]: a fresh wasmtime [`Store`](wasmtime::Store) is made from the
//!   pre-linked component (compiled ahead of time, see `sandbox/cache.rs`);
//!   the snippet runs, and the way it ended (exit, exception, trap) becomes a
//!   `Status` and the `LimitHit` that caused it.
//! - `sandbox::limits`: the budgets inside the store: a memory limiter and
//!   capped stdout/stderr (fuel and the epoch deadline are set on the store).
//!   What a run may ask for is policy, in `runbox_api::limits`.
//! - `sandbox::clock`: the guest's wall and monotonic clocks, coarsened to
//!   `EXECUTOR_CLOCK_RESOLUTION_US` against timing side channels.
//! - [`metrics`]: Prometheus counters and gauges, `GET /metrics` on a
//!   listener of its own (`EXECUTOR_METRICS_LISTEN`); the slot-busy and
//!   queue-wait seconds the admission guards keep are the autoscaling signal.
//!
//! [`config`] holds every flag and default; [`run`] serves the router under
//! the HTTP edge's limits (`runbox_api::server::serve`: header, body, write
//! and idle timeouts, connection caps, a memory budget for bodies) until a
//! shutdown signal, then drains.

pub mod admission;
pub mod api;
pub mod config;
pub mod metrics;
pub mod runtimes;
pub mod sandbox;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use runbox_api::server::{Edge, EdgeConfig};
use tokio::net::TcpListener;

use crate::admission::Admission;
use crate::config::RuntimeArgs;
use crate::metrics::Metrics;
pub use crate::runtimes::LoadError;
use crate::runtimes::Registry;

/// The executor service: shared state behind every request. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    args: RuntimeArgs,
    name: String,
    registry: OnceLock<Registry>,
    draining: AtomicBool,
    admission: Admission,
    /// Bodies parsed at once (before admission): `concurrency`.
    parse: tokio::sync::Semaphore,
    metrics: Metrics,
}

impl Executor {
    /// A service with no runtime yet: it answers 503 `not_ready` until
    /// [`Executor::load`] finishes.
    pub fn new(args: &RuntimeArgs) -> Executor {
        let names: Vec<&str> = args.runtimes.iter().map(String::as_str).collect();
        let metrics = Metrics::new(&names);
        metrics.set_ready(false);
        let admission = Admission::new(
            args.concurrency(),
            args.queue_depth(),
            Duration::from_millis(args.queue_timeout_ms),
            metrics.clone(),
        );
        Executor {
            inner: Arc::new(Inner {
                name: args.executor_name(),
                args: args.clone(),
                registry: OnceLock::new(),
                draining: AtomicBool::new(false),
                parse: tokio::sync::Semaphore::new(args.concurrency()),
                admission,
                metrics,
            }),
        }
    }

    /// Loads the configured runtimes (from the AOT cache when possible) and
    /// becomes ready.
    pub async fn load(&self) -> Result<(), LoadError> {
        let registry = Registry::load(&self.inner.args).await?;
        let _ = self.inner.registry.set(registry);
        self.inner.metrics.set_ready(!self.is_draining());
        Ok(())
    }

    /// The loaded runtimes, once ready.
    pub fn registry(&self) -> Option<&Registry> {
        self.inner.registry.get()
    }

    /// Loaded and not draining.
    pub fn is_ready(&self) -> bool {
        self.registry().is_some() && !self.is_draining()
    }

    /// Stops taking new work: readiness turns false and new executions get
    /// 503 `shutting_down`; admitted ones run to the end.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.metrics.set_ready(false);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn args(&self) -> &RuntimeArgs {
        &self.inner.args
    }

    pub fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Waits for one of the `concurrency` permits to parse a request body.
    pub async fn parse_permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .parse
            .acquire()
            .await
            .expect("the parse semaphore is never closed")
    }
}

/// Serves the executor API on `listeners.0` under `edge`'s limits, and
/// `/metrics` on `listeners.1`, until `shutdown` resolves; then drains:
/// readiness goes false, in-flight and queued executions finish (bounded by
/// the longest allowed run), and the function returns.
pub async fn run(
    listeners: (TcpListener, TcpListener),
    executor: Executor,
    edge: EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let edge = Edge::new(edge);
    let app = api::router(executor.clone(), Some(&edge));
    let metrics = api::metrics_router(executor.clone(), Some(edge.clone()));
    let drain_timeout = executor.args().drain_timeout();
    let draining = executor.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutdown requested: draining");
        draining.drain();
    };
    let (api, metrics_listener) = listeners;
    runbox_api::server::serve_with_metrics(
        (api, app, edge),
        (metrics_listener, metrics),
        shutdown,
        drain_timeout,
    )
    .await
}
