//! The container images, built and run for real, daemonless:
//! `cargo xtask image` builds the executor and gateway images with buildah
//! from the project's Dockerfiles, on a base made locally with mmdebstrap
//! (`k8s/images/base.sh`; no registry is reachable), from artifacts built
//! on this machine (the Dockerfiles' `artifacts` stage replaced with
//! `--build-context`: seconds, where the from-source build takes ~20 min).
//! `cargo xtask image-test` also runs them with podman as Kubernetes would
//! (read-only root, every capability dropped, uid 65532, no privilege
//! escalation, the executor on an internal network only) and sends a hello
//! and hostile programs through the containerised gateway → executor.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::process::http;
use crate::{cargo, status};

const BASE: &str = "localhost/runbox-base:bookworm";
const EXECUTOR_IMAGE: &str = "localhost/runbox/executor:0.1.0";
const GATEWAY_IMAGE: &str = "localhost/runbox/gateway:0.1.0";
/// Longest wait for a reply through the containers (the slowest program
/// sent, numpy's import, takes well under a second).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The CPU level the image's artifacts are compiled for (the Dockerfile's default).
const CPU_TARGET: &str = "x86-64-v2";
/// What the images need from Debian, installed when missing.
const TOOLS: [(&str, &str); 5] = [
    ("podman", "podman"),
    ("buildah", "buildah"),
    ("runc", "runc"),
    ("mmdebstrap", "mmdebstrap"),
    ("ip", "iproute2"),
];

/// A podman or buildah command with the project's `containers.conf`.
fn tool(paths: &Paths, name: &str) -> Command {
    let mut cmd = Command::new(name);
    cmd.env("CONTAINERS_CONF", paths.root.join("k8s/images/containers.conf"));
    cmd
}

fn output(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("starting: {what}"))?;
    if !out.status.success() {
        bail!(
            "{what}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Builds both images from this checkout's binaries of `profile` and its
/// guests: `release` for `cargo xtask image`; `cargo xtask test` uses the
/// `debug` ones it already built (dependencies are optimised in both, and
/// the AOT artifacts are the same), so CI builds wasmtime no extra time.
/// Returns each image's name and size in bytes.
pub fn build(paths: &Paths, profile: &str) -> Result<Vec<(&'static str, u64)>> {
    crate::setup::ensure_debian(&TOOLS, "to build and run images")?;
    if !tool(paths, "podman")
        .args(["image", "exists", BASE])
        .status()?
        .success()
    {
        status(
            tool(paths, "bash")
                .arg(paths.root.join("k8s/images/base.sh"))
                .env("TAG", BASE),
            "making the base image (mmdebstrap)",
        )?;
    }
    let stage = paths.target_dir.join("image");
    let _ = std::fs::remove_dir_all(&stage);
    for dir in [
        "executor/bin",
        "executor/guest",
        "executor/aot",
        "gateway/bin",
        "empty",
    ] {
        std::fs::create_dir_all(stage.join(dir))?;
    }
    // The Kubernetes gateway: no embedded executor, so no wasmtime. It is
    // copied out at once: the embedded build writes the same path.
    let release = (profile == "release").then_some("--release");
    status(
        cargo(paths).arg("build").args(release).args([
            "--locked",
            "--package",
            "gateway",
            "--no-default-features",
        ]),
        &format!("building the Kubernetes gateway ({profile}, --no-default-features)"),
    )?;
    let binaries = paths.target_dir.join(profile);
    install(
        &binaries.join("gateway"),
        &stage.join("gateway/bin/gateway"),
        0o555,
    )?;
    status(
        cargo(paths)
            .arg("build")
            .args(release)
            .args(["--locked", "--package", "executor"]),
        &format!("building the executor ({profile})"),
    )?;
    let ex = stage.join("executor");
    install(&binaries.join("executor"), &ex.join("bin/executor"), 0o555)?;
    install(&paths.guest_wasm, &ex.join("guest/python.wasm"), 0o444)?;
    copy_tree(
        &crate::scientific::dir(paths),
        &ex.join("guest/python-scientific"),
    )?;
    // The artifacts for these guests and this CPU level, as the staged
    // binary names them (compiled into the host cache when missing).
    let listed = output(
        Command::new(ex.join("bin/executor"))
            .arg("precompile")
            .env("EXECUTOR_GUEST_WASM", ex.join("guest/python.wasm"))
            .env("EXECUTOR_SCIENTIFIC_DIR", ex.join("guest/python-scientific"))
            .env("EXECUTOR_CACHE_DIR", &paths.aot_cache)
            .env("EXECUTOR_RUNTIMES", "python,python-scientific")
            .env("EXECUTOR_CPU_TARGET", CPU_TARGET),
        "precompiling the guests for the image",
    )?;
    for artifact in String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.ends_with(".cwasm"))
    {
        let artifact = Path::new(artifact);
        install(
            artifact,
            &ex.join("aot").join(artifact.file_name().context("a name")?),
            0o444,
        )?;
    }
    let mut images = Vec::new();
    for (name, dockerfile, context, args) in [
        (
            EXECUTOR_IMAGE,
            "executor/Dockerfile",
            "executor",
            vec![format!("CPU_TARGET={CPU_TARGET}")],
        ),
        (GATEWAY_IMAGE, "gateway/Dockerfile", "gateway", vec![]),
    ] {
        let mut cmd = tool(paths, "buildah");
        cmd.args(["bud", "--quiet", "--pull-never", "--layers=false"])
            .arg("--build-arg")
            .arg(format!("BASE={BASE}"));
        for arg in args {
            cmd.arg("--build-arg").arg(arg);
        }
        cmd.arg("--build-context")
            .arg(format!("artifacts={}", stage.join(context).display()))
            .arg("-f")
            .arg(paths.root.join(dockerfile))
            .args(["-t", name])
            .arg(stage.join("empty"));
        let t = Instant::now();
        output(&mut cmd, &format!("building {name}"))?;
        let size = output(
            tool(paths, "podman").args(["image", "inspect", "--format", "{{.Size}}", name]),
            "reading the image size",
        )?;
        let size: u64 = String::from_utf8_lossy(&size.stdout).trim().parse().unwrap_or(0);
        eprintln!(
            "xtask: built {name} in {:.1} s: {:.0} MB",
            t.elapsed().as_secs_f64(),
            size as f64 / 1e6
        );
        images.push((name, size));
    }
    let _ = tool(paths, "podman").args(["image", "prune", "-f"]).output();
    Ok(images)
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `from` copied to `to`, every file 0444 and directory 0555 (COPY keeps
/// the context's modes; the executor's user must read them, never write).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            install(&src, &dst, 0o444)?;
        }
    }
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o555))?;
    Ok(())
}

