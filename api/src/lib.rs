//! # runbox-api: the wire contract, typed once
//!
//! Every binary that speaks runbox's HTTP API (the executor, the gateway,
//! `loadtest`, `runbox-baseline`) uses these types; nothing re-declares them.
//! The OpenAPI document ([`openapi::document`], committed as
//! `api/openapi.json`) is generated from them.
//!
//! - [`execute`]: `POST /execute`: [`ExecuteRequest`], [`ExecuteResponse`],
//!   the outcome [`Status`] and the [`LimitHit`] that ended or shaped a run.
//! - [`error`]: the one error body, `{"error": {"code", "message"}, "id"}`,
//!   and the [`ErrorCode`] enum behind its `code` and the metric labels.
//! - [`files`]: files in and out of a run, and the rule for their paths.
//! - [`limits`]: the per-run budgets a client may ask for and the policy
//!   (defaults, maxima) a server resolves them against.
//! - [`runtimes`]: `GET /runtimes`.
//! - [`headers`]: the header names the services set and read.
//! - `server` (feature `server`): what both servers share on top of the
//!   types: error responses, the typed JSON extractor, request ids, tracing
//!   and signals.

#![forbid(unsafe_code)]

#[macro_use]
mod object;

pub mod error;
pub mod execute;
pub mod files;
pub mod headers;
pub mod limits;
pub mod openapi;
pub mod runtimes;
#[cfg(feature = "server")]
pub mod server;

pub use error::{ApiError, ErrorBody, ErrorCode, ErrorDetail};
pub use execute::{ExecuteRequest, ExecuteResponse, LimitHit, LimitKind, RuntimeRef, Status, Truncated};
pub use files::{Encoding, InputFile, OutputFile};
pub use limits::{FileLimits, LimitPolicy, LimitRequest, LimitValues, Limits};
pub use runtimes::{LimitSet, RuntimeInfo, RuntimesResponse};

/// The runtime a request gets when it names none.
pub const DEFAULT_RUNTIME: &str = "python";
/// Most `args` a request may pass.
pub const MAX_ARGS: usize = 1024;
