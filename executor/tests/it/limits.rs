//! Every limit, obeyed and violated, through one helper.

use std::time::Duration;

use executor::sandbox::Limits;
use executor::sandbox::{LimitKind, Outcome, Status};

use crate::common::*;

/// Runs `code` under `within` (must end `ok`) and under `beyond` (must end
/// with `violated`, with a readable `[runbox]` line on stderr), then checks
/// the sandbox still serves.
async fn obeyed_and_violated(
    code: &str,
    within: Limits,
    beyond: Limits,
    violated: Status,
) -> (Outcome, Outcome) {
    let ok = run_limited(code, within).await;
    assert_status(&ok, Status::Ok);
    assert_eq!(ok.limit, None, "no limit shaped the run within its budget");
    let bad = run_limited(code, beyond).await;
    assert_status(&bad, violated);
    let kind = match violated {
        Status::Timeout => Some(LimitKind::Timeout),
        Status::FuelExhausted => Some(LimitKind::Fuel),
        Status::MemoryExceeded => Some(LimitKind::Memory),
        _ => Some(LimitKind::Output),
    };
    assert_eq!(
        bad.limit.as_ref().map(|l| l.kind),
        kind,
        "the limit that fired is named"
    );
    if violated != Status::Ok {
        let tag = format!("[runbox] {}:", violated.as_str());
        assert!(
            stderr(&bad).contains(&tag),
            "stderr lacks {tag:?}: {}",
            stderr(&bad)
        );
    }
    assert_still_serves().await;
    (ok, bad)
}

#[tokio::test]
async fn fuel() {
    let code = "print(sum(range(300_000)))";
    let (ok, bad) = obeyed_and_violated(
        code,
        limits(),
        Limits {
            fuel: 20_000_000,
            ..limits()
        },
        Status::FuelExhausted,
    )
    .await;
    assert_eq!(stdout(&ok), "44999850000\n");
    let used = ok.fuel_used.expect("exact fuel after a normal exit");
    assert!(
        used > 20_000_000,
        "the loop should cost more than the tight budget: {used}"
    );
    assert_eq!(bad.fuel_used, Some(20_000_000));
    assert_eq!(bad.exit_code, None);
}

#[tokio::test]
async fn wall_clock_while_blocked_in_the_host() {
    let code = "import time; time.sleep(0.3); print('woke')";
    let (ok, bad) = obeyed_and_violated(
        code,
        limits(),
        Limits {
            timeout: Duration::from_millis(100),
            ..limits()
        },
        Status::Timeout,
    )
    .await;
    assert_eq!(stdout(&ok), "woke\n");
    assert_eq!(bad.fuel_used, None, "fuel is not exact after a timeout");
    assert!(bad.duration < Duration::from_secs(2), "{:?}", bad.duration);
}

#[tokio::test]
async fn wall_clock_while_computing() {
    // Enough fuel for minutes: only the deadline can stop it.
    let code = "n = 0\nfor i in range(3_000_000): n += i\nprint('done')";
    let (_, bad) = obeyed_and_violated(
        code,
        limits(),
        Limits {
            timeout: Duration::from_millis(50),
            ..limits()
        },
        Status::Timeout,
    )
    .await;
    assert!(bad.duration < Duration::from_secs(2), "{:?}", bad.duration);
}

#[tokio::test]
async fn memory_single_huge_allocation() {
    let code = "b = bytearray(64 * 2**20); print(len(b))";
    let (ok, bad) = obeyed_and_violated(
        code,
        limits(),
        Limits {
            memory_bytes: 48 << 20,
            ..limits()
        },
        Status::MemoryExceeded,
    )
    .await;
    assert_eq!(stdout(&ok), "67108864\n");
    assert!(stderr(&bad).contains("MemoryError"), "{}", stderr(&bad));
}

#[tokio::test]
async fn memory_slow_growth() {
    let code = "chunks = []\nfor _ in range(40): chunks.append(bytearray(2**20))\nprint(len(chunks))";
    let (ok, _) = obeyed_and_violated(
        code,
        limits(),
        Limits {
            memory_bytes: 48 << 20,
            ..limits()
        },
        Status::MemoryExceeded,
    )
    .await;
    assert_eq!(stdout(&ok), "40\n");
}

#[tokio::test]
async fn output_is_capped_per_stream() {
    let code = "import sys\nprint('o' * 1000)\nprint('e' * 1000, file=sys.stderr)";
    let (ok, bad) = obeyed_and_violated(
        code,
        limits(),
        Limits {
            output_bytes: 100,
            ..limits()
        },
        // Truncation is not a failure of the run: it is flagged, not a status.
        Status::Ok,
    )
    .await;
    assert_eq!(ok.stdout.len(), 1001);
    assert!(!ok.stdout_truncated && !ok.stderr_truncated);
    assert_eq!(bad.stdout, vec![b'o'; 100]);
    assert_eq!(bad.stderr, vec![b'e'; 100]);
    assert!(bad.stdout_truncated && bad.stderr_truncated);
}

