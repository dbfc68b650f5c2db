"""``manifold-lab evaluate``: the accuracy of a trained checkpoint on a chosen split (timm's ``validate.py``)."""

from __future__ import annotations

HELP = "Test (or train) accuracy and loss of a trained checkpoint, with the trainer's data pipeline"


def add_arguments(p) -> None:
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT", help="a run folder (with checkpoint.pt) or a checkpoint file")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="the whole split, without augmentation (default test)")
    p.add_argument("--data-root", default=None,
                   help="where the images are (default: $MANIFOLD_LAB_DATA, then ../shared/datasets); the checkpoint "
                        "names the dataset, never its folder")
    p.add_argument("--cache-dir", default=None, help="decoded-image cache (default: $MANIFOLD_LAB_CACHE, ~/.cache)")
    p.add_argument("--batch-size", type=int, default=500, help="images per forward pass (default 500)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a line")


def run(args) -> int:
    import json

    from manifold_lab.data import build_loaders
    from manifold_lab.kinds.mobilenetv2 import check_device
    from manifold_lab.probe.sources import load_source, user_data
    from manifold_lab.train import distributed
    from manifold_lab.train.trainer import evaluate

    if not 1 <= args.batch_size <= 100_000:
        raise ValueError(f"--batch-size must be in 1..100000, got {args.batch_size}")
    check_device(args.device)
    src = load_source(args.source)
    data_cfg = user_data(src.config, root=args.data_root, cache_dir=args.cache_dir)
    data_cfg = data_cfg.model_copy(update={"batch_size": args.batch_size, "eval_batch_size": args.batch_size})
    device = distributed.pick_device(args.device, 0)
    train_loader, test_loader, num_classes, _ = build_loaders(data_cfg.model_dump(), device=device)
    if num_classes != src.num_classes:
        raise ValueError(f"{src.path} has {src.num_classes} outputs but {data_cfg.name} has {num_classes} classes")
    loader = test_loader
    if args.split == "train":  # the whole train split in a fixed order, no augmentation
        from manifold_lab.data.loader import DeviceLoader

        loader = DeviceLoader(_as_data(train_loader), batch_size=args.batch_size, train=False, device=device)
    model = src.trained().to(device)
    loss, acc = evaluate(model, loader, src.config, distributed.Dist(0, 1, 0, device))
    record = {"source": str(src.path), "split": args.split, "images": len(loader.labels), "accuracy": acc,
              "loss": loss, "epoch": src.epoch, "seed": src.seed, "dataset": data_cfg.name}
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{src.label} (epoch {src.epoch}) on the {args.split} split of {data_cfg.name}: accuracy "
              f"{100 * acc:.2f}% ({len(loader.labels):,} images), loss {loss:.4f}")
    return 0


def _as_data(loader):
    from manifold_lab.data.base import make_image_data

    return make_image_data(loader.images.cpu(), loader.labels.cpu(), loader.classes, loader.mean, loader.std)
