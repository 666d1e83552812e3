//! Hostile snippets: each asserts the exact outcome and that the sandbox
//! still serves the next request.

use std::time::Duration;

use executor::sandbox::Limits;
use executor::sandbox::{Outcome, Status};

use crate::common::*;

/// Runs a hostile snippet under `limits`, checks its status, then checks the
/// sandbox still serves. Returns the outcome for more specific assertions.
async fn hostile(code: &str, limits: Limits, status: Status) -> Outcome {
    let o = run_limited(code, limits).await;
    assert_status(&o, status);
    assert_still_serves().await;
    o
}

fn short_timeout() -> Limits {
    Limits {
        timeout: Duration::from_millis(300),
        ..limits()
    }
}

fn small_fuel() -> Limits {
    Limits {
        fuel: 200_000_000,
        timeout: Duration::from_secs(30),
        ..limits()
    }
}

#[tokio::test]
async fn infinite_loop_hits_the_deadline_or_the_fuel() {
    hostile("while True: pass", short_timeout(), Status::Timeout).await;
    hostile("while True: pass", small_fuel(), Status::FuelExhausted).await;
}

#[tokio::test]
async fn huge_sleep_is_cut_at_the_deadline() {
    let o = hostile("import time\ntime.sleep(10**6)", short_timeout(), Status::Timeout).await;
    assert!(o.duration < Duration::from_secs(2), "{:?}", o.duration);
}

#[tokio::test]
async fn memory_bombs() {
    // wasm32: a 2 GiB str cannot even be sized, CPython refuses up front.
    let o = hostile("x = 'x' * 2**31", limits(), Status::Error).await;
    assert!(stderr(&o).contains("OverflowError"), "{}", stderr(&o));
    let o = hostile("x = 'x' * 2**30", limits(), Status::MemoryExceeded).await;
    assert!(stderr(&o).contains("MemoryError"), "{}", stderr(&o));
    hostile(
        "l = []\nwhile True: l.append('x' * 10**6 + str(len(l)))",
        limits(),
        Status::MemoryExceeded,
    )
    .await;
}

#[tokio::test]
async fn output_flood_is_dropped_past_the_cap() {
    let o = hostile("while True: print('x' * 1000)", short_timeout(), Status::Timeout).await;
    assert!(o.stdout_truncated);
    assert_eq!(o.stdout.len() as u64, limits().output_bytes);
}

#[tokio::test]
async fn deep_recursion_with_a_raised_limit() {
    // CPython 3.14 keeps Python frames on the heap: unbounded recursion grows
    // memory until the limiter refuses, and the interpreter gives up.
    let code = "import sys\nsys.setrecursionlimit(10**6)\ndef f(n): return f(n + 1)\nf(0)";
    let tight = Limits {
        memory_bytes: 64 << 20,
        ..limits()
    };
    hostile(code, tight, Status::MemoryExceeded).await;
    // With the default recursion limit it is an ordinary exception.
    let o = hostile("def f(n): return f(n + 1)\nf(0)", limits(), Status::Error).await;
    assert!(stderr(&o).contains("RecursionError"), "{}", stderr(&o));
}

#[tokio::test]
async fn huge_integers() {
    hostile("x = 10**10**8", short_timeout(), Status::Timeout).await;
    let o = hostile("print(str(10**5000))", limits(), Status::Error).await;
    assert!(stderr(&o).contains("ValueError"), "{}", stderr(&o));
}

#[tokio::test]
async fn catastrophic_regex() {
    hostile(
        "import re\nre.match(r'(a+)+$', 'a' * 40 + 'b')",
        short_timeout(),
        Status::Timeout,
    )
    .await;
}

#[tokio::test]
async fn no_processes() {
    for code in [
        "import os\nos.system('echo pwned')",
        "import subprocess\nsubprocess.run(['echo', 'pwned'])",
        "import os\nos.execv('/bin/sh', ['sh'])",
        "import os\nos.fork()",
    ] {
        let o = hostile(code, limits(), Status::Error).await;
        assert!(!stdout(&o).contains("pwned"), "{code}: {}", stdout(&o));
    }
}

#[tokio::test]
async fn no_network() {
    for code in [
        "import socket\nsocket.create_connection(('127.0.0.1', 80), timeout=1)",
        "import socket\nsocket.create_connection(('example.com', 80), timeout=1)",
        "import socket\nprint(socket.gethostbyname('localhost'))",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1/')",
    ] {
        hostile(code, limits(), Status::Error).await;
    }
}

