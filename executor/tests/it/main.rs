//! Executor integration tests: the sandbox in-process, and the real binary
//! over HTTP on 127.0.0.1.
//!
//! They need the guest built by `cargo xtask guest`; `cargo xtask test` runs
//! them with `EXECUTOR_GUEST_WASM` and `EXECUTOR_CACHE_DIR` set.

mod adversarial;
mod clocks;
mod common;
mod edge;
mod files;
mod files_http;
mod fuel;
mod guest_program;
mod host_calls;
mod host_memory;
mod http;
mod isolation;
mod limits;
mod manifests;
mod output;
mod pool;
mod scientific;
mod scientific_http;
mod snapshot;
mod stdlib;
