//! The service as a process for the xtask's own test stages (browser tests,
//! schemathesis): an embedded gateway on a free loopback port, ready before
//! it is handed out, killed on every path out.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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

/// `GET /readyz` answers 200.
fn ready(port: u16) -> bool {
    let addr = format!("127.0.0.1:{port}");
    matches!(
        http(&addr, "GET", "/readyz", "", Duration::from_secs(2)),
        Ok((200, _))
    )
}

/// One HTTP/1.1 request with `Connection: close` (a plain exchange, no
/// client needed), its reply read for at most `timeout` between bytes; the
/// status and body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let code = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("an HTTP status line")?;
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((code, body))
}
