"""The information-loss probe (``manifold-lab probe``) on one width-0.5 CIFAR MobileNetV2.

``manifold_lab.probe.probe_network`` with the command's defaults (500
class-balanced images, 2000 positions per block, ridge and k-NN decoders,
5 TwoNN resamples) on the ``cifar_fast`` network at width 0.5
(``configs/model/cifar_fast.yaml``, random weights: the time does not depend on
training) and 500 random 32 x 32 images. The reference, timed in the same
rounds just before it, is the plain forward pass of the network over the same
images: the ratio says how many forward passes a probe costs. Target (issue
12): well under a minute on 2 cores.

    python -m benchmarks.bench_probe [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from benchmarks.bench_collapsed import machine, save_and_print


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the 2 cores)")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--out", default="benchmarks/results/probe.json")
    args = parser.parse_args(argv)
    from manifold_lab.models import mobilenet_v2
    from manifold_lab.probe import probe_network

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = mobilenet_v2("cifar_fast", width_mult=0.5).eval()
    images = torch.randn(args.images, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def forward():
        with torch.no_grad():
            for start in range(0, len(images), 100):
                model(images[start:start + 100])

    def probe():
        return probe_network(model, images, positions=args.positions)

    forward(), probe()  # warm-up (imports, allocator)
    ref, ours = [], []
    for _ in range(args.repeats):
        for fn, ts in ((forward, ref), (probe, ours)):
            start = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - start)
    ref_s, probe_s = float(np.median(ref)), float(np.median(ours))
    result = {
        "benchmark": "probe_network vs forward pass, cifar_fast width 0.5", "images": args.images,
        "positions": args.positions, "blocks": 17, "knn": True, "twonn_resamples": 5, "repeats": args.repeats,
        "torch_threads": args.threads, "forward_median_s": ref_s, "probe_median_s": probe_s,
        "probe_round_s": ours, "ratio": probe_s / ref_s, "target": "<= 60 s", "machine": machine(),
        "load_average_1min": os.getloadavg()[0],
    }
    return save_and_print(args.out, result, [
        f"forward pass      {ref_s:8.2f} s (median of {args.repeats}, {args.images} images)",
        f"probe             {probe_s:8.2f} s  ({probe_s / ref_s:.1f}x the forward pass; target well under 60 s)",
        f"-> {args.out}"])


if __name__ == "__main__":
    main()
