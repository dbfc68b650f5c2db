"""scikit-learn's handwritten digits as a tiny image dataset for smoke runs.

1,797 grey 8x8 images of the digits 0-9 (``sklearn.datasets.load_digits``,
shipped inside scikit-learn, so no download). Pixel values 0..16 are mapped to
uint8 by ``round(v * 255 / 16)``. The train/test split is fixed (stratified,
20 % test, ``random_state=0``) and does not depend on the run seed, so every
run evaluates on the same 360 images.
"""

from __future__ import annotations

import numpy as np
import torch

from manifold_lab.data.base import ImageData, channel_stats, check_split, make_image_data

#: Fraction of the 1,797 digits held out as the test split.
TEST_FRACTION = 0.2
#: The split's random_state: fixed so the test set is the same for every run.
SPLIT_STATE = 0


def _resize(images: np.ndarray, image_size: int | None, channels: int) -> np.ndarray:
    """uint8 (N, 1, 8, 8) -> uint8 (N, channels, S, S): bilinear upscaling, grey copied to each channel."""
    x = torch.from_numpy(images)
    if image_size is not None and image_size != x.shape[-1]:
        x = torch.nn.functional.interpolate(x.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    if channels != 1:
        x = x.expand(-1, channels, -1, -1).contiguous()
    return x.numpy()


def load_digits(
    split: str = "train",
    *,
    subset: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    channels: int = 1,
) -> ImageData:
    """The digits split as ``ImageData``.

    Parameters
    ----------
    split : {"train", "test"}
        1,437 train or 360 test images (stratified).
    subset : int or None
        Images per class (deterministic given ``seed``); None keeps all.
    image_size : int or None
        Side of the square output, bilinear upscaling of the 8x8 images
        (None keeps 8x8).
    channels : {1, 3}
        3 repeats the grey channel (for models that expect RGB).

    Returns
    -------
    ImageData with images uint8 (N, channels, S, S), 10 classes "0".."9".
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    check_split(split)
    if channels not in (1, 3):
        raise ValueError(f"channels={channels!r} is not one of (1, 3)")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size={image_size!r} must be None or an integer >= 1")
    bunch = sk_load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(labels.size), test_size=TEST_FRACTION, random_state=SPLIT_STATE, stratify=labels
    )
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    train_images = _resize(pixels[idx_train], image_size, channels)
    mean, std = channel_stats(train_images)
    idx = idx_train if split == "train" else idx_test
    images = train_images if split == "train" else _resize(pixels[idx], image_size, channels)
    classes = [str(c) for c in bunch.target_names]
    return make_image_data(images, labels[idx], classes, mean, std, subset=subset, seed=seed)
