//! The guest program (`executor/guest/app.py`) against snippets that attack
//! it rather than the host: hostile `__str__`, `flush`, `write`, exit codes
//! with hostile methods. Each run keeps an exact outcome, a failed snippet
//! never reads as a success, and the interpreter never crashes.

use executor::sandbox::Status;

use crate::common::*;

/// Runs `code`, asserts its status and exit code, and that the sandbox still
/// serves. Returns its stderr.
async fn ends(code: &str, status: Status, exit_code: i32) -> String {
    let o = run(code).await;
    assert_eq!(
        (o.status, o.exit_code),
        (status, Some(exit_code)),
        "{code}\n--- stderr\n{}",
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(!err.contains("interpreter crashed"), "{code}: {err}");
    assert_still_serves().await;
    err
}

#[tokio::test]
async fn keyboard_interrupt_from_an_exceptions_str() {
    let err = ends(
        "class E(Exception):\n    def __str__(self): raise KeyboardInterrupt\nraise E()",
        Status::Error,
        1,
    )
    .await;
    // CPython's traceback module stands in for the str() it could not get.
    assert!(err.trim_end().ends_with("E: <exception str() failed>"), "{err}");
    // Also when the str() is asked for by `sys.exit`.
    ends(
        "import sys\nclass C:\n    def __str__(self): raise KeyboardInterrupt\nsys.exit(C())",
        Status::Error,
        1,
    )
    .await;
}

#[tokio::test]
async fn keyboard_interrupt_from_a_replaced_flush() {
    // As CPython: the snippet succeeded but its output could not be flushed
    // at exit, which is exit status 120.
    let code = "import sys\ndef f(): raise KeyboardInterrupt\nsys.stdout.flush = f\nprint('hi')";
    ends(code, Status::Error, 120).await;
    let code = "import sys\ndef f(): raise SystemExit(0)\nsys.stderr.flush = f";
    ends(code, Status::Error, 120).await;
    // A failed snippet stays at its own status.
    let code = "import sys\ndef f(): raise KeyboardInterrupt\nsys.stdout.flush = f\nraise ValueError";
    ends(code, Status::Error, 1).await;
}

#[tokio::test]
async fn keyboard_interrupt_from_a_replaced_stderr_write() {
    let code =
        "import sys\ndef w(s): raise KeyboardInterrupt\nsys.stderr.write = w\nraise ValueError('boom')";
    let err = ends(code, Status::Error, 1).await;
    // The snippet's stderr is broken; the note goes to the real one.
    assert!(err.contains("ValueError"), "{err}");
    let code = "import sys\nclass W:\n    def write(self, s): raise KeyboardInterrupt\n    def flush(self): pass\nsys.stderr = W()\nraise ValueError('boom')";
    ends(code, Status::Error, 1).await;
}

#[tokio::test]
async fn an_exception_that_cannot_be_printed_is_still_a_failure() {
    // stderr's write raising SystemExit(0) while the traceback prints: the
    // snippet failed, whatever its traceback printer says.
    let code = "import sys\nsys.stderr.write = lambda s: sys.exit(0)\nraise ValueError('boom')";
    let err = ends(code, Status::Error, 1).await;
    assert!(err.contains("ValueError"), "{err}");
    let code = "import sys\ndef w(s): raise SystemExit(0)\nsys.stderr = type('W', (), {'write': staticmethod(w), 'flush': lambda self: None})()\n1/0";
    ends(code, Status::Error, 1).await;
    // A SystemExit whose `code` cannot be read is a failure too.
    let code = "class X(SystemExit):\n    @property\n    def code(self): raise KeyboardInterrupt\nraise X(0)";
    ends(code, Status::Error, 1).await;
}

#[tokio::test]
async fn exit_codes_never_call_the_snippets_methods() {
    let evil = "import sys\n\
        class Evil(int):\n\
        \x20   def __and__(self, other): return -7\n\
        \x20   def __rand__(self, other): return 2**100\n\
        \x20   def __index__(self): raise KeyboardInterrupt\n\
        \x20   def __int__(self): return 2**100\n\
        \x20   def __str__(self): raise KeyboardInterrupt\n";
    // The status is the int's own value, low byte, as for CPython.
    ends(&format!("{evil}sys.exit(Evil(3))"), Status::Error, 3).await;
    ends(&format!("{evil}sys.exit(Evil(0))"), Status::Ok, 0).await;
    ends(&format!("{evil}sys.exit(Evil(2**100 + 5))"), Status::Error, 5).await;
    ends(&format!("{evil}sys.exit(Evil(-1))"), Status::Error, 255).await;
    // An `__and__` whose result does not fit the WIT `s32` (it panicked the runtime).
    let big = "import sys
class Big(int):
    def __and__(self, other): return 2**100
";
    ends(&format!("{big}sys.exit(Big(4))"), Status::Error, 4).await;
    ends(&format!("{big}raise SystemExit(Big(256 + 9))"), Status::Error, 9).await;
    // A bool subclass cannot be made, but `True`/`False` still work.
    ends("import sys; sys.exit(False)", Status::Ok, 0).await;
    // Not an int at all, however much it looks like one: printed, exit 1.
    let err = ends(
        "import sys\nclass I:\n    def __index__(self): return 0\n    def __int__(self): return 0\n    def __str__(self): return 'not an int'\nsys.exit(I())",
        Status::Error,
        1,
    )
    .await;
    assert_eq!(err, "not an int\n");
}
