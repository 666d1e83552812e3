//! The service as a process for the xtask's own test stages (browser tests,
//! schemathesis): an embedded gateway on a free loopback port, ready before
//! it is handed out, killed on every path out.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::runtime_env;

/// Longest a gateway may take to answer `/readyz` with 200.
const READY_DEADLINE: Duration = Duration::from_secs(120);

/// A gateway process; killed (and reaped) on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `target/<profile>/gateway` in embedded mode (whatever the caller's
/// shell exports) with `env` on top, and waits, bounded, until `/readyz`
/// answers 200; fails at once if it exits first.
pub fn start_gateway(paths: &Paths, profile: &str, env: &[(&str, &str)]) -> Result<Server> {
    let binary = paths.target_dir.join(profile).join("gateway");
    if !binary.is_file() {
        bail!(
            "{} is missing: build the gateway ({profile}) first",
            binary.display()
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut cmd = Command::new(&binary);
    runtime_env(&mut cmd, paths);
    cmd.env_remove("GATEWAY_EXECUTORS")
        .env_remove("GATEWAY_DISCOVERY")
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        // Its metrics on a port of its own choosing: two may run at once.
        .env("GATEWAY_METRICS_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + READY_DEADLINE;
    while Instant::now() < deadline {
        if ready(port) {
            return Ok(server);
        }
        if let Some(exit) = server.child.try_wait()? {
            bail!("the gateway exited before it was ready: {exit}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "the gateway at {} was not ready within {READY_DEADLINE:?}",
        server.url
    )
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
