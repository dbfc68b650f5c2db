"""A campaign: the experiment files of a suite run in order within a wall-time budget, across sessions.

``manifold-lab campaign CAMPAIGN.yaml --stop-after 50m`` (``run_campaign``) takes a suite file
(``manifold_lab.spec.suite``: ``name``, ``description``, ``suite: [experiment files]``) and runs its
parts in order into ``<root>/<part name>/`` (``runs/<campaign>/``, ``results/<campaign>/`` with
``--reference``: the folders ``manifold-lab run CAMPAIGN.yaml`` writes), one group of runs at a time:
one run, or up to ``--batch-runs`` runs trained together as one seed-batched network (the default
on a CUDA device, ``batch.default_batch_runs``). Its rules, so that it stops before the wall time:

- *Before a group starts*, its cost is estimated: the epochs left of its runs times the images of an
  epoch (training images, plus ``EVAL_COST`` of every image evaluated: the test split and the clean
  training sample) over the images/s of one run in a group of that size on this device
  (``THROUGHPUT``, measured: ``throughput_table``), plus ``GROUP_OVERHEAD_S``. The group starts only if that fits in the time
  left less ``MARGIN_S``; a group that fits in no session of this length (its cost exceeds
  ``--stop-after`` itself) starts when one epoch fits, and is trained across invocations. Otherwise
  the campaign stops there.
- *While a group trains*, a watcher reads its runs' ``metrics.jsonl``: at each epoch boundary (every
  member's line written, so its ``checkpoint.pt`` too: the trainer writes it first), if the time left
  is below ``EPOCH_SAFETY`` times the last epoch's seconds, the group is stopped there; at the
  deadline (``--stop-after`` less ``MARGIN_S``) it is stopped wherever it is. A stopped run stays
  ``running`` with its checkpoint; the next invocation resumes it (the runner's resume), so finished
  epochs are never trained again. Completed runs stay in their folders.
- *Gates* (the suite's ``gates``; ``manifold_lab.execution.gates``): while a gate is not passed, only
  its own arm's runs start; a group with any other run does not start and the campaign stops there:
  ``waiting at the gate after <part>: ...`` (pending, exit status 0) or ``stopped at the gate after
  <part>: ...`` (failed, exit status 1). The estimate in ``campaign.md`` groups the runs the same way
  (``_training_groups``): a gated part's arm in groups of its own, then its other runs.
- After every invocation ``campaign.md`` in the campaign folder lists, per experiment, the runs
  planned, done and remaining (with the epochs each remaining run has done), the device minutes
  spent according to the runs' records and the minutes estimated for what remains, every gate with
  its rule and state, every invocation (``campaign.json``) and the throughput table.
- *Spent* comes from the records a committed campaign folder keeps: each run's ``metrics.jsonl`` lines
  (``epochs_recorded``; the ``epochs`` of ``metrics.json`` at their mean images/s without them), whether or
  not its ``checkpoint.pt`` is there. Checkpoints are git-ignored and a lent machine starts bare, so a run
  with recorded epochs and no checkpoint restarts from epoch 0 (``restarts``): ``campaign.md`` says so, the
  estimate counts all its epochs again (``epochs_checkpointed``: what a run resumes after), and when its
  group starts the ledger keeps the minutes of those epochs (``lost`` of the group in ``campaign.json``), so
  that they stay spent after the restart rewrites ``metrics.jsonl``. Each group enters the ledger as it
  starts, so that one interrupted by the user is accounted too.
- *One device and one torch version per study*: before anything is trained or written, the campaign refuses
  to continue a part that still has runs to train and already has trained epochs (runs with
  ``metrics.jsonl`` lines or a ``metrics.json``, in its folder or complete in its reuse folders: a reused
  run is one of the study's runs) recorded on another device name or torch version than this one's
  (``_device``: the GPU's name, else the CPU's model name, and the installed torch). The records
  (``_trained_on``): each run's ``provenance.json`` (``gpu`` or ``cpu``, ``packages.torch``; a run writes it
  when it ends) and the ledger's groups that trained it (their invocation's ``device`` and ``torch`` in
  ``campaign.json``: a run stopped at the wall time has no provenance yet). The refusal is one line naming
  the part, both devices and what to do (run it on the device named, or give a different ``--out``), exit
  status 2; ``--dry-run`` prints ``campaign.md`` with it, then refuses the same way. Parts with nothing
  trained may run on any device.
- *Reused runs*: a part's ``reuse:`` folders (``runner.reuse_sources``; Figure 6b's bottleneck arm is Figure
  6a's runs, the same ids) give it runs it never trains: one complete there is done (the runner copies it,
  ``copied_from`` in its ``status.json``); one that an earlier part of the suite plans into such a folder
  and has not completed is remaining and estimated in that part only, and listed as reused from it. The
  estimates thus count every run the campaign trains once, and a copy's epochs are spent where they were
  trained.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from manifold_lab import io
from manifold_lab.errors import UsageError
from manifold_lab.execution.batch import default_batch_runs, group_runs
from manifold_lab.execution.gates import GateFilter, gate_state, gates_section, part_gates
from manifold_lab.execution.runner import reuse_sources, run_experiment
from manifold_lab.execution.store import ResultsStore
from manifold_lab.spec.sources import display_path
from manifold_lab.spec.sweep import PlannedRun, plan

__all__ = ["THROUGHPUT", "parse_duration", "run_campaign", "throughput_table"]

#: Images per second of one run, by device kind and runs trained together (the studies' network:
#: ``cifar_fast``, width 0.5, 32x32, in the trainer). ``cuda``: 8 runs, 2,760.6 (NVIDIA H200,
#: ``benchmarks/results/gpu_pilot/pilot.json``, ``images_per_s_per_network``); other group sizes scaled
#: by the bare training step of ``benchmarks/results/gpu_check/throughput_stacks.json`` (``stack_K_eager``,
#: per network: 10,571 / 7,487 / 5,814 / 3,178 for K = 1 / 4 / 8 / 16). ``cpu`` (2 cores):
#: ``benchmarks/results/cifar_budget.json`` ``baseline`` (26.26 runs/h of 5 epochs of 10,000 images: 365)
#: and ``cifar_budget_batch.json`` ``batch2`` (9.858 runs/h of 20 epochs of 10,000 images, 2 together: 274).
THROUGHPUT = {
    "cuda": {k: 2760.6 * step / 5814.0 for k, step in ((1, 10571.0), (4, 7487.0), (8, 5814.0), (16, 3178.0))},
    "cpu": {1: 26.26 * 5 * 10000 / 3600, 2: 9.858 * 20 * 10000 / 3600 / 2},
}
#: What evaluating an image costs relative to training on it (a forward pass of the three of a step).
EVAL_COST = 1 / 3
#: Seconds a group costs besides its epochs: worker start, data, Figure 7 statistics and probe, final evaluation.
GROUP_OVERHEAD_S = 30.0
#: Seconds kept free at the end for the report and ``campaign.md``.
MARGIN_S = 30.0
#: The next epoch is taken to last this many times the last one.
EPOCH_SAFETY = 1.25
#: Images per split of the datasets whose size is known without reading them.
DATASET_IMAGES = {"cifar10": (10, 50000, 10000), "cifar10_jpeg": (10, 50000, 10000),
                  "cifar100": (100, 50000, 10000), "digits": (10, 1437, 360)}
POLL_S = 0.5


def parse_duration(text: str) -> float:
    """Seconds of a duration like ``50m``, ``90s``, ``2h``, ``1h30m`` (``UsageError`` otherwise)."""
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*", str(text))
    if not text or match is None or not any(match.groups()):
        raise UsageError(f"--stop-after: expected a duration like 50m, 90s, 2h or 1h30m, got {text!r}")
    h, m, s = (float(g or 0) for g in match.groups())
    seconds = 3600 * h + 60 * m + s
    if seconds <= 0:
        raise UsageError(f"--stop-after must be longer than 0 s, got {text!r}")
    return seconds


def throughput_table() -> str:
    """The images/s the estimates use, as a markdown table."""
    rows = [f"| {kind} | {k} | {rate:,.0f} |" for kind, by_k in THROUGHPUT.items() for k, rate in by_k.items()]
    return "\n".join(["| device | runs trained together | images/s of one run |", "|---|---:|---:|", *rows])


def images_per_s(device: str, members: int) -> float:
    """Images/s of one run in a group of ``members`` on ``device`` (the measured size nearest to it)."""
    by_k = THROUGHPUT[device]
    return by_k[min(by_k, key=lambda k: (abs(k - members), k))]


def _split_images(params: dict) -> tuple[int, int]:
    """``(training images, test images)`` of an epoch of ``params``."""
    data = params["data"]
    if data["name"] not in DATASET_IMAGES:
        raise UsageError(f"the campaign cannot estimate an epoch of data.name={data['name']} (sizes known: "
                         f"{', '.join(DATASET_IMAGES)})")
    classes, n_train, n_test = DATASET_IMAGES[data["name"]]
    n_train = classes * data["subset"] if data["subset"] else n_train
    n_test = classes * data["eval_subset"] if data["eval_subset"] else n_test
    return n_train, n_test


def train_images(params: dict) -> int:
    """Training images of one epoch."""
    return _split_images(params)[0]


def epoch_images(params: dict) -> float:
    """Training images of one epoch plus ``EVAL_COST`` times the images evaluated after it."""
    n_train, n_test = _split_images(params)
    return n_train + EVAL_COST * (n_test + (params["train"].get("clean_train_images") or 0))


def _jsonl_seconds(run_dir: Path) -> list[float]:
    """The ``seconds`` of every line of a run's ``metrics.jsonl`` ([] without one, or unreadable)."""
    try:
        return [float(json.loads(line).get("seconds", 0.0))
                for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError, AttributeError, TypeError):
        return []


