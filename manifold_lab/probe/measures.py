"""The probe's measures of one block, from plain arrays (the MobileNetV2 probe and the toy networks share them).

Notation (``manifold_lab.probe.capture``): at ``P`` positions, block input
``x`` (P, k), expansion ``z = x W^T + b`` (P, t k) with activation
``expand_act``, bottleneck pre-activation ``pre`` (P, k') with activation
``bottleneck_act``, block output ``out`` (P, k'); ``rep`` (N, D) the block
output of every image (the points whose geometry is measured).

A unit is *active* when it is in the linear piece of its activation: every
unit for ``identity``, ``z > 0`` for ``relu``, ``0 < z < 6`` for ``relu6`` (at 0
or 6 its derivative is 0, so it carries nothing about its input there). The
strictly increasing activations (``leaky_relu_<slope>``, ``elu``, ``softplus``)
are injective: their derivative is positive everywhere, so every unit is active.

Record keys (``None`` where a measure does not apply or is undefined):

- ``zeroed_fraction``: mean over positions of the share of bottleneck channels
  with ``act3 = 0`` (``pre <= 0`` under ReLU / ReLU6; 0 for a linear bottleneck);
  ``clipped_fraction``: the share with ``pre >= 6`` (ReLU6 only);
- ``active_mean``: mean number of bottleneck channels in the linear piece;
  ``id_position``: TwoNN dimension of the ``pre`` vectors (the positions as
  points); ``below_id_fraction``: share of positions with fewer active
  bottleneck channels than ``min(id_position, k')``;
- ``lemma2_failure_fraction``: share of positions where the active rows of
  the folded expansion ``W`` have rank ``< k`` (Lemma 2 fails, exact rank by
  ``manifold_lab.metrics.rank_deficient``); ``expansion_active_mean``;
- ``r2_input_linear``, ``r2_pre_linear``: held-out R^2 of the ridge decoder of
  ``x`` and of ``pre`` from ``out`` (``manifold_lab.recovery.ridge_decoder``);
  ``r2_input_knn``, ``r2_pre_knn``: the same with the k-NN decoder (when asked);
- ``twonn_mean``, ``twonn_std``: TwoNN of ``rep`` as Ansuini et al. (2019)
  (``manifold_lab.geometry.twonn_ansuini``); ``rankme``: effective rank of ``rep``.
- ``r2_branch_linear``, ``r2_branch_knn`` (the latter when asked): held-out R^2 of
  ``pre`` recovered from the branch output ``act = act3(pre)``, ridge and k-NN decoder,
  ``R^2 = 1 - sum |pre - pre_hat|^2 / sum |pre - mean(pre)|^2`` over the held-out
  positions (``manifold_lab.recovery.r2_score``). Unlike ``r2_input_*`` and
  ``r2_pre_*``, which decode from ``out = x + act`` and so see the shortcut's copy of
  ``x``, it counts a dead branch (``act`` constant) as total loss (R^2 <= 0), the
  identity as none (R^2 = 1), and an injective ``act3`` as none for the k-NN decoder;
- ``label_accuracy`` (when labels are given): held-out accuracy of a linear
  read-out of the image labels from ``rep``
  (``manifold_lab.probe.label_probe.label_accuracy``).

The numpy linear algebra and the neighbour searches run on one thread: the matrices are small
(thousands of batched SVDs), where threads only wait for each other (10-50x
slower on a shared 2-core machine).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from manifold_lab.geometry import rankme, twonn_ansuini
from manifold_lab.metrics import rank_deficient
from manifold_lab.probe.label_probe import label_accuracy
from manifold_lab.recovery import knn_decoder, r2_score, ridge_decoder

ACTIVATIONS = ("identity", "relu", "relu6", "leaky_relu_<slope>", "elu", "softplus")


def injective(act: str) -> bool:
    """Whether ``act`` is strictly increasing (no two inputs share an output): identity, leaky ReLU, ELU, softplus."""
    return act in ("identity", "elu", "softplus") or act.startswith("leaky_relu_")


def linear_piece(z: np.ndarray, act: str) -> np.ndarray:
    """Boolean mask of the units of ``z`` in the linear piece of ``act`` (see the module docstring)."""
    if injective(act):
        return np.ones(z.shape, dtype=bool)
    if act == "relu":
        return z > 0
    if act == "relu6":
        return (z > 0) & (z < 6)
    raise ValueError(f"act={act!r} is not one of {', '.join(map(repr, ACTIVATIONS))}")


def _r2(decoder, target, out, random_state, **kw):
    """Held-out R^2 of ``decoder``; None when the target does not vary (R^2 undefined)."""
    if np.ptp(target, axis=0).max() <= 0 or len(target) < 8:
        return None
    return r2_score(*decoder(target, out, random_state=random_state, **kw))


def block_measures(*, x, pre, act, out, rep, bottleneck_act: str, W=None, b=None, expand_act: str = "relu6",
                   knn: bool = True, n_resamples: int = 5, random_state: int = 0, labels=None) -> dict:
    """Every measure of one block (module docstring); ``W`` (t k, k) and ``b`` (t k,) are the folded expansion.

    ``labels`` (N,), one per row of ``rep``, adds ``label_accuracy``.
    """
    with threadpool_limits(1):  # BLAS and OpenMP (scikit-learn's neighbour search)
        pre, act, out, x, rep64 = (np.asarray(a, dtype=np.float64) for a in (pre, act, out, x, rep))
        active = linear_piece(pre, bottleneck_act)
        id_pos = twonn_ansuini(pre, n_resamples=1)[0] if len(pre) >= 6 else None
        rec: dict = {
            "positions": int(len(pre)),
            "zeroed_fraction": float((act == 0).mean()) if bottleneck_act != "identity" else 0.0,
            "clipped_fraction": float((pre >= 6).mean()) if bottleneck_act == "relu6" else 0.0,
            "active_mean": float(active.sum(1).mean()),
            "id_position": id_pos,
            # An estimate above the channel count is estimation noise: the threshold is at most k'.
            "below_id_fraction": None if id_pos is None else float((active.sum(1) < min(id_pos, pre.shape[1])).mean()),
        }
        if W is not None:
            z = x @ np.asarray(W, dtype=np.float64).T + (0.0 if b is None else np.asarray(b, dtype=np.float64))
            expanded = linear_piece(z, expand_act)
            rec["lemma2_failure_fraction"] = float(rank_deficient(expanded, W).mean())
            rec["expansion_active_mean"] = float(expanded.sum(1).mean())
        else:
            rec["lemma2_failure_fraction"] = rec["expansion_active_mean"] = None
        rec["r2_input_linear"] = _r2(ridge_decoder, x, out, random_state)
        rec["r2_pre_linear"] = _r2(ridge_decoder, pre, out, random_state)
        if knn:
            rec["r2_input_knn"] = _r2(knn_decoder, x, out, random_state)
            rec["r2_pre_knn"] = _r2(knn_decoder, pre, out, random_state)
        if len(rep64) >= 12:
            rec["twonn_mean"], rec["twonn_std"] = twonn_ansuini(rep64, n_resamples=n_resamples,
                                                                random_state=random_state)
        else:
            rec["twonn_mean"] = rec["twonn_std"] = None
        rec["rankme"] = rankme(rep64)
        # The branch and label measures come last, so the earlier keys keep their order in the CSV.
        rec["r2_branch_linear"] = _r2(ridge_decoder, pre, act, random_state)
        if knn:
            rec["r2_branch_knn"] = _r2(knn_decoder, pre, act, random_state)
        if labels is not None:
            rec["label_accuracy"] = label_accuracy(rep, labels, random_state=random_state)
        return rec
