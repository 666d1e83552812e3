//! The playground: building its bundle (embedded by the gateway) and running
//! its end-to-end tests in headless Chromium against real gateways.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::paths::Paths;
use crate::{runtime_env, status};

const CHROMIUM: &str = "/usr/bin/chromium";

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

/// Debian's Chromium, installed when missing (root, apt-get).
fn ensure_chromium() -> Result<()> {
    if Path::new(CHROMIUM).is_file() {
        return Ok(());
    }
    status(Command::new("apt-get").args(["update", "-qq"]), "apt-get update")?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "installing Debian's chromium for the browser tests",
    )?;
    if !Path::new(CHROMIUM).is_file() {
        bail!("{CHROMIUM} is still missing after apt-get install chromium");
    }
    Ok(())
}

/// A gateway process for the browser tests; killed on drop.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_gateway(paths: &Paths, env: &[(&str, &str)]) -> Result<Server> {
    let port = free_port()?;
    let binary = paths.target_dir.join("debug").join("gateway");
    let mut cmd = Command::new(&binary);
    runtime_env(&mut cmd, paths);
    cmd.env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    let server = Server(child, url.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if ready(port) {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the gateway at {url} never became ready")
}

/// `GET /readyz` answers 200 (a plain HTTP/1.1 exchange, no client needed).
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut head = [0u8; 12];
    s.write_all(request.as_bytes()).is_ok() && s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// Runs the playground's browser tests against two embedded gateways: a
/// normal one, and one with a single execution slot and no queue (for 429).
pub fn e2e(paths: &Paths) -> Result<()> {
    ensure_chromium()?;
    let main = start_gateway(paths, &[])?;
    let busy = start_gateway(
        paths,
        &[("EXECUTOR_CONCURRENCY", "1"), ("EXECUTOR_QUEUE_DEPTH", "0")],
    )?;
    let out = paths.target_dir.join("e2e");
    std::fs::create_dir_all(&out)?;
    status(
        Command::new("npm")
            .args(["test"])
            .current_dir(dir(paths))
            .env("RUNBOX_URL", &main.1)
            .env("RUNBOX_BUSY_URL", &busy.1)
            .env("RUNBOX_TEST_OUT", &out),
        "playground browser tests (headless Chromium)",
    )?;
    eprintln!("xtask: screenshots in {}", out.display());
    Ok(())
}
