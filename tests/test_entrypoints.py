"""Every module of the project imports, and every command line answers --help.

A module that imports a name which no longer exists (bench/leakage.py once imported a split function
that had moved) is found here rather than by the first person who runs it. The entry points are found,
not listed: every package with a `__main__.py` and every module with an `if __name__ == "__main__":` guard.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import re
import runpy
import sys
import traceback
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("train", "hub", "space", "bench")
MAIN_GUARD = re.compile(r"""^if __name__ == ["']__main__["']:""", re.MULTILINE)
# Commands with a parser of their own behind a subcommand (`python -m hub push` shares hub's parser).
SUBCOMMANDS = (("space", "deploy"),)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> list[str]:
    """Every Python module of train/, hub/, space/ and bench/, as dotted names."""
    files = (p for d in PRODUCT for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)
    return sorted(module_name(p) for p in files)


def entry_points() -> list[tuple[str, ...]]:
    """`python -m` argument lists: packages with a __main__.py, modules with a __main__ guard, subcommands."""
    found = set()
    for d in PRODUCT:
        for p in (ROOT / d).rglob("*.py"):
            if "__pycache__" in p.parts:
                continue
            if p.name == "__main__.py":
                found.add((module_name(p.parent / "__init__.py"),))
            elif MAIN_GUARD.search(p.read_text()):
                found.add((module_name(p),))
    return sorted(found | set(SUBCOMMANDS))


def test_the_entry_points_are_found():
    """The discovery itself: the commands the README names are among those checked."""
    names = {" ".join(e) for e in entry_points()}
    expected = {"train", "hub", "space", "space deploy", "train.synthetic", "bench.leakage", "bench.quality"}
    assert expected <= names, f"entry points not found: {sorted(expected - names)}"
    bench = {module_name(p) for p in (ROOT / "bench").glob("*.py") if p.name != "__init__.py"}
    assert bench <= names, f"bench/ modules with no `if __name__ == '__main__':` guard: {sorted(bench - names)}"


@pytest.mark.parametrize("name", product_modules())
def test_module_imports(name):
    importlib.import_module(name)


class HelpRun(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def _help(args: tuple[str, ...]) -> HelpRun:
    """`python -m X --help` the way `python -m` runs it (runpy, X as `__main__`), in this process: a subprocess
    apiece re-imported torch every time, 55 s for the 22 entry points on 2 busy cores against about 3 s here."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    argv = sys.argv
    sys.argv = [args[0], *args[1:], "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            # runpy warns that X is already imported (test_module_imports did it); `python -m` starts fresh.
            warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
            runpy.run_module(args[0], run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception:  # noqa: BLE001 - reported by the test with its traceback, as a crashing command would be
        err.write(traceback.format_exc())
        code = 1
    finally:
        sys.argv = argv
    return HelpRun(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def help_runs() -> dict[tuple[str, ...], HelpRun]:
    """`python -m X --help` of every entry point."""
    return {args: _help(args) for args in entry_points()}


@pytest.mark.parametrize("args", entry_points(), ids=" ".join)
def test_help(args, help_runs):
    run = help_runs[args]
    command = f"python -m {' '.join(args)} --help"
    assert run.returncode == 0, f"{command} exited {run.returncode}:\n{run.stderr[-3000:]}"
    assert run.stdout.startswith("usage:"), f"{command} printed no usage first:\n{run.stdout[:500]}{run.stderr[-2000:]}"
