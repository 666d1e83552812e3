"""runbox guest runner: runs one program's entry as `__main__`, as
`python3 path args` would from the run's working directory.

Shared by both runtimes: the `python` guest (`app.py`, componentize-py)
calls `run` from its WIT export; the `python-scientific` interpreter, a
WASI command, starts with `python -c "...; runbox_run.main()"` and gets this
file from its read-only layer (`executor/src/runtimes/scientific.rs`).
Only the standard library is imported here, and as little of it as
possible: every import is paid by every run of the command guest.
"""

import os
import sys

# The run's working directory (the host's in-memory filesystem, see
# `executor/src/sandbox/fs.rs`).
WORKDIR = "/sandbox"

# matplotlib's font list, built by the executor at load
# (`executor/src/runtimes/scientific.rs`).
FONT_CACHE = "/usr/local/lib/runbox/matplotlib"

# Exit status of a run whose output could not be flushed, as for CPython
# (`Py_FinalizeEx` failing).
FLUSH_FAILED = 120

# The streams as the interpreter made them, before any program can replace
# `sys.stdout` (or `sys.__stdout__`): flushed at the end of every run, and
# where a note goes when the program's own stderr cannot take it. Their
# methods are called through their type, so an attribute the program set on
# the object (`sys.stderr.write = ...`) is not what runs.
_STDOUT = sys.stdout
_STDERR = sys.stderr


def _exit_code(code: object) -> int:
    """The exit status CPython gives `raise SystemExit(code)`, computed
    without calling any method the program could have defined."""
    if code is None:
        return 0
    try:
        # The value of an int (bool and int subclasses included) as a plain
        # int: `int.__int__` reads the object's digits, never a subclass's
        # `__index__`, `__int__` or `__and__`, and refuses anything else
        # with a TypeError (as CPython reads `PyLong_AsLong` of the code).
        value = int.__int__(code)  # type: ignore[arg-type]
    except TypeError:
        pass
    else:
        # As for a native `python3` on POSIX, the status is the low byte.
        return value & 0xFF
    # Anything else is printed (its `__str__` is the program's) and exits 1.
    write_err(code)
    return 1


def write_err(obj: object) -> None:
    """`print(obj, file=sys.stderr)`, whatever the program did to either."""
    try:
        print(obj, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - str(), stderr: the program's code
        pass


def note(message: str) -> None:
    """A `[runbox]` line on the original stderr, whatever the program did
    to `sys.stderr`."""
    try:
        type(_STDERR).write(_STDERR, f"[runbox] {message}\n")
    except BaseException:  # noqa: BLE001 - the program may have closed stderr
        pass


def _print_exception(value: BaseException) -> None:
    """The program's traceback on its stderr, or at least a line saying it
    could not be printed (a hostile `__str__`, a replaced `sys.stderr`)."""
    try:
        import traceback

        tb = value.__traceback__
        # Drop our own frame so the traceback starts at the program.
        traceback.print_exception(type(value), value, tb.tb_next if tb else None)
        return
    except BaseException:  # noqa: BLE001 - raised by the program's code
        pass
    try:
        name = type.__dict__["__name__"].__get__(type(value))
    except BaseException:  # noqa: BLE001 - as good as it gets
        name = "an exception"
    note(f"the program raised {name}, which could not be printed")


def flush() -> bool:
    """Flushes the program's `sys.stdout` and `sys.stderr` as CPython does
    at exit (skipping `None` and closed streams), then the original ones.
    False when a flush of the program's streams failed."""
    ok = True
    for name in ("stdout", "stderr"):
        try:
            stream = getattr(sys, name, None)
            if stream is None or _is_closed(stream):
                continue
            stream.flush()
        except BaseException:  # noqa: BLE001 - the program's replacement raised
            ok = False
    for stream in (_STDOUT, _STDERR):
        try:
            if not stream.closed:
                type(stream).flush(stream)
        except BaseException:  # noqa: BLE001 - closed or broken by the program
            pass
    return ok


def _is_closed(stream: object) -> bool:
    try:
        return bool(stream.closed)  # type: ignore[attr-defined]
    except BaseException:  # noqa: BLE001 - as CPython: unknown is open
        return False


def run(code: str, path: str, args: list[str]) -> int:
    """Runs `code`, the content of `path` (relative to the working
    directory), as `__main__` with `sys.argv = [path, *args]`; returns the
    exit status (0, the `sys.exit` code, or 1 after an uncaught exception,
    whose traceback goes to stderr). The program's streams are flushed."""
    # As `python3 path` run from the working directory: cwd, the script's
    # directory first on `sys.path` (files beside it import as modules),
    # `argv[0]` and `__file__` as given. Imports of the run's own modules
    # write no `__pycache__` into it: that would count against its quota
    # and come back as output files.
    sys.dont_write_bytecode = True
    try:
        os.chdir(WORKDIR)
    except OSError:
        pass  # a host without the filesystem (`cargo xtask bench` measures it)
    sys.path.insert(0, os.path.dirname(os.path.join(WORKDIR, path)))
    sys.argv = [path, *args]
    module = type(sys)("__main__")
    module.__dict__["__builtins__"] = __builtins__
    module.__dict__["__file__"] = path
    sys.modules["__main__"] = module
    try:
        exec(compile(code, path, "exec"), module.__dict__)
        status = 0
    except SystemExit as e:
        try:
            status = _exit_code(e.code)
        except BaseException:  # noqa: BLE001 - e.g. a `code` property raising
            status = 1
    except BaseException as e:  # noqa: BLE001 - the program's own failure
        _print_exception(e)
        status = 1
    if not flush() and status == 0:
        status = FLUSH_FAILED
    return status


def main() -> None:
    """The command guest's start: `sys.argv` is `["-c", entry, *args]`.
    Runs the entry, saves the figures still open, runs `atexit` handlers,
    and ends the process with the exit status.

    A status of 0 or 1 ends the process at once (`os._exit`): CPython's
    finalisation (freeing every module of an interpreter about to be
    discarded) would cost ~12 ms of every run. WASI 0.2's exit carries
    only success or failure, so any other status is returned through
    CPython's own exit (`SystemExit`, with finalisation) to the `run`
    export, which returns it exactly."""
    status = 1
    try:
        path, args = sys.argv[1], sys.argv[2:]
        # matplotlib draws with Agg, and its `show()` saves the figures
        # (`runbox_plots.py`); its font list is the one the executor built
        # at load, read-only (without it, matplotlib builds one in a
        # temporary directory of the run, with a warning). Set in the
        # process, for matplotlib: the host gives no environment.
        os.environ["MPLBACKEND"] = "module://runbox_plots"
        if os.path.isdir(FONT_CACHE):
            os.environ["MPLCONFIGDIR"] = FONT_CACHE
        with open(os.path.join(WORKDIR, path), encoding="utf-8") as f:
            code = f.read()
        status = run(code, path, args)
        plots = sys.modules.get("runbox_plots")
        if plots is not None:
            plots.save_open_figures()
        import atexit

        atexit._run_exitfuncs()
    except BaseException as e:  # noqa: BLE001 - raised inside our own handling
        note(f"the runner failed: {type(e).__name__}")
    if not flush() and status == 0:
        status = FLUSH_FAILED
    if status in (0, 1):
        os._exit(status)
    raise SystemExit(status)
