//! Processes for the tests: executors and gateways on ephemeral ports.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn guest_wasm() -> PathBuf {
    std::env::var_os("EXECUTOR_GUEST_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.runbox/guest/python.wasm"))
}

/// The executor binary, built beside the gateway by `cargo test --workspace`.
fn executor_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_gateway")).with_file_name("executor");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p executor`",
        path.display()
    );
    path
}

/// A child process that logs JSON to stdout; killed on drop.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        cmd.env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawning");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent
                    && let Some(addr) = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| {
                            v["fields"]["addr"]
                                .as_str()
                                .and_then(|a| a.parse::<SocketAddr>().ok())
                        })
                {
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the process reported its address");
        Proc { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub async fn wait_ready(&self) {
        wait_for(&self.url("/readyz"), 200).await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn wait_for(url: &str, status: u16) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await
            && r.status() == status
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never answered {status}");
}

/// An executor named `name` listening on `listen` (`127.0.0.1:0` for any port).
pub fn executor(name: &str, listen: &str, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(executor_binary());
    cmd.env("EXECUTOR_LISTEN", listen)
        .env("EXECUTOR_NAME", name)
        .env("EXECUTOR_GUEST_WASM", guest_wasm())
        .env("EXECUTOR_LOG_FORMAT", "json");
    if std::env::var_os("EXECUTOR_CACHE_DIR").is_none() {
        cmd.env("EXECUTOR_NO_CACHE", "true");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn(cmd)
}

/// A gateway with `env` (e.g. `GATEWAY_EXECUTORS`).
pub fn gateway(env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.env("GATEWAY_LISTEN", "127.0.0.1:0")
        .env("GATEWAY_LOG_FORMAT", "json")
        .env("GATEWAY_PROBE_INTERVAL_MS", "100")
        .env("EXECUTOR_GUEST_WASM", guest_wasm());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn(cmd)
}

/// Reads one gauge or counter value from a Prometheus text page.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

pub async fn ready_backends(gw: &Proc) -> f64 {
    let text = reqwest::get(gw.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(&text, "gateway_backends{state=\"ready\"}").unwrap_or(-1.0)
}

/// Waits until the gateway counts `n` ready backends.
pub async fn wait_backends(gw: &Proc, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ready_backends(gw).await == n as f64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the gateway never saw {n} ready backends (has {})",
        ready_backends(gw).await
    );
}

/// Sends `code` through `gw`; returns the status, the executor header and the body.
pub async fn execute(
    client: &reqwest::Client,
    gw: &Proc,
    code: &str,
) -> (u16, Option<String>, serde_json::Value) {
    let r = client
        .post(gw.url("/execute"))
        .json(&serde_json::json!({ "code": code }))
        .send()
        .await
        .expect("the gateway answered");
    let status = r.status().as_u16();
    let executor = r
        .headers()
        .get("x-runbox-executor")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, executor, r.json().await.unwrap_or_default())
}

pub fn tally(names: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for n in names {
        *counts.entry(n).or_default() += 1;
    }
    counts
}
