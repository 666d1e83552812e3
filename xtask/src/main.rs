//! `cargo xtask`: the project's chores, so a fresh machine needs only the two
//! README commands.
//!
//! - `setup`: installs what the build needs that cargo does not bring
//!   (componentize-py into a private virtualenv, pinned and hash-checked).
//! - `guest`: builds the Python guest component when its inputs changed.
//! - `run`: setup + guest + release build, then starts the service.
//! - `test`: setup + guest + fmt + clippy + every test, including the
//!   playground in Chromium and schemathesis against the gateway's OpenAPI
//!   document.
//! - `e2e`: the deploy path on a real control plane on 127.0.0.1 (also the
//!   last step of `test`).
//! - `bench`: the benchmarks behind `docs/benchmarks.md`.

#![forbid(unsafe_code)]

mod bench;
mod e2e;
mod frontend;
mod image;
mod loopback;
mod paths;
mod process;
mod schemathesis;
mod scientific;
mod setup;
mod write_errors;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::paths::Paths;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "runbox project chores")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install the build tools cargo does not bring (componentize-py).
    Setup,
    /// Build both runtimes: the Python guest component (`.runbox/guest/python.wasm`)
    /// and the python-scientific interpreter (`.runbox/guest/python-scientific/`).
    Guest,
    /// Build and start the service on 127.0.0.1:8080.
    Run {
        /// Extra flags for the service binary.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every check: fmt, clippy -D warnings, all tests.
    Test,
    /// Build the executor and gateway images (buildah, local base, this
    /// machine's release artifacts).
    Image,
    /// Build the images, run them hardened with podman, and send a hello and
    /// hostile programs through the containerised gateway → executor.
    ImageTest {
        /// Use the debug binaries (those `cargo xtask test` builds).
        #[arg(long)]
        debug: bool,
    },
    /// The deploy path end to end on a Kubernetes control plane on
    /// 127.0.0.1 (built from the Go module proxy, cached): the e2e overlay
    /// applied, pods run by the node agent from the images, the HPA on the
    /// custom metric, scale, pod deletion and rollout restart under load.
    E2e {
        /// Use the debug binaries (those `cargo xtask test` builds) instead
        /// of release ones.
        #[arg(long)]
        debug: bool,
    },
    /// Run the benchmarks and print their figures.
    Bench {
        /// Iterations per measured case.
        #[arg(long, default_value_t = 300)]
        iterations: usize,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let paths = Paths::discover()?;
    match cli.command {
        Cmd::Setup => setup::tools(&paths).map(drop),
        Cmd::Guest => guests(&paths),
        Cmd::Run { args } => run(&paths, &args),
        Cmd::Test => test(&paths),
        Cmd::Image => {
            guests(&paths)?;
            image::build(&paths, "release").map(drop)
        }
        Cmd::ImageTest { debug } => {
            guests(&paths)?;
            image::test(&paths, if debug { "debug" } else { "release" })
        }
        Cmd::E2e { debug } => {
            let profile = if debug { "debug" } else { "release" };
            setup::tools(&paths)?;
            guests(&paths)?;
            image::build(&paths, profile)?;
            e2e::run(&paths, profile)
        }
        Cmd::Bench { iterations } => bench::run(&paths, iterations),
    }
}

/// `cargo` as invoked by `cargo xtask`, in the workspace root.
pub(crate) fn cargo(paths: &Paths) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&paths.root);
    cmd
}

/// Runs `cmd`, failing with its description if it does not succeed.
pub(crate) fn status(cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("xtask: {what}");
    let started = std::time::Instant::now();
    let status = cmd.status().with_context(|| format!("starting: {what}"))?;
    if !status.success() {
        bail!("{what}: {status}");
    }
    // Where a run's time goes (CI's budget is an hour, cold).
    let took = started.elapsed().as_secs();
    if took >= 10 {
        eprintln!("xtask:   {what}: {took} s");
    }
    Ok(())
}

/// Builds both runtimes' guests when their inputs changed.
fn guests(paths: &Paths) -> Result<()> {
    setup::guest(paths)?;
    scientific::build(paths)?;
    Ok(())
}

/// The environment every runbox process started by xtask gets.
pub(crate) fn runtime_env(cmd: &mut Command, paths: &Paths) {
    cmd.env("EXECUTOR_GUEST_WASM", &paths.guest_wasm)
        .env("RUNBOX_GUEST_WASM", &paths.guest_wasm)
        .env("EXECUTOR_CACHE_DIR", &paths.aot_cache)
        .env("EXECUTOR_SCIENTIFIC_DIR", scientific::dir(paths))
        // Every trap would otherwise capture a Rust backtrace.
        .env_remove("RUST_BACKTRACE");
}

