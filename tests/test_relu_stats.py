"""Figure 7 statistics: per-layer thresholds, batch-norm modes, the class-balanced sample."""

import pytest
import torch

from manifold_lab.data.base import ImageData
from manifold_lab.data.loader import DeviceLoader
from manifold_lab.data.sample import balanced_sample, per_class_count
from manifold_lab.models import mobilenet_v2
from manifold_lab.train.relu_stats import layers_below_threshold, relu_stats, relu_thresholds


def test_thresholds_are_the_dimension_entering_each_layer():
    model = mobilenet_v2("cifar_fast", bottleneck_act="relu6")  # width 1: stem 32, rows 16, 24, 32, ...
    d = relu_thresholds(model)
    assert d["features.0.act"] == 3  # the stem sees the image's 3 channels
    assert d["features.1.act2"] == 16  # t = 1: min(k, k') = min(32, 16), the block passes on 16 channels
    assert d["features.2.act1"] == d["features.2.act2"] == 16 == 96 // 6  # C / t for an expansion
    assert d["features.17.act1"] == 160 and d["features.17.act3"] == 160  # min(k, k') = min(160, 320)
    assert d["features.18.act"] == 320  # the 1280-channel head sees the last block's 320 channels
    # narrowing the bottleneck lowers the thresholds while C stays: C / t no longer
    narrow = relu_thresholds(mobilenet_v2("cifar_fast", bottleneck_mult=0.25))
    assert narrow["features.2.act1"] == 4 and narrow["features.18.act"] == 80


def test_records_use_the_thresholds_and_batch_statistics_leave_the_model_alone():
    torch.manual_seed(0)
    model = mobilenet_v2("cifar_fast", width_mult=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recs = relu_stats(model, torch.randn(32, 3, 32, 32), bn="batch")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running stats untouched
    assert model.training  # and the mode restored
    d = relu_thresholds(model)
    assert [r["threshold"] for r in recs] == [d[r["name"]] for r in recs]
    # batch statistics centre every channel on the sample: about half the channels are positive at a
    # position for these symmetric random inputs (tolerance 0.05 of C)
    assert all(abs(r["mean"] / r["channels"] - 0.5) < 0.05 for r in recs)
    with pytest.raises(ValueError, match="bn='train' is not one of 'running', 'calibrated', 'batch'"):
        relu_stats(model, torch.randn(2, 3, 32, 32), bn="train")


def test_layers_below_threshold_uses_each_records_threshold():
    recs = [{"name": "features.0.act", "mean": 2.0, "threshold": 3},
            {"name": "features.2.act1", "mean": 20.0, "threshold": 16},
            {"name": "features.2.act3", "mean": 0.0, "threshold": 16}]  # a bottleneck: not a Figure 7 layer
    assert layers_below_threshold(recs) == (1, 2)


def class_sorted_loader(per_class=7, classes=4, train=True):
    labels = torch.arange(classes).repeat_interleave(per_class)  # sorted by class, like the CIFAR test split
    images = (labels.view(-1, 1, 1, 1) * 10 + torch.arange(per_class).repeat(classes).view(-1, 1, 1, 1)) \
        .expand(-1, 3, 8, 8).to(torch.uint8).contiguous()
    data = ImageData(images, labels, [f"c{i}" for i in range(classes)], (0.0,) * 3, (1.0,) * 3)
    return DeviceLoader(data, batch_size=5, train=train, crop_padding=4)


def test_balanced_sample_has_equal_classes_and_no_augmentation():
    loader = class_sorted_loader()
    first = next(iter(class_sorted_loader(train=False)))[1][:4]
    assert first.tolist() == [0, 0, 0, 0]  # the first images of a sorted split: one class
    x, y, hist = balanced_sample(loader, 3)
    assert hist == {"c0": 3, "c1": 3, "c2": 3, "c3": 3} and torch.bincount(y).tolist() == [3, 3, 3, 3]
    # clean images from a training loader: each is exactly its stored image, normalised, uncropped
    pixel = x[:, 0, 0, 0] * 255  # mean 0, std 1 in [0, 1] units: x = pixel / 255
    assert torch.allclose(x * 255, pixel.view(-1, 1, 1, 1).expand_as(x))
    assert all(int(p) // 10 == int(c) for p, c in zip(pixel.round(), y))
    x2, y2, _ = balanced_sample(loader, 3)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # a fixed sample


def test_balanced_sample_bad_sizes():
    assert per_class_count(256, 10) == 25
    with pytest.raises(ValueError, match="train.relu_stats_images=5 is fewer than the 10 classes"):
        per_class_count(5, 10, "train.relu_stats_images")
    with pytest.raises(ValueError, match="but class 0 has only 7"):
        balanced_sample(class_sorted_loader(), 8)


def test_balanced_sample_of_a_streaming_evaluation_loader(tmp_path):
    import numpy as np
    from PIL import Image

    from manifold_lab.data import build_loaders

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):  # larger than the in-memory limit: streamed from the files
                Image.fromarray(rng.integers(0, 256, (70, 70, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    train, test, _, _ = build_loaders({"name": "imagefolder", "root": str(tmp_path), "batch_size": 2,
                                       "image_size": 65, "num_workers": 0}, device="cpu")
    x, y, hist = balanced_sample(test, 2)
    assert hist == {"cat": 2, "dog": 2} and x.shape == (4, 3, 65, 65)
    # the images are the evaluation transform of the chosen files, the same as the loader yields
    full = torch.cat([xb for xb, _ in test])
    assert all(any(torch.equal(xi, f) for f in full) for xi in x)
    with pytest.raises(ValueError, match="streaming training loader augments"):
        balanced_sample(train, 1)
