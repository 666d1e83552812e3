//! runbox benchmarks, all measured side by side in one run (the machine is
//! shared and noisy: compare ratios, not absolute times). Prints Markdown.
//!
//! `cargo xtask bench` runs this with the guest built and cached; by hand:
//! `EXECUTOR_GUEST_WASM=… EXECUTOR_CACHE_DIR=… cargo bench -p gateway --bench runbox -- 300`
//! (needs feature `embedded`, the default: it loads the sandbox in-process).

#![forbid(unsafe_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use executor::sandbox::{Job, Status};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

const HELLO: &str = "print('hi')";
const CPU: &str = "n = 0\nfor i in range(300_000):\n    n += i * i\nprint(n)";

/// Latency figures of one case.
struct Figures {
    median: Duration,
    p99: Duration,
    per_sec: f64,
}

fn figures(mut samples: Vec<Duration>, wall: Duration) -> Figures {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Figures {
        median: at(0.5),
        p99: at(0.99),
        per_sec: samples.len() as f64 / wall.as_secs_f64(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn post(client: &HttpClient, url: &str, body: &Bytes) -> (u16, Bytes) {
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .unwrap();
    let response = client.request(request).await.expect("server answered");
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

/// `n` sequential requests, then `n` more from `workers` concurrent clients
/// (for throughput). Returns (sequential figures, concurrent requests/s).
async fn http_case(client: &HttpClient, url: &str, code: &str, n: usize, workers: usize) -> (Figures, f64) {
    let body = Bytes::from(serde_json::json!({ "code": code }).to_string());
    for _ in 0..5 {
        post(client, url, &body).await;
    }
    let mut samples = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let (status, _) = post(client, url, &body).await;
        assert_eq!(status, 200);
        samples.push(t.elapsed());
    }
    let seq = figures(samples, wall.elapsed());
    let wall = Instant::now();
    let per_worker = n.div_ceil(workers);
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    assert_eq!(post(&client, &url, &body).await.0, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (per_worker * workers) as f64 / wall.elapsed().as_secs_f64();
    (seq, rate)
}

async fn in_process(sandbox: &executor::sandbox::Sandbox, code: &str, n: usize) -> Figures {
    let job = Job {
        code: code.to_owned(),
        stdin: Vec::new(),
        args: Vec::new(),
        limits: runbox_api::Limits {
            timeout: Duration::from_secs(30),
            fuel: u64::MAX / 4,
            memory_bytes: 256 << 20,
            output_bytes: 1 << 16,
        },
    };
    for _ in 0..5 {
        sandbox.execute(&job).await.unwrap();
    }
    let mut samples = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let outcome = sandbox.execute(&job).await.unwrap();
        assert_eq!(outcome.status, Status::Ok);
        samples.push(t.elapsed());
    }
    figures(samples, wall.elapsed())
}

/// The real interpreter behind `python3` (resolving pyenv-style shims, which
/// would otherwise add a shell script to every spawn).
fn python() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!path.is_empty()).then_some(path)
}

/// A native `python3` process spawned per execution.
fn native(python: &str, code: &str, n: usize) -> Figures {
    let mut samples = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let out = Command::new(python)
            .arg("-c")
            .arg(code)
            .output()
            .expect("python3 runs");
        assert!(out.status.success());
        samples.push(t.elapsed());
    }
    figures(samples, wall.elapsed())
}

/// Native CPython's time for `code` alone: one process runs it `n` times and
/// reports each run's `perf_counter` duration (no process start-up).
fn native_compute(python: &str, code: &str, n: usize) -> Figures {
    let harness = format!(
        "import io, sys, time\ncode = compile({code:?}, 'main.py', 'exec')\nout = sys.stdout\nfor _ in range({n}):\n    sys.stdout = io.StringIO()\n    t = time.perf_counter()\n    exec(code, {{'__name__': '__main__'}})\n    d = time.perf_counter() - t\n    sys.stdout = out\n    print(d)\n"
    );
    let wall = Instant::now();
    let out = Command::new(python)
        .arg("-c")
        .arg(harness)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let samples = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .collect();
    figures(samples, wall.elapsed())
}

