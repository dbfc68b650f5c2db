"""The converged-recipe pilot on a lent GPU: seeds of the linear arm trained as one stack.

    python -m benchmarks.gpu_pilot --out-dir DIR [--seeds 8] [--budget-s 300] [--images-per-s R]
                                   [--epochs E] [--device cuda]

Trains ``--seeds`` seeds of the studies' network with the linear bottleneck (MobileNetV2
``cifar_fast``, width 0.5, dropout 0) on the full CIFAR-10 JPEG copy (50,000 training images,
the full 10,000-image test split) with ``configs/optim/cifar_sgd.yaml`` (SGD, Nesterov momentum
0.9, lr 0.1 per batch of 128, weight decay 5e-4, cosine with one warm-up epoch), all seeds as one
seed-batched network (``manifold_lab.train.batched``). The schedule's length is fixed before
the first step: ``--epochs``, or as many epochs as fit ``--budget-s`` at ``--images-per-s`` per
network (a measured rate, e.g. ``gpu_check``'s ``stack_K_eager``) with 40% kept for evaluation
and start-up. Every member's run folder (``metrics.jsonl``: train, test and clean-train
accuracy per epoch) goes under ``--out-dir/runs``; ``pilot.json`` gives the recipe, the final
test accuracy of every seed, their mean and standard deviation (the spread the power
computation of the converged studies needs), and the wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

BASE = {
    "model": {"preset": "cifar_fast", "width_mult": 0.5, "dropout": 0.0, "bottleneck_act": "identity"},
    "data": {"name": "cifar10_jpeg", "batch_size": 128, "eval_batch_size": 1000},
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    "schedule": {"name": "cosine", "warmup_epochs": 1},
    "train": {"relu_stats": False, "clean_train_images": 1000, "deterministic": False},
}
TRAIN_IMAGES = 50_000


def plan_epochs(budget_s: float, images_per_s: float) -> int:
    """Epochs that fit ``budget_s`` at ``images_per_s`` per network, 60% of the time training; 3 to 200."""
    return max(3, min(200, int(0.6 * budget_s * images_per_s / TRAIN_IMAGES)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--images-per-s", type=float, default=None, help="measured images/s per network")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--subset", type=int, default=None, help="train images per class (a CPU plumbing test)")
    args = parser.parse_args(argv)
    if args.epochs is None and args.images_per_s is None:
        parser.error("give --epochs or --images-per-s (the measured rate the schedule is planned from)")
    if not 1 <= args.seeds <= 64:
        parser.error(f"--seeds {args.seeds}: expected 1 to 64")
    from manifold_lab import io
    from manifold_lab.train.batched import train_batch
    from manifold_lab.train.config import TrainConfig

    epochs = args.epochs or plan_epochs(args.budget_s, args.images_per_s)
    params = json.loads(json.dumps(BASE))
    params["train"].update(epochs=epochs, device=args.device)
    if args.subset:
        params["data"].update(subset=args.subset, eval_subset=args.subset)
    cfg = TrainConfig.model_validate(params)
    out = Path(args.out_dir)
    start = time.perf_counter()
    results = train_batch([(cfg, out / "runs" / f"seed{s}", s) for s in range(args.seeds)], progress=False)
    wall = time.perf_counter() - start
    finals = [r.get("test_acc") for r in results]
    done = [a for a in finals if a is not None and math.isfinite(a)]
    record = {
        "recipe": cfg.model_dump(mode="json"), "seeds": list(range(args.seeds)), "epochs": epochs,
        "planned_from": {"budget_s": args.budget_s, "images_per_s_per_network": args.images_per_s},
        "status": [r["status"] for r in results], "test_acc": finals,
        "clean_train_acc": [r.get("clean_train_acc") for r in results],
        "mean_test_acc": statistics.mean(done) if done else None,
        "sd_test_acc": statistics.stdev(done) if len(done) > 1 else None,
        "images_per_s_per_network": statistics.median(r["images_per_s"] for r in results if "images_per_s" in r),
        "wall_s": wall, "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
        "torch": torch.__version__, "command": " ".join(["python -m benchmarks.gpu_pilot", *(argv or sys.argv[1:])]),
    }
    io.write_json(out / "pilot.json", record)
    print(json.dumps({k: record[k] for k in ("epochs", "mean_test_acc", "sd_test_acc", "test_acc", "wall_s",
                                             "images_per_s_per_network")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
