//! runbox benchmarks, all measured side by side in one run (the machine is
//! shared and noisy: compare ratios, not absolute times). Prints Markdown.
//!
//! `cargo xtask bench` runs this with the guest built and cached; by hand:
//! `EXECUTOR_GUEST_WASM=… EXECUTOR_CACHE_DIR=… cargo bench -p gateway --bench runbox -- 300`
//! (needs feature `embedded`, the default: it loads the sandbox in-process).

#![forbid(unsafe_code)]

use std::ffi::OsStr;
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

/// A pooled HTTP/1.1 client; `nodelay` as curl, browsers and the gateway
/// set it (hyper's connector leaves Nagle on by default).
fn http_client(nodelay: bool) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(nodelay);
    Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}

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
        samples.push(timed_post(client, url, &body).await);
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

fn job(code: &str, memory_bytes: u64, output_bytes: u64) -> Job {
    let limits = runbox_api::Limits {
        timeout: Duration::from_secs(30),
        fuel: u64::MAX / 4,
        memory_bytes,
        output_bytes,
        files: Default::default(),
    };
    Job::code(code, limits)
}

async fn in_process(sandbox: &executor::sandbox::Sandbox, code: &str, n: usize) -> Figures {
    let job = job(code, 256 << 20, 1 << 16);
    for _ in 0..5 {
        sandbox.execute(&job).await.unwrap();
    }
    let mut samples = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n {
        samples.push(once(sandbox, &job).await);
    }
    figures(samples, wall.elapsed())
}

/// A native `python3 -I -S` process spawned per execution (isolated mode,
/// no `site`: the cheapest start CPython has, the goals' yardstick).
fn native(python: &OsStr, code: &str, n: usize) -> Figures {
    let mut samples = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let out = Command::new(python)
            .args(["-I", "-S", "-c"])
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
fn native_compute(python: &OsStr, code: &str, n: usize) -> Figures {
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

/// The executor's guest loaded in this process, with or without fuel
/// metering, allocating as the server does.
async fn load_sandbox(ex: &executor::Executor, meter_fuel: bool) -> executor::sandbox::Sandbox {
    load_pooled(ex, meter_fuel, executor::runtimes::pool_options(ex.args())).await
}

/// The same with `pool` (`None`: on demand).
async fn load_pooled(
    ex: &executor::Executor,
    meter_fuel: bool,
    pool: Option<executor::sandbox::PoolOptions>,
) -> executor::sandbox::Sandbox {
    load_tuned(ex, meter_fuel, Default::default(), pool).await
}

/// The same with code generation levers (compiled on first use, ~15 s each,
/// then cached like the production artifact).
async fn load_tuned(
    ex: &executor::Executor,
    meter_fuel: bool,
    tuning: executor::sandbox::Tuning,
    pool: Option<executor::sandbox::PoolOptions>,
) -> executor::sandbox::Sandbox {
    executor::sandbox::Sandbox::load(
        &ex.args().guest_wasm,
        executor::sandbox::Entry::Snippet,
        None,
        &executor::sandbox::EngineOptions {
            cache_dir: ex.args().cache_dir(),
            epoch_tick: Duration::from_millis(5),
            meter_fuel,
            tuning,
            cpu_target: ex.args().cpu_target,
            clock_resolution: Duration::from_micros(ex.args().clock_resolution_us),
            pool,
            exceptions: false,
        },
    )
    .await
    .expect("loading the guest (set EXECUTOR_GUEST_WASM)")
}

/// Samples of several cases taken in turns, `rounds` blocks each, so slow
/// phases of a noisy machine fall on every case alike.
struct Interleaved<const N: usize> {
    samples: [Vec<Duration>; N],
    walls: [Duration; N],
}

impl<const N: usize> Interleaved<N> {
    fn new() -> Self {
        Interleaved {
            samples: std::array::from_fn(|_| Vec::new()),
            walls: [Duration::ZERO; N],
        }
    }

    fn figures(self) -> [Figures; N] {
        let mut walls = self.walls.into_iter();
        self.samples.map(|s| figures(s, walls.next().unwrap_or_default()))
    }
}

/// One run of `job` in `sandbox`, timed.
async fn once(sandbox: &executor::sandbox::Sandbox, job: &Job) -> Duration {
    let t = Instant::now();
    let outcome = sandbox.execute(job).await.unwrap();
    assert_eq!(outcome.status, Status::Ok, "{:?}", outcome.stderr);
    t.elapsed()
}

/// `job` in each sandbox, interleaved (after 5 runs each to warm up).
async fn interleaved<const N: usize>(
    sandboxes: [&executor::sandbox::Sandbox; N],
    job: &Job,
    n: usize,
) -> [Figures; N] {
    interleaved_cases(sandboxes.map(|s| (s, job)), n).await
}

/// Each (sandbox, job) case, interleaved (after 5 runs each to warm up).
async fn interleaved_cases<const N: usize>(
    cases: [(&executor::sandbox::Sandbox, &Job); N],
    n: usize,
) -> [Figures; N] {
    let mut runs = Interleaved::<N>::new();
    for (sandbox, job) in cases {
        for _ in 0..5 {
            once(sandbox, job).await;
        }
    }
    let rounds = 10;
    for _ in 0..rounds {
        for (i, (sandbox, job)) in cases.iter().enumerate() {
            let wall = Instant::now();
            for _ in 0..n.div_ceil(rounds) {
                runs.samples[i].push(once(sandbox, job).await);
            }
            runs.walls[i] += wall.elapsed();
        }
    }
    runs.figures()
}

/// `print('hi')` in each sandbox, interleaved.
async fn hello_in<const N: usize>(sandboxes: [&executor::sandbox::Sandbox; N], n: usize) -> [Figures; N] {
    interleaved(sandboxes, &job(HELLO, 256 << 20, 1 << 16), n).await
}

/// This process's resident set, bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb << 10)
}

/// Resident memory of `k` runs of `job` held in flight at once: (idle
/// before, peak while they ran, idle after), sampled every 2 ms.
async fn resident(sandbox: &executor::sandbox::Sandbox, job: &Job, k: usize) -> (u64, u64, u64) {
    sandbox.execute(job).await.unwrap();
    let before = rss();
    let done = std::sync::atomic::AtomicBool::new(false);
    let runs = async {
        let outcomes = futures::future::join_all((0..k).map(|_| sandbox.execute(job))).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        outcomes
    };
    let sampler = async {
        let mut peak = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        peak
    };
    let (outcomes, peak) = tokio::join!(runs, sampler);
    for o in outcomes {
        assert_eq!(o.unwrap().status, Status::Ok);
    }
    (before, peak, rss())
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1 << 20))
}

