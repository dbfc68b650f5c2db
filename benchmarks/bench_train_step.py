"""MobileNetV2 training speed on CPU: our model vs a plain PyTorch implementation, and
a whole data + augmentation + step loop vs the bare step.

1. ``model``: images/s of one SGD step (batch 128, 32x32, width 1.0, the ``cifar_fast``
   strides) of ``manifold_lab.models.MobileNetV2`` against ``PlainMobileNetV2`` below, a
   straightforward ``nn.Sequential`` implementation of the same architecture (same
   parameter count, checked), timed alternately in the same process. Target >= 1.0x.
2. ``epoch``: ``--batches`` steps drawing batches from the device loader (CIFAR-10 JPEG
   copy, random crop + flip + normalisation on the fly) against the same number of
   steps on one pre-made batch. Target: within 10% (ratio <= 1.10).

Medians over ``--repeats`` alternating rounds.

    python -m benchmarks.bench_train_step [--repeats 5] [--steps 3] [--batches 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch import nn

from manifold_lab import io
from manifold_lab.models import count_parameters, make_divisible, mobilenet_v2
from manifold_lab.models.mobilenetv2 import TABLE2

STRIDES = (1, 2, 2, 2, 1, 2, 1)  # cifar_fast


def _cbr(i, o, k, s, g=1):
    return [nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o), nn.ReLU6(inplace=True)]


class PlainBlock(nn.Module):
    def __init__(self, i, o, s, t):
        super().__init__()
        h = i * t
        layers = (_cbr(i, h, 1, 1) if t != 1 else []) + _cbr(h, h, 3, s, h) + [nn.Conv2d(h, o, 1, bias=False),
                                                                                  nn.BatchNorm2d(o)]
        self.body = nn.Sequential(*layers)
        self.res = s == 1 and i == o

    def forward(self, x):
        return x + self.body(x) if self.res else self.body(x)


class PlainMobileNetV2(nn.Sequential):
    """The reference: MobileNetV2 (cifar_fast strides) written out plainly."""

    def __init__(self, num_classes=10):
        layers, c_in = _cbr(3, 32, 3, 1), 32
        for (t, c, n, _), s in zip(TABLE2, STRIDES):
            c = make_divisible(c)
            for j in range(n):
                layers.append(PlainBlock(c_in, c, s if j == 0 else 1, t))
                c_in = c
        layers += _cbr(c_in, 1280, 1, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                            nn.Linear(1280, num_classes)]
        super().__init__(*layers)


def _stepper(model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(xb=x, yb=y):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()

    return step


def _time(fn, n):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ours, plain = mobilenet_v2("cifar_fast").train(), PlainMobileNetV2().train()
    assert count_parameters(ours) == count_parameters(plain)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    step_ours, step_plain = _stepper(ours, x, y), _stepper(plain, x, y)
    step_ours(), step_plain()  # warm-up
    t_ours, t_plain = [], []
    for _ in range(args.repeats):
        t_ours.append(_time(step_ours, args.steps))
        t_plain.append(_time(step_plain, args.steps))
    ratio_model = statistics.median(t_plain) / statistics.median(t_ours)
    result = {
        "model_images_per_s": 128 * args.steps / statistics.median(t_ours),
        "plain_images_per_s": 128 * args.steps / statistics.median(t_plain),
        "model_vs_plain": ratio_model, "model_target": ">= 1.0",
    }
    try:
        from manifold_lab.data import DeviceLoader, load_dataset

        loader = DeviceLoader(load_dataset("cifar10_jpeg", split="train", subset=200), batch_size=128, train=True)
        epoch_times, bare_times = [], []
        for r in range(args.repeats):
            loader.set_epoch(r)
            it = iter(loader)
            epoch_times.append(_time(lambda: step_ours(*next(it)), args.batches))
            bare_times.append(_time(step_ours, args.batches))
        result.update({"epoch_vs_bare_step": statistics.median(epoch_times) / statistics.median(bare_times),
                       "epoch_target": "<= 1.10"})
    except FileNotFoundError as exc:
        result["epoch_vs_bare_step"] = None
        print(f"epoch part skipped: {exc}")
    result.update({"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                              f"{torch.get_num_threads()} threads", "load_1min": os.getloadavg()[0],
                   "repeats": args.repeats, "steps": args.steps, "batches": args.batches})
    io.write_json(args.out, result)
    for k, v in result.items():
        print(f"{k:>22}: {v}")
    return result


if __name__ == "__main__":
    main()
