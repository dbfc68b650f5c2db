"""Gates of a suite: the pre-registered rule that stops a campaign, or a suite's run, after a pilot.

A suite file's ``gates`` (``manifold_lab.spec.suite.Gate``: a part, an arm of its runs, a metric and a
threshold). A gate is *pending* while some planned run of its part matching its arm is not complete (a
run that failed is retried by the next invocation), *failed* when one of them diverged or when all are
complete and the mean of the metric over them (their ``metrics.json``, read through the results store) is
below the threshold, *passed* otherwise (``gate_state``).

Before runs of the gated part or of any later part start, a gate that is not passed admits only its own
runs (the pilot always proceeds: ``GateFilter``); any other run does not start, and the caller stops
there with ``gate_line``: ``waiting at the gate after <part>: ...`` (pending, exit status 0) or ``stopped
at the gate after <part>: ...`` (failed, exit status 1; nothing else starts until the recipe changes,
which gives new run ids, or the gate does). ``manifold-lab campaign`` (``manifold_lab.execution.campaign``)
and ``manifold-lab run SUITE`` (locally or through ``--launcher slurm``) both apply it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from manifold_lab.execution.store import ResultsStore
from manifold_lab.spec.sweep import PlannedRun, plan

__all__ = ["GateFilter", "GateState", "gate_line", "gate_state", "gates_section", "part_gates"]


@dataclass(frozen=True)
class GateState:
    """Where a gate stands (module docstring): ``state`` is ``pending``, ``passed`` or ``failed``; ``done`` of
    ``total`` of the arm's runs are complete; ``mean`` of the metric over them once all are, else None;
    ``problem``: why it failed without a mean (a run diverged, a run's metrics.json lacks the metric)."""

    state: str
    done: int
    total: int
    run_ids: frozenset[str]
    mean: float | None = None
    problem: str | None = None


def gate_state(gate, spec, out: Path) -> GateState:
    """The state of ``gate`` (a ``manifold_lab.spec.suite.Gate``) over the runs of its part ``spec`` in ``out``."""
    store = ResultsStore(out)
    runs = [r for r in plan(spec) if gate.matches(r.params)]
    ids = frozenset(r.run_id for r in runs)
    values, diverged, problem = [], 0, None
    for r in runs:
        record = store.record({"run_id": r.run_id, "params": r.params, "seed": r.seed,
                               "sweep_values": r.sweep_values})
        if record is not None and record.status == "diverged":
            diverged += 1
        elif record is not None and record.ok:
            value = record.metrics.get(gate.metric)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problem = problem or (f"run {r.run_id}'s metrics.json has no number {gate.metric} (its numbers: "
                                      + ", ".join(k for k, v in record.metrics.items()
                                                  if isinstance(v, (int, float)) and not isinstance(v, bool)) + ")")
            values.append(value)
    if diverged:
        return GateState("failed", len(values), len(runs), ids, problem=f"{diverged} of {len(runs)} runs diverged")
    if problem:
        return GateState("failed", len(values), len(runs), ids, problem=problem)
    if len(values) < len(runs):
        return GateState("pending", len(values), len(runs), ids)
    mean = sum(values) / len(values)
    return GateState("passed" if mean >= gate.at_least else "failed", len(values), len(runs), ids, mean=mean)


def gate_line(gate, state: GateState) -> str:
    """Why the campaign stops at a gate that is not passed (the outcome line of the module docstring)."""
    if state.state == "pending":
        return f"waiting at the gate after {gate.after}: {state.done} of {state.total} runs of {gate.arm_text} done"
    why = f"; {gate.why}" if gate.why else ""
    if state.mean is None:
        return f"stopped at the gate after {gate.after}: {gate.arm_text}: {state.problem}{why}"
    return (f"stopped at the gate after {gate.after}: {gate.arm_text} mean {gate.metric} {_mean(state, gate)} < "
            f"{gate.at_least:g} over {state.total} runs{why}")


def _mean(state: GateState, gate) -> str:
    """The mean with 4 decimals, more where those would round it up to the threshold it is below."""
    text = f"{state.mean:.4f}"
    return f"{state.mean:.10g}" if state.mean < gate.at_least <= float(text) else text


def _gate_text(gate, state: GateState) -> str:
    """One item of campaign.md's ``## Gates``: the rule and the state."""
    rule = f"after {gate.after}: {gate.arm_text}, mean {gate.metric} >= {gate.at_least:g} over its {state.total} runs"
    if state.state == "pending":
        now = f"{state.done} of {state.total} runs done"
    elif state.mean is None:
        now = state.problem
    else:
        now = f"mean {gate.metric} {_mean(state, gate)} over {state.total} runs"
    return f"- {rule}: **{state.state}**, {now}." + (f" Why: {gate.why}" if gate.why else "")


def gates_section(suite, root: Path) -> list[str]:
    """campaign.md's ``## Gates`` (no lines for a suite without gates)."""
    if not suite.gates:
        return []
    parts = {spec.name: spec for spec in suite.parts}
    return ["## Gates", "",
            "No group of runs outside a gate's arm, of its part or of a later one, starts before the gate is "
            "passed: every run of the arm complete and the mean of the metric over them at least the threshold.", "",
            *[_gate_text(g, gate_state(g, parts[g.after], root / g.after)) for g in suite.gates], ""]


def part_gates(suite, n: int, root: Path) -> list[tuple]:
    """The gates that hold part ``n`` of ``suite`` (those after it or after an earlier part) as ``(gate, its
    part's spec, its part's folder under root)``."""
    parts = {spec.name: spec for spec in suite.parts}
    before = [p.name for p in suite.parts[:n + 1]]
    return [(g, parts[g.after], root / g.after) for g in suite.gates if g.after in before]


class GateFilter:
    """A ``select`` for the runner and the launcher over the pending runs of part ``part`` (a name), held by
    ``gates`` (``part_gates``): while a gate is not passed only the runs of its own arm may start.

    After a call, ``why`` is None when the returned runs may go (all of them, or only the closed gates' own
    runs: ``restricted``), else the ``gate_line`` of the gate that holds everything (``status`` 1 for a failed
    gate, 0 for a pending one) and nothing is returned."""

    def __init__(self, part: str, gates: list[tuple], exclude: frozenset[str] = frozenset()):
        self.part, self.gates, self.exclude = part, gates, exclude  # exclude: run ids this call already ran
        self.why: str | None = None
        self.status = 0
        self.restricted = False
        self.chosen: list[PlannedRun] = []

    def states(self) -> list[tuple]:
        """``(gate, GateState)`` of every gate that is not passed."""
        return [(g, st) for g, spec, folder in self.gates if (st := gate_state(g, spec, folder)).state != "passed"]

    def holds_everything(self) -> bool:
        """Whether a gate of an earlier part is not passed: no run of this part may start (``why`` is then set)."""
        closed = self.states()
        if any(g.after != self.part for g, _ in closed):
            self._shut(closed)
            return True
        return False

    def _shut(self, closed: list[tuple]) -> None:
        shut = next((c for c in closed if c[1].state == "failed"), closed[0])
        self.why, self.status = gate_line(*shut), 1 if shut[1].state == "failed" else 0

    def __call__(self, todo: list[PlannedRun]) -> list[PlannedRun]:
        todo = [r for r in todo if r.run_id not in self.exclude]
        closed = self.states()
        kept = [r for r in todo if all(g.after == self.part and r.run_id in st.run_ids for g, st in closed)]
        self.restricted = len(kept) < len(todo)
        if closed and (not kept or any(st.state == "failed" for _, st in closed)):
            self._shut(closed)
            return []
        self.chosen = kept
        return kept
