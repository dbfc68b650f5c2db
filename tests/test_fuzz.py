"""Fuzz pass: property-based tests (hypothesis) over every entry point that takes user input.

Whatever the input, the outcome is a valid result or one clear error line:

- ``load_spec`` on arbitrary YAML, mutations of a valid spec and arbitrary
  ``key.path=value`` overrides returns a ``Spec`` that can be planned and written,
  or raises ``UsageError`` with a one-line message;
- the manifold generators and ``embed`` on arbitrary argument values, and
  ``relu_map`` / ``relu_preimage`` on arbitrary arrays, shapes, activations and
  tolerances return results of the documented shape with the documented
  properties, or raise ``ValueError`` (the library's one exception type for bad
  input, ``manifold_lab/_checks.py``) with a one-line message;
- ``manifold-lab`` (spiral, theorem, run, report, models, kinds, and arbitrary
  words) exits 0, or 2 with exactly one line on stderr, nothing on stdout and
  nothing written (1 only where documented: a failed run, a kind's failed
  figures); what it wrote holds no temporary file, and every JSON, YAML, PNG
  and PDF file in it is complete.

Strategies draw valid inputs most of the time (``mostly``) so that the valid
path is checked too (``--hypothesis-show-statistics`` shows the shares); valid
command lines are kept cheap (few points, matrices and runs; one model preset),
so the whole file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import math
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from conftest import FUZZ_ENV, FUZZ_SCALE
from kinds_for_tests import KIND, cli_env

from manifold_lab import cli, commands
from manifold_lab.activations import ACTIVATIONS
from manifold_lab.errors import UsageError
from manifold_lab.spec.load import Spec, load_spec
from manifold_lab.spec.sweep import plan
from manifold_lab.kinds import KINDS, register
from manifold_lab.manifolds import MANIFOLDS, embed, make_two_spirals
from manifold_lab.recovery import relu_preimage
from manifold_lab.relu_maps import relu_map

register(KIND)

# A hang fails the test instead of stalling the suite (make fuzz draws FUZZ_SCALE times more examples).
pytestmark = pytest.mark.timeout(120 * (FUZZ_SCALE if os.environ.get(FUZZ_ENV) else 1))


def fuzz(max_examples: int):
    """Hypothesis settings of this file: few examples, no per-example deadline.

    Randomness and the example database come from the profile loaded by ``tests/conftest.py``:
    derandomized without a database in the normal suite (``make test``, CI), fresh random
    examples, ``FUZZ_SCALE`` times as many, under ``make fuzz``.
    """
    scale = FUZZ_SCALE if os.environ.get(FUZZ_ENV) else 1
    return settings(
        max_examples=max_examples * scale,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.filter_too_much],
    )


def assert_one_line(text: str) -> None:
    assert text.strip(), "empty error message"
    assert "\n" not in text.strip() and "\r" not in text, f"multi-line error: {text!r}"
    assert "Traceback" not in text, text


def value_error_or(call, error=ValueError):
    """``call()``, or None after checking that it raised ``error`` with a one-line message."""
    try:
        result = call()
    except error as exc:
        assert_one_line(str(exc))
        event("error")  # --hypothesis-show-statistics: how many inputs were valid
        return None
    event("valid result")
    return result


def usage_error_or(call):
    return value_error_or(call, UsageError)


# =========================================================================== strategies


def mostly(valid, invalid):
    """``valid`` seven times in eight, else ``invalid`` (so that valid inputs are exercised too)."""
    return st.sampled_from([True] * 7 + [False]).flatmap(lambda ok: valid if ok else invalid)


#: Arbitrary values: what YAML, a config or a careless caller may hand over.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(), st.text(max_size=8),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
#: YAML that is not plain data: tags, aliases, dates, syntax errors, control characters.
YAML_SNIPPETS = [
    "2020-01-01", "2001-12-14t21:59:43.10-05:00", "!!binary aGVsbG8=", "!!set {a, b}", "&x [*x]",
    "&y {k: *y}", "*nowhere", "!!python/object/apply:os.system [echo]", "!custom 1", "{a: 1, a: 2}",
    ".nan", "-.inf", ".inf", "0x1F", "0o17", "1_000", "~", "[", "]", "{", "'", '"', "\t", "\x00", "\x07",
    "? [a]\n: 1", "- a\n- b", "|\n  text", "%TAG", "---", "...", "@", "`", "!!int x", "!!float x",
    "[1, [2, [3]]]", "{b: [0, 0]}", "-1", "0", "1e400", "yes", "null", "''", '"\\x"', "\ufeff", "\u2028",
    "!!omap [a: 1]", "[2020-01-01]", "[!!binary aGVsbG8=]", "[.nan, .nan]", "99999999999999999999999",
]


def flow(value) -> str:
    """``value`` as one line of flow-style YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


