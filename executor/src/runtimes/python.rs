//! `python`: CPython 3.14 for WASI, built into a component by componentize-py
//! from `executor/guest/`, run by [`Sandbox`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Definition, Description, Runtime};
use crate::config::RuntimeArgs;
use crate::sandbox::{self, EngineOptions, Job, Outcome, Sandbox, SandboxError};

pub const NAME: &str = "python";

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
            clock_resolution: Duration::from_micros(args.clock_resolution_us),
        };
        let sandbox = Sandbox::load(&args.guest_wasm, &opts).await?;
        tracing::info!(
            runtime = NAME,
            python = sandbox.python_version(),
            cache = ?sandbox.cache_outcome(),
            missing_modules = sandbox.missing_modules().len(),
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
        self.sandbox.execute(job).boxed()
    }
}

fn load(args: &RuntimeArgs) -> BoxFuture<'_, Result<Arc<dyn Runtime>, SandboxError>> {
    async move { Ok(Arc::new(Python::load(args).await?) as Arc<dyn Runtime>) }.boxed()
}

fn precompile(args: &RuntimeArgs) -> Result<PathBuf, SandboxError> {
    let dir = args
        .cache_dir()
        .ok_or_else(|| SandboxError::Load("precompile needs a cache directory (--cache-dir)".to_owned()))?;
    let engine = sandbox::engine(true)?;
    sandbox::precompile(&engine, &args.guest_wasm, &dir)
}

/// `3.14.0 (main, …) [Clang …]` → `3.14.0`.
fn short_version(full: &str) -> String {
    full.split_whitespace().next().unwrap_or(full).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_shortened() {
        assert_eq!(short_version("3.14.0 (main, Oct 1 2025) [Clang 20]"), "3.14.0");
    }
}
