//! The guest's clocks are coarse: every reading is a multiple of the
//! resolution (`EXECUTOR_CLOCK_RESOLUTION_US`), and monotonic time still
//! never goes back.

use runbox_api::{ExecuteRequest, Status};

use crate::common::*;

/// Prints `True` for each property of many clock readings that must hold at
/// a resolution of `res_ns`, then the resolutions Python reports.
fn readings(res_ns: u64) -> String {
    format!(
        "import time\n\
         R = {res_ns}\n\
         mono = [time.monotonic_ns() for _ in range(20_000)]\n\
         perf = [time.perf_counter_ns() for _ in range(2_000)]\n\
         wall = [time.time_ns() for _ in range(20_000)]\n\
         # The clock moves on: wait for a tick (a hang here is a timeout).\n\
         t0 = time.monotonic_ns()\n\
         while time.monotonic_ns() == t0: pass\n\
         print(all(t % R == 0 for t in mono + perf + wall))\n\
         print(all(a <= b for a, b in zip(mono, mono[1:])))\n\
         print(all(a <= b for a, b in zip(perf, perf[1:])))\n\
         print(time.monotonic_ns() - t0 >= R)\n\
         print(time.get_clock_info('monotonic').resolution, time.get_clock_info('time').resolution)\n"
    )
}

#[tokio::test]
async fn clock_readings_are_multiples_of_the_resolution() {
    // The in-process sandbox runs at the default, 100 µs.
    let res = executor::sandbox::clock::DEFAULT_RESOLUTION;
    assert_eq!(res.as_micros(), 100);
    let o = run(&readings(100_000)).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "True\nTrue\nTrue\nTrue\n0.0001 0.0001\n");
}

#[tokio::test]
async fn the_resolution_is_configurable() {
    let ex = testkit::executor("clocks")
        .env("EXECUTOR_CLOCK_RESOLUTION_US", "2000")
        .ready()
        .await;
    let result = ex
        .execute(&ExecuteRequest::code(readings(2_000_000)))
        .await
        .response();
    assert_eq!(result.status, Status::Ok, "{}", result.stderr);
    assert_eq!(result.stdout, "True\nTrue\nTrue\nTrue\n0.002 0.002\n");
}

#[tokio::test]
async fn a_zero_resolution_is_refused_at_start() {
    let err = testkit::executor("clocks-zero")
        .env("EXECUTOR_CLOCK_RESOLUTION_US", "0")
        .try_start()
        .await
        .expect_err("a zero clock resolution is a configuration error");
    assert!(err.output.contains("clock-resolution-us"), "{err}");
}
