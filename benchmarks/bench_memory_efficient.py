"""Memory-efficient inference (paper section 5.1): peak activation memory and time per image vs t'.

MobileNetV2 (width 1.0, 1000 classes, eval mode, no_grad), one 224 x 224 image.
``standard`` is the plain module forward (conv, BN, ReLU6 as separate tensors);
``t'`` runs every block through ``manifold_lab.models.memory_efficient`` with
``t'`` channel groups (BN folded, in-place activations; ``t' = 1`` = one group).

What is measured
----------------
- *peak live tensor bytes*: a ``TorchDispatchMode`` sees every aten op of the
  forward; each op output whose storage is new (not a view of, or in place on,
  an input) is counted from its creation until a weak reference on its storage
  fires. The peak is over the forward, relative to what existed before it
  (weights and the input image are not counted). Scratch buffers that a kernel
  allocates and frees internally (e.g. oneDNN workspaces) are not op outputs
  and are not seen. This is fp32; halve it for the paper's 16 bits.
- *analytic*: the ideal live set from the shapes alone (every BN folded, every
  activation in place): per block ``|x| + max(|e| + |d|, |d| + |y|)`` for one
  group (``e`` expanded, ``d`` depthwise output, ``y`` output) and
  ``|x| + max(|y| + |e_g| + |d_g|, |d_g| + 2 |y|)`` for groups of
  ``ceil(t k / t')`` channels (accumulator + one group's projection); the stem
  and the last 1x1 conv count ``|input| + |output|``.
- *time per image*: median wall time of the forward over ``--repeats`` rounds,
  every ``t'`` timed in each round (interleaved, so load from other jobs hits all
  alike), ``--threads`` intra-op threads. The ratio to the standard forward is the figure.

    python -m benchmarks.bench_memory_efficient [--t-primes 1,2,3,4,5,6] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import os
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from benchmarks.bench_collapsed import machine, median_times
from manifold_lab import io
from manifold_lab.models import InvertedResidual, MobileNetV2


class LiveTensorMeter(TorchDispatchMode):
    """Current and peak bytes of the tensor storages created by aten ops inside the mode."""

    def __init__(self):
        super().__init__()
        self.current = self.peak = 0
        self._live: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self._live.discard(key)
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in inputs or key in self._live or storage.nbytes() == 0:
                continue  # a view or an in-place result: no new memory
            self._live.add(key)
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._release, key, storage.nbytes())
        return out


def _forward(model: MobileNetV2, x: torch.Tensor, t_prime: int | None):
    """One inference forward; ``t_prime=None`` is the standard module forward."""
    with torch.no_grad():
        if t_prime is None:
            return model(x)
        with model.memory_efficient(t_prime):
            return model(x)


def measured_peak(model: MobileNetV2, x: torch.Tensor, t_prime: int | None) -> int:
    """Peak live tensor bytes of one forward (see the module docstring)."""
    with LiveTensorMeter() as meter:
        _forward(model, x, t_prime)
    return meter.peak


def analytic_peak(model: MobileNetV2, size: int, t_prime: int | None, bytes_per_value: int = 4) -> int:
    """Largest sum of live tensors over the blocks (module docstring), from the shapes alone, batch 1."""
    hw = size // model.stem_stride
    peak = 3 * size * size + model.features[0].conv.out_channels * hw * hw
    for block in model.features:
        if not isinstance(block, InvertedResidual):
            continue
        hw_out = hw // block.stride
        x, y = block.inp * hw * hw, block.oup * hw_out * hw_out
        if t_prime in (None, 1):
            e, d = block.hidden * hw * hw, block.hidden * hw_out * hw_out
            if not hasattr(block.conv_pw, "weight"):
                e = 0  # t = 1: the input is the 'expanded' tensor
            live = x + max(e + d, d + y)
        else:
            g = math.ceil(block.hidden / t_prime)
            e_g = 0 if not hasattr(block.conv_pw, "weight") else g * hw * hw
            d_g = g * hw_out * hw_out
            live = x + max(y + e_g + d_g, d_g + 2 * y)
        peak = max(peak, live)
        hw = hw_out
    head = model.features[-1].conv.out_channels
    peak = max(peak, model.features[-1].conv.in_channels * hw * hw + head * hw * hw)
    return peak * bytes_per_value


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    standard = result["rows"][0]
    rows = result["rows"][1:]
    tp = [r["t_prime"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax1.plot(tp, [r["measured_peak_mb"] for r in rows], "o-", label="measured (live tensors)")
    ax1.plot(tp, [r["analytic_peak_mb"] for r in rows], "s--", label="analytic (ideal live set)")
    ax1.axhline(standard["measured_peak_mb"], color="C0", ls=":", label="standard forward (measured)")
    ax1.set(xlabel="t' (channel groups)", ylabel="peak activation memory, fp32 (MB)", ylim=(0, None))
    ax1.legend()
    ax2.plot(tp, [r["time_ratio"] for r in rows], "o-", color="C3")
    ax2.axhline(1.0, color="gray", lw=0.8, label="standard forward")
    ax2.set(xlabel="t' (channel groups)", ylabel="time per image / standard forward")
    ax2.legend()
    fig.suptitle(f"MobileNetV2 1.0, {result['size']}x{result['size']}, batch 1, CPU ({result['threads']} thread(s))")
    fig.tight_layout()
    io.savefig(fig, path)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t-primes", default="1,2,3,4,5,6")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/memory_efficient.json")
    args = parser.parse_args(argv)
    t_primes = [int(t) for t in args.t_primes.split(",")]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MobileNetV2().eval()
    x = torch.randn(1, 3, args.size, args.size)

    variants = [None] + t_primes  # None: the standard module forward, the reference
    times = median_times([lambda t=t: _forward(model, x, t) for t in variants], args.repeats)
    rows = []
    for t, seconds in zip(variants, times):
        measured, bound = measured_peak(model, x, t), analytic_peak(model, args.size, t)
        rows.append({"t_prime": "standard" if t is None else t, "measured_peak_mb": measured / 1e6,
                     "analytic_peak_mb": bound / 1e6, "time_ms": seconds * 1e3, "time_ratio": seconds / times[0]})
    result = {
        "benchmark": "memory-efficient inverted residual (section 5.1): peak live tensor bytes and time vs t'",
        "size": args.size, "batch": 1, "threads": args.threads, "repeats": args.repeats, "rows": rows,
        "machine": f"{machine()}, torch {torch.__version__}", "load_average_1min": os.getloadavg()[0],
    }
    out = Path(args.out)
    io.write_json(out, result)
    plot(result, out.with_suffix(".png"))
    print(f"{'t_prime':>8} {'measured MB':>11} {'analytic MB':>11} {'ms/image':>9} {'time ratio':>10}")
    for r in rows:
        print(f"{r['t_prime']:>8} {r['measured_peak_mb']:>11.2f} {r['analytic_peak_mb']:>11.2f} "
              f"{r['time_ms']:>9.1f} {r['time_ratio']:>10.2f}")
    print(f"-> {out} and {out.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
