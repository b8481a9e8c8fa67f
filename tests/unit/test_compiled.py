"""The compiled hot path: one list of modules, a build never stale, a mode that tells the truth."""

from __future__ import annotations

import importlib.machinery
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import stream_app.fallback.core as core
from stream_app.compiled import MODULES, PACKAGE, check_fresh, compiled, mode
from stream_app.errors import StaleCompiledModule

REPO = PACKAGE.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(tmp_path: Path, *, source_time: float, build_time: float | None, pyproject: bool = True) -> Path:
    root = tmp_path / "stream_app"
    (root / "fallback").mkdir(parents=True)
    if pyproject:
        (tmp_path / "pyproject.toml").write_text("[project]\n")
    source = root / "fallback" / "core.py"
    source.write_text("x = 1\n")
    os.utime(source, (source_time, source_time))
    if build_time is not None:
        ext = root / "fallback" / f"core{SUFFIX}"
        ext.write_bytes(b"\x7fELF")
        os.utime(ext, (build_time, build_time))
    return root


def test_every_compiled_module_is_a_source_file_of_the_package() -> None:
    assert MODULES
    for module in MODULES:
        assert (PACKAGE / module).is_file(), module


def test_setup_py_compiles_exactly_the_listed_modules() -> None:
    setup = runpy.run_path(str(REPO / "setup.py"), run_name="not_main")  # defines, does not build
    assert setup["compiled_modules"]() == [f"stream_app/{m}" for m in MODULES]


def test_a_build_older_than_its_source_is_refused_with_the_way_out(tmp_path: Path) -> None:
    root = _tree(tmp_path, source_time=2_000_000_000, build_time=1_000_000_000)
    with pytest.raises(StaleCompiledModule, match=r"core\..*older than .*core\.py.*scripts/compile\.sh"):
        check_fresh(root)


def test_stale_compiled_module_is_an_import_error() -> None:
    # Raised while `import stream_app` runs: an ImportError is what an import may raise.
    assert issubclass(StaleCompiledModule, ImportError)


def test_a_build_newer_than_its_source_is_fresh(tmp_path: Path) -> None:
    root = _tree(tmp_path, source_time=1_000_000_000, build_time=2_000_000_000)
    check_fresh(root)
    assert compiled(root) == ["fallback/core.py"]
    assert mode(root) == f"partly compiled (1 of {len(MODULES)})"


def test_an_installed_package_is_not_checked(tmp_path: Path) -> None:
    # A wheel's files get their extraction time, in no set order: no pyproject.toml, no check.
    root = _tree(tmp_path, source_time=2_000_000_000, build_time=1_000_000_000, pyproject=False)
    check_fresh(root)


def test_a_pure_tree_is_pure(tmp_path: Path) -> None:
    root = _tree(tmp_path, source_time=1_000_000_000, build_time=None)
    check_fresh(root)
    assert compiled(root) == []
    assert mode(root) == "pure"


def test_mode_says_what_was_imported() -> None:
    loaded_compiled = core.__file__ is not None and core.__file__.endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES)
    )
    assert mode() in ("pure", "compiled"), "a partial build: run scripts/compile.sh again"
    assert (mode() == "compiled") == loaded_compiled


def test_ci_runs_the_compiled_build_when_it_says_so() -> None:
    # .ci/run compiles the hot path and sets this: a build that silently failed must not pass as one.
    expected = os.environ.get("STREAM_APP_EXPECT_COMPILED", "0") == "1"
    assert (mode() == "compiled") or not expected


def test_compiled_build_imports_from_any_directory_regression(tmp_path: Path) -> None:
    # mypyc's shared library for the group was a hash-named top-level module beside the package,
    # found only with the repo root on sys.path: `stream-app` run from another directory failed to
    # import. It lives inside the package now, so the import works from anywhere.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = "from stream_app.compiled import mode; print(mode())"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == mode()