def epochs_checkpointed(run_dir: Path) -> list[float]:
    """The seconds of every epoch a run resumes after (lines of ``metrics.jsonl``; [] without ``checkpoint.pt``:
    the run starts again from epoch 0)."""
    return _jsonl_seconds(run_dir) if (run_dir / "checkpoint.pt").is_file() else []


def epochs_recorded(run_dir: Path, params: dict | None = None) -> list[float]:
    """The seconds of every epoch a run's committed records hold, whether or not its checkpoint is there
    (checkpoints are not committed): the lines of ``metrics.jsonl``; without them, the ``epochs`` of its
    ``metrics.json`` at their mean ``images_per_s`` (the training images of an epoch of ``params`` over it; 0 s
    each where that is unknown)."""
    if seconds := _jsonl_seconds(run_dir):
        return seconds
    metrics = _read(run_dir / "metrics.json")
    epochs, rate = metrics.get("epochs"), metrics.get("images_per_s")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        return []
    try:
        each = train_images(params) / rate if isinstance(rate, (int, float)) and rate > 0 else 0.0
    except (KeyError, TypeError, UsageError):
        each = 0.0
    return [each] * epochs


def _jsonl_digest(run_dir: Path) -> str | None:
    try:
        return hashlib.sha256((run_dir / "metrics.jsonl").read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def restarts(run_dir: Path, params: dict | None = None) -> bool:
    """Whether a run's records hold epochs that its next start trains again: epochs in ``metrics.jsonl`` (or a
    ``metrics.json``) but no ``checkpoint.pt`` (not committed; a lent machine starts bare)."""
    return bool(epochs_recorded(run_dir, params)) and not (run_dir / "checkpoint.pt").is_file()


def stop_reason(rows: list[list[float]], epochs: int, left: float) -> str | None:
    """Why a group whose members checkpointed the epochs ``rows`` (seconds of each) stops now with ``left``
    seconds left (the rules of the module docstring), or None."""
    if left <= 0:
        return "the wall time ran out during an epoch (resumes from the last checkpoint)"
    done = {len(r) for r in rows}
    if len(done) == 1 and 0 < (e := done.pop()) < epochs \
            and (need := EPOCH_SAFETY * max(r[-1] for r in rows)) > left:
        return f"stopped after epoch {e} of {epochs}: the next needs about {need / 60:.1f} min, {left / 60:.1f} min left"
    return None


def _budget(total: float, clock: Callable[[], float]) -> Callable[[], float]:
    """The seconds left, as a function, before the deadline of an invocation of ``total`` seconds (``MARGIN_S``
    kept free)."""
    deadline = clock() + total - MARGIN_S
    return lambda: deadline - clock()


class _Watcher(threading.Thread):
    """Stops a training group at the epoch boundary after which its next epoch would not fit, or at the
    deadline: it interrupts the main thread (``KeyboardInterrupt``; the runner ends its workers)."""

    def __init__(self, run_dirs: list[Path], epochs: int, left: Callable[[], float]):
        super().__init__(daemon=True, name="campaign-watcher")
        self.run_dirs, self.epochs, self.left = run_dirs, epochs, left
        self.reason: str | None = None
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._main = threading.main_thread().ident

    def run(self) -> None:
        while not self.finished.wait(POLL_S):
            reason = stop_reason([epochs_checkpointed(d) for d in self.run_dirs], self.epochs, self.left())
            if reason is not None:
                with self._lock:
                    if not self.finished.is_set():
                        self.reason = reason
                        signal.pthread_kill(self._main, signal.SIGINT)
                return

    def close(self) -> None:
        with self._lock:
            self.finished.set()


def _group_cost(group: list[PlannedRun], root: Path, device: str) -> tuple[float, float]:
    """``(seconds of the group, seconds of one epoch)`` estimated (module docstring)."""
    params = group[0].params
    epoch = epoch_images(params) / images_per_s(device, len(group))
    left = max(params["train"]["epochs"] - len(epochs_checkpointed(root / "runs" / r.run_id)) for r in group)
    return left * epoch + GROUP_OVERHEAD_S, epoch


def _reuse(suite, n: int, root: Path) -> tuple[list[ResultsStore], dict[str, str]]:
    """What part ``n`` of ``suite`` copies instead of training (its ``reuse:``, as the runner reads it:
    ``runner.reuse_sources``): the folders it copies complete runs from, and ``{run id: name}`` of the runs of an
    earlier part whose folder is one of them (that part trains them first; they are copied here once complete)."""
    spec = suite.parts[n]
    sources = reuse_sources(spec, root / spec.name)
    folders = {s.root.resolve() for s in sources}
    earlier: dict[str, str] = {}
    for part in suite.parts[:n]:
        if (root / part.name).resolve() in folders:
            for r in plan(part):
                earlier.setdefault(r.run_id, part.name)
    return sources, earlier


def _classify(runs: list[PlannedRun], root: Path, sources: list[ResultsStore], earlier: dict[str, str]) -> tuple:
    """``(done, todo, reused, awaited)`` of a part's ``runs`` in its folder ``root``: complete (in ``root`` or in a
    reuse source), to be trained by this part, reused (copied or complete in a source; a subset of done) and
    left to the earlier part that trains them (``earlier``: ``_reuse``)."""
    store = ResultsStore(root)
    done, todo, reused, awaited = [], [], [], []
    for r in runs:
        own = (root / "runs" / r.run_id).is_dir() and store.is_complete(r.run_id)
        copied = own and "copied_from" in _read(root / "runs" / r.run_id / "status.json")
        elsewhere = not own and any(s.is_complete(r.run_id) for s in sources)
        if own or elsewhere:
            done.append(r)
            reused += [r] if copied or elsewhere else []
        elif r.run_id in earlier:
            awaited.append(r)
        else:
            todo.append(r)
    return done, todo, reused, awaited


def _trained_on(spec, root: Path, sources: list[ResultsStore], invocations: list[dict]) -> dict[tuple, set]:
    """Where the epochs of part ``spec`` (folder ``root``) were trained: ``{(device name, torch version): run
    ids}`` over its runs with epochs (``metrics.jsonl`` lines or ``metrics.json``) in its folder, or complete in a
    reuse source (copied into it: the study's runs all the same). Two records, each used where it is there:
    the run's ``provenance.json`` (written by the run when it ends: ``gpu``, else ``cpu``, and
    ``packages.torch``), and the ledger's groups of this part that trained it (their invocation's ``device``
    and ``torch``: a run stopped at the wall time has no provenance yet). None where a record does not say."""
    where: dict[tuple, set] = {}
    trained = set()
    for r in plan(spec):
        run_dir = root / "runs" / r.run_id
        if not epochs_recorded(run_dir, r.params) and not (run_dir / "metrics.json").is_file():
            run_dir = next((s.run_dir(r.run_id) for s in sources if s.is_complete(r.run_id)), None)
            if run_dir is None:
                continue
        trained.add(r.run_id)
        if prov := _read(run_dir / "provenance.json"):
            name = (prov["gpu"] or prov.get("cpu")) if "gpu" in prov else None
            where.setdefault((name, (prov.get("packages") or {}).get("torch")), set()).add(r.run_id)
    for inv in invocations:
        for group in inv.get("groups", []):
            if group.get("experiment") == spec.name and (ids := trained & set(group.get("run_ids", []))):
                where.setdefault((inv.get("device"), inv.get("torch")), set()).update(ids)
    return where


def _device_problem(suite, root: Path, name: str, torch_version: str | None, invocations: list[dict]) -> str | None:
    """Why this device may not continue the campaign in ``root`` (None if it may): a part with runs still to train
    whose epochs so far (``_trained_on``) were trained on another device name or torch version (module
    docstring). Parts with nothing trained may run anywhere."""
    def what(device: str | None, version: str | None) -> str:
        return f"{device or 'an unrecorded device'} with torch {version or '(not recorded)'}"

    for n, spec in enumerate(suite.parts):
        sources, earlier = _reuse(suite, n, root)
        _, todo, reused, _ = _classify(plan(spec), root / spec.name, sources, earlier)
        if not todo:
            continue
        other = {key: ids for key, ids in _trained_on(spec, root / spec.name, sources, invocations).items()
                 if (key[0] is not None and key[0] != name) or (key[1] is not None and key[1] != torch_version)}
        if other:
            (device, version), ids = max(other.items(), key=lambda item: len(item[1]))
            copies = len(ids & {r.run_id for r in reused})
            # a reuse folder outside the campaign's (e.g. the committed results/...) is read whatever --out says
            fixed = sorted({display_path(s.root) for s in sources if not _inside(s.root, root)
                            and any(s.is_complete(i) for i in ids)})
            advice = (f" (its reused runs in {', '.join(fixed)} were trained there; another --out reuses them too)"
                      if fixed else ", or give a different --out")
            return (f"{spec.name} in {display_path(root)} has epochs of {len(ids)} run(s)"
                    + (f" ({copies} of them reused)" if copies else "")
                    + f" trained on {what(device, version)}, and this is {what(name, torch_version)}: a study "
                    f"stays on one device and one torch version; run the campaign on {what(device, version)}"
                    + advice)
    return None


def _inside(folder: Path, root: Path) -> bool:
    """Whether ``folder`` is ``root`` or lies under it."""
    return folder.resolve().is_relative_to(root.resolve())


def _group_size(run_dir: Path, run_id: str, groups_of: dict) -> int:
    """The runs a run was trained together with (its provenance's batch, else the ledger's group, else 1)."""
    return (_read(run_dir / "provenance.json").get("batch") or {}).get("size") or groups_of.get(run_id, 1)


def _lost(invocations: list[dict], part: str) -> dict[str, dict[str, float]]:
    """``{run id: {digest of its metrics.jsonl then: device seconds}}`` of the epochs the ledger's groups of
    ``part`` trained again from epoch 0 (``lost`` of a group: the run had no checkpoint when the group started)."""
    out: dict[str, dict[str, float]] = {}
    for inv in invocations:
        for group in inv.get("groups", []):
            if group.get("experiment") == part:
                for run_id, entry in (group.get("lost") or {}).items():
                    out.setdefault(run_id, {})[entry.get("jsonl_sha256")] = float(entry.get("device_s") or 0.0)
    return out


def _training_groups(spec, todo: list[PlannedRun], size: int, gates: list = ()) -> list[list[PlannedRun]]:
    """The groups the campaign trains ``todo`` in (``_run_part``): while a gate after this part is not passed,
    the runs of its arm alone (``GateFilter``), then the others; ``gates`` as ``part_gates`` gives them."""
    closed = [st for g, part, folder in gates if g.after == spec.name
              and (st := gate_state(g, part, folder)).state != "passed"]
    first = [r for r in todo if all(r.run_id in st.run_ids for st in closed)]
    rest = [r for r in todo if r not in first]
    return group_runs(spec.kind, first, size) + group_runs(spec.kind, rest, size)


def _spent_and_left(spec, root: Path, device: str, batch_runs: int, groups_of: dict,
                    sources: list[ResultsStore] = (), earlier: dict[str, str] | None = None,
                    lost: dict | None = None, gates: list = ()) -> dict:
    """Per experiment: runs planned / done / remaining / reused, device seconds spent (runs' records, with or
    without checkpoints, plus the epochs ``lost``: ``_lost``) and estimated. A run that a reuse source
    (``sources``) holds complete is done (copied by the runner, never trained here); one that an earlier part
    (``earlier``: ``_reuse``) plans into a reuse source but has not completed is neither done nor remaining
    here: that part trains it, and its estimate counts it. Estimated: the groups ``_training_groups`` forms
    (``gates``: ``part_gates``)."""
    runs, earlier, lost = plan(spec), earlier or {}, lost or {}
    done, todo, reused, awaited = _classify(runs, root, sources, earlier)
    spent, copies = 0.0, {r.run_id for r in reused}
    for r in runs:
        if r.run_id in copies:  # trained by the part it is copied from: spent there
            continue
        run_dir = root / "runs" / r.run_id
        spent += sum(epochs_recorded(run_dir, r.params)) / _group_size(run_dir, r.run_id, groups_of)
        now = _jsonl_digest(run_dir)  # lost epochs still in metrics.jsonl (not yet trained again) are counted once
        spent += sum(s for digest, s in lost.get(r.run_id, {}).items() if digest != now)
    estimated = sum(_group_cost(g, root, device)[0] for g in _training_groups(spec, todo, batch_runs, gates)) \
        if spec.kind.name == "mobilenetv2" else 0.0
    remaining, restarting = [], 0
    for r in todo:
        run_dir = root / "runs" / r.run_id
        if spec.kind.name != "mobilenetv2":
            remaining.append(str(r.index))
        elif restarts(run_dir, r.params):
            restarting += 1
            remaining.append(f"{r.index} `{r.run_id}` ({len(epochs_recorded(run_dir, r.params))}/"
                             f"{r.params['train']['epochs']} epochs in metrics.jsonl, no checkpoint: restarts from "
                             "epoch 0)")
        else:
            remaining.append(f"{r.index} `{r.run_id}` ({len(epochs_checkpointed(run_dir))}/"
                             f"{r.params['train']['epochs']} epochs)")
    from_parts = {}
    for r in awaited:
        from_parts.setdefault(earlier[r.run_id], []).append(f"{r.index} `{r.run_id}`")
    return dict(planned=len(runs), done=len(done), todo=len(todo), reused=len(reused) + len(awaited), spent=spent,
                estimated=estimated, remaining=remaining, awaited=from_parts, restarting=restarting)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _device() -> tuple[str, str, str | None]:
    """``(kind, name, torch version)`` of this device: ``cuda`` and the GPU's name, else ``cpu`` and the CPU's model
    name, as a run's ``provenance.json`` records them (``gpu``, ``cpu``, ``packages.torch``)."""
    from importlib import metadata

    import torch

    from manifold_lab.execution.provenance import cpu_model

    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        version = None
    if torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name(), version
    return "cpu", cpu_model(), version


def run_campaign(path: str | Path, stop_after: float, *, report, out: str | Path | None = None,
                 reference: bool = False, batch_runs: int | None = None, dry_run: bool = False,
                 clock=time.monotonic) -> tuple[int, str]:
    """Run (or continue) the campaign of suite file ``path`` for at most ``stop_after`` seconds.

    ``report(folder, spec)`` writes an experiment's report when its runs stop (the command line passes
    ``reporting.report.write_report``: execution does not import the reporting layer above it).

    Returns ``(exit status, one line saying how it ended)``; writes ``campaign.md`` and ``campaign.json``
    in the campaign folder (``dry_run``: nothing is run or written, ``campaign.md``'s text is printed).
    """
    from manifold_lab.spec.load import REFERENCE_ROOT, USER_ROOT
    from manifold_lab.spec.suite import is_suite, load_suite

    if not Path(path).is_file():
        raise UsageError(f"campaign file {display_path(Path(path))} does not exist")
    if not is_suite(path):
        raise UsageError(f"{display_path(Path(path))} is not a campaign: a campaign file is a suite "
                         "(name, description, suite: [experiment files])")
    suite = load_suite(path)
    root = Path(out) if out else (REFERENCE_ROOT if reference else USER_ROOT) / suite.name
    device, device_name, torch_version = _device()
    sizes = {spec.name: batch_runs or default_batch_runs(spec) for spec in suite.parts}
    ledger = _read(root / "campaign.json") or {"invocations": []}
    problem = _device_problem(suite, root, device_name, torch_version, ledger["invocations"])
    if problem is not None:  # before anything is trained or written; a dry run shows it too
        if dry_run:
            print(_markdown(suite, root, device, sizes, ledger["invocations"], refused=problem))
        raise UsageError(problem)
    left, t0 = _budget(stop_after, clock), clock()
    call = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "device": device_name,
            "torch": torch_version, "stop_after_min": round(stop_after / 60, 2), "groups": []}
    outcome, status = None, 0
    try:
        for n, spec in enumerate([] if dry_run else suite.parts):
            outcome, status = _run_part(spec, root / spec.name, sizes[spec.name], device, left, call,
                                        report, stop_after, part_gates(suite, n, root), ledger["invocations"])
            if outcome is not None:
                break
        outcome = outcome or ("dry run: nothing was run" if dry_run else "complete: every run of every experiment is done")
    except KeyboardInterrupt:
        outcome, status = "interrupted by the user (the runs resume from their checkpoints)", 130
        raise
    finally:
        call["outcome"], call["wall_min"] = outcome, round((clock() - t0) / 60, 2)
        text = _markdown(suite, root, device, sizes, ledger["invocations"] + ([] if dry_run else [call]))
        if dry_run:
            print(text)
        else:
            ledger["invocations"].append(call)
            io.write_json(root / "campaign.json", ledger)
            io.write_text(root / "campaign.md", text)
    return status, f"{suite.name}: {outcome}; {display_path(root / 'campaign.md')}"


