//! # runbox executor
//!
//! Runs untrusted Python snippets, each in a fresh WebAssembly sandbox.
//!
//! ## Layout: one request, top to bottom
//!
//! - [`api`]: `POST /execute` arrives; the body is parsed and validated into a
//!   job, the limits are resolved against the server's defaults and maxima,
//!   and every failure becomes one JSON error shape with a stable `code`.
//! - [`admission`]: the job waits for one of `concurrency` execution slots in
//!   a bounded queue, or is turned away at once with 429.
//! - [`sandbox`]: a fresh wasmtime [`Store`](wasmtime::Store) is made from the
//!   pre-linked CPython component (compiled ahead of time, see
//!   `sandbox/cache.rs`); the snippet runs as `__main__`, and the way it
//!   ended (exit, exception, trap) is classified into a [`sandbox::Status`].
//! - [`limits`]: the budgets the store runs under: fuel, a memory limiter,
//!   the epoch deadline, and capped stdout/stderr.
//! - [`metrics`]: Prometheus counters and gauges, `GET /metrics`.
//!
//! [`config`] holds every flag and default; [`run`] serves the router on a
//! listener until a shutdown signal, then drains.

pub mod admission;
pub mod api;
pub mod config;
pub mod limits;
pub mod metrics;
pub mod sandbox;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admission::Admission;
use crate::config::RuntimeArgs;
use crate::limits::LimitPolicy;
use crate::metrics::Metrics;
use crate::sandbox::{EngineOptions, Sandbox, SandboxError};

/// The executor service: shared state behind every request. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    args: RuntimeArgs,
    policy: LimitPolicy,
    name: String,
    sandbox: OnceLock<Arc<Sandbox>>,
    draining: AtomicBool,
    admission: Admission,
    metrics: Metrics,
}

impl Executor {
    /// A service with no runtime yet: it answers 503 `not_ready` until
    /// [`Executor::load`] finishes.
    pub fn new(args: &RuntimeArgs) -> Executor {
        let metrics = Metrics::new();
        metrics.set_ready(false);
        let admission = Admission::new(
            args.concurrency(),
            args.queue_depth(),
            Duration::from_millis(args.queue_timeout_ms),
            metrics.clone(),
        );
        Executor {
            inner: Arc::new(Inner {
                policy: args.limit_policy(),
                name: args.executor_name(),
                args: args.clone(),
                sandbox: OnceLock::new(),
                draining: AtomicBool::new(false),
                admission,
                metrics,
            }),
        }
    }

    /// Loads the Python runtime (from the AOT cache when possible) and
    /// becomes ready.
    pub async fn load(&self) -> Result<Arc<Sandbox>, SandboxError> {
        let args = &self.inner.args;
        let opts = EngineOptions {
            cache_dir: args.cache_dir(),
            epoch_tick: Duration::from_millis(args.epoch_tick_ms),
            meter_fuel: true,
        };
        let sandbox = Arc::new(Sandbox::load(&args.guest_wasm, &opts).await?);
        tracing::info!(
            python = sandbox.python_version(),
            cache = ?sandbox.cache_outcome(),
            missing_modules = sandbox.missing_modules().len(),
            "runtime loaded"
        );
        let sandbox = Arc::clone(self.inner.sandbox.get_or_init(|| sandbox));
        self.inner.metrics.set_ready(!self.is_draining());
        Ok(sandbox)
    }

    /// The loaded runtime, once ready.
    pub fn sandbox(&self) -> Option<&Arc<Sandbox>> {
        self.inner.sandbox.get()
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

    pub fn limit_policy(&self) -> LimitPolicy {
        self.inner.policy
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

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Installs the tracing subscriber (text or JSON; filter from `RUST_LOG`).
pub fn init_tracing(format: config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}
