//! The playground: building its bundle (embedded by the gateway) and running
//! its end-to-end tests in headless Chromium against real gateways.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::paths::Paths;
use crate::process::start_gateway;
use crate::status;

fn dir(paths: &Paths) -> PathBuf {
    paths.root.join("frontend")
}

/// `npm ci` when the lockfile changed since the last install, then the build
/// into `frontend/dist/` (which the gateway embeds).
pub fn build(paths: &Paths) -> Result<()> {
    let dir = dir(paths);
    let lock = std::fs::read(dir.join("package-lock.json")).context("reading frontend/package-lock.json")?;
    let digest = crate::setup::hex(&Sha256::digest(&lock));
    let stamp = dir.join("node_modules").join(".runbox-lock-sha256");
    if std::fs::read_to_string(&stamp)
        .map(|s| s.trim() != digest)
        .unwrap_or(true)
    {
        status(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            "installing the playground's npm packages (npm ci, lockfile-pinned)",
        )?;
        std::fs::write(&stamp, &digest).context("writing the npm stamp")?;
    }
    status(
        Command::new("npm")
            .args(["run", "--silent", "build"])
            .current_dir(&dir),
        "building the playground bundle",
    )
}

/// Runs the playground's browser tests against two embedded gateways: a
/// normal one, and one with a single execution slot and no queue (for 429).
pub fn e2e(paths: &Paths) -> Result<()> {
    crate::setup::ensure_debian(&[("chromium", "chromium")], "for the browser tests")?;
    let main = start_gateway(paths, "debug", &[])?;
    let busy = start_gateway(
        paths,
        "debug",
        &[("EXECUTOR_CONCURRENCY", "1"), ("EXECUTOR_QUEUE_DEPTH", "0")],
    )?;
    let out = paths.target_dir.join("playground");
    std::fs::create_dir_all(&out)?;
    status(
        Command::new("npm")
            .args(["test"])
            .current_dir(dir(paths))
            .env("RUNBOX_URL", &main.url)
            .env("RUNBOX_BUSY_URL", &busy.url)
            .env("RUNBOX_TEST_OUT", &out),
        "playground browser tests (headless Chromium)",
    )?;
    eprintln!("xtask: screenshots in {}", out.display());
    Ok(())
}