def _run_part(spec, out: Path, size: int, device: str, budget: Callable[[], float], call: dict, report,
              stop_after: float, gates: list = (), invocations: list[dict] = ()):
    """Train the pending groups of one experiment while they fit and its ``gates`` (``(gate, its part, its
    part's folder)``: those after this part or an earlier one) let them; ``(None, 0)`` once it is done, else
    ``(why the campaign stops, exit status)``. Each group goes into ``call["groups"]`` as it starts (with the
    epochs its runs train again for want of a checkpoint, ``lost``: they stay spent), so that a group
    interrupted by the user is accounted too; the earlier ``invocations`` give the runs' group sizes."""
    failed: set[str] = set()
    while True:
        chosen: dict = {}

        def select(todo: list[PlannedRun]) -> list[PlannedRun]:
            todo = [r for r in todo if r.run_id not in failed]
            if not todo:
                return []
            gate = GateFilter(spec.name, gates)  # the pilot proceeds; nothing else while a gate is not passed
            todo = gate(todo)
            if gate.why is not None:
                chosen.update(why=gate.why, status=gate.status)
                return []
            group = group_runs(spec.kind, todo, size)[0]
            cost, epoch = _group_cost(group, out, device) if spec.kind.name == "mobilenetv2" else (0.0, 0.0)
            left = budget()
            if cost <= left or (cost > stop_after and epoch <= left):
                groups_of, lost = _groups_of([*invocations, call]), {}
                for r in group:  # epochs recorded without a checkpoint: trained again, their minutes kept spent
                    if restarts(run_dir := out / "runs" / r.run_id, r.params):
                        seconds = epochs_recorded(run_dir, r.params)
                        device_s = sum(seconds) / _group_size(run_dir, r.run_id, groups_of)
                        lost[r.run_id] = {"epochs": len(seconds), "device_s": round(device_s, 3),
                                          "jsonl_sha256": _jsonl_digest(run_dir)}
                entry = {"experiment": spec.name, "run_ids": [r.run_id for r in group],
                         "estimated_min": round(cost / 60, 2), "wall_min": 0.0, "outcome": "interrupted",
                         **({"lost": lost} if lost else {})}
                call["groups"].append(entry)
                watcher = _Watcher([out / "runs" / r.run_id for r in group],
                                   group[0].params.get("train", {}).get("epochs", 0), budget)
                chosen.update(group=group, entry=entry, watcher=watcher)
                watcher.start()
                return group
            chosen["why"] = (f"stopped before {spec.name} run {group[0].index} ({len(group)} run(s) together): "
                             f"estimated {cost / 60:.1f} min, {max(left, 0) / 60:.1f} min left")
            return []

        start, summary, stopped = time.monotonic(), None, None
        # The watcher stops a group by SIGINT to this thread. A campaign started in the background without job
        # control (`manifold-lab campaign ... &` in a script) inherits SIGINT ignored: the group would run past
        # the wall time. So SIGINT raises KeyboardInterrupt while a group trains, whatever was inherited.
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        if ignored:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            summary = run_experiment(spec, out=out, batch_runs=size, report=report, select=select)
        except KeyboardInterrupt:
            stopped = chosen["watcher"].reason if "watcher" in chosen else None
            if stopped is None:
                raise
        finally:
            if "watcher" in chosen:
                chosen["watcher"].close()
                chosen["entry"]["wall_min"] = round((time.monotonic() - start) / 60, 2)
            if ignored:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        if "group" not in chosen:
            return chosen.get("why"), chosen.get("status", 0)
        chosen["entry"]["outcome"] = stopped or ("failed" if summary.failed else "done")
        if stopped is not None:
            return f"{spec.name}: {stopped}", 0
        failed.update(run_id for run_id, _ in summary.failed)


