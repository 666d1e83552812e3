//! Installing the build tools and building the guest component.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::paths::Paths;
use crate::status;

/// The guest's build inputs, relative to the workspace root.
const GUEST_DIR: &str = "executor/guest";
const REQUIREMENTS: &str = "executor/guest/requirements.txt";

/// Lower-case hex of a SHA-256 digest.
pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The virtualenv holding componentize-py, named after the hash of the pinned
/// requirements so a version bump gets a fresh one.
fn venv(paths: &Paths) -> Result<PathBuf> {
    let req = std::fs::read(paths.root.join(REQUIREMENTS)).context("reading the guest requirements")?;
    Ok(paths.cache.join("venv").join(&sha256_hex(&req)[..16]))
}

fn componentize_py(paths: &Paths) -> Result<PathBuf> {
    Ok(venv(paths)?.join("bin").join("componentize-py"))
}

/// Installs componentize-py (pinned, `--require-hashes`) into a private venv.
pub fn tools(paths: &Paths) -> Result<()> {
    let venv = venv(paths)?;
    let tool = componentize_py(paths)?;
    if tool.is_file() {
        return Ok(());
    }
    let python = which("python3")
        .context("python3 is needed to build the guest (apt-get install python3 python3-venv)")?;
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::create_dir_all(venv.parent().unwrap_or(Path::new("."))).context("creating the cache dir")?;
    status(
        Command::new(python).arg("-m").arg("venv").arg(&venv),
        "creating the componentize-py virtualenv",
    )?;
    status(
        Command::new(venv.join("bin").join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--require-hashes",
                "-r",
            ])
            .arg(paths.root.join(REQUIREMENTS)),
        "installing componentize-py (pinned, hash-checked)",
    )?;
    if !tool.is_file() {
        bail!("componentize-py did not install to {}", tool.display());
    }
    Ok(())
}

/// A digest of everything the guest is built from.
fn guest_inputs_digest(paths: &Paths) -> Result<String> {
    let dir = paths.root.join(GUEST_DIR);
    let mut files = Vec::new();
    collect(&dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.strip_prefix(&dir).unwrap_or(&f).to_string_lossy().as_bytes());
        h.update(std::fs::read(&f)?);
    }
    Ok(hex(&h.finalize()))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n == "__pycache__") {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Builds `.runbox/guest/python.wasm` unless it is up to date.
pub fn guest(paths: &Paths) -> Result<PathBuf> {
    tools(paths)?;
    let out = &paths.guest_wasm;
    let stamp = out.with_extension("wasm.inputs");
    let digest = guest_inputs_digest(paths)?;
    if out.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == digest) {
        return Ok(out.clone());
    }
    std::fs::create_dir_all(out.parent().unwrap_or(Path::new("."))).context("creating .runbox/guest")?;
    let tmp = out.with_extension("wasm.tmp");
    status(
        Command::new(componentize_py(paths)?)
            .current_dir(paths.root.join(GUEST_DIR))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .args([
                "--wit-path",
                "wit",
                "--world",
                "sandbox",
                "componentize",
                "app",
                "--output",
            ])
            .arg(&tmp),
        "building the Python guest component",
    )?;
    std::fs::rename(&tmp, out).context("moving the guest into place")?;
    std::fs::write(&stamp, &digest).context("writing the guest stamp")?;
    Ok(out.clone())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}
