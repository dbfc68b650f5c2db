"""Dataset names -> loaders: ``load_dataset`` and ``build_loaders``.

Names
-----
``cifar10``, ``cifar100``
    The official python archives (``cifar-10-python.tar.gz``,
    ``cifar-100-python.tar.gz``) or their unpacked folders, see ``cifar``.
``cifar10_jpeg``
    The CIFAR-10 JPEG copy (an ImageFolder tree or its ``.tar.gz``), see
    ``folder.find_cifar10_jpeg``. Results on it are "CIFAR-10 (JPEG copy)".
``imagefolder``
    Any ``root/<split>/<class>/*.jpg|png`` tree; small images are cached in
    memory, large ones (ImageNet) stream through a DataLoader.
``digits``
    scikit-learn's 8x8 digits, for smoke runs (no files needed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from manifold_lab.data.base import ImageData, check_split
from manifold_lab.errors import UsageError

DATASETS = ("cifar10", "cifar100", "cifar10_jpeg", "imagefolder", "digits")


def load_dataset(
    name: str,
    *,
    split: str = "train",
    root: str | os.PathLike | None = None,
    subset: int | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    image_size: int | None = None,
    channels: int | None = None,
) -> ImageData:
    """One split of a named dataset, fully in memory as ``ImageData``.

    Parameters
    ----------
    name : one of ``DATASETS``
    split : {"train", "test"}
    root : path or None
        Where the data lives; None searches ``$MANIFOLD_LAB_DATA``, then
        ``../shared/datasets`` from the current directory and the repository root.
    subset : int or None
        Images per class, drawn deterministically from ``seed``; None = all.
    download : bool
        Fetch the official CIFAR archive (checksum verified) when missing.
    cache_dir : path or None
        Decoded arrays and downloads; default ``$MANIFOLD_LAB_CACHE`` or
        ``~/.cache/manifold_lab``.
    image_size : int or None
        Resize to ``image_size`` x ``image_size`` (folders, digits).
    channels : {None, 1, 3}
        Digits only: 3 repeats the grey channel.

    Raises
    ------
    FileNotFoundError
        The data is missing; the message names the paths searched and how to
        obtain it.
    """
    check_split(split)
    if name not in DATASETS:
        raise UsageError(f"dataset name={name!r} is not one of {DATASETS}")
    if channels is not None and name != "digits":
        raise UsageError(f"channels={channels!r} applies to the 'digits' dataset only, not {name!r}")
    if name == "digits":
        from manifold_lab.data.digits import load_digits

        return load_digits(split, subset=subset, seed=seed, image_size=image_size, channels=channels or 1)
    if name in ("cifar10", "cifar100"):
        from manifold_lab.data.cifar import load_cifar

        if image_size is not None and image_size != 32:
            raise UsageError(f"image_size={image_size!r}: the official {name} archive holds 32x32 images only")
        return load_cifar(name, split, root=root, subset=subset, seed=seed, download=download, cache_dir=cache_dir)

    from manifold_lab.data.folder import find_cifar10_jpeg, load_imagefolder

    if name == "cifar10_jpeg":
        source = find_cifar10_jpeg(root)
    else:
        if root is None:
            raise UsageError("dataset 'imagefolder' needs root=<folder with train/<class>/ and test/<class>/>")
        source = root  # resolved (cwd, then repository root) by load_imagefolder
    return load_imagefolder(source, split, subset=subset, seed=seed, image_size=image_size, cache_dir=cache_dir)


def find_data(name: str, *, root: str | os.PathLike | None = None, download: bool = False,
              cache_dir: str | os.PathLike | None = None) -> str:
    """Where ``load_dataset`` would read ``name`` from, without reading it: one line for ``--dry-run``.

    Raises the same ``FileNotFoundError`` as ``load_dataset`` (the paths searched and how to
    obtain the data) when the data is absent and will not be downloaded.
    """
    if name not in DATASETS:
        raise UsageError(f"dataset name={name!r} is not one of {DATASETS}")
    if name == "digits":
        return "digits: bundled with scikit-learn"
    if name in ("cifar10", "cifar100"):
        from manifold_lab.data.cifar import find_cifar, missing_cifar

        source = find_cifar(name, root, cache_dir)
        if source is not None:
            return f"{name}: {source}"
        if download:
            return f"{name}: not here yet; the first run downloads it (download: true)"
        raise missing_cifar(name, root, cache_dir)
    from manifold_lab.data.folder import existing_folder, find_cifar10_jpeg

    if name == "cifar10_jpeg":
        return f"{name}: {find_cifar10_jpeg(root)}"
    if root is None:
        raise UsageError("dataset 'imagefolder' needs root=<folder with train/<class>/ and test/<class>/>")
    return f"{name}: {existing_folder(root)}"


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    value = cfg.get(key, default) if isinstance(cfg, Mapping) else getattr(cfg, key, default)
    return default if value is None else value


def augment_options(augment: Any) -> dict[str, Any]:
    """``augment`` config -> ``{crop_padding, flip}``.

    ``True`` / None: the CIFAR recipe (pad 4, flip); ``False``: none; a
    mapping overrides either key.
    """
    if augment is None or augment is True:
        return {"crop_padding": 4, "flip": True}
    if augment is False:
        return {"crop_padding": 0, "flip": False}
    if isinstance(augment, Mapping) or hasattr(augment, "__dict__"):
        opts = {"crop_padding": _get(augment, "crop_padding", 4), "flip": _get(augment, "flip", True)}
        extra = set(augment if isinstance(augment, Mapping) else vars(augment)) - set(opts)
        if extra:
            raise UsageError(f"augment has unknown keys {sorted(extra)}; allowed: ['crop_padding', 'flip']")
        return opts
    raise UsageError(f"augment={augment!r} must be true, false or a mapping with crop_padding / flip")


def build_loaders(
    data_cfg: Any,
    *,
    device: str | torch.device | None = None,
    seed: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    channels_last: bool = False,
    dtype: torch.dtype | None = None,
) -> tuple[Any, Any, int, int]:
    """Train and test loaders for a data config.

    ``data_cfg`` is a mapping or an object with ``name, root, subset,
    batch_size, eval_batch_size, download, cache_dir, augment, num_workers,
    image_size, device, seed, rank, world_size`` (and optionally ``channels``
    for digits). ``device``, ``seed``, ``rank`` and ``world_size`` given as
    keyword arguments override the config's (defaults ``"cpu"``, 0, 0, 1).
    ``dtype`` is the floating type of the device loaders' batches (None: torch's default dtype). ``subset``
    thins the train split; the optional ``eval_subset`` (images per class,
    default None = all) thins the test split for quick CPU studies. Small-image
    datasets give two ``DeviceLoader`` s; an ImageFolder of large images
    gives two ``StreamingLoader`` s (DataLoader with workers and a
    ``DistributedSampler``, same ``set_epoch`` protocol).

    Returns
    -------
    (train_loader, test_loader, num_classes, in_channels)
    """
    from manifold_lab.data.loader import DeviceLoader

    device = device if device is not None else _get(data_cfg, "device", "cpu")
    seed = int(seed if seed is not None else _get(data_cfg, "seed", 0))
    rank = int(rank if rank is not None else _get(data_cfg, "rank", 0))
    world_size = int(world_size if world_size is not None else _get(data_cfg, "world_size", 1))
    name = _get(data_cfg, "name")
    if name is None:
        raise UsageError(f"data config needs a 'name', one of {DATASETS}")
    batch_size = _get(data_cfg, "batch_size", 128)
    eval_batch_size = _get(data_cfg, "eval_batch_size", batch_size)
    aug = augment_options(_get(data_cfg, "augment", True))
    common = dict(
        root=_get(data_cfg, "root"),
        cache_dir=_get(data_cfg, "cache_dir"),
        image_size=_get(data_cfg, "image_size"),
    )
    shared = dict(device=device, seed=seed, rank=rank, world_size=world_size, channels_last=channels_last)
    if name == "imagefolder" and common["root"] is not None:
        from manifold_lab.data.folder import SMALL_MAX_SIDE, image_side

        size = common["image_size"]
        if (size or image_side(common["root"])) > SMALL_MAX_SIDE:
            from manifold_lab.data.stream import build_streaming_loaders

            return build_streaming_loaders(
                common["root"],
                batch_size=batch_size,
                eval_batch_size=eval_batch_size,
                image_size=size or 224,
                subset=_get(data_cfg, "subset"),
                eval_subset=_get(data_cfg, "eval_subset"),
                flip=aug["flip"],
                random_crop=bool(aug["crop_padding"]) or aug["flip"],
                num_workers=_get(data_cfg, "num_workers", 4),
                **shared,
            )

    kwargs = dict(
        common,
        subset=_get(data_cfg, "subset"),
        download=bool(_get(data_cfg, "download", False)),
        seed=seed,
        channels=_get(data_cfg, "channels"),
    )
    train = load_dataset(name, split="train", **kwargs)
    test = load_dataset(name, split="test", **dict(kwargs, subset=_get(data_cfg, "eval_subset")))
    loader_kw = dict(shared, dtype=dtype)
    train_loader = DeviceLoader(train, batch_size=batch_size, train=True, **aug, **loader_kw)
    test_loader = DeviceLoader(test, batch_size=eval_batch_size, train=False, **loader_kw)
    return train_loader, test_loader, train.num_classes, train.in_channels
