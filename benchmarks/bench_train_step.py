"""MobileNetV2 training speed on CPU: our model vs a plain PyTorch implementation, and
a whole data + augmentation + step loop vs the bare step.

1. ``model``: images/s of one SGD step (batch 128, 32x32, width 1.0, the ``cifar_fast``
   strides) of ``manifold_lab.models.MobileNetV2`` against ``PlainMobileNetV2`` below, a
   straightforward ``nn.Sequential`` implementation of the same architecture (same
   parameter count, checked), timed alternately in the same process. Target >= 1.0x.
2. ``epoch``: ``--batches`` steps drawing batches from the device loader (CIFAR-10 JPEG
   copy, random crop + flip + normalisation on the fly) against the same number of
   steps on one pre-made batch. Target: within 10% (ratio <= 1.10).
3. ``variants``: the same step of our model with channels_last, bf16 autocast (CPU),
   channels_last + bf16, ``torch.compile`` and channels_last + ``torch.compile``, each a
   fresh copy of the same initial weights, as a ratio of images/s against the default
   eager step of part 1. The first step of each variant is timed on its own and left out
   (for the compiled ones it is the compile warm-up, reported as ``warmup_s``).
   ``--no-compile`` leaves the compiled variants out (each compile took 1 to 2 minutes here).

Every step of parts 1 and 3 is timed in the same rounds, one after the other (the
order rotates from round to round), so load from other jobs hits all alike; medians
over ``--repeats`` rounds of ``--steps`` steps.

    python -m benchmarks.bench_train_step [--repeats 5] [--steps 3] [--batches 8] [--no-compile]
                                          [--width 1.0] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
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
# variant name: (channels_last, bf16 autocast, torch.compile)
VARIANTS = {
    "channels_last": (True, False, False),
    "bf16": (False, True, False),
    "channels_last_bf16": (True, True, False),
    "compile": (False, False, True),
    "channels_last_compile": (True, False, True),
}


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

    def __init__(self, num_classes=10, width=1.0):
        layers, c_in = _cbr(3, make_divisible(32 * width), 3, 1), make_divisible(32 * width)
        for (t, c, n, _), s in zip(TABLE2, STRIDES):
            c = make_divisible(c * width)
            for j in range(n):
                layers.append(PlainBlock(c_in, c, s if j == 0 else 1, t))
                c_in = c
        last = make_divisible(1280 * max(1.0, width))
        layers += _cbr(c_in, last, 1, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                            nn.Linear(last, num_classes)]
        super().__init__(*layers)


def _stepper(model, x, y, bf16=False, net=None):
    """One SGD step of ``model`` (run through ``net``, e.g. its compiled form, when given)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    net = model if net is None else net

    def step(xb=x, yb=y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(xb.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            logits = net(xb)
        nn.functional.cross_entropy(logits.float(), yb).backward()
        opt.step()

    return step


def _variant(base, x, y, channels_last, bf16, compiled):
    """The step of a copy of ``base`` with the given switches (as the trainer applies them)."""
    model = copy.deepcopy(base)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return _stepper(model, x, y, bf16=bf16, net=torch.compile(model) if compiled else None)


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
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier of both models (default 1.0)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variants")
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    torch.manual_seed(0)
    ours = mobilenet_v2("cifar_fast", width_mult=args.width).train()
    plain = PlainMobileNetV2(width=args.width).train()
    assert count_parameters(ours) == count_parameters(plain)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    steps = {"eager": _stepper(ours, x, y), "plain": _stepper(plain, x, y)}
    variants = {k: v for k, v in VARIANTS.items() if not (args.no_compile and v[2])}
    steps.update({name: _variant(ours, x, y, *switches) for name, switches in variants.items()})
    warmup, errors = {}, {}
    for name, step in list(steps.items()):
        try:
            warmup[name] = _time(step, 1)  # compiles the compiled variants
            step()  # a second untimed step (a recompile would show up here, not in the rounds)
        except Exception as exc:  # noqa: BLE001 - e.g. no C++ compiler for torch.compile: report, go on
            errors[name] = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            del steps[name]
            print(f"variant {name} left out: {errors[name]}")
    times = {name: [] for name in steps}
    names = list(steps)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(_time(steps[name], args.steps))
    median = {name: statistics.median(ts) for name, ts in times.items()}
    t_ours, t_plain = times["eager"], times["plain"]
    ratio_model = statistics.median(t_plain) / statistics.median(t_ours)
    result = {
        "model_images_per_s": 128 * args.steps / statistics.median(t_ours),
        "plain_images_per_s": 128 * args.steps / statistics.median(t_plain),
        "model_vs_plain": ratio_model, "model_target": ">= 1.0",
        "variants": {
            name: {"channels_last": cl, "bf16": bf16, "compile": compiled,
                   **({"error": errors[name]} if name in errors else {
                       "images_per_s": 128 * args.steps / median[name], "vs_eager": median["eager"] / median[name],
                       "warmup_s": warmup[name]})}
            for name, (cl, bf16, compiled) in variants.items()
        },
        "variants_reference": "eager: the default step of our model (model_images_per_s), timed in the same rounds",
        "eager_first_step_s": warmup["eager"],
        "round_s": {name: ts for name, ts in times.items()},  # every round of every step, for the spread
        "compile_skipped": bool(args.no_compile),
    }
    try:
        from manifold_lab.data import DeviceLoader, load_dataset

        loader = DeviceLoader(load_dataset("cifar10_jpeg", split="train", subset=200), batch_size=128, train=True)
        epoch_times, bare_times = [], []
        for r in range(args.repeats):
            loader.set_epoch(r)
            it = iter(loader)
            epoch_times.append(_time(lambda: steps["eager"](*next(it)), args.batches))
            bare_times.append(_time(steps["eager"], args.batches))
        result.update({"epoch_vs_bare_step": statistics.median(epoch_times) / statistics.median(bare_times),
                       "epoch_target": "<= 1.10"})
    except FileNotFoundError as exc:
        result["epoch_vs_bare_step"] = None
        print(f"epoch part skipped: {exc}")
    result.update({"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                              f"{torch.get_num_threads()} threads", "load_1min": os.getloadavg()[0],
                   "load_1min_start": load_start, "threads": torch.get_num_threads(), "width": args.width,
                   "repeats": args.repeats, "steps": args.steps, "batches": args.batches})
    io.write_json(args.out, result)
    for k, v in result.items():
        if k != "variants":
            print(f"{k:>22}: {v}")
    print(f"{'variant':>22}  {'images/s':>9} {'vs eager':>8} {'first step s':>12}")
    for name, v in result["variants"].items():
        if "error" in v:
            print(f"{name:>22}  left out: {v['error']}")
        else:
            print(f"{name:>22}  {v['images_per_s']:>9.1f} {v['vs_eager']:>7.2f}x {v['warmup_s']:>12.1f}")
    return result


if __name__ == "__main__":
    main()
