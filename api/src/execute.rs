//! `POST /execute`: the request, the response, and how a run ended.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::files::{InputFile, OutputFile};
use crate::limits::{LimitRequest, Limits};

/// A snippet to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct ExecuteRequest {
    /// Source code, run as `__main__`: the content of the entry file
    /// (`main.py` unless `entry` names another). Optional when `files` hold
    /// the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Files placed in the working directory (`/sandbox`) before the run;
    /// files beside the entry import as modules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<InputFile>>,
    /// The file to run, relative to the working directory; `main.py` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// What `input()` / `sys.stdin` read; EOF after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// `sys.argv[1:]`; at most 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 1024)]
    pub args: Option<Vec<String>>,
    /// The runtime to run it in (`GET /runtimes` lists them); `python` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Budgets for this run; each defaulted by the server and clamped to its maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitRequest>,
}

object_only!(ExecuteRequest, "a JSON object (the request)");

impl ExecuteRequest {
    /// A request for `code` with everything else defaulted.
    pub fn code(code: impl Into<String>) -> ExecuteRequest {
        ExecuteRequest {
            code: Some(code.into()),
            ..ExecuteRequest::default()
        }
    }

    /// The same request with `files` in its working directory.
    pub fn with_files(mut self, files: Vec<InputFile>) -> ExecuteRequest {
        self.files = Some(files);
        self
    }
}

/// What a run came to. Every variant is a normal outcome (HTTP 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exit code 0.
    Ok,
    /// An uncaught exception, a non-zero exit, or a crash of the interpreter.
    Error,
    /// The wall-clock limit ended the run.
    Timeout,
    /// The CPU budget (fuel) ended the run.
    FuelExhausted,
    /// A memory growth was refused and the run did not end with exit 0.
    MemoryExceeded,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Ok,
        Status::Error,
        Status::Timeout,
        Status::FuelExhausted,
        Status::MemoryExceeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::FuelExhausted => "fuel_exhausted",
            Status::MemoryExceeded => "memory_exceeded",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which budget a [`LimitHit`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Wall clock (`timeout_ms`); ends the run with status `timeout`.
    Timeout,
    /// CPU budget (`fuel`); ends the run with status `fuel_exhausted`.
    Fuel,
    /// Memory (`memory_bytes`); the run ends with status `memory_exceeded`.
    Memory,
    /// Output (`output_bytes`): stdout or stderr was cut; the status is unaffected.
    Output,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Timeout => "timeout",
            LimitKind::Fuel => "fuel",
            LimitKind::Memory => "memory",
            LimitKind::Output => "output",
        }
    }

    /// The unit of [`LimitHit::value`].
    pub fn unit(self) -> &'static str {
        match self {
            LimitKind::Timeout => "ms",
            LimitKind::Fuel => "fuel",
            LimitKind::Memory | LimitKind::Output => "bytes",
        }
    }
}

/// The limit that ended the run or, when none did, cut its output. Clients
/// read this field; the `[runbox] …` line appended to `stderr` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitHit {
    pub kind: LimitKind,
    /// The limit in force for this run, in `unit`.
    pub value: u64,
    /// `ms`, `fuel` or `bytes`.
    pub unit: String,
    /// A sentence for people, e.g. `the run exceeded its wall-clock limit of 5000 ms`.
    pub message: String,
}

impl LimitHit {
    /// The hit of `kind` for a run under `limits`, with its sentence.
    pub fn new(kind: LimitKind, limits: &Limits) -> LimitHit {
        let (value, message) = match kind {
            LimitKind::Timeout => {
                let ms = u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX);
                (ms, format!("the run exceeded its wall-clock limit of {ms} ms"))
            }
            LimitKind::Fuel => (
                limits.fuel,
                format!("the run used up its CPU budget of {} fuel units", limits.fuel),
            ),
            LimitKind::Memory => (
                limits.memory_bytes,
                format!(
                    "the guest asked for more than its memory limit of {} bytes",
                    limits.memory_bytes
                ),
            ),
            LimitKind::Output => (
                limits.output_bytes,
                format!("output past {} bytes per stream was dropped", limits.output_bytes),
            ),
        };
        LimitHit {
            kind,
            value,
            unit: kind.unit().to_owned(),
            message,
        }
    }

    /// The line appended to `stderr` for people reading raw output.
    pub fn note(&self, status: Status) -> String {
        format!("[runbox] {status}: {}\n", self.message)
    }
}