yaml_values = st.one_of(json_like.map(flow), st.sampled_from(YAML_SNIPPETS), st.text(max_size=10))

SPEC_TEMPLATE = """\
name: {name}
kind: {kind}
params:
  a: {a}
  b: {b}
  block: {block}
sweep:
  {sweep_key}: {sweep_values}
  seeds: {seeds}
{extra}
"""
VALID_FIELDS = {
    "name": "fuzz", "kind": "closed_form", "a": "2.0", "b": "1", "block": "{width: 0.5, act: relu}",
    "sweep_key": "b", "sweep_values": "[0, 1]", "seeds": "[0, 1]", "extra": "",
}
GOOD_SPEC = SPEC_TEMPLATE.format(**VALID_FIELDS)
#: Near-misses for each field of the template (valid ones among them).
FIELD_VARIANTS = {
    "name": ["a", "a.b-c_d", "-x", "x y", "''", "a/b", "é", "../up", "1"],
    "kind": sorted(KINDS) + ["closed_fom", "closed-form", "''", "[closed_form]"],
    "a": ["0", "-1", "1e-300", "x", "3", "[1]"],
    "b": ["1.5", "true", "'3'", "-7", "1e30"],
    "block": ["{width: 0}", "{act: relu7}", "{wdth: 1}", "null", "[]", "{width: 2, act: identity}"],
    "sweep_key": ["a", "block.width", "block.act", "block", "nope", "block.nope", "fail_seeds", "''",
                  "a.", "b.c", ".a", "seeds"],
    "sweep_values": ["[1, 2]", "[]", "[1, 1]", "[relu, identity]", "3", "[0.5, 1.0]", "[1, 1.0]",
                     "[{width: 1}, {act: relu}]"],
    "seeds": ["[0]", "[]", "[-1]", "[0, 0]", "[true]", "[1.5]", "0", "[99999999999999999999]", "[3, 1, 2]"],
    "extra": ["output: elsewhere", "description: hi", "include: []", "include: [nope.yaml]",
              "include: [preset.yaml]", "include: preset.yaml", "include: [spec.yaml]", "reuse: [other]",
              "typo: 1", "params: {}", "nmae: x", "output: ''", "reuse: 3", "include: [{a: 1}]",
              "include: ['" + "x" * 300 + "']"],
}


@st.composite
def spec_texts(draw):
    """A valid spec with up to three fields replaced, lines dropped or raw text inserted."""
    fields = dict(VALID_FIELDS)
    for key in draw(st.sets(st.sampled_from(sorted(fields)), max_size=3)):
        fields[key] = draw(mostly(st.sampled_from(FIELD_VARIANTS[key]), yaml_values))
    lines = SPEC_TEMPLATE.format(**fields).splitlines()
    dropped = draw(mostly(st.just(set()), st.sets(st.integers(0, len(lines) - 1), max_size=2)))
    lines = [line for i, line in enumerate(lines) if i not in dropped]
    if draw(mostly(st.just(False), st.just(True))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=12) | yaml_values))
    return "\n".join(lines) + "\n"


OVERRIDE_KEYS = [
    "params.a", "params.b", "params.block.width", "params.block.act", "params.block", "params", "sweep.b",
    "sweep.block.width", "sweep.seeds", "sweep", "name", "kind", "include", "output", "description",
    "reuse", "params.nope", "x", "params..a", ".a", "a.", "params.a.b", "name.x", " params.a ",
]
VALID_OVERRIDES = ["params.a=0.5", "params.b=3", "params.block.act=relu6", "sweep.seeds=[0, 2]",
                   "sweep.block.width=[1, 2]", "name=other", "output=elsewhere", "description=x", "sweep.b=[5]"]
overrides = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(OVERRIDE_KEYS), yaml_values),
    st.text(max_size=15),
)


def check_spec(spec: Spec) -> None:
    """A spec that loads is fully valid: its grid is planned and its files can be written."""
    assert isinstance(spec, Spec)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", spec.name), spec.name
    assert spec.seeds and len(set(spec.seeds)) == len(spec.seeds)
    assert all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec.seeds)
    assert len(spec.points) == math.prod(len(v) for v in spec.sweep.values())
    assert all(isinstance(p.params, spec.kind.params) for p in (spec, *spec.points))
    runs = plan(spec)
    assert len(runs) == len(spec.points) * len(spec.seeds)
    json.dumps([asdict(r) for r in runs], allow_nan=True)
    yaml.safe_dump(spec.resolved())


