"""manifold-lab: how ReLU destroys or keeps the information of low-dimensional
manifolds, and the MobileNetV2 linear-bottleneck claim (Sandler et al., 2018).

Library modules (numpy unless noted):

- ``manifold_lab.manifolds``   generators of embedded manifolds and ``embed``
- ``manifold_lab.relu_maps``   ReLU(Bx) maps and random inverted-residual blocks
- ``manifold_lab.theory``      Theorem 1 (kept fraction N_{m,n}/2^m) and its bound
- ``manifold_lab.metrics``     collapsed points (rank of active rows)
- ``manifold_lab.recovery``    Lemma 2 preimage and decoders
- ``manifold_lab.geometry``    trustworthiness, k-NN overlap, TwoNN dimension

The ``manifold-lab`` command lives in ``manifold_lab.cli``.
"""

__version__ = "0.1.0"
