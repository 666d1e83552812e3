//! The service as a process for the xtask's own test stages (browser tests,
//! schemathesis): an embedded gateway on a free loopback port, ready before
//! it is handed out, killed on every path out.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::runtime_env;

/// Longest a gateway may take to answer `/readyz` with 200.
const READY_DEADLINE: Duration = Duration::from_secs(120);
/// The longest one connect may take (see [`exchange`]).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

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
    exchange(addr, method, path, body, timeout).map(|r| (r.status, r.body))
}

/// A reply of [`exchange`].
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    /// The header block, as sent.
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The first header `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// [`http`] with the reply's headers.
pub(crate) fn exchange(addr: &str, method: &str, path: &str, body: &str, timeout: Duration) -> Result<Reply> {
    // A bounded connect: a SYN sent while a container's port forwarding is
    // still being set up can go unanswered, and the kernel's retries would
    // hold one attempt for minutes; the caller's next attempt starts fresh.
    let to = addr
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("no address for {addr}"))?;
    let mut stream = TcpStream::connect_timeout(&to, timeout.min(CONNECT_TIMEOUT))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("an HTTP status line")?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    Ok(Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}