def _device_cell(invocation: dict) -> str:
    """An invocation's device name, with its torch version where the ledger records it."""
    version = invocation.get("torch")
    return f"{invocation['device']}, torch {version}" if version else str(invocation["device"])


def _groups_of(invocations: list[dict]) -> dict[str, int]:
    """``{run id: runs in its last group}`` of the ledger's invocations."""
    return {i: len(g["run_ids"]) for inv in invocations for g in inv.get("groups", []) for i in g["run_ids"]}


def _markdown(suite, root: Path, device: str, sizes: dict, invocations: list[dict], refused: str | None = None) -> str:
    groups_of = _groups_of(invocations)
    rows, remaining, totals, restarting = [], [], [0, 0, 0, 0, 0.0, 0.0], 0
    for n, spec in enumerate(suite.parts):
        s = _spent_and_left(spec, root / spec.name, device, sizes[spec.name], groups_of, *_reuse(suite, n, root),
                            _lost(invocations, spec.name), part_gates(suite, n, root))
        restarting += s["restarting"]
        rows.append(f"| [{spec.name}]({spec.name}/report.md) | {sizes[spec.name]} | {s['planned']} | {s['done']} | "
                    f"{s['todo']} | {s['reused']} | {s['spent'] / 60:.1f} | {s['estimated'] / 60:.1f} |")
        for i, v in enumerate((s["planned"], s["done"], s["todo"], s["reused"], s["spent"], s["estimated"])):
            totals[i] += v
        if s["remaining"]:
            remaining.append(f"- {spec.name}: " + ", ".join(s["remaining"]))
        for part, items in s["awaited"].items():
            remaining.append(f"- {spec.name}, reused from {part} (trained and estimated there, copied here once "
                             "complete): " + ", ".join(items))
    lines = [
        f"# Campaign {suite.name}", "",
        *([f"**Refused on this device**: {refused}.", ""] if refused else []),
        f"Written by `manifold-lab campaign {display_path(suite.source)} --stop-after DURATION` after every "
        "invocation; the next invocation continues where the last one stopped. *Reused* runs are another "
        "experiment's (its `reuse:` folders): copied, never trained here; done once complete there, until then "
        "remaining and estimated in that experiment only (so *remaining* is what this experiment trains itself, "
        "and the totals of remaining runs and estimated minutes count each run once). Device minutes *spent* are "
        "the epochs' seconds in each run's `metrics.jsonl` (the epochs of its `metrics.json` at their mean images/s "
        "without one), checkpoint or not, divided by the runs trained together with it, plus the epochs trained "
        "again for want of a checkpoint (`lost` in campaign.json); reused runs count where they were trained. "
        "*Estimated* are the epochs left after the last checkpoint (all of them without one) times the images "
        f"of an epoch (training images plus {EVAL_COST:.2f} of each evaluated one) over the images/s below, on "
        f"this device ({device}).", "",
        "| experiment | runs together | planned | done | remaining | reused | device min spent "
        "| device min estimated |",
        "|---|---:|---:|---:|---:|---:|---:|---:|", *rows,
        f"| total | | {totals[0]} | {totals[1]} | {totals[2]} | {totals[3]} | {totals[4] / 60:.1f} | "
        f"{totals[5] / 60:.1f} |", "",
        *([f"{restarting} remaining run(s) have epochs in metrics.jsonl but no checkpoint.pt (checkpoints are not "
           "committed, and a lent machine starts bare): they restart from epoch 0. The device minutes of those "
           "epochs stay counted as spent and are counted again in the estimate.", ""] if restarting else []),
        "## Remaining runs (index, id, epochs done: checkpointed, or recorded without a checkpoint)", "",
        *(remaining or ["none"]), "",
        *gates_section(suite, root),
        "## Invocations", "",
        "| # | started | device | stop after (min) | groups trained | wall min of the groups | outcome |",
        "|---:|---|---|---:|---:|---:|---|",
        *[f"| {n} | {io.md_cell(inv['started'])} | {io.md_cell(_device_cell(inv))} | {inv['stop_after_min']} | "
          f"{len(inv['groups'])} | {sum(g['wall_min'] for g in inv['groups']):.2f} | {io.md_cell(inv['outcome'])} |"
          for n, inv in enumerate(invocations, 1)],
        "", "## Throughput used for the estimates", "", throughput_table(), "",
    ]
    return "\n".join(lines)
