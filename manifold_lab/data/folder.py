"""ImageFolder trees ``root/<split>/<class>/*.jpg|png`` (the ImageNet layout).

Small images (CIFAR-sized, at most ``SMALL_MAX_SIDE`` pixels a side after the
optional resize) are decoded once, for every split at the same time, into one
uint8 ``.npz`` under the cache folder, and read back from there afterwards:
decoding 60,000 JPEGs costs ~40 s on 2 cores, reading the array well under one. The cache
file name carries a key of the source path, ``image_size`` and a fingerprint
of the source (every file's relative path, size and mtime for a folder; size
and mtime for a ``.tar.gz``), so a changed tree is decoded again.

A ``.tar.gz`` of such a tree is read member by member straight from the
archive (one sequential pass, no extraction to disk).

Large images (ImageNet) are not held in memory: ``FolderImages`` and
``StreamingLoader`` decode them in DataLoader workers (see ``manifold_lab.data.stream``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import numpy as np

from manifold_lab.data.base import (
    DATA_ENV,
    ImageData,
    channel_stats,
    check_split,
    data_search_roots,
    default_cache_dir,
    make_image_data,
    missing_data_error,
    resolve_path,
)
from manifold_lab.errors import UsageError
from manifold_lab.io import atomic_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")
#: Largest side (pixels) decoded into the in-memory cache; larger images are streamed.
SMALL_MAX_SIDE = 64
#: Most pixels an image may have; checked from the file's header before it is decoded
#: (a 20000 x 20000 PNG of a few kilobytes would need 1.2 GB). PIL's own warning starts at 89M.
MAX_DECODE_PIXELS = 64 * 2**20
#: Folder names accepted for each split (ImageNet calls its test split "val").
SPLIT_DIRS = {"train": ("train",), "test": ("test", "val")}
#: Bump when the cache layout changes, so old files are not misread.
CACHE_VERSION = 1

CIFAR10_JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
CIFAR10_JPEG_FOLDER = "cifar10-jpeg"


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _split_of(dirname: str) -> str | None:
    return next((split for split, names in SPLIT_DIRS.items() if dirname in names), None)


def open_image(src: "io.BytesIO | os.PathLike | str") -> "object":
    """``PIL.Image.open(src)`` refusing, from the header alone, an image of more than
    ``MAX_DECODE_PIXELS`` pixels (``UsageError``), before anything is decoded."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with one line
        try:
            img = Image.open(src)
        except Image.DecompressionBombError as exc:
            raise UsageError(f"image too large to decode: {' '.join(str(exc).split())}") from None
    width, height = img.size
    if width * height > MAX_DECODE_PIXELS:
        img.close()
        raise UsageError(f"image of {width}x{height} pixels is larger than the {MAX_DECODE_PIXELS:,} pixels "
                         "an image may have (the limit); it is not decoded")
    return img


def decode_image(data: bytes | os.PathLike | str, image_size: int | None = None) -> np.ndarray:
    """Decode one image file to uint8 ``(3, H, W)`` RGB (grey and palette images converted).

    ``image_size`` resizes to ``(image_size, image_size)`` with bilinear
    filtering (PIL), as the torchvision ImageFolder loader + Resize would.
    """
    from PIL import Image

    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with open_image(src) as img:
        img = img.convert("RGB")
        if image_size is not None and img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


# --------------------------------------------------------------------------- listing


def list_folder(root: Path) -> list[tuple[str, str, Path]]:
    """``(split, class, file)`` for every image under ``root/<split>/<class>/``, sorted.

    The first existing folder of ``SPLIT_DIRS[split]`` is the split (``test``
    before ``val``).
    """
    entries = []
    for split, names in SPLIT_DIRS.items():
        split_dir = next((root / n for n in names if (root / n).is_dir()), None)
        if split_dir is None:
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for f in sorted(class_dir.iterdir()):
                if f.is_file() and _is_image(f.name):
                    entries.append((split, class_dir.name, f))
    return entries


