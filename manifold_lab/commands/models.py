"""``manifold-lab models``: parameters and multiply-adds of the model presets; ``--table3`` writes Table 3."""

from __future__ import annotations

HELP = ("parameters, MACs and shortcut counts (bottleneck / expansion / sandglass arm) of the MobileNetV2 presets "
        "(and MobileNetV1); "
        "--table3 writes the Table 3 comparison")


def add_arguments(p) -> None:
    p.add_argument("--preset", default=None,
                   help="one MobileNetV2 preset (imagenet, cifar, cifar_fast); default: all, plus MobileNetV1")
    p.add_argument("--width", type=float, default=None, help="width multiplier (default: the preset's)")
    p.add_argument("--bottleneck-mult", type=float, default=None,
                   help="narrow only the bottlenecks by this factor in (0, 1] (MobileNetV2; default 1)")
    p.add_argument("--resolution", type=int, default=None,
                   help="input size in pixels (default: 224 for imagenet / MobileNetV1, 32 for the CIFAR presets)")
    p.add_argument("--table3", action="store_true", help="write the Table 3 comparison (table3.md, table3.csv)")
    p.add_argument("--out", default="runs/table3", help="output folder of --table3 (default runs/table3, ignored "
                   "by git; the committed copy: --out results/table3)")


def run(args) -> int:
    import math

    from manifold_lab.models import PRESETS, check_resolution, count_macs, count_parameters, mobilenet_v2
    from manifold_lab.models.mobilenetv1 import MobileNetV1
    from manifold_lab.train.config import MAX_IMAGE_SIZE, MAX_WIDTH_MULT

    if args.table3:
        from manifold_lab.models.table3 import write_table3

        md, csv_path = write_table3(args.out)
        print(f"wrote {md} and {csv_path}")
        return 0
    if args.preset is not None and args.preset not in PRESETS:
        raise ValueError(f"--preset {args.preset!r} is not one of {', '.join(PRESETS)}")
    if args.width is not None and not (math.isfinite(args.width) and 0 < args.width <= MAX_WIDTH_MULT):
        raise ValueError(f"--width must be a number > 0 and <= {MAX_WIDTH_MULT:g} (e.g. 0.35, 1.4), got {args.width}")
    if args.resolution is not None and not 1 <= args.resolution <= MAX_IMAGE_SIZE:
        raise ValueError(f"--resolution must be >= 1 and <= {MAX_IMAGE_SIZE} pixels, got {args.resolution}")
    if args.bottleneck_mult is not None and not (math.isfinite(args.bottleneck_mult)
                                                 and 0 < args.bottleneck_mult <= 1):
        raise ValueError(f"--bottleneck-mult must be in (0, 1] (e.g. 0.5, 0.25), got {args.bottleneck_mult}")
    overrides = {} if args.width is None else {"width_mult": args.width}
    v2 = {**overrides, **({} if args.bottleneck_mult is None else {"bottleneck_mult": args.bottleneck_mult})}
    entries = [(f"mobilenet_v2/{name}", mobilenet_v2(name, **v2), args.resolution or (32 if "cifar" in name else 224))
               for name in ([args.preset] if args.preset else PRESETS)]
    if args.preset is None:
        entries.append(("mobilenet_v1", MobileNetV1(**overrides), args.resolution or 224))
    for _, model, size in entries:  # every problem before the first line of the table
        model.check_resolution(size) if hasattr(model, "check_resolution") else check_resolution(model, size)
    # shortcuts: residual additions of the bottleneck / expansion / sandglass arm of Figure 6b (MobileNetV2 only)
    print(f"{'model':<24} {'width':>5} {'classes':>7} {'input':>7} {'shortcuts (bottleneck/expansion/sandglass)':>43} "
          f"{'params':>11} {'MACs':>14}")
    for label, model, size in entries:
        macs = count_macs(model, (1, 3, size, size))
        classes = model.classifier[-1].out_features
        shortcuts = "-"
        if label.startswith("mobilenet_v2/"):
            arms = [mobilenet_v2(label.split("/", 1)[1], shortcut=s, **v2) for s in ("expansion", "sandglass")]
            shortcuts = "/".join(str(m.num_shortcuts) for m in (model, *arms))
        print(f"{label:<24} {args.width or 1.0:>5g} {classes:>7} {size:>4}^2 {shortcuts:>43} "
              f"{count_parameters(model):>11,} {macs / 1e6:>13.2f}M")
    return 0
