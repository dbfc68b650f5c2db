"""Image datasets for the MobileNetV2 experiments (issue 4, "Data").

- ``base``      ``ImageData`` (one split as a uint8 tensor), train-split statistics, ``subset``
- ``cifar``     official CIFAR-10/100 python archives, read with a restricted unpickler
- ``download``  checksum-verified, atomic download and extraction
- ``folder``    ImageFolder trees (and their ``.tar.gz``), decoded once into a cached array
- ``digits``    scikit-learn's 8x8 digits for smoke runs
- ``loader``    ``DeviceLoader``: device-resident batches with batched crop / flip / normalise
- ``stream``    large ImageFolder images (ImageNet) through a DataLoader with workers
- ``registry``  ``load_dataset(name, ...)`` and ``build_loaders(data_cfg, ...)``
"""

from manifold_lab.data.base import ImageData, channel_stats, subset_indices
from manifold_lab.data.loader import DeviceLoader
from manifold_lab.data.registry import DATASETS, build_loaders, load_dataset

__all__ = [
    "DATASETS",
    "DeviceLoader",
    "ImageData",
    "build_loaders",
    "channel_stats",
    "load_dataset",
    "subset_indices",
]