/// A stand-in executor that answers at once: isolates the gateway's cost.
async fn trivial_upstream() -> std::net::SocketAddr {
    use axum::routing::{get, post};
    let body = r#"{"status":"ok","stdout":"hi\n","stderr":"","exit_code":0}"#;
    let app = axum::Router::new()
        .route(
            "/execute",
            post(move || async move { ([("content-type", "application/json")], body) }),
        )
        .route("/readyz", get(|| async { "ready\n" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn gateway_over(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    let config = gateway::config::Config::try_parse_from([
        "gateway",
        "--executors",
        &format!("http://{upstream}"),
        "--rate-limit-rps",
        "0",
        // 32 clients from one address, against a stand-in whose answers
        // carry no `duration_ms`: no per-client limits, as no rate limit.
        "--client-max-inflight",
        "0",
        "--client-budget-seconds",
        "0",
        "--probe-interval-ms",
        "50",
    ])
    .unwrap();
    let gw = gateway::Gateway::from_config(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::spawn(gateway::run(
        (listener, metrics),
        gw.clone(),
        std::future::pending(),
    ));
    while gw.backends().ready.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    addr
}

async fn executor_server() -> (std::net::SocketAddr, executor::Executor) {
    let config = executor::config::Config::try_parse_from(["executor"]).unwrap();
    let ex = executor::Executor::new(&config.runtime);
    ex.load()
        .await
        .expect("loading the guest (set EXECUTOR_GUEST_WASM)");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::spawn(executor::run(
        (listener, metrics),
        ex.clone(),
        config.edge.edge(),
        std::future::pending(),
    ));
    (addr, ex)
}

/// The executor's guest loaded in this process, with or without fuel metering.
async fn load_sandbox(ex: &executor::Executor, meter_fuel: bool) -> executor::sandbox::Sandbox {
    executor::sandbox::Sandbox::load(
        &ex.args().guest_wasm,
        &executor::sandbox::EngineOptions {
            cache_dir: ex.args().cache_dir(),
            epoch_tick: Duration::from_millis(5),
            meter_fuel,
            clock_resolution: Duration::from_micros(ex.args().clock_resolution_us),
            pool: executor::runtimes::python::pool_options(ex.args()),
        },
    )
    .await
    .expect("loading the guest (set EXECUTOR_GUEST_WASM)")
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let client: HttpClient =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new());

    let (exec_addr, ex) = executor_server().await;
    let sandbox = load_sandbox(&ex, true).await;
    let python_version = sandbox
        .python_version()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned();
    let exec_url = format!("http://{exec_addr}/execute");

    println!("### Executions ({n} per case, sequential; guest CPython {python_version})\n");
    println!(
        "| case | median ms | p99 ms | exec/s | native `python3` spawn median ms | native p99 ms | native exec/s | speed-up vs native (median) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let python = python();
    let mut ratios = Vec::new();
    for (label, code) in [("`print('hi')`", HELLO), ("CPU loop (300k iterations)", CPU)] {
        let native = python.as_deref().map(|p| native(p, code, n.min(200)));
        let inproc = in_process(&sandbox, code, n).await;
        let (http, http_rate) = http_case(&client, &exec_url, code, n, cpus).await;
        for (how, f) in [("in-process", &inproc), ("HTTP", &http)] {
            let (nm, np, nr, ratio) = match &native {
                Some(nf) => (
                    ms(nf.median),
                    ms(nf.p99),
                    format!("{:.0}", nf.per_sec),
                    format!("{:.2}×", nf.median.as_secs_f64() / f.median.as_secs_f64()),
                ),
                None => ("n/a".into(), "n/a".into(), "n/a".into(), "n/a".into()),
            };
            println!(
                "| {label}, {how} | {} | {} | {:.0} | {nm} | {np} | {nr} | {ratio} |",
                ms(f.median),
                ms(f.p99),
                f.per_sec
            );
        }
        ratios.push((label, http_rate));
    }
    println!();
    for (label, rate) in ratios {
        println!("- {label} over HTTP with {cpus} concurrent clients: {rate:.0} exec/s");
    }

    // Where the CPU-bound slowdown goes: the same loop without fuel metering.
    let unmetered = load_sandbox(&ex, false).await;
    let cpu_n = n.min(100);
    let metered_cpu = in_process(&sandbox, CPU, cpu_n).await;
    let unmetered_cpu = in_process(&unmetered, CPU, cpu_n).await;
    let native_cpu = python.as_deref().map(|p| native_compute(p, CPU, cpu_n));
    println!("\n### Where CPU-bound time goes (CPU loop, in-process, {cpu_n} runs each)\n");
    println!("| configuration | median ms | vs native |");
    println!("|---|---|---|");
    let vs = |f: &Figures| {
        native_cpu.as_ref().map_or("n/a".to_owned(), |nf| {
            format!("{:.2}×", f.median.as_secs_f64() / nf.median.as_secs_f64())
        })
    };
    if let Some(nf) = &native_cpu {
        println!(
            "| native CPython, the loop alone (no process start) | {} | 1.00× |",
            ms(nf.median)
        );
    }
    println!(
        "| guest, fuel metering on (production) | {} | {} |",
        ms(metered_cpu.median),
        vs(&metered_cpu)
    );
    println!(
        "| guest, fuel metering off | {} | {} |",
        ms(unmetered_cpu.median),
        vs(&unmetered_cpu)
    );
    println!(
        "\nFuel metering costs {:.0}% on this loop.",
        (metered_cpu.median.as_secs_f64() / unmetered_cpu.median.as_secs_f64() - 1.0) * 100.0
    );

    let upstream = trivial_upstream().await;
    let gw = gateway_over(upstream).await;
    let direct_url = format!("http://{upstream}/execute");
    let via_url = format!("http://{gw}/execute");
    let (direct, direct_rate) = http_case(&client, &direct_url, HELLO, n * 4, 32).await;
    let (via, via_rate) = http_case(&client, &via_url, HELLO, n * 4, 32).await;
    let added = via.median.saturating_sub(direct.median);
    println!(
        "\n### Gateway overhead (trivial upstream that answers at once, {} requests)\n",
        n * 4
    );
    println!("| path | median ms | p99 ms | req/s, 1 client | req/s, 32 clients |");
    println!("|---|---|---|---|---|");
    println!(
        "| client → upstream | {} | {} | {:.0} | {direct_rate:.0} |",
        ms(direct.median),
        ms(direct.p99),
        direct.per_sec
    );
    println!(
        "| client → gateway → upstream | {} | {} | {:.0} | {via_rate:.0} |",
        ms(via.median),
        ms(via.p99),
        via.per_sec
    );
    println!(
        "\nMedian latency added by the gateway: **{} ms** (goal ≤ 0.3 ms).",
        ms(added)
    );
}
