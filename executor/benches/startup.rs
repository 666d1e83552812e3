//! Start-up: the release executor from process start to `/readyz` 200, with
//! the AOT artifact present (every normal start) and without one (the compile
//! the artifact saves), beside a native `python3` start. Prints Markdown.
//!
//! `cargo bench -p executor --bench startup -- 10` (10 starts; the default),
//! with `EXECUTOR_GUEST_WASM` set (or the guest at `.runbox/guest/python.wasm`).
//! The artifact is precompiled first with `executor precompile` into
//! `EXECUTOR_CACHE_DIR` when set, else into a temporary directory;
//! `EXECUTOR_CPU_TARGET` picks the target, as for the server. The binary is
//! the one this bench was built beside (`$CARGO_TARGET_DIR/release/executor`,
//! built by `cargo bench`), or the one in `RUNBOX_BIN_DIR`.

#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use executor::sandbox::CpuTarget;
use testkit::http::PROBE_TIMEOUT;
use testkit::{Bin, guest_wasm};

/// Between two probes of `/readyz` (and two looks at the log): the
/// resolution of the figures.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Longest a start may take (a compile on a busy 2-core machine is slow).
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// When one start reached each point, from the process's spawn.
struct Start {
    /// The `executor listening` log line: flags parsed, ports bound.
    listening: Duration,
    /// The `runtime loaded` log line: guest mapped (or compiled), warmed up.
    loaded: Duration,
    /// `/readyz` answered 200.
    ready: Duration,
}

/// Starts the executor with its AOT cache at `cache`, polls it until ready,
/// and kills it.
async fn start(cache: &Path) -> Start {
    let spawn = testkit::process::executor("startup")
        .env("EXECUTOR_CACHE_DIR", cache)
        .env_remove("EXECUTOR_NO_CACHE");
    let t0 = Instant::now();
    let proc = spawn.start().await;
    let listening = t0.elapsed();
    let url = proc.url("/readyz");
    let mut loaded = None;
    loop {
        let ready = proc
            .client()
            .get(&url)
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        let now = t0.elapsed();
        let logs = proc.logs();
        if loaded.is_none() && logs.contains("runtime loaded") {
            loaded = Some(now);
        }
        if ready {
            return Start {
                listening,
                loaded: loaded.unwrap_or(now),
                ready: now,
            };
        }
        assert!(now < START_TIMEOUT, "not ready within {START_TIMEOUT:?}:\n{logs}");
        assert!(
            !logs.contains("failed to load"),
            "the executor did not load:\n{logs}"
        );
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// Compiles the guest into `cache` with `executor precompile` (a no-op when
/// the artifact is there); how long it took.
fn precompile(cache: &Path) -> Duration {
    let t0 = Instant::now();
    let out = Command::new(Bin::Executor.path())
        .arg("precompile")
        .env("EXECUTOR_GUEST_WASM", guest_wasm())
        .env("EXECUTOR_CACHE_DIR", cache)
        .env_remove("EXECUTOR_NO_CACHE")
        .output()
        .expect("executor precompile runs");
    assert!(
        out.status.success(),
        "executor precompile: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    t0.elapsed()
}

/// A native `python3 -I -S -c pass`, start to exit (the other benchmarks'
/// yardstick: the cheapest start CPython has).
fn native_start(python: &OsStr) -> Option<Duration> {
    let t0 = Instant::now();
    let out = Command::new(python)
        .args(["-I", "-S", "-c", "pass"])
        .output()
        .ok()?;
    out.status.success().then(|| t0.elapsed())
}

/// Median and p90 (nearest rank) of `samples`.
fn quantiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.9))
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10)
        .max(1);
    let target = std::env::var("EXECUTOR_CPU_TARGET").unwrap_or_else(|_| CpuTarget::default().to_string());
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);

    let temp = tempfile::tempdir().expect("a temporary directory");
    let cache = testkit::cache_dir().unwrap_or_else(|| temp.path().join("aot"));
    eprintln!("startup: precompiling into {}", cache.display());
    precompile(&cache);

    let mut warm = Vec::with_capacity(n);
    for i in 0..n {
        eprintln!("startup: start {}/{n} with the artifact", i + 1);
        warm.push(start(&cache).await);
    }
    eprintln!("startup: one start with an empty cache (compiles the guest)");
    let cold = start(&temp.path().join("empty")).await;
    eprintln!("startup: `executor precompile` into an empty cache");
    let compile = precompile(&temp.path().join("compile-only"));
    // Warm the page cache for python3 first, as the executor's binary is.
    let python = testkit::process::real_python3();
    let native: Vec<Duration> = python
        .iter()
        .flat_map(|p| (0..=n).filter_map(|_| native_start(p)).skip(1))
        .collect();

    println!(
        "### Start-up (release executor, process start to `/readyz` 200; {n} starts; \
         `EXECUTOR_CPU_TARGET={target}`, pooling on, {cpus} CPUs)\n"
    );
    println!(
        "| start | ready, median ms | ready, p90 ms | `runtime loaded`, median ms | listening, median ms |"
    );
    println!("|---|---|---|---|---|");
    let row = |label: &str, starts: &[Start]| {
        let pick = |f: fn(&Start) -> Duration| quantiles(starts.iter().map(f).collect());
        let (ready, ready_p90) = pick(|s| s.ready);
        let p90 = if starts.len() > 1 {
            ms(ready_p90)
        } else {
            "–".to_owned()
        };
        println!(
            "| {label} | {} | {p90} | {} | {} |",
            ms(ready),
            ms(pick(|s| s.loaded).0),
            ms(pick(|s| s.listening).0)
        );
        ready
    };
    let ready = row("AOT artifact present", &warm);
    row(
        "empty cache (compiles at start, 1 start)",
        std::slice::from_ref(&cold),
    );
    println!(
        "| `executor precompile` into an empty cache (compile only) | {} | – | – | – |",
        ms(compile)
    );
    if !native.is_empty() {
        let (median, p90) = quantiles(native);
        println!(
            "| native `python3 -I -S -c pass`, start to exit | {} | {} | – | – |",
            ms(median),
            ms(p90)
        );
    }
    let met = if ready <= Duration::from_secs(1) {
        "met"
    } else {
        "not met"
    };
    println!(
        "\nGoal: ready within 1 s with the artifact present: {} ms median, {met}. Without it, the \
         start compiles the guest first: {:.0}× longer.",
        ms(ready),
        cold.ready.as_secs_f64() / ready.as_secs_f64()
    );
}
