"""Table 3 of the paper: the largest tensor that must be materialized at each resolution.

Computed from the model definitions with forward hooks on one 224 x 224 image.
A network is read as a chain of *operators*; the tensors between operators are
the ones that must be materialized (stored whole), the tensors inside an
operator need not be (section 5.1):

- MobileNetV1: every layer is an operator (stem conv, then the depthwise and the
  pointwise conv of each of the 13 blocks, the average pool, the classifier), so
  the input and output of every layer are materialized.
- MobileNetV2: every bottleneck block is one operator (its expanded ``t k``
  tensor need not be materialized, section 5.1), plus the stem, the last 1x1
  conv, the pool and the classifier. With ``fuse_v2=True`` (the paper's
  convention, Table 3 caption) the section-5 trick is also applied to the first
  layer (stem conv + the t = 1 block: the 32-channel 112 x 112 stem output is
  never stored) and the last 1x1 conv is fused with the average pool (the
  1280-channel 7 x 7 tensor is reduced as it is produced).

For each spatial size ``r`` (``1`` for vectors) we report the largest single
materialized tensor (channels, and kB at 16 bits: ``channels * r^2 * 2 / 1000``;
the paper's numbers fit 1 kB = 1000 bytes) and the largest ``input + output`` of
one operator whose input is at ``r`` (the quantity section 5.1 bounds memory by).

``write_table3(out_dir)`` writes ``table3.md`` and ``table3.csv``; the command is
``manifold-lab models --table3``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from manifold_lab.models.layers import evaluating

#: The paper's Table 3 (PAPER.md section 4): size -> (channels, kB); "max" is the peak in kB.
PAPER_TABLE3 = {
    "MobileNetV1": {112: (64, 1600), 56: (128, 800), 28: (256, 400), 14: (512, 200), 7: (1024, 199),
                    1: (1024, 2), "max": 1600},
    "MobileNetV2": {112: (16, 400), 56: (32, 200), 28: (64, 100), 14: (160, 62), 7: (320, 32),
                    1: (1280, 2), "max": 400},
}

#: Why a computed row differs from the paper (shown only for rows that do differ).
NOTES = {
    ("MobileNetV1", 7): "the paper's 199 kB is two 1024 x 7 x 7 tensors (input + output of the last "
                        "pointwise conv, our in+out column); one such tensor is 100 kB",
    ("MobileNetV2", 56): "no 32-channel tensor exists at 56 in Table 2: the 56 x 56 stage has c = 24. The paper "
                         "lists c of the stage that *starts* from 56 (its output is 28 x 28), an apparent one-stage "
                         "shift (32 x 56^2 x 2 B = 200 kB)",
    ("MobileNetV2", 28): "the 28 x 28 stage has c = 32; the paper's 64 is the next stage's width (or in+out of a "
                         "32 -> 32 block: 2 x 32 x 28^2 x 2 B = 100 kB, our in+out column)",
    ("MobileNetV2", 14): "the 14 x 14 stages have c = 64 and 96; the paper's 160 is the width of the stage that "
                         "starts from 14 (its output is 7 x 7)",
    ("MobileNetV2, no fusion", 112): "without the paper's first-layer trick the 32-channel stem output "
                                     "(32 x 112^2 x 2 B = 803 kB) must be stored",
    ("MobileNetV2, no fusion", 7): "without fusing the last 1x1 conv into the pool, its 1280 x 7 x 7 "
                                   "output (125 kB) is stored",
    ("MobileNetV2, no fusion", "max"): "the stem output at 112 sets the peak",
}


def _spans(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
    """Operators of ``model`` as ``(name, first module, last module)``: input of the first, output of the last."""
    from manifold_lab.models.mobilenetv1 import DepthwiseSeparable, MobileNetV1
    from manifold_lab.models.mobilenetv2 import MobileNetV2

    spans = []
    if isinstance(model, MobileNetV1):
        for i, layer in enumerate(model.features):
            if isinstance(layer, DepthwiseSeparable):
                spans += [(f"features.{i}.dw", layer.conv_dw, layer.act1), (f"features.{i}.pw", layer.conv_pw, layer.act2)]
            else:
                spans.append((f"features.{i}", layer, layer))
    elif isinstance(model, MobileNetV2):
        spans = [(f"features.{i}", layer, layer) for i, layer in enumerate(model.features)]
    else:
        raise ValueError(f"model must be a MobileNetV1 or MobileNetV2, got {type(model).__name__}")
    return spans + [("pool", model.pool, model.pool), ("classifier", model.classifier[1], model.classifier[1])]


def operator_shapes(model: nn.Module, size: int = 224) -> list[tuple[str, tuple, tuple]]:
    """``(name, input shape, output shape)`` of every operator in forward order, batch dimension dropped.

    Shapes are ``(C, H, W)`` for feature maps and ``(C,)`` for vectors (pool output, logits).
    """
    spans = _spans(model)
    seen: dict[str, list] = {name: [None, None] for name, _, _ in spans}
    handles = []
    for name, first, last in spans:
        handles.append(first.register_forward_pre_hook(
            lambda m, args, name=name: seen[name].__setitem__(0, tuple(args[0].shape[1:]))))
        handles.append(last.register_forward_hook(
            lambda m, args, out, name=name: seen[name].__setitem__(1, tuple(out.shape[1:]))))
    with evaluating(model, handles), torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return [(name, tuple(seen[name][0]), tuple(seen[name][1])) for name, _, _ in spans]


def _res(shape: tuple) -> int:
    return shape[1] if len(shape) == 3 else 1


def _kb16(shape: tuple) -> float:
    return math.prod(shape) * 2 / 1000


def memory_by_resolution(ops: list[tuple[str, tuple, tuple]], fused=()) -> dict:
    """Largest materialized tensor and largest operator in+out per resolution.

    ``ops`` from ``operator_shapes``; ``fused``: operators whose output is not materialized (merged
    into the next operator). Returns ``{r: {"channels": C, "kb": kB of the largest tensor at r,
    "inout_kb": largest in+out kB of an operator whose input is at r}}`` plus ``"max": {"kb", "inout_kb"}``.
    """
    # the network input, then the output of every operator after fusion (the next one's input)
    tensors = [ops[0][1]] + [out for name, _, out in ops if name not in fused]
    rows: dict = {}
    for shape in tensors:
        row = rows.setdefault(_res(shape), {"channels": 0, "kb": 0.0, "inout_kb": 0.0})
        if _kb16(shape) > row["kb"]:
            row["channels"], row["kb"] = shape[0], _kb16(shape)
    for inp, out in zip(tensors, tensors[1:]):
        row = rows[_res(inp)]
        row["inout_kb"] = max(row["inout_kb"], _kb16(inp) + _kb16(out))
    rows["max"] = {"kb": max(r["kb"] for r in rows.values()), "inout_kb": max(r["inout_kb"] for r in rows.values())}
    return rows


def table3_rows(size: int = 224) -> list[dict]:
    """The comparison rows: MobileNetV1, MobileNetV2 (paper's fusions) and MobileNetV2 without fusion."""
    from manifold_lab.models.mobilenetv1 import MobileNetV1
    from manifold_lab.models.mobilenetv2 import MobileNetV2

    v2 = MobileNetV2()
    v2_ops = operator_shapes(v2, size)
    head = f"features.{len(v2.features) - 1}"
    variants = [
        ("MobileNetV1", "MobileNetV1", memory_by_resolution(operator_shapes(MobileNetV1(), size))),
        ("MobileNetV2", "MobileNetV2", memory_by_resolution(v2_ops, fused={"features.0", head})),
        ("MobileNetV2, no fusion", "MobileNetV2", memory_by_resolution(v2_ops)),
    ]
    out = []
    for label, paper_key, rows in variants:
        paper = PAPER_TABLE3[paper_key]
        for k in sorted((k for k in rows if k != "max"), reverse=True) + ["max"]:
            r = rows[k]
            p_ch, p_kb = (None, paper["max"]) if k == "max" else paper.get(k, (None, None))
            # None: the paper has no row for this size (224, the input image); "max" compares kB only
            agree = None if p_kb is None else ((k == "max" or r["channels"] == p_ch)
                                               and abs(r["kb"] - p_kb) <= max(1.0, 0.03 * p_kb))
            out.append({
                "model": label, "size": k, "channels": r.get("channels", ""), "kb": round(r["kb"], 1),
                "inout_kb": round(r["inout_kb"], 1), "paper_channels": "" if p_ch is None else p_ch,
                "paper_kb": "" if p_kb is None else p_kb, "agrees": agree,
                "note": ("the input image; the paper lists no 224 row" if agree is None else "" if agree
                         else NOTES.get((label, k)) or NOTES[(paper_key, k)]),
            })
    return out


def write_table3(out_dir: str | Path, size: int = 224) -> tuple[Path, Path]:
    """Write ``table3.md`` and ``table3.csv`` into ``out_dir``; returns their paths."""
    from manifold_lab import io

    rows = table3_rows(size)
    out_dir = Path(out_dir)
    csv_path = out_dir / "table3.csv"
    io.write_text(csv_path, io.csv_text(rows, list(rows[0])))
    lines = [
        "# Table 3: largest tensor materialized at each resolution",
        "",
        "Regenerate: `manifold-lab models --table3` (code: `manifold_lab/models/table3.py`).",
        "",
        f"Computed with forward hooks on one {size} x {size} image. *ours* = the largest single tensor that must",
        "be stored at that resolution (channels / kB at 16 bits, 1 kB = 1000 bytes); *in+out* = the largest",
        "input + output of one operator reading that resolution (section 5.1's memory bound). MobileNetV1: every",
        "layer's input and output are stored. MobileNetV2: block inputs/outputs only (the expanded tensor need",
        "not be materialized); the *MobileNetV2* rows also apply the paper's first-layer trick and fuse the last",
        "1x1 conv into the pool; *no fusion* does neither. Agreement: same channels and kB within max(1 kB, 3%).",
        "",
        "| model | size | ours ch | ours kB | in+out kB | paper ch | paper kB | agrees | why it differs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['size']} | {r['channels']} | {r['kb']} | {r['inout_kb']} | "
                     f"{r['paper_channels']} | {r['paper_kb']} | {'-' if r['agrees'] is None else 'yes' if r['agrees'] else 'no'} | {r['note']} |")
    md_path = out_dir / "table3.md"
    io.write_text(md_path, "\n".join(lines) + "\n")
    return md_path, csv_path
