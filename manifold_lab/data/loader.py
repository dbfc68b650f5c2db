"""A loader for small datasets held on the training device as one uint8 tensor.

The airbench recipe: the whole split sits on the device, and random crop with
zero padding, horizontal flip and normalisation run as a few batched tensor
ops per batch (one gather for crop + flip), with no per-sample Python loop and
no host-to-device copy after the first.

Randomness is a pure function of ``(seed, epoch, rank)``: the epoch's
permutation depends on ``(seed, epoch)`` only (every rank draws the same one
and takes its own shard, as ``DistributedSampler``), and the augmentation
draws on ``(seed, epoch, rank)``. Calling ``set_epoch(e)`` therefore replays
epoch ``e`` exactly, which is what exact resume at epoch boundaries needs.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from manifold_lab.data.base import ImageData


def epoch_generator(seed: int, epoch: int, *streams: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``(seed, epoch, *streams)`` by numpy's SeedSequence.

    SeedSequence mixes the tuple into well-separated 64-bit seeds, so nearby
    ``(seed, epoch)`` pairs do not give correlated streams.
    """
    state = np.random.SeedSequence([int(seed), int(epoch), *map(int, streams)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def shard_indices(n: int, *, rank: int, world_size: int, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """This rank's indices into ``n`` samples for one epoch, as ``DistributedSampler``.

    The (shuffled or identity) order of ``n`` indices is padded by wrapping to
    ``ceil(n / world_size) * world_size`` entries, and rank ``r`` takes entries
    ``r, r + world_size, ...``: shards are disjoint as positions, of equal size,
    and together cover every sample. The padding sits at positions ``>= n`` of
    the padded order, so on every rank the duplicates are the *last*
    ``len(shard) - len(range(rank, n, world_size))`` entries: an evaluation
    that sums over the first ``num_valid`` samples of each rank and
    all-reduces counts every sample exactly once.
    """
    order = torch.randperm(n, generator=epoch_generator(seed, epoch)) if shuffle else torch.arange(n)
    per_rank = math.ceil(n / world_size)
    total = per_rank * world_size
    if total > n:
        order = torch.cat([order, order.repeat(math.ceil((total - n) / n))[: total - n]])
    return order[rank:total:world_size]


def crop_flip(
    images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int
) -> torch.Tensor:
    """Batched random crop with zero padding and horizontal flip, one gather.

    Output pixel ``(i, j)`` of sample ``b`` is the zero-padded input pixel
    ``(dy_b + i, dx_b + j')`` with ``j' = W - 1 - j`` when ``flip_b`` else ``j``;
    ``dy, dx`` in ``[0, 2 * padding]`` (``padding`` shifts the window back to the
    identity).

    Parameters
    ----------
    images : (B, C, H, W) tensor, any dtype
    dy, dx : (B,) int64 tensors on the same device
    flip : (B,) bool tensor
    padding : int >= 0

    Returns
    -------
    (B, C, H, W) tensor, same dtype and device.
    """
    b, c, h, w = images.shape
    if padding:
        images = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    width = w + 2 * padding
    rows = dy[:, None] + torch.arange(h, device=images.device)  # (B, H)
    j = torch.arange(w, device=images.device)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - j, j)  # (B, W)
    # One flat gather along the pixel axis (shared by the channels) is several
    # times faster than 4-D advanced indexing on CPU.
    flat = (rows[:, :, None] * width + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return images.reshape(b, c, -1).gather(2, flat).view(b, c, h, w)


class DeviceLoader:
    """Iterate ``(x, y)`` batches of a device-resident ``ImageData``.

    Parameters
    ----------
    data : ImageData
        Copied once to ``device`` as uint8.
    batch_size : int
        Per-rank batch size.
    train : bool
        Shuffle and augment (random crop + flip) when True; fixed order and no
        augmentation otherwise.
    crop_padding : int
        Zero padding of the random crop (4 for CIFAR); 0 disables the crop.
    flip : bool
        Random horizontal flip with probability 1/2.
    drop_last : bool or None
        Drop the last incomplete batch; default ``train``.
    rank, world_size : int
        This process's shard of every epoch (see ``shard_indices``).
    channels_last : bool
        Return ``x`` in ``torch.channels_last`` memory format.
    dtype : torch.dtype or None
        Floating dtype of ``x``; None = ``torch.get_default_dtype()`` (float32 unless changed).

    Attributes
    ----------
    num_samples : int
        Samples per rank and epoch, ``ceil(N / world_size)`` (padded by wrapping).
    num_valid : int
        How many of them are not padding, ``len(range(rank, N, world_size))``
        (the padded duplicates come last, see ``shard_indices``).

    Yields
    ------
    x : (B, C, H, W) float tensor, ``(pixel / 255 - mean) / std``
    y : (B,) int64 tensor
    """

    def __init__(
        self,
        data: ImageData,
        *,
        batch_size: int,
        train: bool,
        device: str | torch.device = "cpu",
        seed: int = 0,
        crop_padding: int = 4,
        flip: bool = True,
        drop_last: bool | None = None,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1")
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(f"crop_padding={crop_padding!r} must be an integer >= 0")
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size={world_size!r} must be an integer >= 1")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank!r} must be in [0, {world_size - 1}] for world_size={world_size}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype={dtype} must be a floating dtype (torch.float32, torch.bfloat16, ...)")
        if len(data) == 0:
            raise ValueError("data is empty (0 images)")
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.classes = list(data.classes)
        self.mean, self.std = tuple(data.mean), tuple(data.std)
        self.batch_size = batch_size
        self.train = bool(train)
        self.seed = int(seed)
        self.crop_padding = crop_padding if self.train else 0
        self.flip = bool(flip) and self.train
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        self.dtype = dtype
        self.epoch = 0
        # (x - 255 mean) * 1 / (255 std) == (x / 255 - mean) / std; subtracting first
        # keeps the result exact-ish for channels whose values sit at their mean.
        std = torch.tensor(data.std, dtype=torch.float64)
        mean = torch.tensor(data.mean, dtype=torch.float64)
        self._offset = (255.0 * mean).view(1, -1, 1, 1).to(self.device, dtype)
        self._scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1).to(self.device, dtype)
        self.num_samples = math.ceil(len(data) / world_size)
        self.num_valid = len(range(rank, len(data), world_size))
        if len(self) == 0:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {self.num_samples} samples per rank "
                f"({len(data)} images over world_size={world_size}) and drop_last=True: no batch per epoch; "
                "use a smaller batch_size, a larger subset, or drop_last=False"
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration replays."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float ``(x / 255 - mean) / std`` in ``self.dtype``."""
        return images.to(self.dtype).sub_(self._offset).mul_(self._scale)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = shard_indices(
            len(self.labels), rank=self.rank, world_size=self.world_size, shuffle=self.train, seed=self.seed, epoch=self.epoch
        )
        n = idx.numel()
        aug = None
        if self.crop_padding or self.flip:
            # Draw the whole epoch's augmentation at once on the CPU (device-independent
            # numbers), then move it: no host sync per batch.
            g = epoch_generator(self.seed, self.epoch, self.rank, 1)
            span = 2 * self.crop_padding + 1
            dy = torch.randint(span, (n,), generator=g)
            dx = torch.randint(span, (n,), generator=g)
            fl = torch.rand(n, generator=g) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
            aug = (dy.to(self.device), dx.to(self.device), fl.to(self.device))
        idx = idx.to(self.device)
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            batch = self.images[idx[sl]]
            if aug is not None:
                batch = crop_flip(batch, aug[0][sl], aug[1][sl], aug[2][sl], self.crop_padding)
            x = self.normalize(batch)
            x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
            yield x, self.labels[idx[sl]]
