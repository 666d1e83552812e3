"""runbox guest: runs one Python snippet as __main__ inside a fresh sandbox.

componentize-py executes this module at build time and snapshots the
interpreter, so everything imported here is already loaded when a request's
fresh instance starts. It also decides what the sandbox can import at all:
componentize-py bundles only the modules imported while it builds.
"""

import gc
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

import random  # noqa: E402

import runbox_run  # noqa: E402
import wit_world  # noqa: E402

# Nothing of the build's filesystem may ride along in the snapshot: the
# importer caches hold a listing of every path entry searched while the
# modules above were imported (the build is hermetic, see `xtask/src/setup.rs`,
# so these are the guest's own directories, but a run has no business with
# them). Dropping the finders drops their listings; at run time there is no
# filesystem to list again, and an import of a module not bundled fails
# either way. (`importlib.invalidate_caches()` would do no more here, and
# imports `importlib.metadata` as a side effect.)
sys.path_importer_cache.clear()

# Every object alive now is in the snapshot, shared by all instances until
# a run writes to its page. Frozen, the collector never visits them (a
# collection writes into each object's header it traverses: copied pages
# in every run for nothing; they are all reachable for good anyway).
gc.collect()
gc.freeze()


class WitWorld(wit_world.WitWorld):
    def run_snippet(self, code: str, path: str, args: list[str]) -> int:
        # Nothing may escape to componentize-py: an exception there is
        # printed by `PyErr_Print`, which turns a `SystemExit` into the
        # process's exit status (a failed snippet would read as a success)
        # and anything else into a crash. Any failure here is a failure.
        try:
            # The snapshot was taken once, at build time: reseed everything
            # that would otherwise replay the same "random" values in every
            # instance.
            random.seed()
            return runbox_run.run(code, path, args)
        except BaseException:  # noqa: BLE001 - raised inside our own handling
            return 1

    def python_version(self) -> str:
        return sys.version

    def missing_modules(self) -> list[str]:
        return list(_MISSING)