/// The host's files are out of reach: the run's filesystem is its own, in
/// memory (`files.rs` has the quotas and the rest of the hostile cases).
#[tokio::test]
async fn no_host_files() {
    for (code, status, out) in [
        ("print(open('/etc/passwd').read())", Status::Error, ""),
        (
            "import os\nprint(os.listdir('/'))",
            Status::Ok,
            "['sandbox', 'tmp']\n",
        ),
        ("print(open('/proc/self/environ').read())", Status::Error, ""),
        (
            "print(open('../../../../etc/hostname').read())",
            Status::Error,
            "",
        ),
        (
            "import os\nos.symlink('/etc/passwd', 'link')\nprint(open('link').read())",
            Status::Error,
            "",
        ),
        (
            "print(open('fill.bin', 'wb').write(b'x' * 10**6))",
            Status::Ok,
            "1000000\n",
        ),
        (
            "import tempfile\nprint(tempfile.mkstemp()[1][:5])",
            Status::Ok,
            "/tmp/\n",
        ),
    ] {
        let o = hostile(code, limits(), status).await;
        assert_eq!(stdout(&o), out, "{code}");
    }
}

#[tokio::test]
async fn no_host_environment() {
    let o = hostile("import os\nprint(dict(os.environ))", limits(), Status::Ok).await;
    assert_eq!(stdout(&o), "{}\n");
}

#[tokio::test]
async fn no_threads() {
    let o = hostile(
        "import threading\nt = threading.Thread(target=print, args=('t',))\nt.start()\nt.join()",
        limits(),
        Status::Error,
    )
    .await;
    assert!(stderr(&o).contains("RuntimeError"), "{}", stderr(&o));
}

#[tokio::test]
async fn exit_codes_follow_cpython() {
    let cases: &[(&str, Status, i32)] = &[
        ("import sys; sys.exit()", Status::Ok, 0),
        ("import sys; sys.exit(None)", Status::Ok, 0),
        ("import sys; sys.exit(3)", Status::Error, 3),
        ("import sys; sys.exit(True)", Status::Error, 1),
        ("import sys; sys.exit(-1)", Status::Error, 255),
        ("import sys; sys.exit(256)", Status::Ok, 0),
        ("import sys; sys.exit(2**100 + 7)", Status::Error, 7),
        ("import sys; sys.exit('bye')", Status::Error, 1),
        // WASI 0.2's `exit` carries only success or failure.
        ("import os; os._exit(9)", Status::Error, 1),
        ("import os; os._exit(0)", Status::Ok, 0),
        ("raise ValueError('boom')", Status::Error, 1),
        ("raise KeyboardInterrupt", Status::Error, 1),
    ];
    for (code, status, exit) in cases {
        let o = run(code).await;
        assert_eq!(
            (o.status, o.exit_code),
            (*status, Some(*exit)),
            "{code}: {}",
            stderr(&o)
        );
    }
    let o = run("import sys; sys.exit('bye')").await;
    assert_eq!(stderr(&o), "bye\n");
    let o = run("raise ValueError('boom')").await;
    let err = stderr(&o);
    assert!(err.starts_with("Traceback (most recent call last):"), "{err}");
    assert!(err.contains("File \"main.py\", line 1"), "{err}");
    assert!(err.trim_end().ends_with("ValueError: boom"), "{err}");
    assert_still_serves().await;
}

#[tokio::test]
async fn invalid_utf8_output_is_replaced() {
    let o = hostile(
        "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe ok\\n')",
        limits(),
        Status::Ok,
    )
    .await;
    assert_eq!(o.stdout, b"\xff\xfe ok\n");
    assert_eq!(stdout(&o), "\u{fffd}\u{fffd} ok\n");
}

#[tokio::test]
async fn closing_stdout() {
    let o = hostile(
        "import sys\nsys.stdout.close()\nprint('after')",
        limits(),
        Status::Error,
    )
    .await;
    assert!(stderr(&o).contains("ValueError"), "{}", stderr(&o));
    let o = hostile(
        "import os\nprint('before', flush=True)\nos.close(1)\nprint('after')",
        limits(),
        Status::Error,
    )
    .await;
    assert_eq!(stdout(&o), "before\n");
    assert!(stderr(&o).contains("Bad file descriptor"), "{}", stderr(&o));
}

#[tokio::test]
async fn many_hostile_snippets_at_once() {
    let snippets = [
        ("while True: pass", Status::Timeout),
        ("import time\ntime.sleep(10**6)", Status::Timeout),
        ("x = bytearray(2**30)", Status::MemoryExceeded),
        ("print('fine')", Status::Ok),
    ];
    let runs = (0..64).map(|i| {
        let (code, status) = snippets[i % snippets.len()];
        async move { (run_limited(code, short_timeout()).await, status) }
    });
    for (o, status) in futures::future::join_all(runs).await {
        assert_status(&o, status);
    }
    assert_still_serves().await;
}