def iter_archive(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """``(split, class, bytes)`` for every ``.../<split>/<class>/<image>`` member, in archive order."""
    try:
        with tarfile.open(path, "r|*") as tf:  # streaming mode: one sequential pass over the gzip
            for member in tf:
                if not member.isfile() or not _is_image(member.name):
                    continue
                parts = PurePosixPath(member.name).parts
                if len(parts) < 3 or _split_of(parts[-3]) is None:
                    continue
                yield _split_of(parts[-3]), parts[-2], tf.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise UsageError(f"cannot read archive {path}: {exc}") from exc


def _fingerprint(source: Path) -> str:
    h = hashlib.sha256()
    if source.is_file():
        st = source.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        for split, cls, f in list_folder(source):
            st = f.stat()
            h.update(f"{f.relative_to(source).as_posix()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_path(source: str | os.PathLike, *, image_size: int | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache file for ``source`` (a folder tree or a ``.tar.gz``) at ``image_size``."""
    source = Path(source).resolve()
    key = json.dumps([CACHE_VERSION, str(source), image_size, _fingerprint(source)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    stem = source.name.split(".")[0] or "images"
    return default_cache_dir(cache_dir) / "imagefolder" / f"{stem}-{image_size or 'native'}-{digest}.npz"


# --------------------------------------------------------------------------- decode + cache


def _decode_all(items: Iterable[tuple[str, str, bytes | Path]], total: int | None, desc: str, image_size: int | None) -> dict:
    from PIL import UnidentifiedImageError
    from tqdm.auto import tqdm

    per_split: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    # disable=None: a bar on a terminal, silence in logs and CI.
    with tqdm(total=total, desc=desc, unit="img", disable=None, leave=False) as bar:
        for split, cls, data in items:
            try:
                arr = decode_image(data, image_size)
            except (UnidentifiedImageError, OSError, UsageError) as exc:
                where = data if isinstance(data, Path) else f"{desc}/{split}/{cls}"
                raise UsageError(f"cannot decode image {where}: {exc}") from exc
            if max(arr.shape[1:]) > SMALL_MAX_SIDE:
                raise UsageError(
                    f"an image of {arr.shape[2]}x{arr.shape[1]} pixels is too large to cache in memory "
                    f"(limit {SMALL_MAX_SIDE}); give image_size <= {SMALL_MAX_SIDE} or stream it with build_loaders"
                )
            images, names = per_split.setdefault(split, ([], []))
            images.append(arr)
            names.append(cls)
            bar.update(1)
    if not per_split:
        raise UsageError(f"no images found in {desc} (expected <split>/<class>/<image> with split in train/test/val)")
    classes = sorted({c for _, names in per_split.values() for c in names})
    check_same_classes(desc, {split: set(names) for split, (_, names) in per_split.items()})
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split, (images, names) in per_split.items():
        shapes = {a.shape for a in images}
        if len(shapes) != 1:
            raise UsageError(f"images in {desc}/{split} have different sizes {sorted(shapes)[:4]}; give image_size")
        out[f"{split}_images"] = np.stack(images)
        out[f"{split}_labels"] = np.array([index[c] for c in names], dtype=np.int64)
    if "train_images" in out:
        mean, std = channel_stats(out["train_images"])
        out["train_mean"], out["train_std"] = np.array(mean), np.array(std)
    return out


def check_same_classes(desc: str, classes_by_split: dict[str, set[str]]) -> None:
    """``UsageError`` unless every split has the same class folders (a model trained on some classes and
    tested on others scores 0% and would look like a result)."""
    splits = sorted(classes_by_split)
    union = set().union(*classes_by_split.values())
    for split in splits:
        missing = sorted(union - classes_by_split[split])
        if missing:
            raise UsageError(f"the splits of {desc} name different classes: {split} has no folder for "
                             f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                             f"({', '.join(f'{s}: {len(classes_by_split[s])} classes' for s in splits)}); every split "
                             f"needs the same class folders")


def load_folder_arrays(
    source: str | os.PathLike, *, image_size: int | None = None, cache_dir: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """All splits of ``source`` as arrays, decoded once and cached.

    Returns
    -------
    dict with ``classes`` (str array), ``<split>_images`` uint8 (N, 3, H, W),
    ``<split>_labels`` int64 (N,) for each split present, and ``train_mean`` /
    ``train_std`` (3,) when a train split exists.
    """
    source = Path(source)
    path = cache_path(source, image_size=image_size, cache_dir=cache_dir)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    # The first decode takes tens of seconds (60,000 CIFAR-10 JPEGs: ~40 s on 2 cores): say so.
    print(f"decoding the images of {source.name} once into the cache {path} "
          "(later runs read the cache; set $MANIFOLD_LAB_CACHE or data.cache_dir to move it)",
          file=sys.stderr, flush=True)
    if _is_archive(source):
        arrays = _decode_all(iter_archive(source), None, source.name, image_size)
    else:
        entries = list_folder(source)
        arrays = _decode_all(entries, len(entries), source.name, image_size)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return arrays


def existing_folder(source: str | os.PathLike) -> Path:
    """``resolve_path(source)``; the ``missing_data_error`` of an image folder when it does not exist."""
    source = resolve_path(source)
    if not source.exists():
        raise missing_data_error("image folder", [source], "Give root=<folder with train/ and test/ subfolders>.")
    return source


def load_imagefolder(
    source: str | os.PathLike,
    split: str = "train",
    *,
    subset: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ImageData:
    """One split of a small-image ImageFolder tree (or its ``.tar.gz``) as ``ImageData``.

    Labels index the sorted class folder names (as torchvision's
    ``ImageFolder``); mean/std are those of the train split.
    """
    check_split(split)
    source = existing_folder(source)
    arrays = load_folder_arrays(source, image_size=image_size, cache_dir=cache_dir)
    if f"{split}_images" not in arrays:
        raise UsageError(f"{source} has no {split!r} split (looked for folders {SPLIT_DIRS[split]})")
    if "train_mean" not in arrays:
        raise UsageError(f"{source} has no 'train' split, needed for the normalisation statistics")
    return make_image_data(
        arrays[f"{split}_images"],
        arrays[f"{split}_labels"],
        [str(c) for c in arrays["classes"]],
        arrays["train_mean"],
        arrays["train_std"],
        subset=subset,
        seed=seed,
    )


def find_cifar10_jpeg(root: str | os.PathLike | None = None) -> Path:
    """Locate the CIFAR-10 JPEG copy: the archive, its unpacked folder, or ``root`` itself.

    Searched in each of ``data_search_roots(root)``: the path itself when it is
    an archive or holds ``train/``; ``cifar10-jpeg.tar.gz``; ``cifar10-jpeg/``.
    """
    searched = []
    for base in data_search_roots(root):
        for cand in (base, base / CIFAR10_JPEG_ARCHIVE, base / CIFAR10_JPEG_FOLDER):
            searched.append(cand)
            if _is_archive(cand) or (cand.is_dir() and (cand / "train").is_dir()):
                return cand
    raise missing_data_error(
        "CIFAR-10 JPEG copy",
        searched,
        f"Set ${DATA_ENV} (or root=) to the folder holding {CIFAR10_JPEG_ARCHIVE} or its unpacked "
        "train/ and test/ folders, or use name='cifar10' with download=True for the official archive.",
    )


def image_side(source: str | os.PathLike) -> int:
    """Largest side of the first image in a folder tree (archives hold small images)."""
    source = existing_folder(source)
    if _is_archive(source):
        return 0
    from PIL import Image

    for split_dir in sorted(p for p in source.iterdir() if p.is_dir() and _split_of(p.name)):
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for f in sorted(class_dir.iterdir()):
                if _is_image(f.name):
                    with Image.open(f) as img:
                        return max(img.size)
    raise UsageError(f"no images found under {source}/<split>/<class>/")
