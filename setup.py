"""Build hook for the optional compiled hot path (pyproject.toml holds everything else).

``STREAM_APP_COMPILE=1`` compiles the modules of ``stream_app/compiled.py`` with mypyc, which needs
mypy, the package's dependencies (mypyc type-checks against them) and a C compiler where the build
runs: ``bash scripts/compile.sh`` does it in place in a development tree; into a venv,
``pip install . mypy wheel "setuptools>=68"`` then
``STREAM_APP_COMPILE=1 pip install --no-build-isolation --no-deps --force-reinstall .``.
Without it the package is pure Python.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """``MODULES`` of stream_app/compiled.py, read without importing the package."""
    tree = ast.parse((HERE / "stream_app" / "compiled.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "MODULES":
            return [f"stream_app/{m}" for m in ast.literal_eval(node.value)]  # type: ignore[arg-type]
    raise SystemExit("setup.py: no MODULES in stream_app/compiled.py")


GROUP = "stream_app.hot_path"


def ext_modules() -> list[object]:
    if os.environ.get("STREAM_APP_COMPILE") != "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit(
            "setup.py: STREAM_APP_COMPILE=1 needs mypy (mypyc) in the build environment: "
            'pip install . mypy wheel "setuptools>=68", then '
            "STREAM_APP_COMPILE=1 pip install --no-build-isolation --no-deps --force-reinstall ."
        )
    # opt_level 3 is mypyc's default; said here so a build is the same wherever it runs.
    # group_name puts the shared library mypyc makes for the group (its runtime and every module's
    # code) inside the package, stream_app/hot_path__mypyc*.so. Unnamed, it is a top-level module
    # named by a hash, beside the package: found only when the repo root is on sys.path, so the
    # console script run from anywhere else failed to import.
    return list(mypycify(compiled_modules(), opt_level="3", group_name=GROUP))


if __name__ == "__main__":  # setuptools' build backend runs this file as __main__ too
    setup(ext_modules=ext_modules())
