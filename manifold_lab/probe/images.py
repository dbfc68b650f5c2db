"""The probe's image set: a fixed, class-balanced draw from a test split.

Every class contributes the same number of images, ``n_images // classes``,
drawn without replacement by a seeded generator, so two networks trained on
the same data are probed on the same images; the class histogram is recorded
with every probe result.
"""

from __future__ import annotations

import numpy as np

from manifold_lab._checks import check_int

#: The largest image set the probe accepts (the memory of the captured tensors grows with it).
MAX_IMAGES = 10_000


def balanced_indices(labels, n_images: int, *, random_state=0) -> tuple[np.ndarray, dict[int, int]]:
    """Indices of ``n_images // C`` images of each of the ``C`` classes present in ``labels`` (N,).

    Returns ``(indices, histogram)``: sorted indices into ``labels`` and
    ``{class: count}``. ``ValueError`` when ``n_images`` is below the number of
    classes, above ``MAX_IMAGES``, or asks more of a class than it has.
    """
    labels = np.asarray(labels).ravel()
    n_images = check_int(n_images, "images", minimum=1, maximum=MAX_IMAGES)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) == 0:
        raise ValueError("the image set is empty: no labels")
    per_class = n_images // len(classes)
    if per_class < 1:
        raise ValueError(f"images={n_images} is fewer than the {len(classes)} classes; use at least {len(classes)}")
    if per_class > counts.min():
        raise ValueError(f"images={n_images} needs {per_class} images per class, but class {classes[counts.argmin()]} "
                         f"has {counts.min()}; use at most {counts.min() * len(classes)}")
    from manifold_lab.data.base import subset_indices  # the draw every class-balanced sample uses

    return subset_indices(labels, per_class, random_state), {int(c): per_class for c in classes}


def probe_images(data_cfg, n_images: int, *, random_state=0):
    """``(x, histogram)``: a balanced draw from the test split of a run's data config, normalized.

    ``data_cfg`` is a ``manifold_lab.train.config.DataConfig`` (the run's own);
    the whole test split is read (``eval_subset`` is ignored so that every run
    on the same data is probed on the same images). ``x`` is a float32
    ``(n, C, H, W)`` tensor normalized as the loaders do, ``(pixel / 255 - mean) / std``
    with the train split's statistics.
    """
    import torch

    from manifold_lab.data import load_dataset

    data = load_dataset(data_cfg.name, split="test", root=data_cfg.root, download=data_cfg.download,
                        cache_dir=data_cfg.cache_dir, image_size=data_cfg.image_size, channels=data_cfg.channels)
    idx, histogram = balanced_indices(data.labels.numpy(), n_images, random_state=random_state)
    return normalize(data.images[torch.as_tensor(idx)], data.mean, data.std), histogram


def normalize(images, mean, std):
    """uint8 ``(N, C, H, W)`` -> float32 ``(pixel / 255 - mean) / std`` per channel."""
    import torch

    mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std
