//! Fuel bounds instructions, not time. wasmtime 48 charges `memory.copy` and
//! `memory.fill` one unit per byte on top of the instruction (so bulk memory
//! is metered), but a byte moved costs the same unit as an instruction while
//! running far faster, and time spent in host calls (sleeping, writing,
//! random bytes) costs no fuel at all. The wall-clock deadline is what
//! bounds time; these tests check it ends such loops, and print what each
//! burns per second (figures, not assertions).

use std::time::Duration;

use executor::sandbox::Limits;
use executor::sandbox::{LimitKind, Outcome, Status};

use crate::common::*;

/// Copies a 64 MiB bytearray into another `n` times (`memory.copy`).
fn bulk_copies(n: &str) -> String {
    format!("b = bytearray(64 << 20)\nb2 = bytearray(64 << 20)\nfor _ in {n}: b[:] = b2")
}

fn generous(timeout: Duration) -> Limits {
    Limits {
        timeout,
        fuel: 100_000_000_000,
        memory_bytes: 256 << 20,
        ..limits()
    }
}

fn per_second(o: &Outcome) -> String {
    let fuel = o.fuel_used.expect("exact fuel after a normal exit");
    format!(
        "{fuel} fuel in {:?} = {:.2e} fuel/s",
        o.duration,
        fuel as f64 / o.duration.as_secs_f64()
    )
}

/// `code` under a short deadline and fuel for many seconds: only the
/// deadline can end it.
async fn ended_by_the_deadline(code: &str) {
    let timeout = Duration::from_millis(500);
    let o = run_limited(code, generous(timeout)).await;
    assert_status(&o, Status::Timeout);
    assert_eq!(o.limit.map(|l| l.kind), Some(LimitKind::Timeout));
    assert!(o.duration < Duration::from_secs(5), "{code}: {:?}", o.duration);
    eprintln!(
        "{code:?} under a {timeout:?} deadline: ended after {:?}",
        o.duration
    );
    assert_still_serves().await;
}

#[tokio::test]
async fn a_bulk_memory_loop_is_ended_by_the_deadline() {
    ended_by_the_deadline(&bulk_copies("iter(int, 1)")).await;
}

#[tokio::test]
async fn a_host_call_loop_is_ended_by_the_deadline() {
    // Past the output cap every write is dropped by the host: cheap in fuel.
    ended_by_the_deadline("import sys\nwhile True: sys.stdout.buffer.write(b'x' * 4096)").await;
    ended_by_the_deadline("import os\nwhile True: os.urandom(256)").await;
}

#[tokio::test]
async fn bulk_memory_is_charged_per_byte_and_host_time_not_at_all() {
    // 40 copies of 64 MiB cost at least a unit per byte moved.
    let copies = run_limited(&bulk_copies("range(40)"), generous(Duration::from_secs(30))).await;
    assert_status(&copies, Status::Ok);
    let moved = 40 * (64 << 20);
    let fuel = copies.fuel_used.unwrap();
    assert!(fuel >= moved, "{moved} bytes copied for {fuel} fuel");

    // Sleeping 100 times longer costs no more fuel: time in the host is free.
    let nap = run_limited("import time\ntime.sleep(0.003)", generous(Duration::from_secs(5))).await;
    let sleep = run_limited("import time\ntime.sleep(0.3)", generous(Duration::from_secs(5))).await;
    assert_status(&sleep, Status::Ok);
    let (a, b) = (nap.fuel_used.unwrap(), sleep.fuel_used.unwrap());
    assert!(b.abs_diff(a) < a / 10, "sleeping 3 ms cost {a} fuel, 300 ms {b}");

    // Reported, not asserted: fuel burnt per second of each kind of work.
    let plain = run_limited(
        "n = 0\nfor i in range(3_000_000): n += i",
        generous(Duration::from_secs(30)),
    )
    .await;
    let writes = run_limited(
        "import sys\nfor _ in range(20_000): sys.stdout.buffer.write(b'x' * 4096)",
        generous(Duration::from_secs(30)),
    )
    .await;
    let random = run_limited(
        "import os\nfor _ in range(100_000): os.urandom(256)",
        generous(Duration::from_secs(30)),
    )
    .await;
    eprintln!("fuel per second: plain Python loop {}", per_second(&plain));
    eprintln!("fuel per second: 64 MiB copies {}", per_second(&copies));
    eprintln!(
        "fuel per second: 4 KiB writes past the cap {}",
        per_second(&writes)
    );
    eprintln!("fuel per second: 256-byte os.urandom {}", per_second(&random));
    eprintln!("fuel per second: time.sleep(0.3) {}", per_second(&sleep));
}
