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
//! - [`metrics`]: Prometheus counters and gauges, `GET /metrics`.
//!
//! [`config`] holds every flag and default; [`run`] serves the router on a
//! listener until a shutdown signal, then drains.

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
}

/// Serves the executor API on `listener` until `shutdown` resolves, then
/// drains: readiness goes false, in-flight and queued executions finish
/// (bounded by the longest allowed run), and the function returns.
pub async fn run(
    listener: TcpListener,
    executor: Executor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = api::router(executor.clone());
    let drain_timeout = executor.args().drain_timeout();
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let draining = executor.clone();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutdown requested: draining");
        draining.drain();
        let _ = stopped_tx.send(());
    });
    let serve = tokio::spawn(async move { serve.await });
    // Once draining starts, give in-flight work at most `drain_timeout`.
    let bounded = async {
        let _ = stopped_rx.await;
        tokio::time::sleep(drain_timeout).await;
    };
    tokio::select! {
        result = serve => result.map_err(std::io::Error::other)?,
        () = bounded => {
            tracing::warn!("drain timed out; exiting with work in flight");
            Ok(())
        }
    }
}