@contextlib.contextmanager
def fresh_dir(tmp_path: Path):
    """A new empty folder under ``tmp_path`` as the current directory (one per hypothesis example)."""
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(old)


def write_text_or_bytes(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


# =========================================================================== 1. spec loader and overrides


@fuzz(200)
@given(text=mostly(spec_texts(), st.text(max_size=60) | st.binary(max_size=40)),
       preset=spec_texts() | st.sampled_from(["params: {b: 4}\n", "include: [spec.yaml]\n", "[1]\n", ""]))
def test_load_spec_on_any_file(tmp_path, text, preset):
    with fresh_dir(tmp_path) as folder:
        write_text_or_bytes(folder / "spec.yaml", text)
        (folder / "preset.yaml").write_text(preset, encoding="utf-8")
        spec = usage_error_or(lambda: load_spec("spec.yaml"))
        if spec is not None:
            check_spec(spec)


@fuzz(200)
@given(items=st.lists(mostly(st.sampled_from(VALID_OVERRIDES), overrides), min_size=1, max_size=3))
@example(items=["sweep.b=[2020-01-01]"])
@example(items=["sweep.b=&x [*x]"])
@example(items=["params.a=0.25", "sweep.block.width=[1, 2]", "sweep.seeds=[0, 3]"])
def test_load_spec_with_any_overrides(tmp_path, items):
    with fresh_dir(tmp_path) as folder:
        (folder / "spec.yaml").write_text(GOOD_SPEC, encoding="utf-8")
        spec = usage_error_or(lambda: load_spec("spec.yaml", items))
    if spec is None:
        return
    check_spec(spec)
    assert spec.overrides == tuple(items)
    last = [item for item in items if item.startswith(("params.a=", "params="))][-1:]
    if last and last[0].startswith("params.a="):  # the last override of a is the value the spec holds
        assert spec.params.a == float(yaml.safe_load(last[0].partition("=")[2]))


# =========================================================================== 2. manifold generators and embed

GENERATORS = {**MANIFOLDS, "two_spirals": make_two_spirals}
#: Columns of X: a fixed number, or the name of the argument that sets it.
COLUMNS = {"spiral": 2, "swiss_roll": 3, "s_curve": 3, "helix": 3, "circle": 2, "torus": 3,
           "sphere": ("dim", 1), "ball": ("n_dims", 0), "two_spirals": 2}

any_value = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 40), st.floats(), st.text(max_size=4),
    st.sampled_from([np.int64(3), np.float32(0.5), np.nan, [1], (2,), "3", b"1", 1 + 2j, Decimal("1.5"),
                     Fraction(1, 3), 10**400, 2**62, 10**30, -(2**70), 1e308, np.random.RandomState(0),
                     np.random.default_rng(0), object()]),
)  # no size between 1e7 and 2**60: numpy would try to allocate it (MemoryError, or swapping)
seeds = mostly(st.none() | st.integers(0, 2**32 - 1), any_value | st.sampled_from([2**32, -1]))
#: Valid values of the generators' arguments (``any_value`` sometimes instead).
VALID_ARGUMENTS = {
    "turns": st.floats(0.1, 10), "radius": st.floats(0.1, 10), "pitch": st.floats(-10, 10),
    "major_radius": st.floats(0.1, 10), "minor_radius": st.floats(0.1, 10), "dim": st.integers(1, 5),
    "n_dims": st.integers(1, 5), "noise": st.floats(0, 1), "random_state": seeds,
    "return_coordinate": st.booleans(),
}


@st.composite
def generator_calls(draw):
    """``(name, n_samples, kwargs)``: a generator and up to three of its arguments, usually valid."""
    name = draw(st.sampled_from(sorted(GENERATORS)))
    n_samples = draw(mostly(st.integers(1, 40), any_value))
    names = [p for p in inspect.signature(GENERATORS[name]).parameters if p != "n_samples"]
    keys = sorted(draw(st.sets(st.sampled_from(names), max_size=3)))
    return name, n_samples, {key: draw(mostly(VALID_ARGUMENTS[key], any_value)) for key in keys}


