"""Fixed class-balanced image sets drawn from a loader, without augmentation.

``balanced_sample(loader, per_class)`` returns ``per_class`` images of every
class: for a device-resident loader (``DeviceLoader``) the indices of
``manifold_lab.data.base.subset_indices(labels, per_class, seed)`` (a seeded
draw without replacement inside each class), read straight from the stored
uint8 images, so a training loader gives clean images (no crop, no flip); for
an evaluation ``StreamingLoader`` (ImageNet) the same draw over its dataset's
labels, decoding only the chosen images with the evaluation transform. Used for the Figure 7 statistics (a split sorted by
class would otherwise give one class: the first 256 CIFAR-10 test images are all
airplanes) and for the clean train accuracy of the budget ladder.
"""

from __future__ import annotations

import torch

from manifold_lab.data.base import subset_indices


def per_class_count(images: int, num_classes: int, what: str = "images") -> int:
    """``images // num_classes``; ``ValueError`` when that is 0 (fewer images than classes)."""
    if images < num_classes:
        raise ValueError(f"{what}={images} is fewer than the {num_classes} classes: a class-balanced sample "
                         f"needs at least one image per class")
    return images // num_classes


def balanced_sample(loader, per_class: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """``(x, y, histogram)``: ``per_class`` images of every class of ``loader``'s data.

    Returns
    -------
    x : (per_class * K, C, H, W) float tensor, normalised as the loader normalises, on the CPU
    y : (per_class * K,) int64 labels
    histogram : {class name: images}, every count equal to ``per_class``
    """
    classes = list(getattr(loader, "classes", []) or [])
    if hasattr(loader, "images"):  # device-resident: index the stored images directly
        labels = loader.labels.cpu()
        idx = torch.as_tensor(subset_indices(labels.numpy(), per_class, seed), dtype=torch.long)
        x = loader.normalize(loader.images[idx.to(loader.images.device)]).cpu()
        y = labels[idx]
    else:  # a streaming loader: decode only the chosen images of its dataset (evaluation transform)
        if getattr(loader, "train", False):
            raise ValueError("a clean class-balanced sample needs an evaluation loader or a device-resident one "
                             "(a streaming training loader augments every image)")
        dataset = loader.dataset
        labels = torch.tensor([label for _, label in dataset.samples], dtype=torch.long)
        idx = subset_indices(labels.numpy(), per_class, seed)
        x = torch.stack([dataset[int(i)][0] for i in idx])
        y = labels[torch.as_tensor(idx, dtype=torch.long)]
    if getattr(loader, "channels_last", False):
        x = x.contiguous(memory_format=torch.channels_last)
    counts = torch.bincount(y, minlength=len(classes) or int(y.max()) + 1).tolist()
    names = classes if len(classes) == len(counts) else [str(i) for i in range(len(counts))]
    return x, y, dict(zip(names, counts))
