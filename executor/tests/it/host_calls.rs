//! Host calls the guest can make the host refuse: each ends the run as the
//! guest's `error` (or `timeout`), with a `[runbox]` note, never as a host
//! fault; and the next run is served.

use std::time::Duration;

use executor::sandbox::Limits;
use executor::sandbox::{Outcome, Status};

use crate::common::*;

const REFUSED: &str = "[runbox] error: the sandbox refused a host call: ";

fn short_timeout() -> Limits {
    Limits {
        timeout: Duration::from_secs(1),
        ..limits()
    }
}

/// `code` ends as `error` or `timeout`, never as a host fault: a host call
/// refused stops it with the refusal note and no exit code; an ordinary
/// Python exception (the call failing inside the guest) exits 1; a call that
/// blocks instead is ended by the deadline. Either way the sandbox serves on.
async fn never_a_host_fault(code: &str) -> Outcome {
    let o = run_limited(code, short_timeout()).await;
    match (o.status, o.exit_code) {
        (Status::Error, None) => {
            assert!(stderr(&o).contains(REFUSED), "{code}: {}", stderr(&o));
        }
        (Status::Error, Some(1)) => {
            assert!(stderr(&o).contains("Traceback"), "{code}: {}", stderr(&o));
        }
        (Status::Timeout, None) => {}
        (status, exit) => panic!("{code}: {status:?}, exit {exit:?}\n{}", stderr(&o)),
    }
    eprintln!(
        "{code:?}: {:?} {:?}: {}",
        o.status,
        o.exit_code,
        stderr(&o).lines().last().unwrap_or_default()
    );
    assert_still_serves().await;
    o
}

#[tokio::test]
async fn an_empty_poll_list_is_the_guests_error() {
    // wasmtime-wasi refuses `poll` of an empty list with an error that is
    // not a trap; it used to be a host fault (HTTP 500).
    for code in [
        "import select\nselect.poll().poll()",
        "import selectors\nselectors.DefaultSelector().select()",
    ] {
        let o = never_a_host_fault(code).await;
        assert_eq!((o.status, o.exit_code), (Status::Error, None), "{code}");
        assert!(
            stderr(&o).ends_with("empty poll list\n"),
            "{code}: {}",
            stderr(&o)
        );
    }
    // asyncio cannot make its self-pipe (no sockets): an ordinary exception.
    never_a_host_fault("import asyncio\nasyncio.run(asyncio.Event().wait())").await;
}

#[tokio::test]
async fn large_random_requests_are_served_in_chunks_or_cut_by_the_deadline() {
    // CPython asks the host for at most 256 bytes at a time (getentropy), so
    // the host's cap (`MAX_RANDOM_BYTES`) is never what a Python snippet
    // meets; a huge `os.urandom` is many small calls, bounded by the deadline.
    let o = run("import os\nprint(len(os.urandom(2**20 + 1)))").await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "1048577\n");
    for code in [
        "import os\nos.urandom(80 * 2**20)",
        "import secrets\nsecrets.token_bytes(80 * 2**20)",
    ] {
        let o = run_limited(code, short_timeout()).await;
        assert!(
            matches!(o.status, Status::Ok | Status::Timeout),
            "{code}: {:?}\n{}",
            o.status,
            stderr(&o)
        );
        assert_still_serves().await;
    }
}

#[tokio::test]
async fn resources_are_released_and_the_table_never_fills() {
    // Each poll, sleep and select subscribes (a resource-table entry) and
    // drops it again: many more of them than the table holds all succeed.
    let o = run(concat!(
        "import select, time\n",
        "for _ in range(10_000):\n",
        "    select.select([], [1, 2], [], 0)\n",
        "    time.sleep(0)\n",
        "p = select.poll()\n",
        "for fd in (1, 2): p.register(fd, select.POLLOUT)\n",
        "for _ in range(10_000): p.poll(0)\n",
        "print('ok')",
    ))
    .await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "ok\n");
}

#[tokio::test]
async fn over_http_a_refused_host_call_is_a_200_with_status_error() {
    let ex = testkit::executor("host-calls").ready().await;
    for code in [
        "import select\nselect.poll().poll()",
        "import selectors\nselectors.DefaultSelector().select()",
    ] {
        let result = ex.run(code).await; // asserts 200
        assert_eq!((result.status, result.exit_code), (Status::Error, None), "{code}");
        assert!(result.stderr.contains(REFUSED), "{code}: {}", result.stderr);
    }
    assert_eq!(ex.run("print('alive')").await.stdout, "alive\n");
}
