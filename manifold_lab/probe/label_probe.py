"""How much label information a block output carries: the held-out accuracy of a linear read-out.

A *linear probe* (Alain and Bengio 2016): a multinomial logistic regression
of the label from the block output of each image, fitted on some images and
scored on the others. The block output is ``rep`` (N, D) of
``manifold_lab.probe.capture``: every image's output flattened, ``D = k' H' W'``
(a fixed random subset of at most ``max_features`` coordinates when larger),
so the read-out sees the whole feature map, not a pooled summary of it.

With ``y`` (N,) the labels, a stratified random ``test_fraction`` of the
images held out (``T``, at least one per class) and the rest for fitting
(``F``): the columns of ``rep`` are standardized on ``F`` (constant columns
stay 0), ``W`` (C, D) and ``c`` (C,) minimise the L2-penalised
cross-entropy over ``F``,

    sum_{i in F} -log softmax(W r_i + c)_{y_i} + |W|^2 / (2 C_reg),

(scikit-learn's ``LogisticRegression``, lbfgs, ``C_reg = 1``), and

    label_accuracy = mean_{i in T} [argmax_c (W r_i + c)_c == y_i].

1 when the classes are linearly separable in the output (and the split
generalises); chance, ``1 / classes`` on the probe's class-balanced images,
when the output says nothing about the label (a constant output predicts the
majority class of ``F``).
"""

from __future__ import annotations

import numpy as np

#: Inverse L2 penalty of the read-out (scikit-learn's ``C``) on standardized features.
C_REG = 1.0


def label_accuracy(rep, labels, *, test_fraction: float = 0.25, random_state: int = 0) -> float | None:
    """Held-out accuracy of the linear read-out of ``labels`` (N,) from ``rep`` (N, D) (module docstring).

    None when it is undefined: fewer than two classes, or a class with fewer
    than two images (no stratified split keeps it on both sides).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rep = np.asarray(rep, dtype=np.float64).reshape(len(rep), -1)
    labels = np.asarray(labels).ravel()
    if len(labels) != len(rep):
        raise ValueError(f"labels must have one entry per image ({len(rep)}), got {len(labels)}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.min() < 2:
        return None
    n_test = max(len(classes), int(round(test_fraction * len(labels))))
    if len(labels) - n_test < len(classes):
        return None
    fit, test = train_test_split(np.arange(len(labels)), test_size=n_test, stratify=labels,
                                 random_state=random_state)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C_REG, max_iter=1000))
    model.fit(rep[fit], labels[fit])
    return float((model.predict(rep[test]) == labels[test]).mean())