@fuzz(200)
@given(call=generator_calls())
@example(call=("ball", 5, {"noise": Fraction(1, 3)}))
@example(call=("spiral", 5, {"turns": 1e308}))
@example(call=("helix", 5, {"pitch": 1e308}))
@example(call=("torus", 5, {"major_radius": 1e308, "minor_radius": 1e308}))
@example(call=("circle", 5, {"radius": 10**400}))
@example(call=("sphere", 5, {"dim": np.eye(3)}))
def test_generators_on_any_arguments(call):
    name, n_samples, kwargs = call
    generator = GENERATORS[name]
    result = value_error_or(lambda: generator(n_samples, **kwargs))
    if result is None:
        return
    X, t = result[0], result[-1]
    n = int(n_samples)
    columns = COLUMNS[name]
    if isinstance(columns, tuple):
        key, extra = columns
        columns = int(kwargs.get(key, inspect.signature(generator).parameters[key].default)) + extra
    assert X.shape == (n, columns) and X.dtype == np.float64 and t.shape == (n,)
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(t))
    if name == "two_spirals":
        assert set(np.unique(result[1])) <= {0, 1}
    if not kwargs.get("noise"):  # the closed forms bound the noiseless points
        norms = np.linalg.norm(X, axis=1)
        if name in ("spiral", "ball", "two_spirals"):
            assert np.all(norms <= 1 + 1e-9)
        if name in ("circle", "sphere"):
            np.testing.assert_allclose(norms, float(kwargs.get("radius", 1.0)), rtol=1e-9)


finite = st.floats(-1e6, 1e6, allow_subnormal=False)
poison = st.sampled_from([np.nan, np.inf, -np.inf])
junk_arrays = st.sampled_from([None, "abc", [[1, 2], [3]], [["1", "a"]], object(), 3.0, [[1 + 2j, 0.5]],
                               {"a": 1}, [[True, False]], [[]]])


@st.composite
def arrays(draw, shape):
    """A float array of ``shape`` (sometimes another shape, a NaN / inf, a nested list or junk)."""
    if not draw(mostly(st.just(True), st.just(False))):
        return draw(junk_arrays)
    shape = draw(mostly(st.just(shape), st.lists(st.integers(0, 4), max_size=3).map(tuple)))
    array = draw(hnp.arrays(np.float64, shape, elements=finite))
    if array.size and not draw(mostly(st.just(True), st.just(False))):
        array.flat[draw(st.integers(0, array.size - 1))] = draw(poison)
    return draw(mostly(st.just(array), st.just(array.tolist())))


sizes = st.integers(1, 5)
bad_names = st.sampled_from(["RELU", "", "gelu", None, 1, ["relu"], np.array(["relu", "relu6"]), np.eye(3)])


@st.composite
def embed_calls(draw):
    """``(X, n_dims, kind, random_state)`` for ``embed``, usually valid."""
    N, d = draw(sizes), draw(sizes)
    return (draw(arrays((N, d))), draw(mostly(st.integers(d, 8), any_value | st.integers(0, 8))),
            draw(mostly(st.sampled_from(["gaussian", "orthogonal"]), bad_names)), draw(seeds))


@fuzz(200)
@given(call=embed_calls())
@example(call=(np.ones((3, 2)), 4, np.array(["gaussian", "orthogonal"]), 0))
@example(call=(np.ones((3, 2)), np.eye(4), "gaussian", 0))
def test_embed_on_any_arguments(call):
    X, n_dims, kind, random_state = call
    result = value_error_or(lambda: embed(X, n_dims, kind=kind, random_state=random_state))
    if result is None:
        return
    Y, T = result
    X = np.asarray(X, dtype=np.float64)
    assert T.shape == (int(n_dims), X.shape[1]) and Y.shape == (X.shape[0], int(n_dims))
    assert np.all(np.isfinite(Y))
    np.testing.assert_allclose(Y, X @ T.T, rtol=1e-12, atol=1e-9)
    if kind == "orthogonal":
        np.testing.assert_allclose(T.T @ T, np.eye(X.shape[1]), atol=1e-12)


# =========================================================================== 3. relu_map and relu_preimage


@st.composite
def relu_map_calls(draw):
    """``(X, B, act, bias)`` for ``relu_map``, usually of matching shapes."""
    N, d, m = draw(sizes), draw(sizes), draw(sizes)
    return (draw(arrays((N, d))), draw(arrays((m, d))),
            draw(mostly(st.sampled_from(sorted(ACTIVATIONS)), bad_names)), draw(st.none() | arrays((m,))))


