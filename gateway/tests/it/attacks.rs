//! Hostile clients against a real gateway process in front of a real
//! executor, on loopback: slowloris, slow bodies, responses never read, and
//! a flood of idle connections. Attackers connect from 127.0.0.2–9 (all of
//! 127.0.0.0/8 is loopback on Linux), the well-behaved client from
//! 127.0.0.1; during each attack its `print('hi')` must be served, and the
//! gateway's resident memory must stay under a stated bound. Each test
//! prints the probe latencies and the gateway's RSS (run with
//! `--nocapture` to see them). Every attack is bounded in count and time
//! and ends by itself.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use runbox_api::{ExecuteRequest, Status};
use testkit::Proc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const WITHIN: Duration = Duration::from_secs(30);

/// The gateway's resident memory must stay under this during the attacks
/// that hold no response bodies (its Kubernetes pod has 512 MiB).
const RSS_BOUND_MIB: f64 = 192.0;

fn attacker(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// One executor and a static gateway over it with short edge timeouts (so
/// each attack ends within seconds) and `env` on top.
async fn door(env: &[(&str, &str)]) -> (Proc, Proc) {
    let ex = testkit::executor("target")
        .env("EXECUTOR_CONCURRENCY", "2")
        .ready()
        .await;
    let gw = testkit::gateway()
        .executors(&[&ex])
        .envs(&[
            ("GATEWAY_RATE_LIMIT_RPS", "0"),
            ("GATEWAY_HEADER_TIMEOUT_MS", "2000"),
            ("GATEWAY_BODY_TIMEOUT_MS", "2000"),
            ("GATEWAY_WRITE_TIMEOUT_MS", "2000"),
            ("GATEWAY_IDLE_TIMEOUT_MS", "3000"),
        ])
        .envs(env)
        .ready()
        .await;
    gw.wait_metric("gateway_backends{state=\"ready\"}", WITHIN, |v| v == Some(1.0))
        .await;
    (ex, gw)
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// A connection whose receive window is a few KiB: a client that does not
/// read stops the server's writes almost at once.
async fn small_window_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// `print('hi')` from 127.0.0.1 on a fresh connection: asserts it is served
/// and returns its latency.
async fn probe(gw: &Proc) -> Duration {
    let client = testkit::http::client_from(attacker(1));
    let started = Instant::now();
    let reply = testkit::http::execute(&client, &gw.base(), &ExecuteRequest::code("print('hi')"))
        .await
        .unwrap_or_else(|e| panic!("the probe got no answer: {e}; gateway:\n{}", gw.logs()));
    let latency = started.elapsed();
    assert_eq!(reply.status, 200, "the probe was refused: {}", reply.text());
    let result = reply.response();
    assert_eq!((result.status, result.stdout.as_str()), (Status::Ok, "hi\n"));
    latency
}

/// Probes `n` times in a row; prints the latencies under `attack`.
async fn probes(gw: &Proc, attack: &str, n: usize) {
    let mut latencies = Vec::new();
    for _ in 0..n {
        latencies.push(probe(gw).await);
    }
    latencies.sort();
    println!(
        "{attack}: print('hi') served {n}/{n}; latency median {:.1} ms, max {:.1} ms",
        ms(latencies[n / 2]),
        ms(latencies[n - 1])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (VmRSS, VmHWM) of `pid` in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn report_rss(gw: &Proc, attack: &str, bound: f64) {
    let (rss, peak) = rss_mib(gw.pid());
    println!("{attack}: gateway RSS {rss:.1} MiB now, {peak:.1} MiB peak (bound {bound:.0} MiB)");
    assert!(
        peak < bound,
        "{attack}: the gateway's peak RSS {peak:.1} MiB is over {bound} MiB"
    );
}

/// Resolves once the server has closed `conn` (EOF or reset), reading and
/// dropping anything it sends first; `false` if it was still open after `within`.
async fn closed_by_server(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all).await.is_ok()
}

/// Reads an HTTP/1.1 response head; its status code.
async fn status_of(conn: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(WITHIN, conn.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => return None,
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1)?.parse().ok()
}

async fn edge_metric(gw: &Proc, series: &str) -> f64 {
    gw.metric(series)
        .await
        .unwrap_or_else(|| panic!("{series} is exported"))
}

/// Slowloris: 300 connections trickling a request head a byte at a time.
/// The per-client connection cap closes all but 64 at once, the header
/// timeout the rest; nothing the attacker does keeps a socket open.
#[tokio::test]
async fn slowloris_is_capped_per_client_and_cut_by_the_header_timeout() {
    const N: usize = 300;
    let (_ex, gw) = door(&[]).await;
    let addr = gw.addr();
    let mut tricklers = Vec::new();
    for _ in 0..N {
        let mut conn = connect_from(attacker(2), addr).await.unwrap();
        tricklers.push(tokio::spawn(async move {
            let head = b"POST /execute HTTP/1.1\r\nhost: runbox\r\nx-slow: ".to_vec();
            // One byte at a time until the server closes the connection
            // (bounded: the header timeout is 2 s, and this gives up at 30 s).
            let started = Instant::now();
            for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                if conn.write_all(&[*byte]).await.is_err() || started.elapsed() > WITHIN {
                    break;
                }
                if closed_by_server(&mut conn, Duration::from_millis(200)).await {
                    return true;
                }
            }
            closed_by_server(&mut conn, Duration::from_secs(1)).await
        }));
    }
    probes(&gw, "slowloris (300 connections)", 10).await;
    report_rss(&gw, "slowloris", RSS_BOUND_MIB);
    let mut closed = 0;
    for t in tricklers {
        closed += usize::from(t.await.unwrap());
    }
    assert_eq!(closed, N, "every slowloris connection is closed by the server");
    let refused = edge_metric(&gw, "gateway_connections_refused_total{reason=\"client\"}").await;
    let timed_out = edge_metric(&gw, "gateway_connections_closed_total{reason=\"header_timeout\"}").await;
    println!(
        "slowloris: {refused} refused at accept (per-client cap 64), {timed_out} cut by the header timeout"
    );
    assert!(refused > 0.0, "the per-client cap refused some");
    // (Other clients' idle keep-alive connections, such as the readiness
    // poll's, may time out too.)
    assert!(
        refused + timed_out >= N as f64,
        "each one either refused or timed out"
    );
}

/// Slow bodies: 32 uploads announce 4 MiB, send 1 KiB and stall, with the
/// gateway's concurrency cap at 8. They hold no concurrency permit (it is
/// taken once a body has arrived), so others are served; each stalled
/// upload gets 408 `request_timeout` at the body deadline.
#[tokio::test]
async fn slow_bodies_hold_no_permit_and_end_with_408() {
    const N: usize = 32;
    let (_ex, gw) = door(&[("GATEWAY_MAX_CONCURRENCY", "8")]).await;
    let addr = gw.addr();
    let mut uploads = Vec::new();
    for _ in 0..N {
        let mut conn = connect_from(attacker(2), addr).await.unwrap();
        let head = format!(
            "POST /execute HTTP/1.1\r\nhost: runbox\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            4 << 20
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&[b' '; 1024]).await.unwrap();
        uploads.push(conn);
    }
    // Every stalled upload is being read (its first KiB charged to the
    // body budget) before the probes start.
    gw.wait_metric("gateway_buffered_bytes", WITHIN, |v| v == Some((N * 1024) as f64))
        .await;
    probes(&gw, "slow bodies (32 stalled 4 MiB uploads, concurrency 8)", 10).await;
    report_rss(&gw, "slow bodies", RSS_BOUND_MIB);
    for conn in &mut uploads {
        assert_eq!(status_of(conn).await, Some(408), "a stalled upload ends with 408");
    }
    assert_eq!(edge_metric(&gw, "gateway_body_timeouts_total").await, N as f64);
    gw.wait_metric("gateway_buffered_bytes", WITHIN, |v| v == Some(0.0))
        .await;
}

/// A response of ~12.6 MiB (1 MiB of control characters on each stream,
/// JSON-escaped six bytes each).
fn big_response_request() -> String {
    let code = "import sys\nsys.stdout.write('\\x01' * (1 << 20))\nsys.stderr.write('\\x01' * (1 << 20))";
    let body = serde_json::json!({"code": code, "limits": {"output_bytes": 1 << 20}}).to_string();
    format!(
        "POST /execute HTTP/1.1\r\nhost: runbox\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Responses never read: one client asks for 40 responses of ~12.6 MiB one
/// after another and reads only their heads. Its unread responses count
/// against its share of the body budget (a quarter of 64 MiB here), so
/// once it holds that much it is refused (429) until the write timeout
/// closes its connections and frees them; others are served meanwhile and
/// the gateway's memory stays bounded (without the bound, 40 × 12.6 MiB
/// would be held).
#[tokio::test]
async fn unread_responses_are_bounded_by_the_budget_and_cut_by_the_write_timeout() {
    const N: usize = 40;
    let (_ex, gw) = door(&[
        ("GATEWAY_MAX_BUFFERED_BYTES", &(64u64 << 20).to_string()),
        // Long enough that the whole attack runs while the first responses
        // are still held.
        ("GATEWAY_WRITE_TIMEOUT_MS", "20000"),
    ])
    .await;
    let addr = gw.addr();
    let request = big_response_request();
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..N {
        let mut conn = small_window_from(attacker(2), addr).await;
        conn.write_all(request.as_bytes()).await.unwrap();
        statuses.push(status_of(&mut conn).await);
        held.push(conn);
    }
    let ok = statuses.iter().filter(|s| **s == Some(200)).count();
    let refused = statuses.iter().filter(|s| **s == Some(429)).count();
    println!("never-read: {ok} responses of ~12.6 MiB held unread, {refused} refused with 429");
    assert_eq!(ok + refused, N, "each is served or refused: {statuses:?}");
    assert!(
        ok >= 1 && refused >= 1,
        "some are served, the rest refused: {statuses:?}"
    );
    probes(&gw, "never-read responses", 10).await;
    // The attacker's share (16 MiB) is full after two responses; one more
    // may be in flight when the first are charged: at most 4 × 12.6 MiB.
    report_rss(&gw, "never-read responses", RSS_BOUND_MIB);
    drop(held);
    gw.wait_metric("gateway_buffered_bytes", WITHIN, |v| v == Some(0.0))
        .await;
}

/// The write timeout itself: a client that reads nothing of a ~12.6 MiB
/// response is disconnected once the server's writes make no progress
/// for the timeout, and its bytes are let go.
#[tokio::test]
async fn a_response_never_read_is_cut_by_the_write_timeout() {
    let (_ex, gw) = door(&[]).await;
    let mut conn = small_window_from(attacker(2), gw.addr()).await;
    conn.write_all(big_response_request().as_bytes()).await.unwrap();
    assert_eq!(status_of(&mut conn).await, Some(200));
    gw.wait_metric(
        "gateway_connections_closed_total{reason=\"write_timeout\"}",
        WITHIN,
        |v| v == Some(1.0),
    )
    .await;
    gw.wait_metric("gateway_buffered_bytes", WITHIN, |v| v == Some(0.0))
        .await;
    assert!(
        closed_by_server(&mut conn, WITHIN).await,
        "the connection is closed"
    );
}

/// Idle connections: 480 connections from eight addresses (60 each, under
/// the per-client cap) send nothing. Each is closed at the idle timeout;
/// the well-behaved client is served meanwhile.
#[tokio::test]
async fn an_idle_connection_flood_is_closed_at_the_idle_timeout() {
    const PER_ADDRESS: usize = 60;
    let (_ex, gw) = door(&[]).await;
    let mut idle = Vec::new();
    for a in 2..10 {
        for _ in 0..PER_ADDRESS {
            idle.push(connect_from(attacker(a), gw.addr()).await.unwrap());
        }
    }
    let n = idle.len();
    gw.wait_metric("gateway_connections_open", WITHIN, |v| {
        v.is_some_and(|v| v >= n as f64)
    })
    .await;
    probes(&gw, "idle flood (480 connections)", 10).await;
    report_rss(&gw, "idle flood", RSS_BOUND_MIB);
    for conn in &mut idle {
        assert!(
            closed_by_server(conn, WITHIN).await,
            "an idle connection is closed"
        );
    }
    assert_eq!(
        edge_metric(&gw, "gateway_connections_closed_total{reason=\"idle\"}").await,
        n as f64
    );
    gw.wait_metric("gateway_connections_open", WITHIN, |v| v == Some(0.0))
        .await;
}

/// A request head past the read buffer (64 KiB) is answered 431 and the
/// connection closed, before any route runs.
#[tokio::test]
async fn an_oversized_request_head_is_431() {
    let (_ex, gw) = door(&[]).await;
    let mut conn = connect_from(attacker(2), gw.addr()).await.unwrap();
    let head = format!(
        "GET /runtimes HTTP/1.1\r\nhost: runbox\r\nx-big: {}\r\n\r\n",
        "a".repeat(80 << 10)
    );
    // The server may close before taking all of it; the answer is what counts.
    let _ = conn.write_all(head.as_bytes()).await;
    assert_eq!(status_of(&mut conn).await, Some(431));
    assert!(closed_by_server(&mut conn, WITHIN).await);
    probe(&gw).await;
}
