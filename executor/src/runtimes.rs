//! The runtime seam: what the executor can run, as a registry of loaded
//! runtimes (name → sandbox, version, limits, what it bundles).
//!
//! A runtime is one module under `runtimes/` that exports a [`Definition`]
//! (how to load and precompile it), listed once in [`AVAILABLE`]. The API,
//! admission and metrics code know runtimes only through [`Registry`] and
//! [`Runtime`]: adding one touches nothing else. `EXECUTOR_RUNTIMES` picks
//! which of the available ones a process loads; the first is the default.

pub mod python;
pub mod scientific;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use runbox_api::{LimitPolicy, LimitSet, RuntimeInfo};

use crate::config::RuntimeArgs;
use crate::sandbox::fs::Layer;
use crate::sandbox::{self, EngineOptions, Job, Outcome, PoolOptions, Sandbox, SandboxError};

/// Every runtime this build can load, by name.
pub const AVAILABLE: &[Definition] = &[python::DEFINITION, scientific::DEFINITION];

/// Loads a runtime from the process's configuration.
pub type LoadFn = for<'a> fn(&'a RuntimeArgs) -> BoxFuture<'a, Result<Arc<dyn Runtime>, SandboxError>>;

/// How to bring one runtime up.
#[derive(Debug, Clone, Copy)]
pub struct Definition {
    /// What a request's `runtime` names.
    pub name: &'static str,
    /// Loads the runtime (from the AOT cache when possible) and checks it works.
    pub load: LoadFn,
    /// Compiles the runtime's guest into the AOT cache; returns the artifact.
    pub precompile: fn(&RuntimeArgs) -> Result<PathBuf, SandboxError>,
}

/// What the registry and `GET /runtimes` know of a loaded runtime.
#[derive(Debug, Clone)]
pub struct Description {
    pub name: &'static str,
    /// Short version, e.g. `3.14.0`.
    pub version: String,
    pub full_version: String,
    pub missing_modules: Vec<String>,
    /// Bundled third-party packages, name → version.
    pub packages: BTreeMap<String, String>,
    /// Defaults and maxima for this runtime's runs.
    pub policy: LimitPolicy,
}

/// A loaded runtime: runs jobs, each in a fresh sandbox.
pub trait Runtime: Send + Sync + std::fmt::Debug {
    fn describe(&self) -> &Description;

    /// Runs `job`. Guest failures of every kind are an [`Outcome`]; only
    /// host faults are errors.
    fn execute<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<Outcome, SandboxError>>;
}

/// A runtime served by one [`Sandbox`]: every runtime of this build.
#[derive(Debug)]
pub struct Loaded {
    sandbox: Sandbox,
    description: Description,
}

impl Loaded {
    /// `sandbox` as the runtime `name`, described by what its guest said of
    /// itself at load, with the limits of `policy`; logs how it came up.
    pub fn new(name: &'static str, sandbox: Sandbox, policy: LimitPolicy) -> Loaded {
        let allocation = sandbox.allocation();
        tracing::info!(
            runtime = name,
            python = sandbox.python_version(),
            packages = sandbox.packages().len(),
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
            name,
            version: short_version(&full),
            full_version: full,
            missing_modules: sandbox.missing_modules().to_vec(),
            packages: sandbox.packages().clone(),
            policy,
        };
        Loaded { sandbox, description }
    }

    /// The runtime's sandbox (for benchmarks and tests that time or tune it).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Runtime for Loaded {
    fn describe(&self) -> &Description {
        &self.description
    }

