//! The executor's own memory under `EXECUTOR_CONCURRENCY` runs that each use
//! all the guest memory and all the file space they may: the bound the pod's
//! memory limit is sized from (`k8s/base/executor/deployment.yaml`).

use runbox_api::Status;
use serde_json::json;

const MIB: u64 = 1 << 20;
const CONCURRENCY: u64 = 4;
/// `EXECUTOR_MAX_MEMORY_BYTES` for this test (512 MiB in production; the
/// bound is per guest, so a smaller one keeps the test light).
const MAX_GUEST: u64 = 128 * MIB;
/// What the executor holds besides its guests' linear memories, each bound
/// set from measurement with a generous margin (x86-64 Linux, debug build):
///
/// - the runtime: idle RSS after loading ~25 MiB, ~43 MiB at its peak while
///   loading (the compiled guest is mapped from the AOT cache; its pages,
///   the snapshot's initial heap included, are shared by every instance);
/// - per run: the instance's tables and stack (touched as used, at most
///   `MAX_WASM_STACK`), the resource table (capped), stdout and stderr
///   (each capped by `output_bytes`, 1 MiB at most, and JSON-escaped once
///   for the response), the request body (4 MiB at most) and random buffers
///   (capped at 1 MiB).
///
/// Measured peaks: 4 × 128 MiB runs 495 MiB, 4 × 512 MiB 2030 MiB, 2 × 512
/// MiB 1030 MiB, i.e. at most ~6 MiB over the guests' memory (a guest's
/// untouched snapshot pages are shared, so guests rarely reach their cap in
/// RSS). `k8s/base/executor/deployment.yaml` sizes the pod from the same two
/// numbers.
const RUNTIME_OVERHEAD: u64 = 64 * MIB;
/// `EXECUTOR_MAX_FILES_BYTES` for this test: each run's in-memory files are
/// host memory, counted apart from the guest's (64 MiB in production).
const MAX_FILES: u64 = 32 * MIB;
const PER_RUN_OVERHEAD: u64 = 32 * MIB;
const HOST_OVERHEAD: u64 = RUNTIME_OVERHEAD + CONCURRENCY * (PER_RUN_OVERHEAD + MAX_FILES);

/// (VmHWM, VmRSS) of `pid`, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test]
async fn concurrent_maximum_memory_runs_stay_within_the_pod_budget() {
    let ex = testkit::executor("host-memory")
        .envs(&[
            ("EXECUTOR_CONCURRENCY", &CONCURRENCY.to_string()),
            ("EXECUTOR_MAX_MEMORY_BYTES", &MAX_GUEST.to_string()),
            ("EXECUTOR_DEFAULT_MEMORY_BYTES", &MAX_GUEST.to_string()),
            ("EXECUTOR_MAX_FILES_BYTES", &MAX_FILES.to_string()),
            ("EXECUTOR_MAX_FILE_BYTES", &MAX_FILES.to_string()),
        ])
        .ready()
        .await;
    let (idle_peak, idle) = memory_of(ex.pid());

    // Each run fills its file quota, then takes memory until refused
    // (touching every page: CPython zeroes a bytearray), then holds both
    // until it ends, so the runs' peaks overlap; the bound below holds
    // whether or not they do.
    let code = "import time\nfiles = 0\ntry:\n    while True:\n        open(f'/tmp/f{files}', 'wb').write(b'x' * 2**20); files += 1\n\
                except OSError:\n    pass\nchunks = []\ntry:\n    while True: chunks.append(bytearray(2**20))\n\
                except MemoryError:\n    pass\nprint(len(chunks), files)\ntime.sleep(1.5)";
    let body = json!({"code": code, "limits": {"memory_bytes": MAX_GUEST, "timeout_ms": 20_000, "files_bytes": MAX_FILES}});
    let runs = (0..CONCURRENCY).map(|_| ex.post_json("/execute", &body));
    for reply in futures::future::join_all(runs).await {
        let result = reply.response();
        assert_eq!(result.status, Status::Ok, "{}", result.stderr);
        let counts: Vec<u64> = result
            .stdout
            .split_whitespace()
            .map(|n| n.parse().expect("a count"))
            .collect();
        let (chunks, files) = (counts[0], counts[1]);
        assert!(
            chunks * MIB > MAX_GUEST / 2,
            "the run filled its memory: {chunks} MiB"
        );
        // The 32nd write is cut short at the quota (names take a few bytes;
        // the error of its unclosed file is lost in its finaliser, as in
        // CPython anywhere); the 33rd `open` fails with `ENOSPC`.
        assert_eq!(files, MAX_FILES / MIB, "the run filled its files");
    }

    let (peak, now) = memory_of(ex.pid());
    let bound = CONCURRENCY * MAX_GUEST + HOST_OVERHEAD;
    eprintln!(
        "executor RSS: idle {} MiB (peak while loading {} MiB); peak with {CONCURRENCY} × {} MiB runs (and \
         {} MiB files each) {} MiB (host overhead {} MiB over the guests' {} MiB); after {} MiB; bound {} MiB",
        idle / MIB,
        idle_peak / MIB,
        MAX_GUEST / MIB,
        MAX_FILES / MIB,
        peak / MIB,
        peak.saturating_sub(CONCURRENCY * MAX_GUEST) / MIB,
        CONCURRENCY * MAX_GUEST / MIB,
        now / MIB,
        bound / MIB,
    );
    assert!(
        peak <= bound,
        "peak RSS {} MiB over {CONCURRENCY} × {} MiB + {} MiB",
        peak / MIB,
        MAX_GUEST / MIB,
        HOST_OVERHEAD / MIB
    );
    // And it still serves.
    let after = ex.run("print('alive')").await;
    assert_eq!(after.status, Status::Ok);
}
