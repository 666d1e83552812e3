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

_MAIN = sys.modules["__main__"] if "__main__" in sys.modules else None


def _exit_code(code: object) -> int:
    """The exit status CPython gives `raise SystemExit(code)`."""
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        # As for a native `python3` on POSIX, the status is the low byte.
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:  # noqa: BLE001 - stderr may be closed by the snippet
        pass
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a snippet may close or replace them
            pass


class WitWorld(wit_world.WitWorld):
    def run_snippet(self, code: str, args: list[str]) -> int:
        # The snapshot was taken once, at build time: reseed everything that
        # would otherwise replay the same "random" values in every instance.
        random.seed()
        sys.argv = ["main.py", *args]
        module = type(sys)("__main__")
        module.__dict__["__builtins__"] = __builtins__
        module.__dict__["__file__"] = "main.py"
        sys.modules["__main__"] = module
        try:
            exec(compile(code, "main.py", "exec"), module.__dict__)
            status = 0
        except SystemExit as e:
            status = _exit_code(e.code)
        except BaseException:  # noqa: BLE001 - the snippet's own failure
            try:
                # Drop our own frame so the traceback starts at the snippet.
                etype, value, tb = sys.exc_info()
                traceback.print_exception(etype, value, tb.tb_next if tb else None)
            except Exception:  # noqa: BLE001
                pass
            status = 1
        _flush()
        return status

    def python_version(self) -> str:
        return sys.version

    def missing_modules(self) -> list[str]:
        return list(_MISSING)
