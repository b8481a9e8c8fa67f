"""The hot path compiled with mypyc: which modules, whether they are, and a guard against stale builds.

Every input record goes through the same few modules: the pure core's ``decide()`` and state codec,
the trusted encoders of commands and outcomes, the runtime's one step (``PartitionTask``),
``Checkpoint`` and the batches it hands to the producer, the headers an input passes on and the
changelog's, and the partition store. They are plain typed Python (mypy strict), which mypyc
compiles to C extensions as they are: on ``bench/hot_path.py`` that alone took the CPU per input
record from about 35 to 25 us.
Nothing else changes: the same source is the pure-Python fallback, and the tests run both ways.

``bash scripts/compile.sh`` builds them in place (``--clean`` removes them); ``STREAM_APP_COMPILE=1``
makes ``pip install --no-build-isolation .`` build them into the installed package (setup.py).
The store's three bases are mypyc traits, and it allows interpreted subclasses, which is how the
broker-free tests inject a failure into one of its steps. Left out on purpose: the store codec
(its own checks give the contract's error for a wrong type, where compiled code raises a bare
``TypeError`` first), and pydantic models (a metaclass mypyc does not compile).

A compiled module sits next to its source and wins the import. Edited source with a build from before
the edit would silently run the old code, so :func:`check_fresh` (called when the package is
imported) refuses a build older than its source, naming the module and the way out.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

from stream_app.errors import StaleCompiledModule

#: The compiled modules, by file under the package (setup.py reads this list: one list, one place).
MODULES: tuple[str, ...] = (
    "fallback/core.py",
    "fallback/state.py",
    "fallback/codec.py",
    "fallback/window.py",
    "fallback/control.py",
    "contracts/trusted.py",
    "contracts/timefmt.py",
    "runtime/task.py",
    "runtime/checkpoint.py",
    "runtime/produce.py",
    # The headers every input passes on, and each change's changelog header.
    "contracts/headers.py",
    "store/changelog.py",
    # The store: the record's get and put, and the flush of each turn.
    "store/partition.py",
    "store/due.py",
    "store/pages.py",
    "store/replay.py",
)

PACKAGE = Path(__file__).resolve().parent


def built(source: Path) -> list[Path]:
    """The compiled extension files of ``source`` sitting next to it (none in a pure-Python tree)."""
    stem = source.with_suffix("")
    candidates = (stem.with_name(stem.name + suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES)
    return [path for path in candidates if path.exists()]


def compiled(root: Path = PACKAGE) -> list[str]:
    """The modules of :data:`MODULES` that have a compiled build under ``root``."""
    return [m for m in MODULES if built(root / m)]


def check_fresh(root: Path = PACKAGE) -> None:
    """Raise :class:`StaleCompiledModule` when any compiled module is older than its source.

    Only in a source tree (``pyproject.toml`` beside the package: a clone, an editable install):
    an installed wheel's files get the time of their extraction, in no set order, and nobody edits
    them there.
    """
    if not (root.parent / "pyproject.toml").exists():
        return
    for module in MODULES:
        source = root / module
        if not source.exists():
            continue
        for ext in built(source):
            if source.stat().st_mtime > ext.stat().st_mtime:
                raise StaleCompiledModule(
                    f"{ext.name} is older than {source}: it would run the code from before the edit. "
                    "Run `bash scripts/compile.sh` to rebuild it, or `bash scripts/compile.sh --clean` "
                    "to run the pure-Python source"
                )


def mode(root: Path = PACKAGE) -> str:
    """``compiled``, ``pure`` or ``partly compiled (n of m)``, for logs and benchmark reports."""
    n = len(compiled(root))
    if n == 0:
        return "pure"
    if n == len(MODULES):
        return "compiled"
    return f"partly compiled ({n} of {len(MODULES)})"
