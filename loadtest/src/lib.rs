//! runbox's load-test harness: drives any runbox endpoint (gateway or single executor, local or in
//! a cluster) and reports what an operator needs to size and autoscale the service.
//!
//! # Layout
//!
//! One run, in the order a request travels:
//!
//! - [`cli`] turns flags (each with a `LOADTEST_*` variable) into a [`run::RunConfig`], and at the
//!   end prints the table, writes `--json` / `--plot` and turns thresholds into the exit code.
//! - [`scenario`] says what to send: the built-in `hello`, `cpu` and `mixed` workloads or a YAML /
//!   JSON file of snippets with weights and expectations, picked by a seeded weighted choice.
//! - [`run`] drives the load: closed loop (N workers, one keep-alive connection each, back to
//!   back) or open loop (a constant or ramping arrival rate; latency counts from the *intended*
//!   send time, so a slow server cannot hide its queue: no coordinated omission). Ctrl-C stops
//!   sending and still reports.
//! - [`client`] sends one `POST /execute` (a `runbox_api::ExecuteRequest`) over hyper-util's
//!   pooled HTTP/1.1 client and classifies the answer: an HTTP response (code,
//!   `x-runbox-executor`, the body read as the contract's `ExecuteResponse` or `ErrorBody`) or a
//!   transport error.
//! - [`stats`] accounts every finished request once: HDR histograms, counts by HTTP code, by
//!   execution `status`, by the `limit` that ended or cut a run, by API error code and by
//!   executor, wrong results (the result differs from the expectation), and one-second timeline
//!   buckets. [`progress`] shows it live; [`watch`] scrapes `/metrics`
//!   pages alongside.
//! - [`report`] is the result: the JSON document with stable field names, the final table,
//!   fairness (max/min executor share) and the thresholds. [`plot`] draws it as SVG,
//!   [`compare`] reads reports back to set two runs side by side.
//!
//! [`baseline`] is a different program sharing the crate: `runbox-baseline`, a tiny axum server
//! that serves the same `POST /execute` contract with runbox-api's types, body parser, layers and
//! error bodies, and spawns a native `python3` per request, to measure runbox against.
//!
//! Nothing here declares a wire type: requests, results, statuses, limits, error codes and header
//! names are `runbox_api`'s.
#![forbid(unsafe_code)]

pub mod baseline;
pub mod cli;
pub mod client;
pub mod compare;
pub mod plot;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod watch;
