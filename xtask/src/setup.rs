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
/// How the guest is built, part of its stamp: bump it when [`guest`] changes
/// what goes into the component, so a guest built the old way is rebuilt.
const GUEST_RECIPE: &str = "guest-recipe-2: hermetic (empty VIRTUAL_ENV, staged app, clean env)";

/// Lower-case hex of a SHA-256 digest.
pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A private virtualenv under the cache holding the packages pinned (with
/// hashes) in `requirements` (relative to the workspace root), installed with
/// `pip --no-deps --require-hashes` unless already there, named
/// `<dir>/<first 16 hex of the requirements' sha256>` so a version bump gets a
/// fresh one. Returns the path of its executable `tool`.
pub(crate) fn pinned_venv(paths: &Paths, requirements: &str, dir: &str, tool: &str) -> Result<PathBuf> {
    let req =
        std::fs::read(paths.root.join(requirements)).with_context(|| format!("reading {requirements}"))?;
    let venv = paths.cache.join(dir).join(&sha256_hex(&req)[..16]);
    let exe = venv.join("bin").join(tool);
    // Written last: a venv whose install was interrupted is redone.
    let stamp = venv.join(".runbox-installed");
    if exe.is_file() && stamp.is_file() {
        return Ok(exe);
    }
    let python = which("python3").context("python3 is needed (apt-get install python3 python3-venv)")?;
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::create_dir_all(venv.parent().unwrap_or(Path::new("."))).context("creating the cache dir")?;
    status(
        Command::new(python).arg("-m").arg("venv").arg(&venv),
        &format!("creating the {tool} virtualenv"),
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
            .arg(paths.root.join(requirements)),
        &format!("installing {tool} (pinned, hash-checked)"),
    )?;
    if !exe.is_file() {
        bail!("{tool} did not install to {}", exe.display());
    }
    std::fs::write(&stamp, "").context("writing the venv stamp")?;
    Ok(exe)
}

/// Installs componentize-py (pinned, `--require-hashes`) into a private venv
/// and returns its path.
pub fn tools(paths: &Paths) -> Result<PathBuf> {
    pinned_venv(paths, REQUIREMENTS, "venv", "componentize-py")
}

/// A digest of everything the guest is built from.
fn guest_inputs_digest(paths: &Paths) -> Result<String> {
    let dir = paths.root.join(GUEST_DIR);
    let mut files = Vec::new();
    collect(&dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    h.update(GUEST_RECIPE.as_bytes());
    // The pass applied after componentize-py is part of the recipe.
    h.update(include_bytes!("write_errors.rs"));
    for f in files {
        h.update(f.strip_prefix(&dir).unwrap_or(&f).to_string_lossy().as_bytes());
        h.update(std::fs::read(&f)?);
    }
    Ok(hex(&h.finalize()))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // The other runtime's inputs (`scientific.rs` stamps them) are not this guest's.
        if path
            .file_name()
            .is_some_and(|n| n == "__pycache__" || n == "scientific" || n == "command")
        {
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
///
/// The build is hermetic: componentize-py snapshots the interpreter's heap,
/// so whatever the build-time interpreter could see (its importer caches list
/// every directory on its path) ships in the component. Unless told
/// otherwise, componentize-py appends the `site-packages` of whatever
/// `python3` is on `PATH` (the build machine's global packages, and the
/// user's); here it is pointed at an empty virtualenv instead, it sees only a
/// staged copy of the guest's own `*.py` files, and the host interpreter runs
/// with a clean environment. `app.py` clears the importer caches before the
/// snapshot.
pub fn guest(paths: &Paths) -> Result<PathBuf> {
    let componentize_py = tools(paths)?;
    let out = &paths.guest_wasm;
    let stamp = out.with_extension("wasm.inputs");
    let digest = guest_inputs_digest(paths)?;
    if out.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == digest) {
        return Ok(out.clone());
    }
    let dir = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).context("creating .runbox/guest")?;
    let (app, empty_venv) = stage_guest(paths, &dir.join("build"))?;
    let tmp = out.with_extension("wasm.tmp");
    let mut cmd = Command::new(&componentize_py);
    cmd.current_dir(&app)
        .env_clear()
        // The venv's `python3` runs componentize-py; nothing else on PATH is
        // consulted once VIRTUAL_ENV is set.
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", app.parent().unwrap_or(&app))
        .env("LANG", "C.UTF-8")
        .env("VIRTUAL_ENV", &empty_venv)
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONSAFEPATH", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONHASHSEED", "0")
        .arg("--wit-path")
        .arg(paths.root.join(GUEST_DIR).join("wit"))
        .args(["--world", "sandbox", "componentize", "app", "--python-path", "."])
        .arg("--output")
        .arg(&tmp);
    status(&mut cmd, "building the Python guest component")?;
    let component = std::fs::read(&tmp).context("reading the guest component")?;
    let patched = crate::write_errors::patch(&component).context("giving the guest's writes exact errnos")?;
    std::fs::write(&tmp, patched).context("writing the guest component")?;
    std::fs::rename(&tmp, out).context("moving the guest into place")?;
    std::fs::write(&stamp, &digest).context("writing the guest stamp")?;
    Ok(out.clone())
}

/// A fresh `build/` holding `app/` (the guest's top-level `*.py` files and
/// nothing else: the guest's path entry for the app lists only them) and
/// `venv/lib/site-packages/` (empty: componentize-py's `VIRTUAL_ENV`).
fn stage_guest(paths: &Paths, build: &Path) -> Result<(PathBuf, PathBuf)> {
    let _ = std::fs::remove_dir_all(build);
    let app = build.join("app");
    let venv = build.join("venv");
    std::fs::create_dir_all(&app).context("creating the guest's staging dir")?;
    std::fs::create_dir_all(venv.join("lib").join("site-packages")).context("creating the empty venv")?;
    for entry in std::fs::read_dir(paths.root.join(GUEST_DIR))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "py") {
            let name = path.file_name().context("a file name")?;
            std::fs::copy(&path, app.join(name)).with_context(|| format!("staging {}", path.display()))?;
        }
    }
    Ok((app, venv))
}

/// Installs with `apt-get` the Debian packages of `needs` (`(binary,
/// package spec)` pairs, a spec may pin `name=version`) whose binary is
/// neither on the PATH nor in `/usr/sbin`, in one transaction, and checks
/// that each binary is there afterwards. `why` says what they are for.
pub(crate) fn ensure_debian(needs: &[(&str, &str)], why: &str) -> Result<()> {
    let present = |bin: &str| which(bin).is_some() || Path::new("/usr/sbin").join(bin).is_file();
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(bin, _)| !present(bin))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    status(Command::new("apt-get").args(["update", "-qq"]), "apt-get update")?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &format!("installing Debian's {} {why}", missing.join(", ")),
    )?;
    if let Some((bin, package)) = needs.iter().find(|(bin, _)| !present(bin)) {
        bail!("{bin} is still missing after apt-get install {package}");
    }
    Ok(())
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}
