//! The OpenAPI 3.1 document of the API both servers serve, generated from
//! the types of this crate. `api/openapi.json` is the committed copy; a test
//! keeps it equal to [`document`] (`RUNBOX_BLESS=1 cargo test -p runbox-api`
//! rewrites it).
//!
//! The functions below exist only to carry the operations' descriptions;
//! the handlers live in the executor and the gateway.

#![allow(dead_code)]

use utoipa::OpenApi;

use crate::error::ErrorBody;
use crate::execute::{ExecuteRequest, ExecuteResponse};
use crate::runtimes::RuntimesResponse;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "runbox",
        description = "Sandboxed remote code execution: POST a snippet, get back what it printed and how it ended. \
The gateway and the executor serve the same API; the gateway-only errors (rate_limited, no_executors, upstream_*) \
come from the gateway. Every error body is `ErrorBody`, with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(execute, runtimes, healthz, readyz, openapi_json),
    tags(
        (name = "execute", description = "Running code"),
        (name = "service", description = "Probes and this document (`/metrics` is served on a listener of its own)"),
    ),
)]
struct Doc;

/// The document as served at `GET /openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as pretty JSON with a trailing newline (the committed form).
pub fn document_json() -> String {
    pretty(&document())
}

/// The document a server that runs exactly `runtimes` serves: the same, but
/// `runtime` in a request is one of those names (a client, or a fuzzer, can
/// tell an accepted value from one that gets 422 `unknown_runtime`). The
/// committed copy names none, since which runtimes a server loads is
/// configuration (`EXECUTOR_RUNTIMES`).
pub fn document_json_for(runtimes: &[String]) -> String {
    use utoipa::openapi::{RefOr, Schema};
    let mut doc = document();
    let request = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("ExecuteRequest"));
    if let Some(RefOr::T(Schema::Object(request))) = request
        && let Some(RefOr::T(Schema::Object(runtime))) = request.properties.get_mut("runtime")
    {
        let mut names: Vec<serde_json::Value> = runtimes.iter().map(|n| n.as_str().into()).collect();
        names.push(serde_json::Value::Null);
        runtime.enum_values = Some(names);
    }
    pretty(&doc)
}

fn pretty(doc: &utoipa::openapi::OpenApi) -> String {
    let mut text = doc.to_pretty_json().expect("the generated document serialises");
    text.push('\n');
    text
}

/// Run a snippet in a fresh sandbox.
///
/// Every run of guest code answers 200, whatever the guest did; how it ended
/// is `status`, and the limit that ended or shaped it is `limit`.
#[utoipa::path(
    post,
    path = "/execute",
    tag = "execute",
    operation_id = "execute",
    request_body(content = ExecuteRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The run's outcome", body = ExecuteResponse,
            headers(
                ("x-request-id" = String, description = "The request id"),
                ("x-runbox-executor" = String, description = "Gateway only: the executor that ran it"),
            )),
        (status = 400, description = "`invalid_json` or `invalid_request`", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive in time", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body, `code` or `stdin` over its limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON", body = ErrorBody),
        (status = 422, description = "`unknown_runtime` or `invalid_limits`", body = ErrorBody),
        (status = 429, description = "`overloaded`, or `rate_limited` (the client's request rate, runs in flight or execution-time budget)", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "`internal`: a host fault, never caused by guest code", body = ErrorBody),
        (status = 502, description = "Gateway: `upstream_unreachable` or `upstream_failed`", body = ErrorBody),
        (status = 503, description = "`not_ready`, `shutting_down`, `overloaded` (queue wait, or the memory budget for bodies spent) or `no_executors`", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "Gateway: `upstream_timeout`", body = ErrorBody),
    )
)]
fn execute() {}

/// The runtimes this server offers, their versions, and their limits.
#[utoipa::path(
    get,
    path = "/runtimes",
    tag = "execute",
    operation_id = "runtimes",
    responses(
        (status = 200, description = "The runtimes", body = RuntimesResponse),
        (status = 429, description = "`overloaded` or `rate_limited`", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
        (status = 502, description = "Gateway: `upstream_unreachable` or `upstream_failed`", body = ErrorBody),
        (status = 503, description = "`not_ready`, `shutting_down`, `overloaded` (the memory budget for bodies spent) or `no_executors`", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "Gateway: `upstream_timeout`", body = ErrorBody),
    )
)]
fn runtimes() {}

/// Liveness: 200 while the process serves.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    operation_id = "healthz",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain"))
)]
fn healthz() {}

/// Readiness: 200 once a runtime is loaded (gateway: once an executor is ready).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "`not_ready`, `shutting_down` or `no_executors`", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
    )
)]
fn readyz() {}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json"))
)]
fn openapi_json() {}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn committed() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
    }

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let generated = document_json();
        if std::env::var_os("RUNBOX_BLESS").is_some() {
            std::fs::write(committed(), &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(committed()).unwrap_or_default();
        assert!(
            on_disk == generated,
            "api/openapi.json is stale: run `RUNBOX_BLESS=1 cargo test -p runbox-api` and commit it"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_and_names_every_code_and_status() {
        let v: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        let codes = &v["components"]["schemas"]["ErrorCode"]["enum"];
        for code in crate::ErrorCode::ALL {
            assert!(
                codes.as_array().unwrap().iter().any(|c| c == code.as_str()),
                "{code} missing from {codes}"
            );
        }
        let statuses = &v["components"]["schemas"]["Status"]["enum"];
        assert_eq!(statuses.as_array().unwrap().len(), crate::Status::ALL.len());
        assert!(v["paths"]["/execute"]["post"]["responses"]["200"].is_object());
    }

    #[test]
    fn a_served_document_names_the_servers_runtimes() {
        let v: serde_json::Value = serde_json::from_str(&document_json_for(&["python".to_owned()])).unwrap();
        let runtime = &v["components"]["schemas"]["ExecuteRequest"]["properties"]["runtime"];
        assert_eq!(runtime["enum"], serde_json::json!(["python", null]));
        let base: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert_eq!(v["paths"], base["paths"], "only the runtime names differ");
        let text = document_json_for(&[]);
        assert!(
            text.find("\"openapi\"") < text.find("\"paths\""),
            "the committed key order is kept"
        );
    }
}