@fuzz(200)
@given(call=relu_map_calls())
@example(call=(np.ones((2, 3)), np.ones((4, 3)), np.eye(3), None))
@example(call=(np.ones((2, 3)), np.ones((4, 3)), "relu", object()))
def test_relu_map_on_any_arrays(call):
    X, B, act, bias = call
    out = value_error_or(lambda: relu_map(X, B, act=act, bias=bias))
    if out is None:
        return
    X, B = np.asarray(X, dtype=np.float64), np.asarray(B, dtype=np.float64)
    assert out.shape == (X.shape[0], B.shape[0]) and np.all(np.isfinite(out))
    pre = X @ B.T + (0.0 if bias is None else np.asarray(bias, dtype=np.float64))
    np.testing.assert_allclose(out, ACTIVATIONS[act](pre), rtol=1e-12, atol=1e-9)
    if act in ("relu", "relu6"):
        assert np.all(out >= 0) and (act == "relu" or np.all(out <= 6))


integer_matrices = st.builds(  # small integer entries: exact rank deficiencies, bounded condition numbers
    lambda m, d, seed: np.random.default_rng(seed).integers(-3, 4, size=(m, d)).astype(np.float64),
    sizes, st.integers(1, 4), st.integers(0, 2**32),
)


@st.composite
def preimage_calls(draw):
    """``(B, X, Y, tol)``: usually ``Y = ReLU(X B^T)`` of known ``X`` (else ``X`` is None and ``Y`` any array)."""
    B = draw(mostly(integer_matrices, arrays((3, 2))))
    N = draw(sizes)
    tol = draw(mostly(st.none() | st.floats(0, 1), any_value))
    B_arr = B if isinstance(B, np.ndarray) and B.ndim == 2 and np.all(np.isfinite(B)) else None
    if B_arr is not None and draw(mostly(st.just(True), st.just(False))):
        points = st.floats(-1e3, 1e3, allow_subnormal=False)
        X = draw(hnp.arrays(np.float64, (N, B_arr.shape[1]), elements=points))
        return B, X, np.maximum(X @ B_arr.T, 0.0), tol
    return B, None, draw(arrays((N, 3 if B_arr is None else B_arr.shape[0]))), tol


@fuzz(200)
@given(call=preimage_calls())
@example(call=(np.ones((3, 0)), None, np.ones((2, 3)), None))
@example(call=(np.ones((3, 2)), None, np.ones((2, 3)), "a"))
@example(call=(np.array([[1.0, 0], [0, 1], [1, 1]]), np.array([[1.0, -1]]), np.array([[1.0, 0, 0]]), -1))
@example(call=(np.array([[0, -93.5], [0, -93.5], [-93.5, -93.5]]), np.array([[-1.0, 0]]),
               np.array([[0, 0, 93.5]]), 0))
