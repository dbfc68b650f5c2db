"""``manifold-lab train``: train one MobileNetV2 from a ``kind: mobilenetv2`` spec.

Works unchanged under ``torchrun --nproc_per_node=N -m manifold_lab train ...``
(DistributedDataParallel; only rank 0 writes). A spec with a sweep trains its
grid point ``--point`` (default 0) with seed ``--seed`` (default: the spec's
first seed); ``manifold-lab run`` runs whole sweeps. Like a run of ``run``, the
folder gets ``provenance.json`` (``manifold_lab.execution.provenance``); progress is
a bar per epoch on a terminal, a plain line per epoch in a pipe or a log.
"""

from __future__ import annotations

HELP = "Train one MobileNetV2 from a YAML spec (kind: mobilenetv2); resumes from its checkpoint"


def add_arguments(p) -> None:
    p.add_argument("spec", help="experiment YAML file (kind: mobilenetv2)")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="overrides, e.g. params.train.epochs=3")
    p.add_argument("--out", help="run folder (default runs/<name>/train/point<P>_seed<S>, ignored by git)")
    p.add_argument("--point", type=int, default=0, help="grid point of the spec's sweep (default 0)")
    p.add_argument("--seed", type=int, help="seed (default: the spec's first seed)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint and start over")


def run(args) -> int:
    import json
    import os
    from contextlib import nullcontext
    from pathlib import Path

    from manifold_lab import io
    from manifold_lab.commands.run import warn_traps
    from manifold_lab.execution.store import locked
    from manifold_lab.spec import load_spec
    from manifold_lab.spec.bounds import MAX_SEED
    from manifold_lab.spec.sweep import plan

    spec = load_spec(args.spec, args.overrides)
    if spec.kind.name != "mobilenetv2":
        raise ValueError(f"{args.spec} has kind {spec.kind.name!r}; train needs kind: mobilenetv2 "
                         f"(use manifold-lab run for other kinds)")
    if not 0 <= args.point < len(spec.points):
        raise ValueError(f"--point must be in 0..{len(spec.points) - 1}, got {args.point}")
    warn_traps(spec)
    seed = spec.seeds[0] if args.seed is None else args.seed
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed must be >= 0 and <= {MAX_SEED} (what the random generators take), got {seed}")
    first = next(r for r in plan(spec) if r.point == args.point)
    params = spec.kind.params.model_validate(first.params)
    out = Path(args.out) if args.out else spec.output / "train" / f"point{args.point}_seed{seed}"
    rank = int(os.environ.get("RANK", "0"))
    io.check_tree(out)  # no link inside the run folder
    # One `train` per folder: a second one into it refuses at once (rank 0 holds the lock).
    with locked(out / ".lock", what="train folder",
                hint="wait for it to finish or use --out to train elsewhere") if rank == 0 else nullcontext():
        from manifold_lab.execution.one_run import start_provenance, write_provenance
        from manifold_lab.train.trainer import train

        if rank == 0:
            io.remove_temporaries(out, all_writers=True)
        record = start_provenance(first)
        metrics = train(params, out, seed=seed, resume=not args.no_resume, progress=True)
        if rank == 0:
            write_provenance(out, record)
            io.write_json(out / "metrics.json", metrics)
            print(json.dumps({k: v for k, v in metrics.items() if not k.startswith("curve_")}))
    return 0 if metrics["status"] == "done" else 1