fn run(paths: &Paths, args: &[String]) -> Result<()> {
    setup::tools(paths)?;
    guests(paths)?;
    frontend::build(paths)?;
    status(
        cargo(paths).args([
            "build",
            "--release",
            "--package",
            "gateway",
            "--package",
            "executor",
        ]),
        "building the service (release)",
    )?;
    precompile(paths, "release")?;
    let binary = paths.target_dir.join("release").join("gateway");
    let mut cmd = Command::new(&binary);
    runtime_env(&mut cmd, paths);
    cmd.args(args);
    eprintln!("xtask: starting the gateway with an embedded executor: open http://127.0.0.1:8080");
    status(&mut cmd, "running the service")
}

/// Compiles the guest ahead of time into the AOT cache with the executor
/// binary of `profile` (a no-op when the cached artifact is current), for
/// the CPU target every process xtask starts inherits: `EXECUTOR_CPU_TARGET`
/// from the environment, else the executor's default.
pub(crate) fn precompile(paths: &Paths, profile: &str) -> Result<()> {
    let mut cmd = Command::new(paths.target_dir.join(profile).join("executor"));
    cmd.arg("precompile");
    runtime_env(&mut cmd, paths);
    let target = std::env::var("EXECUTOR_CPU_TARGET").unwrap_or_else(|_| "the default CPU target".into());
    status(
        &mut cmd,
        &format!("compiling the guest ahead of time for {target} (cached)"),
    )
}

/// An offline check script of the repo (`bash <script>`), with the cache dir.
fn check_script(paths: &Paths, script: &str) -> Result<()> {
    status(
        Command::new("bash")
            .arg(script)
            .current_dir(&paths.root)
            .env("RUNBOX_CACHE_DIR", &paths.cache),
        &format!("offline checks: {script}"),
    )
}

/// The Kubernetes gateway image is built without the embedded executor:
/// its dependency tree must hold no wasmtime (nor Cranelift).
fn gateway_links_no_wasmtime(paths: &Paths) -> Result<()> {
    eprintln!("xtask: checking the gateway without `embedded` links no wasmtime");
    let out = cargo(paths)
        .args([
            "tree",
            "--package",
            "gateway",
            "--no-default-features",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
        ])
        .output()
        .context("running cargo tree")?;
    if !out.status.success() {
        bail!("cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let tree = String::from_utf8_lossy(&out.stdout);
    let linked: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("wasmtime") || l.starts_with("cranelift") || l.starts_with("executor "))
        .collect();
    if !linked.is_empty() {
        bail!(
            "the gateway without `embedded` still depends on: {}",
            linked.join(", ")
        );
    }
    Ok(())
}

fn test(paths: &Paths) -> Result<()> {
    // The end-to-end test's Go build (~7–10 min cold, nothing when cached)
    // overlaps everything before it.
    let control_plane = loopback::build_in_background(paths);
    setup::tools(paths)?;
    guests(paths)?;
    frontend::build(paths)?;
    status(
        cargo(paths).args(["fmt", "--all", "--check"]),
        "cargo fmt --check",
    )?;
    status(
        cargo(paths).args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
        "cargo clippy -D warnings",
    )?;
    gateway_links_no_wasmtime(paths)?;
    status(
        cargo(paths).args([
            "clippy",
            "--package",
            "gateway",
            "--no-default-features",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        "cargo clippy -p gateway --no-default-features (the Kubernetes build)",
    )?;
    check_script(paths, "k8s/tests/check.sh")?;
    check_script(paths, "cluster-setup/tests/check.sh")?;
    status(
        cargo(paths).args(["build", "--workspace", "--bins"]),
        "building the binaries",
    )?;
    // Compile the guest once, before the tests load it many times at once.
    precompile(paths, "debug")?;
    frontend::e2e(paths)?;
    schemathesis::run(paths, "debug")?;
    let mut tests = cargo(paths);
    tests.args(["test", "--workspace"]);
    runtime_env(&mut tests, paths);
    status(&mut tests, "cargo test --workspace")?;
    let mut tests = cargo(paths);
    tests.args(["test", "--package", "gateway", "--no-default-features"]);
    runtime_env(&mut tests, paths);
    status(
        &mut tests,
        "cargo test -p gateway --no-default-features (the Kubernetes build)",
    )?;
    image::test(paths, "debug")?;
    control_plane
        .join()
        .map_err(|_| anyhow::anyhow!("the control plane's build panicked"))??;
    e2e::run(paths, "debug")
}