def test_relu_preimage_recovers_what_it_flags(call):
    B, X, Y, tol = call
    result = value_error_or(lambda: relu_preimage(B, Y, tol=tol))
    if result is None:
        return
    X_hat, ok = result
    B, Y = np.asarray(B, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    assert X_hat.shape == (Y.shape[0], B.shape[1]) and ok.shape == (Y.shape[0],) and ok.dtype == bool
    assert np.all(np.isfinite(X_hat))
    eps, tol = np.finfo(np.float64).eps, 0.0 if tol is None else float(tol)
    for i in range(len(Y)):  # Lemma 2's condition, point by point, against the SVD of the active rows
        rows = B[Y[i] > tol]
        S = np.linalg.svd(rows, compute_uv=False) if len(rows) else np.zeros(0)
        threshold = max(S.max(initial=0.0) * max(len(rows), B.shape[1]) * eps, tol)
        if S.max(initial=0.0) == 0:
            assert not ok[i]
        elif np.all((S > 100 * threshold) | (S < threshold / 100)):  # no singular value near the threshold
            assert ok[i] == (np.sum(S > threshold) == B.shape[1])
        if X is not None and ok[i]:  # exact up to the conditioning of the active rows
            bound = max(1e-8, 100 * eps * S.max() / S.min())
            assert np.linalg.norm(X_hat[i] - X[i]) <= bound * np.linalg.norm(X[i]), (X[i], X_hat[i])


# =========================================================================== 4. the command line


def call_main(argv, capsys):
    """``manifold-lab ARGV`` in this process: (exit status, stdout, stderr, warnings raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = cli.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return status, out, err, [str(w.message) for w in caught]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_written(folder: Path, before: dict[str, bytes]) -> dict[str, bytes]:
    """No temporary file is left and every file the command wrote is complete; returns the new snapshot."""
    after = snapshot(folder)
    for name, data in after.items():
        if before.get(name) == data:
            continue  # the test's own input
        path = Path(name)
        assert not path.name.startswith(".") or path.name == ".lock", f"left over: {name}"
        if path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".yaml":
            yaml.safe_load(data)
        elif path.suffix == ".png":
            assert data.startswith(b"\x89PNG"), name
        elif path.suffix == ".pdf":
            assert data.startswith(b"%PDF") and b"%%EOF" in data[-64:], name
    return after


def run_cli(tmp_path, capsys, argv, setup=None, allowed=(0, 2)):
    """``argv`` in a fresh folder holding ``afile`` (and what ``setup`` writes), checked against the contract.

    Exit 0, or 2 with one line on stderr, nothing on stdout, no warning printed
    and nothing written; no traceback; what was written is complete. Returns
    ``(status, stdout, stderr, folder, before, after)``.
    """
    with fresh_dir(tmp_path) as folder:
        (folder / "afile").write_text("not a folder\n")
        if setup is not None:
            setup(folder)
        before = snapshot(folder)
        status, out, err, caught = call_main(argv, capsys)
        event(f"exit status {status}")  # --hypothesis-show-statistics: how many inputs were valid
        assert status in allowed, (status, err)
        assert "Traceback" not in err, err
        after = check_written(folder, before)
        if status == 2:
            assert_one_line(err)
            assert err.startswith("manifold-lab"), err
            assert not caught, f"warnings printed before the error: {caught}"
            assert out == "", out
            assert after == before, "a failing command wrote files"
        return status, out, err, folder, before, after


junk_word = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "-", "--", "-1", "nan", "inf", "1e999", "0x10", "1,2", ",", "1-", "-3-5", "٣",
                     "\n", "a\nb", " 2", "--out", "2**3", "1_0", "\x00", "x" * 300]),
)


def arg(valid, invalid):
    """Usually ``valid``, else ``invalid`` or a junk word: most command lines run, some fail."""
    return mostly(valid, invalid | junk_word)


def numbers(lo: int, hi: int, valid_lo: int, valid_hi: int):
    return arg(st.integers(valid_lo, valid_hi).map(str), st.integers(lo, hi).map(str))


def int_lists(lo: int, hi: int, valid_lo: int, valid_hi: int):
    def text(values):
        return ",".join(map(str, values))

    return arg(st.lists(st.integers(valid_lo, valid_hi), min_size=1, max_size=3, unique=True).map(text),
               st.lists(st.integers(lo, hi), max_size=4).map(text))


out_paths = arg(st.sampled_from(["out", "nested/deeper", "", "."]),
                st.sampled_from(["afile", "afile/sub", "x" * 300, "a\x00b"]))


@st.composite
def command_line(draw, command, options, flags=(), required=()):
    """``[command, --opt value ...]`` in any order: ``required`` options always, the others sometimes."""
    chosen = set(required) | (draw(st.sets(st.sampled_from(sorted(options)))) if options else set())
    words = [[name, draw(options[name])] for name in sorted(chosen)]
    words += [[flag] for flag in flags if draw(st.booleans())]
    extra = draw(arg(st.none(), junk_word))
    if extra is not None:
        words.append([extra])
    return [command, *itertools.chain.from_iterable(draw(st.permutations(words)))]


def option(argv, name):
    """The value of the last ``name`` option of ``argv`` (None when absent)."""
    at = [i for i, word in enumerate(argv) if word == name]
    return argv[at[-1] + 1] if at else None


SPIRAL_OPTIONS = {
    "--dims": int_lists(-1, 12, 3, 12),
    "--manifold": arg(st.sampled_from(sorted(MANIFOLDS)), st.sampled_from(["two_spirals", "SPIRAL"])),
    "--points": arg(st.integers(20, 60).map(str), st.sampled_from(["-5", "0", "19", "1099511627776"])),
    "--seed": numbers(-3, 2**33, 0, 2**32 - 1), "--noise": arg(st.floats(0, 1).map(str), st.floats().map(str)),
    "--out": out_paths,
}


@fuzz(20)
@given(argv=command_line("spiral", SPIRAL_OPTIONS, required=("--points", "--out")))
@example(argv=["spiral", "--points", "1099511627776", "--out", "out"])
@example(argv=["spiral", "--points", "20", "--noise", "1e308", "--out", "out"])
def test_spiral_command(tmp_path, capsys, argv):
    status, _, _, folder, _, after = run_cli(tmp_path, capsys, argv)
    if status == 0 and "--help" not in argv:
        out = Path(option(argv, "--out"))
        assert {str(out / f"figure1.{suffix}") for suffix in ("png", "pdf", "csv", "json")} <= set(after)


THEOREM_OPTIONS = {
    "--m": arg(st.builds(lambda lo, k: f"{lo}-{lo + k}", st.integers(1, 4), st.integers(0, 2)),
               st.builds("{}-{}".format, st.integers(-1, 6), st.integers(-1, 6))) | int_lists(-1, 6, 1, 6),
    "--n": int_lists(-1, 4, 1, 4), "--matrices": numbers(-1, 4, 2, 4), "--points": numbers(-1, 8, 1, 8),
    "--seed": numbers(-3, 2**33, 0, 2**32 - 1), "--out": out_paths,
}


@fuzz(30)
@given(argv=command_line("theorem", THEOREM_OPTIONS, required=("--m", "--n", "--matrices", "--points", "--out")))
def test_theorem_command(tmp_path, capsys, argv):
    status, _, _, folder, _, after = run_cli(tmp_path, capsys, argv)
    if status == 0 and "--help" not in argv:
        assert str(Path(option(argv, "--out")) / "theorem1.json") in after


MODELS_OPTIONS = {  # half the lines invalid: a valid one builds a model (a second)
    "--width": arg(st.sampled_from(["0.35", "1e-9"]),
                   st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e999"])),
    "--resolution": arg(st.sampled_from(["16", "33"]), st.sampled_from(["-1", "0", "1", "8"])),
    "--preset": arg(st.just("cifar_fast"), st.sampled_from(["nope", "", "CIFAR"])),
}


@fuzz(6)
@given(argv=command_line("models", MODELS_OPTIONS, required=("--preset",)))  # one preset: one model to build
@example(argv=["models", "--preset", "cifar_fast", "--width", "inf"])
@example(argv=["models", "--preset", "cifar_fast", "--width", "nan"])
@example(argv=["models", "--preset", "cifar_fast", "--resolution", "33"])
def test_models_command(tmp_path, capsys, argv):
    status, out, _, _, _, _ = run_cli(tmp_path, capsys, argv)
    if status == 0 and "--help" not in argv:
        assert re.search(r"^mobilenet_v2/cifar_fast .* [\d,]+ +[\d.]+M$", out, re.M), out


@fuzz(60)
@given(argv=command_line("kinds", {}, flags=("--markdown",)),
       name=st.none() | st.sampled_from(sorted(KINDS)) | junk_word)
def test_kinds_command(tmp_path, capsys, argv, name):
    argv = argv + ([] if name is None else ["--", name])
    status, out, _, _, _, _ = run_cli(tmp_path, capsys, argv)
    if status == 0 and "--help" not in argv:  # one header line per kind listed: "name: ..." or "#### `name`"
        assert re.findall(r"^(?:#### `)?(\w+)(?:`$|: )", out, re.M) == ([name] if name else sorted(KINDS))


#: Override keys that make a closed_form run sleep or fail on purpose (exit 1 is then correct).
ON_PURPOSE = re.compile("sleep|fail|nan_seeds|diverge")
RUN_OPTIONS = {  # --jobs above 1 would start processes: valid only as 1
    "--jobs": arg(st.just("1"), st.sampled_from(["0", "-2", "1.5"])), "--run-index": numbers(-1, 5, 0, 3),
    "--out": out_paths,
}


def write_inputs(spec_text):
    def setup(folder: Path) -> None:
        (folder / "spec.yaml").write_text(spec_text, encoding="utf-8")
        (folder / "preset.yaml").write_text("params: {b: 4}\n", encoding="utf-8")
        (folder / "suite.yaml").write_text("name: tour\nsuite: [spec.yaml]\n", encoding="utf-8")

    return setup


@fuzz(60)
@given(spec_text=arg(st.just(GOOD_SPEC), spec_texts()),
       spec=arg(st.sampled_from(["spec.yaml"] * 3 + ["suite.yaml"]),
                st.sampled_from(["missing.yaml", "afile", ".", "x" * 300])),
       items=st.lists(arg(st.sampled_from(VALID_OVERRIDES), overrides), max_size=2),
       options=command_line("run", RUN_OPTIONS, flags=("--dry-run", "--list", "--force")))
@example(spec_text=GOOD_SPEC, spec="x" * 300, items=[], options=["run"])
@example(spec_text=GOOD_SPEC, spec="spec.yaml", items=[], options=["run", "--out", "x" * 300])
@example(spec_text=GOOD_SPEC, spec="spec.yaml", items=["sweep.b=[2020-01-01]"], options=["run", "--dry-run"])
def test_run_command(tmp_path, capsys, spec_text, spec, items, options):
    assume(not ON_PURPOSE.search(spec_text + "".join(items)))
    argv = [options[0], spec, *items, *options[1:]]
    status, _, err, folder, before, after = run_cli(tmp_path, capsys, argv, write_inputs(spec_text),
                                                    allowed=(0, 1, 2))
    written = {Path(name) for name in after if after[name] != before.get(name)}
    if status == 1:  # only a failed run (a NaN or infinite metric here) may give exit 1
        statuses = [json.loads(after[str(p)]) for p in written if p.name == "status.json"]
        assert any(s["status"] in ("failed", "diverged") for s in statuses), err
    if status == 0 and ("--dry-run" in argv or "--list" in argv or "--help" in argv):
        assert not written, "--dry-run / --list wrote files"
    elif status == 0:
        index = option(argv, "--run-index")
        for plan_file in (p for p in written if p.name == "plan.json"):
            runs = json.loads(after[str(plan_file)])["runs"]
            for run in runs if index is None else [runs[int(index)]]:
                assert plan_file.parent / "runs" / run["run_id"] / "metrics.json" in written
            assert index is not None or plan_file.parent / "report.md" in written


@pytest.fixture(scope="module")
def results_template(tmp_path_factory) -> Path:
    """A complete results folder of two closed_form runs (each example damages a copy)."""
    from manifold_lab.execution.runner import run_experiment
    from manifold_lab.reporting.report import write_report

    folder = tmp_path_factory.mktemp("template")
    (folder / "spec.yaml").write_text(SPEC_TEMPLATE.format(**{**VALID_FIELDS, "seeds": "[0]"}), encoding="utf-8")
    run_experiment(load_spec(folder / "spec.yaml"), out=folder / "res", report=write_report)
    return folder / "res"


@fuzz(40)
@given(target=st.none() | st.sampled_from(["spec.yaml", "plan.json", "metrics.json", "status.json",
                                           "config.yaml"]),
       action=st.sampled_from(["delete", "truncate", "replace"]), keep=st.integers(0, 200),
       content=yaml_values | json_like.map(json.dumps),
       folder=arg(st.just("res"), st.sampled_from(["res/runs", "missing", "afile", ".", ""])))
@example(target="spec.yaml", action="replace", keep=0, content="{}", folder="res")
@example(target="spec.yaml", action="replace", keep=0, content="[", folder="res")
@example(target="plan.json", action="replace", keep=0, content='{"runs": 5}', folder="res")
@example(target="plan.json", action="truncate", keep=40, content="", folder="res")
def test_report_command(tmp_path, capsys, results_template, target, action, keep, content, folder):
    def setup(root: Path) -> None:
        shutil.copytree(results_template, root / "res")
        for path in sorted((root / "res").rglob(target or "-"))[:1]:
            if action == "delete":
                path.unlink()
            else:
                path.write_bytes(path.read_bytes()[:keep] if action == "truncate" else content.encode())

    status, out, err, root, _, after = run_cli(tmp_path, capsys, ["report", folder], setup, allowed=(0, 1, 2))
    if status == 1:  # the kind's own figures may fail on a damaged run; the tables are still written
        assert err.startswith("the kind's figures failed"), err
    if status in (0, 1):
        assert out.startswith("report: ") and str(Path(folder) / "report.md") in after


COMMANDS = sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(commands.__path__) if m.name[0] != "_")


@fuzz(100)
@given(command=st.sampled_from(COMMANDS) | junk_word, words=st.lists(junk_word, max_size=4),
       at=st.integers(0, 4))
@example(command="kinds", words=["x", "a\nb"], at=2)
def test_any_words(tmp_path, capsys, command, words, at):
    if command in ("spiral", "theorem", "models", "train"):  # valid calls are slow: always add a bad option
        words.insert(min(at, len(words)), "--no-such-option")
    run_cli(tmp_path, capsys, [command, *words])


@pytest.mark.parametrize("argv", [
    [b"kinds", b"\xff\xfe"],  # not UTF-8
    [b"spiral", b"--points", b"20", b"--noise", b"1e308", b"--out", b"out"],  # warnings would be extra lines
    [b"run", b"x" * 300],  # file name too long
], ids=["bytes", "overflow", "long-name"])
def test_as_a_process(tmp_path, argv):
    proc = subprocess.run([sys.executable.encode(), b"-m", b"manifold_lab", *argv], cwd=tmp_path, env=cli_env(),
                          capture_output=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == b""
    lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("manifold-lab") and "Traceback" not in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []
