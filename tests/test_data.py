"""Datasets and the device loader: exact counts, determinism, augmentation identities, caches."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from manifold_lab.data import DeviceLoader, ImageData, build_loaders, load_dataset, subset_indices
from manifold_lab.data import folder as folder_mod
from manifold_lab.data.base import channel_stats, repo_root
from manifold_lab.data.loader import crop_flip, shard_indices


def make_data(n_per_class=5, n_classes=3, c=3, h=6, w=5, seed=0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    n = n_per_class * n_classes
    images = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    mean, std = channel_stats(images)
    return ImageData(images, labels, [f"c{i}" for i in range(n_classes)], mean, std)


def collect(loader):
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


# --------------------------------------------------------------------------- ImageData / subset


def test_image_data_rejects_wrong_dtype():
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64), ["a"], (0.0,), (1.0,))


def test_channel_stats_match_numpy():
    data = make_data()
    x = data.images.numpy().astype(np.float64) / 255
    mean, std = channel_stats(data.images, chunk=4)  # several chunks
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-9)


def test_subset_exact_per_class_and_deterministic():
    labels = np.repeat(np.arange(4), [10, 7, 12, 9])
    a = subset_indices(labels, 5, seed=3)
    assert np.bincount(labels[a]).tolist() == [5, 5, 5, 5]
    assert np.array_equal(a, subset_indices(labels, 5, seed=3))
    assert not np.array_equal(a, subset_indices(labels, 5, seed=4))
    assert np.all(np.diff(a) > 0)
    with pytest.raises(ValueError, match="only 7"):
        subset_indices(labels, 8)
    with pytest.raises(ValueError, match="subset=0"):
        subset_indices(labels, 0)


# --------------------------------------------------------------------------- loader


@pytest.mark.parametrize("n,batch,world,drop", [(15, 4, 1, True), (15, 4, 1, False), (15, 4, 2, False), (17, 3, 4, True)])
def test_batch_counts_exact(n, batch, world, drop):
    data = make_data(n_per_class=1, n_classes=n)
    for rank in range(world):
        loader = DeviceLoader(data, batch_size=batch, train=True, drop_last=drop, rank=rank, world_size=world)
        per_rank = -(-n // world)
        assert loader.num_samples == per_rank
        expected = per_rank // batch if drop else -(-per_rank // batch)
        assert len(loader) == expected
        sizes = [y.numel() for _, y in loader]
        assert len(sizes) == expected
        assert sum(sizes) == (expected * batch if drop else per_rank)


def test_drop_last_defaults_to_train():
    data = make_data()  # 15 images
    assert len(DeviceLoader(data, batch_size=4, train=True)) == 3
    assert len(DeviceLoader(data, batch_size=4, train=False)) == 4


@pytest.mark.parametrize("shuffle", [True, False])
def test_shards_disjoint_equal_and_covering(shuffle):
    n, world = 11, 3
    shards = [shard_indices(n, rank=r, world_size=world, shuffle=shuffle, seed=1, epoch=2) for r in range(world)]
    assert {s.numel() for s in shards} == {4}
    allidx = torch.cat(shards)
    assert set(allidx.tolist()) == set(range(n))
    # 12 slots for 11 samples: exactly one repeat (the wrap padding), no more
    assert allidx.numel() - len(set(allidx.tolist())) == 1
    if not shuffle:
        assert shards[0].tolist() == [0, 3, 6, 9]


def test_sharded_loaders_cover_the_epoch():
    data = make_data(n_per_class=4, n_classes=3)
    # label each image by its index so the union of shards can be checked
    data = ImageData(data.images, torch.arange(12), [str(i) for i in range(12)], data.mean, data.std)
    ys = [collect(DeviceLoader(data, batch_size=2, train=True, rank=r, world_size=2, seed=5))[1] for r in range(2)]
    assert set(ys[0].tolist()).isdisjoint(ys[1].tolist())
    assert sorted(ys[0].tolist() + ys[1].tolist()) == list(range(12))


def test_determinism_per_seed_and_epoch():
    data = make_data()
    kw = dict(batch_size=4, train=True, seed=7)
    a, b = DeviceLoader(data, **kw), DeviceLoader(data, **kw)
    a.set_epoch(3)
    b.set_epoch(3)
    xa, ya = collect(a)
    xb, yb = collect(b)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # replaying the same epoch on the same loader gives the same batches (exact resume)
    assert torch.equal(collect(a)[0], xa)
    b.set_epoch(4)
    assert not torch.equal(collect(b)[0], xa)
    c = DeviceLoader(data, **dict(kw, seed=8))
    c.set_epoch(3)
    assert not torch.equal(collect(c)[0], xa)


def test_test_loader_is_fixed_order_without_augmentation():
    data = make_data()
    loader = DeviceLoader(data, batch_size=4, train=False)
    loader.set_epoch(9)
    x, y = collect(loader)
    assert torch.equal(y, data.labels)
    assert torch.allclose(x, loader.normalize(data.images))


def test_flip_with_zero_padding_is_mirror():
    data = make_data(n_per_class=20, n_classes=2)
    loader = DeviceLoader(data, batch_size=40, train=True, crop_padding=0, flip=True, seed=0)
    loader.set_epoch(0)
    (x, y), = list(loader)
    idx = shard_indices(40, rank=0, world_size=1, shuffle=True, seed=0, epoch=0)
    plain = loader.normalize(data.images[idx])
    mirror = plain.flip(-1)
    same = (x == plain).flatten(1).all(1)
    flipped = (x == mirror).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert 0 < int(flipped.sum()) < 40  # both outcomes occur (p = 1 - 2^-39)


def test_crop_is_shifted_window_of_zero_padded_image():
    img = torch.arange(1, 1 + 2 * 5 * 6, dtype=torch.uint8).view(1, 2, 5, 6).repeat(3, 1, 1, 1)
    dy = torch.tensor([0, 4, 2])
    dx = torch.tensor([0, 1, 2])
    out = crop_flip(img, dy, dx, torch.tensor([False, False, True]), padding=2)
    padded = torch.nn.functional.pad(img, (2, 2, 2, 2))
    assert torch.equal(out[0], padded[0, :, 0:5, 0:6])
    assert torch.equal(out[1], padded[1, :, 4:9, 1:7])
    assert torch.equal(out[2], padded[2, :, 2:7, 2:8].flip(-1))  # padding = identity shift, then mirror
    assert out[0, :, :2].eq(0).all() and out[0, :, :, :2].eq(0).all()  # zeros come from the padding


def test_augmented_batches_are_windows_of_the_padded_images():
    data = make_data(n_per_class=4, n_classes=2, h=8, w=8)
    loader = DeviceLoader(data, batch_size=8, train=True, crop_padding=2, flip=False, seed=1)
    (x, _), = list(loader)
    idx = shard_indices(8, rank=0, world_size=1, shuffle=True, seed=1, epoch=0)
    padded = torch.nn.functional.pad(data.images[idx], (2, 2, 2, 2))
    for b in range(8):
        windows = [loader.normalize(padded[b : b + 1, :, i : i + 8, j : j + 8]) for i in range(5) for j in range(5)]
        assert any(torch.equal(x[b : b + 1], w) for w in windows)


def test_normalization_of_constant_image():
    n, c = 4, 3
    images = torch.full((n, c, 4, 4), 51, dtype=torch.uint8)  # 51 / 255 = 0.2
    data = ImageData(images, torch.zeros(n, dtype=torch.int64), ["a"], (0.1, 0.2, 0.4), (0.5, 0.25, 0.1))
    (x, _), = list(DeviceLoader(data, batch_size=n, train=False))
    expected = torch.tensor([(0.2 - 0.1) / 0.5, 0.0, (0.2 - 0.4) / 0.1]).view(1, c, 1, 1).expand_as(x)
    assert torch.allclose(x, expected, atol=1e-6)


def test_normalization_with_own_stats_of_constant_image_is_zero():
    # a constant dataset: mean = its value, std floored at one grey level -> exactly 0
    images = torch.full((3, 2, 4, 4), 200, dtype=torch.uint8)
    images[:, 1] = 7
    mean, std = channel_stats(images)
    assert std == (1 / 255, 1 / 255)
    data = ImageData(images, torch.zeros(3, dtype=torch.int64), ["a"], mean, std)
    (x, _), = list(DeviceLoader(data, batch_size=3, train=True, crop_padding=0, flip=True))
    assert x.abs().max() < 1e-4


def test_eval_shards_num_valid_counts_every_sample_once():
    n, world = 11, 3
    data = make_data(n_per_class=1, n_classes=n)
    data = ImageData(data.images, torch.arange(n), [str(i) for i in range(n)], data.mean, data.std)
    seen = []
    for rank in range(world):
        loader = DeviceLoader(data, batch_size=3, train=False, rank=rank, world_size=world)
        assert len(loader) == 2  # same batch count on every rank (4 samples, the last one maybe padding)
        y = collect(loader)[1]
        assert y.numel() == loader.num_samples == 4
        seen += y[: loader.num_valid].tolist()
    assert sorted(seen) == list(range(n))


def test_channels_last_and_dtype():
    data = make_data()
    (x, _), *_ = list(DeviceLoader(data, batch_size=4, train=True, channels_last=True, dtype=torch.float64))
    assert x.dtype == torch.float64 and x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"rank": 2, "world_size": 2}, "rank"),
        ({"crop_padding": -1}, "crop_padding"),
        ({"batch_size": 9, "world_size": 2}, "batch_size=9 is larger than the 8 samples per rank"),
    ],
)
def test_loader_bad_arguments(kw, match):
    args = dict(batch_size=4, train=True) | kw
    with pytest.raises(ValueError, match=match):
        DeviceLoader(make_data(), **args)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_and_classes():
    train = load_dataset("digits")
    test = load_dataset("digits", split="test")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert train.classes == [str(i) for i in range(10)]
    assert train.images.max() == 255 and train.images.min() == 0
    assert test.mean == train.mean  # normalised with the train statistics
    big = load_dataset("digits", image_size=32, channels=3, subset=10, seed=1)
    assert big.images.shape == (100, 3, 32, 32)
    assert torch.bincount(big.labels).tolist() == [10] * 10
    assert torch.equal(big.images[:, 0], big.images[:, 2])


def test_build_loaders_on_digits():
    cfg = {"name": "digits", "batch_size": 64, "eval_batch_size": 100, "image_size": 16, "augment": {"crop_padding": 2}}
    train, test, num_classes, in_channels = build_loaders(cfg, device="cpu", seed=0)
    assert (num_classes, in_channels) == (10, 1)
    assert len(train) == 1437 // 64 and len(test) == 4
    x, y = next(iter(train))
    assert x.shape == (64, 1, 16, 16) and y.dtype == torch.int64


def test_build_loaders_reads_device_seed_and_sharding_from_the_config():
    cfg = {"name": "digits", "batch_size": 32, "subset": 8, "seed": 4, "rank": 1, "world_size": 2, "device": "cpu"}
    train, test, _, _ = build_loaders(cfg)
    assert (train.seed, train.rank, train.world_size) == (4, 1, 2) and train.device.type == "cpu"
    assert train.num_samples == 40 and len(test) == -(-180 // 32)
    assert len(build_loaders(dict(cfg, eval_subset=3, rank=0, world_size=1))[1].labels) == 30
    override, *_ = build_loaders(cfg, seed=5, rank=0)
    assert (override.seed, override.rank) == (5, 0)
    assert torch.equal(next(iter(build_loaders(cfg)[0]))[0], next(iter(train))[0])


def test_relative_root_resolves_from_cwd_then_repository_root(tmp_path, monkeypatch):
    from manifold_lab.data.base import resolve_path

    monkeypatch.chdir(tmp_path)
    assert resolve_path("manifold_lab/data") == repo_root() / "manifold_lab" / "data"
    (tmp_path / "manifold_lab" / "data").mkdir(parents=True)
    assert resolve_path("manifold_lab/data") == tmp_path / "manifold_lab" / "data"
    assert resolve_path("absent") == tmp_path / "absent"


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="cifar10_jpeg"):
        load_dataset("mnist")


# --------------------------------------------------------------------------- ImageFolder


def write_png_tree(root: Path, sizes=(6, 6)) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in (("train", 3), ("test", 2)):
        for cls in ("dog", "cat"):  # written unsorted on purpose
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (*sizes, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_imagefolder_decodes_once_and_reuses_cache(tmp_path, monkeypatch):
    from PIL import Image

    root = tmp_path / "tree"
    write_png_tree(root)
    cache = tmp_path / "cache"
    calls = []
    real = folder_mod.decode_image
    monkeypatch.setattr(folder_mod, "decode_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    train = load_dataset("imagefolder", root=root, cache_dir=cache)
    assert len(calls) == 10  # both splits decoded in one pass
    assert train.classes == ["cat", "dog"] and train.images.shape == (6, 3, 6, 6)
    assert torch.bincount(train.labels).tolist() == [3, 3]
    expected = np.asarray(Image.open(root / "train" / "cat" / "0.png")).transpose(2, 0, 1)
    assert np.array_equal(train.images[0].numpy(), expected)
    test = load_dataset("imagefolder", root=root, split="test", cache_dir=cache)
    assert len(calls) == 10 and len(test) == 4 and test.mean == train.mean
    assert len(list((cache / "imagefolder").glob("*.npz"))) == 1
    # a changed tree is decoded again
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(root / "train" / "cat" / "9.png")
    assert len(load_dataset("imagefolder", root=root, cache_dir=cache)) == 7
    assert len(calls) == 21


def test_imagefolder_resize_and_missing(tmp_path):
    root = tmp_path / "tree"
    write_png_tree(root, sizes=(10, 12))
    data = load_dataset("imagefolder", root=root, image_size=4, cache_dir=tmp_path / "c")
    assert data.images.shape == (6, 3, 4, 4)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset("imagefolder", root=tmp_path / "nowhere", cache_dir=tmp_path / "c")


def test_imagefolder_corrupt_inputs_are_clear_errors(tmp_path):
    root = tmp_path / "tree"
    write_png_tree(root)
    (root / "train" / "cat" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode image .*bad.png"):
        load_dataset("imagefolder", root=root, cache_dir=tmp_path / "c")
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(ValueError, match="cannot read archive"):
        load_dataset("imagefolder", root=archive, cache_dir=tmp_path / "c")


def test_imagefolder_tar_gz_equals_folder(tmp_path):
    import tarfile

    root = tmp_path / "tree"
    write_png_tree(root)
    (root / "val" / "cat").mkdir(parents=True)  # ignored: "test" comes first
    with tarfile.open(tmp_path / "tree.tar.gz", "w:gz") as tf:
        tf.add(root / "train", arcname="train")
        tf.add(root / "test", arcname="test")
    for split in ("train", "test"):
        a = load_dataset("imagefolder", root=root, split=split, cache_dir=tmp_path / "c")
        b = load_dataset("imagefolder", root=tmp_path / "tree.tar.gz", split=split, cache_dir=tmp_path / "c")
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.classes == b.classes


def test_cifar10_jpeg_missing_names_paths_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("MANIFOLD_LAB_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10_jpeg")
    msg = str(err.value)
    assert str(tmp_path / "empty") in msg and "MANIFOLD_LAB_DATA" in msg and "download=True" in msg


# --------------------------------------------------------------------------- the real CIFAR-10 JPEG copy


def _jpeg_root() -> Path | None:
    env = os.environ.get("MANIFOLD_LAB_DATA")
    if env:
        return Path(env)
    archive = repo_root().parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
    return archive.parent if archive.is_file() else None


@pytest.mark.dataset
@pytest.mark.slow
def test_real_cifar10_jpeg_copy(tmp_path_factory):
    root = _jpeg_root()
    if root is None:
        pytest.skip("CIFAR-10 JPEG copy absent (set MANIFOLD_LAB_DATA or put ../shared/datasets/cifar10-jpeg.tar.gz)")
    cache = os.environ.get("MANIFOLD_LAB_CACHE") or tmp_path_factory.mktemp("cache")
    train = load_dataset("cifar10_jpeg", root=root, cache_dir=cache)
    test = load_dataset("cifar10_jpeg", root=root, split="test", cache_dir=cache)
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.classes == sorted(train.classes) == [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
    ]
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    # CIFAR-10's well-known statistics, within JPEG re-encoding error
    np.testing.assert_allclose(train.mean, (0.4914, 0.4822, 0.4465), atol=0.01)
    np.testing.assert_allclose(train.std, (0.2470, 0.2435, 0.2616), atol=0.01)


# --------------------------------------------------------------------------- large images: streaming


def test_large_imagefolder_streams_with_the_same_protocol(tmp_path):
    root = tmp_path / "big"
    write_png_tree(root, sizes=(70, 90))  # larger than SMALL_MAX_SIDE: not cached in memory
    cfg = {"name": "imagefolder", "root": str(root), "batch_size": 2, "eval_batch_size": 3, "image_size": 65,
           "num_workers": 0}
    train, test, num_classes, in_channels = build_loaders(cfg, device="cpu", seed=3, world_size=2, rank=1)
    assert (num_classes, in_channels) == (2, 3)
    assert train.num_samples == 3 and len(train) == 1 and len(test) == 1  # 6 train / 4 test over 2 ranks
    train.set_epoch(1)
    (x1, y1), = list(train)
    (x2, y2), = list(train)
    assert x1.shape == (2, 3, 65, 65) and torch.equal(x1, x2) and torch.equal(y1, y2)  # pure function of the epoch
    train.set_epoch(2)
    assert not torch.equal(next(iter(train))[0], x1)
    (xt, yt), = list(test)
    assert xt.shape == (2, 3, 65, 65) and yt.tolist() == [0, 1]  # rank 1 of [cat0, cat1, dog0, dog1], no shuffle
    # the augmentation does not depend on the worker processes
    with_workers, *_ = build_loaders(dict(cfg, num_workers=1), device="cpu", seed=3, world_size=2, rank=1)
    with_workers.set_epoch(1)
    assert torch.equal(next(iter(with_workers))[0], x1)


def test_imagefolder_whose_splits_name_different_classes_is_refused(tmp_path):
    """Train on dog/cat, test on cow/cat: a run would end 'done' near 0% on the unseen classes."""
    root = tmp_path / "tree"
    write_png_tree(root)
    (root / "test" / "dog").rename(root / "test" / "cow")
    with pytest.raises(ValueError, match="name different classes: test has no folder for dog.*train has no folder "
                                         "for cow|name different classes: test has no folder for dog"):
        load_dataset("imagefolder", root=root, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").rglob("*.npz"))  # nothing cached
