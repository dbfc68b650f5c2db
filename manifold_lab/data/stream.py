"""Large ImageFolder images (ImageNet) streamed through a DataLoader with workers.

Too large to hold in memory, these are decoded per sample in worker
processes with the Inception-style recipe the MobileNetV2 paper trains with:
random-resized crop (scale 0.08-1, aspect 3/4-4/3) + horizontal flip for
training, resize to ``image_size / 0.875`` + centre crop for evaluation, then
normalisation with the standard ImageNet statistics (computing them over 1.28M
images is not worth it; they are the values every reference uses).

``StreamingLoader`` keeps ``DeviceLoader``'s protocol: ``set_epoch``,
``len``, ``num_samples``, batches ``(x, y)`` on the device. Its sharding is
``DistributedSampler`` (seeded by ``seed``, reshuffled by ``set_epoch``), and each
sample's augmentation draws on its own generator seeded from
``(seed, epoch, rank, index)``: a pure function of those, whatever the number
of workers or the order they run in.
"""

from __future__ import annotations

import math
import os
from typing import Iterator

import numpy as np
import torch

from manifold_lab.data.base import resolve_path, subset_indices
from manifold_lab.data.folder import SPLIT_DIRS, _is_image, check_same_classes, open_image
from manifold_lab.data.loader import DeviceLoader, epoch_generator
from manifold_lab.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Evaluation resizes the shorter side to image_size / CROP_FRACTION, then centre-crops.
CROP_FRACTION = 0.875


def list_split(root: str | os.PathLike, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class names and ``(path, label)`` samples of ``root/<split>/<class>/*``."""
    root = resolve_path(root)
    split_dir = next((root / d for d in SPLIT_DIRS[split] if (root / d).is_dir()), None)
    if split_dir is None:
        raise FileNotFoundError(f"no {split!r} split under {root} (looked for {SPLIT_DIRS[split]})")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    samples = [
        (str(f), label)
        for label, cls in enumerate(classes)
        for f in sorted((split_dir / cls).iterdir())
        if f.is_file() and _is_image(f.name)
    ]
    if not samples:
        raise UsageError(f"no images under {split_dir}/<class>/")
    return classes, samples


def random_resized_box(width: int, height: int, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """``(left, top, w, h)`` of an Inception crop: area fraction U(0.08, 1), log-uniform aspect in [3/4, 4/3].

    Ten tries, then the largest centred box with the aspect clamped to the
    range (torchvision's ``RandomResizedCrop.get_params``).
    """
    area = width * height
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(0.08, 1.0, generator=generator))
        ratio = math.exp(float(torch.empty(1).uniform_(*log_ratio, generator=generator)))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < 3 / 4:
        w, h = width, round(width / (3 / 4))
    elif in_ratio > 4 / 3:
        h, w = height, round(height * (4 / 3))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


class FolderImages(torch.utils.data.Dataset):
    """Decode ``samples[i]`` with PIL and apply the train or eval recipe -> ``(float (3, S, S), label)``."""

    def __init__(self, samples: list[tuple[str, int]], *, image_size: int, train: bool, flip: bool, random_crop: bool):
        self.samples = samples
        self.image_size = image_size
        self.train = train
        self.flip = flip and train
        self.random_crop = random_crop and train
        self.seed = (0, 0, 0)  # (seed, epoch, rank), set by StreamingLoader before each epoch
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        s = self.image_size
        g = epoch_generator(*self.seed, 3, i) if self.train else None
        with open_image(path) as img:  # refuses an image too large to decode, from its header
            img = img.convert("RGB")
            if self.random_crop:
                left, top, w, h = random_resized_box(*img.size, generator=g)
                img = img.resize((s, s), Image.BILINEAR, box=(left, top, left + w, top + h))
            else:
                short = round(s / CROP_FRACTION)
                scale = short / min(img.size)
                img = img.resize((max(s, round(img.size[0] * scale)), max(s, round(img.size[1] * scale))), Image.BILINEAR)
                left, top = (img.size[0] - s) // 2, (img.size[1] - s) // 2
                img = img.crop((left, top, left + s, top + s))
            if self.flip and bool(torch.rand((), generator=g) < 0.5):
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        return (x.float().div_(255) - self.mean) / self.std, label


class StreamingLoader:
    """``DeviceLoader``'s protocol over a DataLoader with workers and a ``DistributedSampler``."""

    def __init__(
        self,
        dataset: FolderImages,
        *,
        batch_size: int,
        train: bool,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_workers: int = 4,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        classes: list[str] | None = None,
    ) -> None:
        from torch.utils.data.distributed import DistributedSampler

        self.dataset = dataset
        self.classes = classes or []
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.batch_size = batch_size
        self.train = train
        self.device = torch.device(device)
        self.seed, self.rank = seed, rank
        self.num_workers = num_workers
        self.channels_last = channels_last
        self.drop_last = train
        self.epoch = 0
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=train, seed=seed)
        self.num_samples = self.sampler.num_samples
        # DistributedSampler pads by wrapping, like shard_indices: duplicates come last.
        self.num_valid = len(range(rank, len(dataset), world_size))
        if len(self) == 0:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {self.num_samples} samples per rank "
                f"and drop_last=True: no batch per epoch; use a smaller batch_size or a larger subset"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(self.epoch)

    __len__ = DeviceLoader.__len__

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # workers copy the dataset when the iterator starts, so this reaches them
        self.dataset.seed = (self.seed, self.epoch, self.rank)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            drop_last=self.drop_last,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for x, y in loader:
            yield x.to(self.device, non_blocking=True).contiguous(memory_format=fmt), y.to(self.device, non_blocking=True)


def build_streaming_loaders(
    root: str | os.PathLike,
    *,
    batch_size: int,
    eval_batch_size: int,
    image_size: int = 224,
    subset: int | None = None,
    eval_subset: int | None = None,
    flip: bool = True,
    random_crop: bool = True,
    num_workers: int = 4,
    device: str | torch.device = "cpu",
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    channels_last: bool = False,
) -> tuple[StreamingLoader, StreamingLoader, int, int]:
    """Train / test ``StreamingLoader`` s over ``root/train`` and ``root/val`` (or ``test``)."""
    classes, train_samples = list_split(root, "train")
    test_classes, test_samples = list_split(root, "test")
    check_same_classes(str(root), {"train": set(classes), "test": set(test_classes)})

    def thin(samples, per_class):
        return [samples[i] for i in subset_indices(np.array([lab for _, lab in samples]), per_class, seed)]

    train_samples, test_samples = thin(train_samples, subset), thin(test_samples, eval_subset)
    common = dict(device=device, seed=seed, num_workers=num_workers, rank=rank, world_size=world_size,
                  channels_last=channels_last, classes=classes)
    train = StreamingLoader(
        FolderImages(train_samples, image_size=image_size, train=True, flip=flip, random_crop=random_crop),
        batch_size=batch_size, train=True, **common,
    )
    test = StreamingLoader(
        FolderImages(test_samples, image_size=image_size, train=False, flip=False, random_crop=False),
        batch_size=eval_batch_size, train=False, **common,
    )
    return train, test, len(classes), 3
