"""The information-loss probe: what each bottleneck of a trained network loses (issue 12).

The random-map studies measure collapse and recoverability on ``ReLU(Bx)``;
this package measures the same quantities, in the same units, inside a
MobileNetV2 (any variant of ``manifold_lab.models.mobilenetv2``) on a fixed
class-balanced image set, at every inverted-residual block: the bottleneck
channels zeroed (and clipped by ReLU6) against the intrinsic dimension of the
pre-activation; Lemma 2 on the real, BN-folded expansion; recoverability of the
block input and of the bottleneck pre-activation from the block output, and of
the pre-activation from ``act3`` of it before the shortcut adds the input back
(a dead branch is total loss there, while ``x + 0`` still gives the input back);
label information in the block output (a held-out linear probe, when labels are
given); its geometry per image, TwoNN as Ansuini et al. (2019) and RankMe
(Garrido et al. 2023). ``measures`` defines every record key.

Modules, one concept each:

- ``images``: the class-balanced image set and its class histogram;
- ``capture``: per-block tensors at sampled positions (forward hooks on the
  fixed submodule names) and the BN-folded expansion;
- ``measures``: the measures of one block from plain arrays (shared with the
  toy networks of ``manifold_lab.toy``);
- ``label_probe``: the held-out accuracy of a linear read-out of the labels;
- ``network``: ``probe_network`` (one record per block) and ``probe_summary``
  (a few numbers per network);
- ``sources``: a network from a run folder or checkpoint, trained or rebuilt at step 0;
- ``output``: the per-layer CSV and JSON and the figure of the profile through depth.
"""

from manifold_lab.probe.measures import block_measures
from manifold_lab.probe.network import SUMMARY_KEYS, probe_network, probe_summary

__all__ = ["SUMMARY_KEYS", "block_measures", "probe_network", "probe_summary"]
