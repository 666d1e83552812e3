//! Gateway integration tests: real gateway and executor processes on
//! 127.0.0.1, and Kubernetes discovery against a mocked API server.

mod common;
mod kubernetes;
mod manifests;
mod proxy;
