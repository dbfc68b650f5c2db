"""The reproduction of this paper: the claim table of ``results/README.md`` and its analyses.

- ``records``            the completed runs of a committed study, read for a claim
- ``verdict``            the rule: paired tests over seeds, Holm's adjustment, the verdict words
- ``claims``             the claim table as data: one declaration per claim of the paper
- ``rules``              the evaluators of the rows that are not paired differences (``RULES``)
- ``readme``             ``results/README.md`` rendered from the rows
- ``probe_correlation``  the probe's measures against the accuracy penalty (pre-registered)
- ``id_profile``         the intrinsic-dimension profile through depth (pre-registered)
- ``device_check``       networks trained on a GPU and on the CPU, paired

Built on the generic reporting (``manifold_lab.reporting``); nothing below imports it.
"""
