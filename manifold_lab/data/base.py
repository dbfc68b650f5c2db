"""The in-memory image dataset every loader reads, and the helpers all formats share.

``ImageData`` holds a whole split as one uint8 tensor ``(N, C, H, W)`` (the
airbench habit: small datasets stay resident and are augmented in batches),
with the per-channel mean and std of the *train* split in ``[0, 1]`` units so
that train and test are normalised identically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

SPLITS = ("train", "test")

#: Environment variable naming the folder that holds the datasets (or one archive).
DATA_ENV = "MANIFOLD_LAB_DATA"
#: Environment variable naming the cache folder for decoded arrays and downloads.
CACHE_ENV = "MANIFOLD_LAB_CACHE"
#: Smallest per-channel std returned by ``channel_stats`` (one grey level, in [0, 1] units).
STD_FLOOR = 1.0 / 255.0


@dataclass
class ImageData:
    """One split of an image classification dataset, resident in memory.

    Attributes
    ----------
    images : torch.Tensor, uint8, shape (N, C, H, W)
    labels : torch.Tensor, int64, shape (N,)
        Class indices into ``classes``.
    classes : list of str
        Class names, index ``i`` is label ``i`` (sorted for folder datasets).
    mean, std : tuple of float, length C
        Per-channel pixel mean and standard deviation of the TRAIN split, in
        ``[0, 1]`` units (pixel / 255), used to normalise every split.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be an int64 tensor of shape ({self.images.shape[0]},), got "
                f"{self.labels.dtype} of shape {tuple(self.labels.shape)}"
            )
        c = self.images.shape[1]
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"mean and std need {c} entries (one per channel), got {self.mean}, {self.std}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    return split


def channel_stats(images: torch.Tensor | np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images ``(N, C, H, W)`` in ``[0, 1]`` units.

    ``mean_c = E[x/255]``, ``std_c = max(sqrt(E[(x/255)^2] - mean_c^2), 1/255)``
    over all images and pixels, accumulated in float64 chunks (exact, bounded
    memory).
    """
    images = torch.as_tensor(images)
    n, c = images.shape[:2]
    if n == 0:
        raise ValueError("cannot compute channel statistics of an empty split")
    s1 = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        x = images[start : start + chunk].to(torch.float64).div_(255.0)
        s1 += x.sum(dim=(0, 2, 3))
        s2 += x.square().sum(dim=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = s1 / count
    # Floor at one grey level: a (near-)constant channel would otherwise be
    # divided by ~0 and its rounding noise blown up to huge values.
    std = (s2 / count - mean.square()).clamp_min(0).sqrt().clamp_min(STD_FLOOR)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def subset_indices(labels: np.ndarray | torch.Tensor, per_class: int | None, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` images of every class, drawn without replacement.

    Deterministic given ``seed`` (numpy ``default_rng(seed)``, one permutation
    per class in class order); returned sorted so the dataset order is kept.
    ``per_class=None`` keeps everything.
    """
    labels = np.asarray(labels)
    if per_class is None:
        return np.arange(labels.shape[0])
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"subset={per_class!r} must be None (all images) or an integer >= 1 (images per class)")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        if per_class > idx.size:
            raise ValueError(f"subset={per_class} images per class, but class {int(cls)} has only {idx.size}")
        chosen.append(rng.permutation(idx)[:per_class])
    return np.sort(np.concatenate(chosen))


def make_image_data(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    classes: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    subset: int | None = None,
    seed: int = 0,
) -> ImageData:
    """Build an ``ImageData``, keeping ``subset`` images per class (see ``subset_indices``)."""
    keep = subset_indices(labels, subset, seed)
    images = torch.as_tensor(np.ascontiguousarray(np.asarray(images)[keep]), dtype=torch.uint8)
    labels = torch.as_tensor(np.asarray(labels)[keep], dtype=torch.int64)
    return ImageData(images, labels, list(classes), tuple(float(m) for m in mean), tuple(float(s) for s in std))


def repo_root() -> Path:
    """The folder holding the ``manifold_lab`` package (the repository root for a checkout)."""
    return Path(__file__).resolve().parents[2]


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded; a relative path is tried from the current
    directory, then from the repository root (so ``../shared/datasets`` in a
    config works from either), and the first that exists is returned (the
    current-directory one when neither exists, for the error message).
    """
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    candidates = [Path.cwd() / path, repo_root() / path]
    return next((c.resolve() for c in candidates if c.exists()), candidates[0].resolve())


def data_search_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a dataset, in order.

    ``root`` when given (only it); otherwise ``$MANIFOLD_LAB_DATA`` when set;
    otherwise ``../shared/datasets`` relative to the current directory and to
    the repository root. Relative paths are resolved by ``resolve_path``.
    """
    if root is not None:
        return [resolve_path(root)]
    env = os.environ.get(DATA_ENV)
    if env:
        return [resolve_path(env)]
    return list(dict.fromkeys((base / ".." / "shared" / "datasets").resolve() for base in (Path.cwd(), repo_root())))


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$MANIFOLD_LAB_CACHE``, else ``$XDG_CACHE_HOME/manifold_lab`` (``~/.cache``)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "manifold_lab"


def missing_data_error(what: str, searched: Sequence[Path], how: str) -> FileNotFoundError:
    """A ``FileNotFoundError`` naming every path searched and how to obtain the data."""
    paths = ", ".join(str(p) for p in searched) or "(nothing)"
    return FileNotFoundError(f"{what} not found; searched: {paths}. {how}")

