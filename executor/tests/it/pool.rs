//! The pooling allocator: a slot reused by the next run shows it nothing of
//! the last one, and a full pool makes a run wait, never fail.

use executor::sandbox::{EngineOptions, PoolOptions, Sandbox, Status};
use tokio::sync::OnceCell;

use crate::common::*;

/// A sandbox with a single pool slot: every run reuses the slot the one
/// before it used (its memory image, its kept-resident pages).
async fn one_slot() -> &'static Sandbox {
    static ONE: OnceCell<Sandbox> = OnceCell::const_new();
    ONE.get_or_init(|| async {
        let max = server_defaults().max_memory_bytes;
        load(Some(PoolOptions {
            slots: 1,
            ..PoolOptions::for_concurrency(0, max)
        }))
        .await
    })
    .await
}

async fn run_on(sandbox: &Sandbox, code: &str, args: &[&str]) -> executor::sandbox::Outcome {
    let job = executor::sandbox::Job {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        ..executor::sandbox::Job::code(code, limits())
    };
    sandbox.execute(&job).await.expect("no host fault")
}

/// Writes a fresh random token all over 64 MiB of heap, and in 20 000 small
/// objects; prints the token masked (xor 0x5a), so the host never holds it.
const FILL: &str = r#"
import os
token = os.urandom(16)
chunk = token * 65536
heap = [bytearray(chunk) for _ in range(64)]
words = [token.hex() + str(i) for i in range(20000)]
blobs = [token + i.to_bytes(4, "little") for i in range(20000)]
print(bytes(b ^ 0x5A for b in token).hex())
"#;

/// Given the masked token: takes 1 MiB `bytes(n)` buffers until refused (or
/// 192 MiB), each of which must be all zeros: they come from `calloc`, which
/// trusts memory fresh from `memory.grow` to be zero and does not clear it,
/// so a page the pool failed to reset would show here. Then looks for the
/// token in every object the collector can reach. Prints what it found.
const SEARCH: &str = r#"
import gc, sys
token = bytes(b ^ 0x5A for b in bytes.fromhex(sys.argv[1]))
hexed = token.hex()
dirty, taken = 0, []
try:
    while len(taken) < 192:
        buf = bytes(1 << 20)
        if buf.strip(b"\0"):
            dirty += 1
        taken.append(buf)
except MemoryError:
    pass
scanned = len(taken)
del taken
hits = []
for o in gc.get_objects():
    for r in gc.get_referents(o) + [o]:
        if r is token or r is hexed:
            continue
        if isinstance(r, (bytes, bytearray)) and token in r:
            hits.append(type(r).__name__)
        elif isinstance(r, str) and hexed in r:
            hits.append("str")
print(scanned, dirty, sorted(set(hits)))
"#;

#[tokio::test]
async fn a_reused_slot_shows_no_byte_of_the_last_runs_heap() {
    let sandbox = one_slot().await;
    assert!(sandbox.allocation().pooling);
    for _ in 0..2 {
        let filled = run_on(sandbox, FILL, &[]).await;
        assert_status(&filled, Status::Ok);
        let masked = stdout(&filled).trim().to_owned();
        assert_eq!(masked.len(), 32, "{masked}");
        for _ in 0..2 {
            let o = run_on(sandbox, SEARCH, &[&masked]).await;
            assert_status(&o, Status::Ok);
            let out = stdout(&o);
            let fields: Vec<&str> = out.trim().splitn(3, ' ').collect();
            let scanned: u32 = fields[0].parse().expect("a count");
            // The buffers cover the heap the filling run wrote (64 MiB).
            assert!(scanned >= 96, "only {scanned} MiB scanned: {out}");
            assert_eq!(&fields[1..], ["0", "[]"], "the last run's token leaked: {out}");
        }
    }
}

#[tokio::test]
async fn a_run_waits_for_a_free_slot_instead_of_failing() {
    let sandbox = one_slot().await;
    let runs = (0..4).map(|i| {
        let code = format!("import time\ntime.sleep(0.05)\nprint({i})");
        async move { run_on(sandbox, &code, &[]).await }
    });
    let outcomes = futures::future::join_all(runs).await;
    for (i, o) in outcomes.iter().enumerate() {
        assert_status(o, Status::Ok);
        assert_eq!(stdout(o), format!("{i}\n"));
    }
}

#[tokio::test]
async fn the_server_engine_pools_and_maps_the_image_copy_on_write() {
    let a = sandbox().await.allocation();
    let pooling = server_defaults().pooling;
    assert_eq!(a.pooling, pooling, "{a:?}");
    if pooling {
        assert_eq!(a.pool_slots, Some(server_defaults().concurrency() as u32 + 1));
    }
    assert!(a.cow, "the guest's memory is copied, not mapped: {a:?}");
    assert!(a.memories >= 1, "{a:?}");
}

#[tokio::test]
async fn a_pool_too_small_for_the_guest_is_a_load_error_naming_the_setting() {
    let opts = EngineOptions {
        cache_dir: cache_dir(),
        epoch_tick: std::time::Duration::from_millis(5),
        meter_fuel: true,
        cpu_target: Default::default(),
        tuning: Default::default(),
        clock_resolution: executor::sandbox::clock::DEFAULT_RESOLUTION,
        pool: Some(PoolOptions::for_concurrency(1, 1 << 20)),
        exceptions: false,
    };
    let err = Sandbox::load(&guest_wasm(), executor::sandbox::Entry::Snippet, None, &opts)
        .await
        .expect_err("1 MiB cannot hold CPython");
    let msg = err.to_string();
    assert!(msg.contains("EXECUTOR_MAX_MEMORY_BYTES"), "{msg}");
    assert!(msg.contains("EXECUTOR_POOLING=false"), "{msg}");
}
