//! Gateway integration tests: the gateway in-process over stand-in
//! executors; real gateway and executor processes on 127.0.0.1 (`testkit`);
//! fairness between clients on different loopback addresses; Kubernetes
//! discovery against a mocked API server; the manifests' environment
//! against the config.

mod attacks;
mod fairness;
mod in_process;
mod kubernetes;
mod manifests;
mod processes;
