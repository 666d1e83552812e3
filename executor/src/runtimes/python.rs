//! `python`: CPython 3.14 for WASI, built into a component by componentize-py
//! from `executor/guest/`, run by [`Sandbox`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Definition, Loaded, Runtime};
use crate::config::RuntimeArgs;
use crate::sandbox::fs::Layer;
use crate::sandbox::{self, EngineOptions, Entry, PoolOptions, Sandbox, SandboxError};

pub const NAME: &str = "python";

/// Where `EXECUTOR_SHARED_DIR` appears to every run, read-only.
pub const SHARED_AT: &str = "/shared";

pub const DEFINITION: Definition = Definition {
    name: NAME,
    load,
    precompile,
};

/// Loads the guest at `args.guest_wasm` with the server's limit policy.
pub async fn load_python(args: &RuntimeArgs) -> Result<Loaded, SandboxError> {
    let opts = engine_options(args, false);
    let mut layer = Layer::default();
    mount_shared(args, &mut layer)?;
    let sandbox = Sandbox::load(&args.guest_wasm, Entry::Snippet, Some(Arc::new(layer)), &opts).await?;
    Ok(Loaded::new(NAME, sandbox, args.limit_policy()))
}

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

fn load(args: &RuntimeArgs) -> BoxFuture<'_, Result<Arc<dyn Runtime>, SandboxError>> {
    async move { Ok(Arc::new(load_python(args).await?) as Arc<dyn Runtime>) }.boxed()
}

fn precompile(args: &RuntimeArgs) -> Result<PathBuf, SandboxError> {
    precompile_guest(args, &args.guest_wasm, false)
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
}
