//! Gateway integration tests: the gateway in-process over stand-in
//! executors; real gateway and executor processes on 127.0.0.1 (`testkit`);
//! Kubernetes discovery against a mocked API server; the manifests'
//! environment against the config.

mod in_process;
mod kubernetes;
mod manifests;
mod processes;
