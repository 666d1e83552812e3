//! The ahead-of-time compiled guest: compiled once per wasmtime version,
//! engine configuration and guest build, then memory-mapped on every start.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::{CpuTarget, SandboxError, load_err};

/// Where the compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// Loaded from a cached artifact.
    Hit,
    /// Compiled now and written to the cache.
    Compiled,
    /// Compiled now; no cache directory was configured.
    Uncached,
}

/// The file name of the artifact for this guest under this engine: the
/// engine's settings (its CPU target's features among them) are in the name,
/// so an artifact for another target is another file, never a wrong one.
pub fn artifact_name(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let digest = Sha256::digest(wasm);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("python-{hex}-{:016x}.cwasm", h.finish())
}

/// Loads the component from `cache_dir` if an artifact for it exists, else
/// compiles it (and stores the artifact when a cache dir is given), saying
/// so: a start without the artifact for `target` takes ~15 s (2 cores). Also
/// returns the artifact file the component is mapped from, if it is.
pub(super) fn load_component(
    engine: &Engine,
    target: CpuTarget,
    guest: &Path,
    cache_dir: Option<&Path>,
) -> Result<(Component, CacheOutcome, Option<PathBuf>), SandboxError> {
    let wasm = std::fs::read(guest).map_err(|source| SandboxError::ReadGuest {
        path: guest.to_owned(),
        source,
    })?;
    let Some(dir) = cache_dir else {
        let compiled = engine.precompile_component(&wasm).map_err(load_err)?;
        return Ok((
            deserialize_bytes(engine, &compiled)?,
            CacheOutcome::Uncached,
            None,
        ));
    };
    let path = dir.join(artifact_name(engine, &wasm));
    if path.is_file() {
        match deserialize(engine, &path) {
            Ok(component) => return Ok((component, CacheOutcome::Hit, Some(path))),
            // The artifact is fine; the engine's pool is too small for it,
            // and compiling again would not change that.
            Err(e) if e.to_string().contains("pooling allocator") => return Err(e),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached artifact"),
        }
    } else {
        tracing::warn!(
            path = %path.display(),
            cpu_target = %target,
            "no precompiled artifact for EXECUTOR_CPU_TARGET={target}; compiling the guest now \
             (~15 s on 2 cores; `executor precompile` with the same settings makes one)"
        );
    }
    let compiled = engine.precompile_component(&wasm).map_err(load_err)?;
    store(&path, &compiled);
    Ok((
        deserialize_bytes(engine, &compiled)?,
        CacheOutcome::Compiled,
        None,
    ))
}

/// Compiles the guest into the cache ahead of time (for images and CI), for
/// `target` (the engine's), which need not be this host's: an existing
/// artifact is checked by loading it only where it can run.
pub fn precompile(
    engine: &Engine,
    target: CpuTarget,
    guest: &Path,
    cache_dir: &Path,
) -> Result<PathBuf, SandboxError> {
    let wasm = std::fs::read(guest).map_err(|source| SandboxError::ReadGuest {
        path: guest.to_owned(),
        source,
    })?;
    let path = cache_dir.join(artifact_name(engine, &wasm));
    let usable = path.is_file() && (!target.runs_here() || deserialize(engine, &path).is_ok());
    if !usable {
        tracing::info!(path = %path.display(), cpu_target = %target, "compiling the guest ahead of time");
        let compiled = engine.precompile_component(&wasm).map_err(load_err)?;
        std::fs::create_dir_all(cache_dir).map_err(load_err)?;
        write_atomically(&path, &compiled).map_err(load_err)?;
    }
    Ok(path)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> Result<Component, SandboxError> {
    // SAFETY: wasmtime requires that the file is a trusted artifact produced by
    // `Engine::precompile_component`. The cache directory is the operator's,
    // written only by this function's counterpart `store`/`precompile`, and the
    // file name binds it to this exact guest and engine configuration;
    // wasmtime additionally checks the version and settings header.
    unsafe { Component::deserialize_file(engine, path) }.map_err(load_err)
}

#[allow(unsafe_code)]
fn deserialize_bytes(engine: &Engine, compiled: &[u8]) -> Result<Component, SandboxError> {
    // SAFETY: `compiled` was produced a moment ago by this engine's
    // `precompile_component`, in this process.
    unsafe { Component::deserialize(engine, compiled) }.map_err(load_err)
}

fn store(path: &Path, compiled: &[u8]) {
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| write_atomically(path, compiled));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "could not cache the compiled guest");
    }
}

/// Writes through a temporary file in the same directory, so a concurrent
/// reader never maps a half-written artifact.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{PoolOptions, Tuning, engine, engine_for};

    #[test]
    fn the_pool_does_not_change_the_artifact() {
        let pool = PoolOptions::for_concurrency(2, 512 << 20);
        let name = |pool| artifact_name(&engine(true, pool).unwrap(), b"guest");
        assert_eq!(name(None), name(Some(&pool)));
        assert_ne!(name(None), artifact_name(&engine(false, None).unwrap(), b"guest"));
    }

    /// An artifact compiled for one CPU target is never found under another:
    /// the target's features are part of the engine's compatibility hash.
    /// (`native` names what this host has, which is a level's name on a CPU
    /// of exactly that level.)
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_cpu_target_names_the_artifact() {
        let name = |t| {
            artifact_name(
                &engine_for(t, true, Tuning::default(), false, None).unwrap(),
                b"guest",
            )
        };
        let (v2, v3) = (name(CpuTarget::X86_64V2), name(CpuTarget::X86_64V3));
        assert_ne!(v2, v3);
        assert_eq!(v2, name(CpuTarget::X86_64V2));
        assert_eq!(v3, name(CpuTarget::X86_64V3));
        assert_eq!(name(CpuTarget::Native), name(CpuTarget::Native));
        assert_eq!(v2, artifact_name(&engine(true, None).unwrap(), b"guest"));
    }

    /// Code generation levers change the code, so they name another artifact.
    #[test]
    fn the_tuning_names_the_artifact() {
        let name = |t| {
            artifact_name(
                &engine_for(CpuTarget::default(), true, t, false, None).unwrap(),
                b"guest",
            )
        };
        let production = name(Tuning::default());
        assert_eq!(production, artifact_name(&engine(true, None).unwrap(), b"guest"));
        let inlined = Tuning {
            inlining: true,
            ..Tuning::default()
        };
        let eager = Tuning {
            table_lazy_init: false,
            ..Tuning::default()
        };
        assert_ne!(production, name(inlined));
        assert_ne!(production, name(eager));
    }
}
