"""``probe_network``: the per-block records of one network; ``probe_summary``: a few numbers per network.

``probe_network(model, images)`` captures every block (``manifold_lab.probe.capture``)
and measures it (``manifold_lab.probe.measures``). Work and memory are
bounded by ``positions`` per block (default 2000), the number of images
(at most ``images.MAX_IMAGES``) and ``max_features`` per image.
"""

from __future__ import annotations

import numpy as np

from manifold_lab._checks import check_int
from manifold_lab.probe.capture import capture_blocks, folded_expansion
from manifold_lab.probe.images import MAX_IMAGES
from manifold_lab.probe.measures import block_measures

#: The most positions per block the probe accepts (decoders and ranks grow with them).
MAX_POSITIONS = 100_000

#: ``probe_summary`` keys: the mean over blocks of the record key of the same meaning. (``r2_pre_linear``
#: stays in the per-block records only: with a bottleneck shortcut the output is ``x + act``, which mixes
#: the input into it, so its mean over blocks is no clean loss measure; ``r2_branch_linear`` decodes ``pre``
#: from ``act`` itself, so a dead branch counts as lost there.)
SUMMARY_KEYS = {
    "r2_input_linear_mean": "r2_input_linear",
    "twonn_mean": "twonn_mean",
    "rankme_mean": "rankme",
    "lemma2_failure_mean": "lemma2_failure_fraction",
    "zeroed_mean": "zeroed_fraction",
    "below_id_mean": "below_id_fraction",
    "r2_branch_linear_mean": "r2_branch_linear",
}

#: Summary keys present only when some block has the measure (the probe was given labels): 0 would read as
#: a measured accuracy of 0.
LABEL_SUMMARY_KEYS = {"label_accuracy_mean": "label_accuracy"}


#: The probe every ``mobilenetv2`` run records at step 0 and at the end (bounded: a few seconds on 2 cores).
RUN_PROBE = {"images": 100, "positions": 256, "knn": False, "n_resamples": 3}


def run_probe(model, images, labels, *, transform=None) -> dict:
    """The per-run probe of the trainer: ``{"images", "class_histogram", "records", "summary"}``.

    A class-balanced draw (seed 0) of at most ``RUN_PROBE["images"]`` of the
    given ``images`` (N, C, H, W) with ``labels`` (N,), as many per class as the
    rarest class allows, passed through ``transform`` (e.g. a loader's
    ``normalize`` of uint8 images) when given; ``RUN_PROBE`` positions per
    block, ridge decoder only, and the label probe on the drawn images.
    """
    import torch

    from manifold_lab.probe.images import balanced_indices

    labels = np.asarray(labels).ravel()
    _, counts = np.unique(labels, return_counts=True)
    n = int(min(RUN_PROBE["images"], counts.min() * len(counts)))
    idx, histogram = balanced_indices(labels, n, random_state=0)
    x = images[torch.as_tensor(idx, device=images.device)]
    x = transform(x) if transform is not None else x
    records = probe_network(model, x, positions=RUN_PROBE["positions"], knn=RUN_PROBE["knn"],
                            n_resamples=RUN_PROBE["n_resamples"], random_state=0, labels=labels[idx])
    return {"images": len(idx), "class_histogram": {str(k): v for k, v in histogram.items()},
            "records": records, "summary": probe_summary(records)}


def check_sizes(n_images: int, positions: int) -> None:
    """``ValueError`` (one line, naming the bound) for an image count or position count out of range."""
    check_int(n_images, "images", minimum=1, maximum=MAX_IMAGES)
    check_int(positions, "positions", minimum=8, maximum=MAX_POSITIONS)


def probe_network(model, images, *, positions: int = 2000, knn: bool = True, n_resamples: int = 5,
                  batch_size: int = 100, max_features: int = 8192, random_state: int = 0,
                  labels=None) -> list[dict]:
    """One record per inverted-residual block of ``model`` on ``images`` (N, C, H, W), in forward order.

    Each record has ``block`` (its index), ``name``, the block's shape
    (``inp, hidden, oup, stride, residual``), its activations and every key of
    ``manifold_lab.probe.measures``; ``label_accuracy`` too when ``labels`` (N,)
    of the images are given.
    """
    check_sizes(len(images), positions)
    if labels is not None:
        labels = np.asarray(labels).ravel()
        if len(labels) != len(images):
            raise ValueError(f"labels must have one entry per image ({len(images)}), got {len(labels)}")
    records = []
    named = dict(model.named_modules())
    for i, s in enumerate(capture_blocks(model, images, positions=positions, batch_size=batch_size,
                                         max_features=max_features, random_state=random_state)):
        W, b = folded_expansion(named[s.name]) or (None, None)
        rec = {"block": i, "name": s.name, "inp": s.inp, "hidden": s.hidden, "oup": s.oup, "stride": s.stride,
               "residual": s.residual, "expand_act": s.expand_act, "bottleneck_act": s.bottleneck_act}
        rec.update(block_measures(x=s.x, pre=s.pre, act=s.act, out=s.out, rep=s.rep, W=W, b=b,
                                  expand_act=s.expand_act, bottleneck_act=s.bottleneck_act, knn=knn,
                                  n_resamples=n_resamples, random_state=random_state, labels=labels))
        records.append(rec)
    return records


def probe_summary(records: list[dict]) -> dict[str, float]:
    """The mean over blocks of each ``SUMMARY_KEYS`` measure (blocks where it is undefined left out; 0 if none),
    and of each ``LABEL_SUMMARY_KEYS`` measure that some block has (left out otherwise)."""
    means = {key: _block_mean(records, field) for key, field in {**SUMMARY_KEYS, **LABEL_SUMMARY_KEYS}.items()}
    return {key: 0.0 if value is None else value for key, value in means.items()
            if value is not None or key in SUMMARY_KEYS}


def _block_mean(records: list[dict], field: str) -> float | None:
    """The mean of ``field`` over the blocks where it is defined; None where none is."""
    values = [r[field] for r in records if r.get(field) is not None]
    return float(np.mean(values)) if values else None
