"""runbox guest: runs one Python snippet as __main__ inside a fresh sandbox.

componentize-py executes this module at build time and snapshots the
interpreter, so everything imported here is already loaded when a request's
fresh instance starts. It also decides what the sandbox can import at all:
componentize-py bundles only the modules imported while it builds.
"""

import importlib
import sys

# The standard library the executor promises (README "Standard library").
PRELOADED = """
json re math cmath collections itertools functools operator datetime time
calendar decimal fractions statistics random heapq bisect array struct
dataclasses typing enum abc contextlib copy pprint reprlib textwrap string
difflib unicodedata hashlib hmac base64 binascii zlib csv io pathlib fnmatch
glob os os.path tempfile shlex traceback inspect ast dis tokenize keyword
warnings weakref gc types numbers secrets uuid html html.parser
xml.etree.ElementTree urllib.parse email email.message email.parser
json.decoder unittest doctest codecs queue sched shutil linecache locale
platform pickle copyreg zipfile gzip bz2 lzma graphlib colorsys
threading socket subprocess signal select selectors asyncio
""".split()

_MISSING: list[str] = []
for _name in PRELOADED:
    try:
        importlib.import_module(_name)
    except Exception as _e:  # noqa: BLE001 - recorded and reported, not fatal
        _MISSING.append(f"{_name}: {type(_e).__name__}: {_e}")

import os  # noqa: E402
import random  # noqa: E402
import traceback  # noqa: E402

import wit_world  # noqa: E402

# The streams as the interpreter made them, before any snippet can replace
# `sys.stdout` (or `sys.__stdout__`): flushed at the end of every run, and
# where a note goes when the snippet's own stderr cannot take it. Their
# methods are called through their type, so an attribute the snippet set on
# the object (`sys.stderr.write = ...`) is not what runs.
_STDOUT = sys.stdout
_STDERR = sys.stderr

# Exit status of a run whose output could not be flushed, as for CPython
# (`Py_FinalizeEx` failing).
_FLUSH_FAILED = 120

# Nothing of the build's filesystem may ride along in the snapshot: the
# importer caches hold a listing of every path entry searched while the
# modules above were imported (the build is hermetic, see `xtask/src/setup.rs`,
# so these are the guest's own directories, but a run has no business with
# them). Dropping the finders drops their listings; at run time there is no
# filesystem to list again, and an import of a module not bundled fails
# either way. (`importlib.invalidate_caches()` would do no more here, and
# imports `importlib.metadata` as a side effect.)
sys.path_importer_cache.clear()

# The run's working directory (the host's in-memory filesystem, see
# `executor/src/sandbox/fs.rs`). Imports of the run's own modules write no
# `__pycache__` into it: that would count against its quota and come back as
# output files.
WORKDIR = "/sandbox"
sys.dont_write_bytecode = True


def _exit_code(code: object) -> int:
    """The exit status CPython gives `raise SystemExit(code)`, computed
    without calling any method the snippet could have defined."""
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
    # Anything else is printed (its `__str__` is the snippet's) and exits 1.
    _write_err(code)
    return 1


def _write_err(obj: object) -> None:
    """`print(obj, file=sys.stderr)`, whatever the snippet did to either."""
    try:
        print(obj, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - str(), stderr: the snippet's code
        pass


def _print_exception(value: BaseException) -> None:
    """The snippet's traceback on its stderr, or at least a line saying it
    could not be printed (a hostile `__str__`, a replaced `sys.stderr`)."""
    try:
        tb = value.__traceback__
        # Drop our own frame so the traceback starts at the snippet.
        traceback.print_exception(type(value), value, tb.tb_next if tb else None)
        return
    except BaseException:  # noqa: BLE001 - raised by the snippet's code
        pass
    try:
        name = type.__dict__["__name__"].__get__(type(value))
        message = f"[runbox] the snippet raised {name}, which could not be printed\n"
        type(_STDERR).write(_STDERR, message)
    except BaseException:  # noqa: BLE001 - the snippet may have closed stderr
        pass


def _flush() -> bool:
    """Flushes the snippet's `sys.stdout` and `sys.stderr` as CPython does
    at exit (skipping `None` and closed streams), then the original ones.
    False when a flush of the snippet's streams failed."""
    ok = True
    for name in ("stdout", "stderr"):
        try:
            stream = getattr(sys, name, None)
            if stream is None or _is_closed(stream):
                continue
            stream.flush()
        except BaseException:  # noqa: BLE001 - the snippet's replacement raised
            ok = False
    for stream in (_STDOUT, _STDERR):
        try:
            if not stream.closed:
                type(stream).flush(stream)
        except BaseException:  # noqa: BLE001 - closed or broken by the snippet
            pass
    return ok


def _is_closed(stream: object) -> bool:
    try:
        return bool(stream.closed)  # type: ignore[attr-defined]
    except BaseException:  # noqa: BLE001 - as CPython: unknown is open
        return False


def _run(code: str, path: str, args: list[str]) -> int:
    # The snapshot was taken once, at build time: reseed everything that
    # would otherwise replay the same "random" values in every instance.
    random.seed()
    # As `python3 path` run from the working directory: cwd, the script's
    # directory first on `sys.path` (files beside it import as modules),
    # `argv[0]` and `__file__` as given.
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
    except BaseException as e:  # noqa: BLE001 - the snippet's own failure
        _print_exception(e)
        status = 1
    if not _flush() and status == 0:
        status = _FLUSH_FAILED
    return status


class WitWorld(wit_world.WitWorld):
    def run_snippet(self, code: str, path: str, args: list[str]) -> int:
        # Nothing may escape to componentize-py: an exception there is
        # printed by `PyErr_Print`, which turns a `SystemExit` into the
        # process's exit status (a failed snippet would read as a success)
        # and anything else into a crash. Any failure here is a failure.
        try:
            return _run(code, path, args)
        except BaseException:  # noqa: BLE001 - raised inside our own handling
            return 1

    def python_version(self) -> str:
        return sys.version

    def missing_modules(self) -> list[str]:
        return list(_MISSING)
