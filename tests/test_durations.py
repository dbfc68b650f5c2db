"""Which tests count as slow: tests/durations.py reads pytest's --durations lines, conftest marks them."""

import re
from pathlib import Path

from conftest import measured_slow
from durations import seconds_per_test, slow_tests

TESTS = Path(__file__).parent

LOG = """\
============================= slowest durations ==============================
3.50s call     tests/test_a.py::test_one[x y]
0.40s setup    tests/test_a.py::test_one[x y]
0.10s teardown tests/test_a.py::test_one[x y]
2.00s call     tests/test_b.py::test_two
(12 durations < 0.005s hidden.)
"""


def test_a_tests_seconds_are_its_setup_call_and_teardown():
    assert seconds_per_test(LOG) == {"tests/test_a.py::test_one[x y]": 4.0, "tests/test_b.py::test_two": 2.0}


def test_a_test_left_out_as_slow_stays_slow_and_a_faster_one_leaves_the_list():
    before = {"tests/test_c.py::test_left_out": 9.0, "tests/test_b.py::test_two": 8.0}
    measured = seconds_per_test(LOG)
    assert slow_tests(before, measured, 3.0) == {"tests/test_a.py::test_one[x y]": 4.0,
                                                 "tests/test_c.py::test_left_out": 9.0}


def test_every_test_listed_as_slow_exists():
    """A renamed or removed test must leave tests/durations.json too (its file and function are looked up)."""
    slow = measured_slow()
    for node in slow:
        path, name = re.fullmatch(r"(tests/\w+\.py)::(\w+)(?:\[.*\])?", node).groups()
        assert re.search(rf"^def {name}\(", (TESTS.parent / path).read_text(), re.M), node
