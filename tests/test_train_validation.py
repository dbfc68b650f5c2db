"""Values of a mobilenetv2 spec that would fail only once a run starts are refused at validation
(issue 25 class 7, issue 26 item 1), with one line naming the parameter the user can change."""

import re

import pytest
from pydantic import ValidationError

from manifold_lab.cli import main
from manifold_lab.kinds.mobilenetv2 import check
from manifold_lab.train.config import TrainConfig


@pytest.mark.parametrize("params, message", [
    ({"data": {"name": "cifar10_jpeg", "subset": 20}, "train": {"clean_train_images": 1000}},
     "train.clean_train_images=1000 draws 100 training images per class, but data.subset=20 keeps 20; "
     "use train.clean_train_images <= 200 or a larger data.subset"),
    ({"data": {"name": "cifar10_jpeg", "subset": 200, "eval_subset": 10}},
     "train.relu_stats_images=256 draws 25 test images per class, but data.eval_subset=10 keeps 10"),
    ({"data": {"name": "digits", "image_size": 16}, "train": {"relu_stats_images": 1000}},
     "the smallest class of digits's test split has 35; use train.relu_stats_images <= 350"),
    ({"data": {"name": "digits"}, "model": {"preset": "cifar_fast"}},
     "digits images are 8 x 8, too small for the total stride 16 of the cifar_fast preset; set data.image_size >= 16"),
    ({"data": {"name": "cifar10_jpeg", "image_size": 16}, "model": {"preset": "imagenet"}},
     "too small for the total stride 32 of the imagenet preset"),
])
def test_derived_quantities_are_checked_together(params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check(TrainConfig.model_validate(params))


def test_the_fitting_values_pass():
    check(TrainConfig.model_validate({"data": {"name": "cifar10_jpeg", "subset": 100, "eval_subset": 25},
                                      "train": {"clean_train_images": 1000}}))
    check(TrainConfig.model_validate({"data": {"name": "digits", "image_size": 16}}))


@pytest.mark.parametrize("optim, message", [
    ({"lr": 1e300}, r"must be a finite number in \(0, 100\], got 1e\+300"),
    ({"lr": 0.0}, r"must be a finite number in \(0, 100\]"),
    ({"name": "adamw", "betas": [0.9, 1.0]}, r"optim.betas\[1\]=1.0 must be in \[0, 1\)"),
    ({"name": "adamw", "betas": [-0.1, 0.9]}, r"optim.betas\[0\]=-0.1 must be in \[0, 1\)"),
])
def test_optimizer_values_out_of_range(optim, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig.model_validate({"optim": optim})


def test_a_shrunk_figure6a_fails_at_dry_run_naming_the_parameter(capsys):
    """Issue 26: the copy of Figure 6a with a small subset used to pass --dry-run and fail every run."""
    status = main(["run", "experiments/figure6a_linear_bottleneck_cifar10.yaml", "params.data.subset=20", "--dry-run"])
    err = capsys.readouterr().err
    assert status == 2 and "train.clean_train_images=1000" in err and "data.subset=20" in err
    assert len(err.strip().splitlines()) == 1
