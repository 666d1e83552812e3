//! Shared helpers: one loaded sandbox per test binary (executor processes
//! come from the workspace's `testkit`).

use std::time::Duration;

use executor::sandbox::Limits;
use executor::sandbox::{EngineOptions, Job, Outcome, PoolOptions, Sandbox, Status};
use tokio::sync::OnceCell;

pub use testkit::{cache_dir, guest_wasm};

static SANDBOX: OnceCell<Sandbox> = OnceCell::const_new();

/// The sandbox shared by the in-process tests (each run still gets a fresh
/// store and instance; only the compiled component is shared). Its engine is
/// the server's with its default flags: the pooling allocator, sized for the
/// default concurrency (tests that run more at once wait for a slot).
pub async fn sandbox() -> &'static Sandbox {
    SANDBOX
        .get_or_init(|| async {
            let args = server_defaults();
            load(executor::runtimes::pool_options(&args)).await
        })
        .await
}

/// The server's runtime flags with their defaults.
pub fn server_defaults() -> executor::config::RuntimeArgs {
    use clap::Parser;
    executor::config::Config::try_parse_from(["executor"])
        .expect("the defaults parse")
        .runtime
}

/// A sandbox of its own, with `pool` (the server's other settings).
pub async fn load(pool: Option<PoolOptions>) -> Sandbox {
    let opts = EngineOptions {
        cache_dir: cache_dir(),
        epoch_tick: Duration::from_millis(5),
        meter_fuel: true,
        cpu_target: Default::default(),
        tuning: Default::default(),
        clock_resolution: executor::sandbox::clock::DEFAULT_RESOLUTION,
        pool,
        exceptions: false,
    };
    Sandbox::load(&guest_wasm(), executor::sandbox::Entry::Snippet, None, &opts)
        .await
        .unwrap_or_else(|e| panic!("loading the guest (run `cargo xtask guest`): {e}"))
}

/// Generous limits for tests that are not about limits.
pub fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(10),
        fuel: 20_000_000_000,
        memory_bytes: 256 << 20,
        output_bytes: 64 << 10,
        files: Default::default(),
    }
}

pub async fn run_job(code: &str, stdin: &str, args: &[&str], limits: Limits) -> Outcome {
    let job = Job {
        stdin: stdin.as_bytes().to_vec(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        ..Job::code(code, limits)
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

/// Runs `entry` among `files` (path, content) under `limits`.
pub async fn run_files(files: &[(&str, &[u8])], entry: &str, limits: Limits) -> Outcome {
    let job = Job {
        files: files.iter().map(|(p, c)| ((*p).to_owned(), c.to_vec())).collect(),
        entry: entry.to_owned(),
        ..Job::code("", limits)
    };
    sandbox().await.execute(&job).await.expect("no host fault")
}

/// The output file at `path`, as text.
pub fn output_file(o: &Outcome, path: &str) -> Option<String> {
    o.files
        .iter()
        .find(|f| f.path == path)
        .and_then(|f| f.bytes())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}
