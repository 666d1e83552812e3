//! # testkit: runbox's binaries as processes, for integration tests
//!
//! Dev-only (`[dev-dependencies] testkit.workspace = true`). One harness for every crate's
//! `tests/it/`: start the real `executor`, `gateway` or `runbox-baseline` on an ephemeral
//! loopback port, wait until it is ready, talk to it with the contract's types, read its
//! metrics, and order the test by polling what it asserts next, never by sleeping.
//!
//! ```no_run
//! use std::time::Duration;
//! use runbox_api::{ExecuteRequest, Status};
//!
//! # async fn example() {
//! let a = testkit::executor("a").ready().await;
//! let b = testkit::executor("b").env("EXECUTOR_CONCURRENCY", "1").ready().await;
//! let gw = testkit::gateway().executors(&[&a, &b]).env("GATEWAY_RATE_LIMIT_RPS", "0").start().await;
//! gw.wait_metric("gateway_backends{state=\"ready\"}", Duration::from_secs(30), |v| v == Some(2.0)).await;
//!
//! let reply = gw.execute(&ExecuteRequest::code("print('hi')")).await;
//! assert!(reply.executor().is_some());
//! let result = reply.response(); // asserts 200, parses runbox_api::ExecuteResponse
//! assert_eq!((result.status, result.stdout.as_str()), (Status::Ok, "hi\n"));
//!
//! let bad = gw.post_raw("/execute", "application/json", "{").await;
//! bad.expect_error(400, runbox_api::ErrorCode::InvalidJson); // parses runbox_api::ErrorBody
//! # }
//! ```
//!
//! ## Layout
//!
//! - [`binary`]: where things are. [`Bin::path`] finds a workspace binary in `RUNBOX_BIN_DIR`,
//!   else in the target directory the running test was built into (the test executable's
//!   `<profile>/` directory, so `CARGO_TARGET_DIR` and `--release` are followed; this works from
//!   any package, unlike `env!("CARGO_BIN_EXE_…")`), and panics naming the `cargo build` that
//!   makes it. `cargo test -p X` builds only X's binaries: build the others first (`cargo xtask
//!   test` builds them all). [`guest_wasm`] (`EXECUTOR_GUEST_WASM`, else
//!   `.runbox/guest/python.wasm`) and [`cache_dir`] (`EXECUTOR_CACHE_DIR`) are what the xtask
//!   passes.
//! - [`process`]: [`Spawn`] is a builder: [`executor`]`(name)`, [`gateway`]`()` and
//!   [`baseline`]`()` preset the environment (listen on `127.0.0.1:0`, JSON logs, `RUST_LOG=info`,
//!   no `RUST_BACKTRACE`; executor and gateway: the guest, and the AOT cache or
//!   `EXECUTOR_NO_CACHE=true`; gateway: 100 ms probes; baseline: the real `python3` behind a
//!   pyenv shim), then `.env(k, v)`, `.envs(&[…])`, `.listen(addr)`, `.executors(&[&a, &b])`.
//!   [`Spawn::start`] returns once the process has logged its address (the first JSON line with
//!   `fields.addr`: each server logs one when it binds, so no port is picked in advance and none
//!   can be taken meanwhile); [`Spawn::ready`] also waits for `/readyz`; [`Spawn::try_start`]
//!   hands back a [`StartError`] (exit status and output) for a process that must refuse to
//!   start. A [`Proc`] keeps its last 200 lines of stdout and stderr ([`Proc::logs`]) and puts
//!   them in every panic it raises; it is SIGKILLed on drop (and prints them then if the test is
//!   failing). [`Proc::terminate`] sends SIGTERM; [`Proc::wait_exit`] waits, bounded, for the exit
//!   status. [`send_signal`] signals any pid (e.g. SIGINT to a `loadtest` run).
//! - [`http`]: every call returns a [`Reply`] (status, headers, body) read as the contract:
//!   [`Reply::response`] → [`runbox_api::ExecuteResponse`], [`Reply::error`] /
//!   [`Reply::expect_error`] → [`runbox_api::ErrorBody`], [`Reply::executor`]
//!   (`x-runbox-executor`), [`Reply::request_id`]. [`Proc`] has them bound to its address:
//!   `execute`, `run(code)`, `get`, `post_json`, `post_raw` (which panic, with the process's
//!   output, when no answer comes); the free functions in [`http`] take any client and URL and
//!   return `reqwest::Result` for tests about unreachable servers. [`http::client`] ignores
//!   proxy variables and bounds every call.
//! - [`config`]: [`env_to_args`] turns a manifest's `NAME=value` settings into the flags of a
//!   binary's clap config, naming any variable no flag reads.
//! - [`metrics`]: [`Metrics`] parses a `/metrics` page with `prometheus-parse`;
//!   [`Metrics::value`]`("name{label=\"v\"}")` sums the samples whose labels include the given
//!   ones. [`Proc::metrics`], [`Proc::metric`] and [`Proc::wait_metric`] read them from a
//!   process.
//! - [`poll`]: [`poll_until`] probes every 20 ms until a condition holds, for at most a given
//!   time, then panics with what it waited for and the last value; [`try_poll_until`] returns
//!   `Err(last value)` instead. Readiness, backends, gauges: every wait in a test is one of
//!   these.
//!
//! ## Moving a crate's `tests/it/common.rs` here
//!
//! | before | now |
//! |---|---|
//! | `ExecutorProcess::start(&env)` / `executor(name, "127.0.0.1:0", &env)` | `testkit::executor(name).envs(&env).start().await` |
//! | `executor(name, &addr, &env)` (restart on a freed port) | `testkit::executor(name).listen(addr).envs(&env).start().await` |
//! | `gateway(&env)` | `testkit::gateway().envs(&env).start().await` |
//! | `wait_ready().await`, `wait_for(url, 200)` | `proc.wait_ready().await`; any path and status: `proc.wait_status(path, status, within).await` |
//! | `wait_backends(&gw, n)` | `gw.wait_metric("gateway_backends{state=\"ready\"}", within, \|v\| v == Some(n as f64))` |
//! | `metric(&text, series)`, `ready_backends` | `testkit::metric(&text, series)`, `gw.metric(series).await` |
//! | `execute(&client, &gw, code)` → `(u16, Option<String>, Value)` | `gw.execute(&ExecuteRequest::code(code)).await` → [`Reply`] (`.status`, `.executor()`, `.response()`) |
//! | `terminate()`, `kill()`, `child.wait()` in `spawn_blocking` | `terminate()`, `kill()`, `wait_exit(within).await` |
//! | `guest_wasm()`, `cache_dir()` | `testkit::guest_wasm()`, `testkit::cache_dir()` |
//! | `tally(names)` | `testkit::tally(names)` (a `BTreeMap`) |
//! | a `sleep` before asserting a gauge or a state | `proc.wait_metric(…)`, `proc.wait_status(…)`, [`poll_until`] |
//!
//! What stays in a crate's own tests: in-process helpers of that crate (the executor's shared
//! `Sandbox` and limit fixtures), and anything about one binary only.

#![forbid(unsafe_code)]

pub mod binary;
pub mod config;
pub mod http;
pub mod metrics;
pub mod poll;
pub mod process;

pub use binary::{Bin, bin_dir, cache_dir, guest_wasm, scientific_dir, workspace_root};
pub use config::env_to_args;
pub use http::Reply;
pub use metrics::{Metrics, metric};
pub use poll::{poll_until, try_poll_until};
pub use process::{Proc, Spawn, StartError, baseline, executor, gateway, send_signal};

/// How often each name occurs (e.g. the `x-runbox-executor` of many replies).
pub fn tally<S: Into<String>>(
    names: impl IntoIterator<Item = S>,
) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for name in names {
        *counts.entry(name.into()).or_default() += 1;
    }
    counts
}