#[tokio::test]
async fn fuel_is_enforced_to_the_unit() {
    // Fuel is deterministic for a snippet that does not depend on the
    // per-run random seed. Find the smallest budget that lets it finish: the
    // budget it reports using is enough, that budget again is enough, one
    // unit less is not, and the boundary sits within 1% of what it used.
    let code = "n = 0\nfor i in range(20_000): n += i\nprint(n)";
    let first = run(code).await;
    assert_status(&first, Status::Ok);
    let used = first.fuel_used.expect("exact fuel after a normal exit");
    let finishes = |fuel: u64| async move {
        let o = run_limited(code, Limits { fuel, ..limits() }).await;
        match o.status {
            Status::Ok => true,
            Status::FuelExhausted => false,
            other => panic!("unexpected {other:?} with fuel {fuel}"),
        }
    };
    assert!(finishes(used).await, "the reported budget suffices");
    let (mut short, mut enough) = (used / 2, used);
    assert!(!finishes(short).await);
    while enough - short > 1 {
        let mid = short + (enough - short) / 2;
        if finishes(mid).await {
            enough = mid;
        } else {
            short = mid;
        }
    }
    assert!(finishes(enough).await, "the boundary is stable");
    let o = run_limited(
        code,
        Limits {
            fuel: enough - 1,
            ..limits()
        },
    )
    .await;
    assert_status(&o, Status::FuelExhausted);
    assert_eq!(
        o.limit.map(|l| (l.kind, l.value)),
        Some((LimitKind::Fuel, enough - 1))
    );
    assert!(used - enough <= used / 100, "boundary {enough} vs used {used}");
}

#[tokio::test]
async fn memory_is_enforced_to_the_byte() {
    // Linear memory grows in 64 KiB pages, and the limiter allows a growth
    // exactly up to `memory_bytes`. Find the smallest limit a fixed
    // allocation runs under: that limit again is enough, one byte less is
    // refused as `memory_exceeded`, and the boundary is a whole page.
    let code = "b = bytearray(32 * 2**20); print(len(b))";
    let finishes = |memory_bytes: u64| async move {
        let o = run_limited(
            code,
            Limits {
                memory_bytes,
                ..limits()
            },
        )
        .await;
        match o.status {
            Status::Ok => true,
            Status::MemoryExceeded => false,
            other => panic!("unexpected {other:?} with memory {memory_bytes}"),
        }
    };
    let (mut short, mut enough) = (32 << 20, 256 << 20);
    assert!(
        !finishes(short).await,
        "the allocation alone needs more than its own size"
    );
    assert!(finishes(enough).await);
    while enough - short > 1 {
        let mid = short + (enough - short) / 2;
        if finishes(mid).await {
            enough = mid;
        } else {
            short = mid;
        }
    }
    assert!(finishes(enough).await, "the boundary is stable");
    let o = run_limited(
        code,
        Limits {
            memory_bytes: enough - 1,
            ..limits()
        },
    )
    .await;
    assert_status(&o, Status::MemoryExceeded);
    assert_eq!(
        o.limit.map(|l| (l.kind, l.value)),
        Some((LimitKind::Memory, enough - 1))
    );
    assert_eq!(enough % 65536, 0, "the boundary {enough} is a page boundary");
}

/// The snapshot's objects are frozen at build time (`app.py`: the
/// collector never visits them, so it never writes to their pages), and
/// a run's own cyclic garbage is still collected: 300 000 self-referencing
/// objects of ~1 KiB each (~330 MiB made in all) finish under a 48 MiB cap;
/// with the collector off, the same program runs out of memory.
#[tokio::test]
async fn the_collector_skips_the_snapshot_and_still_frees_a_runs_cycles() {
    let program = |setup: &str| {
        format!(
            "import gc\n{setup}\nprint(gc.get_freeze_count() > 10000, gc.isenabled())\n\
             class Node:\n    def __init__(self):\n        self.me = self\n        self.pad = bytearray(1024)\n\
             for _ in range(300_000):\n    Node()\nprint('done')\n"
        )
    };
    let tight = Limits {
        memory_bytes: 48 << 20,
        ..limits()
    };
    let o = run_job(&program(""), "", &[], tight).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "True True\ndone\n");
    let o = run_job(&program("gc.disable()"), "", &[], tight).await;
    assert_status(&o, Status::MemoryExceeded);
    assert_eq!(stdout(&o), "True False\n");
}
