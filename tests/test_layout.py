"""The layout's rules, checked on the code itself: one home per rule, no path hacks, no private imports.

The import-layer contracts live in pyproject.toml (import-linter, run by `make test`); these checks
cover what a layer contract cannot see.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("hub", "train", "space", "bench")


def product_files() -> list[Path]:
    """Every Python file of the product (tests excluded)."""
    return sorted(p for d in PRODUCT for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def files_containing(pattern: str) -> set[str]:
    """Product files (relative paths) whose code matches `pattern`."""
    regex = re.compile(pattern)
    return {p.relative_to(ROOT).as_posix() for p in product_files() if regex.search(p.read_text())}


@pytest.mark.parametrize("pattern, home", [
    (r"\bos\.replace\(", {"hub/files.py"}),                        # the one atomic write
    (r"\bis_bf16_supported\(", {"hub/device.py"}),                 # the one precision rule
    (r"\bimage_extensions\(", {"hub/images.py"}),                  # the one folder scanner: find_images
    (r"[\"']label_names[\"']\)?\s*(\)|\]|,)", {"hub/model.py"}),    # the one reader of label names
    (r"unknown target label", {"hub/model.py"}),                   # the one target-class check
    (r"\bdef resolve_target\(", {"hub/model.py"}),
    (r"\bdef (pick_device|autocast_dtype)\(", {"hub/device.py"}),
    (r"\bclass \w+Error\((ValueError|RuntimeError|OSError)\)", {"hub/errors.py"}),
    (r"\bLocalEntryNotFoundError\b", {"hub/errors.py"}),           # which Hub failures a download meets
    (r"\bMETHOD_NAMES\s*=|[\"']scorecam[\"']:\s*[\"']Score-CAM", {"hub/display.py"}),  # a method's name for readers
    (r"f\} \[\{[\w\[\]'\"]*\['low'\]", {"hub/display.py"}),       # a figure with its interval: mean [low, high]
    (r"[\"']\*?\.pickle[\"']", {"hub/model.py"}),                  # the pickle suffixes: never loaded or published
])
def test_each_rule_has_one_home(pattern, home):
    assert files_containing(pattern) == home


def test_no_sys_path_edits_outside_tests():
    assert files_containing(r"sys\.path\.(insert|append)|sys\.path\s*=") == set()


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PRODUCT:
                offenders += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


def test_space_needs_no_training_code():
    """A Space ships space/ and hub/ only: nothing there may import train (import-linter checks the
    layers; this also catches an import hidden in a string for importlib)."""
    assert files_containing(r"\btrain\b\.(synthetic|data|run|config)|import_module\(") & {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "space").rglob("*.py")} == set()


def test_the_app_layout_only_wires_endpoints():
    """space/app.py lays out and wires; each endpoint's route (check, model call, rendering, PNG files) is one
    method of space/endpoints.py, and the app's PNG files have one writer (space/outputs.py)."""
    tree = ast.parse((ROOT / "space" / "app.py").read_text())
    assert not [n.lineno for n in ast.walk(tree) if isinstance(n, (ast.Lambda, ast.Try))]
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not {name for name in used if name.startswith(("check_", "run_", "on_gpu", "gpu_seconds", "png"))}
    assert files_containing(r"\bget_upload_folder\(") == {"space/outputs.py"}