/// Router layers without a socket: axum, the JSON both ways, admission.
async fn oneshot(router: &axum::Router, body: &Bytes) -> Duration {
    use tower::ServiceExt;
    let request = http::Request::post("/execute")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.clone()))
        .unwrap();
    let t = Instant::now();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    t.elapsed()
}

async fn timed_post(client: &HttpClient, url: &str, body: &Bytes) -> Duration {
    let t = Instant::now();
    let (status, _) = post(client, url, body).await;
    assert_eq!(status, 200);
    t.elapsed()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let client = http_client(true);

    let (exec_addr, ex) = executor_server().await;
    let sandbox = load_sandbox(&ex, true).await;
    let python_version = sandbox
        .python_version()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned();
    let exec_url = format!("http://{exec_addr}/execute");
    let python = testkit::process::real_python3();

    // `RUNBOX_BENCH_PROFILE=hello|http|files`: only that loop (or the
    // filesystem section), for a profiler
    // (`perf record -g target/release/deps/runbox-… 3000`).
    match std::env::var("RUNBOX_BENCH_PROFILE").as_deref() {
        Ok("hello") => {
            let f = in_process(&sandbox, HELLO, n).await;
            println!("in-process hello: median {} ms", ms(f.median));
            return;
        }
        Ok("http") => {
            let (f, _) = http_case(&client, &exec_url, HELLO, n, 1).await;
            println!("HTTP hello: median {} ms", ms(f.median));
            return;
        }
        Ok("files") => {
            filesystem(&ex, &sandbox, n).await;
            return;
        }
        Ok("scientific") => {
            scientific(&ex, &sandbox, n).await;
            return;
        }
        _ => {}
    }

    // The yardstick of the goals, timed first and again at the end.
    let native_hello = python.map(|p| native(p, HELLO, n.min(200)));

    println!("### Executions ({n} per case, sequential; guest CPython {python_version})\n");
    println!(
        "| case | median ms | p99 ms | exec/s | native `python3 -I -S` spawn median ms | native p99 ms | native exec/s | speed-up vs native (median) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    let mut hello = None;
    for (label, code) in [("`print('hi')`", HELLO), ("CPU loop (300k iterations)", CPU)] {
        let native = python.map(|p| native(p, code, n.min(200)));
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
        if code == HELLO {
            hello = Some((inproc.median, http.median));
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
    let native_cpu = python.map(|p| native_compute(p, CPU, cpu_n));
    drop(unmetered);
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

    // Memory first: compiling the levers' artifacts below leaves this
    // process's allocator holding gigabytes it does not give back.
    memory(&ex).await;
    pooling(&ex, n).await;
    filesystem(&ex, &sandbox, n).await;
    scientific(&ex, &sandbox, n).await;
    let gap = http_gap(&ex, &sandbox, &exec_url, n).await;
    let tuned_cpu = levers(&ex, n).await;

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

    // The goals, as ratios against yardsticks timed in this run.
    let native_again = python.map(|p| native(p, HELLO, n.min(200)));
    println!("\n### Goals (ratios within this run)\n");
    println!("| goal | measured | target | met |");
    println!("|---|---|---|---|");
    let row = |goal: &str, measured: f64, target: f64, unit: &str, at_most: bool| {
        let met = if at_most {
            measured <= target
        } else {
            measured >= target
        };
        println!(
            "| {goal} | {measured:.2}{unit} | {} {target:.2}{unit} | {} |",
            if at_most { "≤" } else { "≥" },
            if met { "yes" } else { "**no**" }
        );
    };
    if let (Some((inproc, http)), Some(a), Some(b)) = (hello, &native_hello, &native_again) {
        let yardstick = (a.median + b.median) / 2;
        println!(
            "| (yardstick) `python3 -I -S -c \"print('hi')\"` spawn, median of start and end of the run | {} ms, {} ms | | |",
            ms(a.median),
            ms(b.median)
        );
        row(
            "hello in-process ÷ native spawn",
            inproc.as_secs_f64() / yardstick.as_secs_f64(),
            0.1,
            "",
            true,
        );
        row(
            "hello over HTTP to one executor ÷ in-process",
            http.as_secs_f64() / inproc.as_secs_f64(),
            1.4,
            "",
            true,
        );
        if let Some((inproc, http)) = gap {
            row(
                "the same, interleaved (HTTP gap table)",
                http.as_secs_f64() / inproc.as_secs_f64(),
                1.4,
                "",
                true,
            );
        }
    }
    if let Some(nf) = &native_cpu {
        row(
            "CPU loop, fuel on ÷ native loop",
            metered_cpu.median.as_secs_f64() / nf.median.as_secs_f64(),
            3.0,
            "×",
            true,
        );
        row(
            "the same with the best code generation lever",
            tuned_cpu.as_secs_f64() / nf.median.as_secs_f64(),
            3.0,
            "×",
            true,
        );
    }
    println!(
        "\nThroughput at saturation through the gateway against `runbox-baseline`: `loadtest/bench.sh` (below)."
    );
}

/// Cranelift and table settings against the production ones, on the CPU
/// loop and on `print('hi')`, interleaved, fuel metering on. Returns the
/// best CPU-loop median.
async fn levers(ex: &executor::Executor, n: usize) -> Duration {
    use executor::sandbox::Tuning;
    let production = Tuning::default();
    let cases = [
        ("production (no inlining, lazy tables)", production),
        (
            "`compiler_inlining(Inlining::Yes)`",
            Tuning {
                inlining: true,
                ..production
            },
        ),
        (
            "tables filled at instantiation (`table_lazy_init(false)`)",
            Tuning {
                table_lazy_init: false,
                ..production
            },
        ),
        (
            "both",
            Tuning {
                inlining: true,
                table_lazy_init: false,
            },
        ),
    ];
    let pool = executor::runtimes::pool_options(ex.args());
    let mut sandboxes = Vec::new();
    for (_, tuning) in cases {
        sandboxes.push(load_tuned(ex, true, tuning, pool).await);
    }
    let all = [&sandboxes[0], &sandboxes[1], &sandboxes[2], &sandboxes[3]];
    let cpu = interleaved(all, &job(CPU, 256 << 20, 1 << 16), n.min(100)).await;
    let hello = hello_in(all, n).await;
    println!("\n### Code generation levers (fuel metering on, interleaved)\n");
    println!("| setting | CPU loop median ms | vs production | `print('hi')` median ms | vs production |");
    println!("|---|---|---|---|---|");
    for (i, (label, _)) in cases.iter().enumerate() {
        println!(
            "| {label} | {} | {:.2}× | {} | {:.2}× |",
            ms(cpu[i].median),
            cpu[i].median.as_secs_f64() / cpu[0].median.as_secs_f64(),
            ms(hello[i].median),
            hello[i].median.as_secs_f64() / hello[0].median.as_secs_f64()
        );
    }
    cpu.iter().map(|f| f.median).min().unwrap_or_default()
}

/// The pooling allocator against mapping on demand, and the memory kept
/// resident per slot (`PoolOptions::keep_resident`), for `print('hi')`.
async fn pooling(ex: &executor::Executor, n: usize) {
    use executor::sandbox::PoolOptions;
    let base = executor::runtimes::pool_options(ex.args())
        .unwrap_or_else(|| PoolOptions::for_concurrency(ex.args().concurrency(), ex.args().max_memory_bytes));
    let keeps: [usize; 5] = [0, 256 << 10, 1 << 20, 4 << 20, 16 << 20];
    let on_demand = load_pooled(ex, true, None).await;
    let mut pooled = Vec::new();
    for keep in keeps {
        let pool = PoolOptions {
            keep_resident: keep,
            ..base
        };
        pooled.push(load_pooled(ex, true, Some(pool)).await);
    }
    let [d, k0, k1, k2, k3, k4] = hello_in(
        [
            &on_demand, &pooled[0], &pooled[1], &pooled[2], &pooled[3], &pooled[4],
        ],
        n,
    )
    .await;
    println!("\n### Pooling allocator (`print('hi')` in-process, {n} runs each, interleaved)\n");
    println!("| allocation | median ms | p99 ms | vs on demand |");
    println!("|---|---|---|---|");
    let vs = |f: &Figures| format!("{:.2}×", f.median.as_secs_f64() / d.median.as_secs_f64());
    println!(
        "| on demand (`EXECUTOR_POOLING=false`) | {} | {} | 1.00× |",
        ms(d.median),
        ms(d.p99)
    );
    for (keep, f) in keeps.iter().zip([&k0, &k1, &k2, &k3, &k4]) {
        let default = if *keep == executor::sandbox::LINEAR_MEMORY_KEEP_RESIDENT {
            " (default)"
        } else {
            ""
        };
        println!(
            "| pooling, keep resident {} KiB{default} | {} | {} | {} |",
            keep >> 10,
            ms(f.median),
            ms(f.p99),
            vs(f)
        );
    }
    let a = pooled[2].allocation();
    println!(
        "\nThe pool: {} slots, copy-on-write memory image: {}, {} memories and {} tables per instance.",
        a.pool_slots.unwrap_or(0),
        if a.cow { "yes" } else { "no" },
        a.memories,
        a.tables
    );
}

/// What the in-memory filesystem costs: `print('hi')` with it (the
/// server's runs: `/sandbox` holding `main.py`, `/tmp`, the output walk) and
/// without any; 10 MB written to and read back from a file, against the
/// same bytes built and copied in memory.
/// numpy, pandas and a 500×500 product timed in one process, each case
/// `reps` times after one warm-up: the same source for the guest and for
/// native CPython; prints `case seconds` lines.
fn compute_harness(reps: usize) -> String {
    format!(
        "import time, numpy as np, pandas as pd\n\
         rng = np.random.default_rng(0)\n\
         a, b = rng.random((500, 500)), rng.random((500, 500))\n\
         x = rng.random(1 << 16)\n\
         df = pd.DataFrame({{'k': rng.integers(0, 100, 10**5), 'v': rng.random(10**5)}})\n\
         cases = {{'matmul': lambda: a @ b, 'fft': lambda: np.fft.fft(x), 'groupby': lambda: df.groupby('k')['v'].mean()}}\n\
         for name, f in cases.items():\n    \
             f()\n    \
             for _ in range({reps}):\n        \
                 t = time.perf_counter(); f(); print(name, time.perf_counter() - t)\n"
    )
}

/// Median seconds per case from [`compute_harness`]'s output.
fn compute_medians(out: &str) -> std::collections::BTreeMap<String, Duration> {
    let mut by: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    for line in out.lines() {
        if let Some((name, secs)) = line.split_once(' ')
            && let Ok(secs) = secs.trim().parse::<f64>()
        {
            by.entry(name.to_owned())
                .or_default()
                .push(Duration::from_secs_f64(secs));
        }
    }
    by.into_iter()
        .map(|(k, v)| (k, figures(v, Duration::ZERO).median))
        .collect()
}

/// The `python-scientific` runtime against `python` and against native
/// numpy/pandas from PyPI (`RUNBOX_BENCH_NATIVE_PYTHON`, the venv `cargo
/// xtask bench` installs from `gateway/benches/native-requirements.txt`).
async fn scientific(ex: &executor::Executor, sandbox: &executor::sandbox::Sandbox, n: usize) {
    let loaded = executor::runtimes::scientific::load_scientific(ex.args())
        .await
        .expect("loading python-scientific (run `cargo xtask guest`)");
    let sci = loaded.sandbox();
    let hello = job(HELLO, 256 << 20, 1 << 16);
    let [py, sh] = interleaved_cases([(sandbox, &hello), (sci, &hello)], n).await;
    let m = (n / 10).clamp(10, 50);
    let (numpy, pandas) = (
        job("import numpy", 256 << 20, 1 << 16),
        job("import numpy, pandas", 256 << 20, 1 << 16),
    );
    let [imp_np, imp_pd] = interleaved_cases([(sci, &numpy), (sci, &pandas)], m).await;
    let native_python = std::env::var_os("RUNBOX_BENCH_NATIVE_PYTHON");
    // When timing native numpy, OpenBLAS picks its kernel for this CPU
    // unless told otherwise: unset what would tell it, in this command only.
    let native_cmd = |python: &OsStr| {
        let mut cmd = Command::new(python);
        cmd.env_remove("OPENBLAS_CORETYPE").env_remove("OPENBLAS_L2_SIZE");
        cmd
    };
    let native_import = native_python.as_deref().map(|p| {
        let mut samples = Vec::new();
        let wall = Instant::now();
        for _ in 0..m {
            let t = Instant::now();
            let out = native_cmd(p)
                .args(["-c", "import numpy, pandas"])
                .output()
                .expect("native python runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            samples.push(t.elapsed());
        }
        figures(samples, wall.elapsed())
    });
    let reps = 20;
    let harness = job(&compute_harness(reps), 512 << 20, 1 << 16);
    let guest = sci.execute(&harness).await.unwrap();
    assert_eq!(
        guest.status,
        Status::Ok,
        "{}",
        String::from_utf8_lossy(&guest.stderr)
    );
    let guest = compute_medians(&String::from_utf8_lossy(&guest.stdout));
    let native = native_python.as_deref().map(|p| {
        let out = native_cmd(p)
            .env("OPENBLAS_NUM_THREADS", "1")
            .args(["-c", &compute_harness(reps)])
            .output()
            .expect("native python runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        compute_medians(&String::from_utf8_lossy(&out.stdout))
    });
    let kernel = native_python.as_deref().and_then(|p| {
        let probe = "import ctypes, glob, os, numpy\n\
            lib = glob.glob(os.path.join(os.path.dirname(numpy.__file__), '..', 'numpy.libs', '*openblas*'))[0]\n\
            f = ctypes.CDLL(lib).scipy_openblas_get_corename64_\n\
            f.restype = ctypes.c_char_p\n\
            print(f().decode())";
        let out = native_cmd(p).args(["-c", probe]).output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });

    println!("\n### python-scientific (numpy, pandas, matplotlib in the sandbox)\n");
    println!("| case | median ms | p99 ms | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| `print('hi')`, `python` | {} | {} | 1 |",
        ms(py.median),
        ms(py.p99)
    );
    println!(
        "| `print('hi')`, `python-scientific` | {} | {} | {:.2}× `python` (goal ≤ 5×) |",
        ms(sh.median),
        ms(sh.p99),
        sh.median.as_secs_f64() / py.median.as_secs_f64()
    );
    println!(
        "| `import numpy`, `python-scientific` ({m} runs) | {} | {} | |",
        ms(imp_np.median),
        ms(imp_np.p99)
    );
    println!(
        "| `import numpy, pandas`, `python-scientific` ({m} runs) | {} | {} | |",
        ms(imp_pd.median),
        ms(imp_pd.p99)
    );
    if let Some(native) = &native_import {
        println!(
            "| native `python3 -c 'import numpy, pandas'` spawn ({m} runs) | {} | {} | `python-scientific` hello = 1/{:.1} of it (goal ≤ 1/20) |",
            ms(native.median),
            ms(native.p99),
            native.median.as_secs_f64() / sh.median.as_secs_f64()
        );
    }
    println!(
        "\nCompute, timed inside one process ({reps} runs each after a warm-up, medians; native: numpy/pandas \
         from PyPI, one OpenBLAS thread, kernel {}):\n",
        kernel.as_deref().unwrap_or("n/a")
    );
    println!("| case | sandbox ms | native ms | sandbox ÷ native |");
    println!("|---|---|---|---|");
    for (case, label) in [
        ("matmul", "500×500 matrix product"),
        ("fft", "FFT of 2¹⁶ points"),
        ("groupby", "pandas group-by mean, 10⁵ rows"),
    ] {
        let g = guest.get(case).copied().unwrap_or_default();
        let nat = native.as_ref().and_then(|n| n.get(case).copied());
        println!(
            "| {label} | {} | {} | {} |",
            ms(g),
            nat.map_or("n/a".into(), ms),
            nat.map_or("n/a".into(), |v| format!(
                "{:.1}×",
                g.as_secs_f64() / v.as_secs_f64()
            ))
        );
    }
}

async fn filesystem(ex: &executor::Executor, sandbox: &executor::sandbox::Sandbox, n: usize) {
    let mut bare = load_sandbox(ex, true).await;
    bare.without_filesystem();
    let hello = job(HELLO, 256 << 20, 1 << 16);
    let big = 10_000_000;
    let write_read = job(
        &format!(
            "data = b'x' * {big}\nwith open('/tmp/big', 'wb') as f:\n    f.write(data)\nwith open('/tmp/big', 'rb') as f:\n    assert len(f.read()) == {big}"
        ),
        256 << 20,
        1 << 16,
    );
    let in_memory = job(
        &format!("data = b'x' * {big}\ncopy = bytearray(data)\nassert len(bytes(copy)) == {big}"),
        256 << 20,
        1 << 16,
    );
    let few = n.min(100);
    let [with, without] = interleaved_cases([(sandbox, &hello), (&bare, &hello)], n).await;
    let [file, memory] = interleaved_cases([(sandbox, &write_read), (sandbox, &in_memory)], few).await;
    println!("\n### Filesystem (in-process, interleaved; {n} hellos, {few} of the 10 MB cases)\n");
    println!("| case | median ms | p99 ms | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| `print('hi')` without any filesystem (no preopens, no `main.py`) | {} | {} | 1.00× |",
        ms(without.median),
        ms(without.p99)
    );
    println!(
        "| `print('hi')` with the in-memory filesystem (as served) | {} | {} | {:.2}× |",
        ms(with.median),
        ms(with.p99),
        with.median.as_secs_f64() / without.median.as_secs_f64()
    );
    println!(
        "| 10 MB built and copied in memory (no file) | {} | {} | 1.00× |",
        ms(memory.median),
        ms(memory.p99)
    );
    println!(
        "| 10 MB written to `/tmp/big` and read back | {} | {} | {:.2}× |",
        ms(file.median),
        ms(file.p99),
        file.median.as_secs_f64() / memory.median.as_secs_f64()
    );
}

/// Where the time between in-process and HTTP goes: the same `print('hi')`
/// in-process, through the executor's router without a socket, and over
/// loopback HTTP with and without `TCP_NODELAY` on the client. Returns the
/// (in-process, HTTP) medians.
async fn http_gap(
    ex: &executor::Executor,
    sandbox: &executor::sandbox::Sandbox,
    url: &str,
    n: usize,
) -> Option<(Duration, Duration)> {
    let router = executor::api::router(ex.clone(), None);
    let body = Bytes::from(serde_json::json!({ "code": HELLO }).to_string());
    let job = job(
        HELLO,
        ex.args().default_memory_bytes,
        ex.args().default_output_bytes,
    );
    let (fast, nagle) = (http_client(true), http_client(false));
    for _ in 0..5 {
        once(sandbox, &job).await;
        oneshot(&router, &body).await;
        timed_post(&fast, url, &body).await;
        timed_post(&nagle, url, &body).await;
    }
    let mut runs = Interleaved::<4>::new();
    let rounds = 10;
    for _ in 0..rounds {
        for i in 0..4 {
            let wall = Instant::now();
            for _ in 0..n.div_ceil(rounds) {
                let d = match i {
                    0 => once(sandbox, &job).await,
                    1 => oneshot(&router, &body).await,
                    2 => timed_post(&fast, url, &body).await,
                    _ => timed_post(&nagle, url, &body).await,
                };
                runs.samples[i].push(d);
            }
            runs.walls[i] += wall.elapsed();
        }
    }
    let [inproc, routed, http, slow] = runs.figures();
    println!("\n### The HTTP gap (`print('hi')`, {n} runs each, interleaved)\n");
    println!("| path | median ms | p99 ms | added to in-process (median) |");
    println!("|---|---|---|---|");
    for (label, f) in [
        ("`Sandbox::execute` in-process", &inproc),
        (
            "the executor's router, no socket (axum, JSON, admission)",
            &routed,
        ),
        (
            "HTTP/1.1 over loopback, client `TCP_NODELAY` (curl, the gateway)",
            &http,
        ),
        (
            "HTTP/1.1 over loopback, client with Nagle (hyper's default)",
            &slow,
        ),
    ] {
        println!(
            "| {label} | {} | {} | {} ms |",
            ms(f.median),
            ms(f.p99),
            ms(f.median.saturating_sub(inproc.median))
        );
    }
    Some((inproc.median, http.median))
}

/// Resident memory per run in flight, with and without the pool: a
/// `print('hi')` held by a short sleep, and the worst case the limits allow
/// (the largest memory, filled, and the largest output on both streams).
async fn memory(ex: &executor::Executor) {
    let args = ex.args();
    let k = args.concurrency().max(2);
    let max_mem = args.max_memory_bytes;
    let out = args.max_output_bytes;
    let hello = job(
        "print('hi')\nimport time\ntime.sleep(0.3)",
        args.default_memory_bytes,
        args.default_output_bytes,
    );
    // Memory taken in 1 MiB pieces until refused (every page touched), so
    // the run holds all its limit allows (less 8 MiB given back for the
    // output); then the largest output on both streams.
    let worst_code = format!(
        "import sys, time\nheld = []\ntry:\n    while True:\n        held.append(bytearray(1 << 20))\nexcept MemoryError:\n    del held[-8:]\nsys.stdout.write('o' * {out})\nsys.stderr.write('e' * {out})\ntime.sleep(2)"
    );
    let worst = job(&worst_code, max_mem, out);
    println!(
        "\n### Memory per run ({k} runs in flight at once; resident set of this process, sampled every 2 ms)\n"
    );
    println!(
        "| run | allocation | idle before MiB | peak MiB | per run MiB | idle after MiB | runs per GiB |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, j) in [
        ("`print('hi')` (held 0.3 s)", &hello),
        (
            "worst case: memory filled to the max, max output on both streams",
            &worst,
        ),
    ] {
        for (how, pool) in [
            ("pooling", executor::runtimes::pool_options(args)),
            ("on demand", None),
        ] {
            let sandbox = load_pooled(ex, true, pool).await;
            let (before, peak, after) = resident(&sandbox, j, k).await;
            let per_run = peak.saturating_sub(before) / k as u64;
            println!(
                "| {label} | {how} | {} | {} | {} | {} | {:.0} |",
                mib(before),
                mib(peak),
                mib(per_run),
                mib(after),
                f64::from(1 << 30) / per_run.max(1) as f64
            );
        }
    }
}
