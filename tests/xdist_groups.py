"""Each fixture that trains a model is trained once per `make test`, not once per worker.

Under `pytest -n 2 --dist loadgroup` the tests that need such a fixture are marked with one xdist group and
run on one worker. With plain `--dist load` both workers trained the synthetic ResNet50 (two setups of 73 s
and 85 s in one run's --durations) and, in another run, the planted-shortcut models (two of 105 s).
"""
from __future__ import annotations

import pytest

TRAINING_FIXTURES = ("trained_synthetic", "shortcut_runs")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in TRAINING_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(name))
