"""Hypothesis profiles of the test suite, and which tests count as slow (measured).

``deterministic`` (the default, ``make test``, CI): derandomized examples and no
example database, so a user's run checks exactly the inputs CI checked, every
time, and cannot fail later from an example stored by an earlier run.

``fuzz`` (opt-in, ``make fuzz``, i.e. ``MANIFOLD_LAB_FUZZ=1``): fresh random
examples, ``FUZZ_SCALE`` times as many per test, failures kept in
``.hypothesis/`` and replayed first by the next ``make fuzz``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import settings

FUZZ_ENV = "MANIFOLD_LAB_FUZZ"
#: How many more examples per test the fuzz profile draws than the deterministic one.
FUZZ_SCALE = 10

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("fuzz", derandomize=False)
settings.load_profile("fuzz" if os.environ.get(FUZZ_ENV) else "deterministic")


import pytest  # noqa: E402


@pytest.fixture
def cifar_jpeg_located(tmp_path, monkeypatch):
    """Where ``--dry-run`` looks for the CIFAR-10 JPEG copy, also on a machine without it: the real copy when
    present, else an empty ``cifar10-jpeg/train/`` folder named by ``$MANIFOLD_LAB_DATA`` (``--dry-run`` checks
    that the data exist, not what they hold)."""
    from manifold_lab.data.folder import find_cifar10_jpeg

    try:
        return find_cifar10_jpeg()
    except FileNotFoundError:
        (tmp_path / "cifar10-jpeg" / "train").mkdir(parents=True)
        monkeypatch.setenv("MANIFOLD_LAB_DATA", str(tmp_path))
        return find_cifar10_jpeg()


#: Tests that took longer than ``slow_above_s`` in the measured run of ``tests/durations.json`` count as slow:
#: ``make test`` runs them, ``make test-fast`` (``-m "not slow"``) leaves them out. Remeasure with
#: ``python -m pytest -n 2 -m "not slow" --durations=0 -p no:cacheprovider > log`` and ``python
#: tests/durations.py log`` (which keeps the tests marked slow by this file, so they stay measured).
DURATIONS = Path(__file__).with_name("durations.json")


def measured_slow() -> set[str]:
    """The node ids that ``tests/durations.json`` lists above its ``slow_above_s``."""
    data = json.loads(DURATIONS.read_text())
    return {node for node, seconds in data["seconds"].items() if seconds > data["slow_above_s"]}


def pytest_configure(config):
    """The suite runs as from a terminal. Started in the background without job control (`make test &` in a
    script), it would inherit SIGINT ignored, and so would every subprocess a test starts: the tests of what
    Ctrl-C does would then see the signal ignored. A caught signal is reset to its default at exec, so the
    subprocesses start with SIGINT as a terminal gives it."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    slow = measured_slow()
    for item in items:
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)
