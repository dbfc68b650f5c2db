"""On-device batched augmentation vs a DataLoader with per-sample transforms.

Both pipelines produce the same thing from the CIFAR-10 JPEG copy: shuffled
batches of 128 images, random crop with 4 pixels of zero padding, random
horizontal flip, normalised float32 ``(B, 3, 32, 32)`` tensors.

- ``device``: ``manifold_lab.data.DeviceLoader`` over the decoded uint8
  array (decoded once and cached), crop + flip as one batched gather.
- ``per_sample_array``: the usual ``torchvision.datasets.CIFAR10`` pipeline,
  a ``torch.utils.data.DataLoader`` whose dataset holds the decoded uint8
  array and applies PIL ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``,
  ``ToTensor``, ``Normalize`` per sample (torchvision's transforms when
  importable, the same operations written out otherwise).
- ``per_sample_jpeg``: the ``ImageFolder`` pipeline, the same per-sample
  transforms after decoding each JPEG (bytes held in memory, so the
  file system is not measured).

The DataLoaders use ``--workers`` worker processes (default: all cores);
the device loader runs in the main process with torch's threads. Throughput
is images/s over ``--batches`` batches after ``--warmup`` batches (worker
start-up excluded), the median of ``--repeats`` runs.

Run from the repository root:  python benchmarks/bench_augment.py
Writes benchmarks/results/augment.json and benchmarks/results/augment.md (quoted in benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from manifold_lab.data import DeviceLoader, load_dataset
from manifold_lab.data.folder import find_cifar10_jpeg, iter_archive
from manifold_lab.io import write_json, write_text

HERE = Path(__file__).resolve().parent
PADDING = 4
TARGET_RATIO = 5.0


class PerSampleCifar(torch.utils.data.Dataset):
    """Per-sample PIL pipeline: pad 4 (zeros) + random 32x32 crop, flip p=1/2, to float, normalise."""

    def __init__(self, items, labels, mean, std, jpeg: bool):
        self.items, self.labels, self.jpeg = items, labels, jpeg
        try:
            from torchvision import transforms as T

            self.transform = T.Compose(
                [T.RandomCrop(32, padding=PADDING), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
            )
        except ImportError:
            self.transform = None
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def _transform(self, img):
        from PIL import Image, ImageOps

        img = ImageOps.expand(img, border=PADDING, fill=0)
        top, left = (int(v) for v in torch.randint(0, 2 * PADDING + 1, (2,)))
        img = img.crop((left, top, left + 32, top + 32))
        if torch.rand(()) < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
        return (x - self.mean) / self.std

    def __getitem__(self, i):
        from PIL import Image

        if self.jpeg:
            img = Image.open(io.BytesIO(self.items[i])).convert("RGB")
        else:
            img = Image.fromarray(self.items[i])
        x = self.transform(img) if self.transform is not None else self._transform(img)
        return x, int(self.labels[i])


def throughput(iterable, batches: int, warmup: int) -> float:
    it = iter(iterable)
    for _ in range(warmup):
        next(it)
    n = 0
    start = time.perf_counter()
    for _ in range(batches):
        _, y = next(it)
        n += y.numel()
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="folder holding cifar10-jpeg.tar.gz (default: $MANIFOLD_LAB_DATA, ../shared/datasets)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(HERE / "results" / "augment.json"))
    parser.add_argument("--md", default=str(HERE / "results" / "augment.md"))
    args = parser.parse_args(argv)

    data = load_dataset("cifar10_jpeg", root=args.root, cache_dir=args.cache_dir)
    source = find_cifar10_jpeg(args.root)
    if source.is_dir():
        files = sorted((source / "train").glob("*/*"))
        jpegs = [f.read_bytes() for f in files]
    else:
        jpegs = [blob for split, _, blob in iter_archive(source) if split == "train"]
    hwc = data.images.permute(0, 2, 3, 1).contiguous().numpy()
    labels = data.labels.numpy()
    assert len(jpegs) == len(labels), "archive and decoded cache disagree"

    def device_loader():
        loader = DeviceLoader(data, batch_size=args.batch_size, train=True, crop_padding=PADDING, flip=True)
        epoch = 0
        while True:  # endless, like the DataLoader iterators below over many epochs
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    def data_loader(jpeg: bool):
        ds = PerSampleCifar(jpegs if jpeg else hwc, labels, data.mean, data.std, jpeg=jpeg)
        g = torch.Generator().manual_seed(0)
        return torch.utils.data.DataLoader(
            ds, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
            generator=g, persistent_workers=False,
        )

    runs: dict[str, list[float]] = {"device": [], "per_sample_array": [], "per_sample_jpeg": []}
    for _ in range(args.repeats):
        runs["device"].append(throughput(device_loader(), args.batches * 4, args.warmup))
        runs["per_sample_array"].append(throughput(data_loader(False), args.batches, args.warmup))
        runs["per_sample_jpeg"].append(throughput(data_loader(True), args.batches, args.warmup))
    median = {k: statistics.median(v) for k, v in runs.items()}
    ratios = {
        "device_vs_per_sample_array": median["device"] / median["per_sample_array"],
        "device_vs_per_sample_jpeg": median["device"] / median["per_sample_jpeg"],
    }
    try:
        import torchvision  # noqa: F401

        baseline_transforms = "torchvision.transforms"
    except ImportError:
        baseline_transforms = "PIL, written out (torchvision not installed)"
    result = {
        "dataset": "CIFAR-10 (JPEG copy), train split, 50,000 images",
        "batch_size": args.batch_size,
        "timed_batches": {"device": args.batches * 4, "dataloader": args.batches},
        "repeats": args.repeats,
        "dataloader_workers": args.workers,
        "torch_threads": torch.get_num_threads(),
        "baseline_transforms": baseline_transforms,
        "images_per_s": {k: round(v, 1) for k, v in median.items()},
        "images_per_s_runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "ratios": {k: round(v, 2) for k, v in ratios.items()},
        "target_ratio": TARGET_RATIO,
        "meets_target": ratios["device_vs_per_sample_array"] >= TARGET_RATIO,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    write_json(args.out, result)
    rel = lambda p: os.path.relpath(p, HERE.parent)  # noqa: E731 - paths as seen from the repo root
    md = f"""## Augmentation throughput: on-device batches vs per-sample DataLoader

CIFAR-10 (JPEG copy), train split, batch {args.batch_size}, random crop (pad {PADDING}, zeros) + horizontal
flip + normalisation, float32 output. CPU ({os.cpu_count()} cores, torch {torch.__version__},
{torch.get_num_threads()} torch threads; DataLoaders with {args.workers} workers; baseline transforms:
{baseline_transforms}). Median of {args.repeats} runs.

| pipeline | images/s | device loader is |
|---|---:|---:|
| `DeviceLoader` (uint8 array resident, batched gather) | {median['device']:,.0f} | 1x |
| DataLoader, decoded array + per-sample PIL transforms (torchvision CIFAR10 style) | {median['per_sample_array']:,.0f} | {ratios['device_vs_per_sample_array']:.1f}x faster |
| DataLoader, JPEG decode + per-sample transforms (ImageFolder style) | {median['per_sample_jpeg']:,.0f} | {ratios['device_vs_per_sample_jpeg']:.1f}x faster |

Target: at least {TARGET_RATIO:.0f}x over the per-sample pipeline on the same decoded images:
{"met" if result["meets_target"] else "NOT met"}. Regenerate: `python benchmarks/bench_augment.py`
(writes `{rel(args.out)}`).
"""
    write_text(args.md, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
