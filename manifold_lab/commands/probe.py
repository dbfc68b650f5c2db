"""``manifold-lab probe``: the information-loss probe of trained MobileNetV2s (``manifold_lab.probe``)."""

from __future__ import annotations

HELP = ("Information lost at every bottleneck of trained MobileNetV2s: activation, Lemma 2, "
        "decoders, geometry (CSV, JSON, PNG)")


def add_arguments(p) -> None:
    p.add_argument("sources", nargs="+", metavar="RUN_DIR|CHECKPOINT",
                   help="run folders (with checkpoint.pt) or checkpoint files; give a linear and a ReLU6 run "
                        "to see them side by side")
    p.add_argument("--images", type=int, default=500,
                   help="class-balanced test images (images // classes per class; default 500)")
    p.add_argument("--positions", type=int, default=2000,
                   help="positions sampled per block for the activation, Lemma-2 and decoder measures (default 2000)")
    p.add_argument("--step0", action="store_true", help="also probe each network at step 0 (rebuilt from its config and seed)")
    p.add_argument("--no-knn", action="store_true", help="skip the k-NN decoder (the ridge decoder always runs)")
    p.add_argument("--resamples", type=int, default=5, help="TwoNN resamples (random halves; default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draw, positions and splits (default 0)")
    p.add_argument("--data-root", default=None,
                   help="where the test images are (default: $MANIFOLD_LAB_DATA, then ../shared/datasets); the "
                        "checkpoint names the dataset, never its folder")
    p.add_argument("--cache-dir", default=None, help="decoded-image cache (default: $MANIFOLD_LAB_CACHE, ~/.cache)")
    p.add_argument("--out", default="runs/probe", help="output folder (default runs/probe)")


def run(args) -> int:
    import platform
    import sys
    from datetime import datetime, timezone

    from manifold_lab import __version__
    from manifold_lab.execution.provenance import redact
    from manifold_lab.probe.images import probe_images
    from manifold_lab.probe.network import check_sizes, probe_network, probe_summary
    from manifold_lab.probe.output import write_probe
    from manifold_lab.probe.sources import load_source, user_data

    check_sizes(args.images, args.positions)
    if args.resamples < 1 or args.resamples > 100:
        raise ValueError(f"--resamples must be in 1..100, got {args.resamples}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    import torch

    sources = [load_source(s) for s in args.sources]  # every source is checked before any work
    data = {s.config.data.model_dump_json(exclude={"batch_size", "eval_batch_size", "num_workers", "subset",
                                                   "eval_subset", "augment"}) for s in sources}
    if len(data) > 1:
        raise ValueError("the sources were trained on different data; probe them separately")
    data_cfg = user_data(sources[0].config, root=args.data_root, cache_dir=args.cache_dir)
    images, histogram = probe_images(data_cfg, args.images, random_state=args.seed)
    results = []
    for src in sources:
        stages = (("step0", src.initial), ("trained", src.trained)) if args.step0 else (("trained", src.trained),)
        for stage, build in stages:
            with torch.no_grad():
                records = probe_network(build(), images, positions=args.positions, knn=not args.no_knn,
                                        n_resamples=args.resamples, random_state=args.seed)
            results.append({"label": src.label, "stage": stage, "source": str(src.path), "epoch": src.epoch,
                            "records": records})
            s = probe_summary(records)
            print(f"{src.label} ({stage}): R^2 input {s['r2_input_linear_mean']:.3f}, TwoNN {s['twonn_mean']:.1f}, "
                  f"Lemma 2 fails {s['lemma2_failure_mean']:.4f}, zeroed {s['zeroed_mean']:.3f}")
    meta = {"images": len(images), "class_histogram": {str(k): v for k, v in histogram.items()},
            "positions_per_block": args.positions, "knn": not args.no_knn, "twonn_resamples": args.resamples,
            "seed": args.seed, "data": data_cfg.model_dump(mode="json"),
            "provenance": {"command": redact(" ".join(["manifold-lab probe", *sys.argv[2:]])
                                             if sys.argv[1:2] == ["probe"] else "manifold-lab probe"),
                           "manifold_lab": __version__, "torch": torch.__version__,
                           "python": platform.python_version(),
                           "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}}
    paths = write_probe(args.out, results, meta)
    print(f"wrote {paths['csv']} (+ probe.json, probe.png)")
    return 0
