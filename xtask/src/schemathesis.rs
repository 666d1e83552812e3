//! Fuzzing a real gateway against the OpenAPI document it serves, with
//! schemathesis: no 5xx, and every response (errors included) has a
//! documented status, content type, headers and body schema.
//!
//! schemathesis (PyPI) is installed like componentize-py: pinned and
//! hash-checked from `api/schemathesis/requirements.txt` into a private venv
//! named after that file's digest. The run is loopback-only, seeded, and
//! bounded both per operation (`--max-examples`) and in total ([`DEADLINE`]).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::process::start_gateway;

/// schemathesis and all its dependencies, pinned with hashes.
const REQUIREMENTS: &str = "api/schemathesis/requirements.txt";

/// What every response is held to. `positive_data_acceptance` and
/// `negative_data_rejection` hold the request side too: a request the
/// document allows must not be refused with 4xx (bar 401/403/404/409/429),
/// one it forbids must be. `unsupported_method` and `allow_header_conformance`
/// want 405 with an `Allow` header for a method the document does not list.
const CHECKS: &[&str] = &[
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "unsupported_method",
    "allow_header_conformance",
];

/// Generated cases per operation in the fuzzing phase (the coverage phase
/// adds its own fixed set of boundary and invalid cases on top).
const MAX_EXAMPLES: u32 = 200;

/// The same cases on every run; change it to explore, not to make a run pass.
const SEED: u64 = 1;

/// Longest schemathesis waits for one response: past the gateway's own
/// 35 s upstream timeout, so a slow run surfaces as the gateway's 504.
const REQUEST_TIMEOUT_SECS: u32 = 40;

/// Longest the whole schemathesis run may take before it is killed. Not
/// `--max-time`: in schemathesis 4 that is a budget the fuzzing phase keeps
/// repeating until it is spent, so every run would take that long.
const DEADLINE: Duration = Duration::from_secs(300);

/// The config file: everything else is on the command line (`st_args`).
///
/// `POST /execute` has rules a JSON Schema cannot state: a file's path
/// given twice, or as both a file and a directory, an entry not among the
/// files, base64 that does not decode, input files larger than the quotas
/// the same request asks for. Schema-valid requests breaking them are
/// refused with 400 `invalid_request` or 413 (README "API"), so for this
/// one operation the positive-data check also accepts those two codes; the
/// other checks (no 5xx, documented codes and schemas, schema-invalid data
/// refused) are unchanged, and `executor/tests/it/files_http.rs` tests each
/// refusal by its message.
const CONFIG: &str = r#"# Written by xtask/src/schemathesis.rs (see `CONFIG` there for why).
[[operations]]
include-path = "/execute"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "413", "429"]
"#;

/// Installs schemathesis (pinned, `--require-hashes`) into a private venv
/// unless it is already there, and returns the path of its `st` executable.
pub fn install(paths: &Paths) -> Result<PathBuf> {
    crate::setup::pinned_venv(paths, REQUIREMENTS, "venv-schemathesis", "st")
}

/// The schemathesis process, killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `st run` arguments for a gateway at `base` (`http://127.0.0.1:PORT`).
fn st_args(base: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), format!("{base}/openapi.json")];
    let flags: [(&str, String); 8] = [
        // The document's `servers` do not matter: requests go to this gateway.
        ("--url", base.to_owned()),
        ("--checks", CHECKS.join(",")),
        // Valid and invalid (negative) data alike.
        ("--mode", "all".to_owned()),
        ("--max-examples", MAX_EXAMPLES.to_string()),
        ("--seed", SEED.to_string()),
        // No example database: nothing carried over from earlier runs.
        ("--generation-database", "none".to_owned()),
        // One request at a time: the same order every run, and never the
        // executor's queue limits.
        ("--workers", "1".to_owned()),
        ("--request-timeout", REQUEST_TIMEOUT_SECS.to_string()),
    ];
    for (flag, value) in flags {
        args.push(flag.to_owned());
        args.push(value);
    }
    args
}

/// Fuzzes a fresh embedded gateway of `profile` (built, with the guest
/// compiled) against the document it serves at `/openapi.json`. schemathesis'
/// output is the report; a failure, or a run past [`DEADLINE`], is an error.
pub fn run(paths: &Paths, profile: &str) -> Result<()> {
    let st = install(paths)?;
    let gateway = start_gateway(paths, profile, &[])?;
    let base = gateway.url.clone();
    // An explicit config file (so no `schemathesis.toml` found in a parent
    // directory changes what the flags below say), holding the one setting
    // flags cannot carry: see `CONFIG`.
    let dir = paths.target_dir.join("schemathesis");
    std::fs::create_dir_all(&dir).context("creating target/schemathesis")?;
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, CONFIG).context("writing the schemathesis config")?;
    let mut args = vec!["--config-file".to_owned(), config.display().to_string()];
    args.extend(st_args(&base));
    eprintln!(
        "xtask: schemathesis against the embedded gateway ({profile}): {} {}",
        st.display(),
        args.join(" ")
    );
    let mut cmd = Command::new(&st);
    cmd.current_dir(&dir)
        .args(&args)
        // Loopback only, whatever proxy the environment names.
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env("NO_PROXY", "127.0.0.1,localhost")
        // The report streams to the log even when the run is killed.
        .env("PYTHONUNBUFFERED", "1");
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", st.display()))?;
    let mut st_run = Killed(child);
    let deadline = Instant::now() + DEADLINE;
    let exit = loop {
        if let Some(exit) = st_run.0.try_wait()? {
            break exit;
        }
        if Instant::now() >= deadline {
            bail!("schemathesis did not finish within {DEADLINE:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !exit.success() {
        bail!(
            "schemathesis: the gateway's responses break its OpenAPI document, or the run failed \
             (the report above lists each case and a curl line to reproduce it): {exit}"
        );
    }
    Ok(())
}
