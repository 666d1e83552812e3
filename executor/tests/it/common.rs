//! Shared helpers: one loaded sandbox per test binary, and executor processes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use executor::limits::Limits;
use executor::sandbox::{EngineOptions, Job, Outcome, Sandbox, Status};
use tokio::sync::OnceCell;

pub fn guest_wasm() -> PathBuf {
    std::env::var_os("EXECUTOR_GUEST_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.runbox/guest/python.wasm"))
}

pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("EXECUTOR_CACHE_DIR").map(PathBuf::from)
}

static SANDBOX: OnceCell<Sandbox> = OnceCell::const_new();

/// The sandbox shared by the in-process tests (each run still gets a fresh
/// store and instance; only the compiled component is shared).
pub async fn sandbox() -> &'static Sandbox {
    SANDBOX
        .get_or_init(|| async {
            let opts = EngineOptions {
                cache_dir: cache_dir(),
                epoch_tick: Duration::from_millis(5),
                meter_fuel: true,
            };
            Sandbox::load(&guest_wasm(), &opts)
                .await
                .unwrap_or_else(|e| panic!("loading the guest (run `cargo xtask guest`): {e}"))
        })
        .await
}

/// Generous limits for tests that are not about limits.
pub fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(10),
        fuel: 20_000_000_000,
        memory_bytes: 256 << 20,
        output_bytes: 64 << 10,
    }
}

pub async fn run_job(code: &str, stdin: &str, args: &[&str], limits: Limits) -> Outcome {
    let job = Job {
        code: code.to_owned(),
        stdin: stdin.as_bytes().to_vec(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        limits,
    };
    sandbox().await.execute(&job).await.expect("no host fault")
}

pub async fn run(code: &str) -> Outcome {
    run_job(code, "", &[], limits()).await
}

pub async fn run_limited(code: &str, limits: Limits) -> Outcome {
    run_job(code, "", &[], limits).await
}

pub fn stdout(o: &Outcome) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Outcome) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the outcome's status, printing the run's output when it differs.
#[track_caller]
pub fn assert_status(o: &Outcome, status: Status) {
    assert_eq!(
        o.status,
        status,
        "exit_code={:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.exit_code,
        stdout(o),
        stderr(o)
    );
}

/// After a hostile snippet: the same sandbox still runs ordinary code.
pub async fn assert_still_serves() {
    let o = run("print('alive')").await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "alive\n");
}

/// A real executor process on 127.0.0.1 with an ephemeral port; killed on drop.
pub struct ExecutorProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ExecutorProcess {
    /// Starts the binary with `env` on top of the test defaults and waits until
    /// it listens (not until it is ready: see [`ExecutorProcess::wait_ready`]).
    pub fn start(env: &[(&str, &str)]) -> ExecutorProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_executor"));
        cmd.env("EXECUTOR_LISTEN", "127.0.0.1:0")
            .env("EXECUTOR_GUEST_WASM", guest_wasm())
            .env("EXECUTOR_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match cache_dir() {
            Some(dir) => cmd.env("EXECUTOR_CACHE_DIR", dir),
            None => cmd.env("EXECUTOR_NO_CACHE", "true"),
        };
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning the executor binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    let addr = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v["fields"]["addr"].as_str().map(str::to_owned))
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    if let Some(addr) = addr {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the executor reported its listening address");
        ExecutorProcess { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("executor at {} never became ready", self.addr);
    }

    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
    }
}

impl Drop for ExecutorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