/// Containers and networks of one test, removed on every path out.
struct Rig<'a> {
    paths: &'a Paths,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Rig<'_> {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = tool(self.paths, "podman")
                .args(["rm", "-f", "-t", "2", c])
                .output();
        }
        for n in &self.networks {
            let _ = tool(self.paths, "podman")
                .args(["network", "rm", "-f", n])
                .output();
        }
    }
}

/// The hardening of a Kubernetes pod with the manifests' securityContext.
const HARDENED: [&str; 9] = [
    "--read-only",
    "--read-only-tmpfs=false",
    "--cap-drop=ALL",
    "--security-opt",
    "no-new-privileges",
    "--user",
    "65532:65532",
    "--pids-limit",
    "256",
];

/// Builds the images (from `profile`'s binaries), runs them hardened, and
/// checks what comes through.
pub fn test(paths: &Paths, profile: &str) -> Result<()> {
    let images = build(paths, profile)?;
    let tag = std::process::id();
    let mut rig = Rig {
        paths,
        containers: Vec::new(),
        networks: Vec::new(),
    };
    let (internal, edge) = (format!("runbox-internal-{tag}"), format!("runbox-edge-{tag}"));
    for (net, internal_only) in [(&internal, true), (&edge, false)] {
        let mut cmd = tool(paths, "podman");
        cmd.args(["network", "create"]);
        if internal_only {
            cmd.arg("--internal");
        }
        output(cmd.arg(net), "creating a network")?;
        rig.networks.push(net.clone());
    }
    let executor = format!("runbox-executor-{tag}");
    let mut run = tool(paths, "podman");
    run.args(["run", "-d", "--name", &executor])
        .args(HARDENED)
        .args(["--memory", "1664m", "--network", &internal])
        .args([
            "-e",
            "EXECUTOR_RUNTIMES=python,python-scientific",
            "-e",
            "EXECUTOR_CONCURRENCY=2",
        ])
        .args(["-e", "EXECUTOR_LOG_FORMAT=json"])
        .arg(EXECUTOR_IMAGE);
    output(&mut run, "starting the executor container")?;
    rig.containers.push(executor.clone());
    // By address: podman's CNI backend resolves container names only with
    // the dnsname plugin, which Debian installs only as a recommendation.
    let ip = address(paths, &executor, &internal)?;
    let gateway = format!("runbox-gateway-{tag}");
    let mut run = tool(paths, "podman");
    run.args(["run", "-d", "--name", &gateway])
        .args(HARDENED)
        .args(["--memory", "512m", "--network", &edge, "--network", &internal])
        .args([
            "-e",
            &format!("GATEWAY_EXECUTORS=http://{ip}:8080"),
            "-e",
            "GATEWAY_RATE_LIMIT_RPS=0",
        ])
        .arg(GATEWAY_IMAGE);
    output(&mut run, "starting the gateway container")?;
    rig.containers.push(gateway.clone());

    // The gateway at its address on the edge network, as a load balancer in
    // front of it would reach it: no published port, whose forwarding
    // podman's CNI backend sets up on both of the gateway's networks.
    let addr = format!("{}:8080", address(paths, &gateway, &edge)?);
    eprintln!("xtask: waiting (≤ 60 s) for the containerised gateway and executor on {addr}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, body)) = http(
            &addr,
            "POST",
            "/execute",
            r#"{"code":"print(6*7)"}"#,
            REPLY_TIMEOUT,
        ) && body.contains(r#""stdout":"42\n""#)
        {
            break;
        }
        if Instant::now() > deadline {
            let mut logs = String::new();
            for container in [&executor, &gateway] {
                let log = tool(paths, "podman")
                    .args(["logs", "--tail", "20", container])
                    .output()?;
                logs.push_str(&format!(
                    "{container}:\n{}{}",
                    String::from_utf8_lossy(&log.stdout),
                    String::from_utf8_lossy(&log.stderr)
                ));
            }
            bail!("no hello through the containers within 60 s; logs:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (what, body, want) in [
        (
            "numpy on python-scientific",
            r#"{"runtime":"python-scientific","code":"import numpy as np\nprint(int(np.arange(5).sum()))"}"#,
            r#""stdout":"10\n""#,
        ),
        (
            "an infinite loop",
            r#"{"code":"while True: pass","limits":{"timeout_ms":500}}"#,
            r#""status":"timeout""#,
        ),
        (
            "a memory bomb",
            r#"{"code":"b = bytearray(1 << 30)"}"#,
            r#""status":"memory_exceeded""#,
        ),
        (
            "reading /etc/passwd",
            r#"{"code":"open('/etc/passwd').read()"}"#,
            "FileNotFoundError",
        ),
        (
            "a socket to the host",
            r#"{"code":"import socket\nsocket.create_connection(('10.0.0.1', 80), timeout=1)"}"#,
            r#""status":"error""#,
        ),
    ] {
        let (code, got) = http(&addr, "POST", "/execute", body, REPLY_TIMEOUT)?;
        if code != 200 || !got.contains(want) {
            bail!("{what}: HTTP {code}, wanted {want} in {got}");
        }
        eprintln!("ok   {what}: {want}");
    }
    check_hardening(paths, &executor)?;
    eprintln!("xtask: images:");
    for (name, size) in images {
        eprintln!("  {name}: {:.0} MB", size as f64 / 1e6);
    }
    Ok(())
}

/// `container`'s IPv4 address on `network`.
fn address(paths: &Paths, container: &str, network: &str) -> Result<String> {
    let out = output(
        tool(paths, "podman").args([
            "inspect",
            "--format",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            container,
        ]),
        "reading a container's address",
    )?;
    let ip = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if ip.parse::<std::net::Ipv4Addr>().is_err() {
        bail!("{container} has no address on {network}: {ip:?}");
    }
    Ok(ip)
}

/// The executor's process as the kernel sees it: uid 65532, no
/// capabilities, no privilege escalation, a read-only root, and no route
/// out of its internal network.
fn check_hardening(paths: &Paths, container: &str) -> Result<()> {
    let inspect = |format: &str| -> Result<String> {
        let out = output(
            tool(paths, "podman").args(["inspect", "--format", format, container]),
            "inspecting the executor",
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let pid = inspect("{{.State.Pid}}")?;
    let proc_status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context("the executor's status")?;
    let field = |name: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let checks = [
        ("uid 65532", field("Uid:").iter().all(|u| *u == "65532")),
        (
            "no effective capabilities",
            field("CapEff:") == ["0000000000000000"],
        ),
        (
            "no bounding capabilities",
            field("CapBnd:") == ["0000000000000000"],
        ),
        ("no privilege escalation", field("NoNewPrivs:") == ["1"]),
        (
            "read-only root",
            inspect("{{.HostConfig.ReadonlyRootfs}}")? == "true",
        ),
    ];
    for (what, ok) in checks {
        if !ok {
            bail!("the executor container: not {what}:\n{proc_status}");
        }
        eprintln!("ok   executor: {what}");
    }
    let route = Command::new("nsenter")
        .args(["-t", &pid, "-n", "ip", "route", "get", "192.0.2.1"])
        .output()
        .context("running nsenter ip route")?;
    if route.status.success() {
        bail!(
            "the executor container has a route out: {}",
            String::from_utf8_lossy(&route.stdout)
        );
    }
    eprintln!("ok   executor: no route out of its internal network");
    Ok(())
}
