//! Where things live: the workspace, the cargo target dir, and the cache
//! outside the clone that survives between runs (CI reuses it when present).

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(Debug, Clone)]
pub struct Paths {
    /// The workspace root.
    pub root: PathBuf,
    /// Cargo's target directory (`CARGO_TARGET_DIR` or `<root>/target`).
    pub target_dir: PathBuf,
    /// Build tools and compiled artifacts kept between runs:
    /// `RUNBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/runbox`, else `~/.cache/runbox`.
    pub cache: PathBuf,
    /// The guest component built from `executor/guest/`.
    pub guest_wasm: PathBuf,
    /// The executor's ahead-of-time compilation cache.
    pub aot_cache: PathBuf,
}

impl Paths {
    pub fn discover() -> Result<Paths> {
        // `cargo run` (behind `cargo xtask`) sets the manifest dir of the
        // checkout it runs in; the one compiled in may be another checkout's
        // when checkouts share a target dir and cargo reuses the binary.
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest
            .parent()
            .context("xtask lives inside the workspace")?
            .to_owned();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|p| if p.is_absolute() { p } else { root.join(p) })
            .unwrap_or_else(|| root.join("target"));
        let cache = std::env::var_os("RUNBOX_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("runbox")))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("runbox")))
            .unwrap_or_else(|| root.join(".runbox").join("cache"));
        Ok(Paths {
            guest_wasm: root.join(".runbox").join("guest").join("python.wasm"),
            aot_cache: cache.join("aot"),
            root,
            target_dir,
            cache,
        })
    }
}