/// `truncated` in the response: which streams were cut at `output_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Truncated {
    pub stdout: bool,
    pub stderr: bool,
    /// Some output files were left out (`output_files_bytes`): listed
    /// without content, or past the budget not listed at all.
    #[serde(default)]
    pub files: bool,
}

/// The runtime that ran a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeRef {
    /// e.g. `python`.
    pub name: String,
    /// e.g. `3.14.0`.
    pub version: String,
}

/// The `POST /execute` response: how the run ended and what it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecuteResponse {
    /// The request id (the client's `x-request-id` when sane, else a uuid).
    pub id: String,
    pub status: Status,
    /// As a native interpreter would exit; `null` when a limit or trap stopped the run.
    pub exit_code: Option<i32>,
    /// What the snippet wrote (invalid UTF-8 replaced by U+FFFD).
    pub stdout: String,
    /// What the snippet wrote, plus a `[runbox] …` line when a limit ended the run.
    pub stderr: String,
    pub truncated: Truncated,
    /// Files under the working directory the run created or changed, by
    /// path, while `output_files_bytes` lasts (each costs its path, 64 bytes
    /// and, when it fits, its content).
    #[serde(default)]
    pub files: Vec<OutputFile>,
    /// Wall-clock time of the run.
    pub duration_ms: f64,
    /// Fuel burnt; `null` after a timeout, where it is not exact.
    pub fuel_used: Option<u64>,
    /// The limit that ended or shaped the run; `null` when none did.
    #[serde(default)]
    pub limit: Option<LimitHit>,
    pub runtime: RuntimeRef,
    /// The host or pod that ran it.
    pub executor: String,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn status_strings_are_the_wire_names() {
        for s in Status::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn requests_are_objects_not_arrays() {
        assert!(serde_json::from_str::<ExecuteRequest>(r#"["print(1)"]"#).is_err());
        assert!(serde_json::from_str::<ExecuteRequest>(r#"{"code": "", "limits": [1, 2]}"#).is_err());
        assert!(serde_json::from_str::<ExecuteRequest>(r#"{"code": "", "limits": [null, null]}"#).is_err());
        let r = ExecuteRequest::code("x");
        let back: ExecuteRequest = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn requests_reject_unknown_fields_and_accept_nulls() {
        assert!(serde_json::from_str::<ExecuteRequest>(r#"{"code": "1", "cod": 1}"#).is_err());
        // `code` is optional on the wire (files may hold the entry); the
        // executor refuses a request with neither.
        assert_eq!(
            serde_json::from_str::<ExecuteRequest>(r#"{"stdin": "x"}"#)
                .unwrap()
                .code,
            None
        );
        let r: ExecuteRequest = serde_json::from_str(
            r#"{"code": "1", "stdin": null, "args": null, "limits": null, "files": null, "entry": null}"#,
        )
        .unwrap();
        assert_eq!(r, ExecuteRequest::code("1"));
        let files: ExecuteRequest = serde_json::from_str(
            r#"{"files": [{"path": "main.py", "content": "print(1)"}], "entry": "main.py"}"#,
        )
        .unwrap();
        assert_eq!((files.code, files.files.unwrap().len()), (None, 1));
    }

    #[test]
    fn a_limit_hit_names_its_value_unit_and_note() {
        let limits = Limits {
            timeout: Duration::from_millis(500),
            fuel: 7,
            memory_bytes: 1024,
            output_bytes: 10,
            files: Default::default(),
        };
        let hit = LimitHit::new(LimitKind::Timeout, &limits);
        assert_eq!((hit.value, hit.unit.as_str()), (500, "ms"));
        assert_eq!(
            hit.note(Status::Timeout),
            "[runbox] timeout: the run exceeded its wall-clock limit of 500 ms\n"
        );
        assert_eq!(LimitHit::new(LimitKind::Fuel, &limits).value, 7);
        assert_eq!(LimitHit::new(LimitKind::Memory, &limits).unit, "bytes");
        let v = serde_json::to_value(LimitHit::new(LimitKind::Output, &limits)).unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["value"].as_u64()),
            (Some("output"), Some(10))
        );
    }
}
