"""A tiny experiment kind for the engine's tests (not shipped with the package).

Its metrics are closed-form functions of the params and the seed, so the
tests can recompute every aggregate by hand::

    y = a * (seed + 1) + b          z = a ** 2 + seed          curve = [a * i for i in 0, 1, 2]

It fails, returns NaN, diverges, sleeps, aborts its process (``abort_seeds``: a
native abort, SIGABRT) or breaks its report on demand. Every execution appends a
line to ``executions.txt`` in its run folder, so a test can count how many
times a run was computed. Loaded by subprocesses through the plugin hook
``MANIFOLD_LAB_EXTRA_KINDS=tests.kinds_for_tests``.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from manifold_lab.kinds import Kind, ReportContext, ReportItem, RunContext


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: float = Field(1.0, gt=0)
    act: Literal["identity", "relu", "relu6"] = "identity"


class ClosedFormParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: float = Field(1.0, gt=0)
    b: int = 0
    block: Inner = Inner()
    fail_seeds: list[int] = []
    nan_seeds: list[int] = []
    diverge_seeds: list[int] = []
    abort_seeds: list[int] = []
    sleep: float = Field(0.0, ge=0)
    fail_report: bool = False


def run(params: ClosedFormParams, seed: int, ctx: RunContext) -> dict:
    with open(ctx.run_dir / "executions.txt", "a") as f:
        f.write(f"{seed}\n")
    for _ in ctx.progress(range(3), total=3, desc="steps"):
        time.sleep(params.sleep / 3)
    ctx.log.info("a=%s b=%s seed=%s", params.a, params.b, seed)
    if seed in params.abort_seeds:
        import os

        os.abort()  # what a native library does on an absurd setting: the process dies
    if seed in params.fail_seeds:
        raise RuntimeError(f"asked to fail for seed {seed}")
    y = params.a * (seed + 1) + params.b
    if seed in params.nan_seeds:
        y = float("nan")
    metrics = {
        "y": y,
        "z": params.a**2 + seed,
        "w": params.block.width * params.a,
        "curve": [params.a * i for i in range(3)],
        "flag": True,
        "label": params.block.act,
    }
    if seed in params.diverge_seeds:
        metrics.update(status="diverged", error="loss became inf", z=float("inf"))
    return metrics


def report(ctx: ReportContext) -> list[ReportItem]:
    if any(r.params["fail_report"] for r in ctx.runs):
        raise RuntimeError("asked to fail the report")
    total = sum(r.metrics["y"] for r in ctx.done_runs)
    figure = ctx.out_dir / "figures" / "closed_form.txt"
    figure.parent.mkdir(parents=True, exist_ok=True)
    figure.write_text(f"{total}\n")
    return [
        ReportItem(title="Sum of y", markdown=f"sum of y over {len(ctx.done_runs)} runs: {total}"),
        ReportItem(title="Figure", figure="figures/closed_form.txt", caption="a stand-in figure"),
    ]


def run_batch(members: list) -> list[dict]:
    """The members one after the other, each marking ``batched.txt`` with its group's size; raises for the
    whole group when ``b == -1`` or when a member raises (as a seed-batched training would)."""
    if any(params.b == -1 for params, _, _ in members):
        raise RuntimeError("asked to fail the group (b = -1)")
    out = []
    for params, seed, ctx in members:
        (ctx.run_dir / "batched.txt").write_text(f"{len(members)}\n")
        out.append(run(params, seed, ctx))
    return out


def batch_key(params: ClosedFormParams) -> str:
    return params.model_dump_json()


KIND = Kind(
    name="closed_form",
    description="closed-form metrics of (a, b, seed) for the engine's tests",
    params=ClosedFormParams,
    run=run,
    report=report,
    run_batch=run_batch,
    batch_key=batch_key,
)


# --------------------------------------------------------------------------- helpers for the tests

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def cli_env() -> dict:
    """Environment for ``python -m manifold_lab`` subprocesses that need this kind."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["MANIFOLD_LAB_EXTRA_KINDS"] = "tests.kinds_for_tests"
    return env


def cli(*args, cwd, timeout=120):
    """Run ``python -m manifold_lab ARGS`` in ``cwd`` with this kind registered."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "manifold_lab", *map(str, args)],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout,
    )


def write_spec(path, text: str):
    """Write a spec file (dedented) and return its path."""
    import textwrap

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def files_under(folder) -> set:
    """Every path below ``folder`` (to check that nothing was written)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}