    fn execute<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<Outcome, SandboxError>> {
        Box::pin(off_the_workers(self.sandbox.execute(job)))
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

/// Where `EXECUTOR_SHARED_DIR` appears to every run of every runtime,
/// read-only.
pub const SHARED_AT: &str = "/shared";

/// The engine settings of `args`, for a guest that uses wasm exceptions or
/// not (the pool is sized by [`pool_options`]).
pub fn engine_options(args: &RuntimeArgs, exceptions: bool) -> EngineOptions {
    EngineOptions {
        cache_dir: args.cache_dir(),
        epoch_tick: Duration::from_millis(args.epoch_tick_ms),
        meter_fuel: true,
        cpu_target: args.cpu_target,
        tuning: sandbox::Tuning::default(),
        clock_resolution: Duration::from_micros(args.clock_resolution_us),
        pool: pool_options(args),
        exceptions,
    }
}

/// Mounts `EXECUTOR_SHARED_DIR`, when set, at [`SHARED_AT`] in `layer`.
pub fn mount_shared(args: &RuntimeArgs, layer: &mut Layer) -> Result<(), SandboxError> {
    let Some(dir) = &args.shared_dir else {
        return Ok(());
    };
    let before = layer.files();
    layer
        .mount_dir(SHARED_AT, dir)
        .map_err(|e| SandboxError::Load(format!("cannot read EXECUTOR_SHARED_DIR {}: {e}", dir.display())))?;
    tracing::info!(dir = %dir.display(), files = layer.files() - before, at = SHARED_AT, "shared layer loaded");
    Ok(())
}

/// Compiles `guest` into the AOT cache for `args`' CPU target, with wasm
/// exceptions when the guest uses them; returns the artifact.
pub fn precompile_guest(args: &RuntimeArgs, guest: &Path, exceptions: bool) -> Result<PathBuf, SandboxError> {
    let dir = args
        .cache_dir()
        .ok_or_else(|| SandboxError::Load("precompile needs a cache directory (--cache-dir)".to_owned()))?;
    // The pool is a runtime setting: the artifact is the same without it.
    let engine = sandbox::engine_for(
        args.cpu_target,
        true,
        sandbox::Tuning::default(),
        exceptions,
        None,
    )?;
    sandbox::precompile(&engine, args.cpu_target, guest, &dir)
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

/// Why the configured runtimes could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unknown runtime `{name}` in EXECUTOR_RUNTIMES; available: {available}")]
    Unknown { name: String, available: String },
    #[error("EXECUTOR_RUNTIMES names no runtime")]
    Empty,
    #[error("runtime `{name}` failed to load: {source}")]
    Failed {
        name: &'static str,
        #[source]
        source: SandboxError,
    },
}

/// The names of every runtime this build has, comma-separated.
pub fn available_names() -> String {
    AVAILABLE.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
}

/// The definitions `names` select, in order, or why not.
pub fn select(names: &[String]) -> Result<Vec<&'static Definition>, LoadError> {
    if names.is_empty() {
        return Err(LoadError::Empty);
    }
    let mut selected: Vec<&'static Definition> = Vec::new();
    for name in names {
        let def = AVAILABLE
            .iter()
            .find(|d| d.name == name.as_str())
            .ok_or_else(|| LoadError::Unknown {
                name: name.clone(),
                available: available_names(),
            })?;
        if !selected.iter().any(|d| d.name == def.name) {
            selected.push(def);
        }
    }
    Ok(selected)
}

/// The loaded runtimes; the first is the default.
#[derive(Debug, Clone)]
pub struct Registry {
    runtimes: Vec<Arc<dyn Runtime>>,
}

impl Registry {
    /// Loads every runtime `args.runtimes` names.
    pub async fn load(args: &RuntimeArgs) -> Result<Registry, LoadError> {
        let mut runtimes = Vec::new();
        for def in select(&args.runtimes)? {
            let runtime = (def.load)(args).await.map_err(|source| LoadError::Failed {
                name: def.name,
                source,
            })?;
            runtimes.push(runtime);
        }
        Ok(Registry { runtimes })
    }

    /// The runtime `name` selects; `None` selects the default.
    pub fn get(&self, name: Option<&str>) -> Option<&Arc<dyn Runtime>> {
        match name {
            None => self.runtimes.first(),
            Some(name) => self.runtimes.iter().find(|r| r.describe().name == name),
        }
    }

    pub fn default_runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtimes[0]
    }

    /// The registry as `GET /runtimes` lists it.
    pub fn infos(&self) -> Vec<RuntimeInfo> {
        self.runtimes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let d = r.describe();
                RuntimeInfo {
                    name: d.name.to_owned(),
                    version: d.version.clone(),
                    full_version: d.full_version.clone(),
                    default: i == 0,
                    missing_modules: d.missing_modules.clone(),
                    packages: d.packages.clone(),
                    limits: LimitSet::from(d.policy),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_keeps_order_drops_repeats_and_names_unknown_runtimes() {
        let got = select(&["python".to_owned(), "python".to_owned()]).unwrap();
        assert_eq!(got.iter().map(|d| d.name).collect::<Vec<_>>(), ["python"]);
        let err = select(&["cobol".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("cobol") && err.contains("python"), "{err}");
        assert!(matches!(select(&[]), Err(LoadError::Empty)));
    }

    #[test]
    fn version_is_shortened() {
        assert_eq!(short_version("3.14.0 (main, Oct 1 2025) [Clang 20]"), "3.14.0");
    }

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
}
