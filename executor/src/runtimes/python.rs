//! `python`: CPython 3.14 for WASI, built into a component by componentize-py
//! from `executor/guest/`, run by [`Sandbox`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Definition, Description, Runtime};
use crate::config::RuntimeArgs;
use crate::sandbox::{self, EngineOptions, Job, Outcome, PoolOptions, Sandbox, SandboxError};

pub const NAME: &str = "python";

/// Where `EXECUTOR_SHARED_DIR` appears to every run, read-only.
pub const SHARED_AT: &str = "/shared";

pub const DEFINITION: Definition = Definition {
    name: NAME,
    load,
    precompile,
};

/// The loaded Python runtime.
#[derive(Debug)]
pub struct Python {
    sandbox: Sandbox,
    description: Description,
}

impl Python {
    /// Loads the guest at `args.guest_wasm` with the server's limit policy.
    pub async fn load(args: &RuntimeArgs) -> Result<Python, SandboxError> {
        let opts = EngineOptions {
            cache_dir: args.cache_dir(),
            epoch_tick: Duration::from_millis(args.epoch_tick_ms),
            meter_fuel: true,
            cpu_target: args.cpu_target,
            tuning: sandbox::Tuning::default(),
            clock_resolution: Duration::from_micros(args.clock_resolution_us),
            pool: pool_options(args),
        };
        let mut sandbox = Sandbox::load(&args.guest_wasm, &opts).await?;
        if let Some(dir) = &args.shared_dir {
            let layer = sandbox::fs::Layer::from_dir(dir).map_err(|e| {
                SandboxError::Load(format!("cannot read EXECUTOR_SHARED_DIR {}: {e}", dir.display()))
            })?;
            tracing::info!(dir = %dir.display(), files = layer.files(), at = SHARED_AT, "shared layer loaded");
            sandbox.set_layer(Arc::new(layer), SHARED_AT);
        }
        let allocation = sandbox.allocation();
        tracing::info!(
            runtime = NAME,
            python = sandbox.python_version(),
            cache = ?sandbox.cache_outcome(),
            missing_modules = sandbox.missing_modules().len(),
            pooling = allocation.pooling,
            pool_slots = allocation.pool_slots,
            cow = allocation.cow,
            memories = allocation.memories,
            tables = allocation.tables,
            "runtime loaded"
        );
        let full = sandbox.python_version().to_owned();
        let description = Description {
            name: NAME,
            version: short_version(&full),
            full_version: full,
            missing_modules: sandbox.missing_modules().to_vec(),
            packages: Default::default(),
            policy: args.limit_policy(),
        };
        Ok(Python { sandbox, description })
    }
}

impl Runtime for Python {
    fn describe(&self) -> &Description {
        &self.description
    }

    fn execute<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<Outcome, SandboxError>> {
        off_the_workers(self.sandbox.execute(job)).boxed()
    }
}

/// Runs a guest to its end on this thread, as a blocking section: a run is
/// CPU-bound from start to end (1–2 ms for a hello, seconds for a loop) and
/// yields to tokio only when the guest sleeps. Polled on a worker like any
/// future, it holds that worker and everything queued on it, the wake-up of
/// the next admitted run included (tokio's LIFO slot cannot be stolen), so
/// two runs took turns on a 2-core machine instead of using both cores
/// (`docs/benchmarks.md`, "Throughput"). `block_in_place` hands the
/// worker's queue to another thread first. Admission still bounds the runs
/// (the handler's future is inside this call until the run ends, so its
/// slot is held), and the deadline still ends a run. On a current-thread
/// runtime (tests) the future is simply awaited.
async fn off_the_workers<F: std::future::Future>(run: F) -> F::Output {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(run))
        }
        _ => run.await,
    }
}

fn load(args: &RuntimeArgs) -> BoxFuture<'_, Result<Arc<dyn Runtime>, SandboxError>> {
    async move { Ok(Arc::new(Python::load(args).await?) as Arc<dyn Runtime>) }.boxed()
}

fn precompile(args: &RuntimeArgs) -> Result<PathBuf, SandboxError> {
    let dir = args
        .cache_dir()
        .ok_or_else(|| SandboxError::Load("precompile needs a cache directory (--cache-dir)".to_owned()))?;
    // The pool is a runtime setting: the artifact is the same without it.
    let engine = sandbox::engine_for(args.cpu_target, true, sandbox::Tuning::default(), None)?;
    sandbox::precompile(&engine, args.cpu_target, &args.guest_wasm, &dir)
}

/// The instance pool `args` ask for: one slot per admitted run
/// (`EXECUTOR_CONCURRENCY`, admission's slot count) plus one for the load's
/// introspection instance, each memory up to `EXECUTOR_MAX_MEMORY_BYTES`;
/// `None` with `EXECUTOR_POOLING=false`.
pub fn pool_options(args: &RuntimeArgs) -> Option<PoolOptions> {
    args.pooling
        .then(|| PoolOptions::for_concurrency(args.concurrency(), args.max_memory_bytes))
}

/// `3.14.0 (main, …) [Clang …]` → `3.14.0`.
fn short_version(full: &str) -> String {
    full.split_whitespace().next().unwrap_or(full).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_has_a_slot_per_admitted_run_and_one_more() {
        use clap::Parser;
        let parse = |argv: &[&str]| crate::config::Config::try_parse_from(argv).unwrap().runtime;
        let args = parse(&["executor", "--concurrency=3", "--max-memory-bytes=1048576"]);
        let pool = pool_options(&args).expect("pooling is on by default");
        assert_eq!(pool.slots as usize, args.concurrency() + 1);
        assert_eq!(pool.max_memory_bytes, args.max_memory_bytes);
        assert_eq!(pool_options(&parse(&["executor", "--pooling=false"])), None);
        assert_eq!(pool_options(&parse(&["executor", "--pooling=off"])), None);
    }

    #[test]
    fn version_is_shortened() {
        assert_eq!(short_version("3.14.0 (main, Oct 1 2025) [Clang 20]"), "3.14.0");
    }
}
