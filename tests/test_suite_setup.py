"""The suite's own set-up works as make test runs it: the tests of one training fixture share one worker."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

CONFTEST = '''
import pytest
pytest_plugins = ["xdist_groups"]

@pytest.fixture(scope="session")
def trained_synthetic():
    return "model"
'''

TESTS_FILE = '''
import pytest

@pytest.mark.parametrize("i", range(6))
def test_needs_the_model(i, trained_synthetic):
    pass

@pytest.mark.parametrize("i", range(6))
def test_needs_nothing(i):
    pass
'''


def test_a_training_fixture_is_set_up_on_one_worker(tmp_path):
    """pytest 9.2 + xdist 3.8 silently ignored the groups (pytest-xdist issue 1386): both workers would then
    train the same model. Run a small suite the way `make test` runs ours and see where its tests went."""
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_groups.py").write_text(TESTS_FILE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p",
                           "no:cacheprovider", "-o", "addopts=", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran = re.findall(r"\[(gw\d)\].*PASSED \S*::(test_\w+)\[\d\](\S*)", done.stdout)
    assert len(ran) == 12, done.stdout[-3000:]
    grouped = {(worker, suffix) for worker, name, suffix in ran if name == "test_needs_the_model"}
    assert len(grouped) == 1, f"the fixture's tests ran on {sorted(grouped)}, not on one worker as one group"
    assert grouped.pop()[1] == "@trained_synthetic"
